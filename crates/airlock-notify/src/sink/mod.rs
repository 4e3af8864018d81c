//! Audit sinks (`[[audit.sinks]]`): the whole trail shipped to a collector, at least once, by
//! the same delivery loop as the webhooks ([`crate::deliver`]), under the lease `sink:<name>`
//! and from the cursor `sink:<name>`. [`outlet`] builds the outlet of a sink's kind.
//!
//! - [`syslog`]: RFC 5424 with octet counting over TCP (RFC 6587) or TLS (RFC 5425).
//! - [`udp`]: RFC 5424 over UDP (RFC 5426), one message a datagram, nothing acknowledged.
//! - [`file`]: lines in a local file, `fsync`ed before the cursor moves, rotated by size.
//! - [`tls`]: the TLS client settings of the syslog sink.
//! - [`hec`]: Splunk's HTTP Event Collector, with indexer acknowledgement.
//! - [`http`]: JSON batches POSTed to any HTTP receiver, optionally signed.
//! - [`batch`]: what the two HTTP sinks share (the buffer, the client).

pub mod batch;
pub mod file;
pub mod hec;
pub mod http;
pub mod syslog;
pub mod tls;
pub mod udp;

use crate::deliver::Outlet;
use crate::webhook::SendError;
use airlock_config::{SinkConfig, SinkKind, SyslogTransport};
use std::sync::Arc;

pub use file::FileSink;
pub use hec::SplunkHec;
pub use http::WebhookSink;
pub use syslog::{Syslog, SyslogTcp};
pub use udp::SyslogUdp;

/// A sink's cursor and lease name.
pub fn cursor_of(name: &str) -> String {
    format!("sink:{name}")
}

/// The outlet of `cfg`; `default_hostname` names this machine in syslog messages when the
/// config does not. Fails when something the sink needs cannot be set up (a CA file that
/// holds no certificate); a file sink's file is opened by its first flush, so that a
/// directory not there yet is retried by the delivery loop rather than stopping the service.
pub fn outlet(cfg: &SinkConfig, default_hostname: &str) -> Result<Arc<dyn Outlet>, SendError> {
    match &cfg.kind {
        SinkKind::Syslog(s) if s.transport == SyslogTransport::Udp => {
            Ok(Arc::new(SyslogUdp::new(cfg.clone(), s, default_hostname)))
        }
        SinkKind::Syslog(s) => Ok(Arc::new(Syslog::new(cfg.clone(), s, default_hostname)?)),
        SinkKind::File(f) => Ok(Arc::new(FileSink::new(cfg, f, default_hostname))),
        SinkKind::SplunkHec(h) => Ok(Arc::new(SplunkHec::new(cfg, h, default_hostname)?)),
        SinkKind::Webhook(w) => Ok(Arc::new(WebhookSink::new(cfg, w)?)),
    }
}
