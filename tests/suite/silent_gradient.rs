//! The silent-gradient guard: every op in `nabla::ops::OPS` is built here, and each of its
//! differentiable inputs must receive a gradient that is present, finite, not all zero,
//! and equal to a central finite difference along a random direction (f64). A fused op
//! that quietly cut the graph (candle #2168, #3569) would fail here by name.
//!
//! The list itself is checked against the source: every name a `rule(..)`, `unary(..)`,
//! `binary(..)`, `extremum(..)` or `Backward::name` in `src/` records must be in `OPS`, and
//! every entry of `OPS` must be recorded somewhere and have a case below.

use nabla::Result;
use nabla::autograd::{GraphNode, checkpoint};
use nabla::nn::{CellKind, Module, Recurrent};
use nabla::ops::{Conv2dConfig, OPS, Pool2dConfig};
use nabla::prelude::*;
use ndarray::{ArrayD, IxDyn};
use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

type Build = Box<dyn Fn(&[Tensor<f64>]) -> Result<Tensor<f64>>>;

/// One op's case: inputs (all differentiable, all used) and the function recording it.
struct Case {
    inputs: Vec<Tensor<f64>>,
    f: Build,
}

fn randn(shape: &[usize], seed: u64) -> Tensor<f64> {
    Tensor::<f64>::randn(shape, &mut nabla::rng(seed))
}

/// Values in [0.5, 2]: inside the domain of log, sqrt, recip and away from kinks.
fn positive(shape: &[usize], seed: u64) -> Tensor<f64> {
    Tensor::<f64>::uniform(shape, 0.5, 2.0, &mut nabla::rng(seed))
}

/// Distinct values spaced by at least 0.3, shuffled, so that maxima, clamps and relu's kink
/// are never within a finite-difference step.
fn spread(shape: &[usize], seed: u64) -> Tensor<f64> {
    let n: usize = shape.iter().product();
    let order = randn(&[n], seed).to_vec();
    let mut idx: Vec<usize> = (0..n).collect();
    idx.sort_by(|&a, &b| order[a].total_cmp(&order[b]));
    let mut values = vec![0.0; n];
    for (rank, &i) in idx.iter().enumerate() {
        values[i] = (rank as f64 - n as f64 / 2.0) * 0.3 + 0.15;
    }
    Tensor::<f64>::from_vec(values, shape).unwrap()
}

/// The first-order gradient of `sum(y² · w)` with respect to `x`, recorded (create_graph):
/// the way the adjoint ops (`index_add`, `pad`, …) enter a graph.
fn recorded_grad(y: &Tensor<f64>, w: &Tensor<f64>, x: &Tensor<f64>) -> Result<Tensor<f64>> {
    let loss = y.mul(y)?.mul(w)?.sum();
    Ok(nabla::grad(&[&loss], &[x], None, true)?.remove(0))
}

fn case(inputs: Vec<Tensor<f64>>, f: impl Fn(&[Tensor<f64>]) -> Result<Tensor<f64>> + 'static) -> Case {
    Case { inputs, f: Box::new(f) }
}

fn cases() -> BTreeMap<&'static str, Case> {
    let mut c: BTreeMap<&'static str, Case> = BTreeMap::new();
    let x = || randn(&[3, 4], 1);
    // elementwise, one input
    c.insert("neg", case(vec![x()], |v| Ok(v[0].neg())));
    c.insert("exp", case(vec![x()], |v| Ok(v[0].exp())));
    c.insert("log", case(vec![positive(&[3, 4], 2)], |v| Ok(v[0].log())));
    c.insert("sqrt", case(vec![positive(&[3, 4], 2)], |v| Ok(v[0].sqrt())));
    c.insert("sin", case(vec![x()], |v| Ok(v[0].sin())));
    c.insert("cos", case(vec![x()], |v| Ok(v[0].cos())));
    c.insert("abs", case(vec![spread(&[3, 4], 3)], |v| Ok(v[0].abs())));
    c.insert("pow", case(vec![positive(&[3, 4], 2)], |v| Ok(v[0].pow(2.5))));
    c.insert("recip", case(vec![positive(&[3, 4], 2)], |v| Ok(v[0].recip())));
    c.insert("sigmoid", case(vec![x()], |v| Ok(v[0].sigmoid())));
    c.insert("tanh", case(vec![x()], |v| Ok(v[0].tanh())));
    c.insert("relu", case(vec![spread(&[3, 4], 3)], |v| Ok(v[0].relu())));
    c.insert("leaky_relu", case(vec![spread(&[3, 4], 3)], |v| Ok(v[0].leaky_relu(0.1))));
    c.insert("softplus", case(vec![x()], |v| Ok(v[0].softplus(2.0, 20.0))));
    c.insert("clamp", case(vec![spread(&[3, 4], 3)], |v| Ok(v[0].clamp(-0.5, 0.6))));
    c.insert("add_scalar", case(vec![x()], |v| Ok(v[0].add_scalar(1.5))));
    c.insert("mul_scalar", case(vec![x()], |v| Ok(v[0].mul_scalar(1.5))));
    c.insert("div_scalar", case(vec![x()], |v| Ok(v[0].div_scalar(1.5))));
    c.insert("dropout_eval", case(vec![x()], |v| Ok(v[0].dropout_eval())));
    // elementwise, broadcasting: both inputs need their (summed) gradients
    c.insert("add", case(vec![x(), randn(&[4], 5)], |v| v[0].add(&v[1])));
    c.insert("sub", case(vec![x(), randn(&[3, 1], 5)], |v| v[0].sub(&v[1])));
    c.insert("mul", case(vec![x(), randn(&[4], 5)], |v| v[0].mul(&v[1])));
    c.insert("div", case(vec![x(), positive(&[3, 1], 5)], |v| v[0].div(&v[1])));
    c.insert("maximum", case(vec![spread(&[3, 4], 6), spread(&[3, 4], 7).add_scalar(0.05)], |v| v[0].maximum(&v[1])));
    c.insert("minimum", case(vec![spread(&[3, 4], 6), spread(&[3, 4], 7).add_scalar(0.05)], |v| v[0].minimum(&v[1])));
    c.insert(
        "where",
        case(vec![x(), randn(&[4], 8)], |v| {
            let cond = Tensor::<f64>::from_vec((0..12).map(|i| (i % 3 == 0) as u8 as f64).collect(), &[3, 4])?;
            nabla::where_(&cond, &v[0], &v[1])
        }),
    );
    // reductions
    c.insert("sum", case(vec![x()], |v| v[0].sum_dims(&[1], false)));
    c.insert("amax", case(vec![spread(&[3, 4], 9)], |v| v[0].amax_dims(&[0], true)));
    c.insert("amin", case(vec![spread(&[3, 4], 9)], |v| v[0].amin_dims(&[1], false)));
    c.insert("logsumexp", case(vec![x()], |v| v[0].logsumexp_dims(&[1], false)));
    // The last dim (the fused rows) and a leading one (moved last and copied).
    c.insert("log_softmax", case(vec![x()], |v| v[0].log_softmax(-1)?.add(&v[0].log_softmax(0)?)));
    // layout
    c.insert("reshape", case(vec![x()], |v| v[0].reshape(&[2, 6])));
    c.insert("permute", case(vec![randn(&[2, 3, 4], 1)], |v| v[0].permute(&[2, 0, 1])));
    c.insert("expand", case(vec![randn(&[3, 1], 1)], |v| v[0].expand(&[2, 3, 4])));
    c.insert("narrow", case(vec![x()], |v| v[0].narrow(1, 1, 2)));
    c.insert("pad", case(vec![x(), randn(&[3, 2], 10)], |v| recorded_grad(&v[0].narrow(1, 1, 2)?, &v[1], &v[0])));
    c.insert("cat", case(vec![x(), randn(&[3, 2], 11)], |v| Tensor::cat(&[v[0].clone(), v[1].clone()], 1)));
    // indexing and the adjoints their gradients record
    c.insert("index_select", case(vec![x()], |v| v[0].index_select(1, &[3, 0, 0, 2])));
    c.insert("index_add", case(vec![x(), randn(&[3, 4], 12)], |v| recorded_grad(&v[0].index_select(1, &[3, 0, 0, 2])?, &v[1], &v[0])));
    let gather_index = || ArrayD::from_shape_fn(IxDyn(&[3, 4]), |i| (i[0] * 2 + i[1] * 3) % 4);
    c.insert("gather", case(vec![x()], move |v| v[0].gather(1, &gather_index())));
    c.insert("scatter_add", case(vec![x(), randn(&[3, 4], 13)], move |v| recorded_grad(&v[0].gather(1, &gather_index())?, &v[1], &v[0])));
    let image = || spread(&[1, 2, 4, 4], 14);
    c.insert("plane_gather", case(vec![image()], |v| v[0].max_pool2d(Pool2dConfig::new(2))));
    c.insert(
        "plane_scatter_add",
        case(vec![image(), randn(&[1, 2, 2, 2], 15)], |v| recorded_grad(&v[0].max_pool2d(Pool2dConfig::new(2))?, &v[1], &v[0])),
    );
    // products
    c.insert("matmul", case(vec![randn(&[2, 3, 4], 16), randn(&[4, 5], 17)], |v| v[0].matmul(&v[1])));
    c.insert("linear", case(vec![x(), randn(&[5, 4], 18), randn(&[5], 19)], |v| v[0].linear(&v[1], Some(&v[2]))));
    let conv_cfg = Conv2dConfig { stride: [2, 1], padding: [1, 1], dilation: [1, 2], groups: 2 };
    let conv_inputs = || vec![randn(&[2, 4, 5, 6], 20), randn(&[4, 2, 3, 2], 21), randn(&[4], 22)];
    c.insert("conv2d", case(conv_inputs(), move |v| v[0].conv2d(&v[1], Some(&v[2]), conv_cfg)));
    let conv_weight = move |v: &[Tensor<f64>]| v[0].conv2d(&v[1], None, conv_cfg);
    let cotangent = || randn(&[2, 4, 3, 6], 23);
    c.insert(
        "conv2d_input_grad",
        case(vec![randn(&[2, 4, 5, 6], 20), randn(&[4, 2, 3, 2], 21), cotangent()], move |v| recorded_grad(&conv_weight(v)?, &v[2], &v[0])),
    );
    c.insert(
        "conv2d_weight_grad",
        case(vec![randn(&[2, 4, 5, 6], 20), randn(&[4, 2, 3, 2], 21), cotangent()], move |v| recorded_grad(&conv_weight(v)?, &v[2], &v[1])),
    );
    let lstm = Arc::new(Recurrent::<f64>::new(CellKind::Lstm, 3, 4, nabla::nn::RecurrentOptions::default(), &mut nabla::rng(24)));
    c.insert(
        "lstm",
        case(vec![randn(&[5, 2, 3], 25), randn(&[1, 2, 4], 26), randn(&[1, 2, 4], 27)], move |v| {
            let out = lstm.forward_with_state(&v[0], Some((&v[1], Some(&v[2]))))?;
            Tensor::cat(&[out.output.reshape(&[-1])?, out.c_n.expect("an LSTM").reshape(&[-1])?], 0)
        }),
    );
    c.insert("checkpoint", case(vec![x(), randn(&[4, 4], 28)], |v| checkpoint(|u| Ok(u[0].matmul(&u[1])?.tanh()), &[&v[0], &v[1]])));
    c
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
    let cases = cases();
    let missing: Vec<&&str> = OPS.iter().filter(|n| !cases.contains_key(**n)).collect();
    assert!(missing.is_empty(), "ops without a case here: {missing:?}");
    let mut failures = Vec::new();
    for (&name, case) in &cases {
        assert!(OPS.contains(&name), "case {name} is not in nabla::ops::OPS");
        let inputs: Vec<Tensor<f64>> = case.inputs.iter().map(|t| t.detach().requires_grad_(true).unwrap()).collect();
        let y = (case.f)(&inputs).unwrap_or_else(|e| panic!("{name}: {e}"));
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
                loss(&(case.f)(&moved).unwrap()).unwrap().item().unwrap()
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
fn the_op_list_matches_the_source() {
    let patterns = [
        r#"rule\(\s*"([a-z_0-9]+)""#,
        r#"\.unary\(\s*"([a-z_0-9]+)""#,
        r#"\.binary\(\s*[^,()]+,\s*"([a-z_0-9]+)""#,
        r#"\.extremum\(\s*"([a-z_0-9]+)""#,
        r#"fn name\(&self\) -> &'static str \{\s*"([a-z_0-9]+)""#,
    ]
    .map(|p| regex::Regex::new(p).unwrap());
    let mut recorded = BTreeSet::new();
    let mut dirs = vec![std::path::PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/src"))];
    while let Some(dir) = dirs.pop() {
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                dirs.push(path);
            } else if path.extension().is_some_and(|e| e == "rs") {
                // Doc comments hold example ops (`cube`) that are not the crate's.
                let code: String = std::fs::read_to_string(&path)
                    .unwrap()
                    .lines()
                    .filter(|l| !l.trim_start().starts_with("//"))
                    .collect::<Vec<_>>()
                    .join("\n");
                for re in &patterns {
                    recorded.extend(re.captures_iter(&code).map(|c| c[1].to_string()));
                }
            }
        }
    }
    let listed: BTreeSet<String> = OPS.iter().map(|s| s.to_string()).collect();
    assert_eq!(recorded, listed, "names recorded in src/ vs nabla::ops::OPS");
}
