//! Job options: [`Priority`], and [`JobBuilder`], which spawns one job with a priority, a name
//! or a counter.
//!
//! How priorities are scheduled (the queues of each level, and the order a worker looks in) is
//! in `worker.rs`'s `find_work`; a job's priority travels in its header (`job/header.rs`).

use core::future::Future;
use core::panic::Location;

use crate::counter::Counter;
use crate::frame::{Frame, JobHandle};
use crate::job::JobKind;

/// How urgent a job is. A worker looking for work takes a `High` job from anywhere (its own
/// queues, the shared ones, other workers' queues) before any `Normal` job, and a `Normal` job
/// before any `Low` one.
///
/// A job's children (its spawns, and the pieces of the loops it starts) get its priority
/// unless [`JobBuilder::priority`] says otherwise; the root future counts as `Normal`. Within
/// one level, a worker runs its own newest job first (LIFO, as rayon does), and jobs in the
/// shared queues (spawned from other threads, or yielding) in the order they came (FIFO).
///
/// Priorities order *queued* jobs; they never interrupt a running one. Two guards keep a
/// program that spins on [`yield_now`](crate::yield_now) from livelocking across levels: one
/// look for work in 1024 tries `Low`, then `Normal`, then `High`; and a frame ends only when
/// every job of every level is done.
///
/// ```
/// use frame_scheduler::Priority;
/// # let mut scheduler = frame_scheduler::Scheduler::builder().workers(1).build().unwrap();
/// let order = std::sync::Mutex::new(Vec::new());
/// scheduler.run_frame(async |frame| {
///     let log = |what| {
///         let order = &order;
///         async move { order.lock().unwrap().push(what) }
///     };
///     let low = frame.job().priority(Priority::Low).spawn(log("streaming"));
///     let normal = frame.spawn(log("animation"));
///     let high = frame.job().priority(Priority::High).spawn(log("physics"));
///     (low.await, normal.await, high.await);
/// });
/// // One worker: the queued jobs started by priority.
/// assert_eq!(*order.lock().unwrap(), ["physics", "animation", "streaming"]);
/// ```
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
#[repr(u8)]
pub enum Priority {
    /// The critical path: physics, animation, render submission.
    High = 0,
    /// Everything else; the default.
    #[default]
    Normal = 1,
    /// Background work that may wait: streaming, AI planning, cache warming.
    Low = 2,
}

impl Priority {
    /// The level's index in per-level arrays (`High` is 0).
    #[inline]
    pub(crate) fn index(self) -> usize {
        self as usize
    }
}

/// Options for one job, made by [`Frame::job`]: a priority, a name, a counter; then
/// [`spawn`](JobBuilder::spawn) or [`spawn_local`](JobBuilder::spawn_local).
///
/// ```
/// use frame_scheduler::Priority;
/// # let mut scheduler = frame_scheduler::Scheduler::builder().workers(2).build().unwrap();
/// let positions = vec![0.0f32; 1000];
/// scheduler.run_frame(async |frame| {
///     let culled = frame.counter();
///     let physics = frame
///         .job()
///         .priority(Priority::High)
///         .name("physics")
///         .spawn(async { positions.iter().sum::<f32>() });
///     for _ in 0..4 {
///         frame.job().name("cull").counter(culled).spawn(async {});
///     }
///     assert_eq!(physics.await, 0.0);
///     culled.await;
/// });
/// ```
#[must_use = "a JobBuilder does nothing until `spawn` or `spawn_local` is called"]
pub struct JobBuilder<'frame, 'env> {
    frame: &'frame Frame<'frame, 'env>,
    priority: Option<Priority>,
    name: Option<&'static str>,
    counter: Option<Counter<'frame>>,
    location: &'static Location<'static>,
}

impl core::fmt::Debug for JobBuilder<'_, '_> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("JobBuilder")
            .field("priority", &self.priority)
            .field("name", &self.name)
            .field("counted", &self.counter.is_some())
            .field("location", &self.location)
            .finish()
    }
}

impl<'frame, 'env> Frame<'frame, 'env> {
    /// Options for one job: `frame.job().priority(Priority::High).name("physics").spawn(fut)`.
    /// The job is recorded as spawned where `job()` was called.
    #[track_caller]
    pub fn job(&'frame self) -> JobBuilder<'frame, 'env> {
        JobBuilder {
            frame: self,
            priority: None,
            name: None,
            counter: None,
            location: Location::caller(),
        }
    }
}

impl<'frame, 'env> JobBuilder<'frame, 'env> {
    /// The job's priority. Without it, the job gets the priority of the job (or root future)
    /// that spawns it.
    pub fn priority(mut self, priority: Priority) -> Self {
        self.priority = Some(priority);
        self
    }

    /// The job's name, shown in traces (`Scheduler::take_trace`) instead of where it was
    /// spawned. Naming a job costs 24 bytes of frame arena and no heap allocation.
    pub fn name(mut self, name: &'static str) -> Self {
        self.name = Some(name);
        self
    }

    /// Counts the job on `counter`, as [`Frame::spawn_counted`] does: 1 is added before the
    /// job is queued and taken away when it finishes (or panics). The job keeps its handle
    /// too.
    pub fn counter(mut self, counter: Counter<'frame>) -> Self {
        self.counter = Some(counter);
        self
    }

    /// Spawns the job onto any worker, as [`Frame::spawn`] does.
    pub fn spawn<F>(self, future: F) -> JobHandle<'frame, F::Output>
    where
        F: Future + Send + 'frame,
        F::Output: Send,
    {
        self.spawn_as(JobKind::Any, future)
    }

    /// Spawns the job onto the driving thread, as [`Frame::spawn_local`] does (and with the
    /// same rule: only from the root future or another local job).
    ///
    /// # Panics
    /// Unless called from the root future or from another `spawn_local` job.
    #[track_caller]
    pub fn spawn_local<F>(self, future: F) -> JobHandle<'frame, F::Output>
    where
        F: Future + 'frame,
    {
        self.frame.check_local_ok();
        self.spawn_as(JobKind::Local, future)
    }

    fn spawn_as<F: Future + 'frame>(
        self,
        kind: JobKind,
        future: F,
    ) -> JobHandle<'frame, F::Output> {
        let frame = self.frame;
        if let Some(counter) = self.counter {
            counter.inner.increment();
        }
        let options = crate::frame::SpawnOptions {
            priority: self.priority,
            name: self.name,
            location: self.location,
        };
        JobHandle::new(frame.spawn_with(future, kind, self.counter, 0, options))
    }
}
