//! The integration tests, as one binary: one link of the crate's generics instead of one per
//! file, which halves the time `cargo test` spends building them. Each file is a module;
//! run one with `cargo test --release --test suite <module>::` (e.g. `golden::`).
//!
//! Two tests stay binaries of their own: `hostile_files` (it installs a counting global
//! allocator) and `long_run` (ignored by default; it checks the process's memory).

mod anomaly;
mod attention;
mod checkpoint;
mod conv;
mod data;
mod derive;
mod ebm;
mod engine;
mod errors;
mod functional;
mod golden;
mod gradcheck;
mod hooks;
mod nn;
mod optim;
mod properties;
mod pytorch_edges;
mod rnn;
mod silent_gradient;
mod state_dict;
mod tensor;
mod threads;
