//! Workers: their queues, their arenas, stealing, and the loop a background thread runs.
//!
//! Every thread that runs jobs is a worker with an index; the thread calling `run_frame` is
//! worker 0 for the length of the call. Each worker owns a fixed-capacity work-stealing deque
//! (`deque.rs`, allocated once), a bump arena, a pool of wake cells and two
//! counters. Spawning touches only the spawner's own state: no global atomic is written on the
//! spawn path. Idle workers steal from the others' queues, then park (`sleep.rs`).
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
use core::cell::Cell;
use core::ptr::{self, NonNull};
use core::task::Context;
use std::panic::{AssertUnwindSafe, catch_unwind};

use crossbeam_utils::CachePadded;

use crate::arena::{Arena, Pool};
use crate::counter::CounterInner;
use crate::deque::{BATCH, Deque};
use crate::job::state::{AWAITER, DETACHED, LOCKED, PANICKED, TAKEN};
use crate::job::{Header, JobKind, JobList, JobRef, PollOutcome};
use crate::sleep::Sleep;
use crate::sync::{
    AtomicBool, AtomicU64, AtomicUsize, Mutex, MutexGuard, Ordering, UnsafeCell, load_own, lock,
};
use crate::waker::{self, CellPool};

/// State shared by the scheduler, its worker threads, and every waker of a live frame.
///
/// # Invariants
/// 1. `workers[i].local` (arena, wake cells, outputs list) is touched only by the thread that is
///    worker `i` (its background thread, or for `i == 0` the thread inside `run_frame`) while it
///    runs a job of the frame, and by the driving thread at frame end, after it has seen every
///    `completed` count that accounts for worker `i`'s work (so every access by worker `i` in the
///    frame happens before). Between frames no job exists, so no worker touches it.
/// 2. `workers[i].search` is touched only by worker `i`, at any time (idle workers look for work
///    between frames too).
pub(crate) struct Shared {
    pub(crate) workers: Box<[CachePadded<Worker>]>,
    /// The free arena blocks every worker takes from when its block is full.
    pub(crate) pool: Pool,
    pub(crate) injector: Mutex<JobList>,
    injected: CachePadded<AtomicUsize>,
    pub(crate) local_queue: Mutex<JobList>,
    local_pending: AtomicUsize,
    pub(crate) foreign: Mutex<Foreign>,
    /// Set when `foreign` is used; frame end only locks it then.
    pub(crate) foreign_used: AtomicBool,
    pub(crate) foreign_spawned: AtomicU64,
    pub(crate) root: Header,
    pub(crate) sleep: Sleep,
    first_panic: Mutex<Option<Box<dyn Any + Send>>>,
    pub(crate) panics: AtomicUsize,
    pub(crate) shutdown: AtomicBool,
}

// SAFETY: see the invariants: `local` state is confined to one thread at a time, everything else
// is atomic or behind a mutex.
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
    pub(crate) queue: Deque,
    pub(crate) counts: CachePadded<Counts>,
    pub(crate) local: UnsafeCell<Local>,
    pub(crate) search: UnsafeCell<Search>,
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
}

impl Counts {
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
pub(crate) struct Local {
    pub(crate) arena: Arena,
    pub(crate) cells: CellPool,
    /// Completed jobs whose output has a destructor and may never be taken (linked by `next`).
    pub(crate) outputs: *const Header,
}

/// A worker's search state: how it finds work and hands out completions (see `Shared`
/// invariant 2). Kept apart from [`Local`] so that a worker looking for work between frames
/// never holds a reference overlapping the driver's frame-end work on `Local`.
#[derive(Debug)]
pub(crate) struct Search {
    /// Counts `find_work` calls, for the fairness checks.
    pub(crate) ticks: u32,
    /// Counted jobs this worker finished but has not yet taken off their counter (all on
    /// `pending_counter`) nor added to its `completed` count: see [`flush_pending`].
    pub(crate) pending: usize,
    pub(crate) pending_counter: *const CounterInner,
    /// Per victim: (top, bottom, polls) when this worker last saw it holding one job and left
    /// the job alone.
    pub(crate) last_seen: Box<[(usize, usize, u64)]>,
}

/// A worker takes finished counted jobs off their counter in one `fetch_sub` per this many.
const PENDING_MAX: usize = 64;

/// Every this many looks for work, a worker tries all of its sources in a rotating order before
/// its usual newest-first order (see [`Shared::find_work`]).
const FAIR_EVERY: u32 = 32;

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
        let queue = Deque::try_new(queue_capacity).ok_or("queue_capacity")?;
        let arena = Arena::new(first);
        Ok(Worker {
            queue,
            counts: CachePadded::new(Counts::default()),
            local: UnsafeCell::new(Local {
                arena,
                cells: CellPool::new(),
                outputs: ptr::null(),
            }),
            search: UnsafeCell::new(Search {
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
        this: *const Shared,
    ) -> Shared {
        let n = workers.len();
        Shared {
            workers,
            pool,
            injector: Mutex::new(JobList::new()),
            injected: CachePadded::new(AtomicUsize::new(0)),
            local_queue: Mutex::new(JobList::new()),
            local_pending: AtomicUsize::new(0),
            foreign_used: AtomicBool::new(false),
            foreign: Mutex::new(Foreign {
                arena: Arena::new(None),
                cells: CellPool::new(),
            }),
            foreign_spawned: AtomicU64::new(0),
            root: Header::new(
                &crate::job::raw::ROOT_VTABLE,
                JobKind::Root,
                None,
                this,
                0,
                DETACHED,
            ),
            sleep: Sleep::new(n),
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

    /// Puts a job where any worker will find it, and wakes one if any is asleep.
    ///
    /// # Safety
    /// 1. `job` is a live job of this scheduler's running frame, which the caller has just
    ///    marked `SCHEDULED` (or spawned), and which is on no queue (header invariant 4).
    pub(crate) unsafe fn inject(&self, job: JobRef) {
        // SAFETY: (1).
        unsafe { lock(&self.injector).push_back(job) };
        self.injected.fetch_add(1, Ordering::SeqCst);
        self.sleep.notify_one_strict(0);
    }

    fn pop_injected(&self) -> Option<JobRef> {
        if self.injected.load(Ordering::Acquire) == 0 {
            return None;
        }
        let job = lock(&self.injector).pop_front()?;
        self.injected.fetch_sub(1, Ordering::AcqRel);
        Some(job)
    }

    /// Queues a `spawn_local` job for the driving thread and wakes it.
    ///
    /// # Safety
    /// 1. `job` is a live job of this scheduler's running frame, which the caller has just
    ///    marked `SCHEDULED` (or spawned), and which is on no queue (header invariant 4).
    pub(crate) unsafe fn push_local(&self, job: JobRef) {
        // SAFETY: (1).
        unsafe { lock(&self.local_queue).push_back(job) };
        self.local_pending.fetch_add(1, Ordering::SeqCst);
        self.sleep.notify_driver();
    }

    fn pop_local(&self) -> Option<JobRef> {
        if self.local_pending.load(Ordering::Acquire) == 0 {
            return None;
        }
        let job = lock(&self.local_queue).pop_front()?;
        self.local_pending.fetch_sub(1, Ordering::AcqRel);
        Some(job)
    }

    /// Pushes onto worker `index`'s own queue, where idle workers can steal it at once, and
    /// wakes a sleeping worker if there is one.
    ///
    /// # Safety
    /// 1. `job` is a live job of this scheduler's running frame, which the caller has just
    ///    marked `SCHEDULED` (or spawned), and which is on no queue (header invariant 4).
    /// 2. The caller is worker `index`.
    #[inline]
    pub(crate) unsafe fn push(&self, index: usize, job: JobRef) {
        // SAFETY: (2): we are the deque's owner.
        match unsafe { self.workers[index].queue.push(job) } {
            Ok(()) => self.wake_thief(index),
            // SAFETY: (1), passed on.
            Err(job) => unsafe { self.inject(job) },
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

    /// Finds the next job for worker `index`: its own deque's newest job, (for the driver, its
    /// local jobs), the shared FIFO, then the other workers' deques; and every [`FAIR_EVERY`]
    /// looks a fair round first (see the comment inside).
    ///
    /// Thieves are patient with a victim's last job: they take it only if the victim's deque
    /// looked exactly the same at their previous look and its owner has started no poll since
    /// (it is busy with one job). When a
    /// worker spawns a burst, or two jobs wake each other on one worker, a hungry thief that
    /// took each job the moment it was pushed would fight the owner over the cache lines of
    /// the newest jobs, and drag a ping-pong across cores; leaving the last job to an owner
    /// that is making progress avoids both, and a job left sitting is still stolen.
    ///
    /// # Safety
    /// 1. The caller is worker `index`.
    pub(crate) unsafe fn find_work(&self, index: usize) -> Option<JobRef> {
        let me = &self.workers[index];
        // SAFETY: (1): `search` is ours (Shared invariant 2).
        let tick = me.search.with_mut(|l| unsafe {
            (*l).ticks = (*l).ticks.wrapping_add(1);
            (*l).ticks
        });
        // Fairness, so that no queue starves another whatever yields and wakes around it. A
        // yielding job goes back to the shared FIFO and a woken one to the newest end of its
        // worker's deque, so some of a worker's sources may never run dry. Every
        // `FAIR_EVERY` looks, the worker therefore tries every source in a rotating order: the
        // shared FIFO (overflow, yields, foreign wakes), its own oldest job (below jobs that
        // keep waking each other at the newest end), and the other workers' deques (a job
        // there may be what a blocked worker waits for). Each source comes first once in
        // `3 * FAIR_EVERY` looks. And the driver takes its local jobs before its own deque
        // only every other look (a local job that yields re-queues at once).
        if tick % FAIR_EVERY == 0 {
            let phase = tick / FAIR_EVERY;
            for k in 0..3 {
                let job = match (phase + k) % 3 {
                    0 => self.pop_injected(),
                    1 => me.queue.steal(),
                    // One job, for liveness: stealing batches here, while our own deque has
                    // work, would move jobs across cores for nothing.
                    // SAFETY: (1).
                    _ => unsafe { self.steal_from_others(index, 1) },
                };
                if job.is_some() {
                    return job;
                }
            }
        }
        let local_first = index == 0 && tick % 2 == 0;
        if local_first {
            if let Some(job) = self.pop_local() {
                return Some(job);
            }
        }
        // SAFETY: (1): the deque's owner side is ours.
        if let Some(job) = unsafe { me.queue.pop() } {
            return Some(job);
        }
        if index == 0 && !local_first {
            if let Some(job) = self.pop_local() {
                return Some(job);
            }
        }
        if let Some(job) = self.pop_injected() {
            return Some(job);
        }
        // SAFETY: (1).
        unsafe { self.steal_from_others(index, BATCH) }
    }

    /// Steals up to `max` jobs from the other workers' deques, starting after `index`; runs the
    /// first and pushes the others onto our own deque. See [`Shared::find_work`] on patience.
    ///
    /// # Safety
    /// 1. The caller is worker `index`.
    unsafe fn steal_from_others(&self, index: usize, max: usize) -> Option<JobRef> {
        let me = &self.workers[index];
        let n = self.workers.len();
        for k in 1..n {
            let v = (index + k) % n;
            let victim = &self.workers[v].queue;
            let (top, bottom) = victim.snapshot();
            let len = bottom.wrapping_sub(top) as isize;
            if len <= 0 {
                continue;
            }
            // The deque's indices alone do not show progress (a job pushed and popped again
            // leaves them as they were); the owner's poll count does.
            let polls = self.workers[v].counts.polls.load(Ordering::Relaxed);
            // SAFETY: (1): `search` is ours.
            let min_len = me.search.with_mut(|l| unsafe {
                let l = &mut *l;
                if len > 1 {
                    Some(2)
                } else if l.last_seen[v] == (top, bottom, polls) {
                    Some(1)
                } else {
                    l.last_seen[v] = (top, bottom, polls);
                    None
                }
            });
            let Some(min_len) = min_len else { continue };
            let mut stolen = [None; BATCH];
            let got = victim.steal_batch(&mut stolen, min_len, max);
            if got == 0 {
                continue;
            }
            // SAFETY: (1): our own counter.
            unsafe { Counts::add(&me.counts.steals, got as u64) };
            // Run the oldest; the others go onto our own deque, where thieves see them (no job
            // is ever held where an idle worker cannot find it).
            for &job in stolen[1..got].iter().rev().flatten() {
                // SAFETY: (1): the owner side is ours.
                if let Err(job) = unsafe { me.queue.push(job) } {
                    // SAFETY: the job was queued, so it is live and SCHEDULED, and it is on
                    // no queue now: we took it off the victim's.
                    unsafe { self.inject(job) };
                }
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
        (index == 0 && self.local_pending.load(Ordering::SeqCst) != 0)
            || self.injected.load(Ordering::SeqCst) != 0
            || self.workers.iter().any(|w| !w.queue.is_empty())
    }

    /// Sums of (completed, spawned) over all workers, read in that order (see the module docs).
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

    /// The running totals behind `FrameStats`: a frame's figures are the difference between
    /// the totals after it and before it.
    pub(crate) fn totals(&self) -> Totals {
        let mut t = Totals {
            spawned: self.foreign_spawned.load(Ordering::Relaxed),
            local: self.workers[0].counts.local.load(Ordering::Relaxed),
            foreign: self.foreign_spawned.load(Ordering::Relaxed),
            steals: 0,
        };
        for w in self.workers.iter() {
            t.spawned += w.counts.spawned.load(Ordering::Relaxed);
            t.steals += w.counts.steals.load(Ordering::Relaxed);
        }
        t
    }

    /// Whether every job spawned so far has completed.
    pub(crate) fn all_jobs_done(&self) -> bool {
        let (completed, spawned) = self.job_counts();
        completed == spawned
    }
}

/// Jobs spawned (all, local, from foreign threads) and steals, since the scheduler started.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Totals {
    pub(crate) spawned: u64,
    pub(crate) local: u64,
    pub(crate) foreign: u64,
    pub(crate) steals: u64,
}

/// Which worker of which scheduler this thread is, if any.
#[derive(Clone, Copy)]
pub(crate) struct Current {
    pub(crate) shared: *const Shared,
    pub(crate) index: usize,
    /// Whether the code running now may call `spawn_local`: the root future or a local job.
    pub(crate) local_ok: bool,
}

impl Current {
    const NONE: Current = Current {
        shared: ptr::null(),
        index: 0,
        local_ok: false,
    };
}

thread_local! {
    static CURRENT: Cell<Current> = const { Cell::new(Current::NONE) };
}

/// The worker this thread is, if any.
#[inline]
pub(crate) fn current() -> Current {
    CURRENT.with(Cell::get)
}

/// Makes this thread a worker until the guard is dropped.
pub(crate) fn enter(shared: &Shared, index: usize) -> EnterGuard {
    let prev = CURRENT.with(|c| {
        c.replace(Current {
            shared,
            index,
            local_ok: false,
        })
    });
    EnterGuard(prev)
}

/// Restores the thread's previous identity on drop (also on unwind).
pub(crate) struct EnterGuard(Current);

impl Drop for EnterGuard {
    fn drop(&mut self) {
        CURRENT.with(|c| c.set(self.0));
    }
}

fn set_local_ok(ok: bool) -> bool {
    CURRENT.with(|c| {
        let mut cur = c.get();
        let prev = cur.local_ok;
        cur.local_ok = ok;
        c.set(cur);
        prev
    })
}

/// Runs `f` with `spawn_local` allowed (or not), restoring the previous setting after.
pub(crate) fn with_local_ok<R>(ok: bool, f: impl FnOnce() -> R) -> R {
    struct Restore(bool);
    impl Drop for Restore {
        fn drop(&mut self) {
            set_local_ok(self.0);
        }
    }
    let _restore = Restore(set_local_ok(ok));
    f()
}

/// Runs `f` with the wake-cell pool this thread should use for a job of `header`'s scheduler.
pub(crate) fn with_cell_pool<R>(header: &Header, f: impl FnOnce(&mut CellPool) -> R) -> R {
    let cur = current();
    // SAFETY: header invariant 1: `shared` is live while the job is.
    let shared = unsafe { &*header.shared };
    if ptr::eq(cur.shared, shared) {
        // SAFETY: we are worker `cur.index` (Shared invariant 1).
        shared.workers[cur.index]
            .local
            .with_mut(|l| f(unsafe { &mut (*l).cells }))
    } else {
        f(&mut shared.foreign().cells)
    }
}

/// Wakes a job: schedules it if it was idle, and puts it where it can run.
///
/// # Safety
/// 1. The header is live (its frame has not ended).
pub(crate) unsafe fn wake_job(job: NonNull<Header>) {
    // SAFETY: (1).
    let h = unsafe { job.as_ref() };
    if h.transition_to_scheduled() {
        // SAFETY: header invariant 1.
        unsafe { enqueue(&*h.shared, JobRef(job)) };
    }
}

/// Puts a job that was just marked `SCHEDULED` into the queue its kind calls for.
///
/// # Safety
/// 1. `job` is a live job of `shared`'s running frame (or its root), which the caller has just
///    marked `SCHEDULED` and which is on no queue (header invariant 4).
pub(crate) unsafe fn enqueue(shared: &Shared, job: JobRef) {
    // SAFETY: (1) for every call below; `push` also needs us to be worker `cur.index`, which
    // `current()` says we are.
    unsafe {
        match job.header().kind {
            JobKind::Root => shared.sleep.notify_driver(),
            JobKind::Local => shared.push_local(job),
            JobKind::Any => {
                let cur = current();
                if ptr::eq(cur.shared, shared) {
                    shared.push(cur.index, job);
                } else {
                    shared.inject(job);
                }
            }
        }
    }
}

/// Polls a job once on worker `index` and does what its outcome calls for.
///
/// # Safety
/// 1. The caller is worker `index` of `shared`, and got `job` from one of its queues.
pub(crate) unsafe fn run_job(shared: &Shared, index: usize, job: JobRef) {
    // SAFETY: a queued job is live (header invariant 1).
    let h = unsafe { job.header() };
    // SAFETY: (1): our own counter.
    unsafe { Counts::bump(&shared.workers[index].counts.polls) };
    let polled_before = h.transition_to_running();
    // Finished counted jobs held back in this worker's batch are taken off their counter
    // before any poll that could be waiting for them: a job of another counter, or a job
    // polled before (it yielded or was woken, and may be looking at this very counter). Only a
    // job of the same counter starting for the first time keeps the batch growing, and not
    // while some `until(n)` waits on that counter for a target above zero (the batch could be
    // what it waits for, and this job could keep the worker busy for long).
    let counter = h.counter.map_or(ptr::null(), |c| c.as_ptr().cast_const());
    // SAFETY: (1): `search` is ours. A pending counter lives in the frame arena, and the frame
    // cannot end before the batch is flushed (see `flush_pending`).
    let flush = shared.workers[index].search.with(|l| unsafe {
        (*l).pending != 0
            && (polled_before
                || !ptr::eq((*l).pending_counter, counter)
                || (*(*l).pending_counter).has_targets())
    });
    if flush {
        // SAFETY: (1).
        unsafe { flush_pending(shared, index) };
    }
    // SAFETY: the header is live during the poll.
    let waker = unsafe { waker::borrowed(job.0) };
    let mut cx = Context::from_waker(&waker);
    // `spawn_local` is allowed only in local jobs; `local_ok` is false outside the polls of the
    // root and of local jobs, so ordinary jobs need no thread-local write.
    let outcome = if h.kind == JobKind::Local {
        // SAFETY: we hold RUNNING; local jobs only come from the local queue, popped by worker 0.
        with_local_ok(true, || unsafe { (h.vtable.poll)(job.0, &mut cx) })
    } else {
        // SAFETY: we hold RUNNING.
        unsafe { (h.vtable.poll)(job.0, &mut cx) }
    };
    match outcome {
        PollOutcome::Pending => {
            if h.transition_to_idle() == crate::job::state::AfterPoll::Requeue {
                // Woken during its own poll (`yield_now`, typically). Our deque is LIFO: pushed
                // there, the job would be popped straight back and a job yielding while it
                // waits for another one on this worker would spin forever. It goes to the back
                // of the shared FIFO instead, behind everything already queued.
                // SAFETY: the job is live and still SCHEDULED by the wake that came during
                // the poll; that waker left the enqueueing to us.
                unsafe {
                    if h.kind == JobKind::Any {
                        shared.inject(job);
                    } else {
                        enqueue(shared, job);
                    }
                }
            }
        }
        // SAFETY: (1) and the job just finished on this worker.
        PollOutcome::Ready => unsafe { complete(shared, index, job, false) },
        PollOutcome::Panicked(payload) => {
            shared.record_panic(payload);
            // SAFETY: as above.
            unsafe { complete(shared, index, job, true) }
        }
    }
}

/// The bookkeeping after a job's last poll. The `completed` count is the very last touch.
///
/// # Safety
/// 1. The caller is worker `index` and has just seen the job's future finish or panic.
pub(crate) unsafe fn complete(shared: &Shared, index: usize, job: JobRef, panicked: bool) {
    // SAFETY: the job is live until our `completed` store below.
    let h = unsafe { job.header() };
    h.transition_to_complete();
    let prev = h.publish_output(panicked);
    if !panicked && h.vtable.output_needs_drop {
        if prev & DETACHED != 0 {
            // Nobody will take it: drop it now, on this thread. No TAKEN bit: a detached job
            // is on no outputs list and has no handle left to look.
            // SAFETY: DETACHED was set before DONE, so the output is ours alone.
            let dropped = catch_unwind(AssertUnwindSafe(|| unsafe {
                (h.vtable.drop_output)(job.0)
            }));
            if let Err(payload) = dropped {
                shared.record_panic(payload);
            }
        } else {
            // The handle may never take it (it could be forgotten): remember it for the sweep.
            shared.workers[index].local.with_mut(|l| {
                // SAFETY: we are worker `index` (Shared invariant 1); the job is complete, so
                // `next` is free for the outputs list (header table).
                unsafe {
                    h.next.with_mut(|n| *n = (*l).outputs);
                    (*l).outputs = h;
                }
            });
        }
    }
    // Wakers are user code and may panic: catch it, so the bookkeeping below always happens
    // (a lost `completed` count would hang the frame; an escaped panic would kill a worker).
    if prev & (AWAITER | LOCKED) != 0 {
        if let Some(waker) = h.take_awaiter() {
            if let Err(payload) = catch_unwind(AssertUnwindSafe(|| waker.wake())) {
                shared.record_panic(payload);
            }
        }
    }
    match h.counter {
        Some(counter) => {
            // Batched: the counter and this worker's `completed` count learn of it at the next
            // flush (see `flush_pending`).
            // SAFETY: (1): `search` is ours; `run_job` flushed any batch of another counter.
            let full = shared.workers[index].search.with_mut(|l| unsafe {
                let l = &mut *l;
                debug_assert!(l.pending == 0 || ptr::eq(l.pending_counter, counter.as_ptr()));
                l.pending_counter = counter.as_ptr();
                l.pending += 1;
                l.pending >= PENDING_MAX
            });
            if full {
                // SAFETY: (1).
                unsafe { flush_pending(shared, index) };
            }
        }
        // SAFETY: (1): our own counter.
        None => unsafe { Counts::bump(&shared.workers[index].counts.completed) },
    }
}

/// Takes worker `index`'s finished counted jobs off their counter (one `fetch_sub`, waking its
/// awaiters if it reaches zero), then adds them to the worker's `completed` count.
///
/// Batching saves a read-modify-write on a cache line every worker shares per counted job.
/// The order matters: until `completed` says so, the frame cannot end, so the counter in the
/// arena is still there when we decrement it. A worker flushes before it runs a job of another
/// counter (or none), before the driver polls the root, when it finds no work, and every
/// [`PENDING_MAX`] jobs: no awaiter waits on a batch while its worker does unrelated work.
///
/// # Safety
/// 1. The caller is worker `index`.
pub(crate) unsafe fn flush_pending(shared: &Shared, index: usize) {
    let w = &shared.workers[index];
    // SAFETY: (1): `search` is ours.
    let (n, counter) = w.search.with_mut(|l| unsafe {
        let l = &mut *l;
        let taken = (l.pending, l.pending_counter);
        l.pending = 0;
        l.pending_counter = ptr::null();
        taken
    });
    if n == 0 {
        return;
    }
    // SAFETY: the counter lives in the frame arena, and the frame cannot end before the
    // `completed` store below.
    let counter = unsafe { &*counter };
    match catch_unwind(AssertUnwindSafe(|| counter.decrement_by(n))) {
        Ok(Ok(())) => {}
        Ok(Err(msg)) => shared.record_panic(Box::new(msg)),
        Err(payload) => shared.record_panic(payload),
    }
    // SAFETY: (1): our own counter.
    unsafe { Counts::add(&w.counts.completed, n as u64) };
}

/// If this thread is a worker holding finished jobs of `counter` in its batch, takes them off
/// the counter now (for [`Counter::value`](crate::Counter::value)).
pub(crate) fn flush_pending_for(counter: &CounterInner) {
    let cur = current();
    if cur.shared.is_null() || !ptr::eq(cur.shared, counter.shared) {
        return;
    }
    // SAFETY: `cur.shared` is the scheduler this thread is a worker of (the thread-local is set
    // only while it is, and the counter's frame is running, so the scheduler is alive).
    let shared = unsafe { &*cur.shared };
    // SAFETY: we are worker `cur.index`: `search` is ours (Shared invariant 2), and nothing
    // else of ours holds a reference into it while a job (our caller) is polled.
    let mine = shared.workers[cur.index]
        .search
        .with(|l| unsafe { (*l).pending != 0 && ptr::eq((*l).pending_counter, counter) });
    if mine {
        // SAFETY: as above, we are worker `cur.index`.
        unsafe { flush_pending(shared, cur.index) };
    }
}

/// Frame end, on the driving thread: drops outputs nobody took, from every worker's list.
///
/// # Safety
/// 1. Every job of the frame is complete and accounted for (see the module docs).
pub(crate) unsafe fn sweep_outputs(shared: &Shared) {
    // Take every list, spliced into one chain, before running any destructor: an output's
    // destructor may spawn a job (odd, but allowed), which another worker could complete and
    // push onto its list while we walk it. The driver sees the new job and sweeps again later.
    let mut chain: *const Header = ptr::null();
    for w in shared.workers.iter() {
        // SAFETY: (1) and Shared invariant 1: the workers are done with their local state.
        let list = w
            .local
            .with_mut(|l| unsafe { core::mem::replace(&mut (*l).outputs, ptr::null()) });
        let Some(head) = NonNull::new(list as *mut Header) else {
            continue;
        };
        // SAFETY: (1): the list's jobs are complete and live; we link its tail to the chain.
        unsafe {
            let mut tail = head;
            while let Some(next) = NonNull::new(tail.as_ref().next.with(|n| *n) as *mut Header) {
                tail = next;
            }
            tail.as_ref().next.with_mut(|n| *n = chain);
        }
        chain = list;
    }
    // SAFETY: the chain holds complete jobs of this frame, live until the arena reset, and is
    // ours alone.
    unsafe { drop_untaken(shared, chain) };
}

/// Drops every output on an outputs list that nobody took.
///
/// # Safety
/// 1. Every job on the list is complete and live, and the list is ours alone.
unsafe fn drop_untaken(shared: &Shared, mut cur: *const Header) {
    while let Some(h) = NonNull::new(cur as *mut Header) {
        // SAFETY: (1).
        let header = unsafe { h.as_ref() };
        // SAFETY: (1): the completing workers are done with `next`.
        cur = header.next.with(|n| unsafe { *n });
        let s = header.handle.fetch_or(TAKEN, Ordering::AcqRel);
        if s & (TAKEN | PANICKED) == 0 {
            // SAFETY: not taken by anyone, and TAKEN now keeps everyone else away.
            let dropped = catch_unwind(AssertUnwindSafe(|| unsafe {
                (header.vtable.drop_output)(h)
            }));
            if let Err(p) = dropped {
                shared.record_panic(p);
            }
        }
    }
}

/// How long an idle thread keeps looking for work before it parks.
#[derive(Debug, Clone, Copy)]
pub(crate) struct IdlePolicy {
    /// Rounds of looking; the last 16 give the time slice away instead of spinning.
    rounds: u32,
    /// How many times the spin per round may double (every 16 rounds).
    max_doublings: u32,
}

/// Busy-wait hints per round, before any doubling.
const SPINS_PER_ROUND: u32 = 32;

/// The driving thread does not back off: it must notice the root's wake and the frame's end at
/// once.
pub(crate) const DRIVER_IDLE: IdlePolicy = IdlePolicy {
    rounds: 256,
    max_doublings: 0,
};

/// Background workers look less and less often as they keep finding nothing (the spin doubles
/// every 16 rounds, up to 16 times): each look reads the lines other workers' deques write on
/// every push and pop, so a worker that looks as often as it can slows down the ones that have
/// work.
const WORKER_IDLE: IdlePolicy = IdlePolicy {
    rounds: 96,
    max_doublings: 4,
};

/// Waits a little between two looks for work; returns `false` once it is time to park.
pub(crate) fn idle_round(round: &mut u32, policy: IdlePolicy) -> bool {
    *round += 1;
    if *round > policy.rounds {
        return false;
    }
    if *round > policy.rounds - 16 {
        crate::sync::yield_thread();
    } else {
        for _ in 0..SPINS_PER_ROUND << (*round / 16).min(policy.max_doublings) {
            crate::sync::spin_loop();
        }
    }
    true
}

/// The loop of a background worker thread.
pub(crate) fn main_loop(shared: &Shared, index: usize) {
    let _enter = enter(shared, index);
    // User code is caught where it runs; a panic out of this loop would lose the jobs in hand
    // and hang the frame, so abort instead.
    let guard = crate::scheduler::AbortOnUnwind("a worker thread's loop");
    let mut round = 0;
    let mut busy = false;
    loop {
        // SAFETY: this thread is worker `index` for its whole life.
        if let Some(job) = unsafe { shared.find_work(index) } {
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
            // SAFETY: we are worker `index`.
            unsafe { flush_pending(shared, index) };
            shared.sleep.notify_driver();
        }
        if idle_round(&mut round, WORKER_IDLE) {
            continue;
        }
        if shared.shutdown.load(Ordering::Acquire) {
            core::mem::forget(guard);
            return;
        }
        shared.sleep.sleep(index, || {
            shared.shutdown.load(Ordering::SeqCst) || shared.has_work(index)
        });
        round = 0;
    }
}
