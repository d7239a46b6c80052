//! The profiler hooks (`--features tracing`, and `profiling` for the scope tests), seen through
//! a hand-written `tracing` subscriber that records every span and event: a job spawned in a
//! span is polled in it (and hands it on to its children), spawns, steals and parks are
//! `trace` events, and each poll is a `profiling` scope named after its job.
//!
//! The `profiling` scopes are seen because the tests build the `profiling` crate with its
//! tracing backend (a dev-dependency): each scope is then a span named `job` or `root` whose
//! `tag` is the job's name or location. Other backends (puffin, Tracy, ...) are not built here.
//!
//! One subscriber serves the whole binary (worker threads only see a global one), so the tests
//! take turns (`recording`) and each starts from an empty record. Built only with `--features
//! tracing` (`required-features` in Cargo.toml).

mod common;

use std::cell::RefCell;
use std::collections::HashMap;
use std::panic::Location;
use std::sync::{Mutex, MutexGuard, OnceLock};

use frame_scheduler::{Frame, yield_now};
use tracing::field::{Field, Visit};
use tracing::span::{Attributes, Id, Record};
use tracing::{Event, Level, Metadata, Subscriber};
use tracing_core::span::Current;

/// A span as the subscriber saw it.
#[derive(Clone, Debug)]
struct SpanRecord {
    meta: &'static Metadata<'static>,
    fields: HashMap<&'static str, String>,
    enters: usize,
}

/// An event as the subscriber saw it.
#[derive(Clone, Debug)]
struct EventRecord {
    target: String,
    level: Level,
    fields: HashMap<&'static str, String>,
}

impl EventRecord {
    fn message(&self) -> &str {
        self.fields.get("message").map_or("", String::as_str)
    }

    fn field(&self, name: &str) -> Option<&str> {
        self.fields.get(name).map(String::as_str)
    }

    fn num(&self, name: &str) -> usize {
        self.field(name)
            .unwrap_or_else(|| panic!("{self:?} has no {name}"))
            .parse()
            .unwrap()
    }
}

#[derive(Default)]
struct Recorded {
    /// Span `i` has id `i + 1`.
    spans: Vec<SpanRecord>,
    events: Vec<EventRecord>,
}

static RECORD: Mutex<Recorded> = Mutex::new(Recorded {
    spans: Vec::new(),
    events: Vec::new(),
});

fn record() -> MutexGuard<'static, Recorded> {
    RECORD.lock().unwrap_or_else(|e| e.into_inner())
}

thread_local! {
    /// The spans entered on this thread, innermost last.
    static STACK: RefCell<Vec<Id>> = const { RefCell::new(Vec::new()) };
}

/// Records fields as text (strings without quotes).
struct Fields<'a>(&'a mut HashMap<&'static str, String>);

impl Visit for Fields<'_> {
    fn record_str(&mut self, field: &Field, value: &str) {
        self.0.insert(field.name(), value.to_owned());
    }

    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        self.0.insert(field.name(), format!("{value:?}"));
    }
}

/// Keeps every span (never closed) and event in `RECORD`; tracks the current span per thread.
struct Recorder;

impl Subscriber for Recorder {
    fn enabled(&self, _: &Metadata<'_>) -> bool {
        true
    }

    fn new_span(&self, span: &Attributes<'_>) -> Id {
        let mut fields = HashMap::new();
        span.record(&mut Fields(&mut fields));
        let mut r = record();
        r.spans.push(SpanRecord {
            meta: span.metadata(),
            fields,
            enters: 0,
        });
        Id::from_u64(r.spans.len() as u64)
    }

    fn record(&self, _: &Id, _: &Record<'_>) {}

    fn record_follows_from(&self, _: &Id, _: &Id) {}

    fn event(&self, event: &Event<'_>) {
        let mut fields = HashMap::new();
        event.record(&mut Fields(&mut fields));
        record().events.push(EventRecord {
            target: event.metadata().target().to_owned(),
            level: *event.metadata().level(),
            fields,
        });
    }

    fn enter(&self, span: &Id) {
        record().spans[span.into_u64() as usize - 1].enters += 1;
        STACK.with(|s| s.borrow_mut().push(span.clone()));
    }

    fn exit(&self, span: &Id) {
        STACK.with(|s| {
            let mut s = s.borrow_mut();
            let top = s.pop();
            assert_eq!(top.as_ref(), Some(span), "spans exited out of order");
        });
    }

    fn current_span(&self) -> Current {
        match STACK.with(|s| s.borrow().last().cloned()) {
            Some(id) => {
                let meta = record().spans[id.into_u64() as usize - 1].meta;
                Current::new(id, meta)
            }
            None => Current::none(),
        }
    }
}

/// Installs the subscriber (once), waits for the other tests to finish with it, and empties
/// the record.
fn recording() -> MutexGuard<'static, ()> {
    static TURN: Mutex<()> = Mutex::new(());
    static INSTALLED: OnceLock<()> = OnceLock::new();
    INSTALLED.get_or_init(|| {
        tracing::subscriber::set_global_default(Recorder).expect("no other global subscriber")
    });
    let turn = TURN.lock().unwrap_or_else(|e| e.into_inner());
    let mut r = record();
    r.spans.clear();
    r.events.clear();
    drop(r);
    turn
}

/// The innermost span this thread is in, other than the scheduler's own `profiling` scopes.
fn user_span() -> Option<&'static str> {
    let meta = tracing::Span::current().metadata()?;
    (!meta.target().starts_with("frame_scheduler")).then(|| meta.name())
}

/// How many times spans named `name` were entered, over all of them.
fn enters(name: &str) -> usize {
    record()
        .spans
        .iter()
        .filter(|s| s.meta.name() == name)
        .map(|s| s.enters)
        .sum()
}

/// The scheduler's events with `message`, checked for their target and level.
fn events(message: &str) -> Vec<EventRecord> {
    let all: Vec<_> = record()
        .events
        .iter()
        .filter(|e| e.message() == message)
        .cloned()
        .collect();
    for e in &all {
        assert_eq!(
            (e.target.as_str(), e.level),
            ("frame_scheduler", Level::TRACE)
        );
    }
    all
}

#[test]
fn a_job_spawned_in_a_span_is_polled_in_it_and_hands_it_on() {
    let _turn = recording();
    let seen = Mutex::new(Vec::new());
    let mut s = common::scheduler(2);
    let seen_ref = &seen;
    s.run_frame(async |frame| {
        let seen = seen_ref;
        let children = frame.counter();
        let physics = tracing::info_span!("physics");
        let job = physics.in_scope(|| {
            frame.spawn(async move {
                for _ in 0..2 {
                    seen.lock().unwrap().push(("job", user_span()));
                    yield_now().await;
                }
                seen.lock().unwrap().push(("job", user_span()));
                frame.spawn_counted(children, async {
                    seen.lock().unwrap().push(("child", user_span()));
                });
            })
        });
        let outside = frame.spawn(async {
            seen.lock().unwrap().push(("outside", user_span()));
        });
        job.await;
        outside.await;
        children.await;
    });
    let mut seen = seen.into_inner().unwrap();
    seen.sort();
    assert_eq!(
        seen,
        [
            ("child", Some("physics")),
            ("job", Some("physics")),
            ("job", Some("physics")),
            ("job", Some("physics")),
            ("outside", None),
        ]
    );
    // `in_scope` once, the job's three polls, the child's one.
    assert_eq!(enters("physics"), 1 + 3 + 1);
    assert_eq!(
        record()
            .spans
            .iter()
            .filter(|s| s.meta.name() == "physics")
            .count(),
        1
    );
}

/// Spawns `future` through `frame` and says where (the caller's line).
#[track_caller]
fn spawn_here<'f>(
    frame: &'f Frame<'f, '_>,
    future: impl Future<Output = ()> + Send + 'f,
) -> (
    frame_scheduler::JobHandle<'f, ()>,
    &'static Location<'static>,
) {
    (frame.spawn(future), Location::caller())
}

#[test]
fn every_spawn_is_an_event_with_its_name_location_and_worker() {
    let _turn = recording();
    let mut s = common::scheduler(1);
    let mut cells = [0u8; 64];
    let at = s.run_frame(async |frame| {
        let named = frame.job().name("spawn-named").spawn(async {});
        let (unnamed, at) = spawn_here(frame, async {});
        let batch = frame.counter();
        frame.spawn_batch(batch, (0..3).map(|_| async {}));
        // A loop of 64 cells in pieces of at least 16: one job per piece spawned.
        frame
            .for_each_chunk(&mut cells[..], 16, |_, c| c.fill(1))
            .await;
        named.await;
        unnamed.await;
        batch.await;
        at
    });
    let jobs = s.last_frame_stats().jobs;
    let spawns = events("spawn");
    assert_eq!(spawns.len() as u64, jobs, "one event per job spawned");
    // A named job, an unnamed one, a batch of 3, and at least one loop piece.
    assert!(jobs >= 6, "{jobs} jobs");
    assert!(spawns.iter().all(|e| e.field("worker") == Some("0")));
    let named: Vec<_> = spawns
        .iter()
        .filter(|e| e.field("name") == Some("spawn-named"))
        .collect();
    assert_eq!(named.len(), 1);
    let here = at.to_string();
    let unnamed: Vec<_> = spawns
        .iter()
        .filter(|e| e.field("location") == Some(here.as_str()))
        .collect();
    assert_eq!(unnamed.len(), 1);
    assert_eq!(unnamed[0].field("name"), None);
    assert_eq!(
        spawns.iter().filter(|e| e.field("name").is_none()).count() as u64,
        jobs - 1
    );
}

#[test]
fn steals_and_parks_are_events_that_add_up() {
    let _turn = recording();
    let mut s = common::scheduler(2);
    // Worker 1 finds nothing to do and parks before the first frame.
    assert!(common::wait_until(
        std::time::Duration::from_secs(10),
        || { events("park").iter().any(|e| e.num("worker") == 1) }
    ));
    let mut steals = 0;
    for _ in 0..20 {
        s.run_frame(async |frame| {
            let c = frame.counter();
            for i in 0..256u64 {
                frame.spawn_counted(c, async move {
                    let mut x = i;
                    for _ in 0..1000 {
                        x = std::hint::black_box(x.wrapping_mul(31).wrapping_add(7));
                    }
                });
            }
            c.await;
        });
        steals += s.last_frame_stats().steals;
    }
    drop(s);
    let stolen = events("steal");
    for e in &stolen {
        let (thief, victim) = (e.num("thief"), e.num("victim"));
        assert!(thief < 2 && victim < 2 && thief != victim, "{e:?}");
        assert!(e.num("count") >= 1, "{e:?}");
    }
    assert_eq!(
        stolen.iter().map(|e| e.num("count") as u64).sum::<u64>(),
        steals
    );
    assert!(
        steals > 0,
        "20 frames of 256 jobs on 2 workers and nothing stolen"
    );
    // Every park ended in an unpark (the scheduler's drop wakes the sleepers), per worker.
    for worker in 0..2 {
        let parks = events("park")
            .iter()
            .filter(|e| e.num("worker") == worker)
            .count();
        let unparks = events("unpark")
            .iter()
            .filter(|e| e.num("worker") == worker)
            .count();
        assert_eq!(parks, unparks, "worker {worker}");
    }
}

#[cfg(feature = "profiling")]
mod scopes {
    use super::*;
    use frame_scheduler::{EventKind, Scheduler};

    /// The tags of the scheduler's `profiling` scopes named `name`, one per scope.
    fn scope_tags(name: &str) -> Vec<Option<String>> {
        record()
            .spans
            .iter()
            .filter(|s| s.meta.name() == name && s.meta.target() == "frame_scheduler::profile")
            .map(|s| {
                assert_eq!(s.enters, 1, "a scope is entered once");
                s.fields.get("tag").cloned()
            })
            .collect()
    }

    #[test]
    fn every_poll_is_a_scope_named_by_its_job() {
        let _turn = recording();
        let mut s = Scheduler::builder()
            .workers(2)
            .trace_capacity(1 << 12)
            .build()
            .unwrap();
        s.start_trace();
        let mut at = None;
        for _ in 0..3 {
            at = Some(s.run_frame(async |frame| {
                let step = frame.job().name("physics-step").spawn(async {
                    yield_now().await;
                    yield_now().await;
                });
                let (unnamed, at) = spawn_here(frame, async {});
                let c = frame.counter();
                for _ in 0..10 {
                    frame.spawn_counted(c, async {});
                }
                step.await;
                unnamed.await;
                c.await;
                at
            }));
        }
        let trace = s.take_trace();
        drop(s);
        let at = at.unwrap().to_string();
        let jobs = scope_tags("job");
        let count = |tag: &str| jobs.iter().filter(|t| t.as_deref() == Some(tag)).count();
        // Three polls of the named job a frame, one of the unnamed one.
        assert_eq!(count("physics-step"), 3 * 3);
        assert_eq!(count(&at), 3);
        assert!(
            jobs.iter().all(Option::is_some),
            "every job scope has a tag"
        );
        // As many scopes as the trace has polls: the root's are `root` scopes, untagged.
        let root_ids: Vec<_> = trace
            .events()
            .iter()
            .filter_map(|e| match e.kind {
                EventKind::Spawn {
                    job,
                    name: Some("root"),
                    location: None,
                    ..
                } => Some(job),
                _ => None,
            })
            .collect();
        assert_eq!(root_ids.len(), 3);
        let (mut root_polls, mut job_polls) = (0, 0);
        for e in trace.events() {
            if let EventKind::PollBegin { job } = e.kind {
                if root_ids.contains(&job) {
                    root_polls += 1;
                } else {
                    job_polls += 1;
                }
            }
        }
        assert_eq!(jobs.len(), job_polls);
        let roots = scope_tags("root");
        assert_eq!(roots.len(), root_polls);
        assert!(roots.iter().all(Option::is_none));
        // `finish_frame!` once a frame (the tracing backend makes it an event).
        let frames = record()
            .events
            .iter()
            .filter(|e| e.fields.contains_key("tracy.frame_mark"))
            .count();
        assert_eq!(frames, 3);
    }

    #[test]
    fn a_job_in_no_span_does_not_hand_its_scope_on() {
        let _turn = recording();
        let mut s = common::scheduler(1);
        let seen = s.run_frame(async |frame| {
            frame
                .spawn(async { frame.spawn(async { user_span() }).await })
                .await
        });
        assert_eq!(seen, None);
        // The parent's first poll, the child's, the parent's second: three scopes, each
        // entered once (`scope_tags` checks), none again around the child's poll.
        assert_eq!(scope_tags("job").len(), 3);
        // The root's two polls (before and after the parent): the jobs did not inherit its
        // scope either.
        assert_eq!(scope_tags("root").len(), 2);
    }
}
