//! Gradient hooks: watch the gradient arriving at every layer of a deep network during
//! training, with `Tensor::register_hook` on each layer's output.
//!
//! An MLP of eight `Linear(32, 32) + tanh` layers between the digits' 64 pixels and 10
//! classes trains with SGD; at each step a hook on every layer's output records
//! `‖∂L/∂h_l‖`. Printed for a few steps, they show how the gradient shrinks on its way back
//! to the first layers (the vanishing gradient of deep tanh networks) and how that changes
//! as training goes on. The program also checks one hook against `nabla::grad` asked for the
//! same tensor (target: identical). Writes `target/nabla-examples/gradient_hooks/norms.svg`.
//! `--quick` trains 20 steps instead of 600.

mod common;

use nabla::nn::functional::cross_entropy;
use nabla::prelude::*;
use std::sync::{Arc, Mutex};

const DEPTH: usize = 8;

fn main() -> nabla::Result<()> {
    let steps = if common::quick() { 20 } else { 600 };
    let mut rng = nabla::rng(0);
    let split = data::digits()?.split(0.25, &mut rng)?;
    let input = nn::Linear::new(64, 32, &mut rng);
    let hidden: Vec<nn::Linear> = (0..DEPTH).map(|_| nn::Linear::new(32, 32, &mut rng)).collect();
    let output = nn::Linear::new(32, 10, &mut rng);
    let params: Vec<nn::Param> =
        input.parameters().into_iter().chain(hidden.iter().flat_map(|l| l.parameters())).chain(output.parameters()).collect();
    let mut opt = optim::Sgd::new(params, 0.05).momentum(0.9);

    // norms[l] = ‖∂L/∂h_l‖ of the current step, written by the hooks.
    let norms = Arc::new(Mutex::new(vec![0.0f64; DEPTH]));
    let mut history: Vec<Vec<(f64, f64)>> = vec![Vec::new(); DEPTH];
    let mut step = 0;
    let mut checked = false;
    'training: loop {
        for (x, y) in data::Batches::new(&split.train_x, &split.train_y, 64, &mut rng) {
            step += 1;
            let mut h = input.forward(&x)?.tanh();
            let mut outputs = Vec::new();
            for (l, layer) in hidden.iter().enumerate() {
                h = layer.forward(&h)?.tanh();
                let norms = Arc::clone(&norms);
                // The handle is dropped: the hook goes away with the tensor after the step.
                let _ = h.register_hook(move |g| {
                    norms.lock().unwrap()[l] = g.pow(2.0).sum().item().unwrap_or(f32::NAN).sqrt() as f64;
                    None
                });
                outputs.push(h.clone());
            }
            let loss = cross_entropy(&output.forward(&h)?, &y)?;
            if !checked {
                let direct = nabla::grad(&[&loss], &[&outputs[DEPTH - 1]], None, false)?.remove(0);
                let direct = direct.pow(2.0).sum().item()?.sqrt() as f64;
                let hooked = norms.lock().unwrap()[DEPTH - 1];
                println!("last layer: hook saw {hooked:.6e}, nabla::grad gives {direct:.6e}");
                common::report_target("|hook - nabla::grad| on the last layer", (hooked - direct).abs(), 1e-12, false);
                checked = true;
            }
            opt.step(&loss.backward()?)?;
            let now = norms.lock().unwrap().clone();
            for (l, &n) in now.iter().enumerate() {
                history[l].push((step as f64, n));
            }
            if step == 1 || step % 150 == 0 || step == steps {
                let listed: Vec<String> = now.iter().map(|n| format!("{n:.1e}")).collect();
                println!("step {step:4}: ‖∂L/∂h_l‖ for l = 1..{DEPTH}: {}", listed.join("  "));
            }
            if step == steps {
                break 'training;
            }
        }
    }
    let dir = common::out_dir("gradient_hooks");
    let series = history
        .into_iter()
        .enumerate()
        .filter(|(l, _)| l % 2 == 0 || *l == DEPTH - 1)
        .map(|(l, points)| common::Series { label: format!("layer {}", l + 1), points })
        .collect();
    common::line_plot(&dir.join("norms.svg"), "gradient norm at each layer's output", "step", "‖∂L/∂h‖", series, true);
    println!("wrote {}", dir.join("norms.svg").display());
    Ok(())
}
