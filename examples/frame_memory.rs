//! Frame memory in a physics step: jobs build contact lists in `FrameVec`s and hand them back
//! as frame slices; then a spike frame, and the memory it took given back.
//!
//! `cargo run --release --example frame_memory`
//!
//! Each frame, 64 jobs each test one strip of bodies against its neighbours and collect the
//! pairs that touch in a `FrameVec`, returned through the job's handle as a `&mut [Contact]`
//! that lives until the frame ends. The root sums them and labels the frame with a frame
//! string. Nothing here touches the heap once the arenas have warmed up. Every 30th frame and
//! around the spike the example prints what the frame used (`arena_bytes`), what the scheduler
//! kept for the next frames (`arena_capacity`: one block per worker plus the shared pool), the
//! blocks borrowed from the pool by workers that ran out of their own, the allocations too big
//! to share a block (the spike's long contact lists), and the bytes trimmed.

use frame_scheduler::{Frame, Scheduler};

#[derive(Clone, Copy, Debug)]
struct Body {
    x: f32,
    y: f32,
    r: f32,
}

#[derive(Clone, Copy, Debug)]
struct Contact {
    a: u32,
    b: u32,
    depth: f32,
}

const STRIPS: usize = 64;

/// The contacts of the bodies `lo..hi` against every later body within reach (sorted by x).
async fn strip_contacts<'f, 'e>(
    frame: &'f Frame<'f, 'e>,
    bodies: &'f [Body],
    lo: usize,
    hi: usize,
) -> &'f mut [Contact] {
    let mut contacts = frame.vec();
    for i in lo..hi {
        let a = bodies[i];
        for (j, b) in bodies.iter().enumerate().skip(i + 1) {
            if b.x - a.x > a.r + 1.0 {
                break;
            }
            let (dx, dy) = (b.x - a.x, b.y - a.y);
            let reach = a.r + b.r;
            let d2 = dx * dx + dy * dy;
            if d2 < reach * reach {
                contacts.push(Contact {
                    a: i as u32,
                    b: j as u32,
                    depth: reach - d2.sqrt(),
                });
            }
        }
    }
    contacts.into_slice()
}

/// Bodies spread along x, `n` of them, deterministic.
fn bodies(n: usize) -> Vec<Body> {
    let mut seed = 0x9e37_79b9_u32;
    let mut next = move || {
        seed ^= seed << 13;
        seed ^= seed >> 17;
        seed ^= seed << 5;
        (seed % 10_000) as f32 / 10_000.0
    };
    let mut v: Vec<Body> = (0..n)
        .map(|i| Body {
            x: i as f32 * 0.05 + next(),
            y: next() * 8.0,
            r: 0.2 + next() * 0.3,
        })
        .collect();
    v.sort_by(|a, b| a.x.total_cmp(&b.x));
    v
}

fn step(scheduler: &mut Scheduler, bodies: &[Body]) -> (usize, f32) {
    scheduler.run_frame(async |frame| {
        let per = bodies.len().div_ceil(STRIPS);
        let mut strips = frame.vec_with_capacity(STRIPS);
        for s in 0..STRIPS {
            let (lo, hi) = (
                (s * per).min(bodies.len()),
                ((s + 1) * per).min(bodies.len()),
            );
            strips.push(frame.spawn(strip_contacts(frame, bodies, lo, hi)));
        }
        let (mut n, mut deepest) = (0, 0.0f32);
        for strip in strips {
            let contacts: &mut [Contact] = strip.await;
            n += contacts.len();
            for c in contacts.iter() {
                debug_assert!(c.a < c.b);
                deepest = deepest.max(c.depth);
            }
        }
        let label = frame.alloc_str(&format!("{n} contacts"));
        std::hint::black_box(label);
        (n, deepest)
    })
}

fn main() {
    let workers = std::thread::available_parallelism().map_or(2, |n| n.get());
    let mut scheduler = Scheduler::builder()
        .workers(workers)
        .arena_block_size(64 * 1024)
        .arena_trim_after(30)
        .build()
        .expect("a scheduler");
    let steady = bodies(20_000);
    let spike = bodies(400_000);
    println!(
        "{workers} workers, 64 KiB blocks, trim after 30 frames; {} bodies a frame, one frame \
         of {} at frame 60",
        steady.len(),
        spike.len()
    );
    println!("frame  contacts   used KiB   kept KiB  blocks  borrowed  large  trimmed KiB  ms");
    for i in 0..120 {
        let b = if i == 60 { &spike } else { &steady };
        let (n, _deepest) = step(&mut scheduler, b);
        let st = scheduler.last_frame_stats();
        if i % 30 == 0 || (59..=62).contains(&i) || st.arena_trimmed > 0 {
            println!(
                "{i:>5}  {n:>8}  {:>9.1}  {:>9.1}  {:>6}  {:>8}  {:>5}  {:>11.1}  {:.2}",
                st.arena_bytes as f64 / 1024.0,
                st.arena_capacity as f64 / 1024.0,
                st.arena_blocks,
                st.arena_blocks_borrowed,
                st.arena_large,
                st.arena_trimmed as f64 / 1024.0,
                st.elapsed.as_secs_f64() * 1e3
            );
        }
    }
    println!(
        "kept memory follows use: after the spike's 30 frames, the pool returned what the \
         steady frames do not need"
    );
}
