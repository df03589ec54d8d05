//! The Jacobian of a small network at a point: `∂y_i/∂x_j` for `y = f(x)`,
//! `f = Linear(4, 6) → tanh → Linear(6, 3)`, computed by reverse mode (one vector-Jacobian
//! product per output, `autograd::functional::jacobian`), checked against central finite
//! differences, and drawn as a heatmap next to the finite-difference one.
//!
//! Prints both matrices and their largest difference (target: below 1e-8 in f64). Writes
//! `target/nabla-examples/jacobian/jacobian.svg`.

mod common;

use nabla::autograd::functional::jacobian;
use nabla::prelude::*;

fn main() -> nabla::Result<()> {
    let mut rng = nabla::rng(0);
    let model: nn::Sequential<f64> = nn::Sequential::<f64>::new()
        .push(nn::Linear::<f64>::new(4, 6, &mut rng))
        .push(nn::Tanh)
        .push(nn::Linear::<f64>::new(6, 3, &mut rng));
    let f = |x: &Tensor<f64>| model.forward(x);
    let x = Tensor::<f64>::from_vec(vec![0.5, -1.0, 2.0, 0.1], &[4])?;
    let j = jacobian(f, &x)?; // (3, 4)

    // Central differences, one input at a time: (f(x + h e_j) - f(x - h e_j)) / 2h.
    let h = 1e-6;
    let mut numeric = vec![vec![0.0; 4]; 3];
    for col in 0..4 {
        let shifted = |s: f64| -> nabla::Result<Vec<f64>> {
            let mut v = x.to_vec();
            v[col] += s;
            Ok(f(&Tensor::<f64>::from_vec(v, &[4])?)?.to_vec())
        };
        let (plus, minus) = (shifted(h)?, shifted(-h)?);
        for (row, entry) in numeric.iter_mut().enumerate() {
            entry[col] = (plus[row] - minus[row]) / (2.0 * h);
        }
    }
    let exact: Vec<Vec<f64>> = j.to_vec().chunks(4).map(<[f64]>::to_vec).collect();
    let show = |m: &Vec<Vec<f64>>| {
        m.iter().map(|r| r.iter().map(|v| format!("{v:9.5}")).collect::<Vec<_>>().join(" ")).collect::<Vec<_>>().join("\n")
    };
    println!("reverse mode, dy/dx at x = {:?}:\n{}", x.to_vec(), show(&exact));
    println!("central differences (h = 1e-6):\n{}", show(&numeric));
    let diff = exact.iter().flatten().zip(numeric.iter().flatten()).map(|(a, b)| (a - b).abs()).fold(0.0, f64::max);

    let dir = common::out_dir("jacobian");
    common::heatmaps(&dir.join("jacobian.svg"), 2, 48, &[("reverse mode".into(), exact), ("finite differences".into(), numeric)], true);
    println!("wrote {}", dir.join("jacobian.svg").display());
    common::report_target("largest |reverse mode - finite differences|", diff, 1e-8, false);
    Ok(())
}
