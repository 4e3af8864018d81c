//! Group commit of SCIM writes: writes that arrive while another batch is committing are
//! applied together, in one transaction with one flush to disk, each inside its own
//! savepoint.
//!
//! Every SCIM write appends to the audit chain, so writes take turns at the chain's head lock
//! however many run at once; with one transaction each, the service commits (and flushes) once
//! per write. Here a write becomes a job in a queue. The first writer to find the turn free
//! runs every queued job (at most [`MAX_BATCH`] per transaction, until the queue is empty) and
//! commits; the others wait for their job's result, which is sent only after the commit that
//! made it durable. A job that fails rolls back to its savepoint and leaves the others
//! untouched; a failed commit fails every job of the batch.
//!
//! - Lock order: a batch takes the audit head's lock before anything else, so batches of
//!   different replicas (or of two stores on one database) never wait for each other's row
//!   locks while holding the head.
//! - Cancellation: a batch runs in its own task, so a request that gives up (its client went
//!   away, or the 10 s request limit) neither aborts the writes of others nor leaves the turn
//!   taken. A queued job whose caller has gone is skipped, never applied later.

use std::sync::{Arc, Mutex, PoisonError};

use futures::future::BoxFuture;
use sqlx::{Acquire as _, Any, Transaction};
use tokio::sync::oneshot;

use crate::scim::ScimWriteError;
use crate::{Store, StoreError};

/// The most writes one transaction applies.
pub(crate) const MAX_BATCH: usize = 128;

/// Tells a job's caller how its write ended, once the batch's commit is known.
type Finish = Box<dyn FnOnce(Result<(), StoreError>) + Send>;

/// What a job reports to its batch.
struct Done {
    /// It wrote: keep its savepoint. Otherwise roll back to it.
    wrote: bool,
    finish: Finish,
}

/// One write, run by whichever caller's turn it is, inside a savepoint of the batch.
type Job = Box<dyn for<'t, 'c> FnOnce(&'t mut Transaction<'c, Any>) -> BoxFuture<'t, Done> + Send>;

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
    /// returns its result once it is committed. `work` gets a savepoint of the batch's
    /// transaction; on error everything it wrote is rolled back.
    pub(crate) async fn in_group_commit<T, E, W>(&self, work: W) -> Result<T, ScimWriteError<E>>
    where
        T: Send + 'static,
        E: Send + 'static,
        W: for<'t, 'c> FnOnce(
                Store,
                &'t mut Transaction<'c, Any>,
            ) -> BoxFuture<'t, Result<T, ScimWriteError<E>>>
            + Send
            + 'static,
    {
        let (sender, receiver) = oneshot::channel();
        let store = self.clone();
        let job: Job = Box::new(move |tx| {
            Box::pin(async move {
                if sender.is_closed() {
                    // Its caller has gone: as if its transaction had been rolled back.
                    return Done {
                        wrote: false,
                        finish: Box::new(|_| ()),
                    };
                }
                match work(store, tx).await {
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
        self.group.push(job);
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
        let mut tx = self.pool.begin().await.map_err(fail)?;
        self.lock_audit_head(&mut tx, OP).await?;
        for job in jobs {
            let mut savepoint = tx.begin().await.map_err(fail)?;
            let done = job(&mut savepoint).await;
            if done.wrote {
                savepoint.commit().await.map_err(fail)?;
            } else {
                savepoint.rollback().await.map_err(fail)?;
            }
            finishes.push(done.finish);
        }
        tx.commit().await.map_err(fail)
    }

    /// The error every other caller of a failed batch gets (the first gets the original).
    fn batch_failed(&self, cause: &str) -> StoreError {
        self.ctx.query_failed(
            "commit SCIM writes",
            sqlx::Error::Protocol(format!("the write's batch did not commit: {cause}")),
        )
    }
}
