//! The crate's only `unsafe` code (the rest of the crate is compiled under
//! `#![deny(unsafe_code)]`), behind safe functions:
//!
//! - elementwise loops over contiguous buffers, split across threads for large arrays and
//!   compiled for AVX2 or AVX-512 when the CPU has them (chosen at run time, so the build
//!   stays portable). Results do not depend on the path taken: Rust never fuses `a * b + c`
//!   into an FMA on its own, so every path rounds the same way;
//! - the matrix product, the `gemm` crate called on ndarray's buffers with their strides (a
//!   transposed view costs no copy) and split across threads;
//! - a kernel for thin products with a weight reused at every call ([`ThinLhs`]: a
//!   recurrent step's `W_hh hᵀ`, and a convolution's weight times its input's shifted
//!   rows, [`ThinLhs::shifted`]), in AVX2 and FMA; it rounds differently from the gemm
//!   crate, whose sums run in another order.
//!
//! Each `unsafe` block states its safety argument. The unit tests below run under Miri
//! (`cargo +nightly miri test --lib kernel`), which checks these blocks for undefined
//! behaviour on the portable paths (Miri reports no SIMD features, so the `target_feature`
//! copies of the loops are the same source compiled for wider registers; the thin kernel's
//! intrinsics are checked by its tests against a loop, not by Miri).

use crate::tensor::Element;
use ndarray::{Array2, ArrayD, ArrayView2, ArrayViewD, ArrayViewMut2, ArrayViewMutD, Axis, IxDyn, Zip};
use rayon::prelude::*;
use std::mem::MaybeUninit;
use std::ops::Range;

/// Below this many elements a loop runs on one thread: spawning costs more than it saves.
/// (Under Miri, tiny, so that its checks reach the threaded paths in reasonable time.)
pub(crate) const PARALLEL_MIN_LEN: usize = if cfg!(miri) { 64 } else { 1 << 16 };
const CHUNK: usize = if cfg!(miri) { 16 } else { 1 << 14 };

/// A loop that writes `out[i]` from its inputs at `start + i`. Its `fill` is
/// `#[inline(always)]`, so that it is compiled inside each `target_feature` function below
/// (closures would not be inlined reliably, and their loops would stay at the baseline
/// width).
trait Loop<T>: Sync {
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
fn run<T: Element>(len: usize, shape: &[usize], l: &impl Loop<T>) -> ArrayD<T> {
    let mut out: Vec<T> = crate::tensor::pool::take(len);
    let spare = &mut out.spare_capacity_mut()[..len];
    // With one thread in the pool, handing the work to it only adds a wake-up.
    if len >= PARALLEL_MIN_LEN && rayon::current_num_threads() > 1 {
        spare.par_chunks_mut(CHUNK).enumerate().for_each(|(k, chunk)| fill_widest(l, k * CHUNK, chunk));
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
        Some(xs) => run(xs.len(), x.shape(), &Map { xs, f }),
        None => Zip::from(x).map_collect(|&v| f(v)),
    }
}

/// `f(a, b)` for every element of two arrays of one shape.
pub(crate) fn zip2<T: Element>(a: &ArrayViewD<'_, T>, b: &ArrayViewD<'_, T>, f: impl Fn(T, T) -> T + Sync + Send) -> ArrayD<T> {
    debug_assert_eq!(a.shape(), b.shape());
    match (a.as_slice(), b.as_slice()) {
        (Some(xs), Some(ys)) => run(xs.len(), a.shape(), &Zip2 { xs, ys, f }),
        _ if a.len() >= PARALLEL_MIN_LEN => Zip::from(a).and(b).par_map_collect(|&x, &y| f(x, y)),
        _ => Zip::from(a).and(b).map_collect(|&x, &y| f(x, y)),
    }
}

/// `a = f(a, b)` for every element of two arrays of one shape, in place.
pub(crate) fn zip2_in_place<T: Element>(a: &mut ArrayViewMutD<'_, T>, b: &ArrayViewD<'_, T>, f: impl Fn(T, T) -> T + Sync + Send) {
    debug_assert_eq!(a.shape(), b.shape());
    let parallel = a.len() >= PARALLEL_MIN_LEN && rayon::current_num_threads() > 1;
    match (a.as_slice_mut(), b.as_slice()) {
        (Some(xs), Some(ys)) if parallel => xs.par_chunks_mut(CHUNK).zip(ys.par_chunks(CHUNK)).for_each(|(xs, ys)| {
            xs.iter_mut().zip(ys).for_each(|(x, &y)| *x = f(*x, y));
        }),
        (Some(xs), Some(ys)) => xs.iter_mut().zip(ys).for_each(|(x, &y)| *x = f(*x, y)),
        _ => Zip::from(a).and(b).for_each(|x, &y| *x = f(*x, y)),
    }
}

/// A loop body compiled inside [`run_widest`]'s `target_feature` functions: its `run` must
/// be `#[inline(always)]` for that to happen.
pub(crate) trait Body {
    fn run(&mut self);
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,avx512vl,avx512dq,avx2,fma")]
unsafe fn body_avx512(b: &mut impl Body) {
    b.run()
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn body_avx2(b: &mut impl Body) {
    b.run()
}

/// Runs `b` compiled for the widest vector extension the CPU has (see [`fill_widest`]).
pub(crate) fn run_widest(b: &mut impl Body) {
    #[cfg(target_arch = "x86_64")]
    {
        if std::is_x86_feature_detected!("avx512f") {
            // SAFETY: the CPU has the features the function is compiled for.
            return unsafe { body_avx512(b) };
        }
        if std::is_x86_feature_detected!("avx2") && std::is_x86_feature_detected!("fma") {
            // SAFETY: as above.
            return unsafe { body_avx2(b) };
        }
    }
    b.run()
}

/// Asks the CPU to bring rows `rows` of `a` into its L2 cache, one request per 64-byte line,
/// without waiting for them: for rows far apart in memory that a later pass will read or
/// overwrite, so their cache misses overlap with the work in between instead of stalling
/// that pass. Only a hint: it changes no value, and does nothing off x86-64.
pub(crate) fn prefetch_rows<T>(a: &ArrayView2<'_, T>, rows: impl Iterator<Item = usize>) {
    #[cfg(target_arch = "x86_64")]
    {
        const LINE: usize = 64;
        let bytes = a.ncols() * std::mem::size_of::<T>();
        let row_bytes = a.strides()[0] * std::mem::size_of::<T>() as isize;
        let base = a.as_ptr().cast::<i8>();
        if bytes == 0 || a.strides()[1] != 1 {
            return;
        }
        for r in rows.filter(|&r| r < a.nrows()) {
            // wrapping_offset: the address is only handed to the prefetch, never read
            // through, and stays inside `a`'s allocation for rows in range.
            let row = base.wrapping_offset(r as isize * row_bytes);
            // The row's last byte too: a row that starts mid-line ends in one more line.
            for at in (0..bytes).step_by(LINE).chain([bytes - 1]) {
                // SAFETY: a prefetch never faults nor changes memory, whatever the address.
                unsafe { std::arch::x86_64::_mm_prefetch::<{ std::arch::x86_64::_MM_HINT_T1 }>(row.wrapping_add(at)) };
            }
        }
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = (a, rows);
}

/// `dst = srcᵀ`, a 16 × 16 tile at a time: the tile's rows are read whole and each of its
/// columns is written as one run of a destination row, through registers (`f32` on AVX-512
/// or AVX2) or a local copy; the edges that fill no tile by ndarray's `assign`.
///
/// Walking one side across its rows element by element (ndarray's `assign` from a
/// transposed view) crosses rows a plane's width apart, 4 KiB for a 32 × 32 image of
/// `f32`, and such rows evict each other from the L1 cache; a convolution's transposes
/// then cost as much as its product (`cargo bench --bench ops -- w6_conv`).
pub(crate) fn transpose_into<T: Element>(src: ArrayView2<'_, T>, dst: ArrayViewMut2<'_, T>) {
    transpose_by(TileKernel::for_type::<T>(), src, dst);
}

/// [`transpose_into`] with full tiles through `registers`.
fn transpose_by<T: Element>(registers: TileKernel, src: ArrayView2<'_, T>, mut dst: ArrayViewMut2<'_, T>) {
    let (rows, cols) = src.dim();
    assert_eq!(dst.dim(), (cols, rows), "internal: transpose_into's shapes");
    let (full_rows, full_cols) = (rows / TILE * TILE, cols / TILE * TILE);
    let tiles = || (0..full_rows).step_by(TILE).flat_map(|r| (0..full_cols).step_by(TILE).map(move |c| (r, c)));
    let unit_rows = |strides: &[isize]| strides[1] == 1 && strides[0] >= 0;
    if !matches!(registers, TileKernel::None) && unit_rows(src.strides()) && unit_rows(dst.strides()) {
        let (ss, ds) = (src.strides()[0] as usize, dst.strides()[0] as usize);
        let (from, to) = (src.as_ptr(), dst.as_mut_ptr());
        for (r, c) in tiles() {
            // SAFETY: element (i, j) of a view with these strides is at `ptr + i·s + j`, so
            // the tile's rows r..r+16 of columns c..c+16 of `src` and rows c..c+16 of
            // columns r..r+16 of `dst` (r + 16 ≤ rows, c + 16 ≤ cols) are elements of the
            // views; `dst` is exclusive, so they do not overlap.
            unsafe { registers.run(from.add(r * ss + c), ss, to.add(c * ds + r), ds) };
        }
    } else {
        let src_rows: Option<Vec<&[T]>> = src.rows().into_iter().map(|row| row.to_slice()).collect();
        let dst_rows: Option<Vec<&mut [T]>> = dst.rows_mut().into_iter().map(|row| row.into_slice()).collect();
        let (Some(src_rows), Some(mut dst_rows)) = (src_rows, dst_rows) else {
            // Rows that are not contiguous: no tile to read whole.
            return dst.assign(&src.t());
        };
        for (r, c) in tiles() {
            let mut tile = [[T::zero(); TILE]; TILE];
            for (row, src_row) in tile.iter_mut().zip(&src_rows[r..r + TILE]) {
                row.copy_from_slice(&src_row[c..c + TILE]);
            }
            for (j, dst_row) in dst_rows[c..c + TILE].iter_mut().enumerate() {
                for (i, d) in dst_row[r..r + TILE].iter_mut().enumerate() {
                    *d = tile[i][j];
                }
            }
        }
    }
    dst.slice_mut(ndarray::s![full_cols.., ..]).assign(&src.slice(ndarray::s![.., full_cols..]).t());
    dst.slice_mut(ndarray::s![..full_cols, full_rows..]).assign(&src.slice(ndarray::s![full_rows.., ..full_cols]).t());
}

/// The side of [`transpose_into`]'s tiles.
const TILE: usize = 16;

/// Which register transpose a full tile takes, chosen once per call.
#[derive(Clone, Copy)]
enum TileKernel {
    None,
    #[cfg(target_arch = "x86_64")]
    Avx512F32,
    #[cfg(target_arch = "x86_64")]
    Avx2F32,
}

impl TileKernel {
    fn for_type<T: Element>() -> Self {
        #[cfg(target_arch = "x86_64")]
        if std::any::TypeId::of::<T>() == std::any::TypeId::of::<f32>() {
            if std::is_x86_feature_detected!("avx512f") {
                return TileKernel::Avx512F32;
            }
            if std::is_x86_feature_detected!("avx2") {
                return TileKernel::Avx2F32;
            }
        }
        TileKernel::None
    }

    /// `dst[j·ds + i] = src[i·ss + j]` for `i, j < 16`.
    ///
    /// # Safety
    /// Both 16 × 16 blocks are valid at those strides, disjoint, and not accessed by
    /// anything else during the call; `self` is not `None` only for `T = f32` (as
    /// [`TileKernel::for_type`] chooses it).
    unsafe fn run<T>(self, src: *const T, ss: usize, dst: *mut T, ds: usize) {
        match self {
            TileKernel::None => {}
            // SAFETY: the CPU has the features each kernel is compiled for (checked in
            // `for_type`), T is f32, and the blocks are the caller's.
            #[cfg(target_arch = "x86_64")]
            TileKernel::Avx512F32 => unsafe { tile_avx512(src.cast(), ss, dst.cast(), ds) },
            #[cfg(target_arch = "x86_64")]
            TileKernel::Avx2F32 => unsafe { tile_avx2(src.cast(), ss, dst.cast(), ds) },
        }
    }
}

/// `dst[j·ds + i] = src[i·ss + j]` for a 16 × 16 tile of `f32`: sixteen row loads, four
/// rounds of shuffles (pairs of elements, of 64-bit pairs, then of 128-bit lanes, twice),
/// sixteen row stores.
///
/// # Safety
/// As [`TileKernel::run`]'s, on a CPU with AVX-512F.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
unsafe fn tile_avx512(src: *const f32, ss: usize, dst: *mut f32, ds: usize) {
    use std::arch::x86_64::*;
    // SAFETY (every load and store below): row i of the source block and row j of the
    // destination block are 16 valid f32 (the caller's contract).
    let mut v: [__m512; 16] = std::array::from_fn(|i| unsafe { _mm512_loadu_ps(src.add(i * ss)) });
    let mut t = v;
    for i in 0..8 {
        t[2 * i] = _mm512_unpacklo_ps(v[2 * i], v[2 * i + 1]);
        t[2 * i + 1] = _mm512_unpackhi_ps(v[2 * i], v[2 * i + 1]);
    }
    // Now v[4i + k], lane L: rows 4i..4i+4 at column 4L + k.
    for i in 0..4 {
        let (a, b) = (_mm512_castps_pd(t[4 * i]), _mm512_castps_pd(t[4 * i + 2]));
        let (c, d) = (_mm512_castps_pd(t[4 * i + 1]), _mm512_castps_pd(t[4 * i + 3]));
        v[4 * i] = _mm512_castpd_ps(_mm512_unpacklo_pd(a, b));
        v[4 * i + 1] = _mm512_castpd_ps(_mm512_unpackhi_pd(a, b));
        v[4 * i + 2] = _mm512_castpd_ps(_mm512_unpacklo_pd(c, d));
        v[4 * i + 3] = _mm512_castpd_ps(_mm512_unpackhi_pd(c, d));
    }
    for i in 0..2 {
        for k in 0..4 {
            let (a, b) = (v[8 * i + k], v[8 * i + 4 + k]);
            t[8 * i + k] = _mm512_shuffle_f32x4::<0b10_00_10_00>(a, b);
            t[8 * i + 4 + k] = _mm512_shuffle_f32x4::<0b11_01_11_01>(a, b);
        }
    }
    for k in 0..8 {
        v[k] = _mm512_shuffle_f32x4::<0b10_00_10_00>(t[k], t[8 + k]);
        v[8 + k] = _mm512_shuffle_f32x4::<0b11_01_11_01>(t[k], t[8 + k]);
    }
    for (j, v) in v.into_iter().enumerate() {
        // SAFETY: as above.
        unsafe { _mm512_storeu_ps(dst.add(j * ds), v) };
    }
}

/// [`tile_avx512`] on AVX2: the tile as four 8 × 8 blocks, each transposed by three
/// rounds of shuffles.
///
/// # Safety
/// As [`TileKernel::run`]'s, on a CPU with AVX2.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
unsafe fn tile_avx2(src: *const f32, ss: usize, dst: *mut f32, ds: usize) {
    use std::arch::x86_64::*;
    for (bi, bj) in [(0, 0), (0, 8), (8, 0), (8, 8)] {
        // SAFETY (loads and stores): rows bi..bi+8 at columns bj..bj+8 of the source block,
        // and the mirror of the destination's, lie inside the caller's 16 × 16 blocks.
        let r: [__m256; 8] = std::array::from_fn(|i| unsafe { _mm256_loadu_ps(src.add((bi + i) * ss + bj)) });
        let t: [__m256; 8] = std::array::from_fn(|i| {
            let (a, b) = (r[i / 2 * 2], r[i / 2 * 2 + 1]);
            if i % 2 == 0 { _mm256_unpacklo_ps(a, b) } else { _mm256_unpackhi_ps(a, b) }
        });
        let u: [__m256; 8] = std::array::from_fn(|i| {
            let (q, k) = (i / 4, i % 4);
            let (a, b) = (t[4 * q + k / 2], t[4 * q + 2 + k / 2]);
            if k % 2 == 0 { _mm256_shuffle_ps::<0x44>(a, b) } else { _mm256_shuffle_ps::<0xEE>(a, b) }
        });
        for j in 0..8 {
            let v = if j < 4 { _mm256_permute2f128_ps::<0x20>(u[j], u[4 + j]) } else { _mm256_permute2f128_ps::<0x31>(u[j - 4], u[j]) };
            // SAFETY: as above.
            unsafe { _mm256_storeu_ps(dst.add((bj + j) * ds + bi), v) };
        }
    }
}

/// Products smaller than this many multiply-adds run on one thread (tiny under Miri, as
/// above).
const PARALLEL_MIN_FLOPS: usize = if cfg!(miri) { 1 << 10 } else { 1 << 18 };

/// The granularity of a split across threads by rows: a multiple of the row count of every
/// gemm kernel (16 or 64 rows for f32 with AVX2 or AVX-512, 8 or 32 for f64), so that only
/// the last block ends in a partial tile.
const ROW_BLOCK: usize = 64;
/// The same for a split by columns (a multiple of every kernel's column count).
const COLUMN_BLOCK: usize = 64;

/// A raw pointer that may cross to another thread: the code sharing it guarantees the
/// threads touch disjoint elements.
#[derive(Clone, Copy)]
struct SendPtr<T>(*mut T);
// SAFETY: see the type's doc; only used inside `product`'s scope.
unsafe impl<T> Send for SendPtr<T> {}
// SAFETY: as above.
unsafe impl<T> Sync for SendPtr<T> {}

impl<T> SendPtr<T> {
    fn get(self) -> *mut T {
        self.0
    }
}

/// `a @ b` for two matrices of any strides, into a fresh row-major matrix.
pub(crate) fn gemm<T: Element>(a: &ArrayView2<'_, T>, b: &ArrayView2<'_, T>) -> Array2<T> {
    gemm_plus_row(a, b, None)
}

/// `a @ b + row` (the row added to every row of the product) for matrices of any strides.
/// With a row, the output starts as copies of it and the product is accumulated into it, so
/// a bias costs no extra pass over the output.
pub(crate) fn gemm_plus_row<T: Element>(a: &ArrayView2<'_, T>, b: &ArrayView2<'_, T>, row: Option<&[T]>) -> Array2<T> {
    let (m, k) = a.dim();
    let n = b.dim().1;
    // A recycled buffer: fresh memory would cost a page fault per 4 KiB on first touch.
    let mut buffer = crate::tensor::pool::take::<T>(m * n);
    if let Some(row) = row {
        (0..m).for_each(|_| buffer.extend_from_slice(row));
    } else if k == 0 {
        buffer.resize(m * n, T::zero());
    }
    if m > 0 && n > 0 && k > 0 {
        let read_dst = row.is_some();
        let dst = if read_dst { buffer.as_mut_ptr() } else { buffer.spare_capacity_mut().as_mut_ptr().cast::<T>() };
        // SAFETY: `dst` has room for the m x n row-major product and is a fresh allocation,
        // distinct from `a` and `b`; it is read only when `read_dst`, and then holds the
        // m x n elements written above.
        unsafe { product(SendPtr(dst), [n as isize, 1], read_dst, a, b, true) };
        if !read_dst {
            // SAFETY: without a row, gemm wrote every one of the m x n elements (k > 0).
            unsafe { buffer.set_len(m * n) };
        }
    }
    Array2::from_shape_vec((m, n), buffer).expect("m * n elements")
}

/// `dst += a @ b` for matrices of any strides: a product accumulated in place, as a
/// recurrent step adds `W h` to its precomputed input projection. On one thread unless
/// `threads` (for callers that already split their work across threads).
pub(crate) fn gemm_acc<T: Element>(dst: &mut ArrayViewMut2<'_, T>, a: &ArrayView2<'_, T>, b: &ArrayView2<'_, T>, threads: bool) {
    gemm_into(dst, a, b, threads, true);
}

/// `dst = a @ b`, overwriting `dst` (no pass to zero it first); otherwise as [`gemm_acc`].
pub(crate) fn gemm_set<T: Element>(dst: &mut ArrayViewMut2<'_, T>, a: &ArrayView2<'_, T>, b: &ArrayView2<'_, T>, threads: bool) {
    gemm_into(dst, a, b, threads, false);
}

fn gemm_into<T: Element>(dst: &mut ArrayViewMut2<'_, T>, a: &ArrayView2<'_, T>, b: &ArrayView2<'_, T>, threads: bool, accumulate: bool) {
    let (m, k) = a.dim();
    let n = b.dim().1;
    assert_eq!((dst.dim(), b.dim().0), ((m, n), k), "internal: gemm shapes");
    if k == 0 && !accumulate {
        dst.fill(T::zero());
    } else if m > 0 && n > 0 && k > 0 {
        let strides = [dst.strides()[0], dst.strides()[1]];
        // SAFETY: `dst` is an exclusive view of m x n initialised elements at these strides,
        // so it cannot overlap `a` or `b` (shared borrows) nor itself (ndarray does not
        // make mutable views with overlapping elements); without `accumulate` every
        // element is written.
        unsafe { product(SendPtr(dst.as_mut_ptr()), strides, accumulate, a, b, threads) };
    }
}

/// `dst (+)= lhs @ rhs` through the real-valued crates behind `gemm` (`gemm-f32`,
/// `gemm-f64`), with unit scales: depending on them alone skips compiling the complex-number
/// kernels that nabla never calls (see `docs/build-time.md`).
///
/// # Safety
/// As `gemm::gemm`: the pointers address `m x k`, `k x n` and `m x n` matrices with the
/// column and row strides given, `dst` disjoint from the operands; `T` is f32 or f64.
#[allow(clippy::too_many_arguments)]
unsafe fn real_gemm<T: Element>(
    m: usize,
    n: usize,
    k: usize,
    dst: *mut T,
    dst_cs: isize,
    dst_rs: isize,
    read_dst: bool,
    lhs: *const T,
    lhs_cs: isize,
    lhs_rs: isize,
    rhs: *const T,
    rhs_cs: isize,
    rhs_rs: isize,
) {
    use std::any::TypeId;
    let none = gemm_common::Parallelism::None;
    // SAFETY: the caller's contract; the casts are identities, T being the type compared.
    unsafe {
        if TypeId::of::<T>() == TypeId::of::<f32>() {
            gemm_f32::gemm::f32::get_gemm_fn()(
                m,
                n,
                k,
                dst.cast(),
                dst_cs,
                dst_rs,
                read_dst,
                lhs.cast(),
                lhs_cs,
                lhs_rs,
                rhs.cast(),
                rhs_cs,
                rhs_rs,
                1.0,
                1.0,
                false,
                false,
                false,
                none,
            )
        } else if TypeId::of::<T>() == TypeId::of::<f64>() {
            gemm_f64::gemm::f64::get_gemm_fn()(
                m,
                n,
                k,
                dst.cast(),
                dst_cs,
                dst_rs,
                read_dst,
                lhs.cast(),
                lhs_cs,
                lhs_rs,
                rhs.cast(),
                rhs_cs,
                rhs_rs,
                1.0,
                1.0,
                false,
                false,
                false,
                none,
            )
        } else {
            unreachable!("Element is implemented for f32 and f64 only")
        }
    }
}

/// `dst (+)= a @ b` through the gemm crate, split across threads when large and
/// `may_thread`.
///
/// The split is ours, not the gemm crate's (`Parallelism::Rayon`): the longer side of the
/// output is cut into one block per thread and each block is a single-threaded product,
/// so the threads meet once per product instead of at every step of gemm's blocking loop.
/// `RAYON_NUM_THREADS=2 cargo bench --bench ops -- gemm_split` compares the two on a
/// recurrent layer's weight gradient, its input gradient and `1024³`. A product with few rows (a recurrent step's batch, `W_ihᵀ dz`) is
/// cut by columns, since a split by rows would leave it on one thread.
///
/// # Safety
/// `dst` addresses `a.rows x b.cols` elements at `dst_strides` (row, column), disjoint
/// from `a` and `b` and from one another, none accessed by anything else during the call;
/// when `read_dst` they must be initialised. `a` and `b` are non-empty with agreeing inner
/// dims.
unsafe fn product<T: Element>(
    dst: SendPtr<T>,
    dst_strides: [isize; 2],
    read_dst: bool,
    a: &ArrayView2<'_, T>,
    b: &ArrayView2<'_, T>,
    may_thread: bool,
) {
    let (m, k) = a.dim();
    let n = b.dim().1;
    let threads = rayon::current_num_threads();
    let (sa, sb) = (a.strides(), b.strides());
    let (a_ptr, b_ptr) = (SendPtr(a.as_ptr().cast_mut()), SendPtr(b.as_ptr().cast_mut()));
    // The product of rows `rows` of `a` with columns `cols` of `b`, into that block of dst.
    let block = |rows: Range<usize>, cols: Range<usize>| {
        // SAFETY: the pointers address matrices of the dims and element strides given (the
        // caller's contract for dst); blocks run concurrently only on disjoint blocks of
        // dst; T is f32 or f64.
        unsafe {
            real_gemm::<T>(
                rows.len(),
                cols.len(),
                k,
                dst.get().offset(rows.start as isize * dst_strides[0] + cols.start as isize * dst_strides[1]),
                dst_strides[1],
                dst_strides[0],
                read_dst,
                a_ptr.get().offset(rows.start as isize * sa[0]),
                sa[1],
                sa[0],
                b_ptr.get().offset(cols.start as isize * sb[1]),
                sb[1],
                sb[0],
            )
        }
    };
    let parts = if may_thread && m * n * k >= PARALLEL_MIN_FLOPS { threads } else { 1 };
    let by_rows = m >= n && m >= 2 * ROW_BLOCK;
    let by_columns = !by_rows && n >= 2 * COLUMN_BLOCK;
    if parts < 2 || !(by_rows || by_columns) {
        return block(0..m, 0..n);
    }
    let (len, granule) = if by_rows { (m, ROW_BLOCK) } else { (n, COLUMN_BLOCK) };
    let per = len.div_ceil(parts).next_multiple_of(granule);
    let cut = |start: usize| start..(start + per).min(len);
    let run = |part: Range<usize>| if by_rows { block(part, 0..n) } else { block(0..m, part) };
    rayon::scope(|scope| {
        for start in (per..len).step_by(per) {
            let run = &run;
            scope.spawn(move |_| run(cut(start)));
        }
        run(cut(0));
    });
}

/// The bytes of `a` that one call of [`ThinLhs::shifted`] is best given: a chunk that
/// stays in L2 while the call sweeps the input, large enough that the per-call overhead
/// does not show. The convolution's forward pass (`cargo bench --bench ops -- w6_conv`)
/// was flat from 16 to 64 KiB and slower above.
const SHIFTED_CHUNK_BYTES: usize = 64 << 10;

/// The rows of a thin product's left operand in a kernel's panels.
const PANEL: usize = 6;

/// A matrix `a (M, K)` held for many thin products `dst (M, N) += a[.., ks] b (|ks|, N)`
/// with small `N`, such as a recurrent layer's `W_hh hᵀ`: the same weight times a new
/// batch-wide state at every step. It is gathered from a larger matrix `w` once
/// ([`ThinLhs::rows_of`], [`ThinLhs::transposed_rows_of`]), straight into the layout its
/// product reads, with no copy of `w` in between.
///
/// For `f32` on a CPU with AVX2 and FMA but not AVX-512, `a` is packed into panels of six
/// rows stored column by column, and [`ThinLhs::acc`] runs a kernel that keeps a 6 × 16
/// block of `dst` in twelve registers, broadcasting `a`'s six elements of a column against
/// `b`'s row (`b` and `dst` are read in place, their rows contiguous). The gemm crate would
/// pack `a` again at every call (its kernels take 16 rows by 6 columns of `dst`, whose
/// columns are `N` elements apart here); a width that is not a multiple of 8 ends in
/// masked loads and stores. Elsewhere, and for products the kernel does not take (one
/// column, rows not contiguous), `a` is held as a row-major matrix for the gemm crate's
/// product, which is also faster for a single column. On AVX-512 the gemm crate's 512-bit
/// kernels are kept: this kernel has no AVX-512 form yet. The recurrent layer's benches
/// (`cargo bench --bench ops -- lstm_layer`) measure it in use. Either buffer comes from the pool and goes
/// back to it when the `ThinLhs` is dropped: fresh, it would cost a page fault per 4 KiB
/// at every layer call.
pub(crate) struct ThinLhs<T: Element> {
    /// `a` row-major, for the gemm crate's product: built at once where there is no
    /// packed copy, else only if a product the kernel does not take asks for it.
    plain: std::sync::OnceLock<Array2<T>>,
    /// Panel `p`, column `k`, row `r` at `p·6·K + k·6 + r` (rows past `M` are zero).
    packed: Option<Vec<f32>>,
    dim: (usize, usize),
}

impl<T: Element> ThinLhs<T> {
    /// `a = w[rows, ..]`: the rows of `w` listed in `rows`, in that order.
    pub(crate) fn rows_of(w: ArrayView2<'_, T>, rows: &[usize]) -> Self {
        let pack = |panel: &mut [T], first: usize, count: usize| {
            for r in 0..count {
                for (kk, &v) in w.row(rows[first + r]).iter().enumerate() {
                    panel[kk * PANEL + r] = v;
                }
            }
        };
        let fill = |mut plain: ArrayViewMut2<'_, T>| {
            for (mut dst, &r) in plain.rows_mut().into_iter().zip(rows) {
                dst.assign(&w.row(r));
            }
        };
        Self::gather((rows.len(), w.ncols()), pack, fill)
    }

    /// `a = w[picks, columns]ᵀ`: `a[i, k] = w[picks[k], columns.start + i]`.
    pub(crate) fn transposed_rows_of(w: ArrayView2<'_, T>, picks: &[usize], columns: Range<usize>) -> Self {
        let sub = w.slice(ndarray::s![.., columns.clone()]);
        let pack = |panel: &mut [T], first: usize, count: usize| {
            // A column of the panel is `count` neighbours in a row of `w`: copied as one
            // run where the row is contiguous (element by element, ndarray's checked
            // indexing costs more than the copy).
            for (column, &r) in panel.chunks_exact_mut(PANEL).zip(picks) {
                let row = sub.row(r);
                match row.as_slice() {
                    Some(row) => column[..count].copy_from_slice(&row[first..first + count]),
                    None => column[..count].iter_mut().zip(row.iter().skip(first)).for_each(|(d, &v)| *d = v),
                }
            }
        };
        let fill = |mut plain: ArrayViewMut2<'_, T>| {
            // A run of consecutive picks is one block of `w`, transposed by tiles.
            let mut k = 0;
            while k < picks.len() {
                let len = picks[k..].iter().zip(picks[k]..).take_while(|&(&p, q)| p == q).count();
                transpose_into(sub.slice(ndarray::s![picks[k]..picks[k] + len, ..]), plain.slice_mut(ndarray::s![.., k..k + len]));
                k += len;
            }
        };
        Self::gather((columns.len(), picks.len()), pack, fill)
    }

    /// `a (m, k)`: packed by `pack(panel, first, rows)`, which writes element `(first + r,
    /// kk)` at `panel[kk·6 + r]` for `r < rows`, where the kernel runs; else written whole
    /// by `fill` into a row-major matrix.
    fn gather(dim: (usize, usize), pack: impl Fn(&mut [T], usize, usize), fill: impl FnOnce(ArrayViewMut2<'_, T>)) -> Self {
        use crate::tensor::pool;
        let (m, k) = dim;
        if !thin_kernel_available::<T>() {
            let mut plain = Array2::from_shape_vec(dim, pool::take_overwritten::<T>(m * k)).expect("m·k elements");
            fill(plain.view_mut());
            return ThinLhs { plain: plain.into(), packed: None, dim };
        }
        let mut packed = pool::take_overwritten::<T>(m.div_ceil(PANEL) * PANEL * k);
        if k > 0 {
            for (p, panel) in packed.chunks_exact_mut(PANEL * k).enumerate() {
                let rows = (m - p * PANEL).min(PANEL);
                if rows < PANEL {
                    panel.fill(T::zero());
                }
                pack(panel, p * PANEL, rows);
            }
        }
        // T is f32 where the kernel runs (thin_kernel_available): the same buffer.
        let packed: Box<dyn std::any::Any> = Box::new(packed);
        let packed = *packed.downcast::<Vec<f32>>().expect("T is f32");
        ThinLhs { plain: std::sync::OnceLock::new(), packed: Some(packed), dim }
    }

    /// `a` row-major (unpacked from the panels, the first time, where it was packed).
    fn plain(&self) -> &Array2<T> {
        self.plain.get_or_init(|| {
            let (m, k) = self.dim;
            let panels = self.packed.as_deref().unwrap_or_default();
            Array2::from_shape_fn((m, k), |(i, kk)| {
                T::from_f32(panels[(i / PANEL) * PANEL * k + kk * PANEL + i % PANEL]).expect("T is f32")
            })
        })
    }

    /// Whether products of `f32` matrices run the packed kernel here (see [`ThinLhs`]).
    pub(crate) fn kernel_available() -> bool {
        thin_kernel_available::<T>()
    }

    /// Whether `a` is packed for the kernel (see [`ThinLhs`]).
    pub(crate) fn is_packed(&self) -> bool {
        self.packed.is_some()
    }

    /// `dst[r, x] (+)= Σ_{k ∈ ks} a[rows.start + r, k] · src[offsets[k - ks.start] + x]` for
    /// the rows `rows` of `a` (starting at a multiple of 6) and every column `x` of `dst`,
    /// added to `dst` when `accumulate`: a product whose right operand's row `k` is the run
    /// of `src` at an offset of its own, read in place. A convolution's taps are such runs
    /// (shifts of one padded input), so its forward pass needs no column matrix. On the
    /// calling thread; a long `ks` is best cut by the caller
    /// into runs of [`ThinLhs::shifted_chunk`]. Returns `false`, writing nothing, where the
    /// kernel does not run (see [`ThinLhs`]) or `dst`'s rows are not contiguous: the caller
    /// takes another path.
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn shifted(
        &self,
        dst: &mut ArrayViewMut2<'_, T>,
        rows: Range<usize>,
        ks: Range<usize>,
        src: &[T],
        offsets: &[usize],
        accumulate: bool,
    ) -> bool {
        let (m, n) = dst.dim();
        let k = self.dim.1;
        assert!(rows.start.is_multiple_of(PANEL) && rows.end <= self.dim.0 && rows.len() == m, "internal: shifted product rows");
        assert!(ks.end <= k && offsets.len() == ks.len(), "internal: one offset per column of a");
        let (Some(packed), [dst_stride, 1]) = (&self.packed, dst.strides()) else { return false };
        let Ok(dst_stride) = usize::try_from(*dst_stride) else { return false };
        if m * n == 0 {
            return true;
        }
        if ks.is_empty() {
            if !accumulate {
                dst.fill(T::zero());
            }
            return true;
        }
        let last = offsets.iter().max().copied().unwrap_or(0);
        assert!(last + n <= src.len(), "internal: shifted rows inside src");
        // Rows that may be read to a whole vector past the width: no masked loads.
        let read_past = last + n.next_multiple_of(8) <= src.len();
        let panels = &packed[rows.start * k..][..m.div_ceil(PANEL) * PANEL * k];
        #[cfg(target_arch = "x86_64")]
        // SAFETY: the CPU has AVX2 and FMA and T is f32 (checked when packing); the panels
        // cover dst's m rows by k columns, ks within them; row kk of b is the n elements of
        // src at offsets[kk], inside src (asserted), and so are the lanes up to a multiple
        // of 8 when read_past; dst holds m rows of n contiguous elements at dst_stride ≥ 0,
        // exclusive to this mutable borrow, so distinct from src.
        unsafe {
            let (src, dst) = (src.as_ptr().cast(), dst.as_mut_ptr().cast());
            let start = if accumulate { Start::Dst } else { Start::Zero };
            if read_past {
                thin_avx2(panels, k, ks, Shifted::<true>(src, offsets), dst, dst_stride, m, n, start);
            } else {
                thin_avx2(panels, k, ks, Shifted::<false>(src, offsets), dst, dst_stride, m, n, start);
            }
        }
        #[cfg(not(target_arch = "x86_64"))]
        let _ = (panels, dst_stride);
        true
    }

    /// How many columns of `a` one call of [`ThinLhs::shifted`] for `rows` rows is best
    /// given: [`SHIFTED_CHUNK_BYTES`] of `a`, so that the runs of `src` the call reads stay
    /// in cache while every panel passes over them.
    pub(crate) fn shifted_chunk(rows: usize) -> usize {
        (SHIFTED_CHUNK_BYTES / (rows.next_multiple_of(PANEL) * 4)).max(1)
    }

    /// `dst += a[.., ks] b`, on one thread unless `threads` allows a split across the pool
    /// (for a product large enough, with more than one thread in the pool).
    pub(crate) fn acc(&self, dst: &mut ArrayViewMut2<'_, T>, ks: Range<usize>, b: &ArrayView2<'_, T>, threads: bool) {
        if !self.kernel_product(dst, None, ks.clone(), b, threads) {
            gemm_acc(dst, &self.plain().slice(ndarray::s![.., ks]), b, threads);
        }
    }

    /// `dst[r, ..] = from[picks[r], ..] + (a[.., ks] b)[r, ..]`: [`ThinLhs::acc`] onto rows
    /// of another matrix, which the kernel reads where it writes each block of `dst` (a
    /// recurrent step's input projection, whose rows are far apart: copied into `dst`
    /// first, their cache misses are not hidden by a prefetch before the product, which
    /// streams `a` through the cache; the kernel asks for each panel's rows one panel
    /// ahead).
    pub(crate) fn acc_onto(
        &self,
        dst: &mut ArrayViewMut2<'_, T>,
        from: &ArrayView2<'_, T>,
        picks: &[usize],
        ks: Range<usize>,
        b: &ArrayView2<'_, T>,
        threads: bool,
    ) {
        assert!(picks.len() == dst.nrows() && from.ncols() == dst.ncols(), "internal: one row of from per row of dst");
        if !self.kernel_product(dst, Some((from, picks)), ks.clone(), b, threads) {
            for (mut row, &r) in dst.rows_mut().into_iter().zip(picks) {
                row.assign(&from.row(r));
            }
            self.acc(dst, ks, b, threads);
        }
    }

    /// `dst (from[picks] or dst) + a[.., ks] b` by the packed kernel; `false`, writing
    /// nothing, where it does not run (see [`ThinLhs`]) or the operands' rows are not
    /// contiguous and walked forwards (a reversed view has a negative row stride, which the
    /// kernel's offsets do not take).
    fn kernel_product(
        &self,
        dst: &mut ArrayViewMut2<'_, T>,
        from: Option<(&ArrayView2<'_, T>, &[usize])>,
        ks: Range<usize>,
        b: &ArrayView2<'_, T>,
        threads: bool,
    ) -> bool {
        let (m, n) = dst.dim();
        assert_eq!((m, b.dim()), (self.dim.0, (ks.len(), n)), "internal: thin product shapes");
        assert!(ks.end <= self.dim.1, "internal: thin product columns");
        let forwards = |s: &[isize]| s[1] == 1 && s[0] >= 0;
        let contiguous = forwards(dst.strides()) && forwards(b.strides()) && from.is_none_or(|(f, _)| forwards(f.strides()));
        let packed = match &self.packed {
            // One column is a matrix-vector product, which the gemm crate runs 3-4x as
            // fast (`b` a vector: one lane of eight in use here).
            Some(packed) if contiguous && n > 1 => packed,
            _ => return false,
        };
        if m * n == 0 {
            return true;
        }
        if let Some((from, picks)) = from {
            assert!(picks.iter().all(|&r| r < from.nrows()), "internal: picked rows inside from");
        }
        let k = self.dim.1;
        let split = threads && rayon::current_num_threads() > 1 && m * n * ks.len() >= PARALLEL_MIN_FLOPS;
        // Whole panels per thread.
        let panels = m.div_ceil(PANEL);
        let per = if split { panels.div_ceil(rayon::current_num_threads()) } else { panels };
        let mut rest = dst.view_mut();
        let mut blocks = Vec::with_capacity(panels.div_ceil(per));
        for first in (0..panels).step_by(per) {
            let rows = ((first + per) * PANEL).min(m) - first * PANEL;
            let (block, tail) = rest.split_at(Axis(0), rows);
            blocks.push((first, block));
            rest = tail;
        }
        // Each picked row of `from` as an offset from its first element.
        let offsets: Vec<usize> = from.map_or_else(Vec::new, |(f, picks)| picks.iter().map(|&r| r * f.strides()[0] as usize).collect());
        let run = |(first, mut block): (usize, ArrayViewMut2<'_, T>)| {
            let (rows, dst_stride, b_stride) = (block.nrows(), block.strides()[0] as usize, b.strides()[0] as usize);
            let panels = &packed[first * PANEL * k..][..rows.div_ceil(PANEL) * PANEL * k];
            #[cfg(target_arch = "x86_64")]
            // SAFETY: the CPU has AVX2 and FMA and T is f32 (checked when packing); the
            // panels cover the block's rows by k columns, ks within them; b holds ks.len()
            // rows of n elements at b_stride, the block `rows` rows of n at dst_stride, its
            // elements exclusive to this view (a mutable borrow, split from the others),
            // distinct from b's and from's (shared borrows); from's picked rows (asserted
            // inside it) hold n elements each from their offsets.
            unsafe {
                let b = Strided(b.as_ptr().cast(), b_stride);
                let start = match from {
                    Some((f, _)) => Start::Rows(f.as_ptr().cast(), &offsets[first * PANEL..][..rows]),
                    None => Start::Dst,
                };
                thin_avx2(panels, k, ks.clone(), b, block.as_mut_ptr().cast(), dst_stride, rows, n, start);
            }
            #[cfg(not(target_arch = "x86_64"))]
            let _ = (panels, rows, dst_stride, b_stride, &mut block, &offsets);
        };
        if blocks.len() == 1 {
            blocks.into_iter().for_each(run);
        } else {
            blocks.into_par_iter().for_each(run);
        }
        true
    }
}

impl<T: Element> Drop for ThinLhs<T> {
    /// Gives the buffers back to the pool.
    fn drop(&mut self) {
        use crate::tensor::pool;
        if let Some(plain) = self.plain.take() {
            pool::recycle(plain.into_dyn().into_shared());
        }
        if let Some(packed) = self.packed.take() {
            pool::recycle(ndarray::Array1::from_vec(packed).into_dyn().into_shared());
        }
    }
}

/// Whether [`ThinLhs`] packs for its own kernel: `f32` on an x86-64 CPU with AVX2 and FMA
/// but not AVX-512.
fn thin_kernel_available<T: Element>() -> bool {
    #[cfg(target_arch = "x86_64")]
    if std::any::TypeId::of::<T>() == std::any::TypeId::of::<f32>() {
        return std::is_x86_feature_detected!("avx2") && std::is_x86_feature_detected!("fma") && !std::is_x86_feature_detected!("avx512f");
    }
    false
}

/// Where each row of a thin product's right operand `b` starts, as the kernel walks them.
#[cfg(target_arch = "x86_64")]
trait RhsRows: Copy {
    /// Whether every row may be read up to the next multiple of 8 elements past the
    /// product's width (the extra lanes are never used): a masked tail then reads `b`
    /// with plain loads, and only its stores to `dst` are masked.
    const READ_PAST: bool;
    /// The first element of each row, in order.
    fn rows(self) -> impl Iterator<Item = *const f32>;
    /// The same rows from column `j` on.
    fn at_column(self, j: usize) -> Self;
}

/// Rows `stride` elements apart: a matrix.
#[cfg(target_arch = "x86_64")]
#[derive(Clone, Copy)]
struct Strided(*const f32, usize);

#[cfg(target_arch = "x86_64")]
impl RhsRows for Strided {
    const READ_PAST: bool = false;
    #[inline(always)]
    fn rows(self) -> impl Iterator<Item = *const f32> {
        std::iter::successors(Some(self.0), move |row| Some(row.wrapping_add(self.1)))
    }
    #[inline(always)]
    fn at_column(self, j: usize) -> Self {
        Strided(self.0.wrapping_add(j), self.1)
    }
}

/// Row `kk` at `offsets[kk]` elements from the start: runs of one buffer at any places, as
/// a convolution's taps read one input shifted. `READ_PAST` as [`RhsRows::READ_PAST`].
#[cfg(target_arch = "x86_64")]
#[derive(Clone, Copy)]
struct Shifted<'a, const READ_PAST: bool>(*const f32, &'a [usize]);

#[cfg(target_arch = "x86_64")]
impl<const READ_PAST: bool> RhsRows for Shifted<'_, READ_PAST> {
    const READ_PAST: bool = READ_PAST;
    #[inline(always)]
    fn rows(self) -> impl Iterator<Item = *const f32> {
        self.1.iter().map(move |&offset| self.0.wrapping_add(offset))
    }
    #[inline(always)]
    fn at_column(self, j: usize) -> Self {
        Shifted::<READ_PAST>(self.0.wrapping_add(j), self.1)
    }
}

/// What a thin product's sums are added to as they are written: nothing, `dst` itself, or
/// for row `r` of `dst` the `n` elements at `offsets[r]` from a pointer.
#[cfg(target_arch = "x86_64")]
#[derive(Clone, Copy)]
enum Start<'a> {
    Zero,
    Dst,
    Rows(*const f32, &'a [usize]),
}

/// `dst = start + a[.., ks] b` from [`ThinLhs`]'s panels: for each panel of six rows, the
/// columns of `dst` sixteen at a time, then eight, then the last few through masked stores
/// (and masked loads of `b` unless its rows may be read past the width), each block summed
/// over `ks` in registers and written to `dst` once. Rows of another matrix to start from
/// are asked of the cache a panel ahead.
///
/// # Safety
/// The CPU has AVX2 and FMA. `packed` holds `m.div_ceil(6)` panels of `k` columns, `ks`
/// within `0..k`; `b` gives `ks.len()` rows of `n` f32, `dst` points to `m` rows of `n` at
/// `dst_stride`, not overlapping `b` and not accessed by anything else during the call;
/// `Start::Rows` gives `m` offsets, each the start of `n` readable f32 that `dst` does not
/// overlap.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
#[allow(clippy::too_many_arguments)]
unsafe fn thin_avx2(
    packed: &[f32],
    k: usize,
    ks: Range<usize>,
    b: impl RhsRows,
    dst: *mut f32,
    dst_stride: usize,
    m: usize,
    n: usize,
    start: Start<'_>,
) {
    use std::arch::x86_64::{_MM_HINT_T0, _mm_prefetch, _mm256_setr_epi32};
    let ask = |rows: &[usize], base: *const f32| {
        for &offset in rows {
            let row = base.wrapping_add(offset).cast::<i8>();
            // A prefetch never faults nor changes memory, whatever the address.
            for at in (0..4 * n).step_by(64).chain([4 * n - 1]) {
                _mm_prefetch::<_MM_HINT_T0>(row.wrapping_add(at));
            }
        }
    };
    if let Start::Rows(base, offsets) = start {
        ask(&offsets[..m.min(PANEL)], base);
    }
    for (p, panel) in packed.chunks_exact(PANEL * k).enumerate() {
        let columns = &panel[ks.start * PANEL..ks.end * PANEL];
        let rows = (m - p * PANEL).min(PANEL);
        if let Start::Rows(base, offsets) = start {
            ask(offsets.get((p + 1) * PANEL..).map_or(&[], |o| &o[..o.len().min(PANEL)]), base);
        }
        let mut j = 0;
        while j < n {
            let left = (n - j) as i32;
            // SAFETY: the block's columns j.. (16, 8, or the `left` lanes the mask lets
            // through) are within every row of b and dst, rows p·6.. within dst's m; the
            // caller's contract.
            unsafe {
                let dst = dst.add(p * PANEL * dst_stride + j);
                // Where row r < rows of the block's sums is added from, if anywhere.
                let from: Option<[*const f32; PANEL]> = match start {
                    Start::Zero => None,
                    Start::Dst => Some(std::array::from_fn(|r| dst.wrapping_add(r * dst_stride).cast_const())),
                    Start::Rows(base, offsets) => {
                        Some(std::array::from_fn(|r| offsets.get(p * PANEL + r).map_or(base, |&o| base.wrapping_add(o + j))))
                    }
                };
                // Lane l of the block's last vector is on when its sign bit is set.
                let last = if left > 8 { left - 8 } else { left };
                let on = |l: i32| -i32::from(last > l);
                let mask = _mm256_setr_epi32(on(0), on(1), on(2), on(3), on(4), on(5), on(6), on(7));
                let b = b.at_column(j);
                match left {
                    16.. => thin_block::<2, false, _>(columns, b, dst, dst_stride, rows, mask, from),
                    9..16 => thin_block::<2, true, _>(columns, b, dst, dst_stride, rows, mask, from),
                    8 => thin_block::<1, false, _>(columns, b, dst, dst_stride, rows, mask, from),
                    _ => thin_block::<1, true, _>(columns, b, dst, dst_stride, rows, mask, from),
                }
                j += if left > 8 { 16 } else { 8 };
            }
        }
    }
}

/// `dst[r, ..8·V] = from[r][..8·V] + Σ_k columns[k·6 + r] · b[k, ..8·V]` for `r < rows`
/// (at most 6), without the first term when `from` is `None`: the block's 6·V sums held
/// in registers over all of `k`. When `MASKED`, only the lanes `mask` sets are read and
/// written in the last vector (a parameter of the type, so that the loop over `k` has no
/// branch on it).
///
/// # Safety
/// As [`thin_avx2`]'s, for the block: `columns` holds 6 elements per row of `b`, and `b`'s
/// rows, `dst`'s first `rows` rows and `from`'s first `rows` pointers have `8·V` valid
/// elements, or those of the lanes `mask` sets (`from`'s may be `dst`'s own rows).
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
#[inline]
unsafe fn thin_block<const V: usize, const MASKED: bool, B: RhsRows>(
    columns: &[f32],
    b: B,
    dst: *mut f32,
    dst_stride: usize,
    rows: usize,
    mask: std::arch::x86_64::__m256i,
    from: Option<[*const f32; PANEL]>,
) {
    use std::arch::x86_64::*;
    // SAFETY (both): the lanes read or written are valid (the caller's contract).
    let load = |at: *const f32, v: usize| unsafe { if MASKED && v == V - 1 { _mm256_maskload_ps(at, mask) } else { _mm256_loadu_ps(at) } };
    let store = |at: *mut f32, v: usize, x: __m256| unsafe {
        if MASKED && v == V - 1 { _mm256_maskstore_ps(at, mask, x) } else { _mm256_storeu_ps(at, x) }
    };
    // SAFETY: as `load`; with READ_PAST, every lane of b's rows is readable.
    let load_b = |at: *const f32, v: usize| unsafe {
        if MASKED && v == V - 1 && !B::READ_PAST { _mm256_maskload_ps(at, mask) } else { _mm256_loadu_ps(at) }
    };
    let mut sums = [[_mm256_setzero_ps(); V]; PANEL];
    // Row kk of b for each column kk of the panel (the caller's contract).
    for (a, row) in columns.chunks_exact(PANEL).zip(b.rows()) {
        let bv: [__m256; V] = std::array::from_fn(|v| load_b(row.wrapping_add(8 * v), v));
        for (sum, &a) in sums.iter_mut().zip(a) {
            let a = _mm256_set1_ps(a);
            for (s, &bv) in sum.iter_mut().zip(&bv) {
                *s = _mm256_fmadd_ps(a, bv, *s);
            }
        }
    }
    for (r, sum) in sums.iter().enumerate().take(rows) {
        for (v, &s) in sum.iter().enumerate() {
            // Row r < rows of dst (the caller's contract).
            let at = dst.wrapping_add(r * dst_stride + 8 * v);
            store(at, v, from.map_or(s, |from| _mm256_add_ps(load(from[r].wrapping_add(8 * v), v), s)));
        }
    }
}

#[cfg(test)]
mod tests {
    //! Each safe wrapper against a plain loop, on the sizes that take each branch (serial
    //! and threaded, with and without a row, strided and transposed operands). Small enough
    //! for Miri.
    use super::*;
    use ndarray::{Array, Array2, ShapeBuilder};

    fn naive(a: &ArrayView2<'_, f64>, b: &ArrayView2<'_, f64>) -> Array2<f64> {
        let (m, k) = a.dim();
        Array2::from_shape_fn((m, b.dim().1), |(i, j)| (0..k).map(|p| a[[i, p]] * b[[p, j]]).sum())
    }

    /// Values whose products and sums are exact in f64, so any order of summation agrees.
    fn ints(shape: (usize, usize), seed: usize) -> Array2<f64> {
        Array2::from_shape_fn(shape, |(i, j)| ((i * 7 + j * 3 + seed) % 11) as f64 - 5.0)
    }

    fn two_threads<R: Send>(f: impl FnOnce() -> R + Send) -> R {
        rayon::ThreadPoolBuilder::new().num_threads(2).build().expect("a pool").install(f)
    }

    #[test]
    fn map_and_zip2_cover_every_element_serial_and_threaded() {
        for len in [0, 1, 17, PARALLEL_MIN_LEN + 3] {
            let x = Array::from_shape_fn(IxDyn(&[len]), |i| i[0] as f64);
            let y = x.mapv(|v| 2.0 * v + 1.0);
            for out in [map(&x.view(), |v| v * v), two_threads(|| map(&x.view(), |v| v * v))] {
                assert_eq!(out, x.mapv(|v| v * v));
            }
            let sum = two_threads(|| zip2(&x.view(), &y.view(), |a, b| a + b));
            assert_eq!(sum, x.mapv(|v| 3.0 * v + 1.0));
        }
        // Non-contiguous operands take ndarray's path.
        let m = Array::from_shape_fn(IxDyn(&[3, 4]), |i| (i[0] * 4 + i[1]) as f64);
        let t = m.t();
        assert_eq!(map(&t, |v| -v), t.mapv(|v| -v));
        assert_eq!(zip2(&t, &t, |a, b| a * b), t.mapv(|v| v * v));
    }

    #[test]
    fn every_transpose_kernel_equals_the_transposed_view() {
        // Full tiles, partial ones at either edge, no tiles, rows that are not contiguous
        // (ndarray's path) and destinations that are column blocks of a wider array.
        let shapes = [(0, 5), (1, 1), (16, 16), (17, 33), (48, 80), (5, 64)];
        let mut kernels = vec![TileKernel::None];
        #[cfg(target_arch = "x86_64")]
        {
            if std::is_x86_feature_detected!("avx512f") {
                kernels.push(TileKernel::Avx512F32);
            }
            if std::is_x86_feature_detected!("avx2") {
                kernels.push(TileKernel::Avx2F32);
            }
        }
        for kernel in kernels {
            for (rows, cols) in shapes {
                let a = ints((rows, 2 * cols), rows + cols);
                let src = a.slice(ndarray::s![.., ..cols]);
                let stepped = a.slice(ndarray::s![.., ..;2]);
                for src in [src, stepped] {
                    let mut wide = Array2::<f64>::from_elem((cols, rows + 3), f64::NAN);
                    transpose_by(TileKernel::None, src, wide.slice_mut(ndarray::s![.., 2..rows + 2]));
                    assert_eq!(wide.slice(ndarray::s![.., 2..rows + 2]), src.t(), "f64, {rows} x {cols}");
                    assert!(wide.column(0).iter().chain(wide.column(1)).chain(wide.column(rows + 2)).all(|v| v.is_nan()));
                    let src32 = src.mapv(|v| v as f32);
                    let mut wide32 = Array2::<f32>::from_elem((cols, rows + 3), f32::NAN);
                    transpose_by(kernel, src32.view(), wide32.slice_mut(ndarray::s![.., 2..rows + 2]));
                    assert_eq!(wide32.slice(ndarray::s![.., 2..rows + 2]), src32.t(), "f32, {rows} x {cols}");
                    assert!(wide32.column(0).iter().chain(wide32.column(1)).chain(wide32.column(rows + 2)).all(|v| v.is_nan()));
                }
            }
        }
    }

    #[test]
    fn run_widest_runs_the_body_once() {
        struct Count(usize);
        impl Body for Count {
            #[inline(always)]
            fn run(&mut self) {
                self.0 += 1;
            }
        }
        let mut c = Count(0);
        run_widest(&mut c);
        assert_eq!(c.0, 1);
    }

    #[test]
    fn shifted_products_equal_a_loop() {
        // Rows of b at scattered offsets into one buffer; rows of a from the first panel or
        // from the second on; widths through every block and tail; k summed in one call or
        // in chunks. dst starts non-zero: the first call overwrites it.
        for (m, k, n) in [(1, 1, 8), (5, 3, 16), (13, 7, 24), (13, 700, 33), (7, 300, 40), (9, 5, 3), (6, 4, 1)] {
            let a = ints((m, k), 1);
            let src: Vec<f32> = (0..3 * k + n + 5).map(|i| ((i * 5 % 13) as f32) - 6.0).collect();
            let offsets: Vec<usize> = (0..k).map(|kk| (kk * 7) % (3 * k + 5)).collect();
            let thin = ThinLhs::rows_of(a.mapv(|v| v as f32).view(), &(0..m).collect::<Vec<_>>());
            for rows in std::iter::once(0..m).chain((m > PANEL).then_some(PANEL..m)) {
                let expect = Array2::from_shape_fn((rows.len(), n), |(r, x)| {
                    (0..k).map(|kk| a[[rows.start + r, kk]] * f64::from(src[offsets[kk] + x])).sum::<f64>()
                });
                // Written by the first chunk, added to by the others.
                let mut out = Array2::<f32>::ones((rows.len(), n));
                let chunk = ThinLhs::<f32>::shifted_chunk(rows.len()).min(k.div_ceil(2));
                for ks in (0..k).step_by(chunk).map(|s| s..(s + chunk).min(k)) {
                    let ran = thin.shifted(&mut out.view_mut(), rows.clone(), ks.clone(), &src, &offsets[ks.clone()], ks.start > 0);
                    assert_eq!(ran, thin_kernel_available::<f32>(), "the kernel runs where ThinLhs packs");
                }
                if thin_kernel_available::<f32>() {
                    assert_eq!(out.mapv(f64::from), expect, "{m}x{k}x{n}, rows {rows:?}");
                }
            }
        }
    }

    #[test]
    fn thin_products_equal_a_loop() {
        // Rows not a multiple of the panel, widths that end in a 16- or 8-column block or in
        // a masked tail, column ranges that start inside `a`, a dst whose rows are strided
        // (gemm on the unpacked matrix), reversed rows (gemm too), split across two threads,
        // in f32 (the packed kernel where the CPU has it) and f64, `a` gathered by rows and
        // by transposed rows. Small integers, so that every sum is exact in either order.
        for (m, k, n) in [(1, 1, 8), (5, 3, 16), (13, 7, 24), (64, 33, 32), (7, 300, 40), (6, 4, 12), (9, 5, 3), (600, 450, 1)] {
            let a = ints((m, k), 1);
            // `a` as rows of a taller matrix, picked out of order.
            let rows: Vec<usize> = (0..m).map(|i| 2 * (m - 1 - i) + 1).collect();
            let mut tall = ints((2 * m + 1, k), 9);
            for (i, &r) in rows.iter().enumerate() {
                tall.row_mut(r).assign(&a.row(i));
            }
            // `a` as the transpose of some rows and columns of a wider matrix: runs of
            // consecutive picks, then single ones.
            let picks: Vec<usize> = (0..k).map(|kk| if kk < k / 2 { kk + 2 } else { 3 * kk + 1 }).collect();
            let mut wide = ints((3 * k + 2, m + 4), 10);
            for (kk, &r) in picks.iter().enumerate() {
                wide.slice_mut(ndarray::s![r, 2..m + 2]).assign(&a.column(kk));
            }
            let (tall32, wide32) = (tall.mapv(|v| v as f32), wide.mapv(|v| v as f32));
            let gathered32 = [ThinLhs::rows_of(tall32.view(), &rows), ThinLhs::transposed_rows_of(wide32.view(), &picks, 2..m + 2)];
            let gathered64 = [ThinLhs::rows_of(tall.view(), &rows), ThinLhs::transposed_rows_of(wide.view(), &picks, 2..m + 2)];
            // The same from a column-major `w`, whose rows are not contiguous.
            let wide32_by_columns = wide32.t().as_standard_layout().into_owned().reversed_axes();
            let by_columns = ThinLhs::transposed_rows_of(wide32_by_columns.view(), &picks, 2..m + 2);
            assert_eq!(by_columns.plain(), &a.mapv(|v| v as f32), "{m}x{k} gathered from columns");
            for (thin, thin64) in gathered32.iter().zip(&gathered64) {
                assert_eq!(thin.packed.is_some(), thin_kernel_available::<f32>(), "which path the f32 cases take");
                assert_eq!(thin64.plain().view(), a.view(), "{m}x{k} gathered");
                for ks in [0..k, k / 3..k] {
                    let b = ints((ks.len(), n), 2);
                    let start = ints((m, n), 3);
                    let expect = &start + &naive(&a.slice(ndarray::s![.., ks.clone()]), &b.view());
                    let b32 = b.mapv(|v| v as f32);
                    for threads in [false, true] {
                        let mut out = start.mapv(|v| v as f32);
                        two_threads(|| thin.acc(&mut out.view_mut(), ks.clone(), &b32.view(), threads));
                        assert_eq!(out.mapv(f64::from), expect, "f32 {m}x{k}x{n}, columns {ks:?}, threads {threads}");
                    }
                    // Onto the rows of `start` as rows of a taller matrix, picked out of
                    // order, into a dst of NaN (whatever it held must not show).
                    let mut from = ints((2 * m + 1, n), 11);
                    for (i, &r) in rows.iter().enumerate() {
                        from.row_mut(r).assign(&start.row(i));
                    }
                    let from32 = from.mapv(|v| v as f32);
                    for threads in [false, true] {
                        let mut out = Array2::from_elem((m, n), f32::NAN);
                        two_threads(|| thin.acc_onto(&mut out.view_mut(), &from32.view(), &rows, ks.clone(), &b32.view(), threads));
                        assert_eq!(out.mapv(f64::from), expect, "f32 {m}x{k}x{n} onto picked rows, columns {ks:?}, threads {threads}");
                    }
                    let mut out = Array2::from_elem((m, n), f64::NAN);
                    thin64.acc_onto(&mut out.view_mut(), &from.view(), &rows, ks.clone(), &b.view(), false);
                    assert_eq!(out, expect, "f64 {m}x{k}x{n} onto picked rows, columns {ks:?}");
                    let mut wide_out = ints((m, 2 * n), 3);
                    let mut every_other = wide_out.slice_mut(ndarray::s![.., ..;2]);
                    every_other.assign(&start);
                    thin64.acc(&mut every_other, ks.clone(), &b.view(), false);
                    assert_eq!(every_other, expect, "f64 {m}x{k}x{n} into strided rows, columns {ks:?}");
                    let mut every_other = wide_out.mapv(|v| v as f32);
                    let mut every_other = every_other.slice_mut(ndarray::s![.., ..;2]);
                    every_other.assign(&start.mapv(|v| v as f32));
                    thin.acc(&mut every_other, ks.clone(), &b32.view(), false);
                    assert_eq!(every_other.mapv(f64::from), expect, "f32 {m}x{k}x{n} into strided rows, columns {ks:?}");
                    // Rows in reverse order (a negative row stride) in both b and dst, in f32.
                    let mut reversed = start.slice(ndarray::s![..;-1, ..]).mapv(|v| v as f32);
                    let b_reversed = b.slice(ndarray::s![..;-1, ..]).mapv(|v| v as f32);
                    let mut dst = reversed.slice_mut(ndarray::s![..;-1, ..]);
                    thin.acc(&mut dst, ks.clone(), &b_reversed.slice(ndarray::s![..;-1, ..]), false);
                    assert_eq!(dst.mapv(f64::from), expect, "f32 {m}x{k}x{n} through reversed rows, columns {ks:?}");
                }
            }
        }
    }

    #[test]
    fn gemm_equals_a_loop_on_every_branch() {
        // (m, k, n): empty dims, k = 0, small serial, threaded by rows, threaded by columns.
        let big = PARALLEL_MIN_FLOPS;
        // Both splits end in a partial block.
        let (tall, wide) = (3 * ROW_BLOCK + 5, 2 * COLUMN_BLOCK + 5);
        let by_rows = (tall, big.div_ceil(tall * (ROW_BLOCK + 3)), ROW_BLOCK + 3);
        let by_columns = (2, big.div_ceil(2 * wide), wide);
        for (m, k, n) in [(0, 3, 4), (3, 0, 4), (3, 5, 0), (3, 5, 4), by_rows, by_columns] {
            assert!(m * k * n <= 60 || m * k * n >= big, "each case is serial or threaded");
            let a = ints((m, k), 1);
            let b = ints((k, n), 2);
            let expect = naive(&a.view(), &b.view());
            assert_eq!(gemm(&a.view(), &b.view()), expect, "{m}x{k}x{n}");
            assert_eq!(two_threads(|| gemm(&a.view(), &b.view())), expect, "{m}x{k}x{n}, 2 threads");
            let row: Vec<f64> = (0..n).map(|j| j as f64).collect();
            let with_row = two_threads(|| gemm_plus_row(&a.view(), &b.view(), Some(&row)));
            assert_eq!(with_row, &expect + &Array::from(row.clone()), "{m}x{k}x{n} + row");
        }
        // Accumulated in place into a strided block (a column slice of a wider matrix),
        // serial and threaded; the columns outside the block are left alone.
        for (m, k, n) in [(3, 5, 4), by_rows, by_columns] {
            let (a, b) = (ints((m, k), 6), ints((k, n), 7));
            let start = ints((m, n + 3), 8);
            let mut expect = start.clone();
            expect.slice_mut(ndarray::s![.., 1..n + 1]).zip_mut_with(&naive(&a.view(), &b.view()), |e, &p| *e += p);
            let mut serial = start.clone();
            gemm_acc(&mut serial.slice_mut(ndarray::s![.., 1..n + 1]), &a.view(), &b.view(), false);
            assert_eq!(serial, expect, "{m}x{k}x{n} accumulated");
            let threaded = two_threads(|| {
                let mut out = start.clone();
                gemm_acc(&mut out.slice_mut(ndarray::s![.., 1..n + 1]), &a.view(), &b.view(), true);
                out
            });
            assert_eq!(threaded, expect, "{m}x{k}x{n} accumulated, 2 threads");
        }
        // Transposed and column-major operands are read through their strides.
        let a = ints((6, 5), 3);
        let b_cols = Array2::from_shape_vec((5, 7).f(), ints((5, 7), 4).t().iter().copied().collect()).unwrap();
        assert_eq!(gemm(&a.t(), &a.view()), naive(&a.t(), &a.view()));
        assert_eq!(gemm(&a.view(), &b_cols.view()), naive(&a.view(), &b_cols.view()));
        // A strided slice (every other column) too.
        let wide = ints((5, 14), 5);
        let every_other = wide.slice(ndarray::s![.., ..;2]);
        assert_eq!(gemm(&a.view(), &every_other), naive(&a.view(), &every_other));
    }
}
