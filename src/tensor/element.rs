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
}

impl Element for f32 {
    const DTYPE: &'static str = "f32";
    fn of(x: f64) -> Self {
        x as f32
    }
}

impl Element for f64 {
    const DTYPE: &'static str = "f64";
    fn of(x: f64) -> Self {
        x
    }
}
