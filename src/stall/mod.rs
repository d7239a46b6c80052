//! Stall reports: when a frame runs longer than `stall_after`, a watchdog thread writes down
//! every unfinished job, what it is doing or waiting for, and the cycles among the waits.
//!
//! Everything here exists only when [`SchedulerBuilder::stall_after`](crate::SchedulerBuilder::stall_after)
//! is set (`Shared::stall` is `Some`); otherwise the spawn, poll and await paths pay one test
//! of that `Option` each, and no thread is started.
//!
//! # How the watchdog finds the jobs
//! Jobs live in per-worker bump arenas with no registry. With stall detection on, every spawn
//! asks its arena for a little more room and writes a [`Node`] right in front of the job's
//! header (so a header's node is found by subtraction, and the header stays 88 bytes), then
//! links the node into its spawner's list: one list per worker, whose head only that worker
//! writes (a release store, after the node and the job are written), and one for threads that
//! are no worker (a compare-and-swap push). The watchdog walks the lists from their heads
//! (acquire loads); nodes never change once linked, and nothing is ever unlinked within a
//! frame: a finished job is told by its `COMPLETE` state bit.
//!
//! # What a job waits for
//! Each worker says which job it is polling and since when ([`Stall::poll_begin`]: a job
//! pointer and a timestamp, written by that worker only). When a poll registers on a
//! [`JobHandle`](crate::JobHandle) or a [`Counter`](crate::Counter), the polling job's node
//! records it: a tagged pointer in `Node::waits` (and the awaited value in `Node::target`),
//! cleared when the next poll begins. So after a `Pending` poll the node says what the job
//! waits on; a job that registered on none of ours waits on a waker held elsewhere (if its
//! waker was ever cloned) or on nothing at all.
//!
//! # What the watchdog reads, and when
//! Only atomics (state words, `waits`, `target`, the list heads, the workers' poll slots, a
//! counter's value, a header's `wake_cell`) and fields that never change after the job or
//! counter is published (a header's label, kind and counter pointer; a node's `next`; a
//! counter's location). It reads them only while it holds the frame lock with the frame
//! running; the driver takes the same lock to mark the frame over ([`Stall::frame_end`])
//! before any arena is reset, so the watchdog never reads memory of a frame that has ended.
//!
//! | field                    | written by                                   | read by                |
//! |--------------------------|----------------------------------------------|------------------------|
//! | `Node::next`             | the spawner, before the node is linked       | the watchdog           |
//! | `Node::waits`, `target`  | the worker polling the job (the root's: also the driver at frame end) | the watchdog |
//! | `Watch::head`            | worker `i` (spawns); the driver at frame end | the watchdog           |
//! | `Watch::job`, `since`    | worker `i` (poll begin); the driver at frame end | worker `i`, the watchdog |
//! | `Stall::foreign`         | threads that are no worker (CAS); the driver at frame end | the watchdog |
//! | `Stall::frame`           | under its lock: the driver (frame begin, end), the watchdog | same          |
//!
//! The watchdog is not model-checked (the loom models never set `stall_after`); its lock,
//! condition variable and thread are `std`'s.

mod report;

use core::alloc::Layout;
use core::mem;
use core::ptr::{self, NonNull};
use std::io::Write as _;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crossbeam_utils::CachePadded;

use crate::context;
use crate::counter::CounterInner;
use crate::job::Header;
use crate::sync::{AtomicPtr, AtomicU64, AtomicUsize, Ordering};
use crate::trace::Clock;
use crate::worker::Shared;

pub use report::{JobState, StallReport, StalledCounter, StalledJob, WaitsOn};

/// What [`SchedulerBuilder::on_stall`](crate::SchedulerBuilder::on_stall) keeps.
pub(crate) type StallHook = Arc<dyn Fn(&StallReport) + Send + Sync>;

/// The hook used when `on_stall` is not set: the report, on stderr.
pub(crate) fn default_hook() -> StallHook {
    Arc::new(|report: &StallReport| {
        // A closed stderr is no reason to kill the watchdog: the report is lost, nothing else.
        let _ = writeln!(std::io::stderr().lock(), "{report}");
    })
}

/// `Node::waits` tag: the rest of the word is the header of the job whose handle was awaited.
const HANDLE: usize = 1;
/// `Node::waits` tag: the rest of the word is the awaited `CounterInner`.
const COUNTER: usize = 2;
/// The tag bits of `Node::waits`: headers and counters are aligned to at least 8 bytes.
const TAGS: usize = 7;
const _: () = assert!(mem::align_of::<Header>() > TAGS && mem::align_of::<CounterInner>() > TAGS);

/// What the watchdog knows of a job beyond its header: written into the arena right in front
/// of the header when stall detection is on.
///
/// # Invariants
/// 1. With stall detection on, every job of the scheduler has a node ending exactly where its
///    header begins, in the room the job was allocated in (see [`room_with_node`]); the root's
///    node is [`Stall::root`]. It lives as long as the job.
/// 2. `next` is written before the node is linked (published) and never changes after.
/// 3. `waits` and `target` are written only by the thread polling the job, during the poll
///    (for the root's node, also by the driver at frame end, when nobody polls).
#[repr(C)]
pub(crate) struct Node {
    /// The node linked before this one in the same list (null at the end).
    next: *const Node,
    /// What the job's current or last poll registered on: 0, or a pointer tagged [`HANDLE`] or
    /// [`COUNTER`].
    waits: AtomicUsize,
    /// For a counter: the value the job waits for it to come down to.
    target: AtomicUsize,
}

// SAFETY: `next` never changes once the node is shared (invariant 2); the rest is atomic.
unsafe impl Sync for Node {}
// SAFETY: as above; a node holds no thread-bound data.
unsafe impl Send for Node {}

impl Node {
    fn new() -> Node {
        Node {
            next: ptr::null(),
            waits: AtomicUsize::new(0),
            target: AtomicUsize::new(0),
        }
    }
}

/// Bytes from a node to the header after it.
const NODE: usize = mem::size_of::<Node>();

/// The room to ask the arena for a job of room `job` with its node in front: `job` grown at
/// the front by the node rounded up to the job's alignment.
#[inline]
pub(crate) fn room_with_node(job: Layout) -> Layout {
    let pad = NODE.next_multiple_of(job.align());
    match Layout::from_size_align(pad + job.size(), job.align()) {
        Ok(l) => l,
        Err(_) => panic!("a job too large for a Layout"),
    }
}

/// Where the job's own room starts in `room`, allocated with [`room_with_node`]`(job)`. Place
/// the job there (`Job::place`): its header then starts at least [`NODE`] bytes into `room`,
/// aligned to at least 8, so the node fits in front of it (node invariant 1).
#[inline]
pub(crate) fn after_node(room: NonNull<u8>, job: Layout) -> NonNull<u8> {
    let pad = NODE.next_multiple_of(job.align());
    // SAFETY: `room` holds `pad + job.size()` bytes.
    unsafe { room.add(pad) }
}

/// The node of an arena job.
///
/// # Safety
/// 1. `header` is the header of a live job of a scheduler with stall detection on, allocated
///    with [`room_with_node`] and placed after [`after_node`] (node invariant 1).
unsafe fn arena_node<'a>(header: *const Header) -> &'a Node {
    // SAFETY: (1): the node ends where the header begins, inside the job's room, aligned (the
    // header is aligned to 8 at least, and so is `NODE`), and lives as long as the job.
    unsafe { &*header.cast::<u8>().sub(NODE).cast::<Node>() }
}

/// One worker's slots, written by that worker only during a frame (see the module's table).
struct Watch {
    /// The newest node of the jobs this worker spawned in the running frame.
    head: AtomicPtr<Node>,
    /// The job (or root) this worker is polling or polled last in the running frame; null
    /// before its first poll of the frame.
    job: AtomicPtr<Header>,
    /// When that poll began, in `Stall::clock` ticks.
    since: AtomicU64,
}

/// What the driver and the watchdog share under the frame lock.
struct Watched {
    /// The running frame's index, and when it began.
    index: u64,
    started: Instant,
    /// Whether a frame runs: the watchdog reads jobs only while it does (and holds the lock).
    running: bool,
    /// Whether this frame has had its report.
    reported: bool,
    /// Whether the watchdog sleeps with no deadline (a frame beginning must wake it).
    idle: bool,
    /// The scheduler is being dropped: the watchdog returns.
    shutdown: bool,
}

/// A scheduler's stall detection (`Shared::stall`).
///
/// # Invariants
/// 1. `workers[i].job` is null or a job (or the root) of the running frame, polled by worker
///    `i` in this frame: worker `i` sets it at each poll's start, and the driver nulls every
///    slot at frame end ([`Stall::frame_end`]), before any arena is reset.
/// 2. The lists (`workers[i].head`, `foreign`) hold only nodes of the running frame's jobs, and
///    are emptied by the driver at frame end, under the frame lock, before any arena is reset.
/// 3. The watchdog reads a job, node or counter only while it holds `frame` with `running`
///    set; the driver clears `running` under that lock before it resets the arenas.
pub(crate) struct Stall {
    after: Duration,
    hook: StallHook,
    /// Times polls: the time-stamp counter where there is one (a few nanoseconds per read,
    /// against some 40 for an `Instant` here), and when its ticks were `epoch.1`.
    clock: Clock,
    epoch: (Instant, u64),
    workers: Box<[CachePadded<Watch>]>,
    /// The newest node of the jobs spawned by threads that are no worker.
    foreign: AtomicPtr<Node>,
    /// The root future's node (it has no arena room).
    root: Node,
    frame: Mutex<Watched>,
    /// Wakes the watchdog: a frame began while it slept with no deadline, or shutdown.
    wake: Condvar,
}

impl core::fmt::Debug for Stall {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("Stall")
            .field("after", &self.after)
            .finish_non_exhaustive()
    }
}

impl Stall {
    /// Stall detection for `workers` workers, reporting frames longer than `after` to `hook`.
    pub(crate) fn new(workers: usize, after: Duration, hook: StallHook) -> Stall {
        let clock = Clock::new();
        let epoch = (Instant::now(), clock.ticks());
        Stall {
            after,
            hook,
            clock,
            epoch,
            workers: (0..workers)
                .map(|_| {
                    CachePadded::new(Watch {
                        head: AtomicPtr::new(ptr::null_mut()),
                        job: AtomicPtr::new(ptr::null_mut()),
                        since: AtomicU64::new(0),
                    })
                })
                .collect(),
            foreign: AtomicPtr::new(ptr::null_mut()),
            root: Node::new(),
            frame: Mutex::new(Watched {
                index: 0,
                started: Instant::now(),
                running: false,
                reported: false,
                idle: false,
                shutdown: false,
            }),
            wake: Condvar::new(),
        }
    }

    fn lock(&self) -> MutexGuard<'_, Watched> {
        // Nothing panics while the lock is held (the hook runs after it is released).
        self.frame
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Starts the watchdog thread of the scheduler `shared` (whose `stall` is `self`), and
    /// returns once the thread runs: a thread's start-up in `std` allocates (its name, 20
    /// bytes here), and that must be over before the first frame, which allocates nothing.
    pub(crate) fn start(shared: &Arc<Shared>) -> std::io::Result<JoinHandle<()>> {
        let shared = Arc::clone(shared);
        let running = Arc::new(std::sync::Barrier::new(2));
        let started = Arc::clone(&running);
        let handle = std::thread::Builder::new()
            .name("frame-stall-watchdog".into())
            .spawn(move || {
                started.wait();
                drop(started);
                watchdog(&shared);
            })?;
        running.wait();
        Ok(handle)
    }

    /// The scheduler is being dropped: the watchdog returns (join it after).
    pub(crate) fn shutdown(&self) {
        self.lock().shutdown = true;
        self.wake.notify_all();
    }

    /// The driver begins frame `index`.
    pub(crate) fn frame_begin(&self, index: u64) {
        let mut w = self.lock();
        w.index = index;
        w.started = Instant::now();
        w.running = true;
        w.reported = false;
        if w.idle {
            self.wake.notify_one();
        }
    }

    /// The driver ends the frame: every job is done. Waits for a report being written to be
    /// done reading; after this the watchdog reads nothing of the frame (invariants 1 to 3).
    /// Call it before any arena is reset.
    pub(crate) fn frame_end(&self) {
        let mut w = self.lock();
        w.running = false;
        for watch in self.workers.iter() {
            watch.head.store(ptr::null_mut(), Ordering::Relaxed);
            watch.job.store(ptr::null_mut(), Ordering::Relaxed);
        }
        self.foreign.store(ptr::null_mut(), Ordering::Relaxed);
        self.root.waits.store(0, Ordering::Relaxed);
        drop(w);
    }

    /// The clock now, in ticks, and nanoseconds per tick (measured since `epoch`).
    fn now_ticks(&self) -> (u64, f64) {
        let ticks = self.clock.ticks();
        let ns = self.epoch.0.elapsed().as_nanos() as f64;
        let elapsed = ticks.saturating_sub(self.epoch.1);
        (
            ticks,
            if elapsed == 0 {
                1.0
            } else {
                ns / elapsed as f64
            },
        )
    }

    /// The node of `header`: the root's, or the one in front of an arena job.
    ///
    /// # Safety
    /// 1. `header` is `shared.root`, or a live job of `shared`, the scheduler whose `stall` is
    ///    `self`.
    unsafe fn node_of<'a>(&'a self, shared: &Shared, header: *const Header) -> &'a Node {
        if ptr::eq(header, &shared.root) {
            &self.root
        } else {
            // SAFETY: (1), and stall detection is on for every job of `shared`.
            unsafe { arena_node(header) }
        }
    }

    /// Links the node of a job just written (`header`) into the list of its spawner: worker
    /// `by`, or (`None`) the list of threads that are no worker.
    ///
    /// # Safety
    /// 1. `header` is a job of this scheduler's running frame, just written into room allocated
    ///    with [`room_with_node`] and placed after [`after_node`], and not yet linked.
    /// 2. If `by` is `Some(i)`, the caller is worker `i`.
    #[inline]
    pub(crate) unsafe fn publish(&self, by: Option<usize>, header: NonNull<Header>) {
        // SAFETY: (1): the node's room lies in front of the header, ours until linked.
        let node = unsafe { header.as_ptr().cast::<u8>().sub(NODE).cast::<Node>() };
        match by {
            Some(i) => {
                let head = &self.workers[i].head;
                // SAFETY: (1): fresh room; (2): only we write this head during the frame.
                unsafe {
                    node.write(Node {
                        next: head.load(Ordering::Relaxed),
                        ..Node::new()
                    })
                };
                head.store(node, Ordering::Release);
            }
            None => {
                let mut next = self.foreign.load(Ordering::Relaxed);
                // SAFETY: (1): fresh room, ours until the swap below publishes it.
                unsafe {
                    node.write(Node {
                        next,
                        ..Node::new()
                    })
                };
                while let Err(actual) = self.foreign.compare_exchange_weak(
                    next,
                    node,
                    Ordering::Release,
                    Ordering::Relaxed,
                ) {
                    next = actual;
                    // SAFETY: not yet published: still ours (invariant 2 of the node).
                    unsafe { (*node).next = next };
                }
            }
        }
    }

    /// Worker `index` is about to poll `job` (a job, or the root): clears what the job's last
    /// poll waited on and notes the poll's start.
    ///
    /// # Safety
    /// 1. The caller is worker `index`, and `job` is `shared.root` or a job of `shared`'s
    ///    running frame that the caller holds `RUNNING` for (or is about to).
    #[inline]
    pub(crate) unsafe fn poll_begin(&self, shared: &Shared, index: usize, job: NonNull<Header>) {
        // SAFETY: (1): the job is live, polled by us.
        let node = unsafe { self.node_of(shared, job.as_ptr()) };
        // Most jobs are polled once: their node, written at spawn, stays clean (and shared).
        if node.waits.load(Ordering::Relaxed) != 0 {
            node.waits.store(0, Ordering::Relaxed);
        }
        let watch = &self.workers[index];
        watch.since.store(self.clock.ticks(), Ordering::Relaxed);
        watch.job.store(job.as_ptr(), Ordering::Release);
    }

    /// The job being polled on this thread registered on `counter`, waiting for it to come
    /// down to `target`.
    #[inline]
    pub(crate) fn note_counter_wait(&self, shared: &Shared, counter: &CounterInner, target: usize) {
        let word = ptr::from_ref(counter) as usize | COUNTER;
        self.note_wait(shared, word, target);
    }

    /// Records `word` (and `target`) as what the job being polled on this thread waits on, if
    /// this thread is a worker of `shared` polling one of its jobs.
    #[cold]
    #[inline(never)]
    fn note_wait(&self, shared: &Shared, word: usize, target: usize) {
        let cur = context::current();
        if !ptr::eq(cur.shared, shared) {
            // A thread that is no worker (a scoped thread blocking on a handle): whatever it
            // runs is not a job of ours.
            return;
        }
        // Written by this thread only (invariant 1).
        let job = self.workers[cur.index].job.load(Ordering::Relaxed);
        if job.is_null() {
            return;
        }
        // SAFETY: invariant 1: a job of the running frame polled on this thread, or the root.
        let node = unsafe { self.node_of(shared, job) };
        node.target.store(target, Ordering::Relaxed);
        // Release: the watchdog that reads this word also reads the awaited header or counter.
        node.waits.store(word, Ordering::Release);
    }
}

/// A poll registered on the handle of `job`: recorded for the job being polled, when its
/// scheduler has stall detection on.
#[inline]
pub(crate) fn note_handle_wait(job: &Header) {
    // SAFETY: header invariant 1: the scheduler outlives its jobs.
    let shared = unsafe { &*job.shared };
    if let Some(stall) = shared.stall.as_deref() {
        stall.note_wait(shared, ptr::from_ref(job) as usize | HANDLE, 0);
    }
}

/// The watchdog thread: sleeps until the running frame is `stall_after` old, then reports it
/// once.
fn watchdog(shared: &Shared) {
    let Some(stall) = shared.stall.as_deref() else {
        return;
    };
    let mut w = stall.lock();
    loop {
        if w.shutdown {
            return;
        }
        // (A frame can never be `stall_after` old if that is beyond what an `Instant` holds.)
        let due = match w.started.checked_add(stall.after) {
            Some(due) if w.running && !w.reported => due,
            _ => {
                w.idle = true;
                w = stall
                    .wake
                    .wait(w)
                    .unwrap_or_else(std::sync::PoisonError::into_inner);
                w.idle = false;
                continue;
            }
        };
        let now = Instant::now();
        if now < due {
            // Frames that end before `due` do not wake us: we look again at `due`, at
            // whichever frame runs then.
            w = stall
                .wake
                .wait_timeout(w, due - now)
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .0;
            continue;
        }
        w.reported = true;
        // Under the lock, with the frame running (invariant 3).
        let report = stall.report(shared, w.index, w.started);
        drop(w);
        // User code: its panic must not end the watchdog.
        if let Err(payload) = catch_unwind(AssertUnwindSafe(|| (stall.hook)(&report))) {
            let msg = payload
                .downcast_ref::<&str>()
                .map(|s| (*s).to_owned())
                .or_else(|| payload.downcast_ref::<String>().cloned())
                .unwrap_or_else(|| "a panic payload that is not a string".into());
            crate::unwind::drop_quietly(payload);
            let _ = writeln!(
                std::io::stderr().lock(),
                "frame-scheduler: the on_stall hook panicked ({msg}); the panic was caught"
            );
        }
        drop(report);
        w = stall.lock();
    }
}
