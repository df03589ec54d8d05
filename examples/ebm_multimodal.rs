//! One `x`, two right answers: `y = ±√x` plus noise. A feed-forward regressor trained with
//! the squared error predicts the average of the two branches (about 0); an energy-based
//! model `F(x, y)` learns low energy on both, and inference finds each branch from a start
//! on its side.
//!
//! The energy is an MLP of `(x, y)` (2 → 64 → 64 → 1, softplus), trained by maximum
//! likelihood of the Gibbs distribution `p(y|x) ∝ exp(-F(x, y))` over 81 candidate values
//! of `y` in [-3, 3] (`ebm::nll`). Inference: Adam on `y` from `y = +2` and from `y = -2`.
//! Prints, on 200 new `x`, the mean distance of the regressor's answer and of the EBM's two
//! answers to the nearest true branch (target: the EBM's below 0.15 for both starts, and
//! below the regressor's), and writes `target/nabla-examples/ebm_multimodal/fits.svg` and
//! `energy.svg`. `--quick` trains 20 steps instead of 1,500.

mod common;

use nabla::ebm::{self, Inference};
use nabla::nn::functional::{Reduction, mse_loss};
use nabla::prelude::*;
use rand::Rng;

const CANDIDATES: usize = 81;

/// `n` points: `x ∈ [0.2, 4]`, `y = ±√x + N(0, 0.1²)`.
fn samples(n: usize, rng: &mut impl Rng) -> nabla::Result<(Tensor, Tensor)> {
    let xs: Vec<f32> = (0..n).map(|_| rng.random_range(0.2..4.0f32)).collect();
    let ys: Vec<f32> = xs
        .iter()
        .map(|&x| if rng.random::<bool>() { 1.0 } else { -1.0 } * x.sqrt() + 0.1 * rng.sample::<f32, _>(rand_distr::StandardNormal))
        .collect();
    Ok((Tensor::from_vec(xs, &[n, 1])?, Tensor::from_vec(ys, &[n, 1])?))
}

fn main() -> nabla::Result<()> {
    let steps = if common::quick() { 20 } else { 1500 };
    let mut rng = nabla::rng(0);
    let energy_net = nn::Sequential::new()
        .push(nn::Linear::new(2, 64, &mut rng))
        .push(nn::Softplus::default())
        .push(nn::Linear::new(64, 64, &mut rng))
        .push(nn::Softplus::default())
        .push(nn::Linear::new(64, 1, &mut rng));
    let regressor = nn::Sequential::new().push(nn::Linear::new(1, 64, &mut rng)).push(nn::Tanh).push(nn::Linear::new(64, 1, &mut rng));
    let energy =
        |x: &Tensor, y: &Tensor| -> nabla::Result<Tensor> { energy_net.forward(&Tensor::cat(&[x.clone(), y.clone()], 1)?)?.reshape(&[-1]) };

    let grid: Vec<f32> = (0..CANDIDATES).map(|i| -3.0 + 6.0 * i as f32 / (CANDIDATES - 1) as f32).collect();
    let mut opt_e = optim::Adam::new(energy_net.parameters(), 3e-3);
    let mut opt_r = optim::Adam::new(regressor.parameters(), 3e-3);
    let bar = common::progress(steps as u64, "steps");
    for _ in 0..steps {
        let (x, y) = samples(128, &mut rng)?;
        // Energies of every candidate y for every x: (128·81) rows, reshaped to (128, 81).
        let xc = x.unsqueeze(1)?.expand(&[128, CANDIDATES as isize, 1])?.reshape(&[-1, 1])?;
        let yc = Tensor::from_vec(grid.clone(), &[1, CANDIDATES, 1])?.expand(&[128, CANDIDATES as isize, 1])?.reshape(&[-1, 1])?;
        let candidates = energy(&xc, &yc)?.reshape(&[128, CANDIDATES as isize])?;
        let observed = energy(&x, &y)?;
        let all = Tensor::cat(&[candidates, observed.unsqueeze(1)?], 1)?;
        opt_e.step(&ebm::nll(&observed, &all, 1.0)?.backward()?)?;
        opt_r.step(&mse_loss(&regressor.forward(&x)?, &y, Reduction::Mean)?.backward()?)?;
        bar.inc(1);
    }
    bar.finish_and_clear();

    // 200 new x: the regressor's answer and the EBM's answers from both sides.
    let (x, _) = samples(200, &mut nabla::rng(5))?;
    let regressed = nabla::no_grad(|| regressor.forward(&x))?;
    let opts = Inference { steps: 300, method: ebm::Method::Adam { lr: 0.05 }, ..Inference::default() };
    let upper = ebm::infer(&energy, &x, &Tensor::full(&[200, 1], 2.0), &opts)?.y;
    let lower = ebm::infer(&energy, &x, &Tensor::full(&[200, 1], -2.0), &opts)?.y;
    let xs = x.to_vec();
    let error = |t: &Tensor| xs.iter().zip(t.to_vec()).map(|(&x, y)| (y.abs() - x.sqrt()).abs() as f64).sum::<f64>() / xs.len() as f64;
    let (e_reg, e_up, e_low) = (error(&regressed), error(&upper), error(&lower));
    println!("mean distance to the nearest branch: regressor {e_reg:.3}, EBM from +2 {e_up:.3}, from -2 {e_low:.3}");
    let sides = |t: &Tensor| t.to_vec().iter().filter(|v| **v > 0.0).count();
    println!("answers above 0: regressor {}/200, EBM from +2 {}/200, from -2 {}/200", sides(&regressed), sides(&upper), sides(&lower));

    let dir = common::out_dir("ebm_multimodal");
    let (train_x, train_y) = samples(300, &mut nabla::rng(9))?;
    let points = |a: &Tensor, b: &Tensor| -> Vec<(f64, f64)> {
        let mut p: Vec<(f64, f64)> = a.to_vec().iter().zip(b.to_vec()).map(|(&u, v)| (u as f64, v as f64)).collect();
        p.sort_by(|p, q| p.0.total_cmp(&q.0));
        p
    };
    let mut data = common::Series { label: "data (±√x + noise)".into(), points: points(&train_x, &train_y) };
    data.points.sort_by(|p, q| p.1.total_cmp(&q.1));
    common::scatter_grid(
        &dir.join("fits.svg"),
        1,
        &[(
            "data (0), regressor (1), EBM from +2 (2), EBM from -2 (3)".to_string(),
            [data.points.clone(), points(&x, &regressed), points(&x, &upper), points(&x, &lower)].concat(),
        )],
        &[vec![0; data.points.len()], vec![1; 200], vec![2; 200], vec![3; 200]].concat(),
    );
    // The learned energy over (x, y), rows from y = 3 down to -3.
    let (nx, ny) = (40, 41);
    let gx: Vec<f32> = (0..nx).map(|i| 0.2 + 3.8 * i as f32 / (nx - 1) as f32).collect();
    let gy: Vec<f32> = (0..ny).map(|j| 3.0 - 6.0 * j as f32 / (ny - 1) as f32).collect();
    let xg = Tensor::from_vec(gy.iter().flat_map(|_| gx.clone()).collect(), &[nx * ny, 1])?;
    let yg = Tensor::from_vec(gy.iter().flat_map(|&y| std::iter::repeat_n(y, nx)).collect(), &[nx * ny, 1])?;
    let e = nabla::no_grad(|| energy(&xg, &yg))?.to_vec();
    let map: Vec<Vec<f64>> = e.chunks(nx).map(|r| r.iter().map(|&v| v as f64).collect()).collect();
    common::heatmaps(&dir.join("energy.svg"), 1, 10, &[("learned F(x, y): x to the right, y up".into(), map)], false);
    println!("wrote {} and {}", dir.join("fits.svg").display(), dir.join("energy.svg").display());
    common::report_target("EBM's worse mean distance to a branch", e_up.max(e_low), 0.15, false);
    common::report_target("EBM's worse distance / regressor's", e_up.max(e_low) / e_reg, 1.0, false);
    Ok(())
}
