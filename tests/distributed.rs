//! Data-parallel training gives the numbers of one process (`--features mpi`).
//!
//! Launched by `.ci/run` as `mpirun --allow-run-as-root --oversubscribe --bind-to none -np R
//! target/release/deps/distributed-…` with R = 2 and 3: every rank runs every check in
//! order (libtest's parallel tests cannot share MPI's one communicator, hence no harness),
//! printing `ok <check>` from rank 0; a failed check panics, which aborts the job with a
//! non-zero exit. With the argument `panic` it is instead the driver of the fault test: it
//! launches itself under `mpirun -np 2` with `panic-child`, where rank 1 panics while rank
//! 0 waits in an all-reduce, and asserts that the job ends in seconds with a non-zero exit.

use nabla::distributed::{self, DataParallel, World};
use nabla::nn::functional::{cross_entropy, mse_loss};
use nabla::nn::{Module, Reduction};
use nabla::prelude::*;
use std::time::{Duration, Instant};

const STEPS: usize = 120;

/// A global batch of `n` samples of the digits, the same on every rank.
fn digits(n: usize) -> (Tensor<f64>, ndarray::ArrayD<usize>) {
    let d = data::digits().expect("embedded");
    let split = d.split(0.25, &mut nabla::rng(0)).expect("a split");
    let x = split.train_x.narrow(0, 0, n).expect("n samples");
    (Tensor::<f64>::from(x.value().mapv(|v| v as f64)), split.train_y.slice(ndarray::s![..n]).to_owned().into_dyn())
}

/// This rank's rows of a global batch of `n`: `rank, rank + size, …`.
fn my_rows(n: usize, world: &World) -> Vec<usize> {
    (world.rank()..n).step_by(world.size()).collect()
}

/// Trains `build()`'s model for STEPS SGD steps on the global batch, once alone on the
/// whole batch and once data-parallel on this rank's share; returns both final parameter
/// lists.
fn both_runs<M: Module<f64>>(
    world: &World,
    build: impl Fn(u64) -> M,
    x: &Tensor<f64>,
    y: &ndarray::ArrayD<usize>,
    reshape: impl Fn(&Tensor<f64>) -> Tensor<f64>,
) -> (Vec<Vec<f64>>, Vec<Vec<f64>>) {
    let alone = build(0);
    let mut opt = optim::Sgd::new(alone.parameters(), 0.05).momentum(0.9);
    for _ in 0..STEPS {
        let loss = cross_entropy(&alone.forward(&reshape(x)).unwrap(), y).unwrap();
        opt.step(&loss.backward().unwrap()).unwrap();
    }
    // Ranks other than 0 start elsewhere: DataParallel copies rank 0's values.
    let ddp = DataParallel::new(build(world.rank() as u64 * 7), world).unwrap();
    let rows = my_rows(x.shape()[0], world);
    let (xs, ys) = (x.index_select(0, &rows).unwrap(), ndarray::Array1::from_iter(rows.iter().map(|&r| y[r])).into_dyn());
    let mut opt = optim::Sgd::new(ddp.module().parameters(), 0.05).momentum(0.9);
    for _ in 0..STEPS {
        let loss = cross_entropy(&ddp.module().forward(&reshape(&xs)).unwrap(), &ys).unwrap();
        let mut grads = loss.backward().unwrap();
        ddp.average_gradients(&mut grads).unwrap();
        opt.step(&grads).unwrap();
    }
    let values = |m: &M| m.parameters().iter().map(|p| p.tensor().to_vec()).collect::<Vec<_>>();
    (values(&alone), values(ddp.module()))
}

/// The largest difference between the runs, and that every rank holds rank 0's values bit
/// for bit.
fn compare(world: &World, what: &str, alone: &[Vec<f64>], parallel: &[Vec<f64>], tolerance: f64) {
    let worst = alone.iter().flatten().zip(parallel.iter().flatten()).map(|(a, b)| (a - b).abs()).fold(0.0, f64::max);
    assert!(worst <= tolerance, "{what}: rank {} is {worst:e} from the single process (tolerance {tolerance:e})", world.rank());
    // Rank 0's values on every rank: the sum of its values and everyone else's zeros, which
    // is exact; each rank's must equal them exactly.
    let flat: Vec<f64> = parallel.iter().flatten().copied().collect();
    let own = if world.rank() == 0 { flat.clone() } else { vec![0.0; flat.len()] };
    let rank0 = world.all_reduce_tensor(&Tensor::<f64>::from_vec(own, &[flat.len()]).unwrap()).unwrap().to_vec();
    let differ = (flat != rank0) as u8 as f64;
    assert_eq!(world.all_reduce_sum(differ), 0.0, "{what}: the ranks' parameters are not equal");
    if world.rank() == 0 {
        println!("ok {what}: {STEPS} steps on {} ranks, largest difference to one process {worst:.1e}", world.size());
    }
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    match args.get(1).map(String::as_str) {
        Some("panic") => return panic_driver(&args[0]),
        Some("panic-child") => return panic_child(),
        _ => {}
    }
    let world = distributed::init().expect("MPI");

    // An MLP on 96 digits: f64, so that the only difference is the order of the sums.
    let (x, y) = digits(96);
    let mlp = |seed: u64| {
        let mut rng = nabla::rng(seed);
        nn::Sequential::<f64>::new()
            .push(nn::Linear::<f64>::new(64, 32, &mut rng))
            .push(nn::Tanh)
            .push(nn::Linear::<f64>::new(32, 10, &mut rng))
    };
    let (alone, parallel) = both_runs(&world, mlp, &x, &y, |x| x.clone());
    compare(&world, "mlp", &alone, &parallel, 1e-10);

    // A convolutional network on the same digits as 8x8 images.
    let conv = |seed: u64| {
        let mut rng = nabla::rng(seed);
        let same = nabla::ops::Conv2dConfig { padding: [1, 1], ..Default::default() };
        nn::Sequential::<f64>::new()
            .push(nn::Conv2d::<f64>::new(1, 4, [3, 3], same, true, &mut rng).unwrap())
            .push(nn::Relu)
            .push(nn::max_pool2d(2))
            .push(nn::Flatten::new())
            .push(nn::Linear::<f64>::new(64, 10, &mut rng))
    };
    let (alone, parallel) = both_runs(&world, conv, &x, &y, |x| x.reshape(&[-1, 1, 8, 8]).unwrap());
    compare(&world, "cnn", &alone, &parallel, 1e-10);

    f32_equivalence(&world);
    mismatched_models(&world);
    shards_and_accumulation(&world);
    if world.rank() == 0 {
        println!("distributed: every check passed on {} ranks", world.size());
    }
}

/// In f32 the ranks' partial sums round differently from one process's whole sums, and the
/// difference compounds over the steps: a tolerance of 1e-5 on parameters of size ~0.1–1
/// is about a hundred f32 roundings (1.2e-7 each); 2 and 3 ranks measure 6e-8 and 9e-8.
fn f32_equivalence(world: &World) {
    let d = data::digits().expect("embedded");
    let split = d.split(0.25, &mut nabla::rng(0)).expect("a split");
    let (x, y) = (split.train_x.narrow(0, 0, 96).unwrap(), split.train_y.slice(ndarray::s![..96]).to_owned().into_dyn());
    let build = |seed: u64| {
        let mut rng = nabla::rng(seed);
        nn::Sequential::new().push(nn::Linear::new(64, 32, &mut rng)).push(nn::Relu).push(nn::Linear::new(32, 10, &mut rng))
    };
    let alone = build(0);
    let mut opt = optim::Sgd::new(alone.parameters(), 0.05);
    for _ in 0..STEPS {
        opt.step(&cross_entropy(&alone.forward(&x).unwrap(), &y).unwrap().backward().unwrap()).unwrap();
    }
    let ddp = DataParallel::new(build(world.rank() as u64 * 7), world).unwrap().bucket_bytes(1024);
    let rows = my_rows(96, world);
    let (xs, ys) = (x.index_select(0, &rows).unwrap(), ndarray::Array1::from_iter(rows.iter().map(|&r| y[r])).into_dyn());
    let mut opt = optim::Sgd::new(ddp.module().parameters(), 0.05);
    for _ in 0..STEPS {
        let mut grads = cross_entropy(&ddp.module().forward(&xs).unwrap(), &ys).unwrap().backward().unwrap();
        ddp.average_gradients(&mut grads).unwrap();
        opt.step(&grads).unwrap();
    }
    let values = |m: &nn::Sequential| {
        m.parameters().iter().map(|p| p.tensor().to_vec().iter().map(|&v| v as f64).collect()).collect::<Vec<Vec<f64>>>()
    };
    compare(world, "mlp f32 (1 KB buckets)", &values(&alone), &values(ddp.module()), 1e-5);
}

/// A rank whose model differs gets an Err, and so does every other rank, before any step.
fn mismatched_models(world: &World) {
    if world.size() == 1 {
        return;
    }
    let mut rng = nabla::rng(0);
    let width = if world.rank() == world.size() - 1 { 5 } else { 4 };
    let odd = nn::Linear::<f64>::new(3, width, &mut rng);
    let err = DataParallel::new(odd, world).err().expect("refused on every rank").to_string();
    let last = world.rank() == world.size() - 1;
    let expected =
        if last { "differs from rank 0: entry 0 is weight:[5, 3], rank 0 has weight:[4, 3]" } else { "another rank's parameters differ" };
    assert!(err.contains(expected), "rank {}: {err}", world.rank());
    if world.rank() == 0 {
        println!("ok mismatched models: every rank refuses ({err})");
    }
}

/// Shards cover an epoch disjointly; an empty one is an Err on the rank (no hang); micro-
/// batch accumulation then one average equals one average of the whole.
fn shards_and_accumulation(world: &World) {
    let (rank, size) = (world.rank(), world.size());
    let mine = distributed::shard(10, rank, size, 3, 0, true).unwrap();
    let counts = world.all_reduce_sum(mine.len() as f64);
    assert_eq!(counts as usize, 10 / size * size);
    assert!(distributed::shard(size - 1, rank, size, 3, 0, true).is_err(), "an empty shard is an Err");

    let w = nn::Linear::<f64>::new(2, 1, &mut nabla::rng(1));
    let ddp = DataParallel::new(w, world).unwrap();
    let x = Tensor::<f64>::randn(&[4, 2], &mut nabla::rng(10 + rank as u64));
    let t = Tensor::<f64>::zeros(&[4, 1]);
    let loss =
        |x: &Tensor<f64>| mse_loss(&ddp.module().forward(x).unwrap(), &t.narrow(0, 0, x.shape()[0]).unwrap(), Reduction::Sum).unwrap();
    let mut whole = loss(&x).backward().unwrap();
    let mut parts = loss(&x.narrow(0, 0, 2).unwrap()).backward().unwrap();
    parts.accumulate(&loss(&x.narrow(0, 2, 2).unwrap()).backward().unwrap()).unwrap();
    ddp.average_gradients(&mut whole).unwrap();
    ddp.average_gradients(&mut parts).unwrap();
    let p = ddp.module().weight.tensor();
    let (a, b) = (whole.get(&p).unwrap().to_vec(), parts.get(&p).unwrap().to_vec());
    assert!(a.iter().zip(&b).all(|(a, b)| (a - b).abs() < 1e-12), "accumulated {b:?} vs whole {a:?}");
    if rank == 0 {
        println!("ok shards and accumulation");
    }
}

/// Rank 1 panics while rank 0 waits in an all-reduce.
fn panic_child() {
    let world = distributed::init().expect("MPI");
    if world.rank() == 1 {
        panic!("rank 1 panics on purpose");
    }
    world.all_reduce_sum(1.0);
    unreachable!("rank 0 cannot finish an all-reduce that rank 1 never joins");
}

/// Launches the panicking job and asserts that it ends in seconds, with a non-zero exit.
fn panic_driver(me: &str) {
    let start = Instant::now();
    let mut child = std::process::Command::new("mpirun")
        .args(["--allow-run-as-root", "--oversubscribe", "--bind-to", "none", "-np", "2", me, "panic-child"])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("mpirun on the PATH");
    let limit = Duration::from_secs(30);
    let status = loop {
        if let Some(status) = child.try_wait().expect("wait") {
            break status;
        }
        if start.elapsed() > limit {
            let _ = child.kill();
            panic!("a panicking rank did not end the job within {limit:?}");
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    assert!(!status.success(), "the job of a panicking rank exited with success");
    println!("ok a panicking rank ends the job in {:.1} s with {status}", start.elapsed().as_secs_f64());
}
