//! A JumpCloud Directory Insights fixture: `POST /insights/directory/v1/events` on 127.0.0.1,
//! answering as JumpCloud's own Swagger description of the API documents it (the team's
//! `shared/specs/jumpcloud/JumpCloud.SDK.DirectoryInsights.json`, else the copy vendored in
//! `crates/airlock-directory/tests/jumpcloud/specs/`): the `x-api-key` header, a JSON body that
//! must validate against `EventQuery` ([`check_query`]: the required `service` and
//! `start_time`, the `service` enum, `sort`, `limit`, `fields`, `search_after`, and nothing the
//! spec does not declare), an array of events in return, and paging through the
//! `X-Search_after`, `X-Result-Count` and `X-Limit` headers the description documents. JumpCloud
//! is not reachable from the test machines; this is the one way to test against its documented
//! behaviour.

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use chrono::{DateTime, Utc};
use serde_json::{json, Value};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

/// The API key the fixture accepts.
pub const KEY: &str = "di-test-key-0123456789";

/// JumpCloud's Directory Insights description: the team's copy, else the vendored one.
pub fn spec() -> Value {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let shared = root.join("../../../shared/specs/jumpcloud/JumpCloud.SDK.DirectoryInsights.json");
    let vendored = root
        .join("../airlock-directory/tests/jumpcloud/specs/JumpCloud.SDK.DirectoryInsights.json");
    let path = if shared.exists() { shared } else { vendored };
    let text = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("the Directory Insights spec {}: {e}", path.display()));
    serde_json::from_str(&text).expect("the Directory Insights spec is JSON")
}

/// What is wrong with `body` as an `EventQuery` of the spec (empty: nothing).
pub fn check_query(spec: &Value, body: &Value) -> Vec<String> {
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

/// What the fixture received.
#[derive(Debug, Default, Clone)]
pub struct Log {
    /// Every query body received.
    pub queries: Vec<Value>,
    /// Spec violations seen.
    pub problems: Vec<String>,
}

struct Shared {
    spec: Value,
    key: String,
    events: Mutex<Vec<Value>>,
    log: Mutex<Log>,
}

/// A running fixture (on the caller's tokio runtime).
#[derive(Clone)]
pub struct InsightsFixture {
    shared: Arc<Shared>,
    base: url::Url,
}

impl InsightsFixture {
    /// Starts serving `events` on 127.0.0.1, to callers with the key [`KEY`].
    pub async fn start(events: Vec<Value>) -> InsightsFixture {
        InsightsFixture::start_with_key(events, KEY).await
    }

    /// Starts serving `events` on 127.0.0.1, to callers with `key` (the directory API's key:
    /// JumpCloud uses one for both).
    pub async fn start_with_key(events: Vec<Value>, key: &str) -> InsightsFixture {
        let shared = Arc::new(Shared {
            spec: spec(),
            key: key.to_owned(),
            events: Mutex::new(Vec::new()),
            log: Mutex::default(),
        });
        let app = axum::Router::new()
            .route(
                "/insights/directory/v1/events",
                axum::routing::post(events_route),
            )
            .with_state(shared.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind 127.0.0.1");
        let addr = listener.local_addr().expect("local address");
        tokio::spawn(async move { axum::serve(listener, app).await });
        let f = InsightsFixture {
            shared,
            base: format!("http://{addr}").parse().expect("url"),
        };
        for e in events {
            f.push(e);
        }
        f
    }

    /// The base URL (`insights_url`).
    pub fn base_url(&self) -> url::Url {
        self.base.clone()
    }

    /// Records one more event (kept in time order).
    pub fn push(&self, event: Value) {
        let mut events = self.shared.events.lock().expect("events");
        events.push(event);
        events.sort_by_key(|e| (ms(e), e["id"].as_str().unwrap_or("").to_owned()));
    }

    /// What it received so far.
    pub fn log(&self) -> Log {
        self.shared.log.lock().expect("log").clone()
    }
}

/// An event's time, unix ms.
pub fn ms(e: &Value) -> i64 {
    DateTime::parse_from_rfc3339(e["timestamp"].as_str().unwrap_or_default())
        .map(|t| t.timestamp_millis())
        .unwrap_or(0)
}

async fn events_route(
    State(f): State<Arc<Shared>>,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> Response {
    if headers.get("x-api-key").and_then(|v| v.to_str().ok()) != Some(f.key.as_str()) {
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
        .lock()
        .expect("events")
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
    let mut resp = (
        [(axum::http::header::CONTENT_TYPE, "application/json")],
        Value::Array(page.clone()).to_string(),
    )
        .into_response();
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

/// A Directory Insights event of the directory service.
pub fn event(id: &str, event_type: &str, at: DateTime<Utc>, resource: Value) -> Value {
    json!({
        "id": id, "event_type": event_type, "service": "directory",
        "timestamp": at.to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
        "initiated_by": {"type": "admin", "email": "it@example.com"},
        "resource": resource, "success": true, "@version": "1",
    })
}

/// A user resource.
pub fn user(id: &str, username: &str) -> Value {
    json!({"type": "user", "id": id, "username": username, "email": format!("{username}@example.com")})
}
