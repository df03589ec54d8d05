//! Finite-difference checks (f64, central differences, random non-uniform cotangents) of
//! every op's backward rule, first and second order, on several shapes with broadcasting.
//! Inputs are drawn from each op's domain: positive for log/sqrt/pow, away from the kinks
//! of relu/abs/clamp/max (the kinks have golden values in tests/golden). Each op of the
//! registry is checked on its sample; the cases below add shapes, broadcasting and options.

use nabla::Result;
use nabla::autograd::{GradcheckOptions, gradcheck, gradgradcheck};
use nabla::prelude::*;
use ndarray::{ArrayD, arr2};

type Op = fn(&[Tensor<f64>]) -> Result<Tensor<f64>>;

fn randn(shape: &[usize], seed: u64) -> Tensor<f64> {
    Tensor::<f64>::randn(shape, &mut nabla::rng(seed))
}

/// Values in `[0.5, 2]`: positive, away from 0.
fn positive(shape: &[usize], seed: u64) -> Tensor<f64> {
    Tensor::<f64>::uniform(shape, 0.5, 2.0, &mut nabla::rng(seed))
}

/// Normal draws pushed at least 0.1 away from 0, where relu, abs and friends have kinks.
fn away_from_zero(shape: &[usize], seed: u64) -> Tensor<f64> {
    let x = randn(shape, seed);
    Tensor::<f64>::from_vec(x.to_vec().into_iter().map(|v| if v.abs() < 0.1 { v.signum() * 0.1 + v } else { v }).collect(), shape).unwrap()
}

/// Checks first and second order of `f` at `inputs`, naming the case on failure.
fn check(name: &str, f: Op, inputs: &[Tensor<f64>]) {
    let options = GradcheckOptions::default();
    if let Err(e) = gradcheck(f, inputs, &options) {
        panic!("{name}: first order: {e}");
    }
    if let Err(e) = gradgradcheck(f, inputs, &options) {
        panic!("{name}: second order: {e}");
    }
}

#[test]
fn every_registered_op_matches_finite_differences_to_second_order() {
    for op in nabla::ops::registry() {
        check(op.name, op.call, &(op.sample)());
    }
}

#[test]
fn unary_ops_match_finite_differences() {
    let cases: &[(&str, Op, Tensor<f64>)] = &[
        ("neg", |x| Ok(x[0].neg()), randn(&[3, 4], 1)),
        ("exp", |x| Ok(x[0].exp()), randn(&[3, 4], 2)),
        ("log", |x| Ok(x[0].log()), positive(&[5], 3)),
        ("sqrt", |x| Ok(x[0].sqrt()), positive(&[2, 3], 4)),
        ("abs", |x| Ok(x[0].abs()), away_from_zero(&[4, 2], 5)),
        ("pow 3", |x| Ok(x[0].pow(3.0)), randn(&[2, 3], 6)),
        ("pow -0.5", |x| Ok(x[0].pow(-0.5)), positive(&[4], 7)),
        ("pow 2.5", |x| Ok(x[0].pow(2.5)), positive(&[3, 2], 8)),
        ("recip", |x| Ok(x[0].recip()), positive(&[3], 9)),
        ("sigmoid", |x| Ok(x[0].sigmoid()), randn(&[3, 4], 10)),
        ("tanh", |x| Ok(x[0].tanh()), randn(&[2, 2, 3], 11)),
        ("sin", |x| Ok(x[0].sin()), randn(&[3, 4], 31)),
        ("cos", |x| Ok(x[0].cos()), randn(&[3, 4], 32)),
        ("relu", |x| Ok(x[0].relu()), away_from_zero(&[3, 4], 12)),
        ("leaky_relu", |x| Ok(x[0].leaky_relu(0.1)), away_from_zero(&[3, 4], 13)),
        ("softplus", |x| Ok(x[0].softplus(1.0, 20.0)), randn(&[3, 5], 14)),
        ("softplus beta 2 threshold 1", |x| Ok(x[0].softplus(2.0, 1.0)), away_from_zero(&[3, 5], 15).mul_scalar(0.2).add_scalar(0.26)),
        ("clamp", |x| Ok(x[0].clamp(-0.5, 0.7)), Tensor::<f64>::from_vec(vec![-1.0, -0.3, 0.1, 0.5, 0.9, 2.0], &[2, 3]).unwrap()),
        ("add_scalar", |x| Ok(&x[0] + 2.5), randn(&[3], 16)),
        ("mul_scalar", |x| Ok(&x[0] * -1.5), randn(&[3], 17)),
        ("div_scalar", |x| Ok(&x[0] / 4.0), randn(&[3], 18)),
        ("scalar minus", |x| Ok(1.0 - &x[0]), randn(&[3], 19)),
        ("scalar over", |x| Ok(2.0 / &x[0]), positive(&[3], 20)),
        ("dropout_eval", |x| Ok(x[0].dropout_eval()), randn(&[2, 3], 21)),
    ];
    for (name, f, x) in cases {
        check(name, *f, std::slice::from_ref(x));
    }
}

#[test]
fn binary_ops_match_finite_differences_with_broadcasting() {
    let shapes: &[(&[usize], &[usize])] = &[(&[3, 4], &[3, 4]), (&[3, 4], &[4]), (&[2, 1, 4], &[3, 1]), (&[], &[2, 3]), (&[2, 3], &[2, 1])];
    let ops: &[(&str, Op)] = &[
        ("add", |x| x[0].add(&x[1])),
        ("sub", |x| x[0].sub(&x[1])),
        ("mul", |x| x[0].mul(&x[1])),
        ("div", |x| x[0].div(&x[1])),
        ("maximum", |x| x[0].maximum(&x[1])),
        ("minimum", |x| x[0].minimum(&x[1])),
        ("operators", |x| Ok(&(&x[0] * &x[1]) - &(&x[0] / &x[1]) + 1.0)),
    ];
    for (k, (sa, sb)) in shapes.iter().enumerate() {
        for (name, f) in ops {
            // Positive b keeps div away from its pole; distinct ranges keep max/min away
            // from ties.
            let a = randn(sa, 100 + k as u64);
            let b = positive(sb, 200 + k as u64).add_scalar(2.5);
            check(&format!("{name} {sa:?} {sb:?}"), *f, &[a, b]);
        }
    }
}

#[test]
fn where_routes_gradients_by_condition() {
    let f: Op = |x| {
        let c = Tensor::<f64>::from_vec(vec![1.0, -1.0, 0.0, 2.0], &[4, 1]).unwrap();
        nabla::where_(&c, &x[0], &x[1])
    };
    check("where", f, &[randn(&[4, 3], 30), randn(&[3], 31)]);
}

#[test]
fn reductions_match_finite_differences() {
    let ops: &[(&str, Op)] = &[
        ("sum", |x| Ok(x[0].sum())),
        ("sum dims", |x| x[0].sum_dims(&[0, 2], false)),
        ("sum keepdim", |x| x[0].sum_dims(&[-1], true)),
        ("mean", |x| Ok(x[0].mean())),
        ("mean dims", |x| x[0].mean_dims(&[1], true)),
        ("amax", |x| x[0].amax_dims(&[1], false)),
        ("amin", |x| x[0].amin_dims(&[0, 2], true)),
        ("amax all", |x| Ok(x[0].amax())),
        ("logsumexp", |x| x[0].logsumexp_dims(&[1], false)),
        ("logsumexp two dims", |x| x[0].logsumexp_dims(&[0, 2], true)),
        ("softmax", |x| x[0].softmax(1)),
        ("softmax last", |x| x[0].softmax(-1)),
        ("log_softmax", |x| x[0].log_softmax(0)),
        ("log_softmax last", |x| x[0].log_softmax(-1)),
        ("log_softmax of a transposed view", |x| x[0].permute(&[2, 1, 0])?.log_softmax(-1)),
    ];
    for (name, f) in ops {
        check(name, *f, &[randn(&[2, 3, 4], 40)]);
    }
}

#[test]
fn shape_ops_match_finite_differences() {
    let ops: &[(&str, Op)] = &[
        ("reshape", |x| x[0].reshape(&[4, -1])),
        ("flatten", |x| x[0].flatten(1, 2)),
        ("unsqueeze", |x| x[0].unsqueeze(1)),
        ("permute", |x| x[0].permute(&[2, 0, 1])),
        ("transpose", |x| x[0].transpose(0, 2)),
        ("expand", |x| x[0].narrow(1, 0, 1)?.expand(&[3, 2, 3, 4])),
        ("narrow", |x| x[0].narrow(2, 1, 2)),
        ("index_select", |x| x[0].index_select(2, &[3, 0, 3, 1])),
        ("gather", |x| x[0].gather(1, &ndarray::Array3::from_shape_fn((2, 2, 4), |(i, j, k)| (i + 2 * j + k) % 3).into_dyn())),
        ("cat", |x| Tensor::cat(&[x[0].clone(), x[0].exp()], 1)),
        ("stack", |x| Tensor::stack(&[x[0].clone(), x[0].pow(2.0), x[0].neg()], 3)),
        ("permute then reduce", |x| x[0].permute(&[1, 2, 0])?.sum_dims(&[0], false)),
    ];
    for (name, f) in ops {
        check(name, *f, &[randn(&[2, 3, 4], 50)]);
    }
}

#[test]
fn matmul_and_linear_match_finite_differences() {
    let shapes: &[(&[usize], &[usize])] = &[
        (&[3, 4], &[4, 5]),
        (&[4], &[4]),
        (&[4], &[4, 3]),
        (&[3, 4], &[4]),
        (&[2, 3, 4], &[4, 2]),
        (&[2, 3, 4], &[2, 4, 5]),
        (&[2, 1, 3, 4], &[3, 4, 2]),
    ];
    for (k, (sa, sb)) in shapes.iter().enumerate() {
        check(&format!("matmul {sa:?} @ {sb:?}"), |x| x[0].matmul(&x[1]), &[randn(sa, 60 + k as u64), randn(sb, 70 + k as u64)]);
    }
    check("matmul of a transpose", |x| x[0].t().matmul(&x[1]), &[randn(&[4, 3], 80), randn(&[4, 2], 81)]);
    check("linear", |x| x[0].linear(&x[1], Some(&x[2])), &[randn(&[4, 3], 82), randn(&[5, 3], 83), randn(&[5], 84)]);
    check("linear 3-D input, no bias", |x| x[0].linear(&x[1], None), &[randn(&[2, 4, 3], 85), randn(&[5, 3], 86)]);
    // A strided (batch-first) view: the rule reuses the forward pass's contiguous copy.
    check(
        "linear of a transposed input",
        |x| x[0].transpose(0, 1)?.linear(&x[1], Some(&x[2])),
        &[randn(&[4, 2, 3], 87), randn(&[5, 3], 88), randn(&[5], 89)],
    );
}

#[test]
fn gradcheck_catches_a_wrong_rule() {
    use nabla::autograd::rule;
    // y = x², with a rule that forgets the factor 2.
    let wrong: Op =
        |x| Ok(Tensor::from_op(x[0].value().mapv(|v| v * v), &[&x[0]], rule("wrong_square", |inputs, _y, gy| vec![Some(gy * &inputs[0])])));
    let err = gradcheck(wrong, &[randn(&[3], 90)], &GradcheckOptions::default()).unwrap_err();
    assert!(err.to_string().starts_with("gradcheck: input 0 of shape [3], element 0: backward gives"), "{err}");
}

#[test]
fn gather_index_shape_from_ndarray() {
    // Sanity of the index type used above: an ndarray of usize, any shape.
    let idx: ArrayD<usize> = arr2(&[[0usize, 1], [1, 0]]).into_dyn();
    let x = Tensor::<f64>::from_vec(vec![1.0, 2.0, 3.0, 4.0], &[2, 2]).unwrap();
    assert_eq!(x.gather(0, &idx).unwrap().to_vec(), vec![1.0, 4.0, 3.0, 2.0]);
}

#[test]
fn linear_matches_its_composition() {
    // The fused op against x Wᵀ + b written with matmul, transpose and add.
    let x = randn(&[2, 3, 4], 91);
    let w = randn(&[5, 4], 92);
    let b = randn(&[5], 93);
    let fused = x.linear(&w, Some(&b)).unwrap();
    let composed = x.matmul(&w.t()).unwrap().add(&b).unwrap();
    for (a, c) in fused.to_vec().iter().zip(composed.to_vec()) {
        assert!((a - c).abs() < 1e-14);
    }
}

/// `n` values spread over [-4.5, 4.5], none within 0.05 of the kinks the activations have
/// (0, ±0.5, ±1, ±3, 6): finite differences there would straddle them.
fn away_from_kinks(shape: &[usize], seed: u64) -> Tensor<f64> {
    let kinks = [0.0, 0.5, -0.5, 1.0, -1.0, 3.0, -3.0, 6.0, 0.3];
    let x = Tensor::<f64>::uniform(shape, -4.5, 4.5, &mut nabla::rng(seed)).to_vec();
    let moved = x.into_iter().map(|v| if kinks.iter().any(|k| (v - k).abs() < 0.05) { v + 0.1 } else { v }).collect();
    Tensor::<f64>::from_vec(moved, shape).unwrap()
}

/// The normalisation functions as users call them: layer norm over two trailing dims (its
/// weight and bias reshaped into the fused op), group norm (the fused rows, then a
/// per-channel affine), batch norm in training and on running statistics, each with every
/// input differentiated.
#[test]
fn normalisations_match_finite_differences_to_second_order() {
    use nabla::nn::Buffer;
    use nabla::nn::functional::{batch_norm, group_norm, layer_norm};
    let x = randn(&[2, 4, 3, 2], 60);
    let (w, b) = (randn(&[3, 2], 61), randn(&[3, 2], 62));
    check("layer_norm [3, 2]", |v| layer_norm(&v[0], &[3, 2], Some(&v[1]), Some(&v[2]), 1e-5), &[x.clone(), w, b]);
    let (w, b) = (randn(&[4], 63), randn(&[4], 64));
    check("group_norm 2 groups", |v| group_norm(&v[0], 2, Some(&v[1]), Some(&v[2]), 1e-5), &[x.clone(), w.clone(), b.clone()]);
    check(
        "batch_norm training",
        |v| batch_norm(&v[0], None, None, Some(&v[1]), Some(&v[2]), true, 0.1, 1e-5),
        &[x.clone(), w.clone(), b.clone()],
    );
    let eval = |v: &[Tensor<f64>]| {
        let mean = Buffer::new(Tensor::<f64>::from_vec(vec![0.1, -0.2, 0.3, 0.0], &[4])?);
        let var = Buffer::new(Tensor::<f64>::from_vec(vec![0.5, 1.5, 2.0, 0.8], &[4])?);
        batch_norm(&v[0], Some(&mean), Some(&var), Some(&v[1]), Some(&v[2]), false, 0.1, 1e-5)
    };
    check("batch_norm running statistics", eval, &[x, w, b]);
}

#[test]
fn activations_match_finite_differences_to_second_order() {
    use nabla::nn::functional::{self as F, GeluApproximate};
    let cases: &[(&str, Op)] = &[
        ("elu", |x| Ok(F::elu(&x[0], 1.3))),
        ("selu", |x| Ok(F::selu(&x[0]))),
        ("celu", |x| F::celu(&x[0], 0.7)),
        ("gelu", |x| Ok(F::gelu(&x[0], GeluApproximate::None))),
        ("gelu tanh", |x| Ok(F::gelu(&x[0], GeluApproximate::Tanh))),
        ("silu", |x| Ok(F::silu(&x[0]))),
        ("mish", |x| Ok(F::mish(&x[0]))),
        ("hardtanh", |x| Ok(F::hardtanh(&x[0], -1.0, 1.0))),
        ("relu6", |x| Ok(F::relu6(&x[0]))),
        ("hardsigmoid", |x| Ok(F::hardsigmoid(&x[0]))),
        ("hardswish", |x| Ok(F::hardswish(&x[0]))),
        ("logsigmoid", |x| Ok(F::logsigmoid(&x[0]))),
        ("softsign", |x| Ok(F::softsign(&x[0]))),
        ("tanhshrink", |x| Ok(F::tanhshrink(&x[0]))),
        ("softshrink", |x| F::softshrink(&x[0], 0.5)),
        ("hardshrink", |x| Ok(F::hardshrink(&x[0], 0.5))),
        ("threshold", |x| Ok(F::threshold(&x[0], 0.3, -2.0))),
        ("glu", |x| F::glu(&x[0], 1)),
        ("softmin", |x| F::softmin(&x[0], 0)),
        ("erf", |x| Ok(x[0].erf())),
    ];
    for (name, f) in cases {
        check(name, *f, &[away_from_kinks(&[3, 4], 40)]);
    }
}

#[test]
fn regression_and_binary_losses_match_finite_differences_to_second_order() {
    use nabla::nn::functional::{self as F, KlReduction, Reduction};
    let (x, y) = (away_from_kinks(&[3, 4], 41), away_from_kinks(&[3, 4], 42));
    let probabilities = positive(&[3, 4], 43).mul_scalar(0.4);
    let labels = Tensor::<f64>::from_vec((0..12).map(|i| if i % 3 == 0 { -1.0 } else { 1.0 }).collect(), &[3, 4]).unwrap();
    let pos_weight = Tensor::<f64>::from_vec(vec![1.0, 3.0, 0.5, 2.0], &[4]).unwrap();
    check("l1", |v| F::l1_loss(&v[0], &v[1], Reduction::Mean), &[x.clone(), y.clone()]);
    check("smooth_l1", |v| F::smooth_l1_loss(&v[0], &v[1], 0.7, Reduction::Sum), &[x.clone(), y.clone()]);
    check("huber", |v| F::huber_loss(&v[0], &v[1], 1.5, Reduction::Mean), &[x.clone(), y.clone()]);
    check(
        "bce",
        |v| F::binary_cross_entropy(&v[0], &v[1], None, Reduction::Mean),
        &[probabilities.clone(), positive(&[3, 4], 44).mul_scalar(0.4)],
    );
    let w = pos_weight.clone();
    let bce_logits = move |v: &[Tensor<f64>]| F::binary_cross_entropy_with_logits(&v[0], &v[1], None, Some(&w), Reduction::Mean);
    gradcheck(&bce_logits, &[x.clone(), probabilities.clone()], &GradcheckOptions::default()).unwrap();
    gradgradcheck(&bce_logits, &[x.clone(), probabilities.clone()], &GradcheckOptions::default()).unwrap();
    let l = labels.clone();
    let soft_margin = move |v: &[Tensor<f64>]| F::soft_margin_loss(&v[0], &l, Reduction::Mean);
    gradgradcheck(&soft_margin, std::slice::from_ref(&x), &GradcheckOptions::default()).unwrap();
    let l = labels.clone();
    let hinge = move |v: &[Tensor<f64>]| F::hinge_embedding_loss(&v[0], &l, 1.0, Reduction::Mean);
    gradcheck(&hinge, std::slice::from_ref(&x), &GradcheckOptions::default()).unwrap();
    check("kl_div", |v| F::kl_div(&v[0], &v[1], KlReduction::BatchMean, false), &[x.clone(), probabilities.clone()]);
    check("kl_div log_target", |v| F::kl_div(&v[0], &v[1], KlReduction::Sum, true), &[x.clone(), y.clone()]);
    check("poisson_nll", |v| F::poisson_nll_loss(&v[0], &v[1], true, false, 1e-8, Reduction::Mean), &[x.clone(), positive(&[3, 4], 45)]);
    check(
        "poisson_nll full",
        |v| F::poisson_nll_loss(&v[0], &v[1], false, true, 1e-8, Reduction::Sum),
        &[positive(&[3, 4], 46), positive(&[3, 4], 47).mul_scalar(2.0)],
    );
    check(
        "cross_entropy probabilities",
        |v| F::cross_entropy_probs(&v[0], &v[1], None, 0.1, Reduction::Mean),
        &[x.clone(), probabilities.clone()],
    );
    check(
        "gaussian_nll",
        |v| F::gaussian_nll_loss(&v[0], &v[1], &v[2], true, 1e-6, Reduction::Mean),
        &[x.clone(), y.clone(), positive(&[3], 48)],
    );
    let (a, p, n) = (away_from_kinks(&[3, 4], 49), away_from_kinks(&[3, 4], 50), away_from_kinks(&[3, 4], 51));
    check(
        "triplet_margin p=2 swap",
        |v| F::triplet_margin_loss(&v[0], &v[1], &v[2], 3.0, 2.0, true, Reduction::Mean),
        &[a.clone(), p.clone(), n.clone()],
    );
    check(
        "triplet_margin p=3",
        |v| F::triplet_margin_loss(&v[0], &v[1], &v[2], 3.0, 3.0, false, Reduction::Sum),
        &[a.clone(), p.clone(), n],
    );
    let pm = Tensor::<f64>::from_vec(vec![1.0, -1.0, -1.0], &[3]).unwrap();
    let cosine = move |v: &[Tensor<f64>]| F::cosine_embedding_loss(&v[0], &v[1], &pm, -0.9, Reduction::Mean);
    gradcheck(&cosine, &[a.clone(), p.clone()], &GradcheckOptions::default()).unwrap();
    gradgradcheck(&cosine, &[a, p], &GradcheckOptions::default()).unwrap();
    // Hinges away from their kinks: x spread 0.3 apart and margins that avoid ties.
    let targets = ndarray::arr1(&[2usize, 0, 3]).into_dyn();
    let w = Tensor::<f64>::from_vec(vec![1.0, 0.5, 2.0, 1.5], &[4]).unwrap();
    let multi = move |v: &[Tensor<f64>]| F::multi_margin_loss(&v[0], &targets, 2, 0.65, Some(&w), Reduction::Mean);
    gradcheck(&multi, std::slice::from_ref(&x), &GradcheckOptions::default()).unwrap();
    gradgradcheck(&multi, std::slice::from_ref(&x), &GradcheckOptions::default()).unwrap();
    let lists = ndarray::arr2(&[[1i64, 3, -1, 0], [2, -1, 2, 2], [0, 1, 2, 3]]).into_dyn();
    let multilabel = move |v: &[Tensor<f64>]| F::multilabel_margin_loss(&v[0], &lists, Reduction::Sum);
    gradcheck(&multilabel, std::slice::from_ref(&x), &GradcheckOptions::default()).unwrap();
    gradgradcheck(&multilabel, std::slice::from_ref(&x), &GradcheckOptions::default()).unwrap();
}

#[test]
fn bce_with_logits_equals_bce_of_the_sigmoid_and_stays_finite_where_it_overflows() {
    use nabla::nn::functional::{Reduction, binary_cross_entropy, binary_cross_entropy_with_logits};
    let logits = Tensor::<f64>::from_vec(vec![-8.0, -1.5, 0.0, 0.3, 2.0, 9.0], &[6]).unwrap();
    let target = Tensor::<f64>::from_vec(vec![0.0, 1.0, 0.5, 0.2, 1.0, 0.0], &[6]).unwrap();
    let stable = binary_cross_entropy_with_logits(&logits, &target, None, None, Reduction::None).unwrap().to_vec();
    let direct = binary_cross_entropy(&logits.sigmoid(), &target, None, Reduction::None).unwrap().to_vec();
    for (a, b) in stable.iter().zip(&direct) {
        assert!((a - b).abs() < 1e-12 * (1.0 + b.abs()), "{a} vs {b}");
    }
    // σ(800) rounds to 1, so BCE of the sigmoid hits its clamp (100); the logits form is exact.
    let far = Tensor::<f64>::from_vec(vec![800.0, -800.0], &[2]).unwrap();
    let zero = Tensor::<f64>::zeros(&[2]);
    assert_eq!(binary_cross_entropy_with_logits(&far, &zero, None, None, Reduction::None).unwrap().to_vec(), vec![800.0, 0.0]);
    assert_eq!(binary_cross_entropy(&far.sigmoid(), &zero, None, Reduction::None).unwrap().to_vec()[0], 100.0);
}
