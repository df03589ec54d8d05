//! Printing tensors the way PyTorch does: `tensor([[ 1.0000, -2.0000], ...])`.

use super::{Element, Tensor};
use ndarray::{ArrayViewD, Axis};
use std::fmt;

/// Past this many elements, print only the first and last few along each dim (PyTorch's
/// `threshold` and `edgeitems`).
const THRESHOLD: usize = 1000;
const EDGE_ITEMS: usize = 3;

fn format_element<T: Element>(x: T) -> String {
    format!("{x:.4}")
}

fn write_nested<T: Element>(
    f: &mut fmt::Formatter<'_>,
    view: ArrayViewD<'_, T>,
    width: usize,
    indent: usize,
    summarise: bool,
) -> fmt::Result {
    if view.ndim() == 0 {
        let x = *view.iter().next().expect("0-d has one element");
        return write!(f, "{:>width$}", format_element(x));
    }
    let n = view.len_of(Axis(0));
    let shown: Vec<Option<usize>> = if summarise && n > 2 * EDGE_ITEMS {
        (0..EDGE_ITEMS).map(Some).chain([None]).chain((n - EDGE_ITEMS..n).map(Some)).collect()
    } else {
        (0..n).map(Some).collect()
    };
    write!(f, "[")?;
    let separator =
        if view.ndim() == 1 { ", ".to_string() } else { format!(",{}{}", "\n".repeat(view.ndim() - 1), " ".repeat(indent + 1)) };
    for (k, i) in shown.iter().enumerate() {
        if k > 0 {
            write!(f, "{separator}")?;
        }
        match i {
            Some(i) => write_nested(f, view.index_axis(Axis(0), *i), width, indent + 1, summarise)?,
            None => write!(f, "...")?,
        }
    }
    write!(f, "]")
}

impl<T: Element> fmt::Display for Tensor<T> {
    /// ```
    /// use nabla::prelude::*;
    /// let x = Tensor::from_vec(vec![1.0, -2.0, 3.0, 4.0], &[2, 2])?;
    /// assert_eq!(x.to_string(), "tensor([[ 1.0000, -2.0000],\n        [ 3.0000,  4.0000]])");
    /// # Ok::<(), nabla::Error>(())
    /// ```
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let value = self.value();
        let summarise = value.len() > THRESHOLD;
        let width = value.iter().map(|&x| format_element(x).len()).max().unwrap_or(0);
        write!(f, "tensor(")?;
        write_nested(f, value, width, "tensor(".len(), summarise)?;
        if T::DTYPE != "f32" {
            write!(f, ", dtype={}", T::DTYPE)?;
        }
        match self.op_name() {
            Some(name) => write!(f, ", grad_fn=<{name}>")?,
            None if self.requires_grad() => write!(f, ", requires_grad=True")?,
            None => {}
        }
        write!(f, ")")
    }
}

impl<T: Element> fmt::Debug for Tensor<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{self} (shape {:?}, id {})", self.shape(), self.id())
    }
}
