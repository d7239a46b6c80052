//! How well are coarse jobs of uneven length spread over the threads? One frame spawns jobs of
//! real CPU work (each spins on the clock for its time, so it costs the same on every system)
//! and waits for all of them, on every system with the same thread count:
//! - `balance 8x50us+8x1ms`: 8 jobs of 50 µs, then 8 of 1 ms;
//! - `balance 15x250us+1x4ms`: 15 jobs of 250 µs, then 1 of 4 ms.
//!
//! Criterion reports the time per frame. The ideal on T threads is the longer of the longest
//! job and the total work over T: 4.2 ms and 4 ms on two threads (`examples/versus.rs` prints
//! the ratio).
//!
//! `BENCH_THREADS=N cargo bench -p frame-scheduler-compare --bench balance` (default 2 threads).

mod common;

use common::{Systems, Workload};
use criterion::{Criterion, criterion_group, criterion_main};

fn balance(c: &mut Criterion) {
    let mut systems = Systems::new(common::threads_from_env());
    for workload in Workload::BALANCE {
        common::bench_workload(c, &mut systems, workload);
    }
}

criterion_group! {
    name = benches;
    config = common::criterion_config();
    targets = balance
}
criterion_main!(benches);
