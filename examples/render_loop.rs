//! A render loop driving a few hundred frames of a small game: particles updated in chunks,
//! physics islands solved in parallel (each island spawning a job per contact batch),
//! animation → skinning → culling ordered by counters, all borrowing the game state.
//! Prints what each frame costs.
//!
//! `cargo run --release --example render_loop [-- --frames N --workers N]`

use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use frame_scheduler::{Frame, Scheduler};

const PARTICLES: usize = 400_000;
const PARTICLE_CHUNK: usize = 256;
const ISLANDS: usize = 512;
const BODIES_PER_ISLAND: usize = 48;
const SKELETONS: usize = 2048;
const BONES: usize = 64;
const SKELETON_CHUNK: usize = 4;
const OBJECTS: usize = 100_000;
const CULL_CHUNK: usize = 128;
const DT: f32 = 1.0 / 60.0;

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
    for b in bodies.iter_mut() {
        b.vel[1] -= 9.81 * DT;
    }
    let contacts = frame.counter();
    for batch in bodies.chunks_mut(16) {
        frame.spawn_counted(contacts, async move {
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
        });
    }
    contacts.await;
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

fn main() {
    let frames = arg("--frames", 300);
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
    let mut game = Game::new();
    println!(
        "render loop: {frames} frames on {} workers (driving thread included)",
        scheduler.workers()
    );

    let mut frame_times = Vec::with_capacity(frames);
    let mut eye = [50.0f32, 5.0, 50.0];
    for f in 0..frames {
        eye[0] = 50.0 + (f as f32 * 0.05).sin() * 20.0;
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
            // Particles and physics start at once; nobody waits for particles until the end.
            let particles_done = frame.counter();
            for chunk in particles.chunks_mut(PARTICLE_CHUNK) {
                frame.spawn_counted(particles_done, async move { update_particles(chunk) });
            }
            let physics = frame.counter();
            for island in islands.iter_mut() {
                frame.spawn_counted(physics, async move { solve_island(frame, island).await });
            }

            // Animation, then skinning, then culling, ordered by counters. A skeleton chunk is
            // lent to one job for the whole frame, so that job animates it, waits at the
            // `animated` barrier until every chunk is animated (Naughty Dog's WaitForCounter,
            // without a fiber), then skins it.
            let chunks = skeletons.len().div_ceil(SKELETON_CHUNK);
            let animated = frame.counter();
            animated.add(chunks);
            let skinned = frame.counter();
            for (chunk, sway) in skeletons.chunks_mut(SKELETON_CHUNK).zip(sway) {
                frame.spawn_counted(skinned, async move {
                    animate(chunk);
                    animated.done();
                    animated.await;
                    sway.store(skin(chunk).to_bits(), Ordering::Relaxed);
                });
            }
            skinned.await;
            let culling = frame.counter();
            for (objects, out) in objects.chunks(CULL_CHUNK).zip(visible.iter_mut()) {
                frame.spawn_counted(culling, async move { *out = cull(objects, sway, eye) });
            }
            culling.await;
            physics.await;
            particles_done.await;
        });
        let elapsed = start.elapsed();
        frame_times.push(elapsed);
        // "Present": what the renderer would draw.
        let drawn: u32 = game.visible.iter().sum();
        if f % 50 == 0 || f + 1 == frames {
            let stats = scheduler.last_frame_stats();
            println!(
                "frame {:>4}: {:>6} jobs, {:>8} arena bytes, {:>3} steals, {:>7.3} ms, {drawn} objects drawn",
                stats.index,
                stats.jobs,
                stats.arena_bytes,
                stats.steals,
                elapsed.as_secs_f64() * 1e3
            );
        }
    }

    let stats = scheduler.last_frame_stats();
    let mut sorted = frame_times.clone();
    sorted.sort();
    let pct = |p: f64| sorted[((sorted.len() - 1) as f64 * p).round() as usize];
    let total: Duration = frame_times.iter().sum();
    println!("---");
    println!("jobs per frame:   {}", stats.jobs);
    println!(
        "arena bytes:      {} used, {} kept for the next frame",
        stats.arena_bytes, stats.arena_capacity
    );
    println!(
        "frame time:       median {:.3} ms, p99 {:.3} ms, max {:.3} ms",
        ms(pct(0.5)),
        ms(pct(0.99)),
        ms(pct(1.0))
    );
    println!(
        "frame time / job: {:.0} ns (median frame time / jobs per frame, work included)",
        pct(0.5).as_nanos() as f64 / stats.jobs as f64
    );
    println!(
        "total:            {:.1} ms for {} frames",
        ms(total),
        frames
    );
    let heights: f32 = game.particles.iter().map(|p| p.pos[1]).sum::<f32>() / PARTICLES as f32;
    let bodies: f32 = game.islands.iter().flatten().map(|b| b.pos[1]).sum::<f32>();
    println!("state check:      mean particle height {heights:.3}, body height sum {bodies:.1}");
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}
