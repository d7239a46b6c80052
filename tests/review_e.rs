//! Review E: reproductions from a hostile review. Each test states what it expects from the
//! documented contract; a failing test is a finding (see the report on branch `review-e`).
//! Hangs are caught by a watchdog; busy-waits inside jobs are bounded so that a hung frame
//! does not keep burning CPU after the test has failed.

use std::future::{Future, IntoFuture, poll_fn};
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, Waker};
use std::time::{Duration, Instant};

use frame_scheduler::{Frame, JobHandle, Scheduler, yield_now};

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

/// Spins (yielding the thread) until `cond` or `timeout`; returns whether `cond` held.
fn spin_until(timeout: Duration, cond: impl Fn() -> bool) -> bool {
    let start = Instant::now();
    while !cond() {
        if start.elapsed() > timeout {
            return false;
        }
        std::thread::yield_now();
    }
    true
}

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
                c.add(usize::MAX);
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
            Ok((v, ran)) => panic!("run_frame returned normally: value {v}, job ran before await: {ran}"),
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
                c.add(usize::MAX);
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
// Finding 2: `Counter::value` only flushes the *calling* worker's batch. A worker that finished
// a counted job and then starts another job of the same counter for the first time does not
// flush (run_job), and if that job blocks its thread (allowed: other workers are idle) the
// finished job is never taken off the counter: `value()` read anywhere else stays stale for
// as long as the job blocks. The doc of `value` says other workers flush "before any poll that
// could be waiting for them": this poll is waiting for them, indirectly.
// ---------------------------------------------------------------------------------------------

#[test]
fn counter_value_stays_stale_while_a_same_counter_job_blocks_its_worker() {
    within(20, || {
        let mut scheduler = Scheduler::builder().workers(2).build().unwrap();
        let mut stale = 0;
        let mut tries = 0;
        while tries < 20 {
            tries += 1;
            let p_started = AtomicBool::new(false);
            let x2_started = AtomicBool::new(false);
            let release = AtomicBool::new(false);
            let x1_done = AtomicBool::new(false);
            let outcome = scheduler.run_frame(async |frame| {
                let c = frame.counter();
                let (p_started, x2_started, release, x1_done) =
                    (&p_started, &x2_started, &release, &x1_done);
                // The root blocks the driver so that `p` and its children run on worker 1.
                frame.spawn(async move {
                    p_started.store(true, Ordering::SeqCst);
                    // X2 first (oldest), X1 second: worker 1 pops X1 first (LIFO).
                    frame.spawn_counted(c, async move {
                        x2_started.store(true, Ordering::SeqCst);
                        // Blocks its worker until the watcher sees only X2 left on the counter.
                        spin_until(Duration::from_millis(1500), || {
                            release.load(Ordering::SeqCst)
                        });
                    });
                    frame.spawn_counted(c, async move {
                        x1_done.store(true, Ordering::SeqCst);
                    });
                });
                if !spin_until(Duration::from_secs(2), || p_started.load(Ordering::SeqCst)) {
                    release.store(true, Ordering::SeqCst);
                    return None;
                }
                if !spin_until(Duration::from_secs(2), || x2_started.load(Ordering::SeqCst)) {
                    release.store(true, Ordering::SeqCst);
                    return None;
                }
                if !x1_done.load(Ordering::SeqCst) {
                    // X2 ran first: not the interleaving we want.
                    release.store(true, Ordering::SeqCst);
                    return None;
                }
                // X1 has finished. Watch the counter until it shows only X2 (bounded).
                let start = Instant::now();
                let mut seen = c.value();
                while seen > 1 && start.elapsed() < Duration::from_secs(1) {
                    yield_now().await;
                    seen = c.value();
                }
                release.store(true, Ordering::SeqCst);
                c.await;
                Some(seen)
            });
            match outcome {
                Some(seen) if seen > 1 => {
                    stale += 1;
                    break;
                }
                Some(_) => break,
                None => continue,
            }
        }
        assert_eq!(
            stale, 0,
            "X1 had finished, yet Counter::value() read {} for a second: its completion sat in \
             worker 1's batch while worker 1 was blocked in X2 (a first poll of the same \
             counter, which run_job does not flush before)",
            2
        );
    });
}
