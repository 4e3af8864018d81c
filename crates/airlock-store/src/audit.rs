//! The audit log's storage: appending sealed events, reading them back in pages, and
//! verifying the stored chain against its recorded head.
//!
//! Each event is one `audit_events` row: `event_json` holds the whole event in the export
//! format (`airlock_audit::to_jsonl_line`), and `seq`, `id`, `at_ms`, `prev_hash`, `hash` copy
//! parts of it for ordering and lookups. The one-row `audit_head` table holds the last event's
//! `seq` and `hash`, so events deleted from the end are noticed.
//!
//! Appends are serialized across processes and replicas on both databases: the first
//! statement of every append transaction is `UPDATE audit_head SET seq = seq WHERE id = 1`,
//! which takes PostgreSQL's row lock on the head, and SQLite's write lock before the
//! transaction has read anything (a deferred SQLite transaction that reads first and writes
//! later cannot wait for the lock and fails instead). Only then is the head read, the events
//! sealed after it, inserted, and the head moved, in one commit.
//!
//! Not here: what an event means, the hash format and the verification rules (all in
//! `airlock-audit`); nothing here ever updates or deletes an event.

use airlock_audit::{AuditEvent, ChainBreak, Head, NewEvent, Verifier, VerifySummary};
use sqlx::any::AnyRow;
use sqlx::{Any, AnyConnection, Executor, Row as _};

use crate::{Backend, Store, StoreError};

/// Takes the append lock: PostgreSQL's row lock, SQLite's write lock.
const LOCK_HEAD_SQL: &str = "UPDATE audit_head SET seq = seq WHERE id = 1";
/// Takes the append lock and reads the head in one statement. PostgreSQL locks the row
/// without writing a new version of it (the append moves the head anyway); SQLite takes its
/// write lock only with a write.
const READ_HEAD_SQL: &str = "SELECT seq, hash FROM audit_head WHERE id = 1";
const MOVE_HEAD_SQL: &str = "UPDATE audit_head SET seq = $1, hash = $2 WHERE id = 1";
const INSERT_EVENTS_SQL: &str =
    "INSERT INTO audit_events (seq, id, at_ms, event_json, prev_hash, hash) VALUES ";
/// Rows per multi-row INSERT: well under both databases' limits on bound parameters.
const ROWS_PER_INSERT: usize = 500;
const EVENTS_FROM_SQL: &str = "SELECT seq, id, at_ms, event_json, prev_hash, hash \
     FROM audit_events WHERE seq >= $1 ORDER BY seq LIMIT $2";
/// PostgreSQL: one snapshot for the head and every page of events (SQLite's read transaction
/// already is one).
const SNAPSHOT_SQL: &str = "SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY";

/// How many events [`Store::verify_audit`] reads per query.
const VERIFY_PAGE_SIZE: u32 = 500;

/// One `audit_events` row as stored.
struct StoredRow {
    seq: i64,
    id: String,
    at_ms: i64,
    event_json: String,
    prev_hash: String,
    hash: String,
}

impl StoredRow {
    fn from_row(row: &AnyRow) -> Result<StoredRow, sqlx::Error> {
        Ok(StoredRow {
            seq: row.try_get("seq")?,
            id: row.try_get("id")?,
            at_ms: row.try_get("at_ms")?,
            event_json: row.try_get("event_json")?,
            prev_hash: row.try_get("prev_hash")?,
            hash: row.try_get("hash")?,
        })
    }

    fn event(&self) -> Result<AuditEvent, String> {
        airlock_audit::from_jsonl_line(&self.event_json).map_err(|err| err.to_string())
    }

    /// True when the columns still say what the event says (its `seq` is checked by the
    /// verifier, as the event's storage position).
    fn agrees_with(&self, event: &AuditEvent) -> bool {
        self.id == event.id
            && self.at_ms == event.at.timestamp_millis()
            && self.prev_hash == event.prev_hash
            && self.hash == event.hash
    }
}

async fn fetch_rows<'c, E>(
    executor: E,
    from: i64,
    limit: u32,
) -> Result<Vec<StoredRow>, sqlx::Error>
where
    E: Executor<'c, Database = Any>,
{
    let rows = sqlx::query(EVENTS_FROM_SQL)
        .bind(from)
        .bind(i64::from(limit))
        .fetch_all(executor)
        .await?;
    rows.iter().map(StoredRow::from_row).collect()
}

/// A `seq` as the BIGINT column stores it; seqs past `i64::MAX` mean `from` is beyond any row.
fn seq_column(seq: u64) -> i64 {
    i64::try_from(seq).unwrap_or(i64::MAX)
}

impl Store {
    /// Seals `events` after the current end of the audit log and stores them, all or none,
    /// in one transaction; returns them sealed (with their `seq` and hashes), in order.
    ///
    /// Safe to call from any number of tasks, processes and replicas at once: appends take
    /// turns on the head's lock, so the log stays one chain. On SQLite a turn waits up to the
    /// busy timeout, then fails with [`StoreError::StoreLocked`].
    pub async fn append_audit(&self, events: Vec<NewEvent>) -> Result<Vec<AuditEvent>, StoreError> {
        const OP: &str = "append to the audit log";
        if events.is_empty() {
            return Ok(Vec::new());
        }
        let fail = |err| self.ctx.query_failed(OP, err);
        let mut tx = self.pool.begin().await.map_err(fail)?;
        let sealed = self.append_audit_in(&mut tx, events).await?;
        tx.commit().await.map_err(fail)?;
        Ok(sealed)
    }

    /// Takes the audit head's lock in `tx` (PostgreSQL's row lock, SQLite's write lock), as
    /// every append does first; taking it again in the same transaction is harmless.
    pub(crate) async fn lock_audit_head(
        &self,
        tx: &mut sqlx::Transaction<'_, Any>,
        op: &'static str,
    ) -> Result<(), StoreError> {
        let locked = sqlx::query(LOCK_HEAD_SQL)
            .execute(&mut **tx)
            .await
            .map_err(|err| self.ctx.query_failed(op, err))?;
        if locked.rows_affected() == 0 {
            return Err(self.head_missing(op));
        }
        Ok(())
    }

    /// The head of a stored `(seq, hash)` row.
    pub(crate) fn head_of(
        &self,
        op: &'static str,
        (seq, hash): (i64, String),
    ) -> Result<Head, StoreError> {
        let seq = u64::try_from(seq).map_err(|_| StoreError::UnexpectedValue {
            op,
            location: self.ctx.location.clone(),
            column: "audit_head.seq",
            value: seq.to_string(),
        })?;
        Ok(Head { seq, hash })
    }

    /// Adds to `statements` what stores `events` sealed after `head` (read under the lock, and
    /// nothing appended since) and moves the head: for a caller that sends them together with
    /// its own statements, in one round trip (a group commit's batch).
    pub(crate) fn append_statements(
        statements: &mut crate::Statements,
        mut head: Head,
        events: Vec<NewEvent>,
    ) {
        use crate::Param::{Int, Text};
        if events.is_empty() {
            return;
        }
        let mut rows = Vec::with_capacity(events.len());
        for new in events {
            let event = airlock_audit::seal_after(&head, new);
            head = event.head();
            rows.push(vec![
                Int(seq_column(event.seq)),
                Text(Some(event.id.clone())),
                Int(event.at.timestamp_millis()),
                Text(Some(airlock_audit::to_jsonl_line(&event))),
                Text(Some(event.prev_hash.clone())),
                Text(Some(event.hash)),
            ]);
        }
        let values = statements.rows(rows);
        statements.push(format!("{INSERT_EVENTS_SQL}{values}"));
        let (seq, hash) = (
            statements.param(Int(seq_column(head.seq))),
            statements.param(Text(Some(head.hash))),
        );
        statements.push(format!(
            "UPDATE audit_head SET seq = {seq}, hash = {hash} WHERE id = 1"
        ));
    }

    /// [`Store::append_audit`] inside the caller's transaction, so that an event commits
    /// together with what it records (the write-ahead journal closes an intent this way).
    /// Takes the head's lock first, as every append must.
    pub(crate) async fn append_audit_in(
        &self,
        tx: &mut sqlx::Transaction<'_, Any>,
        events: Vec<NewEvent>,
    ) -> Result<Vec<AuditEvent>, StoreError> {
        if events.is_empty() {
            return Ok(Vec::new());
        }
        // The lock comes first, before anything is read.
        self.lock_audit_head(tx, "append to the audit log").await?;
        self.append_audit_under_lock(tx, events).await
    }

    /// [`Store::append_audit_in`] in a transaction that already holds the head's lock (a
    /// group commit's batch takes it first, see `group_commit`).
    pub(crate) async fn append_audit_under_lock(
        &self,
        tx: &mut sqlx::Transaction<'_, Any>,
        events: Vec<NewEvent>,
    ) -> Result<Vec<AuditEvent>, StoreError> {
        const OP: &str = "append to the audit log";
        if events.is_empty() {
            return Ok(Vec::new());
        }
        let head = self
            .read_head(OP, tx)
            .await?
            .ok_or_else(|| self.head_missing(OP))?;
        self.append_audit_after(tx, head, events).await
    }

    /// [`Store::append_audit_under_lock`] where the caller read the head under the lock, and
    /// nothing has been appended since.
    pub(crate) async fn append_audit_after(
        &self,
        tx: &mut sqlx::Transaction<'_, Any>,
        mut head: Head,
        events: Vec<NewEvent>,
    ) -> Result<Vec<AuditEvent>, StoreError> {
        const OP: &str = "append to the audit log";
        let fail = |err| self.ctx.query_failed(OP, err);
        if events.is_empty() {
            return Ok(Vec::new());
        }
        let mut sealed = Vec::with_capacity(events.len());
        for new in events {
            let event = airlock_audit::seal_after(&head, new);
            head = event.head();
            sealed.push(event);
        }
        // Many rows per statement: one round trip (and on SQLite one hand-off to its worker)
        // for a whole group commit's events.
        for chunk in sealed.chunks(ROWS_PER_INSERT) {
            let sql = crate::values_sql(INSERT_EVENTS_SQL, 6, chunk.len());
            let mut query = sqlx::query(&sql);
            for event in chunk {
                query = query
                    .bind(seq_column(event.seq))
                    .bind(event.id.clone())
                    .bind(event.at.timestamp_millis())
                    .bind(airlock_audit::to_jsonl_line(event))
                    .bind(event.prev_hash.clone())
                    .bind(event.hash.clone());
            }
            query.execute(&mut **tx).await.map_err(fail)?;
        }

        sqlx::query(MOVE_HEAD_SQL)
            .bind(seq_column(head.seq))
            .bind(&head.hash)
            .execute(&mut **tx)
            .await
            .map_err(fail)?;
        Ok(sealed)
    }

    /// Up to `limit` events stored at `seq >= from_seq`, in `seq` order, as stored (nothing is
    /// verified here). To read the whole log, page with [`Store::audit_pages`].
    pub async fn audit_events(
        &self,
        from_seq: u64,
        limit: u32,
    ) -> Result<Vec<AuditEvent>, StoreError> {
        const OP: &str = "read the audit log";
        let rows = fetch_rows(&self.pool, seq_column(from_seq), limit)
            .await
            .map_err(|err| self.ctx.query_failed(OP, err))?;
        rows.iter().map(|row| self.readable(row)).collect()
    }

    /// The recorded end of the audit log: the last event's `seq` and hash (0 and the genesis
    /// hash when the log is empty).
    pub async fn audit_head(&self) -> Result<Head, StoreError> {
        const OP: &str = "read the audit head";
        let mut conn = self
            .pool
            .acquire()
            .await
            .map_err(|err| self.ctx.query_failed(OP, err))?;
        self.read_head(OP, &mut conn)
            .await?
            .ok_or_else(|| self.head_missing(OP))
    }

    /// Reads the audit log from `from_seq` on, `page_size` events per query, for exports
    /// that must not hold the whole log in memory. Pages follow the stored order, so a
    /// damaged event's own `seq` never makes a page repeat or skip rows.
    pub fn audit_pages(&self, from_seq: u64, page_size: u32) -> AuditPages {
        AuditPages {
            store: self.clone(),
            next: Some(seq_column(from_seq)),
            page_size: page_size.max(1),
        }
    }

    /// Verifies the whole stored audit log against its recorded head, reading both from one
    /// snapshot (so appends running meanwhile are neither missed nor mistaken for forgeries)
    /// in pages of bounded size.
    ///
    /// The outer error is a store that cannot be read; the inner result is the verdict: a
    /// summary of the intact chain, or where and how it was broken. A row whose JSON cannot be
    /// read, or whose columns disagree with its JSON, counts as modified.
    pub async fn verify_audit(&self) -> Result<Result<VerifySummary, ChainBreak>, StoreError> {
        Ok(self.verify_audit_at(0).await?.map(|(summary, _)| summary))
    }

    /// [`Store::verify_audit`], also returning the head the chain had at `size` events (read
    /// in the same snapshot): the genesis head for 0, `None` when the chain is shorter. Only
    /// a chain that verifies has a head at `size` worth comparing; a signed checkpoint of
    /// that size is compared with it (`airlock_audit::checkpoint::check_chain`).
    pub async fn verify_audit_at(
        &self,
        size: u64,
    ) -> Result<Result<(VerifySummary, Option<Head>), ChainBreak>, StoreError> {
        const OP: &str = "verify the audit log";
        let fail = |err| self.ctx.query_failed(OP, err);
        let mut tx = self.pool.begin().await.map_err(fail)?;
        if self.ctx.backend == Backend::Postgres {
            sqlx::query(SNAPSHOT_SQL)
                .execute(&mut *tx)
                .await
                .map_err(fail)?;
        }
        let Some(head) = self.read_head(OP, &mut tx).await? else {
            return Ok(Err(ChainBreak::HeadMissing));
        };

        let mut verifier = Verifier::new();
        let mut at_size = (size == 0).then(Head::genesis);
        // From the lowest possible key: rows moved below 1 must be seen too.
        let mut next = Some(i64::MIN);
        'pages: while let Some(from) = next {
            let rows = fetch_rows(&mut *tx, from, VERIFY_PAGE_SIZE)
                .await
                .map_err(fail)?;
            next = next_from(&rows, VERIFY_PAGE_SIZE);
            for row in &rows {
                let checked = match (u64::try_from(row.seq), row.event()) {
                    (Ok(position), Ok(event)) if row.agrees_with(&event) => {
                        if position == size {
                            at_size = Some(event.head());
                        }
                        verifier.push_stored(position, &event)
                    }
                    _ => verifier.push_corrupt(),
                };
                if checked.is_err() {
                    // A definite break: the rest cannot change the verdict.
                    break 'pages;
                }
            }
        }
        tx.rollback().await.map_err(fail)?;
        Ok(verifier
            .finish(Some(&head))
            .map(|summary| (summary, at_size)))
    }

    async fn read_head(
        &self,
        op: &'static str,
        conn: &mut AnyConnection,
    ) -> Result<Option<Head>, StoreError> {
        let row: Option<(i64, String)> = sqlx::query_as(READ_HEAD_SQL)
            .fetch_optional(&mut *conn)
            .await
            .map_err(|err| self.ctx.query_failed(op, err))?;
        row.map(|row| self.head_of(op, row)).transpose()
    }

    fn readable(&self, row: &StoredRow) -> Result<AuditEvent, StoreError> {
        row.event().map_err(|err| StoreError::AuditEventUnreadable {
            seq: row.seq,
            location: self.ctx.location.clone(),
            cause: err,
        })
    }

    pub(crate) fn head_missing(&self, op: &'static str) -> StoreError {
        StoreError::AuditHeadMissing {
            op,
            location: self.ctx.location.clone(),
        }
    }
}

/// Where the page after `rows` starts, or `None` when `rows` was the last page.
fn next_from(rows: &[StoredRow], page_size: u32) -> Option<i64> {
    if rows.len() < page_size as usize {
        return None;
    }
    rows.last().and_then(|row| row.seq.checked_add(1))
}

/// The audit log read page by page, in stored order; see [`Store::audit_pages`].
#[derive(Debug)]
pub struct AuditPages {
    store: Store,
    /// The `seq` column the next page starts at; `None` after the last page.
    next: Option<i64>,
    page_size: u32,
}

impl AuditPages {
    /// The next page of events, or `None` when the log has been read to its end. Events
    /// appended while paging are included if they are committed before their page is read.
    pub async fn next_page(&mut self) -> Result<Option<Vec<AuditEvent>>, StoreError> {
        const OP: &str = "read the audit log";
        let Some(from) = self.next else {
            return Ok(None);
        };
        let rows = fetch_rows(&self.store.pool, from, self.page_size)
            .await
            .map_err(|err| self.store.ctx.query_failed(OP, err))?;
        self.next = next_from(&rows, self.page_size);
        if rows.is_empty() {
            return Ok(None);
        }
        rows.iter()
            .map(|row| self.store.readable(row))
            .collect::<Result<Vec<_>, _>>()
            .map(Some)
    }
}
