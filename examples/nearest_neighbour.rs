//! The course's nearest-neighbour classifier `G(x, w) = argmin_k ||x - w_k||²` with learned
//! prototypes `w_k`, on the embedded digits.
//!
//! The argmin has no useful gradient, so training uses a differentiable surrogate: a soft-min
//! over prototypes, `p(class c | x) ∝ Σ_{k in c} exp(-β ||x - w_k||²)`, and cross-entropy on
//! it (the energy of class c is a log-sum-exp of the prototype distances). Prediction uses
//! the hard argmin. Three prototypes per class start at random training images of that
//! class. Prints test accuracy before and after training; `--quick` trains 2 epochs.

mod common;

use nabla::nn::functional::cross_entropy;
use nabla::prelude::*;
use rand::seq::IndexedRandom;

const PER_CLASS: usize = 3;
const CLASSES: usize = 10;

/// `||x_i - w_k||²` for every sample and prototype: `[N, K]`, as `|x|² - 2x·w + |w|²`.
fn squared_distances(x: &Tensor, w: &Tensor) -> nabla::Result<Tensor> {
    let xx = x.pow(2.0).sum_dims(&[1], true)?;
    let ww = w.pow(2.0).sum_dims(&[1], false)?;
    xx.add(&ww)?.sub(&(x.matmul(&w.t())? * 2.0))
}

/// Accuracy of the hard nearest-prototype rule.
fn accuracy(x: &Tensor, y: &ndarray::ArrayD<usize>, prototypes: &Tensor) -> nabla::Result<f64> {
    let d = nabla::no_grad(|| squared_distances(x, prototypes))?;
    let correct = d
        .value()
        .rows()
        .into_iter()
        .zip(y.iter())
        .filter(|&(ref row, &label)| {
            row.iter().enumerate().fold((0, f32::MAX), |b, (k, &v)| if v < b.1 { (k, v) } else { b }).0 / PER_CLASS == label
        })
        .count();
    Ok(correct as f64 / y.len() as f64)
}

fn main() -> nabla::Result<()> {
    let epochs = if common::quick() { 2 } else { 30 };
    let beta = 10.0;
    let mut rng = nabla::rng(3);
    let split = data::digits()?.split(0.25, &mut rng)?;
    // Prototypes of class c are rows c·PER_CLASS .. (c+1)·PER_CLASS.
    let mut rows = Vec::new();
    for c in 0..CLASSES {
        let of_class: Vec<usize> = (0..split.train_y.len()).filter(|&i| split.train_y[i] == c).collect();
        rows.extend(of_class.choose_multiple(&mut rng, PER_CLASS).copied());
    }
    let prototypes = nn::Param::new(data::Rows::select_rows(&split.train_x, &rows));
    println!(
        "nearest prototype (random training images): test accuracy {:.2}%",
        100.0 * accuracy(&split.test_x, &split.test_y, &prototypes.tensor())?
    );

    let mut opt = optim::Adam::new(vec![prototypes.clone()], 0.01);
    let bar = common::progress(epochs as u64, "epochs");
    for epoch in 1..=epochs {
        for (x, y) in data::Batches::new(&split.train_x, &split.train_y, 64, &mut rng) {
            let energies = squared_distances(&x, &prototypes.tensor())? * beta;
            // Class score: soft-min over that class's prototypes, log Σ exp(-β d²).
            let class_scores = energies.neg().reshape(&[-1, CLASSES as isize, PER_CLASS as isize])?.logsumexp_dims(&[2], false)?;
            let loss = cross_entropy(&class_scores, &y)?;
            opt.step(&loss.backward()?)?;
        }
        if epoch % 10 == 0 || epoch == epochs {
            let acc = accuracy(&split.test_x, &split.test_y, &prototypes.tensor())?;
            bar.suspend(|| println!("epoch {epoch:2}: test accuracy {:.2}%", 100.0 * acc));
        }
        bar.inc(1);
    }
    bar.finish_and_clear();
    let acc = accuracy(&split.test_x, &split.test_y, &prototypes.tensor())?;
    println!(
        "nearest learned prototype ({PER_CLASS} per class): test accuracy {:.2}% (target: above the random-prototype start, and >= 95%)",
        100.0 * acc
    );
    Ok(())
}
