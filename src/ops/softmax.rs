//! Softmax and log-softmax, composed from logsumexp (which is stable), so they need no
//! backward code of their own and stay finite for logits of any size.

use super::normalize_dim;
use crate::error::Result;
use crate::tensor::{Element, Tensor};

impl<T: Element> Tensor<T> {
    /// `softmax(x)_i = exp(x_i) / Σ_j exp(x_j)` along `dim`, computed as
    /// `exp(x - logsumexp(x))`: finite for logits of any size.
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

    /// `log_softmax(x)_i = x_i - logsumexp(x)` along `dim`: finite where softmax underflows
    /// to 0.
    pub fn log_softmax(&self, dim: isize) -> Result<Tensor<T>> {
        normalize_dim("log_softmax", dim, self.ndim())?;
        let lse = self.logsumexp_dims(&[dim], true)?;
        self.sub(&lse)
    }
}
