//! What the sink tests share: a store on SQLite in a temporary directory, hostile audit
//! events, the delivery loop of one outlet, and bounded waits.
#![allow(dead_code)]

use airlock_audit::{NewEvent, Outcome, Target};
use airlock_core::SystemClock;
use airlock_engine::lease::LeaseKeeper;
use airlock_notify::{Delivery, Outlet, Report};
use airlock_store::{OpenOptions, Store};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

/// Counts what the loop reports.
#[derive(Default)]
pub struct Counts {
    pub delivered: AtomicU64,
    pub failed: AtomicU64,
}

impl Report for Counts {
    fn delivered(&self, _: &str, _: &str) {
        self.delivered.fetch_add(1, Ordering::Relaxed);
    }
    fn failed(&self, _: &str) {
        self.failed.fetch_add(1, Ordering::Relaxed);
    }
    fn backlog(&self, _: &str, _: u64) {}
}

impl Counts {
    pub fn failures(&self) -> u64 {
        self.failed.load(Ordering::Relaxed)
    }
}

/// A store in `dir`.
pub async fn store(dir: &std::path::Path) -> anyhow::Result<Store> {
    Ok(Store::open(
        &format!("sqlite://{}", dir.join("a.db").display()),
        OpenOptions::create(),
    )
    .await?)
}

/// Appends `n` events whose values try to forge syslog messages and lines; their ids.
pub async fn append(store: &Store, from: usize, n: usize) -> anyhow::Result<Vec<String>> {
    let events: Vec<NewEvent> = (from..from + n)
        .map(|i| {
            let mut e = NewEvent::new(
                chrono::Utc::now(),
                "person:sid",
                "account.suspend",
                Outcome::Succeeded,
            );
            e.target = Some(Target::Account {
                username: format!("u{i}\n<13>1 - forged ] \"x\" \\ \u{0}"),
            });
            e.instance = Some("prod".into());
            e.reason = Some(format!("left {i}\r\nnext line"));
            e
        })
        .collect();
    Ok(store
        .append_audit(events)
        .await?
        .into_iter()
        .map(|e| e.id)
        .collect())
}

/// One delivery loop, running.
pub struct Running {
    stop: tokio::sync::watch::Sender<bool>,
    task: tokio::task::JoinHandle<()>,
}

impl Running {
    /// Stops the loop and waits for it.
    pub async fn stop(self) -> anyhow::Result<()> {
        self.stop.send(true)?;
        self.task.await?;
        Ok(())
    }
}

/// Starts the delivery of `outlet` and waits until its cursor exists (a new outlet starts at
/// the end of the trail).
pub async fn deliver(
    store: &Store,
    outlet: Arc<dyn Outlet>,
    report: Arc<dyn Report>,
) -> anyhow::Result<Running> {
    let cursor = outlet.cursor().to_owned();
    let delivery = Delivery {
        outlet,
        store: store.clone(),
        clock: Arc::new(SystemClock),
        keeper: LeaseKeeper::new(
            store.clone(),
            "test".into(),
            Duration::from_secs(15),
            Arc::new(SystemClock),
        ),
        report,
        poll: Duration::from_millis(50),
        lease_retry: Duration::from_millis(100),
    };
    let (stop, rx) = tokio::sync::watch::channel(false);
    let task = tokio::spawn(delivery.run(rx));
    for _ in 0..400 {
        if store.delivery_cursor(&cursor).await?.is_some() {
            return Ok(Running { stop, task });
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    anyhow::bail!("the cursor {cursor} was never created")
}

/// Polls `check` every 50 ms for up to 60 s.
pub async fn wait_for(what: &str, mut check: impl FnMut() -> bool) -> anyhow::Result<()> {
    for _ in 0..1200 {
        if check() {
            return Ok(());
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    anyhow::bail!("timed out waiting for {what}")
}

/// A sink's config.
pub fn sink(name: &str, kind: airlock_config::SinkKind) -> airlock_config::SinkConfig {
    airlock_config::SinkConfig {
        name: name.into(),
        kind,
        timeout: Duration::from_secs(5),
        max_backlog: 10_000,
    }
}
