//! Syncs: one loop per instance. A loop first takes the instance's lease (so one replica
//! applies to an instance at a time), then runs the engine (`prepare` + `execute`):
//!
//! - a full sync when it takes the lease and then every interval plus jitter;
//! - in between, with a SCIM directory, a targeted run for the SCIM changes pending for the
//!   instance (the store's outbox, written with each SCIM write): only the accounts of the
//!   people they touched are read and planned. A write on this replica wakes the loop at once;
//!   writes on another replica are found by polling (`serve.scim_poll_ms`). Whatever is
//!   pending when a pass starts is handled by that pass and acknowledged only once it
//!   succeeded, so a crash, a failed run or a lost lease leaves the changes for the next
//!   holder. Because one loop per instance does all of this under the lease, an account is
//!   never applied twice at once.
//!
//! Losing the lease (the store connection broke) sends the loop back to taking it; a replica
//! that dies frees its leases with its database session, and the others take over at their
//! next attempt.

use crate::{ServeOptions, State};
use airlock_airflow::ErrorClass;
use airlock_config::{Config, InstanceConfig};
use airlock_core::directory::Touched;
use airlock_core::policy::Policy;
use airlock_core::{Clock, SystemClock};
use airlock_directory::Source;
use airlock_engine::sync::{ApplyOptions, Engine, Gate};
use airlock_engine::{client_for, EngineError};
use airlock_store::{Lease, ScimChange, Store};
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

/// The most pending changes one pass reads; more are left for the next pass.
const CHANGE_BATCH: usize = 500;

/// A targeted run reads one account per touched person; past this many (a large group created
/// or renamed, a bulk push), one full sync (a page per 100 accounts) is about as cheap, and
/// covers the changes just as well.
const TARGETED_MAX_PEOPLE: usize = 50;

/// Waits until `until`, a SCIM change received by this replica (after a short pause, so that
/// a burst is applied together), or the stop signal; returns whether the service is stopping.
async fn wait_until(
    until: Instant,
    stop: &mut watch::Receiver<bool>,
    changes: &mut watch::Receiver<u64>,
) -> bool {
    if *stop.borrow() {
        return true;
    }
    tokio::select! {
        _ = tokio::time::sleep_until(until.into()) => {}
        _ = stop.changed() => return true,
        r = changes.changed() => {
            if r.is_ok() {
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }
    }
    *stop.borrow()
}

fn jittered(opts: &ServeOptions) -> Duration {
    let jitter = if opts.jitter.is_zero() {
        Duration::ZERO
    } else {
        opts.jitter.mul_f64(rand::thread_rng().gen_range(0.0..1.0))
    };
    opts.interval + jitter
}

/// What a sync covers.
#[derive(Clone, Copy)]
enum Scope<'t> {
    /// Every account of the instance.
    Full,
    /// The accounts of these people only.
    Touched(&'t Touched),
}

impl Scope<'_> {
    fn trigger(&self) -> &'static str {
        match self {
            Scope::Full => "schedule",
            Scope::Touched(_) => "scim",
        }
    }
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
    // SCIM pushes drive targeted runs only when they are the directory.
    let scim = match source {
        Source::Scim(s) => Some(s),
        _ => None,
    };
    let mut full_due = Instant::now();
    let mut failures = 0u32;
    let mut retry_at = Instant::now();
    loop {
        if *stop.borrow() {
            break;
        }
        if lease.is_none() {
            match store.try_lease(&format!("instance:{name}")).await {
                Ok(Some(l)) => {
                    tracing::info!(instance = %name, "lease taken: this replica syncs the instance");
                    lease = Some(l);
                    // A new holder does not know what happened while it did not hold it.
                    full_due = Instant::now();
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
        // Changes written from here on are read by the next pass.
        changes.borrow_and_update();
        let pending = match scim {
            Some(_) => match store.scim_pending_changes(&name, CHANGE_BATCH).await {
                Ok(p) => p,
                Err(e) => {
                    record_error(state, &EngineError::Store(e));
                    Vec::new()
                }
            },
            None => Vec::new(),
        };
        let now = Instant::now();
        let ran = if now >= full_due {
            full_due = now + jittered(opts);
            Some(sync_once(inst, policy, source, store, opts, state, Scope::Full).await)
        } else if !pending.is_empty() && now >= retry_at {
            let touched = match scim {
                Some(s) => s.touched(&pending).await.map_err(|e| {
                    let e = EngineError::Directory(e.into());
                    record_error(state, &e);
                    tracing::warn!(instance = %name, error = %e, "cannot read what SCIM changes touched");
                }),
                None => Ok(Touched::default()),
            };
            match touched {
                Err(()) => Some(false),
                Ok(t) if t.ids.len() + t.previous.len() > TARGETED_MAX_PEOPLE => {
                    full_due = now + jittered(opts);
                    Some(sync_once(inst, policy, source, store, opts, state, Scope::Full).await)
                }
                Ok(t) if t.is_empty() => Some(true),
                Ok(t) => Some(
                    sync_once(inst, policy, source, store, opts, state, Scope::Touched(&t)).await,
                ),
            }
        } else {
            None
        };
        match ran {
            Some(true) => {
                failures = 0;
                retry_at = Instant::now();
                acknowledge(store, state, &name, &pending).await;
            }
            Some(false) if !pending.is_empty() => {
                // Keep the changes; retry them with a growing pause rather than at every wake.
                failures = failures.saturating_add(1);
                let backoff = Duration::from_secs(1 << failures.min(6)).min(opts.interval);
                retry_at = Instant::now() + backoff;
            }
            _ => {}
        }
        let poll = match scim {
            // A full batch may have left more behind: go on at once.
            Some(_) if pending.len() == CHANGE_BATCH => Instant::now(),
            Some(_) => Instant::now() + opts.scim_poll,
            None => full_due,
        };
        let until = full_due.min(poll.max(retry_at));
        if wait_until(until, &mut stop, &mut changes).await {
            break;
        }
    }
    held.set(0.0);
    drop(lease);
}

/// Removes applied changes and records how long each took to reach Airflow.
async fn acknowledge(store: &Store, state: &State, name: &str, pending: &[ScimChange]) {
    if pending.is_empty() {
        return;
    }
    let ids: Vec<String> = pending.iter().map(|c| c.id.clone()).collect();
    if let Err(e) = store.scim_ack_changes(name, &ids).await {
        // They are applied again by the next pass: harmless, every operation is idempotent.
        record_error(state, &EngineError::Store(e));
        return;
    }
    let now_ms = SystemClock.now().timestamp_millis();
    let histogram = state
        .metrics
        .scim_change_to_airflow
        .with_label_values(&[name]);
    for c in pending {
        histogram.observe((now_ms - c.changed_ms).max(0) as f64 / 1000.0);
    }
}

/// One sync of one instance; returns whether it completed without failures.
async fn sync_once(
    inst: &InstanceConfig,
    policy: &Policy,
    source: &Source,
    store: &Store,
    opts: &ServeOptions,
    state: &State,
    scope: Scope<'_>,
) -> bool {
    let name = inst.name.to_string();
    let trigger = scope.trigger();
    let started = Instant::now();
    let client = match client_for(inst) {
        Ok(c) => c,
        Err(e) => {
            record_error(state, &e);
            state
                .metrics
                .sync_runs
                .with_label_values(&[&name, "error", trigger])
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
    let prepared = match scope {
        Scope::Full => engine.prepare("serve", None, false).await,
        Scope::Touched(t) => engine.prepare_touched("scim", t).await,
    };
    let result = match prepared {
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
                    tracing::info!(instance = %name, run = %run_id, trigger, ops = report.results.len(), failed = report.failed(), "sync done");
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
        .with_label_values(&[&name, result, trigger])
        .inc();
    state
        .metrics
        .sync_duration
        .with_label_values(&[&name, trigger])
        .observe(started.elapsed().as_secs_f64());
    result == "succeeded"
}
