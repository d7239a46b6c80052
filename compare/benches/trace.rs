//! What does tracing cost? `spawn 10k empty` (10 000 detached empty jobs per frame, the frame's
//! time per job) on a scheduler built without tracing, with `trace_capacity` set but no trace
//! recording (the hot paths' flag check), and while recording (three events per job: spawn,
//! poll begin, poll end; the buffers are large enough to keep them all).
//!
//! `BENCH_THREADS=N cargo bench -p frame-scheduler-compare --bench trace` (default 2 threads).

mod common;

use std::time::{Duration, Instant};

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use frame_scheduler::Scheduler;

const JOBS: usize = 10_000;

fn frame(s: &mut Scheduler) {
    s.run_frame(async |frame| {
        for _ in 0..JOBS {
            frame.spawn(async {});
        }
    });
}

fn trace(c: &mut Criterion) {
    let threads = common::threads_from_env();
    let mut off = Scheduler::builder().workers(threads).build().unwrap();
    let mut ready = Scheduler::builder()
        .workers(threads)
        .trace_capacity(1 << 16)
        .build()
        .unwrap();
    let mut g = c.benchmark_group(format!("trace/spawn_10k_empty/{threads}threads"));
    g.throughput(Throughput::Elements(JOBS as u64));
    g.bench_function("no-tracing", |b| b.iter(|| frame(&mut off)));
    g.bench_function("capacity-not-recording", |b| b.iter(|| frame(&mut ready)));
    g.bench_function("recording", |b| {
        b.iter_custom(|iters| {
            let mut total = Duration::ZERO;
            for _ in 0..iters {
                ready.start_trace();
                let t = Instant::now();
                frame(&mut ready);
                total += t.elapsed();
                let trace = ready.take_trace();
                assert_eq!(trace.dropped(), 0, "the buffers must keep every event");
            }
            total
        })
    });
    g.finish();
}

criterion_group! {
    name = benches;
    config = common::criterion_config();
    targets = trace
}
criterion_main!(benches);
