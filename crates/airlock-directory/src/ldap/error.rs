//! Typed errors of the LDAP source.
//!
//! Every error names the server (scheme, host and port only), the operation (connect, bind as
//! which DN, search under which base) and what went wrong, and classifies itself
//! ([`ErrorClass`]) so that callers decide on retries from the class, never from the text. No
//! message carries the bind password: ldap3's errors never contain it, and the server's
//! diagnostic text is scrubbed of it anyway.

use std::fmt;
use std::time::Duration;

/// Whether a retry can help.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorClass {
    /// May succeed if tried again: connection refused or lost, timeouts, server busy or
    /// unavailable.
    Transient,
    /// Will fail again until something changes: credentials, TLS, a base DN that does not exist,
    /// a server limit that cuts the read short, invalid settings or data.
    Permanent,
}

/// What the source was doing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Operation {
    /// Checking the settings before connecting.
    CheckSettings,
    /// Opening the connection (TCP, TLS or StartTLS).
    Connect,
    /// The simple bind.
    Bind {
        /// The bind DN.
        dn: String,
    },
    /// Searching people.
    SearchPeople {
        /// The base DN searched.
        base: String,
    },
    /// Searching groups.
    SearchGroups {
        /// The base DN searched.
        base: String,
    },
    /// Turning the entries read into a snapshot.
    BuildSnapshot,
}

impl fmt::Display for Operation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Operation::CheckSettings => f.write_str("check settings"),
            Operation::Connect => f.write_str("connect"),
            Operation::Bind { dn } => write!(f, "bind as `{dn}`"),
            Operation::SearchPeople { base } => write!(f, "search people under `{base}`"),
            Operation::SearchGroups { base } => write!(f, "search groups under `{base}`"),
            Operation::BuildSnapshot => f.write_str("build the snapshot"),
        }
    }
}

/// What went wrong.
#[derive(Debug, thiserror::Error)]
pub enum ErrorKind {
    /// The settings cannot work; each message names the setting.
    #[error("invalid settings: {}", .0.join("; "))]
    InvalidSettings(Vec<String>),
    /// No connection could be made (refused, unreachable, name not resolved).
    #[error("cannot connect: {0}")]
    Unreachable(String),
    /// The server did not answer in time.
    #[error("no answer within {} ms", .0.as_millis())]
    Timeout(Duration),
    /// The connection broke while waiting for an answer.
    #[error("connection lost: {0}")]
    ConnectionLost(String),
    /// TLS could not be set up: an untrusted or mismatched certificate, a server without TLS,
    /// StartTLS refused.
    #[error("tls failed: {0}")]
    Tls(String),
    /// The server answered with an error result code.
    #[error("server answered {} ({code}){}", result_name(*code), text_suffix(text))]
    Server {
        /// The LDAP result code (RFC 4511 appendix A).
        code: u32,
        /// The server's diagnostic message, if any.
        text: String,
    },
    /// The server answered, but not with everything: a size, time or administrative limit, a
    /// referral airlock does not follow, an attribute sent in ranges. Never turned into a
    /// smaller snapshot.
    #[error("incomplete read: {0}")]
    Incomplete(String),
    /// The entries read cannot make a snapshot (duplicate ids, an id attribute missing).
    #[error("invalid directory data: {0}")]
    InvalidData(String),
    /// The server broke the protocol in a way ldap3 reports.
    #[error("protocol error: {0}")]
    Protocol(String),
}

fn text_suffix(text: &str) -> String {
    let text = text.trim();
    if text.is_empty() {
        String::new()
    } else {
        format!(": {text}")
    }
}

/// A lowercase name for an LDAP result code.
pub fn result_name(code: u32) -> &'static str {
    match code {
        0 => "success",
        1 => "operations error",
        2 => "protocol error",
        3 => "time limit exceeded",
        4 => "size limit exceeded",
        7 => "auth method not supported",
        8 => "stronger auth required",
        10 => "referral",
        11 => "admin limit exceeded",
        12 => "unavailable critical extension",
        13 => "confidentiality required",
        16 => "no such attribute",
        17 => "undefined attribute type",
        18 => "inappropriate matching",
        21 => "invalid attribute syntax",
        32 => "no such object",
        34 => "invalid dn syntax",
        48 => "inappropriate authentication",
        49 => "invalid credentials",
        50 => "insufficient access rights",
        51 => "busy",
        52 => "unavailable",
        53 => "unwilling to perform",
        54 => "loop detected",
        80 => "other",
        _ => "unknown result code",
    }
}

/// Result codes after which the same request may succeed later.
const TRANSIENT_CODES: [u32; 2] = [51, 52];

/// A failed read of one LDAP directory.
#[derive(Debug, thiserror::Error)]
#[error("ldap {server}: {operation}: {kind}")]
pub struct LdapError {
    /// The server: `scheme://host:port`, never credentials.
    pub server: String,
    /// What the source was doing.
    pub operation: Operation,
    /// What went wrong.
    #[source]
    pub kind: ErrorKind,
}

impl LdapError {
    /// Whether and how a retry can help.
    pub fn class(&self) -> ErrorClass {
        match &self.kind {
            ErrorKind::Unreachable(_) | ErrorKind::Timeout(_) | ErrorKind::ConnectionLost(_) => {
                ErrorClass::Transient
            }
            ErrorKind::Server { code, .. } if TRANSIENT_CODES.contains(code) => {
                ErrorClass::Transient
            }
            _ => ErrorClass::Permanent,
        }
    }

    /// Whether the same read might succeed later without any change.
    pub fn is_transient(&self) -> bool {
        self.class() == ErrorClass::Transient
    }

    /// The LDAP result code, when the server answered with one.
    pub fn result_code(&self) -> Option<u32> {
        match self.kind {
            ErrorKind::Server { code, .. } => Some(code),
            _ => None,
        }
    }
}

/// Classifies an ldap3 error. `timeout` is the configured one (ldap3's own message does not
/// say); `secret` is removed from any server text.
pub(crate) fn kind_from(err: ldap3::LdapError, timeout: Duration, secret: &str) -> ErrorKind {
    use ldap3::LdapError as E;
    match err {
        E::Io { source } => io_kind(&source),
        E::Timeout { .. } => ErrorKind::Timeout(timeout),
        E::OpSend { .. }
        | E::ResultRecv { .. }
        | E::IdScrubSend { .. }
        | E::MiscSend { .. }
        | E::EndOfStream => ErrorKind::ConnectionLost("the server closed the connection".into()),
        E::Rustls { source } => ErrorKind::Tls(source.to_string()),
        E::DNSName { source } => ErrorKind::Tls(format!("invalid server name: {source}")),
        E::LdapResult { result } => ErrorKind::Server {
            code: result.rc,
            text: scrub(&result.text, secret),
        },
        E::UrlParsing { source } => ErrorKind::InvalidSettings(vec![format!("url: {source}")]),
        E::UnknownScheme(scheme) => ErrorKind::InvalidSettings(vec![format!(
            "url: unsupported scheme `{scheme}`, use ldap:// or ldaps://"
        )]),
        E::FilterParsing => {
            ErrorKind::InvalidSettings(vec!["a search filter does not parse".into()])
        }
        other => ErrorKind::Protocol(scrub(&other.to_string(), secret)),
    }
}

fn io_kind(err: &std::io::Error) -> ErrorKind {
    use std::io::ErrorKind as Io;
    // tokio-rustls reports handshake failures as I/O errors wrapping the rustls error.
    if let Some(tls) = err
        .get_ref()
        .and_then(|inner| inner.downcast_ref::<rustls::Error>())
    {
        return ErrorKind::Tls(tls.to_string());
    }
    // The OS's messages are capitalised ("Connection refused (os error 111)").
    let message = lowercase_first(&err.to_string());
    match err.kind() {
        Io::ConnectionReset
        | Io::ConnectionAborted
        | Io::BrokenPipe
        | Io::UnexpectedEof
        | Io::NotConnected => ErrorKind::ConnectionLost(message),
        // A non-TLS peer on an ldaps:// port, or garbage where TLS was expected.
        Io::InvalidData => ErrorKind::Tls(message),
        // Refused, unreachable, name resolution: the server is not there (now).
        _ => ErrorKind::Unreachable(message),
    }
}

fn lowercase_first(text: &str) -> String {
    let mut chars = text.chars();
    match chars.next() {
        Some(first) => first.to_lowercase().chain(chars).collect(),
        None => String::new(),
    }
}

/// `text` with every occurrence of `secret` replaced (an empty secret replaces nothing).
pub(crate) fn scrub(text: &str, secret: &str) -> String {
    if secret.is_empty() {
        text.to_owned()
    } else {
        text.replace(secret, "<redacted>")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn error(kind: ErrorKind) -> LdapError {
        LdapError {
            server: "ldaps://ldap.example.com:636".into(),
            operation: Operation::Bind {
                dn: "cn=reader,dc=example,dc=com".into(),
            },
            kind,
        }
    }

    #[test]
    fn messages_name_the_server_and_the_operation_in_one_lowercase_line() {
        let err = error(ErrorKind::Server {
            code: 49,
            text: String::new(),
        });
        assert_eq!(
            err.to_string(),
            "ldap ldaps://ldap.example.com:636: bind as `cn=reader,dc=example,dc=com`: \
             server answered invalid credentials (49)"
        );
        assert_eq!(err.class(), ErrorClass::Permanent);
        assert_eq!(err.result_code(), Some(49));
    }

    #[test]
    fn busy_unavailable_and_network_failures_are_transient() {
        for kind in [
            ErrorKind::Server {
                code: 51,
                text: String::new(),
            },
            ErrorKind::Server {
                code: 52,
                text: String::new(),
            },
            ErrorKind::Unreachable("connection refused".into()),
            ErrorKind::Timeout(Duration::from_secs(1)),
            ErrorKind::ConnectionLost("reset".into()),
        ] {
            assert!(error(kind).is_transient());
        }
        for kind in [
            ErrorKind::Server {
                code: 32,
                text: String::new(),
            },
            ErrorKind::Tls("invalid peer certificate: UnknownIssuer".into()),
            ErrorKind::Incomplete("size limit".into()),
            ErrorKind::InvalidData("duplicate id".into()),
        ] {
            assert!(!error(kind).is_transient());
        }
    }

    #[test]
    fn refused_connections_are_unreachable_and_tls_errors_are_tls() {
        let refused = std::io::Error::from(std::io::ErrorKind::ConnectionRefused);
        assert!(matches!(io_kind(&refused), ErrorKind::Unreachable(_)));
        let tls = std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            rustls::Error::InvalidCertificate(rustls::CertificateError::UnknownIssuer),
        );
        assert!(matches!(io_kind(&tls), ErrorKind::Tls(_)));
    }

    #[test]
    fn server_text_never_repeats_the_password() {
        let err = ldap3::LdapError::LdapResult {
            result: ldap3::LdapResult {
                rc: 49,
                matched: String::new(),
                text: "bad password hunter2 for user".into(),
                refs: vec![],
                ctrls: vec![],
            },
        };
        let kind = kind_from(err, Duration::from_secs(1), "hunter2");
        assert!(!kind.to_string().contains("hunter2"), "{kind}");
    }
}
