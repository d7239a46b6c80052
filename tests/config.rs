//! Building a scheduler: invalid settings are errors that say what to change; valid ones run.

use std::panic::catch_unwind;

use frame_scheduler::{BuildError, MAX_WORKERS, Scheduler};

mod common;

use common::payload_str;

fn build_err(builder: frame_scheduler::SchedulerBuilder) -> String {
    let err: BuildError = builder
        .build()
        .expect_err("this configuration must be refused");
    // A real error type, whose Display is the message.
    let boxed: Box<dyn std::error::Error> = Box::new(err.clone());
    assert_eq!(boxed.to_string(), err.to_string());
    err.to_string()
}

#[test]
fn zero_workers_is_an_error_saying_at_least_one() {
    let msg = build_err(Scheduler::builder().workers(0));
    assert!(msg.contains("workers must be at least 1"), "{msg}");
    assert!(msg.contains("got 0"), "{msg}");
}

#[test]
fn too_many_workers_is_an_error_naming_the_maximum() {
    let msg = build_err(Scheduler::builder().workers(MAX_WORKERS + 1));
    assert!(msg.contains("workers must be at most"), "{msg}");
    assert!(msg.contains(&MAX_WORKERS.to_string()), "{msg}");
    assert!(msg.contains(&format!("got {}", MAX_WORKERS + 1)), "{msg}");
}

#[test]
fn zero_arena_capacity_is_an_error_naming_the_minimum() {
    let msg = build_err(Scheduler::builder().workers(1).arena_capacity(0));
    assert!(msg.contains("arena_capacity"), "{msg}");
    assert!(msg.contains("1024"), "{msg}");
    assert!(msg.contains("got 0"), "{msg}");
    let msg = build_err(Scheduler::builder().workers(1).arena_capacity(1023));
    assert!(msg.contains("got 1023"), "{msg}");
    assert!(
        Scheduler::builder()
            .workers(1)
            .arena_capacity(1024)
            .build()
            .is_ok()
    );
}

#[test]
fn zero_queue_capacity_is_an_error_naming_the_minimum() {
    let msg = build_err(Scheduler::builder().workers(1).queue_capacity(0));
    assert!(msg.contains("queue_capacity"), "{msg}");
    assert!(msg.contains("16"), "{msg}");
    assert!(msg.contains("got 0"), "{msg}");
    let msg = build_err(Scheduler::builder().workers(1).queue_capacity(15));
    assert!(msg.contains("got 15"), "{msg}");
    let msg = build_err(
        Scheduler::builder()
            .workers(1)
            .queue_capacity((1 << 24) + 1),
    );
    assert!(msg.contains("queue_capacity"), "{msg}");
    assert!(
        Scheduler::builder()
            .workers(1)
            .queue_capacity(16)
            .build()
            .is_ok()
    );
}

#[test]
fn pinning_more_workers_than_cores_is_an_error() {
    let msg = build_err(Scheduler::builder().workers(MAX_WORKERS).pin_threads(true));
    assert!(msg.contains("pin_threads"), "{msg}");
    assert!(msg.contains(&format!("workers({MAX_WORKERS})")), "{msg}");
}

#[cfg(target_os = "linux")]
#[test]
fn pinned_single_worker_runs_frames() {
    let mut scheduler = Scheduler::builder()
        .workers(1)
        .pin_threads(true)
        .build()
        .unwrap();
    let out = scheduler.run_frame(async |frame| frame.spawn(async { 5 }).await);
    assert_eq!(out, 5);
}

#[test]
fn one_and_four_workers_build_and_report_their_count() {
    for n in [1, 4] {
        let mut scheduler = Scheduler::builder().workers(n).build().unwrap();
        assert_eq!(scheduler.workers(), n);
        let seen = scheduler.run_frame(async |frame| frame.workers());
        assert_eq!(seen, n);
    }
}

#[test]
fn default_scheduler_has_one_worker_per_available_core() {
    let cores = std::thread::available_parallelism().unwrap().get();
    let mut scheduler = Scheduler::new();
    assert_eq!(scheduler.workers(), cores);
    assert_eq!(Scheduler::default().workers(), cores);
    assert_eq!(Scheduler::builder().build().unwrap().workers(), cores);
    let sum = scheduler.run_frame(async |frame| {
        let hs: Vec<_> = (0..100u32).map(|i| frame.spawn(async move { i })).collect();
        let mut sum = 0;
        for h in hs {
            sum += h.await;
        }
        sum
    });
    assert_eq!(sum, 4950);
}

#[test]
fn debug_output_names_the_types() {
    let mut scheduler = Scheduler::builder().workers(2).build().unwrap();
    let builder = format!("{:?}", Scheduler::builder().workers(3));
    assert!(builder.contains("SchedulerBuilder"), "{builder}");
    scheduler.run_frame(async |frame| {
        let c = frame.counter();
        c.add(2);
        assert!(format!("{c:?}").contains('2'));
        c.done();
        c.done();
        let h = frame.spawn(async {});
        assert!(format!("{h:?}").contains("JobHandle"));
        assert!(format!("{frame:?}").contains("Frame"));
        h.await;
    });
    let s = format!("{scheduler:?}");
    assert!(s.contains("workers: 2"), "{s}");
    assert!(s.contains("frames_run: 1"), "{s}");
}

/// Regression: an arena capacity no allocator can give panics ("out of memory", from bumpalo)
/// instead of coming back as `Err(BuildError)` naming the setting. (Not tested: the largest
/// `queue_capacity` with 1024 workers, which would really try to commit 128 GiB.)
#[test]
fn huge_arena_capacity_is_a_build_error_not_a_panic() {
    let built = catch_unwind(|| {
        Scheduler::builder()
            .workers(1)
            .arena_capacity(1 << 50)
            .build()
    });
    match built {
        Ok(Err(e)) => assert!(
            e.to_string().contains("arena_capacity"),
            "the error should name arena_capacity: {e}"
        ),
        Ok(Ok(_)) => panic!("built a scheduler with 1 PiB arenas"),
        Err(p) => panic!("build panicked: {:?}", payload_str(&*p)),
    }
}
