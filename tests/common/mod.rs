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
