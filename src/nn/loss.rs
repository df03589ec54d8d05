//! Losses as modules: MseLoss, NllLoss, CrossEntropyLoss, MarginRankingLoss. Each holds its
//! configuration and calls the function of the same name in [`super::functional`].

use super::functional::{self, Reduction};
use crate::error::Result;
use crate::tensor::{Element, Tensor};
use ndarray::ArrayD;

/// Mean squared error, as `torch.nn.MSELoss`.
#[derive(Debug, Clone, Copy, Default)]
pub struct MseLoss {
    /// How per-element losses combine.
    pub reduction: Reduction,
}

impl MseLoss {
    /// The loss of `input` against `target` (same shape).
    pub fn forward<T: Element>(&self, input: &Tensor<T>, target: &Tensor<T>) -> Result<Tensor<T>> {
        functional::mse_loss(input, target, self.reduction)
    }
}

/// Negative log-likelihood of log-probabilities, as `torch.nn.NLLLoss`.
#[derive(Debug, Clone, Default)]
pub struct NllLoss<T: Element = f32> {
    /// Per-class weights `[C]`.
    pub weight: Option<Tensor<T>>,
    /// Labels equal to this contribute nothing (PyTorch's `ignore_index`).
    pub ignore_index: Option<usize>,
    /// How per-sample losses combine.
    pub reduction: Reduction,
}

impl<T: Element> NllLoss<T> {
    /// The loss of log-probabilities `input` (class dim 1) at the labels `target`.
    pub fn forward(&self, input: &Tensor<T>, target: &ArrayD<usize>) -> Result<Tensor<T>> {
        functional::nll_loss(input, target, self.weight.as_ref(), self.ignore_index, self.reduction)
    }
}

/// Cross-entropy of logits against labels, as `torch.nn.CrossEntropyLoss`.
///
/// ```
/// use nabla::prelude::*;
/// let loss = nn::CrossEntropyLoss::default();
/// let logits = Tensor::from_vec(vec![2.0, 0.0, 0.0, 2.0], &[2, 2])?;
/// let target = ndarray::arr1(&[0usize, 1]).into_dyn();
/// let expected = (1.0 + (-2.0f32).exp()).ln();          // -log softmax at the label
/// assert!((loss.forward(&logits, &target)?.item()? - expected).abs() < 1e-6);
/// # Ok::<(), nabla::Error>(())
/// ```
#[derive(Debug, Clone, Default)]
pub struct CrossEntropyLoss<T: Element = f32> {
    /// Per-class weights `[C]`.
    pub weight: Option<Tensor<T>>,
    /// Labels equal to this contribute nothing.
    pub ignore_index: Option<usize>,
    /// PyTorch's `label_smoothing`, in `[0, 1]`.
    pub label_smoothing: f64,
    /// How per-sample losses combine.
    pub reduction: Reduction,
}

impl<T: Element> CrossEntropyLoss<T> {
    /// The loss of logits `input` (`(N, C)` or `(N, C, d…)`) at the labels `target`.
    pub fn forward(&self, input: &Tensor<T>, target: &ArrayD<usize>) -> Result<Tensor<T>> {
        functional::cross_entropy_with(input, target, self.weight.as_ref(), self.ignore_index, self.label_smoothing, self.reduction)
    }
}

/// `max(0, -y·(x1 - x2) + margin)`, as `torch.nn.MarginRankingLoss`.
#[derive(Debug, Clone, Copy, Default)]
pub struct MarginRankingLoss {
    /// The margin.
    pub margin: f64,
    /// How per-pair losses combine.
    pub reduction: Reduction,
}

impl MarginRankingLoss {
    /// The loss for pairs `(x1, x2)` with `y = 1` where `x1` should rank higher, `-1` where
    /// `x2` should.
    pub fn forward<T: Element>(&self, x1: &Tensor<T>, x2: &Tensor<T>, y: &Tensor<T>) -> Result<Tensor<T>> {
        functional::margin_ranking_loss(x1, x2, y, self.margin, self.reduction)
    }
}
