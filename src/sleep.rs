//! Parking idle workers, and waking them without losing work.
//!
//! # The protocol
//! A worker that found nothing to run (after a short spin) *announces* it is going to sleep by
//! setting its `sleeping` flag and incrementing `sleepers`, issues a `SeqCst` fence, and only
//! then checks once more for work. Whoever makes work available (a push to the injector or the
//! driver queue, a root wake, a worker going idle that may have finished the frame) first
//! publishes the work, issues a `SeqCst` fence, then looks at the flags. With both fences, at
//! least one side sees the other: either the sleeper finds the work in its last check, or the
//! notifier finds the flag and wakes it. That is the race this module exists to close; the
//! parking itself is a mutex, a condition variable and a token, so a notify that arrives before
//! the wait is never lost either.
//!
//! Pushes onto a worker's *own* queue follow the same strict protocol. It is tempting to skip
//! the fence there (rayon's sleep README argues that the pushing worker is awake and will run
//! the job itself), but a job may block its thread, or compute for a long time, right after
//! spawning: a sibling it waits for must then be run by someone else, and a sleeper that missed
//! it would sleep through the whole frame, or hang it.
//!
//! A worker may also park with a deadline ([`Sleep::sleep_until`]): at the deadline it takes
//! its flag back, unless a notifier took it first, in which case the token is on its way and
//! it waits for it, so a notifier's token is always consumed by the sleep it was meant for.
//!
//! `notify` clears the flag and decrements `sleepers` itself, so `sleepers` counts workers that
//! are asleep and not yet called, and a burst of pushes wakes each sleeper once.
//!
//! # Before parking
//! A thread that finds no work first keeps looking for a while ([`idle_round`]): the driving
//! thread spins without backing off ([`DRIVER_IDLE`]), background workers look less and less
//! often ([`WORKER_IDLE`]); only then do they announce themselves and park.
//!
//! # Between frames
//! When a frame ends there is provably nothing to do until the next `run_frame`, so background
//! workers park at once instead of spinning. But a worker woken by the driving thread at the
//! start of the next frame may start late (the system may put it on the driver's own busy core
//! after a long sleep), so [`Pacing`] learns the frame period and gives the workers a *window*
//! around the expected start of the next frame (in [`PaceHints`]): they park with a deadline at its beginning
//! (a timer wakes them where they slept), then look for work, spinning lightly, until the
//! frame comes or the window closes. `Scheduler::prewake` opens a window at once.

use std::time::{Duration, Instant};

use crossbeam_utils::CachePadded;

// `Pacing` is a heuristic outside the parking protocol: plain std atomics, also under loom.
use std::sync::atomic::AtomicU64;

use crate::sync::{
    AtomicBool, AtomicUsize, Condvar, Mutex, MutexGuard, Ordering, fence, lock, spin_loop,
    yield_thread,
};

/// The parking state of every worker, the driving thread included (index 0).
///
/// # Invariants
/// 1. `sleepers` equals the number of slots whose `sleeping` flag is set (give or take the
///    moment between a flag change and the matching count change, both made by the thread that
///    won the flag).
/// 2. A slot's `token` is set only by the notifier that cleared its `sleeping` flag, and
///    cleared only by the slot's own worker.
#[derive(Debug)]
pub(crate) struct Sleep {
    sleepers: CachePadded<AtomicUsize>,
    slots: Box<[CachePadded<Slot>]>,
}

#[derive(Debug)]
struct Slot {
    sleeping: AtomicBool,
    token: Mutex<bool>,
    cv: Condvar,
}

impl Sleep {
    pub(crate) fn new(workers: usize) -> Sleep {
        Sleep {
            sleepers: CachePadded::new(AtomicUsize::new(0)),
            slots: (0..workers)
                .map(|_| {
                    CachePadded::new(Slot {
                        sleeping: AtomicBool::new(false),
                        token: Mutex::new(false),
                        cv: Condvar::new(),
                    })
                })
                .collect(),
        }
    }

    /// Puts worker `index` to sleep unless `has_work` (checked after announcing) finds work.
    /// Returns whether it slept (waited for a notifier's token).
    pub(crate) fn sleep(&self, index: usize, has_work: impl FnOnce() -> bool) -> bool {
        if !self.announce(index, has_work) {
            return false;
        }
        let slot = &self.slots[index];
        let mut token = lock(&slot.token);
        while !*token {
            token = slot.cv.wait(token).unwrap_or_else(|e| e.into_inner());
        }
        *token = false;
        true
    }

    /// The first half of every park: announce, fence, look for work once more. Returns
    /// `false` if `has_work` found some and the worker took its flag back (it must not wait);
    /// `true` if it must wait for its token (none found, or a notifier already claimed it and
    /// its token is on the way).
    fn announce(&self, index: usize, has_work: impl FnOnce() -> bool) -> bool {
        let slot = &self.slots[index];
        slot.sleeping.store(true, Ordering::SeqCst);
        self.sleepers.fetch_add(1, Ordering::SeqCst);
        fence(Ordering::SeqCst);
        if has_work() && slot.sleeping.swap(false, Ordering::SeqCst) {
            self.sleepers.fetch_sub(1, Ordering::SeqCst);
            return false;
        }
        true
    }

    /// Wakes every background worker that is asleep (not the driving thread, index 0).
    pub(crate) fn notify_background(&self) {
        for i in 1..self.slots.len() {
            self.notify(i);
        }
    }

    /// [`Sleep::sleep`], but wakes by itself at `deadline` if nobody notified it first.
    /// Returns whether it parked (`false`: work was found first).
    pub(crate) fn sleep_until(
        &self,
        index: usize,
        deadline: Instant,
        has_work: impl FnOnce() -> bool,
    ) -> bool {
        let slot = &self.slots[index];
        self.sleep_with_deadline(
            index,
            has_work,
            || Instant::now() >= deadline,
            |token| {
                let left = deadline.saturating_duration_since(Instant::now());
                match slot.cv.wait_timeout(token, left) {
                    Ok((t, _)) => t,
                    Err(e) => e.into_inner().0,
                }
            },
        )
    }

    /// The protocol of [`Sleep::sleep_until`], with the clock abstracted for the loom model:
    /// `passed` says whether the deadline has passed, `wait` waits on the slot's condition
    /// variable until a notify or the deadline (spurious returns allowed).
    pub(crate) fn sleep_with_deadline<'a>(
        &'a self,
        index: usize,
        has_work: impl FnOnce() -> bool,
        passed: impl Fn() -> bool,
        wait: impl Fn(MutexGuard<'a, bool>) -> MutexGuard<'a, bool>,
    ) -> bool {
        if !self.announce(index, has_work) {
            return false;
        }
        let slot = &self.slots[index];
        let mut token = lock(&slot.token);
        while !*token {
            if passed() {
                // Take the flag back, unless a notifier took it: then its token is coming
                // (it sets it under the lock we hold), and we wait for it.
                if slot.sleeping.swap(false, Ordering::SeqCst) {
                    self.sleepers.fetch_sub(1, Ordering::SeqCst);
                    return true;
                }
                token = slot.cv.wait(token).unwrap_or_else(|e| e.into_inner());
            } else {
                token = wait(token);
            }
        }
        *token = false;
        true
    }

    /// A timer for the loom model: marks the deadline of worker `index`'s sleep as passed (in
    /// `passed`, owned by the caller) and wakes its condition variable, as a timed wait would.
    #[cfg(loom)]
    pub(crate) fn fire_timer(&self, index: usize, passed: &crate::sync::AtomicBool) {
        let slot = &self.slots[index];
        passed.store(true, Ordering::SeqCst);
        drop(lock(&slot.token));
        slot.cv.notify_all();
    }

    /// The loom model's `wait` for [`Sleep::sleep_with_deadline`]: a plain wait (the model's
    /// timer notifies).
    #[cfg(loom)]
    pub(crate) fn wait_plain<'a>(
        &'a self,
        index: usize,
        token: MutexGuard<'a, bool>,
    ) -> MutexGuard<'a, bool> {
        self.slots[index]
            .cv
            .wait(token)
            .unwrap_or_else(|e| e.into_inner())
    }

    /// Whether the slot is back at rest: not sleeping, no token pending (loom model checks).
    #[cfg(loom)]
    pub(crate) fn at_rest(&self, index: usize) -> bool {
        let slot = &self.slots[index];
        !slot.sleeping.load(Ordering::SeqCst)
            && !*lock(&slot.token)
            && self.sleepers.load(Ordering::SeqCst) == 0
    }

    /// Wakes worker `index` if it is asleep. Returns whether it was.
    pub(crate) fn notify(&self, index: usize) -> bool {
        let slot = &self.slots[index];
        if !slot.sleeping.load(Ordering::SeqCst) || !slot.sleeping.swap(false, Ordering::SeqCst) {
            return false;
        }
        self.sleepers.fetch_sub(1, Ordering::SeqCst);
        *lock(&slot.token) = true;
        slot.cv.notify_one();
        true
    }

    /// Wakes one sleeping worker, looking first at those after `from` (so that wakes spread
    /// out) and at the driving thread last.
    ///
    /// Never inlined: it is the rare branch of [`Sleep::notify_one_strict`], which every push
    /// runs; inlined there, its register saves cost each push about 8 instructions
    /// (`compare/scripts/instructions.sh`, spawn 10k: 395.2 against 387.2 per job).
    #[inline(never)]
    pub(crate) fn notify_one(&self, from: usize) -> bool {
        let n = self.slots.len();
        (1..=n)
            .map(|k| (from + k) % n)
            .filter(|&i| i != 0)
            .chain(core::iter::once(0))
            .any(|i| self.notify(i))
    }

    /// For work just published (a push, an injection): fence, then wake one sleeper if there
    /// is any. Strict: a worker going to sleep either sees the work or is woken.
    pub(crate) fn notify_one_strict(&self, from: usize) {
        fence(Ordering::SeqCst);
        if self.sleepers.load(Ordering::SeqCst) != 0 {
            self.notify_one(from);
        }
    }

    /// The strict form for the driving thread (root wakes, local jobs, frame completion).
    pub(crate) fn notify_driver(&self) {
        fence(Ordering::SeqCst);
        self.notify(0);
    }

    /// Wakes everyone (shutdown).
    pub(crate) fn notify_all(&self) {
        fence(Ordering::SeqCst);
        for i in 0..self.slots.len() {
            self.notify(i);
        }
    }
}

/// When the next frame is expected, learned from the last frames, and the window around it
/// during which idle workers look for work instead of parking (see the module docs).
///
/// Two rhythms are common: a loop that sleeps until the next vsync tick (a steady *period*
/// between frame starts) and a loop that sleeps a fixed time after each frame (a steady *gap*
/// from one frame's end to the next one's start, whatever the frames' lengths). At each frame
/// end both predict the next start; at the next start, whichever came closer is used for the
/// next window, widened by how far it missed, and only if it missed by at most an eighth of
/// the period (a steady rhythm).
///
/// Owned by the `Scheduler` and used only by the driving thread (`run_frame`, which holds the
/// `Scheduler` exclusively): plain fields, on no line a worker reads. What workers read is in
/// [`PaceHints`], written only when it changes.
///
/// Times are nanoseconds since the scheduler's clock epoch (`PaceHints::base`); they are kept
/// plus one, so that 0 means "none yet" (the methods add it).
#[derive(Debug)]
pub(crate) struct Pacing {
    /// How long before the expected start a window opens (`0`: learned windows are off).
    lead: u64,
    /// The last frame's start and end, the last period (start to start) and gap (end to start).
    start: u64,
    end: u64,
    period: u64,
    gap: u64,
    /// The next start as predicted at the last frame end, by the period and by the gap.
    by_period: u64,
    by_gap: u64,
    /// Whether the gap predicted the last start better, and by how much the better one missed
    /// (`u64::MAX`: no prediction yet).
    use_gap: bool,
    miss: u64,
    /// Whether the last gap between frames was under [`BACK_TO_BACK`].
    back_to_back: bool,
}

/// What idle workers read of the frames' rhythm, on lines of its own (in `Shared`), written
/// only when it changes: a line the driving thread wrote every frame while workers spin
/// reading it would cost the driver a cache miss per write.
///
/// Written by the driving thread ([`Pacing`]) and by `Scheduler::prewake`; read by idle
/// workers. All relaxed: a stale or torn window only makes a worker hover or park when it need
/// not, and parking itself follows the strict protocol above.
#[derive(Debug)]
pub(crate) struct PaceHints {
    /// The zero of every time here: the scheduler's clock epoch (`activity::Clock`).
    base: Instant,
    /// How long a window stays open after its expected start (or after `prewake`).
    hover: u64,
    /// Whether idle workers should behave as inside a frame (spin, then park): a frame runs,
    /// or frames come back to back.
    active: std::sync::atomic::AtomicBool,
    /// The window, in nanoseconds since `base` (plus one); empty when `from >= until`.
    from: AtomicU64,
    until: AtomicU64,
}

/// Stores `v` unless `load` is it already (see [`PaceHints`]).
fn store_changed<T: Copy + PartialEq>(load: T, v: T, store: impl FnOnce(T)) {
    if load != v {
        store(v);
    }
}

/// A gap between frames shorter than this makes them back to back (see
/// [`Pacing::back_to_back`]).
const BACK_TO_BACK: u64 = 200_000;

/// The most a window is widened by a missed prediction.
const MAX_SLACK: u64 = 1_000_000;

impl Pacing {
    /// Windows open `lead` before each expected start (`Duration::ZERO`: never).
    pub(crate) fn new(lead: Duration) -> Pacing {
        Pacing {
            lead: lead.as_nanos() as u64,
            start: 0,
            end: 0,
            period: 0,
            gap: 0,
            by_period: 0,
            by_gap: 0,
            use_gap: false,
            miss: u64::MAX,
            back_to_back: false,
        }
    }

    /// A frame starts at `now` (nanoseconds since the clock's epoch): score the two
    /// predictions, learn the period and the gap (only the gap while `lead` is 0: nothing
    /// else is read then), and tell idle workers a frame runs.
    pub(crate) fn frame_started(&mut self, hints: &PaceHints, now: u64) {
        let now = now + 1;
        if self.end != 0 {
            self.gap = now.saturating_sub(self.end);
        }
        self.back_to_back = self.end != 0 && self.gap < BACK_TO_BACK;
        hints.set_active(true);
        if self.lead == 0 {
            // Learned windows are off: only the gap (back to back or not) is needed.
            return;
        }
        if self.by_period != 0 && self.by_gap != 0 {
            let (period_miss, gap_miss) = (now.abs_diff(self.by_period), now.abs_diff(self.by_gap));
            self.use_gap = gap_miss < period_miss;
            self.miss = period_miss.min(gap_miss);
        }
        if self.start != 0 {
            self.period = now.saturating_sub(self.start);
        }
        self.start = now;
    }

    /// Whether the last gap between frames was under [`BACK_TO_BACK`] (as of the last
    /// `frame_started`).
    pub(crate) fn back_to_back(&self) -> bool {
        self.back_to_back
    }

    /// A frame ended at `now`: predict the next start, and open a window around it if the
    /// rhythm is steady. Returns whether a window is open or ahead (idle workers parked
    /// without a deadline should be woken to park again with one).
    pub(crate) fn frame_ended(&mut self, hints: &PaceHints, now: u64) -> bool {
        let now = now + 1;
        self.end = now;
        hints.set_active(self.back_to_back);
        if self.lead == 0 || self.period == 0 || self.gap == 0 {
            return false;
        }
        self.by_period = self.start + self.period;
        self.by_gap = now + self.gap;
        if self.lead == 0 || self.miss > self.period / 8 {
            return false;
        }
        let next = if self.use_gap {
            self.by_gap
        } else {
            self.by_period
        };
        let slack = self.miss.min(MAX_SLACK);
        hints.open(
            next.saturating_sub(self.lead + slack),
            next + hints.hover + slack,
        );
        true
    }
}

impl PaceHints {
    /// Hints whose times count from `base` (the clock's epoch); windows stay open `hover`
    /// past their expected start.
    pub(crate) fn new(base: Instant, hover: Duration) -> PaceHints {
        PaceHints {
            base,
            hover: hover.as_nanos() as u64,
            active: std::sync::atomic::AtomicBool::new(false),
            from: AtomicU64::new(0),
            until: AtomicU64::new(0),
        }
    }

    /// Now, in nanoseconds since `base`, plus one (a process does not run for 584 years).
    fn now(&self) -> u64 {
        Instant::now()
            .saturating_duration_since(self.base)
            .as_nanos() as u64
            + 1
    }

    /// Whether idle workers should behave as inside a frame (spin, then park) rather than
    /// as between frames (park at once, or hover in a window): a frame runs, or frames come
    /// back to back (the last gap between a frame's end and the next one's start was under
    /// [`BACK_TO_BACK`]), so that the next frame needs no wake.
    #[inline]
    pub(crate) fn active(&self) -> bool {
        self.active.load(std::sync::atomic::Ordering::Relaxed)
    }

    fn set_active(&self, active: bool) {
        use std::sync::atomic::Ordering::Relaxed;
        let a = &self.active;
        store_changed(a.load(Relaxed), active, |v| a.store(v, Relaxed));
    }

    /// Opens a window now (`Scheduler::prewake`).
    pub(crate) fn prewake(&self) {
        let now = self.now();
        self.open(now, now + self.hover);
    }

    fn open(&self, from: u64, until: u64) {
        // `until` first: a reader that sees the new `from` with the old `until` sees an empty
        // or a shorter window, never a longer one.
        use std::sync::atomic::Ordering::Relaxed;
        store_changed(self.until.load(Relaxed), until, |v| {
            self.until.store(v, Relaxed)
        });
        store_changed(self.from.load(Relaxed), from, |v| {
            self.from.store(v, Relaxed)
        });
    }

    /// What an idle worker between frames should do now.
    pub(crate) fn between_frames(&self) -> BetweenFrames {
        let now = self.now();
        let (from, until) = (
            self.from.load(std::sync::atomic::Ordering::Relaxed),
            self.until.load(std::sync::atomic::Ordering::Relaxed),
        );
        if now >= until || from >= until {
            BetweenFrames::Park
        } else if now >= from {
            BetweenFrames::Hover
        } else {
            BetweenFrames::ParkUntil(self.base + Duration::from_nanos(from - 1))
        }
    }
}

/// See [`Pacing::between_frames`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum BetweenFrames {
    /// Park until notified: no frame is expected soon.
    Park,
    /// Park until the window opens (or a notify).
    ParkUntil(Instant),
    /// Inside the window: keep looking for work, spinning lightly.
    Hover,
}

/// Waits between two looks for work while hovering: a short spin, then the rest of the time
/// slice to any other thread ready on this core (the driving thread, if the system put it
/// here: a hovering worker must not delay the frame it waits for). On an otherwise idle core
/// the yield returns at once.
pub(crate) fn hover_round() {
    for _ in 0..64 {
        spin_loop();
    }
    yield_thread();
}

/// How long an idle thread keeps looking for work before it parks.
#[derive(Debug, Clone, Copy)]
pub(crate) struct IdlePolicy {
    /// Rounds of looking; the last 16 give the time slice away instead of spinning.
    rounds: u32,
    /// How many times the spin per round may double (every 16 rounds).
    max_doublings: u32,
    /// From this round on, each round also gives the rest of the time slice away after its
    /// spin (see [`WORKER_IDLE`]).
    yield_from: u32,
}

/// Busy-wait hints per round, before any doubling.
const SPINS_PER_ROUND: u32 = 32;

/// The driving thread does not back off: it must notice the root's wake and the frame's end at
/// once.
pub(crate) const DRIVER_IDLE: IdlePolicy = IdlePolicy {
    rounds: 256,
    max_doublings: 0,
    yield_from: u32::MAX,
};

/// Background workers look less and less often as they keep finding nothing (the spin doubles
/// every 16 rounds, up to 16 times): each look reads the lines other workers' deques write on
/// every push and pop, so a worker that looks as often as it can slows down the ones that have
/// work.
///
/// After the first 16 rounds (about 10 µs), each round ends with a yield: a worker woken onto
/// the core where the driving thread runs (the system often puts it there, pinned or not, if
/// the driver is not pinned) would otherwise take that core from the driver for its whole spin
/// (hundreds of µs) while the frame waits. Measured with `compare/examples/frame_cost
/// --one-job --unpinned`: 10 frames after a pause cost about 50 µs each without these yields,
/// against about 3 µs pinned (BENCHMARKS.md, section 6). On an otherwise idle core a yield
/// returns at once.
pub(crate) const WORKER_IDLE: IdlePolicy = IdlePolicy {
    rounds: 96,
    max_doublings: 4,
    yield_from: 16,
};

/// Waits a little between two looks for work; returns `false` once it is time to park.
pub(crate) fn idle_round(round: &mut u32, policy: IdlePolicy) -> bool {
    *round += 1;
    if *round > policy.rounds {
        return false;
    }
    if *round > policy.rounds - 16 {
        yield_thread();
    } else {
        for _ in 0..SPINS_PER_ROUND << (*round / 16).min(policy.max_doublings) {
            spin_loop();
        }
        if *round >= policy.yield_from {
            yield_thread();
        }
    }
    true
}
