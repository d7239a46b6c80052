//! Panics in jobs, in the root future and in output destructors: the frame drains, the first
//! payload comes out of `run_frame` unchanged, and the scheduler stays usable.

use std::any::Any;
use std::mem;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::atomic::{AtomicUsize, Ordering::SeqCst};

use frame_scheduler::yield_now;
use futures::FutureExt;

mod common;

use common::{for_each_worker_count, message, scheduler};

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
