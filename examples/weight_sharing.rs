//! Parameter sharing: one weight used in two places gets the sum of both uses' gradients.
//!
//! A tied linear autoencoder: `z = W x`, `x̂ = Wᵀ z` with a single `Param` W (8 → 3 → 8),
//! trained to reconstruct inputs that lie near a 3-D subspace (it learns that subspace, as
//! PCA would). The program checks, at the
//! start, that the gradient of the reconstruction loss with respect to W equals (a) the
//! sum of the gradients of an untied copy — encoder and decoder weights as separate
//! tensors holding the same values — and (b) central finite differences; then trains and
//! prints the loss. Targets: both differences below 1e-8 (f64), and the trained
//! reconstruction error below a tenth of the data's variance.

mod common;

use nabla::prelude::*;

fn loss(encoder: &Tensor<f64>, decoder: &Tensor<f64>, x: &Tensor<f64>) -> nabla::Result<Tensor<f64>> {
    let z = x.matmul(&encoder.t())?;
    let reconstruction = z.matmul(decoder)?;
    Ok(reconstruction.sub(x)?.pow(2.0).mean())
}

fn main() -> nabla::Result<()> {
    let mut rng = nabla::rng(0);
    // Data near a 3-D subspace of R⁸: x = B c + small noise.
    let basis = Tensor::<f64>::randn(&[3, 8], &mut rng).mul_scalar(0.5);
    let data = |n: usize, rng: &mut rand::rngs::StdRng| -> nabla::Result<Tensor<f64>> {
        Tensor::<f64>::randn(&[n, 3], rng).matmul(&basis)?.add(&Tensor::<f64>::randn(&[n, 8], rng).mul_scalar(0.05))
    };
    let x = data(64, &mut rng)?;
    let w = nn::Param::new(Tensor::<f64>::randn(&[3, 8], &mut rng).mul_scalar(0.3));

    // The tied gradient, and the two uses taken apart.
    let tied = w.tensor();
    let g_tied = loss(&tied, &tied, &x)?.backward()?.get(&tied).expect("W has a gradient").clone();
    let (enc, dec) = (w.tensor().detach().requires_grad_(true)?, w.tensor().detach().requires_grad_(true)?);
    let g = loss(&enc, &dec, &x)?.backward()?;
    let (g_enc, g_dec) = (g.get(&enc).expect("encoder gradient"), g.get(&dec).expect("decoder gradient"));
    let sum_diff = g_tied.sub(&g_enc.add(g_dec)?)?.abs().amax().item()?;
    println!("|dL/dW| as encoder {:.4}, as decoder {:.4}, tied {:.4}", norm(g_enc)?, norm(g_dec)?, norm(&g_tied)?);
    println!("largest |tied - (encoder + decoder)|: {sum_diff:.1e}");

    // Central finite differences of the tied loss.
    let h = 1e-6;
    let base = w.tensor().to_vec();
    let mut fd_diff: f64 = 0.0;
    let g_tied_values = g_tied.to_vec();
    for k in 0..base.len() {
        let at = |s: f64| -> nabla::Result<f64> {
            let mut v = base.clone();
            v[k] += s;
            let t = Tensor::<f64>::from_vec(v, &[3, 8])?;
            loss(&t, &t, &x)?.item()
        };
        fd_diff = fd_diff.max(((at(h)? - at(-h)?) / (2.0 * h) - g_tied_values[k]).abs());
    }
    println!("largest |tied - finite differences|: {fd_diff:.1e}");

    let steps = if common::quick() { 20 } else { 2000 };
    let mut opt = optim::Adam::new(vec![w.clone()], 1e-2);
    let mut curve = Vec::new();
    for step in 1..=steps {
        let batch = data(64, &mut rng)?;
        let t = w.tensor();
        let l = loss(&t, &t, &batch)?;
        curve.push((step as f64, l.item()?));
        opt.step(&l.backward()?)?;
    }
    let test = data(1000, &mut nabla::rng(9))?;
    let t = w.tensor();
    let error = nabla::no_grad(|| loss(&t, &t, &test))?.item()?;
    let variance = test.pow(2.0).mean().item()?;
    println!("test reconstruction error {error:.5}, data variance {variance:.5}");
    let dir = common::out_dir("weight_sharing");
    common::line_plot(
        &dir.join("training.svg"),
        "tied autoencoder",
        "step",
        "MSE",
        vec![common::Series { label: "train batch".into(), points: curve }],
        true,
    );
    println!("wrote {}", dir.join("training.svg").display());
    common::report_target("largest gradient difference (tied vs sum of uses, vs finite differences)", sum_diff.max(fd_diff), 1e-8, false);
    common::report_target("reconstruction error / variance", error / variance, 0.1, false);
    Ok(())
}

fn norm(t: &Tensor<f64>) -> nabla::Result<f64> {
    Ok(t.pow(2.0).sum().item()?.sqrt())
}
