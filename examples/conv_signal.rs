//! Dilated 1-D convolutions denoising a signal: three `Conv1d` layers of kernel 5 with
//! dilations 1, 2 and 4 (the course's "skip" convolution) see 29 samples at once, and learn
//! to recover a sum of sines from a noisy copy.
//!
//! Training data are random sums of three sines with random frequencies and phases plus
//! Gaussian noise (σ = 0.5); the program prints the receptive field, the mean squared error
//! of the noisy input and of the network's output against the clean signal on new test
//! signals, and writes `target/nabla-examples/conv_signal/signal.svg` (noisy, clean and
//! denoised) and `kernels.svg`. `--quick` trains 30 steps instead of 1,500.

mod common;

use nabla::nn::functional::{Reduction, mse_loss};
use nabla::ops::{Conv1dConfig, receptive_field};
use nabla::prelude::*;
use rand::Rng;

const LEN: usize = 256;

/// `batch` clean and noisy signals, `(batch, 1, LEN)` each.
fn signals(batch: usize, rng: &mut impl Rng) -> nabla::Result<(Tensor, Tensor)> {
    let mut clean = Vec::with_capacity(batch * LEN);
    for _ in 0..batch {
        let waves: Vec<(f32, f32, f32)> = (0..3)
            .map(|_| (rng.random_range(0.01..0.08f32), rng.random_range(0.0..std::f32::consts::TAU), rng.random_range(0.3..1.0f32)))
            .collect();
        clean.extend((0..LEN).map(|t| waves.iter().map(|(f, p, a)| a * (std::f32::consts::TAU * f * t as f32 + p).sin()).sum::<f32>()));
    }
    let clean = Tensor::from_vec(clean, &[batch, 1, LEN])?;
    let noisy = &clean + &(Tensor::randn(&[batch, 1, LEN], rng) * 0.5);
    Ok((clean, noisy))
}

fn main() -> nabla::Result<()> {
    let steps = if common::quick() { 30 } else { 1500 };
    let mut rng = nabla::rng(2);
    let dilated = |d: usize| Conv1dConfig { padding: 2 * d, dilation: d, ..Default::default() };
    let layers = [(5, 1, 1), (5, 1, 2), (5, 1, 4)];
    println!("receptive field of the stack: {} samples", receptive_field(&layers));
    let model = nn::Sequential::new()
        .push(nn::Conv1d::new(1, 16, 5, dilated(1), true, &mut rng)?)
        .push(nn::Tanh)
        .push(nn::Conv1d::new(16, 16, 5, dilated(2), true, &mut rng)?)
        .push(nn::Tanh)
        .push(nn::Conv1d::new(16, 1, 5, dilated(4), true, &mut rng)?);
    let mut opt = optim::Adam::new(model.parameters(), 3e-3);
    let bar = common::progress(steps as u64, "steps");
    let mut curve = Vec::new();
    for step in 1..=steps {
        let (clean, noisy) = signals(16, &mut rng)?;
        let loss = mse_loss(&model.forward(&noisy)?, &clean, Reduction::Mean)?;
        if step % 10 == 0 {
            curve.push((step as f64, loss.item()? as f64));
        }
        opt.step(&loss.backward()?)?;
        bar.inc(1);
    }
    bar.finish_and_clear();

    let (clean, noisy) = signals(64, &mut nabla::rng(99))?;
    let denoised = nabla::no_grad(|| model.forward(&noisy))?;
    let before = mse_loss(&noisy, &clean, Reduction::Mean)?.item()?;
    let after = mse_loss(&denoised, &clean, Reduction::Mean)?.item()?;
    println!("test MSE against the clean signal: noisy input {before:.4}, denoised {after:.4} (target: below a quarter of the input's)");

    let dir = common::out_dir("conv_signal");
    let trace = |t: &Tensor, label: &str| common::Series {
        label: label.into(),
        points: t.narrow(0, 0, 1).unwrap().to_vec().iter().enumerate().map(|(i, &v)| (i as f64, v as f64)).collect(),
    };
    common::panels(
        &dir.join("signal.svg"),
        &[
            common::Panel {
                title: "a test signal".into(),
                x_label: "t".into(),
                y_label: "value".into(),
                series: vec![trace(&noisy, "noisy input"), trace(&clean, "clean"), trace(&denoised, "denoised")],
                log_y: false,
            },
            common::Panel {
                title: "training loss".into(),
                x_label: "step".into(),
                y_label: "MSE".into(),
                series: vec![common::Series { label: "train".into(), points: curve }],
                log_y: true,
            },
        ],
    );
    let first = model.named_parameters().into_iter().find(|(n, _)| n == "0.weight").map(|(_, p)| p.tensor()).expect("first layer");
    let kernels: Vec<common::Series> = first
        .to_vec()
        .chunks(5)
        .take(6)
        .enumerate()
        .map(|(k, w)| common::Series {
            label: format!("kernel {k}"),
            points: w.iter().enumerate().map(|(i, &v)| (i as f64, v as f64)).collect(),
        })
        .collect();
    common::panels(
        &dir.join("kernels.svg"),
        &[common::Panel {
            title: "first-layer kernels".into(),
            x_label: "tap".into(),
            y_label: "weight".into(),
            series: kernels,
            log_y: false,
        }],
    );
    println!("wrote {} and {}", dir.join("signal.svg").display(), dir.join("kernels.svg").display());
    Ok(())
}
