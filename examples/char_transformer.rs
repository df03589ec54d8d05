//! Next-character prediction with a small transformer: the text of `char_lm`'s grammar,
//! a decoder of two pre-norm blocks, scored against the text's true entropy.
//!
//! Each block is `x + attention(LayerNorm(x))` (4 heads, causal) then
//! `x + W₂ GELU(W₁ LayerNorm(x))` (64 → 256 → 64); the model adds learned position
//! embeddings to character embeddings (64), runs the blocks, a last LayerNorm and a linear
//! map to the characters. It reads windows of 96 characters and predicts each next one.
//! Training: AdamW, gradients clipped to norm 1, the learning rate warmed up linearly over
//! 100 steps and then annealed on a cosine (`SequentialLr` of `LinearLr` and
//! `CosineAnnealingLr`).
//!
//! A window carries no state from the text before it, so its first characters are
//! predicted from little context: training uses every position, but the score is the
//! cross-entropy of the last 48 characters of held-out windows, which see the whole
//! sentence they are in (sentences have at most 45 characters). Prints it against the true entropy (target: within 0.05
//! nats/char, as `char_lm`'s LSTM) and sampled text; writes
//! `target/nabla-examples/char_transformer/training.svg`. `--quick` trains 20 steps
//! instead of 1,500.

mod common;

use common::grammar::{ALPHABET, text};
use nabla::nn::functional::{GeluApproximate, cross_entropy, gelu};
use nabla::prelude::*;
use rand::Rng;

const CONTEXT: usize = 96;
const SCORED: usize = 48;
const WIDTH: usize = 64;
const HEADS: usize = 4;
const BATCH: usize = 32;

/// A pre-norm transformer block.
#[derive(Module)]
struct Block {
    ln1: nn::LayerNorm,
    attn: nn::MultiheadAttention,
    ln2: nn::LayerNorm,
    fc1: nn::Linear,
    fc2: nn::Linear,
}

impl Block {
    fn new(rng: &mut impl Rng) -> nabla::Result<Self> {
        let options = nn::MultiheadOptions { batch_first: true, ..Default::default() };
        Ok(Block {
            ln1: nn::LayerNorm::new(&[WIDTH]),
            attn: nn::MultiheadAttention::with_options(WIDTH, HEADS, options, rng)?,
            ln2: nn::LayerNorm::new(&[WIDTH]),
            fc1: nn::Linear::new(WIDTH, 4 * WIDTH, rng),
            fc2: nn::Linear::new(4 * WIDTH, WIDTH, rng),
        })
    }

    /// `(N, L, E)` to `(N, L, E)`, each position attending to itself and those before.
    fn forward(&self, x: &Tensor) -> nabla::Result<Tensor> {
        let h = self.ln1.forward(x)?;
        let x = x.add(&self.attn.attend(&h, &h, &h, None, None, true)?.output)?;
        let h = gelu(&self.fc1.forward(&self.ln2.forward(&x)?)?, GeluApproximate::None);
        x.add(&self.fc2.forward(&h)?)
    }
}

/// The model: parameters named `embed.weight`, `blocks.0.attn.in_proj_weight`, … by the
/// derive.
#[derive(Module)]
struct Model {
    embed: nn::Embedding,
    position: nn::Embedding,
    blocks: Vec<Block>,
    ln: nn::LayerNorm,
    head: nn::Linear,
}

impl Model {
    /// Logits `(N, L, V)` for ids `(N, L)`, `L ≤ CONTEXT`.
    fn logits(&self, ids: &ndarray::ArrayD<usize>) -> nabla::Result<Tensor> {
        let positions = ndarray::Array1::from_iter(0..ids.shape()[1]).into_dyn();
        let mut x = self.embed.forward(ids)?.add(&self.position.forward(&positions)?)?;
        for block in &self.blocks {
            x = block.forward(&x)?;
        }
        self.head.forward(&self.ln.forward(&x)?)
    }
}

/// `count` windows of `stream` at random offsets (or every `CONTEXT` characters from the
/// start when `rng` is `None`): ids `(count, CONTEXT)` and the next ids.
fn windows(stream: &[usize], count: usize, rng: Option<&mut rand::rngs::StdRng>) -> (ndarray::ArrayD<usize>, ndarray::ArrayD<usize>) {
    let starts: Vec<usize> = match rng {
        Some(rng) => (0..count).map(|_| rng.random_range(0..stream.len() - CONTEXT - 1)).collect(),
        None => (0..count).map(|k| k * CONTEXT).collect(),
    };
    let at = |offset: usize| ndarray::Array2::from_shape_fn((count, CONTEXT), |(i, t)| stream[starts[i] + t + offset]).into_dyn();
    (at(0), at(1))
}

/// Mean cross-entropy of the last `scored` positions of each window.
fn window_loss(model: &Model, x: &ndarray::ArrayD<usize>, y: &ndarray::ArrayD<usize>, scored: usize) -> nabla::Result<Tensor> {
    let n = x.shape()[0];
    let logits = model.logits(x)?.narrow(1, CONTEXT - scored, scored)?.reshape(&[-1, ALPHABET.len() as isize])?;
    let targets =
        y.slice(ndarray::s![.., CONTEXT - scored..]).to_owned().into_shape_with_order(ndarray::IxDyn(&[n * scored])).expect("flat");
    cross_entropy(&logits, &targets)
}

fn main() -> nabla::Result<()> {
    let quick = common::quick();
    let steps = if quick { 20 } else { 1500 };
    let mut rng = nabla::rng(6);
    let samples = if quick { 20_000 } else { 200_000 };
    let true_entropy = common::grammar::entropy_rate(samples, &mut rng);
    println!("true entropy of the text: {true_entropy:.4} nats/char (perplexity {:.3}), from {samples} sentences", true_entropy.exp());

    let v = ALPHABET.len();
    let model = Model {
        embed: nn::Embedding::new(v, WIDTH, &mut rng),
        position: nn::Embedding::new(CONTEXT, WIDTH, &mut rng),
        blocks: vec![Block::new(&mut rng)?, Block::new(&mut rng)?],
        ln: nn::LayerNorm::new(&[WIDTH]),
        head: nn::Linear::new(WIDTH, v, &mut rng),
    };
    // Embeddings start at N(0, 0.02²) as in GPT-2, not PyTorch's N(0, 1), so that the
    // residual stream starts on the scale of the blocks' outputs.
    for table in [&model.embed.weight, &model.position.weight] {
        table.set(table.tensor().mul_scalar(0.02).to_ndarray())?;
    }
    println!("{} parameters", model.num_parameters());
    let mut opt = optim::AdamW::new(model.parameters(), 3e-3).weight_decay(0.01);
    let warmup = 100.min(steps / 2).max(1);
    let schedule = optim::SequentialLr::new(
        vec![
            Box::new(optim::LinearLr { start_factor: 0.01, end_factor: 1.0, total_iters: warmup }),
            Box::new(optim::CosineAnnealingLr { t_max: steps - warmup, eta_min: 1e-4 }),
        ],
        vec![warmup],
    )?;
    let mut schedule = optim::Schedule::new(schedule, &mut opt)?;

    let stream = text(200_000, &mut rng);
    let mut held_rng = nabla::rng(77);
    let held_out = text(64 * CONTEXT + 1, &mut held_rng);
    let (held_x, held_y) = windows(&held_out, 64, None);
    let mut window_rng = nabla::rng(9);
    let (mut curve, mut held_curve) = (Vec::new(), Vec::new());
    let bar = common::progress(steps as u64, "steps");
    for k in 0..steps {
        let (x, y) = windows(&stream, BATCH, Some(&mut window_rng));
        // Trained on every position (so that it also predicts from short contexts, as when
        // sampling starts), scored on the last SCORED.
        let loss = window_loss(&model, &x, &y, CONTEXT)?;
        let mut grads = loss.backward()?;
        optim::clip_grad_norm(&mut grads, 1.0)?;
        opt.step(&grads)?;
        schedule.step(&mut opt);
        curve.push(((k + 1) as f64, loss.item()? as f64));
        if (k + 1) % 250 == 0 || k + 1 == steps {
            let h = nabla::no_grad(|| window_loss(&model, &held_x, &held_y, SCORED))?.item()? as f64;
            held_curve.push(((k + 1) as f64, h));
            bar.suspend(|| {
                println!("step {:5}: train (every position) {:.4}, held-out {h:.4} nats/char, lr {:.5}", k + 1, curve[k].1, opt.lr())
            });
        }
        bar.inc(1);
    }
    bar.finish_and_clear();

    // Sample 300 characters at temperature 1, each from the last CONTEXT characters.
    let mut sample_rng = nabla::rng(8);
    let mut ids = vec![ALPHABET.find('.').expect("in the alphabet")];
    for _ in 0..300 {
        let window = &ids[ids.len().saturating_sub(CONTEXT)..];
        let x = ndarray::Array2::from_shape_fn((1, window.len()), |(_, t)| window[t]).into_dyn();
        let logits = nabla::no_grad(|| model.logits(&x))?;
        let probs = logits.narrow(1, window.len() - 1, 1)?.reshape(&[v as isize])?.softmax(-1)?.to_vec();
        let mut u = sample_rng.random::<f32>();
        ids.push(
            probs
                .iter()
                .position(|&p| {
                    u -= p;
                    u <= 0.0
                })
                .unwrap_or(v - 1),
        );
    }
    let sampled: String = ids.iter().map(|&i| ALPHABET.as_bytes()[i] as char).collect();
    println!("sampled text:\n{}", sampled.trim_start_matches(". "));

    let dir = common::out_dir("char_transformer");
    let last = curve.last().map_or(1.0, |p| p.0);
    common::line_plot(
        &dir.join("training.svg"),
        "character transformer: cross-entropy of the last 48 characters of a window",
        "step (32 windows of 96 characters)",
        "nats per character",
        vec![
            common::Series { label: "train, every position (mean of 20 steps)".into(), points: common::window_means(&curve, 20) },
            common::Series { label: "held-out".into(), points: held_curve.clone() },
            common::Series { label: "true entropy".into(), points: vec![(1.0, true_entropy), (last, true_entropy)] },
        ],
        true,
    );
    println!("wrote {}", dir.join("training.svg").display());
    let held = held_curve.last().map_or(f64::NAN, |p| p.1);
    println!("held-out cross-entropy {held:.4} vs true entropy {true_entropy:.4} nats/char");
    common::report_target("char_transformer held-out cross-entropy minus true entropy (nats/char)", held - true_entropy, 0.05, false);
    Ok(())
}
