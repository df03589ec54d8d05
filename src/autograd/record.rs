//! The recording seam: where an op's result joins the graph. Grad mode, anomaly mode's
//! forward check and backtrace, checkpointing's capture of a segment's inputs and the
//! choice of which inputs' values the graph keeps are all decided here, once per op; the
//! ops themselves only compute values and name their rules.

use super::function::{Backward, OpRule, Public};
use super::graph::{GradFn, Node};
use crate::tensor::{Element, Saves, Tensor};
use ndarray::{ArcArray, ArrayD, IxDyn};
use std::sync::Arc;

impl<T: Element> Tensor<T> {
    /// The result of an op: records `rule` and `inputs` when grad mode is on and any input
    /// requires grad, otherwise a plain leaf (so inference and first-order backward pay for
    /// no graph).
    pub(crate) fn from_op_arc(value: ArcArray<T, IxDyn>, inputs: &[&Tensor<T>], rule: impl FnOnce() -> Box<dyn OpRule<T>>) -> Self {
        Self::from_op_saving(value, inputs, Saves::ALL, rule)
    }

    /// [`Tensor::from_op_arc`] for a rule that reads only the values `saves` names: the
    /// graph records the other inputs as shadows (see [`graph`](crate::autograd::graph)).
    pub(crate) fn from_op_saving(
        value: ArcArray<T, IxDyn>,
        inputs: &[&Tensor<T>],
        saves: Saves,
        rule: impl FnOnce() -> Box<dyn OpRule<T>>,
    ) -> Self {
        let records = super::is_grad_enabled() && inputs.iter().any(|t| t.requires_grad());
        let anomaly = super::anomaly::enabled();
        let rule = if anomaly {
            let rule = rule();
            super::anomaly::forward(rule.name(), &value, inputs);
            Some(rule)
        } else if records {
            Some(rule())
        } else {
            None
        };
        let Some(rule) = rule.filter(|_| records) else {
            super::checkpoint::note_inputs(inputs);
            return Tensor::leaf(value, false);
        };
        let origin = anomaly.then(|| Box::new(std::backtrace::Backtrace::force_capture()));
        let inputs = inputs.iter().enumerate().map(|(i, t)| if saves.reads_input(i) { (*t).clone() } else { t.shadow() }).collect();
        let grad_fn = GradFn { rule, inputs, reads_output: saves.output, origin };
        Tensor { node: Arc::new(Node::new(value, true, Some(grad_fn))) }
    }

    /// Makes a tensor from an op's forward `value`, its `inputs` and its backward `rule`:
    /// the way to add an op outside the crate (see the [`ops`](crate::ops) module doc).
    ///
    /// The graph records the op only when grad mode is on and some input requires grad.
    ///
    /// ```
    /// use nabla::prelude::*;
    /// use nabla::autograd::rule;
    /// // y = 3x, dL/dx = 3 dL/dy
    /// let x = Tensor::<f64>::from_vec(vec![1.0, 2.0], &[2])?.requires_grad_(true)?;
    /// let y = Tensor::from_op(x.value().mapv(|v| 3.0 * v), &[&x],
    ///     rule("triple", |_inputs, _y, gy| vec![Some(gy * 3.0)]));
    /// let g = y.sum().backward()?;
    /// assert_eq!(g.get(&x).unwrap().to_vec(), vec![3.0, 3.0]);
    /// # Ok::<(), nabla::Error>(())
    /// ```
    pub fn from_op(value: ArrayD<T>, inputs: &[&Tensor<T>], rule: impl Backward<T>) -> Self {
        Self::from_op_arc(value.into_shared(), inputs, || Box::new(Public(rule)))
    }
}
