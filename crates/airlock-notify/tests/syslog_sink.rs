//! The syslog sink against a real rsyslog (Debian's, started by the test kit) over TCP, TLS
//! and UDP: every audit event arrives as one RFC 5424 message, hostile values included,
//! nothing is lost while rsyslog restarts (TCP, TLS), a collector whose certificate is not
//! trusted gets nothing and the cursor waits for it.

mod support;

use airlock_config::{SinkKind, SyslogSink, SyslogTransport};
use airlock_notify::{Outlet as _, Syslog, SyslogUdp};
use airlock_store::Store;
use airlock_testkit::{Rsyslog, TestCa};
use anyhow::ensure;
use std::collections::BTreeSet;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;
use support::{append, deliver, wait_for, Counts};

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

fn syslog(address: String, transport: SyslogTransport) -> SyslogSink {
    SyslogSink {
        address,
        transport,
        hostname: Some("gov1".into()),
    }
}

fn tls(ca_file: &Path, server_name: &str) -> SyslogTransport {
    SyslogTransport::Tls {
        ca_file: Some(ca_file.to_owned()),
        server_name: server_name.into(),
    }
}

fn stream_outlet(name: &str, s: &SyslogSink) -> anyhow::Result<Arc<Syslog>> {
    let cfg = support::sink(name, SinkKind::Syslog(s.clone()));
    Ok(Arc::new(Syslog::new(cfg, s, "unused")?))
}

/// 250 events, then rsyslog goes away while 50 more come, then it comes back: all 300
/// arrive, each as one message.
async fn none_lost_across_a_restart(
    rsyslog: &mut Rsyslog,
    store: &Store,
    outlet: Arc<Syslog>,
) -> anyhow::Result<()> {
    let running = deliver(store, outlet, Arc::new(Counts::default())).await?;
    let mut ids: BTreeSet<String> = append(store, 0, 250).await?.into_iter().collect();
    wait_for("250 messages", || received_ids(rsyslog).is_superset(&ids)).await?;
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
    ids.extend(append(store, 250, 30).await?);
    tokio::time::sleep(Duration::from_millis(1500)).await;
    ids.extend(append(store, 280, 20).await?);
    rsyslog.restart()?;
    wait_for("all 300 after the restart", || {
        received_ids(rsyslog).is_superset(&ids)
    })
    .await?;
    ensure!(received_ids(rsyslog).len() == 300);
    ensure!(
        rsyslog.messages().iter().all(|m| m.starts_with('<')),
        "no forged line"
    );
    running.stop().await
}

#[tokio::test]
async fn every_event_reaches_rsyslog_as_one_message_and_none_is_lost_across_its_restart(
) -> anyhow::Result<()> {
    let mut rsyslog = Rsyslog::start()?;
    let dir = tempfile::tempdir()?;
    let store = support::store(dir.path()).await?;
    let s = syslog(rsyslog.address(), SyslogTransport::Tcp);
    let outlet = stream_outlet("siem", &s)?;
    none_lost_across_a_restart(&mut rsyslog, &store, outlet).await
}

#[tokio::test]
async fn over_tls_every_event_reaches_rsyslog_as_one_message_and_none_is_lost_across_its_restart(
) -> anyhow::Result<()> {
    let ca = TestCa::new("collector CA")?;
    let cert = ca.issue_server(&["localhost", "127.0.0.1"])?;
    let mut rsyslog = Rsyslog::start_tls(&cert, &ca.cert_path())?;
    let dir = tempfile::tempdir()?;
    let store = support::store(dir.path()).await?;
    let s = syslog(rsyslog.address(), tls(&ca.cert_path(), "localhost"));
    let outlet = stream_outlet("siem-tls", &s)?;
    none_lost_across_a_restart(&mut rsyslog, &store, outlet).await
}

#[tokio::test]
async fn a_collector_whose_certificate_is_not_trusted_gets_nothing_until_its_ca_is(
) -> anyhow::Result<()> {
    let ca = TestCa::new("collector CA")?;
    let other = TestCa::new("some other CA")?;
    let cert = ca.issue_server(&["localhost"])?;
    let rsyslog = Rsyslog::start_tls(&cert, &ca.cert_path())?;
    let dir = tempfile::tempdir()?;
    let store = support::store(dir.path()).await?;

    // The refusals say why, naming the setting to fix.
    let wrong_ca = syslog(rsyslog.address(), tls(&other.cert_path(), "localhost"));
    let wrong_name = syslog(rsyslog.address(), tls(&ca.cert_path(), "collector.example"));
    let probe = support::append(&store, 0, 1).await?;
    let event = store
        .audit_events(1, 10)
        .await?
        .into_iter()
        .find(|e| e.id == probe[0])
        .ok_or_else(|| anyhow::anyhow!("the probe event"))?;
    for (s, why) in [
        (&wrong_ca, "unknown issuer"),
        (&wrong_name, "collector.example"),
    ] {
        let outlet = stream_outlet("probe", s)?;
        outlet.send(&event, chrono::Utc::now()).await?;
        let err = outlet
            .flush()
            .await
            .err()
            .ok_or_else(|| anyhow::anyhow!("an untrusted collector accepted the page"))?;
        let text = err.to_string();
        ensure!(
            matches!(err, airlock_notify::SendError::Transport(_))
                && text.contains("tls handshake")
                && text.contains(why),
            "{text}"
        );
    }

    // The loop keeps failing and the cursor stays where it was.
    let counts = Arc::new(Counts::default());
    let running = deliver(&store, stream_outlet("siem", &wrong_ca)?, counts.clone()).await?;
    let start = store
        .delivery_cursor("sink:siem")
        .await?
        .ok_or_else(|| anyhow::anyhow!("no cursor"))?;
    let ids: BTreeSet<String> = append(&store, 1, 20).await?.into_iter().collect();
    wait_for("two refused rounds", || counts.failures() >= 2).await?;
    running.stop().await?;
    ensure!(rsyslog.messages().is_empty(), "{:?}", rsyslog.messages());
    ensure!(store.delivery_cursor("sink:siem").await? == Some(start));

    // Trusting the right CA, a new outlet on the same cursor delivers all of them.
    let right = syslog(rsyslog.address(), tls(&ca.cert_path(), "localhost"));
    let running = deliver(
        &store,
        stream_outlet("siem", &right)?,
        Arc::new(Counts::default()),
    )
    .await?;
    wait_for("the 20 events", || received_ids(&rsyslog).is_superset(&ids)).await?;
    ensure!(
        rsyslog.messages().len() == 20,
        "{}",
        rsyslog.messages().len()
    );
    running.stop().await
}

#[tokio::test]
async fn over_udp_every_event_reaches_rsyslog_as_one_datagram_and_a_long_one_is_cut(
) -> anyhow::Result<()> {
    let rsyslog = Rsyslog::start_udp()?;
    let dir = tempfile::tempdir()?;
    let store = support::store(dir.path()).await?;
    let s = syslog(rsyslog.address(), SyslogTransport::Udp);
    let cfg = support::sink("siem-udp", SinkKind::Syslog(s.clone()));
    let outlet = Arc::new(SyslogUdp::new(cfg, &s, "unused"));
    let running = deliver(&store, outlet, Arc::new(Counts::default())).await?;

    // Values with newlines, `]`, `"` and NUL: one datagram, one message each.
    let mut ids: BTreeSet<String> = append(&store, 0, 100).await?.into_iter().collect();
    let mut long = airlock_audit::NewEvent::new(
        chrono::Utc::now(),
        "person:sid",
        "account.suspend",
        airlock_audit::Outcome::Succeeded,
    );
    long.reason = Some("é".repeat(10_000));
    ids.extend(
        store
            .append_audit(vec![long])
            .await?
            .into_iter()
            .map(|e| e.id),
    );
    wait_for("101 messages", || received_ids(&rsyslog).is_superset(&ids)).await?;
    let messages = rsyslog.messages();
    ensure!(
        messages.len() == 101,
        "one message each, nothing forged: {}",
        messages.len()
    );
    ensure!(messages
        .iter()
        .all(|m| m.starts_with("<85>1 ") && m.contains(" gov1 airlock - ")));
    let longest = messages.iter().map(String::len).max().unwrap_or(0);
    ensure!(
        longest <= airlock_notify::sink::udp::MAX_DATAGRAM && longest > 8000,
        "the long one is cut to the datagram size: {longest}"
    );
    running.stop().await
}
