//! Next-character prediction: an LSTM language model on text from a small stochastic
//! grammar, trained with truncated backpropagation through time, scored against the text's
//! true entropy.
//!
//! Sentences: a subject (`the`/`a` + noun, or `the`/`some` + plural noun), optionally a
//! relative clause (`that` + verb + object), then a verb that agrees in number with the
//! subject across the clause, an object, and `. `. Every choice is uniform, and the grammar
//! is unambiguous, so a sentence's probability is that of its derivation and the entropy
//! rate of the character stream is `H(sentence) / E[characters per sentence]`, estimated here
//! from 200,000 sentences. The model — embedding 32, `LSTM(32 → 128)`, Linear to the
//! characters — reads 32 parallel streams in chunks of 64 characters, carrying its state
//! between chunks ([`nn::TruncatedBptt`]). Prints the per-character cross-entropy and
//! perplexity on held-out text against the true entropy (target: within 0.05 nats/char;
//! in expectation the model cannot beat it, though the two estimates each carry a sampling
//! error of a few thousandths) and sampled text. Writes `target/nabla-examples/char_lm/training.svg`.
//! `--quick` trains 20 chunks instead of 1,000.

mod common;

use common::grammar::{ALPHABET, text};
use nabla::nn::functional::cross_entropy;
use nabla::prelude::*;
use rand::Rng;

const STREAMS: usize = 32;
const CHUNK: usize = 64;

/// `(ids, next ids)` chunk `k` of the streams: `(N, CHUNK)` each.
fn chunk(streams: &[Vec<usize>], k: usize) -> (ndarray::ArrayD<usize>, ndarray::ArrayD<usize>) {
    let at = |offset: usize| ndarray::Array2::from_shape_fn((streams.len(), CHUNK), |(i, t)| streams[i][k * CHUNK + t + offset]).into_dyn();
    (at(0), at(1))
}

/// The model: its parameters are named `embed.weight`, `lstm.weight_ih_l0`, … by the derive.
#[derive(Module)]
struct Model {
    embed: nn::Embedding,
    lstm: nn::Lstm,
    head: nn::Linear,
}

impl Model {
    /// Logits `(N·CHUNK, V)` for a chunk, the state carried by `bptt`.
    fn logits(&self, ids: &ndarray::ArrayD<usize>, bptt: &mut nn::TruncatedBptt) -> nabla::Result<Tensor> {
        let out = bptt.forward(&self.lstm, &self.embed.forward(ids)?)?;
        self.head.forward(&out.output)?.reshape(&[-1, ALPHABET.len() as isize])
    }
}

fn main() -> nabla::Result<()> {
    let quick = common::quick();
    let chunks = if quick { 20 } else { 1000 };
    let mut rng = nabla::rng(6);

    let samples = if quick { 20_000 } else { 200_000 };
    let true_entropy = common::grammar::entropy_rate(samples, &mut rng);
    println!("true entropy of the text: {true_entropy:.4} nats/char (perplexity {:.3}), from {samples} sentences", true_entropy.exp());

    let v = ALPHABET.len();
    let model = Model {
        embed: nn::Embedding::new(v, 32, &mut rng),
        lstm: nn::Lstm::with_options(32, 128, nn::RecurrentOptions::default().batch_first(true), &mut rng)?,
        head: nn::Linear::new(128, v, &mut rng),
    };
    let mut opt = optim::Adam::new(model.parameters(), 3e-3);
    let mut schedule = optim::Schedule::new(optim::CosineAnnealingLr { t_max: chunks, eta_min: 1e-4 }, &mut opt)?;

    // Each stream is long enough for every chunk (and one character of look-ahead).
    let streams: Vec<Vec<usize>> = (0..STREAMS).map(|_| text(chunks * CHUNK + 1, &mut rng)).collect();
    let mut held_rng = nabla::rng(77);
    let held_out: Vec<Vec<usize>> = (0..8).map(|_| text(40 * CHUNK + 1, &mut held_rng)).collect();
    let evaluate = |model: &Model| -> nabla::Result<f64> {
        let mut bptt = nn::TruncatedBptt::new(CHUNK)?;
        let (mut total, mut count) = (0.0, 0);
        // The first chunks warm the state up from zeros; score the rest.
        for k in 0..40 {
            let (x, y) = chunk(&held_out, k);
            let loss = nabla::no_grad(|| {
                cross_entropy(&model.logits(&x, &mut bptt)?, &y.into_shape_with_order(ndarray::IxDyn(&[8 * CHUNK])).expect("flat"))
            })?;
            if k >= 2 {
                total += loss.item()? as f64;
                count += 1;
            }
        }
        Ok(total / count as f64)
    };

    let mut bptt = nn::TruncatedBptt::new(CHUNK)?;
    let (mut curve, mut held_curve) = (Vec::new(), Vec::new());
    let bar = common::progress(chunks as u64, "chunks");
    for k in 0..chunks {
        let (x, y) = chunk(&streams, k);
        let y = y.into_shape_with_order(ndarray::IxDyn(&[STREAMS * CHUNK])).expect("flat");
        let loss = cross_entropy(&model.logits(&x, &mut bptt)?, &y)?;
        let mut grads = loss.backward()?;
        optim::clip_grad_norm(&mut grads, 1.0)?;
        opt.step(&grads)?;
        schedule.step(&mut opt);
        curve.push(((k + 1) as f64, loss.item()? as f64));
        if (k + 1) % 200 == 0 || k + 1 == chunks {
            let h = evaluate(&model)?;
            held_curve.push(((k + 1) as f64, h));
            bar.suspend(|| println!("chunk {:5}: train {:.4}, held-out {h:.4} nats/char", k + 1, loss.item().unwrap_or(f32::NAN)));
        }
        bar.inc(1);
    }
    bar.finish_and_clear();

    // Sample 300 characters at temperature 1, one character at a time, state carried.
    let mut sample_rng = nabla::rng(8);
    let mut state: Option<(Tensor, Tensor)> = None;
    let mut current = ALPHABET.find('.').expect("in the alphabet");
    let mut sampled = String::from(".");
    for _ in 0..300 {
        let x = model.embed.forward(&ndarray::arr2(&[[current]]).into_dyn())?;
        let out = nabla::no_grad(|| model.lstm.forward_with_state(&x, state.as_ref().map(|(h, c)| (h, Some(c)))))?;
        let probs = model.head.forward(&out.output.reshape(&[1, 128])?)?.softmax(-1)?.to_vec();
        let mut u = sample_rng.random::<f32>();
        current = probs
            .iter()
            .position(|&p| {
                u -= p;
                u <= 0.0
            })
            .unwrap_or(v - 1);
        sampled.push(ALPHABET.as_bytes()[current] as char);
        state = Some((out.h_n, out.c_n.expect("LSTM")));
    }
    println!("sampled text:\n{}", sampled.trim_start_matches(". "));

    let dir = common::out_dir("char_lm");
    let smoothed: Vec<(f64, f64)> = common::window_means(&curve, 20);
    let last = curve.last().map_or(1.0, |p| p.0);
    common::line_plot(
        &dir.join("training.svg"),
        "character LSTM: cross-entropy against the text's entropy",
        "chunk of 64 characters",
        "nats per character",
        vec![
            common::Series { label: "train (mean of 20 chunks)".into(), points: smoothed },
            common::Series { label: "held-out".into(), points: held_curve.clone() },
            common::Series { label: "true entropy".into(), points: vec![(1.0, true_entropy), (last, true_entropy)] },
        ],
        true,
    );
    println!("wrote {}", dir.join("training.svg").display());
    let held = held_curve.last().map_or(f64::NAN, |p| p.1);
    println!("held-out perplexity {:.3} per character (true {:.3})", held.exp(), true_entropy.exp());
    println!("held-out cross-entropy {held:.4} vs true entropy {true_entropy:.4} nats/char");
    common::report_target("char_lm held-out cross-entropy minus true entropy (nats/char)", held - true_entropy, 0.05, false);
    Ok(())
}
