//! The array layer under [`Tensor`](crate::Tensor): element types, vector maths, the
//! unsafe kernels (elementwise loops, transposes, products) and the buffer pool. It works
//! on ndarray's arrays and knows nothing of tensors or the graph: `tensor`, `autograd` and
//! `ops` build on it, never the other way round.

pub(crate) mod copy;
mod element;
#[allow(unsafe_code)] // the one module that may; each block argues its safety
pub(crate) mod kernel;
pub(crate) mod pool;
pub(crate) mod rounds;
pub(crate) mod vmath;

pub use element::Element;
