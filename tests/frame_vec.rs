//! `FrameVec` under panics and concurrency: a clone or a drop that panics half way through
//! `extend_from_slice`, `clear` or an `into_iter` leaves no double drop and no leak; vectors
//! grow on foreign threads and on workers, moved from job to job; outputs holding vectors are
//! dropped once whether their handle is dropped or forgotten. Valgrind in CI turns a silent
//! memory error into a failure.

mod common;

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::atomic::{AtomicUsize, Ordering};

use common::{Tracked, small_blocks, within};
use frame_scheduler::yield_now;

/// Counts its drops, like `common::Tracked`; `panics` makes its drop panic (after counting).
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

/// FrameVec under panics: extend_from_slice with a panicking clone, clear with a panicking drop
/// then pop/push, into_iter dropped half way with a panicking drop.
#[test]
fn panicking_clone_and_drop_leave_no_double_drop_or_leak() {
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

/// FrameVecs growing on scoped (foreign) threads while other foreign threads allocate and spawn,
/// and on workers after being moved between jobs; outputs holding FrameVecs whose handle is
/// forgotten or dropped.
#[test]
fn frame_vecs_grow_concurrently_on_foreign_threads_and_workers() {
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
                                        keep.push(Tracked(d, k));
                                        frame.alloc(Tracked(d, 0));
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
                                v.push(Tracked(d, stage * 1000 + k));
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
                    v.push(Tracked(d, 1));
                    v
                });
                std::mem::forget(forgotten);
                let dropped = frame.spawn(async move {
                    let mut v = frame.vec();
                    v.push(Tracked(d, 2));
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
