//! The service's HTTP surface: liveness with per-instance state (`/healthz`, JSON), readiness
//! (`/readyz`: the store answers now), metrics, and the SCIM endpoint under `/scim/v2` (its
//! own module). One place turns state into responses; nothing here can change Airflow.

use crate::throttle::AuthThrottle;
use crate::State;
use airlock_core::{Clock, SystemClock};
use airlock_store::Store;
use axum::extract::State as Extract;
use axum::http::{header, StatusCode};
use axum::response::IntoResponse;
use axum::routing::get;
use axum::{Json, Router};
use serde_json::{json, Value};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

/// How long `/readyz` and `/healthz` wait for the store.
const STORE_CHECK_TIMEOUT: Duration = Duration::from_secs(2);

#[derive(Clone)]
struct Http {
    state: Arc<State>,
    store: Store,
}

/// `/healthz`, `/readyz` and `/metrics`.
pub(crate) fn ops_router(state: Arc<State>, store: Store) -> Router {
    Router::new()
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
        .with_state(Http { state, store })
}

/// The SCIM endpoint, with failed-authentication throttling and request counting.
pub(crate) fn scim_router(state: Arc<State>, store: Store, throttle: Arc<AuthThrottle>) -> Router {
    crate::scim_router_throttled(store, Arc::new(SystemClock), throttle)
        .layer(axum::middleware::from_fn_with_state(state, observe_scim))
}

/// The methods the SCIM request counter names; any other is counted as `other`, so that
/// callers (authenticated or not) cannot create series.
pub(crate) fn method_label(method: &axum::http::Method) -> &'static str {
    match method.as_str() {
        "GET" => "GET",
        "POST" => "POST",
        "PUT" => "PUT",
        "PATCH" => "PATCH",
        "DELETE" => "DELETE",
        "HEAD" => "HEAD",
        "OPTIONS" => "OPTIONS",
        _ => "other",
    }
}

/// Counts SCIM requests, and wakes the sync loops after every successful write (which left
/// its pending changes in the store).
async fn observe_scim(
    Extract(state): Extract<Arc<State>>,
    req: axum::extract::Request,
    next: axum::middleware::Next,
) -> axum::response::Response {
    let method = req.method().clone();
    let resp = next.run(req).await;
    let status = resp.status();
    state
        .metrics
        .scim_requests
        .with_label_values(&[method_label(&method), status.as_str()])
        .inc();
    if method != axum::http::Method::GET && status.is_success() {
        state.scim_changes.send_modify(|n| *n = n.wrapping_add(1));
    }
    resp
}

/// Ready while the store answers: a replica without its store can neither take SCIM writes
/// nor renew its leases. An unreachable Airflow does not make it unready (that instance's
/// loop retries on its own; `/healthz` says so).
async fn readyz(Extract(http): Extract<Http>) -> impl IntoResponse {
    if http.state.stopping.load(Ordering::SeqCst) {
        return (StatusCode::SERVICE_UNAVAILABLE, "stopping\n");
    }
    let ok = matches!(
        tokio::time::timeout(STORE_CHECK_TIMEOUT, http.store.ping()).await,
        Ok(Ok(()))
    );
    http.state.metrics.ready.set(if ok { 1.0 } else { 0.0 });
    if ok {
        (StatusCode::OK, "ready\n")
    } else {
        (
            StatusCode::SERVICE_UNAVAILABLE,
            "the state store is unreachable\n",
        )
    }
}

fn rfc3339(ms: Option<i64>) -> Value {
    ms.and_then(chrono::DateTime::from_timestamp_millis)
        .map(|t| json!(t.to_rfc3339_opts(chrono::SecondsFormat::Millis, true)))
        .unwrap_or(Value::Null)
}

/// Always 200 while the process runs; the body says what is true now, per instance: its
/// lease (who holds it, epoch, expiry), the last sync and its result, the last error class,
/// and its pending SCIM changes.
async fn healthz(Extract(http): Extract<Http>) -> impl IntoResponse {
    let now = SystemClock.now().timestamp_millis();
    let leases = tokio::time::timeout(STORE_CHECK_TIMEOUT, http.store.leases()).await;
    let pending =
        tokio::time::timeout(STORE_CHECK_TIMEOUT, http.store.scim_pending_summary()).await;
    let store_ok = matches!((&leases, &pending), (Ok(Ok(_)), Ok(Ok(_))));
    let leases = leases.ok().and_then(Result::ok).unwrap_or_default();
    let pending = pending.ok().and_then(Result::ok).unwrap_or_default();
    let health = http.state.snapshot();
    let instances: Vec<Value> = http
        .state
        .names
        .iter()
        .map(|name| {
            let h = health.get(name).cloned().unwrap_or_default();
            let lease = leases
                .iter()
                .find(|l| l.name == airlock_engine::lease::instance_lease(name))
                .filter(|l| l.expires_ms > now)
                .map(|l| {
                    json!({
                        "holder": l.holder,
                        "held_here": l.holder == http.state.holder,
                        "epoch": l.epoch,
                        "expires_in_ms": l.expires_ms - now,
                    })
                });
            let p = pending.iter().find(|p| &p.consumer == name);
            json!({
                "name": name,
                "lease": lease,
                "last_success_at": rfc3339(h.last_success_ms),
                "last_run_at": rfc3339(h.last_run_ms),
                "last_result": h.last_result,
                "last_error_class": h.last_error_class,
                "last_error": h.last_error,
                "pending_scim_changes": p.map(|p| p.count).unwrap_or(0),
                "oldest_pending_age_secs": p.and_then(|p| p.oldest_ms).map(|t| (now - t).max(0) / 1000),
            })
        })
        .collect();
    let sinks = sink_health(&http).await;
    let alarm = sinks.iter().any(|s| s["alarm"] == true);
    Json(json!({
        "status": if store_ok && !alarm { "ok" } else { "degraded" },
        "replica": http.state.holder,
        "store": { "reachable": store_ok },
        "instances": instances,
        "sinks": sinks,
    }))
}

/// Per audit sink: the events not yet shipped (the trail's end minus its cursor), and an alarm
/// once that is beyond its `max_backlog`. `null` while the store does not answer.
async fn sink_health(http: &Http) -> Vec<Value> {
    if http.state.sinks.is_empty() {
        return Vec::new();
    }
    let head = tokio::time::timeout(STORE_CHECK_TIMEOUT, http.store.audit_head()).await;
    let head = head.ok().and_then(Result::ok).map(|h| h.seq);
    let mut out = Vec::new();
    for (name, max) in &http.state.sinks {
        let cursor = tokio::time::timeout(
            STORE_CHECK_TIMEOUT,
            http.store.delivery_cursor(&format!("sink:{name}")),
        )
        .await
        .ok()
        .and_then(Result::ok);
        // A sink that has not started yet starts at the end of the trail: no backlog.
        let backlog = match (head, cursor) {
            (Some(h), Some(c)) => Some(h.saturating_sub(c.unwrap_or(h))),
            _ => None,
        };
        out.push(json!({
            "name": name,
            "backlog_events": backlog,
            "max_backlog": max,
            "alarm": backlog.is_some_and(|b| b > *max),
        }));
    }
    out
}

async fn metrics(Extract(http): Extract<Http>) -> impl IntoResponse {
    (
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        http.state.metrics.render(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::Method;

    #[test]
    fn unknown_methods_share_one_label() {
        assert_eq!(method_label(&Method::PATCH), "PATCH");
        for m in ["FOO", "get", "PROPFIND", "X-RANDOM-1234"] {
            let m = Method::from_bytes(m.as_bytes()).expect("valid method");
            assert_eq!(method_label(&m), "other");
        }
    }
}
