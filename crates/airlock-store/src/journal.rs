//! The write-ahead journal of operations on Airflow (docs/adr/0006).
//!
//! Before an Airflow call the engine records the operation's intent, and the insert happens
//! only while the writer's lease is current (same holder, same epoch, not expired): the
//! fencing check and the intent are one statement, so a writer that lost its lease fails here
//! before it can touch Airflow. After the call the intent is closed with its outcome and the
//! audit event that records it, in one transaction. An intent left open (a crash, a kill, a
//! store outage in between) is found by the instance's next lease holder, which reads Airflow
//! back and closes it with what actually happened.
//!
//! Closed deprovisions double as the history the rolling-window safety rail counts, across
//! runs, processes and replicas.
//!
//! Not here: what an operation means or how to read it back (airlock-engine).

use crate::{Store, StoreError};
use airlock_audit::{AuditEvent, NewEvent};
use sqlx::Row as _;

/// The lease a write happens under.
#[derive(Debug, Clone, Copy)]
pub struct Fencing<'a> {
    /// Lease name.
    pub lease: &'a str,
    /// Holder id.
    pub holder: &'a str,
    /// Epoch of the holder's tenure.
    pub epoch: i64,
}

/// An operation about to be sent to Airflow.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Intent {
    /// Unique id (uuid v7).
    pub id: String,
    /// The run it belongs to.
    pub run_id: String,
    /// Instance.
    pub instance: String,
    /// Operation kind (`create_account`, `suspend`, ...).
    pub op_kind: String,
    /// What it targets (`account ann`).
    pub target: String,
    /// The whole planned operation as JSON (no secrets: operations carry none).
    pub op_json: String,
    /// Who asked: the service, an operator, a SCIM client.
    pub actor: String,
    /// When it was recorded.
    pub started_ms: i64,
}

/// An open intent as stored, with the lease it was written under.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OpenIntent {
    /// The intent.
    pub intent: Intent,
    /// Holder that wrote it.
    pub holder: String,
    /// Its epoch.
    pub epoch: i64,
}

/// How an operation ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum JournalState {
    /// Airflow made the change.
    Succeeded,
    /// Airflow refused or failed it.
    Failed,
    /// Read back after an interruption: the change never reached Airflow.
    NotApplied,
}

impl JournalState {
    fn as_str(self) -> &'static str {
        match self {
            JournalState::Succeeded => "succeeded",
            JournalState::Failed => "failed",
            JournalState::NotApplied => "not_applied",
        }
    }
}

impl Store {
    /// Records `intent` if `fence` is current at `now_ms`; otherwise writes nothing and
    /// returns [`StoreError::LeaseLost`].
    pub async fn journal_intent(
        &self,
        intent: &Intent,
        fence: Fencing<'_>,
        now_ms: i64,
    ) -> Result<(), StoreError> {
        let inserted = sqlx::query(
            "INSERT INTO op_journal (id, run_id, instance, holder, epoch, op_kind, target, \
             op_json, actor, state, started_ms) \
             SELECT $1, $2, $3, $4, $5, $6, $7, $8, $9, 'intent', $10 \
             WHERE EXISTS (SELECT 1 FROM leases WHERE name = $11 AND holder = $4 \
                           AND epoch = $5 AND expires_ms > $12)",
        )
        .bind(&intent.id)
        .bind(&intent.run_id)
        .bind(&intent.instance)
        .bind(fence.holder)
        .bind(fence.epoch)
        .bind(&intent.op_kind)
        .bind(&intent.target)
        .bind(&intent.op_json)
        .bind(&intent.actor)
        .bind(intent.started_ms)
        .bind(fence.lease)
        .bind(now_ms)
        .execute(&self.pool)
        .await
        .map_err(|e| self.ctx.query_failed("record an operation's intent", e))?
        .rows_affected();
        if inserted == 0 {
            return Err(StoreError::LeaseLost {
                lease: fence.lease.to_string(),
                epoch: fence.epoch,
            });
        }
        Ok(())
    }

    /// Closes intent `id` with `state` and appends `events` (its audit record), all or none.
    pub async fn journal_close(
        &self,
        id: &str,
        state: JournalState,
        finished_ms: i64,
        events: Vec<NewEvent>,
    ) -> Result<Vec<AuditEvent>, StoreError> {
        let fail = |e| self.ctx.query_failed("record an operation's outcome", e);
        let mut tx = self.pool.begin().await.map_err(fail)?;
        // The audit head's lock first, like every append (SQLite: the write lock).
        let sealed = self.append_audit_in(&mut tx, events).await?;
        sqlx::query(
            "UPDATE op_journal SET state = $2, finished_ms = $3 WHERE id = $1 AND state = 'intent'",
        )
        .bind(id)
        .bind(state.as_str())
        .bind(finished_ms)
        .execute(&mut *tx)
        .await
        .map_err(fail)?;
        tx.commit().await.map_err(fail)?;
        Ok(sealed)
    }

    /// Intents on `instance` that were never closed, oldest first.
    pub async fn journal_open(&self, instance: &str) -> Result<Vec<OpenIntent>, StoreError> {
        let fail = |e| self.ctx.query_failed("read open intents", e);
        let rows = sqlx::query(
            "SELECT id, run_id, instance, op_kind, target, op_json, actor, started_ms, holder, \
             epoch FROM op_journal WHERE instance = $1 AND state = 'intent' ORDER BY id",
        )
        .bind(instance)
        .fetch_all(&self.pool)
        .await
        .map_err(fail)?;
        rows.iter()
            .map(|r| {
                Ok(OpenIntent {
                    intent: Intent {
                        id: r.try_get(0)?,
                        run_id: r.try_get(1)?,
                        instance: r.try_get(2)?,
                        op_kind: r.try_get(3)?,
                        target: r.try_get(4)?,
                        op_json: r.try_get(5)?,
                        actor: r.try_get(6)?,
                        started_ms: r.try_get(7)?,
                    },
                    holder: r.try_get(8)?,
                    epoch: r.try_get(9)?,
                })
            })
            .collect::<Result<_, sqlx::Error>>()
            .map_err(fail)
    }

    /// Deprovisions (suspensions and deletions) that reached Airflow at or after `since_ms`,
    /// on every instance, by every process.
    pub async fn deprovisions_since(&self, since_ms: i64) -> Result<u64, StoreError> {
        let n: i64 = sqlx::query_scalar(
            "SELECT COUNT(*) FROM op_journal WHERE state = 'succeeded' \
             AND op_kind IN ('suspend', 'delete') AND finished_ms >= $1",
        )
        .bind(since_ms)
        .fetch_one(&self.pool)
        .await
        .map_err(|e| self.ctx.query_failed("count recent deprovisions", e))?;
        Ok(u64::try_from(n).unwrap_or(0))
    }

    /// Removes closed journal rows that finished before `before_ms` (the audit trail keeps
    /// what they recorded); returns how many.
    pub async fn prune_journal(&self, before_ms: i64) -> Result<u64, StoreError> {
        Ok(
            sqlx::query("DELETE FROM op_journal WHERE state <> 'intent' AND finished_ms < $1")
                .bind(before_ms)
                .execute(&self.pool)
                .await
                .map_err(|e| self.ctx.query_failed("prune the journal", e))?
                .rows_affected(),
        )
    }

    /// Closes, as interrupted, runs still marked running whose process holds no current lease
    /// at `now_ms` (it died or lost its leases), or that have no holder and started before
    /// `stale_before_ms`; returns how many.
    pub async fn close_orphaned_runs(
        &self,
        now_ms: i64,
        stale_before_ms: i64,
    ) -> Result<u64, StoreError> {
        Ok(sqlx::query(
            "UPDATE sync_runs SET status = 'interrupted', finished_at_ms = $1, \
               summary_json = '{\"interrupted\":\"its process stopped before the run ended\"}' \
             WHERE status = 'running' AND ( \
               (holder IS NOT NULL AND NOT EXISTS \
                  (SELECT 1 FROM leases WHERE leases.holder = sync_runs.holder AND expires_ms > $1)) \
               OR (holder IS NULL AND started_at_ms < $2))",
        )
        .bind(now_ms)
        .bind(stale_before_ms)
        .execute(&self.pool)
        .await
        .map_err(|e| self.ctx.query_failed("close orphaned runs", e))?
        .rows_affected())
    }
}
