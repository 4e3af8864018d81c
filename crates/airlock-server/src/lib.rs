//! `airlock serve`: the long-running service. Runs scheduled syncs per instance through the
//! same engine as `airlock sync`, holds a lease per instance so that several replicas on one
//! PostgreSQL store never apply to the same Airflow at once, and serves `/healthz`, `/readyz`,
//! Prometheus `/metrics` and the SCIM 2.0 endpoint (`/scim/v2`, see [`scim`]) on a local
//! address (health and metrics optionally on a second one), through [`listener`]'s limits
//! (header read timeout, connection cap, bounded shutdown); failed SCIM authentication is
//! throttled per peer address ([`throttle`]).
//!
//! With `[audit.checkpoints]`, a task signs a checkpoint of the audit chain every interval in
//! which it grew (see `checkpoints`).
//!
//! With `[directory] kind = "scim"`, every SCIM write leaves a pending change per registered
//! consumer (instance) in the store, and the instance's loop applies it at once by a targeted
//! run (see `scheduler`).
//!
//! Every write to Airflow happens under the instance's lease (a row with an epoch, renewed by
//! this replica's heartbeat; docs/adr/0006). On SQLite only one `airlock serve` may use a
//! store: it takes the `serve` lease first and refuses to start while another holds it.

mod checkpoints;
mod grants;
mod http;
mod insights;
pub mod listener;
mod logins;
mod metrics;
mod scheduler;
pub mod scim;
pub mod throttle;

pub use listener::HttpLimits;
pub use metrics::Metrics;
pub use scim::{scim_router, scim_router_with};
pub use throttle::{AuthThrottle, ThrottleConfig};

use airlock_config::Config;
use airlock_core::{Clock, SystemClock};
use airlock_directory::Source;
use airlock_engine::lease::{LeaseKeeper, Taken};
use airlock_store::{Backend, Store};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

/// The lease a service takes on SQLite, where only one may use a store.
pub const SERVE_LEASE: &str = "serve";

/// How the service runs.
#[derive(Debug, Clone)]
pub struct ServeOptions {
    /// Address for SCIM, and for health and metrics unless `metrics_listen` is set
    /// (127.0.0.1 by default: put a proxy in front to expose).
    pub listen: SocketAddr,
    /// A separate address for `/healthz`, `/readyz` and `/metrics`; then `listen` serves
    /// only `/scim/v2`.
    pub metrics_listen: Option<SocketAddr>,
    /// PEM certificate chain and key to serve `listen` over TLS.
    pub tls: Option<(std::path::PathBuf, std::path::PathBuf)>,
    /// Timeouts and caps of the listeners.
    pub http: HttpLimits,
    /// Failed SCIM authentication throttling.
    pub throttle: ThrottleConfig,
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
    /// How long a lease lives without renewal.
    pub lease_ttl: Duration,
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
    /// The TLS certificate or key cannot be used.
    #[error(transparent)]
    Tls(#[from] listener::TlsError),
    /// The configuration lacks something the service needs.
    #[error("{0}")]
    Config(String),
    /// The store failed before the service could start.
    #[error(transparent)]
    Store(#[from] airlock_store::StoreError),
}

/// What `/healthz` says of one instance.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub(crate) struct InstanceHealth {
    /// Last run that succeeded (unix ms).
    pub(crate) last_success_ms: Option<i64>,
    /// Last run, whatever its result.
    pub(crate) last_run_ms: Option<i64>,
    /// `succeeded`, `failed`, `refused`, `interrupted` or `error`.
    pub(crate) last_result: Option<&'static str>,
    /// `source/class` of the last error, cleared by a success.
    pub(crate) last_error_class: Option<String>,
    /// The last error, one line (never a secret).
    pub(crate) last_error: Option<String>,
}

/// Shared state of the running service.
pub(crate) struct State {
    pub(crate) metrics: Metrics,
    /// This replica's lease holder id.
    pub(crate) holder: String,
    /// Instance names, in config order.
    pub(crate) names: Vec<String>,
    /// Per instance, what its loop last did.
    pub(crate) instances: std::sync::Mutex<std::collections::BTreeMap<String, InstanceHealth>>,
    /// Set on SIGTERM / SIGINT: stop starting syncs and operations.
    pub(crate) stopping: Arc<AtomicBool>,
    /// Bumped by every successful SCIM write on this replica; instance loops wake on it and
    /// read the pending changes from the store. A watch coalesces bursts: writes arriving
    /// during a run are read together by the next one.
    pub(crate) scim_changes: tokio::sync::watch::Sender<u64>,
    /// The audit sinks: name and the backlog beyond which `/healthz` raises an alarm.
    pub(crate) sinks: Vec<(String, u64)>,
}

impl State {
    /// Changes what `/healthz` says of `instance`.
    pub(crate) fn update(&self, instance: &str, f: impl FnOnce(&mut InstanceHealth)) {
        let mut map = self
            .instances
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        f(map.entry(instance.to_string()).or_default());
    }

    /// A copy of every instance's health.
    pub(crate) fn snapshot(&self) -> std::collections::BTreeMap<String, InstanceHealth> {
        self.instances
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }
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
    let holder = airlock_engine::lease::holder_id("airlock serve");
    let keeper = LeaseKeeper::new(
        store.clone(),
        holder.clone(),
        opts.lease_ttl,
        Arc::new(SystemClock),
    );
    if store.backend() == Backend::Sqlite {
        // One file, one service: a second one would only wait for leases it never gets.
        match keeper.acquire(SERVE_LEASE).await {
            Ok(Taken::Granted(_)) => {}
            Ok(Taken::Held(row)) => {
                return Err(ServeError::Config(format!(
                    "another airlock serve uses the SQLite store at {}: {} (its lease expires {} s after it stops); stop it, or use PostgreSQL to run replicas",
                    store.location(),
                    row.holder,
                    opts.lease_ttl.as_secs()
                )))
            }
            Err(e) => return Err(ServeError::Store(e)),
        }
    }
    let state = Arc::new(State {
        metrics: Metrics::new(),
        holder,
        names: config
            .instances
            .iter()
            .map(|i| i.name.to_string())
            .collect(),
        instances: Default::default(),
        stopping: Arc::new(AtomicBool::new(false)),
        scim_changes: tokio::sync::watch::channel(0).0,
        sinks: (config.audit.sinks.iter())
            .map(|s| (s.name.clone(), s.max_backlog))
            .collect(),
    });
    let tls = match &opts.tls {
        Some((cert, key)) => Some(listener::tls_acceptor(cert, key)?),
        None => None,
    };
    let listener = bind(opts.listen).await?;
    let ops_listener = match opts.metrics_listen {
        Some(addr) => Some(bind(addr).await?),
        None => None,
    };
    tracing::info!(listen = %opts.listen, metrics_listen = ?opts.metrics_listen, instances = config.instances.len(), holder = %state.holder, "airlock serve started");

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
    let clock: Arc<dyn Clock> = Arc::new(SystemClock);
    let api = match &config.api {
        Some(_) => Some(airlock_api::router(
            airlock_api::Api::new(&config, source.clone(), store.clone(), clock)
                .map_err(|e| ServeError::Config(e.to_string()))?,
        )),
        None => None,
    };
    let scheduler = tokio::spawn(scheduler::run(
        scheduler::Service {
            config: config.clone(),
            policy: policy.clone(),
            source,
            store: store.clone(),
            opts: opts.clone(),
            state: state.clone(),
            keeper: keeper.clone(),
        },
        stop_rx.clone(),
    ));

    let notifiers = spawn_notifiers(&config, &store, &keeper, &state, &opts, &stop_rx)?;
    let watcher =
        (!policy.access.rules.is_empty() && policy.access.expiring_notice_secs > 0).then(|| {
            tokio::spawn(grants::run(
                store.clone(),
                policy.access.clone(),
                Arc::new(SystemClock),
                opts.scim_poll,
                stop_rx.clone(),
            ))
        });

    let leaver_watch =
        spawn_leaver_watch(&config, &policy, &store, &keeper, &state, &opts, &stop_rx)?;
    let login_snapshots =
        spawn_login_snapshots(&config, &policy, &store, &keeper, &state, &opts, &stop_rx);

    let checkpoints = config
        .audit
        .checkpoints
        .clone()
        .map(|cfg| tokio::spawn(checkpoints::run(store.clone(), cfg, stop_rx.clone())));

    let servers = serve_http(
        Listeners {
            main: listener,
            ops: ops_listener,
            tls,
        },
        api,
        &state,
        &store,
        &opts,
        stop_rx,
    );
    for server in servers {
        if let Err(e) = server.await {
            tracing::error!(error = %e, "http listener task failed");
        }
    }
    if let Err(e) = scheduler.await {
        tracing::error!(error = %e, "scheduler task failed");
    }
    if let Some(task) = watcher {
        if let Err(e) = task.await {
            tracing::error!(error = %e, "expiring-grant watcher failed");
        }
    }
    for task in notifiers {
        if let Err(e) = task.await {
            tracing::error!(error = %e, "notification task failed");
        }
    }
    if let Some(task) = leaver_watch {
        if let Err(e) = task.await {
            tracing::error!(error = %e, "leaver watch failed");
        }
    }
    for task in login_snapshots {
        if let Err(e) = task.await {
            tracing::error!(error = %e, "login snapshot task failed");
        }
    }
    if let Some(task) = checkpoints {
        if let Err(e) = task.await {
            tracing::error!(error = %e, "checkpoint task failed");
        }
    }
    keeper.release_all().await;
    store.close().await;
    tracing::info!("airlock serve stopped");
    Ok(())
}

/// With a JumpCloud directory read with `insights = true`, the leaver watch (docs:
/// `insights`).
fn spawn_leaver_watch(
    config: &Config,
    policy: &airlock_core::policy::Policy,
    store: &Store,
    keeper: &LeaseKeeper,
    state: &Arc<State>,
    opts: &ServeOptions,
    stop: &tokio::sync::watch::Receiver<bool>,
) -> Result<Option<tokio::task::JoinHandle<()>>, ServeError> {
    let Some((reader, poll)) = airlock_engine::leavers::insights_for(config)
        .map_err(|e| ServeError::Config(format!("directory.insights: {e}")))?
    else {
        return Ok(None);
    };
    let watch = insights::LeaverWatch {
        insights: reader,
        rule: policy.username.clone(),
        store: store.clone(),
        clock: Arc::new(SystemClock),
        keeper: keeper.clone(),
        state: state.clone(),
        poll,
        lease_retry: opts.lease_retry,
    };
    Ok(Some(tokio::spawn(watch.run(stop.clone()))))
}

/// With `serve.login_snapshot_secs` on, one login snapshot loop per instance (docs:
/// `logins`).
fn spawn_login_snapshots(
    config: &Config,
    policy: &airlock_core::policy::Policy,
    store: &Store,
    keeper: &LeaseKeeper,
    state: &Arc<State>,
    opts: &ServeOptions,
    stop: &tokio::sync::watch::Receiver<bool>,
) -> Vec<tokio::task::JoinHandle<()>> {
    let Some(every) = config.serve.login_snapshots else {
        return Vec::new();
    };
    let rules = airlock_core::inventory::FlagRules {
        inactive_after_days: config.inventory.inactive_after_days,
    };
    (config.instances.iter())
        .map(|inst| {
            let task = logins::LoginSnapshots {
                inst: inst.clone(),
                watch: airlock_engine::inventory::LoginWatch::new(inst, policy.protected.clone()),
                rules,
                store: store.clone(),
                clock: Arc::new(SystemClock),
                keeper: keeper.clone(),
                state: state.clone(),
                every,
                lease_retry: opts.lease_retry,
            };
            tokio::spawn(task.run(stop.clone()))
        })
        .collect()
}

/// One delivery loop per `[[notifications.webhooks]]` and per `[[audit.sinks]]` (docs:
/// `airlock_notify`).
fn spawn_notifiers(
    config: &Config,
    store: &Store,
    keeper: &LeaseKeeper,
    state: &Arc<State>,
    opts: &ServeOptions,
    stop: &tokio::sync::watch::Receiver<bool>,
) -> Result<Vec<tokio::task::JoinHandle<()>>, ServeError> {
    let report: Arc<dyn airlock_notify::Report> = Arc::new(state.metrics.clone());
    let mut outlets: Vec<Arc<dyn airlock_notify::Outlet>> = Vec::new();
    for w in &config.webhooks {
        let webhook = airlock_notify::Webhook::new(w.clone())
            .map_err(|e| ServeError::Config(format!("notifications.webhooks {}: {e}", w.name)))?;
        outlets.push(Arc::new(webhook));
    }
    let hostname = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_owned())
        .unwrap_or_default();
    for s in &config.audit.sinks {
        outlets.push(
            airlock_notify::sink_outlet(s, &hostname)
                .map_err(|e| ServeError::Config(format!("audit.sinks {}: {e}", s.name)))?,
        );
    }
    Ok(outlets
        .into_iter()
        .map(|outlet| {
            let delivery = airlock_notify::Delivery {
                outlet,
                store: store.clone(),
                clock: Arc::new(SystemClock),
                keeper: keeper.clone(),
                report: report.clone(),
                poll: opts.scim_poll,
                lease_retry: opts.lease_retry,
            };
            tokio::spawn(delivery.run(stop.clone()))
        })
        .collect())
}

async fn bind(addr: SocketAddr) -> Result<tokio::net::TcpListener, ServeError> {
    tokio::net::TcpListener::bind(addr)
        .await
        .map_err(|source| ServeError::Bind { addr, source })
}

/// The bound sockets of the service.
struct Listeners {
    main: tokio::net::TcpListener,
    ops: Option<tokio::net::TcpListener>,
    tls: Option<tokio_rustls::TlsAcceptor>,
}

/// Starts the listeners: SCIM and the governance API (and, without a separate `ops`
/// listener, health and metrics) on `main`; health and metrics on `ops`. Each stops in
/// bounded time once `stop` is set. Failed authentication on SCIM and the API counts
/// against one throttle per peer address.
fn serve_http(
    Listeners { main, ops, tls }: Listeners,
    api: Option<axum::Router>,
    state: &Arc<State>,
    store: &Store,
    opts: &ServeOptions,
    stop: tokio::sync::watch::Receiver<bool>,
) -> Vec<tokio::task::JoinHandle<()>> {
    let clock: Arc<dyn Clock> = Arc::new(SystemClock);
    let throttle = Arc::new(AuthThrottle::new(opts.throttle, clock));
    let mut scim = http::scim_router(state.clone(), store.clone(), throttle.clone());
    if let Some(api) = api {
        scim = scim.merge(api.layer(axum::middleware::from_fn_with_state(
            throttle,
            throttle::throttle_auth,
        )));
    }
    let health = http::ops_router(state.clone(), store.clone());
    let mut listeners = Vec::new();
    match ops {
        Some(ops) => {
            listeners.push(("main", main, tls, scim));
            listeners.push(("ops", ops, None, health));
        }
        None => listeners.push(("main", main, tls, health.merge(scim))),
    }
    listeners
        .into_iter()
        .map(|(name, listener, tls, app)| {
            let gauge = state.metrics.http_connections.with_label_values(&[name]);
            let mut stop = stop.clone();
            let stopped = async move {
                let _ = stop.wait_for(|s| *s).await;
            };
            tokio::spawn(listener::serve_tls(
                listener,
                tls,
                app,
                opts.http,
                Some(gauge),
                stopped,
            ))
        })
        .collect()
}

/// The SCIM endpoint ([`scim_router_with`]) behind failed-authentication throttling: what
/// `airlock serve` serves under `/scim/v2`, without the service's metrics. Its requests need
/// their peer address ([`listener::serve`] gives it).
pub fn scim_router_throttled(
    store: Store,
    clock: Arc<dyn Clock>,
    throttle: Arc<AuthThrottle>,
) -> axum::Router {
    scim_router_with(store, clock).layer(axum::middleware::from_fn_with_state(
        throttle,
        throttle::throttle_auth,
    ))
}
