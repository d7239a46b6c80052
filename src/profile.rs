//! Hooks for outside profilers, behind two cargo features that are off by default.
//!
//! - `profiling`: every poll of a job runs inside `profiling::scope!("job", data)`, where `data`
//!   is the job's name, or where it was spawned (`file:line:col`); every poll of the root future
//!   inside `scope!("root")`. Background workers register their threads as `frame-worker-N`,
//!   the driving thread registers under its own name (`frame-driver` if it has none) the first
//!   time it runs a frame, and `finish_frame!` marks every frame's end. The scope's name is
//!   fixed and the job goes into its data because puffin and Tracy register a scope's name once
//!   per call site: a name that changed from job to job would be frozen at the first one.
//! - `tracing`: a job spawned inside a `tracing` span is polled inside it, as
//!   `tracing::Instrument` does: [`instrument`] wraps the future with `Span::current()` at the
//!   spawn, and the wrapper lives in the arena with the job. Spawns, steals, parks and unparks
//!   are `trace`-level events of target `frame_scheduler`.
//!
//! Each hook is an `#[inline(always)]` function whose body is empty when its feature is off, or
//! for the two that wrap a poll (`poll_job!`, `poll_root!`) a macro that is then the poll
//! itself, so the call sites in the hot paths (harness.rs, scheduler.rs, frame.rs,
//! parallel.rs, worker.rs) compile to nothing. With both features off, the release build of
//! `compare/examples/versus.rs` had the same machine code for every function of this crate as
//! before the hooks were added, except `SchedulerBuilder::build` (the worker thread's closure
//! captures in another order) and `run_frame` (which also began recording the frame's arena
//! bytes in traces then). No hook allocates: a location is formatted into a buffer on
//! the stack, and what a profiler or subscriber does with a scope or an event is its own
//! business. With the `profiling` feature but no backend chosen (the `profiling` crate's
//! `profile-with-*` features), the `profiling` macros expand to nothing as well, leaving some
//! arguments unused: hence the `allow(unused_variables)` below.

use core::future::Future;

use crate::context::Current;
use crate::job::header::Label;
use crate::worker::Shared;

/// What a job's future becomes in the arena: itself, or with the `tracing` feature wrapped in
/// [`Instrumented`].
#[cfg(not(feature = "tracing"))]
pub(crate) type Traced<F> = F;
/// What a job's future becomes in the arena: itself, or with the `tracing` feature wrapped in
/// [`Instrumented`].
#[cfg(feature = "tracing")]
pub(crate) type Traced<F> = Instrumented<F>;

/// Prepares a job's future for the arena (see [`Traced`]). Call it on the spawning thread: the
/// span is the one current there.
#[inline(always)]
pub(crate) fn instrument<F: Future>(future: F) -> Traced<F> {
    #[cfg(feature = "tracing")]
    {
        let span = tracing::Span::current();
        // With the `profiling` crate's tracing backend, the scopes of `poll_job` and
        // `poll_root` are spans too: a job polled in no span of its own would hand its `job`
        // scope on to the jobs it spawns, which would then show inside it. Never pass ours on.
        #[cfg(feature = "profiling")]
        let span = match span.metadata() {
            Some(m) if m.target() == module_path!() => tracing::Span::none(),
            _ => span,
        };
        Instrumented {
            inner: future,
            span,
        }
    }
    #[cfg(not(feature = "tracing"))]
    future
}

#[cfg(feature = "tracing")]
pin_project_lite::pin_project! {
    /// A job's future and the span that was current where it was spawned, entered around each
    /// poll (`tracing::Instrument`'s wrapper, made here so that it is the job's own type).
    pub(crate) struct Instrumented<F> {
        #[pin]
        inner: F,
        span: tracing::Span,
    }
}

#[cfg(feature = "tracing")]
impl<F: Future> Future for Instrumented<F> {
    type Output = F::Output;

    #[inline]
    fn poll(
        self: core::pin::Pin<&mut Self>,
        cx: &mut core::task::Context<'_>,
    ) -> core::task::Poll<F::Output> {
        let this = self.project();
        let _entered = this.span.enter();
        this.inner.poll(cx)
    }
}

/// `poll_job!(label, poll)`: evaluates `poll`, one poll of the job labelled `label`, inside its
/// profiler scope. A macro rather than a function taking a closure: with the feature off it is
/// `poll` itself, so the poll compiles exactly as it would without the hook.
#[cfg(not(feature = "profiling"))]
macro_rules! poll_job {
    ($label:expr, $poll:expr) => {
        $poll
    };
}
/// `poll_job!(label, poll)`: evaluates `poll`, one poll of the job labelled `label`, inside its
/// profiler scope ([`in_job_scope`]).
#[cfg(feature = "profiling")]
macro_rules! poll_job {
    ($label:expr, $poll:expr) => {
        $crate::profile::in_job_scope($label, || $poll)
    };
}
pub(crate) use poll_job;

/// `poll_root!(poll)`: evaluates `poll`, one poll of the root future, inside its profiler scope
/// (as [`poll_job!`]).
#[cfg(not(feature = "profiling"))]
macro_rules! poll_root {
    ($poll:expr) => {
        $poll
    };
}
/// `poll_root!(poll)`: evaluates `poll`, one poll of the root future, inside its profiler scope
/// ([`in_root_scope`]).
#[cfg(feature = "profiling")]
macro_rules! poll_root {
    ($poll:expr) => {
        $crate::profile::in_root_scope(|| $poll)
    };
}
pub(crate) use poll_root;

/// Runs `poll` inside a `job` scope tagged with the job's name or location. The scopes are
/// opened here, not where the macros above expand: some backends (tracing's) take this module's
/// path as the scope's target, which [`instrument`] recognises.
#[cfg(feature = "profiling")]
#[inline(always)]
#[allow(unused_variables)]
pub(crate) fn in_job_scope<R>(label: Label, poll: impl FnOnce() -> R) -> R {
    profiling::scope!("job", JobText::new(label).as_str());
    poll()
}

/// Runs `poll` inside a `root` scope (see [`in_job_scope`]).
#[cfg(feature = "profiling")]
#[inline(always)]
pub(crate) fn in_root_scope<R>(poll: impl FnOnce() -> R) -> R {
    profiling::scope!("root");
    poll()
}

/// A background worker thread starts: registers it with the profiler as `frame-worker-N`.
#[inline(always)]
#[allow(unused_variables)]
pub(crate) fn worker_started(index: usize) {
    #[cfg(feature = "profiling")]
    {
        use core::fmt::Write as _;
        let mut name = Text::<32>::new();
        // Fits: 13 bytes and at most 20 digits.
        let _ = write!(name, "frame-worker-{index}");
        profiling::register_thread!(name.as_str());
    }
}

/// The driving thread starts a frame: registers it with the profiler the first time (under
/// its own name, or `frame-driver`).
#[inline(always)]
pub(crate) fn frame_started() {
    #[cfg(feature = "profiling")]
    {
        thread_local! {
            static REGISTERED: core::cell::Cell<bool> = const { core::cell::Cell::new(false) };
        }
        if !REGISTERED.with(|r| r.replace(true)) {
            profiling::register_thread!(std::thread::current().name().unwrap_or("frame-driver"));
        }
    }
}

/// A frame has ended (every job done, every arena reset).
#[inline(always)]
pub(crate) fn frame_finished() {
    #[cfg(feature = "profiling")]
    profiling::finish_frame!();
}

/// A job labelled `label` was spawned by the thread `cur`.
#[inline(always)]
#[allow(unused_variables)]
pub(crate) fn spawned(shared: &Shared, cur: Current, label: Label) {
    #[cfg(feature = "tracing")]
    tracing::trace!(
        target: "frame_scheduler",
        worker = cur.worker_of(shared),
        name = label.name(),
        location = %label.location(),
        "spawn"
    );
}

/// Worker `thief` took `count` jobs from worker `victim`'s queue.
#[inline(always)]
#[allow(unused_variables)]
pub(crate) fn stole(thief: usize, victim: usize, count: usize) {
    #[cfg(feature = "tracing")]
    tracing::trace!(target: "frame_scheduler", thief, victim, count, "steal");
}

/// Worker `worker` found no work and goes to sleep.
#[inline(always)]
#[allow(unused_variables)]
pub(crate) fn parked(worker: usize) {
    #[cfg(feature = "tracing")]
    tracing::trace!(target: "frame_scheduler", worker, "park");
}

/// Worker `worker` is awake again.
#[inline(always)]
#[allow(unused_variables)]
pub(crate) fn unparked(worker: usize) {
    #[cfg(feature = "tracing")]
    tracing::trace!(target: "frame_scheduler", worker, "unpark");
}

/// What a job's scope carries: its name, or where it was spawned, formatted on the stack.
#[cfg(feature = "profiling")]
#[allow(dead_code)] // With no profiler backend, `scope!` drops its data unread.
enum JobText {
    Name(&'static str),
    Location(Text<128>),
}

#[cfg(feature = "profiling")]
#[allow(dead_code)] // As above.
impl JobText {
    #[inline]
    fn new(label: Label) -> JobText {
        match label.name() {
            Some(name) => JobText::Name(name),
            None => JobText::Location(location_text(label.location())),
        }
    }

    fn as_str(&self) -> &str {
        match self {
            JobText::Name(name) => name,
            JobText::Location(text) => text.as_str(),
        }
    }
}

/// `file:line:col`, in `N` bytes at most: a path too long keeps its end, after `...`.
#[cfg(feature = "profiling")]
#[allow(dead_code)] // As for `JobText`.
fn location_text<const N: usize>(loc: &core::panic::Location<'_>) -> Text<N> {
    use core::fmt::Write as _;
    let mut suffix = Text::<24>::new();
    // Fits: two colons and two `u32`s of at most 10 digits.
    let _ = write!(suffix, ":{}:{}", loc.line(), loc.column());
    let file = loc.file();
    let room = N - suffix.len;
    let mut text = Text::<N>::new();
    if file.len() <= room {
        let _ = text.write_str(file);
    } else {
        let mut start = file.len() - (room - 3);
        while !file.is_char_boundary(start) {
            start += 1;
        }
        let _ = text.write_str("...");
        let _ = text.write_str(&file[start..]);
    }
    let _ = text.write_str(suffix.as_str());
    text
}

/// A string of at most `N` bytes on the stack. Writing past the end fails and writes nothing.
#[cfg(feature = "profiling")]
struct Text<const N: usize> {
    bytes: [u8; N],
    len: usize,
}

#[cfg(feature = "profiling")]
impl<const N: usize> Text<N> {
    fn new() -> Self {
        Text {
            bytes: [0; N],
            len: 0,
        }
    }

    #[allow(dead_code)] // With no profiler backend, `register_thread!` drops its name unread.
    fn as_str(&self) -> &str {
        // Only whole `&str`s are ever copied in (`write_str`), so the bytes are UTF-8.
        core::str::from_utf8(&self.bytes[..self.len]).unwrap_or_default()
    }
}

#[cfg(feature = "profiling")]
impl<const N: usize> core::fmt::Write for Text<N> {
    fn write_str(&mut self, s: &str) -> core::fmt::Result {
        let end = self.len + s.len();
        if end > N {
            return Err(core::fmt::Error);
        }
        self.bytes[self.len..end].copy_from_slice(s.as_bytes());
        self.len = end;
        Ok(())
    }
}

#[cfg(all(test, feature = "profiling", not(loom)))]
mod tests {
    use super::*;

    #[test]
    fn a_location_is_file_line_column() {
        let here = core::panic::Location::caller();
        let text = location_text::<128>(here);
        assert_eq!(text.as_str(), here.to_string());
    }

    #[test]
    fn a_long_path_keeps_its_end() {
        let here = core::panic::Location::caller();
        let full = here.to_string();
        let text = location_text::<16>(here);
        assert_eq!(text.len, 16);
        let tail = &full[full.len() - 13..];
        assert_eq!(text.as_str(), format!("...{tail}"));
    }

    #[test]
    fn a_name_is_used_as_it_is() {
        let text = JobText::Name("physics");
        assert_eq!(text.as_str(), "physics");
    }

    #[test]
    fn text_refuses_what_does_not_fit() {
        use core::fmt::Write as _;
        let mut t = Text::<4>::new();
        assert!(t.write_str("abc").is_ok());
        assert!(t.write_str("de").is_err());
        assert_eq!(t.as_str(), "abc");
    }
}

/// What the `tracing` feature adds to every job in the arena (the docs say 40 bytes).
#[cfg(all(test, feature = "tracing", not(loom), target_pointer_width = "64"))]
#[test]
fn a_span_costs_a_job_40_bytes() {
    assert_eq!(core::mem::size_of::<tracing::Span>(), 40);
    assert_eq!(
        core::mem::size_of::<Instrumented<core::future::Pending<()>>>(),
        40
    );
    assert_eq!(
        core::mem::size_of::<Instrumented<core::future::Ready<u64>>>(),
        16 + 40
    );
}
