//! Secrets: read from an env var, a file, or (discouraged) the config itself, and held in a
//! [`SecretString`] whose `Debug` never prints the value.

pub use secrecy::SecretString;
use serde::{Deserialize, Deserializer};
use std::path::PathBuf;

/// Where a secret comes from, as written in the config:
/// `password = { env = "AIRFLOW_PASSWORD" }`, `password = { file = "/run/secrets/airflow" }`
/// or `password = "literal"`.
#[derive(Clone, PartialEq, Eq)]
pub enum SecretSource {
    /// Read from this environment variable.
    Env(String),
    /// Read from this file (trailing newline trimmed).
    File(PathBuf),
    /// Written in the config file or given through an `AIRLOCK_*` override.
    Literal(String),
}

impl std::fmt::Debug for SecretSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            SecretSource::Env(v) => write!(f, "Env({v:?})"),
            SecretSource::File(p) => write!(f, "File({p:?})"),
            SecretSource::Literal(_) => f.write_str("Literal([redacted])"),
        }
    }
}

impl<'de> Deserialize<'de> for SecretSource {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        use serde::de::Error;
        #[derive(Deserialize)]
        #[serde(deny_unknown_fields)]
        struct Table {
            env: Option<String>,
            file: Option<PathBuf>,
        }
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Raw {
            Literal(String),
            Table(Table),
        }
        // The untagged enum's own error ("did not match any variant") teaches nothing.
        let hint = "expected a string, { env = \"VAR\" } or { file = \"/path\" }";
        match Raw::deserialize(d).map_err(|_| D::Error::custom(hint))? {
            Raw::Literal(s) => Ok(SecretSource::Literal(s)),
            Raw::Table(Table {
                env: Some(v),
                file: None,
            }) => Ok(SecretSource::Env(v)),
            Raw::Table(Table {
                env: None,
                file: Some(p),
            }) => Ok(SecretSource::File(p)),
            Raw::Table(_) => Err(D::Error::custom(format!(
                "give exactly one of `env` or `file`; {hint}"
            ))),
        }
    }
}

impl SecretSource {
    /// Resolves the secret. Errors name the env var or file, never the value.
    pub(crate) fn resolve(
        &self,
        base_dir: &std::path::Path,
        lookup: &dyn Fn(&str) -> Option<String>,
    ) -> Result<SecretString, String> {
        let value = match self {
            SecretSource::Env(var) => {
                lookup(var).ok_or_else(|| format!("environment variable {var} is not set"))?
            }
            SecretSource::File(path) => {
                let path = if path.is_absolute() {
                    path.clone()
                } else {
                    base_dir.join(path)
                };
                crate::files::read_to_string(&path)
                    .map_err(|e| format!("cannot read secret file {}: {e}", path.display()))?
                    .trim_end_matches(['\n', '\r'])
                    .to_string()
            }
            SecretSource::Literal(v) => v.clone(),
        };
        if value.is_empty() {
            return Err(match self {
                SecretSource::Env(var) => format!("environment variable {var} is empty"),
                SecretSource::File(p) => format!("secret file {} is empty", p.display()),
                SecretSource::Literal(_) => "must not be empty".to_string(),
            });
        }
        Ok(SecretString::from(value))
    }
}
