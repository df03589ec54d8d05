//! The training steps of the reference workloads W1, W2 and W4 (WORKLOADS.md), defined once
//! for `examples/workloads.rs` and the criterion benches (`benches/ops.rs` includes this
//! file by path).

use nabla::nn::functional::{Reduction, cross_entropy, mse_loss};
use nabla::ops::Conv2dConfig;
use nabla::prelude::*;
use rand::Rng;

/// W1: MLP 784-512-256-10, ReLU, cross-entropy, SGD lr 0.01, batch 128.
pub fn w1<R: Rng>(rng: &mut R) -> impl FnMut() + use<R> {
    let model = nn::Sequential::new()
        .push(nn::Linear::new(784, 512, rng))
        .push(nn::Relu)
        .push(nn::Linear::new(512, 256, rng))
        .push(nn::Relu)
        .push(nn::Linear::new(256, 10, rng));
    classification_step(model, Tensor::randn(&[128, 784], rng))
}

/// W2: conv 1→32, ReLU, max pool, conv 32→64, ReLU, max pool, linear 3136→128, ReLU,
/// linear 128→10; cross-entropy, SGD, batch 64 of 1×28×28.
pub fn w2<R: Rng>(rng: &mut R) -> impl FnMut() + use<R> {
    let pad1 = Conv2dConfig { padding: [1, 1], ..Default::default() };
    let model = nn::Sequential::new()
        .push(nn::Conv2d::new(1, 32, [3, 3], pad1, true, rng).expect("valid config"))
        .push(nn::Relu)
        .push(nn::max_pool2d(2))
        .push(nn::Conv2d::new(32, 64, [3, 3], pad1, true, rng).expect("valid config"))
        .push(nn::Relu)
        .push(nn::max_pool2d(2))
        .push(nn::Flatten::new())
        .push(nn::Linear::new(3136, 128, rng))
        .push(nn::Relu)
        .push(nn::Linear::new(128, 10, rng));
    classification_step(model, Tensor::randn(&[64, 1, 28, 28], rng))
}

/// W4: MLP 2-16-16-1, tanh, MSE, SGD lr 0.01, batch 8.
pub fn w4<R: Rng>(rng: &mut R) -> impl FnMut() + use<R> {
    let model = nn::Sequential::new()
        .push(nn::Linear::new(2, 16, rng))
        .push(nn::Tanh)
        .push(nn::Linear::new(16, 16, rng))
        .push(nn::Tanh)
        .push(nn::Linear::new(16, 1, rng));
    let (x, y) = (Tensor::randn(&[8, 2], rng), Tensor::randn(&[8, 1], rng));
    let mut opt = optim::Sgd::new(model.parameters(), 0.01);
    move || {
        let loss = mse_loss(&model.forward(&x).unwrap(), &y, Reduction::Mean).unwrap();
        opt.step(&loss.backward().unwrap()).unwrap();
    }
}

/// One forward, cross-entropy against fixed labels, backward and SGD (lr 0.01) step.
fn classification_step(model: nn::Sequential, x: Tensor) -> impl FnMut() {
    let n = x.shape()[0];
    let y = ndarray::Array1::from_shape_fn(n, |i| (i * 7) % 10).into_dyn();
    let mut opt = optim::Sgd::new(model.parameters(), 0.01);
    move || {
        let loss = cross_entropy(&model.forward(&x).unwrap(), &y).unwrap();
        opt.step(&loss.backward().unwrap()).unwrap();
    }
}

/// W3: LSTM language model — embedding 100→64, one-layer LSTM 64→256 (batch first),
/// linear 256→100 at every step; cross-entropy over all 32·35 positions, gradient norm
/// clipped to 1.0, SGD lr 0.01.
pub fn w3<R: Rng>(rng: &mut R) -> impl FnMut() + use<R> {
    let (vocab, batch, steps) = (100, 32, 35);
    let emb: nn::Embedding = nn::Embedding::new(vocab, 64, rng);
    let lstm: nn::Lstm = nn::Lstm::with_options(64, 256, nn::RecurrentOptions::default().batch_first(true), rng).expect("valid options");
    let head = nn::Linear::new(256, vocab, rng);
    let x = ndarray::Array2::from_shape_fn((batch, steps), |_| rng.random_range(0..vocab)).into_dyn();
    let y = ndarray::Array1::from_shape_fn(batch * steps, |_| rng.random_range(0..vocab)).into_dyn();
    let params = [emb.parameters(), lstm.parameters(), head.parameters()].concat();
    let mut opt = optim::Sgd::new(params, 0.01);
    move || {
        let h = lstm.forward(&emb.forward(&x).unwrap()).unwrap();
        let logits = head.forward(&h).unwrap().reshape(&[-1, vocab as isize]).unwrap();
        let mut grads = cross_entropy(&logits, &y).unwrap().backward().unwrap();
        optim::clip_grad_norm(&mut grads, 1.0).unwrap();
        opt.step(&grads).unwrap();
    }
}
