//! Faults in user code at the edges of the scheduler: closures that panic after spawning, wakers
//! whose `wake` or `clone` panics, wakers kept past their frame while arenas are replaced. Each
//! test is a regression test for a bug found in review; each must finish (a watchdog fails it
//! instead of hanging) and must never let `run_frame` return while a job still runs.

use std::future::{Future, IntoFuture};
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::pin::Pin;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicUsize, Ordering};
use std::task::{Context, Poll, RawWaker, RawWakerVTable, Waker};
use std::time::{Duration, Instant};

use frame_scheduler::{Frame, JobHandle, Scheduler, yield_now};

mod common;
use common::{payload_str, wait_until, within};

/// One worker: a job yields until an older sibling has run. The worker's own queue is LIFO, so
/// a yielding job must not be popped straight back, or the sibling would never run.
#[test]
fn job_yielding_until_a_sibling_runs_makes_progress_on_one_worker() {
    within(20, || {
        let mut scheduler = Scheduler::builder().workers(1).build().unwrap();
        for _ in 0..20 {
            let flag = AtomicBool::new(false);
            let yields = AtomicU32::new(0);
            scheduler.run_frame(async |frame| {
                frame.spawn(async {
                    flag.store(true, Ordering::SeqCst);
                });
                frame.spawn(async {
                    while !flag.load(Ordering::SeqCst) {
                        yields.fetch_add(1, Ordering::SeqCst);
                        yield_now().await;
                    }
                });
            });
            assert!(flag.load(Ordering::SeqCst));
            // The sibling runs right after the first yield, or, when the worker's periodic
            // look at the shared queue comes first, after the second.
            assert!(
                yields.load(Ordering::SeqCst) <= 2,
                "the sibling did not run promptly"
            );
        }
    });
}

/// A surplus `done()` while finished counted jobs are still batched on their worker: the frame
/// reports the misuse as a panic instead of hanging on a counter that can never reach zero.
#[test]
fn surplus_done_with_batched_completions_panics_instead_of_hanging() {
    within(20, || {
        for workers in [1, 2, 4] {
            let mut scheduler = Scheduler::builder().workers(workers).build().unwrap();
            let result = catch_unwind(AssertUnwindSafe(|| {
                scheduler.run_frame(async |frame| {
                    let c = frame.counter();
                    for _ in 0..3 {
                        frame.spawn_counted(c, async {});
                    }
                    c.done();
                    c.await;
                })
            }));
            let payload = result.expect_err("the surplus done() must be reported");
            assert!(
                payload_str(&*payload).contains("already 0"),
                "workers({workers})"
            );
        }
    });
}

/// Fork-join as a game loop does it: the root spawns a job, then computes inline (here: waits
/// for the job's flag) in the same poll. The job must be stealable meanwhile, not held back
/// until the root's poll ends.
#[test]
fn job_spawned_before_inline_work_runs_on_another_worker() {
    within(20, || {
        let mut scheduler = Scheduler::builder().workers(2).build().unwrap();
        for _ in 0..20 {
            let flag = AtomicBool::new(false);
            scheduler.run_frame(async |frame| {
                frame.spawn(async {
                    flag.store(true, Ordering::SeqCst);
                });
                // No await: the driving thread stays in this poll until the job has run.
                while !flag.load(Ordering::SeqCst) {
                    std::hint::spin_loop();
                }
            });
            assert!(flag.load(Ordering::SeqCst));
        }
    });
}

// ---------------------------------------------------------------------------------------------
// Regression tests for the findings of the outside review. Each one fails (an assertion, the
// watchdog, or a memory error) on the code it was written against.
// ---------------------------------------------------------------------------------------------

/// Polls a future once with a waker that does nothing.
fn poll_once<F: Future + Unpin>(f: &mut F) -> Poll<F::Output> {
    Pin::new(f).poll(&mut Context::from_waker(futures::task::noop_waker_ref()))
}

/// An output whose every drop is counted.
type Counted<'e> = common::Tracked<'e>;

/// Sets a flag when dropped (also while unwinding).
struct SetOnDrop<'a>(&'a AtomicBool);

impl Drop for SetOnDrop<'_> {
    fn drop(&mut self) {
        self.0.store(true, Ordering::SeqCst);
    }
}

/// An output holding a job handle, which its destructor awaits (one poll, panics caught): the
/// output it gets, if any, is dropped right there.
struct AwaitsHandleInDrop<'f, 'e> {
    drops: &'e AtomicUsize,
    handle: Option<JobHandle<'f, AwaitsHandleInDrop<'f, 'e>>>,
}

impl Drop for AwaitsHandleInDrop<'_, '_> {
    fn drop(&mut self) {
        self.drops.fetch_add(1, Ordering::SeqCst);
        if let Some(mut handle) = self.handle.take() {
            let _ = catch_unwind(AssertUnwindSafe(|| {
                // The output, if the poll yields one, is dropped at the end of this statement.
                let _ = poll_once(&mut handle);
            }));
        }
    }
}

/// Finding 1(a): the frame-end sweep (`drop_untaken`) drops an untaken output while a handle
/// to it is still alive, and `JobHandle::poll` looks only at `DONE`, not `TAKEN`. An output
/// that keeps its own job's handle and awaits it in its destructor is moved out of the stage
/// while the sweep is dropping it in place: it is dropped twice.
#[test]
fn output_awaiting_its_own_handle_in_its_destructor_is_dropped_once() {
    within(10, || {
        for workers in [1, 2] {
            let mut scheduler = Scheduler::builder().workers(workers).build().unwrap();
            for frame_no in 0..20 {
                let drops = AtomicUsize::new(0);
                let d = &drops;
                let _ = catch_unwind(AssertUnwindSafe(|| {
                    scheduler.run_frame(async |frame| {
                        let (tx, rx) = futures::channel::oneshot::channel();
                        let own = frame.spawn(async move {
                            AwaitsHandleInDrop {
                                drops: d,
                                handle: Some(rx.await.unwrap()),
                            }
                        });
                        tx.send(own).unwrap();
                    })
                }));
                assert_eq!(
                    drops.load(Ordering::SeqCst),
                    1,
                    "workers({workers}), frame {frame_no}: the output was dropped {} times",
                    drops.load(Ordering::SeqCst)
                );
            }
        }
    });
}

/// Finding 1(a), two jobs: each output keeps the other job's (otherwise leaked) handle and
/// awaits it in its destructor. The sweep drops the first output; its destructor takes and
/// drops the second, whose destructor then takes the first out of its stage again, while it is
/// still being dropped: the first output is dropped twice.
#[test]
fn outputs_awaiting_each_others_handles_in_their_destructors_are_dropped_once_each() {
    within(10, || {
        for workers in [1, 2] {
            let mut scheduler = Scheduler::builder().workers(workers).build().unwrap();
            for frame_no in 0..20 {
                let drops = [AtomicUsize::new(0), AtomicUsize::new(0)];
                let (d0, d1) = (&drops[0], &drops[1]);
                let _ = catch_unwind(AssertUnwindSafe(|| {
                    scheduler.run_frame(async |frame| {
                        let (tx0, rx0) = futures::channel::oneshot::channel();
                        let (tx1, rx1) = futures::channel::oneshot::channel();
                        let h0 = frame.spawn(async move {
                            AwaitsHandleInDrop {
                                drops: d0,
                                handle: Some(rx0.await.unwrap()),
                            }
                        });
                        let h1 = frame.spawn(async move {
                            AwaitsHandleInDrop {
                                drops: d1,
                                handle: Some(rx1.await.unwrap()),
                            }
                        });
                        tx0.send(h1).unwrap();
                        tx1.send(h0).unwrap();
                    })
                }));
                let counts = drops.each_ref().map(|d| d.load(Ordering::SeqCst));
                assert_eq!(
                    counts,
                    [1, 1],
                    "workers({workers}), frame {frame_no}: drops per output"
                );
            }
        }
    });
}

/// An output holding another job's handle, which its destructor polls once (no catching: a
/// panic there goes to the frame).
struct PollsOtherInDrop<'f, 'e> {
    drops: &'e AtomicUsize,
    handle: Option<JobHandle<'f, Counted<'e>>>,
}

impl Drop for PollsOtherInDrop<'_, '_> {
    fn drop(&mut self) {
        self.drops.fetch_add(1, Ordering::SeqCst);
        if let Some(mut handle) = self.handle.take() {
            let _ = poll_once(&mut handle);
        }
    }
}

/// Finding 1(c): the sweep drops job Y's output first (Y finished last, so it heads the
/// outputs list), then the destructor of X's output polls Y's handle, which it kept. The poll
/// sees only `DONE` and takes the output out of an empty stage: the crate's internal
/// `unreachable!("a job's output was taken twice")` comes out of `run_frame`. Whatever the
/// frame reports, it must not be that internal message, and each output is dropped once.
#[test]
fn handle_polled_after_the_sweep_dropped_its_output_does_not_hit_an_internal_error() {
    within(10, || {
        let mut scheduler = Scheduler::builder().workers(1).build().unwrap();
        for frame_no in 0..5 {
            let x_done = AtomicBool::new(false);
            let (x_drops, y_drops) = (AtomicUsize::new(0), AtomicUsize::new(0));
            let (x_done_r, xd, yd) = (&x_done, &x_drops, &y_drops);
            let result = catch_unwind(AssertUnwindSafe(|| {
                scheduler.run_frame(async |frame| {
                    // Y finishes after X.
                    let y = frame.spawn(async move {
                        while !x_done_r.load(Ordering::SeqCst) {
                            yield_now().await;
                        }
                        Counted::new(yd)
                    });
                    let x = frame.spawn(async move {
                        x_done_r.store(true, Ordering::SeqCst);
                        PollsOtherInDrop {
                            drops: xd,
                            handle: Some(y),
                        }
                    });
                    // X's output is left for the sweep.
                    std::mem::forget(x);
                })
            }));
            if let Err(payload) = result {
                let msg = payload_str(&*payload);
                assert!(
                    !msg.contains("taken twice") && !msg.contains("internal error"),
                    "frame {frame_no}: an internal error reached the user: {msg:?}"
                );
            }
            assert_eq!(
                x_drops.load(Ordering::SeqCst),
                1,
                "frame {frame_no}: X drops"
            );
            assert_eq!(
                y_drops.load(Ordering::SeqCst),
                1,
                "frame {frame_no}: Y drops"
            );
        }
    });
}

/// Flags shared by the jobs and outputs of [`output_destructor_spawning_a_job_that_awaits_a_handle_being_swept`].
#[derive(Default)]
struct SweepProbe {
    /// Drops of Y's output.
    drops: AtomicUsize,
    /// The sweep is inside Y's output's destructor.
    in_drop: AtomicBool,
    /// The job spawned by X's output's destructor is done with Y's handle.
    polled: AtomicBool,
}

/// Y's output: its first drop waits (a while) for the job holding its handle to poll it.
struct WaitsInDrop<'e>(&'e SweepProbe);

impl Drop for WaitsInDrop<'_> {
    fn drop(&mut self) {
        let probe = self.0;
        if probe.drops.fetch_add(1, Ordering::SeqCst) == 0 {
            probe.in_drop.store(true, Ordering::SeqCst);
            wait_until(Duration::from_secs(3), || {
                probe.polled.load(Ordering::SeqCst)
            });
        }
    }
}

/// X's output: its destructor spawns a job that takes Y's handle to another worker and polls
/// it once the sweep has started dropping Y's output.
struct SpawnsPollerInDrop<'f, 'e> {
    frame: &'f Frame<'f, 'e>,
    probe: &'e SweepProbe,
    handle: Option<JobHandle<'f, WaitsInDrop<'e>>>,
}

impl Drop for SpawnsPollerInDrop<'_, '_> {
    fn drop(&mut self) {
        let Some(mut handle) = self.handle.take() else {
            return;
        };
        let probe = self.probe;
        drop(self.frame.spawn(async move {
            let _polled = SetOnDrop(&probe.polled);
            wait_until(Duration::from_secs(3), || {
                probe.in_drop.load(Ordering::SeqCst)
            });
            let _ = poll_once(&mut handle);
        }));
    }
}

/// Finding 1(b): an output's destructor (X's, run by the sweep on the driving thread) spawns a
/// job holding a live handle of job Y; another worker runs it and polls the handle while the
/// sweep is inside Y's output's destructor. The sweep set `TAKEN` and drops in place, the poll
/// checks only `DONE` and moves the output out: Y's output is dropped twice (a data race on
/// the stage). If the job is not stolen in time the driver runs it after the sweep, and the
/// poll then hits the internal "taken twice" error instead.
#[test]
fn output_destructor_spawning_a_job_that_awaits_a_handle_being_swept() {
    within(60, || {
        let mut scheduler = Scheduler::builder().workers(2).build().unwrap();
        for frame_no in 0..20 {
            let probe = SweepProbe::default();
            let p = &probe;
            let result = catch_unwind(AssertUnwindSafe(|| {
                scheduler.run_frame(async |frame| {
                    // Local jobs complete on the driving thread: Y, then X, so the sweep meets
                    // X's output first.
                    let y = frame.spawn_local(async move { WaitsInDrop(p) });
                    let x = frame.spawn_local(async move {
                        while !y.is_finished() {
                            yield_now().await;
                        }
                        SpawnsPollerInDrop {
                            frame,
                            probe: p,
                            handle: Some(y),
                        }
                    });
                    std::mem::forget(x);
                })
            }));
            if let Err(payload) = result {
                let msg = payload_str(&*payload);
                assert!(
                    !msg.contains("taken twice") && !msg.contains("internal error"),
                    "frame {frame_no}: an internal error reached the user: {msg:?}"
                );
            }
            assert_eq!(
                probe.drops.load(Ordering::SeqCst),
                1,
                "frame {frame_no}: Y's output was dropped {} times",
                probe.drops.load(Ordering::SeqCst)
            );
        }
    });
}

/// Spins until `cond` holds or `timeout` passes; returns whether it held. Busy at first, to
/// react within nanoseconds, then giving the time slice away, in case the thread it waits for
/// shares this core.
fn spin_until(timeout: Duration, cond: impl Fn() -> bool) -> bool {
    let start = Instant::now();
    let mut spins = 0u32;
    while !cond() {
        if start.elapsed() > timeout {
            return false;
        }
        spins += 1;
        if spins < 20_000 {
            std::hint::spin_loop();
        } else {
            std::thread::yield_now();
        }
    }
    true
}

thread_local! {
    /// Set on the thread running the handle-dropping job of
    /// [`handles_dropped_on_another_worker_during_the_sweep_drop_each_output_once`].
    static HANDLE_DROPPER: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

/// A meeting point on one output, where the sweep and a job on another worker line up so that
/// they reach the next output at the same moment.
#[derive(Default)]
struct MeetingPoint {
    /// The output was dropped (by the sweep, which is now waiting here, or by the job).
    arrived: AtomicBool,
    /// The job has dropped this output's handle and goes on to the next one.
    go: AtomicBool,
    /// Spins the job waits after `go` before it drops the next handle.
    delay: u32,
}

/// Meeting points fail open: once one times out (the job is not running alongside the sweep),
/// nobody waits at the others.
#[derive(Default)]
struct Meetings {
    gave_up: AtomicBool,
}

/// An output whose drops are counted. Every sixteenth waits, when dropped by the sweep, at its
/// meeting point for the job dropping handles on the other worker.
struct RacedOutput<'e> {
    drops: &'e AtomicUsize,
    meeting: Option<&'e MeetingPoint>,
    meetings: &'e Meetings,
}

impl Drop for RacedOutput<'_> {
    fn drop(&mut self) {
        if let Some(m) = self.meeting {
            m.arrived.store(true, Ordering::SeqCst);
            if !HANDLE_DROPPER.get() && !self.meetings.gave_up.load(Ordering::SeqCst) {
                let met = spin_until(Duration::from_millis(20), || m.go.load(Ordering::SeqCst));
                if !met {
                    self.meetings.gave_up.store(true, Ordering::SeqCst);
                }
            }
        }
        self.drops.fetch_add(1, Ordering::SeqCst);
    }
}

/// X's output: its destructor spawns one job that drops `handles`, in the order the sweep meets
/// their outputs, meeting the sweep at every meeting point. It waits until that job has
/// started, so that it runs on another worker while the driving thread sweeps.
struct DropsHandlesElsewhere<'f, 'e> {
    frame: &'f Frame<'f, 'e>,
    started: &'e AtomicBool,
    meetings: &'e Meetings,
    handles: Vec<(JobHandle<'f, RacedOutput<'e>>, Option<&'e MeetingPoint>)>,
}

impl Drop for DropsHandlesElsewhere<'_, '_> {
    fn drop(&mut self) {
        let handles = core::mem::take(&mut self.handles);
        let (started, meetings) = (self.started, self.meetings);
        drop(self.frame.spawn(async move {
            HANDLE_DROPPER.set(true);
            started.store(true, Ordering::SeqCst);
            for (h, meeting) in handles {
                if let Some(m) = meeting {
                    // Wait for the sweep to be dropping this output, then both go on.
                    spin_until(Duration::from_millis(20), || {
                        m.arrived.load(Ordering::SeqCst) || meetings.gave_up.load(Ordering::SeqCst)
                    });
                    drop(h);
                    m.go.store(true, Ordering::SeqCst);
                    // The sweep needs a moment to see `go`: vary how long we give it, so that
                    // some meeting lines the two of us up on the next output to the nanosecond.
                    for _ in 0..m.delay {
                        std::hint::spin_loop();
                    }
                } else {
                    drop(h);
                }
            }
            HANDLE_DROPPER.set(false);
        }));
        wait_until(Duration::from_millis(100), || {
            started.load(Ordering::SeqCst)
        });
    }
}

/// Finding 1(b), the drop race: `JobHandle::drop` reads `TAKEN` (in its `DETACHED`
/// read-modify-write) and sets it only later; when the sweep sets it in between, both drop the
/// output. Here a job spawned by an output destructor drops live handles on another worker
/// while the driver sweeps the same outputs, in the same order, the two meeting every sixteenth
/// output so that they reach the next one together: 256 outputs per frame, 200 frames. Every
/// output must be dropped exactly once.
#[test]
fn handles_dropped_on_another_worker_during_the_sweep_drop_each_output_once() {
    const JOBS: usize = 256;
    within(60, || {
        let mut scheduler = Scheduler::builder().workers(2).build().unwrap();
        for frame_no in 0..200u32 {
            let drops: Vec<AtomicUsize> = (0..JOBS).map(|_| AtomicUsize::new(0)).collect();
            let points: Vec<MeetingPoint> = (0..JOBS)
                .map(|i| MeetingPoint {
                    delay: (i as u32 * 7 + frame_no) % 24,
                    ..MeetingPoint::default()
                })
                .collect();
            let (started, meetings) = (AtomicBool::new(false), Meetings::default());
            let (drops_r, points_r, started_r, meetings_r) = (&drops, &points, &started, &meetings);
            let _ = catch_unwind(AssertUnwindSafe(|| {
                scheduler.run_frame(async |frame| {
                    let ys: Vec<_> = drops_r
                        .iter()
                        .zip(points_r)
                        .enumerate()
                        .map(|(i, (d, m))| {
                            let meeting = (i % 16 == 15).then_some(m);
                            let h = frame.spawn_local(async move {
                                RacedOutput {
                                    drops: d,
                                    meeting,
                                    meetings: meetings_r,
                                }
                            });
                            (h, meeting)
                        })
                        .collect();
                    let x = frame.spawn_local(async move {
                        while !ys.iter().all(|(h, _)| h.is_finished()) {
                            yield_now().await;
                        }
                        // The sweep meets the last finished first.
                        let mut handles = ys;
                        handles.reverse();
                        DropsHandlesElsewhere {
                            frame,
                            started: started_r,
                            meetings: meetings_r,
                            handles,
                        }
                    });
                    std::mem::forget(x);
                })
            }));
            let wrong: Vec<(usize, usize)> = drops
                .iter()
                .map(|d| d.load(Ordering::SeqCst))
                .enumerate()
                .filter(|&(_, n)| n != 1)
                .collect();
            assert!(
                wrong.is_empty(),
                "frame {frame_no}: outputs (index, drops) not dropped exactly once: {wrong:?}"
            );
        }
    });
}

/// What the job spawned by [`SpawnsForgottenJobInDrop`] shares with the test.
#[derive(Default)]
struct ForgottenProbe {
    /// Drops of the forgotten job's output.
    drops: AtomicUsize,
    /// The forgotten job has run.
    ran: AtomicBool,
}

/// An output whose destructor spawns a job, forgets its handle, and waits until the job has
/// run (on another worker: the driving thread is busy in here).
struct SpawnsForgottenJobInDrop<'f, 'e> {
    frame: &'f Frame<'f, 'e>,
    probe: &'e ForgottenProbe,
}

impl Drop for SpawnsForgottenJobInDrop<'_, '_> {
    fn drop(&mut self) {
        let probe = self.probe;
        std::mem::forget(self.frame.spawn(async move {
            probe.ran.store(true, Ordering::SeqCst);
            Counted::new(&probe.drops)
        }));
        if wait_until(Duration::from_secs(1), || probe.ran.load(Ordering::SeqCst)) {
            // Let it complete and put its output on that worker's outputs list.
            std::thread::sleep(Duration::from_millis(5));
        }
    }
}

/// Finding 2: `drive` sweeps the outputs once and returns if every job is done. A job spawned
/// by an output destructor during the sweep, whose handle is forgotten and which another worker
/// runs, leaves its output on that worker's outputs list, which nobody sweeps: the output is
/// never dropped in its frame, and the next frame's sweep walks a list into the arena that was
/// reset (here replaced, as the padding makes the arena grow, so valgrind sees a read of freed
/// memory). Each frame must drop exactly one such output, in that frame.
#[test]
fn output_of_a_job_spawned_during_the_sweep_is_dropped_in_its_frame() {
    const FRAMES: usize = 8;
    within(30, || {
        let mut scheduler = Scheduler::builder()
            .workers(2)
            .arena_capacity(1024)
            .build()
            .unwrap();
        let probe = ForgottenProbe::default();
        let p = &probe;
        let mut after_each = Vec::new();
        for _ in 0..FRAMES {
            p.ran.store(false, Ordering::SeqCst);
            let _ = catch_unwind(AssertUnwindSafe(|| {
                scheduler.run_frame(async |frame| {
                    // Padding: the driving thread's arena needs more than one chunk.
                    for _ in 0..8 {
                        let pad = [1u8; 512];
                        frame.spawn(async move {
                            std::hint::black_box(pad);
                        });
                    }
                    let x =
                        frame.spawn(async move { SpawnsForgottenJobInDrop { frame, probe: p } });
                    std::mem::forget(x);
                })
            }));
            after_each.push(probe.drops.load(Ordering::SeqCst));
        }
        assert_eq!(
            after_each,
            (1..=FRAMES).collect::<Vec<_>>(),
            "outputs of the forgotten jobs dropped, counted after each frame"
        );
    });
}

/// Finding 4: a counted job that yields until its siblings on the same counter are done. Each
/// worker batches the decrements of the counted jobs it finished and flushes them only before
/// a job of another counter, when it finds no work, or every 64 jobs; the waiting job is of
/// the same counter and always there to run, so on one worker the batch is never flushed and
/// the value never drops: the frame hangs.
#[test]
fn counted_job_yielding_for_its_siblings_on_its_counter_finishes_on_one_worker() {
    within(10, || {
        let mut scheduler = Scheduler::builder().workers(1).build().unwrap();
        let siblings = AtomicUsize::new(0);
        let s = &siblings;
        scheduler.run_frame(async |frame| {
            let c = frame.counter();
            for _ in 0..3 {
                frame.spawn_counted(c, async move {
                    s.fetch_add(1, Ordering::SeqCst);
                });
            }
            frame.spawn_counted(c, async move {
                while c.value() > 1 {
                    yield_now().await;
                }
            });
            c.await;
            assert_eq!(c.value(), 0);
        });
        assert_eq!(siblings.load(Ordering::SeqCst), 3);
        assert_eq!(scheduler.last_frame_stats().jobs, 4);
    });
}

/// Finding 4 on N workers with N such waiting jobs: every worker can end up cycling one of
/// them while holding unflushed decrements of the counter they wait on.
#[test]
fn counted_jobs_yielding_for_their_siblings_finish_on_as_many_workers() {
    within(20, || {
        for workers in [2, 4] {
            let mut scheduler = Scheduler::builder().workers(workers).build().unwrap();
            for frame_no in 0..20 {
                let siblings = AtomicUsize::new(0);
                let s = &siblings;
                scheduler.run_frame(async |frame| {
                    let c = frame.counter();
                    for _ in 0..16 {
                        frame.spawn_counted(c, async move {
                            s.fetch_add(1, Ordering::SeqCst);
                        });
                    }
                    for _ in 0..workers {
                        frame.spawn_counted(c, async move {
                            while c.value() > workers {
                                yield_now().await;
                            }
                        });
                    }
                    c.await;
                });
                assert_eq!(
                    siblings.load(Ordering::SeqCst),
                    16,
                    "workers({workers}), frame {frame_no}"
                );
            }
        }
    });
}

/// Finding 5: a `spawn_local` job yielding while it waits for an ordinary job. The driving
/// thread takes local jobs before anything else, and a yielding local job goes straight back
/// on the local queue, so with one worker the ordinary job in the driver's deque never runs.
#[test]
fn local_job_yielding_for_an_ordinary_job_lets_it_run_on_one_worker() {
    within(10, || {
        let mut scheduler = Scheduler::builder().workers(1).build().unwrap();
        for frame_no in 0..5 {
            let ran = AtomicBool::new(false);
            let r = &ran;
            let yields = scheduler.run_frame(async |frame| {
                frame
                    .spawn_local(async move {
                        // Spawned from the local job, so it cannot have run before the first
                        // look below: the local job does wait for it.
                        let ordinary = frame.spawn(async move { r.store(true, Ordering::SeqCst) });
                        let mut yields = 0u32;
                        while !r.load(Ordering::SeqCst) {
                            yields += 1;
                            yield_now().await;
                        }
                        ordinary.await;
                        yields
                    })
                    .await
            });
            assert!(ran.load(Ordering::SeqCst), "frame {frame_no}");
            assert!(yields >= 1, "frame {frame_no}: the local job ran first");
        }
    });
}

/// Finding 6(a): a job spawns `a` and `b`, then blocks its thread until `b` has run. Pushes
/// reach thieves only in groups of eight or when the poll ends; `a` is published at once (the
/// deque was drained), `b` is not, so the idle workers can never run it. The job gives up
/// after 5 s (so the test fails instead of spinning for ever).
#[test]
fn job_blocking_until_its_second_child_runs_lets_an_idle_worker_run_it() {
    within(60, || {
        for workers in [2, 4] {
            let mut scheduler = Scheduler::builder().workers(workers).build().unwrap();
            for frame_no in 0..20 {
                let b_ran = AtomicBool::new(false);
                let b = &b_ran;
                let seen = scheduler.run_frame(async |frame| {
                    frame
                        .spawn(async move {
                            let a = frame.spawn(async {});
                            let child = frame.spawn(async move { b.store(true, Ordering::SeqCst) });
                            // Blocks this worker (no await) until the child has run elsewhere.
                            let seen =
                                wait_until(Duration::from_secs(5), || b.load(Ordering::SeqCst));
                            drop((a, child));
                            seen
                        })
                        .await
                });
                assert!(
                    seen,
                    "workers({workers}), frame {frame_no}: the second child never ran while \
                     its parent blocked"
                );
            }
        }
    });
}

/// Finding 6(b): the owner pops its newest jobs in a private batch (here [d, c, ...]), which
/// thieves cannot reach. `d` runs first and blocks until `c` has run, but `c` waits in the
/// same worker's batch: nobody else can take it. `d` gives up after 5 s.
#[test]
fn job_blocking_on_a_job_in_its_workers_private_batch_lets_an_idle_worker_run_it() {
    within(60, || {
        let mut scheduler = Scheduler::builder().workers(2).build().unwrap();
        for frame_no in 0..20 {
            let c_ran = AtomicBool::new(false);
            let c = &c_ran;
            let seen = AtomicBool::new(false);
            let s = &seen;
            scheduler.run_frame(async |frame| {
                frame
                    .spawn(async move {
                        for _ in 0..6 {
                            frame.spawn(async {});
                        }
                        frame.spawn(async move { c.store(true, Ordering::SeqCst) });
                        frame.spawn(async move {
                            let ok =
                                wait_until(Duration::from_secs(5), || c.load(Ordering::SeqCst));
                            s.store(ok, Ordering::SeqCst);
                        });
                    })
                    .await;
            });
            assert!(
                seen.load(Ordering::SeqCst),
                "frame {frame_no}: the job in the private batch never ran while its sibling \
                 blocked"
            );
        }
    });
}

/// Finding 6(c): the lost wake. `wake_thief` looks at the sleeper count with a relaxed load
/// and no fence after publishing, so a worker that is just parking (announce, fence, look at
/// the deques) and a thread that publishes a job and then blocks until it has run can miss each
/// other: the worker sleeps and the job never runs. The reviewers saw it after 12k to 23k
/// frames. Here each frame has the background worker run a job, then the root (on the driving
/// thread) waits a delay after that job's end, spawns a sibling and blocks until it has run
/// (giving up after 5 s). The delay sweeps 50 to 350 µs in steps of 97 ns, so that the push
/// meets the worker's parking (about 100 to 250 µs after its last job, on the machine this was
/// written on) at every phase; 30 000 frames, 10 to 30 s. On the code it was written against
/// it failed (a 5 s stall) in three runs of four, at frames 14 013, 17 538 and 23 002.
/// `LOST_WAKE_FRAMES` sets the number of frames (CI's valgrind run uses a few hundred).
#[test]
fn job_publishing_a_sibling_then_blocking_never_loses_the_wake() {
    let frames: u64 = std::env::var("LOST_WAKE_FRAMES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(30_000);
    within(120, move || {
        let mut scheduler = Scheduler::builder().workers(2).build().unwrap();
        for frame_no in 0..frames {
            let delay = Duration::from_nanos(50_000 + frame_no * 97 % 300_000);
            let first_end: Mutex<Option<Instant>> = Mutex::new(None);
            let ran = AtomicBool::new(false);
            let (first_end_r, ran_r) = (&first_end, &ran);
            let seen = scheduler.run_frame(async |frame| {
                // Blocking here, the root leaves this job to the background worker.
                let first = frame.spawn(async move {
                    *first_end_r.lock().unwrap() = Some(Instant::now());
                });
                if !wait_until(Duration::from_secs(5), || first.is_finished()) {
                    return false;
                }
                let end = first_end_r.lock().unwrap().expect("the first job ran");
                while end.elapsed() < delay {
                    std::hint::spin_loop();
                }
                frame.spawn(async move { ran_r.store(true, Ordering::SeqCst) });
                wait_until(Duration::from_secs(5), || ran_r.load(Ordering::SeqCst))
            });
            assert!(
                seen,
                "frame {frame_no} (delay {delay:?}): a job never ran while the thread that \
                 published it blocked (a lost wake)"
            );
        }
    });
}

/// Finding 7: `Counter::add` adds first and asserts after, so `add(usize::MAX)` on a counter at
/// 1 wraps it to 0 (waking nobody) before it panics. The root, waiting on the counter since it
/// was 1, is never woken: the frame hangs and the documented overflow panic never comes out of
/// `run_frame`. It must come out, and the scheduler must still work afterwards.
#[test]
fn counter_add_overflow_in_a_job_panics_out_of_run_frame() {
    within(10, || {
        let mut scheduler = Scheduler::builder().workers(1).build().unwrap();
        let result = catch_unwind(AssertUnwindSafe(|| {
            scheduler.run_frame(async |frame| {
                let c = frame.counter();
                c.add(1);
                // Runs once the root waits on the counter (one worker).
                frame.spawn(async move { c.add(usize::MAX) });
                c.await;
            })
        }));
        let payload = result.expect_err("the overflow must come out of run_frame as a panic");
        let msg = payload_str(&*payload);
        assert!(msg.contains("overflow"), "message: {msg:?}");
        assert_eq!(scheduler.run_frame(async |f| f.spawn(async { 5 }).await), 5);
    });
}

/// Finding 7, the same through `spawn_counted`: its increment of a counter at `usize::MAX`
/// must not wrap to 0 silently; the panic comes out of `run_frame` and the root waiting on the
/// counter is released instead of hanging.
#[test]
fn spawn_counted_overflow_in_a_job_panics_out_of_run_frame() {
    within(10, || {
        let mut scheduler = Scheduler::builder().workers(1).build().unwrap();
        let ran = AtomicBool::new(false);
        let result = catch_unwind(AssertUnwindSafe(|| {
            let ran = &ran;
            scheduler.run_frame(async |frame| {
                let c = frame.counter();
                c.add(usize::MAX / 2); // the largest value a counter holds
                frame.spawn(async move {
                    frame.spawn_counted(c, async move { ran.store(true, Ordering::SeqCst) })
                });
                c.await;
            })
        }));
        let payload = result.expect_err("the overflow must come out of run_frame as a panic");
        let msg = payload_str(&*payload);
        assert!(msg.contains("overflowed"), "message: {msg:?}");
        assert!(
            !ran.load(Ordering::SeqCst),
            "the job of the overflowing spawn ran"
        );
        assert_eq!(scheduler.run_frame(async |f| f.spawn(async { 5 }).await), 5);
    });
}

/// A waker that runs the `&dyn Fn()` its data pointer points at, on wake (by value or by
/// reference); clone copies the pointer, drop does nothing.
static HOOK_WAKER: RawWakerVTable = RawWakerVTable::new(
    |p| RawWaker::new(p, &HOOK_WAKER),
    // SAFETY (all three): `hook_waker` makes the pointer from a live `&&dyn Fn()` that outlives
    // every use of the waker in the test.
    |p| unsafe { (*p.cast::<&dyn Fn()>())() },
    |p| unsafe { (*p.cast::<&dyn Fn()>())() },
    |_| {},
);

/// # Safety
/// `hook` must outlive every clone of the waker and every wake.
unsafe fn hook_waker(hook: &&dyn Fn()) -> Waker {
    let data: *const &dyn Fn() = hook;
    // SAFETY: the vtable's functions only call the hook, which the caller keeps alive.
    unsafe { Waker::from_raw(RawWaker::new(data.cast(), &HOOK_WAKER)) }
}

/// Finding 8: `notify_all` wakes a counter's waiters in batches of 16 and unlocks between
/// batches. A future that starts waiting after the counter went back up (0 -> 1), while the
/// first batch is being woken, is put on the list and released by the next batch although the
/// value is 1. Deterministic: 20 waiters whose waker, the first time it is woken, adds 1 to
/// the counter and registers a new waiter (which is `Pending`, rightly); polled again
/// afterwards, that late waiter must still be `Pending` while the value stays 1.
#[test]
fn waiter_registered_after_the_counter_went_back_up_is_not_released() {
    within(10, || {
        let mut scheduler = Scheduler::builder().workers(1).build().unwrap();
        let (registered_pending, pending_later, value_later) = scheduler.run_frame(async |frame| {
            let c = frame.counter();
            c.add(1);
            let late: std::cell::RefCell<Option<Pin<Box<frame_scheduler::CounterWait<'_>>>>> =
                std::cell::RefCell::new(None);
            let registered_pending = std::cell::Cell::new(None);
            let fired = std::cell::Cell::new(false);
            let hook = || {
                if fired.replace(true) {
                    return;
                }
                // The counter went to 0 and this is the first waiter woken: new work arrives,
                // and a new waiter starts waiting for it.
                c.add(1);
                let mut wait = Box::pin(c.into_future());
                let polled = wait
                    .as_mut()
                    .poll(&mut Context::from_waker(futures::task::noop_waker_ref()));
                registered_pending.set(Some(polled.is_pending()));
                *late.borrow_mut() = Some(wait);
            };
            let hook_ref: &dyn Fn() = &hook;
            // SAFETY: `hook` and `hook_ref` live until the end of this block, past every wake
            // (all within `c.done()` below) and every clone (dropped with the waiters).
            let waker = unsafe { hook_waker(&hook_ref) };
            let mut waiters: Vec<_> = (0..20).map(|_| Box::pin(c.into_future())).collect();
            for w in &mut waiters {
                assert!(
                    w.as_mut()
                        .poll(&mut Context::from_waker(&waker))
                        .is_pending()
                );
            }
            // 1 -> 0: every waiter is woken; the first wake takes the counter back to 1.
            c.done();
            let mut late = late.borrow_mut().take().expect("the hook ran");
            let pending_later = late
                .as_mut()
                .poll(&mut Context::from_waker(futures::task::noop_waker_ref()))
                .is_pending();
            let value_later = c.value();
            drop(late);
            drop(waiters);
            c.done();
            (registered_pending.get(), pending_later, value_later)
        });
        assert_eq!(registered_pending, Some(true));
        assert_eq!(value_later, 1);
        assert!(
            pending_later,
            "a waiter that registered while the counter was 1 was released with the value at 1"
        );
    });
}

/// Finding 9: an arena capacity no allocator can give panics ("out of memory", from bumpalo)
/// instead of coming back as `Err(BuildError)` naming the setting. (Not tested: the largest
/// `queue_capacity` with 1024 workers, which would really try to commit 128 GiB.)
#[test]
fn huge_arena_capacity_is_a_build_error_not_a_panic() {
    let built = catch_unwind(|| {
        Scheduler::builder()
            .workers(1)
            .arena_capacity(1 << 50)
            .build()
    });
    match built {
        Ok(Err(e)) => assert!(
            e.to_string().contains("arena_capacity"),
            "the error should name arena_capacity: {e}"
        ),
        Ok(Ok(_)) => panic!("built a scheduler with 1 PiB arenas"),
        Err(p) => panic!("build panicked: {:?}", payload_str(&*p)),
    }
}

/// Finding 10: `FrameStats::steals` is documented as the jobs a worker took from another
/// worker's queue, but counted steal batches (up to 8 jobs each). Here the root spawns 64 leaf
/// jobs onto the driver's deque and then keeps the driving thread busy until all have run, so
/// the background worker must steal every one of them (in batches), and nobody steals them
/// back: `steals` must be exactly 64, and so must the jobs run off the driving thread.
#[test]
fn steals_count_jobs_stolen() {
    within(30, || {
        let mut scheduler = Scheduler::builder().workers(2).build().unwrap();
        let driver = std::thread::current().id();
        for frame_no in 0..30 {
            let elsewhere = AtomicUsize::new(0);
            let e = &elsewhere;
            scheduler.run_frame(async |frame| {
                let jobs = frame.counter();
                for _ in 0..64 {
                    frame.spawn_counted(jobs, async move {
                        if std::thread::current().id() != driver {
                            e.fetch_add(1, Ordering::SeqCst);
                        }
                    });
                }
                // Block the driving thread (inside the root's poll) until every job has run.
                while jobs.value() > 0 {
                    std::hint::spin_loop();
                }
            });
            assert_eq!(elsewhere.load(Ordering::SeqCst), 64, "frame {frame_no}");
            assert_eq!(
                scheduler.last_frame_stats().steals,
                64,
                "frame {frame_no}: steals against jobs the background worker took"
            );
        }
    });
}

/// Finding 10: `FrameStats::arena_bytes` counts the foreign arena (jobs spawned from threads
/// that are not workers) but `arena_capacity` leaves it out, so a steady frame spawning from a
/// scoped thread reports more bytes used than held in reserve, though every arena kept enough
/// for the next frame.
#[test]
fn arena_capacity_counts_the_foreign_arena_like_arena_bytes() {
    within(30, || {
        let mut scheduler = Scheduler::builder()
            .workers(1)
            .arena_capacity(1024)
            .build()
            .unwrap();
        for frame_no in 0..4 {
            scheduler.run_frame(async |frame| {
                frame
                    .spawn(async move {
                        std::thread::scope(|s| {
                            s.spawn(|| {
                                for _ in 0..64 {
                                    let pad = [1u8; 512];
                                    frame.spawn(async move {
                                        std::hint::black_box(pad);
                                    });
                                }
                            });
                        });
                    })
                    .await;
            });
            let stats = scheduler.last_frame_stats();
            assert_eq!(stats.foreign_jobs, 64);
            // From the second frame on, every arena was sized for the first.
            if frame_no > 0 {
                assert!(
                    stats.arena_capacity >= stats.arena_bytes,
                    "frame {frame_no}: {} bytes used but {} kept",
                    stats.arena_bytes,
                    stats.arena_capacity
                );
            }
        }
    });
}
