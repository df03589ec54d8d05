//! Gradient checkpointing: the same gradients, bit for bit, as storing everything.

use nabla::autograd::{GradcheckOptions, checkpoint, gradgradcheck};
use nabla::prelude::*;
use std::sync::Arc;

/// Every gradient of `grads_a` equals the one of `grads_b` for the same tensor, exactly.
fn assert_bitwise(what: &str, a: &[Tensor<f64>], b: &[Tensor<f64>]) {
    assert_eq!(a.len(), b.len());
    for (k, (x, y)) in a.iter().zip(b).enumerate() {
        assert_eq!(x.to_vec(), y.to_vec(), "{what}: gradient {k} differs");
    }
}

fn mlp_blocks(depth: usize, width: usize) -> Vec<Arc<nn::Sequential<f64>>> {
    let mut rng = nabla::rng(1);
    (0..depth).map(|_| Arc::new(nn::Sequential::<f64>::new().push(nn::Linear::<f64>::new(width, width, &mut rng)).push(nn::Tanh))).collect()
}

#[test]
fn a_checkpointed_mlp_has_the_same_gradients_bit_for_bit() {
    let blocks = mlp_blocks(6, 8);
    let x = Tensor::<f64>::randn(&[5, 8], &mut nabla::rng(2)).requires_grad_(true).unwrap();
    let params: Vec<Tensor<f64>> = blocks.iter().flat_map(|b| b.parameters()).map(|p| p.tensor()).collect();
    let mut wrt: Vec<&Tensor<f64>> = params.iter().collect();
    wrt.push(&x);

    let mut h = x.clone();
    for b in &blocks {
        h = b.forward(&h).unwrap();
    }
    let plain = nabla::grad(&[&h.pow(2.0).sum()], &wrt, None, false).unwrap();

    // Checkpoint every two blocks.
    let mut h = x.clone();
    for pair in blocks.chunks(2) {
        let pair: Vec<_> = pair.to_vec();
        h = checkpoint(
            move |v| {
                let mut h = v[0].clone();
                for b in &pair {
                    h = b.forward(&h)?;
                }
                Ok(h)
            },
            &[&h],
        )
        .unwrap();
    }
    assert_eq!(h.op_name(), Some("checkpoint"));
    let checkpointed = nabla::grad(&[&h.pow(2.0).sum()], &wrt, None, false).unwrap();
    assert_bitwise("MLP", &plain, &checkpointed);
}

#[test]
fn nested_checkpoints_give_the_same_gradients() {
    let blocks = mlp_blocks(4, 6);
    let x = Tensor::<f64>::randn(&[3, 6], &mut nabla::rng(3)).requires_grad_(true).unwrap();
    let params: Vec<Tensor<f64>> = blocks.iter().flat_map(|b| b.parameters()).map(|p| p.tensor()).collect();
    let mut wrt: Vec<&Tensor<f64>> = params.iter().collect();
    wrt.push(&x);
    let mut h = x.clone();
    for b in &blocks {
        h = b.forward(&h).unwrap();
    }
    let plain = nabla::grad(&[&h.sum()], &wrt, None, false).unwrap();

    let inner = |pair: Vec<Arc<nn::Sequential<f64>>>| {
        move |v: &[Tensor<f64>]| -> nabla::Result<Tensor<f64>> {
            let (a, b) = (pair[0].clone(), pair[1].clone());
            let h = checkpoint(move |v| a.forward(&v[0]), &[&v[0]])?;
            checkpoint(move |v| b.forward(&v[0]), &[&h])
        }
    };
    let (first, second) = (inner(blocks[..2].to_vec()), inner(blocks[2..].to_vec()));
    let h = checkpoint(
        move |v| {
            let h = first(v)?;
            second(&[h])
        },
        &[&x],
    )
    .unwrap();
    let nested = nabla::grad(&[&h.sum()], &wrt, None, false).unwrap();
    assert_bitwise("nested", &plain, &nested);
}

#[test]
fn a_checkpointed_lstm_has_the_same_gradients_bit_for_bit() {
    let mut rng = nabla::rng(4);
    let lstm: Arc<nn::Recurrent<f64>> = Arc::new(nn::Recurrent::<f64>::new(
        nn::CellKind::Lstm,
        3,
        5,
        nabla::nn::RecurrentOptions::default().num_layers(2).batch_first(true),
        &mut rng,
    ));
    let head: nn::Linear<f64> = nn::Linear::<f64>::new(5, 2, &mut rng);
    let x = Tensor::<f64>::randn(&[4, 7, 3], &mut rng).requires_grad_(true).unwrap();
    let params: Vec<Tensor<f64>> = lstm.parameters().into_iter().chain(head.parameters()).map(|p| p.tensor()).collect();
    let mut wrt: Vec<&Tensor<f64>> = params.iter().collect();
    wrt.push(&x);
    let loss = |h: Tensor<f64>| head.forward(&h).unwrap().pow(2.0).mean();
    let plain = nabla::grad(&[&loss(lstm.forward(&x).unwrap())], &wrt, None, false).unwrap();
    let l = Arc::clone(&lstm);
    let h = checkpoint(move |v| l.forward(&v[0]), &[&x]).unwrap();
    let checkpointed = nabla::grad(&[&loss(h)], &wrt, None, false).unwrap();
    assert_bitwise("LSTM", &plain, &checkpointed);
}

#[test]
fn second_derivatives_pass_through_a_checkpoint() {
    // A parameter captured by the segment and an input: second derivatives against finite
    // differences of the first.
    let w = Tensor::<f64>::randn(&[3, 3], &mut nabla::rng(5)).requires_grad_(true).unwrap();
    let f = move |v: &[Tensor<f64>]| {
        let w = w.clone();
        checkpoint(move |u| u[0].matmul(&w)?.tanh().mul(&u[0]), &[&v[0]])?.sum_dims(&[1], false)
    };
    gradgradcheck(f, &[Tensor::<f64>::randn(&[2, 3], &mut nabla::rng(6))], &GradcheckOptions::default()).unwrap();
}

#[test]
fn without_grad_mode_a_checkpoint_just_runs() {
    let x = Tensor::<f64>::ones(&[2]).requires_grad_(true).unwrap();
    let y = nabla::no_grad(|| checkpoint(|v| Ok(v[0].exp()), &[&x])).unwrap();
    assert!(!y.requires_grad());
    assert_eq!(y.to_vec(), vec![1f64.exp(); 2]);
    let err = checkpoint(|v| v[0].reshape(&[3]), &[&x]).err().unwrap().to_string();
    assert!(err.contains("reshape"), "{err}");
}
