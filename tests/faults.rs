//! Faults in user code at the edges of the scheduler: closures that panic after spawning, wakers
//! whose `wake` or `clone` panics, wakers kept past their frame while arenas are replaced. Each
//! test is a regression test for a bug found in review; each must finish (a watchdog fails it
//! instead of hanging) and must never let `run_frame` return while a job still runs.

use std::future::{Future, IntoFuture, poll_fn};
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::pin::Pin;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::task::{Context, Poll, RawWaker, RawWakerVTable, Waker};
use std::time::Duration;

use frame_scheduler::{Frame, Scheduler, yield_now};

/// Runs `f` on its own thread and fails the test if it has not finished within `secs`.
fn within<T: Send + 'static>(secs: u64, f: impl FnOnce() -> T + Send + 'static) -> T {
    let (tx, rx) = std::sync::mpsc::channel();
    let t = std::thread::spawn(move || {
        let out = catch_unwind(AssertUnwindSafe(f));
        let _ = tx.send(());
        out
    });
    match rx.recv_timeout(Duration::from_secs(secs)) {
        Ok(()) => match t.join().unwrap() {
            Ok(v) => v,
            Err(p) => std::panic::resume_unwind(p),
        },
        Err(_) => panic!("did not finish within {secs} s: the frame hangs"),
    }
}

fn payload_str(p: &(dyn std::any::Any + Send)) -> String {
    p.downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| p.downcast_ref::<String>().cloned())
        .unwrap_or_default()
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

/// Wakers cloned on a non-worker thread (their cells come from the foreign pool) and woken in
/// a tight loop while frames end and their multi-chunk arenas are replaced. Run under valgrind
/// in CI, which reports any read of a freed arena.
#[test]
fn foreign_waker_woken_while_arenas_are_replaced() {
    static SLOT: Mutex<Option<Waker>> = Mutex::new(None);
    static STOP: AtomicBool = AtomicBool::new(false);
    within(60, || {
        let waker_thread = std::thread::spawn(|| {
            while !STOP.load(Ordering::Relaxed) {
                if let Some(w) = SLOT.lock().unwrap().as_ref() {
                    w.wake_by_ref();
                }
                std::thread::yield_now();
            }
        });
        let mut scheduler = Scheduler::builder()
            .workers(2)
            .arena_capacity(1024)
            .build()
            .unwrap();
        for frame_no in 0..60 {
            scheduler.run_frame(async |frame| {
                for _ in 0..(8 + frame_no % 24) {
                    let pad = [1u8; 512];
                    frame.spawn(async move {
                        std::hint::black_box(pad);
                    });
                }
                frame.spawn(poll_fn(|cx| {
                    let w: &Waker = cx.waker();
                    std::thread::scope(|s| {
                        s.spawn(|| *SLOT.lock().unwrap() = Some(w.clone()));
                    });
                    Poll::Ready(())
                }));
            });
        }
        drop(scheduler);
        STOP.store(true, Ordering::Relaxed);
        waker_thread.join().unwrap();
        *SLOT.lock().unwrap() = None;
    });
}

/// One worker: a job yields until an older sibling has run. The worker's own queue is LIFO, so
/// a yielding job must not be popped straight back, or the sibling would never run.
#[test]
fn job_yielding_until_a_sibling_runs_makes_progress_on_one_worker() {
    within(20, || {
        let mut scheduler = Scheduler::builder().workers(1).build().unwrap();
        for _ in 0..20 {
            let flag = AtomicBool::new(false);
            let yields = AtomicU32::new(0);
            scheduler.run_frame(async |frame| {
                frame.spawn(async {
                    flag.store(true, Ordering::SeqCst);
                });
                frame.spawn(async {
                    while !flag.load(Ordering::SeqCst) {
                        yields.fetch_add(1, Ordering::SeqCst);
                        yield_now().await;
                    }
                });
            });
            assert!(flag.load(Ordering::SeqCst));
            // The sibling runs right after the first yield, or, when the worker's periodic
            // look at the shared queue comes first, after the second.
            assert!(
                yields.load(Ordering::SeqCst) <= 2,
                "the sibling did not run promptly"
            );
        }
    });
}

/// A surplus `done()` while finished counted jobs are still batched on their worker: the frame
/// reports the misuse as a panic instead of hanging on a counter that can never reach zero.
#[test]
fn surplus_done_with_batched_completions_panics_instead_of_hanging() {
    within(20, || {
        for workers in [1, 2, 4] {
            let mut scheduler = Scheduler::builder().workers(workers).build().unwrap();
            let result = catch_unwind(AssertUnwindSafe(|| {
                scheduler.run_frame(async |frame| {
                    let c = frame.counter();
                    for _ in 0..3 {
                        frame.spawn_counted(c, async {});
                    }
                    c.done();
                    c.await;
                })
            }));
            let payload = result.expect_err("the surplus done() must be reported");
            assert!(
                payload_str(&*payload).contains("already 0"),
                "workers({workers})"
            );
        }
    });
}

/// Fork-join as a game loop does it: the root spawns a job, then computes inline (here: waits
/// for the job's flag) in the same poll. The job must be stealable meanwhile, not held back
/// until the root's poll ends.
#[test]
fn job_spawned_before_inline_work_runs_on_another_worker() {
    within(20, || {
        let mut scheduler = Scheduler::builder().workers(2).build().unwrap();
        for _ in 0..20 {
            let flag = AtomicBool::new(false);
            scheduler.run_frame(async |frame| {
                frame.spawn(async {
                    flag.store(true, Ordering::SeqCst);
                });
                // No await: the driving thread stays in this poll until the job has run.
                while !flag.load(Ordering::SeqCst) {
                    std::hint::spin_loop();
                }
            });
            assert!(flag.load(Ordering::SeqCst));
        }
    });
}
