//! Frames after idle, and the CPU a paced render loop burns, for frame-scheduler, rayon and
//! bevy_tasks side by side.
//!
//! `cargo run --release -p frame-scheduler-compare --example idle [-- --workers N --frames N
//! --pin default|off|driver]` (`--pin`: frame-scheduler's pinning as built by default, with
//! `pin_threads(false)`, or with `pin_driver(true)`)
//!
//! - **frame after idle**: sleep 16 ms (a render loop waiting for vsync), then one frame of 8
//!   jobs that each spin for 250 µs; the frame's wall time over its ideal time (8 × 250 µs /
//!   workers). Also back to back (no sleep), the same frames.
//! - **CPU per paced frame**: a 60 fps loop (sleeping until each 16.7 ms tick) of frames of 8
//!   jobs of 5 µs; the CPU time every thread of the process used, less the jobs' own work,
//!   per frame. Read from `/proc/self/task/*/schedstat` (Linux).
//!
//! Each system has `workers` threads running jobs: frame-scheduler counts its driving thread
//! among them; rayon's and bevy_tasks' callers wait in `scope`. The systems take turns, each
//! after a pause that lets the others' threads park.

use std::time::{Duration, Instant};

use frame_scheduler::Scheduler;

/// Nanoseconds all threads of this process have spent on a CPU.
fn process_cpu_ns() -> u64 {
    let mut total = 0;
    for task in std::fs::read_dir("/proc/self/task").expect("Linux /proc") {
        let path = task.expect("a task").path().join("schedstat");
        // A thread may have exited between the listing and the read.
        if let Ok(text) = std::fs::read_to_string(path) {
            total += text
                .split_whitespace()
                .next()
                .and_then(|v| v.parse::<u64>().ok())
                .unwrap_or(0);
        }
    }
    total
}

/// Busy work standing for a job of `d`.
fn spin(d: Duration) {
    let t = Instant::now();
    while t.elapsed() < d {
        std::hint::spin_loop();
    }
}

/// A job system under test: runs one frame of `jobs` jobs of `each`.
struct System {
    name: &'static str,
    frame: Box<dyn FnMut(usize, Duration)>,
}

/// A frame-scheduler contender: `frame` jobs of `each`, awaited on a counter.
fn ours(name: &'static str, mut scheduler: Scheduler) -> System {
    System {
        name,
        frame: Box::new(move |jobs, each| {
            scheduler.run_frame(async |frame| {
                let c = frame.counter();
                for _ in 0..jobs {
                    frame.spawn_counted(c, async move { spin(each) });
                }
                c.await;
            })
        }),
    }
}

/// The contenders. `pin` sets frame-scheduler's pinning: `default`, `off`
/// (`pin_threads(false)`) or `driver` (`pin_driver(true)`). One process builds one
/// frame-scheduler: pinning by default is claimed by the first live scheduler of a process.
fn systems(workers: usize, pin: &str) -> Vec<System> {
    let builder = Scheduler::builder().workers(workers);
    let (name, builder) = match pin {
        "default" => ("frame-scheduler", builder),
        "off" => ("fs pin_threads(false)", builder.pin_threads(false)),
        "driver" => ("fs pin_driver(true)", builder.pin_driver(true)),
        other => {
            eprintln!("--pin takes default, off or driver; got {other:?}");
            std::process::exit(2)
        }
    };
    let mut list = vec![ours(name, builder.build().unwrap())];
    let rayon = rayon::ThreadPoolBuilder::new()
        .num_threads(workers)
        .build()
        .unwrap();
    let bevy = bevy_tasks::TaskPoolBuilder::new()
        .num_threads(workers)
        .build();
    list.extend([
        System {
            name: "rayon",
            frame: Box::new(move |jobs, each| {
                rayon.scope(|s| {
                    for _ in 0..jobs {
                        s.spawn(move |_| spin(each));
                    }
                })
            }),
        },
        System {
            name: "bevy_tasks",
            frame: Box::new(move |jobs, each| {
                bevy.scope(|s| {
                    for _ in 0..jobs {
                        s.spawn(async move { spin(each) });
                    }
                });
            }),
        },
    ]);
    list
}

fn median(v: &mut [f64]) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let arg = |name: &str, default: usize| {
        args.iter()
            .position(|a| a == name)
            .and_then(|i| args.get(i + 1))
            .map(|v| v.parse().expect("a number"))
            .unwrap_or(default)
    };
    let workers = arg("--workers", 2);
    let frames = arg("--frames", 40);
    let (jobs, each) = (8usize, Duration::from_micros(250));
    let ideal = each.as_secs_f64() * jobs as f64 / workers as f64;
    let period = Duration::from_secs_f64(1.0 / 60.0);
    let (tiny_jobs, tiny) = (8, Duration::from_micros(5));
    println!(
        "workers: {workers}; frame: {jobs} jobs of {each:?} (ideal {:.3} ms); paced: {tiny_jobs} jobs \
         of {tiny:?} at 60 fps; {frames} frames per cell",
        ideal * 1e3
    );
    println!(
        "{:<16} {:>22} {:>22} {:>26}",
        "system", "after 16 ms idle", "back to back", "CPU per paced frame"
    );
    let pin = args
        .iter()
        .position(|a| a == "--pin")
        .and_then(|i| args.get(i + 1))
        .map_or("default", String::as_str);
    for mut system in systems(workers, pin) {
        let frame = &mut system.frame;
        // Warm up, then let the threads park.
        for _ in 0..10 {
            frame(jobs, each);
        }
        std::thread::sleep(Duration::from_millis(200));
        let mut after_idle = Vec::new();
        for _ in 0..frames {
            std::thread::sleep(Duration::from_millis(16));
            let t = Instant::now();
            frame(jobs, each);
            after_idle.push(t.elapsed().as_secs_f64() / ideal);
        }
        let mut back_to_back = Vec::new();
        for _ in 0..frames {
            let t = Instant::now();
            frame(jobs, each);
            back_to_back.push(t.elapsed().as_secs_f64() / ideal);
        }
        std::thread::sleep(Duration::from_millis(200));
        let paced = frames.max(60);
        let cpu = process_cpu_ns();
        let start = Instant::now();
        for k in 1..=paced {
            frame(tiny_jobs, tiny);
            let next = start + period * k as u32;
            if let Some(wait) = next.checked_duration_since(Instant::now()) {
                std::thread::sleep(wait);
            }
        }
        let cpu = Duration::from_nanos(process_cpu_ns() - cpu);
        let beyond = cpu.as_secs_f64() / paced as f64 - tiny_jobs as f64 * tiny.as_secs_f64();
        println!(
            "{:<16} {:>21.2}x {:>21.2}x {:>23.3} ms",
            system.name,
            median(&mut after_idle),
            median(&mut back_to_back),
            beyond * 1e3
        );
        drop(system);
        std::thread::sleep(Duration::from_millis(200));
    }
    println!(
        "(medians of the frame time over the ideal time; CPU per paced frame is every thread's \
         CPU time less the jobs' own work)"
    );
}
