//! The peers' side of each workload: rayon, tokio, async-executor and bevy_tasks, the ping-pong
//! futures they share with frame-scheduler, and the one-thread floors. Each function runs one
//! frame of a workload; `super::Systems::run` picks it.

use std::hint::black_box;

use async_executor::Executor;
use bevy_tasks::ParallelSliceMut as _;
use bevy_tasks::TaskPool;
use bumpalo::Bump;
use futures::StreamExt;
use futures::channel::{mpsc, oneshot};
use rayon::prelude::*;

use super::{
    AsyncExecutor, CHAIN_LEN, FAN_OUT_JOBS, Loops, MIN_LEN_5NS, NESTED_FANOUT, PING_PONG_ROUNDS,
    SPAWN_JOBS, STAGE_JOBS, STAGES, Workload, light_work, spin, work,
};

// ---------------------------------------------------------------------------------------------
// ping-pong, the same two futures on every async system

pub(super) async fn ping(tx: mpsc::UnboundedSender<usize>, mut rx: mpsc::UnboundedReceiver<usize>) {
    for i in 0..PING_PONG_ROUNDS {
        tx.unbounded_send(i).expect("pong hung up");
        let back = rx.next().await.expect("pong hung up");
        assert_eq!(back, i, "ping-pong got a reply out of order");
    }
}

/// Echoes until ping drops its sender.
pub(super) async fn pong(tx: mpsc::UnboundedSender<usize>, mut rx: mpsc::UnboundedReceiver<usize>) {
    while let Some(v) = rx.next().await {
        tx.unbounded_send(v).expect("ping hung up");
    }
}

// ---------------------------------------------------------------------------------------------
// rayon

pub(super) fn on_rayon(
    pool: &rayon::ThreadPool,
    workload: Workload,
    out: &mut [u64],
    loops: &mut Loops,
) {
    let chunk = workload.chunk_len(pool.current_num_threads());
    match workload {
        Workload::Spawn | Workload::SpawnBatch => pool.scope(|s| {
            for i in 0..SPAWN_JOBS {
                s.spawn(move |_| {
                    black_box(i);
                });
            }
        }),
        Workload::Throughput => pool.scope(|s| {
            for (i, slot) in out.iter_mut().enumerate() {
                s.spawn(move |_| *slot = work(i));
            }
        }),
        Workload::Nested => pool.scope(|s| {
            for i in 0..NESTED_FANOUT {
                s.spawn(move |s| {
                    for j in 0..NESTED_FANOUT {
                        s.spawn(move |_| {
                            black_box((i, j));
                        });
                    }
                });
            }
        }),
        Workload::Chain => pool.scope(|s| rayon_link(s, CHAIN_LEN)),
        // Rayon jobs cannot await, so each blocks its thread on the channel.
        Workload::PingPong => pool.scope(|s| {
            let (ping_tx, ping_rx) = mpsc::unbounded();
            let (pong_tx, pong_rx) = mpsc::unbounded();
            s.spawn(move |_| futures::executor::block_on(ping(ping_tx, pong_rx)));
            s.spawn(move |_| futures::executor::block_on(pong(pong_tx, ping_rx)));
        }),
        Workload::FanOut => pool.scope(|s| {
            for i in 0..FAN_OUT_JOBS {
                s.spawn(move |_| {
                    black_box(i);
                });
            }
        }),
        // A nested scope per stage: the scope's end is the stage's barrier.
        Workload::Stages => pool.install(|| {
            for stage in 0..STAGES {
                rayon::scope(|s| {
                    for i in 0..STAGE_JOBS {
                        s.spawn(move |_| {
                            black_box((stage, i));
                        });
                    }
                });
            }
        }),
        Workload::EmptyFrame => pool.scope(|_| {}),
        Workload::OneJobFrame => pool.scope(|s| s.spawn(|_| {})),
        Workload::BalanceMixed | Workload::BalanceTail => pool.scope(|s| {
            let jobs = out.iter_mut().zip(workload.balance_durations());
            for (i, (slot, dur)) in jobs.enumerate() {
                s.spawn(move |_| *slot = spin(dur, i));
            }
        }),
        // `par_chunks_mut` rather than `par_iter_mut().with_min_len(..)`: as fast on 100 ns
        // items and faster on 5 ns ones (BENCHMARKS.md, section 5).
        Workload::Loop => rayon_chunks(pool, loops.items(workload), chunk, work),
        Workload::SmallLoop => rayon_chunks(pool, loops.items(workload), chunk, light_work),
        Workload::Map => pool.install(|| {
            loops
                .input
                .par_iter()
                .with_min_len(MIN_LEN_5NS)
                .map(|&x| light_work(x as usize))
                .collect_into_vec(&mut loops.mapped)
        }),
    }
}

/// `items[i] = value(i)` for every item, by `par_chunks_mut(chunk)`.
fn rayon_chunks(
    pool: &rayon::ThreadPool,
    items: &mut [u64],
    chunk: usize,
    value: impl Fn(usize) -> u64 + Send + Sync,
) {
    pool.install(|| {
        items.par_chunks_mut(chunk).enumerate().for_each(|(c, xs)| {
            for (k, x) in xs.iter_mut().enumerate() {
                *x = value(c * chunk + k);
            }
        })
    })
}

fn rayon_link(s: &rayon::Scope<'_>, left: usize) {
    s.spawn(move |s| {
        if left > 1 {
            rayon_link(s, left - 1)
        }
    });
}

// ---------------------------------------------------------------------------------------------
// tokio: no scopes, so the root joins every handle; `'static` jobs return their result.

pub(super) fn on_tokio(rt: &tokio::runtime::Runtime, workload: Workload, out: &mut [u64]) {
    match workload {
        Workload::Spawn => rt.block_on(async {
            let jobs: Vec<_> = (0..SPAWN_JOBS)
                .map(|i| {
                    tokio::spawn(async move {
                        black_box(i);
                    })
                })
                .collect();
            for job in jobs {
                job.await.unwrap();
            }
        }),
        // `'static` jobs: each returns its value and the root writes it into the slot.
        Workload::Throughput => rt.block_on(async {
            let jobs: Vec<_> = (0..out.len())
                .map(|i| tokio::spawn(async move { work(i) }))
                .collect();
            for (slot, job) in out.iter_mut().zip(jobs) {
                *slot = job.await.unwrap();
            }
        }),
        Workload::Nested => rt.block_on(async {
            let parents: Vec<_> = (0..NESTED_FANOUT)
                .map(|i| {
                    tokio::spawn(async move {
                        let kids: Vec<_> = (0..NESTED_FANOUT)
                            .map(|j| {
                                tokio::spawn(async move {
                                    black_box((i, j));
                                })
                            })
                            .collect();
                        for kid in kids {
                            kid.await.unwrap();
                        }
                    })
                })
                .collect();
            for parent in parents {
                parent.await.unwrap();
            }
        }),
        // The last link tells the root; one oneshot per frame, not per job.
        Workload::Chain => rt.block_on(async {
            let (tx, rx) = oneshot::channel();
            tokio_link(CHAIN_LEN, tx);
            rx.await.unwrap();
        }),
        Workload::PingPong => rt.block_on(async {
            let (ping_tx, ping_rx) = mpsc::unbounded();
            let (pong_tx, pong_rx) = mpsc::unbounded();
            let a = tokio::spawn(ping(ping_tx, pong_rx));
            let b = tokio::spawn(pong(pong_tx, ping_rx));
            a.await.unwrap();
            b.await.unwrap();
        }),
        Workload::FanOut => rt.block_on(async {
            let jobs: Vec<_> = (0..FAN_OUT_JOBS)
                .map(|i| {
                    tokio::spawn(async move {
                        black_box(i);
                    })
                })
                .collect();
            for job in jobs {
                job.await.unwrap();
            }
        }),
        Workload::Stages => rt.block_on(async {
            for stage in 0..STAGES {
                let jobs: Vec<_> = (0..STAGE_JOBS)
                    .map(|i| {
                        tokio::spawn(async move {
                            black_box((stage, i));
                        })
                    })
                    .collect();
                for job in jobs {
                    job.await.unwrap();
                }
            }
        }),
        Workload::EmptyFrame => rt.block_on(async {}),
        Workload::OneJobFrame => rt.block_on(async { tokio::spawn(async {}).await.unwrap() }),
        // `'static` jobs: each returns its result and the root writes it into the slot.
        Workload::BalanceMixed | Workload::BalanceTail => rt.block_on(async {
            let jobs: Vec<_> = workload
                .balance_durations()
                .enumerate()
                .map(|(i, dur)| tokio::spawn(async move { spin(dur, i) }))
                .collect();
            for (slot, job) in out.iter_mut().zip(jobs) {
                *slot = job.await.unwrap();
            }
        }),
        Workload::Loop | Workload::SmallLoop | Workload::Map | Workload::SpawnBatch => {
            panic!(
                "no tokio version of {workload:?}: no loop over a borrowed slice, no batch spawn"
            )
        }
    }
}

fn tokio_link(left: usize, done: oneshot::Sender<()>) {
    tokio::spawn(async move {
        if left > 1 {
            tokio_link(left - 1, done)
        } else {
            let _ = done.send(());
        }
    });
}

/// The spawn workload on tokio with the root itself a task, so that it spawns from a worker
/// thread (local queue) rather than from the `block_on` thread (injection queue).
pub fn tokio_spawn_root_on_worker(rt: &tokio::runtime::Runtime) {
    rt.block_on(async {
        tokio::spawn(async {
            let jobs: Vec<_> = (0..SPAWN_JOBS)
                .map(|i| {
                    tokio::spawn(async move {
                        black_box(i);
                    })
                })
                .collect();
            for job in jobs {
                job.await.unwrap();
            }
        })
        .await
        .unwrap()
    })
}

// ---------------------------------------------------------------------------------------------
// async-executor: like tokio, `'static` tasks joined by the root; `spawn_many` where it fits.

pub(super) fn on_async_executor(exec: &AsyncExecutor, workload: Workload, out: &mut [u64]) {
    let ex = exec.ex;
    match workload {
        Workload::Spawn | Workload::SpawnBatch => exec.block_on(async {
            let mut jobs = Vec::with_capacity(SPAWN_JOBS);
            ex.spawn_many(
                (0..SPAWN_JOBS).map(|i| async move {
                    black_box(i);
                }),
                &mut jobs,
            );
            for job in jobs {
                job.await;
            }
        }),
        // `'static` jobs: each returns its value and the root writes it into the slot.
        Workload::Throughput => exec.block_on(async {
            let mut jobs = Vec::with_capacity(out.len());
            ex.spawn_many((0..out.len()).map(|i| async move { work(i) }), &mut jobs);
            for (slot, job) in out.iter_mut().zip(jobs) {
                *slot = job.await;
            }
        }),
        Workload::Nested => exec.block_on(async {
            let mut parents = Vec::with_capacity(NESTED_FANOUT);
            ex.spawn_many(
                (0..NESTED_FANOUT).map(|i| async move {
                    let mut kids = Vec::with_capacity(NESTED_FANOUT);
                    ex.spawn_many(
                        (0..NESTED_FANOUT).map(|j| async move {
                            black_box((i, j));
                        }),
                        &mut kids,
                    );
                    for kid in kids {
                        kid.await;
                    }
                }),
                &mut parents,
            );
            for parent in parents {
                parent.await;
            }
        }),
        Workload::Chain => exec.block_on(async {
            let (tx, rx) = oneshot::channel();
            executor_link(ex, CHAIN_LEN, tx);
            rx.await.unwrap();
        }),
        Workload::PingPong => exec.block_on(async {
            let (ping_tx, ping_rx) = mpsc::unbounded();
            let (pong_tx, pong_rx) = mpsc::unbounded();
            let a = ex.spawn(ping(ping_tx, pong_rx));
            let b = ex.spawn(pong(pong_tx, ping_rx));
            a.await;
            b.await;
        }),
        Workload::FanOut => exec.block_on(async {
            let mut jobs = Vec::with_capacity(FAN_OUT_JOBS);
            ex.spawn_many(
                (0..FAN_OUT_JOBS).map(|i| async move {
                    black_box(i);
                }),
                &mut jobs,
            );
            for job in jobs {
                job.await;
            }
        }),
        Workload::Stages => exec.block_on(async {
            let mut jobs = Vec::with_capacity(STAGE_JOBS);
            for stage in 0..STAGES {
                ex.spawn_many(
                    (0..STAGE_JOBS).map(|i| async move {
                        black_box((stage, i));
                    }),
                    &mut jobs,
                );
                for job in jobs.drain(..) {
                    job.await;
                }
            }
        }),
        Workload::EmptyFrame => exec.block_on(async {}),
        Workload::OneJobFrame => exec.block_on(ex.spawn(async {})),
        Workload::BalanceMixed | Workload::BalanceTail => exec.block_on(async {
            let mut jobs = Vec::with_capacity(workload.balance_durations().count());
            ex.spawn_many(
                workload
                    .balance_durations()
                    .enumerate()
                    .map(|(i, dur)| async move { spin(dur, i) }),
                &mut jobs,
            );
            for (slot, job) in out.iter_mut().zip(jobs) {
                *slot = job.await;
            }
        }),
        Workload::Loop | Workload::SmallLoop | Workload::Map => {
            panic!("no async-executor version of {workload:?}: no loop over a borrowed slice")
        }
    }
}

fn executor_link(ex: &'static Executor<'static>, left: usize, done: oneshot::Sender<()>) {
    ex.spawn(async move {
        if left > 1 {
            executor_link(ex, left - 1, done)
        } else {
            let _ = done.send(());
        }
    })
    .detach();
}

// ---------------------------------------------------------------------------------------------
// bevy_tasks: scopes, like rayon; the caller ticks the pool while it waits.

pub(super) fn on_bevy(pool: &TaskPool, workload: Workload, out: &mut [u64], loops: &mut Loops) {
    // The caller ticks the pool too: one thread more than it started.
    let chunk = workload.chunk_len(pool.thread_num() + 1);
    match workload {
        Workload::Spawn => {
            pool.scope(|s| {
                for i in 0..SPAWN_JOBS {
                    s.spawn(async move {
                        black_box(i);
                    });
                }
            });
        }
        Workload::Throughput => {
            pool.scope(|s| {
                for (i, slot) in out.iter_mut().enumerate() {
                    s.spawn(async move { *slot = work(i) });
                }
            });
        }
        Workload::Nested => {
            pool.scope(|s| {
                for i in 0..NESTED_FANOUT {
                    s.spawn(async move {
                        for j in 0..NESTED_FANOUT {
                            s.spawn(async move {
                                black_box((i, j));
                            });
                        }
                    });
                }
            });
        }
        Workload::Chain => {
            pool.scope(|s| bevy_link(s, CHAIN_LEN));
        }
        Workload::PingPong => {
            pool.scope(|s| {
                let (ping_tx, ping_rx) = mpsc::unbounded();
                let (pong_tx, pong_rx) = mpsc::unbounded();
                s.spawn(ping(ping_tx, pong_rx));
                s.spawn(pong(pong_tx, ping_rx));
            });
        }
        Workload::FanOut => {
            pool.scope(|s| {
                for i in 0..FAN_OUT_JOBS {
                    s.spawn(async move {
                        black_box(i);
                    });
                }
            });
        }
        // A scope per stage: the scope's end is the stage's barrier.
        Workload::Stages => {
            for stage in 0..STAGES {
                pool.scope(|s| {
                    for i in 0..STAGE_JOBS {
                        s.spawn(async move {
                            black_box((stage, i));
                        });
                    }
                });
            }
        }
        Workload::EmptyFrame => {
            pool.scope(|_: &bevy_tasks::Scope<'_, '_, ()>| {});
        }
        Workload::OneJobFrame => {
            pool.scope(|s| s.spawn(async {}));
        }
        Workload::BalanceMixed | Workload::BalanceTail => {
            pool.scope(|s| {
                let jobs = out.iter_mut().zip(workload.balance_durations());
                for (i, (slot, dur)) in jobs.enumerate() {
                    s.spawn(async move { *slot = spin(dur, i) });
                }
            });
        }
        Workload::Loop => bevy_chunks(pool, loops.items(workload), chunk, work),
        Workload::SmallLoop => bevy_chunks(pool, loops.items(workload), chunk, light_work),
        Workload::Map | Workload::SpawnBatch => {
            panic!("no bevy_tasks version of {workload:?}: no map into one slice, no batch spawn")
        }
    }
}

/// `items[i] = value(i)` for every item, by `par_chunk_map_mut(pool, chunk, ..)`.
fn bevy_chunks(
    pool: &TaskPool,
    mut items: &mut [u64],
    chunk: usize,
    value: impl Fn(usize) -> u64 + Send + Sync,
) {
    items.par_chunk_map_mut(pool, chunk, |c, xs| {
        for (k, x) in xs.iter_mut().enumerate() {
            *x = value(c * chunk + k);
        }
    });
}

fn bevy_link<'scope>(s: &'scope bevy_tasks::Scope<'scope, '_, ()>, left: usize) {
    s.spawn(async move {
        if left > 1 {
            bevy_link(s, left - 1)
        }
    });
}

// ---------------------------------------------------------------------------------------------
// serial floors: what spawning costs with no scheduler at all

/// 10 000 closures boxed as `Box<dyn FnOnce()>` into a `Vec`, then run in order. Each captures
/// its index (a zero-sized closure would box for free, which no real job does).
pub(super) fn serial_boxed() {
    let jobs: Vec<Box<dyn FnOnce()>> = (0..SPAWN_JOBS)
        .map(|i| {
            Box::new(move || {
                black_box(i);
            }) as Box<dyn FnOnce()>
        })
        .collect();
    for job in jobs {
        job();
    }
}

/// 10 000 closures written into a bump arena, their `&mut dyn FnMut()` list too, then run in
/// order; the arena is reset (not freed) each frame, as frame-scheduler's are.
pub(super) fn serial_bump(bump: &mut Bump) {
    bump.reset();
    let bump = &*bump;
    let jobs: &mut [&mut dyn FnMut()] = bump.alloc_slice_fill_with(SPAWN_JOBS, |i| {
        bump.alloc(move || {
            black_box(i);
        }) as &mut dyn FnMut()
    });
    for job in jobs.iter_mut() {
        job();
    }
}

/// The throughput workload on one thread, no scheduler.
pub(super) fn serial_throughput(out: &mut [u64]) {
    for (i, slot) in out.iter_mut().enumerate() {
        *slot = work(i);
    }
}

/// A loop workload on one thread: `items[i] = value(i)` for every item.
pub(super) fn serial_loop(workload: Workload, loops: &mut Loops) {
    let items = loops.items(workload);
    match workload {
        Workload::Loop => serial_fill(items, work),
        _ => serial_fill(items, light_work),
    }
}

fn serial_fill(items: &mut [u64], value: impl Fn(usize) -> u64) {
    for (i, x) in items.iter_mut().enumerate() {
        *x = value(i);
    }
}

/// The map workload on one thread, into the kept `Vec`.
pub(super) fn serial_map(loops: &mut Loops) {
    loops.mapped.clear();
    loops
        .mapped
        .extend(loops.input.iter().map(|&x| light_work(x as usize)));
}
