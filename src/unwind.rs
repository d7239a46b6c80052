//! What happens to panics that must not travel on (rayon-core's `unwind.rs`).
//!
//! User code (a job's poll, a destructor, a waker) runs inside `catch_unwind` where it is
//! called, and the frame's first panic is resumed by `run_frame` once every job has finished
//! (`Shared::record_panic`). The two helpers here are for what is left: a guard that aborts if a
//! panic escapes code that must not unwind, and a drop that swallows a second panic.

use core::mem;
use std::panic::{AssertUnwindSafe, catch_unwind};

/// Aborts the process if dropped during a panic: for code that must not unwind because jobs
/// still running elsewhere hold borrows that unwinding would end. `mem::forget` it on success.
pub(crate) struct AbortOnUnwind(pub(crate) &'static str);

impl Drop for AbortOnUnwind {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!(
                "frame-scheduler: a panic escaped {}, where jobs may still borrow data; aborting",
                self.0
            );
            std::process::abort();
        }
    }
}

/// Drops a value whose destructor might panic, swallowing that panic (the frame already has one).
pub(crate) fn drop_quietly<T>(value: T) {
    if let Err(payload) = catch_unwind(AssertUnwindSafe(|| drop(value))) {
        // A panic payload whose own destructor panics aborts, as in std.
        mem::forget(payload);
    }
}
