//! SCIM resources and SCIM bearer tokens.
//!
//! Resources (`User`, `Group`) are kept whole as SCIM JSON. The store assigns each one its `id`
//! (uuid v4) and its `meta` (`resourceType`, `created`, `lastModified`, `version` as `W/"<n>"`,
//! `location` relative to the server root); every write is one transaction. Uniqueness of a
//! User's `userName` (case-insensitive) and a Group's `displayName` (exact) is enforced by a
//! unique index, so two concurrent creates cannot both win.
//!
//! Tokens are 32 random bytes, base64url, with a recognisable prefix; only their SHA-256 (hex)
//! is stored, so the store can check a token but never show one again.
//!
//! Not here: validating resources against the SCIM schema, filtering, paging and PATCH (the
//! `airlock-scim` core does that), and HTTP.

use base64::Engine as _;
use chrono::{DateTime, SecondsFormat};
use rand::RngCore as _;
use serde_json::{Map, Value};
use sha2::{Digest as _, Sha256};
use sqlx::Row as _;

use crate::{Store, StoreError};

/// Every SCIM token starts with this, so that secret scanners and people recognise one.
pub const SCIM_TOKEN_PREFIX: &str = "airlock_scim_";

/// A stored SCIM resource.
#[derive(Debug, Clone, PartialEq)]
pub struct ScimResource {
    /// The server-assigned id.
    pub id: String,
    /// The version, incremented by every replace; `meta.version` is `W/"<version>"`.
    pub version: i64,
    /// The resource as SCIM JSON, with `id` and `meta`.
    pub resource: Value,
}

/// A SCIM write waiting to be applied by one consumer.
#[derive(Debug, Clone, PartialEq)]
pub struct ScimChange {
    /// The change's id (uuid v7: sorts by when it was written).
    pub id: String,
    /// `User` or `Group`.
    pub resource_type: String,
    /// The resource written.
    pub resource_id: String,
    /// The resource before the write; `None` for a create.
    pub previous: Option<Value>,
    /// When it was written, unix ms.
    pub changed_ms: i64,
    /// The SCIM client that wrote it (absent for changes written before airlock recorded it).
    pub client: Option<String>,
}

/// What is pending for one consumer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PendingSummary {
    /// The consumer (instance name).
    pub consumer: String,
    /// Changes waiting.
    pub count: u64,
    /// When the oldest was written, unix ms.
    pub oldest_ms: Option<i64>,
}

/// A SCIM client's token, without its secret.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScimToken {
    /// The token's id.
    pub id: String,
    /// The client (identity provider) it was issued to.
    pub client: String,
    /// Issued (or last rotated) at, unix ms.
    pub created_ms: i64,
    /// Last accepted at, unix ms.
    pub last_used_ms: Option<i64>,
    /// Revoked at, unix ms.
    pub revoked_ms: Option<i64>,
}

/// The attribute that must be unique for a resource type, and its key.
fn unique_key(resource_type: &str, resource: &Value) -> (&'static str, Option<String>) {
    if resource_type == "Group" {
        let key = resource
            .get("displayName")
            .and_then(Value::as_str)
            .map(str::to_owned);
        ("displayName", key)
    } else {
        let key = resource
            .get("userName")
            .and_then(Value::as_str)
            .map(str::to_lowercase);
        ("userName", key)
    }
}

fn rfc3339(ms: i64) -> String {
    DateTime::from_timestamp_millis(ms)
        .unwrap_or_default()
        .to_rfc3339_opts(SecondsFormat::Millis, true)
}

/// Sets `id` and `meta` on `resource` (an object; anything else is replaced by one).
fn stamp(
    resource_type: &str,
    id: &str,
    version: i64,
    created_ms: i64,
    modified_ms: i64,
    mut resource: Value,
) -> Value {
    if !resource.is_object() {
        resource = Value::Object(Map::new());
    }
    let object = resource
        .as_object_mut()
        .expect("invariant: resource was just made an object");
    object.insert("id".to_owned(), Value::String(id.to_owned()));
    let mut meta = Map::new();
    meta.insert(
        "resourceType".to_owned(),
        Value::String(resource_type.to_owned()),
    );
    meta.insert("created".to_owned(), Value::String(rfc3339(created_ms)));
    meta.insert(
        "lastModified".to_owned(),
        Value::String(rfc3339(modified_ms)),
    );
    meta.insert(
        "version".to_owned(),
        Value::String(format!("W/\"{version}\"")),
    );
    meta.insert(
        "location".to_owned(),
        Value::String(format!("/scim/v2/{resource_type}s/{id}")),
    );
    object.insert("meta".to_owned(), Value::Object(meta));
    resource
}

fn sha256_hex(secret: &str) -> String {
    Sha256::digest(secret.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

fn new_secret() -> String {
    let mut bytes = [0u8; 32];
    rand::rngs::OsRng.fill_bytes(&mut bytes);
    format!(
        "{SCIM_TOKEN_PREFIX}{}",
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
    )
}

fn is_unique_violation(err: &sqlx::Error) -> bool {
    matches!(err, sqlx::Error::Database(db) if db.is_unique_violation())
}

impl Store {
    fn scim_conflict_or(
        &self,
        op: &'static str,
        resource_type: &str,
        attribute: &'static str,
        err: sqlx::Error,
    ) -> StoreError {
        if is_unique_violation(&err) {
            StoreError::ScimConflict {
                resource_type: resource_type.to_owned(),
                attribute,
            }
        } else {
            self.ctx.query_failed(op, err)
        }
    }

    fn parse_resource(
        &self,
        resource_type: &str,
        id: &str,
        text: &str,
    ) -> Result<Value, StoreError> {
        serde_json::from_str(text).map_err(|_| StoreError::ScimResourceUnreadable {
            resource_type: resource_type.to_owned(),
            id: id.to_owned(),
            location: self.ctx.location.clone(),
        })
    }

    /// Resources from rows of `(id, resource_json)`.
    fn resources_from_rows(
        &self,
        op: &'static str,
        resource_type: &str,
        rows: &[sqlx::any::AnyRow],
    ) -> Result<Vec<Value>, StoreError> {
        rows.iter()
            .map(|row| {
                let fail = |e| self.ctx.query_failed(op, e);
                let id: String = row.try_get(0).map_err(fail)?;
                let text: String = row.try_get(1).map_err(fail)?;
                self.parse_resource(resource_type, &id, &text)
            })
            .collect()
    }

    /// Stores a new resource of `resource_type` (`User` or `Group`), assigning its `id` and
    /// `meta` (version 1). A taken `userName`/`displayName` is [`StoreError::ScimConflict`].
    /// Each registered consumer (see [`Store::scim_register_consumers`]) gets a pending change
    /// in the same transaction (see [`Store::scim_pending_changes`]), naming `client`.
    pub async fn scim_create(
        &self,
        resource_type: &str,
        resource: Value,
        now_ms: i64,
        client: &str,
    ) -> Result<ScimResource, StoreError> {
        let id = uuid::Uuid::new_v4().to_string();
        let resource = stamp(resource_type, &id, 1, now_ms, now_ms, resource);
        let (attribute, key) = unique_key(resource_type, &resource);
        let external_id = resource
            .get("externalId")
            .and_then(Value::as_str)
            .map(str::to_owned);
        let fail = |e| self.scim_conflict_or("create SCIM resource", resource_type, attribute, e);
        let mut tx = self.pool.begin().await.map_err(fail)?;
        sqlx::query(
            "INSERT INTO scim_resources (resource_type, id, unique_key, external_id, version, \
             created_ms, modified_ms, resource_json) VALUES ($1, $2, $3, $4, 1, $5, $6, $7)",
        )
        .bind(resource_type)
        .bind(&id)
        .bind(key)
        .bind(external_id)
        .bind(now_ms)
        .bind(now_ms)
        .bind(resource.to_string())
        .execute(&mut *tx)
        .await
        .map_err(fail)?;
        record_change(&mut tx, client, resource_type, &id, None, now_ms)
            .await
            .map_err(fail)?;
        tx.commit().await.map_err(fail)?;
        Ok(ScimResource {
            id,
            version: 1,
            resource,
        })
    }

    /// The resource of `resource_type` with `id`, if there is one.
    pub async fn scim_get(
        &self,
        resource_type: &str,
        id: &str,
    ) -> Result<Option<ScimResource>, StoreError> {
        let row = sqlx::query(
            "SELECT version, resource_json FROM scim_resources WHERE resource_type = $1 AND id = $2",
        )
        .bind(resource_type)
        .bind(id)
        .fetch_optional(&self.pool)
        .await
        .map_err(|e| self.ctx.query_failed("read SCIM resource", e))?;
        let Some(row) = row else {
            return Ok(None);
        };
        let fail = |e| self.ctx.query_failed("read SCIM resource", e);
        let version: i64 = row.try_get(0).map_err(fail)?;
        let text: String = row.try_get(1).map_err(fail)?;
        Ok(Some(ScimResource {
            id: id.to_owned(),
            version,
            resource: self.parse_resource(resource_type, id, &text)?,
        }))
    }

    /// Every resource of `resource_type`, oldest first.
    pub async fn scim_list(&self, resource_type: &str) -> Result<Vec<Value>, StoreError> {
        let rows = sqlx::query(
            "SELECT id, resource_json FROM scim_resources WHERE resource_type = $1 \
             ORDER BY created_ms, id",
        )
        .bind(resource_type)
        .fetch_all(&self.pool)
        .await
        .map_err(|e| self.ctx.query_failed("list SCIM resources", e))?;
        self.resources_from_rows("list SCIM resources", resource_type, &rows)
    }

    /// The resource whose unique attribute (a User's `userName`, compared case-insensitively;
    /// a Group's `displayName`, exactly) is `value`, through the unique index: the answer to the
    /// filter identity providers send most (`userName eq "..."`) without reading every resource.
    pub async fn scim_find_unique(
        &self,
        resource_type: &str,
        value: &str,
    ) -> Result<Vec<Value>, StoreError> {
        let key = if resource_type == "Group" {
            value.to_owned()
        } else {
            value.to_lowercase()
        };
        let rows = sqlx::query(
            "SELECT id, resource_json FROM scim_resources WHERE resource_type = $1 AND unique_key = $2",
        )
        .bind(resource_type)
        .bind(key)
        .fetch_all(&self.pool)
        .await
        .map_err(|e| self.ctx.query_failed("find SCIM resource", e))?;
        self.resources_from_rows("find SCIM resource", resource_type, &rows)
    }

    /// Replaces the resource `id` with `resource` (whose `id` and `meta` are reassigned), bumping
    /// its version. With `expected_version`, a stored version that differs (or changes under
    /// this write) is [`StoreError::ScimPreconditionFailed`]; an unknown id is
    /// [`StoreError::ScimNotFound`]; a taken unique attribute is [`StoreError::ScimConflict`].
    /// Each registered consumer gets a pending change naming `client`, with the resource as it was, in the same
    /// transaction.
    pub async fn scim_replace(
        &self,
        resource_type: &str,
        id: &str,
        resource: Value,
        expected_version: Option<i64>,
        now_ms: i64,
        client: &str,
    ) -> Result<ScimResource, StoreError> {
        let (attribute, _) = unique_key(resource_type, &resource);
        let fail = |e| self.scim_conflict_or("replace SCIM resource", resource_type, attribute, e);
        let mut tx = self.pool.begin().await.map_err(fail)?;
        lock_resource(&mut tx, resource_type, id)
            .await
            .map_err(fail)?;
        let row = sqlx::query(
            "SELECT version, created_ms, resource_json FROM scim_resources \
             WHERE resource_type = $1 AND id = $2",
        )
        .bind(resource_type)
        .bind(id)
        .fetch_optional(&mut *tx)
        .await
        .map_err(fail)?;
        let Some(row) = row else {
            return Err(StoreError::ScimNotFound {
                resource_type: resource_type.to_owned(),
                id: id.to_owned(),
            });
        };
        let found: i64 = row.try_get(0).map_err(fail)?;
        let created_ms: i64 = row.try_get(1).map_err(fail)?;
        let previous: String = row.try_get(2).map_err(fail)?;
        let precondition = |found| StoreError::ScimPreconditionFailed {
            resource_type: resource_type.to_owned(),
            id: id.to_owned(),
            expected: expected_version.unwrap_or(found),
            found,
        };
        if expected_version.is_some_and(|expected| expected != found) {
            return Err(precondition(found));
        }
        let version = found + 1;
        let resource = stamp(resource_type, id, version, created_ms, now_ms, resource);
        let (_, key) = unique_key(resource_type, &resource);
        let external_id = resource
            .get("externalId")
            .and_then(Value::as_str)
            .map(str::to_owned);
        let updated = sqlx::query(
            "UPDATE scim_resources SET unique_key = $1, external_id = $2, version = $3, \
             modified_ms = $4, resource_json = $5 \
             WHERE resource_type = $6 AND id = $7 AND version = $8",
        )
        .bind(key)
        .bind(external_id)
        .bind(version)
        .bind(now_ms)
        .bind(resource.to_string())
        .bind(resource_type)
        .bind(id)
        .bind(found)
        .execute(&mut *tx)
        .await
        .map_err(fail)?;
        if updated.rows_affected() != 1 {
            return Err(precondition(found + 1));
        }
        record_change(&mut tx, client, resource_type, id, Some(&previous), now_ms)
            .await
            .map_err(fail)?;
        tx.commit().await.map_err(fail)?;
        Ok(ScimResource {
            id: id.to_owned(),
            version,
            resource,
        })
    }

    /// Deletes the resource `id`; an unknown id is [`StoreError::ScimNotFound`]. With
    /// `expected_version`, a different stored version is
    /// [`StoreError::ScimPreconditionFailed`]. Each registered consumer gets a pending change naming `client`, with the
    /// resource as it was, in the same transaction.
    pub async fn scim_delete(
        &self,
        resource_type: &str,
        id: &str,
        expected_version: Option<i64>,
        now_ms: i64,
        client: &str,
    ) -> Result<(), StoreError> {
        let fail = |e| self.ctx.query_failed("delete SCIM resource", e);
        let mut tx = self.pool.begin().await.map_err(fail)?;
        lock_resource(&mut tx, resource_type, id)
            .await
            .map_err(fail)?;
        let row = sqlx::query(
            "SELECT version, resource_json FROM scim_resources WHERE resource_type = $1 AND id = $2",
        )
        .bind(resource_type)
        .bind(id)
        .fetch_optional(&mut *tx)
        .await
        .map_err(fail)?;
        let Some(row) = row else {
            return Err(StoreError::ScimNotFound {
                resource_type: resource_type.to_owned(),
                id: id.to_owned(),
            });
        };
        let found: i64 = row.try_get(0).map_err(fail)?;
        let previous: String = row.try_get(1).map_err(fail)?;
        if let Some(expected) = expected_version.filter(|expected| *expected != found) {
            return Err(StoreError::ScimPreconditionFailed {
                resource_type: resource_type.to_owned(),
                id: id.to_owned(),
                expected,
                found,
            });
        }
        sqlx::query("DELETE FROM scim_resources WHERE resource_type = $1 AND id = $2")
            .bind(resource_type)
            .bind(id)
            .execute(&mut *tx)
            .await
            .map_err(fail)?;
        record_change(&mut tx, client, resource_type, id, Some(&previous), now_ms)
            .await
            .map_err(fail)?;
        tx.commit().await.map_err(fail)?;
        Ok(())
    }

    /// Up to `limit` changes waiting for `consumer`, oldest first. They stay until
    /// [`Store::scim_ack_changes`] removes them: a consumer that crashes before acknowledging
    /// sees them again.
    pub async fn scim_pending_changes(
        &self,
        consumer: &str,
        limit: usize,
    ) -> Result<Vec<ScimChange>, StoreError> {
        let fail = |e| self.ctx.query_failed("read pending SCIM changes", e);
        let rows = sqlx::query(
            "SELECT id, resource_type, resource_id, previous_json, changed_ms, client \
             FROM scim_changes WHERE consumer = $1 ORDER BY id LIMIT $2",
        )
        .bind(consumer)
        .bind(i64::try_from(limit).unwrap_or(i64::MAX))
        .fetch_all(&self.pool)
        .await
        .map_err(fail)?;
        rows.iter()
            .map(|row| {
                let resource_type: String = row.try_get(1).map_err(fail)?;
                let resource_id: String = row.try_get(2).map_err(fail)?;
                let previous: Option<String> = row.try_get(3).map_err(fail)?;
                let previous = previous
                    .map(|text| self.parse_resource(&resource_type, &resource_id, &text))
                    .transpose()?;
                Ok(ScimChange {
                    id: row.try_get(0).map_err(fail)?,
                    resource_type,
                    resource_id,
                    previous,
                    changed_ms: row.try_get(4).map_err(fail)?,
                    client: row.try_get(5).map_err(fail)?,
                })
            })
            .collect()
    }

    /// Removes `consumer`'s changes with these ids (those it has applied).
    pub async fn scim_ack_changes(&self, consumer: &str, ids: &[String]) -> Result<(), StoreError> {
        let fail = |e| self.ctx.query_failed("acknowledge SCIM changes", e);
        let mut tx = self.pool.begin().await.map_err(fail)?;
        for chunk in ids.chunks(100) {
            let marks: Vec<String> = (0..chunk.len()).map(|i| format!("${}", i + 2)).collect();
            let sql = format!(
                "DELETE FROM scim_changes WHERE consumer = $1 AND id IN ({})",
                marks.join(", ")
            );
            let mut query = sqlx::query(&sql).bind(consumer);
            for id in chunk {
                query = query.bind(id);
            }
            query.execute(&mut *tx).await.map_err(fail)?;
        }
        tx.commit().await.map_err(fail)
    }

    /// Registers (or marks as seen at `now_ms`) the consumers a replica serves, so that every
    /// SCIM write from now on leaves a change for each of them.
    pub async fn scim_register_consumers(
        &self,
        consumers: &[String],
        now_ms: i64,
    ) -> Result<(), StoreError> {
        let fail = |e| self.ctx.query_failed("register SCIM consumers", e);
        let mut tx = self.pool.begin().await.map_err(fail)?;
        for name in consumers {
            sqlx::query(
                "INSERT INTO scim_consumers (name, first_seen_ms, last_seen_ms) VALUES ($1, $2, $2) \
                 ON CONFLICT (name) DO UPDATE SET last_seen_ms = $2",
            )
            .bind(name)
            .bind(now_ms)
            .execute(&mut *tx)
            .await
            .map_err(fail)?;
        }
        tx.commit().await.map_err(fail)
    }

    /// Drops the consumers nobody has served since `before_ms`, with their pending changes
    /// (their next holder runs a full sync first, which covers them); returns the names.
    pub async fn scim_retire_consumers(&self, before_ms: i64) -> Result<Vec<String>, StoreError> {
        let fail = |e| self.ctx.query_failed("retire SCIM consumers", e);
        let mut tx = self.pool.begin().await.map_err(fail)?;
        let names: Vec<String> =
            sqlx::query_scalar("SELECT name FROM scim_consumers WHERE last_seen_ms < $1")
                .bind(before_ms)
                .fetch_all(&mut *tx)
                .await
                .map_err(fail)?;
        for name in &names {
            for sql in [
                "DELETE FROM scim_changes WHERE consumer = $1",
                "DELETE FROM scim_consumers WHERE name = $1",
            ] {
                sqlx::query(sql)
                    .bind(name)
                    .execute(&mut *tx)
                    .await
                    .map_err(fail)?;
            }
        }
        tx.commit().await.map_err(fail)?;
        Ok(names)
    }

    /// Pending changes per consumer: how many and since when.
    pub async fn scim_pending_summary(&self) -> Result<Vec<PendingSummary>, StoreError> {
        let fail = |e| self.ctx.query_failed("summarize pending SCIM changes", e);
        let rows = sqlx::query(
            "SELECT consumer, COUNT(*), MIN(changed_ms) FROM scim_changes GROUP BY consumer \
             ORDER BY consumer",
        )
        .fetch_all(&self.pool)
        .await
        .map_err(fail)?;
        rows.iter()
            .map(|r| {
                let count: i64 = r.try_get(1)?;
                Ok(PendingSummary {
                    consumer: r.try_get(0)?,
                    count: u64::try_from(count).unwrap_or(0),
                    oldest_ms: r.try_get(2)?,
                })
            })
            .collect::<Result<_, sqlx::Error>>()
            .map_err(fail)
    }

    /// Issues a token to `client` and returns `(token id, secret)`. The secret is not stored and
    /// cannot be shown again. A client with an active token is refused
    /// ([`StoreError::ScimTokenExists`]); a revoked one is replaced.
    pub async fn create_scim_token(
        &self,
        client: &str,
        now_ms: i64,
    ) -> Result<(String, String), StoreError> {
        let fail = |e| self.ctx.query_failed("create SCIM token", e);
        let mut tx = self.pool.begin().await.map_err(fail)?;
        // Write lock first (see scim_replace).
        sqlx::query("UPDATE scim_tokens SET client = client WHERE client = $1")
            .bind(client)
            .execute(&mut *tx)
            .await
            .map_err(fail)?;
        let existing: Option<Option<i64>> =
            sqlx::query_scalar("SELECT revoked_ms FROM scim_tokens WHERE client = $1")
                .bind(client)
                .fetch_optional(&mut *tx)
                .await
                .map_err(fail)?;
        match existing {
            Some(None) => {
                return Err(StoreError::ScimTokenExists {
                    client: client.to_owned(),
                })
            }
            Some(Some(_)) => {
                sqlx::query("DELETE FROM scim_tokens WHERE client = $1")
                    .bind(client)
                    .execute(&mut *tx)
                    .await
                    .map_err(fail)?;
            }
            None => {}
        }
        let id = uuid::Uuid::now_v7().to_string();
        let secret = new_secret();
        sqlx::query(
            "INSERT INTO scim_tokens (id, client, token_sha256, created_ms) VALUES ($1, $2, $3, $4)",
        )
        .bind(&id)
        .bind(client)
        .bind(sha256_hex(&secret))
        .bind(now_ms)
        .execute(&mut *tx)
        .await
        .map_err(|e| {
            if is_unique_violation(&e) {
                StoreError::ScimTokenExists {
                    client: client.to_owned(),
                }
            } else {
                fail(e)
            }
        })?;
        tx.commit().await.map_err(fail)?;
        Ok((id, secret))
    }

    /// Replaces the active token of `client` with a new one and returns its secret; the old
    /// token stops working at once.
    pub async fn rotate_scim_token(&self, client: &str, now_ms: i64) -> Result<String, StoreError> {
        let secret = new_secret();
        let updated = sqlx::query(
            "UPDATE scim_tokens SET token_sha256 = $1, created_ms = $2, last_used_ms = NULL \
             WHERE client = $3 AND revoked_ms IS NULL",
        )
        .bind(sha256_hex(&secret))
        .bind(now_ms)
        .bind(client)
        .execute(&self.pool)
        .await
        .map_err(|e| self.ctx.query_failed("rotate SCIM token", e))?;
        if updated.rows_affected() == 0 {
            return Err(StoreError::ScimTokenMissing {
                client: client.to_owned(),
            });
        }
        Ok(secret)
    }

    /// Revokes the active token of `client`.
    pub async fn revoke_scim_token(&self, client: &str, now_ms: i64) -> Result<(), StoreError> {
        let updated = sqlx::query(
            "UPDATE scim_tokens SET revoked_ms = $1 WHERE client = $2 AND revoked_ms IS NULL",
        )
        .bind(now_ms)
        .bind(client)
        .execute(&self.pool)
        .await
        .map_err(|e| self.ctx.query_failed("revoke SCIM token", e))?;
        if updated.rows_affected() == 0 {
            return Err(StoreError::ScimTokenMissing {
                client: client.to_owned(),
            });
        }
        Ok(())
    }

    /// Every token, active or revoked, by client; never a secret.
    pub async fn list_scim_tokens(&self) -> Result<Vec<ScimToken>, StoreError> {
        let rows = sqlx::query(
            "SELECT id, client, created_ms, last_used_ms, revoked_ms FROM scim_tokens \
             ORDER BY client",
        )
        .fetch_all(&self.pool)
        .await
        .map_err(|e| self.ctx.query_failed("list SCIM tokens", e))?;
        rows.iter()
            .map(|r| {
                Ok(ScimToken {
                    id: r.try_get("id")?,
                    client: r.try_get("client")?,
                    created_ms: r.try_get("created_ms")?,
                    last_used_ms: r.try_get("last_used_ms")?,
                    revoked_ms: r.try_get("revoked_ms")?,
                })
            })
            .collect::<Result<_, sqlx::Error>>()
            .map_err(|e| self.ctx.query_failed("list SCIM tokens", e))
    }

    /// The client whose active token `secret` is, recording the use; `None` for an unknown or
    /// revoked token.
    pub async fn authenticate_scim_token(
        &self,
        secret: &str,
        now_ms: i64,
    ) -> Result<Option<String>, StoreError> {
        let fail = |e| self.ctx.query_failed("check SCIM token", e);
        let hash = sha256_hex(secret);
        let client: Option<String> = sqlx::query_scalar(
            "SELECT client FROM scim_tokens WHERE token_sha256 = $1 AND revoked_ms IS NULL",
        )
        .bind(&hash)
        .fetch_optional(&self.pool)
        .await
        .map_err(fail)?;
        if client.is_some() {
            sqlx::query("UPDATE scim_tokens SET last_used_ms = $1 WHERE token_sha256 = $2")
                .bind(now_ms)
                .bind(&hash)
                .execute(&self.pool)
                .await
                .map_err(fail)?;
        }
        Ok(client)
    }
}

/// Takes the write lock on one resource first thing in a transaction: a deferred SQLite
/// transaction that reads and then writes fails at once (SQLITE_BUSY) when another connection
/// committed in between, where a leading write waits for the lock instead (a row lock on
/// PostgreSQL).
async fn lock_resource(
    tx: &mut sqlx::Transaction<'_, sqlx::Any>,
    resource_type: &str,
    id: &str,
) -> Result<(), sqlx::Error> {
    sqlx::query("UPDATE scim_resources SET version = version WHERE resource_type = $1 AND id = $2")
        .bind(resource_type)
        .bind(id)
        .execute(&mut **tx)
        .await
        .map(|_| ())
}

/// Records a change for each registered consumer, inside the write's transaction: the
/// consumers are read here, so a write reaches every instance any replica serves, whatever the
/// config of the replica that received it.
async fn record_change(
    tx: &mut sqlx::Transaction<'_, sqlx::Any>,
    client: &str,
    resource_type: &str,
    id: &str,
    previous: Option<&str>,
    now_ms: i64,
) -> Result<(), sqlx::Error> {
    let consumers: Vec<String> =
        sqlx::query_scalar("SELECT name FROM scim_consumers ORDER BY name")
            .fetch_all(&mut **tx)
            .await?;
    for consumer in consumers {
        sqlx::query(
            "INSERT INTO scim_changes (id, consumer, resource_type, resource_id, previous_json, \
             changed_ms, client) VALUES ($1, $2, $3, $4, $5, $6, $7)",
        )
        .bind(uuid::Uuid::now_v7().to_string())
        .bind(consumer)
        .bind(resource_type)
        .bind(id)
        .bind(previous)
        .bind(now_ms)
        .bind(client)
        .execute(&mut **tx)
        .await?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn token_hashes_are_lowercase_sha256_hex() {
        assert_eq!(
            sha256_hex("abc"),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
    }

    #[test]
    fn secrets_are_prefixed_random_and_url_safe() {
        let (a, b) = (new_secret(), new_secret());
        assert_ne!(a, b);
        let body = a.strip_prefix(SCIM_TOKEN_PREFIX).expect("prefix");
        assert_eq!(body.len(), 43);
        assert!(body
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_'));
    }

    #[test]
    fn user_names_are_unique_case_insensitively_and_group_names_exactly() {
        let user = serde_json::json!({"userName": "Ada@Example.com"});
        assert_eq!(
            unique_key("User", &user),
            ("userName", Some("ada@example.com".to_owned()))
        );
        let group = serde_json::json!({"displayName": "Data Eng"});
        assert_eq!(
            unique_key("Group", &group),
            ("displayName", Some("Data Eng".to_owned()))
        );
    }
}
