//! Inventory runs end to end: a real Airflow 3, the fault proxy, and the state store on both
//! backends (SQLite file and a throw-away PostgreSQL database).

use airlock_airflow::{AirflowClient, NewUser, Settings};
use airlock_core::inventory::{Flag, FlagRules};
use airlock_core::{Clock, FixedClock, InstanceName, RoleName, Username};
use airlock_engine::{doctor, inventory};
use airlock_store::{OpenOptions, SnapshotStatus, Store};
use airlock_testkit::{fresh_pg_database, AirflowVersion, Fault, FaultProxy, PgTestDb, Rule};
use chrono::{TimeZone, Utc};
use secrecy::SecretString;
use std::time::Duration;

fn instance() -> InstanceName {
    InstanceName::new("local").expect("valid")
}

fn client(base_url: &str) -> AirflowClient {
    let srv = airlock_testkit::airflow::shared(AirflowVersion::V3);
    let mut s = Settings::new(
        instance(),
        base_url.parse().expect("url"),
        &srv.admin_user,
        SecretString::from(srv.admin_password.clone()),
    );
    s.retry_base = Duration::from_millis(10);
    s.max_retries = 2;
    AirflowClient::new(s).expect("client")
}

fn shared_url() -> String {
    airlock_testkit::airflow::shared(AirflowVersion::V3)
        .base_url
        .clone()
}

/// Keeps the SQLite directory or the PostgreSQL database alive for the test's duration.
enum Backing {
    Sqlite(#[allow(dead_code)] tempfile::TempDir),
    Postgres(#[allow(dead_code)] PgTestDb),
}

async fn store(postgres: bool) -> (Store, Backing) {
    if postgres {
        let db = fresh_pg_database()
            .await
            .expect("PostgreSQL on 127.0.0.1:5432 is required");
        let store = Store::open(db.url(), OpenOptions::create())
            .await
            .expect("open pg");
        (store, Backing::Postgres(db))
    } else {
        let dir = tempfile::tempdir().expect("tempdir");
        let url = format!("sqlite://{}", dir.path().join("airlock.db").display());
        let store = Store::open(&url, OpenOptions::create())
            .await
            .expect("open sqlite");
        (store, Backing::Sqlite(dir))
    }
}

fn unique(prefix: &str) -> String {
    let n = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0);
    format!("{prefix}-{:x}", n % 0xffff_ffff)
}

async fn login(username: &str, password: &str) {
    let resp = reqwest::Client::new()
        .post(format!("{}/auth/token", shared_url()))
        .json(&serde_json::json!({ "username": username, "password": password }))
        .send()
        .await
        .expect("token request");
    assert!(
        resp.status().is_success(),
        "login of {username} failed: {}",
        resp.status()
    );
}

async fn snapshots_record_changes_and_logins_between_runs(postgres: bool) {
    let (store, _keep) = store(postgres).await;
    let c = client(&shared_url());
    let clock = FixedClock::new(
        Utc.with_ymd_and_hms(2026, 11, 1, 0, 0, 0)
            .single()
            .expect("date"),
    );
    let joiner = unique("joiner");
    let mover = unique("mover");
    let mover_name = Username::new(mover.as_str()).expect("valid");
    c.create_user(&NewUser {
        username: mover_name.clone(),
        email: format!("{mover}@example.com"),
        first_name: "Mo".into(),
        last_name: "Ver".into(),
        roles: [RoleName::new("Viewer").expect("valid")].into(),
        password: Some(SecretString::from("Mover-pass-1".to_string())),
    })
    .await
    .expect("create mover");
    store
        .record_created_account("local", &mover, 0)
        .await
        .expect("record");

    let first = inventory::run(
        &c,
        &store,
        &clock,
        FlagRules::default(),
        &Default::default(),
    )
    .await
    .expect("first");
    let row = first
        .report
        .accounts
        .iter()
        .find(|a| a.account.username == mover_name)
        .expect("mover listed");
    assert_eq!(
        row.flags,
        vec![Flag::NeverLoggedIn],
        "created by airlock, no login yet"
    );
    let admin = first
        .report
        .accounts
        .iter()
        .find(|a| a.account.username.as_str() == "admin")
        .expect("admin listed");
    assert!(
        admin.flags.contains(&Flag::Admin) && admin.flags.contains(&Flag::CreatedOutsideAirlock)
    );

    c.create_user(&NewUser {
        username: Username::new(joiner.as_str()).expect("valid"),
        email: format!("{joiner}@example.com"),
        first_name: "Jo".into(),
        last_name: "Iner".into(),
        roles: Default::default(),
        password: None,
    })
    .await
    .expect("create joiner");
    c.set_user_roles(&mover_name, &[RoleName::new("Op").expect("valid")].into())
        .await
        .expect("move");
    login(&mover, "Mover-pass-1").await;
    let first_at = clock.now();
    clock.advance(chrono::Duration::hours(1));

    // The mover is a protected (break-glass) account here; airlock's own account (the
    // client's, which just read everything) is never reported.
    let watch = inventory::LoginWatch {
        own_username: airlock_testkit::airflow::shared(AirflowVersion::V3)
            .admin_user
            .clone(),
        protected: [mover_name.clone()].into(),
    };
    let second = inventory::run(&c, &store, &clock, FlagRules::default(), &watch)
        .await
        .expect("second");
    assert!(second.logins.iter().any(|l| l.username == mover_name));
    assert!(second
        .logins
        .iter()
        .all(|l| l.username.as_str() != watch.own_username));
    assert_eq!(second.break_glass, vec![mover_name.clone()]);
    let events = store.audit_events(1, 1000).await.expect("audit");
    let about = |operation: &str| {
        events
            .iter()
            .filter(|e| e.operation == operation)
            .filter(|e| {
                e.target
                    == Some(airlock_audit::Target::Account {
                        username: mover.clone(),
                    })
            })
            .count()
    };
    assert_eq!(about(airlock_audit::operation::ACCOUNT_LOGIN), 1);
    assert_eq!(about(airlock_audit::operation::BREAK_GLASS_USE), 1);
    let login_event = events
        .iter()
        .find(|e| e.operation == airlock_audit::operation::ACCOUNT_LOGIN)
        .expect("a login event");
    let after = login_event.after.as_ref().expect("after");
    let window_from: chrono::DateTime<Utc> =
        serde_json::from_value(after["window"]["from"].clone()).expect("from");
    let window_to: chrono::DateTime<Utc> =
        serde_json::from_value(after["window"]["to"].clone()).expect("to");
    assert_eq!((window_from, window_to), (first_at, clock.now()));
    assert_eq!(after["derived"], true);
    assert_eq!(login_event.instance.as_deref(), Some("local"));
    let d = inventory::latest_diff(&store, "local")
        .await
        .expect("diff")
        .expect("two snapshots");
    assert!(d.diff.accounts_added.iter().any(|u| u.as_str() == joiner));
    let change = d
        .diff
        .role_changes
        .iter()
        .find(|c| c.username == mover_name)
        .expect("mover moved");
    assert_eq!(change.added, [RoleName::new("Op").expect("valid")].into());
    assert_eq!(
        change.removed,
        [RoleName::new("Viewer").expect("valid")].into()
    );
    let seen = d
        .diff
        .logins
        .iter()
        .find(|l| l.username == mover_name)
        .expect("login seen");
    assert_eq!(seen.logins, Some(1));
}

async fn a_failed_read_is_recorded_as_failed_never_as_complete(postgres: bool) {
    let (store, _keep) = store(postgres).await;
    let proxy = FaultProxy::start(&shared_url()).await;
    let c = client(&proxy.url());
    let clock = FixedClock::new(Utc::now());
    proxy.add_rule(Rule::new("/auth/fab/v1/roles", Fault::status(500)));
    let err = inventory::run(
        &c,
        &store,
        &clock,
        FlagRules::default(),
        &Default::default(),
    )
    .await
    .expect_err("fails");
    assert!(err.to_string().contains("list roles"), "{err}");
    assert!(store
        .latest_complete_snapshots("local", 5)
        .await
        .expect("query")
        .is_empty());
    let runs = store.snapshot_runs(Some("local"), 5).await.expect("runs");
    assert_eq!(runs.len(), 1);
    assert_eq!(runs[0].status, SnapshotStatus::Failed);
    assert!(runs[0]
        .error
        .as_deref()
        .unwrap_or_default()
        .contains("server error 500"));
}

#[tokio::test]
async fn sqlite_snapshots_record_changes_and_logins_between_runs() {
    snapshots_record_changes_and_logins_between_runs(false).await;
}

#[tokio::test]
async fn postgres_snapshots_record_changes_and_logins_between_runs() {
    snapshots_record_changes_and_logins_between_runs(true).await;
}

#[tokio::test]
async fn sqlite_a_failed_read_is_recorded_as_failed_never_as_complete() {
    a_failed_read_is_recorded_as_failed_never_as_complete(false).await;
}

#[tokio::test]
async fn postgres_a_failed_read_is_recorded_as_failed_never_as_complete() {
    a_failed_read_is_recorded_as_failed_never_as_complete(true).await;
}

async fn doctor_check_as(role: &str) -> doctor::Health {
    let c = client(&shared_url());
    let name = unique(&format!("doctor-{}", role.to_lowercase()));
    c.create_user(&NewUser {
        username: Username::new(name.as_str()).expect("valid"),
        email: format!("{name}@example.com"),
        first_name: "Doc".into(),
        last_name: "Tor".into(),
        roles: [RoleName::new(role).expect("valid")].into(),
        password: Some(SecretString::from("Doctor-pass-1".to_string())),
    })
    .await
    .expect("create");
    let mut s = Settings::new(
        instance(),
        shared_url().parse().expect("url"),
        &name,
        SecretString::from("Doctor-pass-1".to_string()),
    );
    s.max_retries = 0;
    let as_user = AirflowClient::new(s).expect("client");
    doctor::check(&as_user, &shared_url(), &name).await
}

#[tokio::test]
async fn doctor_passes_an_admin_account() {
    let h = doctor_check_as("Admin").await;
    assert!(h.ok(), "{h:?}");
    assert_eq!(
        (h.api, h.auth_manager, h.credentials_ok),
        (Some("v3"), Some("fab"), Some(true))
    );
}

#[tokio::test]
async fn doctor_fails_an_account_that_cannot_manage_users() {
    let h = doctor_check_as("Viewer").await;
    assert!(!h.ok());
    assert_eq!((h.reachable, h.version.as_deref()), (true, Some("3.3.2")));
    assert!(
        h.error
            .as_deref()
            .unwrap_or_default()
            .contains("permission denied"),
        "{h:?}"
    );
}

#[tokio::test]
async fn doctor_reports_rejected_credentials() {
    let srv = airlock_testkit::airflow::shared(AirflowVersion::V3);
    let s = Settings::new(
        instance(),
        shared_url().parse().expect("url"),
        &srv.admin_user,
        SecretString::from("not-the-password".to_string()),
    );
    let h = doctor::check(
        &AirflowClient::new(s).expect("client"),
        &shared_url(),
        "admin",
    )
    .await;
    assert_eq!(h.credentials_ok, Some(false), "{h:?}");
    assert!(!h
        .error
        .as_deref()
        .unwrap_or_default()
        .contains("not-the-password"));
}
