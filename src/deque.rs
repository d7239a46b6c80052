//! A worker's job queue: a fixed-capacity Chase-Lev work-stealing deque.
//!
//! The owner pushes and pops at the bottom (LIFO: the job it just spawned is hot in its cache);
//! thieves steal from the top (FIFO: the oldest, usually the biggest, piece of work). The
//! algorithm and its memory orderings are those of Lê, Pop, Cohen and Zappa Nardelli, *Correct
//! and Efficient Work-Stealing for Weak Memory Models* (PPoPP 2013), with two changes:
//!
//! - **Fixed capacity.** The buffer is allocated once and never grows or shrinks, so a frame
//!   makes no allocation (crossbeam-deque, which this would otherwise be, doubles and halves its
//!   buffer as the queue fills and drains, freeing the old ones through epoch reclamation: a
//!   10 000-job burst would allocate every frame). A push onto a full deque fails and the caller
//!   sends the job to the shared overflow list.
//! - **Batch steals.** A thief takes up to half the jobs (at most [`BATCH`]) per visit, one CAS
//!   each; the caller runs the first and pushes the others onto its own deque, where they are
//!   visible to thieves again (crossbeam's `steal_batch_and_pop`).
//!
//! Every queued job is visible to thieves at all times: each push publishes `bottom` at once,
//! and the owner pops one job at a time, so no job ever sits in a private batch while its
//! holder runs something else. A job may block its thread, or compute for long, while its
//! siblings wait in the deque: idle workers can always take them (earlier versions published
//! lazily and popped in batches, which hid jobs from idle workers and could hang a frame whose
//! job waited on a hidden sibling).
//!
//! Slots are `AtomicPtr`s: a thief reads a slot before its compare-and-swap decides whether the
//! job is its own, and that read may race with the owner refilling the slot; with atomic slots
//! the race is benign (the thief discards what it read when its CAS fails).
//!
//! Owner push: slot store, release store of `bottom`: no read-modify-write, no fence.
//! Owner pop: bottom store, `SeqCst` fence, top load; a CAS only for the last job.
//! Steal: top load, `SeqCst` fence, bottom load, slot load, CAS on top; up to half the deque
//! (at most [`BATCH`] jobs) per steal, one CAS each.

use core::ptr::{self, NonNull};

use crossbeam_utils::CachePadded;

use crate::job::{Header, JobRef};
use crate::sync::{AtomicPtr, AtomicUsize, Ordering, UnsafeCell, fence};

/// The most jobs a thief takes per visit.
pub(crate) const BATCH: usize = 8;

/// A fixed-capacity work-stealing deque of jobs.
///
/// # Invariants
/// 1. `top` only increases; `bottom` is written only by the owner.
/// 2. Slots `top..bottom` (modulo the capacity) hold jobs; the owner never writes a slot while
///    `bottom - top >= capacity` (it would overwrite a job not yet taken).
/// 3. Each job pushed is taken exactly once: by the owner's pop, or by one thief's successful
///    CAS on `top`.
/// 4. Every job pushed and not yet taken is in `top..bottom` as thieves read them: the owner
///    holds no job it took from the deque except the one it is about to run.
pub(crate) struct Deque {
    top: CachePadded<AtomicUsize>,
    bottom: CachePadded<AtomicUsize>,
    /// The owner's private state (see [`Owner`]).
    owner: CachePadded<UnsafeCell<Owner>>,
    slots: Box<[AtomicPtr<Header>]>,
    mask: usize,
}

/// What only the owner touches.
///
/// # Invariants
/// 1. `top_cache` was read from `top` at some point; `top` only increases, so it is a lower
///    bound and overstates the length, which is safe for the full check.
#[derive(Debug)]
struct Owner {
    top_cache: usize,
}

// SAFETY: `owner` is touched only by the owner (the `unsafe` contract of `push` and `pop`);
// everything else is atomic.
unsafe impl Sync for Deque {}
// SAFETY: as above.
unsafe impl Send for Deque {}

impl core::fmt::Debug for Deque {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("Deque")
            .field("capacity", &self.slots.len())
            .finish_non_exhaustive()
    }
}

/// `a - b` as a signed distance (indices wrap around `usize`).
#[inline]
fn distance(a: usize, b: usize) -> isize {
    a.wrapping_sub(b) as isize
}

impl Deque {
    /// A deque holding at least `capacity` jobs (rounded up to a power of two), or `None` if
    /// the memory for its slots cannot be had.
    pub(crate) fn try_new(capacity: usize) -> Option<Deque> {
        let capacity = capacity.checked_next_power_of_two()?;
        let mut slots = Vec::new();
        slots.try_reserve_exact(capacity).ok()?;
        slots.extend((0..capacity).map(|_| AtomicPtr::new(ptr::null_mut())));
        Some(Deque {
            top: CachePadded::new(AtomicUsize::new(0)),
            bottom: CachePadded::new(AtomicUsize::new(0)),
            owner: CachePadded::new(UnsafeCell::new(Owner { top_cache: 0 })),
            slots: slots.into_boxed_slice(),
            mask: capacity - 1,
        })
    }

    /// (top, bottom) as a thief sees them now (may be stale at once).
    #[inline]
    pub(crate) fn snapshot(&self) -> (usize, usize) {
        let t = self.top.load(Ordering::Acquire);
        let b = self.bottom.load(Ordering::Acquire);
        (t, b)
    }

    /// Whether the deque looks empty (a snapshot; may be stale at once).
    #[inline]
    pub(crate) fn is_empty(&self) -> bool {
        let (t, b) = self.snapshot();
        distance(b, t) <= 0
    }

    /// Pushes a job at the bottom, visible to thieves at once. Owner only. `Err` gives the job
    /// back when the deque is full.
    ///
    /// # Safety
    /// 1. Only the deque's owner calls `push` and `pop`.
    #[inline]
    pub(crate) unsafe fn push(&self, job: JobRef) -> Result<(), JobRef> {
        // SAFETY: (1): the owner state is ours.
        let owner = unsafe { &mut *self.owner.with_mut(|o| o) };
        let b = self.bottom.load(Ordering::Relaxed);
        if distance(b, owner.top_cache) >= self.slots.len() as isize {
            // Looks full: read the real `top` (thieves may have made room).
            owner.top_cache = self.top.load(Ordering::Acquire);
            if distance(b, owner.top_cache) >= self.slots.len() as isize {
                return Err(job);
            }
        }
        self.slots[b & self.mask].store(job.0.as_ptr(), Ordering::Relaxed);
        // The slot (and the job it points at) happen before a thief's read of this bottom.
        self.bottom.store(b.wrapping_add(1), Ordering::Release);
        Ok(())
    }

    /// Pops the newest job. Owner only.
    ///
    /// # Safety
    /// 1. Only the deque's owner calls `push` and `pop`.
    pub(crate) unsafe fn pop(&self) -> Option<JobRef> {
        let b = self.bottom.load(Ordering::Relaxed);
        // SAFETY: (1): the owner state is ours.
        let owner = unsafe { &mut *self.owner.with_mut(|o| o) };
        if distance(b, owner.top_cache) <= 0 {
            // Looks empty by our cached `top`, which is a lower bound: it is empty.
            return None;
        }
        let b = b.wrapping_sub(1);
        self.bottom.store(b, Ordering::Relaxed);
        fence(Ordering::SeqCst);
        let t = self.top.load(Ordering::Relaxed);
        owner.top_cache = t;
        let len = distance(b, t);
        if len < 0 {
            // Empty: thieves took the rest.
            self.bottom.store(b.wrapping_add(1), Ordering::Relaxed);
            return None;
        }
        let job = self.load(b);
        if len > 0 {
            return Some(job);
        }
        // The last job: a thief may be taking it too. Whoever moves `top` wins.
        let won = self
            .top
            .compare_exchange(t, t.wrapping_add(1), Ordering::SeqCst, Ordering::Relaxed)
            .is_ok();
        self.bottom.store(b.wrapping_add(1), Ordering::Relaxed);
        won.then_some(job)
    }

    /// Steals up to half the jobs (at most [`BATCH`]), oldest first, into `out`; returns how
    /// many. Any thread. Each job is claimed by its own CAS on `top`, with `bottom` read afresh
    /// before each: the owner pops from the bottom without a CAS while it sees room, so a
    /// thief may never claim past what it has just seen (crossbeam-deque does the same for
    /// LIFO owners).
    ///
    /// Steals nothing unless the deque holds at least `min_len` jobs, and at most `max`.
    pub(crate) fn steal_batch(
        &self,
        out: &mut [Option<JobRef>; BATCH],
        min_len: usize,
        max: usize,
    ) -> usize {
        let mut t = self.top.load(Ordering::Acquire);
        fence(Ordering::SeqCst);
        let b = self.bottom.load(Ordering::Acquire);
        let len = distance(b, t);
        if len <= 0 || (len as usize) < min_len {
            return 0;
        }
        let want = (len as usize).div_ceil(2).min(BATCH).min(max);
        let mut n = 0;
        while n < want {
            if n > 0 {
                fence(Ordering::SeqCst);
                if distance(self.bottom.load(Ordering::Acquire), t) <= 0 {
                    break;
                }
            }
            let job = self.load(t);
            if self
                .top
                .compare_exchange(t, t.wrapping_add(1), Ordering::SeqCst, Ordering::Relaxed)
                .is_err()
            {
                // Lost a race with the owner or another thief: keep what we have.
                break;
            }
            out[n] = Some(job);
            n += 1;
            t = t.wrapping_add(1);
        }
        n
    }

    /// Steals the oldest job. Any thread, the owner included (it takes its own oldest job
    /// this way now and then, so that jobs that keep waking each other at the LIFO end cannot
    /// starve the ones below them).
    pub(crate) fn steal(&self) -> Option<JobRef> {
        loop {
            let t = self.top.load(Ordering::Acquire);
            fence(Ordering::SeqCst);
            let b = self.bottom.load(Ordering::Acquire);
            if distance(b, t) <= 0 {
                return None;
            }
            let job = self.load(t);
            if self
                .top
                .compare_exchange(t, t.wrapping_add(1), Ordering::SeqCst, Ordering::Relaxed)
                .is_ok()
            {
                return Some(job);
            }
            // Lost to another thief or the owner: look again.
        }
    }

    fn load(&self, index: usize) -> JobRef {
        let p = self.slots[index & self.mask].load(Ordering::Relaxed);
        // Every index read is below a `bottom` its reader saw published (a thief's `top` may be
        // stale, so the slot may hold a newer job, which its failing CAS then discards); each
        // such slot was written by a push, and slots are never cleared.
        JobRef(NonNull::new(p).expect("a deque slot in use holds a job"))
    }
}
