//! Pooling: max, average, power-average (Lp) and log-sum-exp, in 1-D and 2-D.
//!
//! All four are one construction: gather every window into a trailing dim ("unfold", a
//! gather whose adjoint adds overlapping windows back), then reduce that dim with a
//! maximum, a sum, a power sum or `logsumexp`. The gradients are those of the reductions, so
//! they need no code of their own and differentiate again. Max pooling gathers each
//! window's first maximum (or last NaN, as PyTorch), so its gradient goes there; LSE
//! pooling's goes to the window's softmax.

use super::index::PlaneIndex;
use crate::error::{Error, Result};
use crate::tensor::{Element, Tensor};
use ndarray::{ArrayD, IxDyn};
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
    /// PyTorch's `ceil_mode`: one more window where the last stride leaves input over,
    /// clipped to the padded input; a window that would start in the right padding is
    /// dropped.
    pub ceil_mode: bool,
}

impl Pool2dConfig {
    /// Non-overlapping `k × k` windows: stride `k`, no padding, no dilation.
    pub fn new(kernel_size: usize) -> Self {
        Pool2dConfig { kernel_size: [kernel_size; 2], stride: [kernel_size; 2], padding: [0; 2], dilation: [1; 2], ceil_mode: false }
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
    /// As [`Pool2dConfig::ceil_mode`].
    pub ceil_mode: bool,
}

impl Pool1dConfig {
    /// Non-overlapping windows of `k`.
    pub fn new(kernel_size: usize) -> Self {
        Pool1dConfig { kernel_size, stride: kernel_size, padding: 0, dilation: 1, ceil_mode: false }
    }

    fn as_2d(self) -> Pool2dConfig {
        Pool2dConfig {
            kernel_size: [1, self.kernel_size],
            stride: [1, self.stride],
            padding: [0, self.padding],
            dilation: [1, self.dilation],
            ceil_mode: self.ceil_mode,
        }
    }
}

/// The number of windows along a dim of `n` (PyTorch's `pooling_output_shape`): with
/// `ceil_mode` the last partial stride gets a window too, unless it would start in the
/// right padding. `None` when the dilated window does not fit the padded input.
pub(crate) fn pool_output_size(n: usize, k: usize, s: usize, p: usize, d: usize, ceil_mode: bool) -> Option<usize> {
    let span = d * (k.max(1) - 1) + 1;
    let padded = n + 2 * p;
    if padded < span || s == 0 {
        return None;
    }
    let room = padded - span;
    let out = if ceil_mode { room.div_ceil(s) } else { room / s } + 1;
    Some(if ceil_mode && (out - 1) * s >= n + p { out - 1 } else { out })
}

/// How far the last window runs past the padded input (only with `ceil_mode`).
fn overhang(n: usize, out: usize, k: usize, s: usize, p: usize, d: usize) -> usize {
    ((out.max(1) - 1) * s + d * (k.max(1) - 1) + 1).saturating_sub(n + 2 * p)
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
    ceil_mode: bool,
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
            pool_output_size(spatial[i], kernel[i], stride[i], padding[i], dilation[i], ceil_mode).ok_or_else(|| {
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
        let out = check_windows(op, self.shape(), &cfg.kernel_size, &cfg.stride, &cfg.padding, &cfg.dilation, cfg.ceil_mode)?;
        let (n, c, h, w) = (self.shape()[0], self.shape()[1], self.shape()[2], self.shape()[3]);
        let (oh, ow) = (out[0], out[1]);
        let [ph, pw] = cfg.padding;
        // With ceil_mode the last window may run past the padding: more of it on the right.
        let eh = overhang(h, oh, kh, cfg.stride[0], ph, cfg.dilation[0]);
        let ew = overhang(w, ow, kw, cfg.stride[1], pw, cfg.dilation[1]);
        let mut x = self.clone();
        if ph > 0 || pw > 0 || eh > 0 || ew > 0 {
            x = x.pad_axis(2, ph, ph + eh).pad_axis(3, pw, pw + ew);
            if pad != T::zero() {
                let (hp, wp) = (h + 2 * ph + eh, w + 2 * pw + ew);
                let border = ndarray::Array4::from_shape_fn((1, 1, hp, wp), |(_, _, i, j)| {
                    if i < ph || i >= ph + h || j < pw || j >= pw + w { pad } else { T::zero() }
                });
                x = x.add(&Tensor::from(border.into_dyn()))?;
            }
        }
        let wp = w + 2 * pw + ew;
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
        let (argmax, [n, c, oh, ow], plane) = self.window_maxima("max_pool2d", cfg)?;
        let index = PlaneIndex { indices: Arc::new(argmax), per_plane: true, plane_len: plane };
        Ok(self.reshape_to(&[n * c, plane]).plane_gather(index).reshape_to(&[n, c, oh, ow]))
    }

    /// [`Tensor::max_pool2d`] and where each maximum is (PyTorch's `return_indices=True`):
    /// its position in its `(H, W)` plane, `h·W + w`, shaped as the output.
    ///
    /// ```
    /// use nabla::prelude::*;
    /// use nabla::ops::Pool2dConfig;
    /// let x = Tensor::arange(0.0, 16.0, 1.0)?.reshape(&[1, 1, 4, 4])?;
    /// let (_, at) = x.max_pool2d_with_indices(Pool2dConfig::new(2))?;
    /// assert_eq!(at.iter().copied().collect::<Vec<_>>(), vec![5, 7, 13, 15]);
    /// # Ok::<(), nabla::Error>(())
    /// ```
    pub fn max_pool2d_with_indices(&self, cfg: Pool2dConfig) -> Result<(Tensor<T>, ArrayD<usize>)> {
        let (argmax, [n, c, oh, ow], plane) = self.window_maxima("max_pool2d", cfg)?;
        let at = ArrayD::from_shape_vec(IxDyn(&[n, c, oh, ow]), argmax.iter().map(|&i| i as usize).collect()).expect("one per window");
        let index = PlaneIndex { indices: Arc::new(argmax), per_plane: true, plane_len: plane };
        Ok((self.reshape_to(&[n * c, plane]).plane_gather(index).reshape_to(&[n, c, oh, ow]), at))
    }

    /// The position in its plane of each window's maximum, the output shape and the plane
    /// size.
    fn window_maxima(&self, op: &'static str, cfg: Pool2dConfig) -> Result<(Vec<u32>, [usize; 4], usize)> {
        // The positions of the maxima are found by one scan of each window on the values,
        // planes in parallel; the result is then a gather at them, whose gradient is a
        // scatter-add (differentiable again).
        if self.ndim() != 4 {
            return Err(Error::shape(op, format!("input {:?} must be (N, C, H, W)", self.shape())));
        }
        let out = check_windows(op, self.shape(), &cfg.kernel_size, &cfg.stride, &cfg.padding, &cfg.dilation, cfg.ceil_mode)?;
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
        let dense = cfg.padding == [0, 0]
            && cfg.dilation == [1, 1]
            && overhang(h, oh, kh, cfg.stride[0], 0, 1) == 0
            && overhang(w, ow, kw, cfg.stride[1], 0, 1) == 0;
        let empty = if h * w == 0 || ow == 0 {
            // No pixel at all: every window covers only padding.
            (!argmax.is_empty()).then_some(0)
        } else {
            // The first window that covers only padding, in any plane (the same in all).
            let empty = std::sync::atomic::AtomicUsize::new(usize::MAX);
            crate::array::kernel::team::for_each_chunk_mut(&mut argmax, (oh * ow).max(1), |p, out| {
                let plane = &xs[p * h * w..][..h * w];
                if dense {
                    return dense_plane_argmax(plane, (h, w), &cfg, out, ow);
                }
                for (y, out_row) in out.chunks_mut(ow).enumerate() {
                    for (x, best) in out_row.iter_mut().enumerate() {
                        let taps = (row_taps[y].clone(), col_taps[x].clone());
                        match window_argmax(plane, w, (y, x), taps, &cfg) {
                            Some(i) => *best = i as u32,
                            None => {
                                empty.fetch_min(y * ow + x, std::sync::atomic::Ordering::Relaxed);
                                return;
                            }
                        }
                    }
                }
            });
            Some(empty.into_inner()).filter(|&w| w != usize::MAX)
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
        Ok((argmax, [n, c, oh, ow], h * w))
    }

    /// Average pooling, as `torch.nn.functional.avg_pool2d`: the sum of each window over
    /// its divisor: `divisor_override` when given, else the window's size, clipped to the
    /// padded input (`ceil_mode`'s last window) and counting padding zeros only when
    /// `count_include_pad`. No dilation.
    ///
    /// ```
    /// use nabla::prelude::*;
    /// use nabla::ops::Pool2dConfig;
    /// let x = Tensor::arange(0.0, 9.0, 1.0)?.reshape(&[1, 1, 3, 3])?;
    /// let cfg = Pool2dConfig { ceil_mode: true, ..Pool2dConfig::new(2) };
    /// // windows [0 1; 3 4], [2; 5], [6 7], [8]: the last three clipped
    /// assert_eq!(x.avg_pool2d(cfg, true, None)?.to_vec(), vec![2.0, 3.5, 6.5, 8.0]);
    /// # Ok::<(), nabla::Error>(())
    /// ```
    pub fn avg_pool2d(&self, cfg: Pool2dConfig, count_include_pad: bool, divisor_override: Option<usize>) -> Result<Tensor<T>> {
        no_dilation("avg_pool2d", &cfg.dilation)?;
        if divisor_override == Some(0) {
            return Err(Error::invalid("avg_pool2d", "divisor_override must be positive"));
        }
        let sums = self.unfold2d("avg_pool2d", cfg, T::zero())?.sum_dims(&[4], false)?;
        if let Some(d) = divisor_override {
            return Ok(sums.div_scalar(T::of(d as f64)));
        }
        let [kh, kw] = cfg.kernel_size;
        let (h, w) = (self.shape()[2], self.shape()[3]);
        let (oh, ow) = (sums.shape()[2], sums.shape()[3]);
        let clipped = overhang(h, oh, kh, cfg.stride[0], cfg.padding[0], 1) + overhang(w, ow, kw, cfg.stride[1], cfg.padding[1], 1) > 0;
        if !clipped && (count_include_pad || cfg.padding == [0, 0]) {
            return Ok(sums.div_scalar(T::of((kh * kw) as f64)));
        }
        // The divisor of each window: its taps inside the padded input, or inside the input.
        let bounds = |pad: usize, n: usize| if count_include_pad { (0, n + 2 * pad) } else { (pad, pad + n) };
        let inside = |start: usize, k: usize, (lo, hi): (usize, usize)| (start..start + k).filter(|&i| i >= lo && i < hi).count();
        let (rows, cols) = (bounds(cfg.padding[0], h), bounds(cfg.padding[1], w));
        let counts = ndarray::Array4::from_shape_fn((1, 1, oh, ow), |(_, _, y, x)| {
            T::of((inside(y * cfg.stride[0], kh, rows) * inside(x * cfg.stride[1], kw, cols)) as f64)
        });
        sums.div(&Tensor::from(counts.into_dyn()))
    }

    /// Power-average pooling, as `torch.nn.functional.lp_pool2d`: `(Σ_window x^p)^(1/p)`
    /// (p = 1 is sum pooling, p → ∞ max pooling), computed as PyTorch does: the average
    /// pooling of `x^p` times the window size, so that a window `ceil_mode` clips is scaled
    /// up to the full size. No padding and no dilation (PyTorch has neither here).
    pub fn lp_pool2d(&self, norm_type: f64, cfg: Pool2dConfig) -> Result<Tensor<T>> {
        no_dilation("lp_pool2d", &cfg.dilation)?;
        no_padding("lp_pool2d", &cfg.padding)?;
        let p = T::of(norm_type);
        let k = (cfg.kernel_size[0] * cfg.kernel_size[1]) as f64;
        let mean = self.pow(p).avg_pool2d(cfg, true, None).map_err(|e| e.in_op("lp_pool2d"))?;
        Ok(mean.mul_scalar(T::of(k)).pow(p.recip()))
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

    /// [`Tensor::max_pool1d`] and the position of each maximum along `L`.
    pub fn max_pool1d_with_indices(&self, cfg: Pool1dConfig) -> Result<(Tensor<T>, ArrayD<usize>)> {
        let mut at = None;
        let y = self.pool1d("max_pool1d", cfg, |x| {
            let (y, i) = x.max_pool2d_with_indices(cfg.as_2d())?;
            at = Some(i);
            Ok(y)
        })?;
        let at = at.expect("set by the pooling").remove_axis(ndarray::Axis(2));
        Ok((y, at))
    }

    /// Average pooling of `(N, C, L)`, as `torch.nn.functional.avg_pool1d`.
    pub fn avg_pool1d(&self, cfg: Pool1dConfig, count_include_pad: bool) -> Result<Tensor<T>> {
        no_dilation("avg_pool1d", &[cfg.dilation])?;
        self.pool1d("avg_pool1d", cfg, |x| x.avg_pool2d(cfg.as_2d(), count_include_pad, None))
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
        check_windows(op, self.shape(), &[cfg.kernel_size], &[cfg.stride], &[cfg.padding], &[cfg.dilation], cfg.ceil_mode)?;
        pool(&self.unsqueeze(2)?).map_err(|e| e.in_op(op))?.squeeze(2)
    }
}

/// The input range output `i` of `out` adaptive windows pools over `n` positions:
/// `[⌊i·n/out⌋, ⌈(i+1)·n/out⌉)` (PyTorch's `start_index`/`end_index`).
fn adaptive_window(i: usize, out: usize, n: usize) -> std::ops::Range<usize> {
    (i * n / out)..((i + 1) * n).div_ceil(out)
}

/// The `[out, n]` matrix averaging each adaptive window.
fn adaptive_means<T: Element>(out: usize, n: usize) -> Tensor<T> {
    let mut a = ndarray::Array2::<T>::zeros((out, n));
    for i in 0..out {
        let window = adaptive_window(i, out, n);
        let share = T::of(1.0 / window.len() as f64);
        a.row_mut(i).slice_mut(ndarray::s![window]).fill(share);
    }
    Tensor::from(a.into_dyn())
}

impl<T: Element> Tensor<T> {
    /// Adaptive average pooling of `(N, C, H, W)` (or `(C, H, W)`) to `output_size`
    /// `[oh, ow]`, as `torch.nn.functional.adaptive_avg_pool2d`: output `(i, j)` is the
    /// mean of rows `[⌊iH/oh⌋, ⌈(i+1)H/oh⌉)` and columns likewise, computed as
    /// `A_h · x · A_wᵀ` with the averaging matrices (so it differentiates to any order).
    ///
    /// ```
    /// use nabla::prelude::*;
    /// let x = Tensor::arange(0.0, 6.0, 1.0)?.reshape(&[1, 1, 2, 3])?;
    /// assert_eq!(x.adaptive_avg_pool2d([1, 2])?.to_vec(), vec![2.0, 3.0]);   // cols {0,1}, {1,2}
    /// # Ok::<(), nabla::Error>(())
    /// ```
    pub fn adaptive_avg_pool2d(&self, output_size: [usize; 2]) -> Result<Tensor<T>> {
        let op = "adaptive_avg_pool2d";
        adaptive_fits(op, self.shape(), &output_size)?;
        let nd = self.ndim();
        let (h, w) = (self.shape()[nd - 2], self.shape()[nd - 1]);
        let [oh, ow] = output_size;
        let rows = adaptive_means::<T>(oh, h);
        let cols = adaptive_means::<T>(ow, w).t();
        rows.matmul(&self.matmul(&cols)?)
    }

    /// Adaptive average pooling of `(N, C, L)` (or `(C, L)`) to `output_size` windows.
    pub fn adaptive_avg_pool1d(&self, output_size: usize) -> Result<Tensor<T>> {
        adaptive_fits("adaptive_avg_pool1d", self.shape(), &[output_size])?;
        let l = self.shape()[self.ndim() - 1];
        self.matmul(&adaptive_means::<T>(output_size, l).t())
    }

    /// Adaptive max pooling of `(N, C, H, W)` (or `(C, H, W)`), as
    /// `torch.nn.functional.adaptive_max_pool2d`: each window's maximum (the first, or
    /// the last NaN), and its position `h·W + w` in its plane (`return_indices`).
    ///
    /// ```
    /// use nabla::prelude::*;
    /// let x = Tensor::arange(0.0, 6.0, 1.0)?.reshape(&[1, 1, 2, 3])?;
    /// let (y, at) = x.adaptive_max_pool2d([1, 2])?;
    /// assert_eq!((y.to_vec(), at.iter().copied().collect::<Vec<_>>()), (vec![4.0, 5.0], vec![4, 5]));
    /// # Ok::<(), nabla::Error>(())
    /// ```
    pub fn adaptive_max_pool2d(&self, output_size: [usize; 2]) -> Result<(Tensor<T>, ArrayD<usize>)> {
        let op = "adaptive_max_pool2d";
        adaptive_fits(op, self.shape(), &output_size)?;
        let nd = self.ndim();
        let (h, w) = (self.shape()[nd - 2], self.shape()[nd - 1]);
        if (h * w) as u64 > u32::MAX as u64 {
            return Err(Error::invalid(op, format!("a plane of {h} x {w} elements is too large (at most 2^32 - 1)")));
        }
        let [oh, ow] = output_size;
        let planes = self.len() / (h * w).max(1);
        let value = self.value();
        let xs = value.as_standard_layout();
        let xs = xs.as_slice().expect("standard layout");
        let mut argmax = vec![0u32; planes * oh * ow];
        if oh * ow > 0 && h * w > 0 {
            crate::array::kernel::team::for_each_chunk_mut(&mut argmax, oh * ow, |p, out| {
                let plane = &xs[p * h * w..][..h * w];
                for (k, best) in out.iter_mut().enumerate() {
                    let (rows, cols) = (adaptive_window(k / ow, oh, h), adaptive_window(k % ow, ow, w));
                    let mut m = (rows.start * w + cols.start, plane[rows.start * w + cols.start]);
                    for r in rows {
                        for c in cols.clone() {
                            m = keep_first_max(m, r * w + c, plane[r * w + c]);
                        }
                    }
                    *best = m.0 as u32;
                }
            });
        }
        let mut shape = self.shape()[..nd - 2].to_vec();
        shape.extend([oh, ow]);
        let at = ArrayD::from_shape_vec(IxDyn(&shape), argmax.iter().map(|&i| i as usize).collect()).expect("one per window");
        let index = PlaneIndex { indices: Arc::new(argmax), per_plane: true, plane_len: h * w };
        let y = self.reshape_to(&[planes, h * w]).plane_gather(index).reshape_to(&shape);
        Ok((y, at))
    }

    /// Adaptive max pooling of `(N, C, L)` (or `(C, L)`): maxima and their positions.
    pub fn adaptive_max_pool1d(&self, output_size: usize) -> Result<(Tensor<T>, ArrayD<usize>)> {
        adaptive_fits("adaptive_max_pool1d", self.shape(), &[output_size])?;
        let nd = self.ndim();
        let (y, at) = self.unsqueeze(nd as isize - 1)?.adaptive_max_pool2d([1, output_size]).map_err(|e| e.in_op("adaptive_max_pool1d"))?;
        Ok((y.squeeze(nd as isize - 1)?, at.remove_axis(ndarray::Axis(nd - 1))))
    }
}

/// PyTorch's checks for adaptive pooling: a batched or unbatched input (2 or 1 leading
/// dims before the spatial ones), non-empty spatial dims, positive output sizes.
fn adaptive_fits(op: &'static str, shape: &[usize], output_size: &[usize]) -> Result<()> {
    let d = output_size.len();
    if shape.len() != d + 1 && shape.len() != d + 2 {
        return Err(Error::shape(op, format!("input {shape:?} must have {} or {} dims", d + 1, d + 2)));
    }
    let batched = shape.len() == d + 2;
    if shape[batched as usize..].contains(&0) {
        return Err(Error::shape(op, format!("input {shape:?} has an empty non-batch dim")));
    }
    if output_size.contains(&0) {
        return Err(Error::invalid(op, format!("output_size {output_size:?} must be positive")));
    }
    Ok(())
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
