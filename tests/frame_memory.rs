//! Frame memory: values, slices, strings and `FrameVec`s allocated by jobs, dropped exactly
//! once; arena blocks borrowed where work lands, returned at frame end, and trimmed after a
//! spike; large futures in workers with a bigger stack. The arenas' edges are attacked too:
//! over-aligned and large jobs in tiny blocks trimmed after every frame, fill closures that
//! re-enter the frame, zero-sized types and capacity overflow; valgrind in CI turns a silent
//! memory error there into a failure.

mod common;

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::atomic::{AtomicUsize, Ordering};

use common::{Tracked, for_each_worker_count, payload_str, scheduler, small_blocks, within};
use frame_scheduler::{Frame, FrameVec, Scheduler, yield_now};

#[test]
fn every_frame_value_is_dropped_exactly_once_at_frame_end() {
    for_each_worker_count(&[1, 2, 3], |_, s| {
        let drops = AtomicUsize::new(0);
        let d = &drops;
        for frame_no in 0..3 {
            let seen_in_frame = s.run_frame(async |frame| {
                let c = frame.counter();
                for i in 0..50u64 {
                    frame.spawn_counted(c, async move {
                        let one = frame.alloc(Tracked(d, i));
                        one.1 += 1;
                        let many = frame.alloc_slice_fill_with(3, |k| Tracked(d, k as u64));
                        assert_eq!(many[2].1, 2);
                        let mut v = frame.vec();
                        v.push(Tracked(d, i));
                        v.push(Tracked(d, i + 1));
                        let kept = v.into_slice();
                        assert_eq!(kept.len(), 2);
                    });
                }
                c.await;
                // Nothing allocated with the frame API is dropped before frame end.
                d.load(Ordering::SeqCst)
            });
            assert_eq!(seen_in_frame, frame_no * 300, "dropped during the frame");
            assert_eq!(drops.load(Ordering::SeqCst), (frame_no + 1) * 300);
        }
    });
}

#[test]
fn frame_vec_drops_its_elements_when_dropped_and_only_then() {
    let mut s = scheduler(2);
    let drops = AtomicUsize::new(0);
    let d = &drops;
    s.run_frame(async |frame| {
        let mut v = frame.vec_with_capacity(2);
        for i in 0..10 {
            v.push(Tracked(d, i));
        }
        assert!(v.capacity() >= 10);
        let last = v.pop().unwrap();
        assert_eq!(last.1, 9);
        drop(last);
        assert_eq!(d.load(Ordering::SeqCst), 1);
        let mut it = v.into_iter();
        assert_eq!(it.next().unwrap().1, 0);
        assert_eq!(d.load(Ordering::SeqCst), 2);
        drop(it); // drops the 8 it did not yield
        assert_eq!(d.load(Ordering::SeqCst), 10);
        let mut w = frame.vec();
        w.extend((0..5).map(|i| Tracked(d, i)));
        w.clear();
        assert_eq!(d.load(Ordering::SeqCst), 15);
        assert!(w.is_empty());
    });
    assert_eq!(drops.load(Ordering::SeqCst), 15);
}

#[test]
fn a_panicking_drop_at_frame_end_is_resumed_and_the_others_still_drop() {
    struct Bomb<'a>(&'a AtomicUsize);
    impl Drop for Bomb<'_> {
        fn drop(&mut self) {
            self.0.fetch_add(1, Ordering::SeqCst);
            panic!("bomb dropped");
        }
    }
    let mut s = scheduler(2);
    let drops = AtomicUsize::new(0);
    let d = &drops;
    let r = catch_unwind(AssertUnwindSafe(|| {
        s.run_frame(async |frame| {
            frame.alloc(Tracked(d, 0));
            frame.alloc(Bomb(d));
            frame.alloc(Tracked(d, 1));
        })
    }));
    let p = r.expect_err("the drop's panic must come out of run_frame");
    assert_eq!(payload_str(&*p), "bomb dropped");
    assert_eq!(drops.load(Ordering::SeqCst), 3);
    assert_eq!(s.last_frame_stats().panics, 1);
    // The scheduler stays usable.
    assert_eq!(s.run_frame(async |frame| *frame.alloc(5)), 5);
}

#[test]
fn frame_values_are_dropped_when_a_job_panics_too() {
    let mut s = scheduler(2);
    let drops = AtomicUsize::new(0);
    let d = &drops;
    let r = catch_unwind(AssertUnwindSafe(|| {
        s.run_frame(async |frame| {
            frame.alloc_slice_fill_with(4, |i| Tracked(d, i as u64));
            frame
                .spawn(async move {
                    frame.alloc(Tracked(d, 9));
                    panic!("job failed");
                })
                .await;
        })
    }));
    assert!(r.is_err());
    assert_eq!(drops.load(Ordering::SeqCst), 5);
}

#[test]
fn alloc_slice_fill_with_drops_what_it_made_when_the_closure_panics() {
    let mut s = scheduler(1);
    let drops = AtomicUsize::new(0);
    let d = &drops;
    let r = catch_unwind(AssertUnwindSafe(|| {
        s.run_frame(async |frame| {
            frame.alloc_slice_fill_with(10, |i| {
                assert!(i < 4, "fill failed at {i}");
                Tracked(d, i as u64)
            });
        })
    }));
    assert_eq!(payload_str(&*r.unwrap_err()), "fill failed at 4");
    assert_eq!(drops.load(Ordering::SeqCst), 4);
}

#[test]
fn a_frame_vec_grows_on_whichever_worker_pushes() {
    within(60, || {
        let mut s = scheduler(4);
        for _ in 0..20 {
            let total = s.run_frame(async |frame| {
                // One vector handed from job to job, each pushing from whatever worker runs it.
                let mut v: FrameVec<'_, '_, u64> = frame.vec();
                for step in 0..8u64 {
                    v = frame
                        .spawn(async move {
                            for i in 0..1000 {
                                v.push(step * 1000 + i);
                            }
                            v
                        })
                        .await;
                }
                assert_eq!(v.len(), 8000);
                assert!(v.iter().copied().eq(0..8000));
                v.iter().sum::<u64>()
            });
            assert_eq!(total, (0..8000).sum::<u64>());
        }
    });
}

#[test]
fn jobs_return_frame_slices_through_their_handles() {
    let mut s = scheduler(3);
    let bodies: Vec<u32> = (0..1000).collect();
    let b = &bodies;
    let (n, text) = s.run_frame(async |frame| {
        let lists: Vec<_> = (0..4)
            .map(|part| {
                frame.spawn(async move {
                    let mut contacts = frame.vec();
                    for x in &b[part * 250..(part + 1) * 250] {
                        if x % 10 == part as u32 {
                            contacts.push(*x);
                        }
                    }
                    contacts.into_slice()
                })
            })
            .collect();
        let mut n = 0;
        for l in lists {
            let l: &mut [u32] = l.await;
            n += l.len();
        }
        let label = frame.alloc_str("contacts");
        (n, label.to_string())
    });
    assert_eq!(n, 100);
    assert_eq!(text, "contacts");
}

#[test]
fn threads_that_are_not_workers_allocate_in_the_foreign_arena() {
    within(60, || {
        let mut s = scheduler(2);
        let drops = AtomicUsize::new(0);
        let d = &drops;
        let got = s.run_frame(async |frame| {
            frame
                .spawn(async move {
                    std::thread::scope(|sc| {
                        sc.spawn(|| {
                            let mut v = frame.vec();
                            v.extend_from_slice(&[1u64, 2, 3]);
                            let s = frame.alloc_slice_copy(&v);
                            frame.alloc(Tracked(d, 0));
                            frame.alloc_slice_fill_with(2, |i| Tracked(d, i as u64));
                            s.iter().sum::<u64>() + frame.alloc_str("ab").len() as u64
                        })
                        .join()
                        .unwrap()
                    })
                })
                .await
        });
        assert_eq!(got, 8);
        assert_eq!(drops.load(Ordering::SeqCst), 3);
    });
}

async fn spike_workload<'f, 'e>(frame: &'f Frame<'f, 'e>, jobs: usize) {
    let c = frame.counter();
    for i in 0..jobs {
        frame.spawn_counted(c, async move {
            let mut v = frame.vec_with_capacity(32);
            v.extend(0..32u64);
            std::hint::black_box(v.len() + i);
        });
    }
    c.await;
}

#[test]
fn a_spike_is_returned_after_arena_trim_after_frames_and_kept_memory_follows_use() {
    within(120, || {
        let block = 64 * 1024;
        let mut s = Scheduler::builder()
            .workers(2)
            .arena_block_size(block)
            .arena_capacity(block)
            .arena_trim_after(10)
            .build()
            .unwrap();
        let steady = |s: &mut Scheduler| s.run_frame(async |f| spike_workload(f, 200).await);
        for _ in 0..20 {
            steady(&mut s);
        }
        let steady_stats = s.last_frame_stats().clone();
        let bound = |used: usize| used + used / 2 + 2 * block + 2 * 4096;
        assert!(steady_stats.arena_capacity <= bound(steady_stats.arena_bytes));
        s.run_frame(async |f| spike_workload(f, 50_000).await);
        let spike = s.last_frame_stats().clone();
        assert!(spike.arena_bytes > 100 * steady_stats.arena_bytes / 2);
        assert!(spike.arena_blocks_borrowed > 0);
        assert_eq!(spike.arena_trimmed, 0);
        // Kept for arena_trim_after frames (the spike is within the window)...
        let mut trimmed_at = None;
        for i in 1..=15 {
            steady(&mut s);
            let st = s.last_frame_stats();
            if st.arena_trimmed > 0 {
                assert!(
                    trimmed_at.is_none(),
                    "trimmed twice: frames {trimmed_at:?} and {i}"
                );
                trimmed_at = Some(i);
            }
        }
        // ...returned the frame it leaves the window: 10 frames of history, the spike's own
        // included, so at the 10th frame after it.
        assert_eq!(trimmed_at, Some(10));
        let after = s.last_frame_stats();
        assert!(
            after.arena_capacity <= bound(after.arena_bytes),
            "kept {} for a use of {}",
            after.arena_capacity,
            after.arena_bytes
        );
    });
}

#[test]
fn arena_settings_out_of_range_are_errors_naming_them() {
    for (b, name) in [
        (
            Scheduler::builder().arena_block_size(100),
            "arena_block_size",
        ),
        (
            Scheduler::builder().arena_block_size(1 << 40),
            "arena_block_size",
        ),
        (Scheduler::builder().arena_trim_after(0), "arena_trim_after"),
        (Scheduler::builder().stack_size(10), "stack_size"),
    ] {
        let e = b.workers(1).build().unwrap_err();
        assert!(e.to_string().contains(name), "{e}");
    }
}

#[test]
fn a_job_bigger_than_a_block_gets_a_chunk_of_its_own() {
    let mut s = Scheduler::builder()
        .workers(1)
        .arena_block_size(16 * 1024)
        .arena_capacity(16 * 1024)
        .build()
        .unwrap();
    let n = s.run_frame(async |frame| {
        let big = [3u8; 40 * 1024];
        let h = frame.spawn(async move { big.iter().map(|&b| b as usize).sum::<usize>() });
        let slice = frame.alloc_slice_copy(&[1u64; 8 * 1024]);
        h.await + slice.len()
    });
    assert_eq!(n, 3 * 40 * 1024 + 8 * 1024);
    assert_eq!(s.last_frame_stats().arena_large, 2);
}

#[test]
fn over_aligned_values_are_aligned() {
    #[repr(align(4096))]
    struct Page([u8; 8192]);
    let mut s = scheduler(2);
    s.run_frame(async |frame| {
        for _ in 0..3 {
            let p = frame.alloc(Page([1; 8192]));
            assert_eq!(p as *mut Page as usize % 4096, 0);
            let page = Page([2; 8192]);
            let sum = frame
                .spawn(async move {
                    let at = &page as *const Page as usize;
                    frame_scheduler::yield_now().await;
                    (at % 4096, page.0[100])
                })
                .await;
            assert_eq!(sum, (0, 2));
        }
    });
}

/// A job whose future is aligned to a page takes its future's size and its header plus less
/// than a page, wherever the arena's bump pointer happened to be.
#[test]
#[cfg_attr(
    feature = "tracing",
    ignore = "with the `tracing` feature the job's span sits beside its future, which an \
              over-aligned future rounds up to one more alignment"
)]
fn an_over_aligned_job_wastes_less_than_its_alignment() {
    #[repr(align(4096))]
    struct Page([u8; 8192]);
    async fn job(page: Page) -> u8 {
        assert_eq!(&page as *const Page as usize % 4096, 0);
        page.0[17]
    }
    let size = std::mem::size_of_val(&job(Page([0; 8192])));
    let mut s = scheduler(1);
    for offset in [0usize, 1, 100, 1000, 4000] {
        let got = s.run_frame(async |frame| {
            frame.alloc_slice_copy(&vec![0u8; offset]);
            frame.alloc(0u8);
            frame.spawn(job(Page([9; 8192]))).await
        });
        assert_eq!(got, 9);
        let used = s.last_frame_stats().arena_bytes;
        // The frame's other allocations: `offset` bytes and one byte.
        let job_bytes = used - offset - 1;
        assert!(
            job_bytes - size - frame_scheduler::JOB_HEADER_BYTES < 4096,
            "a {size}-byte future aligned to 4096 took {job_bytes} bytes (offset {offset})"
        );
    }
}

/// A 2 MiB future (built from a 2 MiB array) spawned from a job: with the default 2 MiB
/// worker stack this overflows; `stack_size` gives the workers room for it.
#[test]
fn a_two_mib_future_spawned_from_a_job_runs_with_a_bigger_worker_stack() {
    fn big_future(seed: u8) -> impl Future<Output = u64> + Send {
        let buf = [seed; 2 << 20];
        async move {
            frame_scheduler::yield_now().await;
            let mut buf = buf;
            buf[12345] = 7;
            std::hint::black_box(&mut buf);
            buf.iter().map(|&b| u64::from(b)).sum()
        }
    }
    // The driving thread runs jobs too: give it the same room.
    let t = std::thread::Builder::new()
        .stack_size(8 << 20)
        .spawn(|| {
            let mut s = Scheduler::builder()
                .workers(2)
                .stack_size(8 << 20)
                .build()
                .unwrap();
            s.run_frame(async |frame| {
                let mut hs = Vec::new();
                for i in 0..4u8 {
                    hs.push(frame.spawn(async move { frame.spawn(big_future(i % 2)).await }));
                }
                let mut sum = 0;
                for h in hs {
                    sum += h.await;
                }
                (sum, 0)
            })
        })
        .unwrap();
    let (sum, _) = t.join().unwrap();
    // Seed 1: 2 MiB of ones, one of them made 7; seed 0: a single 7.
    assert_eq!(sum, 2 * ((2 << 20) - 1 + 7) + 2 * 7);
}

#[repr(align(128))]
#[derive(Clone, Copy)]
struct A128([u8; 200]);

#[repr(align(4096))]
#[derive(Clone, Copy)]
struct A4k([u8; 100]);

#[repr(align(65536))]
#[derive(Clone, Copy)]
struct A64k([u8; 10]);

async fn aligned_job<T: Copy + Send + 'static>(v: T, byte: fn(&T) -> u8) -> (usize, u8, T) {
    let local = v;
    yield_now().await;
    let at = &local as *const T as usize % std::mem::align_of::<T>();
    (at, byte(&local), local)
}

/// Over-aligned futures and outputs (128, 4096, 1 << 16) spawned from the root, from jobs and from
/// a thread that is not a worker, with 4 KiB blocks (so most of them are "large").
#[test]
fn over_aligned_futures_from_root_jobs_and_foreign_threads() {
    within(60, || {
        for workers in [1, 3] {
            let mut s = small_blocks(workers);
            for _ in 0..3 {
                let total = s.run_frame(async |frame| {
                    let mut hs = Vec::new();
                    for i in 0..6u8 {
                        hs.push(frame.spawn(async move {
                            let a = frame.spawn(aligned_job(A128([i; 200]), |a| a.0[199])).await;
                            let b = frame.spawn(aligned_job(A4k([i; 100]), |a| a.0[99])).await;
                            let c = frame.spawn(aligned_job(A64k([i; 10]), |a| a.0[9])).await;
                            assert_eq!((a.0, b.0, c.0), (0, 0, 0), "misaligned future");
                            assert_eq!((a.1, b.1, c.1), (i, i, i));
                            // The outputs are over-aligned too.
                            assert_eq!(&a.2 as *const A128 as usize % 128, 0);
                            assert_eq!(&b.2 as *const A4k as usize % 4096, 0);
                            assert_eq!(&c.2 as *const A64k as usize % 65536, 0);
                            assert_eq!((a.2.0[0], b.2.0[0], c.2.0[0]), (i, i, i));
                            a.1 as usize + b.1 as usize + c.1 as usize
                        }));
                    }
                    // From a thread that is not a worker: the foreign arena.
                    let foreign = std::thread::scope(|sc| {
                        sc.spawn(|| {
                            let h1 = frame.spawn(aligned_job(A64k([7; 10]), |a| a.0[3]));
                            let h2 = frame.spawn(aligned_job(A4k([8; 100]), |a| a.0[3]));
                            (h1, h2)
                        })
                        .join()
                        .unwrap()
                    });
                    let (f1, f2) = (foreign.0.await, foreign.1.await);
                    assert_eq!((f1.0, f2.0), (0, 0));
                    let mut sum = f1.1 as usize + f2.1 as usize;
                    for h in hs {
                        sum += h.await;
                    }
                    sum
                });
                assert_eq!(total, 15 + 3 * (0..6).sum::<usize>());
            }
        }
    });
}

/// Futures and outputs larger than a block (4 KiB blocks), and FrameVecs that outgrow blocks many
/// times over, spread over workers; trimmed after every frame (arena_trim_after(1)).
#[test]
fn large_futures_outputs_and_vecs_with_tiny_blocks_and_trim_after_one() {
    within(60, || {
        let mut s = small_blocks(3);
        for round in 0..6usize {
            let big = round % 2 == 0;
            let got = s.run_frame(async |frame| {
                let mut hs = Vec::new();
                for j in 0..4usize {
                    let payload = [j as u8; 20_000];
                    hs.push(frame.spawn(async move {
                        yield_now().await;
                        let mut v = frame.vec::<u64>();
                        let n = if big { 50_000 } else { 10 };
                        for k in 0..n {
                            v.push(k as u64);
                            if k % 5000 == 0 {
                                yield_now().await; // may resume on another worker
                            }
                        }
                        let out = [payload[19_999]; 9000];
                        (v.iter().sum::<u64>(), out)
                    }));
                }
                let mut sum = 0u64;
                for h in hs {
                    let (s, out) = h.await;
                    sum += s + out.iter().map(|&b| u64::from(b)).sum::<u64>();
                }
                sum
            });
            let n: u64 = if big { 50_000 } else { 10 };
            assert_eq!(got, 4 * (n * (n - 1) / 2) + 9000 * 6);
        }
    });
}

/// `alloc_slice_fill_with` with a closure that re-enters the frame API: alloc, vec, into_slice, a
/// nested alloc_slice_fill_with, spawn. Every value is dropped exactly once, also when the closure
/// panics half way.
#[test]
fn fill_with_reentering_the_frame_api_drops_everything_once() {
    within(60, || {
        let mut s = small_blocks(2);
        let drops = AtomicUsize::new(0);
        let made = AtomicUsize::new(0);
        let (d, m) = (&drops, &made);
        s.run_frame(async |frame| {
            let outer = frame.alloc_slice_fill_with(50, |i| {
                m.fetch_add(1, Ordering::SeqCst);
                let inner = frame.alloc(Tracked(d, 1000 + i as u64));
                m.fetch_add(1, Ordering::SeqCst);
                let mut v = frame.vec();
                for k in 0..3 {
                    m.fetch_add(1, Ordering::SeqCst);
                    v.push(Tracked(d, k));
                }
                let kept = v.into_slice();
                let nested = frame.alloc_slice_fill_with(2, |k| {
                    m.fetch_add(1, Ordering::SeqCst);
                    Tracked(d, k as u64)
                });
                let h = frame.spawn(async move {
                    m.fetch_add(1, Ordering::SeqCst);
                    Tracked(d, 7) // output dropped by the detached handle
                });
                drop(h);
                assert_eq!(kept.len() + nested.len(), 5);
                inner.1 += 1;
                Tracked(d, i as u64)
            });
            assert_eq!(outer.len(), 50);
        });
        assert_eq!(made.load(Ordering::SeqCst), 50 * 8);
        assert_eq!(drops.load(Ordering::SeqCst), 50 * 8);

        // The closure panics at index 30: what it made is dropped once, the rest at frame end.
        drops.store(0, Ordering::SeqCst);
        made.store(0, Ordering::SeqCst);
        let r = catch_unwind(AssertUnwindSafe(|| {
            s.run_frame(async |frame| {
                frame.alloc_slice_fill_with(50, |i| {
                    let _side = frame.alloc(Tracked(d, 5000 + i as u64));
                    m.fetch_add(1, Ordering::SeqCst);
                    if i == 30 {
                        panic!("fill closure panics at 30");
                    }
                    m.fetch_add(1, Ordering::SeqCst);
                    Tracked(d, i as u64)
                });
            })
        }));
        assert_eq!(payload_str(&*r.unwrap_err()), "fill closure panics at 30");
        assert_eq!(made.load(Ordering::SeqCst), 31 + 30);
        assert_eq!(drops.load(Ordering::SeqCst), 31 + 30);
    });
}

static ZST_DROPS: AtomicUsize = AtomicUsize::new(0);

struct Z;

impl Drop for Z {
    fn drop(&mut self) {
        ZST_DROPS.fetch_add(1, Ordering::SeqCst);
    }
}

#[repr(align(65536))]
struct ZAligned;

impl Drop for ZAligned {
    fn drop(&mut self) {
        ZST_DROPS.fetch_add(1, Ordering::SeqCst);
    }
}

/// Zero-sized types that need dropping, and capacity overflow.
#[test]
fn zsts_that_need_drop_and_capacity_overflow() {
    let mut s = small_blocks(2);
    ZST_DROPS.store(0, Ordering::SeqCst);
    s.run_frame(async |frame| {
        frame.alloc(Z);
        let za = frame.alloc(ZAligned);
        assert_eq!(za as *mut ZAligned as usize % 65536, 0);
        frame.alloc_slice_fill_with(1000, |_| Z);
        let mut v = frame.vec();
        for _ in 0..10_000 {
            v.push(Z);
        }
        assert_eq!(v.capacity(), usize::MAX);
        v.pop();
        v.into_slice();
        let mut w = frame.vec();
        w.push(ZAligned);
        drop(w);
        assert_eq!(ZST_DROPS.load(Ordering::SeqCst), 2);
    });
    assert_eq!(ZST_DROPS.load(Ordering::SeqCst), 2 + 1 + 1 + 1000 + 9_999);

    for (case, what) in ["vec_with_capacity", "reserve", "fill_with", "zst reserve"]
        .into_iter()
        .enumerate()
    {
        let r = catch_unwind(AssertUnwindSafe(|| {
            s.run_frame(async |frame| match case {
                0 => {
                    frame.vec_with_capacity::<u64>(usize::MAX / 4);
                }
                1 => {
                    let mut v = frame.vec::<u8>();
                    v.push(1);
                    v.reserve(usize::MAX);
                }
                2 => {
                    frame.alloc_slice_fill_with(usize::MAX / 2, |_| 0u32);
                }
                _ => {
                    let mut v = frame.vec::<()>();
                    v.extend(std::iter::repeat_n((), 3));
                    v.reserve(usize::MAX - 2);
                }
            })
        }));
        let msg = payload_str(&*r.expect_err(what));
        assert!(
            msg.contains("isize::MAX") || msg.contains("overflow"),
            "{what}: {msg}"
        );
    }
    // Still usable.
    assert_eq!(s.run_frame(async |frame| *frame.alloc(5u8)), 5);
}
