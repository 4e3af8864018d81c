//! Holding leases: the one thing that allows a process to write to an Airflow instance
//! (docs/adr/0006).
//!
//! A [`LeaseKeeper`] takes leases in the store for one holder id (a process), renews all of
//! them with one statement per heartbeat, and knows locally until when each is safe to use:
//! the start of the last successful renewal plus the lease's time to live, less a margin. A
//! [`Fence`] is one held lease; the engine asks it before every Airflow write (in memory, no
//! round trip) and writes each operation's intent under its epoch (a store statement that
//! fails once another process took the lease over), so a process that lost a lease — it was
//! frozen, cut off, or slow — stops before its next write.
//!
//! What this does not do: decide which leases to take (the service and the CLI do).

use airlock_core::Clock;
use airlock_store::{Acquire, Fencing, LeaseRow, Store, StoreError};
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::time::Instant;

/// The lease an instance's writes happen under.
pub fn instance_lease(instance: &str) -> String {
    format!("instance:{instance}")
}

/// A readable, unique holder id for this process: `KIND on HOST (pid N, XXXXXXXX)`.
pub fn holder_id(kind: &str) -> String {
    let host = host_name();
    let nonce = uuid::Uuid::new_v4().simple().to_string();
    format!(
        "{kind} on {host} (pid {}, {})",
        std::process::id(),
        &nonce[..8]
    )
}

/// This host's name, as holder ids carry it.
fn host_name() -> String {
    std::env::var("HOSTNAME")
        .ok()
        .filter(|h| !h.is_empty())
        .or_else(|| {
            std::fs::read_to_string("/etc/hostname")
                .ok()
                .map(|h| h.trim().to_string())
        })
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "unknown-host".into())
}

/// Whether `holder` (a [`holder_id`]) names a process on this host that no longer exists: its
/// lease is stale and can be taken over at once (a restart after a crash need not wait for
/// the lease to expire). A holder on another host, or one whose pid is alive (or reused), is
/// left to expire.
pub fn holder_is_dead_here(holder: &str) -> bool {
    let Some((_, rest)) = holder.rsplit_once(" on ") else {
        return false;
    };
    let Some((host, rest)) = rest.split_once(" (pid ") else {
        return false;
    };
    let Some(pid) = rest
        .split(',')
        .next()
        .and_then(|p| p.trim().parse::<u32>().ok())
    else {
        return false;
    };
    host == host_name()
        && pid != std::process::id()
        && std::path::Path::new("/proc/self").exists()
        && !std::path::Path::new(&format!("/proc/{pid}")).exists()
}

struct Held {
    epoch: i64,
    /// Local deadline (monotonic): past it, the lease may have been taken over.
    valid_until: Instant,
}

struct Inner {
    store: Store,
    holder: String,
    ttl: Duration,
    clock: Arc<dyn Clock + Send + Sync>,
    held: Mutex<BTreeMap<String, Held>>,
}

/// Takes, renews and releases one process's leases. Cheap to clone.
#[derive(Clone)]
pub struct LeaseKeeper {
    inner: Arc<Inner>,
}

/// One held lease, as the engine checks it before each write. Cheap to clone.
#[derive(Clone)]
pub struct Fence {
    inner: Arc<Inner>,
    name: String,
    epoch: i64,
}

impl std::fmt::Debug for Fence {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Fence")
            .field("name", &self.name)
            .field("epoch", &self.epoch)
            .finish()
    }
}

/// What [`LeaseKeeper::acquire`] found.
#[derive(Debug)]
pub enum Taken {
    /// Ours now.
    Granted(Fence),
    /// Another process holds it.
    Held(LeaseRow),
}

fn ms(d: Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
}

impl LeaseKeeper {
    /// A keeper for `holder` (see [`holder_id`]) whose leases live `ttl` unless renewed.
    pub fn new(
        store: Store,
        holder: String,
        ttl: Duration,
        clock: Arc<dyn Clock + Send + Sync>,
    ) -> LeaseKeeper {
        LeaseKeeper {
            inner: Arc::new(Inner {
                store,
                holder,
                ttl,
                clock,
                held: Mutex::new(BTreeMap::new()),
            }),
        }
    }

    /// This process's holder id.
    pub fn holder(&self) -> &str {
        &self.inner.holder
    }

    /// The time to live of a lease.
    pub fn ttl(&self) -> Duration {
        self.inner.ttl
    }

    /// How much before its expiry a lease stops being used locally: a fifth of the ttl, so a
    /// renewal that is slow or lost never lets two processes write at once (clocks in step).
    fn margin(&self) -> Duration {
        self.inner.ttl / 5
    }

    fn now_ms(&self) -> i64 {
        self.inner.clock.now().timestamp_millis()
    }

    /// Takes lease `name` if it is free or expired.
    pub async fn acquire(&self, name: &str) -> Result<Taken, StoreError> {
        let started = Instant::now();
        let mut got = self
            .inner
            .store
            .acquire_lease(name, &self.inner.holder, self.now_ms(), ms(self.inner.ttl))
            .await?;
        if let Acquire::Held(row) = &got {
            if holder_is_dead_here(&row.holder) {
                tracing::info!(lease = %name, stale = %row.holder, "taking over the lease of a process that is gone");
                got = self
                    .inner
                    .store
                    .take_over_lease(
                        name,
                        &self.inner.holder,
                        &row.holder,
                        row.epoch,
                        self.now_ms(),
                        ms(self.inner.ttl),
                    )
                    .await?;
            }
        }
        match got {
            Acquire::Granted(g) => {
                let held = Held {
                    epoch: g.epoch,
                    valid_until: started + self.inner.ttl - self.margin(),
                };
                self.lock().insert(name.to_string(), held);
                Ok(Taken::Granted(Fence {
                    inner: self.inner.clone(),
                    name: name.to_string(),
                    epoch: g.epoch,
                }))
            }
            Acquire::Held(row) => {
                self.lock().remove(name);
                Ok(Taken::Held(row))
            }
        }
    }

    /// The fence of lease `name` if this process holds it and it is still safe to use.
    pub fn fence(&self, name: &str) -> Option<Fence> {
        let held = self.lock();
        let h = held.get(name)?;
        (Instant::now() < h.valid_until).then(|| Fence {
            inner: self.inner.clone(),
            name: name.to_string(),
            epoch: h.epoch,
        })
    }

    /// Names of the leases held and still safe to use.
    pub fn held(&self) -> Vec<String> {
        let now = Instant::now();
        self.lock()
            .iter()
            .filter(|(_, h)| now < h.valid_until)
            .map(|(n, _)| n.clone())
            .collect()
    }

    /// Renews every lease this process holds, in one statement; forgets the ones another
    /// process took over. A failed renewal changes nothing locally: the leases run out on
    /// their own local deadline.
    pub async fn renew(&self) -> Result<(), StoreError> {
        if self.lock().is_empty() {
            return Ok(());
        }
        let started = Instant::now();
        let renewed = self
            .inner
            .store
            .renew_leases(&self.inner.holder, self.now_ms(), ms(self.inner.ttl))
            .await?;
        let until = started + self.inner.ttl - self.margin();
        let mut held = self.lock();
        held.retain(|name, h| {
            let kept = renewed.iter().any(|(n, e)| n == name && *e == h.epoch);
            if kept {
                h.valid_until = until;
            } else {
                tracing::warn!(lease = %name, epoch = h.epoch, "lease taken over by another process");
            }
            kept
        });
        Ok(())
    }

    /// Gives lease `name` up (the next taker need not wait for it to expire).
    pub async fn release(&self, name: &str) -> Result<(), StoreError> {
        let epoch = self.lock().remove(name).map(|h| h.epoch);
        if let Some(epoch) = epoch {
            self.inner
                .store
                .release_lease(name, &self.inner.holder, epoch)
                .await?;
        }
        Ok(())
    }

    /// Gives every lease up.
    pub async fn release_all(&self) {
        let names: Vec<String> = self.lock().keys().cloned().collect();
        for name in names {
            if let Err(e) = self.release(&name).await {
                tracing::debug!(lease = %name, error = %e, "could not release a lease; it expires by itself");
            }
        }
    }

    /// Renews the leases every third of their ttl until `stop` turns true; each renewal may
    /// take at most that long (a store that does not answer is a failed renewal).
    pub fn spawn_heartbeat(
        &self,
        mut stop: tokio::sync::watch::Receiver<bool>,
    ) -> tokio::task::JoinHandle<()> {
        let keeper = self.clone();
        tokio::spawn(async move {
            let every = (keeper.inner.ttl / 3).max(Duration::from_millis(100));
            loop {
                tokio::select! {
                    _ = tokio::time::sleep(every) => {}
                    _ = stop.changed() => return,
                }
                if *stop.borrow() {
                    return;
                }
                match tokio::time::timeout(every, keeper.renew()).await {
                    Ok(Ok(())) => {}
                    Ok(Err(e)) => tracing::warn!(error = %e, "cannot renew leases"),
                    Err(_) => tracing::warn!("cannot renew leases: the store did not answer"),
                }
            }
        })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, BTreeMap<String, Held>> {
        // A panic while holding this lock leaves a consistent map (single inserts/removes).
        self.inner
            .held
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

impl Fence {
    /// The lease's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The epoch (fencing token) of this tenure.
    pub fn epoch(&self) -> i64 {
        self.epoch
    }

    /// The holder id.
    pub fn holder(&self) -> &str {
        &self.inner.holder
    }

    /// Whether the lease is still ours under this epoch and inside its local deadline.
    pub fn is_current(&self) -> bool {
        let held = self
            .inner
            .held
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        held.get(&self.name)
            .is_some_and(|h| h.epoch == self.epoch && Instant::now() < h.valid_until)
    }

    /// `Ok` if current, else the error a write reports.
    pub fn check(&self) -> Result<(), StoreError> {
        if self.is_current() {
            Ok(())
        } else {
            Err(StoreError::LeaseLost {
                lease: self.name.clone(),
                epoch: self.epoch,
            })
        }
    }

    /// What the store's fenced statements need.
    pub fn fencing(&self) -> Fencing<'_> {
        Fencing {
            lease: &self.name,
            holder: &self.inner.holder,
            epoch: self.epoch,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_holder_on_this_host_whose_process_is_gone_is_dead_and_others_are_not() {
        let me = holder_id("airlock serve");
        assert!(!holder_is_dead_here(&me), "{me}");
        let gone = format!(
            "airlock serve on {} (pid 4000000000, abcdef12)",
            host_name()
        );
        assert!(holder_is_dead_here(&gone));
        assert!(!holder_is_dead_here(
            "airlock serve on elsewhere (pid 4000000000, abcdef12)"
        ));
        assert!(!holder_is_dead_here("garbage"));
    }
}
