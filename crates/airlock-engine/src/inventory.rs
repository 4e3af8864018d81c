//! Inventory runs: read every user and role of one instance, store the snapshot, and report
//! flags; record the logins since the previous snapshot in the audit trail; and the diff
//! between an instance's last two complete snapshots.
//!
//! Logins: Airflow records none, but FAB keeps each account's `last_login` and `login_count`.
//! Each complete snapshot is compared with the one before it, and every account whose values
//! grew gets an `account.login` event saying that it logged in within that window (derived,
//! not observed: the window is as wide as the time between snapshots, which `airlock serve`
//! bounds with `serve.login_snapshot_secs`). A login to a protected (break-glass) account is
//! also a `break_glass.use` event. airlock's own account is left out: its sign-ins are
//! airlock's own calls. The events are appended before the snapshot is marked complete, so a
//! crash in between repeats a window (at least once) rather than losing it.
//!
//! Each complete snapshot is also an observation of who held which role
//! ([`crate::history::observe`]), recorded before the snapshot is marked complete.
//!
//! A run is recorded as `running` when it starts and as `complete` only after every page of
//! users and roles was read; any failure records it as `failed` with the error, so a partial
//! read can never be mistaken for the instance's state.

use crate::EngineError;
use airlock_airflow::{AirflowClient, CallStats};
use airlock_audit::{operation as op, NewEvent, Outcome, Target, ACTOR_AIRLOCK};
use airlock_core::inventory::{self, FlagRules, LoginSeen, Report, Snapshot, SnapshotDiff};
use airlock_core::model::Username;
use airlock_core::Clock;
use airlock_store::{SnapshotMeta, Store, StoredSnapshot};
use chrono::{DateTime, Utc};
use std::collections::BTreeSet;
use std::time::{Duration, Instant};

/// The result of one inventory run.
#[derive(Debug)]
pub struct InventoryOutcome {
    /// Accounts and roles with flags.
    pub report: Report,
    /// The stored snapshot's id.
    pub snapshot_id: String,
    /// HTTP calls made during this run.
    pub stats: CallStats,
    /// Wall time of the run.
    pub elapsed: Duration,
    /// Logins recorded since the previous snapshot (none for a first one).
    pub logins: Vec<LoginSeen>,
    /// Of them, the protected (break-glass) accounts used.
    pub break_glass: Vec<Username>,
}

/// Whose logins a snapshot records.
#[derive(Debug, Clone, Default)]
pub struct LoginWatch {
    /// airlock's own account on the instance (its sign-ins are airlock's calls: not recorded).
    pub own_username: String,
    /// Protected accounts: a login to one is a break-glass use.
    pub protected: BTreeSet<Username>,
}

impl LoginWatch {
    /// airlock's own account on `inst`, and the policy's protected accounts.
    pub fn new(inst: &airlock_config::InstanceConfig, protected: BTreeSet<Username>) -> LoginWatch {
        LoginWatch {
            own_username: inst.username.clone(),
            protected,
        }
    }
}

/// The audit events of the logins seen between `old` and `new` (docs: the module's).
pub fn login_events(
    old: &Snapshot,
    new: &Snapshot,
    watch: &LoginWatch,
    at: DateTime<Utc>,
) -> (Vec<LoginSeen>, Vec<Username>, Vec<NewEvent>) {
    let seen: Vec<LoginSeen> = inventory::logins_between(old, new)
        .into_iter()
        .filter(|l| !l.username.key().eq_ignore_ascii_case(&watch.own_username))
        .collect();
    let mut break_glass = Vec::new();
    let mut events = Vec::new();
    let instance = new.instance.to_string();
    for l in &seen {
        let after = serde_json::json!({
            "window": { "from": old.taken_at, "to": new.taken_at },
            "last_login": l.last_login,
            "logins": l.logins,
            "derived": true,
        });
        let event = |operation: &str, reason: String| {
            let mut e = NewEvent::new(at, ACTOR_AIRLOCK, operation, Outcome::Succeeded);
            e.target = Some(Target::Account {
                username: l.username.to_string(),
            });
            e.instance = Some(instance.clone());
            e.after = Some(after.clone());
            e.reason = Some(reason);
            e
        };
        events.push(event(
            op::ACCOUNT_LOGIN,
            "derived: last_login or login_count grew between two snapshots".into(),
        ));
        if watch.protected.contains(&l.username) {
            break_glass.push(l.username.clone());
            events.push(event(
                op::BREAK_GLASS_USE,
                format!(
                    "the protected account {} was used on {instance}",
                    l.username
                ),
            ));
        }
    }
    (seen, break_glass, events)
}

/// Runs an inventory of the client's instance and stores it as a complete snapshot.
pub async fn run(
    client: &AirflowClient,
    store: &Store,
    clock: &dyn Clock,
    rules: FlagRules,
    watch: &LoginWatch,
) -> Result<InventoryOutcome, EngineError> {
    let instance = client.instance().clone();
    let started = Instant::now();
    let before = client.stats();
    let previous = match store
        .latest_complete_snapshots(instance.as_str(), 1)
        .await?
        .first()
    {
        Some(s) => Some(decode(s)?),
        None => None,
    };
    let id = store
        .begin_snapshot(instance.as_str(), millis(clock.now()))
        .await?;
    let read = async {
        let info = client.server().await?.clone();
        let (accounts, roles) = tokio::try_join!(client.list_users(), client.list_roles())?;
        Ok::<_, airlock_airflow::Error>((info, accounts, roles))
    };
    let (info, accounts, roles) = match read.await {
        Ok(r) => r,
        Err(e) => {
            // Record the failure; if even that fails, the Airflow error is the one to report.
            if let Err(store_err) = store
                .fail_snapshot(&id, millis(clock.now()), &e.to_string())
                .await
            {
                tracing::warn!(error = %store_err, "could not record failed inventory run");
            }
            return Err(e.into());
        }
    };
    let snapshot = Snapshot::new(
        instance.clone(),
        clock.now(),
        info.version.clone(),
        accounts,
        roles,
    );
    let created = store.created_accounts(instance.as_str()).await?;
    let report = inventory::report(&snapshot, &created, clock.now(), rules);
    let payload =
        serde_json::to_string(&snapshot).map_err(|source| EngineError::CorruptSnapshot {
            id: id.0.clone(),
            instance: instance.to_string(),
            source,
        })?;
    let meta = SnapshotMeta {
        airflow_version: info.version,
        user_count: i64::try_from(snapshot.accounts.len()).unwrap_or(i64::MAX),
        role_count: i64::try_from(snapshot.roles.len()).unwrap_or(i64::MAX),
    };
    let (logins, break_glass) = match &previous {
        Some(old) => {
            let (seen, break_glass, events) = login_events(old, &snapshot, watch, clock.now());
            if !events.is_empty() {
                store.append_audit(events).await?;
            }
            (seen, break_glass)
        }
        None => (Vec::new(), Vec::new()),
    };
    // Recorded before the snapshot is marked complete, like the logins: a crash in between
    // leaves an observation without its snapshot, never a snapshot without its observation.
    crate::history::observe(store, &snapshot, &format!("snapshot:{}", id.0)).await?;
    store
        .complete_snapshot(&id, millis(clock.now()), &meta, &payload)
        .await?;
    let after = client.stats();
    Ok(InventoryOutcome {
        report,
        snapshot_id: id.0,
        stats: after.since(&before),
        elapsed: started.elapsed(),
        logins,
        break_glass,
    })
}

/// What changed between an instance's two latest complete snapshots.
#[derive(Debug)]
pub struct DiffOutcome {
    /// When the older snapshot was taken.
    pub from: DateTime<Utc>,
    /// When the newer snapshot was taken.
    pub to: DateTime<Utc>,
    /// The changes.
    pub diff: SnapshotDiff,
}

/// Diffs the two latest complete snapshots of `instance`; `None` if fewer than two exist.
pub async fn latest_diff(
    store: &Store,
    instance: &str,
) -> Result<Option<DiffOutcome>, EngineError> {
    let mut latest = store.latest_complete_snapshots(instance, 2).await?;
    if latest.len() < 2 {
        return Ok(None);
    }
    let old = decode(&latest.remove(1))?;
    let new = decode(&latest.remove(0))?;
    Ok(Some(DiffOutcome {
        from: old.taken_at,
        to: new.taken_at,
        diff: inventory::diff(&old, &new),
    }))
}

fn decode(s: &StoredSnapshot) -> Result<Snapshot, EngineError> {
    serde_json::from_str(&s.payload_json).map_err(|source| EngineError::CorruptSnapshot {
        id: s.id.0.clone(),
        instance: s.instance.clone(),
        source,
    })
}

fn millis(t: DateTime<Utc>) -> i64 {
    t.timestamp_millis()
}
