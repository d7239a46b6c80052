//! Loom model 5: work that arrives while a worker decides to park always gets run: no lost
//! unpark. Loom reports a deadlock if a worker sleeps through the notification.
//!
//! `RUSTFLAGS="--cfg loom" cargo test --release --test loom_parking`
#![cfg(loom)]

use frame_scheduler::loom_api::ModelScheduler;
use loom::sync::Arc;
use loom::sync::atomic::{AtomicBool, Ordering};
use loom::thread;

/// A background worker parks while another thread injects work for anyone.
#[test]
fn injected_work_wakes_a_parking_worker() {
    loom::model(|| {
        let sched = Arc::new(ModelScheduler::new(2));
        let work = Arc::new(AtomicBool::new(false));
        let worker = {
            let (sched, work) = (sched.clone(), work.clone());
            thread::spawn(move || {
                while !work.load(Ordering::SeqCst) {
                    sched.sleep(1, || work.load(Ordering::SeqCst));
                }
            })
        };
        work.store(true, Ordering::SeqCst);
        sched.notify_one_strict();
        worker.join().unwrap();
    });
}

/// The driving thread parks while a worker finishes the frame's last job.
#[test]
fn frame_completion_wakes_a_parking_driver() {
    loom::model(|| {
        let sched = Arc::new(ModelScheduler::new(2));
        let done = Arc::new(AtomicBool::new(false));
        let worker = {
            let (sched, done) = (sched.clone(), done.clone());
            thread::spawn(move || {
                done.store(true, Ordering::SeqCst);
                sched.notify_driver();
            })
        };
        while !done.load(Ordering::SeqCst) {
            sched.sleep(0, || done.load(Ordering::SeqCst));
        }
        worker.join().unwrap();
    });
}

/// A worker pushes a job onto its own deque and then blocks (or computes for long) without
/// running it, while another worker goes to sleep: the sleeper must find the job in its last
/// check or be woken by the push (`Shared::push`: the deque push, then the strict notify).
/// Loom reports a deadlock if the sleeper sleeps through it.
#[test]
fn own_push_wakes_a_parking_worker() {
    loom::model(|| {
        let sched = Arc::new(ModelScheduler::new(3));
        let sleeper = {
            let sched = sched.clone();
            thread::spawn(move || {
                // Worker 2: steal from worker 1, or park until there is work.
                while sched.steal(1).is_none() {
                    sched.sleep(2, || sched.has_work(2));
                }
            })
        };
        // Worker 1 pushes its job and then does nothing more: only the sleeper can run it.
        // SAFETY: this thread plays worker 1, the deque's owner; the deque has room.
        unsafe { sched.push(1, 1) };
        sleeper.join().unwrap();
    });
}

/// A worker parked with a deadline (between frames, until the next frame's window) races a
/// notifier and its own timer: whichever comes first, the worker wakes exactly once, and its
/// slot is left at rest: no token left over to cut a later sleep short, no sleeper counted
/// twice or never uncounted. Loom reports a deadlock if the worker waits for a token nobody
/// will send.
#[test]
fn a_timed_park_racing_a_notify_leaves_the_slot_at_rest() {
    loom::model(|| {
        let sched = Arc::new(ModelScheduler::new(2));
        let passed = Arc::new(AtomicBool::new(false));
        let worker = {
            let (sched, passed) = (sched.clone(), passed.clone());
            thread::spawn(move || sched.sleep_with_timer(1, || false, &passed))
        };
        let timer = {
            let (sched, passed) = (sched.clone(), passed.clone());
            thread::spawn(move || sched.fire_timer(1, &passed))
        };
        sched.notify(1);
        worker.join().unwrap();
        timer.join().unwrap();
        assert!(
            sched.at_rest(1),
            "the slot was left with a token or a sleeper"
        );
    });
}

/// Work published while a worker parks with a deadline is found or wakes it, like a plain
/// park (here the timer never fires: only the notify can end the sleep).
#[test]
fn injected_work_wakes_a_worker_parked_with_a_deadline() {
    loom::model(|| {
        let sched = Arc::new(ModelScheduler::new(2));
        let work = Arc::new(AtomicBool::new(false));
        let never = Arc::new(AtomicBool::new(false));
        let worker = {
            let (sched, work, never) = (sched.clone(), work.clone(), never.clone());
            thread::spawn(move || {
                while !work.load(Ordering::SeqCst) {
                    sched.sleep_with_timer(1, || work.load(Ordering::SeqCst), &never);
                }
            })
        };
        work.store(true, Ordering::SeqCst);
        sched.notify_one_strict();
        worker.join().unwrap();
    });
}
