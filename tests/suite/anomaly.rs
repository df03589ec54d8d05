//! Anomaly mode names the first op that made a NaN or an infinity, and where it was called.

use nabla::autograd::detect_anomaly;
use nabla::prelude::*;

/// A model whose second layer's output goes through `log`: with these weights one unit is
/// exactly 0 after the ReLU, and log(0) = -inf.
fn model_with_a_log(x: &Tensor<f64>) -> nabla::Result<Tensor<f64>> {
    let w = Tensor::<f64>::from_vec(vec![1.0, -1.0], &[2, 1])?.requires_grad_(true).unwrap();
    x.matmul(&w.t())?.relu().log().sum_dims(&[1], false)
}

#[test]
fn log_of_zero_inside_a_model_is_named_with_its_call_site() {
    let x = Tensor::<f64>::from_vec(vec![1.0, 2.0], &[2, 1]).unwrap();
    let err = detect_anomaly(|| model_with_a_log(&x)?.sum().backward()).unwrap_err();
    let text = err.to_string();
    match &err {
        nabla::Error::Anomaly { op, phase, value, origin } => {
            assert_eq!(*op, "log", "{text}");
            assert_eq!(phase, "forward output");
            assert_eq!(value, "-inf");
            assert!(origin.contains("anomaly::"), "the call site should be in this test file: {origin}");
        }
        other => panic!("expected an anomaly, got {other}"),
    }
    // Off by default: the same computation just gives -inf.
    let y = model_with_a_log(&x).unwrap();
    assert_eq!(y.to_vec()[0], f64::NEG_INFINITY);
}

#[test]
fn an_infinite_gradient_is_named_in_backward() {
    // sqrt(0) = 0 is finite, but its derivative 1/(2 sqrt 0) is not.
    let x = Tensor::<f64>::from_vec(vec![4.0, 0.0], &[2]).unwrap().requires_grad_(true).unwrap();
    let err = detect_anomaly(|| x.sqrt().sum().backward()).unwrap_err();
    match &err {
        nabla::Error::Anomaly { op, phase, value, .. } => {
            assert_eq!(*op, "sqrt", "{err}");
            assert_eq!(phase, "backward gradient for input 0");
            assert_eq!(value, "inf");
        }
        other => panic!("expected an anomaly, got {other}"),
    }
    // Without anomaly mode backward succeeds with an infinite gradient, as in PyTorch.
    let g = x.sqrt().sum().backward().unwrap();
    assert_eq!(g.get(&x).unwrap().to_vec()[1], f64::INFINITY);
}

#[test]
fn finite_computations_pass_through_anomaly_mode_unchanged() {
    let x = Tensor::<f64>::from_vec(vec![1.0, 2.0], &[2]).unwrap().requires_grad_(true).unwrap();
    let g = detect_anomaly(|| x.exp().sum().backward()).unwrap();
    assert_eq!(g.get(&x).unwrap().to_vec(), vec![1f64.exp(), 2f64.exp()]);
    let err = detect_anomaly(|| x.reshape(&[3])).unwrap_err();
    assert!(err.to_string().contains("reshape"), "ordinary errors pass through: {err}");
}

/// A NaN in the user's input is not the first op's doing: the message says the input
/// already held it (it once blamed `matmul` alone).
#[test]
fn a_nan_in_the_data_is_blamed_on_the_data() {
    let x = Tensor::<f64>::from_vec(vec![1.0, f64::NAN], &[1, 2]).unwrap();
    let w = Tensor::<f64>::ones(&[2, 3]).requires_grad_(true).unwrap();
    let err = detect_anomaly(|| x.matmul(&w)?.sum().backward()).unwrap_err();
    match &err {
        nabla::Error::Anomaly { op, phase, .. } => {
            assert_eq!(*op, "matmul");
            assert!(phase.starts_with("forward output, from input 0, which already held NaN when it came in"), "{err}");
        }
        other => panic!("expected an anomaly, got {other}"),
    }
}
