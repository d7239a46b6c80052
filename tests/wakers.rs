//! Wakers: woken from plain threads, from another scheduler, after their job finished, after
//! their frame ended and after their scheduler was dropped (the last three must do nothing).
// `waker.clone().wake()` exercises the clone and the consuming wake on purpose.
#![allow(clippy::waker_clone_wake)]

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering::SeqCst};
use std::sync::{Mutex, mpsc};
use std::task::{Context, Poll, Waker};
use std::thread;
use std::time::{Duration, Instant};

use frame_scheduler::{Scheduler, yield_now};
use futures::channel::oneshot;
use futures::{SinkExt, StreamExt};

mod common;

use common::{for_each_worker_count, scheduler};

/// The global allocator, counting the allocations and frees of one thread while [`heap_ops`]
/// runs a closure on it (nothing else is counted).
struct CountOnThisThread;

thread_local! {
    /// (allocations, frees) so far, while counting.
    static HEAP_OPS: Cell<Option<(usize, usize)>> = const { Cell::new(None) };
}

fn note(allocs: usize, frees: usize) {
    // `try_with`: the allocator may be called while this thread's locals are torn down.
    let _ = HEAP_OPS.try_with(|ops| {
        if let Some((a, f)) = ops.get() {
            ops.set(Some((a + allocs, f + frees)));
        }
    });
}

// SAFETY: forwards every call to `System` unchanged; only counts on the side.
unsafe impl GlobalAlloc for CountOnThisThread {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        note(1, 0);
        // SAFETY: same contract as ours.
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        note(0, 1);
        // SAFETY: same contract as ours.
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        note(1, 1);
        // SAFETY: same contract as ours.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static GLOBAL: CountOnThisThread = CountOnThisThread;

/// Runs `f` and returns its output with the (allocations, frees) it made on this thread.
fn heap_ops<R>(f: impl FnOnce() -> R) -> (R, (usize, usize)) {
    HEAP_OPS.with(|ops| ops.set(Some((0, 0))));
    let out = f();
    let ops = HEAP_OPS.with(|ops| ops.take()).expect("counting");
    (out, ops)
}

/// What a waker of an orphaned cell may do to the heap: nothing, except that the last one
/// dropped gives up its cell: to the process-wide recycling list while any scheduler is alive
/// (no heap operation; tests/zero_alloc.rs checks the reuse), or back to the system (one
/// free) when none is. Tests here run beside others' schedulers, so either may happen; CI's
/// valgrind run checks that no cell leaks or is freed twice.
const NOTHING: (usize, usize) = (0, 0);

/// Checks what the last waker of a cell did to the heap (see [`NOTHING`]).
fn gave_up_its_cell(ops: (usize, usize)) -> bool {
    ops == (0, 0) || ops == (0, 1)
}

/// Stashes a clone of its waker into `slot` and completes at once.
struct Stash<'a>(&'a Mutex<Option<Waker>>);

impl Future for Stash<'_> {
    type Output = ();

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        *self.0.lock().unwrap() = Some(cx.waker().clone());
        Poll::Ready(())
    }
}

/// Pending until `release` is set; stashes its waker on every pending poll and counts polls
/// (after stashing, so that a count seen by another thread means the waker is there).
struct Parked<'a> {
    polls: &'a AtomicUsize,
    slot: &'a Mutex<Option<Waker>>,
    release: &'a AtomicBool,
}

impl Future for Parked<'_> {
    type Output = ();

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        if self.release.load(SeqCst) {
            self.polls.fetch_add(1, SeqCst);
            return Poll::Ready(());
        }
        *self.slot.lock().unwrap() = Some(cx.waker().clone());
        self.polls.fetch_add(1, SeqCst);
        Poll::Pending
    }
}

/// On its first poll hands a clone of its waker to a thread; ready once `ready` is set.
struct HandOff<'a> {
    polls: &'a AtomicUsize,
    ready: &'a AtomicBool,
    to_thread: Option<mpsc::Sender<Waker>>,
}

impl Future for HandOff<'_> {
    type Output = ();

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        let this = self.get_mut();
        this.polls.fetch_add(1, SeqCst);
        if this.ready.load(SeqCst) {
            return Poll::Ready(());
        }
        if let Some(tx) = this.to_thread.take() {
            tx.send(cx.waker().clone()).unwrap();
        }
        Poll::Pending
    }
}

#[test]
fn job_woken_by_oneshot_from_std_thread() {
    for_each_worker_count(&[1, 2, 3], |_, scheduler| {
        for _ in 0..3 {
            let total = scheduler.run_frame(async |frame| {
                let handles: Vec<_> = (0..8u64)
                    .map(|i| {
                        frame.spawn(async move {
                            let (tx, rx) = oneshot::channel();
                            let t = thread::spawn(move || {
                                thread::sleep(Duration::from_millis(1 + i % 3));
                                tx.send(i * 10).unwrap();
                            });
                            let v = rx.await.unwrap();
                            t.join().unwrap();
                            v
                        })
                    })
                    .collect();
                let mut total = 0;
                for h in handles {
                    total += h.await;
                }
                total
            });
            assert_eq!(total, 280);
        }
    });
}

#[test]
fn root_woken_by_oneshot_from_std_thread() {
    // With one worker the driving thread has nothing else to do: it must park and be woken.
    for_each_worker_count(&[1, 2], |_, scheduler| {
        for i in 0..5u32 {
            let (tx, rx) = oneshot::channel();
            let t = thread::spawn(move || {
                thread::sleep(Duration::from_millis(3));
                tx.send(i).unwrap();
            });
            let got = scheduler.run_frame(async |_frame| rx.await.unwrap());
            t.join().unwrap();
            assert_eq!(got, i);
        }
    });
}

#[test]
fn job_woken_by_waker_sent_to_std_thread_is_polled_exactly_twice() {
    for_each_worker_count(&[1, 2, 4], |workers, scheduler| {
        let polls: Vec<AtomicUsize> = (0..6).map(|_| AtomicUsize::new(0)).collect();
        let ready: Vec<AtomicBool> = (0..6).map(|_| AtomicBool::new(false)).collect();
        thread::scope(|ts| {
            let mut senders = Vec::new();
            for (i, ready) in ready.iter().enumerate() {
                let (tx, rx) = mpsc::channel::<Waker>();
                senders.push(tx);
                ts.spawn(move || {
                    let waker = rx.recv().unwrap();
                    thread::sleep(Duration::from_millis(1 + i as u64 % 3));
                    ready.store(true, SeqCst);
                    waker.wake();
                });
            }
            scheduler.run_frame(async |frame| {
                let handles: Vec<_> = senders
                    .into_iter()
                    .zip(&polls)
                    .zip(&ready)
                    .map(|((tx, polls), ready)| {
                        frame.spawn(HandOff {
                            polls,
                            ready,
                            to_thread: Some(tx),
                        })
                    })
                    .collect();
                for h in handles {
                    h.await;
                }
            });
        });
        for p in &polls {
            assert_eq!(p.load(SeqCst), 2, "workers {workers}");
        }
    });
}

#[test]
fn waker_of_a_finished_job_does_not_poll_it_again() {
    for_each_worker_count(&[1, 2], |_, scheduler| {
        let polls = AtomicUsize::new(0);
        let slot = Mutex::new(None);
        let release = AtomicBool::new(false);
        scheduler.run_frame(async |frame| {
            let h = frame.spawn(Parked {
                polls: &polls,
                slot: &slot,
                release: &release,
            });
            while polls.load(SeqCst) == 0 {
                yield_now().await;
            }
            let waker = slot.lock().unwrap().take().unwrap();
            release.store(true, SeqCst);
            waker.wake_by_ref();
            h.await;
            assert_eq!(polls.load(SeqCst), 2);
            for _ in 0..10 {
                waker.wake_by_ref();
                waker.clone().wake();
                yield_now().await;
            }
            assert_eq!(polls.load(SeqCst), 2);
        });
        assert_eq!(polls.load(SeqCst), 2);
    });
}

/// Runs a frame with one `Parked` job; wakes `stale` (a waker from an earlier frame) while the
/// job waits, and checks that it did not reach the job. Returns a clone of the job's waker.
fn frame_with_parked_job(scheduler: &mut Scheduler, stale: Option<&Waker>) -> Waker {
    let polls = AtomicUsize::new(0);
    let slot = Mutex::new(None);
    let release = AtomicBool::new(false);
    let kept = scheduler.run_frame(async |frame| {
        let h = frame.spawn(Parked {
            polls: &polls,
            slot: &slot,
            release: &release,
        });
        while polls.load(SeqCst) == 0 {
            yield_now().await;
        }
        if let Some(stale) = stale {
            for _ in 0..10 {
                stale.wake_by_ref();
                stale.clone().wake();
            }
        }
        for _ in 0..10 {
            yield_now().await;
        }
        assert_eq!(
            polls.load(SeqCst),
            1,
            "a stale waker reached this frame's job"
        );
        let waker = slot.lock().unwrap().take().unwrap();
        let kept = waker.clone();
        release.store(true, SeqCst);
        waker.wake();
        h.await;
        kept
    });
    assert_eq!(polls.load(SeqCst), 2);
    kept
}

#[test]
fn waker_kept_past_frame_end_is_noop_and_never_reaches_next_frames_job() {
    for_each_worker_count(&[1, 2], |_, scheduler| {
        let mut stale = frame_with_parked_job(scheduler, None);
        for _ in 0..20 {
            // Between frames: the cell is orphaned, so waking touches nothing.
            let ((), ops) = heap_ops(|| {
                stale.wake_by_ref();
                stale.clone().wake();
            });
            assert_eq!(ops, NOTHING);
            let next = frame_with_parked_job(scheduler, Some(&stale));
            // The only waker of its cell: dropping it recycles the cell.
            assert_eq!(heap_ops(|| drop(stale)).1, NOTHING);
            stale = next;
        }
    });
}

/// Runs a frame in which a job (`spawn`), a local job (`spawn_local`) and the root future each
/// wait in a [`Parked`], while another thread wakes every waker of `stale` (wakers of earlier
/// frames, whose jobs' memory this frame reuses) both by reference and through a clone, waits,
/// and only then releases the three. Checks that each had been polled exactly once before the
/// release (a stale wake that reached one of them would have polled it early), and exactly
/// twice in all.
fn frame_with_three_parked(scheduler: &mut Scheduler, stale: &[&Waker], what: &str) {
    let polls: [AtomicUsize; 3] = Default::default();
    let slots: [Mutex<Option<Waker>>; 3] = Default::default();
    let release = AtomicBool::new(false);
    let parked = |i: usize| Parked {
        polls: &polls[i],
        slot: &slots[i],
        release: &release,
    };
    let before_release = thread::scope(|ts| {
        let waker_thread = ts.spawn(|| {
            let deadline = Instant::now() + Duration::from_secs(30);
            while polls.iter().any(|p| p.load(SeqCst) == 0) && Instant::now() < deadline {
                thread::sleep(Duration::from_millis(1));
            }
            for &w in stale {
                w.wake_by_ref();
                w.clone().wake();
            }
            // Time for a wrongly woken job to be polled.
            thread::sleep(Duration::from_millis(20));
            let seen = polls.each_ref().map(|p| p.load(SeqCst));
            release.store(true, SeqCst);
            for slot in &slots {
                if let Some(w) = slot.lock().unwrap().take() {
                    w.wake();
                }
            }
            seen
        });
        scheduler.run_frame(async |frame| {
            let job = frame.spawn(parked(0));
            let local = frame.spawn_local(parked(1));
            parked(2).await;
            job.await;
            local.await;
        });
        waker_thread.join().unwrap()
    });
    assert_eq!(
        before_release,
        [1, 1, 1],
        "{what}: a stale waker reached this frame's job, local job or root"
    );
    assert_eq!(polls.map(AtomicUsize::into_inner), [2, 2, 2], "{what}");
    assert_eq!(scheduler.last_frame_stats().jobs, 2, "{what}");
}

#[test]
fn waker_kept_past_scheduler_drop_is_noop() {
    for workers in [1, 2, 4] {
        let job_slot = Mutex::new(None);
        let root_slot = Mutex::new(None);
        let local_slot = Mutex::new(None);
        let mut scheduler = scheduler(workers);
        scheduler.run_frame(async |frame| {
            frame.spawn(Stash(&job_slot)).await;
            frame.spawn_local(Stash(&local_slot)).await;
            Stash(&root_slot).await;
        });
        let job = job_slot.lock().unwrap().take().unwrap();
        let root = root_slot.lock().unwrap().take().unwrap();
        let local = local_slot.lock().unwrap().take().unwrap();
        // After the frame, before the scheduler goes: the cells are orphaned, and each waker
        // still has a twin in `clones`, so nothing is freed.
        let (clones, ops) = heap_ops(|| {
            job.wake_by_ref();
            root.wake_by_ref();
            local.wake_by_ref();
            (job.clone(), root.clone(), local.clone())
        });
        assert_eq!(ops, NOTHING);
        // The next frame's job, local job and root (in the same memory) see none of their wakes.
        frame_with_three_parked(
            &mut scheduler,
            &[&job, &root, &local],
            &format!("workers {workers}"),
        );
        drop(scheduler);
        // After the scheduler is gone: wake, clone and drop, here and on another thread. The
        // cells belong to their wakers alone: waking does nothing, and the last waker of each
        // cell frees it.
        let ((), ops) = heap_ops(|| {
            job.wake_by_ref();
            root.wake_by_ref();
            local.wake_by_ref();
        });
        assert_eq!(ops, NOTHING);
        let t = thread::spawn(move || {
            let (job, root, local) = clones;
            heap_ops(|| {
                job.wake_by_ref();
                job.clone().wake();
                root.clone().wake();
                local.wake();
                drop(root);
                drop(job);
            })
            .1
        });
        // This thread still holds a waker of every cell.
        assert_eq!(t.join().unwrap(), NOTHING);
        assert!(gave_up_its_cell(heap_ops(|| job.wake()).1));
        let (root2, ops) = heap_ops(|| root.clone());
        assert_eq!(ops, NOTHING);
        assert_eq!(heap_ops(|| drop(root)).1, NOTHING);
        assert!(gave_up_its_cell(heap_ops(|| root2.wake()).1));
        assert!(gave_up_its_cell(heap_ops(|| drop(local)).1));
    }
}

/// On its first poll clones its waker on a scoped (non-worker) thread, keeps the clone in
/// `slot`, wakes itself through it and returns `Pending`; then completes.
struct CloneOnScopedThread<'a> {
    polls: &'a AtomicUsize,
    slot: &'a Mutex<Option<Waker>>,
}

impl Future for CloneOnScopedThread<'_> {
    type Output = ();

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        if self.polls.fetch_add(1, SeqCst) > 0 {
            return Poll::Ready(());
        }
        let waker = cx.waker();
        let clone = thread::scope(|s| s.spawn(|| waker.clone()).join().unwrap());
        clone.wake_by_ref();
        *self.slot.lock().unwrap() = Some(clone);
        Poll::Pending
    }
}

#[test]
fn waker_cloned_on_a_scoped_thread_during_poll_works_and_outlives_frame() {
    for workers in [1, 2] {
        let mut scheduler = scheduler(workers);
        let mut kept = Vec::new();
        for _ in 0..5 {
            let polls = AtomicUsize::new(0);
            let slot = Mutex::new(None);
            scheduler.run_frame(async |frame| {
                frame
                    .spawn(CloneOnScopedThread {
                        polls: &polls,
                        slot: &slot,
                    })
                    .await;
            });
            assert_eq!(polls.load(SeqCst), 2);
            let w = slot.into_inner().unwrap().unwrap();
            // The cell came from the pool of threads that are not workers; it was orphaned
            // with it at frame end.
            assert_eq!(heap_ops(|| w.wake_by_ref()).1, NOTHING);
            kept.push(w);
            // The next frame's jobs reuse the memory of this one's: no kept waker reaches them.
            let stale: Vec<&Waker> = kept.iter().collect();
            frame_with_three_parked(&mut scheduler, &stale, &format!("workers {workers}"));
        }
        drop(scheduler);
        for w in kept {
            assert_eq!(heap_ops(|| w.wake_by_ref()).1, NOTHING);
            // The only waker of its cell.
            assert!(gave_up_its_cell(heap_ops(|| w.wake()).1));
        }
    }
}

#[test]
fn wakes_from_foreign_threads_racing_frame_end_are_harmless() {
    for workers in [1, 2, 3] {
        let mut scheduler = scheduler(workers);
        let (tx, rx) = mpsc::channel::<Waker>();
        let wakers_seen = thread::spawn(move || {
            let mut kept: Vec<Waker> = Vec::new();
            let mut seen = 0;
            for w in rx {
                seen += 1;
                for _ in 0..50 {
                    w.wake_by_ref();
                }
                w.clone().wake();
                kept.push(w);
                if kept.len() > 8 {
                    kept.remove(0).wake();
                }
            }
            // The scheduler may be gone by now.
            for w in kept {
                w.wake_by_ref();
                w.wake();
            }
            seen
        });
        for _ in 0..50 {
            let out = scheduler.run_frame(async |frame| {
                let handles: Vec<_> = (0..4u32)
                    .map(|i| {
                        let tx = tx.clone();
                        frame.spawn(async move {
                            let slot = Mutex::new(None);
                            Stash(&slot).await;
                            tx.send(slot.into_inner().unwrap().unwrap()).unwrap();
                            for _ in 0..i {
                                yield_now().await;
                            }
                            i
                        })
                    })
                    .collect();
                let mut sum = 0;
                for h in handles {
                    sum += h.await;
                }
                sum
            });
            assert_eq!(out, 6);
            assert_eq!(scheduler.last_frame_stats().jobs, 4);
        }
        drop(scheduler);
        drop(tx);
        assert_eq!(wakers_seen.join().unwrap(), 200);
    }
}

#[test]
fn jobs_of_two_schedulers_wake_each_other() {
    let mut a = scheduler(2);
    let mut b = scheduler(2);
    for _ in 0..5 {
        let (mut to_b, mut from_a) = futures::channel::mpsc::channel::<u64>(1);
        let (mut to_a, mut from_b) = futures::channel::mpsc::channel::<u64>(1);
        thread::scope(|ts| {
            ts.spawn(|| {
                b.run_frame(async |frame| {
                    frame
                        .spawn(async move {
                            while let Some(v) = from_a.next().await {
                                to_a.send(v * 2).await.unwrap();
                            }
                        })
                        .await;
                });
            });
            let sum = a.run_frame(async |frame| {
                frame
                    .spawn(async move {
                        let mut sum = 0;
                        for i in 0..100u64 {
                            to_b.send(i).await.unwrap();
                            sum += from_b.next().await.unwrap();
                        }
                        sum
                    })
                    .await
            });
            assert_eq!(sum, 99 * 100);
        });
    }
}
