//! Data-parallel loops: [`Frame::parallel_for`], [`Frame::for_each_chunk`], [`Frame::map`],
//! and [`Frame::spawn_batch`].
//!
//! A loop starts as one job covering its whole range. A job of a loop (a *piece*) splits its
//! range in two, queues the right half as a new piece and keeps the left, for as long as its
//! split budget lasts and both halves stay at least `min_len` long; then it calls the body once
//! on what is left. The budget starts at the worker count and halves at each split, so a loop
//! nobody steals from ends in about twice as many pieces as there are workers. A piece that runs
//! on another worker than the one that queued it was stolen: some worker was idle, so its budget
//! goes back up to the worker count and it splits again. This is rayon's adaptive splitter:
//! a loop pays for a few cross-core transfers per idle worker, not one per item.
//!
//! Pieces are ordinary jobs of the frame, in the arena of the worker that splits them: a loop
//! allocates nothing on the heap.
//!
//! # Choosing `min_len`
//! `min_len` is a floor, not a chunk size: no body call gets fewer than `min_len` items (unless
//! the whole range is shorter), and the splitter decides how many more. A piece costs a job
//! (well under a microsecond), and a stolen piece also moves its job and its first items across
//! cores (a microsecond or so), so make a piece of `min_len` items take a few microseconds:
//!
//! | work per item | `min_len` |
//! |---------------|-----------|
//! | ~5 ns (add a vector to a position) | 512–1024 |
//! | ~100 ns (a small matrix palette, a bounds test with a branch) | 32–64 |
//! | ~1 µs and up (skin a character, path a unit) | 1–4 |
//!
//! Too small costs little: pieces split only while workers are idle. Too large costs balance: a
//! loop of `len` items keeps at most `len / min_len` workers busy. `0` means `1`.
//!
//! # When the compiler says …
//! The errors new users of a frame meet first, each with the failing program and the fixed one.
//!
//! ## E0499 on a second pass over the same data
//! A job's borrow lasts the whole frame: once `positions` is lent to a job, the frame cannot
//! lend it again, even after the job is done.
//! ```compile_fail,E0499
//! # let mut scheduler = frame_scheduler::Scheduler::builder().workers(2).build().unwrap();
//! let mut positions = vec![0.0f32; 1000];
//! scheduler.run_frame(async |frame| {
//!     let pass = frame.counter();
//!     frame.spawn_counted(pass, async { positions.iter_mut().for_each(|p| *p += 1.0) });
//!     pass.await;
//!     frame.spawn_counted(pass, async { positions.iter_mut().for_each(|p| *p *= 2.0) });
//!     pass.await;
//! });
//! ```
//! A loop over a slice hands the slice back when it is done; pass that to the next stage:
//! ```
//! # let mut scheduler = frame_scheduler::Scheduler::builder().workers(2).build().unwrap();
//! let mut positions = vec![0.0f32; 1000];
//! scheduler.run_frame(async |frame| {
//!     let positions = frame.for_each_chunk(&mut positions, 256, |_, p| {
//!         p.iter_mut().for_each(|p| *p += 1.0)
//!     }).await;
//!     frame.for_each_chunk(positions, 256, |_, p| p.iter_mut().for_each(|p| *p *= 2.0)).await;
//! });
//! assert!(positions.iter().all(|&p| p == 2.0));
//! ```
//!
//! ## E0597 on data built inside the frame and lent to jobs
//! Jobs may borrow only what outlives the frame; a local of the root future does not. (Without
//! the `move`, the same mistake reads E0373, "closure may outlive the current function".)
//! ```compile_fail,E0597
//! # let mut scheduler = frame_scheduler::Scheduler::builder().workers(2).build().unwrap();
//! scheduler.run_frame(async |frame| {
//!     let weights: Vec<f32> = (0..100).map(|i| i as f32).collect();
//!     let weights = &weights;
//!     frame.parallel_for(0..100, 16, move |r| { let _ = &weights[r]; }).await;
//! });
//! ```
//! Build it in the frame arena, which lives as long as the frame (or with [`Frame::map`]):
//! ```
//! # let mut scheduler = frame_scheduler::Scheduler::builder().workers(2).build().unwrap();
//! scheduler.run_frame(async |frame| {
//!     let weights: &[f32] = frame.alloc_slice_fill_with(100, |i| i as f32);
//!     frame.parallel_for(0..100, 16, move |r| { let _ = &weights[r]; }).await;
//! });
//! ```
//! Or build it before `run_frame` (and keep the `Vec` from frame to frame, so that its memory
//! is reused):
//! ```
//! # let mut scheduler = frame_scheduler::Scheduler::builder().workers(2).build().unwrap();
//! let mut weights: Vec<f32> = Vec::new();
//! weights.extend((0..100).map(|i| i as f32));
//! scheduler.run_frame(async |frame| {
//!     let weights = &weights;
//!     frame.parallel_for(0..100, 16, move |r| { let _ = &weights[r]; }).await;
//! });
//! ```
//!
//! ## E0282 when `run_frame` is given a plain closure
//! `run_frame` takes an `async` closure, `async |frame| …`; a closure returning an `async`
//! block leaves the type of `frame` to infer, and the compiler cannot.
//! ```compile_fail,E0282
//! # let mut scheduler = frame_scheduler::Scheduler::builder().workers(2).build().unwrap();
//! scheduler.run_frame(|frame| async move { frame.spawn(async { 1 }).await });
//! ```
//! ```
//! # let mut scheduler = frame_scheduler::Scheduler::builder().workers(2).build().unwrap();
//! let one = scheduler.run_frame(async |frame| frame.spawn(async { 1 }).await);
//! assert_eq!(one, 1);
//! ```
//!
//! ## E0521, E0621 or "lifetime may not live long enough" in a helper that takes `&Frame`
//! With elided lifetimes the helper promises nothing about how long `frame` and the data live,
//! but a job needs both for the whole frame. Today's compiler says "lifetime may not live long
//! enough" (no code); with the frame's lifetime named but not the data's, E0621; with
//! `&'static Frame<'static, 'static>`, E0521 ("borrowed data escapes outside of function").
//! The fix is the same.
//! ```compile_fail
//! use frame_scheduler::Frame;
//! struct Body { v: f32 }
//! fn spawn_physics(frame: &Frame, bodies: &mut [Body]) {
//!     let c = frame.counter();
//!     frame.spawn_counted(c, async move { bodies.iter_mut().for_each(|b| b.v += 1.0) });
//! }
//! ```
//! ```compile_fail,E0621
//! use frame_scheduler::Frame;
//! struct Body { v: f32 }
//! fn spawn_physics<'f, 'e>(frame: &'f Frame<'f, 'e>, bodies: &mut [Body]) {
//!     let c = frame.counter();
//!     frame.spawn_counted(c, async move { bodies.iter_mut().for_each(|b| b.v += 1.0) });
//! }
//! ```
//! Name the frame's lifetime and tie the data to it (`'f` is the frame, `'e` what it borrows):
//! ```
//! use frame_scheduler::{ChunksJob, Counter, Frame};
//! struct Body { v: f32 }
//! fn spawn_physics<'f, 'e>(frame: &'f Frame<'f, 'e>, bodies: &'f mut [Body]) -> Counter<'f> {
//!     let c = frame.counter();
//!     frame.spawn_counted(c, async move { bodies.iter_mut().for_each(|b| b.v += 1.0) });
//!     c
//! }
//! // The same with a loop, handing the slice back to the caller:
//! fn integrate<'f, 'e>(frame: &'f Frame<'f, 'e>, bodies: &'f mut [Body]) -> ChunksJob<'f, Body> {
//!     frame.for_each_chunk(bodies, 256, |_, b| b.iter_mut().for_each(|b| b.v += 1.0))
//! }
//! # let mut scheduler = frame_scheduler::Scheduler::builder().workers(2).build().unwrap();
//! let mut bodies: Vec<Body> = (0..1000).map(|_| Body { v: 0.0 }).collect();
//! let (left, right) = bodies.split_at_mut(500);
//! scheduler.run_frame(async |frame| {
//!     spawn_physics(frame, left).await;
//!     integrate(frame, right).await;
//! });
//! assert!(bodies.iter().all(|b| b.v == 1.0));
//! ```

use core::future::{Future, IntoFuture};
use core::marker::PhantomData;
use core::mem;
use core::mem::ManuallyDrop;
use core::ops::Range;
use core::panic::Location;
use core::pin::Pin;
use core::ptr::{self, NonNull};
use core::task::{Context, Poll};
use std::panic::{AssertUnwindSafe, catch_unwind};

use crate::context::{self, Current};
use crate::counter::{Counter, CounterInner, CounterWait, counter_ptr};
use crate::frame::Frame;
use crate::job::header::Label;
use crate::job::state::{DETACHED, SCHEDULED};
use crate::job::{Header, Job, JobKind, JobRef};
use crate::priority::Priority;
use crate::profile::{self, Traced};
use crate::sync::{AtomicBool, AtomicUsize, Ordering};
use crate::worker::Counts;

/// `Piece::origin` of a piece queued by a thread that is not one of the frame's workers.
const FOREIGN: usize = usize::MAX;

/// The work of one loop, called on disjoint sub-ranges of it.
trait Body: Sync {
    /// Does the loop's work on `range` (a sub-range of the loop's, never empty).
    fn run(&self, range: Range<usize>);
}

/// [`Frame::parallel_for`]'s body.
struct ForBody<F>(F);

impl<F: Fn(Range<usize>) + Sync> Body for ForBody<F> {
    fn run(&self, range: Range<usize>) {
        (self.0)(range)
    }
}

/// [`Frame::for_each_chunk`]'s body: the slice, as a pointer, and the user's closure.
struct ChunkBody<T, F> {
    items: NonNull<T>,
    f: F,
}

// SAFETY: the pieces of a loop call `run` from any worker, each on its own range, and each call
// makes a `&mut [T]` of that range alone (disjoint: `Loop` invariant 1): that is sending `&mut`
// to other threads, sound for `T: Send`; `f` is shared, so it must be `Sync`.
unsafe impl<T: Send, F: Sync> Sync for ChunkBody<T, F> {}
// SAFETY: the body is dropped on whichever worker finishes last; dropping it touches only `f`.
unsafe impl<T: Send, F: Send> Send for ChunkBody<T, F> {}

impl<T: Send, F: Fn(usize, &mut [T]) + Sync> Body for ChunkBody<T, F> {
    fn run(&self, range: Range<usize>) {
        // SAFETY: `items` is the start of a slice borrowed mutably for `'frame`, and `range` is
        // within it and disjoint from every other call's (`Loop` invariant 1); the slice is
        // handed back only once every call has returned (`Loop` invariant 2).
        let chunk = unsafe {
            core::slice::from_raw_parts_mut(self.items.as_ptr().add(range.start), range.len())
        };
        (self.f)(range.start, chunk)
    }
}

/// [`Frame::map`]'s body: where to read, where to write, and the user's function.
struct MapBody<'frame, 'env, T, U, F> {
    frame: &'frame Frame<'frame, 'env>,
    src: NonNull<T>,
    dst: NonNull<U>,
    f: F,
}

// SAFETY: the pieces call `run` from any worker: each reads `&T`s of its range (shared reads
// from many threads, sound for `T: Sync`), and writes the `U`s of its range alone (disjoint:
// `Loop` invariant 1), which are later used, and dropped, on other threads (`U: Send`); `f`
// is shared (`F: Sync`).
unsafe impl<T: Sync, U: Send, F: Sync> Sync for MapBody<'_, '_, T, U, F> {}
// SAFETY: the body is dropped on whichever worker finishes last; dropping it touches only `f`.
unsafe impl<T, U, F: Send> Send for MapBody<'_, '_, T, U, F> {}

impl<'env, T: Sync, U: Send + 'env, F: Fn(&T) -> U + Sync> Body for MapBody<'_, 'env, T, U, F> {
    fn run(&self, range: Range<usize>) {
        let len = range.len();
        // SAFETY: `src` is the start of a slice borrowed for `'frame`, and `range` is within it.
        let src = unsafe {
            core::slice::from_raw_parts(self.src.as_ptr().add(range.start).cast_const(), len)
        };
        // SAFETY: `dst` is frame memory for as many `U`s as `src` has `T`s, and `range` is
        // within it and disjoint from every other call's (`Loop` invariant 1).
        let dst = unsafe { self.dst.as_ptr().add(range.start) };
        let mut written = 0;
        let made = catch_unwind(AssertUnwindSafe(|| {
            for (k, item) in src.iter().enumerate() {
                let value = (self.f)(item);
                // SAFETY: `k < len`: room for it in this call's part of `dst`.
                unsafe { dst.add(k).write(value) };
                written = k + 1;
            }
        }));
        if let Err(payload) = made {
            // The values made so far are dropped now: nobody will see this part of the
            // output (`MapJob` panics instead). A panic in their drop is swallowed: the
            // frame already has one to report.
            let prefix = ptr::slice_from_raw_parts_mut(dst, written);
            let dropped = catch_unwind(AssertUnwindSafe(|| {
                // SAFETY: the first `written` values of this call's part were written, and
                // are nobody else's.
                unsafe { ptr::drop_in_place(prefix) }
            }));
            if let Err(second) = dropped {
                crate::unwind::drop_quietly(second);
            }
            std::panic::resume_unwind(payload);
        }
        // SAFETY: `dst` is not null (it points into `self.dst`'s allocation).
        let dst = unsafe { NonNull::new_unchecked(dst) };
        // SAFETY: (1) `len` values written into this frame's memory, which the `MapJob` hands
        // out for the frame only, and which nobody else drops; (2) `U: Send + 'env`.
        unsafe {
            self.frame
                .drop_at_frame_end(NonNull::slice_from_raw_parts(dst, len))
        };
    }
}

/// One loop's shared state, in the arena of the thread that started it.
///
/// # Invariants
/// 1. The pieces' ranges are disjoint and cover the loop's range exactly once: the first piece
///    covers all of it, and a piece only ever gives away the right half of its own range.
/// 2. Each piece takes its length off `counter` exactly once, after its body call has returned
///    (or panicked) and after it is done with `body`; it touches nothing of the loop after.
/// 3. When `B` needs dropping, `left` counts the items whose piece has not finished, and the
///    piece that takes it to zero drops `body` (before its own `counter` update, 2).
struct Loop<'frame, 'env, B> {
    frame: &'frame Frame<'frame, 'env>,
    counter: &'frame CounterInner,
    body: ManuallyDrop<B>,
    /// At least 1.
    min_len: usize,
    left: AtomicUsize,
    /// Set when a body call panicked (before that piece's `counter` update).
    panicked: AtomicBool,
    /// Where the loop was started: what its pieces are called in a trace.
    location: &'static Location<'static>,
}

/// One piece of a loop: a job that splits its range, then runs the body on what it kept.
struct Piece<'frame, 'env, B> {
    lp: &'frame Loop<'frame, 'env, B>,
    range: Range<usize>,
    /// What is left of the split budget.
    splits: usize,
    /// The worker that queued this piece, or [`FOREIGN`].
    origin: usize,
}

impl<B: Body> Future for Piece<'_, '_, B> {
    type Output = ();

    fn poll(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<()> {
        self.get_mut().run();
        Poll::Ready(())
    }
}

/// rayon's adaptive splitter: split while the budget lasts, halving it each time; a stolen
/// piece (some worker was idle) gets the budget back up to the worker count.
fn try_split(splits: &mut usize, stolen: bool, workers: usize) -> bool {
    if stolen {
        *splits = workers.max(*splits / 2);
        true
    } else if *splits > 0 {
        *splits /= 2;
        true
    } else {
        false
    }
}

impl<B: Body> Piece<'_, '_, B> {
    fn run(&mut self) {
        let lp = self.lp;
        let shared = lp.frame.shared;
        let cur = context::current();
        let here = if ptr::eq(cur.shared, shared) {
            cur.index
        } else {
            FOREIGN
        };
        let workers = shared.workers.len();
        let mut stolen = here != self.origin;
        let mut range = self.range.clone();
        while range.len() / 2 >= lp.min_len
            && try_split(&mut self.splits, mem::take(&mut stolen), workers)
        {
            let mid = range.start + range.len() / 2;
            let right = Piece {
                lp,
                range: mid..range.end,
                splits: self.splits,
                origin: here,
            };
            lp.frame
                .spawn_raw(right, JobKind::Any, None, DETACHED, lp.location);
            range.end = mid;
        }
        let len = range.len();
        if let Err(payload) = catch_unwind(AssertUnwindSafe(|| lp.body.run(range))) {
            // Published to `MapJob` by the release of the `counter` update below.
            lp.panicked.store(true, Ordering::Relaxed);
            shared.record_panic(payload);
        }
        lp.finish(len);
    }
}

impl<B> Loop<'_, '_, B> {
    /// A piece of `len` items is done with the body (invariants 2 and 3).
    fn finish(&self, len: usize) {
        let shared = self.frame.shared;
        if mem::needs_drop::<B>() && self.left.fetch_sub(len, Ordering::AcqRel) == len {
            // SAFETY: invariant 3: every other piece has finished with `body` (their updates
            // of `left` came before ours, which acquired them), so this copy is the only one
            // anyone will use; the original is never dropped (`ManuallyDrop`).
            let body = unsafe { ptr::read(&*self.body) };
            if let Err(payload) = catch_unwind(AssertUnwindSafe(|| drop(body))) {
                shared.record_panic(payload);
            }
        }
        // A stray `done()` on `parallel_for`'s counter is misuse the frame reports; a waker
        // woken at zero is user code and may panic.
        match catch_unwind(AssertUnwindSafe(|| self.counter.decrement_by(len))) {
            Ok(Ok(())) => {}
            Ok(Err(msg)) => shared.record_panic(Box::new(msg)),
            Err(payload) => shared.record_panic(payload),
        }
    }
}

impl<'frame, 'env> Frame<'frame, 'env> {
    /// Starts a loop of `body` over `range`, counted on `counter` (which must be at zero or
    /// belong to the caller); returns its state, or `None` for an empty range (`body` is then
    /// dropped at once).
    #[track_caller]
    fn start_loop<B: Body + Send + 'frame>(
        &'frame self,
        range: Range<usize>,
        min_len: usize,
        body: B,
        counter: Counter<'frame>,
    ) -> Option<&'frame Loop<'frame, 'env, B>> {
        let len = range.len();
        if len == 0 {
            drop(body);
            return None;
        }
        let cur = context::current();
        let lp = self.alloc_for(
            cur,
            Loop {
                frame: self,
                counter: counter.inner,
                body: ManuallyDrop::new(body),
                min_len: min_len.max(1),
                left: AtomicUsize::new(len),
                panicked: AtomicBool::new(false),
                location: Location::caller(),
            },
        );
        // SAFETY: arena memory lives until the frame ends, which `'frame` cannot outlive.
        let lp = unsafe { lp.as_ref() };
        counter.add(len);
        let origin = if ptr::eq(cur.shared, self.shared) {
            cur.index
        } else {
            FOREIGN
        };
        let first = Piece {
            lp,
            range,
            splits: self.workers(),
            origin,
        };
        self.spawn_raw(first, JobKind::Any, None, DETACHED, lp.location);
        Some(lp)
    }

    /// Calls `body` on disjoint sub-ranges that together cover `range` exactly once, in
    /// parallel, none shorter than `min_len` (unless `range` is; `0` means `1`).
    ///
    /// The returned counter starts at `range.len()`, and each finished sub-range takes its
    /// length off; `.await` it to wait for the loop. An empty range calls `body` never and
    /// returns a counter at zero. The loop runs whether or not the counter is awaited. How
    /// ranges are split, and how to choose `min_len`: see the [module docs](crate::parallel).
    ///
    /// `body` runs on any worker; it may borrow anything that outlives the frame, start other
    /// loops and spawn jobs (it is a plain closure, so it cannot await them: spawn a job that
    /// does). It is dropped once the last sub-range is done.
    ///
    /// # Panics
    /// A panic in `body` is caught: the sub-range it was called on is left where the panic
    /// left it, every other sub-range still runs, the counter still comes down by the whole
    /// range, and `run_frame` resumes the first panic once the frame is over.
    ///
    /// ```
    /// # let mut scheduler = frame_scheduler::Scheduler::builder().workers(2).build().unwrap();
    /// use std::sync::atomic::{AtomicU64, Ordering};
    /// let sum = AtomicU64::new(0);
    /// scheduler.run_frame(async |frame| {
    ///     frame.parallel_for(0..1000, 64, |r| {
    ///         sum.fetch_add(r.map(|i| i as u64).sum(), Ordering::Relaxed);
    ///     }).await;
    /// });
    /// assert_eq!(sum.into_inner(), 999 * 1000 / 2);
    /// ```
    #[track_caller]
    pub fn parallel_for<F>(
        &'frame self,
        range: Range<usize>,
        min_len: usize,
        body: F,
    ) -> Counter<'frame>
    where
        F: Fn(Range<usize>) + Send + Sync + 'frame,
    {
        let counter = self.counter();
        self.start_loop(range, min_len, ForBody(body), counter);
        counter
    }

    /// Calls `body(start, chunk)` on disjoint chunks of `items` (`start` is the index of
    /// `chunk[0]` in `items`), in parallel, none shorter than `min_len` (unless `items` is;
    /// `0` means `1`), and hands `items` back once every chunk is done.
    ///
    /// Awaiting the returned [`ChunksJob`] gives back the slice, for the next stage of the
    /// frame: the borrow of `items` lasts the whole frame, so the slice that comes back is the
    /// only way to touch it again in this frame. Splitting, and how to choose `min_len`: see
    /// the [module docs](crate::parallel).
    ///
    /// # Panics
    /// As for [`parallel_for`](Frame::parallel_for): a panic in `body` is caught, the other
    /// chunks still run, and `run_frame` resumes the first panic once the frame is over. The
    /// `ChunksJob` still hands the slice back (every item is a valid `T`, the panicking chunk's
    /// as the panic left them).
    ///
    /// ```
    /// # let mut scheduler = frame_scheduler::Scheduler::builder().workers(2).build().unwrap();
    /// let mut positions = vec![0.0f32; 10_000];
    /// let velocities = vec![2.0f32; 10_000];
    /// scheduler.run_frame(async |frame| {
    ///     let positions = frame.for_each_chunk(&mut positions, 1024, |start, p| {
    ///         for (i, p) in p.iter_mut().enumerate() {
    ///             *p += velocities[start + i] * 0.5;
    ///         }
    ///     }).await;
    ///     assert_eq!(positions[0], 1.0);
    /// });
    /// assert!(positions.iter().all(|&p| p == 1.0));
    /// ```
    #[track_caller]
    pub fn for_each_chunk<T, F>(
        &'frame self,
        items: &'frame mut [T],
        min_len: usize,
        body: F,
    ) -> ChunksJob<'frame, T>
    where
        T: Send + 'frame,
        F: Fn(usize, &mut [T]) + Send + Sync + 'frame,
    {
        let counter = self.counter();
        let len = items.len();
        let slice = NonNull::from(items);
        let body = ChunkBody {
            items: slice.cast::<T>(),
            f: body,
        };
        self.start_loop(0..len, min_len, body, counter);
        ChunksJob {
            wait: counter.into_future(),
            items: Some(slice),
            _marker: PhantomData,
        }
    }

    /// Maps every item of `items` through `f` into a new slice in the frame arena, in order,
    /// calling `f` in parallel on disjoint chunks of at least `min_len` items (unless `items`
    /// is shorter; `0` means `1`).
    ///
    /// Awaiting the returned [`MapJob`] gives the output slice, `out[i] == f(&items[i])`, for
    /// the rest of the frame. Its values are dropped at frame end (after every job has
    /// finished), so `U` may not borrow frame memory (`U: 'env`). Splitting, and how to choose
    /// `min_len`: see the [module docs](crate::parallel).
    ///
    /// # Panics
    /// A panic in `f` is caught: the other chunks still run, the values the panicking chunk
    /// made before the panic are dropped at once, and `run_frame` resumes the first panic once
    /// the frame is over. Awaiting the `MapJob` of a map whose `f` panicked panics the awaiter
    /// (there is no complete output to give), as awaiting the handle of a panicked job does.
    ///
    /// ```
    /// # let mut scheduler = frame_scheduler::Scheduler::builder().workers(2).build().unwrap();
    /// let bounds: Vec<(f32, f32)> = (0..1000).map(|i| (i as f32, 1.0)).collect();
    /// let visible = scheduler.run_frame(async |frame| {
    ///     let visible: &mut [bool] = frame.map(&bounds, 256, |&(x, r)| x - r < 500.0).await;
    ///     visible.iter().filter(|&&v| v).count()
    /// });
    /// assert_eq!(visible, 501);
    /// ```
    #[track_caller]
    pub fn map<T, U, F>(&'frame self, items: &'frame [T], min_len: usize, f: F) -> MapJob<'frame, U>
    where
        T: Sync + 'frame,
        U: Send + 'env,
        F: Fn(&T) -> U + Send + Sync + 'frame,
    {
        let counter = self.counter();
        let len = items.len();
        let out = self.alloc_uninit_slice::<U>(len);
        let dst = NonNull::from(out).cast::<U>();
        let body = MapBody {
            frame: self,
            src: NonNull::from(items).cast::<T>(),
            dst,
            f,
        };
        let lp = self.start_loop(0..len, min_len, body, counter);
        MapJob {
            wait: counter.into_future(),
            out: Some(NonNull::slice_from_raw_parts(dst, len)),
            panicked: lp.map(|lp| &lp.panicked),
            _marker: PhantomData,
        }
    }

    /// Spawns every future of `futures`, counted on `counter`, with one counter update and one
    /// publication for the whole batch instead of one per job.
    ///
    /// The jobs are written into the calling worker's arena first, then `counter` goes up by
    /// their number at once, then they are queued and one sleeping worker is woken (it wakes
    /// another if it finds more than it takes). Each job takes 1 off `counter` when it
    /// finishes, as with [`spawn_counted`](Frame::spawn_counted).
    ///
    /// # Panics
    /// If the iterator panics, the futures it gave before are still spawned and counted, and
    /// the panic goes on to the caller.
    ///
    /// ```
    /// # let mut scheduler = frame_scheduler::Scheduler::builder().workers(2).build().unwrap();
    /// let mut cells = vec![0u32; 1000];
    /// scheduler.run_frame(async |frame| {
    ///     let writes = frame.counter();
    ///     frame.spawn_batch(writes, cells.iter_mut().map(|c| async move { *c += 1 }));
    ///     writes.await;
    /// });
    /// assert!(cells.iter().all(|&c| c == 1));
    /// ```
    #[track_caller]
    pub fn spawn_batch<I>(&'frame self, counter: Counter<'frame>, futures: I)
    where
        I: IntoIterator,
        I::Item: Future<Output = ()> + Send + 'frame,
    {
        let location = Location::caller();
        let cur = context::current();
        let priority = self.spawner_priority(cur);
        let stall = self.shared.stall.as_deref();
        let mut batch = Batch {
            frame: self,
            cur,
            priority,
            counter,
            head: ptr::null(),
            tail: ptr::null(),
            len: 0,
        };
        for future in futures {
            let header = Header::new(
                &Job::<Traced<I::Item>>::VTABLE,
                JobKind::Any,
                priority,
                Label::at(location),
                Some(counter_ptr(counter)),
                self.shared,
                SCHEDULED,
                DETACHED,
            );
            let room = self.alloc_job_room(cur, stall.is_some(), Job::<Traced<I::Item>>::ROOM);
            let job = Job::<Traced<I::Item>>::place(room);
            // SAFETY: placed in fresh room of `Job::ROOM`.
            unsafe { Job::write(job, header, profile::instrument(future)) };
            if let Some(stall) = stall {
                // SAFETY: `Stall::publish` (1): a job of this frame, written just now into room
                // from `alloc_job_room` with `stall` set; (2): `worker_of` is `Some(i)` only on
                // worker `i`.
                unsafe { stall.publish(cur.worker_of(self.shared), job) };
            }
            if self.shared.tracer.is_on() {
                let by = cur.worker_of(self.shared);
                // SAFETY: `by` is `Some(i)` only when this thread is worker `i` here.
                unsafe {
                    self.shared.tracer.spawn(
                        by,
                        job.as_ptr(),
                        ptr::null::<Header>(),
                        None,
                        Some(location),
                    )
                };
            }
            profile::spawned(self.shared, cur, Label::at(location));
            // SAFETY: the job was just written and is unpublished: its `next` is ours.
            unsafe { batch.link(job) };
        }
        // Dropping the batch publishes it (also when the iterator panics).
        drop(batch);
    }
}

/// Jobs of [`Frame::spawn_batch`] written but not yet published, linked through their
/// headers' `next`, oldest first. Dropping it publishes them.
///
/// # Invariants
/// 1. Every job on the list is live, `SCHEDULED`, not counted anywhere, and on no queue: only
///    the batch knows it.
struct Batch<'frame, 'env> {
    frame: &'frame Frame<'frame, 'env>,
    cur: Current,
    /// The priority of every job of the batch: the spawner's.
    priority: Priority,
    counter: Counter<'frame>,
    head: *const Header,
    tail: *const Header,
    len: usize,
}

impl Batch<'_, '_> {
    /// Appends a job.
    ///
    /// # Safety
    /// 1. `job` was just written into the arena, and is on no list and no queue.
    unsafe fn link(&mut self, job: NonNull<Header>) {
        // SAFETY: (1): nobody else knows the job; the tail is ours too (invariant 1).
        unsafe {
            job.as_ref().next.with_mut(|n| *n = ptr::null());
            if self.tail.is_null() {
                self.head = job.as_ptr();
            } else {
                (*self.tail).next.with_mut(|n| *n = job.as_ptr());
            }
        }
        self.tail = job.as_ptr();
        self.len += 1;
    }
}

impl Drop for Batch<'_, '_> {
    fn drop(&mut self) {
        if self.len == 0 {
            return;
        }
        let shared = self.frame.shared;
        // Counted before any job is visible (see worker.rs on frame completion): the counter,
        // then the spawn count.
        self.counter.add(self.len);
        let on_worker = ptr::eq(self.cur.shared, shared);
        let level = self.priority;
        shared.note_queued(level, self.len);
        if on_worker {
            // SAFETY: we are worker `cur.index`, the owner of its counters.
            unsafe {
                Counts::add(
                    &shared.workers[self.cur.index].counts.spawned,
                    self.len as u64,
                )
            };
        } else {
            shared
                .foreign_spawned
                .fetch_add(self.len as u64, Ordering::AcqRel);
        }
        let mut next = self.head;
        while let Some(job) = NonNull::new(next as *mut Header) {
            // Read the link before the job is visible: once queued it may run and finish.
            // SAFETY: invariant 1: the job is still ours.
            next = unsafe { job.as_ref().next.with(|n| *n) };
            let job = JobRef(job);
            if on_worker {
                // SAFETY: invariant 1: live, SCHEDULED, on no queue; we are worker
                // `cur.index`, the deque's owner.
                unsafe { shared.push_quiet(self.cur.index, level, job) };
            } else {
                // SAFETY: invariant 1: live, SCHEDULED, on no queue.
                unsafe { shared.inject(level, job) };
            }
        }
        if on_worker {
            shared.wake_thief(self.cur.index);
        }
    }
}

/// The future of [`Frame::for_each_chunk`]: yields the slice back once every chunk is done.
///
/// Dropping it stops waiting; the loop still runs to the end within the frame, and the slice
/// stays borrowed until the frame ends.
#[must_use = "a ChunksJob hands the slice back only when awaited; the loop runs either way"]
pub struct ChunksJob<'frame, T> {
    wait: CounterWait<'frame>,
    /// `None` once handed back.
    items: Option<NonNull<[T]>>,
    _marker: PhantomData<&'frame mut [T]>,
}

// SAFETY: awaiting moves a `&'frame mut [T]` to whichever thread awaits: like `&mut [T]`, that
// is `Send` when `T: Send`. The wait is `Send`.
unsafe impl<T: Send> Send for ChunksJob<'_, T> {}
// SAFETY: `&ChunksJob` gives access to nothing of the slice.
unsafe impl<T: Sync> Sync for ChunksJob<'_, T> {}

impl<T> core::fmt::Debug for ChunksJob<'_, T> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("ChunksJob")
            .field("len", &self.items.map(|s| s.len()))
            .field("wait", &self.wait)
            .finish()
    }
}

impl<'frame, T> Future for ChunksJob<'frame, T> {
    type Output = &'frame mut [T];

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<&'frame mut [T]> {
        // SAFETY: `wait` is never moved out of `self` (pinned below, structurally); the other
        // fields are not pinned.
        let this = unsafe { self.get_unchecked_mut() };
        assert!(
            this.items.is_some(),
            "ChunksJob polled again after it handed the slice back"
        );
        // SAFETY: `wait` is pinned in `self`, as `self` is.
        if unsafe { Pin::new_unchecked(&mut this.wait) }
            .poll(cx)
            .is_pending()
        {
            return Poll::Pending;
        }
        let Some(items) = this.items.take() else {
            unreachable!()
        };
        // SAFETY: the counter reached zero, so every chunk's body call has returned (`Loop`
        // invariant 2) and the wait's acquire saw their writes; the `&'frame mut` borrow was
        // moved into this future, which hands it back this once.
        Poll::Ready(unsafe { &mut *items.as_ptr() })
    }
}

/// The future of [`Frame::map`]: yields the output slice once every chunk is done.
///
/// Dropping it stops waiting; the map still runs to the end within the frame, and its values
/// are dropped at frame end.
///
/// # Panics
/// Awaiting it panics if a call of the map's function panicked (see [`Frame::map`]).
#[must_use = "a MapJob hands the output over only when awaited; the map runs either way"]
pub struct MapJob<'frame, U> {
    wait: CounterWait<'frame>,
    /// `None` once handed over.
    out: Option<NonNull<[U]>>,
    /// The loop's panic flag; `None` for an empty map.
    panicked: Option<&'frame AtomicBool>,
    _marker: PhantomData<&'frame mut [U]>,
}

// SAFETY: awaiting moves a `&'frame mut [U]` to whichever thread awaits: `Send` when `U: Send`.
// The wait and the flag are `Send` and `Sync`.
unsafe impl<U: Send> Send for MapJob<'_, U> {}
// SAFETY: `&MapJob` gives access to nothing of the output.
unsafe impl<U: Sync> Sync for MapJob<'_, U> {}

impl<U> core::fmt::Debug for MapJob<'_, U> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("MapJob")
            .field("len", &self.out.map(|s| s.len()))
            .field("wait", &self.wait)
            .finish()
    }
}

impl<'frame, U> Future for MapJob<'frame, U> {
    type Output = &'frame mut [U];

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<&'frame mut [U]> {
        // SAFETY: `wait` is never moved out of `self` (pinned below, structurally); the other
        // fields are not pinned.
        let this = unsafe { self.get_unchecked_mut() };
        assert!(
            this.out.is_some(),
            "MapJob polled again after it handed the output over"
        );
        // SAFETY: `wait` is pinned in `self`, as `self` is.
        if unsafe { Pin::new_unchecked(&mut this.wait) }
            .poll(cx)
            .is_pending()
        {
            return Poll::Pending;
        }
        let Some(out) = this.out.take() else {
            unreachable!()
        };
        // The flag was set before the panicking piece's counter update, which the wait's
        // acquire has seen.
        if this.panicked.is_some_and(|p| p.load(Ordering::Relaxed)) {
            panic!(
                "a call of the function given to Frame::map panicked, so the map has no \
                 complete output to give; run_frame resumes that panic once the frame has \
                 finished"
            );
        }
        // SAFETY: the counter reached zero and no call panicked, so every piece wrote its
        // part (`Loop` invariants 1 and 2) and the wait's acquire saw the writes; the slice
        // is handed out this once, for the frame.
        Poll::Ready(unsafe { &mut *out.as_ptr() })
    }
}
