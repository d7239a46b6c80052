//! Kept arena memory against the frame's use, for the memory table in BENCHMARKS.md.
//!
//! `cargo run --release --example memory_table`
//!
//! Two measurements, using only `spawn_counted` and `FrameStats` (so the same file also runs
//! on versions of the crate before frame memory had blocks):
//! 1. A steady frame of 100 000 jobs of 256 bytes (100 parents spawning 1 000 each, so jobs
//!    land on whichever worker runs a parent), at 1 to 64 workers: the bytes a frame uses
//!    (`arena_bytes`) and the bytes kept between frames (`arena_capacity`).
//! 2. A spike: 2 and 8 workers run steady frames of 10 000 jobs, one frame of 1 000 000, then
//!    steady frames again; kept memory is printed around the spike.

use frame_scheduler::{Frame, Scheduler};

/// A job whose future is 256 bytes (header and rounding come on top in the arena).
async fn job(payload: [u8; 248]) {
    std::hint::black_box(&payload);
}

async fn frame_of<'f, 'e>(frame: &'f Frame<'f, 'e>, parents: usize, children: usize) {
    let all = frame.counter();
    for p in 0..parents {
        frame.spawn_counted(all, async move {
            let mine = frame.counter();
            for c in 0..children {
                frame.spawn_counted(mine, job([(p + c) as u8; 248]));
            }
            mine.await;
        });
    }
    all.await;
}

fn mib(bytes: usize) -> f64 {
    bytes as f64 / (1024.0 * 1024.0)
}

fn main() {
    println!("steady frame of 100 000 jobs of 256 bytes (after 30 frames)");
    println!("| workers | used MiB | kept MiB | kept / used |");
    println!("|---:|---:|---:|---:|");
    for workers in [1, 2, 4, 8, 16, 32, 64] {
        let mut s = Scheduler::builder().workers(workers).build().unwrap();
        for _ in 0..30 {
            s.run_frame(async |f| frame_of(f, 100, 1000).await);
        }
        let st = s.last_frame_stats();
        println!(
            "| {workers} | {:.1} | {:.1} | {:.2} |",
            mib(st.arena_bytes),
            mib(st.arena_capacity),
            st.arena_capacity as f64 / st.arena_bytes as f64
        );
    }
    for workers in [2, 8] {
        println!();
        println!("spike on {workers} workers: frames of 10 000 jobs, one of 1 000 000 at frame 20");
        println!("| frame | jobs | used MiB | kept MiB |");
        println!("|---:|---:|---:|---:|");
        let mut s = Scheduler::builder().workers(workers).build().unwrap();
        for i in 0..160 {
            let (parents, children) = if i == 20 { (1000, 1000) } else { (100, 100) };
            s.run_frame(async |f| frame_of(f, parents, children).await);
            let st = s.last_frame_stats();
            if i == 19 || i == 20 || i == 21 || i % 20 == 0 || i == 139 || i == 140 || i == 141 {
                println!(
                    "| {i} | {} | {:.1} | {:.1} |",
                    st.jobs,
                    mib(st.arena_bytes),
                    mib(st.arena_capacity)
                );
            }
        }
    }
}
