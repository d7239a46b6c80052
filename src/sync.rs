//! The one place atomics, cells, locks, thread parking and the spin helpers (`spin_loop`,
//! `yield_thread`, `backoff`) come from.
//!
//! Every concurrent type in the crate imports its primitives from here, so under `--cfg loom`
//! the same code runs on loom's model-checked versions (crossbeam's habit). Outside loom these
//! are zero-cost re-exports of `std`.

#[cfg(not(loom))]
pub(crate) use std::sync::atomic::{
    AtomicBool, AtomicPtr, AtomicU32, AtomicU64, AtomicUsize, Ordering, fence,
};
#[cfg(not(loom))]
pub(crate) use std::sync::{Condvar, Mutex, MutexGuard};

#[cfg(loom)]
pub(crate) use loom::sync::atomic::{
    AtomicBool, AtomicPtr, AtomicU32, AtomicU64, AtomicUsize, Ordering, fence,
};
#[cfg(loom)]
pub(crate) use loom::sync::{Condvar, Mutex, MutexGuard};

/// Reads a counter that only the calling thread writes: a relaxed load, or under loom an
/// `unsync_load`, which loom does not count as an access of its own (loom keeps one last
/// access per atomic, so an owner's load before its store would hide other threads' earlier
/// loads of the counter and keep loom from exploring their interleavings; loom issue #392).
///
/// # Safety
/// 1. No other thread writes `a`, ever.
#[inline]
pub(crate) unsafe fn load_own(a: &AtomicU64) -> u64 {
    #[cfg(not(loom))]
    {
        a.load(Ordering::Relaxed)
    }
    #[cfg(loom)]
    // SAFETY: (1): no write of another thread can race with this read.
    unsafe {
        a.unsync_load()
    }
}

/// Tells the CPU (or loom's scheduler) that this thread is spinning on another one.
#[inline]
pub(crate) fn spin_loop() {
    #[cfg(not(loom))]
    std::hint::spin_loop();
    #[cfg(loom)]
    loom::thread::yield_now();
}

/// Gives the rest of this thread's time slice away.
#[inline]
pub(crate) fn yield_thread() {
    #[cfg(not(loom))]
    std::thread::yield_now();
    #[cfg(loom)]
    loom::thread::yield_now();
}

/// Spins politely: a few busy iterations, then gives the time slice away.
#[inline]
pub(crate) fn backoff(spins: &mut u32) {
    if *spins < 64 {
        spin_loop();
    } else {
        yield_thread();
    }
    *spins = spins.saturating_add(1);
}

/// Locks a mutex, ignoring poison: every critical section in this crate leaves its data
/// consistent before anything in it can panic, so a poisoned lock holds valid data.
#[inline]
pub(crate) fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    #[cfg(not(loom))]
    {
        m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }
    #[cfg(loom)]
    {
        m.lock().unwrap()
    }
}

/// An `UnsafeCell` with loom's closure API, so loom can check every access.
///
/// # Invariants
/// Callers of `with` / `with_mut` uphold the aliasing rules of `std::cell::UnsafeCell`: no
/// `with_mut` access overlaps any other access. Each use site says which protocol gives it that.
#[derive(Debug)]
pub(crate) struct UnsafeCell<T>(
    #[cfg(not(loom))] std::cell::UnsafeCell<T>,
    #[cfg(loom)] loom::cell::UnsafeCell<T>,
);

impl<T> UnsafeCell<T> {
    pub(crate) fn new(value: T) -> Self {
        #[cfg(not(loom))]
        {
            UnsafeCell(std::cell::UnsafeCell::new(value))
        }
        #[cfg(loom)]
        {
            UnsafeCell(loom::cell::UnsafeCell::new(value))
        }
    }

    /// Runs `f` with a shared pointer to the contents.
    #[inline]
    pub(crate) fn with<R>(&self, f: impl FnOnce(*const T) -> R) -> R {
        #[cfg(not(loom))]
        {
            f(self.0.get())
        }
        #[cfg(loom)]
        {
            self.0.with(f)
        }
    }

    /// Runs `f` with a mutable pointer to the contents.
    #[inline]
    pub(crate) fn with_mut<R>(&self, f: impl FnOnce(*mut T) -> R) -> R {
        #[cfg(not(loom))]
        {
            f(self.0.get())
        }
        #[cfg(loom)]
        {
            self.0.with_mut(f)
        }
    }
}
