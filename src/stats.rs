//! What a frame cost, read after `run_frame` returns: the frame's totals ([`FrameStats`]) and
//! one row per worker ([`WorkerStats`]), and the driver's side of gathering them at frame end
//! without allocating.

use core::fmt;
use core::time::Duration;
use std::sync::{Mutex, OnceLock, PoisonError};

use crate::activity::Scale;
use crate::sync::Ordering;
use crate::worker::{Shared, Totals};

/// Figures for the last frame a [`Scheduler`](crate::Scheduler) ran.
///
/// ```
/// # let mut scheduler = frame_scheduler::Scheduler::builder().workers(2).build().unwrap();
/// scheduler.run_frame(async |frame| {
///     for _ in 0..10 { frame.spawn(async {}); }
/// });
/// let stats = scheduler.last_frame_stats();
/// assert_eq!(stats.index, 0);
/// assert_eq!(stats.jobs, 10);
/// assert!(stats.arena_bytes > 0);
/// // One row per worker; between them they ran every job.
/// assert_eq!(stats.workers().len(), 2);
/// assert_eq!(stats.workers().iter().map(|w| w.jobs).sum::<u64>(), 10);
/// // As a table: the totals, the column names, a row per worker.
/// println!("{stats}");
/// assert_eq!(stats.to_string().lines().count(), 2 + 2);
/// ```
///
/// Its [`Display`](fmt::Display) is a compact table: a line of totals, then one row per worker
/// with the columns of [`WorkerStats`]:
///
/// ```text
/// frame 41: 1210 jobs (0 local, 0 foreign), 37 steals, 0 panics, 845.3 µs; arena 96.0 KiB in 2 blocks (1 borrowed), 1024.0 KiB kept
/// worker    polls     jobs    taken     lost  parks   busy µs   idle µs   wake µs
///      0     1100     1090        0       37      0     801.2      44.1       0.0
///      1      120      120       37        0      1     102.9     203.3     539.1
/// ```
/// - `polls`, `jobs`: [`WorkerStats::polls`], [`WorkerStats::jobs`];
/// - `taken`, `lost`: jobs the worker stole from others, and jobs others stole from it
///   ([`WorkerStats::steals_taken`], [`WorkerStats::steals_lost`]);
/// - `parks`: [`WorkerStats::parks`];
/// - `busy µs`, `idle µs`, `wake µs`: [`WorkerStats::busy`], [`WorkerStats::idle`] and
///   [`WorkerStats::wake_lag`] in microseconds (`-` for a worker that ran no job).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct FrameStats {
    /// The frame's number (`Frame::index`).
    pub index: u64,
    /// Jobs spawned in the frame (all kinds, nested ones included; the root future is not a job).
    pub jobs: u64,
    /// Of `jobs`, those spawned with `spawn_local`.
    pub local_jobs: u64,
    /// Of `jobs`, those spawned from threads that are not workers.
    pub foreign_jobs: u64,
    /// Bytes of arena used by the frame's jobs and counters, over every arena.
    pub arena_bytes: usize,
    /// Bytes of frame memory kept for the next frames after this one's reset: each worker's
    /// own block and the free blocks of the shared pool.
    pub arena_capacity: usize,
    /// Arena blocks that held the frame's allocations.
    pub arena_blocks: usize,
    /// Of `arena_blocks`, those workers took from the shared pool (or the system) beyond their
    /// own: memory lent where the work landed.
    pub arena_blocks_borrowed: usize,
    /// Allocations too big to share a block (over a quarter of `arena_block_size`), which got
    /// a chunk of their own.
    pub arena_large: usize,
    /// Bytes of frame memory returned to the system at this frame's end (see
    /// `SchedulerBuilder::arena_trim_after`).
    pub arena_trimmed: usize,
    /// Jobs a worker took from another worker's queue (each job of a batch steal counts).
    pub steals: u64,
    /// Panics caught in the frame (jobs, root, output destructors). The first was resumed.
    pub panics: usize,
    /// Wall time from the start of `run_frame` until every job had finished and arenas were reset.
    pub elapsed: Duration,
    /// One row per worker: taken at the frame's end, converted on first read (empty in
    /// `FrameStats::default()`).
    pub(crate) workers: Rows,
}

impl FrameStats {
    /// What each worker did in the frame, indexed by worker (0 is the thread that called
    /// `run_frame`). All zero before the first frame.
    ///
    /// The frame's end only reads each worker's counts; the rows are worked out (times
    /// converted to nanoseconds) at the first call, into memory kept from frame to frame, so
    /// frames whose rows nobody reads do not pay for them, and reading them allocates nothing.
    pub fn workers(&self) -> &[WorkerStats] {
        self.workers.get()
    }
}

/// A worker's figures as the frame's end read them, before any time is converted.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct RawRow {
    polls: u64,
    jobs: u64,
    steals_taken: u64,
    steals_lost: u64,
    parks: u64,
    /// Wake lag and busy time in clock units, for a worker that started a job in the frame.
    span: Option<(u64, u64)>,
}

impl RawRow {
    /// The row, its times converted with `scale` and fitted into `elapsed`: wake lag + busy +
    /// idle = `elapsed` exactly, idle being the rest.
    fn convert(&self, scale: Scale, elapsed: Duration) -> WorkerStats {
        let mut row = WorkerStats {
            polls: self.polls,
            jobs: self.jobs,
            steals_taken: self.steals_taken,
            steals_lost: self.steals_lost,
            parks: self.parks,
            busy: Duration::ZERO,
            idle: elapsed,
            wake_lag: None,
        };
        // A worker that started no job was idle throughout (the row as it is).
        if let Some((lag, busy)) = self.span {
            let elapsed_ns = elapsed.as_nanos() as u64;
            let wake_lag = scale.ns(lag).min(elapsed_ns);
            let busy = scale.ns(busy).min(elapsed_ns - wake_lag);
            row.wake_lag = Some(Duration::from_nanos(wake_lag));
            row.busy = Duration::from_nanos(busy);
            row.idle = Duration::from_nanos(elapsed_ns - wake_lag - busy);
        }
        row
    }
}

/// The per-worker rows of [`FrameStats`]: raw counts written by the frame's end, converted
/// into [`WorkerStats`] once, on the first [`Rows::get`]. `get` takes `&self` and may be
/// called from several threads at once (`FrameStats` is `Sync`): the `OnceLock` runs one
/// conversion and every caller sees its result. The converted rows live in a box that the
/// next frame's end takes back into `spare` (with `&mut`), so that no conversion allocates
/// once the first has.
pub(crate) struct Rows {
    raw: Box<[RawRow]>,
    scale: Scale,
    elapsed: Duration,
    converted: OnceLock<Box<[WorkerStats]>>,
    /// Storage for the next conversion: `None` only before the first, in a clone, or while
    /// a conversion holds it.
    spare: Mutex<Option<Box<[WorkerStats]>>>,
}

impl Rows {
    /// Rows for `workers` workers, all zero, with the storage for their conversion.
    fn new(workers: usize) -> Rows {
        Rows {
            raw: vec![RawRow::default(); workers].into_boxed_slice(),
            scale: Scale::new(1.0),
            elapsed: Duration::ZERO,
            converted: OnceLock::new(),
            spare: Mutex::new(Some(
                vec![WorkerStats::default(); workers].into_boxed_slice(),
            )),
        }
    }

    /// The rows, converted now if this is the first read since the frame's end.
    fn get(&self) -> &[WorkerStats] {
        self.converted.get_or_init(|| {
            let spare = self
                .spare
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .take();
            let mut rows = match spare {
                Some(rows) if rows.len() == self.raw.len() => rows,
                // A clone's first read: its own memory, as a clone allocates anyway.
                _ => vec![WorkerStats::default(); self.raw.len()].into_boxed_slice(),
            };
            for (row, raw) in rows.iter_mut().zip(&self.raw) {
                *row = raw.convert(self.scale, self.elapsed);
            }
            rows
        })
    }

    /// The raw rows, to be overwritten by a new frame's end, which converts with `scale` and
    /// fits into `elapsed`; the last frame's converted rows become the spare storage.
    fn reset(&mut self, scale: Scale, elapsed: Duration) -> &mut [RawRow] {
        if let Some(rows) = self.converted.take() {
            *self.spare.get_mut().unwrap_or_else(PoisonError::into_inner) = Some(rows);
        }
        self.scale = scale;
        self.elapsed = elapsed;
        &mut self.raw
    }
}

impl Default for Rows {
    fn default() -> Rows {
        Rows::new(0)
    }
}

impl Clone for Rows {
    fn clone(&self) -> Rows {
        Rows {
            raw: self.raw.clone(),
            scale: self.scale,
            elapsed: self.elapsed,
            converted: OnceLock::new(),
            spare: Mutex::new(None),
        }
    }
}

impl PartialEq for Rows {
    fn eq(&self, other: &Rows) -> bool {
        self.get() == other.get()
    }
}

impl Eq for Rows {}

impl fmt::Debug for Rows {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self.get(), f)
    }
}

/// What one worker did in a frame: a row of [`FrameStats::workers`].
///
/// Counts are exact. Times are measured only when the worker switches between having work
/// and having none (never per poll), and they add up to the frame:
/// `wake_lag + busy + idle` is the frame's time up to the moment its figures were taken, a
/// little less than [`FrameStats::elapsed`].
///
/// ```
/// let mut scheduler = frame_scheduler::Scheduler::builder().workers(1).build().unwrap();
/// scheduler.run_frame(async |frame| {
///     let a = frame.spawn(async { frame_scheduler::yield_now().await; 1 });
///     let b = frame.spawn(async { 2 });
///     assert_eq!(a.await + b.await, 3);
/// });
/// let stats = scheduler.last_frame_stats();
/// let me = stats.workers()[0];
/// assert_eq!((me.jobs, me.polls), (2, 3)); // two jobs, one of which yielded once
/// assert_eq!((me.steals_taken, me.steals_lost), (0, 0));
/// // The thread in `run_frame` works from the frame's start.
/// assert_eq!(me.wake_lag, Some(std::time::Duration::ZERO));
/// assert!(me.busy + me.idle <= stats.elapsed);
/// ```
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct WorkerStats {
    /// Polls of jobs this worker ran (a job that suspended and was woken counts once per
    /// poll; the root future's polls on worker 0 are not counted).
    pub polls: u64,
    /// Jobs that finished on this worker (their last poll ran here, panics included). Over all
    /// workers this is [`FrameStats::jobs`].
    pub jobs: u64,
    /// Jobs this worker took from other workers' queues. Over all workers this is
    /// [`FrameStats::steals`].
    pub steals_taken: u64,
    /// Jobs other workers took from this worker's queue. Over all workers this equals the sum
    /// of `steals_taken`.
    pub steals_lost: u64,
    /// Times this worker put its thread to sleep for lack of work and was woken again, counted
    /// when it wakes: a worker asleep when the frame began counts the wake that brought it
    /// into this frame.
    pub parks: u64,
    /// Time from the worker's first job of the frame to the frame's end, less `idle`: running
    /// jobs and looking for the next one (on worker 0 also making and polling the root future,
    /// and the frame's end: dropping what nobody took, resetting arenas). Zero for a worker
    /// that ran no job.
    pub busy: Duration,
    /// Time in the frame without work: after the worker's first job, the gaps in which it
    /// looked for work, spun or slept, and the time since it last ran out of work; the whole
    /// frame for a worker that ran no job.
    pub idle: Duration,
    /// Time from the frame's start (the call to `run_frame`) to the worker's first job of the
    /// frame: how long waking it and handing it work took. `None` if it ran no job. Zero on
    /// worker 0, the thread in `run_frame`, which works from the start (it makes and polls the
    /// root future).
    pub wake_lag: Option<Duration>,
}

impl fmt::Display for FrameStats {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let kib = |bytes: usize| bytes as f64 / 1024.0;
        write!(
            f,
            "frame {}: {} jobs ({} local, {} foreign), {} steals, {} panics, {:.1} µs; arena \
             {:.1} KiB in {} blocks ({} borrowed), {:.1} KiB kept",
            self.index,
            self.jobs,
            self.local_jobs,
            self.foreign_jobs,
            self.steals,
            self.panics,
            micros(self.elapsed),
            kib(self.arena_bytes),
            self.arena_blocks,
            self.arena_blocks_borrowed,
            kib(self.arena_capacity),
        )?;
        if self.arena_large != 0 {
            write!(f, ", {} large", self.arena_large)?;
        }
        if self.arena_trimmed != 0 {
            write!(f, ", {:.1} KiB trimmed", kib(self.arena_trimmed))?;
        }
        writeln!(f)?;
        write!(
            f,
            "{:>6} {:>8} {:>8} {:>8} {:>8} {:>6} {:>9} {:>9} {:>9}",
            "worker", "polls", "jobs", "taken", "lost", "parks", "busy µs", "idle µs", "wake µs"
        )?;
        for (i, w) in self.workers().iter().enumerate() {
            write!(
                f,
                "\n{:>6} {:>8} {:>8} {:>8} {:>8} {:>6} {:>9.1} {:>9.1} ",
                i,
                w.polls,
                w.jobs,
                w.steals_taken,
                w.steals_lost,
                w.parks,
                micros(w.busy),
                micros(w.idle),
            )?;
            match w.wake_lag {
                Some(lag) => write!(f, "{:>9.1}", micros(lag))?,
                None => write!(f, "{:>9}", "-")?,
            }
        }
        Ok(())
    }
}

fn micros(d: Duration) -> f64 {
    d.as_secs_f64() * 1e6
}

/// The running counts of one worker, as read at the end of the last frame.
#[derive(Debug, Clone, Copy, Default)]
struct Before {
    polls: u64,
    completed: u64,
    steals: u64,
    parks: u64,
}

/// The driver's side of the per-worker figures: the workers' running counts and the steal
/// matrix as of the last frame's end. Allocated once, with the scheduler.
///
/// A frame's counts are the differences from the last frame's end. `polls`, `completed`,
/// `steals` and `stolen_from` move only while a job of a frame exists, so nothing moves them
/// between frames; `parks` may move then (a worker woken between frames, at shutdown or
/// spuriously), and such a park counts in the next frame.
#[derive(Debug)]
pub(crate) struct Collector {
    before: Box<[Before]>,
    /// Row `t`, column `v`: worker `t`'s `stolen_from()[v]` at the end of the last frame in
    /// which `t` stole.
    stolen: Box<[u64]>,
}

impl Collector {
    pub(crate) fn new(workers: usize) -> Collector {
        Collector {
            before: vec![Before::default(); workers].into_boxed_slice(),
            stolen: vec![0; workers * workers].into_boxed_slice(),
        }
    }

    /// The stats before any frame: a row of zeros per worker.
    pub(crate) fn empty_stats(&self) -> FrameStats {
        FrameStats {
            workers: Rows::new(self.before.len()),
            ..FrameStats::default()
        }
    }

    /// Frame `index` is over; it ran from clock time `span.0` to `span.1` (`Clock::now`
    /// units, converted by `scale`), `elapsed` by the wall clock. Writes each worker's raw
    /// row into `rows` (its counts, and its wake lag and busy time in clock units), which
    /// [`FrameStats::workers`] converts when it is first read. Returns the running totals
    /// behind the frame's other figures (read in the same pass over the workers).
    ///
    /// Call it after every job of the frame has completed, as `drive` and `end_frame` saw.
    /// Ordering: each worker wrote its counts (`polls`, `completed`, `steals`, `stolen_from`)
    /// and its `WorkerClock` with release stores before completing the job they concern (or,
    /// for a poll or a first job, the job polled); the driver acquired every worker's final
    /// `completed` count in the frame-end check, so those stores happen before these loads,
    /// and no store of this frame is missed. What a worker writes after its last job (its
    /// mark when it runs out of work, a park) may or may not be seen; see `activity.rs`.
    pub(crate) fn end(
        &mut self,
        shared: &Shared,
        index: u64,
        (start, end): (u64, u64),
        scale: Scale,
        elapsed: Duration,
        rows: &mut Rows,
    ) -> Totals {
        let rows = rows.reset(scale, elapsed);
        let mut stolen = false;
        let foreign = shared.foreign_spawned.load(Ordering::Relaxed);
        let mut totals = Totals {
            spawned: foreign,
            local: shared.workers[0].counts.local.load(Ordering::Relaxed),
            foreign,
            steals: 0,
        };
        for (i, w) in shared.workers.iter().enumerate() {
            let c = &w.counts;
            totals.spawned += c.spawned.load(Ordering::Relaxed);
            let (Some(row), Some(b)) = (rows.get_mut(i), self.before.get_mut(i)) else {
                totals.steals += c.steals.load(Ordering::Relaxed);
                continue;
            };
            let now = Before {
                polls: c.polls.load(Ordering::Acquire),
                completed: c.completed.load(Ordering::Acquire),
                steals: c.steals.load(Ordering::Acquire),
                parks: c.parks.load(Ordering::Acquire),
            };
            // The worker's mark is read after `end` was taken: see `WorkerClock::span`.
            let span = c.clock.span(index, start, end);
            *row = RawRow {
                polls: now.polls - b.polls,
                jobs: now.completed - b.completed,
                steals_taken: now.steals - b.steals,
                steals_lost: 0,
                parks: now.parks - b.parks,
                span: span.wake_lag.map(|lag| (lag, span.busy)),
            };
            *b = now;
            totals.steals += now.steals;
            stolen |= row.steals_taken != 0;
        }
        if stolen {
            // Only the rows of the steal matrix of workers that stole have moved.
            let n = rows.len();
            for (t, w) in shared.workers.iter().enumerate() {
                if rows[t].steals_taken == 0 {
                    continue;
                }
                let seen = &mut self.stolen[t * n..(t + 1) * n];
                for (v, (seen, now)) in seen.iter_mut().zip(w.counts.stolen_from()).enumerate() {
                    let now = now.load(Ordering::Acquire);
                    rows[v].steals_lost += now - *seen;
                    *seen = now;
                }
            }
        }
        totals
    }
}
