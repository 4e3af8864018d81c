//! The syslog sink against a real rsyslog (Debian's, started by the test kit): every audit
//! event arrives as one RFC 5424 message, hostile values included, and nothing is lost while
//! rsyslog restarts.

use airlock_audit::{NewEvent, Outcome, Target};
use airlock_core::SystemClock;
use airlock_engine::lease::LeaseKeeper;
use airlock_notify::{Delivery, Report, SyslogTcp};
use airlock_store::{OpenOptions, Store};
use airlock_testkit::Rsyslog;
use anyhow::ensure;
use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

struct Quiet;

impl Report for Quiet {
    fn delivered(&self, _: &str, _: &str) {}
    fn failed(&self, _: &str) {}
    fn backlog(&self, _: &str, _: u64) {}
}

async fn append(store: &Store, from: usize, n: usize) -> anyhow::Result<Vec<String>> {
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

fn received_ids(r: &Rsyslog) -> BTreeSet<String> {
    r.messages()
        .iter()
        .filter_map(|m| {
            m.split(" id=\"")
                .nth(1)
                .and_then(|rest| rest.split('"').next())
                .map(str::to_owned)
        })
        .collect()
}

async fn wait_for(what: &str, mut check: impl FnMut() -> bool) -> anyhow::Result<()> {
    for _ in 0..600 {
        if check() {
            return Ok(());
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    anyhow::bail!("timed out waiting for {what}")
}

#[tokio::test]
async fn every_event_reaches_rsyslog_as_one_message_and_none_is_lost_across_its_restart(
) -> anyhow::Result<()> {
    let mut rsyslog = Rsyslog::start()?;
    let dir = tempfile::tempdir()?;
    let store = Store::open(
        &format!("sqlite://{}", dir.path().join("a.db").display()),
        OpenOptions::create(),
    )
    .await?;
    let syslog = airlock_config::SyslogSink {
        address: rsyslog.address(),
        transport: airlock_config::SyslogTransport::Tcp,
        hostname: Some("gov1".into()),
    };
    let cfg = airlock_config::SinkConfig {
        name: "siem".into(),
        kind: airlock_config::SinkKind::Syslog(syslog.clone()),
        timeout: Duration::from_secs(5),
        max_backlog: 10_000,
    };
    let (stop, rx) = tokio::sync::watch::channel(false);
    let delivery = Delivery {
        outlet: Arc::new(SyslogTcp::new(cfg, &syslog, "unused")),
        store: store.clone(),
        clock: Arc::new(SystemClock),
        keeper: LeaseKeeper::new(
            store.clone(),
            "test".into(),
            Duration::from_secs(15),
            Arc::new(SystemClock),
        ),
        report: Arc::new(Quiet),
        poll: Duration::from_millis(50),
        lease_retry: Duration::from_millis(100),
    };
    let task = tokio::spawn(delivery.run(rx));
    for _ in 0..200 {
        if store.delivery_cursor("sink:siem").await?.is_some() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    let mut ids: BTreeSet<String> = append(&store, 0, 250).await?.into_iter().collect();
    wait_for("250 messages", || received_ids(&rsyslog).is_superset(&ids)).await?;
    let messages = rsyslog.messages();
    ensure!(
        messages.len() == 250,
        "one message each: {}",
        messages.len()
    );
    ensure!(
        messages.iter().all(|m| m.starts_with("<85>1 ")
            && m.contains(" gov1 airlock - account.suspend [airlock@32473 ")),
        "{:?}",
        &messages[..2]
    );

    // rsyslog goes away; events keep coming; it comes back: every one of them arrives.
    rsyslog.stop();
    ids.extend(append(&store, 250, 30).await?);
    tokio::time::sleep(Duration::from_millis(1500)).await;
    ids.extend(append(&store, 280, 20).await?);
    rsyslog.restart()?;
    wait_for("all 300 after the restart", || {
        received_ids(&rsyslog).is_superset(&ids)
    })
    .await?;
    ensure!(received_ids(&rsyslog).len() == 300);
    ensure!(
        rsyslog.messages().iter().all(|m| m.starts_with('<')),
        "no forged line"
    );
    stop.send(true)?;
    task.await?;
    Ok(())
}
