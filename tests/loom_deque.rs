//! Loom model for the work-stealing deque: with the owner pushing and popping while thieves
//! steal (one job or a batch), every job is taken exactly once, none is lost, and every pushed
//! job is visible to thieves at once.
//!
//! `RUSTFLAGS="--cfg loom" cargo test --release --test loom_deque`
#![cfg(loom)]

use frame_scheduler::loom_api::DequeModel;
use loom::sync::Arc;
use loom::thread;

/// A deque of `capacity` holding jobs `1..=jobs`.
fn filled(capacity: usize, jobs: usize) -> Arc<DequeModel> {
    let deque = Arc::new(DequeModel::new(capacity));
    // SAFETY: the model's main thread is the owner.
    unsafe {
        for n in 1..=jobs {
            assert!(deque.push(n));
        }
    }
    deque
}

/// The owner pops until the deque is empty.
fn drain(deque: &DequeModel) -> Vec<usize> {
    let mut taken = Vec::new();
    // SAFETY: only the owner (the model's main thread) calls this.
    while let Some(n) = unsafe { deque.pop() } {
        taken.push(n);
    }
    taken
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

/// The owner pops everything while a thief steals twice, concurrently.
#[test]
fn pops_racing_a_thief_take_each_job_once() {
    loom::model(|| {
        let deque = filled(8, 3);
        let thief = {
            let deque = deque.clone();
            thread::spawn(move || (0..2).filter_map(|_| deque.steal()).collect::<Vec<_>>())
        };
        let mut taken = drain(&deque);
        taken.extend(thief.join().unwrap());
        check(taken, 3);
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
        let mut taken: Vec<usize> = unsafe { deque.pop() }.into_iter().collect();
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
        let pushed = unsafe { deque.push(3) };
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

/// The race the owner's `SeqCst` fence exists for: two jobs, two thieves (taking one job, or a
/// batch of up to half). One thief takes the first job; the other must not take the second
/// while the owner, reading a stale `top`, takes it too without a CAS.
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
        // SAFETY: owner. One pop races the thieves; the rest is drained after they are done.
        let mut taken: Vec<usize> = unsafe { deque.pop() }.into_iter().collect();
        taken.extend(thieves.into_iter().flat_map(|t| t.join().unwrap()));
        taken.extend(drain(&deque));
        check(taken, jobs);
    });
}

#[test]
fn owner_pop_and_two_thieves_never_share_a_job() {
    pop_against_two_thieves(2, false);
}

/// The same race with batch steals: three jobs, two thieves each taking up to half.
#[test]
fn owner_pop_and_two_batch_thieves_never_share_a_job() {
    pop_against_two_thieves(3, true);
}

/// A batch steal (each job claimed by its own CAS, `bottom` re-read before each) racing the
/// owner's pops: every job exactly once.
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

/// A patient thief (`min_len` 2), running while the owner pops, never takes a deque's last
/// job: the owner's pop always gets it.
#[test]
fn patient_thief_leaves_the_last_job() {
    loom::model(|| {
        let deque = filled(4, 1);
        let thief = {
            let deque = deque.clone();
            thread::spawn(move || deque.steal_batch(2))
        };
        // SAFETY: owner.
        let popped = unsafe { deque.pop() };
        let stolen = thief.join().unwrap();
        assert!(stolen.is_empty(), "a patient thief took the last job");
        assert_eq!(popped, Some(1));
    });
}

/// No job is hidden: a job the owner pushes, after which the owner does nothing more (its job
/// blocks, or computes for long), is taken by a thief that keeps looking. With the lazy
/// publication of an earlier version the thief looked for ever.
#[test]
fn a_pushed_job_is_visible_to_a_thief_at_once() {
    loom::model(|| {
        let deque = filled(4, 1);
        let thief = {
            let deque = deque.clone();
            thread::spawn(move || {
                let mut stolen = deque.steal_batch(1);
                while stolen.len() < 2 {
                    thread::yield_now();
                    stolen.extend(deque.steal_batch(1));
                }
                stolen
            })
        };
        // SAFETY: owner. It pushes one more job, then takes nothing.
        assert!(unsafe { deque.push(2) });
        check(thief.join().unwrap(), 2);
    });
}
