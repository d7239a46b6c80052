//! What does frame memory cost against the heap? Inside the same frame (so the frame's own
//! cost is the same on both sides), per element:
//! - `alloc`: 10 000 values of 32 bytes: `frame.alloc(v)` against `Box::new(v)` (each box kept
//!   until the end of the frame, then freed, as frame values are);
//! - `push`: 10 000 `u64`s pushed into a vector that starts empty: `FrameVec::push` against
//!   `Vec::push`;
//! - `jobs`: 64 jobs each building a list of 256 `u64`s (`FrameVec` against `Vec`), on
//!   `BENCH_THREADS` workers, where the heap's allocator is shared by every worker.
//!
//! `BENCH_THREADS=N cargo bench -p frame-scheduler-compare --bench memory` (default 2 threads).

mod common;

use std::hint::black_box;

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use frame_scheduler::Scheduler;

const N: usize = 10_000;
const JOBS: usize = 64;
const PER_JOB: usize = 256;

#[derive(Clone, Copy)]
struct Value {
    _words: [u64; 4],
}

fn memory(c: &mut Criterion) {
    let threads = common::threads_from_env();
    let mut one = Scheduler::builder().workers(1).build().unwrap();
    let mut many = Scheduler::builder().workers(threads).build().unwrap();

    let mut g = c.benchmark_group("frame_memory/alloc");
    g.throughput(Throughput::Elements(N as u64));
    g.bench_function("frame.alloc", |b| {
        b.iter(|| {
            one.run_frame(async |frame| {
                for i in 0..N {
                    black_box(frame.alloc(Value {
                        _words: [i as u64; 4],
                    }));
                }
            })
        })
    });
    let mut boxes: Vec<Box<Value>> = Vec::with_capacity(N);
    g.bench_function("Box::new", |b| {
        b.iter(|| {
            one.run_frame(async |_frame| {
                for i in 0..N {
                    boxes.push(black_box(Box::new(Value {
                        _words: [i as u64; 4],
                    })));
                }
                boxes.clear();
            })
        })
    });
    g.finish();

    let mut g = c.benchmark_group("frame_memory/push");
    g.throughput(Throughput::Elements(N as u64));
    g.bench_function("FrameVec::push", |b| {
        b.iter(|| {
            one.run_frame(async |frame| {
                let mut v = frame.vec();
                for i in 0..N as u64 {
                    v.push(i);
                }
                black_box(v.len())
            })
        })
    });
    g.bench_function("Vec::push", |b| {
        b.iter(|| {
            one.run_frame(async |_frame| {
                let mut v = Vec::new();
                for i in 0..N as u64 {
                    v.push(i);
                }
                black_box(v.len())
            })
        })
    });
    g.finish();

    let mut g = c.benchmark_group(format!("frame_memory/jobs/{threads}threads"));
    g.throughput(Throughput::Elements((JOBS * PER_JOB) as u64));
    g.bench_function(BenchmarkId::new("FrameVec", JOBS), |b| {
        b.iter(|| {
            many.run_frame(async |frame| {
                let c = frame.counter();
                for j in 0..JOBS as u64 {
                    frame.spawn_counted(c, async move {
                        let mut v = frame.vec();
                        for i in 0..PER_JOB as u64 {
                            v.push(i ^ j);
                        }
                        black_box(v.into_slice());
                    });
                }
                c.await;
            })
        })
    });
    g.bench_function(BenchmarkId::new("Vec", JOBS), |b| {
        b.iter(|| {
            many.run_frame(async |frame| {
                let c = frame.counter();
                for j in 0..JOBS as u64 {
                    frame.spawn_counted(c, async move {
                        let mut v = Vec::new();
                        for i in 0..PER_JOB as u64 {
                            v.push(i ^ j);
                        }
                        black_box(v);
                    });
                }
                c.await;
            })
        })
    });
    g.finish();
}

criterion_group! {
    name = benches;
    config = common::criterion_config();
    targets = memory
}
criterion_main!(benches);
