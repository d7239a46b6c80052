//! What each worker does with its time in a frame: when it started its first job (the wake
//! lag), and when it switched between having work and having none. The figures behind the
//! per-worker rows of `FrameStats`.
//!
//! # Cost
//! Nothing is timed per poll. A worker reads the clock only when it switches: when it finds
//! work after finding none (or its first job of a frame), and when it runs out of work, the
//! moments its loop already pays for a flush and a wake of the driver. Per job it does two
//! compares of values it already holds, and one relaxed load of the frame number, a line the
//! driver writes once per frame.
//!
//! # Who writes what
//! [`Clock`] is written by the driving thread at frame start, before any job of the frame
//! exists. A [`WorkerClock`] is written only by its worker (plain load and release store, no
//! read-modify-write), from the [`Activity`] that worker keeps on its stack, and read by the
//! driving thread at frame end.
//!
//! # What the driver can see at frame end
//! Everything a worker writes in [`Activity::working`] is written before the worker polls a
//! job of the frame, and every job completes before the frame ends: the completion is counted
//! with a release store that the driver's frame-end check reads with acquire (`worker.rs`,
//! "Knowing when a frame is over"), and a job polled here but finished elsewhere passes through
//! its state word's acquire/release transitions first. So the frame number, first-job time and
//! idle gaps of a worker that worked in the frame are all visible, exactly. Only the mark a
//! worker stores when it runs out of work *after* its last job is not ordered before the frame
//! end: the driver reads it with acquire and sees it or the busy mark before it. In the second
//! case the worker still counts as busy until the frame's end, which is what the driver could
//! observe: it had not yet reported that it found no more work.

use std::time::{Duration, Instant};

use crate::sync::{AtomicU64, Ordering, load_own};

/// The scheduler's clock for worker activity, and the number of the running frame.
///
/// Times are *units* of the trace's clock (`crate::trace::Clock`: the time-stamp counter on
/// x86-64, a few nanoseconds to read, where an `Instant` costs 40 to 60 ns on some VMs) since
/// the scheduler was built; [`Clock::ns_per_unit`] converts them, calibrated against `Instant`
/// over the scheduler's whole life.
#[derive(Debug)]
pub(crate) struct Clock {
    ticks: crate::trace::Clock,
    epoch: Instant,
    epoch_ticks: u64,
    /// 1 + the index of the frame running or last run (0 before the first).
    frame: AtomicU64,
}

impl Clock {
    pub(crate) fn new() -> Clock {
        let ticks = crate::trace::Clock::new();
        // The first `Instant` read of a process may be slow (a cold page): not this one. The
        // epoch's ticks are the middle of the two reads around it.
        let _ = Instant::now();
        let before = ticks.ticks();
        let epoch = Instant::now();
        let after = ticks.ticks();
        let epoch_ticks = before + after.saturating_sub(before) / 2;
        Clock {
            ticks,
            epoch,
            epoch_ticks,
            frame: AtomicU64::new(0),
        }
    }

    /// Units since the clock's start.
    #[inline]
    pub(crate) fn now(&self) -> u64 {
        self.ticks.ticks().saturating_sub(self.epoch_ticks)
    }

    /// Nanoseconds per unit, measured from the clock's start to `at`, when the clock read
    /// `units` (an earlier [`Clock::now`] than `at`, or close to it).
    pub(crate) fn ns_per_unit(&self, at: Instant, units: u64) -> f64 {
        // Through u64: a u128 to f64 conversion is a library call.
        let ns = at.saturating_duration_since(self.epoch).as_nanos() as u64 as f64;
        if units == 0 { 1.0 } else { ns / units as f64 }
    }

    /// When the clock started: the zero of its units, and of the pacing's times.
    pub(crate) fn epoch(&self) -> Instant {
        self.epoch
    }

    /// The driving thread starts frame `index`. Called before any job of it exists, so every
    /// worker that takes one of its jobs reads the new number (the job's spawn and queueing
    /// happen after this store, and the worker took the job from a queue with acquire).
    pub(crate) fn frame_begin(&self, index: u64) {
        self.frame.store(index + 1, Ordering::Release);
    }
}

/// How the driving thread turns [`Clock`] units into nanoseconds: the rate measured against
/// `Instant` over the scheduler's life, measured again whenever that life has doubled and at
/// least every [`RATE_EVERY`], so a frame reads the cheap clock twice and an `Instant` (30 to
/// 60 ns on some VMs) only on those frames. Owned by the `Scheduler` (driving thread only).
///
/// On x86-64 the units are time-stamp counter ticks, whose rate is constant on every CPU with
/// an invariant counter (all of this century's); elsewhere they are nanoseconds already and
/// the rate stays 1.
#[derive(Debug)]
pub(crate) struct Rate {
    /// Copies of the clock's own (never written after build), so that reading the clock at a
    /// frame's start touches no line of `Shared`: after an idle pause every line is a miss.
    ticks: crate::trace::Clock,
    epoch_ticks: u64,
    /// Nanoseconds per unit, as the conversion does it.
    scale: Scale,
    /// The clock time (units) at which to measure again.
    next: u64,
}

/// How often [`Rate`] measures the clock's rate again.
const RATE_EVERY: Duration = Duration::from_millis(10);

impl Rate {
    /// A rate for `clock`, to be measured at the first [`Rate::update`].
    pub(crate) fn new(clock: &Clock) -> Rate {
        Rate {
            ticks: clock.ticks,
            epoch_ticks: clock.epoch_ticks,
            scale: Scale::new(1.0),
            next: 0,
        }
    }

    /// [`Clock::now`], read through the copies.
    #[inline]
    pub(crate) fn now(&self) -> u64 {
        self.ticks.ticks().saturating_sub(self.epoch_ticks)
    }

    /// The clock read `units` just now: measure the rate again if it is due.
    #[inline]
    pub(crate) fn update(&mut self, clock: &Clock, units: u64) {
        if units >= self.next {
            self.measure(clock, units);
        }
    }

    /// Measures the rate over the clock's whole life: the error of one reading (the time
    /// between the two clock reads around the `Instant`, half of it at most) shrinks as the
    /// life grows, so the next measure comes when the life has doubled, and at least every
    /// [`RATE_EVERY`].
    #[inline(never)]
    fn measure(&mut self, clock: &Clock, units: u64) {
        let at = Instant::now();
        let after = self.now();
        let units = units + after.saturating_sub(units) / 2;
        let ns_per_unit = clock.ns_per_unit(at, units);
        self.scale = Scale::new(ns_per_unit);
        let every = (RATE_EVERY.as_nanos() as f64 / ns_per_unit) as u64;
        self.next = units.saturating_add(units.clamp(1, every));
    }

    /// The conversion from units to nanoseconds.
    pub(crate) fn scale(&self) -> Scale {
        self.scale
    }

    /// `units` in nanoseconds.
    #[inline]
    pub(crate) fn ns(&self, units: u64) -> u64 {
        self.scale.ns(units)
    }
}

/// Nanoseconds per clock unit in fixed point, 32 fractional bits: a conversion is one
/// 64 × 64 → 128-bit multiply and a shift, where `units as f64 * rate` and back to `u64` took
/// about 20 instructions (measured with `compare/examples/instructions` under cachegrind; a
/// frame converts a handful of times, and once per worker row). The rounding error is below
/// 2⁻³² of the rate: under a nanosecond per four seconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Scale(u64);

impl Scale {
    const FRACTION_BITS: u32 = 32;

    /// `ns_per_unit`, which must be finite and positive, and below 2³² (a unit of more than
    /// four seconds saturates there).
    pub(crate) fn new(ns_per_unit: f64) -> Scale {
        // `as` saturates: NaN gives 0, an out-of-range rate the largest scale.
        Scale((ns_per_unit * (1u64 << Self::FRACTION_BITS) as f64).round() as u64)
    }

    /// `units` in nanoseconds, saturating at `u64::MAX`.
    #[inline]
    pub(crate) fn ns(self, units: u64) -> u64 {
        let ns = (units as u128 * self.0 as u128) >> Self::FRACTION_BITS;
        u64::try_from(ns).unwrap_or(u64::MAX)
    }
}

/// One worker's activity in the last frame it worked in, as its worker publishes it.
#[derive(Debug)]
pub(crate) struct WorkerClock {
    /// 1 + the index of the last frame in which the worker started a job.
    frame: AtomicU64,
    /// When it started its first job of that frame (clock nanoseconds).
    first: AtomicU64,
    /// Nanoseconds without work between its jobs of that frame, over the gaps closed so far
    /// (a gap closes when the worker finds work again).
    idle: AtomicU64,
    /// `t << 1 | 1` when the worker has been busy since clock time `t`, `t << 1` when it has
    /// been out of work since `t`.
    mark: AtomicU64,
}

impl Default for WorkerClock {
    fn default() -> Self {
        WorkerClock {
            frame: AtomicU64::new(0),
            first: AtomicU64::new(0),
            idle: AtomicU64::new(0),
            mark: AtomicU64::new(0),
        }
    }
}

/// What the driver reads of a worker at the end of frame `index`, in nanoseconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Span {
    /// From the frame's start to the worker's first job; `None` if it started none.
    pub(crate) wake_lag: Option<u64>,
    pub(crate) busy: u64,
    pub(crate) idle: u64,
}

impl WorkerClock {
    /// The worker's time in frame `index`, which started at clock time `start` and is
    /// measured up to `end`. Call at frame end, on the driving thread, after every job of the
    /// frame has completed (see the module docs for what that makes visible).
    ///
    /// A worker that started no job was idle for the whole span. One that did was waiting
    /// for it until its first job, then busy except for the gaps between its jobs and the time
    /// since it last ran out of work, if it has.
    pub(crate) fn span(&self, index: u64, start: u64, end: u64) -> Span {
        let end = end.max(start);
        let whole = end - start;
        if self.frame.load(Ordering::Acquire) != index + 1 {
            return Span {
                wake_lag: None,
                busy: 0,
                idle: whole,
            };
        }
        let first = self.first.load(Ordering::Acquire).clamp(start, end);
        let mark = self.mark.load(Ordering::Acquire);
        // Out of work since a time after `end` (the mark was read after the end was taken):
        // busy at the end, no trailing idle.
        let trailing = if mark & 1 == 0 {
            end.saturating_sub((mark >> 1).max(first))
        } else {
            0
        };
        let worked = end - first;
        let idle = (self.idle.load(Ordering::Acquire) + trailing).min(worked);
        Span {
            wake_lag: Some(first - start),
            busy: worked - idle,
            idle,
        }
    }
}

/// What a worker's loop keeps on its stack to publish its [`WorkerClock`]: the frame it is
/// busy in, the frame of its last job, and since when it has been out of work.
#[derive(Debug)]
pub(crate) struct Activity {
    /// The frame number (`Clock::frame`, at least 1 while a frame runs) while the worker is
    /// busy, 0 while it is out of work: [`Activity::working`]'s one compare.
    busy_in: u64,
    /// The frame number of its last job.
    frame: u64,
    /// Clock time at which it last ran out of work.
    idle_since: u64,
}

impl Activity {
    /// A worker that has not worked yet.
    pub(crate) fn new() -> Activity {
        Activity {
            busy_in: 0,
            frame: 0,
            idle_since: 0,
        }
    }

    /// The driving thread, busy from the start of the frame (clock time `start`, read by
    /// `run_frame` anyway, so no clock read here): it makes and polls the root future.
    ///
    /// # Safety
    /// 1. As for [`Activity::working`]; called after [`Clock::frame_begin`].
    pub(crate) unsafe fn driver(frames: &Clock, clock: &WorkerClock, start: u64) -> Activity {
        let frame = frames.frame.load(Ordering::Relaxed);
        clock.first.store(start, Ordering::Release);
        clock.idle.store(0, Ordering::Release);
        clock.frame.store(frame, Ordering::Release);
        clock.mark.store(start << 1 | 1, Ordering::Release);
        Activity {
            busy_in: frame,
            frame,
            idle_since: 0,
        }
    }

    /// The worker is about to run a job (for the driving thread: a job or the root future).
    /// Per job a load of the frame number and one compare, unless this is its first job of
    /// the frame or it had been out of work.
    ///
    /// # Safety
    /// 1. `clock` is the worker's own, and only this `Activity`, on the worker's own thread,
    ///    calls `working` and `out_of_work` with it.
    #[inline]
    pub(crate) unsafe fn working(&mut self, frames: &Clock, clock: &WorkerClock) {
        let frame = frames.frame.load(Ordering::Relaxed);
        if frame == self.busy_in {
            return;
        }
        // SAFETY: (1), passed on.
        unsafe { self.start_working(frames, clock, frame) };
    }

    /// # Safety
    /// 1. As for [`Activity::working`].
    #[inline(never)]
    unsafe fn start_working(&mut self, frames: &Clock, clock: &WorkerClock, frame: u64) {
        let now = frames.now();
        if frame != self.frame {
            // The first job of this frame (the worker may still be busy from the last one):
            // whatever came before is the wake lag.
            self.frame = frame;
            clock.first.store(now, Ordering::Release);
            clock.idle.store(0, Ordering::Release);
            clock.frame.store(frame, Ordering::Release);
        } else {
            // SAFETY: (1): only we write it.
            let idle = unsafe { load_own(&clock.idle) } + now.saturating_sub(self.idle_since);
            clock.idle.store(idle, Ordering::Release);
        }
        clock.mark.store(now << 1 | 1, Ordering::Release);
        self.busy_in = frame;
    }

    /// The worker looked for work and found none. Free if it was already out of work.
    ///
    /// # Safety
    /// 1. As for [`Activity::working`].
    #[inline]
    pub(crate) unsafe fn out_of_work(&mut self, frames: &Clock, clock: &WorkerClock) {
        if self.busy_in != 0 {
            self.busy_in = 0;
            self.idle_since = frames.now();
            clock.mark.store(self.idle_since << 1, Ordering::Release);
        }
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::Scale;

    #[test]
    fn scale_converts_exactly_at_whole_rates() {
        assert_eq!(Scale::new(1.0).ns(0), 0);
        assert_eq!(Scale::new(1.0).ns(123_456_789), 123_456_789);
        assert_eq!(Scale::new(1.0).ns(u64::MAX), u64::MAX);
        assert_eq!(Scale::new(0.5).ns(1001), 500);
        assert_eq!(Scale::new(0.25).ns(4_000_000), 1_000_000);
    }

    #[test]
    fn scale_agrees_with_floating_point_within_a_nanosecond() {
        // Rates of time-stamp counters from 0.5 to 5 GHz, and clock readings from a tick to
        // a day of ticks.
        for rate in [0.2, 0.3125, 0.357_142_857, 0.4166, 1.0 / 3.0, 1.7, 2.0] {
            let scale = Scale::new(rate);
            for units in [
                1u64,
                3,
                1_000,
                123_457,
                98_765_432_101,
                86_400_000_000_000 * 5,
            ] {
                let want = units as f64 * rate;
                let got = scale.ns(units) as f64;
                // The f64 product itself is off by up to 2^-53 of itself; the fixed point by
                // under units * 2^-32 (rounding of the rate) plus 1 (the truncation).
                let bound = 1.0 + units as f64 * 2f64.powi(-32) + want * 2f64.powi(-52);
                assert!(
                    (got - want).abs() <= bound,
                    "rate {rate}, {units} units: {got} ns, want {want} (bound {bound})"
                );
            }
        }
    }

    #[test]
    fn scale_saturates_instead_of_wrapping() {
        assert_eq!(Scale::new(3.0).ns(u64::MAX / 2), u64::MAX);
        assert_eq!(Scale::new(f64::NAN).ns(1_000), 0);
        assert_eq!(Scale::new(1e30).ns(1), u64::MAX >> 32);
    }
}
