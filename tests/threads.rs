//! Threads: where jobs run, spawning from threads that are not workers, `run_frame` from
//! inside a frame, and schedulers moving between threads.

use std::future::IntoFuture;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering, Ordering::SeqCst};
use std::thread;

use frame_scheduler::{Scheduler, yield_now};

mod common;

use common::{for_each_worker_count, message, scheduler, within};

#[test]
fn one_worker_runs_everything_on_the_calling_thread() {
    let mut scheduler = scheduler(1);
    let me = thread::current().id();
    let ids = Mutex::new(Vec::new());
    scheduler.run_frame(async |frame| {
        let ids = &ids;
        ids.lock().unwrap().push(thread::current().id());
        let mut handles = Vec::new();
        for _ in 0..20 {
            handles.push(frame.spawn(async move {
                ids.lock().unwrap().push(thread::current().id());
                let inner = frame.spawn(async move {
                    ids.lock().unwrap().push(thread::current().id());
                });
                yield_now().await;
                inner.await;
            }));
        }
        let c = frame.counter();
        for _ in 0..10 {
            frame.spawn_counted(c, async move {
                ids.lock().unwrap().push(thread::current().id());
            });
        }
        for h in handles {
            h.await;
        }
        c.await;
    });
    let ids = ids.into_inner().unwrap();
    assert_eq!(ids.len(), 1 + 20 + 20 + 10);
    assert!(ids.iter().all(|&id| id == me));
}

#[test]
fn two_workers_use_a_second_thread() {
    // A job that waits until another job has run on a different thread: with two workers the
    // driving thread and the background worker must both run jobs.
    let mut scheduler = scheduler(2);
    let ids = Mutex::new(std::collections::HashSet::new());
    let threads = scheduler.run_frame(async |frame| {
        let ids = &ids;
        let c = frame.counter();
        for _ in 0..64 {
            frame.spawn_counted(c, async move {
                // Block this worker until a second thread shows up (bounded).
                for _ in 0..2000 {
                    ids.lock().unwrap().insert(thread::current().id());
                    if ids.lock().unwrap().len() >= 2 {
                        break;
                    }
                    thread::sleep(std::time::Duration::from_micros(100));
                }
            });
        }
        c.await;
        ids.lock().unwrap().len()
    });
    assert_eq!(threads, 2);
}

#[test]
fn scoped_thread_in_a_job_spawns_into_the_frame() {
    // The same spawning code runs twice, with batches of different sizes: on the job's own
    // thread (a worker) and on a scoped thread the job starts (not a worker). Each batch counts
    // its jobs as spawned by a worker or not, by the thread it sees; the frame's `foreign_jobs`
    // must agree with that count exactly.
    for_each_worker_count(&[1, 2, 3], |workers, scheduler| {
        let ran = AtomicUsize::new(0);
        let spawned_by_worker = AtomicUsize::new(0);
        let spawned_by_foreign = AtomicUsize::new(0);
        scheduler.run_frame(async |frame| {
            let ran = &ran;
            let spawned_by_worker = &spawned_by_worker;
            let spawned_by_foreign = &spawned_by_foreign;
            frame
                .spawn(async move {
                    let job_thread = thread::current().id();
                    let spawn_batch = move |detached: usize| {
                        let jobs = detached + 5;
                        if thread::current().id() == job_thread {
                            spawned_by_worker.fetch_add(jobs, SeqCst);
                        } else {
                            spawned_by_foreign.fetch_add(jobs, SeqCst);
                        }
                        for _ in 0..detached {
                            drop(frame.spawn(async move {
                                yield_now().await;
                                ran.fetch_add(1, SeqCst);
                            }));
                        }
                        // A counter made on this thread, and counted jobs.
                        let c = frame.counter();
                        for _ in 0..5 {
                            frame.spawn_counted(c, async move {
                                ran.fetch_add(1, SeqCst);
                            });
                        }
                    };
                    spawn_batch(3);
                    thread::scope(|s| {
                        s.spawn(move || spawn_batch(10));
                    });
                })
                .await;
        });
        assert_eq!(spawned_by_worker.load(SeqCst), 3 + 5);
        assert_eq!(spawned_by_foreign.load(SeqCst), 10 + 5);
        assert_eq!(ran.load(SeqCst), 8 + 15);
        let stats = scheduler.last_frame_stats();
        assert_eq!(stats.foreign_jobs, 15, "workers {workers}");
        assert_eq!(stats.jobs, 1 + 8 + 15);
    });
}

#[test]
fn foreign_thread_blocks_on_handles_and_counters_of_jobs_it_spawned() {
    // The job that starts the scoped thread blocks its worker; another worker runs the rest.
    for_each_worker_count(&[2, 3], |_, scheduler| {
        let counted = AtomicUsize::new(0);
        let sum = scheduler.run_frame(async |frame| {
            let counted = &counted;
            frame
                .spawn(async move {
                    thread::scope(|s| {
                        s.spawn(|| {
                            let handles: Vec<_> = (0..20u64)
                                .map(|i| {
                                    frame.spawn(async move {
                                        yield_now().await;
                                        i
                                    })
                                })
                                .collect();
                            let c = frame.counter();
                            for _ in 0..7 {
                                frame.spawn_counted(c, async move {
                                    counted.fetch_add(1, SeqCst);
                                });
                            }
                            futures::executor::block_on(c.into_future());
                            let mut sum = 0;
                            for h in handles {
                                sum += futures::executor::block_on(h);
                            }
                            sum
                        })
                        .join()
                        .unwrap()
                    })
                })
                .await
        });
        assert_eq!(sum, 190);
        assert_eq!(counted.load(SeqCst), 7);
        assert_eq!(scheduler.last_frame_stats().foreign_jobs, 27);
    });
}

#[test]
fn spawn_local_from_a_foreign_thread_panics() {
    let mut scheduler = scheduler(2);
    let msg = scheduler.run_frame(async |frame| {
        frame
            .spawn(async move {
                thread::scope(|s| {
                    s.spawn(|| {
                        let err = catch_unwind(AssertUnwindSafe(|| {
                            drop(frame.spawn_local(async {}));
                        }))
                        .unwrap_err();
                        message(&*err).to_owned()
                    })
                    .join()
                    .unwrap()
                })
            })
            .await
    });
    assert!(msg.contains("spawn_local"), "{msg}");
    assert_eq!(scheduler.last_frame_stats().jobs, 1);
}

#[test]
fn run_frame_inside_a_job_panics_with_a_message() {
    for_each_worker_count(&[1, 2], |_, outer| {
        let mut inner = scheduler(1);
        let inner_ran = AtomicUsize::new(0);
        let payload = catch_unwind(AssertUnwindSafe(|| {
            outer.run_frame(async |frame| {
                let inner = &mut inner;
                let inner_ran = &inner_ran;
                frame
                    .spawn(async move {
                        inner.run_frame(async |_| {
                            inner_ran.fetch_add(1, SeqCst);
                        })
                    })
                    .await;
            })
        }))
        .unwrap_err();
        let msg = message(&*payload);
        assert!(msg.contains("run_frame called from inside a job"), "{msg}");
        assert_eq!(inner_ran.load(SeqCst), 0);
        // The job's panic, and the root's as it awaited the job.
        assert_eq!(outer.last_frame_stats().panics, 2);
        // Both schedulers still work; the refused call did not use up a frame index.
        assert_eq!(inner.run_frame(async |frame| frame.index()), 0);
        assert_eq!(outer.run_frame(async |frame| frame.index()), 1);
    });
}

#[test]
fn run_frame_inside_a_root_future_panics_with_a_message() {
    let mut outer = scheduler(2);
    let mut inner = scheduler(2);
    let payload = catch_unwind(AssertUnwindSafe(|| {
        outer.run_frame(async |_frame| inner.run_frame(async |_| 1))
    }))
    .unwrap_err();
    let msg = message(&*payload);
    assert!(msg.contains("run_frame called from inside"), "{msg}");
    assert_eq!(outer.last_frame_stats().panics, 1);
    assert_eq!(inner.run_frame(async |_| 2), 2);
    assert_eq!(outer.run_frame(async |_| 3), 3);
}

#[test]
fn scheduler_moves_between_threads() {
    let mut scheduler = scheduler(2);
    let data = vec![1u64; 100];
    let mut total = 0;
    for _ in 0..4 {
        let data = &data;
        let (s, sum) = thread::scope(|ts| {
            ts.spawn(move || {
                let sum = scheduler.run_frame(async |frame| {
                    let hs: Vec<_> = data
                        .chunks(10)
                        .map(|c| frame.spawn(async move { c.iter().sum::<u64>() }))
                        .collect();
                    let mut sum = 0;
                    for h in hs {
                        sum += h.await;
                    }
                    sum
                });
                (scheduler, sum)
            })
            .join()
            .unwrap()
        });
        scheduler = s;
        total += sum;
    }
    assert_eq!(total, 400);
    assert_eq!(scheduler.last_frame_stats().index, 3);
}

#[test]
fn schedulers_run_frames_on_several_threads_at_once() {
    thread::scope(|ts| {
        let handles: Vec<_> = (0..3u64)
            .map(|t| {
                ts.spawn(move || {
                    let mut scheduler = scheduler(2);
                    let mut total = 0;
                    for f in 0..50u64 {
                        total += scheduler.run_frame(async |frame| {
                            let hs: Vec<_> = (0..10u64)
                                .map(|i| frame.spawn(async move { i + t + f }))
                                .collect();
                            let mut sum = 0;
                            for h in hs {
                                sum += h.await;
                            }
                            sum
                        });
                    }
                    total
                })
            })
            .collect();
        for (t, h) in handles.into_iter().enumerate() {
            let t = t as u64;
            let expect: u64 = (0..50u64)
                .map(|f| (0..10u64).map(|i| i + t + f).sum::<u64>())
                .sum();
            assert_eq!(h.join().unwrap(), expect);
        }
    });
}

/// Scoped threads spawning through `&Frame` (the foreign path), awaiting handles and counters
/// with `block_on`, spawning counted jobs, and reading counters.
#[test]
fn scoped_threads_spawning_and_blocking_on_handles() {
    within(120, || {
        for workers in [2, 3] {
            let mut scheduler = Scheduler::builder()
                .workers(workers)
                .queue_capacity(16)
                .build()
                .unwrap();
            for _ in 0..100 {
                let sum = AtomicUsize::new(0);
                scheduler.run_frame(async |frame| {
                    let sum = &sum;
                    let c = frame.counter();
                    let outer = frame.spawn(async move {
                        std::thread::scope(|s| {
                            for t in 0..3usize {
                                s.spawn(move || {
                                    let hs: Vec<_> = (0..20usize)
                                        .map(|i| frame.spawn(async move { i * t }))
                                        .collect();
                                    for _ in 0..10 {
                                        frame.spawn_counted(c, async move {
                                            sum.fetch_add(1, Ordering::Relaxed);
                                        });
                                    }
                                    let mut acc = 0;
                                    for h in hs {
                                        acc += futures::executor::block_on(h);
                                    }
                                    let _ = c.value();
                                    sum.fetch_add(acc, Ordering::Relaxed);
                                });
                            }
                        });
                    });
                    outer.await;
                    c.await;
                });
                assert_eq!(sum.load(Ordering::Relaxed), 3 * 10 + (1 + 2) * 190);
            }
        }
    });
}
