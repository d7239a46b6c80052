//! Loom model 4: waking or dropping a waker while its frame ends touches nothing freed and wakes
//! nothing of the next frame.
//!
//! The waker points at a wake cell that targets the root header. The frame ends (cells
//! orphaned), then the next frame reuses the header (its state is reset to 0). A wake that
//! reached the header after the orphaning would leave `SCHEDULED` set on the next frame's root.
//!
//! `RUSTFLAGS="--cfg loom" cargo test --release --test loom_late_waker`
#![cfg(loom)]

use frame_scheduler::loom_api::{CellPoolModel, Scheduler};
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
    loom::model(move || {
        let sched = Arc::new(Scheduler::new(1));
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
    });
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
