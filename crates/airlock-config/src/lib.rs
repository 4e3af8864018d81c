//! airlock's configuration: one TOML file, `AIRLOCK_*` environment overrides, secrets from
//! env vars or files, and validation that reports every problem with its key path.
//!
//! Loading happens in two steps, as in vector: [`load`] parses and validates (pure apart from
//! reading the file and resolving secrets, never touching the network) into a [`Config`];
//! only then do callers build clients and open stores from it. `airlock config check` runs
//! only the first step.
//!
//! This crate does not open connections or decide what the configuration *means* for a run.

mod access;
mod api;
mod notify;
mod sinks;
pub use access::parse_duration;
pub use api::{ApiConfig, OidcConfig, RawApi, RawOidc, ASYMMETRIC_ALGORITHMS};
pub use notify::{RawNotifications, RawWebhook, WebhookConfig, WebhookFormat, NOTICE_KINDS};
pub use sinks::{
    FileSink, HecSink, HttpSink, RawSink, SinkConfig, SinkKind, SyslogSink, SyslogTransport,
};
mod checkpoints;
mod env;
mod files;
pub mod pg_url;
mod policy;
mod raw;
mod secret;
mod validate;

pub use checkpoints::{AuditConfig, CheckpointConfig, RawAudit, RawCheckpoints};
pub use raw::{ApiGeneration, RawConfig};
pub use secret::{SecretSource, SecretString};
pub use validate::{
    is_loopback, min_delete_after, Config, DirectoryConfig, InsightsConfig, InstanceConfig,
    InventoryConfig, LdapConfig, ServeConfig, StoreConfig, ID_REUSE_MARGIN,
};

use std::fmt;
use std::path::{Path, PathBuf};

/// Env var naming the config file when `--config` is not given.
pub const CONFIG_ENV: &str = "AIRLOCK_CONFIG";
/// Config file used when neither `--config` nor `AIRLOCK_CONFIG` is given.
pub const DEFAULT_CONFIG_FILE: &str = "airlock.toml";
/// Prefix of env vars that override config keys: `AIRLOCK_STORE__URL` sets `store.url`.
pub const ENV_PREFIX: &str = "AIRLOCK_";

/// One problem in the configuration, located by its key path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    /// Dotted key path, e.g. `instances.prod.password`; empty for file-level problems.
    pub key: String,
    /// What is wrong and, where possible, how to fix it.
    pub message: String,
}

impl ConfigError {
    pub(crate) fn new(key: impl Into<String>, message: impl Into<String>) -> Self {
        Self {
            key: key.into(),
            message: message.into(),
        }
    }
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.key.is_empty() {
            f.write_str(&self.message)
        } else {
            write!(f, "{}: {}", self.key, self.message)
        }
    }
}

/// Every problem found in a configuration file.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    /// The file could not be read.
    #[error("cannot read config file {}: {source}", path.display())]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The file was read but is invalid; every problem is listed.
    #[error("{}", render_invalid(path, errors))]
    Invalid {
        /// The file.
        path: PathBuf,
        /// All problems, in key order.
        errors: Vec<ConfigError>,
    },
}

fn render_invalid(path: &Path, errors: &[ConfigError]) -> String {
    errors
        .iter()
        .map(|e| format!("{}: {e}", path.display()))
        .collect::<Vec<_>>()
        .join("\n")
}

/// Reads, overrides from the process environment, and validates the config at `path`.
pub fn load(path: &Path) -> Result<Config, LoadError> {
    let text = files::read_to_string(path).map_err(|source| LoadError::Read {
        path: path.to_path_buf(),
        source,
    })?;
    let vars: Vec<(String, String)> = std::env::vars().collect();
    load_str(&text, path, &vars)
}

/// Like [`load`], from text and an explicit environment (for tests and `config check`).
pub fn load_str(text: &str, path: &Path, vars: &[(String, String)]) -> Result<Config, LoadError> {
    let invalid = |errors| LoadError::Invalid {
        path: path.to_path_buf(),
        errors,
    };
    let mut value: toml::Table =
        toml::from_str(text).map_err(|e| invalid(vec![toml_error(text, &e)]))?;
    env::apply_overrides(&mut value, vars).map_err(invalid)?;
    let raw: RawConfig =
        serde_path_to_error::deserialize(toml::Value::Table(value)).map_err(|e| {
            let key = e.path().to_string();
            let key = if key == "." { String::new() } else { key };
            invalid(vec![ConfigError::new(
                key,
                e.into_inner().message().to_string(),
            )])
        })?;
    let base_dir = path.parent().map(Path::to_path_buf).unwrap_or_default();
    let lookup = |name: &str| vars.iter().find(|(k, _)| k == name).map(|(_, v)| v.clone());
    validate::validate(raw, &base_dir, &lookup).map_err(invalid)
}

pub(crate) fn toml_error(text: &str, e: &toml::de::Error) -> ConfigError {
    // toml's Display spans several lines with a source excerpt; keep the message and the
    // position so the error stays one line and never echoes a value from the file.
    let msg = e.message().split_whitespace().collect::<Vec<_>>().join(" ");
    let at = e
        .span()
        .map(|s| {
            let before = &text[..s.start.min(text.len())];
            let line = before.matches('\n').count() + 1;
            let col = before.len() - before.rfind('\n').map_or(0, |i| i + 1) + 1;
            format!(" at line {line}, column {col}")
        })
        .unwrap_or_default();
    ConfigError::new("", format!("invalid TOML{at}: {msg}"))
}
