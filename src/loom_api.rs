//! Test-only handles on the crate's concurrency protocols, for the loom models in
//! `tests/loom_*.rs` (built only under `--cfg loom`). Each wrapper calls the very code the
//! scheduler runs; nothing here re-implements a protocol.
#![allow(
    missing_docs,
    missing_debug_implementations,
    clippy::new_without_default
)]

use core::future::{Future, IntoFuture};
use core::pin::Pin;
use core::ptr::{self, NonNull};
use core::task::{Context, Poll, Waker};
use std::sync::Arc;

use crate::counter::{Counter, CounterInner};
use crate::frame::JobHandle;
use crate::harness;
use crate::job::state::{AfterPoll, POLLED, RUNNING, SCHEDULED};
use crate::job::{Header, Job, JobKind, JobRef, PollOutcome};
use crate::sync::Ordering;
use crate::waker::CellPool;
use crate::worker::{self, Counts, Shared};

/// A scheduler's shared state with `workers` workers and no threads (the public `Scheduler`
/// with its threads and driving loop taken away).
pub struct ModelScheduler {
    shared: Arc<Shared>,
}

impl ModelScheduler {
    pub fn new(workers: usize) -> ModelScheduler {
        ModelScheduler {
            shared: Arc::new_cyclic(|this| {
                let states = (0..workers)
                    .map(|_| {
                        crossbeam_utils::CachePadded::new(
                            worker::Worker::try_new(None, 16, workers).expect("a small worker"),
                        )
                    })
                    .collect();
                let pool = crate::arena::Pool::try_new(4096, 1, workers).expect("a small pool");
                Shared::new(
                    states,
                    pool,
                    crate::trace::Tracer::new(workers, 0),
                    std::time::Duration::ZERO,
                    this.as_ptr(),
                )
            }),
        }
    }

    /// The root header's state bits.
    pub fn root_state(&self) -> u32 {
        self.shared.root.state.load(Ordering::SeqCst)
    }

    /// What the driver does when the next frame begins: the root header is reused.
    pub fn reuse_root(&self) {
        self.shared.root.state.store(0, Ordering::SeqCst);
    }

    /// Worker `index` goes to sleep unless `has_work` (checked after announcing) finds work.
    pub fn sleep(&self, index: usize, has_work: impl FnOnce() -> bool) {
        self.shared.sleep.sleep(index, has_work);
    }

    /// Worker `index` parks with a deadline (`Sleep::sleep_until`'s protocol) whose passing
    /// is `passed`, set by [`ModelScheduler::fire_timer`] on another thread.
    pub fn sleep_with_timer(
        &self,
        index: usize,
        has_work: impl FnOnce() -> bool,
        passed: &crate::sync::AtomicBool,
    ) {
        let sleep = &self.shared.sleep;
        sleep.sleep_with_deadline(
            index,
            has_work,
            || passed.load(Ordering::SeqCst),
            |token| sleep.wait_plain(index, token),
        );
    }

    /// The timer of worker `index`'s timed sleep goes off.
    pub fn fire_timer(&self, index: usize, passed: &crate::sync::AtomicBool) {
        self.shared.sleep.fire_timer(index, passed)
    }

    /// Wakes worker `index` if it is asleep (`Sleep::notify`).
    pub fn notify(&self, index: usize) -> bool {
        self.shared.sleep.notify(index)
    }

    /// Whether worker `index`'s parking slot is back at rest: not sleeping, no token left
    /// for a later sleep, no sleeper counted.
    pub fn at_rest(&self, index: usize) -> bool {
        self.shared.sleep.at_rest(index)
    }

    /// Work published for any worker (the injector's notify).
    pub fn notify_one_strict(&self) {
        self.shared.sleep.notify_one_strict(0)
    }

    /// Work published for the driving thread (root wake, local job, frame completion).
    pub fn notify_driver(&self) {
        self.shared.sleep.notify_driver()
    }

    /// Worker `index` counts a job it spawned (`Counts::bump`, as `spawn` does).
    /// Only the thread playing worker `index` may call it (the counts have one writer).
    ///
    /// # Safety
    /// Only the thread playing worker `index` calls it.
    pub unsafe fn count_spawned(&self, index: usize) {
        // SAFETY: the caller plays worker `index`, the counter's owner.
        unsafe { Counts::bump(&self.shared.workers[index].counts.spawned) };
    }

    /// Worker `index` counts a job it completed (`Counts::bump`, as `complete` does).
    /// Only the thread playing worker `index` may call it (the counts have one writer).
    ///
    /// # Safety
    /// Only the thread playing worker `index` calls it.
    pub unsafe fn count_completed(&self, index: usize) {
        // SAFETY: the caller plays worker `index`, the counter's owner.
        unsafe { Counts::bump(&self.shared.workers[index].counts.completed) };
    }

    /// The driver's frame-end test: every job spawned so far has completed.
    pub fn all_jobs_done(&self) -> bool {
        self.shared.all_jobs_done()
    }

    /// Worker `index` pushes job number `n` (`n > 0`, never dereferenced while the deque has
    /// room) onto its own deque through the real push path, which wakes a sleeping thief.
    ///
    /// # Safety
    /// The caller plays worker `index` (the deque's owner), and the deque has room (a full one
    /// would send the fake job to the injector, which dereferences it).
    pub unsafe fn push(&self, index: usize, n: usize) {
        // SAFETY: the caller is worker `index`; with room, the job is only stored, never read.
        unsafe { self.shared.push(index, crate::Priority::Normal, job(n)) }
    }

    /// Another worker steals the oldest job of worker `victim`'s deque.
    pub fn steal(&self, victim: usize) -> Option<usize> {
        self.shared.workers[victim].queues[crate::Priority::Normal.index()]
            .steal()
            .map(number)
    }

    /// Whether worker `index` could find work now (the check the sleep protocol makes).
    pub fn has_work(&self, index: usize) -> bool {
        self.shared.has_work(index)
    }
}

/// A bare job header, for the job state machine.
pub struct JobState {
    header: Header,
}

pub const STATE_SCHEDULED: u32 = SCHEDULED;
pub const STATE_RUNNING: u32 = RUNNING;
pub const STATE_POLLED: u32 = POLLED;

impl JobState {
    pub fn new(initial: u32) -> JobState {
        JobState {
            header: Header::new(
                &crate::job::raw::ROOT_VTABLE,
                JobKind::Any,
                crate::Priority::Normal,
                crate::job::header::Label::at(core::panic::Location::caller()),
                None,
                ptr::null(),
                initial,
                0,
            ),
        }
    }
    /// A wake: `true` if the waker must enqueue the job.
    pub fn wake(&self) -> bool {
        self.header.transition_to_scheduled()
    }
    /// A worker dequeues the job and starts polling it. `true` if it was polled before.
    pub fn start_poll(&self) -> bool {
        self.header.transition_to_running()
    }
    /// The poll returned `Pending`: `true` if the worker must enqueue the job again.
    pub fn end_poll_pending(&self) -> bool {
        self.header.transition_to_idle() == AfterPoll::Requeue
    }
    pub fn state(&self) -> u32 {
        self.header.state.load(Ordering::SeqCst)
    }
}

/// A real job (`Job<F>` with its vtable) outside any arena, with its real handle.
pub struct OutputJob<F: Future> {
    job: Box<Job<F>>,
}

// SAFETY: test wrapper; the models share it only between the completer and the handle, as the
// scheduler does.
unsafe impl<F: Future + Send> Sync for OutputJob<F> where F::Output: Send {}
// SAFETY: as above.
unsafe impl<F: Future + Send> Send for OutputJob<F> where F::Output: Send {}

impl<F: Future> OutputJob<F> {
    pub fn new(sched: &ModelScheduler, future: F) -> OutputJob<F> {
        let header = Header::new(
            &Job::<F>::VTABLE,
            JobKind::Any,
            crate::Priority::Normal,
            crate::job::header::Label::at(core::panic::Location::caller()),
            None,
            Arc::as_ptr(&sched.shared),
            SCHEDULED,
            0,
        );
        OutputJob {
            job: Box::new(Job::new(header, future)),
        }
    }

    fn job_ref(&self) -> JobRef {
        JobRef(NonNull::from(&self.job.header))
    }

    /// The job's handle, as `Frame::spawn` returns it.
    pub fn handle(&self) -> JobHandle<'_, F::Output> {
        JobHandle::new(self.job_ref())
    }

    /// What a worker does with the job, on worker 0: poll it once with `waker` and, when it
    /// finishes, run the completion bookkeeping. Returns whether it finished.
    pub fn run_on_worker0(&self, sched: &ModelScheduler, waker: &Waker) -> bool {
        let job = self.job_ref();
        // SAFETY: the job is live (boxed) for the model's duration.
        let h = unsafe { job.header() };
        let _ = h.transition_to_running();
        let mut cx = Context::from_waker(waker);
        // SAFETY: we hold RUNNING.
        match unsafe { (h.vtable.poll)(job.0, &mut cx) } {
            PollOutcome::Pending => {
                let _ = h.transition_to_idle();
                false
            }
            PollOutcome::Ready => {
                // SAFETY: the model plays worker 0 of `sched` and the job just finished.
                unsafe { harness::complete(&sched.shared, 0, job, false) };
                true
            }
            PollOutcome::Panicked(p) => std::panic::resume_unwind(p),
        }
    }

    /// Frame end: drops outputs nobody took.
    ///
    /// # Safety
    /// Every thread that touched the job has been joined.
    pub unsafe fn end_frame(&self, sched: &ModelScheduler) {
        // SAFETY: the caller joined every thread.
        unsafe { harness::sweep_outputs(&sched.shared) };
    }
}

/// A counter outside any arena, of a one-worker scheduler that runs no threads (a frame's
/// counters always point at their scheduler: `Counter::value` compares it with the calling
/// worker's, and a null one would match a thread that is no worker).
pub struct CounterModel {
    inner: CounterInner,
    _sched: ModelScheduler,
}

impl CounterModel {
    pub fn new() -> CounterModel {
        let sched = ModelScheduler::new(1);
        CounterModel {
            inner: CounterInner::new(Arc::as_ptr(&sched.shared)),
            _sched: sched,
        }
    }
    pub fn counter(&self) -> Counter<'_> {
        Counter { inner: &self.inner }
    }
}

/// Polls a future once with `waker`.
pub fn poll_once<F: Future + ?Sized>(fut: Pin<&mut F>, waker: &Waker) -> Poll<F::Output> {
    fut.poll(&mut Context::from_waker(waker))
}

/// Awaits the counter through its real future.
pub fn counter_wait(c: Counter<'_>) -> crate::CounterWait<'_> {
    c.into_future()
}

/// A wake-cell pool, whose cells point at a scheduler's root header.
pub struct CellPoolModel {
    pool: CellPool,
}

impl CellPoolModel {
    pub fn new() -> CellPoolModel {
        CellPoolModel {
            pool: CellPool::new(),
        }
    }

    /// What cloning the root's borrowed waker does: a cell with one owned waker.
    pub fn waker_for_root(&mut self, sched: &ModelScheduler) -> Waker {
        let cell = self.pool.acquire(&sched.shared.root);
        // SAFETY: the cell was just acquired; its reference goes to the waker.
        unsafe { crate::waker::owned_waker(cell) }
    }

    /// Frame end.
    ///
    /// # Safety
    /// No job of the frame will be polled again.
    pub unsafe fn orphan_all(&mut self) {
        // SAFETY: the caller's promise.
        unsafe { self.pool.orphan_all() }
    }
}

/// How many wake cells have been freed so far in this loom execution (each model starts at 0).
pub fn wake_cells_freed() -> usize {
    crate::waker::CELLS_FREED.load(std::sync::atomic::Ordering::Relaxed)
}

impl Drop for CellPoolModel {
    fn drop(&mut self) {
        self.pool.free_all();
    }
}

/// A job deque whose "jobs" are numbers (never dereferenced by the deque).
pub struct DequeModel {
    deque: crate::deque::Deque,
}

// SAFETY: the owner-only methods are `unsafe` and say so; the model honours that.
unsafe impl Sync for DequeModel {}
// SAFETY: as above.
unsafe impl Send for DequeModel {}

fn job(n: usize) -> JobRef {
    JobRef(NonNull::new(ptr::without_provenance_mut::<Header>(64 * n)).expect("n > 0"))
}

fn number(job: JobRef) -> usize {
    job.0.as_ptr().addr() / 64
}

impl DequeModel {
    pub fn new(capacity: usize) -> DequeModel {
        DequeModel {
            deque: crate::deque::Deque::try_new(capacity).expect("a small deque"),
        }
    }
    /// # Safety
    /// Owner only.
    pub unsafe fn push(&self, n: usize) -> bool {
        // SAFETY: the caller is the owner.
        unsafe { self.deque.push(job(n)).is_ok() }
    }
    /// # Safety
    /// Owner only.
    pub unsafe fn pop(&self) -> Option<usize> {
        // SAFETY: the caller is the owner.
        unsafe { self.deque.pop() }.map(number)
    }
    pub fn steal(&self) -> Option<usize> {
        self.deque.steal().map(number)
    }
    /// A batch steal (up to half, at most `BATCH`), from a deque holding at least `min_len`.
    pub fn steal_batch(&self, min_len: usize) -> Vec<usize> {
        let mut out = [None; crate::deque::BATCH];
        let n = self
            .deque
            .steal_batch(&mut out, min_len, crate::deque::BATCH);
        out.iter()
            .take(n)
            .map(|j| number(j.expect("stolen")))
            .collect()
    }
}
