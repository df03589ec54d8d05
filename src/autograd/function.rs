//! The backward rule of an op: a vector-Jacobian product written with tensor ops.

use crate::tensor::{Element, Tensor};

/// The backward rule of an op: given the op's inputs, its output and the cotangent
/// `gy = dL/dy`, return `dL/dx_i` for each input (in the output's broadcast shape is fine:
/// the engine sums a gradient back to its input's shape and accumulates it).
///
/// Written with tensor ops, one rule serves first-order backward (run with recording off,
/// costing array work only) and higher-order gradients (run with recording on when
/// `create_graph` asks). A rule that uses something no tensor op can differentiate returns
/// `false` from [`Backward::is_differentiable`]: double backward through it is then an
/// error, never a wrong number.
pub trait Backward<T: Element>: Send + Sync + 'static {
    /// The op's name, as its method is called (`"matmul"`).
    fn name(&self) -> &'static str;
    /// `dL/dx_i` for each input, `None` where an input gets no gradient.
    fn backward(&self, inputs: &[Tensor<T>], output: &Tensor<T>, gy: &Tensor<T>) -> Vec<Option<Tensor<T>>>;
    /// Whether the rule is itself differentiable (true when written with tensor ops).
    fn is_differentiable(&self) -> bool {
        true
    }
}

/// A rule from a closure `(inputs, output, gy) -> gradients`; see [`rule`].
pub struct Rule<F> {
    name: &'static str,
    vjp: F,
    first_order: bool,
}

impl<F> Rule<F> {
    /// Says that the closure cannot be differentiated again (it works on raw arrays, or
    /// calls something no tensor op can differentiate): a backward pass with
    /// `create_graph` through the op is then an `Err` naming it, never a silent zero.
    /// First-order gradients are unaffected, and [`gradcheck`](super::gradcheck()) still
    /// checks them.
    pub fn first_order(mut self) -> Self {
        self.first_order = true;
        self
    }
}

/// Makes a [`Backward`] rule from a name and a closure, for [`Tensor::from_op`].
///
/// Written with tensor ops, the closure is differentiable to any order. A closure that
/// works on raw arrays is first-order only: mark it with [`Rule::first_order`]. Unmarked,
/// it is caught when a backward pass with `create_graph` finds a gradient it returned cut
/// off from the cotangent it was given (a vector-Jacobian product is linear in the
/// cotangent, so only a zero one may be): an `Err` naming the op, not a silent zero
/// second derivative.
///
/// Scalars read the same in a rule generic over `T` as in `f32` or `f64` code: the
/// operators take an `f64` and convert it (`&x + 1.0`, `gy * &(x * 2.0)`, `1.0 - &y`); a
/// scalar held in the element type goes through `x.mul_scalar(c)`.
///
/// ```
/// use nabla::prelude::*;
/// use nabla::autograd::{GradcheckOptions, gradcheck, rule};
///
/// /// y = x² + 1, for any element type.
/// fn square_plus_one<T: Element>(x: &Tensor<T>) -> Tensor<T> {
///     let value = x.value().mapv(|v| v * v + T::one());
///     Tensor::from_op(value, &[x], rule("square_plus_one", |inputs, _y, gy| {
///         vec![Some(gy * &(&inputs[0] * 2.0))]
///     }))
/// }
///
/// let x = Tensor::<f64>::randn(&[3], &mut nabla::rng(0));
/// gradcheck(|v| Ok(square_plus_one(&v[0])), &[x], &GradcheckOptions::default())?;
/// let y = square_plus_one(&Tensor::from_vec(vec![2.0], &[1])?);    // f32
/// assert_eq!(y.to_vec(), vec![5.0]);
/// # Ok::<(), nabla::Error>(())
/// ```
pub fn rule<T, F>(name: &'static str, vjp: F) -> Rule<F>
where
    T: Element,
    F: Fn(&[Tensor<T>], &Tensor<T>, &Tensor<T>) -> Vec<Option<Tensor<T>>> + Send + Sync + 'static,
{
    Rule { name, vjp, first_order: false }
}

impl<T, F> Backward<T> for Rule<F>
where
    T: Element,
    F: Fn(&[Tensor<T>], &Tensor<T>, &Tensor<T>) -> Vec<Option<Tensor<T>>> + Send + Sync + 'static,
{
    fn name(&self) -> &'static str {
        self.name
    }
    fn backward(&self, inputs: &[Tensor<T>], output: &Tensor<T>, gy: &Tensor<T>) -> Vec<Option<Tensor<T>>> {
        (self.vjp)(inputs, output, gy)
    }
    fn is_differentiable(&self) -> bool {
        !self.first_order
    }
}

/// A recorded op's rule as the engine runs it: [`Backward`]'s methods plus two that only
/// the crate's own ops implement, kept out of the public trait. A user's [`Backward`] is
/// one through [`Public`], with their defaults.
pub(crate) trait OpRule<T: Element>: Send + Sync + 'static {
    /// As [`Backward::name`].
    fn name(&self) -> &'static str;
    /// As [`Backward::backward`].
    fn backward(&self, inputs: &[Tensor<T>], output: &Tensor<T>, gy: &Tensor<T>) -> Vec<Option<Tensor<T>>>;
    /// [`OpRule::backward`] given the cotangent to keep, which the engine calls: a rule may
    /// write its result into `gy`'s buffer when nothing else holds it (an elementwise rule's
    /// `gy · f'`), saving an output-sized allocation. The default borrows it.
    fn backward_owned(&self, inputs: &[Tensor<T>], output: &Tensor<T>, gy: Tensor<T>) -> Vec<Option<Tensor<T>>> {
        self.backward(inputs, output, &gy)
    }
    /// As [`Backward::is_differentiable`].
    fn is_differentiable(&self) -> bool {
        true
    }
    /// `Some((axis, start))` when the op's output is the slice of its one input starting at
    /// `start` along `axis` (as `narrow`'s is). A first-order sweep then adds the cotangent
    /// into that slice of the input's gradient instead of running the rule, which would pad
    /// it with zeros to the input's full shape: reading `T` slices of a `T`-step sequence
    /// stays `O(T)`, not `O(T²)`.
    fn reads_slice(&self) -> Option<(usize, usize)> {
        None
    }
}

/// A user's [`Backward`] as an [`OpRule`], with the defaults of the two crate-only methods.
pub(crate) struct Public<B>(pub(crate) B);

impl<T: Element, B: Backward<T>> OpRule<T> for Public<B> {
    fn name(&self) -> &'static str {
        self.0.name()
    }
    fn backward(&self, inputs: &[Tensor<T>], output: &Tensor<T>, gy: &Tensor<T>) -> Vec<Option<Tensor<T>>> {
        self.0.backward(inputs, output, gy)
    }
    fn is_differentiable(&self) -> bool {
        self.0.is_differentiable()
    }
}

/// The crate's own ops record closure rules directly, with the defaults above.
impl<T: Element, F> OpRule<T> for Rule<F>
where
    Rule<F>: Backward<T>,
{
    fn name(&self) -> &'static str {
        Backward::name(self)
    }
    fn backward(&self, inputs: &[Tensor<T>], output: &Tensor<T>, gy: &Tensor<T>) -> Vec<Option<Tensor<T>>> {
        Backward::backward(self, inputs, output, gy)
    }
    fn is_differentiable(&self) -> bool {
        Backward::is_differentiable(self)
    }
}
