//! Wakers kept past their job, their frame or their scheduler, and woken, cloned and dropped
//! from other threads and from frame-end destructors while frames end, arenas are replaced and
//! wake cells are recycled: they touch no freed memory and never reach a job of a later frame.
//! Most of these guard memory safety and mean most under valgrind (CI runs every test binary
//! under it); tests/wakers.rs checks what one late waker does, exactly.

mod common;

use std::future::{Future, poll_fn};
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use common::{for_each_worker_count, small_blocks, within};
use frame_scheduler::{Scheduler, yield_now};

/// Wakers cloned on a non-worker thread (their cells come from the foreign pool) and woken in
/// a tight loop while frames end and their multi-chunk arenas are replaced. Run under valgrind
/// in CI, which reports any read of a freed arena.
#[test]
fn foreign_waker_woken_while_arenas_are_replaced() {
    static SLOT: Mutex<Option<Waker>> = Mutex::new(None);
    static STOP: AtomicBool = AtomicBool::new(false);
    within(60, || {
        let waker_thread = std::thread::spawn(|| {
            while !STOP.load(Ordering::Relaxed) {
                if let Some(w) = SLOT.lock().unwrap().as_ref() {
                    w.wake_by_ref();
                }
                std::thread::yield_now();
            }
        });
        let mut scheduler = Scheduler::builder()
            .workers(2)
            .arena_capacity(1024)
            .build()
            .unwrap();
        for frame_no in 0..60 {
            scheduler.run_frame(async |frame| {
                for _ in 0..(8 + frame_no % 24) {
                    let pad = [1u8; 512];
                    frame.spawn(async move {
                        std::hint::black_box(pad);
                    });
                }
                frame.spawn(poll_fn(|cx| {
                    let w: &Waker = cx.waker();
                    std::thread::scope(|s| {
                        s.spawn(|| *SLOT.lock().unwrap() = Some(w.clone()));
                    });
                    Poll::Ready(())
                }));
            });
        }
        drop(scheduler);
        STOP.store(true, Ordering::Relaxed);
        waker_thread.join().unwrap();
        *SLOT.lock().unwrap() = None;
    });
}

/// Wakers cloned in jobs and kept by a thread that outlives every frame and the scheduler,
/// woken, cloned and dropped concurrently with frame end and with the scheduler's drop.
#[test]
fn late_wakers_from_a_thread_outliving_frames_and_the_scheduler() {
    within(60, || {
        let bag: Arc<Mutex<Vec<Waker>>> = Arc::new(Mutex::new(Vec::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let waker_thread = {
            let (bag, stop) = (Arc::clone(&bag), Arc::clone(&stop));
            std::thread::spawn(move || {
                let mut n = 0u64;
                while !stop.load(Ordering::Relaxed) {
                    let taken: Vec<Waker> = std::mem::take(&mut *bag.lock().unwrap());
                    for w in taken {
                        w.wake_by_ref();
                        let c = w.clone();
                        n += 1;
                        if n % 3 == 0 {
                            c.wake();
                        } else {
                            bag.lock().unwrap().push(c);
                        }
                        if n % 2 == 0 {
                            w.wake();
                        }
                    }
                    std::thread::yield_now();
                }
            })
        };
        for_each_worker_count(&[1, 2, 3], |_, scheduler| {
            for f in 0..150 {
                let bag = &bag;
                scheduler.run_frame(async |frame| {
                    let c = frame.counter();
                    for i in 0..8 {
                        frame.spawn_counted(c, async move {
                            // Hand our waker to the other thread, then wait to be woken once
                            // (by it, or by ourselves if it is slow).
                            let mut polled = false;
                            poll_fn(|cx| {
                                if polled {
                                    return Poll::Ready(());
                                }
                                polled = true;
                                bag.lock().unwrap().push(cx.waker().clone());
                                if (i + f) % 2 == 0 {
                                    cx.waker().wake_by_ref();
                                } else {
                                    bag.lock().unwrap().push(cx.waker().clone());
                                    // An owned waker, woken by value.
                                    let owned = cx.waker().clone();
                                    owned.wake();
                                }
                                Poll::Pending
                            })
                            .await;
                        });
                    }
                    // The root's waker too.
                    let mut polled = false;
                    poll_fn(|cx| {
                        if polled {
                            return Poll::Ready(());
                        }
                        polled = true;
                        bag.lock().unwrap().push(cx.waker().clone());
                        cx.waker().wake_by_ref();
                        Poll::Pending
                    })
                    .await;
                    c.await;
                });
            }
        });
        std::thread::sleep(Duration::from_millis(50));
        stop.store(true, Ordering::Relaxed);
        waker_thread.join().unwrap();
        bag.lock().unwrap().clear();
    });
}

/// Pending once (keeping its waker in `slot`), Ready when polled again after `go` is set.
struct Once<'a> {
    polls: &'a AtomicUsize,
    slot: &'a Mutex<Vec<Waker>>,
    go: &'a AtomicBool,
}

impl Future for Once<'_> {
    type Output = ();
    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        self.polls.fetch_add(1, Ordering::SeqCst);
        if self.go.load(Ordering::SeqCst) {
            return Poll::Ready(());
        }
        // Woken once, later, from the root.
        self.slot.lock().unwrap().push(cx.waker().clone());
        Poll::Pending
    }
}

/// Wakers kept past their frame and past their scheduler: woken, cloned and dropped while later
/// frames (of another scheduler too) recycle cells; a stale wake never reaches a job of a later
/// frame (each job of the later frames is polled exactly twice).
#[test]
fn stale_wakers_never_wake_later_jobs_and_cells_recycle_safely() {
    within(60, || {
        let stale: Mutex<Vec<Waker>> = Mutex::new(Vec::new());
        let stop = AtomicBool::new(false);
        std::thread::scope(|sc| {
            // Hammers the stale wakers: wake, clone, drop, all the time.
            sc.spawn(|| {
                while !stop.load(Ordering::SeqCst) {
                    let ws: Vec<Waker> = stale.lock().unwrap().drain(..).collect();
                    for w in &ws {
                        w.wake_by_ref();
                        let c = w.clone();
                        c.wake();
                    }
                    drop(ws);
                    std::thread::yield_now();
                }
            });
            for_each_worker_count(&[1, 2, 3], |_, s| {
                for _ in 0..20 {
                    let polls = AtomicUsize::new(0);
                    let slot = Mutex::new(Vec::new());
                    let go = AtomicBool::new(false);
                    let (p, sl, g) = (&polls, &slot, &go);
                    s.run_frame(async |frame| {
                        let c = frame.counter();
                        for _ in 0..16 {
                            frame.spawn_counted(
                                c,
                                Once {
                                    polls: p,
                                    slot: sl,
                                    go: g,
                                },
                            );
                        }
                        // Wait until every job is pending, then release them.
                        while sl.lock().unwrap().len() < 16 {
                            yield_now().await;
                        }
                        g.store(true, Ordering::SeqCst);
                        let ws: Vec<Waker> = sl.lock().unwrap().drain(..).collect();
                        let mut kept = Vec::new();
                        for (k, w) in ws.into_iter().enumerate() {
                            if k % 3 == 0 {
                                w.wake_by_ref();
                                kept.push(w);
                            } else {
                                w.wake();
                            }
                        }
                        c.await;
                        // Keep a clone of some wakers past the frame (and the scheduler).
                        stale.lock().unwrap().extend(kept);
                    });
                    assert_eq!(
                        polls.load(Ordering::SeqCst),
                        32,
                        "a job was polled by a stale wake"
                    );
                }
            });
            stop.store(true, Ordering::SeqCst);
        });
    });
}

struct WakeOnDrop(Option<Waker>, &'static AtomicUsize);

impl Drop for WakeOnDrop {
    fn drop(&mut self) {
        if let Some(w) = self.0.take() {
            let c = w.clone();
            w.wake_by_ref();
            c.wake();
            w.wake();
            self.1.fetch_add(1, Ordering::SeqCst);
        }
    }
}

/// Values dropped at frame end that hold wakers of the frame's jobs and of its root, and wake and
/// clone them in their destructors.
#[test]
fn frame_end_values_holding_wakers_wake_them_harmlessly() {
    static N: AtomicUsize = AtomicUsize::new(0);
    N.store(0, Ordering::SeqCst);
    let mut s = small_blocks(3);
    for _ in 0..5 {
        s.run_frame(async |frame| {
            // The root's own waker.
            let root_waker = std::future::poll_fn(|cx| Poll::Ready(cx.waker().clone())).await;
            frame.alloc(WakeOnDrop(Some(root_waker), &N));
            let c = frame.counter();
            for _ in 0..8 {
                frame.spawn_counted(c, async move {
                    let w = std::future::poll_fn(|cx| Poll::Ready(cx.waker().clone())).await;
                    frame.alloc(WakeOnDrop(Some(w), &N));
                    yield_now().await;
                });
            }
            c.await;
        });
    }
    assert_eq!(N.load(Ordering::SeqCst), 5 * 9);
}
