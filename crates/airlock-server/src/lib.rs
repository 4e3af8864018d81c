//! `airlock serve`: the long-running service. Runs scheduled syncs per instance through the
//! same engine as `airlock sync`, holds a lease per instance so that several replicas on one
//! PostgreSQL store never apply to the same Airflow at once, and serves `/healthz`, `/readyz`,
//! Prometheus `/metrics` and the SCIM 2.0 endpoint (`/scim/v2`, see [`scim`]) on a local
//! address.
//!
//! With `[directory] kind = "scim"`, every SCIM write leaves a pending change per instance in
//! the store, and the instance's loop applies it at once by a targeted run (see `scheduler`).

mod http;
mod metrics;
mod scheduler;
pub mod scim;

pub use metrics::Metrics;
pub use scim::scim_router;

use airlock_config::Config;
use airlock_directory::Source;
use airlock_store::Store;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

/// How the service runs.
#[derive(Debug, Clone)]
pub struct ServeOptions {
    /// Address for health and metrics (127.0.0.1 by default: put a proxy in front to expose).
    pub listen: SocketAddr,
    /// Time between syncs of one instance.
    pub interval: Duration,
    /// Up to this much is added to each interval at random, so replicas and instances spread.
    pub jitter: Duration,
    /// How often a replica without a lease tries to take it.
    pub lease_retry: Duration,
    /// Operations in flight at once per sync.
    pub concurrency: usize,
    /// How often a lease holder checks for SCIM changes another replica received.
    pub scim_poll: Duration,
}

/// A failure that stops the service.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    /// The listen address could not be bound.
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        /// Address.
        addr: SocketAddr,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The HTTP server failed.
    #[error("http server failed: {0}")]
    Http(#[source] std::io::Error),
    /// The configuration lacks something the service needs.
    #[error("{0}")]
    Config(String),
}

/// Shared state of the running service.
pub(crate) struct State {
    pub(crate) metrics: Metrics,
    /// Set once the directory and every instance were read completely.
    pub(crate) ready: AtomicBool,
    /// Set on SIGTERM / SIGINT: stop starting syncs and operations.
    pub(crate) stopping: Arc<AtomicBool>,
    /// Bumped by every successful SCIM write on this replica; instance loops wake on it and
    /// read the pending changes from the store. A watch coalesces bursts: writes arriving
    /// during a run are read together by the next one.
    pub(crate) scim_changes: tokio::sync::watch::Sender<u64>,
}

/// Runs the service until `shutdown` resolves (SIGTERM/SIGINT in the binary), then stops
/// taking requests, lets the operations in flight finish (the rest of the run is recorded as
/// interrupted), and returns.
pub async fn run(
    config: Config,
    source: Source,
    store: Store,
    opts: ServeOptions,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> Result<(), ServeError> {
    let policy = config.policy.clone().ok_or_else(|| {
        ServeError::Config("no policy configured: set `policy = \"policy.toml\"`".into())
    })?;
    let state = Arc::new(State {
        metrics: Metrics::new(),
        ready: AtomicBool::new(false),
        stopping: Arc::new(AtomicBool::new(false)),
        scim_changes: tokio::sync::watch::channel(0).0,
    });
    // Each instance consumes the SCIM changes meant for it, when SCIM is the directory.
    let notify: Vec<String> = match source {
        Source::Scim(_) => config
            .instances
            .iter()
            .map(|i| i.name.to_string())
            .collect(),
        _ => Vec::new(),
    };
    match store.scim_drop_changes_except(&notify).await {
        Ok(0) => {}
        Ok(n) => tracing::info!(
            dropped = n,
            "dropped pending SCIM changes of instances no longer configured"
        ),
        Err(e) => tracing::warn!(error = %e, "cannot drop stale pending SCIM changes"),
    }
    let listener = tokio::net::TcpListener::bind(opts.listen)
        .await
        .map_err(|source| ServeError::Bind {
            addr: opts.listen,
            source,
        })?;
    tracing::info!(listen = %opts.listen, instances = config.instances.len(), "airlock serve started");

    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let stopping = state.stopping.clone();
    tokio::spawn(async move {
        shutdown.await;
        tracing::info!("shutting down: no new syncs or operations; finishing those in flight");
        stopping.store(true, Ordering::SeqCst);
        let _ = stop_tx.send(true);
    });

    let config = Arc::new(config);
    let policy = Arc::new(policy);
    let source = Arc::new(source);
    let scheduler = tokio::spawn(scheduler::run(
        config.clone(),
        policy,
        source,
        store.clone(),
        opts.clone(),
        state.clone(),
        stop_rx.clone(),
    ));

    let mut http_stop = stop_rx;
    let server = axum::serve(listener, http::router(state.clone(), store.clone(), notify))
        .with_graceful_shutdown(async move {
            let _ = http_stop.wait_for(|s| *s).await;
        });
    let served = server.await.map_err(ServeError::Http);
    if let Err(e) = scheduler.await {
        tracing::error!(error = %e, "scheduler task failed");
    }
    store.close().await;
    tracing::info!("airlock serve stopped");
    served
}
