//! Priorities: the exact start order on one worker, `High` before `Low` on several workers
//! (counted, not timed), inheritance by children, the root as a `Normal` job, no livelock
//! across levels, and job names and locations as a trace shows them.

mod common;

use std::sync::Mutex;
use std::sync::atomic::AtomicBool;
use std::sync::atomic::AtomicUsize;
use std::sync::atomic::Ordering::SeqCst;
use std::time::Duration;

use common::{scheduler, wait_until, within};
use frame_scheduler::{EventKind, Priority, Scheduler, yield_now};

type Log = Mutex<Vec<&'static str>>;

async fn log(log: &Log, what: &'static str) {
    log.lock().unwrap().push(what)
}

/// On one worker, queued jobs start strictly by priority, newest first within a level.
#[test]
fn one_worker_starts_queued_jobs_by_priority_newest_first() {
    let mut s = scheduler(1);
    let order = Log::default();
    for _ in 0..3 {
        order.lock().unwrap().clear();
        s.run_frame(async |frame| {
            let spawn = |p, what| frame.job().priority(p).spawn(log(&order, what));
            let jobs = [
                spawn(Priority::Low, "low 1"),
                spawn(Priority::Normal, "normal 1"),
                spawn(Priority::High, "high 1"),
                spawn(Priority::Low, "low 2"),
                spawn(Priority::High, "high 2"),
                spawn(Priority::Normal, "normal 2"),
            ];
            for job in jobs {
                job.await;
            }
        });
        assert_eq!(
            *order.lock().unwrap(),
            ["high 2", "high 1", "normal 2", "normal 1", "low 2", "low 1"]
        );
    }
}

/// A job's children get its priority: a `High` job's child starts before the `Normal` and
/// `Low` jobs queued before it; the builder overrides it.
#[test]
fn children_inherit_their_spawners_priority() {
    let mut s = scheduler(1);
    let order = Log::default();
    s.run_frame(async |frame| {
        let order = &order;
        let low = frame.job().priority(Priority::Low).spawn(log(order, "low"));
        let normal = frame.spawn(log(order, "normal"));
        let high = frame.job().priority(Priority::High).spawn(async move {
            order.lock().unwrap().push("high");
            let child = frame.spawn(log(order, "high's child"));
            let demoted = frame
                .job()
                .priority(Priority::Low)
                .spawn(log(order, "high's low child"));
            // The child is queued; this job ends and the child is the next High job.
            drop((child, demoted));
        });
        low.await;
        normal.await;
        high.await;
    });
    assert_eq!(
        *order.lock().unwrap(),
        ["high", "high's child", "normal", "high's low child", "low"]
    );
}

/// The root future counts as a `Normal` job: woken while a `High` job is queued, it resumes
/// only after that job has started.
#[test]
fn a_woken_root_waits_for_queued_high_jobs() {
    let mut s = scheduler(1);
    let order = Log::default();
    s.run_frame(async |frame| {
        let order = &order;
        // The job queues a High job, then finishes, which wakes the root: both are ready
        // when the driver next looks.
        frame
            .spawn(async move {
                frame
                    .job()
                    .priority(Priority::High)
                    .spawn(log(order, "high"));
            })
            .await;
        order.lock().unwrap().push("root resumed");
    });
    assert_eq!(*order.lock().unwrap(), ["high", "root resumed"]);
}

/// Spawned from a thread that is not a worker (a scoped thread holding the frame), a job
/// has `Normal` priority unless told otherwise, and `High` still goes first.
#[test]
fn foreign_spawns_queue_by_priority() {
    let mut s = scheduler(1);
    let order = Log::default();
    s.run_frame(async |frame| {
        let order = &order;
        std::thread::scope(|scope| {
            scope.spawn(|| {
                frame.job().priority(Priority::Low).spawn(log(order, "low"));
                frame.spawn(log(order, "normal"));
                frame
                    .job()
                    .priority(Priority::High)
                    .spawn(log(order, "high"));
            });
        });
    });
    // Injected jobs of one level start in the order they came (FIFO).
    assert_eq!(*order.lock().unwrap(), ["high", "normal", "low"]);
}

/// With two workers both busy and `Low` jobs queued, a `High` job spawned then starts on the
/// next worker to become free, before any of those `Low` jobs. `low_on_thief` queues the Low
/// jobs on the worker that becomes free (it must steal the High job rather than pop its own
/// Low ones); otherwise on the driver, beside the High job.
fn high_goes_to_the_next_free_worker(low_on_thief: bool) {
    within(120, move || {
        for round in 0..20 {
            let mut s = scheduler(2);
            let started = Log::default();
            let blocker_running = AtomicBool::new(false);
            let release = AtomicBool::new(false);
            let high_started = AtomicBool::new(false);
            let lows = AtomicUsize::new(0);
            s.run_frame(async |frame| {
                let (started, lows) = (&started, &lows);
                let (blocker_running, release) = (&blocker_running, &release);
                let high_started = &high_started;
                macro_rules! spawn_lows {
                    () => {
                        for _ in 0..8 {
                            frame.job().priority(Priority::Low).spawn(async move {
                                started.lock().unwrap().push("low");
                                lows.fetch_add(1, SeqCst);
                            });
                        }
                    };
                }
                // Occupies the background worker (the root, on the driver, never awaits
                // before the High job has started, so the blocker cannot run there).
                frame.spawn(async move {
                    blocker_running.store(true, SeqCst);
                    if low_on_thief {
                        spawn_lows!();
                    }
                    wait_until(Duration::from_secs(10), || release.load(SeqCst));
                });
                assert!(
                    wait_until(Duration::from_secs(10), || blocker_running.load(SeqCst)),
                    "the background worker never took the blocker"
                );
                if !low_on_thief {
                    spawn_lows!();
                }
                frame.job().priority(Priority::High).spawn(async move {
                    started.lock().unwrap().push("high");
                    high_started.store(true, SeqCst);
                });
                release.store(true, SeqCst);
                // The driver stays busy: only the background worker is free.
                assert!(
                    wait_until(Duration::from_secs(10), || high_started.load(SeqCst)),
                    "the High job never started"
                );
            });
            let started = started.into_inner().unwrap();
            assert_eq!(lows.load(SeqCst), 8, "round {round}: every Low job ran");
            assert_eq!(
                started.first(),
                Some(&"high"),
                "round {round}: start order {started:?}"
            );
        }
    });
}

#[test]
fn high_starts_before_low_jobs_queued_beside_it() {
    high_goes_to_the_next_free_worker(false);
}

#[test]
fn high_on_another_worker_starts_before_low_jobs_on_ones_own_queue() {
    high_goes_to_the_next_free_worker(true);
}

/// A `Normal` job spinning on `yield_now` until a `Low` job has run does not livelock one
/// worker, nor does a `High` job spinning for a `Normal` one: the levels take turns now and
/// then.
#[test]
fn spinning_on_a_lower_level_does_not_livelock() {
    let mut s = scheduler(1);
    within(60, move || {
        for (spinner, other) in [
            (Priority::Normal, Priority::Low),
            (Priority::High, Priority::Normal),
            (Priority::High, Priority::Low),
        ] {
            let done = AtomicBool::new(false);
            s.run_frame(async |frame| {
                let done = &done;
                frame
                    .job()
                    .priority(other)
                    .spawn(async move { done.store(true, SeqCst) });
                frame
                    .job()
                    .priority(spinner)
                    .spawn(async move {
                        while !done.load(SeqCst) {
                            yield_now().await;
                        }
                    })
                    .await;
            });
            assert!(done.load(SeqCst), "{spinner:?} spinning for {other:?}");
        }
    });
}

/// Every level's jobs finish within the frame, with any worker count, however they spawn
/// each other; counted jobs count on their counter through the builder.
#[test]
fn every_level_finishes_and_counts() {
    common::for_each_worker_count(&[1, 2, 3, 4], |workers, s| {
        let ran = AtomicUsize::new(0);
        s.run_frame(async |frame| {
            let ran = &ran;
            let c = frame.counter();
            for i in 0..300usize {
                let p = [Priority::High, Priority::Normal, Priority::Low][i % 3];
                let h = frame.job().priority(p).counter(c).spawn(async move {
                    let q = [Priority::Low, Priority::High, Priority::Normal][i % 3];
                    frame.job().priority(q).counter(c).spawn(async move {
                        ran.fetch_add(1, SeqCst);
                    });
                    ran.fetch_add(1, SeqCst);
                    i
                });
                if i % 7 == 0 {
                    assert_eq!(h.await, i);
                }
            }
            c.await;
            assert_eq!(c.value(), 0);
        });
        assert_eq!(ran.load(SeqCst), 600, "workers({workers})");
    });
}

/// `JobBuilder::spawn_local` runs on the driving thread, by priority among local jobs.
#[test]
fn local_jobs_queue_by_priority() {
    let mut s = scheduler(2);
    let order = Log::default();
    let driver = std::thread::current().id();
    s.run_frame(async |frame| {
        let order = &order;
        let on_driver = move |what| async move {
            assert_eq!(std::thread::current().id(), driver);
            order.lock().unwrap().push(what)
        };
        let a = frame
            .job()
            .priority(Priority::Low)
            .spawn_local(on_driver("low"));
        let b = frame
            .job()
            .priority(Priority::High)
            .spawn_local(on_driver("high"));
        let c = frame.job().spawn_local(on_driver("normal"));
        a.await;
        b.await;
        c.await;
    });
    assert_eq!(*order.lock().unwrap(), ["high", "normal", "low"]);
}

/// `JobBuilder::spawn_local` from a job that may run on any thread panics with the rule.
#[test]
fn builder_spawn_local_from_a_job_panics_with_the_rule() {
    let mut s = scheduler(2);
    let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        s.run_frame(async |frame| {
            frame
                .spawn(async move {
                    drop(frame.job().spawn_local(async {}));
                })
                .await;
        })
    }));
    let payload = r.expect_err("spawn_local from a job must panic");
    let msg = common::payload_str(&*payload);
    assert!(msg.contains("spawn_local"), "{msg}");
}

/// Names and `#[track_caller]` locations reach the trace: a named job's spawn event has its
/// name and the line of its `job()` call; an unnamed one the line of its `spawn`.
#[test]
fn names_and_locations_are_in_the_trace() {
    let mut s = Scheduler::builder()
        .workers(2)
        .trace_capacity(1024)
        .build()
        .unwrap();
    s.start_trace();
    let mut lines = (0, 0);
    s.run_frame(async |frame| {
        lines.0 = line!() + 1;
        let named = frame.job().name("physics").spawn(async { 1 });
        lines.1 = line!() + 1;
        let unnamed = frame.spawn(async { 2 });
        assert_eq!(named.await + unnamed.await, 3);
    });
    let trace = s.take_trace();
    let spawns: Vec<_> = trace
        .events()
        .iter()
        .filter_map(|e| match e.kind {
            EventKind::Spawn { name, location, .. } => Some((name, location)),
            _ => None,
        })
        .filter(|(name, _)| *name != Some("root"))
        .collect();
    assert_eq!(spawns.len(), 2, "{spawns:?}");
    let (name, location) = spawns[0];
    assert_eq!(name, Some("physics"));
    let location = location.expect("a location");
    assert_eq!((location.file(), location.line()), (file!(), lines.0));
    let (name, location) = spawns[1];
    assert_eq!(name, None);
    assert_eq!(location.expect("a location").line(), lines.1);
}
