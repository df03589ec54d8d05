//! Pooling layers: max, average, power-average (Lp) and log-sum-exp, in 1-D and 2-D.

use super::Module;
use crate::error::Result;
use crate::ops::{Pool1dConfig, Pool2dConfig};
use crate::tensor::{Element, Tensor};

/// The pooling a layer applies.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum PoolKind {
    /// The window's maximum (`MaxPool`).
    Max,
    /// The window's mean (`AvgPool`), counting padding in the divisor when `true`.
    Avg {
        /// PyTorch's `count_include_pad` (default `true`).
        count_include_pad: bool,
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

impl<T: Element> Module<T> for Pool2d {
    fn forward(&self, x: &Tensor<T>) -> Result<Tensor<T>> {
        match self.kind {
            PoolKind::Max => x.max_pool2d(self.config),
            PoolKind::Avg { count_include_pad } => x.avg_pool2d(self.config, count_include_pad),
            PoolKind::Lp { norm_type } => x.lp_pool2d(norm_type, self.config),
            PoolKind::Lse { beta } => x.lse_pool2d(beta, self.config),
        }
    }
}

impl<T: Element> Module<T> for Pool1d {
    fn forward(&self, x: &Tensor<T>) -> Result<Tensor<T>> {
        match self.kind {
            PoolKind::Max => x.max_pool1d(self.config),
            PoolKind::Avg { count_include_pad } => x.avg_pool1d(self.config, count_include_pad),
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
    Pool2d { kind: PoolKind::Avg { count_include_pad: true }, config: Pool2dConfig::new(kernel_size) }
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
    Pool1d { kind: PoolKind::Avg { count_include_pad: true }, config: Pool1dConfig::new(kernel_size) }
}
