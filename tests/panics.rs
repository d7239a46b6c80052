//! Panics in jobs, in the root future, in the frame closure, in output destructors and in the
//! user's own wakers (passed to a job handle or a counter wait): the frame drains, the first
//! payload comes out of `run_frame` unchanged, and the scheduler stays usable.

use std::any::Any;
use std::future::{Future, IntoFuture};
use std::mem;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicUsize, Ordering, Ordering::SeqCst};
use std::task::{Context, RawWaker, RawWakerVTable, Waker};
use std::time::Duration;

use frame_scheduler::{Frame, Scheduler, yield_now};
use futures::FutureExt;

mod common;

use common::{for_each_worker_count, message, payload_str, scheduler, within};

/// Runs a frame that must panic, and returns the payload it resumed.
fn run_panicking<R>(f: impl FnOnce() -> R) -> Box<dyn Any + Send> {
    match catch_unwind(AssertUnwindSafe(f)) {
        Ok(_) => panic!("run_frame returned normally, but a panic was expected"),
        Err(payload) => payload,
    }
}

#[test]
fn job_panic_keeps_str_payload_and_drains_frame() {
    for_each_worker_count(&[1, 2, 4], |workers, scheduler| {
        for round in 0..5 {
            let ran = AtomicUsize::new(0);
            let payload = run_panicking(|| {
                scheduler.run_frame(async |frame| {
                    let ran = &ran;
                    let handles: Vec<_> = (0..100)
                        .map(|i| {
                            frame.spawn(async move {
                                if i % 3 == 0 {
                                    yield_now().await;
                                }
                                if i == 37 {
                                    panic!("job 37 exploded");
                                }
                                ran.fetch_add(1, SeqCst);
                                i
                            })
                        })
                        .collect();
                    // Never awaited: dropped (detached) with the root future.
                    drop(handles);
                })
            });
            assert_eq!(
                payload.downcast_ref::<&'static str>(),
                Some(&"job 37 exploded")
            );
            assert_eq!(ran.load(SeqCst), 99, "workers {workers} round {round}");
            let stats = scheduler.last_frame_stats();
            assert_eq!(stats.panics, 1);
            assert_eq!(stats.jobs, 100);
            assert_eq!(stats.index, 2 * round);
            // The scheduler is usable for the next frame.
            let out = scheduler.run_frame(async |frame| frame.spawn(async { 42 }).await);
            assert_eq!(out, 42);
            assert_eq!(scheduler.last_frame_stats().panics, 0);
            assert_eq!(scheduler.last_frame_stats().index, 2 * round + 1);
        }
    });
}

#[test]
fn job_panic_keeps_string_payload() {
    for_each_worker_count(&[1, 2, 3], |_, scheduler| {
        let ran = AtomicUsize::new(0);
        let payload = run_panicking(|| {
            scheduler.run_frame(async |frame| {
                let ran = &ran;
                let c = frame.counter();
                for i in 0..50 {
                    frame.spawn_counted(c, async move {
                        if i == 13 {
                            panic!("job {i} exploded with a String");
                        }
                        ran.fetch_add(1, SeqCst);
                    });
                }
                c.await;
            })
        });
        assert_eq!(
            payload.downcast_ref::<String>().map(String::as_str),
            Some("job 13 exploded with a String")
        );
        assert_eq!(ran.load(SeqCst), 49);
    });
}

#[test]
fn root_panic_keeps_payload_and_drains_frame() {
    for_each_worker_count(&[1, 2, 4], |_, scheduler| {
        let ran = AtomicUsize::new(0);
        let payload = run_panicking(|| {
            scheduler.run_frame(async |frame| {
                let ran = &ran;
                let mut handles = Vec::new();
                for _ in 0..50 {
                    handles.push(frame.spawn(async move {
                        yield_now().await;
                        ran.fetch_add(1, SeqCst);
                    }));
                }
                yield_now().await;
                if handles.len() == 50 {
                    panic!("root exploded");
                }
                for h in handles {
                    h.await;
                }
            })
        });
        assert_eq!(
            payload.downcast_ref::<&'static str>(),
            Some(&"root exploded")
        );
        assert_eq!(ran.load(SeqCst), 50);
        let stats = scheduler.last_frame_stats();
        assert_eq!(stats.panics, 1);
        assert_eq!(stats.jobs, 50);
        assert_eq!(scheduler.run_frame(async |_| 9), 9);
    });
}

#[test]
fn root_panic_on_first_poll_keeps_payload() {
    let mut scheduler = scheduler(2);
    let payload = run_panicking(|| {
        scheduler.run_frame(async |_frame| -> u32 { panic!("root exploded at once") })
    });
    assert_eq!(
        payload.downcast_ref::<&'static str>(),
        Some(&"root exploded at once")
    );
    assert_eq!(scheduler.last_frame_stats().panics, 1);
    assert_eq!(scheduler.last_frame_stats().jobs, 0);
}

#[test]
fn root_awaiting_panicked_job_panics_but_job_payload_is_resumed() {
    for_each_worker_count(&[1, 2, 4], |_, scheduler| {
        let after_await = AtomicUsize::new(0);
        let others = AtomicUsize::new(0);
        let payload = run_panicking(|| {
            scheduler.run_frame(async |frame| {
                let others = &others;
                let doomed = frame.spawn(async {
                    yield_now().await;
                    panic!("original payload");
                });
                let rest: Vec<_> = (0..20)
                    .map(|_| {
                        frame.spawn(async move {
                            others.fetch_add(1, SeqCst);
                        })
                    })
                    .collect();
                doomed.await;
                after_await.fetch_add(1, SeqCst);
                drop(rest);
            })
        });
        assert_eq!(message(&*payload), "original payload");
        assert_eq!(after_await.load(SeqCst), 0, "the awaiter must not go on");
        assert_eq!(others.load(SeqCst), 20);
        let stats = scheduler.last_frame_stats();
        assert_eq!(stats.panics, 2, "the job's panic and the awaiting root's");
        assert_eq!(stats.jobs, 21);
    });
}

#[test]
fn job_awaiting_panicked_job_panics_but_original_payload_is_resumed() {
    for_each_worker_count(&[1, 2, 4], |_, scheduler| {
        let after_await = AtomicUsize::new(0);
        let payload = run_panicking(|| {
            scheduler.run_frame(async |frame| {
                let after_await = &after_await;
                let doomed = frame.spawn(async {
                    panic!("deep original");
                });
                drop(frame.spawn(async move {
                    doomed.await;
                    after_await.fetch_add(1, SeqCst);
                }));
            })
        });
        assert_eq!(message(&*payload), "deep original");
        assert_eq!(after_await.load(SeqCst), 0);
        assert_eq!(scheduler.last_frame_stats().panics, 2);
    });
}

#[test]
fn panic_propagates_through_a_chain_of_awaiters() {
    for_each_worker_count(&[1, 2, 3], |_, scheduler| {
        let payload = run_panicking(|| {
            scheduler.run_frame(async |frame| {
                let child = frame.spawn(async move {
                    let grandchild = frame.spawn(async {
                        yield_now().await;
                        panic!("grandchild");
                    });
                    grandchild.await;
                });
                child.await;
            })
        });
        assert_eq!(message(&*payload), "grandchild");
        // Grandchild, child (awaiting it), root (awaiting the child).
        assert_eq!(scheduler.last_frame_stats().panics, 3);
    });
}

#[test]
fn awaiter_catching_the_handle_panic_sees_a_message_and_frame_resumes_original() {
    for_each_worker_count(&[1, 2], |_, scheduler| {
        let caught = std::sync::Mutex::new(String::new());
        let payload = run_panicking(|| {
            scheduler.run_frame(async |frame| {
                let doomed = frame.spawn(async {
                    panic!("job payload");
                });
                let err = AssertUnwindSafe(doomed).catch_unwind().await.unwrap_err();
                *caught.lock().unwrap() = message(&*err).to_owned();
            })
        });
        assert_eq!(message(&*payload), "job payload");
        let caught = caught.into_inner().unwrap();
        assert!(caught.contains("panicked"), "awaiter's message: {caught}");
        // Only the job's panic was caught by the scheduler: the root caught its own.
        assert_eq!(scheduler.last_frame_stats().panics, 1);
    });
}

#[test]
fn counted_job_panic_still_decrements_its_counter() {
    for_each_worker_count(&[1, 2, 4], |_, scheduler| {
        let ran = AtomicUsize::new(0);
        let after_wait = AtomicUsize::new(0);
        let payload = run_panicking(|| {
            scheduler.run_frame(async |frame| {
                let ran = &ran;
                let c = frame.counter();
                for i in 0..10 {
                    frame.spawn_counted(c, async move {
                        yield_now().await;
                        if i == 3 {
                            panic!("counted job exploded");
                        }
                        ran.fetch_add(1, SeqCst);
                    });
                }
                c.await;
                assert_eq!(c.value(), 0);
                assert_eq!(ran.load(SeqCst), 9);
                after_wait.fetch_add(1, SeqCst);
            })
        });
        assert_eq!(message(&*payload), "counted job exploded");
        assert_eq!(after_wait.load(SeqCst), 1, "the counter's awaiter went on");
        assert_eq!(scheduler.last_frame_stats().panics, 1);
    });
}

#[test]
fn first_of_two_panics_is_resumed() {
    // The second job panics only once it has seen the first one finish (by panicking), so the
    // order of the two panics does not depend on the order the scheduler runs jobs in.
    for_each_worker_count(&[1, 2, 4], |workers, scheduler| {
        for _ in 0..10 {
            let payload = run_panicking(|| {
                scheduler.run_frame(async |frame| {
                    let first = frame.spawn(async {
                        yield_now().await;
                        panic!("first");
                    });
                    drop(frame.spawn(async move {
                        while !first.is_finished() {
                            yield_now().await;
                        }
                        drop(first);
                        panic!("second");
                    }));
                })
            });
            assert_eq!(message(&*payload), "first", "workers {workers}");
            assert_eq!(scheduler.last_frame_stats().panics, 2);
        }
    });
}

#[test]
fn panic_in_local_job_keeps_payload() {
    for_each_worker_count(&[1, 2], |_, scheduler| {
        let ran = AtomicUsize::new(0);
        let payload = run_panicking(|| {
            scheduler.run_frame(async |frame| {
                let ran = &ran;
                let rc = std::rc::Rc::new(1);
                drop(frame.spawn_local(async move {
                    yield_now().await;
                    if *rc == 1 {
                        panic!("local exploded");
                    }
                }));
                for _ in 0..10 {
                    drop(frame.spawn(async move {
                        ran.fetch_add(1, SeqCst);
                    }));
                }
            })
        });
        assert_eq!(message(&*payload), "local exploded");
        assert_eq!(ran.load(SeqCst), 10);
        assert_eq!(scheduler.last_frame_stats().local_jobs, 1);
    });
}

#[test]
fn futures_and_outputs_dropped_once_in_a_panicking_frame() {
    use common::Tracked;
    for_each_worker_count(&[1, 2, 4], |workers, scheduler| {
        let futures = AtomicUsize::new(0);
        let outputs = AtomicUsize::new(0);
        let payload = run_panicking(|| {
            scheduler.run_frame(async |frame| {
                let outputs = &outputs;
                for i in 0..30 {
                    let guard = Tracked::new(&futures);
                    let h = frame.spawn(async move {
                        let _guard = guard;
                        yield_now().await;
                        if i == 10 {
                            panic!("one of thirty");
                        }
                        Tracked::new(outputs)
                    });
                    if i % 2 == 0 {
                        mem::forget(h);
                    }
                }
                panic!("root too");
            })
        });
        // The root panicked first (before any job could run on one worker); with more
        // workers either may come first.
        let msg = message(&*payload);
        if workers == 1 {
            assert_eq!(msg, "root too");
        } else {
            assert!(
                msg == "root too" || msg == "one of thirty",
                "payload: {msg}"
            );
        }
        assert_eq!(
            futures.load(SeqCst),
            30,
            "the panicked job's future is dropped too"
        );
        assert_eq!(outputs.load(SeqCst), 29);
        assert_eq!(scheduler.last_frame_stats().panics, 2);
    });
}

/// An output whose destructor panics.
struct PanicOnDrop;

impl Drop for PanicOnDrop {
    fn drop(&mut self) {
        panic!("output destructor exploded");
    }
}

#[test]
fn panicking_output_destructor_of_detached_job_is_resumed() {
    for_each_worker_count(&[1, 2], |_, scheduler| {
        let payload = run_panicking(|| {
            scheduler.run_frame(async |frame| {
                let gate = frame.counter();
                gate.add(1);
                drop(frame.spawn(async move {
                    gate.await;
                    PanicOnDrop
                }));
                gate.done();
            })
        });
        assert_eq!(message(&*payload), "output destructor exploded");
        assert_eq!(scheduler.last_frame_stats().panics, 1);
        assert_eq!(scheduler.run_frame(async |_| 1), 1);
    });
}

#[test]
fn panicking_output_destructor_of_forgotten_handle_is_resumed() {
    for_each_worker_count(&[1, 2], |_, scheduler| {
        let ran = AtomicUsize::new(0);
        let payload = run_panicking(|| {
            scheduler.run_frame(async |frame| {
                mem::forget(frame.spawn(async { PanicOnDrop }));
                let ran = &ran;
                frame.spawn(async move { ran.fetch_add(1, SeqCst) }).await;
            })
        });
        assert_eq!(message(&*payload), "output destructor exploded");
        assert_eq!(ran.load(SeqCst), 1);
        assert_eq!(scheduler.last_frame_stats().panics, 1);
        assert_eq!(scheduler.run_frame(async |_| 2), 2);
    });
}

#[test]
fn scheduler_survives_alternating_panicking_frames() {
    for_each_worker_count(&[1, 2, 4], |_, scheduler| {
        for i in 0..40u64 {
            let result = catch_unwind(AssertUnwindSafe(|| {
                scheduler.run_frame(async |frame| {
                    let handles: Vec<_> = (0..16u64)
                        .map(|j| {
                            frame.spawn(async move {
                                if i % 2 == 1 && j == i % 16 {
                                    panic!("frame {i}");
                                }
                                j
                            })
                        })
                        .collect();
                    let mut sum = 0;
                    for h in handles {
                        sum += h.await;
                    }
                    sum
                })
            }));
            match result {
                Ok(sum) => {
                    assert_eq!(i % 2, 0);
                    assert_eq!(sum, 120);
                }
                Err(payload) => {
                    assert_eq!(i % 2, 1);
                    assert_eq!(message(&*payload), format!("frame {i}"));
                }
            }
            let stats = scheduler.last_frame_stats();
            assert_eq!(stats.index, i);
            assert_eq!(stats.jobs, 16);
        }
    });
}

static WAKE_PANICS: RawWakerVTable = RawWakerVTable::new(
    |p| RawWaker::new(p, &WAKE_PANICS),
    |_| panic!("user waker: wake panics"),
    |_| panic!("user waker: wake_by_ref panics"),
    |_| {},
);

static CLONE_PANICS: RawWakerVTable = RawWakerVTable::new(
    |_| panic!("user waker: clone panics"),
    |_| {},
    |_| {},
    |_| {},
);

fn waker(vtable: &'static RawWakerVTable) -> Waker {
    // SAFETY: every function of these vtables ignores the data pointer.
    unsafe { Waker::from_raw(RawWaker::new(std::ptr::null(), vtable)) }
}

/// Gives a plain closure the higher-ranked signature `run_frame` wants.
fn frame_fn<'env, F, Fut>(f: F) -> F
where
    F: for<'frame> FnOnce(&'frame Frame<'frame, 'env>) -> Fut,
{
    f
}

/// The frame closure itself panics after spawning a job that borrows from the caller: the panic
/// comes out of `run_frame` only after that job has finished, and the scheduler stays usable.
#[test]
fn closure_panicking_after_spawning_waits_for_its_jobs() {
    within(20, || {
        let mut scheduler = Scheduler::builder().workers(2).build().unwrap();
        let mut data = [0u32; 4];
        let result = catch_unwind(AssertUnwindSafe(|| {
            let data = &mut data;
            scheduler.run_frame(frame_fn(move |frame| {
                frame.spawn(async move {
                    std::thread::sleep(Duration::from_millis(150));
                    data[0] = 7;
                });
                panic!("closure body panics after spawning");
                #[allow(unreachable_code)]
                async {}
            }))
        }));
        let payload = result.expect_err("the closure's panic must come out of run_frame");
        assert_eq!(payload_str(&*payload), "closure body panics after spawning");
        // The job borrowing `data` finished before run_frame returned.
        assert_eq!(data[0], 7);
        // The scheduler is still usable.
        assert_eq!(scheduler.run_frame(async |f| f.spawn(async { 5 }).await), 5);
    });
}

/// A user waker that panics when woken, registered on a local job's handle: the driving thread
/// completing the job calls it. The panic is caught and comes out of `run_frame`, and only after
/// the frame has drained (a slower job on the other worker has finished).
#[test]
fn panicking_awaiter_waker_on_driver_is_caught_and_frame_drains() {
    within(20, || {
        let mut scheduler = Scheduler::builder().workers(2).build().unwrap();
        let slow_done = AtomicBool::new(false);
        let result = catch_unwind(AssertUnwindSafe(|| {
            scheduler.run_frame(async |frame| {
                frame.spawn(async {
                    std::thread::sleep(Duration::from_millis(20));
                    slow_done.store(true, Ordering::SeqCst);
                });
                // A local job (completes on this thread) whose handle was polled once with a
                // waker that panics when woken; the handle is kept until the job is done, so
                // completing it calls that waker.
                let mut local = frame.spawn_local(async {
                    yield_now().await;
                    1u32
                });
                let w = waker(&WAKE_PANICS);
                let _ = Pin::new(&mut local).poll(&mut Context::from_waker(&w));
                while !local.is_finished() {
                    yield_now().await;
                }
                drop(local);
            })
        }));
        let payload = result.expect_err("the waker's panic must come out of run_frame");
        assert_eq!(payload_str(&*payload), "user waker: wake panics");
        assert!(
            slow_done.load(Ordering::SeqCst),
            "run_frame returned before a job finished"
        );
        assert_eq!(scheduler.last_frame_stats().panics, 1);
        assert_eq!(scheduler.run_frame(async |f| f.spawn(async { 5 }).await), 5);
    });
}

/// A user waker that panics when woken, first on a counter's waiter list: the worker taking the
/// counter to zero catches the panic and still wakes the next waiter (the root); the panic comes
/// out of `run_frame`.
#[test]
fn panicking_counter_waker_on_worker_is_caught_and_other_waiters_wake() {
    within(20, || {
        let mut scheduler = Scheduler::builder().workers(2).build().unwrap();
        let result = catch_unwind(AssertUnwindSafe(|| {
            scheduler.run_frame(async |frame| {
                let c = frame.counter();
                frame.spawn_counted(c, async {
                    std::thread::sleep(Duration::from_millis(10));
                });
                // First waiter: a waker that panics when woken, left on the list.
                let mut bad = Box::pin(c.into_future());
                let w = waker(&WAKE_PANICS);
                assert!(bad.as_mut().poll(&mut Context::from_waker(&w)).is_pending());
                // Second waiter: the root itself. It must still be woken.
                c.await;
                drop(bad);
                c.value()
            })
        }));
        let payload = result.expect_err("the waker's panic must come out of run_frame");
        assert_eq!(payload_str(&*payload), "user waker: wake panics");
        assert_eq!(scheduler.last_frame_stats().panics, 1);
    });
}

/// A user waker whose `clone` panics, used to poll a job handle and a counter wait: the panic
/// reaches the poller, and neither the handle's nor the counter's lock stays held (both are
/// awaited normally afterwards).
#[test]
fn waker_whose_clone_panics_leaves_no_lock_held() {
    within(20, || {
        let mut scheduler = Scheduler::builder().workers(2).build().unwrap();
        let caught = AtomicU32::new(0);
        let out = scheduler.run_frame(async |frame| {
            let mut job = frame.spawn(async {
                std::thread::sleep(Duration::from_millis(10));
                41u32
            });
            let w = waker(&CLONE_PANICS);
            let polled = catch_unwind(AssertUnwindSafe(|| {
                Pin::new(&mut job).poll(&mut Context::from_waker(&w))
            }));
            if polled.is_err() {
                caught.fetch_add(1, Ordering::SeqCst);
            }
            // Counters too: a clone that panics must not leave the counter's lock held.
            let c = frame.counter();
            c.add(1);
            let mut wait = Box::pin(c.into_future());
            let polled = catch_unwind(AssertUnwindSafe(|| {
                wait.as_mut().poll(&mut Context::from_waker(&w))
            }));
            if polled.is_err() {
                caught.fetch_add(1, Ordering::SeqCst);
            }
            c.done();
            wait.await;
            job.await + 1
        });
        assert_eq!(out, 42);
        assert_eq!(
            caught.load(Ordering::SeqCst),
            2,
            "both clones should have panicked"
        );
    });
}
