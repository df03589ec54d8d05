//! Edges where nabla once disagreed with PyTorch, each checked against the values PyTorch
//! 2.15 prints for the same call (`scripts/pytorch_edges_torch.py`): NaN inputs to the ops
//! whose gradients compare values, `clamp` with `min > max`, and the shapes PyTorch's `cat`
//! and `gather` accept.

use nabla::prelude::*;
use ndarray::{ArrayD, IxDyn};

const NAN: f64 = f64::NAN;

/// `[nan, -1, 0, 2]`, the input of every elementwise case below.
fn x() -> Vec<f64> {
    vec![NAN, -1.0, 0.0, 2.0]
}

fn leaf(values: Vec<f64>, shape: &[usize]) -> Tensor<f64> {
    Tensor::<f64>::from_vec(values, shape).unwrap().requires_grad_(true).unwrap()
}

/// The gradients of `f(inputs).sum()`.
fn grads(f: impl Fn(&[Tensor<f64>]) -> nabla::Result<Tensor<f64>>, inputs: &[Tensor<f64>]) -> Vec<Vec<f64>> {
    let y = f(inputs).unwrap();
    let refs: Vec<&Tensor<f64>> = inputs.iter().collect();
    nabla::grad(&[&y.sum()], &refs, None, false).unwrap().iter().map(Tensor::to_vec).collect()
}

/// Equal element by element, NaN equal to NaN.
fn same(actual: &[f64], expected: &[f64]) -> bool {
    actual.len() == expected.len() && actual.iter().zip(expected).all(|(a, e)| a == e || (a.is_nan() && e.is_nan()))
}

#[track_caller]
fn assert_same(actual: &[f64], expected: &[f64]) {
    assert!(same(actual, expected), "nabla {actual:?}, PyTorch {expected:?}");
}

#[test]
fn relu_passes_the_gradient_at_nan() {
    // PyTorch's threshold_backward: 0 where y <= 0, else the cotangent; NaN <= 0 is false.
    assert_same(&grads(|v| Ok(v[0].relu()), &[leaf(x(), &[4])])[0], &[1.0, 0.0, 0.0, 1.0]);
}

#[test]
fn maximum_and_minimum_pass_the_gradient_to_both_sides_of_a_nan() {
    let other = vec![1.0, NAN, 0.0, 3.0];
    let g = grads(|v| v[0].maximum(&v[1]), &[leaf(x(), &[4]), leaf(other.clone(), &[4])]);
    assert_same(&g[0], &[1.0, 1.0, 0.5, 0.0]);
    assert_same(&g[1], &[1.0, 1.0, 0.5, 1.0]);
    let g = grads(|v| v[0].minimum(&v[1]), &[leaf(x(), &[4]), leaf(other, &[4])]);
    assert_same(&g[0], &[1.0, 1.0, 0.5, 1.0]);
    assert_same(&g[1], &[1.0, 1.0, 0.5, 0.0]);
}

#[test]
fn amax_and_amin_give_nan_gradients_to_a_slice_whose_extremum_is_nan() {
    // PyTorch scales by the count of elements equal to the result: none equal a NaN, 0/0.
    let input = || leaf(x(), &[4]);
    let g = grads(|v| v[0].reshape(&[2, 2])?.amax_dims(&[1], false), &[input()]);
    assert_same(&g[0], &[NAN, NAN, 0.0, 1.0]);
    let g = grads(|v| v[0].reshape(&[2, 2])?.amin_dims(&[1], false), &[input()]);
    assert_same(&g[0], &[NAN, NAN, 1.0, 0.0]);
}

#[test]
fn clamp_with_min_above_max_gives_max_everywhere() {
    let x = leaf(x(), &[4]);
    assert_same(&x.clamp(1.0, -0.5).to_vec(), &[NAN, -0.5, -0.5, -0.5]);
    assert_same(&grads(|v| Ok(v[0].clamp(1.0, -0.5)), &[x])[0], &[0.0, 0.0, 0.0, 0.0]);
    // The ordinary case, NaN included: gradient 0 at NaN, 1 inside and at the bounds.
    let x = leaf(vec![NAN, -1.0, 0.0, 2.0], &[4]);
    assert_same(&x.clamp(-0.5, 1.0).to_vec(), &[NAN, -0.5, 0.0, 1.0]);
    assert_same(&grads(|v| Ok(v[0].clamp(-0.5, 1.0)), &[x])[0], &[0.0, 0.0, 1.0, 0.0]);
}

#[test]
fn the_other_comparing_ops_already_agree_at_nan_and_zero() {
    let input = || leaf(x(), &[4]);
    assert_same(&grads(|v| Ok(v[0].leaky_relu(0.1)), &[input()])[0], &[0.1, 0.1, 0.1, 1.0]);
    assert_same(&grads(|v| Ok(v[0].abs()), &[input()])[0], &[0.0, -1.0, 0.0, 1.0]);
    let slope = Tensor::<f64>::from_vec(vec![0.25], &[1]).unwrap();
    assert_same(&grads(|v| nn::functional::prelu(&v[0], &slope), &[input()])[0], &[0.25, 0.25, 0.25, 1.0]);
    let pooled = grads(|v| v[0].reshape(&[1, 1, 4])?.max_pool1d(nabla::ops::Pool1dConfig::new(2)), &[input()]);
    assert_same(&pooled[0], &[1.0, 0.0, 0.0, 1.0]);
    // rrelu in training draws a slope where x <= 0 (0 included, NaN not); lower = upper
    // makes it fixed.
    let g = grads(|v| Ok(nn::functional::rrelu(&v[0], 0.25, 0.25, true, &mut nabla::rng(0))), &[input()]);
    assert_same(&g[0], &[1.0, 0.25, 0.25, 1.0]);
}

#[test]
fn hardswish_passes_the_gradient_at_nan() {
    // PyTorch's hardswish_backward: 0 up to -3, grad · (x/3 + 1/2) strictly between, grad
    // from 3 on and at a NaN, where both comparisons fail.
    let x = leaf(vec![NAN, -1.0, 0.0, 2.0, -3.0, 3.0, -4.0, 4.0], &[8]);
    let y = nn::functional::hardswish(&x).to_vec();
    let g = &grads(|v| Ok(nn::functional::hardswish(&v[0])), &[x])[0];
    let close =
        |a: &[f64], e: &[f64]| a.len() == e.len() && a.iter().zip(e).all(|(a, e)| (a - e).abs() < 1e-15 || (a.is_nan() && e.is_nan()));
    let (y_torch, g_torch) = ([NAN, -1.0 / 3.0, 0.0, 5.0 / 3.0, 0.0, 3.0, 0.0, 4.0], [1.0, 1.0 / 6.0, 0.5, 7.0 / 6.0, 0.0, 1.0, 0.0, 1.0]);
    assert!(close(&y, &y_torch), "nabla {y:?}, PyTorch {y_torch:?}");
    assert!(close(g, &g_torch), "nabla {g:?}, PyTorch {g_torch:?}");
    // The second derivative, PyTorch's double backward: 1/3 strictly between, 0 at ±3.
    let x = leaf(vec![-3.0, -1.0, 3.0, 4.0], &[4]);
    let g = nabla::grad(&[&nn::functional::hardswish(&x).sum()], &[&x], None, true).unwrap();
    let h = nabla::grad(&[&g[0].sum()], &[&x], None, false).unwrap()[0].to_vec();
    assert!(close(&h, &[0.0, 1.0 / 3.0, 0.0, 0.0]), "nabla {h:?}, PyTorch [0, 1/3, 0, 0]");
}

#[test]
fn cat_skips_empty_1d_tensors_as_pytorch_does() {
    let a = leaf((0..6).map(f64::from).collect(), &[2, 3]);
    let empty = leaf(vec![], &[0]);
    let y = Tensor::cat(&[a.clone(), empty.clone()], 0).unwrap();
    assert_eq!((y.shape(), y.to_vec()), (&[2, 3][..], (0..6).map(f64::from).collect()));
    let y = Tensor::cat(&[empty.clone(), a.clone()], -1).unwrap();
    assert_eq!(y.shape(), &[2, 3]);
    // The gradients: a's whole, the skipped tensor's empty.
    let g = nabla::grad(&[&y.sum()], &[&a, &empty], None, false).unwrap();
    assert_eq!((g[0].to_vec(), g[1].shape()), (vec![1.0; 6], &[0][..]));
    // Dims are those of the first tensor not skipped: [-2, 1] here.
    assert!(Tensor::cat(&[a.clone(), empty.clone()], 2).is_err());
    let three = Tensor::cat(&[Tensor::<f64>::ones(&[2, 2, 2]), Tensor::<f64>::zeros(&[0]), Tensor::<f64>::ones(&[2, 1, 2])], 1).unwrap();
    assert_eq!(three.shape(), &[2, 3, 2]);
    let only_empty = Tensor::cat(&[empty.clone(), empty], 0).unwrap();
    assert_eq!(only_empty.shape(), &[0]);
    // An empty tensor of rank 2 is not skipped: its other dims must agree.
    assert!(Tensor::cat(&[Tensor::<f64>::zeros(&[2, 0]), a.clone()], 0).is_err());
    assert_eq!(Tensor::cat(&[Tensor::<f64>::zeros(&[0, 3]), a], 0).unwrap().shape(), &[2, 3]);
}

#[test]
fn gather_takes_0d_inputs_and_empty_indices_of_any_rank_as_pytorch_does() {
    let s = leaf(vec![5.0], &[]);
    let index = |shape: &[usize], values: Vec<usize>| ArrayD::from_shape_vec(IxDyn(shape), values).unwrap();
    let y = s.gather(0, &index(&[], vec![0])).unwrap();
    assert_eq!((y.shape(), y.to_vec()), (&[][..], vec![5.0]));
    assert_eq!(nabla::grad(&[&y], &[&s], None, false).unwrap()[0].to_vec(), vec![1.0]);
    assert_eq!(s.gather(-1, &index(&[], vec![0])).unwrap().to_vec(), vec![5.0]);
    let y = s.gather(0, &index(&[2], vec![0, 0])).unwrap();
    assert_eq!((y.shape(), y.to_vec()), (&[2][..], vec![5.0, 5.0]));
    assert_eq!(s.gather(0, &index(&[0], vec![])).unwrap().shape(), &[0]);
    assert!(s.gather(0, &index(&[], vec![1])).is_err());
    assert!(s.gather(1, &index(&[], vec![0])).is_err());
    // A 1-d input with a 0-d index.
    let v = Tensor::<f64>::from_vec(vec![0.0, 1.0, 2.0], &[3]).unwrap();
    let y = v.gather(0, &index(&[], vec![2])).unwrap();
    assert_eq!((y.shape(), y.to_vec()), (&[][..], vec![2.0]));
    assert!(v.gather(0, &index(&[1, 1], vec![2])).is_err());
    // Empty indices of another rank than the input's.
    let a = leaf((0..6).map(f64::from).collect(), &[2, 3]);
    assert_eq!(a.gather(1, &index(&[0], vec![])).unwrap().shape(), &[0]);
    assert_eq!(a.gather(1, &index(&[1, 0, 2], vec![])).unwrap().shape(), &[1, 0, 2]);
    let y = a.gather(1, &index(&[0, 5], vec![])).unwrap();
    assert_eq!(y.shape(), &[0, 5]);
    assert_eq!(nabla::grad(&[&y.sum()], &[&a], None, false).unwrap()[0].to_vec(), vec![0.0; 6]);
    // A non-empty index of another rank, or larger outside dim, is refused.
    assert!(a.gather(1, &index(&[2], vec![0, 0])).is_err());
    assert!(a.gather(1, &index(&[3, 3], vec![0; 9])).is_err());
}
