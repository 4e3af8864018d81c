//! The HTTP audit sinks through the delivery loop, on a real store (SQLite in a tempdir):
//!
//! - the test kit's HEC receiver answers Splunk's documented examples as documented;
//! - `splunk_hec`: every event arrives once and in order as OCSF with its metadata; withheld
//!   acknowledgements hold the cursor and the batch is sent again with the same
//!   `metadata.uid`; nothing is lost across a receiver crash, a busy or garbage-answering
//!   receiver, or a network cut; a wrong token's error does not hold the token;
//! - `webhook`: signed batches, and a 500 is retried with the same ids;
//! - a throughput figure (printed; `--nocapture` shows it).

use airlock_audit::{NewEvent, Outcome, Target};
use airlock_config::{HecSink, HttpSink, SinkConfig, SinkKind};
use airlock_core::SystemClock;
use airlock_engine::lease::LeaseKeeper;
use airlock_notify::{Delivery, Outlet, Report, SendError};
use airlock_store::{OpenOptions, Store};
use airlock_testkit::{HecFault, HecReceiver, TcpProxy};
use anyhow::{ensure, Context as _};
use serde_json::{json, Value};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

const TOKEN: &str = "5a1f0c1e-7d2b-4c9e-9a53-0d6b5e3c2f10";
const CHANNEL: &str = "0aeeac95-ac74-4aa9-b30d-6c4c0ac581ba";
const SECRET: &str = "a-signing-secret-of-some-length";

struct Quiet;

impl Report for Quiet {
    fn delivered(&self, _: &str, _: &str) {}
    fn failed(&self, _: &str) {}
    fn backlog(&self, _: &str, _: u64) {}
}

async fn store(dir: &tempfile::TempDir) -> anyhow::Result<Store> {
    Ok(Store::open(
        &format!("sqlite://{}", dir.path().join("a.db").display()),
        OpenOptions::create(),
    )
    .await?)
}

async fn append(store: &Store, from: usize, n: usize) -> anyhow::Result<Vec<String>> {
    let mut ids = Vec::new();
    let mut i = from;
    while i < from + n {
        let upto = (i + 1000).min(from + n);
        let events: Vec<NewEvent> = (i..upto)
            .map(|i| {
                let mut e = NewEvent::new(
                    chrono::Utc::now(),
                    "person:sid",
                    "account.suspend",
                    Outcome::Succeeded,
                );
                e.target = Some(Target::Account {
                    username: format!("u{i}\"}}{{\"event\":\"forged\"}}"),
                });
                e.instance = Some("prod".into());
                e
            })
            .collect();
        ids.extend(store.append_audit(events).await?.into_iter().map(|e| e.id));
        i = upto;
    }
    Ok(ids)
}

fn hec_config(url: &str, token: &str, ack_timeout: Duration, batch: u32) -> SinkConfig {
    SinkConfig {
        name: "splunk".into(),
        kind: SinkKind::SplunkHec(HecSink {
            url: url::Url::parse(url).expect("url"),
            token: token.to_owned().into(),
            format: airlock_audit::Format::Ocsf,
            index: Some("airlock_audit".into()),
            source: "airlock".into(),
            sourcetype: "ocsf:airlock".into(),
            ack: true,
            channel: CHANNEL.into(),
            ack_timeout,
            batch_events: batch,
            ca_file: None,
        }),
        timeout: Duration::from_secs(2),
        max_backlog: 100_000,
    }
}

/// A delivery loop running for `outlet`, started at the current end of the trail.
struct Running {
    stop: tokio::sync::watch::Sender<bool>,
    task: tokio::task::JoinHandle<()>,
    store: Store,
    cursor: String,
}

impl Running {
    async fn start(store: &Store, outlet: Arc<dyn Outlet>) -> anyhow::Result<Running> {
        let cursor = outlet.cursor().to_owned();
        let (stop, rx) = tokio::sync::watch::channel(false);
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
            report: Arc::new(Quiet),
            poll: Duration::from_millis(20),
            lease_retry: Duration::from_millis(50),
        };
        let task = tokio::spawn(delivery.run(rx));
        let running = Running {
            stop,
            task,
            store: store.clone(),
            cursor,
        };
        let store = store.clone();
        let name = running.cursor.clone();
        wait_for("the new cursor", || {
            let store = store.clone();
            let name = name.clone();
            async move { Ok(store.delivery_cursor(&name).await?.is_some()) }
        })
        .await?;
        Ok(running)
    }

    async fn cursor(&self) -> anyhow::Result<u64> {
        Ok(self.store.delivery_cursor(&self.cursor).await?.unwrap_or(0))
    }

    async fn caught_up(&self) -> anyhow::Result<bool> {
        Ok(self.cursor().await? == self.store.audit_head().await?.seq)
    }

    async fn wait_caught_up(&self) -> anyhow::Result<()> {
        for _ in 0..1200 {
            if self.caught_up().await? {
                return Ok(());
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        anyhow::bail!("the cursor never reached the head of the trail")
    }

    async fn end(self) -> anyhow::Result<()> {
        self.stop.send(true)?;
        self.task.await?;
        Ok(())
    }
}

async fn wait_for<F, Fut>(what: &str, mut check: F) -> anyhow::Result<()>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = anyhow::Result<bool>>,
{
    for _ in 0..1200 {
        if check().await? {
            return Ok(());
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    anyhow::bail!("timed out waiting for {what}")
}

fn uids(envelopes: &[Value]) -> Vec<String> {
    envelopes
        .iter()
        .filter_map(|e| e["event"]["metadata"]["uid"].as_str().map(str::to_owned))
        .collect()
}

fn has_all(envelopes: &[Value], ids: &[String]) -> bool {
    let got: std::collections::BTreeSet<String> = uids(envelopes).into_iter().collect();
    ids.iter().all(|id| got.contains(id))
}

/// The receiver against Splunk's own examples, quoted from its documentation.
#[tokio::test]
async fn the_test_receiver_answers_splunks_documented_examples_as_documented() -> anyhow::Result<()>
{
    let http = reqwest::Client::new();
    // https://help.splunk.com/splunk-enterprise/get-data-in/collect-http-event-data/format-events-for-http-event-collector
    // "HTTP authentication":
    //   curl -H "Authorization: Splunk 12345678-1234-1234-1234-1234567890AB"
    //     https://mysplunkserver.example.com:8088/services/collector/event
    //     -d '{"sourcetype": "my_sample_data", "event": "http auth ftw!"}'
    let doc_token = "12345678-1234-1234-1234-1234567890AB";
    let plain = HecReceiver::start(doc_token, false)?;
    let post = |url: String, auth: Option<&str>, body: &'static str| {
        let mut req = http.post(url).body(body);
        if let Some(a) = auth {
            req = req.header("authorization", a);
        }
        async move {
            let resp = req.send().await?;
            let status = resp.status().as_u16();
            let body: Value = resp.json().await?;
            anyhow::Ok((status, body))
        }
    };
    let event_url = format!("{}/services/collector/event", plain.url());
    let auth = format!("Splunk {doc_token}");
    let sample = r#"{"sourcetype": "my_sample_data", "event": "http auth ftw!"}"#;
    // The documented answer of a success: {"text":"Success","code":0}.
    assert_eq!(
        post(event_url.clone(), Some(&auth), sample).await?,
        (200, json!({"text": "Success", "code": 0}))
    );
    assert_eq!(plain.indexed()[0]["event"], "http auth ftw!");
    // Splunk's status-code table (Troubleshoot HTTP Event Collector, "Possible error codes"):
    // 2 = 401 "Token is required", 3 = 401 "Invalid authorization", 4 = 403 "Invalid token",
    // 5 = 400 "No data", 6 = 400 "Invalid data format", 10 = 400 "Data channel is missing",
    // 12 = 400 "Event field is required", 14 = 400 "ACK is disabled".
    let code = |v: (u16, Value)| (v.0, v.1["code"].as_u64().unwrap_or(99));
    assert_eq!(code(post(event_url.clone(), None, sample).await?), (401, 2));
    assert_eq!(
        code(post(event_url.clone(), Some(doc_token), sample).await?),
        (401, 3)
    );
    assert_eq!(
        code(post(event_url.clone(), Some("Splunk wrong"), sample).await?),
        (403, 4)
    );
    assert_eq!(
        code(post(event_url.clone(), Some(&auth), "").await?),
        (400, 5)
    );
    let bad = post(event_url.clone(), Some(&auth), r#"{"event": 1}{"event""#).await?;
    assert_eq!(
        bad,
        (
            400,
            json!({"text": "Invalid data format", "code": 6, "invalid-event-number": 1})
        )
    );
    assert_eq!(
        code(post(event_url.clone(), Some(&auth), r#"{"time": 1}"#).await?),
        (400, 12)
    );
    let ack_url = format!("{}/services/collector/ack?channel={CHANNEL}", plain.url());
    assert_eq!(
        code(post(ack_url, Some(&auth), r#"{"acks":[0]}"#).await?),
        (400, 14)
    );
    // Batched: event objects one after another in one body ("Format events", batching).
    let batch = r#"{"event": "one"} {"event": {"two": 2}, "host": "h"}"#;
    assert_eq!(post(event_url, Some(&auth), batch).await?.0, 200);
    assert_eq!(plain.indexed().len(), 3);

    // Indexer acknowledgement (About HTTP Event Collector Indexer Acknowledgment,
    // https://help.splunk.com/splunk-enterprise/get-data-in/collect-http-event-data/about-http-event-collector-indexer-acknowledgment):
    // with ack on, a request needs a channel, and the answer carries an ackId, e.g.
    //   {"text": "Success", "code": 0, "ackId": 10}
    // the status query body is {"acks": [0, 1, 2]} and its answer
    //   {"acks": {"0": true, "1": false, "2": true}}
    // and Splunk forgets an id once it answered true for it.
    let acked = HecReceiver::start(doc_token, true)?;
    let event_url = format!("{}/services/collector/event", acked.url());
    assert_eq!(
        post(event_url.clone(), Some(&auth), sample).await?,
        (400, json!({"text": "Data channel is missing", "code": 10}))
    );
    let with_channel = format!("{event_url}?channel={CHANNEL}");
    for want in 0..3u64 {
        assert_eq!(
            post(with_channel.clone(), Some(&auth), sample).await?,
            (200, json!({"text": "Success", "code": 0, "ackId": want}))
        );
    }
    acked.withhold_acks(true);
    assert_eq!(post(with_channel, Some(&auth), sample).await?.1["ackId"], 3);
    let ack_url = format!("{}/services/collector/ack?channel={CHANNEL}", acked.url());
    assert_eq!(
        post(ack_url.clone(), Some(&auth), r#"{"acks": [0, 1, 3]}"#).await?,
        (200, json!({"acks": {"0": true, "1": true, "3": false}}))
    );
    acked.withhold_acks(false);
    assert_eq!(
        post(ack_url, Some(&auth), r#"{"acks": [0, 2, 3]}"#).await?,
        (200, json!({"acks": {"0": false, "2": true, "3": true}}))
    );
    Ok(())
}

#[tokio::test]
async fn every_event_arrives_once_in_order_as_ocsf_with_its_metadata() -> anyhow::Result<()> {
    let hec = HecReceiver::start(TOKEN, true)?;
    let dir = tempfile::tempdir()?;
    let store = store(&dir).await?;
    let cfg = hec_config(&hec.url(), TOKEN, Duration::from_secs(10), 100);
    let run = Running::start(&store, airlock_notify::sink_outlet(&cfg, "gov1")?).await?;
    let ids = append(&store, 0, 450).await?;
    run.wait_caught_up().await?;
    let indexed = hec.indexed();
    ensure!(uids(&indexed) == ids, "once each and in order");
    ensure!(hec.received().len() == 450, "nothing sent twice");
    let e = &indexed[0];
    ensure!(e["host"] == "gov1" && e["source"] == "airlock", "{e}");
    ensure!(
        e["sourcetype"] == "ocsf:airlock" && e["index"] == "airlock_audit",
        "{e}"
    );
    ensure!(e["time"].is_f64() || e["time"].is_u64(), "{e}");
    ensure!(e["event"]["class_uid"] == 3001, "OCSF account change: {e}");
    ensure!(
        e["event"]["user"]["name"]
            .as_str()
            .is_some_and(|n| n.starts_with("u0\"}")),
        "hostile values stay inside the event: {e}"
    );
    run.end().await
}

#[tokio::test]
async fn withheld_acks_hold_the_cursor_and_the_batch_is_sent_again_with_the_same_uids(
) -> anyhow::Result<()> {
    let hec = HecReceiver::start(TOKEN, true)?;
    let dir = tempfile::tempdir()?;
    let store = store(&dir).await?;
    let cfg = hec_config(&hec.url(), TOKEN, Duration::from_secs(1), 100);
    let run = Running::start(&store, airlock_notify::sink_outlet(&cfg, "gov1")?).await?;
    let start = run.cursor().await?;
    hec.withhold_acks(true);
    let ids = append(&store, 0, 5).await?;
    // Received twice (sent again after ack_timeout) and still not acknowledged.
    wait_for("the batch sent again", || async {
        Ok(hec.received().len() >= 10)
    })
    .await?;
    ensure!(run.cursor().await? == start, "nothing acknowledged early");
    ensure!(hec.indexed().is_empty());
    let received = uids(&hec.received());
    ensure!(
        received[..5] == ids[..] && received[5..10] == ids[..],
        "{received:?}"
    );
    hec.withhold_acks(false);
    run.wait_caught_up().await?;
    ensure!(has_all(&hec.indexed(), &ids));
    run.end().await
}

#[tokio::test]
async fn no_event_is_lost_when_the_receiver_crashes_and_restarts() -> anyhow::Result<()> {
    let mut hec = HecReceiver::start(TOKEN, true)?;
    let dir = tempfile::tempdir()?;
    let store = store(&dir).await?;
    let cfg = hec_config(&hec.url(), TOKEN, Duration::from_secs(1), 50);
    let run = Running::start(&store, airlock_notify::sink_outlet(&cfg, "gov1")?).await?;
    let mut ids = append(&store, 0, 120).await?;
    run.wait_caught_up().await?;
    // Crash with requests accepted and not indexed: those are lost by the receiver.
    hec.withhold_acks(true);
    ids.extend(append(&store, 120, 80).await?);
    wait_for("requests held", || async {
        Ok(hec.received().len() >= 200)
    })
    .await?;
    hec.stop();
    hec.withhold_acks(false);
    ids.extend(append(&store, 200, 30).await?);
    let before = run.cursor().await?;
    tokio::time::sleep(Duration::from_millis(500)).await;
    ensure!(
        run.cursor().await? == before,
        "no acknowledgement from a stopped receiver"
    );
    hec.restart()?;
    run.wait_caught_up().await?;
    ensure!(
        has_all(&hec.indexed(), &ids),
        "every event indexed after the restart"
    );
    run.end().await
}

#[tokio::test]
async fn a_busy_or_garbage_answering_receiver_holds_the_cursor_until_it_is_healthy(
) -> anyhow::Result<()> {
    let hec = HecReceiver::start(TOKEN, true)?;
    let dir = tempfile::tempdir()?;
    let store = store(&dir).await?;
    let cfg = hec_config(&hec.url(), TOKEN, Duration::from_secs(5), 100);
    let run = Running::start(&store, airlock_notify::sink_outlet(&cfg, "gov1")?).await?;
    let mut ids = Vec::new();
    for fault in [HecFault::Busy, HecFault::Garbage] {
        hec.set_fault(Some(fault));
        let before = run.cursor().await?;
        let requests = hec.requests();
        ids.extend(append(&store, ids.len(), 3).await?);
        wait_for("two attempts", || async {
            Ok(hec.requests() >= requests + 2)
        })
        .await?;
        ensure!(
            run.cursor().await? == before,
            "{fault:?} acknowledged nothing"
        );
        hec.set_fault(None);
        run.wait_caught_up().await?;
        ensure!(
            has_all(&hec.indexed(), &ids),
            "{fault:?}: all delivered after"
        );
    }
    run.end().await
}

#[tokio::test]
async fn a_wrong_token_is_refused_and_the_error_does_not_hold_it() -> anyhow::Result<()> {
    let hec = HecReceiver::start(TOKEN, true)?;
    let dir = tempfile::tempdir()?;
    let store = store(&dir).await?;
    let wrong = "wr0ng-t0ken-that-must-not-leak";
    let cfg = hec_config(&hec.url(), wrong, Duration::from_secs(5), 100);
    let outlet = airlock_notify::sink_outlet(&cfg, "gov1")?;
    append(&store, 0, 1).await?;
    let event = store.audit_events(1, 1).await?.remove(0);
    outlet.send(&event, chrono::Utc::now()).await?;
    let err = outlet.flush().await.err().context("refused")?;
    ensure!(
        matches!(err, SendError::Rejected { status: 403, .. }),
        "{err:?}"
    );
    let text = err.to_string();
    ensure!(
        text.contains("invalid token") && !text.contains(wrong),
        "{text}"
    );
    ensure!(!format!("{err:?}").contains(wrong));
    ensure!(hec.received().is_empty());

    // Through the loop: the cursor stays until the token is right.
    let run = Running::start(&store, outlet).await?;
    let start = run.cursor().await?;
    let requests = hec.requests();
    append(&store, 1, 2).await?;
    wait_for("an attempt", || async { Ok(hec.requests() > requests) }).await?;
    ensure!(run.cursor().await? == start);
    run.end().await
}

#[tokio::test]
async fn a_network_cut_delays_but_loses_nothing() -> anyhow::Result<()> {
    let hec = HecReceiver::start(TOKEN, true)?;
    let proxy = TcpProxy::start(hec.addr())?;
    let dir = tempfile::tempdir()?;
    let store = store(&dir).await?;
    let cfg = hec_config(
        &format!("http://127.0.0.1:{}", proxy.port()),
        TOKEN,
        Duration::from_secs(5),
        100,
    );
    let run = Running::start(&store, airlock_notify::sink_outlet(&cfg, "gov1")?).await?;
    let mut ids = append(&store, 0, 50).await?;
    run.wait_caught_up().await?;
    proxy.blackhole();
    let before = run.cursor().await?;
    ids.extend(append(&store, 50, 50).await?);
    // Long enough for a request to time out (timeout 2 s) at least once.
    tokio::time::sleep(Duration::from_millis(2500)).await;
    ensure!(
        run.cursor().await? == before,
        "nothing acknowledged through a cut"
    );
    proxy.reset();
    tokio::time::sleep(Duration::from_millis(200)).await;
    proxy.restore();
    run.wait_caught_up().await?;
    ensure!(has_all(&hec.indexed(), &ids));
    run.end().await
}

/// The figure in the report: events per second through the receiver with ack = true and 100
/// events per request (`cargo test -p airlock-notify --test hec_sink -- --nocapture
/// hec_throughput`).
#[tokio::test]
async fn hec_throughput_is_measured() -> anyhow::Result<()> {
    const N: usize = 20_000;
    let hec = HecReceiver::start(TOKEN, true)?;
    let dir = tempfile::tempdir()?;
    let store = store(&dir).await?;
    let cfg = hec_config(&hec.url(), TOKEN, Duration::from_secs(10), 100);
    // Appended before the loop starts, so only delivery is timed: the loop starts at the end
    // of the trail, so the cursor is set back to the start.
    let ids = append(&store, 0, N).await?;
    store.advance_delivery_cursor("sink:splunk", 0, 0).await?;
    let started = Instant::now();
    let run = Running::start(&store, airlock_notify::sink_outlet(&cfg, "gov1")?).await?;
    run.wait_caught_up().await?;
    let secs = started.elapsed().as_secs_f64();
    ensure!(uids(&hec.indexed()) == ids);
    println!(
        "hec sink: {N} events (ack = true, batch 100) in {secs:.2} s: {:.0} events/s",
        N as f64 / secs
    );
    run.end().await
}

// ---------------------------------------------------------------------------------------
// The webhook sink.

#[derive(Default)]
struct Hook {
    /// (X-Airlock-Delivery, ids in the body, signature valid)
    got: Mutex<Vec<(String, Vec<String>, bool)>>,
    /// Answer 500 to this many more requests.
    refuse: Mutex<usize>,
}

async fn hook(
    axum::extract::State(h): axum::extract::State<Arc<Hook>>,
    headers: axum::http::HeaderMap,
    body: axum::body::Bytes,
) -> axum::http::StatusCode {
    let header = |k: &str| {
        headers
            .get(k)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_owned()
    };
    let ts: i64 = header("x-airlock-timestamp").parse().unwrap_or(0);
    let valid = airlock_notify::webhook::signature(SECRET.as_bytes(), ts, &body)
        == header("x-airlock-signature");
    let ids = serde_json::from_slice::<Vec<Value>>(&body)
        .unwrap_or_default()
        .iter()
        .filter_map(|o| o["metadata"]["uid"].as_str().map(str::to_owned))
        .collect();
    h.got
        .lock()
        .expect("lock")
        .push((header("x-airlock-delivery"), ids, valid));
    let mut refuse = h.refuse.lock().expect("lock");
    if *refuse > 0 {
        *refuse -= 1;
        return axum::http::StatusCode::INTERNAL_SERVER_ERROR;
    }
    axum::http::StatusCode::NO_CONTENT
}

#[tokio::test]
async fn webhook_batches_arrive_signed_and_a_500_is_retried_with_the_same_ids() -> anyhow::Result<()>
{
    let h = Arc::new(Hook::default());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let url = format!("http://{}/audit?key=url-secret", listener.local_addr()?);
    let app = axum::Router::new()
        .route("/audit", axum::routing::post(hook))
        .with_state(h.clone());
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    let dir = tempfile::tempdir()?;
    let store = store(&dir).await?;
    let cfg = SinkConfig {
        name: "hook".into(),
        kind: SinkKind::Webhook(HttpSink {
            url: url.clone().into(),
            format: airlock_audit::Format::Ocsf,
            signing_secret: Some(SECRET.to_owned().into()),
            batch_events: 40,
            ca_file: None,
        }),
        timeout: Duration::from_secs(2),
        max_backlog: 1000,
    };
    let run = Running::start(&store, airlock_notify::sink_outlet(&cfg, "gov1")?).await?;
    let ids = append(&store, 0, 100).await?;
    run.wait_caught_up().await?;
    {
        let got = h.got.lock().expect("lock");
        let sizes: Vec<usize> = got.iter().map(|g| g.1.len()).collect();
        ensure!(sizes == [40, 40, 20], "{sizes:?}");
        ensure!(got.iter().all(|g| g.2), "every batch signed");
        let all: Vec<String> = got.iter().flat_map(|g| g.1.clone()).collect();
        ensure!(all == ids, "in order, once each");
        ensure!(
            got[0].0 == format!("{}..{}", ids[0], ids[39]),
            "{}",
            got[0].0
        );
    }

    // A refusal: the same batch comes again, and the cursor moves only after the 2xx.
    *h.refuse.lock().expect("lock") = 1;
    h.got.lock().expect("lock").clear();
    let more = append(&store, 100, 10).await?;
    run.wait_caught_up().await?;
    let got = h.got.lock().expect("lock").clone();
    ensure!(got.len() == 2, "{}", got.len());
    ensure!(got[0].1 == more && got[1].1 == more, "the same ids again");
    ensure!(got[0].0 == got[1].0);
    run.end().await?;

    // The URL (a secret) is in no error.
    let dead = SinkConfig {
        kind: SinkKind::Webhook(HttpSink {
            url: "http://127.0.0.1:9/audit?key=url-secret".to_owned().into(),
            format: airlock_audit::Format::Jsonl,
            signing_secret: None,
            batch_events: 10,
            ca_file: None,
        }),
        ..cfg
    };
    let outlet = airlock_notify::sink_outlet(&dead, "gov1")?;
    let event = store.audit_events(1, 1).await?.remove(0);
    outlet.send(&event, chrono::Utc::now()).await?;
    let err = outlet.flush().await.err().context("unreachable")?;
    ensure!(!err.to_string().contains("url-secret"), "{err}");
    Ok(())
}
