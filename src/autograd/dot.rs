//! Graph export: the computational graph behind a tensor in Graphviz's DOT language, drawn
//! as the course draws it — variables as nodes (with their shapes), ops as the edges from
//! an op's inputs to its output.

use crate::tensor::{Element, Tensor};
use std::collections::{HashMap, HashSet};
use std::fmt::Write;

impl<T: Element> Tensor<T> {
    /// The graph that computed this tensor, in DOT (render with `dot -Tsvg`). Nodes are
    /// tensors labelled with their shapes: parameters and other leaves that require grad
    /// are filled, constants are grey, this tensor is bold. An edge from `x` to `y` labelled
    /// `op` means `y = op(…, x, …)`.
    ///
    /// ```
    /// use nabla::prelude::*;
    /// let w = Tensor::ones(&[3, 2]).requires_grad_(true)?;
    /// let x = Tensor::ones(&[4, 3]);
    /// let dot = x.matmul(&w)?.tanh().sum().to_dot();
    /// assert!(dot.starts_with("digraph"));
    /// assert_eq!(dot.matches("label=\"matmul\"").count(), 2);   // from x and from w
    /// assert!(dot.contains("[3, 2]"));
    /// # Ok::<(), nabla::Error>(())
    /// ```
    pub fn to_dot(&self) -> String {
        self.to_dot_named(&[])
    }

    /// [`Tensor::to_dot`] with names for some tensors (parameters by their state-dict names,
    /// the input, the loss), shown above their shapes.
    pub fn to_dot_named(&self, names: &[(&Tensor<T>, &str)]) -> String {
        let names: HashMap<usize, &str> = names.iter().map(|(t, n)| (t.id(), *n)).collect();
        let mut out = String::from(
            "digraph nabla {\n  rankdir=LR;\n  node [shape=box, style=\"rounded,filled\", fillcolor=white, fontname=Helvetica];\n  edge [fontname=Helvetica, fontsize=10];\n",
        );
        let (mut seen, mut stack) = (HashSet::new(), vec![self.clone()]);
        let mut nodes = Vec::new();
        while let Some(t) = stack.pop() {
            if !seen.insert(t.id()) {
                continue;
            }
            stack.extend(t.graph_inputs().iter().cloned());
            nodes.push(t);
        }
        // Oldest first: the drawing reads from inputs to the result.
        nodes.sort_by_key(Tensor::id);
        for t in &nodes {
            let mut label = names.get(&t.id()).map(|n| format!("{}\\n", escape(n))).unwrap_or_default();
            let _ = write!(label, "{:?}", t.shape());
            let style = if t.id() == self.id() {
                ", penwidth=2.5"
            } else if t.is_leaf() && t.requires_grad() {
                ", fillcolor=\"#cfe2ff\""
            } else if !t.requires_grad() {
                ", fillcolor=\"#e9ecef\", shape=ellipse"
            } else {
                ""
            };
            let _ = writeln!(out, "  n{} [label=\"{label}\"{style}];", t.id());
        }
        for t in &nodes {
            if let Some(op) = t.op_name() {
                for input in t.graph_inputs() {
                    let _ = writeln!(out, "  n{} -> n{} [label=\"{op}\"];", input.id(), t.id());
                }
            }
        }
        out.push_str("}\n");
        out
    }
}

fn escape(s: &str) -> String {
    s.replace('\\', "\\\\").replace('"', "\\\"")
}
