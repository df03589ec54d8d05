//! Making tensors: constants, ranges, data, and random draws from an explicit seeded rng.
//!
//! Rust does not use a type parameter's default to infer a call, so the constructors live in
//! the generic trait [`Creation`] (for `Tensor::<f64>::zeros` and generic code) and are
//! repeated as inherent functions on `Tensor<f32>`, which the compiler picks first: plain
//! `Tensor::zeros(&[2, 3])` is then an `f32` tensor with no annotation.

use super::{Element, Tensor};
use crate::error::{Error, Result};
use ndarray::{ArrayD, IxDyn};
use rand::Rng;
use rand_distr::{Distribution, StandardNormal};

/// Constructors for any element type: `Tensor::<f64>::zeros(&[2, 3])`.
///
/// The same functions exist as inherent functions on `Tensor<f32>`, so `Tensor::zeros`
/// needs no annotation; bring this trait into scope (it is in the prelude) for `f64`.
///
/// ```
/// use nabla::prelude::*;
/// let a = Tensor::zeros(&[2, 3]);               // f32
/// let b = Tensor::<f64>::ones(&[2]);            // f64
/// assert_eq!(a.shape(), &[2, 3]);
/// assert_eq!(b.to_vec(), vec![1.0, 1.0]);
/// ```
pub trait Creation<T: Element>: Sized {
    /// All elements `0`.
    fn zeros(shape: &[usize]) -> Tensor<T>;
    /// All elements `1`.
    fn ones(shape: &[usize]) -> Tensor<T>;
    /// All elements `value`.
    fn full(shape: &[usize], value: T) -> Tensor<T>;
    /// A 0-d tensor holding `value`.
    fn scalar(value: T) -> Tensor<T>;
    /// `data` in row-major order, shaped `shape`; `Err` if the sizes differ.
    fn from_vec(data: Vec<T>, shape: &[usize]) -> Result<Tensor<T>>;
    /// `start, start + step, …` up to but excluding `end`, as `torch.arange`.
    fn arange(start: T, end: T, step: T) -> Result<Tensor<T>>;
    /// The `n × n` identity matrix.
    fn eye(n: usize) -> Tensor<T>;
    /// Standard normal draws, N(0, 1).
    fn randn(shape: &[usize], rng: &mut impl Rng) -> Tensor<T>;
    /// Uniform draws in `[0, 1)`.
    fn rand(shape: &[usize], rng: &mut impl Rng) -> Tensor<T>;
    /// Uniform draws in `[low, high)`.
    fn uniform(shape: &[usize], low: T, high: T, rng: &mut impl Rng) -> Tensor<T>;
}

impl<T: Element> Creation<T> for Tensor<T> {
    fn zeros(shape: &[usize]) -> Tensor<T> {
        Self::full(shape, T::zero())
    }
    fn ones(shape: &[usize]) -> Tensor<T> {
        Self::full(shape, T::one())
    }
    fn full(shape: &[usize], value: T) -> Tensor<T> {
        crate::array::pool::filled(shape, value).into()
    }
    fn scalar(value: T) -> Tensor<T> {
        Self::full(&[], value)
    }
    fn from_vec(data: Vec<T>, shape: &[usize]) -> Result<Tensor<T>> {
        let n = data.len();
        ArrayD::from_shape_vec(IxDyn(shape), data).map(Tensor::from).map_err(|_| {
            Error::shape("from_vec", format!("{n} values cannot fill shape {shape:?} ({} elements)", shape.iter().product::<usize>()))
        })
    }
    fn arange(start: T, end: T, step: T) -> Result<Tensor<T>> {
        if step == T::zero() || !(start.is_finite() && end.is_finite() && step.is_finite()) {
            return Err(Error::invalid("arange", format!("start {start}, end {end}, step {step}: step must be finite and non-zero")));
        }
        let n = ((end - start) / step).ceil().max(T::zero()).to_usize().unwrap_or(0);
        let data = (0..n).map(|i| start + T::of(i as f64) * step).collect();
        Self::from_vec(data, &[n])
    }
    fn eye(n: usize) -> Tensor<T> {
        ArrayD::from_shape_fn(IxDyn(&[n, n]), |ix| if ix[0] == ix[1] { T::one() } else { T::zero() }).into()
    }
    fn randn(shape: &[usize], rng: &mut impl Rng) -> Tensor<T> {
        // Drawn in f64 and rounded, so an f32 and an f64 tensor from the same seed agree.
        ArrayD::from_shape_simple_fn(IxDyn(shape), || T::of(StandardNormal.sample(rng))).into()
    }
    fn rand(shape: &[usize], rng: &mut impl Rng) -> Tensor<T> {
        Self::uniform(shape, T::zero(), T::one(), rng)
    }
    fn uniform(shape: &[usize], low: T, high: T, rng: &mut impl Rng) -> Tensor<T> {
        ArrayD::from_shape_simple_fn(IxDyn(shape), || low + (high - low) * T::of(rng.random::<f64>())).into()
    }
}

/// The inherent `f32` versions (see the module doc for why they repeat [`Creation`]).
impl Tensor<f32> {
    /// All elements `0`. See [`Creation::zeros`].
    pub fn zeros(shape: &[usize]) -> Self {
        <Self as Creation<f32>>::zeros(shape)
    }
    /// All elements `1`. See [`Creation::ones`].
    pub fn ones(shape: &[usize]) -> Self {
        <Self as Creation<f32>>::ones(shape)
    }
    /// All elements `value`. See [`Creation::full`].
    pub fn full(shape: &[usize], value: f32) -> Self {
        <Self as Creation<f32>>::full(shape, value)
    }
    /// A 0-d tensor. See [`Creation::scalar`].
    pub fn scalar(value: f32) -> Self {
        <Self as Creation<f32>>::scalar(value)
    }
    /// Row-major data and a shape. See [`Creation::from_vec`].
    pub fn from_vec(data: Vec<f32>, shape: &[usize]) -> Result<Self> {
        <Self as Creation<f32>>::from_vec(data, shape)
    }
    /// A range. See [`Creation::arange`].
    pub fn arange(start: f32, end: f32, step: f32) -> Result<Self> {
        <Self as Creation<f32>>::arange(start, end, step)
    }
    /// The identity matrix. See [`Creation::eye`].
    pub fn eye(n: usize) -> Self {
        <Self as Creation<f32>>::eye(n)
    }
    /// N(0, 1) draws. See [`Creation::randn`].
    pub fn randn(shape: &[usize], rng: &mut impl Rng) -> Self {
        <Self as Creation<f32>>::randn(shape, rng)
    }
    /// U[0, 1) draws. See [`Creation::rand`].
    pub fn rand(shape: &[usize], rng: &mut impl Rng) -> Self {
        <Self as Creation<f32>>::rand(shape, rng)
    }
    /// U[low, high) draws. See [`Creation::uniform`].
    pub fn uniform(shape: &[usize], low: f32, high: f32, rng: &mut impl Rng) -> Self {
        <Self as Creation<f32>>::uniform(shape, low, high, rng)
    }
}
