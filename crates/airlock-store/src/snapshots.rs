//! Inventory snapshots: one row per inventory run of one Airflow instance, moving from
//! `running` to exactly one of `complete` (with metadata and a JSON payload) or `failed` (with
//! an error).
//!
//! The payload is opaque JSON text here; its shape belongs to the inventory code. Readers of
//! "the latest inventory" only ever see complete snapshots. "Newest first" is by start time,
//! then by id, so equal timestamps still give one order on both databases.

use sqlx::any::AnyRow;
use sqlx::Row as _;

use crate::{Store, StoreError};

/// The id of one inventory run (a uuid v7, so ids sort by creation time).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct SnapshotId(pub String);

impl std::fmt::Display for SnapshotId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// Summary facts about a complete snapshot, kept in columns so listings need not parse the
/// payload.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SnapshotMeta {
    /// The Airflow version the instance reported.
    pub airflow_version: String,
    /// How many user accounts the inventory found.
    pub user_count: i64,
    /// How many roles the inventory found.
    pub role_count: i64,
}

/// A complete snapshot with its payload.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredSnapshot {
    /// The run's id.
    pub id: SnapshotId,
    /// The Airflow instance inventoried.
    pub instance: String,
    /// When the run started, unix milliseconds UTC.
    pub started_at_ms: i64,
    /// When the run completed, unix milliseconds UTC.
    pub finished_at_ms: i64,
    /// Summary facts.
    pub meta: SnapshotMeta,
    /// The inventory itself, as the JSON text it was stored with.
    pub payload_json: String,
}

/// Where an inventory run is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SnapshotStatus {
    /// Started, not finished (or the process died before finishing it).
    Running,
    /// Finished with a payload.
    Complete,
    /// Finished with an error and no payload.
    Failed,
}

impl SnapshotStatus {
    /// The value stored in the `status` column.
    pub fn as_str(self) -> &'static str {
        match self {
            SnapshotStatus::Running => "running",
            SnapshotStatus::Complete => "complete",
            SnapshotStatus::Failed => "failed",
        }
    }

    fn from_column(value: &str) -> Option<Self> {
        match value {
            "running" => Some(SnapshotStatus::Running),
            "complete" => Some(SnapshotStatus::Complete),
            "failed" => Some(SnapshotStatus::Failed),
            _ => None,
        }
    }
}

impl std::fmt::Display for SnapshotStatus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One inventory run of any status, without its payload.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SnapshotRun {
    /// The run's id.
    pub id: SnapshotId,
    /// The Airflow instance inventoried.
    pub instance: String,
    /// Where the run is in its life.
    pub status: SnapshotStatus,
    /// When the run started, unix milliseconds UTC.
    pub started_at_ms: i64,
    /// When the run finished, if it did.
    pub finished_at_ms: Option<i64>,
    /// Why the run failed, for failed runs.
    pub error: Option<String>,
}

const LATEST_COMPLETE_SQL: &str = "SELECT id, instance, started_at_ms, finished_at_ms, \
     airflow_version, user_count, role_count, payload_json \
     FROM snapshots WHERE instance = $1 AND status = 'complete' \
     ORDER BY started_at_ms DESC, id DESC LIMIT $2";

const RUNS_OF_INSTANCE_SQL: &str =
    "SELECT id, instance, status, started_at_ms, finished_at_ms, error \
     FROM snapshots WHERE instance = $1 ORDER BY started_at_ms DESC, id DESC LIMIT $2";

const RUNS_SQL: &str = "SELECT id, instance, status, started_at_ms, finished_at_ms, error \
     FROM snapshots ORDER BY started_at_ms DESC, id DESC LIMIT $1";

impl Store {
    /// Records the start of an inventory run of `instance`; the run is `running` until
    /// [`Store::complete_snapshot`] or [`Store::fail_snapshot`].
    pub async fn begin_snapshot(
        &self,
        instance: &str,
        started_at_ms: i64,
    ) -> Result<SnapshotId, StoreError> {
        let id = SnapshotId(uuid::Uuid::now_v7().to_string());
        sqlx::query(
            "INSERT INTO snapshots (id, instance, status, started_at_ms) \
             VALUES ($1, $2, 'running', $3)",
        )
        .bind(&id.0)
        .bind(instance)
        .bind(started_at_ms)
        .execute(&self.pool)
        .await
        .map_err(|err| self.ctx.query_failed("begin snapshot", err))?;
        Ok(id)
    }

    /// Marks a running snapshot complete and stores its metadata and JSON payload.
    ///
    /// Fails with [`StoreError::SnapshotNotRunning`] if `id` is unknown or already finished:
    /// a finished snapshot is never rewritten.
    pub async fn complete_snapshot(
        &self,
        id: &SnapshotId,
        finished_at_ms: i64,
        meta: &SnapshotMeta,
        payload_json: &str,
    ) -> Result<(), StoreError> {
        const OP: &str = "complete snapshot";
        let result = sqlx::query(
            "UPDATE snapshots SET status = 'complete', finished_at_ms = $1, \
             airflow_version = $2, user_count = $3, role_count = $4, payload_json = $5 \
             WHERE id = $6 AND status = 'running'",
        )
        .bind(finished_at_ms)
        .bind(&meta.airflow_version)
        .bind(meta.user_count)
        .bind(meta.role_count)
        .bind(payload_json)
        .bind(&id.0)
        .execute(&self.pool)
        .await
        .map_err(|err| self.ctx.query_failed(OP, err))?;
        ensure_one_row(result.rows_affected(), OP, id)
    }

    /// Marks a running snapshot failed with `error`; it keeps no payload.
    ///
    /// Fails with [`StoreError::SnapshotNotRunning`] if `id` is unknown or already finished.
    pub async fn fail_snapshot(
        &self,
        id: &SnapshotId,
        finished_at_ms: i64,
        error: &str,
    ) -> Result<(), StoreError> {
        const OP: &str = "fail snapshot";
        let result = sqlx::query(
            "UPDATE snapshots SET status = 'failed', finished_at_ms = $1, error = $2 \
             WHERE id = $3 AND status = 'running'",
        )
        .bind(finished_at_ms)
        .bind(error)
        .bind(&id.0)
        .execute(&self.pool)
        .await
        .map_err(|err| self.ctx.query_failed(OP, err))?;
        ensure_one_row(result.rows_affected(), OP, id)
    }

    /// Up to `n` complete snapshots of `instance`, newest first. Running and failed runs are
    /// never returned.
    pub async fn latest_complete_snapshots(
        &self,
        instance: &str,
        n: u32,
    ) -> Result<Vec<StoredSnapshot>, StoreError> {
        const OP: &str = "read latest snapshots";
        let rows = sqlx::query(LATEST_COMPLETE_SQL)
            .bind(instance)
            .bind(i64::from(n))
            .fetch_all(&self.pool)
            .await
            .map_err(|err| self.ctx.query_failed(OP, err))?;
        rows.iter()
            .map(|row| stored_snapshot(row).map_err(|err| self.ctx.query_failed(OP, err)))
            .collect()
    }

    /// Up to `limit` inventory runs of any status, newest first, of one instance or of all.
    pub async fn snapshot_runs(
        &self,
        instance: Option<&str>,
        limit: u32,
    ) -> Result<Vec<SnapshotRun>, StoreError> {
        const OP: &str = "list snapshot runs";
        let query = match instance {
            Some(instance) => sqlx::query(RUNS_OF_INSTANCE_SQL).bind(instance),
            None => sqlx::query(RUNS_SQL),
        };
        let rows = query
            .bind(i64::from(limit))
            .fetch_all(&self.pool)
            .await
            .map_err(|err| self.ctx.query_failed(OP, err))?;
        rows.iter().map(|row| self.snapshot_run(OP, row)).collect()
    }

    fn snapshot_run(&self, op: &'static str, row: &AnyRow) -> Result<SnapshotRun, StoreError> {
        let decode = |err| self.ctx.query_failed(op, err);
        let status: String = row.try_get("status").map_err(decode)?;
        let status =
            SnapshotStatus::from_column(&status).ok_or_else(|| StoreError::UnexpectedValue {
                op,
                location: self.ctx.location.clone(),
                column: "status",
                value: status.clone(),
            })?;
        Ok(SnapshotRun {
            id: SnapshotId(row.try_get("id").map_err(decode)?),
            instance: row.try_get("instance").map_err(decode)?,
            status,
            started_at_ms: row.try_get("started_at_ms").map_err(decode)?,
            finished_at_ms: row.try_get("finished_at_ms").map_err(decode)?,
            error: row.try_get("error").map_err(decode)?,
        })
    }
}

fn stored_snapshot(row: &AnyRow) -> Result<StoredSnapshot, sqlx::Error> {
    Ok(StoredSnapshot {
        id: SnapshotId(row.try_get("id")?),
        instance: row.try_get("instance")?,
        started_at_ms: row.try_get("started_at_ms")?,
        finished_at_ms: row.try_get("finished_at_ms")?,
        meta: SnapshotMeta {
            airflow_version: row.try_get("airflow_version")?,
            user_count: row.try_get("user_count")?,
            role_count: row.try_get("role_count")?,
        },
        payload_json: row.try_get("payload_json")?,
    })
}

/// An update guarded by `status = 'running'` touches one row, or the snapshot was not running.
fn ensure_one_row(rows: u64, op: &'static str, id: &SnapshotId) -> Result<(), StoreError> {
    if rows == 0 {
        return Err(StoreError::SnapshotNotRunning {
            op,
            id: id.0.clone(),
        });
    }
    Ok(())
}
