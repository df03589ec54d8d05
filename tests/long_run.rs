//! A 10,000-step training run whose memory stays flat: live tensor bytes return to the same
//! value after every step (an exact leak check), and the resident set grows by less than 5%
//! between step 1,000 (after warm-up) and step 10,000.
//!
//! Ignored by default (about 6 s in release mode, plus its build); CI runs it with
//! `cargo test --release --test long_run -- --ignored`.

use nabla::autograd::memory;
use nabla::nn::{Conv2d, Linear, Module, functional::cross_entropy};
use nabla::ops::{Conv2dConfig, Pool2dConfig};
use nabla::optim::{Adam, Optimizer, clip_grad_norm};
use nabla::prelude::*;
use ndarray::{ArrayD, IxDyn};

/// Resident set size in bytes, from /proc/self/statm (Linux).
fn rss_bytes() -> usize {
    let statm = std::fs::read_to_string("/proc/self/statm").expect("Linux /proc");
    let pages: usize = statm.split_whitespace().nth(1).expect("resident field").parse().expect("a number");
    pages * 4096
}

#[test]
#[ignore = "10,000 steps; run in release mode (CI does)"]
fn ten_thousand_steps_keep_memory_flat() {
    let mut rng = nabla::rng(0);
    // A model touching the main kernels: a convolution, max pooling, an LSTM, a linear head.
    let conv = Conv2d::<f32>::new(1, 4, [3, 3], Conv2dConfig { padding: [1, 1], ..Default::default() }, true, &mut rng).unwrap();
    let lstm = nabla::nn::Lstm::<f32>::with_options(16, 16, nabla::nn::RecurrentOptions::default().batch_first(true), &mut rng).unwrap();
    let head = Linear::<f32>::new(16, 10, &mut rng);
    let params: Vec<_> = [conv.parameters(), lstm.parameters(), head.parameters()].concat();
    let mut opt = Adam::new(params, 1e-3);
    let x = Tensor::<f32>::randn(&[16, 1, 8, 8], &mut rng);
    let y = ArrayD::from_shape_fn(IxDyn(&[16]), |i| i[0] % 10);
    let step = |opt: &mut Adam<f32>| -> f32 {
        let features = conv.forward(&x).unwrap().relu().max_pool2d(Pool2dConfig::new(2)).unwrap(); // (16, 4, 4, 4)
        let sequence = features.reshape(&[16, 4, 16]).unwrap(); // batch-first: 4 steps of 16
        let hidden = lstm.forward(&sequence).unwrap().narrow(1, 3, 1).unwrap().reshape(&[16, 16]).unwrap();
        let loss = cross_entropy(&head.forward(&hidden).unwrap(), &y).unwrap();
        let mut grads = loss.backward().unwrap();
        clip_grad_norm(&mut grads, 1.0).unwrap();
        opt.step(&grads).unwrap();
        loss.item().unwrap()
    };
    let first = step(&mut opt);
    let live_between_steps = memory::live_bytes();
    let mut rss_after_warmup = 0;
    let mut last = first;
    for i in 1..10_000 {
        last = step(&mut opt);
        assert_eq!(memory::live_bytes(), live_between_steps, "live tensor bytes changed at step {i}");
        if i == 1_000 {
            rss_after_warmup = rss_bytes();
        }
    }
    let rss_end = rss_bytes();
    let growth = rss_end as f64 / rss_after_warmup as f64 - 1.0;
    println!(
        "loss {first:.3} -> {last:.5}; RSS {:.1} MiB at step 1,000, {:.1} MiB at 10,000 ({:+.2}%)",
        rss_after_warmup as f64 / 1048576.0,
        rss_end as f64 / 1048576.0,
        100.0 * growth
    );
    assert!(last < first / 10.0, "the model trained: {first} -> {last}");
    assert!(growth < 0.05, "resident memory grew {:.1}% after warm-up", 100.0 * growth);
}
