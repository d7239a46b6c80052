//! What a frame cost, read after `run_frame` returns.

use core::time::Duration;

/// Figures for the last frame a [`Scheduler`](crate::Scheduler) ran.
///
/// ```
/// # let mut scheduler = frame_scheduler::Scheduler::builder().workers(2).build().unwrap();
/// scheduler.run_frame(async |frame| {
///     for _ in 0..10 { frame.spawn(async {}); }
/// });
/// let stats = scheduler.last_frame_stats();
/// assert_eq!(stats.index, 0);
/// assert_eq!(stats.jobs, 10);
/// assert!(stats.arena_bytes > 0);
/// ```
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct FrameStats {
    /// The frame's number (`Frame::index`).
    pub index: u64,
    /// Jobs spawned in the frame (all kinds, nested ones included; the root future is not a job).
    pub jobs: u64,
    /// Of `jobs`, those spawned with `spawn_local`.
    pub local_jobs: u64,
    /// Of `jobs`, those spawned from threads that are not workers.
    pub foreign_jobs: u64,
    /// Bytes of arena used by the frame's jobs and counters, over every arena.
    pub arena_bytes: usize,
    /// Bytes of frame memory kept for the next frames after this one's reset: each worker's
    /// own block and the free blocks of the shared pool.
    pub arena_capacity: usize,
    /// Arena blocks that held the frame's allocations.
    pub arena_blocks: usize,
    /// Of `arena_blocks`, those workers took from the shared pool (or the system) beyond their
    /// own: memory lent where the work landed.
    pub arena_blocks_borrowed: usize,
    /// Allocations too big to share a block (over a quarter of `arena_block_size`), which got
    /// a chunk of their own.
    pub arena_large: usize,
    /// Bytes of frame memory returned to the system at this frame's end (see
    /// `SchedulerBuilder::arena_trim_after`).
    pub arena_trimmed: usize,
    /// Jobs a worker took from another worker's queue (each job of a batch steal counts).
    pub steals: u64,
    /// Panics caught in the frame (jobs, root, output destructors). The first was resumed.
    pub panics: usize,
    /// Wall time from the start of `run_frame` until every job had finished and arenas were reset.
    pub elapsed: Duration,
}
