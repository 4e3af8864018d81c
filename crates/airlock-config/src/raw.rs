//! The configuration file as written: serde structs with `deny_unknown_fields`, so a typo is
//! an error with its key path rather than a silently ignored setting.

use crate::secret::SecretSource;
use serde::Deserialize;
use std::collections::BTreeMap;
use std::path::PathBuf;

/// The whole file.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawConfig {
    /// Where airlock keeps snapshots, runs and its audit trail.
    #[serde(default)]
    pub store: RawStore,
    /// Inventory settings.
    #[serde(default)]
    pub inventory: RawInventory,
    /// Airflow instances, keyed by airlock's name for each (`[instances.prod]`).
    #[serde(default)]
    pub instances: BTreeMap<String, RawInstance>,
    /// The access policy file (groups -> roles, roles as code, leavers, safety rails),
    /// relative to this file. Needed by `plan`, `apply` and `sync`.
    pub policy: Option<PathBuf>,
    /// The directory that is the source of truth for people and groups.
    pub directory: Option<RawDirectory>,
}

/// `[directory]`: which directory to read.
#[derive(Debug, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum RawDirectory {
    /// A YAML or CSV file (`kind = "file"`).
    File {
        /// Path, relative to the config file; `.yaml`/`.yml` or `.csv`.
        path: PathBuf,
    },
}

/// `[store]`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawStore {
    /// `sqlite://airlock.db` (relative to the config file; the default) or
    /// `postgres://user@host/db`. A secret, since a PostgreSQL URL may carry a password.
    pub url: Option<SecretSource>,
}

/// `[inventory]`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawInventory {
    /// Flag accounts whose last login is older than this many days (default 90).
    pub inactive_after_days: Option<u32>,
}

/// Which Airflow REST API generation to speak.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ApiGeneration {
    /// Detect from `/api/v2/version`, then `/api/v1/version` (the default).
    #[default]
    Auto,
    /// Airflow 3: JWT from `/auth/token`.
    V3,
    /// Airflow 2: HTTP basic auth.
    V2,
}

/// `[instances.NAME]`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawInstance {
    /// Base URL of the Airflow API server (Airflow 3) or webserver (Airflow 2).
    pub url: String,
    /// Free-form labels used to select instances (`env = "prod"`, `team = "data"`).
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
    /// The Airflow user airlock logs in as.
    pub username: String,
    /// That user's password.
    pub password: SecretSource,
    /// API generation; `auto` detects it.
    #[serde(default)]
    pub api: ApiGeneration,
    /// Timeout of one HTTP call, in seconds (default 30).
    pub timeout_secs: Option<u64>,
    /// Connect timeout, in seconds (default 10).
    pub connect_timeout_secs: Option<u64>,
    /// At most this many calls in flight to this instance (default 4).
    pub max_concurrency: Option<usize>,
    /// Retries of a transient failure before giving up (default 4).
    pub max_retries: Option<u32>,
    /// PEM file with extra CA certificates to trust for this instance's TLS.
    pub ca_file: Option<PathBuf>,
    /// Lifetime of the tokens this Airflow issues, in seconds (Airflow's
    /// `[api_auth] jwt_expiration_time`, default 86400). Leavers are deleted only after it.
    pub token_lifetime_secs: Option<u64>,
}
