//! Graph nodes. A tensor's node is its value (or, for an input the consuming op's rule
//! does not read, only its shape) and a shared [`Core`]: the id and, for an op's result,
//! the rule and the inputs.
//!
//! Splitting the two is what lets a recorded graph keep exactly the values backward reads,
//! as PyTorch's saved tensors do: an op whose rule reads neither an input nor that input's
//! own output (a convolution's result feeding a ReLU, which reads its output) records a
//! *shadow* of it — the same core without the value — so the value is freed as soon as the
//! caller drops the tensor. In a CNN those are the convolutions' outputs, most of the
//! forward pass's memory.

use super::OpRule;
use crate::tensor::{Element, Tensor};
use ndarray::{ArcArray, IxDyn};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

static NEXT_ID: AtomicUsize = AtomicUsize::new(0);

/// A fresh id, larger than every id handed out before: a node is always newer than its
/// inputs, so sorting ids in decreasing order is a topological order of the graph.
pub(crate) fn next_id() -> usize {
    NEXT_ID.fetch_add(1, Ordering::Relaxed)
}

pub(crate) struct Node<T: Element> {
    pub(crate) value: Held<T>,
    pub(crate) core: Arc<Core<T>>,
}

/// What a node holds of its tensor's value.
pub(crate) enum Held<T: Element> {
    /// The value, counted in [`memory::live_bytes`](super::memory::live_bytes) until
    /// dropped, its buffer then recycled.
    Value(Value<T>),
    /// Only the shape: a shadow, recorded as the input of an op that does not read it
    /// (`IxDyn` keeps up to four dims without allocating).
    Shape(IxDyn),
}

/// A tensor's array; dropping it updates the memory count and hands a large buffer it owned
/// alone to the pool.
pub(crate) struct Value<T: Element>(pub(crate) ArcArray<T, IxDyn>);

impl<T: Element> Drop for Value<T> {
    fn drop(&mut self) {
        super::memory::freed(self.0.len() * std::mem::size_of::<T>());
        // Only a buffer the pool keeps is swapped out, for a placeholder that allocates:
        // the many small values of a small model's step go straight back to the allocator.
        if crate::array::pool::wants(&self.0) {
            crate::array::pool::recycle(std::mem::replace(&mut self.0, ArcArray::from_elem(IxDyn(&[]), T::zero())));
        }
    }
}

/// What a tensor and its shadows share: the id, whether it requires grad, and how it was made.
pub(crate) struct Core<T: Element> {
    pub(crate) id: usize,
    pub(crate) requires_grad: bool,
    pub(crate) grad_fn: Option<GradFn<T>>,
}

impl<T: Element> Node<T> {
    /// A node with a fresh id, counted in [`memory::live_bytes`](super::memory::live_bytes)
    /// until dropped.
    pub(crate) fn new(value: ArcArray<T, IxDyn>, requires_grad: bool, grad_fn: Option<GradFn<T>>) -> Self {
        super::memory::allocated(value.len() * std::mem::size_of::<T>());
        Node { value: Held::Value(Value(value)), core: Arc::new(Core { id: next_id(), requires_grad, grad_fn }) }
    }
}

pub(crate) struct GradFn<T: Element> {
    pub(crate) rule: Box<dyn OpRule<T>>,
    pub(crate) inputs: Vec<Tensor<T>>,
    /// Whether the rule reads its output's value: if so, consumers of the output keep it.
    pub(crate) reads_output: bool,
    /// Where the op was called, recorded in anomaly mode only.
    pub(crate) origin: Option<Box<std::backtrace::Backtrace>>,
}

impl<T: Element> Drop for Core<T> {
    /// Drops the chain of inputs with a loop, not recursion: the default drop of a
    /// 100,000-op chain would overflow the stack. Also drops the hooks of the tensor, now
    /// that neither it nor a shadow of it is left.
    fn drop(&mut self) {
        super::hooks::forget(self.id);
        let Some(grad_fn) = self.grad_fn.take() else { return };
        let mut pending = grad_fn.inputs;
        while let Some(tensor) = pending.pop() {
            let Some(node) = Arc::into_inner(tensor.node) else { continue };
            let Node { value, core } = node;
            drop(value);
            if let Some(mut core) = Arc::into_inner(core)
                && let Some(inner) = core.grad_fn.take()
            {
                pending.extend(inner.inputs);
            }
        }
    }
}

/// A node of a recorded graph as backward sees it — what [`Tensor::inputs`] returns. It
/// has the tensor's id, shape and op; its value only when the graph kept it, that is when
/// the op that read it needs it for backward (PyTorch's saved tensors), or when it is the
/// tensor itself.
///
/// ```
/// use nabla::prelude::*;
/// let x = Tensor::ones(&[2, 3]).requires_grad_(true)?;
/// let y = x.exp().mul_scalar(2.0).sum();
/// let scaled = &y.inputs()[0];
/// assert_eq!((scaled.op_name(), scaled.shape()), (Some("mul_scalar"), &[2, 3][..]));
/// assert!(scaled.tensor().is_none());       // sum's rule reads no value
/// let exp = &scaled.inputs()[0];
/// assert!(exp.tensor().is_some());          // exp's rule reads its output: kept
/// assert!(exp.inputs()[0].is_leaf() && exp.inputs()[0].tensor().is_none()); // not x
/// # Ok::<(), nabla::Error>(())
/// ```
pub struct GraphNode<T: Element = f32>(pub(crate) Tensor<T>);

impl<T: Element> GraphNode<T> {
    /// The id of the tensor (the key of its gradient in [`Gradients`](super::Gradients)).
    pub fn id(&self) -> usize {
        self.0.id()
    }
    /// The tensor's shape.
    pub fn shape(&self) -> &[usize] {
        self.0.shape()
    }
    /// Whether gradients flow to the tensor.
    pub fn requires_grad(&self) -> bool {
        self.0.requires_grad()
    }
    /// True for a tensor no recorded op made.
    pub fn is_leaf(&self) -> bool {
        self.0.is_leaf()
    }
    /// The name of the op that made the tensor, if any.
    pub fn op_name(&self) -> Option<&'static str> {
        self.0.op_name()
    }
    /// The inputs of the op that made the tensor, in order (empty for a leaf).
    pub fn inputs(&self) -> Vec<GraphNode<T>> {
        self.0.inputs()
    }
    /// The tensor itself, when the graph kept its value; `None` for an input no rule reads.
    pub fn tensor(&self) -> Option<&Tensor<T>> {
        matches!(self.0.node.value, Held::Value(_)).then_some(&self.0)
    }
}

impl<T: Element> From<&Tensor<T>> for GraphNode<T> {
    /// The node of a tensor, to walk the graph behind it from there.
    fn from(tensor: &Tensor<T>) -> Self {
        GraphNode(tensor.clone())
    }
}
