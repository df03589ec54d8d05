//! Indexing by integer indices: index_select and gather, and their adjoints index_add and
//! scatter_add (each op's rule is the other).

use super::normalize_dim;
use crate::autograd::rule;
use crate::error::{Error, Result};
use crate::tensor::{Element, Tensor};
use ndarray::{ArrayD, Axis, IxDyn};
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
        Ok(self.index_select_unchecked(d, Arc::from(index)))
    }

    fn index_select_unchecked(&self, d: usize, index: Arc<[usize]>) -> Tensor<T> {
        let value = self.array().select(Axis(d), &index);
        Tensor::from_op_arc(value.into_shared(), &[self], move || {
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
        let mut value = ArrayD::zeros(IxDyn(&shape));
        for (k, &i) in index.iter().enumerate() {
            ndarray::Zip::from(value.index_axis_mut(Axis(d), i)).and(self.array().index_axis(Axis(d), k)).for_each(|t, &g| *t = *t + g);
        }
        Tensor::from_op_arc(value.into_shared(), &[self], move || {
            Box::new(rule("index_add", move |_: &[Tensor<T>], _: &Tensor<T>, gy: &Tensor<T>| {
                vec![Some(gy.index_select_unchecked(d, index.clone()))]
            }))
        })
    }

    /// `y[i][j][k] = x[i][index[i][j][k]][k]` for `dim = 1` (and likewise for any dim), as
    /// `torch.gather`; `index` has this tensor's number of dims and is no larger outside
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
        if index.ndim() != self.ndim() {
            return Err(Error::shape(
                "gather",
                format!("index has {} dims, the input {:?} has {}", index.ndim(), self.shape(), self.ndim()),
            ));
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
        Tensor::from_op_arc(value.into_shared(), &[self], move || {
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
        Tensor::from_op_arc(value.into_shared(), &[self], move || {
            Box::new(rule("scatter_add", move |_: &[Tensor<T>], _: &Tensor<T>, gy: &Tensor<T>| {
                vec![Some(gy.gather_unchecked(d, index.clone()))]
            }))
        })
    }
}
