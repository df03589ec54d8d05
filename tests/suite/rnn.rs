//! Recurrent layers: finite-difference checks and a long unroll.

use nabla::autograd::{GradcheckOptions, gradcheck};
use nabla::nn::{CellKind, Lstm, LstmCell, Recurrent, RecurrentCell, Rnn, TruncatedBptt};
use nabla::prelude::*;

#[test]
fn recurrent_layers_match_finite_differences() {
    for kind in [CellKind::RnnTanh, CellKind::Gru, CellKind::Lstm] {
        let net: Recurrent<f64> = Recurrent::<f64>::new(
            kind,
            3,
            4,
            nabla::nn::RecurrentOptions::default().num_layers(2).batch_first(true).bidirectional(true),
            &mut nabla::rng(1),
        );
        let x = Tensor::<f64>::randn(&[2, 5, 3], &mut nabla::rng(2));
        let h0 = Tensor::<f64>::randn(&[4, 2, 4], &mut nabla::rng(3));
        // Gradients of the input, the initial state and (through the closure) the output.
        gradcheck(
            |v| {
                let out = net.forward_with_state(&v[0], Some((&v[1], None)))?;
                out.output.sum_dims(&[2], false)?.add(&out.h_n.sum_dims(&[0, 2], false)?.unsqueeze(1)?)
            },
            &[x, h0],
            &GradcheckOptions::default(),
        )
        .unwrap_or_else(|e| panic!("{kind:?}: {e}"));
    }
}

#[test]
fn a_10000_step_unroll_trains_without_overflowing_the_stack() {
    let net: Rnn = Rnn::new(1, 2, &mut nabla::rng(4));
    let x = Tensor::randn(&[10_000, 1, 1], &mut nabla::rng(5));
    let loss = net.forward(&x).unwrap().pow(2.0).mean();
    let grads = loss.backward().unwrap();
    assert_eq!(grads.len(), 4);
    assert!(grads.iter().all(|(_, g)| g.to_vec().iter().all(|v| v.is_finite())));
}

/// A tensor of a golden file by name.
fn stored(state: &nabla::nn::StateDict, name: &str) -> Tensor<f64> {
    let t = &state.tensors[name];
    Tensor::<f64>::from_vec(t.values.clone(), &t.shape).unwrap()
}

#[test]
fn cells_stepped_over_a_sequence_reproduce_pytorchs_layers() {
    // PyTorch's one-layer RNN/GRU/LSTM outputs (golden files) from the same weights, loaded
    // into a cell under the cell's names (no `_l0`) and stepped by hand.
    for (name, kind) in [("RNN", CellKind::RnnTanh), ("GRU", CellKind::Gru), ("LSTM", CellKind::Lstm)] {
        let path = format!("{}/tests/golden/cases/module-{name}-00.safetensors", env!("CARGO_MANIFEST_DIR"));
        let golden = nabla::nn::read_safetensors(&path).unwrap();
        let mut renamed = nabla::nn::StateDict::default();
        for (key, t) in &golden.tensors {
            if let Some(param) = key.strip_prefix("param.") {
                renamed.tensors.insert(param.trim_end_matches("_l0").to_string(), t.clone());
            }
        }
        let cell: RecurrentCell<f64> = RecurrentCell::<f64>::new(kind, 3, 4, true, &mut nabla::rng(0));
        nabla::nn::load_state_dict(&cell.named_parameters(), &renamed).unwrap();
        let (x, expected) = (stored(&golden, "input.0"), stored(&golden, "output.0"));
        let (mut h, mut c) = (Tensor::<f64>::zeros(&[2, 4]), Tensor::<f64>::zeros(&[2, 4]));
        for t in 0..x.shape()[0] {
            (h, c) = cell.step(&x.narrow(0, t, 1).unwrap().squeeze(0).unwrap(), Some((&h, Some(&c)))).unwrap();
            let want = expected.narrow(0, t, 1).unwrap().squeeze(0).unwrap();
            let err = h.sub(&want).unwrap().abs().amax().item().unwrap();
            assert!(err < 1e-12, "{name} step {t}: |h - torch| = {err}");
        }
        // Unbatched input gives the first row of the batched result.
        let (h1, _) =
            cell.step(&x.narrow(0, 0, 1).unwrap().reshape(&[2, 3]).unwrap().narrow(0, 0, 1).unwrap().squeeze(0).unwrap(), None).unwrap();
        assert_eq!(h1.shape(), &[4]);
        let want = expected.narrow(0, 0, 1).unwrap().reshape(&[2, 4]).unwrap().narrow(0, 0, 1).unwrap().squeeze(0).unwrap();
        assert!(h1.sub(&want).unwrap().abs().amax().item().unwrap() < 1e-12);
    }
}

#[test]
fn cells_match_finite_differences() {
    for kind in [CellKind::RnnTanh, CellKind::RnnRelu, CellKind::Gru, CellKind::Lstm] {
        let cell: RecurrentCell<f64> = RecurrentCell::<f64>::new(kind, 3, 4, true, &mut nabla::rng(1));
        let inputs = [2, 3, 4].map(|s| Tensor::<f64>::randn(&[2, if s == 2 { 3 } else { 4 }], &mut nabla::rng(s)));
        gradcheck(
            |v| {
                let (h, c) = cell.step(&v[0], Some((&v[1], Some(&v[2]))))?;
                h.mul(&c)?.add(&h)
            },
            &inputs,
            &GradcheckOptions::default(),
        )
        .unwrap_or_else(|e| panic!("{kind:?}: {e}"));
    }
}

#[test]
fn cells_reject_mismatched_shapes_by_name() {
    let cell: LstmCell = LstmCell::new(3, 4, &mut nabla::rng(0));
    let err = cell.step(&Tensor::zeros(&[2, 5]), None).unwrap_err().to_string();
    assert!(err.contains("RecurrentCell") && err.contains("[2, 5]"), "{err}");
    let err = cell.step(&Tensor::zeros(&[2, 3]), Some((&Tensor::zeros(&[3, 4]), None))).unwrap_err().to_string();
    assert!(err.contains("[3, 4]"), "{err}");
    assert!(nabla::nn::TruncatedBptt::<f32>::new(0).is_err());
}

#[test]
fn a_network_without_layers_or_units_is_an_error_not_its_input() {
    // PyTorch refuses num_layers 0 and hidden_size 0 (ValueError); the constructor here is
    // infallible, so the forward pass names them. Zero layers once became one silently.
    let x = Tensor::zeros(&[5, 2, 3]);
    for (layers, hidden, what) in [(0, 4, "num_layers 0"), (1, 0, "hidden_size 0"), (2, 0, "hidden_size 0")] {
        for kind in [CellKind::RnnTanh, CellKind::Gru, CellKind::Lstm] {
            let net: Recurrent =
                Recurrent::new(kind, 3, hidden, nabla::nn::RecurrentOptions::default().num_layers(layers), &mut nabla::rng(0));
            let err = net.forward_with_state(&x, None).err().unwrap_or_else(|| panic!("{kind:?} {layers} layers of {hidden}: no error"));
            let err = err.to_string();
            assert!(err.contains("Recurrent") && err.contains(what), "{kind:?}: {err}");
        }
    }
    let lstm: Recurrent = Recurrent::new(CellKind::Lstm, 3, 4, nabla::nn::RecurrentOptions::default().num_layers(0), &mut nabla::rng(0));
    assert!(lstm.forward(&x).is_err() && lstm.parameters().is_empty());
}

#[test]
fn truncated_bptt_carries_the_state_and_cuts_the_graph() {
    let lstm: Lstm<f64> = Lstm::<f64>::new(2, 3, &mut nabla::rng(6));
    let seq = Tensor::<f64>::randn(&[10, 2, 2], &mut nabla::rng(7)).requires_grad_(true).unwrap();
    let whole = lstm.forward(&seq).unwrap();
    let mut bptt = TruncatedBptt::new(4).unwrap();
    let chunks = bptt.chunks(&lstm, &seq).unwrap();
    assert_eq!(chunks.iter().map(|c| c.shape()[0]).collect::<Vec<_>>(), vec![4, 4, 2]);
    let mut start = 0;
    for chunk in &chunks {
        let out = bptt.forward(&lstm, chunk).unwrap();
        // The forward values are those of the uncut run...
        let len = chunk.shape()[0];
        let err = out.output.sub(&whole.narrow(0, start, len).unwrap()).unwrap().abs().amax().item().unwrap();
        assert!(err < 1e-14, "chunk at {start}: {err}");
        // ...but the gradient stops at the chunk's first step.
        let g = out.output.sum().backward().unwrap();
        let gx = g.get(&seq).unwrap().to_ndarray();
        for t in 0..10 {
            let touched = gx.index_axis(ndarray::Axis(0), t).iter().any(|v| *v != 0.0);
            assert_eq!(touched, (start..start + len).contains(&t), "step {t}, chunk at {start}");
        }
        start += len;
    }
    assert!(bptt.state().is_some());
    bptt.reset();
    assert!(bptt.state().is_none());
}

#[test]
fn orthogonal_recurrent_weights_preserve_norms() {
    let lstm: Lstm<f64> =
        Lstm::<f64>::with_options(2, 5, nabla::nn::RecurrentOptions::default().num_layers(2), &mut nabla::rng(8)).unwrap();
    lstm.init_orthogonal(1.0, &mut nabla::rng(9)).unwrap();
    for (name, p) in lstm.named_parameters().into_iter().filter(|(n, _)| n.starts_with("weight_hh")) {
        let w = p.tensor();
        assert_eq!(w.shape(), &[20, 5]);
        for g in 0..4 {
            let block = w.narrow(0, g * 5, 5).unwrap();
            let err = block.t().matmul(&block).unwrap().sub(&Tensor::<f64>::eye(5)).unwrap().abs().amax().item().unwrap();
            assert!(err < 1e-12, "{name} gate {g}: {err}");
        }
    }
}

#[test]
fn second_derivatives_through_a_fused_lstm_layer_match_finite_differences() {
    // First-order backward of the layer runs fused; with create_graph it differentiates the
    // composed layer. gradgradcheck compares those second derivatives with finite
    // differences of the first.
    let net: Recurrent<f64> =
        Recurrent::<f64>::new(CellKind::Lstm, 2, 3, nabla::nn::RecurrentOptions::default().bidirectional(true), &mut nabla::rng(12));
    let x = Tensor::<f64>::randn(&[3, 2, 2], &mut nabla::rng(13));
    nabla::autograd::gradgradcheck(|v| net.forward(&v[0])?.tanh().sum_dims(&[2], false), &[x], &GradcheckOptions::default()).unwrap();
}

/// PyTorch refuses these when it builds the module (`ValueError` for no layer or unit,
/// `TypeError` for a GRU's or LSTM's `nonlinearity`); the typed constructors refuse them by
/// name, and an RNN takes ReLU.
#[test]
fn typed_recurrent_modules_check_their_options_by_name() {
    use nabla::nn::{Gru, RecurrentOptions, RnnNonlinearity};
    let relu = RecurrentOptions::default().nonlinearity(RnnNonlinearity::Relu);
    let err = Gru::<f32>::with_options(3, 4, relu, &mut nabla::rng(0)).err().expect("refused").to_string();
    assert_eq!(err, "GRU: nonlinearity Relu: only an Rnn has a choice of non-linearity");
    let err = Rnn::<f32>::with_options(3, 0, RecurrentOptions::default(), &mut nabla::rng(0)).err().expect("refused").to_string();
    assert_eq!(err, "RNN: num_layers 1 and hidden_size 0: a network needs at least one layer of at least one unit");
    let rnn: Rnn<f64> = Rnn::<f64>::with_options(1, 1, relu, &mut nabla::rng(0)).unwrap();
    assert_eq!(rnn.kind(), CellKind::RnnRelu);
    let x = Tensor::<f64>::from_vec(vec![-5.0, 5.0], &[2, 1, 1]).unwrap();
    assert!(rnn.forward(&x).unwrap().to_vec().iter().all(|&h| h >= 0.0), "ReLU states are never negative");
    let names: Vec<String> = Lstm::<f32>::with_options(2, 3, RecurrentOptions::default().bidirectional(true), &mut nabla::rng(0))
        .unwrap()
        .named_parameters()
        .into_iter()
        .map(|(n, _)| n)
        .collect();
    assert_eq!(names[4..6], ["weight_ih_l0_reverse".to_string(), "weight_hh_l0_reverse".to_string()]);
}

/// PyTorch's unbatched input `(T, I)` is a batch of one with the batch dim dropped, in the
/// output `(T, D·H)` and the states `(L·D, H)`, whatever `batch_first` says.
#[test]
fn an_unbatched_sequence_is_a_batch_of_one() {
    use nabla::nn::RecurrentOptions;
    for batch_first in [false, true] {
        let options = RecurrentOptions::default().num_layers(2).bidirectional(true).batch_first(batch_first);
        let lstm: Lstm<f64> = Lstm::<f64>::with_options(3, 4, options, &mut nabla::rng(2)).unwrap();
        let x = Tensor::<f64>::randn(&[6, 3], &mut nabla::rng(3));
        let (h0, c0) = (Tensor::<f64>::randn(&[4, 4], &mut nabla::rng(4)), Tensor::<f64>::randn(&[4, 4], &mut nabla::rng(5)));
        let single = lstm.forward_with_state(&x, Some((&h0, Some(&c0)))).unwrap();
        let batch_dim = if batch_first { 0 } else { 1 };
        let batched = lstm
            .forward_with_state(&x.unsqueeze(batch_dim).unwrap(), Some((&h0.unsqueeze(1).unwrap(), Some(&c0.unsqueeze(1).unwrap()))))
            .unwrap();
        assert_eq!(single.output.shape(), &[6, 8]);
        assert_eq!(single.output.to_vec(), batched.output.to_vec());
        assert_eq!(single.h_n.shape(), &[4, 4]);
        assert_eq!(single.h_n.to_vec(), batched.h_n.to_vec());
        assert_eq!(single.c_n.unwrap().to_vec(), batched.c_n.unwrap().to_vec());
    }
    let lstm: Lstm<f64> = Lstm::<f64>::new(3, 4, &mut nabla::rng(2));
    let err = lstm.forward_with_state(&Tensor::<f64>::zeros(&[6, 3]), Some((&Tensor::<f64>::zeros(&[1, 1, 4]), None))).err().unwrap();
    assert_eq!(err.to_string(), "Recurrent: h_0 [1, 1, 4] should be (L·D, H) for an unbatched input [6, 3]");
}

/// An LSTM with `proj_size`: the projected `h` and the unprojected `c` have their own
/// shapes, `weight_hr_l<k>` is a parameter, and gradients match finite differences to
/// second order (the projection runs the composed cell, not the fused layer).
#[test]
fn a_projected_lstm_has_its_shapes_and_gradients() {
    use nabla::autograd::gradgradcheck;
    let options = nabla::nn::RecurrentOptions::default().num_layers(2).proj_size(2).bidirectional(true);
    let lstm = Lstm::<f64>::with_options(3, 4, options, &mut nabla::rng(4)).unwrap();
    let names: Vec<String> = lstm.named_parameters().into_iter().map(|(n, _)| n).collect();
    assert_eq!(&names[..5], ["weight_ih_l0", "weight_hh_l0", "bias_ih_l0", "bias_hh_l0", "weight_hr_l0"]);
    let shapes: Vec<Vec<usize>> = lstm.named_parameters().iter().map(|(_, p)| p.shape()).collect();
    // Layer 1 reads both directions' projected outputs: 2·P = 4 features.
    assert_eq!((shapes[1].clone(), shapes[4].clone(), shapes[10].clone()), (vec![16, 2], vec![2, 4], vec![16, 4]));
    let x = Tensor::<f64>::randn(&[5, 2, 3], &mut nabla::rng(5));
    let out = lstm.forward_with_state(&x, None).unwrap();
    assert_eq!((out.output.shape(), out.h_n.shape()), (&[5, 2, 4][..], &[4, 2, 2][..]));
    assert_eq!(out.c_n.unwrap().shape(), &[4, 2, 4]);
    let f = |v: &[Tensor<f64>]| lstm.forward_with_state(&v[0], None).map(|o| o.output);
    gradcheck(f, std::slice::from_ref(&x), &GradcheckOptions::default()).unwrap();
    gradgradcheck(f, &[x.narrow(0, 0, 2).unwrap()], &GradcheckOptions::default()).unwrap();
    // PyTorch's refusals.
    let refused = |o: nabla::nn::RecurrentOptions| Lstm::<f64>::with_options(3, 4, o, &mut nabla::rng(0)).err().unwrap().to_string();
    assert!(refused(nabla::nn::RecurrentOptions::default().proj_size(4)).contains("smaller than hidden_size"));
    assert!(refused(nabla::nn::RecurrentOptions::default().dropout(1.5)).contains("dropout 1.5"));
    let gru = nabla::nn::Gru::<f64>::with_options(3, 4, nabla::nn::RecurrentOptions::default().proj_size(2), &mut nabla::rng(0));
    assert!(gru.err().unwrap().to_string().contains("only supported for an LSTM"));
}

/// Dropout between layers: random in training (seeded at construction, so two networks
/// built from one seed agree), the identity in evaluation, never after the last layer.
#[test]
fn dropout_between_recurrent_layers_is_seeded_in_training_and_off_in_eval() {
    let build = |dropout: f64| {
        let options = nabla::nn::RecurrentOptions::default().num_layers(2).dropout(dropout);
        nabla::nn::Gru::<f64>::with_options(3, 6, options, &mut nabla::rng(8)).unwrap()
    };
    let x = Tensor::<f64>::randn(&[4, 3, 3], &mut nabla::rng(9));
    let (a, b, plain) = (build(0.5), build(0.5), build(0.0));
    let (ya, yb, y0) = (a.forward(&x).unwrap().to_vec(), b.forward(&x).unwrap().to_vec(), plain.forward(&x).unwrap().to_vec());
    assert_eq!(ya, yb, "one seed, one mask");
    assert_ne!(ya, y0, "training drops");
    a.set_training(false);
    assert_eq!(a.forward(&x).unwrap().to_vec(), y0, "evaluation is the network without dropout");
    // One layer: nothing between layers to drop.
    let single =
        nabla::nn::Gru::<f64>::with_options(3, 6, nabla::nn::RecurrentOptions::default().dropout(0.9), &mut nabla::rng(8)).unwrap();
    let alone = nabla::nn::Gru::<f64>::new(3, 6, &mut nabla::rng(8));
    assert_eq!(single.forward(&x).unwrap().to_vec(), alone.forward(&x).unwrap().to_vec());
}
