//! Pinning by default where it is safe: the first scheduler of a process with enough cores
//! pins its background workers (each to one core; the driving thread only with
//! `pin_driver(true)`), a second one alive at the same time does not, and the claim on the
//! cores goes with the first scheduler's drop. One test in its own binary: other tests'
//! schedulers would hold the claim.

mod common;

use std::thread;

use frame_scheduler::Scheduler;

/// How many CPUs the calling thread may run on (Linux).
fn allowed_cpus() -> usize {
    common::allowed_cpus().expect("Linux /proc/thread-self/status with a Cpus_allowed_list line")
}

/// Runs one frame of `s` on a fresh thread; returns how many CPUs that thread may use after,
/// and how many the background worker that ran a job blocking until it moved may use.
fn drive_once(s: &mut Scheduler) -> (usize, usize) {
    thread::scope(|scope| {
        scope
            .spawn(|| {
                let driver = thread::current().id();
                // 64 jobs of 200 µs: the background worker runs some of them and reports
                // the CPUs it may use.
                let seen = std::sync::Mutex::new(None);
                s.run_frame(async |frame| {
                    let c = frame.counter();
                    for _ in 0..64 {
                        let seen = &seen;
                        frame.spawn_counted(c, async move {
                            if thread::current().id() != driver {
                                *seen.lock().unwrap() = Some(allowed_cpus());
                            }
                            std::thread::sleep(std::time::Duration::from_micros(200));
                        });
                    }
                    c.await;
                });
                let worker = seen.into_inner().unwrap();
                (
                    allowed_cpus(),
                    worker.expect("a background worker ran a job"),
                )
            })
            .join()
            .unwrap()
    })
}

#[test]
fn the_first_scheduler_pins_by_default_and_hands_the_cores_on() {
    let cores = allowed_cpus();
    if cores < 2 {
        // One core: pinning two workers is never safe, and nothing is pinned.
        let mut s = Scheduler::builder().workers(2).build().unwrap();
        assert_eq!(drive_once(&mut s), (cores, cores));
        return;
    }
    let mut first = Scheduler::builder().workers(2).build().unwrap();
    assert_eq!(
        drive_once(&mut first),
        (cores, 1),
        "the first scheduler pins its worker, not its driver"
    );
    let mut second = Scheduler::builder().workers(2).build().unwrap();
    assert_eq!(
        drive_once(&mut second),
        (cores, cores),
        "a second scheduler alive beside the first does not pin"
    );
    // Explicitly unpinned: never pinned, claim or no claim.
    let mut unpinned = Scheduler::builder()
        .workers(2)
        .pin_threads(false)
        .build()
        .unwrap();
    assert_eq!(drive_once(&mut unpinned), (cores, cores));
    // Explicitly pinned with the driving thread: pinned, claim or no claim.
    let mut with_driver = Scheduler::builder()
        .workers(2)
        .pin_threads(true)
        .pin_driver(true)
        .build()
        .unwrap();
    assert_eq!(drive_once(&mut with_driver), (1, 1));
    drop((first, second));
    let mut third = Scheduler::builder().workers(2).build().unwrap();
    drop(with_driver);
    assert_eq!(
        drive_once(&mut third),
        (cores, 1),
        "the cores go to the next scheduler once the first is dropped"
    );
    // More workers than cores: not safe, not pinned.
    drop((third, unpinned));
    let mut crowded = Scheduler::builder().workers(cores + 1).build().unwrap();
    assert_eq!(drive_once(&mut crowded), (cores, cores));
}
