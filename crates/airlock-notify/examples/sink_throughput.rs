//! How fast the audit sinks drain a backlog: N events (default 50,000) appended to a store
//! on SQLite, then delivered from the cursor by the delivery loop to (a) a real rsyslog over
//! TCP (the test kit's) and (b) the file sink (jsonl, fsync per page of 200), timed until the
//! cursor reaches the end of the trail and the receiver holds every event.
//!
//! ```text
//! cargo run -p airlock-notify --example sink_throughput [-- EVENTS]
//! ```

use airlock_audit::{Format, NewEvent, Outcome, Target};
use airlock_config::{FileSink as FileConfig, SinkConfig, SinkKind, SyslogSink, SyslogTransport};
use airlock_core::SystemClock;
use airlock_engine::lease::LeaseKeeper;
use airlock_notify::{Delivery, FileSink, Outlet, Report, Syslog};
use airlock_store::{OpenOptions, Store};
use airlock_testkit::Rsyslog;
use std::sync::Arc;
use std::time::{Duration, Instant};

struct Quiet;

impl Report for Quiet {
    fn delivered(&self, _: &str, _: &str) {}
    fn failed(&self, _: &str) {}
    fn backlog(&self, _: &str, _: u64) {}
}

fn sink(name: &str, kind: SinkKind) -> SinkConfig {
    SinkConfig {
        name: name.into(),
        kind,
        timeout: Duration::from_secs(10),
        max_backlog: u64::MAX,
    }
}

/// Delivers from the start of the trail to its end; the seconds until the cursor is at the
/// end and until `received()` reaches `n`.
async fn drain(
    store: &Store,
    outlet: Arc<dyn Outlet>,
    n: usize,
    received: impl Fn() -> usize,
) -> anyhow::Result<(f64, f64)> {
    let name = outlet.cursor().to_owned();
    store.advance_delivery_cursor(&name, 0, 0).await?;
    let head = store.audit_head().await?.seq;
    let delivery = Delivery {
        outlet,
        store: store.clone(),
        clock: Arc::new(SystemClock),
        keeper: LeaseKeeper::new(
            store.clone(),
            "bench".into(),
            Duration::from_secs(15),
            Arc::new(SystemClock),
        ),
        report: Arc::new(Quiet),
        poll: Duration::from_millis(20),
        lease_retry: Duration::from_millis(100),
    };
    let (stop, rx) = tokio::sync::watch::channel(false);
    let started = Instant::now();
    let task = tokio::spawn(delivery.run(rx));
    let deadline = Duration::from_secs(600);
    while store.delivery_cursor(&name).await? != Some(head) {
        anyhow::ensure!(started.elapsed() < deadline, "{name}: not drained in time");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let cursor_done = started.elapsed().as_secs_f64();
    while received() < n {
        anyhow::ensure!(started.elapsed() < deadline, "{name}: not all received");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let received_done = started.elapsed().as_secs_f64();
    stop.send(true)?;
    task.await?;
    Ok((cursor_done, received_done))
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let n: usize = std::env::args()
        .nth(1)
        .map(|a| a.parse())
        .transpose()?
        .unwrap_or(50_000);
    let dir = tempfile::tempdir()?;
    let store = Store::open(
        &format!("sqlite://{}", dir.path().join("a.db").display()),
        OpenOptions::create(),
    )
    .await?;
    let appended = Instant::now();
    for chunk in (0..n).collect::<Vec<_>>().chunks(1000) {
        let events = chunk
            .iter()
            .map(|i| {
                let mut e = NewEvent::new(
                    chrono::Utc::now(),
                    "person:sid",
                    "account.suspend",
                    Outcome::Succeeded,
                );
                e.target = Some(Target::Account {
                    username: format!("user{i}"),
                });
                e.instance = Some("prod".into());
                e.reason = Some(format!("left the company ({i})"));
                e
            })
            .collect();
        store.append_audit(events).await?;
    }
    println!(
        "appended {n} events to the store in {:.1} s",
        appended.elapsed().as_secs_f64()
    );

    let rsyslog = Rsyslog::start()?;
    let s = SyslogSink {
        address: rsyslog.address(),
        transport: SyslogTransport::Tcp,
        hostname: Some("gov1".into()),
    };
    let tcp = Syslog::new(sink("bench-tcp", SinkKind::Syslog(s.clone())), &s, "x")?;
    let output = rsyslog.output();
    let lines = |p: &std::path::Path| {
        std::fs::read(p)
            .map(|b| b.iter().filter(|c| **c == b'\n').count())
            .unwrap_or(0)
    };
    let (c, r) = drain(&store, Arc::new(tcp), n, || lines(&output)).await?;
    println!(
        "rsyslog tcp: cursor at the end in {c:.2} s ({:.0} events/s); all {n} written by rsyslog in {r:.2} s ({:.0} events/s)",
        n as f64 / c,
        n as f64 / r
    );

    let path = dir.path().join("audit.log");
    let f = FileConfig {
        path: path.clone(),
        format: Format::Jsonl,
        rotate_bytes: 100 * 1024 * 1024,
        keep_files: 10,
        hostname: None,
    };
    let file = FileSink::new(&sink("bench-file", SinkKind::File(f.clone())), &f, "x");
    // Lines are fsynced before the cursor moves: once it is at the end, the file is whole.
    let (c, _) = drain(&store, Arc::new(file), n, || lines(&path)).await?;
    println!(
        "file (jsonl, fsync per page of 200): cursor at the end in {c:.2} s ({:.0} events/s), the file holds all {n} lines",
        n as f64 / c
    );
    Ok(())
}
