//! Exploding and vanishing gradients: how the gradient of a loss at the end of a long
//! sequence reaches its early steps in a vanilla RNN and in an LSTM, and what clipping
//! does to training.
//!
//! The task: read 60 Gaussian numbers and output the sum of the last five (over √5). It
//! needs only a short memory, but the gradient still flows back through all 60 steps, and
//! in an RNN whose recurrent map expands, the early steps' part of it dominates. Part 1 measures `‖∂L/∂h_t‖` for every step `t` at
//! initialisation: an RNN whose recurrent matrix is orthogonal times 1.5 (the gradient grows
//! going back in time), the same with 0.6 (it vanishes), and an LSTM. Part 2 trains, with
//! SGD at a learning rate chosen for the typical gradient, the exploding RNN without and
//! with `clip_grad_norm(1.0)`, and the LSTM with it, recording the gradient norm (before
//! clipping) and the loss at every step. Prints the largest gradient norm and the final
//! loss (mean of the last 100 steps) of each run; the target: clipping makes the exploding
//! RNN reach a lower final loss than without (ratio clipped / unclipped <= 1).
//! Writes `target/nabla-examples/exploding_gradients/gradients.svg`. `--quick` trains 20
//! steps instead of 1,500.

mod common;

use nabla::nn::functional::{Reduction, mse_loss};
use nabla::prelude::*;

const STEPS: usize = 60;
const HIDDEN: usize = 32;
const BATCH: usize = 32;
const MEMORY: usize = 5;

#[derive(Module)]
struct Model {
    cell: nn::RecurrentCell,
    head: nn::Linear,
}

impl Model {
    fn new(kind: nn::CellKind, orthogonal_gain: Option<f64>, seed: u64) -> nabla::Result<Self> {
        let mut rng = nabla::rng(seed);
        let cell = nn::RecurrentCell::new(kind, 1, HIDDEN, true, &mut rng);
        if let Some(gain) = orthogonal_gain {
            cell.init_orthogonal(gain, &mut rng)?;
        }
        Ok(Model { cell, head: nn::Linear::new(HIDDEN, 1, &mut rng) })
    }

    /// The prediction `(N, 1)` and the hidden state of every step.
    fn run(&self, x: &Tensor) -> nabla::Result<(Tensor, Vec<Tensor>)> {
        let (mut h, mut c) = (Tensor::zeros(&[BATCH, HIDDEN]), Tensor::zeros(&[BATCH, HIDDEN]));
        let mut states = Vec::with_capacity(STEPS);
        for t in 0..STEPS {
            (h, c) = self.cell.step(&x.narrow(0, t, 1)?.squeeze(0)?, Some((&h, Some(&c))))?;
            states.push(h.clone());
        }
        Ok((self.head.forward(&h)?, states))
    }
}

/// Inputs `(T, N, 1)` and targets `(N, 1)`: the sum of the last `MEMORY` inputs over
/// √MEMORY (variance 1).
fn batch(rng: &mut impl rand::Rng) -> nabla::Result<(Tensor, Tensor)> {
    let x = Tensor::randn(&[STEPS, BATCH, 1], rng);
    let y = x.narrow(0, STEPS - MEMORY, MEMORY)?.sum_dims(&[0], false)? * (1.0 / (MEMORY as f64).sqrt());
    Ok((x, y))
}

fn main() -> nabla::Result<()> {
    let quick = common::quick();
    let train_steps = if quick { 20 } else { 1500 };

    // Part 1: the gradient reaching each step at initialisation.
    let (x, y) = batch(&mut nabla::rng(1))?;
    let mut through_time = Vec::new();
    for (label, kind, gain) in [
        ("RNN, orthogonal x 1.5", nn::CellKind::RnnTanh, Some(1.5)),
        ("RNN, orthogonal x 0.6", nn::CellKind::RnnTanh, Some(0.6)),
        ("LSTM, default init", nn::CellKind::Lstm, None),
    ] {
        let model = Model::new(kind, gain, 2)?;
        let (prediction, states) = model.run(&x)?;
        let loss = mse_loss(&prediction, &y, Reduction::Mean)?;
        let wrt: Vec<&Tensor> = states.iter().collect();
        let grads = nabla::grad(&[&loss], &wrt, None, false)?;
        let norms: Vec<(f64, f64)> =
            grads.iter().enumerate().map(|(t, g)| (t as f64, g.pow(2.0).sum().item().unwrap_or(f32::NAN).sqrt() as f64)).collect();
        println!("{label}: |dL/dh_t| at t = 0: {:.3e}, at t = {}: {:.3e}", norms[0].1, STEPS - 1, norms[STEPS - 1].1);
        through_time.push(common::Series { label: label.into(), points: norms });
    }

    // Part 2: training with and without clipping.
    let (mut norm_curves, mut loss_curves, mut finals) = (Vec::new(), Vec::new(), Vec::new());
    for (label, kind, gain, clip) in [
        ("RNN x 1.5, no clipping", nn::CellKind::RnnTanh, Some(1.5), false),
        ("RNN x 1.5, clipped to 1", nn::CellKind::RnnTanh, Some(1.5), true),
        ("LSTM, clipped to 1", nn::CellKind::Lstm, None, true),
    ] {
        let model = Model::new(kind, gain, 3)?;
        let mut opt = optim::Sgd::new(model.parameters(), 0.05).momentum(0.9);
        let mut rng = nabla::rng(4);
        let (mut norms, mut losses) = (Vec::new(), Vec::new());
        let bar = common::progress(train_steps as u64, label);
        for step in 1..=train_steps {
            let (x, y) = batch(&mut rng)?;
            let loss = mse_loss(&model.run(&x)?.0, &y, Reduction::Mean)?;
            let value = loss.item()? as f64;
            if !value.is_finite() {
                bar.suspend(|| println!("{label}: the loss is {value} at step {step}; training stopped"));
                break;
            }
            let mut grads = loss.backward()?;
            // clip_grad_norm with an infinite bound measures without scaling.
            let norm = optim::clip_grad_norm(&mut grads, if clip { 1.0 } else { f64::INFINITY })?;
            opt.step(&grads)?;
            norms.push((step as f64, norm));
            losses.push((step as f64, value));
            bar.inc(1);
        }
        bar.finish_and_clear();
        let start = losses.iter().take(50).map(|p| p.1).sum::<f64>() / losses.len().clamp(1, 50) as f64;
        let end = losses.iter().rev().take(100).map(|p| p.1).sum::<f64>() / losses.len().clamp(1, 100) as f64;
        let largest = norms.iter().map(|p| p.1).fold(0.0, f64::max);
        println!("{label}: largest gradient norm {largest:.3e}; loss {start:.3} over the first 50 steps, {end:.3} over the last 100");
        finals.push((label, start, end));
        norm_curves.push(common::Series { label: label.into(), points: norms });
        loss_curves.push(common::Series { label: label.into(), points: common::window_means(&losses, 10) });
    }

    let dir = common::out_dir("exploding_gradients");
    common::panels(
        &dir.join("gradients.svg"),
        &[
            common::Panel {
                title: "at initialisation: |dL/dh_t| by time step".into(),
                x_label: "t".into(),
                y_label: "norm".into(),
                series: through_time,
                log_y: true,
            },
            common::Panel {
                title: "training: gradient norm before clipping".into(),
                x_label: "step".into(),
                y_label: "norm".into(),
                series: norm_curves,
                log_y: true,
            },
            common::Panel {
                title: "training loss (mean of 10 steps)".into(),
                x_label: "step".into(),
                y_label: "MSE".into(),
                series: loss_curves,
                log_y: true,
            },
        ],
    );
    println!("wrote {}", dir.join("gradients.svg").display());
    let (unclipped, clipped) = (finals[0].2, finals[1].2);
    println!("final loss: RNN unclipped {unclipped:.4}, RNN clipped {clipped:.4}, LSTM clipped {:.4}", finals[2].2);
    // A diverged run (non-finite loss) counts as infinitely bad.
    let unclipped = if unclipped.is_finite() { unclipped } else { f64::INFINITY };
    common::report_target("exploding RNN: final loss clipped / unclipped", clipped / unclipped, 1.0, false);
    Ok(())
}
