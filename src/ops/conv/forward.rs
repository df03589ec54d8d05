//! The forward kernels: im2col + GEMM, pixel-major rows for many channels, and the direct
//! kernel that reads the padded input in place.

use super::*;
use crate::array::kernel::team;
use crate::array::kernel::{ThinLhs, gemm_set, transpose_into};
use crate::tensor::{Element, Tensor};
use ndarray::{ArrayD, ArrayView2, Axis, IxDyn};

pub(super) fn standard<T: Element>(x: &Tensor<T>) -> std::borrow::Cow<'_, [T]> {
    match x.value().to_slice() {
        Some(s) => std::borrow::Cow::Borrowed(s),
        None => std::borrow::Cow::Owned(x.value().iter().copied().collect()),
    }
}

/// The weight of one group as a matrix `[O/g, C/g · kh · kw]`.
pub(super) fn group_weight<'a, T: Element>(w: &'a [T], g: &Geometry, group: usize) -> ArrayView2<'a, T> {
    let rows = g.o_per_group();
    ArrayView2::from_shape((rows, g.col_rows()), &w[group * rows * g.col_rows()..][..rows * g.col_rows()]).expect("weight block")
}

/// `y[n, o] = Σ w[o] ⋆ x[n]` (+ bias), `[N, O, oh, ow]`.
pub(super) fn conv_forward<T: Element>(x: &Tensor<T>, w: &Tensor<T>, g: Geometry) -> ArrayD<T> {
    conv_forward_by(x, w, g, pixel_major_pays(&g))
}

/// [`conv_forward`] through pixel-major rows or through im2col's columns.
pub(super) fn conv_forward_by<T: Element>(x: &Tensor<T>, w: &Tensor<T>, g: Geometry, pixel_major: bool) -> ArrayD<T> {
    let (xs, ws) = (standard(x), standard(w));
    if let Some(out) = forward_direct(&xs, &ws, &g) {
        return out;
    }
    let per_sample = g.o * g.col_cols();
    let tap_major = pixel_major.then(|| tap_major_weight(&ws, &g));
    // Every element is written: each group's product fills its own output rows.
    let mut out = crate::array::pool::take_overwritten::<T>(g.n * per_sample);
    team::for_each_chunk_mut(&mut out, per_sample.max(1), |n, out_n| {
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
/// where it runs (`f32` with AVX2 and FMA, or AVX-512) and the stride along the width is 1.
///
/// Output row `y` of channel `o` is `Σ_{c,i,j} w[o, c, i, j] · x̃[c, y·s_h + i·d_h, j·d_w ..]`
/// with `x̃` the zero-padded input: each tap's operand is a run of `x̃` at a fixed offset, so
/// the kernel reads it in place, a block of the output (six channels by sixteen pixels of
/// a row in AVX2, twelve by thirty-two in AVX-512) summed in registers over all `C/g · kh · kw` taps. Neither columns nor
/// pixel-major rows are written, and the output comes out in its planes. Samples run in
/// parallel, and a sample's output channels too when there are fewer samples than threads.
///
/// It is faster than pixel-major rows and the gemm crate where the output rows fill the
/// vectors (`cargo bench --bench ops -- w6_conv` covers a 32-wide image), and slower where
/// rows end in a mostly empty masked vector (`-- w2_cnn_step`'s 28- and 14-wide ones),
/// hence `lanes_used`.
fn forward_direct<T: Element>(xs: &[T], ws: &[T], g: &Geometry) -> Option<ArrayD<T>> {
    use crate::array::pool;
    // The kernel's vectors are 8 or 16 pixels of an output row: an output whose rows leave
    // more than a sixteenth of their lanes idle (14 or 28 pixels wide, say) runs slower
    // here than through the gemm crate.
    let lanes_used = g.ow * 16 >= g.ow.next_multiple_of(ThinLhs::<T>::vector_lanes()) * 15;
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
    // Nested sections run on the thread that reaches them: the first level with two parts
    // or more takes the team, which the split into blocks above provides for.
    team::for_each_chunk_mut(&mut out, g.o * p, |n, out_n| {
        let plane = &xs[n * g.c * g.h * g.w..][..g.c * g.h * g.w];
        let padded = if ph + pw == 0 { std::borrow::Cow::Borrowed(plane) } else { std::borrow::Cow::Owned(pad_planes(plane, g)) };
        team::for_each_chunk_mut(out_n, opg * p, |group, out_g| {
            let lhs = &lhs[group];
            let src = &padded[group * g.c_per_group() * hp * wp..];
            team::for_each_chunk_mut(out_g, block * p, |b, out_b| {
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
pub(super) const READ_PAST: usize = 8;

/// One sample's planes zero-padded by `(p_h, p_w)` on every side: `(C, h + 2p_h, w + 2p_w)`,
/// then [`READ_PAST`] zeros, in a pooled buffer.
pub(super) fn pad_planes<T: Element>(plane: &[T], g: &Geometry) -> Vec<T> {
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
pub(super) const PIXEL_MAJOR_MIN_CHANNELS: usize = 16;

/// Whether the forward pass takes the pixel-major path: with many channels per group, a
/// product whose operand and output are pixel-major, `Y_nᵀ = R_n Wᵀ` (`R_n` a row of
/// `kh·kw·C/g` inputs per output pixel), runs on the `gemm` crate's faster kernel shape
/// (`cargo bench --bench ops -- conv_gemm`: `forward_rows_wt` against `forward_w_cols`), and each row is `kh·kw` copies of a pixel's contiguous
/// channels once the input is transposed to `(h·w, C)`. With few channels (a first layer)
/// those copies are a few elements each, and im2col's row copies win.
pub(super) fn pixel_major_pays(g: &Geometry) -> bool {
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
pub(super) fn to_pixel_major<T: Element>(plane: &[T], g: &Geometry, pixels: &mut [T]) {
    let hw = g.h * g.w;
    transpose_into(
        ArrayView2::from_shape((g.c, hw), plane).expect("(C, h·w)"),
        ndarray::ArrayViewMut2::from_shape((hw, g.c), pixels).expect("(h·w, C)"),
    );
}

/// Fills `rows` (`[oh·ow, kh·kw·C/g]`) from a pixel-major input `(h·w, C)`: row `(y, x)`
/// holds, tap by tap, the group's channels of the input pixel that tap sees there (0 in
/// the padding). Every element is written.
pub(super) fn fill_pixel_rows<T: Element>(pixels: &[T], g: &Geometry, group: usize, rows: &mut [T]) {
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
