//! Finite-difference checks of backward rules, in f64.

use super::backward::{NOT_DIFFERENTIABLE, grad};
use crate::error::{Error, Result};
use crate::tensor::{Creation, Tensor};

/// Tolerances of [`gradcheck`]: an analytic gradient `a` matches the central difference
/// `n` when `|a - n| <= atol + rtol * |n|`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct GradcheckOptions {
    /// The step of the central difference `(L(x + eps) - L(x - eps)) / 2eps`.
    pub eps: f64,
    /// Absolute tolerance.
    pub atol: f64,
    /// Relative tolerance.
    pub rtol: f64,
    /// Seed of the random cotangent.
    pub seed: u64,
}

impl Default for GradcheckOptions {
    /// `eps = 1e-6`, `atol = 1e-7`, `rtol = 1e-6`: central differences in f64 are accurate
    /// to about `1e-10` relative, so these catch any wrong rule.
    fn default() -> Self {
        GradcheckOptions { eps: 1e-6, atol: 1e-7, rtol: 1e-6, seed: 0 }
    }
}

/// Checks the backward rules of `f` at `inputs` against central finite differences.
///
/// With a random, non-uniform cotangent `w` (an all-ones `w` hides wrong rules: the sum of
/// a softmax has zero gradient whatever the rule says), it compares `dL/dx` from backward
/// with `(L(x + eps·e_j) - L(x - eps·e_j)) / 2eps` for every element `j` of every input,
/// where `L = sum(w · f(x))`, and checks that backward with `create_graph` (the
/// differentiable form of each rule) gives the same gradient as plain backward (which may
/// take fused paths). `Err` names the first input and element that disagree.
///
/// ```
/// use nabla::prelude::*;
/// use nabla::autograd::{gradcheck, GradcheckOptions};
/// let x = Tensor::<f64>::from_vec(vec![0.3, -1.2, 2.0], &[3])?;
/// gradcheck(|xs| Ok(xs[0].tanh()), &[x], &GradcheckOptions::default())?;
/// # Ok::<(), nabla::Error>(())
/// ```
pub fn gradcheck<F>(f: F, inputs: &[Tensor<f64>], options: &GradcheckOptions) -> Result<()>
where
    F: Fn(&[Tensor<f64>]) -> Result<Tensor<f64>>,
{
    let xs: Vec<Tensor<f64>> = inputs.iter().map(|x| x.detach().with_requires_grad(true)).collect();
    let y = f(&xs)?;
    let mut rng = crate::rng(options.seed);
    let w = Tensor::<f64>::randn(y.shape(), &mut rng).add_scalar(0.5);
    let wrt: Vec<&Tensor<f64>> = xs.iter().collect();
    let analytic = grad(&[&y], &wrt, Some(&[&w]), false)?;
    // Rules may take a fused path when nothing is recorded; the recorded (differentiable)
    // path must give the same gradient.
    // A rule marked first-order has no differentiable form to compare.
    let recorded = match super::enable_grad(|| grad(&[&y], &wrt, Some(&[&w]), true)) {
        Err(Error::Autograd { msg, .. }) if msg.starts_with(NOT_DIFFERENTIABLE) => Vec::new(),
        other => other?,
    };
    for (i, (a, r)) in analytic.iter().zip(&recorded).enumerate() {
        for (j, (a, r)) in a.to_vec().into_iter().zip(r.to_vec()).enumerate() {
            if (a - r).abs() > options.atol + options.rtol * r.abs() {
                return Err(Error::autograd(
                    "gradcheck",
                    format!("input {i}, element {j}: backward gives {a}, backward with create_graph gives {r}"),
                ));
            }
        }
    }
    let loss =
        |xs: &[Tensor<f64>]| -> Result<f64> { super::no_grad(|| f(xs).and_then(|y| y.mul(&w)).map(|l| l.sum().item().expect("0-d"))) };
    for (i, x) in xs.iter().enumerate() {
        let base = x.to_vec();
        let a = analytic[i].to_vec();
        for j in 0..base.len() {
            let at = |delta: f64| -> Result<f64> {
                let mut moved = base.clone();
                moved[j] += delta;
                let mut probe = xs.clone();
                probe[i] = Tensor::<f64>::from_vec(moved, x.shape())?;
                loss(&probe)
            };
            let numeric = (at(options.eps)? - at(-options.eps)?) / (2.0 * options.eps);
            let ok = (a[j] - numeric).abs() <= options.atol + options.rtol * numeric.abs();
            if !ok || a[j].is_nan() != numeric.is_nan() {
                return Err(Error::autograd(
                    "gradcheck",
                    format!("input {i} of shape {:?}, element {j}: backward gives {}, finite differences {numeric}", x.shape(), a[j]),
                ));
            }
        }
    }
    Ok(())
}

/// Checks second-order gradients: [`gradcheck`] of `S = Σ_i sum(v_i · dL/dx_i)`, where
/// `dL/dx_i` is computed with `create_graph` and `v_i` are random. Passes only if every rule
/// on the way is itself differentiable and right.
///
/// ```
/// use nabla::prelude::*;
/// use nabla::autograd::{gradgradcheck, GradcheckOptions};
/// let x = Tensor::<f64>::from_vec(vec![0.3, -1.2, 2.0], &[3])?;
/// gradgradcheck(|xs| Ok(xs[0].sigmoid()), &[x], &GradcheckOptions::default())?;
/// # Ok::<(), nabla::Error>(())
/// ```
pub fn gradgradcheck<F>(f: F, inputs: &[Tensor<f64>], options: &GradcheckOptions) -> Result<()>
where
    F: Fn(&[Tensor<f64>]) -> Result<Tensor<f64>>,
{
    let mut rng = crate::rng(options.seed.wrapping_add(1));
    let y_shape = super::no_grad(|| f(inputs))?.shape().to_vec();
    let w = Tensor::<f64>::randn(&y_shape, &mut rng).add_scalar(0.5);
    let vs: Vec<Tensor<f64>> = inputs.iter().map(|x| Tensor::<f64>::randn(x.shape(), &mut rng)).collect();
    let first_order = |xs: &[Tensor<f64>]| -> Result<Tensor<f64>> {
        let xs: Vec<Tensor<f64>> = xs.iter().map(|x| x.clone().with_requires_grad(true)).collect();
        let gs = super::enable_grad(|| grad(&[&f(&xs)?], &xs.iter().collect::<Vec<_>>(), Some(&[&w]), true))?;
        let mut s = Tensor::<f64>::scalar(0.0);
        for (g, v) in gs.iter().zip(&vs) {
            s = s.add(&g.mul(v)?.sum())?;
        }
        Ok(s)
    };
    gradcheck(first_order, inputs, options).map_err(|e| match e {
        Error::Autograd { op: "gradcheck", msg } => Error::Autograd { op: "gradgradcheck", msg },
        other => other,
    })
}
