//! What a network does to space: a network of width 2 trained on two interleaved half-moons
//! (not linearly separable), drawn after every linear map and every squashing non-linearity.
//!
//! Each linear map `x ↦ Wx + b` is a rotation, a scaling along two axes, another rotation
//! (`W = U Σ Vᵀ`, reflected when `det W < 0`) and a shift; each `tanh` squashes space into
//! the square (-1, 1)². Stacked, they pull the moons apart until the last linear map can
//! separate them with a line. The program prints each map's decomposition and the training
//! accuracy, and writes `target/nabla-examples/space_transform/stages.svg`. `--quick` trains
//! 200 steps instead of 3,000.

mod common;

use nabla::nn::functional::cross_entropy;
use nabla::prelude::*;
use std::f64::consts::PI;

const DEPTH: usize = 4;

/// Two interleaved half circles with Gaussian noise, labels 0 and 1.
fn moons(n: usize, rng: &mut impl rand::Rng) -> nabla::Result<(Tensor, ndarray::ArrayD<usize>)> {
    let noise = Tensor::randn(&[n, 2], rng).mul_scalar(0.1).to_vec();
    let mut points = Vec::with_capacity(2 * n);
    let mut labels = Vec::with_capacity(n);
    for i in 0..n {
        let class = i % 2;
        let t = PI * (i / 2) as f64 / (n / 2) as f64;
        let (x, y) = if class == 0 { (t.cos(), t.sin()) } else { (1.0 - t.cos(), 0.5 - t.sin()) };
        points.push(x as f32 + noise[2 * i]);
        points.push(y as f32 + noise[2 * i + 1]);
        labels.push(class);
    }
    Ok((Tensor::from_vec(points, &[n, 2])?, ndarray::Array1::from(labels).into_dyn()))
}

/// `W = U Σ Vᵀ` for a 2×2 matrix: rotation angles of V and U (degrees), singular values,
/// and whether the map reflects.
fn describe(w: &[f32]) -> String {
    let (a, b, c, d) = (w[0] as f64, w[1] as f64, w[2] as f64, w[3] as f64);
    // Eigen-decomposition of WᵀW = [[p, q], [q, r]] gives V and Σ².
    let (p, q, r) = (a * a + c * c, a * b + c * d, b * b + d * d);
    let theta_v = 0.5 * (2.0 * q).atan2(p - r);
    let mean = (p + r) / 2.0;
    let spread = (((p - r) / 2.0).powi(2) + q * q).sqrt();
    let (s1, s2) = ((mean + spread).sqrt(), (mean - spread).max(0.0).sqrt());
    // U's first column is W v₁ / σ₁.
    let (v1x, v1y) = (theta_v.cos(), theta_v.sin());
    let theta_u = (c * v1x + d * v1y).atan2(a * v1x + b * v1y);
    let det = a * d - b * c;
    format!(
        "rotate {:.0}°, scale ({s1:.2}, {s2:.2}), rotate {:.0}°{}",
        -theta_v.to_degrees(),
        theta_u.to_degrees(),
        if det < 0.0 { ", reflect" } else { "" }
    )
}

/// The training accuracy of a single linear map (logistic regression) on the same data.
fn linear_baseline(x: &Tensor, y: &ndarray::ArrayD<usize>, steps: usize) -> nabla::Result<f64> {
    let linear = nn::Linear::new(2, 2, &mut nabla::rng(9));
    let mut opt = optim::Adam::new(linear.parameters(), 0.02);
    for _ in 0..steps {
        let loss = cross_entropy(&linear.forward(x)?, y)?;
        opt.step(&loss.backward()?)?;
    }
    let logits = nabla::no_grad(|| linear.forward(x))?.to_vec();
    let correct = logits.chunks(2).zip(y.iter()).filter(|&(l, &c)| usize::from(l[1] > l[0]) == c).count();
    Ok(100.0 * correct as f64 / y.len() as f64)
}

fn points(t: &Tensor) -> Vec<(f64, f64)> {
    t.to_vec().chunks(2).map(|p| (p[0] as f64, p[1] as f64)).collect()
}

fn main() -> nabla::Result<()> {
    let steps = if common::quick() { 200 } else { 3000 };
    let mut rng = nabla::rng(5);
    let (x, y) = moons(400, &mut rng)?;
    let mut model = nn::Sequential::new();
    for _ in 0..DEPTH {
        model = model.push(nn::Linear::new(2, 2, &mut rng)).push(nn::Tanh);
    }
    let model = model.push(nn::Linear::new(2, 2, &mut rng));
    let mut opt = optim::Adam::new(model.parameters(), 0.02);
    let bar = common::progress(steps as u64, "steps");
    for step in 1..=steps {
        let loss = cross_entropy(&model.forward(&x)?, &y)?;
        if step % 500 == 0 {
            bar.suspend(|| println!("step {step:4}: loss {:.4}", loss.item().unwrap_or(f32::NAN)));
        }
        opt.step(&loss.backward()?)?;
        bar.inc(1);
    }
    bar.finish_and_clear();

    let trace = nabla::no_grad(|| model.forward_trace(&x))?;
    let logits = trace.last().expect("layers").to_vec();
    let correct = logits.chunks(2).zip(y.iter()).filter(|&(l, &c)| usize::from(l[1] > l[0]) == c).count();
    let accuracy = 100.0 * correct as f64 / y.len() as f64;
    println!(
        "training accuracy {accuracy:.1}% (target: >= 95%; a linear classifier on the raw moons: {:.1}%)",
        linear_baseline(&x, &y, steps)?
    );

    let mut stages = vec![("input".to_string(), points(&x))];
    let weights: Vec<Vec<f32>> =
        model.named_parameters().into_iter().filter(|(n, _)| n.ends_with("weight")).map(|(_, p)| p.tensor().to_vec()).collect();
    for (k, out) in trace.iter().enumerate() {
        let layer = k / 2 + 1;
        let title = if k % 2 == 0 { format!("linear {layer}") } else { format!("tanh {layer}") };
        if k % 2 == 0 {
            println!("{title}: {}", describe(&weights[k / 2]));
        }
        stages.push((if k + 1 == trace.len() { "output logits".into() } else { title }, points(out)));
    }
    let dir = common::out_dir("space_transform");
    common::scatter_grid(&dir.join("stages.svg"), 5, &stages, &y.iter().copied().collect::<Vec<_>>());
    println!("wrote {}", dir.join("stages.svg").display());
    Ok(())
}
