//! Notifications of just-in-time access, posted to webhooks (`[[notifications.webhooks]]`) by
//! `airlock serve`: a request waiting for approval, a decision, a grant about to end, ended or
//! revoked, and the use of a break-glass account. Delivery is at least once: the notices come from the audit trail, read from a
//! durable cursor per webhook in the store that moves past an event only after the receiver
//! answered 2xx; a failed POST is retried (1 s doubling to 5 min) without skipping anything,
//! also across restarts and replicas (one replica delivers per webhook, under the lease
//! `notify:<name>`). Every notice carries a stable id (the audit event's, or
//! `expiring:<request>`), so a receiver drops the duplicates at-least-once delivery allows.
//!
//! - [`notice`]: what each audit event says (pure), and the JSON and Slack bodies.
//! - [`webhook`]: one signed POST.
//! - [`deliver`]: the delivery loop.
//! - [`sink`]: the audit sinks (syslog over TCP, TLS or UDP; a local file).

pub mod deliver;
pub mod notice;
pub mod sink;
pub mod webhook;

pub use deliver::{Delivery, Outlet, Report, Sent};
pub use notice::{Notice, Subject};
pub use sink::{
    outlet as sink_outlet, FileSink, SplunkHec, Syslog, SyslogTcp, SyslogUdp, WebhookSink,
};
pub use webhook::{SendError, Webhook};
