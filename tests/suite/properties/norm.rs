//! Normalisation laws: what LayerNorm and BatchNorm produce, whatever the input; GELU's
//! tanh approximation within its known distance of the exact one.

use super::*;
use nabla::nn::{Buffer, Module, functional as F};

proptest! {
    #![proptest_config(config())]

    /// Each row of LayerNorm's output (no affine) has mean 0 and biased variance
    /// `σ²/(σ² + ε)`, which is 1 up to ε; rows of a constant become 0.
    #[test]
    fn layer_norm_rows_have_zero_mean_and_unit_variance(rows in 1usize..6, width in 1usize..40, scale in prop_oneof![Just(1e-2), Just(1.0), Just(1e3)], offset in -50.0f64..50.0, seed in 0u64..1000) {
        let x = values(&[rows, width], seed).mul_scalar(scale).add_scalar(offset);
        let eps = 1e-5;
        let y = F::layer_norm(&x, &[width], None, None, eps).unwrap().to_vec();
        for (r, row) in y.chunks(width).enumerate() {
            let xs = &x.to_vec()[r * width..(r + 1) * width];
            let xm = xs.iter().sum::<f64>() / width as f64;
            let var = xs.iter().map(|v| (v - xm) * (v - xm)).sum::<f64>() / width as f64;
            let mean = row.iter().sum::<f64>() / width as f64;
            let second = row.iter().map(|v| (v - mean) * (v - mean)).sum::<f64>() / width as f64;
            prop_assert!(mean.abs() < 1e-9, "row {} mean {}", r, mean);
            prop_assert!((second - var / (var + eps)).abs() < 1e-9, "row {} variance {} for σ² {}", r, second, var);
        }
    }

    /// BatchNorm in evaluation is the affine map `x·(w/√(v + ε)) + (b − m·w/√(v + ε))` per
    /// channel, for any running statistics, and leaves them as they were.
    #[test]
    fn batch_norm_in_eval_is_an_affine_map(n in 1usize..4, c in 1usize..4, l in 1usize..5, seed in 0u64..1000) {
        let bn = nn::BatchNorm1d::<f64>::new(c);
        let stats = |s: u64| values(&[c], seed + s);
        let (m, v) = (stats(1), stats(2).abs().add_scalar(0.1));
        bn.running_mean.as_ref().unwrap().set(m.to_ndarray()).unwrap();
        bn.running_var.as_ref().unwrap().set(v.to_ndarray()).unwrap();
        let (w, b) = (stats(3), stats(4));
        bn.weight.as_ref().unwrap().set(w.to_ndarray()).unwrap();
        bn.bias.as_ref().unwrap().set(b.to_ndarray()).unwrap();
        bn.set_training(false);
        let x = values(&[n, c, l], seed);
        let y = bn.forward(&x).unwrap().to_vec();
        let (xv, mv, vv, wv, bv) = (x.to_vec(), m.to_vec(), v.to_vec(), w.to_vec(), b.to_vec());
        for (i, &yi) in y.iter().enumerate() {
            let k = (i / l) % c;
            let scale = wv[k] / (vv[k] + 1e-5).sqrt();
            let expected = xv[i] * scale + (bv[k] - mv[k] * scale);
            prop_assert!((yi - expected).abs() < 1e-12, "element {}: {} vs {}", i, yi, expected);
        }
        prop_assert_eq!(bn.running_mean.as_ref().unwrap().tensor().to_vec(), mv);
        prop_assert_eq!(bn.num_batches_tracked.as_ref().unwrap().tensor().to_vec(), vec![0.0]);
    }

    /// `|gelu_tanh(x) − gelu(x)| ≤ 4.74e-4` everywhere (the largest gap, near |x| = 2.7,
    /// is 4.7324e-4 by a dense f64 scan of [-10, 10] in PyTorch).
    #[test]
    fn gelu_tanh_is_within_its_known_error_of_exact_gelu(x in -12.0f64..12.0) {
        let t = Tensor::<f64>::scalar(x);
        let exact = F::gelu(&t, F::GeluApproximate::None).item().unwrap();
        let approx = F::gelu(&t, F::GeluApproximate::Tanh).item().unwrap();
        prop_assert!((exact - approx).abs() <= 4.74e-4, "x {}: {} vs {}", x, approx, exact);
    }
}

/// The cumulative average (momentum `None`) of three batches equals the plain mean of
/// their statistics, and the buffers travel through a state_dict under PyTorch's names.
#[test]
fn batch_norm_cumulative_average_and_state_dict() {
    let options = nn::BatchNormOptions { momentum: None, ..Default::default() };
    let bn = nn::BatchNorm1d::<f64>::with_options(2, options);
    let batches: Vec<Tensor<f64>> = (0..3).map(|s| values(&[5, 2], 10 + s)).collect();
    for x in &batches {
        bn.forward(x).unwrap();
    }
    let mut mean = [0.0; 2];
    let mut var = [0.0; 2];
    for x in &batches {
        let v = x.to_vec();
        for k in 0..2 {
            let col: Vec<f64> = v.iter().skip(k).step_by(2).copied().collect();
            let m = col.iter().sum::<f64>() / 5.0;
            mean[k] += m / 3.0;
            var[k] += col.iter().map(|x| (x - m) * (x - m)).sum::<f64>() / 4.0 / 3.0;
        }
    }
    let close = |a: &[f64], b: &[f64]| a.iter().zip(b).all(|(a, b)| (a - b).abs() < 1e-12);
    // The first step's factor is 1, so the initial zeros and ones do not count.
    assert!(close(&bn.running_mean.as_ref().unwrap().tensor().to_vec(), &mean));
    assert!(close(&bn.running_var.as_ref().unwrap().tensor().to_vec(), &var));
    assert_eq!(bn.num_batches_tracked.as_ref().unwrap().tensor().to_vec(), vec![3.0]);
    let names: Vec<String> = bn.named_buffers().into_iter().map(|(n, _)| n).collect();
    assert_eq!(names, ["running_mean", "running_var", "num_batches_tracked"]);

    let path = std::env::temp_dir().join(format!("nabla-bn-{}.safetensors", std::process::id()));
    bn.save(&path).unwrap();
    let fresh = nn::BatchNorm1d::<f64>::with_options(2, options);
    fresh.load(&path).unwrap();
    std::fs::remove_file(&path).unwrap();
    assert_eq!(fresh.running_var.as_ref().unwrap().tensor().to_vec(), bn.running_var.as_ref().unwrap().tensor().to_vec());
    assert_eq!(fresh.num_batches_tracked.as_ref().unwrap().tensor().to_vec(), vec![3.0]);
}

/// Wrong ranks and single values per channel are refused by name, and change nothing.
#[test]
fn batch_norm_refuses_bad_input() {
    let bn = nn::BatchNorm2d::<f64>::new(3);
    assert_err_names(bn.forward(&values(&[2, 3, 4], 0)), "BatchNorm2d");
    assert_err_names(bn.forward(&values(&[1, 3, 1, 1], 0)), "BatchNorm2d");
    assert_eq!(bn.num_batches_tracked.as_ref().unwrap().tensor().to_vec(), vec![0.0], "a refused batch is not counted");
    assert_err_names(bn.forward(&values(&[2, 4, 2, 2], 0)), "BatchNorm2d");
    assert_err_names(F::layer_norm(&values(&[2, 3], 0), &[2], None, None, 1e-5), "layer_norm");
    assert_err_names(nn::GroupNorm::<f64>::new(4, 6).map(|_| ()), "GroupNorm");
    let buffer = Buffer::new(Tensor::<f64>::zeros(&[3]));
    assert_err_names(F::batch_norm(&values(&[2, 3], 0), Some(&buffer), None, None, None, false, 0.1, 1e-5), "batch_norm");
}
