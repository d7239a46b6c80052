//! Loom model 1: a wake racing with a poll re-runs the job exactly once — never twice, never lost.
//!
//! `RUSTFLAGS="--cfg loom" cargo test --release --test loom_job_state`
#![cfg(loom)]

use frame_scheduler::loom_api::{JobState, STATE_RUNNING, STATE_SCHEDULED};
use loom::sync::Arc;
use loom::thread;

/// A job being polled is woken by another thread while the poll ends in `Pending`: exactly one
/// of them must put it back in a queue.
#[test]
fn wake_during_poll_requeues_exactly_once() {
    loom::model(|| {
        let job = Arc::new(JobState::new(STATE_RUNNING));
        let waker = {
            let job = job.clone();
            thread::spawn(move || job.wake())
        };
        let requeued_by_poller = job.end_poll_pending();
        let enqueued_by_waker = waker.join().unwrap();
        assert_eq!(
            requeued_by_poller as u32 + enqueued_by_waker as u32,
            1,
            "the job must be queued exactly once"
        );
        // Whoever queued it, the queue holds a SCHEDULED job that one worker can take.
        assert_eq!(job.state(), STATE_SCHEDULED);
        job.start_poll();
    });
}

/// Two wakers and one ending poll: still exactly one enqueue.
#[test]
fn two_wakes_and_a_poll_enqueue_once() {
    loom::model(|| {
        let job = Arc::new(JobState::new(STATE_RUNNING));
        let wakers: Vec<_> = (0..2)
            .map(|_| {
                let job = job.clone();
                thread::spawn(move || job.wake())
            })
            .collect();
        let mut enqueues = job.end_poll_pending() as u32;
        for w in wakers {
            enqueues += w.join().unwrap() as u32;
        }
        assert_eq!(enqueues, 1);
    });
}

/// A job is dequeued and polled by one worker while another wakes it: if the wake lands during
/// the poll, the poller re-queues; if before, nothing is queued twice.
#[test]
fn wake_racing_dequeue_and_poll() {
    loom::model(|| {
        let job = Arc::new(JobState::new(STATE_SCHEDULED));
        let waker = {
            let job = job.clone();
            thread::spawn(move || job.wake())
        };
        job.start_poll();
        let requeued = job.end_poll_pending();
        let enqueued = waker.join().unwrap();
        // The wake happened before the dequeue (absorbed: the job was already queued), or
        // during the poll (exactly one re-queue).
        assert!(!(requeued && enqueued), "queued twice");
        if job.state() & STATE_SCHEDULED != 0 {
            assert!(requeued || enqueued, "scheduled but nobody queued it: lost");
        }
    });
}
