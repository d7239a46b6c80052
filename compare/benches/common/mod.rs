//! The workloads and the systems they run on, shared by every bench and by `examples/versus.rs`,
//! so that the criterion numbers and the quick side-by-side table measure the same code.
//!
//! # Same workload, same threads
//! Every system gets `N` threads that run jobs (`BENCH_THREADS`, default 2):
//!
//! | system | threads started | who runs jobs |
//! |---|---|---|
//! | frame-scheduler | `workers(N)`: N-1 background | the caller (inside `run_frame`) and the N-1 |
//! | rayon | `num_threads(N)` | the N pool threads; the caller blocks in `scope` |
//! | tokio | `worker_threads(N)` | the N workers; the caller only polls the `block_on` future |
//! | async-executor | N-1 running `Executor::run` | the N-1 and the caller (`block_on(ex.run(..))`) |
//! | bevy_tasks | `num_threads(N-1)` | the N-1 and the caller, which ticks the pool inside `scope` |
//!
//! async-executor and bevy_tasks get N-1 threads of their own because their caller runs jobs
//! too, exactly as frame-scheduler's does; rayon and tokio get N because theirs does not.
//!
//! # Borrowing
//! frame-scheduler, rayon and bevy_tasks have scopes, so their jobs borrow the output slice.
//! tokio and async-executor spawn only `'static` futures: their jobs own their inputs and return
//! their result through the join handle, and the root writes it into the slot as it awaits each
//! handle. That is how one writes it with those crates, and it costs them no `Arc` and no lock.
//!
//! # What a frame is
//! One unit of measurement is one "frame" of the workload: one `run_frame`, one rayon
//! `scope`/`install`, one tokio `block_on`, one `block_on(ex.run(..))`, one bevy `scope` (or the
//! loop of scopes a staged workload needs). Pools and runtimes are built once, outside it.
//!
//! # Data-parallel loops
//! The loop workloads ([`Workload::LOOPS`]) run each system's own parallel loop over a slice
//! kept from frame to frame ([`Loops`]): frame-scheduler's `for_each_chunk` and `map` with the
//! `min_len` its module docs advise for the work per item, rayon's `par_chunks_mut` and
//! `collect_into_vec`, bevy_tasks' `par_chunk_map_mut`, and a plain loop on one thread as the
//! floor. Where a peer takes a fixed chunk size rather than a floor, it gets
//! [`Workload::chunk_len`], a size one would pick by hand. tokio and async-executor have no
//! loop over a borrowed slice (their tasks are `'static`), so they sit these out; the
//! `spawn_batch` workload compares batch spawning with async-executor's `spawn_many` and with
//! rayon's scope spawns.
#![allow(dead_code)]

use std::future::Future;
use std::hint::black_box;
use std::ops::RangeInclusive;
use std::time::{Duration, Instant};

use async_executor::Executor;
use bevy_tasks::{TaskPool, TaskPoolBuilder};
use bumpalo::Bump;
use frame_scheduler::{Frame, Scheduler};
use futures::channel::{mpsc, oneshot};

pub mod peers;

use peers::{
    on_async_executor, on_bevy, on_rayon, on_tokio, ping, pong, serial_boxed, serial_bump,
    serial_loop, serial_map, serial_throughput,
};

/// Empty jobs per frame in the spawn workload.
pub const SPAWN_JOBS: usize = 10_000;
/// Jobs per frame in the throughput workload, each about 100 ns of arithmetic.
pub const THROUGHPUT_JOBS: usize = 10_000;
/// Items of the "for_each_chunk 100k" loop, each about 100 ns ([`work`]).
pub const LOOP_ITEMS: usize = 100_000;
/// Items of the small loop "for_each_chunk 1k", each about 5 ns ([`light_work`]).
pub const SMALL_LOOP_ITEMS: usize = 1_000;
/// Items of the map workload, each about 5 ns ([`light_work`]).
pub const MAP_ITEMS: usize = 100_000;
/// `min_len` for items of about 100 ns: what frame-scheduler's `parallel` module docs advise
/// (32–64), so that a piece of `min_len` items takes a few microseconds.
pub const MIN_LEN_100NS: usize = 64;
/// `min_len` for items of about 5 ns: what the module docs advise (512–1024).
pub const MIN_LEN_5NS: usize = 1024;
/// Rounds of the dependent multiply-xorshift chain in [`work`]: one job alone takes about
/// 100 ns (about 1.5 ns a round on a 2.6 GHz Xeon). Back to back on one core an out-of-order CPU
/// overlaps successive jobs, so the serial floor reads lower than that.
pub const WORK_ROUNDS: u32 = 64;
/// Rounds of the same chain in [`light_work`]: about 5 ns an item.
pub const LIGHT_ROUNDS: u32 = 3;
/// The nested workload: this many jobs, each spawning this many.
pub const NESTED_FANOUT: usize = 64;
/// Jobs in the chain of the latency workload, each spawning the next.
pub const CHAIN_LEN: usize = 1_000;
/// Round trips between the two jobs of the ping-pong workload.
pub const PING_PONG_ROUNDS: usize = 1_000;
/// Counted jobs awaited by one counter in the fan-out workload.
pub const FAN_OUT_JOBS: usize = 1_000;
/// Stages of the staged workload; each waits for the previous one to finish.
pub const STAGES: usize = 16;
/// Jobs per stage of the staged workload.
pub const STAGE_JOBS: usize = 256;
/// The jobs of the "balance 8x50us+8x1ms" workload, in spawn order: `(jobs, work of each)`.
pub const BALANCE_MIXED_JOBS: [(usize, Duration); 2] = [
    (8, Duration::from_micros(50)),
    (8, Duration::from_millis(1)),
];
/// The jobs of the "balance 15x250us+1x4ms" workload, in spawn order: `(jobs, work of each)`.
pub const BALANCE_TAIL_JOBS: [(usize, Duration); 2] = [
    (15, Duration::from_micros(250)),
    (1, Duration::from_millis(4)),
];

/// Threads per system: `BENCH_THREADS`, else 2.
pub fn threads_from_env() -> usize {
    match std::env::var("BENCH_THREADS") {
        Ok(v) => match v.trim().parse::<usize>() {
            Ok(n) if n >= 1 => n,
            _ => panic!("BENCH_THREADS must be a whole number of threads, at least 1; got {v:?}"),
        },
        Err(_) => 2,
    }
}

/// About 100 ns of arithmetic that the compiler can neither skip nor vectorise: a dependent
/// chain of multiply, add and xorshift, seeded by the job's index.
#[inline(never)]
pub fn work(i: usize) -> u64 {
    let mut x = black_box(i as u64) ^ 0x9E37_79B9_7F4A_7C15;
    for _ in 0..WORK_ROUNDS {
        x = x
            .wrapping_mul(0x5851_F42D_4C95_7F2D)
            .wrapping_add(0x1405_7B7E_F767_814F);
        x ^= x >> 29;
    }
    x
}

/// About 5 ns of the same arithmetic as [`work`] ([`LIGHT_ROUNDS`] rounds): the work per item
/// of the light loops, such as adding a velocity to a position.
#[inline(never)]
pub fn light_work(i: usize) -> u64 {
    let mut x = black_box(i as u64) ^ 0x9E37_79B9_7F4A_7C15;
    for _ in 0..LIGHT_ROUNDS {
        x = x
            .wrapping_mul(0x5851_F42D_4C95_7F2D)
            .wrapping_add(0x1405_7B7E_F767_814F);
        x ^= x >> 29;
    }
    x
}

/// `dur` of busy CPU work: rounds of [`work`] until the clock says `dur` has passed since the
/// call. Returns the nanoseconds it took, never less than `dur`.
///
/// Spinning on the clock rather than for a calibrated number of rounds makes a job cost the
/// same wall time on every system, even on a loaded machine where a round count would stretch:
/// what the balance workloads compare is how the scheduler lays the jobs out, not the jobs.
#[inline(never)]
pub fn spin(dur: Duration, seed: usize) -> u64 {
    let start = Instant::now();
    let mut round = seed;
    loop {
        black_box(work(round));
        round = round.wrapping_add(1);
        let spent = start.elapsed();
        if spent >= dur {
            return spent.as_nanos() as u64;
        }
    }
}

/// The workloads, one per question the benches ask.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Workload {
    /// 10 000 empty jobs spawned from the root.
    Spawn,
    /// 10 000 jobs of ~100 ns, each writing its own slot of a borrowed slice.
    Throughput,
    /// 64 jobs each spawning 64.
    Nested,
    /// A chain of 1 000 jobs, each spawning the next.
    Chain,
    /// Two jobs waking each other through channels, 1 000 round trips.
    PingPong,
    /// 1 000 counted jobs awaited by one counter (or by joining every handle).
    FanOut,
    /// 16 stages of 256 jobs, each stage started once the previous one is done.
    Stages,
    /// A frame with no job.
    EmptyFrame,
    /// A frame with one empty job.
    OneJobFrame,
    /// Coarse jobs of uneven length: 8 jobs of 50 µs of CPU work, then 8 of 1 ms, awaited by
    /// the root. Measured per frame, against [`Workload::balance_ideal`].
    BalanceMixed,
    /// One long job spawned last: 15 jobs of 250 µs, then 1 of 4 ms, awaited by the root.
    /// Measured per frame, against [`Workload::balance_ideal`].
    BalanceTail,
    /// A parallel loop over 100 000 items of ~100 ns ([`work`]), each written in place.
    Loop,
    /// A parallel loop over 1 000 items of ~5 ns ([`light_work`]): about 5 µs of work, where
    /// what it costs to start a loop and wake a thread shows.
    SmallLoop,
    /// 100 000 items of ~5 ns mapped into a new slice, in order.
    Map,
    /// 10 000 empty jobs spawned at once: frame-scheduler's `spawn_batch`, async-executor's
    /// `spawn_many`, rayon's scope spawns.
    SpawnBatch,
}

impl Workload {
    /// Every workload, in the order of the benches.
    pub const ALL: [Workload; 15] = [
        Workload::Spawn,
        Workload::Throughput,
        Workload::Nested,
        Workload::Chain,
        Workload::PingPong,
        Workload::FanOut,
        Workload::Stages,
        Workload::EmptyFrame,
        Workload::OneJobFrame,
        Workload::BalanceMixed,
        Workload::BalanceTail,
        Workload::Loop,
        Workload::SmallLoop,
        Workload::Map,
        Workload::SpawnBatch,
    ];

    /// The data-parallel loops: measured per item, on the slices of [`Loops`].
    pub const LOOPS: [Workload; 3] = [Workload::Loop, Workload::SmallLoop, Workload::Map];

    /// The load-balancing workloads: coarse jobs whose frame time is judged against the ideal
    /// on the thread count rather than per job.
    pub const BALANCE: [Workload; 2] = [Workload::BalanceMixed, Workload::BalanceTail];

    /// A short name, used as the criterion group and the table row.
    pub fn name(self) -> &'static str {
        match self {
            Workload::Spawn => "spawn 10k empty",
            Workload::Throughput => "throughput 10k x ~100ns",
            Workload::Nested => "nested 64x64",
            Workload::Chain => "chain 1k",
            Workload::PingPong => "ping-pong 1k",
            Workload::FanOut => "counter fan-out 1k",
            Workload::Stages => "16 stages x 256",
            Workload::EmptyFrame => "empty frame",
            Workload::OneJobFrame => "frame + 1 job",
            Workload::BalanceMixed => "balance 8x50us+8x1ms",
            Workload::BalanceTail => "balance 15x250us+1x4ms",
            Workload::Loop => "for_each_chunk 100k x ~100ns",
            Workload::SmallLoop => "for_each_chunk 1k x ~5ns",
            Workload::Map => "map 100k x ~5ns",
            Workload::SpawnBatch => "spawn_batch 10k empty",
        }
    }

    /// The criterion group name (no spaces).
    pub fn group(self) -> &'static str {
        match self {
            Workload::Spawn => "spawn_10k_empty",
            Workload::Throughput => "throughput_10k_100ns",
            Workload::Nested => "nested_64x64",
            Workload::Chain => "latency_chain_1k",
            Workload::PingPong => "latency_ping_pong_1k",
            Workload::FanOut => "counters_fan_out_1k",
            Workload::Stages => "counters_16_stages_x256",
            Workload::EmptyFrame => "frame_overhead_empty",
            Workload::OneJobFrame => "frame_overhead_one_job",
            Workload::BalanceMixed => "balance_8x50us_8x1ms",
            Workload::BalanceTail => "balance_15x250us_1x4ms",
            Workload::Loop => "for_each_chunk_100k_100ns",
            Workload::SmallLoop => "for_each_chunk_1k_5ns",
            Workload::Map => "map_100k_5ns",
            Workload::SpawnBatch => "spawn_batch_10k_empty",
        }
    }

    /// What one unit is: results are reported per unit.
    pub fn unit(self) -> &'static str {
        match self {
            Workload::PingPong => "round trip",
            Workload::EmptyFrame
            | Workload::OneJobFrame
            | Workload::BalanceMixed
            | Workload::BalanceTail => "frame",
            Workload::Loop | Workload::SmallLoop | Workload::Map => "item",
            _ => "job",
        }
    }

    /// Units per frame.
    pub fn units(self) -> u64 {
        (match self {
            Workload::Spawn | Workload::SpawnBatch => SPAWN_JOBS,
            Workload::Throughput => THROUGHPUT_JOBS,
            Workload::Nested => NESTED_FANOUT + NESTED_FANOUT * NESTED_FANOUT,
            Workload::Chain => CHAIN_LEN,
            Workload::PingPong => PING_PONG_ROUNDS,
            Workload::FanOut => FAN_OUT_JOBS,
            Workload::Stages => STAGES * STAGE_JOBS,
            Workload::EmptyFrame
            | Workload::OneJobFrame
            | Workload::BalanceMixed
            | Workload::BalanceTail => 1,
            Workload::Loop | Workload::SmallLoop | Workload::Map => self.loop_len(),
        }) as u64
    }

    /// The jobs frame-scheduler may report in `FrameStats::jobs` for one frame: one number,
    /// except for a loop, whose pieces the splitter decides: at least one, and none shorter
    /// than `min_len` items.
    pub fn frame_jobs(self) -> RangeInclusive<u64> {
        let exact = match self {
            Workload::PingPong => 2,
            Workload::EmptyFrame => 0,
            Workload::OneJobFrame => 1,
            Workload::BalanceMixed | Workload::BalanceTail => {
                self.balance_durations().count() as u64
            }
            Workload::Loop | Workload::SmallLoop | Workload::Map => {
                return 1..=(self.loop_len() / self.min_len()).max(1) as u64;
            }
            w => w.units(),
        };
        exact..=exact
    }

    /// Whether this is one of [`Workload::LOOPS`].
    pub fn is_loop(self) -> bool {
        Workload::LOOPS.contains(&self)
    }

    /// A loop's items; 0 for the other workloads.
    pub fn loop_len(self) -> usize {
        match self {
            Workload::Loop => LOOP_ITEMS,
            Workload::SmallLoop => SMALL_LOOP_ITEMS,
            Workload::Map => MAP_ITEMS,
            _ => 0,
        }
    }

    /// A loop's `min_len`, the floor below which frame-scheduler and rayon do not split: what
    /// the module docs advise for its work per item. 1 for the other workloads.
    pub fn min_len(self) -> usize {
        match self {
            Workload::Loop => MIN_LEN_100NS,
            Workload::SmallLoop | Workload::Map => MIN_LEN_5NS,
            _ => 1,
        }
    }

    /// The fixed chunk size of a loop on `threads` threads for the peers that take one (rayon's
    /// `par_chunks_mut`, bevy_tasks' `par_chunk_map_mut`): four chunks a thread, none shorter
    /// than `min_len` (one chunk if the loop is shorter), as one would pick by hand.
    pub fn chunk_len(self, threads: usize) -> usize {
        self.min_len()
            .max(self.loop_len() / (4 * threads.max(1)))
            .min(self.loop_len())
            .max(1)
    }

    /// The value a loop writes for item `i`: [`work`] or [`light_work`] of `i`.
    pub fn loop_value(self, i: usize) -> u64 {
        match self {
            Workload::Loop => work(i),
            _ => light_work(i),
        }
    }

    /// Whether this is one of [`Workload::BALANCE`].
    pub fn is_balance(self) -> bool {
        Workload::BALANCE.contains(&self)
    }

    /// A balance workload's jobs, in spawn order, as `(jobs, work of each)`; empty for the others.
    pub fn balance_jobs(self) -> &'static [(usize, Duration)] {
        match self {
            Workload::BalanceMixed => &BALANCE_MIXED_JOBS,
            Workload::BalanceTail => &BALANCE_TAIL_JOBS,
            _ => &[],
        }
    }

    /// The work of each of a balance workload's jobs, one item per job in spawn order.
    pub fn balance_durations(self) -> impl Iterator<Item = Duration> + 'static {
        self.balance_jobs()
            .iter()
            .flat_map(|&(jobs, dur)| std::iter::repeat_n(dur, jobs))
    }

    /// The shortest a balance frame can take on `threads` threads: its longest job, or its
    /// total work shared evenly, whichever is longer. Zero for the other workloads.
    pub fn balance_ideal(self, threads: usize) -> Duration {
        let longest = self.balance_durations().max().unwrap_or_default();
        let total: Duration = self.balance_durations().sum();
        longest.max(total / threads.max(1) as u32)
    }
}

/// A system under test, or a serial floor.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum System {
    /// This crate.
    FrameScheduler,
    /// `rayon::ThreadPool::scope`.
    Rayon,
    /// tokio's multi-thread runtime, `block_on` + `spawn` + join handles.
    Tokio,
    /// `async_executor::Executor` run on N threads.
    AsyncExecutor,
    /// `bevy_tasks::TaskPool::scope`.
    BevyTasks,
    /// One thread, no scheduler: `Vec<Box<dyn FnOnce()>>` for spawn, a plain loop for throughput
    /// and the loops (`Vec::extend` into a kept `Vec` for map).
    Serial,
    /// One thread, closures in a bump arena (`&mut dyn FnMut()` in the arena too): spawn only.
    SerialBump,
}

impl System {
    /// Every system, peers in the order of the table.
    pub const ALL: [System; 7] = [
        System::FrameScheduler,
        System::Rayon,
        System::Tokio,
        System::AsyncExecutor,
        System::BevyTasks,
        System::Serial,
        System::SerialBump,
    ];

    /// The name in tables and criterion ids.
    pub fn name(self) -> &'static str {
        match self {
            System::FrameScheduler => "frame-scheduler",
            System::Rayon => "rayon",
            System::Tokio => "tokio",
            System::AsyncExecutor => "async-executor",
            System::BevyTasks => "bevy_tasks",
            System::Serial => "serial",
            System::SerialBump => "serial-bump",
        }
    }
}

/// async-executor on `threads` threads: `threads - 1` of its own plus the caller of
/// [`AsyncExecutor::block_on`].
pub struct AsyncExecutor {
    /// Leaked so that tasks can spawn tasks without an `Arc` clone each: one executor per
    /// process (benches and the example build one), never freed.
    pub ex: &'static Executor<'static>,
    stop: Vec<oneshot::Sender<()>>,
    threads: Vec<std::thread::JoinHandle<()>>,
}

impl AsyncExecutor {
    /// Starts `threads - 1` threads running the executor.
    pub fn new(threads: usize) -> AsyncExecutor {
        let ex: &'static Executor<'static> = Box::leak(Box::new(Executor::new()));
        let (stop, threads) = (1..threads)
            .map(|i| {
                let (tx, rx) = oneshot::channel::<()>();
                let handle = std::thread::Builder::new()
                    .name(format!("async-executor-{i}"))
                    .spawn(move || {
                        let _ = futures::executor::block_on(ex.run(rx));
                    })
                    .expect("start an async-executor thread");
                (tx, handle)
            })
            .unzip();
        AsyncExecutor { ex, stop, threads }
    }

    /// Runs `future` on this thread, which runs the executor's tasks meanwhile.
    pub fn block_on<T>(&self, future: impl Future<Output = T>) -> T {
        futures::executor::block_on(self.ex.run(future))
    }
}

impl Drop for AsyncExecutor {
    fn drop(&mut self) {
        for tx in self.stop.drain(..) {
            let _ = tx.send(());
        }
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
    }
}

/// The slices of the loop workloads, kept from frame to frame.
pub struct Loops {
    /// What `for_each_chunk` and its peers write in place: [`LOOP_ITEMS`] slots, of which the
    /// small loop uses the first [`SMALL_LOOP_ITEMS`].
    pub items: Vec<u64>,
    /// The map workload's input, `0..MAP_ITEMS`.
    pub input: Vec<u64>,
    /// Where rayon and the serial floor collect the map's output (frame-scheduler maps into its
    /// frame arena), kept so that its memory is reused.
    pub mapped: Vec<u64>,
}

impl Loops {
    fn new() -> Loops {
        Loops {
            items: vec![0; LOOP_ITEMS],
            input: (0..MAP_ITEMS as u64).collect(),
            mapped: Vec::with_capacity(MAP_ITEMS),
        }
    }

    /// The slice `workload` loops over in place.
    pub fn items(&mut self, workload: Workload) -> &mut [u64] {
        &mut self.items[..workload.loop_len()]
    }
}

/// Every system, built once, plus the scratch the workloads write into.
pub struct Systems {
    /// Threads per system.
    pub threads: usize,
    /// frame-scheduler with `workers(threads)`.
    pub frame: Scheduler,
    /// rayon with `num_threads(threads)`.
    pub rayon: rayon::ThreadPool,
    /// tokio with `worker_threads(threads)`.
    pub tokio: tokio::runtime::Runtime,
    /// async-executor on `threads` threads, the caller included.
    pub executor: AsyncExecutor,
    /// bevy_tasks with `threads - 1` threads, the caller included.
    pub bevy: TaskPool,
    /// The throughput and balance workloads' output, one slot per job.
    pub out: Vec<u64>,
    /// The arena of the bump floor.
    pub bump: Bump,
    /// The loop workloads' slices.
    pub loops: Loops,
}

impl Systems {
    /// Builds every system with `threads` threads that run jobs.
    pub fn new(threads: usize) -> Systems {
        assert!(threads >= 1, "need at least one thread");
        Systems {
            threads,
            frame: {
                let builder = Scheduler::builder().workers(threads);
                // `FS_PIN=0`: frame-scheduler with its threads unpinned (the default pins the
                // workers where it is safe), to see what pinning changes.
                match std::env::var("FS_PIN").as_deref() {
                    Ok("0") => builder.pin_threads(false),
                    _ => builder,
                }
                .build()
                .expect("build frame-scheduler")
            },
            rayon: rayon::ThreadPoolBuilder::new()
                .num_threads(threads)
                .thread_name(|i| format!("rayon-{i}"))
                .build()
                .expect("build rayon pool"),
            tokio: tokio::runtime::Builder::new_multi_thread()
                .worker_threads(threads)
                .build()
                .expect("build tokio runtime"),
            executor: AsyncExecutor::new(threads),
            bevy: TaskPoolBuilder::new()
                .num_threads(threads - 1)
                .thread_name("bevy_tasks".to_string())
                .build(),
            out: vec![0; THROUGHPUT_JOBS],
            bump: Bump::with_capacity(SPAWN_JOBS * 64),
            loops: Loops::new(),
        }
    }

    /// Whether `system` has a version of `workload`.
    pub fn supports(&self, workload: Workload, system: System) -> bool {
        match system {
            System::Serial => {
                matches!(workload, Workload::Spawn | Workload::Throughput) || workload.is_loop()
            }
            System::SerialBump => workload == Workload::Spawn,
            // Rayon jobs cannot await: each ping-pong job blocks its thread, so it needs two.
            System::Rayon if workload == Workload::PingPong => self.threads >= 2,
            // No loop over a borrowed slice: their tasks are `'static`.
            System::Tokio | System::AsyncExecutor if workload.is_loop() => false,
            // No batch spawn: 10 000 spawns, as in the spawn workload.
            System::Tokio | System::BevyTasks if workload == Workload::SpawnBatch => false,
            // bevy_tasks' `par_chunk_map` gives a `Vec` per chunk, not one slice in order.
            System::BevyTasks if workload == Workload::Map => false,
            _ => true,
        }
    }

    /// Runs one frame of `workload` on `system`. Panics if it is not supported.
    pub fn run(&mut self, workload: Workload, system: System) {
        let (out, loops) = (&mut self.out, &mut self.loops);
        match system {
            System::FrameScheduler => frame_scheduler(&mut self.frame, workload, out, loops),
            System::Rayon => on_rayon(&self.rayon, workload, out, loops),
            System::Tokio => on_tokio(&self.tokio, workload, out),
            System::AsyncExecutor => on_async_executor(&self.executor, workload, out),
            System::BevyTasks => on_bevy(&self.bevy, workload, out, loops),
            System::Serial => match workload {
                Workload::Spawn => serial_boxed(),
                Workload::Throughput => serial_throughput(out),
                Workload::Loop | Workload::SmallLoop => serial_loop(workload, loops),
                Workload::Map => serial_map(loops),
                w => panic!("no serial version of {w:?}"),
            },
            System::SerialBump => match workload {
                Workload::Spawn => serial_bump(&mut self.bump),
                w => panic!("no bump version of {w:?}"),
            },
        }
    }

    /// Runs one frame and checks what can be checked: the throughput output, the loops'
    /// outputs, and the jobs frame-scheduler counted. Panics with what went wrong.
    pub fn verify(&mut self, workload: Workload, system: System) {
        self.out.fill(0);
        self.loops.items.fill(0);
        self.loops.mapped.clear();
        self.run(workload, system);
        if workload == Workload::Map && system == System::FrameScheduler {
            // The measured frame's output dies with its frame: map once more, copying it out.
            frame_scheduler_map_into(&mut self.frame, &self.loops.input, &mut self.loops.mapped);
        }
        if workload.is_loop() {
            let len = workload.loop_len();
            let outputs = match workload {
                Workload::Map => &self.loops.mapped[..],
                _ => &self.loops.items[..],
            };
            if workload == Workload::Map {
                assert_eq!(
                    outputs.len(),
                    len,
                    "{}: map gave {} outputs for {len} items",
                    system.name(),
                    outputs.len()
                );
            }
            for (i, &v) in outputs.iter().enumerate() {
                // The small loop leaves the slots past its items at 0.
                let want = if i < len { workload.loop_value(i) } else { 0 };
                assert_eq!(
                    v,
                    want,
                    "{}: output {i} of {} is wrong",
                    system.name(),
                    workload.name()
                );
            }
        }
        if workload.is_balance() {
            for (i, (&v, dur)) in self
                .out
                .iter()
                .zip(workload.balance_durations())
                .enumerate()
            {
                assert!(
                    v >= dur.as_nanos() as u64,
                    "{}: balance job {i} reported {v} ns of work, not the {dur:?} it was given",
                    system.name()
                );
            }
        }
        if workload == Workload::Throughput {
            for (i, &v) in self.out.iter().enumerate() {
                assert_eq!(
                    v,
                    work(i),
                    "{}: slot {i} of the throughput output is wrong",
                    system.name()
                );
            }
        }
        if system == System::FrameScheduler {
            let stats = self.frame.last_frame_stats();
            let jobs = workload.frame_jobs();
            assert!(
                jobs.contains(&stats.jobs),
                "frame-scheduler counted {} jobs for {workload:?}, not {jobs:?}",
                stats.jobs
            );
        }
    }
}

// ---------------------------------------------------------------------------------------------
// frame-scheduler

/// One frame of `workload` on frame-scheduler. Jobs whose handle is dropped are detached: the
/// frame still waits for them, as a scope does.
pub fn frame_scheduler(s: &mut Scheduler, workload: Workload, out: &mut [u64], loops: &mut Loops) {
    match workload {
        Workload::Spawn => s.run_frame(async |frame| {
            for i in 0..SPAWN_JOBS {
                frame.spawn(async move {
                    black_box(i);
                });
            }
        }),
        Workload::Throughput => frame_scheduler_throughput(s, out),
        Workload::Nested => s.run_frame(async |frame| {
            for i in 0..NESTED_FANOUT {
                frame.spawn(async move {
                    for j in 0..NESTED_FANOUT {
                        frame.spawn(async move {
                            black_box((i, j));
                        });
                    }
                });
            }
        }),
        Workload::Chain => s.run_frame(async |frame| fs_link(frame, CHAIN_LEN)),
        Workload::PingPong => s.run_frame(async |frame| {
            let (ping_tx, ping_rx) = mpsc::unbounded();
            let (pong_tx, pong_rx) = mpsc::unbounded();
            frame.spawn(ping(ping_tx, pong_rx));
            frame.spawn(pong(pong_tx, ping_rx));
        }),
        Workload::FanOut => s.run_frame(async |frame| {
            let done = frame.counter();
            for i in 0..FAN_OUT_JOBS {
                frame.spawn_counted(done, async move {
                    black_box(i);
                });
            }
            done.await;
        }),
        Workload::Stages => s.run_frame(async |frame| {
            for stage in 0..STAGES {
                let done = frame.counter();
                for i in 0..STAGE_JOBS {
                    frame.spawn_counted(done, async move {
                        black_box((stage, i));
                    });
                }
                done.await;
            }
        }),
        Workload::EmptyFrame => s.run_frame(async |_| {}),
        Workload::OneJobFrame => s.run_frame(async |frame| {
            frame.spawn(async {});
        }),
        Workload::BalanceMixed | Workload::BalanceTail => s.run_frame(async |frame| {
            let done = frame.counter();
            let jobs = out.iter_mut().zip(workload.balance_durations());
            for (i, (slot, dur)) in jobs.enumerate() {
                frame.spawn_counted(done, async move { *slot = spin(dur, i) });
            }
            done.await;
        }),
        Workload::Loop => frame_scheduler_loop(s, loops.items(workload), MIN_LEN_100NS, work),
        Workload::SmallLoop => {
            frame_scheduler_loop(s, loops.items(workload), MIN_LEN_5NS, light_work)
        }
        Workload::Map => s.run_frame(async |frame| {
            let out = frame
                .map(&loops.input, MIN_LEN_5NS, |&x| light_work(x as usize))
                .await;
            black_box(out);
        }),
        Workload::SpawnBatch => s.run_frame(async |frame| {
            let done = frame.counter();
            frame.spawn_batch(
                done,
                (0..SPAWN_JOBS).map(|i| async move {
                    black_box(i);
                }),
            );
            done.await;
        }),
    }
}

/// A loop workload on frame-scheduler: `items[i] = value(i)` for every item, by
/// `for_each_chunk` with `min_len`.
fn frame_scheduler_loop(
    s: &mut Scheduler,
    items: &mut [u64],
    min_len: usize,
    value: impl Fn(usize) -> u64 + Send + Sync,
) {
    s.run_frame(async |frame| {
        frame
            .for_each_chunk(items, min_len, |start, xs| {
                for (k, x) in xs.iter_mut().enumerate() {
                    *x = value(start + k);
                }
            })
            .await;
    })
}

/// The map workload on frame-scheduler, its output copied into `mapped`: what
/// [`Systems::verify`] checks, since the measured frame's output is gone with its frame.
fn frame_scheduler_map_into(s: &mut Scheduler, input: &[u64], mapped: &mut Vec<u64>) {
    s.run_frame(async |frame| {
        let out = frame
            .map(input, MIN_LEN_5NS, |&x| light_work(x as usize))
            .await;
        mapped.clear();
        mapped.extend_from_slice(out);
    })
}

/// The throughput workload on frame-scheduler; public so that the bench can run it on a
/// scheduler with another worker count.
pub fn frame_scheduler_throughput(s: &mut Scheduler, out: &mut [u64]) {
    s.run_frame(async |frame| {
        for (i, slot) in out.iter_mut().enumerate() {
            frame.spawn(async move { *slot = work(i) });
        }
    })
}

/// The spawn workload with counted jobs awaited by one counter, instead of detached handles.
pub fn frame_scheduler_spawn_counted(s: &mut Scheduler) {
    s.run_frame(async |frame| {
        let done = frame.counter();
        for i in 0..SPAWN_JOBS {
            frame.spawn_counted(done, async move {
                black_box(i);
            });
        }
        done.await;
    })
}

fn fs_link<'f, 'e>(frame: &'f Frame<'f, 'e>, left: usize) {
    frame.spawn(async move {
        if left > 1 {
            fs_link(frame, left - 1)
        }
    });
}

// ---------------------------------------------------------------------------------------------
// ---------------------------------------------------------------------------------------------
// criterion

/// Modest settings, so that all the benches (`cargo bench -p frame-scheduler-compare`) take a
/// few minutes on two cores.
pub fn criterion_config() -> criterion::Criterion {
    criterion::Criterion::default()
        .sample_size(20)
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(2))
}

/// Benches `workload` on every system that has it, in one group named after the workload and
/// the thread count, per unit (`Throughput::Elements`). Each system is verified once first.
pub fn bench_workload(c: &mut criterion::Criterion, systems: &mut Systems, workload: Workload) {
    let mut group = c.benchmark_group(format!("{}/{}threads", workload.group(), systems.threads));
    group.throughput(criterion::Throughput::Elements(workload.units()));
    for system in System::ALL {
        if !systems.supports(workload, system) {
            continue;
        }
        systems.verify(workload, system);
        group.bench_function(system.name(), |b| b.iter(|| systems.run(workload, system)));
    }
    group.finish();
}
