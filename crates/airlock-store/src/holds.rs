//! Deprovisions a safety rail held back, and their release by an operator.
//!
//! A rail that finds too many deprovisions (in one run, on one instance, or in the rolling
//! window) holds back only those operations; everything else in the run goes on. Each held
//! operation has one open row per (instance, account, operation kind): `held` until an
//! operator releases it (`released`, with their name), then `applied` once a run carried it
//! out, or `cleared` when a full run no longer plans it (the person came back).
//!
//! Not here: which operations to hold (airlock-engine's rails) or the audit events that
//! record holds and releases (the engine and CLI append them).

use crate::accounts::username_key;
use crate::{Store, StoreError};
use sqlx::Row as _;

/// One held (or formerly held) deprovision.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RailHold {
    /// Id (uuid v7), what `airlock rails release` takes.
    pub id: String,
    /// Instance.
    pub instance: String,
    /// Account.
    pub username: String,
    /// `suspend` or `delete`.
    pub op_kind: String,
    /// The rail that held it.
    pub rail: String,
    /// The rail's words.
    pub reason: String,
    /// `held`, `released`, `applied` or `cleared`.
    pub status: String,
    /// First held.
    pub first_held_ms: i64,
    /// Last held (each run that plans it again).
    pub last_held_ms: i64,
    /// Who released it.
    pub released_by: Option<String>,
    /// When.
    pub released_ms: Option<i64>,
}

/// How a hold ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HoldEnd {
    /// A run carried the released operation out.
    Applied,
    /// A full run no longer plans it.
    Cleared,
}

const HOLD_COLUMNS: &str = "id, instance, username, op_kind, rail, reason, status, \
     first_held_ms, last_held_ms, released_by, released_ms";

fn hold_row(r: &sqlx::any::AnyRow) -> Result<RailHold, sqlx::Error> {
    Ok(RailHold {
        id: r.try_get(0)?,
        instance: r.try_get(1)?,
        username: r.try_get(2)?,
        op_kind: r.try_get(3)?,
        rail: r.try_get(4)?,
        reason: r.try_get(5)?,
        status: r.try_get(6)?,
        first_held_ms: r.try_get(7)?,
        last_held_ms: r.try_get(8)?,
        released_by: r.try_get(9)?,
        released_ms: r.try_get(10)?,
    })
}

impl Store {
    /// Records that `rail` held back `op_kind` on `username` at `instance`; returns the hold
    /// and whether it is new (a new hold is audited, a repeated one only touched).
    pub async fn hold_deprovision(
        &self,
        instance: &str,
        username: &str,
        op_kind: &str,
        rail: &str,
        reason: &str,
        now_ms: i64,
    ) -> Result<(RailHold, bool), StoreError> {
        let fail = |e| self.ctx.query_failed("hold a deprovision", e);
        let key = username_key(username);
        let mut tx = self.pool.begin().await.map_err(fail)?;
        let touched = sqlx::query(
            "UPDATE rail_holds SET last_held_ms = $4 WHERE instance = $1 AND username_key = $2 \
             AND op_kind = $3 AND status IN ('held', 'released')",
        )
        .bind(instance)
        .bind(&key)
        .bind(op_kind)
        .bind(now_ms)
        .execute(&mut *tx)
        .await
        .map_err(fail)?
        .rows_affected();
        let new = touched == 0;
        if new {
            sqlx::query(
                "INSERT INTO rail_holds (id, instance, username_key, username, op_kind, rail, \
                 reason, status, first_held_ms, last_held_ms) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7, 'held', $8, $8)",
            )
            .bind(uuid::Uuid::now_v7().to_string())
            .bind(instance)
            .bind(&key)
            .bind(username)
            .bind(op_kind)
            .bind(rail)
            .bind(reason)
            .bind(now_ms)
            .execute(&mut *tx)
            .await
            .map_err(fail)?;
        }
        let row = sqlx::query(&format!(
            "SELECT {HOLD_COLUMNS} FROM rail_holds WHERE instance = $1 AND username_key = $2 \
             AND op_kind = $3 AND status IN ('held', 'released')"
        ))
        .bind(instance)
        .bind(&key)
        .bind(op_kind)
        .fetch_one(&mut *tx)
        .await
        .map_err(fail)?;
        let hold = hold_row(&row).map_err(fail)?;
        tx.commit().await.map_err(fail)?;
        Ok((hold, new))
    }

    /// Holds, newest first: the open ones (`held`, `released`) or all of them, of one
    /// instance or every instance.
    pub async fn rail_holds(
        &self,
        instance: Option<&str>,
        open_only: bool,
    ) -> Result<Vec<RailHold>, StoreError> {
        let fail = |e| self.ctx.query_failed("read held deprovisions", e);
        let sql = format!(
            "SELECT {HOLD_COLUMNS} FROM rail_holds WHERE ($1 = '' OR instance = $1) \
             AND ($2 = 0 OR status IN ('held', 'released')) ORDER BY id DESC"
        );
        let rows = sqlx::query(&sql)
            .bind(instance.unwrap_or(""))
            .bind(i64::from(open_only))
            .fetch_all(&self.pool)
            .await
            .map_err(fail)?;
        rows.iter()
            .map(hold_row)
            .collect::<Result<_, _>>()
            .map_err(fail)
    }

    /// Releases the held deprovisions with these ids for `by` at `now_ms`; returns the ones
    /// it released (ids that are unknown or not `held` are left out).
    pub async fn release_holds(
        &self,
        ids: &[String],
        by: &str,
        now_ms: i64,
    ) -> Result<Vec<RailHold>, StoreError> {
        let fail = |e| self.ctx.query_failed("release held deprovisions", e);
        let mut tx = self.pool.begin().await.map_err(fail)?;
        let mut released = Vec::new();
        for id in ids {
            let n = sqlx::query(
                "UPDATE rail_holds SET status = 'released', released_by = $2, released_ms = $3 \
                 WHERE id = $1 AND status = 'held'",
            )
            .bind(id)
            .bind(by)
            .bind(now_ms)
            .execute(&mut *tx)
            .await
            .map_err(fail)?
            .rows_affected();
            if n > 0 {
                let row = sqlx::query(&format!(
                    "SELECT {HOLD_COLUMNS} FROM rail_holds WHERE id = $1"
                ))
                .bind(id)
                .fetch_one(&mut *tx)
                .await
                .map_err(fail)?;
                released.push(hold_row(&row).map_err(fail)?);
            }
        }
        tx.commit().await.map_err(fail)?;
        Ok(released)
    }

    /// Ends the open hold of `op_kind` on `username` at `instance`, if any.
    pub async fn end_hold(
        &self,
        instance: &str,
        username: &str,
        op_kind: &str,
        end: HoldEnd,
        now_ms: i64,
    ) -> Result<(), StoreError> {
        let status = match end {
            HoldEnd::Applied => "applied",
            HoldEnd::Cleared => "cleared",
        };
        sqlx::query(
            "UPDATE rail_holds SET status = $4, closed_ms = $5 WHERE instance = $1 \
             AND username_key = $2 AND op_kind = $3 AND status IN ('held', 'released')",
        )
        .bind(instance)
        .bind(username_key(username))
        .bind(op_kind)
        .bind(status)
        .bind(now_ms)
        .execute(&self.pool)
        .await
        .map_err(|e| self.ctx.query_failed("end a hold", e))?;
        Ok(())
    }
}
