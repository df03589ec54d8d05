//! The ops: each file a family, each op's forward kernel, backward rule and public method
//! side by side.
//!
//! # Adding an op
//!
//! An op is a forward computation on arrays plus a backward rule, a vector-Jacobian
//! product written **with tensor ops**. Written that way, one rule serves first-order
//! backward (run with recording off, costing array work only) and higher-order gradients
//! (run with recording on when `create_graph` asks).
//!
//! ```
//! use nabla::prelude::*;
//! use nabla::autograd::rule;
//!
//! /// y = x³, dL/dx = dL/dy · 3x²
//! fn cube(x: &Tensor<f64>) -> Tensor<f64> {
//!     let value = x.value().mapv(|v| v * v * v);
//!     Tensor::from_op(value, &[x], rule("cube", |inputs, _y, gy| {
//!         let x = &inputs[0];
//!         vec![Some(gy * &(x * x) * 3.0)]
//!     }))
//! }
//!
//! let x = Tensor::<f64>::from_vec(vec![2.0], &[1])?.requires_grad_(true)?;
//! let dy = nabla::grad(&[&cube(&x).sum()], &[&x], None, true)?;   // 3x² = 12
//! let d2y = nabla::grad(&[&dy[0].sum()], &[&x], None, false)?;    // 6x = 12
//! assert_eq!((dy[0].item()?, d2y[0].item()?), (12.0, 12.0));
//! # Ok::<(), nabla::Error>(())
//! ```
//!
//! Three rules keep the rules short:
//! - return the gradient in the output's (broadcast) shape: the engine sums it back to the
//!   input's shape and adds up the gradients of a tensor used more than once;
//! - reuse the output when the derivative is a function of it (`exp`: `gy * y`);
//! - say what subgradient you chose where the function has a kink (`relu'(0) = 0`).
//!
//! # Adding an op to nabla itself
//!
//! An op of the crate lives in one family file (`unary.rs`, `index.rs`, …) with three
//! parts: the public method (checks its arguments, computes the forward, records the rule
//! through [`Tensor::from_op`](crate::Tensor::from_op) or the family's helper), the rule,
//! and an entry in the family's `OPS` table, the [op registry](registry()):
//!
//! ```text
//! pub(crate) const OPS: &[OpInfo] = &[
//!     …
//!     OpInfo::new("cube", || vec![randn(&[3, 4], 1)], |v| Ok(v[0].cube())),
//! ];
//! ```
//!
//! The entry names what the node records and gives sample inputs (all differentiable, in
//! the op's domain, away from its kinks: `randn`, `positive` and `spread` make them). The
//! tests are generated from the registry, as PyTorch's are from its `OpInfo`s: every entry
//! is gradchecked to second order in f64 (`tests/suite/gradcheck.rs`), and the
//! silent-gradient guard (`tests/suite/silent_gradient.rs`) checks that each input gets a
//! finite, non-zero gradient equal to a finite difference, that each entry's call records
//! its name, and that every name recorded by the samples' graphs (and their gradients',
//! to second order) and by the golden cases' graphs is registered. A new family file adds
//! its `mod` line here and its table to [`registry()`].

mod binary;
mod conv;
pub mod fused;
mod index;
mod linalg;
pub(crate) mod lstm;
pub(crate) mod norm;
mod pool;
mod reduce;
pub mod registry;
pub(crate) mod shape;
mod softmax;
mod unary;

use crate::error::{Error, Result};

pub use binary::where_;
pub use conv::{Conv1dConfig, Conv2dConfig, conv_output_size, receptive_field};
pub use fused::fuse;
pub use pool::{Pool1dConfig, Pool2dConfig};
pub use registry::{OpInfo, registry};

/// A dim in `-ndim..ndim` as an axis index.
pub(crate) fn normalize_dim(op: &'static str, dim: isize, ndim: usize) -> Result<usize> {
    // A 0-d tensor accepts dims 0 and -1, as in PyTorch.
    let n = ndim.max(1) as isize;
    if dim < -n || dim >= n {
        return Err(Error::Dim { op, dim, ndim });
    }
    Ok(if dim < 0 { (dim + n) as usize } else { dim as usize })
}

/// Distinct normalised dims, sorted. An empty list means every dim, as PyTorch's reductions
/// read `dim=[]`. A 0-d tensor accepts dim 0 (or -1) and has no dim to reduce, so its list
/// comes back empty.
pub(crate) fn normalize_dims(op: &'static str, dims: &[isize], ndim: usize) -> Result<Vec<usize>> {
    if dims.is_empty() {
        return Ok((0..ndim).collect());
    }
    let mut out = Vec::with_capacity(dims.len());
    for &d in dims {
        let d = normalize_dim(op, d, ndim)?;
        if out.contains(&d) {
            return Err(Error::invalid(op, format!("dim {d} appears more than once in {dims:?}")));
        }
        out.push(d);
    }
    out.sort_unstable();
    if ndim == 0 {
        out.clear();
    }
    Ok(out)
}

/// NumPy's broadcasting: align from the right, sizes must agree or be 1.
pub(crate) fn broadcast_shape(op: &'static str, a: &[usize], b: &[usize]) -> Result<Vec<usize>> {
    let n = a.len().max(b.len());
    let mut out = vec![0; n];
    for i in 0..n {
        let da = if i + a.len() >= n { a[i + a.len() - n] } else { 1 };
        let db = if i + b.len() >= n { b[i + b.len() - n] } else { 1 };
        out[i] = match (da, db) {
            (x, y) if x == y => x,
            (1, y) => y,
            (x, 1) => x,
            _ => return Err(Error::shape(op, format!("{a:?} and {b:?} cannot be broadcast: sizes {da} and {db} at dim {i} differ"))),
        }
    }
    Ok(out)
}
