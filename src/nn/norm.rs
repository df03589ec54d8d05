//! Normalisation layers: `BatchNorm1d/2d/3d`, `LayerNorm`, `GroupNorm`, and their
//! functional forms.

use super::{Buffer, Mode, Module, Param};
use crate::error::{Error, Result};
use crate::ops::norm::{self, Stats};
use crate::tensor::{Creation, Element, Tensor};

/// Batch normalisation (PyTorch's `F.batch_norm`): per channel `c` (dim 1) of `x`
/// `[N, C, *]`,
///
/// `y = (x − μ_c) / √(σ²_c + ε) · w_c + b_c`.
///
/// With `training`, `μ` and `σ²` are the batch's mean and biased variance over every dim
/// but 1, and the running statistics, when given, move toward them:
/// `running = (1 − momentum)·running + momentum·batch` (the unbiased variance for
/// `running_var`). Without, `μ` and `σ²` are `running_mean` and `running_var` (`Err` when
/// absent). Forward and backward are fused passes over the data.
///
/// `Err` when training on one value per channel (its variance is undefined), or for
/// shapes that do not fit `C`.
///
/// ```
/// use nabla::prelude::*;
/// use nabla::nn::{Buffer, functional::batch_norm};
/// let x = Tensor::<f64>::from_vec(vec![1.0, 10.0, 3.0, 30.0], &[2, 2])?;
/// let (mean, var) = (Buffer::new(Tensor::<f64>::zeros(&[2])), Buffer::new(Tensor::<f64>::ones(&[2])));
/// let y = batch_norm(&x, Some(&mean), Some(&var), None, None, true, 0.1, 0.0)?;
/// assert_eq!(y.to_vec(), vec![-1.0, -1.0, 1.0, 1.0]);
/// // running_mean moved a tenth of the way to the batch mean [2, 20]
/// assert_eq!(mean.tensor().to_vec(), vec![0.2, 2.0]);
/// # Ok::<(), nabla::Error>(())
/// ```
#[allow(clippy::too_many_arguments)]
pub fn batch_norm<T: Element>(
    x: &Tensor<T>,
    running_mean: Option<&Buffer<T>>,
    running_var: Option<&Buffer<T>>,
    weight: Option<&Tensor<T>>,
    bias: Option<&Tensor<T>>,
    training: bool,
    momentum: f64,
    eps: f64,
) -> Result<Tensor<T>> {
    if running_mean.is_some() != running_var.is_some() {
        return Err(Error::invalid("batch_norm", "running_mean and running_var must be given together"));
    }
    let channels = x.shape().get(1).copied().unwrap_or(0);
    for (what, b) in [("running_mean", running_mean), ("running_var", running_var)] {
        if let Some(b) = b
            && b.shape() != [channels]
        {
            return Err(Error::shape("batch_norm", format!("{what} {:?} for input {:?}", b.shape(), x.shape())));
        }
    }
    if training {
        let (y, found) = norm::batch_norm(x, weight, bias, Stats::Batch, eps)?;
        if let (Some(mean), Some(var), Some(found)) = (running_mean, running_var, found) {
            let unbiased = found.count as f64 / (found.count as f64 - 1.0);
            mean.update(|m| m.iter_mut().zip(&found.mean).for_each(|(r, &b)| *r = T::of((1.0 - momentum) * f(*r) + momentum * b)));
            var.update(|v| v.iter_mut().zip(&found.var).for_each(|(r, &b)| *r = T::of((1.0 - momentum) * f(*r) + momentum * b * unbiased)));
        }
        return Ok(y);
    }
    let (Some(mean), Some(var)) = (running_mean, running_var) else {
        return Err(Error::invalid("batch_norm", "evaluation (training false) needs running_mean and running_var"));
    };
    let (mean, var) = (mean.tensor().to_vec(), var.tensor().to_vec());
    Ok(norm::batch_norm(x, weight, bias, Stats::Given { mean: &mean, var: &var }, eps)?.0)
}

fn f<T: Element>(v: T) -> f64 {
    v.to_f64().unwrap_or(f64::NAN)
}

/// Layer normalisation (PyTorch's `F.layer_norm`): each slice of `x` over its trailing
/// dims `normalized_shape` becomes
///
/// `y = (x − μ) / √(σ² + ε) · w + b`,
///
/// `μ`, `σ²` that slice's mean and biased variance; `weight` and `bias` are shaped
/// `normalized_shape`. Forward and first-order backward are fused passes over each row.
///
/// ```
/// use nabla::prelude::*;
/// use nabla::nn::functional::layer_norm;
/// let x = Tensor::<f64>::from_vec(vec![1.0, 3.0, 10.0, 30.0], &[2, 2])?;
/// assert_eq!(layer_norm(&x, &[2], None, None, 0.0)?.to_vec(), vec![-1.0, 1.0, -1.0, 1.0]);
/// # Ok::<(), nabla::Error>(())
/// ```
pub fn layer_norm<T: Element>(
    x: &Tensor<T>,
    normalized_shape: &[usize],
    weight: Option<&Tensor<T>>,
    bias: Option<&Tensor<T>>,
    eps: f64,
) -> Result<Tensor<T>> {
    let shape = x.shape();
    if normalized_shape.is_empty() || normalized_shape.len() > shape.len() || !shape.ends_with(normalized_shape) {
        return Err(Error::shape(
            "layer_norm",
            format!("normalized_shape {normalized_shape:?} is not the trailing dims of input {shape:?}"),
        ));
    }
    let width: usize = normalized_shape.iter().product();
    let flat = |what: &str, t: Option<&Tensor<T>>| -> Result<Option<Tensor<T>>> {
        match t {
            Some(t) if t.shape() != normalized_shape => {
                Err(Error::shape("layer_norm", format!("{what} {:?} for normalized_shape {normalized_shape:?}", t.shape())))
            }
            Some(t) if normalized_shape.len() == 1 => Ok(Some(t.clone())),
            Some(t) => Ok(Some(t.reshape(&[width as isize])?)),
            None => Ok(None),
        }
    };
    let (w, b) = (flat("weight", weight)?, flat("bias", bias)?);
    norm::layer_norm(x, width, w.as_ref(), b.as_ref(), eps)
}

/// Group normalisation (PyTorch's `F.group_norm`): the `C` channels of `x` `[N, C, *]` fall
/// into `num_groups` groups of consecutive channels; each sample's group is normalised by
/// its mean and biased variance, then channel `c` is scaled by `w_c` and shifted by `b_c`.
///
/// ```
/// use nabla::prelude::*;
/// use nabla::nn::functional::group_norm;
/// let x = Tensor::<f64>::from_vec(vec![1.0, 3.0, 10.0, 30.0], &[1, 4])?;
/// assert_eq!(group_norm(&x, 2, None, None, 0.0)?.to_vec(), vec![-1.0, 1.0, -1.0, 1.0]);
/// # Ok::<(), nabla::Error>(())
/// ```
pub fn group_norm<T: Element>(
    x: &Tensor<T>,
    num_groups: usize,
    weight: Option<&Tensor<T>>,
    bias: Option<&Tensor<T>>,
    eps: f64,
) -> Result<Tensor<T>> {
    let shape = x.shape().to_vec();
    if shape.len() < 2 || num_groups == 0 || !shape[1].is_multiple_of(num_groups) {
        return Err(Error::shape(
            "group_norm",
            format!("input {shape:?} has no channel dim divisible into {num_groups} groups (expected [N, C, *])"),
        ));
    }
    let c = shape[1];
    for (what, t) in [("weight", weight), ("bias", bias)] {
        if let Some(t) = t
            && t.shape() != [c]
        {
            return Err(Error::shape("group_norm", format!("{what} {:?} for {c} channels", t.shape())));
        }
    }
    let width = x.len() / (shape[0] * num_groups).max(1);
    let y = norm::layer_norm(x, width.max(1), None, None, eps)?;
    let mut per_channel = vec![1isize; shape.len()];
    per_channel[1] = c as isize;
    let y = match weight {
        Some(w) => y.mul(&w.reshape(&per_channel)?)?,
        None => y,
    };
    match bias {
        Some(b) => y.add(&b.reshape(&per_channel)?),
        None => Ok(y),
    }
}

/// Options of the batch norm layers, PyTorch's keyword arguments and defaults.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct BatchNormOptions {
    /// Added to the variance (1e-5).
    pub eps: f64,
    /// The running statistics' step toward the batch's (0.1); `None` for a cumulative
    /// average (step `1/num_batches_tracked`).
    pub momentum: Option<f64>,
    /// A learnable `weight` (ones) and `bias` (zeros) per channel (true).
    pub affine: bool,
    /// Keep running statistics and use them in evaluation (true); without, evaluation
    /// normalises by the batch too.
    pub track_running_stats: bool,
}

impl Default for BatchNormOptions {
    fn default() -> Self {
        BatchNormOptions { eps: 1e-5, momentum: Some(0.1), affine: true, track_running_stats: true }
    }
}

/// Batch normalisation over `[N, C, *]` inputs of `D` spatial dims (see
/// [`BatchNorm1d`], [`BatchNorm2d`], [`BatchNorm3d`]; maths in [`batch_norm`]).
///
/// Parameters `weight` and `bias` (`[C]`, with `affine`); buffers `running_mean`,
/// `running_var` (`[C]`) and `num_batches_tracked` (an integer), saved and loaded under
/// those names. In training (the default) it normalises by the batch and updates the
/// buffers; in evaluation ([`Module::set_training`]`(false)`) it normalises by the running
/// statistics, an affine map.
pub struct BatchNorm<T: Element, const D: usize> {
    /// `[C]`, ones at first; `None` without `affine`.
    pub weight: Option<Param<T>>,
    /// `[C]`, zeros at first; `None` without `affine`.
    pub bias: Option<Param<T>>,
    /// `[C]`, zeros at first; `None` without `track_running_stats`.
    pub running_mean: Option<Buffer<T>>,
    /// `[C]`, ones at first; `None` without `track_running_stats`.
    pub running_var: Option<Buffer<T>>,
    /// How many training batches have updated the statistics.
    pub num_batches_tracked: Option<Buffer<T>>,
    /// See [`BatchNormOptions::momentum`].
    pub momentum: Option<f64>,
    /// Added to the variance.
    pub eps: f64,
    mode: Mode,
}

/// Batch normalisation of `[N, C]` or `[N, C, L]` (PyTorch's `nn.BatchNorm1d`).
///
/// ```
/// use nabla::prelude::*;
/// let bn = nn::BatchNorm1d::<f64>::new(2);
/// let x = Tensor::<f64>::from_vec(vec![1.0, 10.0, 3.0, 30.0], &[2, 2])?;
/// let y = bn.forward(&x)?.to_vec();   // ±1 / √(1 + 1e-5): unit batch variance, and eps
/// assert!((y[0] + 1.0).abs() < 1e-5 && (y[3] - 1.0).abs() < 1e-5);
/// assert_eq!(bn.running_mean.as_ref().unwrap().tensor().to_vec(), vec![0.2, 2.0]);
/// // the unbiased variances 2 and 200 of the batch, a tenth of the way from 1
/// assert_eq!(bn.running_var.as_ref().unwrap().tensor().to_vec(), vec![0.9 + 0.2, 0.9 + 20.0]);
/// bn.set_training(false);   // now an affine map by the running statistics
/// # Ok::<(), nabla::Error>(())
/// ```
pub type BatchNorm1d<T = f32> = BatchNorm<T, 1>;
/// Batch normalisation of `[N, C, H, W]` (PyTorch's `nn.BatchNorm2d`).
///
/// ```
/// use nabla::prelude::*;
/// let bn = nn::BatchNorm2d::new(3);
/// let y = bn.forward(&Tensor::randn(&[4, 3, 5, 5], &mut nabla::rng(0)))?;
/// assert_eq!(y.shape(), &[4, 3, 5, 5]);
/// # Ok::<(), nabla::Error>(())
/// ```
pub type BatchNorm2d<T = f32> = BatchNorm<T, 2>;
/// Batch normalisation of `[N, C, D, H, W]` (PyTorch's `nn.BatchNorm3d`).
pub type BatchNorm3d<T = f32> = BatchNorm<T, 3>;

fn batch_norm_layer<T: Element, const D: usize>(num_features: usize, options: BatchNormOptions) -> BatchNorm<T, D> {
    let affine = options.affine;
    let track = options.track_running_stats;
    BatchNorm {
        weight: affine.then(|| Param::new(Tensor::<T>::full(&[num_features], T::one()))),
        bias: affine.then(|| Param::new(Tensor::<T>::full(&[num_features], T::zero()))),
        running_mean: track.then(|| Buffer::new(Tensor::<T>::full(&[num_features], T::zero()))),
        running_var: track.then(|| Buffer::new(Tensor::<T>::full(&[num_features], T::one()))),
        num_batches_tracked: track.then(|| Buffer::integer(0)),
        momentum: options.momentum,
        eps: options.eps,
        mode: Mode::default(),
    }
}

constructors! {
    BatchNorm1d: BatchNorm1dNew {
        /// `num_features` channels, PyTorch's defaults ([`BatchNormOptions::default`]).
        fn new(num_features: usize) -> Self {
            batch_norm_layer(num_features, BatchNormOptions::default())
        }
        /// `num_features` channels with `options`.
        fn with_options(num_features: usize, options: BatchNormOptions) -> Self {
            batch_norm_layer(num_features, options)
        }
    }
}

constructors! {
    BatchNorm2d: BatchNorm2dNew {
        /// `num_features` channels, PyTorch's defaults ([`BatchNormOptions::default`]).
        fn new(num_features: usize) -> Self {
            batch_norm_layer(num_features, BatchNormOptions::default())
        }
        /// `num_features` channels with `options`.
        fn with_options(num_features: usize, options: BatchNormOptions) -> Self {
            batch_norm_layer(num_features, options)
        }
    }
}

constructors! {
    BatchNorm3d: BatchNorm3dNew {
        /// `num_features` channels, PyTorch's defaults ([`BatchNormOptions::default`]).
        fn new(num_features: usize) -> Self {
            batch_norm_layer(num_features, BatchNormOptions::default())
        }
        /// `num_features` channels with `options`.
        fn with_options(num_features: usize, options: BatchNormOptions) -> Self {
            batch_norm_layer(num_features, options)
        }
    }
}

impl<T: Element, const D: usize> BatchNorm<T, D> {
    const NAME: &'static str = ["BatchNorm1d", "BatchNorm2d", "BatchNorm3d"][D - 1];

    fn check(&self, x: &Tensor<T>) -> Result<()> {
        let nd = x.ndim();
        let ok = if D == 1 { nd == 2 || nd == 3 } else { nd == D + 2 };
        if !ok {
            let expected = if D == 1 { "2D or 3D".to_string() } else { format!("{}D", D + 2) };
            return Err(Error::shape(Self::NAME, format!("expected {expected} input (got {nd}D input {:?})", x.shape())));
        }
        Ok(())
    }
}

impl<T: Element, const D: usize> Module<T> for BatchNorm<T, D> {
    fn forward(&self, x: &Tensor<T>) -> Result<Tensor<T>> {
        self.check(x)?;
        let training = self.mode.is_training();
        let mut momentum = self.momentum.unwrap_or(0.0);
        if training && let Some(count) = &self.num_batches_tracked {
            let channels = self.running_mean.as_ref().map_or(0, |m| m.shape()[0]);
            if x.shape()[1] != channels {
                return Err(Error::shape(Self::NAME, format!("input {:?} for {channels} channels", x.shape())));
            }
            let values = x.len() / channels.max(1);
            if values <= 1 {
                return Err(Error::invalid(
                    Self::NAME,
                    format!("expected more than 1 value per channel when training, got input {:?}", x.shape()),
                ));
            }
            count.update(|n| n.iter_mut().for_each(|n| *n = *n + T::one()));
            if self.momentum.is_none() {
                momentum = 1.0 / f(count.tensor().to_vec()[0]);
            }
        }
        let (w, b) = (self.weight.as_ref().map(Param::tensor), self.bias.as_ref().map(Param::tensor));
        let batch = training || self.running_mean.is_none();
        batch_norm(x, self.running_mean.as_ref(), self.running_var.as_ref(), w.as_ref(), b.as_ref(), batch, momentum, self.eps)
    }

    fn named_parameters(&self) -> Vec<(String, Param<T>)> {
        let mut params = Vec::new();
        params.extend(self.weight.iter().map(|p| ("weight".to_string(), p.clone())));
        params.extend(self.bias.iter().map(|p| ("bias".to_string(), p.clone())));
        params
    }

    fn named_buffers(&self) -> Vec<(String, Buffer<T>)> {
        let mut buffers = Vec::new();
        buffers.extend(self.running_mean.iter().map(|b| ("running_mean".to_string(), b.clone())));
        buffers.extend(self.running_var.iter().map(|b| ("running_var".to_string(), b.clone())));
        buffers.extend(self.num_batches_tracked.iter().map(|b| ("num_batches_tracked".to_string(), b.clone())));
        buffers
    }

    fn set_training(&self, training: bool) {
        self.mode.set(training)
    }
}

/// Layer normalisation over the trailing dims `normalized_shape` (PyTorch's
/// `nn.LayerNorm`; maths in [`layer_norm`]). Parameters `weight` (ones) and `bias` (zeros),
/// shaped `normalized_shape`, with `elementwise_affine`.
///
/// ```
/// use nabla::prelude::*;
/// let ln = nn::LayerNorm::new(&[4]);
/// let y = ln.forward(&Tensor::randn(&[2, 3, 4], &mut nabla::rng(0)))?;
/// let row = &y.to_vec()[..4];
/// assert!(row.iter().sum::<f32>().abs() < 1e-5);   // zero mean per row
/// # Ok::<(), nabla::Error>(())
/// ```
pub struct LayerNorm<T: Element = f32> {
    /// The trailing dims normalised over.
    pub normalized_shape: Vec<usize>,
    /// Added to the variance (1e-5).
    pub eps: f64,
    /// Shaped `normalized_shape`; `None` without `elementwise_affine`.
    pub weight: Option<Param<T>>,
    /// Shaped `normalized_shape`; `None` without `elementwise_affine` or `bias`.
    pub bias: Option<Param<T>>,
}

constructors! {
    LayerNorm: LayerNormNew {
        /// PyTorch's defaults: eps 1e-5, a weight and a bias.
        fn new(normalized_shape: &[usize]) -> Self {
            <Self as LayerNormNew<T>>::with_options(normalized_shape, 1e-5, true, true)
        }
        /// PyTorch's keyword arguments `eps`, `elementwise_affine`, `bias`.
        fn with_options(normalized_shape: &[usize], eps: f64, elementwise_affine: bool, bias: bool) -> Self {
            LayerNorm {
                normalized_shape: normalized_shape.to_vec(),
                eps,
                weight: elementwise_affine.then(|| Param::new(Tensor::<T>::full(normalized_shape, T::one()))),
                bias: (elementwise_affine && bias).then(|| Param::new(Tensor::<T>::full(normalized_shape, T::zero()))),
            }
        }
    }
}

impl<T: Element> Module<T> for LayerNorm<T> {
    fn forward(&self, x: &Tensor<T>) -> Result<Tensor<T>> {
        let (w, b) = (self.weight.as_ref().map(Param::tensor), self.bias.as_ref().map(Param::tensor));
        layer_norm(x, &self.normalized_shape, w.as_ref(), b.as_ref(), self.eps)
    }

    fn named_parameters(&self) -> Vec<(String, Param<T>)> {
        let mut params = Vec::new();
        params.extend(self.weight.iter().map(|p| ("weight".to_string(), p.clone())));
        params.extend(self.bias.iter().map(|p| ("bias".to_string(), p.clone())));
        params
    }
}

/// Group normalisation (PyTorch's `nn.GroupNorm`; maths in [`group_norm`]). Parameters
/// `weight` (ones) and `bias` (zeros), `[num_channels]`, with `affine`.
///
/// ```
/// use nabla::prelude::*;
/// let gn = nn::GroupNorm::new(2, 4)?;
/// assert_eq!(gn.forward(&Tensor::randn(&[3, 4, 5], &mut nabla::rng(0)))?.shape(), &[3, 4, 5]);
/// assert!(nn::GroupNorm::new(3, 4).is_err());   // 4 channels do not split into 3 groups
/// # Ok::<(), nabla::Error>(())
/// ```
pub struct GroupNorm<T: Element = f32> {
    /// How many groups the channels fall into.
    pub num_groups: usize,
    /// Added to the variance (1e-5).
    pub eps: f64,
    /// `[num_channels]`; `None` without `affine`.
    pub weight: Option<Param<T>>,
    /// `[num_channels]`; `None` without `affine`.
    pub bias: Option<Param<T>>,
}

constructors! {
    GroupNorm: GroupNormNew {
        /// PyTorch's defaults: eps 1e-5, affine. `Err` when the channels do not split into
        /// `num_groups`.
        fn new(num_groups: usize, num_channels: usize) -> Result<Self> {
            <Self as GroupNormNew<T>>::with_options(num_groups, num_channels, 1e-5, true)
        }
        /// PyTorch's keyword arguments `eps` and `affine`.
        fn with_options(num_groups: usize, num_channels: usize, eps: f64, affine: bool) -> Result<Self> {
            if num_groups == 0 || !num_channels.is_multiple_of(num_groups) {
                return Err(Error::invalid("GroupNorm", format!("num_channels {num_channels} must be divisible by num_groups {num_groups}")));
            }
            Ok(GroupNorm {
                num_groups,
                eps,
                weight: affine.then(|| Param::new(Tensor::<T>::full(&[num_channels], T::one()))),
                bias: affine.then(|| Param::new(Tensor::<T>::full(&[num_channels], T::zero()))),
            })
        }
    }
}

impl<T: Element> Module<T> for GroupNorm<T> {
    fn forward(&self, x: &Tensor<T>) -> Result<Tensor<T>> {
        let (w, b) = (self.weight.as_ref().map(Param::tensor), self.bias.as_ref().map(Param::tensor));
        group_norm(x, self.num_groups, w.as_ref(), b.as_ref(), self.eps)
    }

    fn named_parameters(&self) -> Vec<(String, Param<T>)> {
        let mut params = Vec::new();
        params.extend(self.weight.iter().map(|p| ("weight".to_string(), p.clone())));
        params.extend(self.bias.iter().map(|p| ("bias".to_string(), p.clone())));
        params
    }
}
