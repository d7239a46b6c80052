//! Keeping the driving thread off the cores the background workers are pinned to, without
//! pinning it.
//!
//! With the background workers pinned to cores of their own (the default where it is safe;
//! they take the first cores, leaving the last to the driver), the thread that calls
//! `run_frame` is the caller's and floats. Measured on a 2-core VM
//! (`compare/examples/idle.rs --pin default`, BENCHMARKS.md section 6): in about half the
//! processes the system kept that thread on the core of the pinned worker, and the frames ran
//! at one core's speed (8 jobs of 250 µs after 16 ms of sleep: 2.1× the ideal time instead of
//! 1.2×; `map 100k` back to back 480 µs instead of 250). The system did not move it off, though
//! the other core was idle.
//!
//! Pinning the driving thread (`pin_driver(true)`) fixes that, but the pinning stays on the
//! caller's thread and every thread it starts later inherits it. So by default the driver is
//! *moved*, not pinned: [`DriverPlacement::check`] reads which CPU the thread is on (a few
//! nanoseconds), and if a pinned worker owns that CPU it narrows the thread's affinity to the
//! CPUs no worker owns (the kernel migrates it at once) and sets the thread's own affinity back
//! straight away, exactly as it was. The thread ends up where no worker is pinned and keeps
//! the affinity its owner gave it. If its affinity allows only workers' CPUs, it stays put.
//!
//! Linux only (`sched_getcpu`, `sched_setaffinity`); elsewhere `check` does nothing. One race
//! is left: another thread that sets this thread's affinity between the read and the
//! restore of a move has its setting overwritten by the restore (the moves are rare, and
//! `pin_driver(true)` or `pin_threads(false)` avoid them). And "as it was" is the affinity the
//! system reports, after cpuset limits and offline CPUs are taken out: on kernels that keep a
//! thread's requested mask apart (6.2 and later), a move replaces the requested mask with the
//! effective one, so a CPU brought online later is not regained by this thread.

/// The CPUs background workers are pinned to.
///
/// Invariant: every id in `worker_cpus` is below `libc::CPU_SETSIZE` on Linux (ids at or
/// above it are dropped when it is made: no CPU set can name them).
#[derive(Debug)]
pub(crate) struct DriverPlacement {
    /// Indexed by CPU id: whether a background worker is pinned there.
    worker_cpus: Box<[bool]>,
}

impl DriverPlacement {
    /// For workers pinned to `cpus` (their `core_affinity` ids, which are the kernel's CPU
    /// ids). `None` when there are none.
    pub(crate) fn new(cpus: impl IntoIterator<Item = usize>) -> Option<DriverPlacement> {
        let cpus: Vec<usize> = cpus.into_iter().filter(|&c| c < MAX_CPUS).collect();
        let len = cpus.iter().max()? + 1;
        let mut worker_cpus = vec![false; len].into_boxed_slice();
        for c in cpus {
            worker_cpus[c] = true;
        }
        Some(DriverPlacement { worker_cpus })
    }

    /// If the calling thread runs on a CPU a worker is pinned to, moves it to one no worker
    /// is pinned to (within its own affinity), leaving its affinity as it was. Returns whether
    /// it moved the thread.
    #[inline]
    pub(crate) fn check(&self) -> bool {
        match current_cpu() {
            Some(cpu) if self.worker_cpus.get(cpu).copied().unwrap_or(false) => self.move_off(),
            _ => false,
        }
    }

    #[cold]
    #[inline(never)]
    fn move_off(&self) -> bool {
        imp::move_off(&self.worker_cpus)
    }
}

/// The most CPU ids a set names (`CPU_SETSIZE` on Linux).
#[cfg(target_os = "linux")]
const MAX_CPUS: usize = libc::CPU_SETSIZE as usize;
#[cfg(not(target_os = "linux"))]
const MAX_CPUS: usize = 1024;

/// The CPU the calling thread runs on, if the system says.
#[inline]
fn current_cpu() -> Option<usize> {
    imp::current_cpu()
}

#[cfg(target_os = "linux")]
mod imp {
    use core::mem;

    #[inline]
    pub(super) fn current_cpu() -> Option<usize> {
        // SAFETY: `sched_getcpu` takes no arguments and touches no memory of ours.
        let cpu = unsafe { libc::sched_getcpu() };
        usize::try_from(cpu).ok()
    }

    /// The calling thread's affinity.
    pub(super) fn affinity() -> Option<libc::cpu_set_t> {
        // SAFETY: an all-zero `cpu_set_t` is a valid empty set (it is a plain bit array).
        let mut set: libc::cpu_set_t = unsafe { mem::zeroed() };
        // SAFETY: `set` is a live `cpu_set_t` of the size passed; pid 0 is the calling thread.
        let r = unsafe { libc::sched_getaffinity(0, mem::size_of::<libc::cpu_set_t>(), &mut set) };
        (r == 0).then_some(set)
    }

    /// Sets the calling thread's affinity; whether the system accepted it.
    pub(super) fn set_affinity(set: &libc::cpu_set_t) -> bool {
        // SAFETY: `set` is a live `cpu_set_t` of the size passed; pid 0 is the calling thread.
        unsafe { libc::sched_setaffinity(0, mem::size_of::<libc::cpu_set_t>(), set) == 0 }
    }

    pub(super) fn move_off(worker_cpus: &[bool]) -> bool {
        let Some(own) = affinity() else { return false };
        let mut away = own;
        for (cpu, _) in worker_cpus.iter().enumerate().filter(|(_, w)| **w) {
            // SAFETY: `CPU_CLR` clears bit `cpu` of the set's bit array; `cpu` is below
            // `CPU_SETSIZE`, the array's size in bits (`DriverPlacement`'s invariant).
            unsafe { libc::CPU_CLR(cpu, &mut away) };
        }
        // SAFETY: `CPU_COUNT` counts the bits of a live `cpu_set_t`.
        if unsafe { libc::CPU_COUNT(&away) } == 0 {
            // The thread may run only where workers are pinned: its owner's choice.
            return false;
        }
        // Narrowing the affinity migrates the thread before the call returns; widening it
        // back to its own leaves it where it is now.
        let moved = set_affinity(&away);
        // Cannot fail (the set was the thread's own a moment ago); if it did, the thread
        // would keep the narrower set, which still holds every CPU no worker is pinned to.
        set_affinity(&own);
        moved
    }
}

#[cfg(not(target_os = "linux"))]
mod imp {
    #[inline]
    pub(super) fn current_cpu() -> Option<usize> {
        None
    }

    pub(super) fn move_off(_: &[bool]) -> bool {
        false
    }
}

#[cfg(all(test, target_os = "linux"))]
mod tests {
    use super::*;

    fn has(set: &libc::cpu_set_t, cpu: usize) -> bool {
        // SAFETY: `cpu` < CPU_SETSIZE (the callers range over `0..MAX_CPUS`); `CPU_ISSET` reads
        // one bit of the set's array.
        unsafe { libc::CPU_ISSET(cpu, set) }
    }

    fn only(cpu: usize) -> libc::cpu_set_t {
        // SAFETY: an all-zero `cpu_set_t` is a valid empty set.
        let mut set: libc::cpu_set_t = unsafe { core::mem::zeroed() };
        // SAFETY: `cpu` < CPU_SETSIZE, as in `has`.
        unsafe { libc::CPU_SET(cpu, &mut set) };
        set
    }

    fn same(a: &libc::cpu_set_t, b: &libc::cpu_set_t) -> bool {
        (0..MAX_CPUS).all(|c| has(a, c) == has(b, c))
    }

    /// Gives the test thread its affinity back however the test ends (libtest may run later
    /// tests on the same thread).
    struct Restore(libc::cpu_set_t);

    impl Drop for Restore {
        fn drop(&mut self) {
            imp::set_affinity(&self.0);
        }
    }

    /// On a CPU a worker owns, `check` moves the thread off it and leaves the thread's
    /// affinity exactly as it was.
    #[test]
    fn moves_off_a_workers_cpu_and_keeps_the_affinity() {
        let own = imp::affinity().expect("sched_getaffinity");
        let cpus: Vec<usize> = (0..MAX_CPUS).filter(|&c| has(&own, c)).collect();
        if cpus.len() < 2 {
            eprintln!("skipped: this process may run on one CPU only");
            return;
        }
        let worker = cpus[1];
        let _restore = Restore(own);
        // Put this thread on the worker's CPU, then give it its whole affinity back: it
        // stays there until something moves it.
        assert!(imp::set_affinity(&only(worker)));
        assert_eq!(current_cpu(), Some(worker));
        assert!(imp::set_affinity(&own));

        let placement = DriverPlacement::new([worker]).expect("one worker CPU");
        // (If the system moved the thread first, `check` has nothing to do: both end here.)
        placement.check();
        assert_ne!(current_cpu(), Some(worker), "still on the worker's CPU");
        let after = imp::affinity().expect("sched_getaffinity");
        assert!(same(&own, &after), "the thread's affinity was changed");
    }

    /// A thread allowed only on workers' CPUs stays where it is, its affinity untouched.
    #[test]
    fn stays_when_only_workers_cpus_are_allowed() {
        let own = imp::affinity().expect("sched_getaffinity");
        let Some(cpu) = (0..MAX_CPUS).find(|&c| has(&own, c)) else {
            return;
        };
        let _restore = Restore(own);
        let only = only(cpu);
        assert!(imp::set_affinity(&only));
        let placement = DriverPlacement::new([cpu]).expect("one worker CPU");
        assert!(!placement.check());
        assert_eq!(current_cpu(), Some(cpu));
        let after = imp::affinity().expect("sched_getaffinity");
        assert!(same(&only, &after));
    }

    #[test]
    fn no_workers_no_placement() {
        assert!(DriverPlacement::new([]).is_none());
        assert!(DriverPlacement::new([MAX_CPUS + 3]).is_none());
    }
}
