//! The matrix product: the real-valued gemm crates on ndarray's buffers, split across
//! threads by us.

use crate::array::Element;
use ndarray::{Array2, ArrayView2, ArrayViewMut2};
use std::ops::Range;

/// Products smaller than this many multiply-adds run on one thread (tiny under Miri, as
/// above).
pub(super) const PARALLEL_MIN_FLOPS: usize = if cfg!(miri) { 1 << 10 } else { 1 << 18 };

/// The granularity of a split across threads by rows: a multiple of the row count of every
/// gemm kernel (16 or 64 rows for f32 with AVX2 or AVX-512, 8 or 32 for f64), so that only
/// the last block ends in a partial tile.
pub(super) const ROW_BLOCK: usize = 64;
/// The same for a split by columns (a multiple of every kernel's column count).
pub(super) const COLUMN_BLOCK: usize = 64;

/// A raw pointer that may cross to another thread: the code sharing it guarantees the
/// threads touch disjoint elements.
pub(super) struct SendPtr<T>(pub(super) *mut T);
// Copy for every `T` (a derive would ask `T: Copy`): it is a pointer.
impl<T> Clone for SendPtr<T> {
    fn clone(&self) -> Self {
        *self
    }
}
impl<T> Copy for SendPtr<T> {}
// SAFETY: see the type's doc; only used within one call that shares it (a product, a
// section of the team).
unsafe impl<T> Send for SendPtr<T> {}
// SAFETY: as above.
unsafe impl<T> Sync for SendPtr<T> {}

impl<T> SendPtr<T> {
    pub(super) fn get(self) -> *mut T {
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
    let mut buffer = crate::array::pool::take::<T>(m * n);
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

/// `dst (+)= lhs @ rhs` with unit scales: `f32` through `gemm-f32`, the real-valued crate
/// behind `gemm` (depending on it alone skips compiling the complex-number kernels nabla
/// never calls), and `f64`, the type of checks rather than of training, through
/// `matrixmultiply`, which ndarray already builds (see `docs/build-time.md`).
///
/// `ask` says which of the two equal products gemm-f32 is asked for when `dst` is
/// row-major (see [`Ask`]).
///
/// # Safety
/// As `gemm::gemm`'s and `matrixmultiply::dgemm`'s: the pointers address `m x k`, `k x n` and `m x n` matrices with the
/// column and row strides given, `dst` disjoint from the operands; `T` is f32 or f64.
#[allow(clippy::too_many_arguments)]
unsafe fn real_gemm<T: Element>(
    ask: Ask,
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
    if TypeId::of::<T>() == TypeId::of::<f32>() && matches!(ask, Ask::Packed) {
        if dst_rs == 1 && dst_cs > 1 && super::packed::packed_product_runs(n, m, k) {
            // SAFETY: the same matrices, described through the transposes' strides.
            return unsafe { real_gemm(ask, n, m, k, dst, dst_rs, dst_cs, read_dst, rhs, rhs_rs, rhs_cs, lhs, lhs_rs, lhs_cs) };
        }
        if dst_cs == 1 && dst_rs > 0 && super::packed::packed_product_runs(m, n, k) {
            // SAFETY: the caller's contract, with a row-major dst; the check above is the
            // kernel's condition.
            return unsafe {
                use super::packed::{Operand, packed_product};
                let (a, b) = (Operand { at: lhs.cast(), rs: lhs_rs, cs: lhs_cs }, Operand { at: rhs.cast(), rs: rhs_rs, cs: rhs_cs });
                packed_product(m, n, k, dst.cast(), dst_rs as usize, read_dst, a, b)
            };
        }
    }
    if TypeId::of::<T>() == TypeId::of::<f32>() && dst_cs == 1 && dst_rs != 1 && matches!(ask, Ask::Transposed | Ask::Packed) {
        // SAFETY: the same matrices, described through the transposes' strides.
        return unsafe { real_gemm(ask, n, m, k, dst, dst_rs, dst_cs, read_dst, rhs, rhs_rs, rhs_cs, lhs, lhs_rs, lhs_cs) };
    }
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
            // C = A B + βC, β = 0 overwriting C without reading it.
            let beta = if read_dst { 1.0 } else { 0.0 };
            matrixmultiply::dgemm(m, k, n, 1.0, lhs.cast(), lhs_rs, lhs_cs, rhs.cast(), rhs_rs, rhs_cs, beta, dst.cast(), dst_rs, dst_cs)
        } else {
            unreachable!("Element is implemented for f32 and f64 only")
        }
    }
}

/// Which of the two equal products gemm-f32 is asked for when `dst` is row-major: `dst =
/// a b` itself, or `dstᵀ = bᵀ aᵀ`, whose columns are contiguous.
///
/// gemm-f32's kernels write blocks of `dst` column by column, vector stores down a column
/// where its rows are adjacent and one element at a time elsewhere, so the transpose is
/// the rule (`cargo bench --bench ops -- w5_gemm`). But gemm-f32 also packs its left
/// operand, a block of rows at a time, and when `b` is stored by columns the left operand
/// of the transpose, `bᵀ`, is stored by rows: packing it is slow, and with few rows in `a`
/// the packed blocks serve few columns of `dstᵀ`. Then the product as given costs less
/// ([`product_few_rows`]).
#[derive(Clone, Copy)]
enum Ask {
    Transposed,
    AsGiven,
    /// nabla's own packed product ([`super::packed`]) where it runs, else `Transposed`.
    Packed,
}

/// `dst (+)= a @ b`, as [`product_as_given`] after choosing which product gemm-f32 is
/// asked for ([`Ask`]): as given through [`product_few_rows`], else transposed, with a `b`
/// stored by columns a multiple of 2 KiB apart (a transposed view of a weight 512 or 1024
/// wide: a backward pass's `W`, a forward `x Wᵀ` with many rows) first copied by rows
/// where `dst` is row-major: without it the product took 1.2 to 1.5 times as long
/// (`cargo run --release --example workloads -- gemm_shapes 1`: `x Wt, 512 rows` and W5's
/// `a bᵀ`), and the copy is a pass over `k·n` elements against the product's `m·k·n`.
/// Other strides are read in place: the copy cost more than it saved on 784- and 256-wide
/// weights.
///
/// # Safety
/// As [`product_as_given`]'s.
unsafe fn product<T: Element>(
    dst: SendPtr<T>,
    dst_strides: [isize; 2],
    read_dst: bool,
    a: &ArrayView2<'_, T>,
    b: &ArrayView2<'_, T>,
    may_thread: bool,
) {
    use crate::array::pool;
    let (m, k, n) = (a.nrows(), a.ncols(), b.ncols());
    let f32 = std::any::TypeId::of::<T>() == std::any::TypeId::of::<f32>();
    let bytes = |stride: isize| stride.unsigned_abs() * std::mem::size_of::<T>();
    let row_major_dst = f32 && dst_strides[1] == 1 && dst_strides[0] != 1;
    let sb = b.strides();
    let packed_shape = if dst_strides[0] == 1 { (n, m) } else { (m, n) };
    if f32 && (dst_strides[1] == 1 || dst_strides[0] == 1) && super::packed::packed_product_runs(packed_shape.0, packed_shape.1, k) {
        // SAFETY: the caller's contract.
        return unsafe { product_as_given(Ask::Packed, dst, dst_strides, read_dst, a, b, may_thread) };
    }
    if row_major_dst && sb[0] == 1 && sb[1] != 1 && m <= FEW_ROWS && k.min(n) >= 32 {
        // SAFETY: the caller's contract.
        return unsafe { product_few_rows(dst, dst_strides, read_dst, a, b, may_thread) };
    }
    // Columns a multiple of 2 KiB apart: the columns of a block fall into a few cache sets,
    // and evict one another.
    let aliased = bytes(sb[1]).is_multiple_of(2048);
    if row_major_dst && sb[1] != 1 && aliased && m >= 16 {
        let rows = transposed_copy(b.t(), may_thread);
        // SAFETY: the caller's contract, with b's values in a buffer of our own.
        unsafe { product_as_given(Ask::Transposed, dst, dst_strides, read_dst, a, &rows.view(), may_thread) };
        pool::recycle(rows.into_dyn().into_shared());
        return;
    }
    // SAFETY: the caller's contract.
    unsafe { product_as_given(Ask::Transposed, dst, dst_strides, read_dst, a, b, may_thread) }
}

/// The most rows of a product [`product_few_rows`] takes: its copies cost `m·k` and
/// `m·n` element moves against the product's `m·k·n` multiply-adds, where the transposed
/// product's copy of `b` costs `k·n`, a pass over a weight that may not fit in the cache.
const FEW_ROWS: usize = 256;

/// `dst (+)= a @ b` for a row-major `dst` of at most [`FEW_ROWS`] rows and a `b` stored by
/// columns, asked for as given ([`Ask`]). gemm-f32 reads `a` down its columns, so an `a`
/// stored by rows is first copied by columns; and it stores into `dst` one element at a
/// time down a column, so a `dst` whose rows are a multiple of 1 KiB apart, where those
/// stores would evict one another, is written through a scratch whose rows are 64 bytes
/// further apart. The caller keeps `k` and `n` at 32 or more, so that neither copy costs
/// more than a thirty-second of the product. `cargo run --release --example workloads --
/// gemm_shapes 1`: W3's `64 × 1024 × 1120` with both operands transposed, W1's forward
/// products and the `x Wᵀ` rows.
///
/// # Safety
/// As [`product_as_given`]'s.
unsafe fn product_few_rows<T: Element>(
    dst: SendPtr<T>,
    dst_strides: [isize; 2],
    read_dst: bool,
    a: &ArrayView2<'_, T>,
    b: &ArrayView2<'_, T>,
    may_thread: bool,
) {
    use crate::array::pool;
    let (m, n) = (a.nrows(), b.ncols());
    let by_columns = (a.strides()[0] != 1).then(|| transposed_copy(a.view(), may_thread));
    let a = by_columns.as_ref().map_or_else(|| a.view(), |columns| columns.t());
    if !(dst_strides[0].unsigned_abs() * std::mem::size_of::<T>()).is_multiple_of(1024) {
        // SAFETY: the caller's contract, with a's values maybe in a buffer of our own.
        unsafe { product_as_given(Ask::AsGiven, dst, dst_strides, read_dst, &a, b, may_thread) };
    } else {
        let width = n + 64 / std::mem::size_of::<T>();
        let mut scratch = pool::take_overwritten::<T>(m * width);
        // SAFETY: the scratch holds m rows of `width ≥ n` elements, all written (k > 0).
        unsafe { product_as_given(Ask::AsGiven, SendPtr(scratch.as_mut_ptr()), [width as isize, 1], false, &a, b, may_thread) };
        for (i, row) in scratch.chunks_exact(width).enumerate() {
            // SAFETY: row i of dst holds n elements at unit stride (the caller's contract),
            // initialised when `read_dst`.
            let out = unsafe { dst.get().offset(i as isize * dst_strides[0]) };
            for (j, &v) in row[..n].iter().enumerate() {
                // SAFETY: as above.
                unsafe {
                    let out = out.add(j);
                    out.write(if read_dst { *out + v } else { v });
                }
            }
        }
        pool::recycle(Array2::from_shape_vec((m, width), scratch).expect("m·width elements").into_dyn().into_shared());
    }
    if let Some(columns) = by_columns {
        pool::recycle(columns.into_dyn().into_shared());
    }
}

/// `xᵀ` in a row-major matrix from the buffer pool, copied as [`transpose_threaded`] does.
fn transposed_copy<T: Element>(x: ArrayView2<'_, T>, may_thread: bool) -> Array2<T> {
    let (rows, cols) = x.dim();
    let mut copy = Array2::from_shape_vec((cols, rows), crate::array::pool::take_overwritten::<T>(x.len())).expect("rows·cols elements");
    transpose_threaded(x, copy.view_mut(), may_thread);
    copy
}

/// `dst = srcᵀ`, the rows of `dst` cut into one block per thread when `may_thread` and
/// the copy is large: on one thread it would hold up a product that then runs on all
/// (`cargo run --release --example workloads -- gemm_shapes 2`: W1's layer 2 forward).
fn transpose_threaded<T: Element>(src: ArrayView2<'_, T>, dst: ArrayViewMut2<'_, T>, may_thread: bool) {
    let threads = rayon::current_num_threads();
    let rows = dst.nrows();
    if !may_thread || threads < 2 || dst.len() < super::PARALLEL_MIN_LEN || rows < 2 * ROW_BLOCK {
        return super::transpose_into(src, dst);
    }
    // Whole 16-row tiles per block (ROW_BLOCK is a multiple of the tile).
    let per = rows.div_ceil(threads).next_multiple_of(ROW_BLOCK);
    let (mut src, mut dst) = (src, dst);
    let mut blocks = Vec::with_capacity(threads);
    while dst.nrows() > per {
        let (src_block, src_rest) = src.split_at(ndarray::Axis(1), per);
        let (dst_block, dst_rest) = dst.split_at(ndarray::Axis(0), per);
        blocks.push((src_block, dst_block));
        (src, dst) = (src_rest, dst_rest);
    }
    blocks.push((src, dst));
    super::team::map_items(blocks, |(src, dst)| super::transpose_into(src, dst));
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
unsafe fn product_as_given<T: Element>(
    ask: Ask,
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
                ask,
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
    super::team::for_each(len.div_ceil(per), &|k| run(cut(k * per)));
}
