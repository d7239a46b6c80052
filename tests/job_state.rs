//! A job's life seen from outside, one transition at a time, with futures, outputs and wakers
//! that count every poll, wake and drop (src/job/tests.rs checks the same state machine without a
//! scheduler). One worker, so that the driving thread runs every job and each step happens where
//! the test says; each test runs under a watchdog, since a lost wake would hang it.
// `waker.clone().wake()` exercises the clone and the consuming wake on purpose.
#![allow(clippy::waker_clone_wake)]

mod common;

use std::future::Future;
use std::mem;
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering::SeqCst};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, Wake, Waker};

use common::{scheduler, within};
use frame_scheduler::{JobHandle, yield_now};

/// Polls of a future, drops of the future, and drops of its output.
#[derive(Default)]
struct Counts {
    polls: AtomicUsize,
    future_drops: AtomicUsize,
    output_drops: AtomicUsize,
}

impl Counts {
    /// (polls, future drops, output drops).
    fn get(&self) -> (usize, usize, usize) {
        (
            self.polls.load(SeqCst),
            self.future_drops.load(SeqCst),
            self.output_drops.load(SeqCst),
        )
    }
}

/// An output whose drops are counted.
struct Output<'a>(&'a Counts);

impl Drop for Output<'_> {
    fn drop(&mut self) {
        self.0.output_drops.fetch_add(1, SeqCst);
    }
}

/// What a [`Probe`] does when polled.
#[derive(Clone, Copy)]
enum Step {
    /// Wakes itself through the borrowed waker (`wake_by_ref`), then returns `Pending`.
    WakeSelf,
    /// Clones its waker and wakes the clone (by value) during the poll, then returns `Pending`.
    WakeCloneOfSelf,
    /// Keeps a clone of its waker in the slot, then returns `Pending` (someone else wakes it).
    Stash,
}

/// A future that follows a script, one step per poll, and finishes when the script runs out;
/// it counts its polls and its drop.
struct Probe<'a> {
    counts: &'a Counts,
    script: &'a [Step],
    slot: &'a Mutex<Option<Waker>>,
}

impl<'a> Future for Probe<'a> {
    type Output = Output<'a>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Output<'a>> {
        let n = self.counts.polls.fetch_add(1, SeqCst);
        match self.script.get(n) {
            None => return Poll::Ready(Output(self.counts)),
            Some(Step::WakeSelf) => cx.waker().wake_by_ref(),
            Some(Step::WakeCloneOfSelf) => cx.waker().clone().wake(),
            Some(Step::Stash) => *self.slot.lock().unwrap() = Some(cx.waker().clone()),
        }
        Poll::Pending
    }
}

impl Drop for Probe<'_> {
    fn drop(&mut self) {
        self.counts.future_drops.fetch_add(1, SeqCst);
    }
}

/// The waker a probe stashed.
fn stashed(slot: &Mutex<Option<Waker>>) -> Waker {
    slot.lock()
        .unwrap()
        .clone()
        .expect("the job stashed its waker")
}

/// A user's waker: counts its wakes; `Arc::strong_count` counts its live clones.
#[derive(Default)]
struct CountingWaker {
    wakes: AtomicUsize,
}

impl Wake for CountingWaker {
    fn wake(self: Arc<Self>) {
        self.wakes.fetch_add(1, SeqCst);
    }
}

/// Polls a handle once by hand with `waker`.
fn poll_with<T>(handle: &mut JobHandle<'_, T>, waker: &Waker) -> Poll<T> {
    Pin::new(handle).poll(&mut Context::from_waker(waker))
}

#[test]
fn a_job_waking_itself_n_times_is_polled_n_plus_one_times() {
    const N: usize = 10;
    within(20, || {
        let mut scheduler = scheduler(1);
        let counts = Counts::default();
        let slot = Mutex::new(None);
        let script = [Step::WakeSelf; N];
        scheduler.run_frame(async |frame| {
            let (counts, slot, script) = (&counts, &slot, &script);
            let out = frame
                .spawn(Probe {
                    counts,
                    script,
                    slot,
                })
                .await;
            assert_eq!(counts.get(), (N + 1, 1, 0));
            drop(out);
            assert_eq!(counts.get(), (N + 1, 1, 1));
            // Had a wake queued the job twice, the extra entries would run it again now.
            yield_now().await;
            frame.spawn(async {}).await;
        });
        assert_eq!(counts.get(), (N + 1, 1, 1), "nothing more at frame end");
    });
}

#[test]
fn a_job_waking_a_clone_of_its_waker_during_its_poll_is_polled_once_more() {
    within(20, || {
        let mut scheduler = scheduler(1);
        let counts = Counts::default();
        let slot = Mutex::new(None);
        let script = [Step::WakeCloneOfSelf, Step::WakeCloneOfSelf];
        scheduler.run_frame(async |frame| {
            let (counts, slot, script) = (&counts, &slot, &script);
            drop(
                frame
                    .spawn(Probe {
                        counts,
                        script,
                        slot,
                    })
                    .await,
            );
            yield_now().await;
            frame.spawn(async {}).await;
        });
        assert_eq!(counts.get(), (3, 1, 1));
    });
}

#[test]
fn two_wakes_before_the_poll_make_one_poll() {
    within(20, || {
        let mut scheduler = scheduler(1);
        let counts = Counts::default();
        let slot = Mutex::new(None);
        let script = [Step::Stash];
        scheduler.run_frame(async |frame| {
            let (counts, slot, script) = (&counts, &slot, &script);
            let job = frame.spawn(Probe {
                counts,
                script,
                slot,
            });
            // One worker: the job runs (and parks) while the root yields.
            yield_now().await;
            assert_eq!(counts.get(), (1, 0, 0));
            let waker = stashed(slot);
            waker.wake_by_ref();
            waker.wake_by_ref();
            drop(waker);
            drop(job.await);
            assert_eq!(counts.get(), (2, 1, 1));
            // Had the second wake queued the job again, it would run again now.
            yield_now().await;
            frame.spawn(async {}).await;
        });
        assert_eq!(counts.get(), (2, 1, 1));
    });
}

#[test]
fn a_kept_waker_woken_after_its_job_completed_polls_nothing() {
    within(20, || {
        let mut scheduler = scheduler(1);
        let counts = Counts::default();
        let slot = Mutex::new(None);
        let script = [Step::Stash];
        scheduler.run_frame(async |frame| {
            let (counts, slot, script) = (&counts, &slot, &script);
            let job = frame.spawn(Probe {
                counts,
                script,
                slot,
            });
            yield_now().await;
            let waker = stashed(slot);
            waker.wake_by_ref();
            drop(job.await);
            assert_eq!(counts.get(), (2, 1, 1));
            waker.wake_by_ref();
            waker.clone().wake();
            waker.wake();
            yield_now().await;
            frame.spawn(async {}).await;
            assert_eq!(counts.get(), (2, 1, 1));
        });
        assert_eq!(counts.get(), (2, 1, 1));
        assert_eq!(scheduler.last_frame_stats().jobs, 2);
    });
}

#[test]
fn a_handle_dropped_before_completion_leaves_the_output_to_the_completer() {
    within(20, || {
        let mut scheduler = scheduler(1);
        let counts = Counts::default();
        let slot = Mutex::new(None);
        let script = [Step::Stash];
        scheduler.run_frame(async |frame| {
            let (counts, slot, script) = (&counts, &slot, &script);
            let job = frame.spawn(Probe {
                counts,
                script,
                slot,
            });
            yield_now().await;
            drop(job);
            assert_eq!(counts.get(), (1, 0, 0), "dropping the handle runs nothing");
            stashed(slot).wake();
            // The job completes within the frame, and its worker drops the output at once.
            while counts.output_drops.load(SeqCst) == 0 {
                yield_now().await;
            }
            assert_eq!(counts.get(), (2, 1, 1));
        });
        assert_eq!(counts.get(), (2, 1, 1), "the sweep drops nothing more");
    });
}

#[test]
fn a_handle_dropped_after_completion_drops_the_output_there() {
    within(20, || {
        let mut scheduler = scheduler(1);
        let counts = Counts::default();
        let slot = Mutex::new(None);
        scheduler.run_frame(async |frame| {
            let (counts, slot) = (&counts, &slot);
            let job = frame.spawn(Probe {
                counts,
                script: &[],
                slot,
            });
            while !job.is_finished() {
                yield_now().await;
            }
            assert_eq!(counts.get(), (1, 1, 0), "the output waits for its handle");
            drop(job);
            assert_eq!(counts.get(), (1, 1, 1));
        });
        assert_eq!(counts.get(), (1, 1, 1));
    });
}

#[test]
fn an_output_never_taken_is_dropped_once_at_frame_end() {
    within(20, || {
        let mut scheduler = scheduler(1);
        let counts = Counts::default();
        let slot = Mutex::new(None);
        scheduler.run_frame(async |frame| {
            let (counts, slot) = (&counts, &slot);
            mem::forget(frame.spawn(Probe {
                counts,
                script: &[],
                slot,
            }));
            while counts.polls.load(SeqCst) == 0 {
                yield_now().await;
            }
            yield_now().await;
            assert_eq!(
                counts.get(),
                (1, 1, 0),
                "kept for a handle that never comes"
            );
        });
        assert_eq!(counts.get(), (1, 1, 1));
    });
}

#[test]
fn a_handle_polled_with_two_wakers_wakes_only_the_last() {
    within(20, || {
        let mut scheduler = scheduler(1);
        let counts = Counts::default();
        let slot = Mutex::new(None);
        let script = [Step::Stash];
        let (a, b) = (
            Arc::new(CountingWaker::default()),
            Arc::new(CountingWaker::default()),
        );
        scheduler.run_frame(async |frame| {
            let (counts, slot, script) = (&counts, &slot, &script);
            let mut job = frame.spawn(Probe {
                counts,
                script,
                slot,
            });
            yield_now().await;
            let (wa, wb) = (Waker::from(Arc::clone(&a)), Waker::from(Arc::clone(&b)));
            assert!(poll_with(&mut job, &wa).is_pending());
            assert!(poll_with(&mut job, &wb).is_pending());
            drop((wa, wb));
            assert_eq!(Arc::strong_count(&a), 1, "the replaced waker is dropped");
            assert_eq!(Arc::strong_count(&b), 2, "the last one is kept");
            stashed(slot).wake();
            while !job.is_finished() {
                yield_now().await;
            }
            assert_eq!((a.wakes.load(SeqCst), b.wakes.load(SeqCst)), (0, 1));
            assert_eq!(Arc::strong_count(&b), 1, "woken by value and gone");
            let Poll::Ready(out) = poll_with(&mut job, Waker::noop()) else {
                panic!("a finished job's handle is ready");
            };
            drop(out);
            assert_eq!(counts.get(), (2, 1, 1));
        });
        assert_eq!((a.wakes.load(SeqCst), b.wakes.load(SeqCst)), (0, 1));
    });
}
