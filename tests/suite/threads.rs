//! Threads: the public types are Send + Sync, models train on several threads at once with
//! the results of a sequential run, and data-parallel gradients equal one big batch's.

use nabla::nn::functional::{Reduction, mse_loss};
use nabla::prelude::*;
use rayon::prelude::*;

fn assert_send_sync<T: Send + Sync>() {}

#[test]
fn the_public_types_are_send_and_sync() {
    assert_send_sync::<Tensor>();
    assert_send_sync::<Tensor<f64>>();
    assert_send_sync::<nn::Param>();
    assert_send_sync::<Gradients>();
    assert_send_sync::<nn::Linear>();
    assert_send_sync::<nn::Sequential>();
    assert_send_sync::<nn::Conv2d>();
    assert_send_sync::<nn::Recurrent>();
    assert_send_sync::<nn::RecurrentCell>();
    assert_send_sync::<nn::MultiheadAttention>();
    assert_send_sync::<nn::Dropout>();
    assert_send_sync::<optim::Sgd>();
    assert_send_sync::<optim::Adam>();
    assert_send_sync::<nabla::Error>();
}

/// Trains a small MLP for 200 steps from `seed`; its final parameters.
fn train(seed: u64) -> Vec<Vec<f64>> {
    let mut rng = nabla::rng(seed);
    let model: nn::Sequential<f64> = nn::Sequential::<f64>::new()
        .push(nn::Linear::<f64>::new(3, 8, &mut rng))
        .push(nn::Tanh)
        .push(nn::Linear::<f64>::new(8, 1, &mut rng));
    let mut opt = optim::Adam::new(model.parameters(), 1e-2);
    let x = Tensor::<f64>::randn(&[16, 3], &mut rng);
    let y = x.sum_dims(&[1], true).unwrap().sin();
    for _ in 0..200 {
        let loss = mse_loss(&model.forward(&x).unwrap(), &y, Reduction::Mean).unwrap();
        opt.step(&loss.backward().unwrap()).unwrap();
    }
    model.parameters().iter().map(|p| p.tensor().to_vec()).collect()
}

#[test]
fn two_models_trained_on_two_threads_match_sequential_runs() {
    let sequential = (train(1), train(2));
    let parallel = std::thread::scope(|s| {
        let a = s.spawn(|| train(1));
        let b = s.spawn(|| train(2));
        (a.join().unwrap(), b.join().unwrap())
    });
    assert_eq!(sequential, parallel, "bit for bit");
}

#[test]
fn data_parallel_gradients_equal_one_big_batch() {
    // The mean loss over 64 samples = the average of 4 shard means; shards run on rayon
    // workers. Tolerance 1e-12 relative: only the order of the additions differs.
    let mut rng = nabla::rng(3);
    let model: nn::Sequential<f64> = nn::Sequential::<f64>::new()
        .push(nn::Linear::<f64>::new(5, 16, &mut rng))
        .push(nn::Relu)
        .push(nn::Linear::<f64>::new(16, 2, &mut rng));
    let x = Tensor::<f64>::randn(&[64, 5], &mut rng);
    let y = Tensor::<f64>::randn(&[64, 2], &mut rng);
    let params: Vec<Tensor<f64>> = model.parameters().iter().map(|p| p.tensor()).collect();
    let wrt: Vec<&Tensor<f64>> = params.iter().collect();
    let whole = nabla::grad(&[&mse_loss(&model.forward(&x).unwrap(), &y, Reduction::Mean).unwrap()], &wrt, None, false).unwrap();
    let shards: Vec<Vec<Tensor<f64>>> = (0..4)
        .into_par_iter()
        .map(|k| {
            let (xs, ys) = (x.narrow(0, 16 * k, 16).unwrap(), y.narrow(0, 16 * k, 16).unwrap());
            let loss = mse_loss(&model.forward(&xs).unwrap(), &ys, Reduction::Mean).unwrap();
            nabla::grad(&[&loss], &wrt, None, false).unwrap()
        })
        .collect();
    for (i, g) in whole.iter().enumerate() {
        let averaged = shards.iter().map(|s| s[i].clone()).reduce(|a, b| a.add(&b).unwrap()).unwrap().mul_scalar(0.25);
        let scale = g.abs().amax().item().unwrap().max(1e-300);
        let err = averaged.sub(g).unwrap().abs().amax().item().unwrap() / scale;
        assert!(err < 1e-12, "parameter {i}: relative difference {err:e}");
    }
}

/// Once the pool runs (this binary's other tests start it, and so does asking for its
/// size), its size cannot change: `set_num_threads` says so instead of doing nothing.
#[test]
fn set_num_threads_after_the_pool_started_is_refused_by_name() {
    let running = nabla::num_threads();
    let err = nabla::set_num_threads(running + 1).unwrap_err().to_string();
    assert_eq!(err, format!("set_num_threads: the thread pool is running with {running} threads already; set them before the first op"));
    assert_eq!(nabla::set_num_threads(0).unwrap_err().to_string(), "set_num_threads: 0 threads: at least 1");
}
