//! Matrix products: `matmul` with torch.matmul's semantics, and `linear`.
//!
//! The kernel is the `gemm` crate (called in `kernel`), on ndarray's buffers with their strides (so a
//! transposed view costs no copy); with its `x86-v4` feature it picks AVX-512 kernels at
//! run time, and the build stays portable.

use super::broadcast_shape;
use super::registry::{OpInfo, randn};
use crate::array::kernel::{gemm, gemm_plus_row};
use crate::autograd::rule;
use crate::error::{Error, Result};
use crate::tensor::{Element, Saves, Tensor};
use ndarray::{Array3, ArrayView2, ArrayViewD, Axis, Ix2, Ix3, IxDyn};

fn as_matrix<'a, T: Element>(x: &'a ArrayViewD<'a, T>) -> ArrayView2<'a, T> {
    x.view().into_dimensionality::<Ix2>().expect("internal: a matrix")
}

impl<T: Element> Tensor<T> {
    /// The product of `[.., m, k]` and `[.., k, n]` with identical batch dims (or both 2-D):
    /// `dL/da = gy @ bᵀ`, `dL/db = aᵀ @ gy`.
    fn matmul_same_batch(&self, other: &Tensor<T>) -> Tensor<T> {
        let (a, b) = (self.value(), other.value());
        let value = if a.ndim() == 2 {
            gemm(&as_matrix(&a), &as_matrix(&b)).into_dyn()
        } else {
            let shape = a.shape();
            let (m, k, n) = (shape[shape.len() - 2], shape[shape.len() - 1], b.shape()[b.ndim() - 1]);
            let batch: usize = shape[..shape.len() - 2].iter().product();
            let a3 = a.to_shape((batch, m, k)).expect("batched view").into_dimensionality::<Ix3>().expect("3-D");
            let b3 = b.to_shape((batch, k, n)).expect("batched view").into_dimensionality::<Ix3>().expect("3-D");
            let mut out = Array3::<T>::zeros((batch, m, n));
            for i in 0..batch {
                out.index_axis_mut(Axis(0), i).assign(&gemm(&a3.index_axis(Axis(0), i), &b3.index_axis(Axis(0), i)));
            }
            let mut out_shape = shape[..shape.len() - 2].to_vec();
            out_shape.extend([m, n]);
            out.into_shape_with_order(IxDyn(&out_shape)).expect("batched result")
        };
        Tensor::from_op_saving(value.into_shared(), &[self, other], Saves::inputs(&[0, 1]), || {
            Box::new(rule("matmul", |inputs: &[Tensor<T>], _: &Tensor<T>, gy: &Tensor<T>| {
                let (a, b) = (&inputs[0], &inputs[1]);
                let ga = a.requires_grad().then(|| gy.matmul_same_batch(&b.t()));
                let gb = b.requires_grad().then(|| a.t().matmul_same_batch(gy));
                vec![ga, gb]
            }))
        })
    }

    /// The matrix product with `torch.matmul`'s semantics: 1-D · 1-D is a dot product, a
    /// 1-D operand is a row (left) or a column (right) vector that is removed from the result,
    /// and batch dims (all but the last two) broadcast.
    /// `dL/da = gy @ bᵀ`, `dL/db = aᵀ @ gy`.
    ///
    /// ```
    /// use nabla::prelude::*;
    /// let a = Tensor::from_vec(vec![1.0, 2.0, 3.0, 4.0], &[2, 2])?;
    /// let b = Tensor::eye(2);
    /// assert_eq!(a.matmul(&b)?.to_vec(), a.to_vec());
    /// assert_eq!(Tensor::zeros(&[5, 2, 3]).matmul(&Tensor::zeros(&[3, 4]))?.shape(), &[5, 2, 4]);
    /// # Ok::<(), nabla::Error>(())
    /// ```
    pub fn matmul(&self, other: &Tensor<T>) -> Result<Tensor<T>> {
        let (sa, sb) = (self.shape(), other.shape());
        let fail = |msg: String| Error::shape("matmul", format!("{sa:?} @ {sb:?}: {msg}"));
        if self.ndim() == 0 || other.ndim() == 0 {
            return Err(fail("both operands need at least 1 dim".into()));
        }
        let k_a = sa[sa.len() - 1];
        let k_b = if other.ndim() == 1 { sb[0] } else { sb[sb.len() - 2] };
        if k_a != k_b {
            return Err(fail(format!("inner dims {k_a} and {k_b} differ")));
        }
        match (self.ndim(), other.ndim()) {
            (1, 1) => Ok(self.reshape_to(&[1, k_a]).matmul_same_batch(&other.reshape_to(&[k_a, 1])).reshape_to(&[])),
            (1, _) => {
                let y = self.reshape_to(&[1, k_a]).matmul(other)?;
                let mut shape = y.shape().to_vec();
                shape.remove(shape.len() - 2);
                Ok(y.reshape_to(&shape))
            }
            (_, 1) => {
                let y = self.matmul(&other.reshape_to(&[k_b, 1]))?;
                Ok(y.reshape_to(&y.shape()[..y.ndim() - 1]))
            }
            (2, 2) => Ok(self.matmul_same_batch(other)),
            (_, 2) => {
                // [.., m, k] @ [k, n]: fold the batch into the rows, one large product.
                let mut out_shape = sa[..sa.len() - 1].to_vec();
                out_shape.push(sb[1]);
                let rows = self.reshape_to(&[sa[..sa.len() - 1].iter().product(), k_a]);
                Ok(rows.matmul_same_batch(other).reshape_to(&out_shape))
            }
            _ => {
                let (batch_a, batch_b) = (&sa[..sa.len() - 2], &sb[..sb.len() - 2]);
                let batch = broadcast_shape("matmul", batch_a, batch_b)
                    .map_err(|_| fail(format!("batch dims {batch_a:?} and {batch_b:?} cannot be broadcast")))?;
                let with = |tail: &[usize]| [batch.as_slice(), tail].concat();
                let a = self.expand_to(&with(&sa[sa.len() - 2..]));
                let b = other.expand_to(&with(&sb[sb.len() - 2..]));
                Ok(a.matmul_same_batch(&b))
            }
        }
    }

    /// `y = x Wᵀ + b` for `x: [.., in]`, `weight: [out, in]`, `bias: [out]`, as
    /// `torch.nn.functional.linear`.
    ///
    /// ```
    /// use nabla::prelude::*;
    /// let x = Tensor::ones(&[4, 3]);
    /// let w = Tensor::ones(&[5, 3]);
    /// let b = Tensor::zeros(&[5]);
    /// assert_eq!(x.linear(&w, Some(&b))?.shape(), &[4, 5]);
    /// # Ok::<(), nabla::Error>(())
    /// ```
    pub fn linear(&self, weight: &Tensor<T>, bias: Option<&Tensor<T>>) -> Result<Tensor<T>> {
        if weight.ndim() != 2 {
            return Err(Error::shape("linear", format!("weight must be [out, in], got {:?}", weight.shape())));
        }
        let (out_features, in_features) = (weight.shape()[0], weight.shape()[1]);
        if self.shape().last() != Some(&in_features) {
            return Err(Error::shape(
                "linear",
                format!("input {:?} does not end in in_features {in_features} of weight {:?}", self.shape(), weight.shape()),
            ));
        }
        if let Some(b) = bias
            && b.shape() != [out_features]
        {
            return Err(Error::shape("linear", format!("bias {:?} is not [out_features] = [{out_features}]", b.shape())));
        }
        Ok(linear_op(self, weight, bias))
    }
}

/// `y = x Wᵀ + b` as one op: the product and the bias in one pass (the bias is the output's
/// starting value), and gradients in the layout the parameters have:
/// `dL/dx = gy W`, `dL/dW = gyᵀ x` (row-major like W, no transposed copy), `dL/db = Σ gy`.
/// The composition `x.matmul(&w.t()) + b` is its test oracle.
fn linear_op<T: Element>(x: &Tensor<T>, weight: &Tensor<T>, bias: Option<&Tensor<T>>) -> Tensor<T> {
    let in_features = weight.shape()[1];
    let rows: usize = x.shape()[..x.ndim() - 1].iter().product();
    let x2 = x.reshape_to(&[rows, in_features]);
    // A strided input (a batch-first view of a recurrent layer's output) was just copied
    // to be a matrix: the weight's gradient reuses the copy (a node of the graph, so
    // gradients of gradients still reach `x` through it) rather than making another.
    let copy = (!x.array().is_standard_layout()).then(|| x2.clone());
    let bias_array = bias.map(|b| b.array().as_standard_layout());
    let value = gemm_plus_row(&as_matrix(&x2.value()), &as_matrix(&weight.value()).t(), bias_array.as_ref().and_then(|b| b.as_slice()));
    let mut out_shape = x.shape()[..x.ndim() - 1].to_vec();
    out_shape.push(weight.shape()[0]);
    let value = value.into_shape_with_order(IxDyn(&out_shape)).expect("rows x out");
    let inputs: &[&Tensor<T>] = match bias {
        Some(b) => &[x, weight, b],
        None => &[x, weight],
    };
    Tensor::from_op_saving(value.into_shared(), inputs, Saves::inputs(&[0, 1]), move || {
        Box::new(rule("linear", move |inputs: &[Tensor<T>], _: &Tensor<T>, gy: &Tensor<T>| {
            let (x, w) = (&inputs[0], &inputs[1]);
            let (out_features, in_features) = (w.shape()[0], w.shape()[1]);
            let rows: usize = gy.shape()[..gy.ndim() - 1].iter().product();
            let gy2 = gy.reshape_to(&[rows, out_features]);
            let gx = x.requires_grad().then(|| gy2.matmul_same_batch(w).reshape_to(x.shape()));
            let gw = w.requires_grad().then(|| {
                let x2 = copy.clone().unwrap_or_else(|| x.reshape_to(&[rows, in_features]));
                gy2.t().matmul_same_batch(&x2)
            });
            let mut grads = vec![gx, gw];
            if let Some(b) = inputs.get(2) {
                grads.push(b.requires_grad().then(|| gy2.sum_dims(&[0], false).expect("dim 0 exists")));
            }
            grads
        }))
    })
}

/// This family's entries in the [op registry](super::registry()).
pub(crate) const OPS: &[OpInfo] = &[
    OpInfo::new("matmul", || vec![randn(&[2, 3, 4], 16), randn(&[4, 5], 17)], |v| v[0].matmul(&v[1])),
    OpInfo::new("linear", || vec![randn(&[3, 4], 1), randn(&[5, 4], 18), randn(&[5], 19)], |v| v[0].linear(&v[1], Some(&v[2]))),
];
