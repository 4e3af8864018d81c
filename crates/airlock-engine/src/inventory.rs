//! Inventory runs: read every user and role of one instance, store the snapshot, and report
//! flags; and the diff between an instance's last two complete snapshots.
//!
//! A run is recorded as `running` when it starts and as `complete` only after every page of
//! users and roles was read; any failure records it as `failed` with the error, so a partial
//! read can never be mistaken for the instance's state.

use crate::EngineError;
use airlock_airflow::{AirflowClient, CallStats};
use airlock_core::inventory::{self, FlagRules, Report, Snapshot, SnapshotDiff};
use airlock_core::Clock;
use airlock_store::{SnapshotMeta, Store, StoredSnapshot};
use chrono::{DateTime, Utc};
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
}

/// Runs an inventory of the client's instance and stores it as a complete snapshot.
pub async fn run(
    client: &AirflowClient,
    store: &Store,
    clock: &dyn Clock,
    rules: FlagRules,
) -> Result<InventoryOutcome, EngineError> {
    let instance = client.instance().clone();
    let started = Instant::now();
    let before = client.stats();
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
    store
        .complete_snapshot(&id, millis(clock.now()), &meta, &payload)
        .await?;
    let after = client.stats();
    Ok(InventoryOutcome {
        report,
        snapshot_id: id.0,
        stats: after.since(&before),
        elapsed: started.elapsed(),
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
