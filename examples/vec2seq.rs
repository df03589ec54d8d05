//! Vector to sequence: a GRU cell writes the binary expansion of a number. The course's
//! second sequence shape — one input, many outputs — is a decoder conditioned on a vector.
//!
//! The vector is a real `x` drawn uniformly from [0, 1); the sequence is its first `BITS`
//! binary digits, `x = 0.b₁b₂…₂`. The initial state is `tanh(Linear(x))`; at each step the
//! cell reads `x` and the previous digit (teacher forcing in training, its own greedy choice
//! at test time) and a Linear gives the logits of the next digit. Prints the exact-match
//! rate (all digits right) on 2,000 new numbers — target >= 90% — and the per-digit
//! accuracy, which falls with the digit's position since later digits need finer
//! resolution of `x`. Writes `target/nabla-examples/vec2seq/training.svg`. `--quick`
//! trains 20 steps instead of 2,000.

mod common;

use nabla::nn::functional::cross_entropy;
use nabla::prelude::*;
use rand::Rng;

const BITS: usize = 6;
const HIDDEN: usize = 64;

#[derive(Module)]
struct Decoder {
    init: nn::Linear,
    cell: nn::GruCell,
    head: nn::Linear,
}

impl Decoder {
    /// Per-step logits `(N, 2)`. `teacher` holds the true digits (training); `None` feeds the
    /// decoder its own greedy choices.
    fn run(&self, x: &Tensor, teacher: Option<&[Vec<usize>]>) -> nabla::Result<Vec<Tensor>> {
        let n = x.shape()[0];
        let mut h = self.init.forward(x)?.tanh();
        // The previous digit, one-hot over {start, 0, 1}.
        let mut previous = vec![0usize; n];
        let mut logits = Vec::with_capacity(BITS);
        for t in 0..BITS {
            let onehot = Tensor::from(ndarray::Array2::from_shape_fn((n, 3), |(i, k)| if previous[i] == k { 1.0 } else { 0.0 }).into_dyn());
            let input = Tensor::cat(&[x.clone(), onehot], 1)?;
            h = self.cell.step(&input, Some((&h, None)))?.0;
            let step_logits = self.head.forward(&h)?;
            previous = match teacher {
                Some(digits) => digits.iter().map(|d| d[t] + 1).collect(),
                None => common::argmax_rows(&step_logits).iter().map(|d| d + 1).collect(),
            };
            logits.push(step_logits);
        }
        Ok(logits)
    }
}

/// `n` numbers `(N, 1)` and their digits.
fn batch(n: usize, rng: &mut impl Rng) -> nabla::Result<(Tensor, Vec<Vec<usize>>)> {
    let xs: Vec<f32> = (0..n).map(|_| rng.random::<f32>()).collect();
    let digits = xs.iter().map(|&x| (1..=BITS).map(|k| ((x * (1 << k) as f32) as usize) & 1).collect()).collect();
    Ok((Tensor::from_vec(xs, &[n, 1])?, digits))
}

fn main() -> nabla::Result<()> {
    let steps = if common::quick() { 20 } else { 2000 };
    let mut rng = nabla::rng(4);
    let model = Decoder {
        init: nn::Linear::new(1, HIDDEN, &mut rng),
        cell: nn::GruCell::new(4, HIDDEN, &mut rng),
        head: nn::Linear::new(HIDDEN, 2, &mut rng),
    };
    let mut opt = optim::Adam::new(model.parameters(), 3e-3);
    let mut schedule = optim::Schedule::new(optim::CosineAnnealingLr { t_max: steps, eta_min: 1e-5 }, &mut opt)?;
    let (test_x, test_digits) = batch(2000, &mut nabla::rng(100))?;
    let evaluate = |model: &Decoder| -> nabla::Result<(f64, Vec<f64>)> {
        let logits = nabla::no_grad(|| model.run(&test_x, None))?;
        let predicted: Vec<Vec<usize>> = logits.iter().map(common::argmax_rows).collect();
        let exact = (0..test_digits.len()).filter(|&i| (0..BITS).all(|t| predicted[t][i] == test_digits[i][t])).count();
        let per_digit = (0..BITS)
            .map(|t| {
                100.0 * (0..test_digits.len()).filter(|&i| predicted[t][i] == test_digits[i][t]).count() as f64 / test_digits.len() as f64
            })
            .collect();
        Ok((100.0 * exact as f64 / test_digits.len() as f64, per_digit))
    };
    let (mut losses, mut exact_curve) = (Vec::new(), Vec::new());
    let bar = common::progress(steps as u64, "steps");
    for step in 1..=steps {
        let (x, digits) = batch(128, &mut rng)?;
        let logits = model.run(&x, Some(&digits))?;
        let all = Tensor::cat(&logits, 0)?; // (BITS·N, 2), step-major
        let targets = ndarray::Array1::from_iter((0..BITS).flat_map(|t| digits.iter().map(move |d| d[t]))).into_dyn();
        let loss = cross_entropy(&all, &targets)?;
        opt.step(&loss.backward()?)?;
        schedule.step(&mut opt);
        losses.push((step as f64, loss.item()? as f64));
        if step % 200 == 0 || step == steps {
            let (exact, _) = evaluate(&model)?;
            exact_curve.push((step as f64, exact));
            bar.suspend(|| println!("step {step:5}: loss {:.4}, exact match {exact:.2}%", loss.item().unwrap_or(f32::NAN)));
        }
        bar.inc(1);
    }
    bar.finish_and_clear();

    let (exact, per_digit) = evaluate(&model)?;
    let listed: Vec<String> = per_digit.iter().enumerate().map(|(t, a)| format!("b{}: {a:.1}%", t + 1)).collect();
    println!("per-digit accuracy (greedy decoding): {}", listed.join(", "));
    let dir = common::out_dir("vec2seq");
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
                title: "exact match on 2,000 new numbers".into(),
                x_label: "step".into(),
                y_label: "%".into(),
                series: vec![common::Series { label: "all digits right".into(), points: exact_curve }],
                log_y: false,
            },
            common::Panel {
                title: "accuracy by digit".into(),
                x_label: "digit position".into(),
                y_label: "%".into(),
                series: vec![common::Series {
                    label: "greedy decoding".into(),
                    points: per_digit.iter().enumerate().map(|(t, &a)| ((t + 1) as f64, a)).collect(),
                }],
                log_y: false,
            },
        ],
    );
    println!("wrote {}", dir.join("training.svg").display());
    common::report_target(&format!("vec2seq exact match of {BITS} binary digits (%)"), exact, 90.0, true);
    Ok(())
}
