//! Group commit of SCIM writes: writes that arrive while another batch is committing are
//! applied together, in one transaction with one flush to disk.
//!
//! Every SCIM write appends to the audit chain, so writes take turns at the chain's head lock
//! however many run at once; with one transaction each, the service commits (and flushes) once
//! per write. Here a write becomes a job in a queue. The first writer to find the turn free
//! runs every queued job (at most [`MAX_BATCH`] per transaction, until the queue is empty) and
//! commits; the others wait for their job's result, which is sent only after the commit that
//! made it durable. A failed commit fails every job of the batch.
//!
//! - What a job writes: nothing it cannot undo before its last step. An update that keeps
//!   the resource's unique key, its pending changes and its audit event are handed to the
//!   [`Batch`]; a create, a rename or a delete writes the row itself, with one statement, its
//!   last (on PostgreSQL, one that may fail as expected, on a unique key, runs in a savepoint
//!   of its own: [`Batch::execute_guarded`]). The batch drops what a failed job handed over,
//!   and writes the rest at the end in one round trip ([`crate::Statements`]): the updates in
//!   one multi-row `UPDATE`, the changes in one `INSERT ... SELECT` over the consumers, the
//!   events in one `INSERT`, and the head. The head and the rows the jobs name are read in
//!   one statement before the first job. So a batch of PATCHes costs four round trips
//!   (begin, which on PostgreSQL also takes the head's lock; head and rows; flush; commit)
//!   whatever its size; it cost ten per write.
//!
//! - Lock order: a batch takes the audit head's lock before anything else, and every write of
//!   a resource is a batch's (or a clean-up at opening that writes only over what it read);
//!   so rows need no lock of their own, and batches of different replicas (or of two stores
//!   on one database) wait only for each other's head lock.
//! - Overlap (PostgreSQL): a batch's commit runs in a task of its own while the next batch
//!   begins, on another connection, and waits in the database for the head's lock, which the
//!   commit releases; it then reads what the commit wrote. SQLite has one writer: there each
//!   batch commits before the next begins.
//! - Cancellation: a batch runs in its own task, so a request that gives up (its client went
//!   away, or the 10 s request limit) neither aborts the writes of others nor leaves the turn
//!   taken. A queued job whose caller has gone is skipped, never applied later.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};

use airlock_audit::NewEvent;
use futures::future::BoxFuture;
use sqlx::any::{AnyArguments, AnyQueryResult};
use sqlx::pool::PoolConnection;
use sqlx::query::Query;
use sqlx::{Acquire as _, Any, Row as _, Transaction};
use tokio::sync::oneshot;

use crate::scim::ScimWriteError;
use crate::{Backend, Store, StoreError};

/// The most writes one transaction applies.
pub(crate) const MAX_BATCH: usize = 128;

/// A batch's transaction on PostgreSQL begins by taking the audit head's lock (a simple query:
/// one round trip for both).
const PG_BEGIN_LOCKED: &str = "BEGIN; SELECT 1 FROM audit_head WHERE id = 1 FOR UPDATE";

/// The read that opens a batch binds one parameter per job and two for the resource types; a
/// batch's final statement binds 22 parameters per write at most (an update, a change, an
/// event) and two for the head: well under SQLite's limit of 32766 (PostgreSQL's is 65535).
const _: () = assert!(MAX_BATCH * 22 + 2 < 32_766);

/// A write to a SCIM resource, of which every registered consumer gets a pending change.
pub(crate) struct Written {
    pub(crate) resource_type: String,
    pub(crate) id: String,
    /// The resource's stored text before the write (none for a creation).
    pub(crate) previous: Option<String>,
    pub(crate) changed_ms: i64,
    pub(crate) client: String,
}

impl Written {
    pub(crate) fn new(
        resource_type: &str,
        id: &str,
        previous: Option<String>,
        changed_ms: i64,
        client: &str,
    ) -> Self {
        Self {
            resource_type: resource_type.to_owned(),
            id: id.to_owned(),
            previous,
            changed_ms,
            client: client.to_owned(),
        }
    }
}

/// A stored resource's row, read under its lock.
#[derive(Clone)]
pub(crate) struct LockedRow {
    pub(crate) version: i64,
    pub(crate) created_ms: i64,
    /// `resource_json`, as stored.
    pub(crate) text: String,
    pub(crate) unique_key: Option<String>,
}

/// A resource a job reads and writes: its type and id.
pub(crate) type ResourceKey = (String, String);

/// What an update writes into a resource's row.
pub(crate) struct RowWrite {
    pub(crate) unique_key: Option<String>,
    pub(crate) external_id: Option<String>,
    pub(crate) version: i64,
    pub(crate) modified_ms: i64,
    /// `resource_json`.
    pub(crate) text: String,
}

/// An update written at the end of the batch, with the version the database holds now.
struct Deferred {
    stored_version: i64,
    write: RowWrite,
}

/// The transaction of one batch, and what its jobs hand it to write at the end.
pub(crate) struct Batch<'c> {
    pub(crate) tx: Transaction<'c, Any>,
    backend: Backend,
    /// The batch's view of the rows its jobs named: read (and locked) together before the
    /// first job runs, then as each write left them (`None`: there is none, or it was
    /// deleted). A row not here is read from the database.
    rows: HashMap<ResourceKey, Option<LockedRow>>,
    /// Updates of rows whose unique key stays: written together at the end.
    deferred: HashMap<ResourceKey, Deferred>,
    written: Vec<Written>,
    events: Vec<NewEvent>,
}

impl Batch<'_> {
    /// The row of a resource as the batch sees it; `None` when the batch has not read it
    /// (read it from the database).
    pub(crate) fn row(&self, resource_type: &str, id: &str) -> Option<Option<LockedRow>> {
        self.rows
            .get(&(resource_type.to_owned(), id.to_owned()))
            .cloned()
    }

    /// The version the database holds for a row the batch sees at `seen` (they differ while
    /// an update of it waits for the end of the batch).
    pub(crate) fn stored_version(&self, resource_type: &str, id: &str, seen: i64) -> i64 {
        (self
            .deferred
            .get(&(resource_type.to_owned(), id.to_owned())))
        .map_or(seen, |d| d.stored_version)
    }

    /// Updates a row (seen at version `seen`) at the end of the batch; later jobs of the
    /// batch see the update at once. Infallible: a job calls it last, when it has succeeded.
    pub(crate) fn defer_update(
        &mut self,
        resource_type: &str,
        id: &str,
        seen: i64,
        created_ms: i64,
        write: RowWrite,
    ) {
        let key = (resource_type.to_owned(), id.to_owned());
        let row = LockedRow {
            version: write.version,
            created_ms,
            text: write.text.clone(),
            unique_key: write.unique_key.clone(),
        };
        self.rows.insert(key.clone(), Some(row));
        let stored_version = self.stored_version(resource_type, id, seen);
        self.deferred.insert(
            key,
            Deferred {
                stored_version,
                write,
            },
        );
    }

    /// A row was just written (or deleted: `None`) by a statement of its own, which
    /// supersedes any update of it waiting for the end of the batch.
    pub(crate) fn wrote_now(&mut self, resource_type: &str, id: &str, row: Option<LockedRow>) {
        let key = (resource_type.to_owned(), id.to_owned());
        self.deferred.remove(&key);
        self.rows.insert(key, row);
    }

    /// Records a write (its pending changes) and its audit event, to be stored at the end of
    /// the batch unless the job fails.
    pub(crate) fn record(&mut self, written: Written, event: NewEvent) {
        self.written.push(written);
        self.events.push(event);
    }

    /// Runs a statement that may fail as expected (a taken unique key) without spoiling the
    /// batch: SQLite undoes only the failed statement, PostgreSQL needs a savepoint.
    pub(crate) async fn execute_guarded<'q>(
        &mut self,
        query: Query<'q, Any, AnyArguments<'q>>,
    ) -> Result<AnyQueryResult, sqlx::Error> {
        match self.backend {
            Backend::Sqlite => query.execute(&mut *self.tx).await,
            Backend::Postgres => {
                let mut savepoint = self.tx.begin().await?;
                match query.execute(&mut *savepoint).await {
                    Ok(done) => {
                        savepoint.commit().await?;
                        Ok(done)
                    }
                    Err(err) => {
                        // Should the rollback fail, the commit fails too, and so the batch.
                        let _ = savepoint.rollback().await;
                        Err(err)
                    }
                }
            }
        }
    }

    fn mark(&self) -> (usize, usize) {
        (self.written.len(), self.events.len())
    }

    fn rewind(&mut self, (written, events): (usize, usize)) {
        self.written.truncate(written);
        self.events.truncate(events);
    }
}

/// Tells a job's caller how its write ended, once the batch's commit is known.
type Finish = Box<dyn FnOnce(Result<(), StoreError>) + Send>;

/// What a job reports to its batch.
struct Done {
    /// It wrote: keep its savepoint. Otherwise roll back to it.
    wrote: bool,
    finish: Finish,
}

/// One write, run by whichever caller's turn it is, in the batch's transaction.
struct Job {
    /// The existing resource it reads and writes, if any: read for the whole batch at once.
    reads: Option<ResourceKey>,
    run: Run,
}

type Run = Box<dyn for<'t, 'c> FnOnce(&'t mut Batch<'c>) -> BoxFuture<'t, Done> + Send>;

/// The queue and the turn of one store handle.
#[derive(Default)]
pub(crate) struct GroupCommit {
    queue: Mutex<Vec<Job>>,
    turn: Arc<tokio::sync::Mutex<()>>,
}

impl GroupCommit {
    fn push(&self, job: Job) {
        self.queue
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push(job);
    }

    fn is_empty(&self) -> bool {
        (self.queue.lock().unwrap_or_else(PoisonError::into_inner)).is_empty()
    }

    fn take(&self) -> Vec<Job> {
        let mut queue = self.queue.lock().unwrap_or_else(PoisonError::into_inner);
        let n = queue.len().min(MAX_BATCH);
        queue.drain(..n).collect()
    }
}

impl Store {
    /// Runs `work` as one write of a group commit (see the module's documentation) and
    /// returns its result once it is committed. `work` gets the batch; on error what it
    /// recorded is dropped, and it must have written nothing (see the module's documentation).
    /// `reads` names the existing resource `work` reads under its lock, if any.
    pub(crate) async fn in_group_commit<T, E, W>(
        &self,
        reads: Option<ResourceKey>,
        work: W,
    ) -> Result<T, ScimWriteError<E>>
    where
        T: Send + 'static,
        E: Send + 'static,
        W: for<'t, 'c> FnOnce(
                Store,
                &'t mut Batch<'c>,
            ) -> BoxFuture<'t, Result<T, ScimWriteError<E>>>
            + Send
            + 'static,
    {
        let (sender, receiver) = oneshot::channel();
        let store = self.clone();
        let run: Run = Box::new(move |batch| {
            Box::pin(async move {
                if sender.is_closed() {
                    // Its caller has gone: as if its transaction had been rolled back.
                    return Done {
                        wrote: false,
                        finish: Box::new(|_| ()),
                    };
                }
                match work(store, batch).await {
                    Ok(value) => Done {
                        wrote: true,
                        finish: Box::new(move |committed| {
                            let _ = sender.send(committed.map(|()| value).map_err(Into::into));
                        }),
                    },
                    Err(err) => Done {
                        wrote: false,
                        finish: Box::new(move |_| {
                            let _ = sender.send(Err(err));
                        }),
                    },
                }
            })
        });
        self.group.push(Job { reads, run });
        let mut receiver = receiver;
        // The job's result, or the turn: whoever holds the turn runs the queue, this job
        // included, so a result that comes first needs no turn.
        tokio::select! {
            biased;
            result = &mut receiver => {
                return result.unwrap_or_else(|_| {
                    Err(self.batch_failed("the batch holding it failed").into())
                });
            }
            turn = Arc::clone(&self.group.turn).lock_owned() => self.take_turn(turn).await,
        }
        receiver
            .await
            .unwrap_or_else(|_| Err(self.batch_failed("the batch holding it failed").into()))
    }

    /// Runs every queued job, batch after batch, in a task of its own that holds the turn.
    async fn take_turn(&self, turn: tokio::sync::OwnedMutexGuard<()>) {
        if self.group.is_empty() {
            return;
        }
        let store = self.clone();
        let batches = tokio::spawn(async move {
            match store.ctx.backend {
                Backend::Sqlite => store.sqlite_batches().await,
                Backend::Postgres => store.postgres_batches().await,
            }
            drop(turn);
        });
        // A panicking job ends its batch (its callers get an error); the turn is released.
        let _ = batches.await;
    }

    /// SQLite has one writer at a time: each batch commits before the next begins, all on one
    /// connection, taken back by the pool only when the queue is empty (or after a failed
    /// batch, in case the connection broke), so a batch that follows another does not wait
    /// for the pool.
    async fn sqlite_batches(&self) {
        let mut conn: Option<PoolConnection<Any>> = None;
        loop {
            let jobs = self.group.take();
            if jobs.is_empty() {
                break;
            }
            let mut finishes = Vec::with_capacity(jobs.len());
            let committed = async {
                let conn = match &mut conn {
                    Some(conn) => conn,
                    None => conn.insert(
                        self.pool
                            .acquire()
                            .await
                            .map_err(|e| self.commit_failed(e))?,
                    ),
                };
                let tx = conn.begin().await.map_err(|e| self.commit_failed(e))?;
                let tx = self.batch_work(tx, jobs, &mut finishes).await?;
                tx.commit().await.map_err(|e| self.commit_failed(e))
            }
            .await;
            if committed.is_err() {
                conn = None;
            }
            self.finish_batch(finishes, committed);
        }
    }

    /// On PostgreSQL a batch's commit (its flush to disk) runs in a task of its own while the
    /// next batch begins on another connection: that batch waits, in the database, for the
    /// head's lock only until the commit is done, then reads what it wrote. So at most two
    /// batches are under way, one committing and one working.
    async fn postgres_batches(&self) {
        loop {
            let jobs = self.group.take();
            if jobs.is_empty() {
                break;
            }
            let mut finishes = Vec::with_capacity(jobs.len());
            let worked = async {
                let tx = (self.pool.begin_with(PG_BEGIN_LOCKED).await)
                    .map_err(|e| self.commit_failed(e))?;
                self.batch_work(tx, jobs, &mut finishes).await
            }
            .await;
            match worked {
                Ok(tx) => {
                    let store = self.clone();
                    tokio::spawn(async move {
                        let committed = tx.commit().await.map_err(|e| store.commit_failed(e));
                        store.finish_batch(finishes, committed);
                    });
                }
                Err(err) => self.finish_batch(finishes, Err(err)),
            }
        }
    }

    fn commit_failed(&self, err: sqlx::Error) -> StoreError {
        self.ctx.query_failed("commit SCIM writes", err)
    }

    /// Tells every job's caller how its batch ended: the first of a failed batch gets the
    /// error itself, the others one that names it.
    fn finish_batch(&self, finishes: Vec<Finish>, committed: Result<(), StoreError>) {
        match committed {
            Ok(()) => finishes.into_iter().for_each(|finish| finish(Ok(()))),
            Err(err) => {
                let cause = err.to_string();
                let mut first = Some(err);
                for finish in finishes {
                    finish(Err(first
                        .take()
                        .unwrap_or_else(|| self.batch_failed(&cause))));
                }
            }
        }
    }

    /// Runs the jobs of one batch in `tx` (begun; on PostgreSQL holding the head's lock) and
    /// writes what they handed over; the caller commits. Each job's finish is pushed to
    /// `finishes`, to be told once the commit is known.
    async fn batch_work<'c>(
        &self,
        tx: Transaction<'c, Any>,
        jobs: Vec<Job>,
        finishes: &mut Vec<Finish>,
    ) -> Result<Transaction<'c, Any>, StoreError> {
        let mut batch = Batch {
            tx,
            backend: self.ctx.backend,
            rows: HashMap::new(),
            deferred: HashMap::new(),
            written: Vec::with_capacity(jobs.len()),
            events: Vec::with_capacity(jobs.len()),
        };
        let reads: Vec<&ResourceKey> = jobs.iter().filter_map(|job| job.reads.as_ref()).collect();
        let head = self.head_and_rows(&mut batch, &reads).await?;
        for job in jobs {
            let mark = batch.mark();
            let done = (job.run)(&mut batch).await;
            if !done.wrote {
                batch.rewind(mark);
            }
            finishes.push(done.finish);
        }
        self.flush(&mut batch, head).await?;
        Ok(batch.tx)
    }

    /// Reads the audit head under its lock (on SQLite the statement takes the database's
    /// write lock first; on PostgreSQL the BEGIN took the head row's) and every row the jobs
    /// named, in one statement. The rows need no lock of their own: every write of a SCIM
    /// resource is a batch's, which holds the head's lock, or one of the store's opening
    /// clean-ups, which writes only over the text it read; so none changes them before this
    /// batch commits.
    async fn head_and_rows(
        &self,
        batch: &mut Batch<'_>,
        reads: &[&ResourceKey],
    ) -> Result<airlock_audit::Head, StoreError> {
        const OP: &str = "commit SCIM writes";
        let fail = |err| self.ctx.query_failed(OP, err);
        let mut sql = String::from(match batch.backend {
            Backend::Sqlite => "UPDATE audit_head SET seq = seq WHERE id = 1;\n",
            Backend::Postgres => "",
        });
        sql.push_str("SELECT 'head', '', seq, 0, hash, NULL FROM audit_head WHERE id = 1");
        let mut params: Vec<&str> = Vec::new();
        for resource_type in ["User", "Group"] {
            let mut ids: Vec<&str> = (reads.iter())
                .filter(|(rt, _)| rt == resource_type)
                .map(|(_, id)| id.as_str())
                .collect();
            if ids.is_empty() {
                continue;
            }
            ids.sort_unstable();
            ids.dedup();
            params.push(resource_type);
            sql.push_str(&format!(
                " UNION ALL SELECT resource_type, id, version, created_ms, resource_json, \
                 unique_key FROM scim_resources WHERE resource_type = ${} AND id IN (",
                params.len()
            ));
            for (n, id) in ids.into_iter().enumerate() {
                params.push(id);
                sql.push_str(&format!(
                    "{}${}",
                    if n > 0 { ", " } else { "" },
                    params.len()
                ));
                batch
                    .rows
                    .insert((resource_type.to_owned(), id.to_owned()), None);
            }
            sql.push(')');
        }
        let mut query = sqlx::query(&sql);
        for param in params {
            query = query.bind(param);
        }
        let mut head = None;
        for row in query.fetch_all(&mut *batch.tx).await.map_err(fail)? {
            let kind: String = row.try_get(0).map_err(fail)?;
            let id: String = row.try_get(1).map_err(fail)?;
            let version: i64 = row.try_get(2).map_err(fail)?;
            let text: String = row.try_get(4).map_err(fail)?;
            if kind == "head" {
                head = Some(self.head_of(OP, (version, text))?);
                continue;
            }
            let locked = LockedRow {
                version,
                created_ms: row.try_get(3).map_err(fail)?,
                text,
                unique_key: row.try_get(5).map_err(fail)?,
            };
            batch.rows.insert((kind, id), Some(locked));
        }
        head.ok_or_else(|| self.head_missing(OP))
    }

    /// Writes what the jobs handed over, in one round trip: the deferred updates (each must
    /// find its row at the version the batch read, or the batch fails: it holds the rows'
    /// locks, so this cannot happen), a pending change of every write for each registered
    /// consumer, and the audit events after `head` (jobs hand their events to the batch, so
    /// the head is still the one read first).
    async fn flush(
        &self,
        batch: &mut Batch<'_>,
        head: airlock_audit::Head,
    ) -> Result<(), StoreError> {
        use crate::Param::{Int, Text};
        const OP: &str = "commit SCIM writes";
        let fail = |err| self.ctx.query_failed(OP, err);
        let mut statements = crate::Statements::default();
        let deferred: Vec<(ResourceKey, Deferred)> = batch.deferred.drain().collect();
        if !deferred.is_empty() {
            let rows = deferred.iter().map(|((resource_type, id), d)| {
                vec![
                    Text(Some(resource_type.clone())),
                    Text(Some(id.clone())),
                    Text(d.write.unique_key.clone()),
                    Text(d.write.external_id.clone()),
                    Int(d.write.version),
                    Int(d.write.modified_ms),
                    Text(Some(d.write.text.clone())),
                    Int(d.stored_version),
                ]
            });
            let values = statements.rows(rows);
            statements.push_returning(format!(
                "UPDATE scim_resources AS r SET unique_key = v.column3, \
                 external_id = v.column4, version = v.column5, modified_ms = v.column6, \
                 resource_json = v.column7 FROM (VALUES {values}) AS v \
                 WHERE r.resource_type = v.column1 AND r.id = v.column2 \
                 AND r.version = v.column8 RETURNING 1"
            ));
        }
        if !batch.written.is_empty() {
            // The writes joined with the consumers, read here in the write's transaction, so
            // a write reaches every instance any replica serves. A change's id is its write's
            // uuid v7 and the consumer's name: a consumer's changes sort as they were written.
            let rows = batch.written.iter().map(|w| {
                vec![
                    Text(Some(uuid::Uuid::now_v7().to_string())),
                    Text(Some(w.resource_type.clone())),
                    Text(Some(w.id.clone())),
                    Text(w.previous.clone()),
                    Int(w.changed_ms),
                    Text(Some(w.client.clone())),
                ]
            });
            let values = statements.rows(rows);
            statements.push(format!(
                "INSERT INTO scim_changes (id, consumer, resource_type, resource_id, \
                 previous_json, changed_ms, client) \
                 SELECT v.column1 || ':' || c.name, c.name, v.column2, v.column3, v.column4, \
                 v.column5, v.column6 FROM scim_consumers AS c CROSS JOIN (VALUES {values}) AS v"
            ));
        }
        Store::append_statements(&mut statements, head, std::mem::take(&mut batch.events));
        if statements.is_empty() {
            return Ok(());
        }
        let sql = statements.sql(batch.backend);
        let updated = statements
            .query(&sql)
            .fetch_all(&mut *batch.tx)
            .await
            .map_err(fail)?
            .len();
        if updated != deferred.len() {
            return Err(self.ctx.query_failed(
                OP,
                sqlx::Error::Protocol(format!(
                    "{} of {} resources changed under the batch's lock",
                    deferred.len().saturating_sub(updated),
                    deferred.len()
                )),
            ));
        }
        Ok(())
    }

    /// The error every other caller of a failed batch gets (the first gets the original).
    fn batch_failed(&self, cause: &str) -> StoreError {
        self.ctx.query_failed(
            "commit SCIM writes",
            sqlx::Error::Protocol(format!("the write's batch did not commit: {cause}")),
        )
    }
}
