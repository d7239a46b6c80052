//! The typed job, `Job<F>`, and the vtable through which the scheduler reaches it untyped.

use core::alloc::Layout;
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
use crate::unwind::drop_quietly;

/// A job's future or output, after its header. Which of them is there (if either) is the
/// header's `stage_tag` (`STAGE_*`): kept out of the stage, so that an over-aligned future
/// does not pay a whole alignment for a one-byte tag.
union Stage<F: Future> {
    /// `STAGE_RUNNING`: the future, pinned in place (the job never moves).
    running: ManuallyDrop<F>,
    /// `STAGE_FINISHED`: the output, waiting for its handle or the frame-end sweep.
    finished: ManuallyDrop<F::Output>,
}

/// The stage holds the future.
pub(crate) const STAGE_RUNNING: u8 = 0;
/// The stage holds the output.
const STAGE_FINISHED: u8 = 1;
/// The future panicked, or the output was moved out or dropped: the stage holds nothing.
const STAGE_EMPTY: u8 = 2;

/// A job as it lies in the arena: header first, then its stage.
///
/// A stage aligned to more than a cache line does not follow the header at the struct's
/// offset (the alignment itself, which would waste almost all of it in front of the stage, and
/// up to as much again to align the whole job in the arena): it sits [`OVER_ALIGNED_OFFSET`]
/// bytes after the header, which is placed so that the stage is aligned (see [`Job::place`]).
/// So an over-aligned future wastes less than its alignment. Reach the stage through
/// [`stage`], never through the field.
///
/// # Invariants
/// 1. `#[repr(C)]` with `header` first: a `NonNull<Header>` of a job is where the job starts,
///    and its stage is [`Job::STAGE_OFFSET`] bytes further, for the `F` its vtable was made for.
/// 2. The job never moves after it is written into the arena (the future is pinned there).
/// 3. `stage` is touched only by the thread that holds `RUNNING` (poll), or, once `COMPLETE`, by
///    whoever the state bits give the output to (handle, completing worker, frame-end sweep).
#[repr(C, align(64))]
pub(crate) struct Job<F: Future> {
    pub(crate) header: Header,
    stage: UnsafeCell<Stage<F>>,
}

/// Bytes from the header to the stage when the stage is aligned to more than 64 bytes: the
/// header itself (a multiple of its own alignment), so that the stage's alignment leaves the
/// header aligned.
pub(crate) const OVER_ALIGNED_OFFSET: usize = mem::size_of::<Header>();
/// The alignment of the room an over-aligned job asks for: the header's.
const HEADER_ALIGN: usize = mem::align_of::<Header>();
const _: () = assert!(OVER_ALIGNED_OFFSET % HEADER_ALIGN == 0 && HEADER_ALIGN <= 64);

/// The stage of the job whose header is `header`.
///
/// # Safety
/// 1. `header` is the header of a live `Job<F>` (placed by [`Job::place`] and written by
///    [`Job::write`]), and the returned reference is not used after the job's frame ends.
unsafe fn stage<'a, F: Future>(header: NonNull<Header>) -> &'a UnsafeCell<Stage<F>> {
    // SAFETY: (1) and invariant 1: the stage is `STAGE_OFFSET` bytes after the header, inside
    // the job's room.
    unsafe {
        &*header
            .as_ptr()
            .cast::<u8>()
            .add(Job::<F>::STAGE_OFFSET)
            .cast::<UnsafeCell<Stage<F>>>()
    }
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

    /// Whether the stage is aligned to more than a cache line.
    const OVER_ALIGNED: bool = mem::align_of::<UnsafeCell<Stage<F>>>() > 64;

    /// Bytes from the header to the stage.
    pub(crate) const STAGE_OFFSET: usize = if Self::OVER_ALIGNED {
        OVER_ALIGNED_OFFSET
    } else {
        mem::offset_of!(Job<F>, stage)
    };

    /// The room to ask the arena for: a `Job<F>`, or for an over-aligned stage the header, the
    /// stage, and the slack to align the stage wherever the room starts (less than the
    /// stage's alignment in all).
    pub(crate) const ROOM: Layout = if Self::OVER_ALIGNED {
        let align = mem::align_of::<UnsafeCell<Stage<F>>>();
        let size =
            OVER_ALIGNED_OFFSET + mem::size_of::<UnsafeCell<Stage<F>>>() + align - HEADER_ALIGN;
        match Layout::from_size_align(size, HEADER_ALIGN) {
            Ok(l) => l,
            Err(_) => panic!("a job too large for a Layout"),
        }
    } else {
        Layout::new::<Job<F>>()
    };

    /// Where the header goes in `room`, allocated with [`Job::ROOM`].
    pub(crate) fn place(room: NonNull<u8>) -> NonNull<Header> {
        if Self::OVER_ALIGNED {
            let align = mem::align_of::<UnsafeCell<Stage<F>>>();
            let stage_at = (room.as_ptr() as usize + OVER_ALIGNED_OFFSET).next_multiple_of(align);
            // `room + OFFSET` is `HEADER_ALIGN`-aligned and the slack in `ROOM` is
            // `align - HEADER_ALIGN`, so the header starts at most that many bytes into the
            // room, aligned, and the stage fits.
            let header_at = stage_at - OVER_ALIGNED_OFFSET - room.as_ptr() as usize;
            // SAFETY: `header_at` is within the room (see above), so the result is non-null.
            unsafe { NonNull::new_unchecked(room.as_ptr().add(header_at)).cast() }
        } else {
            room.cast()
        }
    }

    /// Writes a job at `dst` field by field, so that the future is moved once, from the
    /// caller's argument straight into place: a large future is never copied onto this
    /// function's stack as part of a whole `Job` first.
    ///
    /// # Safety
    /// 1. `dst` was returned by [`Job::place`] for room allocated with [`Job::ROOM`].
    #[inline(always)]
    pub(crate) unsafe fn write(dst: NonNull<Header>, header: Header, future: F) {
        // SAFETY: (1): the header and the stage lie inside the room, each aligned for its type;
        // both are written through raw pointers, no reference to uninitialised memory is made.
        unsafe {
            dst.as_ptr().write(header);
            dst.as_ptr()
                .cast::<u8>()
                .add(Self::STAGE_OFFSET)
                .cast::<UnsafeCell<Stage<F>>>()
                .write(UnsafeCell::new(Stage {
                    running: ManuallyDrop::new(future),
                }));
        }
    }

    #[cfg(loom)]
    pub(crate) fn new(header: Header, future: F) -> Job<F> {
        Job {
            header,
            stage: UnsafeCell::new(Stage {
                running: ManuallyDrop::new(future),
            }),
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
    // SAFETY: (1) the job is live; (2) we are the only thread touching its stage and tag.
    let (tag, stage) = unsafe {
        (
            &mut *header.as_ref().stage_tag.with_mut(|t| t),
            &mut *stage::<F>(header).with_mut(|p| p),
        )
    };
    if *tag != STAGE_RUNNING {
        unreachable!("a job was polled after it finished");
    }
    // SAFETY: the tag says the stage holds the future, which lives in the arena and never
    // moves (job invariant 2).
    let future = unsafe { Pin::new_unchecked(&mut *stage.running) };
    match catch_unwind(AssertUnwindSafe(|| future.poll(cx))) {
        Ok(Poll::Pending) => PollOutcome::Pending,
        Ok(Poll::Ready(output)) => {
            // Drop the future first (its destructor may panic), then store the output. The
            // tag says empty before the drop, so a panicking drop is never repeated.
            let output = ManuallyDrop::new(output);
            *tag = STAGE_EMPTY;
            // SAFETY: the stage held the future, dropped once here.
            let dropped = catch_unwind(AssertUnwindSafe(|| unsafe {
                ManuallyDrop::drop(&mut stage.running)
            }));
            let output = ManuallyDrop::into_inner(output);
            match dropped {
                Ok(()) => {
                    stage.finished = ManuallyDrop::new(output);
                    *tag = STAGE_FINISHED;
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
            *tag = STAGE_EMPTY;
            // SAFETY: the stage held the future, dropped once here.
            let dropped = catch_unwind(AssertUnwindSafe(|| unsafe {
                ManuallyDrop::drop(&mut stage.running)
            }));
            if let Err(second) = dropped {
                drop_quietly(second);
            }
            PollOutcome::Panicked(payload)
        }
    }
}

/// # Safety
/// 1. `header` belongs to a live `Job<F>` that is `COMPLETE` without `PANICKED`.
/// 2. The caller has the exclusive right to the output (it set `TAKEN`, or is about to, and no
///    one else can) and `dst` is valid for a write of `F::Output`.
unsafe fn take_output<F: Future>(header: NonNull<Header>, dst: *mut ()) {
    // SAFETY: (1), (2): exclusive access to a finished stage and its tag.
    unsafe {
        let tag = &mut *header.as_ref().stage_tag.with_mut(|t| t);
        if *tag != STAGE_FINISHED {
            unreachable!("a job's output was taken twice");
        }
        *tag = STAGE_EMPTY;
        let stage = &mut *stage::<F>(header).with_mut(|p| p);
        dst.cast::<F::Output>()
            .write(ManuallyDrop::take(&mut stage.finished));
    }
}

/// # Safety
/// As for [`take_output`] (1) and (2), without `dst`.
unsafe fn drop_output<F: Future>(header: NonNull<Header>) {
    // SAFETY: (1), (2): exclusive access to a finished stage and its tag.
    unsafe {
        let tag = &mut *header.as_ref().stage_tag.with_mut(|t| t);
        if *tag != STAGE_FINISHED {
            unreachable!("a job's output was dropped twice");
        }
        // Empty first: a panicking destructor is not run again.
        *tag = STAGE_EMPTY;
        ManuallyDrop::drop(&mut (*stage::<F>(header).with_mut(|p| p)).finished);
    }
}
