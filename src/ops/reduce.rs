//! Reductions over a list of dims: sum, mean, amax, amin, logsumexp; and `sum_to_shape`,
//! the reduction that undoes broadcasting.

use super::normalize_dims;
use super::registry::{OpInfo, randn, spread};
use crate::autograd::rule;
use crate::error::{Error, Result};
use crate::tensor::{Element, Saves, Tensor};
use ndarray::{ArrayD, Axis, IxDyn};

/// `shape` with each reduced dim set to 1 (the `keepdim` shape).
fn keepdim_shape(shape: &[usize], dims: &[usize]) -> Vec<usize> {
    shape.iter().enumerate().map(|(i, &n)| if dims.contains(&i) { 1 } else { n }).collect()
}

/// Reduces `x` over `dims` (sorted, distinct) with `fold` along one axis at a time.
fn reduce_array<T: Element>(
    x: &Tensor<T>,
    dims: &[usize],
    keepdim: bool,
    fold: impl Fn(ndarray::ArrayViewD<'_, T>, Axis) -> ArrayD<T>,
) -> ArrayD<T> {
    // The first fold reads the tensor in place; copying it first would cost a pass.
    let mut order = dims.iter().rev();
    let mut value = match order.next() {
        Some(&d) => fold(x.value(), Axis(d)),
        None => x.to_ndarray(),
    };
    for &d in order {
        value = fold(value.view(), Axis(d));
    }
    if keepdim { value.into_shape_clone(IxDyn(&keepdim_shape(x.shape(), dims))).expect("keepdim reshape") } else { value }
}

/// `v` summed over `axis`, as `ndarray`'s `sum_axis` (the same additions in the same order,
/// so the same bits), with fast paths for a row-major array. Summed over an axis with more
/// than one element after it, the sub-arrays along the axis are added in turn as flat
/// slices; otherwise each lane is a slice, summed as `sum_axis` sums it. `sum_axis` does
/// those additions through `IxDyn` views, whose per-call overhead dominates a bias
/// gradient's sum over many short rows (`cargo bench --bench ops -- w3_lstm_step` covers
/// one) and a small model's loss (`workloads w4`).
fn sum_axis<T: Element>(v: ndarray::ArrayViewD<'_, T>, axis: Axis) -> ArrayD<T> {
    let shape = v.shape();
    let inner: usize = shape.get(axis.index() + 1..).map_or(1, |tail| tail.iter().product());
    let Some(flat) = v.as_slice() else {
        return v.sum_axis(axis);
    };
    let (outer, len) = (shape[..axis.index()].iter().product::<usize>(), shape[axis.index()]);
    let mut out_shape = shape.to_vec();
    out_shape.remove(axis.index());
    if inner == 0 {
        return ArrayD::zeros(IxDyn(&out_shape));
    }
    if inner == 1 {
        // `sum_axis` sums each lane with `ArrayView1::sum` (an unrolled fold) when the axis
        // has the least stride (the last such axis among ties), and otherwise adds the
        // sub-arrays along it one by one, from zero.
        let strides = v.strides();
        let least =
            (0..strides.len()).rev().fold(strides.len() - 1, |best, i| if strides[i].abs() < strides[best].abs() { i } else { best });
        let lanes = v.ndim() == 1 || axis.index() == least;
        let out = (0..outer)
            .map(|o| {
                let lane = &flat[o * len..(o + 1) * len];
                if lanes { ndarray::aview1(lane).sum() } else { lane.iter().fold(T::zero(), |s, &x| s + x) }
            })
            .collect();
        return ArrayD::from_shape_vec(IxDyn(&out_shape), out).expect("the shape without the axis");
    }
    let mut out = vec![T::zero(); outer * inner];
    if len > 0 {
        for (acc, block) in out.chunks_exact_mut(inner).zip(flat.chunks_exact(len * inner)) {
            for row in block.chunks_exact(inner) {
                acc.iter_mut().zip(row).for_each(|(a, &x)| *a = *a + x);
            }
        }
    }
    ArrayD::from_shape_vec(IxDyn(&out_shape), out).expect("the shape without the axis")
}

/// `Σ (a − b)²` in eight partial sums (vector adds, and a shorter chain of roundings than
/// one running sum).
fn sum_of_squared_differences<T: Element>(a: &[T], b: &[T]) -> T {
    let mut lanes = [T::zero(); 8];
    let (ac, bc) = (a.chunks_exact(8), b.chunks_exact(8));
    let tail = ac.remainder().iter().zip(bc.remainder()).fold(T::zero(), |s, (&x, &y)| s + (x - y) * (x - y));
    for (x, y) in ac.zip(bc) {
        for ((lane, &x), &y) in lanes.iter_mut().zip(x).zip(y) {
            *lane = *lane + (x - y) * (x - y);
        }
    }
    lanes.iter().fold(T::zero(), |s, &l| s + l) + tail
}

/// `log Σ exp(x)` of one lane, shifted by its maximum.
fn lse<T: Element>(lane: impl Iterator<Item = T> + Clone) -> T {
    let m = lane.clone().fold(T::neg_infinity(), |a, b| if b > a || b.is_nan() { b } else { a });
    // With every element -inf (or the max infinite), shifting by it gives NaN.
    let shift = if m.is_finite() { m } else { T::zero() };
    shift + lane.map(|x| (x - shift).exp_v()).sum::<T>().ln()
}

impl<T: Element> Tensor<T> {
    /// The cotangent of a reduction brought back to `x`'s shape: reshaped to the keepdim
    /// shape, then broadcast.
    fn unreduce(gy: &Tensor<T>, x_shape: &[usize], dims: &[usize]) -> Tensor<T> {
        gy.reshape_to(&keepdim_shape(x_shape, dims)).expand_to(x_shape)
    }

    /// Sum of all elements, a 0-d tensor; `dL/dx = gy` everywhere.
    pub fn sum(&self) -> Tensor<T> {
        let all: Vec<isize> = (0..self.ndim() as isize).collect();
        self.sum_dims(&all, false).expect("all dims are valid")
    }

    /// Sum over `dims` (negative dims count from the end), keeping them as size 1 when
    /// `keepdim`; `dL/dx = gy` broadcast back over the summed dims. An empty `dims` reduces
    /// every dim, as PyTorch's `x.sum(dim=[])` does (NumPy's `axis=()` would reduce none);
    /// the same holds for the other `*_dims` reductions.
    ///
    /// ```
    /// use nabla::prelude::*;
    /// let x = Tensor::from_vec(vec![1.0, 2.0, 3.0, 4.0, 5.0, 6.0], &[2, 3])?;
    /// assert_eq!(x.sum_dims(&[1], false)?.to_vec(), vec![6.0, 15.0]);
    /// assert_eq!(x.sum_dims(&[0], true)?.shape(), &[1, 3]);
    /// # Ok::<(), nabla::Error>(())
    /// ```
    pub fn sum_dims(&self, dims: &[isize], keepdim: bool) -> Result<Tensor<T>> {
        let dims = normalize_dims("sum", dims, self.ndim())?;
        let value = reduce_array(self, &dims, keepdim, sum_axis);
        Ok(Tensor::from_op_saving(value.into_shared(), &[self], Saves::NOTHING, move || {
            Box::new(rule("sum", move |inputs: &[Tensor<T>], _: &Tensor<T>, gy: &Tensor<T>| {
                vec![Some(Tensor::unreduce(gy, inputs[0].shape(), &dims))]
            }))
        }))
    }

    /// Mean of all elements, a 0-d tensor.
    pub fn mean(&self) -> Tensor<T> {
        let all: Vec<isize> = (0..self.ndim() as isize).collect();
        self.mean_dims(&all, false).expect("all dims are valid")
    }

    /// Mean over `dims`: the sum divided by the number of elements reduced.
    pub fn mean_dims(&self, dims: &[isize], keepdim: bool) -> Result<Tensor<T>> {
        let count: usize = normalize_dims("mean", dims, self.ndim())?.iter().map(|&d| self.shape()[d]).product();
        Ok(self.sum_dims(dims, keepdim)?.div_scalar(T::of(count as f64)))
    }

    /// The index of the largest element along `dim`, as PyTorch's `argmax(dim, keepdim)`
    /// (`None`: the index into the flattened tensor, a 0-d array). The first of tied
    /// maxima; a `NaN` counts as the largest, as in PyTorch. Indices are not
    /// differentiable, so this returns them as an array, as [`Tensor::gather`] and
    /// [`Tensor::index_select`] take them. `Err` for a dim out of range, or an empty
    /// reduction.
    ///
    /// ```
    /// use nabla::prelude::*;
    /// let logits = Tensor::from_vec(vec![0.1, 2.0, -1.0, 3.0, 3.0, 0.0], &[2, 3])?;
    /// assert_eq!(logits.argmax(Some(1), false)?.into_raw_vec_and_offset().0, vec![1, 0]);
    /// assert_eq!(logits.argmin(None, false)?.into_raw_vec_and_offset().0, vec![2]);
    /// assert_eq!(logits.argmax(Some(0), true)?.shape(), &[1, 3]);
    /// # Ok::<(), nabla::Error>(())
    /// ```
    pub fn argmax(&self, dim: Option<isize>, keepdim: bool) -> Result<ArrayD<usize>> {
        self.arg_extremum("argmax", dim, keepdim, |a, b| a > b)
    }

    /// The index of the smallest element along `dim`; as [`Tensor::argmax`].
    pub fn argmin(&self, dim: Option<isize>, keepdim: bool) -> Result<ArrayD<usize>> {
        self.arg_extremum("argmin", dim, keepdim, |a, b| a < b)
    }

    fn arg_extremum(&self, op: &'static str, dim: Option<isize>, keepdim: bool, better: impl Fn(T, T) -> bool) -> Result<ArrayD<usize>> {
        // The first best element; the first NaN wins and ends the scan.
        let best = |lane: ndarray::ArrayViewD<'_, T>| -> usize {
            let mut lane = lane.iter().enumerate();
            let (mut best, mut b) = lane.next().map(|(i, &v)| (i, v)).expect("a non-empty lane");
            for (i, &v) in lane {
                if b.is_nan() {
                    break;
                }
                if v.is_nan() || better(v, b) {
                    (best, b) = (i, v);
                }
            }
            best
        };
        match dim {
            None => {
                if self.is_empty() {
                    return Err(Error::invalid(op, "an empty tensor has no extremum"));
                }
                // A view iterates in logical order: its position is the flat index.
                let index = best(self.value());
                let shape = if keepdim { vec![1; self.ndim()] } else { vec![] };
                Ok(ArrayD::from_elem(IxDyn(&shape), index))
            }
            Some(dim) => {
                let d = super::normalize_dim(op, dim, self.ndim().max(1))?;
                let value = self.value();
                let value = if self.ndim() == 0 { value.into_shape_with_order(IxDyn(&[1])).expect("one element") } else { value };
                if value.shape()[d] == 0 {
                    return Err(Error::invalid(op, format!("dim {dim} of {:?} is empty: no extremum", self.shape())));
                }
                let indices = value.map_axis(Axis(d), |lane| best(lane.into_dyn()));
                if keepdim && self.ndim() > 0 { Ok(indices.insert_axis(Axis(d))) } else { Ok(indices) }
            }
        }
    }

    /// Largest element over `dims`. The
    /// gradient is shared equally among tied maxima, as PyTorch's `amax`; `NaN` wins.
    pub fn amax_dims(&self, dims: &[isize], keepdim: bool) -> Result<Tensor<T>> {
        self.extremum("amax", dims, keepdim, |a, b| a > b)
    }

    /// Smallest element over `dims`, gradient shared among ties, as PyTorch's `amin`.
    pub fn amin_dims(&self, dims: &[isize], keepdim: bool) -> Result<Tensor<T>> {
        self.extremum("amin", dims, keepdim, |a, b| a < b)
    }

    /// Largest element, a 0-d tensor.
    pub fn amax(&self) -> Tensor<T> {
        let all: Vec<isize> = (0..self.ndim() as isize).collect();
        self.amax_dims(&all, false).expect("all dims are valid")
    }

    /// Smallest element, a 0-d tensor.
    pub fn amin(&self) -> Tensor<T> {
        let all: Vec<isize> = (0..self.ndim() as isize).collect();
        self.amin_dims(&all, false).expect("all dims are valid")
    }

    fn extremum(&self, name: &'static str, dims: &[isize], keepdim: bool, better: fn(T, T) -> bool) -> Result<Tensor<T>> {
        let dims = normalize_dims(name, dims, self.ndim())?;
        if let Some(&d) = dims.iter().find(|&&d| self.shape()[d] == 0) {
            return Err(Error::shape(name, format!("cannot reduce dim {d} of size 0 in a tensor of shape {:?}", self.shape())));
        }
        let pick = move |acc: T, x: T| if better(x, acc) || x.is_nan() { x } else { acc };
        let value = reduce_array(self, &dims, keepdim, |v, axis| {
            v.map_axis(axis, |lane| lane.iter().copied().reduce(pick).expect("non-empty lane"))
        });
        Ok(Tensor::from_op_arc(value.into_shared(), &[self], move || {
            Box::new(rule(name, move |inputs: &[Tensor<T>], y: &Tensor<T>, gy: &Tensor<T>| {
                let x = &inputs[0];
                let y_full = Tensor::unreduce(&y.detach(), x.shape(), &dims);
                let is_extremum = Tensor::from(
                    ndarray::Zip::from(x.array()).and(y_full.array()).map_collect(|&a, &b| if a == b { T::one() } else { T::zero() }),
                );
                let ties = Tensor::unreduce(&is_extremum.sum_dims(&as_isize(&dims), true).expect("valid dims"), x.shape(), &dims);
                // PyTorch's `grad / mask.sum() * mask`: a NaN extremum equals no element, so
                // its slice shares 0/0 and every element gets NaN, as in PyTorch.
                let share = Tensor::from(ndarray::Zip::from(is_extremum.array()).and(ties.array()).map_collect(|&m, &n| m / n));
                vec![Some(&Tensor::unreduce(gy, x.shape(), &dims) * &share)]
            }))
        }))
    }

    /// `Σ (self − target)²`, divided by the number of elements when `mean`: the reduced
    /// mean squared error as one op (one pass forward, one product backward, where the
    /// difference, its square and the reduction would be four ops each way).
    /// `dL/dself = 2 (self − target) · gy` (over `n` when `mean`), `dL/dtarget` its negative;
    /// written with tensor ops, so differentiable again. Shapes must match (the caller,
    /// [`mse_loss`](crate::nn::functional::mse_loss), checks).
    pub(crate) fn squared_error(&self, target: &Tensor<T>, mean: bool) -> Tensor<T> {
        let (x, y) = (self.array(), target.array());
        debug_assert_eq!(x.shape(), y.shape(), "internal: squared_error's shapes");
        let sum = match (x.as_slice(), y.as_slice()) {
            (Some(a), Some(b)) => sum_of_squared_differences(a, b),
            _ => x.iter().zip(y.iter()).fold(T::zero(), |s, (&a, &b)| s + (a - b) * (a - b)),
        };
        let n = T::of(x.len() as f64);
        let value = if mean { sum / n } else { sum };
        Tensor::from_op_saving(ndarray::arr0(value).into_dyn().into_shared(), &[self, target], Saves::inputs(&[0, 1]), move || {
            Box::new(rule("mse_loss", move |inputs: &[Tensor<T>], _: &Tensor<T>, gy: &Tensor<T>| {
                let scale = if mean { T::of(2.0) / n } else { T::of(2.0) };
                let g = inputs[0].sub(&inputs[1]).expect("same shapes").mul(&gy.mul_scalar(scale)).expect("a 0-d factor broadcasts");
                let g_target = inputs[1].requires_grad().then(|| g.neg());
                vec![inputs[0].requires_grad().then_some(g), g_target]
            }))
        })
    }

    /// `log Σ exp(x)` over `dims`, computed stably (the largest element is factored out);
    /// `dL/dx = gy · exp(x - y)`, the softmax of `x` over `dims`.
    pub fn logsumexp_dims(&self, dims: &[isize], keepdim: bool) -> Result<Tensor<T>> {
        let dims = normalize_dims("logsumexp", dims, self.ndim())?;
        let last = self.ndim().checked_sub(1);
        let value = match (self.array().as_slice(), last) {
            // The last dim of a standard-layout tensor (softmax over classes): row slices in
            // vectorised loops, not `IxDyn` lanes.
            (Some(xs), Some(d)) if dims == [d] && self.shape()[d] > 0 => {
                let rows = super::softmax::logsumexp_rows(xs, self.shape()[d]);
                ArrayD::from_shape_vec(IxDyn(&keepdim_shape(self.shape(), &dims)), rows).expect("one per row")
            }
            _ => reduce_array(self, &dims, true, |v, axis| v.map_axis(axis, |lane| lse(lane.iter().copied()))),
        };
        let value = if keepdim {
            value
        } else {
            let shape: Vec<usize> = self.shape().iter().enumerate().filter(|(i, _)| !dims.contains(i)).map(|(_, &n)| n).collect();
            value.into_shape_clone(IxDyn(&shape)).expect("drop reduced dims")
        };
        Ok(Tensor::from_op_arc(value.into_shared(), &[self], move || {
            Box::new(rule("logsumexp", move |inputs: &[Tensor<T>], y: &Tensor<T>, gy: &Tensor<T>| {
                let x = &inputs[0];
                let softmax = (x - &Tensor::unreduce(y, x.shape(), &dims)).exp();
                vec![Some(&Tensor::unreduce(gy, x.shape(), &dims) * &softmax)]
            }))
        }))
    }

    /// Sums this tensor down to `shape`, the shape it was broadcast from: leading dims are
    /// summed away and dims of size 1 in `shape` are summed with keepdim. The engine calls
    /// it on every gradient, so rules can return gradients in the broadcast shape.
    pub fn sum_to_shape(&self, shape: &[usize]) -> Result<Tensor<T>> {
        if self.shape() == shape {
            return Ok(self.clone());
        }
        let lead = self
            .ndim()
            .checked_sub(shape.len())
            .ok_or_else(|| Error::shape("sum_to_shape", format!("{:?} has fewer dims than {shape:?}", self.shape())))?;
        let mut dims = Vec::new();
        for (i, &n) in self.shape().iter().enumerate() {
            if i < lead {
                dims.push(i as isize);
            } else if shape[i - lead] != n {
                if shape[i - lead] != 1 {
                    return Err(Error::shape("sum_to_shape", format!("{:?} was not broadcast from {shape:?}", self.shape())));
                }
                dims.push(i as isize);
            }
        }
        Ok(self.sum_dims(&dims, true)?.reshape_to(shape))
    }
}

pub(crate) fn as_isize(dims: &[usize]) -> Vec<isize> {
    dims.iter().map(|&d| d as isize).collect()
}

/// This family's entries in the [op registry](super::registry()).
pub(crate) const OPS: &[OpInfo] = &[
    OpInfo::new(
        "mse_loss",
        || vec![randn(&[3, 5], 1), randn(&[3, 5], 2)],
        |v| v[0].squared_error(&v[1], true).add(&v[0].squared_error(&v[1], false)),
    ),
    OpInfo::new("sum", || vec![randn(&[3, 4], 1)], |v| v[0].sum_dims(&[1], false)),
    OpInfo::new("amax", || vec![spread(&[3, 4], 9)], |v| v[0].amax_dims(&[0], true)),
    OpInfo::new("amin", || vec![spread(&[3, 4], 9)], |v| v[0].amin_dims(&[1], false)),
    OpInfo::new("logsumexp", || vec![randn(&[3, 4], 1)], |v| v[0].logsumexp_dims(&[1], false)),
];

#[cfg(test)]
mod tests {
    use ndarray::{ArrayD, Axis, IxDyn};

    #[test]
    fn sum_axis_gives_ndarrays_bits_on_every_axis() {
        // Values whose sums round differently in another order; shapes with empty and unit
        // axes, where the fast path must step aside.
        for shape in [
            vec![1120, 100],
            vec![4, 3, 5],
            vec![2, 0, 3],
            vec![0, 4],
            vec![3, 4, 1],
            vec![4, 1, 2],
            vec![7],
            vec![8, 1],
            vec![37, 1, 1],
            vec![1, 37],
            vec![1],
        ] {
            let len: usize = shape.iter().product();
            let a = ArrayD::from_shape_vec(
                IxDyn(&shape),
                (0..len).map(|i| ((i * 7919 % 1000) as f32 - 500.0) * 1.37e-3 + 1e4 * ((i % 3) as f32)).collect(),
            )
            .unwrap();
            for axis in 0..shape.len() {
                let fast = super::sum_axis(a.view(), Axis(axis));
                let reference = a.sum_axis(Axis(axis));
                assert_eq!(fast.shape(), reference.shape(), "shape {shape:?} axis {axis}");
                let bits = |x: &ArrayD<f32>| x.iter().map(|v| v.to_bits()).collect::<Vec<_>>();
                assert_eq!(bits(&fast), bits(&reference), "shape {shape:?} axis {axis}");
            }
        }
        // A row-major view whose unit axis has a long stride: ndarray sums the other axis by
        // lanes here, not one sub-array at a time as for the same shape freshly made.
        use ndarray::ShapeBuilder;
        let data: Vec<f32> = (0..37).map(|i| (i as f32 * 0.37).sin() * 1e3 + 1e4).collect();
        let column = ndarray::ArrayViewD::from_shape(IxDyn(&[37, 1]).strides(IxDyn(&[1, 37])), &data).unwrap();
        assert!(column.as_slice().is_some());
        let bits = |x: &ArrayD<f32>| x.iter().map(|v| v.to_bits()).collect::<Vec<_>>();
        let fresh = ArrayD::from_shape_vec(IxDyn(&[37, 1]), data.clone()).unwrap();
        assert_ne!(bits(&fresh.sum_axis(Axis(0))), bits(&column.sum_axis(Axis(0))), "the two orders differ on these values");
        assert_eq!(bits(&super::sum_axis(fresh.view(), Axis(0))), bits(&fresh.sum_axis(Axis(0))));
        assert_eq!(bits(&super::sum_axis(column.view(), Axis(0))), bits(&column.sum_axis(Axis(0))));
    }
}
