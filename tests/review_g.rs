//! Review G: soundness attacks on frame memory (arena.rs, memory.rs), over-aligned and large
//! jobs (job/raw.rs), recycled wake cells (waker.rs), frame end (scheduler.rs), `Counter::until`
//! and the worker thread hooks. Each test tries to get a double drop, a leak of a value that
//! needs dropping, a use after free or after reset, or a hang; valgrind and ASan runs of this
//! file turn a silent memory error into a failure.

mod common;

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::atomic::{AtomicUsize, Ordering};

use common::{small_blocks, within};
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
