//! Scheduled syncs: one loop per instance. A loop first takes the instance's lease (so one
//! replica applies to an instance at a time), then runs `prepare` + `execute`, the engine's
//! single entry point, every interval plus jitter. Losing the lease (the store connection
//! broke) sends the loop back to taking it; a replica that dies frees its leases with its
//! database session, and the others take over at their next attempt.

use crate::{ServeOptions, State};
use airlock_airflow::ErrorClass;
use airlock_config::{Config, InstanceConfig};
use airlock_core::policy::Policy;
use airlock_core::SystemClock;
use airlock_directory::Source;
use airlock_engine::sync::{ApplyOptions, Engine, Gate};
use airlock_engine::{client_for, EngineError};
use airlock_store::{Lease, Store};
use rand::Rng;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::watch;

/// Sleeps `d`, or less if the service is stopping; returns whether it is stopping.
async fn pause(d: Duration, stop: &mut watch::Receiver<bool>) -> bool {
    if *stop.borrow() {
        return true;
    }
    tokio::select! {
        _ = tokio::time::sleep(d) => *stop.borrow(),
        _ = stop.changed() => true,
    }
}

fn record_error(state: &State, e: &EngineError) {
    let (source, class) = match e {
        EngineError::Directory(_) => ("directory", "error"),
        EngineError::Airflow(a) => (
            "airflow",
            match a.class() {
                ErrorClass::Transient => "transient",
                ErrorClass::RateLimited(_) => "rate_limited",
                ErrorClass::Permanent => "permanent",
                ErrorClass::Conflict => "conflict",
            },
        ),
        EngineError::Store(_) => ("store", "error"),
        EngineError::CorruptSnapshot { .. } => ("store", "corrupt"),
    };
    state
        .metrics
        .errors
        .with_label_values(&[source, class])
        .inc();
}

pub(crate) async fn run(
    config: Arc<Config>,
    policy: Arc<Policy>,
    source: Arc<Source>,
    store: Store,
    opts: ServeOptions,
    state: Arc<State>,
    mut stop: watch::Receiver<bool>,
) {
    // Ready only after one complete read of the directory and of every instance.
    loop {
        let clients = config
            .instances
            .iter()
            .map(|i| client_for(i).map(|c| (i.name.clone(), c)))
            .collect();
        let clients = match clients {
            Ok(c) => c,
            Err(e) => {
                record_error(&state, &e);
                tracing::error!(error = %e, "cannot build an Airflow client");
                if pause(opts.lease_retry, &mut stop).await {
                    return;
                }
                continue;
            }
        };
        let engine = Engine {
            policy: &policy,
            instances: config.instances.iter().collect(),
            clients,
            source: &source,
            store: &store,
            clock: &SystemClock,
            concurrency: opts.concurrency,
        };
        match engine.observe().await {
            Ok(_) => {
                state.ready.store(true, Ordering::SeqCst);
                state.metrics.ready.set(1.0);
                tracing::info!("ready: directory and every instance read completely");
                break;
            }
            Err(e) => {
                record_error(&state, &e);
                tracing::warn!(error = %e, "not ready yet");
                if pause(opts.lease_retry, &mut stop).await {
                    return;
                }
            }
        }
    }
    // One task per instance, so a slow or unreachable instance never delays another.
    let mut tasks = Vec::new();
    for idx in 0..config.instances.len() {
        let (config, policy, source, store, opts, state, stop) = (
            config.clone(),
            policy.clone(),
            source.clone(),
            store.clone(),
            opts.clone(),
            state.clone(),
            stop.clone(),
        );
        tasks.push(tokio::spawn(async move {
            instance_loop(
                &config.instances[idx],
                &policy,
                &source,
                &store,
                &opts,
                &state,
                stop,
            )
            .await;
        }));
    }
    for t in tasks {
        if let Err(e) = t.await {
            tracing::error!(error = %e, "instance loop failed");
        }
    }
}

/// Waits for the next sync: the interval, or a SCIM change (debounced briefly so a burst of
/// writes is applied by one sync); returns whether the service is stopping.
async fn wait_for_next_sync(
    d: Duration,
    stop: &mut watch::Receiver<bool>,
    changes: &mut watch::Receiver<u64>,
) -> bool {
    if *stop.borrow() {
        return true;
    }
    tokio::select! {
        _ = tokio::time::sleep(d) => {}
        _ = stop.changed() => return true,
        r = changes.changed() => {
            if r.is_ok() {
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    }
    changes.borrow_and_update();
    *stop.borrow()
}

async fn instance_loop(
    inst: &InstanceConfig,
    policy: &Policy,
    source: &Source,
    store: &Store,
    opts: &ServeOptions,
    state: &State,
    mut stop: watch::Receiver<bool>,
) {
    let name = inst.name.to_string();
    let held = state.metrics.lease_held.with_label_values(&[&name]);
    let mut lease: Option<Lease> = None;
    let mut changes = state.scim_changes.subscribe();
    loop {
        if *stop.borrow() {
            break;
        }
        if lease.is_none() {
            match store.try_lease(&format!("instance:{name}")).await {
                Ok(Some(l)) => {
                    tracing::info!(instance = %name, "lease taken: this replica syncs the instance");
                    lease = Some(l);
                }
                Ok(None) => {}
                Err(e) => {
                    state
                        .metrics
                        .errors
                        .with_label_values(&["store", "lease"])
                        .inc();
                    tracing::warn!(instance = %name, error = %e, "cannot take the lease");
                }
            }
        }
        held.set(if lease.is_some() { 1.0 } else { 0.0 });
        let Some(l) = lease.as_mut() else {
            if pause(opts.lease_retry, &mut stop).await {
                break;
            }
            continue;
        };
        if !l.is_alive().await {
            tracing::warn!(instance = %name, "lease lost (store connection closed); taking it again");
            lease = None;
            continue;
        }
        // Changes seen from here on are covered by this sync.
        changes.borrow_and_update();
        let started = Instant::now();
        let pending = state.scim_pending_since.lock().ok().and_then(|p| *p);
        let ok = sync_once(inst, policy, source, store, opts, state).await;
        if let (true, Some(since)) = (ok, pending) {
            if let Ok(mut p) = state.scim_pending_since.lock() {
                if *p == Some(since) {
                    *p = None;
                }
            }
            if since <= started {
                state
                    .metrics
                    .scim_change_to_airflow
                    .with_label_values(&[&name])
                    .observe(since.elapsed().as_secs_f64());
            }
        }
        let jitter = if opts.jitter.is_zero() {
            Duration::ZERO
        } else {
            opts.jitter.mul_f64(rand::thread_rng().gen_range(0.0..1.0))
        };
        if wait_for_next_sync(opts.interval + jitter, &mut stop, &mut changes).await {
            break;
        }
    }
    held.set(0.0);
    drop(lease);
}

/// One sync of one instance; returns whether it completed without failures.
async fn sync_once(
    inst: &InstanceConfig,
    policy: &Policy,
    source: &Source,
    store: &Store,
    opts: &ServeOptions,
    state: &State,
) -> bool {
    let name = inst.name.to_string();
    let started = Instant::now();
    let client = match client_for(inst) {
        Ok(c) => c,
        Err(e) => {
            record_error(state, &e);
            state
                .metrics
                .sync_runs
                .with_label_values(&[&name, "error"])
                .inc();
            return false;
        }
    };
    let engine = Engine {
        policy,
        instances: vec![inst],
        clients: [(inst.name.clone(), client)].into(),
        source,
        store,
        clock: &SystemClock,
        concurrency: opts.concurrency,
    };
    let result = match engine.prepare("serve", None, false).await {
        Err(e) => {
            record_error(state, &e);
            tracing::warn!(instance = %name, error = %e, "sync failed before any write");
            "error"
        }
        Ok((_, Gate::Refused(r))) => {
            tracing::warn!(instance = %name, refusal = %r, "sync refused by a safety rail");
            "refused"
        }
        Ok((run_id, Gate::Proceed(plan))) => {
            let apply = ApplyOptions {
                allow_mass_deprovision: false,
                cancel: state.stopping.clone(),
                progress: None,
            };
            match engine.execute(&run_id, &plan, &apply).await {
                Ok(report) => {
                    for r in &report.results {
                        let outcome = if r.error.is_some() {
                            "failed"
                        } else {
                            "succeeded"
                        };
                        state
                            .metrics
                            .operations
                            .with_label_values(&[&name, r.op.op.kind(), outcome])
                            .inc();
                    }
                    tracing::info!(instance = %name, run = %run_id, ops = report.results.len(), failed = report.failed(), "sync done");
                    if report.skipped > 0 {
                        "interrupted"
                    } else if report.failed() > 0 {
                        "failed"
                    } else {
                        "succeeded"
                    }
                }
                Err(e) => {
                    record_error(state, &e);
                    "error"
                }
            }
        }
    };
    state
        .metrics
        .sync_runs
        .with_label_values(&[&name, result])
        .inc();
    state
        .metrics
        .sync_duration
        .with_label_values(&[&name])
        .observe(started.elapsed().as_secs_f64());
    result == "succeeded"
}
