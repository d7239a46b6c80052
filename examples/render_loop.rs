//! A render loop driving a few hundred frames of a small game: particles updated by a parallel
//! loop, physics islands spawned as one batch (each island spawning a job per contact batch),
//! animation → skinning → culling as parallel loops that hand their slices back from stage to
//! stage, all borrowing the game state.
//! Prints what each frame costs, and compares it with the same work done without a scheduler.
//!
//! `cargo run --release --example render_loop [-- --frames N --workers N --stats-every N]`
//!
//! What it prints:
//! - every 50th frame: the jobs it spawned, the arena bytes they used, how many jobs a worker
//!   took from another worker's queue (steals), the frame's wall time (`run_frame`, from call
//!   to return) and the objects that survived culling (what a renderer would draw);
//! - every `--stats-every` frames (default 100; 0: never), and after the last, the frame's
//!   `FrameStats` as a table: a line of totals, then a row per worker (0 is the driving thread).
//!   `polls`: polls of jobs it ran; `jobs`: jobs that finished on it; `taken` / `lost`: jobs it
//!   stole from others / others stole from it; `parks`: times it slept for lack of work and was
//!   woken; `busy µs`: from its first job to the frame's end, less `idle µs`: the time it had no
//!   work after its first job; `wake µs`: from the frame's start to its first job (`-`: it ran
//!   none). A late first job or a long idle time is a worker the frame did not use;
//! - the median, p99 and worst frame time, next to the **serial time**: the same frames run on
//!   a copy of the game, as plain function calls on the driving thread with no scheduler at
//!   all, each right after its scheduled twin so that both see the same machine load. serial /
//!   frame time is the speed-up (at most the worker count); workers × frame time − serial time,
//!   divided by the jobs, is the thread time per job spent on anything but the game's work
//!   (spawning, queues, waiting at counters, idle or descheduled workers);
//! - the share of a 60 fps frame's budget (16.7 ms) that the median frame uses;
//! - two state checks: every frame spawned the named, island and contact jobs and a number of loop
//!   pieces within what the loops allow (at least one, at most one per `min_len` items), and the
//!   scheduled run and the serial run end in the same game state, bit for bit (every particle,
//!   body and bone, and the objects drawn in every frame). A job skipped or run twice changes
//!   the state; culling run before skinning had finished (a counter released too early) would
//!   most likely change the objects drawn. The process exits with status 1 if a check fails.

use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use frame_scheduler::{Frame, Priority, Scheduler};

const PARTICLES: usize = 400_000;
const PARTICLE_CHUNK: usize = 256;
const ISLANDS: usize = 512;
const BODIES_PER_ISLAND: usize = 48;
const SKELETONS: usize = 2048;
const BONES: usize = 64;
const CONTACT_BATCH: usize = 16;
const SKELETON_CHUNK: usize = 4;
const OBJECTS: usize = 100_000;
const CULL_CHUNK: usize = 128;
const DT: f32 = 1.0 / 60.0;
/// A 60 fps frame's time budget.
const BUDGET_60FPS: Duration = Duration::from_micros(16_667);
/// The jobs one frame spawns besides its parallel loops' pieces (how many pieces a loop makes
/// depends on how often idle workers ask for work): the three named jobs (particles, physics,
/// and animation with skinning and culling), a job per island and per contact batch.
const FIXED_JOBS_PER_FRAME: u64 =
    (3 + ISLANDS * (1 + BODIES_PER_ISLAND.div_ceil(CONTACT_BATCH))) as u64;
/// The most pieces the four loops may make: one per `min_len` items.
const MAX_LOOP_JOBS: u64 = (PARTICLES.div_ceil(PARTICLE_CHUNK)
    + 2 * SKELETONS.div_ceil(SKELETON_CHUNK)
    + OBJECTS.div_ceil(CULL_CHUNK)) as u64;

#[derive(Clone, Copy, Default)]
struct Particle {
    pos: [f32; 3],
    vel: [f32; 3],
    life: f32,
}

#[derive(Clone, Copy, Default)]
struct Body {
    pos: [f32; 3],
    vel: [f32; 3],
}

struct Skeleton {
    time: f32,
    local: [[f32; 4]; BONES],
    world: [[f32; 4]; BONES],
    skin: [[f32; 4]; BONES],
}

struct Object {
    center: [f32; 3],
    radius: f32,
}

struct Game {
    particles: Vec<Particle>,
    islands: Vec<Vec<Body>>,
    skeletons: Vec<Skeleton>,
    objects: Vec<Object>,
    /// Per skeleton chunk, how far its skinned bones sway (f32 bits), read by culling.
    sway: Vec<AtomicU32>,
    visible: Vec<u32>,
}

impl Game {
    fn new() -> Game {
        let mut seed = 0x2545_f491_4f6c_dd1du64;
        let mut rnd = move || {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            (seed >> 40) as f32 / (1u64 << 24) as f32
        };
        Game {
            particles: (0..PARTICLES)
                .map(|_| Particle {
                    pos: [rnd(), rnd(), rnd()],
                    vel: [rnd() - 0.5, rnd() * 2.0, rnd() - 0.5],
                    life: rnd() * 4.0,
                })
                .collect(),
            islands: (0..ISLANDS)
                .map(|_| {
                    (0..BODIES_PER_ISLAND)
                        .map(|_| Body {
                            pos: [rnd(), rnd() + 1.0, rnd()],
                            vel: [0.0; 3],
                        })
                        .collect()
                })
                .collect(),
            skeletons: (0..SKELETONS)
                .map(|i| Skeleton {
                    time: i as f32 * 0.01,
                    local: [[0.0; 4]; BONES],
                    world: [[0.0; 4]; BONES],
                    skin: [[0.0; 4]; BONES],
                })
                .collect(),
            objects: (0..OBJECTS)
                .map(|_| Object {
                    center: [rnd() * 100.0, rnd() * 10.0, rnd() * 100.0],
                    radius: 0.5 + rnd(),
                })
                .collect(),
            sway: (0..SKELETONS.div_ceil(SKELETON_CHUNK))
                .map(|_| AtomicU32::new(0))
                .collect(),
            visible: vec![0; OBJECTS.div_ceil(CULL_CHUNK)],
        }
    }
}

fn update_particles(chunk: &mut [Particle]) {
    for p in chunk {
        p.vel[1] -= 9.81 * DT;
        for k in 0..3 {
            p.pos[k] += p.vel[k] * DT;
        }
        p.life -= DT;
        if p.pos[1] < 0.0 || p.life <= 0.0 {
            p.pos[1] = 1.0;
            p.vel[1] = p.vel[1].abs() * 0.5 + 1.0;
            p.life = 4.0;
        }
    }
}

/// One island: gravity over the island, then one job per contact batch (jobs spawned by a
/// job), each solving its contacts and integrating its bodies. The island's job finishes once
/// all its batches have.
async fn solve_island<'frame>(frame: &'frame Frame<'frame, '_>, bodies: &'frame mut [Body]) {
    apply_gravity(bodies);
    let contacts = frame.counter();
    for batch in bodies.chunks_mut(CONTACT_BATCH) {
        frame.spawn_counted(contacts, async move { solve_contacts(batch) });
    }
    contacts.await;
}

fn apply_gravity(bodies: &mut [Body]) {
    for b in bodies {
        b.vel[1] -= 9.81 * DT;
    }
}

fn solve_contacts(batch: &mut [Body]) {
    for _ in 0..4 {
        for b in batch.iter_mut() {
            if b.pos[1] + b.vel[1] * DT < 0.0 {
                b.vel[1] = -b.vel[1] * 0.3;
            }
        }
    }
    for b in batch.iter_mut() {
        for k in 0..3 {
            b.pos[k] += b.vel[k] * DT;
        }
    }
}

fn animate(chunk: &mut [Skeleton]) {
    for s in chunk {
        s.time += DT;
        for (i, bone) in s.local.iter_mut().enumerate() {
            let a = s.time + i as f32 * 0.1;
            *bone = [a.sin(), a.cos(), 0.0, 1.0];
        }
    }
}

fn skin(chunk: &mut [Skeleton]) -> f32 {
    let mut sway = 0.0f32;
    for s in chunk {
        let mut parent = [0.0f32; 4];
        for i in 0..BONES {
            for (k, p) in parent.iter().enumerate() {
                s.world[i][k] = p * 0.5 + s.local[i][k];
            }
            parent = s.world[i];
            s.skin[i] = s.world[i].map(|w| w * 0.98);
        }
        sway = sway.max(s.skin[BONES - 1][0].abs());
    }
    sway
}

fn cull(objects: &[Object], sway: &[AtomicU32], eye: [f32; 3]) -> u32 {
    let sway = sway
        .iter()
        .map(|s| f32::from_bits(s.load(Ordering::Relaxed)))
        .fold(0.0, f32::max);
    objects
        .iter()
        .filter(|o| {
            let d: f32 = (0..3).map(|k| (o.center[k] - eye[k]).powi(2)).sum();
            d.sqrt() - o.radius < 60.0 + sway
        })
        .count() as u32
}

/// One frame of the same work as plain calls on this thread, in an order the counters of the
/// scheduled frame allow: what the work costs without a scheduler, and the state the scheduled
/// frames must reproduce.
fn serial_frame(game: &mut Game, eye: [f32; 3]) {
    for chunk in game.particles.chunks_mut(PARTICLE_CHUNK) {
        update_particles(chunk);
    }
    for island in &mut game.islands {
        apply_gravity(island);
        for batch in island.chunks_mut(CONTACT_BATCH) {
            solve_contacts(batch);
        }
    }
    for chunk in game.skeletons.chunks_mut(SKELETON_CHUNK) {
        animate(chunk);
    }
    for (chunk, sway) in game.skeletons.chunks_mut(SKELETON_CHUNK).zip(&game.sway) {
        sway.store(skin(chunk).to_bits(), Ordering::Relaxed);
    }
    for (objects, out) in game.objects.chunks(CULL_CHUNK).zip(game.visible.iter_mut()) {
        *out = cull(objects, &game.sway, eye);
    }
}

/// The parts of the game state in which `a` and `b` differ, compared bit for bit.
fn differences(a: &Game, b: &Game) -> Vec<&'static str> {
    fn bits<const N: usize>(v: [f32; N]) -> [u32; N] {
        v.map(f32::to_bits)
    }
    let mut out = Vec::new();
    let particles = a.particles.iter().zip(&b.particles).all(|(p, q)| {
        bits(p.pos) == bits(q.pos) && bits(p.vel) == bits(q.vel) && bits([p.life]) == bits([q.life])
    });
    if !particles {
        out.push("particles");
    }
    let bodies = a.islands.iter().flatten().zip(b.islands.iter().flatten());
    if !bodies
        .into_iter()
        .all(|(p, q)| bits(p.pos) == bits(q.pos) && bits(p.vel) == bits(q.vel))
    {
        out.push("bodies");
    }
    let skeletons = a.skeletons.iter().zip(&b.skeletons).all(|(s, t)| {
        s.time.to_bits() == t.time.to_bits()
            && (0..BONES).all(|i| {
                bits(s.local[i]) == bits(t.local[i])
                    && bits(s.world[i]) == bits(t.world[i])
                    && bits(s.skin[i]) == bits(t.skin[i])
            })
    });
    if !skeletons {
        out.push("skeletons");
    }
    let sway =
        |g: &Game| -> Vec<u32> { g.sway.iter().map(|s| s.load(Ordering::Relaxed)).collect() };
    if sway(a) != sway(b) {
        out.push("sway");
    }
    if a.visible != b.visible {
        out.push("culling counts");
    }
    out
}

fn arg(name: &str, default: usize) -> usize {
    let args: Vec<String> = std::env::args().collect();
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1))
        .map(|v| {
            v.parse()
                .unwrap_or_else(|_| panic!("{name} expects a number, got {v}"))
        })
        .unwrap_or(default)
}

fn eye_at(frame: usize) -> [f32; 3] {
    [50.0 + (frame as f32 * 0.05).sin() * 20.0, 5.0, 50.0]
}

fn main() {
    let frames = arg("--frames", 300);
    let stats_every = arg("--stats-every", 100);
    if frames == 0 {
        eprintln!("--frames must be at least 1");
        std::process::exit(2);
    }
    let mut builder = Scheduler::builder();
    if let Some(w) = std::env::args()
        .position(|a| a == "--workers")
        .map(|_| arg("--workers", 0))
    {
        builder = builder.workers(w);
    }
    let mut scheduler = builder
        .build()
        .unwrap_or_else(|e| panic!("bad configuration: {e}"));
    let workers = scheduler.workers();
    let mut game = Game::new();
    println!("render loop: {frames} frames on {workers} workers (driving thread included)");
    println!(
        "every 50th frame: jobs spawned, arena bytes they used, jobs stolen from another \
         worker's queue, run_frame's wall time, objects left after culling"
    );
    if stats_every > 0 {
        println!(
            "every {stats_every}th frame and the last: per worker, polls, jobs finished, jobs \
             stolen (taken) and lost to thieves, parks, busy and idle time, and the wait from \
             the frame's start to its first job (wake); see the file's docs"
        );
    }

    // The same frames without the scheduler, on a copy of the game, one after each scheduled
    // frame, so that both see the same load from the rest of the machine.
    let mut serial_game = Game::new();
    let mut serial_times = Vec::with_capacity(frames);
    let mut serial_drawn = Vec::with_capacity(frames);
    let mut frame_times = Vec::with_capacity(frames);
    let mut drawn_per_frame = Vec::with_capacity(frames);
    let mut wrong_job_counts = 0;
    for f in 0..frames {
        let eye = eye_at(f);
        let Game {
            particles,
            islands,
            skeletons,
            objects,
            sway,
            visible,
        } = &mut game;
        let sway = &*sway;
        let start = Instant::now();
        scheduler.run_frame(async |frame| {
            // The critical path (physics, and animation -> skinning -> culling, which the
            // renderer needs first) runs at High priority; particles, which nobody waits for
            // until the end, at Low: a worker takes any queued High job before a Low one. The
            // loops' pieces and the islands' contact jobs inherit the priority of the job that
            // started them. Names show in traces (examples/trace.rs).
            let particles_done =
                frame
                    .job()
                    .priority(Priority::Low)
                    .name("particles")
                    .spawn(async move {
                        // A parallel loop splits the particles only as far as idle workers ask
                        // for, never below PARTICLE_CHUNK.
                        frame
                            .for_each_chunk(particles, PARTICLE_CHUNK, |_, chunk| {
                                update_particles(chunk)
                            })
                            .await;
                    });
            // One job per island, published as one batch; each island spawns its contact jobs.
            let physics = frame
                .job()
                .priority(Priority::High)
                .name("physics")
                .spawn(async move {
                    let islands_done = frame.counter();
                    frame.spawn_batch(
                        islands_done,
                        islands.iter_mut().map(|island| solve_island(frame, island)),
                    );
                    islands_done.await;
                });

            // Animation, then skinning, then culling: two loops over the same skeleton chunks,
            // the second starting when the first hands the chunks back (the borrow checker
            // sees the order), then a loop over the culling chunks.
            frame
                .job()
                .priority(Priority::High)
                .name("animation, skinning, culling")
                .spawn(async move {
                    let mut chunks =
                        frame.vec_with_capacity(skeletons.len().div_ceil(SKELETON_CHUNK));
                    chunks.extend(skeletons.chunks_mut(SKELETON_CHUNK).zip(sway));
                    let chunks = chunks.into_slice();
                    let chunks = frame
                        .for_each_chunk(chunks, 1, |_, part| {
                            part.iter_mut().for_each(|(chunk, _)| animate(chunk))
                        })
                        .await;
                    frame
                        .for_each_chunk(chunks, 1, |_, part| {
                            for (chunk, sway) in part.iter_mut() {
                                sway.store(skin(chunk).to_bits(), Ordering::Relaxed);
                            }
                        })
                        .await;
                    frame
                        .for_each_chunk(visible, 1, move |first, out| {
                            for (k, v) in out.iter_mut().enumerate() {
                                let at = (first + k) * CULL_CHUNK;
                                *v = cull(
                                    &objects[at..(at + CULL_CHUNK).min(objects.len())],
                                    sway,
                                    eye,
                                );
                            }
                        })
                        .await;
                })
                .await;
            physics.await;
            particles_done.await;
        });
        let elapsed = start.elapsed();
        frame_times.push(elapsed);
        // "Present": what the renderer would draw.
        let drawn: u32 = game.visible.iter().sum();
        drawn_per_frame.push(drawn);
        let stats = scheduler.last_frame_stats();
        // Each loop runs at least one piece; at most one per `min_len` items.
        if stats.jobs < FIXED_JOBS_PER_FRAME + 4
            || stats.jobs > FIXED_JOBS_PER_FRAME + MAX_LOOP_JOBS
        {
            wrong_job_counts += 1;
        }
        if f % 50 == 0 || f + 1 == frames {
            println!(
                "frame {:>4}: {:>6} jobs, {:>8} arena bytes, {:>4} steals, {:>7.3} ms, {drawn} objects drawn",
                stats.index,
                stats.jobs,
                stats.arena_bytes,
                stats.steals,
                ms(elapsed)
            );
        }
        if stats_every > 0 && (f % stats_every == 0 || f + 1 == frames) {
            println!("{stats}");
        }

        let start = Instant::now();
        serial_frame(&mut serial_game, eye);
        serial_times.push(start.elapsed());
        serial_drawn.push(serial_game.visible.iter().sum::<u32>());
    }
    let stats = scheduler.last_frame_stats();

    let median = percentile(&frame_times, 0.5);
    let serial = percentile(&serial_times, 0.5);
    let total: Duration = frame_times.iter().sum();
    println!("---");
    println!(
        "jobs per frame:   {} in the last frame: 3 named jobs (particles at Low priority, physics and animation at High), {ISLANDS} islands, {} contact batches, and {} \
         pieces of 4 parallel loops (at most {MAX_LOOP_JOBS}: loops split only while workers \
         are idle)",
        stats.jobs,
        ISLANDS * BODIES_PER_ISLAND.div_ceil(CONTACT_BATCH),
        stats.jobs - FIXED_JOBS_PER_FRAME,
    );
    println!(
        "arena bytes:      {} used by the last frame ({:.0} per job), {} kept for the next",
        stats.arena_bytes,
        stats.arena_bytes as f64 / stats.jobs as f64,
        stats.arena_capacity
    );
    println!(
        "frame time:       median {:.3} ms, p99 {:.3} ms, max {:.3} ms (run_frame on {workers} \
         workers; {:.1} ms for all {frames} frames)",
        ms(median),
        ms(percentile(&frame_times, 0.99)),
        ms(percentile(&frame_times, 1.0)),
        ms(total),
    );
    println!(
        "serial time:      median {:.3} ms (the same frames as plain calls on one thread, no \
         scheduler)",
        ms(serial)
    );
    println!(
        "speed-up:         {:.2}x of at most {workers}x (serial time / frame time, medians)",
        serial.as_secs_f64() / median.as_secs_f64()
    );
    let overhead = workers as f64 * median.as_secs_f64() - serial.as_secs_f64();
    println!(
        "not the work:     {:.0} ns per job ({workers} workers x frame time - serial time, over \
         {} jobs: spawning, queues, waiting at counters, idle or descheduled workers)",
        overhead * 1e9 / stats.jobs as f64,
        stats.jobs
    );
    println!(
        "60 fps budget:    the median frame uses {:.1}% of 16.7 ms (serial: {:.1}%)",
        100.0 * median.as_secs_f64() / BUDGET_60FPS.as_secs_f64(),
        100.0 * serial.as_secs_f64() / BUDGET_60FPS.as_secs_f64()
    );

    let mut failed = false;
    if wrong_job_counts == 0 {
        println!(
            "state check:      every frame spawned its {FIXED_JOBS_PER_FRAME} named, island and contact \
             jobs and between 4 and {MAX_LOOP_JOBS} loop pieces"
        );
    } else {
        println!(
            "state check:      FAILED: {wrong_job_counts} of {frames} frames spawned a number of \
             jobs outside {} to {}",
            FIXED_JOBS_PER_FRAME + 4,
            FIXED_JOBS_PER_FRAME + MAX_LOOP_JOBS
        );
        failed = true;
    }
    let differ = differences(&game, &serial_game);
    if differ.is_empty() && drawn_per_frame == serial_drawn {
        println!(
            "state check:      after {frames} frames, the {PARTICLES} particles, {} bodies, \
             {SKELETONS} skeletons and the objects drawn in each frame equal the serial run's, bit \
             for bit",
            ISLANDS * BODIES_PER_ISLAND
        );
    } else {
        let mut differ = differ;
        if drawn_per_frame != serial_drawn {
            differ.push("objects drawn per frame");
        }
        println!(
            "state check:      FAILED: the scheduled run and the serial run differ in: {}",
            differ.join(", ")
        );
        failed = true;
    }
    if failed {
        std::process::exit(1);
    }
}

/// The `p` quantile of `times` (0.5 the median, 1.0 the largest).
fn percentile(times: &[Duration], p: f64) -> Duration {
    let mut sorted = times.to_vec();
    sorted.sort();
    sorted[((sorted.len() - 1) as f64 * p).round() as usize]
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}
