//! A small convolutional network on the embedded UCI digits, to compare with the MLP of
//! `digits`: conv 3×3 (16) → [BatchNorm] → ReLU → conv 3×3 (32) → [BatchNorm] → ReLU → max
//! pool 2 → linear 512→64 → ReLU → linear 64→10, cross-entropy, mini-batch SGD with
//! momentum, its learning rate warmed up linearly for 3 epochs and then annealed on a
//! cosine (`SequentialLr` of `LinearLr` and `CosineAnnealingLr`).
//!
//! `cargo run --release --example digits_cnn` trains the network without batch norm and
//! then with it, from the same seed for the same 30 epochs, and prints the test accuracy
//! after each epoch and of both (target: at least 98% each, above the MLP); `--quick`
//! trains 2. The batch-norm network is evaluated with `set_training(false)`, on its running
//! statistics. Writes the learned first-layer filters and the test confusion matrix of the
//! batch-norm network under `target/nabla-examples/digits_cnn/`.

mod common;

use nabla::nn::functional::cross_entropy;
use nabla::ops::Conv2dConfig;
use nabla::prelude::*;

fn predictions(model: &nn::Sequential, x: &Tensor) -> nabla::Result<Vec<usize>> {
    let logits = nabla::no_grad(|| model.forward(x))?;
    Ok(logits
        .value()
        .rows()
        .into_iter()
        .map(|row| row.iter().enumerate().fold((0, f32::MIN), |b, (k, &v)| if v > b.1 { (k, v) } else { b }).0)
        .collect())
}

/// The network, with a `BatchNorm2d` after each convolution when `batch_norm`.
fn network(batch_norm: bool, rng: &mut impl rand::Rng) -> nabla::Result<(nn::Sequential, nn::Param)> {
    let same = Conv2dConfig { padding: [1, 1], ..Default::default() };
    let first = nn::Conv2d::new(1, 16, [3, 3], same, true, rng)?;
    let filters = first.weight.clone();
    let mut model = nn::Sequential::new().push(first);
    if batch_norm {
        model = model.push(nn::BatchNorm2d::new(16));
    }
    model = model.push(nn::Relu).push(nn::Conv2d::new(16, 32, [3, 3], same, true, rng)?);
    if batch_norm {
        model = model.push(nn::BatchNorm2d::new(32));
    }
    let model = model
        .push(nn::Relu)
        .push(nn::max_pool2d(2))
        .push(nn::Flatten::new())
        .push(nn::Linear::new(512, 64, rng))
        .push(nn::Relu)
        .push(nn::Linear::new(64, 10, rng));
    Ok((model, filters))
}

/// Trains `model` for `epochs` (seeded by `seed`); the test accuracy after each, in %.
fn train(model: &nn::Sequential, split: &data::Split, images: [&Tensor; 2], epochs: usize, seed: u64, label: &str) -> nabla::Result<f64> {
    let [train_x, test_x] = images;
    let mut rng = nabla::rng(seed);
    let mut opt = optim::Sgd::new(model.parameters(), 0.05).momentum(0.9);
    let warmup = 3.min(epochs.saturating_sub(1)).max(1);
    let schedule = optim::SequentialLr::new(
        vec![
            Box::new(optim::LinearLr { start_factor: 0.1, end_factor: 1.0, total_iters: warmup }),
            Box::new(optim::CosineAnnealingLr { t_max: (epochs - warmup).max(1), eta_min: 0.0 }),
        ],
        vec![warmup],
    )?;
    let mut schedule = optim::Schedule::new(schedule, &mut opt)?;
    let bar = common::progress(epochs as u64, "epochs");
    let mut accuracy = 0.0;
    for epoch in 1..=epochs {
        let (mut total, mut batches) = (0.0, 0);
        model.set_training(true);
        for (x, y) in data::Batches::new(train_x, &split.train_y, 32, &mut rng) {
            let loss = cross_entropy(&model.forward(&x)?, &y)?;
            total += loss.item()? as f64;
            batches += 1;
            opt.step(&loss.backward()?)?;
        }
        let lr = opt.lr();
        schedule.step(&mut opt);
        model.set_training(false);
        let p = predictions(model, test_x)?;
        accuracy = 100.0 * p.iter().zip(split.test_y.iter()).filter(|(a, b)| a == b).count() as f64 / p.len() as f64;
        bar.suspend(|| {
            println!("{label} epoch {epoch:2}: lr {lr:.4}, train loss {:.4}, test accuracy {accuracy:.2}%", total / batches as f64)
        });
        bar.inc(1);
    }
    bar.finish_and_clear();
    Ok(accuracy)
}

fn main() -> nabla::Result<()> {
    let quick = common::quick();
    let epochs = if quick { 2 } else { 30 };
    let mut rng = nabla::rng(0);
    let split = data::digits()?.split(0.25, &mut rng)?;
    let images = |x: &Tensor| x.reshape(&[-1, 1, 8, 8]);
    let (train_x, test_x) = (images(&split.train_x)?, images(&split.test_x)?);
    // The same seed for both networks' shared layers and for both runs' batches.
    let (plain, _) = network(false, &mut nabla::rng(1))?;
    let plain_accuracy = train(&plain, &split, [&train_x, &test_x], epochs, 2, "plain")?;
    let (model, filters) = network(true, &mut nabla::rng(1))?;
    let final_accuracy = train(&model, &split, [&train_x, &test_x], epochs, 2, "batch norm")?;
    let note = if quick { "; --quick trains 2 epochs" } else { "" };
    println!(
        "test accuracy without batch norm {plain_accuracy:.2}%, with batch norm {final_accuracy:.2}% \
         (target: >= 98% each; the MLP of `digits` gets 98.22% on the same split{note})"
    );

    let dir = common::out_dir("digits_cnn");
    let w = filters.tensor().to_vec();
    let maps: Vec<(String, Vec<Vec<f64>>)> =
        (0..16).map(|f| (format!("filter {f}"), (0..3).map(|i| (0..3).map(|j| w[f * 9 + i * 3 + j] as f64).collect()).collect())).collect();
    common::heatmaps(&dir.join("filters.svg"), 8, 24, &maps, false);
    let mut confusion = vec![vec![0.0; 10]; 10];
    for (p, t) in predictions(&model, &test_x)?.into_iter().zip(split.test_y.iter()) {
        confusion[*t][p] += 1.0;
    }
    common::heatmaps(&dir.join("confusion.svg"), 1, 36, &[("confusion (row: label, column: prediction)".into(), confusion)], true);
    println!("wrote {} and {}", dir.join("filters.svg").display(), dir.join("confusion.svg").display());
    if !quick && (final_accuracy < 98.0 || plain_accuracy < 98.0) {
        eprintln!("below the 98% target");
        std::process::exit(1);
    }
    Ok(())
}
