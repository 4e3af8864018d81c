//! The Airflow connector: reads and changes users, roles and permissions through Airflow's
//! REST API, on Airflow 3 (FAB auth manager, JWT from `/auth/token`) and Airflow 2 (basic
//! auth), detected per instance.
//!
//! Every call has a timeout, runs within a per-instance concurrency limit, and is retried with
//! backoff and jitter when the failure is transient. Errors are typed ([`Error`]) and say which
//! instance, call and object failed and whether a retry can help ([`ErrorClass`]).
//!
//! This crate does not decide *what* to change; that is the engine's job.

mod client;
mod error;
mod resources;
mod stats;
mod wire;

pub use client::{AirflowClient, ApiPreference, Generation, ServerInfo, Settings};
pub use error::{Call, Error, ErrorClass, ErrorKind};
pub use resources::{
    random_password, NewUser, PermissionCatalog, ProfileUpdate, RolePermissionsOutcome, PAGE_LIMIT,
};
pub use stats::CallStats;
