//! `Embedding`: a lookup table of vectors.

use super::init::normal;
use super::{Module, Param};
use crate::error::{Error, Result};
use crate::tensor::{Element, Tensor};
use ndarray::ArrayD;
use rand::Rng;

/// A table of `num_embeddings` vectors of size `embedding_dim`, as `torch.nn.Embedding`:
/// ids of shape `s` give vectors of shape `s ++ [embedding_dim]`. The parameter is
/// `weight`, initialised `N(0, 1)` as in PyTorch; its gradient adds up the cotangents of
/// every occurrence of an id.
///
/// ```
/// use nabla::prelude::*;
/// let table: nn::Embedding = nn::Embedding::new(10, 4, &mut nabla::rng(0));   // f32
/// let ids = ndarray::arr2(&[[1usize, 2, 1]]).into_dyn();
/// assert_eq!(table.forward(&ids)?.shape(), &[1, 3, 4]);
/// # Ok::<(), nabla::Error>(())
/// ```
pub struct Embedding<T: Element = f32> {
    /// `[num_embeddings, embedding_dim]`.
    pub weight: Param<T>,
    /// PyTorch's `padding_idx`: this row is looked up as stored but gets no gradient.
    pub padding_idx: Option<usize>,
}

constructors! {
    Embedding: EmbeddingNew {
        /// A table initialised `N(0, 1)`.
        fn new(num_embeddings: usize, embedding_dim: usize, rng: &mut impl Rng) -> Self {
            Embedding { weight: Param::new(normal(&[num_embeddings, embedding_dim], 0.0, 1.0, rng)), padding_idx: None }
        }
    }
}

impl<T: Element> Embedding<T> {
    /// With PyTorch's `padding_idx` (negative counts from the end): that row is set to zeros
    /// now, as PyTorch's constructor does, is looked up as stored, and never gets a gradient.
    /// `Err` for an index outside the table.
    ///
    /// ```
    /// use nabla::prelude::*;
    /// let table = nn::Embedding::new(5, 2, &mut nabla::rng(0)).with_padding_idx(-1)?;
    /// assert_eq!(table.padding_idx, Some(4));
    /// let ids = ndarray::arr1(&[4usize, 0]).into_dyn();
    /// let y = table.forward(&ids)?;
    /// assert_eq!(&y.to_vec()[..2], &[0.0, 0.0]);
    /// let g = y.sum().backward()?.get(&table.weight.tensor()).unwrap().to_vec();
    /// assert_eq!((&g[8..], &g[..2]), (&[0.0, 0.0][..], &[1.0, 1.0][..]));
    /// # Ok::<(), nabla::Error>(())
    /// ```
    pub fn with_padding_idx(mut self, padding_idx: isize) -> Result<Self> {
        let rows = self.weight.shape()[0];
        let index = if padding_idx < 0 { padding_idx + rows as isize } else { padding_idx };
        if index < 0 || index as usize >= rows {
            return Err(Error::invalid("Embedding", format!("padding_idx {padding_idx} is outside a table of {rows} rows")));
        }
        let index = index as usize;
        self.weight.update(|w| w.index_axis_mut(ndarray::Axis(0), index).fill(T::zero()));
        self.padding_idx = Some(index);
        Ok(self)
    }

    /// The vectors of integer `ids`; `Err` for an id outside the table. (The [`Module`]
    /// forward, for use inside a `Sequential`, takes the ids as a float tensor of whole
    /// numbers: call it as `Module::forward(&table, &ids)`.)
    pub fn forward(&self, ids: &ArrayD<usize>) -> Result<Tensor<T>> {
        let weight = self.weight.tensor();
        let flat: Vec<usize> = ids.iter().copied().collect();
        let rows = weight.index_select(0, &flat).map_err(|e| match e {
            Error::Index { index, size, .. } => Error::Index { op: "Embedding", index, dim: 0, size },
            other => other,
        })?;
        // The padding row's lookups come from a detached copy: same values, no gradient.
        let rows = match self.padding_idx {
            Some(pad) if flat.contains(&pad) => {
                let dim = weight.shape()[1];
                let keep =
                    ArrayD::from_shape_fn(ndarray::IxDyn(&[flat.len(), dim]), |i| if flat[i[0]] == pad { T::zero() } else { T::one() });
                let keep = Tensor::from(keep);
                rows.mul(&keep)?.add(&rows.detach().mul(&(1.0 - &keep))?)?
            }
            _ => rows,
        };
        let mut shape = ids.shape().to_vec();
        shape.push(weight.shape()[1]);
        Ok(rows.reshape_to(&shape))
    }
}

impl<T: Element> Module<T> for Embedding<T> {
    /// Ids given as a float tensor of whole numbers (for use inside a `Sequential`);
    /// the inherent [`Embedding::forward`] takes integer ids directly.
    fn forward(&self, ids: &Tensor<T>) -> Result<Tensor<T>> {
        let as_index = |v: T| v.to_usize().filter(|&i| T::of(i as f64) == v);
        let ids = ids
            .value()
            .iter()
            .map(|&v| as_index(v).ok_or_else(|| Error::invalid("Embedding", format!("id {v} is not a non-negative whole number"))))
            .collect::<Result<Vec<_>>>()
            .map(|v| ArrayD::from_shape_vec(ids.shape(), v).expect("same shape"))?;
        self.forward(&ids)
    }

    fn named_parameters(&self) -> Vec<(String, Param<T>)> {
        vec![("weight".into(), self.weight.clone())]
    }
}
