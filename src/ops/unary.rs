//! Elementwise functions of one tensor. Each is a forward `f`, its derivative `df` as a
//! scalar function of the input or of the output ([`Reads`]), and the same vector-Jacobian
//! product written with tensor ops.
//!
//! First-order backward (recording off) runs the fused loop `gx = gy · df(·)`: one pass
//! over memory. With `create_graph` the tensor-op form runs instead, so the gradient is
//! itself differentiable; `autograd::gradcheck` compares the two forms on every check.

use super::registry::{OpInfo, positive, randn, spread};
use crate::array::kernel;
use crate::autograd::{OpRule, is_grad_enabled};
use crate::tensor::{Element, Saves, Tensor};

/// What the derivative of an elementwise op is a function of: reading only that array in
/// the fused backward saves a pass over memory, and the graph keeps only that value.
#[derive(Clone, Copy)]
enum Reads {
    /// Neither: the derivative is a constant, `df(0)`.
    Nothing,
    /// `df(x)`: the derivative is a function of the input.
    Input,
    /// `df(y)`: of the output (exp, tanh, sigmoid, sqrt, recip).
    Output,
}

/// The rule of an elementwise op: the tensor-op form `vjp` when recording, else the fused
/// loop `gy · df(·)`, written into `gy`'s own buffer when nothing else holds it.
struct UnaryRule<D, V> {
    name: &'static str,
    reads: Reads,
    df: D,
    vjp: V,
}

/// What the fused derivative reads: `Ok(x or y)`, or `Err(df(0))` for a constant derivative.
fn fused_at<'a, T: Element>(reads: Reads, df: &impl Fn(T) -> T, inputs: &'a [Tensor<T>], y: &'a Tensor<T>) -> Result<&'a Tensor<T>, T> {
    match reads {
        Reads::Nothing => Err(df(T::zero())),
        Reads::Input => Ok(&inputs[0]),
        Reads::Output => Ok(y),
    }
}

impl<T, D, V> OpRule<T> for UnaryRule<D, V>
where
    T: Element,
    D: Fn(T) -> T + Sync + Send + 'static,
    V: Fn(&Tensor<T>, &Tensor<T>, &Tensor<T>) -> Tensor<T> + Send + Sync + 'static,
{
    fn name(&self) -> &'static str {
        self.name
    }

    fn backward(&self, inputs: &[Tensor<T>], y: &Tensor<T>, gy: &Tensor<T>) -> Vec<Option<Tensor<T>>> {
        let gx = if is_grad_enabled() {
            (self.vjp)(&inputs[0], y, gy)
        } else {
            match fused_at(self.reads, &self.df, inputs, y) {
                Err(d) => Tensor::from(kernel::map(&gy.value(), |g| g * d)),
                Ok(at) => Tensor::from(kernel::zip2(&gy.value(), &at.value(), |g, v| g * (self.df)(v))),
            }
        };
        vec![Some(gx)]
    }

    /// Saves an allocation the size of the output: in a CNN the ReLUs' gradients are
    /// written over the cotangents that max pooling scattered.
    fn backward_owned(&self, inputs: &[Tensor<T>], y: &Tensor<T>, mut gy: Tensor<T>) -> Vec<Option<Tensor<T>>> {
        if is_grad_enabled() {
            return self.backward(inputs, y, &gy);
        }
        let at = fused_at(self.reads, &self.df, inputs, y);
        let Some(g) = gy.unique_leaf_value() else { return self.backward(inputs, y, &gy) };
        match at {
            Err(d) => g.mapv_inplace(|v| v * d),
            Ok(at) if at.shape() == g.shape() => kernel::zip2_in_place(&mut g.view_mut(), &at.value(), |g, v| g * (self.df)(v)),
            // Never for an elementwise op (x, y and gy share a shape); kept off the zip.
            Ok(_) => return self.backward(inputs, y, &gy),
        }
        vec![Some(gy)]
    }
}

impl<T: Element> Tensor<T> {
    /// The generic elementwise op: forward `f`, fused backward `gy · df(x or y)`, and the
    /// differentiable backward `vjp(x, y, gy)`.
    fn unary(
        &self,
        name: &'static str,
        f: impl Fn(T) -> T + Sync + Send,
        reads: Reads,
        df: impl Fn(T) -> T + Sync + Send + 'static,
        vjp: impl Fn(&Tensor<T>, &Tensor<T>, &Tensor<T>) -> Tensor<T> + Send + Sync + 'static,
    ) -> Tensor<T> {
        let value = kernel::map(&self.value(), f);
        let saves = match reads {
            Reads::Nothing => Saves::NOTHING,
            Reads::Input => Saves::inputs(&[0]),
            Reads::Output => Saves::OUTPUT,
        };
        Tensor::from_op_saving(value.into_shared(), &[self], saves, || Box::new(UnaryRule { name, reads, df, vjp }))
    }

    /// A constant (no gradient) tensor `f(x)` of this tensor's values: masks and signs in
    /// backward rules, whose derivative is zero almost everywhere.
    pub(crate) fn constant_map(&self, f: impl Fn(T) -> T + Sync + Send) -> Tensor<T> {
        Tensor::from(kernel::map(&self.value(), f))
    }

    /// `y = -x`; `dL/dx = -gy`.
    pub fn neg(&self) -> Tensor<T> {
        self.unary("neg", |x| -x, Reads::Nothing, |_| -T::one(), |_, _, gy| gy.neg())
    }

    /// `y = eˣ`; `dL/dx = gy · y`.
    ///
    /// ```
    /// use nabla::prelude::*;
    /// assert_eq!(Tensor::<f64>::scalar(0.0).exp().item()?, 1.0);
    /// # Ok::<(), nabla::Error>(())
    /// ```
    pub fn exp(&self) -> Tensor<T> {
        self.unary("exp", T::exp_v, Reads::Output, |y| y, |_, y, gy| gy * y)
    }

    /// `y = ln x`; `dL/dx = gy / x`. Non-positive inputs give `NaN`/`-inf`, as PyTorch.
    pub fn log(&self) -> Tensor<T> {
        self.unary("log", |x| x.ln(), Reads::Input, |x| x.recip(), |x, _, gy| gy / x)
    }

    /// `y = √x`; `dL/dx = gy / (2y)`.
    pub fn sqrt(&self) -> Tensor<T> {
        self.unary("sqrt", |x| x.sqrt(), Reads::Output, |y| (y + y).recip(), |_, y, gy| gy / &(y * 2.0))
    }

    /// `y = sin x`; `dL/dx = gy · cos x`.
    pub fn sin(&self) -> Tensor<T> {
        self.unary("sin", |x| x.sin(), Reads::Input, |x| x.cos(), |x, _, gy| gy * &x.cos())
    }

    /// `y = cos x`; `dL/dx = -gy · sin x`.
    pub fn cos(&self) -> Tensor<T> {
        self.unary("cos", |x| x.cos(), Reads::Input, |x| -x.sin(), |x, _, gy| (gy * &x.sin()).neg())
    }

    /// `y = |x|`; `dL/dx = gy · sign(x)`, with the subgradient `sign(0) = 0` (PyTorch's).
    pub fn abs(&self) -> Tensor<T> {
        self.unary("abs", |x| x.abs(), Reads::Input, sign, |x, _, gy| gy * &x.constant_map(sign))
    }

    /// `y = xᵖ`; `dL/dx = gy · p · xᵖ⁻¹` (0 for `p = 0`).
    ///
    /// ```
    /// use nabla::prelude::*;
    /// let x = Tensor::<f64>::from_vec(vec![2.0, 3.0], &[2])?;
    /// assert_eq!(x.pow(2.0).to_vec(), vec![4.0, 9.0]);
    /// # Ok::<(), nabla::Error>(())
    /// ```
    pub fn pow(&self, exponent: T) -> Tensor<T> {
        let p = exponent;
        self.unary(
            "pow",
            move |x| x.powf(p),
            Reads::Input,
            move |x| if p == T::zero() { T::zero() } else { p * x.powf(p - T::one()) },
            move |x, _, gy| if p == T::zero() { gy * 0.0 } else { (gy * &x.pow(p - T::one())).mul_scalar(p) },
        )
    }

    /// `y = 1 / x`; `dL/dx = -gy · y²`.
    pub fn recip(&self) -> Tensor<T> {
        self.unary("recip", |x| x.recip(), Reads::Output, |y| -(y * y), |_, y, gy| (gy * &(y * y)).neg())
    }

    /// `y = σ(x) = 1 / (1 + e⁻ˣ)`; `dL/dx = gy · y · (1 - y)`. No overflow for large `|x|`.
    pub fn sigmoid(&self) -> Tensor<T> {
        self.unary("sigmoid", T::sigmoid_v, Reads::Output, |y| y * (T::one() - y), |_, y, gy| gy * &(y * &(-y + 1.0)))
    }

    /// `y = erf x`; `dL/dx = gy · 2/√π · e^{-x²}`, as `torch.erf`.
    pub fn erf(&self) -> Tensor<T> {
        let scale = 2.0 / std::f64::consts::PI.sqrt();
        self.unary(
            "erf",
            T::erf,
            Reads::Input,
            move |x| T::of(scale) * (-(x * x)).exp(),
            move |x, _, gy| gy * &(x * x).neg().exp().mul_scalar(T::of(scale)),
        )
    }

    /// `y = tanh x`; `dL/dx = gy · (1 - y²)`.
    pub fn tanh(&self) -> Tensor<T> {
        self.unary("tanh", T::tanh_v, Reads::Output, |y| T::one() - y * y, |_, y, gy| gy * &(-(y * y) + 1.0))
    }

    /// `y = max(0, x)`; `dL/dx = gy · 1[x > 0]` (the subgradient at 0 is 0, as PyTorch).
    /// `NaN` stays `NaN` and passes the gradient, as PyTorch's `0 if y <= 0 else gy`.
    pub fn relu(&self) -> Tensor<T> {
        self.unary(
            "relu",
            relu_scalar,
            // y > 0 exactly where x > 0, so the mask is read off the output, which the
            // graph keeps anyway when a pooling or a layer reads it next: the input (a
            // convolution's or a linear layer's result) is then freed after the forward.
            Reads::Output,
            step,
            |_, y, gy| gy * &y.constant_map(step),
        )
    }

    /// `y = x` for `x > 0`, `negative_slope · x` otherwise; `dL/dx = gy` or
    /// `gy · negative_slope` (the slope side at 0).
    pub fn leaky_relu(&self, negative_slope: T) -> Tensor<T> {
        let slope = move |x: T| if x > T::zero() { T::one() } else { negative_slope };
        self.unary(
            "leaky_relu",
            move |x| if x > T::zero() { x } else { x * negative_slope },
            Reads::Input,
            slope,
            move |x, _, gy| gy * &x.constant_map(slope),
        )
    }

    /// `y = ln(1 + e^{βx}) / β`, and `y = x` where `βx > threshold` (PyTorch's softplus);
    /// `dL/dx = gy · σ(βx)` (and `gy` above the threshold).
    pub fn softplus(&self, beta: T, threshold: T) -> Tensor<T> {
        let linear = move |x: T| x * beta > threshold;
        self.unary(
            "softplus",
            move |x| if linear(x) { x } else { (x * beta).exp().ln_1p() / beta },
            Reads::Input,
            move |x| if linear(x) { T::one() } else { (x * beta).sigmoid_v() },
            move |x, _, gy| {
                let above = x.constant_map(|v| if linear(v) { T::one() } else { T::zero() });
                let slope = &(&x.mul_scalar(beta).sigmoid() * &(-&above + 1.0)) + &above;
                gy * &slope
            },
        )
    }

    /// `y = min(max(x, min), max)`; `dL/dx = gy · 1[min ≤ x ≤ max]` (PyTorch passes the
    /// gradient at the bounds). `NaN` stays `NaN` with gradient 0; with `min > max` every
    /// element is `max` with gradient 0, as in PyTorch.
    pub fn clamp(&self, min: T, max: T) -> Tensor<T> {
        let inside = move |x: T| if x >= min && x <= max { T::one() } else { T::zero() };
        self.unary(
            "clamp",
            // min(max(x, min), max), as PyTorch: every element is `max` when `min > max`;
            // a NaN stays NaN.
            move |x| {
                let above = if x < min { min } else { x };
                if above > max { max } else { above }
            },
            Reads::Input,
            inside,
            move |x, _, gy| gy * &x.constant_map(inside),
        )
    }

    /// `y = x + c`; `dL/dx = gy`.
    pub fn add_scalar(&self, c: T) -> Tensor<T> {
        self.unary("add_scalar", move |x| x + c, Reads::Nothing, |_| T::one(), |_, _, gy| gy.clone())
    }

    /// `y = c · x`; `dL/dx = c · gy`.
    pub fn mul_scalar(&self, c: T) -> Tensor<T> {
        self.unary("mul_scalar", move |x| x * c, Reads::Nothing, move |_| c, move |_, _, gy| gy.mul_scalar(c))
    }

    /// `y = x / c`; `dL/dx = gy / c`.
    pub fn div_scalar(&self, c: T) -> Tensor<T> {
        self.unary("div_scalar", move |x| x / c, Reads::Nothing, move |_| c.recip(), move |_, _, gy| gy.div_scalar(c))
    }

    /// Dropout in evaluation mode: the identity, `dL/dx = gy`.
    pub fn dropout_eval(&self) -> Tensor<T> {
        self.unary("dropout_eval", |x| x, Reads::Nothing, |_| T::one(), |_, _, gy| gy.clone())
    }
}

/// `1[x > 0]`.
pub(super) fn step<T: Element>(x: T) -> T {
    // Written as PyTorch's threshold_backward (`y <= 0 ? 0 : g`): a NaN passes the gradient.
    if x <= T::zero() { T::zero() } else { T::one() }
}

/// `max(0, x)`, keeping a NaN, as PyTorch's relu.
pub(super) fn relu_scalar<T: Element>(x: T) -> T {
    if x > T::zero() || x.is_nan() { x } else { T::zero() }
}

/// `sign(x)` with `sign(0) = 0`.
pub(super) fn sign<T: Element>(x: T) -> T {
    if x > T::zero() {
        T::one()
    } else if x < T::zero() {
        -T::one()
    } else {
        T::zero()
    }
}

/// This family's entries in the [op registry](super::registry()).
pub(crate) const OPS: &[OpInfo] = &[
    OpInfo::new("neg", || vec![randn(&[3, 4], 1)], |v| Ok(v[0].neg())),
    OpInfo::new("exp", || vec![randn(&[3, 4], 1)], |v| Ok(v[0].exp())),
    OpInfo::new("log", || vec![positive(&[3, 4], 2)], |v| Ok(v[0].log())),
    OpInfo::new("sqrt", || vec![positive(&[3, 4], 2)], |v| Ok(v[0].sqrt())),
    OpInfo::new("sin", || vec![randn(&[3, 4], 1)], |v| Ok(v[0].sin())),
    OpInfo::new("cos", || vec![randn(&[3, 4], 1)], |v| Ok(v[0].cos())),
    OpInfo::new("abs", || vec![spread(&[3, 4], 3)], |v| Ok(v[0].abs())),
    OpInfo::new("pow", || vec![positive(&[3, 4], 2)], |v| Ok(v[0].pow(2.5))),
    OpInfo::new("recip", || vec![positive(&[3, 4], 2)], |v| Ok(v[0].recip())),
    OpInfo::new("sigmoid", || vec![randn(&[3, 4], 1)], |v| Ok(v[0].sigmoid())),
    OpInfo::new("tanh", || vec![randn(&[3, 4], 1)], |v| Ok(v[0].tanh())),
    OpInfo::new("erf", || vec![randn(&[3, 4], 1)], |v| Ok(v[0].erf())),
    OpInfo::new("relu", || vec![spread(&[3, 4], 3)], |v| Ok(v[0].relu())),
    OpInfo::new("leaky_relu", || vec![spread(&[3, 4], 3)], |v| Ok(v[0].leaky_relu(0.1))),
    OpInfo::new("softplus", || vec![randn(&[3, 4], 1)], |v| Ok(v[0].softplus(2.0, 20.0))),
    OpInfo::new("clamp", || vec![spread(&[3, 4], 3)], |v| Ok(v[0].clamp(-0.5, 0.6))),
    OpInfo::new("add_scalar", || vec![randn(&[3, 4], 1)], |v| Ok(v[0].add_scalar(1.5))),
    OpInfo::new("mul_scalar", || vec![randn(&[3, 4], 1)], |v| Ok(v[0].mul_scalar(1.5))),
    OpInfo::new("div_scalar", || vec![randn(&[3, 4], 1)], |v| Ok(v[0].div_scalar(1.5))),
    OpInfo::new("dropout_eval", || vec![randn(&[3, 4], 1)], |v| Ok(v[0].dropout_eval())),
];
