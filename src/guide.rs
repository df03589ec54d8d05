//! Guides that do not belong to one module: how the crate is tested, and what
//! checkpointing costs and saves.
//!
//! - [`reliability`]: property tests, fuzzing, hostile files, deep graphs, long runs,
//!   threads, the silent-gradient guard, and where `unsafe` lives.
//! - Recomputing versus storing: measured in [`crate::autograd::checkpoint`]'s docs.

#[doc = include_str!("../docs/reliability.md")]
pub mod reliability {}
