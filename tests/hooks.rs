//! Thread hooks: `on_worker_start` and `on_worker_stop` run once on each background worker
//! thread, with its index, on that thread; a panicking hook is an error or a report, never a
//! hang.

use std::cell::Cell;
use std::sync::atomic::{AtomicUsize, Ordering::SeqCst};
use std::sync::{Arc, Mutex};

use frame_scheduler::Scheduler;

mod common;
use common::within;

/// (index, thread name) of each call, in call order.
type Log = Arc<Mutex<Vec<(usize, String)>>>;

fn logging(log: &Log) -> impl Fn(usize) + Send + Sync + 'static {
    let log = Arc::clone(log);
    move |index| {
        let name = std::thread::current().name().unwrap_or("").to_owned();
        log.lock().unwrap().push((index, name));
    }
}

fn sorted(log: &Log) -> Vec<(usize, String)> {
    let mut v = log.lock().unwrap().clone();
    v.sort();
    v
}

fn background(workers: usize) -> Vec<(usize, String)> {
    (1..workers)
        .map(|i| (i, format!("frame-worker-{i}")))
        .collect()
}

#[test]
fn hooks_run_once_on_each_background_thread_with_its_index() {
    for workers in [1, 2, 4] {
        let starts: Log = Log::default();
        let stops: Log = Log::default();
        let mut scheduler = Scheduler::builder()
            .workers(workers)
            .on_worker_start(logging(&starts))
            .on_worker_stop(logging(&stops))
            .build()
            .unwrap();
        // Every start hook has returned before build returns; no stop hook has run.
        assert_eq!(sorted(&starts), background(workers));
        assert!(stops.lock().unwrap().is_empty());
        for _ in 0..3 {
            scheduler.run_frame(async |frame| {
                let c = frame.counter();
                for _ in 0..100 {
                    frame.spawn_counted(c, async {});
                }
                c.await;
            });
        }
        assert_eq!(
            starts.lock().unwrap().len(),
            workers - 1,
            "frames ran start hooks"
        );
        assert!(stops.lock().unwrap().is_empty(), "frames ran stop hooks");
        drop(scheduler);
        // The drop returns once every thread has run its stop hook, once.
        assert_eq!(sorted(&stops), background(workers));
        assert_eq!(starts.lock().unwrap().len(), workers - 1);
    }
}

thread_local! {
    static HOOKED: Cell<bool> = const { Cell::new(false) };
}

/// The start hook runs before the thread takes any job, and `build` waits for it even when it
/// takes a while.
#[test]
fn start_hook_runs_before_any_job_and_before_build_returns() {
    let started = Arc::new(AtomicUsize::new(0));
    let count = Arc::clone(&started);
    let mut scheduler = Scheduler::builder()
        .workers(3)
        .on_worker_start(move |_| {
            std::thread::sleep(std::time::Duration::from_millis(50));
            HOOKED.with(|h| h.set(true));
            count.fetch_add(1, SeqCst);
        })
        .build()
        .unwrap();
    assert_eq!(started.load(SeqCst), 2);
    let on_workers = AtomicUsize::new(0);
    let unhooked = AtomicUsize::new(0);
    for _ in 0..20 {
        scheduler.run_frame(async |frame| {
            let c = frame.counter();
            for _ in 0..200 {
                frame.spawn_counted(c, async {
                    let name = std::thread::current().name().unwrap_or("").to_owned();
                    if name.starts_with("frame-worker-") {
                        on_workers.fetch_add(1, SeqCst);
                        if !HOOKED.with(Cell::get) {
                            unhooked.fetch_add(1, SeqCst);
                        }
                    }
                });
            }
            c.await;
        });
    }
    assert_eq!(
        unhooked.load(SeqCst),
        0,
        "a job ran on a thread before its start hook"
    );
    // Nothing here checks that the workers took jobs, so say it when they did not.
    if on_workers.load(SeqCst) == 0 {
        eprintln!("note: no job ran on a background worker in this run");
    }
}

#[test]
fn panicking_start_hook_is_an_error_naming_the_hook_and_worker() {
    let stops: Log = Log::default();
    let err = Scheduler::builder()
        .workers(4)
        .on_worker_start(|index| {
            if index == 2 {
                panic!("no affinity for worker {index}");
            }
        })
        .on_worker_stop(logging(&stops))
        .build()
        .expect_err("a start hook panicked");
    let msg = err.to_string();
    assert!(msg.contains("on_worker_start"), "{msg}");
    assert!(msg.contains("worker 2"), "{msg}");
    assert!(msg.contains("frame-worker-2"), "{msg}");
    assert!(msg.contains("no affinity for worker 2"), "{msg}");
    // The threads whose start hook returned were stopped and joined before build returned:
    // their stop hooks ran; the failed thread's did not.
    assert_eq!(
        sorted(&stops),
        [
            (1, "frame-worker-1".to_owned()),
            (3, "frame-worker-3".to_owned())
        ]
    );
    // A panic with a payload that is not a string is reported too.
    let err = Scheduler::builder()
        .workers(2)
        .on_worker_start(|_| std::panic::panic_any(7u32))
        .build()
        .expect_err("a start hook panicked");
    assert!(err.to_string().contains("worker 1"), "{err}");
}

#[test]
fn panicking_stop_hook_does_not_hang_or_abort_drop() {
    let stops: Log = Log::default();
    within(30, {
        let stops = Arc::clone(&stops);
        move || {
            let log = logging(&stops);
            let mut scheduler = Scheduler::builder()
                .workers(4)
                .on_worker_stop(move |index| {
                    log(index);
                    if index == 1 {
                        panic!("stop hook of worker {index} fails");
                    }
                })
                .build()
                .unwrap();
            assert_eq!(scheduler.run_frame(async |f| f.spawn(async { 3 }).await), 3);
            drop(scheduler);
        }
    });
    // Every thread still stopped and ran its hook, the panicking one included.
    assert_eq!(sorted(&stops), background(4));
}

#[test]
fn builder_with_hooks_is_clone_and_debug() {
    let starts: Log = Log::default();
    let builder = Scheduler::builder()
        .workers(2)
        .on_worker_start(logging(&starts));
    let text = format!("{builder:?}");
    assert!(text.contains("on_worker_start: Some"), "{text}");
    assert!(text.contains("on_worker_stop: None"), "{text}");
    // A clone shares the hook: two schedulers, one start each.
    let a = builder.clone().build().unwrap();
    let b = builder.build().unwrap();
    assert_eq!(starts.lock().unwrap().len(), 2);
    drop((a, b));
}

/// The worker thread hooks: a panicking start hook on one worker; a stop hook that panics on every
/// worker; hooks that run a frame of another scheduler.
#[test]
fn thread_hooks_under_panics_and_nesting() {
    within(60, || {
        use std::sync::Arc;
        let started = Arc::new(AtomicUsize::new(0));
        let stopped = Arc::new(AtomicUsize::new(0));
        let (st, sp) = (Arc::clone(&started), Arc::clone(&stopped));
        let err = Scheduler::builder()
            .workers(5)
            .on_worker_start(move |i| {
                st.fetch_add(1, SeqCst);
                if i == 3 {
                    panic!("no priority for worker {i}");
                }
            })
            .on_worker_stop(move |_| {
                sp.fetch_add(1, SeqCst);
            })
            .build()
            .unwrap_err();
        assert!(err.to_string().contains("worker 3"), "{err}");
        assert!(
            err.to_string().contains("no priority for worker 3"),
            "{err}"
        );
        assert_eq!(started.load(SeqCst), 4);
        assert_eq!(stopped.load(SeqCst), 3);

        // Hooks that run whole frames of another scheduler, and a stop hook that panics.
        let ran = Arc::new(AtomicUsize::new(0));
        let (r1, r2) = (Arc::clone(&ran), Arc::clone(&ran));
        let s = Scheduler::builder()
            .workers(3)
            .on_worker_start(move |i| {
                let mut inner = Scheduler::builder().workers(2).build().unwrap();
                let v =
                    inner.run_frame(async |frame| *frame.alloc(i) + frame.spawn(async { 1 }).await);
                r1.fetch_add(v, SeqCst);
            })
            .on_worker_stop(move |i| {
                r2.fetch_add(100, SeqCst);
                panic!("stop hook {i} panics");
            })
            .build()
            .unwrap();
        assert_eq!(ran.load(SeqCst), (1 + 1) + (2 + 1));
        drop(s);
        assert_eq!(ran.load(SeqCst), 5 + 200);
    });
}
