//! Leases: which `airlock serve` replica may apply to an instance.
//!
//! On PostgreSQL a lease is a session-level advisory lock held on a dedicated connection: it is
//! released when the holder releases it, closes the connection, or dies (the server ends the
//! session), so another replica takes over at its next attempt. On SQLite there is only ever
//! one process (a file store is not shared between replicas), and a lease is always granted.

use crate::{Backend, Store, StoreError};
use sqlx::pool::PoolConnection;
use sqlx::Any;

/// A held lease; dropping it releases the lock (PostgreSQL closes the session).
pub struct Lease {
    name: String,
    conn: Option<PoolConnection<Any>>,
}

impl std::fmt::Debug for Lease {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Lease")
            .field("name", &self.name)
            .finish_non_exhaustive()
    }
}

impl Lease {
    /// The lease's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Checks the lease is still held (the holding connection is alive).
    pub async fn is_alive(&mut self) -> bool {
        match self.conn.as_mut() {
            None => true,
            Some(conn) => sqlx::query("SELECT 1").execute(&mut **conn).await.is_ok(),
        }
    }
}

impl Drop for Lease {
    fn drop(&mut self) {
        // Detaching closes the session rather than returning it, locks and all, to the pool.
        if let Some(conn) = self.conn.take() {
            drop(conn.detach());
        }
    }
}

/// A stable 63-bit key for an advisory lock, from the lease name (FNV-1a: no dependency and
/// the same on every replica and build).
fn lock_key(name: &str) -> i64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in format!("airlock-lease:{name}").bytes() {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    i64::try_from(h >> 1).unwrap_or(i64::MAX)
}

impl Store {
    /// Tries to take the lease `name` without waiting; `None` if another replica holds it.
    pub async fn try_lease(&self, name: &str) -> Result<Option<Lease>, StoreError> {
        if self.backend() == Backend::Sqlite {
            return Ok(Some(Lease {
                name: name.to_string(),
                conn: None,
            }));
        }
        let mut conn = self
            .pool
            .acquire()
            .await
            .map_err(|e| self.ctx.query_failed("take lease", e))?;
        let got: bool = sqlx::query_scalar("SELECT pg_try_advisory_lock($1)")
            .bind(lock_key(name))
            .fetch_one(&mut *conn)
            .await
            .map_err(|e| self.ctx.query_failed("take lease", e))?;
        Ok(got.then(|| Lease {
            name: name.to_string(),
            conn: Some(conn),
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::lock_key;

    #[test]
    fn lock_keys_are_stable_and_distinct() {
        assert_eq!(lock_key("af3"), lock_key("af3"));
        assert_ne!(lock_key("af3"), lock_key("af2"));
        assert!(lock_key("x") >= 0);
    }
}
