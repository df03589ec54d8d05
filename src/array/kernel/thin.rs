//! Thin products with a left operand reused at every call (a recurrent step's `W_hh hᵀ`,
//! a convolution's taps), with kernels of their own in AVX2 + FMA and in AVX-512.

use super::*;
use crate::array::Element;
use ndarray::{Array2, ArrayView2, ArrayViewMut2, Axis};
use std::ops::Range;

/// The bytes of `a` that one call of [`ThinLhs::shifted`] is best given: a chunk that
/// stays in L2 while the call sweeps the input, large enough that the per-call overhead
/// does not show. The convolution's forward pass (`cargo bench --bench ops -- w6_conv`)
/// was flat from 16 to 64 KiB and slower above.
const SHIFTED_CHUNK_BYTES: usize = 64 << 10;

/// The rows of a thin product's left operand in a kernel's panels.
pub(super) const PANEL: usize = 6;

/// A matrix `a (M, K)` held for many thin products `dst (M, N) += a[.., ks] b (|ks|, N)`
/// with small `N`, such as a recurrent layer's `W_hh hᵀ`: the same weight times a new
/// batch-wide state at every step. It is gathered from a larger matrix `w` once
/// ([`ThinLhs::rows_of`], [`ThinLhs::transposed_rows_of`]), straight into the layout its
/// product reads, with no copy of `w` in between.
///
/// For `f32` on a CPU with AVX2 and FMA, `a` is packed into panels of six rows stored
/// column by column, and [`ThinLhs::acc`] runs a kernel that keeps a block of `dst` in
/// registers, broadcasting `a`'s elements of a column against `b`'s row (`b` and `dst` are
/// read in place, their rows contiguous): 6 rows × 16 columns in twelve registers with
/// AVX2, 12 rows × 32 columns in twenty-four with AVX-512, chosen at run time
/// ([`ThinIsa`]). The gemm crate would pack `a` again at every call (its kernels take 16
/// rows by 6 columns of `dst`, whose columns are `N` elements apart here); a width that
/// is not a multiple of the vector ends in masked loads and stores. Elsewhere, and for
/// products the kernel does not take (one column, rows not contiguous), `a` is held as a
/// row-major matrix for the gemm crate's product, which is also faster for a single
/// column. The recurrent layer's benches
/// (`cargo bench --bench ops -- lstm_layer`) measure it in use. Either buffer comes from the pool and goes
/// back to it when the `ThinLhs` is dropped: fresh, it would cost a page fault per 4 KiB
/// at every layer call.
pub(crate) struct ThinLhs<T: Element> {
    /// `a` row-major, for the gemm crate's product: built at once where there is no
    /// packed copy, else only if a product the kernel does not take asks for it.
    plain: std::sync::OnceLock<Array2<T>>,
    /// Panel `p`, column `k`, row `r` at `p·6·K + k·6 + r` (rows past `M` are zero).
    pub(super) packed: Option<Vec<f32>>,
    /// The kernel that reads `packed`, where there is one.
    pub(super) isa: Option<ThinIsa>,
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
        use crate::array::pool;
        let (m, k) = dim;
        let Some(isa) = ThinIsa::detect::<T>() else {
            let mut plain = Array2::from_shape_vec(dim, pool::take_overwritten::<T>(m * k)).expect("m·k elements");
            fill(plain.view_mut());
            return ThinLhs { plain: plain.into(), packed: None, isa: None, dim };
        };
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
        ThinLhs { plain: std::sync::OnceLock::new(), packed: Some(packed), isa: Some(isa), dim }
    }

    /// The same `a` read by the kernel for `isa` (which the CPU must have), so that tests
    /// check every kernel the machine can run.
    #[cfg(test)]
    pub(super) fn with_isa(mut self, isa: ThinIsa) -> Self {
        assert!(self.packed.is_some() && ThinIsa::available().contains(&isa), "internal: a kernel this CPU runs");
        self.isa = Some(isa);
        self
    }

    /// `a` row-major (unpacked from the panels, the first time, where it was packed).
    pub(super) fn plain(&self) -> &Array2<T> {
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

    /// The `f32` lanes of the kernel's vectors here (8 where it does not run).
    pub(crate) fn vector_lanes() -> usize {
        match ThinIsa::detect::<T>() {
            Some(ThinIsa::Avx512) => 16,
            _ => 8,
        }
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
        // SAFETY: the CPU has the features of self.isa's kernel and T is f32 (checked
        // when packing, or by with_isa); the panels cover dst's m rows by k columns, ks within them; row kk of b is the n elements of
        // src at offsets[kk], inside src (asserted), and so are the lanes up to a multiple
        // of 8 when read_past; dst holds m rows of n contiguous elements at dst_stride ≥ 0,
        // exclusive to this mutable borrow, so distinct from src.
        unsafe {
            let (src, dst) = (src.as_ptr().cast(), dst.as_mut_ptr().cast());
            let start = if accumulate { Start::Dst } else { Start::Zero };
            match (self.isa, read_past) {
                (Some(ThinIsa::Avx512), _) => thin_avx512(panels, k, ks, Shifted::<false>(src, offsets), dst, dst_stride, m, n, start),
                (_, true) => thin_avx2(panels, k, ks, Shifted::<true>(src, offsets), dst, dst_stride, m, n, start),
                (_, false) => thin_avx2(panels, k, ks, Shifted::<false>(src, offsets), dst, dst_stride, m, n, start),
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
            // SAFETY: the CPU has the features of self.isa's kernel and T is f32 (checked
            // when packing, or by with_isa); the panels cover the block's rows by k columns, ks within them; b holds ks.len()
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
                let dst = block.as_mut_ptr().cast();
                match self.isa {
                    Some(ThinIsa::Avx512) => thin_avx512(panels, k, ks.clone(), b, dst, dst_stride, rows, n, start),
                    _ => thin_avx2(panels, k, ks.clone(), b, dst, dst_stride, rows, n, start),
                }
            }
            #[cfg(not(target_arch = "x86_64"))]
            let _ = (panels, rows, dst_stride, b_stride, &mut block, &offsets);
        };
        if blocks.len() == 1 {
            blocks.into_iter().for_each(run);
        } else {
            super::team::map_items(blocks, run);
        }
        true
    }
}

impl<T: Element> Drop for ThinLhs<T> {
    /// Gives the buffers back to the pool.
    fn drop(&mut self) {
        use crate::array::pool;
        if let Some(plain) = self.plain.take() {
            pool::recycle(plain.into_dyn().into_shared());
        }
        if let Some(packed) = self.packed.take() {
            pool::recycle(ndarray::Array1::from_vec(packed).into_dyn().into_shared());
        }
    }
}

/// Whether [`ThinLhs`] packs for its own kernel: `f32` on an x86-64 CPU with AVX2 and FMA.
pub(super) fn thin_kernel_available<T: Element>() -> bool {
    ThinIsa::detect::<T>().is_some()
}

/// The vector extension a [`ThinLhs`]'s kernel is compiled for. Both read the same panels.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum ThinIsa {
    /// 8 lanes, 16 registers: blocks of 6 rows by 16 columns.
    Avx2,
    /// 16 lanes, 32 registers and mask registers: blocks of 12 rows by 32 columns.
    Avx512,
}

impl ThinIsa {
    /// The widest kernel this CPU runs for `T`, if any: only `f32` has one.
    pub(super) fn detect<T: Element>() -> Option<Self> {
        #[cfg(target_arch = "x86_64")]
        if std::any::TypeId::of::<T>() == std::any::TypeId::of::<f32>()
            && std::is_x86_feature_detected!("avx2")
            && std::is_x86_feature_detected!("fma")
        {
            return Some(if std::is_x86_feature_detected!("avx512f") { ThinIsa::Avx512 } else { ThinIsa::Avx2 });
        }
        None
    }

    /// Every kernel this CPU runs for `f32`, narrowest first.
    #[cfg(test)]
    pub(super) fn available() -> Vec<Self> {
        match Self::detect::<f32>() {
            Some(ThinIsa::Avx512) => vec![ThinIsa::Avx2, ThinIsa::Avx512],
            Some(ThinIsa::Avx2) => vec![ThinIsa::Avx2],
            None => vec![],
        }
    }
}

/// Where each row of a thin product's right operand `b` starts, as the kernel walks them.
#[cfg(target_arch = "x86_64")]
pub(super) trait RhsRows: Copy {
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
pub(super) enum Start<'a> {
    Zero,
    Dst,
    Rows(*const f32, &'a [usize]),
}

#[cfg(target_arch = "x86_64")]
impl Start<'_> {
    /// Where each of `R` rows of a block is added from, if anywhere: the block's own rows
    /// of `dst` (which starts at the block), or the picked rows of `Start::Rows` for `dst`'s
    /// rows `first..`, from column `j`. Rows past the picks point at the base, unread.
    #[inline(always)]
    fn rows<const R: usize>(self, dst: *mut f32, dst_stride: usize, first: usize, j: usize) -> Option<[*const f32; R]> {
        match self {
            Start::Zero => None,
            Start::Dst => Some(std::array::from_fn(|r| dst.wrapping_add(r * dst_stride).cast_const())),
            Start::Rows(base, offsets) => Some(std::array::from_fn(|r| offsets.get(first + r).map_or(base, |&o| base.wrapping_add(o + j)))),
        }
    }
}

/// Asks the cache for the `n` floats at each offset in `rows` from `base`, one request per
/// 64-byte line: the rows a later block starts from, far apart in memory.
#[cfg(target_arch = "x86_64")]
#[inline(always)]
fn ask_rows(rows: &[usize], base: *const f32, n: usize) {
    use std::arch::x86_64::{_MM_HINT_T0, _mm_prefetch};
    for &offset in rows {
        let row = base.wrapping_add(offset).cast::<i8>();
        for at in (0..4 * n).step_by(64).chain([4 * n - 1]) {
            // SAFETY: a prefetch never faults nor changes memory, whatever the address, and
            // SSE is part of x86-64.
            unsafe { _mm_prefetch::<_MM_HINT_T0>(row.wrapping_add(at)) };
        }
    }
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
    use std::arch::x86_64::_mm256_setr_epi32;
    let ask = |rows: &[usize], base: *const f32| ask_rows(rows, base, n);
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
                let from: Option<[*const f32; PANEL]> = start.rows(dst, dst_stride, p * PANEL, j);
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

/// [`thin_avx2`] in AVX-512: two panels (12 rows) at a time while two remain, the columns
/// of `dst` 32 at a time (24 sums in registers, of the 32 there are), then 16, the last
/// few under a mask, which also keeps every load of `b` inside its rows (masked-off lanes
/// are not read). A panel pair gives a 16-column block, such as a recurrent step's batch
/// of 16, 12 independent sums: enough to cover the FMA's latency, which one panel's six
/// are not.
///
/// # Safety
/// As [`thin_avx2`]'s, with AVX-512F in place of AVX2.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,avx2,fma")]
#[allow(clippy::too_many_arguments)]
unsafe fn thin_avx512(
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
    const PAIR: usize = 2 * PANEL;
    let ask = |rows: &[usize], base: *const f32| ask_rows(rows, base, n);
    if let Start::Rows(base, offsets) = start {
        ask(&offsets[..m.min(PAIR)], base);
    }
    let panels = m.div_ceil(PANEL);
    let columns = |p: usize| &packed[p * PANEL * k..][ks.start * PANEL..ks.end * PANEL];
    let mut p = 0;
    while p < panels {
        let pair = panels - p >= 2;
        let first = p * PANEL;
        let rows = (m - first).min(if pair { PAIR } else { PANEL });
        if let Start::Rows(base, offsets) = start {
            ask(offsets.get(first + rows..).map_or(&[], |o| &o[..o.len().min(PAIR)]), base);
        }
        let mut j = 0;
        while j < n {
            let left = n - j;
            let wide = left > 16;
            // Lane l of the block's last vector is on when bit l is set.
            let last = if wide { left.min(32) - 16 } else { left };
            let mask = if last >= 16 { u16::MAX } else { (1u16 << last) - 1 };
            let masked = mask != u16::MAX;
            // SAFETY: the block's columns j.. (32, 16, or the lanes the mask lets through)
            // are within every row of b and dst, rows first.. within dst's m; the caller's
            // contract.
            unsafe {
                let dst = dst.add(first * dst_stride + j);
                // Where row r < rows of the block's sums is added from, if anywhere.
                let from: Option<[*const f32; PAIR]> = start.rows(dst, dst_stride, first, j);
                let b = b.at_column(j);
                let (one, two) = (columns(p), if pair { columns(p + 1) } else { columns(p) });
                match (pair, wide, masked) {
                    (true, true, false) => block_avx512::<2, 2, false, _>([one, two], b, dst, dst_stride, rows, mask, from),
                    (true, true, true) => block_avx512::<2, 2, true, _>([one, two], b, dst, dst_stride, rows, mask, from),
                    (true, false, false) => block_avx512::<2, 1, false, _>([one, two], b, dst, dst_stride, rows, mask, from),
                    (true, false, true) => block_avx512::<2, 1, true, _>([one, two], b, dst, dst_stride, rows, mask, from),
                    (false, true, false) => block_avx512::<1, 2, false, _>([one], b, dst, dst_stride, rows, mask, from),
                    (false, true, true) => block_avx512::<1, 2, true, _>([one], b, dst, dst_stride, rows, mask, from),
                    (false, false, false) => block_avx512::<1, 1, false, _>([one], b, dst, dst_stride, rows, mask, from),
                    (false, false, true) => block_avx512::<1, 1, true, _>([one], b, dst, dst_stride, rows, mask, from),
                }
            }
            j += if wide { 32 } else { 16 };
        }
        p += if pair { 2 } else { 1 };
    }
}

/// `dst[r, ..16·V] = from[r][..16·V] + Σ_k a[r, k] · b[k, ..16·V]` for `r < rows` (at most
/// 6·P), where row `6q + i` of `a` is row `i` of panel `panels[q]`: [`thin_block`] over `P`
/// panels at once with 16-lane vectors. When `MASKED`, the last vector reads and writes
/// only the lanes `mask` sets.
///
/// # Safety
/// As [`thin_block`]'s with AVX-512F, for `P` panels of as many columns as `b` has rows and
/// vectors of 16 lanes.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,avx2,fma")]
#[inline]
// Indexed loops: written with iterators over the nested array of sums, the compiler kept
// the sums on the stack, storing each after every FMA.
#[allow(clippy::needless_range_loop)]
unsafe fn block_avx512<const P: usize, const V: usize, const MASKED: bool, B: RhsRows>(
    panels: [&[f32]; P],
    b: B,
    dst: *mut f32,
    dst_stride: usize,
    rows: usize,
    mask: u16,
    from: Option<[*const f32; 2 * PANEL]>,
) {
    use std::arch::x86_64::*;
    let lanes = |v: usize| if MASKED && v == V - 1 { mask } else { u16::MAX };
    // SAFETY (both): the lanes read or written are valid (the caller's contract); masked-off
    // lanes are neither read nor written, nor can they fault.
    let load = |at: *const f32, v: usize| unsafe { _mm512_maskz_loadu_ps(lanes(v), at) };
    let store = |at: *mut f32, v: usize, x: __m512| unsafe { _mm512_mask_storeu_ps(at, lanes(v), x) };
    let mut sums = [[[_mm512_setzero_ps(); V]; PANEL]; P];
    let count = panels[0].len() / PANEL;
    debug_assert!(panels.iter().all(|p| p.len() == count * PANEL), "internal: panels of one width");
    let columns = panels.map(<[f32]>::as_ptr);
    // Row kk of b for each column kk of the panels (the caller's contract).
    for (kk, row) in b.rows().take(count).enumerate() {
        let bv: [__m512; V] = std::array::from_fn(|v| load(row.wrapping_add(16 * v), v));
        for q in 0..P {
            for i in 0..PANEL {
                // SAFETY: kk < count, so element kk·6 + i is inside every panel (asserted
                // of one width); read by pointer, so that no bounds check stays in the loop.
                let a = _mm512_set1_ps(unsafe { *columns[q].add(kk * PANEL + i) });
                for v in 0..V {
                    sums[q][i][v] = _mm512_fmadd_ps(a, bv[v], sums[q][i][v]);
                }
            }
        }
    }
    for q in 0..P {
        for i in 0..PANEL.min(rows.saturating_sub(q * PANEL)) {
            let r = q * PANEL + i;
            for v in 0..V {
                // Row r < rows of dst (the caller's contract).
                let at = dst.wrapping_add(r * dst_stride + 16 * v);
                let s = sums[q][i][v];
                store(at, v, from.map_or(s, |from| _mm512_add_ps(load(from[r].wrapping_add(16 * v), v), s)));
            }
        }
    }
}
