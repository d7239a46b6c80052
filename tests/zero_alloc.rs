//! Steady-state frames make zero heap allocations: counted exactly with a counting global
//! allocator, in a binary of its own (`harness = false`) so no test harness allocates beside us.
//!
//! Every thread's allocations count, the worker threads' included.

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use std::sync::Mutex;
use std::task::{Poll, Waker};

use frame_scheduler::{Frame, Scheduler};

/// Wakers kept past their frame, as an engine's I/O or event source might: each frame, every
/// outer job puts its waker in its slot, replacing (dropping) the one the last frame left.
static KEPT_WAKERS: [Mutex<Option<Waker>>; OUTER] = [const { Mutex::new(None) }; OUTER];

/// Counts drops of frame values, so the frame API's drops are checked too.
static DROPS: AtomicU64 = AtomicU64::new(0);

struct Tracked(u64);

impl Drop for Tracked {
    fn drop(&mut self) {
        DROPS.fetch_add(1, Ordering::Relaxed);
    }
}

/// Stores the job's waker in slot `o` of `KEPT_WAKERS` and finishes.
fn keep_waker(o: usize) -> impl Future<Output = ()> {
    std::future::poll_fn(move |cx| {
        *KEPT_WAKERS[o].lock().unwrap() = Some(cx.waker().clone());
        Poll::Ready(())
    })
}

struct Counting;

static COUNTING: AtomicBool = AtomicBool::new(false);
static ALLOCS: AtomicU64 = AtomicU64::new(0);
static BYTES: AtomicU64 = AtomicU64::new(0);

// SAFETY: forwards every call to `System` unchanged; only counts on the side.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        if COUNTING.load(Ordering::Relaxed) {
            ALLOCS.fetch_add(1, Ordering::Relaxed);
            BYTES.fetch_add(layout.size() as u64, Ordering::Relaxed);
        }
        // SAFETY: same contract as ours.
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: same contract as ours.
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        if COUNTING.load(Ordering::Relaxed) {
            ALLOCS.fetch_add(1, Ordering::Relaxed);
            BYTES.fetch_add(new_size as u64, Ordering::Relaxed);
        }
        // SAFETY: same contract as ours.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

const COUNTED_JOBS: usize = 10_000;
const OUTER: usize = 64;
const INNER: usize = 64;

/// Runs `f` with the counting allocator on and returns the heap allocations and bytes that
/// every thread made meanwhile.
fn count_allocations(f: impl FnOnce()) -> (u64, u64) {
    ALLOCS.store(0, Ordering::SeqCst);
    BYTES.store(0, Ordering::SeqCst);
    COUNTING.store(true, Ordering::SeqCst);
    f();
    COUNTING.store(false, Ordering::SeqCst);
    (ALLOCS.load(Ordering::SeqCst), BYTES.load(Ordering::SeqCst))
}

/// 10 000 counted jobs writing a borrowed slice, plus 64 jobs that each spawn 64 and await them
/// through a counter and through handles. Returns the number of jobs spawned.
fn frame_workload(scheduler: &mut Scheduler, slots: &mut [u64], nested: &[u64]) {
    scheduler.run_frame(async |frame: &Frame<'_, '_>| {
        let fan_out = frame.counter();
        for (i, slot) in slots.iter_mut().enumerate() {
            frame.spawn_counted(fan_out, async move { *slot = slot.wrapping_add(i as u64) });
        }
        let outer = frame.counter();
        for o in 0..OUTER {
            frame.spawn_counted(outer, async move {
                let inner = frame.counter();
                for i in 0..INNER / 2 {
                    let v = nested[o * INNER + i];
                    frame.spawn_counted(inner, async move {
                        std::hint::black_box(v);
                    });
                }
                let mut sum = 0;
                for i in INNER / 2..INNER {
                    let v = nested[o * INNER + i];
                    sum += frame.spawn(async move { v * 2 }).await;
                }
                inner.await;
                // Frame memory: a growing vector, values with destructors, a string.
                let mut contacts = frame.vec();
                for i in 0..40u64 {
                    contacts.push(i * sum);
                }
                let kept = contacts.into_slice();
                let owned = frame.alloc(Tracked(kept[3]));
                let many = frame.alloc_slice_fill_with(4, |i| Tracked(i as u64));
                let label = frame.alloc_str("outer job");
                std::hint::black_box((owned.0, many.len(), label.len()));
                keep_waker(o).await;
            });
        }
        fan_out.await;
        outer.await;
    });
}

fn check(workers: usize) {
    DROPS.store(0, Ordering::SeqCst);
    let mut scheduler = Scheduler::builder().workers(workers).build().unwrap();
    let mut slots = vec![0u64; COUNTED_JOBS];
    let nested: Vec<u64> = (0..(OUTER * INNER) as u64).collect();

    // Warm up: arenas grow to their steady size, queues and pools settle.
    for _ in 0..50 {
        frame_workload(&mut scheduler, &mut slots, &nested);
    }
    let expected_jobs = (COUNTED_JOBS + OUTER + OUTER * INNER) as u64;
    assert_eq!(scheduler.last_frame_stats().jobs, expected_jobs);

    let mut rows_read = 0;
    let (allocs, bytes) = count_allocations(|| {
        for frame in 0..100 {
            frame_workload(&mut scheduler, &mut slots, &nested);
            // The per-worker rows are converted when first read, into kept memory: reading
            // them (every other frame, so that frames also end with unread rows) allocates
            // nothing either.
            if frame % 2 == 0 {
                let stats = scheduler.last_frame_stats();
                let rows = stats.workers();
                assert_eq!(rows.len(), workers);
                assert_eq!(rows.iter().map(|r| r.jobs).sum::<u64>(), expected_jobs);
                rows_read += 1;
            }
        }
    });
    assert_eq!(rows_read, 50);

    // Frame values were dropped: 5 per outer job per frame (150 frames).
    assert_eq!(DROPS.swap(0, Ordering::SeqCst), 150 * 5 * OUTER as u64);
    assert!(KEPT_WAKERS.iter().all(|w| w.lock().unwrap().is_some()));

    // The work really happened: each slot i got i added once per frame (150 frames).
    for (i, s) in slots.iter().enumerate() {
        assert_eq!(*s, (i as u64).wrapping_mul(150), "slot {i}");
    }
    assert_eq!(scheduler.last_frame_stats().jobs, expected_jobs);
    println!(
        "workers({workers}): 100 frames of {expected_jobs} jobs: {allocs} heap allocations, \
         {bytes} bytes"
    );
    assert_eq!(
        allocs, 0,
        "steady-state frames allocated {allocs} times ({bytes} bytes)"
    );
}

/// A mapped value with a destructor (dropped at frame end), holding no heap memory.
struct Dropped(u64);

impl Drop for Dropped {
    fn drop(&mut self) {
        std::hint::black_box(self.0);
    }
}

/// Data-parallel loops: `parallel_for`, two `for_each_chunk` passes over one slice, a
/// `spawn_batch` of 1000 jobs, and two maps (one of values dropped at frame end). Their pieces
/// are arena jobs too.
fn parallel_workload(
    scheduler: &mut Scheduler,
    items: &mut [u64],
    sum: &std::sync::atomic::AtomicU64,
) {
    scheduler.run_frame(async |frame: &Frame<'_, '_>| {
        let for_loop = frame.parallel_for(0..100_000, 64, |r| {
            sum.fetch_add(r.len() as u64, Ordering::Relaxed);
        });
        let items = frame
            .for_each_chunk(items, 256, |start, c| {
                c.iter_mut()
                    .enumerate()
                    .for_each(|(k, x)| *x += (start + k) as u64)
            })
            .await;
        let (left, right) = items.split_at_mut(1000);
        let batch = frame.counter();
        frame.spawn_batch(batch, left.iter_mut().map(|x| async move { *x += 1 }));
        let right = frame
            .for_each_chunk(right, 1, |_, c| c.iter_mut().for_each(|x| *x += 1))
            .await;
        batch.await;
        for_loop.await;
        let right: &[u64] = right;
        let doubled = frame.map(right, 256, |x| x * 2).await;
        let dropped = frame.map(doubled, 256, |&x| Dropped(x)).await;
        assert_eq!(dropped.len(), right.len());
    });
}

fn check_parallel(workers: usize) {
    let mut scheduler = Scheduler::builder().workers(workers).build().unwrap();
    let mut items = vec![0u64; 100_000];
    let sum = std::sync::atomic::AtomicU64::new(0);
    for _ in 0..50 {
        parallel_workload(&mut scheduler, &mut items, &sum);
    }
    let (allocs, bytes) = count_allocations(|| {
        for _ in 0..100 {
            parallel_workload(&mut scheduler, &mut items, &sum);
        }
    });
    // The work really happened, 150 times.
    for (i, x) in items.iter().enumerate() {
        assert_eq!(*x, 150 * (i as u64 + 1), "item {i}");
    }
    assert_eq!(sum.load(Ordering::SeqCst), 150 * 100_000);
    println!(
        "workers({workers}): 100 frames of loops ({} jobs in the last): {allocs} heap \
         allocations, {bytes} bytes",
        scheduler.last_frame_stats().jobs
    );
    assert_eq!(
        allocs, 0,
        "steady-state frames of loops allocated {allocs} times ({bytes} bytes)"
    );
}

/// Recording a trace allocates nothing either: the buffers come from `trace_capacity`, and a
/// full buffer drops events (counted) instead of growing.
fn check_traced(workers: usize) {
    let mut scheduler = Scheduler::builder()
        .workers(workers)
        .trace_capacity(1 << 16)
        .build()
        .unwrap();
    let mut slots = vec![0u64; COUNTED_JOBS];
    let nested: Vec<u64> = (0..(OUTER * INNER) as u64).collect();
    for _ in 0..50 {
        frame_workload(&mut scheduler, &mut slots, &nested);
    }
    scheduler.start_trace();
    let (allocs, bytes) = count_allocations(|| {
        for _ in 0..20 {
            frame_workload(&mut scheduler, &mut slots, &nested);
        }
    });
    let trace = scheduler.take_trace();
    // The buffers filled up: every worker recorded, then dropped the rest.
    assert!(
        trace.events().len() >= (1 << 16),
        "{} events",
        trace.events().len()
    );
    assert!(trace.dropped() > 0);
    println!(
        "workers({workers}): 20 traced frames: {allocs} heap allocations, {bytes} bytes ({} \
         events kept, {} dropped)",
        trace.events().len(),
        trace.dropped()
    );
    assert_eq!(
        allocs, 0,
        "traced frames allocated {allocs} times ({bytes} bytes)"
    );
    DROPS.store(0, Ordering::SeqCst);
}

/// Stall detection on (`stall_after`) allocates nothing in steady frames either: each job's
/// node for the watchdog is frame memory, and the watchdog thread (started at build) sleeps
/// until a frame is `stall_after` old, which none of these is. Both workloads, each on a
/// scheduler of its own (alternating them is not a steady state for the arena pool, with or
/// without stall detection: the loops' large chunk is given back and taken again).
fn check_stall_watch(workers: usize) {
    let watched = || {
        Scheduler::builder()
            .workers(workers)
            .stall_after(std::time::Duration::from_secs(60))
            .on_stall(|report| panic!("no frame here stalls, yet: {report}"))
            .build()
            .unwrap()
    };
    let mut counted = watched();
    let mut loops = watched();
    let mut slots = vec![0u64; COUNTED_JOBS];
    let nested: Vec<u64> = (0..(OUTER * INNER) as u64).collect();
    let mut items = vec![0u64; 100_000];
    let sum = std::sync::atomic::AtomicU64::new(0);
    for _ in 0..50 {
        frame_workload(&mut counted, &mut slots, &nested);
        parallel_workload(&mut loops, &mut items, &sum);
    }
    let mut allocs = 0;
    let mut bytes = 0;
    for phase in 0..2 {
        let (a, b) = count_allocations(|| {
            for _ in 0..50 {
                if phase == 0 {
                    frame_workload(&mut counted, &mut slots, &nested);
                } else {
                    parallel_workload(&mut loops, &mut items, &sum);
                }
            }
        });
        allocs += a;
        bytes += b;
    }
    for (i, s) in slots.iter().enumerate() {
        assert_eq!(*s, (i as u64).wrapping_mul(100), "slot {i}");
    }
    assert_eq!(sum.load(Ordering::SeqCst), 100 * 100_000);
    DROPS.store(0, Ordering::SeqCst);
    println!(
        "workers({workers}): 100 frames with stall detection on: {allocs} heap allocations, \
         {bytes} bytes"
    );
    assert_eq!(
        allocs, 0,
        "frames with stall detection on allocated {allocs} times ({bytes} bytes)"
    );
}

/// A scheduler just built allocates nothing while it sits there: its threads' own start-up
/// in `std` (which allocates the thread's name, among others) is over before `build` returns,
/// the stall watchdog's included. The count starts the instant `build` returns.
fn check_quiet_after_build(workers: usize) {
    let mut allocs = 0;
    let mut bytes = 0;
    for stall in [false, true] {
        for _ in 0..4 {
            let mut builder = Scheduler::builder().workers(workers);
            if stall {
                builder = builder.stall_after(std::time::Duration::from_secs(60));
            }
            let scheduler = builder.build().unwrap();
            let (a, b) =
                count_allocations(|| std::thread::sleep(std::time::Duration::from_millis(5)));
            allocs += a;
            bytes += b;
            drop(scheduler);
        }
    }
    println!(
        "workers({workers}): 8 schedulers, 5 ms each after build: {allocs} heap allocations, \
         {bytes} bytes"
    );
    assert_eq!(
        allocs, 0,
        "a scheduler allocated {allocs} times ({bytes} bytes) after build returned"
    );
}

fn main() {
    for workers in [1, 2, 4] {
        check_quiet_after_build(workers);
    }
    for workers in [1, 2, 4, 8, 16] {
        check(workers);
    }
    for workers in [1, 2, 4] {
        check_traced(workers);
    }
    for workers in [1, 2, 4, 8, 16] {
        check_parallel(workers);
    }
    for workers in [1, 2, 4] {
        check_stall_watch(workers);
    }
    println!("zero_alloc: 19 passed, 0 failed");
}
