//! Loom model 4: waking or dropping a waker while its frame ends touches nothing freed and wakes
//! nothing of the next frame.
//!
//! The waker points at a wake cell that targets the root header. The frame ends (cells
//! orphaned), then the next frame reuses the header (its state is reset to 0). A wake that
//! reached the header after the orphaning would leave `SCHEDULED` set on the next frame's root.
//! And whichever lets go of the cell last, its last waker or the pool at frame end, the cell is
//! freed exactly once: by that waker, or by the pool when it is dropped.
//!
//! `RUSTFLAGS="--cfg loom" cargo test --release --test loom_late_waker`
#![cfg(loom)]

use frame_scheduler::loom_api::{CellPoolModel, ModelScheduler, wake_cells_freed};
use std::sync::atomic::{AtomicUsize, Ordering::Relaxed};

use loom::sync::Arc;
use loom::thread;

#[derive(Clone, Copy, Debug)]
enum WakerDoes {
    Wake,
    WakeByRefThenDrop,
    CloneWakeDrop,
    Drop,
}

fn model(does: WakerDoes) {
    // Executions in which the pool took the cell back, and in which a waker freed it.
    let outcomes: std::sync::Arc<[AtomicUsize; 2]> = Default::default();
    let seen = outcomes.clone();
    loom::model(move || {
        // Read before any thread starts (so the hook adds no synchronisation between them):
        // every execution starts from 0.
        assert_eq!(wake_cells_freed(), 0);
        let sched = Arc::new(ModelScheduler::new(1));
        let mut pool = CellPoolModel::new();
        let waker = pool.waker_for_root(&sched);
        let user = thread::spawn(move || match does {
            WakerDoes::Wake => waker.wake(),
            WakerDoes::WakeByRefThenDrop => {
                waker.wake_by_ref();
                drop(waker);
            }
            WakerDoes::CloneWakeDrop => {
                let other = waker.clone();
                drop(waker);
                other.wake();
            }
            WakerDoes::Drop => drop(waker),
        });
        // Frame end, then the next frame reuses the header.
        // SAFETY: nothing polls the root any more.
        unsafe { pool.orphan_all() };
        sched.reuse_root();
        user.join().unwrap();
        assert_eq!(
            sched.root_state(),
            0,
            "{does:?}: a late wake reached the next frame"
        );
        // Every waker is gone. If the last one went after the orphaning, it freed the cell;
        // otherwise the pool took the cell back, to free it when dropped.
        let freed_by_wakers = wake_cells_freed();
        assert!(
            freed_by_wakers <= 1,
            "{does:?}: the wakers freed {freed_by_wakers} cells"
        );
        seen[freed_by_wakers].fetch_add(1, Relaxed);
        drop(pool);
        assert_eq!(
            wake_cells_freed(),
            1,
            "{does:?}: the one cell was not freed exactly once"
        );
    });
    // The model reached both ways the cell can end.
    let [by_pool, by_waker] = outcomes.each_ref().map(|n| n.load(Relaxed));
    assert!(
        by_pool > 0 && by_waker > 0,
        "{does:?}: executions where the pool freed the cell: {by_pool}, a waker: {by_waker}"
    );
}

#[test]
fn late_wake_is_noop() {
    model(WakerDoes::Wake);
}

#[test]
fn late_wake_by_ref_then_drop_is_noop() {
    model(WakerDoes::WakeByRefThenDrop);
}

#[test]
fn late_clone_wake_drop_is_noop() {
    model(WakerDoes::CloneWakeDrop);
}

#[test]
fn late_drop_frees_once() {
    model(WakerDoes::Drop);
}
