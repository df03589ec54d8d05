//! Elementwise loops over contiguous buffers: one pass, split across threads for large
//! arrays, compiled for the widest vector extension the CPU has.

use crate::array::Element;
use ndarray::{ArrayD, ArrayViewD, ArrayViewMutD, IxDyn, Zip};
use std::mem::MaybeUninit;

/// Below this many elements a loop runs on one thread: spawning costs more than it saves.
/// (Under Miri, tiny, so that its checks reach the threaded paths in reasonable time.)
pub(crate) const PARALLEL_MIN_LEN: usize = if cfg!(miri) { 64 } else { 1 << 16 };
const CHUNK: usize = if cfg!(miri) { 16 } else { 1 << 14 };

/// A loop that writes `out[i]` from its inputs at `start + i`. Its `fill` is
/// `#[inline(always)]`, so that it is compiled inside each `target_feature` function below
/// (closures would not be inlined reliably, and their loops would stay at the baseline
/// width).
pub(crate) trait Loop<T>: Sync {
    fn fill(&self, start: usize, out: &mut [MaybeUninit<T>]);
}

struct Map<'a, T, F> {
    xs: &'a [T],
    f: F,
}

impl<T: Element, F: Fn(T) -> T + Sync> Loop<T> for Map<'_, T, F> {
    #[inline(always)]
    fn fill(&self, start: usize, out: &mut [MaybeUninit<T>]) {
        for (o, &x) in out.iter_mut().zip(&self.xs[start..]) {
            o.write((self.f)(x));
        }
    }
}

struct Zip2<'a, T, F> {
    xs: &'a [T],
    ys: &'a [T],
    f: F,
}

impl<T: Element, F: Fn(T, T) -> T + Sync> Loop<T> for Zip2<'_, T, F> {
    #[inline(always)]
    fn fill(&self, start: usize, out: &mut [MaybeUninit<T>]) {
        for ((o, &x), &y) in out.iter_mut().zip(&self.xs[start..]).zip(&self.ys[start..]) {
            o.write((self.f)(x, y));
        }
    }
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,avx512vl,avx512dq,avx2,fma")]
unsafe fn fill_avx512<T, L: Loop<T>>(l: &L, start: usize, out: &mut [MaybeUninit<T>]) {
    l.fill(start, out)
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn fill_avx2<T, L: Loop<T>>(l: &L, start: usize, out: &mut [MaybeUninit<T>]) {
    l.fill(start, out)
}

/// Runs the loop compiled for the widest vector extension the CPU has.
fn fill_widest<T, L: Loop<T>>(l: &L, start: usize, out: &mut [MaybeUninit<T>]) {
    #[cfg(target_arch = "x86_64")]
    {
        if std::is_x86_feature_detected!("avx512f") {
            // SAFETY: the CPU has the features the function is compiled for.
            return unsafe { fill_avx512(l, start, out) };
        }
        if std::is_x86_feature_detected!("avx2") && std::is_x86_feature_detected!("fma") {
            // SAFETY: as above.
            return unsafe { fill_avx2(l, start, out) };
        }
    }
    l.fill(start, out)
}

/// A fresh buffer of `len` elements written by `l`, in parallel chunks when large.
pub(crate) fn run_loop<T: Element>(len: usize, shape: &[usize], l: &impl Loop<T>) -> ArrayD<T> {
    let mut out: Vec<T> = crate::array::pool::take(len);
    let spare = &mut out.spare_capacity_mut()[..len];
    // With one thread in the pool, handing the work to it only adds a wake-up.
    if len >= PARALLEL_MIN_LEN && rayon::current_num_threads() > 1 {
        super::team::for_each_chunk_mut(spare, CHUNK, |k, chunk| fill_widest(l, k * CHUNK, chunk));
    } else {
        fill_widest(l, 0, spare);
    }
    // SAFETY: every `Loop` writes each element of the slice it is given, and the slices
    // cover the first `len` slots of `out`.
    unsafe { out.set_len(len) };
    ArrayD::from_shape_vec(IxDyn(shape), out).expect("same length")
}

/// `f(x)` for every element.
pub(crate) fn map<T: Element>(x: &ArrayViewD<'_, T>, f: impl Fn(T) -> T + Sync + Send) -> ArrayD<T> {
    match x.as_slice() {
        Some(xs) => run_loop(xs.len(), x.shape(), &Map { xs, f }),
        None => Zip::from(x).map_collect(|&v| f(v)),
    }
}

/// `f(a, b)` for every element of two arrays of one shape.
pub(crate) fn zip2<T: Element>(a: &ArrayViewD<'_, T>, b: &ArrayViewD<'_, T>, f: impl Fn(T, T) -> T + Sync + Send) -> ArrayD<T> {
    debug_assert_eq!(a.shape(), b.shape());
    match (a.as_slice(), b.as_slice()) {
        (Some(xs), Some(ys)) => run_loop(xs.len(), a.shape(), &Zip2 { xs, ys, f }),
        _ if a.len() >= PARALLEL_MIN_LEN => Zip::from(a).and(b).par_map_collect(|&x, &y| f(x, y)),
        _ => Zip::from(a).and(b).map_collect(|&x, &y| f(x, y)),
    }
}

/// `a = f(a, b)` for every element of two arrays of one shape, in place.
pub(crate) fn zip2_in_place<T: Element>(a: &mut ArrayViewMutD<'_, T>, b: &ArrayViewD<'_, T>, f: impl Fn(T, T) -> T + Sync + Send) {
    debug_assert_eq!(a.shape(), b.shape());
    let parallel = a.len() >= PARALLEL_MIN_LEN && rayon::current_num_threads() > 1;
    match (a.as_slice_mut(), b.as_slice()) {
        (Some(xs), Some(ys)) if parallel => super::team::for_each_chunk_mut(xs, CHUNK, |k, xs| {
            xs.iter_mut().zip(&ys[k * CHUNK..]).for_each(|(x, &y)| *x = f(*x, y));
        }),
        (Some(xs), Some(ys)) => xs.iter_mut().zip(ys).for_each(|(x, &y)| *x = f(*x, y)),
        _ => Zip::from(a).and(b).for_each(|x, &y| *x = f(*x, y)),
    }
}
