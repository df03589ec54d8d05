//! Transposing a matrix a tile at a time through registers.

use crate::array::Element;
use ndarray::{ArrayView2, ArrayViewMut2};

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
pub(super) fn transpose_by<T: Element>(registers: TileKernel, src: ArrayView2<'_, T>, mut dst: ArrayViewMut2<'_, T>) {
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
pub(super) enum TileKernel {
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
    let v: [__m512; 16] = std::array::from_fn(|i| unsafe { _mm512_loadu_ps(src.add(i * ss)) });
    for (j, v) in transposed_avx512(v).into_iter().enumerate() {
        // SAFETY: as above.
        unsafe { _mm512_storeu_ps(dst.add(j * ds), v) };
    }
}

/// The 16 × 16 matrix whose rows are `v`, transposed in registers: four rounds of
/// shuffles (pairs of elements, of 64-bit pairs, then of 128-bit lanes, twice).
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
#[inline]
pub(super) fn transposed_avx512(v: [std::arch::x86_64::__m512; 16]) -> [std::arch::x86_64::__m512; 16] {
    use std::arch::x86_64::*;
    let mut v = v;
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
    v
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
