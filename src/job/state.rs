//! The job state word: every bit a job's header can carry, and what each one means.
//!
//! One `AtomicUsize` holds the whole lifecycle of a job, so every transition is a single
//! compare-and-swap and two threads can never disagree about which of them owns the next step.
//!
//! ```text
//!   spawn ──► SCHEDULED ──run──► RUNNING ──Ready──► COMPLETE (│ PANICKED)
//!                ▲                  │
//!                └──wake (idle)─────┤ Pending: idle, or re-queued at once if SCHEDULED was
//!                                   │          set by a wake that came in during the poll
//! ```
//!
//! | transition                    | who                      | race it avoids                          |
//! |-------------------------------|--------------------------|-----------------------------------------|
//! | idle → SCHEDULED, enqueue      | the waker (any thread)   | two wakes enqueue twice: only the CAS winner enqueues |
//! | RUNNING → RUNNING│SCHEDULED    | a wake during a poll     | a wake lost while the job is being polled |
//! | SCHEDULED → RUNNING            | the worker that dequeued | two workers polling one job             |
//! | RUNNING → idle / re-enqueue    | the polling worker       | the re-run after a mid-poll wake happens exactly once |
//! | RUNNING → COMPLETE             | the polling worker       | wakes after completion: they see COMPLETE and do nothing |
//! | + DETACHED                     | the `JobHandle` on drop  | output dropped twice or never           |
//! | + LOCKED / AWAITER             | handle poll, completion  | awaiter waker lost or read torn         |
//! | + TAKEN                        | whoever consumes the output | the frame-end sweep dropping it again |

/// Queued, or must be queued again when the current poll ends.
pub(crate) const SCHEDULED: usize = 1 << 0;
/// A worker is polling the future right now.
pub(crate) const RUNNING: usize = 1 << 1;
/// The future has finished (its output is stored) or panicked. Never cleared within a frame.
pub(crate) const COMPLETE: usize = 1 << 2;
/// The future panicked: there is no output. Set together with `COMPLETE`.
pub(crate) const PANICKED: usize = 1 << 3;
/// Nobody will take the output: the handle was dropped, or the job was spawned without one.
pub(crate) const DETACHED: usize = 1 << 4;
/// The output was moved out or dropped; the frame-end sweep must leave it alone.
pub(crate) const TAKEN: usize = 1 << 5;
/// The awaiter slot holds a waker.
pub(crate) const AWAITER: usize = 1 << 6;
/// Somebody is reading or writing the awaiter slot; others spin until it is clear.
pub(crate) const LOCKED: usize = 1 << 7;

/// What a worker should do after a poll returned `Pending`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum AfterPoll {
    /// Nobody woke the job during the poll: it waits for a waker.
    Idle,
    /// A wake arrived during the poll: the job must be queued again (exactly once).
    Requeue,
}
