//! The job header: the part of every job that is the same whatever its future.
//!
//! # Who touches which field, and when
//!
//! | field       | written by                                   | read by                                  |
//! |-------------|----------------------------------------------|------------------------------------------|
//! | `state`     | wakers (CAS), the dequeuing/polling worker (stores, CAS on `Pending`) | anyone       |
//! | `handle`    | the `JobHandle`, the completing worker (RMW; see state.rs) | same                     |
//! | `vtable`, `kind`, `priority`, `label`, `counter`, `shared` | the spawning thread, before the job is published | anyone, after |
//! | `next`      | whoever holds the lock of the list the job is on (injector, driver queue), or, once `COMPLETE`, the completing worker (outputs list) and the driver at frame end | same |
//! | `awaiter`   | whoever holds the `LOCKED` bit of `handle`   | same                                     |
//! | `wake_cell` | the thread that first clones the job's waker (CAS from null) | waker clones; the driver at frame end |
//! | `stage_tag` | the spawner (before publication), the poller (holding `RUNNING`), the output's owner (after its `TAKEN` claim) | same |
//!
//! Everything in a header lives in a frame arena and is only valid until that frame ends; the
//! frame cannot end before the job is `COMPLETE` and every worker that touched it has said so
//! through its `completed` counter (see `worker.rs`).

use core::panic::Location;
use core::ptr::{self, NonNull};
use core::task::Waker;

use crate::waker::Wake;

use super::JobVTable;
use super::state::*;
use crate::counter::CounterInner;
use crate::priority::Priority;
use crate::sync::{AtomicPtr, AtomicU32, Ordering, UnsafeCell, backoff};
use crate::waker::WakeCell;
use crate::worker::Shared;

/// Where a job may run, which decides where a wake puts it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum JobKind {
    /// Any worker: woken jobs go to the waking worker's queue, or to the injector.
    Any,
    /// Only the driving thread (`spawn_local`): woken jobs go to the driver queue.
    Local,
    /// The frame's root future, polled by the driving thread itself.
    Root,
}

/// What a job is called: where it was spawned (`#[track_caller]`), and the name it was given,
/// if any. One word: a tagged pointer, so that naming costs the header 8 bytes, not 24.
///
/// # Invariants
/// 1. With the low bit clear, the word is a `&'static Location<'static>`.
/// 2. With the low bit set, the word less that bit points at a [`Named`] that lives at least
///    as long as every header holding this label (it is written into the frame arena of the
///    job it names, before the job is published).
#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) struct Label(NonNull<()>);

/// A named job's label, in the frame arena beside the job (see [`Label`]).
#[derive(Debug)]
pub(crate) struct Named {
    pub(crate) name: &'static str,
    pub(crate) location: &'static Location<'static>,
}

// SAFETY: a label points at immutable data only (a static location, or a `Named` written once
// before publication and never changed); `&'static str` and `&Location` are `Send + Sync`.
unsafe impl Send for Label {}
// SAFETY: as for `Send`.
unsafe impl Sync for Label {}

impl Label {
    /// The label of an unnamed job spawned at `location`.
    pub(crate) fn at(location: &'static Location<'static>) -> Label {
        // A `Location` holds a `&str`, so its address is even (invariant 1).
        Label(NonNull::from(location).cast())
    }

    /// The label of a named job.
    ///
    /// # Safety
    /// 1. `named` lives as long as every header this label goes into (invariant 2).
    pub(crate) unsafe fn named(named: NonNull<Named>) -> Label {
        const { assert!(core::mem::align_of::<Named>() >= 2) };
        // SAFETY: `named` is non-null and even (aligned), so setting the low bit keeps it
        // non-null; (1) is invariant 2.
        Label(unsafe { NonNull::new_unchecked(named.as_ptr().cast::<u8>().wrapping_add(1).cast()) })
    }

    fn named_ptr(self) -> Option<*const Named> {
        let addr = self.0.as_ptr() as usize;
        (addr & 1 == 1).then(|| {
            self.0
                .as_ptr()
                .cast::<u8>()
                .wrapping_sub(1)
                .cast::<Named>()
                .cast_const()
        })
    }

    /// Where the job was spawned.
    pub(crate) fn location(self) -> &'static Location<'static> {
        match self.named_ptr() {
            // SAFETY: invariant 2: the `Named` outlives the header we were read from, which
            // the caller holds; the location inside it is `'static`.
            Some(named) => unsafe { (*named).location },
            // SAFETY: invariant 1.
            None => unsafe { self.0.cast::<Location<'static>>().as_ref() },
        }
    }

    /// The job's name, if it was given one.
    pub(crate) fn name(self) -> Option<&'static str> {
        // SAFETY: as in `location`.
        self.named_ptr().map(|named| unsafe { (*named).name })
    }
}

impl core::fmt::Debug for Label {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self.name() {
            Some(name) => write!(f, "{name} ({})", self.location()),
            None => write!(f, "{}", self.location()),
        }
    }
}

/// The fields every job shares. `#[repr(C)]` and first in `Job<F>`, so a `*Header` is a `*Job<F>`.
///
/// # Invariants
/// 1. A header is only reachable (through a `JobRef`, a waker or a handle) while its frame runs;
///    wakers that outlive the frame reach it only through a `WakeCell`, which is orphaned before
///    the arena is reset.
/// 2. `vtable`, `kind`, `counter` and `shared` never change after the job is published.
/// 3. `next` and `awaiter` are accessed only under the protocols in the table above.
/// 4. A job is in at most one queue at a time: only the thread that set `SCHEDULED` enqueues it.
/// 5. While `SCHEDULED` is set in `state`, only the worker that dequeues the job writes `state`;
///    while `RUNNING` is set, other threads only add `SCHEDULED` (state.rs).
#[repr(C)]
pub(crate) struct Header {
    pub(crate) state: AtomicU32,
    pub(crate) handle: AtomicU32,
    pub(crate) vtable: &'static JobVTable,
    pub(crate) next: UnsafeCell<*const Header>,
    pub(crate) awaiter: UnsafeCell<Option<Wake>>,
    pub(crate) counter: Option<NonNull<CounterInner>>,
    pub(crate) wake_cell: AtomicPtr<WakeCell>,
    pub(crate) shared: *const Shared,
    /// Where the job was spawned, and its name.
    pub(crate) label: Label,
    pub(crate) kind: JobKind,
    /// Which queues the job goes to when it is scheduled.
    pub(crate) priority: Priority,
    /// What the stage after the header holds (`raw.rs`'s `STAGE_*`): touched only by whoever
    /// may touch the stage (job invariant 3 in `raw.rs`).
    pub(crate) stage_tag: UnsafeCell<u8>,
}

// SAFETY: every field is either atomic, immutable after publication (invariant 2), or guarded by
// the protocols of invariant 3; the raw pointers point at data that outlives every access
// (invariant 1).
unsafe impl Sync for Header {}
// SAFETY: as for `Sync`: a header carries no thread-bound data of its own.
unsafe impl Send for Header {}

impl core::fmt::Debug for Header {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("Header")
            .field(
                "state",
                &format_args!("{:#b}", self.state.load(Ordering::Relaxed)),
            )
            .field(
                "handle",
                &format_args!("{:#b}", self.handle.load(Ordering::Relaxed)),
            )
            .field("kind", &self.kind)
            .field("priority", &self.priority)
            .field("label", &self.label)
            .finish_non_exhaustive()
    }
}

impl Header {
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn new(
        vtable: &'static JobVTable,
        kind: JobKind,
        priority: Priority,
        label: Label,
        counter: Option<NonNull<CounterInner>>,
        shared: *const Shared,
        state: u32,
        handle: u32,
    ) -> Header {
        Header {
            state: AtomicU32::new(state),
            handle: AtomicU32::new(handle),
            vtable,
            next: UnsafeCell::new(ptr::null()),
            awaiter: UnsafeCell::new(None),
            counter,
            wake_cell: AtomicPtr::new(ptr::null_mut()),
            shared,
            label,
            kind,
            priority,
            stage_tag: UnsafeCell::new(super::raw::STAGE_RUNNING),
        }
    }

    /// Marks the job scheduled. Returns `true` when the caller must enqueue it (it was idle);
    /// `false` when it is complete, already queued, or running (the poller re-queues it).
    ///
    /// Always one release read-modify-write, even when `SCHEDULED` is already set: whatever
    /// the waker wrote before waking (a channel's message, a flag) must happen before the poll
    /// this wake asks for, and the poll starts with an acquire read-modify-write of the same
    /// word (`transition_to_running`). Two RMWs on one word are ordered, so either the poll's
    /// swap reads this wake's write and sees what the waker wrote, or this wake comes after the
    /// swap, finds `RUNNING`, and the poller runs the job once more. A plain load that found
    /// `SCHEDULED` (as an earlier version did) orders nothing, and the wake could be lost.
    /// On a `COMPLETE` job the bit it adds is ignored by everyone.
    #[inline]
    pub(crate) fn transition_to_scheduled(&self) -> bool {
        let prev = self.state.fetch_or(SCHEDULED, Ordering::AcqRel);
        prev & (COMPLETE | SCHEDULED | RUNNING) == 0
    }

    /// Takes a dequeued job into the running state. Returns whether the job was polled
    /// before (it yielded or was woken), as opposed to starting now.
    ///
    /// An acquire swap, not a plain store: it must read whatever wake came last, so that the
    /// poll sees everything the wakers wrote before waking (see `transition_to_scheduled`).
    /// Swapping loses nobody's update (invariant 5: while `SCHEDULED` is set nobody else writes
    /// the word, and wakers that find `SCHEDULED` only set it again).
    #[inline]
    pub(crate) fn transition_to_running(&self) -> bool {
        let prev = self.state.swap(RUNNING | POLLED, Ordering::Acquire);
        debug_assert_eq!(
            prev & (SCHEDULED | RUNNING | COMPLETE),
            SCHEDULED,
            "a job was dequeued that is not scheduled, or is running or complete"
        );
        prev & POLLED != 0
    }

    /// Ends a poll that returned `Pending`.
    pub(crate) fn transition_to_idle(&self) -> AfterPoll {
        let mut s = self.state.load(Ordering::Acquire);
        loop {
            debug_assert!(s & RUNNING != 0);
            match self.state.compare_exchange_weak(
                s,
                s & !RUNNING,
                Ordering::AcqRel,
                Ordering::Acquire,
            ) {
                // SCHEDULED stays set: the job goes back into a queue, exactly once.
                Ok(_) if s & SCHEDULED != 0 => return AfterPoll::Requeue,
                Ok(_) => return AfterPoll::Idle,
                Err(actual) => s = actual,
            }
        }
    }

    /// Ends the last poll: a plain store (invariant 5: a concurrent wake can only have added
    /// `SCHEDULED`, which completion rightly erases; later wakes see `COMPLETE`).
    pub(crate) fn transition_to_complete(&self) {
        self.state.store(COMPLETE, Ordering::Release);
    }

    /// Publishes the output to the handle. Returns the handle word before, so the caller knows
    /// whether the handle is gone (it must drop the output) or waits (it must wake it). A job
    /// spawned without a handle, or whose handle is already gone, needs no read-modify-write.
    pub(crate) fn publish_output(&self, panicked: bool) -> u32 {
        let h = self.handle.load(Ordering::Acquire);
        if h & DETACHED != 0 {
            // Once set, DETACHED stays; the handle that set it saw no DONE and left the
            // output to us.
            return h;
        }
        let add = if panicked { DONE | PANICKED } else { DONE };
        self.handle.fetch_or(add, Ordering::AcqRel)
    }

    /// Sets `LOCKED` in the handle word (spinning while someone else holds it) unless `stop`
    /// says to give up. Returns the word seen when the lock was taken, or `Err(word)`.
    fn lock_awaiter(&self, stop: impl Fn(u32) -> bool, extra: u32) -> Result<u32, u32> {
        let mut spins = 0u32;
        let mut s = self.handle.load(Ordering::Acquire);
        loop {
            if stop(s) {
                return Err(s);
            }
            if s & LOCKED != 0 {
                backoff(&mut spins);
                s = self.handle.load(Ordering::Acquire);
                continue;
            }
            match self.handle.compare_exchange_weak(
                s,
                s | LOCKED | extra,
                Ordering::AcqRel,
                Ordering::Acquire,
            ) {
                Ok(_) => return Ok(s),
                Err(actual) => s = actual,
            }
        }
    }

    /// Registers `waker` to be woken when the job completes. Returns the handle word if the
    /// job is already done (nothing registered), or `None` once the waker is in place.
    ///
    /// The waker is cloned before `LOCKED` is taken and the old one dropped after it is
    /// released: user code (a foreign waker's clone or drop) never runs under the lock, so a
    /// panic there cannot leave it held.
    pub(crate) fn register_awaiter(&self, waker: &Waker) -> Option<u32> {
        let new = Wake::new(waker, self.shared);
        if let Err(s) = self.lock_awaiter(|s| s & DONE != 0, 0) {
            drop(new);
            return Some(s);
        }
        // SAFETY: we hold LOCKED (invariant 3), so nobody else touches the slot.
        let old = self
            .awaiter
            .with_mut(|slot| unsafe { (*slot).replace(new) });
        let prev = self
            .handle
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |s| {
                Some((s & !LOCKED) | AWAITER)
            });
        let prev = prev.unwrap_or_else(|s| s);
        drop(old);
        // If the job finished while we held the lock, the completer is spinning for the lock
        // and will wake our waker; report completion now so the awaiter need not wait for it.
        (prev & DONE != 0).then_some(prev)
    }

    /// Called by the completing worker when `publish_output` returned `AWAITER` or `LOCKED`:
    /// takes the awaiter out, to be woken by the caller once the lock is released.
    pub(crate) fn take_awaiter(&self) -> Option<Wake> {
        let _ = self.lock_awaiter(|_| false, 0);
        // SAFETY: we hold LOCKED (invariant 3).
        let waker = self.awaiter.with_mut(|slot| unsafe { (*slot).take() });
        self.handle
            .fetch_and(!(LOCKED | AWAITER), Ordering::Release);
        waker
    }

    /// Detaches a handle that registered a waker: sets `DETACHED`, takes the registered waker
    /// out and releases the lock. Returns the handle word before and the waker, which the caller
    /// drops (user code) with no lock held.
    pub(crate) fn detach(&self) -> (u32, Option<Wake>) {
        let s = self.lock_awaiter(|_| false, DETACHED).unwrap_or_else(|s| s);
        // SAFETY: we hold LOCKED (invariant 3); the handle owns the waker it registered.
        let waker = self.awaiter.with_mut(|slot| unsafe { (*slot).take() });
        self.handle
            .fetch_and(!(LOCKED | AWAITER), Ordering::Release);
        (s, waker)
    }

    /// Detaches a handle that never registered a waker: the awaiter slot is empty, so one
    /// read-modify-write settles who drops the output. Returns the handle word before.
    pub(crate) fn detach_unregistered(&self) -> u32 {
        self.handle.fetch_or(DETACHED, Ordering::AcqRel)
    }
}

/// A pointer to a live job header, as it travels through queues.
///
/// # Invariants
/// Points at a header of the current frame (header invariant 1).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct JobRef(pub(crate) NonNull<Header>);

// SAFETY: headers are `Sync` and the pointee outlives the reference (invariant).
unsafe impl Send for JobRef {}

impl JobRef {
    /// # Safety
    /// 1. The header must still be live (its frame has not ended).
    #[inline]
    pub(crate) unsafe fn header<'a>(self) -> &'a Header {
        // SAFETY: caller guarantees liveness (1); headers are only shared, never `&mut`.
        unsafe { self.0.as_ref() }
    }
}

/// An intrusive FIFO of jobs linked through `Header::next`. Pushing never allocates.
///
/// # Invariants
/// 1. Every job on the list is live and on no other list.
/// 2. The list is only touched by one thread at a time (under a lock, or by its owner).
#[derive(Debug)]
pub(crate) struct JobList {
    head: *const Header,
    tail: *const Header,
    len: usize,
}

// SAFETY: a `JobList` is only moved between threads under a lock (invariant 2).
unsafe impl Send for JobList {}

impl JobList {
    pub(crate) const fn new() -> JobList {
        JobList {
            head: ptr::null(),
            tail: ptr::null(),
            len: 0,
        }
    }

    /// # Safety
    /// 1. `job` is live and on no other list, and stays so until popped.
    pub(crate) unsafe fn push_back(&mut self, job: JobRef) {
        // SAFETY: (1) the job is ours to link; list invariant 2 makes us the only writer.
        unsafe {
            let h = job.header();
            h.next.with_mut(|n| *n = ptr::null());
            if self.tail.is_null() {
                self.head = h;
            } else {
                (*self.tail).next.with_mut(|n| *n = h);
            }
        }
        self.tail = job.0.as_ptr();
        self.len += 1;
    }

    pub(crate) fn pop_front(&mut self) -> Option<JobRef> {
        let head = NonNull::new(self.head as *mut Header)?;
        // SAFETY: list invariant 1: the head is live and linked only here.
        let next = unsafe { head.as_ref().next.with(|n| *n) };
        self.head = next;
        if next.is_null() {
            self.tail = ptr::null();
        }
        self.len -= 1;
        Some(JobRef(head))
    }
}

/// The header's size, which every job pays: 88 bytes on 64-bit targets (80 before jobs carried
/// a label). A job of a future up to 40 bytes (an `async move` block holding a slice and a
/// reference) fits in two cache lines with its stage.
#[cfg(all(test, not(loom), target_pointer_width = "64"))]
#[test]
fn header_size() {
    assert_eq!(core::mem::size_of::<Header>(), 88);
    assert_eq!(core::mem::size_of::<Label>(), 8);
}
