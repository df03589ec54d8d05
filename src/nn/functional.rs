//! The function forms of layers and losses, as `torch.nn.functional`.
//!
//! Class labels are `ndarray::ArrayD<usize>` (re-exported as `nabla::ndarray`): one index
//! per sample, never floats.

use crate::error::{Error, Result};
use crate::tensor::{Creation, Element, Tensor};
use ndarray::{ArrayD, IxDyn};
use rand::Rng;

pub use super::norm::{batch_norm, group_norm, layer_norm};
pub use super::padding::{PadMode, pad};
pub use super::regression_losses::{
    KlReduction, binary_cross_entropy, binary_cross_entropy_with_logits, cosine_embedding_loss, gaussian_nll_loss, hinge_embedding_loss,
    huber_loss, kl_div, l1_loss, multi_margin_loss, multilabel_margin_loss, poisson_nll_loss, smooth_l1_loss, soft_margin_loss,
    triplet_margin_loss,
};

/// How a loss combines its per-element values, as PyTorch's `reduction`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Reduction {
    /// One value per element.
    None,
    /// The (weighted) mean (PyTorch's default).
    #[default]
    Mean,
    /// The sum.
    Sum,
}

impl Reduction {
    /// Parses PyTorch's names `"none"`, `"mean"`, `"sum"`.
    pub fn parse(name: &str) -> Result<Reduction> {
        match name {
            "none" => Ok(Reduction::None),
            "mean" => Ok(Reduction::Mean),
            "sum" => Ok(Reduction::Sum),
            other => Err(Error::invalid("reduction", format!("{other:?} is not one of \"none\", \"mean\", \"sum\""))),
        }
    }

    pub(crate) fn apply<T: Element>(self, losses: Tensor<T>) -> Tensor<T> {
        match self {
            Reduction::None => losses,
            Reduction::Mean => losses.mean(),
            Reduction::Sum => losses.sum(),
        }
    }
}

/// `max(0, x)`.
pub fn relu<T: Element>(x: &Tensor<T>) -> Tensor<T> {
    x.relu()
}

/// `x` for `x > 0`, else `negative_slope · x`.
pub fn leaky_relu<T: Element>(x: &Tensor<T>, negative_slope: f64) -> Tensor<T> {
    x.leaky_relu(T::of(negative_slope))
}

/// `ln(1 + e^{βx}) / β` (linear above `threshold`).
pub fn softplus<T: Element>(x: &Tensor<T>, beta: f64, threshold: f64) -> Tensor<T> {
    x.softplus(T::of(beta), T::of(threshold))
}

/// `max(0, x) + a · min(0, x)` with `a` a learnable slope: one value, or one per channel
/// (dim 1 of `x`), as `torch.nn.functional.prelu`.
pub fn prelu<T: Element>(x: &Tensor<T>, weight: &Tensor<T>) -> Result<Tensor<T>> {
    let channels = if x.ndim() >= 2 { x.shape()[1] } else { 1 };
    let a = match weight.len() {
        1 => weight.reshape_to(&[]),
        n if n == channels && x.ndim() >= 2 => {
            let mut shape = vec![1; x.ndim()];
            shape[1] = n;
            weight.reshape_to(&shape)
        }
        n => return Err(Error::shape("prelu", format!("{n} slopes for an input of shape {:?} ({channels} channels)", x.shape()))),
    };
    // y = x · (m + (1 - m) a) with the constant mask m = 1[x > 0]: the derivative in x is 1
    // above 0 and a elsewhere, NaN included, as PyTorch's `x > 0 ? g : a g`.
    let above = x.constant_map(|v| if v > T::zero() { T::one() } else { T::zero() });
    let slope = (1.0 - &above).mul(&a)?.add(&above)?;
    x.mul(&slope)
}

/// Randomised leaky ReLU, as `torch.nn.functional.rrelu`: in training each non-positive
/// element (0 included, NaN not, as PyTorch's `input <= 0`) gets its own slope drawn from
/// `U(lower, upper)`; in evaluation the slope is `(lower + upper) / 2`.
pub fn rrelu<T: Element>(x: &Tensor<T>, lower: f64, upper: f64, training: bool, rng: &mut impl Rng) -> Tensor<T> {
    if !training {
        return x.leaky_relu(T::of((lower + upper) / 2.0));
    }
    let (lower, upper) = (T::of(lower), T::of(upper));
    let slopes = Tensor::<T>::uniform(x.shape(), lower, upper, rng);
    let factor =
        Tensor::from(ndarray::Zip::from(x.array()).and(slopes.array()).map_collect(|&v, &a| if v <= T::zero() { a } else { T::one() }));
    x * &factor
}

/// Cross-entropy against class probabilities, as `torch.nn.functional.cross_entropy` with
/// a float `target` shaped as the logits `input` (`(C)`, `(N, C)` or `(N, C, d…)`, classes
/// along dim 1): `-Σ_c w_c t'_c log softmax(x)_c` with the smoothed target
/// `t' = (1 - ε) t + ε/C`. `Mean` divides by the number of samples (`N` times the extra
/// dims), not by the weights, as PyTorch does for probability targets.
///
/// ```
/// use nabla::prelude::*;
/// use nabla::nn::functional::{cross_entropy_probs, Reduction};
/// let logits = Tensor::<f64>::from_vec(vec![0.0, 0.0], &[1, 2])?;
/// let target = Tensor::<f64>::from_vec(vec![0.5, 0.5], &[1, 2])?;
/// let loss = cross_entropy_probs(&logits, &target, None, 0.0, Reduction::Mean)?;
/// assert!((loss.item()? - 2f64.ln()).abs() < 1e-12);
/// # Ok::<(), nabla::Error>(())
/// ```
pub fn cross_entropy_probs<T: Element>(
    input: &Tensor<T>,
    target: &Tensor<T>,
    weight: Option<&Tensor<T>>,
    label_smoothing: f64,
    reduction: Reduction,
) -> Result<Tensor<T>> {
    let op = "cross_entropy";
    if input.shape() != target.shape() || input.ndim() == 0 {
        return Err(Error::shape(op, format!("probability target {:?} must have the logits' shape {:?}", target.shape(), input.shape())));
    }
    if !(0.0..=1.0).contains(&label_smoothing) {
        return Err(Error::invalid(op, format!("label_smoothing {label_smoothing} is not in [0, 1]")));
    }
    let class_dim = if input.ndim() == 1 { 0 } else { 1 };
    let classes = input.shape()[class_dim];
    let smoothed = target * (1.0 - label_smoothing) + label_smoothing / classes as f64;
    let mut terms = smoothed.mul(&input.log_softmax(class_dim as isize)?)?;
    if let Some(w) = weight {
        if w.shape() != [classes] {
            return Err(Error::shape(op, format!("weight {:?} needs one value per class, {classes}", w.shape())));
        }
        let mut shape = vec![1; input.ndim()];
        shape[class_dim] = classes;
        terms = terms.mul(&w.reshape(&shape.iter().map(|&n| n as isize).collect::<Vec<_>>())?)?;
    }
    Ok(reduction.apply(terms.sum_dims(&[class_dim as isize], false)?.neg()))
}

/// Dropout, as `torch.nn.functional.dropout`: in training, zeroes each element with
/// probability `p` and scales the rest by `1/(1-p)`; in evaluation, the identity.
pub fn dropout<T: Element>(x: &Tensor<T>, p: f64, training: bool, rng: &mut impl Rng) -> Result<Tensor<T>> {
    if !(0.0..=1.0).contains(&p) {
        return Err(Error::invalid("dropout", format!("probability {p} is not in [0, 1]")));
    }
    if !training || p == 0.0 {
        return Ok(x.clone());
    }
    let keep = T::of(if p < 1.0 { 1.0 / (1.0 - p) } else { 0.0 });
    let mask = ArrayD::from_shape_simple_fn(IxDyn(x.shape()), || if rng.random::<f64>() >= p { keep } else { T::zero() });
    x.mul(&Tensor::from(mask))
}

/// Alpha dropout, as `torch.nn.functional.alpha_dropout`, for SELU networks: in training,
/// each element is kept with probability `1 - p` or set to SELU's negative saturation
/// `α' = -scale·α`, and the result is scaled by `a` and shifted by `b` so that a zero-mean,
/// unit-variance input keeps its mean and variance (`a = ((1-p)(1 + p α'²))^{-1/2}`,
/// `b = -a α' p`); in evaluation, or for `p = 0`, the identity; `p = 1` gives zeros.
pub fn alpha_dropout<T: Element>(x: &Tensor<T>, p: f64, training: bool, rng: &mut impl Rng) -> Result<Tensor<T>> {
    if !(0.0..=1.0).contains(&p) {
        return Err(Error::invalid("alpha_dropout", format!("probability {p} is not in [0, 1]")));
    }
    if !training || p == 0.0 {
        return Ok(x.clone());
    }
    if p == 1.0 {
        return Ok(x * 0.0);
    }
    const SATURATION: f64 = -1.758_099_340_847_376_6;
    let a = ((1.0 - p) * (1.0 + p * SATURATION * SATURATION)).powf(-0.5);
    let b = -a * SATURATION * p;
    let keep = ArrayD::from_shape_simple_fn(IxDyn(x.shape()), || if rng.random::<f64>() >= p { T::one() } else { T::zero() });
    let keep = Tensor::from(keep);
    let dropped = (1.0 - &keep) * SATURATION;
    Ok((x.mul(&keep)? + dropped) * a + b)
}

/// Mean squared error `(input - target)²`, reduced; shapes must match. Reduced (`Mean`,
/// `Sum`), it records one op, `mse_loss`, as PyTorch's does: one pass forward, and
/// `2 (input − target) · gy` (over the element count for `Mean`) backward.
///
/// ```
/// use nabla::prelude::*;
/// use nabla::nn::functional::{mse_loss, Reduction};
/// let a = Tensor::from_vec(vec![1.0, 2.0], &[2])?;
/// let b = Tensor::from_vec(vec![0.0, 4.0], &[2])?;
/// assert_eq!(mse_loss(&a, &b, Reduction::Mean)?.item()?, 2.5);
/// # Ok::<(), nabla::Error>(())
/// ```
pub fn mse_loss<T: Element>(input: &Tensor<T>, target: &Tensor<T>, reduction: Reduction) -> Result<Tensor<T>> {
    if input.shape() != target.shape() {
        return Err(Error::shape("mse_loss", format!("input {:?} and target {:?} differ", input.shape(), target.shape())));
    }
    Ok(match reduction {
        Reduction::None => {
            let diff = input.sub(target)?;
            &diff * &diff
        }
        Reduction::Mean | Reduction::Sum => input.squared_error(target, reduction == Reduction::Mean),
    })
}

/// The class dim of `(N, C, d…)` moved last and flattened: `[N·d…, C]`, with the labels
/// flattened alongside. `Err` when label and input shapes disagree.
fn rows_by_class<T: Element>(op: &'static str, input: &Tensor<T>, target: &ArrayD<usize>) -> Result<(Tensor<T>, Vec<usize>, Vec<usize>)> {
    let (classes, expected): (usize, Vec<usize>) = match input.ndim() {
        1 => (input.shape()[0], vec![]),
        0 => return Err(Error::shape(op, "input needs a class dim, got a 0-d tensor")),
        _ => (input.shape()[1], [&input.shape()[..1], &input.shape()[2..]].concat()),
    };
    if target.shape() != expected.as_slice() {
        return Err(Error::shape(
            op,
            format!("target {:?} does not match input {:?} (expected {expected:?})", target.shape(), input.shape()),
        ));
    }
    let rows = if input.ndim() == 1 {
        input.reshape_to(&[1, classes])
    } else if input.ndim() == 2 {
        input.reshape_to(&[target.len(), classes])
    } else {
        let mut perm: Vec<isize> = vec![0];
        perm.extend((2..input.ndim() as isize).collect::<Vec<_>>());
        perm.push(1);
        input.permute(&perm)?.reshape_to(&[target.len(), classes])
    };
    Ok((rows, target.iter().copied().collect(), expected))
}

/// Per-sample `-w[t]·logp[t]` and the per-sample weights `w[t]` (0 where ignored).
fn picked_log_probs<T: Element>(
    op: &'static str,
    rows: &Tensor<T>,
    labels: &[usize],
    weight: Option<&Tensor<T>>,
    ignore_index: Option<usize>,
) -> Result<(Tensor<T>, Tensor<T>)> {
    let classes = rows.shape()[1];
    if let Some(w) = weight
        && w.shape() != [classes]
    {
        return Err(Error::shape(op, format!("weight {:?} for {classes} classes", w.shape())));
    }
    let class_weight = weight.map(|w| w.to_vec());
    let mut index = Vec::with_capacity(labels.len());
    let mut sample_weight = Vec::with_capacity(labels.len());
    for &t in labels {
        if Some(t) == ignore_index {
            index.push(0);
            sample_weight.push(T::zero());
        } else if t >= classes {
            return Err(Error::Index { op, index: t, dim: 1, size: classes });
        } else {
            index.push(t);
            sample_weight.push(class_weight.as_ref().map(|w| w[t]).unwrap_or(T::one()));
        }
    }
    let index = ArrayD::from_shape_vec(IxDyn(&[labels.len(), 1]), index).expect("one per label");
    let picked = rows.gather(1, &index)?.reshape_to(&[labels.len()]);
    let sample_weight = Tensor::<T>::from_vec(sample_weight, &[labels.len()])?;
    Ok((&picked.neg() * &sample_weight, sample_weight))
}

/// Negative log-likelihood of log-probabilities `input` (`(N, C)`, `(N, C, d…)` or `(C,)`)
/// at the labels `target` (`(N)`, `(N, d…)` or `()`), as `torch.nn.functional.nll_loss`:
/// `-w[t]·input[t]` per sample, 0 where the label is `ignore_index`; the mean divides by
/// the sum of the weights of the samples not ignored.
///
/// ```
/// use nabla::prelude::*;
/// use nabla::nn::functional::{nll_loss, Reduction};
/// let logp = Tensor::from_vec(vec![-0.5, -1.0, -2.0, -0.1], &[2, 2])?;
/// let target = ndarray::arr1(&[1usize, 1]).into_dyn();
/// assert_eq!(nll_loss(&logp, &target, None, None, Reduction::Mean)?.item()?, 0.55);
/// # Ok::<(), nabla::Error>(())
/// ```
pub fn nll_loss<T: Element>(
    input: &Tensor<T>,
    target: &ArrayD<usize>,
    weight: Option<&Tensor<T>>,
    ignore_index: Option<usize>,
    reduction: Reduction,
) -> Result<Tensor<T>> {
    let op = "nll_loss";
    let (rows, labels, label_shape) = rows_by_class(op, input, target)?;
    let (losses, sample_weight) = picked_log_probs(op, &rows, &labels, weight, ignore_index)?;
    Ok(match reduction {
        Reduction::None => losses.reshape_to(&label_shape),
        Reduction::Sum => losses.sum(),
        Reduction::Mean => losses.sum().div(&sample_weight.sum())?,
    })
}

/// Cross-entropy of logits `input` (class dim 1) against labels with PyTorch's defaults
/// (no class weights, nothing ignored, no label smoothing, the mean):
/// `mean_i -log softmax(input_i)[target_i]`. See [`cross_entropy_with`] for the options.
///
/// ```
/// use nabla::prelude::*;
/// let logits = Tensor::zeros(&[4, 10]);                   // uniform: loss = ln 10
/// let target = ndarray::Array1::from(vec![0usize, 3, 9, 2]).into_dyn();
/// let loss = nn::functional::cross_entropy(&logits, &target)?;
/// assert!((loss.item()? - 10f32.ln()).abs() < 1e-6);
/// # Ok::<(), nabla::Error>(())
/// ```
pub fn cross_entropy<T: Element>(input: &Tensor<T>, target: &ArrayD<usize>) -> Result<Tensor<T>> {
    cross_entropy_with(input, target, None, None, 0.0, Reduction::Mean)
}

/// Cross-entropy with every option of `torch.nn.functional.cross_entropy`:
/// `nll_loss(log_softmax(input, 1), target)` with per-class `weight`, `ignore_index`, and
/// PyTorch's label smoothing `ε`: `(1-ε)·nll + ε/C · Σ_c -w_c·log p_c`.
///
/// ```
/// use nabla::prelude::*;
/// use nabla::nn::functional::{cross_entropy_with, Reduction};
/// let logits = Tensor::zeros(&[2, 4]);
/// let target = ndarray::arr1(&[1usize, 3]).into_dyn();
/// let per_sample = cross_entropy_with(&logits, &target, None, Some(3), 0.0, Reduction::None)?;
/// assert_eq!(per_sample.to_vec(), vec![4f32.ln(), 0.0]);      // the second is ignored
/// # Ok::<(), nabla::Error>(())
/// ```
pub fn cross_entropy_with<T: Element>(
    input: &Tensor<T>,
    target: &ArrayD<usize>,
    weight: Option<&Tensor<T>>,
    ignore_index: Option<usize>,
    label_smoothing: f64,
    reduction: Reduction,
) -> Result<Tensor<T>> {
    if !(0.0..=1.0).contains(&label_smoothing) {
        return Err(Error::invalid("cross_entropy", format!("label_smoothing {label_smoothing} is not in [0, 1]")));
    }
    if input.ndim() == 0 {
        return Err(Error::shape("cross_entropy", "input needs a class dim, got a 0-d tensor"));
    }
    let class_dim = if input.ndim() == 1 { 0 } else { 1 };
    let log_probs = input.log_softmax(class_dim)?;
    // Errors name the op the caller called.
    let nll = nll_loss(&log_probs, target, weight, ignore_index, reduction).map_err(|e| e.in_op("cross_entropy"))?;
    if label_smoothing == 0.0 {
        return Ok(nll);
    }
    let (rows, labels, label_shape) = rows_by_class("cross_entropy", &log_probs, target)?;
    let classes = rows.shape()[1];
    let weighted = match weight {
        Some(w) => rows.mul(w)?,
        None => rows.clone(),
    };
    let not_ignored: Vec<T> = labels.iter().map(|&t| if Some(t) == ignore_index { T::zero() } else { T::one() }).collect();
    let not_ignored = Tensor::<T>::from_vec(not_ignored, &[labels.len()])?;
    let smooth = &weighted.sum_dims(&[1], false)?.neg() * &not_ignored;
    let smooth = match reduction {
        Reduction::None => smooth.reshape_to(&label_shape),
        Reduction::Sum => smooth.sum(),
        Reduction::Mean => {
            let denominator = match weight {
                Some(_) => picked_log_probs("cross_entropy", &rows, &labels, weight, ignore_index)?.1.sum(),
                None => not_ignored.sum(),
            };
            smooth.sum().div(&denominator)?
        }
    };
    Ok(&nll * (1.0 - label_smoothing) + &smooth * (label_smoothing / classes as f64))
}

/// `max(0, -y·(x1 - x2) + margin)` with `y ∈ {1, -1}` saying which input should rank
/// higher, as `torch.nn.functional.margin_ranking_loss`.
pub fn margin_ranking_loss<T: Element>(
    x1: &Tensor<T>,
    x2: &Tensor<T>,
    y: &Tensor<T>,
    margin: f64,
    reduction: Reduction,
) -> Result<Tensor<T>> {
    // clamp, not relu: PyTorch passes the gradient at exactly 0 (clamp_min).
    let losses = y.neg().mul(&x1.sub(x2)?)?.add_scalar(T::of(margin)).clamp(T::zero(), T::infinity());
    Ok(reduction.apply(losses))
}

/// `nll_loss(log_softmax(logits, 1), target)` with the mean reduction: the composition
/// that [`cross_entropy`] equals (kept as its test oracle).
pub fn log_softmax_nll<T: Element>(logits: &Tensor<T>, target: &ArrayD<usize>) -> Result<Tensor<T>> {
    nll_loss(&logits.log_softmax(1)?, target, None, None, Reduction::Mean)
}

/// A constant mask `1[pred(x)]` of `x`'s values: the piecewise activations below (and the
/// losses beside them) are
/// products of `x` with such masks, so every order of gradient comes from the ops (a mask's
/// derivative is zero almost everywhere). A NaN fails every comparison.
pub(crate) fn mask<T: Element>(x: &Tensor<T>, pred: impl Fn(T) -> bool + Sync + Send) -> Tensor<T> {
    x.constant_map(move |v| if pred(v) { T::one() } else { T::zero() })
}

/// `x` where `x > 0` (or NaN), else `α(e^{x/s} - 1)`: ELU with `s = 1`, CELU with `s = α`.
fn exponential_linear<T: Element>(x: &Tensor<T>, alpha: f64, s: f64) -> Tensor<T> {
    // As PyTorch's `x <= 0 ? negative : x`: a NaN takes the linear side and its gradient 1.
    let linear = mask(x, |v| v > T::zero() || v.is_nan());
    // The exponential of the non-positive side only, so the unused side never overflows.
    let below = crate::ops::where_(&linear, &Tensor::<T>::zeros(x.shape()), x).expect("one shape");
    let negative = ((below / s).exp() - 1.0) * alpha;
    crate::ops::where_(&linear, x, &negative).expect("one shape")
}

/// `x` where `x > 0`, else `α(eˣ - 1)`, as `torch.nn.functional.elu` (α = 1 by default).
pub fn elu<T: Element>(x: &Tensor<T>, alpha: f64) -> Tensor<T> {
    exponential_linear(x, alpha, 1.0)
}

/// `scale · elu(x, α)` with PyTorch's constants (α ≈ 1.6733, scale ≈ 1.0507), as
/// `torch.nn.functional.selu`.
pub fn selu<T: Element>(x: &Tensor<T>) -> Tensor<T> {
    const ALPHA: f64 = 1.673_263_242_354_377_3;
    const SCALE: f64 = 1.050_700_987_355_480_5;
    elu(x, ALPHA) * SCALE
}

/// `max(0, x) + min(0, α(e^{x/α} - 1))`, as `torch.nn.functional.celu`; `Err` for α = 0.
pub fn celu<T: Element>(x: &Tensor<T>, alpha: f64) -> Result<Tensor<T>> {
    if alpha == 0.0 {
        return Err(Error::invalid("celu", "alpha 0: celu divides by alpha"));
    }
    Ok(exponential_linear(x, alpha, alpha))
}

/// GELU's two forms, as PyTorch's `approximate` argument.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum GeluApproximate {
    /// `x Φ(x) = x (1 + erf(x/√2)) / 2` (`"none"`, the default).
    #[default]
    None,
    /// `x (1 + tanh(√(2/π) (x + 0.044715 x³))) / 2` (`"tanh"`).
    Tanh,
}

/// The Gaussian error linear unit, as `torch.nn.functional.gelu`.
///
/// ```
/// use nabla::prelude::*;
/// use nabla::nn::functional::{gelu, GeluApproximate};
/// let x = Tensor::<f64>::from_vec(vec![-1.0, 0.0, 1.0], &[3])?;
/// let exact = gelu(&x, GeluApproximate::None).to_vec();        // x Φ(x)
/// assert!((exact[2] - 0.841_344_746_068_542_9).abs() < 1e-12);
/// let approx = gelu(&x, GeluApproximate::Tanh).to_vec();
/// assert!((approx[2] - exact[2]).abs() < 1e-3);
/// # Ok::<(), nabla::Error>(())
/// ```
pub fn gelu<T: Element>(x: &Tensor<T>, approximate: GeluApproximate) -> Tensor<T> {
    let inner = match approximate {
        GeluApproximate::None => (x * std::f64::consts::FRAC_1_SQRT_2).erf(),
        GeluApproximate::Tanh => {
            let cube = x.mul(x).and_then(|s| s.mul(x)).expect("one shape");
            ((x + &(cube * 0.044_715)) * (2.0 / std::f64::consts::PI).sqrt()).tanh()
        }
    };
    x.mul(&((inner + 1.0) * 0.5)).expect("one shape")
}

/// `x σ(x)`, as `torch.nn.functional.silu`.
pub fn silu<T: Element>(x: &Tensor<T>) -> Tensor<T> {
    x.mul(&x.sigmoid()).expect("one shape")
}

/// `x tanh(softplus(x))`, as `torch.nn.functional.mish`.
pub fn mish<T: Element>(x: &Tensor<T>) -> Tensor<T> {
    x.mul(&x.softplus(T::one(), T::of(20.0)).tanh()).expect("one shape")
}

/// `x` clamped to `[min_val, max_val]`, as `torch.nn.functional.hardtanh`: the gradient is 0
/// at and beyond the bounds and passes through a NaN, as PyTorch's.
pub fn hardtanh<T: Element>(x: &Tensor<T>, min_val: f64, max_val: f64) -> Tensor<T> {
    let (lo, hi) = (T::of(min_val), T::of(max_val));
    let inside = mask(x, move |v| (v > lo && v < hi) || v.is_nan());
    let outside = x.constant_map(move |v| {
        if v <= lo {
            lo
        } else if v >= hi {
            hi
        } else {
            T::zero()
        }
    });
    &x.mul(&inside).expect("one shape") + &outside
}

/// `min(max(0, x), 6)`, as `torch.nn.functional.relu6`.
pub fn relu6<T: Element>(x: &Tensor<T>) -> Tensor<T> {
    hardtanh(x, 0.0, 6.0)
}

/// `0` below -3, `1` above 3, `x/6 + 1/2` between, as `torch.nn.functional.hardsigmoid`.
pub fn hardsigmoid<T: Element>(x: &Tensor<T>) -> Tensor<T> {
    let (lo, hi) = (T::of(-3.0), T::of(3.0));
    let inside = mask(x, move |v| v > lo && v < hi);
    let above = mask(x, move |v| v >= hi);
    &((x / 6.0 + 0.5).mul(&inside).expect("one shape")) + &above
}

/// `0` up to -3, `x` from 3, `x (x + 3) / 6` between, as `torch.nn.functional.hardswish`;
/// its gradient as PyTorch's: 0 up to -3, `(2x + 3) / 6` strictly between, 1 from 3 and
/// at a NaN (where both of PyTorch's comparisons fail).
pub fn hardswish<T: Element>(x: &Tensor<T>) -> Tensor<T> {
    let (lo, hi) = (T::of(-3.0), T::of(3.0));
    let inside = mask(x, move |v| v > lo && v < hi);
    let linear = mask(x, move |v| v >= hi || v.is_nan());
    // The curve of the inside values only (0 elsewhere), chosen rather than multiplied by a
    // mask: its derivative at a NaN would be NaN, and NaN · 0 is NaN.
    let zeros = Tensor::<T>::zeros(x.shape());
    let curve_x = crate::ops::where_(&inside, x, &zeros).expect("one shape");
    let curve = curve_x.mul(&(&curve_x + 3.0)).expect("one shape") / 6.0;
    crate::ops::where_(&linear, x, &curve).expect("one shape")
}

/// `log σ(x) = -softplus(-x)`, as `torch.nn.functional.logsigmoid`, stable for large `|x|`.
pub fn logsigmoid<T: Element>(x: &Tensor<T>) -> Tensor<T> {
    x.neg().softplus(T::one(), T::of(20.0)).neg()
}

/// `x / (1 + |x|)`, as `torch.nn.functional.softsign`.
pub fn softsign<T: Element>(x: &Tensor<T>) -> Tensor<T> {
    x.div(&(x.abs() + 1.0)).expect("one shape")
}

/// `x - tanh x`, as `torch.nn.functional.tanhshrink`.
pub fn tanhshrink<T: Element>(x: &Tensor<T>) -> Tensor<T> {
    x - &x.tanh()
}

/// `x - λ` above λ, `x + λ` below -λ, 0 between, as `torch.nn.functional.softshrink`;
/// `Err` for a negative λ.
pub fn softshrink<T: Element>(x: &Tensor<T>, lambd: f64) -> Result<Tensor<T>> {
    if lambd < 0.0 {
        return Err(Error::invalid("softshrink", format!("lambd {lambd} must be at least 0")));
    }
    let l = T::of(lambd);
    let outside = mask(x, move |v| v > l || v < -l);
    let shift = x.constant_map(move |v| {
        if v > l {
            -l
        } else if v < -l {
            l
        } else {
            T::zero()
        }
    });
    Ok(&x.mul(&outside)? + &shift)
}

/// `x` where `|x| > λ`, else 0, as `torch.nn.functional.hardshrink`.
pub fn hardshrink<T: Element>(x: &Tensor<T>, lambd: f64) -> Tensor<T> {
    let l = T::of(lambd);
    x.mul(&mask(x, move |v| v > l || v < -l)).expect("one shape")
}

/// `x` where `x > threshold`, else `value`, as `torch.nn.functional.threshold`.
pub fn threshold<T: Element>(x: &Tensor<T>, threshold: f64, value: f64) -> Tensor<T> {
    let (t, v) = (T::of(threshold), T::of(value));
    let above = mask(x, move |u| u > t);
    let fill = x.constant_map(move |u| if u > t { T::zero() } else { v });
    &x.mul(&above).expect("one shape") + &fill
}

/// The gated linear unit `a ⊙ σ(b)`, `a` and `b` the two halves of `x` along `dim`, as
/// `torch.nn.functional.glu`; `Err` unless that dim's size is even.
pub fn glu<T: Element>(x: &Tensor<T>, dim: isize) -> Result<Tensor<T>> {
    let d = crate::ops::normalize_dim("glu", dim, x.ndim())?;
    let n = x.shape().get(d).copied().unwrap_or(1);
    if x.ndim() == 0 || n % 2 != 0 {
        return Err(Error::shape("glu", format!("dim {dim} of a tensor of shape {:?} must have an even size", x.shape())));
    }
    let a = x.narrow(d as isize, 0, n / 2)?;
    let b = x.narrow(d as isize, n / 2, n / 2)?;
    a.mul(&b.sigmoid())
}

/// `softmax(-x)` along `dim`, as `torch.nn.functional.softmin`.
pub fn softmin<T: Element>(x: &Tensor<T>, dim: isize) -> Result<Tensor<T>> {
    x.neg().softmax(dim)
}
