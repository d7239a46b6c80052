//! What does spawning an empty job cost? 10 000 empty jobs per frame, per job, on every system
//! with the same thread count, against two serial floors: boxing closures into a `Vec` and
//! writing them into a bump arena, then running them in order on one thread.
//!
//! `BENCH_THREADS=N cargo bench -p frame-scheduler-compare --bench spawn` (default 2 threads).

mod common;

use common::{Systems, Workload};
use criterion::{Criterion, Throughput, criterion_group, criterion_main};

fn spawn(c: &mut Criterion) {
    let mut systems = Systems::new(common::threads_from_env());
    common::bench_workload(c, &mut systems, Workload::Spawn);

    // Variants of the same workload: frame-scheduler with counted jobs and one counter instead
    // of detached handles, tokio with its root on a worker instead of the block_on thread, and
    // frame-scheduler on one worker.
    let mut group = c.benchmark_group(format!(
        "{}/{}threads/variants",
        Workload::Spawn.group(),
        systems.threads
    ));
    group.throughput(Throughput::Elements(Workload::Spawn.units()));
    group.bench_function("frame-scheduler-counted", |b| {
        b.iter(|| common::frame_scheduler_spawn_counted(&mut systems.frame))
    });
    group.bench_function("tokio-root-on-worker", |b| {
        b.iter(|| common::peers::tokio_spawn_root_on_worker(&systems.tokio))
    });
    // One worker: the per-job cost with no cross-core traffic, against the serial floors.
    let mut one = frame_scheduler::Scheduler::builder()
        .workers(1)
        .build()
        .unwrap();
    group.bench_function("frame-scheduler-1-worker", |b| {
        b.iter(|| common::frame_scheduler(&mut one, Workload::Spawn, &mut [], &mut systems.loops))
    });
    group.bench_function("frame-scheduler-counted-1-worker", |b| {
        b.iter(|| common::frame_scheduler_spawn_counted(&mut one))
    });
    group.finish();
}

criterion_group! {
    name = benches;
    config = common::criterion_config();
    targets = spawn
}
criterion_main!(benches);
