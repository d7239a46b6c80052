//! `FrameStats`: what `last_frame_stats` reports after each frame.

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering::SeqCst};
use std::thread;
use std::time::{Duration, Instant};

use frame_scheduler::{FrameStats, Scheduler, yield_now};

mod common;

use common::{for_each_worker_count, scheduler};

#[test]
fn stats_are_default_before_the_first_frame() {
    let scheduler = scheduler(2);
    assert_eq!(*scheduler.last_frame_stats(), FrameStats::default());
    assert_eq!(scheduler.last_frame_stats().index, 0);
    assert_eq!(scheduler.last_frame_stats().jobs, 0);
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
