//! Energy-based models: inference finds known minimisers, free energies match closed forms
//! and their limits, and gradients pass through inference.

use nabla::autograd::{GradcheckOptions, gradcheck};
use nabla::ebm::{self, Inference, Method, infer, infer_unrolled};
use nabla::prelude::*;

#[test]
fn inference_recovers_a_known_minimiser() {
    // F(x, y) = |y - A x|² has its minimum at y = A x.
    let a = Tensor::<f64>::from_vec(vec![1.0, 2.0, -1.0, 0.5], &[2, 2]).unwrap();
    let energy = |x: &Tensor<f64>, y: &Tensor<f64>| y.sub(&x.matmul(&a.t())?)?.pow(2.0).sum_dims(&[1], false);
    let x = Tensor::<f64>::from_vec(vec![1.0, 1.0, -2.0, 0.5], &[2, 2]).unwrap();
    let found = infer(&energy, &x, &Tensor::<f64>::zeros(&[2, 2]), &Inference::default()).unwrap();
    let want = x.matmul(&a.t()).unwrap();
    let err = found.y.sub(&want).unwrap().abs().amax().item().unwrap();
    assert!(err < 1e-5, "|ŷ - Ax| = {err}");
    assert!(found.converged && found.energy.amax().item().unwrap() < 1e-9);
    assert!(found.trace.first() > found.trace.last(), "the energy went down: {:?}", &found.trace[..3]);

    // With a box the answer is the projection: the minimiser 3 is outside [-1, 1].
    let shifted = |_: &Tensor<f64>, y: &Tensor<f64>| y.add_scalar(-3.0).pow(2.0).sum_dims(&[1], false);
    let opts = Inference { bounds: Some((-1.0, 1.0)), ..Inference::default() };
    let boxed = infer(&shifted, &ebm::no_x(1), &Tensor::<f64>::zeros(&[1, 1]), &opts).unwrap();
    assert_eq!(boxed.y.item().unwrap(), 1.0);
}

#[test]
fn restarts_escape_a_local_minimum() {
    // A double well tilted to the left: a local minimum near y = 0.96, the global one near
    // y = -1.04. Plain descent from y = 1 stays in the local one.
    let well = |_: &Tensor<f64>, y: &Tensor<f64>| y.pow(2.0).add_scalar(-1.0).pow(2.0).add(&y.mul_scalar(0.3))?.sum_dims(&[1], false);
    let start = Tensor::<f64>::ones(&[1, 1]);
    let sgd = Method::Sgd { lr: 0.01, momentum: 0.0 };
    let one = infer(&well, &ebm::no_x(1), &start, &Inference { method: sgd, steps: 2000, ..Inference::default() }).unwrap();
    assert!(one.y.item().unwrap() > 0.9, "a single start stays at {}", one.y.item().unwrap());
    let many = Inference { method: sgd, steps: 2000, restarts: 8, restart_std: 1.5, ..Inference::default() };
    let best = infer(&well, &ebm::no_x(1), &start, &many).unwrap();
    let y = best.y.item().unwrap();
    assert!((-1.1..-1.0).contains(&y), "restarts find the global minimum, got {y}");
}

#[test]
fn the_free_energy_of_a_quadratic_matches_its_closed_form() {
    // E(y, z) = (a/2)(z - y)² + c: ∫ exp(-β E) dz = exp(-β c) √(2π / (β a)), so
    // F_β = c - (1 / 2β) log(2π / (β a)). A grid of spacing h on [y - 10, y + 10].
    let (a, c) = (3.0, 0.7);
    let energy =
        move |_: &Tensor<f64>, y: &Tensor<f64>, z: &Tensor<f64>| z.sub(y)?.pow(2.0).mul_scalar(a / 2.0).add_scalar(c).sum_dims(&[1], false);
    let h = 0.01;
    let zs = Tensor::<f64>::from_vec((0..=4000).map(|i| -20.0 + i as f64 * h).collect(), &[4001, 1]).unwrap();
    let y = Tensor::<f64>::from_vec(vec![0.0, 1.5], &[2, 1]).unwrap();
    for beta in [0.5, 1.0, 4.0] {
        let f = ebm::free_energy(&energy, &ebm::no_x(2), &y, &zs, beta, h.ln()).unwrap().to_vec();
        let exact = c - (2.0 * std::f64::consts::PI / (beta * a)).ln() / (2.0 * beta);
        for v in f {
            assert!((v - exact).abs() < 1e-9, "β = {beta}: {v} vs closed form {exact}");
        }
    }
}

#[test]
fn the_free_energy_tends_to_the_minimum_as_beta_grows() {
    // E(y, z) = (y - cos z)² + 0.1 sin(3z), z on a grid of angles: F_β → F_∞ = min_z E.
    let energy = |_: &Tensor<f64>, y: &Tensor<f64>, z: &Tensor<f64>| {
        y.sub(&z.cos())?.pow(2.0).add(&z.mul_scalar(3.0).sin().mul_scalar(0.1))?.sum_dims(&[1], false)
    };
    let k = 628;
    let zs = Tensor::<f64>::from_vec((0..k).map(|i| i as f64 * 0.01).collect(), &[k, 1]).unwrap();
    let y = Tensor::<f64>::from_vec(vec![0.3, -2.0], &[2, 1]).unwrap();
    let (f_inf, argmin) = ebm::free_energy_min(&energy, &ebm::no_x(2), &y, &zs).unwrap();
    assert_eq!(argmin.len(), 2);
    let mut gaps = Vec::new();
    for beta in [1.0, 10.0, 100.0, 1e3, 1e4, 1e5] {
        let f = ebm::free_energy(&energy, &ebm::no_x(2), &y, &zs, beta, 0.01f64.ln()).unwrap();
        gaps.push(f.sub(&f_inf).unwrap().abs().amax().item().unwrap());
    }
    assert!(gaps.windows(2).all(|w| w[1] < w[0]), "the gap shrinks with β: {gaps:?}");
    assert!(gaps[gaps.len() - 1] < 1e-3, "{gaps:?}");
}

#[test]
fn gradients_through_unrolled_inference_match_finite_differences() {
    // ŷ(x) after 15 gradient steps on F(x, y) = |y - tanh(W x)|² + 0.1 |y|²; the loss |ŷ|²
    // is differentiated through the steps (second-order gradients).
    let w = Tensor::<f64>::randn(&[3, 2], &mut nabla::rng(1));
    let energy = move |x: &Tensor<f64>, y: &Tensor<f64>| -> nabla::Result<Tensor<f64>> {
        y.sub(&x.matmul(&w.t())?.tanh())?.pow(2.0).add(&y.pow(2.0).mul_scalar(0.1))?.sum_dims(&[1], false)
    };
    let x = Tensor::<f64>::randn(&[2, 2], &mut nabla::rng(2));
    let y0 = Tensor::<f64>::zeros(&[2, 3]);
    gradcheck(|v| infer_unrolled(&energy, &v[0], &y0, 15, 0.2), &[x], &GradcheckOptions::default()).unwrap();
}

#[test]
fn contrastive_losses_have_their_hand_computed_values() {
    let observed = Tensor::<f64>::from_vec(vec![1.0, 0.2], &[2]).unwrap();
    let contrastive = Tensor::<f64>::from_vec(vec![1.5, 3.0], &[2]).unwrap();
    // max(0, 1 + 1 - 1.5) = 0.5, max(0, 1 + 0.2 - 3) = 0 → mean 0.25
    assert_eq!(ebm::hinge(&observed, &contrastive, 1.0).unwrap().item().unwrap(), 0.25);
    // Candidates {observed, contrastive}, β = 1: F + log(e^-F + e^-F̄).
    let candidates = Tensor::stack(&[observed.clone(), contrastive.clone()], 1).unwrap();
    let want = ((1.0 + ((-1.0f64).exp() + (-1.5f64).exp()).ln()) + (0.2 + ((-0.2f64).exp() + (-3.0f64).exp()).ln())) / 2.0;
    assert!((ebm::nll(&observed, &candidates, 1.0).unwrap().item().unwrap() - want).abs() < 1e-12);
    assert!(ebm::nll(&observed, &candidates, 0.0).is_err());
}

#[test]
fn an_energy_of_the_wrong_shape_is_an_error() {
    let bad = |_: &Tensor<f64>, y: &Tensor<f64>| Ok(y.clone());
    let err = infer(&bad, &ebm::no_x(2), &Tensor::<f64>::zeros(&[2, 3]), &Inference::default()).unwrap_err().to_string();
    assert!(err.contains("one value per example") && err.contains("[2, 3]"), "{err}");
}

#[test]
fn the_free_energy_by_descent_matches_the_exact_minimum() {
    // E(y, z) = (y - cos z)² + (z - 1)²/10 over a continuous z: descent against a fine grid,
    // and the gradient in y at the minimiser is ∂E/∂y there (envelope theorem).
    let energy = |_: &Tensor<f64>, y: &Tensor<f64>, z: &Tensor<f64>| {
        y.sub(&z.cos())?.pow(2.0).add(&z.add_scalar(-1.0).pow(2.0).mul_scalar(0.1))?.sum_dims(&[1], false)
    };
    let y = Tensor::<f64>::from_vec(vec![0.2, 0.9], &[2, 1]).unwrap().requires_grad_(true).unwrap();
    let (f, found) =
        ebm::free_energy_min_descent(&energy, &ebm::no_x(2), &y, &Tensor::<f64>::ones(&[2, 1]), &Inference::default()).unwrap();
    let grid = Tensor::<f64>::from_vec((0..4000).map(|i| -1.0 + i as f64 * 1e-3).collect(), &[4000, 1]).unwrap();
    let (exact, _) = ebm::free_energy_min(&energy, &ebm::no_x(2), &y.detach(), &grid).unwrap();
    assert!(f.sub(&exact).unwrap().abs().amax().item().unwrap() < 1e-6, "{:?} vs {:?}", f.to_vec(), exact.to_vec());
    let g = f.sum().backward().unwrap();
    let z = found.y.to_vec();
    let want: Vec<f64> = y.to_vec().iter().zip(&z).map(|(y, z)| 2.0 * (y - z.cos())).collect();
    let got = g.get(&y).unwrap().to_vec();
    assert!(got.iter().zip(&want).all(|(a, b)| (a - b).abs() < 1e-12), "{got:?} vs {want:?}");
}
