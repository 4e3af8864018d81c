//! `[audit.checkpoints]`: signed checkpoints of the audit chain, written outside the database.
//!
//! Validation reads the signing key file (it must be a regular file that only its owner can
//! read or write, mode 0600 or stricter, holding an airlock/Go signed-note signing key whose
//! name is `key_name`) so that a misplaced or exposed key stops the command before anything is
//! built. Errors name the file, never its contents.

use crate::ConfigError;
use airlock_audit::note::NoteSigner;
use serde::Deserialize;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// `[audit]`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawAudit {
    /// Signed checkpoints of the audit chain (off when absent).
    pub checkpoints: Option<RawCheckpoints>,
    /// Where `airlock serve` ships the trail.
    #[serde(default)]
    pub sinks: Vec<crate::sinks::RawSink>,
}

/// `[audit.checkpoints]`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawCheckpoints {
    /// The private key file written by `airlock audit keygen` (mode 0600), relative to
    /// this file.
    pub signing_key_file: PathBuf,
    /// The key's name, also the checkpoints' origin line (e.g. `airlock.example.com/prod`);
    /// must be the name inside the key file.
    pub key_name: String,
    /// A file replaced (atomically) by each new checkpoint.
    pub file: Option<PathBuf>,
    /// A directory receiving each checkpoint as a new file named by its size.
    pub directory: Option<PathBuf>,
    /// An `https://` URL each checkpoint is POSTed to (`http://` only to a loopback host).
    pub url: Option<String>,
    /// `airlock serve`: seconds between checkpoints, written only when the chain grew
    /// (default 3600, 1 to 86400).
    pub interval_secs: Option<u64>,
    /// Timeout of the POST to `url`, in seconds (default 30).
    pub timeout_secs: Option<u64>,
}

/// `[audit]`, validated.
#[derive(Debug, Clone, Default)]
pub struct AuditConfig {
    /// Signed checkpoints, when configured.
    pub checkpoints: Option<CheckpointConfig>,
    /// Where `airlock serve` ships the trail.
    pub sinks: Vec<crate::sinks::SinkConfig>,
}

/// `[audit.checkpoints]`, validated: the key is read and checked.
#[derive(Debug, Clone)]
pub struct CheckpointConfig {
    /// The signing key (its `Debug` hides the key).
    pub signer: NoteSigner,
    /// Where the key was read from (absolute).
    pub key_file: PathBuf,
    /// A file replaced by each checkpoint (absolute).
    pub file: Option<PathBuf>,
    /// A directory receiving one file per checkpoint (absolute).
    pub directory: Option<PathBuf>,
    /// A URL each checkpoint is POSTed to.
    pub url: Option<url::Url>,
    /// Time between checkpoints in `airlock serve`.
    pub interval: Duration,
    /// Timeout of the POST to `url`.
    pub timeout: Duration,
}

const KEY: &str = "audit.checkpoints";

pub(crate) fn validate(
    raw: RawAudit,
    base_dir: &Path,
    lookup: &dyn Fn(&str) -> Option<String>,
    errors: &mut Vec<ConfigError>,
) -> AuditConfig {
    let sinks = crate::sinks::validate(raw.sinks, base_dir, lookup, errors);
    let Some(raw) = raw.checkpoints else {
        return AuditConfig {
            checkpoints: None,
            sinks,
        };
    };
    let abs = |p: PathBuf| if p.is_absolute() { p } else { base_dir.join(p) };
    let key_file = abs(raw.signing_key_file);
    let signer = match read_signer(&key_file) {
        Ok(signer) => Some(signer),
        Err(m) => {
            errors.push(ConfigError::new(format!("{KEY}.signing_key_file"), m));
            None
        }
    };
    if let Some(s) = &signer {
        if s.name() != raw.key_name {
            errors.push(ConfigError::new(
                format!("{KEY}.key_name"),
                format!(
                    "`{}` is not the name of the key in {} (`{}`); set key_name to it, or generate a key with this name",
                    raw.key_name,
                    key_file.display(),
                    s.name()
                ),
            ));
        }
    }
    let url = raw.url.and_then(|u| match checkpoint_url(&u) {
        Ok(url) => Some(url),
        Err(m) => {
            errors.push(ConfigError::new(format!("{KEY}.url"), m));
            None
        }
    });
    if raw.file.is_none() && raw.directory.is_none() && url.is_none() {
        errors.push(ConfigError::new(
            KEY,
            "no destination: set `file`, `directory` or `url` (outside the database, where a writer of the database cannot reach)",
        ));
    }
    let interval = raw.interval_secs.unwrap_or(3600);
    if !(1..=86_400).contains(&interval) {
        errors.push(ConfigError::new(
            format!("{KEY}.interval_secs"),
            "must be between 1 and 86400",
        ));
    }
    let timeout = raw.timeout_secs.unwrap_or(30);
    if !(1..=600).contains(&timeout) {
        errors.push(ConfigError::new(
            format!("{KEY}.timeout_secs"),
            "must be between 1 and 600",
        ));
    }
    AuditConfig {
        checkpoints: signer.map(|signer| CheckpointConfig {
            signer,
            key_file,
            file: raw.file.map(abs),
            directory: raw.directory.map(abs),
            url,
            interval: Duration::from_secs(interval),
            timeout: Duration::from_secs(timeout),
        }),
        sinks,
    }
}

/// Reads the signing key, refusing a file that others may read or write.
fn read_signer(path: &Path) -> Result<NoteSigner, String> {
    let shown = path.display();
    let meta = std::fs::metadata(path)
        .map_err(|e| format!("cannot read signing key file {shown}: {e}"))?;
    if !meta.is_file() {
        return Err(format!("signing key file {shown} is not a regular file"));
    }
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt as _;
        let mode = meta.permissions().mode() & 0o777;
        if mode & 0o077 != 0 {
            return Err(format!(
                "signing key file {shown} is accessible to group or others (mode {mode:04o}); run chmod 600 {shown}"
            ));
        }
    }
    let text = crate::files::read_to_string(path)
        .map_err(|e| format!("cannot read signing key file {shown}: {e}"))?;
    NoteSigner::parse(&text).map_err(|e| {
        format!("signing key file {shown} holds no usable key ({e}); write one with `airlock audit keygen`")
    })
}

fn checkpoint_url(text: &str) -> Result<url::Url, String> {
    let url = url::Url::parse(text).map_err(|e| format!("not a URL: {e}"))?;
    let loopback = match url.host() {
        Some(url::Host::Domain(d)) => d.eq_ignore_ascii_case("localhost"),
        Some(url::Host::Ipv4(ip)) => ip.is_loopback(),
        Some(url::Host::Ipv6(ip)) => ip.is_loopback(),
        None => false,
    };
    match url.scheme() {
        "https" => Ok(url),
        "http" if loopback => Ok(url),
        _ => Err("must be an https:// URL (http:// only to a loopback host)".into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const KEY_TEXT: &str =
        "PRIVATE+KEY+PeterNeumann+c74f20a3+AYEKFALVFGyNhPJEMzD1QIDr+Y7hfZx09iUvxdXHKDFz\n";

    fn raw(dir: &Path) -> RawCheckpoints {
        RawCheckpoints {
            signing_key_file: dir.join("key"),
            key_name: "PeterNeumann".into(),
            file: Some("checkpoint".into()),
            directory: None,
            url: None,
            interval_secs: None,
            timeout_secs: None,
        }
    }

    fn key_file(dir: &Path, mode: u32) {
        use std::os::unix::fs::PermissionsExt as _;
        let path = dir.join("key");
        std::fs::write(&path, KEY_TEXT).expect("write");
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode)).expect("chmod");
    }

    fn check(raw: RawCheckpoints, dir: &Path) -> (AuditConfig, Vec<ConfigError>) {
        let mut errors = Vec::new();
        let cfg = validate(
            RawAudit {
                checkpoints: Some(raw),
                sinks: Vec::new(),
            },
            dir,
            &|_| None,
            &mut errors,
        );
        (cfg, errors)
    }

    #[test]
    fn a_private_key_file_is_read_and_paths_are_anchored() {
        let dir = tempfile::tempdir().expect("tempdir");
        key_file(dir.path(), 0o600);
        let (cfg, errors) = check(raw(dir.path()), dir.path());
        assert_eq!(errors, vec![]);
        let cp = cfg.checkpoints.expect("configured");
        assert_eq!(cp.signer.name(), "PeterNeumann");
        assert_eq!(cp.file, Some(dir.path().join("checkpoint")));
        assert_eq!(cp.interval, Duration::from_secs(3600));
        assert!(!format!("{cp:?}").contains("AYEK"), "Debug hides the key");
    }

    #[test]
    fn a_missing_exposed_or_misnamed_key_is_one_error_naming_the_file() {
        let dir = tempfile::tempdir().expect("tempdir");
        let (_, errors) = check(raw(dir.path()), dir.path());
        assert_eq!(errors.len(), 1);
        assert_eq!(errors[0].key, "audit.checkpoints.signing_key_file");
        assert!(errors[0].message.starts_with(&format!(
            "cannot read signing key file {}",
            dir.path().join("key").display()
        )));

        key_file(dir.path(), 0o640);
        let (_, errors) = check(raw(dir.path()), dir.path());
        assert_eq!(errors.len(), 1);
        assert!(errors[0].message.contains("mode 0640"), "{}", errors[0]);
        assert!(!errors[0].message.contains("AYEK"));

        key_file(dir.path(), 0o600);
        let mut misnamed = raw(dir.path());
        misnamed.key_name = "other".into();
        let (_, errors) = check(misnamed, dir.path());
        assert_eq!(errors.len(), 1);
        assert_eq!(errors[0].key, "audit.checkpoints.key_name");

        std::fs::write(dir.path().join("key"), "PRIVATE+KEY+x\n").expect("write");
        let (_, errors) = check(raw(dir.path()), dir.path());
        assert!(
            errors[0].message.contains("holds no usable key"),
            "{}",
            errors[0]
        );
    }

    #[test]
    fn destinations_are_required_and_urls_must_be_https_unless_loopback() {
        let dir = tempfile::tempdir().expect("tempdir");
        key_file(dir.path(), 0o600);
        let mut none = raw(dir.path());
        none.file = None;
        let (_, errors) = check(none, dir.path());
        assert_eq!(errors[0].key, "audit.checkpoints");
        for (url, ok) in [
            ("https://witness.example.com/airlock", true),
            ("http://127.0.0.1:8080/cp", true),
            ("http://localhost/cp", true),
            ("http://witness.example.com/cp", false),
            ("ftp://127.0.0.1/cp", false),
        ] {
            let mut r = raw(dir.path());
            r.url = Some(url.into());
            let (_, errors) = check(r, dir.path());
            assert_eq!(errors.is_empty(), ok, "{url}: {errors:?}");
        }
    }
}
