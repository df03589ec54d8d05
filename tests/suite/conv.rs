//! Convolution and pooling: finite-difference checks (first and second order) and the
//! course's properties.

use nabla::autograd::{GradcheckOptions, gradcheck, gradgradcheck};
use nabla::ops::{Conv1dConfig, Conv2dConfig, Pool1dConfig, Pool2dConfig, receptive_field};
use nabla::prelude::*;

fn randn(shape: &[usize], seed: u64) -> Tensor<f64> {
    Tensor::<f64>::randn(shape, &mut nabla::rng(seed))
}

fn check(name: &str, f: fn(&[Tensor<f64>]) -> nabla::Result<Tensor<f64>>, inputs: &[Tensor<f64>], second_order: bool) {
    let options = GradcheckOptions::default();
    gradcheck(f, inputs, &options).unwrap_or_else(|e| panic!("{name}: first order: {e}"));
    if second_order {
        gradgradcheck(f, inputs, &options).unwrap_or_else(|e| panic!("{name}: second order: {e}"));
    }
}

#[test]
fn convolutions_match_finite_differences_to_second_order() {
    check(
        "conv2d stride 2, padding 1, dilation 2, groups 2",
        |x| x[0].conv2d(&x[1], Some(&x[2]), Conv2dConfig { stride: [2, 1], padding: [1, 2], dilation: [2, 1], groups: 2 }),
        &[randn(&[2, 4, 7, 6], 1), randn(&[6, 2, 3, 2], 2), randn(&[6], 3)],
        true,
    );
    // Stride 1 with 16 output channels per group: the input gradient runs as a transposed
    // convolution (a flipped kernel, through pixel-major rows).
    check(
        "conv2d stride 1, 16 out channels per group, padding (1, 0), dilation (2, 1), groups 2",
        |x| x[0].conv2d(&x[1], None, Conv2dConfig { stride: [1, 1], padding: [1, 0], dilation: [2, 1], groups: 2 }),
        &[randn(&[2, 4, 6, 5], 12), randn(&[32, 2, 3, 2], 13)],
        true,
    );
    check(
        "conv1d",
        |x| x[0].conv1d(&x[1], None, Conv1dConfig { stride: 2, padding: 1, dilation: 2, groups: 1 }),
        &[randn(&[2, 3, 9], 4), randn(&[2, 3, 3], 5)],
        true,
    );
}

#[test]
fn poolings_match_finite_differences() {
    // Distinct values keep max pooling away from ties; positive ones suit Lp pooling.
    let x = Tensor::<f64>::uniform(&[2, 2, 6, 5], 0.5, 2.0, &mut nabla::rng(6));
    check(
        "max_pool2d",
        |x| x[0].max_pool2d(Pool2dConfig { kernel_size: [3, 2], stride: [2, 1], padding: [1, 1], dilation: [1, 2], ceil_mode: false }),
        std::slice::from_ref(&x),
        false,
    );
    check(
        "avg_pool2d",
        |x| {
            x[0].avg_pool2d(
                Pool2dConfig { kernel_size: [3, 2], stride: [2, 1], padding: [1, 1], dilation: [1, 1], ceil_mode: true },
                false,
                None,
            )
        },
        std::slice::from_ref(&x),
        true,
    );
    check("lp_pool2d", |x| x[0].lp_pool2d(3.0, Pool2dConfig::new(2)), std::slice::from_ref(&x), true);
    check(
        "lse_pool2d",
        |x| x[0].lse_pool2d(2.5, Pool2dConfig { kernel_size: [3, 2], stride: [2, 1], padding: [0, 0], dilation: [1, 1], ceil_mode: false }),
        std::slice::from_ref(&x),
        true,
    );
    check(
        "max_pool1d",
        |x| x[0].max_pool1d(Pool1dConfig { kernel_size: 3, stride: 2, padding: 1, dilation: 1, ceil_mode: true }),
        &[x.reshape(&[2, 4, 15]).unwrap()],
        false,
    );
    // Adaptive windows of unequal sizes that overlap (5 rows into 3, 6 columns into 4).
    check("adaptive_avg_pool2d", |x| x[0].adaptive_avg_pool2d([3, 4]), std::slice::from_ref(&x), true);
    check("adaptive_max_pool2d", |x| Ok(x[0].adaptive_max_pool2d([4, 3])?.0), std::slice::from_ref(&x), false);
    let line = x.reshape(&[2, 4, 15]).unwrap();
    check("adaptive_avg_pool1d", |x| x[0].adaptive_avg_pool1d(4), std::slice::from_ref(&line), true);
    check("adaptive_max_pool1d", |x| Ok(x[0].adaptive_max_pool1d(6)?.0), std::slice::from_ref(&line), false);
}

#[test]
fn padding_modes_match_finite_differences_to_second_order() {
    use nabla::nn::functional::{PadMode, pad};
    for mode in [PadMode::Reflect, PadMode::Replicate, PadMode::Circular, PadMode::Constant(0.5)] {
        let x = randn(&[1, 2, 4, 5], 12);
        let f = match mode {
            PadMode::Reflect => |x: &[Tensor<f64>]| pad(&x[0], &[2, 1, 3, 0], PadMode::Reflect)?.mul(&x[0].pow(2.0).sum()),
            PadMode::Replicate => |x: &[Tensor<f64>]| pad(&x[0], &[2, 1, 3, 0], PadMode::Replicate)?.mul(&x[0].pow(2.0).sum()),
            PadMode::Circular => |x: &[Tensor<f64>]| pad(&x[0], &[2, 1, 3, 0], PadMode::Circular)?.mul(&x[0].pow(2.0).sum()),
            _ => |x: &[Tensor<f64>]| pad(&x[0], &[2, 1, 3, 0], PadMode::Constant(0.5))?.mul(&x[0].pow(2.0).sum()),
        };
        check(&format!("pad {mode:?}"), f, &[x], true);
    }
    // A circular convolution with "same" padding (odd total: one more on the right).
    let conv = |x: &[Tensor<f64>]| {
        let cfg = Conv2dConfig { dilation: [1, 2], ..Default::default() };
        let padded = nabla::nn::functional::pad(&x[0], &[2, 2, 0, 1], nabla::nn::functional::PadMode::Circular)?;
        padded.conv2d(&x[1], None, cfg)
    };
    check("circular conv2d", conv, &[randn(&[1, 2, 4, 5], 13), randn(&[3, 2, 2, 3], 14)], true);
}

/// Padding refuses what PyTorch refuses, by name.
#[test]
fn padding_refuses_impossible_pads() {
    use nabla::nn::functional::{PadMode, pad};
    let x = randn(&[1, 3], 0);
    assert!(
        pad(&x, &[3, 0], PadMode::Reflect).unwrap_err().to_string().starts_with("pad: reflect padding (3, 0) must be below the size 3")
    );
    assert!(pad(&x, &[0, 4], PadMode::Circular).is_err());
    assert!(pad(&x, &[1], PadMode::Zeros).is_err());
    assert!(pad(&x, &[1, 1, 1, 1, 1, 1], PadMode::Zeros).is_err());
    let conv = nabla::nn::Conv1d::<f64>::new(1, 1, 3, Conv1dConfig { stride: 2, ..Default::default() }, true, &mut nabla::rng(0)).unwrap();
    assert!(conv.with_same_padding().err().expect("refused").to_string().contains("strided"));
}

#[test]
fn convolution_is_equivariant_to_translation() {
    // Shifting the input by 2 pixels shifts the output by 2, away from the borders.
    let x = randn(&[1, 2, 12, 12], 10);
    let w = randn(&[3, 2, 3, 3], 11);
    let shifted = Tensor::cat(&[Tensor::<f64>::zeros(&[1, 2, 12, 2]), x.narrow(3, 0, 10).unwrap()], 3).unwrap();
    let y = x.conv2d(&w, None, Conv2dConfig::default()).unwrap();
    let y_shifted = shifted.conv2d(&w, None, Conv2dConfig::default()).unwrap();
    let a = y.narrow(3, 0, 6).unwrap().to_vec();
    let b = y_shifted.narrow(3, 2, 6).unwrap().to_vec();
    for (p, q) in a.iter().zip(&b) {
        assert!((p - q).abs() < 1e-12);
    }
}

#[test]
fn max_pooling_is_locally_invariant_to_small_shifts() {
    // A single bright pixel moved within its 2x2 window leaves the pooled map unchanged.
    let mut a = vec![0.0; 16];
    let mut b = vec![0.0; 16];
    a[5] = 1.0; // (1, 1)
    b[4] = 1.0; // (1, 0): same 2x2 window
    let pool = |v: Vec<f64>| Tensor::<f64>::from_vec(v, &[1, 1, 4, 4]).unwrap().max_pool2d(Pool2dConfig::new(2)).unwrap().to_vec();
    assert_eq!(pool(a), pool(b));
}

#[test]
fn lse_pooling_tends_to_max_avg_and_min() {
    let x = Tensor::<f64>::uniform(&[1, 1, 4, 4], -1.0, 1.0, &mut nabla::rng(12));
    let cfg = Pool2dConfig::new(2);
    let gap = |a: &Tensor<f64>, b: &Tensor<f64>| a.sub(b).unwrap().abs().amax().item().unwrap();
    let max = x.max_pool2d(cfg).unwrap();
    let avg = x.avg_pool2d(cfg, true, None).unwrap();
    let min = x.neg().max_pool2d(cfg).unwrap().neg();
    // The gap to max pooling is at most ln(4)/β, so it shrinks like 1/β.
    assert!(gap(&x.lse_pool2d(1e3, cfg).unwrap(), &max) <= 4f64.ln() / 1e3 + 1e-12);
    assert!(gap(&x.lse_pool2d(1e-6, cfg).unwrap(), &avg) < 1e-6);
    assert!(gap(&x.lse_pool2d(-1e3, cfg).unwrap(), &min) <= 4f64.ln() / 1e3 + 1e-12);
}

#[test]
fn a_1x1_convolution_is_a_linear_layer_over_channels() {
    let x = randn(&[2, 3, 4, 5], 13);
    let w = randn(&[6, 3], 14);
    let b = randn(&[6], 15);
    let conv = x.conv2d(&w.reshape(&[6, 3, 1, 1]).unwrap(), Some(&b), Conv2dConfig::default()).unwrap();
    let linear = x.permute(&[0, 2, 3, 1]).unwrap().linear(&w, Some(&b)).unwrap().permute(&[0, 3, 1, 2]).unwrap();
    assert!(conv.sub(&linear).unwrap().abs().amax().item().unwrap() < 1e-12);
}

#[test]
fn receptive_field_matches_which_outputs_move() {
    // conv 3 (dilation 2), max pool 2 (stride 2), conv 3, along one dim.
    let layers = [(3, 1, 2), (2, 2, 1), (3, 1, 1)];
    let field = receptive_field(&layers);
    assert_eq!(field, 1 + 2 * 2 + 1 + 2 * 2);
    let forward = |x: &Tensor<f64>| {
        let y = x.conv1d(&Tensor::<f64>::ones(&[1, 1, 3]), None, Conv1dConfig { dilation: 2, ..Default::default() }).unwrap();
        let y = y.max_pool1d(Pool1dConfig::new(2)).unwrap();
        y.conv1d(&Tensor::<f64>::ones(&[1, 1, 3]), None, Conv1dConfig::default()).unwrap()
    };
    // Which inputs does output 0 depend on? The gradient says: exactly the receptive field
    // (with positive, distinct inputs every position of the field reaches the max).
    let x = Tensor::<f64>::from_vec((0..30).map(|i| 1.0 + (i as f64 * 0.37).sin().abs()).collect(), &[1, 1, 30])
        .unwrap()
        .requires_grad_(true)
        .unwrap();
    let y = forward(&x);
    let mut cotangent = vec![0.0; y.len()];
    cotangent[0] = 1.0;
    let g = y.backward_with(&Tensor::<f64>::from_vec(cotangent, y.shape()).unwrap()).unwrap();
    let reached: Vec<usize> = g.get(&x).unwrap().to_vec().iter().enumerate().filter(|(_, v)| **v != 0.0).map(|(i, _)| i).collect();
    let span = reached.last().unwrap() - reached.first().unwrap() + 1;
    assert!(span <= field, "output 0 depends on inputs {reached:?}, beyond the receptive field {field}");
    // Perturbing an input just outside the field leaves output 0 unchanged.
    let mut moved = x.to_vec();
    moved[field] += 10.0;
    let y2 = forward(&Tensor::<f64>::from_vec(moved, &[1, 1, 30]).unwrap());
    assert_eq!(y2.to_vec()[0], y.to_vec()[0]);
}

#[test]
fn conv_errors_name_the_op_and_values() {
    let x = Tensor::zeros(&[1, 4, 5, 5]);
    let err = x.conv2d(&Tensor::zeros(&[2, 3, 3, 3]), None, Conv2dConfig::default()).unwrap_err();
    assert_eq!(err.to_string(), "conv2d: weight [2, 3, 3, 3] expects 3 input channels, the input [1, 4, 5, 5] has 4");
    let err = x.conv2d(&Tensor::zeros(&[2, 4, 7, 7]), None, Conv2dConfig::default()).unwrap_err();
    assert_eq!(err.to_string(), "conv2d: kernel [7, 7] with dilation [1, 1] does not fit the padded input [5, 5] (padding [0, 0])");
    let err = x.conv2d(&Tensor::zeros(&[3, 2, 3, 3]), None, Conv2dConfig { groups: 2, ..Default::default() }).unwrap_err();
    assert_eq!(err.to_string(), "conv2d: groups 2 must divide in channels 4 and out channels 3");
    let err = x
        .max_pool2d(Pool2dConfig { kernel_size: [2, 2], stride: [2, 2], padding: [2, 2], dilation: [1, 1], ceil_mode: false })
        .unwrap_err();
    assert_eq!(err.to_string(), "max_pool2d: padding [2, 2] should be at most half of the kernel [2, 2]");
}

#[test]
fn max_pooling_sends_the_gradient_where_pytorch_points() {
    // Indices from torch.nn.functional.max_pool2d(..., return_indices=True), PyTorch 2.15:
    // ties go to the first maximum, NaNs to the last NaN (a tap replaces the best if larger
    // or NaN). The first three have no padding (the dense scan), the last two do.
    let nan = f64::NAN;
    let dense = Pool2dConfig::new(2);
    let padded = Pool2dConfig { kernel_size: [1, 4], stride: [1, 4], padding: [0, 1], dilation: [1, 1], ceil_mode: false };
    type Case<'a> = (&'a [f64], [usize; 4], Pool2dConfig, &'a [usize]);
    let cases: [Case; 6] = [
        (&[nan, nan, 1.0, 2.0], [1, 1, 2, 2], dense, &[1]),
        (&[3.0, 1.0, 3.0, 3.0], [1, 1, 2, 2], dense, &[0]),
        (&[1.0, nan, 5.0, nan], [1, 1, 2, 2], dense, &[3]),
        (&[0.0, 7.0, 7.0, 0.0, 7.0, 7.0, 1.0, 2.0], [1, 1, 2, 4], dense, &[1, 2]),
        (&[nan, 1.0, nan, 2.0], [1, 1, 1, 4], padded, &[2]),
        (&[3.0, 1.0, 3.0, 3.0], [1, 1, 1, 4], padded, &[0]),
    ];
    for (values, shape, cfg, indices) in cases {
        let x = Tensor::<f64>::from_vec(values.to_vec(), &shape).unwrap().requires_grad_(true).unwrap();
        let g = x.max_pool2d(cfg).unwrap().sum().backward().unwrap();
        let expect: Vec<f64> = (0..values.len()).map(|i| if indices.contains(&i) { 1.0 } else { 0.0 }).collect();
        assert_eq!(g.get(&x).unwrap().to_vec(), expect, "{values:?} {cfg:?}");
    }
}

#[test]
fn a_convolution_followed_by_relu_keeps_no_copy_of_its_output() {
    // W2's memory rests on this: ReLU reads its output, so the graph keeps the ReLU's
    // output (which max pooling reads the shape of) and only the convolution's shape.
    let mut rng = nabla::rng(3);
    let x = Tensor::<f64>::randn(&[2, 1, 6, 6], &mut rng);
    let w = Tensor::<f64>::randn(&[3, 1, 3, 3], &mut rng).requires_grad_(true).unwrap();
    let pad1 = Conv2dConfig { padding: [1, 1], ..Default::default() };
    let y = x.conv2d(&w, None, pad1).unwrap().relu().max_pool2d(Pool2dConfig::new(2)).unwrap();
    let (mut node, mut relu) = (nabla::autograd::GraphNode::from(&y), None);
    while let Some(input) = node.inputs().into_iter().next() {
        if input.op_name() == Some("relu") {
            relu = Some(input);
            break;
        }
        node = input;
    }
    let relu = relu.expect("relu in the graph");
    assert!(relu.tensor().is_some(), "relu's output is kept for its own rule");
    let conv = &relu.inputs()[0];
    assert_eq!((conv.op_name(), conv.shape(), conv.tensor().is_none()), (Some("conv2d"), &[2, 3, 6, 6][..], true));
    // Both of the convolution's inputs stay: its rule reads them.
    assert!(conv.inputs().iter().all(|input| input.tensor().is_some()));
}

/// `f32` convolutions against `f64` ones, forward and both gradients. On x86-64 with AVX2
/// and FMA (and no AVX-512), `f32` with stride 1 along the width and output rows of 8 to 15,
/// 16, 24, 31 or more pixels runs the direct kernel (`ThinLhs::shifted`) for the forward
/// pass and for the input gradient (a transposed convolution), which `f64` never takes:
/// widths that end in a masked tail, channel counts around its six-row panels, padding,
/// dilation, a height stride, groups, one sample (its channels split across threads), and
/// three shapes that take the other paths.
#[test]
fn f32_convolutions_agree_with_f64_on_every_tail_of_the_direct_kernel() {
    let cases: &[([usize; 4], [usize; 4], Conv2dConfig)] = &[
        ([2, 3, 4, 31], [7, 3, 3, 3], Conv2dConfig { padding: [1, 1], ..Default::default() }),
        ([2, 4, 5, 16], [14, 2, 2, 3], Conv2dConfig { stride: [2, 1], padding: [0, 2], dilation: [1, 2], groups: 2 }),
        ([1, 16, 6, 15], [32, 16, 3, 3], Conv2dConfig { padding: [1, 1], ..Default::default() }),
        ([3, 2, 3, 44], [6, 2, 1, 5], Conv2dConfig { dilation: [1, 3], ..Default::default() }),
        ([2, 32, 4, 8], [32, 16, 3, 3], Conv2dConfig { padding: [2, 1], dilation: [2, 1], groups: 2, ..Default::default() }),
        ([2, 8, 5, 9], [6, 8, 3, 2], Conv2dConfig { stride: [2, 2], padding: [1, 1], dilation: [1, 2], groups: 1 }),
        ([2, 3, 4, 9], [7, 3, 3, 3], Conv2dConfig { padding: [1, 1], ..Default::default() }),
        ([1, 1, 6, 1], [5, 1, 3, 1], Conv2dConfig { padding: [1, 0], ..Default::default() }),
    ];
    for (seed, &(x_shape, w_shape, cfg)) in cases.iter().enumerate() {
        let seed = seed as u64 * 3;
        let (x, w) = (randn(&x_shape, seed).requires_grad_(true).unwrap(), randn(&w_shape, seed + 1).requires_grad_(true).unwrap());
        let (x32, w32) = (x.detach().cast::<f32>().requires_grad_(true).unwrap(), w.detach().cast::<f32>().requires_grad_(true).unwrap());
        let y = x.conv2d(&w, None, cfg).unwrap();
        let y32 = x32.conv2d(&w32, None, cfg).unwrap();
        let gy = randn(y.shape(), seed + 2);
        let (g, g32) = (y.backward_with(&gy).unwrap(), y32.backward_with(&gy.cast()).unwrap());
        let pairs = [
            ("output", y.to_vec(), y32.to_vec()),
            ("input gradient", g.get(&x).unwrap().to_vec(), g32.get(&x32).unwrap().to_vec()),
            ("weight gradient", g.get(&w).unwrap().to_vec(), g32.get(&w32).unwrap().to_vec()),
        ];
        for (what, exact, single) in pairs {
            assert_eq!(exact.len(), single.len());
            for (i, (&e, &s)) in exact.iter().zip(&single).enumerate() {
                assert!(
                    (e - f64::from(s)).abs() <= 1e-4 * (1.0 + e.abs()),
                    "case {x_shape:?} {w_shape:?} {cfg:?}: {what}[{i}] {s} against {e}"
                );
            }
        }
    }
}
