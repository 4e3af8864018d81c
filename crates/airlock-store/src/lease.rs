//! Leases: which process may write to an Airflow instance, on both backends (docs/adr/0006).
//!
//! A lease is a row: its holder, an epoch and an expiry. It is taken when the row is absent
//! or expired (the epoch then grows by one), kept by renewing the expiry (one statement per
//! heartbeat for all of a holder's leases), and released by expiring it. No connection is
//! held between statements, so leases never pin the pool, and a holder that vanished (killed,
//! frozen, cut off) loses its leases when they expire, whatever happened to its sockets.
//!
//! The epoch is the fencing token: the write-ahead journal inserts an operation's intent only
//! while the lease still has that holder and epoch and has not expired (`journal.rs`), so a
//! holder that lost its lease cannot start another Airflow write.
//!
//! Times are the caller's clock in unix milliseconds (the store never reads a clock); holders
//! on different hosts must keep their clocks in step.

use crate::{Store, StoreError};
use sqlx::Row as _;

/// A lease this process holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LeaseGrant {
    /// The lease's name (`instance:NAME`, `serve`).
    pub name: String,
    /// Who holds it (this process).
    pub holder: String,
    /// The fencing token of this tenure.
    pub epoch: i64,
    /// When it expires unless renewed.
    pub expires_ms: i64,
}

/// A lease as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LeaseRow {
    /// Name.
    pub name: String,
    /// Last holder.
    pub holder: String,
    /// Epoch of the last tenure.
    pub epoch: i64,
    /// When that tenure began.
    pub acquired_ms: i64,
    /// Last renewal.
    pub renewed_ms: i64,
    /// Expiry; a lease past it is free.
    pub expires_ms: i64,
}

/// What [`Store::acquire_lease`] found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Acquire {
    /// Taken (or already ours): write under this epoch.
    Granted(LeaseGrant),
    /// Another holder has it until `expires_ms`.
    Held(LeaseRow),
}

const LEASE_COLUMNS: &str = "name, holder, epoch, acquired_ms, renewed_ms, expires_ms";

fn lease_row(row: &sqlx::any::AnyRow) -> Result<LeaseRow, sqlx::Error> {
    Ok(LeaseRow {
        name: row.try_get(0)?,
        holder: row.try_get(1)?,
        epoch: row.try_get(2)?,
        acquired_ms: row.try_get(3)?,
        renewed_ms: row.try_get(4)?,
        expires_ms: row.try_get(5)?,
    })
}

impl Store {
    /// Takes lease `name` for `holder` until `now_ms + ttl_ms` if it is free, expired, or
    /// already `holder`'s (then it is renewed under the same epoch); otherwise says who holds
    /// it. Two processes racing for a free lease: exactly one gets it.
    pub async fn acquire_lease(
        &self,
        name: &str,
        holder: &str,
        now_ms: i64,
        ttl_ms: i64,
    ) -> Result<Acquire, StoreError> {
        let fail = |e| self.ctx.query_failed("take lease", e);
        let expires = now_ms.saturating_add(ttl_ms);
        let mut tx = self.lease_pool.begin().await.map_err(fail)?;
        // First come: the row does not exist yet.
        let inserted = sqlx::query(
            "INSERT INTO leases (name, holder, epoch, acquired_ms, renewed_ms, expires_ms) \
             VALUES ($1, $2, 1, $3, $3, $4) ON CONFLICT (name) DO NOTHING",
        )
        .bind(name)
        .bind(holder)
        .bind(now_ms)
        .bind(expires)
        .execute(&mut *tx)
        .await
        .map_err(fail)?
        .rows_affected();
        if inserted == 0 {
            // Ours already: renew. Expired: a new tenure with the next epoch. The row lock
            // (PostgreSQL) or the write lock (SQLite) makes the check and the write one step.
            sqlx::query(
                "UPDATE leases SET \
                   epoch = CASE WHEN holder = $2 THEN epoch ELSE epoch + 1 END, \
                   acquired_ms = CASE WHEN holder = $2 THEN acquired_ms ELSE $3 END, \
                   holder = $2, renewed_ms = $3, expires_ms = $4 \
                 WHERE name = $1 AND (holder = $2 OR expires_ms <= $3)",
            )
            .bind(name)
            .bind(holder)
            .bind(now_ms)
            .bind(expires)
            .execute(&mut *tx)
            .await
            .map_err(fail)?;
        }
        let row = sqlx::query(&format!(
            "SELECT {LEASE_COLUMNS} FROM leases WHERE name = $1"
        ))
        .bind(name)
        .fetch_one(&mut *tx)
        .await
        .map_err(fail)?;
        let row = lease_row(&row).map_err(fail)?;
        tx.commit().await.map_err(fail)?;
        if row.holder == holder && row.expires_ms == expires {
            Ok(Acquire::Granted(LeaseGrant {
                name: row.name,
                holder: row.holder,
                epoch: row.epoch,
                expires_ms: row.expires_ms,
            }))
        } else {
            Ok(Acquire::Held(row))
        }
    }

    /// Takes lease `name` over from `stale_holder`'s tenure `stale_epoch` even before it
    /// expires (the caller knows that process is gone: same host, no such pid). Fails over to
    /// [`Acquire::Held`] if anything changed meanwhile.
    pub async fn take_over_lease(
        &self,
        name: &str,
        holder: &str,
        stale_holder: &str,
        stale_epoch: i64,
        now_ms: i64,
        ttl_ms: i64,
    ) -> Result<Acquire, StoreError> {
        let fail = |e| self.ctx.query_failed("take over lease", e);
        sqlx::query(
            "UPDATE leases SET holder = $2, epoch = epoch + 1, acquired_ms = $5, renewed_ms = $5, \
             expires_ms = $6 WHERE name = $1 AND holder = $3 AND epoch = $4",
        )
        .bind(name)
        .bind(holder)
        .bind(stale_holder)
        .bind(stale_epoch)
        .bind(now_ms)
        .bind(now_ms.saturating_add(ttl_ms))
        .execute(&self.lease_pool)
        .await
        .map_err(fail)?;
        self.acquire_lease(name, holder, now_ms, ttl_ms).await
    }

    /// Renews every lease `holder` still holds to `now_ms + ttl_ms`; returns them (name and
    /// epoch). A lease missing from the answer was taken over by someone else.
    pub async fn renew_leases(
        &self,
        holder: &str,
        now_ms: i64,
        ttl_ms: i64,
    ) -> Result<Vec<(String, i64)>, StoreError> {
        let fail = |e| self.ctx.query_failed("renew leases", e);
        let mut tx = self.lease_pool.begin().await.map_err(fail)?;
        sqlx::query("UPDATE leases SET renewed_ms = $2, expires_ms = $3 WHERE holder = $1")
            .bind(holder)
            .bind(now_ms)
            .bind(now_ms.saturating_add(ttl_ms))
            .execute(&mut *tx)
            .await
            .map_err(fail)?;
        let rows = sqlx::query("SELECT name, epoch FROM leases WHERE holder = $1 ORDER BY name")
            .bind(holder)
            .fetch_all(&mut *tx)
            .await
            .map_err(fail)?;
        tx.commit().await.map_err(fail)?;
        rows.iter()
            .map(|r| Ok((r.try_get(0)?, r.try_get(1)?)))
            .collect::<Result<_, sqlx::Error>>()
            .map_err(fail)
    }

    /// Gives lease `name` up if `holder` still holds it under `epoch` (it expires at once, so
    /// the next taker needs no wait).
    pub async fn release_lease(
        &self,
        name: &str,
        holder: &str,
        epoch: i64,
    ) -> Result<(), StoreError> {
        sqlx::query(
            "UPDATE leases SET expires_ms = 0 WHERE name = $1 AND holder = $2 AND epoch = $3",
        )
        .bind(name)
        .bind(holder)
        .bind(epoch)
        .execute(&self.lease_pool)
        .await
        .map_err(|e| self.ctx.query_failed("release lease", e))?;
        Ok(())
    }

    /// Whether `holder` still holds `name` under `epoch` at `now_ms`.
    pub async fn lease_is_current(
        &self,
        name: &str,
        holder: &str,
        epoch: i64,
        now_ms: i64,
    ) -> Result<bool, StoreError> {
        let n: i64 = sqlx::query_scalar(
            "SELECT COUNT(*) FROM leases WHERE name = $1 AND holder = $2 AND epoch = $3 \
             AND expires_ms > $4",
        )
        .bind(name)
        .bind(holder)
        .bind(epoch)
        .bind(now_ms)
        .fetch_one(&self.pool)
        .await
        .map_err(|e| self.ctx.query_failed("check lease", e))?;
        Ok(n > 0)
    }

    /// Every lease row, by name (expired ones included: the caller compares with its clock).
    pub async fn leases(&self) -> Result<Vec<LeaseRow>, StoreError> {
        let fail = |e| self.ctx.query_failed("read leases", e);
        let rows = sqlx::query(&format!("SELECT {LEASE_COLUMNS} FROM leases ORDER BY name"))
            .fetch_all(&self.pool)
            .await
            .map_err(fail)?;
        rows.iter()
            .map(lease_row)
            .collect::<Result<_, _>>()
            .map_err(fail)
    }

    /// Answers one trivial query: whether the store is reachable now. It goes through the
    /// small lease pool, as renewals do: when syncs and SCIM requests hold every connection of
    /// the main pool, the store is busy, not unreachable, and a readiness probe waiting behind
    /// them would take a loaded replica out of service.
    pub async fn ping(&self) -> Result<(), StoreError> {
        sqlx::query("SELECT 1")
            .execute(&self.lease_pool)
            .await
            .map_err(|e| self.ctx.query_failed("ping", e))?;
        Ok(())
    }

    /// Connections the pools hold now: (open, idle), the lease pool's included.
    pub fn pool_connections(&self) -> (u32, usize) {
        (
            self.pool.size() + self.lease_pool.size(),
            self.pool.num_idle() + self.lease_pool.num_idle(),
        )
    }
}

#[cfg(test)]
mod tests {
    use crate::{OpenOptions, Store};
    use std::time::Duration;

    /// Syncs and SCIM requests holding every connection of the main pool make the store busy,
    /// not unreachable: the readiness ping still answers, through the lease pool.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn the_ping_answers_while_every_main_pool_connection_is_taken() {
        let dir = tempfile::tempdir().expect("temp dir");
        let url = format!("sqlite://{}", dir.path().join("airlock.db").display());
        let opts = OpenOptions {
            max_connections: Some(2),
            ..OpenOptions::create()
        };
        let store = Store::open(&url, opts).await.expect("store");
        let held = [
            store.pool.acquire().await.expect("first"),
            store.pool.acquire().await.expect("second"),
        ];
        // The main pool is exhausted: one more query there would wait.
        assert!(
            tokio::time::timeout(Duration::from_millis(200), store.pool.acquire())
                .await
                .is_err(),
            "the main pool had a connection left"
        );
        tokio::time::timeout(Duration::from_secs(10), store.ping())
            .await
            .expect("the ping waited behind the main pool")
            .expect("the ping failed");
        drop(held);
    }
}
