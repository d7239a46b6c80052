//! Thread hooks under panics and nesting: a start hook that panics on one worker of five (the
//! build fails naming it, the workers that started are stopped), hooks that run whole frames of
//! another scheduler, and a stop hook that panics on every worker (the drop still finishes).
//! tests/hooks.rs covers the hooks one at a time.

mod common;

use std::sync::atomic::{AtomicUsize, Ordering};

use common::within;
use frame_scheduler::Scheduler;

/// The worker thread hooks: a panicking start hook on one worker; a stop hook that panics on every
/// worker; hooks that run a frame of another scheduler.
#[test]
fn thread_hooks_under_panics_and_nesting() {
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
