//! Governance API tokens: issued, listed, revoked and checked by their SHA-256 only. The store
//! does not know what a scope means (the caller's names, kept as a JSON list); it knows when a
//! token works: issued, not revoked, not expired.
//!
//! Issuing and revoking commit with their audit event (`api_token.create` / `.revoke`).

use crate::scim::{is_unique_violation, sha256_hex};
use crate::{Store, StoreError};
use airlock_audit::{operation as op, NewEvent, Outcome, Target};
use base64::Engine as _;
use rand::RngCore as _;
use sqlx::Row as _;

/// What every API token starts with, so that it is recognised (and found by secret scanners).
pub const API_TOKEN_PREFIX: &str = "airlock_api_";

/// `last_used_ms` is written at most this often per token.
const LAST_USED_RESOLUTION_MS: i64 = 60_000;

/// A token as the store keeps it; never its secret.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiToken {
    /// Its name (unique among tokens that are not revoked).
    pub name: String,
    /// The directory id of the person it acts as, if any.
    pub person: Option<String>,
    /// Its scopes, by name.
    pub scopes: Vec<String>,
    /// Issued, unix ms.
    pub created_ms: i64,
    /// Who issued it (audit actor).
    pub created_by: String,
    /// When it stops working, unix ms (`None`: when revoked).
    pub expires_ms: Option<i64>,
    /// When it was revoked.
    pub revoked_ms: Option<i64>,
    /// When it was last used (to the minute).
    pub last_used_ms: Option<i64>,
}

/// What a new token is.
#[derive(Debug, Clone, Default)]
pub struct NewApiToken {
    /// Its name.
    pub name: String,
    /// The person it acts as.
    pub person: Option<String>,
    /// Its scopes, by name.
    pub scopes: Vec<String>,
    /// How long it works, ms (`None`: until revoked).
    pub lifetime_ms: Option<i64>,
}

const COLUMNS: &str =
    "name, person, scopes_json, created_ms, created_by, expires_ms, revoked_ms, last_used_ms";

fn new_secret() -> String {
    let mut bytes = [0u8; 32];
    rand::rngs::OsRng.fill_bytes(&mut bytes);
    format!(
        "{API_TOKEN_PREFIX}{}",
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
    )
}

fn event(operation: &str, name: &str, actor: &str, now_ms: i64) -> NewEvent {
    let at = chrono::DateTime::from_timestamp_millis(now_ms).unwrap_or_default();
    let mut e = NewEvent::new(at, actor, operation, Outcome::Succeeded);
    e.target = Some(Target::ApiToken {
        name: name.to_owned(),
    });
    e
}

impl Store {
    fn api_token(&self, r: &sqlx::any::AnyRow) -> Result<ApiToken, StoreError> {
        let fail = |e| self.ctx.query_failed("read API token", e);
        let name: String = r.try_get(0).map_err(fail)?;
        let scopes: String = r.try_get(2).map_err(fail)?;
        let scopes = serde_json::from_str(&scopes).map_err(|_| StoreError::UnexpectedValue {
            op: "read API token",
            location: self.ctx.location.clone(),
            column: "api_tokens.scopes_json",
            value: format!("not a JSON list of strings (token {name})"),
        })?;
        Ok(ApiToken {
            name,
            person: r.try_get(1).map_err(fail)?,
            scopes,
            created_ms: r.try_get(3).map_err(fail)?,
            created_by: r.try_get(4).map_err(fail)?,
            expires_ms: r.try_get(5).map_err(fail)?,
            revoked_ms: r.try_get(6).map_err(fail)?,
            last_used_ms: r.try_get(7).map_err(fail)?,
        })
    }

    /// Issues a token and returns it with its secret, which is not stored and cannot be
    /// shown again. A name with a token that is not revoked is refused
    /// ([`StoreError::ApiTokenExists`]); a revoked one is replaced (its history stays in the
    /// audit trail). Audited (`api_token.create`, by `actor`) in the same transaction.
    pub async fn issue_api_token(
        &self,
        new: &NewApiToken,
        actor: &str,
        now_ms: i64,
    ) -> Result<(ApiToken, String), StoreError> {
        let fail = |e| self.ctx.query_failed("issue API token", e);
        let exists = || StoreError::ApiTokenExists {
            name: new.name.clone(),
        };
        let mut tx = self.pool.begin().await.map_err(fail)?;
        self.lock_audit_head(&mut tx, "issue API token").await?;
        let existing: Option<Option<i64>> =
            sqlx::query_scalar("SELECT revoked_ms FROM api_tokens WHERE name = $1")
                .bind(&new.name)
                .fetch_optional(&mut *tx)
                .await
                .map_err(fail)?;
        match existing {
            Some(None) => return Err(exists()),
            Some(Some(_)) => {
                sqlx::query("DELETE FROM api_tokens WHERE name = $1")
                    .bind(&new.name)
                    .execute(&mut *tx)
                    .await
                    .map_err(fail)?;
            }
            None => {}
        }
        let secret = new_secret();
        let token = ApiToken {
            name: new.name.clone(),
            person: new.person.clone(),
            scopes: new.scopes.clone(),
            created_ms: now_ms,
            created_by: actor.to_owned(),
            expires_ms: new.lifetime_ms.map(|l| now_ms.saturating_add(l)),
            revoked_ms: None,
            last_used_ms: None,
        };
        sqlx::query(
            "INSERT INTO api_tokens (name, token_sha256, person, scopes_json, created_ms, \
             created_by, expires_ms) VALUES ($1, $2, $3, $4, $5, $6, $7)",
        )
        .bind(&token.name)
        .bind(sha256_hex(&secret))
        .bind(&token.person)
        .bind(serde_json::Value::from(token.scopes.clone()).to_string())
        .bind(now_ms)
        .bind(actor)
        .bind(token.expires_ms)
        .execute(&mut *tx)
        .await
        .map_err(|e| {
            if is_unique_violation(&e) {
                exists()
            } else {
                fail(e)
            }
        })?;
        let mut e = event(op::API_TOKEN_CREATE, &token.name, actor, now_ms);
        e.after = Some(serde_json::json!({
            "person": token.person,
            "scopes": token.scopes,
            "expires_ms": token.expires_ms,
        }));
        self.append_audit_under_lock(&mut tx, vec![e]).await?;
        tx.commit().await.map_err(fail)?;
        Ok((token, secret))
    }

    /// Revokes the token `name`: refused from now on. Audited (`api_token.revoke`, by
    /// `actor`) in the same transaction.
    pub async fn revoke_api_token(
        &self,
        name: &str,
        actor: &str,
        now_ms: i64,
    ) -> Result<(), StoreError> {
        let fail = |e| self.ctx.query_failed("revoke API token", e);
        let mut tx = self.pool.begin().await.map_err(fail)?;
        self.lock_audit_head(&mut tx, "revoke API token").await?;
        let updated = sqlx::query(
            "UPDATE api_tokens SET revoked_ms = $1 WHERE name = $2 AND revoked_ms IS NULL",
        )
        .bind(now_ms)
        .bind(name)
        .execute(&mut *tx)
        .await
        .map_err(fail)?;
        if updated.rows_affected() == 0 {
            return Err(StoreError::ApiTokenMissing {
                name: name.to_owned(),
            });
        }
        let e = event(op::API_TOKEN_REVOKE, name, actor, now_ms);
        self.append_audit_under_lock(&mut tx, vec![e]).await?;
        tx.commit().await.map_err(fail)?;
        Ok(())
    }

    /// Every token, revoked or not, by name; never a secret.
    pub async fn api_tokens(&self) -> Result<Vec<ApiToken>, StoreError> {
        let rows = sqlx::query(&format!("SELECT {COLUMNS} FROM api_tokens ORDER BY name"))
            .fetch_all(&self.pool)
            .await
            .map_err(|e| self.ctx.query_failed("list API tokens", e))?;
        rows.iter().map(|r| self.api_token(r)).collect()
    }

    /// The token whose secret `secret` is, if it works at `now_ms` (issued, not revoked, not
    /// expired), recording its use to the minute; `None` otherwise.
    pub async fn authenticate_api_token(
        &self,
        secret: &str,
        now_ms: i64,
    ) -> Result<Option<ApiToken>, StoreError> {
        let fail = |e| self.ctx.query_failed("check API token", e);
        if !secret.starts_with(API_TOKEN_PREFIX) {
            return Ok(None);
        }
        let row = sqlx::query(&format!(
            "SELECT {COLUMNS} FROM api_tokens WHERE token_sha256 = $1 AND revoked_ms IS NULL \
             AND (expires_ms IS NULL OR expires_ms > $2)"
        ))
        .bind(sha256_hex(secret))
        .bind(now_ms)
        .fetch_optional(&self.pool)
        .await
        .map_err(fail)?;
        let Some(row) = row else {
            return Ok(None);
        };
        let token = self.api_token(&row)?;
        if token
            .last_used_ms
            .is_none_or(|at| now_ms.saturating_sub(at) >= LAST_USED_RESOLUTION_MS)
        {
            sqlx::query("UPDATE api_tokens SET last_used_ms = $1 WHERE name = $2")
                .bind(now_ms)
                .bind(&token.name)
                .execute(&self.pool)
                .await
                .map_err(fail)?;
        }
        Ok(Some(token))
    }
}
