//! `Param`: a named, mutable cell holding a parameter's current value.

use crate::error::{Error, Result};
use crate::tensor::{Element, Tensor};
use ndarray::{ArrayD, ArrayViewMutD};
use std::sync::{Arc, Mutex, MutexGuard};

/// A learnable parameter: a shared cell whose current value is a leaf tensor.
///
/// Each forward pass reads a snapshot ([`Param::tensor`]), a leaf that requires grad and
/// shares the array; the gradient of a loss with respect to it is
/// `grads.get(&param.tensor())`. Optimizers write new values with [`Param::update`],
/// in place when no live graph still holds the array, otherwise into a fresh leaf, so a
/// graph built before the update still differentiates the values it saw.
///
/// Cloning a `Param` clones the handle: both clones name the same parameter (this is how
/// modules share weights).
///
/// ```
/// use nabla::prelude::*;
/// use nabla::nn::Param;
/// let w = Param::new(Tensor::ones(&[2]));
/// let loss = (&w.tensor() * 3.0).sum();
/// let grads = loss.backward()?;
/// assert_eq!(grads.get(&w.tensor()).unwrap().to_vec(), vec![3.0, 3.0]);
/// w.update(|value| value.mapv_inplace(|v| v - 0.5));
/// assert_eq!(w.tensor().to_vec(), vec![0.5, 0.5]);
/// # Ok::<(), nabla::Error>(())
/// ```
pub struct Param<T: Element = f32> {
    cell: Arc<Mutex<Tensor<T>>>,
}

impl<T: Element> Clone for Param<T> {
    fn clone(&self) -> Self {
        Param { cell: Arc::clone(&self.cell) }
    }
}

impl<T: Element> std::fmt::Debug for Param<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Param({:?})", self.tensor())
    }
}

impl<T: Element> Param<T> {
    /// A parameter holding `value` (as a leaf that requires grad).
    pub fn new(value: Tensor<T>) -> Self {
        Param { cell: Arc::new(Mutex::new(value.detach().with_requires_grad(true))) }
    }

    fn lock(&self) -> MutexGuard<'_, Tensor<T>> {
        self.cell.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// The current value: a leaf tensor that requires grad unless the parameter is frozen.
    pub fn tensor(&self) -> Tensor<T> {
        self.lock().clone()
    }

    /// The shape of the value.
    pub fn shape(&self) -> Vec<usize> {
        self.lock().shape().to_vec()
    }

    /// The number of elements.
    pub fn numel(&self) -> usize {
        self.lock().len()
    }

    /// Replaces the value; `Err` if the shape differs.
    pub fn set(&self, value: ArrayD<T>) -> Result<()> {
        let mut current = self.lock();
        if value.shape() != current.shape() {
            return Err(Error::shape(
                "Param::set",
                format!("value of shape {:?} for a parameter of shape {:?}", value.shape(), current.shape()),
            ));
        }
        let requires_grad = current.requires_grad();
        *current = Tensor::from(value).with_requires_grad(requires_grad);
        Ok(())
    }

    /// Changes the value with `f`, in place when nothing else holds the array (no copy, no
    /// allocation), otherwise on a copy that becomes the new value.
    pub fn update(&self, f: impl FnOnce(&mut ArrayViewMutD<'_, T>)) {
        self.lock().update_leaf(f);
    }

    /// Sets the value to `f(value, other)` elementwise, `other` of the parameter's shape: as
    /// [`Param::update`], in one vectorised pass (split across threads when large).
    pub(crate) fn update_with(&self, other: &ndarray::ArrayViewD<'_, T>, f: impl Fn(T, T) -> T + Sync + Send) {
        self.lock().update_leaf_with(other, f);
    }

    /// Stops gradients to this parameter (it gets none, so optimizers leave it alone).
    pub fn freeze(&self) {
        let mut current = self.lock();
        *current = current.clone().with_requires_grad(false);
    }

    /// Undoes [`Param::freeze`].
    pub fn unfreeze(&self) {
        let mut current = self.lock();
        *current = current.clone().with_requires_grad(true);
    }

    /// Whether the parameter is frozen.
    pub fn is_frozen(&self) -> bool {
        !self.lock().requires_grad()
    }

    /// True when both handles name the same parameter.
    pub fn same_as(&self, other: &Param<T>) -> bool {
        Arc::ptr_eq(&self.cell, &other.cell)
    }
}
