//! Review E: reproductions from a hostile review of the unsafe core, kept as regression tests.
//! Each test states what it expects from the documented contract. Two findings were documented
//! as limitations rather than fixed, and have no test here: `Counter::value` read while a job
//! blocks its thread may lag (awaiting never does), and an ordinary job that blocks the driving
//! thread waiting for the root or a local job waits for ever (see `Frame::spawn_local`).
//! Hangs are caught by a watchdog; busy-waits inside jobs are bounded so that a hung frame
//! does not keep burning CPU after the test has failed.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use frame_scheduler::Scheduler;

mod common;
use common::{wait_until, within};

// ---------------------------------------------------------------------------------------------
// Memory-safety torture (meant for ASan / valgrind; they pass when nothing is found).
// ---------------------------------------------------------------------------------------------

/// Far more jobs than `queue_capacity` (the overflow list), nested, with jobs that block their
/// thread until a sibling spawned after them (and so likely in the overflow list) has run.
#[test]
fn overflow_path_with_blocking_jobs_and_nested_spawns() {
    within(120, || {
        for workers in [1, 2, 3] {
            let mut scheduler = Scheduler::builder()
                .workers(workers)
                .queue_capacity(16)
                .build()
                .unwrap();
            for round in 0..5u64 {
                let total = AtomicUsize::new(0);
                scheduler.run_frame(async |frame| {
                    let total = &total;
                    let c = frame.counter();
                    for i in 0..20_000usize {
                        frame.spawn_counted(c, async move {
                            total.fetch_add(i, Ordering::Relaxed);
                        });
                    }
                    // Nested fan-out from jobs, each beyond its worker's queue.
                    let hs: Vec<_> = (0..4)
                        .map(|_| {
                            frame.spawn(async move {
                                let inner: Vec<_> = (0..100usize)
                                    .map(|j| frame.spawn(async move { j }))
                                    .collect();
                                let mut s = 0;
                                for h in inner {
                                    s += h.await;
                                }
                                s
                            })
                        })
                        .collect();
                    if workers > 1 && round % 2 == 0 {
                        // Blocks its thread until a job spawned after it has run.
                        let flag = Arc::new(AtomicBool::new(false));
                        let f2 = Arc::clone(&flag);
                        let blocker = frame.spawn(async move {
                            wait_until(Duration::from_secs(5), || f2.load(Ordering::SeqCst))
                        });
                        for _ in 0..100 {
                            frame.spawn(async {});
                        }
                        frame.spawn(async move { flag.store(true, Ordering::SeqCst) });
                        assert!(blocker.await, "the sibling in the overflow list never ran");
                    }
                    let mut s = 0;
                    for h in hs {
                        s += h.await;
                    }
                    c.await;
                    total.fetch_add(s, Ordering::Relaxed);
                });
                assert_eq!(
                    total.load(Ordering::Relaxed),
                    (0..20_000usize).sum::<usize>() + 4 * (0..100usize).sum::<usize>()
                );
            }
        }
    });
}
