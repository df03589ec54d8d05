//! Activations and dropout as modules: PyTorch's activations (the table in [`nn`](super)),
//! Softmax, LogSoftmax, Dropout.

use super::{Mode, Module, Param, functional};
use crate::error::{Error, Result};
use crate::tensor::{Creation, Element, Tensor};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use std::sync::Mutex;

macro_rules! stateless_activation {
    ($(#[$doc:meta])* $name:ident, |$x:ident| $body:expr_2021) => {
        $(#[$doc])*
        #[derive(Debug, Clone, Copy, Default)]
        pub struct $name;

        impl<T: Element> Module<T> for $name {
            fn forward(&self, $x: &Tensor<T>) -> Result<Tensor<T>> {
                Ok($body)
            }
        }
    };
}

stateless_activation!(
    /// `max(0, x)`, as `torch.nn.ReLU`.
    Relu,
    |x| x.relu()
);
stateless_activation!(
    /// `1 / (1 + e⁻ˣ)`, as `torch.nn.Sigmoid`.
    Sigmoid,
    |x| x.sigmoid()
);
stateless_activation!(
    /// `tanh x`, as `torch.nn.Tanh`.
    Tanh,
    |x| x.tanh()
);

/// `ln(1 + e^{βx}) / β`, linear above `threshold`, as `torch.nn.Softplus` (defaults β = 1,
/// threshold = 20). As β grows it tends to ReLU.
#[derive(Debug, Clone, Copy)]
pub struct Softplus {
    /// β.
    pub beta: f64,
    /// Above `βx > threshold` the function is the identity.
    pub threshold: f64,
}

impl Default for Softplus {
    fn default() -> Self {
        Softplus { beta: 1.0, threshold: 20.0 }
    }
}

impl<T: Element> Module<T> for Softplus {
    fn forward(&self, x: &Tensor<T>) -> Result<Tensor<T>> {
        Ok(x.softplus(T::of(self.beta), T::of(self.threshold)))
    }
}

/// `x` for `x > 0`, else `negative_slope · x`, as `torch.nn.LeakyReLU` (default 0.01).
#[derive(Debug, Clone, Copy)]
pub struct LeakyRelu {
    /// The slope below 0.
    pub negative_slope: f64,
}

impl Default for LeakyRelu {
    fn default() -> Self {
        LeakyRelu { negative_slope: 0.01 }
    }
}

impl<T: Element> Module<T> for LeakyRelu {
    fn forward(&self, x: &Tensor<T>) -> Result<Tensor<T>> {
        Ok(x.leaky_relu(T::of(self.negative_slope)))
    }
}

/// Softmax along `dim`, as `torch.nn.Softmax`.
#[derive(Debug, Clone, Copy)]
pub struct Softmax {
    /// The dim that sums to 1.
    pub dim: isize,
}

impl<T: Element> Module<T> for Softmax {
    fn forward(&self, x: &Tensor<T>) -> Result<Tensor<T>> {
        x.softmax(self.dim)
    }
}

/// Log-softmax along `dim`, as `torch.nn.LogSoftmax`.
#[derive(Debug, Clone, Copy)]
pub struct LogSoftmax {
    /// The dim normalised over.
    pub dim: isize,
}

impl<T: Element> Module<T> for LogSoftmax {
    fn forward(&self, x: &Tensor<T>) -> Result<Tensor<T>> {
        x.log_softmax(self.dim)
    }
}

/// `max(0, x) + a · min(0, x)` with learnable slopes `a` (one, or one per channel), as
/// `torch.nn.PReLU`; the parameter is `weight`, initialised to 0.25.
///
/// ```
/// use nabla::prelude::*;
/// let prelu = nn::PRelu::new(1, 0.25);
/// let y = prelu.forward(&Tensor::from_vec(vec![-2.0, 3.0], &[2])?)?;
/// assert_eq!(y.to_vec(), vec![-0.5, 3.0]);
/// # Ok::<(), nabla::Error>(())
/// ```
pub struct PRelu<T: Element = f32> {
    /// The slopes, `[num_parameters]`.
    pub weight: Param<T>,
}

constructors! {
    PRelu: PReluNew {
        /// `num_parameters` slopes (1, or the number of channels), all `init`.
        fn new(num_parameters: usize, init: f64) -> Self {
            PRelu { weight: Param::new(Tensor::<T>::full(&[num_parameters], T::of(init))) }
        }
    }
}

impl<T: Element> Module<T> for PRelu<T> {
    fn forward(&self, x: &Tensor<T>) -> Result<Tensor<T>> {
        functional::prelu(x, &self.weight.tensor())
    }
    fn named_parameters(&self) -> Vec<(String, Param<T>)> {
        vec![("weight".into(), self.weight.clone())]
    }
}

/// Randomised leaky ReLU, as `torch.nn.RReLU` (defaults `lower = 1/8`, `upper = 1/3`): a
/// random slope from `U(lower, upper)` per element in training, the mean slope in
/// evaluation. The randomness comes from a generator seeded at construction.
pub struct RRelu {
    /// Smallest slope.
    pub lower: f64,
    /// Largest slope.
    pub upper: f64,
    mode: Mode,
    rng: Mutex<StdRng>,
}

impl RRelu {
    /// Slopes in `[lower, upper]`; `Err` if `lower > upper` or either is NaN.
    pub fn new(lower: f64, upper: f64, rng: &mut impl Rng) -> Result<Self> {
        if lower.is_nan() || upper.is_nan() || lower > upper {
            return Err(Error::invalid("RReLU", format!("lower {lower} must not exceed upper {upper}")));
        }
        Ok(RRelu { lower, upper, mode: Mode::default(), rng: Mutex::new(StdRng::seed_from_u64(rng.random())) })
    }
}

impl RRelu {
    /// Training mode (the default). An inherent method, so that it needs no element type.
    pub fn train(&self) {
        self.mode.set(true)
    }
    /// Evaluation mode.
    pub fn eval(&self) {
        self.mode.set(false)
    }
}

impl<T: Element> Module<T> for RRelu {
    fn forward(&self, x: &Tensor<T>) -> Result<Tensor<T>> {
        let mut rng = self.rng.lock().unwrap_or_else(|e| e.into_inner());
        Ok(functional::rrelu(x, self.lower, self.upper, self.mode.is_training(), &mut *rng))
    }
    fn set_training(&self, training: bool) {
        self.mode.set(training)
    }
}

/// Dropout, as `torch.nn.Dropout`: zeroes elements with probability `p` and scales the rest
/// by `1/(1-p)` in training; the identity in evaluation.
pub struct Dropout {
    /// The probability of zeroing an element.
    pub p: f64,
    mode: Mode,
    rng: Mutex<StdRng>,
}

impl Dropout {
    /// Dropout with probability `p`; `Err` unless `p` is in `[0, 1]`.
    pub fn new(p: f64, rng: &mut impl Rng) -> Result<Self> {
        if !(0.0..=1.0).contains(&p) {
            return Err(Error::invalid("Dropout", format!("probability {p} is not in [0, 1]")));
        }
        Ok(Dropout { p, mode: Mode::default(), rng: Mutex::new(StdRng::seed_from_u64(rng.random())) })
    }
}

impl Dropout {
    /// Training mode (the default). An inherent method, so that it needs no element type.
    pub fn train(&self) {
        self.mode.set(true)
    }
    /// Evaluation mode.
    pub fn eval(&self) {
        self.mode.set(false)
    }
}

impl<T: Element> Module<T> for Dropout {
    fn forward(&self, x: &Tensor<T>) -> Result<Tensor<T>> {
        let mut rng = self.rng.lock().unwrap_or_else(|e| e.into_inner());
        functional::dropout(x, self.p, self.mode.is_training(), &mut *rng)
    }
    fn set_training(&self, training: bool) {
        self.mode.set(training)
    }
}

stateless_activation!(
    /// `scale · elu(x, α)` with PyTorch's constants, as `torch.nn.SELU`.
    Selu,
    |x| functional::selu(x)
);
stateless_activation!(
    /// `x σ(x)`, as `torch.nn.SiLU`.
    Silu,
    |x| functional::silu(x)
);
stateless_activation!(
    /// `x tanh(softplus(x))`, as `torch.nn.Mish`.
    Mish,
    |x| functional::mish(x)
);
stateless_activation!(
    /// `min(max(0, x), 6)`, as `torch.nn.ReLU6`.
    Relu6,
    |x| functional::relu6(x)
);
stateless_activation!(
    /// `0`, `x/6 + 1/2`, `1` below -3, between, above 3, as `torch.nn.Hardsigmoid`.
    Hardsigmoid,
    |x| functional::hardsigmoid(x)
);
stateless_activation!(
    /// `0`, `x (x + 3) / 6`, `x` up to -3, between, from 3, as `torch.nn.Hardswish`.
    Hardswish,
    |x| functional::hardswish(x)
);
stateless_activation!(
    /// `log σ(x)`, as `torch.nn.LogSigmoid`.
    LogSigmoid,
    |x| functional::logsigmoid(x)
);
stateless_activation!(
    /// `x / (1 + |x|)`, as `torch.nn.Softsign`.
    Softsign,
    |x| functional::softsign(x)
);
stateless_activation!(
    /// `x - tanh x`, as `torch.nn.Tanhshrink`.
    Tanhshrink,
    |x| functional::tanhshrink(x)
);

/// `x` where `x > 0`, else `α(eˣ - 1)`, as `torch.nn.ELU` (α = 1 by default).
#[derive(Debug, Clone, Copy)]
pub struct Elu {
    /// α, the value `-α` the function tends to below 0.
    pub alpha: f64,
}

impl Default for Elu {
    fn default() -> Self {
        Elu { alpha: 1.0 }
    }
}

impl<T: Element> Module<T> for Elu {
    fn forward(&self, x: &Tensor<T>) -> Result<Tensor<T>> {
        Ok(functional::elu(x, self.alpha))
    }
}

/// `max(0, x) + min(0, α(e^{x/α} - 1))`, as `torch.nn.CELU` (α = 1 by default).
#[derive(Debug, Clone, Copy)]
pub struct Celu {
    /// α (not 0).
    pub alpha: f64,
}

impl Default for Celu {
    fn default() -> Self {
        Celu { alpha: 1.0 }
    }
}

impl<T: Element> Module<T> for Celu {
    fn forward(&self, x: &Tensor<T>) -> Result<Tensor<T>> {
        functional::celu(x, self.alpha)
    }
}

/// The Gaussian error linear unit, as `torch.nn.GELU` (exact by default).
#[derive(Debug, Clone, Copy, Default)]
pub struct Gelu {
    /// Exact (`erf`) or the tanh approximation.
    pub approximate: functional::GeluApproximate,
}

impl<T: Element> Module<T> for Gelu {
    fn forward(&self, x: &Tensor<T>) -> Result<Tensor<T>> {
        Ok(functional::gelu(x, self.approximate))
    }
}

/// `x` clamped to `[min_val, max_val]`, as `torch.nn.Hardtanh` (default `[-1, 1]`).
#[derive(Debug, Clone, Copy)]
pub struct Hardtanh {
    /// The lower bound.
    pub min_val: f64,
    /// The upper bound.
    pub max_val: f64,
}

impl Default for Hardtanh {
    fn default() -> Self {
        Hardtanh { min_val: -1.0, max_val: 1.0 }
    }
}

impl<T: Element> Module<T> for Hardtanh {
    fn forward(&self, x: &Tensor<T>) -> Result<Tensor<T>> {
        if self.min_val > self.max_val {
            return Err(Error::invalid("Hardtanh", format!("min_val {} is above max_val {}", self.min_val, self.max_val)));
        }
        Ok(functional::hardtanh(x, self.min_val, self.max_val))
    }
}

/// `x ∓ λ` beyond `±λ`, 0 between, as `torch.nn.Softshrink` (λ = 0.5 by default).
#[derive(Debug, Clone, Copy)]
pub struct Softshrink {
    /// λ ≥ 0.
    pub lambd: f64,
}

impl Default for Softshrink {
    fn default() -> Self {
        Softshrink { lambd: 0.5 }
    }
}

impl<T: Element> Module<T> for Softshrink {
    fn forward(&self, x: &Tensor<T>) -> Result<Tensor<T>> {
        functional::softshrink(x, self.lambd)
    }
}

/// `x` beyond `±λ`, 0 between, as `torch.nn.Hardshrink` (λ = 0.5 by default).
#[derive(Debug, Clone, Copy)]
pub struct Hardshrink {
    /// λ.
    pub lambd: f64,
}

impl Default for Hardshrink {
    fn default() -> Self {
        Hardshrink { lambd: 0.5 }
    }
}

impl<T: Element> Module<T> for Hardshrink {
    fn forward(&self, x: &Tensor<T>) -> Result<Tensor<T>> {
        Ok(functional::hardshrink(x, self.lambd))
    }
}

/// `x` where `x > threshold`, else `value`, as `torch.nn.Threshold(threshold, value)`.
#[derive(Debug, Clone, Copy)]
pub struct Threshold {
    /// The bound `x` must exceed to pass.
    pub threshold: f64,
    /// What replaces the others.
    pub value: f64,
}

impl<T: Element> Module<T> for Threshold {
    fn forward(&self, x: &Tensor<T>) -> Result<Tensor<T>> {
        Ok(functional::threshold(x, self.threshold, self.value))
    }
}

/// The gated linear unit `a ⊙ σ(b)` over the halves of `dim`, as `torch.nn.GLU` (dim -1 by
/// default).
#[derive(Debug, Clone, Copy)]
pub struct Glu {
    /// The dim split in two.
    pub dim: isize,
}

impl Default for Glu {
    fn default() -> Self {
        Glu { dim: -1 }
    }
}

impl<T: Element> Module<T> for Glu {
    fn forward(&self, x: &Tensor<T>) -> Result<Tensor<T>> {
        functional::glu(x, self.dim)
    }
}

/// `softmax(-x)` along `dim`, as `torch.nn.Softmin`.
#[derive(Debug, Clone, Copy)]
pub struct Softmin {
    /// The dim that sums to 1.
    pub dim: isize,
}

impl<T: Element> Module<T> for Softmin {
    fn forward(&self, x: &Tensor<T>) -> Result<Tensor<T>> {
        functional::softmin(x, self.dim)
    }
}

/// Softmax over the channels of every pixel (dim -3), as `torch.nn.Softmax2d`: input
/// `(C, H, W)` or `(N, C, H, W)`.
#[derive(Debug, Clone, Copy, Default)]
pub struct Softmax2d;

impl<T: Element> Module<T> for Softmax2d {
    fn forward(&self, x: &Tensor<T>) -> Result<Tensor<T>> {
        if !(3..=4).contains(&x.ndim()) {
            return Err(Error::shape("Softmax2d", format!("input of shape {:?}: expected (C, H, W) or (N, C, H, W)", x.shape())));
        }
        x.softmax(-3)
    }
}

/// Alpha dropout, as `torch.nn.AlphaDropout`: keeps a SELU network's self-normalisation
/// (see [`functional::alpha_dropout`]); the identity in evaluation mode.
pub struct AlphaDropout {
    /// The probability of dropping an element.
    pub p: f64,
    mode: Mode,
    rng: Mutex<StdRng>,
}

impl AlphaDropout {
    /// Alpha dropout with probability `p`; `Err` unless `p` is in `[0, 1]`.
    pub fn new(p: f64, rng: &mut impl Rng) -> Result<Self> {
        if !(0.0..=1.0).contains(&p) {
            return Err(Error::invalid("AlphaDropout", format!("probability {p} is not in [0, 1]")));
        }
        Ok(AlphaDropout { p, mode: Mode::default(), rng: Mutex::new(StdRng::seed_from_u64(rng.random())) })
    }
}

impl<T: Element> Module<T> for AlphaDropout {
    fn forward(&self, x: &Tensor<T>) -> Result<Tensor<T>> {
        let mut rng = self.rng.lock().unwrap_or_else(|e| e.into_inner());
        functional::alpha_dropout(x, self.p, self.mode.is_training(), &mut *rng)
    }
    fn set_training(&self, training: bool) {
        self.mode.set(training)
    }
}
