//! The leaver watch of `airlock serve` (a JumpCloud directory with `insights = true`): every
//! `directory.insights_poll_secs`, one replica (under the lease `insights`) reads Directory
//! Insights for people suspended or deleted since the last read, then the audit trail for the
//! removals of their access, and observes each first removal per leaver and instance in
//! `airlock_time_to_deprovision_seconds` (docs: `airlock_engine::leavers`). What is recorded is
//! durable, so a restart or another replica neither loses nor counts a figure twice. A failure
//! (JumpCloud unreachable) is a log line; the next read covers the gap.

use crate::State;
use airlock_core::policy::UsernameRule;
use airlock_core::Clock;
use airlock_directory::jumpcloud::insights::Insights;
use airlock_engine::lease::{LeaseKeeper, Taken};
use airlock_engine::leavers;
use airlock_store::Store;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::watch;

const LEASE: &str = "insights";

/// The leaver watch.
pub(crate) struct LeaverWatch {
    pub(crate) insights: Insights,
    pub(crate) rule: UsernameRule,
    pub(crate) store: Store,
    pub(crate) clock: Arc<dyn Clock>,
    pub(crate) keeper: LeaseKeeper,
    pub(crate) state: Arc<State>,
    pub(crate) poll: Duration,
    pub(crate) lease_retry: Duration,
}

impl LeaverWatch {
    /// Watches until `stop`, then releases the lease.
    pub(crate) async fn run(self, mut stop: watch::Receiver<bool>) {
        loop {
            let holding = self.keeper.fence(LEASE).is_some_and(|f| f.is_current());
            let wait = if holding || self.take().await {
                tokio::select! {
                    () = self.once() => {}
                    _ = stop.wait_for(|s| *s) => break,
                }
                self.poll
            } else {
                self.lease_retry
            };
            tokio::select! {
                _ = tokio::time::sleep(wait) => {}
                _ = stop.wait_for(|s| *s) => break,
            }
        }
        if let Err(e) = self.keeper.release(LEASE).await {
            tracing::debug!(error = %e, "leaver watch lease not released; it expires by itself");
        }
    }

    async fn take(&self) -> bool {
        match self.keeper.acquire(LEASE).await {
            Ok(Taken::Granted(_)) => true,
            Ok(Taken::Held(_)) => false,
            Err(e) => {
                tracing::warn!(error = %e, "cannot take the leaver watch lease");
                false
            }
        }
    }

    async fn once(&self) {
        let m = &self.state.metrics;
        let clock = self.clock.as_ref();
        let new = match leavers::ingest(&self.store, &self.insights, &self.rule, clock).await {
            Ok(new) => new,
            Err(e) => {
                tracing::warn!(error = %e, "cannot read JumpCloud Directory Insights; the next read covers the gap");
                Vec::new()
            }
        };
        for l in &new {
            m.leavers.with_label_values(&[&l.kind]).inc();
            tracing::info!(person = %l.person, username = %l.username, kind = %l.kind, "a leaver in the identity provider");
        }
        match leavers::correlate(&self.store, clock, &new).await {
            Ok(done) => {
                for (l, d) in done {
                    let secs = (d.removed_ms - l.at_ms) as f64 / 1000.0;
                    m.time_to_deprovision
                        .with_label_values(&[&d.instance])
                        .observe(secs.max(0.0));
                    tracing::info!(username = %l.username, instance = %d.instance, seconds = secs, "leaver deprovisioned");
                }
            }
            Err(e) => tracing::warn!(error = %e, "cannot match leavers with the audit trail"),
        }
    }
}
