//! k-means and PCA are unconditional energy-based models (the course's claim, shown):
//! both have the energy `E(y, z) = ‖y - zW‖²` with a latent `z`, and differ only in what
//! `z` may be.
//!
//! - k-means: `z` is one-hot over k = 4 prototypes (the rows of W), so the free energy
//!   `F_∞(y) = min_z E(y, z)` is the squared distance to the nearest prototype, computed
//!   exactly over the four `z` (`ebm::free_energy_min`). W is trained by gradient descent on
//!   the mean of `F_∞` and compared with Lloyd's algorithm from the same start, on four
//!   blobs (σ = 1) near the corners of a square (target: final inertia within 1%). Both are
//!   local searches: on overlapping blobs placed at random they can stop in different
//!   minima (in one such trial gradient descent ended 2.5% below Lloyd).
//! - PCA: `z ∈ R²` is real, found for each `y` by inference (`ebm::infer`, warm-started
//!   from the previous step's answer), and W (2 × 5) trained by gradient descent on the mean
//!   energy at the inferred `z`. Compared with the top two principal directions of the data
//!   (power iteration on the covariance): the principal angles between the two subspaces
//!   (target: under 1°).
//!
//! Writes `kmeans.svg` and `pca.svg` under `target/nabla-examples/unconditional_ebm/`.
//! `--quick` trains a few steps only.

mod common;

use nabla::ebm::{self, Inference};
use nabla::prelude::*;
use rand::Rng;

fn main() -> nabla::Result<()> {
    let quick = common::quick();
    kmeans(quick)?;
    pca(quick)
}

fn kmeans(quick: bool) -> nabla::Result<()> {
    let (k, n) = (4, 600);
    let mut rng = nabla::rng(0);
    // Four blobs around the corners of a square, jittered.
    let centres: Vec<(f64, f64)> = [(-3.0, -3.0), (3.0, -2.5), (2.5, 3.0), (-2.0, 2.5)]
        .iter()
        .map(|&(a, b)| (a + rng.random_range(-0.5..0.5), b + rng.random_range(-0.5..0.5)))
        .collect();
    let noise = Tensor::<f64>::randn(&[n, 2], &mut rng).mul_scalar(1.0).to_vec();
    let ys: Vec<f64> = (0..n).flat_map(|i| [centres[i % k].0 + noise[2 * i], centres[i % k].1 + noise[2 * i + 1]]).collect();
    let y = Tensor::<f64>::from_vec(ys.clone(), &[n, 2])?;
    // Both methods start from the same k data points.
    let start: Vec<f64> = (0..k).flat_map(|j| [ys[2 * (7 * j + 3)], ys[2 * (7 * j + 3) + 1]]).collect();

    let w = nn::Param::new(Tensor::<f64>::from_vec(start.clone(), &[k, 2])?);
    let one_hot = Tensor::<f64>::eye(k);
    let mut opt = optim::Adam::new(vec![w.clone()], 0.05);
    let steps = if quick { 10 } else { 1500 };
    for _ in 0..steps {
        let wt = w.tensor();
        let energy = move |_: &Tensor<f64>, y: &Tensor<f64>, z: &Tensor<f64>| y.sub(&z.matmul(&wt)?)?.pow(2.0).sum_dims(&[1], false);
        let (f, _) = ebm::free_energy_min(&energy, &ebm::no_x(n), &y, &one_hot)?;
        opt.step(&f.mean().backward()?)?;
    }
    let wt = w.tensor();
    let energy = move |_: &Tensor<f64>, y: &Tensor<f64>, z: &Tensor<f64>| y.sub(&z.matmul(&wt)?)?.pow(2.0).sum_dims(&[1], false);
    let (f, assignment) = ebm::free_energy_min(&energy, &ebm::no_x(n), &y, &one_hot)?;
    let inertia_ebm = f.sum().item()?;

    // Lloyd's algorithm: assign to the nearest prototype, move prototypes to the means.
    let mut protos = start;
    let mut lloyd_assignment = vec![0; n];
    for _ in 0..100 {
        for (i, assigned) in lloyd_assignment.iter_mut().enumerate() {
            *assigned = (0..k).min_by(|&a, &b| dist2(&ys, i, &protos, a).total_cmp(&dist2(&ys, i, &protos, b))).expect("k > 0");
        }
        for j in 0..k {
            let members: Vec<usize> = (0..n).filter(|&i| lloyd_assignment[i] == j).collect();
            if !members.is_empty() {
                for d in 0..2 {
                    protos[2 * j + d] = members.iter().map(|&i| ys[2 * i + d]).sum::<f64>() / members.len() as f64;
                }
            }
        }
    }
    let inertia_lloyd: f64 = (0..n).map(|i| (0..k).map(|j| dist2(&ys, i, &protos, j)).fold(f64::INFINITY, f64::min)).sum();
    println!("k-means: inertia by gradient descent on F_inf {inertia_ebm:.3}, by Lloyd's algorithm {inertia_lloyd:.3}");
    let dir = common::out_dir("unconditional_ebm");
    let points: Vec<(f64, f64)> = ys.chunks(2).map(|p| (p[0], p[1])).chain(w.tensor().to_vec().chunks(2).map(|p| (p[0], p[1]))).collect();
    let labels: Vec<usize> = assignment.iter().copied().chain(std::iter::repeat_n(k, k)).collect();
    common::scatter_grid(&dir.join("kmeans.svg"), 1, &[("k-means as an EBM: clusters and prototypes".into(), points)], &labels);
    common::report_target(
        "k-means: |inertia (EBM) - inertia (Lloyd)| / inertia (Lloyd) (%)",
        100.0 * (inertia_ebm - inertia_lloyd).abs() / inertia_lloyd,
        1.0,
        false,
    );
    Ok(())
}

fn dist2(ys: &[f64], i: usize, protos: &[f64], j: usize) -> f64 {
    (ys[2 * i] - protos[2 * j]).powi(2) + (ys[2 * i + 1] - protos[2 * j + 1]).powi(2)
}

fn pca(quick: bool) -> nabla::Result<()> {
    let (n, d, k) = (500, 5, 2);
    let mut rng = nabla::rng(1);
    let mixing = Tensor::<f64>::randn(&[k, d], &mut rng);
    let scales = Tensor::<f64>::from_vec(vec![2.0, 1.0], &[1, k])?;
    let raw = Tensor::<f64>::randn(&[n, k], &mut rng)
        .mul(&scales)?
        .matmul(&mixing)?
        .add(&Tensor::<f64>::randn(&[n, d], &mut rng).mul_scalar(0.1))?;
    let y = raw.sub(&raw.mean_dims(&[0], true)?)?;

    let w = nn::Param::new(Tensor::<f64>::randn(&[k, d], &mut rng).mul_scalar(0.1));
    let mut opt = optim::Adam::new(vec![w.clone()], 0.02);
    let mut z = Tensor::<f64>::zeros(&[n, k]);
    let steps = if quick { 5 } else { 600 };
    let inference = Inference { steps: 50, method: ebm::Method::Sgd { lr: 0.05, momentum: 0.5 }, ..Inference::default() };
    for _ in 0..steps {
        let wt = w.tensor().detach();
        // Inference: z = argmin_z ‖y - zW‖², the data y playing the part of the "x".
        let over_z = move |y: &Tensor<f64>, z: &Tensor<f64>| y.sub(&z.matmul(&wt)?)?.pow(2.0).sum_dims(&[1], false);
        z = ebm::infer(&over_z, &y, &z, &inference)?.y;
        // Learning: W down the gradient of the energy at the inferred z.
        let energy = y.sub(&z.matmul(&w.tensor())?)?.pow(2.0).sum_dims(&[1], false)?.mean();
        opt.step(&energy.backward()?)?;
    }
    // The reference: the top two eigenvectors of the covariance, by power iteration.
    let cov = y.t().matmul(&y)?.mul_scalar(1.0 / n as f64).to_vec();
    let top = top_eigenvectors(&cov, d, k);
    let learned = orthonormal_rows(&w.tensor().to_vec(), k, d);
    // Principal angles: the singular values of Q1 Q2ᵀ (2×2) are their cosines.
    let m: Vec<f64> =
        (0..k).flat_map(|i| (0..k).map(move |j| (i, j))).map(|(i, j)| (0..d).map(|c| learned[i * d + c] * top[j * d + c]).sum()).collect();
    let (a, b, c, e) = (m[0], m[1], m[2], m[3]);
    let (s, t) = (a * a + b * b + c * c + e * e, (a * e - b * c).powi(2));
    let disc = (s * s / 4.0 - t).max(0.0).sqrt();
    let cosines = [(s / 2.0 + disc).sqrt().min(1.0), (s / 2.0 - disc).max(0.0).sqrt().min(1.0)];
    let angles: Vec<f64> = cosines.iter().map(|c| c.acos().to_degrees()).collect();
    println!(
        "PCA: principal angles between the learned subspace and the top two principal directions: {:.4}° and {:.4}°",
        angles[0], angles[1]
    );

    let project = |basis: &[f64]| -> Vec<(f64, f64)> {
        let yv = y.to_vec();
        (0..n).map(|i| ((0..d).map(|c| yv[i * d + c] * basis[c]).sum(), (0..d).map(|c| yv[i * d + c] * basis[d + c]).sum())).collect()
    };
    let dir = common::out_dir("unconditional_ebm");
    common::scatter_grid(
        &dir.join("pca.svg"),
        2,
        &[("data in the learned basis (EBM)".into(), project(&learned)), ("data in the principal basis".into(), project(&top))],
        &vec![0; n],
    );
    println!("wrote {} and {}", dir.join("kmeans.svg").display(), dir.join("pca.svg").display());
    common::report_target("PCA: largest principal angle (degrees)", angles[1].max(angles[0]), 1.0, false);
    Ok(())
}

/// The top `k` eigenvectors (rows) of a symmetric `d × d` matrix, by power iteration with
/// deflation.
fn top_eigenvectors(m: &[f64], d: usize, k: usize) -> Vec<f64> {
    let mut a = m.to_vec();
    let mut out = Vec::new();
    for _ in 0..k {
        let mut v = vec![1.0; d];
        let mut lambda = 0.0;
        for _ in 0..1000 {
            let w: Vec<f64> = (0..d).map(|i| (0..d).map(|j| a[i * d + j] * v[j]).sum()).collect();
            lambda = w.iter().map(|x| x * x).sum::<f64>().sqrt();
            v = w.iter().map(|x| x / lambda).collect();
        }
        for i in 0..d {
            for j in 0..d {
                a[i * d + j] -= lambda * v[i] * v[j];
            }
        }
        out.extend(v);
    }
    out
}

/// Gram-Schmidt on the rows of a `k × d` matrix.
fn orthonormal_rows(w: &[f64], k: usize, d: usize) -> Vec<f64> {
    let mut q: Vec<Vec<f64>> = Vec::new();
    for i in 0..k {
        let mut v = w[i * d..(i + 1) * d].to_vec();
        for u in &q {
            let r: f64 = u.iter().zip(&v).map(|(a, b)| a * b).sum();
            v.iter_mut().zip(u).for_each(|(x, u)| *x -= r * u);
        }
        let norm = v.iter().map(|x| x * x).sum::<f64>().sqrt();
        q.push(v.into_iter().map(|x| x / norm).collect());
    }
    q.concat()
}
