//! Loom model 6: a wake always synchronises with the poll it asks for. Whatever a waker wrote
//! before waking (a channel's message, a flag), with no ordering of its own, is seen by the
//! job's next poll; no signal is lost, whether the job was queued, idle or running.
//!
//! The waker's write is a `Relaxed` store and the poll's read a `Relaxed` load, so only the job
//! state word can order them: the wake's release read-modify-write and the poll's acquire swap
//! (see `src/job/state.rs`).
//!
//! `RUSTFLAGS="--cfg loom" CARGO_TARGET_DIR=target/loom cargo test --release --test loom_wake_poll`
#![cfg(loom)]

use frame_scheduler::loom_api::{JobState, STATE_POLLED, STATE_SCHEDULED};
use loom::sync::Arc;
use loom::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use loom::thread;

/// A job with a message slot and a one-job queue between the waker and the worker.
struct Model {
    job: JobState,
    data: AtomicUsize,
    /// Set (release) by a waker whose wake said it must enqueue the job: the queue's push.
    queued: AtomicBool,
}

impl Model {
    fn new(state: u32) -> Arc<Model> {
        Arc::new(Model {
            job: JobState::new(state),
            data: AtomicUsize::new(0),
            queued: AtomicBool::new(false),
        })
    }

    /// The waker: writes its message with no ordering, wakes, and enqueues if told to.
    fn waker(this: &Arc<Model>) -> thread::JoinHandle<bool> {
        let m = this.clone();
        thread::spawn(move || {
            m.data.store(1, Ordering::Relaxed);
            let enqueue = m.job.wake();
            if enqueue {
                m.queued.store(true, Ordering::Release);
            }
            enqueue
        })
    }

    /// One poll of the job, which reads the message and returns `Pending`. Returns what it
    /// read and whether the job must be queued again at once (a wake came during the poll).
    fn poll(&self) -> (usize, bool) {
        self.job.start_poll();
        let seen = self.data.load(Ordering::Relaxed);
        (seen, self.job.end_poll_pending())
    }
}

/// The job is queued (`SCHEDULED`) when the waker wakes it: the wake finds `SCHEDULED` and
/// enqueues nothing, or lands during the poll (re-queue), or after it (the waker enqueues). In
/// every case the last poll must see the message.
#[test]
fn wake_of_a_queued_job_is_seen_by_the_next_poll() {
    loom::model(|| {
        let m = Model::new(STATE_SCHEDULED);
        let waker = Model::waker(&m);
        // The worker dequeued the job: it polls it, and again while the poller must re-queue.
        let (mut seen, mut requeue) = m.poll();
        while requeue {
            (seen, requeue) = m.poll();
        }
        let enqueued = waker.join().unwrap();
        if enqueued {
            // The wake came after the poll ended: the waker queued the job; its next poll
            // comes through the queue.
            assert!(m.queued.load(Ordering::Acquire));
            (seen, requeue) = m.poll();
            assert!(!requeue, "nobody woke the job again");
        }
        assert_eq!(
            seen, 1,
            "the last poll missed what the waker wrote: wake lost"
        );
    });
}

/// The job is idle (polled before, waiting) when the waker wakes it: the wake must enqueue it,
/// and the poll that follows the hand-over sees the message.
#[test]
fn wake_of_an_idle_job_enqueues_and_is_seen() {
    loom::model(|| {
        let m = Model::new(STATE_POLLED);
        let waker = Model::waker(&m);
        while !m.queued.load(Ordering::Acquire) {
            thread::yield_now();
        }
        let (seen, requeue) = m.poll();
        assert!(waker.join().unwrap(), "an idle job's wake must enqueue it");
        assert!(!requeue);
        assert_eq!(seen, 1, "the poll missed what the waker wrote");
    });
}

/// Two wakers of a queued job, each with its own message: the last poll sees both.
///
/// Bounded to 4 preemptions (5 s; the unbounded search takes minutes): every interleaving that
/// matters here needs at most two (a wake inside the poll, the other before or after it).
#[test]
fn two_wakes_of_a_queued_job_are_both_seen() {
    let mut builder = loom::model::Builder::new();
    builder.preemption_bound = Some(4);
    builder.check(|| {
        let job = Arc::new(JobState::new(STATE_SCHEDULED));
        let data = Arc::new([AtomicUsize::new(0), AtomicUsize::new(0)]);
        let wakers: Vec<_> = (0..2)
            .map(|i| {
                let (job, data) = (job.clone(), data.clone());
                thread::spawn(move || {
                    data[i].store(1, Ordering::Relaxed);
                    job.wake()
                })
            })
            .collect();
        let poll = || {
            job.start_poll();
            let seen = (
                data[0].load(Ordering::Relaxed),
                data[1].load(Ordering::Relaxed),
            );
            (seen, job.end_poll_pending())
        };
        let (mut seen, mut requeue) = poll();
        while requeue {
            (seen, requeue) = poll();
        }
        let mut enqueues = 0;
        for w in wakers {
            enqueues += w.join().unwrap() as u32;
        }
        assert!(enqueues <= 1, "queued twice");
        if enqueues == 1 {
            (seen, requeue) = poll();
            assert!(!requeue);
        }
        assert_eq!(seen, (1, 1), "the last poll missed a waker's write");
    });
}
