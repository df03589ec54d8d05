//! Sequence to vector: an LSTM reads a noisy signal and says which of four frequencies it
//! carries. The course's first sequence shape — many inputs, one output — read from the
//! final hidden state.
//!
//! Each sequence is `sin(2π f t + φ)` for 64 steps with a random phase `φ`, an amplitude in
//! [0.5, 1.5] and Gaussian noise of σ = 0.8 (about as loud as the signal), `f` one of
//! 1/32, 1/16, 1/10.7, 1/8 cycles per step. An `LSTM(1 → 32)` reads it; a Linear maps `h_n`
//! to four logits. Adam, cross-entropy, fresh batches every step. Prints the test accuracy on
//! 2,000 new sequences (target >= 95%) and writes
//! `target/nabla-examples/seq2vec/training.svg`. `--quick` trains 20 steps instead of 1,500.

mod common;

use nabla::nn::functional::cross_entropy;
use nabla::prelude::*;
use rand::Rng;

const STEPS: usize = 64;
const FREQUENCIES: [f32; 4] = [1.0 / 32.0, 1.0 / 16.0, 3.0 / 32.0, 1.0 / 8.0];

/// `n` signals `(T, N, 1)` (time first, PyTorch's default layout) and their classes.
fn batch(n: usize, rng: &mut impl Rng) -> nabla::Result<(Tensor, ndarray::ArrayD<usize>)> {
    let classes: Vec<usize> = (0..n).map(|_| rng.random_range(0..FREQUENCIES.len())).collect();
    let waves: Vec<(f32, f32, f32)> =
        classes.iter().map(|&c| (FREQUENCIES[c], rng.random_range(0.0..std::f32::consts::TAU), rng.random_range(0.5..1.5))).collect();
    let mut values = Vec::with_capacity(STEPS * n);
    for t in 0..STEPS {
        for &(f, phase, amplitude) in &waves {
            values.push(amplitude * (std::f32::consts::TAU * f * t as f32 + phase).sin());
        }
    }
    let clean = Tensor::from_vec(values, &[STEPS, n, 1])?;
    let noisy = &clean + &(Tensor::randn(&[STEPS, n, 1], rng) * 0.8);
    Ok((noisy, ndarray::Array1::from(classes).into_dyn()))
}

#[derive(Module)]
struct Classifier {
    lstm: nn::Lstm,
    head: nn::Linear,
}

impl Classifier {
    fn logits(&self, x: &Tensor) -> nabla::Result<Tensor> {
        let h_n = self.lstm.forward_with_state(x, None)?.h_n; // (1, N, H)
        self.head.forward(&h_n.squeeze(0)?)
    }
}

fn main() -> nabla::Result<()> {
    let steps = if common::quick() { 20 } else { 1500 };
    let mut rng = nabla::rng(3);
    let model = Classifier { lstm: nn::Lstm::new(1, 32, &mut rng), head: nn::Linear::new(32, FREQUENCIES.len(), &mut rng) };
    let mut opt = optim::Adam::new(model.parameters(), 1e-2);
    // Cosine annealing to 1e-4 over the run: large steps early, fine ones at the end.
    let mut schedule = optim::Schedule::new(optim::CosineAnnealingLr { t_max: steps, eta_min: 1e-4 }, &mut opt)?;
    let (mut losses, mut accuracies) = (Vec::new(), Vec::new());
    let (test_x, test_y) = batch(2000, &mut nabla::rng(100))?;
    let accuracy = |model: &Classifier| -> nabla::Result<f64> {
        let predicted = common::argmax_rows(&nabla::no_grad(|| model.logits(&test_x))?);
        Ok(100.0 * predicted.iter().zip(test_y.iter()).filter(|(p, y)| p == y).count() as f64 / test_y.len() as f64)
    };
    let bar = common::progress(steps as u64, "steps");
    for step in 1..=steps {
        let (x, y) = batch(64, &mut rng)?;
        let loss = cross_entropy(&model.logits(&x)?, &y)?;
        let mut grads = loss.backward()?;
        optim::clip_grad_norm(&mut grads, 1.0)?;
        opt.step(&grads)?;
        schedule.step(&mut opt);
        losses.push((step as f64, loss.item()? as f64));
        if step % 100 == 0 || step == steps {
            let acc = accuracy(&model)?;
            accuracies.push((step as f64, acc));
            bar.suspend(|| println!("step {step:4}: loss {:.4}, test accuracy {acc:.2}%", loss.item().unwrap_or(f32::NAN)));
        }
        bar.inc(1);
    }
    bar.finish_and_clear();

    let dir = common::out_dir("seq2vec");
    let (x, _) = batch(1, &mut nabla::rng(7))?;
    let example = common::Series {
        label: "a noisy input".into(),
        points: x.to_vec().iter().enumerate().map(|(t, &v)| (t as f64, v as f64)).collect(),
    };
    common::panels(
        &dir.join("training.svg"),
        &[
            common::Panel {
                title: "training loss".into(),
                x_label: "step".into(),
                y_label: "cross-entropy".into(),
                series: vec![common::Series { label: "batch loss".into(), points: losses }],
                log_y: true,
            },
            common::Panel {
                title: "test accuracy".into(),
                x_label: "step".into(),
                y_label: "%".into(),
                series: vec![common::Series { label: "2,000 new sequences".into(), points: accuracies.clone() }],
                log_y: false,
            },
            common::Panel { title: "input".into(), x_label: "t".into(), y_label: "value".into(), series: vec![example], log_y: false },
        ],
    );
    println!("wrote {}", dir.join("training.svg").display());
    common::report_target("seq2vec test accuracy (%)", accuracies.last().map_or(0.0, |a| a.1), 95.0, true);
    Ok(())
}
