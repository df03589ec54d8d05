//! Normalisation as fused passes: layer norm over contiguous rows, batch norm per channel.
//!
//! Both compute `x̂ = (x − μ)·r` with `r = 1/√(σ² + ε)` (biased variance) and the affine
//! `y = x̂·w + b`, and keep `μ` and `r` for the backward:
//!
//! `gx = r·(g − mean(g) − x̂·mean(g·x̂))` with `g = gy·w` (batch statistics), or `gx = r·g`
//! (statistics given as constants); `gw = Σ gy·x̂`, `gb = Σ gy`.
//!
//! A first-order backward runs these as fused passes; a recorded one (`create_graph`)
//! composes the same formulas from differentiable ops, so that every order is available.

use super::registry::{OpInfo, randn};
use super::softmax::lane_sum;
use crate::array::kernel::team;
use crate::array::kernel::{Body, PARALLEL_MIN_LEN, run_widest};
use crate::autograd::{OpRule, is_grad_enabled};
use crate::error::{Error, Result};
use crate::tensor::{Element, Tensor};
use ndarray::{ArrayD, IxDyn};

/// Row blocks per thread in layer norm's passes: with one block each, a thread that starts
/// late or runs slow (a busy neighbour on a shared machine) holds up the call; with several,
/// work stealing evens the load (`scripts/compare_norm.sh ln`, two threads).
const BLOCKS_PER_THREAD: usize = 8;

/// The statistics batch norm normalises by.
pub(crate) enum Stats<'a, T> {
    /// The batch's own (training): mean and biased variance over every dim but 1.
    Batch,
    /// Given per channel (evaluation with running statistics): constants.
    Given { mean: &'a [T], var: &'a [T] },
}

/// Batch statistics as the forward found them: per channel mean and biased variance.
pub(crate) struct BatchStats {
    pub(crate) mean: Vec<f64>,
    pub(crate) var: Vec<f64>,
    /// Elements per channel.
    pub(crate) count: usize,
}

/// `x̂·w + b` per channel (dim 1) of `x` `[N, C, *]`, `x̂` normalised by `stats`; the
/// batch statistics when `stats` is [`Stats::Batch`].
pub(crate) fn batch_norm<T: Element>(
    x: &Tensor<T>,
    weight: Option<&Tensor<T>>,
    bias: Option<&Tensor<T>>,
    stats: Stats<'_, T>,
    eps: f64,
) -> Result<(Tensor<T>, Option<BatchStats>)> {
    let shape = x.shape().to_vec();
    if shape.len() < 2 {
        return Err(Error::shape("batch_norm", format!("input {shape:?} has no channel dim (expected [N, C, *])")));
    }
    let (n, c) = (shape[0], shape[1]);
    let s: usize = shape[2..].iter().product();
    for (what, t) in [("weight", weight), ("bias", bias)] {
        if let Some(t) = t
            && t.shape() != [c]
        {
            return Err(Error::shape("batch_norm", format!("{what} {:?} for {c} channels of input {shape:?}", t.shape())));
        }
    }
    let batch = matches!(stats, Stats::Batch);
    if let Stats::Given { mean, var } = &stats
        && (mean.len() != c || var.len() != c)
    {
        return Err(Error::shape("batch_norm", format!("running stats of {} and {} for {c} channels", mean.len(), var.len())));
    }
    if batch && n * s <= 1 {
        return Err(Error::invalid("batch_norm", format!("expected more than 1 value per channel when training, got input {shape:?}")));
    }
    let xv = x.value();
    let xs = xv.as_standard_layout();
    let xs = xs.as_slice().expect("standard layout");
    let (mean, var): (Vec<f64>, Vec<f64>) = match &stats {
        Stats::Batch => channel_stats(xs, n, c, s),
        Stats::Given { mean, var } => (mean.iter().map(|&m| wide(m)).collect(), var.iter().map(|&v| wide(v)).collect()),
    };
    let rstd: Vec<T> = var.iter().map(|&v| T::of(1.0 / (v + eps).sqrt())).collect();
    let w = weight.map(|w| w.to_vec());
    let b = bias.map(|b| b.to_vec());
    let scale: Vec<T> = (0..c).map(|k| rstd[k] * w.as_ref().map_or(T::one(), |w| w[k])).collect();
    let shift: Vec<T> = (0..c).map(|k| b.as_ref().map_or(T::zero(), |b| b[k]) - T::of(mean[k]) * scale[k]).collect();
    let mut out = crate::array::pool::take_overwritten::<T>(xs.len());
    if s > 0 {
        par_blocks(&mut out, s, xs.len() >= PARALLEL_MIN_LEN, |i, y| {
            let k = i % c;
            run_widest(&mut Affine { x: &xs[i * s..(i + 1) * s], y, scale: scale[k], shift: shift[k] });
        });
    }
    let value = ArrayD::from_shape_vec(IxDyn(&shape), out).expect("one per element");
    let found = batch.then(|| BatchStats { mean: mean.clone(), var, count: n * s });
    let mean: Vec<T> = mean.into_iter().map(T::of).collect();
    let mut inputs = vec![x];
    inputs.extend(weight);
    inputs.extend(bias);
    let (has_w, has_b) = (weight.is_some(), bias.is_some());
    let y = Tensor::from_op_arc(value.into_shared(), &inputs, move || Box::new(BatchNormRule { mean, rstd, batch, has_w, has_b, eps }));
    Ok((y, found))
}

fn wide<T: Element>(v: T) -> f64 {
    v.to_f64().unwrap_or(f64::NAN)
}

/// Mean and biased variance per channel of `xs` `[n, c, s]`: two passes per channel (the
/// second over data the first brought into cache), partial sums in `T`, totals in f64.
fn channel_stats<T: Element>(xs: &[T], n: usize, c: usize, s: usize) -> (Vec<f64>, Vec<f64>) {
    let count = (n * s) as f64;
    let one = |k: usize| {
        let mut st = ChannelStats { xs, n, c, s, k, count, mean: 0.0, var: 0.0 };
        run_widest(&mut st);
        (st.mean, st.var)
    };
    if xs.len() >= PARALLEL_MIN_LEN && c > 1 { team::map_collect(c, one).into_iter().unzip() } else { (0..c).map(one).unzip() }
}

struct ChannelStats<'a, T> {
    xs: &'a [T],
    n: usize,
    c: usize,
    s: usize,
    k: usize,
    count: f64,
    mean: f64,
    var: f64,
}

impl<T: Element> Body for ChannelStats<'_, T> {
    #[inline(always)]
    fn run(&mut self) {
        let block = |i: usize| &self.xs[(i * self.c + self.k) * self.s..(i * self.c + self.k + 1) * self.s];
        let total: f64 = (0..self.n).map(|i| wide(lane_sum(block(i)))).sum();
        self.mean = total / self.count;
        let m = T::of(self.mean);
        let squares: f64 = (0..self.n).map(|i| wide(lane_sum_sq_dev(block(i), m))).sum();
        self.var = squares / self.count;
    }
}

/// `Σ (x − m)²` in [`LANES`] partial sums.
#[inline(always)]
fn lane_sum_sq_dev<T: Element>(xs: &[T], m: T) -> T {
    const LANES: usize = 16;
    let mut acc = [T::zero(); LANES];
    let mut chunks = xs.chunks_exact(LANES);
    for ch in &mut chunks {
        for k in 0..LANES {
            let d = ch[k] - m;
            acc[k] = acc[k] + d * d;
        }
    }
    let tail = chunks.remainder().iter().fold(T::zero(), |a, &x| a + (x - m) * (x - m));
    acc.into_iter().fold(tail, |a, b| a + b)
}

/// `(Σ g, Σ g·(x − m))` in [`LANES`] partial sums each.
#[inline(always)]
fn lane_sum_dot_dev<T: Element>(g: &[T], xs: &[T], m: T) -> (T, T) {
    const LANES: usize = 16;
    let (mut s0, mut s1) = ([T::zero(); LANES], [T::zero(); LANES]);
    let (mut gc, mut xc) = (g.chunks_exact(LANES), xs.chunks_exact(LANES));
    for (g, x) in (&mut gc).zip(&mut xc) {
        for k in 0..LANES {
            s0[k] = s0[k] + g[k];
            s1[k] = s1[k] + g[k] * (x[k] - m);
        }
    }
    let (mut t0, mut t1) = (T::zero(), T::zero());
    for (&g, &x) in gc.remainder().iter().zip(xc.remainder()) {
        t0 = t0 + g;
        t1 = t1 + g * (x - m);
    }
    (s0.into_iter().fold(t0, |a, b| a + b), s1.into_iter().fold(t1, |a, b| a + b))
}

/// `y = x·scale + shift`.
struct Affine<'a, T> {
    x: &'a [T],
    y: &'a mut [T],
    scale: T,
    shift: T,
}

impl<T: Element> Body for Affine<'_, T> {
    #[inline(always)]
    fn run(&mut self) {
        for (y, &x) in self.y.iter_mut().zip(self.x) {
            *y = x * self.scale + self.shift;
        }
    }
}

/// `fill(i, block)` for every `width`-element block of `out`, split across threads when
/// `parallel`.
fn par_blocks<T: Element>(out: &mut [T], width: usize, parallel: bool, fill: impl Fn(usize, &mut [T]) + Sync) {
    if parallel && rayon::current_num_threads() > 1 {
        team::for_each_chunk_mut(out, width, fill);
    } else {
        out.chunks_mut(width).enumerate().for_each(|(i, y)| fill(i, y));
    }
}

struct BatchNormRule<T> {
    mean: Vec<T>,
    rstd: Vec<T>,
    batch: bool,
    has_w: bool,
    has_b: bool,
    eps: f64,
}

impl<T: Element> BatchNormRule<T> {
    /// The fused first-order backward: per channel `Σ gy` and `Σ gy·x̂`, then `gx`.
    fn fused(&self, x: &Tensor<T>, w: Option<&Tensor<T>>, gy: &Tensor<T>) -> Vec<Option<Tensor<T>>> {
        let shape = x.shape().to_vec();
        let (n, c) = (shape[0], shape[1]);
        let s: usize = shape[2..].iter().product();
        let (xv, gv) = (x.value(), gy.value());
        let (xs, gs) = (xv.as_standard_layout(), gv.as_standard_layout());
        let (xs, gs) = (xs.as_slice().expect("standard layout"), gs.as_slice().expect("standard layout"));
        let parallel = xs.len() >= PARALLEL_MIN_LEN;
        let sums = |k: usize| {
            let mut acc = ChannelGradSums { xs, gs, n, c, s, k, m: self.mean[k], sum: 0.0, dot: 0.0 };
            run_widest(&mut acc);
            (acc.sum, acc.dot * wide(self.rstd[k]))
        };
        let (sum_gy, sum_gy_xhat): (Vec<f64>, Vec<f64>) =
            if parallel && c > 1 { team::map_collect(c, sums).into_iter().unzip() } else { (0..c).map(sums).unzip() };
        let wv: Vec<T> = w.map_or_else(|| vec![T::one(); c], |w| w.to_vec());
        let count = (n * s) as f64;
        // gx = a·gy + b·x + d per channel, with a = w·r and, with batch statistics,
        // b = −a·r·mean(gy·x̂), d = −a·(mean(gy) − m·r·mean(gy·x̂)).
        let coef: Vec<(T, T, T)> = (0..c)
            .map(|k| {
                let (r, a) = (wide(self.rstd[k]), wide(wv[k]) * wide(self.rstd[k]));
                if self.batch {
                    let (mg, mgx) = (sum_gy[k] / count, sum_gy_xhat[k] / count);
                    let b = -a * r * mgx;
                    let d = -a * mg - b * wide(self.mean[k]);
                    (T::of(a), T::of(b), T::of(d))
                } else {
                    (T::of(a), T::zero(), T::zero())
                }
            })
            .collect();
        let mut out = crate::array::pool::take_overwritten::<T>(xs.len());
        if s > 0 {
            par_blocks(&mut out, s, parallel, |i, gx| {
                let (a, b, d) = coef[i % c];
                let at = i * s..(i + 1) * s;
                run_widest(&mut GradBlock { x: &xs[at.clone()], gy: &gs[at], gx, a, b, d });
            });
        }
        let gx = Tensor::from(ArrayD::from_shape_vec(IxDyn(&shape), out).expect("one per element"));
        let per_channel = |v: &[f64]| Tensor::from(ArrayD::from_shape_vec(IxDyn(&[c]), v.iter().map(|&v| T::of(v)).collect()).expect("c"));
        let mut grads = vec![Some(gx)];
        if self.has_w {
            grads.push(Some(per_channel(&sum_gy_xhat)));
        }
        if self.has_b {
            grads.push(Some(per_channel(&sum_gy)));
        }
        grads
    }

    /// The same formulas from recorded ops, differentiable in `x`, `w` and `gy`.
    fn composed(&self, x: &Tensor<T>, w: Option<&Tensor<T>>, gy: &Tensor<T>) -> Result<Vec<Option<Tensor<T>>>> {
        let nd = x.ndim();
        let c = x.shape()[1];
        let dims: Vec<isize> = std::iter::once(0).chain(2..nd as isize).collect();
        let mut per_channel = vec![1isize; nd];
        per_channel[1] = c as isize;
        let constant = |v: &[T]| Tensor::<T>::from(ArrayD::from_shape_vec(IxDyn(&[c]), v.to_vec()).expect("c")).reshape(&per_channel);
        let (xhat, rstd) = if self.batch {
            let mean = x.mean_dims(&dims, true)?;
            let d = x.sub(&mean)?;
            let var = d.mul(&d)?.mean_dims(&dims, true)?;
            let rstd = var.add_scalar(T::of(self.eps)).pow(T::of(-0.5));
            (d.mul(&rstd)?, rstd)
        } else {
            let rstd = constant(&self.rstd)?;
            (x.sub(&constant(&self.mean)?)?.mul(&rstd)?, rstd)
        };
        let g = match w {
            Some(w) => gy.mul(&w.reshape(&per_channel)?)?,
            None => gy.clone(),
        };
        let gx = if self.batch {
            let centred = g.sub(&g.mean_dims(&dims, true)?)?;
            centred.sub(&xhat.mul(&g.mul(&xhat)?.mean_dims(&dims, true)?)?)?.mul(&rstd)?
        } else {
            g.mul(&rstd)?
        };
        let mut grads = vec![Some(gx)];
        if self.has_w {
            grads.push(Some(gy.mul(&xhat)?.sum_dims(&dims, false)?));
        }
        if self.has_b {
            grads.push(Some(gy.sum_dims(&dims, false)?));
        }
        Ok(grads)
    }
}

struct ChannelGradSums<'a, T> {
    xs: &'a [T],
    gs: &'a [T],
    n: usize,
    c: usize,
    s: usize,
    k: usize,
    m: T,
    sum: f64,
    dot: f64,
}

impl<T: Element> Body for ChannelGradSums<'_, T> {
    #[inline(always)]
    fn run(&mut self) {
        for i in 0..self.n {
            let at = (i * self.c + self.k) * self.s..(i * self.c + self.k + 1) * self.s;
            let (sum, dot) = lane_sum_dot_dev(&self.gs[at.clone()], &self.xs[at], self.m);
            self.sum += wide(sum);
            self.dot += wide(dot);
        }
    }
}

/// `gx = a·gy + b·x + d`.
struct GradBlock<'a, T> {
    x: &'a [T],
    gy: &'a [T],
    gx: &'a mut [T],
    a: T,
    b: T,
    d: T,
}

impl<T: Element> Body for GradBlock<'_, T> {
    #[inline(always)]
    fn run(&mut self) {
        for ((gx, &g), &x) in self.gx.iter_mut().zip(self.gy).zip(self.x) {
            *gx = self.a * g + self.b * x + self.d;
        }
    }
}

impl<T: Element> OpRule<T> for BatchNormRule<T> {
    fn name(&self) -> &'static str {
        "batch_norm"
    }

    fn backward(&self, inputs: &[Tensor<T>], _: &Tensor<T>, gy: &Tensor<T>) -> Vec<Option<Tensor<T>>> {
        let w = self.has_w.then(|| &inputs[1]);
        if is_grad_enabled() {
            self.composed(&inputs[0], w, gy).expect("shapes checked by the forward")
        } else {
            self.fused(&inputs[0], w, gy)
        }
    }
}

/// `x̂·w + b` over rows of `width` contiguous elements (the trailing dims of `x`), `x̂`
/// normalised by each row's mean and biased variance; `weight` and `bias` are `[width]`.
pub(crate) fn layer_norm<T: Element>(
    x: &Tensor<T>,
    width: usize,
    weight: Option<&Tensor<T>>,
    bias: Option<&Tensor<T>>,
    eps: f64,
) -> Result<Tensor<T>> {
    let shape = x.shape().to_vec();
    if width == 0 || !x.len().is_multiple_of(width) {
        return Err(Error::shape("layer_norm", format!("rows of {width} elements in input {shape:?}")));
    }
    for (what, t) in [("weight", weight), ("bias", bias)] {
        if let Some(t) = t
            && t.shape() != [width]
        {
            return Err(Error::shape("layer_norm", format!("{what} {:?} for rows of {width}", t.shape())));
        }
    }
    let xv = x.value();
    let xs = xv.as_standard_layout();
    let xs = xs.as_slice().expect("standard layout");
    let rows = xs.len() / width;
    let w = weight.map(|w| w.to_vec());
    let b = bias.map(|b| b.to_vec());
    let mut out = crate::array::pool::take_overwritten::<T>(xs.len());
    let mut stats = vec![(T::zero(), T::zero()); rows];
    let fill = |first: usize, out: &mut [T], stats: &mut [(T, T)]| {
        run_widest(&mut NormRows {
            xs: &xs[first * width..first * width + out.len()],
            out,
            stats,
            width,
            w: w.as_deref(),
            b: b.as_deref(),
            eps: T::of(eps),
        });
    };
    let threads = rayon::current_num_threads();
    if rows > 1 && xs.len() >= PARALLEL_MIN_LEN && threads > 1 {
        let block = rows.div_ceil(BLOCKS_PER_THREAD * threads);
        let blocks: Vec<_> = out.chunks_mut(block * width).zip(stats.chunks_mut(block)).enumerate().collect();
        team::map_items(blocks, |(k, (out, stats))| fill(k * block, out, stats));
    } else if rows > 0 {
        fill(0, &mut out, &mut stats);
    }
    let value = ArrayD::from_shape_vec(IxDyn(&shape), out).expect("one per element");
    let mut inputs = vec![x];
    inputs.extend(weight);
    inputs.extend(bias);
    let (has_w, has_b) = (weight.is_some(), bias.is_some());
    Ok(Tensor::from_op_arc(value.into_shared(), &inputs, move || Box::new(LayerNormRule { stats, width, has_w, has_b, eps })))
}

/// Each row's mean and `1/√(σ² + ε)`, then `y = (x − μ)·r·w + b`.
struct NormRows<'a, T> {
    xs: &'a [T],
    out: &'a mut [T],
    stats: &'a mut [(T, T)],
    width: usize,
    w: Option<&'a [T]>,
    b: Option<&'a [T]>,
    eps: T,
}

impl<T: Element> Body for NormRows<'_, T> {
    #[inline(always)]
    fn run(&mut self) {
        let n = T::of(self.width as f64);
        for ((x, y), st) in self.xs.chunks_exact(self.width).zip(self.out.chunks_exact_mut(self.width)).zip(self.stats.iter_mut()) {
            let mean = lane_sum(x) / n;
            let r = T::one() / (lane_sum_sq_dev(x, mean) / n + self.eps).sqrt();
            *st = (mean, r);
            match (self.w, self.b) {
                (Some(w), Some(b)) => {
                    for (((y, &x), &w), &b) in y.iter_mut().zip(x).zip(w).zip(b) {
                        *y = (x - mean) * r * w + b;
                    }
                }
                (Some(w), None) => {
                    for ((y, &x), &w) in y.iter_mut().zip(x).zip(w) {
                        *y = (x - mean) * r * w;
                    }
                }
                _ => {
                    for (y, &x) in y.iter_mut().zip(x) {
                        *y = (x - mean) * r;
                    }
                }
            }
            if let (None, Some(b)) = (self.w, self.b) {
                for (y, &b) in y.iter_mut().zip(b) {
                    *y = *y + b;
                }
            }
        }
    }
}

struct LayerNormRule<T> {
    stats: Vec<(T, T)>,
    width: usize,
    has_w: bool,
    has_b: bool,
    eps: f64,
}

impl<T: Element> LayerNormRule<T> {
    /// The fused first-order backward: `gx` row by row, `gw` and `gb` as per-block partial
    /// column sums added at the end.
    fn fused(&self, x: &Tensor<T>, w: Option<&Tensor<T>>, gy: &Tensor<T>) -> Vec<Option<Tensor<T>>> {
        let width = self.width;
        let (xv, gv) = (x.value(), gy.value());
        let (xs, gs) = (xv.as_standard_layout(), gv.as_standard_layout());
        let (xs, gs) = (xs.as_slice().expect("standard layout"), gs.as_slice().expect("standard layout"));
        let rows = xs.len() / width;
        let wv = w.map(|w| w.to_vec());
        let mut out = crate::array::pool::take_overwritten::<T>(xs.len());
        let columns = self.has_w || self.has_b;
        let fill = |first: usize, gx: &mut [T]| {
            let at = first * width..first * width + gx.len();
            let mut body = NormGradRows {
                xs: &xs[at.clone()],
                gs: &gs[at],
                gx,
                stats: &self.stats[first..],
                width,
                w: wv.as_deref(),
                gw: if columns { vec![T::zero(); width] } else { Vec::new() },
                gb: if columns { vec![T::zero(); width] } else { Vec::new() },
            };
            run_widest(&mut body);
            (body.gw, body.gb)
        };
        let threads = rayon::current_num_threads();
        let partials: Vec<(Vec<T>, Vec<T>)> = if rows > 1 && xs.len() >= PARALLEL_MIN_LEN && threads > 1 {
            let block = rows.div_ceil(BLOCKS_PER_THREAD * threads);
            team::map_items(out.chunks_mut(block * width).enumerate().collect(), |(k, gx)| fill(k * block, gx))
        } else if rows > 0 {
            vec![fill(0, &mut out)]
        } else {
            vec![(vec![T::zero(); width], vec![T::zero(); width])]
        };
        let gx = Tensor::from(ArrayD::from_shape_vec(IxDyn(x.shape()), out).expect("one per element"));
        let total = |bias: bool| {
            let mut sum = vec![T::zero(); width];
            for (gw, gb) in &partials {
                for (s, &v) in sum.iter_mut().zip(if bias { gb } else { gw }) {
                    *s = *s + v;
                }
            }
            sum
        };
        let mut grads = vec![Some(gx)];
        if self.has_w {
            grads.push(Some(Tensor::from(ArrayD::from_shape_vec(IxDyn(&[width]), total(false)).expect("width"))));
        }
        if self.has_b {
            grads.push(Some(Tensor::from(ArrayD::from_shape_vec(IxDyn(&[width]), total(true)).expect("width"))));
        }
        grads
    }

    /// The same formulas from recorded ops, differentiable in `x`, `w` and `gy`.
    fn composed(&self, x: &Tensor<T>, w: Option<&Tensor<T>>, b: Option<&Tensor<T>>, gy: &Tensor<T>) -> Result<Vec<Option<Tensor<T>>>> {
        let rows = [-1, self.width as isize];
        let (xr, gr) = (x.reshape(&rows)?, gy.reshape(&rows)?);
        let mean = xr.mean_dims(&[1], true)?;
        let d = xr.sub(&mean)?;
        let rstd = d.mul(&d)?.mean_dims(&[1], true)?.add_scalar(T::of(self.eps)).pow(T::of(-0.5));
        let xhat = d.mul(&rstd)?;
        let g = match w {
            Some(w) => gr.mul(&w.reshape(&[self.width as isize])?)?,
            None => gr.clone(),
        };
        let centred = g.sub(&g.mean_dims(&[1], true)?)?;
        let gx = centred.sub(&xhat.mul(&g.mul(&xhat)?.mean_dims(&[1], true)?)?)?.mul(&rstd)?;
        let mut grads = vec![Some(gx.reshape(&x.shape().iter().map(|&d| d as isize).collect::<Vec<_>>())?)];
        let as_shape_of = |t: Tensor<T>, like: &Tensor<T>| t.reshape(&like.shape().iter().map(|&d| d as isize).collect::<Vec<_>>());
        if let Some(w) = w {
            grads.push(Some(as_shape_of(gr.mul(&xhat)?.sum_dims(&[0], false)?, w)?));
        }
        if let Some(b) = b {
            grads.push(Some(as_shape_of(gr.sum_dims(&[0], false)?, b)?));
        }
        Ok(grads)
    }
}

/// Per row `g = gy·w`, `gx = r·(g − mean(g) − x̂·mean(g·x̂))`; `gw += gy·x̂`, `gb += gy`.
struct NormGradRows<'a, T> {
    xs: &'a [T],
    gs: &'a [T],
    gx: &'a mut [T],
    stats: &'a [(T, T)],
    width: usize,
    w: Option<&'a [T]>,
    gw: Vec<T>,
    gb: Vec<T>,
}

impl<T: Element> Body for NormGradRows<'_, T> {
    #[inline(always)]
    fn run(&mut self) {
        let width = self.width;
        let n = T::of(width as f64);
        let rows = self.xs.chunks_exact(width).zip(self.gs.chunks_exact(width)).zip(self.gx.chunks_exact_mut(width));
        for (((x, gy), gx), &(mean, r)) in rows.zip(self.stats) {
            // gx's row first holds g = gy·w.
            match self.w {
                Some(w) => {
                    for ((g, &gy), &w) in gx.iter_mut().zip(gy).zip(w) {
                        *g = gy * w;
                    }
                }
                None => gx.copy_from_slice(gy),
            }
            let (sum_g, dot) = lane_sum_dot_dev(gx, x, mean);
            let (mg, mgx) = (sum_g / n, dot * r / n);
            for (g, &x) in gx.iter_mut().zip(x) {
                let xhat = (x - mean) * r;
                *g = r * (*g - mg - xhat * mgx);
            }
            if !self.gw.is_empty() {
                for (((gw, gb), &gy), &x) in self.gw.iter_mut().zip(self.gb.iter_mut()).zip(gy).zip(x) {
                    *gw = *gw + gy * (x - mean) * r;
                    *gb = *gb + gy;
                }
            }
        }
    }
}

impl<T: Element> OpRule<T> for LayerNormRule<T> {
    fn name(&self) -> &'static str {
        "layer_norm"
    }

    fn backward(&self, inputs: &[Tensor<T>], _: &Tensor<T>, gy: &Tensor<T>) -> Vec<Option<Tensor<T>>> {
        let w = self.has_w.then(|| &inputs[1]);
        let b = self.has_b.then(|| &inputs[1 + self.has_w as usize]);
        if is_grad_enabled() {
            self.composed(&inputs[0], w, b, gy).expect("shapes checked by the forward")
        } else {
            self.fused(&inputs[0], w, gy)
        }
    }
}

pub(crate) const OPS: &[OpInfo] = &[
    // Rows of 5 with an affine, and rows of 3 without.
    OpInfo::new(
        "layer_norm",
        || vec![randn(&[3, 5], 1), randn(&[5], 2), randn(&[5], 3)],
        |v| {
            layer_norm(&v[0], 5, Some(&v[1]), Some(&v[2]), 1e-5)?
                .add(&layer_norm(&v[0].reshape(&[5, 3])?, 3, None, None, 1e-5)?.reshape(&[3, 5])?)
        },
    ),
    // Batch statistics (affine) over [N, C, L], and given statistics over [N, C].
    OpInfo::new(
        "batch_norm",
        || vec![randn(&[3, 2, 4], 4), randn(&[2], 5), randn(&[2], 6)],
        |v| {
            let (y, _) = batch_norm(&v[0], Some(&v[1]), Some(&v[2]), Stats::Batch, 1e-5)?;
            let given = Stats::Given { mean: &[0.3, -0.2], var: &[1.5, 0.7] };
            let (z, _) = batch_norm(&v[0].sum_dims(&[2], false)?, Some(&v[1]), None, given, 1e-5)?;
            y.sum_dims(&[2], false)?.add(&z)
        },
    ),
];

#[cfg(test)]
mod tests {
    use super::*;
    use crate::autograd::grad;

    fn on_threads<R: Send>(threads: usize, f: impl FnOnce() -> R + Send) -> R {
        rayon::ThreadPoolBuilder::new().num_threads(threads).build().expect("a pool").install(f)
    }

    /// The gradients of `f` at `inputs` for the cotangent `gy`: by the fused first-order
    /// passes, and by the composed rule (`create_graph` records the backward).
    fn fused_and_composed(f: impl Fn(&[Tensor<f64>]) -> Tensor<f64>, inputs: &[Tensor<f64>], gy: &Tensor<f64>) -> [Vec<Vec<f64>>; 2] {
        let wrt: Vec<&Tensor<f64>> = inputs.iter().collect();
        [false, true].map(|create_graph| {
            let y = f(inputs);
            grad(&[&y], &wrt, Some(&[gy]), create_graph).expect("a graph").iter().map(Tensor::to_vec).collect()
        })
    }

    fn assert_close(a: &[Vec<f64>], b: &[Vec<f64>], what: &str) {
        for (a, b) in a.iter().zip(b) {
            let worst = a.iter().zip(b).map(|(x, y)| (x - y).abs() / (1.0 + y.abs())).fold(0.0, f64::max);
            assert!(worst < 1e-10, "{what}: fused and composed differ by {worst:e}");
        }
    }

    fn leaf(shape: &[usize], seed: u64) -> Tensor<f64> {
        randn(shape, seed).requires_grad_(true).expect("a leaf")
    }

    /// Batch and given statistics, with and without an affine, on an input split across
    /// threads (64·32·40 elements) and on a small one, with one and two threads.
    #[test]
    fn batch_norm_fused_backward_matches_the_composed_rule() {
        for (shape, threads) in [(vec![64, 32, 40], 1), (vec![64, 32, 40], 2), (vec![5, 3], 2)] {
            let c = shape[1];
            let (x, w, b) = (leaf(&shape, 1), leaf(&[c], 2), leaf(&[c], 3));
            let gy = randn(&shape, 4);
            let mean: Vec<f64> = (0..c).map(|k| k as f64 * 0.1).collect();
            let var: Vec<f64> = (0..c).map(|k| 0.5 + k as f64 * 0.2).collect();
            on_threads(threads, || {
                let batch = |v: &[Tensor<f64>]| batch_norm(&v[0], Some(&v[1]), Some(&v[2]), Stats::Batch, 1e-5).unwrap().0;
                let [fused, composed] = fused_and_composed(batch, &[x.clone(), w.clone(), b.clone()], &gy);
                assert_close(&fused, &composed, "batch statistics");
                let given =
                    |v: &[Tensor<f64>]| batch_norm(&v[0], Some(&v[1]), None, Stats::Given { mean: &mean, var: &var }, 1e-5).unwrap().0;
                let [fused, composed] = fused_and_composed(given, &[x.clone(), w.clone()], &gy);
                assert_close(&fused, &composed, "given statistics");
                let plain = |v: &[Tensor<f64>]| batch_norm(&v[0], None, None, Stats::Batch, 1e-5).unwrap().0;
                let [fused, composed] = fused_and_composed(plain, std::slice::from_ref(&x), &gy);
                assert_close(&fused, &composed, "no affine");
            });
        }
    }

    /// Rows of 512 (split across threads) and of 7, with each affine combination.
    #[test]
    fn layer_norm_fused_backward_matches_the_composed_rule() {
        for (rows, width, threads) in [(300, 512, 1), (300, 512, 2), (4, 7, 2)] {
            let (x, w, b) = (leaf(&[rows, width], 5), leaf(&[width], 6), leaf(&[width], 7));
            let gy = randn(&[rows, width], 8);
            on_threads(threads, || {
                let both = |v: &[Tensor<f64>]| layer_norm(&v[0], width, Some(&v[1]), Some(&v[2]), 1e-5).unwrap();
                let [fused, composed] = fused_and_composed(both, &[x.clone(), w.clone(), b.clone()], &gy);
                assert_close(&fused, &composed, "weight and bias");
                let weight = |v: &[Tensor<f64>]| layer_norm(&v[0], width, Some(&v[1]), None, 1e-5).unwrap();
                let [fused, composed] = fused_and_composed(weight, &[x.clone(), w.clone()], &gy);
                assert_close(&fused, &composed, "weight only");
                let bias = |v: &[Tensor<f64>]| layer_norm(&v[0], width, None, Some(&v[1]), 1e-5).unwrap();
                let [fused, composed] = fused_and_composed(bias, &[x.clone(), b.clone()], &gy);
                assert_close(&fused, &composed, "bias only");
            });
        }
    }

    /// The f32 passes (sixteen partial sums, totals in f64 for batch norm) against the f64
    /// ones on inputs with a large common offset, where a naive one-pass variance fails.
    #[test]
    fn f32_passes_match_f64_on_offset_data() {
        let x64 = randn(&[16, 8, 1000], 9).add_scalar(100.0);
        let x32 = Tensor::<f32>::from(x64.value().mapv(|v| v as f32));
        let (y64, _) = batch_norm(&x64, None, None, Stats::Batch, 1e-5).unwrap();
        let (y32, _) = batch_norm(&x32, None, None, Stats::Batch, 1e-5).unwrap();
        let worst = y64.to_vec().iter().zip(y32.to_vec()).map(|(a, b)| (a - b as f64).abs()).fold(0.0, f64::max);
        assert!(worst < 1e-3, "batch norm f32 vs f64: {worst:e}");
        let z64 = layer_norm(&x64, 1000, None, None, 1e-5).unwrap();
        let z32 = layer_norm(&x32, 1000, None, None, 1e-5).unwrap();
        let worst = z64.to_vec().iter().zip(z32.to_vec()).map(|(a, b)| (a - b as f64).abs()).fold(0.0, f64::max);
        assert!(worst < 1e-3, "layer norm f32 vs f64: {worst:e}");
    }
}
