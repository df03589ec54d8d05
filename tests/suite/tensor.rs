//! Making, reading and printing tensors.

use nabla::prelude::*;

#[test]
fn constructors_give_the_documented_values() {
    assert_eq!(Tensor::zeros(&[2, 2]).to_vec(), vec![0.0; 4]);
    assert_eq!(Tensor::full(&[3], 1.5).to_vec(), vec![1.5; 3]);
    assert_eq!(Tensor::eye(2).to_vec(), vec![1.0, 0.0, 0.0, 1.0]);
    assert_eq!(Tensor::arange(0.0, 1.0, 0.25).unwrap().to_vec(), vec![0.0, 0.25, 0.5, 0.75]);
    assert_eq!(Tensor::<f64>::arange(5.0, 0.0, -2.0).unwrap().to_vec(), vec![5.0, 3.0, 1.0]);
    assert_eq!(Tensor::scalar(3.0).shape(), &[] as &[usize]);
    let x = Tensor::from_vec(vec![1.0, 2.0, 3.0, 4.0, 5.0, 6.0], &[2, 3]).unwrap();
    assert_eq!((x.shape(), x.ndim(), x.len()), (&[2usize, 3][..], 2, 6));
    assert_eq!(x.value()[[1, 2]], 6.0);
}

#[test]
fn random_draws_are_reproducible_from_the_seed_and_have_the_right_moments() {
    let a = Tensor::randn(&[10_000], &mut nabla::rng(1));
    assert_eq!(a.to_vec(), Tensor::randn(&[10_000], &mut nabla::rng(1)).to_vec());
    assert_ne!(a.to_vec(), Tensor::randn(&[10_000], &mut nabla::rng(2)).to_vec());
    let mean = a.mean().item().unwrap();
    let var = a.pow(2.0).mean().item().unwrap() - mean * mean;
    assert!(mean.abs() < 0.05 && (var - 1.0).abs() < 0.05, "N(0,1): mean {mean}, var {var}");
    let u = Tensor::uniform(&[10_000], -2.0, 3.0, &mut nabla::rng(3));
    assert!(u.amin().item().unwrap() >= -2.0 && u.amax().item().unwrap() < 3.0);
    assert!((u.mean().item().unwrap() - 0.5).abs() < 0.05);
}

#[test]
fn casts_keep_values_and_f32_f64_draws_agree() {
    let a = Tensor::<f64>::randn(&[5], &mut nabla::rng(9));
    let b = Tensor::randn(&[5], &mut nabla::rng(9));
    assert_eq!(a.cast::<f32>().to_vec(), b.to_vec());
    assert_eq!(b.cast::<f64>().cast::<f32>().to_vec(), b.to_vec());
}

#[test]
fn display_matches_pytorch() {
    let x = Tensor::from_vec(vec![1.0, -2.0, 3.25, 4.0], &[2, 2]).unwrap();
    assert_eq!(x.to_string(), "tensor([[ 1.0000, -2.0000],\n        [ 3.2500,  4.0000]])");
    assert_eq!(Tensor::scalar(2.5).to_string(), "tensor(2.5000)");
    assert_eq!(Tensor::<f64>::ones(&[2]).to_string(), "tensor([1.0000, 1.0000], dtype=f64)");
    let w = Tensor::ones(&[1]).requires_grad_(true).unwrap();
    assert_eq!(w.to_string(), "tensor([1.0000], requires_grad=True)");
    assert_eq!(w.exp().to_string(), "tensor([2.7183], grad_fn=<exp>)");
    let cube = Tensor::zeros(&[2, 1, 2]);
    assert_eq!(cube.to_string(), "tensor([[[0.0000, 0.0000]],\n\n        [[0.0000, 0.0000]]])");
    let long = Tensor::arange(0.0, 2000.0, 1.0).unwrap();
    assert_eq!(long.to_string(), "tensor([   0.0000,    1.0000,    2.0000, ..., 1997.0000, 1998.0000, 1999.0000])");
}

#[test]
fn views_share_and_reshape_keeps_order() {
    let x = Tensor::arange(0.0, 6.0, 1.0).unwrap().reshape(&[2, 3]).unwrap();
    let y = x.t();
    assert_eq!(y.to_vec(), vec![0.0, 3.0, 1.0, 4.0, 2.0, 5.0]);
    assert_eq!(y.reshape(&[6]).unwrap().to_vec(), vec![0.0, 3.0, 1.0, 4.0, 2.0, 5.0]);
    assert_eq!(y.sum().item().unwrap(), 15.0);
}

/// PyTorch 2.15: `torch.tensor([[1., 5., 5.], [nan, 2., nan], [0., -1., -1.]])` gives
/// `argmax(1) = [1, 0, 0]`, `argmin(1) = [0, 0, 1]`, `argmax(0) = [1, 0, 1]`, `argmax() = 3`
/// (the first NaN), `argmax(1, keepdim=True).shape = (3, 1)`.
#[test]
fn argmax_and_argmin_follow_pytorch_on_ties_and_nan() {
    let x = Tensor::from_vec(vec![1.0, 5.0, 5.0, f32::NAN, 2.0, f32::NAN, 0.0, -1.0, -1.0], &[3, 3]).unwrap();
    let v = |a: ndarray::ArrayD<usize>| a.iter().copied().collect::<Vec<_>>();
    assert_eq!(v(x.argmax(Some(1), false).unwrap()), [1, 0, 0]);
    assert_eq!(v(x.argmin(Some(1), false).unwrap()), [0, 0, 1]);
    assert_eq!(v(x.argmax(Some(0), false).unwrap()), [1, 0, 1]);
    assert_eq!(v(x.argmax(None, false).unwrap()), [3]);
    assert_eq!(x.argmax(Some(-1), true).unwrap().shape(), &[3, 1]);
    assert_eq!(x.argmax(None, false).unwrap().ndim(), 0);
    assert_eq!(x.argmax(Some(2), false).unwrap_err().to_string(), "argmax: dim 2 is out of range for a tensor of 2 dims");
    assert_eq!(Tensor::zeros(&[2, 0]).argmin(Some(1), false).unwrap_err().to_string(), "argmin: dim 1 of [2, 0] is empty: no extremum");
    assert_eq!(v(Tensor::scalar(4.0).argmax(Some(0), false).unwrap()), [0]);
}
