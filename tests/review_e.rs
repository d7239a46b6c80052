//! Review E: reproductions from a hostile review of the unsafe core, kept as regression tests.
//! Each test states what it expects from the documented contract. Two findings were documented
//! as limitations rather than fixed, and have no test here: `Counter::value` read while a job
//! blocks its thread may lag (awaiting never does), and an ordinary job that blocks the driving
//! thread waiting for the root or a local job waits for ever (see `Frame::spawn_local`).
//! Hangs are caught by a watchdog; busy-waits inside jobs are bounded so that a hung frame
//! does not keep burning CPU after the test has failed.

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use frame_scheduler::{Scheduler, yield_now};

mod common;
use common::{payload_str, wait_until, within};

// ---------------------------------------------------------------------------------------------
// Finding 1: `spawn_counted` increments the counter with an unchecked `fetch_add`: at
// `usize::MAX` it wraps to 0 outside the counter's lock, without bumping the epoch and without
// waking anyone. `Counter::add` checks for overflow and promises to release the awaiters and
// panic "instead of hanging"; the `spawn_counted` path does neither. A waiter registered before
// the wrap is then never released: when the counted job finishes, `decrement_by` finds the value
// already 0, records the underflow, and skips `notify_all` (it only notifies when `v != 0`).
// ---------------------------------------------------------------------------------------------

/// Silent wrong result: right after `spawn_counted` the counter reads 0 and `c.await` completes
/// at once although the counted job has not run.
#[test]
fn spawn_counted_on_a_counter_at_max_wraps_to_zero_silently() {
    within(10, || {
        let mut scheduler = Scheduler::builder().workers(1).build().unwrap();
        let ran = AtomicBool::new(false);
        let result = catch_unwind(AssertUnwindSafe(|| {
            scheduler.run_frame(async |frame| {
                let c = frame.counter();
                c.add(usize::MAX / 2); // the largest value a counter holds
                // Overflows: a documented panic would be fine; a silent wrap is not.
                frame.spawn_counted(c, async { ran.store(true, Ordering::SeqCst) });
                let v = c.value();
                // Awaiting a counter with usize::MAX + 1 units outstanding must not complete
                // before the counted job has even started.
                c.await;
                (v, ran.load(Ordering::SeqCst))
            })
        }));
        match result {
            Ok((v, ran)) => {
                panic!("run_frame returned normally: value {v}, job ran before await: {ran}")
            }
            Err(p) => {
                let msg = payload_str(&*p);
                assert!(
                    msg.contains("overflow"),
                    "spawn_counted on a counter at usize::MAX must panic with an overflow \
                     message like Counter::add; instead the counter wrapped to 0 and the frame \
                     panicked later with: {msg:?}"
                );
            }
        }
    });
}

/// Hang: a waiter registered while the value was usize::MAX is never woken.
#[test]
fn spawn_counted_wrapping_the_counter_strands_a_registered_waiter() {
    within(5, || {
        let mut scheduler = Scheduler::builder().workers(1).build().unwrap();
        let _ = catch_unwind(AssertUnwindSafe(|| {
            scheduler.run_frame(async |frame| {
                let c = frame.counter();
                c.add(usize::MAX / 2); // the largest value a counter holds
                // One worker: the waiter runs during the yield and registers (value MAX).
                let waiter = frame.spawn(async move { c.await });
                yield_now().await;
                assert!(!waiter.is_finished());
                // MAX + 1 wraps to 0 outside the lock: no epoch bump, nobody woken.
                frame.spawn_counted(c, async {});
                drop(waiter);
            })
        }));
    });
}

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
