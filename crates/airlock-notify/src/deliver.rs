//! The delivery loop of one outlet (a webhook, or an audit sink) in `airlock serve`. Under the
//! outlet's lease (one replica delivers), each round:
//!
//! reads the audit events after the outlet's cursor (an outlet seen for the first time starts
//! at the current end of the trail: it is not sent the past), sends what each makes, in order,
//! and moves the cursor past each event once it is acknowledged (a webhook's 2xx; a stream's
//! flush for the page it wrote), or once it is known to make nothing.
//!
//! A failed send stops the round where it is; the next round (after 1 s, doubling up to
//! 5 min) starts again from the cursor, so nothing is skipped and an event is posted again
//! only if its acknowledgement was not recorded (at least once, duplicates with the same id).
//! The time of the notices is the injected clock's; the pauses are `tokio::time`'s.

use crate::webhook::SendError;
use airlock_audit::AuditEvent;
use airlock_core::Clock;
use airlock_engine::lease::{LeaseKeeper, Taken};
use airlock_store::{Store, StoreError};
use chrono::{DateTime, Utc};
use futures::future::BoxFuture;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::watch;

/// Audit events read per page.
const PAGE: u32 = 200;
/// The longest pause after failures.
const MAX_BACKOFF: Duration = Duration::from_secs(300);

/// Where the loop reports what it did (the service's metrics).
pub trait Report: Send + Sync {
    /// Something of `kind` was delivered (a notice's kind, or `event` for a sink).
    fn delivered(&self, outlet: &str, kind: &str);
    /// A send (or a store read) failed.
    fn failed(&self, outlet: &str);
    /// Audit events not yet looked at by the outlet.
    fn backlog(&self, outlet: &str, events: u64);
}

/// What an outlet did with one audit event.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Sent {
    /// The event makes nothing for this outlet.
    Nothing,
    /// Delivered and acknowledged (e.g. a webhook's 2xx), of this kind.
    Acked(&'static str),
    /// Handed over, acknowledged only by the next [`Outlet::flush`] (e.g. a stream).
    Buffered(&'static str),
}

/// Where a delivery loop sends what the audit trail records: a webhook's notices, or a
/// sink's encoded events.
pub trait Outlet: Send + Sync {
    /// The name of its cursor in the store (and in logs and metrics).
    fn cursor(&self) -> &str;
    /// The lease under which one replica sends (default: the cursor's name).
    fn lease(&self) -> String {
        self.cursor().to_owned()
    }
    /// Sends what `event` makes, if anything.
    fn send<'a>(
        &'a self,
        event: &'a AuditEvent,
        now: DateTime<Utc>,
    ) -> BoxFuture<'a, Result<Sent, SendError>>;
    /// Makes everything [`Sent::Buffered`] since the last flush acknowledged.
    fn flush(&self) -> BoxFuture<'_, Result<(), SendError>> {
        Box::pin(async { Ok(()) })
    }
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

/// The delivery of one outlet.
pub struct Delivery {
    /// Where to.
    pub outlet: Arc<dyn Outlet>,
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

impl Delivery {
    fn name(&self) -> &str {
        self.outlet.cursor()
    }

    fn holding(&self) -> bool {
        self.keeper
            .fence(&self.outlet.lease())
            .is_some_and(|f| f.is_current())
    }

    /// Delivers until `stop` turns true, then releases the lease.
    pub async fn run(self, mut stop: watch::Receiver<bool>) {
        let lease = self.outlet.lease();
        let mut failures = 0u32;
        loop {
            if *stop.borrow() {
                break;
            }
            if !self.holding() {
                match self.keeper.acquire(&lease).await {
                    Ok(Taken::Granted(_)) => {
                        tracing::info!(outlet = %self.name(), "delivering the audit trail from this replica");
                    }
                    Ok(Taken::Held(_)) => {
                        if pause(self.lease_retry, &mut stop).await {
                            break;
                        }
                        continue;
                    }
                    Err(e) => {
                        tracing::warn!(outlet = %self.name(), error = %e, "cannot take the delivery lease");
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
                    tracing::warn!(outlet = %self.name(), error = %e, retry_in_secs = wait.as_secs(), "not delivered; it will be retried");
                    wait
                }
            };
            if pause(wait, &mut stop).await {
                break;
            }
        }
        if let Err(e) = self.keeper.release(&lease).await {
            tracing::debug!(outlet = %self.name(), error = %e, "delivery lease not released; it expires by itself");
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
                tracing::info!(outlet = %name, from = head, "new outlet: delivering from the current end of the audit trail");
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
            let mut buffered = Vec::new();
            for e in &events {
                if !self.holding() {
                    return Err(RoundError::LeaseLost);
                }
                match self.outlet.send(e, self.clock.now()).await {
                    Ok(Sent::Nothing) => {}
                    Ok(Sent::Acked(kind)) if buffered.is_empty() => {
                        self.report.delivered(name, kind);
                        self.store
                            .advance_delivery_cursor(name, e.seq, now_ms())
                            .await?;
                    }
                    Ok(Sent::Acked(kind) | Sent::Buffered(kind)) => buffered.push(kind),
                    Err(err) => return Err(err.into()),
                }
            }
            if !buffered.is_empty() {
                self.outlet.flush().await?;
                for kind in buffered {
                    self.report.delivered(name, kind);
                }
            }
            self.store
                .advance_delivery_cursor(name, last, now_ms())
                .await?;
            cursor = last;
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
