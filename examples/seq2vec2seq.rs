//! Sequence to vector to sequence: an encoder-decoder reverses strings of digits, first
//! through the encoder's final state alone, then with attention over every encoder state.
//!
//! Strings are 3 to 12 random digits (one length per batch). The encoder embeds the digits
//! and runs an `LSTM`; the decoder is an `LSTMCell` started from the encoder's final
//! `(h, c)`, reading the previous output digit (teacher forcing in training, greedy at test
//! time). With attention, each decoder step also takes a context vector — scaled
//! dot-product attention of its state over the encoder outputs — into its input and its
//! output layer. Prints the exact-match rate by length on 500 new strings per length, for
//! both models. The target, for each model: >= 90% exact match over the short strings (3 to
//! 8 digits); the longer ones show how each falls with length — the final state is a
//! bottleneck of 64 numbers, attention reads every position. Writes
//! `target/nabla-examples/seq2vec2seq/accuracy.svg`. `--quick` trains 20 steps instead of
//! 2,000.

mod common;

use nabla::nn::functional::cross_entropy;
use nabla::prelude::*;
use rand::Rng;

const MIN_LEN: usize = 3;
const MAX_LEN: usize = 12;
/// The longest strings the target counts.
const SHORT: usize = 8;
const EMBED: usize = 32;
const HIDDEN: usize = 64;
/// Digits 0-9 and the decoder's start symbol.
const START: usize = 10;

#[derive(Module)]
struct Seq2Seq {
    embed: nn::Embedding,
    encoder: nn::Lstm,
    decoder: nn::LstmCell,
    head: nn::Linear,
    attention: bool,
}

impl Seq2Seq {
    fn new(attention: bool, rng: &mut impl Rng) -> Self {
        let context = if attention { HIDDEN } else { 0 };
        Seq2Seq {
            embed: nn::Embedding::new(START + 1, EMBED, rng),
            encoder: nn::Lstm::new(EMBED, HIDDEN, rng),
            decoder: nn::LstmCell::new(EMBED + context, HIDDEN, rng),
            head: nn::Linear::new(HIDDEN + context, 10, rng),
            attention,
        }
    }

    /// Logits `(N, 10)` for each output position; `teacher` is the target (training) or
    /// `None` (greedy decoding).
    fn run(&self, digits: &ndarray::Array2<usize>, teacher: Option<&ndarray::Array2<usize>>) -> nabla::Result<Vec<Tensor>> {
        let (n, len) = digits.dim();
        // (T, N) ids → (T, N, E), time first.
        let x = self.embed.forward(&digits.t().to_owned().into_dyn())?;
        let encoded = self.encoder.forward_with_state(&x, None)?;
        let memory = encoded.output.transpose(0, 1)?; // (N, T, H) for attention
        let (mut h, mut c) = (encoded.h_n.squeeze(0)?, encoded.c_n.expect("LSTM").squeeze(0)?);
        let mut previous = vec![START; n];
        let mut context = Tensor::zeros(&[n, HIDDEN]);
        let mut logits = Vec::with_capacity(len);
        for t in 0..len {
            let ids = ndarray::Array1::from(previous.clone()).into_dyn();
            let mut input = self.embed.forward(&ids)?;
            if self.attention {
                input = Tensor::cat(&[input, context.clone()], 1)?;
            }
            (h, c) = self.decoder.step(&input, Some((&h, Some(&c))))?;
            let features = if self.attention {
                let query = h.unsqueeze(1)?; // (N, 1, H)
                context = nn::scaled_dot_product_attention(&query, &memory, &memory, None, false, None)?.squeeze(1)?;
                Tensor::cat(&[h.clone(), context.clone()], 1)?
            } else {
                h.clone()
            };
            let step_logits = self.head.forward(&features)?;
            previous = match teacher {
                Some(target) => target.column(t).to_vec(),
                None => common::argmax_rows(&step_logits),
            };
            logits.push(step_logits);
        }
        Ok(logits)
    }
}

/// `n` strings of `len` digits and their reversals, `(N, len)` each.
fn batch(n: usize, len: usize, rng: &mut impl Rng) -> (ndarray::Array2<usize>, ndarray::Array2<usize>) {
    let digits = ndarray::Array2::from_shape_fn((n, len), |_| rng.random_range(0..10));
    let mut reversed = digits.clone();
    reversed.invert_axis(ndarray::Axis(1));
    (digits, reversed)
}

/// Exact-match rate (%) of greedy decoding on `n` new strings of each length.
fn exact_by_length(model: &Seq2Seq, n: usize) -> nabla::Result<Vec<(usize, f64)>> {
    (MIN_LEN..=MAX_LEN)
        .map(|len| {
            let (digits, target) = batch(n, len, &mut nabla::rng(1000 + len as u64));
            let logits = nabla::no_grad(|| model.run(&digits, None))?;
            let predicted: Vec<Vec<usize>> = logits.iter().map(common::argmax_rows).collect();
            let exact = (0..n).filter(|&i| (0..len).all(|t| predicted[t][i] == target[[i, t]])).count();
            Ok((len, 100.0 * exact as f64 / n as f64))
        })
        .collect()
}

fn train(attention: bool, steps: usize) -> nabla::Result<(Seq2Seq, Vec<(f64, f64)>)> {
    let mut rng = nabla::rng(5);
    let model = Seq2Seq::new(attention, &mut rng);
    let mut opt = optim::Adam::new(model.parameters(), 2e-3);
    let mut schedule = optim::Schedule::new(optim::CosineAnnealingLr { t_max: steps, eta_min: 1e-5 }, &mut opt)?;
    let mut losses = Vec::new();
    let bar = common::progress(steps as u64, if attention { "with attention" } else { "without attention" });
    for step in 1..=steps {
        let len = rng.random_range(MIN_LEN..=MAX_LEN);
        let (digits, target) = batch(64, len, &mut rng);
        let logits = Tensor::cat(&model.run(&digits, Some(&target))?, 0)?; // step-major (len·N, 10)
        let labels = ndarray::Array1::from_iter((0..len).flat_map(|t| target.column(t).to_vec())).into_dyn();
        let loss = cross_entropy(&logits, &labels)?;
        let mut grads = loss.backward()?;
        optim::clip_grad_norm(&mut grads, 1.0)?;
        opt.step(&grads)?;
        schedule.step(&mut opt);
        losses.push((step as f64, loss.item()? as f64));
        bar.inc(1);
    }
    bar.finish_and_clear();
    Ok((model, losses))
}

fn main() -> nabla::Result<()> {
    let steps = if common::quick() { 20 } else { 2000 };
    let mut curves = Vec::new();
    let mut accuracy = Vec::new();
    let mut overall = Vec::new();
    for attention in [false, true] {
        let name = if attention { "with attention" } else { "final state only" };
        let (model, losses) = train(attention, steps)?;
        let by_length = exact_by_length(&model, 500)?;
        let short: Vec<f64> = by_length.iter().filter(|(len, _)| *len <= SHORT).map(|(_, a)| *a).collect();
        let mean = short.iter().sum::<f64>() / short.len() as f64;
        let listed: Vec<String> = by_length.iter().map(|(len, a)| format!("{len}: {a:.1}%")).collect();
        println!("{name}: exact match by length {}", listed.join(", "));
        // Batches differ in length, so single losses jump: plot means over 25 steps.
        let smoothed = common::window_means(&losses, 25);
        curves.push(common::Series { label: name.into(), points: smoothed });
        accuracy.push(common::Series { label: name.into(), points: by_length.iter().map(|&(len, a)| (len as f64, a)).collect() });
        overall.push((name, mean));
    }
    let dir = common::out_dir("seq2vec2seq");
    common::panels(
        &dir.join("accuracy.svg"),
        &[
            common::Panel {
                title: "training loss (mean of 25 steps)".into(),
                x_label: "step".into(),
                y_label: "cross-entropy".into(),
                series: curves,
                log_y: true,
            },
            common::Panel {
                title: "reversal: exact match by length".into(),
                x_label: "digits".into(),
                y_label: "%".into(),
                series: accuracy,
                log_y: false,
            },
        ],
    );
    println!("wrote {}", dir.join("accuracy.svg").display());
    for (name, mean) in overall {
        common::report_target(&format!("seq2vec2seq exact match on {MIN_LEN}-{SHORT} digits, {name} (%)"), mean, 90.0, true);
    }
    Ok(())
}
