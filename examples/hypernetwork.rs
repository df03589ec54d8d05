//! A hypernetwork: one network predicts the weights of another. The course's example of a
//! weight that is not a parameter but the output of a computation, so its gradient flows on
//! into the network that predicted it.
//!
//! A family of regressions `y = a·sin(x + b)` is indexed by the task vector `(a, b)`. The
//! hypernetwork `H: (a, b) ↦ θ` (Linear(2, 64), tanh, Linear(64, 49)) outputs the 49
//! weights of a small target network `f_θ: x ↦ y` (Linear(1, 16), tanh, Linear(16, 1)),
//! applied to every task in a batch at once by batched matrix products. Only H has
//! parameters; the loss of `f_θ` trains it end to end. For comparison, a plain MLP reads
//! `(x, a, b)` (Linear(3, 64), tanh, Linear(64, 64), tanh, Linear(64, 1)); both train with
//! Adam for the same steps on the same batches. Prints the gradient norm reaching H's first
//! layer at the first step (target: non-zero), both test errors on 200 new tasks, and writes
//! `target/nabla-examples/hypernetwork/fits.svg`. `--quick` trains 20 steps instead of 3,000.

mod common;

use nabla::nn::functional::{Reduction, mse_loss};
use nabla::prelude::*;
use rand::Rng;

const HIDDEN: usize = 16;
/// W1 (16×1), b1 (16), W2 (1×16), b2 (1).
const THETA: usize = 3 * HIDDEN + 1;
const POINTS: usize = 24;

/// `tasks` task vectors `(T, 2)`, inputs `(T, P, 1)` and targets `(T, P, 1)`.
fn batch(tasks: usize, rng: &mut impl Rng) -> nabla::Result<(Tensor, Tensor, Tensor)> {
    let params: Vec<(f32, f32)> = (0..tasks).map(|_| (rng.random_range(0.5..2.0), rng.random_range(0.0..std::f32::consts::PI))).collect();
    let xs: Vec<f32> = (0..tasks * POINTS).map(|_| rng.random_range(-std::f32::consts::PI..std::f32::consts::PI)).collect();
    let ys: Vec<f32> = xs.iter().enumerate().map(|(i, &x)| params[i / POINTS].0 * (x + params[i / POINTS].1).sin()).collect();
    let task = Tensor::from_vec(params.iter().flat_map(|&(a, b)| [a, b]).collect(), &[tasks, 2])?;
    Ok((task, Tensor::from_vec(xs, &[tasks, POINTS, 1])?, Tensor::from_vec(ys, &[tasks, POINTS, 1])?))
}

/// `f_θ(x)` for each task's own θ: `x (T, P, 1)`, `theta (T, 49)` → `(T, P, 1)`.
fn target_net(x: &Tensor, theta: &Tensor) -> nabla::Result<Tensor> {
    let t = theta.shape()[0] as isize;
    let h = HIDDEN as isize;
    let w1 = theta.narrow(1, 0, HIDDEN)?.reshape(&[t, 1, h])?; // W1ᵀ
    let b1 = theta.narrow(1, HIDDEN, HIDDEN)?.reshape(&[t, 1, h])?;
    let w2 = theta.narrow(1, 2 * HIDDEN, HIDDEN)?.reshape(&[t, h, 1])?; // W2ᵀ
    let b2 = theta.narrow(1, 3 * HIDDEN, 1)?.reshape(&[t, 1, 1])?;
    x.matmul(&w1)?.add(&b1)?.tanh().matmul(&w2)?.add(&b2)
}

fn main() -> nabla::Result<()> {
    let steps = if common::quick() { 20 } else { 3000 };
    let mut rng = nabla::rng(0);
    let hyper = nn::Sequential::new().push(nn::Linear::new(2, 64, &mut rng)).push(nn::Tanh).push(nn::Linear::new(64, THETA, &mut rng));
    let plain = nn::Sequential::new()
        .push(nn::Linear::new(3, 64, &mut rng))
        .push(nn::Tanh)
        .push(nn::Linear::new(64, 64, &mut rng))
        .push(nn::Tanh)
        .push(nn::Linear::new(64, 1, &mut rng));
    let plain_forward = |task: &Tensor, x: &Tensor| -> nabla::Result<Tensor> {
        let task = task.unsqueeze(1)?.expand(&[x.shape()[0] as isize, POINTS as isize, 2])?;
        plain.forward(&Tensor::cat(&[x.clone(), task], 2)?)
    };
    let count = |m: &nn::Sequential| m.parameters().iter().map(|p| p.numel()).sum::<usize>();
    println!("hypernetwork: {} parameters (predicting {THETA} weights per task); plain MLP: {} parameters", count(&hyper), count(&plain));
    let mut opt_h = optim::Adam::new(hyper.parameters(), 1e-3);
    let mut opt_p = optim::Adam::new(plain.parameters(), 1e-3);
    let (mut curve_h, mut curve_p) = (Vec::new(), Vec::new());
    let first_weight = hyper.parameters()[0].clone();
    let bar = common::progress(steps as u64, "steps");
    for step in 1..=steps {
        let (task, x, y) = batch(32, &mut rng)?;
        let loss_h = mse_loss(&target_net(&x, &hyper.forward(&task)?)?, &y, Reduction::Mean)?;
        let grads = loss_h.backward()?;
        if step == 1 {
            let g = grads.get(&first_weight.tensor()).expect("the loss reaches the hypernetwork");
            bar.suspend(|| {
                println!("step 1: |dL/dW| of the hypernetwork's first layer = {:.4e}", g.pow(2.0).sum().item().unwrap_or(0.0).sqrt())
            });
            common::report_target("gradient norm reaching the hypernetwork", g.pow(2.0).sum().item()?.sqrt() as f64, 1e-9, true);
        }
        opt_h.step(&grads)?;
        let loss_p = mse_loss(&plain_forward(&task, &x)?, &y, Reduction::Mean)?;
        opt_p.step(&loss_p.backward()?)?;
        if step % 25 == 0 {
            curve_h.push((step as f64, loss_h.item()? as f64));
            curve_p.push((step as f64, loss_p.item()? as f64));
        }
        bar.inc(1);
    }
    bar.finish_and_clear();

    let (task, x, y) = batch(200, &mut nabla::rng(7))?;
    let (pred_h, pred_p) =
        nabla::no_grad(|| -> nabla::Result<(Tensor, Tensor)> { Ok((target_net(&x, &hyper.forward(&task)?)?, plain_forward(&task, &x)?)) })?;
    let (mse_h, mse_p) = (mse_loss(&pred_h, &y, Reduction::Mean)?.item()?, mse_loss(&pred_p, &y, Reduction::Mean)?.item()?);
    println!("test MSE on 200 new tasks: hypernetwork {mse_h:.4}, plain MLP {mse_p:.4} (the targets' variance is about 1.2)");

    // One new task drawn densely, with both fits.
    let (a, b) = (1.7f32, 2.5f32);
    let grid: Vec<f32> = (0..POINTS).map(|i| -std::f32::consts::PI + 2.0 * std::f32::consts::PI * i as f32 / (POINTS - 1) as f32).collect();
    let xg = Tensor::from_vec(grid.clone(), &[1, POINTS, 1])?;
    let tg = Tensor::from_vec(vec![a, b], &[1, 2])?;
    let (fh, fp) = nabla::no_grad(|| -> nabla::Result<(Vec<f32>, Vec<f32>)> {
        Ok((target_net(&xg, &hyper.forward(&tg)?)?.to_vec(), plain_forward(&tg, &xg)?.to_vec()))
    })?;
    let series = |label: &str, ys: Vec<f32>| common::Series {
        label: label.into(),
        points: grid.iter().zip(ys).map(|(&x, y)| (x as f64, y as f64)).collect(),
    };
    let dir = common::out_dir("hypernetwork");
    common::panels(
        &dir.join("fits.svg"),
        &[
            common::Panel {
                title: format!("task a = {a}, b = {b}"),
                x_label: "x".into(),
                y_label: "y".into(),
                series: vec![
                    series("true", grid.iter().map(|x| a * (x + b).sin()).collect()),
                    series("hypernetwork", fh),
                    series("plain MLP", fp),
                ],
                log_y: false,
            },
            common::Panel {
                title: "training loss".into(),
                x_label: "step".into(),
                y_label: "MSE".into(),
                series: vec![
                    common::Series { label: "hypernetwork".into(), points: curve_h },
                    common::Series { label: "plain MLP".into(), points: curve_p },
                ],
                log_y: true,
            },
        ],
    );
    println!("wrote {}", dir.join("fits.svg").display());
    Ok(())
}
