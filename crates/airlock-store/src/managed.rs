//! Accounts airlock manages, and the record of sync runs.
//!
//! The managed set is airlock's scope: only these accounts can ever be suspended or deleted as
//! leavers. Usernames compare case-insensitively, like Airflow's FAB login.

use crate::accounts::username_key as key;
use crate::{Store, StoreError};
use sqlx::Row;

/// Why airlock manages an account.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ManagedOrigin {
    /// airlock created it.
    Created,
    /// An operator adopted it with `airlock adopt`.
    Adopted,
    /// It matched a person in the policy's scope.
    Scope,
    /// A service account declared in the policy.
    Service,
}

impl ManagedOrigin {
    fn as_str(self) -> &'static str {
        match self {
            ManagedOrigin::Created => "created",
            ManagedOrigin::Adopted => "adopted",
            ManagedOrigin::Scope => "scope",
            ManagedOrigin::Service => "service",
        }
    }
}

/// One managed account.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ManagedAccount {
    /// The spelling airlock last used.
    pub username: String,
    /// `created`, `adopted`, `scope` or `service`.
    pub origin: String,
    /// Managed since.
    pub since_ms: i64,
    /// Suspended by airlock at, if suspended.
    pub suspended_at_ms: Option<i64>,
}

/// How a run ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RunStatus {
    /// Everything applied.
    Succeeded,
    /// Some operations failed.
    Failed,
    /// A safety rail stopped it before any write.
    Refused,
    /// Stopped part-way (Ctrl-C, SIGTERM).
    Interrupted,
}

impl RunStatus {
    fn as_str(self) -> &'static str {
        match self {
            RunStatus::Succeeded => "succeeded",
            RunStatus::Failed => "failed",
            RunStatus::Refused => "refused",
            RunStatus::Interrupted => "interrupted",
        }
    }
}

impl Store {
    /// Every account airlock manages in `instance`.
    pub async fn managed_accounts(
        &self,
        instance: &str,
    ) -> Result<Vec<ManagedAccount>, StoreError> {
        let rows = sqlx::query(
            "SELECT username, origin, since_ms, suspended_at_ms FROM managed_accounts \
             WHERE instance = $1 ORDER BY username_key",
        )
        .bind(instance)
        .fetch_all(&self.pool)
        .await
        .map_err(|e| self.ctx.query_failed("list managed accounts", e))?;
        rows.iter()
            .map(|r| {
                Ok(ManagedAccount {
                    username: r.try_get("username")?,
                    origin: r.try_get("origin")?,
                    since_ms: r.try_get("since_ms")?,
                    suspended_at_ms: r.try_get("suspended_at_ms")?,
                })
            })
            .collect::<Result<_, sqlx::Error>>()
            .map_err(|e| self.ctx.query_failed("read managed accounts", e))
    }

    /// Starts managing `username` (idempotent: an existing row keeps its origin and state).
    pub async fn manage_account(
        &self,
        instance: &str,
        username: &str,
        origin: ManagedOrigin,
        at_ms: i64,
    ) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO managed_accounts (instance, username_key, username, origin, since_ms) \
             VALUES ($1, $2, $3, $4, $5) ON CONFLICT (instance, username_key) DO NOTHING",
        )
        .bind(instance)
        .bind(key(username))
        .bind(username)
        .bind(origin.as_str())
        .bind(at_ms)
        .execute(&self.pool)
        .await
        .map_err(|e| self.ctx.query_failed("manage account", e))?;
        Ok(())
    }

    /// Records that airlock suspended `username` at `at_ms` (`None` clears it: the person
    /// returned).
    pub async fn set_suspended(
        &self,
        instance: &str,
        username: &str,
        at_ms: Option<i64>,
    ) -> Result<(), StoreError> {
        sqlx::query("UPDATE managed_accounts SET suspended_at_ms = $1 WHERE instance = $2 AND username_key = $3")
            .bind(at_ms)
            .bind(instance)
            .bind(key(username))
            .execute(&self.pool)
            .await
            .map_err(|e| self.ctx.query_failed("record suspension", e))?;
        Ok(())
    }

    /// Stops managing `username` (after it was deleted).
    pub async fn forget_managed(&self, instance: &str, username: &str) -> Result<(), StoreError> {
        sqlx::query("DELETE FROM managed_accounts WHERE instance = $1 AND username_key = $2")
            .bind(instance)
            .bind(key(username))
            .execute(&self.pool)
            .await
            .map_err(|e| self.ctx.query_failed("forget managed account", e))?;
        Ok(())
    }

    /// Records the start of a run by `holder` (the lease holder id of the process running it,
    /// if it holds leases).
    pub async fn begin_run(
        &self,
        id: &str,
        kind: &str,
        started_at_ms: i64,
        holder: Option<&str>,
    ) -> Result<(), StoreError> {
        sqlx::query("INSERT INTO sync_runs (id, kind, status, started_at_ms, holder) VALUES ($1, $2, 'running', $3, $4)")
            .bind(id)
            .bind(kind)
            .bind(started_at_ms)
            .bind(holder)
            .execute(&self.pool)
            .await
            .map_err(|e| self.ctx.query_failed("begin run", e))?;
        Ok(())
    }

    /// Records how a run ended, the directory size it read and its summary.
    pub async fn finish_run(
        &self,
        id: &str,
        status: RunStatus,
        finished_at_ms: i64,
        directory_people: Option<i64>,
        summary_json: &str,
    ) -> Result<(), StoreError> {
        sqlx::query(
            "UPDATE sync_runs SET status = $1, finished_at_ms = $2, directory_people = $3, summary_json = $4 \
             WHERE id = $5",
        )
        .bind(status.as_str())
        .bind(finished_at_ms)
        .bind(directory_people)
        .bind(summary_json)
        .bind(id)
        .execute(&self.pool)
        .await
        .map_err(|e| self.ctx.query_failed("finish run", e))?;
        Ok(())
    }

    /// How many people the last run that read the directory completely saw.
    pub async fn last_directory_people(&self) -> Result<Option<i64>, StoreError> {
        let v: Option<Option<i64>> = sqlx::query_scalar(
            "SELECT directory_people FROM sync_runs WHERE directory_people IS NOT NULL \
             AND status IN ('succeeded', 'failed', 'interrupted') \
             ORDER BY started_at_ms DESC, id DESC LIMIT 1",
        )
        .fetch_optional(&self.pool)
        .await
        .map_err(|e| self.ctx.query_failed("read last directory size", e))?;
        Ok(v.flatten())
    }
}
