//! Helpers shared by the integration tests (each test file uses some of them).
#![allow(dead_code)]

use std::any::Any;
use std::sync::atomic::{AtomicUsize, Ordering};

use frame_scheduler::Scheduler;

/// A scheduler with `workers` workers (the caller included).
pub fn scheduler(workers: usize) -> Scheduler {
    Scheduler::builder().workers(workers).build().unwrap()
}

/// A scheduler of `workers` workers whose arenas take 4 KiB blocks, keep 4 KiB and trim after
/// every frame: most jobs and frame values then need a block or a chunk of their own, so the
/// arenas' edge cases (large and over-aligned jobs, growth, trimming) come up at once.
pub fn small_blocks(workers: usize) -> Scheduler {
    Scheduler::builder()
        .workers(workers)
        .arena_block_size(4096)
        .arena_capacity(4096)
        .arena_trim_after(1)
        .build()
        .unwrap()
}

/// The message of a panic payload; panics if it is not a string (see [`payload_str`] for a
/// payload that may not be one).
pub fn message(payload: &(dyn Any + Send)) -> &str {
    if let Some(s) = payload.downcast_ref::<&'static str>() {
        s
    } else if let Some(s) = payload.downcast_ref::<String>() {
        s
    } else {
        panic!("panic payload is not a string")
    }
}

/// How long a job that waits for a starved sibling keeps trying before it gives up, so that a
/// starvation test fails with an assertion instead of hanging.
pub const GIVE_UP: std::time::Duration = std::time::Duration::from_secs(3);

/// Runs `f` on its own thread and fails the test if it has not finished within `secs`: a hang
/// becomes a failure, not a stuck test run.
pub fn within<T: Send + 'static>(secs: u64, f: impl FnOnce() -> T + Send + 'static) -> T {
    let (tx, rx) = std::sync::mpsc::channel();
    let t = std::thread::spawn(move || {
        let out = std::panic::catch_unwind(std::panic::AssertUnwindSafe(f));
        let _ = tx.send(());
        out
    });
    match rx.recv_timeout(std::time::Duration::from_secs(secs)) {
        Ok(()) => match t.join().unwrap() {
            Ok(v) => v,
            Err(p) => std::panic::resume_unwind(p),
        },
        Err(_) => panic!("did not finish within {secs} s: the frame hangs"),
    }
}

/// The message of a panic payload, or "" if it is not a string.
pub fn payload_str(p: &(dyn Any + Send)) -> String {
    p.downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| p.downcast_ref::<String>().cloned())
        .unwrap_or_default()
}

/// Spins (politely) until `cond` holds or `timeout` passes; returns whether it held.
pub fn wait_until(timeout: std::time::Duration, cond: impl Fn() -> bool) -> bool {
    let start = std::time::Instant::now();
    while !cond() {
        if start.elapsed() > timeout {
            return false;
        }
        std::thread::yield_now();
    }
    true
}

/// Runs `body` once for each worker count in `counts`, each time with a fresh scheduler of that
/// many workers: the one way the tests cover several worker counts.
pub fn for_each_worker_count(counts: &[usize], mut body: impl FnMut(usize, &mut Scheduler)) {
    for &workers in counts {
        let mut s = scheduler(workers);
        body(workers, &mut s);
    }
}

/// A value that adds one to its counter when dropped, and carries a number for tests that
/// check which value they got: the tests' one drop counter.
#[derive(Debug)]
pub struct Tracked<'a>(pub &'a AtomicUsize, pub u64);

impl<'a> Tracked<'a> {
    /// A tracked value counting its drop in `drops`.
    pub fn new(drops: &'a AtomicUsize) -> Tracked<'a> {
        Tracked(drops, 0)
    }
}

impl Drop for Tracked<'_> {
    fn drop(&mut self) {
        self.0.fetch_add(1, Ordering::SeqCst);
    }
}

/// xorshift64*: small, seeded, reproducible; the tests' one random generator.
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    /// A generator for `seed` (any value, zero included).
    pub fn new(seed: u64) -> Rng {
        Rng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1)
    }

    /// The next 64 random bits.
    pub fn next(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    /// A number in `0..n`.
    pub fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

/// How many CPUs this thread may run on (Linux), from `/proc/thread-self/status`.
pub fn allowed_cpus() -> Option<usize> {
    let status = std::fs::read_to_string("/proc/thread-self/status").ok()?;
    let list = status
        .lines()
        .find_map(|l| l.strip_prefix("Cpus_allowed_list:"))?
        .trim()
        .to_owned();
    let mut n = 0;
    for part in list.split(',') {
        n += match part.split_once('-') {
            Some((a, b)) => b.parse::<usize>().ok()? - a.parse::<usize>().ok()? + 1,
            None => 1,
        };
    }
    Some(n)
}
