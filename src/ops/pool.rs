//! Pooling: max, average, power-average (Lp) and log-sum-exp, in 1-D and 2-D.
//!
//! All four are one construction: gather every window into a trailing dim ("unfold", a
//! gather whose adjoint adds overlapping windows back), then reduce that dim with a
//! maximum, a sum, a power sum or `logsumexp`. The gradients are those of the reductions, so
//! they need no code of their own and differentiate again. Max pooling gathers each
//! window's first maximum (or last NaN, as PyTorch), so its gradient goes there; LSE
//! pooling's goes to the window's softmax.

use super::conv::conv_output_size;
use super::index::PlaneIndex;
use crate::error::{Error, Result};
use crate::tensor::{Element, Tensor};
use rayon::prelude::*;
use std::sync::Arc;

/// Window, stride, zero (or -inf for max) padding and dilation of a 2-D pooling.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Pool2dConfig {
    /// Window size `(height, width)`.
    pub kernel_size: [usize; 2],
    /// Step between windows (PyTorch's default: the window size).
    pub stride: [usize; 2],
    /// Padding on each side (at most half the window, as PyTorch).
    pub padding: [usize; 2],
    /// Spacing between window taps (max pooling only, as PyTorch).
    pub dilation: [usize; 2],
}

impl Pool2dConfig {
    /// Non-overlapping `k × k` windows: stride `k`, no padding, no dilation.
    pub fn new(kernel_size: usize) -> Self {
        Pool2dConfig { kernel_size: [kernel_size; 2], stride: [kernel_size; 2], padding: [0; 2], dilation: [1; 2] }
    }
}

/// The 1-D counterpart of [`Pool2dConfig`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Pool1dConfig {
    /// Window size.
    pub kernel_size: usize,
    /// Step between windows.
    pub stride: usize,
    /// Padding on each side.
    pub padding: usize,
    /// Spacing between window taps.
    pub dilation: usize,
}

impl Pool1dConfig {
    /// Non-overlapping windows of `k`.
    pub fn new(kernel_size: usize) -> Self {
        Pool1dConfig { kernel_size, stride: kernel_size, padding: 0, dilation: 1 }
    }

    fn as_2d(self) -> Pool2dConfig {
        Pool2dConfig {
            kernel_size: [1, self.kernel_size],
            stride: [1, self.stride],
            padding: [0, self.padding],
            dilation: [1, self.dilation],
        }
    }
}

/// For each output position and window tap, the offset into a padded plane of width `wp`.
fn window_taps(oh: usize, ow: usize, cfg: Pool2dConfig, wp: usize) -> Vec<u32> {
    let [kh, kw] = cfg.kernel_size;
    let mut taps = Vec::with_capacity(oh * ow * kh * kw);
    for y in 0..oh {
        for x in 0..ow {
            for i in 0..kh {
                for j in 0..kw {
                    // In the plane, whose size `plane_fits` checked.
                    taps.push(((y * cfg.stride[0] + i * cfg.dilation[0]) * wp + x * cfg.stride[1] + j * cfg.dilation[1]) as u32);
                }
            }
        }
    }
    taps
}

/// For each output position along one spatial dim, the taps `lo..hi` of the window that
/// fall inside the input (`k·d + o·s - p` in `[0, n)`): computed once per call, so that the
/// scan of a window does no division.
fn taps_inside(out: usize, n: usize, k: usize, s: usize, p: usize, d: usize) -> Vec<std::ops::Range<usize>> {
    (0..out).map(|o| super::conv::inside(k, d, o * s, p, n)).collect()
}

/// The position in its `(h, w)` plane of the largest value in output window `(y, x)`
/// (its taps inside the plane given by `rows` and `cols`): the first maximum, or the last
/// NaN, as PyTorch's CPU kernel (a tap replaces the best if larger or NaN); `None` when
/// every tap falls in the padding.
fn window_argmax<T: Element>(
    plane: &[T],
    w: usize,
    (y, x): (usize, usize),
    (rows, cols): (std::ops::Range<usize>, std::ops::Range<usize>),
    cfg: &Pool2dConfig,
) -> Option<usize> {
    let [dh, dw] = cfg.dilation;
    let mut best = None;
    for i in rows {
        let row = (y * cfg.stride[0] + i * dh - cfg.padding[0]) * w;
        for j in cols.clone() {
            let at = row + x * cfg.stride[1] + j * dw - cfg.padding[1];
            best = Some(match best {
                None => (at, plane[at]),
                Some(kept) => keep_first_max(kept, at, plane[at]),
            });
        }
    }
    best.map(|(at, _)| at)
}

/// Keeps `(best, best_value)` or takes `(at, v)` if larger or NaN (so the first maximum or
/// the last NaN, as [`window_argmax`]). Selects, not a branch: on data the comparison goes
/// either way.
#[inline(always)]
fn keep_first_max<T: Element>((best, best_value): (usize, T), at: usize, v: T) -> (usize, T) {
    let take = (v > best_value) | v.is_nan();
    (if take { at } else { best }, if take { v } else { best_value })
}

/// [`window_argmax`] for every window of a plane when no window reaches padding and there
/// is no dilation (a CNN's usual 2 × 2 windows): row slices and no per-tap index
/// arithmetic, and the 2 × 2 case unrolled (`cargo bench --bench ops -- w2_cnn_step`).
fn dense_plane_argmax<T: Element>(plane: &[T], (h, w): (usize, usize), cfg: &Pool2dConfig, out: &mut [u32], ow: usize) {
    let ([kh, kw], [sh, sw]) = (cfg.kernel_size, cfg.stride);
    for (y, out_row) in out.chunks_mut(ow).enumerate() {
        let top = y * sh * w;
        let rows = &plane[top..(top + (kh - 1) * w + w).min(h * w)];
        if [kh, kw] == [2, 2] {
            let (r0, r1) = rows.split_at(w);
            for (x, best) in out_row.iter_mut().enumerate() {
                let o = x * sw;
                let mut m = (top + o, r0[o]);
                m = keep_first_max(m, top + o + 1, r0[o + 1]);
                m = keep_first_max(m, top + w + o, r1[o]);
                m = keep_first_max(m, top + w + o + 1, r1[o + 1]);
                *best = m.0 as u32;
            }
        } else {
            for (x, best) in out_row.iter_mut().enumerate() {
                let o = x * sw;
                let mut m = (top + o, rows[o]);
                for i in 0..kh {
                    for (j, &v) in rows[i * w + o..i * w + o + kw].iter().enumerate() {
                        m = keep_first_max(m, top + i * w + o + j, v);
                    }
                }
                *best = m.0 as u32;
            }
        }
    }
}

/// Checks a pooling window against an input whose trailing dims are the spatial ones, and
/// returns the output size of each: PyTorch's rules (positive kernel, stride and dilation;
/// padding at most half the window; the dilated window fits the padded input). Messages
/// use the caller's dims, so a 1-D pooling reports 1-D values.
fn check_windows(
    op: &'static str,
    shape: &[usize],
    kernel: &[usize],
    stride: &[usize],
    padding: &[usize],
    dilation: &[usize],
) -> Result<Vec<usize>> {
    let one = kernel.len() == 1;
    let show = |v: &[usize]| if one { format!("{}", v[0]) } else { format!("{v:?}") };
    if kernel.contains(&0) || stride.contains(&0) || dilation.contains(&0) {
        return Err(Error::invalid(
            op,
            format!("kernel {}, stride {} and dilation {} must be positive", show(kernel), show(stride), show(dilation)),
        ));
    }
    if padding.iter().zip(kernel).any(|(&p, &k)| 2 * p > k) {
        return Err(Error::invalid(op, format!("padding {} should be at most half of the kernel {}", show(padding), show(kernel))));
    }
    let spatial = &shape[shape.len() - kernel.len()..];
    (0..kernel.len())
        .map(|i| {
            conv_output_size(spatial[i], kernel[i], stride[i], padding[i], dilation[i]).ok_or_else(|| {
                Error::shape(
                    op,
                    format!(
                        "window {} (dilation {}) does not fit the input {:?} with padding {}",
                        show(kernel),
                        show(dilation),
                        shape,
                        show(padding)
                    ),
                )
            })
        })
        .collect()
}

impl<T: Element> Tensor<T> {
    /// Every pooling window of `(N, C, H, W)` as `(N, C, oh, ow, kh·kw)`, padding with
    /// `pad` (0, or -inf for max pooling).
    fn unfold2d(&self, op: &'static str, cfg: Pool2dConfig, pad: T) -> Result<Tensor<T>> {
        if self.ndim() != 4 {
            return Err(Error::shape(op, format!("input {:?} must be (N, C, H, W)", self.shape())));
        }
        let [kh, kw] = cfg.kernel_size;
        let out = check_windows(op, self.shape(), &cfg.kernel_size, &cfg.stride, &cfg.padding, &cfg.dilation)?;
        let (n, c, h, w) = (self.shape()[0], self.shape()[1], self.shape()[2], self.shape()[3]);
        let (oh, ow) = (out[0], out[1]);
        let [ph, pw] = cfg.padding;
        let mut x = self.clone();
        if ph > 0 || pw > 0 {
            x = x.pad_axis(2, ph, ph).pad_axis(3, pw, pw);
            if pad != T::zero() {
                let (hp, wp) = (h + 2 * ph, w + 2 * pw);
                let border = ndarray::Array4::from_shape_fn((1, 1, hp, wp), |(_, _, i, j)| {
                    if i < ph || i >= ph + h || j < pw || j >= pw + w { pad } else { T::zero() }
                });
                x = x.add(&Tensor::from(border.into_dyn()))?;
            }
        }
        let wp = w + 2 * pw;
        let planes = x.reshape_to(&[n * c, x.shape()[2] * wp]);
        plane_fits(op, x.shape())?;
        let index = PlaneIndex { indices: Arc::new(window_taps(oh, ow, cfg, wp)), per_plane: false, plane_len: x.shape()[2] * wp };
        Ok(planes.plane_gather(index).reshape_to(&[n, c, oh, ow, kh * kw]))
    }

    /// Max pooling of `(N, C, H, W)`, as `torch.nn.functional.max_pool2d`: the largest
    /// value of each window (padding counts as -inf); the gradient goes to the maximum.
    ///
    /// ```
    /// use nabla::prelude::*;
    /// use nabla::ops::Pool2dConfig;
    /// let x = Tensor::arange(0.0, 16.0, 1.0)?.reshape(&[1, 1, 4, 4])?;
    /// assert_eq!(x.max_pool2d(Pool2dConfig::new(2))?.to_vec(), vec![5.0, 7.0, 13.0, 15.0]);
    /// # Ok::<(), nabla::Error>(())
    /// ```
    pub fn max_pool2d(&self, cfg: Pool2dConfig) -> Result<Tensor<T>> {
        // The positions of the maxima are found by one scan of each window on the values,
        // planes in parallel; the result is then a gather at them, whose gradient is a
        // scatter-add (differentiable again).
        let op = "max_pool2d";
        if self.ndim() != 4 {
            return Err(Error::shape(op, format!("input {:?} must be (N, C, H, W)", self.shape())));
        }
        let out = check_windows(op, self.shape(), &cfg.kernel_size, &cfg.stride, &cfg.padding, &cfg.dilation)?;
        let (n, c, h, w) = (self.shape()[0], self.shape()[1], self.shape()[2], self.shape()[3]);
        let (oh, ow) = (out[0], out[1]);
        let value = self.value();
        let xs = value.as_standard_layout();
        let xs = xs.as_slice().expect("standard layout");
        plane_fits(op, self.shape())?;
        let mut argmax = vec![0u32; n * c * oh * ow];
        let [kh, kw] = cfg.kernel_size;
        let row_taps = taps_inside(oh, h, kh, cfg.stride[0], cfg.padding[0], cfg.dilation[0]);
        let col_taps = taps_inside(ow, w, kw, cfg.stride[1], cfg.padding[1], cfg.dilation[1]);
        // Windows fit the input by construction when there is no padding.
        let dense = cfg.padding == [0, 0] && cfg.dilation == [1, 1];
        let empty = if h * w == 0 || ow == 0 {
            // No pixel at all: every window covers only padding.
            (!argmax.is_empty()).then_some(0)
        } else {
            argmax
                .par_chunks_mut((oh * ow).max(1))
                .zip(xs.par_chunks(h * w))
                .map(|(out, plane)| {
                    if dense {
                        dense_plane_argmax(plane, (h, w), &cfg, out, ow);
                        return Ok(());
                    }
                    for (y, out_row) in out.chunks_mut(ow).enumerate() {
                        for (x, best) in out_row.iter_mut().enumerate() {
                            let taps = (row_taps[y].clone(), col_taps[x].clone());
                            *best = window_argmax(plane, w, (y, x), taps, &cfg).ok_or(y * ow + x)? as u32;
                        }
                    }
                    Ok(())
                })
                .find_first(Result::is_err)
                .and_then(Result::err)
        };
        if let Some(window) = empty {
            // Only a dilated window can miss the input entirely; PyTorch returns -inf there
            // with a gradient to an arbitrary element, so nabla refuses instead.
            return Err(Error::invalid(
                op,
                format!(
                    "with dilation {:?} and padding {:?}, window {window} of the input {:?} covers only padding",
                    cfg.dilation,
                    cfg.padding,
                    self.shape()
                ),
            ));
        }
        let index = PlaneIndex { indices: Arc::new(argmax), per_plane: true, plane_len: h * w };
        Ok(self.reshape_to(&[n * c, h * w]).plane_gather(index).reshape_to(&[n, c, oh, ow]))
    }

    /// Average pooling, as `torch.nn.functional.avg_pool2d`: the mean of each window,
    /// counting padding zeros in the divisor when `count_include_pad`. No dilation.
    pub fn avg_pool2d(&self, cfg: Pool2dConfig, count_include_pad: bool) -> Result<Tensor<T>> {
        no_dilation("avg_pool2d", &cfg.dilation)?;
        let sums = self.unfold2d("avg_pool2d", cfg, T::zero())?.sum_dims(&[4], false)?;
        let [kh, kw] = cfg.kernel_size;
        if count_include_pad || cfg.padding == [0, 0] {
            return Ok(sums.div_scalar(T::of((kh * kw) as f64)));
        }
        // The divisor of each window: its taps that fall inside the input.
        let (h, w) = (self.shape()[2], self.shape()[3]);
        let (oh, ow) = (sums.shape()[2], sums.shape()[3]);
        let inside = |start: usize, k: usize, pad: usize, n: usize| (start..start + k).filter(|&i| i >= pad && i < pad + n).count();
        let counts = ndarray::Array4::from_shape_fn((1, 1, oh, ow), |(_, _, y, x)| {
            T::of((inside(y * cfg.stride[0], kh, cfg.padding[0], h) * inside(x * cfg.stride[1], kw, cfg.padding[1], w)) as f64)
        });
        sums.div(&Tensor::from(counts.into_dyn()))
    }

    /// Power-average pooling, as `torch.nn.functional.lp_pool2d`: `(Σ_window x^p)^(1/p)`
    /// (p = 1 is sum pooling, p → ∞ max pooling). No padding and no dilation (PyTorch has
    /// neither for this pooling).
    pub fn lp_pool2d(&self, norm_type: f64, cfg: Pool2dConfig) -> Result<Tensor<T>> {
        no_dilation("lp_pool2d", &cfg.dilation)?;
        no_padding("lp_pool2d", &cfg.padding)?;
        let p = T::of(norm_type);
        self.pow(p).unfold2d("lp_pool2d", cfg, T::zero())?.sum_dims(&[4], false).map(|s| s.pow(p.recip()))
    }

    /// Log-sum-exp pooling: `(1/β) log(mean_window exp(βx))`, computed stably. It tends to
    /// average pooling as β → 0, to max pooling as β → +∞ and to min pooling as β → -∞.
    /// `beta` must not be 0 (use average pooling).
    pub fn lse_pool2d(&self, beta: f64, cfg: Pool2dConfig) -> Result<Tensor<T>> {
        if beta == 0.0 || !beta.is_finite() {
            return Err(Error::invalid("lse_pool2d", format!("beta {beta} must be finite and non-zero")));
        }
        let windows = self.mul_scalar(T::of(beta)).unfold2d("lse_pool2d", cfg, T::zero())?;
        let k = (cfg.kernel_size[0] * cfg.kernel_size[1]) as f64;
        Ok(windows.logsumexp_dims(&[4], false)?.add_scalar(T::of(-k.ln())).div_scalar(T::of(beta)))
    }

    /// Max pooling of `(N, C, L)`, as `torch.nn.functional.max_pool1d`.
    pub fn max_pool1d(&self, cfg: Pool1dConfig) -> Result<Tensor<T>> {
        self.pool1d("max_pool1d", cfg, |x| x.max_pool2d(cfg.as_2d()))
    }

    /// Average pooling of `(N, C, L)`, as `torch.nn.functional.avg_pool1d`.
    pub fn avg_pool1d(&self, cfg: Pool1dConfig, count_include_pad: bool) -> Result<Tensor<T>> {
        no_dilation("avg_pool1d", &[cfg.dilation])?;
        self.pool1d("avg_pool1d", cfg, |x| x.avg_pool2d(cfg.as_2d(), count_include_pad))
    }

    /// Power-average pooling of `(N, C, L)`, as `torch.nn.functional.lp_pool1d`.
    pub fn lp_pool1d(&self, norm_type: f64, cfg: Pool1dConfig) -> Result<Tensor<T>> {
        no_dilation("lp_pool1d", &[cfg.dilation])?;
        no_padding("lp_pool1d", &[cfg.padding])?;
        self.pool1d("lp_pool1d", cfg, |x| x.lp_pool2d(norm_type, cfg.as_2d()))
    }

    /// Log-sum-exp pooling of `(N, C, L)`.
    pub fn lse_pool1d(&self, beta: f64, cfg: Pool1dConfig) -> Result<Tensor<T>> {
        self.pool1d("lse_pool1d", cfg, |x| x.lse_pool2d(beta, cfg.as_2d()))
    }

    fn pool1d(&self, op: &'static str, cfg: Pool1dConfig, pool: impl FnOnce(&Tensor<T>) -> Result<Tensor<T>>) -> Result<Tensor<T>> {
        if self.ndim() != 3 {
            return Err(Error::shape(op, format!("input {:?} must be (N, C, L)", self.shape())));
        }
        check_windows(op, self.shape(), &[cfg.kernel_size], &[cfg.stride], &[cfg.padding], &[cfg.dilation])?;
        pool(&self.unsqueeze(2)?).map_err(|e| e.in_op(op))?.squeeze(2)
    }
}

/// Pooling keeps positions within a plane as `u32`: a plane of `(N, C, H, W)` (padding
/// included) must have fewer than 2³² elements.
fn plane_fits(op: &'static str, shape: &[usize]) -> Result<()> {
    match shape[2].checked_mul(shape[3]) {
        Some(len) if len <= u32::MAX as usize => Ok(()),
        _ => Err(Error::invalid(op, format!("a plane of {} x {} elements is too large (at most 2^32 - 1)", shape[2], shape[3]))),
    }
}

/// Average and power-average pooling have no dilation in PyTorch.
fn no_dilation(op: &'static str, dilation: &[usize]) -> Result<()> {
    match dilation.iter().all(|&d| d == 1) {
        true => Ok(()),
        false => Err(Error::invalid(op, format!("dilation {dilation:?} is not supported (only max and LSE pooling dilate)"))),
    }
}

/// Power-average pooling has no padding in PyTorch.
fn no_padding(op: &'static str, padding: &[usize]) -> Result<()> {
    match padding.iter().all(|&p| p == 0) {
        true => Ok(()),
        false => Err(Error::invalid(op, format!("padding {padding:?} is not supported"))),
    }
}
