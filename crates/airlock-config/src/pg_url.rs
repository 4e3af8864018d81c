//! PostgreSQL store URLs: the TLS settings a URL asks for, whether airlock accepts them, and
//! the URL handed to the driver (docs/adr/0007).
//!
//! Pure: reads no file and no environment variable. Config validation and the store's opener
//! both call [`PgUrl::parse`], so `airlock config check` and opening the store refuse the same
//! URLs; checking that the named files can be read is left to them.
//!
//! The rules: `verify-full` (with `sslrootcert`) and `require` are accepted for any host;
//! `disable`, `allow`, `prefer` and no `sslmode` at all only for a loopback address or a Unix
//! socket, because each of them may talk plaintext; `verify-ca` is refused (the driver would
//! also accept any public CA's certificate for any host name). No parameter is silently
//! ignored: an unknown or repeated parameter, or a CA file the chosen mode would not check, is
//! an error. No message here contains the URL or a parameter's value that could be a secret.

use std::fmt;
use std::net::IpAddr;
use std::path::PathBuf;

use url::Url;

/// The query parameters airlock passes to its PostgreSQL driver (libpq's names).
pub const ACCEPTED_PARAMETERS: [&str; 12] = [
    "sslmode",
    "sslrootcert",
    "sslcert",
    "sslkey",
    "host",
    "hostaddr",
    "port",
    "dbname",
    "user",
    "password",
    "application_name",
    "options",
];

/// `sslrootcert=system`: the public CAs built into airlock (Mozilla's list), as in libpq 16.
pub const SYSTEM_ROOTS: &str = "system";

/// libpq's `sslmode`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SslMode {
    /// Plaintext only.
    Disable,
    /// Plaintext (the driver never tries TLS for it).
    Allow,
    /// TLS if the server offers it, else plaintext (libpq's default).
    Prefer,
    /// TLS, without checking the server's certificate.
    Require,
    /// TLS, certificate checked against a CA but not against the host name (refused).
    VerifyCa,
    /// TLS, certificate checked against a CA and the host name.
    VerifyFull,
}

impl SslMode {
    const ALL: [SslMode; 6] = [
        SslMode::Disable,
        SslMode::Allow,
        SslMode::Prefer,
        SslMode::Require,
        SslMode::VerifyCa,
        SslMode::VerifyFull,
    ];

    /// The URL spelling (`verify-full`).
    pub fn as_str(self) -> &'static str {
        match self {
            SslMode::Disable => "disable",
            SslMode::Allow => "allow",
            SslMode::Prefer => "prefer",
            SslMode::Require => "require",
            SslMode::VerifyCa => "verify-ca",
            SslMode::VerifyFull => "verify-full",
        }
    }

    /// Whether a connection in this mode may run without TLS.
    pub fn may_be_plaintext(self) -> bool {
        matches!(self, SslMode::Disable | SslMode::Allow | SslMode::Prefer)
    }
}

impl fmt::Display for SslMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Which CAs a `verify-full` connection trusts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RootCert {
    /// `sslrootcert=system`: the public CAs built into airlock.
    System,
    /// A PEM file of CA certificates (absolute path). The driver trusts the public CAs too.
    File(PathBuf),
}

/// Why a PostgreSQL store URL is refused. Messages are one line and never contain the URL.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum PgUrlError {
    /// The text is not a URL.
    #[error("invalid PostgreSQL URL: {0}")]
    Unparsable(url::ParseError),
    /// No host in the URL nor in `host=`.
    #[error("the PostgreSQL URL names no host; write one (127.0.0.1, db.example.com, or host=/path/to/socket/dir)")]
    NoHost,
    /// A query parameter airlock does not pass on.
    #[error("unknown parameter {key} in the PostgreSQL URL (accepted: {})", ACCEPTED_PARAMETERS.join(", "))]
    UnknownParameter {
        /// The parameter's name (or a placeholder if it does not look like a name).
        key: String,
    },
    /// A query parameter given twice (the driver would silently take one of them).
    #[error("parameter {key} appears more than once in the PostgreSQL URL")]
    RepeatedParameter {
        /// The parameter's name.
        key: &'static str,
    },
    /// `sslmode` is not one of libpq's values.
    #[error(
        "sslmode {value} is not one of disable, allow, prefer, require, verify-ca, verify-full"
    )]
    BadSslMode {
        /// The value given (or a placeholder if it does not look like a mode).
        value: String,
    },
    /// `sslmode=verify-ca`.
    #[error("sslmode=verify-ca is not supported: airlock's PostgreSQL driver also trusts the public CAs and would then accept any of their certificates for any host name; use sslmode=verify-full with sslrootcert")]
    VerifyCaUnsupported,
    /// A mode that may be plaintext, to a host that is not loopback.
    #[error("{mode} may send the password and every query in plaintext to {host}, which is not a loopback address; use sslmode=verify-full&sslrootcert=/path/to/ca.pem (or sslmode=require: encrypted, but the server is not authenticated)")]
    Plaintext {
        /// `sslmode=prefer`, or "no sslmode (prefer)".
        mode: String,
        /// The host (not a secret).
        host: String,
    },
    /// `verify-full` without `sslrootcert`.
    #[error("sslmode=verify-full needs sslrootcert: the absolute path of a PEM file with the CA that signed the server's certificate, or sslrootcert=system for the public CAs built into airlock")]
    RootCertNeeded,
    /// `sslrootcert` with a mode that does not check the certificate.
    #[error("sslrootcert is not used with sslmode={mode}, which does not check the server's certificate; use sslmode=verify-full")]
    RootCertUnused {
        /// The mode given.
        mode: SslMode,
    },
    /// A file parameter with a relative path (relative to what the process runs in).
    #[error("{param} must be an absolute path")]
    RelativePath {
        /// `sslrootcert`, `sslcert` or `sslkey`.
        param: &'static str,
    },
    /// Only one of `sslcert` and `sslkey`.
    #[error("sslcert and sslkey must be given together (a client certificate and its key)")]
    ClientCertHalf,
}

/// A PostgreSQL store URL that airlock accepts; see the module docs.
#[derive(Clone)]
pub struct PgUrl {
    /// The TLS mode the driver will use (given, or `prefer` when absent).
    pub mode: SslMode,
    /// The CAs trusted (`verify-full` only).
    pub root_cert: Option<RootCert>,
    /// A client certificate and its key, if given.
    pub client_cert: Option<(PathBuf, PathBuf)>,
    /// The host connected to (a name, an address, or a Unix socket directory).
    pub host: String,
    /// The URL for the driver: `sslmode` always explicit (so `PGSSLMODE` cannot change it),
    /// `sslrootcert=system` dropped (the driver's default trust). Holds the password.
    driver_url: String,
}

impl fmt::Debug for PgUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PgUrl")
            .field("mode", &self.mode)
            .field("root_cert", &self.root_cert)
            .field("client_cert", &self.client_cert)
            .field("host", &self.host)
            .finish_non_exhaustive()
    }
}

impl PgUrl {
    /// Parses and checks a `postgres://` / `postgresql://` URL.
    pub fn parse(text: &str) -> Result<PgUrl, PgUrlError> {
        let url = Url::parse(text).map_err(PgUrlError::Unparsable)?;
        let mut host = url.host_str().filter(|h| !h.is_empty()).map(str::to_owned);
        let mut mode = None;
        let mut root_cert = None;
        let mut sslcert = None;
        let mut sslkey = None;
        let mut seen: Vec<&'static str> = Vec::new();
        for (key, value) in url.query_pairs() {
            let Some(&name) = ACCEPTED_PARAMETERS.iter().find(|&&name| name == key) else {
                return Err(PgUrlError::UnknownParameter {
                    key: shown(&key, "(a parameter that is not a name)"),
                });
            };
            if seen.contains(&name) && name != "options" {
                return Err(PgUrlError::RepeatedParameter { key: name });
            }
            seen.push(name);
            match name {
                "sslmode" => {
                    mode = Some(
                        SslMode::ALL
                            .into_iter()
                            .find(|m| m.as_str() == value)
                            .ok_or_else(|| PgUrlError::BadSslMode {
                                value: shown(&value, "(a value that is not a mode)"),
                            })?,
                    );
                }
                "sslrootcert" if value == SYSTEM_ROOTS => root_cert = Some(RootCert::System),
                "sslrootcert" => root_cert = Some(RootCert::File(absolute(&value, name)?)),
                "sslcert" => sslcert = Some(absolute(&value, name)?),
                "sslkey" => sslkey = Some(absolute(&value, name)?),
                // The driver takes the last of them, in order, as the host.
                "host" | "hostaddr" => host = Some(value.into_owned()).filter(|h| !h.is_empty()),
                _ => {}
            }
        }
        let host = host.ok_or(PgUrlError::NoHost)?;
        let client_cert = match (sslcert, sslkey) {
            (Some(cert), Some(key)) => Some((cert, key)),
            (None, None) => None,
            _ => return Err(PgUrlError::ClientCertHalf),
        };

        let effective = mode.unwrap_or(SslMode::Prefer);
        match effective {
            SslMode::VerifyCa => return Err(PgUrlError::VerifyCaUnsupported),
            SslMode::VerifyFull if root_cert.is_none() => return Err(PgUrlError::RootCertNeeded),
            SslMode::VerifyFull => {}
            other if root_cert.is_some() => return Err(PgUrlError::RootCertUnused { mode: other }),
            other if other.may_be_plaintext() && !is_local(&host) => {
                return Err(PgUrlError::Plaintext {
                    mode: match mode {
                        Some(m) => format!("sslmode={m}"),
                        None => {
                            "no sslmode (the default, prefer, falls back to plaintext)".to_owned()
                        }
                    },
                    host: shown(&host, "the host"),
                });
            }
            _ => {}
        }

        let mut driver = url.clone();
        let kept: Vec<(String, String)> = url
            .query_pairs()
            .filter(|(key, value)| {
                key != "sslmode" && !(key == "sslrootcert" && value == SYSTEM_ROOTS)
            })
            .map(|(key, value)| (key.into_owned(), value.into_owned()))
            .collect();
        driver
            .query_pairs_mut()
            .clear()
            .extend_pairs(kept)
            .append_pair("sslmode", effective.as_str());
        Ok(PgUrl {
            mode: effective,
            root_cert,
            client_cert,
            host,
            driver_url: driver.into(),
        })
    }

    /// The URL to give the driver (holds the password: never show it).
    pub fn driver_url(&self) -> &str {
        &self.driver_url
    }

    /// The files the driver will read, with the parameter naming each.
    pub fn files(&self) -> Vec<(&'static str, &PathBuf)> {
        let mut files = Vec::new();
        if let Some(RootCert::File(path)) = &self.root_cert {
            files.push(("sslrootcert", path));
        }
        if let Some((cert, key)) = &self.client_cert {
            files.push(("sslcert", cert));
            files.push(("sslkey", key));
        }
        files
    }
}

/// Whether `host` is this machine: a loopback address, `localhost`, or a Unix socket directory.
pub fn is_local(host: &str) -> bool {
    if host.starts_with('/') || host.get(..3).is_some_and(|p| p.eq_ignore_ascii_case("%2f")) {
        return true;
    }
    let bare = host
        .strip_prefix('[')
        .and_then(|h| h.strip_suffix(']'))
        .unwrap_or(host);
    match bare.parse::<IpAddr>() {
        Ok(ip) => ip.is_loopback(),
        Err(_) => bare.eq_ignore_ascii_case("localhost"),
    }
}

fn absolute(value: &str, param: &'static str) -> Result<PathBuf, PgUrlError> {
    let path = PathBuf::from(value);
    if path.is_absolute() {
        Ok(path)
    } else {
        Err(PgUrlError::RelativePath { param })
    }
}

/// `text` if it looks like a name, mode or host (short, no spaces or odd characters), else
/// `placeholder`: a mistyped parameter may hold a secret, which must not reach a message.
fn shown(text: &str, placeholder: &str) -> String {
    let plain = !text.is_empty()
        && text.len() <= 64
        && text
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.' | ':' | '[' | ']'));
    if plain {
        text.to_owned()
    } else {
        placeholder.to_owned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn err(url: &str) -> PgUrlError {
        PgUrl::parse(url).expect_err(url)
    }

    #[test]
    fn verify_full_with_a_ca_file_is_accepted_for_any_host() {
        let url = PgUrl::parse(
            "postgres://u:pw@db.example.com:5432/airlock?sslmode=verify-full&sslrootcert=/etc/ca.pem",
        )
        .expect("valid");
        assert_eq!(url.mode, SslMode::VerifyFull);
        assert_eq!(url.root_cert, Some(RootCert::File("/etc/ca.pem".into())));
        assert_eq!(
            url.files(),
            vec![("sslrootcert", &PathBuf::from("/etc/ca.pem"))]
        );
        assert!(url.driver_url().contains("sslmode=verify-full"));
        assert!(url.driver_url().contains("sslrootcert=%2Fetc%2Fca.pem"));
    }

    #[test]
    fn system_roots_are_left_to_the_driver() {
        let url =
            PgUrl::parse("postgres://u@db.example.com/a?sslrootcert=system&sslmode=verify-full")
                .expect("valid");
        assert_eq!(url.root_cert, Some(RootCert::System));
        assert_eq!(
            url.driver_url(),
            "postgres://u@db.example.com/a?sslmode=verify-full"
        );
    }

    #[test]
    fn require_is_accepted_for_any_host_but_not_with_a_ca_file() {
        assert_eq!(
            PgUrl::parse("postgres://u@10.0.0.5/a?sslmode=require")
                .expect("valid")
                .mode,
            SslMode::Require
        );
        assert_eq!(
            err("postgres://u@10.0.0.5/a?sslmode=require&sslrootcert=/ca.pem"),
            PgUrlError::RootCertUnused {
                mode: SslMode::Require
            }
        );
    }

    #[test]
    fn modes_that_may_be_plaintext_are_refused_for_remote_hosts() {
        for url in [
            "postgres://u:pw@db.example.com/a",
            "postgres://u:pw@db.example.com/a?sslmode=prefer",
            "postgres://u:pw@db.example.com/a?sslmode=allow",
            "postgres://u:pw@10.1.2.3/a?sslmode=disable",
            "postgres://u:pw@127.0.0.1/a?host=db.example.com",
        ] {
            let e = err(url);
            assert!(matches!(e, PgUrlError::Plaintext { .. }), "{url}: {e:?}");
            assert!(!e.to_string().contains("pw"), "{e}");
        }
        assert!(err("postgres://u@db.example.com/a")
            .to_string()
            .starts_with("no sslmode (the default, prefer, falls back to plaintext) may send"));
    }

    #[test]
    fn modes_that_may_be_plaintext_are_accepted_on_this_machine() {
        for url in [
            "postgres://u@127.0.0.1:5432/a",
            "postgres://u@127.8.0.1/a?sslmode=disable",
            "postgres://u@localhost/a?sslmode=prefer",
            "postgres://u@[::1]/a?sslmode=allow",
            "postgres://u@%2Fvar%2Frun%2Fpostgresql/a",
            "postgres:///a?host=/var/run/postgresql",
        ] {
            let parsed = PgUrl::parse(url).unwrap_or_else(|e| panic!("{url}: {e}"));
            assert!(parsed.driver_url().contains("sslmode="), "{url}");
        }
        // Absent means prefer, written out so that PGSSLMODE cannot change it.
        assert!(PgUrl::parse("postgres://u@127.0.0.1/a")
            .expect("valid")
            .driver_url()
            .ends_with("?sslmode=prefer"));
    }

    #[test]
    fn verify_ca_is_refused() {
        assert_eq!(
            err("postgres://u@db/a?sslmode=verify-ca&sslrootcert=/ca.pem"),
            PgUrlError::VerifyCaUnsupported
        );
    }

    #[test]
    fn verify_full_needs_a_root_cert() {
        assert_eq!(
            err("postgres://u@db/a?sslmode=verify-full"),
            PgUrlError::RootCertNeeded
        );
    }

    #[test]
    fn a_bad_mode_is_named_but_a_secret_looking_value_is_not() {
        let e = err("postgres://u@127.0.0.1/a?sslmode=verify_full");
        assert!(
            e.to_string()
                .starts_with("sslmode verify_full is not one of"),
            "{e}"
        );
        let e = err("postgres://u@127.0.0.1/a?sslmode=p%40ss%20word!");
        assert!(!e.to_string().contains("p@ss"), "{e}");
    }

    #[test]
    fn unknown_and_repeated_parameters_are_refused() {
        let e = err("postgres://u@127.0.0.1/a?sslrootcrt=/ca.pem");
        assert!(
            e.to_string().starts_with("unknown parameter sslrootcrt"),
            "{e}"
        );
        // sqlx would log an unknown parameter's value: a secret one must never get there.
        let e = err("postgres://u@127.0.0.1/a?sslpassword=hunter2");
        assert!(!e.to_string().contains("hunter2"), "{e}");
        assert_eq!(
            err("postgres://u@db/a?sslmode=require&sslmode=disable"),
            PgUrlError::RepeatedParameter { key: "sslmode" }
        );
    }

    #[test]
    fn the_drivers_aliases_cannot_slip_a_mode_past_the_check() {
        // sqlx also reads ssl-mode, ssl-root-cert and ssl-ca: were they passed on, a URL could
        // say sslmode=require here and ssl-mode=disable to the driver.
        for url in [
            "postgres://u@db/a?sslmode=require&ssl-mode=disable",
            "postgres://u@db/a?ssl-mode=disable",
            "postgres://u@db/a?sslmode=require&ssl-root-cert=/ca.pem",
            "postgres://u@db/a?sslmode=require&ssl-ca=/ca.pem",
        ] {
            assert!(
                matches!(err(url), PgUrlError::UnknownParameter { .. }),
                "{url}"
            );
        }
    }

    #[test]
    fn file_parameters_must_be_absolute_and_client_certs_whole() {
        assert_eq!(
            err("postgres://u@db/a?sslmode=verify-full&sslrootcert=ca.pem"),
            PgUrlError::RelativePath {
                param: "sslrootcert"
            }
        );
        assert_eq!(
            err("postgres://u@db/a?sslmode=require&sslcert=/c.pem"),
            PgUrlError::ClientCertHalf
        );
    }

    #[test]
    fn a_url_without_a_host_is_refused() {
        assert_eq!(err("postgres:///airlock"), PgUrlError::NoHost);
    }

    #[test]
    fn debug_never_shows_the_password() {
        let url = PgUrl::parse("postgres://u:s3cr3t@127.0.0.1/a?password=hunter2").expect("valid");
        let debug = format!("{url:?}");
        assert!(
            !debug.contains("s3cr3t") && !debug.contains("hunter2"),
            "{debug}"
        );
    }
}
