//! Padding by a constant, by reflection, by replication or circularly (PyTorch's `F.pad`).

use crate::error::{Error, Result};
use crate::tensor::{Element, Tensor};

/// How [`pad`] fills the new border, and a convolution's `padding_mode`.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub enum PadMode {
    /// A constant (PyTorch's `"constant"`; 0 is a convolution's `"zeros"`).
    Constant(f64),
    /// The zero padding of convolutions (PyTorch's `"zeros"`): `Constant(0.0)`.
    #[default]
    Zeros,
    /// The mirror image without repeating the edge: `[a b c]` padded by 2 on the left is
    /// `[c b a b c]` (PyTorch's `"reflect"`; each pad below the dim's size).
    Reflect,
    /// The edge repeated: `[a a a b c]` (PyTorch's `"replicate"`).
    Replicate,
    /// The other end wrapped around: `[b c a b c]` (PyTorch's `"circular"`; each pad at
    /// most the dim's size).
    Circular,
}

impl PadMode {
    /// PyTorch's name: `"zeros"`, `"constant"`, `"reflect"`, `"replicate"`, `"circular"`
    /// (`"constant"` as zeros).
    pub fn parse(name: &str) -> Result<PadMode> {
        match name {
            "zeros" => Ok(PadMode::Zeros),
            "constant" => Ok(PadMode::Constant(0.0)),
            "reflect" => Ok(PadMode::Reflect),
            "replicate" => Ok(PadMode::Replicate),
            "circular" => Ok(PadMode::Circular),
            other => Err(Error::invalid("pad", format!("padding mode {other:?} is not zeros, constant, reflect, replicate or circular"))),
        }
    }
}

/// Pads `x` as PyTorch's `F.pad(x, pad, mode, value)`: `pad` lists `(before, after)` pairs
/// from the last dim backwards (`[left, right]` pads the last dim, `[left, right, top,
/// bottom]` the last two). The non-constant modes are gathers of `x`'s own elements (their
/// gradient adds the copies back), so every mode differentiates to any order.
///
/// `Err` for an odd-length or too long `pad`, a reflection at least as wide as its dim, a
/// wrap-around wider than its dim, or an empty dim to replicate.
///
/// ```
/// use nabla::prelude::*;
/// use nabla::nn::functional::{PadMode, pad};
/// let x = Tensor::from_vec(vec![1.0, 2.0, 3.0], &[1, 3])?;
/// assert_eq!(pad(&x, &[2, 1], PadMode::Reflect)?.to_vec(), vec![3.0, 2.0, 1.0, 2.0, 3.0, 2.0]);
/// assert_eq!(pad(&x, &[2, 1], PadMode::Replicate)?.to_vec(), vec![1.0, 1.0, 1.0, 2.0, 3.0, 3.0]);
/// assert_eq!(pad(&x, &[2, 1], PadMode::Circular)?.to_vec(), vec![2.0, 3.0, 1.0, 2.0, 3.0, 1.0]);
/// assert_eq!(pad(&x, &[1, 0], PadMode::Constant(9.0))?.to_vec(), vec![9.0, 1.0, 2.0, 3.0]);
/// # Ok::<(), nabla::Error>(())
/// ```
pub fn pad<T: Element>(x: &Tensor<T>, pad: &[usize], mode: PadMode) -> Result<Tensor<T>> {
    if !pad.len().is_multiple_of(2) || pad.len() / 2 > x.ndim() {
        return Err(Error::invalid(
            "pad",
            format!("pad {pad:?} must hold (before, after) pairs for at most the {} dims of input {:?}", x.ndim(), x.shape()),
        ));
    }
    let mut y = x.clone();
    for (k, pair) in pad.chunks(2).enumerate() {
        let d = x.ndim() - 1 - k;
        let (before, after) = (pair[0], pair[1]);
        if before == 0 && after == 0 {
            continue;
        }
        let n = x.shape()[d];
        let index: Vec<usize> = match mode {
            PadMode::Zeros | PadMode::Constant(_) => {
                let value = if let PadMode::Constant(v) = mode { v } else { 0.0 };
                y = constant(&y, d, before, after, value)?;
                continue;
            }
            PadMode::Reflect => {
                if before >= n || after >= n {
                    return Err(Error::invalid(
                        "pad",
                        format!("reflect padding ({before}, {after}) must be below the size {n} of dim {d} of input {:?}", x.shape()),
                    ));
                }
                (0..before).map(|i| before - i).chain(0..n).chain((0..after).map(|i| n - 2 - i)).collect()
            }
            PadMode::Replicate => {
                if n == 0 {
                    return Err(Error::invalid("pad", format!("replicate padding of the empty dim {d} of input {:?}", x.shape())));
                }
                (0..before).map(|_| 0).chain(0..n).chain((0..after).map(|_| n - 1)).collect()
            }
            PadMode::Circular => {
                if before > n || after > n {
                    return Err(Error::invalid(
                        "pad",
                        format!("circular padding ({before}, {after}) must be at most the size {n} of dim {d} of input {:?}", x.shape()),
                    ));
                }
                (0..before).map(|i| n - before + i).chain(0..n).chain(0..after).collect()
            }
        };
        y = y.index_select(d as isize, &index)?;
    }
    Ok(y)
}

/// `value` added before and after along `d`.
fn constant<T: Element>(x: &Tensor<T>, d: usize, before: usize, after: usize, value: f64) -> Result<Tensor<T>> {
    let padded = x.pad_axis(d, before, after);
    if value == 0.0 {
        return Ok(padded);
    }
    let mut shape = vec![1; x.ndim()];
    shape[d] = padded.shape()[d];
    let n = x.shape()[d];
    let border = ndarray::ArrayD::from_shape_fn(shape, |i| if i[d] < before || i[d] >= before + n { T::of(value) } else { T::zero() });
    padded.add(&Tensor::from(border))
}
