//! Energy-based models: inference as minimisation, latent variables and free energies.
//!
//! A feed-forward network is an explicit function `y = G(x)`. An energy-based model is an
//! implicit one: a scalar energy `F(x, y)`, low where `x` and `y` are compatible, and
//! inference is a minimisation, `ŷ = argmin_y F(x, y)`. Several `y` may be equally good (a
//! multimodal answer), which no explicit function can express.
//!
//! With a latent variable `z` the model is an energy `E(x, y, z)`, and `y`'s energy is a
//! free energy that eliminates `z`:
//!
//! - the zero-temperature free energy `F_∞(x, y) = min_z E(x, y, z)`
//!   ([`free_energy_min`] over a finite set of `z`, [`free_energy_min_descent`] by gradient
//!   descent over a continuous one);
//! - the free energy at inverse temperature `β`,
//!   `F_β(x, y) = -(1/β) log ∫ exp(-β E(x, y, z)) dz` ([`free_energy`]), which tends to
//!   `F_∞` as `β → ∞` and to an average over `z` as `β → 0`.
//!
//! An unconditional model `F(y)` is the same with no `x`: its energies ignore the `x` they
//! are given ([`no_x`] makes an empty one). Training shapes the energy: push it down at the
//! observed `(x, y)`, up at contrastive `y` ([`hinge`]), or maximise the likelihood of the
//! Gibbs distribution `p(y|x) ∝ exp(-β F(x, y))` ([`nll`]).
//!
//! ```
//! use nabla::prelude::*;
//! use nabla::ebm::{infer, Inference};
//! // F(x, y) = (y - x²)²: the answer to x = 3 is y = 9.
//! let energy = |x: &Tensor<f64>, y: &Tensor<f64>| y.sub(&x.pow(2.0))?.pow(2.0).sum_dims(&[1], false);
//! let x = Tensor::<f64>::from_vec(vec![3.0], &[1, 1])?;
//! let found = infer(&energy, &x, &Tensor::<f64>::zeros(&[1, 1]), &Inference::default())?;
//! assert!((found.y.item()? - 9.0).abs() < 1e-4);
//! assert!(found.converged);
//! # Ok::<(), nabla::Error>(())
//! ```

use crate::error::{Error, Result};
use crate::nn::{Param, Reduction, functional};
use crate::optim::{Adam, Optimizer, Sgd};
use crate::tensor::{Creation, Element, Tensor};

/// A scalar energy per example: `F(x, y)` for a batch `x (N, …)`, `y (N, …)` → `(N)`,
/// differentiable in `x`, `y` and the model's parameters. Closures
/// `Fn(&Tensor, &Tensor) -> Result<Tensor>` are energies.
pub trait Energy<T: Element = f32>: Send + Sync {
    /// `F(x, y)`, one energy per example.
    fn energy(&self, x: &Tensor<T>, y: &Tensor<T>) -> Result<Tensor<T>>;
}

impl<T: Element, F> Energy<T> for F
where
    F: Fn(&Tensor<T>, &Tensor<T>) -> Result<Tensor<T>> + Send + Sync,
{
    fn energy(&self, x: &Tensor<T>, y: &Tensor<T>) -> Result<Tensor<T>> {
        self(x, y)
    }
}

/// An energy with a latent variable: `E(x, y, z)` → `(N)`. Closures of three tensors are
/// latent energies.
pub trait LatentEnergy<T: Element = f32>: Send + Sync {
    /// `E(x, y, z)`, one energy per example.
    fn energy(&self, x: &Tensor<T>, y: &Tensor<T>, z: &Tensor<T>) -> Result<Tensor<T>>;
}

impl<T: Element, F> LatentEnergy<T> for F
where
    F: Fn(&Tensor<T>, &Tensor<T>, &Tensor<T>) -> Result<Tensor<T>> + Send + Sync,
{
    fn energy(&self, x: &Tensor<T>, y: &Tensor<T>, z: &Tensor<T>) -> Result<Tensor<T>> {
        self(x, y, z)
    }
}

/// The `x` of an unconditional model: `(n, 0)`, no features.
pub fn no_x<T: Element>(n: usize) -> Tensor<T> {
    Tensor::<T>::zeros(&[n, 0])
}

/// The optimiser inference runs on `y` (or `z`).
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Method {
    /// Gradient descent with momentum (0 for plain steps).
    Sgd {
        /// Step size.
        lr: f64,
        /// Momentum factor.
        momentum: f64,
    },
    /// Adam.
    Adam {
        /// Step size.
        lr: f64,
    },
}

/// How [`infer`] minimises: the optimiser, the number of steps, a box to project onto,
/// random restarts, and when to call it converged. `Default`: gradient descent with step
/// 0.05 and momentum 0.9, 500 steps, no box, one start, tolerance 1e-8.
#[derive(Debug, Clone, PartialEq)]
pub struct Inference {
    /// The optimiser and its step size.
    pub method: Method,
    /// Gradient steps per start.
    pub steps: usize,
    /// Projection after every step onto `[lo, hi]` in every coordinate.
    pub bounds: Option<(f64, f64)>,
    /// Starts: the first from the given `y0`, the others from `y0` plus Gaussian noise of
    /// this standard deviation. Each example keeps its lowest-energy answer.
    pub restarts: usize,
    /// The standard deviation of the restarts' noise.
    pub restart_std: f64,
    /// Converged when no coordinate of `y` moved by more than `tol · (1 + |y|)` in the last
    /// step.
    pub tol: f64,
    /// Seed of the restarts' noise.
    pub seed: u64,
}

impl Default for Inference {
    fn default() -> Self {
        Inference {
            method: Method::Sgd { lr: 0.05, momentum: 0.9 },
            steps: 500,
            bounds: None,
            restarts: 1,
            restart_std: 1.0,
            tol: 1e-8,
            seed: 0,
        }
    }
}

/// What [`infer`] found.
#[derive(Debug, Clone)]
pub struct Inferred<T: Element = f32> {
    /// The minimiser found for each example, shaped like `y0`.
    pub y: Tensor<T>,
    /// Its energy, `(N)`.
    pub energy: Tensor<T>,
    /// The mean energy after each step of the start that ended lowest on average.
    pub trace: Vec<f64>,
    /// Whether that start met the tolerance before running out of steps.
    pub converged: bool,
}

/// Inference by gradient descent: `ŷ = argmin_y F(x, y)` from `y0`, with the options of
/// `opts`. The model's parameters are left alone (their gradients are not taken); `ŷ` is
/// a constant (see [`infer_unrolled`] for inference that can be differentiated).
///
/// `Err` if the energy is not one value per example, or a start diverges to NaN.
pub fn infer<T: Element>(model: &impl Energy<T>, x: &Tensor<T>, y0: &Tensor<T>, opts: &Inference) -> Result<Inferred<T>> {
    let n = y0.shape().first().copied().unwrap_or(0);
    let mut rng = crate::rng(opts.seed);
    let mut best: Option<(Tensor<T>, Tensor<T>)> = None;
    let (mut best_trace, mut best_mean, mut best_converged) = (Vec::new(), f64::INFINITY, false);
    let x = x.detach();
    for start in 0..opts.restarts.max(1) {
        let init = if start == 0 {
            y0.detach()
        } else {
            y0.detach().add(&Tensor::<T>::randn(y0.shape(), &mut rng).mul_scalar(T::of(opts.restart_std)))?
        };
        let y = Param::new(project(init, opts.bounds));
        let mut optimizer: Box<dyn Optimizer<T>> = match opts.method {
            Method::Sgd { lr, momentum } => Box::new(Sgd::new(vec![y.clone()], lr).momentum(momentum)),
            Method::Adam { lr } => Box::new(Adam::new(vec![y.clone()], lr)),
        };
        let (mut trace, mut converged) = (Vec::with_capacity(opts.steps), false);
        for _ in 0..opts.steps {
            let current = y.tensor();
            let e = energies(model, &x, &current, n)?;
            let mean = e.to_vec().iter().map(|v| v.to_f64().unwrap_or(f64::NAN)).sum::<f64>() / n.max(1) as f64;
            if mean.is_nan() {
                return Err(Error::invalid("ebm::infer", format!("the energy became NaN (start {start}); lower the step size")));
            }
            trace.push(mean);
            let grads = e.sum().backward()?;
            let before = current.to_vec();
            optimizer.step(&grads)?;
            if let Some((lo, hi)) = opts.bounds {
                y.update(|v| v.mapv_inplace(|a| a.max(T::of(lo)).min(T::of(hi))));
            }
            let moved = y.tensor().to_vec().iter().zip(&before).all(|(a, b)| {
                let (a, b) = (a.to_f64().unwrap_or(f64::NAN), b.to_f64().unwrap_or(f64::NAN));
                (a - b).abs() <= opts.tol * (1.0 + a.abs())
            });
            if moved {
                converged = true;
                break;
            }
        }
        let y_final = y.tensor().detach();
        let e_final = crate::no_grad(|| energies(model, &x, &y_final, n))?;
        let mean = e_final.to_vec().iter().map(|v| v.to_f64().unwrap_or(f64::NAN)).sum::<f64>() / n.max(1) as f64;
        if mean < best_mean || best_trace.is_empty() {
            (best_trace, best_mean, best_converged) = (trace, mean, converged);
        }
        best = Some(match best {
            None => (y_final, e_final),
            Some((by, be)) => keep_lower(&by, &be, &y_final, &e_final)?,
        });
    }
    let (y, energy) = best.expect("at least one start");
    Ok(Inferred { y, energy, trace: best_trace, converged: best_converged })
}

/// `F(x, y)` with its shape checked: one energy per example.
fn energies<T: Element>(model: &impl Energy<T>, x: &Tensor<T>, y: &Tensor<T>, n: usize) -> Result<Tensor<T>> {
    let e = model.energy(x, y)?;
    if e.shape() != [n] {
        return Err(Error::shape("ebm", format!("the energy has shape {:?}; it must be one value per example, [{n}]", e.shape())));
    }
    Ok(e)
}

fn project<T: Element>(y: Tensor<T>, bounds: Option<(f64, f64)>) -> Tensor<T> {
    match bounds {
        Some((lo, hi)) => y.clamp(T::of(lo), T::of(hi)),
        None => y,
    }
}

/// Per example, the `(y, e)` with the lower energy.
fn keep_lower<T: Element>(ya: &Tensor<T>, ea: &Tensor<T>, yb: &Tensor<T>, eb: &Tensor<T>) -> Result<(Tensor<T>, Tensor<T>)> {
    let take_b: Vec<T> = eb.to_vec().iter().zip(ea.to_vec()).map(|(&b, a)| if b < a { T::one() } else { T::zero() }).collect();
    let n = take_b.len();
    let mask = Tensor::<T>::from_vec(take_b, &[n])?;
    // One mask value per example, broadcast over the rest of y's dims.
    let mut row_shape = vec![n as isize];
    row_shape.resize(ya.ndim().max(1), 1);
    Ok((crate::where_(&mask.reshape(&row_shape)?, yb, ya)?, crate::where_(&mask, eb, ea)?))
}

/// Inference that can be differentiated: `steps` plain gradient steps
/// `y ← y - lr ∇_y F(x, y)` from `y0`, recorded (the gradients are taken with
/// `create_graph`), so `ŷ` is a function of `x` and of the model's parameters and a loss on
/// `ŷ` trains through inference. Costs second-order gradients in backward.
pub fn infer_unrolled<T: Element>(model: &impl Energy<T>, x: &Tensor<T>, y0: &Tensor<T>, steps: usize, lr: f64) -> Result<Tensor<T>> {
    let n = y0.shape().first().copied().unwrap_or(0);
    crate::autograd::enable_grad(|| {
        let mut y = if y0.requires_grad() { y0.clone() } else { y0.detach().with_requires_grad(true) };
        for _ in 0..steps {
            let e = energies(model, x, &y, n)?.sum();
            let g = crate::grad(&[&e], &[&y], None, true)?.remove(0);
            y = y.sub(&g.mul_scalar(T::of(lr)))?;
        }
        Ok(y)
    })
}

/// The zero-temperature free energy over a finite set of latents:
/// `F_∞(x, y) = min_k E(x, y, z_k)` for `zs (K, …)` (each `z_k` broadcast to the batch).
/// Returns `(F_∞ (N), the index k of the minimising z for each example)`. Differentiable in
/// `x`, `y` and the parameters (the gradient is that of the minimising term).
pub fn free_energy_min<T: Element>(
    model: &impl LatentEnergy<T>,
    x: &Tensor<T>,
    y: &Tensor<T>,
    zs: &Tensor<T>,
) -> Result<(Tensor<T>, Vec<usize>)> {
    let e = latent_energies(model, x, y, zs)?; // (N, K)
    let f = e.amin_dims(&[1], false)?;
    let argmin = e
        .value()
        .rows()
        .into_iter()
        .map(|row| row.iter().enumerate().fold((0, T::infinity()), |best, (k, &v)| if v < best.1 { (k, v) } else { best }).0)
        .collect();
    Ok((f, argmin))
}

/// The zero-temperature free energy by gradient descent over a continuous latent:
/// `F_∞(x, y) = min_z E(x, y, z)` from `z0 (N, …)`, by [`infer`] on `z` with `x` and `y`
/// held fixed. Returns `F_∞ (N)` — differentiable in `x`, `y` and the parameters at the
/// minimiser found (by the envelope theorem the gradient there is `∂E/∂(x, y, θ)`) — and the
/// inference result for `z`. Like any descent it finds a local minimum: use restarts when
/// `E` has several.
pub fn free_energy_min_descent<T: Element>(
    model: &impl LatentEnergy<T>,
    x: &Tensor<T>,
    y: &Tensor<T>,
    z0: &Tensor<T>,
    opts: &Inference,
) -> Result<(Tensor<T>, Inferred<T>)> {
    let (xd, yd) = (x.detach(), y.detach());
    let over_z = |_: &Tensor<T>, z: &Tensor<T>| model.energy(&xd, &yd, z);
    let found = infer(&over_z, &no_x::<T>(z0.shape().first().copied().unwrap_or(0)), z0, opts)?;
    let f = model.energy(x, y, &found.y)?;
    Ok((f, found))
}

/// The free energy at inverse temperature `β`,
/// `F_β(x, y) = -(1/β) log ∫ exp(-β E(x, y, z)) dz`, estimated on points `zs (K, …)` that
/// each stand for a volume `exp(log_weight)` of latent space:
/// `F_β ≈ -(1/β) logsumexp_k(-β E(x, y, z_k) + log_weight)`, computed stably (the largest
/// term is factored out).
///
/// On a regular grid, `log_weight` is the log of one cell's volume and the estimator is
/// the rectangle rule: its error is that of the rule (second order in the spacing for smooth
/// energies) plus the mass outside the grid. For `K` uniform samples of a region of volume
/// `V`, `log_weight = log(V / K)` and the estimate is Monte Carlo: biased upwards (Jensen)
/// with an error shrinking as `1/√K`. As `β → ∞` it tends to `min_k E = F_∞` on the points.
pub fn free_energy<T: Element>(
    model: &impl LatentEnergy<T>,
    x: &Tensor<T>,
    y: &Tensor<T>,
    zs: &Tensor<T>,
    beta: f64,
    log_weight: f64,
) -> Result<Tensor<T>> {
    if beta.is_nan() || beta <= 0.0 {
        return Err(Error::invalid("ebm::free_energy", format!("beta {beta} must be positive")));
    }
    let e = latent_energies(model, x, y, zs)?; // (N, K)
    e.mul_scalar(T::of(-beta)).add_scalar(T::of(log_weight)).logsumexp_dims(&[1], false).map(|l| l.mul_scalar(T::of(-1.0 / beta)))
}

/// `E(x, y, z_k)` for every example and every `z_k`: `(N, K)`.
fn latent_energies<T: Element>(model: &impl LatentEnergy<T>, x: &Tensor<T>, y: &Tensor<T>, zs: &Tensor<T>) -> Result<Tensor<T>> {
    let n = y.shape().first().copied().unwrap_or(0);
    let k = zs.shape().first().copied().unwrap_or(0);
    if k == 0 {
        return Err(Error::invalid("ebm::free_energy", "needs at least one latent point"));
    }
    let columns = (0..k)
        .map(|i| {
            let z = zs.narrow(0, i, 1)?;
            let mut shape: Vec<isize> = vec![n as isize];
            shape.extend(zs.shape()[1..].iter().map(|&d| d as isize));
            let e = model.energy(x, y, &z.expand(&shape)?)?;
            if e.shape() != [n] {
                return Err(Error::shape("ebm", format!("the energy has shape {:?}; it must be one value per example, [{n}]", e.shape())));
            }
            Ok(e)
        })
        .collect::<Result<Vec<_>>>()?;
    Tensor::stack(&columns, 1)
}

/// The margin loss of contrastive training: `mean(max(0, margin + F(x, y) - F(x, ȳ)))` —
/// push the energy of the observed `y` below that of the contrastive `ȳ` by at least
/// `margin` (PyTorch's `MarginRankingLoss` with target 1 on `(F(x, ȳ), F(x, y))`).
pub fn hinge<T: Element>(energy_observed: &Tensor<T>, energy_contrastive: &Tensor<T>, margin: f64) -> Result<Tensor<T>> {
    let ones = Tensor::<T>::ones(energy_observed.shape());
    functional::margin_ranking_loss(energy_contrastive, energy_observed, &ones, margin, Reduction::Mean)
}

/// The negative log-likelihood of the Gibbs distribution `p(y|x) = exp(-β F(x, y)) / Z(x)`
/// over a set of candidate answers: `mean(F(x, y) + (1/β) log Σ_j exp(-β F(x, y_j)))` for the
/// observed energies `(N)` and the candidates' `(N, J)` (which should include the observed
/// `y`). It pushes the observed energy down and every candidate's up, each by its
/// probability.
pub fn nll<T: Element>(energy_observed: &Tensor<T>, energy_candidates: &Tensor<T>, beta: f64) -> Result<Tensor<T>> {
    if beta.is_nan() || beta <= 0.0 {
        return Err(Error::invalid("ebm::nll", format!("beta {beta} must be positive")));
    }
    let log_z = energy_candidates.mul_scalar(T::of(-beta)).logsumexp_dims(&[1], false)?.mul_scalar(T::of(1.0 / beta));
    Ok(energy_observed.add(&log_z)?.mean())
}
