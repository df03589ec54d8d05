//! Graph nodes: a value, an id, and — for an op's result — the rule and the inputs.

use super::Backward;
use crate::tensor::{Element, Tensor};
use ndarray::{ArcArray, IxDyn};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

static NEXT_ID: AtomicUsize = AtomicUsize::new(0);

/// A fresh id, larger than every id handed out before: a node is always newer than its
/// inputs, so sorting ids in decreasing order is a topological order of the graph.
pub(crate) fn next_id() -> usize {
    NEXT_ID.fetch_add(1, Ordering::Relaxed)
}

pub(crate) struct Node<T: Element> {
    pub(crate) id: usize,
    pub(crate) value: ArcArray<T, IxDyn>,
    pub(crate) requires_grad: bool,
    pub(crate) grad_fn: Option<GradFn<T>>,
}

impl<T: Element> Node<T> {
    /// A node, counted in [`memory::live_bytes`](super::memory::live_bytes) until dropped.
    pub(crate) fn new(value: ArcArray<T, IxDyn>, requires_grad: bool, grad_fn: Option<GradFn<T>>) -> Self {
        super::memory::allocated(value.len() * std::mem::size_of::<T>());
        Node { id: next_id(), value, requires_grad, grad_fn }
    }
}

pub(crate) struct GradFn<T: Element> {
    pub(crate) rule: Box<dyn Backward<T>>,
    pub(crate) inputs: Vec<Tensor<T>>,
    /// Where the op was called, recorded in anomaly mode only.
    pub(crate) origin: Option<Box<std::backtrace::Backtrace>>,
}

impl<T: Element> Drop for Node<T> {
    /// Drops the chain of inputs with a loop, not recursion: the default drop of a
    /// 100,000-op chain would overflow the stack.
    /// Also hands a large buffer this node owned alone to the pool for reuse.
    fn drop(&mut self) {
        super::memory::freed(self.value.len() * std::mem::size_of::<T>());
        super::hooks::forget(self.id);
        crate::tensor::pool::recycle(std::mem::replace(&mut self.value, ArcArray::from_elem(IxDyn(&[]), T::zero())));
        let Some(grad_fn) = self.grad_fn.take() else { return };
        let mut pending = grad_fn.inputs;
        while let Some(tensor) = pending.pop() {
            if let Some(mut node) = Arc::into_inner(tensor.node) {
                if let Some(inner) = node.grad_fn.take() {
                    pending.extend(inner.inputs);
                }
            }
        }
    }
}
