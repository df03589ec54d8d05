//! The adjoints' kernels: the gradient in the input (`col2im(wᵀ gy)`, or a transposed
//! convolution) and in the weight (`gy · colsᵀ`).

use super::*;
use crate::array::kernel::team;
use crate::array::kernel::{gemm, gemm_acc};
use crate::tensor::{Element, Tensor};
use ndarray::{Array3, ArrayD, ArrayView2, Axis, IxDyn, ShapeBuilder};

/// `dL/dx` of a convolution given `gy`: `col2im(wᵀ gy)` per sample and group, or, for a
/// stride-1 convolution with many output channels per group, the forward pass of the
/// transposed convolution ([`as_transposed_convolution`]).
pub(super) fn conv_input_grad_kernel<T: Element>(gy: &Tensor<T>, w: &Tensor<T>, g: Geometry) -> ArrayD<T> {
    if let Some((flipped, g_t)) = as_transposed_convolution(w, &g) {
        return conv_forward_by(gy, &flipped, g_t, true);
    }
    let (gys, ws) = (standard(gy), standard(w));
    let per_sample = g.c * g.h * g.w;
    let mut out = crate::array::pool::take::<T>(g.n * per_sample);
    out.resize(g.n * per_sample, T::zero());
    team::for_each_chunk_mut(&mut out, per_sample.max(1), |n, plane| {
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
/// With many channels per group (as for the forward pass, [`pixel_major_pays`]), stride 1
/// and large images ([`DIRECT_MIN_PIXELS`]) it is read from the input in place
/// ([`conv_weight_grad_direct`]). Otherwise, with many channels per group, it is
/// `Σ_n gy_n R_n` with the pixel-major rows `R_n (oh·ow, kh·kw·C/g)`, a product the `gemm`
/// crate runs faster than the column form (`cargo bench --bench ops -- conv_gemm`,
/// `weight_grad_gy_rows` against `weight_grad_cols_gyt`), and the sum comes out
/// tap-major, reordered once at the end. Otherwise it is computed
/// transposed, `Σ_n colsₙ gy_nᵀ`, which runs about 1.5× faster than `gy colsᵀ` (the
/// column matrix's many rows on the left). The samples are split into one run per thread,
/// each accumulating into its own sum in place; the sums are added at the end.
pub(super) fn conv_weight_grad_kernel<T: Element>(x: &Tensor<T>, gy: &Tensor<T>, g: Geometry) -> ArrayD<T> {
    let pixel_major = pixel_major_pays(&g);
    let wide = g.oh * (g.w + 2 * g.cfg.padding[1]);
    if pixel_major
        && wide >= DIRECT_MIN_PIXELS
        && let Some(direct) = conv_weight_grad_direct(x, gy, g)
    {
        return direct;
    }
    conv_weight_grad_by(x, gy, g, pixel_major)
}

/// The fewest output pixels per sample, counted along the padded width, from which
/// [`conv_weight_grad_kernel`] takes [`conv_weight_grad_direct`]: its products' inner
/// dim. Below it the products are too small to pay for their calls and the padding's
/// share: through it, W2's second convolution (224) made W2's step 10% slower on one
/// thread, and W6's (1088) made W6's 3% faster (`scripts/ab.sh` on `workloads w2 1` and
/// `w6 1`).
const DIRECT_MIN_PIXELS: usize = 512;

/// `dL/dw` of a stride-1 convolution read straight from the input, zero-padded and
/// pixel-major (`x̃[(y·w̃ + x)·C + c]`), instead of from pixel-major rows, which hold
/// `kh·kw` copies of each input. With the output's pixels indexed along the padded width,
/// `p = y·w̃ + x`, tap `(i, j)` sees `x̃[(p + i·d_h·w̃ + j·d_w)·C + c]`: a matrix
/// `(oh·w̃, C/g)` with row stride `C`, read in place. With one group and `d_w = 1` the `kw`
/// taps of a kernel row are one matrix `(oh·w̃, kw·C)` (its rows overlap), so
/// `dw[:, :, i, ..] = Σ_n gỹ_n X̃_n,i`, with `gỹ_n` the cotangent with its rows widened to
/// `w̃` by zeros: `kh` products per sample, else one per tap. The columns past each output
/// row read real inputs that the zeros of `gỹ` cancel, which holds only for finite inputs:
/// `None` for a stride other than 1 or an input that is not finite.
pub(super) fn conv_weight_grad_direct<T: Element>(x: &Tensor<T>, gy: &Tensor<T>, g: Geometry) -> Option<ArrayD<T>> {
    use crate::array::pool;
    let cfg = g.cfg;
    let ([ph, pw], [dh, dw]) = (cfg.padding, cfg.dilation);
    if cfg.stride != [1, 1] || g.n * g.o * g.col_rows() * g.col_cols() == 0 {
        return None;
    }
    let (xs, gys) = (standard(x), standard(gy));
    if !xs.iter().all(|v| v.is_finite()) {
        return None;
    }
    let (groups, opg, cg, c) = (cfg.groups, g.o_per_group(), g.c_per_group(), g.c);
    let (hp, wp) = (g.h + 2 * ph, g.w + 2 * pw);
    let wide = g.oh * wp;
    // The last tap's last row reads up to (kw - 1)·d_w pixels past the padded planes.
    let room = (hp * wp + (g.kw - 1) * dw) * c;
    // (taps, C/g) columns per product: a kernel row's taps at once, or one tap.
    let merged = groups == 1 && dw == 1;
    let (per, starts) = sample_runs(g.n);
    let alone = starts.len() == 1;
    let sums: Vec<Array3<T>> = team::map_items(starts, |start| {
        // (groups·kh, kw·C/g, O/g): each product's block is written down its columns.
        let mut acc = Array3::<T>::zeros((groups * g.kh, g.kw * cg, opg));
        let mut gy_wide = pool::take::<T>(g.o * wide);
        gy_wide.resize(g.o * wide, T::zero());
        let mut padded = pool::take::<T>(room);
        padded.resize(room, T::zero());
        let mut pixels = pool::take_overwritten::<T>(g.h * g.w * c);
        for n in start..(start + per).min(g.n) {
            to_pixel_major(&xs[n * c * g.h * g.w..][..c * g.h * g.w], &g, &mut pixels);
            for (y, row) in pixels.chunks_exact(g.w * c).enumerate() {
                padded[((y + ph) * wp + pw) * c..][..g.w * c].copy_from_slice(row);
            }
            let gy_n = &gys[n * g.o * g.col_cols()..][..g.o * g.col_cols()];
            for (dst, src) in gy_wide.chunks_exact_mut(wp).zip(gy_n.chunks_exact(g.ow)) {
                dst[..g.ow].copy_from_slice(src);
            }
            for group in 0..groups {
                let a = ArrayView2::from_shape((opg, wide), &gy_wide[group * opg * wide..][..opg * wide]).expect("gỹ block");
                for i in 0..g.kh {
                    // (first tap, columns) of each product: the whole row, or one tap.
                    let runs = if merged { 0..1 } else { 0..g.kw };
                    for (j, cols) in runs.map(|j| (j, if merged { g.kw * cg } else { cg })) {
                        let at = (i * dh * wp + j * dw) * c + group * cg;
                        let b = ArrayView2::from_shape((wide, cols).strides((c, 1)), &padded[at..])
                            .expect("the taps stay in the padded planes");
                        let mut dst = acc.slice_mut(ndarray::s![group * g.kh + i, j * cg..j * cg + cols, ..]);
                        gemm_acc(&mut dst.view_mut().reversed_axes(), &a, &b, alone);
                    }
                }
            }
        }
        for buffer in [gy_wide, padded, pixels] {
            pool::recycle(ndarray::Array1::from_vec(buffer).into_dyn().into_shared());
        }
        acc
    });
    // Back to the weight's (O, C/g, kh, kw).
    let taps = g.kh * g.kw;
    let mut total = vec![T::zero(); g.o * cg * taps];
    for acc in sums {
        for ((gi, jc, o), &v) in acc.indexed_iter() {
            let (group, i, j, ch) = (gi / g.kh, gi % g.kh, jc / cg, jc % cg);
            let at = ((group * opg + o) * cg + ch) * taps + i * g.kw + j;
            total[at] = total[at] + v;
        }
    }
    Some(ArrayD::from_shape_vec(IxDyn(&[g.o, cg, g.kh, g.kw]), total).expect("weight shape"))
}

/// The samples cut into one run per thread: the run length and each run's first sample.
fn sample_runs(n: usize) -> (usize, Vec<usize>) {
    let per = n.div_ceil(rayon::current_num_threads().max(1)).max(1);
    (per, (0..n).step_by(per).collect())
}

/// [`conv_weight_grad_kernel`] through pixel-major rows or through im2col's columns.
pub(super) fn conv_weight_grad_by<T: Element>(x: &Tensor<T>, gy: &Tensor<T>, g: Geometry, pixel_major: bool) -> ArrayD<T> {
    use crate::array::pool;
    let (xs, gys) = (standard(x), standard(gy));
    let (groups, rows, opg) = (g.cfg.groups, g.col_rows(), g.o_per_group());
    let (cg, taps, p) = (g.c_per_group(), g.kh * g.kw, g.col_cols());
    let (per, starts) = sample_runs(g.n);
    let alone = starts.len() == 1;
    let sums: Vec<Array3<T>> = team::map_items(starts, |start| {
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
    });
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
