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
//! - **Batched pops.** The owner takes up to [`BATCH`] jobs per pop, paying the pop's `SeqCst`
//!   fence once per batch instead of once per job.
//!
//! Slots are `AtomicPtr`s: a thief reads a slot before its compare-and-swap decides whether the
//! job is its own, and that read may race with the owner refilling the slot; with atomic slots
//! the race is benign (the thief discards what it read when its CAS fails).
//!
//! Owner push: slot store, release fence, bottom store: no read-modify-write.
//! Owner pop: bottom store, `SeqCst` fence, top load; a CAS only for the last job.
//! Steal: top load, `SeqCst` fence, bottom load, slot load, CAS on top; up to half the deque
//! (at most [`BATCH`] jobs) per steal, one CAS each.

use core::ptr::{self, NonNull};

use crossbeam_utils::CachePadded;

use crate::job::{Header, JobRef};
use crate::sync::{AtomicPtr, AtomicUsize, Ordering, UnsafeCell, fence};

/// How many jobs the owner takes per pop when it has that many.
pub(crate) const BATCH: usize = 8;

/// A fixed-capacity work-stealing deque of jobs.
///
/// # Invariants
/// 1. `top` only increases; `bottom` is written only by the owner.
/// 2. Slots `top..bottom` (modulo the capacity) hold jobs; the owner never writes a slot while
///    `bottom - top >= capacity` (it would overwrite a job not yet taken).
/// 3. Each job pushed is taken exactly once: by the owner's pop, or by one thief's successful
///    CAS on `top`.
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
/// 1. `published <= bottom` (as indices that wrap): jobs in `published..bottom` were pushed
///    but are not yet visible to thieves, who see `self.bottom == published`.
/// 2. `top_cache` was read from `top` at some point; `top` only increases, so it is a lower
///    bound and overstates the length, which is safe for the full check.
#[derive(Debug)]
struct Owner {
    top_cache: usize,
    bottom: usize,
    published: usize,
}

/// The owner makes its pushes visible to thieves at least every this many pushes (and at once
/// when thieves have taken everything published, at the end of every poll, and before every
/// pop). Publishing writes the `bottom` line thieves keep reading: doing it for every push would
/// make each push win that line back from them.
const PUBLISH_EVERY: usize = 8;

// SAFETY: `owner` is touched only by the owner (the `unsafe` contract of `push`, `publish` and
// `pop`); everything else is atomic.
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
    /// A deque holding at least `capacity` jobs (rounded up to a power of two).
    pub(crate) fn new(capacity: usize) -> Deque {
        let capacity = capacity.next_power_of_two();
        Deque {
            top: CachePadded::new(AtomicUsize::new(0)),
            bottom: CachePadded::new(AtomicUsize::new(0)),
            owner: CachePadded::new(UnsafeCell::new(Owner {
                top_cache: 0,
                bottom: 0,
                published: 0,
            })),
            slots: (0..capacity)
                .map(|_| AtomicPtr::new(ptr::null_mut()))
                .collect(),
            mask: capacity - 1,
        }
    }

    /// (top, bottom) as a thief sees them now (may be stale at once).
    pub(crate) fn snapshot(&self) -> (usize, usize) {
        let t = self.top.load(Ordering::Acquire);
        let b = self.bottom.load(Ordering::Acquire);
        (t, b)
    }

    /// Whether the deque looks empty (a snapshot; may be stale at once).
    pub(crate) fn is_empty(&self) -> bool {
        let t = self.top.load(Ordering::Acquire);
        let b = self.bottom.load(Ordering::Acquire);
        distance(b, t) <= 0
    }

    /// Pushes a job at the bottom. Owner only. `Err` gives the job back when the deque is full;
    /// `Ok(true)` when this push also published jobs to thieves (see [`Deque::publish`]).
    ///
    /// # Safety
    /// 1. Only the deque's owner calls `push`, `publish` and `pop`.
    #[inline]
    pub(crate) unsafe fn push(&self, job: JobRef) -> Result<bool, JobRef> {
        // SAFETY: (1): the owner state is ours.
        let owner = unsafe { &mut *self.owner.with_mut(|o| o) };
        let b = owner.bottom;
        if distance(b, owner.top_cache) >= self.slots.len() as isize {
            // Looks full: read the real `top` (thieves may have made room).
            owner.top_cache = self.top.load(Ordering::Acquire);
            if distance(b, owner.top_cache) >= self.slots.len() as isize {
                return Err(job);
            }
        }
        // The first job after a publication: if thieves have taken everything published, they
        // are waiting for work and this job must be visible at once (a job spawned before its
        // spawner computes on must be stealable meanwhile). One read of `top` per publication.
        let starving = b == owner.published && {
            owner.top_cache = self.top.load(Ordering::Acquire);
            owner.top_cache == owner.published
        };
        self.slots[b & self.mask].store(job.0.as_ptr(), Ordering::Relaxed);
        owner.bottom = b.wrapping_add(1);
        if starving || distance(owner.bottom, owner.published) as usize >= PUBLISH_EVERY {
            // SAFETY: (1).
            return Ok(unsafe { self.publish() });
        }
        Ok(false)
    }

    /// Makes every job pushed so far visible to thieves. Returns whether there were new ones.
    /// The owner calls it at the end of every poll, so that jobs a job spawned can be stolen
    /// while the owner goes on to other work.
    ///
    /// # Safety
    /// 1. Only the deque's owner calls `push`, `publish` and `pop`.
    #[inline]
    pub(crate) unsafe fn publish(&self) -> bool {
        // SAFETY: (1).
        let owner = unsafe { &mut *self.owner.with_mut(|o| o) };
        if owner.published == owner.bottom {
            return false;
        }
        // The slots written since the last publication happen before a thief's read of them.
        fence(Ordering::Release);
        self.bottom.store(owner.bottom, Ordering::Relaxed);
        owner.published = owner.bottom;
        true
    }

    /// After a pop moved `self.bottom`, the owner's copies follow it.
    fn settle(&self, owner: &mut Owner) {
        let b = self.bottom.load(Ordering::Relaxed);
        owner.bottom = b;
        owner.published = b;
    }

    /// Pops up to [`BATCH`] jobs from the bottom into `out`, newest first; returns how many.
    /// Owner only.
    ///
    /// # Safety
    /// 1. Only the deque's owner calls `push`, `publish` and `pop`.
    pub(crate) unsafe fn pop(&self, out: &mut [Option<JobRef>; BATCH]) -> usize {
        // Publish first: the pop below works on `self.bottom` and the usual Chase-Lev argument.
        // SAFETY: (1).
        unsafe { self.publish() };
        // SAFETY: (1): the owner state is ours; `settle` keeps it in step with the pop.
        let owner = unsafe { &mut *self.owner.with_mut(|o| o) };
        let n = self.pop_published(out);
        self.settle(owner);
        n
    }

    /// The pop proper, on published jobs only (all of them, after `publish`).
    fn pop_published(&self, out: &mut [Option<JobRef>; BATCH]) -> usize {
        let b = self.bottom.load(Ordering::Relaxed);
        let t = self.top.load(Ordering::Relaxed);
        let len = distance(b, t);
        if len <= 0 {
            return 0;
        }
        // Take at most half, so thieves can always reach the other half, and leave the last job
        // to the single-pop path, which settles it with thieves by CAS.
        let want = (len as usize / 2).min(BATCH);
        if want > 1 {
            let nb = b.wrapping_sub(want);
            self.bottom.store(nb, Ordering::Relaxed);
            fence(Ordering::SeqCst);
            let t = self.top.load(Ordering::Relaxed);
            if distance(nb, t) > 0 {
                // Thieves take only below `nb` now (they see `bottom == nb` or fail their CAS
                // once `top` reaches it): slots nb..b are ours.
                for (k, slot) in out.iter_mut().take(want).enumerate() {
                    let i = b.wrapping_sub(1 + k);
                    *slot = Some(self.load(i));
                }
                return want;
            }
            // Thieves got close: put bottom back and take one job the careful way.
            self.bottom.store(b, Ordering::Relaxed);
        }
        match self.pop_one() {
            Some(job) => {
                out[0] = Some(job);
                1
            }
            None => 0,
        }
    }

    /// The classic single pop, racing thieves for the last job.
    fn pop_one(&self) -> Option<JobRef> {
        let b = self.bottom.load(Ordering::Relaxed).wrapping_sub(1);
        self.bottom.store(b, Ordering::Relaxed);
        fence(Ordering::SeqCst);
        let t = self.top.load(Ordering::Relaxed);
        let len = distance(b, t);
        if len < 0 {
            // Empty.
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
    /// Steals nothing unless the deque holds at least `min_len` jobs.
    pub(crate) fn steal_batch(&self, out: &mut [Option<JobRef>; BATCH], min_len: usize) -> usize {
        let mut t = self.top.load(Ordering::Acquire);
        fence(Ordering::SeqCst);
        let b = self.bottom.load(Ordering::Acquire);
        let len = distance(b, t);
        if len <= 0 || (len as usize) < min_len {
            return 0;
        }
        let want = (len as usize).div_ceil(2).min(BATCH);
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

    /// Steals the oldest job. Any thread.
    #[cfg(loom)]
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
