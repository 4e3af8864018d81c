//! Time to deprovision: leavers read from the test kit's JumpCloud Directory Insights fixture
//! (checked against JumpCloud's own Swagger description of the API), matched with airlock's
//! removals of access in a real store's audit trail.

use airlock_audit::{operation as op, NewEvent, Outcome, Target};
use airlock_core::policy::{UsernameRule, UsernameSource};
use airlock_core::FixedClock;
use airlock_directory::jumpcloud::insights::{Insights, InsightsSettings};
use airlock_engine::leavers;
use airlock_store::{OpenOptions, Store};
use airlock_testkit::insights::{check_query, event, ms, spec, user, InsightsFixture, KEY};
use chrono::{DateTime, TimeZone, Utc};
use secrecy::SecretString;
use serde_json::{json, Value};
use std::time::Duration;

fn t0() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 12, 4, 10, 0, 0)
        .single()
        .expect("date")
}

/// 2,500 directory events in the hour before t0 + 1 min: noise, and the leavers ann, bob and
/// cid (suspended at t0), dan (deleted at t0), and an admin suspended (not a person).
fn history() -> Vec<Value> {
    let mut out = Vec::new();
    for i in 0..2_500 {
        let at = t0() - chrono::Duration::minutes(50) + chrono::Duration::milliseconds(i * 1_300);
        out.push(event(
            &format!("n{i:05}"),
            if i % 3 == 0 {
                "user_update"
            } else {
                "user_login_attempt"
            },
            at,
            user(&format!("u{i}"), &format!("noise{i}")),
        ));
    }
    out.push(event("l-ann", "user_suspended", t0(), user("ua", "Ann")));
    out.push(event("l-bob", "user_suspended", t0(), user("ub", "bob")));
    out.push(event("l-cid", "user_suspended", t0(), user("uc", "cid")));
    out.push(event(
        "l-dan",
        "user_delete",
        t0() + chrono::Duration::seconds(5),
        user("ud", "dan"),
    ));
    out.push(event(
        "l-adm",
        "user_suspended",
        t0(),
        json!({"type": "admin", "id": "x", "email": "admin@example.com"}),
    ));
    out.sort_by_key(|e| (ms(e), e["id"].as_str().unwrap_or("").to_owned()));
    out
}

fn removal(
    operation: &str,
    username: &str,
    instance: &str,
    at: DateTime<Utc>,
    outcome: Outcome,
) -> NewEvent {
    let mut e = NewEvent::new(at, "airlock", operation, outcome);
    e.target = Some(Target::Account {
        username: username.into(),
    });
    e.instance = Some(instance.into());
    if operation == op::ACCOUNT_SET_ROLES {
        e.before = Some(json!({"roles": ["Op"]}));
        e.after = Some(json!({"roles": []}));
    }
    e
}

#[tokio::test]
async fn leavers_are_read_once_and_matched_with_the_first_removal_on_each_instance() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = Store::open(
        &format!("sqlite://{}", dir.path().join("a.db").display()),
        OpenOptions::create(),
    )
    .await
    .expect("store");
    let fixture = InsightsFixture::start(history()).await;
    let base = fixture.base_url();
    let settings = |key: &str| InsightsSettings {
        api_key: SecretString::from(key.to_owned()),
        org_id: None,
        base_url: base.clone(),
        timeout: Duration::from_secs(5),
        max_retries: 0,
        retry_base: Duration::from_millis(10),
    };
    let insights = Insights::new(settings(KEY)).expect("insights");
    let rule = UsernameRule {
        source: UsernameSource::DirectoryUsername,
        prefix: String::new(),
        lowercase: true,
    };
    let clock = FixedClock::new(t0() + chrono::Duration::minutes(1));
    let s = chrono::Duration::seconds;
    store
        .append_audit(vec![
            // Before the leaver's event by more than the tolerance: someone else's story.
            removal(
                op::ACCOUNT_SUSPEND,
                "dan",
                "prod",
                t0() - chrono::Duration::hours(1),
                Outcome::Succeeded,
            ),
            // A failed attempt is not a removal.
            removal(
                op::ACCOUNT_SUSPEND,
                "ann",
                "prod",
                t0() + s(20),
                Outcome::Failed {
                    error: "HTTP 500".into(),
                },
            ),
            removal(
                op::ACCOUNT_SUSPEND,
                "ann",
                "prod",
                t0() + s(30),
                Outcome::Succeeded,
            ),
            removal(
                op::ACCOUNT_SUSPEND,
                "ann",
                "prod",
                t0() + s(40),
                Outcome::Succeeded,
            ),
            removal(
                op::ACCOUNT_SUSPEND,
                "ann",
                "staging",
                t0() + s(90),
                Outcome::Succeeded,
            ),
            removal(
                op::ACCOUNT_SET_ROLES,
                "bob",
                "prod",
                t0() + s(10),
                Outcome::Succeeded,
            ),
        ])
        .await
        .expect("append");

    // The first read looks back an hour and pages through 2,505 events.
    let new = leavers::ingest(&store, &insights, &rule, &clock)
        .await
        .expect("ingest");
    let mut names: Vec<&str> = new.iter().map(|l| l.username.as_str()).collect();
    names.sort_unstable();
    assert_eq!(
        names,
        ["ann", "bob", "cid", "dan"],
        "the admin is not a leaver"
    );
    let log = fixture.log();
    assert!(log.problems.is_empty(), "{:?}", log.problems);
    assert!(log.queries.len() >= 3, "paged: {}", log.queries.len());
    assert!(log.queries[1]["search_after"].is_array());
    let done = leavers::correlate(&store, &clock, &new)
        .await
        .expect("correlate");
    assert_eq!(done.len(), 3, "{done:?}");

    // Read again: the overlap returns the same events; nothing is recorded twice.
    clock.advance(chrono::Duration::minutes(1));
    let again = leavers::ingest(&store, &insights, &rule, &clock)
        .await
        .expect("ingest");
    assert!(again.is_empty(), "{again:?}");
    assert!(leavers::correlate(&store, &clock, &again)
        .await
        .expect("correlate")
        .is_empty());

    // cid's access goes later: the next poll reads only the new events and finds it.
    store
        .append_audit(vec![removal(
            op::ACCOUNT_DELETE,
            "cid",
            "prod",
            t0() + s(300),
            Outcome::Succeeded,
        )])
        .await
        .expect("append");
    let later = leavers::correlate(&store, &clock, &[])
        .await
        .expect("correlate");
    assert_eq!(later.len(), 1);
    assert_eq!(later[0].1.instance, "prod");

    let report = leavers::report(
        &store,
        (t0() - chrono::Duration::days(1)).timestamp_millis(),
    )
    .await
    .expect("report");
    let ttd = |name: &str| {
        report
            .iter()
            .find(|r| r.leaver.username == name)
            .and_then(leavers::LeaverReport::time_to_deprovision_ms)
    };
    assert_eq!(ttd("ann"), Some(90_000), "the last instance done");
    assert_eq!(ttd("bob"), Some(10_000));
    assert_eq!(ttd("cid"), Some(300_000));
    assert_eq!(
        ttd("dan"),
        None,
        "pending: nothing removed after the deletion"
    );
    let ann = report
        .iter()
        .find(|r| r.leaver.username == "ann")
        .expect("ann");
    assert_eq!(
        ann.removed.get("prod").copied(),
        Some((t0() + s(30)).timestamp_millis()),
        "the first removal on prod"
    );

    // A rejected key is an error that never shows the key.
    let bad = Insights::new(settings("wrong-key-secret-value")).expect("insights");
    let err = leavers::ingest(&store, &bad, &rule, &clock)
        .await
        .expect_err("rejected")
        .to_string();
    assert!(
        err.contains("rejected") && !err.contains("wrong-key"),
        "{err}"
    );
}

#[test]
fn the_query_check_catches_what_the_spec_does_not_allow() {
    let spec = spec();
    let ok = json!({"service": ["directory"], "start_time": "2026-12-04T10:00:00Z", "sort": "ASC",
                    "limit": 1000, "fields": ["id"], "search_after": [1, "x"]});
    assert!(check_query(&spec, &ok).is_empty());
    for (bad, why) in [
        (
            json!({"start_time": "2026-12-04T10:00:00Z"}),
            "missing required `service`",
        ),
        (
            json!({"service": ["directory"]}),
            "missing required `start_time`",
        ),
        (
            json!({"service": ["nope"], "start_time": "2026-12-04T10:00:00Z"}),
            "`service`",
        ),
        (
            json!({"service": ["directory"], "start_time": "yesterday"}),
            "`start_time`",
        ),
        (
            json!({"service": ["directory"], "start_time": "2026-12-04T10:00:00Z", "page": 2}),
            "`page` is not declared",
        ),
        (
            json!({"service": ["directory"], "start_time": "2026-12-04T10:00:00Z", "limit": "10"}),
            "`limit`",
        ),
    ] {
        let problems = check_query(&spec, &bad);
        assert!(
            problems.iter().any(|p| p.contains(why)),
            "{bad}: {problems:?}"
        );
    }
}

#[tokio::test]
async fn the_trail_is_bisected_by_time() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = Store::open(
        &format!("sqlite://{}", dir.path().join("a.db").display()),
        OpenOptions::create(),
    )
    .await
    .expect("store");
    assert_eq!(store.audit_seq_at(0).await.expect("empty"), None);
    // 1,000 events, one a second from t0.
    let events = (0..1_000)
        .map(|i| {
            removal(
                op::ACCOUNT_SUSPEND,
                &format!("u{i}"),
                "prod",
                t0() + chrono::Duration::seconds(i),
                Outcome::Succeeded,
            )
        })
        .collect();
    store.append_audit(events).await.expect("append");
    let at = |secs: i64| (t0() + chrono::Duration::seconds(secs)).timestamp_millis();
    for (secs, want) in [
        (-5, Some(1)),
        (0, Some(1)),
        (1, Some(2)),
        (499, Some(500)),
        (999, Some(1_000)),
        (1_000, None),
    ] {
        assert_eq!(
            store.audit_seq_at(at(secs)).await.expect("bisect"),
            want,
            "{secs}"
        );
    }
    // Between two events: the next one.
    assert_eq!(
        store.audit_seq_at(at(10) + 500).await.expect("bisect"),
        Some(12)
    );
}
