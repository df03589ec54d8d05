//! Losses as modules (the table in [`nn`](super)). Each holds its configuration and calls
//! the function of the same name in [`super::functional`].

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

    /// The loss of logits `input` against class probabilities `target` of the same shape
    /// (PyTorch's float target; `ignore_index` does not apply).
    pub fn forward_probs(&self, input: &Tensor<T>, target: &Tensor<T>) -> Result<Tensor<T>> {
        functional::cross_entropy_probs(input, target, self.weight.as_ref(), self.label_smoothing, self.reduction)
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

/// Mean absolute error, as `torch.nn.L1Loss`.
#[derive(Debug, Clone, Copy, Default)]
pub struct L1Loss {
    /// How per-element losses combine.
    pub reduction: Reduction,
}

impl L1Loss {
    /// The loss of `input` against `target` (same shape).
    pub fn forward<T: Element>(&self, input: &Tensor<T>, target: &Tensor<T>) -> Result<Tensor<T>> {
        functional::l1_loss(input, target, self.reduction)
    }
}

/// Quadratic below `beta`, linear above, as `torch.nn.SmoothL1Loss` (β = 1 by default).
#[derive(Debug, Clone, Copy)]
pub struct SmoothL1Loss {
    /// Where the loss turns linear (0: the L1 loss).
    pub beta: f64,
    /// How per-element losses combine.
    pub reduction: Reduction,
}

impl Default for SmoothL1Loss {
    fn default() -> Self {
        SmoothL1Loss { beta: 1.0, reduction: Reduction::Mean }
    }
}

impl SmoothL1Loss {
    /// The loss of `input` against `target` (same shape).
    pub fn forward<T: Element>(&self, input: &Tensor<T>, target: &Tensor<T>) -> Result<Tensor<T>> {
        functional::smooth_l1_loss(input, target, self.beta, self.reduction)
    }
}

/// Quadratic below `delta`, linear with slope `delta` above, as `torch.nn.HuberLoss`
/// (δ = 1 by default).
#[derive(Debug, Clone, Copy)]
pub struct HuberLoss {
    /// Where the loss turns linear.
    pub delta: f64,
    /// How per-element losses combine.
    pub reduction: Reduction,
}

impl Default for HuberLoss {
    fn default() -> Self {
        HuberLoss { delta: 1.0, reduction: Reduction::Mean }
    }
}

impl HuberLoss {
    /// The loss of `input` against `target` (same shape).
    pub fn forward<T: Element>(&self, input: &Tensor<T>, target: &Tensor<T>) -> Result<Tensor<T>> {
        functional::huber_loss(input, target, self.delta, self.reduction)
    }
}

/// Binary cross-entropy of probabilities, as `torch.nn.BCELoss`.
#[derive(Debug, Clone, Default)]
pub struct BceLoss<T: Element = f32> {
    /// Weights broadcast against the input.
    pub weight: Option<Tensor<T>>,
    /// How per-element losses combine.
    pub reduction: Reduction,
}

impl<T: Element> BceLoss<T> {
    /// The loss of probabilities `input` against targets in `[0, 1]` (same shape).
    pub fn forward(&self, input: &Tensor<T>, target: &Tensor<T>) -> Result<Tensor<T>> {
        functional::binary_cross_entropy(input, target, self.weight.as_ref(), self.reduction)
    }
}

/// Binary cross-entropy of logits, as `torch.nn.BCEWithLogitsLoss`.
#[derive(Debug, Clone, Default)]
pub struct BceWithLogitsLoss<T: Element = f32> {
    /// Weights broadcast against the input.
    pub weight: Option<Tensor<T>>,
    /// Weights of the positive term, along the last dim.
    pub pos_weight: Option<Tensor<T>>,
    /// How per-element losses combine.
    pub reduction: Reduction,
}

impl<T: Element> BceWithLogitsLoss<T> {
    /// The loss of logits `input` against targets in `[0, 1]` (same shape).
    pub fn forward(&self, input: &Tensor<T>, target: &Tensor<T>) -> Result<Tensor<T>> {
        functional::binary_cross_entropy_with_logits(input, target, self.weight.as_ref(), self.pos_weight.as_ref(), self.reduction)
    }
}

/// `ln(1 + e^{-y x})` for labels ±1, as `torch.nn.SoftMarginLoss`.
#[derive(Debug, Clone, Copy, Default)]
pub struct SoftMarginLoss {
    /// How per-element losses combine.
    pub reduction: Reduction,
}

impl SoftMarginLoss {
    /// The loss of `input` against labels ±1 (same shape).
    pub fn forward<T: Element>(&self, input: &Tensor<T>, target: &Tensor<T>) -> Result<Tensor<T>> {
        functional::soft_margin_loss(input, target, self.reduction)
    }
}

/// `x` for `y = 1`, `max(0, margin - x)` for `y = -1`, as `torch.nn.HingeEmbeddingLoss`
/// (margin 1 by default).
#[derive(Debug, Clone, Copy)]
pub struct HingeEmbeddingLoss {
    /// The margin.
    pub margin: f64,
    /// How per-element losses combine.
    pub reduction: Reduction,
}

impl Default for HingeEmbeddingLoss {
    fn default() -> Self {
        HingeEmbeddingLoss { margin: 1.0, reduction: Reduction::Mean }
    }
}

impl HingeEmbeddingLoss {
    /// The loss of distances `input` against labels ±1 (same shape).
    pub fn forward<T: Element>(&self, input: &Tensor<T>, target: &Tensor<T>) -> Result<Tensor<T>> {
        functional::hinge_embedding_loss(input, target, self.margin, self.reduction)
    }
}

/// The Kullback–Leibler divergence, as `torch.nn.KLDivLoss`; the input holds
/// log-probabilities.
#[derive(Debug, Clone, Copy, Default)]
pub struct KlDivLoss {
    /// How terms combine (`BatchMean` is the divergence per sample).
    pub reduction: functional::KlReduction,
    /// Whether the target holds log-probabilities too.
    pub log_target: bool,
}

impl KlDivLoss {
    /// The divergence of `input` from `target` (same shape).
    pub fn forward<T: Element>(&self, input: &Tensor<T>, target: &Tensor<T>) -> Result<Tensor<T>> {
        functional::kl_div(input, target, self.reduction, self.log_target)
    }
}

/// The Poisson negative log-likelihood, as `torch.nn.PoissonNLLLoss` (`log_input` true,
/// `full` false, `eps` 1e-8 by default).
#[derive(Debug, Clone, Copy)]
pub struct PoissonNllLoss {
    /// Whether the input is the log of the rate.
    pub log_input: bool,
    /// Whether to add Stirling's approximation of `ln y!`.
    pub full: bool,
    /// Added to the rate before its log when `log_input` is false.
    pub eps: f64,
    /// How per-element losses combine.
    pub reduction: Reduction,
}

impl Default for PoissonNllLoss {
    fn default() -> Self {
        PoissonNllLoss { log_input: true, full: false, eps: 1e-8, reduction: Reduction::Mean }
    }
}

impl PoissonNllLoss {
    /// The loss of rates `input` against counts `target` (same shape).
    pub fn forward<T: Element>(&self, input: &Tensor<T>, target: &Tensor<T>) -> Result<Tensor<T>> {
        functional::poisson_nll_loss(input, target, self.log_input, self.full, self.eps, self.reduction)
    }
}

/// The Gaussian negative log-likelihood, as `torch.nn.GaussianNLLLoss` (`full` false,
/// `eps` 1e-6 by default).
#[derive(Debug, Clone, Copy)]
pub struct GaussianNllLoss {
    /// Whether to add the constant `ln(2π)/2`.
    pub full: bool,
    /// The variance's floor.
    pub eps: f64,
    /// How per-element losses combine.
    pub reduction: Reduction,
}

impl Default for GaussianNllLoss {
    fn default() -> Self {
        GaussianNllLoss { full: false, eps: 1e-6, reduction: Reduction::Mean }
    }
}

impl GaussianNllLoss {
    /// The loss of means `input` against `target`, with variances `var`.
    pub fn forward<T: Element>(&self, input: &Tensor<T>, target: &Tensor<T>, var: &Tensor<T>) -> Result<Tensor<T>> {
        functional::gaussian_nll_loss(input, target, var, self.full, self.eps, self.reduction)
    }
}

/// The triplet margin loss, as `torch.nn.TripletMarginLoss` (margin 1, `p` 2, no swap by
/// default).
#[derive(Debug, Clone, Copy)]
pub struct TripletMarginLoss {
    /// The margin.
    pub margin: f64,
    /// The norm of the distances.
    pub p: f64,
    /// Use the smaller of `d(a, n)` and `d(p, n)`.
    pub swap: bool,
    /// How per-triplet losses combine.
    pub reduction: Reduction,
}

impl Default for TripletMarginLoss {
    fn default() -> Self {
        TripletMarginLoss { margin: 1.0, p: 2.0, swap: false, reduction: Reduction::Mean }
    }
}

impl TripletMarginLoss {
    /// The loss of `(anchor, positive, negative)` triplets, `(N, D)` each.
    pub fn forward<T: Element>(&self, anchor: &Tensor<T>, positive: &Tensor<T>, negative: &Tensor<T>) -> Result<Tensor<T>> {
        functional::triplet_margin_loss(anchor, positive, negative, self.margin, self.p, self.swap, self.reduction)
    }
}

/// The cosine embedding loss, as `torch.nn.CosineEmbeddingLoss` (margin 0 by default).
#[derive(Debug, Clone, Copy, Default)]
pub struct CosineEmbeddingLoss {
    /// The margin below which dissimilar pairs cost nothing.
    pub margin: f64,
    /// How per-pair losses combine.
    pub reduction: Reduction,
}

impl CosineEmbeddingLoss {
    /// The loss of pairs `x1`, `x2` `(N, D)` with labels `y` `(N)` of ±1.
    pub fn forward<T: Element>(&self, x1: &Tensor<T>, x2: &Tensor<T>, y: &Tensor<T>) -> Result<Tensor<T>> {
        functional::cosine_embedding_loss(x1, x2, y, self.margin, self.reduction)
    }
}

/// The multi-class hinge loss, as `torch.nn.MultiMarginLoss` (p 1, margin 1 by default;
/// see [`functional::multi_margin_loss`]).
#[derive(Debug, Clone)]
pub struct MultiMarginLoss<T: Element = f32> {
    /// The power of the hinge, 1 or 2.
    pub p: u32,
    /// The margin by which the target's score should lead.
    pub margin: f64,
    /// Per-class weights, `(C)`.
    pub weight: Option<Tensor<T>>,
    /// How per-sample losses combine.
    pub reduction: Reduction,
}

impl<T: Element> Default for MultiMarginLoss<T> {
    fn default() -> Self {
        MultiMarginLoss { p: 1, margin: 1.0, weight: None, reduction: Reduction::Mean }
    }
}

impl<T: Element> MultiMarginLoss<T> {
    /// The loss of scores `input` `(N, C)` for classes `target` `(N)`.
    pub fn forward(&self, input: &Tensor<T>, target: &ArrayD<usize>) -> Result<Tensor<T>> {
        functional::multi_margin_loss(input, target, self.p, self.margin, self.weight.as_ref(), self.reduction)
    }
}

/// The multi-label hinge loss, as `torch.nn.MultiLabelMarginLoss` (see
/// [`functional::multilabel_margin_loss`]).
#[derive(Debug, Clone, Copy, Default)]
pub struct MultiLabelMarginLoss {
    /// How per-sample losses combine.
    pub reduction: Reduction,
}

impl MultiLabelMarginLoss {
    /// The loss of scores `input` `(N, C)` for class lists `target` `(N, C)`, each ended by
    /// its first negative entry.
    pub fn forward<T: Element>(&self, input: &Tensor<T>, target: &ArrayD<i64>) -> Result<Tensor<T>> {
        functional::multilabel_margin_loss(input, target, self.reduction)
    }
}
