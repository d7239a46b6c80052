//! Loom model 7: the driver decides the frame is over only when every job is done, and then
//! sees everything the jobs wrote.
//!
//! There is no global job counter: each worker counts the jobs it spawned and completed in
//! counters only it writes (`Counts::bump`, a plain load and release store), and the driver
//! sums every `completed` count, then every `spawned` count (`Shared::job_counts`), and ends
//! the frame when they are equal (`src/worker.rs`). A job's outputs are plain memory (loom's
//! `UnsafeCell`), so any read by the driver not ordered after the write is reported as a race.
//!
//! What loom 0.7 can and cannot see here: it catches counts published without release
//! (`Counts::add` storing `Relaxed`: the driver's reads of the outputs race with the jobs'
//! writes). It does not catch `job_counts` reading `spawned` before `completed`: `Counts::add`
//! loads the counter before storing it, and loom's DPOR keeps one last access per atomic, so
//! the worker's own load hides the driver's earlier load of the same counter and the
//! interleavings in which the driver reads across the worker's update are never run (loom
//! issue #392; a two-thread probe where a thread loads then stores two atomics that another
//! reads explores one outcome out of four). With the counter's owner load made invisible to
//! loom (`unsync_load` under `cfg(loom)`), this model catches the read-order break at once,
//! and the correct code takes about 7 minutes to check exhaustively.
//!
//! `RUSTFLAGS="--cfg loom" CARGO_TARGET_DIR=target/loom cargo test --release --test loom_frame_end`
#![cfg(loom)]

use frame_scheduler::loom_api::Scheduler;
use loom::cell::UnsafeCell;
use loom::sync::Arc;
use loom::sync::atomic::{AtomicBool, Ordering};
use loom::thread;

/// The frame's memory: two job outputs and the queue hand-overs between workers.
struct Frame {
    sched: Scheduler,
    out_a: UnsafeCell<u32>,
    out_b: UnsafeCell<u32>,
    /// Job A handed from worker 0 to worker 1, job B from worker 1 to worker 2 (a queue's
    /// push and pop: release, acquire).
    queued_a: AtomicBool,
    queued_b: AtomicBool,
}

// SAFETY: the outputs are written by one job each and read by the driver once the frame is
// over; loom checks that those accesses are ordered.
unsafe impl Sync for Frame {}

fn take(queued: &AtomicBool) {
    while !queued.load(Ordering::Acquire) {
        thread::yield_now();
    }
}

/// Driver (worker 0) spawns A onto worker 1; A spawns B onto worker 2, then finishes; B
/// finishes. The driver waits for the frame's end and reads both outputs.
#[test]
fn frame_ends_after_every_job_and_sees_their_writes() {
    loom::model(|| {
        let f = Arc::new(Frame {
            sched: Scheduler::new(3),
            out_a: UnsafeCell::new(0),
            out_b: UnsafeCell::new(0),
            queued_a: AtomicBool::new(false),
            queued_b: AtomicBool::new(false),
        });

        let worker2 = {
            let f = f.clone();
            thread::spawn(move || {
                take(&f.queued_b);
                // Job B runs.
                // SAFETY: only B writes `out_b`; the driver's read is checked by loom.
                f.out_b.with_mut(|o| unsafe { *o = 2 });
                f.sched.count_completed(2);
            })
        };
        let worker1 = {
            let f = f.clone();
            thread::spawn(move || {
                take(&f.queued_a);
                // Job A runs: it spawns B (counted before B is queued), then finishes.
                f.sched.count_spawned(1);
                f.queued_b.store(true, Ordering::Release);
                // SAFETY: only A writes `out_a`; the driver's read is checked by loom.
                f.out_a.with_mut(|o| unsafe { *o = 1 });
                f.sched.count_completed(1);
            })
        };

        // The driver spawns A (counted before it is queued).
        f.sched.count_spawned(0);
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
        worker2.join().unwrap();
    });
}
