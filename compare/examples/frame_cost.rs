//! What one frame costs the driving thread, in steady state and after an idle pause: an empty
//! frame, or (`--one-job`) a frame whose root spawns one empty job and returns.
//!
//! `cargo run --release -p frame-scheduler-compare --example frame_cost -- [--one-job]
//! [--workers N] [--unpinned]`
//!
//! Prints three medians: ns per frame over batches of 2000 back-to-back frames; one frame
//! after 10 ms of sleep; and the mean of 10 frames after 10 ms of sleep (41 samples each).
//! Used to separate a frame's fixed cost from what waking the workers after a pause costs
//! (BENCHMARKS.md, section 6).

use std::time::{Duration, Instant};

use frame_scheduler::Scheduler;

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let one_job = args.iter().any(|a| a == "--one-job");
    let unpinned = args.iter().any(|a| a == "--unpinned");
    let workers = args
        .iter()
        .position(|a| a == "--workers")
        .and_then(|i| args.get(i + 1))
        .map(|n| n.parse().expect("--workers takes a number"))
        .unwrap_or(2);
    let mut builder = Scheduler::builder().workers(workers);
    if unpinned {
        builder = builder.pin_threads(false);
    }
    let mut scheduler = builder.build().expect("a valid configuration");
    let frame = |s: &mut Scheduler| {
        if one_job {
            s.run_frame(async |f| {
                f.spawn(async {});
            });
        } else {
            s.run_frame(async |_| {});
        }
    };
    for _ in 0..1000 {
        frame(&mut scheduler);
    }
    let mut steady = Vec::new();
    for _ in 0..41 {
        let t = Instant::now();
        for _ in 0..2000 {
            frame(&mut scheduler);
        }
        steady.push(t.elapsed().as_nanos() as f64 / 2000.0);
    }
    let (mut first, mut ten) = (Vec::new(), Vec::new());
    for _ in 0..41 {
        std::thread::sleep(Duration::from_millis(10));
        let t = Instant::now();
        frame(&mut scheduler);
        first.push(t.elapsed().as_nanos() as f64);
        std::thread::sleep(Duration::from_millis(10));
        let t = Instant::now();
        for _ in 0..10 {
            frame(&mut scheduler);
        }
        ten.push(t.elapsed().as_nanos() as f64 / 10.0);
    }
    println!(
        "{} on {workers} workers{}: back to back {:.1} ns/frame; after 10 ms idle: first frame \
         {:.0} ns, 10 frames {:.0} ns/frame",
        if one_job {
            "frame + 1 job"
        } else {
            "empty frame"
        },
        if unpinned { ", unpinned" } else { "" },
        median(steady),
        median(first),
        median(ten),
    );
}
