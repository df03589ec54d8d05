//! Optimisers, gradient clipping and learning-rate schedules, with PyTorch's update rules
//! and defaults.
//!
//! An optimiser holds the [`Param`]s it updates and reads their gradients
//! from the [`Gradients`] store a backward pass returned: nothing is stored on tensors, so
//! there is no `zero_grad`. Full-batch, stochastic and mini-batch gradient descent are the
//! same loop with batches of N, 1 and B samples (see [`crate::data::Batches`]).
//!
//! ```
//! use nabla::prelude::*;
//! // Minimise (w - 3)² by gradient descent.
//! let w = nn::Param::new(Tensor::zeros(&[1]));
//! let mut opt = optim::Sgd::new(vec![w.clone()], 0.1);
//! for _ in 0..100 {
//!     let loss = (&w.tensor() - 3.0).pow(2.0).sum();
//!     opt.step(&loss.backward()?)?;
//! }
//! assert!((w.tensor().item()? - 3.0).abs() < 1e-6);
//! # Ok::<(), nabla::Error>(())
//! ```
//!
//! # Names
//!
//! Rust's naming conventions (an acronym is one word), as in [`crate::nn`]. From
//! PyTorch's classes:
//!
//! | PyTorch | nabla |
//! | --- | --- |
//! | `optim.SGD` | [`Sgd`] |
//! | `optim.Adam`, `optim.AdamW` | [`Adam`], [`AdamW`] |
//! | `optim.RMSprop` | [`RmsProp`] |
//! | `optim.Adagrad`, `optim.Adadelta`, `optim.Adamax` | [`Adagrad`], [`Adadelta`], [`Adamax`] |
//! | `optim.NAdam`, `optim.RAdam` | [`NAdam`], [`RAdam`] |
//! | `lr_scheduler.StepLR`, `ExponentialLR`, `CosineAnnealingLR` | [`StepLr`], [`ExponentialLr`], [`CosineAnnealingLr`] |
//! | `lr_scheduler.LinearLR`, `LambdaLR`, `SequentialLR` | [`LinearLr`], [`LambdaLr`], [`SequentialLr`] |
//! | `lr_scheduler.MultiStepLR`, `ConstantLR`, `PolynomialLR` | [`MultiStepLr`], [`ConstantLr`], [`PolynomialLr`] |
//! | `lr_scheduler.OneCycleLR`, `CyclicLR`, `CosineAnnealingWarmRestarts` | [`OneCycleLr`], [`CyclicLr`], [`CosineAnnealingWarmRestarts`] |
//! | `lr_scheduler.ReduceLROnPlateau` | [`ReduceLrOnPlateau`], fed the metric |
//! | a scheduler object (`scheduler.step()`) | [`Schedule`] driving any [`LrScheduler`] |
//! | `nn.utils.clip_grad_norm_`, `clip_grad_value_` | [`clip_grad_norm`], [`clip_grad_norm_with`] (`norm_type`, `error_if_nonfinite` in [`ClipNorm`]), [`clip_grad_value`] |

mod adam;
mod adaptive;
mod clip;
mod rmsprop;
mod scheduler;
mod sgd;

pub use adam::{Adam, AdamW};
pub use adaptive::{Adadelta, Adagrad, Adamax, NAdam, RAdam};
pub use clip::{ClipNorm, clip_grad_norm, clip_grad_norm_with, clip_grad_value};
pub use rmsprop::RmsProp;
pub use scheduler::{
    Anneal, ConstantLr, CosineAnnealingLr, CosineAnnealingWarmRestarts, CyclicLr, CyclicMode, ExponentialLr, LambdaLr, LinearLr,
    LrScheduler, MultiStepLr, OneCycleLr, PlateauMode, PolynomialLr, ReduceLrOnPlateau, Schedule, SequentialLr, StepLr,
};
pub use sgd::Sgd;

use crate::autograd::Gradients;
use crate::error::{Error, Result};
use crate::nn::Param;
use crate::tensor::{Element, Tensor};
use ndarray::ArrayD;
use std::collections::BTreeMap;

/// An optimisation algorithm over a fixed list of parameters.
pub trait Optimizer<T: Element = f32> {
    /// One update of every parameter that has a gradient in `grads` (frozen parameters and
    /// parameters the loss does not depend on have none and are left alone).
    fn step(&mut self, grads: &Gradients<T>) -> Result<()>;
    /// The current learning rate.
    fn lr(&self) -> f64;
    /// Sets the learning rate (what schedulers do).
    fn set_lr(&mut self, lr: f64);
    /// The optimiser's state (step counts, moment buffers) as named tensors, as PyTorch's
    /// `optimizer.state_dict()`: `"{i}.{buffer}"` for parameter `i`.
    fn state_dict(&self) -> BTreeMap<String, Tensor<T>>;
    /// Restores a state saved by [`Optimizer::state_dict`]; `Err` (and nothing changed) if
    /// a buffer's shape does not match its parameter.
    fn load_state_dict(&mut self, state: &BTreeMap<String, Tensor<T>>) -> Result<()>;
}

/// Writes an optimiser's state ([`Optimizer::state_dict`]) to a safetensors file.
pub fn save_state<T: Element>(optimizer: &impl Optimizer<T>, path: impl AsRef<std::path::Path>) -> Result<()> {
    let tensors: Vec<(String, Tensor<T>)> = optimizer.state_dict().into_iter().collect();
    crate::nn::save_tensors(&tensors, path)
}

/// Restores an optimiser's state from a file written by [`save_state`]; `Err` (and nothing
/// changed) when the file does not fit the optimiser's parameters.
///
/// ```
/// use nabla::prelude::*;
/// let w = nn::Param::new(Tensor::ones(&[2]));
/// let mut opt = optim::Sgd::new(vec![w.clone()], 0.1).momentum(0.9);
/// opt.step(&w.tensor().sum().backward()?)?;
/// let path = std::env::temp_dir().join("nabla-doc-sgd-state.safetensors");
/// optim::save_state(&opt, &path)?;
/// let mut restored = optim::Sgd::new(vec![w.clone()], 0.1).momentum(0.9);
/// optim::load_state(&mut restored, &path)?;
/// assert_eq!(restored.state_dict()["0.momentum_buffer"].to_vec(), vec![1.0, 1.0]);
/// # Ok::<(), nabla::Error>(())
/// ```
pub fn load_state<T: Element>(optimizer: &mut impl Optimizer<T>, path: impl AsRef<std::path::Path>) -> Result<()> {
    let file = crate::nn::read_safetensors(path)?;
    let mut state = BTreeMap::new();
    for (name, t) in file.tensors {
        let values = t.values.iter().map(|&v| T::of(v)).collect();
        state.insert(
            name,
            Tensor::from(ArrayD::from_shape_vec(t.shape.as_slice(), values).map_err(|e| Error::shape("load_state", e.to_string()))?),
        );
    }
    optimizer.load_state_dict(&state)
}

/// The gradient of each parameter (a shared handle, no copy), `None` where the store has
/// none.
fn gradients_of<T: Element>(params: &[Param<T>], grads: &Gradients<T>) -> Vec<Option<Tensor<T>>> {
    params.iter().map(|p| grads.get(&p.tensor()).cloned()).collect()
}

/// Per-parameter buffers by name, shared by the optimisers for their state dicts.
#[derive(Debug, Clone, Default)]
struct Buffers<T: Element> {
    /// `buffers[name][i]`: the buffer `name` of parameter `i`, once it exists.
    by_name: BTreeMap<&'static str, Vec<Option<ArrayD<T>>>>,
}

impl<T: Element> Buffers<T> {
    fn new(names: &[&'static str], count: usize) -> Self {
        Buffers { by_name: names.iter().map(|&n| (n, vec![None; count])).collect() }
    }

    fn get_mut(&mut self, name: &'static str, i: usize) -> &mut Option<ArrayD<T>> {
        &mut self.by_name.get_mut(name).expect("known buffer")[i]
    }

    fn to_state(&self, step: &[u64]) -> BTreeMap<String, Tensor<T>> {
        let mut state = BTreeMap::new();
        for (name, buffers) in &self.by_name {
            for (i, b) in buffers.iter().enumerate() {
                if let Some(b) = b {
                    state.insert(format!("{i}.{name}"), Tensor::from(b.clone()));
                }
            }
        }
        for (i, &s) in step.iter().enumerate() {
            state.insert(format!("{i}.step"), Tensor::from(ndarray::arr0(T::of(s as f64)).into_dyn()));
        }
        state
    }

    fn load(&mut self, params: &[Param<T>], step: &mut [u64], state: &BTreeMap<String, Tensor<T>>) -> Result<()> {
        let mut fresh = Buffers { by_name: self.by_name.keys().map(|&n| (n, vec![None; params.len()])).collect() };
        let mut steps = vec![0; params.len()];
        for (key, value) in state {
            let parse = || -> Option<(usize, &str)> {
                let (i, name) = key.split_once('.')?;
                Some((i.parse().ok()?, name))
            };
            let (i, name) = parse()
                .filter(|(i, _)| *i < params.len())
                .ok_or_else(|| Error::invalid("load_state_dict", format!("unexpected state {key}")))?;
            if name == "step" {
                steps[i] = value.item()?.to_u64().unwrap_or(0);
                continue;
            }
            let slot = fresh
                .by_name
                .iter_mut()
                .find(|(n, _)| **n == name)
                .map(|(_, v)| v)
                .ok_or_else(|| Error::invalid("load_state_dict", format!("unexpected state {key}")))?;
            if value.shape() != params[i].shape().as_slice() {
                return Err(Error::shape(
                    "load_state_dict",
                    format!("{key} has shape {:?}, parameter {i} has {:?}", value.shape(), params[i].shape()),
                ));
            }
            slot[i] = Some(value.to_ndarray());
        }
        *self = fresh;
        step.copy_from_slice(&steps);
        Ok(())
    }
}
