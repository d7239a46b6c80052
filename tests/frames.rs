//! Frames as a user sees them: borrowing, nested jobs, detached jobs, yields, channels, `join!`
//! and `spawn_local`.

use std::cell::Cell;
use std::future::Future;
use std::pin::Pin;
use std::rc::Rc;
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering::SeqCst};
use std::task::{Context, Poll};

use frame_scheduler::{Scheduler, yield_now};
use futures::{SinkExt, StreamExt};

mod common;

use common::{for_each_worker_count, message, scheduler};

/// Counts the polls of the future it wraps.
struct CountPolls<'a, F> {
    inner: Pin<Box<F>>,
    polls: &'a AtomicUsize,
}

impl<'a, F: Future> CountPolls<'a, F> {
    fn new(inner: F, polls: &'a AtomicUsize) -> Self {
        CountPolls {
            inner: Box::pin(inner),
            polls,
        }
    }
}

impl<F: Future> Future for CountPolls<'_, F> {
    type Output = F::Output;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<F::Output> {
        self.polls.fetch_add(1, SeqCst);
        self.inner.as_mut().poll(cx)
    }
}

#[test]
fn borrowed_slices_mutated_by_nested_jobs_over_200_frames() {
    for_each_worker_count(&[1, 2, 4], |workers, scheduler| {
        let mut data = vec![0u64; 1000];
        let base: Vec<u64> = (0..1000).collect();
        for f in 0..200u64 {
            let total = scheduler.run_frame(async |frame| {
                let mut outer = Vec::new();
                for (chunk, src) in data.chunks_mut(100).zip(base.chunks(100)) {
                    outer.push(frame.spawn(async move {
                        let mut inner = Vec::new();
                        for (c, s) in chunk.chunks_mut(10).zip(src.chunks(10)) {
                            inner.push(frame.spawn(async move {
                                for (x, b) in c.iter_mut().zip(s) {
                                    *x += b + f;
                                }
                                c.iter().sum::<u64>()
                            }));
                        }
                        let mut sum = 0;
                        for h in inner {
                            sum += h.await;
                        }
                        sum
                    }));
                }
                let mut sum = 0;
                for h in outer {
                    sum += h.await;
                }
                sum
            });
            // After frame f, element i has had (i + g) added for g in 0..=f.
            let expect = |i: u64| (f + 1) * i + f * (f + 1) / 2;
            assert_eq!(total, (0..1000).map(expect).sum::<u64>(), "frame {f}");
            assert_eq!(scheduler.last_frame_stats().jobs, 10 + 100);
        }
        for (i, &x) in data.iter().enumerate() {
            assert_eq!(
                x,
                200 * i as u64 + 199 * 200 / 2,
                "element {i}, workers {workers}"
            );
        }
    });
}

#[test]
fn root_output_is_returned_from_run_frame() {
    let mut scheduler = scheduler(2);
    let words = ["alpha", "beta", "gamma"];
    let lens = scheduler.run_frame(async |frame| {
        let handles: Vec<_> = words
            .iter()
            .map(|w| frame.spawn(async move { w.len() }))
            .collect();
        let mut lens = Vec::new();
        for h in handles {
            lens.push(h.await);
        }
        lens
    });
    assert_eq!(lens, vec![5, 4, 5]);
}

#[test]
fn handle_awaited_by_another_job() {
    for_each_worker_count(&[1, 2, 3], |_, scheduler| {
        let out = scheduler.run_frame(async |frame| {
            let a = frame.spawn(async {
                yield_now().await;
                20u32
            });
            let b = frame.spawn(async move { a.await + 1 });
            let c = frame.spawn(async move { b.await * 2 });
            c.await
        });
        assert_eq!(out, 42);
        assert_eq!(scheduler.last_frame_stats().jobs, 3);
    });
}

#[test]
fn detached_jobs_run_to_completion_before_run_frame_returns() {
    for_each_worker_count(&[1, 2, 3], |_, scheduler| {
        for _ in 0..20 {
            let done = AtomicUsize::new(0);
            scheduler.run_frame(async |frame| {
                let done = &done;
                for i in 0..50 {
                    drop(frame.spawn(async move {
                        for _ in 0..i % 5 {
                            yield_now().await;
                        }
                        // A detached job spawned by a detached job.
                        drop(frame.spawn(async move {
                            yield_now().await;
                            done.fetch_add(1, SeqCst);
                        }));
                        done.fetch_add(1, SeqCst);
                    }));
                }
                // The root returns at once, without waiting for anything.
            });
            assert_eq!(done.load(SeqCst), 100);
            assert_eq!(scheduler.last_frame_stats().jobs, 100);
        }
    });
}

#[test]
fn job_yielding_100_times_is_polled_101_times() {
    for_each_worker_count(&[1, 2, 4], |workers, scheduler| {
        let polls: Vec<AtomicUsize> = (0..10).map(|_| AtomicUsize::new(0)).collect();
        let root_polls = AtomicUsize::new(0);
        let yields_done = AtomicUsize::new(0);
        scheduler.run_frame(async |frame| {
            let handles: Vec<_> = polls
                .iter()
                .map(|p| {
                    let yields_done = &yields_done;
                    frame.spawn(CountPolls::new(
                        async move {
                            for _ in 0..100 {
                                yield_now().await;
                                yields_done.fetch_add(1, SeqCst);
                            }
                        },
                        p,
                    ))
                })
                .collect();
            CountPolls::new(
                async {
                    for _ in 0..100 {
                        yield_now().await;
                    }
                },
                &root_polls,
            )
            .await;
            for h in handles {
                h.await;
            }
        });
        for p in &polls {
            assert_eq!(p.load(SeqCst), 101, "workers {workers}");
        }
        assert_eq!(root_polls.load(SeqCst), 101);
        assert_eq!(yields_done.load(SeqCst), 1000);
    });
}

#[test]
fn yield_now_lets_the_only_worker_run_a_queued_job() {
    let mut scheduler = scheduler(1);
    let out = scheduler.run_frame(async |frame| {
        let job = frame.spawn(async { 7 });
        assert!(!job.is_finished());
        yield_now().await;
        assert!(job.is_finished());
        job.await
    });
    assert_eq!(out, 7);
}

#[test]
fn bounded_mpsc_channel_between_jobs() {
    for_each_worker_count(&[1, 2, 4], |_, scheduler| {
        for _ in 0..5 {
            let (sum, count) = scheduler.run_frame(async |frame| {
                let (tx, mut rx) = futures::channel::mpsc::channel::<u64>(2);
                for p in 0..4u64 {
                    let mut tx = tx.clone();
                    drop(frame.spawn(async move {
                        for i in 0..100 {
                            tx.send(p * 1000 + i).await.unwrap();
                        }
                    }));
                }
                drop(tx);
                let consumer = frame.spawn(async move {
                    let mut sum = 0u64;
                    let mut count = 0usize;
                    while let Some(v) = rx.next().await {
                        sum += v;
                        count += 1;
                    }
                    (sum, count)
                });
                consumer.await
            });
            let expect: u64 = (0..4u64)
                .map(|p| (0..100).map(|i| p * 1000 + i).sum::<u64>())
                .sum();
            assert_eq!(count, 400);
            assert_eq!(sum, expect);
        }
    });
}

#[test]
fn unbounded_channel_from_jobs_to_root() {
    let mut scheduler = scheduler(2);
    let got = scheduler.run_frame(async |frame| {
        let (tx, rx) = futures::channel::mpsc::unbounded::<usize>();
        for i in 0..64 {
            let tx = tx.clone();
            drop(frame.spawn(async move {
                yield_now().await;
                tx.unbounded_send(i).unwrap();
            }));
        }
        drop(tx);
        let mut got: Vec<usize> = rx.collect().await;
        got.sort_unstable();
        got
    });
    assert_eq!(got, (0..64).collect::<Vec<_>>());
}

#[test]
fn join_macro_over_handles() {
    for_each_worker_count(&[1, 2, 3], |_, scheduler| {
        let out = scheduler.run_frame(async |frame| {
            let a = frame.spawn(async { 1u32 });
            let b = frame.spawn(async {
                yield_now().await;
                String::from("two")
            });
            let c = frame.spawn(async {
                for _ in 0..3 {
                    yield_now().await;
                }
                vec![3u8; 3]
            });
            let (a, b, c) = futures::join!(a, b, c);
            let all =
                futures::future::join_all((0..10u32).map(|i| frame.spawn(async move { i }))).await;
            (a, b, c, all)
        });
        assert_eq!(
            out,
            (
                1,
                String::from("two"),
                vec![3, 3, 3],
                (0..10).collect::<Vec<_>>()
            )
        );
    });
}

#[test]
fn spawn_local_jobs_share_an_rc_on_the_driving_thread() {
    for_each_worker_count(&[1, 2, 3], |_, scheduler| {
        let me = std::thread::current().id();
        let wrong_thread = AtomicUsize::new(0);
        let (count, strong) = scheduler.run_frame(async |frame| {
            let shared = Rc::new(Cell::new(0u32));
            let wrong_thread = &wrong_thread;
            let mut handles = Vec::new();
            for _ in 0..10 {
                let shared = Rc::clone(&shared);
                handles.push(frame.spawn_local(async move {
                    yield_now().await;
                    if std::thread::current().id() != me {
                        wrong_thread.fetch_add(1, SeqCst);
                    }
                    shared.set(shared.get() + 1);
                    // A local job may spawn local jobs too.
                    let nested = {
                        let shared = Rc::clone(&shared);
                        frame.spawn_local(async move {
                            if std::thread::current().id() != me {
                                wrong_thread.fetch_add(1, SeqCst);
                            }
                            shared.set(shared.get() + 1);
                            Rc::strong_count(&shared)
                        })
                    };
                    nested.await >= 2
                }));
            }
            let mut all_true = true;
            for h in handles {
                all_true &= h.await;
            }
            assert!(all_true);
            (shared.get(), Rc::strong_count(&shared))
        });
        assert_eq!(count, 20);
        assert_eq!(strong, 1, "every clone of the Rc was dropped by its job");
        assert_eq!(wrong_thread.load(SeqCst), 0);
        let stats = scheduler.last_frame_stats();
        assert_eq!(stats.jobs, 20);
        assert_eq!(stats.local_jobs, 20);
    });
}

#[test]
fn local_job_and_send_job_await_each_other() {
    for_each_worker_count(&[1, 2, 4], |_, scheduler| {
        let out = scheduler.run_frame(async |frame| {
            let rc = Rc::new(5u32);
            let local = frame.spawn_local(async move {
                yield_now().await;
                *rc * 2
            });
            // A Send job awaits the handle of a local job (its output is Send).
            let any = frame.spawn(async move { local.await + 1 });
            let rc2 = Rc::new(100u32);
            let local2 = frame.spawn_local(async move { any.await + *rc2 });
            local2.await
        });
        assert_eq!(out, 111);
        assert_eq!(scheduler.last_frame_stats().local_jobs, 2);
    });
}

#[test]
fn spawn_local_from_a_spawned_job_panics() {
    for_each_worker_count(&[1, 2], |_, scheduler| {
        let local_ran = AtomicUsize::new(0);
        let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            scheduler.run_frame(async |frame| {
                let local_ran = &local_ran;
                drop(frame.spawn(async move {
                    drop(frame.spawn_local(async move {
                        local_ran.fetch_add(1, SeqCst);
                    }));
                }));
            })
        }));
        let payload = result.expect_err("spawn_local from a spawned job must panic");
        let msg = message(&*payload);
        assert!(msg.contains("spawn_local"), "message: {msg}");
        assert_eq!(local_ran.load(SeqCst), 0);
        let stats = scheduler.last_frame_stats();
        assert_eq!(stats.jobs, 1);
        assert_eq!(stats.local_jobs, 0);
        assert_eq!(stats.panics, 1);
        // Still usable, and spawn_local from the root still works.
        let n = scheduler.run_frame(async |frame| frame.spawn_local(async { 3 }).await);
        assert_eq!(n, 3);
    });
}

#[test]
fn every_counted_job_runs_exactly_once() {
    // Every job runs exactly once, whatever thread runs it.
    let mut scheduler = scheduler(4);
    let seen = Mutex::new(vec![0u32; 500]);
    scheduler.run_frame(async |frame| {
        let seen = &seen;
        let c = frame.counter();
        for i in 0..500 {
            frame.spawn_counted(c, async move {
                if i % 7 == 0 {
                    yield_now().await;
                }
                seen.lock().unwrap()[i] += 1;
            });
        }
        c.await;
    });
    assert!(seen.into_inner().unwrap().iter().all(|&n| n == 1));
}

#[test]
fn many_empty_frames() {
    let mut scheduler = scheduler(2);
    for i in 0..1000u64 {
        let index = scheduler.run_frame(async |frame| frame.index());
        assert_eq!(index, i);
    }
    assert_eq!(scheduler.last_frame_stats().index, 999);
    assert_eq!(scheduler.last_frame_stats().jobs, 0);
}

#[test]
fn small_queue_overflows_into_shared_list() {
    // The root spawns 2000 jobs in one poll. With one worker no job runs meanwhile, so a queue
    // of 16 takes jobs 0..16 and jobs 16..2000 must go to the shared overflow list. That list
    // is a FIFO and the worker's own deque is LIFO, so the order the jobs run in shows where
    // they were: the overflowed ones run in the order they were spawned (a queue holding them
    // all would run job 1999 first). With two workers the other worker may make room by
    // stealing; there every job must still run exactly once.
    for workers in [1, 2] {
        let mut scheduler = Scheduler::builder()
            .workers(workers)
            .queue_capacity(16)
            .arena_capacity(1024)
            .build()
            .unwrap();
        for _ in 0..3 {
            let order = Mutex::new(Vec::with_capacity(2000));
            let sum = scheduler.run_frame(async |frame| {
                let order = &order;
                let handles: Vec<_> = (0..2000u64)
                    .map(|i| {
                        frame.spawn(async move {
                            order.lock().unwrap().push(i);
                            i
                        })
                    })
                    .collect();
                let mut sum = 0;
                for h in handles {
                    sum += h.await;
                }
                sum
            });
            assert_eq!(sum, 1999 * 2000 / 2);
            let order = order.into_inner().unwrap();
            let mut ran = order.clone();
            ran.sort_unstable();
            assert_eq!(
                ran,
                (0..2000).collect::<Vec<_>>(),
                "each job ran exactly once"
            );
            if workers == 1 {
                let overflowed: Vec<u64> = order.iter().copied().filter(|&i| i >= 16).collect();
                assert!(
                    overflowed.iter().copied().eq(16..2000),
                    "jobs 16.. did not run in the order they were spawned, so they did not all \
                     go through the shared overflow list; the first of them to run: {:?}",
                    &overflowed[..12]
                );
            }
            let stats = scheduler.last_frame_stats();
            assert_eq!(stats.jobs, 2000);
            // 2000 jobs do not fit in 1 KiB: the arena grew and kept the larger size.
            assert!(
                stats.arena_bytes > 1024,
                "arena_bytes {}",
                stats.arena_bytes
            );
            assert!(
                stats.arena_capacity > 1024,
                "arena_capacity {}",
                stats.arena_capacity
            );
        }
    }
}
