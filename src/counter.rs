//! Counters: Naughty Dog's `WaitForCounter` as a future, living in the frame arena.
//!
//! A [`Counter`] is a `Copy` reference to a [`CounterInner`] in the arena of the thread that
//! created it: an atomic value, a one-byte lock, and an intrusive list of the futures waiting for
//! it to come down to a target (zero for `counter.await`, `n` for `counter.until(n)`). Each
//! waiting future carries its own list node, pinned inside it, so waiting allocates nothing and
//! any number of jobs may wait at once, each for its own target.

use core::future::{Future, IntoFuture};
use core::marker::PhantomPinned;
use core::panic::Location;
use core::pin::Pin;
use core::ptr::{self, NonNull};
use core::task::{Context, Poll};
use std::panic::{AssertUnwindSafe, catch_unwind, resume_unwind};

use crossbeam_utils::CachePadded;

use crate::sync::{AtomicBool, AtomicUsize, Ordering, UnsafeCell};
use crate::waker::Wake;
use crate::worker::Shared;

/// A count of outstanding work in the current frame, awaited until it reaches zero.
///
/// Made by [`Frame::counter`](crate::Frame::counter), starting at 0.
/// [`Frame::spawn_counted`](crate::Frame::spawn_counted) adds one before it queues the job and
/// takes it away when the job finishes (or panics); [`add`](Counter::add) and
/// [`done`](Counter::done) adjust it by hand. `counter.await` completes once the value is zero,
/// at once if it already is, for any number of awaiters; [`until(n)`](Counter::until) completes
/// once it is at most `n`. A waiter woken because the value reached its target completes even if
/// the value has gone up again by the time it runs. The value is at most `usize::MAX / 2`.
///
/// The counter lives in the frame arena: it is `Copy`, costs no `Arc`, and cannot leave its frame.
///
/// ```
/// # use frame_scheduler::Scheduler;
/// # use std::sync::atomic::{AtomicU32, Ordering};
/// let mut scheduler = Scheduler::builder().workers(2).build().unwrap();
/// let done = AtomicU32::new(0);
/// scheduler.run_frame(async |frame| {
///     let jobs = frame.counter();
///     for _ in 0..100 {
///         frame.spawn_counted(jobs, async { done.fetch_add(1, Ordering::Relaxed); });
///     }
///     jobs.await;
///     assert_eq!(done.load(Ordering::Relaxed), 100);
/// });
/// ```
#[derive(Clone, Copy)]
pub struct Counter<'frame> {
    pub(crate) inner: &'frame CounterInner,
}

impl core::fmt::Debug for Counter<'_> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("Counter")
            .field("value", &self.value())
            .finish()
    }
}

impl<'frame> Counter<'frame> {
    /// The current value. Other threads may change it at any moment.
    ///
    /// Workers take finished counted jobs off their counter in batches (one read-modify-write
    /// of the counter's shared line per batch instead of one per job). Read from a job, the
    /// value first takes off the jobs that the reading worker has finished, so a job that
    /// watches its own counter (`while c.value() > 1 { yield_now().await }`) sees its siblings
    /// finish. Jobs finished on other workers show once those workers report them, which they
    /// do before they poll the root, a job of another counter or a job polled before (one that
    /// yielded or was woken), when they run out of work, and every 64 jobs. Until then the
    /// value may be higher than the jobs still running: a job that *blocks its thread* (instead
    /// of awaiting) holds back its worker's report of the same counter's jobs it finished
    /// before. To wait for a counter, await it: awaiting is never held back.
    pub fn value(&self) -> usize {
        crate::harness::flush_pending_for(self.inner);
        value_of(self.inner.value.load(Ordering::Acquire))
    }

    /// Adds `n` units of outstanding work.
    ///
    /// # Panics
    /// If the value would go above `usize::MAX / 2`. The overflow is found before the value
    /// changes; the counter is then set to zero and its awaiters are released, as for a surplus
    /// [`done`](Counter::done), so that the frame can finish and `run_frame` can report the
    /// panic instead of hanging on a count that will never come down.
    pub fn add(&self, n: usize) {
        let mut w = self.inner.value.load(Ordering::Relaxed);
        loop {
            let v = value_of(w);
            let Some(new) = v.checked_add(n).filter(|&new| new <= MAX_VALUE) else {
                self.inner.release_all();
                panic!(
                    "Counter::add({n}) overflowed the counter, whose value was {v}: a count of \
                     outstanding work above usize::MAX / 2 is a bug; the counter was set to zero \
                     and its awaiters released"
                );
            };
            // Going up never releases a waiter: no lock, whatever waits.
            match self.inner.value.compare_exchange_weak(
                w,
                new << 1 | (w & TARGETS),
                Ordering::AcqRel,
                Ordering::Relaxed,
            ) {
                Ok(_) => return,
                Err(actual) => w = actual,
            }
        }
    }

    /// Marks one unit of work done, waking every awaiter if the value reaches zero.
    ///
    /// # Panics
    /// If the value is already zero: every `done()` must match an earlier `add(1)`. Workers take
    /// finished counted jobs off their counter in batches, so a surplus `done()` made while such
    /// a batch is pending is found when the batch is: the counter is then set to zero, its
    /// awaiters are woken, and `run_frame` panics with the same message once the frame is over.
    pub fn done(&self) {
        if let Err(msg) = self.inner.decrement() {
            panic!("{msg}");
        }
    }

    /// Waits until the value is at most `n`: Naughty Dog's `WaitForCounter(counter, n)`.
    ///
    /// The future completes at once if the value is at most `n` when it is first polled;
    /// otherwise once the value has come down to `n` or below after that, even if it has gone
    /// up again (through [`add`](Counter::add) or
    /// [`spawn_counted`](crate::Frame::spawn_counted)) by the time the waiter runs, and never
    /// because of a value reached before it began to wait. `counter.until(0)` is
    /// `counter.await`. Any number of waiters may wait at once, each for its own target, and
    /// waiting allocates nothing: the future holds its own place in the counter's list.
    ///
    /// While some waiter waits for a target above zero, every decrement of the counter takes
    /// its lock, and workers report finished counted jobs of the counter one by one instead of
    /// in batches, so that no waiter is kept waiting behind a batch formed while it waits. A
    /// batch formed *before* the waiter began (up to 64 finished jobs of this counter) is
    /// reported when its worker next finishes or yields a poll: if that worker is inside a
    /// long job of the same counter, the waiter sees those completions only when the job
    /// returns, as [`value`](Counter::value) does. So do not block a job's thread until an
    /// `until` waiter of its own counter is released; await instead.
    ///
    /// ```
    /// # use frame_scheduler::Scheduler;
    /// # use std::sync::atomic::{AtomicU32, Ordering};
    /// let mut scheduler = Scheduler::builder().workers(2).build().unwrap();
    /// let done = AtomicU32::new(0);
    /// scheduler.run_frame(async |frame| {
    ///     let loads = frame.counter();
    ///     for _ in 0..10 {
    ///         frame.spawn_counted(loads, async { done.fetch_add(1, Ordering::SeqCst); });
    ///     }
    ///     // Go on once at most 3 loads are outstanding.
    ///     loads.until(3).await;
    ///     assert!(done.load(Ordering::SeqCst) >= 7);
    ///     loads.await;
    ///     assert_eq!(done.load(Ordering::SeqCst), 10);
    /// });
    /// ```
    pub fn until(self, n: usize) -> CounterWait<'frame> {
        CounterWait {
            counter: self.inner,
            target: n,
            node: UnsafeCell::new(Waiter {
                prev: ptr::null_mut(),
                next: ptr::null_mut(),
                waker: None,
                queued: false,
                notified: false,
                epoch: 0,
                target: n,
            }),
            registered: false,
            registered_ready: false,
            _pin: PhantomPinned,
        }
    }
}

impl<'frame> IntoFuture for Counter<'frame> {
    type Output = ();
    type IntoFuture = CounterWait<'frame>;

    /// `counter.await` is [`counter.until(0)`](Counter::until).
    fn into_future(self) -> CounterWait<'frame> {
        self.until(0)
    }
}

pub(crate) const UNDERFLOW: &str = "Counter::done() called on a counter that is already 0: \
     every done() must match an earlier add(1), and jobs spawned with spawn_counted call it \
     themselves when they finish";

/// The counter's value word holds the value shifted left by one; its low bit is this flag, set
/// while some waiter waits for a target above zero (invariant 5). A decrement made without the
/// lock compares and swaps the whole word, flag included, so it fails if a waiter with a target
/// has registered since it looked, and then takes the lock.
const TARGETS: usize = 1;

/// The largest value a counter holds (one bit of the word is [`TARGETS`]).
const MAX_VALUE: usize = usize::MAX >> 1;

/// The value in a value word.
#[inline]
fn value_of(word: usize) -> usize {
    word >> 1
}

/// The counter itself, in the frame arena.
///
/// # When a waiter is released
/// A waiter for target `t` completes at once if the value is at most `t` when it looks;
/// otherwise it is released by the first value at most `t` reached *after* it registered, even
/// if the value has gone up again by the time it runs, and never by an earlier one. To tell the
/// two apart, every change of the value that can release a waiter is made under the lock and
/// bumps `epoch`: a decrement to zero always, and any decrement while [`TARGETS`] is set. A
/// waiter records the epoch it registered in, and the change's `notify` releases only the
/// waiters of earlier epochs whose target is at least the new value, however many batches it
/// takes and whatever registers in between. A decrement made without the lock (the value stays
/// above zero and no waiter has a target above zero) releases nobody, and increments never do.
///
/// # Invariants
/// 1. `waiters`, `epoch`, `targets` and every node on the list are touched only while `locked`
///    is held.
/// 2. Every node on the list belongs to a live, pinned `CounterWait`; a `CounterWait` takes its
///    node off the list (under the lock) before it is dropped.
/// 3. Nothing here needs dropping: the arena's memory is simply reused at frame end. The list
///    is empty then, unless a waiting future was leaked (e.g. `Box::leak`): its node stays
///    valid, and is never touched again since the counter is gone with its frame.
/// 4. A change of the value that can release a waiter (see above) is made only while `locked`
///    is held, and bumps `epoch` before the lock is released.
/// 5. [`TARGETS`] is set and cleared only while `locked` is held; whenever the lock is free it
///    is set exactly when `targets` (the number of nodes on the list whose target is above
///    zero) is not zero. A waiter sets it before it checks the value for the last time before
///    going on the list, in the same critical section.
pub(crate) struct CounterInner {
    /// The value and [`TARGETS`] (see [`value_of`]).
    value: AtomicUsize,
    locked: AtomicBool,
    waiters: UnsafeCell<*mut Waiter>,
    /// How many changes of the value made under the lock (invariant 4).
    epoch: UnsafeCell<usize>,
    /// Nodes on the list with a target above zero (invariant 5).
    targets: UnsafeCell<usize>,
    pub(crate) shared: *const Shared,
    /// Where the counter was made (`Frame::counter` is `#[track_caller]`): for traces and stall
    /// reports. Written once, before the counter is handed out.
    pub(crate) location: &'static Location<'static>,
    /// A copy of [`TARGETS`] on a line of its own, written only when the flag changes (under
    /// the lock), for workers to read before every counted job without pulling in the line
    /// that every spawn and decrement of this counter writes. A stale read only delays a batch
    /// (as a batch formed before the waiter would be), never loses a wakeup: releasing goes by
    /// the flag in `value`.
    targets_hint: CachePadded<AtomicBool>,
}

// SAFETY: `value` and `locked` are atomic; the rest is guarded by `locked` (invariant 1).
unsafe impl Sync for CounterInner {}
// SAFETY: as above; no thread-bound data.
unsafe impl Send for CounterInner {}

struct Waiter {
    prev: *mut Waiter,
    next: *mut Waiter,
    waker: Option<Wake>,
    queued: bool,
    notified: bool,
    /// The counter's epoch when this node was put on the list.
    epoch: usize,
    /// The value at or below which this waiter is released.
    target: usize,
}

/// How many wakers `notify` gathers before it unlocks to wake them.
const WAKE_BATCH: usize = 16;

impl CounterInner {
    /// A counter at 0 of the scheduler `shared`, made where the caller was called from.
    #[track_caller]
    pub(crate) fn new(shared: *const Shared) -> CounterInner {
        CounterInner {
            value: AtomicUsize::new(0),
            locked: AtomicBool::new(false),
            waiters: UnsafeCell::new(ptr::null_mut()),
            epoch: UnsafeCell::new(0),
            targets: UnsafeCell::new(0),
            shared,
            location: Location::caller(),
            targets_hint: CachePadded::new(AtomicBool::new(false)),
        }
    }

    /// The value now, without taking off any worker's batch of finished jobs (for the stall
    /// watchdog, which is no worker).
    pub(crate) fn value_now(&self) -> usize {
        value_of(self.value.load(Ordering::Acquire))
    }

    /// Whether some waiter waits for a target above zero: workers then report this counter's
    /// finished jobs at once instead of batching them (see `harness::run_job`).
    #[inline]
    pub(crate) fn has_targets(&self) -> bool {
        self.targets_hint.load(Ordering::Relaxed)
    }

    /// Adds one for a job about to be queued.
    ///
    /// # Panics
    /// If the value was already `usize::MAX / 2`: the counter is then set to zero and its
    /// waiters released (as `Counter::add` does on overflow), and the job is not spawned.
    #[inline]
    pub(crate) fn increment(&self) {
        // The value sits above the flag bit: an overflow wraps it to zero and leaves the flag.
        if value_of(self.value.fetch_add(2, Ordering::Relaxed)) == MAX_VALUE {
            self.increment_overflowed();
        }
    }

    #[cold]
    #[inline(never)]
    fn increment_overflowed(&self) -> ! {
        self.release_all();
        panic!(
            "Frame::spawn_counted overflowed its counter, which was at usize::MAX / 2: a count \
             of outstanding work this large is a bug; the counter was set to zero and its \
             awaiters released"
        );
    }

    /// Takes one away; wakes the waiters it releases. `Err` if it was already zero.
    pub(crate) fn decrement(&self) -> Result<(), &'static str> {
        self.decrement_by(1)
    }

    /// Takes `n` away at once (a worker's batch of finished counted jobs); wakes the waiters it
    /// releases. If the value is below `n` (a stray `done()` took some of it), the counter is
    /// set to zero, its waiters are woken, and `Err` says so: the frame reports the misuse as a
    /// panic instead of hanging on a counter that can never reach zero.
    pub(crate) fn decrement_by(&self, n: usize) -> Result<(), &'static str> {
        let mut w = self.value.load(Ordering::Relaxed);
        // Without the lock while the value stays above zero and no waiter has a target above
        // zero: such a change releases nobody. The swap fails if a waiter with a target has set
        // the flag since we looked (invariant 5).
        while w & TARGETS == 0 && value_of(w) > n {
            // `n < value_of(w)`, so `n << 1` cannot overflow.
            match self.value.compare_exchange_weak(
                w,
                w - (n << 1),
                Ordering::AcqRel,
                Ordering::Relaxed,
            ) {
                Ok(_) => return Ok(()),
                Err(actual) => w = actual,
            }
        }
        // This may release waiters: only under the lock, bumping the epoch, so that waiters
        // registering from now on are not released by it (invariant 4).
        let (epoch, new, underflow) = {
            let _guard = self.lock();
            // Increments, and (while the flag is clear) other decrements, still change the
            // value without the lock.
            let mut w = self.value.load(Ordering::Relaxed);
            loop {
                let v = value_of(w);
                let new = v.saturating_sub(n);
                match self.value.compare_exchange_weak(
                    w,
                    new << 1 | (w & TARGETS),
                    Ordering::AcqRel,
                    Ordering::Relaxed,
                ) {
                    // SAFETY: we hold the lock and just changed the value under it.
                    Ok(_) => break (unsafe { self.bump_epoch() }, new, v < n),
                    Err(actual) => w = actual,
                }
            }
        };
        if new == 0 {
            self.trace_zero();
        }
        self.notify(epoch, new);
        if underflow { Err(UNDERFLOW) } else { Ok(()) }
    }

    /// Records that the counter reached zero, when a trace is recording.
    fn trace_zero(&self) {
        // SAFETY: a counter lives in a frame of its scheduler, which outlives the frame.
        let shared = unsafe { &*self.shared };
        if shared.tracer.is_on() {
            let by = crate::context::current().worker_of(shared);
            // SAFETY: `by` is `Some(i)` only when this thread is worker `i` of the scheduler.
            unsafe { shared.tracer.counter_zero(by, self, Some(self.location)) };
        }
    }

    /// Misuse: sets the value to zero and releases every waiter, so that nothing hangs on a
    /// counter whose count can no longer be trusted. A waker's panic is swallowed: the caller
    /// panics with the message that says what went wrong.
    fn release_all(&self) {
        let epoch = {
            let _guard = self.lock();
            // Keeps the flag (invariant 5: it follows the list, which `notify` empties).
            self.value.fetch_and(TARGETS, Ordering::AcqRel);
            // SAFETY: we hold the lock and just changed the value under it.
            unsafe { self.bump_epoch() }
        };
        if let Err(payload) = catch_unwind(AssertUnwindSafe(|| self.notify(epoch, 0))) {
            crate::unwind::drop_quietly(payload);
        }
    }

    /// Counts a change of the value that may release waiters (invariant 4) and returns its
    /// epoch.
    ///
    /// # Safety
    /// 1. The lock is held, and the value has just been changed under it.
    unsafe fn bump_epoch(&self) -> usize {
        // SAFETY: (1): `epoch` is guarded by the lock (invariant 1).
        self.epoch.with_mut(|e| unsafe {
            *e = (*e).wrapping_add(1);
            *e
        })
    }

    fn lock(&self) -> CounterGuard<'_> {
        let mut spins = 0;
        while self
            .locked
            .compare_exchange_weak(false, true, Ordering::Acquire, Ordering::Relaxed)
            .is_err()
        {
            crate::sync::backoff(&mut spins);
        }
        CounterGuard(self)
    }

    /// Wakes every waiter that registered before the change of `epoch`, which took the value to
    /// `value`, and whose target is at least `value`; in batches, so that no waker runs under
    /// the lock. Waiters that register meanwhile (the value may go up again and come down again
    /// while we wake) belong to later epochs and are left on the list.
    fn notify(&self, epoch: usize, value: usize) {
        let mut first_panic = None;
        loop {
            let mut wakers: [Option<Wake>; WAKE_BATCH] = Default::default();
            let mut n = 0;
            {
                let _guard = self.lock();
                // SAFETY: we hold the lock (invariant 1); nodes are live (invariant 2).
                unsafe {
                    let mut cur = self.waiters.with(|head| *head);
                    while n < WAKE_BATCH && !cur.is_null() {
                        let node = cur;
                        cur = (*node).next;
                        // Epochs wrap; a node is older when it is behind `epoch` by less than
                        // half the range (no frame changes a counter 2^63 times).
                        if epoch.wrapping_sub((*node).epoch) as isize <= 0 || (*node).target < value
                        {
                            continue;
                        }
                        self.unlink(node);
                        (*node).notified = true;
                        wakers[n] = (*node).waker.take();
                        n += 1;
                    }
                }
            }
            // A waker may panic (user code): wake every other waiter anyway, then pass the
            // first panic on, so that no waiter is left asleep on a counter at its target.
            for waker in wakers.iter_mut().take(n) {
                if let Some(w) = waker.take() {
                    if let Err(p) = catch_unwind(AssertUnwindSafe(|| w.wake())) {
                        first_panic.get_or_insert(p);
                    }
                }
            }
            if n < WAKE_BATCH {
                if let Some(p) = first_panic {
                    resume_unwind(p);
                }
                return;
            }
        }
    }
}

struct CounterGuard<'a>(&'a CounterInner);

impl Drop for CounterGuard<'_> {
    fn drop(&mut self) {
        self.0.locked.store(false, Ordering::Release);
    }
}

/// The future of `counter.await` and [`counter.until(n)`](Counter::until): completes once the
/// counter is at most its target (zero for `counter.await`).
///
/// Dropping it before it completes just stops waiting.
pub struct CounterWait<'frame> {
    counter: &'frame CounterInner,
    /// The node's target, readable without the lock (it never changes).
    target: usize,
    node: UnsafeCell<Waiter>,
    /// Whether the node was ever put on the list. Only the owner of the future touches this,
    /// so it can be read without the lock: a node never registered is known to nobody else.
    registered: bool,
    /// Set by `register_locked` when the wait is over.
    registered_ready: bool,
    _pin: PhantomPinned,
}

// SAFETY: the node is only touched under the counter's lock (invariant 1), or by the owner of
// the future when it is not on the list.
unsafe impl Send for CounterWait<'_> {}
// SAFETY: `&CounterWait` gives no access to the node.
unsafe impl Sync for CounterWait<'_> {}

impl core::fmt::Debug for CounterWait<'_> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("CounterWait")
            .field(
                "value",
                &value_of(self.counter.value.load(Ordering::Relaxed)),
            )
            .field("target", &self.target)
            .finish_non_exhaustive()
    }
}

impl Future for CounterWait<'_> {
    type Output = ();

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        // SAFETY: we never move out of `self`; the node stays where it is pinned.
        let this = unsafe { self.get_unchecked_mut() };
        let counter = this.counter;
        // Fast path: at the target and never registered needs no lock.
        if !this.registered && value_of(counter.value.load(Ordering::Acquire)) <= this.target {
            return Poll::Ready(());
        }
        // Clone before locking, drop the old waker after unlocking: a foreign waker's clone
        // and drop are user code and must not run under the counter's lock.
        let mut new = Some(Wake::new(cx.waker(), counter.shared));
        let _old = {
            let _guard = counter.lock();
            // SAFETY: under the lock (invariant 1); the node is pinned in `self` (invariant 2).
            unsafe { this.register_locked(&mut new) }
        };
        if this.registered_ready {
            this.registered_ready = false;
            return Poll::Ready(());
        }
        // SAFETY: a counter lives in a frame of its scheduler, which outlives the frame.
        let shared = unsafe { &*counter.shared };
        if shared.tracer.is_on() {
            let by = crate::context::current().worker_of(shared);
            // SAFETY: `by` is `Some(i)` only when this thread is worker `i` of the scheduler.
            unsafe {
                shared
                    .tracer
                    .counter_awaited(by, counter, Some(counter.location))
            };
        }
        if let Some(stall) = shared.stall.as_deref() {
            stall.note_counter_wait(shared, counter, this.target);
        }
        Poll::Pending
    }
}

impl CounterWait<'_> {
    /// The locked part of `poll`: completes, or puts the node on the list with `new` as its
    /// waker. Returns the waker it replaced, to be dropped after unlocking.
    ///
    /// # Safety
    /// 1. The counter's lock is held.
    /// 2. `self` is pinned (the node must not move once on the list).
    unsafe fn register_locked(&mut self, new: &mut Option<Wake>) -> Option<Wake> {
        let counter = self.counter;
        let target = self.target;
        let node: *mut Waiter = self.node.with_mut(|n| n);
        // SAFETY: (1), (2); neighbours on the list are live (invariant 2); `targets` is ours
        // under the lock (invariant 1).
        unsafe {
            let n = &mut *node;
            let mut w = counter.value.load(Ordering::Acquire);
            let set_flag =
                !n.notified && !n.queued && target > 0 && w & TARGETS == 0 && value_of(w) > target;
            if set_flag {
                // From here on every decrement takes the lock, and so waits for us to be on the
                // list; a decrement made without it before this point shows in the value read
                // by this very swap (invariant 5).
                w = counter.value.fetch_or(TARGETS, Ordering::AcqRel);
                counter.targets_hint.store(true, Ordering::Relaxed);
            }
            if n.notified || value_of(w) <= target {
                if n.queued {
                    counter.unlink(node);
                } else if set_flag && counter.targets.with(|t| *t) == 0 {
                    counter.value.fetch_and(!TARGETS, Ordering::AcqRel);
                    counter.targets_hint.store(false, Ordering::Relaxed);
                }
                self.registered_ready = true;
                return n.waker.take();
            }
            let old = core::mem::replace(&mut n.waker, new.take());
            if !n.queued {
                n.epoch = counter.epoch.with(|e| *e);
                counter.waiters.with_mut(|head| {
                    n.next = *head;
                    n.prev = ptr::null_mut();
                    if !(*head).is_null() {
                        (**head).prev = node;
                    }
                    *head = node;
                });
                if target > 0 {
                    counter.targets.with_mut(|t| *t += 1);
                }
                n.queued = true;
                self.registered = true;
            }
            old
        }
    }
}

impl CounterInner {
    /// Takes a node off the list; clears [`TARGETS`] when the last node with a target above
    /// zero leaves (invariant 5).
    ///
    /// # Safety
    /// 1. The lock is held and `node` is on the list.
    unsafe fn unlink(&self, node: *mut Waiter) {
        // SAFETY: (1); neighbours are live list nodes (invariant 2); `targets` is ours under
        // the lock (invariant 1).
        unsafe {
            let n = &mut *node;
            if n.prev.is_null() {
                self.waiters.with_mut(|head| *head = n.next);
            } else {
                (*n.prev).next = n.next;
            }
            if !n.next.is_null() {
                (*n.next).prev = n.prev;
            }
            n.queued = false;
            n.prev = ptr::null_mut();
            n.next = ptr::null_mut();
            if n.target > 0 {
                let left = self.targets.with_mut(|t| {
                    *t -= 1;
                    *t
                });
                if left == 0 {
                    self.value.fetch_and(!TARGETS, Ordering::AcqRel);
                    self.targets_hint.store(false, Ordering::Relaxed);
                }
            }
        }
    }
}

impl Drop for CounterWait<'_> {
    fn drop(&mut self) {
        if !self.registered {
            return;
        }
        let node: *mut Waiter = self.node.with_mut(|n| n);
        let _guard = self.counter.lock();
        // SAFETY: under the lock; re-check, a notifier may have taken us off meanwhile.
        unsafe {
            if (*node).queued {
                self.counter.unlink(node);
            }
        }
    }
}

/// A pointer to a counter, as stored in a job header.
pub(crate) fn counter_ptr(c: Counter<'_>) -> NonNull<CounterInner> {
    NonNull::from(c.inner)
}
