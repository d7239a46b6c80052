//! The typed job, `Job<F>`, and the vtable through which the scheduler reaches it untyped.

use core::any::Any;
use core::future::Future;
use core::mem::{self, ManuallyDrop};
use core::panic::AssertUnwindSafe;
use core::pin::Pin;
use core::ptr::NonNull;
use core::task::{Context, Poll};
use std::panic::catch_unwind;

use super::Header;
use crate::sync::UnsafeCell;

/// What a job's future is doing, stored right after its header.
enum Stage<F: Future> {
    /// Not finished: the future, pinned in place (the job never moves).
    Running(F),
    /// Finished: the output, waiting for its handle or the frame-end sweep.
    Finished(F::Output),
    /// The future panicked, or the output was moved out or dropped.
    Empty,
}

/// A job as it lies in the arena: header first, then its stage.
///
/// # Invariants
/// 1. `#[repr(C)]` with `header` first: a `NonNull<Header>` of a job casts to `NonNull<Job<F>>`
///    for the `F` its vtable was made for.
/// 2. The job never moves after it is written into the arena (the future is pinned there).
/// 3. `stage` is touched only by the thread that holds `RUNNING` (poll), or, once `COMPLETE`, by
///    whoever the state bits give the output to (handle, completing worker, frame-end sweep).
#[repr(C, align(64))]
pub(crate) struct Job<F: Future> {
    pub(crate) header: Header,
    stage: UnsafeCell<Stage<F>>,
}

/// What one poll of a job produced.
pub(crate) enum PollOutcome {
    /// The future is waiting on a waker.
    Pending,
    /// The future finished; its output is stored.
    Ready,
    /// The future panicked; it has been dropped and here is the payload.
    Panicked(Box<dyn Any + Send + 'static>),
}

/// Type-erased entry points into a `Job<F>`.
pub(crate) struct JobVTable {
    /// Polls the future once (see [`poll`]).
    pub(crate) poll: unsafe fn(NonNull<Header>, &mut Context<'_>) -> PollOutcome,
    /// Moves the output into `dst`, a `*mut F::Output` (see [`take_output`]).
    pub(crate) take_output: unsafe fn(NonNull<Header>, *mut ()),
    /// Drops the output in place (see [`drop_output`]).
    pub(crate) drop_output: unsafe fn(NonNull<Header>),
    /// Whether the output has a destructor, so completed jobs whose output nobody took must be
    /// swept at frame end.
    pub(crate) output_needs_drop: bool,
}

impl core::fmt::Debug for JobVTable {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("JobVTable").finish_non_exhaustive()
    }
}

impl<F: Future> Job<F> {
    pub(crate) const VTABLE: JobVTable = JobVTable {
        poll: poll::<F>,
        take_output: take_output::<F>,
        drop_output: drop_output::<F>,
        output_needs_drop: mem::needs_drop::<F::Output>(),
    };

    /// Writes a job into `dst` field by field, so that the future is moved once, from the
    /// caller's argument straight into place: a large future is never copied onto this
    /// function's stack as part of a whole `Job` first.
    ///
    /// # Safety
    /// 1. `dst` is valid for writes of a `Job<F>` and aligned for it.
    #[inline(always)]
    pub(crate) unsafe fn write(dst: NonNull<Job<F>>, header: Header, future: F) {
        let dst = dst.as_ptr();
        // SAFETY: (1); the two fields are written through raw pointers, no reference to the
        // uninitialised job is made.
        unsafe {
            core::ptr::addr_of_mut!((*dst).header).write(header);
            core::ptr::addr_of_mut!((*dst).stage).write(UnsafeCell::new(Stage::Running(future)));
        }
    }

    #[cfg(loom)]
    pub(crate) fn new(header: Header, future: F) -> Job<F> {
        Job {
            header,
            stage: UnsafeCell::new(Stage::Running(future)),
        }
    }
}

/// A vtable for the root header, which has no stage: nothing ever calls it.
pub(crate) static ROOT_VTABLE: JobVTable = JobVTable {
    poll: |_, _| unreachable!("the root future is polled by run_frame, not through its header"),
    take_output: |_, _| unreachable!("the root future's output is returned by run_frame"),
    drop_output: |_| unreachable!("the root future's output is returned by run_frame"),
    output_needs_drop: false,
};

/// Polls the job's future once, catching a panic. On `Ready` the future is dropped and the output
/// stored; on a panic the future is dropped and the payload returned.
///
/// # Safety
/// 1. `header` belongs to a live `Job<F>` (job invariant 1).
/// 2. The caller holds `RUNNING` for this job (job invariant 3).
/// 3. For a `Local` job, the caller is the driving thread.
unsafe fn poll<F: Future>(header: NonNull<Header>, cx: &mut Context<'_>) -> PollOutcome {
    let job = header.cast::<Job<F>>();
    // SAFETY: (1) the job is live; (2) we are the only thread touching `stage`.
    let stage = unsafe { &mut *job.as_ref().stage.with_mut(|p| p) };
    let Stage::Running(future) = stage else {
        unreachable!("a job was polled after it finished");
    };
    // SAFETY: the future lives in the arena and never moves (job invariant 2).
    let future = unsafe { Pin::new_unchecked(future) };
    match catch_unwind(AssertUnwindSafe(|| future.poll(cx))) {
        Ok(Poll::Pending) => PollOutcome::Pending,
        Ok(Poll::Ready(output)) => {
            // Drop the future first (its destructor may panic), then store the output.
            let output = ManuallyDrop::new(output);
            let dropped = catch_unwind(AssertUnwindSafe(|| *stage = Stage::Empty));
            let output = ManuallyDrop::into_inner(output);
            match dropped {
                Ok(()) => {
                    *stage = Stage::Finished(output);
                    PollOutcome::Ready
                }
                Err(payload) => {
                    drop_quietly(output);
                    PollOutcome::Panicked(payload)
                }
            }
        }
        Err(payload) => {
            // The future is in an unknown state; drop it now, keeping the first payload.
            if let Err(second) = catch_unwind(AssertUnwindSafe(|| *stage = Stage::Empty)) {
                drop_quietly(second);
            }
            PollOutcome::Panicked(payload)
        }
    }
}

/// Drops a value whose destructor might panic, swallowing that panic (the frame already has one).
pub(crate) fn drop_quietly<T>(value: T) {
    if let Err(payload) = catch_unwind(AssertUnwindSafe(|| drop(value))) {
        // A panic payload whose own destructor panics aborts, as in std.
        mem::forget(payload);
    }
}

/// # Safety
/// 1. `header` belongs to a live `Job<F>` that is `COMPLETE` without `PANICKED`.
/// 2. The caller has the exclusive right to the output (it set `TAKEN`, or is about to, and no
///    one else can) and `dst` is valid for a write of `F::Output`.
unsafe fn take_output<F: Future>(header: NonNull<Header>, dst: *mut ()) {
    let job = header.cast::<Job<F>>();
    // SAFETY: (1), (2): exclusive access to a finished stage.
    unsafe {
        let stage = &mut *job.as_ref().stage.with_mut(|p| p);
        match mem::replace(stage, Stage::Empty) {
            Stage::Finished(output) => dst.cast::<F::Output>().write(output),
            _ => unreachable!("a job's output was taken twice"),
        }
    }
}

/// # Safety
/// As for [`take_output`] (1) and (2), without `dst`.
unsafe fn drop_output<F: Future>(header: NonNull<Header>) {
    let job = header.cast::<Job<F>>();
    // SAFETY: (1), (2): exclusive access to a finished stage.
    let stage = unsafe { &mut *job.as_ref().stage.with_mut(|p| p) };
    *stage = Stage::Empty;
}
