//! The silent-gradient guard: every op of the registry (`nabla::ops::registry()`) is built
//! from its sample, and each of its differentiable inputs must receive a gradient that is
//! present, finite, not all zero, and equal to a central finite difference along a random
//! direction (f64). A fused op that quietly cut the graph (candle #2168, #3569) would fail
//! here by name.
//!
//! The registry is checked against what the ops record when they run: each entry's call
//! records its name, and every name in the graphs its samples build, forward and backward
//! to second order, is an entry.

use nabla::autograd::GraphNode;
use nabla::nn::{CellKind, Module, Recurrent};
use nabla::ops::registry;
use nabla::prelude::*;
use std::collections::BTreeSet;

fn randn(shape: &[usize], seed: u64) -> Tensor<f64> {
    Tensor::<f64>::randn(shape, &mut nabla::rng(seed))
}

/// Every op name in `y`'s graph.
fn graph_names(y: &Tensor<f64>) -> BTreeSet<&'static str> {
    let (mut names, mut seen, mut stack) = (BTreeSet::new(), BTreeSet::new(), vec![GraphNode::from(y)]);
    while let Some(t) = stack.pop() {
        if !seen.insert(t.id()) {
            continue;
        }
        names.extend(t.op_name());
        stack.extend(t.inputs());
    }
    names
}

#[test]
fn every_op_passes_gradient_to_every_input() {
    let mut failures = Vec::new();
    for op in registry() {
        let name = op.name;
        let inputs: Vec<Tensor<f64>> = (op.sample)().iter().map(|t| t.detach().requires_grad_(true).unwrap()).collect();
        let y = (op.call)(&inputs).unwrap_or_else(|e| panic!("{name}: {e}"));
        assert!(graph_names(&y).contains(name), "{name}: the case does not record it (graph: {:?})", graph_names(&y));
        // L = <r, y> with a fixed random cotangent r.
        let r = randn(y.shape(), 99);
        let loss = |y: &Tensor<f64>| y.mul(&r).map(|p| p.sum());
        let grads = nabla::grad(&[&loss(&y).unwrap()], &inputs.iter().collect::<Vec<_>>(), None, false).unwrap();
        for (k, (x, g)) in inputs.iter().zip(&grads).enumerate() {
            let g = g.to_vec();
            if g.iter().any(|v| !v.is_finite()) || g.iter().all(|&v| v == 0.0) {
                failures.push(format!("{name}: input {k}: gradient {g:?}"));
                continue;
            }
            // <g, d> against (L(x + h d) - L(x - h d)) / 2h for a random direction d.
            let d = randn(x.shape(), 100 + k as u64);
            let h = 1e-6;
            // Evaluated like the case itself, with inputs that require grad: the adjoint
            // cases (`pad`, `index_add`, …) differentiate inside `f`.
            let at = |sign: f64| {
                let mut moved = inputs.iter().map(|t| t.detach().requires_grad_(true).unwrap()).collect::<Vec<_>>();
                moved[k] = x.detach().add(&d.mul_scalar(sign * h)).unwrap().requires_grad_(true).unwrap();
                loss(&(op.call)(&moved).unwrap()).unwrap().item().unwrap()
            };
            let fd = (at(1.0) - at(-1.0)) / (2.0 * h);
            let analytic: f64 = g.iter().zip(d.to_vec()).map(|(a, b)| a * b).sum();
            if (fd - analytic).abs() > 1e-5 * (1.0 + analytic.abs()) {
                failures.push(format!("{name}: input {k}: <grad, d> = {analytic}, finite difference {fd}"));
            }
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn lstm_parameters_receive_gradients() {
    // The fused LSTM op takes the weights as inputs too; the walk above varies x, h0, c0.
    let lstm = Recurrent::<f64>::new(
        CellKind::Lstm,
        3,
        4,
        nabla::nn::RecurrentOptions::default().num_layers(2).bidirectional(true),
        &mut nabla::rng(1),
    );
    let y = lstm.forward(&randn(&[5, 2, 3], 2)).unwrap();
    let grads = y.mul(&randn(y.shape(), 3)).unwrap().sum().backward().unwrap();
    for (name, p) in lstm.named_parameters() {
        let g = grads.get(&p.tensor()).unwrap_or_else(|| panic!("{name}: no gradient")).to_vec();
        assert!(g.iter().all(|v| v.is_finite()) && g.iter().any(|&v| v != 0.0), "{name}: {g:?}");
    }
}

#[test]
fn the_registry_names_every_op_the_crate_records() {
    let names: Vec<&str> = registry().map(|op| op.name).collect();
    let registered: BTreeSet<&str> = names.iter().copied().collect();
    assert_eq!(registered.len(), names.len(), "a name registered twice: {names:?}");
    let mut recorded = BTreeSet::new();
    for op in registry() {
        let inputs: Vec<Tensor<f64>> = (op.sample)().iter().map(|t| t.detach().requires_grad_(true).unwrap()).collect();
        let y = (op.call)(&inputs).unwrap();
        let names = graph_names(&y);
        assert!(names.contains(op.name), "{}: its call does not record it (graph: {names:?})", op.name);
        recorded.extend(names);
        // The rules' own graphs, to second order: what they record must be registered too.
        let r = randn(y.shape(), 99);
        let refs: Vec<&Tensor<f64>> = inputs.iter().collect();
        let g = nabla::grad(&[&y.mul(&r).unwrap().sum()], &refs, None, true).unwrap();
        let gg_loss = g.iter().fold(Tensor::<f64>::scalar(0.0), |acc, g| acc.add(&g.mul(g).unwrap().sum()).unwrap());
        recorded.extend(graph_names(&gg_loss));
        if gg_loss.requires_grad() {
            for h in nabla::grad(&[&gg_loss], &refs, None, true).unwrap() {
                recorded.extend(graph_names(&h));
            }
        }
    }
    let unregistered: Vec<&str> = recorded.difference(&registered).copied().collect();
    assert!(unregistered.is_empty(), "recorded by the crate's ops, missing from nabla::ops::registry(): {unregistered:?}");
}
