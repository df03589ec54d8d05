//! Function transforms, as `torch.autograd.functional`: the Jacobian, vector-Jacobian and
//! Jacobian-vector products, Hessian-vector products.

use super::backward::grad;
use crate::error::{Error, Result};
use crate::tensor::{Creation, Element, Tensor};

fn prepare<T: Element>(x: &Tensor<T>) -> Tensor<T> {
    x.detach().with_requires_grad(true)
}

/// `(f(x), Jᵀv)`: the vector-Jacobian product, what backward computes. `v` has `f(x)`'s
/// shape, the result `x`'s.
///
/// ```
/// use nabla::prelude::*;
/// use nabla::autograd::functional::vjp;
/// let x = Tensor::<f64>::from_vec(vec![1.0, 2.0], &[2])?;
/// let v = Tensor::<f64>::from_vec(vec![1.0, 10.0], &[2])?;
/// let (_, g) = vjp(|x| Ok(x * x), &x, &v)?;   // J = diag(2x)
/// assert_eq!(g.to_vec(), vec![2.0, 40.0]);
/// # Ok::<(), nabla::Error>(())
/// ```
pub fn vjp<T: Element>(f: impl Fn(&Tensor<T>) -> Result<Tensor<T>>, x: &Tensor<T>, v: &Tensor<T>) -> Result<(Tensor<T>, Tensor<T>)> {
    let x = prepare(x);
    let y = f(&x)?;
    let g = grad(&[&y], &[&x], Some(&[v]), false)?.remove(0);
    Ok((y.detach(), g))
}

/// `(f(x), Jv)`: the Jacobian-vector product (forward mode), by the double-vjp trick: `Jᵀu`
/// is linear in `u`, and its vjp with respect to `u` against `v` is `Jv`.
///
/// ```
/// use nabla::prelude::*;
/// use nabla::autograd::functional::jvp;
/// let x = Tensor::<f64>::from_vec(vec![1.0, 2.0], &[2])?;
/// let v = Tensor::<f64>::from_vec(vec![1.0, 10.0], &[2])?;
/// let (_, t) = jvp(|x| Ok(x * x), &x, &v)?;
/// assert_eq!(t.to_vec(), vec![2.0, 40.0]);
/// # Ok::<(), nabla::Error>(())
/// ```
pub fn jvp<T: Element>(f: impl Fn(&Tensor<T>) -> Result<Tensor<T>>, x: &Tensor<T>, v: &Tensor<T>) -> Result<(Tensor<T>, Tensor<T>)> {
    if v.shape() != x.shape() {
        return Err(Error::shape("jvp", format!("tangent {:?} for an input of shape {:?}", v.shape(), x.shape())));
    }
    super::enable_grad(|| {
        let x = prepare(x);
        let y = f(&x)?;
        let u = Tensor::<T>::zeros(y.shape()).with_requires_grad(true);
        let jt_u = grad(&[&y], &[&x], Some(&[&u]), true)?.remove(0);
        if !jt_u.requires_grad() {
            return Ok((y.detach(), Tensor::<T>::zeros(y.shape())));
        }
        let jv = grad(&[&jt_u], &[&u], Some(&[v]), false)?.remove(0);
        Ok((y.detach(), jv))
    })
}

/// The Jacobian of `f` at `x`, shaped `f(x).shape ++ x.shape`: row `i` is the vjp with the
/// one-hot cotangent `e_i`.
///
/// ```
/// use nabla::prelude::*;
/// use nabla::autograd::functional::jacobian;
/// let a = Tensor::<f64>::from_vec(vec![1.0, 2.0, 3.0, 4.0, 5.0, 6.0], &[2, 3])?;
/// let x = Tensor::<f64>::ones(&[3]);
/// let j = jacobian(|x| a.matmul(x), &x)?;      // the Jacobian of x ↦ Ax is A
/// assert_eq!(j.to_vec(), a.to_vec());
/// # Ok::<(), nabla::Error>(())
/// ```
pub fn jacobian<T: Element>(f: impl Fn(&Tensor<T>) -> Result<Tensor<T>>, x: &Tensor<T>) -> Result<Tensor<T>> {
    let x = prepare(x);
    let y = f(&x)?;
    let mut rows = Vec::with_capacity(y.len() * x.len());
    for i in 0..y.len() {
        let mut e = vec![T::zero(); y.len()];
        e[i] = T::one();
        let cotangent = Tensor::<T>::from_vec(e, y.shape())?;
        rows.extend(grad(&[&y], &[&x], Some(&[&cotangent]), false)?[0].to_vec());
    }
    Tensor::<T>::from_vec(rows, &[y.shape(), x.shape()].concat())
}

/// `(f(x), Hv)` for a scalar function `f`: the Hessian-vector product, the gradient of
/// `⟨∇f(x), v⟩`, without forming `H`.
///
/// ```
/// use nabla::prelude::*;
/// use nabla::autograd::functional::hvp;
/// let x = Tensor::<f64>::from_vec(vec![1.0, 2.0], &[2])?;
/// let v = Tensor::<f64>::from_vec(vec![1.0, 1.0], &[2])?;
/// let (_, hv) = hvp(|x| Ok(x.pow(3.0).sum()), &x, &v)?;   // H = diag(6x)
/// assert_eq!(hv.to_vec(), vec![6.0, 12.0]);
/// # Ok::<(), nabla::Error>(())
/// ```
pub fn hvp<T: Element>(f: impl Fn(&Tensor<T>) -> Result<Tensor<T>>, x: &Tensor<T>, v: &Tensor<T>) -> Result<(Tensor<T>, Tensor<T>)> {
    if v.shape() != x.shape() {
        return Err(Error::shape("hvp", format!("vector {:?} for an input of shape {:?}", v.shape(), x.shape())));
    }
    super::enable_grad(|| {
        let x = prepare(x);
        let y = f(&x)?;
        if y.len() != 1 {
            return Err(Error::shape("hvp", format!("f must return one element, got shape {:?}", y.shape())));
        }
        let g = grad(&[&y], &[&x], None, true)?.remove(0);
        if !g.requires_grad() {
            return Ok((y.detach(), Tensor::<T>::zeros(x.shape())));
        }
        let hv = grad(&[&g], &[&x], Some(&[v]), false)?.remove(0);
        Ok((y.detach(), hv))
    })
}
