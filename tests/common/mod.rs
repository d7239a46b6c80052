//! Helpers shared by the integration tests (each test file uses some of them).
#![allow(dead_code)]

use std::any::Any;

use frame_scheduler::Scheduler;

/// A scheduler with `workers` workers (the caller included).
pub fn scheduler(workers: usize) -> Scheduler {
    Scheduler::builder().workers(workers).build().unwrap()
}

/// The message of a panic payload; panics if it is not a string.
pub fn message(payload: &(dyn Any + Send)) -> &str {
    if let Some(s) = payload.downcast_ref::<&'static str>() {
        s
    } else if let Some(s) = payload.downcast_ref::<String>() {
        s
    } else {
        panic!("panic payload is not a string")
    }
}

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
