//! observe -> plan -> (safety rails) -> apply -> audit: the one engine behind `airlock plan`,
//! `apply` and `sync`, and later the service and SCIM pushes.
//!
//! Level-triggered: a run never depends on why it ran. It reads the directory and every
//! instance fresh, plans with the pure planner, checks the safety rails, and only then writes.
//! Every write and every refusal is appended to the audit trail; an interrupted run leaves a
//! consistent record and the next run converges, because every operation is idempotent
//! against freshly read state.

use crate::EngineError;
use airlock_airflow::{AirflowClient, CallStats, NewUser, PermissionCatalog, ProfileUpdate};
use airlock_audit::{operation, NewEvent, Outcome, Target, ACTOR_AIRLOCK};
use airlock_config::InstanceConfig;
use airlock_core::directory::{DirectorySnapshot, Touched};
use airlock_core::plan::{
    self, ActualInstance, DesiredInstance, InstancePlan, InstanceRef, ManagedRecord, Op, PlanInput,
    PlannedOp, Warning,
};
use airlock_core::policy::Policy;
use airlock_core::{Clock, InstanceName, Role, Username};
use airlock_directory::Source;
use airlock_store::{ManagedOrigin, RunStatus, Store};
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
    /// People read from the directory.
    pub directory_people: usize,
    /// Per instance, sorted by name.
    pub instances: Vec<InstancePlan>,
    /// Instance names, parallel to `instances`.
    pub instance_names: Vec<InstanceName>,
    /// Warnings from computing the desired state.
    pub warnings: Vec<Warning>,
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

/// Why a run was stopped before any write.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, thiserror::Error)]
pub enum Refusal {
    /// The directory returned no one, or far fewer people than the last complete read.
    #[error("directory returned {now} people, fewer than {ratio_pct}% of the {before} seen last time; treating it as an outage (fix the directory, or run with --allow-mass-deprovision if this is real)")]
    DirectoryShrank {
        /// People now.
        now: usize,
        /// People last time.
        before: usize,
        /// The configured threshold, in percent.
        ratio_pct: u32,
    },
    /// The directory returned nobody at all while airlock manages accounts.
    #[error("directory returned no people while airlock manages {managed} accounts; treating it as an outage")]
    DirectoryEmpty {
        /// Managed accounts.
        managed: usize,
    },
    /// More suspensions/deletions than the absolute cap.
    #[error("plan would suspend or delete {count} accounts, more than safety.max_deprovisions = {cap}; re-run with --allow-mass-deprovision to proceed")]
    TooManyDeprovisions {
        /// Planned.
        count: usize,
        /// Cap.
        cap: usize,
    },
    /// More than the configured fraction of one instance's managed accounts.
    #[error("plan would suspend or delete {count} of {managed} managed accounts on `{instance}`, more than safety.max_deprovision_fraction = {fraction}; re-run with --allow-mass-deprovision to proceed")]
    TooLargeFraction {
        /// Instance.
        instance: String,
        /// Planned.
        count: usize,
        /// Managed there.
        managed: usize,
        /// Cap.
        fraction: f64,
    },
    /// A saved plan no longer matches the state it was computed from.
    #[error("the state changed since this plan was made (fingerprint {saved} != {now}); run `airlock plan` again")]
    StalePlan {
        /// Saved fingerprint (prefix).
        saved: String,
        /// Current fingerprint (prefix).
        now: String,
    },
}

impl Refusal {
    /// The rail's name, for the audit trail.
    pub fn rail(&self) -> &'static str {
        match self {
            Refusal::DirectoryShrank { .. } => "min_directory_ratio",
            Refusal::DirectoryEmpty { .. } => "empty_directory",
            Refusal::TooManyDeprovisions { .. } => "max_deprovisions",
            Refusal::TooLargeFraction { .. } => "max_deprovision_fraction",
            Refusal::StalePlan { .. } => "stale_plan",
        }
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
        let (mut desired, warnings) = plan::desired(self.policy, &observed.directory, &refs);
        if let Some(only) = &observed.only {
            // A targeted run plans only the accounts it read, and leaves roles to the full
            // syncs (it did not read the permission catalog they are checked against).
            for d in desired.values_mut() {
                d.accounts.retain(|u, _| only.contains(u));
                d.excluded.retain(|u, _| only.contains(u));
                d.inactive_in_scope.retain(|u| only.contains(u));
                d.roles.clear();
            }
        }
        let now = self.clock.now();
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
                            .chain(&d.inactive_in_scope)
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
            format: 1,
            created_at: now,
            fingerprint: fingerprint(self.policy, observed, &relevant),
            directory_people: observed.directory.people.len(),
            instances,
            instance_names: names,
            warnings,
        }
    }

    /// Checks the safety rails; a refusal is recorded in the audit trail.
    pub async fn check_rails(
        &self,
        plan: &Plan,
        observed: &Observed,
        allow_mass: bool,
        run_id: &str,
    ) -> Result<Option<Refusal>, EngineError> {
        let refusal = rails(
            self.policy,
            plan,
            observed,
            self.store.last_directory_people().await?,
            allow_mass,
        );
        if let Some(r) = &refusal {
            let mut e = NewEvent::new(
                self.clock.now(),
                ACTOR_AIRLOCK,
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

    /// Starts a run record.
    pub async fn begin_run(&self, kind: &str) -> Result<String, EngineError> {
        let id = uuid::Uuid::now_v7().to_string();
        self.store
            .begin_run(&id, kind, ms(self.clock.now()))
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
    /// the audit trail and the managed-accounts table as it goes.
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
            if opts.cancel.load(Ordering::SeqCst) {
                skipped += batch.len();
                continue;
            }
            let limit = self.concurrency.max(1);
            let mut pending = batch.into_iter();
            let mut running = futures::stream::FuturesUnordered::new();
            loop {
                while running.len() < limit {
                    match pending.next() {
                        Some(op) => {
                            running.push(self.apply_unless_cancelled(op, run_id, &opts.cancel))
                        }
                        None => break,
                    }
                }
                let Some(r) = running.next().await else { break };
                match r {
                    Some(r) => {
                        results.push(r?);
                        done += 1;
                        if let Some(p) = &opts.progress {
                            p(done, total);
                        }
                    }
                    None => skipped += 1,
                }
            }
        }
        // Accounts matched by the policy's scope become managed even when nothing had to
        // change, so that they are found as leavers later.
        let now = ms(self.clock.now());
        for (name, p) in plan.instance_names.iter().zip(&plan.instances) {
            let known = self.store.managed_accounts(name.as_str()).await?;
            let known: BTreeSet<String> = known
                .into_iter()
                .map(|m| m.username.to_lowercase())
                .collect();
            for u in &p.managed {
                if !known.contains(u.key()) {
                    self.store
                        .manage_account(name.as_str(), u.as_str(), ManagedOrigin::Scope, now)
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

    async fn apply_one(&self, p: &PlannedOp, run_id: &str) -> Result<OpResult, EngineError> {
        let inst = p.instance.as_str();
        let client = &self.clients[&p.instance];
        let now = self.clock.now();
        let mut note = None;
        let (op_name, target, before, after, result): (
            &str,
            Target,
            serde_json::Value,
            serde_json::Value,
            Result<(), airlock_airflow::Error>,
        ) = match &p.op {
            Op::CreateRole { role, permissions } => {
                let r = client
                    .create_role(&Role {
                        name: role.clone(),
                        permissions: permissions.clone(),
                    })
                    .await
                    .map(|_| ());
                (
                    operation::ROLE_CREATE,
                    Target::Role {
                        name: role.to_string(),
                    },
                    serde_json::Value::Null,
                    serde_json::json!({ "permissions": permissions }),
                    r,
                )
            }
            Op::UpdateRole { role, add, remove } => {
                let current = client.get_role(role).await;
                let r = match current {
                    Ok(cur) => {
                        let mut want = cur.permissions.clone();
                        want.extend(add.iter().cloned());
                        want.retain(|x| !remove.contains(x));
                        client.set_role_permissions(role, &want).await.map(|o| {
                            if !o.not_removed.is_empty() {
                                let list: Vec<String> = o.not_removed.iter().map(ToString::to_string).collect();
                                note = Some(format!("Airflow 2 cannot remove permissions through its API; still granted: {}", list.join("; ")));
                            }
                        })
                    }
                    Err(e) => Err(e),
                };
                (
                    operation::ROLE_UPDATE,
                    Target::Role {
                        name: role.to_string(),
                    },
                    serde_json::json!({ "remove": remove }),
                    serde_json::json!({ "add": add }),
                    r,
                )
            }
            Op::CreateAccount {
                username,
                email,
                first_name,
                last_name,
                roles,
            } => {
                let r = client
                    .create_user(&NewUser {
                        username: username.clone(),
                        email: email.clone(),
                        first_name: first_name.clone(),
                        last_name: last_name.clone(),
                        roles: roles.clone(),
                        password: None,
                    })
                    .await
                    .map(|_| ());
                if r.is_ok() {
                    self.store
                        .manage_account(inst, username.as_str(), ManagedOrigin::Created, ms(now))
                        .await?;
                    self.store
                        .record_created_account(inst, username.as_str(), ms(now))
                        .await?;
                }
                (
                    operation::ACCOUNT_CREATE,
                    Target::Account {
                        username: username.to_string(),
                    },
                    serde_json::Value::Null,
                    serde_json::json!({ "email": email, "first_name": first_name, "last_name": last_name, "roles": roles }),
                    r,
                )
            }
            Op::SetRoles { username, from, to } => {
                let r = client.set_user_roles(username, to).await.map(|_| ());
                if r.is_ok() {
                    self.store
                        .manage_account(inst, username.as_str(), ManagedOrigin::Scope, ms(now))
                        .await?;
                    self.store
                        .set_suspended(inst, username.as_str(), None)
                        .await?;
                }
                (
                    operation::ACCOUNT_SET_ROLES,
                    Target::Account {
                        username: username.to_string(),
                    },
                    serde_json::json!({ "roles": from }),
                    serde_json::json!({ "roles": to }),
                    r,
                )
            }
            Op::UpdateProfile {
                username,
                email,
                first_name,
                last_name,
            } => {
                let upd = ProfileUpdate {
                    email: email.clone(),
                    first_name: first_name.clone(),
                    last_name: last_name.clone(),
                };
                let r = client.update_profile(username, &upd).await.map(|_| ());
                (
                    operation::ACCOUNT_UPDATE_PROFILE,
                    Target::Account {
                        username: username.to_string(),
                    },
                    serde_json::Value::Null,
                    serde_json::json!({ "email": email, "first_name": first_name, "last_name": last_name }),
                    r,
                )
            }
            Op::Suspend { username, roles } => {
                // Roles first: that is what cuts access, including tokens already issued (after
                // Airflow's cache_ttl). Then the password, so no new token can be obtained.
                let mut r = client
                    .set_user_roles(username, &BTreeSet::new())
                    .await
                    .map(|_| ());
                if r.is_ok() {
                    r = client.rotate_password(username).await;
                }
                if r.is_ok() {
                    // An in-scope leaver airlock never managed becomes managed here, so the
                    // suspension time is kept and the grace period can run.
                    self.store
                        .manage_account(inst, username.as_str(), ManagedOrigin::Scope, ms(now))
                        .await?;
                    self.store
                        .set_suspended(inst, username.as_str(), Some(ms(now)))
                        .await?;
                }
                (
                    operation::ACCOUNT_SUSPEND,
                    Target::Account {
                        username: username.to_string(),
                    },
                    serde_json::json!({ "roles": roles }),
                    serde_json::json!({ "roles": [], "password": "rotated" }),
                    r,
                )
            }
            Op::Delete { username } => {
                let r = match client.delete_user(username).await {
                    Err(e) if e.is_not_found() => Ok(()),
                    other => other,
                };
                if r.is_ok() {
                    self.store.forget_managed(inst, username.as_str()).await?;
                }
                (
                    operation::ACCOUNT_DELETE,
                    Target::Account {
                        username: username.to_string(),
                    },
                    serde_json::json!({ "exists": true }),
                    serde_json::json!({ "exists": false }),
                    r,
                )
            }
        };
        let error = result.err().map(|e| e.to_string());
        let outcome = match &error {
            None => Outcome::Succeeded,
            Some(e) => Outcome::Failed { error: e.clone() },
        };
        let mut ev = NewEvent::new(self.clock.now(), ACTOR_AIRLOCK, op_name, outcome);
        ev.run_id = Some(run_id.to_string());
        ev.instance = Some(inst.to_string());
        ev.target = Some(target);
        ev.before = (!before.is_null()).then_some(before);
        ev.after = (!after.is_null()).then_some(after);
        ev.reason = Some(match &note {
            Some(n) => format!("{}; {n}", p.reason),
            None => p.reason.clone(),
        });
        self.store.append_audit(vec![ev]).await?;
        if let Some(e) = &error {
            tracing::warn!(instance = inst, op = p.op.kind(), target = %p.op.target(), error = %e, "operation failed");
        }
        Ok(OpResult {
            op: p.clone(),
            error,
            note,
        })
    }
}

/// The safety rails, as a pure function.
pub fn rails(
    policy: &Policy,
    plan: &Plan,
    observed: &Observed,
    last_people: Option<i64>,
    allow_mass: bool,
) -> Option<Refusal> {
    let now = observed.directory.people.len();
    let managed_total: usize = observed.managed.values().map(BTreeMap::len).sum();
    let deprovisions = plan.ops().filter(|o| o.op.is_deprovision()).count();
    if !allow_mass {
        if now == 0 && (managed_total > 0 || last_people.unwrap_or(0) > 0) {
            return Some(Refusal::DirectoryEmpty {
                managed: managed_total,
            });
        }
        if let Some(before) = last_people.and_then(|b| usize::try_from(b).ok()) {
            let ratio = policy.safety.min_directory_ratio;
            if before > 0 && (now as f64) < ratio * before as f64 {
                return Some(Refusal::DirectoryShrank {
                    now,
                    before,
                    ratio_pct: (ratio * 100.0).round() as u32,
                });
            }
        }
        if deprovisions > policy.safety.max_deprovisions {
            return Some(Refusal::TooManyDeprovisions {
                count: deprovisions,
                cap: policy.safety.max_deprovisions,
            });
        }
        for (name, p) in plan.instance_names.iter().zip(&plan.instances) {
            let count = p.ops.iter().filter(|o| o.op.is_deprovision()).count();
            let managed = observed.managed.get(name).map(BTreeMap::len).unwrap_or(0);
            // Small instances would trip a fraction on a single leaver; the absolute cap
            // covers them.
            if count > 1
                && managed > 0
                && count as f64 > policy.safety.max_deprovision_fraction * managed as f64
            {
                return Some(Refusal::TooLargeFraction {
                    instance: name.to_string(),
                    count,
                    managed,
                    fraction: policy.safety.max_deprovision_fraction,
                });
            }
        }
    }
    None
}

/// SHA-256 over the inputs that decide a plan, leaving out what changes without changing the
/// plan (logins, timestamps).
pub fn fingerprint(
    policy: &Policy,
    observed: &Observed,
    relevant: &BTreeMap<InstanceName, (BTreeSet<Username>, BTreeSet<airlock_core::RoleName>)>,
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
    });
    let digest = Sha256::digest(input.to_string().as_bytes());
    digest.iter().map(|b| format!("{b:02x}")).collect()
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
        let run_id = self.begin_run(kind).await?;
        let observed = match touched {
            None => self.observe().await,
            Some(t) => self.observe_touched(t).await,
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
        let fresh = self.plan(&observed);
        let plan = match saved {
            Some(saved) if saved.fingerprint != fresh.fingerprint => {
                let r = Refusal::StalePlan {
                    saved: saved.fingerprint.chars().take(12).collect(),
                    now: fresh.fingerprint.chars().take(12).collect(),
                };
                let summary = serde_json::json!({ "refused": r.to_string(), "rail": r.rail() });
                self.finish_run(&run_id, RunStatus::Refused, None, &summary)
                    .await?;
                return Ok((run_id, Gate::Refused(r)));
            }
            Some(saved) => saved,
            None => fresh,
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
        let report = self.apply(plan, run_id, opts).await?;
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
                min_directory_ratio: 0.5,
            },
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
            directory_people: 0,
            instances: vec![InstancePlan {
                ops,
                ..Default::default()
            }],
            instance_names: vec![name],
            warnings: vec![],
        }
    }

    #[test]
    fn a_directory_far_smaller_than_last_time_is_an_outage() {
        let r = rails(
            &policy(),
            &plan_with_suspensions(0),
            &observed(40, 100),
            Some(100),
            false,
        );
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
        assert_eq!(
            rails(
                &policy(),
                &plan_with_suspensions(0),
                &observed(60, 100),
                Some(100),
                false
            ),
            None
        );
        assert_eq!(
            rails(
                &policy(),
                &plan_with_suspensions(0),
                &observed(40, 100),
                Some(100),
                true
            ),
            None
        );
    }

    #[test]
    fn an_empty_directory_while_accounts_are_managed_is_an_outage() {
        let r = rails(
            &policy(),
            &plan_with_suspensions(0),
            &observed(0, 3),
            None,
            false,
        );
        assert!(
            matches!(r, Some(Refusal::DirectoryEmpty { managed: 3 })),
            "{r:?}"
        );
    }

    #[test]
    fn deprovisioning_caps_apply_in_count_and_fraction() {
        let r = rails(
            &policy(),
            &plan_with_suspensions(11),
            &observed(100, 1000),
            Some(100),
            false,
        );
        assert!(
            matches!(r, Some(Refusal::TooManyDeprovisions { count: 11, cap: 10 })),
            "{r:?}"
        );
        let r = rails(
            &policy(),
            &plan_with_suspensions(5),
            &observed(100, 10),
            Some(100),
            false,
        );
        assert!(
            matches!(
                r,
                Some(Refusal::TooLargeFraction {
                    count: 5,
                    managed: 10,
                    ..
                })
            ),
            "{r:?}"
        );
        assert_eq!(
            rails(
                &policy(),
                &plan_with_suspensions(5),
                &observed(100, 10),
                Some(100),
                true
            ),
            None
        );
    }
}
