//! What do jobs that spawn jobs cost? 64 jobs each spawning 64 (4 160 jobs per frame), per job,
//! on every system with the same thread count. Scoped systems (frame-scheduler, rayon,
//! bevy_tasks) let the frame wait for the children; tokio and async-executor parents join
//! their children's handles and the root joins the parents'.
//!
//! `BENCH_THREADS=N cargo bench -p frame-scheduler-compare --bench nested` (default 2 threads).

mod common;

use common::{Systems, Workload};
use criterion::{Criterion, criterion_group, criterion_main};

fn nested(c: &mut Criterion) {
    let mut systems = Systems::new(common::threads_from_env());
    common::bench_workload(c, &mut systems, Workload::Nested);
}

criterion_group! {
    name = benches;
    config = common::criterion_config();
    targets = nested
}
criterion_main!(benches);
