//! Time to deprovision: leavers read from a JumpCloud Directory Insights fixture (checked
//! against JumpCloud's own Swagger description of the API), matched with airlock's removals of
//! access in a real store's audit trail.
//!
//! The fixture serves `POST /insights/directory/v1/events` as the spec documents it: the
//! `x-api-key` header, a JSON body that must validate against `EventQuery` (its required
//! `service` and `start_time`, the `service` enum, `sort`, `limit`, `fields`, `search_after`,
//! and nothing the spec does not declare), an array of events in return, and paging through
//! the `X-Search_after`, `X-Result-Count` and `X-Limit` headers the spec's description
//! documents (send the same query again with `search_after`).

use airlock_audit::{operation as op, NewEvent, Outcome, Target};
use airlock_core::policy::{UsernameRule, UsernameSource};
use airlock_core::{Clock, FixedClock};
use airlock_directory::jumpcloud::insights::{Insights, InsightsSettings};
use airlock_engine::leavers;
use airlock_store::{OpenOptions, Store};
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use chrono::{DateTime, TimeZone, Utc};
use secrecy::SecretString;
use serde_json::{json, Value};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

const KEY: &str = "di-test-key-0123456789";

/// JumpCloud's Directory Insights description: the team's copy, else the vendored one.
fn spec() -> Value {
    let shared = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../../shared/specs/jumpcloud/JumpCloud.SDK.DirectoryInsights.json");
    let vendored = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../airlock-directory/tests/jumpcloud/specs/JumpCloud.SDK.DirectoryInsights.json");
    let path = if shared.exists() { shared } else { vendored };
    let text = std::fs::read_to_string(&path).expect("the Directory Insights spec");
    serde_json::from_str(&text).expect("spec json")
}

/// What is wrong with `body` as an `EventQuery` of the spec (empty: nothing).
fn check_query(spec: &Value, body: &Value) -> Vec<String> {
    let defs = &spec["definitions"];
    let mut props = serde_json::Map::new();
    let mut required = Vec::new();
    for part in defs["EventQuery"]["allOf"].as_array().expect("allOf") {
        let part = match part.get("$ref").and_then(Value::as_str) {
            Some(r) => &defs[r.trim_start_matches("#/definitions/")],
            None => part,
        };
        if let Some(p) = part["properties"].as_object() {
            props.extend(p.clone());
        }
        if let Some(r) = part["required"].as_array() {
            required.extend(r.iter().filter_map(Value::as_str).map(str::to_owned));
        }
    }
    let mut problems = Vec::new();
    let Some(obj) = body.as_object() else {
        return vec!["the body is not an object".into()];
    };
    for r in &required {
        if !obj.contains_key(r) {
            problems.push(format!("missing required `{r}`"));
        }
    }
    for (k, v) in obj {
        let Some(p) = props.get(k) else {
            problems.push(format!("`{k}` is not declared by EventQuery"));
            continue;
        };
        let ok = match p["type"].as_str() {
            Some("string") if p["format"] == "date-time" => v
                .as_str()
                .is_some_and(|t| DateTime::parse_from_rfc3339(t).is_ok()),
            Some("string") => v.is_string(),
            Some("integer") => v.is_i64() || v.is_u64(),
            Some("array") => v.as_array().is_some_and(|items| {
                items.iter().all(|i| match p["items"]["enum"].as_array() {
                    Some(allowed) => allowed.contains(i),
                    // `search_after` is declared as strings, but the documented example sends
                    // back the header's [number, string] as it came.
                    None if k == "search_after" => i.is_string() || i.is_number(),
                    None => i.is_string(),
                })
            }),
            Some("object") | None => true,
            Some(_) => false,
        };
        if !ok {
            problems.push(format!("`{k}` = {v} does not match the spec"));
        }
    }
    problems
}

#[derive(Default)]
struct Log {
    /// Every query body received.
    queries: Vec<Value>,
    /// Spec violations seen.
    problems: Vec<String>,
}

struct Fixture {
    spec: Value,
    /// Every event, oldest first.
    events: Vec<Value>,
    log: Mutex<Log>,
}

fn ms(e: &Value) -> i64 {
    DateTime::parse_from_rfc3339(e["timestamp"].as_str().unwrap_or_default())
        .map(|t| t.timestamp_millis())
        .unwrap_or(0)
}

async fn events(
    State(f): State<Arc<Fixture>>,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> Response {
    if headers.get("x-api-key").and_then(|v| v.to_str().ok()) != Some(KEY) {
        return (StatusCode::UNAUTHORIZED, "{\"message\":\"Unauthorized\"}").into_response();
    }
    let Ok(q) = serde_json::from_slice::<Value>(&body) else {
        return (StatusCode::BAD_REQUEST, "{\"message\":\"bad json\"}").into_response();
    };
    let problems = check_query(&f.spec, &q);
    {
        let mut log = f.log.lock().expect("log");
        log.queries.push(q.clone());
        log.problems.extend(problems.iter().cloned());
    }
    if !problems.is_empty() {
        return (StatusCode::BAD_REQUEST, problems.join("; ")).into_response();
    }
    let t = |k: &str| {
        q[k].as_str()
            .and_then(|t| DateTime::parse_from_rfc3339(t).ok())
            .map(|t| t.timestamp_millis())
    };
    let (start, end) = (
        t("start_time").unwrap_or(0),
        t("end_time").unwrap_or(i64::MAX),
    );
    let after = q["search_after"].as_array().map(|a| {
        (
            a.first().and_then(Value::as_i64).unwrap_or(0),
            a.get(1).and_then(Value::as_str).unwrap_or("").to_owned(),
        )
    });
    let limit = q["limit"].as_u64().unwrap_or(10_000) as usize;
    let page: Vec<Value> = f
        .events
        .iter()
        .filter(|e| (start..=end).contains(&ms(e)))
        .filter(|e| {
            after
                .as_ref()
                .is_none_or(|(t, id)| (ms(e), e["id"].as_str().unwrap_or("")) > (*t, id.as_str()))
        })
        .take(limit)
        .cloned()
        .collect();
    let mut resp = axum::Json(page.clone()).into_response();
    let h = resp.headers_mut();
    h.insert("X-Result-Count", page.len().into());
    h.insert("X-Limit", limit.into());
    h.insert("X-Sort", "ASC".parse().expect("header"));
    if let Some(last) = page.last() {
        let next = json!([ms(last), last["id"]]).to_string();
        h.insert("X-Search_after", next.parse().expect("header"));
    }
    resp
}

/// Starts the fixture on 127.0.0.1; its base URL.
async fn start(f: Arc<Fixture>) -> url::Url {
    let app = axum::Router::new()
        .route("/insights/directory/v1/events", axum::routing::post(events))
        .with_state(f);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(async move { axum::serve(listener, app).await });
    format!("http://{addr}").parse().expect("url")
}

fn t0() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 12, 4, 10, 0, 0)
        .single()
        .expect("date")
}

fn event(id: &str, event_type: &str, at: DateTime<Utc>, resource: Value) -> Value {
    json!({
        "id": id, "event_type": event_type, "service": "directory",
        "timestamp": at.to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
        "initiated_by": {"type": "admin", "email": "it@example.com"},
        "resource": resource, "success": true, "@version": "1",
    })
}

fn user(id: &str, username: &str) -> Value {
    json!({"type": "user", "id": id, "username": username, "email": format!("{username}@example.com")})
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
    let fixture = Arc::new(Fixture {
        spec: spec(),
        events: history(),
        log: Mutex::default(),
    });
    let base = start(fixture.clone()).await;
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
    {
        let log = fixture.log.lock().expect("log");
        assert!(log.problems.is_empty(), "{:?}", log.problems);
        assert!(log.queries.len() >= 3, "paged: {}", log.queries.len());
        assert!(log.queries[1]["search_after"].is_array());
    }
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
    let _ = clock.now();
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
