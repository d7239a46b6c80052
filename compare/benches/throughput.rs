//! How fast does a parallel-for of small jobs go? 10 000 jobs of about 100 ns of arithmetic per
//! frame, each writing its own slot of a borrowed slice, on every system with the same thread
//! count, against the same loop on one thread; then frame-scheduler with 1 worker against N to
//! show how it scales.
//!
//! tokio and async-executor cannot borrow the slice (`'static` tasks): their jobs return the
//! value through the join handle and the root writes it into the slot (see `common`).
//!
//! `BENCH_THREADS=N cargo bench -p frame-scheduler-compare --bench throughput` (default 2 threads).

mod common;

use common::{Systems, Workload};
use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use frame_scheduler::Scheduler;

fn throughput(c: &mut Criterion) {
    let mut systems = Systems::new(common::threads_from_env());
    common::bench_workload(c, &mut systems, Workload::Throughput);

    // Scaling: the same frame on 1 worker and on N.
    let mut one = Scheduler::builder()
        .workers(1)
        .build()
        .expect("build frame-scheduler");
    let mut group = c.benchmark_group(format!("{}/scaling", Workload::Throughput.group()));
    group.throughput(Throughput::Elements(Workload::Throughput.units()));
    group.bench_function("frame-scheduler/1-worker", |b| {
        b.iter(|| common::frame_scheduler_throughput(&mut one, &mut systems.out))
    });
    group.bench_function(
        format!("frame-scheduler/{}-workers", systems.threads),
        |b| b.iter(|| common::frame_scheduler_throughput(&mut systems.frame, &mut systems.out)),
    );
    group.finish();
}

criterion_group! {
    name = benches;
    config = common::criterion_config();
    targets = throughput
}
criterion_main!(benches);
