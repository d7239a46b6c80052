//! What does waiting for a batch of jobs cost? On every system with the same thread count:
//! - fan-out: 1 000 counted jobs awaited by one counter (peers: a scope, or joining every
//!   handle);
//! - stages: 16 stages of 256 jobs, each stage started once the previous stage's counter is
//!   zero (peers: a rayon scope or a bevy scope per stage; tokio and async-executor join every
//!   handle of the stage).
//!
//! `BENCH_THREADS=N cargo bench -p frame-scheduler-compare --bench counters` (default 2 threads).

mod common;

use common::{Systems, Workload};
use criterion::{Criterion, criterion_group, criterion_main};

fn counters(c: &mut Criterion) {
    let mut systems = Systems::new(common::threads_from_env());
    common::bench_workload(c, &mut systems, Workload::FanOut);
    common::bench_workload(c, &mut systems, Workload::Stages);
}

criterion_group! {
    name = benches;
    config = common::criterion_config();
    targets = counters
}
criterion_main!(benches);
