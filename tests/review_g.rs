//! Review G: soundness attacks on frame memory (arena.rs, memory.rs), over-aligned and large
//! jobs (job/raw.rs), recycled wake cells (waker.rs), frame end (scheduler.rs), `Counter::until`
//! and the worker thread hooks. Each test tries to get a double drop, a leak of a value that
//! needs dropping, a use after free or after reset, or a hang; valgrind and ASan runs of this
//! file turn a silent memory error into a failure.

mod common;

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::atomic::{AtomicUsize, Ordering};

use common::{payload_str, small_blocks, within};
use frame_scheduler::{Scheduler, yield_now};

/// Counts its drops; `panics` makes its drop panic (after counting).
#[derive(Debug)]
struct D<'a> {
    drops: &'a AtomicUsize,
    id: usize,
    panics: bool,
}

impl<'a> D<'a> {
    fn new(drops: &'a AtomicUsize, id: usize) -> D<'a> {
        D {
            drops,
            id,
            panics: false,
        }
    }
}

impl Drop for D<'_> {
    fn drop(&mut self) {
        self.drops.fetch_add(1, Ordering::SeqCst);
        if self.panics {
            panic!("drop of D {} panics", self.id);
        }
    }
}

/// Clones count themselves; the clone of id `bad` panics.
struct C<'a> {
    live: &'a AtomicUsize,
    id: usize,
    bad: usize,
}

impl<'a> C<'a> {
    fn new(live: &'a AtomicUsize, id: usize, bad: usize) -> C<'a> {
        live.fetch_add(1, Ordering::SeqCst);
        C { live, id, bad }
    }
}

impl Clone for C<'_> {
    fn clone(&self) -> Self {
        if self.id == self.bad {
            panic!("clone of C {} panics", self.id);
        }
        C::new(self.live, self.id, self.bad)
    }
}

impl Drop for C<'_> {
    fn drop(&mut self) {
        self.live.fetch_sub(1, Ordering::SeqCst);
    }
}

// ---------------------------------------------------------------------------------------------
// G1: over-aligned futures and outputs (128, 4096, 1 << 16) spawned from the root, from jobs and
// from a thread that is not a worker, with 4 KiB blocks (so most of them are "large").
// ---------------------------------------------------------------------------------------------

#[repr(align(128))]
#[derive(Clone, Copy)]
struct A128([u8; 200]);
#[repr(align(4096))]
#[derive(Clone, Copy)]
struct A4k([u8; 100]);
#[repr(align(65536))]
#[derive(Clone, Copy)]
struct A64k([u8; 10]);

async fn aligned_job<T: Copy + Send + 'static>(v: T, byte: fn(&T) -> u8) -> (usize, u8, T) {
    let local = v;
    yield_now().await;
    let at = &local as *const T as usize % std::mem::align_of::<T>();
    (at, byte(&local), local)
}

#[test]
fn g1_over_aligned_futures_from_root_jobs_and_foreign_threads() {
    within(60, || {
        for workers in [1, 3] {
            let mut s = small_blocks(workers);
            for _ in 0..3 {
                let total = s.run_frame(async |frame| {
                    let mut hs = Vec::new();
                    for i in 0..6u8 {
                        hs.push(frame.spawn(async move {
                            let a = frame.spawn(aligned_job(A128([i; 200]), |a| a.0[199])).await;
                            let b = frame.spawn(aligned_job(A4k([i; 100]), |a| a.0[99])).await;
                            let c = frame.spawn(aligned_job(A64k([i; 10]), |a| a.0[9])).await;
                            assert_eq!((a.0, b.0, c.0), (0, 0, 0), "misaligned future");
                            assert_eq!((a.1, b.1, c.1), (i, i, i));
                            // The outputs are over-aligned too.
                            assert_eq!(&a.2 as *const A128 as usize % 128, 0);
                            assert_eq!(&b.2 as *const A4k as usize % 4096, 0);
                            assert_eq!(&c.2 as *const A64k as usize % 65536, 0);
                            assert_eq!((a.2.0[0], b.2.0[0], c.2.0[0]), (i, i, i));
                            a.1 as usize + b.1 as usize + c.1 as usize
                        }));
                    }
                    // From a thread that is not a worker: the foreign arena.
                    let foreign = std::thread::scope(|sc| {
                        sc.spawn(|| {
                            let h1 = frame.spawn(aligned_job(A64k([7; 10]), |a| a.0[3]));
                            let h2 = frame.spawn(aligned_job(A4k([8; 100]), |a| a.0[3]));
                            (h1, h2)
                        })
                        .join()
                        .unwrap()
                    });
                    let (f1, f2) = (foreign.0.await, foreign.1.await);
                    assert_eq!((f1.0, f2.0), (0, 0));
                    let mut sum = f1.1 as usize + f2.1 as usize;
                    for h in hs {
                        sum += h.await;
                    }
                    sum
                });
                assert_eq!(total, 15 + 3 * (0..6).sum::<usize>());
            }
        }
    });
}

// ---------------------------------------------------------------------------------------------
// G2: futures and outputs larger than a block (4 KiB blocks), and FrameVecs that outgrow blocks
// many times over, spread over workers; trimmed after every frame (arena_trim_after(1)).
// ---------------------------------------------------------------------------------------------

#[test]
fn g2_large_futures_outputs_and_vecs_with_tiny_blocks_and_trim_after_one() {
    within(60, || {
        let mut s = small_blocks(3);
        for round in 0..6usize {
            let big = round % 2 == 0;
            let got = s.run_frame(async |frame| {
                let mut hs = Vec::new();
                for j in 0..4usize {
                    let payload = [j as u8; 20_000];
                    hs.push(frame.spawn(async move {
                        yield_now().await;
                        let mut v = frame.vec::<u64>();
                        let n = if big { 50_000 } else { 10 };
                        for k in 0..n {
                            v.push(k as u64);
                            if k % 5000 == 0 {
                                yield_now().await; // may resume on another worker
                            }
                        }
                        let out = [payload[19_999]; 9000];
                        (v.iter().sum::<u64>(), out)
                    }));
                }
                let mut sum = 0u64;
                for h in hs {
                    let (s, out) = h.await;
                    sum += s + out.iter().map(|&b| u64::from(b)).sum::<u64>();
                }
                sum
            });
            let n: u64 = if big { 50_000 } else { 10 };
            assert_eq!(got, 4 * (n * (n - 1) / 2) + 9000 * 6);
        }
    });
}

// ---------------------------------------------------------------------------------------------
// G3: alloc_slice_fill_with with a closure that re-enters the frame API: alloc, vec, into_slice,
// a nested alloc_slice_fill_with, spawn. Every value is dropped exactly once, also when the
// closure panics half way.
// ---------------------------------------------------------------------------------------------

#[test]
fn g3_fill_with_reentering_the_frame_api_drops_everything_once() {
    within(60, || {
        let mut s = small_blocks(2);
        let drops = AtomicUsize::new(0);
        let made = AtomicUsize::new(0);
        let (d, m) = (&drops, &made);
        s.run_frame(async |frame| {
            let outer = frame.alloc_slice_fill_with(50, |i| {
                m.fetch_add(1, Ordering::SeqCst);
                let inner = frame.alloc(D::new(d, 1000 + i));
                m.fetch_add(1, Ordering::SeqCst);
                let mut v = frame.vec();
                for k in 0..3 {
                    m.fetch_add(1, Ordering::SeqCst);
                    v.push(D::new(d, k));
                }
                let kept = v.into_slice();
                let nested = frame.alloc_slice_fill_with(2, |k| {
                    m.fetch_add(1, Ordering::SeqCst);
                    D::new(d, k)
                });
                let h = frame.spawn(async move {
                    m.fetch_add(1, Ordering::SeqCst);
                    D::new(d, 7) // output dropped by the detached handle
                });
                drop(h);
                assert_eq!(kept.len() + nested.len(), 5);
                inner.id += 1;
                D::new(d, i)
            });
            assert_eq!(outer.len(), 50);
        });
        assert_eq!(made.load(Ordering::SeqCst), 50 * 8);
        assert_eq!(drops.load(Ordering::SeqCst), 50 * 8);

        // The closure panics at index 30: what it made is dropped once, the rest at frame end.
        drops.store(0, Ordering::SeqCst);
        made.store(0, Ordering::SeqCst);
        let r = catch_unwind(AssertUnwindSafe(|| {
            s.run_frame(async |frame| {
                frame.alloc_slice_fill_with(50, |i| {
                    let _side = frame.alloc(D::new(d, 5000 + i));
                    m.fetch_add(1, Ordering::SeqCst);
                    if i == 30 {
                        panic!("fill closure panics at 30");
                    }
                    m.fetch_add(1, Ordering::SeqCst);
                    D::new(d, i)
                });
            })
        }));
        assert_eq!(payload_str(&*r.unwrap_err()), "fill closure panics at 30");
        assert_eq!(made.load(Ordering::SeqCst), 31 + 30);
        assert_eq!(drops.load(Ordering::SeqCst), 31 + 30);
    });
}

// ---------------------------------------------------------------------------------------------
// G4: FrameVec under panics: extend_from_slice with a panicking clone, clear with a panicking
// drop then pop/push, into_iter dropped half way with a panicking drop.
// ---------------------------------------------------------------------------------------------

#[test]
fn g4_frame_vec_panicking_clone_and_drop_leave_no_double_drop_or_leak() {
    let mut s = small_blocks(1);
    let live = AtomicUsize::new(0);
    let drops = AtomicUsize::new(0);
    let (l, d) = (&live, &drops);
    s.run_frame(async |frame| {
        let src: Vec<C> = (0..20).map(|i| C::new(l, i, 13)).collect();
        let mut v = frame.vec();
        let r = catch_unwind(AssertUnwindSafe(|| v.extend_from_slice(&src)));
        assert!(r.is_err());
        assert_eq!(v.len(), 13);
        assert_eq!(l.load(Ordering::SeqCst), 33);
        drop(v);
        assert_eq!(l.load(Ordering::SeqCst), 20);
        drop(src);
        assert_eq!(l.load(Ordering::SeqCst), 0);

        let mut v = frame.vec();
        for i in 0..10 {
            let mut x = D::new(d, i);
            x.panics = i == 4;
            v.push(x);
        }
        let r = catch_unwind(AssertUnwindSafe(|| v.clear()));
        assert!(r.is_err());
        assert_eq!(
            d.load(Ordering::SeqCst),
            10,
            "clear drops every element once"
        );
        assert!(v.pop().is_none());
        v.push(D::new(d, 100));
        assert_eq!(v.len(), 1);
        drop(v);
        assert_eq!(d.load(Ordering::SeqCst), 11);

        let mut v = frame.vec();
        for i in 0..10 {
            let mut x = D::new(d, i);
            x.panics = i == 7;
            v.push(x);
        }
        let mut it = v.into_iter();
        let first = it.next().unwrap();
        assert_eq!(first.id, 0);
        drop(first);
        let r = catch_unwind(AssertUnwindSafe(|| drop(it)));
        assert!(r.is_err());
        assert_eq!(d.load(Ordering::SeqCst), 21);
    });
    assert_eq!(drops.load(Ordering::SeqCst), 21);
}

// ---------------------------------------------------------------------------------------------
// G5: zero-sized types that need dropping, and capacity overflow.
// ---------------------------------------------------------------------------------------------

static ZST_DROPS: AtomicUsize = AtomicUsize::new(0);
struct Z;
impl Drop for Z {
    fn drop(&mut self) {
        ZST_DROPS.fetch_add(1, Ordering::SeqCst);
    }
}
#[repr(align(65536))]
struct ZAligned;
impl Drop for ZAligned {
    fn drop(&mut self) {
        ZST_DROPS.fetch_add(1, Ordering::SeqCst);
    }
}

#[test]
fn g5_zsts_that_need_drop_and_capacity_overflow() {
    let mut s = small_blocks(2);
    ZST_DROPS.store(0, Ordering::SeqCst);
    s.run_frame(async |frame| {
        frame.alloc(Z);
        let za = frame.alloc(ZAligned);
        assert_eq!(za as *mut ZAligned as usize % 65536, 0);
        frame.alloc_slice_fill_with(1000, |_| Z);
        let mut v = frame.vec();
        for _ in 0..10_000 {
            v.push(Z);
        }
        assert_eq!(v.capacity(), usize::MAX);
        v.pop();
        v.into_slice();
        let mut w = frame.vec();
        w.push(ZAligned);
        drop(w);
        assert_eq!(ZST_DROPS.load(Ordering::SeqCst), 2);
    });
    assert_eq!(ZST_DROPS.load(Ordering::SeqCst), 2 + 1 + 1 + 1000 + 9_999);

    for (case, what) in ["vec_with_capacity", "reserve", "fill_with", "zst reserve"]
        .into_iter()
        .enumerate()
    {
        let r = catch_unwind(AssertUnwindSafe(|| {
            s.run_frame(async |frame| match case {
                0 => {
                    frame.vec_with_capacity::<u64>(usize::MAX / 4);
                }
                1 => {
                    let mut v = frame.vec::<u8>();
                    v.push(1);
                    v.reserve(usize::MAX);
                }
                2 => {
                    frame.alloc_slice_fill_with(usize::MAX / 2, |_| 0u32);
                }
                _ => {
                    let mut v = frame.vec::<()>();
                    v.extend(std::iter::repeat_n((), 3));
                    v.reserve(usize::MAX - 2);
                }
            })
        }));
        let msg = payload_str(&*r.expect_err(what));
        assert!(
            msg.contains("isize::MAX") || msg.contains("overflow"),
            "{what}: {msg}"
        );
    }
    // Still usable.
    assert_eq!(s.run_frame(async |frame| *frame.alloc(5u8)), 5);
}

// ---------------------------------------------------------------------------------------------
// G6: FrameVecs growing on scoped (foreign) threads while other foreign threads allocate and
// spawn, and on workers after being moved between jobs; outputs holding FrameVecs whose handle
// is forgotten or dropped.
// ---------------------------------------------------------------------------------------------

#[test]
fn g6_frame_vecs_grow_concurrently_on_foreign_threads_and_workers() {
    within(60, || {
        let mut s = small_blocks(3);
        let drops = AtomicUsize::new(0);
        let d = &drops;
        for _ in 0..3 {
            drops.store(0, Ordering::SeqCst);
            let sum = s.run_frame(async |frame| {
                let sums: Vec<u64> = std::thread::scope(|sc| {
                    let ts: Vec<_> = (0..4u64)
                        .map(|t| {
                            sc.spawn(move || {
                                let mut v = frame.vec();
                                let mut keep = frame.vec();
                                for k in 0..3000u64 {
                                    v.push(k + t);
                                    if k % 100 == 0 {
                                        keep.push(D::new(d, k as usize));
                                        frame.alloc(D::new(d, 0));
                                        drop(frame.spawn(async move { k }));
                                    }
                                }
                                keep.into_slice();
                                v.iter().sum::<u64>()
                            })
                        })
                        .collect();
                    ts.into_iter().map(|t| t.join().unwrap()).collect()
                });
                // A vector handed from job to job, growing on whichever worker runs each.
                let mut v = frame.vec();
                for stage in 0..6u64 {
                    v = frame
                        .spawn(async move {
                            for k in 0..500 {
                                v.push(D::new(d, (stage * 1000 + k) as usize));
                            }
                            yield_now().await;
                            v
                        })
                        .await;
                }
                assert_eq!(v.len(), 3000);
                drop(v);
                // Outputs that own FrameVecs and are never taken.
                let forgotten = frame.spawn(async move {
                    let mut v = frame.vec();
                    v.push(D::new(d, 1));
                    v
                });
                std::mem::forget(forgotten);
                let dropped = frame.spawn(async move {
                    let mut v = frame.vec();
                    v.push(D::new(d, 2));
                    v
                });
                drop(dropped);
                sums.iter().sum::<u64>()
            });
            assert_eq!(sum, 4 * (2999 * 3000 / 2) + 3000 * 6);
            assert_eq!(drops.load(Ordering::SeqCst), 4 * 60 + 3000 + 2);
        }
    });
}

// ---------------------------------------------------------------------------------------------
// G11: the worker thread hooks: a panicking start hook on one worker; a stop hook that panics
// on every worker; hooks that run a frame of another scheduler.
// ---------------------------------------------------------------------------------------------

#[test]
fn g11_thread_hooks_under_panics_and_nesting() {
    within(60, || {
        use std::sync::Arc;
        let started = Arc::new(AtomicUsize::new(0));
        let stopped = Arc::new(AtomicUsize::new(0));
        let (st, sp) = (Arc::clone(&started), Arc::clone(&stopped));
        let err = Scheduler::builder()
            .workers(5)
            .on_worker_start(move |i| {
                st.fetch_add(1, Ordering::SeqCst);
                if i == 3 {
                    panic!("no priority for worker {i}");
                }
            })
            .on_worker_stop(move |_| {
                sp.fetch_add(1, Ordering::SeqCst);
            })
            .build()
            .unwrap_err();
        assert!(err.to_string().contains("worker 3"), "{err}");
        assert!(
            err.to_string().contains("no priority for worker 3"),
            "{err}"
        );
        assert_eq!(started.load(Ordering::SeqCst), 4);
        assert_eq!(stopped.load(Ordering::SeqCst), 3);

        // Hooks that run whole frames of another scheduler, and a stop hook that panics.
        let ran = Arc::new(AtomicUsize::new(0));
        let (r1, r2) = (Arc::clone(&ran), Arc::clone(&ran));
        let s = Scheduler::builder()
            .workers(3)
            .on_worker_start(move |i| {
                let mut inner = Scheduler::builder().workers(2).build().unwrap();
                let v =
                    inner.run_frame(async |frame| *frame.alloc(i) + frame.spawn(async { 1 }).await);
                r1.fetch_add(v, Ordering::SeqCst);
            })
            .on_worker_stop(move |i| {
                r2.fetch_add(100, Ordering::SeqCst);
                panic!("stop hook {i} panics");
            })
            .build()
            .unwrap();
        assert_eq!(ran.load(Ordering::SeqCst), (1 + 1) + (2 + 1));
        drop(s);
        assert_eq!(ran.load(Ordering::SeqCst), 5 + 200);
    });
}
