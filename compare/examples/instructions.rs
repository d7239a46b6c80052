//! Runs one `versus` workload on frame-scheduler alone, a fixed number of frames, for counting
//! instructions under valgrind: a measure of the job path that this 2-vCPU VM's timing noise
//! does not blur.
//!
//! ```text
//! cargo build --release -p frame-scheduler-compare --example instructions
//! valgrind --tool=cachegrind --cache-sim=no --cachegrind-out-file=/dev/null \
//!     target/release/examples/instructions "spawn 10k empty" 20
//! ```
//!
//! Run it twice, with two frame counts, and divide the difference in instructions (cachegrind's
//! `I refs`) by the difference in frames and by the workload's units: that cancels start-up and
//! the warm-up frames. `compare/scripts/instructions.sh [binary]` does so for every workload
//! (BENCHMARKS.md, section 6, compares two commits with it). `--workers 1` (the default)
//! keeps the count deterministic up to the scheduler's clock reads; with more workers
//! valgrind's serialised threads make spinning counts vary. `list` prints the workload names.
//!
//! `--time` times each frame (two clock reads, so not for counting) and prints the median,
//! frames back to back; `--batch B` times B frames at a time, as `versus` does for short
//! frames (one frame per sample hides a gap of tens of nanoseconds in the clock reads);
//! `--settle K` pauses 10 ms and runs two frames untimed before every K samples, as `versus`
//! does before each turn; `--unpinned` builds the scheduler with `pin_threads(false)`. A
//! quick look in many short alternated runs, not a benchmark (`versus` and criterion are
//! those).

#[path = "../benches/common/mod.rs"]
mod common;

use std::time::Instant;

use common::{LOOP_ITEMS, Loops, MAP_ITEMS, Workload};
use frame_scheduler::Scheduler;

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.first().map(String::as_str) == Some("list") {
        for w in Workload::ALL {
            println!("{}", w.name());
        }
        return;
    }
    let (Some(name), Some(frames)) = (args.first(), args.get(1)) else {
        eprintln!(
            "usage: instructions <workload name | list> <frames> [--workers N] [--unpinned] \
             [--time [--batch B] [--settle K]]"
        );
        std::process::exit(2);
    };
    let Some(workload) = Workload::ALL.into_iter().find(|w| w.name() == name) else {
        eprintln!("no workload named {name:?}; `instructions list` prints the names");
        std::process::exit(2);
    };
    let frames: usize = frames.parse().expect("<frames> is a number");
    // The number after `flag`, or `default` without the flag.
    let number = |flag: &str, default: usize| -> usize {
        args.iter()
            .position(|a| a == flag)
            .and_then(|i| args.get(i + 1))
            .map_or(default, |n| {
                n.parse()
                    .unwrap_or_else(|_| panic!("{flag} takes a number, got {n:?}"))
            })
    };
    let workers = number("--workers", 1);
    let time = args.iter().any(|a| a == "--time");
    let batch = u32::try_from(number("--batch", 1).max(1)).expect("--batch fits in a u32");
    let settle = number("--settle", 0);
    let mut builder = Scheduler::builder().workers(workers);
    if args.iter().any(|a| a == "--unpinned") {
        builder = builder.pin_threads(false);
    }
    let mut scheduler = builder.build().expect("a valid configuration");
    let mut out = vec![0; common::THROUGHPUT_JOBS.max(16)];
    let mut loops = Loops {
        items: vec![0; LOOP_ITEMS],
        input: (0..MAP_ITEMS as u64).collect(),
        mapped: Vec::with_capacity(MAP_ITEMS),
    };
    // Warm-up: the arenas grow to their steady size.
    for _ in 0..10 {
        common::frame_scheduler(&mut scheduler, workload, &mut out, &mut loops);
    }
    if !time {
        for _ in 0..frames {
            common::frame_scheduler(&mut scheduler, workload, &mut out, &mut loops);
        }
        let jobs = scheduler.last_frame_stats().jobs;
        println!(
            "{}: {frames} frames on {workers} worker(s), {jobs} jobs in the last",
            workload.name()
        );
        return;
    }
    let mut times = Vec::with_capacity(frames);
    for sample in 0..frames {
        if settle > 0 && sample % settle == 0 {
            // As `versus` does before each turn: a pause long enough for idle workers to
            // park, then two frames untimed.
            std::thread::sleep(std::time::Duration::from_millis(10));
            for _ in 0..2 {
                common::frame_scheduler(&mut scheduler, workload, &mut out, &mut loops);
            }
        }
        let t = Instant::now();
        for _ in 0..batch {
            common::frame_scheduler(&mut scheduler, workload, &mut out, &mut loops);
        }
        times.push(t.elapsed().as_nanos() as u64 / u64::from(batch));
    }
    times.sort_unstable();
    let median = times.get(frames / 2).copied().unwrap_or(0);
    println!(
        "{}: {frames} samples of {batch} frame(s) back to back on {workers} worker(s); median \
         frame {median} ns, {:.1} ns per unit",
        workload.name(),
        median as f64 / workload.units() as f64
    );
}
