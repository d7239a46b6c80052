//! A job may block its thread until a sibling it spawned has run (the documented rule): the
//! sibling must then run on another worker, whatever the others are doing: idle, yielding,
//! ping-ponging, or not yet able to see it (in the spawner's private batch, or in the overflow
//! list past `queue_capacity`). Jobs that could wait for ever give up after a deadline, so a
//! failure is an assertion, not a hang; a watchdog backs that up.

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use common::{GIVE_UP, for_each_worker_count, wait_until, within};
use frame_scheduler::{Scheduler, yield_now};
use futures::StreamExt;
use futures::channel::mpsc;

/// Fork-join as a game loop does it: the root spawns a job, then computes inline (here: waits
/// for the job's flag) in the same poll. The job must be stealable meanwhile, not held back
/// until the root's poll ends.
#[test]
fn job_spawned_before_inline_work_runs_on_another_worker() {
    within(20, || {
        let mut scheduler = Scheduler::builder().workers(2).build().unwrap();
        for _ in 0..20 {
            let flag = AtomicBool::new(false);
            scheduler.run_frame(async |frame| {
                frame.spawn(async {
                    flag.store(true, Ordering::SeqCst);
                });
                // No await: the driving thread stays in this poll until the job has run.
                while !flag.load(Ordering::SeqCst) {
                    std::hint::spin_loop();
                }
            });
            assert!(flag.load(Ordering::SeqCst));
        }
    });
}

/// Regression: a job spawns `a` and `b`, then blocks its thread until `b` has run. Pushes
/// reach thieves only in groups of eight or when the poll ends; `a` is published at once (the
/// deque was drained), `b` is not, so the idle workers can never run it. The job gives up
/// after 5 s (so the test fails instead of spinning for ever).
#[test]
fn job_blocking_until_its_second_child_runs_lets_an_idle_worker_run_it() {
    within(60, || {
        for_each_worker_count(&[2, 4], |workers, scheduler| {
            for frame_no in 0..20 {
                let b_ran = AtomicBool::new(false);
                let b = &b_ran;
                let seen = scheduler.run_frame(async |frame| {
                    frame
                        .spawn(async move {
                            let a = frame.spawn(async {});
                            let child = frame.spawn(async move { b.store(true, Ordering::SeqCst) });
                            // Blocks this worker (no await) until the child has run elsewhere.
                            let seen =
                                wait_until(Duration::from_secs(5), || b.load(Ordering::SeqCst));
                            drop((a, child));
                            seen
                        })
                        .await
                });
                assert!(
                    seen,
                    "workers({workers}), frame {frame_no}: the second child never ran while \
                     its parent blocked"
                );
            }
        });
    });
}

/// Regression: the owner pops its newest jobs in a private batch (here [d, c, ...]), which
/// thieves cannot reach. `d` runs first and blocks until `c` has run, but `c` waits in the
/// same worker's batch: nobody else can take it. `d` gives up after 5 s.
#[test]
fn job_blocking_on_a_job_in_its_workers_private_batch_lets_an_idle_worker_run_it() {
    within(60, || {
        let mut scheduler = Scheduler::builder().workers(2).build().unwrap();
        for frame_no in 0..20 {
            let c_ran = AtomicBool::new(false);
            let c = &c_ran;
            let seen = AtomicBool::new(false);
            let s = &seen;
            scheduler.run_frame(async |frame| {
                frame
                    .spawn(async move {
                        for _ in 0..6 {
                            frame.spawn(async {});
                        }
                        frame.spawn(async move { c.store(true, Ordering::SeqCst) });
                        frame.spawn(async move {
                            let ok =
                                wait_until(Duration::from_secs(5), || c.load(Ordering::SeqCst));
                            s.store(ok, Ordering::SeqCst);
                        });
                    })
                    .await;
            });
            assert!(
                seen.load(Ordering::SeqCst),
                "frame {frame_no}: the job in the private batch never ran while its sibling \
                 blocked"
            );
        }
    });
}

/// Regression: two workers. Job B blocks its thread until its sibling S has run (allowed: S is
/// in B's worker's deque, visible to thieves). The other worker runs Y, which yields until S has
/// run. A worker stole only when its own deque and the injector were empty; a yielding job was
/// always back in the injector when its worker looked for work, so the other worker never stole
/// S: B and Y waited for ever.
#[test]
fn a_yielding_job_does_not_keep_its_worker_from_stealing_a_blocked_workers_job() {
    within(60, || {
        let mut scheduler = Scheduler::builder().workers(2).build().unwrap();
        for frame_no in 0..3 {
            let y_started = AtomicBool::new(false);
            let s_ran = AtomicBool::new(false);
            let yields = AtomicU64::new(0);
            let start = Instant::now();
            let (y_started, s_ran, yields) = (&y_started, &s_ran, &yields);
            let seen = scheduler.run_frame(async |frame| {
                frame
                    .spawn(async move {
                        // Y goes onto this worker's deque; the other worker (idle) takes it.
                        let y = frame.spawn(async move {
                            y_started.store(true, Ordering::SeqCst);
                            while !s_ran.load(Ordering::SeqCst) && start.elapsed() < 2 * GIVE_UP {
                                yields.fetch_add(1, Ordering::Relaxed);
                                yield_now().await;
                            }
                        });
                        if !wait_until(GIVE_UP, || y_started.load(Ordering::SeqCst)) {
                            return false;
                        }
                        let s = frame.spawn(async move { s_ran.store(true, Ordering::SeqCst) });
                        // Blocks until the sibling has run: only the other worker can run it.
                        let seen = wait_until(GIVE_UP, || s_ran.load(Ordering::SeqCst));
                        drop((y, s));
                        seen
                    })
                    .await
            });
            assert!(
                seen,
                "frame {frame_no}: the sibling never ran while its parent blocked; the other \
                 worker polled a yielding job {} times instead of stealing it",
                yields.load(Ordering::Relaxed)
            );
        }
    });
}

/// The same regression on three workers: two yielders kept both other workers away from the
/// blocked worker's deque.
#[test]
fn two_yielders_do_not_keep_two_workers_from_stealing_a_blocked_workers_job() {
    within(60, || {
        let mut scheduler = Scheduler::builder().workers(3).build().unwrap();
        let started = AtomicU64::new(0);
        let s_ran = AtomicBool::new(false);
        let start = Instant::now();
        let (started, s_ran) = (&started, &s_ran);
        let seen = scheduler.run_frame(async |frame| {
            frame
                .spawn(async move {
                    let mut ys = Vec::new();
                    for _ in 0..2 {
                        ys.push(frame.spawn(async move {
                            started.fetch_add(1, Ordering::SeqCst);
                            while !s_ran.load(Ordering::SeqCst) && start.elapsed() < 2 * GIVE_UP {
                                yield_now().await;
                            }
                        }));
                    }
                    if !wait_until(GIVE_UP, || started.load(Ordering::SeqCst) == 2) {
                        return false;
                    }
                    let s = frame.spawn(async move { s_ran.store(true, Ordering::SeqCst) });
                    let seen = wait_until(GIVE_UP, || s_ran.load(Ordering::SeqCst));
                    drop((ys, s));
                    seen
                })
                .await
        });
        assert!(seen, "the sibling never ran while its parent blocked");
    });
}

/// Regression: the driver's local queue did the same as a yielder. A local job yields until an
/// ordinary job S has run; S sits in the background worker's deque, whose owner blocks until S
/// has run (allowed). The driver found the local job on every look (local first, or right after
/// its own empty deque) and never reached the steal.
#[test]
fn a_yielding_local_job_does_not_keep_the_driver_from_stealing() {
    within(60, || {
        let mut scheduler = Scheduler::builder().workers(2).build().unwrap();
        let b_started = AtomicBool::new(false);
        let s_ran = AtomicBool::new(false);
        let local_yields = AtomicU64::new(0);
        let start = Instant::now();
        let (b_started, s_ran, local_yields) = (&b_started, &s_ran, &local_yields);
        let seen = scheduler.run_frame(async |frame| {
            let b = frame.spawn(async move {
                b_started.store(true, Ordering::SeqCst);
                let s = frame.spawn(async move { s_ran.store(true, Ordering::SeqCst) });
                let seen = wait_until(GIVE_UP, || s_ran.load(Ordering::SeqCst));
                drop(s);
                seen
            });
            // The root blocks (allowed) until B runs on the background worker.
            if !wait_until(GIVE_UP, || b_started.load(Ordering::SeqCst)) {
                return false;
            }
            let l = frame.spawn_local(async move {
                while !s_ran.load(Ordering::SeqCst) && start.elapsed() < 2 * GIVE_UP {
                    local_yields.fetch_add(1, Ordering::Relaxed);
                    yield_now().await;
                }
            });
            let seen = b.await;
            l.await;
            seen
        });
        assert!(
            seen,
            "the sibling never ran while its parent blocked; the driver polled a yielding \
             local job {} times instead of stealing it",
            local_yields.load(Ordering::Relaxed)
        );
    });
}

/// Regression: jobs that keep waking each other (no yield) did the same as a yielder: they
/// refilled the worker's own deque, so it never looked at the other deques.
#[test]
fn a_pingpong_does_not_keep_its_worker_from_stealing_a_blocked_workers_job() {
    within(60, || {
        let mut scheduler = Scheduler::builder().workers(2).build().unwrap();
        let started = AtomicBool::new(false);
        let s_ran = AtomicBool::new(false);
        let rounds = AtomicU64::new(0);
        let start = Instant::now();
        let (started, s_ran, rounds) = (&started, &s_ran, &rounds);
        let seen = scheduler.run_frame(async |frame| {
            frame
                .spawn(async move {
                    let (tx_ab, mut rx_ab) = mpsc::unbounded::<()>();
                    let (tx_ba, mut rx_ba) = mpsc::unbounded::<()>();
                    // The ping-pong starts on this worker's deque; the idle worker steals the
                    // first job and the second then wakes on it.
                    let ping = frame.spawn(async move {
                        started.store(true, Ordering::SeqCst);
                        while !s_ran.load(Ordering::SeqCst) && start.elapsed() < 2 * GIVE_UP {
                            tx_ab.unbounded_send(()).unwrap();
                            rx_ba.next().await;
                            rounds.fetch_add(1, Ordering::Relaxed);
                        }
                        drop(tx_ab);
                    });
                    let pong = frame.spawn(async move {
                        while rx_ab.next().await.is_some() {
                            let _ = tx_ba.unbounded_send(());
                        }
                    });
                    if !wait_until(GIVE_UP, || rounds.load(Ordering::SeqCst) > 100) {
                        return false;
                    }
                    let s = frame.spawn(async move { s_ran.store(true, Ordering::SeqCst) });
                    let seen = wait_until(GIVE_UP, || s_ran.load(Ordering::SeqCst));
                    drop((ping, pong, s));
                    seen
                })
                .await
        });
        assert!(
            seen,
            "the sibling never ran while its parent blocked; the other worker ran {} \
             ping-pong rounds instead of stealing it",
            rounds.load(Ordering::Relaxed)
        );
    });
}

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
