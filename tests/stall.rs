//! Stall reports (`SchedulerBuilder::stall_after`): a forgotten `done()`, jobs awaiting each
//! other's handles (and a counter) in a cycle, jobs that never yield, a job that kept no waker;
//! one report per stalled frame, none for a frame shorter than `stall_after`.
//!
//! Every stalled frame here is unblocked by the `on_stall` hook (it opens a [`Gate`] that a job
//! or the root waits on), so the report is always taken while the frame is stuck, and the
//! frame then finishes. The jobs reach their stuck state within microseconds of the frame's
//! start; `stall_after` leaves them a hundred milliseconds or more.

use std::future::Future;
use std::panic::Location;
use std::sync::atomic::{AtomicBool, Ordering::SeqCst};
use std::sync::{Arc, Mutex};
use std::task::{Poll, Waker};
use std::time::Duration;

use frame_scheduler::{JobHandle, JobState, Scheduler, StallReport, WaitsOn, yield_now};
use futures::channel::oneshot;
use futures::future::{Either, select};

mod common;

use common::within;

/// A latch that a job or the root awaits and the stall hook opens, waking the waiter through
/// the waker it kept (a waker held outside the scheduler).
#[derive(Default)]
struct Gate {
    open: AtomicBool,
    wakers: Mutex<Vec<Waker>>,
}

impl Gate {
    fn open(&self) {
        self.open.store(true, SeqCst);
        let wakers = std::mem::take(&mut *self.wakers.lock().unwrap());
        wakers.into_iter().for_each(Waker::wake);
    }

    fn is_open(&self) -> bool {
        self.open.load(SeqCst)
    }

    fn close(&self) {
        self.open.store(false, SeqCst);
    }

    /// Completes once the gate is open.
    fn wait(&self) -> impl Future<Output = ()> + Unpin + Send + '_ {
        std::future::poll_fn(move |cx| {
            if self.is_open() {
                return Poll::Ready(());
            }
            self.wakers.lock().unwrap().push(cx.waker().clone());
            if self.is_open() {
                Poll::Ready(())
            } else {
                Poll::Pending
            }
        })
    }

    /// Spins on the gate without ever yielding: a job that holds its worker.
    fn spin(&self) {
        while !self.is_open() {
            std::hint::spin_loop();
        }
    }
}

/// A scheduler of `workers` workers whose stall reports (after `after`) are kept in the list
/// returned, each one opening `gate`.
fn watched(
    workers: usize,
    after: Duration,
    gate: &Arc<Gate>,
) -> (Scheduler, Arc<Mutex<Vec<StallReport>>>) {
    let reports = Arc::new(Mutex::new(Vec::new()));
    let (seen, gate) = (Arc::clone(&reports), Arc::clone(gate));
    let scheduler = Scheduler::builder()
        .workers(workers)
        .stall_after(after)
        .on_stall(move |report| {
            seen.lock().unwrap().push(report.clone());
            gate.open();
        })
        .build()
        .unwrap();
    (scheduler, reports)
}

/// The one report taken, checked to be of frame `frame`.
fn only_report(reports: &Mutex<Vec<StallReport>>, frame: u64) -> StallReport {
    let reports = reports.lock().unwrap();
    assert_eq!(
        reports.len(),
        1,
        "one report per stalled frame: {reports:#?}"
    );
    let r = reports[0].clone();
    assert_eq!(r.frame(), frame);
    assert!(r.running_for() >= r.stall_after(), "{r}");
    r
}

fn is_at(l: Option<&'static Location<'static>>, line: u32) -> bool {
    l.is_some_and(|l| l.file() == file!() && l.line() == line)
}

#[test]
fn a_forgotten_done_names_the_counter_and_says_no_counted_job_is_alive() {
    for workers in [1, 2] {
        within(30, move || {
            let gate = Arc::new(Gate::default());
            let (mut s, reports) = watched(workers, Duration::from_millis(100), &gate);
            let gate = &*gate;
            let counter_line = line!() + 3;
            let helper_line = line!() + 5;
            s.run_frame(async |frame| {
                let c = frame.counter();
                c.add(1); // the done() for this is "forgotten" until the gate opens
                frame.spawn_counted(c, async {});
                let helper = frame.job().name("helper").spawn(async move {
                    gate.wait().await;
                    c.done();
                });
                c.await;
                helper.await;
            });
            let r = only_report(&reports, 0);
            let text = r.to_string();
            // The root, then the helper: the counted job has finished.
            assert_eq!(r.jobs().len(), 2, "workers({workers}): {text}");
            let root = r.root().expect("the root is unfinished");
            assert_eq!(root.state(), JobState::Waiting);
            let Some(WaitsOn::Counter(c)) = root.waits_on() else {
                panic!("the root waits on its counter: {text}");
            };
            assert!(is_at(Some(c.location()), counter_line), "{text}");
            assert_eq!((c.value(), c.target(), c.live_jobs()), (1, 0, 0), "{text}");
            assert!(c.is_orphaned());
            assert_eq!(r.orphaned_counters(), &[*c]);
            let helper = &r.jobs()[1];
            assert_eq!(helper.name(), Some("helper"));
            assert!(is_at(helper.location(), helper_line), "{text}");
            assert_eq!(helper.state(), JobState::Waiting);
            assert_eq!(helper.waits_on(), Some(&WaitsOn::ForeignWaker));
            assert!(r.deadlock().is_none());
            let at = c.location();
            assert!(
                text.contains(&format!(
                    "root future: waiting for the counter made at {at} ("
                )),
                "{text}"
            );
            assert!(
                text.contains(&format!(
                    "counter made at {at} is at 1 and no job counted on it is alive: a missing \
                     done()?"
                )),
                "{text}"
            );
            assert!(
                text.contains("job \"helper\" (") && text.contains("waiting for a waker held"),
                "{text}"
            );
            assert!(text.contains("2 unfinished jobs (0 running, 2 waiting, 0 queued)"));
        });
    }
}

#[test]
fn jobs_awaiting_each_others_handles_are_reported_as_a_deadlock() {
    for workers in [1, 2] {
        within(30, move || {
            let gate = Arc::new(Gate::default());
            let (mut s, reports) = watched(workers, Duration::from_millis(100), &gate);
            let outputs = s.run_frame(async |frame| {
                let gate = &*gate;
                let (to_a, from_root_a) = oneshot::channel::<JobHandle<'_, u32>>();
                let (to_b, from_root_b) = oneshot::channel::<JobHandle<'_, u32>>();
                let a = frame.job().name("a").spawn(async move {
                    let b = from_root_a.await.unwrap();
                    // Waits for b, or for the gate the stall report opens.
                    match select(b, gate.wait()).await {
                        Either::Left((v, _)) => v,
                        Either::Right(((), b)) => {
                            drop(b);
                            10
                        }
                    }
                });
                let b = frame.job().name("b").spawn(async move {
                    let a = from_root_b.await.unwrap();
                    a.await + 1
                });
                to_a.send(b).ok().unwrap();
                to_b.send(a).ok().unwrap();
                1
            });
            assert_eq!(outputs, 1);
            let r = only_report(&reports, 0);
            let text = r.to_string();
            // The root has finished; a and b wait for each other.
            assert!(r.root().is_none(), "{text}");
            assert_eq!(r.jobs().len(), 2, "{text}");
            for (me, other) in [("a", "b"), ("b", "a")] {
                let job = r.jobs().iter().find(|j| j.name() == Some(me)).unwrap();
                assert_eq!(job.state(), JobState::Waiting, "{text}");
                let Some(WaitsOn::Job { name, .. }) = job.waits_on() else {
                    panic!("{me} waits on a handle: {text}");
                };
                assert_eq!(*name, Some(other), "{text}");
            }
            let cycle = r.deadlock().expect("a deadlock");
            let mut names: Vec<_> = cycle.iter().map(|j| j.name().unwrap()).collect();
            names.sort();
            assert_eq!(names, ["a", "b"], "{text}");
            let first = cycle[0].name().unwrap();
            let second = cycle[1].name().unwrap();
            assert!(
                text.contains(&format!("deadlock: job {first:?} ({}:", file!()))
                    && text.contains(&format!("waits for job {second:?} (")),
                "{text}"
            );
            assert!(
                text.contains("waiting for the JobHandle of job \"b\""),
                "{text}"
            );
            assert!(r.orphaned_counters().is_empty());
        });
    }
}

#[test]
fn a_job_waiting_for_its_own_counter_through_a_handle_is_a_deadlock() {
    within(30, || {
        let gate = Arc::new(Gate::default());
        let (mut s, reports) = watched(2, Duration::from_millis(100), &gate);
        s.run_frame(async |frame| {
            let gate = &*gate;
            let c = frame.counter();
            let (to_a, from_root) = oneshot::channel::<JobHandle<'_, ()>>();
            // `a` is counted on `c` and waits for `b`, which waits for `c`.
            let _a = frame.job().name("a").counter(c).spawn(async move {
                let b = from_root.await.unwrap();
                if let Either::Right(((), b)) = select(b, gate.wait()).await {
                    drop(b);
                }
            });
            let b = frame.job().name("b").spawn(async move { c.await });
            to_a.send(b).ok().unwrap();
            c.await;
        });
        let r = only_report(&reports, 0);
        let text = r.to_string();
        let mut names: Vec<_> = r
            .deadlock()
            .expect("a deadlock")
            .iter()
            .map(|j| j.name().unwrap())
            .collect();
        names.sort();
        assert_eq!(names, ["a", "b"], "{text}");
        let b = r.jobs().iter().find(|j| j.name() == Some("b")).unwrap();
        let Some(WaitsOn::Counter(c)) = b.waits_on() else {
            panic!("{text}")
        };
        // `a` is alive and counted on it: not a missing done().
        assert_eq!((c.value(), c.live_jobs()), (1, 1), "{text}");
        assert!(r.orphaned_counters().is_empty(), "{text}");
        assert!(!text.contains("missing done()"), "{text}");
        // The root waits on the same counter.
        assert!(matches!(
            r.root().unwrap().waits_on(),
            Some(WaitsOn::Counter(_))
        ));
    });
}

#[test]
fn a_job_that_never_yields_is_reported_running_on_its_worker() {
    within(30, || {
        let gate = Arc::new(Gate::default());
        let (mut s, reports) = watched(1, Duration::from_millis(100), &gate);
        let queued_line = line!() + 4;
        let spin_line = line!() + 4;
        let sum = s.run_frame(async |frame| {
            let gate = &*gate;
            let queued = frame.job().name("queued").spawn(async { 5 });
            let spin = frame.job().name("spin").spawn(async { gate.spin() });
            // One worker takes its newest job first: `spin`, which holds it; `queued` waits.
            spin.await;
            queued.await
        });
        assert_eq!(sum, 5);
        let r = only_report(&reports, 0);
        let text = r.to_string();
        assert_eq!(r.jobs().len(), 3, "{text}");
        let root = r.root().unwrap();
        assert_eq!(
            root.waits_on(),
            Some(&WaitsOn::Job {
                name: Some("spin"),
                location: r.jobs()[1].location().unwrap()
            }),
            "{text}"
        );
        let spin = &r.jobs()[1];
        assert_eq!(spin.name(), Some("spin"));
        assert!(is_at(spin.location(), spin_line), "{text}");
        let JobState::Running {
            worker: Some(0),
            running_for,
        } = spin.state()
        else {
            panic!("spin runs on worker 0: {text}");
        };
        // Started after the frame did, and still running when the report was taken.
        assert!(running_for > Duration::ZERO && running_for <= r.running_for());
        assert_eq!(spin.waits_on(), None);
        let queued = &r.jobs()[2];
        assert!(is_at(queued.location(), queued_line), "{text}");
        assert_eq!(queued.state(), JobState::Queued { started: false });
        assert_eq!(queued.spawned_on(), Some(0));
        assert!(text.contains("job \"spin\" ("), "{text}");
        assert!(text.contains("): running on worker 0 for "), "{text}");
        assert!(
            text.contains("job \"queued\" (")
                && text.contains("queued, not started (spawned on worker 0)"),
            "{text}"
        );
        assert!(
            text.contains("root future: waiting for the JobHandle of job \"spin\""),
            "{text}"
        );
    });
}

#[test]
fn every_worker_stuck_in_a_poll_is_reported() {
    // The root itself never yields on worker 0, and the job it spawned is stolen by worker 1
    // (a thief takes a busy worker's last job at its second look) and never yields either.
    within(30, || {
        let gate = Arc::new(Gate::default());
        let (mut s, reports) = watched(2, Duration::from_millis(300), &gate);
        s.run_frame(async |frame| {
            let gate = &*gate;
            let job = frame.job().name("spin").spawn(async { gate.spin() });
            gate.spin();
            job.await;
        });
        let r = only_report(&reports, 0);
        let text = r.to_string();
        assert_eq!(r.jobs().len(), 2, "{text}");
        assert!(matches!(
            r.root().unwrap().state(),
            JobState::Running {
                worker: Some(0),
                ..
            }
        ));
        assert!(
            matches!(
                r.jobs()[1].state(),
                JobState::Running {
                    worker: Some(1),
                    ..
                }
            ),
            "{text}"
        );
        assert!(
            text.contains("root future: running on worker 0 for "),
            "{text}"
        );
        assert!(text.contains("): running on worker 1 for "), "{text}");
        assert!(text.contains("(2 running, 0 waiting, 0 queued)"), "{text}");
    });
}

#[test]
fn a_job_whose_last_poll_kept_no_waker_is_reported_as_waiting_on_nothing() {
    // The job's first poll registers on a counter and wakes itself; its second poll returns
    // Pending having registered nothing and cloned no waker. Only the counter registration of
    // the first poll (which the report does not look back at) wakes it, once a helper brings
    // the counter down after the report.
    within(30, || {
        let gate = Arc::new(Gate::default());
        let (mut s, reports) = watched(1, Duration::from_millis(100), &gate);
        s.run_frame(async |frame| {
            let gate = &*gate;
            let c = frame.counter();
            c.add(1);
            let lost = frame.job().name("lost").spawn(async move {
                let mut wait = std::pin::pin!(std::future::IntoFuture::into_future(c));
                let mut polls = 0;
                std::future::poll_fn(|cx| {
                    polls += 1;
                    if polls == 1 {
                        assert!(wait.as_mut().poll(cx).is_pending());
                        cx.waker().wake_by_ref();
                        return Poll::Pending;
                    }
                    if gate.is_open() {
                        Poll::Ready(())
                    } else {
                        Poll::Pending
                    }
                })
                .await;
            });
            let helper = frame.spawn(async move {
                gate.wait().await;
                c.done();
            });
            lost.await;
            helper.await;
        });
        let r = only_report(&reports, 0);
        let text = r.to_string();
        let lost = r.jobs().iter().find(|j| j.name() == Some("lost")).unwrap();
        assert_eq!(lost.state(), JobState::Waiting, "{text}");
        assert_eq!(lost.waits_on(), Some(&WaitsOn::Nothing), "{text}");
        assert!(
            text.contains("job \"lost\" (")
                && text.contains("waiting for nothing: its last poll registered on no handle"),
            "{text}"
        );
    });
}

#[test]
fn one_report_per_stalled_frame_and_none_for_short_frames() {
    within(60, || {
        let after = Duration::from_millis(50);
        let gate = Arc::new(Gate::default());
        let reports = Arc::new(Mutex::new(Vec::new()));
        let (to_opener, reported) = std::sync::mpsc::channel::<()>();
        let seen = Arc::clone(&reports);
        let mut s = Scheduler::builder()
            .workers(2)
            .stall_after(after)
            .on_stall(move |report: &StallReport| {
                seen.lock().unwrap().push(report.clone());
                to_opener.send(()).unwrap();
            })
            .build()
            .unwrap();
        // Opens the gate long after each report: a frame stuck for many times `stall_after`
        // still gets one report.
        let opener = {
            let gate = Arc::clone(&gate);
            std::thread::spawn(move || {
                while reported.recv().is_ok() {
                    std::thread::sleep(after * 6);
                    gate.open();
                }
            })
        };
        for i in 0..6u64 {
            gate.close();
            let stalled = i % 3 == 1;
            s.run_frame(async |frame| {
                let c = frame.counter();
                for _ in 0..100 {
                    frame.spawn_counted(c, async { yield_now().await });
                }
                c.await;
                if stalled {
                    gate.wait().await;
                }
            });
        }
        drop(s);
        opener.join().unwrap();
        let reports = reports.lock().unwrap();
        let frames: Vec<u64> = reports.iter().map(StallReport::frame).collect();
        assert_eq!(frames, [1, 4]);
        for r in reports.iter() {
            assert_eq!(r.jobs().len(), 1, "{r}");
            assert_eq!(r.root().unwrap().waits_on(), Some(&WaitsOn::ForeignWaker));
        }
    });
}

#[test]
fn frames_shorter_than_stall_after_are_never_reported() {
    // Frames of about 5 ms (a job sleeps), long enough for the watchdog to look at each of
    // them if it did not wait for `stall_after`.
    let calls = Arc::new(Mutex::new(0));
    let seen = Arc::clone(&calls);
    let mut s = Scheduler::builder()
        .workers(2)
        .stall_after(Duration::from_secs(5))
        .on_stall(move |_| *seen.lock().unwrap() += 1)
        .build()
        .unwrap();
    let mut data = vec![0u32; 4096];
    for _ in 0..20 {
        s.run_frame(async |frame| {
            let c = frame.counter();
            frame.spawn_batch(
                c,
                data.chunks_mut(64)
                    .map(|ch| async move { ch.iter_mut().for_each(|x| *x += 1) }),
            );
            let h = frame.spawn(async {
                std::thread::sleep(Duration::from_millis(5));
                1
            });
            c.await;
            h.await
        });
    }
    // Dropping the scheduler wakes and joins the watchdog at once, whatever it waits for.
    drop(s);
    assert_eq!(*calls.lock().unwrap(), 0);
    assert!(data.iter().all(|&x| x == 20));
}

#[test]
fn jobs_spawned_by_a_thread_that_is_no_worker_are_listed() {
    within(30, || {
        let gate = Arc::new(Gate::default());
        let (mut s, reports) = watched(2, Duration::from_millis(100), &gate);
        let line = line!() + 6;
        s.run_frame(async |frame| {
            let gate = &*gate;
            // Spawned from a scoped thread: queued through the shared FIFO, listed apart.
            let handles = std::thread::scope(|scope| {
                scope
                    .spawn(|| [(); 2].map(|()| frame.spawn(async { gate.wait().await })))
                    .join()
                    .unwrap()
            });
            for h in handles {
                h.await;
            }
        });
        let r = only_report(&reports, 0);
        let text = r.to_string();
        // The root, and the two jobs waiting for the gate.
        assert_eq!(r.jobs().len(), 3, "{text}");
        for job in &r.jobs()[1..] {
            assert_eq!(job.spawned_on(), None, "{text}");
            assert!(is_at(job.location(), line), "{text}");
            assert_eq!(job.state(), JobState::Waiting, "{text}");
            assert_eq!(job.waits_on(), Some(&WaitsOn::ForeignWaker), "{text}");
        }
    });
}

#[test]
fn stall_after_beyond_what_an_instant_holds_never_reports() {
    let mut s = Scheduler::builder()
        .workers(2)
        .stall_after(Duration::MAX)
        .on_stall(|r| panic!("{r}"))
        .build()
        .unwrap();
    let out = s.run_frame(async |frame| frame.spawn(async { 3 }).await);
    assert_eq!(out, 3);
}

#[test]
fn stall_settings_out_of_range_are_errors_naming_them() {
    let e = Scheduler::builder()
        .stall_after(Duration::ZERO)
        .build()
        .unwrap_err();
    assert!(
        e.to_string().contains("stall_after must be above zero"),
        "{e}"
    );
    let e = Scheduler::builder().on_stall(|_| {}).build().unwrap_err();
    assert!(
        e.to_string()
            .contains("on_stall is set but stall_after is not"),
        "{e}"
    );
}
