//! Loom model for the work-stealing deque: with the owner pushing and popping (in batches) while
//! thieves steal, every job is taken exactly once, and none is lost.
//!
//! `RUSTFLAGS="--cfg loom" cargo test --release --test loom_deque`
#![cfg(loom)]

use frame_scheduler::loom_api::DequeModel;
use loom::sync::Arc;
use loom::thread;

/// A deque of `capacity` holding jobs `1..=jobs`, all published to thieves.
fn filled(capacity: usize, jobs: usize) -> Arc<DequeModel> {
    let deque = Arc::new(DequeModel::new(capacity));
    // SAFETY: the model's main thread is the owner.
    unsafe {
        for n in 1..=jobs {
            assert!(deque.push(n));
        }
        deque.publish();
    }
    deque
}

/// The owner pops until the deque is empty.
fn drain(deque: &DequeModel) -> Vec<usize> {
    let mut taken = Vec::new();
    loop {
        // SAFETY: only the owner (the model's main thread) calls this.
        let more = unsafe { deque.pop() };
        if more.is_empty() {
            return taken;
        }
        taken.extend(more);
    }
}

fn check(taken: Vec<usize>, jobs: usize) {
    let mut taken = taken;
    taken.sort_unstable();
    assert_eq!(
        taken,
        (1..=jobs).collect::<Vec<_>>(),
        "each job taken exactly once"
    );
}

/// The owner pushes four jobs and pops (a batch) while a thief steals twice.
#[test]
fn batch_pop_racing_a_thief_takes_each_job_once() {
    loom::model(|| {
        let deque = filled(8, 4);
        let thief = {
            let deque = deque.clone();
            thread::spawn(move || (0..2).filter_map(|_| deque.steal()).collect::<Vec<_>>())
        };
        // SAFETY: owner.
        let mut taken = unsafe { deque.pop() };
        let stolen = thief.join().unwrap();
        // Drain what is left.
        taken.extend(drain(&deque));
        taken.extend(stolen);
        check(taken, 4);
    });
}

/// The last job: the owner's pop and a thief's steal race for it; exactly one wins.
#[test]
fn last_job_goes_to_exactly_one() {
    loom::model(|| {
        let deque = filled(4, 1);
        let thief = {
            let deque = deque.clone();
            thread::spawn(move || deque.steal())
        };
        // SAFETY: owner.
        let mut taken = unsafe { deque.pop() };
        taken.extend(thief.join().unwrap());
        check(taken, 1);
    });
}

/// Two thieves and an owner who keeps pushing: nothing lost, nothing doubled, and a full deque
/// refuses a push instead of overwriting a job.
#[test]
fn two_thieves_and_a_pushing_owner() {
    loom::model(|| {
        let deque = filled(2, 2);
        let thieves: Vec<_> = (0..2)
            .map(|_| {
                let deque = deque.clone();
                thread::spawn(move || deque.steal())
            })
            .collect();
        // SAFETY: owner. A push into a full deque must fail; one into room must succeed.
        let pushed = unsafe {
            let pushed = deque.push(3);
            deque.publish();
            pushed
        };
        let mut taken: Vec<usize> = thieves
            .into_iter()
            .filter_map(|t| t.join().unwrap())
            .collect();
        taken.extend(drain(&deque));
        let jobs = if pushed { 3 } else { 2 };
        if !pushed {
            assert!(!taken.contains(&3));
        }
        check(taken, jobs);
    });
}

/// The owner pushes `jobs` jobs and pops once while two thieves each steal once (one job, or a
/// batch of up to half); then the owner drains what is left. Every job must be taken exactly
/// once.
fn pop_against_two_thieves(jobs: usize, batch_thieves: bool) {
    loom::model(move || {
        let deque = filled(4, jobs);
        let thieves: Vec<_> = (0..2)
            .map(|_| {
                let deque = deque.clone();
                thread::spawn(move || {
                    if batch_thieves {
                        deque.steal_batch(1)
                    } else {
                        deque.steal().into_iter().collect()
                    }
                })
            })
            .collect();
        // SAFETY: owner.
        let mut taken = unsafe { deque.pop() };
        taken.extend(thieves.into_iter().flat_map(|t| t.join().unwrap()));
        taken.extend(drain(&deque));
        check(taken, jobs);
    });
}

/// The race the owner's `SeqCst` fence exists for: two jobs, two thieves. One thief takes the
/// first job; the other must not take the second while the owner, reading a stale `top`, takes
/// it too without a CAS.
#[test]
fn owner_pop_and_two_thieves_never_share_a_job() {
    pop_against_two_thieves(2, false);
}

/// The same race on the batch path: four jobs (the owner takes two at once), two thieves taking
/// batches, so that together they can reach into the owner's two.
#[test]
fn batch_pop_and_two_thieves_never_share_a_job() {
    pop_against_two_thieves(4, true);
}

/// A batch steal (each job claimed by its own CAS, `bottom` re-read before each) racing the
/// owner's single and batched pops: every job exactly once.
#[test]
fn batch_steal_racing_owner_pops() {
    loom::model(|| {
        let deque = filled(8, 4);
        let thief = {
            let deque = deque.clone();
            thread::spawn(move || deque.steal_batch(1))
        };
        let mut taken = drain(&deque);
        taken.extend(thief.join().unwrap());
        check(taken, 4);
    });
}

/// A patient thief (`min_len` 2) never takes a deque's last job.
#[test]
fn patient_thief_leaves_the_last_job() {
    loom::model(|| {
        let deque = filled(4, 1);
        let thief = {
            let deque = deque.clone();
            thread::spawn(move || deque.steal_batch(2))
        };
        let stolen = thief.join().unwrap();
        assert!(stolen.is_empty());
        // SAFETY: owner.
        assert_eq!(unsafe { deque.pop() }, vec![1]);
    });
}

/// Jobs pushed but not yet published are the owner's alone: a thief racing the owner's pop
/// (which publishes first) still takes each job at most once, and none is lost.
#[test]
fn unpublished_jobs_and_a_thief() {
    loom::model(|| {
        let deque = filled(8, 2);
        // SAFETY: owner. Two more, still private.
        unsafe {
            assert!(deque.push(3));
            assert!(deque.push(4));
        }
        let thief = {
            let deque = deque.clone();
            thread::spawn(move || deque.steal_batch(1))
        };
        let mut taken = drain(&deque);
        let stolen = thief.join().unwrap();
        assert!(
            !stolen.contains(&4),
            "a thief took the newest job, which the owner pops first"
        );
        taken.extend(stolen);
        check(taken, 4);
    });
}
