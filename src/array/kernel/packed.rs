//! nabla's own `f32` matrix product for CPUs with AVX-512: both operands packed, and a
//! block of 12 rows by 32 columns of the result summed in 24 registers.
//!
//! The loops are those of a packed product (as in BLIS): for each block of [`KC`] rows of
//! `b` and [`NC`] of its columns, `b` is copied into strips of 32 columns, each `KC × 32`
//! strip contiguous (the block, 1 MiB at most, stays in L2). Then for each twelve rows of
//! `a`, those rows' `KC` columns are copied into a panel stored column by column (12 KiB,
//! held in L1) and the panel meets every strip: the kernel broadcasts the panel's twelve
//! values of a column against the strip's row of 32, in 24 fused multiply-adds, over the
//! block's `KC`, and adds the sums to the result as it writes them. The first block of `k`
//! overwrites the result (unless the caller accumulates), the others add to it.
//!
//! Why a kernel of our own: on Intel's AVX-512 cores the gemm crate's kernel runs the
//! workloads' shapes further below the FMA peak than this one (`cargo run --release
//! --example workloads -- gemm_shapes 1` prints each product's fraction of the peak), and
//! its speed depends on the operands' strides (the workarounds in [`super::gemm`]'s
//! `product`). Here every operand is copied once into the layout the kernel reads, so a
//! transposed view costs only its copy.
//!
//! Where AVX-512 is missing, and on AMD's CPUs until it is measured there (see
//! [`packed_product_runs`]), the gemm crate runs instead.

use super::thin::ThinIsa;
use std::cell::RefCell;

/// Rows of `b` (columns of `a`) per block: a twelve-row panel of `a` is then 12 KiB, held
/// in L1 with the strip it meets.
const KC: usize = 256;
/// Columns of `b` per block: `KC × NC` floats, 1 MiB, held in an L2 of that size or more
/// while every panel of `a` meets it.
const NC: usize = 1024;
/// Rows of a panel of `a`.
const MR: usize = 12;
/// Columns of a strip of `b`: two 16-lane vectors.
const NR: usize = 32;

/// Whether [`packed_product`] runs here for an `m × k` by `k × n` product: `f32` with
/// AVX-512F, at least [`MIN_SIDE`] rows and columns and 16 terms. Smaller products go to
/// the gemm crate, which reads operands in place where its kernels allow.
pub(super) fn packed_product_runs(m: usize, n: usize, k: usize) -> bool {
    m >= MIN_SIDE && n >= MIN_SIDE && k >= 16 && *RUNS_HERE.get_or_init(runs_here)
}

/// Whether this CPU takes the packed product at all (see [`runs_here`]).
static RUNS_HERE: std::sync::OnceLock<bool> = std::sync::OnceLock::new();

/// AVX-512F on an Intel CPU: the two kernels have been compared (`gemm_shapes`) only on
/// Intel's cores. On AMD's AVX-512 cores the gemm crate's kernel ran the same shapes
/// nearer the peak, so it stays there until the two are compared on them.
fn runs_here() -> bool {
    #[cfg(target_arch = "x86_64")]
    if ThinIsa::detect::<f32>() == Some(ThinIsa::Avx512) {
        // Leaf 0 of CPUID gives the vendor's name.
        let id = std::arch::x86_64::__cpuid(0);
        let vendor: Vec<u8> = [id.ebx, id.edx, id.ecx].iter().flat_map(|r| r.to_le_bytes()).collect();
        return vendor == b"GenuineIntel";
    }
    false
}

/// The fewest rows and columns [`packed_product`] takes. With fewer rows, the copy of `b`
/// serves too few of them: a linear layer's `x Wᵀ` on a batch of 64 or 128 (`W` stored by
/// columns, copied through transposes) ran slower than the gemm crate, which reads both in
/// place; so did a product 100 columns wide, whose last strip is mostly zeros. The rows of
/// `cargo run --release --example workloads -- gemm_shapes 1` show both sides.
const MIN_SIDE: usize = 256;

thread_local! {
    /// This thread's strips of `b` and panel of `a`, reused from product to product: an
    /// allocation of this size per call would page-fault on first touch.
    static SCRATCH: RefCell<(Vec<f32>, Vec<f32>)> = const { RefCell::new((Vec::new(), Vec::new())) };
}

/// A slice of `len` floats starting at a 64-byte boundary of `buffer` (grown as needed), so
/// that each 16-lane load of a strip reads one cache line.
fn aligned(buffer: &mut Vec<f32>, len: usize) -> &mut [f32] {
    if buffer.len() < len + 16 {
        buffer.resize(len + 16, 0.0);
    }
    let skip = buffer.as_ptr().align_offset(64).min(15);
    &mut buffer[skip..skip + len]
}

/// A matrix operand: its first element and its strides (row, column) in elements.
#[derive(Clone, Copy)]
pub(super) struct Operand {
    pub(super) at: *const f32,
    pub(super) rs: isize,
    pub(super) cs: isize,
}

impl Operand {
    /// Element `(i, j)`'s address (computed without `unsafe`; valid where the matrix is).
    fn element(self, i: usize, j: usize) -> *const f32 {
        self.at.wrapping_offset(i as isize * self.rs + j as isize * self.cs)
    }
}

/// `dst (+)= a b` for an `m × k` `a` and a `k × n` `b` at any strides, into a `dst` whose
/// rows are `dst_rs` elements apart and contiguous, adding to it when `read_dst`. On the
/// calling thread.
///
/// # Safety
/// The CPU has AVX-512F (as where [`packed_product_runs`] holds). The operands address matrices of
/// those dims and strides; `dst`'s `m × n` elements are disjoint from them, not accessed by
/// anything else during the call, and initialised when `read_dst`.
#[allow(clippy::too_many_arguments)]
pub(super) unsafe fn packed_product(m: usize, n: usize, k: usize, dst: *mut f32, dst_rs: usize, read_dst: bool, a: Operand, b: Operand) {
    SCRATCH.with_borrow_mut(|(strips, panel)| {
        let strips = aligned(strips, KC * NC.min(n).next_multiple_of(NR));
        let panel = aligned(panel, KC * MR);
        for jc in (0..n).step_by(NC) {
            let nc = NC.min(n - jc);
            for pc in (0..k).step_by(KC) {
                let kc = KC.min(k - pc);
                // SAFETY: rows pc.. and columns jc.. of b, kc by nc, exist (the contract).
                unsafe { pack_b(strips, b.element(pc, jc), b.rs, b.cs, kc, nc) };
                let accumulate = read_dst || pc > 0;
                for ir in (0..m).step_by(MR) {
                    let rows = MR.min(m - ir);
                    // SAFETY: rows ir.. and columns pc.. of a, rows by kc, exist.
                    unsafe { pack_a(panel, a.element(ir, pc), a.rs, a.cs, rows, kc) };
                    // SAFETY: the panel and strips were just written for kc, rows and nc;
                    // rows ir.. and columns jc.. of dst are within its m × n (the caller's
                    // contract, with the CPU's AVX-512F).
                    unsafe { panel_times_strips(panel, strips, kc, dst.add(ir * dst_rs + jc), dst_rs, rows, nc, accumulate) };
                }
            }
        }
    });
}

/// `kc` rows by `n` columns of `b` into strips of [`NR`] columns, strip `s` at `s·kc·NR`,
/// element `(kk, j)` of it at `kk·NR + j`; columns past `n` are zero.
///
/// # Safety
/// `b` addresses `kc × n` floats at strides `rs`, `cs`; `strips` holds `kc·⌈n/NR⌉·NR`.
unsafe fn pack_b(strips: &mut [f32], b: *const f32, rs: isize, cs: isize, kc: usize, n: usize) {
    let count = n.div_ceil(NR);
    if cs == 1 {
        // Each row of b read once, front to back, into every strip.
        for kk in 0..kc {
            // SAFETY: row kk of b, n floats (the contract).
            let src = unsafe { std::slice::from_raw_parts(b.offset(kk as isize * rs), n) };
            for (s, src) in src.chunks(NR).enumerate() {
                let row = &mut strips[(s * kc + kk) * NR..][..NR];
                match (<&mut [f32; NR]>::try_from(&mut *row), <&[f32; NR]>::try_from(src)) {
                    // A whole row as two vector moves, not a call to copy 128 bytes.
                    (Ok(row), Ok(src)) => *row = *src,
                    _ => {
                        row[..src.len()].copy_from_slice(src);
                        row[src.len()..].fill(0.0);
                    }
                }
            }
        }
        return;
    }
    for (s, strip) in strips.chunks_exact_mut(kc * NR).take(count).enumerate() {
        let first = s * NR;
        let width = NR.min(n - first);
        if width < NR {
            strip.fill(0.0);
        }
        let (tiled_columns, tiled_rows) = if rs == 1 { (width - width % 16, kc - kc % 16) } else { (0, 0) };
        if tiled_columns > 0 && tiled_rows > 0 {
            // Columns of b are runs: 16 × 16 tiles through a register transpose.
            // SAFETY: the caller's contract for the CPU (AVX-512F) and for b's columns.
            unsafe { pack_b_columns_avx512(strip, b.wrapping_offset(first as isize * cs), cs, tiled_columns, tiled_rows) };
        }
        // The rest element by element, down each column of the strip.
        for j in 0..width {
            let column = b.wrapping_offset((first + j) as isize * cs);
            // Rows the tiles wrote are skipped.
            let skip = if j < tiled_columns { tiled_rows } else { 0 };
            for (kk, at) in strip.iter_mut().skip(j).step_by(NR).enumerate().skip(skip) {
                // SAFETY: element (kk, first + j) of b (the contract).
                *at = unsafe { *column.offset(kk as isize * rs) };
            }
        }
    }
}

/// `rows` (at most [`MR`]) rows by `kc` columns of `a` into a panel stored column by
/// column, element `(r, kk)` at `kk·MR + r`; rows past `rows` are zero.
///
/// # Safety
/// `a` addresses `rows × kc` floats at strides `rs`, `cs`; `panel` holds `kc·MR`.
unsafe fn pack_a(panel: &mut [f32], a: *const f32, rs: isize, cs: isize, rows: usize, kc: usize) {
    let panel = &mut panel[..kc * MR];
    if rows < MR {
        panel.fill(0.0);
    }
    if rs == 1 {
        // Columns of a are runs: `rows` neighbours per column of the panel.
        for (kk, column) in panel.chunks_exact_mut(MR).enumerate() {
            // SAFETY: elements (..rows, kk) of a (the contract).
            let src = unsafe { std::slice::from_raw_parts(a.offset(kk as isize * cs), rows) };
            column[..rows].copy_from_slice(src);
        }
    } else if cs == 1 {
        // Rows of a are runs: sixteen columns at a time through a register transpose.
        let whole = kc - kc % 16;
        // SAFETY: the caller's contract for the CPU (AVX-512F) and for a's rows by kc.
        unsafe { pack_a_rows_avx512(panel, a, rs, rows, whole) };
        for r in 0..rows {
            for kk in whole..kc {
                // SAFETY: element (r, kk) of a (the contract).
                panel[kk * MR + r] = unsafe { *a.offset(r as isize * rs).add(kk) };
            }
        }
    } else {
        for r in 0..rows {
            let row = a.wrapping_offset(r as isize * rs);
            for (kk, at) in panel.iter_mut().skip(r).step_by(MR).enumerate() {
                // SAFETY: element (r, kk) of a (the contract).
                *at = unsafe { *row.offset(kk as isize * cs) };
            }
        }
    }
}

/// Columns `0..whole` (a multiple of 16) of [`pack_a`]'s panel from an `a` whose rows are
/// contiguous: each 16 columns of the `rows` rows (the rest zero) transposed in registers,
/// each column of the result stored as twelve lanes.
///
/// # Safety
/// The CPU has AVX-512F; `a` addresses `rows ≤ 12` rows of `whole` floats `rs` apart;
/// `panel` holds `whole·MR`.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
unsafe fn pack_a_rows_avx512(panel: &mut [f32], a: *const f32, rs: isize, rows: usize, whole: usize) {
    use std::arch::x86_64::*;
    assert!(panel.len() >= whole * MR, "internal: panel of kc columns");
    for kk in (0..whole).step_by(16) {
        let v: [__m512; 16] = std::array::from_fn(|r| {
            // SAFETY: row r < rows, columns kk..kk + 16 ≤ whole (the contract).
            if r < rows { unsafe { _mm512_loadu_ps(a.offset(r as isize * rs).add(kk)) } } else { _mm512_setzero_ps() }
        });
        for (j, column) in super::transpose::transposed_avx512(v).into_iter().enumerate() {
            // SAFETY: twelve floats at (kk + j)·MR, inside the panel (asserted).
            unsafe { _mm512_mask_storeu_ps(panel.as_mut_ptr().add((kk + j) * MR), 0x0FFF, column) };
        }
    }
}

/// Rows `0..rows` and columns `0..columns` (multiples of 16) of [`pack_b`]'s strip from a
/// `b` whose columns are contiguous and `cs` apart, a 16 × 16 tile at a time through a
/// register transpose.
///
/// # Safety
/// The CPU has AVX-512F; `b` addresses `columns` columns of `rows` floats `cs` apart;
/// `strip` holds `rows·NR` and `columns ≤ NR`.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
unsafe fn pack_b_columns_avx512(strip: &mut [f32], b: *const f32, cs: isize, columns: usize, rows: usize) {
    use std::arch::x86_64::*;
    assert!(columns <= NR && strip.len() >= rows * NR, "internal: a strip of kc rows");
    for j in (0..columns).step_by(16) {
        for kk in (0..rows).step_by(16) {
            // SAFETY: column j + i < columns, rows kk..kk + 16 ≤ rows of b (the contract).
            let v: [__m512; 16] = std::array::from_fn(|i| unsafe { _mm512_loadu_ps(b.offset((j + i) as isize * cs).add(kk)) });
            for (t, row) in super::transpose::transposed_avx512(v).into_iter().enumerate() {
                // SAFETY: row kk + t < rows, lanes j..j + 16 ≤ NR of the strip (asserted).
                unsafe { _mm512_storeu_ps(strip.as_mut_ptr().add((kk + t) * NR + j), row) };
            }
        }
    }
}

/// `dst[..rows, ..n] (+)= panel · strips`: the panel against each strip in turn, the last
/// strip's columns past `n` masked off.
///
/// # Safety
/// The CPU has AVX-512F; `panel` and `strips` as [`pack_a`] and [`pack_b`] wrote them for
/// `kc`, `rows` and `n`; `dst` addresses `rows` rows of `n` floats `dst_rs` apart, which no
/// one else accesses during the call, initialised when `accumulate`.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,avx2,fma")]
#[allow(clippy::too_many_arguments)]
unsafe fn panel_times_strips(
    panel: &[f32],
    strips: &[f32],
    kc: usize,
    dst: *mut f32,
    dst_rs: usize,
    rows: usize,
    n: usize,
    accumulate: bool,
) {
    for (s, strip) in strips.chunks_exact(kc * NR).take(n.div_ceil(NR)).enumerate() {
        let j = s * NR;
        let lanes = NR.min(n - j);
        let mask = |v: usize| {
            let on = lanes.saturating_sub(16 * v).min(16);
            if on == 16 { u16::MAX } else { (1u16 << on) - 1 }
        };
        // SAFETY: the caller's contract, for columns j..j + lanes of dst.
        unsafe { kernel_12x32(panel.as_ptr(), strip.as_ptr(), kc, dst.add(j), dst_rs, rows, [mask(0), mask(1)], accumulate) };
    }
}

/// `dst[r, lanes] (+)= Σ_kk a[kk·12 + r] · b[kk·32 + lanes]` for `r < rows` and the lanes
/// `masks` let through (16 per vector): the 12 × 32 block's sums in 24 registers over all
/// `kc` terms, written once. The loop over `kk` is unrolled by four and asks for the panel
/// eight columns ahead.
///
/// # Safety
/// The CPU has AVX-512F; `a` holds `kc·12` floats and `b` `kc·32`; `dst` addresses `rows`
/// rows `dst_rs` apart with the masked lanes of 32 floats each, which no one else accesses
/// during the call, initialised when `accumulate`.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,avx2,fma")]
#[allow(clippy::too_many_arguments)]
// Indexed loops: written with iterators over the arrays of sums, the compiler kept the sums
// on the stack.
#[allow(clippy::needless_range_loop)]
unsafe fn kernel_12x32(
    a: *const f32,
    b: *const f32,
    kc: usize,
    dst: *mut f32,
    dst_rs: usize,
    rows: usize,
    masks: [u16; 2],
    accumulate: bool,
) {
    use std::arch::x86_64::*;
    // The block's rows of dst, read and written after the sums, asked of the cache now.
    for r in 0..rows {
        let row = dst.wrapping_add(r * dst_rs).cast::<i8>();
        for at in [0, 64, 127] {
            // A prefetch never faults nor changes memory, whatever the address.
            _mm_prefetch::<_MM_HINT_T0>(row.wrapping_add(at));
        }
    }
    let mut lo = [_mm512_setzero_ps(); MR];
    let mut hi = [_mm512_setzero_ps(); MR];
    // One column of the panel against one row of the strip, `kk` columns in.
    let step = |lo: &mut [__m512; MR], hi: &mut [__m512; MR], kk: usize| {
        // SAFETY: kk < kc, inside both buffers (the contract); the prefetch never faults.
        unsafe {
            _mm_prefetch::<_MM_HINT_T0>(a.wrapping_add(MR * (kk + 8)).cast());
            let b0 = _mm512_loadu_ps(b.add(NR * kk));
            let b1 = _mm512_loadu_ps(b.add(NR * kk + 16));
            for r in 0..MR {
                let x = _mm512_set1_ps(*a.add(MR * kk + r));
                lo[r] = _mm512_fmadd_ps(x, b0, lo[r]);
                hi[r] = _mm512_fmadd_ps(x, b1, hi[r]);
            }
        }
    };
    let whole = kc - kc % 4;
    for kk in (0..whole).step_by(4) {
        for u in 0..4 {
            step(&mut lo, &mut hi, kk + u);
        }
    }
    for kk in whole..kc {
        step(&mut lo, &mut hi, kk);
    }
    for r in 0..rows {
        for (v, sums) in [lo[r], hi[r]].into_iter().enumerate() {
            let at = dst.wrapping_add(r * dst_rs + 16 * v);
            // SAFETY: row r < rows of dst, the lanes the mask lets through (the contract);
            // masked-off lanes are neither read nor written.
            unsafe {
                let sums = if accumulate { _mm512_add_ps(_mm512_maskz_loadu_ps(masks[v], at), sums) } else { sums };
                _mm512_mask_storeu_ps(at, masks[v], sums);
            }
        }
    }
}
