//! The frame: what the root future is handed, and how jobs are spawned into it.
//!
//! [`Frame`] is to a frame what `std::thread::Scope` is to a scope: `run_frame` does not return
//! until every job spawned through it has finished, so jobs may borrow anything that outlives the
//! `run_frame` call. A spawned job is written into the bump arena of the worker thread that
//! spawns it, and its [`JobHandle`] is a pointer to it.

use core::alloc::Layout;
use core::future::Future;
use core::marker::PhantomData;
use core::mem::MaybeUninit;
use core::panic::Location;
use core::pin::Pin;
use core::ptr::{self, NonNull};
use core::task::{Context, Poll};

use crate::context::{self, Current};
use crate::counter::{Counter, CounterInner, counter_ptr};
use crate::job::header::{Label, Named};
use crate::job::state::{DETACHED, DONE, PANICKED, SCHEDULED, TAKEN};
use crate::job::{Header, Job, JobKind, JobRef};
use crate::priority::Priority;
use crate::profile::{self, Traced};
use crate::stall;
use crate::sync::Ordering;
use crate::worker::{Counts, Shared};

/// A running frame, handed by reference to the root future of
/// [`Scheduler::run_frame`](crate::Scheduler::run_frame).
///
/// `'frame` is the frame itself: jobs, handles and counters carry it and cannot leave the frame.
/// `'env` is everything the frame may borrow from outside, as with `std::thread::scope`.
///
/// `Frame` is `Sync`: a scoped thread started inside a job may spawn through it too (on a slower
/// path than a worker thread).
pub struct Frame<'frame, 'env: 'frame> {
    pub(crate) shared: &'frame Shared,
    pub(crate) index: u64,
    scope: PhantomData<&'frame mut &'frame ()>,
    env: PhantomData<&'env mut &'env ()>,
}

impl core::fmt::Debug for Frame<'_, '_> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("Frame")
            .field("index", &self.index)
            .finish_non_exhaustive()
    }
}

impl<'frame, 'env> Frame<'frame, 'env> {
    pub(crate) fn new(shared: &'frame Shared, index: u64) -> Self {
        Frame {
            shared,
            index,
            scope: PhantomData,
            env: PhantomData,
        }
    }

    /// The frame's number: 0 for the first frame a scheduler runs, then 1, 2, …
    pub fn index(&self) -> u64 {
        self.index
    }

    /// How many threads run this frame's jobs, the driving thread included.
    pub fn workers(&self) -> usize {
        self.shared.workers.len()
    }

    /// Spawns a job onto any worker and returns a handle to await its output.
    ///
    /// The job is written into the arena of the calling worker and queued there; idle workers
    /// steal it. Dropping the handle detaches the job: it still runs to completion within the
    /// frame and its output is dropped.
    ///
    /// ```
    /// # let mut scheduler = frame_scheduler::Scheduler::builder().workers(2).build().unwrap();
    /// let data = vec![1, 2, 3, 4];
    /// let sum = scheduler.run_frame(async |frame| {
    ///     let (a, b) = data.split_at(2);
    ///     let left = frame.spawn(async move { a.iter().sum::<i32>() });
    ///     let right = frame.spawn(async move { b.iter().sum::<i32>() });
    ///     left.await + right.await
    /// });
    /// assert_eq!(sum, 10);
    /// ```
    #[track_caller]
    pub fn spawn<F>(&'frame self, future: F) -> JobHandle<'frame, F::Output>
    where
        F: Future + Send + 'frame,
        F::Output: Send,
    {
        let job = self.spawn_raw(future, JobKind::Any, None, 0, Location::caller());
        JobHandle::new(job)
    }

    /// Spawns a job that runs only on the driving thread (the thread inside `run_frame`), so its
    /// future and output need not be `Send`: it may hold an `Rc`.
    ///
    /// Await a local job; do not block a thread until it has run. The driving thread also runs
    /// ordinary jobs, and an ordinary job that blocks its thread there waiting for a local job
    /// (or for the root future) waits for ever: nobody else may run either.
    ///
    /// # Panics
    /// Unless called from the root future or from another `spawn_local` job: those are the only
    /// code certain to run on the driving thread.
    ///
    /// ```
    /// # let mut scheduler = frame_scheduler::Scheduler::builder().workers(2).build().unwrap();
    /// use std::rc::Rc;
    /// let n = scheduler.run_frame(async |frame| {
    ///     let shared = Rc::new(20);
    ///     let job = frame.spawn_local({ let shared = Rc::clone(&shared); async move { *shared + 1 } });
    ///     job.await + *shared
    /// });
    /// assert_eq!(n, 41);
    /// ```
    #[track_caller]
    pub fn spawn_local<F>(&'frame self, future: F) -> JobHandle<'frame, F::Output>
    where
        F: Future + 'frame,
    {
        self.check_local_ok();
        let job = self.spawn_raw(future, JobKind::Local, None, 0, Location::caller());
        JobHandle::new(job)
    }

    /// Panics unless the running code may call `spawn_local`: the root future or a local job.
    #[track_caller]
    pub(crate) fn check_local_ok(&self) {
        let cur = context::current();
        if !ptr::eq(cur.shared, self.shared) || cur.index != 0 || !cur.local_ok {
            panic!(
                "Frame::spawn_local called from a job that may run on any thread: local jobs \
                 run on the driving thread, so spawn them from the root future passed to \
                 run_frame or from another spawn_local job (use Frame::spawn for Send futures)"
            );
        }
    }

    /// Makes a new counter at 0 in this frame's arena.
    #[track_caller]
    pub fn counter(&'frame self) -> Counter<'frame> {
        let inner = self.alloc_raw(CounterInner::new(self.shared));
        if self.shared.tracer.is_on() {
            let by = context::current().worker_of(self.shared);
            // SAFETY: `by` is `Some(i)` only when this thread is worker `i` of the scheduler.
            unsafe {
                self.shared
                    .tracer
                    .counter_created(by, inner.as_ptr(), Some(Location::caller()))
            };
        }
        // SAFETY: arena memory lives until frame end, which `'frame` cannot outlive.
        let inner = unsafe { inner.as_ref() };
        Counter { inner }
    }

    /// Spawns a job that adds 1 to `counter` before it is queued and takes 1 away when it
    /// finishes (or panics). There is no handle: await the counter.
    #[track_caller]
    pub fn spawn_counted<F>(&'frame self, counter: Counter<'frame>, future: F)
    where
        F: Future<Output = ()> + Send + 'frame,
    {
        counter.inner.increment();
        self.spawn_raw(
            future,
            JobKind::Any,
            Some(counter),
            DETACHED,
            Location::caller(),
        );
    }

    /// Writes a value into the arena of the calling thread (its worker's, or the foreign arena).
    fn alloc_raw<T>(&self, value: T) -> NonNull<T> {
        self.alloc_for(context::current(), value)
    }

    /// [`Frame::alloc_raw`] for a caller that already knows which thread it is on.
    pub(crate) fn alloc_for<T>(&self, cur: Current, value: T) -> NonNull<T> {
        let p = self.alloc_layout_for(cur, Layout::new::<T>()).cast::<T>();
        // SAFETY: fresh room for a `T`.
        unsafe { p.as_ptr().write(value) };
        p
    }

    /// Room for `layout` in the arena of the calling thread, valid until the frame ends.
    /// Always inlined: on the spawn path the caller has already compared `cur.shared` with
    /// the frame's scheduler, and the call itself cost more than the bump.
    #[inline(always)]
    pub(crate) fn alloc_layout_for(&self, cur: Current, layout: Layout) -> NonNull<u8> {
        let shared = self.shared;
        if ptr::eq(cur.shared, shared) {
            // SAFETY: we are worker `cur.index` (Shared invariant 1), and no other reference to
            // our frame state is held across this call (user code does not run inside it).
            shared.workers[cur.index]
                .frame_state
                .with_mut(|fs| unsafe { (*fs).arena.alloc_layout(layout, &shared.pool) })
        } else {
            shared.foreign().arena.alloc_layout(layout, &shared.pool)
        }
    }

    /// Room for a job of room `room` (`Job::ROOM`) in the calling thread's arena, to be placed
    /// with `Job::place`: with stall detection on (`stall`), room for the job's node in front
    /// of it too (see `stall/mod.rs`; link it with `Stall::publish` once the job is written).
    #[inline(always)]
    pub(crate) fn alloc_job_room(&self, cur: Current, stall: bool, room: Layout) -> NonNull<u8> {
        if stall {
            let all = self.alloc_layout_for(cur, stall::room_with_node(room));
            stall::after_node(all, room)
        } else {
            self.alloc_layout_for(cur, room)
        }
    }

    /// Spawns a job of `kind` with the priority of the job spawning it and no name.
    pub(crate) fn spawn_raw<F: Future + 'frame>(
        &'frame self,
        future: F,
        kind: JobKind,
        counter: Option<Counter<'frame>>,
        handle: u32,
        location: &'static Location<'static>,
    ) -> JobRef {
        let options = SpawnOptions {
            priority: None,
            name: None,
            location,
        };
        self.spawn_with(future, kind, counter, handle, options)
    }

    /// The priority of the job (or root future) the calling thread is polling: what its
    /// spawns inherit. `Normal` on threads that are not this scheduler's workers.
    #[inline]
    pub(crate) fn spawner_priority(&self, cur: Current) -> Priority {
        if ptr::eq(cur.shared, self.shared) {
            cur.priority
        } else {
            Priority::Normal
        }
    }

    /// Writes a job into the calling thread's arena and queues it.
    pub(crate) fn spawn_with<F: Future + 'frame>(
        &'frame self,
        future: F,
        kind: JobKind,
        counter: Option<Counter<'frame>>,
        handle: u32,
        options: SpawnOptions,
    ) -> JobRef {
        let shared = self.shared;
        let cur = context::current();
        let mine = ptr::eq(cur.shared, shared);
        let priority = options
            .priority
            .unwrap_or_else(|| self.spawner_priority(cur));
        let label = match options.name {
            None => Label::at(options.location),
            Some(name) => {
                let named = self.alloc_for(
                    cur,
                    Named {
                        name,
                        location: options.location,
                    },
                );
                // SAFETY: arena memory lives until the frame ends, as long as the job.
                unsafe { Label::named(named) }
            }
        };
        let header = Header::new(
            &Job::<Traced<F>>::VTABLE,
            kind,
            priority,
            label,
            counter.map(counter_ptr),
            shared,
            SCHEDULED,
            handle,
        );
        let stall = shared.stall.as_deref();
        let slot = Job::<Traced<F>>::place(self.alloc_job_room(
            cur,
            stall.is_some(),
            Job::<Traced<F>>::ROOM,
        ));
        // SAFETY: placed in fresh room of `Job::ROOM`.
        unsafe { Job::write(slot, header, profile::instrument(future)) };
        if let Some(stall) = stall {
            // SAFETY: `Stall::publish` (1): a job of this frame, written just now into room
            // from `alloc_job_room` with `stall` set; (2): `worker_of` is `Some(i)` only on
            // worker `i`.
            unsafe { stall.publish(cur.worker_of(shared), slot) };
        }
        let job = JobRef(slot);
        if shared.tracer.is_on() {
            let by = cur.worker_of(shared);
            // SAFETY: `by` is `Some(i)` only when this thread is worker `i` of the scheduler.
            unsafe {
                shared.tracer.spawn(
                    by,
                    slot.as_ptr(),
                    ptr::null::<Header>(),
                    options.name,
                    Some(options.location),
                )
            };
        }
        profile::spawned(shared, cur, label);
        shared.note_queued(priority, 1);
        if mine {
            let w = &shared.workers[cur.index];
            // Counted before it is visible anywhere (see worker.rs on frame completion).
            // SAFETY: we are worker `cur.index`, the counters' owner.
            unsafe { Counts::bump(&w.counts.spawned) };
            // SAFETY: the job was just written, SCHEDULED, and is on no queue; we are worker
            // `cur.index`, the owner of its counters and of its deque.
            unsafe {
                match kind {
                    JobKind::Local => {
                        Counts::bump(&w.counts.local);
                        shared.push_driver(priority, job)
                    }
                    _ => shared.push(cur.index, priority, job),
                }
            }
            job
        } else {
            shared.foreign_spawned.fetch_add(1, Ordering::AcqRel);
            // SAFETY: the job was just written, SCHEDULED, and is on no queue.
            unsafe { shared.inject(priority, job) };
            job
        }
    }
}

/// What a spawn may say about its job beyond its kind (see [`JobBuilder`](crate::JobBuilder)).
pub(crate) struct SpawnOptions {
    /// `None`: the priority of the spawning job.
    pub(crate) priority: Option<Priority>,
    pub(crate) name: Option<&'static str>,
    pub(crate) location: &'static Location<'static>,
}

/// Ties a handle to its frame, and to its output type without owning one.
type HandleMarker<'frame, T> = (&'frame (), fn() -> T);

/// A handle to a job's output: a future that yields it.
///
/// Dropping the handle detaches the job: it still runs to completion within the frame and its
/// output is dropped when it finishes. A forgotten handle's output is dropped at frame end.
///
/// # Panics
/// Awaiting the handle of a job that panicked panics the awaiter; the job's original panic
/// payload comes out of `run_frame` once the frame has finished.
pub struct JobHandle<'frame, T> {
    job: NonNull<Header>,
    finished: bool,
    /// Whether a poll ever put a waker in the job's awaiter slot.
    registered: bool,
    _marker: PhantomData<HandleMarker<'frame, T>>,
}

// SAFETY: the handle moves the output (a `T`) to whichever thread awaits it, so it may move
// between threads exactly when `T: Send`. The header it points at is `Sync`.
unsafe impl<T: Send> Send for JobHandle<'_, T> {}
// SAFETY: `&JobHandle` gives access to nothing but atomics (`is_finished`).
unsafe impl<T> Sync for JobHandle<'_, T> {}

impl<T> Unpin for JobHandle<'_, T> {}

impl<T> core::fmt::Debug for JobHandle<'_, T> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("JobHandle")
            .field("finished", &self.is_finished())
            .finish()
    }
}

impl<'frame, T> JobHandle<'frame, T> {
    pub(crate) fn new(job: JobRef) -> Self {
        JobHandle {
            job: job.0,
            finished: false,
            registered: false,
            _marker: PhantomData,
        }
    }

    fn header(&self) -> &Header {
        // SAFETY: the handle cannot outlive `'frame`, and the job lives until the frame ends.
        unsafe { self.job.as_ref() }
    }

    /// Whether the job has finished (or panicked). Never blocks.
    pub fn is_finished(&self) -> bool {
        self.header().handle.load(Ordering::Acquire) & DONE != 0
    }
}

impl<T> Future for JobHandle<'_, T> {
    type Output = T;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<T> {
        assert!(
            !self.finished,
            "JobHandle polled again after it returned the job's output"
        );
        let job = self.job;
        // SAFETY: the handle cannot outlive `'frame`, and the job lives until the frame ends.
        let h = unsafe { job.as_ref() };
        let Some(state) = h.register_awaiter(cx.waker()) else {
            self.registered = true;
            stall::note_handle_wait(h);
            return Poll::Pending;
        };
        if state & PANICKED != 0 {
            self.finished = true;
            panic!(
                "the job awaited through this JobHandle panicked; run_frame resumes the job's \
                 own panic once the frame has finished"
            );
        }
        self.finished = true;
        // Claim the output: whoever sets TAKEN first owns it (the frame-end sweep competes
        // when a handle is kept alive into an output's destructor).
        if h.handle.fetch_or(TAKEN, Ordering::AcqRel) & TAKEN != 0 {
            panic!(
                "JobHandle awaited after the end of its frame had already dropped the job's \
                 output: a handle kept alive into the frame-end sweep (leaked, or moved into \
                 another output's destructor) cannot yield the output; await handles within \
                 the frame"
            );
        }
        let mut out = MaybeUninit::<T>::uninit();
        // SAFETY: the job is complete without panic, and our TAKEN claim above won the output
        // (every other party, the sweep and a detaching handle, claims it the same way);
        // `out` is a valid `T` slot.
        unsafe { (h.vtable.take_output)(job, out.as_mut_ptr().cast()) };
        // SAFETY: `take_output` wrote it.
        Poll::Ready(unsafe { out.assume_init() })
    }
}

impl<T> Drop for JobHandle<'_, T> {
    fn drop(&mut self) {
        if self.finished {
            return;
        }
        let h = self.header();
        let (before, waker) = if self.registered {
            h.detach()
        } else {
            // The slot is empty: one read-modify-write settles who drops the output.
            (h.detach_unregistered(), None)
        };
        if before & DONE != 0
            && before & PANICKED == 0
            && h.handle.fetch_or(TAKEN, Ordering::AcqRel) & TAKEN == 0
        {
            // Done before we detached: the completer left the output on its list, and our
            // TAKEN claim beat the frame-end sweep to it (the sweep may be running now, if
            // this handle was kept alive into an output's destructor).
            // SAFETY: done, not panicked, and claimed by us alone: ours to drop.
            unsafe { (h.vtable.drop_output)(self.job) };
        }
        drop(waker);
    }
}

/// Lets other jobs run before this one continues: wakes itself and returns `Pending` once.
///
/// ```
/// # let mut scheduler = frame_scheduler::Scheduler::builder().workers(1).build().unwrap();
/// scheduler.run_frame(async |frame| {
///     let job = frame.spawn(async { 7 });
///     frame_scheduler::yield_now().await; // with one worker, the job runs here
///     assert!(job.is_finished());
///     assert_eq!(job.await, 7);
/// });
/// ```
pub async fn yield_now() {
    YieldNow { yielded: false }.await
}

struct YieldNow {
    yielded: bool,
}

impl Future for YieldNow {
    type Output = ();

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        if self.yielded {
            return Poll::Ready(());
        }
        self.yielded = true;
        cx.waker().wake_by_ref();
        Poll::Pending
    }
}
