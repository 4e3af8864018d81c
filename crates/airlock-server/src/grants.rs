//! The expiring-grant watcher of `airlock serve`: every `serve.scim_poll_ms`, the grants that
//! end within the policy's `[access] expiring_notice` are recorded as expiring
//! (`access_grant.expiring`, once per grant however many replicas look:
//! `airlock_engine::access::note_expiring`); notification webhooks announce them from the
//! audit trail. A failure is a log line and the next poll tries again.

use airlock_core::access::AccessPolicy;
use airlock_core::Clock;
use airlock_store::Store;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::watch;

/// Watches until `stop` turns true.
pub(crate) async fn run(
    store: Store,
    policy: AccessPolicy,
    clock: Arc<dyn Clock>,
    poll: Duration,
    mut stop: watch::Receiver<bool>,
) {
    loop {
        match airlock_engine::access::note_expiring(&store, clock.as_ref(), &policy).await {
            Ok(noted) => {
                for r in noted {
                    tracing::info!(request = %r.id, requester = %r.requester, "grant about to end");
                }
            }
            Err(e) => tracing::warn!(error = %e, "cannot note the grants about to end"),
        }
        tokio::select! {
            _ = tokio::time::sleep(poll) => {}
            _ = stop.wait_for(|s| *s) => break,
        }
    }
}
