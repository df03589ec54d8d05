//! Pooling layers: max, average, power-average (Lp) and log-sum-exp, in 1-D and 2-D.

use super::Module;
use crate::error::{Error, Result};
use crate::ops::{Pool1dConfig, Pool2dConfig};
use crate::tensor::{Element, Tensor};
use ndarray::ArrayD;

/// The pooling a layer applies.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum PoolKind {
    /// The window's maximum (`MaxPool`).
    Max,
    /// The window's mean (`AvgPool`).
    Avg {
        /// PyTorch's `count_include_pad` (default `true`): padding zeros count in the
        /// divisor.
        count_include_pad: bool,
        /// PyTorch's `divisor_override` (2-D only; default `None`): every window's sum is
        /// divided by this instead.
        divisor_override: Option<usize>,
    },
    /// `(Σ x^p)^(1/p)` (`LPPool`).
    Lp {
        /// The power `p`.
        norm_type: f64,
    },
    /// `(1/β) log mean exp(βx)` (log-sum-exp pooling).
    Lse {
        /// β.
        beta: f64,
    },
}

/// A 2-D pooling layer: `MaxPool2d`, `AvgPool2d`, `LPPool2d` or LSE pooling, by `kind`.
///
/// ```
/// use nabla::prelude::*;
/// use nabla::nn::{Pool2d, PoolKind};
/// use nabla::ops::Pool2dConfig;
/// let pool = Pool2d { kind: PoolKind::Max, config: Pool2dConfig::new(2) };
/// assert_eq!(pool.forward(&Tensor::zeros(&[1, 3, 8, 8]))?.shape(), &[1, 3, 4, 4]);
/// # Ok::<(), nabla::Error>(())
/// ```
#[derive(Debug, Clone, Copy)]
pub struct Pool2d {
    /// Which pooling.
    pub kind: PoolKind,
    /// Window, stride, padding, dilation.
    pub config: Pool2dConfig,
}

/// A 1-D pooling layer: `MaxPool1d`, `AvgPool1d`, `LPPool1d` or LSE pooling, by `kind`.
#[derive(Debug, Clone, Copy)]
pub struct Pool1d {
    /// Which pooling.
    pub kind: PoolKind,
    /// Window, stride, padding, dilation.
    pub config: Pool1dConfig,
}

impl Pool2d {
    /// Max pooling's output and the position `h·W + w` of each maximum in its plane
    /// (PyTorch's `return_indices=True`); `Err` for another kind of pooling.
    ///
    /// ```
    /// use nabla::prelude::*;
    /// let (y, at) = nn::max_pool2d(2).forward_with_indices(&Tensor::<f32>::arange(0.0, 16.0, 1.0)?.reshape(&[1, 1, 4, 4])?)?;
    /// assert_eq!(at.iter().copied().collect::<Vec<_>>(), vec![5, 7, 13, 15]);
    /// # Ok::<(), nabla::Error>(())
    /// ```
    pub fn forward_with_indices<T: Element>(&self, x: &Tensor<T>) -> Result<(Tensor<T>, ArrayD<usize>)> {
        match self.kind {
            PoolKind::Max => x.max_pool2d_with_indices(self.config),
            other => Err(Error::invalid("MaxPool2d", format!("return_indices is for max pooling, not {other:?}"))),
        }
    }
}

impl Pool1d {
    /// As [`Pool2d::forward_with_indices`]: positions along `L`.
    pub fn forward_with_indices<T: Element>(&self, x: &Tensor<T>) -> Result<(Tensor<T>, ArrayD<usize>)> {
        match self.kind {
            PoolKind::Max => x.max_pool1d_with_indices(self.config),
            other => Err(Error::invalid("MaxPool1d", format!("return_indices is for max pooling, not {other:?}"))),
        }
    }
}

impl<T: Element> Module<T> for Pool2d {
    fn forward(&self, x: &Tensor<T>) -> Result<Tensor<T>> {
        match self.kind {
            PoolKind::Max => x.max_pool2d(self.config),
            PoolKind::Avg { count_include_pad, divisor_override } => x.avg_pool2d(self.config, count_include_pad, divisor_override),
            PoolKind::Lp { norm_type } => x.lp_pool2d(norm_type, self.config),
            PoolKind::Lse { beta } => x.lse_pool2d(beta, self.config),
        }
    }
}

impl<T: Element> Module<T> for Pool1d {
    fn forward(&self, x: &Tensor<T>) -> Result<Tensor<T>> {
        match self.kind {
            PoolKind::Max => x.max_pool1d(self.config),
            PoolKind::Avg { count_include_pad, divisor_override: None } => x.avg_pool1d(self.config, count_include_pad),
            PoolKind::Avg { divisor_override: Some(_), .. } => {
                Err(Error::invalid("AvgPool1d", "divisor_override is for 2-D average pooling (PyTorch's AvgPool1d has none)"))
            }
            PoolKind::Lp { norm_type } => x.lp_pool1d(norm_type, self.config),
            PoolKind::Lse { beta } => x.lse_pool1d(beta, self.config),
        }
    }
}

/// `torch.nn.MaxPool2d(kernel_size)`: non-overlapping max pooling.
pub fn max_pool2d(kernel_size: usize) -> Pool2d {
    Pool2d { kind: PoolKind::Max, config: Pool2dConfig::new(kernel_size) }
}

/// `torch.nn.AvgPool2d(kernel_size)`: non-overlapping average pooling.
pub fn avg_pool2d(kernel_size: usize) -> Pool2d {
    Pool2d { kind: PoolKind::Avg { count_include_pad: true, divisor_override: None }, config: Pool2dConfig::new(kernel_size) }
}

/// `torch.nn.MaxPool1d(kernel_size)`: non-overlapping max pooling.
///
/// ```
/// use nabla::prelude::*;
/// let pool = nn::max_pool1d(2);
/// let x = Tensor::from_vec(vec![1.0, 3.0, 2.0, 0.0, 5.0], &[1, 1, 5])?;
/// assert_eq!(pool.forward(&x)?.to_vec(), vec![3.0, 2.0]);
/// # Ok::<(), nabla::Error>(())
/// ```
pub fn max_pool1d(kernel_size: usize) -> Pool1d {
    Pool1d { kind: PoolKind::Max, config: Pool1dConfig::new(kernel_size) }
}

/// `torch.nn.AvgPool1d(kernel_size)`: non-overlapping average pooling.
pub fn avg_pool1d(kernel_size: usize) -> Pool1d {
    Pool1d { kind: PoolKind::Avg { count_include_pad: true, divisor_override: None }, config: Pool1dConfig::new(kernel_size) }
}

/// The output size of a 2-D adaptive pooling, a `None` entry keeping that input size.
fn adaptive_size(output_size: [Option<usize>; 2], shape: &[usize]) -> [usize; 2] {
    let nd = shape.len();
    let keep = |k: usize, d: usize| output_size[k].unwrap_or(if nd >= 2 { shape[nd - 2 + k] } else { d });
    [keep(0, 0), keep(1, 0)]
}

/// `torch.nn.AdaptiveAvgPool1d`: `output_size` windows over `L` of `(N, C, L)`, whatever
/// `L` (see [`Tensor::adaptive_avg_pool1d`]).
///
/// ```
/// use nabla::prelude::*;
/// let pool = nn::AdaptiveAvgPool1d { output_size: 2 };
/// assert_eq!(pool.forward(&Tensor::<f32>::arange(0.0, 5.0, 1.0)?.reshape(&[1, 1, 5])?)?.to_vec(), vec![1.0, 3.0]);
/// # Ok::<(), nabla::Error>(())
/// ```
#[derive(Debug, Clone, Copy)]
pub struct AdaptiveAvgPool1d {
    /// Windows per channel.
    pub output_size: usize,
}

impl<T: Element> Module<T> for AdaptiveAvgPool1d {
    fn forward(&self, x: &Tensor<T>) -> Result<Tensor<T>> {
        x.adaptive_avg_pool1d(self.output_size)
    }
}

/// `torch.nn.AdaptiveAvgPool2d`: `[oh, ow]` windows over `(H, W)`, a `None` keeping that
/// size (see [`Tensor::adaptive_avg_pool2d`]); `[Some(1), Some(1)]` is global average
/// pooling.
///
/// ```
/// use nabla::prelude::*;
/// let pool = nn::AdaptiveAvgPool2d::new(1);
/// assert_eq!(pool.forward(&Tensor::<f32>::ones(&[2, 3, 7, 5]))?.shape(), &[2, 3, 1, 1]);
/// # Ok::<(), nabla::Error>(())
/// ```
#[derive(Debug, Clone, Copy)]
pub struct AdaptiveAvgPool2d {
    /// `[oh, ow]`; `None` keeps the input's size along that dim.
    pub output_size: [Option<usize>; 2],
}

impl AdaptiveAvgPool2d {
    /// `size × size` windows.
    pub fn new(size: usize) -> Self {
        AdaptiveAvgPool2d { output_size: [Some(size); 2] }
    }
}

impl<T: Element> Module<T> for AdaptiveAvgPool2d {
    fn forward(&self, x: &Tensor<T>) -> Result<Tensor<T>> {
        x.adaptive_avg_pool2d(adaptive_size(self.output_size, x.shape()))
    }
}

/// `torch.nn.AdaptiveMaxPool1d`: the maximum of each of `output_size` windows over `L`;
/// [`AdaptiveMaxPool1d::forward_with_indices`] also gives their positions.
#[derive(Debug, Clone, Copy)]
pub struct AdaptiveMaxPool1d {
    /// Windows per channel.
    pub output_size: usize,
}

impl AdaptiveMaxPool1d {
    /// The maxima and their positions along `L` (PyTorch's `return_indices=True`).
    pub fn forward_with_indices<T: Element>(&self, x: &Tensor<T>) -> Result<(Tensor<T>, ArrayD<usize>)> {
        x.adaptive_max_pool1d(self.output_size)
    }
}

impl<T: Element> Module<T> for AdaptiveMaxPool1d {
    fn forward(&self, x: &Tensor<T>) -> Result<Tensor<T>> {
        Ok(self.forward_with_indices(x)?.0)
    }
}

/// `torch.nn.AdaptiveMaxPool2d`: the maximum of each of `[oh, ow]` windows over `(H, W)`,
/// a `None` keeping that size; [`AdaptiveMaxPool2d::forward_with_indices`] also gives their
/// positions `h·W + w`.
///
/// ```
/// use nabla::prelude::*;
/// let pool = nn::AdaptiveMaxPool2d { output_size: [Some(1), None] };
/// let x = Tensor::<f32>::arange(0.0, 6.0, 1.0)?.reshape(&[1, 1, 2, 3])?;
/// let (y, at) = pool.forward_with_indices(&x)?;
/// assert_eq!((y.to_vec(), at.iter().copied().collect::<Vec<_>>()), (vec![3.0, 4.0, 5.0], vec![3, 4, 5]));
/// # Ok::<(), nabla::Error>(())
/// ```
#[derive(Debug, Clone, Copy)]
pub struct AdaptiveMaxPool2d {
    /// `[oh, ow]`; `None` keeps the input's size along that dim.
    pub output_size: [Option<usize>; 2],
}

impl AdaptiveMaxPool2d {
    /// `size × size` windows.
    pub fn new(size: usize) -> Self {
        AdaptiveMaxPool2d { output_size: [Some(size); 2] }
    }

    /// The maxima and their positions in their planes (PyTorch's `return_indices=True`).
    pub fn forward_with_indices<T: Element>(&self, x: &Tensor<T>) -> Result<(Tensor<T>, ArrayD<usize>)> {
        x.adaptive_max_pool2d(adaptive_size(self.output_size, x.shape()))
    }
}

impl<T: Element> Module<T> for AdaptiveMaxPool2d {
    fn forward(&self, x: &Tensor<T>) -> Result<Tensor<T>> {
        Ok(self.forward_with_indices(x)?.0)
    }
}
