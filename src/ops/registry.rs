//! The op registry: one [`OpInfo`] per name a node recorded by nabla's own ops can carry,
//! declared in the file that defines the op, with sample inputs that reach every input's
//! gradient. The tests are generated from it, as PyTorch's are from its `op_db` of
//! `OpInfo`s: each entry is gradchecked to second order in f64, and the silent-gradient
//! guard checks that every input gets a finite, non-zero gradient that agrees with a
//! finite difference.

use crate::autograd;
use crate::error::Result;
use crate::tensor::{Creation, Tensor};

/// One op of the registry: its recorded name, a sample of inputs and the call that records
/// it, in f64.
///
/// The sample's inputs are all differentiable and all used, inside the op's domain and
/// away from its kinks (a finite difference across `relu`'s 0 says nothing). An op that
/// only a gradient records (the adjoints: `pad`, `index_add`, …) is sampled through the
/// gradient of its forward twin, recorded with `create_graph`.
///
/// ```
/// use nabla::ops::registry;
/// let exp = registry().find(|op| op.name == "exp").unwrap();
/// let x = (exp.sample)().remove(0).requires_grad_(true)?;
/// let y = (exp.call)(&[x])?;
/// assert_eq!(y.op_name(), Some("exp"));   // recorded: its input requires grad
/// # Ok::<(), nabla::Error>(())
/// ```
#[derive(Clone, Copy)]
pub struct OpInfo {
    /// The name the op's node records ([`Tensor::op_name`]).
    pub name: &'static str,
    /// Sample inputs, fixed by seed; leaves that do not require grad.
    pub sample: fn() -> Vec<Tensor<f64>>,
    /// The call recording the op on those inputs.
    pub call: fn(&[Tensor<f64>]) -> Result<Tensor<f64>>,
}

impl OpInfo {
    /// An entry from its three parts.
    pub const fn new(name: &'static str, sample: fn() -> Vec<Tensor<f64>>, call: fn(&[Tensor<f64>]) -> Result<Tensor<f64>>) -> Self {
        OpInfo { name, sample, call }
    }
}

impl std::fmt::Debug for OpInfo {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OpInfo").field("name", &self.name).finish_non_exhaustive()
    }
}

/// Every op of the crate, family by family. A new family file adds its `OPS` here, beside
/// its `mod` line.
pub fn registry() -> impl Iterator<Item = &'static OpInfo> {
    [
        super::unary::OPS,
        super::binary::OPS,
        super::reduce::OPS,
        super::softmax::OPS,
        super::norm::OPS,
        super::shape::OPS,
        super::index::OPS,
        super::linalg::OPS,
        super::conv::OPS,
        super::fused::OPS,
        super::lstm::OPS,
        autograd::checkpoint::OPS,
    ]
    .into_iter()
    .flatten()
}

/// Standard normal draws, seeded.
pub(crate) fn randn(shape: &[usize], seed: u64) -> Tensor<f64> {
    Tensor::<f64>::randn(shape, &mut crate::rng(seed))
}

/// Values in `[0.5, 2]`: inside the domain of `log`, `sqrt`, `recip`, away from 0.
pub(crate) fn positive(shape: &[usize], seed: u64) -> Tensor<f64> {
    Tensor::<f64>::uniform(shape, 0.5, 2.0, &mut crate::rng(seed))
}

/// Distinct values spaced by 0.3 (none within 0.15 of 0), shuffled by seed: maxima, clamps
/// and `relu`'s kink are never within a finite-difference step.
pub(crate) fn spread(shape: &[usize], seed: u64) -> Tensor<f64> {
    let n: usize = shape.iter().product();
    let order = randn(&[n], seed).to_vec();
    let mut idx: Vec<usize> = (0..n).collect();
    idx.sort_by(|&a, &b| order[a].total_cmp(&order[b]));
    let mut values = vec![0.0; n];
    for (rank, &i) in idx.iter().enumerate() {
        values[i] = (rank as f64 - n as f64 / 2.0) * 0.3 + 0.15;
    }
    ndarray::ArrayD::from_shape_vec(shape, values).expect("the product of the shape").into()
}

/// The gradient of `sum(f(x)² · w)` with respect to `x`, recorded (`create_graph`): the way
/// an adjoint op (`pad`, `index_add`, …) enters a graph. An `x` that does not require grad
/// (a finite difference's evaluation, which runs under `no_grad`) is differentiated as a
/// fresh leaf of its values.
pub(crate) fn recorded_grad(x: &Tensor<f64>, w: &Tensor<f64>, f: impl Fn(&Tensor<f64>) -> Result<Tensor<f64>>) -> Result<Tensor<f64>> {
    autograd::enable_grad(|| {
        let x = if x.requires_grad() { x.clone() } else { x.detach().requires_grad_(true)? };
        let y = f(&x)?;
        let loss = y.mul(&y)?.mul(w)?.sum();
        Ok(autograd::grad(&[&loss], &[&x], None, true)?.remove(0))
    })
}
