//! Elementwise functions of two tensors with NumPy broadcasting, `where`, and the
//! arithmetic operators.

use super::broadcast_shape;
use super::registry::{OpInfo, positive, randn, spread};
use crate::array::kernel;
use crate::autograd::rule;
use crate::error::Result;
use crate::tensor::{Element, Saves, Tensor};
use ndarray::{ArrayD, IxDyn, Zip};
use std::ops::{Add, Div, Mul, Neg, Sub};

type BinaryVjp<T> = fn(&Tensor<T>, &Tensor<T>, &Tensor<T>, &Tensor<T>) -> (Tensor<T>, Tensor<T>);

impl<T: Element> Tensor<T> {
    /// The generic broadcasting op: forward `f(a, b)` per element, backward
    /// `vjp(a, b, y, gy) -> (ga, gb)` in the broadcast shape (the engine reduces them),
    /// reading `a` and `b` only if `reads_inputs` (none reads `y`).
    fn binary(
        &self,
        other: &Tensor<T>,
        name: &'static str,
        f: impl Fn(T, T) -> T + Sync + Send,
        reads_inputs: bool,
        vjp: BinaryVjp<T>,
    ) -> Result<Tensor<T>> {
        let shape = broadcast_shape(name, self.shape(), other.shape())?;
        let a = self.array().broadcast(IxDyn(&shape)).expect("checked broadcast");
        let b = other.array().broadcast(IxDyn(&shape)).expect("checked broadcast");
        let value = kernel::zip2(&a, &b, f);
        let saves = if reads_inputs { Saves::inputs(&[0, 1]) } else { Saves::NOTHING };
        Ok(Tensor::from_op_saving(value.into_shared(), &[self, other], saves, || {
            Box::new(rule(name, move |inputs: &[Tensor<T>], y: &Tensor<T>, gy: &Tensor<T>| {
                let (ga, gb) = vjp(&inputs[0], &inputs[1], y, gy);
                vec![Some(ga), Some(gb)]
            }))
        }))
    }

    /// `y = a + b`, broadcasting; `dL/da = gy`, `dL/db = gy` (summed over broadcast dims).
    ///
    /// ```
    /// use nabla::prelude::*;
    /// let a = Tensor::zeros(&[2, 3]);
    /// let b = Tensor::ones(&[3]);
    /// assert_eq!(a.add(&b)?.shape(), &[2, 3]);
    /// assert_eq!(a.add(&Tensor::ones(&[2])).unwrap_err().to_string(),
    ///            "add: [2, 3] and [2] cannot be broadcast: sizes 3 and 2 at dim 1 differ");
    /// # Ok::<(), nabla::Error>(())
    /// ```
    pub fn add(&self, other: &Tensor<T>) -> Result<Tensor<T>> {
        self.binary(other, "add", |a, b| a + b, false, |_, _, _, gy| (gy.clone(), gy.clone()))
    }

    /// `y = a - b`, broadcasting; `dL/da = gy`, `dL/db = -gy`.
    pub fn sub(&self, other: &Tensor<T>) -> Result<Tensor<T>> {
        self.binary(other, "sub", |a, b| a - b, false, |_, _, _, gy| (gy.clone(), gy.neg()))
    }

    /// `y = a · b`, broadcasting; `dL/da = gy · b`, `dL/db = gy · a`.
    pub fn mul(&self, other: &Tensor<T>) -> Result<Tensor<T>> {
        self.binary(other, "mul", |a, b| a * b, true, |a, b, _, gy| (gy * b, gy * a))
    }

    /// `y = a / b`, broadcasting; `dL/da = gy / b`, `dL/db = -gy · a / b²`.
    pub fn div(&self, other: &Tensor<T>) -> Result<Tensor<T>> {
        self.binary(other, "div", |a, b| a / b, true, |a, b, _, gy| (gy / b, (&(gy * a) / &(b * b)).neg()))
    }

    /// `y = aᵇ` elementwise with a tensor exponent, broadcasting, as `torch.pow(a, b)`;
    /// `dL/da = gy · b · aᵇ⁻¹` (0 where `b = 0`) and `dL/db = gy · aᵇ · ln a` (0 where `a = 0`
    /// and `b ≥ 0`), PyTorch's rules.
    ///
    /// ```
    /// use nabla::prelude::*;
    /// let a = Tensor::<f64>::from_vec(vec![2.0, 3.0], &[2])?;
    /// let b = Tensor::<f64>::from_vec(vec![3.0, 0.5], &[2])?;
    /// assert_eq!(a.pow_tensor(&b)?.to_vec(), vec![8.0, 3f64.sqrt()]);
    /// # Ok::<(), nabla::Error>(())
    /// ```
    pub fn pow_tensor(&self, exponent: &Tensor<T>) -> Result<Tensor<T>> {
        self.binary(
            exponent,
            "pow_tensor",
            |a, b| a.powf(b),
            true,
            |a, b, _, gy| {
                // Every operand is in (or broadcasts to) gy's shape: the operators cannot fail.
                let zeros = <Tensor<T> as crate::tensor::Creation<T>>::zeros(gy.shape());
                let exponent_zero = pair_mask(a, b, |_, e| e == T::zero());
                let to_base = &(gy * b) * &a.pow_tensor(&(b - 1.0)).expect("shapes broadcast");
                let ga = where_(&exponent_zero, &zeros, &to_base).expect("shapes broadcast");
                let base_zero = pair_mask(a, b, |x, e| x == T::zero() && e >= T::zero());
                let to_exponent = &(gy * &a.pow_tensor(b).expect("shapes broadcast")) * &a.log();
                let gb = where_(&base_zero, &zeros, &to_exponent).expect("shapes broadcast");
                (ga, gb)
            },
        )
    }

    /// `y = max(a, b)`, broadcasting; the gradient goes to the larger input, and is split
    /// half and half where they are equal (PyTorch's choice). A NaN on either side is the
    /// result and both inputs get the whole gradient there, as in PyTorch.
    pub fn maximum(&self, other: &Tensor<T>) -> Result<Tensor<T>> {
        self.binary(
            other,
            "maximum",
            |a, b| if a >= b || a.is_nan() { a } else { b },
            true,
            |a, b, _, gy| (gy * &share(a, b, |x, y| x < y), gy * &share(b, a, |x, y| x < y)),
        )
    }

    /// `y = min(a, b)`, broadcasting; the gradient goes to the smaller input, split half and
    /// half at ties; NaN as in [`Tensor::maximum`].
    pub fn minimum(&self, other: &Tensor<T>) -> Result<Tensor<T>> {
        self.binary(
            other,
            "minimum",
            |a, b| if a <= b || a.is_nan() { a } else { b },
            true,
            |a, b, _, gy| (gy * &share(a, b, |x, y| x > y), gy * &share(b, a, |x, y| x > y)),
        )
    }
}

/// A constant mask `1[pred(a, b)]` in the broadcast shape of `a` and `b`.
fn pair_mask<T: Element>(a: &Tensor<T>, b: &Tensor<T>, pred: fn(T, T) -> bool) -> Tensor<T> {
    let shape = broadcast_shape("pow_tensor", a.shape(), b.shape()).expect("internal: shapes broadcast");
    let av = a.array().broadcast(IxDyn(&shape)).expect("broadcast");
    let bv = b.array().broadcast(IxDyn(&shape)).expect("broadcast");
    Tensor::from(Zip::from(&av).and(&bv).map_collect(|&x, &y| if pred(x, y) { T::one() } else { T::zero() }))
}

/// The constant share of the gradient that goes to `a` in max/min, as PyTorch's rule: ½ at
/// a tie, 0 where `a` loses to `b`, 1 otherwise (broadcast to both shapes). A NaN on either
/// side loses nothing, so both inputs get the whole gradient there, as in PyTorch.
fn share<T: Element>(a: &Tensor<T>, b: &Tensor<T>, loses: fn(T, T) -> bool) -> Tensor<T> {
    let shape = broadcast_shape("maximum", a.shape(), b.shape()).expect("internal: shapes broadcast");
    let av = a.array().broadcast(IxDyn(&shape)).expect("broadcast");
    let bv = b.array().broadcast(IxDyn(&shape)).expect("broadcast");
    let half = T::of(0.5);
    Tensor::from(Zip::from(&av).and(&bv).map_collect(|&x, &y| {
        if x == y {
            half
        } else if loses(x, y) {
            T::zero()
        } else {
            T::one()
        }
    }))
}

/// `y = a` where `condition > 0`, else `b`, all three broadcast together;
/// `dL/da = gy · 1[c > 0]`, `dL/db = gy · 1[c ≤ 0]`, the condition gets no gradient.
///
/// ```
/// use nabla::prelude::*;
/// let c = Tensor::from_vec(vec![1.0, 0.0], &[2])?;
/// let y = nabla::where_(&c, &Tensor::full(&[2], 5.0), &Tensor::full(&[2], 7.0))?;
/// assert_eq!(y.to_vec(), vec![5.0, 7.0]);
/// # Ok::<(), nabla::Error>(())
/// ```
pub fn where_<T: Element>(condition: &Tensor<T>, a: &Tensor<T>, b: &Tensor<T>) -> Result<Tensor<T>> {
    let shape = broadcast_shape("where", &broadcast_shape("where", condition.shape(), a.shape())?, b.shape())?;
    let mask: ArrayD<T> =
        condition.array().broadcast(IxDyn(&shape)).expect("checked broadcast").mapv(|c| if c > T::zero() { T::one() } else { T::zero() });
    let mask = Tensor::from(mask);
    let not_mask = -&mask + 1.0;
    // a·m + b·(1-m) would turn inf·0 into NaN, so select instead and keep the masks for
    // the rule.
    let av = a.array().broadcast(IxDyn(&shape)).expect("checked broadcast");
    let bv = b.array().broadcast(IxDyn(&shape)).expect("checked broadcast");
    let value = Zip::from(mask.array()).and(&av).and(&bv).map_collect(|&m, &x, &y| if m > T::zero() { x } else { y });
    Ok(Tensor::from_op_saving(value.into_shared(), &[a, b], Saves::NOTHING, move || {
        Box::new(rule("where", move |_: &[Tensor<T>], _: &Tensor<T>, gy: &Tensor<T>| vec![Some(gy * &mask), Some(gy * &not_mask)]))
    }))
}

fn or_panic<T: Element>(result: Result<Tensor<T>>) -> Tensor<T> {
    result.unwrap_or_else(|e| panic!("{e}"))
}

/// `a + b`, `a - b`, `a * b`, `a / b` on tensors (owned or borrowed), broadcasting.
///
/// **Panics** on shapes that do not broadcast, with the same message the named method
/// (`a.add(&b)?`) returns as an error; this is the one documented panic of the public API,
/// like ndarray's operators. Code that takes shapes from outside calls the named methods.
macro_rules! tensor_operator {
    ($trait:ident, $method:ident, $named:ident) => {
        impl<T: Element> $trait<&Tensor<T>> for &Tensor<T> {
            type Output = Tensor<T>;
            fn $method(self, rhs: &Tensor<T>) -> Tensor<T> {
                or_panic(Tensor::<T>::$named(&self, &rhs))
            }
        }
        impl<T: Element> $trait<Tensor<T>> for &Tensor<T> {
            type Output = Tensor<T>;
            fn $method(self, rhs: Tensor<T>) -> Tensor<T> {
                or_panic(Tensor::<T>::$named(&self, &rhs))
            }
        }
        impl<T: Element> $trait<&Tensor<T>> for Tensor<T> {
            type Output = Tensor<T>;
            fn $method(self, rhs: &Tensor<T>) -> Tensor<T> {
                or_panic(Tensor::<T>::$named(&self, &rhs))
            }
        }
        impl<T: Element> $trait<Tensor<T>> for Tensor<T> {
            type Output = Tensor<T>;
            fn $method(self, rhs: Tensor<T>) -> Tensor<T> {
                or_panic(Tensor::<T>::$named(&self, &rhs))
            }
        }
    };
}

tensor_operator!(Add, add, add);
tensor_operator!(Sub, sub, sub);
tensor_operator!(Mul, mul, mul);
tensor_operator!(Div, div, div);

/// `tensor ∘ scalar` for owned and borrowed tensors: `&x * 3.0 - 1.0`.
///
/// The scalar is an `f64` for every element type, converted to it (as PyTorch converts a
/// Python float to the tensor's dtype), so a literal reads the same in a rule generic over
/// `T` as in `f32` or `f64` code: `gy * &(x * 2.0)` needs no `T::of(2.0)`. A scalar held in
/// the element type (an `f32` variable, a generic `T`) goes through the named methods,
/// `x.mul_scalar(c)`, which take the element type.
macro_rules! scalar_operator {
    ($trait:ident, $method:ident, |$x:ident, $c:ident| $body:expr_2021) => {
        impl<T: Element> $trait<f64> for &Tensor<T> {
            type Output = Tensor<T>;
            fn $method(self, c: f64) -> Tensor<T> {
                let ($x, $c) = (self, T::of(c));
                $body
            }
        }
        impl<T: Element> $trait<f64> for Tensor<T> {
            type Output = Tensor<T>;
            fn $method(self, c: f64) -> Tensor<T> {
                let ($x, $c) = (&self, T::of(c));
                $body
            }
        }
    };
}

scalar_operator!(Add, add, |x, c| x.add_scalar(c));
scalar_operator!(Sub, sub, |x, c| x.add_scalar(-c));
scalar_operator!(Mul, mul, |x, c| x.mul_scalar(c));
scalar_operator!(Div, div, |x, c| x.div_scalar(c));

impl<T: Element> Neg for &Tensor<T> {
    type Output = Tensor<T>;
    fn neg(self) -> Tensor<T> {
        Tensor::neg(self)
    }
}

impl<T: Element> Neg for Tensor<T> {
    type Output = Tensor<T>;
    fn neg(self) -> Tensor<T> {
        Tensor::neg(&self)
    }
}

/// `scalar ∘ tensor`: `1.0 - &x`, `2.0 / &x`, an `f64` scalar for every element type (as
/// above).
impl<T: Element> Add<&Tensor<T>> for f64 {
    type Output = Tensor<T>;
    fn add(self, x: &Tensor<T>) -> Tensor<T> {
        x.add_scalar(T::of(self))
    }
}

impl<T: Element> Sub<&Tensor<T>> for f64 {
    type Output = Tensor<T>;
    fn sub(self, x: &Tensor<T>) -> Tensor<T> {
        x.neg().add_scalar(T::of(self))
    }
}

impl<T: Element> Mul<&Tensor<T>> for f64 {
    type Output = Tensor<T>;
    fn mul(self, x: &Tensor<T>) -> Tensor<T> {
        x.mul_scalar(T::of(self))
    }
}

impl<T: Element> Div<&Tensor<T>> for f64 {
    type Output = Tensor<T>;
    fn div(self, x: &Tensor<T>) -> Tensor<T> {
        x.recip().mul_scalar(T::of(self))
    }
}

/// This family's entries in the [op registry](super::registry()).
pub(crate) const OPS: &[OpInfo] = &[
    // Broadcasting: both inputs need their (summed) gradients.
    OpInfo::new("add", || vec![randn(&[3, 4], 1), randn(&[4], 5)], |v| Tensor::add(&v[0], &v[1])),
    OpInfo::new("sub", || vec![randn(&[3, 4], 1), randn(&[3, 1], 5)], |v| Tensor::sub(&v[0], &v[1])),
    OpInfo::new("mul", || vec![randn(&[3, 4], 1), randn(&[4], 5)], |v| Tensor::mul(&v[0], &v[1])),
    OpInfo::new("div", || vec![randn(&[3, 4], 1), positive(&[3, 1], 5)], |v| Tensor::div(&v[0], &v[1])),
    // Offset by 0.05 so that no pair ties.
    OpInfo::new("maximum", || vec![spread(&[3, 4], 6), spread(&[3, 4], 7).add_scalar(0.05)], |v| v[0].maximum(&v[1])),
    OpInfo::new("pow_tensor", || vec![positive(&[3, 4], 2), randn(&[4], 5)], |v| v[0].pow_tensor(&v[1])),
    OpInfo::new("minimum", || vec![spread(&[3, 4], 6), spread(&[3, 4], 7).add_scalar(0.05)], |v| v[0].minimum(&v[1])),
    OpInfo::new(
        "where",
        || vec![randn(&[3, 4], 1), randn(&[4], 8)],
        |v| {
            let cond =
                <Tensor<f64> as crate::tensor::Creation<f64>>::from_vec((0..12).map(|i| (i % 3 == 0) as u8 as f64).collect(), &[3, 4])?;
            where_(&cond, &v[0], &v[1])
        },
    ),
];
