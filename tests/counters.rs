//! Counters as latches: many waiters, `add`/`done` by hand, underflow, already-zero counters,
//! dropped waits, a staged pipeline, and waits for a target (`until`).

use std::future::{Future, IntoFuture};
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering, Ordering::SeqCst};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, RawWaker, RawWakerVTable, Wake, Waker};
use std::time::{Duration, Instant};

use frame_scheduler::{Scheduler, yield_now};
use futures::FutureExt;

mod common;

use common::{for_each_worker_count, message, payload_str, scheduler, within};

#[test]
fn many_waiters_on_one_counter_are_all_released() {
    for_each_worker_count(&[1, 2, 4], |_, scheduler| {
        let released = AtomicUsize::new(0);
        scheduler.run_frame(async |frame| {
            let released = &released;
            let latch = frame.counter();
            latch.add(1);
            let waiters = frame.counter();
            // More waiters than the counter wakes in one batch.
            for _ in 0..100 {
                frame.spawn_counted(waiters, async move {
                    latch.await;
                    released.fetch_add(1, SeqCst);
                });
            }
            for _ in 0..20 {
                yield_now().await;
            }
            assert_eq!(released.load(SeqCst), 0, "waiters went past a closed latch");
            assert_eq!(latch.value(), 1);
            latch.done();
            waiters.await;
            assert_eq!(released.load(SeqCst), 100);
        });
        assert_eq!(released.load(SeqCst), 100);
    });
}

#[test]
fn add_and_done_by_hand() {
    for_each_worker_count(&[1, 2, 3], |_, scheduler| {
        let done_jobs = AtomicUsize::new(0);
        scheduler.run_frame(async |frame| {
            let done_jobs = &done_jobs;
            let c = frame.counter();
            assert_eq!(c.value(), 0);
            c.add(5);
            assert_eq!(c.value(), 5);
            c.add(3);
            assert_eq!(c.value(), 8);
            c.done();
            c.done();
            c.done();
            assert_eq!(c.value(), 5);
            for i in 0..5 {
                drop(frame.spawn(async move {
                    for _ in 0..i {
                        yield_now().await;
                    }
                    done_jobs.fetch_add(1, SeqCst);
                    c.done();
                }));
            }
            c.await;
            assert_eq!(c.value(), 0);
            assert_eq!(done_jobs.load(SeqCst), 5);
            // A latch can be used again once it reached zero.
            c.add(1);
            drop(frame.spawn(async move {
                yield_now().await;
                done_jobs.fetch_add(1, SeqCst);
                c.done();
            }));
            c.await;
            assert_eq!(done_jobs.load(SeqCst), 6);
        });
    });
}

#[test]
fn done_below_zero_panics_with_a_clear_message() {
    let mut scheduler = scheduler(2);
    // Caught inside the root: the counter is still usable afterwards.
    scheduler.run_frame(async |frame| {
        let c = frame.counter();
        let err = catch_unwind(AssertUnwindSafe(|| c.done())).unwrap_err();
        let msg = message(&*err);
        assert!(msg.contains("already 0"), "message: {msg}");
        assert!(msg.contains("add(1)"), "message says what to do: {msg}");
        assert_eq!(c.value(), 0);
        c.add(1);
        c.done();
        c.await;
    });
    // Not caught: run_frame resumes it.
    let payload = catch_unwind(AssertUnwindSafe(|| {
        scheduler.run_frame(async |frame| {
            let c = frame.counter();
            c.add(2);
            c.done();
            c.done();
            c.done();
        })
    }))
    .unwrap_err();
    assert!(message(&*payload).contains("already 0"));
    assert_eq!(scheduler.last_frame_stats().panics, 1);
}

#[test]
fn done_below_zero_in_a_job_is_resumed_by_run_frame() {
    for_each_worker_count(&[1, 2], |_, scheduler| {
        let payload = catch_unwind(AssertUnwindSafe(|| {
            scheduler.run_frame(async |frame| {
                let c = frame.counter();
                frame.spawn(async move { c.done() }).await;
            })
        }))
        .unwrap_err();
        assert!(message(&*payload).contains("already 0"));
        // The job's panic and the root's, awaiting it.
        assert_eq!(scheduler.last_frame_stats().panics, 2);
    });
}

#[test]
fn counted_job_calling_done_on_its_own_counter_underflows() {
    // The job's own done() takes the counter to 0; the decrement when it finishes underflows.
    for_each_worker_count(&[1, 2], |_, scheduler| {
        let payload = catch_unwind(AssertUnwindSafe(|| {
            scheduler.run_frame(async |frame| {
                let c = frame.counter();
                frame.spawn_counted(c, async move { c.done() });
                c.await;
            })
        }))
        .unwrap_err();
        assert!(
            message(&*payload).contains("already 0"),
            "{}",
            message(&*payload)
        );
        assert_eq!(scheduler.last_frame_stats().panics, 1);
        assert_eq!(scheduler.run_frame(async |_| 1), 1);
    });
}

#[test]
fn counter_already_zero_completes_at_once() {
    let mut scheduler = scheduler(2);
    let in_job = scheduler.run_frame(async |frame| {
        let c = frame.counter();
        assert_eq!(c.into_future().now_or_never(), Some(()));
        c.add(1);
        assert_eq!(c.into_future().now_or_never(), None);
        c.done();
        assert_eq!(c.into_future().now_or_never(), Some(()));
        // Also from inside a job.
        frame
            .spawn(async move { c.into_future().now_or_never() == Some(()) })
            .await
    });
    assert!(in_job);
}

#[test]
fn dropped_counter_wait_stops_waiting_and_others_still_wake() {
    for_each_worker_count(&[1, 2], |_, scheduler| {
        let released = AtomicUsize::new(0);
        scheduler.run_frame(async |frame| {
            let released = &released;
            let latch = frame.counter();
            latch.add(1);
            // Registered waits, some of them dropped before the latch opens.
            let mut waits: Vec<_> = (0..40).map(|_| Box::pin(latch.into_future())).collect();
            for w in &mut waits {
                assert!(futures::poll!(w.as_mut()).is_pending());
            }
            let mut kept = Vec::new();
            for (i, w) in waits.into_iter().enumerate() {
                if i % 3 == 0 {
                    kept.push(w);
                }
            }
            let jobs = frame.counter();
            for _ in 0..10 {
                frame.spawn_counted(jobs, async move {
                    latch.await;
                    released.fetch_add(1, SeqCst);
                });
            }
            yield_now().await;
            latch.done();
            for w in kept {
                w.await;
            }
            jobs.await;
            assert_eq!(released.load(SeqCst), 10);
        });
    });
}

#[test]
fn counter_value_counts_unfinished_counted_jobs() {
    let mut scheduler = scheduler(1);
    scheduler.run_frame(async |frame| {
        let gate = frame.counter();
        gate.add(1);
        let c = frame.counter();
        for _ in 0..7 {
            frame.spawn_counted(c, async move { gate.await });
        }
        // One worker: nothing has run yet.
        assert_eq!(c.value(), 7);
        yield_now().await;
        assert_eq!(c.value(), 7, "the jobs wait for the gate");
        gate.done();
        c.await;
        assert_eq!(c.value(), 0);
    });
}

#[test]
fn staged_pipeline_runs_stages_in_order() {
    const STAGES: usize = 6;
    const JOBS: usize = 20;
    for_each_worker_count(&[1, 2, 4], |_, scheduler| {
        for _ in 0..10 {
            let finished: Vec<AtomicUsize> = (0..STAGES).map(|_| AtomicUsize::new(0)).collect();
            let out_of_order = AtomicUsize::new(0);
            let log = Mutex::new(Vec::new());
            scheduler.run_frame(async |frame| {
                let finished = &finished;
                let out_of_order = &out_of_order;
                let log = &log;
                let counters: Vec<_> = (0..STAGES).map(|_| frame.counter()).collect();
                for stage in 0..STAGES {
                    let before = stage.checked_sub(1).map(|s| counters[s]);
                    for j in 0..JOBS {
                        frame.spawn_counted(counters[stage], async move {
                            if let Some(before) = before {
                                before.await;
                                if finished[stage - 1].load(SeqCst) != JOBS {
                                    out_of_order.fetch_add(1, SeqCst);
                                }
                            }
                            if j % 4 == 0 {
                                yield_now().await;
                            }
                            log.lock().unwrap().push(stage);
                            finished[stage].fetch_add(1, SeqCst);
                        });
                    }
                }
                counters[STAGES - 1].await;
            });
            assert_eq!(out_of_order.load(SeqCst), 0);
            for f in &finished {
                assert_eq!(f.load(SeqCst), JOBS);
            }
            let log = log.into_inner().unwrap();
            assert_eq!(log.len(), STAGES * JOBS);
            assert!(
                log.windows(2).all(|w| w[0] <= w[1]),
                "stages interleaved: {log:?}"
            );
            assert_eq!(scheduler.last_frame_stats().jobs, (STAGES * JOBS) as u64);
        }
    });
}

/// A waker that counts its wakes.
#[derive(Default)]
struct Wakes(AtomicUsize);

impl Wake for Wakes {
    fn wake(self: Arc<Self>) {
        self.0.fetch_add(1, SeqCst);
    }
}

fn counting_waker() -> (Arc<Wakes>, Waker) {
    let wakes = Arc::new(Wakes::default());
    (wakes.clone(), Waker::from(wakes))
}

fn poll_with<F: Future + ?Sized>(f: Pin<&mut F>, waker: &Waker) -> Poll<F::Output> {
    f.poll(&mut Context::from_waker(waker))
}

/// Waiters for every target from 0 to 29, three each (more than the counter wakes in one
/// batch), while the root takes the value down one at a time: after each step exactly the
/// waiters whose target is at least the new value have been released, and each saw the value
/// at most its target when it went on.
#[test]
fn many_waiters_with_many_targets_are_released_exactly_when_due() {
    const TOP: usize = 30;
    const PER_TARGET: usize = 3;
    for workers in [1, 2, 4] {
        within(60, move || {
            let mut scheduler = scheduler(workers);
            let waiting = AtomicUsize::new(0);
            let released = AtomicUsize::new(0);
            let early = AtomicUsize::new(0);
            scheduler.run_frame(async |frame| {
                let (waiting, released, early) = (&waiting, &released, &early);
                let c = frame.counter();
                c.add(TOP);
                let waiters = frame.counter();
                for target in 0..TOP {
                    for _ in 0..PER_TARGET {
                        frame.spawn_counted(waiters, async move {
                            waiting.fetch_add(1, SeqCst);
                            c.until(target).await;
                            // The value only goes down in this frame.
                            if c.value() > target {
                                early.fetch_add(1, SeqCst);
                            }
                            released.fetch_add(1, SeqCst);
                        });
                    }
                }
                // Every waiter waits (on one worker, each has registered: its poll is over).
                while waiting.load(SeqCst) < TOP * PER_TARGET {
                    yield_now().await;
                }
                assert_eq!(released.load(SeqCst), 0, "released above every target");
                for value in (0..TOP).rev() {
                    c.done();
                    // Targets value..TOP are due.
                    let due = (TOP - value) * PER_TARGET;
                    while released.load(SeqCst) < due {
                        yield_now().await;
                    }
                    // Room for any waiter released too early to show (on one worker, the root
                    // yielding lets one job run).
                    for _ in 0..8 {
                        yield_now().await;
                    }
                    assert_eq!(
                        released.load(SeqCst),
                        due,
                        "with workers({workers}), at value {value}"
                    );
                }
                waiters.await;
            });
            assert_eq!(released.load(SeqCst), TOP * PER_TARGET);
            assert_eq!(early.load(SeqCst), 0, "waiters released above their target");
        });
    }
}

/// `until(n)` completes at once when the value is at most `n`, and waits when it is above.
#[test]
fn until_at_or_above_the_value_completes_at_once() {
    let mut scheduler = scheduler(2);
    scheduler.run_frame(async |frame| {
        let c = frame.counter();
        assert_eq!(c.until(0).now_or_never(), Some(()));
        assert_eq!(c.until(usize::MAX).now_or_never(), Some(()));
        c.add(3);
        assert_eq!(c.until(3).now_or_never(), Some(()));
        assert_eq!(c.until(10).now_or_never(), Some(()));
        assert_eq!(c.until(2).now_or_never(), None);
        assert_eq!(c.until(0).now_or_never(), None);
        // From inside a job too.
        let in_job = frame
            .spawn(async move {
                (
                    c.until(3).now_or_never().is_some(),
                    c.until(2).now_or_never().is_some(),
                )
            })
            .await;
        assert_eq!(in_job, (true, false));
        c.add(usize::MAX / 2 - 3);
        assert_eq!(c.until(usize::MAX / 2).now_or_never(), Some(()));
        assert_eq!(c.until(usize::MAX / 2 - 1).now_or_never(), None);
        c.add(0);
        let err = catch_unwind(AssertUnwindSafe(|| c.add(1))).unwrap_err();
        assert!(
            message(&*err).contains("usize::MAX / 2"),
            "{}",
            message(&*err)
        );
    });
}

/// A waiter whose target was reached completes even if the value went up again before it was
/// polled; one that registered after a value reached and left its target is not released by it.
#[test]
fn until_is_released_by_its_target_only_after_it_began_to_wait() {
    let mut scheduler = scheduler(1);
    scheduler.run_frame(async |frame| {
        let c = frame.counter();
        c.add(5);
        let (wakes, waker) = counting_waker();
        let mut w = Box::pin(c.until(2));
        assert_eq!(poll_with(w.as_mut(), &waker), Poll::Pending);
        c.done();
        c.done();
        assert_eq!(wakes.0.load(SeqCst), 0, "released at 3, above its target 2");
        c.done();
        assert_eq!(wakes.0.load(SeqCst), 1, "not released at its target");
        c.add(5);
        assert_eq!(c.value(), 7);
        assert_eq!(poll_with(w.as_mut(), &waker), Poll::Ready(()));

        // The value was 2 before this waiter began: that does not release it.
        let (late_wakes, late_waker) = counting_waker();
        let mut late = Box::pin(c.until(2));
        assert_eq!(poll_with(late.as_mut(), &late_waker), Poll::Pending);
        c.done();
        assert_eq!(poll_with(late.as_mut(), &late_waker), Poll::Pending);
        for _ in 0..4 {
            c.done();
        }
        assert_eq!(late_wakes.0.load(SeqCst), 1);
        assert_eq!(poll_with(late.as_mut(), &late_waker), Poll::Ready(()));
        // Waiters dropped while waiting leave the counter working.
        let mut dropped = Box::pin(c.until(0));
        assert_eq!(poll_with(dropped.as_mut(), &waker), Poll::Pending);
        drop(dropped);
        c.done();
        c.done();
        assert_eq!(c.value(), 0);
    });
}

/// `counter.until(0)` and `counter.await` behave alike, step by step: at once at zero, pending
/// above, released by the next zero even if the value went up again, not by an earlier one.
#[test]
fn until_zero_is_await() {
    fn steps<'f, W: Future<Output = ()> + 'f>(
        c: frame_scheduler::Counter<'f>,
        wait: impl Fn() -> W,
    ) -> Vec<(bool, usize)> {
        let mut log = Vec::new();
        let (wakes, waker) = counting_waker();
        let mut record = |p: Poll<()>| log.push((p.is_ready(), wakes.0.load(SeqCst)));
        record(poll_with(Box::pin(wait()).as_mut(), &waker));
        c.add(2);
        let mut w = Box::pin(wait());
        record(poll_with(w.as_mut(), &waker));
        c.done();
        record(poll_with(w.as_mut(), &waker));
        c.done();
        c.add(1);
        let mut late = Box::pin(wait());
        record(poll_with(late.as_mut(), &waker));
        record(poll_with(w.as_mut(), &waker));
        c.done();
        record(poll_with(late.as_mut(), &waker));
        log
    }
    let mut scheduler = scheduler(2);
    let (until, awaited) = scheduler.run_frame(async |frame| {
        let c = frame.counter();
        let until = steps(c, || c.until(0));
        let d = frame.counter();
        let awaited = steps(d, || d.into_future());
        (until, awaited)
    });
    assert_eq!(
        until,
        [
            (true, 0),
            (false, 0),
            (false, 0),
            (false, 1),
            (true, 1),
            (true, 2)
        ]
    );
    assert_eq!(until, awaited);
}

/// Workers take finished counted jobs off their counter in batches. A job that blocks its
/// thread until an `until(1)` waiter is released must not find that waiter stuck behind the
/// batch its own worker holds of the same counter's finished jobs.
#[test]
fn until_is_not_held_back_by_a_batch_of_finished_jobs() {
    const QUICK: usize = 40;
    within(120, || {
        let mut scheduler = scheduler(2);
        for round in 0..50 {
            let (wakes, waker) = counting_waker();
            let gave_up = AtomicBool::new(false);
            scheduler.run_frame(async |frame| {
                let (wakes, gave_up) = (&wakes, &gave_up);
                let c = frame.counter();
                // Units held by hand, so that the waiter goes on before any job finishes.
                c.add(QUICK);
                let mut wait = Box::pin(c.until(1));
                assert_eq!(poll_with(wait.as_mut(), &waker), Poll::Pending);
                frame.spawn_counted(c, async move {
                    let start = Instant::now();
                    while wakes.0.load(SeqCst) == 0 {
                        if start.elapsed() > Duration::from_secs(5) {
                            gave_up.store(true, SeqCst);
                            return;
                        }
                        std::hint::spin_loop();
                    }
                });
                for _ in 0..QUICK {
                    frame.spawn_counted(c, async {});
                }
                for _ in 0..QUICK {
                    c.done();
                }
                c.await;
                assert_eq!(poll_with(wait.as_mut(), &waker), Poll::Ready(()));
            });
            assert!(
                !gave_up.load(SeqCst),
                "round {round}: the until(1) waiter was held back by a batch"
            );
            assert_eq!(wakes.0.load(SeqCst), 1);
        }
    });
}

/// A surplus `done()` while finished counted jobs are still batched on their worker: the frame
/// reports the misuse as a panic instead of hanging on a counter that can never reach zero.
#[test]
fn surplus_done_with_batched_completions_panics_instead_of_hanging() {
    within(20, || {
        for_each_worker_count(&[1, 2, 4], |workers, scheduler| {
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
        });
    });
}

/// A waker that runs the `&dyn Fn()` its data pointer points at, on wake (by value or by
/// reference); clone copies the pointer, drop does nothing.
static HOOK_WAKER: RawWakerVTable = RawWakerVTable::new(
    |p| RawWaker::new(p, &HOOK_WAKER),
    // SAFETY (all three): `hook_waker` makes the pointer from a live `&&dyn Fn()` that outlives
    // every use of the waker in the test.
    |p| unsafe { (*p.cast::<&dyn Fn()>())() },
    |p| unsafe { (*p.cast::<&dyn Fn()>())() },
    |_| {},
);

/// # Safety
/// `hook` must outlive every clone of the waker and every wake.
unsafe fn hook_waker(hook: &&dyn Fn()) -> Waker {
    let data: *const &dyn Fn() = hook;
    // SAFETY: the vtable's functions only call the hook, which the caller keeps alive.
    unsafe { Waker::from_raw(RawWaker::new(data.cast(), &HOOK_WAKER)) }
}

/// Regression: `notify_all` wakes a counter's waiters in batches of 16 and unlocks between
/// batches. A future that starts waiting after the counter went back up (0 -> 1), while the
/// first batch is being woken, is put on the list and released by the next batch although the
/// value is 1. Deterministic: 20 waiters whose waker, the first time it is woken, adds 1 to
/// the counter and registers a new waiter (which is `Pending`, rightly); polled again
/// afterwards, that late waiter must still be `Pending` while the value stays 1.
#[test]
fn waiter_registered_after_the_counter_went_back_up_is_not_released() {
    within(10, || {
        let mut scheduler = Scheduler::builder().workers(1).build().unwrap();
        let (registered_pending, pending_later, value_later) = scheduler.run_frame(async |frame| {
            let c = frame.counter();
            c.add(1);
            let late: std::cell::RefCell<Option<Pin<Box<frame_scheduler::CounterWait<'_>>>>> =
                std::cell::RefCell::new(None);
            let registered_pending = std::cell::Cell::new(None);
            let fired = std::cell::Cell::new(false);
            let hook = || {
                if fired.replace(true) {
                    return;
                }
                // The counter went to 0 and this is the first waiter woken: new work arrives,
                // and a new waiter starts waiting for it.
                c.add(1);
                let mut wait = Box::pin(c.into_future());
                let polled = wait
                    .as_mut()
                    .poll(&mut Context::from_waker(futures::task::noop_waker_ref()));
                registered_pending.set(Some(polled.is_pending()));
                *late.borrow_mut() = Some(wait);
            };
            let hook_ref: &dyn Fn() = &hook;
            // SAFETY: `hook` and `hook_ref` live until the end of this block, past every wake
            // (all within `c.done()` below) and every clone (dropped with the waiters).
            let waker = unsafe { hook_waker(&hook_ref) };
            let mut waiters: Vec<_> = (0..20).map(|_| Box::pin(c.into_future())).collect();
            for w in &mut waiters {
                assert!(
                    w.as_mut()
                        .poll(&mut Context::from_waker(&waker))
                        .is_pending()
                );
            }
            // 1 -> 0: every waiter is woken; the first wake takes the counter back to 1.
            c.done();
            let mut late = late.borrow_mut().take().expect("the hook ran");
            let pending_later = late
                .as_mut()
                .poll(&mut Context::from_waker(futures::task::noop_waker_ref()))
                .is_pending();
            let value_later = c.value();
            drop(late);
            drop(waiters);
            c.done();
            (registered_pending.get(), pending_later, value_later)
        });
        assert_eq!(registered_pending, Some(true));
        assert_eq!(value_later, 1);
        assert!(
            pending_later,
            "a waiter that registered while the counter was 1 was released with the value at 1"
        );
    });
}

/// Counters with until waiters while counted jobs panic, and a surplus done(): no hang, the first
/// panic comes out, every waiter is released.
#[test]
fn until_waiters_with_panicking_counted_jobs_do_not_hang() {
    within(60, || {
        let mut s = Scheduler::builder().workers(3).build().unwrap();
        for round in 0..20 {
            let released = AtomicUsize::new(0);
            let r = &released;
            let res = catch_unwind(AssertUnwindSafe(|| {
                s.run_frame(async |frame| {
                    let c = frame.counter();
                    for i in 0..40 {
                        frame.spawn_counted(c, async move {
                            yield_now().await;
                            if i % 13 == 5 {
                                panic!("counted job {i} panics");
                            }
                        });
                    }
                    let mut ws = Vec::new();
                    for t in [30usize, 20, 10, 5, 1, 0] {
                        ws.push(frame.spawn(async move {
                            c.until(t).await;
                            r.fetch_add(1, Ordering::SeqCst);
                        }));
                    }
                    for w in ws {
                        w.await;
                    }
                    if round % 2 == 1 {
                        c.add(1);
                        let w = frame.spawn(async move { c.until(0).await });
                        c.done();
                        w.await;
                        c.done(); // surplus
                    }
                })
            }));
            let msg = payload_str(&*res.unwrap_err());
            assert!(msg.contains("panics") || msg.contains("already 0"), "{msg}");
            assert_eq!(released.load(Ordering::SeqCst), 6);
        }
    });
}
