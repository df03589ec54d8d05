//! `Linear`, `Identity`, `Flatten`.

use super::init::{FanMode, kaiming_uniform, uniform};
use super::{Module, Param};
use crate::error::Result;
use crate::tensor::{Element, Tensor};
use rand::Rng;

/// `y = x Wᵀ + b`, as `torch.nn.Linear`: `x: [.., in_features]`, `weight: [out, in]`,
/// `bias: [out]`. Initialised as PyTorch does: `W ~ U(±1/√in)` (Kaiming uniform with
/// `a = √5`), `b ~ U(±1/√in)`.
///
/// ```
/// use nabla::prelude::*;
/// let layer = nn::Linear::new(3, 2, &mut nabla::rng(0));
/// assert_eq!(layer.forward(&Tensor::ones(&[5, 3]))?.shape(), &[5, 2]);
/// assert_eq!(layer.weight.shape(), vec![2, 3]);
/// # Ok::<(), nabla::Error>(())
/// ```
pub struct Linear<T: Element = f32> {
    /// `[out_features, in_features]`.
    pub weight: Param<T>,
    /// `[out_features]`, or `None` without bias.
    pub bias: Option<Param<T>>,
}

constructors! {
    Linear: LinearNew {
        /// A layer with bias, initialised as PyTorch's.
        fn new(in_features: usize, out_features: usize, rng: &mut impl Rng) -> Self {
            Self::with_bias(in_features, out_features, true, rng)
        }

        /// A layer with or without bias, initialised as PyTorch's.
        fn with_bias(in_features: usize, out_features: usize, bias: bool, rng: &mut impl Rng) -> Self {
            let weight = kaiming_uniform(&[out_features, in_features], 5f64.sqrt(), FanMode::FanIn, rng)
                .unwrap_or_else(|_| uniform(&[out_features, in_features], 0.0, rng));
            let bound = if in_features > 0 { 1.0 / (in_features as f64).sqrt() } else { 0.0 };
            let bias = bias.then(|| Param::new(uniform(&[out_features], bound, rng)));
            Linear { weight: Param::new(weight), bias }
        }
    }
}

impl<T: Element> Linear<T> {
    /// A layer with the given weight `[out, in]` and bias `[out]`.
    pub fn from_tensors(weight: Tensor<T>, bias: Option<Tensor<T>>) -> Self {
        Linear { weight: Param::new(weight), bias: bias.map(Param::new) }
    }
}

impl<T: Element> Module<T> for Linear<T> {
    fn forward(&self, input: &Tensor<T>) -> Result<Tensor<T>> {
        let bias = self.bias.as_ref().map(Param::tensor);
        input.linear(&self.weight.tensor(), bias.as_ref())
    }

    fn named_parameters(&self) -> Vec<(String, Param<T>)> {
        let mut params = vec![("weight".to_string(), self.weight.clone())];
        if let Some(b) = &self.bias {
            params.push(("bias".to_string(), b.clone()));
        }
        params
    }
}

/// The identity, as `torch.nn.Identity`.
#[derive(Debug, Clone, Copy, Default)]
pub struct Identity;

impl<T: Element> Module<T> for Identity {
    fn forward(&self, input: &Tensor<T>) -> Result<Tensor<T>> {
        Ok(input.clone())
    }
}

/// Flattens dims `start_dim..=end_dim` into one, as `torch.nn.Flatten` (defaults 1 and -1:
/// everything but the batch dim).
#[derive(Debug, Clone, Copy)]
pub struct Flatten {
    /// First dim flattened.
    pub start_dim: isize,
    /// Last dim flattened.
    pub end_dim: isize,
}

impl Default for Flatten {
    fn default() -> Self {
        Flatten { start_dim: 1, end_dim: -1 }
    }
}

impl Flatten {
    /// `Flatten(1, -1)`, PyTorch's default.
    pub fn new() -> Self {
        Self::default()
    }
}

impl<T: Element> Module<T> for Flatten {
    fn forward(&self, input: &Tensor<T>) -> Result<Tensor<T>> {
        input.flatten(self.start_dim, self.end_dim)
    }
}
