//! A traced frame: runs a few frames of a small game (particles, physics islands, an animation →
//! skinning → culling pipeline) with tracing on, and writes what every worker did into
//! `target/frame_trace.json` (Chrome Trace Event format) and `target/frame_timeline.svg`.
//!
//! `cargo run --release --example trace`
//!
//! Open the JSON in <https://ui.perfetto.dev> (or chrome://tracing): one track per worker, a
//! slice per poll named by the place the job was spawned, arrows from each spawn and wake to the
//! poll it caused. Open the SVG in any browser: one row per worker, one rectangle per poll,
//! idle time in grey, frame boundaries as lines.

use std::path::PathBuf;

use frame_scheduler::{Frame, Scheduler};

const PARTICLES: usize = 400_000;
const ISLANDS: usize = 64;
const BODIES: usize = 32;
const SKELETONS: usize = 256;

async fn solve_island<'f, 'e>(frame: &'f Frame<'f, 'e>, bodies: &'f mut [[f32; 4]]) {
    let contacts = frame.counter();
    for batch in bodies.chunks_mut(8) {
        frame.spawn_counted(contacts, async move {
            for b in batch.iter_mut() {
                b[1] -= 9.81 / 60.0;
                b[0] += b[1] / 60.0;
            }
        });
    }
    contacts.await;
}

fn main() -> std::io::Result<()> {
    let workers = std::thread::available_parallelism().map_or(2, |n| n.get());
    let mut scheduler = Scheduler::builder()
        .workers(workers)
        .trace_capacity(1 << 16)
        .build()
        .expect("a scheduler");
    let mut particles = vec![[0.0f32; 4]; PARTICLES];
    let mut islands = vec![vec![[1.0f32; 4]; BODIES]; ISLANDS];
    let mut skeletons = vec![[0.5f32; 64]; SKELETONS];
    let mut visible = vec![0u32; SKELETONS / 4];

    let mut frame = |scheduler: &mut Scheduler| {
        scheduler.run_frame(async |frame| {
            let particles = frame.for_each_chunk(&mut particles, 4096, |_, chunk| {
                for p in chunk {
                    p[1] -= 9.81 / 60.0;
                    p[0] += p[1] / 60.0;
                    p[2] = (p[0] * p[0] + p[1] * p[1]).sqrt();
                    p[3] = p[2].sin();
                }
            });
            let physics = frame.counter();
            frame.spawn_batch(
                physics,
                islands.iter_mut().map(|island| solve_island(frame, island)),
            );
            let skeletons = frame
                .for_each_chunk(&mut skeletons, 16, |_, chunk| {
                    for s in chunk {
                        for _ in 0..8 {
                            s.iter_mut()
                                .for_each(|b| *b = (*b * 1.01 + 0.3).sin().abs());
                        }
                    }
                })
                .await;
            let skeletons = &*skeletons;
            frame
                .for_each_chunk(&mut visible, 4, |first, out| {
                    for (k, v) in out.iter_mut().enumerate() {
                        let s = &skeletons[(first + k) * 4..(first + k + 1) * 4];
                        *v = s.iter().filter(|s| s[0] > 0.5).count() as u32;
                    }
                })
                .await;
            physics.await;
            particles.await;
        })
    };
    // Warm up (arenas, threads), then record three frames.
    for _ in 0..10 {
        frame(&mut scheduler);
    }
    scheduler.start_trace();
    for _ in 0..3 {
        frame(&mut scheduler);
    }
    let trace = scheduler.take_trace();

    let dir = PathBuf::from(std::env::var("CARGO_TARGET_DIR").unwrap_or_else(|_| "target".into()));
    std::fs::create_dir_all(&dir)?;
    let json = dir.join("frame_trace.json");
    let svg = dir.join("frame_timeline.svg");
    trace.write_chrome_json(std::io::BufWriter::new(std::fs::File::create(&json)?))?;
    trace.write_svg(std::io::BufWriter::new(std::fs::File::create(&svg)?))?;
    println!(
        "recorded {} events of {} frames on {workers} workers ({} dropped)",
        trace.events().len(),
        trace.frames().count(),
        trace.dropped()
    );
    println!(
        "{}: open it in https://ui.perfetto.dev or chrome://tracing",
        json.display()
    );
    println!("{}: open it in a browser", svg.display());
    Ok(())
}
