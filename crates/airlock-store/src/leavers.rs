//! Leavers as the identity provider recorded them, and when airlock removed their access on
//! each instance (migration 0014): the store side of the "time to deprovision".

use crate::{Store, StoreError};
use sqlx::Row as _;

/// A person the identity provider suspended or deleted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Leaver {
    /// The provider's event id.
    pub id: String,
    /// `jumpcloud`.
    pub provider: String,
    /// `suspended` or `deleted`.
    pub kind: String,
    /// When the provider recorded it (unix ms).
    pub at_ms: i64,
    /// The provider's id of the person.
    pub person: String,
    /// The Airflow username airlock derives for them.
    pub username: String,
}

/// The first removal of a leaver's access airlock recorded on one instance.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Deprovision {
    /// The leaver's event id.
    pub leaver: String,
    /// The instance.
    pub instance: String,
    /// When airlock removed the access (the audit event's time, unix ms).
    pub removed_ms: i64,
    /// The audit event's seq.
    pub audit_seq: u64,
}

impl Store {
    /// Records a leaver; `false` when the provider's event was already recorded.
    pub async fn record_leaver(&self, l: &Leaver, now_ms: i64) -> Result<bool, StoreError> {
        let done = sqlx::query(
            "INSERT INTO idp_leavers (id, provider, kind, at_ms, person, username, recorded_ms) \
             VALUES ($1, $2, $3, $4, $5, $6, $7) ON CONFLICT (id) DO NOTHING",
        )
        .bind(&l.id)
        .bind(&l.provider)
        .bind(&l.kind)
        .bind(l.at_ms)
        .bind(&l.person)
        .bind(&l.username)
        .bind(now_ms)
        .execute(&self.pool)
        .await
        .map_err(|e| self.ctx.query_failed("record a leaver", e))?;
        Ok(done.rows_affected() == 1)
    }

    /// The leavers the provider recorded at or after `since_ms`, oldest first.
    pub async fn leavers(&self, since_ms: i64) -> Result<Vec<Leaver>, StoreError> {
        let rows = sqlx::query(
            "SELECT id, provider, kind, at_ms, person, username FROM idp_leavers \
             WHERE at_ms >= $1 ORDER BY at_ms, id",
        )
        .bind(since_ms)
        .fetch_all(&self.pool)
        .await
        .map_err(|e| self.ctx.query_failed("read the leavers", e))?;
        rows.iter()
            .map(|r| {
                Ok(Leaver {
                    id: r.try_get("id")?,
                    provider: r.try_get("provider")?,
                    kind: r.try_get("kind")?,
                    at_ms: r.try_get("at_ms")?,
                    person: r.try_get("person")?,
                    username: r.try_get("username")?,
                })
            })
            .collect::<Result<_, sqlx::Error>>()
            .map_err(|e| self.ctx.query_failed("read the leavers", e))
    }

    /// Records the first removal of a leaver's access on an instance; `false` when one was
    /// already recorded.
    pub async fn record_deprovision(&self, d: &Deprovision) -> Result<bool, StoreError> {
        let done = sqlx::query(
            "INSERT INTO idp_deprovisions (leaver, instance, removed_ms, audit_seq) \
             VALUES ($1, $2, $3, $4) ON CONFLICT (leaver, instance) DO NOTHING",
        )
        .bind(&d.leaver)
        .bind(&d.instance)
        .bind(d.removed_ms)
        .bind(i64::try_from(d.audit_seq).unwrap_or(i64::MAX))
        .execute(&self.pool)
        .await
        .map_err(|e| self.ctx.query_failed("record a deprovision", e))?;
        Ok(done.rows_affected() == 1)
    }

    /// The removals recorded for the leavers at or after `since_ms`.
    pub async fn deprovisions(&self, since_ms: i64) -> Result<Vec<Deprovision>, StoreError> {
        let rows = sqlx::query(
            "SELECT d.leaver, d.instance, d.removed_ms, d.audit_seq FROM idp_deprovisions d \
             JOIN idp_leavers l ON l.id = d.leaver WHERE l.at_ms >= $1 \
             ORDER BY d.leaver, d.instance",
        )
        .bind(since_ms)
        .fetch_all(&self.pool)
        .await
        .map_err(|e| self.ctx.query_failed("read the deprovisions", e))?;
        rows.iter()
            .map(|r| {
                Ok(Deprovision {
                    leaver: r.try_get("leaver")?,
                    instance: r.try_get("instance")?,
                    removed_ms: r.try_get("removed_ms")?,
                    audit_seq: u64::try_from(r.try_get::<i64, _>("audit_seq")?).unwrap_or(0),
                })
            })
            .collect::<Result<_, sqlx::Error>>()
            .map_err(|e| self.ctx.query_failed("read the deprovisions", e))
    }

    /// The `seq` of the first audit event at or after `at_ms` (`None`: there is none),
    /// found by bisecting the trail by `seq` (a primary-key read per step, about 20 for a
    /// million events), which holds because events are appended with the time of their
    /// append: their times grow with `seq`, up to the few seconds two writers may disagree,
    /// which callers allow for.
    pub async fn audit_seq_at(&self, at_ms: i64) -> Result<Option<u64>, StoreError> {
        let head = self.audit_head().await?.seq;
        if head == 0 || self.audit_at_ms(head).await?.is_some_and(|t| t < at_ms) {
            return Ok(None);
        }
        let (mut lo, mut hi) = (1u64, head);
        while lo < hi {
            let mid = lo + (hi - lo) / 2;
            // A missing row (a damaged trail) counts as late: the scan starts no later.
            if self.audit_at_ms(mid).await?.is_some_and(|t| t < at_ms) {
                lo = mid + 1;
            } else {
                hi = mid;
            }
        }
        Ok(Some(lo))
    }

    async fn audit_at_ms(&self, seq: u64) -> Result<Option<i64>, StoreError> {
        sqlx::query_scalar("SELECT at_ms FROM audit_events WHERE seq = $1")
            .bind(i64::try_from(seq).unwrap_or(i64::MAX))
            .fetch_optional(&self.pool)
            .await
            .map_err(|e| self.ctx.query_failed("find an audit event by time", e))
    }
}
