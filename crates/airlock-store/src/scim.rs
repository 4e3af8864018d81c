//! SCIM resources and SCIM bearer tokens.
//!
//! Resources (`User`, `Group`) are kept whole as SCIM JSON. The store assigns each one its `id`
//! (uuid v4) and its `meta` (`resourceType`, `created`, `lastModified`, `version` as `W/"<n>"`,
//! `location` relative to the server root); every write commits together with the write's
//! audit event (actor `scim:CLIENT`), and writes that arrive together share one transaction,
//! a savepoint each (group commit, [`crate::group_commit`]); a write is acknowledged only
//! once committed. Uniqueness of a User's
//! `userName` and a Group's `displayName` (both case-insensitive) is enforced by a unique
//! index, so two concurrent creates cannot both win. Writes are made under the audit head's
//! lock and applied one after the other ([`Store::scim_update`]), so writes without
//! `If-Match` never fail because another write came first.
//!
//! Tokens are 32 random bytes, base64url, with a recognisable prefix; only their SHA-256 (hex)
//! is stored, so the store can check a token but never show one again. A token may expire, a
//! rotated token's predecessor may keep working for a grace period, and a token may carry the
//! patterns of the groups its client may write; issuing, rotating and revoking are audited.
//!
//! Lists the store answers itself, through indexes: one page of every resource in creation
//! order ([`Store::scim_page`]), and the lookups by `userName`/`displayName` and by
//! `externalId` that identity providers send most.
//!
//! Not here: validating resources against the SCIM schema, filtering in general, sorting and
//! PATCH (the `airlock-scim` core does that), and HTTP.

use base64::Engine as _;
use chrono::{DateTime, SecondsFormat};
use rand::RngCore as _;
use serde_json::{Map, Value};
use sha2::{Digest as _, Sha256};
use sqlx::Row as _;

use airlock_audit::{operation as op, NewEvent, Outcome, Target};

use crate::group_commit::{Batch, LockedRow, RowWrite, Written};
use crate::{Store, StoreError};

/// How often a token's `last_used_ms` is written, at most (ms).
const LAST_USED_RESOLUTION_MS: i64 = 60_000;

/// The most member values one audit event lists as added or removed (the counts are exact).
const MAX_AUDITED_MEMBERS: usize = 100;

/// What a SCIM write was, for its audit event.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ScimWriteKind {
    /// POST.
    Create,
    /// PUT.
    Replace,
    /// PATCH.
    Patch,
    /// DELETE.
    Delete,
}

impl ScimWriteKind {
    /// The audit operation of this write to a resource of `resource_type`.
    pub fn operation(self, resource_type: &str) -> &'static str {
        let group = resource_type == "Group";
        match (self, group) {
            (ScimWriteKind::Create, true) => op::SCIM_GROUP_CREATE,
            (ScimWriteKind::Replace, true) => op::SCIM_GROUP_REPLACE,
            (ScimWriteKind::Patch, true) => op::SCIM_GROUP_PATCH,
            (ScimWriteKind::Delete, true) => op::SCIM_GROUP_DELETE,
            (ScimWriteKind::Create, false) => op::SCIM_USER_CREATE,
            (ScimWriteKind::Replace, false) => op::SCIM_USER_REPLACE,
            (ScimWriteKind::Patch, false) => op::SCIM_USER_PATCH,
            (ScimWriteKind::Delete, false) => op::SCIM_USER_DELETE,
        }
    }
}

/// Why a checked SCIM write ([`Store::scim_update`], [`Store::scim_delete_checked`]) did not
/// happen: the store failed, or the caller's check refused the stored resource.
#[derive(Debug)]
pub enum ScimWriteError<E> {
    /// The store refused or failed (not found, precondition, conflict, unavailable).
    Store(StoreError),
    /// The caller's function refused; nothing was written.
    Rejected(E),
}

impl ScimWriteError<std::convert::Infallible> {
    /// The store's error of a write no check can refuse.
    pub(crate) fn into_store(self) -> StoreError {
        match self {
            ScimWriteError::Store(err) => err,
            ScimWriteError::Rejected(never) => match never {},
        }
    }
}

/// What identifies one write to one resource, owned, so that the write can wait in the group
/// commit's queue.
struct OwnedWrite {
    resource_type: String,
    id: String,
    expected_version: Option<i64>,
    now_ms: i64,
    client: String,
}

impl OwnedWrite {
    fn new(
        resource_type: &str,
        id: &str,
        expected_version: Option<i64>,
        now_ms: i64,
        client: &str,
    ) -> Self {
        OwnedWrite {
            resource_type: resource_type.to_owned(),
            id: id.to_owned(),
            expected_version,
            now_ms,
            client: client.to_owned(),
        }
    }

    fn parts(&self) -> (&str, &str, Option<i64>, i64, &str) {
        (
            &self.resource_type,
            &self.id,
            self.expected_version,
            self.now_ms,
            &self.client,
        )
    }
}

impl<E> From<StoreError> for ScimWriteError<E> {
    fn from(err: StoreError) -> Self {
        ScimWriteError::Store(err)
    }
}

/// The actor audit events name for a SCIM client.
pub fn scim_actor(client: &str) -> String {
    format!("scim:{client}")
}

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
    /// The change's id: its write's uuid v7, `:`, the consumer's name (a consumer's changes
    /// sort by when they were written).
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

/// One page of stored resources ([`Store::scim_page`]).
#[derive(Debug, Clone, PartialEq)]
pub struct ScimPage {
    /// How many resources of the type there are, across pages.
    pub total: usize,
    /// This page's resources, oldest first.
    pub resources: Vec<Value>,
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
    /// Last accepted at, unix ms (written at most once a minute, so up to a minute early).
    pub last_used_ms: Option<i64>,
    /// Revoked at, unix ms.
    pub revoked_ms: Option<i64>,
    /// When it stops working, unix ms (`None`: never).
    pub expires_ms: Option<i64>,
    /// Until when the token it replaced (by rotation) still works, unix ms.
    pub previous_expires_ms: Option<i64>,
    /// The patterns of the groups the client may create or change (`None`: any group).
    pub groups: Option<Vec<String>>,
}

/// How a token is issued.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ScimTokenOptions {
    /// How long it works, ms (`None`: until revoked); rotation renews it for as long again.
    pub lifetime_ms: Option<i64>,
    /// The patterns of the groups the client may create or change (`None`: any group). The
    /// store keeps them as given; `airlock_scim::GroupAllowance` checks and applies them.
    pub groups: Option<Vec<String>>,
}

/// A rotated token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScimRotation {
    /// The new secret, to be shown once.
    pub secret: String,
    /// When the new token expires, unix ms (`None`: never).
    pub expires_ms: Option<i64>,
    /// Until when the old token still works, unix ms (`None`: it stopped at once).
    pub previous_valid_until_ms: Option<i64>,
}

/// The client an accepted token belongs to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScimClient {
    /// The client's name.
    pub name: String,
    /// The patterns of the groups it may create or change (`None`: any group).
    pub groups: Option<Vec<String>>,
}

/// The key a Group's `displayName` is unique by (and found by): its Unicode lowercase.
fn group_key(display_name: &str) -> String {
    display_name.to_lowercase()
}

/// The attribute that must be unique for a resource type, and its key.
fn unique_key(resource_type: &str, resource: &Value) -> (&'static str, Option<String>) {
    if resource_type == "Group" {
        let key = resource
            .get("displayName")
            .and_then(Value::as_str)
            .map(group_key);
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

pub(crate) fn sha256_hex(secret: &str) -> String {
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

pub(crate) fn is_unique_violation(err: &sqlx::Error) -> bool {
    matches!(err, sqlx::Error::Database(db) if db.is_unique_violation())
}

fn at(now_ms: i64) -> chrono::DateTime<chrono::Utc> {
    DateTime::from_timestamp_millis(now_ms).unwrap_or_default()
}

/// What an audit event says about a resource: its name (and a User's `active`, a Group's
/// member count); never a whole resource, never a secret.
fn audit_summary(resource_type: &str, resource: &Value) -> Value {
    let mut out = Map::new();
    if resource_type == "Group" {
        out.insert("displayName".into(), resource["displayName"].clone());
        let members = resource["members"].as_array().map_or(0, Vec::len);
        out.insert("members".into(), members.into());
    } else {
        out.insert("userName".into(), resource["userName"].clone());
        if let Some(active) = resource.get("active") {
            out.insert("active".into(), active.clone());
        }
    }
    Value::Object(out)
}

fn member_values(resource: Option<&Value>) -> std::collections::BTreeSet<&str> {
    resource
        .and_then(|r| r["members"].as_array())
        .map(|members| members.iter().filter_map(|m| m["value"].as_str()).collect())
        .unwrap_or_default()
}

/// The audit event of a SCIM write by `client`: `before`/`after` summaries, and for a Group
/// the member values it gained and lost (at most [`MAX_AUDITED_MEMBERS`] of each listed).
fn write_event(
    kind: ScimWriteKind,
    resource_type: &str,
    id: &str,
    client: &str,
    now_ms: i64,
    before: Option<&Value>,
    after: Option<&Value>,
) -> NewEvent {
    let mut event = NewEvent::new(
        at(now_ms),
        scim_actor(client),
        kind.operation(resource_type),
        Outcome::Succeeded,
    );
    event.target = Some(Target::ScimResource {
        resource_type: resource_type.to_owned(),
        id: id.to_owned(),
    });
    event.before = before.map(|b| audit_summary(resource_type, b));
    event.after = after.map(|a| audit_summary(resource_type, a));
    if resource_type == "Group" {
        let (old, new) = (member_values(before), member_values(after));
        let listed = |values: Vec<&str>| {
            let count = values.len();
            let shown: Vec<Value> = values
                .into_iter()
                .take(MAX_AUDITED_MEMBERS)
                .map(Value::from)
                .collect();
            (count, shown)
        };
        let (added, added_list) = listed(new.difference(&old).copied().collect());
        let (removed, removed_list) = listed(old.difference(&new).copied().collect());
        if let Some(Value::Object(after)) = event.after.as_mut().or(event.before.as_mut()) {
            after.insert("members_added".into(), added.into());
            after.insert("members_removed".into(), removed.into());
            if added > 0 {
                after.insert("added".into(), Value::Array(added_list));
            }
            if removed > 0 {
                after.insert("removed".into(), Value::Array(removed_list));
            }
        }
    }
    event
}

/// A resource read under the batch's lock.
struct Locked {
    stored: ScimResource,
    created_ms: i64,
    /// The stored text, the copy a pending change keeps.
    text: String,
    /// The stored unique key.
    key: Option<String>,
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
        let (resource_type, client) = (resource_type.to_owned(), client.to_owned());
        self.in_group_commit(None, move |store, batch| {
            Box::pin(async move {
                (store
                    .create_in(batch, &resource_type, resource, now_ms, &client)
                    .await)
                    .map_err(ScimWriteError::Store)
            })
        })
        .await
        .map_err(ScimWriteError::into_store)
    }

    async fn create_in(
        &self,
        batch: &mut Batch<'_>,
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
        let insert = sqlx::query(
            "INSERT INTO scim_resources (resource_type, id, unique_key, external_id, version, \
             created_ms, modified_ms, resource_json) VALUES ($1, $2, $3, $4, 1, $5, $6, $7)",
        )
        .bind(resource_type)
        .bind(id.clone())
        .bind(key)
        .bind(external_id)
        .bind(now_ms)
        .bind(now_ms)
        .bind(resource.to_string());
        batch.execute_guarded(insert).await.map_err(fail)?;
        let event = write_event(
            ScimWriteKind::Create,
            resource_type,
            &id,
            client,
            now_ms,
            None,
            Some(&resource),
        );
        batch.record(
            Written::new(resource_type, &id, None, now_ms, client),
            event,
        );
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

    /// One page of every resource of `resource_type`, in the order of [`Store::scim_list`]
    /// (oldest first): at most `limit` resources from the 0-based `offset`, with the number of
    /// resources there are. The page is read through an index, so paging through every
    /// resource reads each one once; `limit` 0 only counts.
    pub async fn scim_page(
        &self,
        resource_type: &str,
        offset: usize,
        limit: usize,
    ) -> Result<ScimPage, StoreError> {
        const OP: &str = "page SCIM resources";
        let fail = |e| self.ctx.query_failed(OP, e);
        let total: i64 =
            sqlx::query_scalar("SELECT COUNT(*) FROM scim_resources WHERE resource_type = $1")
                .bind(resource_type)
                .fetch_one(&self.pool)
                .await
                .map_err(fail)?;
        let total = usize::try_from(total).unwrap_or(0);
        if limit == 0 || offset >= total {
            return Ok(ScimPage {
                total,
                resources: Vec::new(),
            });
        }
        let rows = sqlx::query(
            "SELECT id, resource_json FROM scim_resources WHERE resource_type = $1 \
             ORDER BY created_ms, id LIMIT $2 OFFSET $3",
        )
        .bind(resource_type)
        .bind(i64::try_from(limit).unwrap_or(i64::MAX))
        .bind(i64::try_from(offset).unwrap_or(i64::MAX))
        .fetch_all(&self.pool)
        .await
        .map_err(fail)?;
        Ok(ScimPage {
            total,
            resources: self.resources_from_rows(OP, resource_type, &rows)?,
        })
    }

    /// The resources of `resource_type` whose `externalId` is exactly `value` (externalId is
    /// case-exact), through its index: the answer to `externalId eq "..."`.
    pub async fn scim_find_external_id(
        &self,
        resource_type: &str,
        value: &str,
    ) -> Result<Vec<Value>, StoreError> {
        const OP: &str = "find SCIM resource";
        let rows = sqlx::query(
            "SELECT id, resource_json FROM scim_resources WHERE resource_type = $1 \
             AND external_id = $2 ORDER BY created_ms, id",
        )
        .bind(resource_type)
        .bind(value)
        .fetch_all(&self.pool)
        .await
        .map_err(|e| self.ctx.query_failed(OP, e))?;
        self.resources_from_rows(OP, resource_type, &rows)
    }

    /// The resource whose unique attribute (a User's `userName` or a Group's `displayName`,
    /// compared case-insensitively) is `value`, through the unique index: the answer to the
    /// filters identity providers send most (`userName eq "..."`, `displayName eq "..."`)
    /// without reading every resource.
    pub async fn scim_find_unique(
        &self,
        resource_type: &str,
        value: &str,
    ) -> Result<Vec<Value>, StoreError> {
        let key = if resource_type == "Group" {
            group_key(value)
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
    /// its version: [`Store::scim_update`] with a function that ignores the stored resource,
    /// audited as a replace.
    pub async fn scim_replace(
        &self,
        resource_type: &str,
        id: &str,
        resource: Value,
        expected_version: Option<i64>,
        now_ms: i64,
        client: &str,
    ) -> Result<ScimResource, StoreError> {
        self.scim_update(
            resource_type,
            id,
            expected_version,
            ScimWriteKind::Replace,
            now_ms,
            client,
            |_| Ok::<_, std::convert::Infallible>(resource),
        )
        .await
        .map_err(|err| match err {
            ScimWriteError::Store(err) => err,
            ScimWriteError::Rejected(never) => match never {},
        })
    }

    /// Writes the resource `id` as `change` makes it from the stored one, bumping its version,
    /// in a group commit, which holds the audit head's lock: concurrent writes to one
    /// resource are applied one after the other, each to the result of the one before, so
    /// none is lost and none fails because another came first. `change` runs under the lock
    /// (keep it quick and pure); its error is [`ScimWriteError::Rejected`] and writes nothing.
    ///
    /// With `expected_version` (a client's `If-Match`), a different stored version is
    /// [`StoreError::ScimPreconditionFailed`]; an unknown id is [`StoreError::ScimNotFound`];
    /// a taken unique attribute is [`StoreError::ScimConflict`]. Each registered consumer gets
    /// a pending change naming `client`, with the resource as it was, and the audit chain the
    /// write's event, in the same transaction.
    #[allow(clippy::too_many_arguments)]
    pub async fn scim_update<E>(
        &self,
        resource_type: &str,
        id: &str,
        expected_version: Option<i64>,
        kind: ScimWriteKind,
        now_ms: i64,
        client: &str,
        change: impl FnOnce(&ScimResource) -> Result<Value, E> + Send + 'static,
    ) -> Result<ScimResource, ScimWriteError<E>>
    where
        E: Send + 'static,
    {
        let write = OwnedWrite::new(resource_type, id, expected_version, now_ms, client);
        let reads = Some((resource_type.to_owned(), id.to_owned()));
        self.in_group_commit(reads, move |store, batch| {
            Box::pin(async move { store.update_in(batch, &write, kind, change).await })
        })
        .await
    }

    async fn update_in<E>(
        &self,
        batch: &mut Batch<'_>,
        write: &OwnedWrite,
        kind: ScimWriteKind,
        change: impl FnOnce(&ScimResource) -> Result<Value, E>,
    ) -> Result<ScimResource, ScimWriteError<E>> {
        let (resource_type, id, _, now_ms, client) = write.parts();
        let Locked {
            stored,
            created_ms,
            text: previous,
            key: old_key,
        } = self.read_for_write(batch, write).await?;
        let found = stored.version;
        let resource = change(&stored).map_err(ScimWriteError::Rejected)?;
        let version = found + 1;
        let resource = stamp(resource_type, id, version, created_ms, now_ms, resource);
        let (_, key) = unique_key(resource_type, &resource);
        let external_id = resource
            .get("externalId")
            .and_then(Value::as_str)
            .map(str::to_owned);
        let write = RowWrite {
            unique_key: key,
            external_id,
            version,
            modified_ms: now_ms,
            text: resource.to_string(),
        };
        // Only a new unique key can be taken already: such an update runs now, where its
        // conflict is this job's alone; any other waits for the end of the batch.
        let deferred = if write.unique_key == old_key {
            Some(write)
        } else {
            self.update_now(batch, resource_type, id, found, created_ms, write)
                .await?;
            None
        };
        let event = write_event(
            kind,
            resource_type,
            id,
            client,
            now_ms,
            Some(&stored.resource),
            Some(&resource),
        );
        if let Some(write) = deferred {
            batch.defer_update(resource_type, id, found, created_ms, write);
        }
        let written = Written::new(resource_type, id, Some(previous), now_ms, client);
        batch.record(written, event);
        Ok(ScimResource {
            id: id.to_owned(),
            version,
            resource,
        })
    }

    /// Writes `write` over the row of `id` (seen by the batch at version `seen`) at once, in a
    /// savepoint where its failure must not spoil the batch.
    async fn update_now<E>(
        &self,
        batch: &mut Batch<'_>,
        resource_type: &str,
        id: &str,
        seen: i64,
        created_ms: i64,
        write: RowWrite,
    ) -> Result<(), ScimWriteError<E>> {
        let attribute = if resource_type == "Group" {
            "displayName"
        } else {
            "userName"
        };
        let fail = |e| self.scim_conflict_or("update SCIM resource", resource_type, attribute, e);
        let stored_version = batch.stored_version(resource_type, id, seen);
        let update = sqlx::query(
            "UPDATE scim_resources SET unique_key = $1, external_id = $2, version = $3, \
             modified_ms = $4, resource_json = $5 \
             WHERE resource_type = $6 AND id = $7 AND version = $8",
        )
        .bind(write.unique_key.clone())
        .bind(write.external_id.clone())
        .bind(write.version)
        .bind(write.modified_ms)
        .bind(write.text.clone())
        .bind(resource_type.to_owned())
        .bind(id.to_owned())
        .bind(stored_version);
        let updated = batch.execute_guarded(update).await.map_err(fail)?;
        if updated.rows_affected() != 1 {
            // Cannot happen under the lock; refuse rather than write over a change.
            return Err(StoreError::ScimPreconditionFailed {
                resource_type: resource_type.to_owned(),
                id: id.to_owned(),
                expected: seen,
                found: seen + 1,
            }
            .into());
        }
        let row = LockedRow {
            version: write.version,
            created_ms,
            text: write.text,
            unique_key: write.unique_key,
        };
        batch.wrote_now(resource_type, id, Some(row));
        Ok(())
    }

    /// The resource `write` names, under its lock: [`StoreError::ScimNotFound`] when there is
    /// none, [`StoreError::ScimPreconditionFailed`] when it is not at the version the write
    /// expects (a client's `If-Match`).
    async fn read_for_write(
        &self,
        batch: &mut Batch<'_>,
        write: &OwnedWrite,
    ) -> Result<Locked, StoreError> {
        let (resource_type, id, expected_version, _, _) = write.parts();
        let locked = self
            .read_locked(batch, resource_type, id)
            .await?
            .ok_or_else(|| StoreError::ScimNotFound {
                resource_type: resource_type.to_owned(),
                id: id.to_owned(),
            })?;
        let found = locked.stored.version;
        if let Some(expected) = expected_version.filter(|expected| *expected != found) {
            return Err(StoreError::ScimPreconditionFailed {
                resource_type: resource_type.to_owned(),
                id: id.to_owned(),
                expected,
                found,
            });
        }
        Ok(locked)
    }

    /// The resource `id` inside a batch that holds its lock, as the batch sees it (read
    /// before its first job, and as its writes left it) or from the database.
    async fn read_locked(
        &self,
        batch: &mut Batch<'_>,
        resource_type: &str,
        id: &str,
    ) -> Result<Option<Locked>, StoreError> {
        let row = match batch.row(resource_type, id) {
            Some(row) => row,
            None => self.read_row(&mut batch.tx, resource_type, id).await?,
        };
        let Some(LockedRow {
            version,
            created_ms,
            text,
            unique_key,
        }) = row
        else {
            return Ok(None);
        };
        let resource = self.parse_resource(resource_type, id, &text)?;
        Ok(Some(Locked {
            stored: ScimResource {
                id: id.to_owned(),
                version,
                resource,
            },
            created_ms,
            text,
            key: unique_key,
        }))
    }

    /// The row of `id`, in a batch (which holds the head's lock).
    async fn read_row(
        &self,
        tx: &mut sqlx::Transaction<'_, sqlx::Any>,
        resource_type: &str,
        id: &str,
    ) -> Result<Option<LockedRow>, StoreError> {
        let fail = |e| self.ctx.query_failed("read SCIM resource", e);
        // No lock of its own: the batch holds the audit head's lock, which every write of a
        // SCIM resource takes first (see `Store::head_and_rows`).
        let sql = "SELECT version, created_ms, resource_json, unique_key FROM scim_resources \
                   WHERE resource_type = $1 AND id = $2";
        let row = sqlx::query(sql)
            .bind(resource_type)
            .bind(id)
            .fetch_optional(&mut **tx)
            .await
            .map_err(fail)?;
        row.map(|row| {
            Ok(LockedRow {
                version: row.try_get(0).map_err(fail)?,
                created_ms: row.try_get(1).map_err(fail)?,
                text: row.try_get(2).map_err(fail)?,
                unique_key: row.try_get(3).map_err(fail)?,
            })
        })
        .transpose()
    }

    /// Deletes the resource `id`; an unknown id is [`StoreError::ScimNotFound`]. With
    /// `expected_version`, a different stored version is
    /// [`StoreError::ScimPreconditionFailed`]. Each registered consumer gets a pending change
    /// naming `client`, with the resource as it was, and the audit chain the deletion, in the
    /// same transaction.
    pub async fn scim_delete(
        &self,
        resource_type: &str,
        id: &str,
        expected_version: Option<i64>,
        now_ms: i64,
        client: &str,
    ) -> Result<(), StoreError> {
        self.scim_delete_checked(resource_type, id, expected_version, now_ms, client, |_| {
            Ok::<_, std::convert::Infallible>(())
        })
        .await
        .map_err(|err| match err {
            ScimWriteError::Store(err) => err,
            ScimWriteError::Rejected(never) => match never {},
        })
    }

    /// [`Store::scim_delete`] after `check` accepted the stored resource (read under the
    /// resource's lock); its error is [`ScimWriteError::Rejected`] and deletes nothing.
    pub async fn scim_delete_checked<E>(
        &self,
        resource_type: &str,
        id: &str,
        expected_version: Option<i64>,
        now_ms: i64,
        client: &str,
        check: impl FnOnce(&ScimResource) -> Result<(), E> + Send + 'static,
    ) -> Result<(), ScimWriteError<E>>
    where
        E: Send + 'static,
    {
        let write = OwnedWrite::new(resource_type, id, expected_version, now_ms, client);
        let reads = Some((resource_type.to_owned(), id.to_owned()));
        self.in_group_commit(reads, move |store, batch| {
            Box::pin(async move { store.delete_in(batch, &write, check).await })
        })
        .await
    }

    async fn delete_in<E>(
        &self,
        batch: &mut Batch<'_>,
        write: &OwnedWrite,
        check: impl FnOnce(&ScimResource) -> Result<(), E>,
    ) -> Result<(), ScimWriteError<E>> {
        let (resource_type, id, _, now_ms, client) = write.parts();
        let fail = |e| self.ctx.query_failed("delete SCIM resource", e);
        let Locked {
            stored,
            text: previous,
            ..
        } = self.read_for_write(batch, write).await?;
        check(&stored).map_err(ScimWriteError::Rejected)?;
        sqlx::query("DELETE FROM scim_resources WHERE resource_type = $1 AND id = $2")
            .bind(resource_type)
            .bind(id)
            .execute(&mut *batch.tx)
            .await
            .map_err(fail)?;
        batch.wrote_now(resource_type, id, None);
        let event = write_event(
            ScimWriteKind::Delete,
            resource_type,
            id,
            client,
            now_ms,
            Some(&stored.resource),
            None,
        );
        let written = Written::new(resource_type, id, Some(previous), now_ms, client);
        batch.record(written, event);
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

    /// Issues a token to `client` that never expires and may write any group, audited with
    /// the actor `operator`; see [`Store::issue_scim_token`].
    pub async fn create_scim_token(
        &self,
        client: &str,
        now_ms: i64,
    ) -> Result<(String, String), StoreError> {
        self.issue_scim_token(client, &ScimTokenOptions::default(), "operator", now_ms)
            .await
    }

    /// Issues a token to `client` and returns `(token id, secret)`. The secret is not stored and
    /// cannot be shown again. A client with a token that is not revoked is refused
    /// ([`StoreError::ScimTokenExists`]); a revoked one is replaced. The issue is audited
    /// (`scim_token.create`, by `actor`) in the same transaction.
    pub async fn issue_scim_token(
        &self,
        client: &str,
        options: &ScimTokenOptions,
        actor: &str,
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
        let expires_ms = options.lifetime_ms.map(|l| now_ms.saturating_add(l));
        let groups_json = options
            .groups
            .as_ref()
            .map(|g| Value::from(g.clone()).to_string());
        sqlx::query(
            "INSERT INTO scim_tokens (id, client, token_sha256, created_ms, expires_ms, \
             lifetime_ms, groups_json) VALUES ($1, $2, $3, $4, $5, $6, $7)",
        )
        .bind(&id)
        .bind(client)
        .bind(sha256_hex(&secret))
        .bind(now_ms)
        .bind(expires_ms)
        .bind(options.lifetime_ms)
        .bind(groups_json)
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
        let mut event = token_event(op::SCIM_TOKEN_CREATE, client, actor, now_ms);
        event.after = Some(serde_json::json!({
            "expires_ms": expires_ms,
            "groups": options.groups,
        }));
        self.append_audit_in(&mut tx, vec![event]).await?;
        tx.commit().await.map_err(fail)?;
        self.tokens.forget_all();
        Ok((id, secret))
    }

    /// Replaces the token of `client` with a new one and returns its secret; the old token
    /// stops working at once. See [`Store::rotate_scim_token_with`].
    pub async fn rotate_scim_token(&self, client: &str, now_ms: i64) -> Result<String, StoreError> {
        self.rotate_scim_token_with(client, 0, None, "operator", now_ms)
            .await
            .map(|rotation| rotation.secret)
    }

    /// Replaces the token of `client` (not revoked; it may have expired) with a new one. The
    /// old token keeps working for `grace_ms` more (never past its own expiry; 0: it stops at
    /// once), so the identity provider can be switched over; a token rotated before is
    /// forgotten. The new token lives for `lifetime_ms`, or as long as the client's tokens
    /// were issued for. Audited (`scim_token.rotate`, by `actor`) in the same transaction.
    pub async fn rotate_scim_token_with(
        &self,
        client: &str,
        grace_ms: i64,
        lifetime_ms: Option<i64>,
        actor: &str,
        now_ms: i64,
    ) -> Result<ScimRotation, StoreError> {
        let fail = |e| self.ctx.query_failed("rotate SCIM token", e);
        let mut tx = self.pool.begin().await.map_err(fail)?;
        sqlx::query("UPDATE scim_tokens SET client = client WHERE client = $1")
            .bind(client)
            .execute(&mut *tx)
            .await
            .map_err(fail)?;
        let row = sqlx::query(
            "SELECT token_sha256, expires_ms, lifetime_ms FROM scim_tokens \
             WHERE client = $1 AND revoked_ms IS NULL",
        )
        .bind(client)
        .fetch_optional(&mut *tx)
        .await
        .map_err(fail)?;
        let Some(row) = row else {
            return Err(StoreError::ScimTokenMissing {
                client: client.to_owned(),
            });
        };
        let old_hash: String = row.try_get(0).map_err(fail)?;
        let old_expires: Option<i64> = row.try_get(1).map_err(fail)?;
        let old_lifetime: Option<i64> = row.try_get(2).map_err(fail)?;
        let lifetime_ms = lifetime_ms.or(old_lifetime);
        let expires_ms = lifetime_ms.map(|l| now_ms.saturating_add(l));
        let grace_until = now_ms.saturating_add(grace_ms.max(0));
        let previous_until = (grace_ms > 0)
            .then(|| old_expires.map_or(grace_until, |e| e.min(grace_until)))
            .filter(|until| *until > now_ms);
        let secret = new_secret();
        sqlx::query(
            "UPDATE scim_tokens SET token_sha256 = $1, created_ms = $2, last_used_ms = NULL, \
             expires_ms = $3, lifetime_ms = $4, previous_sha256 = $5, previous_expires_ms = $6 \
             WHERE client = $7",
        )
        .bind(sha256_hex(&secret))
        .bind(now_ms)
        .bind(expires_ms)
        .bind(lifetime_ms)
        .bind(previous_until.map(|_| old_hash))
        .bind(previous_until)
        .bind(client)
        .execute(&mut *tx)
        .await
        .map_err(fail)?;
        let mut event = token_event(op::SCIM_TOKEN_ROTATE, client, actor, now_ms);
        event.after = Some(serde_json::json!({
            "expires_ms": expires_ms,
            "previous_valid_until_ms": previous_until,
        }));
        self.append_audit_in(&mut tx, vec![event]).await?;
        tx.commit().await.map_err(fail)?;
        self.tokens.forget_all();
        Ok(ScimRotation {
            secret,
            expires_ms,
            previous_valid_until_ms: previous_until,
        })
    }

    /// Revokes the token of `client` (and a rotated one still in its grace), audited with the
    /// actor `operator`; see [`Store::revoke_scim_token_by`].
    pub async fn revoke_scim_token(&self, client: &str, now_ms: i64) -> Result<(), StoreError> {
        self.revoke_scim_token_by(client, "operator", now_ms).await
    }

    /// Revokes the token of `client`, and with it a rotated one still in its grace: the
    /// client's requests are refused from now on. Audited (`scim_token.revoke`, by `actor`) in
    /// the same transaction.
    pub async fn revoke_scim_token_by(
        &self,
        client: &str,
        actor: &str,
        now_ms: i64,
    ) -> Result<(), StoreError> {
        let fail = |e| self.ctx.query_failed("revoke SCIM token", e);
        let mut tx = self.pool.begin().await.map_err(fail)?;
        let updated = sqlx::query(
            "UPDATE scim_tokens SET revoked_ms = $1, previous_sha256 = NULL, \
             previous_expires_ms = NULL WHERE client = $2 AND revoked_ms IS NULL",
        )
        .bind(now_ms)
        .bind(client)
        .execute(&mut *tx)
        .await
        .map_err(fail)?;
        if updated.rows_affected() == 0 {
            return Err(StoreError::ScimTokenMissing {
                client: client.to_owned(),
            });
        }
        let event = token_event(op::SCIM_TOKEN_REVOKE, client, actor, now_ms);
        self.append_audit_in(&mut tx, vec![event]).await?;
        tx.commit().await.map_err(fail)?;
        self.tokens.forget_all();
        Ok(())
    }

    /// Every token, active or revoked, by client; never a secret.
    pub async fn list_scim_tokens(&self) -> Result<Vec<ScimToken>, StoreError> {
        let fail = |e| self.ctx.query_failed("list SCIM tokens", e);
        let rows = sqlx::query(
            "SELECT id, client, created_ms, last_used_ms, revoked_ms, expires_ms, \
             previous_expires_ms, groups_json FROM scim_tokens ORDER BY client",
        )
        .fetch_all(&self.pool)
        .await
        .map_err(fail)?;
        rows.iter()
            .map(|r| {
                let groups: Option<String> = r.try_get("groups_json").map_err(fail)?;
                let client: String = r.try_get("client").map_err(fail)?;
                Ok(ScimToken {
                    id: r.try_get("id").map_err(fail)?,
                    groups: self.token_groups(&client, groups.as_deref())?,
                    client,
                    created_ms: r.try_get("created_ms").map_err(fail)?,
                    last_used_ms: r.try_get("last_used_ms").map_err(fail)?,
                    revoked_ms: r.try_get("revoked_ms").map_err(fail)?,
                    expires_ms: r.try_get("expires_ms").map_err(fail)?,
                    previous_expires_ms: r.try_get("previous_expires_ms").map_err(fail)?,
                })
            })
            .collect()
    }

    fn token_groups(
        &self,
        client: &str,
        text: Option<&str>,
    ) -> Result<Option<Vec<String>>, StoreError> {
        text.map(|text| {
            serde_json::from_str(text).map_err(|_| StoreError::ScimTokenUnreadable {
                client: client.to_owned(),
                location: self.ctx.location.clone(),
            })
        })
        .transpose()
    }

    /// The client whose token `secret` is, recording the use; `None` for an unknown,
    /// revoked or expired token, or a rotated one past its grace.
    pub async fn authenticate_scim_token(
        &self,
        secret: &str,
        now_ms: i64,
    ) -> Result<Option<String>, StoreError> {
        Ok(self
            .authenticate_scim_client(secret, now_ms)
            .await?
            .map(|client| client.name))
    }

    /// [`Store::authenticate_scim_token`] with the client's group allowance.
    pub async fn authenticate_scim_client(
        &self,
        secret: &str,
        now_ms: i64,
    ) -> Result<Option<ScimClient>, StoreError> {
        let fail = |e| self.ctx.query_failed("check SCIM token", e);
        let hash = sha256_hex(secret);
        if let Some(client) = self.tokens.get(&hash, now_ms) {
            return Ok(Some(client));
        }
        let row = sqlx::query(
            "SELECT client, groups_json, last_used_ms, \
             CASE WHEN token_sha256 = $1 THEN expires_ms ELSE previous_expires_ms END \
             FROM scim_tokens WHERE revoked_ms IS NULL \
             AND ((token_sha256 = $1 AND (expires_ms IS NULL OR expires_ms > $2)) \
             OR (previous_sha256 = $1 AND previous_expires_ms > $2))",
        )
        .bind(&hash)
        .bind(now_ms)
        .fetch_optional(&self.pool)
        .await
        .map_err(fail)?;
        let Some(row) = row else {
            return Ok(None);
        };
        let name: String = row.try_get(0).map_err(fail)?;
        let groups: Option<String> = row.try_get(1).map_err(fail)?;
        let last_used: Option<i64> = row.try_get(2).map_err(fail)?;
        let expires_ms: Option<i64> = row.try_get(3).map_err(fail)?;
        let groups = self.token_groups(&name, groups.as_deref())?;
        // `last_used_ms` says when a token was last used to the nearest minute: writing it on
        // every request would make every read a write (and on SQLite, a turn at the one
        // writer's lock and a flush to disk).
        if last_used.is_none_or(|at| now_ms.saturating_sub(at) >= LAST_USED_RESOLUTION_MS) {
            sqlx::query("UPDATE scim_tokens SET last_used_ms = $1 WHERE client = $2")
                .bind(now_ms)
                .bind(&name)
                .execute(&self.pool)
                .await
                .map_err(fail)?;
        }
        let client = ScimClient { name, groups };
        // Remembered until it expires, and never past the time its last use is due to be
        // written again.
        let last_written = match last_used {
            Some(at) if now_ms.saturating_sub(at) < LAST_USED_RESOLUTION_MS => at,
            _ => now_ms,
        };
        let until = last_written
            .saturating_add(LAST_USED_RESOLUTION_MS)
            .min(expires_ms.unwrap_or(i64::MAX));
        self.tokens.put(hash, client.clone(), now_ms, Some(until));
        Ok(Some(client))
    }

    /// Removes `password` (top-level, any spelling) from every stored User and every outbox
    /// copy of one: airlock never stores one any more, but a store written by an older airlock
    /// may hold some. The resource's version is not bumped (what clients can read is
    /// unchanged: a password was never returned). Returns how many rows were cleaned.
    pub(crate) async fn scrub_scim_passwords(&self) -> Result<u64, StoreError> {
        const OP: &str = "remove stored SCIM passwords";
        let fail = |e| self.ctx.query_failed(OP, e);
        let mut cleaned = 0;
        for (select, update) in [
            (
                "SELECT id, resource_json FROM scim_resources WHERE resource_type = 'User' \
                 AND LOWER(resource_json) LIKE '%password%'",
                "UPDATE scim_resources SET resource_json = $1 \
                 WHERE resource_type = 'User' AND id = $2 AND resource_json = $3",
            ),
            (
                "SELECT id, previous_json FROM scim_changes WHERE resource_type = 'User' \
                 AND LOWER(previous_json) LIKE '%password%'",
                "UPDATE scim_changes SET previous_json = $1 WHERE id = $2 AND previous_json = $3",
            ),
        ] {
            let rows = sqlx::query(select)
                .fetch_all(&self.pool)
                .await
                .map_err(fail)?;
            for row in rows {
                let id: String = row.try_get(0).map_err(fail)?;
                let text: String = row.try_get(1).map_err(fail)?;
                let Ok(Value::Object(mut resource)) = serde_json::from_str::<Value>(&text) else {
                    continue;
                };
                let before = resource.len();
                resource.retain(|key, _| !key.eq_ignore_ascii_case("password"));
                if resource.len() == before {
                    continue;
                }
                // Only over the text it read: a write since then (another replica's) stands.
                cleaned += sqlx::query(update)
                    .bind(Value::Object(resource).to_string())
                    .bind(&id)
                    .bind(&text)
                    .execute(&self.pool)
                    .await
                    .map_err(fail)?
                    .rows_affected();
            }
        }
        Ok(cleaned)
    }

    /// Sets the unique key of every Group that has none (migration 8 cleared them, to fold
    /// them case-insensitively), oldest first. A group whose key an older group holds keeps
    /// none and is returned (`(id, displayName)`), so that opening the store can say so.
    pub(crate) async fn rekey_scim_groups(&self) -> Result<Vec<(String, String)>, StoreError> {
        const OP: &str = "rekey SCIM groups";
        let fail = |e| self.ctx.query_failed(OP, e);
        let rows = sqlx::query(
            "SELECT id, resource_json FROM scim_resources \
             WHERE resource_type = 'Group' AND unique_key IS NULL ORDER BY created_ms, id",
        )
        .fetch_all(&self.pool)
        .await
        .map_err(fail)?;
        let mut duplicates = Vec::new();
        for (id, group) in self
            .resources_from_rows(OP, "Group", &rows)?
            .into_iter()
            .map(|g| (g["id"].as_str().unwrap_or_default().to_owned(), g))
        {
            let Some(name) = group["displayName"].as_str() else {
                continue;
            };
            let set = sqlx::query(
                "UPDATE scim_resources SET unique_key = $1 \
                 WHERE resource_type = 'Group' AND id = $2 AND unique_key IS NULL",
            )
            .bind(group_key(name))
            .bind(&id)
            .execute(&self.pool)
            .await;
            match set {
                Ok(_) => {}
                Err(e) if is_unique_violation(&e) => duplicates.push((id, name.to_owned())),
                Err(e) => return Err(fail(e)),
            }
        }
        Ok(duplicates)
    }
}

fn token_event(operation: &str, client: &str, actor: &str, now_ms: i64) -> NewEvent {
    let mut event = NewEvent::new(at(now_ms), actor, operation, Outcome::Succeeded);
    event.target = Some(Target::ScimClient {
        client: client.to_owned(),
    });
    event
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
    fn user_names_and_group_names_are_unique_case_insensitively() {
        let user = serde_json::json!({"userName": "Ada@Example.com"});
        assert_eq!(
            unique_key("User", &user),
            ("userName", Some("ada@example.com".to_owned()))
        );
        let group = serde_json::json!({"displayName": "Data Eng"});
        assert_eq!(
            unique_key("Group", &group),
            ("displayName", Some("data eng".to_owned()))
        );
    }
}
