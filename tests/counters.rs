//! Counters as latches: many waiters, `add`/`done` by hand, underflow, already-zero counters,
//! dropped waits, and a staged pipeline.

use std::future::IntoFuture;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering::SeqCst};

use frame_scheduler::yield_now;
use futures::FutureExt;

mod common;

use common::{message, scheduler};

#[test]
fn many_waiters_on_one_counter_are_all_released() {
    for workers in [1, 2, 4] {
        let mut scheduler = scheduler(workers);
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
    }
}

#[test]
fn add_and_done_by_hand() {
    for workers in [1, 2, 3] {
        let mut scheduler = scheduler(workers);
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
    }
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
    for workers in [1, 2] {
        let mut scheduler = scheduler(workers);
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
    }
}

#[test]
fn counted_job_calling_done_on_its_own_counter_underflows() {
    // The job's own done() takes the counter to 0; the decrement when it finishes underflows.
    for workers in [1, 2] {
        let mut scheduler = scheduler(workers);
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
    }
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
    for workers in [1, 2] {
        let mut scheduler = scheduler(workers);
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
    }
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
    for workers in [1, 2, 4] {
        let mut scheduler = scheduler(workers);
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
    }
}
