//! What the scheduler costs besides time: the size of a job header, arena bytes per empty job,
//! CPU used while no frame runs (a scheduler left idle for 2 s between frames), how late a
//! frame after an idle gap runs, and the CPU a paced render loop burns beyond its jobs.
//!
//! `cargo run --release --example footprint [-- --workers N]`
//!
//! CPU is read from `/proc/self/task/*/schedstat` (nanoseconds on CPU per thread, Linux),
//! summed over every thread of the process. `compare/examples/idle.rs` measures the last two
//! figures for rayon and bevy_tasks too.

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

    for (label, lead) in [
        ("default pre-wake", None),
        ("pre-wake off", Some(Duration::ZERO)),
    ] {
        let mut builder = Scheduler::builder().workers(workers);
        if let Some(lead) = lead {
            builder = builder.prewake_lead(lead);
        }
        let mut scheduler = builder.build().expect("valid config");
        // A frame after 16 ms of sleep (a render loop waiting for vsync): 8 jobs of 250 us.
        let work = Duration::from_micros(250);
        let ideal = work.as_secs_f64() * 8.0 / workers as f64;
        let mut ratios: Vec<f64> = (0..40)
            .map(|_| {
                std::thread::sleep(Duration::from_millis(16));
                let t = Instant::now();
                frame_of(&mut scheduler, 8, work);
                t.elapsed().as_secs_f64() / ideal
            })
            .collect();
        ratios.sort_by(f64::total_cmp);
        // A 60 fps loop of tiny frames (8 jobs of 5 us): CPU beyond the jobs' own work.
        let (frames, tiny) = (120u32, Duration::from_micros(5));
        let cpu = process_cpu_ns().expect("schedstat readable a moment ago");
        let start = Instant::now();
        for k in 1..=frames {
            frame_of(&mut scheduler, 8, tiny);
            let next = start + Duration::from_secs_f64(k as f64 / 60.0);
            std::thread::sleep(next.saturating_duration_since(Instant::now()));
        }
        let cpu = process_cpu_ns().expect("schedstat readable a moment ago") - cpu;
        let beyond = cpu as f64 / frames as f64 - 8.0 * tiny.as_nanos() as f64;
        println!(
            "{label}: a frame after 16 ms idle takes {:.2}x its ideal time (median of 40; \
             ideal = 8 x 250 us / {workers} workers); a paced 60 fps frame of 8 x 5 us jobs \
             burns {:.3} ms of CPU beyond its work",
            ratios[ratios.len() / 2],
            beyond / 1e6
        );
    }
}

/// One frame of `jobs` jobs, each spinning for `work`.
fn frame_of(scheduler: &mut Scheduler, jobs: usize, work: Duration) {
    scheduler.run_frame(async |frame| {
        let done = frame.counter();
        for _ in 0..jobs {
            frame.spawn_counted(done, async move {
                let t = Instant::now();
                while t.elapsed() < work {
                    std::hint::spin_loop();
                }
            });
        }
        done.await;
    });
}
