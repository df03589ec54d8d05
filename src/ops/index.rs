//! Indexing by integer indices: index_select and gather, and their adjoints index_add and
//! scatter_add (each op's rule is the other).

use super::normalize_dim;
use super::registry::{OpInfo, randn, recorded_grad, spread};
use crate::autograd::rule;
use crate::error::{Error, Result};
use crate::tensor::{Element, Saves, Tensor};
use ndarray::{ArrayD, IxDyn};
use std::sync::Arc;

impl<T: Element> Tensor<T> {
    /// The slices `index[0], index[1], …` of `dim`, stacked along `dim`, as
    /// `torch.index_select`; `dL/dx` adds each slice of `gy` back where it came from.
    ///
    /// ```
    /// use nabla::prelude::*;
    /// let x = Tensor::from_vec(vec![1.0, 2.0, 3.0], &[3])?;
    /// assert_eq!(x.index_select(0, &[2, 0, 2])?.to_vec(), vec![3.0, 1.0, 3.0]);
    /// assert_eq!(x.index_select(0, &[3]).unwrap_err().to_string(),
    ///            "index_select: index 3 is out of range for dim 0 of size 3");
    /// # Ok::<(), nabla::Error>(())
    /// ```
    pub fn index_select(&self, dim: isize, index: &[usize]) -> Result<Tensor<T>> {
        let d = normalize_dim("index_select", dim, self.ndim())?;
        let size = self.shape().get(d).copied().unwrap_or(1);
        if let Some(&bad) = index.iter().find(|&&i| i >= size) {
            return Err(Error::Index { op: "index_select", index: bad, dim: d, size });
        }
        if self.ndim() == 0 {
            // As PyTorch: a 0-d tensor takes one index (0) and stays 0-d.
            if index.len() != 1 {
                return Err(Error::shape("index_select", format!("a 0-d tensor takes one index, got {}", index.len())));
            }
            return Ok(self.reshape_to(&[1]).index_select_unchecked(0, Arc::from(index)).reshape_to(&[]));
        }
        Ok(self.index_select_unchecked(d, Arc::from(index)))
    }

    fn index_select_unchecked(&self, d: usize, index: Arc<[usize]>) -> Tensor<T> {
        let source = self.array().as_standard_layout();
        let (outer, size, inner) = around(self.shape(), d);
        let mut shape = self.shape().to_vec();
        shape[d] = index.len();
        // A copy of `inner` contiguous elements per (outer, index) pair: ndarray's `select`
        // on a dynamic-rank array walks each slice through a heap-allocated index, which
        // costs more than the copy for an embedding lookup's short rows.
        let mut out = Vec::with_capacity(outer * index.len() * inner);
        let src = source.as_slice().expect("standard layout");
        for o in 0..outer {
            for &i in index.iter() {
                out.extend_from_slice(&src[(o * size + i) * inner..][..inner]);
            }
        }
        let value = ArrayD::from_shape_vec(IxDyn(&shape), out).expect("outer · index · inner elements");
        Tensor::from_op_saving(value.into_shared(), &[self], Saves::NOTHING, move || {
            Box::new(rule("index_select", move |inputs: &[Tensor<T>], _: &Tensor<T>, gy: &Tensor<T>| {
                vec![Some(gy.index_add_into_zeros(d, index.clone(), inputs[0].shape()[d]))]
            }))
        })
    }

    /// Zeros of size `size` along `d`, with slice `k` of this tensor added at `index[k]`:
    /// the adjoint of index_select.
    fn index_add_into_zeros(&self, d: usize, index: Arc<[usize]>, size: usize) -> Tensor<T> {
        let mut shape = self.shape().to_vec();
        shape[d] = size;
        let (outer, len, inner) = around(self.shape(), d);
        let mut sums = vec![T::zero(); outer * size * inner];
        let source = self.array().as_standard_layout();
        let src = source.as_slice().expect("standard layout");
        for o in 0..outer {
            for (k, &i) in index.iter().enumerate() {
                let from = &src[(o * len + k) * inner..][..inner];
                for (t, &g) in sums[(o * size + i) * inner..][..inner].iter_mut().zip(from) {
                    *t = *t + g;
                }
            }
        }
        let value = ArrayD::from_shape_vec(IxDyn(&shape), sums).expect("outer · size · inner elements");
        Tensor::from_op_saving(value.into_shared(), &[self], Saves::NOTHING, move || {
            Box::new(rule("index_add", move |_: &[Tensor<T>], _: &Tensor<T>, gy: &Tensor<T>| {
                vec![Some(gy.index_select_unchecked(d, index.clone()))]
            }))
        })
    }

    /// `y[i][j][k] = x[i][index[i][j][k]][k]` for `dim = 1` (and likewise for any dim), as
    /// `torch.gather`; `index` has this tensor's number of dims (a 0-d input or index counts
    /// as 1-d, and an empty index may have any, as in PyTorch) and is no larger outside
    /// `dim`. `dL/dx` scatter-adds `gy` back.
    ///
    /// ```
    /// use nabla::prelude::*;
    /// use ndarray::{arr2, IxDyn};
    /// let x = Tensor::from_vec(vec![1.0, 2.0, 3.0, 4.0], &[2, 2])?;
    /// let index = arr2(&[[1usize, 1], [0, 1]]).into_dyn();
    /// assert_eq!(x.gather(1, &index)?.to_vec(), vec![2.0, 2.0, 3.0, 4.0]);
    /// # Ok::<(), nabla::Error>(())
    /// ```
    pub fn gather(&self, dim: isize, index: &ArrayD<usize>) -> Result<Tensor<T>> {
        let d = normalize_dim("gather", dim, self.ndim())?;
        // As PyTorch: an empty index of any rank gives an empty result of its shape, and a
        // 0-d input or index counts as 1-d with one element.
        if index.is_empty() {
            return Ok(self.gather_unchecked(d, Arc::new(index.clone())));
        }
        if self.ndim().max(1) != index.ndim().max(1) {
            return Err(Error::shape(
                "gather",
                format!("index has {} dims, the input {:?} has {}", index.ndim(), self.shape(), self.ndim()),
            ));
        }
        if self.ndim() == 0 || index.ndim() == 0 {
            let flat = index.clone().into_shape_with_order(IxDyn(&[index.len()])).expect("0-d or 1-d");
            return self.reshape_to(&[self.len()]).gather(0, &flat).map(|y| y.reshape_to(index.shape()));
        }
        for (i, (&n, &m)) in index.shape().iter().zip(self.shape()).enumerate() {
            if i != d && n > m {
                return Err(Error::shape(
                    "gather",
                    format!("index {:?} is larger than the input {:?} at dim {i}", index.shape(), self.shape()),
                ));
            }
        }
        let size = self.shape()[d];
        if let Some(&bad) = index.iter().find(|&&i| i >= size) {
            return Err(Error::Index { op: "gather", index: bad, dim: d, size });
        }
        Ok(self.gather_unchecked(d, Arc::new(index.clone())))
    }

    fn gather_unchecked(&self, d: usize, index: Arc<ArrayD<usize>>) -> Tensor<T> {
        let x = self.array();
        let value = ArrayD::from_shape_fn(index.raw_dim(), |mut at| {
            at[d] = index[&at];
            x[&at]
        });
        Tensor::from_op_saving(value.into_shared(), &[self], Saves::NOTHING, move || {
            Box::new(rule("gather", move |inputs: &[Tensor<T>], _: &Tensor<T>, gy: &Tensor<T>| {
                vec![Some(gy.scatter_add_into_zeros(d, index.clone(), inputs[0].shape()))]
            }))
        })
    }

    /// Zeros of `shape` with `self[at]` added at `at` with `at[d]` replaced by `index[at]`:
    /// the adjoint of gather.
    fn scatter_add_into_zeros(&self, d: usize, index: Arc<ArrayD<usize>>, shape: &[usize]) -> Tensor<T> {
        let mut value = ArrayD::zeros(IxDyn(shape));
        for (mut at, &g) in self.array().indexed_iter() {
            at[d] = index[&at];
            value[&at] = value[&at] + g;
        }
        Tensor::from_op_saving(value.into_shared(), &[self], Saves::NOTHING, move || {
            Box::new(rule("scatter_add", move |_: &[Tensor<T>], _: &Tensor<T>, gy: &Tensor<T>| {
                vec![Some(gy.gather_unchecked(d, index.clone()))]
            }))
        })
    }
}

/// A shape cut at axis `d`: the number of elements before it (`outer`), its length, and
/// the number after it (`inner`), so that a row-major array is `(outer, size, inner)`.
fn around(shape: &[usize], d: usize) -> (usize, usize, usize) {
    (shape[..d].iter().product(), shape[d], shape[d + 1..].iter().product())
}

/// Indices into the planes of a `[planes, plane_len]` tensor: one list shared by every
/// plane, or one list per plane (row-major `[planes, len]`). `u32`, half of `usize`: max
/// pooling keeps one per output element for backward (a plane is checked to fit).
#[derive(Debug, Clone)]
pub(crate) struct PlaneIndex {
    pub(crate) indices: Arc<Vec<u32>>,
    pub(crate) per_plane: bool,
    /// Length of each plane of the source (the scatter's output).
    pub(crate) plane_len: usize,
}

impl PlaneIndex {
    fn len_per_plane(&self, planes: usize) -> usize {
        if self.per_plane { self.indices.len() / planes.max(1) } else { self.indices.len() }
    }
    fn of_plane(&self, p: usize, planes: usize) -> &[u32] {
        let m = self.len_per_plane(planes);
        if self.per_plane { &self.indices[p * m..(p + 1) * m] } else { &self.indices }
    }
}

impl<T: Element> Tensor<T> {
    /// `y[p, j] = x[p, index_p[j]]` for `x: [planes, plane_len]`: the windows of pooling
    /// (one shared list) and the maxima of max pooling (a list per plane). Its rule is the
    /// scatter-add below, whose rule is this gather.
    pub(crate) fn plane_gather(&self, index: PlaneIndex) -> Tensor<T> {
        let planes = self.shape()[0];
        let m = index.len_per_plane(planes);
        let src = self.array().as_standard_layout();
        let src = src.as_slice().expect("standard layout");
        // Every element is written below.
        let mut out = crate::array::pool::take_overwritten::<T>(planes * m);
        crate::array::kernel::team::for_each_chunk_mut(&mut out, m.max(1), |p, dst| {
            let plane = &src[p * index.plane_len..(p + 1) * index.plane_len];
            for (d, &i) in dst.iter_mut().zip(index.of_plane(p, planes)) {
                *d = plane[i as usize];
            }
        });
        let value = ArrayD::from_shape_vec(IxDyn(&[planes, m]), out).expect("planes x m");
        Tensor::from_op_saving(value.into_shared(), &[self], Saves::NOTHING, move || {
            Box::new(rule("plane_gather", move |_: &[Tensor<T>], _: &Tensor<T>, gy: &Tensor<T>| {
                vec![Some(gy.plane_scatter_add(index.clone()))]
            }))
        })
    }

    /// `x[p, index_p[j]] += g[p, j]` into zeros `[planes, plane_len]`: the adjoint of
    /// [`Tensor::plane_gather`].
    pub(crate) fn plane_scatter_add(&self, index: PlaneIndex) -> Tensor<T> {
        let planes = self.shape()[0];
        let m = self.shape()[1];
        let src = self.array().as_standard_layout();
        let src = src.as_slice().expect("standard layout");
        let mut out = crate::array::pool::take::<T>(planes * index.plane_len);
        out.resize(planes * index.plane_len, T::zero());
        crate::array::kernel::team::for_each_chunk_mut(&mut out, index.plane_len.max(1), |p, plane| {
            for (&g, &i) in src[p * m..(p + 1) * m].iter().zip(index.of_plane(p, planes)) {
                plane[i as usize] = plane[i as usize] + g;
            }
        });
        let value = ArrayD::from_shape_vec(IxDyn(&[planes, index.plane_len]), out).expect("planes x plane_len");
        Tensor::from_op_saving(value.into_shared(), &[self], Saves::NOTHING, move || {
            Box::new(rule("plane_scatter_add", move |_: &[Tensor<T>], _: &Tensor<T>, gy: &Tensor<T>| {
                vec![Some(gy.plane_gather(index.clone()))]
            }))
        })
    }
}

/// This family's entries in the [op registry](super::registry()).
pub(crate) const OPS: &[OpInfo] = &[
    OpInfo::new("index_select", || vec![randn(&[3, 4], 1)], |v| v[0].index_select(1, &[3, 0, 0, 2])),
    // `index_select`'s adjoint.
    OpInfo::new(
        "index_add",
        || vec![randn(&[3, 4], 1), randn(&[3, 4], 12)],
        |v| recorded_grad(&v[0], &v[1], |x| x.index_select(1, &[3, 0, 0, 2])),
    ),
    OpInfo::new("gather", || vec![randn(&[3, 4], 1)], |v| v[0].gather(1, &gather_index())),
    // `gather`'s adjoint.
    OpInfo::new(
        "scatter_add",
        || vec![randn(&[3, 4], 1), randn(&[3, 4], 13)],
        |v| recorded_grad(&v[0], &v[1], |x| x.gather(1, &gather_index())),
    ),
    // Max pooling records these.
    OpInfo::new("plane_gather", || vec![spread(&[1, 2, 4, 4], 14)], |v| v[0].max_pool2d(super::Pool2dConfig::new(2))),
    OpInfo::new(
        "plane_scatter_add",
        || vec![spread(&[1, 2, 4, 4], 14), randn(&[1, 2, 2, 2], 15)],
        |v| recorded_grad(&v[0], &v[1], |x| x.max_pool2d(super::Pool2dConfig::new(2))),
    ),
];

/// A `[3, 4]` index into dim 1 of a `[3, 4]` tensor, with repeats.
fn gather_index() -> ArrayD<usize> {
    ArrayD::from_shape_fn(IxDyn(&[3, 4]), |i| (i[0] * 2 + i[1] * 3) % 4)
}
