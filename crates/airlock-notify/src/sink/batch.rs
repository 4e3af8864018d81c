//! What the HTTP sinks ([`super::hec`], [`super::http`]) share: a buffer of encoded events
//! filled by `send` and emptied by `flush` in batches of `batch_events` audit events, and the
//! HTTP client (no redirects, the sink's timeout, an optional CA file instead of the system's
//! roots). Errors never hold a URL.

use crate::webhook::SendError;
use airlock_audit::{AuditEvent, Format};
use chrono::{DateTime, Utc};
use std::path::Path;
use std::sync::Mutex;
use std::time::Duration;

/// One audit event, encoded: its id and the JSON texts it makes (one per OCSF event).
#[derive(Debug, Clone)]
pub struct Encoded {
    /// The audit event's position in the trail.
    pub seq: u64,
    /// The audit event's id (also `metadata.uid` in OCSF, `id` in jsonl).
    pub id: String,
    /// When it happened.
    pub at: DateTime<Utc>,
    /// The JSON objects it makes, as text (valid JSON, no line breaks).
    pub objects: Vec<String>,
}

impl Encoded {
    /// `event` in `format` (`ocsf` or `jsonl`: each line is one JSON object).
    pub fn new(event: &AuditEvent, format: Format) -> Encoded {
        Encoded {
            seq: event.seq,
            id: event.id.clone(),
            at: event.at,
            objects: format.lines(event, ""),
        }
    }
}

/// Events sent and not yet flushed, with the time of the latest send.
#[derive(Debug, Default)]
pub struct Pending {
    inner: Mutex<(Vec<Encoded>, Option<DateTime<Utc>>)>,
}

impl Pending {
    /// Adds `e`. An event at or before the last one buffered means the delivery loop started a
    /// new round from its cursor (the previous one stopped before its flush): what the old
    /// round buffered is dropped, as it will be sent again in order.
    pub fn push(&self, e: Encoded, now: DateTime<Utc>) {
        let mut inner = self
            .inner
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if inner.0.last().is_some_and(|last| last.seq >= e.seq) {
            inner.0.clear();
        }
        inner.0.push(e);
        inner.1 = Some(now);
    }

    /// Everything buffered, and the time of the latest send; the buffer is empty after.
    pub fn take(&self) -> (Vec<Encoded>, Option<DateTime<Utc>>) {
        std::mem::take(
            &mut *self
                .inner
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner),
        )
    }
}

/// An HTTP client for a sink: no redirects (a redirect could send the events, or the token,
/// elsewhere), `timeout` for each request, and with `ca_file` its certificates as the only
/// roots.
pub fn client(timeout: Duration, ca_file: Option<&Path>) -> Result<reqwest::Client, SendError> {
    let mut builder = reqwest::Client::builder()
        .timeout(timeout)
        .connect_timeout(timeout)
        .redirect(reqwest::redirect::Policy::none())
        .user_agent(concat!("airlock/", env!("CARGO_PKG_VERSION")));
    if let Some(path) = ca_file {
        let pem = std::fs::read(path)
            .map_err(|e| SendError::Setup(format!("cannot read {}: {e}", path.display())))?;
        let certs = reqwest::Certificate::from_pem_bundle(&pem).map_err(|e| {
            SendError::Setup(format!(
                "{} holds no PEM certificates: {}",
                path.display(),
                e.without_url()
            ))
        })?;
        if certs.is_empty() {
            return Err(SendError::Setup(format!(
                "{} holds no PEM certificates",
                path.display()
            )));
        }
        builder = builder.tls_built_in_root_certs(false);
        for cert in certs {
            builder = builder.add_root_certificate(cert);
        }
    }
    builder
        .build()
        .map_err(|e| SendError::Setup(format!("the HTTP client: {}", e.without_url())))
}

/// A failed request as a [`SendError`], without the URL.
pub fn transport(e: reqwest::Error) -> SendError {
    let e = e.without_url();
    if e.is_timeout() {
        SendError::Transport("the request timed out".into())
    } else {
        SendError::Transport(e.to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn enc(seq: u64) -> Encoded {
        Encoded {
            seq,
            id: format!("id{seq}"),
            at: Utc::now(),
            objects: vec!["{}".into()],
        }
    }

    #[test]
    fn a_new_round_drops_what_the_old_one_buffered() {
        let p = Pending::default();
        let now = Utc::now();
        p.push(enc(1), now);
        p.push(enc(2), now);
        // The round stopped before its flush; the next one starts again at 1.
        p.push(enc(1), now);
        let (got, at) = p.take();
        assert_eq!(got.iter().map(|e| e.seq).collect::<Vec<_>>(), vec![1]);
        assert_eq!(at, Some(now));
        assert!(p.take().0.is_empty());
    }

    #[test]
    fn a_ca_file_without_certificates_is_a_setup_error() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("ca.pem");
        std::fs::write(&path, "not a certificate").expect("write");
        assert!(matches!(
            client(Duration::from_secs(1), Some(&path)),
            Err(SendError::Setup(_))
        ));
    }
}
