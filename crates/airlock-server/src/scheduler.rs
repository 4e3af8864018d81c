//! Syncs: one loop per instance, each on its own. A loop takes the instance's lease (a row
//! with an epoch, renewed by the replica's heartbeat: docs/adr/0006), then runs the engine
//! (`prepare` + `execute`) under it:
//!
//! - a full sync when it takes the lease and then every interval plus jitter; a failed one is
//!   retried after a growing pause (2, 4 … 64 s, at most the interval);
//! - in between, with a SCIM directory, a targeted run for the SCIM changes pending for the
//!   instance (the store's outbox, written with each SCIM write for every registered
//!   consumer): only the accounts of the people they touched are read and planned. A write on
//!   this replica wakes the loop at once; writes on another replica are found by polling
//!   (`serve.scim_poll_ms`). Whatever is pending when a pass starts is acknowledged only once
//!   the pass succeeded, so a crash, a failed run or a lost lease leaves the changes for the
//!   next holder.
//!
//! - with just-in-time access rules in the policy, a full sync as soon as the grants active on
//!   the instance differ from those of its last full sync (a grant approved, revoked or ended,
//!   by this replica, another or the CLI: looked for every `serve.scim_poll_ms`), and a wake at
//!   the moment the next of them ends (docs/adr/0011).
//!
//! Loops never wait for each other: an unreachable, slow or misconfigured Airflow only delays
//! its own loop. A lease that runs out (the heartbeat could not renew it, or another replica
//! took it over) stops the loop's writes before the next one (the engine checks the fence)
//! and sends the loop back to taking it.

use crate::{InstanceHealth, ServeOptions, State};
use airlock_airflow::ErrorClass;
use airlock_audit::ACTOR_AIRLOCK;
use airlock_config::{Config, InstanceConfig};
use airlock_core::directory::Touched;
use airlock_core::policy::Policy;
use airlock_core::{Clock, SystemClock};
use airlock_directory::Source;
use airlock_engine::access::AccessError;
use airlock_engine::lease::{instance_lease, LeaseKeeper, Taken};
use airlock_engine::sync::{ApplyOptions, Engine, Gate};
use airlock_engine::{client_for, EngineError};
use airlock_store::{ScimChange, Store, StoreError};
use rand::Rng;
use std::collections::BTreeSet;
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

/// `(source, class)` of an error, for metrics and `/healthz`.
pub(crate) fn classify(e: &EngineError) -> (&'static str, &'static str) {
    match e {
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
        EngineError::Store(StoreError::LeaseLost { .. }) => ("store", "lease_lost"),
        EngineError::Store(s) if s.is_unavailable() => ("store", "unavailable"),
        EngineError::Store(_) => ("store", "error"),
        EngineError::CorruptSnapshot { .. } | EngineError::CorruptHistory { .. } => {
            ("store", "corrupt")
        }
        EngineError::Access(AccessError::Store(s)) if s.is_unavailable() => {
            ("store", "unavailable")
        }
        EngineError::Access(AccessError::Corrupt { .. }) => ("store", "corrupt"),
        EngineError::Access(_) => ("store", "error"),
    }
}

fn record_error(state: &State, instance: Option<&str>, e: &EngineError) {
    let (source, class) = classify(e);
    state
        .metrics
        .errors
        .with_label_values(&[source, class])
        .inc();
    if let Some(name) = instance {
        state.update(name, |h| {
            h.last_error_class = Some(format!("{source}/{class}"));
            h.last_error = Some(e.to_string());
        });
    }
}

/// What the loops of one replica share.
#[derive(Clone)]
pub(crate) struct Service {
    pub(crate) config: Arc<Config>,
    pub(crate) policy: Arc<Policy>,
    pub(crate) source: Arc<Source>,
    pub(crate) store: Store,
    pub(crate) opts: ServeOptions,
    pub(crate) state: Arc<State>,
    pub(crate) keeper: LeaseKeeper,
}

/// Runs every instance loop and the replica's housekeeping until `stop`.
pub(crate) async fn run(svc: Service, stop: watch::Receiver<bool>) {
    let heartbeat = svc.keeper.spawn_heartbeat(stop.clone());
    let housekeeping = tokio::spawn(housekeeping(
        svc.config.clone(),
        svc.source.clone(),
        svc.store.clone(),
        stop.clone(),
    ));
    // One task per instance, so a slow or unreachable instance never delays another.
    let mut tasks = Vec::new();
    for idx in 0..svc.config.instances.len() {
        let (svc, stop) = (svc.clone(), stop.clone());
        tasks.push(tokio::spawn(async move {
            let ctx = Loop {
                inst: &svc.config.instances[idx],
                policy: &svc.policy,
                source: &svc.source,
                store: &svc.store,
                opts: &svc.opts,
                state: &svc.state,
                keeper: &svc.keeper,
            };
            ctx.run(stop).await;
        }));
    }
    for t in tasks {
        if let Err(e) = t.await {
            tracing::error!(error = %e, "instance loop failed");
        }
    }
    svc.keeper.release_all().await;
    heartbeat.abort();
    housekeeping.abort();
}

/// How long a SCIM consumer nobody serves keeps its pending changes.
const CONSUMER_RETENTION: Duration = Duration::from_secs(7 * 24 * 3600);
/// How long closed journal rows are kept (the rolling window needs an hour).
const JOURNAL_RETENTION: Duration = Duration::from_secs(7 * 24 * 3600);
/// How often the housekeeping runs.
const HOUSEKEEPING_EVERY: Duration = Duration::from_secs(60);

/// Registers this replica's instances as SCIM consumers (every minute, so other replicas
/// never retire them while this one runs), retires consumers nobody served for a week, and
/// prunes old journal rows.
async fn housekeeping(
    config: Arc<Config>,
    source: Arc<Source>,
    store: Store,
    mut stop: watch::Receiver<bool>,
) {
    let names: Vec<String> = config
        .instances
        .iter()
        .map(|i| i.name.to_string())
        .collect();
    let ms = |d: Duration| i64::try_from(d.as_millis()).unwrap_or(i64::MAX);
    loop {
        let now = SystemClock.now().timestamp_millis();
        if matches!(*source, Source::Scim(_)) {
            if let Err(e) = store.scim_register_consumers(&names, now).await {
                tracing::warn!(error = %e, "cannot register this replica's SCIM consumers");
            }
            match store
                .scim_retire_consumers(now - ms(CONSUMER_RETENTION))
                .await
            {
                Ok(gone) if !gone.is_empty() => {
                    tracing::info!(consumers = ?gone, "retired SCIM consumers no replica served for a week, with their pending changes")
                }
                Ok(_) => {}
                Err(e) => tracing::warn!(error = %e, "cannot retire stale SCIM consumers"),
            }
        }
        if let Err(e) = store.prune_journal(now - ms(JOURNAL_RETENTION)).await {
            tracing::warn!(error = %e, "cannot prune the journal");
        }
        if pause(HOUSEKEEPING_EVERY, &mut stop).await {
            return;
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

/// The pause before retrying after `failures` failures in a row: 2, 4 … 64 s, at most `cap`.
fn backoff(failures: u32, cap: Duration) -> Duration {
    Duration::from_secs(1 << failures.clamp(1, 6)).min(cap)
}

/// What a sync covers.
#[derive(Clone, Copy)]
enum Scope<'t> {
    /// Every account of the instance.
    Full,
    /// The accounts of these people only, on behalf of these SCIM clients.
    Touched(&'t Touched, &'t str),
}

impl Scope<'_> {
    fn trigger(&self) -> &'static str {
        match self {
            Scope::Full => "schedule",
            Scope::Touched(..) => "scim",
        }
    }
}

/// The actor of a targeted run: the SCIM clients whose changes it applies.
fn scim_actor(pending: &[ScimChange]) -> String {
    let clients: BTreeSet<&str> = pending
        .iter()
        .map(|c| c.client.as_deref().unwrap_or("unknown"))
        .collect();
    format!("scim:{}", clients.into_iter().collect::<Vec<_>>().join(","))
}

/// One instance's loop and what it works with.
struct Loop<'a> {
    inst: &'a InstanceConfig,
    policy: &'a Policy,
    source: &'a Source,
    store: &'a Store,
    opts: &'a ServeOptions,
    state: &'a State,
    keeper: &'a LeaseKeeper,
}

/// The loop's schedule between passes.
struct Schedule {
    full_due: Instant,
    failures: u32,
    retry_at: Instant,
    held: bool,
    /// The epoch of the last tenure, to tell a renewed lease from a new one.
    epoch: Option<i64>,
    /// The access grants active here at the last full sync that succeeded (`None`: none yet).
    grants: Option<BTreeSet<(String, i64)>>,
}

impl Loop<'_> {
    async fn run(&self, mut stop: watch::Receiver<bool>) {
        let name = self.inst.name.to_string();
        let lease = instance_lease(&name);
        let held_gauge = self.state.metrics.lease_held.with_label_values(&[&name]);
        let mut changes = self.state.scim_changes.subscribe();
        let mut s = Schedule {
            full_due: Instant::now(),
            failures: 0,
            retry_at: Instant::now(),
            held: false,
            epoch: None,
            grants: None,
        };
        loop {
            if *stop.borrow() {
                break;
            }
            if !self.hold_lease(&lease, &mut s).await {
                held_gauge.set(0.0);
                if pause(self.opts.lease_retry, &mut stop).await {
                    break;
                }
                continue;
            }
            held_gauge.set(1.0);
            // Changes written from here on are read by the next pass.
            changes.borrow_and_update();
            let until = self.pass(&mut s).await;
            if wait_until(until, &mut stop, &mut changes).await {
                break;
            }
        }
        held_gauge.set(0.0);
        if let Err(e) = self.keeper.release(&lease).await {
            tracing::debug!(instance = %name, error = %e, "cannot release the lease; it expires by itself");
        }
    }

    /// Whether this replica holds the instance's lease now, taking it if it is free.
    async fn hold_lease(&self, lease: &str, s: &mut Schedule) -> bool {
        let name = self.inst.name.as_str();
        if self.keeper.fence(lease).is_some() {
            return true;
        }
        if s.held {
            tracing::warn!(instance = %name, "lease lost (not renewed in time, or taken over); taking it again");
            s.held = false;
        }
        match self.keeper.acquire(lease).await {
            Ok(Taken::Granted(f)) if s.epoch == Some(f.epoch()) => {
                // Still ours under the same epoch (a renewal came late): nobody else wrote.
                s.held = true;
                true
            }
            Ok(Taken::Granted(f)) => {
                tracing::info!(instance = %name, epoch = f.epoch(), "lease taken: this replica syncs the instance");
                // A new holder does not know what happened while it did not hold it.
                s.full_due = Instant::now();
                s.failures = 0;
                s.retry_at = Instant::now();
                s.held = true;
                s.epoch = Some(f.epoch());
                true
            }
            Ok(Taken::Held(_)) => false,
            Err(e) => {
                record_error(self.state, Some(name), &EngineError::Store(e));
                false
            }
        }
    }

    /// One pass under the lease: a full sync when due, else a targeted run for pending SCIM
    /// changes; returns when the next pass is due.
    async fn pass(&self, s: &mut Schedule) -> Instant {
        let name = self.inst.name.as_str();
        let scim = match self.source {
            Source::Scim(src) => Some(src),
            _ => None,
        };
        let pending = match scim {
            Some(_) => match self.store.scim_pending_changes(name, CHANGE_BATCH).await {
                Ok(p) => p,
                Err(e) => {
                    record_error(self.state, Some(name), &EngineError::Store(e));
                    Vec::new()
                }
            },
            None => Vec::new(),
        };
        let now = Instant::now();
        // An operator released held deprovisions (`airlock rails release`): apply them now.
        let released = match self.store.rail_holds(Some(name), true).await {
            Ok(h) => h.iter().any(|h| h.status == "released"),
            Err(_) => false,
        };
        let grants = self.grants_here().await;
        let grants_changed =
            (grants.as_ref()).is_some_and(|(active, _)| s.grants.as_ref() != Some(active));
        let full = now >= s.full_due || ((released || grants_changed) && now >= s.retry_at);
        let ran = if full {
            Some(self.sync_once(Scope::Full).await)
        } else if !pending.is_empty() && now >= s.retry_at {
            let actor = scim_actor(&pending);
            let touched = match scim {
                Some(src) => src.touched(&pending).await.map_err(|e| {
                    let e = EngineError::Directory(e.into());
                    record_error(self.state, Some(name), &e);
                }),
                None => Ok(Touched::default()),
            };
            match touched {
                Err(()) => Some(false),
                Ok(t) if t.ids.len() + t.previous.len() > TARGETED_MAX_PEOPLE => {
                    Some(self.sync_once(Scope::Full).await)
                }
                Ok(t) if t.is_empty() => Some(true),
                Ok(t) => Some(self.sync_once(Scope::Touched(&t, &actor)).await),
            }
        } else {
            None
        };
        match ran {
            Some(true) => {
                if full || s.full_due <= Instant::now() {
                    s.full_due = Instant::now() + jittered(self.opts);
                }
                if full {
                    // Read before the sync: a grant changed during it is seen by the next pass.
                    s.grants = grants.as_ref().map(|(active, _)| active.clone());
                }
                s.failures = 0;
                s.retry_at = Instant::now();
                self.acknowledge(&pending).await;
            }
            Some(false) => {
                // Retry with a growing pause rather than at every wake: a failed full sync
                // before the next interval, pending changes before the next poll.
                s.failures = s.failures.saturating_add(1);
                let pause = backoff(s.failures, self.opts.interval);
                s.retry_at = Instant::now() + pause;
                if full {
                    s.full_due = s.retry_at;
                }
            }
            None => {}
        }
        let poll = match scim {
            // A full batch may have left more behind: go on at once.
            Some(_) if pending.len() == CHANGE_BATCH => Instant::now(),
            Some(_) => Instant::now() + self.opts.scim_poll,
            None if grants.is_some() => Instant::now() + self.opts.scim_poll,
            None => s.full_due,
        };
        // The moment the next grant here ends.
        let poll = match grants.and_then(|(_, next_end)| next_end) {
            // A few ms late rather than early: woken before the end, the grant still counts.
            Some(end) => poll.min(Instant::now() + end + Duration::from_millis(5)),
            None => poll,
        };
        // Wake in time to renew nothing: the heartbeat does that; but notice a lost lease.
        let lease_check = Instant::now() + self.keeper.ttl() / 3;
        s.full_due.min(poll.max(s.retry_at)).min(lease_check)
    }

    /// With access rules in the policy: the grants naming this instance that are active now
    /// (id and end), and how long until the first of them ends. `None` without rules, or when
    /// the store cannot say (recorded; the scheduled syncs go on).
    async fn grants_here(&self) -> Option<(BTreeSet<(String, i64)>, Option<Duration>)> {
        if self.policy.access.rules.is_empty() {
            return None;
        }
        let grants = match airlock_engine::access::grants(self.store).await {
            Ok(g) => g,
            Err(e) => {
                record_error(
                    self.state,
                    Some(self.inst.name.as_str()),
                    &EngineError::Access(e),
                );
                return None;
            }
        };
        let now = SystemClock.now();
        let mut active = BTreeSet::new();
        let mut next_end: Option<chrono::Duration> = None;
        for g in grants
            .iter()
            .filter(|g| g.instances.contains(&self.inst.name))
        {
            if let Some(end) = g.active_at(now) {
                active.insert((g.id.0.clone(), end.timestamp_millis()));
                let left = end - now;
                next_end = Some(next_end.map_or(left, |n| n.min(left)));
            }
        }
        Some((active, next_end.and_then(|d| d.to_std().ok())))
    }

    /// Removes applied changes and records how long each took to reach Airflow.
    async fn acknowledge(&self, pending: &[ScimChange]) {
        if pending.is_empty() {
            return;
        }
        let name = self.inst.name.as_str();
        let ids: Vec<String> = pending.iter().map(|c| c.id.clone()).collect();
        if let Err(e) = self.store.scim_ack_changes(name, &ids).await {
            // They are applied again by the next pass: harmless, every operation is idempotent.
            record_error(self.state, Some(name), &EngineError::Store(e));
            return;
        }
        let now_ms = SystemClock.now().timestamp_millis();
        let histogram = self
            .state
            .metrics
            .scim_change_to_airflow
            .with_label_values(&[name]);
        for c in pending {
            histogram.observe((now_ms - c.changed_ms).max(0) as f64 / 1000.0);
        }
    }

    /// One sync of one instance; returns whether it completed without failures.
    async fn sync_once(&self, scope: Scope<'_>) -> bool {
        let name = self.inst.name.to_string();
        let trigger = scope.trigger();
        let started = Instant::now();
        let result = match self.run_engine(scope).await {
            Ok(r) => r,
            Err(e) => {
                record_error(self.state, Some(&name), &e);
                tracing::warn!(instance = %name, trigger, error = %e, "sync failed");
                "error"
            }
        };
        let m = &self.state.metrics;
        m.sync_runs
            .with_label_values(&[&name, result, trigger])
            .inc();
        m.sync_duration
            .with_label_values(&[&name, trigger])
            .observe(started.elapsed().as_secs_f64());
        let now_ms = SystemClock.now().timestamp_millis();
        self.state.update(&name, |h: &mut InstanceHealth| {
            h.last_run_ms = Some(now_ms);
            h.last_result = Some(result);
            if result == "succeeded" {
                h.last_success_ms = Some(now_ms);
                h.last_error_class = None;
                h.last_error = None;
            }
        });
        result == "succeeded"
    }

    /// Prepares and executes one run; the result label, or the error that stopped it.
    async fn run_engine(&self, scope: Scope<'_>) -> Result<&'static str, EngineError> {
        let name = self.inst.name.as_str();
        let engine = Engine {
            policy: self.policy,
            instances: vec![self.inst],
            clients: [(self.inst.name.clone(), client_for(self.inst)?)].into(),
            source: self.source,
            store: self.store,
            clock: &SystemClock,
            concurrency: self.opts.concurrency,
            actor: match scope {
                Scope::Full => ACTOR_AIRLOCK.to_string(),
                Scope::Touched(_, actor) => actor.to_string(),
            },
            leases: Some(self.keeper),
        };
        let (run_id, gate) = match scope {
            Scope::Full => engine.prepare("serve", None, false).await?,
            Scope::Touched(t, _) => engine.prepare_touched("scim", t).await?,
        };
        let plan = match gate {
            Gate::Refused(r) => {
                tracing::warn!(instance = %name, refusal = %r, "sync refused by a safety rail");
                return Ok("refused");
            }
            Gate::Proceed(plan) => plan,
        };
        let apply = ApplyOptions {
            allow_mass_deprovision: false,
            cancel: self.state.stopping.clone(),
            progress: None,
        };
        let report = engine.execute(&run_id, &plan, &apply).await?;
        for r in &report.results {
            let outcome = if r.error.is_some() {
                "failed"
            } else {
                "succeeded"
            };
            self.state
                .metrics
                .operations
                .with_label_values(&[name, r.op.op.kind(), outcome])
                .inc();
        }
        tracing::info!(instance = %name, run = %run_id, trigger = scope.trigger(), ops = report.results.len(), failed = report.failed(), held = plan.held.len(), "sync done");
        Ok(if report.skipped > 0 {
            "interrupted"
        } else if report.failed() > 0 {
            "failed"
        } else {
            "succeeded"
        })
    }
}
