//! frame-scheduler against rayon, tokio, async-executor and bevy_tasks, side by side, without
//! criterion: the workloads of the benches (`benches/common/mod.rs`, shared), each on every
//! system with the same thread count, printed as markdown tables of median and p90 nanoseconds
//! per job (per item for the data-parallel loops), the ratio of each peer to frame-scheduler,
//! and heap allocations per job counted by a counting global allocator. A few rows have a
//! frame-scheduler contender printed under the tables: `workers(1)` beside the throughput and
//! `for_each_chunk 100k` rows (scaling), 10 000 `spawn_counted` calls beside `spawn_batch`.
//! The load-balancing workloads (coarse jobs of uneven length) get
//! a table of their own: median and p90 frame time, and its ratio to the ideal on the thread
//! count, `max(longest job, total work / threads)`, next to a floor row: plain threads that
//! each spin the ideal, which shows how far the machine's own load moves the figures.
//!
//! ```text
//! cargo run --release -p frame-scheduler-compare --example versus \
//!     [-- --threads N] [--frames N] [--balance-frames N]
//! ```
//! `--threads` defaults to `BENCH_THREADS`, else 2; `--frames` (default 200) is the most
//! samples per cell, each cell also stopping after 1.5 s; `--balance-frames` (default 40) is
//! the same for the balance workloads, whose frames take milliseconds.

#[path = "../benches/common/mod.rs"]
mod common;

use std::alloc::{GlobalAlloc, Layout, System as SystemAlloc};
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use common::{System, Systems, Workload};
use frame_scheduler::Scheduler;

// ---------------------------------------------------------------------------------------------
// Counting allocator

/// Counts allocation calls and bytes while `COUNTING` is set, from every thread.
struct Counting;

static COUNTING: AtomicBool = AtomicBool::new(false);
static ALLOCS: AtomicU64 = AtomicU64::new(0);
static BYTES: AtomicU64 = AtomicU64::new(0);

fn count(bytes: usize) {
    if COUNTING.load(Ordering::Relaxed) {
        ALLOCS.fetch_add(1, Ordering::Relaxed);
        BYTES.fetch_add(bytes as u64, Ordering::Relaxed);
    }
}

// SAFETY: every call is forwarded unchanged to the system allocator; counting touches only
// atomics and never allocates.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        count(layout.size());
        // SAFETY: the caller upholds `GlobalAlloc::alloc`'s contract, which we pass on.
        unsafe { SystemAlloc.alloc(layout) }
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        count(layout.size());
        // SAFETY: as for `alloc`.
        unsafe { SystemAlloc.alloc_zeroed(layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        count(new_size);
        // SAFETY: as for `alloc`; `ptr` came from this allocator, that is, from `System`.
        unsafe { SystemAlloc.realloc(ptr, layout, new_size) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: `ptr` came from this allocator, that is, from `System`.
        unsafe { SystemAlloc.dealloc(ptr, layout) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

// ---------------------------------------------------------------------------------------------
// Measuring

/// Frames run with the allocator counting, after warm-up.
const ALLOC_FRAMES: u64 = 5;
/// A sample is at least this long: faster frames are timed in batches.
const MIN_SAMPLE: Duration = Duration::from_micros(20);
/// Most time spent on one cell's timed samples, over all rounds.
const CELL_BUDGET: Duration = Duration::from_millis(1500);
/// Fewest samples per cell, whatever the budget.
const MIN_SAMPLES: usize = 16;
/// The systems of a workload take turns this many times, so that a machine whose load drifts
/// (a shared VM, a build in the background) weighs on every column alike.
const ROUNDS: usize = 8;

/// Pause before each turn: long enough for idle pool threads to stop spinning and park.
const SETTLE: Duration = Duration::from_millis(10);

/// One system on one workload.
#[derive(Debug, Clone, Copy)]
struct Cell {
    median_ns: f64,
    p90_ns: f64,
    allocs: f64,
    bytes: f64,
}

/// Measures `count` contenders on one workload of `units` units per frame; `run(k)` runs one
/// frame of contender `k` and `name(k)` names it.
///
/// Each contender is warmed up (which also sizes its batch: frames shorter than `MIN_SAMPLE`
/// are timed together), then the contenders take turns for `ROUNDS` rounds, each taking its
/// share of at most `max_samples` samples and of `CELL_BUDGET`, after a `SETTLE` pause and a
/// frame or two untimed. Last, allocations are counted
/// over `ALLOC_FRAMES` frames of each.
fn measure(
    units: u64,
    count: usize,
    max_samples: usize,
    name: &dyn Fn(usize) -> String,
    run: &mut dyn FnMut(usize),
) -> Vec<Cell> {
    let batches: Vec<u32> = (0..count)
        .map(|k| {
            set_current(Some(name(k)));
            let start = Instant::now();
            let mut frames = 0u32;
            while frames < 10
                || (start.elapsed() < Duration::from_millis(100) && frames < 1_000_000)
            {
                run(k);
                frames += 1;
            }
            let per_frame = start.elapsed() / frames;
            (MIN_SAMPLE.as_nanos() / per_frame.as_nanos().max(1)).max(1) as u32
        })
        .collect();

    let mut samples: Vec<Vec<f64>> = vec![Vec::with_capacity(max_samples); count];
    for round in 1..=ROUNDS {
        for k in 0..count {
            set_current(Some(name(k)));
            let want = max_samples * round / ROUNDS;
            let floor = MIN_SAMPLES * round / ROUNDS;
            // Let the last contender's threads finish spinning and park, then warm this one's
            // caches, so that no contender pays for the one before it.
            std::thread::sleep(SETTLE);
            for _ in 0..batches[k].min(2) {
                run(k);
            }
            let start = Instant::now();
            while samples[k].len() < want
                && (samples[k].len() < floor || start.elapsed() < CELL_BUDGET / ROUNDS as u32)
            {
                let t = Instant::now();
                for _ in 0..batches[k] {
                    run(k);
                }
                let ns = t.elapsed().as_nanos() as f64 / f64::from(batches[k]) / units as f64;
                samples[k].push(ns);
            }
        }
    }

    (0..count)
        .map(|k| {
            let s = &mut samples[k];
            s.sort_by(f64::total_cmp);
            let median_ns = s[s.len() / 2];
            let p90_ns = s[(s.len() * 9 / 10).min(s.len() - 1)];
            set_current(Some(name(k)));
            ALLOCS.store(0, Ordering::SeqCst);
            BYTES.store(0, Ordering::SeqCst);
            COUNTING.store(true, Ordering::SeqCst);
            for _ in 0..ALLOC_FRAMES {
                run(k);
            }
            COUNTING.store(false, Ordering::SeqCst);
            let per = (ALLOC_FRAMES * units) as f64;
            Cell {
                median_ns,
                p90_ns,
                allocs: ALLOCS.load(Ordering::SeqCst) as f64 / per,
                bytes: BYTES.load(Ordering::SeqCst) as f64 / per,
            }
        })
        .collect()
}

/// The balance floor: `threads` threads (`threads - 1` scoped ones and the caller) each spin
/// for `ideal`, a perfectly balanced frame with no scheduler.
fn spin_floor(threads: usize, ideal: Duration) {
    std::thread::scope(|s| {
        for i in 1..threads {
            s.spawn(move || common::spin(ideal, i));
        }
        common::spin(ideal, 0);
    });
}

/// A frame-scheduler contender measured beside a workload's systems, in the same rounds, and
/// printed under the tables rather than as a column.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Extra {
    /// The same workload on `workers(1)`: how it scales.
    OneWorker,
    /// 10 000 `spawn_counted` calls on one counter: what `spawn_batch` is judged against.
    SpawnCounted,
}

impl Extra {
    fn of(workload: Workload) -> Option<Extra> {
        match workload {
            Workload::Throughput | Workload::Loop => Some(Extra::OneWorker),
            Workload::SpawnBatch => Some(Extra::SpawnCounted),
            _ => None,
        }
    }

    fn label(self) -> &'static str {
        match self {
            Extra::OneWorker => "frame-scheduler, 1 worker",
            Extra::SpawnCounted => "frame-scheduler, 10k spawn_counted",
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Printing

fn ns(v: f64) -> String {
    if v < 10.0 {
        format!("{v:.2}")
    } else if v < 1000.0 {
        format!("{v:.1}")
    } else {
        format!("{v:.0}")
    }
}

/// Nanoseconds as whole microseconds.
fn us(ns: f64) -> String {
    format!("{:.0}", ns / 1000.0)
}

fn allocs(c: &Cell) -> String {
    format!("{:.2} ({:.0} B)", c.allocs, c.bytes)
}

/// Prints a markdown table with every column padded to its widest cell; the first two columns
/// left-aligned, the rest right-aligned.
fn print_table(header: &[String], rows: &[Vec<String>]) {
    let cols = header.len();
    let width: Vec<usize> = (0..cols)
        .map(|c| {
            rows.iter()
                .map(|r| r[c].chars().count())
                .chain([header[c].chars().count(), 3])
                .max()
                .unwrap_or(3)
        })
        .collect();
    let line = |cells: &[String]| {
        let mut s = String::from("|");
        for (c, cell) in cells.iter().enumerate() {
            if c < 2 {
                s += &format!(" {cell:<w$} |", w = width[c]);
            } else {
                s += &format!(" {cell:>w$} |", w = width[c]);
            }
        }
        s
    };
    println!("{}", line(header));
    let mut rule = String::from("|");
    for (c, w) in width.iter().enumerate() {
        if c < 2 {
            rule += &format!(" {} |", "-".repeat(*w));
        } else {
            rule += &format!(" {}: |", "-".repeat(w - 1));
        }
    }
    println!("{rule}");
    for r in rows {
        println!("{}", line(r));
    }
}

fn machine() -> String {
    let model = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split(':').nth(1))
                .map(|m| m.trim().to_string())
        })
        .unwrap_or_else(|| "unknown CPU".to_string());
    let hw = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(0);
    format!(
        "{model}, {hw} hardware threads available, {} {}",
        std::env::consts::OS,
        std::env::consts::ARCH
    )
}

// ---------------------------------------------------------------------------------------------
// Watchdog

/// Longest a cell may take before the run is declared hung.
const HANG: Duration = Duration::from_secs(60);

/// The cell being measured and when it started.
static CURRENT: Mutex<Option<(String, Instant)>> = Mutex::new(None);

fn set_current(cell: Option<String>) {
    *CURRENT.lock().unwrap_or_else(|e| e.into_inner()) = cell.map(|c| (c, Instant::now()));
}

/// Exits with the cell's name if one cell runs past `HANG`: a hang in a scheduler should say
/// where it happened, not leave the run waiting forever.
fn start_watchdog() {
    std::thread::spawn(|| {
        loop {
            std::thread::sleep(Duration::from_secs(1));
            let guard = CURRENT.lock().unwrap_or_else(|e| e.into_inner());
            if let Some((cell, since)) = guard.as_ref() {
                if since.elapsed() > HANG {
                    eprintln!("versus: {cell} has not finished after {HANG:?}: hung?");
                    std::process::exit(3);
                }
            }
        }
    });
}

// ---------------------------------------------------------------------------------------------

struct Args {
    threads: usize,
    frames: usize,
    balance_frames: usize,
    /// Only the workloads whose names contain one of these (all when empty).
    only: Vec<String>,
}

impl Args {
    fn wants(&self, w: Workload) -> bool {
        self.only.is_empty() || self.only.iter().any(|o| w.name().contains(o.as_str()))
    }
}

fn parse_args() -> Args {
    let mut threads = None;
    let mut frames = 200;
    let mut balance_frames = 40;
    let mut only = Vec::new();
    let mut args = std::env::args().skip(1);
    let number = |flag: &str, v: Option<String>| -> usize {
        match v.as_deref().map(str::parse::<usize>) {
            Some(Ok(n)) if n >= 1 => n,
            _ => {
                eprintln!("{flag} needs a whole number, at least 1; got {v:?}");
                std::process::exit(2)
            }
        }
    };
    while let Some(a) = args.next() {
        match a.as_str() {
            "--threads" => threads = Some(number("--threads", args.next())),
            "--frames" => frames = number("--frames", args.next()),
            "--balance-frames" => balance_frames = number("--balance-frames", args.next()),
            "--only" => match args.next() {
                Some(names) => only.extend(names.split(',').map(str::to_string)),
                None => {
                    eprintln!("--only needs workload names (parts of them, comma-separated)");
                    std::process::exit(2)
                }
            },
            "-h" | "--help" => {
                println!(
                    "usage: versus [--threads N] [--frames N] [--balance-frames N] \
                     [--only NAME,NAME..]   (env BENCH_THREADS)\n\
                     --only: just the workloads whose names contain one of the NAMEs"
                );
                std::process::exit(0)
            }
            _ => {
                if let Some(v) = a.strip_prefix("--threads=") {
                    threads = Some(number("--threads", Some(v.to_string())));
                } else if let Some(v) = a.strip_prefix("--frames=") {
                    frames = number("--frames", Some(v.to_string()));
                } else if let Some(v) = a.strip_prefix("--balance-frames=") {
                    balance_frames = number("--balance-frames", Some(v.to_string()));
                } else if a == "--bench" {
                    // `cargo bench` passes it to every target; nothing to do.
                } else {
                    eprintln!("unknown argument {a:?}; try --help");
                    std::process::exit(2)
                }
            }
        }
    }
    Args {
        threads: threads.unwrap_or_else(common::threads_from_env),
        frames,
        balance_frames,
        only,
    }
}

fn main() {
    let total = Instant::now();
    let args = parse_args();
    let n = args.threads;
    let mut systems = Systems::new(n);
    start_watchdog();

    println!("## frame-scheduler versus peers");
    println!();
    println!("- machine: {}", machine());
    println!(
        "- threads that run jobs, per system: {n} (frame-scheduler workers({n}); rayon \
         num_threads({n}); tokio worker_threads({n}); async-executor {} thread(s) + the caller; \
         bevy_tasks num_threads({}) + the caller)",
        n - 1,
        n - 1
    );
    println!(
        "- per cell: warm-up, then up to {} samples (at most {:.1} s) taken in {ROUNDS} rounds \
         that alternate between the systems (each turn after a {} ms pause for the others' \
         threads to park); a sample is one frame, or frames timed in a batch \
         of at least {} µs; ns per unit = sample time / units; allocations counted over \
         {ALLOC_FRAMES} frames",
        args.frames,
        CELL_BUDGET.as_secs_f64(),
        SETTLE.as_millis(),
        MIN_SAMPLE.as_micros()
    );
    println!(
        "- ratio = peer / frame-scheduler: above 1 means frame-scheduler is faster; `serial` \
         and `serial-bump` are one-thread floors with no scheduler"
    );
    println!(
        "- balance workloads: the same, with up to {} samples of one frame each; each job spins \
         on the clock for its time of CPU work",
        args.balance_frames
    );
    let (big, small) = (Workload::Loop, Workload::SmallLoop);
    println!(
        "- data-parallel loops, ns per item: frame-scheduler `for_each_chunk` and `map` with the \
         `min_len` its docs advise ({} for ~100 ns items, {} for ~5 ns); rayon \
         `par_chunks_mut(c).for_each` (as fast as `par_iter_mut().with_min_len(..)` on 100 ns \
         items and faster on 5 ns ones, BENCHMARKS.md section 5) and \
         `par_iter().with_min_len({}).map(..).collect_into_vec(..)` into a kept `Vec`; \
         bevy_tasks `par_chunk_map_mut(c)`; c = min(items, max(min_len, items / (4 x {n} \
         threads))) = {} for {} items, {} for {}; serial: a plain loop on one thread (map: `extend` into a kept \
         `Vec`). `-`: tokio and async-executor have no loop over a borrowed slice (their tasks \
         are `'static`), bevy_tasks no map into one slice",
        big.min_len(),
        small.min_len(),
        Workload::Map.min_len(),
        big.chunk_len(n),
        big.loop_len(),
        small.chunk_len(n),
        small.loop_len(),
    );
    println!(
        "- {}: frame-scheduler `spawn_batch` on one counter, against rayon's scope spawns and \
         async-executor's `spawn_many` (the code of `{}`); {} `spawn_counted` calls are measured \
         beside it and printed under the tables. `-`: tokio and bevy_tasks have no batch spawn",
        Workload::SpawnBatch.name(),
        Workload::Spawn.name(),
        common::SPAWN_JOBS
    );
    println!();

    // Per workload, the systems that have it, and for some a frame-scheduler extra (the last
    // contender, printed under the tables).
    let mut one = Scheduler::builder()
        .workers(1)
        .build()
        .expect("build frame-scheduler");
    let mut extras: Vec<(Workload, Extra, Cell)> = Vec::new();
    let mut results: Vec<(Workload, Vec<Option<Cell>>)> = Vec::new();
    for workload in Workload::ALL
        .into_iter()
        .filter(|&w| !w.is_balance() && args.wants(w))
    {
        let present: Vec<System> = System::ALL
            .into_iter()
            .filter(|&s| systems.supports(workload, s))
            .collect();
        for &system in &present {
            set_current(Some(format!(
                "{} on {} (check)",
                workload.name(),
                system.name()
            )));
            systems.verify(workload, system);
        }
        let extra = Extra::of(workload);
        let count = present.len() + usize::from(extra.is_some());
        let name = |k: usize| match (present.get(k), extra) {
            (Some(s), _) => format!("{} on {}", workload.name(), s.name()),
            (None, Some(e)) => format!("{} on {}", workload.name(), e.label()),
            (None, None) => unreachable!("contender {k} of {count}"),
        };
        let cells = measure(
            workload.units(),
            count,
            args.frames,
            &name,
            &mut |k| match (present.get(k), extra) {
                (Some(&system), _) => systems.run(workload, system),
                (None, Some(Extra::OneWorker)) => common::frame_scheduler(
                    &mut one,
                    workload,
                    &mut systems.out,
                    &mut systems.loops,
                ),
                (None, Some(Extra::SpawnCounted)) => {
                    common::frame_scheduler_spawn_counted(&mut systems.frame)
                }
                (None, None) => unreachable!("contender {k} of {count}"),
            },
        );
        for (k, cell) in cells.iter().enumerate() {
            eprintln!(
                "{:<58} {:>10} ns/{}",
                name(k),
                ns(cell.median_ns),
                workload.unit()
            );
        }
        if let (Some(e), Some(&cell)) = (extra, cells.last()) {
            extras.push((workload, e, cell));
        }
        let row = System::ALL
            .iter()
            .map(|s| present.iter().position(|p| p == s).map(|k| cells[k]))
            .collect();
        results.push((workload, row));
    }
    drop(one);

    // The balance workloads: one frame per sample, judged against the ideal on `n` threads. The
    // last contender is the floor this machine allows: `n` threads that each spin the ideal.
    let floor = format!("floor: {n} threads spin ideal");
    let mut balance: Vec<(Workload, Vec<(String, Cell)>)> = Vec::new();
    for workload in Workload::BALANCE.into_iter().filter(|&w| args.wants(w)) {
        let present: Vec<System> = System::ALL
            .into_iter()
            .filter(|&s| systems.supports(workload, s))
            .collect();
        for &system in &present {
            set_current(Some(format!(
                "{} on {} (check)",
                workload.name(),
                system.name()
            )));
            systems.verify(workload, system);
        }
        let ideal = workload.balance_ideal(n);
        let label = |k: usize| match present.get(k) {
            Some(s) => s.name().to_string(),
            None => floor.clone(),
        };
        let name = |k: usize| format!("{} on {}", workload.name(), label(k));
        let cells = measure(
            1,
            present.len() + 1,
            args.balance_frames,
            &name,
            &mut |k| match present.get(k) {
                Some(&system) => systems.run(workload, system),
                None => spin_floor(n, ideal),
            },
        );
        for (k, cell) in cells.iter().enumerate() {
            eprintln!("{:<56} {:>10} µs/frame", name(k), us(cell.median_ns));
        }
        let cells = cells.into_iter().enumerate().map(|(k, c)| (label(k), c));
        balance.push((workload, cells.collect()));
    }
    set_current(None);

    // Only the systems with at least one result get a column.
    let columns: Vec<usize> = (0..System::ALL.len())
        .filter(|&c| results.iter().any(|(_, row)| row[c].is_some()))
        .collect();
    let header: Vec<String> = ["workload", "unit"]
        .iter()
        .map(|s| s.to_string())
        .chain(columns.iter().map(|&c| System::ALL[c].name().to_string()))
        .collect();
    let fs = System::ALL
        .iter()
        .position(|&s| s == System::FrameScheduler)
        .unwrap();
    let table = |cell: &dyn Fn(&Cell, Option<&Cell>, bool) -> String| -> Vec<Vec<String>> {
        results
            .iter()
            .map(|(w, row)| {
                let base = row[fs].as_ref();
                [w.name().to_string(), w.unit().to_string()]
                    .into_iter()
                    .chain(columns.iter().map(|&c| match &row[c] {
                        Some(v) => cell(v, base, c == fs),
                        None => "-".to_string(),
                    }))
                    .collect()
            })
            .collect()
    };

    println!("### median ns per unit (ratio peer / frame-scheduler)");
    println!();
    print_table(
        &header,
        &table(&|v, base, is_fs| match base {
            Some(b) if !is_fs => format!("{} ({:.2}x)", ns(v.median_ns), v.median_ns / b.median_ns),
            _ => ns(v.median_ns),
        }),
    );
    println!();
    println!("### p90 ns per unit (ratio peer / frame-scheduler)");
    println!();
    print_table(
        &header,
        &table(&|v, base, is_fs| match base {
            Some(b) if !is_fs => format!("{} ({:.2}x)", ns(v.p90_ns), v.p90_ns / b.p90_ns),
            _ => ns(v.p90_ns),
        }),
    );
    println!();
    println!("### heap allocations per unit (bytes per unit)");
    println!();
    print_table(&header, &table(&|v, _, _| allocs(v)));
    println!();

    println!("### load balance: frame time against the ideal on {n} threads");
    println!();
    println!(
        "ideal = max(longest job, total work / {n}); ratio = frame time / ideal, 1.00 is a \
         perfect spread; the floor row is {n} plain threads (started each frame, the caller \
         one of them) each spinning the ideal, which is what this machine allows: a ratio well \
         above 1 there means other load, not a scheduler"
    );
    println!();
    let header: Vec<String> = [
        "workload",
        "system",
        "ideal µs",
        "median µs",
        "median / ideal",
        "p90 µs",
        "p90 / ideal",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    let rows: Vec<Vec<String>> = balance
        .iter()
        .flat_map(|(w, cells)| {
            let ideal = w.balance_ideal(n).as_nanos() as f64;
            cells.iter().map(move |(system, c)| {
                vec![
                    w.name().to_string(),
                    system.clone(),
                    us(ideal),
                    us(c.median_ns),
                    format!("{:.2}", c.median_ns / ideal),
                    us(c.p90_ns),
                    format!("{:.2}", c.p90_ns / ideal),
                ]
            })
        })
        .collect();
    print_table(&header, &rows);
    println!();

    for &(workload, extra, cell) in &extras {
        let Some(multi) = results
            .iter()
            .find(|(w, _)| *w == workload)
            .and_then(|(_, row)| row[fs])
        else {
            continue;
        };
        let unit = workload.unit();
        match extra {
            Extra::OneWorker => println!(
                "scaling, {}: frame-scheduler 1 worker {} ns/{unit}, {n} workers {} ns/{unit}: \
                 {:.2}x",
                workload.name(),
                ns(cell.median_ns),
                ns(multi.median_ns),
                cell.median_ns / multi.median_ns
            ),
            Extra::SpawnCounted => println!(
                "{}: frame-scheduler spawn_batch {} ns/{unit}, {} spawn_counted calls {} \
                 ns/{unit}: spawn_counted / spawn_batch {:.2}x (above 1: the batch is cheaper)",
                workload.name(),
                ns(multi.median_ns),
                common::SPAWN_JOBS,
                ns(cell.median_ns),
                cell.median_ns / multi.median_ns
            ),
        }
    }
    println!("total run time: {:.1} s", total.elapsed().as_secs_f64());
}
