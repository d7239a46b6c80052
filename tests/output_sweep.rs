//! The frame-end sweep of job outputs nobody took, raced and re-entered: output destructors
//! that await, poll, drop or forget handles of other jobs (or their own), that spawn jobs, and
//! handles dropped on another worker while the sweep runs. Every output is dropped exactly once,
//! in its frame, before the frame memory it borrows, and no internal error reaches the user.
//! Each test must finish (a watchdog fails it instead of hanging); valgrind in CI turns a silent
//! double drop or use after free into a failure.

mod common;

use std::cell::Cell;
use std::future::Future;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use common::{Tracked, for_each_worker_count, payload_str, small_blocks, wait_until, within};
use frame_scheduler::{Frame, JobHandle, Scheduler, yield_now};

/// Polls a future once with a waker that does nothing.
fn poll_once<F: Future + Unpin>(f: &mut F) -> Poll<F::Output> {
    Pin::new(f).poll(&mut Context::from_waker(futures::task::noop_waker_ref()))
}

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

/// Regression: the frame-end sweep (`drop_untaken`) drops an untaken output while a handle
/// to it is still alive, and `JobHandle::poll` looks only at `DONE`, not `TAKEN`. An output
/// that keeps its own job's handle and awaits it in its destructor is moved out of the stage
/// while the sweep is dropping it in place: it is dropped twice.
#[test]
fn output_awaiting_its_own_handle_in_its_destructor_is_dropped_once() {
    within(10, || {
        for_each_worker_count(&[1, 2], |workers, scheduler| {
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
        });
    });
}

/// Regression, the same with two jobs: each output keeps the other job's (otherwise leaked) handle and
/// awaits it in its destructor. The sweep drops the first output; its destructor takes and
/// drops the second, whose destructor then takes the first out of its stage again, while it is
/// still being dropped: the first output is dropped twice.
#[test]
fn outputs_awaiting_each_others_handles_in_their_destructors_are_dropped_once_each() {
    within(10, || {
        for_each_worker_count(&[1, 2], |workers, scheduler| {
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
        });
    });
}

/// An output holding another job's handle, which its destructor polls once (no catching: a
/// panic there goes to the frame).
struct PollsOtherInDrop<'f, 'e> {
    drops: &'e AtomicUsize,
    handle: Option<JobHandle<'f, Tracked<'e>>>,
}

impl Drop for PollsOtherInDrop<'_, '_> {
    fn drop(&mut self) {
        self.drops.fetch_add(1, Ordering::SeqCst);
        if let Some(mut handle) = self.handle.take() {
            let _ = poll_once(&mut handle);
        }
    }
}

/// Regression: the sweep drops job Y's output first (Y finished last, so it heads the
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
                        Tracked::new(yd)
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

/// Regression: an output's destructor (X's, run by the sweep on the driving thread) spawns a
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

/// Regression, the drop race: `JobHandle::drop` reads `TAKEN` (in its `DETACHED`
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
            Tracked::new(&probe.drops)
        }));
        if wait_until(Duration::from_secs(1), || probe.ran.load(Ordering::SeqCst)) {
            // Let it complete and put its output on that worker's outputs list.
            std::thread::sleep(Duration::from_millis(5));
        }
    }
}

/// Regression: `drive` sweeps the outputs once and returns if every job is done. A job spawned
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

/// An output that, when dropped (by a handle, the completing worker or the frame-end sweep),
/// drops or awaits handles it holds and spawns jobs that do the same.
struct Nasty<'f, 'e: 'f> {
    frame: &'f Frame<'f, 'e>,
    handles: Vec<JobHandle<'f, Nasty<'f, 'e>>>,
    depth: u32,
    drops: &'f AtomicUsize,
    mode: u32,
}

impl Drop for Nasty<'_, '_> {
    fn drop(&mut self) {
        self.drops.fetch_add(1, Ordering::Relaxed);
        let frame = self.frame;
        let drops = self.drops;
        let depth = self.depth;
        let mut hs = std::mem::take(&mut self.handles);
        match self.mode % 4 {
            0 => drop(hs),
            1 => {
                // Move them into a job that drops them on whichever worker runs it.
                if depth < 3 {
                    frame.spawn(async move {
                        yield_now().await;
                        drop(hs);
                    });
                }
            }
            2 => {
                // Await them in a job (may race with the sweep dropping their outputs: the
                // documented panic is allowed, nothing worse).
                if depth < 3 {
                    let h = frame.spawn(async move {
                        for h in hs.drain(..) {
                            let _ = futures::FutureExt::catch_unwind(AssertUnwindSafe(h)).await;
                        }
                    });
                    std::mem::forget(h);
                }
            }
            _ => {
                // Forget some, keep spawning Nasty outputs.
                for h in hs.drain(..) {
                    std::mem::forget(h);
                }
                if depth < 2 {
                    let h = frame.spawn(async move {
                        Nasty {
                            frame,
                            handles: Vec::new(),
                            depth: depth + 1,
                            drops,
                            mode: depth,
                        }
                    });
                    std::mem::forget(h);
                }
            }
        }
    }
}

/// [`Nasty`] outputs, 100 frames on 1 to 3 workers: some awaited, some dropped with their
/// handle, some left to the sweep, each dropping, awaiting, forgetting or spawning more in its
/// destructor. The only panic allowed out of `run_frame` is the documented one for a handle
/// awaited after its frame's end; valgrind checks the memory.
#[test]
fn reentrant_output_destructors_across_the_sweep() {
    within(120, || {
        for_each_worker_count(&[1, 2, 3], |_, scheduler| {
            for f in 0..100u32 {
                let drops = AtomicUsize::new(0);
                let r = catch_unwind(AssertUnwindSafe(|| {
                    scheduler.run_frame(async |frame| {
                        let drops = &drops;
                        let mut all = Vec::new();
                        for i in 0..6u32 {
                            let inner: Vec<_> = (0..3u32)
                                .map(|j| {
                                    frame.spawn(async move {
                                        Nasty {
                                            frame,
                                            handles: Vec::new(),
                                            depth: 1,
                                            drops,
                                            mode: i + j + f,
                                        }
                                    })
                                })
                                .collect();
                            all.push(frame.spawn(async move {
                                yield_now().await;
                                Nasty {
                                    frame,
                                    handles: inner,
                                    depth: 0,
                                    drops,
                                    mode: i + f,
                                }
                            }));
                        }
                        // Leave some to the sweep, drop some now, await some.
                        let mut k = 0;
                        for h in all {
                            k += 1;
                            match (k + f) % 3 {
                                0 => std::mem::forget(h),
                                1 => drop(h),
                                _ => drop(h.await),
                            }
                        }
                    })
                }));
                if let Err(p) = r {
                    let msg = payload_str(&*p);
                    assert!(
                        msg.contains("JobHandle awaited after the end of its frame"),
                        "{msg}"
                    );
                }
            }
        });
    });
}

struct Peek<'a>(Cell<Option<&'a String>>, &'a AtomicUsize);

impl Drop for Peek<'_> {
    fn drop(&mut self) {
        if let Some(s) = self.0.get() {
            // Reads the frame-allocated String: ASan/valgrind see a read after its drop.
            assert_eq!(s.as_str(), "ship");
            self.1.fetch_add(1, Ordering::SeqCst);
        }
    }
}

/// A FrameVec of values that borrow frame allocations (allowed: the vector drops them) is a job
/// output nobody takes: the sweep must drop it before the frame allocations it reads.
#[test]
fn outputs_borrowing_frame_values_are_dropped_before_those_values() {
    let mut s = small_blocks(2);
    let seen = AtomicUsize::new(0);
    let seen = &seen;
    for _ in 0..3 {
        s.run_frame(async |frame| {
            for _ in 0..10 {
                let h = frame.spawn(async move {
                    let name: &String = frame.alloc(String::from("ship"));
                    let mut peeks = frame.vec();
                    peeks.push(Peek(Cell::new(Some(name)), seen));
                    peeks
                });
                std::mem::forget(h);
            }
        });
    }
    assert_eq!(seen.load(Ordering::SeqCst), 30);
}
