//! The training steps of the reference workloads W1, W2 and W4 (WORKLOADS.md), defined once
//! for `examples/workloads.rs` and the criterion benches (`benches/ops.rs` includes this
//! file by path).

use nabla::nn::functional::{Reduction, cross_entropy, mse_loss};
use nabla::ops::Conv2dConfig;
use nabla::prelude::*;
use rand::Rng;

/// W1: MLP 784-512-256-10, ReLU, cross-entropy, SGD lr 0.01, batch 128.
pub fn w1<R: Rng>(rng: &mut R) -> impl FnMut() + use<R> {
    let model = w1_model(rng);
    classification_step(model, Tensor::randn(&[128, 784], rng))
}

/// W1's model.
pub fn w1_model<R: Rng>(rng: &mut R) -> nn::Sequential {
    nn::Sequential::new()
        .push(nn::Linear::new(784, 512, rng))
        .push(nn::Relu)
        .push(nn::Linear::new(512, 256, rng))
        .push(nn::Relu)
        .push(nn::Linear::new(256, 10, rng))
}

/// W2: conv 1→32, ReLU, max pool, conv 32→64, ReLU, max pool, linear 3136→128, ReLU,
/// linear 128→10; cross-entropy, SGD, batch 64 of 1×28×28.
pub fn w2<R: Rng>(rng: &mut R) -> impl FnMut() + use<R> {
    let model = w2_model(rng);
    classification_step(model, Tensor::randn(&[64, 1, 28, 28], rng))
}

/// W2's model.
pub fn w2_model<R: Rng>(rng: &mut R) -> nn::Sequential {
    let pad1 = Conv2dConfig { padding: [1, 1], ..Default::default() };
    nn::Sequential::new()
        .push(nn::Conv2d::new(1, 32, [3, 3], pad1, true, rng).expect("valid config"))
        .push(nn::Relu)
        .push(nn::max_pool2d(2))
        .push(nn::Conv2d::new(32, 64, [3, 3], pad1, true, rng).expect("valid config"))
        .push(nn::Relu)
        .push(nn::max_pool2d(2))
        .push(nn::Flatten::new())
        .push(nn::Linear::new(3136, 128, rng))
        .push(nn::Relu)
        .push(nn::Linear::new(128, 10, rng))
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

/// Fixed labels for a batch of `n`.
pub fn labels(n: usize) -> ndarray::ArrayD<usize> {
    ndarray::Array1::from_shape_fn(n, |i| (i * 7) % 10).into_dyn()
}

/// One forward, cross-entropy against fixed labels, backward and SGD (lr 0.01) step.
fn classification_step(model: nn::Sequential, x: Tensor) -> impl FnMut() {
    let y = labels(x.shape()[0]);
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
    let model = W3Model::new(rng);
    let (x, y) = w3_batch(32, rng);
    let mut opt = optim::Sgd::new(model.parameters(), 0.01);
    move || {
        let mut grads = model.loss(&x, &y).backward().unwrap();
        optim::clip_grad_norm(&mut grads, 1.0).unwrap();
        opt.step(&grads).unwrap();
    }
}

/// W3's vocabulary and sequence length.
pub const W3_VOCAB: usize = 100;
const W3_STEPS: usize = 35;

/// W3's model: embedding, LSTM, linear head.
#[derive(Module)]
pub struct W3Model {
    emb: nn::Embedding,
    lstm: nn::Lstm,
    head: nn::Linear,
}

impl W3Model {
    /// The model, its parameters drawn from `rng` in W3's order.
    pub fn new<R: Rng>(rng: &mut R) -> Self {
        let emb: nn::Embedding = nn::Embedding::new(W3_VOCAB, 64, rng);
        let lstm: nn::Lstm =
            nn::Lstm::with_options(64, 256, nn::RecurrentOptions::default().batch_first(true), rng).expect("valid options");
        let head = nn::Linear::new(256, W3_VOCAB, rng);
        W3Model { emb, lstm, head }
    }

    /// Cross-entropy over every position of `batch` sequences.
    pub fn loss(&self, x: &ndarray::ArrayD<usize>, y: &ndarray::ArrayD<usize>) -> Tensor {
        let h = self.lstm.forward(&self.emb.forward(x).unwrap()).unwrap();
        let logits = self.head.forward(&h).unwrap().reshape(&[-1, W3_VOCAB as isize]).unwrap();
        cross_entropy(&logits, y).unwrap()
    }
}

/// `batch` random sequences of W3_STEPS ids and their targets.
pub fn w3_batch<R: Rng>(batch: usize, rng: &mut R) -> (ndarray::ArrayD<usize>, ndarray::ArrayD<usize>) {
    let x = ndarray::Array2::from_shape_fn((batch, W3_STEPS), |_| rng.random_range(0..W3_VOCAB)).into_dyn();
    let y = ndarray::Array1::from_shape_fn(batch * W3_STEPS, |_| rng.random_range(0..W3_VOCAB)).into_dyn();
    (x, y)
}
