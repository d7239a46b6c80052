//! Job handles and counter waits polled by hand, as plain futures: shared by several jobs and a
//! scoped thread, each polling with its own waker, and leaked (forgotten, or boxed and never
//! dropped) with a waker registered, frame after frame. Nothing hangs, every output arrives
//! once, and valgrind in CI finds no memory error.

mod common;

use std::future::{Future, IntoFuture, poll_fn};
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};

use common::{for_each_worker_count, within};
use frame_scheduler::{JobHandle, Scheduler, yield_now};

/// A handle shared by two jobs and a scoped thread, polled by each with its own waker, and a
/// boxed counter wait moved between jobs and threads and polled with changing wakers.
#[test]
fn handles_and_counter_waits_polled_from_many_places() {
    within(120, || {
        for_each_worker_count(&[1, 2, 3], |_, scheduler| {
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
        });
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
