//! Loom model: waiters for different targets (`Counter::until`), with concurrent decrements,
//! increments and registrations: no lost wakeup and no early one.
//!
//! A waiter for a target above zero sets a flag in the counter's value word before it goes on
//! the list; from then on every decrement takes the counter's lock, bumps its epoch and releases
//! the waiters of earlier epochs whose target is at least the new value. A decrement made
//! without the lock compares and swaps the whole word, so it cannot slip past a waiter that has
//! just set the flag (`src/counter.rs`, invariants 4 and 5).
//!
//! `RUSTFLAGS="--cfg loom" CARGO_TARGET_DIR=target/loom cargo test --release --test loom_counter_until`
#![cfg(loom)]

use std::task::{Poll, Wake, Waker};

use frame_scheduler::loom_api::{CounterModel, poll_once};
use loom::sync::atomic::{AtomicUsize, Ordering};
use loom::thread;

/// A waker that counts its wakes.
struct Count(AtomicUsize);

impl Count {
    fn new() -> (std::sync::Arc<Count>, Waker) {
        let count = std::sync::Arc::new(Count(AtomicUsize::new(0)));
        let waker = Waker::from(count.clone());
        (count, waker)
    }
    fn get(&self) -> usize {
        self.0.load(Ordering::SeqCst)
    }
}

impl Wake for Count {
    fn wake(self: std::sync::Arc<Self>) {
        self.0.fetch_add(1, Ordering::SeqCst);
    }
    fn wake_by_ref(self: &std::sync::Arc<Self>) {
        self.0.fetch_add(1, Ordering::SeqCst);
    }
}

/// A counter that lives as long as the waiters returned from the threads (each execution leaks
/// one; they are small).
fn leaked_counter() -> &'static CounterModel {
    Box::leak(Box::new(CounterModel::new()))
}

/// The counter is at 3 and W1 waits for 1. X takes one away; Y registers W2, waiting for 2,
/// then takes one away, both racing with X. The value ends at 1: W1 is woken exactly once; W2
/// either saw the value at 2 or below when it looked (and completed at once, never woken) or
/// is woken exactly once. Both complete.
#[test]
fn two_targets_with_concurrent_decrements_lose_no_wakeup() {
    loom::model(|| {
        let model = leaked_counter();
        model.counter().add(3);
        let (w1_wakes, w1_waker) = Count::new();
        let mut w1 = Box::pin(model.counter().until(1));
        assert_eq!(poll_once(w1.as_mut(), &w1_waker), Poll::Pending);

        let x = thread::spawn(move || model.counter().done());
        let y = thread::spawn(move || {
            let (w2_wakes, w2_waker) = Count::new();
            let mut w2 = Box::pin(model.counter().until(2));
            let first = poll_once(w2.as_mut(), &w2_waker);
            model.counter().done();
            (w2, w2_wakes, w2_waker, first)
        });
        x.join().unwrap();
        let (mut w2, w2_wakes, w2_waker, first) = y.join().unwrap();

        assert_eq!(model.counter().value(), 1);
        assert_eq!(
            w1_wakes.get(),
            1,
            "W1 (target 1) was not woken exactly once"
        );
        assert_eq!(poll_once(w1.as_mut(), &w1_waker), Poll::Ready(()));
        if first.is_ready() {
            assert_eq!(w2_wakes.get(), 0, "W2 completed at once and was woken too");
        } else {
            assert_eq!(
                w2_wakes.get(),
                1,
                "W2 (target 2) was not woken exactly once"
            );
            assert_eq!(poll_once(w2.as_mut(), &w2_waker), Poll::Ready(()));
        }
    });
}

/// The counter is at 2 and W1 waits for 1. X takes one away while Y adds one and then
/// registers W2, also waiting for 1: the value goes 2 → 1 → 2 (W1 is released) or 2 → 3 → 2
/// (no value at 1: W1 keeps waiting). W2 began to wait at 2 or 3, after any 1: it is never
/// woken and stays `Pending`. W1 is woken exactly when it completes. The next decrement to 1
/// releases whoever still waits.
#[test]
fn a_target_reached_before_a_waiter_began_does_not_release_it() {
    loom::model(|| {
        let model = leaked_counter();
        model.counter().add(2);
        let (w1_wakes, w1_waker) = Count::new();
        let mut w1 = Box::pin(model.counter().until(1));
        assert_eq!(poll_once(w1.as_mut(), &w1_waker), Poll::Pending);

        let x = thread::spawn(move || model.counter().done());
        let y = thread::spawn(move || {
            model.counter().add(1);
            let (w2_wakes, w2_waker) = Count::new();
            let mut w2 = Box::pin(model.counter().until(1));
            assert_eq!(poll_once(w2.as_mut(), &w2_waker), Poll::Pending);
            (w2, w2_wakes, w2_waker)
        });
        x.join().unwrap();
        let (mut w2, w2_wakes, w2_waker) = y.join().unwrap();

        assert_eq!(w2_wakes.get(), 0, "W2 was woken by a value before it began");
        assert_eq!(
            poll_once(w2.as_mut(), &w2_waker),
            Poll::Pending,
            "W2 completed while the value is 2"
        );
        let w1_now = poll_once(w1.as_mut(), &w1_waker);
        assert_eq!(
            w1_now.is_ready(),
            w1_wakes.get() == 1,
            "W1 woken without being released, or released without a wake"
        );
        model.counter().done();
        assert_eq!(w2_wakes.get(), 1, "W2 was not woken at its target");
        assert_eq!(poll_once(w2.as_mut(), &w2_waker), Poll::Ready(()));
        if w1_now.is_pending() {
            assert_eq!(w1_wakes.get(), 1);
            assert_eq!(poll_once(w1.as_mut(), &w1_waker), Poll::Ready(()));
        }
    });
}
