//! Loom model 3: a job's output is handed over or dropped exactly once, whether its handle is
//! awaited, dropped before completion, dropped after it, or forgotten.
//!
//! `RUSTFLAGS="--cfg loom" cargo test --release --test loom_handle`
#![cfg(loom)]

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll, Wake, Waker};

use frame_scheduler::loom_api::{ModelScheduler, OutputJob, poll_once};
use loom::sync::Arc;
use loom::sync::atomic::{AtomicUsize, Ordering};
use loom::thread;

/// The output: counts its drops.
struct Output(Arc<AtomicUsize>);

impl Drop for Output {
    fn drop(&mut self) {
        self.0.fetch_add(1, Ordering::SeqCst);
    }
}

/// A future that is immediately ready with an `Output`.
struct Ready(Option<Output>);

impl Future for Ready {
    type Output = Output;
    fn poll(mut self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<Output> {
        Poll::Ready(self.0.take().expect("polled after completion"))
    }
}

struct Flag(AtomicUsize);

impl Wake for Flag {
    fn wake(self: std::sync::Arc<Self>) {
        self.0.fetch_add(1, Ordering::SeqCst);
    }
}

#[derive(Clone, Copy, Debug)]
enum HandleDoes {
    Await,
    Drop,
    Forget,
}

fn model(does: HandleDoes) {
    loom::model(move || {
        let sched = Arc::new(ModelScheduler::new(1));
        let drops = Arc::new(AtomicUsize::new(0));
        let job = Arc::new(OutputJob::new(&sched, Ready(Some(Output(drops.clone())))));

        let completer = {
            let (sched, job) = (sched.clone(), job.clone());
            thread::spawn(move || {
                let noop = Waker::noop();
                assert!(job.run_on_worker0(&sched, noop));
            })
        };

        let mut handle = job.handle();
        match does {
            HandleDoes::Await => {
                let flag = std::sync::Arc::new(Flag(AtomicUsize::new(0)));
                let waker = Waker::from(flag.clone());
                let out = match poll_once(Pin::new(&mut handle), &waker) {
                    Poll::Ready(out) => out,
                    Poll::Pending => {
                        while flag.0.load(Ordering::SeqCst) == 0 {
                            thread::yield_now();
                        }
                        match poll_once(Pin::new(&mut handle), &waker) {
                            Poll::Ready(out) => out,
                            Poll::Pending => panic!("woken but the output is not there"),
                        }
                    }
                };
                assert_eq!(
                    drops.load(Ordering::SeqCst),
                    0,
                    "output dropped before it was taken"
                );
                drop(out);
                drop(handle);
            }
            HandleDoes::Drop => drop(handle),
            HandleDoes::Forget => std::mem::forget(handle),
        }
        completer.join().unwrap();
        // SAFETY: both threads are joined.
        unsafe { job.end_frame(&sched) };
        assert_eq!(
            drops.load(Ordering::SeqCst),
            1,
            "{does:?}: output dropped other than once"
        );
    });
}

#[test]
fn awaited_output_is_taken_once() {
    model(HandleDoes::Await);
}

#[test]
fn dropped_handle_drops_output_once() {
    model(HandleDoes::Drop);
}

#[test]
fn forgotten_handle_output_dropped_at_frame_end() {
    model(HandleDoes::Forget);
}
