//! Review E: reproductions from a hostile review of the unsafe core, kept as regression tests.
//! Each test states what it expects from the documented contract. Two findings were documented
//! as limitations rather than fixed, and have no test here: `Counter::value` read while a job
//! blocks its thread may lag (awaiting never does), and an ordinary job that blocks the driving
//! thread waiting for the root or a local job waits for ever (see `Frame::spawn_local`).
//! Hangs are caught by a watchdog; busy-waits inside jobs are bounded so that a hung frame
//! does not keep burning CPU after the test has failed.

use std::future::{Future, IntoFuture, poll_fn};
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use frame_scheduler::{JobHandle, Scheduler, yield_now};

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

/// A handle shared by two jobs and a scoped thread, polled by each with its own waker, and a
/// boxed counter wait moved between jobs and threads and polled with changing wakers.
#[test]
fn handles_and_counter_waits_polled_from_many_places() {
    within(120, || {
        for workers in [1, 2, 3] {
            let mut scheduler = Scheduler::builder().workers(workers).build().unwrap();
            for _ in 0..200 {
                let total = scheduler.run_frame(async |frame| {
                    let c = frame.counter();
                    c.add(1);
                    let target = frame.spawn(async {
                        for _ in 0..3 {
                            yield_now().await;
                        }
                        41u64
                    });
                    let shared: Arc<Mutex<Option<JobHandle<'_, u64>>>> =
                        Arc::new(Mutex::new(Some(target)));
                    let wait = Arc::new(Mutex::new(Some(Box::pin(c.into_future()))));
                    let got = Arc::new(AtomicUsize::new(0));
                    let mut pollers = Vec::new();
                    for k in 0..3 {
                        let (shared, wait, got) =
                            (Arc::clone(&shared), Arc::clone(&wait), Arc::clone(&got));
                        pollers.push(frame.spawn(async move {
                            poll_fn(|cx| {
                                let mut g = shared.lock().unwrap();
                                let mut w = wait.lock().unwrap();
                                if let Some(ww) = w.as_mut() {
                                    if ww.as_mut().poll(cx).is_ready() {
                                        *w = None;
                                    }
                                }
                                match g.as_mut() {
                                    None => Poll::Ready(()),
                                    Some(h) => match Pin::new(h).poll(cx) {
                                        Poll::Ready(v) => {
                                            got.fetch_add(v as usize + k - k, Ordering::SeqCst);
                                            *g = None;
                                            Poll::Ready(())
                                        }
                                        Poll::Pending => {
                                            if k == 2 {
                                                // Poll again with a foreign waker from a
                                                // scoped thread, replacing ours.
                                                let mut taken = w.take();
                                                std::thread::scope(|s| {
                                                    s.spawn(|| {
                                                        let noop = futures::task::noop_waker();
                                                        let mut cx2 = Context::from_waker(&noop);
                                                        if let Some(ww) = taken.as_mut() {
                                                            if ww.as_mut().poll(&mut cx2).is_ready()
                                                            {
                                                                taken = None;
                                                            }
                                                        }
                                                    });
                                                });
                                                *w = taken;
                                            }
                                            // Single-waker futures polled by several tasks:
                                            // the last registration wins, so keep polling.
                                            cx.waker().wake_by_ref();
                                            Poll::Pending
                                        }
                                    },
                                }
                            })
                            .await;
                        }));
                    }
                    yield_now().await;
                    c.done();
                    for p in pollers {
                        p.await;
                    }
                    // Drop whatever wait is left (it may be registered).
                    wait.lock().unwrap().take();
                    got.load(Ordering::SeqCst)
                });
                assert_eq!(total, 41);
            }
        }
    });
}

/// Leaks `b`, never dropping it, but keeps its address in a static so that valgrind's leak
/// check (run on every test in CI) sees it as reachable rather than lost.
fn keep_forever<T>(b: Box<T>) {
    static KEPT: std::sync::Mutex<Vec<usize>> = std::sync::Mutex::new(Vec::new());
    KEPT.lock().unwrap().push(Box::into_raw(b) as usize);
}

/// Handles and counter waits leaked (mem::forget, a box never dropped) with foreign and job
/// wakers registered, frame after frame.
#[test]
fn leaked_registered_handles_and_waits_across_frames() {
    within(60, || {
        let mut scheduler = Scheduler::builder().workers(2).build().unwrap();
        for _ in 0..300 {
            scheduler.run_frame(async |frame| {
                let c = frame.counter();
                c.add(1);
                let h = frame.spawn(async {
                    yield_now().await;
                    vec![1u8; 16]
                });
                let leaker = frame.spawn(async move {
                    let mut h = h;
                    let mut w = Box::pin(c.into_future());
                    poll_fn(|cx| {
                        let _ = Pin::new(&mut h).poll(cx);
                        let _ = w.as_mut().poll(cx);
                        Poll::Ready(())
                    })
                    .await;
                    // Registered with this job's waker; both leaked.
                    std::mem::forget(h);
                    keep_forever(Box::new(w));
                    let mut w2 = Box::pin(c.into_future());
                    let noop = futures::task::noop_waker();
                    let _ = w2.as_mut().poll(&mut Context::from_waker(&noop));
                    keep_forever(Box::new(w2));
                });
                leaker.await;
                c.done();
            });
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
