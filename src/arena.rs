//! Frame memory: fixed-size blocks taken from one shared pool, bumped by one thread at a time.
//!
//! Naughty Dog's tagged heap is the model. Each worker bumps into a *block* (a `bumpalo::Bump`
//! of one chunk, whose allocation limit forbids it to grow). When the block is full the worker
//! takes another from the scheduler's [`Pool`] (one lock per block, not per allocation), or from
//! the system when the pool is empty. At frame end every block goes back to the pool, except
//! the one each worker is bumping into, which it keeps for the next frame. So an imbalanced
//! frame *borrows* blocks where the work lands instead of every worker keeping room for the
//! whole frame, and what the scheduler keeps follows what frames use:
//!
//! - memory kept between frames is at most 1.5 × the largest use of the last
//!   `arena_trim_after` frames in the pool, plus one block per worker; the rest is returned to
//!   the system at frame end ([`Pool::end_frame`]);
//! - an allocation bigger than a quarter of a block gets a chunk of its own (*large*), which is
//!   pooled and trimmed like blocks.
//!
//! Bookkeeping allocates nothing: the blocks of a chain, and the free blocks of the pool, are
//! linked through a small [`Link`] written into the blocks themselves.
//!
//! Values allocated with `Frame::alloc` and friends that need dropping are put on the arena's
//! *drop list* (nodes in the arena too), run at frame end before any block is reset.

use core::alloc::Layout;
use core::mem;
use core::ptr::{self, NonNull};
use std::panic::{AssertUnwindSafe, catch_unwind};

use bumpalo::Bump;

use crate::sync::{AtomicUsize, Mutex, Ordering};

/// Written into a block to link it to the block that came before it in a [`Chain`].
struct Link {
    /// The block before (it owns its memory; this is its only handle).
    block: Bump,
    /// The `Link` inside `block`, or null when `block` is the chain's first.
    prev: *mut Link,
}

/// A stack of single-chunk bumps: `head` is the newest, the others are reached through links
/// written into the blocks themselves, so pushing and popping never touch the heap.
///
/// # Invariants
/// 1. `len` counts the blocks; when it is 0, `head` is a chunkless `Bump::new()` and `link` is
///    null.
/// 2. When `len > 1`, `link` points at a `Link` inside `head`'s chunk, holding the previous
///    block and the link inside it; the chain continues so down to the first block, whose
///    `Link` (if it has been pushed onto) holds a null `prev`. When `len == 1`, `link` is null.
/// 3. Every block is a `Bump` with exactly one chunk.
struct Chain {
    head: Bump,
    link: *mut Link,
    len: usize,
}

impl Chain {
    fn new() -> Chain {
        Chain {
            head: empty_bump(),
            link: ptr::null_mut(),
            len: 0,
        }
    }

    /// Pushes `block`, which must have room for a `Link` (a fresh or reset block does).
    fn push(&mut self, block: Bump) {
        let old = mem::replace(&mut self.head, block);
        if self.len == 0 {
            // Invariant 1: `old` is chunkless; dropping it frees nothing.
            drop(old);
        } else {
            let link = Link {
                block: old,
                prev: self.link,
            };
            match self.head.try_alloc(link) {
                Ok(l) => self.link = l,
                Err(_) => unreachable!("a fresh block has room for its link"),
            }
        }
        self.len += 1;
    }

    /// Pops the newest block. Its chunk may still hold the link it was pushed with: reset it
    /// before reuse.
    fn pop(&mut self) -> Option<Bump> {
        if self.len == 0 {
            return None;
        }
        let next = if self.len > 1 {
            // SAFETY: invariant 2: `link` is a `Link` inside `head`'s chunk, written by `push`
            // and read only here, once: the `Bump` it holds moves out, and the chunk's bytes
            // are never read as a `Link` again.
            let Link { block, prev } = unsafe { ptr::read(self.link) };
            self.link = prev;
            block
        } else {
            self.link = ptr::null_mut();
            empty_bump()
        };
        self.len -= 1;
        Some(mem::replace(&mut self.head, next))
    }
}

impl Drop for Chain {
    fn drop(&mut self) {
        while self.pop().is_some() {}
    }
}

/// A bump with no chunk that refuses to grow: every allocation from it fails.
fn empty_bump() -> Bump {
    let b = Bump::new();
    b.set_allocation_limit(Some(0));
    b
}

/// A bump of one chunk of at least `capacity` bytes that refuses to grow; `None` if the system
/// refuses the memory.
pub(crate) fn new_block(capacity: usize) -> Option<Bump> {
    let b = Bump::try_with_capacity(capacity).ok()?;
    b.set_allocation_limit(Some(b.allocated_bytes()));
    Some(b)
}

/// A block of `block_size` bytes in all: bumpalo rounds a chunk up to whole pages with its
/// footer, so ask for 64 bytes less and the block holds at most `block_size` bytes.
pub(crate) fn new_sized_block(block_size: usize) -> Option<Bump> {
    new_block(block_size - 64)
}

/// Bytes of a single-chunk bump's chunk.
fn capacity(b: &Bump) -> usize {
    b.allocated_bytes()
}

/// Bytes handed out from a single-chunk bump since its last reset.
fn used(b: &Bump) -> usize {
    b.allocated_bytes() - b.chunk_capacity()
}

/// Something to drop at frame end: `len` values starting at `data`, dropped by `drop`.
struct DropNode {
    next: *mut DropNode,
    data: *mut u8,
    len: usize,
    drop: unsafe fn(*mut u8, usize),
}

/// # Safety
/// 1. `data` points at `len` initialised `T`s that nobody else will use or drop.
unsafe fn drop_slice<T>(data: *mut u8, len: usize) {
    // SAFETY: (1).
    unsafe { ptr::drop_in_place(ptr::slice_from_raw_parts_mut(data.cast::<T>(), len)) }
}

/// What one arena did in a frame, gathered at frame end.
#[derive(Debug, Default, Clone, Copy)]
pub(crate) struct ArenaUse {
    /// Bytes handed out (blocks and large chunks, padding included).
    pub(crate) used: usize,
    /// Of `used`, the bytes in blocks (not in chunks of their own).
    pub(crate) in_blocks: usize,
    /// Blocks that held allocations.
    pub(crate) blocks: usize,
    /// Blocks taken from the pool (or the system) during the frame, beyond the one kept.
    pub(crate) borrowed: usize,
    /// Allocations that got a chunk of their own.
    pub(crate) large: usize,
}

impl core::ops::AddAssign for ArenaUse {
    fn add_assign(&mut self, o: ArenaUse) {
        self.used += o.used;
        self.in_blocks += o.in_blocks;
        self.blocks += o.blocks;
        self.borrowed += o.borrowed;
        self.large += o.large;
    }
}

/// One thread's frame memory.
///
/// # Invariants
/// 1. Touched by one thread at a time (the worker that owns it during a frame, or whoever
///    holds the foreign arena's lock; the driver at frame end): `Shared` invariant 1.
/// 2. Every pointer handed out by [`Arena::alloc_layout`] stays valid until the next
///    [`Arena::end_frame`], which is called only when nothing of the frame uses them.
/// 3. `drops` is a list of nodes inside this arena's blocks, each naming initialised values in
///    frame memory that nobody else drops.
pub(crate) struct Arena {
    blocks: Chain,
    large: Chain,
    drops: *mut DropNode,
    borrowed: usize,
}

// SAFETY: the raw pointers point into the arena's own blocks (invariant 3), which move with it;
// the values on the drop list are `Send` (their allocating functions require it).
unsafe impl Send for Arena {}

impl core::fmt::Debug for Arena {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("Arena")
            .field("blocks", &self.blocks.len)
            .field("large", &self.large.len)
            .finish_non_exhaustive()
    }
}

impl Arena {
    /// An arena bumping into `first`, if given (a worker's kept block), else empty.
    pub(crate) fn new(first: Option<Bump>) -> Arena {
        let mut blocks = Chain::new();
        if let Some(b) = first {
            blocks.push(b);
        }
        Arena {
            blocks,
            large: Chain::new(),
            drops: ptr::null_mut(),
            borrowed: 0,
        }
    }

    /// Room for `layout` in this arena, taking a block from `pool` if the current one is full.
    #[inline]
    pub(crate) fn alloc_layout(&mut self, layout: Layout, pool: &Pool) -> NonNull<u8> {
        match self.blocks.head.try_alloc_layout(layout) {
            Ok(p) => p,
            Err(_) => self.alloc_slow(layout, pool),
        }
    }

    #[cold]
    #[inline(never)]
    fn alloc_slow(&mut self, layout: Layout, pool: &Pool) -> NonNull<u8> {
        if layout.size().saturating_add(layout.align()) > pool.large_min {
            // A chunk of its own, with room for the link too.
            let need = layout
                .size()
                .checked_add(layout.align())
                .and_then(|n| n.checked_add(mem::size_of::<Link>() + 64))
                .unwrap_or_else(|| alloc_failed(layout));
            let chunk = pool
                .take_large(need)
                .or_else(|| new_block(need))
                .unwrap_or_else(|| alloc_failed(layout));
            self.large.push(chunk);
            return match self.large.head.try_alloc_layout(layout) {
                Ok(p) => p,
                Err(_) => unreachable!("a large chunk is made to fit its allocation"),
            };
        }
        let block = pool
            .take_block()
            .or_else(|| new_sized_block(pool.block_size))
            .unwrap_or_else(|| alloc_failed(layout));
        self.blocks.push(block);
        // A worker's first block of the frame is its own; any more are borrowed.
        if self.blocks.len > 1 {
            self.borrowed += 1;
        }
        match self.blocks.head.try_alloc_layout(layout) {
            Ok(p) => p,
            Err(_) => unreachable!("a fresh block fits any allocation below large_min"),
        }
    }

    /// Puts `len` values at `data` on the drop list, to be dropped at frame end.
    ///
    /// # Safety
    /// 1. `data` points at `len` initialised `T`s in frame memory (of any arena of this
    ///    scheduler) that stay valid and that nobody else uses after the frame's jobs or drops
    ///    until frame end.
    /// 2. `T: Send`, and `T` holds no borrow of frame memory (so dropping it at frame end, in any
    ///    order with the other frame values, reads nothing already dropped).
    pub(crate) unsafe fn defer_drop<T>(&mut self, data: NonNull<T>, len: usize, pool: &Pool) {
        if !mem::needs_drop::<T>() || len == 0 {
            return;
        }
        let node = self
            .alloc_layout(Layout::new::<DropNode>(), pool)
            .cast::<DropNode>();
        // SAFETY: freshly allocated room for a `DropNode`.
        unsafe {
            node.as_ptr().write(DropNode {
                next: self.drops,
                data: data.as_ptr().cast(),
                len,
                drop: drop_slice::<T>,
            })
        };
        self.drops = node.as_ptr();
    }

    /// Drops everything on the drop list, newest first, handing each panic to `on_panic`.
    ///
    /// # Safety
    /// 1. The frame is over: no job runs, and nothing of the frame will use the values again.
    pub(crate) unsafe fn run_drops(
        &mut self,
        on_panic: &mut dyn FnMut(Box<dyn core::any::Any + Send>),
    ) {
        while let Some(node) = NonNull::new(self.drops) {
            // SAFETY: invariant 3: the node is live until the blocks are reset.
            let n = unsafe { node.as_ptr().read() };
            self.drops = n.next;
            // SAFETY: invariant 3 and (1): the values are ours alone to drop, once.
            if let Err(p) = catch_unwind(AssertUnwindSafe(|| unsafe { (n.drop)(n.data, n.len) })) {
                on_panic(p);
            }
        }
    }

    /// Frame end: gives every block but the current one (and every large chunk) back to
    /// `pool`, resets the kept one, and says what the frame used. With `keep == false` (the
    /// foreign arena) the current block goes back too.
    ///
    /// # Safety
    /// 1. Nothing of the frame uses this arena's memory any more, and `run_drops` has run.
    pub(crate) unsafe fn end_frame(&mut self, pool: &Pool, keep: bool) -> ArenaUse {
        debug_assert!(self.drops.is_null(), "drop list not run before the reset");
        let mut u = ArenaUse {
            borrowed: mem::take(&mut self.borrowed),
            large: self.large.len,
            ..ArenaUse::default()
        };
        if keep && self.large.len == 0 && self.blocks.len == 1 {
            // The common frame: everything fitted in the worker's own block. No lock.
            let n = used(&self.blocks.head);
            if n > 0 {
                self.blocks.head.reset();
            }
            u.used = n;
            u.in_blocks = n;
            u.blocks = usize::from(n > 0);
            return u;
        }
        let mut free = pool.lock();
        while let Some(mut b) = self.large.pop() {
            u.used += used(&b);
            b.reset();
            free.push_large(b);
        }
        let mut kept = None;
        while let Some(mut b) = self.blocks.pop() {
            let n = used(&b);
            u.used += n;
            u.in_blocks += n;
            u.blocks += usize::from(n > 0);
            b.reset();
            if keep && kept.is_none() {
                kept = Some(b);
            } else {
                free.push_block(b);
            }
        }
        pool.publish(&free);
        drop(free);
        if let Some(b) = kept {
            self.blocks.push(b);
        }
        u
    }

    /// Bytes this arena keeps between frames (its current block).
    pub(crate) fn kept(&self) -> usize {
        if self.blocks.len == 0 {
            0
        } else {
            capacity(&self.blocks.head)
        }
    }
}

#[cold]
fn alloc_failed(layout: Layout) -> ! {
    std::alloc::handle_alloc_error(layout)
}

/// The free blocks and large chunks, and the recent history of frame use.
struct Free {
    blocks: Chain,
    large: Chain,
    block_bytes: usize,
    large_bytes: usize,
}

impl Free {
    fn push_block(&mut self, b: Bump) {
        self.block_bytes += capacity(&b);
        self.blocks.push(b);
    }

    fn push_large(&mut self, b: Bump) {
        self.large_bytes += capacity(&b);
        self.large.push(b);
    }

    fn pop_block(&mut self) -> Option<Bump> {
        let mut b = self.blocks.pop()?;
        self.block_bytes -= capacity(&b);
        b.reset();
        Some(b)
    }

    fn pop_large(&mut self) -> Option<Bump> {
        let mut b = self.large.pop()?;
        self.large_bytes -= capacity(&b);
        b.reset();
        Some(b)
    }
}

/// The scheduler's shared pool of free blocks, and its trimming policy.
///
/// # Invariants
/// 1. Every block in `free.blocks` has `block_size` bytes or more and one chunk; every chunk in
///    either list is reset but for the link it holds.
/// 2. `history` is touched only by the driver at frame end.
pub(crate) struct Pool {
    /// Bytes asked for each block.
    pub(crate) block_size: usize,
    /// Bytes a block really holds (at least `block_size`).
    block_capacity: usize,
    /// The scheduler's workers.
    workers: usize,
    /// Allocations of this many bytes or more (size plus alignment) get a chunk of their own.
    pub(crate) large_min: usize,
    free: Mutex<Free>,
    /// What `free` holds, in bytes and in blocks: written under its lock, read without it at
    /// frame end so that a frame with nothing to trim or stock takes no lock.
    free_bytes: AtomicUsize,
    free_blocks: AtomicUsize,
    /// The bytes used by each of the last frames (a ring), for trimming.
    history: crate::sync::UnsafeCell<History>,
}

struct History {
    /// Per frame: (bytes used, of which in blocks).
    used: Box<[(usize, usize)]>,
    next: usize,
    /// The largest of `used`'s first and second halves (not necessarily the same frame's).
    peak: (usize, usize),
    /// `reserve_for(peak.1)`, recomputed only when that peak changes: a division per frame
    /// is most of an empty frame's pool bookkeeping.
    reserve: (usize, usize),
}

// SAFETY: `free` is behind a mutex; `history` is touched by the driver alone (invariant 2).
unsafe impl Sync for Pool {}
// SAFETY: as above; the bumps are `Send`.
unsafe impl Send for Pool {}

impl core::fmt::Debug for Pool {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("Pool")
            .field("block_size", &self.block_size)
            .finish_non_exhaustive()
    }
}

/// What a frame's end did to the pool.
#[derive(Debug, Default, Clone, Copy)]
pub(crate) struct PoolEnd {
    /// Bytes in the pool after trimming.
    pub(crate) free: usize,
    /// Bytes returned to the system.
    pub(crate) trimmed: usize,
}

impl Pool {
    /// A pool of blocks of `block_size` bytes for `workers` workers, trimming to the use of the
    /// last `trim_after` frames. `None` if the memory cannot be had.
    pub(crate) fn try_new(block_size: usize, trim_after: usize, workers: usize) -> Option<Pool> {
        let mut history = Vec::new();
        history.try_reserve_exact(trim_after).ok()?;
        history.resize(trim_after, (0, 0));
        let mut free = Free {
            blocks: Chain::new(),
            large: Chain::new(),
            block_bytes: 0,
            large_bytes: 0,
        };
        // One block to learn what a block really holds (bumpalo rounds its chunks up); it
        // stays in the pool.
        let first = new_sized_block(block_size)?;
        let block_capacity = capacity(&first);
        free.push_block(first);
        Some(Pool {
            block_size,
            block_capacity,
            workers,
            large_min: block_size / 4,
            free: Mutex::new(free),
            free_bytes: AtomicUsize::new(block_capacity),
            free_blocks: AtomicUsize::new(1),
            history: crate::sync::UnsafeCell::new(History {
                used: history.into_boxed_slice(),
                next: 0,
                peak: (0, 0),
                // No peak is `usize::MAX` bytes: the first frame end computes the reserve.
                reserve: (usize::MAX, 0),
            }),
        })
    }

    /// Mirrors what `free` holds for lock-free reads (call under the lock).
    fn publish(&self, free: &Free) {
        self.free_bytes
            .store(free.block_bytes + free.large_bytes, Ordering::Relaxed);
        self.free_blocks.store(free.blocks.len, Ordering::Relaxed);
    }

    /// The free blocks the pool keeps for frames that used up to `peak` bytes in blocks: what
    /// that much work takes from the pool when it lands on one worker, 10 % more, and two
    /// blocks, so that frames of the same work that land differently (a parallel loop splits
    /// differently each time, a worker's last block is part-filled) still find the pool
    /// stocked. Stocking never goes beyond the trimming budget.
    fn reserve_for(&self, peak: usize) -> usize {
        peak.saturating_add(peak / 10) / self.block_size + 2
    }

    fn lock(&self) -> crate::sync::MutexGuard<'_, Free> {
        crate::sync::lock(&self.free)
    }

    fn take_block(&self) -> Option<Bump> {
        let mut free = self.lock();
        let b = free.pop_block();
        self.publish(&free);
        b
    }

    /// A pooled large chunk with room for `need` bytes (plus its link), if there is one.
    fn take_large(&self, need: usize) -> Option<Bump> {
        let mut free = self.lock();
        if free.large.len == 0 {
            return None;
        }
        // First fit; the chunks passed over go back in the same order.
        let mut passed = Chain::new();
        let mut found = None;
        while let Some(b) = free.pop_large() {
            if b.chunk_capacity() >= need {
                found = Some(b);
                break;
            }
            passed.push(b);
        }
        while let Some(b) = passed.pop() {
            let mut b = b;
            b.reset();
            free.push_large(b);
        }
        self.publish(&free);
        found
    }

    /// Frame end, after every arena's `end_frame`: records the frame's use, gives back to the
    /// system what the pool holds beyond 1.5 × the largest use of the recent frames, and keeps
    /// enough free blocks for the recent peak's work in blocks (see [`Pool::reserve_for`]).
    ///
    /// # Safety
    /// 1. Called by the driver alone (invariant 2).
    pub(crate) unsafe fn end_frame(&self, used: ArenaUse) -> PoolEnd {
        let now = (used.used, used.in_blocks);
        // SAFETY: (1).
        let peak = self.history.with_mut(|h| unsafe {
            let h = &mut *h;
            let n = h.next;
            let evicted = mem::replace(&mut h.used[n], now);
            h.next = if n + 1 == h.used.len() { 0 } else { n + 1 };
            // Each half's sliding maximum, recomputed only when its peak leaves the window.
            if now.0 >= h.peak.0 {
                h.peak.0 = now.0;
            } else if evicted.0 == h.peak.0 {
                h.peak.0 = h.used.iter().map(|u| u.0).max().unwrap_or(0);
            }
            if now.1 >= h.peak.1 {
                h.peak.1 = now.1;
            } else if evicted.1 == h.peak.1 {
                h.peak.1 = h.used.iter().map(|u| u.1).max().unwrap_or(0);
            }
            // Blocks for the work that went into blocks (large chunks are pooled on their
            // own).
            if h.reserve.0 != h.peak.1 {
                h.reserve = (h.peak.1, self.reserve_for(h.peak.1));
            }
            (h.peak.0, h.reserve.1)
        });
        let (peak, reserve) = peak;
        let budget = peak.saturating_add(peak / 2);
        let free_bytes = self.free_bytes.load(Ordering::Relaxed);
        // Nothing to trim, and nothing to stock: stocked already, or no room in the budget for
        // another block (small frames, whose budget is under a block). The lock is not taken.
        if free_bytes <= budget
            && (self.free_blocks.load(Ordering::Relaxed) >= reserve
                || free_bytes + self.block_capacity > budget)
        {
            return PoolEnd {
                free: free_bytes,
                trimmed: 0,
            };
        }
        let mut free = self.lock();
        let mut trimmed = 0;
        // Blocks beyond the reserve first (a spike's, or stock no longer needed), then large
        // chunks (a spike's, or allocations that no longer come), then the reserve itself:
        // chunks that every frame takes must not be given back because stock filled the budget.
        while free.large_bytes + free.block_bytes > budget {
            let b = if free.blocks.len > reserve {
                free.pop_block()
            } else {
                free.pop_large().or_else(|| free.pop_block())
            };
            let Some(b) = b else { break };
            trimmed += capacity(&b);
            drop(b);
        }
        // Stock the pool for the peak (this allocates only in a frame that raised the peak well
        // above the last stocking, never in a steady frame): a steady frame whose work lands
        // differently then never has to ask the system for a block.
        // Below the reserve, stock one block per worker beyond it (within the budget): a frame
        // that uses a little more than any before, as loops that split differently do now and
        // then, then takes blocks from the pool instead of the system.
        let target = if free.blocks.len < reserve {
            reserve + self.workers
        } else {
            0
        };
        while free.blocks.len < target
            && free.block_bytes + free.large_bytes + self.block_capacity <= budget
        {
            match new_sized_block(self.block_size) {
                Some(b) => free.push_block(b),
                None => break,
            }
        }
        self.publish(&free);
        let bytes = free.large_bytes + free.block_bytes;
        PoolEnd {
            free: bytes,
            trimmed,
        }
    }
}
