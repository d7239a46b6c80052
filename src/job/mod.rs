//! Jobs: a type-erased future in a frame arena behind a [`Header`].
//!
//! `header.rs` holds the fields every job shares and the thread-access table, `state.rs` the
//! state bits, `raw.rs` the typed job (`Job<F>`) and its vtable.

pub(crate) mod header;
pub(crate) mod raw;
pub(crate) mod state;
#[cfg(all(test, not(loom)))]
mod tests;

pub(crate) use header::{Header, JobKind, JobList, JobRef};
pub(crate) use raw::{Job, JobVTable, PollOutcome};
