//! Activations and dropout as modules: Relu, RRelu, PRelu, Softplus, LeakyRelu, Sigmoid,
//! Tanh, Softmax, LogSoftmax, Dropout.

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
