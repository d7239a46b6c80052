//! A counter pushed past the largest value it holds (`usize::MAX / 2`), by `Counter::add` or by
//! `spawn_counted`: the overflow is a panic with a message saying so, out of `run_frame`; the
//! counter never wraps to zero silently, and no waiter is left hanging. Each test runs under a
//! watchdog that fails it instead of hanging.

mod common;

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::atomic::{AtomicBool, Ordering};

use common::{payload_str, within};
use frame_scheduler::{Scheduler, yield_now};

/// Regression: `spawn_counted` incremented the counter with an unchecked `fetch_add`: at
/// `usize::MAX` it wrapped to 0 outside the counter's lock, without bumping the epoch and
/// without waking anyone. `Counter::add` checks for overflow and promises to release the
/// awaiters and panic "instead of hanging"; the `spawn_counted` path did neither. A waiter
/// registered before the wrap was then never released: when the counted job finished,
/// `decrement_by` found the value already 0, recorded the underflow, and skipped `notify_all`
/// (it only notifies when `v != 0`).
///
/// Here the silent wrong result: right after `spawn_counted` the counter read 0 and `c.await`
/// completed at once although the counted job had not run.
#[test]
fn spawn_counted_on_a_counter_at_max_panics_instead_of_wrapping_to_zero() {
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

/// Regression, the hang of the same bug (see the test above): a waiter registered while the
/// value was usize::MAX is never woken.
#[test]
fn spawn_counted_overflow_does_not_strand_a_registered_waiter() {
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

/// Regression: `Counter::add` adds first and asserts after, so `add(usize::MAX)` on a counter at
/// 1 wraps it to 0 (waking nobody) before it panics. The root, waiting on the counter since it
/// was 1, is never woken: the frame hangs and the documented overflow panic never comes out of
/// `run_frame`. It must come out, and the scheduler must still work afterwards.
#[test]
fn counter_add_overflow_in_a_job_panics_out_of_run_frame() {
    within(10, || {
        let mut scheduler = Scheduler::builder().workers(1).build().unwrap();
        let result = catch_unwind(AssertUnwindSafe(|| {
            scheduler.run_frame(async |frame| {
                let c = frame.counter();
                c.add(1);
                // Runs once the root waits on the counter (one worker).
                frame.spawn(async move { c.add(usize::MAX) });
                c.await;
            })
        }));
        let payload = result.expect_err("the overflow must come out of run_frame as a panic");
        let msg = payload_str(&*payload);
        assert!(msg.contains("overflow"), "message: {msg:?}");
        assert_eq!(scheduler.run_frame(async |f| f.spawn(async { 5 }).await), 5);
    });
}

/// Regression, the same through `spawn_counted`: its increment of a counter at `usize::MAX`
/// must not wrap to 0 silently; the panic comes out of `run_frame` and the root waiting on the
/// counter is released instead of hanging.
#[test]
fn spawn_counted_overflow_in_a_job_panics_out_of_run_frame() {
    within(10, || {
        let mut scheduler = Scheduler::builder().workers(1).build().unwrap();
        let ran = AtomicBool::new(false);
        let result = catch_unwind(AssertUnwindSafe(|| {
            let ran = &ran;
            scheduler.run_frame(async |frame| {
                let c = frame.counter();
                c.add(usize::MAX / 2); // the largest value a counter holds
                frame.spawn(async move {
                    frame.spawn_counted(c, async move { ran.store(true, Ordering::SeqCst) })
                });
                c.await;
            })
        }));
        let payload = result.expect_err("the overflow must come out of run_frame as a panic");
        let msg = payload_str(&*payload);
        assert!(msg.contains("overflowed"), "message: {msg:?}");
        assert!(
            !ran.load(Ordering::SeqCst),
            "the job of the overflowing spawn ran"
        );
        assert_eq!(scheduler.run_frame(async |f| f.spawn(async { 5 }).await), 5);
    });
}
