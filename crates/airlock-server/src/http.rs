//! The service's HTTP surface: liveness, readiness, metrics, and the SCIM endpoint under
//! `/scim/v2` (its own module). One place turns state into responses; nothing here can change
//! Airflow.

use crate::State;
use airlock_store::Store;
use axum::extract::State as Extract;
use axum::http::{header, StatusCode};
use axum::response::IntoResponse;
use axum::routing::get;
use axum::Router;
use std::sync::atomic::Ordering;
use std::sync::Arc;

pub(crate) fn router(state: Arc<State>, store: Store, notify: Vec<String>) -> Router {
    Router::new()
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
        .with_state(state.clone())
        .merge(
            crate::scim::scim_router_with(store, Arc::new(airlock_core::SystemClock), notify)
                .layer(axum::middleware::from_fn_with_state(state, observe_scim)),
        )
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
        .with_label_values(&[method.as_str(), status.as_str()])
        .inc();
    if method != axum::http::Method::GET && status.is_success() {
        state.scim_changes.send_modify(|n| *n = n.wrapping_add(1));
    }
    resp
}

async fn readyz(Extract(state): Extract<Arc<State>>) -> impl IntoResponse {
    if state.stopping.load(Ordering::SeqCst) {
        (StatusCode::SERVICE_UNAVAILABLE, "stopping\n")
    } else if state.ready.load(Ordering::SeqCst) {
        (StatusCode::OK, "ready\n")
    } else {
        (
            StatusCode::SERVICE_UNAVAILABLE,
            "waiting for the first complete directory and Airflow reads\n",
        )
    }
}

async fn metrics(Extract(state): Extract<Arc<State>>) -> impl IntoResponse {
    (
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        state.metrics.render(),
    )
}
