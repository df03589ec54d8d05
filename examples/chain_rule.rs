//! The chain rule, three ways: by hand, by nabla's reverse mode, and as a Jacobian.
//!
//! For `f(x) = Σ tanh(Wx + b)²` with a fixed 3×4 matrix `W`, the chain rule through
//! `z = Wx + b`, `h = tanh z`, `f = Σ h²` gives
//!
//! ```text
//! ∂f/∂h = 2h,   ∂h/∂z = diag(1 - h²),   ∂z/∂x = W,   so   ∇f(x) = Wᵀ (2h ⊙ (1 - h²)).
//! ```
//!
//! The program prints that gradient computed by hand, the one nabla's backward pass
//! computes, and central finite differences; then the Jacobian of `g(x) = tanh(Wx + b)`,
//! `diag(1 - h²) W`, by hand and by `autograd::functional::jacobian`.
//!
//! `cargo run --release --example chain_rule` (`--quick` is accepted and changes nothing:
//! the program takes milliseconds).

use nabla::autograd::functional::jacobian;
use nabla::prelude::*;

fn max_abs_diff(a: &Tensor<f64>, b: &Tensor<f64>) -> f64 {
    a.to_vec().iter().zip(b.to_vec()).map(|(x, y)| (x - y).abs()).fold(0.0, f64::max)
}

fn main() -> nabla::Result<()> {
    let mut rng = nabla::rng(0);
    let w = Tensor::<f64>::randn(&[3, 4], &mut rng).mul_scalar(0.5);
    let b = Tensor::<f64>::randn(&[3], &mut rng);
    let x = Tensor::<f64>::randn(&[4], &mut rng);
    let g = |x: &Tensor<f64>| -> nabla::Result<Tensor<f64>> { Ok(w.matmul(x)?.add(&b)?.tanh()) };
    let f = |x: &Tensor<f64>| -> nabla::Result<Tensor<f64>> { Ok(g(x)?.pow(2.0).sum()) };
    println!("f(x) = Σ tanh(Wx + b)²  at  x = {x}\n");

    // By hand: each factor of the chain rule is an array; nothing is recorded.
    let h = nabla::no_grad(|| g(&x))?;
    let df_dh = &h * 2.0;
    let dh_dz = 1.0 - &(&h * &h);
    let by_hand = w.t().matmul(&(&df_dh * &dh_dz))?;

    // By reverse mode: record the forward pass, then one backward sweep.
    let xg = x.clone().requires_grad_(true)?;
    let by_nabla = f(&xg)?.backward()?.get(&xg).cloned().expect("x is a leaf that requires grad");

    // By central finite differences, one coordinate at a time.
    let eps = 1e-6;
    let mut by_fd = Vec::new();
    for j in 0..4 {
        let mut step = vec![0.0; 4];
        step[j] = eps;
        let e = Tensor::<f64>::from_vec(step, &[4])?;
        by_fd.push((f(&(&x + &e))?.item()? - f(&(&x - &e))?.item()?) / (2.0 * eps));
    }
    let by_fd = Tensor::<f64>::from_vec(by_fd, &[4])?;

    println!("∇f by hand, Wᵀ(2h ⊙ (1 - h²)):\n  {by_hand}");
    println!("∇f by nabla's backward:\n  {by_nabla}");
    println!("∇f by finite differences:\n  {by_fd}");
    println!(
        "largest difference: hand vs nabla {:.1e}, nabla vs finite differences {:.1e} (target: < 1e-12 and < 1e-8)\n",
        max_abs_diff(&by_hand, &by_nabla),
        max_abs_diff(&by_nabla, &by_fd)
    );

    // The Jacobian of the vector function g: row i is the gradient of g_i.
    let jacobian_by_hand = dh_dz.unsqueeze(1)?.mul(&w)?; // diag(1 - h²) W
    let jacobian_by_nabla = jacobian(g, &x)?;
    println!("Jacobian of g(x) = tanh(Wx + b) by hand, diag(1 - h²) W:\n{jacobian_by_hand}");
    println!("Jacobian by nabla (one vector-Jacobian product per row):\n{jacobian_by_nabla}");
    let diff = max_abs_diff(&jacobian_by_hand, &jacobian_by_nabla);
    println!("largest difference: {diff:.1e} (target: < 1e-12)");
    assert!(diff < 1e-12 && max_abs_diff(&by_hand, &by_nabla) < 1e-12 && max_abs_diff(&by_nabla, &by_fd) < 1e-8);
    Ok(())
}
