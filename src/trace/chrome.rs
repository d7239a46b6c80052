//! Chrome Trace Event JSON (the format of chrome://tracing, which the Perfetto UI opens too),
//! written by hand.
//!
//! Tracks (`tid`) are the workers (`0` is the driver), then `workers` for foreign threads, then
//! `workers + 1` for frames, all in process 1. Every record is collected first and written
//! sorted by time (slices before the flows and instants of the same instant, longer slices
//! before the ones they enclose), so every track's times rise.

use core::cmp::Reverse;
use core::fmt::{self, Write as _};
use std::collections::HashMap;
use std::io::{self, Write};

use super::{EventKind, JobId, Label, PollResult, Timeline, Trace, track_of};

const PID: u32 = 1;

/// Writes `trace` to `w` as a JSON object with a `traceEvents` array.
pub(super) fn write(trace: &Trace, w: impl Write) -> io::Result<()> {
    let timeline = Timeline::new(trace);
    let mut records = Records::default();
    let parents = walk(trace, &timeline, &mut records);
    slices(trace, &timeline, &parents, &mut records);
    let mut records = records.0;
    records.sort_by_key(|r| (r.ts, r.rank, Reverse(r.dur), r.seq));

    let mut out = io::BufWriter::new(w);
    let mut other = Obj::new();
    other
        .num("workers", trace.workers())
        .num("dropped_events", trace.dropped())
        .num("events", trace.events().len());
    writeln!(
        out,
        "{{\"displayTimeUnit\":\"ns\",\"otherData\":{},\"traceEvents\":[",
        other.finish()
    )?;
    let mut first = true;
    for m in metadata(trace, &timeline) {
        write_item(&mut out, &mut first, &m)?;
    }
    for r in &records {
        write_item(&mut out, &mut first, &r.json)?;
    }
    out.write_all(b"\n]}\n")?;
    out.flush()
}

fn write_item(out: &mut impl Write, first: &mut bool, json: &str) -> io::Result<()> {
    if !*first {
        out.write_all(b",\n")?;
    }
    *first = false;
    out.write_all(json.as_bytes())
}

/// One trace event, its JSON text and where it sorts.
struct Record {
    ts: u64,
    /// 0: slices, 1: flows, 2: instants, 3: counters.
    rank: u8,
    dur: u64,
    seq: usize,
    json: String,
}

#[derive(Default)]
struct Records(Vec<Record>);

impl Records {
    fn push(&mut self, ts: u64, rank: u8, dur: u64, json: String) {
        let seq = self.0.len();
        self.0.push(Record {
            ts,
            rank,
            dur,
            seq,
            json,
        });
    }

    /// A complete (`X`) slice.
    fn slice(
        &mut self,
        tid: usize,
        ts: u64,
        dur: u64,
        name: impl fmt::Display,
        cat: &str,
        args: Obj,
    ) {
        let mut o = Obj::new();
        o.str("name", name)
            .str("cat", cat)
            .str("ph", "X")
            .raw("ts", Micros(ts))
            .raw("dur", Micros(dur))
            .num("pid", PID)
            .num("tid", tid)
            .raw("args", args.finish());
        self.push(ts, 0, dur, o.finish());
    }

    /// A thread-scoped instant (`i`) event.
    fn instant(&mut self, tid: usize, ts: u64, name: &str, args: Obj) {
        let mut o = Obj::new();
        o.str("name", name)
            .str("cat", "scheduler")
            .str("ph", "i")
            .str("s", "t")
            .raw("ts", Micros(ts))
            .num("pid", PID)
            .num("tid", tid)
            .raw("args", args.finish());
        self.push(ts, 2, 0, o.finish());
    }

    /// A sample of counter track `name` (one track per key of `args`).
    fn counter(&mut self, ts: u64, name: &str, args: Obj) {
        let mut o = Obj::new();
        o.str("name", name)
            .str("ph", "C")
            .raw("ts", Micros(ts))
            .num("pid", PID)
            .num("tid", 0usize)
            .raw("args", args.finish());
        self.push(ts, 3, 0, o.finish());
    }

    /// One end of flow `id`: `s` binds to the slice enclosing it, `f` (with `bp: e`) to the
    /// slice enclosing it, which is the poll starting at `ts`.
    fn flow_end(&mut self, ph: &str, id: u64, tid: usize, ts: u64, name: &str) {
        let mut o = Obj::new();
        o.str("name", name)
            .str("cat", "flow")
            .str("ph", ph)
            .num("id", id)
            .raw("ts", Micros(ts))
            .num("pid", PID)
            .num("tid", tid);
        if ph == "f" {
            o.str("bp", "e");
        }
        self.push(ts, 1, 0, o.finish());
    }
}

/// Where a spawn or wake happened, to start an arrow from.
#[derive(Clone, Copy)]
struct Anchor {
    ts: u64,
    track: usize,
    /// Whether a poll ran on that track then (else the arrow needs a slice to start from).
    enclosed: bool,
}

/// A job's state as the counters of jobs alive and runnable see it.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Phase {
    /// Its spawn was not recorded: it counts in neither figure.
    Unknown,
    Queued,
    Running {
        woken: bool,
    },
    Idle,
    Done,
}

struct JobState {
    spawn: Option<Anchor>,
    wake: Option<Anchor>,
    polled: bool,
    phase: Phase,
}

/// Walks the events in order: flows, instants and the counter track. Returns each job's
/// parent (as recorded, else the poll running where it was spawned).
fn walk(trace: &Trace, timeline: &Timeline, records: &mut Records) -> HashMap<JobId, JobId> {
    let mut jobs: HashMap<JobId, JobState> = HashMap::new();
    let mut parents = HashMap::new();
    let mut open: Vec<Vec<JobId>> = vec![Vec::new(); timeline.tracks];
    let (mut alive, mut runnable) = (0u64, 0u64);
    let mut flows = 0u64;
    for e in trace.events() {
        let ts = e.time_ns;
        let track = track_of(trace, e.worker);
        let anchor = Anchor {
            ts,
            track,
            enclosed: !open[track].is_empty(),
        };
        let counts = (alive, runnable);
        match e.kind {
            EventKind::Spawn { job, parent, .. } => {
                if let Some(p) = parent.or_else(|| open[track].last().copied()) {
                    parents.insert(job, p);
                }
                jobs.insert(
                    job,
                    JobState {
                        spawn: Some(anchor),
                        wake: None,
                        polled: false,
                        phase: Phase::Queued,
                    },
                );
                alive += 1;
                runnable += 1;
            }
            EventKind::PollBegin { job } => {
                open[track].push(job);
                let state = jobs.entry(job).or_insert(JobState {
                    spawn: None,
                    wake: None,
                    polled: false,
                    phase: Phase::Unknown,
                });
                let from = if state.polled {
                    state.wake.take().map(|a| (a, "wake"))
                } else {
                    state.polled = true;
                    state.wake = None;
                    state.spawn.take().map(|a| (a, "spawn"))
                };
                if let Some((from, name)) = from {
                    flows += 1;
                    if !from.enclosed {
                        // Arrows start from a slice: give this one a slice of 1 ns, open at
                        // the arrow's start whatever order a viewer takes same-time events in.
                        let mut args = Obj::new();
                        args.str("job", job);
                        records.slice(from.track, from.ts, 1, name, "anchor", args);
                    }
                    records.flow_end("s", flows, from.track, from.ts, name);
                    records.flow_end("f", flows, track, ts, name);
                }
                if state.phase == Phase::Queued {
                    runnable -= 1;
                }
                if state.phase != Phase::Unknown {
                    state.phase = Phase::Running { woken: false };
                }
            }
            EventKind::PollEnd { job, result } => {
                if let Some(pos) = open[track].iter().rposition(|&j| j == job) {
                    open[track].remove(pos);
                }
                if let Some(state) = jobs.get_mut(&job) {
                    state.phase = match (state.phase, result) {
                        (Phase::Running { woken: true }, PollResult::Pending) => {
                            runnable += 1;
                            Phase::Queued
                        }
                        (Phase::Running { woken: false }, PollResult::Pending) => Phase::Idle,
                        (Phase::Running { .. }, _) => {
                            alive -= 1;
                            Phase::Done
                        }
                        (other, _) => other,
                    };
                }
            }
            EventKind::Wake { job } => {
                if let Some(state) = jobs.get_mut(&job) {
                    if state.phase != Phase::Done && state.wake.is_none() {
                        state.wake = Some(anchor);
                    }
                    match state.phase {
                        Phase::Idle => {
                            runnable += 1;
                            state.phase = Phase::Queued;
                        }
                        Phase::Running { .. } => state.phase = Phase::Running { woken: true },
                        _ => {}
                    }
                }
            }
            EventKind::Steal { victim, count } => {
                let mut args = Obj::new();
                args.num("victim", victim).num("count", count);
                if let Some(w) = e.worker {
                    args.num("thief", w);
                }
                records.instant(track, ts, "steal", args);
            }
            EventKind::Park => records.instant(track, ts, "park", Obj::new()),
            EventKind::Unpark => records.instant(track, ts, "unpark", Obj::new()),
            EventKind::CounterCreated { counter, location }
            | EventKind::CounterAwaited { counter, location }
            | EventKind::CounterZero { counter, location } => {
                let name = match e.kind {
                    EventKind::CounterCreated { .. } => "counter created",
                    EventKind::CounterAwaited { .. } => "counter awaited",
                    _ => "counter reached zero",
                };
                let mut args = Obj::new();
                args.str("counter", counter);
                if let Some(l) = location {
                    args.str("location", Label::Location(l));
                }
                records.instant(track, ts, name, args);
            }
            EventKind::FrameBegin { .. } | EventKind::FrameEnd { .. } => {}
        }
        if counts != (alive, runnable) {
            let mut args = Obj::new();
            args.num("alive", alive).num("runnable", runnable);
            records.counter(ts, "jobs", args);
        }
    }
    parents
}

/// A slice per poll and per frame, and the arena counter: each frame's arena bytes from its
/// begin to its end, then 0.
fn slices(
    trace: &Trace,
    timeline: &Timeline,
    parents: &HashMap<JobId, JobId>,
    records: &mut Records,
) {
    for p in &timeline.polls {
        let label = timeline.label(p.job);
        let mut args = Obj::new();
        args.str("job", p.job)
            .num("poll", p.number)
            .str("result", p.result.map_or("unfinished", PollResult::as_str));
        if let (Label::Name(_), Some(l)) = (label, timeline.locations.get(&p.job)) {
            args.str("location", Label::Location(l));
        }
        if let Some(parent) = parents.get(&p.job) {
            args.str("parent", parent);
        }
        records.slice(
            p.track,
            p.begin,
            p.end.saturating_sub(p.begin),
            label,
            "poll",
            args,
        );
    }
    for f in &timeline.frames {
        let mut args = Obj::new();
        args.num("index", f.index);
        records.slice(
            trace.workers() + 1,
            f.begin,
            f.end.saturating_sub(f.begin),
            format_args!("frame {}", f.index),
            "frame",
            args,
        );
        if let Some(bytes) = f.arena_bytes {
            for (ts, bytes) in [(f.begin, bytes), (f.end, 0)] {
                let mut args = Obj::new();
                args.num("bytes", bytes);
                records.counter(ts, "arena", args);
            }
        }
    }
}

/// Names for the process and its tracks, and the tracks' order (frames on top).
fn metadata(trace: &Trace, timeline: &Timeline) -> Vec<String> {
    let workers = trace.workers();
    let meta = |name: &str, tid: Option<usize>, args: Obj| {
        let mut o = Obj::new();
        o.str("name", name).str("ph", "M").num("pid", PID);
        if let Some(tid) = tid {
            o.num("tid", tid);
        }
        o.raw("args", args.finish());
        o.finish()
    };
    let named = |key: &str, value: &dyn fmt::Display| {
        let mut a = Obj::new();
        a.str(key, value);
        a
    };
    let sort = |index: usize| {
        let mut a = Obj::new();
        a.num("sort_index", index);
        a
    };
    let mut out = vec![meta(
        "process_name",
        None,
        named("name", &"frame-scheduler"),
    )];
    let mut track = |tid: usize, name: &dyn fmt::Display, order: usize| {
        out.push(meta("thread_name", Some(tid), named("name", name)));
        out.push(meta("thread_sort_index", Some(tid), sort(order)));
    };
    track(workers + 1, &"frames", 0);
    for w in 0..workers {
        match w {
            0 => track(0, &"driver", 1),
            _ => track(w, &format_args!("frame-worker-{w}"), w + 1),
        }
    }
    let foreign = trace
        .events()
        .iter()
        .any(|e| track_of(trace, e.worker) == workers);
    if foreign || timeline.polls.iter().any(|p| p.track == workers) {
        track(workers, &"foreign threads", workers + 1);
    }
    out
}

/// Nanoseconds printed as microseconds with three decimals (the format's unit).
struct Micros(u64);

impl fmt::Display for Micros {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{:03}", self.0 / 1000, self.0 % 1000)
    }
}

/// A JSON object, built by hand.
struct Obj(String);

impl Obj {
    fn new() -> Obj {
        Obj(String::from("{"))
    }

    fn key(&mut self, key: &str) {
        if self.0.len() > 1 {
            self.0.push(',');
        }
        self.0.push('"');
        escape_into(&mut self.0, key);
        self.0.push_str("\":");
    }

    /// A string value: `value` printed and escaped.
    fn str(&mut self, key: &str, value: impl fmt::Display) -> &mut Obj {
        self.key(key);
        self.0.push('"');
        let text = value.to_string();
        escape_into(&mut self.0, &text);
        self.0.push('"');
        self
    }

    /// A number.
    fn num(&mut self, key: &str, value: impl Int) -> &mut Obj {
        self.raw(key, value)
    }

    /// A value already in JSON form.
    fn raw(&mut self, key: &str, value: impl fmt::Display) -> &mut Obj {
        self.key(key);
        let _ = write!(self.0, "{value}");
        self
    }

    fn finish(mut self) -> String {
        self.0.push('}');
        self.0
    }
}

/// The integers `Obj::num` prints as JSON numbers.
trait Int: fmt::Display {}
impl Int for u32 {}
impl Int for u64 {}
impl Int for usize {}

/// Appends `s` as the inside of a JSON string: quotes, backslashes and control characters
/// escaped (and U+2028/U+2029, which some JavaScript parsers refuse raw).
pub(super) fn escape_into(out: &mut String, s: &str) {
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if (c as u32) < 0x20 || c == '\u{2028}' || c == '\u{2029}' => {
                let _ = write!(out, "\\u{:04x}", c as u32);
            }
            c => out.push(c),
        }
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;
    use crate::trace::tests::{Script, begin, end, job, sample, spawn};
    use serde_json::Value;

    fn json(trace: &Trace) -> Vec<Value> {
        let mut buf = Vec::new();
        trace.write_chrome_json(&mut buf).unwrap();
        let v: Value = serde_json::from_slice(&buf).expect("the export is JSON");
        v["traceEvents"]
            .as_array()
            .expect("a traceEvents array")
            .clone()
    }

    fn of<'v>(events: &'v [Value], ph: &str) -> Vec<&'v Value> {
        events.iter().filter(|e| e["ph"] == ph).collect()
    }

    fn polls(events: &[Value]) -> Vec<&Value> {
        of(events, "X")
            .into_iter()
            .filter(|e| e["cat"] == "poll")
            .collect()
    }

    #[test]
    fn every_poll_is_a_slice_named_by_its_job() {
        let (s, n) = sample();
        let events = json(&s.trace());
        let polls = polls(&events);
        assert_eq!(polls.len(), n);
        // `a` ran on worker 1, then, after a wake, on worker 2: one name, one job id.
        let a: Vec<_> = polls
            .iter()
            .filter(|p| p["args"]["job"] == job(1).to_string())
            .collect();
        assert_eq!(a.len(), 2);
        for (p, (tid, number, result)) in a.iter().zip([(1, 1, "Pending"), (2, 2, "Ready")]) {
            assert_eq!(p["name"], "physics \"step\" <1>");
            assert_eq!(p["tid"], tid);
            assert_eq!(p["args"]["poll"], number);
            assert_eq!(p["args"]["result"], result);
        }
        // Escapes survive the round trip.
        let c = polls
            .iter()
            .find(|p| p["args"]["job"] == job(3).to_string())
            .unwrap();
        assert_eq!(c["name"], "tab\tnew\nline \\ ☃ \u{1}");
        assert_eq!(c["args"]["result"], "Panicked");
        // Named by location when unnamed, by "job" when neither is known.
        let b = polls
            .iter()
            .find(|p| p["args"]["job"] == job(2).to_string())
            .unwrap();
        let spawned_at = s
            .events
            .iter()
            .find_map(|e| match e.kind {
                EventKind::Spawn {
                    job: j, location, ..
                } if j == job(2) => location,
                _ => None,
            })
            .unwrap();
        let at = format!("{}:{}", spawned_at.file(), spawned_at.line());
        assert_eq!(b["name"], at.as_str());
        assert_eq!(b["args"]["parent"], job(0).to_string());
        let d = polls
            .iter()
            .find(|p| p["args"]["job"] == job(4).to_string())
            .unwrap();
        assert_eq!(
            (d["name"].as_str(), d["args"]["result"].as_str()),
            (Some("job"), Some("unfinished"))
        );
        // Spawned by the root's poll on worker 0: the root is its parent.
        assert_eq!(d["args"]["parent"], job(0).to_string());
        // Slice times are the events' (in microseconds).
        let root = polls
            .iter()
            .find(|p| p["args"]["job"] == job(0).to_string())
            .unwrap();
        assert_eq!(
            (root["ts"].as_f64(), root["dur"].as_f64()),
            (Some(3.0), Some(6.0))
        );
    }

    #[test]
    fn every_flow_has_both_ends() {
        let (s, _) = sample();
        let events = json(&s.trace());
        let mut ends: HashMap<u64, (Vec<&Value>, Vec<&Value>)> = HashMap::new();
        for e in of(&events, "s") {
            ends.entry(e["id"].as_u64().unwrap()).or_default().0.push(e);
        }
        for e in of(&events, "f") {
            assert_eq!(e["bp"], "e");
            ends.entry(e["id"].as_u64().unwrap()).or_default().1.push(e);
        }
        // Spawn arrows to the first polls of root, a, b, c, d; wake arrows to a's second poll
        // and the root's second (from a foreign thread).
        assert_eq!(ends.len(), 7);
        let polls = polls(&events);
        let mut names = Vec::new();
        for (id, (s, f)) in &ends {
            assert_eq!((s.len(), f.len()), (1, 1), "flow {id}");
            assert_eq!(s[0]["name"], f[0]["name"], "flow {id}");
            // The finish lands where a poll begins, on its track.
            assert!(
                polls
                    .iter()
                    .any(|p| p["ts"] == f[0]["ts"] && p["tid"] == f[0]["tid"]),
                "flow {id} ends at no poll"
            );
            names.push(s[0]["name"].as_str().unwrap());
        }
        names.sort();
        assert_eq!(
            names,
            ["spawn", "spawn", "spawn", "spawn", "spawn", "wake", "wake"]
        );
        // The foreign wake happened outside any poll: it gets an anchor slice of its own.
        let anchors: Vec<_> = of(&events, "X")
            .into_iter()
            .filter(|e| e["cat"] == "anchor")
            .collect();
        assert_eq!(anchors.len(), 2, "the root's spawn and the foreign wake");
        assert!(anchors.iter().any(|a| a["tid"] == 3 && a["name"] == "wake"));
    }

    #[test]
    fn times_rise_on_every_track() {
        let (s, _) = sample();
        let events = json(&s.trace());
        let mut last: HashMap<(u64, u64), f64> = HashMap::new();
        let mut timed = 0;
        for e in events.iter().filter(|e| e["ph"] != "M") {
            let key = (e["pid"].as_u64().unwrap(), e["tid"].as_u64().unwrap());
            let ts = e["ts"].as_f64().unwrap();
            let prev = last.insert(key, ts).unwrap_or(0.0);
            assert!(ts >= prev, "{e} goes back on its track");
            timed += 1;
        }
        assert!(timed > 20);
    }

    #[test]
    fn tracks_are_named() {
        let (s, _) = sample();
        let events = json(&s.trace());
        let names: HashMap<u64, &str> = of(&events, "M")
            .into_iter()
            .filter(|e| e["name"] == "thread_name")
            .map(|e| {
                (
                    e["tid"].as_u64().unwrap(),
                    e["args"]["name"].as_str().unwrap(),
                )
            })
            .collect();
        let want: HashMap<u64, &str> = [
            (0, "driver"),
            (1, "frame-worker-1"),
            (2, "frame-worker-2"),
            (3, "foreign threads"),
            (4, "frames"),
        ]
        .into();
        assert_eq!(names, want);
        let frames: Vec<_> = of(&events, "X")
            .into_iter()
            .filter(|e| e["cat"] == "frame")
            .collect();
        assert_eq!(frames.len(), 1);
        assert_eq!(
            (frames[0]["name"].as_str(), frames[0]["tid"].as_u64()),
            (Some("frame 7"), Some(4))
        );
    }

    #[test]
    fn instants_and_counters() {
        let (s, _) = sample();
        let events = json(&s.trace());
        let instants: Vec<_> = of(&events, "i")
            .into_iter()
            .map(|e| e["name"].as_str().unwrap())
            .collect();
        assert_eq!(
            instants,
            [
                "counter created",
                "counter awaited",
                "steal",
                "unpark",
                "counter reached zero",
                "park"
            ]
        );
        let steal = of(&events, "i")
            .into_iter()
            .find(|e| e["name"] == "steal")
            .unwrap();
        assert_eq!(
            (
                steal["args"]["victim"].as_u64(),
                steal["args"]["thief"].as_u64(),
                steal["args"]["count"].as_u64()
            ),
            (Some(0), Some(1), Some(2))
        );
        let counts: Vec<_> = of(&events, "C")
            .into_iter()
            .filter(|e| e["name"] == "jobs")
            .map(|e| {
                (
                    e["args"]["alive"].as_u64().unwrap(),
                    e["args"]["runnable"].as_u64().unwrap(),
                )
            })
            .collect();
        assert_eq!(
            counts,
            [
                (1, 1), // root spawned
                (1, 0), // root polled
                (2, 1), // a
                (3, 2), // b
                (4, 3), // c
                (4, 2), // a polled
                (4, 1), // b polled
                (4, 2), // a woken
                (3, 2), // b done
                (3, 1), // a polled again
                (2, 1), // a done
                (2, 0), // c polled
                (1, 0), // c panicked
                (1, 1), // root woken from a foreign thread
                (1, 0), // root polled
                (2, 1), // d spawned
                (1, 1), // root done
                (1, 0), // d polled, never ends
            ]
        );
        // The frame's arena bytes over its span (1 µs to its end at the last event), then 0.
        let arena: Vec<_> = of(&events, "C")
            .into_iter()
            .filter(|e| e["name"] == "arena")
            .map(|e| {
                (
                    e["ts"].as_f64().unwrap(),
                    e["args"]["bytes"].as_u64().unwrap(),
                )
            })
            .collect();
        let end = s.events.last().unwrap().time_ns as f64 / 1000.0;
        assert_eq!(arena, [(1.0, 640), (end, 0)]);
    }

    #[test]
    fn a_frame_without_its_end_has_no_arena_counter() {
        let mut s = Script::new(1);
        s.on(0, EventKind::FrameBegin { index: 0 })
            .on(
                0,
                EventKind::FrameEnd {
                    index: 0,
                    arena_bytes: 128,
                },
            )
            .on(0, EventKind::FrameBegin { index: 1 })
            .on(0, EventKind::Park);
        let events = json(&s.trace());
        let arena: Vec<_> = of(&events, "C")
            .into_iter()
            .filter(|e| e["name"] == "arena")
            .map(|e| e["args"]["bytes"].as_u64().unwrap())
            .collect();
        assert_eq!(arena, [128, 0]);
    }

    #[test]
    fn wake_while_running_leads_to_the_next_poll() {
        let x = job(1);
        let mut s = Script::new(2);
        s.on(0, spawn(x, Some("x")))
            .on(0, begin(x))
            .on(1, EventKind::Wake { job: x })
            .on(0, end(x, PollResult::Pending))
            .on(1, begin(x))
            .on(1, end(x, PollResult::Ready))
            .on(1, EventKind::Wake { job: x });
        let events = json(&s.trace());
        let wakes: Vec<_> = of(&events, "s")
            .into_iter()
            .filter(|e| e["name"] == "wake")
            .collect();
        assert_eq!(wakes.len(), 1, "the wake after Ready leads nowhere");
        assert_eq!(wakes[0]["ts"].as_f64(), Some(3.0));
        let f = of(&events, "f")
            .into_iter()
            .find(|e| e["id"] == wakes[0]["id"])
            .unwrap();
        assert_eq!((f["ts"].as_f64(), f["tid"].as_u64()), (Some(5.0), Some(1)));
    }

    #[test]
    fn empty_trace_is_valid_json() {
        let events = json(&Trace::from_events(2, Vec::new(), 0));
        assert!(events.iter().all(|e| e["ph"] == "M"));
    }

    #[test]
    fn escape_handles_every_control_character() {
        let all: String = (0u8..0x20)
            .map(char::from)
            .chain("\"\\\u{2028}é".chars())
            .collect();
        let mut out = String::from("\"");
        escape_into(&mut out, &all);
        out.push('"');
        let back: String = serde_json::from_str(&out).unwrap();
        assert_eq!(back, all);
        assert!(!out.contains('\u{2028}'));
    }
}
