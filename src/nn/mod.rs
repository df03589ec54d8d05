//! Neural-network building blocks in PyTorch's vocabulary: the [`Module`] trait,
//! [`Param`], [`Sequential`], layers, activations and losses as modules, their functional
//! forms in [`functional`], initialisations in [`init`], and state dicts (safetensors files
//! with PyTorch's parameter names).
//!
//! ```
//! use nabla::prelude::*;
//! let mut rng = nabla::rng(0);
//! let model = nn::Sequential::new()
//!     .push(nn::Linear::new(4, 8, &mut rng))
//!     .push(nn::ReLU)
//!     .push(nn::Linear::new(8, 3, &mut rng));
//! let names: Vec<String> = model.named_parameters().into_iter().map(|(n, _)| n).collect();
//! assert_eq!(names, ["0.weight", "0.bias", "2.weight", "2.bias"]);
//! let y = model.forward(&Tensor::zeros(&[5, 4]))?;
//! assert_eq!(y.shape(), &[5, 3]);
//! # Ok::<(), nabla::Error>(())
//! ```

mod activation;
mod adaptive;
mod attention;
mod conv;
mod embedding;
pub mod functional;
pub mod init;
mod linear;
mod loss;
mod param;
mod pool;
mod rnn;
mod sequential;
mod state_dict;

pub use activation::{Dropout, LeakyReLU, LogSoftmax, PReLU, RReLU, ReLU, Sigmoid, Softmax, Softplus, Tanh};
pub use adaptive::{AdaptiveLogSoftmaxWithLoss, AdaptiveOutput};
pub use attention::{scaled_dot_product_attention, AttentionOutput, AttnMask, MultiheadAttention, MultiheadOptions};
pub use conv::{Conv1d, Conv2d};
pub use embedding::Embedding;
pub use functional::Reduction;
pub use linear::{Flatten, Identity, Linear};
pub use loss::{CrossEntropyLoss, MSELoss, MarginRankingLoss, NLLLoss};
pub use param::Param;
pub use pool::{avg_pool2d, max_pool2d, Pool1d, Pool2d, PoolKind};
pub use rnn::{CellKind, Recurrent, RecurrentCell, RecurrentOutput, TruncatedBptt};
pub use sequential::Sequential;
pub use state_dict::{load_state_dict, read_safetensors, save_state_dict, save_tensors, StateDict, StoredTensor};

use crate::error::Result;
use crate::tensor::{Element, Tensor};
use std::sync::atomic::{AtomicBool, Ordering};

/// A layer or a model: a function of a tensor with named parameters, as `torch.nn.Module`.
///
/// Forward takes `&self`: a module can be shared between threads and used in several places
/// of one graph (parameter sharing). Parameters are [`Param`] cells, listed by
/// [`Module::named_parameters`] under PyTorch's `state_dict` names.
pub trait Module<T: Element = f32>: Send + Sync {
    /// The module applied to `input`.
    fn forward(&self, input: &Tensor<T>) -> Result<Tensor<T>>;

    /// The parameters with their PyTorch `state_dict` names (`weight`, `0.bias`, …), in
    /// registration order.
    fn named_parameters(&self) -> Vec<(String, Param<T>)> {
        Vec::new()
    }

    /// The parameters in registration order (what optimizers take).
    fn parameters(&self) -> Vec<Param<T>> {
        self.named_parameters().into_iter().map(|(_, p)| p).collect()
    }

    /// Switches training mode on (`true`) or off, for the module and its children
    /// (PyTorch's `train(mode)`); dropout and RReLU behave differently in the two.
    fn set_training(&self, _training: bool) {}

    /// Training mode on, as PyTorch's `model.train()`.
    fn train(&self) {
        self.set_training(true)
    }

    /// Evaluation mode, as PyTorch's `model.eval()`.
    fn eval(&self) {
        self.set_training(false)
    }

    /// Writes the parameters to a safetensors file under their PyTorch names; see
    /// [`save_state_dict`].
    fn save(&self, path: impl AsRef<std::path::Path>) -> Result<()>
    where
        Self: Sized,
    {
        save_state_dict(&self.named_parameters(), path)
    }

    /// Reads parameters from a safetensors file by name; see [`load_state_dict`].
    fn load(&self, path: impl AsRef<std::path::Path>) -> Result<()>
    where
        Self: Sized,
    {
        load_state_dict(&self.named_parameters(), &read_safetensors(path)?)
    }
}

/// Training-mode flag for modules that behave differently in training (on by default, as
/// in PyTorch).
#[derive(Debug)]
pub(crate) struct Mode(AtomicBool);

impl Default for Mode {
    fn default() -> Self {
        Mode(AtomicBool::new(true))
    }
}

impl Mode {
    pub(crate) fn is_training(&self) -> bool {
        self.0.load(Ordering::Relaxed)
    }
    pub(crate) fn set(&self, training: bool) {
        self.0.store(training, Ordering::Relaxed)
    }
}

/// Prefixes child parameter names with `prefix.` (how containers build PyTorch names).
pub(crate) fn prefixed<T: Element>(prefix: &str, params: Vec<(String, Param<T>)>) -> Vec<(String, Param<T>)> {
    params.into_iter().map(|(name, p)| (format!("{prefix}.{name}"), p)).collect()
}
