//! A multi-layer perceptron on the UCI handwritten digits (8×8 images, embedded in the
//! crate): 64 → 128 → ReLU → 64 → ReLU → 10, cross-entropy, mini-batch SGD with momentum.
//!
//! `cargo run --release --example digits` trains 30 epochs (a few seconds) and prints the
//! test accuracy after each; the target is at least 97%. `--quick` trains 3 epochs.
//! Writes `target/nabla-examples/digits/curves.svg` (loss and accuracy per epoch) and
//! `test_indices.txt` (the held-out samples, so a reference implementation can use the
//! same split: see `scripts/digits_torch.py`).

mod common;

use nabla::nn::functional::cross_entropy;
use nabla::prelude::*;

/// The fraction of samples whose largest logit is at the label.
fn accuracy(model: &nn::Sequential, x: &Tensor, y: &ndarray::ArrayD<usize>) -> nabla::Result<f64> {
    let logits = nabla::no_grad(|| model.forward(x))?;
    let correct = logits
        .value()
        .rows()
        .into_iter()
        .zip(y.iter())
        .filter(|&(ref row, &label)| row.iter().enumerate().fold((0, f32::MIN), |b, (k, &v)| if v > b.1 { (k, v) } else { b }).0 == label)
        .count();
    Ok(correct as f64 / y.len() as f64)
}

fn main() -> nabla::Result<()> {
    let quick = common::quick();
    let epochs = if quick { 3 } else { 30 };
    let mut rng = nabla::rng(0);
    let split = data::digits()?.split(0.25, &mut rng)?;
    println!("digits: {} training and {} test images of 8x8 pixels", split.train_y.len(), split.test_y.len());

    let model = nn::Sequential::new()
        .push(nn::Linear::new(64, 128, &mut rng))
        .push(nn::Relu)
        .push(nn::Linear::new(128, 64, &mut rng))
        .push(nn::Relu)
        .push(nn::Linear::new(64, 10, &mut rng));
    let mut opt = optim::Sgd::new(model.parameters(), 0.05).momentum(0.9);

    let (mut losses, mut accuracies) = (Vec::new(), Vec::new());
    let bar = common::progress(epochs as u64, "epochs");
    for epoch in 1..=epochs {
        let (mut total, mut batches) = (0.0, 0);
        for (x, y) in data::Batches::new(&split.train_x, &split.train_y, 32, &mut rng) {
            let loss = cross_entropy(&model.forward(&x)?, &y)?;
            total += loss.item()? as f64;
            batches += 1;
            opt.step(&loss.backward()?)?;
        }
        let test_accuracy = accuracy(&model, &split.test_x, &split.test_y)?;
        bar.suspend(|| println!("epoch {epoch:2}: train loss {:.4}, test accuracy {:.2}%", total / batches as f64, 100.0 * test_accuracy));
        losses.push((epoch as f64, total / batches as f64));
        accuracies.push((epoch as f64, 100.0 * test_accuracy));
        bar.inc(1);
    }
    bar.finish_and_clear();

    let final_accuracy = accuracies.last().map(|a| a.1).unwrap_or(0.0);
    println!("test accuracy {final_accuracy:.2}% (target: >= 97%{})", if quick { "; --quick trains only 3 epochs" } else { "" });
    let dir = common::out_dir("digits");
    common::line_plot(
        &dir.join("loss.svg"),
        "digits MLP: training loss",
        "epoch",
        "cross-entropy",
        vec![common::Series { label: "train loss".into(), points: losses }],
        true,
    );
    common::line_plot(
        &dir.join("accuracy.svg"),
        "digits MLP: test accuracy",
        "epoch",
        "accuracy (%)",
        vec![common::Series { label: "test accuracy".into(), points: accuracies }],
        false,
    );
    let test_indices = split.test_indices.iter().map(|i| i.to_string()).collect::<Vec<_>>().join("\n");
    std::fs::write(dir.join("test_indices.txt"), test_indices).expect("write the split");
    println!(
        "wrote {}, {} and {}",
        dir.join("loss.svg").display(),
        dir.join("accuracy.svg").display(),
        dir.join("test_indices.txt").display()
    );
    model.save(dir.join("digits.safetensors"))?;
    println!("saved the weights to {} (PyTorch state_dict names)", dir.join("digits.safetensors").display());
    if !quick && final_accuracy < 97.0 {
        eprintln!("below the 97% target");
        std::process::exit(1);
    }
    Ok(())
}
