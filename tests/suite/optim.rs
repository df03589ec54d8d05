//! Optimisers, schedules, clipping and optimiser state.

use nabla::nn::functional::{Reduction, mse_loss};
use nabla::optim::{CosineAnnealingLr, ExponentialLr, LambdaLr, LinearLr, LrScheduler, Schedule, SequentialLr, StepLr};
use nabla::prelude::*;

/// Least squares `min ||Xw - y||²` solved by the normal equations `XᵀX w = Xᵀy` (Gaussian
/// elimination, f64), the reference for gradient descent.
#[allow(clippy::needless_range_loop)] // index notation reads like the algebra
fn normal_equations(x: &[Vec<f64>], y: &[f64]) -> Vec<f64> {
    let d = x[0].len();
    let mut a = vec![vec![0.0; d + 1]; d];
    for (row, &t) in x.iter().zip(y) {
        for i in 0..d {
            for j in 0..d {
                a[i][j] += row[i] * row[j];
            }
            a[i][d] += row[i] * t;
        }
    }
    for col in 0..d {
        let pivot = (col..d).max_by(|&p, &q| a[p][col].abs().total_cmp(&a[q][col].abs())).unwrap();
        a.swap(col, pivot);
        for r in 0..d {
            if r != col {
                let f = a[r][col] / a[col][col];
                for c in col..=d {
                    a[r][c] -= f * a[col][c];
                }
            }
        }
    }
    (0..d).map(|i| a[i][d] / a[i][i]).collect()
}

#[test]
fn full_batch_gradient_descent_reaches_the_normal_equation_solution() {
    let mut rng = nabla::rng(11);
    let x = Tensor::<f64>::randn(&[200, 3], &mut rng);
    let y = x.matmul(&Tensor::<f64>::from_vec(vec![1.5, -2.0, 0.5], &[3, 1]).unwrap()).unwrap()
        + &Tensor::<f64>::randn(&[200, 1], &mut rng).mul_scalar(0.3);
    let rows: Vec<Vec<f64>> = x.to_vec().chunks(3).map(|r| r.to_vec()).collect();
    let exact = normal_equations(&rows, &y.to_vec());
    let w = nn::Param::new(Tensor::<f64>::zeros(&[3, 1]));
    let mut opt = optim::Sgd::new(vec![w.clone()], 0.1);
    for _ in 0..500 {
        let loss = mse_loss(&x.matmul(&w.tensor()).unwrap(), &y, Reduction::Mean).unwrap();
        opt.step(&loss.backward().unwrap()).unwrap();
    }
    for (a, b) in w.tensor().to_vec().iter().zip(&exact) {
        assert!((a - b).abs() < 1e-10, "GD {a} vs normal equations {b}");
    }
}

#[test]
fn schedules_follow_their_closed_forms() {
    let step = StepLr { step_size: 3, gamma: 0.1 };
    assert_eq!((0..7).map(|e| step.lr_at(1.0, e)).collect::<Vec<_>>()[..], [1.0, 1.0, 1.0, 0.1, 0.1, 0.1, 0.1f64.powi(2)][..]);
    assert_eq!(ExponentialLr { gamma: 0.5 }.lr_at(2.0, 3), 0.25);
    let cosine = CosineAnnealingLr { t_max: 10, eta_min: 0.1 };
    assert_eq!(cosine.lr_at(1.0, 0), 1.0);
    assert!((cosine.lr_at(1.0, 5) - 0.55).abs() < 1e-15);
    assert!((cosine.lr_at(1.0, 10) - 0.1).abs() < 1e-15);
    let w = nn::Param::new(Tensor::zeros(&[1]));
    let mut opt = optim::Adam::new(vec![w], 0.1);
    let mut schedule = Schedule::new(ExponentialLr { gamma: 0.5 }, &mut opt).unwrap();
    schedule.step(&mut opt);
    schedule.step(&mut opt);
    assert_eq!(opt.lr(), 0.025);
}

/// PyTorch 2.15: `SequentialLR(SGD(lr=0.5), [LinearLR(0.25, 1.0, 4),
/// CosineAnnealingLR(6, 0.01)], milestones=[4])`, the rate of each of 12 epochs (read
/// before each `step`). The first is the warm-up's a quarter, set when the schedule is made.
#[test]
fn a_warm_up_then_cosine_gives_pytorchs_rates_from_epoch_zero() {
    let torch = [
        0.125,
        0.21875,
        0.3125,
        0.40625,
        0.5,
        0.4671762239271875,
        0.3775,
        0.255,
        0.13250000000000006,
        0.04282377607281252,
        0.01,
        0.04282377607281252,
    ];
    let warm_then_cosine = SequentialLr::new(
        vec![
            Box::new(LinearLr { start_factor: 0.25, end_factor: 1.0, total_iters: 4 }),
            Box::new(CosineAnnealingLr { t_max: 6, eta_min: 0.01 }),
        ],
        vec![4],
    )
    .unwrap();
    let mut opt = optim::Sgd::new(vec![nn::Param::new(Tensor::zeros(&[1]))], 0.5);
    let mut schedule = Schedule::new(warm_then_cosine, &mut opt).unwrap();
    for (epoch, expected) in torch.iter().enumerate() {
        assert!((opt.lr() - expected).abs() < 1e-15, "epoch {epoch}: {} against PyTorch's {expected}", opt.lr());
        schedule.step(&mut opt);
    }
    let halving = LambdaLr(|e| 0.5f64.powi(e as i32));
    let mut opt = optim::Sgd::new(vec![nn::Param::new(Tensor::zeros(&[1]))], 0.5);
    Schedule::new(halving, &mut opt).unwrap();
    assert_eq!(opt.lr(), 0.5, "LambdaLR's epoch 0: lr · f(0)");
}

#[test]
fn chained_schedules_check_their_milestones() {
    let two = || -> Vec<Box<dyn LrScheduler + Send + Sync>> {
        vec![Box::new(ExponentialLr { gamma: 0.5 }), Box::new(ExponentialLr { gamma: 0.9 })]
    };
    let err = SequentialLr::new(two(), vec![]).err().expect("one milestone needed").to_string();
    assert_eq!(err, "SequentialLr: 2 schedules need 1 milestones, got 0");
    let three: Vec<_> = two().into_iter().chain(two().into_iter().take(1)).collect();
    let err = SequentialLr::new(three, vec![5, 5]).err().expect("not increasing").to_string();
    assert_eq!(err, "SequentialLr: milestones [5, 5] do not increase");
    let bad = vec![Box::new(StepLr { step_size: 0, gamma: 0.1 }) as Box<dyn LrScheduler + Send + Sync>];
    assert!(SequentialLr::new(bad, vec![]).is_err());
    let err = LinearLr { start_factor: 0.0, ..Default::default() }.check().unwrap_err().to_string();
    assert_eq!(err, "LinearLr: start_factor 0 is not in (0, 1]");
    let mut opt = optim::Sgd::new(vec![nn::Param::new(Tensor::zeros(&[1]))], 0.5);
    assert!(Schedule::new(LinearLr { start_factor: 0.0, ..Default::default() }, &mut opt).is_err());
    assert_eq!(opt.lr(), 0.5, "a refused schedule leaves the rate alone");
}

#[test]
fn schedules_that_divide_by_zero_are_refused_by_name() {
    // PyTorch's StepLR and CosineAnnealingLR divide by step_size and T_max (a
    // ZeroDivisionError at the first step); both were once taken as 1 here, silently.
    let mut opt = optim::Sgd::new(vec![nn::Param::new(Tensor::zeros(&[1]))], 0.1);
    let err = Schedule::new(StepLr { step_size: 0, gamma: 0.1 }, &mut opt).err().expect("step_size 0 refused").to_string();
    assert!(err.contains("StepLr") && err.contains("step_size 0"), "{err}");
    let err = Schedule::new(CosineAnnealingLr { t_max: 0, eta_min: 0.0 }, &mut opt).err().expect("t_max 0 refused").to_string();
    assert!(err.contains("CosineAnnealingLr") && err.contains("t_max 0"), "{err}");
    assert!(StepLr { step_size: 0, gamma: 0.1 }.lr_at(1.0, 3).is_nan());
    assert!(CosineAnnealingLr { t_max: 0, eta_min: 0.0 }.lr_at(1.0, 3).is_nan());
    assert!(Schedule::new(StepLr { step_size: 1, gamma: 0.1 }, &mut opt).is_ok());
}

/// Five Adam steps on a fixed quadratic, interrupted after two by a save and a restore
/// into a fresh optimiser, end where five uninterrupted steps end.
#[test]
fn optimizer_state_saved_and_restored_continues_identically() {
    let target = Tensor::<f64>::from_vec(vec![1.0, -1.0, 2.0], &[3]).unwrap();
    let run = |interrupt: bool| -> Vec<f64> {
        let w = nn::Param::new(Tensor::<f64>::zeros(&[3]));
        let mut opt = optim::Adam::new(vec![w.clone()], 0.1).amsgrad(true);
        for k in 0..5 {
            if interrupt && k == 2 {
                let state = opt.state_dict();
                opt = optim::Adam::new(vec![w.clone()], 0.1).amsgrad(true);
                opt.load_state_dict(&state).unwrap();
            }
            let loss = (&w.tensor() - &target).pow(2.0).sum();
            opt.step(&loss.backward().unwrap()).unwrap();
        }
        w.tensor().to_vec()
    };
    assert_eq!(run(true), run(false));
    let w = nn::Param::new(Tensor::<f64>::zeros(&[3]));
    let mut opt = optim::Sgd::new(vec![w], 0.1).momentum(0.9);
    let mut bad = std::collections::BTreeMap::new();
    bad.insert("0.momentum_buffer".to_string(), Tensor::<f64>::zeros(&[4]));
    assert_eq!(opt.load_state_dict(&bad).unwrap_err().to_string(), "load_state_dict: 0.momentum_buffer has shape [4], parameter 0 has [3]");
}

#[test]
fn clipping_by_value_and_by_infinity_norm() {
    let w = Tensor::<f64>::from_vec(vec![3.0, -4.0], &[2]).unwrap().requires_grad_(true).unwrap();
    let mut grads = (&w * &w).sum().backward().unwrap(); // (6, -8)
    optim::clip_grad_value(&mut grads, 5.0).unwrap();
    assert_eq!(grads.get(&w).unwrap().to_vec(), vec![5.0, -5.0]);
    let norm = optim::clip_grad_norm_with(&mut grads, 1.0, optim::ClipNorm::default().norm_type(f64::INFINITY)).unwrap();
    assert_eq!(norm, 5.0);
    assert!((grads.get(&w).unwrap().to_vec()[0] - 5.0 / (5.0 + 1e-6)).abs() < 1e-15);
    assert!(optim::clip_grad_norm_with(&mut grads, 1.0, optim::ClipNorm::default().norm_type(0.0)).is_err());
}

/// The 1- and 2-norms against sums written out here, at lengths around the partial sums'
/// lane count and over two gradients.
#[test]
fn clip_norms_count_every_element() {
    for n in [1, 7, 8, 9, 17, 100] {
        let c: Vec<f64> = (0..n).map(|k| (k as f64 - 3.5) * 0.25).collect();
        let w = Tensor::<f64>::zeros(&[n]).requires_grad_(true).unwrap();
        let v = Tensor::<f64>::zeros(&[2]).requires_grad_(true).unwrap();
        let loss = (&w * &Tensor::<f64>::from_vec(c.clone(), &[n]).unwrap()).sum()
            + (&v * &Tensor::<f64>::from_vec(vec![-2.0, 0.5], &[2]).unwrap()).sum();
        let all: Vec<f64> = c.iter().copied().chain([-2.0, 0.5]).collect();
        let want = [(1.0, all.iter().map(|x| x.abs()).sum::<f64>()), (2.0, all.iter().map(|x| x * x).sum::<f64>().sqrt())];
        for (p, want) in want {
            let mut grads = loss.backward().unwrap();
            let norm = optim::clip_grad_norm_with(&mut grads, 1e9, optim::ClipNorm::default().norm_type(p)).unwrap();
            assert!((norm - want).abs() < 1e-12 * want, "n {n}, p {p}: {norm} vs {want}");
        }
    }
}

#[test]
fn nesterov_without_momentum_is_refused() {
    let w = nn::Param::new(Tensor::zeros(&[1]));
    let mut opt = optim::Sgd::new(vec![w.clone()], 0.1).nesterov(true);
    let err = opt.step(&w.tensor().sum().backward().unwrap()).unwrap_err();
    assert_eq!(err.to_string(), "Sgd: Nesterov momentum needs momentum > 0 and dampening 0, got 0 and 0");
}

#[test]
fn an_sgd_step_on_a_parameter_a_live_graph_holds_leaves_the_graph_its_old_value() {
    // Large enough to be updated in parallel chunks; 0.25 · g is exact in f32, so the
    // expected values are exact. With the graph alive the step writes a new buffer; once it
    // is dropped the next step updates in place.
    let n = 70_001;
    let w0: Vec<f32> = (0..n).map(|i| (i % 97) as f32).collect();
    let p = nn::Param::new(Tensor::from_vec(w0.clone(), &[n]).unwrap().requires_grad_(true).unwrap());
    let mut opt = optim::Sgd::new(vec![p.clone()], 0.25);
    let pool = rayon::ThreadPoolBuilder::new().num_threads(2).build().unwrap();
    // L = Σ w_i² / 2, so g = w.
    let loss = (p.tensor() * p.tensor()).sum() * 0.5;
    let grads = loss.backward().unwrap();
    let held = p.tensor();
    pool.install(|| opt.step(&grads)).unwrap();
    let expect: Vec<f32> = w0.iter().map(|w| w - 0.25 * w).collect();
    assert_eq!(p.tensor().to_vec(), expect, "w - lr·g");
    assert_eq!(held.to_vec(), w0, "the graph's copy of the old value");
    drop((loss, held));
    let grads = ((p.tensor() * p.tensor()).sum() * 0.5).backward().unwrap();
    pool.install(|| opt.step(&grads)).unwrap();
    let expect: Vec<f32> = expect.iter().map(|w| w - 0.25 * w).collect();
    assert_eq!(p.tensor().to_vec(), expect, "a second step, the graph dropped");
}

#[test]
fn a_long_gradients_norm_is_exact_and_the_same_on_one_and_two_threads() {
    // Past the length whose sum is split across threads; every square and partial sum is a
    // multiple of 1/16 below 2^40, so exact in f64 in any order, and so is the reference.
    for n in [65_545, 100_003] {
        let c: Vec<f64> = (0..n).map(|k| ((k % 16) as f64 - 7.5) * 0.25).collect();
        let w = Tensor::<f64>::zeros(&[n]).requires_grad_(true).unwrap();
        let loss = (&w * &Tensor::<f64>::from_vec(c.clone(), &[n]).unwrap()).sum();
        let l1: f64 = c.iter().map(|x| x.abs()).sum();
        let l2 = c.iter().map(|x| x * x).sum::<f64>().sqrt();
        for threads in [1, 2] {
            let pool = rayon::ThreadPoolBuilder::new().num_threads(threads).build().unwrap();
            for (p, want) in [(1.0, l1), (2.0, l2)] {
                let mut grads = loss.backward().unwrap();
                let norm = pool.install(|| optim::clip_grad_norm_with(&mut grads, 1e9, optim::ClipNorm::default().norm_type(p))).unwrap();
                assert_eq!(norm, want, "n {n}, p {p}, {threads} threads");
            }
        }
    }
}

#[test]
fn every_adaptive_optimizer_saved_and_restored_continues_identically() {
    type Make = fn(nn::Param<f64>) -> Box<dyn Optimizer<f64>>;
    let makers: &[(&str, Make)] = &[
        ("Adagrad", |w| Box::new(optim::Adagrad::new(vec![w], 0.1).lr_decay(0.01))),
        ("Adadelta", |w| Box::new(optim::Adadelta::new(vec![w], 1.0))),
        ("Adamax", |w| Box::new(optim::Adamax::new(vec![w], 0.05))),
        ("NAdam", |w| Box::new(optim::NAdam::new(vec![w], 0.05))),
        ("RAdam", |w| Box::new(optim::RAdam::new(vec![w], 0.05).weight_decay(0.1).decoupled_weight_decay(true))),
    ];
    let target = Tensor::<f64>::from_vec(vec![1.0, -1.0, 2.0], &[3]).unwrap();
    for (name, make) in makers {
        let run = |interrupt: bool| -> Vec<f64> {
            let w = nn::Param::new(Tensor::<f64>::zeros(&[3]));
            let mut opt = make(w.clone());
            for k in 0..8 {
                if interrupt && k == 3 {
                    let state = opt.state_dict();
                    opt = make(w.clone());
                    opt.load_state_dict(&state).unwrap();
                }
                let loss = (&w.tensor() - &target).pow(2.0).sum();
                opt.step(&loss.backward().unwrap()).unwrap();
            }
            w.tensor().to_vec()
        };
        let (a, b) = (run(true), run(false));
        assert_eq!(a, b, "{name}");
        let loss: f64 = a.iter().zip(target.to_vec()).map(|(w, t)| (w - t) * (w - t)).sum();
        assert!(loss < 6.0, "{name} did not move towards the target (loss 6 at the start): {a:?}");
    }
}

#[test]
fn maximize_ascends_as_descending_the_negated_loss_does() {
    // PyTorch's `maximize` negates the gradient: the same steps as minimising -f.
    type Make = fn(nn::Param<f64>, bool) -> Box<dyn Optimizer<f64>>;
    let makers: &[Make] = &[
        |w, m| Box::new(optim::Sgd::new(vec![w], 0.1).momentum(0.9).maximize(m)),
        |w, m| Box::new(optim::Adam::new(vec![w], 0.1).maximize(m)),
        |w, m| Box::new(optim::AdamW::new(vec![w], 0.1).maximize(m)),
        |w, m| Box::new(optim::RmsProp::new(vec![w], 0.01).maximize(m)),
        |w, m| Box::new(optim::Adagrad::new(vec![w], 0.1).maximize(m)),
        |w, m| Box::new(optim::Adadelta::new(vec![w], 1.0).maximize(m)),
        |w, m| Box::new(optim::Adamax::new(vec![w], 0.1).maximize(m)),
        |w, m| Box::new(optim::NAdam::new(vec![w], 0.1).maximize(m)),
        |w, m| Box::new(optim::RAdam::new(vec![w], 0.1).maximize(m)),
    ];
    let target = Tensor::<f64>::from_vec(vec![1.0, -1.0, 2.0], &[3]).unwrap();
    for (k, make) in makers.iter().enumerate() {
        let run = |maximize: bool| -> Vec<f64> {
            let w = nn::Param::new(Tensor::<f64>::zeros(&[3]));
            let mut opt = make(w.clone(), maximize);
            for _ in 0..6 {
                let f = (&w.tensor() - &target).pow(2.0).sum();
                let objective = if maximize { f.neg() } else { f };
                opt.step(&objective.backward().unwrap()).unwrap();
            }
            w.tensor().to_vec()
        };
        assert_eq!(run(true), run(false), "optimizer {k}");
    }
}
