//! Loom model 7: the driver decides the frame is over only when every job is done, and then
//! sees everything the jobs wrote.
//!
//! There is no global job counter: each worker counts the jobs it spawned and completed in
//! counters only it writes (`Counts::bump`, a plain load and release store), and the driver
//! sums every `completed` count, then every `spawned` count (`Shared::job_counts`), and ends
//! the frame when they are equal (`src/worker.rs`). A job's outputs are plain memory (loom's
//! `UnsafeCell`), so any read by the driver not ordered after the write is reported as a race.
//!
//! Loom keeps one last access per atomic, so the owner's own load in `Counts::add` would hide
//! the driver's earlier load of the same counter and keep loom from running the interleavings
//! in which the driver reads across the worker's update (loom issue #392). The owner's load is
//! therefore `unsync_load` under loom (`sync::load_own`), and this model catches both breaks:
//! counts published without release (the outputs race) and `job_counts` reading `spawned`
//! before `completed` (the frame ends with job B unfinished). Two threads keep it fast; a
//! three-thread version (B on a third worker) takes about 7 minutes to check.
//!
//! `RUSTFLAGS="--cfg loom" CARGO_TARGET_DIR=target/loom cargo test --release --test loom_frame_end`
#![cfg(loom)]

use frame_scheduler::loom_api::ModelScheduler;
use loom::cell::UnsafeCell;
use loom::sync::Arc;
use loom::sync::atomic::{AtomicBool, Ordering};
use loom::thread;

/// The frame's memory: two job outputs and the queue hand-over from the driver to worker 1.
struct Frame {
    sched: ModelScheduler,
    out_a: UnsafeCell<u32>,
    out_b: UnsafeCell<u32>,
    /// Job A handed from worker 0 to worker 1 (a queue's push and pop: release, acquire).
    queued_a: AtomicBool,
}

// SAFETY: the outputs are written by one job each and read by the driver once the frame is
// over; loom checks that those accesses are ordered.
unsafe impl Sync for Frame {}

/// Driver (worker 0) spawns A onto worker 1; A spawns B (on worker 1, which runs it next),
/// then finishes; B finishes. The driver waits for the frame's end and reads both outputs.
#[test]
fn frame_ends_after_every_job_and_sees_their_writes() {
    loom::model(|| {
        let f = Arc::new(Frame {
            sched: ModelScheduler::new(2),
            out_a: UnsafeCell::new(0),
            out_b: UnsafeCell::new(0),
            queued_a: AtomicBool::new(false),
        });

        let worker1 = {
            let f = f.clone();
            thread::spawn(move || {
                while !f.queued_a.load(Ordering::Acquire) {
                    thread::yield_now();
                }
                // SAFETY (the counts): this thread plays worker 1, their owner.
                // Job A runs: it spawns B (counted before B is queued), then finishes.
                unsafe { f.sched.count_spawned(1) };
                // SAFETY: only A writes `out_a`; the driver's read is checked by loom.
                f.out_a.with_mut(|o| unsafe { *o = 1 });
                unsafe { f.sched.count_completed(1) };
                // Job B runs.
                // SAFETY: only B writes `out_b`; the driver's read is checked by loom.
                f.out_b.with_mut(|o| unsafe { *o = 2 });
                unsafe { f.sched.count_completed(1) };
            })
        };

        // The driver spawns A (counted before it is queued).
        // SAFETY: this thread plays worker 0, the counter's owner.
        unsafe { f.sched.count_spawned(0) };
        f.queued_a.store(true, Ordering::Release);
        while !f.sched.all_jobs_done() {
            thread::yield_now();
        }
        // Frame end: every output is there, and written before this read.
        // SAFETY: loom reports these reads if a job's write is not ordered before them.
        let a = f.out_a.with(|o| unsafe { *o });
        let b = f.out_b.with(|o| unsafe { *o });
        assert_eq!((a, b), (1, 2), "the frame ended before its jobs did");

        worker1.join().unwrap();
    });
}
