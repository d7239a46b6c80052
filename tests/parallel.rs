//! Data-parallel loops: every index exactly once, `min_len` respected, the adaptive splitter's
//! call counts, loops from the root, from jobs, from loop bodies and from foreign threads,
//! panics in bodies, the drop of bodies, and batch spawns.

use std::collections::HashSet;
use std::future::IntoFuture;
use std::ops::Range;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::Mutex;
use std::sync::atomic::{AtomicU32, AtomicUsize, Ordering::SeqCst};
use std::time::Duration;

use frame_scheduler::{ChunksJob, Frame, Scheduler, yield_now};

mod common;

use common::{Tracked, for_each_worker_count, message, scheduler, within};

/// One slot per index, counting the calls that covered it.
fn hits(len: usize) -> Vec<AtomicU32> {
    (0..len).map(|_| AtomicU32::new(0)).collect()
}

/// Every index of `0..len` was hit exactly once.
fn assert_each_once(hits: &[AtomicU32], what: &str) {
    for (i, h) in hits.iter().enumerate() {
        assert_eq!(h.load(SeqCst), 1, "{what}: index {i}");
    }
}

/// The calls' ranges, sorted, tile `range` exactly.
fn assert_tiles(mut calls: Vec<Range<usize>>, range: Range<usize>, what: &str) {
    calls.sort_by_key(|r| r.start);
    let mut at = range.start;
    for r in &calls {
        assert_eq!(
            r.start, at,
            "{what}: calls {calls:?} leave a gap or overlap"
        );
        assert!(r.end > r.start, "{what}: an empty call");
        at = r.end;
    }
    assert_eq!(at, range.end, "{what}: calls {calls:?} stop short");
}

/// No call shorter than `min_len`, unless the whole range is (then exactly one call).
fn assert_min_len(calls: &[Range<usize>], len: usize, min_len: usize, what: &str) {
    let min = min_len.max(1);
    if len == 0 {
        assert!(calls.is_empty(), "{what}: body called on an empty range");
    } else if len < min {
        assert!(
            calls.len() == 1 && calls[0] == (0..len),
            "{what}: a short range runs whole, got {calls:?}"
        );
    } else {
        for r in calls {
            assert!(
                r.len() >= min,
                "{what}: call {r:?} shorter than min_len {min}"
            );
        }
    }
}

#[test]
fn every_index_exactly_once_small_ranges() {
    for_each_worker_count(&[1, 2, 3], |workers, scheduler| {
        for len in 0..=64 {
            for min_len in 0..=9 {
                let what = format!("workers({workers}) len {len} min_len {min_len}");
                let seen = hits(len);
                let calls = Mutex::new(Vec::new());
                let after = scheduler.run_frame(async |frame| {
                    let c = frame.parallel_for(0..len, min_len, |r| {
                        calls.lock().unwrap().push(r.clone());
                        for i in r {
                            seen[i].fetch_add(1, SeqCst);
                        }
                    });
                    c.await;
                    // The loop is over once its counter is.
                    seen.iter().map(|h| h.load(SeqCst)).sum::<u32>()
                });
                assert_eq!(after as usize, len, "{what}");
                assert_each_once(&seen, &what);
                let calls = calls.into_inner().unwrap();
                assert_min_len(&calls, len, min_len, &what);
                if len > 0 {
                    assert_tiles(calls, 0..len, &what);
                }
            }
        }
    });
}

#[test]
fn ranges_not_starting_at_zero() {
    for_each_worker_count(&[1, 2, 3], |_, scheduler| {
        for start in [1usize, 7, 1000, usize::MAX - 100] {
            let len = 100;
            let calls = Mutex::new(Vec::new());
            scheduler.run_frame(async |frame| {
                frame
                    .parallel_for(start..start + len, 3, |r| calls.lock().unwrap().push(r))
                    .await;
            });
            let calls = calls.into_inner().unwrap();
            assert_tiles(calls, start..start + len, &format!("start {start}"));
        }
    });
}

#[test]
fn large_range_each_index_once_by_counting() {
    for_each_worker_count(&[1, 2, 4], |workers, scheduler| {
        for min_len in [1, 1000] {
            let len = 1_000_000usize;
            let calls = Mutex::new(Vec::new());
            let items = AtomicUsize::new(0);
            let index_sum = AtomicUsize::new(0);
            scheduler.run_frame(async |frame| {
                frame
                    .parallel_for(0..len, min_len, |r| {
                        items.fetch_add(r.len(), SeqCst);
                        index_sum.fetch_add(r.clone().sum::<usize>(), SeqCst);
                        calls.lock().unwrap().push(r);
                    })
                    .await;
            });
            let what = format!("workers({workers}) min_len {min_len}");
            assert_eq!(items.into_inner(), len, "{what}");
            assert_eq!(index_sum.into_inner(), len * (len - 1) / 2, "{what}");
            let calls = calls.into_inner().unwrap();
            assert_min_len(&calls, len, min_len, &what);
            assert_tiles(calls, 0..len, &what);
        }
    });
}

#[test]
fn one_worker_splits_a_million_into_at_most_16_calls() {
    let mut scheduler = scheduler(1);
    for from in ["root", "job", "foreign"] {
        let calls = Mutex::new(Vec::new());
        scheduler.run_frame(async |frame| {
            let body = |r: Range<usize>| calls.lock().unwrap().push(r);
            match from {
                "root" => frame.parallel_for(0..1_000_000, 1, body).await,
                "job" => {
                    frame
                        .spawn(async move { frame.parallel_for(0..1_000_000, 1, body).await })
                        .await
                }
                _ => {
                    // The loop starts on a thread that is no worker; the one worker runs it.
                    let c = std::thread::scope(|s| {
                        s.spawn(|| frame.parallel_for(0..1_000_000, 1, body))
                            .join()
                            .unwrap()
                    });
                    c.await
                }
            }
        });
        let calls = calls.into_inner().unwrap();
        assert!(
            calls.len() <= 16,
            "from the {from}: {} body calls on workers(1): {calls:?}",
            calls.len()
        );
        assert_tiles(calls, 0..1_000_000, from);
    }
}

#[test]
fn every_worker_gets_work_with_min_len_1() {
    for workers in [2, 3, 4] {
        let mut scheduler = scheduler(workers);
        let threads = Mutex::new(HashSet::new());
        let items = AtomicUsize::new(0);
        within(60, move || {
            scheduler.run_frame(async |frame| {
                frame
                    .parallel_for(0..10_000, 1, |r| {
                        items.fetch_add(r.len(), SeqCst);
                        threads.lock().unwrap().insert(std::thread::current().id());
                        // Hold this worker until every worker has run a piece (or give up
                        // after a while: the assertion below then fails).
                        common::wait_until(Duration::from_secs(10), || {
                            threads.lock().unwrap().len() >= workers
                        });
                    })
                    .await;
            });
            assert_eq!(items.into_inner(), 10_000);
            assert_eq!(
                threads.into_inner().unwrap().len(),
                workers,
                "workers({workers}): threads that ran a piece"
            );
        });
    }
}

/// A stolen piece gets its split budget back: with two workers and the call holding index 0
/// blocked until the rest is done, the other worker steals every piece the first worker
/// queued, and each gets the budget of 2 back: it splits, and both halves split twice more
/// with it (as rayon's splitter does), 8 calls each. The piece holding index 0 splits twice
/// if the worker that queued the loop runs it, three times if the other worker stole it
/// first: 1 + 8 × 2 or 1 + 8 × 3 calls. Without the reset each stolen piece would make 1 or
/// 2 calls, not 8.
#[test]
fn a_stolen_piece_splits_again() {
    let mut scheduler = scheduler(2);
    let len = 1 << 20;
    let calls = Mutex::new(Vec::new());
    let done = AtomicUsize::new(0);
    within(60, move || {
        scheduler.run_frame(async |frame| {
            frame
                .parallel_for(0..len, 1, |r| {
                    if r.start == 0 {
                        common::wait_until(Duration::from_secs(10), || {
                            done.load(SeqCst) == len - r.len()
                        });
                    }
                    done.fetch_add(r.len(), SeqCst);
                    calls.lock().unwrap().push(r);
                })
                .await;
        });
        let calls = calls.into_inner().unwrap();
        let first = calls
            .iter()
            .find(|r| r.start == 0)
            .expect("a call at 0")
            .clone();
        // How many times the piece holding index 0 split: 2 (run where it was queued) or 3
        // (stolen first, so its budget went back to 2 before its first split).
        let splits = (len / first.len()).trailing_zeros() as usize;
        assert!(
            first.len() << splits == len && (splits == 2 || splits == 3),
            "the piece at 0 is {first:?}; calls: {calls:?}"
        );
        assert_eq!(calls.len(), 1 + 8 * splits, "calls: {calls:?}");
        assert_tiles(calls, 0..len, "stolen splits");
    });
}

#[test]
fn for_each_chunk_hands_the_slice_back_for_a_second_pass() {
    for_each_worker_count(&[1, 2, 3], |workers, scheduler| {
        for len in [0usize, 1, 5, 63, 1000, 100_000] {
            let mut items: Vec<u64> = vec![0; len];
            let calls = Mutex::new(Vec::new());
            scheduler.run_frame(async |frame| {
                let items = frame
                    .for_each_chunk(&mut items, 7, |start, chunk| {
                        calls.lock().unwrap().push(start..start + chunk.len());
                        for (k, x) in chunk.iter_mut().enumerate() {
                            *x += (start + k) as u64;
                        }
                    })
                    .await;
                assert_eq!(items.len(), len);
                // The first pass is over: every item has its index.
                for (i, x) in items.iter().enumerate() {
                    assert_eq!(*x, i as u64);
                }
                let items = frame
                    .for_each_chunk(items, 0, |_, chunk| chunk.iter_mut().for_each(|x| *x *= 2))
                    .await;
                items[0..len.min(1)].iter_mut().for_each(|x| *x += 1);
            });
            for (i, x) in items.iter().enumerate() {
                let expected = 2 * i as u64 + u64::from(i == 0);
                assert_eq!(*x, expected, "workers({workers}) len {len} item {i}");
            }
            let calls = calls.into_inner().unwrap();
            let what = format!("workers({workers}) len {len}");
            assert_min_len(&calls, len, 7, &what);
            if len > 0 {
                assert_tiles(calls, 0..len, &what);
            }
        }
    });
}

#[test]
fn chunks_job_is_send_and_sync_like_its_items() {
    fn send_sync<T: Send + Sync>(_: &T) {}
    fn send<T: Send>(_: &T) {}
    let mut scheduler = scheduler(2);
    let mut a = vec![1u32; 100];
    let mut b = vec![std::cell::Cell::new(1u32); 100];
    scheduler.run_frame(async |frame| {
        let job: ChunksJob<'_, u32> =
            frame.for_each_chunk(&mut a, 1, |_, c| c.iter_mut().for_each(|x| *x += 1));
        send_sync(&job);
        // Awaited inside a spawned job, on any worker.
        let a = frame
            .spawn(async move { job.await.iter().sum::<u32>() })
            .await;
        let job = frame.for_each_chunk(&mut b, 10, |_, c| c.iter().for_each(|x| x.set(5)));
        send(&job);
        let b = frame.spawn(async move { job.await.len() }).await;
        (a, b)
    });
    assert!(a.iter().all(|&x| x == 2));
    assert!(b.iter().all(|x| x.get() == 5));
}

#[test]
fn loops_started_from_jobs_and_awaited_there() {
    for_each_worker_count(&[1, 2, 4], |workers, scheduler| {
        let seen = hits(64 * 100);
        scheduler.run_frame(async |frame| {
            let seen = &seen;
            let jobs = frame.counter();
            for row in 0..64 {
                frame.spawn_counted(jobs, async move {
                    frame
                        .parallel_for(row * 100..(row + 1) * 100, 3, |r| {
                            r.for_each(|i| {
                                seen[i].fetch_add(1, SeqCst);
                            })
                        })
                        .await;
                    // Awaited: this row is complete now.
                    for h in &seen[row * 100..(row + 1) * 100] {
                        assert_eq!(h.load(SeqCst), 1);
                    }
                });
            }
            jobs.await;
        });
        assert_each_once(&seen, &format!("workers({workers})"));
    });
}

#[test]
fn nested_loops_started_from_loop_bodies() {
    for_each_worker_count(&[1, 2, 3], |workers, scheduler| {
        let seen = hits(32 * 50);
        let unawaited = hits(32 * 50);
        scheduler.run_frame(async |frame| {
            let (seen, unawaited) = (&seen, &unawaited);
            let rows = frame.counter();
            // A body cannot await: it spawns a job that runs the inner loop and awaits it.
            frame
                .parallel_for(0..32, 1, move |outer| {
                    for row in outer {
                        frame.spawn_counted(rows, async move {
                            frame
                                .parallel_for(row * 50..(row + 1) * 50, 4, |r| {
                                    r.for_each(|i| {
                                        seen[i].fetch_add(1, SeqCst);
                                    })
                                })
                                .await;
                        });
                        // Or it starts an inner loop and lets the frame wait for it.
                        let _ = frame.parallel_for(row * 50..(row + 1) * 50, 1, |r| {
                            r.for_each(|i| {
                                unawaited[i].fetch_add(1, SeqCst);
                            })
                        });
                    }
                })
                .await;
            rows.await;
            assert_each_once(seen, "awaited inner loops");
        });
        assert_each_once(
            &unawaited,
            &format!("workers({workers}) unawaited inner loops"),
        );
    });
}

#[test]
fn loops_from_a_foreign_thread_holding_the_frame() {
    for workers in [2, 3] {
        let mut scheduler = scheduler(workers);
        let seen = hits(10_000);
        let mut items = vec![0u32; 10_000];
        within(60, {
            // Owned by the watchdog's thread, so that nothing is leaked (valgrind checks).
            let seen = std::sync::Arc::new(seen);
            move || {
                let seen: &[AtomicU32] = &seen;
                scheduler.run_frame(async |frame| {
                    let items = &mut items;
                    frame
                        .spawn(async move {
                            // This job blocks its worker inside the scope: the loops run on the
                            // others.
                            std::thread::scope(|s| {
                                s.spawn(|| {
                                    let c = frame.parallel_for(0..10_000, 16, |r| {
                                        r.for_each(|i| {
                                            seen[i].fetch_add(1, SeqCst);
                                        })
                                    });
                                    futures::executor::block_on(c.into_future());
                                    assert_each_once(seen, "foreign parallel_for, awaited");
                                    let items = futures::executor::block_on(frame.for_each_chunk(
                                        items,
                                        16,
                                        |start, c| {
                                            c.iter_mut()
                                                .enumerate()
                                                .for_each(|(k, x)| *x = (start + k) as u32)
                                        },
                                    ));
                                    for (i, x) in items.iter().enumerate() {
                                        assert_eq!(*x, i as u32);
                                    }
                                });
                            });
                        })
                        .await;
                });
                assert_each_once(seen, &format!("workers({workers})"));
            }
        });
    }
}

/// The body panics at index 500 after counting it; the other pieces run to the end.
#[test]
fn panic_in_body_runs_the_rest_and_resumes_at_frame_end() {
    for workers in [1, 2, 3] {
        let mut scheduler = scheduler(workers);
        let len = 10_000;
        let seen = hits(len);
        let panicking = Mutex::new(None);
        let awaited = AtomicUsize::new(0);
        let (scheduler, seen, panicking, awaited, out) = within(60, move || {
            let out = catch_unwind(AssertUnwindSafe(|| {
                scheduler.run_frame(async |frame| {
                    let c = frame.parallel_for(0..len, 1, |r| {
                        for i in r.clone() {
                            seen[i].fetch_add(1, SeqCst);
                            if i == 500 {
                                *panicking.lock().unwrap() = Some(r.clone());
                                panic!("body panicked at 500");
                            }
                        }
                    });
                    c.await;
                    // The counter came down all the way, the panicking piece's length included.
                    awaited.store(c.value() + 1, SeqCst);
                })
            }));
            (scheduler, seen, panicking, awaited, out)
        });
        let mut scheduler = scheduler;
        let payload = out.expect_err("run_frame resumes the body's panic");
        assert_eq!(message(&*payload), "body panicked at 500");
        assert_eq!(
            awaited.load(SeqCst),
            1,
            "the counter reached 0 and was awaited"
        );
        let skipped = panicking.into_inner().unwrap().unwrap();
        for (i, h) in seen.iter().enumerate() {
            let expected = u32::from(!(501..skipped.end).contains(&i));
            assert_eq!(h.load(SeqCst), expected, "workers({workers}) index {i}");
        }
        assert_eq!(scheduler.last_frame_stats().panics, 1);
        // The scheduler is still usable.
        let n = AtomicUsize::new(0);
        scheduler.run_frame(async |frame| {
            frame
                .parallel_for(0..100, 1, |r| {
                    n.fetch_add(r.len(), SeqCst);
                })
                .await;
        });
        assert_eq!(n.into_inner(), 100);
    }
}

#[test]
fn panic_in_every_body_call_is_reported_once() {
    within(60, || {
        let mut scheduler = scheduler(3);
        let calls = AtomicUsize::new(0);
        let back = AtomicUsize::new(0);
        let mut items = vec![0u8; 1000];
        let out = catch_unwind(AssertUnwindSafe(|| {
            scheduler.run_frame(async |frame| {
                let (items, calls) = (&mut items, &calls);
                let job = frame.spawn(async move {
                    frame
                        .for_each_chunk(items, 1, move |_, _| {
                            calls.fetch_add(1, SeqCst);
                            panic!("every chunk panics");
                        })
                        .await
                        .len()
                });
                // The slice still comes back, whole.
                back.store(job.await, SeqCst);
            })
        }));
        assert_eq!(back.into_inner(), 1000);
        assert_eq!(message(&*out.expect_err("resumed")), "every chunk panics");
        let calls = calls.into_inner();
        assert!(calls >= 1);
        assert_eq!(scheduler.last_frame_stats().panics, calls);
    });
}

#[test]
fn bodies_are_dropped_exactly_once_when_their_loop_is_done() {
    for_each_worker_count(&[1, 2, 3], |workers, scheduler| {
        for len in [0usize, 1, 10, 10_000] {
            let drops = AtomicUsize::new(0);
            let mut items = vec![0u8; len];
            let out = catch_unwind(AssertUnwindSafe(|| {
                scheduler.run_frame(async |frame| {
                    let drops = &drops;
                    let guard = Tracked::new(drops);
                    let c = frame.parallel_for(0..len, 1, move |r| {
                        let _ = &guard;
                        if r.contains(&7) {
                            panic!("seven");
                        }
                    });
                    c.await;
                    // Dropped by the last piece, before it took its length off the counter.
                    assert_eq!(drops.load(SeqCst), 1);
                    let guard = Tracked::new(drops);
                    frame
                        .for_each_chunk(&mut items, 3, move |_, _| {
                            let _ = &guard;
                        })
                        .await;
                    assert_eq!(drops.load(SeqCst), 2);
                })
            }));
            assert_eq!(out.is_err(), len > 7, "workers({workers}) len {len}");
            assert_eq!(drops.into_inner(), 2, "workers({workers}) len {len}");
        }
    });
}

#[test]
fn spawn_batch_counts_the_batch_once_and_runs_each_job_once() {
    for_each_worker_count(&[1, 2, 4], |workers, scheduler| {
        for n in [0usize, 1, 100, 10_000] {
            let seen = hits(n);
            scheduler.run_frame(async |frame| {
                let seen = &seen;
                let c = frame.counter();
                frame.spawn_batch(
                    c,
                    (0..n).map(|i| async move {
                        seen[i].fetch_add(1, SeqCst);
                    }),
                );
                if workers == 1 {
                    // Nothing ran yet: the root holds the only worker.
                    assert_eq!(c.value(), n);
                }
                c.await;
            });
            assert_each_once(&seen, &format!("workers({workers}) n {n}"));
            assert_eq!(scheduler.last_frame_stats().jobs, n as u64);
        }
    });
}

#[test]
fn spawn_batch_beyond_the_queue_capacity_overflows_to_the_shared_list() {
    let mut scheduler = Scheduler::builder()
        .workers(2)
        .queue_capacity(16)
        .build()
        .unwrap();
    let seen = hits(1000);
    scheduler.run_frame(async |frame| {
        let seen = &seen;
        let c = frame.counter();
        frame.spawn_batch(
            c,
            (0..1000).map(|i| async move {
                yield_now().await;
                seen[i].fetch_add(1, SeqCst);
            }),
        );
        c.await;
    });
    assert_each_once(&seen, "overflowing batch");
}

#[test]
fn spawn_batch_whose_iterator_panics_still_runs_what_it_gave() {
    let mut scheduler = scheduler(2);
    let seen = hits(100);
    let waited = AtomicUsize::new(0);
    scheduler.run_frame(async |frame| {
        let seen = &seen;
        let c = frame.counter();
        let out = catch_unwind(AssertUnwindSafe(|| {
            frame.spawn_batch(
                c,
                (0..100).map(|i| {
                    if i == 60 {
                        panic!("iterator gave up");
                    }
                    async move {
                        seen[i].fetch_add(1, SeqCst);
                    }
                }),
            )
        }));
        assert_eq!(message(&*out.unwrap_err()), "iterator gave up");
        c.await;
        waited.store(1, SeqCst);
    });
    assert_eq!(waited.into_inner(), 1);
    for (i, h) in seen.iter().enumerate() {
        assert_eq!(h.load(SeqCst), u32::from(i < 60), "job {i}");
    }
}

#[test]
fn spawn_batch_from_a_foreign_thread() {
    let mut scheduler = scheduler(2);
    let seen = hits(500);
    scheduler.run_frame(async |frame| {
        let seen = &seen;
        let c = frame.counter();
        std::thread::scope(|s| {
            s.spawn(|| {
                frame.spawn_batch(
                    c,
                    (0..500).map(|i| async move {
                        seen[i].fetch_add(1, SeqCst);
                    }),
                )
            });
        });
        c.await;
    });
    assert_each_once(&seen, "foreign batch");
}

/// A helper that takes the frame, as the crate docs show (E0521).
fn integrate<'f, 'e>(frame: &'f Frame<'f, 'e>, xs: &'f mut [f32]) -> ChunksJob<'f, f32> {
    frame.for_each_chunk(xs, 64, |_, c| c.iter_mut().for_each(|x| *x += 1.0))
}

#[test]
fn helper_functions_taking_the_frame() {
    let mut scheduler = scheduler(2);
    let mut xs = vec![0.0f32; 1000];
    scheduler.run_frame(async |frame| {
        let xs = integrate(frame, &mut xs).await;
        integrate(frame, xs).await;
    });
    assert!(xs.iter().all(|&x| x == 2.0));
}

#[test]
fn map_keeps_the_order_of_its_items() {
    for_each_worker_count(&[1, 2, 3], |workers, scheduler| {
        for len in [0usize, 1, 2, 9, 64, 1000, 100_000] {
            for min_len in [0, 1, 7, 1000] {
                let items: Vec<u64> = (0..len as u64).collect();
                let calls = AtomicUsize::new(0);
                let ok = scheduler.run_frame(async |frame| {
                    let out = frame
                        .map(&items, min_len, |x| {
                            calls.fetch_add(1, SeqCst);
                            x * 3 + 1
                        })
                        .await;
                    out.len() == len && out.iter().enumerate().all(|(i, &y)| y == i as u64 * 3 + 1)
                });
                assert!(ok, "workers({workers}) len {len} min_len {min_len}");
                assert_eq!(calls.into_inner(), len, "f once per item");
            }
        }
    });
}

#[test]
fn mapped_values_are_dropped_once_at_frame_end() {
    for_each_worker_count(&[1, 2, 3], |workers, scheduler| {
        for len in [0usize, 1, 100, 10_000] {
            let drops = AtomicUsize::new(0);
            let items: Vec<usize> = (0..len).collect();
            scheduler.run_frame(async |frame| {
                let (drops, items) = (&drops, &items);
                let out = frame
                    .map(items, 16, move |&i| Tracked(drops, i as u64))
                    .await;
                assert!(out.iter().enumerate().all(|(i, m)| m.1 == i as u64));
                // Replaced values are the caller's: dropped at once.
                if len > 0 {
                    out[0] = Tracked(drops, 7);
                    assert_eq!(drops.load(SeqCst), 1);
                }
                // Awaited from a job, on any worker.
                let again = frame.spawn(async move {
                    frame
                        .map(items, 16, move |&i| Tracked(drops, i as u64))
                        .await
                        .len()
                });
                assert_eq!(again.await, len);
                assert_eq!(
                    drops.load(SeqCst),
                    usize::from(len > 0),
                    "nothing else dropped"
                );
            });
            // Both outputs, the replacement included, at frame end.
            assert_eq!(
                drops.into_inner(),
                2 * len + usize::from(len > 0),
                "workers({workers}) len {len}"
            );
        }
    });
}

#[test]
fn map_output_not_awaited_is_still_dropped_at_frame_end() {
    let mut scheduler = scheduler(2);
    let drops = AtomicUsize::new(0);
    let items: Vec<usize> = (0..1000).collect();
    scheduler.run_frame(async |frame| {
        let drops = &drops;
        drop(frame.map(&items, 1, move |&i| Tracked(drops, i as u64)));
    });
    assert_eq!(drops.into_inner(), 1000);
}

/// `f` panics at item 500; every value made is dropped exactly once, awaiting panics the
/// awaiter, and `run_frame` resumes the first panic.
#[test]
fn panic_in_map_drops_what_was_made_and_panics_the_awaiter() {
    for workers in [1, 2, 3] {
        let result = within(60, move || {
            let mut scheduler = scheduler(workers);
            let made = AtomicUsize::new(0);
            let drops = AtomicUsize::new(0);
            let awaiter = Mutex::new(String::new());
            let items: Vec<usize> = (0..10_000).collect();
            let out = catch_unwind(AssertUnwindSafe(|| {
                scheduler.run_frame(async |frame| {
                    let (made, drops) = (&made, &drops);
                    let job = frame.map(&items, 1, move |&i| {
                        if i == 500 {
                            panic!("f panicked at 500");
                        }
                        made.fetch_add(1, SeqCst);
                        Tracked(drops, i as u64)
                    });
                    use futures::FutureExt;
                    let caught = AssertUnwindSafe(job).catch_unwind().await;
                    let Err(p) = caught else {
                        panic!("awaiting a panicked map returned")
                    };
                    *awaiter.lock().unwrap() = common::payload_str(&*p);
                })
            }));
            let payload = out.expect_err("run_frame resumes f's panic");
            assert_eq!(message(&*payload), "f panicked at 500");
            let made = made.into_inner();
            assert!(made < 10_000, "made {made}");
            assert_eq!(
                drops.into_inner(),
                made,
                "each value made dropped exactly once"
            );
            let awaiter = awaiter.into_inner().unwrap();
            assert!(
                awaiter.starts_with("a call of the function given to Frame::map panicked"),
                "{awaiter}"
            );
            scheduler.last_frame_stats().panics
        });
        // f's panic only: the root caught the awaiter's.
        assert_eq!(result, 1, "workers({workers})");
    }
}

#[test]
fn map_job_is_send_and_sync_like_its_output() {
    fn send_sync<T: Send + Sync>(_: &T) {}
    let mut scheduler = scheduler(2);
    let items = vec![1u32; 100];
    let n = scheduler.run_frame(async |frame| {
        let job = frame.map(&items, 1, |x| x + 1);
        send_sync(&job);
        frame
            .spawn(async move { job.await.iter().sum::<u32>() })
            .await
    });
    assert_eq!(n, 200);
}

#[test]
fn zero_sized_items_and_outputs() {
    let mut scheduler = scheduler(2);
    let mut units = vec![(); 1000];
    let calls = AtomicUsize::new(0);
    let n = scheduler.run_frame(async |frame| {
        let units = frame
            .for_each_chunk(&mut units, 1, |_, c| {
                calls.fetch_add(c.len(), SeqCst);
            })
            .await;
        let out: &mut [()] = frame.map(units, 1, |_| ()).await;
        out.len()
    });
    assert_eq!(n, 1000);
    assert_eq!(calls.into_inner(), 1000);
}
