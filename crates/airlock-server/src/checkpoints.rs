//! The checkpoint task of `airlock serve`: every `[audit.checkpoints] interval_secs` (and once
//! at start), when the audit chain grew since the newest checkpoint, signs one and writes it to
//! the configured destinations (`airlock_engine::checkpoint::write`, which refuses to sign a
//! chain that does not verify or that contradicts the last checkpoint). A failure is a log line
//! and the next interval tries again; the key never appears in a log.
//!
//! The schedule runs on `tokio::time` (paused in tests); a checkpoint carries no timestamp, so
//! the wall clock is not needed.

use airlock_config::CheckpointConfig;
use airlock_engine::checkpoint::{write, Written};
use airlock_store::Store;
use tokio::sync::watch;

/// Writes checkpoints until `stop` turns true.
pub(crate) async fn run(store: Store, cfg: CheckpointConfig, mut stop: watch::Receiver<bool>) {
    let mut tick = tokio::time::interval(cfg.interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = stop.wait_for(|s| *s) => break,
        }
        match write(&store, &cfg, true).await {
            Ok(Written::Written { head, .. }) => tracing::info!(
                key = cfg.signer.name(),
                size = head.seq,
                head = %head.hash,
                "audit checkpoint written"
            ),
            Ok(Written::Unchanged { head }) => tracing::debug!(
                size = head.seq,
                "audit chain unchanged since the last checkpoint"
            ),
            Err(e) => {
                tracing::error!(error = %e, "audit checkpoint not written; retrying at the next interval")
            }
        }
    }
}
