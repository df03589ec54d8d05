//! Recurrent layers: finite-difference checks and a long unroll.

use nabla::autograd::{gradcheck, GradcheckOptions};
use nabla::nn::{CellKind, Recurrent};
use nabla::prelude::*;

#[test]
fn recurrent_layers_match_finite_differences() {
    for kind in [CellKind::RnnTanh, CellKind::Gru, CellKind::Lstm] {
        let net: Recurrent<f64> = Recurrent::new(kind, 3, 4, 2, true, true, true, &mut nabla::rng(1));
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
    let net: Recurrent = Recurrent::rnn(1, 2, 1, &mut nabla::rng(4));
    let x = Tensor::randn(&[10_000, 1, 1], &mut nabla::rng(5));
    let loss = net.forward(&x).unwrap().pow(2.0).mean();
    let grads = loss.backward().unwrap();
    assert_eq!(grads.len(), 4);
    assert!(grads.iter().all(|(_, g)| g.to_vec().iter().all(|v| v.is_finite())));
}
