//! Parameter initialisations, as `torch.nn.init`, all drawing from an explicit rng.
//!
//! Shapes follow PyTorch: a weight is `[out, in, k…]`, so `fan_in = in · Πk` and
//! `fan_out = out · Πk`.

use crate::error::{Error, Result};
use crate::tensor::{Creation, Element, Tensor};
use ndarray::Array2;
use rand::Rng;

/// The non-linearity a gain is computed for ([`calculate_gain`]).
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Nonlinearity {
    /// Linear layers, convolutions and sigmoid: gain 1.
    Linear,
    /// `tanh`: gain 5/3.
    Tanh,
    /// `relu`: gain √2.
    Relu,
    /// `leaky_relu` with this negative slope: gain √(2 / (1 + a²)).
    LeakyRelu(f64),
}

/// Which fan a Kaiming initialisation preserves the variance of.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FanMode {
    /// The forward pass (PyTorch's default).
    FanIn,
    /// The backward pass.
    FanOut,
}

/// The recommended gain for a non-linearity, as `torch.nn.init.calculate_gain`.
///
/// ```
/// use nabla::nn::init::{calculate_gain, Nonlinearity};
/// assert_eq!(calculate_gain(Nonlinearity::Relu), 2f64.sqrt());
/// ```
pub fn calculate_gain(nonlinearity: Nonlinearity) -> f64 {
    match nonlinearity {
        Nonlinearity::Linear => 1.0,
        Nonlinearity::Tanh => 5.0 / 3.0,
        Nonlinearity::Relu => 2f64.sqrt(),
        Nonlinearity::LeakyRelu(a) => (2.0 / (1.0 + a * a)).sqrt(),
    }
}

/// `(fan_in, fan_out)` of a weight shape `[out, in, k…]`; `Err` for fewer than 2 dims.
pub fn fans(shape: &[usize]) -> Result<(usize, usize)> {
    if shape.len() < 2 {
        return Err(Error::shape("init", format!("fan in and fan out need at least 2 dims, got {shape:?}")));
    }
    let receptive_field: usize = shape[2..].iter().product();
    Ok((shape[1] * receptive_field, shape[0] * receptive_field))
}

/// `U(-bound, bound)` draws.
pub fn uniform<T: Element>(shape: &[usize], bound: f64, rng: &mut impl Rng) -> Tensor<T> {
    Tensor::<T>::uniform(shape, T::of(-bound), T::of(bound), rng)
}

/// `N(mean, std²)` draws.
pub fn normal<T: Element>(shape: &[usize], mean: f64, std: f64, rng: &mut impl Rng) -> Tensor<T> {
    Tensor::<T>::randn(shape, rng).mul_scalar(T::of(std)).add_scalar(T::of(mean))
}

/// Kaiming (He) uniform for a leaky-ReLU of slope `a`: `U(±gain·√(3/fan))`.
/// `a = √5` with `FanIn` is PyTorch's default for Linear and Conv weights, which works out
/// to `U(±1/√fan_in)`.
pub fn kaiming_uniform<T: Element>(shape: &[usize], a: f64, mode: FanMode, rng: &mut impl Rng) -> Result<Tensor<T>> {
    let fan = pick(fans(shape)?, mode);
    Ok(uniform(shape, calculate_gain(Nonlinearity::LeakyRelu(a)) * (3.0 / fan as f64).sqrt(), rng))
}

/// Kaiming (He) normal for a leaky-ReLU of slope `a`: `N(0, (gain/√fan)²)`.
pub fn kaiming_normal<T: Element>(shape: &[usize], a: f64, mode: FanMode, rng: &mut impl Rng) -> Result<Tensor<T>> {
    let fan = pick(fans(shape)?, mode);
    Ok(normal(shape, 0.0, calculate_gain(Nonlinearity::LeakyRelu(a)) / (fan as f64).sqrt(), rng))
}

/// Xavier (Glorot) uniform: `U(±gain·√(6/(fan_in + fan_out)))`.
pub fn xavier_uniform<T: Element>(shape: &[usize], gain: f64, rng: &mut impl Rng) -> Result<Tensor<T>> {
    let (fan_in, fan_out) = fans(shape)?;
    Ok(uniform(shape, gain * (6.0 / (fan_in + fan_out) as f64).sqrt(), rng))
}

/// Xavier (Glorot) normal: `N(0, gain²·2/(fan_in + fan_out))`.
pub fn xavier_normal<T: Element>(shape: &[usize], gain: f64, rng: &mut impl Rng) -> Result<Tensor<T>> {
    let (fan_in, fan_out) = fans(shape)?;
    Ok(normal(shape, 0.0, gain * (2.0 / (fan_in + fan_out) as f64).sqrt(), rng))
}

/// A (semi-)orthogonal matrix times `gain`, as `torch.nn.init.orthogonal_`: the Q of the QR
/// decomposition of a Gaussian matrix, signs fixed by R's diagonal. Dims after the first are
/// flattened.
///
/// ```
/// use nabla::prelude::*;
/// let q = nn::init::orthogonal::<f64>(&[3, 3], 1.0, &mut nabla::rng(0))?;
/// let qtq = q.t().matmul(&q)?;                       // QᵀQ = I
/// assert!(qtq.sub(&Tensor::<f64>::eye(3))?.abs().amax().item()? < 1e-12);
/// # Ok::<(), nabla::Error>(())
/// ```
pub fn orthogonal<T: Element>(shape: &[usize], gain: f64, rng: &mut impl Rng) -> Result<Tensor<T>> {
    if shape.len() < 2 {
        return Err(Error::shape("orthogonal", format!("needs at least 2 dims, got {shape:?}")));
    }
    let rows = shape[0];
    let cols: usize = shape[1..].iter().product();
    // Gram-Schmidt on the columns of a tall Gaussian matrix (transposed if wide).
    let (tall_rows, tall_cols) = if rows < cols { (cols, rows) } else { (rows, cols) };
    let gaussian = Tensor::<f64>::randn(&[tall_rows, tall_cols], rng).to_ndarray().into_dimensionality::<ndarray::Ix2>().expect("2-D");
    let mut q = Array2::<f64>::zeros((tall_rows, tall_cols));
    for j in 0..tall_cols {
        let mut v = gaussian.column(j).to_owned();
        for k in 0..j {
            let qk = q.column(k);
            let r = qk.dot(&v);
            v.scaled_add(-r, &qk);
        }
        // Gram-Schmidt makes diag(R) positive: the same unique Q as PyTorch's sign fix.
        let norm = v.dot(&v).sqrt();
        q.column_mut(j).assign(&(v / norm));
    }
    let q = if rows < cols { q.reversed_axes() } else { q };
    let values = q.iter().map(|&v| T::of(v * gain)).collect();
    Tensor::<T>::from_vec(values, shape)
}

fn pick((fan_in, fan_out): (usize, usize), mode: FanMode) -> usize {
    match mode {
        FanMode::FanIn => fan_in,
        FanMode::FanOut => fan_out,
    }
}
