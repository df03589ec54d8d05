//! Softmax and log-softmax. Log-softmax is one op, `x - logsumexp(x)` computed stably (the
//! row's largest element is factored out), so it stays finite for logits of any size, with
//! the backward rule `gx = gy - softmax(x) · Σ gy`; softmax is its `exp`.
//!
//! A row of the last dim of a contiguous tensor (the class dim of a classifier's logits)
//! is one pass for its maximum, one for `exp(x - max)` and their sum, one for the output,
//! in loops the compiler vectorises, where the composition of `logsumexp`, `sub` and
//! their rules made several passes with a scalar `exp` per element
//! (`RAYON_NUM_THREADS=1 cargo bench --bench ops -- cross_entropy` times this op).

use super::normalize_dim;
use super::registry::{OpInfo, randn};
use crate::array::kernel::{Body, PARALLEL_MIN_LEN, run_widest};
use crate::autograd::{OpRule, is_grad_enabled};
use crate::error::Result;
use crate::tensor::{Element, Saves, Tensor};
use ndarray::{ArrayD, ArrayViewD, IxDyn};

impl<T: Element> Tensor<T> {
    /// `softmax(x)_i = exp(x_i) / Σ_j exp(x_j)` along `dim`, computed as
    /// `exp(log_softmax(x))`: finite for logits of any size.
    ///
    /// ```
    /// use nabla::prelude::*;
    /// let p = Tensor::from_vec(vec![1e4, 0.0], &[2])?.softmax(0)?;
    /// assert_eq!(p.to_vec(), vec![1.0, 0.0]);
    /// # Ok::<(), nabla::Error>(())
    /// ```
    pub fn softmax(&self, dim: isize) -> Result<Tensor<T>> {
        normalize_dim("softmax", dim, self.ndim())?;
        Ok(self.log_softmax(dim)?.exp())
    }

    /// `log_softmax(x)_i = x_i - log Σ_j exp(x_j)` along `dim`, with the row's maximum
    /// factored out of the sum, so it is finite where softmax underflows to 0 and for
    /// logits of any size; `dL/dx = gy - softmax(x) · Σ_j gy_j` (PyTorch's rule).
    ///
    /// ```
    /// use nabla::prelude::*;
    /// let lp = Tensor::<f64>::from_vec(vec![0.0, 0.0, 1e4], &[1, 3])?.log_softmax(1)?;
    /// assert_eq!(lp.to_vec(), vec![-1e4, -1e4, 0.0]);
    /// # Ok::<(), nabla::Error>(())
    /// ```
    pub fn log_softmax(&self, dim: isize) -> Result<Tensor<T>> {
        let dim = normalize_dim("log_softmax", dim, self.ndim())?;
        let value = along_rows(&self.value(), dim, |xs, width, out| {
            run_rows(xs.len() / width, width, width, out, |first, out| {
                let xs = &xs[first * width..first * width + out.len()];
                run_widest(&mut LogSoftmaxRows { xs, out, width });
            })
        });
        Ok(Tensor::from_op_saving(value.into_shared(), &[self], Saves::OUTPUT, move || Box::new(LogSoftmaxRule { dim })))
    }
}

/// `log Σ exp(x)` of each row of `xs` (`width` elements each), one value per row.
pub(super) fn logsumexp_rows<T: Element>(xs: &[T], width: usize) -> Vec<T> {
    let rows = xs.len() / width;
    let mut out = crate::array::pool::take_overwritten::<T>(rows);
    run_rows(rows, width, 1, &mut out, |first, out| {
        let xs = &xs[first * width..(first + out.len()) * width];
        run_widest(&mut LogSumExpRows { xs, out, width, exps: vec![T::zero(); width] });
    });
    out
}

/// `f(rows, width, out)` on the lanes of `x` along `dim` laid out as contiguous rows, and
/// the result (`out`, in that layout) in `x`'s shape. The last dim of a standard-layout
/// array is read in place; any other dim is moved last and copied first.
fn along_rows<T: Element>(x: &ArrayViewD<'_, T>, dim: usize, f: impl FnOnce(&[T], usize, &mut [T])) -> ArrayD<T> {
    if x.is_empty() {
        return ArrayD::zeros(x.raw_dim());
    }
    if x.ndim() == 0 {
        let mut out = [T::zero()];
        f(&[x[IxDyn(&[])]], 1, &mut out);
        return ArrayD::from_elem(IxDyn(&[]), out[0]);
    }
    let last = x.ndim() - 1;
    let mut perm: Vec<usize> = (0..x.ndim()).filter(|&d| d != dim).collect();
    perm.push(dim);
    let moved = x.view().permuted_axes(perm.clone());
    let rows = moved.as_standard_layout();
    let xs = rows.as_slice().expect("standard layout");
    let mut out = crate::array::pool::take_overwritten::<T>(xs.len());
    f(xs, x.shape()[dim], &mut out);
    let out = ArrayD::from_shape_vec(moved.raw_dim(), out).expect("one per element");
    if dim == last {
        return out;
    }
    let mut back = vec![0; perm.len()];
    for (k, &d) in perm.iter().enumerate() {
        back[d] = k;
    }
    out.permuted_axes(back).as_standard_layout().into_owned()
}

/// Fills `out` (`out_width` values per row of `width` inputs) a block of rows at a time,
/// `fill(first_row, block)`, the blocks split across threads when the input is large.
fn run_rows<T: Element>(rows: usize, width: usize, out_width: usize, out: &mut [T], fill: impl Fn(usize, &mut [T]) + Sync) {
    let threads = rayon::current_num_threads();
    if rows > 1 && rows * width >= PARALLEL_MIN_LEN && threads > 1 {
        let block = rows.div_ceil(threads);
        crate::array::kernel::team::for_each_chunk_mut(out, block * out_width, |k, out| fill(k * block, out));
    } else {
        fill(0, out);
    }
}

/// Independent accumulators per row: one running sum is a serial chain of additions (the
/// compiler keeps float additions in order), sixteen fill a vector register.
const LANES: usize = 16;

/// The largest element of `xs` other than NaN (a NaN makes its row's sum NaN anyway),
/// `-inf` for an empty slice.
#[inline(always)]
fn lane_max<T: Element>(xs: &[T]) -> T {
    let pick = |a: T, b: T| if b > a { b } else { a };
    let mut acc = [T::neg_infinity(); LANES];
    let mut chunks = xs.chunks_exact(LANES);
    for c in &mut chunks {
        for k in 0..LANES {
            acc[k] = pick(acc[k], c[k]);
        }
    }
    let tail = chunks.remainder().iter().fold(T::neg_infinity(), |a, &b| pick(a, b));
    acc.into_iter().fold(tail, pick)
}

/// `Σ xs`, in [`LANES`] partial sums.
#[inline(always)]
pub(super) fn lane_sum<T: Element>(xs: &[T]) -> T {
    let mut acc = [T::zero(); LANES];
    let mut chunks = xs.chunks_exact(LANES);
    for c in &mut chunks {
        for k in 0..LANES {
            acc[k] = acc[k] + c[k];
        }
    }
    let tail = chunks.remainder().iter().fold(T::zero(), |a, &b| a + b);
    acc.into_iter().fold(tail, |a, b| a + b)
}

/// `log Σ exp(x)` of one row, `exps` its room for `exp(x - max)`. A row whose maximum is
/// infinite is not shifted (`inf - inf` would be `NaN`): all `-inf` gives `-inf`, any
/// `+inf` gives `+inf`.
#[inline(always)]
fn row_logsumexp<T: Element>(x: &[T], exps: &mut [T]) -> T {
    let max = lane_max(x);
    let shift = if max.is_finite() { max } else { T::zero() };
    for (e, &x) in exps.iter_mut().zip(x) {
        *e = (x - shift).exp_v();
    }
    shift + lane_sum(exps).ln()
}

struct LogSoftmaxRows<'a, T> {
    xs: &'a [T],
    out: &'a mut [T],
    width: usize,
}

impl<T: Element> Body for LogSoftmaxRows<'_, T> {
    #[inline(always)]
    fn run(&mut self) {
        for (x, y) in self.xs.chunks_exact(self.width).zip(self.out.chunks_exact_mut(self.width)) {
            // The row's output is the room for its exponentials, then overwritten.
            let lse = row_logsumexp(x, y);
            for (y, &x) in y.iter_mut().zip(x) {
                *y = x - lse;
            }
        }
    }
}

struct LogSumExpRows<'a, T> {
    xs: &'a [T],
    out: &'a mut [T],
    width: usize,
    exps: Vec<T>,
}

impl<T: Element> Body for LogSumExpRows<'_, T> {
    #[inline(always)]
    fn run(&mut self) {
        for (x, o) in self.xs.chunks_exact(self.width).zip(self.out.iter_mut()) {
            *o = row_logsumexp(x, &mut self.exps);
        }
    }
}

/// `gx = gy - exp(y) · Σ gy` per row, from the output `y` and the cotangent `gy`.
struct LogSoftmaxGradRows<'a, T> {
    y: &'a [T],
    gy: &'a [T],
    out: &'a mut [T],
    width: usize,
}

impl<T: Element> Body for LogSoftmaxGradRows<'_, T> {
    #[inline(always)]
    fn run(&mut self) {
        let w = self.width;
        for ((y, gy), gx) in self.y.chunks_exact(w).zip(self.gy.chunks_exact(w)).zip(self.out.chunks_exact_mut(w)) {
            let total = lane_sum(gy);
            for ((gx, &y), &g) in gx.iter_mut().zip(y).zip(gy) {
                *gx = g - y.exp_v() * total;
            }
        }
    }
}

struct LogSoftmaxRule {
    dim: usize,
}

impl<T: Element> OpRule<T> for LogSoftmaxRule {
    fn name(&self) -> &'static str {
        "log_softmax"
    }

    fn backward(&self, _: &[Tensor<T>], y: &Tensor<T>, gy: &Tensor<T>) -> Vec<Option<Tensor<T>>> {
        let last = y.ndim().checked_sub(1);
        if !is_grad_enabled() && last == Some(self.dim) && gy.shape() == y.shape() {
            let (yv, gv) = (y.value(), gy.value());
            if let (Some(ys), Some(gs)) = (yv.as_slice(), gv.as_slice()) {
                let width = y.shape()[self.dim];
                let mut out = crate::array::pool::take_overwritten::<T>(ys.len());
                if let Some(rows) = ys.len().checked_div(width) {
                    run_rows(rows, width, width, &mut out, |first, out| {
                        let at = first * width..first * width + out.len();
                        run_widest(&mut LogSoftmaxGradRows { y: &ys[at.clone()], gy: &gs[at], out, width });
                    });
                }
                let gx = ArrayD::from_shape_vec(IxDyn(y.shape()), out).expect("one per element");
                return vec![Some(Tensor::from(gx))];
            }
        }
        // With recording on (so that the gradient is differentiable) or another layout.
        let total = gy.sum_dims(&[self.dim as isize], true).expect("dim checked by the forward");
        vec![Some(gy - &(&y.exp() * &total))]
    }
}

/// This family's entries in the [op registry](super::registry()).
pub(crate) const OPS: &[OpInfo] = &[
    // The last dim (the fused rows) and a leading one (moved last and copied).
    OpInfo::new("log_softmax", || vec![randn(&[3, 4], 1)], |v| v[0].log_softmax(-1)?.add(&v[0].log_softmax(0)?)),
];

#[cfg(test)]
mod tests {
    use crate::autograd::no_grad;
    use crate::tensor::Tensor;

    /// `log_softmax` of each row in f64, one element at a time: the reference.
    fn reference(xs: &[f32], width: usize) -> Vec<f64> {
        xs.chunks(width)
            .flat_map(|row| {
                let max = row.iter().fold(f64::NEG_INFINITY, |a, &b| a.max(b as f64));
                let lse = max + row.iter().map(|&x| (x as f64 - max).exp()).sum::<f64>().ln();
                row.iter().map(move |&x| x as f64 - lse)
            })
            .collect()
    }

    fn on_threads<R: Send>(threads: usize, f: impl FnOnce() -> R + Send) -> R {
        rayon::ThreadPoolBuilder::new().num_threads(threads).build().expect("a pool").install(f)
    }

    /// The f32 rows (vectorised `exp`, sixteen partial sums) against the f64 reference, at
    /// widths around the lane count, and on enough rows to be split across threads.
    #[test]
    fn f32_rows_match_the_f64_reference_at_every_width() {
        for (rows, width) in [(3, 1), (5, 7), (4, 16), (4, 17), (3, 33), (6, 100), (1200, 100)] {
            let x = Tensor::<f32>::randn(&[rows, width], &mut crate::rng(width as u64)).mul_scalar(8.0);
            let want = reference(&x.to_vec(), width);
            for threads in [1, 2] {
                let got = on_threads(threads, || no_grad(|| x.log_softmax(1).unwrap()).to_vec());
                for (k, (&g, &w)) in got.iter().zip(&want).enumerate() {
                    assert!((g as f64 - w).abs() <= 1e-5 * (1.0 + w.abs()), "{rows}x{width} on {threads}: [{k}] {g} vs {w}");
                }
                let lse = on_threads(threads, || x.logsumexp_dims(&[1], false).unwrap().to_vec());
                for (r, &l) in lse.iter().enumerate() {
                    let w = x.to_vec()[r * width] as f64 - want[r * width];
                    assert!((l as f64 - w).abs() <= 1e-5 * (1.0 + w.abs()), "logsumexp {rows}x{width} row {r}: {l} vs {w}");
                }
            }
        }
    }

    /// PyTorch's values: a row of `-inf` gives NaN, a `+inf` gives NaN there and `-inf`
    /// elsewhere, a NaN spreads over its row; the other rows are untouched.
    #[test]
    fn infinities_and_nan_stay_in_their_rows() {
        let (inf, nan) = (f32::INFINITY, f32::NAN);
        let mut xs = vec![-inf; 20];
        xs.extend([inf].iter().chain(&[0.0; 19]));
        xs.extend([nan].iter().chain(&[1.0; 19]));
        xs.extend((0..20).map(|k| k as f32));
        let y = Tensor::<f32>::from_vec(xs.clone(), &[4, 20]).unwrap().log_softmax(1).unwrap().to_vec();
        assert!(y[..20].iter().all(|v| v.is_nan()), "{:?}", &y[..20]);
        assert!(y[20].is_nan() && y[21..40].iter().all(|&v| v == -inf), "{:?}", &y[20..40]);
        assert!(y[40..60].iter().all(|v| v.is_nan()), "{:?}", &y[40..60]);
        // A 0-d tensor is one row of one element, as in PyTorch.
        assert_eq!(Tensor::<f32>::scalar(3.0).log_softmax(0).unwrap().to_vec(), vec![0.0]);
        assert!(Tensor::<f32>::scalar(inf).log_softmax(-1).unwrap().to_vec()[0].is_nan());
        let want = reference(&xs[60..], 20);
        assert!(y[60..].iter().zip(&want).all(|(&g, &w)| (g as f64 - w).abs() < 1e-5), "{:?}", &y[60..]);
    }

    /// The fused f32 backward equals PyTorch's rule `gy - exp(y) Σ gy` computed in f64.
    #[test]
    fn f32_fused_backward_matches_the_rule_in_f64() {
        for (rows, width) in [(3, 5), (4, 17), (1200, 100)] {
            let x = Tensor::<f32>::randn(&[rows, width], &mut crate::rng(7)).mul_scalar(3.0).with_requires_grad(true);
            let gy = Tensor::<f32>::randn(&[rows, width], &mut crate::rng(8));
            let y = x.log_softmax(-1).unwrap();
            let (yv, gv) = (y.to_vec(), gy.to_vec());
            for threads in [1, 2] {
                let gx = on_threads(threads, || crate::grad(&[&y], &[&x], Some(&[&gy]), false).unwrap().remove(0).to_vec());
                for r in 0..rows {
                    let at = r * width..(r + 1) * width;
                    let total: f64 = gv[at.clone()].iter().map(|&g| g as f64).sum();
                    for k in at {
                        let want = gv[k] as f64 - (yv[k] as f64).exp() * total;
                        assert!((gx[k] as f64 - want).abs() <= 1e-5 * (1.0 + total.abs()), "{rows}x{width} [{k}]: {} vs {want}", gx[k]);
                    }
                }
            }
        }
    }
}
