//! [`Tensor`]: a cheap-to-clone handle to an immutable node of the computational graph.

mod creation;
mod display;

pub use crate::array::Element;
pub use creation::Creation;

use crate::autograd::GraphNode;
use crate::autograd::graph::{Held, Node};
use crate::error::{Error, Result};
use ndarray::{ArcArray, ArrayD, ArrayViewD, IxDyn};
use std::sync::Arc;

/// An n-dimensional array of `T` that remembers how it was computed.
///
/// A `Tensor` is an `Arc` handle: cloning it is cheap and shares the node. The value is never
/// mutated once the tensor exists, so a graph that holds it can always be differentiated.
/// A tensor made by an op from inputs that require grad records the op and its inputs; a
/// tensor made any other way is a *leaf*.
///
/// `T` defaults to `f32`, the fast type; use `Tensor<f64>` (or a turbofish) for gradient
/// checks.
///
/// ```
/// use nabla::prelude::*;
/// let x = Tensor::from_vec(vec![1.0, 2.0, 3.0], &[3])?.requires_grad_(true)?;
/// let y = (&x * &x).sum();                   // y = Σ x²
/// let grads = y.backward()?;
/// assert_eq!(grads.get(&x).unwrap().to_vec(), vec![2.0, 4.0, 6.0]); // dy/dx = 2x
/// # Ok::<(), nabla::Error>(())
/// ```
pub struct Tensor<T: Element = f32> {
    pub(crate) node: Arc<Node<T>>,
}

impl<T: Element> Clone for Tensor<T> {
    fn clone(&self) -> Self {
        Tensor { node: Arc::clone(&self.node) }
    }
}

impl<T: Element> Tensor<T> {
    /// A leaf that does not require grad, owning `value`.
    pub(crate) fn leaf(value: ArcArray<T, IxDyn>, requires_grad: bool) -> Self {
        Tensor { node: Arc::new(Node::new(value, requires_grad, None)) }
    }

    /// Applies `f` to the value of this leaf: in place when this handle is the only one to
    /// the node and the array is not shared, otherwise on a copy that becomes a new leaf
    /// (so graphs holding the old value keep it).
    pub(crate) fn update_leaf(&mut self, f: impl FnOnce(&mut ndarray::ArrayViewMutD<'_, T>)) {
        if let Some(value) = self.unique_leaf_value() {
            f(&mut value.view_mut());
            return;
        }
        // A copy in a buffer from the pool: a fresh one costs a page fault per 4 KiB (an
        // optimizer step copies each parameter a live graph still holds).
        let mut buffer = crate::array::pool::take::<T>(self.len());
        match self.array().as_slice() {
            Some(elements) => buffer.extend_from_slice(elements),
            None => buffer.extend(self.array().iter().copied()),
        }
        let mut value = ArrayD::from_shape_vec(IxDyn(self.shape()), buffer).expect("len elements");
        f(&mut value.view_mut());
        *self = Tensor::leaf(value.into_shared(), self.requires_grad());
    }

    /// Sets the value of this leaf to `f(value, other)` elementwise (`other` of its shape):
    /// as [`Tensor::update_leaf`], with the copy and the update one pass, both vectorised and
    /// split across threads when large (an optimizer's step on a parameter that a live
    /// graph still holds).
    pub(crate) fn update_leaf_with(&mut self, other: &ArrayViewD<'_, T>, f: impl Fn(T, T) -> T + Sync + Send) {
        if let Some(value) = self.unique_leaf_value() {
            crate::array::kernel::zip2_in_place(&mut value.view_mut(), other, f);
            return;
        }
        let value = crate::array::kernel::zip2(&self.array().view(), other, f);
        *self = Tensor::leaf(value.into_shared(), self.requires_grad());
    }

    /// The value, writable, if this handle is a leaf that alone holds it (a cotangent in a
    /// first-order sweep, a parameter no graph reads).
    pub(crate) fn unique_leaf_value(&mut self) -> Option<&mut ArcArray<T, IxDyn>> {
        let node = Arc::get_mut(&mut self.node)?;
        match (&node.core.grad_fn, &mut node.value) {
            (None, Held::Value(value)) if value.0.is_unique() => Some(&mut value.0),
            _ => None,
        }
    }

    /// The unique id of this node. Ids only grow: a tensor is always newer than its inputs.
    pub fn id(&self) -> usize {
        self.node.core.id
    }

    /// The dimensions, outermost first.
    pub fn shape(&self) -> &[usize] {
        match &self.node.value {
            Held::Value(v) => v.0.shape(),
            Held::Shape(shape) => ndarray::Dimension::slice(shape),
        }
    }

    /// The number of dimensions (0 for a scalar).
    pub fn ndim(&self) -> usize {
        self.shape().len()
    }

    /// The number of elements (1 for a scalar); the same as [`Tensor::numel`].
    pub fn len(&self) -> usize {
        self.shape().iter().product()
    }

    /// The number of elements, as PyTorch's `numel()`.
    pub fn numel(&self) -> usize {
        self.len()
    }

    /// True when the tensor has no elements (some dimension is 0).
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Whether gradients flow to this tensor.
    pub fn requires_grad(&self) -> bool {
        self.node.core.requires_grad
    }

    /// True for a tensor no recorded op made.
    pub fn is_leaf(&self) -> bool {
        self.node.core.grad_fn.is_none()
    }

    /// A leaf sharing this tensor's value with `requires_grad` set to `flag`, as PyTorch's
    /// `requires_grad_()`. Only a leaf's flag can change: on a tensor an op recorded (which
    /// requires grad), `true` changes nothing and `false` is an `Err` naming the op, as
    /// PyTorch raises; [`Tensor::detach`] gives its value without gradients.
    ///
    /// ```
    /// use nabla::prelude::*;
    /// let x = Tensor::from_vec(vec![1.0, 2.0], &[2])?.requires_grad_(true)?;
    /// let y = (&x * 2.0).requires_grad_(true)?;          // still in the graph
    /// assert!(!y.is_leaf());
    /// assert_eq!((&x * 2.0).requires_grad_(false).unwrap_err().to_string(),
    ///            "requires_grad_: only a leaf's flag can change; this tensor was made by mul_scalar (detach() gives its value without gradients)");
    /// # Ok::<(), nabla::Error>(())
    /// ```
    pub fn requires_grad_(self, flag: bool) -> Result<Self> {
        match self.node.core.grad_fn.as_ref() {
            None => Ok(self.with_requires_grad(flag)),
            Some(_) if flag => Ok(self),
            Some(grad_fn) => Err(crate::Error::invalid(
                "requires_grad_",
                format!(
                    "only a leaf's flag can change; this tensor was made by {} (detach() gives its value without gradients)",
                    grad_fn.rule.name()
                ),
            )),
        }
    }

    /// [`Tensor::requires_grad_`] for a tensor the caller knows is a leaf (a fresh value, a
    /// `detach()`); on a non-leaf it detaches.
    pub(crate) fn with_requires_grad(self, flag: bool) -> Self {
        if self.is_leaf() && self.requires_grad() == flag {
            return self;
        }
        Tensor::leaf(self.array().clone(), flag)
    }

    /// The same value as a new leaf that does not require grad: gradients stop here.
    pub fn detach(&self) -> Self {
        Tensor::leaf(self.array().clone(), false)
    }

    /// The value as an ndarray view (no copy).
    pub fn value(&self) -> ArrayViewD<'_, T> {
        self.array().view()
    }

    /// The shared array itself (cheap to clone).
    ///
    /// # Panics
    /// On a shadow: a rule that reads a value it did not declare in its
    /// [`Saves`] is a bug of the crate. Shadows never leave the crate.
    pub(crate) fn array(&self) -> &ArcArray<T, IxDyn> {
        match &self.node.value {
            Held::Value(v) => &v.0,
            Held::Shape(_) => panic!("internal: the value of tensor {} was not kept for backward", self.id()),
        }
    }

    /// This tensor as the input of an op that does not read its value: a shadow (the same
    /// core, only the shape), unless the op that made it reads its own output, which must
    /// then stay.
    pub(crate) fn shadow(&self) -> Tensor<T> {
        match (&self.node.value, &self.node.core.grad_fn) {
            (Held::Shape(_), _) => self.clone(),
            (_, Some(g)) if g.reads_output => self.clone(),
            _ => Tensor { node: Arc::new(Node { value: Held::Shape(IxDyn(self.shape())), core: Arc::clone(&self.node.core) }) },
        }
    }

    /// The value as an owned ndarray (a copy).
    pub fn to_ndarray(&self) -> ArrayD<T> {
        self.array().to_owned()
    }

    /// The elements in row-major (logical) order.
    pub fn to_vec(&self) -> Vec<T> {
        self.array().iter().copied().collect()
    }

    /// The only element of a one-element tensor.
    ///
    /// ```
    /// use nabla::prelude::*;
    /// assert_eq!(Tensor::full(&[], 2.5).item()?, 2.5);
    /// assert!(Tensor::zeros(&[2]).item().is_err());
    /// # Ok::<(), nabla::Error>(())
    /// ```
    pub fn item(&self) -> Result<T> {
        if self.len() != 1 {
            return Err(Error::shape("item", format!("a tensor of shape {:?} has {} elements, not 1", self.shape(), self.len())));
        }
        Ok(*self.array().iter().next().expect("one element"))
    }

    /// The same values in another element type (`f32` ↔ `f64`), as a new leaf with the same
    /// `requires_grad`. Gradients do not flow across a cast.
    pub fn cast<U: Element>(&self) -> Tensor<U> {
        let value = self.array().mapv(|x| U::of(x.to_f64().expect("float to f64")));
        Tensor::leaf(value.into_shared(), self.requires_grad())
    }

    /// The name of the op that made this tensor, if any (`"matmul"`, `"exp"`).
    pub fn op_name(&self) -> Option<&'static str> {
        self.node.core.grad_fn.as_ref().map(|g| g.rule.name())
    }

    /// The inputs of the op that made this one, in order (empty for a leaf), as graph nodes:
    /// their values only where backward needs them (see [`GraphNode`]).
    pub fn inputs(&self) -> Vec<GraphNode<T>> {
        self.graph_inputs().iter().cloned().map(GraphNode).collect()
    }

    /// The inputs as the graph recorded them, shadows included.
    pub(crate) fn graph_inputs(&self) -> &[Tensor<T>] {
        self.node.core.grad_fn.as_ref().map(|g| g.inputs.as_slice()).unwrap_or(&[])
    }
}

/// Which values an op's backward rule reads: each input's (by position) and its output's.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Saves {
    /// Bit `i`: the rule reads input `i`.
    inputs: u64,
    pub(crate) output: bool,
}

impl Saves {
    /// Every input and the output: the safe default.
    pub(crate) const ALL: Saves = Saves { inputs: u64::MAX, output: true };
    /// Nothing: the rule reads only shapes (add, reshape, sum).
    pub(crate) const NOTHING: Saves = Saves { inputs: 0, output: false };

    /// The inputs at these positions, not the output.
    pub(crate) const fn inputs(positions: &[usize]) -> Saves {
        let (mut bits, mut i) = (0, 0);
        while i < positions.len() {
            bits |= 1 << positions[i];
            i += 1;
        }
        Saves { inputs: bits, output: false }
    }

    /// The output only.
    pub(crate) const OUTPUT: Saves = Saves { inputs: 0, output: true };

    pub(crate) fn reads_input(self, i: usize) -> bool {
        i >= 64 || self.inputs & (1 << i) != 0
    }
}

impl<T: Element> From<ArrayD<T>> for Tensor<T> {
    fn from(value: ArrayD<T>) -> Self {
        Tensor::leaf(value.into_shared(), false)
    }
}
