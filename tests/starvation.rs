//! No runnable job waits for ever, whatever wakes and yields around it: jobs that keep waking
//! each other on one worker, at the LIFO end of its deque, do not starve the jobs below them; a
//! job yielding until a sibling has run (an ordinary, counted or local job) lets it run, on one
//! worker too. Each test runs under a watchdog that fails it instead of hanging.

use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, AtomicUsize, Ordering};
use std::time::Instant;

use frame_scheduler::{Scheduler, yield_now};

use futures::StreamExt;
use futures::channel::mpsc;

mod common;
use common::{GIVE_UP, for_each_worker_count, scheduler, within};

/// Two jobs play ping-pong through channels until a third job, queued before them on the same
/// single worker, has run. Each wake pushes the other job onto the LIFO end of the deque; the
/// third job sits at the other end and must still get its turn.
#[test]
fn jobs_waking_each_other_do_not_starve_an_older_job() {
    for workers in [1, 2] {
        let rounds = within(20, move || {
            let mut scheduler = scheduler(workers);
            let done = AtomicBool::new(false);
            let rounds = AtomicU64::new(0);
            scheduler.run_frame(async |frame| {
                let (tx_ab, mut rx_ab) = mpsc::unbounded::<()>();
                let (tx_ba, mut rx_ba) = mpsc::unbounded::<()>();
                let (done, rounds) = (&done, &rounds);
                let older = frame.spawn(async move { done.store(true, Ordering::SeqCst) });
                let ping = frame.spawn(async move {
                    while !done.load(Ordering::SeqCst) {
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
                older.await;
                ping.await;
                pong.await;
            });
            rounds.load(Ordering::Relaxed)
        });
        // The older job ran after a bounded number of round trips (a worker takes its oldest
        // job every 32 looks for work).
        assert!(
            rounds < 1000,
            "{workers} workers: the older job waited {rounds} round trips"
        );
    }
}

/// One worker: a job yields until an older sibling has run. The worker's own queue is LIFO, so
/// a yielding job must not be popped straight back, or the sibling would never run.
#[test]
fn job_yielding_until_a_sibling_runs_makes_progress_on_one_worker() {
    within(20, || {
        let mut scheduler = Scheduler::builder().workers(1).build().unwrap();
        for _ in 0..20 {
            let flag = AtomicBool::new(false);
            let yields = AtomicU32::new(0);
            scheduler.run_frame(async |frame| {
                frame.spawn(async {
                    flag.store(true, Ordering::SeqCst);
                });
                frame.spawn(async {
                    while !flag.load(Ordering::SeqCst) {
                        yields.fetch_add(1, Ordering::SeqCst);
                        yield_now().await;
                    }
                });
            });
            assert!(flag.load(Ordering::SeqCst));
            // The sibling runs right after the first yield, or, when the worker's periodic
            // look at the shared queue comes first, after the second.
            assert!(
                yields.load(Ordering::SeqCst) <= 2,
                "the sibling did not run promptly"
            );
        }
    });
}

/// Regression: a counted job that yields until its siblings on the same counter are done. Each
/// worker batches the decrements of the counted jobs it finished and flushes them only before
/// a job of another counter, when it finds no work, or every 64 jobs; the waiting job is of
/// the same counter and always there to run, so on one worker the batch is never flushed and
/// the value never drops: the frame hangs.
#[test]
fn counted_job_yielding_for_its_siblings_on_its_counter_finishes_on_one_worker() {
    within(10, || {
        let mut scheduler = Scheduler::builder().workers(1).build().unwrap();
        let siblings = AtomicUsize::new(0);
        let s = &siblings;
        scheduler.run_frame(async |frame| {
            let c = frame.counter();
            for _ in 0..3 {
                frame.spawn_counted(c, async move {
                    s.fetch_add(1, Ordering::SeqCst);
                });
            }
            frame.spawn_counted(c, async move {
                while c.value() > 1 {
                    yield_now().await;
                }
            });
            c.await;
            assert_eq!(c.value(), 0);
        });
        assert_eq!(siblings.load(Ordering::SeqCst), 3);
        assert_eq!(scheduler.last_frame_stats().jobs, 4);
    });
}

/// The same regression on N workers with N such waiting jobs: every worker can end up cycling one of
/// them while holding unflushed decrements of the counter they wait on.
#[test]
fn counted_jobs_yielding_for_their_siblings_finish_on_as_many_workers() {
    within(20, || {
        for_each_worker_count(&[2, 4], |workers, scheduler| {
            for frame_no in 0..20 {
                let siblings = AtomicUsize::new(0);
                let s = &siblings;
                scheduler.run_frame(async |frame| {
                    let c = frame.counter();
                    for _ in 0..16 {
                        frame.spawn_counted(c, async move {
                            s.fetch_add(1, Ordering::SeqCst);
                        });
                    }
                    for _ in 0..workers {
                        frame.spawn_counted(c, async move {
                            while c.value() > workers {
                                yield_now().await;
                            }
                        });
                    }
                    c.await;
                });
                assert_eq!(
                    siblings.load(Ordering::SeqCst),
                    16,
                    "workers({workers}), frame {frame_no}"
                );
            }
        });
    });
}

/// Regression: a `spawn_local` job yielding while it waits for an ordinary job. The driving
/// thread takes local jobs before anything else, and a yielding local job goes straight back
/// on the local queue, so with one worker the ordinary job in the driver's deque never runs.
#[test]
fn local_job_yielding_for_an_ordinary_job_lets_it_run_on_one_worker() {
    within(10, || {
        let mut scheduler = Scheduler::builder().workers(1).build().unwrap();
        for frame_no in 0..5 {
            let ran = AtomicBool::new(false);
            let r = &ran;
            let yields = scheduler.run_frame(async |frame| {
                frame
                    .spawn_local(async move {
                        // Spawned from the local job, so it cannot have run before the first
                        // look below: the local job does wait for it.
                        let ordinary = frame.spawn(async move { r.store(true, Ordering::SeqCst) });
                        let mut yields = 0u32;
                        while !r.load(Ordering::SeqCst) {
                            yields += 1;
                            yield_now().await;
                        }
                        ordinary.await;
                        yields
                    })
                    .await
            });
            assert!(ran.load(Ordering::SeqCst), "frame {frame_no}");
            assert!(yields >= 1, "frame {frame_no}: the local job ran first");
        }
    });
}

/// Regression: one worker. Two jobs wake each other at the LIFO end of the deque (as in
/// `jobs_waking_each_other_do_not_starve_an_older_job`) while a third job yields. Every 32 looks
/// `find_work` took the injector's job *or* its own oldest job, never both: the yielder was
/// always back in the injector by then, so the older job at the bottom of the deque never ran.
/// It gives up after `GIVE_UP`, so a failure is an assertion, not a hang.
#[test]
fn pingpong_and_a_yielder_do_not_starve_an_older_job_on_one_worker() {
    let result = within(30, || {
        let mut scheduler = Scheduler::builder().workers(1).build().unwrap();
        let done = AtomicBool::new(false);
        let rounds = AtomicU64::new(0);
        let start = Instant::now();
        let gave_up = || start.elapsed() > GIVE_UP;
        scheduler.run_frame(async |frame| {
            let (tx_ab, mut rx_ab) = mpsc::unbounded::<()>();
            let (tx_ba, mut rx_ba) = mpsc::unbounded::<()>();
            let (done, rounds, gave_up) = (&done, &rounds, &gave_up);
            let older = frame.spawn(async move { done.store(true, Ordering::SeqCst) });
            let ping = frame.spawn(async move {
                while !done.load(Ordering::SeqCst) && !gave_up() {
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
            let yielder = frame.spawn(async move {
                while !done.load(Ordering::SeqCst) && !gave_up() {
                    yield_now().await;
                }
            });
            older.await;
            ping.await;
            pong.await;
            yielder.await;
        });
        (rounds.load(Ordering::Relaxed), start.elapsed())
    });
    let (rounds, elapsed) = result;
    assert!(
        rounds < 1000,
        "the older job waited {rounds} round trips ({elapsed:?}) behind a ping-pong and a \
         yielder on one worker"
    );
}
