//! The scheduler: its configuration, its threads, and `run_frame`, the driving loop.

use core::fmt;
use core::future::Future;
use core::pin::Pin;
use core::task::{Context, Poll};
use std::num::NonZeroUsize;
use std::panic::{AssertUnwindSafe, catch_unwind, resume_unwind};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use crate::frame::Frame;
use crate::job::JobRef;
use crate::job::state::{COMPLETE, SCHEDULED};
use crate::priority::Priority;
use crate::stall::{Stall, StallHook, StallReport};
use crate::stats::{Collector, FrameStats};
use crate::sync::{Ordering, lock};
use crate::unwind::{AbortOnUnwind, drop_quietly};
use crate::waker;
use crate::worker::{self, Counts, Shared, Worker};
use crate::{context, harness, sleep};
use crossbeam_utils::CachePadded;

/// Owns the worker threads and their arenas, and runs frames.
///
/// ```
/// use frame_scheduler::Scheduler;
///
/// let mut scheduler = Scheduler::builder().workers(2).build()?;
/// let mut positions = vec![0.0f32; 1024];
/// for _ in 0..3 {
///     scheduler.run_frame(async |frame| {
///         let moves = frame.counter();
///         for chunk in positions.chunks_mut(256) {
///             frame.spawn_counted(moves, async move {
///                 chunk.iter_mut().for_each(|p| *p += 1.0);
///             });
///         }
///         moves.await;
///     });
/// }
/// assert!(positions.iter().all(|&p| p == 3.0));
/// # Ok::<(), frame_scheduler::BuildError>(())
/// ```
pub struct Scheduler {
    shared: Arc<Shared>,
    threads: Vec<JoinHandle<()>>,
    next_index: u64,
    stats: FrameStats,
    /// With `pin_driver(true)`: the core the driving thread is pinned to, and the last thread
    /// pinned to it (a thread is pinned the first time it runs a frame).
    driver_core: Option<core_affinity::CoreId>,
    pinned_driver: Option<std::thread::ThreadId>,
    /// With the background workers pinned and the driving thread not: keeps the driving
    /// thread off the workers' cores without pinning it (`placement.rs`).
    placement: Option<crate::placement::DriverPlacement>,
    /// Held while this scheduler's threads are pinned by default, so that a second scheduler
    /// does not pin its threads onto the same cores.
    _pin_claim: Option<PinClaim>,
    collector: Collector,
    /// What the driving thread learns of the frames' rhythm (`sleep.rs`).
    pacing: crate::sleep::Pacing,
    /// Clock units to nanoseconds, for the frame's figures and the pacing.
    rate: crate::activity::Rate,
    /// Jobs spawned and stolen up to the end of the last frame (none are spawned between
    /// frames): this frame's figures are what the counts grew by since.
    totals: crate::worker::Totals,
}

impl fmt::Debug for Scheduler {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Scheduler")
            .field("workers", &self.workers())
            .field("frames_run", &self.next_index)
            .finish_non_exhaustive()
    }
}

impl Default for Scheduler {
    fn default() -> Self {
        Scheduler::new()
    }
}

/// Configures a [`Scheduler`]. Made by [`Scheduler::builder`]; nothing happens until
/// [`build`](SchedulerBuilder::build).
#[derive(Clone)]
#[must_use = "a SchedulerBuilder does nothing until build() is called"]
pub struct SchedulerBuilder {
    workers: Option<usize>,
    arena_capacity: usize,
    arena_block_size: usize,
    arena_trim_after: usize,
    queue_capacity: usize,
    /// `None`: pin where it is safe (see `pin_threads`).
    pin_threads: Option<bool>,
    /// `None`: as the workers are pinned.
    pin_driver: Option<bool>,
    stack_size: Option<usize>,
    trace_capacity: usize,
    on_worker_start: Option<ThreadHook>,
    on_worker_stop: Option<ThreadHook>,
    prewake_lead: Duration,
    prewake_hover: Duration,
    stall_after: Option<Duration>,
    on_stall: Option<StallHook>,
}

/// A hook run on a background worker thread, given the worker's index.
type ThreadHook = Arc<dyn Fn(usize) + Send + Sync>;

impl fmt::Debug for SchedulerBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let hook = |h: &Option<ThreadHook>| h.as_ref().map(|_| "Fn(usize)");
        f.debug_struct("SchedulerBuilder")
            .field("workers", &self.workers)
            .field("arena_capacity", &self.arena_capacity)
            .field("arena_block_size", &self.arena_block_size)
            .field("arena_trim_after", &self.arena_trim_after)
            .field("queue_capacity", &self.queue_capacity)
            .field("pin_threads", &self.pin_threads)
            .field("pin_driver", &self.pin_driver)
            .field("stack_size", &self.stack_size)
            .field("trace_capacity", &self.trace_capacity)
            .field("on_worker_start", &hook(&self.on_worker_start))
            .field("on_worker_stop", &hook(&self.on_worker_stop))
            .field("prewake_lead", &self.prewake_lead)
            .field("prewake_hover", &self.prewake_hover)
            .field("stall_after", &self.stall_after)
            .field(
                "on_stall",
                &self.on_stall.as_ref().map(|_| "Fn(&StallReport)"),
            )
            .finish()
    }
}

/// Why a [`SchedulerBuilder`] could not build: the message says what to change.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BuildError {
    message: String,
}

impl fmt::Display for BuildError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for BuildError {}

impl BuildError {
    fn new(message: String) -> BuildError {
        BuildError { message }
    }
}

/// The claim on this process's cores for pinning by default: one scheduler at a time pins its
/// threads unless told to. Released on drop.
#[derive(Debug)]
struct PinClaim;

static PIN_CLAIMED: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

impl PinClaim {
    fn try_take() -> Option<PinClaim> {
        PIN_CLAIMED
            .compare_exchange(
                false,
                true,
                std::sync::atomic::Ordering::AcqRel,
                std::sync::atomic::Ordering::Relaxed,
            )
            .ok()
            .map(|_| PinClaim)
    }
}

impl Drop for PinClaim {
    fn drop(&mut self) {
        PIN_CLAIMED.store(false, std::sync::atomic::Ordering::Release);
    }
}

/// The most workers a scheduler accepts.
pub const MAX_WORKERS: usize = 1024;
const MIN_ARENA: usize = 1024;
const MIN_BLOCK: usize = 4 * 1024;
const MAX_PREWAKE: Duration = Duration::from_millis(100);
const MAX_BLOCK: usize = 256 * 1024 * 1024;
const MAX_TRIM_AFTER: usize = 1 << 16;
const MIN_STACK: usize = 64 * 1024;
const MAX_TRACE_CAPACITY: usize = 1 << 20;
const MIN_QUEUE: usize = 16;

impl SchedulerBuilder {
    /// Threads that run jobs, the thread calling `run_frame` included: `workers(1)` runs
    /// everything on the caller, `workers(2)` starts one background thread. Default: one per
    /// available core. Must be 1 to [`MAX_WORKERS`].
    pub fn workers(mut self, n: usize) -> Self {
        self.workers = Some(n);
        self
    }

    /// Bytes of frame memory each worker reserves when the scheduler is built: its first
    /// block, of this size or [`arena_block_size`](Self::arena_block_size), whichever is larger.
    /// Frames that need more take blocks from the shared pool (or the system); memory the
    /// recent frames did not need is given back (see
    /// [`arena_trim_after`](Self::arena_trim_after)). Default 256 KiB; at least 1 KiB.
    pub fn arena_capacity(mut self, bytes: usize) -> Self {
        self.arena_capacity = bytes;
        self
    }

    /// Bytes of one arena block. Workers bump-allocate jobs and frame values into a block of
    /// their own and take another from a shared pool when it is full (one lock per block); at
    /// frame end all of them but one per worker go back to the pool. An allocation bigger than
    /// a quarter of a block gets a chunk of its own.
    ///
    /// Default 256 KiB: the pool lock is then taken once per about 2 000 small jobs, so it
    /// never shows on the spawn path, while the memory every worker keeps for itself between
    /// frames (one block) stays at 16 MiB on 64 workers; and futures up to 64 KiB still share
    /// blocks. Must be 4 KiB to 256 MiB.
    pub fn arena_block_size(mut self, bytes: usize) -> Self {
        self.arena_block_size = bytes;
        self
    }

    /// How many frames back the pool looks when it gives memory back: at the end of every
    /// frame, free blocks beyond 1.5 × the largest use (`FrameStats::arena_bytes`) of the last
    /// `frames` frames are returned to the system. So a spike's memory is returned `frames`
    /// frames after it, and steady frames never allocate. Default 120 (two seconds at 60 fps);
    /// must be 1 to 65 536.
    pub fn arena_trim_after(mut self, frames: usize) -> Self {
        self.arena_trim_after = frames;
        self
    }

    /// Events each worker's trace buffer holds (rounded up to a power of two), preallocated
    /// here so that recording never allocates; 0 (the default) turns tracing off, and the hot
    /// paths then pay one relaxed load and a branch per event site. Record with
    /// [`Scheduler::start_trace`] and [`Scheduler::take_trace`]. An event is 56 bytes; when a
    /// buffer is full, newer events of that worker are dropped and counted
    /// ([`Trace::dropped`](crate::Trace::dropped)). At most 2^20.
    pub fn trace_capacity(mut self, events_per_worker: usize) -> Self {
        self.trace_capacity = events_per_worker;
        self
    }

    /// Stack bytes of each background worker thread. A job's future is written into the arena
    /// straight from where its caller built it, so spawning needs no stack beyond the caller's
    /// own copy; but a future is built on the stack of whoever spawns it, so the stack must
    /// hold the largest future a job spawns (plus that job's own work). Default: Rust's default
    /// for spawned threads (2 MiB unless `RUST_MIN_STACK` says otherwise), enough for futures
    /// of about 1 MiB. At least 64 KiB.
    pub fn stack_size(mut self, bytes: usize) -> Self {
        self.stack_size = Some(bytes);
        self
    }

    /// Slots in each worker's job queue (allocated once, rounded up to a power of two). Jobs
    /// beyond it go to a shared overflow list, which is slower but never allocates. Default
    /// 16384; at least 16.
    pub fn queue_capacity(mut self, jobs: usize) -> Self {
        self.queue_capacity = jobs;
        self
    }

    /// How long before the next frame is expected the background workers wake up, so that a
    /// frame after an idle gap (a render loop sleeping until vsync) starts on every worker at
    /// once. The scheduler learns the period from the starts of the last frames: when the last
    /// two intervals agree within an eighth, the workers, parked since the end of the frame,
    /// wake by a timer this long before the next start is due, then look for work, spinning
    /// lightly, until the frame comes or [`prewake_hover`](Self::prewake_hover) after it was
    /// due. A worker woken by the driving thread after a long sleep may start late (the system
    /// can put it on the driver's own busy core); one that woke by itself is already running.
    /// Each pre-woken worker spends about this much CPU per frame. At most 100 ms.
    ///
    /// Default `Duration::ZERO`: off ([`Scheduler::prewake`] still works). Measured on a 2-core
    /// VM (BENCHMARKS.md), pinned threads (the default where safe, see
    /// [`pin_threads`](Self::pin_threads)) start a frame after idle as fast without pre-waking
    /// and at half the CPU per frame, and unpinned ones were not made reliably faster by it.
    /// Try it (300 µs or more) where pinning is not possible and frames come at a steady
    /// rhythm.
    pub fn prewake_lead(mut self, lead: Duration) -> Self {
        self.prewake_lead = lead;
        self
    }

    /// How long pre-woken workers keep looking for the next frame after it was due (or after
    /// [`Scheduler::prewake`]) before they park again: the bound on the CPU a late frame
    /// costs. Default 500 µs; at most 100 ms.
    pub fn prewake_hover(mut self, hover: Duration) -> Self {
        self.prewake_hover = hover;
        self
    }

    /// Pins background worker `i` (`1..workers`) to the `i`-th core this process may run on
    /// (counting from 1): the workers take the first cores, and the last core is left for
    /// the thread that calls `run_frame`, which is pinned there only with
    /// [`pin_driver(true)`](Self::pin_driver). The driver gets the last core rather than core
    /// 0 because core 0 takes most interrupts on a default Linux: on our 2-core VM a loop on
    /// one thread ran 12-15% slower on CPU 0 than on CPU 1 (`taskset`), and every frame's
    /// critical path runs on the driver.
    /// `true` needs one core per worker (else `build` is an `Err`); `false` leaves every
    /// thread where the system puts it.
    ///
    /// Default: pinned where it is safe: when the process may run on at least as many cores
    /// as there are workers, there are at least two workers, and no other live scheduler of
    /// this process has pinned its threads (the first scheduler to pin holds the cores until
    /// it is dropped). Otherwise not pinned.
    ///
    /// Why: after an idle gap (a render loop sleeping until vsync) the system often puts a
    /// woken worker on the core where the driving thread is already running the frame, where
    /// it waits for the driver's time slice. Measured on a 2-core VM (8 jobs of 250 µs after
    /// 16 ms of sleep, `compare/examples/idle.rs` and BENCHMARKS.md): about 2× the ideal frame
    /// time unpinned, about 1.15× with the workers pinned (BENCHMARKS.md has the figures).
    ///
    /// The driving thread is not pinned by default: it is the caller's thread, and threads it
    /// starts would inherit its affinity. But the system does not reliably keep it off the
    /// pinned workers' cores (measured: in about half the processes it left the driver on the
    /// pinned worker's core for good, and frames ran at one core's speed). So while the
    /// workers are pinned and the driver is not, `run_frame` looks which CPU it runs on (at
    /// each frame after a gap between frames, every 16th frame back to back, and after the
    /// driver slept in a frame; a few nanoseconds) and, if a worker is pinned there, moves the
    /// thread to a CPU of its own affinity where none is (by narrowing its affinity for a
    /// moment, then setting it back exactly as it was). Linux only.
    pub fn pin_threads(mut self, pin: bool) -> Self {
        self.pin_threads = Some(pin);
        self
    }

    /// Whether pinning includes the thread that calls `run_frame` (to the last core of the
    /// process, which no worker takes; the first time
    /// it runs a frame; the pinning stays on that thread afterwards, and threads it starts
    /// inherit it: use it for an engine's dedicated render thread). Then no background worker
    /// ever waits for the driver's core, even between two of the driver's looks at where it
    /// runs (see [`pin_threads`](Self::pin_threads)). Default `false`. Takes effect when the workers are
    /// pinned; `pin_driver(true)` with `pin_threads(false)` is an `Err`.
    pub fn pin_driver(mut self, pin: bool) -> Self {
        self.pin_driver = Some(pin);
        self
    }

    /// Runs `f(index)` on each background worker thread (indices `1..workers`, threads named
    /// `frame-worker-{index}`) when it starts, before it looks for any job: the place to name
    /// the thread for a profiler, or set its priority or affinity. [`build`](Self::build)
    /// returns only once every start hook has returned. The thread calling `run_frame` (worker
    /// 0) is not a background thread: no hook runs for it. Calling this again replaces the
    /// hook. Default: none.
    ///
    /// If the hook panics, `build` stops and joins the threads already started (running their
    /// [`on_worker_stop`](Self::on_worker_stop) hooks; not the stop hook of a thread whose
    /// start hook panicked) and returns a [`BuildError`] naming the hook, the worker and the
    /// panic's message.
    ///
    /// ```
    /// use std::sync::atomic::{AtomicUsize, Ordering};
    /// use std::sync::Arc;
    /// use frame_scheduler::Scheduler;
    ///
    /// let started = Arc::new(AtomicUsize::new(0));
    /// let count = Arc::clone(&started);
    /// let scheduler = Scheduler::builder()
    ///     .workers(3)
    ///     .on_worker_start(move |index| {
    ///         let name = std::thread::current().name().map(str::to_owned);
    ///         assert_eq!(name, Some(format!("frame-worker-{index}")));
    ///         count.fetch_add(1, Ordering::SeqCst);
    ///     })
    ///     .build()?;
    /// // Two background threads; the caller of run_frame is the third worker.
    /// assert_eq!(started.load(Ordering::SeqCst), 2);
    /// # drop(scheduler);
    /// # Ok::<(), frame_scheduler::BuildError>(())
    /// ```
    pub fn on_worker_start(mut self, f: impl Fn(usize) + Send + Sync + 'static) -> Self {
        self.on_worker_start = Some(Arc::new(f));
        self
    }

    /// Runs `f(index)` on each background worker thread just before it exits, when the
    /// [`Scheduler`] is dropped (its drop returns once every thread has run it). Not run for
    /// the thread calling `run_frame`, nor on a thread whose
    /// [`on_worker_start`](Self::on_worker_start) hook panicked. Calling this again replaces
    /// the hook. Default: none.
    ///
    /// A panic in the hook is caught on its thread: it is reported on stderr (by the panic
    /// hook, and by a line saying which worker's stop hook it was), the thread exits normally,
    /// and the other threads still stop and run their own stop hooks; dropping the scheduler
    /// neither hangs nor panics.
    ///
    /// ```
    /// use std::sync::atomic::{AtomicUsize, Ordering};
    /// use std::sync::Arc;
    /// use frame_scheduler::Scheduler;
    ///
    /// let stopped = Arc::new(AtomicUsize::new(0));
    /// let count = Arc::clone(&stopped);
    /// let scheduler = Scheduler::builder()
    ///     .workers(3)
    ///     .on_worker_stop(move |_index| {
    ///         count.fetch_add(1, Ordering::SeqCst);
    ///     })
    ///     .build()?;
    /// assert_eq!(stopped.load(Ordering::SeqCst), 0);
    /// drop(scheduler);
    /// assert_eq!(stopped.load(Ordering::SeqCst), 2);
    /// # Ok::<(), frame_scheduler::BuildError>(())
    /// ```
    pub fn on_worker_stop(mut self, f: impl Fn(usize) + Send + Sync + 'static) -> Self {
        self.on_worker_stop = Some(Arc::new(f));
        self
    }

    /// Reports frames that run longer than `d`: a watchdog thread (started only when this is
    /// set) looks at the running frame once it is `d` old and writes one report per such
    /// frame, listing every unfinished job with its name or spawn location and what it does:
    /// queued, running on which worker for how long (so a job that never yields shows, even
    /// when it holds every worker), or waiting, and for what: another job's
    /// [`JobHandle`](crate::JobHandle), a [`Counter`](crate::Counter) (where it was made, its
    /// value), or a waker held elsewhere. The root future is listed too. Jobs waiting for each
    /// other in a cycle are reported as a deadlock, and a counter awaited with no job left that
    /// could bring it down as a missing `done()`. See [`StallReport`].
    ///
    /// The report goes to stderr, or to the hook set with [`on_stall`](Self::on_stall). It
    /// only reports: the frame goes on, and `run_frame` returns when it finishes.
    ///
    /// Default: off. When off, spawning, polling and awaiting pay one test of a field each, and
    /// no thread is started. When on, each job takes 64 bytes more of frame memory (its node
    /// for the watchdog, before its header), and each poll reads the time-stamp counter once.
    /// Must be above zero.
    ///
    /// ```
    /// use std::sync::{Arc, Mutex};
    /// use std::sync::atomic::{AtomicBool, Ordering};
    /// use std::time::Duration;
    /// use frame_scheduler::{JobState, Scheduler};
    ///
    /// let reports = Arc::new(Mutex::new(Vec::new()));
    /// let release = Arc::new(AtomicBool::new(false));
    /// let (seen, unblock) = (Arc::clone(&reports), Arc::clone(&release));
    /// let mut scheduler = Scheduler::builder()
    ///     .workers(1)
    ///     .stall_after(Duration::from_millis(50))
    ///     .on_stall(move |report| {
    ///         seen.lock().unwrap().push(report.to_string());
    ///         unblock.store(true, Ordering::SeqCst); // lets the stuck job finish
    ///     })
    ///     .build()?;
    /// scheduler.run_frame(async |frame| {
    ///     // A job that never yields until the report is written.
    ///     let stuck = frame.job().name("stuck").spawn(async {
    ///         while !release.load(Ordering::SeqCst) {
    ///             std::hint::spin_loop();
    ///         }
    ///     });
    ///     stuck.await;
    /// });
    /// let reports = reports.lock().unwrap();
    /// assert_eq!(reports.len(), 1);
    /// assert!(reports[0].contains("job \"stuck\""), "{}", reports[0]);
    /// assert!(reports[0].contains("running on worker 0 for"), "{}", reports[0]);
    /// assert!(reports[0].contains("root future: waiting for the JobHandle of job \"stuck\""));
    /// # let _ = JobState::Waiting;
    /// # Ok::<(), frame_scheduler::BuildError>(())
    /// ```
    pub fn stall_after(mut self, d: Duration) -> Self {
        self.stall_after = Some(d);
        self
    }

    /// Receives the reports of [`stall_after`](Self::stall_after) instead of stderr. `f` runs
    /// on the watchdog thread, once per stalled frame, while the frame goes on; a panic in it
    /// is caught and written to stderr. Calling this again replaces the hook. Needs
    /// `stall_after`.
    ///
    /// ```
    /// use std::time::Duration;
    /// let scheduler = frame_scheduler::Scheduler::builder()
    ///     .stall_after(Duration::from_millis(100))
    ///     .on_stall(|report| eprintln!("stalled frame {}:\n{report}", report.frame()))
    ///     .build()?;
    /// # drop(scheduler);
    /// # Ok::<(), frame_scheduler::BuildError>(())
    /// ```
    pub fn on_stall(mut self, f: impl Fn(&StallReport) + Send + Sync + 'static) -> Self {
        self.on_stall = Some(Arc::new(f));
        self
    }

    /// Starts the worker threads, and returns once every one of them is running.
    ///
    /// # Errors
    /// A [`BuildError`] whose message says what to change when a setting is out of range
    /// (`workers` 0 or above [`MAX_WORKERS`], `arena_capacity` below 1 KiB, `arena_block_size`
    /// outside 4 KiB to 256 MiB, `arena_trim_after` outside 1 to 65 536, `stack_size` below
    /// 64 KiB, `queue_capacity` below 16 or above 2^24, `stall_after` zero), when `on_stall` is
    /// set without `stall_after`, when `pin_threads(true)` asks for more
    /// cores than the process has, when the memory for the arenas or queues cannot be
    /// allocated, when the operating system refuses to start a thread, or when an
    /// [`on_worker_start`](Self::on_worker_start) hook panics.
    ///
    /// ```
    /// let err = frame_scheduler::Scheduler::builder().workers(0).build().unwrap_err();
    /// assert!(err.to_string().contains("workers must be at least 1"));
    /// ```
    pub fn build(self) -> Result<Scheduler, BuildError> {
        let workers = match self.workers {
            Some(n) => n,
            None => std::thread::available_parallelism().map_or(1, NonZeroUsize::get),
        };
        if workers == 0 {
            return Err(BuildError::new(
                "workers must be at least 1; got 0 (workers(1) runs every job on the thread \
                 that calls run_frame)"
                    .into(),
            ));
        }
        if workers > MAX_WORKERS {
            return Err(BuildError::new(format!(
                "workers must be at most {MAX_WORKERS}; got {workers}"
            )));
        }
        if self.arena_capacity < MIN_ARENA || self.arena_capacity > isize::MAX as usize / 4 {
            return Err(BuildError::new(format!(
                "arena_capacity must be between {MIN_ARENA} bytes and isize::MAX / 4; got {}",
                self.arena_capacity
            )));
        }
        if !(MIN_BLOCK..=MAX_BLOCK).contains(&self.arena_block_size) {
            return Err(BuildError::new(format!(
                "arena_block_size must be between {MIN_BLOCK} and {MAX_BLOCK} bytes; got {}",
                self.arena_block_size
            )));
        }
        if !(1..=MAX_TRIM_AFTER).contains(&self.arena_trim_after) {
            return Err(BuildError::new(format!(
                "arena_trim_after must be between 1 and {MAX_TRIM_AFTER} frames; got {}",
                self.arena_trim_after
            )));
        }
        if self.trace_capacity > MAX_TRACE_CAPACITY {
            return Err(BuildError::new(format!(
                "trace_capacity must be at most {MAX_TRACE_CAPACITY} events per worker; got {}",
                self.trace_capacity
            )));
        }
        if let Some(bytes) = self.stack_size {
            if bytes < MIN_STACK {
                return Err(BuildError::new(format!(
                    "stack_size must be at least {MIN_STACK} bytes; got {bytes}"
                )));
            }
        }
        if self.pin_driver == Some(true) && self.pin_threads == Some(false) {
            return Err(BuildError::new(
                "pin_driver(true) pins the driving thread beside pinned workers, but \
                 pin_threads(false) leaves the workers unpinned: drop pin_threads(false), or \
                 pin_driver(true)"
                    .into(),
            ));
        }
        for (setting, value) in [
            ("prewake_lead", self.prewake_lead),
            ("prewake_hover", self.prewake_hover),
        ] {
            if value > MAX_PREWAKE {
                return Err(BuildError::new(format!(
                    "{setting} must be at most {MAX_PREWAKE:?}; got {value:?} (a worker \
                     spinning that long per frame costs more than a late start)"
                )));
            }
        }
        if self.queue_capacity < MIN_QUEUE || self.queue_capacity > 1 << 24 {
            return Err(BuildError::new(format!(
                "queue_capacity must be between {MIN_QUEUE} and {} jobs; got {}",
                1 << 24,
                self.queue_capacity
            )));
        }
        if self.stall_after == Some(Duration::ZERO) {
            return Err(BuildError::new(
                "stall_after must be above zero; got 0 (leave it unset to turn stall reports off)"
                    .into(),
            ));
        }
        if self.on_stall.is_some() && self.stall_after.is_none() {
            return Err(BuildError::new(
                "on_stall is set but stall_after is not: no frame would ever be reported; set \
                 stall_after(duration) too"
                    .into(),
            ));
        }
        let (cores, pin_claim) = match self.pin_threads {
            Some(true) => {
                let cores = core_affinity::get_core_ids().unwrap_or_default();
                if cores.len() < workers {
                    return Err(BuildError::new(format!(
                        "pin_threads(true) needs one core per worker, but this machine offers {} \
                         cores to this process and workers({workers}) asks for more: lower \
                         workers or leave pinning off",
                        cores.len()
                    )));
                }
                (cores, PinClaim::try_take())
            }
            Some(false) => (Vec::new(), None),
            // Pin where it is safe (see `pin_threads`).
            None if workers >= 2 => {
                let cores = core_affinity::get_core_ids().unwrap_or_default();
                match PinClaim::try_take() {
                    Some(claim) if cores.len() >= workers => (cores, Some(claim)),
                    _ => (Vec::new(), None),
                }
            }
            None => (Vec::new(), None),
        };

        // Memory first, with fallible allocation: a setting the machine cannot honour is an
        // error that names it, not an abort.
        let arena_error = || {
            BuildError::new(format!(
                "could not allocate arena_capacity({}) bytes for each of {workers} workers: the \
                 system refused the memory; lower arena_capacity or workers",
                self.arena_capacity
            ))
        };
        let pool =
            crate::arena::Pool::try_new(self.arena_block_size, self.arena_trim_after, workers)
                .ok_or_else(arena_error)?;
        let mut states = Vec::new();
        if states.try_reserve_exact(workers).is_err() {
            return Err(BuildError::new(format!(
                "could not allocate the state of {workers} workers: ask for fewer workers"
            )));
        }
        for _ in 0..workers {
            let first =
                crate::arena::new_sized_block(self.arena_capacity.max(self.arena_block_size))
                    .ok_or_else(arena_error)?;
            match Worker::try_new(Some(first), self.queue_capacity, workers) {
                Ok(w) => states.push(CachePadded::new(w)),
                Err(setting) => {
                    return Err(BuildError::new(format!(
                        "could not allocate {setting}({}) jobs for each of {workers} workers: \
                         the system refused the memory; lower {setting} or workers",
                        self.queue_capacity
                    )));
                }
            }
        }
        let states = states.into_boxed_slice();
        let tracer = crate::trace::Tracer::new(workers, self.trace_capacity);
        let stall = self.stall_after.map(|after| {
            let hook = self
                .on_stall
                .clone()
                .unwrap_or_else(crate::stall::default_hook);
            Box::new(Stall::new(workers, after, hook))
        });
        let shared = Arc::new_cyclic(|this| {
            let mut shared = Shared::new(states, pool, tracer, self.prewake_hover, this.as_ptr());
            shared.stall = CachePadded::new(stall);
            shared
        });
        // Counted before the `Scheduler` exists, whose drop uncounts it.
        waker::scheduler_started(workers);
        let collector = Collector::new(workers);
        let rate = crate::activity::Rate::new(&shared.clock);
        let mut scheduler = Scheduler {
            shared,
            threads: Vec::new(),
            next_index: 0,
            // The background workers take `cores[..workers - 1]` (below), the driver the last.
            driver_core: (self.pin_driver == Some(true))
                .then(|| cores.last().copied())
                .flatten(),
            placement: if self.pin_driver == Some(true) {
                None
            } else {
                crate::placement::DriverPlacement::new(cores.iter().take(workers - 1).map(|c| c.id))
            },
            _pin_claim: pin_claim,
            pinned_driver: None,
            stats: collector.empty_stats(),
            collector,
            pacing: crate::sleep::Pacing::new(self.prewake_lead),
            rate,
            totals: crate::worker::Totals::default(),
        };
        // `build` returns once every worker thread is running: the first frame starts with all
        // of them, and the threads' own start-up (which allocates, and runs the start hooks) is
        // over before it.
        let started = Arc::new((
            std::sync::Mutex::new(Startup::default()),
            std::sync::Condvar::new(),
        ));
        for index in 1..workers {
            let shared = Arc::clone(&scheduler.shared);
            let started = Arc::clone(&started);
            let core = cores.get(index - 1).copied();
            let (on_start, on_stop) = (self.on_worker_start.clone(), self.on_worker_stop.clone());
            let mut thread = std::thread::Builder::new().name(format!("frame-worker-{index}"));
            if let Some(bytes) = self.stack_size {
                thread = thread.stack_size(bytes);
            }
            let spawned = thread.spawn(move || {
                crate::profile::worker_started(index);
                if let Some(core) = core {
                    core_affinity::set_for_current(core);
                }
                let hook = on_start.map_or(Ok(()), |hook| run_hook(&*hook, index));
                let ok = hook.is_ok();
                {
                    let (state, cv) = &*started;
                    let mut state = state.lock().unwrap_or_else(|e| e.into_inner());
                    state.reported += 1;
                    if let Err(msg) = hook {
                        state.failed.get_or_insert((index, msg));
                    }
                    cv.notify_all();
                }
                drop(started);
                if !ok {
                    return;
                }
                worker::main_loop(&shared, index);
                drop(shared);
                if let Some(hook) = on_stop {
                    if let Err(msg) = run_hook(&*hook, index) {
                        eprintln!(
                            "frame-scheduler: the on_worker_stop hook panicked on worker \
                                 {index} ({msg}); the panic was caught and the thread exits"
                        );
                    }
                }
            });
            match spawned {
                Ok(handle) => scheduler.threads.push(handle),
                // Dropping `scheduler` stops and joins the threads started so far.
                Err(e) => {
                    return Err(BuildError::new(format!(
                        "could not start worker thread {index} of {workers}: {e}; ask for \
                         fewer workers"
                    )));
                }
            }
        }
        let (state, cv) = &*started;
        let mut state = state.lock().unwrap_or_else(|e| e.into_inner());
        while state.reported < workers - 1 {
            state = cv.wait(state).unwrap_or_else(|e| e.into_inner());
        }
        if let Some((index, msg)) = state.failed.take() {
            drop(state);
            // Dropping `scheduler` stops and joins the threads started (their stop hooks run).
            drop(scheduler);
            return Err(BuildError::new(format!(
                "the on_worker_start hook panicked on worker {index} (thread \
                 frame-worker-{index}): {msg}; the worker threads already started were stopped \
                 and joined"
            )));
        }
        drop(state);
        if scheduler.shared.stall.is_some() {
            match Stall::start(&scheduler.shared) {
                // Joined with the workers when the scheduler is dropped.
                Ok(handle) => scheduler.threads.push(handle),
                Err(e) => {
                    return Err(BuildError::new(format!(
                        "could not start the stall watchdog thread (stall_after is set): {e}"
                    )));
                }
            }
        }
        Ok(scheduler)
    }
}

/// What the worker threads report to `build` as they start.
#[derive(Default)]
struct Startup {
    /// Threads that have run their start hook (or have none).
    reported: usize,
    /// The first worker whose start hook panicked, and the panic's message.
    failed: Option<(usize, String)>,
}

/// Runs a thread hook, catching a panic: `Err` holds its message.
fn run_hook(hook: &(dyn Fn(usize) + Send + Sync), index: usize) -> Result<(), String> {
    catch_unwind(AssertUnwindSafe(|| hook(index))).map_err(|payload| {
        let msg = if let Some(s) = payload.downcast_ref::<&'static str>() {
            (*s).to_owned()
        } else if let Some(s) = payload.downcast_ref::<String>() {
            s.clone()
        } else {
            "a panic payload that is not a string".to_owned()
        };
        drop_quietly(payload);
        msg
    })
}

impl Scheduler {
    /// A scheduler with one worker per available core, the calling thread included.
    ///
    /// # Panics
    /// If the operating system refuses to start the threads; use [`Scheduler::builder`] to
    /// handle that as an error.
    pub fn new() -> Scheduler {
        Scheduler::builder()
            .build()
            .unwrap_or_else(|e| panic!("Scheduler::new failed: {e}"))
    }

    /// Starts configuring a scheduler.
    pub fn builder() -> SchedulerBuilder {
        SchedulerBuilder {
            workers: None,
            arena_capacity: 256 * 1024,
            arena_block_size: 256 * 1024,
            arena_trim_after: 120,
            queue_capacity: 16384,
            pin_threads: None,
            pin_driver: None,
            prewake_lead: Duration::ZERO,
            prewake_hover: Duration::from_micros(500),
            stack_size: None,
            trace_capacity: 0,
            on_worker_start: None,
            on_worker_stop: None,
            stall_after: None,
            on_stall: None,
        }
    }

    /// Threads that run jobs, the thread calling `run_frame` included.
    pub fn workers(&self) -> usize {
        self.shared.workers.len()
    }

    /// Starts recording a trace of the frames run from now on (every worker's spawns, polls,
    /// wakes, steals and parks), into the buffers `trace_capacity` preallocated: recording
    /// makes no heap allocation. Starting again while recording starts afresh.
    ///
    /// # Panics
    /// If the scheduler was built with `trace_capacity(0)` (the default).
    ///
    /// ```
    /// let mut scheduler = frame_scheduler::Scheduler::builder()
    ///     .workers(2)
    ///     .trace_capacity(4096)
    ///     .build()
    ///     .unwrap();
    /// scheduler.start_trace();
    /// scheduler.run_frame(async |frame| frame.spawn(async { 1 }).await);
    /// let trace = scheduler.take_trace();
    /// assert_eq!(trace.frames().count(), 1);
    /// let mut json = Vec::new();
    /// trace.write_chrome_json(&mut json).unwrap();
    /// assert!(json.starts_with(b"{"));
    /// ```
    pub fn start_trace(&mut self) {
        self.shared.tracer.start();
    }

    /// Stops recording and returns the trace of the frames run since
    /// [`start_trace`](Scheduler::start_trace), merged in time order.
    ///
    /// # Panics
    /// If no trace was started.
    pub fn take_trace(&mut self) -> crate::Trace {
        self.shared.tracer.take()
    }

    /// Wakes every background worker now, to look for the next frame's jobs (spinning
    /// lightly) for [`prewake_hover`](SchedulerBuilder::prewake_hover) before parking again:
    /// for an engine that knows when the next frame starts (vsync is about to return) better
    /// than the learned period does. Cheap when the workers are awake already.
    ///
    /// ```
    /// # let mut scheduler = frame_scheduler::Scheduler::builder().workers(2).build().unwrap();
    /// // ... waiting for vsync ...
    /// scheduler.prewake();
    /// scheduler.run_frame(async |frame| {
    ///     frame.spawn(async { /* starts on a worker that is already awake */ }).await;
    /// });
    /// ```
    pub fn prewake(&self) {
        let shared = &self.shared;
        shared.pace.prewake();
        shared.sleep.notify_background();
    }

    /// Figures for the last frame run (all zero before the first).
    pub fn last_frame_stats(&self) -> &FrameStats {
        &self.stats
    }

    /// Runs one frame: polls the root future made by `f` on this thread, and runs jobs here
    /// and on the workers until the root future and every job spawned in the frame have
    /// finished. Then every output nobody took is dropped, every arena is reset, and the root
    /// future's output is returned.
    ///
    /// # Panics
    /// - If the root future or any job panicked: once every other job has finished and the
    ///   frame is cleaned up, the first panic is resumed with its original payload. The
    ///   scheduler stays usable.
    /// - If called from inside a job or a root future (of any scheduler): the frame could never
    ///   finish while this thread waits in a nested one.
    pub fn run_frame<'env, R>(
        &mut self,
        f: impl for<'frame> AsyncFnOnce(&'frame Frame<'frame, 'env>) -> R,
    ) -> R {
        if !context::current().shared.is_null() {
            panic!(
                "Scheduler::run_frame called from inside a job or a frame's root future: the \
                 outer frame could not finish while this thread waits; spawn the work into the \
                 current frame instead, or run the next frame after this one returns"
            );
        }
        if let Some(core) = self.driver_core {
            let me = std::thread::current().id();
            if self.pinned_driver != Some(me) {
                core_affinity::set_for_current(core);
                self.pinned_driver = Some(me);
            }
        }
        crate::profile::frame_started();
        let shared: &Shared = &self.shared;
        // The frame's times are clock units (`activity.rs`: a few nanoseconds to read, where
        // an `Instant` may cost 30 to 60); `rate` turns them into nanoseconds.
        let start_units = self.rate.now();
        self.rate.update(&shared.clock, start_units);
        let index = self.next_index;
        self.next_index += 1;
        self.pacing
            .frame_started(&shared.pace, self.rate.ns(start_units));
        if let Some(placement) = &self.placement {
            // After a gap (the thread slept, and may have woken anywhere) at every frame;
            // back to back now and then: the system may have left the thread on a worker's
            // core all along (a few nanoseconds a look).
            if !self.pacing.back_to_back() || index % 16 == 0 {
                placement.check();
            }
        }
        // Workers read the frame's number when they find its jobs; its start is the zero of
        // their activity figures.
        shared.clock.frame_begin(index);
        if shared.panics.load(Ordering::Relaxed) != 0 {
            shared.panics.store(0, Ordering::Relaxed);
        }
        shared.root.state.store(SCHEDULED, Ordering::Release);
        if let Some(stall) = shared.stall.as_deref() {
            stall.frame_begin(index);
        }

        if shared.tracer.is_on() {
            // SAFETY: this is the driving thread inside `run_frame`, before any job exists.
            unsafe { shared.tracer.frame_begin(index, &shared.root) };
        }
        let output = {
            let _enter = context::enter(shared, 0);
            // SAFETY: this thread is worker 0 for the duration of the frame: `own` is ours
            // (Shared invariant 2; no background thread is worker 0).
            shared.workers[0].own.with_mut(|own| unsafe {
                // Looks for work count from the frame's start, so the order of a small
                // frame's jobs does not depend on the frames before it.
                (*own).ticks = 0;
            });
            let frame = Frame::new(shared, index);
            // The root future lives on this stack frame, pinned; it is dropped in place in
            // `drive`, before any arena is reset. Calling `f` runs user code (a plain closure
            // returning a future runs its body here): a panic there must not unwind past jobs
            // it already spawned, which may borrow the caller's data.
            let made = catch_unwind(AssertUnwindSafe(|| {
                context::with_local_ok(true, || f(&frame))
            }));
            let mut root = match made {
                Ok(future) => Some(future),
                Err(payload) => {
                    shared.record_panic(payload);
                    shared.root.transition_to_complete();
                    None
                }
            };
            let mut output = None;
            // Nothing in `drive` or `end_frame` unwinds (user code there is caught); if it did,
            // jobs could outlive the borrows they hold, so abort instead.
            let guard = AbortOnUnwind("run_frame's driving loop");
            drive(
                shared,
                start_units,
                self.placement.as_ref(),
                &mut root,
                &mut output,
            );
            core::mem::forget(guard);
            output
        };

        // Every job is done and nothing can spawn any more: clean up the frame.
        let guard = AbortOnUnwind("the end of a frame");
        if let Some(stall) = shared.stall.as_deref() {
            // Before any arena is reset: the watchdog stops reading the frame.
            stall.frame_end();
        }
        // SAFETY: `drive` returned only once the root was done and every job had completed.
        let arena = unsafe { end_frame(shared) };
        core::mem::forget(guard);
        if shared.tracer.is_on() {
            // SAFETY: the driving thread inside `run_frame`.
            unsafe { shared.tracer.frame_end(index, arena.used.used) };
        }
        crate::profile::frame_finished();
        let end_units = self.rate.now();
        self.rate.update(&shared.clock, end_units);
        let elapsed = Duration::from_nanos(self.rate.ns(end_units.saturating_sub(start_units)));
        if self
            .pacing
            .frame_ended(&shared.pace, self.rate.ns(end_units))
        {
            // Workers that parked during the frame would sleep through the next one's window:
            // let them re-park with its deadline.
            shared.sleep.notify_background();
        }
        // In place: the rows' memory is kept from frame to frame, and nothing is dropped. The
        // pattern names every field, so a field added to `FrameStats` must be set here too.
        let FrameStats {
            index: stats_index,
            jobs,
            local_jobs,
            foreign_jobs,
            arena_bytes,
            arena_capacity,
            arena_blocks,
            arena_blocks_borrowed,
            arena_large,
            arena_trimmed,
            steals,
            panics,
            elapsed: stats_elapsed,
            workers,
        } = &mut self.stats;
        let after = self.collector.end(
            shared,
            index,
            (start_units, end_units),
            self.rate.scale(),
            elapsed,
            workers,
        );
        let before = core::mem::replace(&mut self.totals, after);
        *stats_index = index;
        *jobs = after.spawned - before.spawned;
        *local_jobs = after.local - before.local;
        *foreign_jobs = after.foreign - before.foreign;
        *arena_bytes = arena.used.used;
        *arena_capacity = arena.kept;
        *arena_blocks = arena.used.blocks;
        *arena_blocks_borrowed = arena.used.borrowed;
        *arena_large = arena.used.large;
        *arena_trimmed = arena.trimmed;
        *steals = after.steals - before.steals;
        *panics = shared.panics.load(Ordering::Relaxed);
        *stats_elapsed = elapsed;
        if let Some(payload) = shared.take_panic() {
            resume_unwind(payload);
        }
        match output {
            Some(output) => output,
            None => unreachable!("a frame without a panic always has the root future's output"),
        }
    }
}

/// The driving loop: polls the root when it is woken, runs jobs, parks when there is nothing
/// to do, and returns once the root future and every job have finished.
fn drive<Fut: Future>(
    shared: &Shared,
    start: u64,
    placement: Option<&crate::placement::DriverPlacement>,
    root: &mut Option<Fut>,
    output: &mut Option<Fut::Output>,
) {
    let root_header = core::ptr::NonNull::from(&shared.root);
    let mut round = 0;
    let mut look_for_end = true;
    let counts = &shared.workers[0].counts;
    // SAFETY: this thread is worker 0 for the frame, whose number `run_frame` has published.
    let mut activity =
        unsafe { crate::activity::Activity::driver(&shared.clock, &counts.clock, start) };
    loop {
        // The root future, when woken. It may look at a counter this thread still holds
        // finished jobs of: publish them first.
        if root.is_some() && shared.root.state.load(Ordering::Acquire) & SCHEDULED != 0 {
            // SAFETY: the activity of worker 0, which this thread is for the frame.
            unsafe { activity.working(&shared.clock, &counts.clock) };
            // The root counts as a `Normal` job: `High` jobs queued anywhere go first.
            // SAFETY: this thread is worker 0 for the duration of the frame.
            if let Some(job) = unsafe { shared.find_urgent(0) } {
                // SAFETY: as above.
                unsafe { harness::run_job(shared, 0, job) };
                continue;
            }
            // SAFETY: as above.
            unsafe { harness::flush_pending(shared, 0) };
            poll_root(shared, root_header, root, output);
            // Finished: the frame may be over already, unless a job of ours is queued (the
            // root's last spawn, typically), which the frame must run first.
            look_for_end = root.is_none() && own_deque_empty(shared);
        }
        // Whether the frame is over is a look at every worker's counts, so not after each
        // job (while jobs of ours are queued the frame is not over): when the root has
        // finished, after a job that left our deque empty, and each time no job is found.
        if root.is_none() && look_for_end {
            look_for_end = false;
            // SAFETY: the driving thread, the root done.
            if unsafe { frame_over(shared) } {
                // The frame's end is the driver's work.
                // SAFETY: as for `working` above.
                unsafe { activity.working(&shared.clock, &counts.clock) };
                return;
            }
        }
        // SAFETY: this thread is worker 0 for the duration of the frame.
        if let Some(job) = unsafe { shared.find_work(0) } {
            // SAFETY: as for `working` above.
            unsafe { activity.working(&shared.clock, &counts.clock) };
            // SAFETY: this thread is worker 0 for the duration of the frame.
            unsafe { harness::run_job(shared, 0, job) };
            round = 0;
            // That may have been the frame's last job: once the root is done, look at once
            // if nothing of ours is queued (two loads of our own deque's line; a job there
            // means the frame goes on). While the root runs, its end is what to wait for.
            look_for_end = root.is_none() && own_deque_empty(shared);
            continue;
        }
        // SAFETY: as for `working` above.
        unsafe { activity.out_of_work(&shared.clock, &counts.clock) };
        if round == 0 {
            // Nothing to run: publish batched completions before idling (and before looking
            // at the counts: they may hold the frame's last jobs).
            // SAFETY: this thread is worker 0 for the duration of the frame.
            unsafe { harness::flush_pending(shared, 0) };
        }
        // SAFETY: the driving thread, the root done.
        if root.is_none() && unsafe { frame_over(shared) } {
            // SAFETY: as for `working` above.
            unsafe { activity.working(&shared.clock, &counts.clock) };
            return;
        }
        if sleep::idle_round(&mut round, sleep::DRIVER_IDLE) {
            continue;
        }
        if shared.tracer.is_on() {
            // SAFETY: the driving thread is worker 0.
            unsafe { shared.tracer.park(0) };
        }
        crate::profile::parked(0);
        let parked = shared.sleep.sleep(0, || {
            (root.is_some() && shared.root.state.load(Ordering::SeqCst) & SCHEDULED != 0)
                || (root.is_none() && shared.all_jobs_done())
                || shared.has_work(0)
        });
        if parked {
            // SAFETY: this thread is worker 0: its own counter.
            unsafe { Counts::bump(&counts.parks) };
            // A worker woke this thread, and the system may have put it on that worker's
            // core (the waker's core, for a thread it thinks will share data with it).
            if let Some(placement) = placement {
                placement.check();
            }
        }
        if shared.tracer.is_on() {
            // SAFETY: as above.
            unsafe { shared.tracer.unpark(0) };
        }
        crate::profile::unparked(0);
        round = 0;
    }
}

/// Whether the driving thread's own `Normal` deque looks empty: two loads of its own line. A
/// job there is a job of the frame not yet done, so the frame cannot be over.
#[inline]
fn own_deque_empty(shared: &Shared) -> bool {
    shared.workers[0].queues[Priority::Normal.index()].is_empty()
}

/// Whether the frame whose root has finished is over: every job spawned has completed, and
/// the outputs nobody took are dropped.
///
/// # Safety
/// 1. Called on the driving thread of `shared`'s running frame, whose root future has
///    finished (so no job can be spawned but by jobs, or by the destructors run here).
unsafe fn frame_over(shared: &Shared) -> bool {
    let (completed, spawned) = shared.job_counts();
    if completed != spawned {
        return false;
    }
    // Drop the outputs nobody took. Their destructors are user code and may, in odd programs,
    // spawn jobs (which may leave outputs of their own on any worker's list): then run those,
    // and sweep again once they are done. The frame is over only after a sweep during which
    // nothing was spawned.
    // SAFETY: every job has completed and was counted (the counts above; the root is done,
    // by (1)), and this is the driving thread.
    unsafe { harness::sweep_outputs(shared) };
    shared.job_counts().1 == spawned
}

fn poll_root<Fut: Future>(
    shared: &Shared,
    root_header: core::ptr::NonNull<crate::job::Header>,
    root: &mut Option<Fut>,
    output: &mut Option<Fut::Output>,
) {
    shared.root.transition_to_running();
    // The root counts as a `Normal` job: its spawns inherit that.
    context::set_priority(Priority::Normal);
    if let Some(stall) = shared.stall.as_deref() {
        // SAFETY: the driving thread is worker 0, about to poll the root.
        unsafe { stall.poll_begin(shared, 0, root_header) };
    }
    // SAFETY: the root header lives in `Shared`, which outlives the frame.
    let waker = unsafe { waker::borrowed(root_header) };
    let mut cx = Context::from_waker(&waker);
    let Some(fut) = root.as_mut() else { return };
    // SAFETY: the future stays in `root` until it is dropped in place (set to `None`).
    let fut = unsafe { Pin::new_unchecked(fut) };
    let tracing = shared.tracer.is_on();
    if tracing {
        // SAFETY: the driving thread is worker 0.
        unsafe { shared.tracer.poll_begin(0, &shared.root) };
    }
    let polled = context::with_local_ok(true, || {
        catch_unwind(AssertUnwindSafe(|| {
            crate::profile::poll_root!(fut.poll(&mut cx))
        }))
    });
    if tracing {
        let result = match &polled {
            Ok(Poll::Pending) => crate::trace::PollResult::Pending,
            Ok(Poll::Ready(_)) => crate::trace::PollResult::Ready,
            Err(_) => crate::trace::PollResult::Panicked,
        };
        // SAFETY: as above.
        unsafe { shared.tracer.poll_end(0, &shared.root, result) };
    }
    match polled {
        Ok(Poll::Pending) => {
            // A wake during the poll leaves SCHEDULED set: the loop polls again.
            let _ = shared.root.transition_to_idle();
            return;
        }
        Ok(Poll::Ready(value)) => *output = Some(value),
        // The panic is resumed by `run_frame` once every job has finished.
        Err(payload) => shared.record_panic(payload),
    }
    shared.root.transition_to_complete();
    // Drop the root future in place now: its handles detach, its counters' waits end.
    if let Err(payload) =
        context::with_local_ok(true, || catch_unwind(AssertUnwindSafe(|| *root = None)))
    {
        shared.record_panic(payload);
    }
    debug_assert!(shared.root.state.load(Ordering::Relaxed) & COMPLETE != 0);
}

/// What a frame's end found and did to the arenas.
struct ArenaEnd {
    used: crate::arena::ArenaUse,
    kept: usize,
    trimmed: usize,
}

/// Drops the frame's values, orphans wake cells and resets every arena.
///
/// # Safety
/// 1. The frame is over: the root future is dropped and every job has completed and been
///    counted, and every output nobody took has been dropped, so no worker touches its frame
///    state until the next frame.
unsafe fn end_frame(shared: &Shared) -> ArenaEnd {
    // A load first: most frames have no foreign spawn, and a swap is a locked instruction.
    // No thread sets the flag now (1): the frame's spawns are over.
    let foreign_used = shared.foreign_used.load(Ordering::Acquire);
    if foreign_used {
        shared.foreign_used.store(false, Ordering::Relaxed);
    }
    // Values allocated with `Frame::alloc` and friends: dropped before anything is reset or
    // orphaned (they may hold wakers), on this thread.
    let mut on_panic = |p| shared.record_panic(p);
    for w in shared.workers.iter() {
        // SAFETY: (1) and Shared invariant 1.
        w.frame_state
            .with_mut(|fs| unsafe { (*fs).arena.run_drops(&mut on_panic) });
    }
    if foreign_used {
        // SAFETY: (1): no job will allocate again.
        unsafe { lock(&shared.foreign).arena.run_drops(&mut on_panic) };
    }
    // Then orphan every wake cell, in every pool: a cell handed out by one pool may point
    // into any worker's arena (a stolen job), so no arena may be reset before all are orphaned.
    for w in shared.workers.iter() {
        // SAFETY: (1) and Shared invariant 1.
        w.frame_state
            .with_mut(|fs| unsafe { (*fs).cells.orphan_all() });
    }
    if foreign_used {
        // SAFETY: (1): no job will be polled again.
        unsafe { lock(&shared.foreign).cells.orphan_all() };
    }
    // Every block but each worker's current one goes back to the pool.
    let mut used = crate::arena::ArenaUse::default();
    let mut kept = 0;
    for w in shared.workers.iter() {
        // SAFETY: (1) and Shared invariant 1; the drops have run.
        w.frame_state.with_mut(|fs| unsafe {
            used += (*fs).arena.end_frame(&shared.pool, true);
            kept += (*fs).arena.kept();
        });
    }
    if foreign_used {
        // SAFETY: as above.
        used += unsafe { lock(&shared.foreign).arena.end_frame(&shared.pool, false) };
    }
    // SAFETY: this is the driver, at frame end.
    let pool = unsafe { shared.pool.end_frame(used) };
    // The root's cell, if it had one, was orphaned with the pool that handed it out.
    shared
        .root
        .wake_cell
        .store(core::ptr::null_mut(), Ordering::Relaxed);
    shared.root.state.store(0, Ordering::Release);
    ArenaEnd {
        used,
        kept: kept + pool.free,
        trimmed: pool.trimmed,
    }
}

impl Drop for Scheduler {
    fn drop(&mut self) {
        self.shared.shutdown.store(true, Ordering::SeqCst);
        self.shared.sleep.notify_all();
        if let Some(stall) = self.shared.stall.as_deref() {
            stall.shutdown();
        }
        for handle in self.threads.drain(..) {
            let _ = handle.join();
        }
        for w in self.shared.workers.iter() {
            // SAFETY: no frame runs and every thread is joined: the pools are ours alone.
            w.frame_state
                .with_mut(|fs| unsafe { (*fs).cells.free_all() });
        }
        lock(&self.shared.foreign).cells.free_all();
        waker::scheduler_stopped();
    }
}

// `Scheduler` is `Send` and `Frame` is `Sync` (the API promises both): checked at compile time.
const _: () = {
    const fn is_send<T: Send>() {}
    const fn is_sync<T: Sync>() {}
    is_send::<Scheduler>();
    is_send::<JobRef>();
    is_sync::<Frame<'static, 'static>>();
};
