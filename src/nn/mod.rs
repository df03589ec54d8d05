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
//!     .push(nn::Relu)
//!     .push(nn::Linear::new(8, 3, &mut rng));
//! let names: Vec<String> = model.named_parameters().into_iter().map(|(n, _)| n).collect();
//! assert_eq!(names, ["0.weight", "0.bias", "2.weight", "2.bias"]);
//! let y = model.forward(&Tensor::zeros(&[5, 4]))?;
//! assert_eq!(y.shape(), &[5, 3]);
//! # Ok::<(), nabla::Error>(())
//! ```
//!
//! # Element types
//!
//! Modules, like tensors, hold `f32` unless asked otherwise, PyTorch's default dtype: a
//! plain `nn::Linear::new(..)` is a `Linear<f32>` with no annotation. For `f64` (gradient
//! checks, golden comparisons) name the type, as `dtype=torch.float64` would:
//!
//! ```
//! use nabla::prelude::*;
//! let mut rng = nabla::rng(0);
//! let layer = nn::Linear::new(3, 2, &mut rng);                 // f32
//! let exact = nn::Linear::<f64>::new(3, 2, &mut rng);          // f64
//! assert_eq!(layer.forward(&Tensor::ones(&[1, 3]))?.shape(), &[1, 2]);
//! assert_eq!(exact.forward(&Tensor::<f64>::ones(&[1, 3]))?.shape(), &[1, 2]);
//! # Ok::<(), nabla::Error>(())
//! ```
//!
//! Hyper-parameters (rates, probabilities, slopes, margins, epsilons) are `f64` throughout
//! `nn`, [`optim`](crate::optim) and [`ebm`](crate::ebm), whatever the element type, as
//! PyTorch takes Python floats; the scalars of tensor ops (`x.add_scalar(..)`,
//! `x.clamp(..)`, `x.pow(..)`) are the tensor's own element type.
//!
//! # Names
//!
//! Types follow Rust's naming conventions (the API guidelines' C-CASE: an acronym is one
//! word, `Relu`, `MseLoss`), as burn does, so that clippy's defaults hold and names read
//! alike across the crate; state_dict keys are always PyTorch's. From PyTorch's classes:
//!
//! | PyTorch | nabla |
//! | --- | --- |
//! | `nn.Module` | [`Module`] (`#[derive(Module)]` for a model of one's own) |
//! | `nn.Parameter`, `register_buffer` | [`Param`], [`Buffer`] |
//! | `nn.Sequential`, `nn.ModuleList` | [`Sequential`], a `Vec` field of a derived module |
//! | `nn.Linear`, `nn.Identity`, `nn.Flatten` | [`Linear`], [`Identity`], [`Flatten`] |
//! | `nn.Embedding` | [`Embedding`] |
//! | `nn.Conv1d`, `nn.Conv2d` (`padding_mode`, `padding="same"`) | [`Conv1d`], [`Conv2d`] (`with_padding_mode`, `with_same_padding`) |
//! | `nn.MaxPool1d/2d`, `nn.AvgPool1d/2d`, `nn.LPPool1d/2d` | [`Pool1d`], [`Pool2d`] with a [`PoolKind`] (`return_indices`: `forward_with_indices`) |
//! | `nn.AdaptiveAvgPool1d/2d`, `nn.AdaptiveMaxPool1d/2d` | [`AdaptiveAvgPool1d`], [`AdaptiveAvgPool2d`], [`AdaptiveMaxPool1d`], [`AdaptiveMaxPool2d`] |
//! | `nn.BatchNorm1d/2d/3d`, `nn.LayerNorm`, `nn.GroupNorm` | [`BatchNorm1d`], [`BatchNorm2d`], [`BatchNorm3d`] (options in [`BatchNormOptions`]), [`LayerNorm`], [`GroupNorm`] |
//! | `nn.RNN`, `nn.GRU`, `nn.LSTM` | [`Rnn`], [`Gru`], [`Lstm`], options in [`RecurrentOptions`] (on the shared [`Recurrent`]) |
//! | `nn.RNNCell`, `nn.GRUCell`, `nn.LSTMCell` | [`RnnCell`], [`GruCell`], [`LstmCell`] (on the shared [`RecurrentCell`]) |
//! | `nn.MultiheadAttention` | [`MultiheadAttention`] |
//! | `nn.AdaptiveLogSoftmaxWithLoss` | [`AdaptiveLogSoftmaxWithLoss`] |
//! | `nn.ReLU`, `nn.LeakyReLU`, `nn.PReLU`, `nn.RReLU` | [`Relu`], [`LeakyRelu`], [`PRelu`], [`RRelu`] |
//! | `nn.Sigmoid`, `nn.Tanh`, `nn.Softplus` | [`Sigmoid`], [`Tanh`], [`Softplus`] |
//! | `nn.Softmax`, `nn.LogSoftmax`, `nn.Dropout`, `nn.AlphaDropout` | [`Softmax`], [`LogSoftmax`], [`Dropout`], [`AlphaDropout`] |
//! | `nn.ELU`, `nn.SELU`, `nn.CELU`, `nn.GELU`, `nn.SiLU`, `nn.Mish` | [`Elu`], [`Selu`], [`Celu`], [`Gelu`], [`Silu`], [`Mish`] |
//! | `nn.Hardtanh`, `nn.ReLU6`, `nn.Hardsigmoid`, `nn.Hardswish` | [`Hardtanh`], [`Relu6`], [`Hardsigmoid`], [`Hardswish`] |
//! | `nn.LogSigmoid`, `nn.Softsign`, `nn.Tanhshrink` | [`LogSigmoid`], [`Softsign`], [`Tanhshrink`] |
//! | `nn.Softshrink`, `nn.Hardshrink`, `nn.Threshold` | [`Softshrink`], [`Hardshrink`], [`Threshold`] |
//! | `nn.GLU`, `nn.Softmin`, `nn.Softmax2d` | [`Glu`], [`Softmin`], [`Softmax2d`] |
//! | `nn.MSELoss`, `nn.NLLLoss` | [`MseLoss`], [`NllLoss`] |
//! | `nn.CrossEntropyLoss`, `nn.MarginRankingLoss` | [`CrossEntropyLoss`], [`MarginRankingLoss`] |
//! | `nn.L1Loss`, `nn.SmoothL1Loss`, `nn.HuberLoss` | [`L1Loss`], [`SmoothL1Loss`], [`HuberLoss`] |
//! | `nn.BCELoss`, `nn.BCEWithLogitsLoss`, `nn.KLDivLoss` | [`BceLoss`], [`BceWithLogitsLoss`], [`KlDivLoss`] |
//! | `nn.SoftMarginLoss`, `nn.HingeEmbeddingLoss` | [`SoftMarginLoss`], [`HingeEmbeddingLoss`] |
//! | `nn.PoissonNLLLoss`, `nn.GaussianNLLLoss` | [`PoissonNllLoss`], [`GaussianNllLoss`] |
//! | `nn.TripletMarginLoss`, `nn.CosineEmbeddingLoss` | [`TripletMarginLoss`], [`CosineEmbeddingLoss`] |
//! | `nn.MultiMarginLoss`, `nn.MultiLabelMarginLoss` | [`MultiMarginLoss`], [`MultiLabelMarginLoss`] |
//! | `torch.nn.functional.*` | [`functional`], the same snake_case names |
//! | `torch.nn.init.*` | [`init`] |

/// Writes a module's constructors once for every element type and makes a plain call infer
/// `f32`, as tensors' constructors do (see [`Creation`](crate::Creation)): the bodies go in
/// a trait implemented for `$ty<T>` (so `$ty::<f64>::new(..)` works with the prelude in
/// scope), and each is repeated as an inherent function of `$ty<f32>`, which the compiler
/// picks first, so `$ty::new(..)` needs no annotation.
macro_rules! constructors {
    (
        $ty:ident: $tr:ident {
            $(
                $(#[$doc:meta])*
                fn $f:ident($($arg:ident: $argty:ty),* $(,)?) -> $ret:ty $body:block
            )*
        }
    ) => {
        #[doc = concat!("[`", stringify!($ty), "`]'s constructors for any element type (`", stringify!($ty), "::<f64>::new`), in the prelude.")]
        #[doc(hidden)]
        pub trait $tr<T: Element>: Sized {
            $( $(#[$doc])* fn $f($($arg: $argty),*) -> $ret; )*
        }
        impl<T: Element> $tr<T> for $ty<T> {
            $( fn $f($($arg: $argty),*) -> $ret $body )*
        }
        impl $ty<f32> {
            $( $(#[$doc])* pub fn $f($($arg: $argty),*) -> $ret { <Self as $tr<f32>>::$f($($arg),*) } )*
        }
    };
}

mod activation;
mod adaptive;
mod attention;
mod buffer;
mod conv;
mod embedding;
pub mod functional;
pub mod init;
mod linear;
mod loss;
mod norm;
mod padding;
mod param;
mod pool;
mod regression_losses;
mod rnn;
mod sequential;
mod state_dict;

pub use activation::{
    AlphaDropout, Celu, Dropout, Elu, Gelu, Glu, Hardshrink, Hardsigmoid, Hardswish, Hardtanh, LeakyRelu, LogSigmoid, LogSoftmax, Mish,
    PRelu, RRelu, Relu, Relu6, Selu, Sigmoid, Silu, Softmax, Softmax2d, Softmin, Softplus, Softshrink, Softsign, Tanh, Tanhshrink,
    Threshold,
};
pub use adaptive::{AdaptiveLogSoftmaxWithLoss, AdaptiveOutput};
pub use attention::{AttentionOutput, AttnMask, MultiheadAttention, MultiheadOptions, scaled_dot_product_attention};
pub use buffer::Buffer;
pub use conv::{Conv1d, Conv2d};
pub use embedding::Embedding;
pub use functional::Reduction;
pub use linear::{Flatten, Identity, Linear};
pub use loss::{
    BceLoss, BceWithLogitsLoss, CosineEmbeddingLoss, CrossEntropyLoss, GaussianNllLoss, HingeEmbeddingLoss, HuberLoss, KlDivLoss, L1Loss,
    MarginRankingLoss, MseLoss, MultiLabelMarginLoss, MultiMarginLoss, NllLoss, PoissonNllLoss, SmoothL1Loss, SoftMarginLoss,
    TripletMarginLoss,
};
/// `#[derive(Module)]`: see [`Module`].
pub use nabla_derive::Module;
pub use norm::{BatchNorm, BatchNorm1d, BatchNorm2d, BatchNorm3d, BatchNormOptions, GroupNorm, LayerNorm};
pub use param::Param;
pub use pool::{
    AdaptiveAvgPool1d, AdaptiveAvgPool2d, AdaptiveMaxPool1d, AdaptiveMaxPool2d, Pool1d, Pool2d, PoolKind, avg_pool1d, avg_pool2d,
    max_pool1d, max_pool2d,
};
pub use rnn::{
    CellKind, Gru, GruCell, Lstm, LstmCell, Recurrent, RecurrentCell, RecurrentOptions, RecurrentOutput, Rnn, RnnCell, RnnNonlinearity,
    TruncatedBptt,
};
pub use sequential::Sequential;

/// The constructors of the modules generic over their element type, as traits (see the
/// `constructors!` macro): `use nabla::prelude::*` brings them into scope, so that
/// `nn::Linear::<f64>::new(..)` resolves; a plain `nn::Linear::new(..)` is `f32`.
#[doc(hidden)]
pub mod constructors {
    pub use super::activation::PReluNew;
    pub use super::adaptive::AdaptiveLogSoftmaxWithLossNew;
    pub use super::attention::MultiheadAttentionNew;
    pub use super::conv::{Conv1dNew, Conv2dNew};
    pub use super::embedding::EmbeddingNew;
    pub use super::linear::LinearNew;
    pub use super::norm::{BatchNorm1dNew, BatchNorm2dNew, BatchNorm3dNew, GroupNormNew, LayerNormNew};
    pub use super::rnn::{GruCellNew, GruNew, LstmCellNew, LstmNew, RecurrentCellNew, RecurrentNew, RnnCellNew, RnnNew};
    pub use super::sequential::SequentialNew;
}
pub use state_dict::{StateDict, StoredTensor, load_state_dict, read_safetensors, save_state_dict, save_tensors};

use crate::error::Result;
use crate::tensor::{Element, Tensor};
use std::sync::atomic::{AtomicBool, Ordering};

/// A layer or a model: a function of a tensor with named parameters, buffers and children,
/// as `torch.nn.Module`.
///
/// Forward takes `&self`: a module can be shared between threads and used in several places
/// of one graph (parameter sharing). Parameters are [`Param`] cells, listed by
/// [`Module::named_parameters`] under PyTorch's `state_dict` names; non-trainable state
/// (running statistics, counters) is held in [`Buffer`]s, listed by
/// [`Module::named_buffers`], saved and loaded with the parameters and never given to an
/// optimiser.
///
/// # A model of your own
///
/// `#[derive(Module)]` implements the trait for a struct whose fields are modules,
/// [`Param`]s, [`Buffer`]s, or `Vec`s and `Option`s of them. Names are PyTorch's, the field
/// names joined by dots (`encoder.weight`, `layers.0.bias`), so the model saves and loads by
/// the same keys as the same model written in PyTorch, and [`Module::train`] /
/// [`Module::eval`] reach every child. Fields of plain types (numbers, `bool`, `String`) are
/// left out; `#[module(skip)]` leaves out any other. The struct's own
/// `forward(&self, &Tensor<T>)` becomes [`Module::forward`] with `#[module(forward)]`
/// (without it, [`Module::forward`] is an `Err`, as PyTorch's missing `forward` raises, and
/// the struct's methods are the way in; that suits models of several inputs). A struct
/// generic over its element type uses its first type parameter; `#[module(element = f64)]`
/// names one otherwise (f32 by default).
///
/// ```
/// use nabla::prelude::*;
/// use nabla::nn::{Linear, Param};
///
/// #[derive(Module)]
/// #[module(forward)]
/// struct Mlp {
///     layers: Vec<Linear>,
///     scale: Param,
///     #[module(skip)]
///     note: &'static str,
/// }
///
/// impl Mlp {
///     fn forward(&self, x: &Tensor) -> nabla::Result<Tensor> {
///         let mut x = x.clone();
///         for layer in &self.layers {
///             x = layer.forward(&x)?.relu();
///         }
///         x.mul(&self.scale.tensor())
///     }
/// }
///
/// let mut rng = nabla::rng(0);
/// let model = Mlp {
///     layers: vec![Linear::new(4, 8, &mut rng), Linear::new(8, 2, &mut rng)],
///     scale: Param::new(Tensor::ones(&[2])),
///     note: "two layers",
/// };
/// let names: Vec<String> = model.named_parameters().into_iter().map(|(n, _)| n).collect();
/// // The module's own parameters first, then its children's, as PyTorch lists them.
/// assert_eq!(names, ["scale", "layers.0.weight", "layers.0.bias", "layers.1.weight", "layers.1.bias"]);
/// let boxed: Box<dyn Module> = Box::new(model);
/// assert_eq!(boxed.forward(&Tensor::zeros(&[3, 4]))?.shape(), &[3, 2]);
/// # Ok::<(), nabla::Error>(())
/// ```
///
/// A module written by hand implements [`Module::forward`] and, if it holds parameters of
/// its own, [`Module::named_parameters`]; a module that holds other modules lists them in
/// [`Module::named_children`], and the provided methods then name their parameters and
/// buffers (`child.name`) and pass training mode down.
pub trait Module<T: Element = f32>: Send + Sync {
    /// The module applied to `input`.
    ///
    /// Provided as an `Err` naming the type, for models whose way in is a method of their
    /// own (PyTorch raises the same for a module without `forward`).
    fn forward(&self, input: &Tensor<T>) -> Result<Tensor<T>> {
        let _ = input;
        Err(crate::Error::invalid(
            "forward",
            format!(
                "{} has no Module::forward (call its own method, or add #[module(forward)] to use its `forward`)",
                std::any::type_name::<Self>()
            ),
        ))
    }

    /// The modules this one holds, by field name (`encoder`, `layers.0`), in registration
    /// order (PyTorch's `named_children`). Provided as none.
    fn named_children(&self) -> Vec<(String, &dyn Module<T>)> {
        Vec::new()
    }

    /// The parameters with their PyTorch `state_dict` names (`weight`, `0.bias`, …), in
    /// registration order. Provided as the children's, each prefixed with `child.`.
    fn named_parameters(&self) -> Vec<(String, Param<T>)> {
        self.named_children().into_iter().flat_map(|(child, m)| prefixed(&child, m.named_parameters())).collect()
    }

    /// The buffers (non-trainable state) with their PyTorch `state_dict` names
    /// (`running_mean`, `0.num_batches_tracked`), in registration order. Provided as the
    /// children's, each prefixed with `child.`.
    fn named_buffers(&self) -> Vec<(String, Buffer<T>)> {
        self.named_children().into_iter().flat_map(|(child, m)| prefixed(&child, m.named_buffers())).collect()
    }

    /// The parameters in registration order (what optimizers take).
    fn parameters(&self) -> Vec<Param<T>> {
        self.named_parameters().into_iter().map(|(_, p)| p).collect()
    }

    /// The buffers in registration order.
    fn buffers(&self) -> Vec<Buffer<T>> {
        self.named_buffers().into_iter().map(|(_, b)| b).collect()
    }

    /// The number of parameter elements, frozen ones included
    /// (`sum(p.numel() for p in model.parameters())`).
    fn num_parameters(&self) -> usize {
        self.parameters().iter().map(Param::numel).sum()
    }

    /// Switches training mode on (`true`) or off, for the module and its children
    /// (PyTorch's `train(mode)`); dropout and RReLU behave differently in the two.
    /// Provided as passing the mode to every child; a module with behaviour of its own
    /// that depends on the mode overrides it and passes it on too.
    fn set_training(&self, training: bool) {
        for (_, child) in self.named_children() {
            child.set_training(training);
        }
    }

    /// Training mode on, as PyTorch's `model.train()`.
    fn train(&self) {
        self.set_training(true)
    }

    /// Evaluation mode, as PyTorch's `model.eval()`.
    fn eval(&self) {
        self.set_training(false)
    }

    /// Writes the parameters and buffers to a safetensors file under their PyTorch names;
    /// see [`save_state_dict`].
    fn save(&self, path: impl AsRef<std::path::Path>) -> Result<()>
    where
        Self: Sized,
    {
        state_dict::save_module(self, path)
    }

    /// Reads parameters and buffers from a safetensors file by name, strictly (every one
    /// present with its shape, nothing else); see [`load_state_dict`].
    fn load(&self, path: impl AsRef<std::path::Path>) -> Result<()>
    where
        Self: Sized,
    {
        state_dict::load_module(self, &read_safetensors(path)?)
    }
}

impl<T: Element, M: Module<T> + ?Sized> Module<T> for Box<M> {
    fn forward(&self, input: &Tensor<T>) -> Result<Tensor<T>> {
        (**self).forward(input)
    }
    fn named_children(&self) -> Vec<(String, &dyn Module<T>)> {
        (**self).named_children()
    }
    fn named_parameters(&self) -> Vec<(String, Param<T>)> {
        (**self).named_parameters()
    }
    fn named_buffers(&self) -> Vec<(String, Buffer<T>)> {
        (**self).named_buffers()
    }
    fn set_training(&self, training: bool) {
        (**self).set_training(training)
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

/// Prefixes child parameter or buffer names with `prefix.` (how containers build PyTorch
/// names).
pub(crate) fn prefixed<P>(prefix: &str, entries: Vec<(String, P)>) -> Vec<(String, P)> {
    entries.into_iter().map(|(name, p)| (format!("{prefix}.{name}"), p)).collect()
}

/// A table of a module's parameters and buffers: name, shape and element count, then the
/// totals (PyTorch users print the module, or `torchinfo`'s summary).
///
/// ```
/// use nabla::prelude::*;
/// let mut rng = nabla::rng(0);
/// let model: nn::Sequential = nn::Sequential::new().push(nn::Linear::new(4, 8, &mut rng)).push(nn::Relu).push(nn::Linear::new(8, 2, &mut rng));
/// let table = nn::summary(&model);
/// assert!(table.contains("0.weight"));
/// assert!(table.ends_with("58 parameters (58 trainable), 0 buffer elements\n"));
/// ```
pub fn summary<T: Element>(module: &dyn Module<T>) -> String {
    let params = module.named_parameters();
    let buffers = module.named_buffers();
    let rows: Vec<(String, Vec<usize>, usize, &str)> = params
        .iter()
        .map(|(n, p)| (n.clone(), p.shape(), p.numel(), if p.is_frozen() { "frozen" } else { "" }))
        .chain(buffers.iter().map(|(n, b)| {
            let shape = b.shape();
            let count = shape.iter().product();
            (n.clone(), shape, count, "buffer")
        }))
        .collect();
    let width = rows.iter().map(|r| r.0.len()).max().unwrap_or(0).max(4);
    let mut out = format!("{:width$}  {:>16}  {:>10}\n", "name", "shape", "elements");
    for (name, shape, count, note) in &rows {
        let shape = format!("{shape:?}");
        out += format!("{name:width$}  {shape:>16}  {count:>10}  {note}").trim_end();
        out.push('\n');
    }
    let total: usize = params.iter().map(|(_, p)| p.numel()).sum();
    let trainable: usize = params.iter().filter(|(_, p)| !p.is_frozen()).map(|(_, p)| p.numel()).sum();
    let buffered: usize = buffers.iter().map(|(_, b)| b.shape().iter().product::<usize>()).sum();
    out += &format!("{total} parameters ({trainable} trainable), {buffered} buffer elements\n");
    out
}
