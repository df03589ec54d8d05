//! `Buffer`: a module's non-trainable state (running statistics, counters).

use crate::error::{Error, Result};
use crate::tensor::{Element, Tensor};
use ndarray::{ArrayD, ArrayViewMutD};
use std::sync::{Arc, Mutex, MutexGuard};

/// Non-trainable state of a module, as a tensor registered with PyTorch's
/// `register_buffer`: running means and variances, step counters.
///
/// A buffer is saved and loaded with the parameters under its `state_dict` name
/// ([`Module::named_buffers`](super::Module::named_buffers)), takes no gradient and is given
/// to no optimiser. Its value is read as a constant ([`Buffer::tensor`]) and changed in place
/// ([`Buffer::update`]). An integer buffer ([`Buffer::integer`], PyTorch's int64
/// `num_batches_tracked`) holds whole numbers in `T` and is stored as `I64` in files.
///
/// Cloning a `Buffer` clones the handle: both clones name the same state.
///
/// ```
/// use nabla::prelude::*;
/// use nabla::nn::Buffer;
/// let running_mean = Buffer::new(Tensor::zeros(&[3]));
/// running_mean.update(|m| m.mapv_inplace(|v| 0.9 * v + 0.1));
/// assert_eq!(running_mean.tensor().to_vec(), vec![0.1, 0.1, 0.1]);
/// assert!(!running_mean.tensor().requires_grad());
/// ```
pub struct Buffer<T: Element = f32> {
    cell: Arc<Mutex<ArrayD<T>>>,
    integer: bool,
}

impl<T: Element> Clone for Buffer<T> {
    fn clone(&self) -> Self {
        Buffer { cell: Arc::clone(&self.cell), integer: self.integer }
    }
}

impl<T: Element> std::fmt::Debug for Buffer<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Buffer({:?})", self.tensor())
    }
}

impl<T: Element> Buffer<T> {
    /// A buffer holding `value`'s array (no graph: any history is dropped).
    pub fn new(value: Tensor<T>) -> Self {
        Buffer { cell: Arc::new(Mutex::new(value.value().to_owned())), integer: false }
    }

    /// A 0-d integer buffer holding `value` (PyTorch's int64 `num_batches_tracked`), stored
    /// as `I64` in files.
    pub fn integer(value: i64) -> Self {
        Buffer { cell: Arc::new(Mutex::new(ArrayD::from_elem(vec![], T::of(value as f64)))), integer: true }
    }

    fn lock(&self) -> MutexGuard<'_, ArrayD<T>> {
        self.cell.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// The current value, as a tensor that requires no grad.
    pub fn tensor(&self) -> Tensor<T> {
        Tensor::from(self.lock().clone())
    }

    /// The shape of the value.
    pub fn shape(&self) -> Vec<usize> {
        self.lock().shape().to_vec()
    }

    /// Whether the buffer holds an integer (stored as `I64`).
    pub fn is_integer(&self) -> bool {
        self.integer
    }

    /// Replaces the value; `Err` if the shape differs, or if an integer buffer is given a
    /// value that is not a whole number.
    pub fn set(&self, value: ArrayD<T>) -> Result<()> {
        let mut current = self.lock();
        if value.shape() != current.shape() {
            return Err(Error::shape(
                "Buffer::set",
                format!("value of shape {:?} for a buffer of shape {:?}", value.shape(), current.shape()),
            ));
        }
        if self.integer
            && let Some(v) = value.iter().find(|v| v.fract() != T::zero())
        {
            return Err(Error::invalid("Buffer::set", format!("{v} for an integer buffer")));
        }
        *current = value;
        Ok(())
    }

    /// Changes the value in place with `f`.
    pub fn update(&self, f: impl FnOnce(&mut ArrayViewMutD<'_, T>)) {
        f(&mut self.lock().view_mut());
    }

    /// True when both handles name the same buffer.
    pub fn same_as(&self, other: &Buffer<T>) -> bool {
        Arc::ptr_eq(&self.cell, &other.cell)
    }
}
