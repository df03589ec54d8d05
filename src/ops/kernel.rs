//! Elementwise loops over contiguous buffers: split across threads for large arrays, and
//! compiled for AVX2 or AVX-512 when the CPU has them (chosen at run time, so the build
//! stays portable). Results do not depend on the path taken: Rust never fuses `a * b + c`
//! into an FMA on its own, so every path rounds the same way.

use crate::tensor::Element;
use ndarray::{ArrayD, ArrayViewD, IxDyn, Zip};
use rayon::prelude::*;
use std::mem::MaybeUninit;

/// Below this many elements a loop runs on one thread: spawning costs more than it saves.
pub(crate) const PARALLEL_MIN_LEN: usize = 1 << 16;
const CHUNK: usize = 1 << 14;

/// Runs `body` in a function compiled with the widest vector extension the CPU has, so
/// the loops inlined into it are vectorised for that width.
#[inline(always)]
fn with_widest_simd<R>(body: impl FnOnce() -> R) -> R {
    #[cfg(target_arch = "x86_64")]
    {
        if std::is_x86_feature_detected!("avx512f") {
            // SAFETY: the CPU supports the features the function is compiled for.
            return unsafe { with_avx512(body) };
        }
        if std::is_x86_feature_detected!("avx2") && std::is_x86_feature_detected!("fma") {
            // SAFETY: as above.
            return unsafe { with_avx2(body) };
        }
    }
    body()
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,avx512vl,avx512dq,avx2,fma")]
unsafe fn with_avx512<R>(body: impl FnOnce() -> R) -> R {
    body()
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn with_avx2<R>(body: impl FnOnce() -> R) -> R {
    body()
}

/// Fills `out[i] = f(i)` for a fresh buffer of `len` elements, in parallel chunks when
/// large; `f` reads the inputs at index `i`.
fn fill<T: Element>(len: usize, f: impl Fn(&mut [MaybeUninit<T>], usize) + Sync) -> Vec<T> {
    let mut out: Vec<T> = Vec::with_capacity(len);
    let spare = &mut out.spare_capacity_mut()[..len];
    if len >= PARALLEL_MIN_LEN {
        spare.par_chunks_mut(CHUNK).enumerate().for_each(|(k, chunk)| with_widest_simd(|| f(chunk, k * CHUNK)));
    } else {
        with_widest_simd(|| f(spare, 0));
    }
    // SAFETY: `f` wrote every element of `spare`, the first `len` slots of `out`.
    unsafe { out.set_len(len) };
    out
}

/// `f(x)` for every element.
pub(crate) fn map<T: Element>(x: &ArrayViewD<'_, T>, f: impl Fn(T) -> T + Sync + Send) -> ArrayD<T> {
    let Some(xs) = x.as_slice() else {
        return Zip::from(x).map_collect(|&v| f(v));
    };
    let out = fill(xs.len(), |chunk, start| {
        for (o, &v) in chunk.iter_mut().zip(&xs[start..]) {
            o.write(f(v));
        }
    });
    ArrayD::from_shape_vec(IxDyn(x.shape()), out).expect("same length")
}

/// `f(a, b)` for every element of two arrays of one shape.
pub(crate) fn zip2<T: Element>(a: &ArrayViewD<'_, T>, b: &ArrayViewD<'_, T>, f: impl Fn(T, T) -> T + Sync + Send) -> ArrayD<T> {
    debug_assert_eq!(a.shape(), b.shape());
    let (Some(xs), Some(ys)) = (a.as_slice(), b.as_slice()) else {
        let zip = Zip::from(a).and(b);
        return if a.len() >= PARALLEL_MIN_LEN { zip.par_map_collect(|&x, &y| f(x, y)) } else { zip.map_collect(|&x, &y| f(x, y)) };
    };
    let out = fill(xs.len(), |chunk, start| {
        for ((o, &x), &y) in chunk.iter_mut().zip(&xs[start..]).zip(&ys[start..]) {
            o.write(f(x, y));
        }
    });
    ArrayD::from_shape_vec(IxDyn(a.shape()), out).expect("same length")
}

/// `f(a, b, c)` for every element of three arrays of one shape.
pub(crate) fn zip3<T: Element>(
    a: &ArrayViewD<'_, T>,
    b: &ArrayViewD<'_, T>,
    c: &ArrayViewD<'_, T>,
    f: impl Fn(T, T, T) -> T + Sync + Send,
) -> ArrayD<T> {
    let (Some(xs), Some(ys), Some(zs)) = (a.as_slice(), b.as_slice(), c.as_slice()) else {
        return Zip::from(a).and(b).and(c).map_collect(|&x, &y, &z| f(x, y, z));
    };
    let out = fill(xs.len(), |chunk, start| {
        for (((o, &x), &y), &z) in chunk.iter_mut().zip(&xs[start..]).zip(&ys[start..]).zip(&zs[start..]) {
            o.write(f(x, y, z));
        }
    });
    ArrayD::from_shape_vec(IxDyn(a.shape()), out).expect("same length")
}
