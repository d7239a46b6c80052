//! No runnable job waits for ever, whatever wakes and yields around it: jobs that keep waking
//! each other on one worker, at the LIFO end of its deque, do not starve the jobs below them.
//! Each test runs under a watchdog that fails it instead of hanging.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use futures::StreamExt;
use futures::channel::mpsc;

mod common;
use common::{scheduler, within};

/// Two jobs play ping-pong through channels until a third job, queued before them on the same
/// single worker, has run. Each wake pushes the other job onto the LIFO end of the deque; the
/// third job sits at the other end and must still get its turn.
#[test]
fn jobs_waking_each_other_do_not_starve_an_older_job() {
    for workers in [1, 2] {
        let rounds = within(20, move || {
            let mut scheduler = scheduler(workers);
            let done = AtomicBool::new(false);
            let rounds = AtomicU64::new(0);
            scheduler.run_frame(async |frame| {
                let (tx_ab, mut rx_ab) = mpsc::unbounded::<()>();
                let (tx_ba, mut rx_ba) = mpsc::unbounded::<()>();
                let (done, rounds) = (&done, &rounds);
                let older = frame.spawn(async move { done.store(true, Ordering::SeqCst) });
                let ping = frame.spawn(async move {
                    while !done.load(Ordering::SeqCst) {
                        tx_ab.unbounded_send(()).unwrap();
                        rx_ba.next().await;
                        rounds.fetch_add(1, Ordering::Relaxed);
                    }
                    drop(tx_ab);
                });
                let pong = frame.spawn(async move {
                    while rx_ab.next().await.is_some() {
                        let _ = tx_ba.unbounded_send(());
                    }
                });
                older.await;
                ping.await;
                pong.await;
            });
            rounds.load(Ordering::Relaxed)
        });
        // The older job ran after a bounded number of round trips (a worker takes its oldest
        // job every 32 looks for work).
        assert!(
            rounds < 1000,
            "{workers} workers: the older job waited {rounds} round trips"
        );
    }
}
