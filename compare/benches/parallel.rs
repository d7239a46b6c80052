//! Data-parallel loops: frame-scheduler's `for_each_chunk`, `map` and `spawn_batch` against
//! rayon, bevy_tasks and async-executor, with the same thread count, in one run.
//!
//! - `for_each_chunk` on 1 000, 100 000 and 1 000 000 items at about 5 ns, 100 ns and 1 µs of
//!   work per item (1 000 000 × 1 µs is left out: half a second per iteration), and with
//!   unbalanced work (item `i` costs in proportion to `i`, 100 ns on average), against rayon
//!   `par_iter_mut().with_min_len(m).for_each(..)` (adaptive, like ours),
//!   `par_chunks_mut(c).for_each(..)` and bevy_tasks `par_chunk_map_mut(pool, c, ..)`. `m` is
//!   the `min_len` the module docs advise (1024, 64, 4); `c`, a fixed chunk size chosen by hand,
//!   is `max(m, len / (4 × threads))`. frame-scheduler on 1 worker too, for scaling.
//! - `map` against rayon `par_iter().with_min_len(m).map(..).collect_into_vec(..)` (the `Vec`
//!   kept from iteration to iteration, as our arena is).
//! - `spawn_batch` of 10 000 empty jobs against 10 000 `spawn_counted` calls and against
//!   async-executor's `spawn_many` (its tasks awaited through their handles).
//!
//! Work is a chain of xorshift steps, calibrated at start-up to the target time per item.
//! rayon gets N threads; frame-scheduler N workers, the caller included; async-executor and
//! bevy_tasks N-1 threads and the caller, as in the other benches.
//!
//! `BENCH_THREADS=N cargo bench --bench parallel` (default 2 threads).

use std::hint::black_box;
use std::time::{Duration, Instant};

use async_executor::Executor;
use bevy_tasks::ParallelSliceMut as _;
use bevy_tasks::{TaskPool, TaskPoolBuilder};
use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use frame_scheduler::Scheduler;
use futures::channel::oneshot;
use rayon::prelude::*;

fn threads() -> usize {
    std::env::var("BENCH_THREADS")
        .ok()
        .and_then(|v| v.trim().parse().ok())
        .filter(|&n| n >= 1)
        .unwrap_or(2)
}

/// `steps` dependent xorshift steps on `x`.
#[inline]
fn work(x: &mut u64, steps: u32) {
    let mut v = *x | 1;
    for _ in 0..steps {
        v ^= v << 13;
        v ^= v >> 7;
        v ^= v << 17;
    }
    *x = v;
}

/// xorshift steps per nanosecond on this machine.
fn steps_per_ns() -> f64 {
    let mut x = 1u64;
    let steps = 50_000_000;
    let start = Instant::now();
    work(&mut x, steps);
    black_box(x);
    steps as f64 / start.elapsed().as_nanos() as f64
}

/// How the cost of an item is spread.
#[derive(Clone, Copy)]
enum Cost {
    /// Every item takes `steps`.
    Flat(u32),
    /// Item `i` of `len` takes `2 × steps × i / len` (average `steps`).
    Rising(u32),
}

impl Cost {
    #[inline]
    fn run(self, i: usize, len: usize, x: &mut u64) {
        match self {
            Cost::Flat(s) => work(x, s),
            Cost::Rising(s) => work(x, (2 * s as usize * i / len) as u32),
        }
    }
}

struct Executors {
    frame: Scheduler,
    one: Scheduler,
    rayon: rayon::ThreadPool,
    bevy: TaskPool,
    ex: &'static Executor<'static>,
    _stop: Vec<oneshot::Sender<()>>,
    threads: usize,
}

impl Executors {
    fn new(threads: usize) -> Executors {
        let ex: &'static Executor<'static> = Box::leak(Box::new(Executor::new()));
        let stop = (1..threads)
            .map(|_| {
                let (tx, rx) = oneshot::channel::<()>();
                std::thread::spawn(move || futures::executor::block_on(ex.run(rx)));
                tx
            })
            .collect();
        Executors {
            frame: Scheduler::builder().workers(threads).build().unwrap(),
            one: Scheduler::builder().workers(1).build().unwrap(),
            rayon: rayon::ThreadPoolBuilder::new()
                .num_threads(threads)
                .build()
                .unwrap(),
            bevy: TaskPoolBuilder::new()
                .num_threads(threads.saturating_sub(1).max(1))
                .build(),
            ex,
            _stop: stop,
            threads,
        }
    }
}

fn for_each_chunk_case(
    c: &mut Criterion,
    sys: &mut Executors,
    name: &str,
    len: usize,
    cost: Cost,
    min_len: usize,
) {
    let chunk = min_len.max(len / (4 * sys.threads)).max(1);
    let mut data: Vec<u64> = (0..len as u64).collect();
    let mut group = c.benchmark_group(format!("parallel/for_each_chunk/{name}"));
    group.throughput(Throughput::Elements(len as u64));
    let threads = sys.threads;
    group.bench_function(format!("frame-scheduler/{threads}-workers"), |b| {
        b.iter(|| {
            sys.frame.run_frame(async |frame| {
                frame
                    .for_each_chunk(&mut data, min_len, |start, xs| {
                        for (k, x) in xs.iter_mut().enumerate() {
                            cost.run(start + k, len, x);
                        }
                    })
                    .await;
            })
        })
    });
    group.bench_function("frame-scheduler/1-worker", |b| {
        b.iter(|| {
            sys.one.run_frame(async |frame| {
                frame
                    .for_each_chunk(&mut data, min_len, |start, xs| {
                        for (k, x) in xs.iter_mut().enumerate() {
                            cost.run(start + k, len, x);
                        }
                    })
                    .await;
            })
        })
    });
    group.bench_function("rayon/par_iter_mut", |b| {
        b.iter(|| {
            sys.rayon.install(|| {
                data.par_iter_mut()
                    .enumerate()
                    .with_min_len(min_len)
                    .for_each(|(i, x)| cost.run(i, len, x))
            })
        })
    });
    group.bench_function("rayon/par_chunks_mut", |b| {
        b.iter(|| {
            sys.rayon.install(|| {
                data.par_chunks_mut(chunk).enumerate().for_each(|(ci, xs)| {
                    for (k, x) in xs.iter_mut().enumerate() {
                        cost.run(ci * chunk + k, len, x);
                    }
                })
            })
        })
    });
    group.bench_function("bevy_tasks/par_chunk_map_mut", |b| {
        b.iter(|| {
            data.par_chunk_map_mut(&sys.bevy, chunk, |ci, xs| {
                for (k, x) in xs.iter_mut().enumerate() {
                    cost.run(ci * chunk + k, len, x);
                }
            })
        })
    });
    group.finish();
    black_box(&data);
}

fn map_case(c: &mut Criterion, sys: &mut Executors, len: usize, steps: u32) {
    let min_len = 1024;
    let items: Vec<u64> = (0..len as u64).collect();
    let mut out: Vec<u64> = Vec::new();
    let mut group = c.benchmark_group("parallel/map/5ns");
    group.throughput(Throughput::Elements(len as u64));
    let f = |x: &u64| {
        let mut y = *x;
        work(&mut y, steps);
        y
    };
    group.bench_function(
        BenchmarkId::new(format!("frame-scheduler/{}-workers", sys.threads), len),
        |b| {
            b.iter(|| {
                sys.frame.run_frame(async |frame| {
                    let out = frame.map(&items, min_len, f).await;
                    black_box(out.len())
                })
            })
        },
    );
    group.bench_function(BenchmarkId::new("rayon/collect_into_vec", len), |b| {
        b.iter(|| {
            sys.rayon.install(|| {
                items
                    .par_iter()
                    .with_min_len(min_len)
                    .map(f)
                    .collect_into_vec(&mut out)
            });
            black_box(out.len())
        })
    });
    group.finish();
}

fn spawn_batch_case(c: &mut Criterion, sys: &mut Executors) {
    let n = 10_000;
    let mut group = c.benchmark_group("parallel/spawn_10k_empty");
    group.throughput(Throughput::Elements(n as u64));
    let threads = sys.threads;
    group.bench_function(format!("frame-scheduler/spawn_batch/{threads}"), |b| {
        b.iter(|| {
            sys.frame.run_frame(async |frame| {
                let c = frame.counter();
                frame.spawn_batch(c, (0..n).map(|_| async {}));
                c.await;
            })
        })
    });
    group.bench_function(format!("frame-scheduler/spawn_counted/{threads}"), |b| {
        b.iter(|| {
            sys.frame.run_frame(async |frame| {
                let c = frame.counter();
                for _ in 0..n {
                    frame.spawn_counted(c, async {});
                }
                c.await;
            })
        })
    });
    let ex = sys.ex;
    let mut tasks = Vec::with_capacity(n);
    group.bench_function(format!("async-executor/spawn_many/{threads}"), |b| {
        b.iter(|| {
            futures::executor::block_on(ex.run(async {
                ex.spawn_many((0..n).map(|_| async {}), &mut tasks);
                for t in tasks.drain(..) {
                    t.await;
                }
            }))
        })
    });
    group.finish();
}

fn parallel(c: &mut Criterion) {
    let mut sys = Executors::new(threads());
    let per_ns = steps_per_ns();
    let steps = |ns: f64| ((ns * per_ns).round() as u32).max(1);
    println!(
        "parallel: {} threads; {per_ns:.2} xorshift steps per ns: 5 ns = {}, 100 ns = {}, \
         1 µs = {} steps",
        sys.threads,
        steps(5.0),
        steps(100.0),
        steps(1000.0)
    );
    let cases: [(&str, usize, Cost, usize); 10] = [
        ("1e3x5ns", 1_000, Cost::Flat(steps(5.0)), 1024),
        ("1e3x100ns", 1_000, Cost::Flat(steps(100.0)), 64),
        ("1e3x1us", 1_000, Cost::Flat(steps(1000.0)), 4),
        ("1e5x5ns", 100_000, Cost::Flat(steps(5.0)), 1024),
        ("1e5x100ns", 100_000, Cost::Flat(steps(100.0)), 64),
        ("1e5x1us", 100_000, Cost::Flat(steps(1000.0)), 4),
        ("1e6x5ns", 1_000_000, Cost::Flat(steps(5.0)), 1024),
        ("1e6x100ns", 1_000_000, Cost::Flat(steps(100.0)), 64),
        ("1e3xrising100ns", 1_000, Cost::Rising(steps(100.0)), 64),
        ("1e5xrising100ns", 100_000, Cost::Rising(steps(100.0)), 64),
    ];
    for (name, len, cost, min_len) in cases {
        for_each_chunk_case(c, &mut sys, name, len, cost, min_len);
    }
    for len in [1_000, 100_000, 1_000_000] {
        map_case(c, &mut sys, len, steps(5.0));
    }
    spawn_batch_case(c, &mut sys);
}

criterion_group! {
    name = benches;
    config = Criterion::default()
        .sample_size(10)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(2));
    targets = parallel
}
criterion_main!(benches);
