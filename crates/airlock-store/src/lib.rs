//! airlock's state store: inventory snapshots and the accounts airlock created, kept in an
//! embedded SQLite file (the default) or in PostgreSQL, behind one API.
//!
//! Both backends run the same versioned migrations (`migrations/`, embedded at build time) and
//! the same queries, through sqlx's `Any` driver with a portable subset of SQL: TEXT and BIGINT
//! columns, app-generated ids (uuid v7, which sort by creation time), timestamps as BIGINT unix
//! milliseconds UTC supplied by the caller (time is injected, the store never reads a clock).
//!
//! Opening a store applies pending migrations and refuses a database migrated by a newer
//! airlock. SQLite files are opened in WAL mode with a busy timeout, so a second airlock process
//! waits for the write lock and then reports [`StoreError::StoreLocked`] rather than failing at
//! once.
//!
//! The audit log is kept here too (`audit`): hash-chained events appended under a lock that
//! serializes writers across processes, read in pages, verified against a recorded head.
//!
//! Leases with epochs (fencing tokens), the write-ahead journal of operations on Airflow, and
//! the deprovisions a safety rail held back are kept here too (`lease`, `journal`, `holds`).
//!
//! SCIM resources pushed by identity providers, and the SCIM clients' bearer tokens (kept only
//! as SHA-256 hashes), are kept here too (`scim`).
//!
//! Not here: what audit events mean and how they are hashed (airlock-audit), the meaning of a
//! snapshot's payload (the store keeps it as opaque JSON text), and creating PostgreSQL
//! databases or roles (the operator does).

#![warn(missing_docs)]

mod access;
mod accounts;
mod api_tokens;
mod audit;
mod delivery;
mod error;
mod group_commit;
mod history;
mod holds;
mod journal;
mod lease;
mod leavers;
mod location;
mod managed;
mod migrations;
mod open;
mod scim;
mod snapshots;
mod token_cache;

use std::sync::Arc;
use std::time::Duration;

use sqlx::AnyPool;

pub use access::{request_digest, ChangeError, Inserted, RequestFilter, StoredRequest, MAX_PAGE};
pub use api_tokens::{ApiToken, NewApiToken, API_TOKEN_PREFIX};
pub use audit::AuditPages;
pub use error::StoreError;
pub use history::{AccessInterval, Recorded};
pub use holds::{HoldEnd, RailHold};
pub use journal::{Fencing, Intent, JournalState, OpenIntent};
pub use lease::{Acquire, LeaseGrant, LeaseRow};
pub use leavers::{Deprovision, Leaver};
pub use location::redact_url;
pub use managed::{ManagedAccount, ManagedOrigin, RunStatus};
pub use migrations::supported_schema_version;
pub use scim::{
    scim_actor, PendingSummary, ScimChange, ScimClient, ScimPage, ScimResource, ScimRotation,
    ScimToken, ScimTokenOptions, ScimWriteError, ScimWriteKind, SCIM_TOKEN_PREFIX,
};
pub use snapshots::{SnapshotId, SnapshotMeta, SnapshotRun, SnapshotStatus, StoredSnapshot};
pub use token_cache::TOKEN_CACHE_MS;

/// How long an SQLite writer waits for another process's write lock by default.
pub const DEFAULT_BUSY_TIMEOUT: Duration = Duration::from_secs(5);

/// Which database a [`Store`] uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Backend {
    /// An embedded SQLite file.
    Sqlite,
    /// A PostgreSQL server.
    Postgres,
}

/// How [`Store::open`] treats a store that does not exist yet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OpenOptions {
    /// SQLite: create the file if it is absent (its directory must exist). Commands that only
    /// read pass `false`, so a mistyped path is reported instead of silently creating an empty
    /// store. PostgreSQL: ignored, the database must exist.
    pub create_if_missing: bool,
    /// SQLite: how long to wait for another connection's write lock before
    /// [`StoreError::StoreLocked`]. PostgreSQL: ignored.
    pub busy_timeout: Duration,
    /// Connections in the main pool (`None`: 5 on PostgreSQL, 4 on SQLite). Leases use a
    /// separate pool of their own, so a busy main pool never delays a lease renewal.
    pub max_connections: Option<u32>,
}

impl Default for OpenOptions {
    fn default() -> Self {
        Self {
            create_if_missing: false,
            busy_timeout: DEFAULT_BUSY_TIMEOUT,
            max_connections: None,
        }
    }
}

impl OpenOptions {
    /// Options for a command that writes: create the SQLite file if absent.
    pub fn create() -> Self {
        Self {
            create_if_missing: true,
            ..Self::default()
        }
    }

    /// Options for a command that only reads: the store must already exist.
    pub fn existing() -> Self {
        Self::default()
    }
}

/// A handle to the state store. Cloning is cheap: clones share one connection pool.
#[derive(Clone)]
pub struct Store {
    pool: AnyPool,
    /// Leases only: taking, renewing, releasing. Small and separate, so renewals never wait
    /// behind the syncs and SCIM requests that use `pool`.
    lease_pool: AnyPool,
    ctx: Arc<open::Context>,
    /// SCIM writes waiting for their batch ([`group_commit`]).
    group: Arc<group_commit::GroupCommit>,
    /// SCIM tokens accepted in the last second ([`token_cache`]).
    tokens: Arc<token_cache::TokenCache>,
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Store")
            .field("backend", &self.ctx.backend)
            .field("location", &self.ctx.location)
            .finish_non_exhaustive()
    }
}

impl Store {
    /// Connects to the store at `url` and applies pending migrations.
    ///
    /// `url` is `sqlite:///abs/path/airlock.db`, `sqlite://relative.db` (relative to the working
    /// directory) or `postgres://user@host:port/db`. Errors name the store by file path or by
    /// the URL with its password redacted. A PostgreSQL URL must use TLS
    /// (`sslmode=verify-full&sslrootcert=…` or `sslmode=require`) unless its host is loopback
    /// or a Unix socket; see `airlock_config::pg_url` and docs/adr/0007.
    pub async fn open(url: &str, opts: OpenOptions) -> Result<Store, StoreError> {
        open::open(url, opts).await
    }

    /// Which database this store uses.
    pub fn backend(&self) -> Backend {
        self.ctx.backend
    }

    /// The file path or the URL (password redacted) this store was opened from.
    pub fn location(&self) -> &str {
        &self.ctx.location
    }

    /// The newest migration applied to the database.
    pub async fn schema_version(&self) -> Result<i64, StoreError> {
        let version: Option<i64> =
            sqlx::query_scalar("SELECT MAX(version) FROM _sqlx_migrations WHERE success")
                .fetch_one(&self.pool)
                .await
                .map_err(|err| self.ctx.query_failed("read schema version", err))?;
        Ok(version.unwrap_or(0))
    }

    /// Closes every pooled connection and waits for them to finish; later calls fail. Dropping
    /// the last clone closes the pool too, but without waiting.
    pub async fn close(&self) {
        self.pool.close().await;
        self.lease_pool.close().await;
    }
}

/// `prefix` (an `INSERT ... VALUES `) followed by `rows` groups of `columns` numbered
/// placeholders: `($1, $2), ($3, $4)`.
pub(crate) fn values_sql(prefix: &str, columns: usize, rows: usize) -> String {
    use std::fmt::Write as _;
    let mut sql = String::with_capacity(prefix.len() + rows * columns * 6);
    sql.push_str(prefix);
    for row in 0..rows {
        sql.push_str(if row == 0 { "(" } else { ", (" });
        for column in 0..columns {
            if column > 0 {
                sql.push_str(", ");
            }
            let _ = write!(sql, "${}", row * columns + column + 1);
        }
        sql.push(')');
    }
    sql
}

/// A value bound to a [`Statements`] placeholder.
pub(crate) enum Param {
    Text(Option<String>),
    Int(i64),
}

/// Several statements built to be sent in one round trip, with placeholders numbered across
/// all of them: SQLite runs them as one multi-statement query, PostgreSQL as data-modifying
/// `WITH` parts of one statement ([`Statements::sql`]).
#[derive(Default)]
pub(crate) struct Statements {
    parts: Vec<String>,
    params: Vec<Param>,
    /// The part whose rows are the result (it ends in `RETURNING`).
    returning: Option<usize>,
}

impl Statements {
    /// The placeholder of a new parameter.
    pub(crate) fn param(&mut self, value: Param) -> String {
        self.params.push(value);
        format!("${}", self.params.len())
    }

    /// `(p, p, ...), (p, p, ...)`: one group of placeholders per row.
    pub(crate) fn rows(&mut self, rows: impl IntoIterator<Item = Vec<Param>>) -> String {
        let mut sql = String::new();
        for (n, row) in rows.into_iter().enumerate() {
            sql.push_str(if n == 0 { "(" } else { ", (" });
            for (m, value) in row.into_iter().enumerate() {
                if m > 0 {
                    sql.push_str(", ");
                }
                sql.push_str(&self.param(value));
            }
            sql.push(')');
        }
        sql
    }

    /// Adds a statement that returns no rows.
    pub(crate) fn push(&mut self, sql: String) {
        self.parts.push(sql);
    }

    /// Adds the one statement whose rows (`RETURNING ...`) are the result.
    pub(crate) fn push_returning(&mut self, sql: String) {
        debug_assert!(self.returning.is_none(), "one statement returns rows");
        self.returning = Some(self.parts.len());
        self.parts.push(sql);
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.parts.is_empty()
    }

    /// The text to send: on SQLite the statements one after the other; on PostgreSQL each a
    /// `WITH` part (all run, to completion, whatever the main query reads) and the returning
    /// one's rows as the result.
    pub(crate) fn sql(&self, backend: Backend) -> String {
        match backend {
            Backend::Sqlite => self.parts.join(";\n"),
            Backend::Postgres => {
                let mut sql = String::from("WITH ");
                for (n, part) in self.parts.iter().enumerate() {
                    if n > 0 {
                        sql.push_str(", ");
                    }
                    sql.push_str(&format!("s{n} AS ({part})"));
                }
                match self.returning {
                    Some(n) => sql.push_str(&format!(" SELECT 1 FROM s{n}")),
                    None => sql.push_str(" SELECT 1 WHERE false"),
                }
                sql
            }
        }
    }

    /// The query, its parameters bound.
    pub(crate) fn query(
        self,
        sql: &str,
    ) -> sqlx::query::Query<'_, sqlx::Any, sqlx::any::AnyArguments<'_>> {
        let mut query = sqlx::query(sql);
        for value in self.params {
            query = match value {
                Param::Text(text) => query.bind(text),
                Param::Int(n) => query.bind(n),
            };
        }
        query
    }
}
