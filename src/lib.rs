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
//! The layers point one way. Under [`Tensor`] is a private array layer (element types,
//! vector maths, the unsafe kernels, the buffer pool) that knows nothing of the graph. A
//! tensor is a handle to a node of the graph, so [`tensor`] and [`autograd`] share the
//! node's type; every op's result joins the graph at one seam in `autograd` (grad mode,
//! anomaly mode, checkpoint capture, which values are kept). [`ops`] builds on both, and
//! [`nn`], [`optim`], [`data`] and [`ebm`] on the ops.
//!
//! ```
//! use nabla::prelude::*;
//!
//! let mut rng = nabla::rng(42);                   // seeded: runs are reproducible
//! let w = Tensor::randn(&[3, 2], &mut rng).requires_grad_(true)?;
//! let x = Tensor::randn(&[4, 3], &mut rng);
//! let loss = x.matmul(&w)?.tanh().pow(2.0).mean();  // L = mean(tanh(xw)²)
//! let grads = loss.backward()?;
//! assert_eq!(grads.get(&w).unwrap().shape(), &[3, 2]);
//! # Ok::<(), nabla::Error>(())
//! ```
#![deny(missing_docs)]
// `unsafe` lives in one module, `array::kernel`, which allows it; see its docs.
#![deny(unsafe_code)]

// `#[derive(Module)]` writes `::nabla::…` paths; this makes them resolve inside the crate too.
extern crate self as nabla;

mod array;
pub mod autograd;
pub mod data;
#[cfg(feature = "mpi")]
pub mod distributed;
pub mod ebm;
mod error;
pub mod guide;
pub mod nn;
pub mod ops;
pub mod optim;
pub mod tensor;

/// The array crate nabla is built on, for labels (`ArrayD<usize>`) and raw values.
pub use ndarray;
/// The random-number crate behind [`rng`], for making data (`rand::Rng`'s `random_range`,
/// shuffles) with the same version nabla uses.
pub use rand;

pub use autograd::{Gradients, grad, no_grad};
pub use error::{Error, Result};
pub use ops::{fuse, where_};
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

/// Sets how many threads nabla's parallel ops use (rayon's global pool), as
/// `torch.set_num_threads`. The pool starts at the first parallel op and cannot be resized
/// after, so call this first thing in `main`; later it is an `Err` naming the running
/// count. The environment variable `RAYON_NUM_THREADS` does the same from outside.
///
/// ```rust,standalone_crate
/// nabla::set_num_threads(1)?;
/// assert_eq!(nabla::num_threads(), 1);
/// assert!(nabla::set_num_threads(2).is_err());   // running already
/// # Ok::<(), nabla::Error>(())
/// ```
pub fn set_num_threads(n: usize) -> Result<()> {
    if n == 0 {
        return Err(Error::invalid("set_num_threads", "0 threads: at least 1"));
    }
    rayon::ThreadPoolBuilder::new().num_threads(n).build_global().map_err(|_| {
        Error::invalid(
            "set_num_threads",
            format!("the thread pool is running with {} threads already; set them before the first op", rayon::current_num_threads()),
        )
    })
}

/// The number of threads nabla's parallel ops use (`torch.get_num_threads`).
pub fn num_threads() -> usize {
    rayon::current_num_threads()
}

/// The README's examples, compiled and run as doc tests so that they stay true.
#[doc = include_str!("../README.md")]
#[cfg(doctest)]
pub struct ReadmeDoctests;

/// What most programs need: `use nabla::prelude::*;`.
pub mod prelude {
    pub use crate::autograd::{Gradients, no_grad};
    pub use crate::error::{Error, Result};
    pub use crate::nn::Module;
    #[doc(hidden)]
    pub use crate::nn::constructors::*;
    pub use crate::optim::Optimizer;
    pub use crate::tensor::{Creation, Element, Tensor};
    pub use crate::{data, ndarray, nn, optim};
}
