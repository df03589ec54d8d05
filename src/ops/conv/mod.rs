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
//! parallel on the kernels' thread team; the forward pass of a convolution with many channels per group
//! builds pixel-major rows instead (see `pixel_major_pays`), and in `f32` on AVX2 or AVX-512 a direct
//! kernel reads the padded input in place where it applies (see `forward_direct`).

mod forward;
mod geometry;
mod grad;
mod im2col;

use crate::autograd::rule;
use crate::error::{Error, Result};
use crate::ops::registry::{OpInfo, randn, recorded_grad};
use crate::tensor::{Element, Saves, Tensor};
use forward::*;
pub(crate) use geometry::inside;
use geometry::*;
use grad::*;
use im2col::*;

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
            // The direct path takes every stride-1 case with a kernel (`None` otherwise).
            let direct_applies = cfg.stride == [1, 1] && k[0] * k[1] > 0;
            for threads in [1, 2] {
                let pool = rayon::ThreadPoolBuilder::new().num_threads(threads).build().unwrap();
                let direct = pool.install(|| conv_weight_grad_direct(&x, &gy, g));
                assert_eq!(direct.is_some(), direct_applies, "{c} channels {cfg:?} kernel {k:?}");
                let paths = [
                    ("pixel-major", Some(pool.install(|| conv_weight_grad_by(&x, &gy, g, true)))),
                    ("columns", Some(pool.install(|| conv_weight_grad_by(&x, &gy, g, false)))),
                    ("direct", direct),
                ];
                for (path, got) in paths {
                    let Some(got) = got else { continue };
                    assert_eq!(got.shape(), &[o, c / groups, k[0], k[1]]);
                    for (a, b) in got.iter().zip(&want) {
                        assert!((a - b).abs() < 1e-12, "{c} channels {cfg:?} kernel {k:?}, {path}, {threads} threads: {a} vs {b}");
                    }
                }
            }
        }
    }

    #[test]
    fn the_direct_weight_grad_leaves_inputs_that_are_not_finite_to_the_rows() {
        // Its products read inputs past each output row, cancelled by zeros: an infinite
        // input there would give 0·∞ = NaN where the gradient has none.
        let (_, _, _, _, _, _, o, g) = path_geometry(PATH_CASES[0], 1);
        let mut rng = crate::rng(3);
        let mut xs = Tensor::<f64>::randn(&[1, 16, 5, 6], &mut rng).to_vec();
        xs[6 * 5 - 1] = f64::INFINITY;
        let x = Tensor::<f64>::from_vec(xs, &[1, 16, 5, 6]).unwrap();
        let gy = Tensor::<f64>::randn(&[1, o, g.oh, g.ow], &mut rng);
        assert!(conv_weight_grad_direct(&x, &gy, g).is_none());
        let (got, rows) = (conv_weight_grad_kernel(&x, &gy, g), conv_weight_grad_by(&x, &gy, g, true));
        assert!(got.iter().zip(&rows).all(|(a, b)| a == b || (a.is_nan() && b.is_nan())));
        assert!(got.iter().any(|v| v.is_infinite()) && got.iter().any(|v| v.is_finite()));
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
