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
//! - What a job writes: the resource's row, with at most one statement, its last (on
//!   PostgreSQL, one that may fail as expected, on a unique key, runs in a savepoint of its
//!   own: [`Batch::execute_guarded`]). The pending changes and audit events a write makes are
//!   not written by the job: it hands them to the [`Batch`], which drops those of a job that
//!   failed and writes the others at the end, in a few multi-row statements, the consumers
//!   and the audit head read once. So a failed job leaves nothing behind, and a batch of n
//!   writes costs about n + 9 statements instead of 10n: the rows the jobs will update or
//!   delete are read (and locked) together too, before the first job runs.
//!
//! - Lock order: a batch takes the audit head's lock before anything else, so batches of
//!   different replicas (or of two stores on one database) never wait for each other's row
//!   locks while holding the head.
//! - Cancellation: a batch runs in its own task, so a request that gives up (its client went
//!   away, or the 10 s request limit) neither aborts the writes of others nor leaves the turn
//!   taken. A queued job whose caller has gone is skipped, never applied later.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};

use airlock_audit::NewEvent;
use futures::future::BoxFuture;
use sqlx::any::{AnyArguments, AnyQueryResult};
use sqlx::query::Query;
use sqlx::{Acquire as _, Any, Row as _, Transaction};
use tokio::sync::oneshot;

use crate::scim::ScimWriteError;
use crate::{Backend, Store, StoreError};

/// The most writes one transaction applies.
pub(crate) const MAX_BATCH: usize = 128;

/// Ids per prefetching SELECT.
const PREFETCH_CHUNK: usize = 500;

/// Change rows per multi-row INSERT: well under both databases' limits on bound parameters.
const CHANGES_PER_INSERT: usize = 500;

/// A write to a SCIM resource, of which every registered consumer gets a pending change.
pub(crate) struct Written {
    pub(crate) resource_type: String,
    pub(crate) id: String,
    /// The resource's stored text before the write (none for a creation).
    pub(crate) previous: Option<String>,
    pub(crate) changed_ms: i64,
    pub(crate) client: String,
}

/// A stored resource's row, read under its lock.
pub(crate) struct LockedRow {
    pub(crate) version: i64,
    pub(crate) created_ms: i64,
    /// `resource_json`, as stored.
    pub(crate) text: String,
    pub(crate) unique_key: Option<String>,
}

/// A resource a job reads and writes: its type and id.
pub(crate) type ResourceKey = (String, String);

/// The transaction of one batch, and what its jobs hand it to write at the end.
pub(crate) struct Batch<'c> {
    pub(crate) tx: Transaction<'c, Any>,
    backend: Backend,
    /// The rows the batch's jobs named, read (and locked) together before the first job
    /// runs: `None` for one that does not exist. A job takes its row out, so a second job on
    /// the same resource reads it again, as the first left it.
    prefetched: HashMap<ResourceKey, Option<LockedRow>>,
    written: Vec<Written>,
    events: Vec<NewEvent>,
}

impl Batch<'_> {
    /// The row of `key` as the batch read it before its first job, once: `None` when it was
    /// not read then, or another job has taken it since (read it from the database).
    pub(crate) fn take_prefetched(
        &mut self,
        resource_type: &str,
        id: &str,
    ) -> Option<Option<LockedRow>> {
        self.prefetched
            .remove(&(resource_type.to_owned(), id.to_owned()))
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
        self.take_turn().await;
        receiver
            .await
            .unwrap_or_else(|_| Err(self.batch_failed("the batch holding it failed").into()))
    }

    /// Waits for the turn and runs every queued job, batch after batch, in a task of its own.
    async fn take_turn(&self) {
        let turn = Arc::clone(&self.group.turn).lock_owned().await;
        let store = self.clone();
        let batches = tokio::spawn(async move {
            loop {
                let jobs = store.group.take();
                if jobs.is_empty() {
                    break;
                }
                store.run_batch(jobs).await;
            }
            drop(turn);
        });
        // A panicking job ends its batch (its callers get an error); the turn is released.
        let _ = batches.await;
    }

    async fn run_batch(&self, jobs: Vec<Job>) {
        let mut finishes = Vec::with_capacity(jobs.len());
        match self.batch_transaction(jobs, &mut finishes).await {
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

    async fn batch_transaction(
        &self,
        jobs: Vec<Job>,
        finishes: &mut Vec<Finish>,
    ) -> Result<(), StoreError> {
        const OP: &str = "commit SCIM writes";
        let fail = |err| self.ctx.query_failed(OP, err);
        let tx = self.pool.begin().await.map_err(fail)?;
        let mut batch = Batch {
            tx,
            backend: self.ctx.backend,
            prefetched: HashMap::new(),
            written: Vec::with_capacity(jobs.len()),
            events: Vec::with_capacity(jobs.len()),
        };
        self.lock_audit_head(&mut batch.tx, OP).await?;
        let reads: Vec<&ResourceKey> = jobs.iter().filter_map(|job| job.reads.as_ref()).collect();
        self.prefetch(&mut batch, &reads).await?;
        for job in jobs {
            let mark = batch.mark();
            let done = (job.run)(&mut batch).await;
            if !done.wrote {
                batch.rewind(mark);
            }
            finishes.push(done.finish);
        }
        self.record_changes(&mut batch.tx, &batch.written).await?;
        let events = std::mem::take(&mut batch.events);
        self.append_audit_under_lock(&mut batch.tx, events).await?;
        batch.tx.commit().await.map_err(fail)
    }

    /// Reads (and on PostgreSQL locks) every row the jobs named, in one statement per
    /// resource type.
    async fn prefetch(
        &self,
        batch: &mut Batch<'_>,
        reads: &[&ResourceKey],
    ) -> Result<(), StoreError> {
        let fail = |err| self.ctx.query_failed("read SCIM resources", err);
        for resource_type in ["User", "Group"] {
            let mut ids: Vec<&str> = (reads.iter())
                .filter(|(rt, _)| rt == resource_type)
                .map(|(_, id)| id.as_str())
                .collect();
            ids.sort_unstable();
            ids.dedup();
            for chunk in ids.chunks(PREFETCH_CHUNK) {
                let mut sql = String::from(
                    "SELECT id, version, created_ms, resource_json, unique_key \
                     FROM scim_resources WHERE resource_type = $1 AND id IN (",
                );
                for n in 0..chunk.len() {
                    if n > 0 {
                        sql.push_str(", ");
                    }
                    sql.push_str(&format!("${}", n + 2));
                }
                sql.push(')');
                if batch.backend == Backend::Postgres {
                    // The batch holds the audit head's lock, which every SCIM write takes
                    // first: locking many rows at once cannot deadlock with another batch.
                    sql.push_str(" FOR UPDATE");
                }
                let mut query = sqlx::query(&sql).bind(resource_type);
                for id in chunk {
                    query = query.bind(*id);
                }
                let rows = query.fetch_all(&mut *batch.tx).await.map_err(fail)?;
                for id in chunk {
                    batch
                        .prefetched
                        .insert((resource_type.to_owned(), (*id).to_owned()), None);
                }
                for row in rows {
                    let id: String = row.try_get(0).map_err(fail)?;
                    let locked = LockedRow {
                        version: row.try_get(1).map_err(fail)?,
                        created_ms: row.try_get(2).map_err(fail)?,
                        text: row.try_get(3).map_err(fail)?,
                        unique_key: row.try_get(4).map_err(fail)?,
                    };
                    batch
                        .prefetched
                        .insert((resource_type.to_owned(), id), Some(locked));
                }
            }
        }
        Ok(())
    }

    /// A pending change of every write for each registered consumer. The consumers are read
    /// here, in the write's transaction, so a write reaches every instance any replica
    /// serves, whatever the config of the replica that received it.
    async fn record_changes(
        &self,
        tx: &mut Transaction<'_, Any>,
        written: &[Written],
    ) -> Result<(), StoreError> {
        const OP: &str = "record SCIM changes";
        let fail = |err| self.ctx.query_failed(OP, err);
        if written.is_empty() {
            return Ok(());
        }
        let consumers: Vec<String> =
            sqlx::query_scalar("SELECT name FROM scim_consumers ORDER BY name")
                .fetch_all(&mut **tx)
                .await
                .map_err(fail)?;
        let rows: Vec<(&Written, &String)> = written
            .iter()
            .flat_map(|w| consumers.iter().map(move |c| (w, c)))
            .collect();
        for chunk in rows.chunks(CHANGES_PER_INSERT) {
            let sql = crate::values_sql(
                "INSERT INTO scim_changes (id, consumer, resource_type, resource_id, \
                 previous_json, changed_ms, client) VALUES ",
                7,
                chunk.len(),
            );
            let mut query = sqlx::query(&sql);
            for (w, consumer) in chunk {
                query = query
                    // uuid v7: the changes of one batch sort in the order they were made.
                    .bind(uuid::Uuid::now_v7().to_string())
                    .bind((*consumer).clone())
                    .bind(w.resource_type.clone())
                    .bind(w.id.clone())
                    .bind(w.previous.clone())
                    .bind(w.changed_ms)
                    .bind(w.client.clone());
            }
            query.execute(&mut **tx).await.map_err(fail)?;
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
