//! Counters of the calls a client made: how many of each kind, how many retries, and how long
//! was spent waiting on Airflow. Used by benchmarks and reported by `--stats`.

use crate::error::Call;
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// Calls made by one client so far.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CallStats {
    /// HTTP requests sent, by kind (each retry counts).
    pub calls: BTreeMap<Call, u64>,
    /// Retries among them.
    pub retries: u64,
    /// Total time requests were in flight (summed over concurrent requests).
    pub waiting: Duration,
}

impl CallStats {
    /// All requests sent.
    pub fn total(&self) -> u64 {
        self.calls.values().sum()
    }

    /// Requests of one kind.
    pub fn of(&self, call: Call) -> u64 {
        self.calls.get(&call).copied().unwrap_or(0)
    }

    /// The calls made since `before` was taken from the same client.
    pub fn since(&self, before: &CallStats) -> CallStats {
        CallStats {
            calls: self
                .calls
                .iter()
                .map(|(k, v)| (*k, v.saturating_sub(before.of(*k))))
                .filter(|(_, v)| *v > 0)
                .collect(),
            retries: self.retries.saturating_sub(before.retries),
            waiting: self.waiting.saturating_sub(before.waiting),
        }
    }
}

#[derive(Default)]
pub(crate) struct StatsRecorder {
    calls: [AtomicU64; Call::ALL.len()],
    retries: AtomicU64,
    waiting_micros: AtomicU64,
}

impl StatsRecorder {
    pub(crate) fn record(&self, call: Call, took: Duration) {
        if let Some(i) = Call::ALL.iter().position(|c| *c == call) {
            self.calls[i].fetch_add(1, Ordering::Relaxed);
        }
        let micros = u64::try_from(took.as_micros()).unwrap_or(u64::MAX);
        self.waiting_micros.fetch_add(micros, Ordering::Relaxed);
    }

    pub(crate) fn retry(&self) {
        self.retries.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn snapshot(&self) -> CallStats {
        let calls = Call::ALL
            .iter()
            .zip(&self.calls)
            .map(|(c, n)| (*c, n.load(Ordering::Relaxed)))
            .filter(|(_, n)| *n > 0)
            .collect();
        CallStats {
            calls,
            retries: self.retries.load(Ordering::Relaxed),
            waiting: Duration::from_micros(self.waiting_micros.load(Ordering::Relaxed)),
        }
    }
}
