//! Recording: one fixed-capacity ring of events per worker, and the clock.
//!
//! # The ring
//! Each ring is a single-producer single-consumer queue. The producer is the ring's worker (or,
//! for the foreign ring, whoever holds `foreign_lock`); the consumer is the driving thread in
//! [`Tracer::start`] and [`Tracer::take`] (serialised by `session`). The producer writes a slot,
//! then publishes it with a release store of `head`; the consumer reads `head` (acquire), copies
//! the slots up to it, then frees them with a release store of `tail`, which the producer reads
//! (acquire) before it reuses a slot. Neither side ever does a read-modify-write or takes a lock
//! on a worker's ring, and recording never allocates: the slots are allocated once, when the
//! scheduler is built.
//!
//! When a ring is full its newest event is dropped and `dropped` counted (the producer's own
//! counter). Dropping the newest, rather than overwriting the oldest, keeps the producer from
//! ever touching a slot the consumer may be reading, and keeps the start of a trace whole.
//!
//! # The clock
//! Events carry raw ticks: the time-stamp counter on x86-64 (`rdtsc`, a few nanoseconds, no
//! system call; constant-rate and synchronised across cores on CPUs with an invariant TSC, which
//! is every current one), elsewhere nanoseconds from an `Instant` taken when the tracer was made
//! (a `clock_gettime` through the vDSO on Linux, some 20 ns).

// Until the scheduler's hot paths call the recording methods (issue 12), only tests do.
//! [`Tracer::take`] converts ticks to nanoseconds since [`Tracer::start`] with the two
//! `(Instant, ticks)` pairs read at start and take.

use core::panic::Location;
use std::time::Instant;

use crossbeam_utils::CachePadded;

use super::{CounterId, Event, EventKind, JobId, PollResult, Trace};
use crate::sync::{AtomicBool, AtomicU64, Mutex, Ordering, UnsafeCell, load_own, lock};

/// An event as a ring holds it: the worker is the ring's.
#[derive(Clone, Copy, Debug)]
struct RawEvent {
    ticks: u64,
    kind: EventKind,
}

/// One producer's events.
///
/// # Invariants
/// 1. Only one thread at a time pushes (`push`'s safety), and successive pushers are ordered by
///    happens-before; only one thread at a time drains (`Tracer::session`).
/// 2. `tail <= head <= tail + slots.len()`; the slots `tail..head` (modulo the length) hold
///    published events that only the consumer reads; the others only the producer writes.
/// 3. `slots.len()` is a power of two and `mask == slots.len() - 1`.
struct Ring {
    slots: Box<[UnsafeCell<RawEvent>]>,
    mask: u64,
    /// Events published: written by the producer only.
    head: AtomicU64,
    /// Events dropped because the ring was full: written by the producer only.
    dropped: AtomicU64,
    /// Events consumed: written by the consumer only.
    tail: AtomicU64,
}

// SAFETY: the slots are touched only under the single-producer single-consumer protocol of
// invariants 1 and 2; every other field is atomic. (`RawEvent` holds only `'static` shared
// references, so the ring is `Send` by itself.)
unsafe impl Sync for Ring {}

impl Ring {
    fn new(capacity: usize) -> Ring {
        let blank = RawEvent {
            ticks: 0,
            kind: EventKind::Park,
        };
        let slots: Box<[UnsafeCell<RawEvent>]> =
            (0..capacity).map(|_| UnsafeCell::new(blank)).collect();
        Ring {
            mask: (capacity as u64).wrapping_sub(1),
            slots,
            head: AtomicU64::new(0),
            dropped: AtomicU64::new(0),
            tail: AtomicU64::new(0),
        }
    }

    /// Appends `ev`, or counts it dropped when the ring is full.
    ///
    /// # Safety
    /// 1. No other thread pushes onto this ring at the same time, and whoever pushed before
    ///    happens-before this call.
    #[inline]
    unsafe fn push(&self, ev: RawEvent) {
        // SAFETY: (1): only this thread writes `head` now, and earlier writes happen before.
        let head = unsafe { load_own(&self.head) };
        let tail = self.tail.load(Ordering::Acquire);
        if head - tail >= self.slots.len() as u64 {
            // SAFETY: (1), as for `head`.
            let dropped = unsafe { load_own(&self.dropped) };
            self.dropped.store(dropped + 1, Ordering::Release);
            return;
        }
        // Invariant 3: the index is below the length (the check stays: it is predictable).
        self.slots[(head & self.mask) as usize].with_mut(|slot| {
            // SAFETY: `head - tail < len`, so the slot is not one of `tail..head`, which the
            // consumer may read; the acquire load of `tail` ordered its last reads of this slot
            // before this write (invariant 2). (1): no other producer writes it.
            unsafe { slot.write(ev) }
        });
        self.head.store(head + 1, Ordering::Release);
    }

    /// Copies the published events out (in order) and frees their slots. Returns how many
    /// events the producer has dropped since the ring was made.
    ///
    /// # Safety
    /// 1. No other thread drains this ring at the same time.
    unsafe fn drain(&self, mut f: impl FnMut(RawEvent)) -> u64 {
        let head = self.head.load(Ordering::Acquire);
        let tail = self.tail.load(Ordering::Relaxed);
        for i in tail..head {
            self.slots[(i & self.mask) as usize].with(|slot| {
                // SAFETY: `i` is in `tail..head`: published by the release store of `head` we
                // acquired, and not written again until we store a `tail` past it (invariant 2).
                f(unsafe { *slot })
            });
        }
        self.tail.store(head, Ordering::Release);
        self.dropped.load(Ordering::Acquire)
    }
}

/// The clock: raw ticks, cheap to read; converted to nanoseconds at the end of a trace (and by
/// the stall watchdog, which times polls with it).
#[derive(Debug, Clone, Copy)]
pub(crate) struct Clock {
    /// Where the ticks count from where there is no time-stamp counter.
    #[cfg_attr(all(target_arch = "x86_64", not(miri)), allow(dead_code))]
    origin: Instant,
}

impl Clock {
    /// Whether ticks are the time-stamp counter's (else they are nanoseconds).
    const TSC: bool = cfg!(all(target_arch = "x86_64", not(miri)));

    /// A clock whose ticks (where they are nanoseconds) count from now.
    pub(crate) fn new() -> Clock {
        Clock {
            origin: Instant::now(),
        }
    }

    #[inline]
    pub(crate) fn ticks(&self) -> u64 {
        #[cfg(all(target_arch = "x86_64", not(miri)))]
        {
            // `_rdtsc` is a safe function on newer compilers and unsafe on older ones.
            #[allow(unused_unsafe)]
            // SAFETY: `rdtsc` is in every x86-64 CPU, reads a register and touches no memory.
            unsafe {
                core::arch::x86_64::_rdtsc()
            }
        }
        #[cfg(not(all(target_arch = "x86_64", not(miri))))]
        {
            self.origin.elapsed().as_nanos() as u64
        }
    }
}

/// Where a trace started: what `take` needs to turn ticks into nanoseconds.
#[derive(Debug)]
struct Session {
    at: Instant,
    ticks: u64,
    /// Each ring's `dropped` at the start (rings, then the foreign ring).
    dropped: Vec<u64>,
}

/// Every worker's ring, the foreign threads' ring, and whether a trace is recording.
///
/// Built with the scheduler (`Tracer::new(workers, trace_capacity)`); with a capacity of 0 it
/// holds no ring and never records. The recording methods (`spawn`, `poll_begin`, ...) check
/// [`is_on`](Tracer::is_on) first, inline, and do nothing else when it is off.
pub(crate) struct Tracer {
    rings: Box<[CachePadded<Ring>]>,
    foreign: Ring,
    /// Makes whoever holds it the foreign ring's one producer.
    foreign_lock: Mutex<()>,
    on: AtomicBool,
    /// The index of the frame running, for job and counter ids: written by the driver in
    /// `frame_begin`, before any job of the frame exists.
    frame: AtomicU64,
    clock: Clock,
    /// `Some` while recording. Its lock makes the locker the rings' one consumer.
    session: Mutex<Option<Session>>,
}

impl core::fmt::Debug for Tracer {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("Tracer")
            .field("workers", &self.rings.len())
            .field("capacity", &self.capacity())
            .field("on", &self.on.load(Ordering::Relaxed))
            .finish_non_exhaustive()
    }
}

impl Tracer {
    /// A tracer for `workers` workers, each ring holding `events_per_worker` events rounded up
    /// to a power of two (0: no rings, tracing off). Foreign threads share one more ring of the
    /// same size. Allocates everything recording will ever use.
    pub(crate) fn new(workers: usize, events_per_worker: usize) -> Tracer {
        let capacity = match events_per_worker {
            0 => 0,
            n => n.next_power_of_two(),
        };
        let rings = match capacity {
            0 => Box::default(),
            _ => (0..workers)
                .map(|_| CachePadded::new(Ring::new(capacity)))
                .collect(),
        };
        Tracer {
            rings,
            foreign: Ring::new(capacity),
            foreign_lock: Mutex::new(()),
            on: AtomicBool::new(false),
            frame: AtomicU64::new(0),
            clock: Clock::new(),
            session: Mutex::new(None),
        }
    }

    /// Events each ring holds (0 when tracing is off).
    pub(crate) fn capacity(&self) -> usize {
        self.foreign.slots.len()
    }

    /// Whether a trace is recording. One relaxed load: the hot paths' only cost when off.
    #[inline(always)]
    pub(crate) fn is_on(&self) -> bool {
        self.on.load(Ordering::Relaxed)
    }

    /// Starts recording: drops whatever the rings still hold and notes the time. Starting again
    /// while recording starts afresh. Call it between frames.
    ///
    /// # Panics
    /// When the tracer was built with a capacity of 0.
    pub(crate) fn start(&self) {
        assert!(
            self.capacity() > 0,
            "start_trace: tracing is off because trace_capacity is 0; build the scheduler \
             with SchedulerBuilder::trace_capacity(events_per_worker) to record traces"
        );
        let mut session = lock(&self.session);
        let mut dropped = Vec::with_capacity(self.rings.len() + 1);
        for ring in self.all_rings() {
            // SAFETY: we hold `session`, so we are the rings' one consumer (invariant 1).
            dropped.push(unsafe { ring.drain(|_| {}) });
        }
        *session = Some(Session {
            at: Instant::now(),
            ticks: self.clock.ticks(),
            dropped,
        });
        self.on.store(true, Ordering::Release);
    }

    /// Stops recording and returns the events recorded since [`start`](Tracer::start), merged
    /// in time order. Call it between frames: events a worker records while it runs are left
    /// for the next `start` to drop.
    ///
    /// # Panics
    /// When no trace was started.
    pub(crate) fn take(&self) -> Trace {
        self.on.store(false, Ordering::Release);
        let mut session = lock(&self.session);
        let Some(started) = session.take() else {
            panic!(
                "take_trace: no trace is recording; call start_trace before the frames to trace"
            );
        };
        let (end_at, end_ticks) = (Instant::now(), self.clock.ticks());
        let span_ns = end_at.duration_since(started.at).as_nanos();
        let span_ticks = u128::from(end_ticks.saturating_sub(started.ticks)).max(1);
        let to_ns = |ticks: u64| -> u64 {
            let since = u128::from(ticks.saturating_sub(started.ticks));
            if Clock::TSC {
                (since * span_ns / span_ticks) as u64
            } else {
                since as u64
            }
        };
        let workers = self.rings.len();
        let mut events = Vec::new();
        let mut dropped = 0;
        for (i, ring) in self.all_rings().enumerate() {
            let worker = (i < workers).then_some(i);
            let first = events.len();
            // SAFETY: we hold `session`, so we are the rings' one consumer (invariant 1).
            let total = unsafe {
                ring.drain(|ev| {
                    events.push(Event {
                        time_ns: to_ns(ev.ticks),
                        worker,
                        kind: ev.kind,
                    })
                })
            };
            dropped += total - started.dropped[i];
            // One ring's events are in the order they happened: keep their times monotonic
            // even if a thread moved to a core whose counter lags, so sorting keeps the order.
            let mut last = 0;
            for e in &mut events[first..] {
                last = last.max(e.time_ns);
                e.time_ns = last;
            }
        }
        // Stable: events of one time keep their ring's order.
        events.sort_by_key(|e| e.time_ns);
        Trace::from_events(workers, events, dropped)
    }

    fn all_rings(&self) -> impl Iterator<Item = &Ring> {
        self.rings
            .iter()
            .map(|r| &**r)
            .chain(core::iter::once(&self.foreign))
    }

    /// The id of the job whose header is at `job`, in the frame running.
    #[inline]
    pub(crate) fn job_id<T>(&self, job: *const T) -> JobId {
        JobId::new(job as usize, self.frame.load(Ordering::Relaxed))
    }

    /// The id of the counter whose state is at `counter`, in the frame running.
    #[inline]
    pub(crate) fn counter_id<T>(&self, counter: *const T) -> CounterId {
        CounterId::new(counter as usize, self.frame.load(Ordering::Relaxed))
    }

    /// Records `kind`, now, as done by worker `by` (`None`: a thread that is no worker of this
    /// scheduler). Does nothing when no trace is recording.
    ///
    /// # Safety
    /// 1. If `by` is `Some(w)`, the calling thread is worker `w` of the scheduler that owns
    ///    this tracer (the background thread `w`, or for `w == 0` the thread inside
    ///    `run_frame`), and `w` is below the number of workers.
    #[inline]
    pub(crate) unsafe fn record(&self, by: Option<usize>, kind: EventKind) {
        if self.is_on() {
            // SAFETY: (1) is ours.
            unsafe { self.record_on(by, kind) }
        }
    }

    /// [`record`](Tracer::record) once `is_on` said yes; out of line so that the hot paths
    /// carry only the check.
    ///
    /// # Safety
    /// 1. As for `record`.
    #[inline(never)]
    unsafe fn record_on(&self, by: Option<usize>, kind: EventKind) {
        let ev = RawEvent {
            ticks: self.clock.ticks(),
            kind,
        };
        match by {
            Some(w) => {
                let ring = self.rings.get(w).expect(
                    "Tracer::record: worker index out of range; `by` must be the calling worker's",
                );
                // SAFETY: (1): we are worker `w`, the only thread that pushes onto ring `w`;
                // the threads that were worker `w` before us happen-before us.
                unsafe { ring.push(ev) }
            }
            None => {
                let _producer = lock(&self.foreign_lock);
                // SAFETY: holding `foreign_lock` makes us the foreign ring's one producer, and
                // the lock orders us after the previous holder.
                unsafe { self.foreign.push(ev) }
            }
        }
    }

    /// Frame `index` starts: sets the frame for ids, records `FrameBegin` and the root
    /// future's spawn (named `"root"`). Call it before the frame's first job exists.
    ///
    /// # Safety
    /// 1. The caller is the driving thread (worker 0) inside `run_frame`.
    #[inline]
    pub(crate) unsafe fn frame_begin<T>(&self, index: u64, root: *const T) {
        if self.is_on() {
            self.frame.store(index, Ordering::Relaxed);
            let job = self.job_id(root);
            // SAFETY: (1): we are worker 0.
            unsafe {
                self.record_on(Some(0), EventKind::FrameBegin { index });
                self.record_on(
                    Some(0),
                    EventKind::Spawn {
                        job,
                        parent: None,
                        name: Some("root"),
                        location: None,
                    },
                );
            }
        }
    }

    /// Frame `index` ended (every job done, arenas reset); its jobs and values took
    /// `arena_bytes` of arena.
    ///
    /// # Safety
    /// 1. The caller is the driving thread (worker 0) inside `run_frame`.
    #[inline]
    pub(crate) unsafe fn frame_end(&self, index: u64, arena_bytes: usize) {
        // SAFETY: (1): we are worker 0.
        unsafe { self.record(Some(0), EventKind::FrameEnd { index, arena_bytes }) }
    }

    /// Job `job` (its header) was spawned by `by` while `parent` (a header, or null when not
    /// known) was polled.
    ///
    /// # Safety
    /// 1. As for [`record`](Tracer::record).
    #[inline]
    pub(crate) unsafe fn spawn<T, P>(
        &self,
        by: Option<usize>,
        job: *const T,
        parent: *const P,
        name: Option<&'static str>,
        location: Option<&'static Location<'static>>,
    ) {
        if self.is_on() {
            let kind = EventKind::Spawn {
                job: self.job_id(job),
                parent: (!parent.is_null()).then(|| self.job_id(parent)),
                name,
                location,
            };
            // SAFETY: (1) is ours.
            unsafe { self.record_on(by, kind) }
        }
    }

    /// Worker `by` starts polling `job`.
    ///
    /// # Safety
    /// 1. The caller is worker `by` (as in [`record`](Tracer::record)).
    #[inline]
    pub(crate) unsafe fn poll_begin<T>(&self, by: usize, job: *const T) {
        if self.is_on() {
            let job = self.job_id(job);
            // SAFETY: (1) is ours.
            unsafe { self.record_on(Some(by), EventKind::PollBegin { job }) }
        }
    }

    /// Worker `by`'s poll of `job` returned `result`.
    ///
    /// # Safety
    /// 1. The caller is worker `by` (as in [`record`](Tracer::record)).
    #[inline]
    pub(crate) unsafe fn poll_end<T>(&self, by: usize, job: *const T, result: PollResult) {
        if self.is_on() {
            let job = self.job_id(job);
            // SAFETY: (1) is ours.
            unsafe { self.record_on(Some(by), EventKind::PollEnd { job, result }) }
        }
    }

    /// `by` (a worker, or `None` for another thread) woke `job`.
    ///
    /// # Safety
    /// 1. As for [`record`](Tracer::record).
    #[inline]
    pub(crate) unsafe fn wake<T>(&self, by: Option<usize>, job: *const T) {
        if self.is_on() {
            let job = self.job_id(job);
            // SAFETY: (1) is ours.
            unsafe { self.record_on(by, EventKind::Wake { job }) }
        }
    }

    /// Worker `thief` took `count` jobs from worker `victim`'s queue.
    ///
    /// # Safety
    /// 1. The caller is worker `thief` (as in [`record`](Tracer::record)).
    #[inline]
    pub(crate) unsafe fn steal(&self, thief: usize, victim: usize, count: usize) {
        // SAFETY: (1) is ours.
        unsafe { self.record(Some(thief), EventKind::Steal { victim, count }) }
    }

    /// Worker `by` parks.
    ///
    /// # Safety
    /// 1. The caller is worker `by` (as in [`record`](Tracer::record)).
    #[inline]
    pub(crate) unsafe fn park(&self, by: usize) {
        // SAFETY: (1) is ours.
        unsafe { self.record(Some(by), EventKind::Park) }
    }

    /// Worker `by` is awake again.
    ///
    /// # Safety
    /// 1. The caller is worker `by` (as in [`record`](Tracer::record)).
    #[inline]
    pub(crate) unsafe fn unpark(&self, by: usize) {
        // SAFETY: (1) is ours.
        unsafe { self.record(Some(by), EventKind::Unpark) }
    }

    /// A counter (its state at `counter`) was made at `location`.
    ///
    /// # Safety
    /// 1. As for [`record`](Tracer::record).
    #[inline]
    pub(crate) unsafe fn counter_created<T>(
        &self,
        by: Option<usize>,
        counter: *const T,
        location: Option<&'static Location<'static>>,
    ) {
        if self.is_on() {
            let counter = self.counter_id(counter);
            // SAFETY: (1) is ours.
            unsafe { self.record_on(by, EventKind::CounterCreated { counter, location }) }
        }
    }

    /// The job polling on `by` awaits the counter at `counter` (made at `location`).
    ///
    /// # Safety
    /// 1. As for [`record`](Tracer::record).
    #[inline]
    pub(crate) unsafe fn counter_awaited<T>(
        &self,
        by: Option<usize>,
        counter: *const T,
        location: Option<&'static Location<'static>>,
    ) {
        if self.is_on() {
            let counter = self.counter_id(counter);
            // SAFETY: (1) is ours.
            unsafe { self.record_on(by, EventKind::CounterAwaited { counter, location }) }
        }
    }

    /// The counter at `counter` (made at `location`) reached zero on `by`.
    ///
    /// # Safety
    /// 1. As for [`record`](Tracer::record).
    #[inline]
    pub(crate) unsafe fn counter_zero<T>(
        &self,
        by: Option<usize>,
        counter: *const T,
        location: Option<&'static Location<'static>>,
    ) {
        if self.is_on() {
            let counter = self.counter_id(counter);
            // SAFETY: (1) is ours.
            unsafe { self.record_on(by, EventKind::CounterZero { counter, location }) }
        }
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;

    fn header(n: usize) -> *const u8 {
        (0x10_000 + 64 * n) as *const u8
    }

    fn polled(trace: &Trace) -> Vec<(Option<usize>, JobId)> {
        trace
            .events()
            .iter()
            .filter_map(|e| match e.kind {
                EventKind::PollBegin { job } => Some((e.worker, job)),
                _ => None,
            })
            .collect()
    }

    #[test]
    #[cfg(target_pointer_width = "64")]
    fn an_event_is_56_bytes() {
        // Ticks, and the largest kind (a spawn: two ids, a name, a location) with its tag.
        assert_eq!(core::mem::size_of::<RawEvent>(), 56);
    }

    #[test]
    fn full_ring_drops_newest_and_counts_them() {
        let tracer = Tracer::new(2, 8);
        assert_eq!(tracer.capacity(), 8);
        tracer.start();
        let slots = tracer.rings[1].slots.as_ptr();
        for n in 0..20 {
            // SAFETY: this thread is the only one recording as worker 1.
            unsafe { tracer.poll_begin(1, header(n)) };
        }
        // SAFETY: this thread is the only one recording as worker 0.
        unsafe { tracer.park(0) };
        // Recording wrote into the slots made at build time: same memory, same length.
        assert_eq!(tracer.rings[1].slots.as_ptr(), slots);
        assert_eq!(tracer.rings[1].slots.len(), 8);
        let trace = tracer.take();
        assert_eq!(trace.dropped(), 12);
        assert_eq!(trace.events().len(), 9);
        let kept: Vec<_> = (0..8)
            .map(|n| (Some(1), tracer.job_id(header(n))))
            .collect();
        assert_eq!(polled(&trace), kept, "the oldest eight are kept, in order");
        assert_eq!(trace.events().last().unwrap().kind, EventKind::Park);
    }

    #[test]
    fn capacity_rounds_up_to_a_power_of_two() {
        let tracer = Tracer::new(1, 5);
        assert_eq!(tracer.capacity(), 8);
        tracer.start();
        for _ in 0..9 {
            // SAFETY: this thread is the only one recording as worker 0.
            unsafe { tracer.unpark(0) };
        }
        let trace = tracer.take();
        assert_eq!((trace.events().len(), trace.dropped()), (8, 1));
    }

    #[test]
    fn rings_wrap_around_across_traces() {
        let tracer = Tracer::new(1, 8);
        for round in 0..3 {
            tracer.start();
            for n in 0..6 {
                // SAFETY: this thread is the only one recording as worker 0.
                unsafe { tracer.poll_begin(0, header(10 * round + n)) };
            }
            let trace = tracer.take();
            let want: Vec<_> = (0..6)
                .map(|n| (Some(0), tracer.job_id(header(10 * round + n))))
                .collect();
            assert_eq!(polled(&trace), want, "round {round}");
            assert_eq!(trace.dropped(), 0, "round {round}");
        }
    }

    #[test]
    fn nothing_is_recorded_outside_a_trace() {
        let tracer = Tracer::new(2, 16);
        // SAFETY: this thread is the only one recording as worker 1.
        unsafe { tracer.park(1) };
        tracer.start();
        // SAFETY: as above.
        unsafe { tracer.unpark(1) };
        let trace = tracer.take();
        // SAFETY: as above.
        unsafe { tracer.park(1) };
        assert_eq!(trace.events().len(), 1);
        assert_eq!(trace.events()[0].kind, EventKind::Unpark);
        // The park after `take` is dropped by the next start.
        tracer.start();
        assert_eq!(tracer.take().events().len(), 0);
    }

    #[test]
    fn dropped_counts_only_this_trace() {
        let tracer = Tracer::new(1, 2);
        tracer.start();
        for _ in 0..5 {
            // SAFETY: this thread is the only one recording as worker 0.
            unsafe { tracer.park(0) };
        }
        assert_eq!(tracer.take().dropped(), 3);
        tracer.start();
        for _ in 0..3 {
            // SAFETY: as above.
            unsafe { tracer.park(0) };
        }
        assert_eq!(tracer.take().dropped(), 1);
    }

    #[test]
    fn events_merge_in_time_order_with_their_threads() {
        let tracer = std::sync::Arc::new(Tracer::new(2, 64));
        tracer.start();
        // SAFETY: this thread is the only one recording as worker 0.
        unsafe { tracer.frame_begin(3, header(0)) };
        let t = std::sync::Arc::clone(&tracer);
        std::thread::spawn(move || {
            // SAFETY: this thread is the only one recording as worker 1 (the main thread
            // waits for it below).
            unsafe {
                t.steal(1, 0, 4);
                t.poll_begin(1, header(1));
                t.poll_end(1, header(1), PollResult::Ready);
            }
            // SAFETY: `None` asks nothing.
            unsafe { t.wake(None, header(0)) };
        })
        .join()
        .unwrap();
        // SAFETY: the main thread is worker 0.
        unsafe { tracer.frame_end(3, 4096) };
        let trace = tracer.take();
        let kinds: Vec<_> = trace.events().iter().map(|e| (e.worker, e.kind)).collect();
        let root = JobId::new(header(0) as usize, 3);
        let job = JobId::new(header(1) as usize, 3);
        assert_eq!(
            kinds,
            [
                (Some(0), EventKind::FrameBegin { index: 3 }),
                (
                    Some(0),
                    EventKind::Spawn {
                        job: root,
                        parent: None,
                        name: Some("root"),
                        location: None
                    }
                ),
                (
                    Some(1),
                    EventKind::Steal {
                        victim: 0,
                        count: 4
                    }
                ),
                (Some(1), EventKind::PollBegin { job }),
                (
                    Some(1),
                    EventKind::PollEnd {
                        job,
                        result: PollResult::Ready
                    }
                ),
                (None, EventKind::Wake { job: root }),
                (
                    Some(0),
                    EventKind::FrameEnd {
                        index: 3,
                        arena_bytes: 4096
                    }
                ),
            ]
        );
        assert!(
            trace
                .events()
                .windows(2)
                .all(|w| w[0].time_ns <= w[1].time_ns)
        );
        assert_eq!(trace.frames().collect::<Vec<_>>(), [3]);
    }

    #[test]
    fn spawn_and_counter_events_carry_their_ids() {
        let tracer = Tracer::new(1, 16);
        tracer.start();
        let here = Location::caller();
        // SAFETY: this thread is the only one recording as worker 0.
        unsafe {
            tracer.frame_begin(1, header(0));
            tracer.spawn(Some(0), header(1), header(0), Some("a"), Some(here));
            tracer.spawn(Some(0), header(2), core::ptr::null::<u8>(), None, None);
            tracer.counter_created(Some(0), header(9), Some(here));
            tracer.counter_awaited(Some(0), header(9), Some(here));
            tracer.counter_zero(Some(0), header(9), None);
        }
        let trace = tracer.take();
        let id = |n| JobId::new(header(n) as usize, 1);
        let counter = CounterId::new(header(9) as usize, 1);
        let kinds: Vec<_> = trace.events()[2..].iter().map(|e| e.kind).collect();
        assert_eq!(
            kinds,
            [
                EventKind::Spawn {
                    job: id(1),
                    parent: Some(id(0)),
                    name: Some("a"),
                    location: Some(here)
                },
                EventKind::Spawn {
                    job: id(2),
                    parent: None,
                    name: None,
                    location: None
                },
                EventKind::CounterCreated {
                    counter,
                    location: Some(here)
                },
                EventKind::CounterAwaited {
                    counter,
                    location: Some(here)
                },
                EventKind::CounterZero {
                    counter,
                    location: None
                },
            ]
        );
    }

    #[test]
    #[should_panic(expected = "trace_capacity is 0")]
    fn start_without_capacity_panics() {
        Tracer::new(2, 0).start();
    }

    #[test]
    #[should_panic(expected = "call start_trace before")]
    fn take_without_start_panics() {
        let _ = Tracer::new(2, 4).take();
    }

    #[test]
    fn off_tracer_holds_no_ring() {
        let tracer = Tracer::new(4, 0);
        assert_eq!((tracer.rings.len(), tracer.capacity()), (0, 0));
        assert!(!tracer.is_on());
        // SAFETY: off: nothing is recorded, whatever the worker.
        unsafe { tracer.park(3) };
    }
}
