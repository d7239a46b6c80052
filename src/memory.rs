//! Frame memory for jobs: values, slices, strings and growable vectors in the frame arena.
//!
//! Everything here is bump-allocated in the arena of the calling worker thread (no lock, no
//! atomic read-modify-write, no heap call once the arena has warmed up) and lives until the
//! frame ends, when the arena is reset. `'frame` keeps every reference inside the frame at
//! compile time.
//!
//! See [`FrameVec`] for what is dropped when, and what the compiler refuses.

use core::alloc::Layout;
use core::fmt;
use core::marker::PhantomData;
use core::mem::{self, MaybeUninit};
use core::ops::{Deref, DerefMut};
use core::ptr::{self, NonNull};

use crate::context::{self, Current};
use crate::frame::Frame;

// Each call hands out fresh arena memory that nothing else refers to (as `Bump::alloc` does),
// so `&self` in, `&mut` out is sound here.
#[allow(clippy::mut_from_ref)]
impl<'frame, 'env> Frame<'frame, 'env> {
    /// Moves `value` into the frame arena of the calling thread and returns it, mutable, for
    /// the rest of the frame. If `T` needs dropping it is dropped at frame end (see the
    /// [`FrameVec`](crate::FrameVec#drops) docs).
    ///
    /// ```
    /// # let mut scheduler = frame_scheduler::Scheduler::builder().workers(2).build().unwrap();
    /// let label = scheduler.run_frame(async |frame| {
    ///     let label: &mut String = frame.alloc(String::from("physics"));
    ///     label.push_str(" island 3");
    ///     let shown: &String = label;
    ///     frame.spawn(async move { shown.len() }).await
    /// });
    /// assert_eq!(label, 16);
    /// ```
    pub fn alloc<T: Send + 'env>(&'frame self, value: T) -> &'frame mut T {
        let cur = context::current();
        let p = self.alloc_layout_for(cur, Layout::new::<T>()).cast::<T>();
        // SAFETY: fresh room for a `T`.
        unsafe { p.as_ptr().write(value) };
        // SAFETY: one initialised `T` in frame memory, ours alone; `T: Send + 'env`.
        unsafe { self.defer_drop_for(cur, p, 1) };
        // SAFETY: the value lives in the arena until the frame ends, which `'frame` cannot
        // outlive; nobody else refers to it.
        unsafe { &mut *p.as_ptr() }
    }

    /// Copies `src` into the frame arena of the calling thread.
    ///
    /// ```
    /// # let mut scheduler = frame_scheduler::Scheduler::builder().workers(1).build().unwrap();
    /// scheduler.run_frame(async |frame| {
    ///     let ids = frame.alloc_slice_copy(&[3u32, 1, 2]);
    ///     ids.sort();
    ///     assert_eq!(ids, &[1, 2, 3]);
    /// });
    /// ```
    pub fn alloc_slice_copy<T: Copy + Send + 'frame>(&'frame self, src: &[T]) -> &'frame mut [T] {
        let dst = self.alloc_uninit_slice::<T>(src.len());
        // SAFETY: `dst` is fresh room for `src.len()` `T`s, which cannot overlap `src`.
        unsafe {
            ptr::copy_nonoverlapping(src.as_ptr(), dst.as_mut_ptr().cast::<T>(), src.len());
            &mut *(ptr::from_mut(dst) as *mut [T])
        }
    }

    /// A slice of `len` values made by `f(0)`, `f(1)`, … in the frame arena of the calling
    /// thread, dropped at frame end if they need it. If `f` panics, the values made so far
    /// are dropped at once and the panic goes on.
    ///
    /// ```
    /// # let mut scheduler = frame_scheduler::Scheduler::builder().workers(1).build().unwrap();
    /// scheduler.run_frame(async |frame| {
    ///     let names = frame.alloc_slice_fill_with(3, |i| format!("body {i}"));
    ///     assert_eq!(names[2], "body 2");
    /// });
    /// ```
    pub fn alloc_slice_fill_with<T: Send + 'env>(
        &'frame self,
        len: usize,
        mut f: impl FnMut(usize) -> T,
    ) -> &'frame mut [T] {
        let cur = context::current();
        let dst = self.alloc_uninit_slice_for::<T>(cur, len);
        let base = dst.as_mut_ptr().cast::<T>();
        /// Drops the values made so far if `f` panics.
        struct Filled<T> {
            base: *mut T,
            len: usize,
        }
        impl<T> Drop for Filled<T> {
            fn drop(&mut self) {
                // SAFETY: the first `len` values were written and nobody else has them.
                unsafe { ptr::drop_in_place(ptr::slice_from_raw_parts_mut(self.base, self.len)) }
            }
        }
        let mut filled = Filled { base, len: 0 };
        for i in 0..len {
            let v = f(i);
            // SAFETY: `i < len`: room for it in `dst`.
            unsafe { base.add(i).write(v) };
            filled.len = i + 1;
        }
        mem::forget(filled);
        // SAFETY: `base` holds `len` initialised `T`s (a dangling pointer is fine for len 0).
        let base = unsafe { NonNull::new_unchecked(base) };
        // SAFETY: `len` initialised `T`s in frame memory, ours alone; `T: Send + 'env`.
        unsafe { self.defer_drop_for(context::current(), base, len) };
        // SAFETY: as above; they live until the frame ends.
        unsafe { core::slice::from_raw_parts_mut(base.as_ptr(), len) }
    }

    /// Copies `s` into the frame arena of the calling thread.
    ///
    /// ```
    /// # let mut scheduler = frame_scheduler::Scheduler::builder().workers(1).build().unwrap();
    /// scheduler.run_frame(async |frame| {
    ///     let island = 7;
    ///     let label: &str = frame.alloc_str(&format!("island {island}"));
    ///     assert_eq!(label, "island 7");
    /// });
    /// ```
    pub fn alloc_str(&'frame self, s: &str) -> &'frame str {
        let bytes = self.alloc_slice_copy(s.as_bytes());
        // SAFETY: a copy of a `str`'s bytes is UTF-8.
        unsafe { core::str::from_utf8_unchecked(bytes) }
    }

    /// An empty growable vector in the frame arena. It takes room from the arena of whichever
    /// thread pushes when it grows, and drops its elements when it is dropped.
    ///
    /// ```
    /// # let mut scheduler = frame_scheduler::Scheduler::builder().workers(2).build().unwrap();
    /// let bodies: Vec<u32> = (0..100).collect();
    /// let hits = scheduler.run_frame(async |frame| {
    ///     let contacts = frame.spawn(async {
    ///         let mut contacts = frame.vec();
    ///         for b in &bodies {
    ///             if b % 7 == 0 { contacts.push(*b); }
    ///         }
    ///         contacts.into_slice() // hands a `&'frame mut [u32]` to the next stage
    ///     });
    ///     contacts.await.len()
    /// });
    /// assert_eq!(hits, 15);
    /// ```
    pub fn vec<T: Send + 'frame>(&'frame self) -> FrameVec<'frame, 'env, T> {
        FrameVec {
            ptr: NonNull::dangling(),
            len: 0,
            cap: if mem::size_of::<T>() == 0 {
                usize::MAX
            } else {
                0
            },
            frame: self,
            _owns: PhantomData,
        }
    }

    /// An empty vector in the frame arena with room for `capacity` elements.
    pub fn vec_with_capacity<T: Send + 'frame>(
        &'frame self,
        capacity: usize,
    ) -> FrameVec<'frame, 'env, T> {
        let mut v = self.vec();
        v.reserve(capacity);
        v
    }

    /// Room for `len` `T`s in the calling thread's arena, valid until the frame ends.
    ///
    /// # Panics
    /// If `len` `T`s take more than `isize::MAX` bytes.
    pub(crate) fn alloc_uninit_slice<T>(&'frame self, len: usize) -> &'frame mut [MaybeUninit<T>] {
        self.alloc_uninit_slice_for(context::current(), len)
    }

    fn alloc_uninit_slice_for<T>(
        &'frame self,
        cur: Current,
        len: usize,
    ) -> &'frame mut [MaybeUninit<T>] {
        let layout = array_layout::<T>(len);
        let p = self.alloc_layout_for(cur, layout).cast::<MaybeUninit<T>>();
        // SAFETY: room for `len` values, uninitialised (which `MaybeUninit` allows), alive
        // until the frame ends, which `'frame` cannot outlive.
        unsafe { core::slice::from_raw_parts_mut(p.as_ptr(), len) }
    }

    /// Drops the values of `slice` at frame end (nothing happens for types that need no
    /// drop), on the calling thread's drop list.
    ///
    /// # Safety
    /// 1. `slice` is initialised frame memory of this frame, which nobody uses after the
    ///    frame's jobs have finished, and which nobody else drops.
    /// 2. `T: Send`, and `T` holds no borrow of frame memory (`T: 'env`).
    pub(crate) unsafe fn drop_at_frame_end<T>(&self, slice: NonNull<[T]>) {
        // SAFETY: (1), (2), passed on.
        unsafe { self.defer_drop_for(context::current(), slice.cast::<T>(), slice.len()) }
    }

    /// # Safety
    /// As for [`Frame::drop_at_frame_end`], for `len` values at `data`.
    unsafe fn defer_drop_for<T>(&self, cur: Current, data: NonNull<T>, len: usize) {
        if !mem::needs_drop::<T>() || len == 0 {
            return;
        }
        let shared = self.shared;
        if ptr::eq(cur.shared, shared) {
            // SAFETY: we are worker `cur.index` (Shared invariant 1), and no other reference to
            // our frame state is held across this call; the rest is (1), (2).
            shared.workers[cur.index]
                .frame_state
                .with_mut(|fs| unsafe { (*fs).arena.defer_drop(data, len, &shared.pool) });
        } else {
            // SAFETY: (1), (2).
            unsafe { shared.foreign().arena.defer_drop(data, len, &shared.pool) };
        }
    }
}

fn array_layout<T>(len: usize) -> Layout {
    Layout::array::<T>(len).unwrap_or_else(|_| {
        panic!(
            "frame allocation of {len} values of {} bytes each is larger than isize::MAX bytes",
            mem::size_of::<T>()
        )
    })
}

/// A growable vector in the frame arena, made by [`Frame::vec`] and
/// [`Frame::vec_with_capacity`].
///
/// It grows like `Vec` (doubling), taking new room in the arena of the thread that pushes,
/// never in another worker's: it may be handed from job to job. The room it leaves behind when
/// it grows is freed with the frame. It drops its elements when it is dropped; or
/// [`into_slice`](FrameVec::into_slice) hands them over as a `&'frame mut [T]` for the rest
/// of the frame.
///
/// `'env` is the frame's outer lifetime: it is what `into_slice` requires of `T`.
///
/// # Drops
/// Values that need dropping are dropped exactly once:
/// - a [`FrameVec`] drops its elements when it is dropped;
/// - what [`Frame::alloc`], [`Frame::alloc_slice_fill_with`] and [`FrameVec::into_slice`] hand
///   out is dropped at frame end, after every job has finished and every output nobody took
///   has been dropped, and before any arena is reset, also when the frame panicked. Each
///   thread's values are dropped newest first. A panic in such a drop is caught, and
///   `run_frame` resumes it like a job's. Types that need no drop cost no bookkeeping.
///
/// Values dropped at frame end must not borrow frame memory, or one value's `Drop` could read
/// another dropped before it (no order fixes that in general): so those functions take
/// `T: 'env`. A `FrameVec` drops its own elements, so they may borrow frame memory.
///
/// ```compile_fail
/// # let mut scheduler = frame_scheduler::Scheduler::builder().workers(1).build().unwrap();
/// use std::cell::Cell;
/// struct Peek<'a>(Cell<Option<&'a String>>);
/// impl Drop for Peek<'_> {
///     fn drop(&mut self) {
///         if let Some(s) = self.0.get() { println!("{s}"); } // could read a dropped String
///     }
/// }
/// scheduler.run_frame(async |frame| {
///     let name: &String = frame.alloc(String::from("ship"));
///     let peek = frame.alloc(Peek(Cell::new(None))); // Peek<'frame> is not 'env
///     peek.0.set(Some(name));
/// });
/// ```
/// In a `FrameVec`, which drops it while the frame's values are still alive, the same value
/// is fine:
/// ```
/// # let mut scheduler = frame_scheduler::Scheduler::builder().workers(1).build().unwrap();
/// use std::cell::Cell;
/// struct Peek<'a>(Cell<Option<&'a String>>);
/// impl Drop for Peek<'_> {
///     fn drop(&mut self) {
///         if let Some(s) = self.0.get() { assert_eq!(s, "ship"); }
///     }
/// }
/// scheduler.run_frame(async |frame| {
///     let name: &String = frame.alloc(String::from("ship"));
///     let mut peeks = frame.vec();
///     peeks.push(Peek(Cell::new(None)));
///     peeks[0].0.set(Some(name));
/// });
/// ```
/// A frame allocation cannot leave its frame:
/// ```compile_fail
/// # let mut scheduler = frame_scheduler::Scheduler::builder().workers(1).build().unwrap();
/// let escaped: &mut u32 = scheduler.run_frame(async |frame| frame.alloc(7u32));
/// ```
/// nor can a `FrameVec`:
/// ```compile_fail
/// # let mut scheduler = frame_scheduler::Scheduler::builder().workers(1).build().unwrap();
/// let escaped = scheduler.run_frame(async |frame| {
///     let mut v = frame.vec();
///     v.push(1u32);
///     v
/// });
/// ```
/// What they hold may, copied out:
/// ```
/// # let mut scheduler = frame_scheduler::Scheduler::builder().workers(1).build().unwrap();
/// let sum: u32 = scheduler.run_frame(async |frame| {
///     let mut v = frame.vec();
///     v.extend(1..=4u32);
///     *frame.alloc(v.iter().sum::<u32>())
/// });
/// assert_eq!(sum, 10);
/// ```
pub struct FrameVec<'frame, 'env, T> {
    ptr: NonNull<T>,
    len: usize,
    cap: usize,
    frame: &'frame Frame<'frame, 'env>,
    _owns: PhantomData<T>,
}

// SAFETY: the vector owns its `T`s (moving it moves them) and the `Frame` it refers to is
// `Sync`; growing takes room from the arena of whichever thread it is on.
unsafe impl<T: Send> Send for FrameVec<'_, '_, T> {}
// SAFETY: `&FrameVec` gives only `&T`s (and `&Frame`, which is `Sync`).
unsafe impl<T: Sync> Sync for FrameVec<'_, '_, T> {}

impl<'frame, 'env, T> FrameVec<'frame, 'env, T> {
    /// Elements in the vector.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether the vector has no elements.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Elements it can hold before it must grow.
    pub fn capacity(&self) -> usize {
        self.cap
    }

    /// Makes room for at least `additional` more elements.
    ///
    /// # Panics
    /// If the new capacity takes more than `isize::MAX` bytes.
    pub fn reserve(&mut self, additional: usize) {
        let need = self
            .len
            .checked_add(additional)
            .unwrap_or_else(|| panic!("FrameVec capacity overflow: {} + {additional}", self.len));
        if need > self.cap {
            self.grow_to(need.max(self.cap.saturating_mul(2)).max(4));
        }
    }

    #[cold]
    fn grow_to(&mut self, cap: usize) {
        let layout = array_layout::<T>(cap);
        let new = self
            .frame
            .alloc_layout_for(context::current(), layout)
            .cast::<T>();
        // SAFETY: `new` is fresh room for `cap >= len` values; the old room holds `len`
        // initialised ones, moved (bitwise) and never used again.
        unsafe { ptr::copy_nonoverlapping(self.ptr.as_ptr(), new.as_ptr(), self.len) };
        self.ptr = new;
        self.cap = cap;
    }

    /// Appends `value`.
    pub fn push(&mut self, value: T) {
        if self.len == self.cap {
            self.reserve(1);
        }
        // SAFETY: `len < cap`: room for one more.
        unsafe { self.ptr.as_ptr().add(self.len).write(value) };
        self.len += 1;
    }

    /// Removes and returns the last element.
    pub fn pop(&mut self) -> Option<T> {
        if self.len == 0 {
            return None;
        }
        self.len -= 1;
        // SAFETY: the element at `len` was initialised and is now outside the vector.
        Some(unsafe { self.ptr.as_ptr().add(self.len).read() })
    }

    /// Drops every element, keeping the room.
    pub fn clear(&mut self) {
        let len = mem::replace(&mut self.len, 0);
        // SAFETY: the first `len` elements were initialised, and `len` is 0 before any drop
        // runs, so no element is reachable after its drop (even if a drop panics).
        unsafe { ptr::drop_in_place(ptr::slice_from_raw_parts_mut(self.ptr.as_ptr(), len)) };
    }

    /// The elements as a slice that lives for the rest of the frame. They are dropped at frame
    /// end if they need it, which is why `T` may not borrow frame memory here.
    pub fn into_slice(self) -> &'frame mut [T]
    where
        T: 'env,
    {
        let me = mem::ManuallyDrop::new(self);
        // SAFETY: `len` initialised elements in frame memory, handed over from the vector
        // (which will not drop them); `T: 'env`, and `T: Send` as `Frame::vec` required.
        unsafe { me.frame.defer_drop_for(context::current(), me.ptr, me.len) };
        // SAFETY: as above; frame memory lives until the frame ends.
        unsafe { core::slice::from_raw_parts_mut(me.ptr.as_ptr(), me.len) }
    }
}

impl<T: Clone> FrameVec<'_, '_, T> {
    /// Appends a clone of every element of `items`.
    pub fn extend_from_slice(&mut self, items: &[T]) {
        self.reserve(items.len());
        for item in items {
            self.push(item.clone());
        }
    }
}

impl<T> Drop for FrameVec<'_, '_, T> {
    fn drop(&mut self) {
        self.clear();
    }
}

impl<T> Deref for FrameVec<'_, '_, T> {
    type Target = [T];
    fn deref(&self) -> &[T] {
        // SAFETY: `len` initialised elements (or a dangling pointer and 0).
        unsafe { core::slice::from_raw_parts(self.ptr.as_ptr(), self.len) }
    }
}

impl<T> DerefMut for FrameVec<'_, '_, T> {
    fn deref_mut(&mut self) -> &mut [T] {
        // SAFETY: as for `deref`, and `&mut self` is exclusive.
        unsafe { core::slice::from_raw_parts_mut(self.ptr.as_ptr(), self.len) }
    }
}

impl<T: fmt::Debug> fmt::Debug for FrameVec<'_, '_, T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list().entries(self.iter()).finish()
    }
}

impl<T> Extend<T> for FrameVec<'_, '_, T> {
    fn extend<I: IntoIterator<Item = T>>(&mut self, iter: I) {
        let iter = iter.into_iter();
        self.reserve(iter.size_hint().0);
        for item in iter {
            self.push(item);
        }
    }
}

impl<'a, T> IntoIterator for &'a FrameVec<'_, '_, T> {
    type Item = &'a T;
    type IntoIter = core::slice::Iter<'a, T>;
    fn into_iter(self) -> Self::IntoIter {
        self.iter()
    }
}

impl<'a, T> IntoIterator for &'a mut FrameVec<'_, '_, T> {
    type Item = &'a mut T;
    type IntoIter = core::slice::IterMut<'a, T>;
    fn into_iter(self) -> Self::IntoIter {
        self.iter_mut()
    }
}

impl<'frame, T> IntoIterator for FrameVec<'frame, '_, T> {
    type Item = T;
    type IntoIter = FrameVecIntoIter<'frame, T>;
    fn into_iter(self) -> Self::IntoIter {
        let me = mem::ManuallyDrop::new(self);
        FrameVecIntoIter {
            ptr: me.ptr,
            next: 0,
            end: me.len,
            _frame: PhantomData,
        }
    }
}

/// The by-value iterator of a [`FrameVec`]; drops the elements it did not yield.
pub struct FrameVecIntoIter<'frame, T> {
    ptr: NonNull<T>,
    next: usize,
    end: usize,
    _frame: PhantomData<(&'frame (), T)>,
}

// SAFETY: it owns the `T`s it has not yielded.
unsafe impl<T: Send> Send for FrameVecIntoIter<'_, T> {}
// SAFETY: `&FrameVecIntoIter` gives access to nothing.
unsafe impl<T: Sync> Sync for FrameVecIntoIter<'_, T> {}

impl<T> Iterator for FrameVecIntoIter<'_, T> {
    type Item = T;
    fn next(&mut self) -> Option<T> {
        if self.next == self.end {
            return None;
        }
        let i = self.next;
        self.next += 1;
        // SAFETY: elements `next..end` are initialised and ours; `i` is now outside that range.
        Some(unsafe { self.ptr.as_ptr().add(i).read() })
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        let n = self.end - self.next;
        (n, Some(n))
    }
}

impl<T> ExactSizeIterator for FrameVecIntoIter<'_, T> {}

impl<T> Drop for FrameVecIntoIter<'_, T> {
    fn drop(&mut self) {
        let (next, end) = (self.next, self.end);
        self.next = end;
        // SAFETY: elements `next..end` are initialised and ours.
        unsafe {
            ptr::drop_in_place(ptr::slice_from_raw_parts_mut(
                self.ptr.as_ptr().add(next),
                end - next,
            ))
        };
    }
}

impl<T> fmt::Debug for FrameVecIntoIter<'_, T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FrameVecIntoIter")
            .field("remaining", &(self.end - self.next))
            .finish()
    }
}
