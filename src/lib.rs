//! # nabla
//!
//! Reverse-mode automatic differentiation and tensors for Rust, in PyTorch's vocabulary.
//!
//! A [`Tensor`] is a node of a computational graph: each op that makes one from tensors
//! that require grad records a backward rule (a vector-Jacobian product). A backward pass
//! walks the graph from a loss to its inputs and returns the gradients in a [`Gradients`]
//! store. Rules are written with tensor ops, so gradients of gradients work.
//!
//! Modules: [`tensor`] and [`ops`] (the values and the differentiable ops), [`autograd`]
//! (the engine, checkpointing, hooks, anomaly mode, graph export, gradient checks), [`nn`]
//! (layers, losses, recurrent layers, attention, state dicts), [`optim`] (optimisers,
//! clipping, schedules), [`data`] (batching, the embedded digits) and [`ebm`]
//! (energy-based models: inference as minimisation, free energies).
//!
//! ```
//! use nabla::prelude::*;
//!
//! let mut rng = nabla::rng(42);                   // seeded: runs are reproducible
//! let w = Tensor::randn(&[3, 2], &mut rng).requires_grad_(true);
//! let x = Tensor::randn(&[4, 3], &mut rng);
//! let loss = x.matmul(&w)?.tanh().pow(2.0).mean();  // L = mean(tanh(xw)²)
//! let grads = loss.backward()?;
//! assert_eq!(grads.get(&w).unwrap().shape(), &[3, 2]);
//! # Ok::<(), nabla::Error>(())
//! ```
#![deny(missing_docs)]
// `unsafe` lives in one module, `ops::kernel`, which allows it; see its docs.
#![deny(unsafe_code)]

// `#[derive(Module)]` writes `::nabla::…` paths; this makes them resolve inside the crate too.
extern crate self as nabla;

pub mod autograd;
pub mod data;
pub mod ebm;
mod error;
pub mod guide;
pub mod nn;
pub mod ops;
pub mod optim;
pub mod tensor;

/// The array crate nabla is built on, for labels (`ArrayD<usize>`) and raw values.
pub use ndarray;

pub use autograd::{grad, no_grad, Gradients};
pub use error::{Error, Result};
pub use ops::where_;
pub use tensor::{Creation, Element, Tensor};

/// A seeded random number generator (`rand`'s `StdRng`): the one source of randomness for
/// initialisation, shuffling and dropout, so that a run is reproducible from its seed.
///
/// ```
/// use nabla::prelude::*;
/// let a = Tensor::randn(&[3], &mut nabla::rng(7));
/// let b = Tensor::randn(&[3], &mut nabla::rng(7));
/// assert_eq!(a.to_vec(), b.to_vec());
/// ```
pub fn rng(seed: u64) -> rand::rngs::StdRng {
    use rand::SeedableRng;
    rand::rngs::StdRng::seed_from_u64(seed)
}

/// The README's examples, compiled and run as doc tests so that they stay true.
#[doc = include_str!("../README.md")]
#[cfg(doctest)]
pub struct ReadmeDoctests;

/// What most programs need: `use nabla::prelude::*;`.
pub mod prelude {
    pub use crate::autograd::{no_grad, Gradients};
    pub use crate::error::{Error, Result};
    pub use crate::nn::Module;
    pub use crate::optim::Optimizer;
    pub use crate::tensor::{Creation, Element, Tensor};
    pub use crate::{data, ndarray, nn, optim};
}
