//! The delivery loop of one webhook in `airlock serve`. Under the lease `notify:<name>` (one
//! replica delivers), each round:
//!
//! reads the audit events after the webhook's cursor (a webhook seen for the first time
//! starts at the current end of the trail: it is not sent the past), posts the notice of each
//! one it wants, in order, and moves the cursor past each event once its POST was answered 2xx
//! (or once it is known to need none). A grant about to end is an audit event too
//! (`access_grant.expiring`, recorded by the service's watcher).
//!
//! A failed POST stops the round where it is; the next round (after 1 s, doubling up to
//! 5 min) starts again from the cursor, so nothing is skipped and an event is posted again
//! only if its acknowledgement was not recorded (at least once, duplicates with the same id).
//! The time of the notices is the injected clock's; the pauses are `tokio::time`'s.

use crate::notice::from_event;
use crate::webhook::{SendError, Webhook};
use airlock_core::Clock;
use airlock_engine::lease::{LeaseKeeper, Taken};
use airlock_store::{Store, StoreError};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::watch;

/// Audit events read per page.
const PAGE: u32 = 200;
/// The longest pause after failures.
const MAX_BACKOFF: Duration = Duration::from_secs(300);

/// The lease under which one replica delivers a webhook's notices.
pub fn lease_name(webhook: &str) -> String {
    format!("notify:{webhook}")
}

/// Where the loop reports what it did (the service's metrics).
pub trait Report: Send + Sync {
    /// A notice of `kind` was delivered.
    fn delivered(&self, webhook: &str, kind: &str);
    /// A POST (or a store read) failed.
    fn failed(&self, webhook: &str);
    /// Audit events not yet looked at by the webhook.
    fn backlog(&self, webhook: &str, events: u64);
}

/// Why a round stopped.
#[derive(Debug, thiserror::Error)]
enum RoundError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Send(#[from] SendError),
    #[error("the lease was lost")]
    LeaseLost,
}

/// One webhook's delivery.
pub struct Notifier {
    /// The sender.
    pub webhook: Webhook,
    /// The store (audit trail, cursor).
    pub store: Store,
    /// The time of the cursor's updates and of the signatures.
    pub clock: Arc<dyn Clock>,
    /// The replica's leases.
    pub keeper: LeaseKeeper,
    /// Metrics.
    pub report: Arc<dyn Report>,
    /// Pause between rounds.
    pub poll: Duration,
    /// Pause between attempts to take the lease.
    pub lease_retry: Duration,
}

async fn pause(d: Duration, stop: &mut watch::Receiver<bool>) -> bool {
    if *stop.borrow() {
        return true;
    }
    tokio::select! {
        _ = tokio::time::sleep(d) => *stop.borrow(),
        _ = stop.changed() => true,
    }
}

fn backoff(failures: u32) -> Duration {
    Duration::from_secs(1u64 << failures.saturating_sub(1).min(9)).min(MAX_BACKOFF)
}

impl Notifier {
    fn name(&self) -> &str {
        &self.webhook.config().name
    }

    fn holding(&self) -> bool {
        self.keeper
            .fence(&lease_name(self.name()))
            .is_some_and(|f| f.is_current())
    }

    fn wants(&self, kind: &str) -> bool {
        self.webhook.config().events.contains(kind)
    }

    /// Delivers until `stop` turns true, then releases the lease.
    pub async fn run(self, mut stop: watch::Receiver<bool>) {
        let lease = lease_name(self.name());
        let mut failures = 0u32;
        loop {
            if *stop.borrow() {
                break;
            }
            if !self.holding() {
                match self.keeper.acquire(&lease).await {
                    Ok(Taken::Granted(_)) => {
                        tracing::info!(webhook = %self.name(), "delivering notifications from this replica");
                    }
                    Ok(Taken::Held(_)) => {
                        if pause(self.lease_retry, &mut stop).await {
                            break;
                        }
                        continue;
                    }
                    Err(e) => {
                        tracing::warn!(webhook = %self.name(), error = %e, "cannot take the notification lease");
                        if pause(self.lease_retry, &mut stop).await {
                            break;
                        }
                        continue;
                    }
                }
            }
            let wait = match self.round().await {
                Ok(()) => {
                    failures = 0;
                    self.poll
                }
                Err(RoundError::LeaseLost) => Duration::ZERO,
                Err(e) => {
                    failures = failures.saturating_add(1);
                    self.report.failed(self.name());
                    let wait = backoff(failures);
                    tracing::warn!(webhook = %self.name(), error = %e, retry_in_secs = wait.as_secs(), "notification not delivered; it will be retried");
                    wait
                }
            };
            if pause(wait, &mut stop).await {
                break;
            }
        }
        if let Err(e) = self.keeper.release(&lease).await {
            tracing::debug!(webhook = %self.name(), error = %e, "notification lease not released; it expires by itself");
        }
    }

    async fn round(&self) -> Result<(), RoundError> {
        let name = self.name();
        let now_ms = || self.clock.now().timestamp_millis();
        let mut cursor = match self.store.delivery_cursor(name).await? {
            Some(c) => c,
            None => {
                let head = self.store.audit_head().await?.seq;
                self.store
                    .advance_delivery_cursor(name, head, now_ms())
                    .await?;
                tracing::info!(webhook = %name, from = head, "new webhook: notifying from the current end of the audit trail");
                head
            }
        };
        loop {
            let events = self
                .store
                .audit_events(cursor.saturating_add(1), PAGE)
                .await?;
            let Some(last) = events.last().map(|e| e.seq) else {
                break;
            };
            for e in &events {
                if let Some(n) = from_event(e).filter(|n| self.wants(n.kind)) {
                    if !self.holding() {
                        return Err(RoundError::LeaseLost);
                    }
                    if let Err(err) = self.webhook.send(&n, self.clock.now()).await {
                        self.store
                            .advance_delivery_cursor(name, cursor, now_ms())
                            .await?;
                        return Err(err.into());
                    }
                    self.report.delivered(name, n.kind);
                    self.store
                        .advance_delivery_cursor(name, e.seq, now_ms())
                        .await?;
                }
                cursor = e.seq;
            }
            self.store
                .advance_delivery_cursor(name, last, now_ms())
                .await?;
            if events.len() < PAGE as usize {
                break;
            }
        }
        let head = self.store.audit_head().await?.seq;
        self.report.backlog(name, head.saturating_sub(cursor));
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retries_back_off_from_one_second_to_five_minutes() {
        assert_eq!(backoff(1), Duration::from_secs(1));
        assert_eq!(backoff(2), Duration::from_secs(2));
        assert_eq!(backoff(5), Duration::from_secs(16));
        assert_eq!(backoff(9), Duration::from_secs(256));
        assert_eq!(backoff(10), MAX_BACKOFF);
        assert_eq!(backoff(u32::MAX), MAX_BACKOFF);
    }
}
