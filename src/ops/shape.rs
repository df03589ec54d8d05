//! Ops that move elements without changing them: reshape, permute, transpose, expand,
//! narrow (and its adjoint, zero padding), cat, stack, squeeze, unsqueeze, flatten.

use super::registry::{OpInfo, randn, recorded_grad};
use super::{normalize_dim, normalize_dims};
use crate::array::copy::{padded, row_major_copy};
use crate::autograd::{OpRule, rule};
use crate::error::{Error, Result};
use crate::tensor::{Element, Saves, Tensor};
use ndarray::{ArrayD, Axis, IxDyn, Slice};

impl<T: Element> Tensor<T> {
    /// Reshape to a shape known to hold the same number of elements (internal callers).
    pub(crate) fn reshape_to(&self, shape: &[usize]) -> Tensor<T> {
        if self.shape() == shape {
            return self.clone();
        }
        let value = if self.array().is_standard_layout() {
            self.array().clone().into_shape_clone(IxDyn(shape)).expect("internal: reshape to a shape of the same size")
        } else {
            // A view (a transpose, a narrow) is copied, a row at a time where its rows are
            // contiguous: ndarray's element-by-element copy is several times slower.
            ArrayD::from_shape_vec(IxDyn(shape), row_major_copy(&self.value())).expect("internal: same size").into_shared()
        };
        Tensor::from_op_saving(value, &[self], Saves::NOTHING, || {
            Box::new(rule("reshape", |inputs: &[Tensor<T>], _: &Tensor<T>, gy: &Tensor<T>| vec![Some(gy.reshape_to(inputs[0].shape()))]))
        })
    }

    /// The same elements in row-major order with another shape; one entry may be `-1`,
    /// inferred from the others. `dL/dx` is `gy` reshaped back. No copy when the layout
    /// allows.
    ///
    /// ```
    /// use nabla::prelude::*;
    /// let x = Tensor::zeros(&[2, 6]);
    /// assert_eq!(x.reshape(&[3, -1])?.shape(), &[3, 4]);
    /// assert_eq!(x.reshape(&[5, 2]).unwrap_err().to_string(),
    ///            "reshape: cannot reshape [2, 6] (12 elements) to [5, 2]");
    /// # Ok::<(), nabla::Error>(())
    /// ```
    pub fn reshape(&self, shape: &[isize]) -> Result<Tensor<T>> {
        let fail = || Error::shape("reshape", format!("cannot reshape {:?} ({} elements) to {shape:?}", self.shape(), self.len()));
        let inferred: Vec<usize> = shape.iter().enumerate().filter(|&(_, &n)| n == -1).map(|(i, _)| i).collect();
        if inferred.len() > 1 || shape.iter().any(|&n| n < -1) {
            return Err(fail());
        }
        let known: usize = shape.iter().filter(|&&n| n >= 0).map(|&n| n as usize).product();
        let mut out: Vec<usize> = shape.iter().map(|&n| n.max(0) as usize).collect();
        if let Some(&i) = inferred.first() {
            if known == 0 || !self.len().is_multiple_of(known) {
                return Err(fail());
            }
            out[i] = self.len() / known;
        } else if known != self.len() {
            return Err(fail());
        }
        Ok(self.reshape_to(&out))
    }

    /// Flattens dims `start_dim..=end_dim` into one, as `torch.flatten`.
    pub fn flatten(&self, start_dim: isize, end_dim: isize) -> Result<Tensor<T>> {
        if self.ndim() == 0 {
            // A 0-d tensor counts as one dim here, as in PyTorch: dims 0 and -1 only.
            normalize_dim("flatten", start_dim, 1)?;
            normalize_dim("flatten", end_dim, 1)?;
            return Ok(self.reshape_to(&[1]));
        }
        let s = normalize_dim("flatten", start_dim, self.ndim())?;
        let e = normalize_dim("flatten", end_dim, self.ndim())?;
        if s > e {
            return Err(Error::invalid("flatten", format!("start_dim {start_dim} comes after end_dim {end_dim}")));
        }
        let shape = self.shape();
        let mut out: Vec<usize> = shape[..s].to_vec();
        out.push(shape[s..=e].iter().product());
        out.extend_from_slice(&shape[e + 1..]);
        Ok(self.reshape_to(&out))
    }

    /// Inserts a dim of size 1 at `dim` (in `-(ndim+1)..=ndim`).
    pub fn unsqueeze(&self, dim: isize) -> Result<Tensor<T>> {
        let d = normalize_dim("unsqueeze", dim, self.ndim() + 1)?;
        let mut shape = self.shape().to_vec();
        shape.insert(d, 1);
        Ok(self.reshape_to(&shape))
    }

    /// Removes `dim` if its size is 1 (otherwise returns the tensor unchanged, as PyTorch).
    pub fn squeeze(&self, dim: isize) -> Result<Tensor<T>> {
        let d = normalize_dim("squeeze", dim, self.ndim())?;
        if self.ndim() == 0 || self.shape()[d] != 1 {
            return Ok(self.clone());
        }
        let mut shape = self.shape().to_vec();
        shape.remove(d);
        Ok(self.reshape_to(&shape))
    }

    /// Reorders the dims: output dim `i` is input dim `dims[i]`; `dL/dx` is `gy` permuted
    /// back. No copy: the result is a strided view of the same data.
    ///
    /// ```
    /// use nabla::prelude::*;
    /// assert_eq!(Tensor::zeros(&[2, 3, 4]).permute(&[2, 0, 1])?.shape(), &[4, 2, 3]);
    /// # Ok::<(), nabla::Error>(())
    /// ```
    pub fn permute(&self, dims: &[isize]) -> Result<Tensor<T>> {
        if dims.len() != self.ndim() {
            return Err(Error::shape(
                "permute",
                format!("{dims:?} has {} dims, the tensor {:?} has {}", dims.len(), self.shape(), self.ndim()),
            ));
        }
        let mut perm = Vec::with_capacity(dims.len());
        for &d in dims {
            perm.push(normalize_dim("permute", d, self.ndim())?);
        }
        if normalize_dims("permute", dims, self.ndim()).is_err() {
            return Err(Error::invalid("permute", format!("{dims:?} is not a permutation of 0..{}", self.ndim())));
        }
        Ok(self.permute_axes(perm))
    }

    fn permute_axes(&self, perm: Vec<usize>) -> Tensor<T> {
        let value = self.array().clone().permuted_axes(IxDyn(&perm));
        Tensor::from_op_saving(value, &[self], Saves::NOTHING, move || {
            Box::new(rule("permute", move |_: &[Tensor<T>], _: &Tensor<T>, gy: &Tensor<T>| {
                let mut inverse = vec![0; perm.len()];
                for (i, &p) in perm.iter().enumerate() {
                    inverse[p] = i;
                }
                vec![Some(gy.permute_axes(inverse))]
            }))
        })
    }

    /// Swaps two dims.
    pub fn transpose(&self, dim0: isize, dim1: isize) -> Result<Tensor<T>> {
        let a = normalize_dim("transpose", dim0, self.ndim())?;
        let b = normalize_dim("transpose", dim1, self.ndim())?;
        if self.ndim() == 0 {
            return Ok(self.clone());
        }
        let mut perm: Vec<usize> = (0..self.ndim()).collect();
        perm.swap(a, b);
        Ok(self.permute_axes(perm))
    }

    /// The transpose of a matrix (the last two dims swapped; a 1-D tensor is returned as is).
    pub fn t(&self) -> Tensor<T> {
        if self.ndim() < 2 {
            return self.clone();
        }
        let n = self.ndim();
        let mut perm: Vec<usize> = (0..n).collect();
        perm.swap(n - 2, n - 1);
        self.permute_axes(perm)
    }

    /// Broadcast to a shape known to be reachable (internal callers).
    pub(crate) fn expand_to(&self, shape: &[usize]) -> Tensor<T> {
        if self.shape() == shape {
            return self.clone();
        }
        // A recycled buffer (fresh memory would page-fault on first touch), filled by one
        // pass: a scalar, as the gradient of a sum, by a plain fill.
        let value = if let (1, Some(&v)) = (self.len(), self.array().first()) {
            crate::array::pool::filled(shape, v)
        } else {
            let source = self.array().broadcast(IxDyn(shape)).expect("internal: expand to a broadcastable shape");
            let len = shape.iter().product();
            let mut value = ArrayD::from_shape_vec(IxDyn(shape), crate::array::pool::take_overwritten::<T>(len)).expect("len elements");
            value.assign(&source);
            value
        };
        // dL/dx = gy: the engine sums it back over the broadcast dims.
        Tensor::from_op_saving(value.into_shared(), &[self], Saves::NOTHING, || {
            Box::new(rule("expand", |_: &[Tensor<T>], _: &Tensor<T>, gy: &Tensor<T>| vec![Some(gy.clone())]))
        })
    }

    /// Repeats dims of size 1 to `size` (new dims may be added in front; `-1` keeps a dim),
    /// as `torch.Tensor.expand`; `dL/dx` sums `gy` over the repeated dims.
    pub fn expand(&self, size: &[isize]) -> Result<Tensor<T>> {
        let fail = || Error::shape("expand", format!("cannot expand {:?} to {size:?}", self.shape()));
        if size.len() < self.ndim() {
            return Err(fail());
        }
        let lead = size.len() - self.ndim();
        let mut shape = Vec::with_capacity(size.len());
        for (i, &s) in size.iter().enumerate() {
            let n = match (i.checked_sub(lead).map(|j| self.shape()[j]), s) {
                (Some(old), -1) => old,
                (None, -1) => return Err(fail()),
                (_, s) if s < 0 => return Err(fail()),
                (Some(old), s) if old != 1 && old != s as usize => return Err(fail()),
                (_, s) => s as usize,
            };
            shape.push(n);
        }
        Ok(self.expand_to(&shape))
    }

    /// The slice `start..start + length` along `dim`; `dL/dx` is `gy` padded with zeros.
    ///
    /// ```
    /// use nabla::prelude::*;
    /// let x = Tensor::arange(0.0, 6.0, 1.0)?;
    /// assert_eq!(x.narrow(0, 1, 3)?.to_vec(), vec![1.0, 2.0, 3.0]);
    /// assert_eq!(x.narrow(0, 4, 3).unwrap_err().to_string(),
    ///            "narrow: start 4 + length 3 exceeds size 6 of dim 0");
    /// # Ok::<(), nabla::Error>(())
    /// ```
    pub fn narrow(&self, dim: isize, start: usize, length: usize) -> Result<Tensor<T>> {
        if self.ndim() == 0 {
            return Err(Error::shape("narrow", "cannot narrow a 0-d tensor"));
        }
        let d = normalize_dim("narrow", dim, self.ndim())?;
        let size = self.shape()[d];
        if start + length > size {
            return Err(Error::shape("narrow", format!("start {start} + length {length} exceeds size {size} of dim {d}")));
        }
        Ok(self.narrow_axis(d, start, length))
    }

    pub(crate) fn narrow_axis(&self, d: usize, start: usize, length: usize) -> Tensor<T> {
        let mut value = self.array().clone();
        value.slice_axis_inplace(Axis(d), Slice::from(start..start + length));
        // A slice that is still contiguous (along the first axis, as a sequence's steps)
        // shares the buffer; any other is copied, so that the ops reading it keep their
        // contiguous loops.
        let value = if value.is_standard_layout() { value } else { value.as_standard_layout().into_owned().into_shared() };
        Tensor::from_op_saving(value, &[self], Saves::NOTHING, move || Box::new(NarrowRule { d, start, length }))
    }

    /// Zeros added before and after along axis `d`: the adjoint of `narrow`, so its rule is
    /// a narrow.
    pub(crate) fn pad_axis(&self, d: usize, before: usize, after: usize) -> Tensor<T> {
        let mut shape = self.shape().to_vec();
        let n = shape[d];
        shape[d] += before + after;
        let value = padded(&shape, d, before, &self.array().view());
        Tensor::from_op_saving(value.into_shared(), &[self], Saves::NOTHING, move || {
            Box::new(rule("pad", move |_: &[Tensor<T>], _: &Tensor<T>, gy: &Tensor<T>| vec![Some(gy.narrow_axis(d, before, n))]))
        })
    }

    /// Joins tensors along an existing `dim`; all other dims must agree. `dL/dx_i` is the
    /// matching slice of `gy`. As PyTorch's legacy rule, a 1-d tensor with no elements is
    /// skipped whatever the others' rank (its gradient is empty); only such tensors give
    /// an empty 1-d result.
    ///
    /// ```
    /// use nabla::prelude::*;
    /// let y = Tensor::cat(&[Tensor::zeros(&[2, 3]), Tensor::ones(&[4, 3])], 0)?;
    /// assert_eq!(y.shape(), &[6, 3]);
    /// assert!(Tensor::<f32>::cat(&[], 0).is_err());
    /// # Ok::<(), nabla::Error>(())
    /// ```
    pub fn cat(tensors: &[Tensor<T>], dim: isize) -> Result<Tensor<T>> {
        if tensors.is_empty() {
            return Err(Error::invalid("cat", "needs at least one tensor, got an empty list"));
        }
        let skipped = |t: &Tensor<T>| t.ndim() == 1 && t.is_empty();
        let Some(first) = tensors.iter().find(|t| !skipped(t)) else {
            normalize_dim("cat", dim, 1)?;
            let inputs: Vec<&Tensor<T>> = tensors.iter().collect();
            return Ok(Tensor::from_op_saving(ArrayD::zeros(IxDyn(&[0])).into_shared(), &inputs, Saves::NOTHING, move || {
                Box::new(rule("cat", |inputs: &[Tensor<T>], _: &Tensor<T>, gy: &Tensor<T>| vec![Some(gy.clone()); inputs.len()]))
            }));
        };
        if first.ndim() == 0 {
            return Err(Error::shape("cat", "a 0-d tensor cannot be concatenated (stack it, or unsqueeze it first)"));
        }
        let d = normalize_dim("cat", dim, first.ndim())?;
        for t in tensors.iter().filter(|t| !skipped(t)) {
            let same = t.ndim() == first.ndim() && t.shape().iter().zip(first.shape()).enumerate().all(|(i, (a, b))| i == d || a == b);
            if !same {
                return Err(Error::shape("cat", format!("{:?} and {:?} differ outside dim {d}", first.shape(), t.shape())));
            }
        }
        let views: Vec<_> = tensors.iter().filter(|t| !skipped(t)).map(|t| t.array().view()).collect();
        let value = ndarray::concatenate(Axis(d), &views).expect("checked shapes");
        // Each input's extent along `dim`, `None` for a skipped one.
        let sizes: Vec<Option<usize>> = tensors.iter().map(|t| (!skipped(t)).then(|| t.shape()[d])).collect();
        let inputs: Vec<&Tensor<T>> = tensors.iter().collect();
        Ok(Tensor::from_op_saving(value.into_shared(), &inputs, Saves::NOTHING, move || {
            Box::new(rule("cat", move |_: &[Tensor<T>], _: &Tensor<T>, gy: &Tensor<T>| {
                let mut start = 0;
                sizes
                    .iter()
                    .map(|&n| match n {
                        Some(n) => {
                            start += n;
                            Some(gy.narrow_axis(d, start - n, n))
                        }
                        // The empty slice of gy along dim 0, reshaped: linear in gy.
                        None => Some(gy.reshape_to(&[gy.len()]).narrow_axis(0, 0, 0)),
                    })
                    .collect()
            }))
        }))
    }

    /// Joins tensors of one shape along a new `dim`.
    pub fn stack(tensors: &[Tensor<T>], dim: isize) -> Result<Tensor<T>> {
        let first = tensors.first().ok_or_else(|| Error::invalid("stack", "needs at least one tensor, got an empty list"))?;
        if let Some(t) = tensors.iter().find(|t| t.shape() != first.shape()) {
            return Err(Error::shape("stack", format!("{:?} and {:?} differ", first.shape(), t.shape())));
        }
        let d = normalize_dim("stack", dim, first.ndim() + 1)? as isize;
        let pieces = tensors.iter().map(|t| t.unsqueeze(d)).collect::<Result<Vec<_>>>()?;
        Tensor::cat(&pieces, d)
    }
}

/// `narrow`'s rule: the cotangent padded with zeros back to the input's shape (so it is
/// differentiable), or, in a first-order sweep, added straight into the slice it came from.
struct NarrowRule {
    d: usize,
    start: usize,
    length: usize,
}

impl<T: Element> OpRule<T> for NarrowRule {
    fn name(&self) -> &'static str {
        "narrow"
    }
    fn backward(&self, inputs: &[Tensor<T>], _: &Tensor<T>, gy: &Tensor<T>) -> Vec<Option<Tensor<T>>> {
        let after = inputs[0].shape()[self.d] - self.start - self.length;
        vec![Some(gy.pad_axis(self.d, self.start, after))]
    }
    fn reads_slice(&self) -> Option<(usize, usize)> {
        Some((self.d, self.start))
    }
}

/// This family's entries in the [op registry](super::registry()).
pub(crate) const OPS: &[OpInfo] = &[
    OpInfo::new("reshape", || vec![randn(&[3, 4], 1)], |v| v[0].reshape(&[2, 6])),
    OpInfo::new("permute", || vec![randn(&[2, 3, 4], 1)], |v| v[0].permute(&[2, 0, 1])),
    OpInfo::new("expand", || vec![randn(&[3, 1], 1)], |v| v[0].expand(&[2, 3, 4])),
    OpInfo::new("narrow", || vec![randn(&[3, 4], 1)], |v| v[0].narrow(1, 1, 2)),
    // `narrow`'s adjoint.
    OpInfo::new("pad", || vec![randn(&[3, 4], 1), randn(&[3, 2], 10)], |v| recorded_grad(&v[0], &v[1], |x| x.narrow(1, 1, 2))),
    OpInfo::new("cat", || vec![randn(&[3, 4], 1), randn(&[3, 2], 11)], |v| Tensor::cat(&[v[0].clone(), v[1].clone()], 1)),
];
