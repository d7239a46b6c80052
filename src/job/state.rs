//! The two state words of a job, every bit they carry, and who may change which.
//!
//! A job's *scheduling* word says where the job is in its run cycle; its *handle* word says who
//! owns its output. They are separate atomics so that the hot path, a job polled once to
//! completion, writes the scheduling word with one acquire swap and one store: while `SCHEDULED`
//! is set only the worker that dequeued the job changes the word, and while `RUNNING` is set
//! wakers only ever add `SCHEDULED` to it, so the poller's own transitions cannot lose anyone's
//! update. Every wake is a release read-modify-write and every poll starts with an acquire one,
//! so a poll sees everything a waker wrote before it woke the job.
//!
//! ```text
//!   spawn ──► SCHEDULED ──dequeue (swap)───► RUNNING ──Ready (store)──► COMPLETE
//!                ▲                              │
//!                └──wake (CAS, when idle)───────┤ Pending (CAS): idle, or re-queued at once
//!                                               │ if a wake set SCHEDULED during the poll
//! ```
//!
//! | scheduling word               | who                      | race it avoids                          |
//! |-------------------------------|--------------------------|-----------------------------------------|
//! | idle → SCHEDULED, enqueue      | a waker (`fetch_or`, release) | two wakes enqueue twice: only the one that found the job idle enqueues |
//! | SCHEDULED → SCHEDULED          | a waker (`fetch_or`, release) | the wake's writes missed by the coming poll: the poll's swap reads this write |
//! | RUNNING → RUNNING│SCHEDULED    | a wake during a poll (`fetch_or`) | a wake lost while the job is polled |
//! | SCHEDULED → RUNNING│POLLED     | the dequeuing worker (swap, acquire) | two workers polling one job: only one dequeues; the poll sees every earlier wake's writes |
//! | RUNNING → idle / re-enqueue    | the poller (CAS)         | the re-run after a mid-poll wake happens exactly once |
//! | RUNNING(│SCHEDULED) → COMPLETE | the poller (store)       | wakes after completion: they see COMPLETE and do nothing |
//!
//! | handle word        | who                                    | race it avoids                    |
//! |--------------------|----------------------------------------|-----------------------------------|
//! | + DONE (│PANICKED) | the completing worker (RMW), unless DETACHED was already set | the handle missing the output |
//! | + DETACHED         | the `JobHandle` on drop (RMW), or set at spawn (no handle) | output dropped twice or never: whoever comes second drops it |
//! | + LOCKED / AWAITER | the handle's poll, the completer       | the awaiter's waker lost or torn  |
//! | + TAKEN            | the handle's poll, a dropped handle, the frame-end sweep (`fetch_or`): only the one that sets it touches the output | an output moved or dropped twice (a handle can live into the sweep, kept by another output's destructor) |

/// Scheduling word: queued, or must be queued again when the current poll ends.
pub(crate) const SCHEDULED: u32 = 1 << 0;
/// Scheduling word: a worker is polling the future right now.
pub(crate) const RUNNING: u32 = 1 << 1;
/// Scheduling word: the future has finished or panicked. Never cleared within a frame.
pub(crate) const COMPLETE: u32 = 1 << 2;
/// Scheduling word: the job has been polled at least once (set by every poll's start).
pub(crate) const POLLED: u32 = 1 << 3;

/// Handle word: the job finished; its output is stored unless `PANICKED`.
pub(crate) const DONE: u32 = 1 << 0;
/// Handle word: the future panicked: there is no output. Set together with `DONE`.
pub(crate) const PANICKED: u32 = 1 << 1;
/// Handle word: nobody will take the output: the handle was dropped, or there never was one.
pub(crate) const DETACHED: u32 = 1 << 2;
/// Handle word: the output is claimed (moved out or dropped by whoever set this bit first);
/// everyone else must leave it alone.
pub(crate) const TAKEN: u32 = 1 << 3;
/// Handle word: the awaiter slot holds a waker.
pub(crate) const AWAITER: u32 = 1 << 4;
/// Handle word: somebody is reading or writing the awaiter slot; others spin until it is clear.
pub(crate) const LOCKED: u32 = 1 << 5;

/// What a worker should do after a poll returned `Pending`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum AfterPoll {
    /// Nobody woke the job during the poll: it waits for a waker.
    Idle,
    /// A wake arrived during the poll: the job must be queued again (exactly once).
    Requeue,
}
