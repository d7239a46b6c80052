//! What a stall report says ([`StallReport`], [`StalledJob`], [`JobState`], [`WaitsOn`],
//! [`StalledCounter`]), and how the watchdog reads it off the running frame.

use core::fmt;
use core::panic::Location;
use std::collections::HashMap;
use std::time::{Duration, Instant};

use super::{COUNTER, HANDLE, Node, Stall, TAGS};
use crate::counter::CounterInner;
use crate::job::state::{COMPLETE, POLLED, RUNNING, SCHEDULED};
use crate::job::{Header, JobKind};
use crate::sync::Ordering;
use crate::worker::Shared;

/// What the watchdog found in a frame that ran longer than
/// [`stall_after`](crate::SchedulerBuilder::stall_after): every unfinished job (the root future
/// first, then running, waiting and queued jobs), what each is doing or waiting for, a cycle
/// of jobs waiting for each other if there is one, and the awaited counters that no live job
/// can bring down.
///
/// It is a snapshot taken while the jobs run: a job that changed state while it was taken may
/// show its state of a moment before. Its [`Display`](fmt::Display) is what the default
/// [`on_stall`](crate::SchedulerBuilder::on_stall) hook writes to stderr (at most 64 jobs; the
/// accessors have them all).
///
/// See [`SchedulerBuilder::stall_after`](crate::SchedulerBuilder::stall_after) for an example.
#[derive(Debug, Clone)]
pub struct StallReport {
    frame: u64,
    running_for: Duration,
    stall_after: Duration,
    jobs: Vec<StalledJob>,
    deadlock: Option<Vec<StalledJob>>,
    orphaned: Vec<StalledCounter>,
}

impl StallReport {
    /// The stalled frame's index ([`Frame::index`](crate::Frame::index)).
    pub fn frame(&self) -> u64 {
        self.frame
    }

    /// How long the frame had run when the report was taken: at least
    /// [`stall_after`](StallReport::stall_after).
    pub fn running_for(&self) -> Duration {
        self.running_for
    }

    /// The scheduler's `stall_after` setting.
    pub fn stall_after(&self) -> Duration {
        self.stall_after
    }

    /// Every unfinished job: the root future first (if it has not finished), then the running
    /// jobs, the waiting ones and the queued ones, each group in the order they were spawned
    /// on each worker.
    pub fn jobs(&self) -> &[StalledJob] {
        &self.jobs
    }

    /// The root future, if it has not finished.
    pub fn root(&self) -> Option<&StalledJob> {
        self.jobs.first().filter(|j| j.is_root())
    }

    /// A cycle of waiting jobs, each waiting for the next (the last for the first): through a
    /// [`JobHandle`](crate::JobHandle), or through a counter awaited down to zero that the next
    /// job is counted on. None of them can ever run again. `None` if there is no such cycle.
    pub fn deadlock(&self) -> Option<&[StalledJob]> {
        self.deadlock.as_deref()
    }

    /// Counters that some job (or the root) waits for, whose value is above what it waits for,
    /// and on which no unfinished job is counted: only a [`Counter::done`](crate::Counter::done)
    /// can bring them down. Usually a missing `done()`.
    pub fn orphaned_counters(&self) -> &[StalledCounter] {
        &self.orphaned
    }
}

/// One unfinished job of a [`StallReport`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StalledJob {
    root: bool,
    name: Option<&'static str>,
    location: Option<&'static Location<'static>>,
    spawned_on: Option<usize>,
    local: bool,
    state: JobState,
    waits_on: Option<WaitsOn>,
}

impl StalledJob {
    /// Whether this is the frame's root future (the future `run_frame` was given).
    pub fn is_root(&self) -> bool {
        self.root
    }

    /// The job's name (given with [`JobBuilder::name`](crate::JobBuilder::name)), if any.
    pub fn name(&self) -> Option<&'static str> {
        self.name
    }

    /// Where the job was spawned; `None` for the root future.
    pub fn location(&self) -> Option<&'static Location<'static>> {
        self.location
    }

    /// The worker whose thread spawned the job; `None` for the root future and for jobs
    /// spawned by threads that are no worker. (A queued job is in that worker's queue unless a
    /// thief has taken it, or it was woken since.)
    pub fn spawned_on(&self) -> Option<usize> {
        self.spawned_on
    }

    /// Whether the job was spawned with [`spawn_local`](crate::Frame::spawn_local) (it runs only
    /// on the driving thread, worker 0).
    pub fn is_local(&self) -> bool {
        self.local
    }

    /// What the job is doing.
    pub fn state(&self) -> JobState {
        self.state
    }

    /// What the job waits for: always `Some` for a [`JobState::Waiting`] job; for a running job,
    /// what the poll in progress has registered on so far (a job blocking its thread on a
    /// handle, say), if anything; `None` for a queued one.
    pub fn waits_on(&self) -> Option<&WaitsOn> {
        self.waits_on.as_ref()
    }
}

/// What an unfinished job is doing, in a [`StallReport`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum JobState {
    /// In a queue, waiting for a worker: `started` is false for a job never polled, true for
    /// one woken after it returned `Pending`.
    Queued {
        /// Whether the job was polled before.
        started: bool,
    },
    /// A worker is polling it. `worker` is `None` (and `running_for` zero) when the snapshot
    /// caught the poll as it began.
    Running {
        /// The worker polling it.
        worker: Option<usize>,
        /// How long the poll in progress has run.
        running_for: Duration,
    },
    /// Its last poll returned `Pending` and nothing has woken it since:
    /// [`StalledJob::waits_on`] says for what.
    Waiting,
}

/// What a waiting job waits for, in a [`StallReport`].
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum WaitsOn {
    /// The [`JobHandle`](crate::JobHandle) of another job of the frame.
    Job {
        /// That job's name, if it has one.
        name: Option<&'static str>,
        /// Where that job was spawned.
        location: &'static Location<'static>,
    },
    /// A [`Counter`](crate::Counter) (`counter.await` or `counter.until(n)`).
    Counter(StalledCounter),
    /// Something that is neither a handle nor a counter of this scheduler (a channel, a timer,
    /// another executor's future): the job's waker was cloned, and the clone is held
    /// elsewhere.
    ForeignWaker,
    /// Nothing the watchdog can see: the job's last poll returned `Pending` without registering
    /// on a handle or counter, and its waker was never cloned. Usually a lost wakeup (a future
    /// that returned `Pending` without keeping its waker); the one thing that can still wake
    /// it is a handle or counter it registered on in an earlier poll and did not poll again.
    Nothing,
}

/// A counter some job waits for, in a [`StallReport`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StalledCounter {
    location: &'static Location<'static>,
    value: usize,
    target: usize,
    live_jobs: usize,
}

impl StalledCounter {
    /// Where the counter was made ([`Frame::counter`](crate::Frame::counter)).
    pub fn location(&self) -> &'static Location<'static> {
        self.location
    }

    /// Its value when the report was taken.
    pub fn value(&self) -> usize {
        self.value
    }

    /// The value the job waits for it to come down to (0 for `counter.await`, `n` for
    /// `counter.until(n)`).
    pub fn target(&self) -> usize {
        self.target
    }

    /// Unfinished jobs counted on it ([`spawn_counted`](crate::Frame::spawn_counted) and
    /// friends).
    pub fn live_jobs(&self) -> usize {
        self.live_jobs
    }

    /// Whether it is above its target with no unfinished job counted on it: only a
    /// [`done()`](crate::Counter::done) can bring it down.
    pub fn is_orphaned(&self) -> bool {
        self.value > self.target && self.live_jobs == 0
    }
}

/// A duration as people read it: "2.50 s", "312 ms", "450 µs".
struct Human(Duration);

impl fmt::Display for Human {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let d = self.0;
        if d >= Duration::from_secs(1) {
            write!(f, "{:.2} s", d.as_secs_f64())
        } else if d >= Duration::from_millis(1) {
            write!(f, "{} ms", d.as_millis())
        } else {
            write!(f, "{} µs", d.as_micros())
        }
    }
}

/// A job named as in the report: "root future", `job "name" (file:line:col)`, `job at file:…`.
struct Who<'a>(&'a StalledJob);

impl fmt::Display for Who<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let j = self.0;
        match (j.root, j.name, j.location) {
            (true, _, _) | (_, _, None) => f.write_str("root future"),
            (false, Some(name), Some(l)) => write!(f, "job {name:?} ({l})"),
            (false, None, Some(l)) => write!(f, "job at {l}"),
        }
    }
}

impl fmt::Display for StalledCounter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "the counter made at {} (at {}, awaited down to {}; {} job{} counted on it alive)",
            self.location,
            self.value,
            self.target,
            self.live_jobs,
            if self.live_jobs == 1 { "" } else { "s" }
        )
    }
}

impl fmt::Display for WaitsOn {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            WaitsOn::Job {
                name: Some(name),
                location,
            } => write!(f, "the JobHandle of job {name:?} ({location})"),
            WaitsOn::Job {
                name: None,
                location,
            } => write!(f, "the JobHandle of the job at {location}"),
            WaitsOn::Counter(c) => c.fmt(f),
            WaitsOn::ForeignWaker => f.write_str(
                "a waker held outside this scheduler's handles and counters (a channel, a \
                 timer, another executor)",
            ),
            WaitsOn::Nothing => f.write_str(
                "nothing: its last poll registered on no handle or counter and its waker was \
                 never cloned (a lost wakeup?)",
            ),
        }
    }
}

impl fmt::Display for StalledJob {
    /// The job and what it does: `job "physics" (src/x.rs:10:5): running on worker 1 for
    /// 240 ms`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: ", Who(self))?;
        match self.state {
            JobState::Queued { started } => {
                f.write_str(if started {
                    "woken, queued to run again"
                } else {
                    "queued, not started"
                })?;
                match self.spawned_on {
                    Some(w) => write!(f, " (spawned on worker {w})"),
                    None if self.root => Ok(()),
                    None => f.write_str(" (spawned by a thread that is no worker)"),
                }
            }
            JobState::Running {
                worker: Some(w),
                running_for,
            } => {
                write!(f, "running on worker {w} for {}", Human(running_for))?;
                match &self.waits_on {
                    Some(waits) => write!(f, ", and this poll has awaited {waits}"),
                    None => Ok(()),
                }
            }
            JobState::Running { worker: None, .. } => f.write_str("running"),
            JobState::Waiting => match &self.waits_on {
                Some(waits) => write!(f, "waiting for {waits}"),
                None => f.write_str("waiting"),
            },
        }
    }
}

/// How many jobs the report's `Display` lists.
const SHOWN: usize = 64;

impl fmt::Display for StallReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let count = |p: fn(&JobState) -> bool| self.jobs.iter().filter(|j| p(&j.state)).count();
        let n = self.jobs.len();
        writeln!(
            f,
            "frame-scheduler: frame {} has run for {}, longer than stall_after ({}); {} \
             unfinished job{} ({} running, {} waiting, {} queued):",
            self.frame,
            Human(self.running_for),
            Human(self.stall_after),
            n,
            if n == 1 { "" } else { "s" },
            count(|s| matches!(s, JobState::Running { .. })),
            count(|s| matches!(s, JobState::Waiting)),
            count(|s| matches!(s, JobState::Queued { .. })),
        )?;
        for job in self.jobs.iter().take(SHOWN) {
            writeln!(f, "  {job}")?;
        }
        if n > SHOWN {
            writeln!(
                f,
                "  ... and {} more (StallReport::jobs lists them all)",
                n - SHOWN
            )?;
        }
        if let Some(cycle) = &self.deadlock {
            write!(f, "deadlock: {}", Who(&cycle[0]))?;
            for (k, job) in cycle.iter().chain(&cycle[..1]).skip(1).enumerate() {
                let which = if k == 0 { "" } else { ", which" };
                write!(f, "{which} waits for {}", Who(job))?;
            }
            writeln!(f)?;
        }
        for c in &self.orphaned {
            write!(f, "counter made at {} is at {}", c.location, c.value)?;
            if c.target > 0 {
                write!(f, ", awaited down to {},", c.target)?;
            }
            writeln!(f, " and no job counted on it is alive: a missing done()?")?;
        }
        Ok(())
    }
}

/// An unfinished job as read off the frame.
struct Found<'a> {
    header: &'a Header,
    node: &'a Node,
    spawned_on: Option<usize>,
    /// The header's scheduling word.
    state: u32,
}

/// Orders the report's jobs: the root, then running, waiting and queued jobs.
fn rank(job: &StalledJob) -> u8 {
    match job.state {
        _ if job.root => 0,
        JobState::Running { .. } => 1,
        JobState::Waiting => 2,
        JobState::Queued { .. } => 3,
    }
}

impl Stall {
    /// Reads the report of frame `frame`, which began at `started`.
    ///
    /// Called by the watchdog while it holds the frame lock with the frame running (invariant
    /// 3): every job, node and counter reached below belongs to the running frame, whose arenas
    /// cannot be reset before the lock is released.
    pub(super) fn report(&self, shared: &Shared, frame: u64, started: Instant) -> StallReport {
        // The clock first, then the frame's age: no poll of the frame can seem to have run
        // longer than the frame.
        let (now, ns_per_tick) = self.now_ticks();
        let running_for = started.elapsed();
        // Which job each worker polls, and since when.
        let polls: Vec<(*const Header, u64)> = self
            .workers
            .iter()
            .map(|w| {
                let job = w.job.load(Ordering::Acquire).cast_const();
                (job, w.since.load(Ordering::Relaxed))
            })
            .collect();
        let mut found = Vec::new();
        let root_state = shared.root.state.load(Ordering::Acquire);
        if root_state & COMPLETE == 0 {
            found.push(Found {
                header: &shared.root,
                node: &self.root,
                spawned_on: None,
                state: root_state,
            });
        }
        let lists = self
            .workers
            .iter()
            .enumerate()
            .map(|(i, w)| (Some(i), w.head.load(Ordering::Acquire)))
            .chain([(None, self.foreign.load(Ordering::Acquire))]);
        for (spawned_on, head) in lists {
            let first = found.len();
            let mut cur = head.cast_const();
            while !cur.is_null() {
                // SAFETY: a linked node of the running frame (invariants 2, 3): written before
                // the acquire load that found it, and never changed since (node invariant 2).
                let node = unsafe { &*cur };
                // SAFETY: the job's header follows its node (node invariant 1), and the job
                // was written before its node was linked.
                let header = unsafe { &*cur.cast::<u8>().add(super::NODE).cast::<Header>() };
                let state = header.state.load(Ordering::Acquire);
                if state & COMPLETE == 0 {
                    found.push(Found {
                        header,
                        node,
                        spawned_on,
                        state,
                    });
                }
                cur = node.next;
            }
            // Lists run newest first.
            found[first..].reverse();
        }

        let index: HashMap<*const Header, usize> = found
            .iter()
            .enumerate()
            .map(|(i, f)| (core::ptr::from_ref(f.header), i))
            .collect();
        let mut counted: HashMap<*const CounterInner, Vec<usize>> = HashMap::new();
        for (i, f) in found.iter().enumerate() {
            if let Some(c) = f.header.counter {
                counted.entry(c.as_ptr().cast_const()).or_default().push(i);
            }
        }

        let mut jobs = Vec::with_capacity(found.len());
        // Per job: the raw `waits` word and its target.
        let mut waits = Vec::with_capacity(found.len());
        for f in &found {
            let state = if f.state & RUNNING != 0 {
                // The worker that began polling it last (a worker's slot keeps its last job).
                let by = polls
                    .iter()
                    .enumerate()
                    .filter(|(_, (job, _))| core::ptr::eq(*job, f.header))
                    .max_by_key(|(_, (_, since))| *since);
                match by {
                    Some((w, &(_, since))) => JobState::Running {
                        worker: Some(w),
                        running_for: Duration::from_nanos(
                            (now.saturating_sub(since) as f64 * ns_per_tick) as u64,
                        ),
                    },
                    None => JobState::Running {
                        worker: None,
                        running_for: Duration::ZERO,
                    },
                }
            } else if f.state & SCHEDULED != 0 {
                JobState::Queued {
                    started: f.state & POLLED != 0,
                }
            } else {
                JobState::Waiting
            };
            let word = f.node.waits.load(Ordering::Acquire);
            let target = f.node.target.load(Ordering::Relaxed);
            waits.push((word, target));
            let waits_on = match state {
                JobState::Queued { .. } => None,
                _ => {
                    let what = self.waits_on(word, target, &counted);
                    match (what, state) {
                        (Some(w), _) => Some(w),
                        (None, JobState::Waiting) => {
                            Some(if f.header.wake_cell.load(Ordering::Acquire).is_null() {
                                WaitsOn::Nothing
                            } else {
                                WaitsOn::ForeignWaker
                            })
                        }
                        (None, _) => None,
                    }
                }
            };
            let root = core::ptr::eq(f.header, &shared.root);
            jobs.push(StalledJob {
                root,
                name: if root { None } else { f.header.label.name() },
                location: (!root).then(|| f.header.label.location()),
                spawned_on: f.spawned_on,
                local: f.header.kind == JobKind::Local,
                state,
                waits_on,
            });
        }

        // Who waits for whom, among the waiting jobs.
        let waiting = |i: usize| jobs[i].state == JobState::Waiting;
        let edges: Vec<Vec<usize>> = (0..found.len())
            .map(|i| {
                if !waiting(i) {
                    return Vec::new();
                }
                let (word, target) = waits[i];
                let ptr = word & !TAGS;
                match word & TAGS {
                    HANDLE => index
                        .get(&(ptr as *const Header))
                        .copied()
                        .filter(|&j| waiting(j))
                        .into_iter()
                        .collect(),
                    // Awaited down to zero, the counter needs every job counted on it: each
                    // is waited for. (Down to `n > 0`, some of them may never be needed.)
                    COUNTER if target == 0 => counted
                        .get(&(ptr as *const CounterInner))
                        .into_iter()
                        .flatten()
                        .copied()
                        .filter(|&j| waiting(j))
                        .collect(),
                    _ => Vec::new(),
                }
            })
            .collect();
        let deadlock = find_cycle(&edges).map(|c| c.iter().map(|&i| jobs[i].clone()).collect());

        let mut orphaned = Vec::new();
        let mut seen = Vec::new();
        for (job, &(word, _)) in jobs.iter().zip(&waits) {
            if let Some(WaitsOn::Counter(c)) = job.waits_on {
                if c.is_orphaned() && !seen.contains(&word) {
                    seen.push(word);
                    orphaned.push(c);
                }
            }
        }

        jobs.sort_by_key(rank);
        StallReport {
            frame,
            running_for,
            stall_after: self.after,
            jobs,
            deadlock,
            orphaned,
        }
    }

    /// What a `waits` word names, if anything.
    fn waits_on(
        &self,
        word: usize,
        target: usize,
        counted: &HashMap<*const CounterInner, Vec<usize>>,
    ) -> Option<WaitsOn> {
        let ptr = word & !TAGS;
        match word & TAGS {
            HANDLE => {
                // SAFETY: a job of the running frame (its handle was awaited in this frame),
                // published before the release store of the word we read with acquire.
                let h = unsafe { &*(ptr as *const Header) };
                Some(WaitsOn::Job {
                    name: h.label.name(),
                    location: h.label.location(),
                })
            }
            COUNTER => {
                // SAFETY: a counter of the running frame, made before the release store of the
                // word we read with acquire; it lives until the frame ends.
                let c = unsafe { &*(ptr as *const CounterInner) };
                Some(WaitsOn::Counter(StalledCounter {
                    location: c.location,
                    value: c.value_now(),
                    target,
                    live_jobs: counted
                        .get(&(ptr as *const CounterInner))
                        .map_or(0, Vec::len),
                }))
            }
            _ => None,
        }
    }
}

/// A cycle in the graph `edges` (node `i` points at `edges[i]`), in order, if there is one.
fn find_cycle(edges: &[Vec<usize>]) -> Option<Vec<usize>> {
    const NEW: u8 = 0;
    const ON_PATH: u8 = 1;
    const DONE: u8 = 2;
    let mut color = vec![NEW; edges.len()];
    // The path from the start: (node, how many of its edges were followed).
    let mut path: Vec<(usize, usize)> = Vec::new();
    for start in 0..edges.len() {
        if color[start] != NEW {
            continue;
        }
        color[start] = ON_PATH;
        path.push((start, 0));
        while let Some((v, next)) = path.last_mut() {
            let v = *v;
            let Some(&u) = edges[v].get(*next) else {
                color[v] = DONE;
                path.pop();
                continue;
            };
            *next += 1;
            match color[u] {
                NEW => {
                    color[u] = ON_PATH;
                    path.push((u, 0));
                }
                ON_PATH => {
                    let from = path.iter().position(|&(x, _)| x == u)?;
                    return Some(path[from..].iter().map(|&(x, _)| x).collect());
                }
                _ => {}
            }
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::find_cycle;

    #[test]
    fn find_cycle_finds_the_cycle_and_only_it() {
        assert_eq!(find_cycle(&[vec![1], vec![2], vec![]]), None);
        assert_eq!(find_cycle(&[vec![1], vec![2], vec![1]]), Some(vec![1, 2]));
        assert_eq!(find_cycle(&[vec![0]]), Some(vec![0]));
        // A diamond is no cycle.
        assert_eq!(find_cycle(&[vec![1, 2], vec![3], vec![3], vec![]]), None);
        assert_eq!(
            find_cycle(&[vec![], vec![2], vec![3], vec![1]]),
            Some(vec![1, 2, 3])
        );
    }
}
