//! Grad mode: whether ops record the graph (on by default, per thread).

use std::cell::Cell;

thread_local! {
    static GRAD_ENABLED: Cell<bool> = const { Cell::new(true) };
}

/// Whether ops on this thread currently record the graph.
pub fn is_grad_enabled() -> bool {
    GRAD_ENABLED.with(|g| g.get())
}

/// Restores the previous mode when dropped, so a panic inside the closure cannot leave
/// recording switched off.
struct ModeGuard(bool);

impl Drop for ModeGuard {
    fn drop(&mut self) {
        GRAD_ENABLED.with(|g| g.set(self.0));
    }
}

/// Runs `f` with recording set to `enabled`, then restores the previous mode.
pub fn set_grad_enabled<R>(enabled: bool, f: impl FnOnce() -> R) -> R {
    let _guard = ModeGuard(GRAD_ENABLED.with(|g| g.replace(enabled)));
    f()
}

/// Runs `f` without recording the graph, as PyTorch's `with torch.no_grad():`. Results are
/// leaves that do not require grad: inference pays for no graph.
///
/// ```
/// use nabla::prelude::*;
/// let w = Tensor::ones(&[2]).requires_grad_(true)?;
/// let y = nabla::no_grad(|| &w * 2.0);
/// assert!(!y.requires_grad());
/// # Ok::<(), nabla::Error>(())
/// ```
pub fn no_grad<R>(f: impl FnOnce() -> R) -> R {
    set_grad_enabled(false, f)
}

/// Runs `f` with recording on, even inside [`no_grad`].
pub fn enable_grad<R>(f: impl FnOnce() -> R) -> R {
    set_grad_enabled(true, f)
}
