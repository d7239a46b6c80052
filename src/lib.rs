//! A frame job system: stackless jobs in per-worker frame arenas, woken by custom wakers and
//! synchronised by awaitable counters.
//!
//! A game frame launches thousands of tiny jobs that must all finish within the frame. Here a
//! job is a future written into the bump arena of the worker thread that spawns it, behind a
//! small header; it is woken by our own `RawWaker` vtable and freed, with everything else the
//! frame allocated, when the frame ends and every arena is reset at once. Steady-state frames
//! make no heap allocation at all.
//!
//! ```
//! use frame_scheduler::Scheduler;
//!
//! let mut scheduler = Scheduler::builder().workers(2).build().unwrap();
//! let mut skeletons = vec![0u32; 1000];
//! let mut physics = 0u64;
//! for _ in 0..3 {
//!     scheduler.run_frame(async |frame| {
//!         let physics = frame.spawn(async { physics += 1 });
//!         let anims = frame.counter();
//!         for chunk in skeletons.chunks_mut(64) {
//!             frame.spawn_counted(anims, async move { chunk.iter_mut().for_each(|b| *b += 1) });
//!         }
//!         physics.await;
//!         anims.await;
//!     });
//! }
//! assert_eq!(physics, 3);
//! assert!(skeletons.iter().all(|&b| b == 3));
//! ```
//!
//! Loops over ranges and slices ([`Frame::parallel_for`], [`Frame::for_each_chunk`],
//! [`Frame::map`], [`Frame::spawn_batch`]), how to choose their `min_len`, and what to do when
//! the compiler says E0499, E0597, E0282 or E0521 about a frame: see [`parallel`].
//!
//! # What the compiler refuses
//! The frame's safety rests on lifetimes and `Send`; these programs must not compile. Each is
//! followed by the same program with the offending line fixed, which must compile and run, so
//! that no typo can be what makes a `compile_fail` example fail to compile (only nightly
//! rustdoc checks the error codes given).
//!
//! A job borrowing data that does not outlive `run_frame` (here, a local of the root future):
//! ```compile_fail,E0373
//! # let mut scheduler = frame_scheduler::Scheduler::builder().workers(1).build().unwrap();
//! let out = scheduler.run_frame(async |frame| {
//!     let local = vec![1, 2, 3];
//!     frame.spawn(async { local.len() }).await
//! });
//! ```
//! Moved into the job, the data lives as long as the job:
//! ```
//! # let mut scheduler = frame_scheduler::Scheduler::builder().workers(1).build().unwrap();
//! let out = scheduler.run_frame(async |frame| {
//!     let local = vec![1, 2, 3];
//!     frame.spawn(async move { local.len() }).await
//! });
//! assert_eq!(out, 3);
//! ```
//! A future that is not `Send` given to `spawn` (use `spawn_local`):
//! ```compile_fail
//! # let mut scheduler = frame_scheduler::Scheduler::builder().workers(1).build().unwrap();
//! use std::rc::Rc;
//! let out = scheduler.run_frame(async |frame| {
//!     frame.spawn(async {
//!         let rc = Rc::new(1);
//!         frame_scheduler::yield_now().await;
//!         *rc
//!     }).await
//! });
//! ```
//! The same future given to `spawn_local` compiles and runs:
//! ```
//! # let mut scheduler = frame_scheduler::Scheduler::builder().workers(1).build().unwrap();
//! use std::rc::Rc;
//! let out = scheduler.run_frame(async |frame| {
//!     frame.spawn_local(async {
//!         let rc = Rc::new(1);
//!         frame_scheduler::yield_now().await;
//!         *rc
//!     }).await
//! });
//! assert_eq!(out, 1);
//! ```
//! A `Counter` escaping its frame:
//! ```compile_fail
//! # let mut scheduler = frame_scheduler::Scheduler::builder().workers(1).build().unwrap();
//! let out = scheduler.run_frame(async |frame| frame.counter());
//! ```
//! Its value may leave the frame:
//! ```
//! # let mut scheduler = frame_scheduler::Scheduler::builder().workers(1).build().unwrap();
//! let out = scheduler.run_frame(async |frame| frame.counter().value());
//! assert_eq!(out, 0);
//! ```
//! A `JobHandle` escaping its frame:
//! ```compile_fail
//! # let mut scheduler = frame_scheduler::Scheduler::builder().workers(1).build().unwrap();
//! let out = scheduler.run_frame(async |frame| frame.spawn(async { 1 }));
//! ```
//! Its output may leave the frame:
//! ```
//! # let mut scheduler = frame_scheduler::Scheduler::builder().workers(1).build().unwrap();
//! let out = scheduler.run_frame(async |frame| frame.spawn(async { 1 }).await);
//! assert_eq!(out, 1);
//! ```
//! Two jobs holding `&mut` to the same data:
//! ```compile_fail,E0499
//! # let mut scheduler = frame_scheduler::Scheduler::builder().workers(2).build().unwrap();
//! let (mut score, mut lives) = (0, 3);
//! scheduler.run_frame(async |frame| {
//!     frame.spawn(async { score += 1 });
//!     frame.spawn(async { score -= 1 });
//! });
//! ```
//! The same two jobs on different data compile and run:
//! ```
//! # let mut scheduler = frame_scheduler::Scheduler::builder().workers(2).build().unwrap();
//! let (mut score, mut lives) = (0, 3);
//! scheduler.run_frame(async |frame| {
//!     frame.spawn(async { score += 1 });
//!     frame.spawn(async { lives -= 1 });
//! });
//! assert_eq!((score, lives), (1, 2));
//! ```
//!
//! # Cargo features
//! Both off by default; when off, their hooks compile to nothing.
//! - `profiling`: every poll of a job runs inside `profiling::scope!("job", data)`, `data`
//!   being the job's name ([`JobBuilder::name`]) or where it was spawned (`file:line:col`), and
//!   every poll of the root future inside `scope!("root")`; background workers register their
//!   threads as `frame-worker-N`, the driving thread under its own name the first time it runs
//!   a frame, and `finish_frame!` marks each frame's end. Choose the profiler with the
//!   [`profiling`](https://docs.rs/profiling) crate's feature (`profile-with-tracy`,
//!   `profile-with-puffin`, `profile-with-superluminal`, `profile-with-optick`,
//!   `profile-with-tracing`); with none, the scopes compile to nothing. The scope is named
//!   `job` and the job goes into its data because puffin and Tracy fix a scope's name per call
//!   site. The Tracy backend wants its client running before the scheduler is built.
//! - `tracing`: a job spawned inside a [`tracing`](https://docs.rs/tracing) span is polled
//!   inside that span, as with `tracing::Instrument`, and so are the jobs it spawns; spawns,
//!   steals, parks and unparks are `trace`-level events of target `frame_scheduler`, with the
//!   job's name and location, the thief, victim and count, the worker. The span is kept beside
//!   the job's future in the arena: 40 bytes more per job on 64-bit targets (an empty job then
//!   takes three cache lines instead of two), and one more alignment beside a future aligned
//!   to more than a cache line.
//!
//! Neither allocates per job; what a profiler or subscriber does is its own.
//!
//! # What it does not do
//! - No fibers: a job waits by awaiting (handles, counters, any `Future`), not by switching stacks.
//! - No work outside frames: every job belongs to the frame it was spawned in, and `run_frame`
//!   returns only once all of them are done.
//! - No async I/O reactor: jobs may await any future, but nothing here drives sockets or timers.
//! - No preemption: a job that never yields holds its worker until it finishes.
#![deny(unsafe_op_in_unsafe_fn)]
#![warn(
    missing_docs,
    missing_debug_implementations,
    unreachable_pub,
    clippy::undocumented_unsafe_blocks
)]

// The README's Rust example is compiled and run as a doctest of the crate (`cargo test --doc`).
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
mod readme {}

// Where things are: src/README.md maps each file to the concept it owns, in three layers (the
// API and driving loop in scheduler.rs, frame.rs, parallel.rs, memory.rs; the runtime in
// worker.rs, harness.rs, context.rs, job/, waker.rs, counter.rs; building blocks that know
// nothing of the scheduler), and says where the two protocols (job state in job/state.rs,
// parking in sleep.rs) are written down and model-checked (tests/loom_*.rs).
mod activity;
mod arena;
mod context;
mod counter;
mod deque;
mod frame;
mod harness;
mod job;
#[cfg(loom)]
#[doc(hidden)]
pub mod loom_api;
mod memory;
pub mod parallel;
mod placement;
mod priority;
mod profile;
mod scheduler;
mod sleep;
mod stall;
mod stats;
mod sync;
mod trace;
mod unwind;
mod waker;
mod worker;

pub use counter::{Counter, CounterWait};
pub use frame::{Frame, JobHandle, yield_now};
pub use memory::{FrameVec, FrameVecIntoIter};
pub use parallel::{ChunksJob, MapJob};
pub use priority::{JobBuilder, Priority};
pub use scheduler::{BuildError, MAX_WORKERS, Scheduler, SchedulerBuilder};
pub use stall::{JobState, StallReport, StalledCounter, StalledJob, WaitsOn};
pub use stats::{FrameStats, WorkerStats};
pub use trace::{CounterId, Event, EventKind, JobId, PollResult, Trace};

/// Bytes of the header in front of every job in the arena (state words, vtable, links, the
/// awaiter slot). A job is the header, then its future or output, rounded up to a 64-byte cache
/// line so that jobs run by different workers never share a line.
pub const JOB_HEADER_BYTES: usize = core::mem::size_of::<job::Header>();
