//! Convolution, as PyTorch's `conv1d`/`conv2d`: layouts `(N, C, L)` and `(N, C, H, W)`,
//! weights `[out, in/groups, k…]`, with stride, zero padding, dilation and groups.
//!
//! Three ops close the family under differentiation, so gradients of any order work:
//! the convolution `y = conv(x, w)`, its adjoint in the input (`conv_input_grad`, the
//! transposed convolution) and its adjoint in the weight (`conv_weight_grad`). Each one's
//! backward rule is written with the other two: with `⟨a, b⟩` the sum of `a ⊙ b`,
//! `⟨gy, conv(x, w)⟩ = ⟨input_grad(gy, w), x⟩ = ⟨weight_grad(x, gy), w⟩`.
//!
//! The kernels are im2col + GEMM per sample and group (the `gemm` crate), samples in
//! parallel with rayon; the forward pass of a convolution with many channels per group
//! builds pixel-major rows instead (see `pixel_major_pays`), and in `f32` on AVX2 a direct
//! kernel reads the padded input in place where it applies (see `forward_direct`).

use super::registry::{OpInfo, randn, recorded_grad};
use crate::array::kernel::{ThinLhs, gemm, gemm_acc, gemm_set, transpose_into};
use crate::autograd::rule;
use crate::error::{Error, Result};
use crate::tensor::{Element, Saves, Tensor};
use ndarray::{Array2, Array3, ArrayD, ArrayView2, Axis, IxDyn};
use rayon::prelude::*;

/// Stride, zero padding, dilation (per spatial dim) and groups of a 2-D convolution.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Conv2dConfig {
    /// Step between windows, `(height, width)`.
    pub stride: [usize; 2],
    /// Zeros added on each side, `(height, width)`.
    pub padding: [usize; 2],
    /// Spacing between kernel taps (the "skip" convolution), `(height, width)`.
    pub dilation: [usize; 2],
    /// Input and output channels split into this many independent groups.
    pub groups: usize,
}

impl Default for Conv2dConfig {
    /// Stride 1, no padding, no dilation, one group: PyTorch's defaults.
    fn default() -> Self {
        Conv2dConfig { stride: [1, 1], padding: [0, 0], dilation: [1, 1], groups: 1 }
    }
}

/// The 1-D counterpart of [`Conv2dConfig`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Conv1dConfig {
    /// Step between windows.
    pub stride: usize,
    /// Zeros added on each side.
    pub padding: usize,
    /// Spacing between kernel taps.
    pub dilation: usize,
    /// Channel groups.
    pub groups: usize,
}

impl Default for Conv1dConfig {
    fn default() -> Self {
        Conv1dConfig { stride: 1, padding: 0, dilation: 1, groups: 1 }
    }
}

/// The output length of a window sweep: `⌊(n + 2p - d(k - 1) - 1) / s⌋ + 1`, or `None` when
/// the (dilated) kernel does not fit.
pub fn conv_output_size(n: usize, kernel: usize, stride: usize, padding: usize, dilation: usize) -> Option<usize> {
    let span = dilation * (kernel.max(1) - 1) + 1;
    let padded = n + 2 * padding;
    (padded >= span && stride > 0).then(|| (padded - span) / stride + 1)
}

/// Everything a kernel needs about one convolution's shapes.
#[derive(Debug, Clone, Copy)]
struct Geometry {
    n: usize,
    c: usize,
    h: usize,
    w: usize,
    o: usize,
    kh: usize,
    kw: usize,
    oh: usize,
    ow: usize,
    cfg: Conv2dConfig,
}

impl Geometry {
    fn c_per_group(&self) -> usize {
        self.c / self.cfg.groups
    }
    fn o_per_group(&self) -> usize {
        self.o / self.cfg.groups
    }
    /// Rows of a group's column matrix: one per (input channel, kernel tap).
    fn col_rows(&self) -> usize {
        self.c_per_group() * self.kh * self.kw
    }
    fn col_cols(&self) -> usize {
        self.oh * self.ow
    }
}

/// The column matrix of one sample and group: `[C/g · kh · kw, oh · ow]`. Row
/// `(c, i, j)` holds, for every output position, the input pixel that tap `(i, j)` of the
/// kernel sees there (0 in the padding).
fn im2col<T: Element>(plane: &[T], g: &Geometry, group: usize) -> Array2<T> {
    let len = g.col_rows() * g.col_cols();
    // From the pool (callers give it back): a fresh buffer per sample would cost a page
    // fault per 4 KiB.
    let same_width = g.cfg.stride == [1, 1] && g.ow == g.w;
    let mut cols = if same_width {
        crate::array::pool::take_overwritten::<T>(len)
    } else {
        let mut cols = crate::array::pool::take::<T>(len);
        cols.resize(len, T::zero());
        cols
    };
    fill_cols(plane, g, group, &mut cols, !same_width);
    Array2::from_shape_vec((g.col_rows(), g.col_cols()), cols).expect("rows x cols")
}

/// Where tap `(i, j)` reads: the output rows `y_lo..y_hi` and columns `x_lo..x_hi` whose
/// input pixel lies inside the image, and the column shift `j·d_w`.
fn tap_window(g: &Geometry, i: usize, j: usize) -> (usize, usize, usize, usize, usize) {
    let [sh, sw] = g.cfg.stride;
    let [ph, pw] = g.cfg.padding;
    let [dh, dw] = g.cfg.dilation;
    // Rows: y·s + i·d - p in [0, h); columns: x·s + j·d - p in [0, w).
    let rows = inside(g.oh, sh, i * dh, ph, g.h);
    let shift = j * dw;
    let cols = inside(g.ow, sw, shift, pw, g.w);
    (rows.start, rows.end, cols.start, cols.end, shift)
}

/// The `v` in `0..count` whose input position `v·step + offset - pad` lies in `[0, n)`: a
/// range, since the position grows with `v`. Without a division per `v`: a convolution's
/// output rows that a tap reads, a pooling window's taps inside the input.
pub(crate) fn inside(count: usize, step: usize, offset: usize, pad: usize, n: usize) -> std::ops::Range<usize> {
    let lo = pad.saturating_sub(offset).div_ceil(step).min(count);
    let hi = if n + pad > offset { ((n + pad - offset - 1) / step + 1).min(count) } else { 0 };
    lo..hi.max(lo)
}

/// Fills `cols` (`[C/g · kh · kw, oh · ow]`) with the column matrix.
///
/// When the output is as wide as the input with stride 1 (a "same" convolution, as most
/// are), a tap's whole row is the channel shifted by a constant offset: one copy, then the
/// columns that wrapped around the image's edge and the rows outside it set to zero, so
/// every element is written (`zeroed` is false: the buffer is not zeroed first). Otherwise
/// one copy per output row into a zeroed buffer.
fn fill_cols<T: Element>(plane: &[T], g: &Geometry, group: usize, cols: &mut [T], zeroed: bool) {
    let [sh, sw] = g.cfg.stride;
    let [ph, pw] = g.cfg.padding;
    let dh = g.cfg.dilation[0];
    let (hw, ow) = (g.h * g.w, g.ow);
    let mut rows = cols.chunks_mut(g.col_cols().max(1));
    for c in 0..g.c_per_group() {
        let channel = &plane[(group * g.c_per_group() + c) * hw..][..hw];
        for i in 0..g.kh {
            for j in 0..g.kw {
                let row = rows.next().expect("one row per tap");
                let (y_lo, y_hi, x_lo, x_hi, shift) = tap_window(g, i, j);
                if x_lo >= x_hi || y_lo >= y_hi {
                    if !zeroed {
                        row.fill(T::zero());
                    }
                    continue;
                }
                let first = x_lo * sw + shift - pw;
                if !zeroed {
                    // Output (y, x) reads input (y + i·d - p, x + shift - p): with ow = w and
                    // stride 1, a constant offset in the flattened plane.
                    let (start, end) = (y_lo * ow + x_lo, (y_hi - 1) * ow + x_hi);
                    let src = (y_lo + i * dh - ph) * g.w + first;
                    row[start..end].copy_from_slice(&channel[src..src + (end - start)]);
                    row[..start].fill(T::zero());
                    row[end..].fill(T::zero());
                    for y in y_lo..y_hi {
                        row[y * ow..y * ow + x_lo].fill(T::zero());
                        row[y * ow + x_hi..(y + 1) * ow].fill(T::zero());
                    }
                    continue;
                }
                for y in y_lo..y_hi {
                    let src = &channel[(y * sh + i * dh - ph) * g.w..][..g.w];
                    let dst = &mut row[y * ow..(y + 1) * ow];
                    if sw == 1 {
                        dst[x_lo..x_hi].copy_from_slice(&src[first..first + (x_hi - x_lo)]);
                    } else {
                        for (k, d) in dst[x_lo..x_hi].iter_mut().enumerate() {
                            *d = src[first + k * sw];
                        }
                    }
                }
            }
        }
    }
}

/// Returns a column matrix's buffer to the pool.
fn give_back<T: Element>(cols: Array2<T>) {
    crate::array::pool::recycle(cols.into_dyn().into_shared());
}

/// Adds a column matrix back into one sample's input planes: the adjoint of [`im2col`]
/// (each entry goes back to the pixel it was read from, overlapping taps add up).
fn col2im<T: Element>(cols: &ArrayView2<'_, T>, plane: &mut [T], g: &Geometry, group: usize) {
    let [sh, sw] = g.cfg.stride;
    let [ph, pw] = g.cfg.padding;
    let [dh, dw] = g.cfg.dilation;
    let hw = g.h * g.w;
    let cols = cols.as_standard_layout();
    let mut rows = cols.as_slice().expect("standard layout").chunks(g.col_cols().max(1));
    for c in 0..g.c_per_group() {
        let channel = &mut plane[(group * g.c_per_group() + c) * hw..][..hw];
        for i in 0..g.kh {
            for j in 0..g.kw {
                let row = rows.next().expect("one row per tap");
                let shift = j * dw;
                let x_lo = pw.saturating_sub(shift).div_ceil(sw);
                let x_hi = if g.w + pw > shift { ((g.w + pw - shift - 1) / sw + 1).min(g.ow) } else { 0 };
                if x_lo >= x_hi {
                    continue;
                }
                let first = x_lo * sw + shift - pw;
                for y in 0..g.oh {
                    let src_y = (y * sh + i * dh) as isize - ph as isize;
                    if src_y < 0 || src_y as usize >= g.h {
                        continue;
                    }
                    let dst = &mut channel[src_y as usize * g.w..][..g.w];
                    let src = &row[y * g.ow + x_lo..y * g.ow + x_hi];
                    if sw == 1 {
                        // Slices of one length: the add vectorises.
                        dst[first..first + src.len()].iter_mut().zip(src).for_each(|(d, &v)| *d = *d + v);
                    } else {
                        for (k, &v) in src.iter().enumerate() {
                            let d = &mut dst[first + k * sw];
                            *d = *d + v;
                        }
                    }
                }
            }
        }
    }
}

fn standard<T: Element>(x: &Tensor<T>) -> std::borrow::Cow<'_, [T]> {
    match x.value().to_slice() {
        Some(s) => std::borrow::Cow::Borrowed(s),
        None => std::borrow::Cow::Owned(x.value().iter().copied().collect()),
    }
}

/// The weight of one group as a matrix `[O/g, C/g · kh · kw]`.
fn group_weight<'a, T: Element>(w: &'a [T], g: &Geometry, group: usize) -> ArrayView2<'a, T> {
    let rows = g.o_per_group();
    ArrayView2::from_shape((rows, g.col_rows()), &w[group * rows * g.col_rows()..][..rows * g.col_rows()]).expect("weight block")
}

/// `y[n, o] = Σ w[o] ⋆ x[n]` (+ bias), `[N, O, oh, ow]`.
fn conv_forward<T: Element>(x: &Tensor<T>, w: &Tensor<T>, g: Geometry) -> ArrayD<T> {
    conv_forward_by(x, w, g, pixel_major_pays(&g))
}

/// [`conv_forward`] through pixel-major rows or through im2col's columns.
fn conv_forward_by<T: Element>(x: &Tensor<T>, w: &Tensor<T>, g: Geometry, pixel_major: bool) -> ArrayD<T> {
    let (xs, ws) = (standard(x), standard(w));
    if let Some(out) = forward_direct(&xs, &ws, &g) {
        return out;
    }
    let per_sample = g.o * g.col_cols();
    let tap_major = pixel_major.then(|| tap_major_weight(&ws, &g));
    // Every element is written: each group's product fills its own output rows.
    let mut out = crate::array::pool::take_overwritten::<T>(g.n * per_sample);
    out.par_chunks_mut(per_sample.max(1)).enumerate().for_each(|(n, out_n)| {
        let plane = &xs[n * g.c * g.h * g.w..][..g.c * g.h * g.w];
        if let Some(wt) = &tap_major {
            return forward_pixel_major(plane, wt, &g, out_n);
        }
        for group in 0..g.cfg.groups {
            let cols = im2col(plane, &g, group);
            let dst = &mut out_n[group * g.o_per_group() * g.col_cols()..][..g.o_per_group() * g.col_cols()];
            let mut dst = ndarray::ArrayViewMut2::from_shape((g.o_per_group(), g.col_cols()), dst).expect("output block");
            // Written straight into the output: no product buffer to copy from.
            gemm_set(&mut dst, &group_weight(&ws, &g, group), &cols.view(), g.n == 1);
            give_back(cols);
        }
    });
    ArrayD::from_shape_vec(IxDyn(&[g.n, g.o, g.oh, g.ow]), out).expect("output shape")
}

/// The forward pass read straight from the input by [`ThinLhs::shifted`]'s kernel,
/// where it runs (`f32` with AVX2 and FMA, no AVX-512) and the stride along the width is 1.
///
/// Output row `y` of channel `o` is `Σ_{c,i,j} w[o, c, i, j] · x̃[c, y·s_h + i·d_h, j·d_w ..]`
/// with `x̃` the zero-padded input: each tap's operand is a run of `x̃` at a fixed offset, so
/// the kernel reads it in place, a 6 × 16 block of the output (six channels, sixteen
/// pixels of a row) summed in registers over all `C/g · kh · kw` taps. Neither columns nor
/// pixel-major rows are written, and the output comes out in its planes. Samples run in
/// parallel, and a sample's output channels too when there are fewer samples than threads.
///
/// It is faster than pixel-major rows and the gemm crate where the output rows fill the
/// vectors (`cargo bench --bench ops -- w6_conv` covers a 32-wide image), and slower where
/// rows end in a mostly empty masked vector (`-- w2_cnn_step`'s 28- and 14-wide ones),
/// hence `lanes_used`.
fn forward_direct<T: Element>(xs: &[T], ws: &[T], g: &Geometry) -> Option<ArrayD<T>> {
    use crate::array::pool;
    // The kernel's vectors are 8 pixels of an output row: an output whose rows leave more
    // than a sixteenth of their lanes idle (14 or 28 pixels wide, say) runs slower here
    // than through the gemm crate.
    let lanes_used = g.ow * 16 >= g.ow.next_multiple_of(8) * 15;
    if !lanes_used || g.cfg.stride[1] != 1 || g.n * g.o * g.col_cols() * g.h * g.w * g.col_rows() == 0 {
        return None;
    }
    let (opg, taps) = (g.o_per_group(), g.kh * g.kw);
    let all: Vec<usize> = (0..opg).collect();
    let lhs: Vec<ThinLhs<T>> = (0..g.cfg.groups).map(|group| ThinLhs::rows_of(group_weight(ws, g, group), &all)).collect();
    if !lhs.iter().all(ThinLhs::is_packed) {
        return None;
    }
    let ([ph, pw], [dh, dw], sh) = (g.cfg.padding, g.cfg.dilation, g.cfg.stride[0]);
    let (hp, wp) = (g.h + 2 * ph, g.w + 2 * pw);
    // Tap (c, i, j) of a group reads x̃ at this offset from the group's first channel.
    let offsets: Vec<usize> =
        (0..g.c_per_group() * taps).map(|k| (k / taps) * hp * wp + (k % taps / g.kw) * dh * wp + (k % g.kw) * dw).collect();
    let p = g.col_cols();
    let threads = rayon::current_num_threads().max(1);
    // Whole panels of six channels per block, as many blocks per group as it takes to give
    // every thread work.
    let split = threads.div_ceil(g.n * g.cfg.groups);
    let block = opg.div_ceil(split).next_multiple_of(6);
    let mut out = pool::take_overwritten::<T>(g.n * g.o * p);
    out.par_chunks_mut(g.o * p).enumerate().for_each(|(n, out_n)| {
        let plane = &xs[n * g.c * g.h * g.w..][..g.c * g.h * g.w];
        let padded = if ph + pw == 0 { std::borrow::Cow::Borrowed(plane) } else { std::borrow::Cow::Owned(pad_planes(plane, g)) };
        out_n.par_chunks_mut(opg * p).zip(&lhs).enumerate().for_each(|(group, (out_g, lhs))| {
            let src = &padded[group * g.c_per_group() * hp * wp..];
            out_g.par_chunks_mut(block * p).enumerate().for_each(|(b, out_b)| {
                let rows = b * block..(b * block + out_b.len() / p);
                let mut planes = ndarray::ArrayViewMut3::from_shape((rows.len(), g.oh, g.ow), out_b).expect("output block");
                let chunk = ThinLhs::<T>::shifted_chunk(rows.len());
                for y in 0..g.oh {
                    for ks in (0..offsets.len()).step_by(chunk).map(|s| s..(s + chunk).min(offsets.len())) {
                        let dst = &mut planes.index_axis_mut(Axis(1), y);
                        let ran = lhs.shifted(dst, rows.clone(), ks.clone(), &src[y * sh * wp..], &offsets[ks.clone()], ks.start > 0);
                        assert!(ran, "internal: the kernel runs where ThinLhs packs, on contiguous rows");
                    }
                }
            });
        });
        if let std::borrow::Cow::Owned(buffer) = padded {
            pool::recycle(ndarray::Array1::from_vec(buffer).into_dyn().into_shared());
        }
    });
    Some(ArrayD::from_shape_vec(IxDyn(&[g.n, g.o, g.oh, g.ow]), out).expect("output shape"))
}

/// The zeros [`pad_planes`] adds after the last plane: a vector of `f32`.
const READ_PAST: usize = 8;

/// One sample's planes zero-padded by `(p_h, p_w)` on every side: `(C, h + 2p_h, w + 2p_w)`,
/// then [`READ_PAST`] zeros, in a pooled buffer.
fn pad_planes<T: Element>(plane: &[T], g: &Geometry) -> Vec<T> {
    let [ph, pw] = g.cfg.padding;
    let wp = g.w + 2 * pw;
    // Zeros past the last plane, so that the kernel reads its last rows a whole vector at a
    // time.
    let mut padded = crate::array::pool::take_overwritten::<T>(g.c * (g.h + 2 * ph) * wp + READ_PAST);
    let (padded_planes, slack) = padded.split_at_mut(g.c * (g.h + 2 * ph) * wp);
    slack.fill(T::zero());
    for (dst, src) in padded_planes.chunks_exact_mut((g.h + 2 * ph) * wp).zip(plane.chunks_exact(g.h * g.w)) {
        let (top, rest) = dst.split_at_mut(ph * wp);
        let (inside, bottom) = rest.split_at_mut(g.h * wp);
        top.fill(T::zero());
        bottom.fill(T::zero());
        for (row, src) in inside.chunks_exact_mut(wp).zip(src.chunks_exact(g.w)) {
            row[..pw].fill(T::zero());
            row[pw..pw + g.w].copy_from_slice(src);
            row[pw + g.w..].fill(T::zero());
        }
    }
    padded
}

/// Input channels per group from which the forward pass builds pixel-major rows instead of
/// im2col's columns.
const PIXEL_MAJOR_MIN_CHANNELS: usize = 16;

/// Whether the forward pass takes the pixel-major path: with many channels per group, a
/// product whose operand and output are pixel-major, `Y_nᵀ = R_n Wᵀ` (`R_n` a row of
/// `kh·kw·C/g` inputs per output pixel), runs on the `gemm` crate's faster kernel shape
/// (`cargo bench --bench ops -- conv_gemm`: `forward_rows_wt` against `forward_w_cols`), and each row is `kh·kw` copies of a pixel's contiguous
/// channels once the input is transposed to `(h·w, C)`. With few channels (a first layer)
/// those copies are a few elements each, and im2col's row copies win.
fn pixel_major_pays(g: &Geometry) -> bool {
    g.c_per_group() >= PIXEL_MAJOR_MIN_CHANNELS
}

/// The weight with each output channel's row in tap-major order, `[O, kh, kw, C/g]`: the
/// column order of the pixel-major rows.
fn tap_major_weight<T: Element>(w: &[T], g: &Geometry) -> Vec<T> {
    let (cg, taps) = (g.c_per_group(), g.kh * g.kw);
    let mut out = vec![T::zero(); w.len()];
    if taps == 0 {
        return out;
    }
    for (dst, src) in out.chunks_exact_mut(cg * taps).zip(w.chunks_exact(cg * taps)) {
        for c in 0..cg {
            for t in 0..taps {
                dst[t * cg + c] = src[c * taps + t];
            }
        }
    }
    out
}

/// One sample's forward pass through pixel-major rows: the input transposed to `(h·w, C)`,
/// per group the rows `R (oh·ow, kh·kw·C/g)`, the product `R Wᵀ (oh·ow, O/g)` and its
/// transpose into the sample's output planes.
fn forward_pixel_major<T: Element>(plane: &[T], wt: &[T], g: &Geometry, out_n: &mut [T]) {
    use crate::array::pool;
    use ndarray::ArrayViewMut2;
    let (hw, p, opg) = (g.h * g.w, g.col_cols(), g.o_per_group());
    let k = g.col_rows();
    if p * opg == 0 {
        return;
    }
    let mut pixels = pool::take_overwritten::<T>(hw * g.c);
    to_pixel_major(plane, g, &mut pixels);
    let mut rows = pool::take_overwritten::<T>(p * k);
    let mut product = pool::take_overwritten::<T>(p * opg);
    for group in 0..g.cfg.groups {
        fill_pixel_rows(&pixels, g, group, &mut rows);
        let w = ArrayView2::from_shape((opg, k), &wt[group * opg * k..][..opg * k]).expect("weight block");
        let r = ArrayView2::from_shape((p, k), &rows[..]).expect("rows");
        let mut y = ArrayViewMut2::from_shape((p, opg), &mut product[..]).expect("product");
        gemm_set(&mut y.view_mut().reversed_axes(), &w, &r.t(), g.n == 1);
        let dst = &mut out_n[group * opg * p..][..opg * p];
        transpose_into(y.view(), ArrayViewMut2::from_shape((opg, p), dst).expect("output block"));
    }
    for buffer in [pixels, rows, product] {
        pool::recycle(ndarray::Array1::from_vec(buffer).into_dyn().into_shared());
    }
}

/// One sample's planes `(C, h·w)` transposed into `pixels`, pixel-major `(h·w, C)`.
fn to_pixel_major<T: Element>(plane: &[T], g: &Geometry, pixels: &mut [T]) {
    let hw = g.h * g.w;
    transpose_into(
        ArrayView2::from_shape((g.c, hw), plane).expect("(C, h·w)"),
        ndarray::ArrayViewMut2::from_shape((hw, g.c), pixels).expect("(h·w, C)"),
    );
}

/// Fills `rows` (`[oh·ow, kh·kw·C/g]`) from a pixel-major input `(h·w, C)`: row `(y, x)`
/// holds, tap by tap, the group's channels of the input pixel that tap sees there (0 in
/// the padding). Every element is written.
fn fill_pixel_rows<T: Element>(pixels: &[T], g: &Geometry, group: usize, rows: &mut [T]) {
    let [sh, sw] = g.cfg.stride;
    let [ph, pw] = g.cfg.padding;
    let dh = g.cfg.dilation[0];
    let cg = g.c_per_group();
    let first = group * cg;
    if g.col_rows() == 0 {
        return;
    }
    // Each tap's output rows and columns that see the image, as im2col uses them.
    let windows: Vec<_> = (0..g.kh).flat_map(|i| (0..g.kw).map(move |j| (i, j))).map(|(i, j)| (i, tap_window(g, i, j))).collect();
    let mut rows = rows.chunks_exact_mut(g.col_rows());
    for y in 0..g.oh {
        for x in 0..g.ow {
            let row = rows.next().expect("one row per output pixel");
            for (tap, &(i, (y_lo, y_hi, x_lo, x_hi, shift))) in row.chunks_exact_mut(cg).zip(&windows) {
                if (y_lo..y_hi).contains(&y) && (x_lo..x_hi).contains(&x) {
                    let pixel = (y * sh + i * dh - ph) * g.w + x * sw + shift - pw;
                    tap.copy_from_slice(&pixels[pixel * g.c + first..][..cg]);
                } else {
                    tap.fill(T::zero());
                }
            }
        }
    }
}

/// `dL/dx` of a convolution given `gy`: `col2im(wᵀ gy)` per sample and group, or, for a
/// stride-1 convolution with many output channels per group, the forward pass of the
/// transposed convolution ([`as_transposed_convolution`]).
fn conv_input_grad_kernel<T: Element>(gy: &Tensor<T>, w: &Tensor<T>, g: Geometry) -> ArrayD<T> {
    if let Some((flipped, g_t)) = as_transposed_convolution(w, &g) {
        return conv_forward_by(gy, &flipped, g_t, true);
    }
    let (gys, ws) = (standard(gy), standard(w));
    let per_sample = g.c * g.h * g.w;
    let mut out = crate::array::pool::take::<T>(g.n * per_sample);
    out.resize(g.n * per_sample, T::zero());
    out.par_chunks_mut(per_sample.max(1)).enumerate().for_each(|(n, plane)| {
        for group in 0..g.cfg.groups {
            let gy_block = ArrayView2::from_shape(
                (g.o_per_group(), g.col_cols()),
                &gys[(n * g.o + group * g.o_per_group()) * g.col_cols()..][..g.o_per_group() * g.col_cols()],
            )
            .expect("gy block");
            let cols = gemm(&group_weight(&ws, &g, group).t(), &gy_block);
            col2im(&cols.view(), plane, &g, group);
        }
    });
    ArrayD::from_shape_vec(IxDyn(&[g.n, g.c, g.h, g.w]), out).expect("input shape")
}

/// With stride 1, `dL/dx` is itself a convolution: of `gy`, padded by `d(k - 1) - p`, with
/// the kernel flipped in space and its in and out channels swapped within each group
/// (`w'[c, o, i, j] = w[o, c, kh-1-i, kw-1-j]`). Run through the forward pass's pixel-major
/// rows, its product has inner dim `kh·kw·O/g` instead of `O/g`, which the gemm crate runs
/// faster (`cargo bench --bench ops -- conv_gemm_shapes`, `forward_rows_wt` against
/// `input_grad_wt_gy`), and no column matrix is added back pixel by pixel; the rows cost
/// copies the columns did not, so the whole gain is smaller than the product's. The flipped
/// kernel and the transposed convolution's geometry, where that applies: stride 1, padding
/// at most `d(k - 1)` and at least [`PIXEL_MAJOR_MIN_CHANNELS`] output channels per group.
fn as_transposed_convolution<T: Element>(w: &Tensor<T>, g: &Geometry) -> Option<(Tensor<T>, Geometry)> {
    let cfg = g.cfg;
    let spans = [cfg.dilation[0] * g.kh.saturating_sub(1), cfg.dilation[1] * g.kw.saturating_sub(1)];
    let applies = cfg.stride == [1, 1]
        && cfg.padding[0] <= spans[0]
        && cfg.padding[1] <= spans[1]
        && g.o_per_group() >= PIXEL_MAJOR_MIN_CHANNELS
        && g.n * g.c * g.h * g.w > 0;
    if !applies {
        return None;
    }
    let (cg, og, taps) = (g.c_per_group(), g.o_per_group(), g.kh * g.kw);
    let ws = standard(w);
    let mut flipped = vec![T::zero(); ws.len()];
    for group in 0..cfg.groups {
        for c in 0..cg {
            for o in 0..og {
                let src = &ws[((group * og + o) * cg + c) * taps..][..taps];
                let dst = &mut flipped[((group * cg + c) * og + o) * taps..][..taps];
                // Tap (i, j) from (kh-1-i, kw-1-j): the taps in reverse order.
                dst.iter_mut().zip(src.iter().rev()).for_each(|(d, &s)| *d = s);
            }
        }
    }
    let flipped = Tensor::from(ArrayD::from_shape_vec(IxDyn(&[g.c, og, g.kh, g.kw]), flipped).expect("C · O/g · kh · kw"));
    let padding = [spans[0] - cfg.padding[0], spans[1] - cfg.padding[1]];
    let cfg_t = Conv2dConfig { padding, ..cfg };
    let g_t = geometry("conv2d_input_grad", &[g.n, g.o, g.oh, g.ow], flipped.shape(), cfg_t).expect("the transposed convolution fits");
    debug_assert_eq!((g_t.oh, g_t.ow), (g.h, g.w), "stride 1: the transposed convolution restores the input's size");
    Some((flipped, g_t))
}

/// `dL/dw` of a convolution given `gy`: `Σ_n gy_n colsₙᵀ` per group.
///
/// With many channels per group (as for the forward pass, [`pixel_major_pays`]) it is
/// `Σ_n gy_n R_n` with the pixel-major rows `R_n (oh·ow, kh·kw·C/g)`, a product the `gemm`
/// crate runs faster than the column form (`cargo bench --bench ops -- conv_gemm`,
/// `weight_grad_gy_rows` against `weight_grad_cols_gyt`), and the sum comes out
/// tap-major, reordered once at the end. Otherwise it is computed
/// transposed, `Σ_n colsₙ gy_nᵀ`, which runs about 1.5× faster than `gy colsᵀ` (the
/// column matrix's many rows on the left). The samples are split into one run per thread,
/// each accumulating into its own sum in place; the sums are added at the end.
fn conv_weight_grad_kernel<T: Element>(x: &Tensor<T>, gy: &Tensor<T>, g: Geometry) -> ArrayD<T> {
    conv_weight_grad_by(x, gy, g, pixel_major_pays(&g))
}

/// [`conv_weight_grad_kernel`] through pixel-major rows or through im2col's columns.
fn conv_weight_grad_by<T: Element>(x: &Tensor<T>, gy: &Tensor<T>, g: Geometry, pixel_major: bool) -> ArrayD<T> {
    use crate::array::pool;
    let (xs, gys) = (standard(x), standard(gy));
    let (groups, rows, opg) = (g.cfg.groups, g.col_rows(), g.o_per_group());
    let (cg, taps, p) = (g.c_per_group(), g.kh * g.kw, g.col_cols());
    let per = g.n.div_ceil(rayon::current_num_threads().max(1)).max(1);
    let starts: Vec<usize> = (0..g.n).step_by(per).collect();
    let alone = starts.len() == 1;
    let sums: Vec<Array3<T>> = starts
        .into_par_iter()
        .map(|start| {
            // (groups, O/g, kh·kw·C/g) tap-major when pixel-major, else (groups, C/g·kh·kw, O/g).
            let mut acc = if pixel_major { Array3::<T>::zeros((groups, opg, rows)) } else { Array3::<T>::zeros((groups, rows, opg)) };
            let mut pixels = if pixel_major { pool::take_overwritten::<T>(g.h * g.w * g.c) } else { Vec::new() };
            let mut pixel_rows = if pixel_major { pool::take_overwritten::<T>(p * rows) } else { Vec::new() };
            for n in start..(start + per).min(g.n) {
                let plane = &xs[n * g.c * g.h * g.w..][..g.c * g.h * g.w];
                if pixel_major && p * rows > 0 {
                    to_pixel_major(plane, &g, &mut pixels);
                }
                for group in 0..groups {
                    let gy_block = ArrayView2::from_shape((opg, p), &gys[(n * g.o + group * opg) * p..][..opg * p]).expect("gy block");
                    if pixel_major {
                        fill_pixel_rows(&pixels, &g, group, &mut pixel_rows);
                        let r = ArrayView2::from_shape((p, rows), &pixel_rows[..]).expect("rows");
                        gemm_acc(&mut acc.index_axis_mut(Axis(0), group), &gy_block, &r, alone);
                    } else {
                        let cols = im2col(plane, &g, group);
                        gemm_acc(&mut acc.index_axis_mut(Axis(0), group), &cols.view(), &gy_block.t(), alone);
                        give_back(cols);
                    }
                }
            }
            if pixel_major {
                for buffer in [pixels, pixel_rows] {
                    pool::recycle(ndarray::Array1::from_vec(buffer).into_dyn().into_shared());
                }
            }
            acc
        })
        .collect();
    let mut total = Array3::<T>::zeros((groups, opg, rows));
    for acc in sums {
        for group in 0..groups {
            let mut dst = total.index_axis_mut(Axis(0), group);
            let src = acc.index_axis(Axis(0), group);
            if !pixel_major {
                dst.zip_mut_with(&src.t(), |t, &v| *t = *t + v);
                continue;
            }
            // Tap-major `(t, c)` columns back to the weight's `(c, t)`.
            for (mut dst, src) in dst.rows_mut().into_iter().zip(src.rows()) {
                for t in 0..taps {
                    for c in 0..cg {
                        dst[c * taps + t] = dst[c * taps + t] + src[t * cg + c];
                    }
                }
            }
        }
    }
    let (total, _) = total.into_raw_vec_and_offset();
    ArrayD::from_shape_vec(IxDyn(&[g.o, g.c_per_group(), g.kh, g.kw]), total).expect("weight shape")
}

/// Checks shapes and config; the geometry of `conv2d(x, w)`.
fn geometry(op: &'static str, x: &[usize], w: &[usize], cfg: Conv2dConfig) -> Result<Geometry> {
    geometry_shown(op, x, w, cfg, false)
}

/// [`geometry`], its errors in the caller's terms: with `one_d`, `x` and `w` are a 1-D
/// convolution's shapes with a unit height inserted, and the messages leave it out (the
/// user passed `[2, 3, 10]`, not `[2, 3, 1, 10]`).
fn geometry_shown(op: &'static str, x: &[usize], w: &[usize], cfg: Conv2dConfig, one_d: bool) -> Result<Geometry> {
    let shape = |s: &[usize]| -> Vec<usize> {
        let mut s = s.to_vec();
        if one_d && s.len() == 4 {
            s.remove(2);
        }
        s
    };
    let pair = |p: [usize; 2]| -> Vec<usize> { if one_d { vec![p[1]] } else { p.to_vec() } };
    let (xs, ws) = (shape(x), shape(w));
    if x.len() != 4 || w.len() != 4 {
        return Err(Error::shape(op, format!("input {xs:?} and weight {ws:?} must be (N, C, H, W) and (O, C/groups, kh, kw)")));
    }
    if cfg.groups == 0 || !x[1].is_multiple_of(cfg.groups) || !w[0].is_multiple_of(cfg.groups) {
        return Err(Error::invalid(op, format!("groups {} must divide in channels {} and out channels {}", cfg.groups, x[1], w[0])));
    }
    if w[1] * cfg.groups != x[1] {
        return Err(Error::shape(op, format!("weight {ws:?} expects {} input channels, the input {xs:?} has {}", w[1] * cfg.groups, x[1])));
    }
    if cfg.stride.contains(&0) || cfg.dilation.contains(&0) {
        return Err(Error::invalid(op, format!("stride {:?} and dilation {:?} must be positive", pair(cfg.stride), pair(cfg.dilation))));
    }
    let fail = || {
        Error::shape(
            op,
            format!(
                "kernel {:?} with dilation {:?} does not fit the padded input {:?} (padding {:?})",
                &ws[2..],
                pair(cfg.dilation),
                &xs[2..],
                pair(cfg.padding)
            ),
        )
    };
    let oh = conv_output_size(x[2], w[2], cfg.stride[0], cfg.padding[0], cfg.dilation[0]).ok_or_else(fail)?;
    let ow = conv_output_size(x[3], w[3], cfg.stride[1], cfg.padding[1], cfg.dilation[1]).ok_or_else(fail)?;
    Ok(Geometry { n: x[0], c: x[1], h: x[2], w: x[3], o: w[0], kh: w[2], kw: w[3], oh, ow, cfg })
}

/// The convolution op (no bias): its rule uses the two adjoints.
/// The convolution as one recorded op, the bias (if any) added into the output in place:
/// a separate `add` node would keep a second output-sized tensor alive until backward.
/// `dL/db = Σ_{n,i,j} gy`.
fn conv_op<T: Element>(x: &Tensor<T>, w: &Tensor<T>, bias: Option<&Tensor<T>>, g: Geometry) -> Tensor<T> {
    let mut value = conv_forward(x, w, g);
    if let Some(b) = bias {
        let b = b.value();
        for mut sample in value.outer_iter_mut() {
            for (mut plane, &bias) in sample.outer_iter_mut().zip(b.iter()) {
                plane.mapv_inplace(|v| v + bias);
            }
        }
    }
    let mut inputs = vec![x, w];
    inputs.extend(bias);
    Tensor::from_op_saving(value.into_shared(), &inputs, Saves::inputs(&[0, 1]), move || {
        Box::new(rule("conv2d", move |inputs: &[Tensor<T>], _: &Tensor<T>, gy: &Tensor<T>| {
            let (x, w) = (&inputs[0], &inputs[1]);
            let mut grads = vec![x.requires_grad().then(|| input_grad_op(gy, w, g)), w.requires_grad().then(|| weight_grad_op(x, gy, g))];
            if let Some(b) = inputs.get(2) {
                grads.push(b.requires_grad().then(|| gy.sum_dims(&[0, 2, 3], false).expect("a 4-d gradient")));
            }
            grads
        }))
    })
}

/// `dL/dx = input_grad(gy, w)`, linear in each argument:
/// `d⟨gz, input_grad(gy, w)⟩/dgy = conv(gz, w)`, `…/dw = weight_grad(gz, gy)`.
fn input_grad_op<T: Element>(gy: &Tensor<T>, w: &Tensor<T>, g: Geometry) -> Tensor<T> {
    let value = conv_input_grad_kernel(gy, w, g);
    Tensor::from_op_saving(value.into_shared(), &[gy, w], Saves::inputs(&[0, 1]), move || {
        Box::new(rule("conv2d_input_grad", move |inputs: &[Tensor<T>], _: &Tensor<T>, gz: &Tensor<T>| {
            let (gy, w) = (&inputs[0], &inputs[1]);
            vec![gy.requires_grad().then(|| conv_op(gz, w, None, g)), w.requires_grad().then(|| weight_grad_op(gz, gy, g))]
        }))
    })
}

/// `dL/dw = weight_grad(x, gy)`: `d⟨gz, weight_grad(x, gy)⟩/dx = input_grad(gy, gz)`,
/// `…/dgy = conv(x, gz)`.
fn weight_grad_op<T: Element>(x: &Tensor<T>, gy: &Tensor<T>, g: Geometry) -> Tensor<T> {
    let value = conv_weight_grad_kernel(x, gy, g);
    Tensor::from_op_saving(value.into_shared(), &[x, gy], Saves::inputs(&[0, 1]), move || {
        Box::new(rule("conv2d_weight_grad", move |inputs: &[Tensor<T>], _: &Tensor<T>, gz: &Tensor<T>| {
            let (x, gy) = (&inputs[0], &inputs[1]);
            vec![x.requires_grad().then(|| input_grad_op(gy, gz, g)), gy.requires_grad().then(|| conv_op(x, gz, None, g))]
        }))
    })
}

/// Checks that a bias has one value per output channel.
fn check_bias<T: Element>(op: &'static str, bias: Option<&Tensor<T>>, channels: usize) -> Result<()> {
    match bias {
        Some(b) if b.shape() != [channels] => Err(Error::shape(op, format!("bias {:?} for {channels} output channels", b.shape()))),
        _ => Ok(()),
    }
}

impl<T: Element> Tensor<T> {
    /// 2-D convolution (cross-correlation, as PyTorch) of `self: (N, C, H, W)` with
    /// `weight: (O, C/groups, kh, kw)`, plus `bias: (O)`:
    /// `y[n, o, i, j] = b[o] + Σ_{c, u, v} w[o, c, u, v] · x[n, c, i·s + u·d - p, j·s + v·d - p]`.
    /// Output `(N, O, ⌊(H + 2p - d(kh - 1) - 1)/s⌋ + 1, …)`.
    ///
    /// ```
    /// use nabla::prelude::*;
    /// use nabla::ops::Conv2dConfig;
    /// let x = Tensor::ones(&[1, 1, 4, 4]);
    /// let w = Tensor::ones(&[1, 1, 3, 3]);
    /// let y = x.conv2d(&w, None, Conv2dConfig { padding: [1, 1], ..Default::default() })?;
    /// assert_eq!(y.shape(), &[1, 1, 4, 4]);
    /// assert_eq!(y.value()[[0, 0, 0, 0]], 4.0);   // a corner sees 2 x 2 ones
    /// assert_eq!(y.value()[[0, 0, 1, 1]], 9.0);
    /// # Ok::<(), nabla::Error>(())
    /// ```
    pub fn conv2d(&self, weight: &Tensor<T>, bias: Option<&Tensor<T>>, config: Conv2dConfig) -> Result<Tensor<T>> {
        let g = geometry("conv2d", self.shape(), weight.shape(), config)?;
        check_bias("conv2d", bias, g.o)?;
        Ok(conv_op(self, weight, bias, g))
    }

    /// 1-D convolution of `self: (N, C, L)` with `weight: (O, C/groups, k)`, plus
    /// `bias: (O)`, as `torch.nn.functional.conv1d`; computed as a 2-D convolution of height 1.
    pub fn conv1d(&self, weight: &Tensor<T>, bias: Option<&Tensor<T>>, config: Conv1dConfig) -> Result<Tensor<T>> {
        if self.ndim() != 3 || weight.ndim() != 3 {
            return Err(Error::shape(
                "conv1d",
                format!("input {:?} and weight {:?} must be (N, C, L) and (O, C/groups, k)", self.shape(), weight.shape()),
            ));
        }
        let cfg = Conv2dConfig {
            stride: [1, config.stride],
            padding: [0, config.padding],
            dilation: [1, config.dilation],
            groups: config.groups,
        };
        let x = self.unsqueeze(2)?;
        let w = weight.unsqueeze(2)?;
        let g = geometry_shown("conv1d", x.shape(), w.shape(), cfg, true)?;
        check_bias("conv1d", bias, g.o)?;
        conv_op(&x, &w, bias, g).squeeze(2)
    }
}

/// The receptive field of an output element of a stack of windowed layers (convolutions
/// and poolings), each given as `(kernel, stride, dilation)`: how many consecutive input
/// positions (along one dim) it depends on. `r = 1 + Σ_l d_l (k_l - 1) Π_{m<l} s_m`.
///
/// ```
/// // two 3-wide convolutions, then a 2-wide pooling with stride 2, then a dilated 3-wide one
/// assert_eq!(nabla::ops::receptive_field(&[(3, 1, 1), (3, 1, 1), (2, 2, 1), (3, 1, 2)]), 14);
/// ```
pub fn receptive_field(layers: &[(usize, usize, usize)]) -> usize {
    let mut field = 1;
    let mut jump = 1;
    for &(kernel, stride, dilation) in layers {
        field += dilation * (kernel.max(1) - 1) * jump;
        jump *= stride;
    }
    field
}

/// This family's entries in the [op registry](super::registry()).
pub(crate) const OPS: &[OpInfo] = &[
    OpInfo::new(
        "conv2d",
        || vec![randn(&[2, 4, 5, 6], 20), randn(&[4, 2, 3, 2], 21), randn(&[4], 22)],
        |v| v[0].conv2d(&v[1], Some(&v[2]), SAMPLE_CONV),
    ),
    // The adjoints, sampled through the gradient of a convolution with cotangent weights.
    OpInfo::new("conv2d_input_grad", conv_grad_sample, |v| recorded_grad(&v[0], &v[2], |x| x.conv2d(&v[1], None, SAMPLE_CONV))),
    OpInfo::new("conv2d_weight_grad", conv_grad_sample, |v| recorded_grad(&v[1], &v[2], |w| v[0].conv2d(w, None, SAMPLE_CONV))),
];

/// Strided, padded, dilated and grouped at once: every index path of the rules.
const SAMPLE_CONV: Conv2dConfig = Conv2dConfig { stride: [2, 1], padding: [1, 1], dilation: [1, 2], groups: 2 };

/// Input, weight and a cotangent of the output's shape for [`SAMPLE_CONV`].
fn conv_grad_sample() -> Vec<Tensor<f64>> {
    vec![randn(&[2, 4, 5, 6], 20), randn(&[4, 2, 3, 2], 21), randn(&[2, 4, 3, 6], 23)]
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tensor::Creation;

    /// Row `(c, i, j)`, column `(y, x)` of the column matrix, from its definition.
    fn naive_im2col(plane: &[f64], g: &Geometry, group: usize) -> Vec<f64> {
        let mut out = Vec::new();
        for c in 0..g.c_per_group() {
            for i in 0..g.kh {
                for j in 0..g.kw {
                    for y in 0..g.oh {
                        for x in 0..g.ow {
                            let sy = (y * g.cfg.stride[0] + i * g.cfg.dilation[0]) as isize - g.cfg.padding[0] as isize;
                            let sx = (x * g.cfg.stride[1] + j * g.cfg.dilation[1]) as isize - g.cfg.padding[1] as isize;
                            let inside = (0..g.h as isize).contains(&sy) && (0..g.w as isize).contains(&sx);
                            let channel = group * g.c_per_group() + c;
                            out.push(if inside { plane[(channel * g.h + sy as usize) * g.w + sx as usize] } else { 0.0 });
                        }
                    }
                }
            }
        }
        out
    }

    #[test]
    fn both_im2col_paths_equal_the_definition() {
        // (h, w, kernel, stride, padding, dilation): "same" shapes take the one-copy path
        // (its buffer starts as NaN in unit tests, so an unwritten element shows), the
        // others the row-by-row path; paddings wider than the kernel's reach, kernels wider
        // than the image and 1-wide images included.
        let cases = [
            (5, 6, [3, 3], [1, 1], [1, 1], [1, 1]),
            (5, 6, [3, 5], [1, 1], [1, 2], [1, 1]),
            (7, 7, [3, 3], [1, 1], [2, 2], [2, 2]),
            (4, 5, [1, 3], [1, 1], [0, 1], [1, 1]),
            (3, 1, [3, 1], [1, 1], [1, 0], [1, 1]),
            (4, 4, [3, 3], [1, 1], [3, 3], [1, 1]),
            (6, 6, [3, 3], [2, 1], [1, 1], [1, 1]),
            (6, 6, [3, 3], [1, 2], [1, 1], [1, 1]),
            (5, 6, [3, 3], [1, 1], [0, 0], [1, 1]),
            (2, 3, [3, 5], [1, 1], [2, 3], [1, 1]),
        ];
        for (h, w, k, stride, padding, dilation) in cases {
            let cfg = Conv2dConfig { stride, padding, dilation, groups: 2 };
            let g = geometry("test", &[1, 4, h, w], &[2, 2, k[0], k[1]], cfg).unwrap();
            let plane: Vec<f64> = (0..4 * h * w).map(|v| v as f64 + 1.0).collect();
            for group in 0..2 {
                let cols = im2col(&plane, &g, group);
                assert_eq!(cols.as_slice().unwrap(), naive_im2col(&plane, &g, group), "{h}x{w} kernel {k:?} {cfg:?} group {group}");
            }
        }
    }

    /// (channels, groups, h, w, kernel, stride, padding, dilation) for the tests of the two
    /// paths: padding wider than the kernel's reach, a kernel wider than the image and an
    /// empty kernel included.
    type PathCase = (usize, usize, usize, usize, [usize; 2], [usize; 2], [usize; 2], [usize; 2]);
    const PATH_CASES: [PathCase; 9] = [
        (16, 1, 5, 6, [3, 3], [1, 1], [1, 1], [1, 1]),
        (32, 2, 5, 6, [3, 5], [1, 1], [1, 2], [1, 1]),
        (16, 1, 7, 7, [3, 3], [2, 1], [2, 2], [2, 2]),
        (17, 1, 4, 5, [1, 1], [1, 2], [0, 0], [1, 1]),
        (16, 1, 2, 3, [3, 5], [1, 1], [2, 3], [1, 1]),
        (32, 2, 6, 7, [2, 3], [2, 2], [3, 0], [1, 2]),
        (16, 1, 3, 3, [0, 2], [1, 1], [0, 0], [1, 1]),
        (16, 1, 7, 8, [3, 2], [1, 1], [2, 1], [2, 3]),
        (48, 3, 4, 9, [2, 4], [1, 1], [0, 3], [1, 1]),
    ];

    /// A case's dims, its config, the output channels (two per group) and the geometry of
    /// `n` samples.
    #[allow(clippy::type_complexity)]
    fn path_geometry(case: PathCase, n: usize) -> (usize, usize, usize, usize, [usize; 2], Conv2dConfig, usize, Geometry) {
        let (c, groups, h, w, k, stride, padding, dilation) = case;
        let cfg = Conv2dConfig { stride, padding, dilation, groups };
        let o = 2 * groups;
        (c, groups, h, w, k, cfg, o, geometry("test", &[n, c, h, w], &[o, c / groups, k[0], k[1]], cfg).unwrap())
    }

    #[test]
    fn both_weight_grad_paths_equal_the_definition() {
        // dL/dw[o, r] = Σ_n Σ_q gy[n, o, q] · im2col(x[n])[r, q], with im2col from its
        // definition; pixel-major rows (NaN-filled buffers in unit tests) and im2col's
        // columns, on one thread and on two (two runs of samples, their sums added).
        for case in PATH_CASES {
            let (c, groups, h, w, k, cfg, o, g) = path_geometry(case, 3);
            let mut rng = crate::rng(6);
            let x = Tensor::<f64>::randn(&[3, c, h, w], &mut rng);
            let gy = Tensor::<f64>::randn(&[3, o, g.oh, g.ow], &mut rng);
            let (xs, gys) = (x.to_vec(), gy.to_vec());
            let (opg, rows, p) = (g.o_per_group(), g.col_rows(), g.col_cols());
            let mut want = vec![0.0; o * rows];
            for n in 0..3 {
                let plane = &xs[n * c * h * w..][..c * h * w];
                for group in 0..groups {
                    let cols = naive_im2col(plane, &g, group);
                    for oc in group * opg..(group + 1) * opg {
                        let gy_row = &gys[(n * o + oc) * p..][..p];
                        for r in 0..rows {
                            want[oc * rows + r] += (0..p).map(|q| gy_row[q] * cols[r * p + q]).sum::<f64>();
                        }
                    }
                }
            }
            for threads in [1, 2] {
                let pool = rayon::ThreadPoolBuilder::new().num_threads(threads).build().unwrap();
                for pixel_major in [true, false] {
                    let got = pool.install(|| conv_weight_grad_by(&x, &gy, g, pixel_major));
                    assert_eq!(got.shape(), &[o, c / groups, k[0], k[1]]);
                    for (a, b) in got.iter().zip(&want) {
                        assert!(
                            (a - b).abs() < 1e-12,
                            "{c} channels {cfg:?} kernel {k:?}, pixel-major {pixel_major}, {threads} threads: {a} vs {b}"
                        );
                    }
                }
            }
        }
    }

    #[test]
    fn both_forward_paths_equal_the_definition() {
        // Pixel-major rows (their buffers start as NaN in unit tests, so an unwritten
        // element shows) and im2col's columns, against a direct sum.
        for case in PATH_CASES {
            let (c, groups, h, w, k, cfg, o, g) = path_geometry(case, 2);
            let mut rng = crate::rng(5);
            let x = Tensor::<f64>::randn(&[2, c, h, w], &mut rng);
            let wt = Tensor::<f64>::randn(&[o, c / groups, k[0], k[1]], &mut rng);
            // y[n, o] = W_group(o) · im2col(x[n], group), with im2col from its definition.
            let (xs, ws) = (x.to_vec(), wt.to_vec());
            let (opg, rows, p) = (g.o_per_group(), g.col_rows(), g.col_cols());
            let mut want = Vec::new();
            for n in 0..2 {
                let plane = &xs[n * c * h * w..][..c * h * w];
                for group in 0..groups {
                    let cols = naive_im2col(plane, &g, group);
                    for oc in group * opg..(group + 1) * opg {
                        let weights = &ws[oc * rows..][..rows];
                        want.extend((0..p).map(|q| weights.iter().enumerate().map(|(r, &wv)| wv * cols[r * p + q]).sum::<f64>()));
                    }
                }
            }
            assert!(pixel_major_pays(&g), "{c} channels in {groups} groups take the pixel-major path");
            for pixel_major in [true, false] {
                let got = conv_forward_by(&x, &wt, g, pixel_major);
                assert_eq!(got.shape(), &[2, o, g.oh, g.ow]);
                for (a, b) in got.iter().zip(&want) {
                    assert!((a - b).abs() < 1e-12, "{c} channels {cfg:?} kernel {k:?}, pixel-major {pixel_major}: {a} vs {b}");
                }
            }
        }
    }
}
