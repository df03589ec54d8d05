//! Anomaly mode: find the first op that made a NaN or an infinity, forward or backward, and
//! where the program called it.

use crate::error::{Error, Result};
use crate::tensor::Element;
use ndarray::{ArrayBase, Data, IxDyn};
use std::backtrace::Backtrace;
use std::cell::{Cell, RefCell};

thread_local! {
    static ENABLED: Cell<bool> = const { Cell::new(false) };
    static FIRST: RefCell<Option<Error>> = const { RefCell::new(None) };
}

/// Runs `f` in anomaly mode, as PyTorch's `torch.autograd.detect_anomaly()`: every op checks
/// its output, every backward rule its gradients, for NaN and infinities, and each op
/// records where it was called. The first bad forward output makes `detect_anomaly` return
/// [`Error::Anomaly`] naming the op and the call site (the first frame outside nabla, with
/// file and line when the build has debug info) once `f` returns; a bad gradient makes the
/// backward call inside `f` fail at once with that error. Off (the default) it costs one
/// thread-local read per op.
///
/// ```
/// use nabla::prelude::*;
/// use nabla::autograd::detect_anomaly;
/// let x = Tensor::from_vec(vec![1.0, 0.0], &[2])?.requires_grad_(true)?;
/// let err = detect_anomaly(|| x.log().sum().backward()).unwrap_err();
/// assert!(err.to_string().contains("log produced -inf in its forward output"), "{err}");
/// # Ok::<(), nabla::Error>(())
/// ```
pub fn detect_anomaly<R>(f: impl FnOnce() -> Result<R>) -> Result<R> {
    struct Restore(bool);
    impl Drop for Restore {
        fn drop(&mut self) {
            ENABLED.with(|e| e.set(self.0));
        }
    }
    let _restore = Restore(ENABLED.with(|e| e.replace(true)));
    let outer = FIRST.with(|first| first.borrow_mut().take());
    let result = f();
    let found = FIRST.with(|first| std::mem::replace(&mut *first.borrow_mut(), outer));
    match (found, result) {
        (Some(anomaly), _) => Err(anomaly),
        (None, result) => result,
    }
}

/// Whether anomaly mode is on for this thread.
pub(crate) fn enabled() -> bool {
    ENABLED.with(Cell::get)
}

/// The first non-finite value of `a`, as text.
pub(crate) fn non_finite<T: Element, S: Data<Elem = T>>(a: &ArrayBase<S, IxDyn>) -> Option<String> {
    a.iter().find(|v| !v.is_finite()).map(|v| format!("{v}"))
}

/// Notes a forward anomaly unless one was noted already in this `detect_anomaly`. When an
/// input already held a non-finite value (it did not come from an op checked here: the
/// user's data, or a tensor made before anomaly mode), the message says so, rather than
/// blame the op that first saw it.
pub(crate) fn forward<T: Element, S: Data<Elem = T>>(op: &'static str, value: &ArrayBase<S, IxDyn>, inputs: &[&crate::Tensor<T>]) {
    if let Some(v) = non_finite(value) {
        let carried = inputs.iter().enumerate().find_map(|(k, x)| non_finite(&x.value()).map(|w| (k, w)));
        let phase = match carried {
            Some((k, w)) => format!(
                "forward output, from input {k}, which already held {w} when it came in (data, or a tensor made outside anomaly mode)"
            ),
            None => "forward output".into(),
        };
        FIRST.with(|first| {
            first.borrow_mut().get_or_insert_with(|| Error::Anomaly { op, phase, value: v, origin: origin(&Backtrace::force_capture()) });
        });
    }
}

/// The error for a non-finite gradient from `op`'s backward.
pub(crate) fn backward_error(op: &'static str, input: usize, value: String, created: Option<&Backtrace>) -> Error {
    Error::Anomaly {
        op,
        phase: format!("backward gradient for input {input}"),
        value,
        origin: created.map(origin).unwrap_or_else(|| "an unknown place (made outside detect_anomaly)".into()),
    }
}

/// The first frame of a backtrace that is the program's, not nabla's or the standard
/// library's: `function (file:line)`, or the function alone without debug info.
pub(crate) fn origin(trace: &Backtrace) -> String {
    let text = trace.to_string();
    let mut lines = text.lines().map(str::trim).peekable();
    while let Some(line) = lines.next() {
        let Some((_, symbol)) = line.split_once(": ") else { continue };
        let location = lines.peek().and_then(|l| l.strip_prefix("at ")).map(str::to_string);
        if location.is_some() {
            lines.next();
        }
        let internal = symbol.contains("nabla::")
            || ["std::", "core::", "alloc::", "<std::", "<core::", "<alloc::", "__", "rust_begin", "_start", "test::", "<test::"]
                .iter()
                .any(|p| symbol.starts_with(p));
        if !internal {
            return match location {
                Some(at) => format!("{symbol} ({at})"),
                None => symbol.to_string(),
            };
        }
    }
    "an unknown place (no frame outside nabla in the backtrace)".into()
}
