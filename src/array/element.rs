//! The scalar types a tensor can hold.

use ndarray::{LinalgScalar, ScalarOperand};
use num_traits::{Float, FromPrimitive};
use std::fmt::{Debug, Display};
use std::iter::Sum;

/// A floating-point scalar a [`Tensor`](crate::Tensor) can hold: `f32` (the fast default)
/// or `f64` (for gradient checks exact enough to mean something).
///
/// ```
/// use nabla::Element;
/// assert_eq!(<f64 as Element>::DTYPE, "f64");
/// assert_eq!(f32::of(0.5), 0.5f32);
/// ```
pub trait Element: Float + FromPrimitive + ScalarOperand + LinalgScalar + Debug + Display + Default + Sum + Send + Sync + 'static {
    /// The type's name as PyTorch's dtype says it (`f32`, `f64`).
    const DTYPE: &'static str;

    /// Converts an `f64` constant to this type (rounding for `f32`).
    fn of(x: f64) -> Self;

    /// `eˣ` in a form loops vectorise (for `f32`; `f64` uses the standard library).
    fn exp_v(self) -> Self;
    /// `tanh x`, vectorisable like [`Element::exp_v`].
    fn tanh_v(self) -> Self;
    /// `σ(x) = 1 / (1 + e⁻ˣ)`, vectorisable like [`Element::exp_v`], without overflow.
    fn sigmoid_v(self) -> Self;
    /// The error function `erf x = 2/√π ∫₀ˣ e^{-t²} dt` (`libm`'s, as C's `erf`/`erff`).
    fn erf(self) -> Self;
}

impl Element for f32 {
    const DTYPE: &'static str = "f32";
    fn of(x: f64) -> Self {
        x as f32
    }
    #[inline(always)]
    fn exp_v(self) -> Self {
        crate::array::vmath::exp(self)
    }
    #[inline(always)]
    fn tanh_v(self) -> Self {
        crate::array::vmath::tanh(self)
    }
    #[inline(always)]
    fn sigmoid_v(self) -> Self {
        crate::array::vmath::sigmoid(self)
    }
    fn erf(self) -> Self {
        libm::erff(self)
    }
}

/// `f64` is the type of gradient checks: it keeps the standard library's correctly
/// rounded functions rather than trade digits for speed.
impl Element for f64 {
    const DTYPE: &'static str = "f64";
    fn of(x: f64) -> Self {
        x
    }
    fn exp_v(self) -> Self {
        self.exp()
    }
    fn tanh_v(self) -> Self {
        self.tanh()
    }
    fn sigmoid_v(self) -> Self {
        if self >= 0.0 {
            1.0 / (1.0 + (-self).exp())
        } else {
            let e = self.exp();
            e / (1.0 + e)
        }
    }
    fn erf(self) -> Self {
        libm::erf(self)
    }
}
