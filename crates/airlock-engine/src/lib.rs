//! The engine: runs airlock's jobs by combining the pure core with the connector and the
//! store. Today: building clients from config, inventory runs and their diffs, and the
//! per-instance health check (`airlock instances`), signed checkpoints of the audit chain
//! written to where the operator keeps them (`checkpoint`). Planning and applying directory-driven
//! changes arrive here too, behind the same entry points for CLI, service and SCIM.
//!
//! The engine owns sequencing and recording (what is read, in which order, what is stored as
//! complete); it does not render output, which is the front-ends' job.

pub mod access;
pub mod checkpoint;
mod cpu;
pub mod doctor;
mod error;
pub mod history;
pub mod inventory;
pub mod lease;
pub mod leavers;
pub mod sync;

pub use cpu::{cpu_bound, cpu_bound_when};
pub use error::EngineError;

use airlock_airflow::{AirflowClient, ApiPreference, Settings};
use airlock_config::{ApiGeneration, InstanceConfig};

/// Builds the connector for one configured instance.
pub fn client_for(instance: &InstanceConfig) -> Result<AirflowClient, EngineError> {
    let mut s = Settings::new(
        instance.name.clone(),
        instance.url.clone(),
        instance.username.clone(),
        instance.password.clone(),
    );
    s.api = match instance.api {
        ApiGeneration::Auto => ApiPreference::Auto,
        ApiGeneration::V3 => ApiPreference::V3,
        ApiGeneration::V2 => ApiPreference::V2,
    };
    s.timeout = instance.timeout;
    s.connect_timeout = instance.connect_timeout;
    s.max_concurrency = instance.max_concurrency;
    s.max_retries = instance.max_retries;
    s.ca_pem = instance.ca_pem.clone();
    Ok(AirflowClient::new(s)?)
}
