//! CPU-bound work called from async code (planning 100,000 people, filtering or patching
//! thousands of SCIM resources): it must not stall the runtime's worker, or every other task
//! on it (lease renewals, health checks, other requests) waits behind it.
//!
//! [`cpu_bound`] runs the work with [`tokio::task::block_in_place`] on a multi-threaded
//! runtime (as `airlock serve` and the CLI use), which hands the worker's other tasks to
//! another thread for as long as the work runs, and runs it inline anywhere else (a
//! current-thread runtime, as in most tests, or no runtime). Unlike `spawn_blocking`, the work
//! may borrow, so callers need not copy their inputs.
//!
//! Moving the worker costs a thread hand-off (tens of microseconds, and wake-ups on both
//! sides): more than patching or printing one small resource takes. [`cpu_bound_when`] runs
//! work the caller knows to be small inline.

use tokio::runtime::{Handle, RuntimeFlavor};

/// Runs `work`, moving the current task's worker out of the way first where the runtime can.
pub fn cpu_bound<R>(work: impl FnOnce() -> R) -> R {
    match Handle::try_current() {
        Ok(handle) if handle.runtime_flavor() == RuntimeFlavor::MultiThread => {
            tokio::task::block_in_place(work)
        }
        _ => work(),
    }
}

/// [`cpu_bound`] when `heavy`, else `work` inline: for work whose size the caller knows (one
/// user, a group of a few members) and that would cost less than moving the worker.
pub fn cpu_bound_when<R>(heavy: bool, work: impl FnOnce() -> R) -> R {
    if heavy {
        cpu_bound(work)
    } else {
        work()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn runs_without_a_runtime() {
        assert_eq!(cpu_bound(|| 41 + 1), 42);
    }

    #[tokio::test(flavor = "current_thread")]
    async fn runs_inline_on_a_current_thread_runtime() {
        assert_eq!(cpu_bound(|| "inline"), "inline");
    }

    /// While one task runs CPU-bound work, the other tasks of its worker keep running: the
    /// work waits for a message only another task can send, which would deadlock if the
    /// work held the runtime's only worker.
    #[tokio::test(flavor = "multi_thread", worker_threads = 1)]
    async fn other_tasks_run_while_the_work_runs() {
        let (tx, rx) = std::sync::mpsc::channel();
        let (go_tx, go_rx) = tokio::sync::oneshot::channel::<()>();
        tokio::spawn(async move {
            let _ = go_rx.await;
            let _ = tx.send("from another task");
        });
        let got = cpu_bound(move || {
            let _ = go_tx.send(());
            rx.recv_timeout(std::time::Duration::from_secs(30))
        });
        assert_eq!(got, Ok("from another task"));
    }
}
