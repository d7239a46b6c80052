//! What does a frame cost when it does nothing? An empty frame and a frame with one empty job,
//! per frame, against a rayon scope with 0 or 1 spawn, a tokio `block_on` with 0 or 1 spawn, an
//! async-executor `block_on(ex.run(..))` with 0 or 1 spawn, and a bevy scope with 0 or 1 spawn,
//! with the same thread count.
//!
//! `BENCH_THREADS=N cargo bench -p frame-scheduler-compare --bench frame_overhead`
//! (default 2 threads).

mod common;

use common::{Systems, Workload};
use criterion::{Criterion, criterion_group, criterion_main};

fn frame_overhead(c: &mut Criterion) {
    let mut systems = Systems::new(common::threads_from_env());
    common::bench_workload(c, &mut systems, Workload::EmptyFrame);
    common::bench_workload(c, &mut systems, Workload::OneJobFrame);
}

criterion_group! {
    name = benches;
    config = common::criterion_config();
    targets = frame_overhead
}
criterion_main!(benches);
