//! Modules, losses and initialisations as specifications.

use nabla::nn::functional::{Reduction, cross_entropy, cross_entropy_with, log_softmax_nll, nll_loss};
use nabla::prelude::*;

fn labels(v: &[usize]) -> ndarray::ArrayD<usize> {
    ndarray::Array1::from(v.to_vec()).into_dyn()
}

#[test]
fn cross_entropy_is_log_softmax_followed_by_nll() {
    let logits = Tensor::<f64>::randn(&[6, 5], &mut nabla::rng(1));
    let y = labels(&[0, 4, 2, 2, 1, 3]);
    let ce = cross_entropy(&logits, &y).unwrap();
    let nll = nll_loss(&logits.log_softmax(1).unwrap(), &y, None, None, Reduction::Mean).unwrap();
    assert!((ce.item().unwrap() - nll.item().unwrap()).abs() < 1e-15);
    assert!((log_softmax_nll(&logits, &y).unwrap().item().unwrap() - ce.item().unwrap()).abs() < 1e-15);
}

#[test]
fn log_softmax_stays_finite_where_softmax_underflows() {
    let x = Tensor::<f64>::from_vec(vec![0.0, -800.0], &[2]).unwrap();
    assert_eq!(x.softmax(0).unwrap().to_vec()[1], 0.0, "softmax underflows to 0");
    assert_eq!(x.log_softmax(0).unwrap().to_vec()[1], -800.0, "log-softmax keeps the value");
}

#[test]
fn softplus_tends_to_relu_as_beta_grows() {
    let x = Tensor::<f64>::from_vec(vec![-2.0, -0.3, 0.0, 0.4, 3.0], &[5]).unwrap();
    let relu = x.relu().to_vec();
    let mut previous = f64::INFINITY;
    for beta in [1.0, 10.0, 100.0, 1000.0] {
        let gap = x.softplus(beta, 20.0).to_vec().iter().zip(&relu).map(|(a, b)| (a - b).abs()).fold(0.0, f64::max);
        assert!(gap < previous, "the gap shrinks as beta grows");
        previous = gap;
    }
    // The largest gap is at 0: ln 2 / beta.
    assert!((previous - 2f64.ln() / 1000.0).abs() < 1e-12);
}

#[test]
fn cross_entropy_over_spatial_dims_and_ignore_index() {
    // (N, C, d) logits: each position is a sample.
    let logits = Tensor::<f64>::randn(&[2, 3, 4], &mut nabla::rng(2));
    let y = ndarray::Array2::from_shape_vec((2, 4), vec![0, 1, 2, 1, 2, 2, 0, 1]).unwrap().into_dyn();
    let per_position = cross_entropy_with(&logits, &y, None, None, 0.0, Reduction::None).unwrap();
    assert_eq!(per_position.shape(), &[2, 4]);
    // By hand for position (1, 2): -log softmax(logits[1, :, 2])[0].
    let column: Vec<f64> = (0..3).map(|c| logits.value()[[1, c, 2]]).collect();
    let lse = column.iter().map(|v| v.exp()).sum::<f64>().ln();
    assert!((per_position.value()[[1, 2]] - (lse - column[0])).abs() < 1e-12);
    // ignore_index: ignored positions contribute 0 and leave the mean's denominator.
    let ignored = cross_entropy_with(&logits, &y, None, Some(2), 0.0, Reduction::Mean).unwrap().item().unwrap();
    let kept: Vec<f64> = per_position.to_vec().into_iter().zip(y.iter()).filter(|&(_, &t)| t != 2).map(|(l, _)| l).collect();
    assert!((ignored - kept.iter().sum::<f64>() / kept.len() as f64).abs() < 1e-12);
}

#[test]
fn loss_errors_name_the_op_and_values() {
    let logits = Tensor::zeros(&[2, 3]);
    let err = cross_entropy(&logits, &labels(&[0, 3])).unwrap_err();
    assert_eq!(err.to_string(), "cross_entropy: index 3 is out of range for dim 1 of size 3");
    let err = cross_entropy(&logits, &labels(&[0, 1, 2])).unwrap_err();
    assert_eq!(err.to_string(), "cross_entropy: target [3] does not match input [2, 3] (expected [2])");
    let err = nabla::nn::functional::mse_loss(&logits, &Tensor::zeros(&[3, 2]), Reduction::Mean).unwrap_err();
    assert_eq!(err.to_string(), "mse_loss: input [2, 3] and target [3, 2] differ");
    assert_eq!(Reduction::parse("avg").unwrap_err().to_string(), "reduction: \"avg\" is not one of \"none\", \"mean\", \"sum\"");
}

#[test]
fn sequential_names_parameters_as_pytorch() {
    let mut rng = nabla::rng(0);
    let model = nn::Sequential::<f32>::new()
        .push(nn::Linear::new(3, 4, &mut rng))
        .push(nn::Tanh)
        .push(nn::Linear::with_bias(4, 2, false, &mut rng));
    let names: Vec<String> = model.named_parameters().into_iter().map(|(n, _)| n).collect();
    assert_eq!(names, ["0.weight", "0.bias", "2.weight"]);
}

#[test]
fn a_frozen_parameter_gets_no_gradient_and_no_update() {
    let mut rng = nabla::rng(0);
    let layer: nn::Linear = nn::Linear::new(3, 2, &mut rng);
    layer.weight.freeze();
    let before = layer.weight.tensor().to_vec();
    let mut opt = optim::Sgd::new(layer.parameters(), 0.1);
    let loss = layer.forward(&Tensor::ones(&[4, 3])).unwrap().sum();
    let grads = loss.backward().unwrap();
    assert!(grads.get(&layer.weight.tensor()).is_none());
    assert!(grads.get(&layer.bias.as_ref().unwrap().tensor()).is_some());
    opt.step(&grads).unwrap();
    assert_eq!(layer.weight.tensor().to_vec(), before);
    assert_ne!(layer.bias.as_ref().unwrap().tensor().to_vec(), vec![0.0; 2]);
}

#[test]
fn shared_parameters_get_the_sum_of_their_gradients() {
    // One Linear used twice (weight tying): y = W(Wx).
    let layer = nn::Linear::<f64>::from_tensors(Tensor::<f64>::from_vec(vec![2.0], &[1, 1]).unwrap(), None);
    let x = Tensor::<f64>::from_vec(vec![3.0], &[1, 1]).unwrap();
    let y = layer.forward(&layer.forward(&x).unwrap()).unwrap().sum();
    // y = w²x, dy/dw = 2wx = 12
    assert_eq!(y.backward().unwrap().get(&layer.weight.tensor()).unwrap().to_vec(), vec![12.0]);
}

#[test]
fn param_updates_in_place_only_when_no_graph_holds_the_value() {
    let p = nn::Param::new(Tensor::<f64>::ones(&[2]));
    let id = p.tensor().id();
    p.update(|v| v.mapv_inplace(|x| x * 2.0));
    assert_eq!((p.tensor().id(), p.tensor().to_vec()), (id, vec![2.0, 2.0]), "no graph: same leaf, updated in place");
    // x·x reads x in backward, so its graph keeps the value.
    let graph = (&p.tensor() * &p.tensor()).sum();
    p.update(|v| v.mapv_inplace(|x| x + 1.0));
    assert_ne!(p.tensor().id(), id, "a graph holds the old value: a new leaf");
    assert_eq!(graph.item().unwrap(), 8.0, "the graph still sees the value it was built from");
    assert_eq!(graph.backward().unwrap().get_by_id(id).unwrap().to_vec(), vec![4.0, 4.0], "dL/dx = 2x at the old x");
    // 3x does not read x in backward: its graph keeps only x's shape, so the update is in place.
    let id = p.tensor().id();
    let graph = (&p.tensor() * 3.0).sum();
    p.update(|v| v.mapv_inplace(|x| x + 1.0));
    assert_eq!((p.tensor().id(), p.tensor().to_vec()), (id, vec![4.0, 4.0]), "no graph reads it: updated in place");
    assert_eq!(graph.backward().unwrap().get(&p.tensor()).unwrap().to_vec(), vec![3.0, 3.0]);
}

#[test]
fn embedding_gradients_add_up_repeated_ids() {
    let table: nn::Embedding<f64> = nn::Embedding::<f64>::new(4, 2, &mut nabla::rng(0));
    let ids = ndarray::arr1(&[1usize, 3, 1]).into_dyn();
    let out = table.forward(&ids).unwrap();
    let g = out.sum().backward().unwrap();
    assert_eq!(g.get(&table.weight.tensor()).unwrap().to_vec(), vec![0.0, 0.0, 2.0, 2.0, 0.0, 0.0, 1.0, 1.0]);
    assert_eq!(
        table.forward(&ndarray::arr1(&[4usize]).into_dyn()).unwrap_err().to_string(),
        "Embedding: index 4 is out of range for dim 0 of size 4"
    );
}

#[test]
fn dropout_zeroes_about_p_and_scales_the_rest_in_training_only() {
    let mut rng = nabla::rng(0);
    let dropout = nn::Dropout::new(0.3, &mut rng).unwrap();
    let x = Tensor::ones(&[100_000]);
    let y = dropout.forward(&x).unwrap().to_vec();
    let zeros = y.iter().filter(|&&v| v == 0.0).count() as f64 / y.len() as f64;
    assert!((zeros - 0.3).abs() < 0.01, "fraction zeroed {zeros}");
    assert!(y.iter().all(|&v| v == 0.0 || (v - 1.0 / 0.7).abs() < 1e-6));
    dropout.eval();
    assert_eq!(dropout.forward(&x).unwrap().to_vec(), x.to_vec());
    assert!(nn::Dropout::new(1.5, &mut rng).is_err());
}

#[test]
fn rrelu_draws_slopes_in_training_and_uses_their_mean_in_evaluation() {
    let rrelu = nn::RRelu::new(0.1, 0.3, &mut nabla::rng(0)).unwrap();
    let x = Tensor::full(&[10_000], -1.0);
    let slopes: Vec<f32> = rrelu.forward(&x).unwrap().to_vec().iter().map(|v| -v).collect();
    assert!(slopes.iter().all(|&a| (0.1..=0.3).contains(&a)));
    let mean = slopes.iter().sum::<f32>() / slopes.len() as f32;
    assert!((mean - 0.2).abs() < 0.005);
    rrelu.eval();
    assert!(rrelu.forward(&x).unwrap().to_vec().iter().all(|&v| (v + 0.2).abs() < 1e-7));
}

#[test]
fn initialisations_have_pytorch_bounds_and_statistics() {
    let mut rng = nabla::rng(0);
    // Linear's default: U(±1/√fan_in).
    let layer: nn::Linear = nn::Linear::new(400, 300, &mut rng);
    let w = layer.weight.tensor();
    let bound = 1.0 / 20.0;
    assert!(w.amax().item().unwrap() <= bound && w.amin().item().unwrap() >= -bound);
    assert!(w.amax().item().unwrap() > 0.99 * bound);
    // Xavier normal: variance 2/(fan_in + fan_out).
    let x = nn::init::xavier_normal::<f64>(&[300, 500], 1.0, &mut rng).unwrap();
    let var = x.pow(2.0).mean().item().unwrap();
    assert!((var / (2.0 / 800.0) - 1.0).abs() < 0.02, "variance {var}");
    // Kaiming normal for ReLU (a = 0): variance 2/fan_in.
    let k = nn::init::kaiming_normal::<f64>(&[300, 500], 0.0, nn::init::FanMode::FanIn, &mut rng).unwrap();
    assert!((k.pow(2.0).mean().item().unwrap() / (2.0 / 500.0) - 1.0).abs() < 0.02);
    // Orthogonal, wide: rows are orthonormal.
    let q = nn::init::orthogonal::<f64>(&[3, 5], 1.0, &mut rng).unwrap();
    let qqt = q.matmul(&q.t()).unwrap().sub(&Tensor::<f64>::eye(3)).unwrap().abs().amax().item().unwrap();
    assert!(qqt < 1e-12);
}

#[test]
fn prelu_learns_one_slope_per_channel() {
    let prelu = nn::PRelu::<f64>::new(2, 0.25);
    let x = Tensor::<f64>::from_vec(vec![-1.0, 2.0, -3.0, -4.0], &[1, 2, 2]).unwrap();
    let y = prelu.forward(&x).unwrap();
    assert_eq!(y.to_vec(), vec![-0.25, 2.0, -0.75, -1.0]);
    let g = y.sum().backward().unwrap();
    // dy/da_c = Σ min(0, x) over channel c
    assert_eq!(g.get(&prelu.weight.tensor()).unwrap().to_vec(), vec![-1.0, -7.0]);
}
