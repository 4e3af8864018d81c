//! Just-in-time access requests: stored, changed one at a time under a lock together with the
//! audit event that records the change, listed, and found when something about them is due.
//!
//! The store does not know what a request means: its body is the caller's JSON
//! (`airlock_core::access::AccessRequest`), and every change is the caller's function of the
//! stored request ([`Store::change_access_request`]), run under the audit head's lock (taken
//! first, as every audited write does) so that two approvals racing for one request are applied
//! one after the other, the second seeing the first.

use crate::{Store, StoreError};
use airlock_audit::NewEvent;
use sqlx::Row as _;

/// A request as the store keeps it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredRequest {
    /// Id (uuid v7: ids sort by creation time).
    pub id: String,
    /// The directory id of who asked.
    pub requester: String,
    /// `pending`, `approved`, `denied`, `cancelled`, `lapsed`, `revoked` or `expired`.
    pub state: String,
    /// Created, unix ms.
    pub created_ms: i64,
    /// Last changed, unix ms.
    pub updated_ms: i64,
    /// When it is next due (lapses or expires), unix ms; `None` when nothing is.
    pub deadline_ms: Option<i64>,
    /// Grows with every change.
    pub version: i64,
    /// The request, as the caller's JSON.
    pub body_json: String,
}

/// How [`Store::insert_access_request`] ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Inserted {
    /// Stored, with its audit event.
    New(StoredRequest),
    /// The requester had already used the idempotency key, for the same body: the request
    /// stored then, and nothing new.
    Replayed(StoredRequest),
}

/// Why a change of a request did not happen; nothing was written.
#[derive(Debug)]
pub enum ChangeError<E> {
    /// No request has the id.
    NotFound,
    /// The store failed.
    Store(StoreError),
    /// The caller's function refused.
    Refused(E),
}

impl<E> From<StoreError> for ChangeError<E> {
    fn from(err: StoreError) -> Self {
        ChangeError::Store(err)
    }
}

/// What one listing asks for.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RequestFilter {
    /// Only these states (empty: all).
    pub states: Vec<String>,
    /// Only this requester's.
    pub requester: Option<String>,
    /// Only ids after this one (the previous page's last).
    pub after: Option<String>,
    /// At most this many (capped at [`MAX_PAGE`]).
    pub limit: usize,
}

/// The most requests one listing returns.
pub const MAX_PAGE: usize = 1000;

const COLUMNS: &str =
    "id, requester, state, created_ms, updated_ms, deadline_ms, version, body_json";

fn stored(r: &sqlx::any::AnyRow) -> Result<StoredRequest, sqlx::Error> {
    Ok(StoredRequest {
        id: r.try_get(0)?,
        requester: r.try_get(1)?,
        state: r.try_get(2)?,
        created_ms: r.try_get(3)?,
        updated_ms: r.try_get(4)?,
        deadline_ms: r.try_get(5)?,
        version: r.try_get(6)?,
        body_json: r.try_get(7)?,
    })
}

impl Store {
    /// Stores a new request (`version` 1) with its audit event, in one transaction. With an
    /// idempotency key, a second insert by the same requester with the same key returns the
    /// first request when `request_sha256` (the digest of what was asked, as the caller
    /// canonicalises it) matches, and is refused when it does not.
    pub async fn insert_access_request(
        &self,
        request: &StoredRequest,
        idempotency: Option<(&str, &str)>,
        event: NewEvent,
    ) -> Result<Inserted, StoreError> {
        const OP: &str = "store an access request";
        let fail = |e| self.ctx.query_failed(OP, e);
        let mut tx = self.pool.begin().await.map_err(fail)?;
        self.lock_audit_head(&mut tx, OP).await?;
        if let Some((key, digest)) = idempotency {
            let earlier = sqlx::query(&format!(
                "SELECT {COLUMNS}, idempotency_sha256 FROM access_requests \
                 WHERE requester = $1 AND idempotency_key = $2"
            ))
            .bind(&request.requester)
            .bind(key)
            .fetch_optional(&mut *tx)
            .await
            .map_err(fail)?;
            if let Some(row) = earlier {
                let first: Option<String> = row.try_get(8).map_err(fail)?;
                if first.as_deref() != Some(digest) {
                    return Err(StoreError::IdempotencyKeyReused {
                        key: key.to_owned(),
                    });
                }
                return Ok(Inserted::Replayed(stored(&row).map_err(fail)?));
            }
        }
        sqlx::query(
            "INSERT INTO access_requests (id, requester, state, created_ms, updated_ms, \
             deadline_ms, version, body_json, idempotency_key, idempotency_sha256) \
             VALUES ($1, $2, $3, $4, $5, $6, 1, $7, $8, $9)",
        )
        .bind(&request.id)
        .bind(&request.requester)
        .bind(&request.state)
        .bind(request.created_ms)
        .bind(request.updated_ms)
        .bind(request.deadline_ms)
        .bind(&request.body_json)
        .bind(idempotency.map(|(key, _)| key))
        .bind(idempotency.map(|(_, digest)| digest))
        .execute(&mut *tx)
        .await
        .map_err(fail)?;
        self.append_audit_under_lock(&mut tx, vec![event]).await?;
        tx.commit().await.map_err(fail)?;
        Ok(Inserted::New(StoredRequest {
            version: 1,
            ..request.clone()
        }))
    }

    /// Changes one request: `change` gets it as stored (read under the lock) and returns what
    /// it becomes and the audit event recording that, or refuses. The new state, deadline,
    /// body and event are written in one transaction, with `version` + 1.
    pub async fn change_access_request<E>(
        &self,
        id: &str,
        now_ms: i64,
        change: impl FnOnce(&StoredRequest) -> Result<(StoredRequest, NewEvent), E>,
    ) -> Result<StoredRequest, ChangeError<E>> {
        const OP: &str = "change an access request";
        let fail = |e| self.ctx.query_failed(OP, e);
        let mut tx = self.pool.begin().await.map_err(fail)?;
        // Every change of any request takes the head's lock first: one at a time.
        self.lock_audit_head(&mut tx, OP).await?;
        let row = sqlx::query(&format!(
            "SELECT {COLUMNS} FROM access_requests WHERE id = $1"
        ))
        .bind(id)
        .fetch_optional(&mut *tx)
        .await
        .map_err(fail)?;
        let Some(row) = row else {
            return Err(ChangeError::NotFound);
        };
        let current = stored(&row).map_err(fail)?;
        let (next, event) = change(&current).map_err(ChangeError::Refused)?;
        let version = current.version + 1;
        let updated = sqlx::query(
            "UPDATE access_requests SET state = $2, updated_ms = $3, deadline_ms = $4, \
             version = $5, body_json = $6 WHERE id = $1 AND version = $7",
        )
        .bind(id)
        .bind(&next.state)
        .bind(now_ms)
        .bind(next.deadline_ms)
        .bind(version)
        .bind(&next.body_json)
        .bind(current.version)
        .execute(&mut *tx)
        .await
        .map_err(fail)?;
        if updated.rows_affected() != 1 {
            return Err(ChangeError::Store(self.ctx.query_failed(
                OP,
                sqlx::Error::Protocol(format!("access request {id} changed under its lock")),
            )));
        }
        self.append_audit_under_lock(&mut tx, vec![event]).await?;
        tx.commit().await.map_err(fail)?;
        Ok(StoredRequest {
            id: current.id,
            requester: current.requester,
            created_ms: current.created_ms,
            updated_ms: now_ms,
            version,
            ..next
        })
    }

    /// One request.
    pub async fn access_request(&self, id: &str) -> Result<Option<StoredRequest>, StoreError> {
        let fail = |e| self.ctx.query_failed("read an access request", e);
        let row = sqlx::query(&format!(
            "SELECT {COLUMNS} FROM access_requests WHERE id = $1"
        ))
        .bind(id)
        .fetch_optional(&self.pool)
        .await
        .map_err(fail)?;
        row.as_ref().map(stored).transpose().map_err(fail)
    }

    /// Requests in id (creation) order, a page at a time.
    pub async fn access_requests(
        &self,
        filter: &RequestFilter,
    ) -> Result<Vec<StoredRequest>, StoreError> {
        let fail = |e| self.ctx.query_failed("list access requests", e);
        let mut sql = format!("SELECT {COLUMNS} FROM access_requests WHERE 1 = 1");
        let mut n = 0;
        let mut next = || {
            n += 1;
            format!("${n}")
        };
        if !filter.states.is_empty() {
            let marks: Vec<String> = filter.states.iter().map(|_| next()).collect();
            sql.push_str(&format!(" AND state IN ({})", marks.join(", ")));
        }
        if filter.requester.is_some() {
            sql.push_str(&format!(" AND requester = {}", next()));
        }
        if filter.after.is_some() {
            sql.push_str(&format!(" AND id > {}", next()));
        }
        sql.push_str(&format!(" ORDER BY id LIMIT {}", next()));
        let mut query = sqlx::query(&sql);
        for state in &filter.states {
            query = query.bind(state);
        }
        if let Some(requester) = &filter.requester {
            query = query.bind(requester);
        }
        if let Some(after) = &filter.after {
            query = query.bind(after);
        }
        let limit = filter.limit.clamp(1, MAX_PAGE);
        let rows = query
            .bind(i64::try_from(limit).unwrap_or(i64::MAX))
            .fetch_all(&self.pool)
            .await
            .map_err(fail)?;
        rows.iter()
            .map(stored)
            .collect::<Result<_, _>>()
            .map_err(fail)
    }

    /// Every approved request (the grants; some may be past their end and not yet recorded as
    /// expired: the planner checks each one's end itself).
    pub async fn approved_access_requests(&self) -> Result<Vec<StoredRequest>, StoreError> {
        let fail = |e| self.ctx.query_failed("read access grants", e);
        let rows = sqlx::query(&format!(
            "SELECT {COLUMNS} FROM access_requests WHERE state = 'approved' ORDER BY id"
        ))
        .fetch_all(&self.pool)
        .await
        .map_err(fail)?;
        rows.iter()
            .map(stored)
            .collect::<Result<_, _>>()
            .map_err(fail)
    }

    /// Requests due at `now_ms` (their deadline has come), at most `limit`, earliest first.
    pub async fn due_access_requests(
        &self,
        now_ms: i64,
        limit: usize,
    ) -> Result<Vec<StoredRequest>, StoreError> {
        let fail = |e| self.ctx.query_failed("read due access requests", e);
        let rows = sqlx::query(&format!(
            "SELECT {COLUMNS} FROM access_requests WHERE deadline_ms <= $1 \
             ORDER BY deadline_ms, id LIMIT $2"
        ))
        .bind(now_ms)
        .bind(i64::try_from(limit.clamp(1, MAX_PAGE)).unwrap_or(i64::MAX))
        .fetch_all(&self.pool)
        .await
        .map_err(fail)?;
        rows.iter()
            .map(stored)
            .collect::<Result<_, _>>()
            .map_err(fail)
    }

    /// The earliest deadline of any request, if one has one: when the service should next look.
    pub async fn next_access_deadline(&self) -> Result<Option<i64>, StoreError> {
        let fail = |e| self.ctx.query_failed("read the next access deadline", e);
        let row: (Option<i64>,) = sqlx::query_as("SELECT MIN(deadline_ms) FROM access_requests")
            .fetch_one(&self.pool)
            .await
            .map_err(fail)?;
        Ok(row.0)
    }
}

/// The digest [`Store::insert_access_request`] compares idempotent retries by, of the text the
/// caller canonicalised.
pub fn request_digest(canonical: &str) -> String {
    crate::scim::sha256_hex(canonical)
}
