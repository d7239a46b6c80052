//! Loom model 8: a counter's waiter is released only by a zero reached after it registered.
//!
//! The counter reaches zero only under its lock, which bumps an epoch; a waiter records the
//! epoch it registered in, and the zero's `notify_all(epoch)` releases only waiters of earlier
//! epochs (`src/counter.rs`). A waiter that registers while an earlier zero is still waking its
//! waiters (the value went up again in between) must stay registered: not woken, and `Pending`
//! while the value is not zero.
//!
//! `RUSTFLAGS="--cfg loom" CARGO_TARGET_DIR=target/loom cargo test --release --test loom_counter_epoch`
#![cfg(loom)]

use std::task::{Poll, Wake, Waker};

use frame_scheduler::loom_api::{CounterModel, counter_wait, poll_once};
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

/// W1 waits on a counter at 1. X takes it to zero (releasing W1) while Y, once it has seen the
/// zero, adds 1 and registers W2 (possibly before X's `notify_all` has taken the lock to wake
/// W1). W1 completes; W2 is never woken and stays `Pending`, as the value is 1 again. A later
/// zero releases W2.
#[test]
fn late_waiter_is_not_released_by_an_earlier_zero() {
    loom::model(|| {
        let model = leaked_counter();
        model.counter().add(1);
        let (w1_wakes, w1_waker) = Count::new();
        let mut w1 = Box::pin(counter_wait(model.counter()));
        assert_eq!(poll_once(w1.as_mut(), &w1_waker), Poll::Pending);

        let x = { thread::spawn(move || model.counter().done()) };
        let y = {
            thread::spawn(move || {
                while model.counter().value() != 0 {
                    thread::yield_now();
                }
                model.counter().add(1);
                let (w2_wakes, w2_waker) = Count::new();
                let mut w2 = Box::pin(counter_wait(model.counter()));
                // The value is 1 from our add until the end: W2 waits.
                assert_eq!(poll_once(w2.as_mut(), &w2_waker), Poll::Pending);
                (w2, w2_wakes, w2_waker)
            })
        };
        x.join().unwrap();
        let (mut w2, w2_wakes, w2_waker) = y.join().unwrap();

        assert_eq!(
            w1_wakes.get(),
            1,
            "W1 was not woken by the zero it waited for"
        );
        assert_eq!(poll_once(w1.as_mut(), &w1_waker), Poll::Ready(()));
        assert_eq!(
            w2_wakes.get(),
            0,
            "W2 was woken by a zero before it registered"
        );
        assert_eq!(
            poll_once(w2.as_mut(), &w2_waker),
            Poll::Pending,
            "W2 completed while the value is 1"
        );
        // The next zero is W2's.
        model.counter().done();
        assert_eq!(
            w2_wakes.get(),
            1,
            "W2 was not woken by the zero after it registered"
        );
        assert_eq!(poll_once(w2.as_mut(), &w2_waker), Poll::Ready(()));
    });
}

/// As above, but Y's `add` races with X's `done` freely: the value goes 1 → 0 → 1 (W1 is
/// released) or 1 → 2 → 1 (no zero: W1 keeps waiting). Either way W2 is never woken and stays
/// `Pending`, and W1 is woken exactly when its wait is over.
#[test]
fn concurrent_add_and_zero_release_only_earlier_waiters() {
    loom::model(|| {
        let model = leaked_counter();
        model.counter().add(1);
        let (w1_wakes, w1_waker) = Count::new();
        let mut w1 = Box::pin(counter_wait(model.counter()));
        assert_eq!(poll_once(w1.as_mut(), &w1_waker), Poll::Pending);

        let x = { thread::spawn(move || model.counter().done()) };
        let y = {
            thread::spawn(move || {
                model.counter().add(1);
                let (w2_wakes, w2_waker) = Count::new();
                let mut w2 = Box::pin(counter_wait(model.counter()));
                assert_eq!(poll_once(w2.as_mut(), &w2_waker), Poll::Pending);
                (w2, w2_wakes, w2_waker)
            })
        };
        x.join().unwrap();
        let (mut w2, w2_wakes, w2_waker) = y.join().unwrap();

        assert_eq!(
            w2_wakes.get(),
            0,
            "W2 was woken by a zero before it registered"
        );
        assert_eq!(
            poll_once(w2.as_mut(), &w2_waker),
            Poll::Pending,
            "W2 completed while the value is 1"
        );
        // W1 was released by the zero (if there was one) or still waits.
        let w1_now = poll_once(w1.as_mut(), &w1_waker);
        assert_eq!(
            w1_now.is_ready(),
            w1_wakes.get() == 1,
            "W1 woken without being released, or released without a wake"
        );
        // The next zero releases whoever still waits, W2 always.
        model.counter().done();
        assert_eq!(w2_wakes.get(), 1);
        assert_eq!(poll_once(w2.as_mut(), &w2_waker), Poll::Ready(()));
        if w1_now.is_pending() {
            assert_eq!(w1_wakes.get(), 1);
            assert_eq!(poll_once(w1.as_mut(), &w1_waker), Poll::Ready(()));
        }
    });
}
