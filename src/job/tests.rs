//! The job state machine without a scheduler, as async-task tests its raw task: each job is
//! built by hand in a heap allocation laid out as in an arena, and driven through its header's
//! transitions and its vtable in the order `harness.rs` drives them, by a waker that stands in
//! for the scheduler. Futures, outputs and wakers count every poll, wake, clone and drop, and
//! each test asserts the exact numbers.

// `waker.clone().wake()` exercises the clone and the consuming wake on purpose.
#![allow(clippy::waker_clone_wake)]

use core::alloc::Layout;
use core::marker::PhantomData;
use core::mem::{self, MaybeUninit};
use core::ptr::{self, NonNull};
use std::alloc;
use std::any::Any;
use std::future::Future;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering::SeqCst};
use std::task::{Context, Poll, Wake, Waker};

use super::header::Label;
use super::raw::OVER_ALIGNED_OFFSET;
use super::state::*;
use super::{Header, Job, JobKind, PollOutcome};
use crate::priority::Priority;
use core::panic::Location;

/// The message of a panic payload (a `&str` or a `String`).
fn message(payload: &(dyn Any + Send)) -> &str {
    match payload.downcast_ref::<&str>() {
        Some(s) => s,
        None => payload.downcast_ref::<String>().map_or("", String::as_str),
    }
}

/// A job in a heap allocation of its own, placed and written as `Frame::spawn` does in an arena.
///
/// Dropping it frees the room and nothing else: whatever the stage still holds is leaked, as the
/// scheduler never frees a job either before it completed and its output was taken or dropped.
struct TestJob<F: Future> {
    room: NonNull<u8>,
    header: NonNull<Header>,
    _future: PhantomData<F>,
}

impl<F: Future> TestJob<F> {
    /// A job of `future`, scheduled and with a handle, as a new spawn.
    fn new(future: F) -> TestJob<F> {
        let layout = Job::<F>::ROOM;
        // SAFETY: a job's room is never zero-sized (it holds at least a header).
        let room = NonNull::new(unsafe { alloc::alloc(layout) })
            .unwrap_or_else(|| alloc::handle_alloc_error(layout));
        let header = Job::<F>::place(room);
        let fields = Header::new(
            &Job::<F>::VTABLE,
            JobKind::Any,
            Priority::Normal,
            Label::at(Location::caller()),
            None,
            ptr::null(),
            SCHEDULED,
            0,
        );
        // SAFETY: `header` was placed by `Job::place` in room allocated with `Job::ROOM`.
        unsafe { Job::write(header, fields, future) };
        TestJob {
            room,
            header,
            _future: PhantomData,
        }
    }

    fn header(&self) -> &Header {
        // SAFETY: written in `new`, and live until `self` is dropped.
        unsafe { self.header.as_ref() }
    }

    /// What a worker does with a job it dequeued (`harness::run_job`): takes it into the running
    /// state, polls it once with `waker`, and ends the poll as the outcome says. Returns whether
    /// the job had been polled before, and what came of the poll.
    fn run(&self, waker: &Waker) -> (bool, Ran) {
        let h = self.header();
        let polled_before = h.transition_to_running();
        let mut cx = Context::from_waker(waker);
        // SAFETY: the job is live and we hold `RUNNING`; it is not a local job.
        let ran = match unsafe { (h.vtable.poll)(self.header, &mut cx) } {
            PollOutcome::Pending => match h.transition_to_idle() {
                AfterPoll::Idle => Ran::Idle,
                AfterPoll::Requeue => Ran::Requeue,
            },
            PollOutcome::Ready => {
                h.transition_to_complete();
                Ran::Complete(h.publish_output(false))
            }
            PollOutcome::Panicked(payload) => {
                h.transition_to_complete();
                Ran::Panicked(h.publish_output(true), payload)
            }
        };
        (polled_before, ran)
    }

    /// Moves the output out, as the handle that claimed it does.
    fn take_output(&self) -> F::Output {
        let mut out = MaybeUninit::<F::Output>::uninit();
        // SAFETY: every caller has seen the job complete without panic and takes its output at
        // most once; `out` is a valid slot for it.
        unsafe { (self.header().vtable.take_output)(self.header, out.as_mut_ptr().cast()) };
        // SAFETY: `take_output` wrote it.
        unsafe { out.assume_init() }
    }

    /// Drops the output in place, as the completer of a detached job or the frame-end sweep does.
    fn drop_output(&self) {
        // SAFETY: as for `take_output`: complete, not panicked, and ours alone.
        unsafe { (self.header().vtable.drop_output)(self.header) };
    }

    fn state(&self) -> u32 {
        self.header().state.load(SeqCst)
    }

    fn handle_word(&self) -> u32 {
        self.header().handle.load(SeqCst)
    }
}

impl<F: Future> Drop for TestJob<F> {
    fn drop(&mut self) {
        // SAFETY: allocated in `new` with this layout.
        unsafe { alloc::dealloc(self.room.as_ptr(), Job::<F>::ROOM) };
    }
}

/// What came of one run of a job.
enum Ran {
    /// `Pending`, and nobody woke it during the poll.
    Idle,
    /// `Pending`, but woken during the poll: the worker queues it again.
    Requeue,
    /// `Ready`; the handle word before the output was published.
    Complete(u32),
    /// The future (or its destructor) panicked; the handle word before, and the payload.
    Panicked(u32, Box<dyn Any + Send>),
}

impl core::fmt::Debug for Ran {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            Ran::Idle => write!(f, "Idle"),
            Ran::Requeue => write!(f, "Requeue"),
            Ran::Complete(h) => write!(f, "Complete({h:#b})"),
            Ran::Panicked(h, _) => write!(f, "Panicked({h:#b})"),
        }
    }
}

/// The scheduler's side of a job's waker: a wake marks the job scheduled, as
/// `harness::wake_job` does, and counts the wakes and the enqueues a scheduler would make.
struct Sched {
    /// The job's header, as an address (a waker must be `Send`).
    job: usize,
    wakes: AtomicUsize,
    enqueued: AtomicUsize,
}

impl Sched {
    fn waker<F: Future>(job: &TestJob<F>) -> (Arc<Sched>, Waker) {
        let sched = Arc::new(Sched {
            job: job.header.as_ptr() as usize,
            wakes: AtomicUsize::new(0),
            enqueued: AtomicUsize::new(0),
        });
        (Arc::clone(&sched), Waker::from(sched))
    }
}

impl Wake for Sched {
    fn wake(self: Arc<Self>) {
        self.wake_by_ref();
    }

    fn wake_by_ref(self: &Arc<Self>) {
        self.wakes.fetch_add(1, SeqCst);
        // SAFETY: every test keeps its job alive past the last wake of its wakers.
        let header = unsafe { &*(self.job as *const Header) };
        if header.transition_to_scheduled() {
            self.enqueued.fetch_add(1, SeqCst);
        }
    }
}

/// A user's waker (an awaiter of the job's handle): counts its wakes; `Arc::strong_count`
/// counts its live clones.
#[derive(Default)]
struct Awaiter {
    wakes: AtomicUsize,
}

impl Wake for Awaiter {
    fn wake(self: Arc<Self>) {
        self.wakes.fetch_add(1, SeqCst);
    }
}

fn awaiter() -> (Arc<Awaiter>, Waker) {
    let a = Arc::new(Awaiter::default());
    (Arc::clone(&a), Waker::from(a))
}

/// Polls, drops of the future, and drops of its output.
#[derive(Default)]
struct Counts {
    polls: AtomicUsize,
    future_drops: AtomicUsize,
    output_drops: AtomicUsize,
}

impl Counts {
    fn get(&self) -> (usize, usize, usize) {
        (
            self.polls.load(SeqCst),
            self.future_drops.load(SeqCst),
            self.output_drops.load(SeqCst),
        )
    }
}

/// An output whose drops are counted.
struct Output<'a>(&'a Counts, u32);

impl Drop for Output<'_> {
    fn drop(&mut self) {
        self.0.output_drops.fetch_add(1, SeqCst);
    }
}

/// What a [`Probe`] does when polled.
#[derive(Clone, Copy)]
enum Step {
    /// Returns `Pending` without waking anyone.
    Wait,
    /// Wakes its own waker (by reference), then returns `Pending`.
    WakeSelfThenWait,
    /// Wakes its own waker, then returns `Ready` in the same poll.
    WakeSelfThenFinish,
    /// Returns `Ready`.
    Finish,
    /// Panics.
    Panic,
}

/// A future that follows a script, one step per poll, counting its polls and its drop; when the
/// script runs out it finishes. `drop_panics` makes its destructor panic (after counting).
struct Probe<'a> {
    counts: &'a Counts,
    script: &'static [Step],
    drop_panics: bool,
}

impl<'a> Probe<'a> {
    fn new(counts: &'a Counts, script: &'static [Step]) -> Probe<'a> {
        Probe {
            counts,
            script,
            drop_panics: false,
        }
    }
}

impl<'a> Future for Probe<'a> {
    type Output = Output<'a>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Output<'a>> {
        let n = self.counts.polls.fetch_add(1, SeqCst);
        match self.script.get(n).copied().unwrap_or(Step::Finish) {
            Step::Wait => Poll::Pending,
            Step::WakeSelfThenWait => {
                cx.waker().wake_by_ref();
                Poll::Pending
            }
            Step::WakeSelfThenFinish => {
                cx.waker().wake_by_ref();
                self.script = &[];
                Poll::Ready(Output(self.counts, n as u32))
            }
            Step::Finish => Poll::Ready(Output(self.counts, n as u32)),
            Step::Panic => panic!("probe panics at poll {n}"),
        }
    }
}

impl Drop for Probe<'_> {
    fn drop(&mut self) {
        self.counts.future_drops.fetch_add(1, SeqCst);
        if self.drop_panics {
            panic!("probe's destructor panics");
        }
    }
}

#[test]
fn ready_at_once_polls_once_and_drops_the_future_before_the_output_is_stored() {
    let counts = Counts::default();
    let job = TestJob::new(Probe::new(&counts, &[]));
    let (sched, waker) = Sched::waker(&job);
    let (polled_before, ran) = job.run(&waker);
    assert!(!polled_before);
    assert!(matches!(ran, Ran::Complete(0)), "{ran:?}");
    // Polled once; the future is gone, the output is stored and not dropped.
    assert_eq!(counts.get(), (1, 1, 0));
    assert_eq!(job.state(), COMPLETE);
    assert_eq!(job.handle_word(), DONE);
    let out = job.take_output();
    assert_eq!(out.1, 0);
    assert_eq!(
        counts.get(),
        (1, 1, 0),
        "taking the output does not drop it"
    );
    drop(out);
    assert_eq!(counts.get(), (1, 1, 1));
    assert_eq!(sched.wakes.load(SeqCst), 0);
}

#[test]
fn a_job_waking_itself_n_times_is_polled_n_plus_one_times_and_never_enqueued_by_its_waker() {
    const N: usize = 5;
    static SCRIPT: [Step; N] = [Step::WakeSelfThenWait; N];
    let counts = Counts::default();
    let job = TestJob::new(Probe::new(&counts, &SCRIPT));
    let (sched, waker) = Sched::waker(&job);
    let mut requeues = 0;
    let mut polled_before = Vec::new();
    loop {
        let (before, ran) = job.run(&waker);
        polled_before.push(before);
        match ran {
            // The worker queues it again itself: the wake found it running.
            Ran::Requeue => requeues += 1,
            Ran::Complete(_) => break,
            other => panic!("unexpected {other:?}"),
        }
        assert_eq!(
            job.state() & SCHEDULED,
            SCHEDULED,
            "queued again, still scheduled"
        );
    }
    assert_eq!(counts.get(), (N + 1, 1, 0));
    assert_eq!(requeues, N);
    assert_eq!(sched.wakes.load(SeqCst), N);
    assert_eq!(
        sched.enqueued.load(SeqCst),
        0,
        "a wake during the poll never enqueues"
    );
    let mut expected = vec![true; N + 1];
    expected[0] = false;
    assert_eq!(polled_before, expected);
    drop(job.take_output());
    assert_eq!(counts.get(), (N + 1, 1, 1));
}

#[test]
fn two_wakes_while_idle_enqueue_once_and_make_one_poll() {
    let counts = Counts::default();
    let job = TestJob::new(Probe::new(&counts, &[Step::Wait]));
    let (sched, waker) = Sched::waker(&job);
    assert!(matches!(job.run(&waker).1, Ran::Idle));
    assert_eq!(job.state(), POLLED, "idle: neither scheduled nor running");
    waker.wake_by_ref();
    waker.clone().wake();
    assert_eq!(sched.wakes.load(SeqCst), 2);
    assert_eq!(
        sched.enqueued.load(SeqCst),
        1,
        "only the first wake enqueues"
    );
    assert!(matches!(job.run(&waker).1, Ran::Complete(_)));
    assert_eq!(counts.get(), (2, 1, 0));
    job.drop_output();
    assert_eq!(counts.get(), (2, 1, 1));
}

#[test]
fn a_wake_before_the_first_poll_enqueues_nothing() {
    let counts = Counts::default();
    let job = TestJob::new(Probe::new(&counts, &[]));
    let (sched, waker) = Sched::waker(&job);
    // Spawned jobs start scheduled (queued): a wake has nothing to add.
    waker.wake_by_ref();
    assert_eq!(sched.enqueued.load(SeqCst), 0);
    assert!(matches!(job.run(&waker).1, Ran::Complete(_)));
    assert_eq!(counts.get(), (1, 1, 0));
    job.drop_output();
}

#[test]
fn wakes_after_completion_enqueue_nothing() {
    let counts = Counts::default();
    let job = TestJob::new(Probe::new(&counts, &[Step::Wait]));
    let (sched, waker) = Sched::waker(&job);
    let kept = waker.clone();
    assert!(matches!(job.run(&waker).1, Ran::Idle));
    waker.wake_by_ref();
    assert!(matches!(job.run(&waker).1, Ran::Complete(_)));
    kept.wake_by_ref();
    kept.clone().wake();
    kept.wake();
    assert_eq!(sched.wakes.load(SeqCst), 4);
    assert_eq!(
        sched.enqueued.load(SeqCst),
        1,
        "only the wake before completion"
    );
    assert_eq!(job.state() & COMPLETE, COMPLETE);
    assert_eq!(job.handle_word(), DONE, "wakes never touch the handle word");
    assert_eq!(counts.get(), (2, 1, 0));
    job.drop_output();
    assert_eq!(counts.get(), (2, 1, 1));
}

#[test]
fn a_wake_during_the_poll_that_completes_causes_no_further_poll() {
    let counts = Counts::default();
    let job = TestJob::new(Probe::new(&counts, &[Step::WakeSelfThenFinish]));
    let (sched, waker) = Sched::waker(&job);
    assert!(matches!(job.run(&waker).1, Ran::Complete(_)));
    // Completion is a store: the `SCHEDULED` the wake added is gone with `RUNNING`.
    assert_eq!(job.state(), COMPLETE);
    assert_eq!(sched.wakes.load(SeqCst), 1);
    assert_eq!(sched.enqueued.load(SeqCst), 0);
    assert_eq!(counts.get(), (1, 1, 0));
    job.drop_output();
}

#[test]
fn a_panicking_future_is_dropped_once_and_leaves_no_output() {
    let counts = Counts::default();
    let job = TestJob::new(Probe::new(&counts, &[Step::Wait, Step::Panic]));
    let (_sched, waker) = Sched::waker(&job);
    assert!(matches!(job.run(&waker).1, Ran::Idle));
    waker.wake_by_ref();
    let Ran::Panicked(before, payload) = job.run(&waker).1 else {
        panic!("the poll's panic was not reported");
    };
    assert_eq!(before, 0);
    assert_eq!(message(&*payload), "probe panics at poll 1");
    assert_eq!(counts.get(), (2, 1, 0));
    assert_eq!(job.state(), COMPLETE);
    assert_eq!(job.handle_word(), DONE | PANICKED);
    // The stage is empty: a claim of the output (which the handle word forbids) is refused.
    let claim = catch_unwind(AssertUnwindSafe(|| job.drop_output()));
    let payload = claim.expect_err("there is no output to drop");
    assert!(message(&*payload).ends_with("a job's output was dropped twice"));
    assert_eq!(counts.get(), (2, 1, 0));
}

#[test]
fn a_future_whose_destructor_panics_after_ready_has_its_output_dropped_once() {
    let counts = Counts::default();
    let mut probe = Probe::new(&counts, &[]);
    probe.drop_panics = true;
    let job = TestJob::new(probe);
    let (_sched, waker) = Sched::waker(&job);
    let Ran::Panicked(_, payload) = job.run(&waker).1 else {
        panic!("the destructor's panic was not reported");
    };
    assert_eq!(message(&*payload), "probe's destructor panics");
    // The future was dropped once (it panicked there); the output it returned is dropped with
    // it, since the job is reported as panicked and nobody may take it.
    assert_eq!(counts.get(), (1, 1, 1));
    assert_eq!(job.handle_word(), DONE | PANICKED);
}

#[test]
fn an_output_is_taken_once_and_a_second_claim_is_refused() {
    let counts = Counts::default();
    let job = TestJob::new(Probe::new(&counts, &[]));
    let (_sched, waker) = Sched::waker(&job);
    assert!(matches!(job.run(&waker).1, Ran::Complete(_)));
    drop(job.take_output());
    assert_eq!(counts.get(), (1, 1, 1));
    let twice = catch_unwind(AssertUnwindSafe(|| job.drop_output()));
    let payload = twice.expect_err("a second claim of the output must panic");
    assert_eq!(
        message(&*payload),
        "internal error: entered unreachable code: a job's output was dropped twice"
    );
    assert_eq!(counts.get(), (1, 1, 1), "and drop nothing");
}

#[test]
fn an_awaiter_registered_twice_keeps_only_its_last_waker_and_is_woken_once() {
    let counts = Counts::default();
    let job = TestJob::new(Probe::new(&counts, &[Step::Wait]));
    let (sched, waker) = Sched::waker(&job);
    assert!(matches!(job.run(&waker).1, Ran::Idle));
    let (a, wa) = awaiter();
    let (b, wb) = awaiter();
    let h = job.header();
    assert_eq!(h.register_awaiter(&wa), None);
    assert_eq!(
        Arc::strong_count(&a),
        3,
        "ours, `wa`, and the clone in the slot"
    );
    assert_eq!(h.register_awaiter(&wb), None);
    assert_eq!(Arc::strong_count(&a), 2, "the replaced clone is dropped");
    assert_eq!(Arc::strong_count(&b), 3);
    assert_eq!(job.handle_word(), AWAITER);
    waker.wake_by_ref();
    let Ran::Complete(before) = job.run(&waker).1 else {
        panic!("not complete");
    };
    assert_eq!(before, AWAITER, "the completer sees the awaiter");
    let wake = h.take_awaiter().expect("the awaiter's waker");
    assert_eq!(job.handle_word(), DONE, "lock and awaiter bits cleared");
    wake.wake();
    assert_eq!((a.wakes.load(SeqCst), b.wakes.load(SeqCst)), (0, 1));
    assert_eq!(
        Arc::strong_count(&b),
        2,
        "woken by value: the slot's clone is gone"
    );
    assert_eq!(sched.enqueued.load(SeqCst), 1);
    job.drop_output();
    assert_eq!(counts.get(), (2, 1, 1));
}

#[test]
fn an_awaiter_registering_after_completion_is_told_so_and_keeps_no_clone() {
    let counts = Counts::default();
    let job = TestJob::new(Probe::new(&counts, &[]));
    let (_sched, waker) = Sched::waker(&job);
    assert!(matches!(job.run(&waker).1, Ran::Complete(0)));
    let (a, wa) = awaiter();
    assert_eq!(job.header().register_awaiter(&wa), Some(DONE));
    assert_eq!(Arc::strong_count(&a), 2, "no clone left behind");
    assert_eq!(job.handle_word(), DONE);
    assert_eq!(a.wakes.load(SeqCst), 0);
    drop(job.take_output());
    assert_eq!(counts.get(), (1, 1, 1));
}

#[test]
fn a_handle_detached_before_completion_hands_the_output_to_the_completer() {
    let counts = Counts::default();
    let job = TestJob::new(Probe::new(&counts, &[Step::Wait]));
    let (_sched, waker) = Sched::waker(&job);
    assert!(matches!(job.run(&waker).1, Ran::Idle));
    let (a, wa) = awaiter();
    assert_eq!(job.header().register_awaiter(&wa), None);
    let (before, registered) = job.header().detach();
    assert_eq!(before, AWAITER, "detached before completion");
    drop(registered.expect("the registered waker comes back to the handle"));
    assert_eq!(Arc::strong_count(&a), 2);
    assert_eq!(job.handle_word(), DETACHED);
    waker.wake_by_ref();
    let Ran::Complete(before) = job.run(&waker).1 else {
        panic!("not complete");
    };
    // DETACHED came first: the completer owns the output and must drop it; nobody is woken.
    assert_eq!(before & DETACHED, DETACHED);
    assert_eq!(before & AWAITER, 0);
    job.drop_output();
    assert_eq!(counts.get(), (2, 1, 1));
    assert_eq!(a.wakes.load(SeqCst), 0);
}

#[test]
fn a_handle_detached_after_completion_keeps_the_output_for_itself() {
    let counts = Counts::default();
    let job = TestJob::new(Probe::new(&counts, &[]));
    let (_sched, waker) = Sched::waker(&job);
    let Ran::Complete(before) = job.run(&waker).1 else {
        panic!("not complete");
    };
    assert_eq!(
        before & DETACHED,
        0,
        "the completer leaves the output to the handle"
    );
    // The handle, dropped now, sees DONE: the output is its to drop (after its TAKEN claim).
    assert_eq!(job.header().detach_unregistered(), DONE);
    assert_eq!(job.handle_word(), DONE | DETACHED);
    assert_eq!(counts.get(), (1, 1, 0));
    job.drop_output();
    assert_eq!(counts.get(), (1, 1, 1));
}

/// A future aligned to 4 KiB that records where it was polled.
#[repr(align(4096))]
struct Aligned4k<'a>(&'a AtomicUsize, [u8; 100]);

impl Future for Aligned4k<'_> {
    type Output = u8;

    fn poll(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<u8> {
        self.0.store(&*self as *const Self as usize, SeqCst);
        Poll::Ready(self.1[99])
    }
}

#[test]
fn an_over_aligned_stage_is_aligned_and_inside_its_room_wherever_the_room_starts() {
    type J<'a> = Job<Aligned4k<'a>>;
    let room = J::ROOM;
    let header_align = mem::align_of::<Header>();
    assert_eq!(room.align(), header_align);
    assert_eq!(J::STAGE_OFFSET, OVER_ALIGNED_OFFSET);
    assert!(
        room.size() < OVER_ALIGNED_OFFSET + 4096 + 4096,
        "less than its alignment wasted"
    );
    // Rooms starting at every `header_align`-byte offset within a page.
    let pool = Layout::from_size_align(room.size() + 4096, 4096).unwrap();
    // SAFETY: a non-zero size.
    let base = NonNull::new(unsafe { alloc::alloc(pool) }).unwrap();
    let at = AtomicUsize::new(0);
    for offset in (0..4096).step_by(header_align) {
        // SAFETY: `offset + room.size()` is within the pool.
        let start = unsafe { NonNull::new_unchecked(base.as_ptr().add(offset)) };
        let header = J::place(start);
        let from = header.as_ptr() as usize - start.as_ptr() as usize;
        let stage = header.as_ptr() as usize + OVER_ALIGNED_OFFSET;
        assert_eq!(stage % 4096, 0, "room at {offset}: stage misaligned");
        assert_eq!(
            header.as_ptr() as usize % header_align,
            0,
            "room at {offset}: header misaligned"
        );
        assert!(
            from + OVER_ALIGNED_OFFSET + mem::size_of::<Aligned4k<'_>>() <= room.size(),
            "room at {offset}: the stage ends past the room"
        );
        let fields = Header::new(
            &J::VTABLE,
            JobKind::Any,
            Priority::Normal,
            Label::at(Location::caller()),
            None,
            ptr::null(),
            SCHEDULED,
            0,
        );
        // SAFETY: placed by `Job::place` in room of `Job::ROOM`'s size and alignment.
        unsafe { J::write(header, fields, Aligned4k(&at, [offset as u8; 100])) };
        // SAFETY: written just above; we hold the only reference.
        let h = unsafe { header.as_ref() };
        h.transition_to_running();
        let mut cx = Context::from_waker(Waker::noop());
        // SAFETY: the job is live and we hold `RUNNING`.
        let outcome = unsafe { (h.vtable.poll)(header, &mut cx) };
        assert!(matches!(outcome, PollOutcome::Ready));
        assert_eq!(at.load(SeqCst), stage, "room at {offset}: polled elsewhere");
        let mut out = 0u8;
        // SAFETY: complete, not panicked, taken once; `out` is a `u8` slot.
        unsafe { (h.vtable.take_output)(header, (&mut out as *mut u8).cast()) };
        assert_eq!(out, offset as u8);
    }
    // SAFETY: allocated above with this layout.
    unsafe { alloc::dealloc(base.as_ptr(), pool) };
}
