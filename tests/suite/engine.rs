//! The reverse-mode engine as a specification: sharing, deep graphs, grad mode, detach,
//! higher order, numerical stability.

use nabla::autograd::{Backward, rule};
use nabla::prelude::*;

fn t(v: &[f64]) -> Tensor<f64> {
    Tensor::<f64>::from_vec(v.to_vec(), &[v.len()]).unwrap()
}

#[test]
fn gradients_add_up_where_a_tensor_is_used_twice() {
    // y = x·x + 3x: dy/dx = 2x + 3 (hand computation)
    let x = t(&[1.0, -2.0, 0.5]).requires_grad_(true).unwrap();
    let y = (&(&x * &x) + &(&x * 3.0)).sum();
    let g = y.backward().unwrap();
    assert_eq!(g.get(&x).unwrap().to_vec(), vec![5.0, -1.0, 4.0]);
}

#[test]
fn shared_weights_get_the_sum_of_both_uses() {
    // Weight tying: L = sum(w·a) + sum(w·b), dL/dw = a + b.
    let w = t(&[1.0, 2.0]).requires_grad_(true).unwrap();
    let (a, b) = (t(&[3.0, 4.0]), t(&[10.0, 20.0]));
    let loss = &(&w * &a).sum() + &(&w * &b).sum();
    assert_eq!(loss.backward().unwrap().get(&w).unwrap().to_vec(), vec![13.0, 24.0]);
}

#[test]
fn a_chain_of_1_000_000_ops_differentiates_and_drops_without_overflowing_the_stack() {
    let x = Tensor::<f64>::scalar(1.0).requires_grad_(true).unwrap();
    let mut y = x.clone();
    for _ in 0..1_000_000 {
        y = &y * 1.000001;
    }
    let g = y.backward().unwrap();
    // d/dx (1.000001^n x) = 1.000001^n
    let expected = 1.000001f64.powi(1_000_000);
    assert!((g.get(&x).unwrap().item().unwrap() - expected).abs() < 1e-9 * expected);
    drop(g);
    drop(y); // the drop is iterative too: this line would overflow a recursive drop
}

#[test]
fn no_grad_records_nothing_and_detach_stops_gradients() {
    let x = t(&[2.0]).requires_grad_(true).unwrap();
    let y = nabla::no_grad(|| x.exp());
    assert!(!y.requires_grad() && y.is_leaf());
    assert!(nabla::autograd::is_grad_enabled(), "no_grad restores the mode");
    // z = x · detach(x): dz/dx = detach(x) = 2, not 2x = 4
    let z = (&x * &x.detach()).sum();
    assert_eq!(z.backward().unwrap().get(&x).unwrap().to_vec(), vec![2.0]);
}

#[test]
fn backward_returns_only_leaf_gradients_and_grad_reaches_intermediates() {
    let x = t(&[1.0, 2.0]).requires_grad_(true).unwrap();
    let h = x.exp();
    let y = (&h * 2.0).sum();
    let g = y.backward().unwrap();
    assert!(g.get(&h).is_none() && g.len() == 1);
    let dh = nabla::grad(&[&y], &[&h], None, false).unwrap();
    assert_eq!(dh[0].to_vec(), vec![2.0, 2.0]);
}

#[test]
fn grad_of_an_unused_input_is_zero() {
    let x = t(&[1.0]).requires_grad_(true).unwrap();
    let unused = t(&[5.0, 6.0]).requires_grad_(true).unwrap();
    let g = nabla::grad(&[&x.exp().sum()], &[&unused], None, false).unwrap();
    assert_eq!(g[0].to_vec(), vec![0.0, 0.0]);
}

#[test]
fn third_derivative_of_a_polynomial() {
    // f = x⁴: f' = 4x³, f'' = 12x², f''' = 24x; at x = 2: 32, 48, 48
    let x = t(&[2.0]).requires_grad_(true).unwrap();
    let d1 = nabla::grad(&[&x.pow(4.0).sum()], &[&x], None, true).unwrap().remove(0);
    let d2 = nabla::grad(&[&d1.sum()], &[&x], None, true).unwrap().remove(0);
    let d3 = nabla::grad(&[&d2.sum()], &[&x], None, false).unwrap().remove(0);
    assert_eq!((d1.to_vec()[0], d2.to_vec()[0], d3.to_vec()[0]), (32.0, 48.0, 48.0));
}

#[test]
fn a_rule_that_is_not_differentiable_refuses_double_backward() {
    struct Opaque;
    impl Backward<f64> for Opaque {
        fn name(&self) -> &'static str {
            "opaque"
        }
        fn backward(&self, _: &[Tensor<f64>], _: &Tensor<f64>, gy: &Tensor<f64>) -> Vec<Option<Tensor<f64>>> {
            vec![Some(gy.clone())]
        }
        fn is_differentiable(&self) -> bool {
            false
        }
    }
    let x = t(&[1.0]).requires_grad_(true).unwrap();
    let y = Tensor::from_op(x.to_ndarray(), &[&x], Opaque);
    assert!(nabla::grad(&[&y.sum()], &[&x], None, false).is_ok());
    let err = nabla::grad(&[&y.sum()], &[&x], None, true).unwrap_err();
    assert_eq!(err.to_string(), "opaque: this backward rule is not differentiable: higher-order gradients through it are not supported");
}

#[test]
fn softmax_and_log_softmax_stay_finite_for_huge_logits() {
    let x = t(&[1e4, -1e4, 0.0, 1e4]).reshape(&[1, 4]).unwrap().requires_grad_(true).unwrap();
    let w = t(&[0.3, -1.0, 2.0, 0.5]).reshape(&[1, 4]).unwrap();
    for (name, y) in [("softmax", x.softmax(1).unwrap()), ("log_softmax", x.log_softmax(1).unwrap())] {
        assert!(y.to_vec().iter().all(|v| v.is_finite()), "{name} values: {y}");
        let g = (&y * &w).sum().backward().unwrap();
        assert!(g.get(&x).unwrap().to_vec().iter().all(|v| v.is_finite()), "{name} gradient");
    }
    // log_softmax of the two tied maxima is -ln 2; the others underflow softmax but not log.
    let ls = x.log_softmax(1).unwrap().to_vec();
    assert!((ls[0] + std::f64::consts::LN_2).abs() < 1e-12 && (ls[1] + 2e4 + std::f64::consts::LN_2).abs() < 1e-9);
}

#[test]
fn sigmoid_is_the_two_class_softmax_with_one_logit_at_zero() {
    let x = t(&[-3.0, -0.5, 0.0, 2.0, 40.0]);
    let pairs = Tensor::stack(&[x.clone(), Tensor::<f64>::zeros(&[5])], 1).unwrap();
    let p = pairs.softmax(1).unwrap().narrow(1, 0, 1).unwrap().reshape(&[5]).unwrap();
    for (a, b) in x.sigmoid().to_vec().iter().zip(p.to_vec()) {
        assert!((a - b).abs() < 1e-15);
    }
}

#[test]
fn custom_ops_with_a_closure_rule() {
    // y = sin x, dL/dx = gy · cos x
    let x = t(&[0.0, 1.0]).requires_grad_(true).unwrap();
    let y = Tensor::from_op(
        x.value().mapv(f64::sin),
        &[&x],
        rule("sin", |inputs: &[Tensor<f64>], _: &Tensor<f64>, gy: &Tensor<f64>| {
            vec![Some(gy * &Tensor::from(inputs[0].value().mapv(f64::cos)))]
        }),
    );
    assert_eq!(y.op_name(), Some("sin"));
    let g = y.sum().backward().unwrap();
    assert_eq!(g.get(&x).unwrap().to_vec(), vec![1.0, 1f64.cos()]);
}

#[test]
fn the_graph_can_be_differentiated_twice() {
    let x = t(&[3.0]).requires_grad_(true).unwrap();
    let y = x.pow(2.0).sum();
    let first = y.backward().unwrap().get(&x).unwrap().to_vec();
    let second = y.backward().unwrap().get(&x).unwrap().to_vec();
    assert_eq!(first, vec![6.0]);
    assert_eq!(first, second);
}

#[test]
fn the_graph_keeps_only_the_values_backward_reads() {
    let x = Tensor::<f64>::from_vec(vec![-1.0, 2.0, 3.0, -4.0], &[2, 2]).unwrap().requires_grad_(true).unwrap();
    let w = t(&[1.0, -1.0, 0.5, 2.0]).reshape(&[2, 2]).unwrap().requires_grad_(true).unwrap();
    let h = x.matmul(&w).unwrap();
    let seen = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let log = seen.clone();
    let _hook = h.register_hook(move |g| {
        log.lock().unwrap().push(g.to_vec());
        None
    });
    let y = h.relu();
    let h_value = h.to_vec();
    drop(h);
    let loss = (&y * &y).sum();
    // relu reads its output (kept for its own rule and by mul); matmul's output, relu's
    // input, is a shape only; matmul keeps both of its inputs.
    let relu = &loss.inputs()[0].inputs()[0];
    assert_eq!(relu.op_name(), Some("relu"));
    assert!(relu.tensor().is_some());
    let matmul = &relu.inputs()[0];
    assert_eq!((matmul.op_name(), matmul.shape(), matmul.tensor().is_none()), (Some("matmul"), &[2, 2][..], true));
    assert!(matmul.inputs().iter().all(|input| input.tensor().is_some()));
    // The gradients are unchanged, and a hook on the dropped intermediate still runs.
    // By hand: h = x w = [[0, 5], [1, -11]]; dL/dh = 2 relu(h) 1[h > 0] = [[0, 10], [2, 0]];
    // dL/dx = dL/dh wᵀ = [[-10, 20], [2, 1]]; dL/dw = xᵀ dL/dh = [[6, -10], [-8, 20]].
    assert_eq!(h_value, vec![0.0, 5.0, 1.0, -11.0]);
    let g = loss.backward().unwrap();
    assert_eq!(seen.lock().unwrap()[0], vec![0.0, 10.0, 2.0, 0.0]);
    assert_eq!(g.get(&x).unwrap().to_vec(), vec![-10.0, 20.0, 2.0, 1.0]);
    assert_eq!(g.get(&w).unwrap().to_vec(), vec![6.0, -10.0, -8.0, 20.0]);
}

#[test]
fn backward_writes_over_a_cotangent_only_when_nothing_else_holds_it() {
    // Elementwise rules reuse the cotangent's buffer when they alone hold it; a cotangent
    // the caller passed, one a hook kept, or one grad() returns must stay as it was.
    let x = t(&[-1.0, 2.0]).requires_grad_(true).unwrap();
    let g = t(&[5.0, 7.0]);
    let grads = x.relu().backward_with(&g).unwrap();
    assert_eq!((grads.get(&x).unwrap().to_vec(), g.to_vec()), (vec![0.0, 7.0], vec![5.0, 7.0]));

    let h = x.mul_scalar(2.0); // h = [-2, 4], L = Σ relu(h): dL/dh = [0, 1], dL/dx = [0, 2]
    let kept = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let stash = kept.clone();
    let _hook = h.register_hook(move |g| {
        stash.lock().unwrap().push(g.clone());
        None
    });
    let loss = h.relu().sum();
    let grads = loss.backward().unwrap();
    assert_eq!(grads.get(&x).unwrap().to_vec(), vec![0.0, 2.0]);
    assert_eq!(kept.lock().unwrap()[0].to_vec(), vec![0.0, 1.0]);
    let both = nabla::grad(&[&loss], &[&h, &x], None, false).unwrap();
    assert_eq!((both[0].to_vec(), both[1].to_vec()), (vec![0.0, 1.0], vec![0.0, 2.0]));
}

/// `y = x³` as a custom op, three ways: its rule with tensor ops (differentiable), on raw
/// arrays and unmarked, on raw arrays and marked `first_order()`.
fn cube(x: &Tensor<f64>, how: &str) -> Tensor<f64> {
    use nabla::autograd::rule;
    let value = x.value().mapv(|v| v * v * v);
    match how {
        "tensor ops" => Tensor::from_op(
            value,
            &[x],
            rule("cube", |xs: &[Tensor<f64>], _y: &Tensor<f64>, gy: &Tensor<f64>| vec![Some(gy * &(&xs[0] * &xs[0]) * 3.0)]),
        ),
        "arrays" => Tensor::from_op(
            value,
            &[x],
            rule("cube", |xs: &[Tensor<f64>], _y: &Tensor<f64>, gy: &Tensor<f64>| {
                let d = &xs[0].value().mapv(|v| 3.0 * v * v) * &gy.value();
                vec![Some(Tensor::from(d))]
            }),
        ),
        _ => Tensor::from_op(
            value,
            &[x],
            rule("cube", |xs: &[Tensor<f64>], _y: &Tensor<f64>, gy: &Tensor<f64>| {
                let d = &xs[0].value().mapv(|v| 3.0 * v * v) * &gy.value();
                vec![Some(Tensor::from(d))]
            })
            .first_order(),
        ),
    }
}

/// DESIGN.md: a rule that is not differentiable says so on double backward, never a wrong
/// number. An array rule once gave `d²(x³)/dx² = 0` here, silently.
#[test]
fn a_custom_rule_on_raw_arrays_is_refused_on_double_backward_never_a_silent_zero() {
    use nabla::autograd::{GradcheckOptions, gradcheck};
    let x = Tensor::<f64>::from_vec(vec![2.0, -1.0], &[2]).unwrap().requires_grad_(true).unwrap();
    // Tensor ops: d/dx x³ = 3x², d²/dx² = 6x.
    let dy = nabla::grad(&[&cube(&x, "tensor ops").sum()], &[&x], None, true).unwrap();
    let d2y = nabla::grad(&[&dy[0].sum()], &[&x], None, false).unwrap();
    assert_eq!((dy[0].to_vec(), d2y[0].to_vec()), (vec![12.0, 3.0], vec![12.0, -6.0]));
    // Raw arrays, unmarked: refused where the graph is cut, naming the op.
    let err = nabla::grad(&[&cube(&x, "arrays").sum()], &[&x], None, true).unwrap_err().to_string();
    assert!(err.starts_with("cube: the backward rule's gradient for input 0 is cut off"), "{err}");
    // First order alone is right either way.
    let g = cube(&x, "arrays").sum().backward().unwrap();
    assert_eq!(g.get(&x).unwrap().to_vec(), vec![12.0, 3.0]);
    // Marked first-order: gradcheck checks the first order; double backward is refused.
    gradcheck(|xs| Ok(cube(&xs[0], "marked")), &[x.detach()], &GradcheckOptions::default()).unwrap();
    let err = nabla::grad(&[&cube(&x, "marked").sum()], &[&x], None, true).unwrap_err().to_string();
    assert!(err.starts_with("cube: this backward rule is not differentiable"), "{err}");
}

#[test]
fn second_derivatives_of_linear_ops_are_zero_not_refused() {
    let x = Tensor::<f64>::from_vec(vec![2.0, -1.0], &[2]).unwrap().requires_grad_(true).unwrap();
    let dy = nabla::grad(&[&(&x * 3.0).sum()], &[&x], None, true).unwrap();
    assert_eq!(dy[0].to_vec(), vec![3.0, 3.0]);
    let d2y = nabla::grad(&[&dy[0].sum()], &[&x], None, false).unwrap();
    assert_eq!(d2y[0].to_vec(), vec![0.0, 0.0]);
}

#[test]
fn gradgradcheck_names_itself() {
    use nabla::autograd::{GradcheckOptions, gradgradcheck};
    let x = Tensor::<f64>::from_vec(vec![0.5, 1.5], &[2]).unwrap();
    // A first derivative that is right and a second one that is not: d/dx of 3x² is 6x,
    // but this rule's own gradient is built from a detached x.
    let wrong = |xs: &[Tensor<f64>]| -> nabla::Result<Tensor<f64>> {
        use nabla::autograd::rule;
        let x = &xs[0];
        Ok(Tensor::from_op(
            x.value().mapv(|v| v * v * v),
            &[x],
            rule("cube", |xs: &[Tensor<f64>], _y: &Tensor<f64>, gy: &Tensor<f64>| {
                vec![Some(gy * &(&xs[0].detach() * &xs[0].detach()) * 3.0)]
            }),
        ))
    };
    let err = gradgradcheck(wrong, &[x], &GradcheckOptions::default()).unwrap_err().to_string();
    assert!(err.starts_with("gradgradcheck: "), "{err}");
}

/// PyTorch keeps a non-leaf in the graph when asked for `requires_grad_(True)` and raises
/// for `False`; here the first once made a detached leaf, so x silently got no gradient.
#[test]
fn requires_grad_on_a_non_leaf_keeps_the_graph_or_says_why_not() {
    let x = Tensor::<f64>::from_vec(vec![1.0, 2.0], &[2]).unwrap().requires_grad_(true).unwrap();
    let y = (&x * 3.0).requires_grad_(true).unwrap();
    let g = y.sum().backward().unwrap();
    assert_eq!(g.get(&x).unwrap().to_vec(), vec![3.0, 3.0]);
    let err = (&x * 3.0).requires_grad_(false).unwrap_err().to_string();
    assert!(err.starts_with("requires_grad_: only a leaf's flag can change; this tensor was made by"), "{err}");
    let frozen = x.detach().requires_grad_(false).unwrap();
    assert!(!frozen.requires_grad() && frozen.is_leaf());
}
