//! The course's latent-variable energy-based model: `y ∈ R²` lies on an ellipse around `x`,
//! `y = g(x, z) = x + (2 cos z, sin z)` with the latent `z` an angle, and the energy
//! `E(x, y, z) = ‖y - g(x, z)‖²`.
//!
//! Draws, over a grid of `y` for `x = 0`, the zero-temperature free energy
//! `F_∞(y) = min_z E` (the squared distance to the ellipse, exact over 720 angles) and the
//! free energy `F_β = -(1/β) log ∫ exp(-β E) dz` (logsumexp over the same grid of angles, a
//! rectangle rule of spacing 0.5°) for β = 0.3, 1, 3 and 30: at low β the landscape is a
//! smooth bowl whose minimum is the ellipse's centre, at high β it is F_∞ with its valley on
//! the curve. Then inference: for a few points `y`, gradient descent on `z` from several
//! starts finds the nearest point of the ellipse; the program prints each `ẑ` and its
//! distance next to the exact nearest point found by dense search (target: equal distances
//! to 1e-3). Writes `landscapes.svg` and `inference.svg` under
//! `target/nabla-examples/ebm_ellipse/` (the landscapes drawn as `log(1 + F - min F)`, dark
//! low).

mod common;

use nabla::ebm::{self, Inference};
use nabla::prelude::*;

/// `E(x, y, z)` for `x, y (N, 2)`, `z (N, 1)`.
fn energy(x: &Tensor<f64>, y: &Tensor<f64>, z: &Tensor<f64>) -> nabla::Result<Tensor<f64>> {
    let on_curve = Tensor::cat(&[z.cos().mul_scalar(2.0), z.sin()], 1)?.add(x)?;
    y.sub(&on_curve)?.pow(2.0).sum_dims(&[1], false)
}

fn main() -> nabla::Result<()> {
    let quick = common::quick();
    let side = if quick { 21 } else { 61 };
    let angles = 720;
    let zs = Tensor::<f64>::from_vec((0..angles).map(|k| k as f64 * std::f64::consts::TAU / angles as f64).collect(), &[angles, 1])?;
    let log_dz = (std::f64::consts::TAU / angles as f64).ln();
    // A grid of y over [-3, 3]², x = 0.
    let coords: Vec<f64> = (0..side).map(|i| -3.0 + 6.0 * i as f64 / (side - 1) as f64).collect();
    let ys: Vec<f64> = coords.iter().flat_map(|&b| coords.iter().flat_map(move |&a| [a, b])).collect();
    let n = side * side;
    let y = Tensor::<f64>::from_vec(ys, &[n, 2])?;
    let x = Tensor::<f64>::zeros(&[n, 2]);
    // Drawn as log(1 + F - min F), rows from y2 = 3 at the top: the valleys show, not only
    // the far corners.
    let as_grid = |t: &Tensor<f64>| -> Vec<Vec<f64>> {
        let v = t.to_vec();
        let lo = v.iter().copied().fold(f64::INFINITY, f64::min);
        v.chunks(side).rev().map(|row| row.iter().map(|&f| (1.0 + f - lo).ln()).collect()).collect()
    };
    let (f_inf, _) = ebm::free_energy_min(&energy, &x, &y, &zs)?;
    let mut maps = vec![("F_inf (min over z)".to_string(), as_grid(&f_inf))];
    for beta in [0.3, 1.0, 3.0, 30.0] {
        let f = ebm::free_energy(&energy, &x, &y, &zs, beta, log_dz)?;
        let (argmin, min) = f.to_vec().iter().enumerate().fold((0, f64::MAX), |b, (i, &v)| if v < b.1 { (i, v) } else { b });
        println!("β = {beta:>4}: F_β is lowest at y = ({:.2}, {:.2}), value {min:.3}", y.to_vec()[2 * argmin], y.to_vec()[2 * argmin + 1]);
        maps.push((format!("F_beta, beta = {beta}"), as_grid(&f)));
    }
    let dir = common::out_dir("ebm_ellipse");
    common::heatmaps(&dir.join("landscapes.svg"), 5, if quick { 6 } else { 4 }, &maps, false);

    // Inference of z for a few y: descend on z from 4 starts, keep the lowest energy.
    let queries = [(2.5, 1.5), (-0.5, 0.2), (0.0, -2.5), (-2.8, -0.4), (1.0, 0.0)];
    let qy = Tensor::<f64>::from_vec(queries.iter().flat_map(|&(a, b)| [a, b]).collect(), &[queries.len(), 2])?;
    let qx = Tensor::<f64>::zeros(&[queries.len(), 2]);
    let over_z = |x: &Tensor<f64>, z: &Tensor<f64>| energy(x, &qy, z);
    let opts = Inference { restarts: 4, restart_std: 2.0, steps: 400, ..Inference::default() };
    let found = ebm::infer(&over_z, &qx, &Tensor::<f64>::zeros(&[queries.len(), 1]), &opts)?;
    let (_, exact_k) = ebm::free_energy_min(&energy, &qx, &qy, &zs)?;
    let mut worst: f64 = 0.0;
    let mut segments = Vec::new();
    for (i, &(a, b)) in queries.iter().enumerate() {
        let z = found.y.to_vec()[i];
        let (px, py) = (2.0 * z.cos(), z.sin());
        let inferred = ((a - px).powi(2) + (b - py).powi(2)).sqrt();
        let zk = zs.to_vec()[exact_k[i]];
        let exact = ((a - 2.0 * zk.cos()).powi(2) + (b - zk.sin()).powi(2)).sqrt();
        // The grid's nearest point is within half a step of the true one.
        worst = worst.max(inferred - exact);
        println!(
            "y = ({a:5.2}, {b:5.2}): ẑ = {:6.1}°, nearest point ({px:5.2}, {py:5.2}), distance {inferred:.4} (dense search {exact:.4})",
            z.to_degrees().rem_euclid(360.0)
        );
        segments.push(common::Series { label: format!("y{}", i + 1), points: vec![(a, b), (px, py)] });
    }
    let curve = common::Series {
        label: "ellipse g(0, z)".into(),
        points: (0..=200).map(|k| k as f64 * std::f64::consts::TAU / 200.0).map(|z| (2.0 * z.cos(), z.sin())).collect(),
    };
    segments.insert(0, curve);
    common::line_plot(&dir.join("inference.svg"), "inference: each y to its nearest point on the curve", "y1", "y2", segments, false);
    println!("wrote {} and {}", dir.join("landscapes.svg").display(), dir.join("inference.svg").display());
    common::report_target("inferred distance minus dense-search distance", worst.max(0.0), 1e-3, false);
    Ok(())
}
