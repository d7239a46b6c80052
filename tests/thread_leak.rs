//! Creating and dropping schedulers leaves no thread behind.
//!
//! This file holds a single test on purpose: it counts the threads of the whole process, so no
//! other test may run beside it in the same binary. Linux only: it reads `/proc/self/task`.
#![cfg(target_os = "linux")]

use std::time::Duration;

use frame_scheduler::Scheduler;

/// Threads of this process, as the kernel lists them.
fn threads() -> usize {
    std::fs::read_dir("/proc/self/task").unwrap().count()
}

/// The thread count once it has settled at `expect`, or the last count seen. `join` returns
/// once a thread has cleared its id, which can be a moment before the kernel drops its entry.
fn settled_threads(expect: usize) -> usize {
    let mut n = threads();
    for _ in 0..200 {
        if n == expect {
            break;
        }
        std::thread::sleep(Duration::from_millis(5));
        n = threads();
    }
    n
}

#[test]
fn hundred_schedulers_created_and_dropped_leave_no_thread() {
    let before = threads();
    for i in 0..100 {
        let workers = 1 + i % 4;
        let mut scheduler = Scheduler::builder().workers(workers).build().unwrap();
        // One background thread per worker beyond the driving thread.
        assert_eq!(
            threads(),
            before + workers - 1,
            "scheduler {i} with {workers} workers"
        );
        if i % 2 == 0 {
            let sum = scheduler.run_frame(async |frame| {
                let hs: Vec<_> = (0..8u32).map(|j| frame.spawn(async move { j })).collect();
                let mut sum = 0;
                for h in hs {
                    sum += h.await;
                }
                sum
            });
            assert_eq!(sum, 28);
        }
        drop(scheduler);
        assert_eq!(
            settled_threads(before),
            before,
            "after dropping scheduler {i}"
        );
    }
    assert_eq!(settled_threads(before), before);
}
