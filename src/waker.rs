//! Wakers: our own `RawWaker` vtables, with no allocation and no `Arc` per job.
//!
//! A job is polled with a *borrowed* waker whose data pointer is the job header itself: free to
//! make, valid for the poll. Only when a future clones it (to keep it past the poll) does the job
//! get a [`WakeCell`]: a small refcounted cell taken from the polling worker's pool, which owned
//! wakers point at. At frame end every cell handed out is *orphaned*: from then on its wakers do
//! nothing, and the last one dropped frees it. So a waker that outlives its frame, or its
//! `Scheduler`, can be woken, cloned and dropped harmlessly, and never reaches a job of the next
//! frame. Cells whose wakers were all dropped within the frame go back to the pool, so steady
//! frames allocate none.

use core::ptr::{self, NonNull};
use core::task::{RawWaker, RawWakerVTable, Waker};
use std::mem::ManuallyDrop;

use crate::job::Header;
use crate::sync::{AtomicUsize, Ordering, UnsafeCell};
use crate::worker::Shared;

/// Whom to wake when a handle's job or a counter is done: a job of the same frame, named by its
/// header (no clone, no cell, no refcount), or any other waker.
///
/// # Invariants
/// `Job(h)` is only made from our own borrowed waker, during `h`'s poll, for a handle or counter
/// of a frame of the same scheduler as `h`. A scheduler runs one frame at a time, so that is
/// `h`'s frame, and handles and counters are only ever woken within their frame: `h` is live
/// whenever it is woken.
#[derive(Debug)]
pub(crate) enum Wake {
    Job(NonNull<Header>),
    Other(Waker),
}

// SAFETY: headers are `Sync` and live while reachable (invariant); `Waker` is `Send`.
unsafe impl Send for Wake {}

impl Wake {
    /// The cheapest form of `waker`, for a handle or counter of a frame of the scheduler
    /// `shared`. Clones a foreign waker, which runs user code: call it before taking any lock.
    pub(crate) fn new(waker: &Waker, shared: *const Shared) -> Wake {
        if ptr::eq(waker.vtable(), &BORROWED) {
            let header = waker.data().cast::<Header>();
            // SAFETY: a borrowed waker exists only during its job's poll: the header is live.
            if ptr::eq(unsafe { (*header).shared }, shared) {
                // SAFETY: the data pointer of a borrowed waker is never null.
                return Wake::Job(unsafe { NonNull::new_unchecked(header.cast_mut()) });
            }
        }
        Wake::Other(waker.clone())
    }

    /// Wakes the task. A foreign waker runs user code, which may panic: call it with no lock
    /// held and no structure half updated.
    pub(crate) fn wake(self) {
        match self {
            // SAFETY: type invariant: the header is live whenever it is woken.
            Wake::Job(header) => unsafe { crate::harness::wake_job(header) },
            Wake::Other(waker) => waker.wake(),
        }
    }
}

/// Set once the cell's frame has ended: wakes do nothing.
const ORPHANED: usize = 1;
/// One wake in progress (it may be touching the job header).
const WAKING_ONE: usize = 1 << 1;
const WAKING_MASK: usize = ((1 << 16) - 1) & !ORPHANED;
/// One owned waker pointing at this cell.
const REF_ONE: usize = 1 << 16;

/// What an owned waker points at.
///
/// # Invariants
/// 1. While `ORPHANED` is clear, `target` is a live header of the running frame.
/// 2. `ORPHANED` is set (by the driver at frame end) before that frame's arenas are reset, and
///    the driver then waits, holding a reference of its own so the cell cannot be freed under
///    it, until no wake is in progress (`WAKING` count zero).
/// 3. A cell with `ORPHANED` set is owned by its wakers: the one that drops the last reference
///    frees it. A cell reaching frame end with no reference goes back to its pool.
/// 4. `next` is touched only by the pool/list that owns the cell (one thread at a time).
pub(crate) struct WakeCell {
    state: AtomicUsize,
    target: UnsafeCell<*const Header>,
    pub(crate) next: UnsafeCell<*mut WakeCell>,
}

#[cfg(loom)]
loom::lazy_static! {
    /// Wake cells dropped so far in this loom execution (a test hook, read through
    /// `loom_api::wake_cells_freed`). A plain std atomic, so that counting adds no
    /// synchronisation to the model.
    pub(crate) static ref CELLS_FREED: std::sync::atomic::AtomicUsize =
        std::sync::atomic::AtomicUsize::new(0);
}

#[cfg(loom)]
impl Drop for WakeCell {
    fn drop(&mut self) {
        CELLS_FREED.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    }
}

impl WakeCell {
    fn new() -> WakeCell {
        WakeCell {
            state: AtomicUsize::new(0),
            target: UnsafeCell::new(ptr::null()),
            next: UnsafeCell::new(ptr::null_mut()),
        }
    }
}

/// Orphaned cells whose last waker was dropped, linked through `next`, for any pool to reuse:
/// a kept waker then costs no allocation in the frames after it. The lock is taken only when a
/// pool runs dry and when an orphaned cell's last waker is dropped, never on the spawn path.
#[cfg(not(loom))]
static RECYCLED: std::sync::Mutex<Recycled> = std::sync::Mutex::new(Recycled(ptr::null_mut(), 0));

/// The head of the recycling list, and how many schedulers are alive (while none is, cells
/// are freed instead: nothing would reuse them).
///
/// # Invariants
/// 1. Every cell on the list is unreferenced, made by `Box::new`, and reached only through the
///    list (whose lock makes its `next` ours).
#[cfg(not(loom))]
struct Recycled(*mut WakeCell, usize);

// SAFETY: the cells on the list are reached only through it, under its lock (invariant 1).
#[cfg(not(loom))]
unsafe impl Send for Recycled {}

/// Gives a cell nobody references any more to the recycling list (under loom: frees it, so
/// the models see every cell's end).
///
/// # Safety
/// 1. `cell` was made by `Box::new`, and the caller held its last reference.
unsafe fn recycle(cell: *mut WakeCell) {
    #[cfg(not(loom))]
    {
        let mut list = RECYCLED.lock().unwrap_or_else(|e| e.into_inner());
        if list.1 == 0 {
            drop(list);
            // SAFETY: (1).
            drop(unsafe { Box::from_raw(cell) });
            return;
        }
        // SAFETY: (1): the cell is ours; invariant 1 of the list for the rest.
        unsafe {
            (*cell).state.store(0, Ordering::Relaxed);
            (*cell).next.with_mut(|n| *n = list.0);
        }
        list.0 = cell;
    }
    #[cfg(loom)]
    // SAFETY: (1).
    drop(unsafe { Box::from_raw(cell) });
}

/// A scheduler of `workers` workers was built: orphaned cells are worth keeping for reuse.
/// The list gets one spare cell per worker: in a steady frame where each job replaces a kept
/// waker with a new one, every worker may take a cell before any old one comes back, and the
/// list must not run dry then.
pub(crate) fn scheduler_started(workers: usize) {
    #[cfg(not(loom))]
    {
        let mut list = RECYCLED.lock().unwrap_or_else(|e| e.into_inner());
        list.1 += 1;
        for _ in 0..workers {
            let cell = Box::into_raw(Box::new(WakeCell::new()));
            // SAFETY: a new cell, ours; list invariant 1 for the rest.
            unsafe { (*cell).next.with_mut(|n| *n = list.0) };
            list.0 = cell;
        }
    }
    #[cfg(loom)]
    let _ = workers;
}

/// A scheduler was dropped. When it was the last, every recycled cell is freed (and cells
/// orphaned later are freed by their last waker), so that no memory is kept for schedulers
/// that no longer exist.
pub(crate) fn scheduler_stopped() {
    #[cfg(not(loom))]
    {
        let mut cur = {
            let mut list = RECYCLED.lock().unwrap_or_else(|e| e.into_inner());
            list.1 -= 1;
            if list.1 > 0 {
                return;
            }
            core::mem::replace(&mut list.0, ptr::null_mut())
        };
        while let Some(cell) = NonNull::new(cur) {
            // SAFETY: list invariant 1: the cells were unreferenced and made by `Box::new`; we
            // took the whole list, so they are ours alone.
            unsafe {
                cur = cell.as_ref().next.with(|n| *n);
                drop(Box::from_raw(cell.as_ptr()));
            }
        }
    }
}

/// A cell from the recycling list, if it has one.
fn recycled_pop() -> Option<NonNull<WakeCell>> {
    #[cfg(not(loom))]
    {
        let mut list = RECYCLED.lock().unwrap_or_else(|e| e.into_inner());
        let cell = NonNull::new(list.0)?;
        // SAFETY: list invariant 1: the cell and its `next` are ours under the lock.
        list.0 = unsafe { cell.as_ref().next.with(|n| *n) };
        Some(cell)
    }
    #[cfg(loom)]
    None
}

/// A per-worker pool of wake cells plus the list of those handed out this frame.
///
/// # Invariants
/// 1. Only one thread uses a pool at a time: its worker during the frame (or, for the foreign
///    pool, whoever holds its lock), the driver at frame end.
/// 2. Every cell on `free` is unreferenced and not orphaned; every cell on `in_use` has been
///    handed out this frame and not yet orphaned.
#[derive(Debug)]
pub(crate) struct CellPool {
    free: *mut WakeCell,
    in_use: *mut WakeCell,
}

// SAFETY: the pool's cells are only reached through the pool by one thread at a time (invariant 1).
unsafe impl Send for CellPool {}

impl CellPool {
    pub(crate) const fn new() -> CellPool {
        CellPool {
            free: ptr::null_mut(),
            in_use: ptr::null_mut(),
        }
    }

    /// Hands out a cell (from the free list, or a new one) pointing at `target` with one
    /// reference, and records it as in use.
    pub(crate) fn acquire(&mut self, target: *const Header) -> NonNull<WakeCell> {
        let cell = match NonNull::new(self.free) {
            Some(cell) => {
                // SAFETY: pool invariant 2: free cells are ours alone.
                self.free = unsafe { cell.as_ref().next.with(|n| *n) };
                cell
            }
            None => recycled_pop()
                .unwrap_or_else(|| NonNull::from(Box::leak(Box::new(WakeCell::new())))),
        };
        // SAFETY: the cell is unreferenced (pool invariant 2) until we return it.
        unsafe {
            let c = cell.as_ref();
            c.target.with_mut(|t| *t = target);
            c.state.store(REF_ONE, Ordering::Relaxed);
            c.next.with_mut(|n| *n = self.in_use);
        }
        self.in_use = cell.as_ptr();
        cell
    }

    /// Gives a cell that lost the race to become a job's cell back (it was never shared).
    fn unacquire(&mut self, cell: NonNull<WakeCell>) {
        debug_assert_eq!(self.in_use, cell.as_ptr());
        // SAFETY: the cell was just acquired and never published.
        unsafe {
            self.in_use = cell.as_ref().next.with(|n| *n);
            cell.as_ref().state.store(0, Ordering::Relaxed);
            cell.as_ref().next.with_mut(|n| *n = self.free);
        }
        self.free = cell.as_ptr();
    }

    /// Frame end: orphans every cell handed out this frame. Cells nobody references go back to
    /// the free list; the others now belong to their wakers.
    ///
    /// # Safety
    /// 1. The frame the cells were handed out in has ended: no job will be polled again, so no
    ///    borrowed waker exists and no new reference to these cells can appear except by cloning
    ///    an owned waker.
    pub(crate) unsafe fn orphan_all(&mut self) {
        let mut cur = self.in_use;
        self.in_use = ptr::null_mut();
        while let Some(cell) = NonNull::new(cur) {
            // SAFETY: cells on `in_use` are live: at least this pool or a waker owns them, and a
            // waker cannot free one before it is orphaned (cell invariant 3).
            let c = unsafe { cell.as_ref() };
            // SAFETY: pool invariant 1: only we touch `next` of our cells.
            cur = c.next.with(|n| unsafe { *n });
            // Orphan it and hold a reference of our own while we wait (cell invariant 2): a
            // waker dropping the last of *its* references meanwhile must not free the cell
            // under us. ORPHANED is clear before, so adding it sets it.
            c.state.fetch_add(ORPHANED + REF_ONE, Ordering::AcqRel);
            let mut spins = 0;
            while c.state.load(Ordering::Acquire) & WAKING_MASK != 0 {
                crate::sync::backoff(&mut spins);
            }
            let before = c.state.fetch_sub(REF_ONE, Ordering::AcqRel);
            if before & !WAKING_MASK == ORPHANED | REF_ONE {
                // Ours was the last reference, and (1) no new one can appear: recycle it.
                c.state.store(0, Ordering::Relaxed);
                // SAFETY: pool invariant 1.
                c.next.with_mut(|n| unsafe { *n = self.free });
                self.free = cell.as_ptr();
            }
            // Otherwise its wakers own it now; the last one dropped frees it.
        }
    }

    /// Frees every cell on the free list (the scheduler is going away).
    pub(crate) fn free_all(&mut self) {
        debug_assert!(
            self.in_use.is_null(),
            "cells still in use when a pool is dropped"
        );
        let mut cur = self.free;
        self.free = ptr::null_mut();
        while let Some(cell) = NonNull::new(cur) {
            // SAFETY: free cells are unreferenced and owned by the pool (pool invariant 2).
            unsafe {
                cur = cell.as_ref().next.with(|n| *n);
                drop(Box::from_raw(cell.as_ptr()));
            }
        }
    }
}

/// Makes the waker a job is polled with: it borrows the header and is valid during the poll.
///
/// # Safety
/// 1. `header` is live for as long as the returned waker is used (the poll).
pub(crate) unsafe fn borrowed(header: NonNull<Header>) -> ManuallyDrop<Waker> {
    let raw = RawWaker::new(header.as_ptr().cast_const().cast(), &BORROWED);
    // SAFETY: the BORROWED vtable's contract holds for a live header (1).
    ManuallyDrop::new(unsafe { Waker::from_raw(raw) })
}

static BORROWED: RawWakerVTable =
    RawWakerVTable::new(borrowed_clone, borrowed_wake, borrowed_wake, borrowed_drop);

/// Makes an owned waker from a cell `acquire` just handed out (taking over its reference).
///
/// # Safety
/// 1. `cell` came from `CellPool::acquire` and its one reference is given to the waker.
#[cfg(loom)]
pub(crate) unsafe fn owned_waker(cell: NonNull<WakeCell>) -> Waker {
    // SAFETY: (1): the OWNED vtable's contract holds for a referenced cell.
    unsafe { Waker::from_raw(RawWaker::new(cell.as_ptr().cast_const().cast(), &OWNED)) }
}

static OWNED: RawWakerVTable =
    RawWakerVTable::new(owned_clone, owned_wake, owned_wake_by_ref, owned_drop);

/// `clone` of a borrowed waker: turns it into an owned one, finding or creating the job's cell.
///
/// # Safety
/// 1. `data` is the header pointer of a waker made by [`borrowed`], during its job's poll.
unsafe fn borrowed_clone(data: *const ()) -> RawWaker {
    let header = data.cast::<Header>();
    // SAFETY: a borrowed waker exists only during a poll, so the header is live.
    let h = unsafe { &*header };
    let existing = h.wake_cell.load(Ordering::Acquire);
    if !existing.is_null() {
        // SAFETY: a job's cell is live until frame end (cell invariant 3), which cannot come
        // during a poll.
        unsafe { (*existing).state.fetch_add(REF_ONE, Ordering::Relaxed) };
        return RawWaker::new(existing.cast_const().cast(), &OWNED);
    }
    crate::context::with_cell_pool(h, |pool| {
        let cell = pool.acquire(header);
        match h.wake_cell.compare_exchange(
            ptr::null_mut(),
            cell.as_ptr(),
            Ordering::AcqRel,
            Ordering::Acquire,
        ) {
            Ok(_) => RawWaker::new(cell.as_ptr().cast_const().cast(), &OWNED),
            Err(winner) => {
                pool.unacquire(cell);
                // SAFETY: as above, the winner's cell is live during the poll.
                unsafe { (*winner).state.fetch_add(REF_ONE, Ordering::Relaxed) };
                RawWaker::new(winner.cast_const().cast(), &OWNED)
            }
        }
    })
}

/// `wake` / `wake_by_ref` of a borrowed waker.
///
/// # Safety
/// As for [`borrowed_clone`].
unsafe fn borrowed_wake(data: *const ()) {
    // SAFETY: a borrowed waker exists only during a poll, so the header is live.
    unsafe { crate::harness::wake_job(NonNull::new_unchecked(data as *mut Header)) };
}

/// `drop` of a borrowed waker: it owns nothing.
///
/// # Safety
/// None needed: it touches nothing.
unsafe fn borrowed_drop(_: *const ()) {}

/// `clone` of an owned waker: one more reference to its cell.
///
/// # Safety
/// 1. `data` is the cell pointer of a live owned waker (which holds a reference).
unsafe fn owned_clone(data: *const ()) -> RawWaker {
    // SAFETY: an owned waker holds a reference, so the cell is live (cell invariant 3).
    let cell = unsafe { &*data.cast::<WakeCell>() };
    let prev = cell.state.fetch_add(REF_ONE, Ordering::Relaxed);
    if prev > usize::MAX / 2 {
        std::process::abort(); // reference count overflow, as `Arc` does
    }
    RawWaker::new(data, &OWNED)
}

/// `wake` of an owned waker: wakes, then gives up the waker's reference.
///
/// # Safety
/// As for [`owned_clone`]; the waker is consumed.
unsafe fn owned_wake(data: *const ()) {
    // SAFETY: we own a reference (this waker), which we use, then give up.
    unsafe {
        owned_wake_by_ref(data);
        owned_drop(data);
    }
}

/// `wake_by_ref` of an owned waker: wakes the job unless the cell's frame has ended.
///
/// # Safety
/// As for [`owned_clone`].
unsafe fn owned_wake_by_ref(data: *const ()) {
    // SAFETY: an owned waker holds a reference, so the cell is live (cell invariant 3).
    let cell = unsafe { &*data.cast::<WakeCell>() };
    let before = cell.state.fetch_add(WAKING_ONE, Ordering::AcqRel);
    if before & ORPHANED == 0 {
        // SAFETY: `target` is written only before the cell is shared (in `acquire`).
        let target = cell.target.with(|t| unsafe { *t });
        // SAFETY: not orphaned, and the driver waits for our WAKING count to drop before it
        // resets the arena (cell invariants 1, 2): the header is live.
        unsafe { crate::harness::wake_job(NonNull::new_unchecked(target as *mut Header)) };
    }
    cell.state.fetch_sub(WAKING_ONE, Ordering::Release);
}

/// `drop` of an owned waker: gives up its reference, freeing an orphaned cell with the last.
///
/// # Safety
/// As for [`owned_clone`]; the waker is consumed.
unsafe fn owned_drop(data: *const ()) {
    let cell = data.cast::<WakeCell>().cast_mut();
    // SAFETY: we own a reference, so the cell is live (cell invariant 3).
    let before = unsafe { (*cell).state.fetch_sub(REF_ONE, Ordering::AcqRel) };
    if before & !WAKING_MASK == ORPHANED | REF_ONE {
        // The last reference to an orphaned cell: no waker is left, so no wake is in progress,
        // and the pool let go of it (cell invariant 3).
        // SAFETY: we hold the last reference to a cell made by `Box::new` in `acquire`.
        unsafe { recycle(cell) };
    }
}
