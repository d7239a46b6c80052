//! `FrameStats` figures checked against the work that made them: `steals` counts the jobs (not
//! the batches) another worker took, and `arena_capacity` counts the foreign arena (jobs spawned
//! from threads that are not workers) as `arena_bytes` does.

mod common;

use std::sync::atomic::{AtomicUsize, Ordering};

use common::within;
use frame_scheduler::Scheduler;

/// Regression: `FrameStats::steals` is documented as the jobs a worker took from another
/// worker's queue, but counted steal batches (up to 8 jobs each). Here the root spawns 64 leaf
/// jobs onto the driver's deque and then keeps the driving thread busy until all have run, so
/// the background worker must steal every one of them (in batches), and nobody steals them
/// back: `steals` must be exactly 64, and so must the jobs run off the driving thread.
#[test]
fn steals_count_jobs_stolen() {
    within(30, || {
        let mut scheduler = Scheduler::builder().workers(2).build().unwrap();
        let driver = std::thread::current().id();
        for frame_no in 0..30 {
            let elsewhere = AtomicUsize::new(0);
            let e = &elsewhere;
            scheduler.run_frame(async |frame| {
                let jobs = frame.counter();
                for _ in 0..64 {
                    frame.spawn_counted(jobs, async move {
                        if std::thread::current().id() != driver {
                            e.fetch_add(1, Ordering::SeqCst);
                        }
                    });
                }
                // Block the driving thread (inside the root's poll) until every job has run.
                while jobs.value() > 0 {
                    std::hint::spin_loop();
                }
            });
            assert_eq!(elsewhere.load(Ordering::SeqCst), 64, "frame {frame_no}");
            assert_eq!(
                scheduler.last_frame_stats().steals,
                64,
                "frame {frame_no}: steals against jobs the background worker took"
            );
        }
    });
}

/// Regression: `FrameStats::arena_bytes` counted the foreign arena (jobs spawned from threads
/// that are not workers) but `arena_capacity` left it out, so a steady frame spawning from a
/// scoped thread reported more bytes used than held in reserve, though every arena kept enough
/// for the next frame.
#[test]
fn arena_capacity_counts_the_foreign_arena_like_arena_bytes() {
    within(30, || {
        let mut scheduler = Scheduler::builder()
            .workers(1)
            .arena_capacity(1024)
            .build()
            .unwrap();
        for frame_no in 0..4 {
            scheduler.run_frame(async |frame| {
                frame
                    .spawn(async move {
                        std::thread::scope(|s| {
                            s.spawn(|| {
                                for _ in 0..64 {
                                    let pad = [1u8; 512];
                                    frame.spawn(async move {
                                        std::hint::black_box(pad);
                                    });
                                }
                            });
                        });
                    })
                    .await;
            });
            let stats = scheduler.last_frame_stats();
            assert_eq!(stats.foreign_jobs, 64);
            // From the second frame on, every arena was sized for the first.
            if frame_no > 0 {
                assert!(
                    stats.arena_capacity >= stats.arena_bytes,
                    "frame {frame_no}: {} bytes used but {} kept",
                    stats.arena_bytes,
                    stats.arena_capacity
                );
            }
        }
    });
}
