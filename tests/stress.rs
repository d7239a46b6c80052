//! Stress and fault injection: thousands of frames of random job trees with random panics,
//! random `yield_now`, wakers handed to a foreign thread (woken in time, and woken late, after
//! their frame ended), nested counters and `spawn_local`, on 1 to 8 workers. Every frame is
//! checked exactly against a serial computation: results, drop counts of futures and outputs,
//! panics reported. After the schedulers are dropped, live heap memory is back to its baseline.
//!
//! A seeded generator drives it; a failure prints the seed. Own binary (`harness = false`) so
//! the live-byte count sees only this program. Run: `cargo test --release --test stress`
//! (`STRESS_FRAMES=N` per worker count, `STRESS_SEED=S` to replay).

mod common;

use std::alloc::{GlobalAlloc, Layout, System};
use std::future::Future;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::pin::Pin;
use std::rc::Rc;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::mpsc;
use std::task::{Context, Poll, Waker};
use std::time::{Duration, Instant};

use frame_scheduler::{Counter, Frame, Scheduler, yield_now};

// ---- live heap bytes ----

struct Tracking;
static LIVE: AtomicI64 = AtomicI64::new(0);

// SAFETY: forwards to `System`; only counts.
unsafe impl GlobalAlloc for Tracking {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        LIVE.fetch_add(layout.size() as i64, Ordering::Relaxed);
        // SAFETY: same contract.
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        LIVE.fetch_sub(layout.size() as i64, Ordering::Relaxed);
        // SAFETY: same contract.
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        LIVE.fetch_add(new_size as i64 - layout.size() as i64, Ordering::Relaxed);
        // SAFETY: same contract.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static GLOBAL: Tracking = Tracking;

// ---- drop accounting ----

static FUTURES_MADE: AtomicU64 = AtomicU64::new(0);
static FUTURES_DROPPED: AtomicU64 = AtomicU64::new(0);
static OUTPUTS_MADE: AtomicU64 = AtomicU64::new(0);
static OUTPUTS_DROPPED: AtomicU64 = AtomicU64::new(0);

/// Lives inside every job's future: counts the future's drop.
struct FutureToken;
impl FutureToken {
    fn new() -> Self {
        FUTURES_MADE.fetch_add(1, Ordering::Relaxed);
        FutureToken
    }
}
impl Drop for FutureToken {
    fn drop(&mut self) {
        FUTURES_DROPPED.fetch_add(1, Ordering::Relaxed);
    }
}

/// Every job's output: a value, and a token counting the output's drop.
struct Out(u64);
impl Out {
    fn new(v: u64) -> Self {
        OUTPUTS_MADE.fetch_add(1, Ordering::Relaxed);
        Out(v)
    }
}
impl Drop for Out {
    fn drop(&mut self) {
        OUTPUTS_DROPPED.fetch_add(1, Ordering::Relaxed);
    }
}

// ---- the random program ----

use common::{Rng, for_each_worker_count};

/// How a node's parent runs it.
#[derive(Clone, Copy, PartialEq)]
enum Spawn {
    /// `spawn`, handle awaited: its output counts.
    Awaited,
    /// `spawn`, handle dropped at once: runs, output dropped.
    Detached,
    /// `spawn_counted` on the parent's counter; adds its value to the frame's sum.
    Counted,
}

struct Node {
    id: u64,
    value: u64,
    spawn: Spawn,
    /// Panics after its children are spawned (only for detached and counted nodes, whose
    /// output nobody awaits), so its own value is lost but its children still run.
    panics: bool,
    yields: u8,
    /// Awaits a wake from the foreign thread once.
    foreign_wake: bool,
    /// Also hands the foreign thread a waker to wake late, after the frame.
    late_wake: bool,
    children: Vec<Node>,
}

fn gen_node(rng: &mut Rng, id: &mut u64, depth: u32, spawn: Spawn) -> Node {
    *id += 1;
    let fanout = if depth == 0 { 0 } else { rng.below(5) };
    let children = (0..fanout)
        .map(|_| {
            let spawn = match rng.below(3) {
                0 => Spawn::Awaited,
                1 => Spawn::Detached,
                _ => Spawn::Counted,
            };
            gen_node(rng, id, depth - 1, spawn)
        })
        .collect();
    Node {
        id: *id,
        value: rng.below(1000),
        spawn,
        panics: spawn != Spawn::Awaited && rng.below(40) == 0,
        yields: if rng.below(4) == 0 {
            rng.below(3) as u8 + 1
        } else {
            0
        },
        foreign_wake: rng.below(25) == 0,
        late_wake: rng.below(30) == 0,
        children,
    }
}

/// What the frame must produce, computed serially.
#[derive(Default, Debug, PartialEq)]
struct Expect {
    /// Output of the root's awaited subtree sums (handles).
    awaited_sum: u64,
    /// Sum of values reported through the side channel by detached and counted nodes that do
    /// not panic, and by every node of their non-awaited subtrees.
    side_sum: u64,
    panics: u64,
    jobs: u64,
    panic_ids: Vec<u64>,
}

/// Returns the output of `node` if it is awaited (value + awaited children), and accumulates
/// side sums, panics and job counts.
fn serial(node: &Node, e: &mut Expect) -> u64 {
    e.jobs += 1;
    let mut out = node.value;
    for c in &node.children {
        let v = serial(c, e);
        if c.spawn == Spawn::Awaited {
            out += v;
        }
    }
    if node.panics {
        e.panics += 1;
        e.panic_ids.push(node.id);
    } else if node.spawn != Spawn::Awaited {
        e.side_sum += out;
    }
    out
}

/// Hands wakers to a foreign thread: `Now` ones are woken after a short delay, `Late` ones are
/// kept and woken (and dropped) a few frames later.
enum ToForeign {
    Now(Waker),
    Late(Waker),
    Stop,
}

/// A future that sends its waker to the foreign thread once, then completes when woken.
struct ForeignWake {
    tx: mpsc::Sender<ToForeign>,
    sent: bool,
    woken: std::sync::Arc<std::sync::atomic::AtomicBool>,
}

impl Future for ForeignWake {
    type Output = ();
    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        if self.woken.load(Ordering::Acquire) {
            return Poll::Ready(());
        }
        if !self.sent {
            self.sent = true;
            let woken = self.woken.clone();
            let waker = cx.waker().clone();
            // The foreign thread sets `woken` then wakes: wrap both in one waker-like message.
            let flagged = flag_waker(woken, waker);
            self.tx.send(ToForeign::Now(flagged)).unwrap();
        }
        Poll::Pending
    }
}

/// A waker that sets a flag, then wakes the job (a std `Wake` wrapper: foreign to us).
fn flag_waker(flag: std::sync::Arc<std::sync::atomic::AtomicBool>, inner: Waker) -> Waker {
    struct Flagged(std::sync::Arc<std::sync::atomic::AtomicBool>, Waker);
    impl std::task::Wake for Flagged {
        fn wake(self: std::sync::Arc<Self>) {
            self.0.store(true, Ordering::Release);
            self.1.wake_by_ref();
        }
    }
    Waker::from(std::sync::Arc::new(Flagged(flag, inner)))
}

/// A future that hands a clone of its waker to the foreign thread for a late wake.
struct LateWake {
    tx: mpsc::Sender<ToForeign>,
}
impl Future for LateWake {
    type Output = ();
    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        self.tx.send(ToForeign::Late(cx.waker().clone())).unwrap();
        Poll::Ready(())
    }
}

struct Ctx<'f> {
    side: &'f AtomicU64,
    tx: mpsc::Sender<ToForeign>,
}

type BoxFut<'f, T> = Pin<Box<dyn Future<Output = T> + Send + 'f>>;

fn run_node<'f>(
    frame: &'f Frame<'f, '_>,
    node: &'f Node,
    ctx: &'f Ctx<'f>,
    parent_counter: Option<Counter<'f>>,
) -> BoxFut<'f, Out> {
    let tx = ctx.tx.clone();
    Box::pin(async move {
        let _token = FutureToken::new();
        let _ = parent_counter;
        let counter = frame.counter();
        let mut handles = Vec::new();
        for c in &node.children {
            match c.spawn {
                Spawn::Awaited => handles.push(frame.spawn(run_node(frame, c, ctx, None))),
                Spawn::Detached => drop(frame.spawn(run_node(frame, c, ctx, None))),
                Spawn::Counted => frame.spawn_counted(counter, async move {
                    let out = run_node(frame, c, ctx, Some(counter)).await;
                    drop(out);
                }),
            }
        }
        for _ in 0..node.yields {
            yield_now().await;
        }
        if node.foreign_wake {
            let woken = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
            ForeignWake {
                tx: tx.clone(),
                sent: false,
                woken,
            }
            .await;
        }
        if node.late_wake {
            LateWake { tx: tx.clone() }.await;
        }
        let mut out = node.value;
        for h in handles {
            out += h.await.0;
        }
        counter.await;
        if node.panics {
            panic!("boom {}", node.id);
        }
        if node.spawn != Spawn::Awaited {
            ctx.side.fetch_add(out, Ordering::Relaxed);
        }
        Out::new(out)
    })
}

/// A local subtree: the same shape, run with `spawn_local` (futures hold an `Rc`).
fn run_local<'f>(
    frame: &'f Frame<'f, '_>,
    node: &'f Node,
) -> Pin<Box<dyn Future<Output = u64> + 'f>> {
    Box::pin(async move {
        let _token = FutureToken::new();
        let rc = Rc::new(node.value);
        let mut handles = Vec::new();
        for c in &node.children {
            handles.push(frame.spawn_local(run_local(frame, c)));
        }
        for _ in 0..node.yields {
            yield_now().await;
        }
        let mut out = *rc;
        for h in handles {
            out += h.await;
        }
        out
    })
}

fn local_sum(node: &Node) -> (u64, u64) {
    let (mut sum, mut jobs) = (node.value, 1);
    for c in &node.children {
        let (s, j) = local_sum(c);
        sum += s;
        jobs += j;
    }
    (sum, jobs)
}

fn run(seed: u64, frames_per_config: u64) {
    let (tx, rx) = mpsc::channel::<ToForeign>();
    let foreign = std::thread::spawn(move || {
        let mut late: Vec<(Instant, Waker)> = Vec::new();
        loop {
            match rx.recv_timeout(Duration::from_micros(200)) {
                Ok(ToForeign::Now(w)) => {
                    std::thread::sleep(Duration::from_micros(50));
                    w.wake();
                }
                Ok(ToForeign::Late(w)) => late.push((Instant::now(), w)),
                Ok(ToForeign::Stop) => break,
                Err(mpsc::RecvTimeoutError::Timeout) => {}
                Err(mpsc::RecvTimeoutError::Disconnected) => break,
            }
            // Wake late wakers a few milliseconds on: their frames are long over.
            let now = Instant::now();
            late.retain(|(t, w)| {
                if now.duration_since(*t) > Duration::from_millis(3) {
                    w.wake_by_ref();
                    false
                } else {
                    true
                }
            });
        }
        // Some are woken after their scheduler is gone.
        for (_, w) in late {
            w.wake();
        }
    });

    let mut rng = Rng::new(seed);
    let mut total_frames = 0;
    let (mut panicking_frames, mut foreign_wakes, mut late_wakes) = (0, 0, 0);
    for_each_worker_count(&[1, 2, 3, 4, 5, 6, 7, 8], |workers, scheduler| {
        for f in 0..frames_per_config {
            let mut id = 0;
            let depth = 2 + rng.below(3) as u32;
            let tree = gen_node(&mut rng, &mut id, depth, Spawn::Awaited);
            let local_tree = gen_node(&mut rng, &mut id, 2, Spawn::Awaited);
            let mut expect = Expect::default();
            let awaited = serial(&tree, &mut expect);
            fn count(n: &Node, f: &mut u64, l: &mut u64) {
                *f += n.foreign_wake as u64;
                *l += n.late_wake as u64;
                n.children.iter().for_each(|c| count(c, f, l));
            }
            count(&tree, &mut foreign_wakes, &mut late_wakes);
            panicking_frames += (expect.panics > 0) as u64;
            expect.awaited_sum = awaited;
            let (local_expect, local_jobs) = local_sum(&local_tree);

            let side = AtomicU64::new(0);
            let ctx = Ctx {
                side: &side,
                tx: tx.clone(),
            };
            let futures_before = FUTURES_DROPPED.load(Ordering::SeqCst);
            let made_before = FUTURES_MADE.load(Ordering::SeqCst);
            let outputs_made_before = OUTPUTS_MADE.load(Ordering::SeqCst);
            let outputs_before = OUTPUTS_DROPPED.load(Ordering::SeqCst);

            let result = catch_unwind(AssertUnwindSafe(|| {
                scheduler.run_frame(async |frame| {
                    let local = frame.spawn_local(run_local(frame, &local_tree));
                    let out = frame.spawn(run_node(frame, &tree, &ctx, None)).await;
                    (out.0, local.await)
                })
            }));
            let stats = scheduler.last_frame_stats().clone();
            let ctx_msg = format!("seed {seed}, workers {workers}, frame {f}");
            match result {
                Ok((sum, local)) => {
                    assert_eq!(expect.panics, 0, "{ctx_msg}: panics expected but none came");
                    assert_eq!(sum, expect.awaited_sum, "{ctx_msg}: awaited sum");
                    assert_eq!(local, local_expect, "{ctx_msg}: local sum");
                }
                Err(payload) => {
                    let msg = payload
                        .downcast_ref::<String>()
                        .cloned()
                        .unwrap_or_else(|| panic!("{ctx_msg}: payload is not the job's String"));
                    let id: u64 = msg
                        .strip_prefix("boom ")
                        .and_then(|s| s.parse().ok())
                        .unwrap_or_else(|| panic!("{ctx_msg}: unexpected payload {msg:?}"));
                    assert!(
                        expect.panic_ids.contains(&id),
                        "{ctx_msg}: panic from node {id}, which should not panic"
                    );
                }
            }
            assert_eq!(
                stats.panics as u64, expect.panics,
                "{ctx_msg}: panics reported"
            );
            assert_eq!(
                side.load(Ordering::SeqCst),
                expect.side_sum,
                "{ctx_msg}: side sum"
            );
            // Jobs: every tree node is a job, counted ones add a wrapper job's worth of nothing
            // (they are one job each), plus the local tree.
            assert_eq!(
                stats.jobs,
                expect.jobs + local_jobs,
                "{ctx_msg}: jobs spawned"
            );
            assert_eq!(stats.local_jobs, local_jobs, "{ctx_msg}: local jobs");
            let made = FUTURES_MADE.load(Ordering::SeqCst) - made_before;
            let dropped = FUTURES_DROPPED.load(Ordering::SeqCst) - futures_before;
            assert_eq!(made, expect.jobs + local_jobs, "{ctx_msg}: futures made");
            assert_eq!(dropped, made, "{ctx_msg}: futures dropped exactly once");
            let outs = OUTPUTS_MADE.load(Ordering::SeqCst) - outputs_made_before;
            let outs_dropped = OUTPUTS_DROPPED.load(Ordering::SeqCst) - outputs_before;
            assert_eq!(
                outs, outs_dropped,
                "{ctx_msg}: outputs dropped exactly once"
            );
            total_frames += 1;
        }
    });
    tx.send(ToForeign::Stop).unwrap();
    drop(tx);
    foreign.join().unwrap();
    println!(
        "stress: {total_frames} frames of random job trees on 1..=8 workers, seed {seed}: \
         {panicking_frames} frames with panics, {foreign_wakes} foreign wakes, {late_wakes} \
         wakers woken after their frame"
    );
}

fn main() {
    let seed: u64 = std::env::var("STRESS_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_nanos() as u64
                | 1
        });
    let frames: u64 = std::env::var("STRESS_FRAMES")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(2000);
    // Silence the expected panics' messages; failures of this program still print.
    std::panic::set_hook(Box::new(|info| {
        let msg = info
            .payload()
            .downcast_ref::<String>()
            .map(String::as_str)
            .unwrap_or("");
        if !msg.starts_with("boom ") {
            eprintln!("{info}");
        }
    }));
    // Warm up once so lazily allocated runtime state (thread-locals, stdout) is in the baseline.
    drop(Scheduler::builder().workers(2).build().unwrap());
    println!("stress: seed {seed} (replay with STRESS_SEED={seed})");
    let baseline = LIVE.load(Ordering::SeqCst);
    let started = Instant::now();
    let outcome = catch_unwind(|| run(seed, frames));
    if let Err(p) = outcome {
        eprintln!("stress FAILED with seed {seed}: replay with STRESS_SEED={seed}");
        std::panic::resume_unwind(p);
    }
    let live = LIVE.load(Ordering::SeqCst);
    assert_eq!(
        live - baseline,
        0,
        "seed {seed}: {} heap bytes still live after every scheduler was dropped",
        live - baseline
    );
    println!(
        "stress: took {:.1} s; live heap back to baseline",
        started.elapsed().as_secs_f64()
    );
    println!("stress: 1 passed, 0 failed");
}
