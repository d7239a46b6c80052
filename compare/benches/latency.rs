//! How long from a spawn or a wake until the job runs? Two workloads where nothing else can run
//! meanwhile, on every system with the same thread count:
//! - a chain of 1 000 jobs, each spawning the next (per job);
//! - two jobs waking each other through `futures::channel::mpsc`, 1 000 round trips (per round
//!   trip). Rayon jobs cannot await, so each blocks its thread on the channel; it needs two.
//!
//! `BENCH_THREADS=N cargo bench -p frame-scheduler-compare --bench latency` (default 2 threads).

mod common;

use common::{Systems, Workload};
use criterion::{Criterion, criterion_group, criterion_main};

fn latency(c: &mut Criterion) {
    let mut systems = Systems::new(common::threads_from_env());
    common::bench_workload(c, &mut systems, Workload::Chain);
    common::bench_workload(c, &mut systems, Workload::PingPong);
}

criterion_group! {
    name = benches;
    config = common::criterion_config();
    targets = latency
}
criterion_main!(benches);
