//! Losses on real-valued targets, on binary or ±1 labels, and on embeddings (triplets,
//! cosine), as PyTorch's functions of the same names; re-exported by [`functional`](super::functional). Each is a composition of
//! differentiable ops (masks are constants), so every order of gradient comes from them.

use super::functional::{Reduction, mask};
use crate::error::{Error, Result};
use crate::ops::where_;
use crate::tensor::{Creation, Element, Tensor};

/// `Err` unless `input` and `target` have one shape, as PyTorch's element-wise losses.
fn same_shape<T: Element>(op: &'static str, input: &Tensor<T>, target: &Tensor<T>) -> Result<()> {
    if input.shape() != target.shape() {
        return Err(Error::shape(op, format!("input {:?} and target {:?} differ", input.shape(), target.shape())));
    }
    Ok(())
}

/// `|input - target|`, as `torch.nn.functional.l1_loss`.
///
/// ```
/// use nabla::prelude::*;
/// use nabla::nn::functional::{l1_loss, Reduction};
/// let a = Tensor::from_vec(vec![1.0, 4.0], &[2])?;
/// let b = Tensor::from_vec(vec![2.0, 2.0], &[2])?;
/// assert_eq!(l1_loss(&a, &b, Reduction::Mean)?.item()?, 1.5);
/// # Ok::<(), nabla::Error>(())
/// ```
pub fn l1_loss<T: Element>(input: &Tensor<T>, target: &Tensor<T>, reduction: Reduction) -> Result<Tensor<T>> {
    same_shape("l1_loss", input, target)?;
    Ok(reduction.apply(input.sub(target)?.abs()))
}

/// `z²/(2β)` where `z = |input - target| < β`, else `z - β/2`, as
/// `torch.nn.functional.smooth_l1_loss` (β = 0 is the L1 loss); `Err` for a negative β.
pub fn smooth_l1_loss<T: Element>(input: &Tensor<T>, target: &Tensor<T>, beta: f64, reduction: Reduction) -> Result<Tensor<T>> {
    if beta < 0.0 {
        return Err(Error::invalid("smooth_l1_loss", format!("beta {beta} must be at least 0")));
    }
    same_shape("smooth_l1_loss", input, target)?;
    let d = input.sub(target)?;
    if beta == 0.0 {
        return Ok(reduction.apply(d.abs()));
    }
    let b = T::of(beta);
    let quadratic = mask(&d, move |v| v.abs() < b);
    let losses = where_(&quadratic, &(&(&d * &d) * (0.5 / beta)), &(d.abs() - 0.5 * beta))?;
    Ok(reduction.apply(losses))
}

/// `z²/2` where `z = |input - target| < δ`, else `δ(z - δ/2)`, as
/// `torch.nn.functional.huber_loss`; `Err` unless δ > 0.
pub fn huber_loss<T: Element>(input: &Tensor<T>, target: &Tensor<T>, delta: f64, reduction: Reduction) -> Result<Tensor<T>> {
    if delta <= 0.0 {
        return Err(Error::invalid("huber_loss", format!("delta {delta} must be positive")));
    }
    same_shape("huber_loss", input, target)?;
    let d = input.sub(target)?;
    let dl = T::of(delta);
    let quadratic = mask(&d, move |v| v.abs() < dl);
    let losses = where_(&quadratic, &(&(&d * &d) * 0.5), &((d.abs() - 0.5 * delta) * delta))?;
    Ok(reduction.apply(losses))
}

/// `-w (y ln x + (1 - y) ln(1 - x))` for probabilities `x`, as
/// `torch.nn.functional.binary_cross_entropy`: each log is clamped at -100 as PyTorch's, and
/// `weight` broadcasts against the input. `Err` for shapes that differ or a probability
/// outside `[0, 1]`.
pub fn binary_cross_entropy<T: Element>(
    input: &Tensor<T>,
    target: &Tensor<T>,
    weight: Option<&Tensor<T>>,
    reduction: Reduction,
) -> Result<Tensor<T>> {
    same_shape("binary_cross_entropy", input, target)?;
    if let Some(&bad) = input.value().iter().find(|&&v| !(v >= T::zero() && v <= T::one())) {
        return Err(Error::invalid("binary_cross_entropy", format!("input {bad} is not a probability in [0, 1]")));
    }
    let floor = T::of(-100.0);
    let log_x = input.log().clamp(floor, T::infinity());
    let log_1mx = (1.0 - input).log().clamp(floor, T::infinity());
    let losses = (target.mul(&log_x)? + (1.0 - target).mul(&log_1mx)?).neg();
    let losses = match weight {
        Some(w) => losses.mul(w)?,
        None => losses,
    };
    Ok(reduction.apply(losses))
}

/// Binary cross-entropy of logits, `(1 - y) x + (1 + (p - 1) y) softplus(-x)` times `weight`,
/// as `torch.nn.functional.binary_cross_entropy_with_logits`: stable for any logit, without
/// the sigmoid's overflow. `weight` broadcasts against the input; `pos_weight` `p` weighs
/// the positive term, along the last dim.
pub fn binary_cross_entropy_with_logits<T: Element>(
    input: &Tensor<T>,
    target: &Tensor<T>,
    weight: Option<&Tensor<T>>,
    pos_weight: Option<&Tensor<T>>,
    reduction: Reduction,
) -> Result<Tensor<T>> {
    same_shape("binary_cross_entropy_with_logits", input, target)?;
    let softplus = input.neg().softplus(T::one(), T::of(20.0));
    let log_weight = match pos_weight {
        Some(p) => (p - 1.0).mul(target)? + 1.0,
        None => Tensor::<T>::ones(&[]),
    };
    let losses = (1.0 - target).mul(input)?.add(&log_weight.mul(&softplus)?)?;
    let losses = match weight {
        Some(w) => losses.mul(w)?,
        None => losses,
    };
    Ok(reduction.apply(losses))
}

/// `ln(1 + e^{-y x})` for labels `y = ±1`, as `torch.nn.functional.soft_margin_loss`.
pub fn soft_margin_loss<T: Element>(input: &Tensor<T>, target: &Tensor<T>, reduction: Reduction) -> Result<Tensor<T>> {
    same_shape("soft_margin_loss", input, target)?;
    Ok(reduction.apply(input.mul(target)?.neg().softplus(T::one(), T::of(20.0))))
}

/// `x` where `y = 1`, `max(0, margin - x)` where `y = -1`, as
/// `torch.nn.functional.hinge_embedding_loss` (a label that is neither gets both terms, as
/// in PyTorch).
pub fn hinge_embedding_loss<T: Element>(input: &Tensor<T>, target: &Tensor<T>, margin: f64, reduction: Reduction) -> Result<Tensor<T>> {
    same_shape("hinge_embedding_loss", input, target)?;
    let zeros = Tensor::<T>::zeros(input.shape());
    let clamped = (margin - input).clamp(T::zero(), T::infinity());
    let not_positive = mask(target, |y| y != T::one());
    let not_negative = mask(target, |y| y != -T::one());
    let losses = where_(&not_positive, &clamped, &zeros)? + where_(&not_negative, input, &zeros)?;
    Ok(reduction.apply(losses))
}

/// How [`kl_div`] combines its terms: PyTorch's reductions and `"batchmean"`, the sum
/// divided by the batch size (the mathematically correct KL divergence per sample).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum KlReduction {
    /// One value per element.
    None,
    /// The mean over every element (PyTorch's default, which it warns about).
    #[default]
    Mean,
    /// The sum.
    Sum,
    /// The sum over the batch size, `input.shape()[0]`.
    BatchMean,
}

/// The Kullback–Leibler divergence of log-probabilities `input` from `target`, as
/// `torch.nn.functional.kl_div`: `y (ln y - x)` (0 where `y = 0`), or with `log_target`,
/// `eʸ (y - x)`.
pub fn kl_div<T: Element>(input: &Tensor<T>, target: &Tensor<T>, reduction: KlReduction, log_target: bool) -> Result<Tensor<T>> {
    same_shape("kl_div", input, target)?;
    let losses = if log_target {
        target.exp().mul(&target.sub(input)?)?
    } else {
        // xlogy(y, y): the log of 1 where y = 0, so that neither value nor gradient is NaN.
        let safe = where_(&mask(target, |y| y == T::zero()), &Tensor::<T>::ones(target.shape()), target)?;
        target.mul(&safe.log())?.sub(&target.mul(input)?)?
    };
    Ok(match reduction {
        KlReduction::None => losses,
        KlReduction::Mean => losses.mean(),
        KlReduction::Sum => losses.sum(),
        KlReduction::BatchMean => {
            let n = input.shape().first().copied().unwrap_or(1);
            losses.sum() / n as f64
        }
    })
}

/// The Poisson negative log-likelihood of counts `target`, as
/// `torch.nn.functional.poisson_nll_loss`: `eˣ - y x` with `log_input`, else
/// `x - y ln(x + eps)`; with `full`, plus Stirling's `y ln y - y + ln(2πy)/2` where `y > 1`.
pub fn poisson_nll_loss<T: Element>(
    input: &Tensor<T>,
    target: &Tensor<T>,
    log_input: bool,
    full: bool,
    eps: f64,
    reduction: Reduction,
) -> Result<Tensor<T>> {
    same_shape("poisson_nll_loss", input, target)?;
    let mut losses = if log_input { input.exp().sub(&target.mul(input)?)? } else { input.sub(&target.mul(&(input + eps).log())?)? };
    if full {
        let above_one = mask(target, |y| y > T::one());
        let safe = where_(&above_one, target, &Tensor::<T>::ones(target.shape()))?;
        let stirling = (safe.mul(&safe.log())? - &safe) + &((&safe * (2.0 * std::f64::consts::PI)).log() * 0.5);
        losses = losses.add(&stirling.mul(&above_one)?)?;
    }
    Ok(reduction.apply(losses))
}

/// The Gaussian negative log-likelihood `(ln v + (x - y)²/v) / 2` (plus `ln(2π)/2` with
/// `full`), as `torch.nn.functional.gaussian_nll_loss`: `var` has the input's shape, or its
/// last dim 1, or one dim fewer; it is clamped at `eps` in value only, as PyTorch clamps it
/// without recording. `Err` for a negative variance or a shape that fits none of those.
pub fn gaussian_nll_loss<T: Element>(
    input: &Tensor<T>,
    target: &Tensor<T>,
    var: &Tensor<T>,
    full: bool,
    eps: f64,
    reduction: Reduction,
) -> Result<Tensor<T>> {
    let op = "gaussian_nll_loss";
    same_shape(op, input, target)?;
    let shape = input.shape();
    let var = if var.shape() == shape {
        var.clone()
    } else if var.ndim() + 1 == shape.len() && var.shape() == &shape[..shape.len() - 1] {
        var.unsqueeze(-1)?
    } else if var.ndim() == shape.len() && var.shape().last() == Some(&1) && var.shape()[..var.ndim() - 1] == shape[..shape.len() - 1] {
        var.clone()
    } else {
        return Err(Error::shape(op, format!("var {:?} does not fit the input {:?}", var.shape(), shape)));
    };
    if let Some(&bad) = var.value().iter().find(|&&v| v < T::zero()) {
        return Err(Error::invalid(op, format!("var {bad} is negative")));
    }
    let e = T::of(eps);
    let clamped = &var + &var.constant_map(move |v| if v < e { e - v } else { T::zero() });
    let d = input.sub(target)?;
    let mut losses = (clamped.log() + (&d * &d).div(&clamped)?) * 0.5;
    if full {
        losses = losses + 0.5 * (2.0 * std::f64::consts::PI).ln();
    }
    Ok(reduction.apply(losses))
}

/// `‖x1 - x2 + ε‖_p` along the last dim, PyTorch's `pairwise_distance` with `ε = 1e-6`.
fn pairwise_distance<T: Element>(x1: &Tensor<T>, x2: &Tensor<T>, p: f64) -> Result<Tensor<T>> {
    let d = x1.sub(x2)? + 1e-6;
    Ok(if p == 2.0 {
        d.mul(&d)?.sum_dims(&[-1], false)?.sqrt()
    } else if p == 1.0 {
        d.abs().sum_dims(&[-1], false)?
    } else {
        d.abs().pow(T::of(p)).sum_dims(&[-1], false)?.pow(T::of(1.0 / p))
    })
}

/// `max(0, d(a, p) - d(a, n) + margin)` with `d` the `p`-norm distance of PyTorch's
/// `pairwise_distance`, as `torch.nn.functional.triplet_margin_loss`; with `swap`,
/// `d(a, n)` is `min(d(a, n), d(p, n))`. Inputs `(N, D)` (or `(D)`), one shape.
pub fn triplet_margin_loss<T: Element>(
    anchor: &Tensor<T>,
    positive: &Tensor<T>,
    negative: &Tensor<T>,
    margin: f64,
    p: f64,
    swap: bool,
    reduction: Reduction,
) -> Result<Tensor<T>> {
    let op = "triplet_margin_loss";
    same_shape(op, anchor, positive)?;
    same_shape(op, anchor, negative)?;
    if anchor.ndim() == 0 || p <= 0.0 {
        return Err(Error::invalid(op, format!("inputs of shape {:?} and norm p = {p}: need at least 1 dim and p > 0", anchor.shape())));
    }
    let d_ap = pairwise_distance(anchor, positive, p)?;
    let mut d_an = pairwise_distance(anchor, negative, p)?;
    if swap {
        d_an = d_an.minimum(&pairwise_distance(positive, negative, p)?)?;
    }
    Ok(reduction.apply((d_ap.sub(&d_an)? + margin).clamp(T::zero(), T::infinity())))
}

/// `1 - cos(x1, x2)` where `y = 1`, `max(0, cos(x1, x2) - margin)` where `y = -1`, as
/// `torch.nn.functional.cosine_embedding_loss`: `x1`, `x2` `(N, D)` (or `(D)`), `y` `(N)`;
/// the cosine is `x1·x2 / √((‖x1‖² + ε)(‖x2‖² + ε))` with PyTorch's `ε = 1e-12`.
pub fn cosine_embedding_loss<T: Element>(
    x1: &Tensor<T>,
    x2: &Tensor<T>,
    target: &Tensor<T>,
    margin: f64,
    reduction: Reduction,
) -> Result<Tensor<T>> {
    let op = "cosine_embedding_loss";
    same_shape(op, x1, x2)?;
    if x1.ndim() == 0 || target.shape() != &x1.shape()[..x1.ndim() - 1] {
        return Err(Error::shape(
            op,
            format!("target {:?} must have the inputs' shape {:?} without its last dim", target.shape(), x1.shape()),
        ));
    }
    let dot = x1.mul(x2)?.sum_dims(&[-1], false)?;
    let square1 = x1.mul(x1)?.sum_dims(&[-1], false)? + 1e-12;
    let square2 = x2.mul(x2)?.sum_dims(&[-1], false)? + 1e-12;
    let cos = dot.div(&square1.mul(&square2)?.sqrt())?;
    let zeros = Tensor::<T>::zeros(cos.shape());
    let positive = where_(&mask(target, |y| y == T::one()), &(1.0 - &cos), &zeros)?;
    let negative = where_(&mask(target, |y| y == -T::one()), &(cos - margin).clamp(T::zero(), T::infinity()), &zeros)?;
    Ok(reduction.apply(positive + negative))
}

/// `input` as `[N, C]` rows: a 1-D input is one row. `Err` for other ranks or an empty
/// class dim.
fn as_rows<T: Element>(op: &'static str, input: &Tensor<T>) -> Result<Tensor<T>> {
    match input.ndim() {
        2 if input.shape()[1] > 0 => Ok(input.clone()),
        1 if input.shape()[0] > 0 => input.unsqueeze(0),
        _ => Err(Error::shape(op, format!("input {:?} must be (N, C) or (C) with C > 0", input.shape()))),
    }
}

/// The multi-class hinge loss, as `torch.nn.functional.multi_margin_loss`: for a row `x`
/// of `C` scores with target class `y`,
///
/// `loss = Σ_{i ≠ y} w_y · max(0, margin − x_y + x_i)^p / C`,
///
/// `p` 1 or 2, `w` per-class weights (ones by default). `input` is `(N, C)` with `target`
/// `(N)`, or `(C)` with a one-element `target`.
///
/// ```
/// use nabla::prelude::*;
/// use nabla::nn::functional::{multi_margin_loss, Reduction};
/// let x = Tensor::from_vec(vec![0.1, 0.2, 0.4, 0.8], &[1, 4])?;
/// let y = ndarray::arr1(&[3usize]).into_dyn();
/// // PyTorch's documented example: ((1-0.8+0.1) + (1-0.8+0.2) + (1-0.8+0.4)) / 4
/// let loss = multi_margin_loss(&x, &y, 1, 1.0, None, Reduction::Mean)?.item()?;
/// assert!((loss - 0.325).abs() < 1e-6);
/// # Ok::<(), nabla::Error>(())
/// ```
pub fn multi_margin_loss<T: Element>(
    input: &Tensor<T>,
    target: &ndarray::ArrayD<usize>,
    p: u32,
    margin: f64,
    weight: Option<&Tensor<T>>,
    reduction: Reduction,
) -> Result<Tensor<T>> {
    let op = "multi_margin_loss";
    if p != 1 && p != 2 {
        return Err(Error::invalid(op, format!("p {p} must be 1 or 2")));
    }
    let x = as_rows(op, input)?;
    let (n, c) = (x.shape()[0], x.shape()[1]);
    if target.len() != n || (input.ndim() == 2 && target.ndim() != 1) {
        return Err(Error::shape(op, format!("target {:?} for input {:?}", target.shape(), input.shape())));
    }
    if let Some(&bad) = target.iter().find(|&&t| t >= c) {
        return Err(Error::invalid(op, format!("target {bad} is out of range for {c} classes")));
    }
    if let Some(w) = weight
        && w.shape() != [c]
    {
        return Err(Error::shape(op, format!("weight {:?} for {c} classes", w.shape())));
    }
    let targets: Vec<usize> = target.iter().copied().collect();
    let column = ndarray::ArrayD::from_shape_vec(vec![n, 1], targets.clone()).expect("n targets");
    let x_y = x.gather(1, &column)?;
    let mut hinge = (&x - &x_y).add_scalar(T::of(margin)).relu();
    if p == 2 {
        hinge = &hinge * &hinge;
    }
    // The target's own class does not count.
    let others = ndarray::Array2::from_shape_fn((n, c), |(i, j)| if j == targets[i] { T::zero() } else { T::one() });
    let mut terms = hinge.mul(&Tensor::from(others.into_dyn()))?;
    if let Some(w) = weight {
        terms = terms.mul(&w.index_select(0, &targets)?.unsqueeze(1)?)?;
    }
    let mut losses = terms.sum_dims(&[1], false)?.div_scalar(T::of(c as f64));
    if input.ndim() == 1 {
        losses = losses.reshape(&[])?;
    }
    Ok(reduction.apply(losses))
}

/// The multi-label hinge loss, as `torch.nn.functional.multilabel_margin_loss`: each row
/// of `target` lists the row's classes `J`, up to its first negative entry (PyTorch's `-1`
/// terminator; the rest is ignored), and
///
/// `loss = Σ_{j ∈ J} Σ_{i ∉ J} max(0, 1 − (x_j − x_i)) / C`.
///
/// `input` and `target` are both `(N, C)` or both `(C)`.
///
/// ```
/// use nabla::prelude::*;
/// use nabla::nn::functional::{multilabel_margin_loss, Reduction};
/// let x = Tensor::from_vec(vec![0.1, 0.2, 0.4, 0.8], &[1, 4])?;
/// let y = ndarray::arr2(&[[3i64, 0, -1, 1]]).into_dyn();
/// // PyTorch's documented example: classes {3, 0} against {1, 2}
/// let loss = multilabel_margin_loss(&x, &y, Reduction::Mean)?.item()?;
/// assert!((loss - 0.85).abs() < 1e-6);
/// # Ok::<(), nabla::Error>(())
/// ```
pub fn multilabel_margin_loss<T: Element>(input: &Tensor<T>, target: &ndarray::ArrayD<i64>, reduction: Reduction) -> Result<Tensor<T>> {
    let op = "multilabel_margin_loss";
    let x = as_rows(op, input)?;
    let (n, c) = (x.shape()[0], x.shape()[1]);
    if target.shape() != input.shape() {
        return Err(Error::shape(op, format!("target {:?} and input {:?} differ", target.shape(), input.shape())));
    }
    // weight[r, j, i]: how often j is listed in row r, where i is not listed.
    let mut weight = ndarray::Array3::<T>::zeros((n, c, c));
    for (r, row) in target.as_standard_layout().as_slice().expect("standard layout").chunks(c).enumerate() {
        let listed: Vec<usize> = row.iter().take_while(|&&t| t >= 0).map(|&t| t as usize).collect();
        if let Some(&bad) = listed.iter().find(|&&t| t >= c) {
            return Err(Error::invalid(op, format!("target {bad} is out of range for {c} classes")));
        }
        for &j in &listed {
            for i in (0..c).filter(|i| !listed.contains(i)) {
                weight[[r, j, i]] = weight[[r, j, i]] + T::one();
            }
        }
    }
    // 1 − x_j + x_i for every pair (j, i) of a row.
    let pairs = x.unsqueeze(1)?.sub(&x.unsqueeze(2)?)?.add_scalar(T::one()).relu();
    let mut losses = pairs.mul(&Tensor::from(weight.into_dyn()))?.sum_dims(&[1, 2], false)?.div_scalar(T::of(c as f64));
    if input.ndim() == 1 {
        losses = losses.reshape(&[])?;
    }
    Ok(reduction.apply(losses))
}
