//! A job's life on a worker (tokio's `task/harness.rs`): waking it and putting it on the queue
//! its kind calls for, polling it, the bookkeeping when it completes (its output, its awaiter,
//! its counter, batched per worker), and dropping at frame end the outputs nobody took.
//!
//! The queues themselves, and how a worker finds its next job, are in `worker.rs`; the job's
//! state machine is in `job/state.rs` and `job/header.rs`.

use core::ptr::{self, NonNull};
use core::task::Context;
use std::panic::{AssertUnwindSafe, catch_unwind};

use crate::context::{current, with_local_ok};
use crate::counter::CounterInner;
use crate::job::state::{AWAITER, DETACHED, LOCKED, PANICKED, TAKEN};
use crate::job::{Header, JobKind, JobRef, PollOutcome};
use crate::profile;
use crate::sync::Ordering;
use crate::waker;
use crate::worker::{Counts, Shared};

/// A worker takes finished counted jobs off their counter in one `fetch_sub` per this many.
const PENDING_MAX: usize = 64;

/// Wakes a job: schedules it if it was idle, and puts it where it can run.
///
/// # Safety
/// 1. The header is live (its frame has not ended).
pub(crate) unsafe fn wake_job(job: NonNull<Header>) {
    // SAFETY: (1).
    let h = unsafe { job.as_ref() };
    if h.transition_to_scheduled() {
        // SAFETY: header invariant 1.
        let shared = unsafe { &*h.shared };
        if shared.tracer.is_on() {
            let by = current().worker_of(shared);
            // SAFETY: `by` is `Some(i)` only when this thread is worker `i` of `shared`.
            unsafe { shared.tracer.wake(by, job.as_ptr()) };
        }
        // SAFETY: header invariant 1.
        unsafe { enqueue(shared, JobRef(job)) };
    }
}

/// Puts a job that was just marked `SCHEDULED` into the queue its kind calls for.
///
/// # Safety
/// 1. `job` is a live job of `shared`'s running frame (or its root), which the caller has just
///    marked `SCHEDULED` and which is on no queue (header invariant 4).
pub(crate) unsafe fn enqueue(shared: &Shared, job: JobRef) {
    // SAFETY: (1).
    let h = unsafe { job.header() };
    let level = h.priority;
    if h.kind != JobKind::Root {
        shared.note_queued(level, 1);
    }
    // SAFETY: (1) for every call below; `push` also needs us to be worker `cur.index`, which
    // `current()` says we are.
    unsafe {
        match h.kind {
            JobKind::Root => shared.sleep.notify_driver(),
            JobKind::Local => shared.push_driver(level, job),
            JobKind::Any => {
                let cur = current();
                if ptr::eq(cur.shared, shared) {
                    shared.push(cur.index, level, job);
                } else {
                    shared.inject(level, job);
                }
            }
        }
    }
}

/// Polls a job once on worker `index` and does what its outcome calls for.
///
/// # Safety
/// 1. The caller is worker `index` of `shared`, and got `job` from one of its queues.
pub(crate) unsafe fn run_job(shared: &Shared, index: usize, job: JobRef) {
    // SAFETY: a queued job is live (header invariant 1).
    let h = unsafe { job.header() };
    // SAFETY: (1): our own counter.
    unsafe { Counts::bump(&shared.workers[index].counts.polls) };
    let polled_before = h.transition_to_running();
    // Finished counted jobs held back in this worker's batch are taken off their counter
    // before any poll that could be waiting for them: a job of another counter, or a job
    // polled before (it yielded or was woken, and may be looking at this very counter). Only a
    // job of the same counter starting for the first time keeps the batch growing, and not
    // while some `until(n)` waits on that counter for a target above zero (the batch could be
    // what it waits for, and this job could keep the worker busy for long).
    let counter = h.counter.map_or(ptr::null(), |c| c.as_ptr().cast_const());
    // SAFETY: (1): `own` is ours. A pending counter lives in the frame arena, and the frame
    // cannot end before the batch is flushed (see `flush_pending`).
    let flush = shared.workers[index].own.with(|own| unsafe {
        (*own).pending != 0
            && (polled_before
                || !ptr::eq((*own).pending_counter, counter)
                || (*(*own).pending_counter).has_targets())
    });
    if flush {
        // SAFETY: (1).
        unsafe { flush_pending(shared, index) };
    }
    // What the job's spawns inherit.
    crate::context::set_priority(h.priority);
    // SAFETY: the header is live during the poll.
    let waker = unsafe { waker::borrowed(job.0) };
    let mut cx = Context::from_waker(&waker);
    // `spawn_local` is allowed only in local jobs; `local_ok` is false outside the polls of the
    // root and of local jobs, so ordinary jobs need no thread-local write.
    let tracing = shared.tracer.is_on();
    if tracing {
        // SAFETY: (1): we are worker `index`.
        unsafe { shared.tracer.poll_begin(index, job.0.as_ptr()) };
    }
    if let Some(stall) = shared.stall.as_deref() {
        // SAFETY: (1): we are worker `index`, and hold RUNNING for this job of the frame.
        unsafe { stall.poll_begin(shared, index, job.0) };
    }
    let outcome = profile::poll_job!(
        h.label,
        if h.kind == JobKind::Local {
            // SAFETY: we hold RUNNING; local jobs only come from the driver queue, popped by
            // worker 0.
            with_local_ok(true, || unsafe { (h.vtable.poll)(job.0, &mut cx) })
        } else {
            // SAFETY: we hold RUNNING.
            unsafe { (h.vtable.poll)(job.0, &mut cx) }
        }
    );
    if tracing {
        let result = match &outcome {
            PollOutcome::Pending => crate::trace::PollResult::Pending,
            PollOutcome::Ready => crate::trace::PollResult::Ready,
            PollOutcome::Panicked(_) => crate::trace::PollResult::Panicked,
        };
        // SAFETY: (1): we are worker `index`; the header is live until we complete it below.
        unsafe { shared.tracer.poll_end(index, job.0.as_ptr(), result) };
    }
    match outcome {
        PollOutcome::Pending => {
            if h.transition_to_idle() == crate::job::state::AfterPoll::Requeue {
                // Woken during its own poll (`yield_now`, typically). Our deque is LIFO: pushed
                // there, the job would be popped straight back and a job yielding while it
                // waits for another one on this worker would spin forever. It goes to the back
                // of the shared FIFO instead, behind everything already queued.
                // SAFETY: the job is live and still SCHEDULED by the wake that came during
                // the poll; that waker left the enqueueing to us.
                unsafe {
                    if h.kind == JobKind::Any {
                        shared.note_queued(h.priority, 1);
                        shared.inject(h.priority, job);
                    } else {
                        enqueue(shared, job);
                    }
                }
            }
        }
        // SAFETY: (1) and the job just finished on this worker.
        PollOutcome::Ready => unsafe { complete(shared, index, job, false) },
        PollOutcome::Panicked(payload) => {
            shared.record_panic(payload);
            // SAFETY: as above.
            unsafe { complete(shared, index, job, true) }
        }
    }
}

/// The bookkeeping after a job's last poll. The `completed` count is the very last touch.
///
/// # Safety
/// 1. The caller is worker `index` and has just seen the job's future finish or panic.
pub(crate) unsafe fn complete(shared: &Shared, index: usize, job: JobRef, panicked: bool) {
    // SAFETY: the job is live until our `completed` store below.
    let h = unsafe { job.header() };
    h.transition_to_complete();
    let prev = h.publish_output(panicked);
    if !panicked && h.vtable.output_needs_drop {
        if prev & DETACHED != 0 {
            // Nobody will take it: drop it now, on this thread. No TAKEN bit: a detached job
            // is on no outputs list and has no handle left to look.
            // SAFETY: DETACHED was set before DONE, so the output is ours alone.
            let dropped = catch_unwind(AssertUnwindSafe(|| unsafe {
                (h.vtable.drop_output)(job.0)
            }));
            if let Err(payload) = dropped {
                shared.record_panic(payload);
            }
        } else {
            // The handle may never take it (it could be forgotten): remember it for the sweep.
            shared.workers[index].frame_state.with_mut(|fs| {
                // SAFETY: we are worker `index` (Shared invariant 1); the job is complete, so
                // `next` is free for the outputs list (header table).
                unsafe {
                    h.next.with_mut(|n| *n = (*fs).outputs);
                    (*fs).outputs = h;
                }
            });
        }
    }
    // Wakers are user code and may panic: catch it, so the bookkeeping below always happens
    // (a lost `completed` count would hang the frame; an escaped panic would kill a worker).
    if prev & (AWAITER | LOCKED) != 0 {
        if let Some(waker) = h.take_awaiter() {
            if let Err(payload) = catch_unwind(AssertUnwindSafe(|| waker.wake())) {
                shared.record_panic(payload);
            }
        }
    }
    match h.counter {
        Some(counter) => {
            // Batched: the counter and this worker's `completed` count learn of it at the next
            // flush (see `flush_pending`).
            // SAFETY: (1): `own` is ours; `run_job` flushed any batch of another counter.
            let full = shared.workers[index].own.with_mut(|own| unsafe {
                let own = &mut *own;
                debug_assert!(own.pending == 0 || ptr::eq(own.pending_counter, counter.as_ptr()));
                own.pending_counter = counter.as_ptr();
                own.pending += 1;
                own.pending >= PENDING_MAX
            });
            if full {
                // SAFETY: (1).
                unsafe { flush_pending(shared, index) };
            }
        }
        // SAFETY: (1): our own counter.
        None => unsafe { Counts::bump(&shared.workers[index].counts.completed) },
    }
}

/// Takes worker `index`'s finished counted jobs off their counter (one `fetch_sub`, waking its
/// awaiters if it reaches zero), then adds them to the worker's `completed` count.
///
/// Batching saves a read-modify-write on a cache line every worker shares per counted job.
/// The order matters: until `completed` says so, the frame cannot end, so the counter in the
/// arena is still there when we decrement it. A worker flushes before it runs a job of another
/// counter (or none), before the driver polls the root, when it finds no work, and every
/// [`PENDING_MAX`] jobs: no awaiter waits on a batch while its worker does unrelated work.
///
/// # Safety
/// 1. The caller is worker `index`.
pub(crate) unsafe fn flush_pending(shared: &Shared, index: usize) {
    let w = &shared.workers[index];
    // SAFETY: (1): `own` is ours.
    let (n, counter) = w.own.with_mut(|own| unsafe {
        let own = &mut *own;
        let taken = (own.pending, own.pending_counter);
        own.pending = 0;
        own.pending_counter = ptr::null();
        taken
    });
    if n == 0 {
        return;
    }
    // SAFETY: the counter lives in the frame arena, and the frame cannot end before the
    // `completed` store below.
    let counter = unsafe { &*counter };
    match catch_unwind(AssertUnwindSafe(|| counter.decrement_by(n))) {
        Ok(Ok(())) => {}
        Ok(Err(msg)) => shared.record_panic(Box::new(msg)),
        Err(payload) => shared.record_panic(payload),
    }
    // SAFETY: (1): our own counter.
    unsafe { Counts::add(&w.counts.completed, n as u64) };
}

/// If this thread is a worker holding finished jobs of `counter` in its batch, takes them off
/// the counter now (for [`Counter::value`](crate::Counter::value)).
pub(crate) fn flush_pending_for(counter: &CounterInner) {
    let cur = current();
    if cur.shared.is_null() || !ptr::eq(cur.shared, counter.shared) {
        return;
    }
    // SAFETY: `cur.shared` is the scheduler this thread is a worker of (the thread-local is set
    // only while it is, and the counter's frame is running, so the scheduler is alive).
    let shared = unsafe { &*cur.shared };
    // SAFETY: we are worker `cur.index`: `own` is ours (Shared invariant 2), and nothing
    // else of ours holds a reference into it while a job (our caller) is polled.
    let mine = shared.workers[cur.index]
        .own
        .with(|own| unsafe { (*own).pending != 0 && ptr::eq((*own).pending_counter, counter) });
    if mine {
        // SAFETY: as above, we are worker `cur.index`.
        unsafe { flush_pending(shared, cur.index) };
    }
}

/// Frame end, on the driving thread: drops outputs nobody took, from every worker's list.
///
/// # Safety
/// 1. Every job of the frame is complete and accounted for (see `worker.rs`'s module docs).
pub(crate) unsafe fn sweep_outputs(shared: &Shared) {
    // Take every list, spliced into one chain, before running any destructor: an output's
    // destructor may spawn a job (odd, but allowed), which another worker could complete and
    // push onto its list while we walk it. The driver sees the new job and sweeps again later.
    let mut chain: *const Header = ptr::null();
    for w in shared.workers.iter() {
        // SAFETY: (1) and Shared invariant 1: the workers are done with their frame state.
        let list = w
            .frame_state
            .with_mut(|fs| unsafe { core::mem::replace(&mut (*fs).outputs, ptr::null()) });
        let Some(head) = NonNull::new(list as *mut Header) else {
            continue;
        };
        // SAFETY: (1): the list's jobs are complete and live; we link its tail to the chain.
        unsafe {
            let mut tail = head;
            while let Some(next) = NonNull::new(tail.as_ref().next.with(|n| *n) as *mut Header) {
                tail = next;
            }
            tail.as_ref().next.with_mut(|n| *n = chain);
        }
        chain = list;
    }
    // SAFETY: the chain holds complete jobs of this frame, live until the arena reset, and is
    // ours alone.
    unsafe { drop_untaken(shared, chain) };
}

/// Drops every output on an outputs list that nobody took.
///
/// # Safety
/// 1. Every job on the list is complete and live, and the list is ours alone.
unsafe fn drop_untaken(shared: &Shared, mut cur: *const Header) {
    while let Some(h) = NonNull::new(cur as *mut Header) {
        // SAFETY: (1).
        let header = unsafe { h.as_ref() };
        // SAFETY: (1): the completing workers are done with `next`.
        cur = header.next.with(|n| unsafe { *n });
        let s = header.handle.fetch_or(TAKEN, Ordering::AcqRel);
        if s & (TAKEN | PANICKED) == 0 {
            // SAFETY: not taken by anyone, and TAKEN now keeps everyone else away.
            let dropped = catch_unwind(AssertUnwindSafe(|| unsafe {
                (header.vtable.drop_output)(h)
            }));
            if let Err(p) = dropped {
                shared.record_panic(p);
            }
        }
    }
}
