//! The reference workloads of the benchmark suite (W1..W7), and the normalisation layers'
//! (`bn`, `ln`) and the machine's FMA peak (`peak`), timed the way the PyTorch reference scripts time them, so that
//! `compare.sh` (`scripts/compare_norm.sh` for `bn` and `ln`) can pair the two in one run.
//!
//! ```text
//! cargo run --release --example workloads -- <w1..w7 | w7_fused | bn | ln | peak | gemm_shapes> <threads> [seconds]
//! mpirun --bind-to none -np R target/release/examples/workloads <w1..w3> <threads> ddp   # --features mpi
//! RESULT nabla <workload> <variant> threads=<t> median_ms=<x> iters=<n> [gflops=<g>] maxrss_mb=<m>
//! ```

mod common;

use nabla::ops::Conv2dConfig;
use nabla::prelude::*;
use std::time::{Duration, Instant};

/// Warm up for at least 3 calls and 0.3 s, then time at least 10 calls and until
/// `seconds` have passed (at most 20,000): the median and the count.
fn bench(seconds: f64, mut f: impl FnMut()) -> (Duration, usize) {
    let start = Instant::now();
    let mut n = 0;
    while n < 3 || start.elapsed() < Duration::from_secs_f64(0.3) {
        f();
        n += 1;
    }
    let mut times = Vec::new();
    let start = Instant::now();
    while times.len() < 10 || (start.elapsed().as_secs_f64() < seconds && times.len() < 20_000) {
        let t = Instant::now();
        f();
        times.push(t.elapsed());
    }
    times.sort();
    (times[times.len() / 2], times.len())
}

/// The peak resident set of this process, in MB (Linux; 0 elsewhere).
fn max_rss_mb() -> f64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let kb = status.lines().find_map(|l| l.strip_prefix("VmHWM:")).and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<f64>().ok());
    kb.unwrap_or(0.0) / 1024.0
}

fn report(workload: &str, variant: &str, threads: usize, (median, iters): (Duration, usize), flop: Option<f64>) {
    let ms = median.as_secs_f64() * 1e3;
    let gflops = flop.map(|f| format!(" gflops={:.2}", f / median.as_secs_f64() / 1e9)).unwrap_or_default();
    println!("RESULT nabla {workload} {variant} threads={threads} median_ms={ms:.4} iters={iters}{gflops} maxrss_mb={:.1}", max_rss_mb());
}

fn main() -> nabla::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).filter(|a| a != "--quick").collect();
    let quick = std::env::args().any(|a| a == "--quick");
    let workload = args.first().map(String::as_str).unwrap_or("w5");
    let threads: usize = args.get(1).and_then(|t| t.parse().ok()).unwrap_or(1);
    let seconds: f64 = args.get(2).and_then(|s| s.parse().ok()).unwrap_or(if quick { 0.1 } else { 2.0 });
    rayon::ThreadPoolBuilder::new().num_threads(threads).build_global().expect("the first and only global pool");
    if args.get(2).map(String::as_str) == Some("ddp") {
        return ddp(workload, threads);
    }
    let mut rng = nabla::rng(42);
    match workload {
        "w5" => {
            let n = if quick { 128 } else { 1024 };
            let flop = 2.0 * (n as f64).powi(3);
            let a = Tensor::randn(&[n, n], &mut rng);
            let b = Tensor::randn(&[n, n], &mut rng);
            report("w5", "fwd", threads, bench(seconds, || drop(nabla::no_grad(|| a.matmul(&b).unwrap()))), Some(flop));
            let (a, b) = (a.requires_grad_(true)?, b.requires_grad_(true)?);
            let g = Tensor::ones(&[n, n]);
            let step = || drop(a.matmul(&b).unwrap().backward_with(&g).unwrap());
            report("w5", "fwd_bwd", threads, bench(seconds, step), Some(3.0 * flop));
        }
        "w7" => {
            let n = if quick { 1 << 16 } else { 4 << 20 };
            let x = Tensor::randn(&[n], &mut rng);
            let f = |x: &Tensor| &(&x.tanh() * &x.sigmoid()) + x;
            report("w7", "fwd", threads, bench(seconds, || drop(nabla::no_grad(|| f(&x)))), None);
            let x = x.requires_grad_(true)?;
            let g = Tensor::ones(&[n]);
            report("w7", "fwd_bwd", threads, bench(seconds, || drop(f(&x).backward_with(&g).unwrap())), None);
        }
        "w7_fused" => {
            // W7 as one fused op (`nabla::fuse`), which PyTorch's eager mode has no
            // counterpart of: `scripts/compare_fused.sh` pairs it with PyTorch's W7.
            let n = if quick { 1 << 16 } else { 4 << 20 };
            let x = Tensor::randn(&[n], &mut rng);
            let fused = |x: &Tensor| nabla::fuse([x], |[x]| x.tanh() * x.sigmoid() + x).unwrap();
            report("w7_fused", "fwd", threads, bench(seconds, || drop(nabla::no_grad(|| fused(&x)))), None);
            let x = x.requires_grad_(true)?;
            let g = Tensor::ones(&[n]);
            report("w7_fused", "fwd_bwd", threads, bench(seconds, || drop(fused(&x).backward_with(&g).unwrap())), None);
        }
        "w1" => report("w1", "train_step", threads, bench(seconds, common::steps::w1(&mut rng)), None),
        "w4" => report("w4", "train_step", threads, bench(seconds, common::steps::w4(&mut rng)), None),
        "peak" => peak_meter(threads, seconds.min(1.0)),
        "gemm_shapes" => gemm_shapes(threads, seconds.min(1.0)),
        "w2" => report("w2", "train_step", threads, bench(seconds, common::steps::w2(&mut rng)), None),
        "w6" => {
            let (n, c, hw) = if quick { (2, 8, 8) } else { (16, 64, 32) };
            let flop = 2.0 * (n * c * hw * hw * c * 9) as f64;
            let x = Tensor::randn(&[n, c, hw, hw], &mut rng);
            let k = Tensor::randn(&[c, c, 3, 3], &mut rng) * 0.05;
            let pad1 = Conv2dConfig { padding: [1, 1], ..Default::default() };
            report("w6", "fwd", threads, bench(seconds, || drop(nabla::no_grad(|| x.conv2d(&k, None, pad1).unwrap()))), Some(flop));
            let (x, k) = (x.requires_grad_(true)?, k.requires_grad_(true)?);
            let g = Tensor::ones(&[n, c, hw, hw]);
            report(
                "w6",
                "fwd_bwd",
                threads,
                bench(seconds, || drop(x.conv2d(&k, None, pad1).unwrap().backward_with(&g).unwrap())),
                Some(3.0 * flop),
            );
        }
        "w3" => report("w3", "train_step", threads, bench(seconds, common::steps::w3(&mut rng)), None),
        // Issue 26's normalisation targets (scripts/norm_torch.py is PyTorch's side):
        // BatchNorm2d in training on 64×64×32×32, LayerNorm(512) on 64×128×512.
        "bn" | "ln" => {
            let shape: &[usize] = match (workload, quick) {
                ("bn", false) => &[64, 64, 32, 32],
                ("bn", true) => &[4, 8, 8, 8],
                (_, false) => &[64, 128, 512],
                (_, true) => &[4, 8, 64],
            };
            let layer: Box<dyn Module> =
                if workload == "bn" { Box::new(nn::BatchNorm2d::new(shape[1])) } else { Box::new(nn::LayerNorm::new(&shape[2..])) };
            let x = Tensor::randn(shape, &mut rng);
            report(workload, "fwd", threads, bench(seconds, || drop(nabla::no_grad(|| layer.forward(&x).unwrap()))), None);
            let x = x.requires_grad_(true)?;
            let g = Tensor::randn(shape, &mut rng);
            report(workload, "fwd_bwd", threads, bench(seconds, || drop(layer.forward(&x).unwrap().backward_with(&g).unwrap())), None);
        }
        other => eprintln!("workloads: unknown workload {other} (w1..w7, w7_fused, bn, ln, peak, gemm_shapes)"),
    }
    Ok(())
}

/// W1–W3 data-parallel (WORKLOADS.md, "Data-parallel variants"), under
/// `mpirun --bind-to none -np R workloads <w> <threads> ddp`: the global batch split evenly
/// over the R processes, gradients averaged every step, then SGD on every rank. Each step
/// is timed from a barrier to the end of the update; every rank runs the same fixed number
/// of steps (a time limit could end them at different steps and leave one waiting), and
/// rank 0 prints the median as variant `ddp<R>`.
#[cfg(feature = "mpi")]
fn ddp(workload: &str, threads: usize) -> nabla::Result<()> {
    use nabla::distributed::{self, DataParallel};
    use nabla::nn::functional::cross_entropy;
    let world = distributed::init()?;
    let ranks = world.size();
    let mut rng = nabla::rng(42);
    let (warmup, timed) = (5, 40);
    let mut times = Vec::with_capacity(timed);
    let mut timed_steps = |step: &mut dyn FnMut()| {
        for k in 0..warmup + timed {
            world.barrier();
            let start = Instant::now();
            step();
            if k >= warmup {
                times.push(start.elapsed());
            }
        }
    };
    match workload {
        "w1" | "w2" => {
            let (model, global) =
                if workload == "w1" { (common::steps::w1_model(&mut rng), 128) } else { (common::steps::w2_model(&mut rng), 64) };
            let ddp = DataParallel::new(model, &world)?;
            let shape: Vec<usize> = if workload == "w1" { vec![global / ranks, 784] } else { vec![global / ranks, 1, 28, 28] };
            let x = Tensor::randn(&shape, &mut nabla::rng(world.rank() as u64));
            let y = common::steps::labels(shape[0]);
            let mut opt = optim::Sgd::new(ddp.module().parameters(), 0.01);
            timed_steps(&mut || {
                let mut grads = cross_entropy(&ddp.module().forward(&x).unwrap(), &y).unwrap().backward().unwrap();
                ddp.average_gradients(&mut grads).unwrap();
                opt.step(&grads).unwrap();
            });
        }
        "w3" => {
            let ddp = DataParallel::new(common::steps::W3Model::new(&mut rng), &world)?;
            let (x, y) = common::steps::w3_batch(32 / ranks, &mut nabla::rng(world.rank() as u64));
            let mut opt = optim::Sgd::new(ddp.module().parameters(), 0.01);
            timed_steps(&mut || {
                let mut grads = ddp.module().loss(&x, &y).backward().unwrap();
                ddp.average_gradients(&mut grads).unwrap();
                // Clipping after averaging: the global gradient's norm, the same on every rank.
                optim::clip_grad_norm(&mut grads, 1.0).unwrap();
                opt.step(&grads).unwrap();
            });
        }
        "allreduce" => return allreduce(&world),
        other => {
            eprintln!("workloads: {other} has no data-parallel variant (w1, w2, w3, allreduce)");
            return Ok(());
        }
    }
    times.sort();
    if world.rank() == 0 {
        report(workload, &format!("ddp{ranks}"), threads, (times[times.len() / 2], times.len()), None);
    }
    Ok(())
}

/// The gradient all-reduce alone, 4 KB to 64 MB of f32: `DataParallel::average_gradients`
/// on a one-parameter module beside rsmpi's `all_reduce_into` (MPI_Allreduce) on buffers of
/// the same size. Rank 0 prints per size the medians, the algorithm bandwidth (bytes / time)
/// and the bus bandwidth (algorithm bandwidth × 2(p − 1)/p, NCCL's convention, comparable
/// across process counts).
#[cfg(feature = "mpi")]
fn allreduce(world: &nabla::distributed::World) -> nabla::Result<()> {
    use nabla::distributed::DataParallel;
    use nabla::distributed::mpi::collective::SystemOperation;
    use nabla::distributed::mpi::traits::CommunicatorCollectives;
    let p = world.size() as f64;
    let mut bytes = 4 << 10;
    while bytes <= 64 << 20 {
        let n = bytes / 4;
        let reps = (64 << 20) / bytes;
        let reps = reps.clamp(10, 200);
        let median = |f: &mut dyn FnMut()| {
            let mut times: Vec<f64> = (0..reps + 3)
                .map(|_| {
                    world.barrier();
                    let start = Instant::now();
                    f();
                    start.elapsed().as_secs_f64()
                })
                .skip(3)
                .collect();
            times.sort_by(f64::total_cmp);
            times[times.len() / 2]
        };
        let ddp = DataParallel::new(nn::PRelu::new(n, 0.25), world)?;
        let weight = ddp.module().weight.tensor();
        let (mut grads, ones) = (Gradients::new(), Tensor::ones(&[n]));
        let ours = median(&mut || {
            // A shared handle, as a backward pass's gradient would be: no copy timed here.
            grads.insert(&weight, ones.clone());
            ddp.average_gradients(&mut grads).unwrap();
        });
        let send = vec![1.0f32; n];
        let mut recv = vec![0.0f32; n];
        let raw = median(&mut || world.communicator().all_reduce_into(&send[..], &mut recv[..], SystemOperation::sum()));
        if world.rank() == 0 {
            let algbw = |t: f64| bytes as f64 / t / 1e9;
            println!(
                "ALLREDUCE ranks={p} bytes={bytes} nabla_ms={:.4} mpi_ms={:.4} nabla_busbw_gbs={:.2} mpi_busbw_gbs={:.2}",
                ours * 1e3,
                raw * 1e3,
                algbw(ours) * 2.0 * (p - 1.0) / p,
                algbw(raw) * 2.0 * (p - 1.0) / p
            );
        }
        bytes *= 4;
    }
    Ok(())
}

#[cfg(not(feature = "mpi"))]
fn ddp(_: &str, _: usize) -> nabla::Result<()> {
    eprintln!("workloads: the ddp variants need `--features mpi` and mpirun");
    std::process::exit(2);
}

/// The machine's f32 FMA peak (`workloads peak <threads>`): every thread runs chains of
/// independent fused multiply-adds in the widest vectors the CPU has, twelve chains so that
/// the FMA's latency (4 cycles on two ports) never stalls a port. The figure every GEMM
/// throughput is stated against.
mod peak {
    use std::hint::black_box;

    /// Chains of FMAs in flight: more than latency × ports.
    const CHAINS: usize = 12;

    /// The widest FMA this CPU runs and the f32 lanes of one.
    pub fn isa() -> (&'static str, usize) {
        #[cfg(target_arch = "x86_64")]
        {
            if std::is_x86_feature_detected!("avx512f") {
                return ("avx512", 16);
            }
            if std::is_x86_feature_detected!("avx2") && std::is_x86_feature_detected!("fma") {
                return ("avx2_fma", 8);
            }
        }
        ("scalar", 1)
    }

    /// Runs `rounds` rounds of `CHAINS` vector FMAs (`x = x·a + b` per chain, which stays
    /// finite) and returns a value the result depends on, so the loop is kept.
    pub fn run(rounds: usize) -> f32 {
        #[cfg(target_arch = "x86_64")]
        match isa().0 {
            // SAFETY: the CPU has the features each function is compiled for (isa()).
            "avx512" => return unsafe { avx512(rounds) },
            "avx2_fma" => return unsafe { avx2(rounds) },
            _ => {}
        }
        let (a, b) = (black_box(0.999_999_f32), black_box(1e-7_f32));
        let mut x = [0.0_f32; CHAINS];
        for _ in 0..rounds {
            for x in &mut x {
                *x = x.mul_add(a, b);
            }
        }
        x.iter().sum()
    }

    #[cfg(target_arch = "x86_64")]
    #[target_feature(enable = "avx512f")]
    unsafe fn avx512(rounds: usize) -> f32 {
        use std::arch::x86_64::*;
        let (a, b) = (_mm512_set1_ps(black_box(0.999_999)), _mm512_set1_ps(black_box(1e-7)));
        let mut x = [_mm512_setzero_ps(); CHAINS];
        for _ in 0..rounds {
            for x in &mut x {
                *x = _mm512_fmadd_ps(*x, a, b);
            }
        }
        x.iter().map(|&v| _mm512_reduce_add_ps(v)).sum()
    }

    #[cfg(target_arch = "x86_64")]
    #[target_feature(enable = "avx2,fma")]
    unsafe fn avx2(rounds: usize) -> f32 {
        use std::arch::x86_64::*;
        let (a, b) = (_mm256_set1_ps(black_box(0.999_999)), _mm256_set1_ps(black_box(1e-7)));
        let mut x = [_mm256_setzero_ps(); CHAINS];
        for _ in 0..rounds {
            for x in &mut x {
                *x = _mm256_fmadd_ps(*x, a, b);
            }
        }
        let mut lanes = [0.0_f32; 8];
        x.iter()
            .map(|&v| {
                // SAFETY: `lanes` holds the 8 floats the store writes.
                unsafe { _mm256_storeu_ps(lanes.as_mut_ptr(), v) };
                lanes.iter().sum::<f32>()
            })
            .sum()
    }

    /// The flops of one call of [`run`].
    pub fn flop(rounds: usize) -> f64 {
        (2 * CHAINS * isa().1 * rounds) as f64
    }
}

/// `workloads peak <threads>`: one block of FMAs per thread at once, timed as a whole, so
/// the figure is the machine's throughput with that many busy cores; `per_core_gflops` is
/// that over the threads.
fn peak_meter(threads: usize, seconds: f64) {
    use rayon::prelude::*;
    let rounds = 1 << 20;
    let (isa, lanes) = peak::isa();
    let timed = bench(seconds, || {
        let sum: f32 = (0..threads).into_par_iter().map(|_| peak::run(rounds)).sum();
        std::hint::black_box(sum);
    });
    let flop = peak::flop(rounds) * threads as f64;
    report("peak", &format!("fma_{isa}"), threads, timed, Some(flop));
    println!("peak: {isa} ({lanes} f32 lanes), {:.1} GFLOP/s per core", flop / timed.0.as_secs_f64() / 1e9 / threads as f64);
}

/// `workloads gemm_shapes <threads>`: the f32 products the workloads run, each timed
/// alone (`matmul`, operands transposed as the backward passes read them), in GFLOP/s per
/// core and as a fraction of the FMA peak measured in the same process.
fn gemm_shapes(threads: usize, seconds: f64) {
    use rayon::prelude::*;
    let rounds = 1 << 20;
    let (median, _) = bench(seconds, || {
        let sum: f32 = (0..threads).into_par_iter().map(|_| peak::run(rounds)).sum();
        std::hint::black_box(sum);
    });
    let peak = peak::flop(rounds) / median.as_secs_f64() / 1e9;
    println!("peak: {:.1} GFLOP/s per core ({})", peak, peak::isa().0);
    // (name, m, k, n, a transposed, b transposed): a (m×k) · b (k×n).
    let shapes = [
        ("w1 layer 1 forward", 128, 784, 512, false, true),
        ("w1 layer 1 weight grad", 512, 128, 784, true, false),
        ("w1 layer 2 forward", 128, 512, 256, false, true),
        ("w1 layer 2 input grad", 128, 256, 512, false, false),
        ("w3 input projection", 1120, 64, 1024, false, true),
        ("w3 output layer", 1120, 256, 100, false, true),
        // dz (4H × T·N) stored by rows, as the LSTM's backward keeps it, times the outputs.
        ("w3 recurrent weight grad", 1024, 1120, 256, false, false),
        ("w3 output layer weight grad", 100, 1120, 256, true, false),
        ("w3 input projection grad", 64, 1024, 1120, true, true),
        ("w5 1024^3", 1024, 1024, 1024, false, false),
        ("w6 conv as im2col, one sample", 64, 576, 1024, false, false),
        // The sides of `Ask` in src/array/kernel/gemm.rs: `x Wᵀ` with few rows is asked
        // for as given, through a scratch where the outputs are 1 KiB apart; with many
        // rows, transposed, after copying W by rows; W5's `a bᵀ` too.
        ("x Wt, 1000 outputs", 128, 1024, 1000, false, true),
        ("x Wt, 1024 outputs", 128, 1024, 1024, false, true),
        ("x Wt, 512 rows", 512, 1024, 1000, false, true),
        ("w5 a bt", 1024, 1024, 1024, false, true),
    ];
    let mut rng = nabla::rng(7);
    for (name, m, k, n, ta, tb) in shapes {
        let a = if ta { Tensor::randn(&[k, m], &mut rng).t() } else { Tensor::randn(&[m, k], &mut rng) };
        let b = if tb { Tensor::randn(&[n, k], &mut rng).t() } else { Tensor::randn(&[k, n], &mut rng) };
        let (median, _) = bench(seconds, || drop(nabla::no_grad(|| a.matmul(&b).unwrap())));
        let gflops = 2.0 * (m * k * n) as f64 / median.as_secs_f64() / 1e9 / threads as f64;
        println!(
            "GEMM {name:<32} {m:>5}x{k:>5}x{n:>5} threads={threads} median_ms={:.4} gflops_per_core={gflops:.1} of_peak={:.0}%",
            median.as_secs_f64() * 1e3,
            100.0 * gflops / peak
        );
    }
}
