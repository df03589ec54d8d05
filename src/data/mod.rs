//! Data: mini-batch iteration with seeded shuffling, and the embedded UCI handwritten digits.
//!
//! Full-batch gradient descent, stochastic gradient descent and mini-batch SGD are one loop
//! with batch sizes `N`, `1` and `B`:
//!
//! ```
//! use nabla::prelude::*;
//! let x = Tensor::arange(0.0, 10.0, 1.0)?.reshape(&[5, 2])?;
//! let y = ndarray::Array1::from(vec![0usize, 1, 0, 1, 0]).into_dyn();
//! let mut rng = nabla::rng(0);
//! let sizes: Vec<usize> = data::Batches::new(&x, &y, 2, &mut rng).map(|(bx, _)| bx.shape()[0]).collect();
//! assert_eq!(sizes, vec![2, 2, 1]);
//! let full: Vec<_> = data::Batches::sequential(&x, &y, 5).collect();   // full batch
//! assert_eq!(full.len(), 1);
//! # Ok::<(), nabla::Error>(())
//! ```

mod digits;

pub use digits::{Digits, Split, digits};

use crate::tensor::{Element, Tensor};
use ndarray::{ArrayD, Axis};
use rand::Rng;
use rand::seq::SliceRandom;

/// Something with one row per sample that batches can be cut from.
pub trait Rows: Sized {
    /// The number of samples (the size of dim 0).
    fn rows(&self) -> usize;
    /// The samples at `indices`, in that order.
    fn select_rows(&self, indices: &[usize]) -> Self;
}

impl<T: Element> Rows for Tensor<T> {
    fn rows(&self) -> usize {
        self.shape().first().copied().unwrap_or(0)
    }
    fn select_rows(&self, indices: &[usize]) -> Self {
        Tensor::from(self.value().select(Axis(0), indices))
    }
}

impl Rows for ArrayD<usize> {
    fn rows(&self) -> usize {
        self.shape().first().copied().unwrap_or(0)
    }
    fn select_rows(&self, indices: &[usize]) -> Self {
        self.select(Axis(0), indices)
    }
}

/// An iterator over `(inputs, targets)` mini-batches, as PyTorch's `DataLoader` over a
/// `TensorDataset`: in a seeded random order ([`Batches::new`]) or in order
/// ([`Batches::sequential`]); the last batch is smaller unless [`Batches::drop_last`].
pub struct Batches<X: Rows, Y: Rows> {
    inputs: X,
    targets: Y,
    order: Vec<usize>,
    batch_size: usize,
    drop_last: bool,
    next: usize,
}

impl<X: Rows + Clone, Y: Rows + Clone> Batches<X, Y> {
    /// Shuffled batches of `batch_size` samples (at least 1); the order comes from `rng`.
    ///
    /// **Panics** if `inputs` and `targets` hold different numbers of samples.
    pub fn new(inputs: &X, targets: &Y, batch_size: usize, rng: &mut impl Rng) -> Self {
        let mut batches = Self::sequential(inputs, targets, batch_size);
        batches.order.shuffle(rng);
        batches
    }

    /// Batches in the samples' order.
    ///
    /// **Panics** if `inputs` and `targets` hold different numbers of samples.
    pub fn sequential(inputs: &X, targets: &Y, batch_size: usize) -> Self {
        assert_eq!(inputs.rows(), targets.rows(), "Batches: {} inputs but {} targets", inputs.rows(), targets.rows());
        Batches {
            inputs: inputs.clone(),
            targets: targets.clone(),
            order: (0..inputs.rows()).collect(),
            batch_size: batch_size.max(1),
            drop_last: false,
            next: 0,
        }
    }

    /// Batches of the samples `order` lists, in that order (a shard of a distributed epoch,
    /// `nabla::distributed::shard`; a sample may be listed twice). `Err` for an index past
    /// the samples or when `inputs` and `targets` hold different numbers of samples.
    ///
    /// ```
    /// use nabla::prelude::*;
    /// let x = Tensor::arange(0.0, 5.0, 1.0)?.reshape(&[5, 1])?;
    /// let y = ndarray::Array1::from_iter(0..5usize).into_dyn();
    /// let firsts: Vec<f32> = data::Batches::with_order(&x, &y, vec![4, 0, 2], 2)?.map(|(x, _)| x.to_vec()[0]).collect();
    /// assert_eq!(firsts, vec![4.0, 2.0]);
    /// # Ok::<(), nabla::Error>(())
    /// ```
    pub fn with_order(inputs: &X, targets: &Y, order: Vec<usize>, batch_size: usize) -> crate::Result<Self> {
        if inputs.rows() != targets.rows() {
            return Err(crate::Error::invalid("Batches", format!("{} inputs but {} targets", inputs.rows(), targets.rows())));
        }
        if let Some(&bad) = order.iter().find(|&&i| i >= inputs.rows()) {
            return Err(crate::Error::invalid("Batches", format!("index {bad} is past the {} samples", inputs.rows())));
        }
        Ok(Batches { order, ..Self::sequential(inputs, targets, batch_size) })
    }

    /// Skip a last batch smaller than `batch_size`.
    pub fn drop_last(mut self, drop_last: bool) -> Self {
        self.drop_last = drop_last;
        self
    }
}

impl<X: Rows, Y: Rows> Iterator for Batches<X, Y> {
    type Item = (X, Y);
    fn next(&mut self) -> Option<(X, Y)> {
        let remaining = self.order.len() - self.next;
        if remaining == 0 || (self.drop_last && remaining < self.batch_size) {
            return None;
        }
        let take = remaining.min(self.batch_size);
        let indices = &self.order[self.next..self.next + take];
        self.next += take;
        Some((self.inputs.select_rows(indices), self.targets.select_rows(indices)))
    }
}
