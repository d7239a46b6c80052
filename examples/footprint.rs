//! What the scheduler costs besides time: the size of a job header, arena bytes per empty job,
//! and CPU used while no frame runs (a scheduler left idle for 2 s between frames).
//!
//! `cargo run --release --example footprint [-- --workers N]`
//!
//! Idle CPU is read from `/proc/self/task/*/schedstat` (nanoseconds on CPU per thread, Linux),
//! summed over every thread of the process, across a 2 s sleep of the driving thread.

use std::time::{Duration, Instant};

use frame_scheduler::{JOB_HEADER_BYTES, Scheduler};

/// Nanoseconds all threads of this process have spent on a CPU.
fn process_cpu_ns() -> Option<u64> {
    let mut total = 0;
    for task in std::fs::read_dir("/proc/self/task").ok()? {
        let path = task.ok()?.path().join("schedstat");
        let text = std::fs::read_to_string(path).ok()?;
        total += text.split_whitespace().next()?.parse::<u64>().ok()?;
    }
    Some(total)
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let workers = args
        .iter()
        .position(|a| a == "--workers")
        .and_then(|i| args.get(i + 1))
        .map(|v| v.parse().expect("--workers expects a number"))
        .unwrap_or(2);
    let mut scheduler = Scheduler::builder()
        .workers(workers)
        .build()
        .expect("valid config");
    println!("workers: {workers}");
    println!("job header: {JOB_HEADER_BYTES} bytes (jobs are rounded up to 64-byte lines)");

    const JOBS: usize = 10_000;
    for (label, counted) in [("spawn_counted", true), ("spawn, handle dropped", false)] {
        scheduler.run_frame(async |frame| {
            let c = frame.counter();
            for i in 0..JOBS {
                if counted {
                    frame.spawn_counted(c, async move {
                        std::hint::black_box(i);
                    });
                } else {
                    drop(frame.spawn(async move {
                        std::hint::black_box(i);
                    }));
                }
            }
            c.await;
        });
        let stats = scheduler.last_frame_stats();
        println!(
            "arena per empty job ({label}): {:.1} bytes ({} bytes for {} jobs and a counter)",
            stats.arena_bytes as f64 / JOBS as f64,
            stats.arena_bytes,
            stats.jobs
        );
    }

    // Idle: one more busy frame, then nothing for 2 s.
    scheduler.run_frame(async |frame| {
        for _ in 0..JOBS {
            frame.spawn(async {});
        }
    });
    let (Some(before), t) = (process_cpu_ns(), Instant::now()) else {
        println!("idle CPU: not measured (no /proc/self/task/*/schedstat on this system)");
        return;
    };
    std::thread::sleep(Duration::from_secs(2));
    let wall = t.elapsed();
    let after = process_cpu_ns().expect("schedstat readable a moment ago");
    let cpu = Duration::from_nanos(after - before);
    println!(
        "idle CPU over {:.2} s with no frame running: {:.3} ms of CPU, {:.3}% of one core",
        wall.as_secs_f64(),
        cpu.as_secs_f64() * 1e3,
        100.0 * cpu.as_secs_f64() / wall.as_secs_f64()
    );
}
