//! Traces: what every worker did, event by event, while a trace was recording, and two ways to
//! look at it (Chrome Trace Event JSON for Perfetto and chrome://tracing, and an SVG timeline a
//! browser opens as it is).
//!
//! `ring.rs` owns the recording side: one fixed-capacity ring of events per worker, allocated
//! when the scheduler is built and written by its worker with plain stores (no lock, no
//! read-modify-write, no allocation), and the clock. This file owns the event model and
//! [`Trace`], the events of all workers merged in time order; `chrome.rs` and `svg.rs` write it.
//!
//! # Identifying jobs
//! A job is known by its header's address in the frame arena. Arenas are reset at every frame
//! end, so the same address names another job in a later frame; a [`JobId`] therefore mixes the
//! frame's index into the address's top 16 bits (`address ^ (frame << 48)`), which no user-space
//! address uses on the 64-bit targets this crate runs on. Two jobs of one trace get the same id
//! only if their frames' indices are 65,536 apart and their headers sat at the same address. A
//! job keeps its id for its whole life, whichever workers poll it. Counters get a
//! [`CounterId`] the same way.

mod chrome;
mod ring;
mod svg;

use core::fmt;
use core::panic::Location;
use std::collections::HashMap;

pub(crate) use ring::{Clock, Tracer};

/// Which job an event is about, unique within a [`Trace`] (see the module's docs: the header's
/// address mixed with the frame's index).
///
/// ```
/// # let mut scheduler = frame_scheduler::Scheduler::builder().workers(1).trace_capacity(1024).build().unwrap();
/// use frame_scheduler::EventKind;
/// scheduler.start_trace();
/// scheduler.run_frame(async |frame| frame.spawn(async {}).await);
/// let trace = scheduler.take_trace();
/// let polled: Vec<_> = trace.events().iter().filter_map(|e| match e.kind {
///     EventKind::PollBegin { job } => Some(job),
///     _ => None,
/// }).collect();
/// // On one worker: the root (pending on the job), the job, the root again.
/// assert_eq!(polled.len(), 3);
/// assert_eq!(polled[0], polled[2]);
/// assert_ne!(polled[0], polled[1]);
/// ```
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct JobId(u64);

impl JobId {
    /// The id of the job whose header is at `addr`, spawned in frame `frame`.
    pub(crate) fn new(addr: usize, frame: u64) -> JobId {
        JobId(addr as u64 ^ (frame << 48))
    }

    /// The id as a number (what the exports print, in hexadecimal).
    pub fn as_u64(self) -> u64 {
        self.0
    }
}

impl fmt::Debug for JobId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "JobId({:#x})", self.0)
    }
}

impl fmt::Display for JobId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:#x}", self.0)
    }
}

/// Which counter an event is about, unique within a [`Trace`] as a [`JobId`] is.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct CounterId(u64);

impl CounterId {
    /// The id of the counter whose state is at `addr`, made in frame `frame`.
    pub(crate) fn new(addr: usize, frame: u64) -> CounterId {
        CounterId(addr as u64 ^ (frame << 48))
    }

    /// The id as a number (what the exports print, in hexadecimal).
    pub fn as_u64(self) -> u64 {
        self.0
    }
}

impl fmt::Debug for CounterId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "CounterId({:#x})", self.0)
    }
}

impl fmt::Display for CounterId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:#x}", self.0)
    }
}

/// How one poll of a job ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum PollResult {
    /// The job is waiting; a wake will have it polled again.
    Pending,
    /// The job finished.
    Ready,
    /// The job's future panicked; the job is finished.
    Panicked,
}

impl PollResult {
    fn as_str(self) -> &'static str {
        match self {
            PollResult::Pending => "Pending",
            PollResult::Ready => "Ready",
            PollResult::Panicked => "Panicked",
        }
    }
}

/// What happened. The thread it happened on is [`Event::worker`]: the spawner of a spawn, the
/// poller of a poll, the waker of a wake, the thief of a steal.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum EventKind {
    /// `run_frame` started frame `index` (recorded by the driving thread, worker 0).
    FrameBegin {
        /// The frame's number (`Frame::index`).
        index: u64,
    },
    /// Frame `index` finished: every job done, every arena reset.
    FrameEnd {
        /// The frame's number.
        index: u64,
        /// Bytes of arena the frame's jobs, counters and values took, over every arena (the
        /// frame's [`FrameStats::arena_bytes`](crate::FrameStats::arena_bytes)).
        arena_bytes: usize,
    },
    /// A job was spawned. The frame's root future appears as a job named `"root"`, spawned at
    /// the frame's start.
    Spawn {
        /// The new job.
        job: JobId,
        /// The job whose poll spawned it, when known (`None`: the root future, a foreign thread,
        /// or not recorded; the exports then take the poll running on the spawning worker).
        parent: Option<JobId>,
        /// The job's name, if it was given one.
        name: Option<&'static str>,
        /// Where it was spawned, if known.
        location: Option<&'static Location<'static>>,
    },
    /// A worker started polling a job.
    PollBegin {
        /// The job.
        job: JobId,
    },
    /// The poll that the same worker's last unmatched `PollBegin` of `job` started has returned.
    PollEnd {
        /// The job.
        job: JobId,
        /// How the poll ended.
        result: PollResult,
    },
    /// A job's waker was woken, by a worker or (`Event::worker == None`) another thread.
    Wake {
        /// The job woken.
        job: JobId,
    },
    /// The event's worker took `count` jobs from worker `victim`'s queue.
    Steal {
        /// The worker whose queue the jobs came from.
        victim: usize,
        /// How many jobs were taken.
        count: usize,
    },
    /// The event's worker found no work and went to sleep.
    Park,
    /// The event's worker woke up.
    Unpark,
    /// A counter was made.
    CounterCreated {
        /// The counter.
        counter: CounterId,
        /// Where it was made, if known.
        location: Option<&'static Location<'static>>,
    },
    /// A job (the one polling on the event's worker) awaited a counter.
    CounterAwaited {
        /// The counter.
        counter: CounterId,
        /// Where the counter was made, if known.
        location: Option<&'static Location<'static>>,
    },
    /// A counter reached zero, releasing its awaiters.
    CounterZero {
        /// The counter.
        counter: CounterId,
        /// Where the counter was made, if known.
        location: Option<&'static Location<'static>>,
    },
}

/// One recorded event.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct Event {
    /// Nanoseconds since the trace started.
    pub time_ns: u64,
    /// The worker it happened on (0 is the thread calling `run_frame`), or `None` for a thread
    /// that is no worker of the scheduler (a foreign waker or spawner).
    pub worker: Option<usize>,
    /// What happened.
    pub kind: EventKind,
}

/// The events of every worker between `Scheduler::start_trace` and `Scheduler::take_trace`,
/// merged in time order, with what is needed to draw them.
///
/// Events are recorded into fixed-capacity per-worker buffers; when one is full, its newest
/// events are dropped (the start of the trace is kept) and counted in [`dropped`](Trace::dropped).
/// A poll whose end was dropped appears in the exports as lasting to the end of the trace.
///
/// ```
/// let mut scheduler = frame_scheduler::Scheduler::builder()
///     .workers(2)
///     .trace_capacity(4096)
///     .build()
///     .unwrap();
/// scheduler.start_trace();
/// for _ in 0..2 {
///     scheduler.run_frame(async |frame| {
///         let jobs = frame.counter();
///         for _ in 0..8 {
///             frame.spawn_counted(jobs, async {});
///         }
///         jobs.await;
///     });
/// }
/// let trace = scheduler.take_trace();
/// assert_eq!(trace.workers(), 2);
/// assert_eq!(trace.frames().collect::<Vec<_>>(), [0, 1]);
/// assert_eq!(trace.dropped(), 0);
/// ```
#[derive(Clone)]
pub struct Trace {
    events: Vec<Event>,
    workers: usize,
    dropped: u64,
}

impl fmt::Debug for Trace {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Trace")
            .field("workers", &self.workers)
            .field("events", &self.events.len())
            .field("dropped", &self.dropped)
            .finish_non_exhaustive()
    }
}

impl Trace {
    /// A trace of `events`, which must be sorted by time, from a scheduler of `workers` workers.
    pub(crate) fn from_events(workers: usize, events: Vec<Event>, dropped: u64) -> Trace {
        debug_assert!(events.windows(2).all(|w| w[0].time_ns <= w[1].time_ns));
        Trace {
            events,
            workers,
            dropped,
        }
    }

    /// Every event recorded, in time order (events of one worker keep the order they happened
    /// in).
    pub fn events(&self) -> &[Event] {
        &self.events
    }

    /// How many workers the scheduler had (the tracks of the exports).
    pub fn workers(&self) -> usize {
        self.workers
    }

    /// Events lost because a worker's buffer was full (raise `trace_capacity` to keep them).
    pub fn dropped(&self) -> u64 {
        self.dropped
    }

    /// The indices of the frames that began while the trace was recording, in order.
    pub fn frames(&self) -> impl Iterator<Item = u64> + '_ {
        self.events.iter().filter_map(|e| match e.kind {
            EventKind::FrameBegin { index } => Some(index),
            _ => None,
        })
    }

    /// Writes the trace as Chrome Trace Event JSON, which the Perfetto UI
    /// (<https://ui.perfetto.dev>) and chrome://tracing open.
    ///
    /// One track per worker (`driver` is worker 0, the thread calling `run_frame`; the others
    /// are `frame-worker-N`, as their threads are named), a `frames` track with a slice per
    /// frame, and a `foreign threads` track for wakes and spawns from other threads. Each poll is
    /// a slice named by its job's name, else its spawn location (`file:line`), else `job`; its
    /// `args` carry the job id, the poll's number and result, so a job polled on several
    /// workers reads as one. Arrows (flow events) lead from a spawn to the job's first poll and
    /// from a wake to the poll it caused. Steals, parks, unparks and counter events are instant
    /// events. Two counter tracks: `jobs` shows the jobs alive and those runnable (spawned or
    /// woken, not yet polled, i.e. the queue depth), derived from the events; `arena` shows
    /// each frame's arena use in bytes ([`FrameStats::arena_bytes`](crate::FrameStats)) over
    /// the frame's span, and 0 between frames (the arenas are reset at every frame's end).
    ///
    /// ```
    /// # let mut scheduler = frame_scheduler::Scheduler::builder().workers(2).trace_capacity(1024).build().unwrap();
    /// scheduler.start_trace();
    /// scheduler.run_frame(async |frame| frame.spawn(async {}).await);
    /// let trace = scheduler.take_trace();
    /// let mut json = Vec::new();
    /// trace.write_chrome_json(&mut json)?;
    /// assert!(json.starts_with(b"{"));
    /// // Or into a file: trace.write_chrome_json(std::fs::File::create("frame_trace.json")?)?;
    /// # Ok::<(), std::io::Error>(())
    /// ```
    ///
    /// # Errors
    /// Whatever `w` returns.
    pub fn write_chrome_json(&self, w: impl std::io::Write) -> std::io::Result<()> {
        chrome::write(self, w)
    }

    /// Writes the trace as an SVG timeline that a web browser opens without any other tool:
    /// one row per worker, a rectangle per poll coloured by its job's name (hover for the job's
    /// name, id and duration), the idle time between polls as the row's background, a vertical
    /// line at each frame's start labelled with its index, marks where counters reached zero,
    /// a time axis in milliseconds and a legend of the names that took the most time.
    ///
    /// ```
    /// # let mut scheduler = frame_scheduler::Scheduler::builder().workers(2).trace_capacity(1024).build().unwrap();
    /// scheduler.start_trace();
    /// scheduler.run_frame(async |frame| frame.spawn(async {}).await);
    /// let trace = scheduler.take_trace();
    /// let mut svg = Vec::new();
    /// trace.write_svg(&mut svg)?;
    /// assert!(svg.starts_with(b"<svg"));
    /// # Ok::<(), std::io::Error>(())
    /// ```
    ///
    /// # Errors
    /// Whatever `w` returns.
    pub fn write_svg(&self, w: impl std::io::Write) -> std::io::Result<()> {
        svg::write(self, w)
    }
}

/// What a job is called in the exports: its name, else where it was spawned, else `job`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub(crate) enum Label {
    Name(&'static str),
    Location(&'static Location<'static>),
    Anonymous,
}

impl fmt::Display for Label {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Label::Name(name) => f.write_str(name),
            Label::Location(loc) => write!(f, "{}:{}", loc.file(), loc.line()),
            Label::Anonymous => f.write_str("job"),
        }
    }
}

/// A poll, begin to end, as both exports draw it.
#[derive(Clone, Copy, Debug)]
pub(crate) struct PollSpan {
    pub(crate) job: JobId,
    /// The track: a worker, or `workers` for foreign threads.
    pub(crate) track: usize,
    pub(crate) begin: u64,
    pub(crate) end: u64,
    /// `None`: the trace ended (or the end event was dropped) before the poll returned.
    pub(crate) result: Option<PollResult>,
    /// 1 for the job's first poll in the trace, 2 for its second...
    pub(crate) number: u32,
}

/// A frame, begin to end.
#[derive(Clone, Copy, Debug)]
pub(crate) struct FrameSpan {
    pub(crate) index: u64,
    pub(crate) begin: u64,
    pub(crate) end: u64,
    /// The frame's arena use, from its `FrameEnd` (`None`: the end was not recorded).
    pub(crate) arena_bytes: Option<usize>,
}

/// What both exports need from the events: polls paired into spans, frames, job labels.
#[derive(Debug)]
pub(crate) struct Timeline {
    /// In order of their begin.
    pub(crate) polls: Vec<PollSpan>,
    pub(crate) frames: Vec<FrameSpan>,
    pub(crate) labels: HashMap<JobId, Label>,
    pub(crate) locations: HashMap<JobId, &'static Location<'static>>,
    /// The time of the last event.
    pub(crate) end: u64,
    /// Tracks: one per worker, then one for foreign threads.
    pub(crate) tracks: usize,
}

impl Timeline {
    pub(crate) fn new(trace: &Trace) -> Timeline {
        let tracks = trace.workers + 1;
        let end = trace.events.last().map_or(0, |e| e.time_ns);
        let mut polls: Vec<PollSpan> = Vec::new();
        let mut frames: Vec<FrameSpan> = Vec::new();
        let mut labels = HashMap::new();
        let mut locations = HashMap::new();
        let mut numbers: HashMap<JobId, u32> = HashMap::new();
        // Per track, the polls begun and not yet ended (indices into `polls`), innermost last.
        let mut open: Vec<Vec<usize>> = vec![Vec::new(); tracks];
        for e in &trace.events {
            let track = track_of(trace, e.worker);
            match e.kind {
                EventKind::Spawn {
                    job,
                    name,
                    location,
                    ..
                } => {
                    let label = match (name, location) {
                        (Some(n), _) => Label::Name(n),
                        (None, Some(l)) => Label::Location(l),
                        (None, None) => Label::Anonymous,
                    };
                    labels.insert(job, label);
                    if let Some(l) = location {
                        locations.insert(job, l);
                    }
                }
                EventKind::PollBegin { job } => {
                    let n = numbers.entry(job).or_insert(0);
                    *n += 1;
                    open[track].push(polls.len());
                    polls.push(PollSpan {
                        job,
                        track,
                        begin: e.time_ns,
                        end,
                        result: None,
                        number: *n,
                    });
                }
                EventKind::PollEnd { job, result } => {
                    let stack = &mut open[track];
                    if let Some(pos) = stack.iter().rposition(|&i| polls[i].job == job) {
                        let i = stack.remove(pos);
                        polls[i].end = e.time_ns;
                        polls[i].result = Some(result);
                    }
                }
                EventKind::FrameBegin { index } => frames.push(FrameSpan {
                    index,
                    begin: e.time_ns,
                    end,
                    arena_bytes: None,
                }),
                EventKind::FrameEnd { index, arena_bytes } => {
                    if let Some(f) = frames.iter_mut().rev().find(|f| f.index == index) {
                        f.end = e.time_ns;
                        f.arena_bytes = Some(arena_bytes);
                    }
                }
                _ => {}
            }
        }
        Timeline {
            polls,
            frames,
            labels,
            locations,
            end,
            tracks,
        }
    }

    pub(crate) fn label(&self, job: JobId) -> Label {
        self.labels.get(&job).copied().unwrap_or(Label::Anonymous)
    }
}

/// The track an event's thread draws on: its worker, or the foreign-threads track.
pub(crate) fn track_of(trace: &Trace, worker: Option<usize>) -> usize {
    match worker {
        Some(w) if w < trace.workers => w,
        _ => trace.workers,
    }
}

#[cfg(all(test, not(loom)))]
pub(crate) mod tests {
    use super::*;

    /// Builds a synthetic trace event by event, one microsecond apart.
    pub(crate) struct Script {
        pub(crate) workers: usize,
        pub(crate) events: Vec<Event>,
        pub(crate) now: u64,
    }

    impl Script {
        pub(crate) fn new(workers: usize) -> Script {
            Script {
                workers,
                events: Vec::new(),
                now: 0,
            }
        }

        pub(crate) fn at(&mut self, worker: Option<usize>, kind: EventKind) -> &mut Self {
            self.now += 1000;
            self.events.push(Event {
                time_ns: self.now,
                worker,
                kind,
            });
            self
        }

        pub(crate) fn on(&mut self, worker: usize, kind: EventKind) -> &mut Self {
            self.at(Some(worker), kind)
        }

        pub(crate) fn trace(&self) -> Trace {
            Trace::from_events(self.workers, self.events.clone(), 0)
        }
    }

    pub(crate) fn job(n: usize) -> JobId {
        JobId::new(0x1000 + 64 * n, 0)
    }

    pub(crate) fn spawn(job: JobId, name: Option<&'static str>) -> EventKind {
        EventKind::Spawn {
            job,
            parent: None,
            name,
            location: None,
        }
    }

    pub(crate) fn begin(job: JobId) -> EventKind {
        EventKind::PollBegin { job }
    }

    pub(crate) fn end(job: JobId, result: PollResult) -> EventKind {
        EventKind::PollEnd { job, result }
    }

    /// A frame with awkward names, a job resumed on another worker, a foreign wake, a steal, a
    /// park, counters and a poll that never ends. Returns the script and the number of polls.
    pub(crate) fn sample() -> (Script, usize) {
        let here = Location::caller();
        let counter = CounterId::new(0x9000, 0);
        let (root, a, b, c, d) = (job(0), job(1), job(2), job(3), job(4));
        let mut s = Script::new(3);
        s.on(0, EventKind::FrameBegin { index: 7 })
            .on(0, spawn(root, Some("root")))
            .on(0, begin(root))
            .on(
                0,
                EventKind::CounterCreated {
                    counter,
                    location: Some(here),
                },
            )
            .on(0, spawn(a, Some("physics \"step\" <1>")))
            .on(
                0,
                EventKind::Spawn {
                    job: b,
                    parent: Some(root),
                    name: None,
                    location: Some(here),
                },
            )
            .on(0, spawn(c, Some("tab\tnew\nline \\ ☃ \u{1}")))
            .on(
                0,
                EventKind::CounterAwaited {
                    counter,
                    location: Some(here),
                },
            )
            .on(0, end(root, PollResult::Pending))
            .on(
                1,
                EventKind::Steal {
                    victim: 0,
                    count: 2,
                },
            )
            .on(1, begin(a))
            .on(2, EventKind::Unpark)
            .on(2, begin(b))
            .on(1, end(a, PollResult::Pending))
            .on(2, EventKind::Wake { job: a })
            .on(2, end(b, PollResult::Ready))
            .on(2, begin(a))
            .on(2, end(a, PollResult::Ready))
            .on(0, begin(c))
            .on(0, end(c, PollResult::Panicked))
            .on(
                2,
                EventKind::CounterZero {
                    counter,
                    location: Some(here),
                },
            )
            .on(2, EventKind::Park)
            .at(None, EventKind::Wake { job: root })
            .on(0, begin(root))
            .on(0, spawn(d, None))
            .on(0, end(root, PollResult::Ready))
            .on(1, begin(d))
            .on(
                0,
                EventKind::FrameEnd {
                    index: 7,
                    arena_bytes: 640,
                },
            );
        (s, 7)
    }

    #[test]
    fn timeline_pairs_polls_per_worker() {
        let (s, polls) = sample();
        let t = Timeline::new(&s.trace());
        assert_eq!(t.polls.len(), polls);
        let a = t
            .polls
            .iter()
            .filter(|p| p.job == job(1))
            .collect::<Vec<_>>();
        assert_eq!(a.len(), 2);
        assert_eq!(
            (a[0].track, a[0].number, a[0].result),
            (1, 1, Some(PollResult::Pending))
        );
        assert_eq!(
            (a[1].track, a[1].number, a[1].result),
            (2, 2, Some(PollResult::Ready))
        );
        // The last poll of `d` never ended: it lasts to the trace's last event.
        let d = t.polls.iter().find(|p| p.job == job(4)).unwrap();
        assert_eq!((d.result, d.end), (None, t.end));
        assert_eq!(t.frames.len(), 1);
        assert_eq!(
            (t.frames[0].index, t.frames[0].begin, t.frames[0].end),
            (7, 1000, t.end)
        );
        assert_eq!(t.label(job(1)), Label::Name("physics \"step\" <1>"));
        assert!(matches!(t.label(job(2)), Label::Location(_)));
        assert_eq!(t.label(job(4)), Label::Anonymous);
        assert_eq!(t.label(job(99)), Label::Anonymous);
    }

    #[test]
    fn frames_lists_indices_in_order() {
        let mut s = Script::new(1);
        for index in [3, 4, 5] {
            s.on(0, EventKind::FrameBegin { index }).on(
                0,
                EventKind::FrameEnd {
                    index,
                    arena_bytes: 0,
                },
            );
        }
        assert_eq!(s.trace().frames().collect::<Vec<_>>(), [3, 4, 5]);
    }

    #[test]
    fn job_ids_differ_across_frames() {
        assert_ne!(JobId::new(0x4000, 1), JobId::new(0x4000, 2));
        assert_ne!(JobId::new(0x4000, 1), JobId::new(0x4040, 1));
        assert_eq!(JobId::new(0x4000, 0).as_u64(), 0x4000);
        assert_eq!(JobId::new(0x4000, 3).to_string(), "0x3000000004000");
    }
}
