//! The login snapshots of `airlock serve`: every `serve.login_snapshot_secs`, one replica per
//! instance (under the lease `logins:<instance>`) takes an inventory snapshot, which records
//! the logins since the previous snapshot in the audit trail (`account.login`, and
//! `break_glass.use` for a protected account: `airlock_engine::inventory`). Airflow records no
//! logins; the interval bounds the window each login is placed in. A failure (Airflow down) is
//! a log line and a metric; the next snapshot's window then covers the gap, so no login is
//! missed, only placed less precisely.

use crate::State;
use airlock_config::InstanceConfig;
use airlock_core::inventory::FlagRules;
use airlock_core::Clock;
use airlock_engine::inventory::{self, LoginWatch};
use airlock_engine::lease::{LeaseKeeper, Taken};
use airlock_store::Store;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::watch;

/// One instance's login snapshots.
pub(crate) struct LoginSnapshots {
    pub(crate) inst: InstanceConfig,
    pub(crate) watch: LoginWatch,
    pub(crate) rules: FlagRules,
    pub(crate) store: Store,
    pub(crate) clock: Arc<dyn Clock>,
    pub(crate) keeper: LeaseKeeper,
    pub(crate) state: Arc<State>,
    pub(crate) every: Duration,
    pub(crate) lease_retry: Duration,
}

/// Sleeps `d` or until `stop`; whether the service is stopping.
async fn pause(d: Duration, stop: &mut watch::Receiver<bool>) -> bool {
    if *stop.borrow() {
        return true;
    }
    tokio::select! {
        _ = tokio::time::sleep(d) => *stop.borrow(),
        _ = stop.changed() => true,
    }
}

impl LoginSnapshots {
    /// Takes snapshots until `stop`, then releases the lease.
    pub(crate) async fn run(self, mut stop: watch::Receiver<bool>) {
        let name = self.inst.name.to_string();
        let lease = format!("logins:{name}");
        loop {
            let holding = self.keeper.fence(&lease).is_some_and(|f| f.is_current());
            if !holding {
                match self.keeper.acquire(&lease).await {
                    Ok(Taken::Granted(_)) => {
                        tracing::debug!(instance = %name, "login snapshots taken by this replica");
                    }
                    Ok(Taken::Held(_)) => {
                        if pause(self.lease_retry, &mut stop).await {
                            break;
                        }
                        continue;
                    }
                    Err(e) => {
                        tracing::warn!(instance = %name, error = %e, "cannot take the login snapshot lease");
                        if pause(self.lease_retry, &mut stop).await {
                            break;
                        }
                        continue;
                    }
                }
            }
            // A slow or unreachable Airflow never holds up a shutdown: the snapshot is dropped
            // (left incomplete, so no window is recorded from it).
            tokio::select! {
                () = self.once(&name) => {}
                _ = stop.wait_for(|s| *s) => break,
            }
            if pause(self.every, &mut stop).await {
                break;
            }
        }
        if let Err(e) = self.keeper.release(&lease).await {
            tracing::debug!(instance = %name, error = %e, "login snapshot lease not released; it expires by itself");
        }
    }

    async fn once(&self, name: &str) {
        let m = &self.state.metrics;
        let taken = match airlock_engine::client_for(&self.inst) {
            Ok(client) => {
                inventory::run(
                    &client,
                    &self.store,
                    self.clock.as_ref(),
                    self.rules,
                    &self.watch,
                )
                .await
            }
            Err(e) => Err(e),
        };
        match taken {
            Ok(outcome) => {
                m.login_snapshots
                    .with_label_values(&[name, "succeeded"])
                    .inc();
                m.logins
                    .with_label_values(&[name])
                    .inc_by(outcome.logins.len() as u64);
                for who in &outcome.break_glass {
                    m.break_glass.with_label_values(&[name]).inc();
                    tracing::warn!(instance = %name, account = %who, "a protected (break-glass) account was used");
                }
            }
            Err(e) => {
                m.login_snapshots.with_label_values(&[name, "failed"]).inc();
                tracing::warn!(instance = %name, error = %e, "login snapshot failed; the next one covers the gap");
            }
        }
    }
}
