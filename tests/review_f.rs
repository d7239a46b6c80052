//! Review F: liveness and fairness. Every test keeps the documented rules (a job may block its
//! thread until a sibling has run; jobs wait by yielding or awaiting) and checks that every
//! runnable job runs within bounded time. Jobs that could wait for ever give up after a
//! deadline, so a failure is an assertion, not a hang; a watchdog backs that up.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use frame_scheduler::{Scheduler, yield_now};

mod common;
use common::{GIVE_UP, wait_until, within};
use futures::StreamExt;
use futures::channel::mpsc;

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

// ---------------------------------------------------------------------------------------------
// F4: jobs that keep waking each other (no yield) do the same as a yielder: they refill the
// worker's own deque, so it never looks at the other deques.
// ---------------------------------------------------------------------------------------------

#[test]
fn f4_pingpong_keeps_its_worker_from_stealing_a_blocked_workers_job() {
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

// ---------------------------------------------------------------------------------------------
// Idle and wake-up checks (these held up on the code reviewed).
// ---------------------------------------------------------------------------------------------

/// Thread ids of this process.
fn tids() -> Vec<u64> {
    std::fs::read_dir("/proc/self/task")
        .unwrap()
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse().ok())
        .collect()
}

/// Nanoseconds on CPU of the given threads (schedstat), 0 for threads gone.
fn cpu_ns(threads: &[u64]) -> u64 {
    threads
        .iter()
        .filter_map(|t| std::fs::read_to_string(format!("/proc/self/task/{t}/schedstat")).ok())
        .filter_map(|s| s.split_whitespace().next()?.parse::<u64>().ok())
        .sum()
}

/// After frames of many shapes (yields, overflow into the injector, foreign spawns and wakes,
/// a late waker woken between frames), the background workers use (almost) no CPU.
#[test]
fn idle_workers_use_no_cpu_after_frames() {
    within(60, || {
        for workers in [2, 3] {
            let before: Vec<u64> = tids();
            let mut scheduler = Scheduler::builder()
                .workers(workers)
                .queue_capacity(16)
                .build()
                .unwrap();
            let ours: Vec<u64> = tids().into_iter().filter(|t| !before.contains(t)).collect();
            let late: std::sync::Mutex<Option<std::task::Waker>> = std::sync::Mutex::new(None);
            for i in 0..200u32 {
                let late = &late;
                scheduler.run_frame(async |frame| {
                    let c = frame.counter();
                    for j in 0..40u32 {
                        frame.spawn_counted(c, async move {
                            if j % 3 == 0 {
                                yield_now().await;
                            }
                        });
                    }
                    std::thread::scope(|s| {
                        s.spawn(|| {
                            frame.spawn_counted(c, async {
                                std::future::poll_fn(|cx| {
                                    *late.lock().unwrap() = Some(cx.waker().clone());
                                    std::task::Poll::Ready(())
                                })
                                .await
                            });
                        });
                    });
                    c.await;
                    if i % 2 == 0 {
                        yield_now().await;
                    }
                });
            }
            // A late wake from a plain thread between frames.
            if let Some(w) = late.lock().unwrap().take() {
                std::thread::spawn(move || w.wake()).join().unwrap();
            }
            std::thread::sleep(Duration::from_millis(200));
            let t0 = cpu_ns(&ours);
            std::thread::sleep(Duration::from_millis(1500));
            let used = cpu_ns(&ours) - t0;
            assert!(
                used < 30_000_000,
                "workers({workers}): idle workers used {} ms of CPU in 1.5 s",
                used / 1_000_000
            );
        }
    });
}

/// Jobs spawned and woken from plain and scoped threads while every worker (the driving
/// thread included) is parked run promptly.
#[test]
fn foreign_spawns_and_wakes_reach_parked_workers() {
    within(60, || {
        for workers in [1, 2, 3] {
            let mut scheduler = Scheduler::builder().workers(workers).build().unwrap();
            for _ in 0..10 {
                let lat = std::sync::Mutex::new(Duration::ZERO);
                let ran = AtomicU64::new(0);
                let (lat_r, ran_r) = (&lat, &ran);
                let max_lat = scheduler.run_frame(async |frame| {
                    let (tx, mut rx) = mpsc::unbounded::<Instant>();
                    let h = frame.spawn(async move {
                        while let Some(sent) = rx.next().await {
                            let l = sent.elapsed();
                            let mut m = lat_r.lock().unwrap();
                            *m = (*m).max(l);
                        }
                    });
                    std::thread::scope(|s| {
                        s.spawn(|| {
                            for _ in 0..3 {
                                // Let every worker park.
                                std::thread::sleep(Duration::from_millis(30));
                                tx.unbounded_send(Instant::now()).unwrap();
                                std::thread::sleep(Duration::from_millis(30));
                                let sent = Instant::now();
                                frame.spawn(async move {
                                    let l = sent.elapsed();
                                    let mut m = lat_r.lock().unwrap();
                                    *m = (*m).max(l);
                                    ran_r.fetch_add(1, Ordering::SeqCst);
                                });
                            }
                            drop(tx);
                        });
                    });
                    h.await;
                    *lat_r.lock().unwrap()
                });
                assert!(
                    max_lat < Duration::from_millis(500),
                    "workers({workers}): a job spawned or woken from another thread waited \
                     {max_lat:?}"
                );
            }
        }
    });
}

/// Inside a frame whose root waits 1 s for a plain thread, with nothing queued, every thread
/// parks (the driving thread included), and the root's wake from the plain thread is prompt.
#[test]
fn frame_waiting_on_a_plain_thread_parks_and_wakes_promptly() {
    within(60, || {
        for workers in [1, 2, 3] {
            let before: Vec<u64> = tids();
            let mut scheduler = Scheduler::builder().workers(workers).build().unwrap();
            let mut ours: Vec<u64> = tids().into_iter().filter(|t| !before.contains(t)).collect();
            let (lat, cpu) = scheduler.run_frame(async |frame| {
                let (tx, rx) = futures::channel::oneshot::channel::<Instant>();
                // A job that finishes at once, so that the workers have run something.
                frame.spawn(async {}).await;
                let self_ns = || -> u64 {
                    std::fs::read_to_string("/proc/thread-self/schedstat")
                        .ok()
                        .and_then(|s| s.split_whitespace().next()?.parse().ok())
                        .unwrap_or(0)
                };
                let t = std::thread::spawn(move || {
                    std::thread::sleep(Duration::from_millis(1000));
                    let _ = tx.send(Instant::now());
                });
                let t0 = cpu_ns(&ours) + self_ns();
                let sent = rx.await.unwrap();
                let lat = sent.elapsed();
                let cpu = cpu_ns(&ours) + self_ns() - t0;
                t.join().unwrap();
                (lat, cpu)
            });
            ours.clear();
            assert!(
                lat < Duration::from_millis(100),
                "workers({workers}): the root's wake from a plain thread took {lat:?}"
            );
            assert!(
                cpu < 30_000_000,
                "workers({workers}): the workers used {} ms of CPU during a 1 s wait",
                cpu / 1_000_000
            );
        }
    });
}

/// Wakes that arrive while the driver or a worker is parking, at every phase: the root awaits
/// a oneshot sent by a plain thread after a delay sweeping 0 to 400 µs, then a job on the
/// background worker that completes after such a delay, then a job woken from a plain thread
/// after such a delay. No wake may be lost (each waits < 1 s; a lost one waits for ever).
#[test]
fn wakes_at_every_parking_phase_are_not_lost() {
    let frames: u64 = std::env::var("REVIEW_F_FRAMES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1500);
    within(120, move || {
        for workers in [1, 2, 3] {
            let mut scheduler = Scheduler::builder().workers(workers).build().unwrap();
            for frame_no in 0..frames {
                let delay = Duration::from_nanos(frame_no * 277 % 400_000);
                let spin = move || {
                    let t = Instant::now();
                    while t.elapsed() < delay {
                        std::hint::spin_loop();
                    }
                };
                let start = Instant::now();
                scheduler.run_frame(async |frame| {
                    let (tx, rx) = futures::channel::oneshot::channel::<()>();
                    let t = std::thread::spawn(move || {
                        spin();
                        let _ = tx.send(());
                    });
                    rx.await.unwrap();
                    t.join().unwrap();
                    frame.spawn(async move { spin() }).await;
                    let (tx, rx) = futures::channel::oneshot::channel::<()>();
                    let h = frame.spawn(async move { rx.await.unwrap() });
                    let t = std::thread::spawn(move || {
                        spin();
                        let _ = tx.send(());
                    });
                    h.await;
                    t.join().unwrap();
                });
                let took = start.elapsed();
                assert!(
                    took < Duration::from_secs(1),
                    "workers({workers}), frame {frame_no} (delay {delay:?}): took {took:?}"
                );
            }
        }
    });
}
