//! Gradient checkpointing: store less, compute again. A checkpointed segment keeps only its
//! inputs and its output; backward runs the segment once more, with recording on, and
//! differentiates that — the course's choice between computing a repeated expression many
//! times (memory) and storing it once (time), made per segment.
//!
//! # Recomputing versus storing
//!
//! From `cargo run --release --example checkpointing` (memory is the values of
//! live tensors, `autograd::memory`, above the parameters and input; step time the median of
//! 9 training steps, the variants taking turns). 32 blocks of `Linear(1024, 1024) + tanh`,
//! batch 64, SGD:
//!
//! | checkpoint every | graph after forward (MiB) | peak of the step (MiB) | peak beyond the gradients (MiB) | time vs storing |
//! | --- | ---: | ---: | ---: | ---: |
//! | none (store all) | 8.0 | 136.6 | 8.5 | 1.00x |
//! | 1 | 8.0 | 137.4 | 9.2 | 1.22x |
//! | 4 | 2.0 | 132.1 | 4.0 | 1.27x |
//! | 6 (≈ √32) | 1.5 | 132.1 | 4.0 | 1.21x |
//!
//! Every variant ends the step holding the gradients of the 128 MiB of parameters, so the
//! peak barely moves at this size. Storing keeps one tensor per block (tanh's output, which
//! tanh's rule and the next linear read); checkpointing every block therefore saves nothing,
//! every 4 or 6 blocks it does. With depth (width 512), storing grows ×16 from depth 16 to
//! 256 (2 → 32 MiB) and √depth checkpoints ×4 (0.5 → 2 MiB), at one more forward pass
//! (about 1.3× the step).

use super::mode::{enable_grad, is_grad_enabled, no_grad};
use crate::error::Result;
use crate::tensor::{Element, Tensor};
use std::any::Any;
use std::cell::{Cell, RefCell};
use std::collections::HashSet;
use std::sync::Arc;

thread_local! {
    /// Open checkpoint forwards on this thread, innermost last: the tensors requiring grad
    /// that their segment's ops read (type-erased `Tensor<T>`s).
    static CAPTURES: RefCell<Vec<Vec<Box<dyn Any>>>> = const { RefCell::new(Vec::new()) };
    static DEPTH: Cell<usize> = const { Cell::new(0) };
}

/// Called by every op that does not record: inside a checkpoint's forward (which runs
/// without recording), notes the inputs that require grad — parameters and tensors from
/// outside the segment, whose gradients backward must deliver. One thread-local read
/// otherwise.
pub(crate) fn note_inputs<T: Element>(inputs: &[&Tensor<T>]) {
    if DEPTH.with(Cell::get) == 0 {
        return;
    }
    let wanted: Vec<Box<dyn Any>> = inputs.iter().filter(|t| t.requires_grad()).map(|t| Box::new((*t).clone()) as Box<dyn Any>).collect();
    if !wanted.is_empty() {
        CAPTURES.with(|c| c.borrow_mut().last_mut().expect("depth > 0").extend(wanted));
    }
}

/// Runs `f` under a capture frame; returns its result and the tensors its ops read that
/// require grad, without duplicates.
fn capturing<T: Element, R>(f: impl FnOnce() -> R) -> (R, Vec<Tensor<T>>) {
    struct Frame;
    impl Drop for Frame {
        fn drop(&mut self) {
            DEPTH.with(|d| d.set(d.get() - 1));
        }
    }
    CAPTURES.with(|c| c.borrow_mut().push(Vec::new()));
    DEPTH.with(|d| d.set(d.get() + 1));
    let result = {
        let _frame = Frame;
        f()
    };
    let captured = CAPTURES.with(|c| c.borrow_mut().pop().unwrap_or_default());
    let mut seen = HashSet::new();
    let tensors = captured.into_iter().filter_map(|b| b.downcast::<Tensor<T>>().ok()).map(|b| *b).filter(|t| seen.insert(t.id())).collect();
    (result, tensors)
}

type Segment<T> = Arc<dyn Fn(&[Tensor<T>]) -> Result<Tensor<T>> + Send + Sync>;

/// `f(inputs)` without storing its intermediate values: the graph records one node whose
/// backward runs `f` again with recording on and differentiates it, as PyTorch's
/// `torch.utils.checkpoint.checkpoint`.
///
/// Gradients reach the inputs and everything `f` reads that requires grad — parameters of
/// the modules it calls, tensors it captures — as without checkpointing, and bit for bit
/// the same when `f` is deterministic. Checkpoints nest, and second-order gradients work
/// (with `create_graph`, the recomputation is recorded). The memory of a forward pass then
/// holds the segments' inputs and outputs plus, during backward, one segment's internals.
///
/// `f` must compute the same function when run again: a dropout inside it in training mode
/// would draw a new mask (save and restore its rng, or keep dropout outside the segment).
/// It is `'static` because the graph keeps it until backward: move modules in behind an
/// `Arc`. When grad mode is off, `f` simply runs.
///
/// ```
/// use nabla::prelude::*;
/// use nabla::autograd::checkpoint;
/// use std::sync::Arc;
/// let mut rng = nabla::rng(0);
/// let block = Arc::new(nn::Sequential::new().push(nn::Linear::new(4, 4, &mut rng)).push(nn::Tanh));
/// let x = Tensor::randn(&[2, 4], &mut rng);
/// let b = Arc::clone(&block);
/// let y = checkpoint(move |v| b.forward(&v[0]), &[&x])?;
/// let grads = y.sum().backward()?;                 // recomputes the block
/// let w = block.parameters()[0].tensor();
/// assert!(grads.get(&w).is_some());
/// # Ok::<(), nabla::Error>(())
/// ```
pub fn checkpoint<T, F>(f: F, inputs: &[&Tensor<T>]) -> Result<Tensor<T>>
where
    T: Element,
    F: Fn(&[Tensor<T>]) -> Result<Tensor<T>> + Send + Sync + 'static,
{
    let args: Vec<Tensor<T>> = inputs.iter().map(|&t| t.clone()).collect();
    if !is_grad_enabled() {
        return f(&args);
    }
    let (output, mut extra) = capturing::<T, _>(|| no_grad(|| f(&args)));
    let output = output?;
    let ids: HashSet<usize> = inputs.iter().map(|t| t.id()).collect();
    extra.retain(|t| !ids.contains(&t.id()));
    let mut all: Vec<&Tensor<T>> = inputs.to_vec();
    all.extend(extra.iter());
    let segment: Segment<T> = Arc::new(f);
    let explicit = inputs.len();
    let value = output.array().clone();
    Ok(Tensor::from_op_arc(value, &all, move || {
        Box::new(crate::autograd::rule("checkpoint", move |inputs: &[Tensor<T>], _: &Tensor<T>, gy: &Tensor<T>| {
            recompute(&segment, explicit, inputs, gy)
        }))
    }))
}

/// The checkpoint's backward: `f` again, recorded, then its gradients for every input.
fn recompute<T: Element>(segment: &Segment<T>, explicit: usize, inputs: &[Tensor<T>], gy: &Tensor<T>) -> Vec<Option<Tensor<T>>> {
    let create_graph = is_grad_enabled();
    // For first-order gradients the recomputed graph starts at fresh leaves standing for the
    // inputs, so the sweep below stops there; with create_graph it must reach the inputs
    // themselves, so that the gradients are functions of them.
    let args: Vec<Tensor<T>> = inputs[..explicit]
        .iter()
        .map(|x| if create_graph { x.clone() } else { x.detach().with_requires_grad(x.requires_grad()) })
        .collect();
    let y = enable_grad(|| segment(&args)).expect("checkpoint: the segment failed when run again, after succeeding in the forward pass");
    let mut wanted: Vec<&Tensor<T>> = args.iter().collect();
    wanted.extend(&inputs[explicit..]);
    let requires: Vec<bool> = wanted.iter().map(|t| t.requires_grad()).collect();
    let targets: Vec<&Tensor<T>> = wanted.iter().copied().filter(|t| t.requires_grad()).collect();
    if !y.requires_grad() || targets.is_empty() {
        return vec![None; inputs.len()];
    }
    let mut grads =
        crate::autograd::grad(&[&y], &targets, Some(&[gy]), create_graph).expect("checkpoint: differentiating the segment").into_iter();
    requires.into_iter().map(|r| if r { grads.next() } else { None }).collect()
}

/// This module's entry in the [op registry](crate::ops::registry()).
pub(crate) const OPS: &[crate::ops::OpInfo] = &[crate::ops::OpInfo::new(
    "checkpoint",
    || vec![crate::ops::registry::randn(&[3, 4], 1), crate::ops::registry::randn(&[4, 4], 28)],
    |v| checkpoint(|u| Ok(u[0].matmul(&u[1])?.tanh()), &[&v[0], &v[1]]),
)];
