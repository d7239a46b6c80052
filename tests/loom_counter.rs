//! Loom model 2: a counter reaching zero racing with an awaiter registering its waker never
//! loses the wakeup.
//!
//! `RUSTFLAGS="--cfg loom" cargo test --release --test loom_counter`
#![cfg(loom)]

use std::pin::pin;
use std::task::{Poll, Wake, Waker};

use frame_scheduler::loom_api::{CounterModel, counter_wait, poll_once};
use loom::sync::Arc;
use loom::sync::atomic::{AtomicUsize, Ordering};
use loom::thread;

struct Flag(AtomicUsize);

impl Wake for Flag {
    fn wake(self: std::sync::Arc<Self>) {
        self.0.fetch_add(1, Ordering::SeqCst);
    }
    fn wake_by_ref(self: &std::sync::Arc<Self>) {
        self.0.fetch_add(1, Ordering::SeqCst);
    }
}

#[test]
fn decrement_to_zero_racing_registration_wakes() {
    loom::model(|| {
        let model = Arc::new(CounterModel::new());
        model.counter().add(1);
        let flag = std::sync::Arc::new(Flag(AtomicUsize::new(0)));
        let waker = Waker::from(flag.clone());

        let decrementer = {
            let model = model.clone();
            thread::spawn(move || model.counter().done())
        };
        let mut wait = pin!(counter_wait(model.counter()));
        let first = poll_once(wait.as_mut(), &waker);
        decrementer.join().unwrap();
        match first {
            Poll::Ready(()) => {}
            Poll::Pending => {
                assert_eq!(flag.0.load(Ordering::SeqCst), 1, "wakeup lost");
                assert_eq!(poll_once(wait.as_mut(), &waker), Poll::Ready(()));
            }
        }
    });
}

/// Two awaiters registered on one counter while another thread takes it to zero: both are
/// woken (or see zero at once), and both then complete.
#[test]
fn every_awaiter_is_woken() {
    loom::model(|| {
        let model = Arc::new(CounterModel::new());
        model.counter().add(1);
        let decrementer = {
            let model = model.clone();
            thread::spawn(move || model.counter().done())
        };
        let flags: Vec<_> = (0..2)
            .map(|_| std::sync::Arc::new(Flag(AtomicUsize::new(0))))
            .collect();
        let wakers: Vec<Waker> = flags.iter().map(|f| Waker::from(f.clone())).collect();
        let mut a = pin!(counter_wait(model.counter()));
        let mut b = pin!(counter_wait(model.counter()));
        let first_a = poll_once(a.as_mut(), &wakers[0]);
        let first_b = poll_once(b.as_mut(), &wakers[1]);
        decrementer.join().unwrap();
        for (first, flag) in [(first_a, &flags[0]), (first_b, &flags[1])] {
            if first.is_pending() {
                assert_eq!(
                    flag.0.load(Ordering::SeqCst),
                    1,
                    "an awaiter's wakeup was lost"
                );
            }
        }
        assert_eq!(poll_once(a.as_mut(), &wakers[0]), Poll::Ready(()));
        assert_eq!(poll_once(b.as_mut(), &wakers[1]), Poll::Ready(()));
    });
}
