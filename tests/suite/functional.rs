//! Jacobian, vjp, jvp and hvp against closed forms.

use nabla::autograd::functional::{hvp, jacobian, jvp, vjp};
use nabla::prelude::*;

fn close(a: &[f64], b: &[f64], tol: f64) -> bool {
    a.len() == b.len() && a.iter().zip(b).all(|(x, y)| (x - y).abs() <= tol)
}

#[test]
fn the_jacobian_of_a_linear_map_is_its_matrix() {
    let a = Tensor::<f64>::randn(&[3, 4], &mut nabla::rng(1));
    let x = Tensor::<f64>::randn(&[4], &mut nabla::rng(2));
    let j = jacobian(|x| a.matmul(x), &x).unwrap();
    assert_eq!(j.shape(), &[3, 4]);
    assert_eq!(j.to_vec(), a.to_vec());
}

#[test]
fn the_jacobian_of_softmax_is_diag_s_minus_s_s_transpose() {
    let x = Tensor::<f64>::from_vec(vec![0.5, -1.0, 2.0, 0.0], &[4]).unwrap();
    let s = x.softmax(0).unwrap().to_vec();
    let j = jacobian(|x| x.softmax(0), &x).unwrap();
    let expected: Vec<f64> =
        (0..4).flat_map(|i| (0..4).map(move |k| (i, k))).map(|(i, k)| if i == k { s[i] } else { 0.0 } - s[i] * s[k]).collect();
    assert!(close(&j.to_vec(), &expected, 1e-15), "{j}");
}

#[test]
fn vjp_and_jvp_are_the_jacobian_transposed_and_not() {
    let f = |x: &Tensor<f64>| x.tanh().mul_scalar(2.0).sum_dims(&[1], false);
    let x = Tensor::<f64>::randn(&[3, 2], &mut nabla::rng(3));
    let j = jacobian(f, &x).unwrap().reshape(&[3, 6]).unwrap(); // [out 3, in 6]
    let u = Tensor::<f64>::randn(&[3], &mut nabla::rng(4));
    let v = Tensor::<f64>::randn(&[3, 2], &mut nabla::rng(5));
    let (_, jt_u) = vjp(f, &x, &u).unwrap();
    let (y, j_v) = jvp(f, &x, &v).unwrap();
    assert_eq!(y.shape(), &[3]);
    assert!(close(&jt_u.to_vec(), &j.t().matmul(&u).unwrap().to_vec(), 1e-14));
    assert!(close(&j_v.to_vec(), &j.matmul(&v.reshape(&[6]).unwrap()).unwrap().to_vec(), 1e-14));
}

#[test]
fn hvp_of_a_quadratic_form_is_a_plus_a_transpose_times_v() {
    // f(x) = xᵀAx, H = A + Aᵀ
    let a = Tensor::<f64>::randn(&[4, 4], &mut nabla::rng(6));
    let x = Tensor::<f64>::randn(&[4], &mut nabla::rng(7));
    let v = Tensor::<f64>::randn(&[4], &mut nabla::rng(8));
    let (fx, hv) = hvp(|x| x.matmul(&a.matmul(x)?), &x, &v).unwrap();
    let expected = (&a + &a.t()).matmul(&v).unwrap();
    assert!(close(&hv.to_vec(), &expected.to_vec(), 1e-13));
    assert_eq!(fx.shape(), &[] as &[usize]);
}

#[test]
fn jvp_of_a_constant_function_is_zero() {
    let x = Tensor::<f64>::ones(&[2]);
    let (_, t) = jvp(|_| Ok(Tensor::<f64>::ones(&[3])), &x, &x).unwrap();
    assert_eq!(t.to_vec(), vec![0.0; 3]);
}

#[test]
fn alpha_dropout_keeps_zero_mean_and_unit_variance_in_training() {
    // The law alpha dropout is built for: N(0, 1) in, mean 0 and variance 1 out.
    let x = Tensor::<f64>::randn(&[200_000], &mut nabla::rng(3));
    let y = nabla::nn::functional::alpha_dropout(&x, 0.2, true, &mut nabla::rng(4)).unwrap().to_vec();
    let n = y.len() as f64;
    let mean = y.iter().sum::<f64>() / n;
    let var = y.iter().map(|v| (v - mean) * (v - mean)).sum::<f64>() / n;
    assert!(mean.abs() < 0.01 && (var - 1.0).abs() < 0.02, "mean {mean}, variance {var}");
    // Evaluation is the identity; p = 1 drops everything.
    assert_eq!(nabla::nn::functional::alpha_dropout(&x, 0.2, false, &mut nabla::rng(4)).unwrap().to_vec(), x.to_vec());
    assert!(nabla::nn::functional::alpha_dropout(&x, 1.0, true, &mut nabla::rng(4)).unwrap().to_vec().iter().all(|&v| v == 0.0));
    assert!(nabla::nn::functional::alpha_dropout(&x, 1.5, true, &mut nabla::rng(4)).is_err());
}
