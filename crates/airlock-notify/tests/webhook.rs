//! Notifications against a local receiver (an HTTP server in the test that records what it is
//! sent, and can refuse): each step of a request arrives once and in order with its signature,
//! a refusing receiver gets the same notice again until it takes it, nothing is lost or sent
//! twice across a restart of the sender, and a grant about to end is announced once.

use airlock_core::directory::{DirectorySnapshot, PersonId};
use airlock_core::{FixedClock, SystemClock};
use airlock_engine::access::Governance;
use airlock_engine::lease::LeaseKeeper;
use airlock_notify::{Delivery, Report, Webhook};
use airlock_store::{OpenOptions, Store};
use anyhow::ensure;
use axum::http::{HeaderMap, StatusCode};
use serde_json::Value;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

const SECRET: &str = "a-signing-secret-of-some-length";

#[derive(Default)]
struct Receiver {
    /// (delivery id, event kind, body, signature valid)
    got: Mutex<Vec<(String, String, Value, bool)>>,
    /// Answer 503 to this many more requests.
    refuse: AtomicUsize,
    attempts: AtomicUsize,
}

impl Receiver {
    fn kinds(&self) -> Vec<String> {
        self.got
            .lock()
            .expect("lock")
            .iter()
            .map(|g| g.1.clone())
            .collect()
    }
}

async fn receive(
    axum::extract::State(r): axum::extract::State<Arc<Receiver>>,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> StatusCode {
    r.attempts.fetch_add(1, Ordering::SeqCst);
    if r.refuse
        .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
        .is_ok()
    {
        return StatusCode::SERVICE_UNAVAILABLE;
    }
    let h = |k: &str| {
        headers
            .get(k)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_owned()
    };
    let ts: i64 = h("x-airlock-timestamp").parse().unwrap_or(0);
    let valid = airlock_notify::webhook::signature(SECRET.as_bytes(), ts, &body)
        == h("x-airlock-signature");
    let value = serde_json::from_slice(&body).unwrap_or(Value::Null);
    r.got
        .lock()
        .expect("lock")
        .push((h("x-airlock-delivery"), h("x-airlock-event"), value, valid));
    StatusCode::NO_CONTENT
}

struct Counts(Mutex<Vec<String>>);

impl Report for Counts {
    fn delivered(&self, _: &str, kind: &str) {
        self.0.lock().expect("lock").push(kind.to_owned());
    }
    fn failed(&self, _: &str) {}
    fn backlog(&self, _: &str, _: u64) {}
}

struct World {
    _dir: tempfile::TempDir,
    config: airlock_config::Config,
    store: Store,
    clock: Arc<FixedClock>,
    receiver: Arc<Receiver>,
    directory: DirectorySnapshot,
}

impl World {
    async fn new() -> anyhow::Result<World> {
        let receiver = Arc::new(Receiver::default());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let url = format!("http://{}/hook", listener.local_addr()?);
        let app = axum::Router::new()
            .route("/hook", axum::routing::post(receive))
            .with_state(receiver.clone());
        tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        let dir = tempfile::tempdir()?;
        std::fs::write(
            dir.path().join("airlock.toml"),
            format!(
                "policy = \"policy.toml\"\n[directory]\nkind = \"file\"\npath = \"people.yaml\"\n\
                 [instances.prod]\nurl = \"http://127.0.0.1:9\"\nusername = \"a\"\npassword = \"b\"\n\
                 [[notifications.webhooks]]\nname = \"approvers\"\nurl = \"{url}\"\nsigning_secret = \"{SECRET}\"\n"
            ),
        )?;
        std::fs::write(
            dir.path().join("policy.toml"),
            "[[access.rules]]\nroles = [\"Op\"]\napprovers = { groups = [\"sre\"] }\nreason_required = false\nmax_duration = \"2h\"\n",
        )?;
        std::fs::write(
            dir.path().join("people.yaml"),
            "people:\n  - username: ann\n    groups: [eng]\n  - username: sid\n    groups: [sre]\n",
        )?;
        let config = airlock_config::load(&dir.path().join("airlock.toml"))
            .map_err(|e| anyhow::anyhow!("{e}"))?;
        let store = Store::open(
            &format!("sqlite://{}", dir.path().join("a.db").display()),
            OpenOptions::create(),
        )
        .await?;
        let directory = airlock_directory::file::FileSource::new(dir.path().join("people.yaml"))
            .read()
            .await?;
        Ok(World {
            _dir: dir,
            config,
            store,
            clock: Arc::new(FixedClock::new(chrono::Utc::now())),
            receiver,
            directory,
        })
    }

    fn governance(&self) -> Governance<'_> {
        Governance {
            policy: &self.config.policy.as_ref().expect("policy").access,
            instances: &self.config.instances,
            store: &self.store,
            clock: self.clock.as_ref(),
            via: None,
        }
    }

    async fn ask(&self, secs: i64) -> anyhow::Result<String> {
        let draft = airlock_core::access::Draft {
            roles: [airlock_core::RoleName::new("Op")?].into(),
            instances: self
                .config
                .instances
                .iter()
                .map(|i| i.name.clone())
                .collect(),
            duration_secs: Some(secs),
            ..Default::default()
        };
        let r = self
            .governance()
            .request(&self.directory, &PersonId("ann".into()), draft, None)
            .await?;
        Ok(r.id.0)
    }

    /// Starts delivering; the returned sender stops it.
    fn start(&self) -> Running {
        self.start_as("test-replica")
    }

    /// [`World::start`] as the replica `holder`.
    fn start_as(&self, holder: &str) -> Running {
        let (stop, rx) = tokio::sync::watch::channel(false);
        let keeper = LeaseKeeper::new(
            self.store.clone(),
            holder.into(),
            Duration::from_secs(15),
            Arc::new(SystemClock),
        );
        let notifier = Delivery {
            outlet: Arc::new(Webhook::new(self.config.webhooks[0].clone()).expect("webhook")),
            store: self.store.clone(),
            clock: self.clock.clone(),
            keeper,
            report: Arc::new(Counts(Mutex::new(Vec::new()))),
            poll: Duration::from_millis(50),
            lease_retry: Duration::from_millis(100),
        };
        (stop, tokio::spawn(notifier.run(rx)))
    }
}

/// A running notifier: its stop switch and task.
type Running = (
    tokio::sync::watch::Sender<bool>,
    tokio::task::JoinHandle<()>,
);

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
async fn each_step_arrives_once_in_order_signed_and_survives_refusals_and_restarts(
) -> anyhow::Result<()> {
    let w = World::new().await?;
    // Before the webhook ever ran: not sent (a new webhook starts at the end of the trail).
    let before = w.ask(600).await?;
    w.governance()
        .cancel(&before, &PersonId("ann".into()))
        .await?;

    let (stop, task) = w.start();
    for _ in 0..200 {
        if w.store.delivery_cursor("approvers").await?.is_some() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    ensure!(
        w.store.delivery_cursor("approvers").await?.is_some(),
        "the webhook started"
    );
    let id = w.ask(3600).await?;
    w.governance()
        .approve(
            &w.directory,
            &id,
            &PersonId("sid".into()),
            Some("go".into()),
        )
        .await?;
    wait_for("two notices", || w.receiver.kinds().len() == 2).await?;
    ensure!(
        w.receiver.kinds() == ["request.waiting", "request.approved"],
        "{:?}",
        w.receiver.kinds()
    );
    {
        let got = w.receiver.got.lock().expect("lock");
        ensure!(got.iter().all(|g| g.3), "every signature verifies");
        ensure!(got[0].2["request"]["id"] == id.as_str() && got[0].2["type"] == "request.waiting");
        ensure!(got[0].0 != got[1].0, "each notice its own id");
        let trail = format!("{got:?}");
        ensure!(
            !trail.contains(&before),
            "nothing from before the webhook existed: {trail}"
        );
    }

    // The receiver refuses three times: the same notice comes again until it is taken.
    w.receiver.refuse.store(3, Ordering::SeqCst);
    let attempts = w.receiver.attempts.load(Ordering::SeqCst);
    let denied = w.ask(600).await?;
    w.governance()
        .deny(
            &w.directory,
            &denied,
            &PersonId("sid".into()),
            Some("not now".into()),
        )
        .await?;
    wait_for("the notices after the refusals", || {
        w.receiver.kinds().len() == 4
    })
    .await?;
    ensure!(
        w.receiver.kinds()[2..] == ["request.waiting", "request.denied"],
        "{:?}",
        w.receiver.kinds()
    );
    ensure!(
        w.receiver.attempts.load(Ordering::SeqCst) - attempts >= 5,
        "refused three times, then two taken"
    );

    // Stopped; meanwhile one more request; started again: exactly the new one arrives.
    stop.send(true)?;
    task.await?;
    let later = w.ask(600).await?;
    w.governance()
        .cancel(&later, &PersonId("ann".into()))
        .await?;
    let (stop, task) = w.start();
    wait_for("the notices made while stopped", || {
        w.receiver.kinds().len() == 6
    })
    .await?;
    tokio::time::sleep(Duration::from_millis(300)).await;
    ensure!(
        w.receiver.kinds()[4..] == ["request.waiting", "request.cancelled"],
        "{:?}",
        w.receiver.kinds()
    );

    // Fifteen minutes before the grant ends it is noted as expiring (once, however often the
    // watchers look), and announced.
    let policy = &w.config.policy.as_ref().expect("policy").access;
    ensure!(
        airlock_engine::access::note_expiring(&w.store, w.clock.as_ref(), policy)
            .await?
            .is_empty()
    );
    w.clock.advance(chrono::Duration::minutes(46));
    for _ in 0..3 {
        airlock_engine::access::note_expiring(&w.store, w.clock.as_ref(), policy).await?;
    }
    wait_for("the expiring notice", || w.receiver.kinds().len() == 7).await?;
    tokio::time::sleep(Duration::from_millis(500)).await;
    ensure!(w.receiver.kinds().len() == 7, "{:?}", w.receiver.kinds());
    let got = w.receiver.got.lock().expect("lock").clone();
    ensure!(
        got[6].1 == "grant.expiring" && got[6].2["request"]["id"] == id.as_str(),
        "{:?}",
        got[6]
    );
    ensure!(
        got[6].2["text"]
            .as_str()
            .is_some_and(|t| t.contains("ends at")),
        "{:?}",
        got[6].2
    );
    stop.send(true)?;
    task.await?;
    let ids: std::collections::BTreeSet<&String> = got.iter().map(|g| &g.0).collect();
    ensure!(ids.len() == got.len(), "no notice twice");
    Ok(())
}

#[tokio::test]
async fn with_three_replicas_one_delivers_and_each_notice_arrives_once() -> anyhow::Result<()> {
    let w = World::new().await?;
    let replicas: Vec<_> = ["replica-a", "replica-b", "replica-c"]
        .iter()
        .map(|h| w.start_as(h))
        .collect();
    for _ in 0..200 {
        if w.store.delivery_cursor("approvers").await?.is_some() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let mut ids = Vec::new();
    for _ in 0..10 {
        ids.push(w.ask(600).await?);
    }
    for id in &ids {
        w.governance().cancel(id, &PersonId("ann".into())).await?;
    }
    wait_for("twenty notices", || w.receiver.kinds().len() >= 20).await?;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let got = w.receiver.got.lock().expect("lock").clone();
    ensure!(got.len() == 20, "each notice once: {}", got.len());
    let order: Vec<&str> = got
        .iter()
        .map(|g| g.2["request"]["id"].as_str().unwrap_or(""))
        .collect();
    let mut want: Vec<&str> = ids.iter().map(String::as_str).collect();
    want.extend(ids.iter().map(String::as_str));
    ensure!(order == want, "in the trail's order");
    for (stop, task) in replicas {
        stop.send(true)?;
        task.await?;
    }
    Ok(())
}
