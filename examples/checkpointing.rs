//! Recomputing versus storing: a deep MLP trained with and without gradient checkpointing,
//! measuring the memory a training step holds and the step's time.
//!
//! Part 1: 32 blocks of `Linear(1024, 1024) + tanh`, batch 64, SGD; checkpoints every `k`
//! blocks for k = none, 1, 4 and 6 (≈ √32). Part 2: depths 16, 64 and 256 (width 512) with
//! and without √depth spacing, to show how the stored graph grows: linearly when storing,
//! as √depth with checkpoints (each segment's output is kept, √depth of them, and backward
//! rebuilds one segment of √depth blocks at a time).
//!
//! Memory is read from `autograd::memory::live_bytes` (the values of live tensors), above
//! what was live before the step (parameters, input): the graph held when the forward pass
//! ends — what storing costs — and the peak over the whole step, which also holds the
//! gradients (as large as the parameters) and, with checkpoints, one segment rebuilt. The
//! time is the median of 9 steps, the variants taking turns. Targets: with √depth spacing the
//! stored graph grows as √depth (its ratio between depths 256 and 16 is near √16 = 4, not
//! 16) at a step-time cost under 1.5×. `--quick` runs small widths and depths.

mod common;

use nabla::autograd::{checkpoint, memory};
use nabla::prelude::*;
use std::sync::Arc;
use std::time::Instant;

type Block = Arc<nn::Sequential>;

fn blocks(depth: usize, width: usize) -> Vec<Block> {
    let mut rng = nabla::rng(0);
    (0..depth).map(|_| Arc::new(nn::Sequential::new().push(nn::Linear::new(width, width, &mut rng)).push(nn::Tanh))).collect()
}

/// The network's output, checkpointing every `k` blocks (`None`: store everything).
fn forward(blocks: &[Block], x: &Tensor, k: Option<usize>) -> nabla::Result<Tensor> {
    let mut h = x.clone();
    match k {
        None => {
            for b in blocks {
                h = b.forward(&h)?;
            }
        }
        Some(k) => {
            for segment in blocks.chunks(k) {
                let segment = segment.to_vec();
                h = checkpoint(
                    move |v| {
                        let mut h = v[0].clone();
                        for b in &segment {
                            h = b.forward(&h)?;
                        }
                        Ok(h)
                    },
                    &[&h],
                )?;
            }
        }
    }
    Ok(h)
}

/// What a training step costs: the median time, the bytes the graph holds when the forward
/// pass ends, and the peak over the step (gradients included) above what was live before.
struct Cost {
    ms: f64,
    graph: usize,
    peak: usize,
    /// The peak minus the bytes of the gradients the step returns: at least the activations
    /// and cotangents in flight at the peak (the gradients are all held at the end, fewer
    /// of them at the peak, so this is a lower bound).
    beyond_grads: usize,
}

/// The cost of each variant (checkpoint spacing), from training steps taken in turn —
/// one step of each variant per round, after a warm-up round — so that the machine's
/// drifting speed affects all variants alike.
fn measure(blocks: &[Block], x: &Tensor, variants: &[Option<usize>], rounds: usize) -> nabla::Result<Vec<Cost>> {
    let params: Vec<nn::Param> = blocks.iter().flat_map(|b| b.parameters()).collect();
    let mut opt = optim::Sgd::new(params, 1e-3);
    let mut costs: Vec<(Vec<f64>, Cost)> =
        variants.iter().map(|_| (Vec::new(), Cost { ms: 0.0, graph: 0, peak: 0, beyond_grads: 0 })).collect();
    for round in 0..=rounds {
        for (&k, (times, cost)) in variants.iter().zip(costs.iter_mut()) {
            let base = memory::live_bytes();
            memory::reset_peak();
            let start = Instant::now();
            let loss = forward(blocks, x, k)?.pow(2.0).mean();
            let held = memory::live_bytes() - base;
            let grads = loss.backward()?;
            let grad_bytes: usize = grads.iter().map(|(_, g)| 4 * g.len()).sum();
            drop(loss);
            opt.step(&grads)?;
            drop(grads);
            if round > 0 {
                times.push(start.elapsed().as_secs_f64() * 1e3);
                let step_peak = memory::peak_live_bytes() - base;
                cost.peak = cost.peak.max(step_peak);
                cost.beyond_grads = cost.beyond_grads.max(step_peak.saturating_sub(grad_bytes));
                cost.graph = cost.graph.max(held);
            }
        }
    }
    Ok(costs
        .into_iter()
        .map(|(mut times, cost)| {
            times.sort_by(f64::total_cmp);
            Cost { ms: times[times.len() / 2], ..cost }
        })
        .collect())
}

fn mib(bytes: usize) -> f64 {
    bytes as f64 / (1024.0 * 1024.0)
}

fn main() -> nabla::Result<()> {
    let quick = common::quick();
    let (depth, width, batch, steps) = if quick { (8, 64, 8, 2) } else { (32, 1024, 64, 9) };
    let net = blocks(depth, width);
    let x = Tensor::randn(&[batch, width], &mut nabla::rng(1));
    let sqrt_k = (depth as f64).sqrt().round() as usize;
    println!("{depth} blocks of Linear({width}, {width}) + tanh, batch {batch}");
    println!(
        "| checkpoint every | graph after forward (MiB) | peak of the step (MiB) | peak beyond the gradients (MiB) | step (ms) | time vs storing |"
    );
    println!("| --- | ---: | ---: | ---: | ---: | ---: |");
    let variants = [None, Some(1), Some(4), Some(sqrt_k)];
    let costs = measure(&net, &x, &variants, steps)?;
    let base = costs[0].ms;
    for (k, c) in variants.into_iter().zip(&costs) {
        let label = k.map_or("none (store all)".to_string(), |k| if k == sqrt_k { format!("{k} (≈ √{depth})") } else { k.to_string() });
        println!("| {label} | {:.1} | {:.1} | {:.1} | {:.1} | {:.2}x |", mib(c.graph), mib(c.peak), mib(c.beyond_grads), c.ms, c.ms / base);
    }
    println!("(every variant ends the step holding the gradients of the {:.0} MiB of parameters)", mib(4 * depth * width * (width + 1)));

    let (depths, width) = if quick { (vec![4, 16], 32) } else { (vec![16, 64, 256], 512) };
    let x = Tensor::randn(&[batch, width], &mut nabla::rng(2));
    println!("\nwidth {width}, batch {batch}: the graph after forward, by depth");
    println!("| depth | storing (MiB) | √depth checkpoints (MiB) | time ratio |");
    println!("| ---: | ---: | ---: | ---: |");
    let mut rows = Vec::new();
    for &d in &depths {
        let net = blocks(d, width);
        let k = (d as f64).sqrt().round() as usize;
        let costs = measure(&net, &x, &[None, Some(k)], steps)?;
        let (store, ckpt) = (&costs[0], &costs[1]);
        println!("| {d} | {:.2} | {:.2} | {:.2}x |", mib(store.graph), mib(ckpt.graph), ckpt.ms / store.ms);
        rows.push((d, store.graph, ckpt.graph, ckpt.ms / store.ms));
    }
    let (first, last) = (rows[0], rows[rows.len() - 1]);
    let depth_ratio = last.0 as f64 / first.0 as f64;
    println!(
        "depth x{depth_ratio}: the stored graph grows x{:.1}, the checkpointed one x{:.1} (√{depth_ratio} = {:.1})",
        last.1 as f64 / first.1 as f64,
        last.2 as f64 / first.2 as f64,
        depth_ratio.sqrt()
    );
    let worst_time = rows.iter().map(|r| r.3).fold(0.0, f64::max);
    common::report_target("largest step-time cost of √depth checkpointing (x)", worst_time, 1.5, false);
    common::report_target(
        "growth of the checkpointed graph / √(depth growth)",
        (last.2 as f64 / first.2 as f64) / depth_ratio.sqrt(),
        1.5,
        false,
    );
    Ok(())
}
