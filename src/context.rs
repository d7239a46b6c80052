//! Which worker of which scheduler this thread is (tokio's `runtime/context.rs`).
//!
//! A thread-local [`Current`] says whether the running thread is a worker, of which scheduler,
//! and whether the code running now may call `spawn_local`. [`enter`] makes a thread a worker
//! (a background thread for its whole life, the driving thread for one `run_frame`), and
//! [`with_cell_pool`] picks the wake-cell pool a thread should use for a job.

use core::cell::Cell;
use core::ptr;

use crate::job::Header;
use crate::priority::Priority;
use crate::waker::CellPool;
use crate::worker::Shared;

/// Which worker of which scheduler this thread is, if any.
#[derive(Clone, Copy)]
pub(crate) struct Current {
    pub(crate) shared: *const Shared,
    pub(crate) index: usize,
    /// Whether the code running now may call `spawn_local`: the root future or a local job.
    pub(crate) local_ok: bool,
    /// The priority of the job (or root future) being polled on this thread: what its spawns
    /// inherit. Kept here, beside what a spawn reads anyway, rather than in the worker's state.
    pub(crate) priority: Priority,
}

impl Current {
    /// This thread's index among `shared`'s workers, if it is one of them (what the trace
    /// records as the thread an event came from).
    #[inline]
    pub(crate) fn worker_of(self, shared: *const Shared) -> Option<usize> {
        core::ptr::eq(self.shared, shared).then_some(self.index)
    }

    const NONE: Current = Current {
        shared: ptr::null(),
        index: 0,
        local_ok: false,
        priority: Priority::Normal,
    };
}

/// [`Current`] as one cell per field, so that changing one field (the priority, before each
/// job's poll) is one store, not a read and write of the whole.
struct Cells {
    shared: Cell<*const Shared>,
    index: Cell<usize>,
    local_ok: Cell<bool>,
    priority: Cell<Priority>,
}

thread_local! {
    static CURRENT: Cells = const {
        Cells {
            shared: Cell::new(Current::NONE.shared),
            index: Cell::new(Current::NONE.index),
            local_ok: Cell::new(Current::NONE.local_ok),
            priority: Cell::new(Current::NONE.priority),
        }
    };
}

/// The worker this thread is, if any.
#[inline]
pub(crate) fn current() -> Current {
    CURRENT.with(|c| Current {
        shared: c.shared.get(),
        index: c.index.get(),
        local_ok: c.local_ok.get(),
        priority: c.priority.get(),
    })
}

/// Makes this thread `cur` (all of it at once); returns what it was.
fn replace(cur: Current) -> Current {
    CURRENT.with(|c| Current {
        shared: c.shared.replace(cur.shared),
        index: c.index.replace(cur.index),
        local_ok: c.local_ok.replace(cur.local_ok),
        priority: c.priority.replace(cur.priority),
    })
}

/// Makes this thread a worker until the guard is dropped.
pub(crate) fn enter(shared: &Shared, index: usize) -> EnterGuard {
    EnterGuard(replace(Current {
        shared,
        index,
        local_ok: false,
        priority: Priority::Normal,
    }))
}

/// Restores the thread's previous identity on drop (also on unwind).
pub(crate) struct EnterGuard(Current);

impl Drop for EnterGuard {
    fn drop(&mut self) {
        replace(self.0);
    }
}

/// Sets whether `spawn_local` is allowed now; returns what it was.
fn set_local_ok(ok: bool) -> bool {
    CURRENT.with(|c| c.local_ok.replace(ok))
}

/// The job about to be polled on this thread has priority `p` (see [`Current::priority`]).
#[inline]
pub(crate) fn set_priority(p: Priority) {
    CURRENT.with(|c| c.priority.set(p));
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
            .frame_state
            .with_mut(|fs| f(unsafe { &mut (*fs).cells }))
    } else {
        f(&mut shared.foreign().cells)
    }
}
