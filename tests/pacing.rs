//! Workers between frames: frames at a steady rhythm, `Scheduler::prewake`, the pre-wake
//! settings and driver pinning. Whether pre-waking makes frames start sooner is measured in
//! `compare/examples/idle.rs`, not here; these tests check that every path through it runs
//! every job and that bad settings are errors.

mod common;

use std::sync::atomic::AtomicUsize;
use std::sync::atomic::Ordering::SeqCst;
use std::time::{Duration, Instant};

use frame_scheduler::Scheduler;

/// Runs `frames` frames of `jobs` jobs at `period`, returning how many jobs ran.
fn paced(s: &mut Scheduler, frames: usize, jobs: usize, period: Duration) -> usize {
    let ran = AtomicUsize::new(0);
    let start = Instant::now();
    for k in 1..=frames {
        s.run_frame(async |frame| {
            let c = frame.counter();
            for _ in 0..jobs {
                frame.spawn_counted(c, async {
                    ran.fetch_add(1, SeqCst);
                });
            }
            c.await;
        });
        if let Some(wait) = (start + period * k as u32).checked_duration_since(Instant::now()) {
            std::thread::sleep(wait);
        }
    }
    ran.into_inner()
}

/// Frames at a steady 4 ms rhythm (workers learn it and hover around each start), then
/// irregular ones, then back to back: every job runs, with any worker count and any window.
#[test]
fn paced_irregular_and_back_to_back_frames_run_every_job() {
    for (lead, hover) in [
        (Duration::from_micros(100), Duration::from_micros(500)),
        (Duration::ZERO, Duration::from_micros(500)),
        (Duration::from_millis(3), Duration::from_millis(10)),
    ] {
        for workers in [1, 2, 4] {
            let mut s = Scheduler::builder()
                .workers(workers)
                .pin_threads(false)
                .prewake_lead(lead)
                .prewake_hover(hover)
                .build()
                .unwrap();
            common::within(60, move || {
                assert_eq!(paced(&mut s, 30, 16, Duration::from_millis(4)), 30 * 16);
                for k in 0..10 {
                    let period = Duration::from_micros(500 * (k % 4) as u64);
                    assert_eq!(paced(&mut s, 1, 8, period), 8);
                }
                assert_eq!(paced(&mut s, 20, 8, Duration::ZERO), 20 * 8);
            });
        }
    }
}

/// `prewake` wakes the workers at any time (between frames, repeatedly, with no frame
/// following) and the next frames run normally; dropping a scheduler whose workers hover
/// joins them.
#[test]
fn prewake_at_any_time_is_harmless() {
    let mut s = Scheduler::builder()
        .workers(3)
        .pin_threads(false)
        .prewake_lead(Duration::from_micros(300))
        .build()
        .unwrap();
    s.prewake();
    s.prewake();
    std::thread::sleep(Duration::from_millis(2));
    assert_eq!(paced(&mut s, 5, 32, Duration::ZERO), 5 * 32);
    for _ in 0..5 {
        s.prewake();
        assert_eq!(paced(&mut s, 1, 32, Duration::ZERO), 32);
    }
    s.prewake();
    common::within(30, move || drop(s));
}

#[test]
fn prewake_settings_out_of_range_are_errors_naming_them() {
    for (lead, hover, name) in [
        (Duration::from_millis(101), Duration::ZERO, "prewake_lead"),
        (Duration::ZERO, Duration::from_secs(1), "prewake_hover"),
    ] {
        let err = Scheduler::builder()
            .workers(2)
            .prewake_lead(lead)
            .prewake_hover(hover)
            .build()
            .unwrap_err()
            .to_string();
        assert!(err.contains(name) && err.contains("at most 100ms"), "{err}");
    }
}

#[test]
fn pin_driver_with_pin_threads_false_is_an_error_saying_what_to_change() {
    let err = Scheduler::builder()
        .workers(2)
        .pin_threads(false)
        .pin_driver(true)
        .build()
        .unwrap_err()
        .to_string();
    assert!(err.contains("pin_threads(false)"), "{err}");
}

/// With `pin_driver`, the driving thread ends up on core 0 alone; frames still run every job.
#[test]
fn pinned_driver_runs_frames_on_core_zero() {
    let cores = core_count();
    if cores < 2 {
        // Pinning two workers needs two cores; `pin_threads` refuses with fewer (tested in
        // config.rs).
        return;
    }
    let mut s = Scheduler::builder()
        .workers(2)
        .pin_threads(true)
        .pin_driver(true)
        .build()
        .unwrap();
    let driver_thread = std::thread::spawn(move || {
        let n = paced(&mut s, 10, 16, Duration::ZERO);
        (n, common::allowed_cpus())
    });
    let (n, allowed) = driver_thread.join().unwrap();
    assert_eq!(n, 160);
    assert_eq!(
        allowed,
        Some(1),
        "the driving thread may run on one CPU only"
    );
}

fn core_count() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}
