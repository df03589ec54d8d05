//! Gradient hooks: a function called with a tensor's gradient when backward reaches it,
//! which may inspect it or replace it, as PyTorch's `Tensor.register_hook`.

use crate::tensor::{Element, Tensor};
use std::any::Any;
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

type Hook<T> = Arc<dyn Fn(&Tensor<T>) -> Option<Tensor<T>> + Send + Sync>;

/// Hooks by tensor id: `(hook id, Hook<T> as Any)`, in registration order.
type Registry = Option<HashMap<usize, Vec<(u64, Arc<dyn Any + Send + Sync>)>>>;
static HOOKS: Mutex<Registry> = Mutex::new(None);
/// How many hooks are registered: while 0, backward and drop skip the registry.
static COUNT: AtomicUsize = AtomicUsize::new(0);
static NEXT: AtomicU64 = AtomicU64::new(0);

fn registry() -> MutexGuard<'static, Registry> {
    HOOKS.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// Removes a hook registered with [`Tensor::register_hook`].
#[derive(Debug)]
#[must_use = "a hook stays registered until `remove` is called or its tensor is dropped"]
pub struct HookHandle {
    tensor: usize,
    hook: u64,
}

impl HookHandle {
    /// Unregisters the hook (it is also dropped with its tensor).
    pub fn remove(self) {
        let mut guard = registry();
        if let Some(hooks) = guard.as_mut().and_then(|m| m.get_mut(&self.tensor)) {
            let before = hooks.len();
            hooks.retain(|(id, _)| *id != self.hook);
            COUNT.fetch_sub(before - hooks.len(), Ordering::Relaxed);
        }
    }
}

impl<T: Element> Tensor<T> {
    /// Calls `hook` with this tensor's gradient each time a backward pass computes it (the
    /// sum over all its uses); if the hook returns `Some(g)`, `g` replaces the gradient —
    /// both what flows on to this tensor's inputs and what a leaf's gradient becomes. Hooks
    /// run in registration order; they live as long as the tensor or until
    /// [`HookHandle::remove`].
    ///
    /// ```
    /// use nabla::prelude::*;
    /// let x = Tensor::from_vec(vec![1.0, 2.0], &[2])?.requires_grad_(true)?;
    /// let h = &x * 3.0;
    /// let seen = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    /// let log = seen.clone();
    /// let _handle = h.register_hook(move |g| { log.lock().unwrap().push(g.to_vec()); None });
    /// let _double = x.register_hook(|g| Some(g * 2.0));          // replaces x's gradient
    /// let grads = h.sum().backward()?;
    /// assert_eq!(seen.lock().unwrap()[0], vec![1.0, 1.0]);      // dL/dh
    /// assert_eq!(grads.get(&x).unwrap().to_vec(), vec![6.0, 6.0]);
    /// # Ok::<(), nabla::Error>(())
    /// ```
    pub fn register_hook(&self, hook: impl Fn(&Tensor<T>) -> Option<Tensor<T>> + Send + Sync + 'static) -> HookHandle {
        let id = NEXT.fetch_add(1, Ordering::Relaxed);
        let hook: Hook<T> = Arc::new(hook);
        registry().get_or_insert_with(HashMap::new).entry(self.id()).or_default().push((id, Arc::new(hook)));
        COUNT.fetch_add(1, Ordering::Relaxed);
        HookHandle { tensor: self.id(), hook: id }
    }
}

/// `gy` after the hooks of tensor `id` have seen (and perhaps replaced) it.
pub(crate) fn apply<T: Element>(id: usize, gy: Tensor<T>) -> Tensor<T> {
    if COUNT.load(Ordering::Relaxed) == 0 {
        return gy;
    }
    // Clone the hooks out so that a hook may register or remove hooks without deadlock.
    let hooks: Vec<Hook<T>> = match registry().as_ref().and_then(|m| m.get(&id)) {
        Some(hooks) => hooks.iter().filter_map(|(_, h)| h.downcast_ref::<Hook<T>>().cloned()).collect(),
        None => return gy,
    };
    hooks.iter().fold(gy, |g, hook| hook(&g).unwrap_or(g))
}

/// Drops the hooks of a tensor that is being dropped.
pub(crate) fn forget(id: usize) {
    if COUNT.load(Ordering::Relaxed) == 0 {
        return;
    }
    if let Some(hooks) = registry().as_mut().and_then(|m| m.remove(&id)) {
        COUNT.fetch_sub(hooks.len(), Ordering::Relaxed);
    }
}
