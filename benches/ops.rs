//! Criterion benches of the reference workloads this crate can run so far (see
//! `../shared/bench/WORKLOADS.md` in the project, and `examples/workloads.rs` for the
//! PyTorch comparison): W1 (MLP training step), W2 (CNN training step), W4 (tiny MLP step),
//! W5 (GEMM), W6 (convolution), W7 (elementwise), the per-op overhead on tiny tensors, and
//! the matrix products inside W6's convolution in the layouts the crate uses, and W3's
//! LSTM layer with its per-step product, products split across threads, and cross-entropy
//! over W3's logits.
//!
//! `cargo bench --bench ops` runs them all; `cargo bench --bench ops -- w7` one group.

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
#[path = "../examples/common/steps.rs"]
mod steps;

use nabla::ops::Conv2dConfig;
use nabla::prelude::*;
use std::time::Duration;

fn w5_gemm(c: &mut Criterion) {
    let mut group = c.benchmark_group("w5_gemm");
    group.sample_size(20).measurement_time(Duration::from_secs(5));
    let n = 1024;
    let mut rng = nabla::rng(42);
    let a = Tensor::randn(&[n, n], &mut rng);
    let b = Tensor::randn(&[n, n], &mut rng);
    group.throughput(Throughput::Elements(2 * (n as u64).pow(3)));
    group.bench_function(BenchmarkId::new("fwd", n), |bench| bench.iter(|| nabla::no_grad(|| a.matmul(&b).unwrap())));
    let (a, b) = (a.requires_grad_(true).unwrap(), b.requires_grad_(true).unwrap());
    let g = Tensor::ones(&[n, n]);
    group.throughput(Throughput::Elements(6 * (n as u64).pow(3)));
    group.bench_function(BenchmarkId::new("fwd_bwd", n), |bench| bench.iter(|| a.matmul(&b).unwrap().backward_with(&g).unwrap()));
    group.finish();
}

fn w7_elementwise(c: &mut Criterion) {
    let mut group = c.benchmark_group("w7_elementwise");
    group.sample_size(30).measurement_time(Duration::from_secs(5));
    let n = 4 << 20;
    let x = Tensor::randn(&[n], &mut nabla::rng(42));
    let f = |x: &Tensor| &(&x.tanh() * &x.sigmoid()) + x;
    group.throughput(Throughput::Elements(n as u64));
    group.bench_function("fwd", |bench| bench.iter(|| nabla::no_grad(|| f(&x))));
    let x = x.requires_grad_(true).unwrap();
    let g = Tensor::ones(&[n]);
    group.bench_function("fwd_bwd", |bench| bench.iter(|| f(&x).backward_with(&g).unwrap()));
    group.finish();
}

fn per_op_overhead(c: &mut Criterion) {
    let mut group = c.benchmark_group("per_op_overhead");
    let a = Tensor::from_vec(vec![1.0, 2.0, 3.0, 4.0], &[4]).unwrap();
    let b = Tensor::from_vec(vec![0.5, 0.25, 0.125, 1.0], &[4]).unwrap();
    group.bench_function("add_4_no_grad", |bench| bench.iter(|| a.add(&b).unwrap()));
    let (ga, gb) = (a.clone().requires_grad_(true).unwrap(), b.clone().requires_grad_(true).unwrap());
    group.bench_function("add_4_recorded", |bench| bench.iter(|| ga.add(&gb).unwrap()));
    group.bench_function("add_4_fwd_bwd", |bench| bench.iter(|| ga.add(&gb).unwrap().sum().backward().unwrap()));
    group.finish();
}

fn w1_mlp_step(c: &mut Criterion) {
    let mut group = c.benchmark_group("w1_mlp_step");
    group.sample_size(50).measurement_time(Duration::from_secs(5));
    let mut step = steps::w1(&mut nabla::rng(42));
    group.bench_function("train_step", |bench| bench.iter(&mut step));
    group.finish();
}

fn w4_tiny_mlp_step(c: &mut Criterion) {
    let mut group = c.benchmark_group("w4_tiny_mlp_step");
    let mut step = steps::w4(&mut nabla::rng(42));
    group.bench_function("train_step", |bench| bench.iter(&mut step));
    group.finish();
}

fn w2_cnn_step(c: &mut Criterion) {
    let mut group = c.benchmark_group("w2_cnn_step");
    group.sample_size(10).measurement_time(Duration::from_secs(5));
    let mut step = steps::w2(&mut nabla::rng(42));
    group.bench_function("train_step", |bench| bench.iter(&mut step));
    group.finish();
}

fn w3_lstm_step(c: &mut Criterion) {
    let mut group = c.benchmark_group("w3_lstm_step");
    group.sample_size(10).measurement_time(Duration::from_secs(5));
    let mut step = steps::w3(&mut nabla::rng(42));
    group.bench_function("train_step", |bench| bench.iter(&mut step));
    group.finish();
}

fn w6_conv(c: &mut Criterion) {
    let mut group = c.benchmark_group("w6_conv");
    group.sample_size(10).measurement_time(Duration::from_secs(5));
    let mut rng = nabla::rng(42);
    let x = Tensor::randn(&[16, 64, 32, 32], &mut rng);
    let k = Tensor::randn(&[64, 64, 3, 3], &mut rng) * 0.05;
    let pad1 = Conv2dConfig { padding: [1, 1], ..Default::default() };
    group.bench_function("fwd", |bench| bench.iter(|| nabla::no_grad(|| x.conv2d(&k, None, pad1).unwrap())));
    let (x, k) = (x.requires_grad_(true).unwrap(), k.requires_grad_(true).unwrap());
    let g = Tensor::ones(&[16, 64, 32, 32]);
    group.bench_function("fwd_bwd", |bench| bench.iter(|| x.conv2d(&k, None, pad1).unwrap().backward_with(&g).unwrap()));
    group.finish();
}

/// The per-sample matrix products of W6's convolution (64 → 64 channels, 3 × 3, 32 × 32),
/// in the layouts `src/ops/conv/` gives the `gemm` crate: the forward `W cols` and, with
/// pixel-major rows, `R Wᵀ`; the input gradient `Wᵀ gy`; the weight gradient `cols gyᵀ`
/// (few channels), beside its transpose `gy colsᵀ`, and `gy R` (many channels), beside
/// `Rᵀ gyᵀ` (both operands read transposed). Throughput is in FLOP (2mnk), so criterion's elem/s read as FLOP/s.
fn conv_gemm_shapes(c: &mut Criterion) {
    let mut group = c.benchmark_group("conv_gemm_shapes");
    group.sample_size(30);
    let mut rng = nabla::rng(42);
    let (o, taps, pixels) = (64, 64 * 9, 32 * 32);
    let w = Tensor::randn(&[o, taps], &mut rng);
    let cols = Tensor::randn(&[taps, pixels], &mut rng);
    let gy = Tensor::randn(&[o, pixels], &mut rng);
    // The forward pass's pixel-major rows (one per output pixel), as conv2d builds them for
    // many channels: the product comes out pixel-major, `(pixels, o)`.
    let rows = Tensor::randn(&[pixels, taps], &mut rng);
    group.throughput(Throughput::Elements(2 * (o * taps * pixels) as u64));
    let products: [(&str, Tensor, Tensor); 7] = [
        ("forward_w_cols", w.clone(), cols.clone()),
        ("forward_rows_wt", rows.clone(), w.t()),
        ("input_grad_wt_gy", w.t(), gy.clone()),
        ("weight_grad_cols_gyt", cols.clone(), gy.t()),
        ("weight_grad_gy_colst", gy.clone(), cols.t()),
        ("weight_grad_gy_rows", gy.clone(), rows.clone()),
        ("weight_grad_rt_gyt", rows.t(), gy.t()),
    ];
    for (name, a, b) in products {
        group.bench_function(name, |bench| bench.iter(|| nabla::no_grad(|| a.matmul(&b).unwrap())));
    }
    group.finish();
}

/// Products split across threads (`gemm_split`): `nabla_*` is `matmul`, whose product cuts
/// the output's longer side into one single-threaded block per thread
/// (`src/array/kernel/gemm.rs`, `product`), `gemm_rayon_*` the gemm crate's own split
/// (`Parallelism::Rayon`) of the same row-major product, asked for as its transpose as nabla
/// asks (the gemm crate's kernels store columns of the result). Shapes: W3's recurrent weight
/// gradient `1024×1120 · 1120×256`, its input-projection gradient `64×1024 · 1024×1120`
/// (few rows: cut by columns), and W5's `1024³`. Run it with `RAYON_NUM_THREADS=2`.
fn gemm_split(c: &mut Criterion) {
    let mut group = c.benchmark_group("gemm_split");
    group.sample_size(20);
    let mut rng = nabla::rng(42);
    for (name, m, k, n) in [("w3_weight_grad", 1024, 1120, 256), ("w3_input_grad", 64, 1024, 1120), ("w5", 1024, 1024, 1024)] {
        let a = Tensor::randn(&[m, k], &mut rng);
        let b = Tensor::randn(&[k, n], &mut rng);
        group.throughput(Throughput::Elements(2 * (m * k * n) as u64));
        group.bench_function(format!("nabla_{name}"), |bench| bench.iter(|| nabla::no_grad(|| a.matmul(&b).unwrap())));
        let (av, bv) = (a.to_vec(), b.to_vec());
        let mut out = vec![0f32; m * n];
        let threads = gemm_common::Parallelism::Rayon(rayon::current_num_threads());
        group.bench_function(format!("gemm_rayon_{name}"), |bench| bench.iter(|| gemm_crate(m, k, n, &av, &bv, &mut out, threads)));
    }
    group.finish();
}

/// `out = a · b` for row-major buffers through the gemm crate alone, asked for as its
/// transpose as nabla asks (the gemm crate's kernels store columns of the result).
fn gemm_crate(m: usize, k: usize, n: usize, a: &[f32], b: &[f32], out: &mut [f32], threads: gemm_common::Parallelism) {
    assert_eq!((a.len(), b.len(), out.len()), (m * k, k * n, m * n));
    // SAFETY: row-major m×k, k×n and m×n buffers of those lengths (checked above), distinct,
    // described as outᵀ (n×m) = bᵀ (n×k) · aᵀ (k×m).
    unsafe {
        gemm_f32::gemm::f32::get_gemm_fn()(
            n,
            m,
            k,
            out.as_mut_ptr(),
            n as isize,
            1,
            false,
            b.as_ptr(),
            n as isize,
            1,
            a.as_ptr(),
            k as isize,
            1,
            0.0,
            1.0,
            false,
            false,
            false,
            threads,
        )
    }
}

/// Small products as a small MLP makes them: nabla's whole `matmul` beside the gemm
/// crate's call alone on the same buffers, so the difference is what nabla spends around
/// the product (the checks, the output's buffer, the tensor).
fn small_gemm(c: &mut Criterion) {
    let mut group = c.benchmark_group("small_gemm");
    let mut rng = nabla::rng(42);
    for (m, k, n) in [(8, 2, 16), (8, 16, 16), (16, 16, 16), (16, 16, 32), (32, 32, 32)] {
        let a = Tensor::randn(&[m, k], &mut rng);
        let b = Tensor::randn(&[k, n], &mut rng);
        let name = format!("{m}x{k}x{n}");
        group.bench_function(format!("nabla_{name}"), |bench| bench.iter(|| nabla::no_grad(|| a.matmul(&b).unwrap())));
        let (av, bv, mut out) = (a.to_vec(), b.to_vec(), vec![0f32; m * n]);
        let none = gemm_common::Parallelism::None;
        group.bench_function(format!("gemm_crate_{name}"), |bench| bench.iter(|| gemm_crate(m, k, n, &av, &bv, &mut out, none)));
    }
    group.finish();
}

/// W3's LSTM layer alone (`lstm_layer`: 64 → 256, 35 steps, batch 32, time-major), forward
/// and forward + backward, and its per-step product (`lstm_step_product`) `W_hh hᵀ` in the layout `src/ops/lstm.rs` uses beside
/// `h W_hhᵀ` (with `W_hh` transposed as a view, and transposed in memory). Run it with
/// `RAYON_NUM_THREADS=1` and `=2` to compare thread counts.
fn lstm(c: &mut Criterion) {
    let mut group = c.benchmark_group("lstm_step_product");
    group.sample_size(20);
    let mut rng = nabla::rng(42);
    let (g4, hs, batch) = (1024, 256, 32);
    let w = Tensor::randn(&[g4, hs], &mut rng);
    let w_t = Tensor::randn(&[hs, g4], &mut rng);
    let h_t = Tensor::randn(&[hs, batch], &mut rng);
    let h = Tensor::randn(&[batch, hs], &mut rng);
    group.throughput(Throughput::Elements(2 * (g4 * hs * batch) as u64));
    let products: [(&str, Tensor, Tensor); 3] =
        [("step_w_ht", w.clone(), h_t), ("step_h_wt_view", h.clone(), w.t()), ("step_h_wt", h, w_t)];
    for (name, a, b) in products {
        group.bench_function(name, |bench| bench.iter(|| nabla::no_grad(|| a.matmul(&b).unwrap())));
    }
    group.finish();
    let mut group = c.benchmark_group("lstm_layer");
    group.sample_size(20);
    let layer: nn::Lstm = nn::Lstm::new(64, hs, &mut rng);
    let x = Tensor::randn(&[35, batch, 64], &mut rng);
    let g = Tensor::randn(&[35, batch, hs], &mut rng);
    group.bench_function("layer_fwd", |bench| bench.iter(|| nabla::no_grad(|| layer.forward(&x).unwrap())));
    group.bench_function("layer_fwd_bwd", |bench| bench.iter(|| layer.forward(&x).unwrap().backward_with(&g).unwrap()));
    group.finish();
}

/// Cross-entropy over W3's logits (`cross_entropy`: 1120 rows of 100 classes), forward and
/// forward + backward: log-softmax's rows in `src/ops/softmax.rs`.
fn cross_entropy(c: &mut Criterion) {
    use rand::Rng;
    let mut group = c.benchmark_group("cross_entropy");
    let mut rng = nabla::rng(42);
    let x = Tensor::randn(&[1120, 100], &mut rng).requires_grad_(true).unwrap();
    let y = ndarray::Array1::from_shape_fn(1120, |_| rng.random_range(0..100usize)).into_dyn();
    group.bench_function("fwd", |bench| bench.iter(|| nabla::no_grad(|| nn::functional::cross_entropy(&x, &y).unwrap())));
    group.bench_function("fwd_bwd", |bench| bench.iter(|| nn::functional::cross_entropy(&x, &y).unwrap().backward().unwrap()));
    group.finish();
}

/// The fused normalisation passes of `src/ops/norm.rs` (`norm`): BatchNorm2d in training
/// on 64×64×32×32 and LayerNorm(512) on 64×128×512, forward and forward + backward, the
/// shapes `workloads bn`/`ln` and `scripts/compare_norm.sh` pair with PyTorch.
fn norm(c: &mut Criterion) {
    let mut group = c.benchmark_group("norm");
    group.sample_size(20);
    let mut rng = nabla::rng(42);
    let cases: [(&str, Vec<usize>, Box<dyn Module>); 2] = [
        ("batch_norm2d", vec![64, 64, 32, 32], Box::new(nn::BatchNorm2d::new(64))),
        ("layer_norm", vec![64, 128, 512], Box::new(nn::LayerNorm::new(&[512]))),
    ];
    for (name, shape, layer) in cases {
        let x = Tensor::randn(&shape, &mut rng).requires_grad_(true).unwrap();
        let g = Tensor::randn(&shape, &mut rng);
        group.throughput(Throughput::Elements(x.len() as u64));
        group.bench_function(format!("{name}_fwd"), |bench| bench.iter(|| nabla::no_grad(|| layer.forward(&x).unwrap())));
        group.bench_function(format!("{name}_fwd_bwd"), |bench| bench.iter(|| layer.forward(&x).unwrap().backward_with(&g).unwrap()));
    }
    group.finish();
}

criterion_group!(
    benches,
    norm,
    w1_mlp_step,
    w2_cnn_step,
    w3_lstm_step,
    w4_tiny_mlp_step,
    w5_gemm,
    w6_conv,
    w7_elementwise,
    per_op_overhead,
    conv_gemm_shapes,
    lstm,
    gemm_split,
    small_gemm,
    cross_entropy
);
criterion_main!(benches);
