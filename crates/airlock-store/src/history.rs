//! Who had access to what, when: per instance, intervals over which every observation found
//! the same access (migration 0016; the meaning is `airlock_core::history`'s). The state is
//! the caller's JSON text with its digest; the store compares digests and never reads it.

use sqlx::Row as _;

use crate::{Store, StoreError};

/// A stretch of time over which every observation of an instance found the same access.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AccessInterval {
    /// The instance.
    pub instance: String,
    /// The first observation, unix ms.
    pub from_ms: i64,
    /// The last observation, unix ms.
    pub to_ms: i64,
    /// What made the first observation.
    pub first_source: String,
    /// What made the last.
    pub last_source: String,
    /// How many observations found it.
    pub observations: i64,
    /// The state's digest, as the caller gave it.
    pub digest: String,
    /// The state, as the caller gave it.
    pub state_json: String,
}

/// How [`Store::observe_access`] recorded an observation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Recorded {
    /// The newest interval had the same access: it now ends at the observation.
    Stretched,
    /// The access differed (or it was the first observation): a new interval begins.
    Started,
    /// Older than the newest interval's end (an observation that completed late): kept out,
    /// so intervals never overlap.
    TooOld,
}

const COLUMNS: &str = "instance, from_ms, to_ms, first_source, last_source, observations, \
                       digest, state_json";

fn interval(row: &sqlx::any::AnyRow) -> Result<AccessInterval, sqlx::Error> {
    Ok(AccessInterval {
        instance: row.try_get(0)?,
        from_ms: row.try_get(1)?,
        to_ms: row.try_get(2)?,
        first_source: row.try_get(3)?,
        last_source: row.try_get(4)?,
        observations: row.try_get(5)?,
        digest: row.try_get(6)?,
        state_json: row.try_get(7)?,
    })
}

impl Store {
    /// Records that `source` observed `instance` granting the access `state_json` (whose
    /// digest is `digest`) at `at_ms`. Two observers of one instance (an `airlock inventory`
    /// beside `airlock serve`) take turns at the audit head's lock, so each sees the other's
    /// interval.
    pub async fn observe_access(
        &self,
        instance: &str,
        at_ms: i64,
        source: &str,
        digest: &str,
        state_json: &str,
    ) -> Result<Recorded, StoreError> {
        const OP: &str = "record observed access";
        let fail = |e| self.ctx.query_failed(OP, e);
        let mut tx = self.pool.begin().await.map_err(fail)?;
        self.lock_audit_head(&mut tx, OP).await?;
        let newest = sqlx::query(
            "SELECT id, to_ms, digest FROM access_history WHERE instance = $1 \
             ORDER BY from_ms DESC, id DESC LIMIT 1",
        )
        .bind(instance)
        .fetch_optional(&mut *tx)
        .await
        .map_err(fail)?;
        let recorded = match newest {
            Some(row) => {
                let id: String = row.try_get(0).map_err(fail)?;
                let to_ms: i64 = row.try_get(1).map_err(fail)?;
                let same: String = row.try_get(2).map_err(fail)?;
                if at_ms < to_ms {
                    Recorded::TooOld
                } else if same == digest {
                    sqlx::query(
                        "UPDATE access_history SET to_ms = $1, last_source = $2, \
                         observations = observations + 1 WHERE id = $3",
                    )
                    .bind(at_ms)
                    .bind(source)
                    .bind(&id)
                    .execute(&mut *tx)
                    .await
                    .map_err(fail)?;
                    Recorded::Stretched
                } else {
                    Recorded::Started
                }
            }
            None => Recorded::Started,
        };
        if recorded == Recorded::Started {
            sqlx::query(
                "INSERT INTO access_history (id, instance, from_ms, to_ms, first_source, \
                 last_source, observations, digest, state_json) \
                 VALUES ($1, $2, $3, $3, $4, $4, 1, $5, $6)",
            )
            .bind(uuid::Uuid::now_v7().to_string())
            .bind(instance)
            .bind(at_ms)
            .bind(source)
            .bind(digest)
            .bind(state_json)
            .execute(&mut *tx)
            .await
            .map_err(fail)?;
        }
        tx.commit().await.map_err(fail)?;
        Ok(recorded)
    }

    /// The interval of `instance` that began at or before `at_ms` (the newest such), and the
    /// first that began after it.
    pub async fn access_around(
        &self,
        instance: &str,
        at_ms: i64,
    ) -> Result<(Option<AccessInterval>, Option<AccessInterval>), StoreError> {
        const OP: &str = "read observed access";
        let fail = |e| self.ctx.query_failed(OP, e);
        let before = sqlx::query(&format!(
            "SELECT {COLUMNS} FROM access_history WHERE instance = $1 AND from_ms <= $2 \
             ORDER BY from_ms DESC, id DESC LIMIT 1"
        ))
        .bind(instance)
        .bind(at_ms)
        .fetch_optional(&self.pool)
        .await
        .map_err(fail)?;
        let after = sqlx::query(&format!(
            "SELECT {COLUMNS} FROM access_history WHERE instance = $1 AND from_ms > $2 \
             ORDER BY from_ms, id LIMIT 1"
        ))
        .bind(instance)
        .bind(at_ms)
        .fetch_optional(&self.pool)
        .await
        .map_err(fail)?;
        Ok((
            before.as_ref().map(interval).transpose().map_err(fail)?,
            after.as_ref().map(interval).transpose().map_err(fail)?,
        ))
    }

    /// Every instance with observed access, sorted.
    pub async fn access_instances(&self) -> Result<Vec<String>, StoreError> {
        let rows = sqlx::query("SELECT DISTINCT instance FROM access_history ORDER BY instance")
            .fetch_all(&self.pool)
            .await
            .map_err(|e| self.ctx.query_failed("list observed instances", e))?;
        rows.iter()
            .map(|r| r.try_get(0))
            .collect::<Result<_, _>>()
            .map_err(|e| self.ctx.query_failed("list observed instances", e))
    }

    /// How many intervals are stored for `instance`, and their states' total size in bytes.
    pub async fn access_history_size(&self, instance: &str) -> Result<(i64, i64), StoreError> {
        let fail = |e| self.ctx.query_failed("measure observed access", e);
        let row = sqlx::query(
            "SELECT COUNT(*), COALESCE(SUM(LENGTH(state_json)), 0) FROM access_history \
             WHERE instance = $1",
        )
        .bind(instance)
        .fetch_one(&self.pool)
        .await
        .map_err(fail)?;
        Ok((row.try_get(0).map_err(fail)?, row.try_get(1).map_err(fail)?))
    }
}
