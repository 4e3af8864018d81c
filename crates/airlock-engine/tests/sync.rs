//! The sync engine against a real Airflow 3 behind the fault proxy: a run that Airflow walks
//! away from, or that is interrupted, leaves a consistent record, and the next run converges
//! without duplicating anything.

use airlock_airflow::{AirflowClient, Settings};
use airlock_config::InstanceConfig;
use airlock_core::policy::{
    Grant, InstanceSelector, LeaverRule, Policy, SafetyRails, UsernameRule, UsernameSource,
};
use airlock_core::{InstanceName, RoleName, SystemClock};
use airlock_directory::{file::FileSource, Source};
use airlock_engine::lease::{holder_id, instance_lease, LeaseKeeper, Taken};
use airlock_engine::sync::{ApplyOptions, Engine};
use airlock_store::{OpenOptions, Store};
use airlock_testkit::{AirflowVersion, Fault, FaultProxy, Rule};
use secrecy::SecretString;
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

fn policy() -> Policy {
    Policy {
        username: UsernameRule {
            source: UsernameSource::Email,
            prefix: String::new(),
            lowercase: true,
        },
        grants: vec![Grant {
            group: airlock_core::directory::GroupName("eng".into()),
            roles: [RoleName::new("Viewer").expect("valid")].into(),
            instances: InstanceSelector::default(),
        }],
        scope_groups: vec![],
        default_roles: Default::default(),
        roles: vec![],
        protected: Default::default(),
        service_accounts: vec![],
        leavers: LeaverRule {
            delete_after_secs: None,
        },
        safety: SafetyRails::default(),
        access: Default::default(),
    }
}

fn instance_config(url: &str) -> InstanceConfig {
    let srv = airlock_testkit::airflow::shared(AirflowVersion::V3);
    InstanceConfig {
        name: InstanceName::new("af3").expect("valid"),
        url: url.parse().expect("url"),
        labels: BTreeMap::new(),
        username: srv.admin_user.clone(),
        password: SecretString::from(srv.admin_password.clone()),
        api: airlock_config::ApiGeneration::Auto,
        timeout: Duration::from_secs(10),
        connect_timeout: Duration::from_secs(5),
        max_concurrency: 4,
        max_retries: 0,
        ca_pem: None,
        token_lifetime: Duration::from_secs(86_400),
        jwt_leeway: Duration::from_secs(10),
        fab_cache_ttl: Duration::from_secs(30),
    }
}

fn client(inst: &InstanceConfig) -> AirflowClient {
    let mut s = Settings::new(
        inst.name.clone(),
        inst.url.clone(),
        inst.username.clone(),
        inst.password.clone(),
    );
    s.max_retries = 0;
    AirflowClient::new(s).expect("client")
}

/// An engine for one instance, reading `source`, with `concurrency` operations in flight.
fn engine<'a>(
    policy: &'a Policy,
    inst: &'a InstanceConfig,
    source: &'a Source,
    store: &'a Store,
    concurrency: usize,
    keeper: &'a LeaseKeeper,
) -> Engine<'a> {
    engine_at(
        policy,
        inst,
        source,
        store,
        concurrency,
        keeper,
        &SystemClock,
    )
}

/// [`engine`] with a clock of the test's.
fn engine_at<'a>(
    policy: &'a Policy,
    inst: &'a InstanceConfig,
    source: &'a Source,
    store: &'a Store,
    concurrency: usize,
    keeper: &'a LeaseKeeper,
    clock: &'a dyn airlock_core::Clock,
) -> Engine<'a> {
    Engine {
        policy,
        instances: vec![inst],
        clients: [(inst.name.clone(), client(inst))].into(),
        source,
        store,
        clock,
        concurrency,
        actor: "operator:test".into(),
        leases: Some(keeper),
    }
}

/// A keeper holding `inst`'s lease, as `airlock sync` takes it.
async fn lease(store: &Store, inst: &InstanceConfig) -> LeaseKeeper {
    let keeper = LeaseKeeper::new(
        store.clone(),
        holder_id("engine test"),
        std::time::Duration::from_secs(60),
        Arc::new(SystemClock),
    );
    let taken = keeper
        .acquire(&instance_lease(inst.name.as_str()))
        .await
        .expect("lease");
    assert!(matches!(taken, Taken::Granted(_)), "{taken:?}");
    keeper
}

fn people_file(dir: &std::path::Path, domain: &str, n: usize) -> std::path::PathBuf {
    let mut y = String::from("people:\n");
    for i in 0..n {
        y.push_str(&format!(
            "  - username: p{i}\n    email: p{i}@{domain}\n    groups: [eng]\n"
        ));
    }
    let path = dir.join("people.yaml");
    std::fs::write(&path, y).expect("people");
    path
}

fn unique() -> String {
    let n = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0);
    format!("{:x}", n % 0xffff_ffff_ffff)
}

async fn store(dir: &std::path::Path) -> Store {
    Store::open(
        &format!("sqlite://{}", dir.join("airlock.db").display()),
        OpenOptions::create(),
    )
    .await
    .expect("store")
}

#[tokio::test]
async fn a_run_that_airflow_walks_away_from_converges_on_the_next_run() {
    let dir = tempfile::tempdir().expect("tempdir");
    let domain = format!("w{}.example.com", unique());
    let source = Source::File(FileSource::new(people_file(dir.path(), &domain, 6)));
    let store = store(dir.path()).await;
    let proxy =
        FaultProxy::start(&airlock_testkit::airflow::shared(AirflowVersion::V3).base_url).await;
    let inst = instance_config(&proxy.url());
    let policy = policy();
    let keeper = lease(&store, &inst).await;
    let mk = || engine(&policy, &inst, &source, &store, 1, &keeper);

    // Airflow answers the first two creates, then goes away.
    proxy.add_rule(
        Rule::new("/auth/fab/v1/users", Fault::Reset)
            .method("POST")
            .after(2),
    );
    let engine = mk();
    let observed = engine.observe().await.expect("observe");
    let plan = engine.plan(&observed);
    assert_eq!(plan.counts().get("create_account"), Some(&6));
    let run = engine.begin_run("sync").await.expect("run");
    let report = engine
        .apply(&plan, &run, &ApplyOptions::default())
        .await
        .expect("apply records failures");
    assert_eq!(report.failed(), 4, "{:?}", report.results);
    let audited = store.audit_events(1, 100).await.expect("audit");
    let failed = audited
        .iter()
        .filter(|e| matches!(e.outcome, airlock_audit::Outcome::Failed { .. }))
        .count();
    assert_eq!(failed, 4, "each failure is in the audit trail");

    // Airflow is back: the next run plans only what is missing, and then nothing.
    proxy.clear_rules();
    let engine = mk();
    let plan = engine.plan(&engine.observe().await.expect("observe"));
    assert_eq!(
        plan.counts().get("create_account"),
        Some(&4),
        "no duplicate of the two that succeeded"
    );
    let run = engine.begin_run("sync").await.expect("run");
    let report = engine
        .apply(&plan, &run, &ApplyOptions::default())
        .await
        .expect("apply");
    assert_eq!(report.failed(), 0);
    let plan = engine.plan(&engine.observe().await.expect("observe"));
    assert!(plan.is_empty(), "{:?}", plan.counts());
    assert!(store.verify_audit().await.expect("read").is_ok());
}

#[tokio::test]
async fn an_interrupted_apply_stops_starting_operations_and_the_next_run_finishes() {
    let dir = tempfile::tempdir().expect("tempdir");
    let domain = format!("i{}.example.com", unique());
    let source = Source::File(FileSource::new(people_file(dir.path(), &domain, 5)));
    let store = store(dir.path()).await;
    let inst = instance_config(&airlock_testkit::airflow::shared(AirflowVersion::V3).base_url);
    let policy = policy();
    let keeper = lease(&store, &inst).await;
    let engine = engine(&policy, &inst, &source, &store, 1, &keeper);
    let plan = engine.plan(&engine.observe().await.expect("observe"));
    let cancel = Arc::new(AtomicBool::new(false));
    let flag = cancel.clone();
    // Ctrl-C arrives after the second operation.
    let opts = ApplyOptions {
        allow_mass_deprovision: false,
        cancel: cancel.clone(),
        progress: Some(Arc::new(move |done, _| {
            if done == 2 {
                flag.store(true, Ordering::SeqCst);
            }
        })),
    };
    let run = engine.begin_run("sync").await.expect("run");
    let report = engine.apply(&plan, &run, &opts).await.expect("apply");
    assert_eq!(report.results.len(), 2);
    assert_eq!(report.skipped, 3);
    let next = engine.plan(&engine.observe().await.expect("observe"));
    assert_eq!(next.counts().get("create_account"), Some(&3));
    let run = engine.begin_run("sync").await.expect("run");
    engine
        .apply(&next, &run, &ApplyOptions::default())
        .await
        .expect("apply");
    assert!(engine
        .plan(&engine.observe().await.expect("observe"))
        .is_empty());
}

/// A targeted run (what a SCIM push triggers) reads and plans only the touched people's
/// accounts, including the old account of someone who left, and leaves every other
/// difference to the full sync.
#[tokio::test]
async fn a_targeted_run_plans_only_the_touched_accounts() {
    use airlock_core::directory::{Person, PersonId, PersonStatus, Touched};
    let dir = tempfile::tempdir().expect("tempdir");
    let domain = format!("t{}.example.com", unique());
    let file = people_file(dir.path(), &domain, 4);
    let source = Source::File(FileSource::new(file.clone()));
    let store = store(dir.path()).await;
    let inst = instance_config(&airlock_testkit::airflow::shared(AirflowVersion::V3).base_url);
    let policy = policy();
    let keeper = lease(&store, &inst).await;
    let engine = engine(&policy, &inst, &source, &store, 2, &keeper);
    let plan = engine.plan(&engine.observe().await.expect("observe"));
    let run = engine.begin_run("sync").await.expect("run");
    engine
        .apply(&plan, &run, &ApplyOptions::default())
        .await
        .expect("apply");

    // p0 and p1 leave, p4 and p5 join; only p0's departure and p4's arrival are pushed.
    let mut y = String::from("people:\n");
    for i in 2..6 {
        y.push_str(&format!(
            "  - username: p{i}\n    email: p{i}@{domain}\n    groups: [eng]\n"
        ));
    }
    std::fs::write(&file, y).expect("people");
    let p0 = Person {
        id: PersonId("p0".into()),
        username: "p0".into(),
        email: Some(format!("p0@{domain}")),
        first_name: None,
        last_name: None,
        status: PersonStatus::Active,
        groups: Default::default(),
    };
    let touched = Touched {
        ids: [PersonId("p0".into()), PersonId("p4".into())].into(),
        previous: vec![p0],
    };
    let before = engine.clients[&inst.name].stats();
    let (run, gate) = engine
        .prepare_touched("scim", &touched)
        .await
        .expect("prepare");
    let calls = engine.clients[&inst.name].stats().since(&before);
    let airlock_engine::sync::Gate::Proceed(plan) = gate else {
        panic!("refused: {gate:?}");
    };
    let targets: Vec<String> = plan.ops().map(|o| o.op.target()).collect();
    assert_eq!(
        targets,
        [
            format!("account p4@{domain}"),
            format!("account p0@{domain}")
        ],
        "{plan:?}"
    );
    assert_eq!(plan.counts().get("suspend"), Some(&1));
    // One role listing and one read per touched account; no listing of every user.
    assert_eq!(calls.of(airlock_airflow::Call::ListRoles), 1, "{calls:?}");
    assert_eq!(calls.of(airlock_airflow::Call::GetUser), 2, "{calls:?}");
    assert_eq!(calls.of(airlock_airflow::Call::ListUsers), 0, "{calls:?}");
    let report = engine
        .execute(&run, &plan, &ApplyOptions::default())
        .await
        .expect("execute");
    assert_eq!(report.failed(), 0, "{:?}", report.results);

    // What was not pushed is still there for the full sync: p1 leaves, p5 joins.
    let rest = engine.plan(&engine.observe().await.expect("observe"));
    let targets: Vec<String> = rest.ops().map(|o| o.op.target()).collect();
    assert_eq!(
        targets,
        [
            format!("account p5@{domain}"),
            format!("account p1@{domain}")
        ]
    );
}

/// Runs one full sync as `airlock sync` does; panics unless it ran and every operation
/// succeeded.
async fn sync_once(engine: &Engine<'_>) {
    let (run, gate) = engine.prepare("sync", None, false).await.expect("prepare");
    let airlock_engine::sync::Gate::Proceed(plan) = gate else {
        panic!("the run was refused: {gate:?}");
    };
    let report = engine
        .apply(&plan, &run, &ApplyOptions::default())
        .await
        .expect("apply");
    assert_eq!(report.failed(), 0, "{:?}", report.results);
}

#[tokio::test]
async fn an_approved_grant_reaches_airflow_and_its_expiry_removes_exactly_what_it_added() {
    use airlock_core::access::{AccessRule, Approvers, Draft, State};
    use airlock_core::directory::PersonId;
    use airlock_engine::access::Governance;

    let dir = tempfile::tempdir().expect("tempdir");
    let domain = format!("j{}.example.com", unique());
    // p0 asks; p1 approves. Both have Viewer from the eng group.
    let source = Source::File(FileSource::new(people_file(dir.path(), &domain, 2)));
    let store = store(dir.path()).await;
    let inst = instance_config(&airlock_testkit::airflow::shared(AirflowVersion::V3).base_url);
    let mut policy = policy();
    let op = RoleName::new("Op").expect("valid");
    policy.access.rules.push(AccessRule {
        roles: [op.clone()].into(),
        instances: InstanceSelector::default(),
        requesters: Default::default(),
        approvers: Approvers {
            groups: Default::default(),
            people: [format!("p1@{domain}")].into(),
        },
        approvals: 1,
        max_secs: 7200,
        default_secs: 3600,
        reason_required: true,
        pending_secs: 86_400,
        auto_approve: Default::default(),
    });
    // The lease keeps the test's time too, renewed as the heartbeat would.
    let clock = Arc::new(airlock_core::FixedClock::new(chrono::Utc::now()));
    let keeper = LeaseKeeper::new(
        store.clone(),
        holder_id("engine test"),
        Duration::from_secs(60),
        clock.clone(),
    );
    let taken = keeper
        .acquire(&instance_lease(inst.name.as_str()))
        .await
        .expect("lease");
    assert!(matches!(taken, Taken::Granted(_)), "{taken:?}");
    let engine = engine_at(&policy, &inst, &source, &store, 2, &keeper, &*clock);
    sync_once(&engine).await;

    let instances = [inst.clone()];
    let gov = Governance {
        policy: &policy.access,
        instances: &instances,
        store: &store,
        clock: &*clock,
        via: None,
    };
    let directory = source.read().await.expect("directory");
    let (p0, p1) = (
        PersonId(format!("p0@{domain}")),
        PersonId(format!("p1@{domain}")),
    );
    let p0 = directory
        .people
        .values()
        .find(|p| p.email.as_deref() == Some(p0.0.as_str()))
        .map(|p| p.id.clone())
        .expect("p0");
    let p1 = directory
        .people
        .values()
        .find(|p| p.email.as_deref() == Some(p1.0.as_str()))
        .map(|p| p.id.clone())
        .expect("p1");
    let draft = Draft {
        roles: [op.clone()].into(),
        instances: [inst.name.clone()].into(),
        duration_secs: Some(1800),
        reason: Some("backfill for INC-7".into()),
        ..Draft::default()
    };
    let request = gov
        .request(&directory, &p0, draft, Some("key-1"))
        .await
        .expect("request");
    assert_eq!(request.state, State::Pending);
    let refused = gov.approve(&directory, &request.id.0, &p0, None).await;
    assert!(
        refused.is_err(),
        "nobody approves their own request: {refused:?}"
    );
    // Not yet approved: a sync changes nothing.
    let plan = engine.plan(&engine.observe().await.expect("observe"));
    assert!(plan.is_empty(), "{:?}", plan.counts());

    let granted = gov
        .approve(&directory, &request.id.0, &p1, Some("ok".into()))
        .await
        .expect("approve");
    assert!(matches!(granted.state, State::Approved { .. }));
    sync_once(&engine).await;
    let username = airlock_core::Username::new(format!("p0@{domain}")).expect("valid");
    let account = client(&inst)
        .get_user(&username)
        .await
        .expect("p0 in Airflow");
    let viewer = RoleName::new("Viewer").expect("valid");
    assert_eq!(
        account.roles,
        [op.clone(), viewer.clone()].into(),
        "the grant's Op beside the group's Viewer"
    );

    // Half an hour later the grant is over: Op goes, Viewer (from the directory) stays, and
    // the expiry is on record.
    clock.advance(chrono::Duration::seconds(1800));
    keeper.renew().await.expect("renew");
    sync_once(&engine).await;
    let account = client(&inst)
        .get_user(&username)
        .await
        .expect("p0 in Airflow");
    assert_eq!(account.roles, [viewer].into());
    let stored = gov.get(&request.id.0).await.expect("stored");
    assert!(
        matches!(stored.state, State::Expired { .. }),
        "{:?}",
        stored.state
    );
    let operations: Vec<String> = store
        .audit_events(1, 1000)
        .await
        .expect("audit")
        .into_iter()
        .filter(|e| e.operation.starts_with("access_") || e.operation == "account.set_roles")
        .map(|e| e.operation)
        .collect();
    assert_eq!(
        operations,
        [
            "access_request.create",
            "access_request.approve",
            "account.set_roles",
            "access_grant.expire",
            "account.set_roles",
        ]
    );
    let plan = engine.plan(&engine.observe().await.expect("observe"));
    assert!(plan.is_empty(), "{:?}", plan.counts());
    assert!(store.verify_audit().await.expect("read").is_ok());
}

#[tokio::test]
async fn settling_records_ended_grants_and_revokes_a_leavers_once() {
    use airlock_core::access::{AccessRule, Approvers, Draft, State};
    use airlock_core::directory::{DirectorySnapshot, Person, PersonId, PersonStatus};
    use airlock_engine::access::{settle, Governance};

    let dir = tempfile::tempdir().expect("tempdir");
    let store = store(dir.path()).await;
    let inst = instance_config("http://127.0.0.1:9");
    let mut policy = policy();
    policy.access.rules.push(AccessRule {
        roles: [RoleName::new("Op").expect("valid")].into(),
        instances: InstanceSelector::default(),
        requesters: Default::default(),
        approvers: Approvers::default(),
        approvals: 0,
        max_secs: 3600,
        default_secs: 600,
        reason_required: false,
        pending_secs: 3600,
        auto_approve: Default::default(),
    });
    let person = |id: &str, status| Person {
        id: PersonId(id.into()),
        username: id.into(),
        email: Some(format!("{id}@example.com")),
        first_name: None,
        last_name: None,
        status,
        groups: Default::default(),
    };
    let mut directory = DirectorySnapshot {
        people: ["ann", "bob"]
            .into_iter()
            .map(|id| (PersonId(id.into()), person(id, PersonStatus::Active)))
            .collect(),
        groups: Default::default(),
    };
    let clock = airlock_core::FixedClock::new(chrono::Utc::now());
    let instances = [inst.clone()];
    let gov = Governance {
        policy: &policy.access,
        instances: &instances,
        store: &store,
        clock: &clock,
        via: None,
    };
    let ask = |length: i64| Draft {
        roles: [RoleName::new("Op").expect("valid")].into(),
        instances: [inst.name.clone()].into(),
        duration_secs: Some(length),
        ..Draft::default()
    };
    let ann = gov
        .request(&directory, &PersonId("ann".into()), ask(60), None)
        .await
        .expect("ann");
    let bob = gov
        .request(&directory, &PersonId("bob".into()), ask(600), None)
        .await
        .expect("bob");
    assert!(settle(&store, &clock, &directory)
        .await
        .expect("settle")
        .is_empty());

    // A minute on, ann's grant has ended; bob has left the directory.
    clock.advance(chrono::Duration::seconds(60));
    directory
        .people
        .get_mut(&PersonId("bob".into()))
        .expect("bob")
        .status = PersonStatus::Suspended;
    let settled = settle(&store, &clock, &directory).await.expect("settle");
    assert_eq!(settled.len(), 2, "{settled:?}");
    assert!(matches!(
        gov.get(&ann.id.0).await.expect("ann").state,
        State::Expired { .. }
    ));
    assert!(matches!(
        gov.get(&bob.id.0).await.expect("bob").state,
        State::Revoked { by: None, .. }
    ));
    // Once recorded, nothing more happens, however often it runs (every writing run does).
    assert!(settle(&store, &clock, &directory)
        .await
        .expect("settle")
        .is_empty());
    let ops: Vec<String> = store
        .audit_events(1, 100)
        .await
        .expect("audit")
        .into_iter()
        .map(|e| format!("{} {}", e.operation, e.actor))
        .collect();
    assert_eq!(
        ops,
        [
            "access_request.auto_approve person:ann",
            "access_request.auto_approve person:bob",
            "access_grant.expire airlock",
            "access_grant.revoke airlock",
        ]
    );
}
