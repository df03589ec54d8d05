//! A team of threads for the parallel sections of the kernels and ops: a product split in
//! blocks, a pass of an elementwise loop, a convolution's samples, a recurrent layer's
//! rounds.
//!
//! Handing such a section to rayon from a thread outside its pool (a program's main thread,
//! the usual caller) costs two hand-offs: the caller injects the section and sleeps while
//! the pool runs it, and the pool's workers, asleep since the section before, must be woken
//! first. A training step of a small model runs dozens of sections of a few tens of
//! microseconds each, and each hand-off is a sleep and a wake-up through the kernel's
//! scheduler (docs/performance.md, "Threads", has the count).
//!
//! Here the calling thread runs parts of the section itself, and the helpers, threads of
//! this team, spin for [`SPIN`] after a section before they sleep, so that a step's next
//! section finds them awake; this is the OpenMP runtimes' wait policy, which is PyTorch's.
//! The price is a core kept busy for that long after the last section. The thread count is
//! rayon's (`rayon::current_num_threads()`, so `RAYON_NUM_THREADS`, a global pool or
//! `ThreadPool::install` set it): the caller and that count less one helpers. One section
//! runs at a time: a caller that finds the team busy (another thread's section, or a
//! section started from inside a part) runs its parts itself, in order. Loops outside the
//! kernels (ndarray's parallel iterators on strided views) still go through rayon.

use std::any::Any;
use std::panic::{AssertUnwindSafe, catch_unwind, resume_unwind};
use std::sync::atomic::{AtomicBool, AtomicPtr, AtomicUsize, Ordering};
use std::sync::{Condvar, Mutex};
use std::time::{Duration, Instant};

/// How long a helper looks for a new section before it sleeps: longer than the gaps
/// between the parallel sections of a small model's step, so that it sleeps between steps
/// of a program that does other work, not between the sections of one step
/// (`cargo run --release --example workloads -- w1 2`).
const SPIN: Duration = Duration::from_micros(200);

/// A part of a section: `job(part)`.
pub(crate) type Job<'a> = dyn Fn(usize) + Sync + 'a;

/// A section in flight, on its caller's stack.
struct Section {
    /// The caller's job, its lifetime erased: valid while the section is published and
    /// until no helper uses it (`Team::users`), which the caller waits for.
    job: *const Job<'static>,
    parts: usize,
    /// The next part to claim.
    next: AtomicUsize,
    /// The parts that have ended.
    done: AtomicUsize,
    /// Helpers that may still join.
    seats: AtomicUsize,
    generation: usize,
    panic: Mutex<Option<Box<dyn Any + Send>>>,
}

impl Section {
    /// Claims and runs parts until none is left.
    fn work(&self) {
        loop {
            let part = self.next.fetch_add(1, Ordering::Relaxed);
            if part >= self.parts {
                return;
            }
            // SAFETY: see `job`: whoever calls `work` holds the section published or is
            // counted in `Team::users`.
            let job = unsafe { &*self.job };
            if let Err(payload) = catch_unwind(AssertUnwindSafe(|| job(part))) {
                self.panic.lock().unwrap_or_else(|e| e.into_inner()).get_or_insert(payload);
            }
            self.done.fetch_add(1, Ordering::Release);
        }
    }
}

struct Team {
    /// Held by the one caller whose section is in flight.
    busy: AtomicBool,
    /// That section, or null.
    section: AtomicPtr<Section>,
    /// Counts published sections, so that a helper sees a new one without touching it.
    generation: AtomicUsize,
    /// Helpers between reading `section` and being done with what they read.
    users: AtomicUsize,
    /// Helpers started so far.
    helpers: Mutex<usize>,
    started: AtomicUsize,
    /// Helpers asleep on `bell`, or about to be.
    sleepers: AtomicUsize,
    bell: (Mutex<()>, Condvar),
}

static TEAM: Team = Team {
    busy: AtomicBool::new(false),
    section: AtomicPtr::new(std::ptr::null_mut()),
    generation: AtomicUsize::new(0),
    users: AtomicUsize::new(0),
    helpers: Mutex::new(0),
    started: AtomicUsize::new(0),
    sleepers: AtomicUsize::new(0),
    bell: (Mutex::new(()), Condvar::new()),
};

/// Runs `job(part)` for every `part < parts`, on the calling thread and on up to
/// `rayon::current_num_threads() - 1` helpers, and returns when all have ended. A part
/// that panics makes this panic with its payload once every part has ended.
pub(crate) fn for_each(parts: usize, job: &Job<'_>) {
    if !try_for_each(parts, job) {
        // In order on this thread, with the team's promise: every part runs, and the first
        // panic is resumed after the last part.
        let mut first = None;
        for part in 0..parts {
            if let Err(payload) = catch_unwind(AssertUnwindSafe(|| job(part))) {
                first.get_or_insert(payload);
            }
        }
        if let Some(payload) = first {
            resume_unwind(payload);
        }
    }
}

/// [`for_each`] if the team is free and there are two threads or more for two parts or
/// more, and `true`; else `false`, having run nothing.
pub(crate) fn try_for_each(parts: usize, job: &Job<'_>) -> bool {
    let threads = rayon::current_num_threads().min(parts);
    if threads < 2 || TEAM.busy.compare_exchange(false, true, Ordering::Acquire, Ordering::Relaxed).is_err() {
        return false;
    }
    let helpers = start_helpers(threads - 1);
    // SAFETY: only the lifetime is erased; `job` outlives every use (see `Section::job`).
    let job: *const Job<'static> = unsafe { std::mem::transmute::<*const Job<'_>, *const Job<'static>>(job) };
    let generation = TEAM.generation.load(Ordering::Relaxed).wrapping_add(1);
    let section = Section {
        job,
        parts,
        next: AtomicUsize::new(0),
        done: AtomicUsize::new(0),
        seats: AtomicUsize::new(helpers),
        generation,
        panic: Mutex::new(None),
    };
    TEAM.section.store(std::ptr::from_ref(&section).cast_mut(), Ordering::SeqCst);
    TEAM.generation.store(generation, Ordering::SeqCst);
    if TEAM.sleepers.load(Ordering::SeqCst) > 0 {
        let _bell = TEAM.bell.0.lock().unwrap_or_else(|e| e.into_inner());
        TEAM.bell.1.notify_all();
    }
    section.work();
    wait_until(|| section.done.load(Ordering::Acquire) == parts);
    TEAM.section.store(std::ptr::null_mut(), Ordering::SeqCst);
    wait_until(|| TEAM.users.load(Ordering::SeqCst) == 0);
    TEAM.busy.store(false, Ordering::Release);
    if let Some(payload) = section.panic.into_inner().unwrap_or_else(|e| e.into_inner()) {
        resume_unwind(payload);
    }
    true
}

/// Splits `xs` into chunks of `chunk` elements (the last may be shorter) and runs
/// `f(index, chunk)` on each through [`for_each`], consecutive chunks grouped into at most
/// [`PARTS_PER_THREAD`] parts per thread.
pub(crate) fn for_each_chunk_mut<T: Send>(xs: &mut [T], chunk: usize, f: impl Fn(usize, &mut [T]) + Sync) {
    let (len, chunk) = (xs.len(), chunk.max(1));
    let chunks = len.div_ceil(chunk);
    let per = chunks.div_ceil(rayon::current_num_threads().max(1) * PARTS_PER_THREAD).max(1);
    let base = super::gemm::SendPtr(xs.as_mut_ptr());
    for_each(chunks.div_ceil(per), &|part| {
        for k in part * per..(part * per + per).min(chunks) {
            let start = k * chunk;
            let end = (start + chunk).min(len);
            // SAFETY: `start..end` lies inside `xs`, which is borrowed mutably for the call,
            // and each part is run once over its own chunks, so the chunks are disjoint.
            f(k, unsafe { std::slice::from_raw_parts_mut(base.get().add(start), end - start) });
        }
    });
}

/// Parts per thread in [`for_each_chunk_mut`]: enough that a thread that starts late does
/// not hold up the section, few enough that claiming parts (an atomic add on a line every
/// thread writes) does not show beside them: a batch norm's 4,096 planes of 1,024 elements
/// claimed one by one were slower than rayon's split (`cargo run --release --example
/// workloads -- bn 2`).
const PARTS_PER_THREAD: usize = 8;

/// `f(item)` for each of `items` (owned values, such as disjoint mutable views) through
/// [`map_collect`], in the order of the items.
pub(crate) fn map_items<I: Send, R: Send>(items: Vec<I>, f: impl Fn(I) -> R + Sync) -> Vec<R> {
    let slots: Vec<Mutex<Option<I>>> = items.into_iter().map(|item| Mutex::new(Some(item))).collect();
    // Each item is taken once, so the locks are never contended.
    map_collect(slots.len(), |k| f(slots[k].lock().unwrap_or_else(|e| e.into_inner()).take().expect("internal: each item once")))
}

/// `f(part)` for every `part < parts` through [`for_each`], in the order of the parts.
pub(crate) fn map_collect<R: Send>(parts: usize, f: impl Fn(usize) -> R + Sync) -> Vec<R> {
    let mut out: Vec<Option<R>> = (0..parts).map(|_| None).collect();
    for_each_chunk_mut(&mut out, 1, |k, slot| slot[0] = Some(f(k)));
    out.into_iter().map(|r| r.expect("internal: every part ran")).collect()
}

/// Spins until `ready()`, yielding the core now and then: what it waits for is running.
fn wait_until(ready: impl Fn() -> bool) {
    let mut spins = 0u32;
    while !ready() {
        spins = spins.wrapping_add(1);
        if spins.is_multiple_of(1024) {
            std::thread::yield_now();
        } else {
            std::hint::spin_loop();
        }
    }
}

/// Starts helpers until there are `wanted`, and returns how many there are (fewer if the
/// system refuses threads).
fn start_helpers(wanted: usize) -> usize {
    let started = TEAM.started.load(Ordering::Acquire);
    if started >= wanted {
        return wanted;
    }
    let mut count = TEAM.helpers.lock().unwrap_or_else(|e| e.into_inner());
    while *count < wanted {
        let name = format!("nabla-team-{}", *count + 1);
        if std::thread::Builder::new().name(name).spawn(help).is_err() {
            break;
        }
        *count += 1;
    }
    TEAM.started.store(*count, Ordering::Release);
    (*count).min(wanted)
}

/// A helper's life: wait for a section, spinning for [`SPIN`] and then asleep; take a seat
/// in it if one is left and run parts; again.
fn help() {
    let mut seen = TEAM.generation.load(Ordering::Acquire);
    loop {
        let start = Instant::now();
        let mut spins = 0u32;
        while TEAM.generation.load(Ordering::Acquire) == seen {
            spins = spins.wrapping_add(1);
            if spins.is_multiple_of(256) && start.elapsed() > SPIN {
                sleep(seen);
            } else {
                std::hint::spin_loop();
            }
        }
        TEAM.users.fetch_add(1, Ordering::SeqCst);
        let section = TEAM.section.load(Ordering::SeqCst);
        if section.is_null() {
            seen = TEAM.generation.load(Ordering::Acquire);
        } else {
            // SAFETY: the caller keeps the section alive until `users` is back to zero, and
            // it unpublished it before waiting for that, so a helper that counted itself
            // in and then found it published may use it.
            let section = unsafe { &*section };
            seen = section.generation;
            let seated = section.seats.fetch_update(Ordering::AcqRel, Ordering::Acquire, |s| s.checked_sub(1)).is_ok();
            if seated {
                section.work();
            }
        }
        TEAM.users.fetch_sub(1, Ordering::SeqCst);
    }
}

/// Sleeps until a section newer than `seen` is published.
fn sleep(seen: usize) {
    let mut bell = TEAM.bell.0.lock().unwrap_or_else(|e| e.into_inner());
    TEAM.sleepers.fetch_add(1, Ordering::SeqCst);
    while TEAM.generation.load(Ordering::SeqCst) == seen {
        bell = TEAM.bell.1.wait(bell).unwrap_or_else(|e| e.into_inner());
    }
    TEAM.sleepers.fetch_sub(1, Ordering::SeqCst);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn in_pool(threads: usize, f: impl FnOnce() + Send) {
        rayon::ThreadPoolBuilder::new().num_threads(threads).build().unwrap().install(f)
    }

    /// Every part runs once, on one thread or several, in many sections in a row (the
    /// helpers going from one to the next, and to sleep and back between some).
    #[test]
    fn every_part_runs_once() {
        for threads in [1, 2, 3] {
            in_pool(threads, || {
                for (round, parts) in [0, 1, 2, 3, 7, 64, 1000].into_iter().cycle().take(70).enumerate() {
                    let runs: Vec<AtomicUsize> = (0..parts).map(|_| AtomicUsize::new(0)).collect();
                    for_each(parts, &|p| {
                        runs[p].fetch_add(1, Ordering::Relaxed);
                    });
                    assert!(runs.iter().all(|r| r.load(Ordering::Relaxed) == 1), "{threads} threads, {parts} parts");
                    if round % 10 == 9 {
                        std::thread::sleep(SPIN * 3);
                    }
                }
            });
        }
    }

    /// With two threads, a section of two parts that each wait for the other completes:
    /// the second part runs on a helper, concurrently.
    #[test]
    fn parts_run_concurrently() {
        in_pool(2, || {
            // Another test may hold the team, and then the parts run in turn: try again.
            let met = (0..200).any(|_| {
                let (arrived, ran_alone) = (AtomicUsize::new(0), AtomicBool::new(false));
                for_each(2, &|_| {
                    arrived.fetch_add(1, Ordering::SeqCst);
                    let start = Instant::now();
                    while arrived.load(Ordering::SeqCst) < 2 {
                        if start.elapsed() > Duration::from_millis(50) {
                            ran_alone.store(true, Ordering::SeqCst);
                            return;
                        }
                    }
                });
                !ran_alone.load(Ordering::SeqCst)
            });
            assert!(met, "the two parts never ran at the same time");
        });
    }

    /// Sections started from several threads at once, and from inside a part, all
    /// complete, each part once.
    #[test]
    fn concurrent_and_nested_sections() {
        in_pool(2, || {
            std::thread::scope(|s| {
                for _ in 0..4 {
                    s.spawn(|| {
                        for _ in 0..200 {
                            let runs: Vec<AtomicUsize> = (0..12).map(|_| AtomicUsize::new(0)).collect();
                            for_each(3, &|outer| {
                                for_each(4, &|inner| {
                                    runs[outer * 4 + inner].fetch_add(1, Ordering::Relaxed);
                                });
                            });
                            assert!(runs.iter().all(|r| r.load(Ordering::Relaxed) == 1));
                        }
                    });
                }
            });
        });
    }

    /// A part that panics makes the section panic with its message, after the others ran,
    /// and the team serves the next section; on one thread too, where the parts run in
    /// order on the caller (as they do when the team is busy).
    #[test]
    fn a_panic_reaches_the_caller() {
        for threads in [1, 2] {
            in_pool(threads, a_panic_reaches_the_caller_in_this_pool);
        }
    }

    fn a_panic_reaches_the_caller_in_this_pool() {
        let ran = AtomicUsize::new(0);
        let caught = catch_unwind(AssertUnwindSafe(|| {
            for_each(8, &|p| {
                ran.fetch_add(1, Ordering::Relaxed);
                assert!(p != 5, "part five");
            })
        }));
        let payload = caught.expect_err("a panic");
        let message = payload.downcast_ref::<&str>().copied().unwrap_or_default();
        assert!(message.contains("part five"), "{message}");
        assert_eq!(ran.load(Ordering::Relaxed), 8);
        let after = AtomicUsize::new(0);
        for_each(8, &|_| {
            after.fetch_add(1, Ordering::Relaxed);
        });
        assert_eq!(after.load(Ordering::Relaxed), 8);
    }

    /// `map_items` and `map_collect` give one result per item, in the items' order, with
    /// more items than parts per thread (grouped) and fewer.
    #[test]
    fn maps_keep_the_order() {
        for threads in [1, 2] {
            in_pool(threads, || {
                for len in [0, 3, 100] {
                    let mut xs: Vec<usize> = (0..len).collect();
                    let doubled = map_items(xs.iter_mut().collect(), |x| {
                        *x += 1;
                        2 * (*x - 1)
                    });
                    assert_eq!(doubled, (0..len).map(|i| 2 * i).collect::<Vec<_>>());
                    assert_eq!(xs, (1..=len).collect::<Vec<_>>());
                    assert_eq!(map_collect(len, |i| i * i), (0..len).map(|i| i * i).collect::<Vec<_>>());
                }
            });
        }
    }

    /// Each chunk is handed out once, with its index, whether chunks are parts of their
    /// own or grouped (more chunks than parts per thread), on one thread or two.
    #[test]
    fn chunks_cover_the_slice() {
        for threads in [1, 2] {
            in_pool(threads, || {
                for (len, chunk) in [(0, 4), (1001, 100), (10_001, 10), (64, 1), (5, 0)] {
                    let mut xs = vec![usize::MAX; len];
                    let calls = AtomicUsize::new(0);
                    for_each_chunk_mut(&mut xs, chunk, |k, part| {
                        calls.fetch_add(1, Ordering::Relaxed);
                        let chunk = chunk.max(1);
                        assert_eq!(part.len(), chunk.min(len - k * chunk), "chunk {k}");
                        part.iter_mut().enumerate().for_each(|(i, x)| *x = k * chunk + i);
                    });
                    assert!(xs.iter().enumerate().all(|(i, &x)| i == x), "{len} by {chunk}");
                    assert_eq!(calls.into_inner(), len.div_ceil(chunk.max(1)));
                }
            });
        }
    }
}
