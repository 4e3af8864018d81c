//! observe -> plan -> (safety rails) -> apply -> audit: the one engine behind `airlock plan`,
//! `apply` and `sync`, and later the service and SCIM pushes.
//!
//! Level-triggered: a run never depends on why it ran. It reads the directory and every
//! instance fresh, plans with the pure planner, checks the safety rails, and only then writes.
//! Every write and every refusal is appended to the audit trail; an interrupted run leaves a
//! consistent record and the next run converges, because every operation is idempotent
//! against freshly read state.

mod ops;
mod rails;
pub mod saved;

pub use rails::{
    hold_back, hold_key, lifetime_conflict, lifetime_holds, rails, split_held, HeldOp, HoldKey,
    Refusal,
};

use crate::lease::LeaseKeeper;
use crate::EngineError;
use airlock_airflow::{AirflowClient, CallStats, PermissionCatalog};
use airlock_audit::{operation, NewEvent, Outcome, Target};
use airlock_config::InstanceConfig;
use airlock_core::directory::{DirectorySnapshot, Touched};
use airlock_core::plan::{
    self, ActualInstance, DesiredInstance, InstancePlan, InstanceRef, ManagedRecord, PlanInput,
    PlannedOp, Warning,
};
use airlock_core::policy::Policy;
use airlock_core::{Clock, InstanceName, Username};
use airlock_directory::Source;
use airlock_store::{HoldEnd, Intent, JournalState, RunStatus, Store};
use chrono::{DateTime, TimeZone, Utc};
use futures::StreamExt;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// One instance's part of [`Observed`].
type InstanceRead = (
    InstanceName,
    ActualInstance,
    BTreeMap<Username, ManagedRecord>,
);

/// Everything read at the start of a run.
#[derive(Debug, Clone)]
pub struct Observed {
    /// The directory.
    pub directory: DirectorySnapshot,
    /// Each instance's users, roles and permission catalog.
    pub actual: BTreeMap<InstanceName, ActualInstance>,
    /// Each instance's managed accounts.
    pub managed: BTreeMap<InstanceName, BTreeMap<Username, ManagedRecord>>,
    /// Time spent reading the directory.
    pub directory_read: Duration,
    /// `None`: `actual` holds every account of each instance. `Some`: only these were read
    /// (a targeted run after SCIM pushes), and only they are planned.
    pub only: Option<BTreeSet<Username>>,
    /// The approved just-in-time requests, as stored when the run began (the plan keeps the
    /// roles of those still active at its time).
    pub grants: Vec<airlock_core::access::AccessRequest>,
}

/// The planned changes for all instances, with what they were computed from.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Plan {
    /// Format version of a saved plan.
    pub format: u32,
    /// When it was computed.
    pub created_at: DateTime<Utc>,
    /// SHA-256 over the inputs (directory, instance state, managed set, policy); a saved plan
    /// is refused when the fingerprint of fresh inputs differs.
    pub fingerprint: String,
    /// SHA-256 over the format, fingerprint, instances and operations, set when the plan is
    /// saved ([`saved::seal`]); a file whose digest does not match is refused.
    #[serde(default)]
    pub digest: String,
    /// People read from the directory.
    pub directory_people: usize,
    /// Per instance, sorted by name.
    pub instances: Vec<InstancePlan>,
    /// Instance names, parallel to `instances`.
    pub instance_names: Vec<InstanceName>,
    /// Warnings from computing the desired state.
    pub warnings: Vec<Warning>,
    /// Deprovisions a safety rail held back: not among `instances`' operations.
    #[serde(default)]
    pub held: Vec<HeldOp>,
}

impl Plan {
    /// All operations, in order.
    pub fn ops(&self) -> impl Iterator<Item = &PlannedOp> {
        self.instances.iter().flat_map(|p| p.ops.iter())
    }

    /// Whether there is nothing to do.
    pub fn is_empty(&self) -> bool {
        self.ops().next().is_none()
    }

    /// Counts by operation kind.
    pub fn counts(&self) -> BTreeMap<&'static str, usize> {
        let mut m = BTreeMap::new();
        for op in self.ops() {
            *m.entry(op.op.kind()).or_default() += 1;
        }
        m
    }
}

/// The engine for one configuration.
pub struct Engine<'a> {
    /// Policy.
    pub policy: &'a Policy,
    /// Instances in scope of this run.
    pub instances: Vec<&'a InstanceConfig>,
    /// Connectors, by instance.
    pub clients: BTreeMap<InstanceName, AirflowClient>,
    /// Directory.
    pub source: &'a Source,
    /// State store.
    pub store: &'a Store,
    /// Wall clock.
    pub clock: &'a dyn Clock,
    /// Operations in flight at once, over all instances.
    pub concurrency: usize,
    /// Who the run acts for, in the audit trail: [`airlock_audit::ACTOR_AIRLOCK`] for the
    /// service, `operator:NAME` for the CLI, `scim:CLIENT` for SCIM-driven runs.
    pub actor: String,
    /// The leases writes happen under: an instance's operations run only while its lease is
    /// held (checked before every write). `None`: this engine only reads (`airlock plan`).
    pub leases: Option<&'a LeaseKeeper>,
}

/// Options for [`Engine::apply`].
#[derive(Clone, Default)]
pub struct ApplyOptions {
    /// Lift the deprovisioning caps.
    pub allow_mass_deprovision: bool,
    /// Set to stop launching operations (Ctrl-C); in-flight ones finish and are recorded.
    pub cancel: Arc<AtomicBool>,
    /// Called after each operation with (done, total).
    pub progress: Option<Arc<dyn Fn(usize, usize) + Send + Sync>>,
}

/// The result of one operation.
#[derive(Debug, Clone, Serialize)]
pub struct OpResult {
    /// The operation.
    pub op: PlannedOp,
    /// `None` on success, else the error line.
    pub error: Option<String>,
    /// Extra notes (e.g. permissions Airflow 2 could not remove).
    pub note: Option<String>,
}

/// What an apply did.
#[derive(Debug, Clone, Serialize)]
pub struct ApplyReport {
    /// Run id.
    pub run_id: String,
    /// One entry per attempted operation.
    pub results: Vec<OpResult>,
    /// Operations not attempted because the run was cancelled.
    pub skipped: usize,
    /// Wall time.
    pub elapsed: Duration,
    /// HTTP calls by instance.
    #[serde(skip)]
    pub stats: BTreeMap<InstanceName, CallStats>,
}

impl ApplyReport {
    /// Operations that failed.
    pub fn failed(&self) -> usize {
        self.results.iter().filter(|r| r.error.is_some()).count()
    }
}

fn ms(t: DateTime<Utc>) -> i64 {
    t.timestamp_millis()
}

impl<'a> Engine<'a> {
    /// Reads the directory and every instance. Any error aborts the run before a write: an
    /// outage must never look like "these people left".
    pub async fn observe(&self) -> Result<Observed, EngineError> {
        self.observe_scoped(None).await
    }

    /// Like [`Engine::observe`], but reads from each instance only the accounts of the people
    /// `touched` (as they are now, and as they were before the changes) and its roles. The
    /// directory is still read whole: the safety rails compare its size with the last run.
    pub async fn observe_touched(&self, touched: &Touched) -> Result<Observed, EngineError> {
        self.observe_scoped(Some(touched)).await
    }

    async fn observe_scoped(&self, touched: Option<&Touched>) -> Result<Observed, EngineError> {
        let started = Instant::now();
        let directory = self.source.read().await?;
        let directory_read = started.elapsed();
        // An unreadable grant stops the run: planning without it would remove its roles.
        let grants = crate::access::grants(self.store).await?;
        let only: Option<BTreeSet<Username>> = touched.map(|t| {
            t.ids
                .iter()
                .filter_map(|id| directory.people.get(id))
                .chain(&t.previous)
                .filter_map(|p| self.policy.username.derive(p).ok())
                .collect()
        });
        // Named async fns rather than closures returning async blocks: the futures must be
        // `Send` for the service's tasks, which rustc cannot prove through such closures.
        let mut reads = Vec::with_capacity(self.instances.len());
        for inst in &self.instances {
            reads.push(self.observe_one(inst, only.as_ref()));
        }
        let mut actual = BTreeMap::new();
        let mut managed = BTreeMap::new();
        for r in futures::future::join_all(reads).await {
            let (name, a, m) = r?;
            actual.insert(name.clone(), a);
            managed.insert(name, m);
        }
        Ok(Observed {
            directory,
            actual,
            managed,
            directory_read,
            only,
            grants,
        })
    }

    /// Plans every instance from observed state. Pure apart from the clock.
    pub fn plan(&self, observed: &Observed) -> Plan {
        let refs: Vec<InstanceRef<'_>> = self
            .instances
            .iter()
            .map(|i| InstanceRef {
                name: &i.name,
                labels: &i.labels,
                airlock_user: &i.username,
            })
            .collect();
        let now = self.clock.now();
        let (mut desired, mut warnings) = plan::desired(self.policy, &observed.directory, &refs);
        warnings.extend(plan::with_grants(
            self.policy,
            &observed.directory,
            &refs,
            &observed.grants,
            now,
            &mut desired,
        ));
        if let Some(only) = &observed.only {
            // A targeted run plans only the accounts it read, and leaves roles to the full
            // syncs (it did not read the permission catalog they are checked against).
            for d in desired.values_mut() {
                // The maps may be shared with other instances: build small new ones.
                let pick = |u: &Username| only.contains(u);
                d.accounts = Arc::new(
                    (d.accounts.iter())
                        .filter(|(u, _)| pick(u))
                        .map(|(u, a)| (u.clone(), Arc::clone(a)))
                        .collect(),
                );
                d.excluded = Arc::new(
                    (d.excluded.iter())
                        .filter(|(u, _)| pick(u))
                        .map(|(u, w)| (u.clone(), w.clone()))
                        .collect(),
                );
                d.inactive_in_scope = Arc::new(
                    d.inactive_in_scope
                        .iter()
                        .filter(|u| pick(u))
                        .cloned()
                        .collect(),
                );
                d.roles.clear();
            }
        }
        let empty_desired = DesiredInstance::default();
        let empty_actual = ActualInstance::default();
        let empty_managed = BTreeMap::new();
        let mut instances = Vec::new();
        let mut names = Vec::new();
        // What can change this plan: accounts that are desired or managed, and policy roles.
        // Unmanaged accounts created meanwhile by someone else must not invalidate it.
        let relevant: BTreeMap<
            InstanceName,
            (BTreeSet<Username>, BTreeSet<airlock_core::RoleName>),
        > = self
            .instances
            .iter()
            .map(|i| {
                let d = desired.get(&i.name);
                let mut users: BTreeSet<Username> = d
                    .map(|d| {
                        d.accounts
                            .keys()
                            .chain(d.inactive_in_scope.iter())
                            .cloned()
                            .collect()
                    })
                    .unwrap_or_default();
                users.extend(
                    observed
                        .managed
                        .get(&i.name)
                        .into_iter()
                        .flat_map(|m| m.keys().cloned()),
                );
                let roles = d
                    .map(|d| d.roles.keys().cloned().collect())
                    .unwrap_or_default();
                (i.name.clone(), (users, roles))
            })
            .collect();
        for inst in &self.instances {
            // airlock's own account is protected on the instance it logs in to.
            let mut protected = self.policy.protected.clone();
            protected.extend(Username::new(inst.username.clone()).ok());
            let p = plan::plan_instance(&PlanInput {
                instance: &inst.name,
                desired: desired.get(&inst.name).unwrap_or(&empty_desired),
                actual: observed.actual.get(&inst.name).unwrap_or(&empty_actual),
                managed: observed.managed.get(&inst.name).unwrap_or(&empty_managed),
                protected: &protected,
                leavers: self.policy.leavers,
                now,
            });
            instances.push(p);
            names.push(inst.name.clone());
        }
        Plan {
            format: saved::PLAN_FORMAT,
            created_at: now,
            fingerprint: fingerprint(self.policy, observed, &relevant, now),
            digest: String::new(),
            directory_people: observed.directory.people.len(),
            instances,
            instance_names: names,
            warnings,
            held: Vec::new(),
        }
    }

    /// Checks the directory rails; a refusal is recorded in the audit trail.
    pub async fn check_rails(
        &self,
        plan: &Plan,
        observed: &Observed,
        allow_mass: bool,
        run_id: &str,
    ) -> Result<Option<Refusal>, EngineError> {
        let refusal = rails(
            self.policy,
            observed,
            self.store.last_directory_people().await?,
            allow_mass,
        );
        if let Some(r) = &refusal {
            let mut e = self.event(
                operation::RAIL_REFUSED,
                Outcome::Refused {
                    rail: r.rail().into(),
                },
            );
            e.run_id = Some(run_id.to_string());
            e.target = Some(Target::Run);
            e.reason = Some(r.to_string());
            e.after = serde_json::to_value(plan.counts()).ok();
            self.store.append_audit(vec![e]).await?;
        }
        Ok(refusal)
    }

    /// Instances whose last token (read in this run or earlier) lives longer than the
    /// configured `token_lifetime_secs`, with the refusal for their deletions.
    pub fn lifetime_conflicts(&self) -> BTreeMap<InstanceName, Refusal> {
        self.instances
            .iter()
            .filter_map(|inst| {
                let observed = self.clients.get(&inst.name)?.observed_token_lifetime();
                let r = lifetime_conflict(inst.name.as_str(), inst.token_lifetime, observed)?;
                tracing::warn!(instance = %inst.name, error = %r, "deletions blocked");
                Some((inst.name.clone(), r))
            })
            .collect()
    }

    /// Applies the deprovisioning caps to `plan`: returns it without the operations they
    /// hold back (listed in its `held`). Each newly held operation is recorded (see
    /// `airlock rails list`) and audited under its own name as refused; a full run also ends
    /// the holds of operations it no longer plans.
    pub async fn hold_back(
        &self,
        plan: Plan,
        observed: &Observed,
        allow_mass: bool,
        run_id: &str,
    ) -> Result<Plan, EngineError> {
        let now = self.clock.now();
        let hour_ago = ms(now) - 3_600_000;
        let recent = self.store.deprovisions_since(hour_ago).await?;
        let mut released = BTreeSet::new();
        let mut open = Vec::new();
        for name in &plan.instance_names {
            for h in self.store.rail_holds(Some(name.as_str()), true).await? {
                if h.status == "released" {
                    released.insert((
                        h.instance.clone(),
                        h.username.to_ascii_lowercase(),
                        h.op_kind.clone(),
                    ));
                }
                open.push(h);
            }
        }
        let mut held = hold_back(self.policy, &plan, observed, recent, &released, allow_mass);
        // Deletions where the instance's tokens outlive the configured lifetime: held whatever
        // the caps, releases or --allow-mass-deprovision say.
        held.extend(lifetime_holds(&plan, &self.lifetime_conflicts()));
        if observed.only.is_none() {
            // A full run saw everything: holds of operations it no longer plans are over.
            let planned: BTreeSet<HoldKey> = plan
                .ops()
                .filter(|o| o.op.is_deprovision())
                .map(hold_key)
                .collect();
            for h in &open {
                let key = (
                    h.instance.clone(),
                    h.username.to_ascii_lowercase(),
                    h.op_kind.clone(),
                );
                if !planned.contains(&key) {
                    self.store
                        .end_hold(
                            &h.instance,
                            &h.username,
                            &h.op_kind,
                            HoldEnd::Cleared,
                            ms(now),
                        )
                        .await?;
                }
            }
        }
        if held.is_empty() {
            return Ok(plan);
        }
        let (plan, taken) = split_held(&plan, &held);
        let mut events = Vec::new();
        for h in &taken {
            let username = hold_key(&h.op).1;
            let (_, new) = self
                .store
                .hold_deprovision(
                    h.op.instance.as_str(),
                    &username,
                    h.op.op.kind(),
                    h.refusal.rail(),
                    &h.refusal.to_string(),
                    ms(now),
                )
                .await?;
            if new {
                let d = ops::describe(&h.op.op);
                let mut e = self.event(
                    d.name,
                    Outcome::Refused {
                        rail: h.refusal.rail().into(),
                    },
                );
                e.run_id = Some(run_id.to_string());
                e.instance = Some(h.op.instance.to_string());
                e.target = Some(d.target);
                e.reason = Some(format!("{}; held: {}", h.op.reason, h.refusal));
                events.push(e);
            }
        }
        self.store.append_audit(events).await?;
        tracing::warn!(
            held = taken.len(),
            rail = taken[0].refusal.rail(),
            "deprovisions held back by a safety rail"
        );
        Ok(plan)
    }

    /// A new audit event by this run's actor, at the clock's time.
    fn event(&self, name: &str, outcome: Outcome) -> NewEvent {
        NewEvent::new(self.clock.now(), self.actor.clone(), name, outcome)
    }

    /// Starts a run record (with the lease holder running it, if any).
    pub async fn begin_run(&self, kind: &str) -> Result<String, EngineError> {
        let id = uuid::Uuid::now_v7().to_string();
        self.store
            .begin_run(
                &id,
                kind,
                ms(self.clock.now()),
                self.leases.map(LeaseKeeper::holder),
            )
            .await?;
        Ok(id)
    }

    /// Ends a run record.
    pub async fn finish_run(
        &self,
        id: &str,
        status: RunStatus,
        directory_people: Option<usize>,
        summary: &serde_json::Value,
    ) -> Result<(), EngineError> {
        let people = directory_people.map(|n| i64::try_from(n).unwrap_or(i64::MAX));
        self.store
            .finish_run(
                id,
                status,
                ms(self.clock.now()),
                people,
                &summary.to_string(),
            )
            .await?;
        Ok(())
    }

    /// Applies a plan phase by phase, with bounded concurrency, recording every result in
    /// the audit trail and the managed-accounts table as it goes. Each operation runs only
    /// under its instance's current lease, with its intent journaled first (see
    /// [`Engine::apply_one`]). A store failure or a lost lease stops new operations, lets the
    /// ones in flight finish and be recorded, and then fails the run; nothing is abandoned.
    pub async fn apply(
        &self,
        plan: &Plan,
        run_id: &str,
        opts: &ApplyOptions,
    ) -> Result<ApplyReport, EngineError> {
        let started = Instant::now();
        let total = plan.ops().count();
        let mut results = Vec::new();
        let mut skipped = 0;
        let mut done = 0usize;
        let mut fatal: Option<EngineError> = None;
        let before_stats: BTreeMap<_, _> = self
            .clients
            .iter()
            .map(|(k, c)| (k.clone(), c.stats()))
            .collect();
        for phase in 0..=5u8 {
            let batch: Vec<&PlannedOp> = plan.ops().filter(|o| o.op.phase() == phase).collect();
            if batch.is_empty() {
                continue;
            }
            if opts.cancel.load(Ordering::SeqCst) || fatal.is_some() {
                skipped += batch.len();
                continue;
            }
            let limit = self.concurrency.max(1);
            let mut pending = batch.into_iter();
            let mut running = futures::stream::FuturesUnordered::new();
            loop {
                while running.len() < limit && fatal.is_none() {
                    match pending.next() {
                        Some(op) => {
                            running.push(self.apply_unless_cancelled(op, run_id, &opts.cancel))
                        }
                        None => break,
                    }
                }
                let Some(r) = running.next().await else { break };
                match r {
                    Some(Ok(r)) => {
                        results.push(r);
                        done += 1;
                        if let Some(p) = &opts.progress {
                            p(done, total);
                        }
                    }
                    Some(Err(e)) => {
                        tracing::warn!(run = run_id, error = %e, "stopping the run: no new operations");
                        skipped += 1;
                        fatal.get_or_insert(e);
                    }
                    None => skipped += 1,
                }
            }
            skipped += pending.len();
        }
        if let Some(e) = fatal {
            return Err(e);
        }
        // Accounts matched by the policy's scope become managed even when nothing had to
        // change, so that they are found as leavers later.
        let now = ms(self.clock.now());
        for (name, p) in plan.instance_names.iter().zip(&plan.instances) {
            let known = self.store.managed_accounts(name.as_str()).await?;
            let known: BTreeSet<String> = known
                .into_iter()
                .map(|m| m.username.to_ascii_lowercase())
                .collect();
            for u in &p.managed {
                if !known.contains(u.key()) {
                    self.store
                        .manage_account(
                            name.as_str(),
                            u.as_str(),
                            airlock_store::ManagedOrigin::Scope,
                            now,
                        )
                        .await?;
                }
            }
        }
        let stats = self
            .clients
            .iter()
            .map(|(k, c)| (k.clone(), c.stats().since(&before_stats[k])))
            .collect();
        Ok(ApplyReport {
            run_id: run_id.to_string(),
            results,
            skipped,
            elapsed: started.elapsed(),
            stats,
        })
    }

    async fn observe_one(
        &self,
        inst: &InstanceConfig,
        only: Option<&BTreeSet<Username>>,
    ) -> Result<InstanceRead, EngineError> {
        match only {
            None => self.observe_instance(inst).await,
            Some(usernames) => self.observe_accounts(inst, usernames).await,
        }
    }

    async fn observe_instance(&self, inst: &InstanceConfig) -> Result<InstanceRead, EngineError> {
        let client = &self.clients[&inst.name];
        let (accounts, roles, catalog) = tokio::try_join!(
            client.list_users(),
            client.list_roles(),
            client.list_permissions()
        )?;
        let catalog = match catalog {
            PermissionCatalog::Pairs(p) => Some(p),
            PermissionCatalog::Actions(_) => None,
        };
        let managed = self.managed_records(inst).await?;
        Ok((
            inst.name.clone(),
            ActualInstance {
                accounts,
                roles,
                catalog,
            },
            managed,
        ))
    }

    async fn observe_accounts(
        &self,
        inst: &InstanceConfig,
        usernames: &BTreeSet<Username>,
    ) -> Result<InstanceRead, EngineError> {
        let client = &self.clients[&inst.name];
        let roles = client.list_roles().await?;
        let mut accounts = Vec::with_capacity(usernames.len());
        // A FuturesUnordered filled by hand, not a stream combinator with a closure: the
        // future must be `Send` for the service's tasks (see `observe`).
        let mut pending = usernames.iter();
        let mut running = futures::stream::FuturesUnordered::new();
        loop {
            while running.len() < self.concurrency.max(1) {
                match pending.next() {
                    Some(u) => running.push(client.get_user(u)),
                    None => break,
                }
            }
            let Some(r) = running.next().await else { break };
            match r {
                Ok(a) => accounts.push(a),
                Err(e) if e.is_not_found() => {}
                Err(e) => return Err(e.into()),
            }
        }
        accounts.sort_by(|a, b| a.username.cmp(&b.username));
        Ok((
            inst.name.clone(),
            ActualInstance {
                accounts,
                roles,
                catalog: None,
            },
            self.managed_records(inst).await?,
        ))
    }

    async fn managed_records(
        &self,
        inst: &InstanceConfig,
    ) -> Result<BTreeMap<Username, ManagedRecord>, EngineError> {
        Ok(self
            .store
            .managed_accounts(inst.name.as_str())
            .await?
            .into_iter()
            .filter_map(|m| {
                let u = Username::new(m.username).ok()?;
                let suspended_at = m
                    .suspended_at_ms
                    .and_then(|t| Utc.timestamp_millis_opt(t).single());
                Some((u, ManagedRecord { suspended_at }))
            })
            .collect())
    }

    async fn apply_unless_cancelled(
        &self,
        op: &PlannedOp,
        run_id: &str,
        cancel: &AtomicBool,
    ) -> Option<Result<OpResult, EngineError>> {
        if cancel.load(Ordering::SeqCst) {
            return None;
        }
        Some(self.apply_one(op, run_id).await)
    }

    /// One operation, write-ahead: the lease is checked (in memory), the intent is journaled
    /// under the lease's epoch (refused by the store once another process holds it), Airflow
    /// is called, the store's records follow a success, and the intent is closed together with
    /// its audit event. A crash anywhere in between leaves the intent open for
    /// [`Engine::resolve_intents`].
    async fn apply_one(&self, p: &PlannedOp, run_id: &str) -> Result<OpResult, EngineError> {
        let inst = p.instance.as_str();
        let client = &self.clients[&p.instance];
        let lease = crate::lease::instance_lease(inst);
        let fence = self.leases.and_then(|k| k.fence(&lease)).ok_or_else(|| {
            airlock_store::StoreError::LeaseLost {
                lease: lease.clone(),
                epoch: 0,
            }
        })?;
        fence.check()?;
        let intent = Intent {
            id: uuid::Uuid::now_v7().to_string(),
            run_id: run_id.to_string(),
            instance: inst.to_string(),
            op_kind: p.op.kind().to_string(),
            target: p.op.target(),
            op_json: serde_json::to_string(p).unwrap_or_default(),
            actor: self.actor.clone(),
            started_ms: ms(self.clock.now()),
        };
        self.store
            .journal_intent(&intent, fence.fencing(), intent.started_ms)
            .await?;
        let (result, note) = ops::call(client, &p.op).await;
        if result.is_ok() {
            ops::bookkeep(self.store, inst, &p.op, ms(self.clock.now())).await?;
        }
        let error = result.err().map(|e| e.to_string());
        let state = match error {
            None => JournalState::Succeeded,
            Some(_) => JournalState::Failed,
        };
        let outcome = match &error {
            None => Outcome::Succeeded,
            Some(e) => Outcome::Failed { error: e.clone() },
        };
        let reason = match &note {
            Some(n) => format!("{}; {n}", p.reason),
            None => p.reason.to_string(),
        };
        let ev = self.op_event(p, run_id, outcome, reason);
        self.store
            .journal_close(&intent.id, state, ms(self.clock.now()), vec![ev])
            .await?;
        if let Some(e) = &error {
            tracing::warn!(instance = inst, op = p.op.kind(), target = %p.op.target(), error = %e, "operation failed");
        }
        Ok(OpResult {
            op: p.clone(),
            error,
            note,
        })
    }

    fn op_event(&self, p: &PlannedOp, run_id: &str, outcome: Outcome, reason: String) -> NewEvent {
        let d = ops::describe(&p.op);
        let mut ev = self.event(d.name, outcome);
        ev.run_id = Some(run_id.to_string());
        ev.instance = Some(p.instance.to_string());
        ev.target = Some(d.target);
        ev.before = (!d.before.is_null()).then_some(d.before);
        ev.after = (!d.after.is_null()).then_some(d.after);
        ev.reason = Some(reason);
        ev
    }

    /// Closes the intents a stopped run left open on this engine's instances: reads Airflow
    /// back and records, under the intent's original actor, whether the operation reached it
    /// (then the store's records are made too) or not. Runs under the instance's lease, before
    /// anything is planned; returns how many were resolved.
    pub async fn resolve_intents(&self) -> Result<usize, EngineError> {
        let Some(keeper) = self.leases else {
            return Ok(0);
        };
        let now = ms(self.clock.now());
        let mut resolved = 0;
        for inst in &self.instances {
            let open = self.store.journal_open(inst.name.as_str()).await?;
            if open.is_empty() {
                continue;
            }
            let fence = keeper
                .fence(&crate::lease::instance_lease(inst.name.as_str()))
                .ok_or_else(|| airlock_store::StoreError::LeaseLost {
                    lease: crate::lease::instance_lease(inst.name.as_str()),
                    epoch: 0,
                })?;
            let client = &self.clients[&inst.name];
            for o in open {
                fence.check()?;
                let Ok(p) = serde_json::from_str::<PlannedOp>(&o.intent.op_json) else {
                    self.store
                        .journal_close(&o.intent.id, JournalState::Failed, now, vec![])
                        .await?;
                    continue;
                };
                let applied = ops::read_back(client, &p.op).await?;
                let (state, outcome, what) = if applied {
                    ops::bookkeep(self.store, inst.name.as_str(), &p.op, now).await?;
                    (
                        JournalState::Succeeded,
                        Outcome::Succeeded,
                        "it had reached Airflow",
                    )
                } else {
                    (
                        JournalState::NotApplied,
                        Outcome::Failed {
                            error: "interrupted before it reached Airflow".into(),
                        },
                        "it had not reached Airflow",
                    )
                };
                let reason = format!(
                    "{}; recovered after an interruption (intent recorded by {} under lease epoch {}; read back: {what})",
                    p.reason, o.holder, o.epoch
                );
                let mut ev = self.op_event(&p, &o.intent.run_id, outcome, reason);
                ev.actor = o.intent.actor.clone();
                self.store
                    .journal_close(&o.intent.id, state, now, vec![ev])
                    .await?;
                tracing::info!(instance = %inst.name, op = p.op.kind(), target = %p.op.target(), applied, "resolved an interrupted operation");
                resolved += 1;
            }
        }
        Ok(resolved)
    }
}

/// SHA-256 over the inputs that decide a plan, leaving out what changes without changing the
/// plan (logins, timestamps).
pub fn fingerprint(
    policy: &Policy,
    observed: &Observed,
    relevant: &BTreeMap<InstanceName, (BTreeSet<Username>, BTreeSet<airlock_core::RoleName>)>,
    now: DateTime<Utc>,
) -> String {
    #[derive(Serialize)]
    struct AccountKey<'a> {
        u: &'a str,
        e: &'a str,
        f: &'a str,
        l: &'a str,
        r: Vec<&'a str>,
    }
    type RoleKey<'a> = (&'a str, Vec<String>);
    let actual: BTreeMap<&str, (Vec<AccountKey<'_>>, Vec<RoleKey<'_>>)> = observed
        .actual
        .iter()
        .map(|(name, a)| {
            let (users, role_names) = relevant.get(name).cloned().unwrap_or_default();
            let mut accounts: Vec<AccountKey<'_>> = a
                .accounts
                .iter()
                .filter(|x| users.contains(&x.username))
                .map(|x| AccountKey {
                    u: x.username.key(),
                    e: &x.email,
                    f: &x.first_name,
                    l: &x.last_name,
                    r: x.roles.iter().map(|r| r.as_str()).collect(),
                })
                .collect();
            accounts.sort_by(|a, b| a.u.cmp(b.u));
            let mut roles: Vec<(&str, Vec<String>)> = a
                .roles
                .iter()
                .filter(|r| role_names.contains(&r.name))
                .map(|r| {
                    (
                        r.name.as_str(),
                        r.permissions.iter().map(ToString::to_string).collect(),
                    )
                })
                .collect();
            roles.sort();
            (name.as_str(), (accounts, roles))
        })
        .collect();
    let input = serde_json::json!({
        "policy": policy,
        "directory": observed.directory,
        "actual": actual,
        "managed": observed.managed,
        // The grants the plan holds: a grant approved, revoked or ended since changes it.
        "grants": (observed.grants.iter())
            .filter_map(|g| g.active_at(now).map(|end| (&g.id, &g.requester, &g.roles, &g.instances, end)))
            .collect::<Vec<_>>(),
    });
    let digest = Sha256::digest(input.to_string().as_bytes());
    digest.iter().map(|b| format!("{b:02x}")).collect()
}

/// Why a saved plan may not be applied now, if it may not: its inputs changed (the
/// fingerprints differ), or its operations are not the ones computed now.
pub fn saved_plan_refusal(saved: &Plan, fresh: &Plan) -> Option<Refusal> {
    if saved.fingerprint != fresh.fingerprint {
        return Some(Refusal::StalePlan {
            saved: saved.fingerprint.chars().take(12).collect(),
            now: fresh.fingerprint.chars().take(12).collect(),
        });
    }
    saved::first_difference(saved, fresh).map(|detail| Refusal::PlanDiffers { detail })
}

/// What a prepared run may do.
#[derive(Debug)]
pub enum Gate {
    /// A safety rail (or a stale saved plan) stopped it; the refusal is recorded.
    Refused(Refusal),
    /// The plan may be applied.
    Proceed(Box<Plan>),
}

impl<'a> Engine<'a> {
    /// Starts a run the same way for every entry point (CLI, service, SCIM pushes): records
    /// it, reads the directory and every instance, plans, checks a saved plan against fresh
    /// state, and checks the safety rails. A failed read or a refusal is recorded before this
    /// returns; nothing has been written to Airflow either way.
    pub async fn prepare(
        &self,
        kind: &str,
        saved: Option<Plan>,
        allow_mass: bool,
    ) -> Result<(String, Gate), EngineError> {
        self.prepare_scoped(kind, saved, allow_mass, None).await
    }

    /// [`Engine::prepare`] for only the accounts of the people `touched` (see
    /// [`Engine::observe_touched`]): what a SCIM push needs, at the cost of one read per
    /// account instead of every page of every instance. Same rails, same audit trail.
    pub async fn prepare_touched(
        &self,
        kind: &str,
        touched: &Touched,
    ) -> Result<(String, Gate), EngineError> {
        self.prepare_scoped(kind, None, false, Some(touched)).await
    }

    async fn prepare_scoped(
        &self,
        kind: &str,
        saved: Option<Plan>,
        allow_mass: bool,
        touched: Option<&Touched>,
    ) -> Result<(String, Gate), EngineError> {
        if self.leases.is_some() {
            // Runs whose process is gone end as interrupted (plan-only runs after an hour),
            // before this one begins.
            let now = ms(self.clock.now());
            self.store.close_orphaned_runs(now, now - 3_600_000).await?;
        }
        let run_id = self.begin_run(kind).await?;
        // What a stopped run left half-done is settled first, by reading Airflow back.
        let observed = match self.resolve_intents().await {
            Err(e) => Err(e),
            Ok(_) => match touched {
                None => self.observe().await,
                Some(t) => self.observe_touched(t).await,
            },
        };
        let observed = match observed {
            Ok(o) => o,
            Err(e) => {
                let summary = serde_json::json!({ "error": e.to_string() });
                self.finish_run(&run_id, RunStatus::Failed, None, &summary)
                    .await?;
                return Err(e);
            }
        };
        if self.leases.is_some() && observed.only.is_none() {
            // Every instance was read completely: an observation of who had access
            // (`crate::history`). A failure here stops no provisioning.
            let at = self.clock.now();
            for (instance, actual) in &observed.actual {
                let source = format!("sync:{run_id}");
                let recorded = crate::history::observe_accounts(
                    self.store,
                    instance.as_str(),
                    at,
                    &actual.accounts,
                    &source,
                )
                .await;
                if let Err(e) = recorded {
                    tracing::warn!(instance = %instance, error = %e, "could not record the access observed");
                }
            }
        }
        if self.leases.is_some() {
            // What time did to access requests is recorded (the plan does not wait for it: it
            // keeps only the grants active at its time). A failure here stops no provisioning.
            if let Err(e) = crate::access::settle(self.store, self.clock, &observed.directory).await
            {
                tracing::warn!(error = %e, "could not record expired and lapsed access requests");
            }
        }
        let fresh = crate::cpu_bound(|| self.plan(&observed));
        let plan = match saved {
            None => fresh,
            // The saved plan only proves that nothing changed since it was made: what is
            // applied is always computed here, never read from the file, and only when the
            // file's operations are exactly the fresh ones.
            Some(saved) => match saved_plan_refusal(&saved, &fresh) {
                None => fresh,
                Some(r) => {
                    let mut e = self.event(
                        operation::RAIL_REFUSED,
                        Outcome::Refused {
                            rail: r.rail().into(),
                        },
                    );
                    e.run_id = Some(run_id.clone());
                    e.target = Some(Target::Run);
                    e.reason = Some(r.to_string());
                    self.store.append_audit(vec![e]).await?;
                    let summary = serde_json::json!({ "refused": r.to_string(), "rail": r.rail() });
                    self.finish_run(&run_id, RunStatus::Refused, None, &summary)
                        .await?;
                    return Ok((run_id, Gate::Refused(r)));
                }
            },
        };
        if let Some(r) = self
            .check_rails(&plan, &observed, allow_mass, &run_id)
            .await?
        {
            let summary = serde_json::json!({ "refused": r.to_string(), "rail": r.rail() });
            self.finish_run(
                &run_id,
                RunStatus::Refused,
                Some(plan.directory_people),
                &summary,
            )
            .await?;
            return Ok((run_id, Gate::Refused(r)));
        }
        let plan = self.hold_back(plan, &observed, allow_mass, &run_id).await?;
        Ok((run_id, Gate::Proceed(Box::new(plan))))
    }

    /// Applies a prepared plan and records how the run ended: succeeded, failed (some
    /// operations failed) or interrupted (cancelled part-way).
    pub async fn execute(
        &self,
        run_id: &str,
        plan: &Plan,
        opts: &ApplyOptions,
    ) -> Result<ApplyReport, EngineError> {
        let report = match self.apply(plan, run_id, opts).await {
            Ok(r) => r,
            Err(e) => {
                // Best effort: if the store itself is down the row stays `running` and the
                // next holder closes it as interrupted.
                let summary = serde_json::json!({ "error": e.to_string() });
                if let Err(fe) = self
                    .finish_run(
                        run_id,
                        RunStatus::Failed,
                        Some(plan.directory_people),
                        &summary,
                    )
                    .await
                {
                    tracing::warn!(run = run_id, error = %fe, "cannot record the failed run");
                }
                return Err(e);
            }
        };
        let status = if opts.cancel.load(Ordering::SeqCst) && report.skipped > 0 {
            RunStatus::Interrupted
        } else if report.failed() > 0 {
            RunStatus::Failed
        } else {
            RunStatus::Succeeded
        };
        let summary = serde_json::json!({
            "ops": report.results.len(),
            "failed": report.failed(),
            "skipped": report.skipped,
            "counts": plan.counts(),
            "elapsed_ms": u64::try_from(report.elapsed.as_millis()).unwrap_or(u64::MAX),
        });
        self.finish_run(run_id, status, Some(plan.directory_people), &summary)
            .await?;
        Ok(report)
    }

    /// Records a prepared run that was not applied (declined at the confirmation prompt).
    pub async fn abandon(&self, run_id: &str, plan: &Plan) -> Result<(), EngineError> {
        let summary = serde_json::json!({ "declined": true });
        self.finish_run(
            run_id,
            RunStatus::Refused,
            Some(plan.directory_people),
            &summary,
        )
        .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use airlock_core::directory::{Person, PersonId, PersonStatus};
    use airlock_core::plan::Op;
    use airlock_core::policy::{LeaverRule, SafetyRails, UsernameRule, UsernameSource};

    fn policy() -> Policy {
        Policy {
            username: UsernameRule {
                source: UsernameSource::Email,
                prefix: String::new(),
                lowercase: true,
            },
            grants: vec![],
            scope_groups: vec![],
            default_roles: Default::default(),
            roles: vec![],
            protected: Default::default(),
            service_accounts: vec![],
            leavers: LeaverRule {
                delete_after_secs: None,
            },
            safety: SafetyRails {
                max_deprovisions: 10,
                max_deprovision_fraction: 0.25,
                max_deprovisions_per_hour: Some(20),
                min_directory_ratio: 0.5,
            },
            access: Default::default(),
        }
    }

    fn observed(people: usize, managed: usize) -> Observed {
        let mut directory = DirectorySnapshot::default();
        for i in 0..people {
            let id = PersonId(format!("p{i}"));
            directory.people.insert(
                id.clone(),
                Person {
                    id,
                    username: format!("p{i}"),
                    email: None,
                    first_name: None,
                    last_name: None,
                    status: PersonStatus::Active,
                    groups: Default::default(),
                },
            );
        }
        let name = InstanceName::new("af").expect("valid");
        let m = (0..managed)
            .map(|i| {
                (
                    Username::new(format!("m{i}")).expect("valid"),
                    ManagedRecord::default(),
                )
            })
            .collect();
        Observed {
            directory,
            actual: [(name.clone(), ActualInstance::default())].into(),
            managed: [(name, m)].into(),
            directory_read: Duration::ZERO,
            only: None,
            grants: Vec::new(),
        }
    }

    fn plan_with_suspensions(n: usize) -> Plan {
        let name = InstanceName::new("af").expect("valid");
        let ops = (0..n)
            .map(|i| PlannedOp {
                instance: name.clone(),
                op: Op::Suspend {
                    username: Username::new(format!("m{i}")).expect("valid"),
                    roles: Default::default(),
                },
                reason: "leaver".into(),
            })
            .collect();
        Plan {
            format: 1,
            created_at: Utc::now(),
            fingerprint: String::new(),
            digest: String::new(),
            directory_people: 0,
            instances: vec![InstancePlan {
                ops,
                ..Default::default()
            }],
            instance_names: vec![name],
            warnings: vec![],
            held: vec![],
        }
    }

    #[test]
    fn a_directory_far_smaller_than_last_time_is_an_outage() {
        let r = rails(&policy(), &observed(40, 100), Some(100), false);
        assert!(
            matches!(
                r,
                Some(Refusal::DirectoryShrank {
                    now: 40,
                    before: 100,
                    ratio_pct: 50
                })
            ),
            "{r:?}"
        );
        assert_eq!(rails(&policy(), &observed(60, 100), Some(100), false), None);
        assert_eq!(rails(&policy(), &observed(40, 100), Some(100), true), None);
    }

    #[test]
    fn an_empty_directory_while_accounts_are_managed_is_an_outage() {
        let r = rails(&policy(), &observed(0, 3), None, false);
        assert!(
            matches!(r, Some(Refusal::DirectoryEmpty { managed: 3 })),
            "{r:?}"
        );
    }

    fn held(n: usize, managed: usize, recent: u64, released: usize) -> BTreeMap<usize, Refusal> {
        let plan = plan_with_suspensions(n);
        let released: BTreeSet<HoldKey> = plan.ops().take(released).map(hold_key).collect();
        hold_back(
            &policy(),
            &plan,
            &observed(100, managed),
            recent,
            &released,
            false,
        )
    }

    #[test]
    fn past_the_per_run_cap_every_deprovision_is_held_and_nothing_else() {
        let h = held(11, 1000, 0, 0);
        assert_eq!(h.len(), 11);
        assert!(h
            .values()
            .all(|r| matches!(r, Refusal::TooManyDeprovisions { count: 11, cap: 10 })));
        // Joiners and role changes are not deprovisions: a plan of them alone is never held.
        let mut plan = plan_with_suspensions(0);
        plan.instances[0].ops.push(PlannedOp {
            instance: InstanceName::new("af").expect("valid"),
            op: Op::SetRoles {
                username: Username::new("x").expect("valid"),
                from: Default::default(),
                to: Default::default(),
            },
            reason: "mover".into(),
        });
        assert!(hold_back(
            &policy(),
            &plan,
            &observed(100, 1),
            1000,
            &BTreeSet::new(),
            false
        )
        .is_empty());
        assert!(hold_back(
            &policy(),
            &plan_with_suspensions(11),
            &observed(100, 10),
            0,
            &BTreeSet::new(),
            true
        )
        .is_empty());
    }

    #[test]
    fn past_the_fraction_an_instances_deprovisions_are_held() {
        let h = held(5, 10, 0, 0);
        assert_eq!(h.len(), 5);
        assert!(h.values().all(|r| matches!(
            r,
            Refusal::TooLargeFraction {
                count: 5,
                managed: 10,
                ..
            }
        )));
        assert!(held(2, 100, 0, 0).is_empty());
    }

    #[test]
    fn the_rolling_window_lets_through_what_fits_and_holds_the_rest() {
        // 17 in the last hour, cap 20: three of five pass, the last two (plan order) wait.
        let h = held(5, 1000, 17, 0);
        assert_eq!(h.keys().copied().collect::<Vec<_>>(), vec![3, 4]);
        assert!(matches!(
            h[&3],
            Refusal::TooManyPerHour {
                recent: 17,
                count: 5,
                cap: 20
            }
        ));
        // A full window holds a single urgent leaver too; one already released passes.
        assert_eq!(held(1, 1000, 20, 0).len(), 1);
        assert!(held(1, 1000, 20, 1).is_empty());
    }

    #[test]
    fn released_deprovisions_pass_every_cap() {
        assert!(held(11, 1000, 0, 11).is_empty());
        // Released ones do not count against the per-run cap of the others: 15 planned, 5
        // released, 10 left is within max_deprovisions = 10.
        assert!(held(15, 1000, 0, 5).is_empty());
        assert_eq!(held(16, 1000, 0, 5).len(), 11);
        let (plan, taken) = split_held(&plan_with_suspensions(3), &held(3, 1000, 19, 0));
        assert_eq!(plan.ops().count(), 1);
        assert_eq!(taken.len(), 2);
        assert_eq!(plan.held, taken);
    }

    #[test]
    fn a_token_lifetime_longer_than_configured_is_a_conflict_and_shorter_is_not() {
        let h = Duration::from_secs(3600);
        assert_eq!(
            lifetime_conflict("af", h, None),
            None,
            "nothing observed (Airflow 2)"
        );
        assert_eq!(lifetime_conflict("af", h, Some(h)), None);
        assert_eq!(lifetime_conflict("af", h, Some(h / 2)), None);
        let r = lifetime_conflict("af", h, Some(h * 2)).expect("longer");
        assert_eq!(
            r,
            Refusal::TokenLifetimeLonger {
                instance: "af".into(),
                configured_secs: 3600,
                observed_secs: 7200
            }
        );
        let msg = r.to_string();
        assert!(
            msg.starts_with("instance `af` issues tokens valid for 7200 s, longer than its token_lifetime_secs = 3600 s"),
            "{msg}"
        );
        assert_eq!(r.rail(), "token_lifetime");
    }

    #[test]
    fn lifetime_holds_take_only_deletions_on_conflicting_instances() {
        let af = InstanceName::new("af").expect("valid");
        let other = InstanceName::new("other").expect("valid");
        let user = |n: &str| Username::new(n).expect("valid");
        let op = |instance: &InstanceName, op: Op| PlannedOp {
            instance: instance.clone(),
            op,
            reason: "leaver".into(),
        };
        let mut plan = plan_with_suspensions(0);
        plan.instances = vec![
            InstancePlan {
                ops: vec![
                    op(
                        &af,
                        Op::Suspend {
                            username: user("s"),
                            roles: Default::default(),
                        },
                    ),
                    op(
                        &af,
                        Op::Delete {
                            username: user("d1"),
                        },
                    ),
                    op(
                        &af,
                        Op::Delete {
                            username: user("d2"),
                        },
                    ),
                ],
                ..Default::default()
            },
            InstancePlan {
                ops: vec![op(
                    &other,
                    Op::Delete {
                        username: user("d3"),
                    },
                )],
                ..Default::default()
            },
        ];
        plan.instance_names = vec![af.clone(), other];
        let r = lifetime_conflict("af", Duration::from_secs(1), Some(Duration::from_secs(2)))
            .expect("conflict");
        let conflicts = [(af, r.clone())].into();
        let held = lifetime_holds(&plan, &conflicts);
        assert_eq!(held.keys().copied().collect::<Vec<_>>(), vec![1, 2]);
        let (rest, taken) = split_held(&plan, &held);
        assert_eq!(
            rest.ops().count(),
            2,
            "the suspension and the other instance's delete flow"
        );
        assert!(taken.iter().all(|h| h.refusal == r));
        assert!(lifetime_holds(&plan, &BTreeMap::new()).is_empty());
    }
}
