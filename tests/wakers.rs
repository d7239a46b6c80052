//! Wakers: woken from plain threads, from another scheduler, after their job finished, after
//! their frame ended and after their scheduler was dropped (the last three must do nothing).
// `waker.clone().wake()` exercises the clone and the consuming wake on purpose.
#![allow(clippy::waker_clone_wake)]

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering::SeqCst};
use std::sync::{Mutex, mpsc};
use std::task::{Context, Poll, Waker};
use std::thread;
use std::time::Duration;

use frame_scheduler::{Scheduler, yield_now};
use futures::channel::oneshot;
use futures::{SinkExt, StreamExt};

mod common;

use common::scheduler;

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
    for workers in [1, 2, 3] {
        let mut scheduler = scheduler(workers);
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
    }
}

#[test]
fn root_woken_by_oneshot_from_std_thread() {
    // With one worker the driving thread has nothing else to do: it must park and be woken.
    for workers in [1, 2] {
        let mut scheduler = scheduler(workers);
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
    }
}

#[test]
fn job_woken_by_waker_sent_to_std_thread_is_polled_exactly_twice() {
    for workers in [1, 2, 4] {
        let mut scheduler = scheduler(workers);
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
    }
}

#[test]
fn waker_of_a_finished_job_does_not_poll_it_again() {
    for workers in [1, 2] {
        let mut scheduler = scheduler(workers);
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
    }
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
    for workers in [1, 2] {
        let mut scheduler = scheduler(workers);
        let mut stale = frame_with_parked_job(&mut scheduler, None);
        for _ in 0..20 {
            // Between frames.
            stale.wake_by_ref();
            stale.clone().wake();
            let next = frame_with_parked_job(&mut scheduler, Some(&stale));
            drop(stale);
            stale = next;
        }
    }
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
        // After the frame, before the scheduler goes.
        job.wake_by_ref();
        root.wake_by_ref();
        local.wake_by_ref();
        let clones = (job.clone(), root.clone(), local.clone());
        // The next frame sees none of those wakes.
        let polls = AtomicUsize::new(0);
        let slot = Mutex::new(None);
        let release = AtomicBool::new(true);
        scheduler.run_frame(async |frame| {
            frame
                .spawn(Parked {
                    polls: &polls,
                    slot: &slot,
                    release: &release,
                })
                .await;
        });
        assert_eq!(polls.load(SeqCst), 1);
        assert_eq!(scheduler.last_frame_stats().jobs, 1);
        drop(scheduler);
        // After the scheduler is gone: wake, clone and drop, here and on another thread.
        job.wake_by_ref();
        root.wake_by_ref();
        local.wake_by_ref();
        let t = thread::spawn(move || {
            let (job, root, local) = clones;
            job.wake_by_ref();
            job.clone().wake();
            root.clone().wake();
            local.wake();
            drop(root);
            drop(job);
        });
        t.join().unwrap();
        job.wake();
        let root2 = root.clone();
        drop(root);
        root2.wake();
        drop(local);
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
            w.wake_by_ref();
            kept.push(w);
        }
        drop(scheduler);
        for w in kept {
            w.wake_by_ref();
            w.wake();
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
