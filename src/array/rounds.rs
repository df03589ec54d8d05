//! A scheduler for rounds of short parallel jobs that depend on the round before: a
//! recurrent layer's time steps, split by blocks of units across the pool's threads.

use std::sync::atomic::{AtomicBool, Ordering};

/// Runs `rounds` rounds of `parts` jobs, `job(round, part, ready)`, on up to `parts`
/// threads (the caller and the helpers of [`team`](super::kernel::team), as many as rayon's
/// thread count) that stay with the loop from the first round to the last. A job calls
/// `ready(q)` before it reads what part `q` of the round before wrote, and must call it for
/// every part before it writes anything that round's jobs read (then they are all done).
///
/// A recurrent layer's steps are such rounds, each too short for a hand-off through
/// rayon: a worker that finds no work sleeps after a few tens of microseconds, and waking
/// it costs about as much again, at every step. Here the threads wait for each other by
/// spinning on flags (`RAYON_NUM_THREADS=2 cargo bench --bench ops -- lstm_layer`).
/// Waiting per part rather than per round lets a job start on its own part of the step
/// before while the other threads finish theirs, so less of the step is spent spinning.
/// Thread `k` runs part `k` of every round, so that its rows of the
/// weight stay in its core's cache (a variant that let any thread take any part, not kept,
/// was slower than the hand-offs); a part nobody has taken [`STEAL_AFTER`] into a wait for
/// it is run by the thread waiting, so a thread that arrives late, or never (busy elsewhere
/// with another section), delays the loop but cannot stall it, and with one thread the jobs run in
/// order. A job that panics makes the jobs waiting for anything panic too, so the loop ends.
pub(crate) fn run_rounds(rounds: usize, parts: usize, job: &RoundJob<'_>) {
    let rounds_state = Rounds {
        parts,
        claimed: (0..rounds * parts).map(|_| AtomicBool::new(false)).collect(),
        done: (0..rounds * parts).map(|_| AtomicBool::new(false)).collect(),
        failed: AtomicBool::new(false),
        job,
    };
    let state = &rounds_state;
    let work = |me: usize| {
        struct Flag<'a>(&'a AtomicBool);
        impl Drop for Flag<'_> {
            fn drop(&mut self) {
                if std::thread::panicking() {
                    self.0.store(true, Ordering::Release);
                }
            }
        }
        let _flag = Flag(&state.failed);
        (0..rounds).for_each(|s| state.run(s, me));
    };
    let threads = rayon::current_num_threads().min(parts);
    // The caller takes part 0 (the team's first part), the helpers the rest; with one
    // thread, or the team busy with another caller's section, the jobs run in order here.
    let teamed = super::kernel::team::try_for_each(threads, &|k| {
        work(k);
        if k == 0 {
            // The parts of the last round that no helper has finished, or taken.
            (0..parts).for_each(|q| state.wait_for(rounds, q));
        }
    });
    if !teamed {
        (0..rounds).for_each(|s| (0..parts).for_each(|p| state.run(s, p)));
    }
}

/// A job of [`run_rounds`]: `(round, part, ready)`.
pub(crate) type RoundJob<'a> = dyn Fn(usize, usize, &dyn Fn(usize)) + Sync + 'a;

/// The shared state of [`run_rounds`]: per job, whether a thread has taken it and whether
/// it is done.
struct Rounds<'a> {
    parts: usize,
    claimed: Vec<AtomicBool>,
    done: Vec<AtomicBool>,
    /// Set when a job panics, so that the others stop waiting.
    failed: AtomicBool,
    job: &'a RoundJob<'a>,
}

impl Rounds<'_> {
    /// Runs job `(s, p)` unless a thread has taken it.
    fn run(&self, s: usize, p: usize) {
        let k = s * self.parts + p;
        if !self.claimed[k].swap(true, Ordering::AcqRel) {
            (self.job)(s, p, &|q| self.wait_for(s, q));
            self.done[k].store(true, Ordering::Release);
        }
    }

    /// Returns once part `q` of the round before `s` is done (at once for the first),
    /// running it here if nobody has taken it by [`STEAL_AFTER`]. Its own waits are for
    /// earlier rounds still, so the jobs a thread has open wait on strictly older ones and
    /// no wait can close a cycle.
    fn wait_for(&self, s: usize, q: usize) {
        let Some(before) = s.checked_sub(1) else { return };
        let done = &self.done[before * self.parts + q];
        let (start, mut spins) = (std::time::Instant::now(), 0u32);
        while !done.load(Ordering::Acquire) {
            assert!(!self.failed.load(Ordering::Acquire), "internal: another part of the recurrence panicked");
            spins += 1;
            if spins % 64 == 0 && start.elapsed() > STEAL_AFTER {
                self.run(before, q);
                std::thread::yield_now();
            } else {
                std::hint::spin_loop();
            }
        }
    }
}

/// How long a thread waits for a part of the round before its own before it runs it, if
/// nobody has taken it: a small fraction of a step of a layer of a few hundred units (see
/// `lstm_layer/layer_fwd` in `cargo bench --bench ops`).
const STEAL_AFTER: std::time::Duration = std::time::Duration::from_micros(30);

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Mutex;

    /// Runs `run_rounds` in a pool of `threads` with jobs that read every part of the round
    /// before (own first, as the layer's do), and checks that every job ran once and that
    /// each `ready(q)` returned only after job `(s - 1, q)` had ended.
    fn check_rounds(threads: usize, rounds: usize, parts: usize, busy_neighbour: bool) {
        let pool = rayon::ThreadPoolBuilder::new().num_threads(threads).build().unwrap();
        let ended: Vec<AtomicBool> = (0..rounds * parts).map(|_| AtomicBool::new(false)).collect();
        let runs: Vec<std::sync::atomic::AtomicUsize> = (0..rounds * parts).map(|_| Default::default()).collect();
        let early = Mutex::new(Vec::new());
        let job = |s: usize, p: usize, ready: &dyn Fn(usize)| {
            runs[s * parts + p].fetch_add(1, Ordering::Relaxed);
            for q in (0..parts).map(|k| (p + k) % parts) {
                ready(q);
                if s > 0 && !ended[(s - 1) * parts + q].load(Ordering::Acquire) {
                    early.lock().unwrap().push((s, p, q));
                }
                std::thread::sleep(std::time::Duration::from_micros(20));
            }
            ended[s * parts + p].store(true, Ordering::Release);
        };
        pool.install(|| {
            if busy_neighbour {
                // The other worker is taken for longer than the whole loop: the helper
                // cannot start, and the caller must run every part itself.
                rayon::join(|| run_rounds(rounds, parts, &job), || std::thread::sleep(std::time::Duration::from_millis(100)));
            } else {
                run_rounds(rounds, parts, &job);
            }
        });
        let runs: Vec<usize> = runs.iter().map(|r| r.load(Ordering::Relaxed)).collect();
        assert_eq!(runs, vec![1; rounds * parts], "{threads} threads, {parts} parts: runs of each job");
        assert!(ended.iter().all(|e| e.load(Ordering::Relaxed)), "{threads} threads, {parts} parts: a job did not end");
        assert_eq!(early.into_inner().unwrap(), vec![], "{threads} threads, {parts} parts: (round, part, read part) read too early");
    }

    #[test]
    fn rounds_run_every_job_once_in_order_whoever_runs_them() {
        check_rounds(1, 5, 1, false);
        check_rounds(1, 5, 3, false);
        check_rounds(2, 20, 2, false);
        // More parts than threads: the parts without a thread are taken by the waiting.
        check_rounds(2, 6, 3, false);
        check_rounds(3, 6, 3, false);
        check_rounds(2, 6, 2, true);
    }

    #[test]
    fn a_panicking_job_ends_the_rounds_instead_of_stalling_them() {
        let pool = rayon::ThreadPoolBuilder::new().num_threads(2).build().unwrap();
        let job = |s: usize, p: usize, ready: &dyn Fn(usize)| {
            (0..2).map(|k| (p + k) % 2).for_each(ready);
            assert!((s, p) != (3, 1), "job (3, 1) fails");
        };
        let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| pool.install(|| run_rounds(8, 2, &job))));
        assert!(outcome.is_err());
    }
}
