//! The crate's only `unsafe` code (the rest of the crate is compiled under
//! `#![deny(unsafe_code)]`), behind safe functions:
//!
//! - elementwise loops over contiguous buffers, split across threads for large arrays and
//!   compiled for AVX2 or AVX-512 when the CPU has them (chosen at run time, so the build
//!   stays portable). Results do not depend on the path taken: Rust never fuses `a * b + c`
//!   into an FMA on its own, so every path rounds the same way;
//! - the matrix product, the `gemm` crate called on ndarray's buffers with their strides (a
//!   transposed view costs no copy) and split across threads; on AVX-512, products of 256
//!   rows and columns or more run a packed kernel of nabla's own (`packed`);
//! - a kernel for thin products with a weight reused at every call ([`ThinLhs`]: a
//!   recurrent step's `W_hh hᵀ`, and a convolution's weight times its input's shifted
//!   rows, [`ThinLhs::shifted`]), in AVX2 and FMA and in AVX-512; it rounds differently from the gemm
//!   crate, whose sums run in another order.
//!
//! Each `unsafe` block states its safety argument. The unit tests below run under Miri
//! (`cargo +nightly miri test --lib kernel`), which checks these blocks for undefined
//! behaviour on the portable paths (Miri reports no SIMD features, so the `target_feature`
//! copies of the loops are the same source compiled for wider registers; the thin kernel's
//! intrinsics are checked by its tests against a loop, not by Miri).

mod dispatch;
mod elementwise;
mod gemm;
mod packed;
pub(crate) mod team;
#[cfg(test)]
mod tests;
mod thin;
mod transpose;

pub(crate) use dispatch::*;
pub(crate) use elementwise::*;
pub(crate) use gemm::*;
pub(crate) use thin::*;
pub(crate) use transpose::*;
