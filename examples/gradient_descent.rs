//! Full-batch gradient descent, stochastic gradient descent and mini-batch SGD on one
//! least-squares problem: the same loop with batches of N, 1 and 32 samples.
//!
//! Data: `y = X w* + b* + ε` with 1,000 samples of 10 features (seeded). Each method runs
//! for the same number of epochs (passes over the data); the program prints the final loss
//! of each next to the least-squares optimum, and writes
//! `target/nabla-examples/gradient_descent/loss.svg`: the full-data loss against epochs and
//! against wall time. `--quick` runs 5 epochs.

mod common;

use nabla::nn::functional::{Reduction, mse_loss};
use nabla::prelude::*;
use std::time::Instant;

struct Run {
    name: &'static str,
    by_epoch: Vec<(f64, f64)>,
    by_time: Vec<(f64, f64)>,
}

fn main() -> nabla::Result<()> {
    let quick = common::quick();
    let epochs = if quick { 5 } else { 40 };
    let (n, d) = (1000, 10);
    let mut rng = nabla::rng(7);
    let x = Tensor::randn(&[n, d], &mut rng);
    let w_true = Tensor::randn(&[d, 1], &mut rng);
    let noise = Tensor::randn(&[n, 1], &mut rng).mul_scalar(0.1);
    let y = (x.matmul(&w_true)? + 0.5) + &noise;
    // The noise sets the floor: the least-squares optimum has loss close to its variance.
    let floor = noise.pow(2.0).mean().item()?;

    let mut runs = Vec::new();
    for (name, batch_size, lr) in [("full-batch GD (B = N)", n, 0.1), ("SGD (B = 1)", 1, 0.005), ("mini-batch SGD (B = 32)", 32, 0.05)] {
        let model = nn::Linear::new(d, 1, &mut nabla::rng(1));
        let mut opt = optim::Sgd::new(model.parameters(), lr);
        let full_loss = |model: &nn::Linear| -> nabla::Result<f64> {
            Ok(nabla::no_grad(|| mse_loss(&model.forward(&x)?, &y, Reduction::Mean))?.item()? as f64)
        };
        let mut run = Run { name, by_epoch: vec![(0.0, full_loss(&model)?)], by_time: Vec::new() };
        let mut elapsed = 0.0;
        let bar = common::progress(epochs as u64, name);
        for epoch in 1..=epochs {
            let start = Instant::now();
            for (bx, by) in data::Batches::new(&x, &y, batch_size, &mut rng) {
                let loss = mse_loss(&model.forward(&bx)?, &by, Reduction::Mean)?;
                opt.step(&loss.backward()?)?;
            }
            elapsed += start.elapsed().as_secs_f64();
            let loss = full_loss(&model)?;
            run.by_epoch.push((epoch as f64, loss));
            run.by_time.push(((elapsed * 1e3).log10(), loss));
            bar.inc(1);
        }
        bar.finish_and_clear();
        println!("{name:26} final loss {:.5} after {epochs} epochs, {:.1} ms of training", run.by_epoch.last().unwrap().1, elapsed * 1e3);
        runs.push(run);
    }
    println!("noise variance, about what the least-squares fit reaches: {floor:.5}");

    let dir = common::out_dir("gradient_descent");
    let series = |pick: fn(&Run) -> &Vec<(f64, f64)>| {
        runs.iter().map(|r| common::Series { label: r.name.into(), points: pick(r).clone() }).collect()
    };
    common::panels(
        &dir.join("loss.svg"),
        &[
            common::Panel {
                title: "loss against epochs".into(),
                x_label: "epoch".into(),
                y_label: "MSE".into(),
                series: series(|r| &r.by_epoch),
                log_y: true,
            },
            common::Panel {
                title: "loss against wall time".into(),
                x_label: "log10 ms of training".into(),
                y_label: "MSE".into(),
                series: series(|r| &r.by_time),
                log_y: true,
            },
        ],
    );
    println!("wrote {}", dir.join("loss.svg").display());
    Ok(())
}
