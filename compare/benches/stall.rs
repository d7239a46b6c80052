//! What does stall detection cost? `spawn 10k empty` (10 000 detached empty jobs per frame, the
//! frame's time per job) and `handles 1k` (1 000 jobs each awaiting a handle, so every job
//! registers a wait) on a scheduler built without `stall_after` and on one with it (a watchdog
//! that never fires: the frames are far shorter than 60 s). With it on, each job carries a node
//! for the watchdog (64 bytes more frame memory), each spawn links it, and each poll reads the
//! clock once.
//!
//! `BENCH_THREADS=N cargo bench -p frame-scheduler-compare --bench stall` (default 2 threads).

mod common;

use std::time::Duration;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use frame_scheduler::Scheduler;

const JOBS: usize = 10_000;
const WAITERS: usize = 1_000;

fn spawn_empty(s: &mut Scheduler) {
    s.run_frame(async |frame| {
        for _ in 0..JOBS {
            frame.spawn(async {});
        }
    });
}

fn await_handles(s: &mut Scheduler) {
    s.run_frame(async |frame| {
        let c = frame.counter();
        for i in 0..WAITERS {
            frame.spawn_counted(c, async move {
                let inner = frame.spawn(async move { i });
                std::hint::black_box(inner.await);
            });
        }
        c.await;
    });
}

fn stall(c: &mut Criterion) {
    let threads = common::threads_from_env();
    let mut off = Scheduler::builder().workers(threads).build().unwrap();
    let mut on = Scheduler::builder()
        .workers(threads)
        .stall_after(Duration::from_secs(60))
        .build()
        .unwrap();
    let mut g = c.benchmark_group(format!("stall/spawn_10k_empty/{threads}threads"));
    g.throughput(Throughput::Elements(JOBS as u64));
    g.bench_function("off", |b| b.iter(|| spawn_empty(&mut off)));
    g.bench_function("on", |b| b.iter(|| spawn_empty(&mut on)));
    g.finish();
    let mut g = c.benchmark_group(format!("stall/await_handles_1k/{threads}threads"));
    g.throughput(Throughput::Elements(2 * WAITERS as u64));
    g.bench_function("off", |b| b.iter(|| await_handles(&mut off)));
    g.bench_function("on", |b| b.iter(|| await_handles(&mut on)));
    g.finish();
}

criterion_group! {
    name = benches;
    config = common::criterion_config();
    targets = stall
}
criterion_main!(benches);
