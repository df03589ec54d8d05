//! `Conv1d` and `Conv2d`: convolution layers with PyTorch's parameters and initialisation.

use super::init::{FanMode, kaiming_uniform, uniform};
use super::padding::{PadMode, pad};
use super::{Module, Param};
use crate::error::{Error, Result};
use crate::ops::{Conv1dConfig, Conv2dConfig};
use crate::tensor::{Element, Tensor};
use rand::Rng;

/// A 2-D convolution layer, as `torch.nn.Conv2d`: `weight (O, C/groups, kh, kw)` and
/// `bias (O)`, initialised as PyTorch does (`U(±1/√fan_in)` for both, `fan_in = C/groups ·
/// kh · kw`).
///
/// ```
/// use nabla::prelude::*;
/// use nabla::ops::Conv2dConfig;
/// let conv = nn::Conv2d::new(1, 8, [3, 3], Conv2dConfig { padding: [1, 1], ..Default::default() }, true, &mut nabla::rng(0))?;
/// assert_eq!(conv.forward(&Tensor::zeros(&[2, 1, 8, 8]))?.shape(), &[2, 8, 8, 8]);
/// # Ok::<(), nabla::Error>(())
/// ```
pub struct Conv2d<T: Element = f32> {
    /// `(out_channels, in_channels / groups, kh, kw)`.
    pub weight: Param<T>,
    /// `(out_channels)`, or `None`.
    pub bias: Option<Param<T>>,
    /// Stride, padding, dilation, groups.
    pub config: Conv2dConfig,
    /// How the padding is filled (PyTorch's `padding_mode`; zeros by default).
    pub padding_mode: PadMode,
    /// PyTorch's `padding="same"`: the output keeps the input's size, the padding (`config`'s
    /// is then unused) split `⌊/2⌋` before and the rest after. Set by
    /// [`Conv2d::with_same_padding`].
    pub same: bool,
}

/// PyTorch's constructor checks: positive groups dividing both channel counts, a
/// non-empty kernel, positive stride and dilation.
fn check_config(
    op: &'static str,
    channels: [usize; 2],
    kernel: &[usize],
    stride: &[usize],
    dilation: &[usize],
    groups: usize,
) -> Result<()> {
    let [cin, cout] = channels;
    if groups == 0 || cin % groups != 0 || cout % groups != 0 {
        return Err(Error::invalid(op, format!("groups {groups} must be positive and divide in_channels {cin} and out_channels {cout}")));
    }
    if kernel.contains(&0) || stride.contains(&0) || dilation.contains(&0) {
        return Err(Error::invalid(op, format!("kernel {kernel:?}, stride {stride:?} and dilation {dilation:?} must be positive")));
    }
    Ok(())
}

fn init_conv<T: Element>(shape: &[usize], bias: bool, rng: &mut impl Rng) -> Result<(Param<T>, Option<Param<T>>)> {
    let weight = kaiming_uniform(shape, 5f64.sqrt(), FanMode::FanIn, rng)?;
    let fan_in: usize = shape[1..].iter().product();
    let bound = if fan_in > 0 { 1.0 / (fan_in as f64).sqrt() } else { 0.0 };
    let bias = bias.then(|| Param::new(uniform(&[shape[0]], bound, rng)));
    Ok((Param::new(weight), bias))
}

constructors! {
    Conv2d: Conv2dNew {
        /// A layer from `in_channels` to `out_channels` with a `kernel_size` window.
        fn new(
            in_channels: usize,
            out_channels: usize,
            kernel_size: [usize; 2],
            config: Conv2dConfig,
            bias: bool,
            rng: &mut impl Rng,
        ) -> Result<Self> {
            let groups = config.groups;
            check_config("Conv2d", [in_channels, out_channels], &kernel_size, &config.stride, &config.dilation, groups)?;
            let (weight, bias) = init_conv(&[out_channels, in_channels / groups, kernel_size[0], kernel_size[1]], bias, rng)?;
            Ok(Conv2d { weight, bias, config, padding_mode: PadMode::Zeros, same: false })
        }
    }
}

/// Each spatial dim's `(before, after)` padding: `same`'s split of `dilation·(k − 1)`, or
/// `padding` on both sides.
fn sides(kernel: &[usize], dilation: &[usize], padding: &[usize], same: bool) -> Vec<(usize, usize)> {
    (0..kernel.len())
        .map(|i| {
            if same {
                let total = dilation[i] * (kernel[i].max(1) - 1);
                (total / 2, total - total / 2)
            } else {
                (padding[i], padding[i])
            }
        })
        .collect()
}

/// The input padded as `sides` and `mode` ask, unless the convolution can pad it itself
/// (zeros on both sides alike): then `None`.
fn padded<T: Element>(input: &Tensor<T>, sides: &[(usize, usize)], mode: PadMode) -> Result<Option<Tensor<T>>> {
    if mode == PadMode::Zeros && sides.iter().all(|(a, b)| a == b) {
        return Ok(None);
    }
    let pairs: Vec<usize> = sides.iter().rev().flat_map(|&(a, b)| [a, b]).collect();
    pad(input, &pairs, mode).map(Some)
}

impl<T: Element> Conv2d<T> {
    /// With PyTorch's `padding_mode` (`"reflect"` is [`PadMode::Reflect`], …).
    ///
    /// ```
    /// use nabla::prelude::*;
    /// use nabla::nn::functional::PadMode;
    /// use nabla::ops::Conv2dConfig;
    /// let cfg = Conv2dConfig { padding: [1, 1], ..Default::default() };
    /// let conv = nn::Conv2d::new(1, 1, [3, 3], cfg, false, &mut nabla::rng(0))?.with_padding_mode(PadMode::Circular);
    /// assert_eq!(conv.forward(&Tensor::ones(&[1, 1, 4, 4]))?.shape(), &[1, 1, 4, 4]);
    /// # Ok::<(), nabla::Error>(())
    /// ```
    pub fn with_padding_mode(mut self, mode: PadMode) -> Self {
        self.padding_mode = mode;
        self
    }

    /// With PyTorch's `padding="same"` (see [`Conv2d::same`]); `Err` for a strided
    /// convolution, as PyTorch. (`padding="valid"` is no padding, the default config.)
    ///
    /// ```
    /// use nabla::prelude::*;
    /// use nabla::ops::Conv2dConfig;
    /// let conv = nn::Conv2d::new(2, 3, [2, 3], Conv2dConfig::default(), true, &mut nabla::rng(0))?.with_same_padding()?;
    /// assert_eq!(conv.forward(&Tensor::ones(&[1, 2, 5, 6]))?.shape(), &[1, 3, 5, 6]);
    /// # Ok::<(), nabla::Error>(())
    /// ```
    pub fn with_same_padding(mut self) -> Result<Self> {
        if self.config.stride != [1, 1] {
            return Err(Error::invalid(
                "Conv2d",
                format!("padding \"same\" is not supported for strided convolutions (stride {:?})", self.config.stride),
            ));
        }
        self.same = true;
        Ok(self)
    }
}

impl<T: Element> Module<T> for Conv2d<T> {
    fn forward(&self, input: &Tensor<T>) -> Result<Tensor<T>> {
        let bias = self.bias.as_ref().map(Param::tensor);
        let weight = self.weight.tensor();
        let k = &weight.shape()[2..];
        match padded(input, &sides(k, &self.config.dilation, &self.config.padding, self.same), self.padding_mode)? {
            Some(x) => x.conv2d(&weight, bias.as_ref(), Conv2dConfig { padding: [0, 0], ..self.config }),
            None if self.same => {
                let padding = [0, 1].map(|i| self.config.dilation[i] * (k[i].max(1) - 1) / 2);
                input.conv2d(&weight, bias.as_ref(), Conv2dConfig { padding, ..self.config })
            }
            None => input.conv2d(&weight, bias.as_ref(), self.config),
        }
    }
    fn named_parameters(&self) -> Vec<(String, Param<T>)> {
        let mut params = vec![("weight".to_string(), self.weight.clone())];
        params.extend(self.bias.as_ref().map(|b| ("bias".to_string(), b.clone())));
        params
    }
}

/// A 1-D convolution layer, as `torch.nn.Conv1d`: `weight (O, C/groups, k)`, `bias (O)`.
pub struct Conv1d<T: Element = f32> {
    /// `(out_channels, in_channels / groups, k)`.
    pub weight: Param<T>,
    /// `(out_channels)`, or `None`.
    pub bias: Option<Param<T>>,
    /// Stride, padding, dilation, groups.
    pub config: Conv1dConfig,
    /// As [`Conv2d::padding_mode`].
    pub padding_mode: PadMode,
    /// As [`Conv2d::same`]; set by [`Conv1d::with_same_padding`].
    pub same: bool,
}

constructors! {
    Conv1d: Conv1dNew {
        /// A layer from `in_channels` to `out_channels` with a window of `kernel_size`.
        fn new(
            in_channels: usize,
            out_channels: usize,
            kernel_size: usize,
            config: Conv1dConfig,
            bias: bool,
            rng: &mut impl Rng,
        ) -> Result<Self> {
            let groups = config.groups;
            check_config("Conv1d", [in_channels, out_channels], &[kernel_size], &[config.stride], &[config.dilation], groups)?;
            let (weight, bias) = init_conv(&[out_channels, in_channels / groups, kernel_size], bias, rng)?;
            Ok(Conv1d { weight, bias, config, padding_mode: PadMode::Zeros, same: false })
        }
    }
}

impl<T: Element> Conv1d<T> {
    /// As [`Conv2d::with_padding_mode`].
    pub fn with_padding_mode(mut self, mode: PadMode) -> Self {
        self.padding_mode = mode;
        self
    }

    /// As [`Conv2d::with_same_padding`].
    pub fn with_same_padding(mut self) -> Result<Self> {
        if self.config.stride != 1 {
            return Err(Error::invalid(
                "Conv1d",
                format!("padding \"same\" is not supported for strided convolutions (stride {})", self.config.stride),
            ));
        }
        self.same = true;
        Ok(self)
    }
}

impl<T: Element> Module<T> for Conv1d<T> {
    fn forward(&self, input: &Tensor<T>) -> Result<Tensor<T>> {
        let bias = self.bias.as_ref().map(Param::tensor);
        let weight = self.weight.tensor();
        let k = weight.shape()[2];
        match padded(input, &sides(&[k], &[self.config.dilation], &[self.config.padding], self.same), self.padding_mode)? {
            Some(x) => x.conv1d(&weight, bias.as_ref(), Conv1dConfig { padding: 0, ..self.config }),
            None if self.same => {
                let padding = self.config.dilation * (k.max(1) - 1) / 2;
                input.conv1d(&weight, bias.as_ref(), Conv1dConfig { padding, ..self.config })
            }
            None => input.conv1d(&weight, bias.as_ref(), self.config),
        }
    }
    fn named_parameters(&self) -> Vec<(String, Param<T>)> {
        let mut params = vec![("weight".to_string(), self.weight.clone())];
        params.extend(self.bias.as_ref().map(|b| ("bias".to_string(), b.clone())));
        params
    }
}
