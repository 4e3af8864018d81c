//! Audit sinks (`[[audit.sinks]]`): the whole trail shipped to a collector, at least once, by
//! the same delivery loop as the webhooks ([`crate::deliver`]), under the lease `sink:<name>`
//! and from the cursor `sink:<name>`. [`outlet`] builds the outlet of a sink's kind.
//!
//! - [`syslog`]: RFC 5424 over TCP with octet counting.
//! - [`hec`]: Splunk's HTTP Event Collector, with indexer acknowledgement.
//! - [`http`]: JSON batches POSTed to any HTTP receiver, optionally signed.
//! - [`batch`]: what the two HTTP sinks share (the buffer, the client).

pub mod batch;
pub mod hec;
pub mod http;
pub mod syslog;

use crate::deliver::Outlet;
use crate::webhook::SendError;
use airlock_config::{SinkConfig, SinkKind, SyslogTransport};
use std::sync::Arc;

pub use hec::SplunkHec;
pub use http::WebhookSink;
pub use syslog::SyslogTcp;

/// A sink's cursor and lease name.
pub fn cursor_of(name: &str) -> String {
    format!("sink:{name}")
}

/// The outlet of `cfg`; `default_hostname` names this machine in syslog messages when the
/// config does not. Fails when something the sink needs cannot be set up (a CA file, a file).
pub fn outlet(cfg: &SinkConfig, default_hostname: &str) -> Result<Arc<dyn Outlet>, SendError> {
    match &cfg.kind {
        SinkKind::Syslog(s) if s.transport == SyslogTransport::Tcp => {
            Ok(Arc::new(SyslogTcp::new(cfg.clone(), s, default_hostname)))
        }
        SinkKind::SplunkHec(h) => Ok(Arc::new(SplunkHec::new(cfg, h, default_hostname)?)),
        SinkKind::Webhook(w) => Ok(Arc::new(WebhookSink::new(cfg, w)?)),
        other => Err(SendError::Setup(format!(
            "kind {} with these settings is not in yet",
            other.name()
        ))),
    }
}
