//! The digits MLP of `digits`, trained data-parallel over MPI (`nabla::distributed`).
//!
//! ```text
//! cargo build --release --features mpi --example distributed_digits
//! target/release/examples/distributed_digits                                  # one process
//! mpirun --bind-to none -np 2 target/release/examples/distributed_digits       # two
//! ```
//!
//! Every rank builds the model from its own seed; `DataParallel` checks that the ranks
//! agree on the parameters and copies rank 0's values to all. Each epoch is shuffled by
//! seed and epoch, the same on every rank, and dealt out by `distributed::shard`: global
//! batch `k` is the union of the ranks' local batches `k`, so one process and several see
//! the same global batches (the training set is cut to a multiple of the global batch, 48,
//! for that). The gradients are averaged over the ranks before every SGD step, and rank 0
//! prints the loss averaged over the ranks and the test accuracy: the same figures (to f32
//! rounding of the sums' order) whatever the number of processes, which divides 48.
//! Rank 0 alone saves the model; every rank loads it back and checks its accuracy.
//! `--quick` trains 2 epochs instead of 30.

mod common;

use nabla::distributed::{self, DataParallel};
use nabla::nn::functional::cross_entropy;
use nabla::prelude::*;

const GLOBAL_BATCH: usize = 48;

fn main() -> nabla::Result<()> {
    let world = distributed::init()?;
    let (rank, size) = (world.rank(), world.size());
    if !GLOBAL_BATCH.is_multiple_of(size) {
        if rank == 0 {
            eprintln!("distributed_digits: {size} processes do not divide the global batch of {GLOBAL_BATCH}");
        }
        std::process::exit(2);
    }
    let epochs = if common::quick() { 2 } else { 30 };
    let split = data::digits()?.split(0.25, &mut nabla::rng(0))?;
    let kept = split.train_y.len() / GLOBAL_BATCH * GLOBAL_BATCH;
    let train_x = split.train_x.narrow(0, 0, kept)?;
    let train_y = split.train_y.slice(ndarray::s![..kept]).to_owned().into_dyn();
    // A different initialisation per rank: DataParallel::new replaces it by rank 0's.
    let mut rng = nabla::rng(rank as u64);
    let model = nn::Sequential::new().push(nn::Linear::new(64, 32, &mut rng)).push(nn::Relu).push(nn::Linear::new(32, 10, &mut rng));
    let ddp = DataParallel::new(model, &world)?;
    let mut opt = optim::Sgd::new(ddp.module().parameters(), 0.05).momentum(0.9);
    if rank == 0 {
        println!("{size} process(es), {} training samples, global batch {GLOBAL_BATCH} ({} per process)", kept, GLOBAL_BATCH / size);
    }
    let mut accuracy = 0.0;
    for epoch in 0..epochs {
        let mine = distributed::shard(kept, rank, size, 0, epoch as u64, false)?;
        let (mut total, mut batches) = (0.0, 0);
        for (x, y) in data::Batches::with_order(&train_x, &train_y, mine, GLOBAL_BATCH / size)? {
            let loss = cross_entropy(&ddp.module().forward(&x)?, &y)?;
            let mut grads = loss.backward()?;
            ddp.average_gradients(&mut grads)?;
            opt.step(&grads)?;
            total += loss.item()? as f64;
            batches += 1;
        }
        let mean_loss = world.all_reduce_sum(total / batches as f64) / size as f64;
        let logits = nabla::no_grad(|| ddp.module().forward(&split.test_x))?;
        let right = common::argmax_rows(&logits).iter().zip(split.test_y.iter()).filter(|(p, y)| p == y).count();
        accuracy = 100.0 * right as f64 / split.test_y.len() as f64;
        if rank == 0 {
            println!("epoch {:2}: train loss {mean_loss:.4}, test accuracy {accuracy:.2}%", epoch + 1);
        }
    }
    // Saving on rank 0 only (the ranks hold the same parameters), loading on all.
    let path = std::env::temp_dir().join("nabla-distributed-digits.safetensors");
    if rank == 0 {
        ddp.module().save(&path)?;
    }
    world.barrier();
    let mut rng = nabla::rng(99);
    let reloaded = nn::Sequential::new().push(nn::Linear::new(64, 32, &mut rng)).push(nn::Relu).push(nn::Linear::new(32, 10, &mut rng));
    reloaded.load(&path)?;
    let logits = nabla::no_grad(|| reloaded.forward(&split.test_x))?;
    let right = common::argmax_rows(&logits).iter().zip(split.test_y.iter()).filter(|(p, y)| p == y).count();
    assert_eq!(100.0 * right as f64 / split.test_y.len() as f64, accuracy, "the saved model predicts as the trained one");
    if rank == 0 {
        println!("test accuracy {accuracy:.2}% on {size} process(es)");
    }
    Ok(())
}
