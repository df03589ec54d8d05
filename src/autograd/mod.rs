//! Reverse-mode automatic differentiation: the graph, the backward sweep, grad mode,
//! functional transforms (Jacobian, VJP, JVP, HVP) and finite-difference checks.
//!
//! Every tensor an op makes from inputs that require grad remembers the op's backward rule
//! (a [`Backward`]) and its inputs. [`Tensor::backward`](crate::Tensor::backward) and
//! [`grad`] walk that graph from the newest node to the oldest, iteratively, so a
//! 100,000-op chain neither overflows the stack nor leaks.

pub(crate) mod anomaly;
mod backward;
pub(crate) mod checkpoint;
mod dot;
mod function;
pub mod functional;
pub mod gradcheck;
pub(crate) mod graph;
mod hooks;
pub mod memory;
mod mode;
mod record;

pub use anomaly::detect_anomaly;
pub use backward::{Gradients, grad};
pub use checkpoint::checkpoint;
pub(crate) use function::OpRule;
pub use function::{Backward, Rule, rule};
pub use gradcheck::{GradcheckOptions, gradcheck, gradgradcheck};
pub use graph::GraphNode;
pub use hooks::HookHandle;
pub use mode::{enable_grad, is_grad_enabled, no_grad, set_grad_enabled};
