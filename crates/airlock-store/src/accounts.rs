//! The accounts airlock itself created in each Airflow instance, so an inventory can flag
//! accounts that were "created outside airlock".
//!
//! Usernames compare case-insensitively, like Airflow's FAB login: each row has a lowercase
//! key and the spelling airlock used. This is a record of airlock's own actions, not of what
//! exists in Airflow now; the inventory compares the two.

use std::collections::BTreeSet;

use crate::{Store, StoreError};

/// The comparison key of a username, as FAB compares them (`lower(username)`, which folds
/// ASCII letters only) and as `airlock_core::Username::key` folds them: `ÅSA` and `åsa` are
/// two accounts in Airflow, so they are two here. Every table keyed by username uses it.
pub(crate) fn username_key(username: &str) -> String {
    username.to_ascii_lowercase()
}

impl Store {
    /// Records that airlock created `username` in `instance` at `at_ms`. Recording an account
    /// again (in any letter case) updates the spelling and time; it never adds a second row.
    pub async fn record_created_account(
        &self,
        instance: &str,
        username: &str,
        at_ms: i64,
    ) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO created_accounts (instance, username_key, username, created_at_ms) \
             VALUES ($1, $2, $3, $4) \
             ON CONFLICT (instance, username_key) \
             DO UPDATE SET username = excluded.username, created_at_ms = excluded.created_at_ms",
        )
        .bind(instance)
        .bind(username_key(username))
        .bind(username)
        .bind(at_ms)
        .execute(&self.pool)
        .await
        .map_err(|err| self.ctx.query_failed("record created account", err))?;
        Ok(())
    }

    /// Forgets that airlock created `username` in `instance` (any letter case); forgetting an
    /// account that was never recorded is not an error.
    pub async fn forget_created_account(
        &self,
        instance: &str,
        username: &str,
    ) -> Result<(), StoreError> {
        sqlx::query("DELETE FROM created_accounts WHERE instance = $1 AND username_key = $2")
            .bind(instance)
            .bind(username_key(username))
            .execute(&self.pool)
            .await
            .map_err(|err| self.ctx.query_failed("forget created account", err))?;
        Ok(())
    }

    /// The lowercase usernames airlock created in `instance`.
    pub async fn created_accounts(&self, instance: &str) -> Result<BTreeSet<String>, StoreError> {
        let keys: Vec<String> =
            sqlx::query_scalar("SELECT username_key FROM created_accounts WHERE instance = $1")
                .bind(instance)
                .fetch_all(&self.pool)
                .await
                .map_err(|err| self.ctx.query_failed("list created accounts", err))?;
        Ok(keys.into_iter().collect())
    }
}
