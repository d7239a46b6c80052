//! Workers: their queues, their arenas, stealing, and the loop a background thread runs.
//!
//! Every thread that runs jobs is a worker with an index; the thread calling `run_frame` is
//! worker 0 for the length of the call. Each worker owns a fixed-capacity work-stealing deque
//! (`deque.rs`, allocated once), a bump arena, a pool of wake cells and its own
//! counters. Spawning touches only the spawner's own state: no global atomic is written on the
//! spawn path. Idle workers steal from the others' queues, then park (`sleep.rs`). What happens
//! to a job once found (poll, completion, output sweep) is in `harness.rs`; which worker the
//! running thread is, in `context.rs`.
//!
//! # Knowing when a frame is over without a global counter
//! Each worker counts the jobs it spawned and the jobs it completed, each counter written only by
//! its owner. The driving thread decides the frame is over when the root future is done and the
//! sum of all `completed` counters, read first, equals the sum of all `spawned` counters, read
//! after. Every completion read has its spawn visible to the later reads (the spawn happens
//! before the job is queued, which happens before it completes), and a job's children are
//! spawned before it completes; so equal sums mean no job anywhere is unfinished, and none can
//! start, since only unfinished jobs spawn.

use core::any::Any;
use core::ptr;
use std::panic::{AssertUnwindSafe, catch_unwind};

use crossbeam_utils::CachePadded;

use crate::activity::{Activity, Clock, WorkerClock};
use crate::arena::{Arena, Pool};
use crate::context::enter;
use crate::counter::CounterInner;
use crate::deque::{BATCH, Deque};
use crate::harness::{flush_pending, run_job};
use crate::job::state::DETACHED;
use crate::job::{Header, JobKind, JobList, JobRef};
use crate::priority::Priority;
use crate::sleep::{BetweenFrames, PaceHints, Sleep, WORKER_IDLE, hover_round, idle_round};
use crate::sync::{
    AtomicBool, AtomicU64, AtomicUsize, Mutex, MutexGuard, Ordering, UnsafeCell, load_own, lock,
};
use crate::unwind::AbortOnUnwind;
use crate::waker::CellPool;

/// State shared by the scheduler, its worker threads, and every waker of a live frame.
///
/// # Invariants
/// 1. `workers[i].frame_state` (arena, wake cells, outputs list) is touched only by the thread
///    that is worker `i` (its background thread, or for `i == 0` the thread inside `run_frame`)
///    while it runs a job of the frame, and by the driving thread at frame end, after it has
///    seen every `completed` count that accounts for worker `i`'s work (so every access by
///    worker `i` in the frame happens before). Between frames no job exists, so no worker
///    touches it.
/// 2. `workers[i].own` (fairness ticks, counted-job batch, thieves' memory) is touched only by
///    worker `i`, at any time (idle workers look for work between frames too).
pub(crate) struct Shared {
    pub(crate) workers: Box<[CachePadded<Worker>]>,
    /// The free arena blocks every worker takes from when its block is full.
    pub(crate) pool: Pool,
    /// The trace recorder (a relaxed flag check on the hot paths when no trace is recording),
    /// on lines of its own so that the flag every poll and wake reads shares no line with
    /// state that is written during a frame.
    pub(crate) tracer: CachePadded<crate::trace::Tracer>,
    /// The frame number and clock workers read when they find work (`activity.rs`); written
    /// once per frame, on lines of its own.
    pub(crate) clock: CachePadded<Clock>,
    /// Per priority level (`Priority::index`): the shared FIFO any worker takes from (jobs
    /// spawned or woken by threads that are not workers, jobs that yield, deque overflow).
    pub(crate) injectors: [Mutex<JobList>; 3],
    /// How many jobs each injector holds, so that looking costs no lock when it is empty.
    injected: [CachePadded<AtomicUsize>; 3],
    /// Per level: `spawn_local` jobs, for the driving thread only.
    pub(crate) driver_queues: [Mutex<JobList>; 3],
    driver_pending: [AtomicUsize; 3],
    /// How many `High` (index 0) and `Low` (index 2) jobs are queued anywhere: an upper bound
    /// (counted before a job is queued, uncounted after it is taken), so that a worker learns
    /// from one load whether looking at those levels is worth it. `Normal` jobs are not
    /// counted (index 1 stays 0): the common path writes no shared word.
    queued: [CachePadded<AtomicUsize>; 3],
    pub(crate) foreign: Mutex<Foreign>,
    /// Set when `foreign` is used; frame end only locks it then.
    pub(crate) foreign_used: AtomicBool,
    pub(crate) foreign_spawned: AtomicU64,
    pub(crate) root: Header,
    /// Stall detection (`stall/`), when `stall_after` is set: the spawn, poll and await paths
    /// test this once and do nothing more when it is `None`. On lines of its own (never
    /// written after build), like `tracer`.
    pub(crate) stall: CachePadded<Option<Box<crate::stall::Stall>>>,
    pub(crate) sleep: Sleep,
    /// What idle workers read of the frames' rhythm (`sleep.rs`), on lines of its own.
    pub(crate) pace: CachePadded<PaceHints>,
    first_panic: Mutex<Option<Box<dyn Any + Send>>>,
    pub(crate) panics: AtomicUsize,
    pub(crate) shutdown: AtomicBool,
}

// SAFETY: see the invariants: `frame_state` and `own` are confined to one thread at a time,
// everything else is atomic or behind a mutex.
unsafe impl Sync for Shared {}
// SAFETY: as above; the arenas and pools hold no thread-bound data between frames.
unsafe impl Send for Shared {}

impl core::fmt::Debug for Shared {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("Shared")
            .field("workers", &self.workers.len())
            .finish_non_exhaustive()
    }
}

/// One worker's state.
pub(crate) struct Worker {
    /// One deque per priority level (`Priority::index`); `High` and `Low` ones are smaller
    /// (see [`LEVEL_CAPACITY`]).
    pub(crate) queues: [Deque; 3],
    pub(crate) counts: CachePadded<Counts>,
    pub(crate) frame_state: UnsafeCell<FrameState>,
    pub(crate) own: UnsafeCell<OwnState>,
}

/// Counters written only by their worker (plain load + store, no read-modify-write).
#[derive(Debug, Default)]
pub(crate) struct Counts {
    pub(crate) spawned: AtomicU64,
    pub(crate) completed: AtomicU64,
    pub(crate) steals: AtomicU64,
    /// `spawn_local` jobs (worker 0 only).
    pub(crate) local: AtomicU64,
    /// Polls this worker has started: a sign of progress for patient thieves.
    pub(crate) polls: AtomicU64,
    /// Times this worker parked and was woken (`FrameStats` per worker).
    pub(crate) parks: AtomicU64,
    /// Per victim: the jobs this worker stole from it (`steals`, split by victim), between
    /// [`STOLEN_PAD`] unused counters on each side, so that no other data shares their lines.
    /// Read with [`Counts::stolen_from`].
    stolen_from: Box<[AtomicU64]>,
    /// When this worker had work in its last frame (`activity.rs`).
    pub(crate) clock: WorkerClock,
}

/// Unused counters on each side of `Counts::stolen_from` (128 bytes: two cache lines).
const STOLEN_PAD: usize = 16;

impl Counts {
    /// Per victim, the jobs this worker stole from it.
    pub(crate) fn stolen_from(&self) -> &[AtomicU64] {
        &self.stolen_from[STOLEN_PAD..self.stolen_from.len() - STOLEN_PAD]
    }

    /// Adds 1 (see [`Counts::add`]).
    ///
    /// # Safety
    /// 1. The caller is the worker that owns `counter`.
    #[inline]
    pub(crate) unsafe fn bump(counter: &AtomicU64) {
        // SAFETY: (1), passed on.
        unsafe { Counts::add(counter, 1) };
    }

    /// Adds `n`: a plain load and a release store, as only the owning worker writes these
    /// counters.
    ///
    /// # Safety
    /// 1. The caller is the worker that owns `counter`.
    #[inline]
    pub(crate) unsafe fn add(counter: &AtomicU64, n: u64) {
        // SAFETY: (1): nobody else writes it.
        let v = unsafe { load_own(counter) };
        counter.store(v + n, Ordering::Release);
    }
}

/// A worker's frame state: what its jobs allocate and leave behind (see `Shared` invariant 1).
#[derive(Debug)]
pub(crate) struct FrameState {
    pub(crate) arena: Arena,
    pub(crate) cells: CellPool,
    /// Completed jobs whose output has a destructor and may never be taken (linked by `next`).
    pub(crate) outputs: *const Header,
}

/// What only its own worker ever touches, in frames and between them (see `Shared` invariant
/// 2): the fairness ticks and the thieves' memory of `find_work`, and the batch of finished
/// counted jobs. Kept apart from [`FrameState`] so that a worker looking for work between
/// frames never holds a reference overlapping the driver's frame-end work on `FrameState`.
#[derive(Debug)]
pub(crate) struct OwnState {
    /// Counts `find_work` calls, for the fairness checks.
    pub(crate) ticks: u32,
    /// Counted jobs this worker finished but has not yet taken off their counter (all on
    /// `pending_counter`) nor added to its `completed` count: see
    /// [`flush_pending`](crate::harness::flush_pending).
    pub(crate) pending: usize,
    pub(crate) pending_counter: *const CounterInner,
    /// Per victim: (top, bottom, polls) when this worker last saw it holding one job and left
    /// the job alone.
    pub(crate) last_seen: Box<[(usize, usize, u64)]>,
}

/// Every this many looks for work, a worker tries all of its sources in a rotating order before
/// its usual newest-first order (see [`Shared::find_work`]).
const FAIR_EVERY: u32 = 32;

/// Every this many looks, a worker tries the priority levels from `Low` up, so that a job
/// spinning on `yield_now` for a job of a lower level cannot livelock it.
const LEVELS_FAIR_EVERY: u32 = 1024;

/// Slots of a worker's `High` and `Low` deques (at most; `queue_capacity` if smaller): these
/// levels hold fewer jobs, and a burst beyond goes to the level's shared FIFO.
const LEVEL_CAPACITY: usize = 1024;

/// Arena and wake cells for threads that are not workers (scoped threads holding `&Frame`).
#[derive(Debug)]
pub(crate) struct Foreign {
    pub(crate) arena: Arena,
    pub(crate) cells: CellPool,
}

impl Worker {
    /// A worker bumping into `first` (its own arena block) with a deque of `queue_capacity`
    /// slots, among `workers` workers. `Err` names the memory that could not be had.
    pub(crate) fn try_new(
        first: Option<bumpalo::Bump>,
        queue_capacity: usize,
        workers: usize,
    ) -> Result<Worker, &'static str> {
        let level = || Deque::try_new(queue_capacity.min(LEVEL_CAPACITY)).ok_or("queue_capacity");
        let queues = [
            level()?,
            Deque::try_new(queue_capacity).ok_or("queue_capacity")?,
            level()?,
        ];
        let arena = Arena::new(first);
        Ok(Worker {
            queues,
            counts: CachePadded::new(Counts {
                stolen_from: (0..workers + 2 * STOLEN_PAD)
                    .map(|_| AtomicU64::new(0))
                    .collect(),
                ..Counts::default()
            }),
            frame_state: UnsafeCell::new(FrameState {
                arena,
                cells: CellPool::new(),
                outputs: ptr::null(),
            }),
            own: UnsafeCell::new(OwnState {
                ticks: 0,
                pending: 0,
                pending_counter: ptr::null(),
                last_seen: vec![(usize::MAX, 0, 0); workers].into_boxed_slice(),
            }),
        })
    }
}

impl Shared {
    /// The shared state of a scheduler whose workers are `workers`; `this` is where it will
    /// live (the root header points back at it).
    pub(crate) fn new(
        workers: Box<[CachePadded<Worker>]>,
        pool: Pool,
        tracer: crate::trace::Tracer,
        hover: std::time::Duration,
        this: *const Shared,
    ) -> Shared {
        let n = workers.len();
        let clock = Clock::new();
        let pace = CachePadded::new(PaceHints::new(clock.epoch(), hover));
        Shared {
            workers,
            pool,
            tracer: CachePadded::new(tracer),
            clock: CachePadded::new(clock),
            injectors: core::array::from_fn(|_| Mutex::new(JobList::new())),
            injected: core::array::from_fn(|_| CachePadded::new(AtomicUsize::new(0))),
            driver_queues: core::array::from_fn(|_| Mutex::new(JobList::new())),
            driver_pending: core::array::from_fn(|_| AtomicUsize::new(0)),
            queued: core::array::from_fn(|_| CachePadded::new(AtomicUsize::new(0))),
            foreign_used: AtomicBool::new(false),
            foreign: Mutex::new(Foreign {
                arena: Arena::new(None),
                cells: CellPool::new(),
            }),
            foreign_spawned: AtomicU64::new(0),
            root: Header::new(
                &crate::job::raw::ROOT_VTABLE,
                JobKind::Root,
                Priority::Normal,
                crate::job::header::Label::at(core::panic::Location::caller()),
                None,
                this,
                0,
                DETACHED,
            ),
            stall: CachePadded::new(None),
            sleep: Sleep::new(n),
            pace,
            first_panic: Mutex::new(None),
            panics: AtomicUsize::new(0),
            shutdown: AtomicBool::new(false),
        }
    }

    /// Keeps the first panic of the frame; later payloads are dropped.
    pub(crate) fn record_panic(&self, payload: Box<dyn Any + Send>) {
        let mut first = lock(&self.first_panic);
        self.panics.fetch_add(1, Ordering::Release);
        if first.is_none() {
            *first = Some(payload);
        } else {
            drop(first);
            if let Err(p) = catch_unwind(AssertUnwindSafe(|| drop(payload))) {
                core::mem::forget(p);
            }
        }
    }

    pub(crate) fn take_panic(&self) -> Option<Box<dyn Any + Send>> {
        // No lock in the common case: a recorded panic bumped `panics` first.
        if self.panics.load(Ordering::Acquire) == 0 {
            return None;
        }
        lock(&self.first_panic).take()
    }

    /// The arena and wake cells of non-worker threads, marked as used this frame.
    pub(crate) fn foreign(&self) -> MutexGuard<'_, Foreign> {
        self.foreign_used.store(true, Ordering::Relaxed);
        lock(&self.foreign)
    }

    /// A job of `level` is about to be queued (spawned, woken, or yielding): counted for the
    /// levels that are (see `queued`). Call it before the job becomes visible.
    #[inline]
    pub(crate) fn note_queued(&self, level: Priority, jobs: usize) {
        if level != Priority::Normal {
            self.queued[level.index()].fetch_add(jobs, Ordering::SeqCst);
        }
    }

    /// Whether jobs of `level` (`High` or `Low`) may be queued somewhere.
    #[inline]
    fn may_have(&self, level: Priority) -> bool {
        self.queued[level.index()].load(Ordering::SeqCst) != 0
    }

    /// Puts a job of `level` where any worker will find it, and wakes one if any is asleep.
    ///
    /// # Safety
    /// 1. `job` is a live job of this scheduler's running frame, which the caller has just
    ///    marked `SCHEDULED` (or spawned), and which is on no queue (header invariant 4).
    pub(crate) unsafe fn inject(&self, level: Priority, job: JobRef) {
        let l = level.index();
        // SAFETY: (1).
        unsafe { lock(&self.injectors[l]).push_back(job) };
        self.injected[l].fetch_add(1, Ordering::SeqCst);
        self.sleep.notify_one_strict(0);
    }

    fn pop_injected(&self, level: Priority) -> Option<JobRef> {
        let l = level.index();
        if self.injected[l].load(Ordering::Acquire) == 0 {
            return None;
        }
        let job = lock(&self.injectors[l]).pop_front()?;
        self.injected[l].fetch_sub(1, Ordering::AcqRel);
        Some(job)
    }

    /// Queues a `spawn_local` job of `level` for the driving thread and wakes it.
    ///
    /// # Safety
    /// 1. `job` is a live job of this scheduler's running frame, which the caller has just
    ///    marked `SCHEDULED` (or spawned), and which is on no queue (header invariant 4).
    pub(crate) unsafe fn push_driver(&self, level: Priority, job: JobRef) {
        let l = level.index();
        // SAFETY: (1).
        unsafe { lock(&self.driver_queues[l]).push_back(job) };
        self.driver_pending[l].fetch_add(1, Ordering::SeqCst);
        self.sleep.notify_driver();
    }

    #[inline]
    fn pop_driver(&self, level: Priority) -> Option<JobRef> {
        // The driver looks here on every look for work: the empty case is one load, inline.
        if self.driver_pending[level.index()].load(Ordering::Acquire) == 0 {
            return None;
        }
        self.pop_driver_locked(level)
    }

    #[inline(never)]
    fn pop_driver_locked(&self, level: Priority) -> Option<JobRef> {
        let l = level.index();
        let job = lock(&self.driver_queues[l]).pop_front()?;
        self.driver_pending[l].fetch_sub(1, Ordering::AcqRel);
        Some(job)
    }

    /// Pushes onto worker `index`'s own deque of `level`, where idle workers can steal it at
    /// once, and wakes a sleeping worker if there is one.
    ///
    /// # Safety
    /// 1. `job` is a live job of this scheduler's running frame, which the caller has just
    ///    marked `SCHEDULED` (or spawned), and which is on no queue (header invariant 4).
    /// 2. The caller is worker `index`.
    #[inline]
    pub(crate) unsafe fn push(&self, index: usize, level: Priority, job: JobRef) {
        // SAFETY: (1) and (2), passed on.
        unsafe { self.push_quiet(index, level, job) };
        self.wake_thief(index);
    }

    /// [`Shared::push`] without the wake (the caller wakes a thief once for a batch). A full
    /// deque sends the job to the level's shared FIFO.
    ///
    /// # Safety
    /// As for [`Shared::push`].
    #[inline]
    pub(crate) unsafe fn push_quiet(&self, index: usize, level: Priority, job: JobRef) {
        // SAFETY: (2): we are the deque's owner.
        if let Err(job) = unsafe { self.workers[index].queues[level.index()].push(job) } {
            // SAFETY: (1), passed on.
            unsafe { self.inject(level, job) };
        }
    }

    /// Jobs became stealable on worker `index`: wake a sleeping worker to take some.
    ///
    /// The strict protocol of `sleep.rs` (a `SeqCst` fence, then the look at the sleepers): the
    /// pushing job may block its thread or compute for long after this push, so a worker that
    /// is going to sleep must either see the job or be woken.
    #[inline]
    pub(crate) fn wake_thief(&self, index: usize) {
        self.sleep.notify_one_strict(index);
    }

    /// Finds the next job for worker `index`: a `High` job from anywhere, else a `Normal` one,
    /// else a `Low` one (see [`Priority`]). At each level: its own deque's newest job, (for the
    /// driver, its local jobs), the shared FIFO, then the other workers' deques; and every
    /// [`FAIR_EVERY`] looks a fair round of the `Normal` sources first (see the comment
    /// inside), every [`LEVELS_FAIR_EVERY`] looks the levels from `Low` up.
    ///
    /// Thieves are patient with a victim's last `Normal` job: they take it only if the
    /// victim's deque looked exactly the same at their previous look and its owner has started
    /// no poll since (it is busy with one job). When a worker spawns a burst, or two jobs wake
    /// each other on one worker, a hungry thief that took each job the moment it was pushed
    /// would fight the owner over the cache lines of the newest jobs, and drag a ping-pong
    /// across cores; leaving the last job to an owner that is making progress avoids both, and
    /// a job left sitting is still stolen. `High` and `Low` jobs are taken at once: a `High`
    /// job must start on the next free worker.
    ///
    /// The `Normal`-only path costs one extra load per look (of `queued`, a line written only
    /// when `High` or `Low` jobs come and go).
    ///
    /// # Safety
    /// 1. The caller is worker `index`.
    pub(crate) unsafe fn find_work(&self, index: usize) -> Option<JobRef> {
        let me = &self.workers[index];
        // SAFETY: (1): `own` is ours (Shared invariant 2).
        let tick = me.own.with_mut(|own| unsafe {
            (*own).ticks = (*own).ticks.wrapping_add(1);
            (*own).ticks
        });
        if tick % LEVELS_FAIR_EVERY == 0 {
            for level in [Priority::Low, Priority::Normal, Priority::High] {
                // SAFETY: (1).
                if let Some(job) = unsafe { self.find_at(index, level) } {
                    return Some(job);
                }
            }
            return None;
        }
        // SAFETY: (1).
        if let Some(job) = unsafe { self.find_urgent(index) } {
            return Some(job);
        }
        // Fairness, so that no queue starves another whatever yields and wakes around it. A
        // yielding job goes back to the shared FIFO and a woken one to the newest end of its
        // worker's deque, so some of a worker's sources may never run dry. Every
        // `FAIR_EVERY` looks, the worker therefore tries every source in a rotating order: the
        // shared FIFO (overflow, yields, foreign wakes), its own oldest job (below jobs that
        // keep waking each other at the newest end), and the other workers' deques (a job
        // there may be what a blocked worker waits for). Each source comes first once in
        // `3 * FAIR_EVERY` looks. And the driver takes its local jobs before its own deque
        // only every other look (a local job that yields re-queues at once).
        let normal = Priority::Normal;
        if tick % FAIR_EVERY == 0 {
            let phase = tick / FAIR_EVERY;
            for k in 0..3 {
                let job = match (phase + k) % 3 {
                    0 => self.pop_injected(normal),
                    1 => me.queues[normal.index()].steal(),
                    // One job, for liveness: stealing batches here, while our own deque has
                    // work, would move jobs across cores for nothing.
                    // SAFETY: (1).
                    _ => unsafe { self.steal_from_others(index, normal, 1) },
                };
                if job.is_some() {
                    return job;
                }
            }
        }
        // SAFETY: (1).
        if let Some(job) = unsafe { self.find_in_level(index, normal, tick) } {
            return Some(job);
        }
        if self.may_have(Priority::Low) {
            // SAFETY: (1).
            return unsafe { self.find_at(index, Priority::Low) };
        }
        None
    }

    /// A `High` job for worker `index`, if one may be queued anywhere (one load otherwise).
    ///
    /// # Safety
    /// 1. The caller is worker `index`.
    #[inline]
    pub(crate) unsafe fn find_urgent(&self, index: usize) -> Option<JobRef> {
        if !self.may_have(Priority::High) {
            return None;
        }
        // SAFETY: (1).
        unsafe { self.find_at(index, Priority::High) }
    }

    /// A job of `level` from any source, uncounted from `queued` when found.
    ///
    /// # Safety
    /// 1. The caller is worker `index`.
    unsafe fn find_at(&self, index: usize, level: Priority) -> Option<JobRef> {
        // SAFETY: (1); the tick only orders the driver's local jobs, irrelevant here.
        let job = unsafe { self.find_in_level(index, level, 0) };
        if job.is_some() && level != Priority::Normal {
            self.queued[level.index()].fetch_sub(1, Ordering::AcqRel);
        }
        job
    }

    /// The usual order within one level: (the driver's local jobs every other look), the
    /// worker's own newest job, (the local jobs otherwise), the shared FIFO, other workers.
    ///
    /// # Safety
    /// 1. The caller is worker `index`.
    #[inline]
    unsafe fn find_in_level(&self, index: usize, level: Priority, tick: u32) -> Option<JobRef> {
        let driver_first = index == 0 && tick % 2 == 0;
        if driver_first {
            if let Some(job) = self.pop_driver(level) {
                return Some(job);
            }
        }
        // SAFETY: (1): the deque's owner side is ours.
        if let Some(job) = unsafe { self.workers[index].queues[level.index()].pop() } {
            return Some(job);
        }
        if index == 0 && !driver_first {
            if let Some(job) = self.pop_driver(level) {
                return Some(job);
            }
        }
        if let Some(job) = self.pop_injected(level) {
            return Some(job);
        }
        // SAFETY: (1).
        unsafe { self.steal_from_others(index, level, BATCH) }
    }

    /// Steals up to `max` jobs of `level` from the other workers' deques, starting after
    /// `index`; runs the first and pushes the others onto our own deque of that level. See
    /// [`Shared::find_work`] on patience.
    ///
    /// # Safety
    /// 1. The caller is worker `index`.
    unsafe fn steal_from_others(
        &self,
        index: usize,
        level: Priority,
        max: usize,
    ) -> Option<JobRef> {
        let me = &self.workers[index];
        let l = level.index();
        let n = self.workers.len();
        for k in 1..n {
            let v = (index + k) % n;
            let victim = &self.workers[v].queues[l];
            let (top, bottom) = victim.snapshot();
            let len = bottom.wrapping_sub(top) as isize;
            if len <= 0 {
                continue;
            }
            let min_len = if level != Priority::Normal {
                1
            } else {
                // The deque's indices alone do not show progress (a job pushed and popped
                // again leaves them as they were); the owner's poll count does.
                let polls = self.workers[v].counts.polls.load(Ordering::Relaxed);
                // SAFETY: (1): `own` is ours.
                let min_len = me.own.with_mut(|own| unsafe {
                    let own = &mut *own;
                    if len > 1 {
                        Some(2)
                    } else if own.last_seen[v] == (top, bottom, polls) {
                        Some(1)
                    } else {
                        own.last_seen[v] = (top, bottom, polls);
                        None
                    }
                });
                let Some(min_len) = min_len else { continue };
                min_len
            };
            let mut stolen = [None; BATCH];
            let got = victim.steal_batch(&mut stolen, min_len, max);
            if got == 0 {
                continue;
            }
            // SAFETY: (1): our own counter.
            unsafe { Counts::add(&me.counts.steals, got as u64) };
            // SAFETY: (1): our own counter.
            unsafe { Counts::add(&me.counts.stolen_from()[v], got as u64) };
            if self.tracer.is_on() {
                // SAFETY: (1): we are worker `index`.
                unsafe { self.tracer.steal(index, v, got) };
            }
            crate::profile::stole(index, v, got);
            // Run the oldest; the others go onto our own deque, where thieves see them (no job
            // is ever held where an idle worker cannot find it).
            for &job in stolen[1..got].iter().rev().flatten() {
                // SAFETY: (1); the job was queued, so it is live and SCHEDULED, and it is on
                // no queue now: we took it off the victim's.
                unsafe { self.push_quiet(index, level, job) };
            }
            if got > 1 || !victim.is_empty() {
                // Work is left (here or there) that another sleeper could run.
                self.wake_thief(index);
            }
            return stolen[0];
        }
        None
    }

    /// Whether `find_work` could find something now (for the sleep protocol).
    pub(crate) fn has_work(&self, index: usize) -> bool {
        (0..3).any(|l| {
            (index == 0 && self.driver_pending[l].load(Ordering::SeqCst) != 0)
                || self.injected[l].load(Ordering::SeqCst) != 0
        }) || self
            .workers
            .iter()
            .any(|w| w.queues.iter().any(|q| !q.is_empty()))
    }

    /// Sums of (completed, spawned) over all workers, read in that order (see the module docs).
    ///
    /// Two passes, never one fused loop: a job spawned by worker `a` after `a`'s counts were
    /// read, and completed on worker `b` read later, would count as completed but not as
    /// spawned, and the two sums could then be equal while another job still runs. With every
    /// `completed` read first, a completion seen implies its spawn is seen (the spawn count is
    /// bumped before the job is queued).
    pub(crate) fn job_counts(&self) -> (u64, u64) {
        let completed = self
            .workers
            .iter()
            .map(|w| w.counts.completed.load(Ordering::Acquire))
            .sum();
        let spawned = self
            .workers
            .iter()
            .map(|w| w.counts.spawned.load(Ordering::Acquire))
            .sum::<u64>()
            + self.foreign_spawned.load(Ordering::Acquire);
        (completed, spawned)
    }

    /// Whether every job spawned so far has completed.
    pub(crate) fn all_jobs_done(&self) -> bool {
        let (completed, spawned) = self.job_counts();
        completed == spawned
    }
}

/// Jobs spawned (all, local, from foreign threads) and steals, since the scheduler started.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct Totals {
    pub(crate) spawned: u64,
    pub(crate) local: u64,
    pub(crate) foreign: u64,
    pub(crate) steals: u64,
}

/// The loop of a background worker thread.
pub(crate) fn main_loop(shared: &Shared, index: usize) {
    let _enter = enter(shared, index);
    // User code is caught where it runs; a panic out of this loop would lose the jobs in hand
    // and hang the frame, so abort instead.
    let guard = AbortOnUnwind("a worker thread's loop");
    let mut round = 0;
    let mut busy = false;
    let counts = &shared.workers[index].counts;
    let mut activity = Activity::new();
    loop {
        // SAFETY: this thread is worker `index` for its whole life.
        if let Some(job) = unsafe { shared.find_work(index) } {
            // SAFETY: the activity and clock of worker `index`, which this thread is.
            unsafe { activity.working(&shared.clock, &counts.clock) };
            // SAFETY: we are worker `index` and found the job in a queue.
            unsafe { run_job(shared, index, job) };
            round = 0;
            busy = true;
            continue;
        }
        if busy {
            // Publish batched completions, then: we may have finished the frame's last job, so
            // let the driver look.
            busy = false;
            // Before the flush: a frame ending with this flush sees the worker out of work.
            // SAFETY: as for `working` above.
            unsafe { activity.out_of_work(&shared.clock, &counts.clock) };
            // SAFETY: we are worker `index`.
            unsafe { flush_pending(shared, index) };
            shared.sleep.notify_driver();
        }
        // Inside a frame, or between frames that come back to back (see `PaceHints::active`):
        // spin a while, then park. Otherwise park at once, or hover in a pre-wake window.
        let in_frame = shared.pace.active();
        if in_frame && idle_round(&mut round, WORKER_IDLE) {
            continue;
        }
        if shared.shutdown.load(Ordering::Acquire) {
            core::mem::forget(guard);
            return;
        }
        // Between frames nothing can come before the next `run_frame`: park at once, unless
        // the next frame is expected now (see `sleep.rs` on pacing).
        let between = if in_frame {
            BetweenFrames::Park
        } else {
            shared.pace.between_frames()
        };
        if between == BetweenFrames::Hover {
            hover_round();
            continue;
        }
        if shared.tracer.is_on() {
            // SAFETY: this thread is worker `index`.
            unsafe { shared.tracer.park(index) };
        }
        crate::profile::parked(index);
        let has_work = || shared.shutdown.load(Ordering::SeqCst) || shared.has_work(index);
        let parked = match between {
            BetweenFrames::ParkUntil(deadline) => {
                shared.sleep.sleep_until(index, deadline, has_work)
            }
            _ => shared.sleep.sleep(index, has_work),
        };
        if parked {
            // SAFETY: our own counter.
            unsafe { Counts::bump(&counts.parks) };
        }
        if shared.tracer.is_on() {
            // SAFETY: as above.
            unsafe { shared.tracer.unpark(index) };
        }
        crate::profile::unparked(index);
        round = 0;
    }
}
