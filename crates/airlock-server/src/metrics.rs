//! Prometheus metrics of the service. Names follow Prometheus conventions (`_total` counters,
//! `_seconds` histograms) and carry only bounded labels (instance names, operation kinds).

use prometheus::{
    Encoder, Gauge, GaugeVec, HistogramOpts, HistogramVec, IntCounterVec, IntGaugeVec, Opts,
    Registry, TextEncoder,
};

/// Every metric the service exports.
#[derive(Clone)]
pub struct Metrics {
    registry: Registry,
    /// Sync runs by instance, result and trigger (`schedule`: full; `scim`: targeted).
    pub sync_runs: IntCounterVec,
    /// Sync durations by instance and trigger.
    pub sync_duration: HistogramVec,
    /// Operations applied, by instance, kind and result.
    pub operations: IntCounterVec,
    /// Errors by where they came from (directory, airflow, store) and class.
    pub errors: IntCounterVec,
    /// 1 while this replica holds the instance's lease.
    pub lease_held: GaugeVec,
    /// 1 while the store answered the last readiness check.
    pub ready: Gauge,
    /// SCIM requests by method (a fixed set, else `other`) and status.
    pub scim_requests: IntCounterVec,
    /// HTTP connections being served, by listener (`main`, `ops`).
    pub http_connections: IntGaugeVec,
    /// Time from a SCIM change to the end of the sync that applied it.
    pub scim_change_to_airflow: HistogramVec,
    /// Notifications delivered, by webhook and kind.
    pub notifications: IntCounterVec,
    /// Failed notification rounds (a POST not answered 2xx, or the store), by webhook.
    pub notification_failures: IntCounterVec,
    /// Audit events a webhook has not looked at yet.
    pub notification_backlog: IntGaugeVec,
    /// Audit events shipped, by sink.
    pub sink_events: IntCounterVec,
    /// Failed shipping rounds, by sink.
    pub sink_failures: IntCounterVec,
    /// Audit events a sink has not shipped yet.
    pub sink_backlog: IntGaugeVec,
    /// Logins recorded from login snapshots, by instance.
    pub logins: IntCounterVec,
    /// Uses of protected (break-glass) accounts seen, by instance.
    pub break_glass: IntCounterVec,
    /// Login snapshots, by instance and result.
    pub login_snapshots: IntCounterVec,
    /// People the identity provider suspended or deleted (Directory Insights).
    pub leavers: IntCounterVec,
    /// From a leaver's suspension in the identity provider to airlock removing their access,
    /// by instance.
    pub time_to_deprovision: HistogramVec,
}

impl Metrics {
    /// A fresh registry with every metric registered.
    pub fn new() -> Self {
        let registry = Registry::new();
        let counter = |name: &str, help: &str, labels: &[&str]| {
            let c = IntCounterVec::new(Opts::new(name, help), labels)
                .expect("invariant: valid metric definition");
            registry
                .register(Box::new(c.clone()))
                .expect("invariant: metric registered once");
            c
        };
        let sync_runs = counter(
            "airlock_sync_runs_total",
            "Sync runs by instance, result and trigger (schedule: a full sync; scim: the accounts SCIM changes touched).",
            &["instance", "result", "trigger"],
        );
        let operations = counter(
            "airlock_operations_total",
            "Operations applied, by instance, kind and result.",
            &["instance", "kind", "result"],
        );
        let errors = counter(
            "airlock_errors_total",
            "Errors by source (directory, airflow, store) and class.",
            &["source", "class"],
        );
        let sync_duration = HistogramVec::new(
            HistogramOpts::new("airlock_sync_duration_seconds", "Duration of sync runs.")
                .buckets(vec![0.1, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0]),
            &["instance", "trigger"],
        )
        .expect("invariant: valid metric definition");
        registry
            .register(Box::new(sync_duration.clone()))
            .expect("invariant: metric registered once");
        let lease_held = GaugeVec::new(
            Opts::new(
                "airlock_lease_held",
                "1 while this replica holds the instance's lease.",
            ),
            &["instance"],
        )
        .expect("invariant: valid metric definition");
        registry
            .register(Box::new(lease_held.clone()))
            .expect("invariant: metric registered once");
        let ready = Gauge::new(
            "airlock_ready",
            "1 while the state store answered the last readiness check (/readyz).",
        )
        .expect("invariant: valid metric definition");
        registry
            .register(Box::new(ready.clone()))
            .expect("invariant: metric registered once");
        let scim_requests = counter(
            "airlock_scim_requests_total",
            "SCIM requests by method (GET, POST, PUT, PATCH, DELETE, HEAD, OPTIONS, else other) and status.",
            &["method", "status"],
        );
        let http_connections = IntGaugeVec::new(
            Opts::new(
                "airlock_http_connections",
                "HTTP connections being served, by listener (main; ops when serve.metrics_listen is set).",
            ),
            &["listener"],
        )
        .expect("invariant: valid metric definition");
        registry
            .register(Box::new(http_connections.clone()))
            .expect("invariant: metric registered once");
        let scim_change_to_airflow = HistogramVec::new(
            HistogramOpts::new(
                "airlock_scim_change_to_airflow_seconds",
                "Time from a SCIM change to the end of the sync that applied it.",
            )
            .buckets(vec![0.25, 0.5, 1.0, 2.0, 5.0, 10.0, 30.0, 60.0]),
            &["instance"],
        )
        .expect("invariant: valid metric definition");
        registry
            .register(Box::new(scim_change_to_airflow.clone()))
            .expect("invariant: metric registered once");
        let notifications = counter(
            "airlock_notifications_total",
            "Notifications delivered (answered 2xx), by webhook and kind.",
            &["webhook", "kind"],
        );
        let notification_failures = counter(
            "airlock_notification_failures_total",
            "Notification rounds that failed (retried with backoff), by webhook.",
            &["webhook"],
        );
        let notification_backlog = IntGaugeVec::new(
            Opts::new(
                "airlock_notification_backlog_events",
                "Audit events a webhook has not looked at yet (grows while its receiver refuses).",
            ),
            &["webhook"],
        )
        .expect("invariant: valid metric definition");
        registry
            .register(Box::new(notification_backlog.clone()))
            .expect("invariant: metric registered once");
        let sink_events = counter(
            "airlock_sink_events_total",
            "Audit events shipped to a sink (written and flushed), by sink.",
            &["sink"],
        );
        let sink_failures = counter(
            "airlock_sink_failures_total",
            "Shipping rounds that failed (retried with backoff), by sink.",
            &["sink"],
        );
        let sink_backlog = IntGaugeVec::new(
            Opts::new(
                "airlock_sink_backlog_events",
                "Audit events a sink has not shipped yet (grows while its collector is away).",
            ),
            &["sink"],
        )
        .expect("invariant: valid metric definition");
        registry
            .register(Box::new(sink_backlog.clone()))
            .expect("invariant: metric registered once");
        let logins = counter(
            "airlock_logins_total",
            "Logins to Airflow accounts recorded from login snapshots (derived from last_login and login_count), by instance.",
            &["instance"],
        );
        let break_glass = counter(
            "airlock_break_glass_uses_total",
            "Logins to protected (break-glass) accounts seen, by instance.",
            &["instance"],
        );
        let login_snapshots = counter(
            "airlock_login_snapshots_total",
            "Login snapshots taken, by instance and result (succeeded, failed).",
            &["instance", "result"],
        );
        let leavers = counter(
            "airlock_leavers_total",
            "People the identity provider suspended or deleted, read from its event log, by kind.",
            &["kind"],
        );
        let time_to_deprovision = HistogramVec::new(
            HistogramOpts::new(
                "airlock_time_to_deprovision_seconds",
                "From a person's suspension or deletion in the identity provider (its event log's time) to airlock removing their access on an instance (the audit event's time).",
            )
            .buckets(vec![1.0, 5.0, 15.0, 30.0, 60.0, 300.0, 900.0, 3600.0, 86400.0]),
            &["instance"],
        )
        .expect("invariant: valid metric definition");
        registry
            .register(Box::new(time_to_deprovision.clone()))
            .expect("invariant: metric registered once");
        Self {
            registry,
            sync_runs,
            sync_duration,
            operations,
            errors,
            lease_held,
            ready,
            scim_requests,
            http_connections,
            scim_change_to_airflow,
            notifications,
            notification_failures,
            notification_backlog,
            sink_events,
            sink_failures,
            sink_backlog,
            logins,
            break_glass,
            login_snapshots,
            leavers,
            time_to_deprovision,
        }
    }

    /// The text exposition format.
    pub fn render(&self) -> String {
        let mut buf = Vec::new();
        if let Err(e) = TextEncoder::new().encode(&self.registry.gather(), &mut buf) {
            tracing::warn!(error = %e, "cannot encode metrics");
        }
        String::from_utf8_lossy(&buf).into_owned()
    }
}

/// The delivery loops report to the service's metrics: webhooks (their cursor is their name)
/// and audit sinks (`sink:<name>`). Labels are names from the configuration and the fixed
/// notice kinds: bounded.
impl airlock_notify::Report for Metrics {
    fn delivered(&self, outlet: &str, kind: &str) {
        match outlet.strip_prefix("sink:") {
            Some(sink) => self.sink_events.with_label_values(&[sink]).inc(),
            None => self.notifications.with_label_values(&[outlet, kind]).inc(),
        }
    }
    fn failed(&self, outlet: &str) {
        match outlet.strip_prefix("sink:") {
            Some(sink) => self.sink_failures.with_label_values(&[sink]).inc(),
            None => self
                .notification_failures
                .with_label_values(&[outlet])
                .inc(),
        }
    }
    fn backlog(&self, outlet: &str, events: u64) {
        let events = i64::try_from(events).unwrap_or(i64::MAX);
        match outlet.strip_prefix("sink:") {
            Some(sink) => self.sink_backlog.with_label_values(&[sink]).set(events),
            None => self
                .notification_backlog
                .with_label_values(&[outlet])
                .set(events),
        }
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}
