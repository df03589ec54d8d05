//! Convolutions and pooling against direct loops.

use super::*;
use nabla::ops::{Conv1dConfig, Conv2dConfig, Pool1dConfig, Pool2dConfig};
use ndarray::{ArrayD, IxDyn};

proptest! {
    #![proptest_config(config())]

    #[test]
    fn conv2d_matches_a_direct_loop(
        (n, groups, cin_per, cout_per) in (1usize..3, 1usize..3, 1usize..3, 1usize..3),
        (h, w, kh, kw) in (0usize..7, 0usize..7, 1usize..4, 1usize..4),
        (stride, padding, dilation) in ([0usize..3, 0usize..3], [0usize..3, 0usize..3], [0usize..3, 0usize..3]),
        config_groups in 0usize..4,
        bias in any::<bool>(),
        seed in 0u64..1000,
    ) {
        let (cin, cout) = (groups * cin_per, groups * cout_per);
        let x = values(&[n, cin, h, w], seed);
        let wt = values(&[cout, cin_per, kh, kw], seed + 1);
        let b = values(&[cout], seed + 2);
        let cfg = Conv2dConfig { stride, padding, dilation, groups: config_groups };
        let result = x.conv2d(&wt, bias.then_some(&b), cfg);
        let out = |i: usize| nabla::ops::conv_output_size([h, w][i], [kh, kw][i], stride[i], padding[i], dilation[i]);
        let valid = config_groups == groups && stride.iter().all(|&s| s > 0) && dilation.iter().all(|&d| d > 0);
        match (valid, out(0), out(1)) {
            (true, Some(oh), Some(ow)) => {
                let (xa, wa, ba) = (arr(&x), arr(&wt), arr(&b));
                let expect = ArrayD::from_shape_fn(IxDyn(&[n, cout, oh, ow]), |i| {
                    let (b_, o, y, z) = (i[0], i[1], i[2], i[3]);
                    let g = o / cout_per;
                    let mut s = if bias { ba[[o]] } else { 0.0 };
                    for c in 0..cin_per {
                        for p in 0..kh {
                            for q in 0..kw {
                                let at = (tap_input(y, p, stride[0], padding[0], dilation[0], h), tap_input(z, q, stride[1], padding[1], dilation[1], w));
                                if let (Some(yy), Some(zz)) = at {
                                    s += xa[[b_, g * cin_per + c, yy, zz]] * wa[[o, c, p, q]];
                                }
                            }
                        }
                    }
                    s
                });
                prop_assert!(close(&arr(&result.unwrap()), &expect, 1e-12));
            }
            _ => assert_err_names(result, "conv2d"),
        }
    }

    #[test]
    fn conv2d_gradients_match_a_direct_loop(
        (n, groups, cin_per, cout_per) in (1usize..3, 1usize..3, 1usize..3, 1usize..3),
        (h, w, kh, kw) in (0usize..6, 0usize..6, 0usize..4, 0usize..4),
        (stride, padding, dilation) in ([1usize..3, 1usize..3], [0usize..3, 0usize..3], [1usize..3, 1usize..3]),
        seed in 0u64..1000,
    ) {
        // Zero-sized kernels included (the fuzzer found the stride-1 input gradient
        // underflowing on them): every gradient must equal the loop's, never panic.
        let (cin, cout) = (groups * cin_per, groups * cout_per);
        let x = values(&[n, cin, h, w], seed).requires_grad_(true).unwrap();
        let wt = values(&[cout, cin_per, kh, kw], seed + 1).requires_grad_(true).unwrap();
        let cfg = Conv2dConfig { stride, padding, dilation, groups };
        let Ok(y) = x.conv2d(&wt, None, cfg) else { return Ok(()); };
        let r = values(y.shape(), seed + 2);
        let grads = y.backward_with(&r).unwrap();
        let (xa, wa, ra) = (arr(&x), arr(&wt), arr(&r));
        let (mut gx, mut gw) = (ArrayD::<f64>::zeros(xa.shape()), ArrayD::<f64>::zeros(wa.shape()));
        let (oh, ow) = (y.shape()[2], y.shape()[3]);
        for b_ in 0..n { for o in 0..cout { for yo in 0..oh { for zo in 0..ow {
            let g = o / cout_per;
            for c in 0..cin_per { for p in 0..kh { for q in 0..kw {
                let at = (tap_input(yo, p, stride[0], padding[0], dilation[0], h), tap_input(zo, q, stride[1], padding[1], dilation[1], w));
                if let (Some(yy), Some(zz)) = at {
                    let xi = [b_, g * cin_per + c, yy, zz];
                    gx[xi] += ra[[b_, o, yo, zo]] * wa[[o, c, p, q]];
                    gw[[o, c, p, q]] += ra[[b_, o, yo, zo]] * xa[xi];
                }
            }}}
        }}}}
        prop_assert!(close(&arr(grads.get(&x).unwrap()), &gx, 1e-12));
        prop_assert!(close(&arr(grads.get(&wt).unwrap()), &gw, 1e-12));
    }

    #[test]
    fn conv1d_matches_conv2d_on_a_row((cin, cout, l, k) in (1usize..4, 1usize..4, 1usize..8, 1usize..4), (stride, padding, dilation) in (0usize..3, 0usize..3, 0usize..3), seed in 0u64..1000) {
        let x = values(&[2, cin, l], seed);
        let w = values(&[cout, cin, k], seed + 1);
        let cfg = Conv1dConfig { stride, padding, dilation, groups: 1 };
        let result = x.conv1d(&w, None, cfg);
        let as_2d = x.unsqueeze(2).unwrap().conv2d(
            &w.unsqueeze(2).unwrap(),
            None,
            Conv2dConfig { stride: [1, stride.max(1)], padding: [0, padding], dilation: [1, dilation.max(1)], groups: 1 },
        );
        match nabla::ops::conv_output_size(l, k, stride, padding, dilation).filter(|_| stride > 0 && dilation > 0) {
            Some(_) => prop_assert!(close(&arr(&result.unwrap()), &arr(&as_2d.unwrap().squeeze(2).unwrap()), 1e-12)),
            None => assert_err_names(result, "conv1d"),
        }
    }

    #[test]
    fn pooling_matches_a_direct_loop(
        (n, c, h, w) in (1usize..3, 1usize..3, 0usize..7, 0usize..7),
        (kh, kw) in (0usize..4, 0usize..4),
        (stride, padding, dilation) in ([0usize..3, 0usize..3], [0usize..3, 0usize..3], [0usize..3, 0usize..3]),
        kind in 0usize..5,
        ceil_mode in any::<bool>(),
        seed in 0u64..1000,
    ) {
        // Lp pooling reads x^p: positive inputs keep it real.
        let x = if kind == 3 { values(&[n, c, h, w], seed).abs().add_scalar(0.1) } else { values(&[n, c, h, w], seed) };
        let cfg = Pool2dConfig { kernel_size: [kh, kw], stride, padding, dilation, ceil_mode };
        let (name, result) = match kind {
            0 => ("max_pool2d", x.max_pool2d(cfg)),
            1 => ("avg_pool2d", x.avg_pool2d(cfg, true, None)),
            2 => ("avg_pool2d", x.avg_pool2d(cfg, false, None)),
            3 => ("lp_pool2d", x.lp_pool2d(2.0, cfg)),
            _ => ("lse_pool2d", x.lse_pool2d(1.5, cfg)),
        };
        let positive = kh > 0 && kw > 0 && stride.iter().all(|&s| s > 0) && dilation.iter().all(|&d| d > 0);
        let pad_ok = 2 * padding[0] <= kh && 2 * padding[1] <= kw;
        let dilation_ok = kind == 0 || kind == 4 || dilation == [1, 1];
        let padding_ok = kind != 3 || padding == [0, 0];
        // PyTorch's pooling_output_shape: with ceil_mode, one more window for a partial last
        // stride, unless it would start in the right padding.
        let size = |i: usize| {
            let (n, k, s, p, d) = ([h, w][i], [kh, kw][i], stride[i].max(1), padding[i], dilation[i].max(1));
            let floor = nabla::ops::conv_output_size(n, k, s, p, d)?;
            let room = n + 2 * p - (d * (k.max(1) - 1) + 1);
            let ceil = room.div_ceil(s) + 1;
            Some(if !ceil_mode { floor } else if (ceil - 1) * s >= n + p { ceil - 1 } else { ceil })
        };
        match (positive && pad_ok && dilation_ok && padding_ok, size(0), size(1)) {
            (true, Some(oh), Some(ow)) => {
                let xa = arr(&x);
                let mut only_padding = false;
                let expect = ArrayD::from_shape_fn(IxDyn(&[n, c, oh, ow]), |i| {
                    let mut taps = Vec::new();
                    let mut padded = 0usize;
                    // Taps inside the padded input (ceil_mode's last window may run past it).
                    let mut in_padded = 0usize;
                    for p in 0..kh {
                        for q in 0..kw {
                            let at = (tap_input(i[2], p, stride[0], padding[0], dilation[0], h), tap_input(i[3], q, stride[1], padding[1], dilation[1], w));
                            let reach = |o: usize, t: usize, k: usize| o * stride[k] + t * dilation[k] < [h, w][k] + 2 * padding[k];
                            in_padded += (reach(i[2], p, 0) && reach(i[3], q, 1)) as usize;
                            if let (Some(yy), Some(zz)) = at {
                                taps.push(xa[[i[0], i[1], yy, zz]]);
                            } else {
                                padded += 1;
                            }
                        }
                    }
                    only_padding |= taps.is_empty();
                    let sum: f64 = taps.iter().sum();
                    match kind {
                        0 => taps.iter().copied().fold(f64::NEG_INFINITY, f64::max),
                        1 => sum / in_padded as f64,
                        2 => sum / taps.len() as f64,
                        // PyTorch's lp_pool2d: the average of x² over the clipped window, times k².
                        3 => (taps.iter().map(|v| v * v).sum::<f64>() / in_padded as f64 * (kh * kw) as f64).sqrt(),
                        // Padding taps are zeros inside the mean of exp(beta x).
                        _ => ((taps.iter().map(|v| (1.5 * v).exp()).sum::<f64>() + padded as f64) / (kh * kw) as f64).ln() / 1.5,
                    }
                });
                if kind == 0 && only_padding {
                    // A dilated window that misses the input: nabla refuses (PyTorch: -inf).
                    assert_err_names(result, name);
                } else {
                    let got = arr(&result.unwrap());
                    prop_assert!(close(&got, &expect, 1e-12), "{} {:?}: {:?} vs {:?}", name, cfg, got, expect);
                }
            }
            _ => assert_err_names(result, name),
        }
    }

    #[test]
    fn pool1d_and_shape_errors(rank in 0usize..6, l in 1usize..6, k in 1usize..4, seed in 0u64..1000) {
        let shape: Vec<usize> = (0..rank).map(|i| if i + 1 == rank { l } else { 2 }).collect();
        let x = values(&shape, seed);
        let cfg = Pool1dConfig::new(k);
        for (name, result) in [
            ("max_pool1d", x.max_pool1d(cfg)),
            ("avg_pool1d", x.avg_pool1d(cfg, true)),
            ("lse_pool1d", x.lse_pool1d(2.0, cfg)),
        ] {
            if rank == 3 && k <= l {
                prop_assert_eq!(result.unwrap().shape().to_vec(), vec![2, 2, l / k]);
            } else {
                assert_err_names(result, name);
            }
        }
        // Conv2d on a tensor that is not (N, C, H, W).
        if rank != 4 {
            assert_err_names(x.conv2d(&values(&[1, 1, 1, 1], 0), None, Conv2dConfig::default()), "conv2d");
        }
    }
}
