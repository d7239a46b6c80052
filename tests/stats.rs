//! `FrameStats`: what `last_frame_stats` reports after each frame.

use std::future::Future;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering::SeqCst};
use std::thread;
use std::time::{Duration, Instant};

use frame_scheduler::{Frame, FrameStats, Scheduler, WorkerStats, yield_now};

mod common;

use common::{Rng, for_each_worker_count, scheduler, within};

#[test]
fn stats_are_zero_before_the_first_frame() {
    let scheduler = scheduler(2);
    let stats = scheduler.last_frame_stats();
    // All zero, with a row of zeros per worker (allocated at build, so that frames never do).
    assert_eq!(stats.index, 0);
    assert_eq!(stats.jobs, 0);
    assert_eq!(stats.workers(), &[WorkerStats::default(); 2]);
    assert_eq!(FrameStats::default().workers().len(), 0);
}

#[test]
fn index_counts_frames_from_zero() {
    let mut scheduler = scheduler(2);
    for i in 0..20u64 {
        let seen = scheduler.run_frame(async |frame| {
            if i % 2 == 0 {
                frame.spawn(async {}).await;
            }
            frame.index()
        });
        assert_eq!(seen, i);
        assert_eq!(scheduler.last_frame_stats().index, i);
    }
}

#[test]
fn jobs_counts_nested_local_and_counted_jobs_exactly() {
    for_each_worker_count(&[1, 2, 4], |workers, scheduler| {
        for _ in 0..5 {
            scheduler.run_frame(async |frame| {
                let mut outer = Vec::new();
                for _ in 0..3 {
                    outer.push(frame.spawn(async move {
                        let a = frame.spawn(async { 1 });
                        let b = frame.spawn(async move {
                            // A grandchild, detached.
                            drop(frame.spawn(async {}));
                            2
                        });
                        a.await + b.await
                    }));
                }
                for _ in 0..4 {
                    drop(frame.spawn_local(async {}));
                }
                let c = frame.counter();
                for _ in 0..5 {
                    frame.spawn_counted(c, async {
                        yield_now().await;
                    });
                }
                for h in outer {
                    assert_eq!(h.await, 3);
                }
                c.await;
            });
            let stats = scheduler.last_frame_stats();
            assert_eq!(stats.jobs, 3 + 3 * 3 + 4 + 5, "workers {workers}");
            assert_eq!(stats.local_jobs, 4);
            assert_eq!(stats.foreign_jobs, 0);
            assert_eq!(stats.panics, 0);
            assert!(stats.arena_bytes > 0);
            assert!(stats.arena_capacity > 0);
        }
    });
}

#[test]
fn empty_frame_uses_no_arena_and_counts_no_jobs() {
    let mut scheduler = scheduler(2);
    scheduler.run_frame(async |_| {});
    let stats = scheduler.last_frame_stats();
    assert_eq!(stats.jobs, 0);
    assert_eq!(stats.local_jobs, 0);
    assert_eq!(stats.arena_bytes, 0);
    assert_eq!(stats.steals, 0);
    assert_eq!(stats.panics, 0);
    // A counter alone lives in the arena too.
    scheduler.run_frame(async |frame| frame.counter().await);
    let stats = scheduler.last_frame_stats();
    assert_eq!(stats.jobs, 0);
    assert!(stats.arena_bytes > 0);
    // And the next empty frame is back to zero.
    scheduler.run_frame(async |_| {});
    assert_eq!(scheduler.last_frame_stats().arena_bytes, 0);
}

#[test]
fn arena_bytes_grow_with_the_number_of_jobs() {
    let mut scheduler = scheduler(1);
    let mut used = Vec::new();
    for n in [10, 100, 1000] {
        scheduler.run_frame(async |frame| {
            let c = frame.counter();
            for _ in 0..n {
                frame.spawn_counted(c, async {});
            }
            c.await;
        });
        assert_eq!(scheduler.last_frame_stats().jobs, n);
        used.push(scheduler.last_frame_stats().arena_bytes);
    }
    assert!(
        used[0] > 0 && used[0] < used[1] && used[1] < used[2],
        "{used:?}"
    );
}

#[test]
fn one_worker_never_steals() {
    // One worker has no one to steal from, whatever path its jobs take: its own deque, the
    // shared overflow list (200 jobs in a queue of 16), the shared FIFO that yielding jobs go
    // to, nested spawns and local jobs.
    let mut scheduler = Scheduler::builder()
        .workers(1)
        .queue_capacity(16)
        .build()
        .unwrap();
    for _ in 0..3 {
        scheduler.run_frame(async |frame| {
            let hs: Vec<_> = (0..200u64)
                .map(|i| {
                    frame.spawn(async move {
                        if i % 3 == 0 {
                            yield_now().await;
                        }
                        if i % 10 == 0 {
                            i + frame.spawn(async move { i }).await
                        } else {
                            i
                        }
                    })
                })
                .collect();
            drop(frame.spawn_local(async {}));
            let mut sum = 0;
            for h in hs {
                sum += h.await;
            }
            // 0..200, plus the multiples of 10 once more.
            assert_eq!(sum, 199 * 200 / 2 + 10 * 19 * 20 / 2);
        });
        let stats = scheduler.last_frame_stats();
        assert_eq!(stats.steals, 0);
        assert_eq!(stats.jobs, 200 + 20 + 1);
    }
}

#[test]
fn a_job_only_another_worker_can_run_is_a_steal() {
    // The root spawns one job, then keeps the driving thread (worker 0) busy until the job has
    // run. The job sits on worker 0's deque (one job: no overflow, no yield, so never on a
    // shared list), so the only way the other worker can run it is to steal it.
    let mut scheduler = scheduler(2);
    let driver = thread::current().id();
    for _ in 0..3 {
        let ran_on = Mutex::new(None);
        let ran = AtomicBool::new(false);
        scheduler.run_frame(async |frame| {
            drop(frame.spawn(async {
                *ran_on.lock().unwrap() = Some(thread::current().id());
                ran.store(true, SeqCst);
            }));
            let deadline = Instant::now() + Duration::from_secs(30);
            while !ran.load(SeqCst) {
                assert!(
                    Instant::now() < deadline,
                    "the other worker never took the job"
                );
                std::hint::spin_loop();
            }
        });
        let ran_on = ran_on.into_inner().unwrap().expect("the job ran");
        assert_ne!(ran_on, driver, "the job ran on the driving thread");
        let stats = scheduler.last_frame_stats();
        assert_eq!(stats.jobs, 1);
        assert!(stats.steals > 0, "a stolen job was not counted: {stats:?}");
    }
}

#[test]
fn panics_counts_every_panic_of_the_frame() {
    for_each_worker_count(&[1, 2, 3], |_, scheduler| {
        let result = catch_unwind(AssertUnwindSafe(|| {
            scheduler.run_frame(async |frame| {
                for i in 0..10 {
                    drop(frame.spawn(async move {
                        if i % 3 == 0 {
                            panic!("job {i}");
                        }
                    }));
                }
            })
        }));
        assert!(result.is_err());
        let stats = scheduler.last_frame_stats();
        assert_eq!(stats.panics, 4); // jobs 0, 3, 6, 9
        assert_eq!(stats.jobs, 10);
        assert_eq!(stats.index, 0);
        scheduler.run_frame(async |frame| frame.spawn(async {}).await);
        assert_eq!(scheduler.last_frame_stats().panics, 0);
        assert_eq!(scheduler.last_frame_stats().index, 1);
    });
}

#[test]
fn stats_are_a_snapshot_that_can_be_cloned() {
    let mut scheduler = scheduler(2);
    scheduler.run_frame(async |frame| frame.spawn(async {}).await);
    let first = scheduler.last_frame_stats().clone();
    scheduler.run_frame(async |_| {});
    let second = scheduler.last_frame_stats().clone();
    assert_eq!(first.jobs, 1);
    assert_eq!(second.jobs, 0);
    assert_ne!(first, second);
    assert_eq!((first.index, second.index), (0, 1));
}

#[test]
fn stats_can_be_shared_and_sent_between_threads() {
    fn send_sync_clone<T: Send + Sync + Clone + 'static>() {}
    send_sync_clone::<FrameStats>();
    send_sync_clone::<WorkerStats>();
}

/// The rows are converted when first read (`FrameStats::workers` takes `&self`): threads
/// reading them at once all get the same rows, which are the frame's.
#[test]
fn rows_read_first_from_many_threads_at_once_agree() {
    for round in 0..20 {
        let mut scheduler = scheduler(2);
        scheduler.run_frame(async |frame| {
            for _ in 0..=round {
                frame.spawn(async { yield_now().await });
            }
        });
        let stats = scheduler.last_frame_stats();
        let start = std::sync::Barrier::new(4);
        let seen: Vec<Vec<WorkerStats>> = thread::scope(|s| {
            let readers: Vec<_> = (0..4)
                .map(|_| {
                    s.spawn(|| {
                        start.wait();
                        stats.workers().to_vec()
                    })
                })
                .collect();
            readers.into_iter().map(|r| r.join().unwrap()).collect()
        });
        for rows in &seen {
            assert_eq!(rows.as_slice(), stats.workers(), "round {round}");
        }
        let jobs = round as u64 + 1;
        assert_eq!(stats.workers().iter().map(|r| r.jobs).sum::<u64>(), jobs);
        // Each job polled twice: once to yield, once to finish.
        assert_eq!(
            stats.workers().iter().map(|r| r.polls).sum::<u64>(),
            2 * jobs
        );
        check_rows_add_up(stats, "read from several threads");
    }
}

/// A clone taken before anyone read the rows keeps its own frame's rows, whatever frames run
/// after it, and reads the same rows as the original would have.
#[test]
fn a_clone_of_unread_stats_keeps_its_frames_rows() {
    let mut scheduler = scheduler(2);
    scheduler.run_frame(async |frame| {
        for _ in 0..6 {
            frame.spawn(async {});
        }
    });
    let unread = scheduler.last_frame_stats().clone();
    let read_after = scheduler.last_frame_stats().workers().to_vec();
    for _ in 0..3 {
        scheduler.run_frame(async |frame| frame.spawn(async {}).await);
    }
    assert_eq!(unread.workers(), read_after.as_slice());
    assert_eq!(unread.workers().iter().map(|r| r.jobs).sum::<u64>(), 6);
    assert_eq!(
        scheduler
            .last_frame_stats()
            .workers()
            .iter()
            .map(|r| r.jobs)
            .sum::<u64>(),
        1
    );
    // Equality and `Debug` go by the rows, read or not.
    assert_eq!(unread.clone(), unread);
    assert_eq!(
        format!("{:?}", unread.workers()),
        format!("{:?}", read_after.as_slice())
    );
    assert!(format!("{unread:?}").contains(&format!("{:?}", read_after.as_slice())));
}

// ---------------------------------------------------------------------------------------------
// Per-worker rows

/// `fut`, counting each of its polls in `polls`.
async fn counting_polls<F: Future>(polls: &AtomicU64, fut: F) -> F::Output {
    let mut fut = std::pin::pin!(fut);
    std::future::poll_fn(|cx| {
        polls.fetch_add(1, SeqCst);
        fut.as_mut().poll(cx)
    })
    .await
}

/// The per-worker figures that must add up to the frame's, and the times that must add up to
/// the frame's length: for a worker that ran a job, wake lag + busy + idle is exactly the
/// frame's elapsed time (all three are cut from the same two clock readings); for one that
/// ran none, idle is.
fn check_rows_add_up(stats: &FrameStats, what: &str) {
    let rows = stats.workers();
    let sum = |f: fn(&WorkerStats) -> u64| rows.iter().map(f).sum::<u64>();
    assert_eq!(
        sum(|w| w.jobs),
        stats.jobs,
        "jobs over workers, {what}: {stats}"
    );
    assert_eq!(
        sum(|w| w.steals_taken),
        stats.steals,
        "steals taken, {what}: {stats}"
    );
    assert_eq!(
        sum(|w| w.steals_lost),
        stats.steals,
        "steals lost, {what}: {stats}"
    );
    for (i, w) in rows.iter().enumerate() {
        match w.wake_lag {
            Some(lag) => assert_eq!(
                lag + w.busy + w.idle,
                stats.elapsed,
                "worker {i}, {what}: {stats}"
            ),
            None => {
                assert_eq!((w.polls, w.jobs), (0, 0), "worker {i}, {what}: {stats}");
                assert_eq!(w.busy, Duration::ZERO, "worker {i}, {what}: {stats}");
                assert_eq!(w.idle, stats.elapsed, "worker {i}, {what}: {stats}");
            }
        }
    }
}

#[test]
fn one_worker_polls_each_job_once_plus_once_per_yield() {
    let mut scheduler = scheduler(1);
    for round in 0..3u64 {
        scheduler.run_frame(async |frame| {
            // 12 jobs; job i yields i % 4 times: 0+1+2+3 = 6 yields per four jobs, 18 in all.
            let c = frame.counter();
            for i in 0..12u64 {
                frame.spawn_counted(c, async move {
                    for _ in 0..i % 4 {
                        yield_now().await;
                    }
                });
            }
            // Two local jobs, one of which yields once, and a nested job.
            let local = frame.spawn_local(async {
                yield_now().await;
            });
            drop(frame.spawn_local(async {}));
            let nested = frame.spawn(async move { frame.spawn(async move { round }).await });
            c.await;
            local.await;
            assert_eq!(nested.await, round);
        });
        let stats = scheduler.last_frame_stats();
        let me = stats.workers()[0];
        assert_eq!(stats.jobs, 12 + 2 + 2);
        assert_eq!(me.jobs, 16, "{stats}");
        // The nested job's parent is polled twice: it awaits its child's handle.
        assert_eq!(me.polls, 16 + 18 + 1 + 1, "{stats}");
        assert_eq!((me.steals_taken, me.steals_lost), (0, 0));
        assert_eq!(
            me.parks, 0,
            "nothing to wait for: the driver never sleeps; {stats}"
        );
        // The driving thread works from the frame's start.
        assert_eq!(me.wake_lag, Some(Duration::ZERO));
        check_rows_add_up(stats, "one worker");
    }
}

#[test]
fn rows_add_up_to_the_frame_on_random_job_trees() {
    for_each_worker_count(&[2, 3, 4], |workers, scheduler| {
        let mut rng = Rng::new(workers as u64);
        for f in 0..30 {
            let polls = AtomicU64::new(0);
            let shape: Vec<(u64, u64)> = (0..64).map(|_| (rng.below(4), rng.below(3))).collect();
            scheduler.run_frame(async |frame| {
                let c = frame.counter();
                for &(children, yields) in &shape {
                    let polls = &polls;
                    frame.spawn_counted(
                        c,
                        counting_polls(polls, async move {
                            let mut hs = Vec::new();
                            for k in 0..children {
                                hs.push(frame.spawn(counting_polls(polls, async move {
                                    for _ in 0..yields {
                                        yield_now().await;
                                    }
                                    k
                                })));
                            }
                            let mut sum = 0;
                            for h in hs {
                                sum += h.await;
                            }
                            assert_eq!(sum, children * children.saturating_sub(1) / 2);
                        }),
                    );
                }
                c.await;
            });
            let stats = scheduler.last_frame_stats();
            let what = format!("workers {workers}, frame {f}");
            assert_eq!(
                stats.workers().iter().map(|w| w.polls).sum::<u64>(),
                polls.load(SeqCst),
                "polls over workers, {what}: {stats}"
            );
            check_rows_add_up(stats, &what);
        }
    });
}

/// The root spawns one job onto the driving thread's deque, then keeps the driving thread busy
/// until the job has started: only worker 1 can run it, by stealing it.
fn frame_where_worker_1_steals_the_job<'frame>(
    frame: &'frame Frame<'frame, '_>,
    started: &'frame AtomicBool,
    job: impl Future<Output = ()> + Send + 'frame,
) -> frame_scheduler::JobHandle<'frame, ()> {
    let handle = frame.spawn(async move {
        started.store(true, SeqCst);
        job.await;
    });
    let deadline = Instant::now() + Duration::from_secs(30);
    while !started.load(SeqCst) {
        assert!(Instant::now() < deadline, "worker 1 never took the job");
        std::hint::spin_loop();
    }
    handle
}

#[test]
fn the_thief_takes_and_the_victim_loses_a_stolen_job() {
    let mut scheduler = scheduler(2);
    for _ in 0..3 {
        let started = AtomicBool::new(false);
        scheduler.run_frame(async |frame| {
            frame_where_worker_1_steals_the_job(frame, &started, async {}).await;
        });
        let stats = scheduler.last_frame_stats();
        let [driver, thief] = stats.workers() else {
            panic!("two rows: {stats}")
        };
        assert_eq!(stats.steals, 1, "{stats}");
        assert_eq!(
            (thief.jobs, thief.polls, thief.steals_taken),
            (1, 1, 1),
            "{stats}"
        );
        assert_eq!(thief.steals_lost, 0, "{stats}");
        assert_eq!(
            (driver.jobs, driver.polls, driver.steals_taken),
            (0, 0, 0),
            "{stats}"
        );
        assert_eq!(driver.steals_lost, 1, "{stats}");
        // The driver works from the frame's start; the thief from the stolen job.
        assert!(
            driver.wake_lag == Some(Duration::ZERO) && thief.wake_lag.is_some(),
            "{stats}"
        );
        check_rows_add_up(stats, "one stolen job");
    }
}

#[test]
fn a_job_that_sleeps_is_busy_time_of_the_worker_that_runs_it() {
    // Not a speed check: the job sleeps 20 ms inside worker 1's busy stretch, so that stretch
    // lasts at least that long, however slow the machine.
    let mut scheduler = scheduler(2);
    let started = AtomicBool::new(false);
    scheduler.run_frame(async |frame| {
        frame_where_worker_1_steals_the_job(frame, &started, async {
            thread::sleep(Duration::from_millis(20));
        })
        .await;
    });
    let stats = scheduler.last_frame_stats();
    let thief = stats.workers()[1];
    assert!(thief.busy >= Duration::from_millis(20), "{stats}");
    // The driver had the root's handle to wait for, out of work, while the job slept.
    assert!(stats.workers()[0].idle > Duration::ZERO, "{stats}");
    check_rows_add_up(stats, "a sleeping job");
}

#[test]
fn workers_that_run_nothing_are_idle_the_whole_frame() {
    let mut scheduler = scheduler(3);
    for _ in 0..3 {
        scheduler.run_frame(async |_| {});
        let stats = scheduler.last_frame_stats();
        for w in &stats.workers()[1..] {
            assert_eq!(w.wake_lag, None, "{stats}");
            assert_eq!(w.idle, stats.elapsed, "{stats}");
        }
        // The driver polled the root: it worked.
        assert_eq!(stats.workers()[0].wake_lag, Some(Duration::ZERO), "{stats}");
        check_rows_add_up(stats, "an empty frame");
    }
}

#[test]
fn a_driver_that_sleeps_until_a_foreign_wake_counts_one_park() {
    // One worker: the driving thread parks once it has looked for work for a while, until a
    // thread outside the scheduler completes what the root awaits. If that thread is late to
    // start, the driver may not have parked yet when the wake comes (then it counts none):
    // wait 200 ms, and try a few frames.
    let mut scheduler = scheduler(1);
    let mut parked_frames = 0;
    for _ in 0..5 {
        scheduler.run_frame(async |_| {
            let (tx, rx) = futures::channel::oneshot::channel();
            let waker = thread::spawn(move || {
                thread::sleep(Duration::from_millis(200));
                tx.send(7).unwrap();
            });
            assert_eq!(rx.await, Ok(7));
            waker.join().unwrap();
        });
        let stats = scheduler.last_frame_stats();
        let parks = stats.workers()[0].parks;
        assert!(parks <= 1, "one wake, at most one park: {stats}");
        if parks == 1 {
            parked_frames += 1;
            // Parked, it was out of work: idle.
            assert!(stats.workers()[0].idle > Duration::ZERO, "{stats}");
        }
        check_rows_add_up(stats, "a foreign wake");
    }
    assert!(parked_frames > 0, "the driver never counted its park");
}

#[test]
fn display_prints_the_totals_then_one_row_per_worker() {
    let mut scheduler = scheduler(3);
    scheduler.run_frame(async |frame| {
        let c = frame.counter();
        for _ in 0..5 {
            frame.spawn_counted(c, async {});
        }
        c.await;
    });
    let stats = scheduler.last_frame_stats();
    let text = stats.to_string();
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 2 + 3, "{text}");
    assert!(
        lines[0].starts_with("frame 0: 5 jobs (0 local, 0 foreign)"),
        "{text}"
    );
    let header: Vec<&str> = lines[1].split_whitespace().collect();
    assert_eq!(
        header,
        [
            "worker", "polls", "jobs", "taken", "lost", "parks", "busy", "µs", "idle", "µs",
            "wake", "µs"
        ]
    );
    for (i, (line, w)) in lines[2..].iter().zip(stats.workers()).enumerate() {
        let cells: Vec<&str> = line.split_whitespace().collect();
        assert_eq!(cells.len(), 9, "{line}");
        let counts = [
            i as u64,
            w.polls,
            w.jobs,
            w.steals_taken,
            w.steals_lost,
            w.parks,
        ];
        for (cell, n) in cells.iter().zip(counts) {
            assert_eq!(cell.parse::<u64>(), Ok(n), "worker {i}: {line}");
        }
        match w.wake_lag {
            None => assert_eq!(cells[8], "-", "{line}"),
            Some(lag) => assert_eq!(cells[8], format!("{:.1}", lag.as_secs_f64() * 1e6)),
        }
    }
}

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
                            e.fetch_add(1, SeqCst);
                        }
                    });
                }
                // Block the driving thread (inside the root's poll) until every job has run.
                while jobs.value() > 0 {
                    std::hint::spin_loop();
                }
            });
            assert_eq!(elsewhere.load(SeqCst), 64, "frame {frame_no}");
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

/// `elapsed` is the frame's wall time: the scheduler times frames with the cheap clock
/// (the time-stamp counter on x86-64) and converts with a rate it measures against `Instant`,
/// so check it against `Instant` from outside: never more than the call took, never less than
/// the job slept. Frames of 0 to 15 ms, from the very first frame of a new scheduler (whose
/// rate has been measured over microseconds only) on.
#[test]
fn elapsed_is_the_frames_wall_time() {
    for_each_worker_count(&[1, 2], |workers, scheduler| {
        for (i, ms) in [5u64, 0, 15, 1, 0, 10, 2].into_iter().enumerate() {
            let outer = Instant::now();
            scheduler.run_frame(async |frame| {
                frame
                    .spawn(async move { thread::sleep(Duration::from_millis(ms)) })
                    .await;
            });
            let took = outer.elapsed();
            let elapsed = scheduler.last_frame_stats().elapsed;
            // Slack for the rate's error: 1% and 20 µs.
            let slack = took / 100 + Duration::from_micros(20);
            assert!(
                elapsed >= Duration::from_millis(ms) && elapsed <= took + slack,
                "workers({workers}), frame {i}: elapsed {elapsed:?}, the job slept {ms} ms, \
                 run_frame took {took:?}"
            );
        }
    });
}
