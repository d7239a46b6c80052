//! Review F: liveness and fairness. Every test keeps the documented rules (a job may block its
//! thread until a sibling has run; jobs wait by yielding or awaiting) and checks that every
//! runnable job runs within bounded time. Jobs that could wait for ever give up after a
//! deadline, so a failure is an assertion, not a hang; a watchdog backs that up.

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use frame_scheduler::{Scheduler, yield_now};
use futures::StreamExt;
use futures::channel::mpsc;

/// Runs `f` on its own thread and fails the test if it has not finished within `secs`.
fn within<T: Send + 'static>(secs: u64, f: impl FnOnce() -> T + Send + 'static) -> T {
    let (tx, rx) = std::sync::mpsc::channel();
    let t = std::thread::spawn(move || {
        let out = catch_unwind(AssertUnwindSafe(f));
        let _ = tx.send(());
        out
    });
    match rx.recv_timeout(Duration::from_secs(secs)) {
        Ok(()) => match t.join().unwrap() {
            Ok(v) => v,
            Err(p) => std::panic::resume_unwind(p),
        },
        Err(_) => panic!("did not finish within {secs} s: the frame hangs"),
    }
}

/// Spins (politely) until `cond` holds or `timeout` passes; returns whether it held.
fn wait_until(timeout: Duration, cond: impl Fn() -> bool) -> bool {
    let start = Instant::now();
    while !cond() {
        if start.elapsed() > timeout {
            return false;
        }
        std::thread::yield_now();
    }
    true
}

/// How long a job that waits for a starved sibling keeps trying before it gives up.
const GIVE_UP: Duration = Duration::from_secs(3);

// ---------------------------------------------------------------------------------------------
// F1: one worker. Two jobs wake each other at the LIFO end of the deque (as in
// tests/starvation.rs) while a third job yields. Every 32 looks `find_work` takes the injector's
// job *or* its own oldest job, never both: the yielder is always back in the injector by then,
// so the older job at the bottom of the deque never runs.
// ---------------------------------------------------------------------------------------------

#[test]
fn f1_pingpong_plus_a_yielder_starve_an_older_job_on_one_worker() {
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

// ---------------------------------------------------------------------------------------------
// F2: two workers. Job B blocks its thread until its sibling S has run (allowed: S is in B's
// worker's deque, visible to thieves). The other worker runs Y, which yields until S has run.
// A worker steals only when its own deque and the injector are empty; a yielding job is
// always back in the injector when its worker looks for work, so the other worker never
// steals S: B and Y wait for ever.
// ---------------------------------------------------------------------------------------------

#[test]
fn f2_yielding_job_keeps_its_worker_from_stealing_a_blocked_workers_job() {
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

/// F2 on three workers: two yielders keep both other workers away from the blocked worker's
/// deque.
#[test]
fn f2b_two_yielders_on_three_workers() {
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

// ---------------------------------------------------------------------------------------------
// F3: the driver's local queue does the same. A local job yields until an ordinary job S has
// run; S sits in the background worker's deque, whose owner blocks until S has run (allowed).
// The driver finds the local job on every look (local first, or right after its own empty
// deque) and never reaches the steal.
// ---------------------------------------------------------------------------------------------

#[test]
fn f3_local_yielder_keeps_the_driver_from_stealing() {
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
