//! Every job future and every job output is dropped exactly once, whoever ends up owning it:
//! the awaiter, a dropped handle (before or after the job finished), the frame-end sweep (for
//! forgotten handles), or the completing worker (for detached jobs).

use std::mem;
use std::sync::atomic::{AtomicUsize, Ordering::SeqCst};

use frame_scheduler::{Frame, yield_now};

mod common;

use common::{Tracked, for_each_worker_count};

const N: usize = 64;

fn tracked(drops: &AtomicUsize) -> Tracked<'_> {
    Tracked::new(drops)
}

#[test]
fn awaited_outputs_are_dropped_once_by_the_awaiter() {
    for_each_worker_count(&[1, 2, 4], |_, scheduler| {
        let futures = AtomicUsize::new(0);
        let outputs = AtomicUsize::new(0);
        scheduler.run_frame(async |frame| {
            let handles: Vec<_> = (0..N)
                .map(|i| {
                    let guard = tracked(&futures);
                    let outputs = &outputs;
                    frame.spawn(async move {
                        let _guard = guard;
                        if i % 2 == 0 {
                            yield_now().await;
                        }
                        tracked(outputs)
                    })
                })
                .collect();
            for (i, h) in handles.into_iter().enumerate() {
                let out = h.await;
                assert_eq!(outputs.load(SeqCst), i);
                drop(out);
                assert_eq!(outputs.load(SeqCst), i + 1);
            }
        });
        assert_eq!(futures.load(SeqCst), N);
        assert_eq!(
            outputs.load(SeqCst),
            N,
            "the sweep must not drop taken outputs again"
        );
    });
}

#[test]
fn output_of_handle_dropped_before_completion_is_dropped_once() {
    for_each_worker_count(&[1, 2, 4], |_, scheduler| {
        let futures = AtomicUsize::new(0);
        let outputs = AtomicUsize::new(0);
        scheduler.run_frame(async |frame| {
            let gate = frame.counter();
            gate.add(1);
            let handles: Vec<_> = (0..N)
                .map(|_| {
                    let guard = tracked(&futures);
                    let outputs = &outputs;
                    frame.spawn(async move {
                        let _guard = guard;
                        gate.await;
                        tracked(outputs)
                    })
                })
                .collect();
            for h in &handles {
                assert!(!h.is_finished());
            }
            drop(handles);
            assert_eq!(outputs.load(SeqCst), 0);
            gate.done();
        });
        assert_eq!(futures.load(SeqCst), N);
        assert_eq!(outputs.load(SeqCst), N);
    });
}

#[test]
fn output_of_handle_dropped_after_completion_is_dropped_by_the_drop() {
    for_each_worker_count(&[1, 2, 4], |_, scheduler| {
        let futures = AtomicUsize::new(0);
        let outputs = AtomicUsize::new(0);
        scheduler.run_frame(async |frame| {
            for i in 0..N {
                let guard = tracked(&futures);
                let outputs = &outputs;
                let h = frame.spawn(async move {
                    let _guard = guard;
                    tracked(outputs)
                });
                while !h.is_finished() {
                    yield_now().await;
                }
                assert_eq!(outputs.load(SeqCst), i);
                drop(h);
                assert_eq!(outputs.load(SeqCst), i + 1);
            }
        });
        assert_eq!(futures.load(SeqCst), N);
        assert_eq!(outputs.load(SeqCst), N);
    });
}

#[test]
fn output_of_forgotten_handle_is_dropped_at_frame_end() {
    for_each_worker_count(&[1, 2, 4], |_, scheduler| {
        let futures = AtomicUsize::new(0);
        let outputs = AtomicUsize::new(0);
        scheduler.run_frame(async |frame| {
            for _ in 0..N {
                let guard = tracked(&futures);
                let outputs = &outputs;
                let h = frame.spawn(async move {
                    let _guard = guard;
                    tracked(outputs)
                });
                while !h.is_finished() {
                    yield_now().await;
                }
                mem::forget(h);
            }
            // Forgotten handles keep their outputs until the frame ends.
            assert_eq!(outputs.load(SeqCst), 0);
            // Forgotten before the job even ran.
            for _ in 0..N {
                let outputs = &outputs;
                mem::forget(frame.spawn(async move { tracked(outputs) }));
            }
        });
        assert_eq!(futures.load(SeqCst), N);
        assert_eq!(outputs.load(SeqCst), 2 * N);
        // The next frame starts clean.
        scheduler.run_frame(async |frame| {
            frame.spawn(async {}).await;
        });
        assert_eq!(outputs.load(SeqCst), 2 * N);
    });
}

#[test]
fn outputs_of_jobs_never_awaited_are_dropped_once() {
    for_each_worker_count(&[1, 2, 4], |_, scheduler| {
        let outputs = AtomicUsize::new(0);
        let futures = AtomicUsize::new(0);
        scheduler.run_frame(async |frame| {
            // Handles kept by the root until it returns, never awaited.
            let kept: Vec<_> = (0..N)
                .map(|_| {
                    let outputs = &outputs;
                    let guard = tracked(&futures);
                    frame.spawn(async move {
                        let _guard = guard;
                        tracked(outputs)
                    })
                })
                .collect();
            // Handles kept by a job that returns without awaiting them.
            let outputs = &outputs;
            frame
                .spawn(async move {
                    let inner: Vec<_> = (0..N)
                        .map(|_| frame.spawn(async move { tracked(outputs) }))
                        .collect();
                    yield_now().await;
                    drop(inner);
                })
                .await;
            yield_now().await;
            drop(kept);
        });
        assert_eq!(futures.load(SeqCst), N);
        assert_eq!(outputs.load(SeqCst), 2 * N);
    });
}

#[test]
fn outputs_of_local_jobs_dropped_once_in_every_way() {
    for_each_worker_count(&[1, 2], |_, scheduler| {
        let outputs = AtomicUsize::new(0);
        scheduler.run_frame(async |frame| {
            let outputs = &outputs;
            let awaited = frame.spawn_local(async move { tracked(outputs) });
            let dropped = frame.spawn_local(async move { tracked(outputs) });
            let forgotten = frame.spawn_local(async move { tracked(outputs) });
            drop(dropped);
            mem::forget(forgotten);
            drop(awaited.await);
            yield_now().await;
        });
        assert_eq!(outputs.load(SeqCst), 3);
    });
}

#[test]
fn counted_job_futures_are_dropped_once() {
    for_each_worker_count(&[1, 3], |_, scheduler| {
        let futures = AtomicUsize::new(0);
        scheduler.run_frame(async |frame| {
            let c = frame.counter();
            for i in 0..N {
                let guard = tracked(&futures);
                frame.spawn_counted(c, async move {
                    let _guard = guard;
                    if i % 3 == 0 {
                        yield_now().await;
                    }
                });
            }
            c.await;
            assert_eq!(futures.load(SeqCst), N);
        });
        assert_eq!(futures.load(SeqCst), N);
    });
}

#[test]
#[allow(clippy::async_yields_async)] // the job's output is a handle, on purpose
fn output_that_is_a_forgotten_handle_drops_the_inner_output() {
    // The output of a forgotten job is itself a handle: sweeping it at frame end drops that
    // handle, which detaches (or drops the output of) the inner job.
    for_each_worker_count(&[1, 2], |_, scheduler| {
        let outputs = AtomicUsize::new(0);
        scheduler.run_frame(async |frame| {
            let outputs = &outputs;
            for _ in 0..N {
                let outer = frame.spawn(async move {
                    frame.spawn(async move {
                        yield_now().await;
                        tracked(outputs)
                    })
                });
                mem::forget(outer);
            }
        });
        assert_eq!(outputs.load(SeqCst), N);
    });
}

/// An output whose destructor spawns one more job into the frame.
struct SpawnOnDrop<'f, 'e> {
    frame: &'f Frame<'f, 'e>,
    ran: &'f AtomicUsize,
}

impl Drop for SpawnOnDrop<'_, '_> {
    fn drop(&mut self) {
        let ran = self.ran;
        drop(self.frame.spawn(async move {
            ran.fetch_add(1, SeqCst);
        }));
    }
}

#[test]
fn output_destructor_that_spawns_runs_its_job_in_the_same_frame() {
    for_each_worker_count(&[1, 2], |_, scheduler| {
        let ran = AtomicUsize::new(0);
        scheduler.run_frame(async |frame| {
            let ran = &ran;
            // Swept at frame end.
            mem::forget(frame.spawn(async move { SpawnOnDrop { frame, ran } }));
            // Dropped by the completing worker (handle dropped first).
            let gate = frame.counter();
            gate.add(1);
            drop(frame.spawn(async move {
                gate.await;
                SpawnOnDrop { frame, ran }
            }));
            gate.done();
        });
        assert_eq!(ran.load(SeqCst), 2);
        assert_eq!(scheduler.last_frame_stats().jobs, 4);
    });
}
