//! A joint-embedding architecture: one encoder, the same weights applied to two inputs (a
//! siamese network), maps digits to points of the plane, and the energy of a pair is the
//! squared distance of its embeddings, `C(h, h') = ‖h - h'‖²` — low for two images of the
//! same digit.
//!
//! Training takes triplets from the embedded digits' training split — an anchor, another
//! image of its digit, an image of a different digit — and applies the margin loss
//! `max(0, 1 + C(a, p) - C(a, n))` (`ebm::hinge`, PyTorch's `MarginRankingLoss`). Prints
//! the nearest-neighbour accuracy of the test images among the training images in the
//! 2-D embedding (target >= 90%) and writes the embedding of the test images, coloured by
//! digit, to `target/nabla-examples/siamese/embedding.svg`. `--quick` trains 20 steps
//! instead of 3,000.

mod common;

use nabla::ebm;
use nabla::prelude::*;
use rand::Rng;

fn main() -> nabla::Result<()> {
    let steps = if common::quick() { 20 } else { 3000 };
    let mut rng = nabla::rng(0);
    let split = data::digits()?.split(0.25, &mut rng)?;
    let encoder = nn::Sequential::new()
        .push(nn::Linear::new(64, 128, &mut rng))
        .push(nn::Relu)
        .push(nn::Linear::new(128, 64, &mut rng))
        .push(nn::Relu)
        .push(nn::Linear::new(64, 2, &mut rng));
    let labels: Vec<usize> = split.train_y.iter().copied().collect();
    let by_digit: Vec<Vec<usize>> = (0..10).map(|d| (0..labels.len()).filter(|&i| labels[i] == d).collect()).collect();
    let mut opt = optim::Adam::new(encoder.parameters(), 1e-3);
    let energy = |a: &Tensor, b: &Tensor| a.sub(b)?.pow(2.0).sum_dims(&[1], false);
    let bar = common::progress(steps as u64, "steps");
    for _ in 0..steps {
        // 64 triplets: anchor, positive (same digit), negative (another digit).
        let (mut anchors, mut positives, mut negatives) = (Vec::new(), Vec::new(), Vec::new());
        for _ in 0..64 {
            let a = rng.random_range(0..labels.len());
            let same = &by_digit[labels[a]];
            let other = (labels[a] + rng.random_range(1..10)) % 10;
            anchors.push(a);
            positives.push(same[rng.random_range(0..same.len())]);
            negatives.push(by_digit[other][rng.random_range(0..by_digit[other].len())]);
        }
        let rows = |idx: Vec<usize>| split.train_x.index_select(0, &idx);
        // The same encoder — the same parameters — embeds all three.
        let (ha, hp, hn) = (encoder.forward(&rows(anchors)?)?, encoder.forward(&rows(positives)?)?, encoder.forward(&rows(negatives)?)?);
        let loss = ebm::hinge(&energy(&ha, &hp)?, &energy(&ha, &hn)?, 1.0)?;
        opt.step(&loss.backward()?)?;
        bar.inc(1);
    }
    bar.finish_and_clear();

    let (train, test) =
        nabla::no_grad(|| -> nabla::Result<(Tensor, Tensor)> { Ok((encoder.forward(&split.train_x)?, encoder.forward(&split.test_x)?)) })?;
    let (train_v, test_v) = (train.to_vec(), test.to_vec());
    let mut correct = 0;
    for (i, &label) in split.test_y.iter().enumerate() {
        let (tx, ty) = (test_v[2 * i], test_v[2 * i + 1]);
        let nearest = (0..labels.len())
            .min_by(|&a, &b| {
                let d = |k: usize| (train_v[2 * k] - tx).powi(2) + (train_v[2 * k + 1] - ty).powi(2);
                d(a).total_cmp(&d(b))
            })
            .expect("training images");
        correct += usize::from(labels[nearest] == label);
    }
    let accuracy = 100.0 * correct as f64 / split.test_y.len() as f64;
    let dir = common::out_dir("siamese");
    let points: Vec<(f64, f64)> = test_v.chunks(2).map(|p| (p[0] as f64, p[1] as f64)).collect();
    common::scatter_grid(
        &dir.join("embedding.svg"),
        1,
        &[("test digits in the learned plane".into(), points)],
        &split.test_y.iter().copied().collect::<Vec<_>>(),
    );
    println!("wrote {}", dir.join("embedding.svg").display());
    common::report_target("nearest-neighbour accuracy in the 2-D embedding (%)", accuracy, 90.0, true);
    Ok(())
}
