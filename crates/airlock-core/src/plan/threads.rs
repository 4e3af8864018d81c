//! How the planner spreads large inputs over the machine's cores: the same rule and the same
//! scoped threads for the people part of `desired` and for the join of `plan_instance`.

use std::num::NonZeroUsize;

/// Below this many items (people, or accounts desired plus held), work runs on one thread.
pub(super) const PARALLEL_MIN: usize = 20_000;
/// The most threads one piece of work is spread over.
pub(super) const MAX_PARTS: usize = 8;

/// How many parts to cut `size` items into: one below [`PARALLEL_MIN`], else as many as there
/// are cores (at most [`MAX_PARTS`], each of at least half [`PARALLEL_MIN`] items).
pub(super) fn parts_for(size: usize) -> usize {
    if size < PARALLEL_MIN {
        return 1;
    }
    std::thread::available_parallelism()
        .map_or(1, NonZeroUsize::get)
        .min(MAX_PARTS)
        .min(size / (PARALLEL_MIN / 2))
}

/// Runs `work` on every job, the first on this thread and each other on its own scoped
/// thread, and returns the results in the jobs' order (a panic in one is resumed here). The
/// threads do no I/O: the planner stays a pure function.
pub(super) fn in_order<J, T, F>(jobs: impl IntoIterator<Item = J>, work: F) -> Vec<T>
where
    J: Send,
    T: Send,
    F: Fn(J) -> T + Sync,
{
    let mut jobs = jobs.into_iter();
    let Some(first) = jobs.next() else {
        return Vec::new();
    };
    let work = &work;
    std::thread::scope(|s| {
        let rest: Vec<_> = jobs.map(|job| s.spawn(move || work(job))).collect();
        let first = work(first);
        std::iter::once(first)
            .chain(rest.into_iter().map(|h| {
                h.join()
                    .unwrap_or_else(|panic| std::panic::resume_unwind(panic))
            }))
            .collect()
    })
}
