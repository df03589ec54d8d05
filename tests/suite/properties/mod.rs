//! Property tests (proptest) over random shapes, dims, broadcast pairs and configs: every
//! public op either returns the value of a plain reference (a naive loop over indices) or an
//! `Err` whose message names the op; none panics (proptest fails a case that panics), and
//! none returns NaN from finite inputs where the maths is finite.
//!
//! Each property runs `CASES` random cases; a failure prints the shrunk case, and proptest
//! stores it beside the file that failed (`<file>.proptest-regressions`), so that it is
//! tried first next time.

use nabla::prelude::*;
use ndarray::{ArrayD, IxDyn};
use proptest::prelude::*;

pub(super) const CASES: u32 = 2000;

pub(super) fn config() -> ProptestConfig {
    ProptestConfig { cases: CASES, ..ProptestConfig::default() }
}

/// Deterministic values in [-2, 2] for a shape.
pub(super) fn values(shape: &[usize], seed: u64) -> Tensor<f64> {
    Tensor::<f64>::uniform(shape, -2.0, 2.0, &mut nabla::rng(seed))
}

pub(super) fn arr(t: &Tensor<f64>) -> ArrayD<f64> {
    t.to_ndarray()
}

/// The error must exist and its message must name the op.
pub(super) fn assert_err_names<T: std::fmt::Debug>(result: nabla::Result<T>, op: &str) {
    match result {
        Ok(v) => panic!("{op}: expected an error, got {v:?}"),
        Err(e) => assert!(e.to_string().contains(op), "{op}: the error does not name the op: {e}"),
    }
}

pub(super) fn close(a: &ArrayD<f64>, b: &ArrayD<f64>, tol: f64) -> bool {
    a.shape() == b.shape()
        && a.iter().zip(b.iter()).all(|(x, y)| x == y || (x - y).abs() <= tol * (1.0 + y.abs()) || (x.is_nan() && y.is_nan()))
}

/// NumPy's broadcast of two shapes, or None.
pub(super) fn broadcast(a: &[usize], b: &[usize]) -> Option<Vec<usize>> {
    let n = a.len().max(b.len());
    let dim = |s: &[usize], i: usize| if i + s.len() >= n { s[i + s.len() - n] } else { 1 };
    (0..n)
        .map(|i| match (dim(a, i), dim(b, i)) {
            (x, y) if x == y => Some(x),
            (1, y) => Some(y),
            (x, 1) => Some(x),
            _ => None,
        })
        .collect()
}

/// The element of `x` that broadcasting reads for output index `out`.
pub(super) fn at_broadcast(x: &ArrayD<f64>, out: &[usize]) -> f64 {
    let off = out.len() - x.ndim();
    let idx: Vec<usize> = (0..x.ndim()).map(|i| if x.shape()[i] == 1 { 0 } else { out[i + off] }).collect();
    x[IxDyn(&idx)]
}

/// Pairs of shapes: half of them broadcastable by construction, half drawn independently.
pub(super) fn shape_pair() -> impl Strategy<Value = (Vec<usize>, Vec<usize>)> {
    let compatible = prop::collection::vec(0usize..4, 0..5).prop_flat_map(|out| {
        let n = out.len();
        (Just(out), prop::collection::vec(any::<bool>(), n), prop::collection::vec(any::<bool>(), n), 0..=n, 0..=n)
    });
    let compatible = compatible.prop_map(|(out, ones_a, ones_b, drop_a, drop_b)| {
        let a: Vec<usize> = out.iter().zip(&ones_a).map(|(&d, &one)| if one { 1 } else { d }).skip(drop_a).collect();
        let b: Vec<usize> = out.iter().zip(&ones_b).map(|(&d, &one)| if one { 1 } else { d }).skip(drop_b).collect();
        (a, b)
    });
    let any_pair = (prop::collection::vec(0usize..4, 0..4), prop::collection::vec(0usize..4, 0..4));
    prop_oneof![compatible, any_pair]
}

pub(super) fn normalize(dim: isize, rank: usize) -> Option<usize> {
    let d = if dim < 0 { dim + rank as isize } else { dim };
    (0..rank as isize).contains(&d).then_some(d as usize)
}

/// The input position that output `out`'s tap `k` reads, `out·s + k·d - p`, or `None` in the
/// padding (outside `0..n`): the definition the convolution and pooling loops below check
/// against.
pub(super) fn tap_input(out: usize, k: usize, s: usize, p: usize, d: usize, n: usize) -> Option<usize> {
    (out * s + k * d).checked_sub(p).filter(|&i| i < n)
}

mod conv_pool;
mod elementwise;
mod layout;
mod modules;
mod norm;
