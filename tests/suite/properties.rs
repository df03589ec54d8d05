//! Property tests (proptest) over random shapes, dims, broadcast pairs and configs: every
//! public op either returns the value of a plain reference (a naive loop over indices) or an
//! `Err` whose message names the op; none panics (proptest fails a case that panics), and
//! none returns NaN from finite inputs where the maths is finite.
//!
//! Each property runs `CASES` random cases; a failure prints the shrunk case, and proptest
//! stores it under `proptest-regressions/` so that it is tried first next time.

use nabla::nn::{CellKind, Module, functional as F};
use nabla::ops::{Conv1dConfig, Conv2dConfig, Pool1dConfig, Pool2dConfig};
use nabla::prelude::*;
use ndarray::{ArrayD, Dimension, IxDyn};
use proptest::prelude::*;

const CASES: u32 = 2000;

fn config() -> ProptestConfig {
    ProptestConfig { cases: CASES, ..ProptestConfig::default() }
}

/// Deterministic values in [-2, 2] for a shape.
fn values(shape: &[usize], seed: u64) -> Tensor<f64> {
    Tensor::<f64>::uniform(shape, -2.0, 2.0, &mut nabla::rng(seed))
}

fn arr(t: &Tensor<f64>) -> ArrayD<f64> {
    t.to_ndarray()
}

/// The error must exist and its message must name the op.
fn assert_err_names<T: std::fmt::Debug>(result: nabla::Result<T>, op: &str) {
    match result {
        Ok(v) => panic!("{op}: expected an error, got {v:?}"),
        Err(e) => assert!(e.to_string().contains(op), "{op}: the error does not name the op: {e}"),
    }
}

fn close(a: &ArrayD<f64>, b: &ArrayD<f64>, tol: f64) -> bool {
    a.shape() == b.shape()
        && a.iter().zip(b.iter()).all(|(x, y)| x == y || (x - y).abs() <= tol * (1.0 + y.abs()) || (x.is_nan() && y.is_nan()))
}

/// NumPy's broadcast of two shapes, or None.
fn broadcast(a: &[usize], b: &[usize]) -> Option<Vec<usize>> {
    let n = a.len().max(b.len());
    let dim = |s: &[usize], i: usize| if i + s.len() >= n { s[i + s.len() - n] } else { 1 };
    (0..n)
        .map(|i| match (dim(a, i), dim(b, i)) {
            (x, y) if x == y => Some(x),
            (1, y) => Some(y),
            (x, 1) => Some(x),
            _ => None,
        })
        .collect()
}

/// The element of `x` that broadcasting reads for output index `out`.
fn at_broadcast(x: &ArrayD<f64>, out: &[usize]) -> f64 {
    let off = out.len() - x.ndim();
    let idx: Vec<usize> = (0..x.ndim()).map(|i| if x.shape()[i] == 1 { 0 } else { out[i + off] }).collect();
    x[IxDyn(&idx)]
}

/// Pairs of shapes: half of them broadcastable by construction, half drawn independently.
fn shape_pair() -> impl Strategy<Value = (Vec<usize>, Vec<usize>)> {
    let compatible = prop::collection::vec(0usize..4, 0..5).prop_flat_map(|out| {
        let n = out.len();
        (Just(out), prop::collection::vec(any::<bool>(), n), prop::collection::vec(any::<bool>(), n), 0..=n, 0..=n)
    });
    let compatible = compatible.prop_map(|(out, ones_a, ones_b, drop_a, drop_b)| {
        let a: Vec<usize> = out.iter().zip(&ones_a).map(|(&d, &one)| if one { 1 } else { d }).skip(drop_a).collect();
        let b: Vec<usize> = out.iter().zip(&ones_b).map(|(&d, &one)| if one { 1 } else { d }).skip(drop_b).collect();
        (a, b)
    });
    let any_pair = (prop::collection::vec(0usize..4, 0..4), prop::collection::vec(0usize..4, 0..4));
    prop_oneof![compatible, any_pair]
}

fn normalize(dim: isize, rank: usize) -> Option<usize> {
    let d = if dim < 0 { dim + rank as isize } else { dim };
    (0..rank as isize).contains(&d).then_some(d as usize)
}

/// The input position that output `out`'s tap `k` reads, `out·s + k·d - p`, or `None` in the
/// padding (outside `0..n`): the definition the convolution and pooling loops below check
/// against.
fn tap_input(out: usize, k: usize, s: usize, p: usize, d: usize, n: usize) -> Option<usize> {
    (out * s + k * d).checked_sub(p).filter(|&i| i < n)
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn binary_ops_broadcast_like_numpy((sa, sb) in shape_pair(), seed in 0u64..1000, op in 0usize..6) {
        let (a, b) = (values(&sa, seed), values(&sb, seed + 1).add_scalar(3.0)); // b away from 0 for div
        let names = ["add", "sub", "mul", "div", "maximum", "minimum"];
        let result = match op {
            0 => a.add(&b),
            1 => a.sub(&b),
            2 => a.mul(&b),
            3 => a.div(&b),
            4 => a.maximum(&b),
            _ => a.minimum(&b),
        };
        let f = |x: f64, y: f64| match op {
            0 => x + y,
            1 => x - y,
            2 => x * y,
            3 => x / y,
            4 => x.max(y),
            _ => x.min(y),
        };
        match broadcast(&sa, &sb) {
            None => assert_err_names(result, names[op]),
            Some(out) => {
                let (xa, xb) = (arr(&a), arr(&b));
                let expect = ArrayD::from_shape_fn(IxDyn(&out), |i| f(at_broadcast(&xa, i.slice()), at_broadcast(&xb, i.slice())));
                prop_assert_eq!(arr(&result.unwrap()), expect);
            }
        }
    }

    #[test]
    fn matmul_follows_torch_matmul(
        batch_a in prop::collection::vec(1usize..3, 0..3),
        batch_b in prop::collection::vec(1usize..3, 0..3),
        (m, k, k2, n) in (0usize..4, 0usize..4, 0usize..4, 0usize..4),
        one_d in 0usize..4,
        seed in 0u64..1000,
    ) {
        // one_d: 0 both matrices, 1 a is a vector, 2 b is a vector, 3 both vectors.
        let sa: Vec<usize> = if one_d & 1 == 1 { vec![k] } else { batch_a.iter().copied().chain([m, k]).collect() };
        let sb: Vec<usize> = if one_d & 2 == 2 { vec![k2] } else { batch_b.iter().copied().chain([k2, n]).collect() };
        let (a, b) = (values(&sa, seed), values(&sb, seed + 7));
        let result = a.matmul(&b);
        // The reference: promote vectors, broadcast batches, loop, drop promoted dims.
        let (pa, pb) = (if sa.len() == 1 { vec![1, sa[0]] } else { sa.clone() }, if sb.len() == 1 { vec![sb[0], 1] } else { sb.clone() });
        let (ka, kb) = (pa[pa.len() - 1], pb[pb.len() - 2]);
        let batch = broadcast(&pa[..pa.len() - 2], &pb[..pb.len() - 2]);
        match batch.filter(|_| ka == kb) {
            None => assert_err_names(result, "matmul"),
            Some(batch) => {
                let (xa, xb) = (arr(&a).into_shape_with_order(IxDyn(&pa)).unwrap(), arr(&b).into_shape_with_order(IxDyn(&pb)).unwrap());
                let (rows, cols) = (pa[pa.len() - 2], pb[pb.len() - 1]);
                let out_shape: Vec<usize> = batch.iter().copied().chain([rows, cols]).collect();
                let expect = ArrayD::from_shape_fn(IxDyn(&out_shape), |i| {
                    let i = i.slice();
                    let (bi, r, c) = (&i[..batch.len()], i[batch.len()], i[batch.len() + 1]);
                    (0..ka)
                        .map(|p| {
                            let ia: Vec<usize> = bi.iter().copied().chain([r, p]).collect();
                            let ib: Vec<usize> = bi.iter().copied().chain([p, c]).collect();
                            at_broadcast(&xa, &ia) * at_broadcast(&xb, &ib)
                        })
                        .sum()
                });
                let mut final_shape: Vec<usize> = batch.clone();
                if sa.len() > 1 { final_shape.push(rows); }
                if sb.len() > 1 { final_shape.push(cols); }
                let got = arr(&result.unwrap());
                prop_assert!(close(&got, &expect.into_shape_with_order(IxDyn(&final_shape)).unwrap(), 1e-12), "{:?} @ {:?}", sa, sb);
            }
        }
    }

    #[test]
    fn reductions_match_loops(
        shape in prop::collection::vec(0usize..4, 0..4),
        dims in prop::collection::vec(-4isize..4, 0..3),
        keepdim in any::<bool>(),
        op in 0usize..5,
        seed in 0u64..1000,
    ) {
        let x = values(&shape, seed);
        let names = ["sum", "mean", "amax", "amin", "logsumexp"];
        let result = match op {
            0 => x.sum_dims(&dims, keepdim),
            1 => x.mean_dims(&dims, keepdim),
            2 => x.amax_dims(&dims, keepdim),
            3 => x.amin_dims(&dims, keepdim),
            _ => x.logsumexp_dims(&dims, keepdim),
        };
        let rank = shape.len();
        // A 0-d tensor takes dims 0 and -1 as PyTorch does, and reduces nothing.
        let normalized: Option<Vec<usize>> = dims.iter().map(|&d| normalize(d, rank.max(1))).collect();
        let mut sorted = normalized.clone().unwrap_or_default();
        sorted.sort_unstable();
        sorted.dedup();
        let valid = normalized.as_ref().is_some_and(|n| n.len() == sorted.len());
        // An empty dim list reduces every dim, as PyTorch's `x.sum(dim=[])`.
        let reduced: Vec<usize> = if rank == 0 { vec![] } else if dims.is_empty() { (0..rank).collect() } else { sorted };
        let empty_extremum = (2..=3).contains(&op) && reduced.iter().any(|&d| shape[d] == 0);
        if !valid || empty_extremum {
            assert_err_names(result, names[op]);
        } else {
            let y = arr(&result.unwrap());
            let kept: Vec<usize> = (0..rank).map(|d| if reduced.contains(&d) { 1 } else { shape[d] }).collect();
            let xa = arr(&x);
            let expect = ArrayD::from_shape_fn(IxDyn(&kept), |o| {
                let lane: Vec<f64> = xa.indexed_iter().filter(|(i, _)| (0..rank).all(|d| reduced.contains(&d) || i[d] == o[d])).map(|(_, &v)| v).collect();
                let count = lane.len() as f64;
                match op {
                    0 => lane.iter().sum(),
                    1 => lane.iter().sum::<f64>() / count,
                    2 => lane.iter().copied().fold(f64::NEG_INFINITY, f64::max),
                    3 => lane.iter().copied().fold(f64::INFINITY, f64::min),
                    _ => lane.iter().map(|v| v.exp()).sum::<f64>().ln(),
                }
            });
            let expect = if keepdim {
                expect
            } else {
                let squeezed: Vec<usize> = (0..rank).filter(|d| !reduced.contains(d)).map(|d| shape[d]).collect();
                expect.into_shape_with_order(IxDyn(&squeezed)).unwrap()
            };
            prop_assert!(close(&y, &expect, 1e-12), "{} {:?} dims {:?}: {:?} vs {:?}", names[op], shape, dims, y, expect);
        }
    }

    #[test]
    fn shape_ops_match_ndarray(shape in prop::collection::vec(0usize..4, 0..4), seed in 0u64..1000, a in -5isize..5, b in -5isize..5, c in 0usize..5) {
        let x = values(&shape, seed);
        let xa = arr(&x);
        let rank = shape.len();
        // transpose(a, b)
        match (normalize(a, rank.max(1)), normalize(b, rank.max(1))) {
            (Some(i), Some(j)) if rank > 0 => {
                let mut perm: Vec<usize> = (0..rank).collect();
                perm.swap(i, j);
                prop_assert_eq!(arr(&x.transpose(a, b).unwrap()), xa.clone().permuted_axes(IxDyn(&perm)).as_standard_layout().to_owned());
            }
            _ if rank > 0 => assert_err_names(x.transpose(a, b), "transpose"),
            _ => {}
        }
        // narrow(a, c, b)
        if let (Some(d), true) = (normalize(a, rank), b >= 0) {
            let (start, len) = (c, b as usize);
            let result = x.narrow(a, start, len);
            if start + len <= shape[d] {
                let expect = xa.slice_axis(ndarray::Axis(d), ndarray::Slice::from(start..start + len)).to_owned();
                prop_assert_eq!(arr(&result.unwrap()), expect);
            } else {
                assert_err_names(result, "narrow");
            }
        } else if b >= 0 {
            assert_err_names(x.narrow(a, c, b as usize), "narrow");
        }
        // unsqueeze then squeeze is the identity; squeeze of a non-1 dim keeps it (PyTorch).
        match normalize(a, rank + 1) {
            Some(_) => {
                let u = x.unsqueeze(a).unwrap();
                prop_assert_eq!(u.ndim(), rank + 1);
                prop_assert_eq!(arr(&u.squeeze(a).unwrap()), xa.clone());
            }
            None => assert_err_names(x.unsqueeze(a), "unsqueeze"),
        }
        // reshape with one inferred dim
        let numel: usize = shape.iter().product();
        let target = [c as isize, -1];
        let result = x.reshape(&target);
        if c > 0 && numel.is_multiple_of(c) {
            prop_assert_eq!(result.unwrap().to_vec(), x.to_vec());
        } else if c == 0 && numel == 0 {
            // PyTorch refuses to infer -1 next to a 0 dim; either refuse or be exact.
            if let Ok(y) = result { prop_assert_eq!(y.numel(), 0); }
        } else {
            assert_err_names(result, "reshape");
        }
        // flatten(a, b)
        match (normalize(a, rank.max(1)), normalize(b, rank.max(1))) {
            (Some(i), Some(j)) if i <= j => {
                let y = x.flatten(a, b).unwrap();
                prop_assert_eq!(y.to_vec(), x.to_vec());
                prop_assert_eq!(y.numel(), numel);
            }
            _ => prop_assert!(x.flatten(a, b).is_err()),
        }
    }

    #[test]
    fn cat_and_stack_match_ndarray(shapes in prop::collection::vec(prop::collection::vec(1usize..4, 2), 0..4), dim in -3isize..3, seed in 0u64..1000) {
        let ts: Vec<Tensor<f64>> = shapes.iter().enumerate().map(|(i, s)| values(s, seed + i as u64)).collect();
        let views: Vec<ArrayD<f64>> = ts.iter().map(arr).collect();
        let cat = Tensor::cat(&ts, dim);
        let d = normalize(dim, 2);
        let cat_ok = !ts.is_empty() && d.is_some() && shapes.iter().all(|s| s[1 - d.unwrap()] == shapes[0][1 - d.unwrap()]);
        if cat_ok {
            let vs: Vec<_> = views.iter().map(|v| v.view()).collect();
            prop_assert_eq!(arr(&cat.unwrap()), ndarray::concatenate(ndarray::Axis(d.unwrap()), &vs).unwrap());
        } else {
            assert_err_names(cat, "cat");
        }
        let stack = Tensor::stack(&ts, dim);
        let sd = normalize(dim, 3);
        if !ts.is_empty() && sd.is_some() && shapes.iter().all(|s| s == &shapes[0]) {
            let vs: Vec<_> = views.iter().map(|v| v.view()).collect();
            prop_assert_eq!(arr(&stack.unwrap()), ndarray::stack(ndarray::Axis(sd.unwrap()), &vs).unwrap());
        } else {
            assert_err_names(stack, "stack");
        }
    }

    #[test]
    fn indexing_checks_its_indices(shape in prop::collection::vec(1usize..4, 1..4), dim in -4isize..4, index in prop::collection::vec(0usize..5, 0..5), seed in 0u64..1000) {
        let x = values(&shape, seed);
        let result = x.index_select(dim, &index);
        match normalize(dim, shape.len()) {
            Some(d) if index.iter().all(|&i| i < shape[d]) => {
                prop_assert_eq!(arr(&result.unwrap()), arr(&x).select(ndarray::Axis(d), &index));
            }
            _ => assert_err_names(result, "index_select"),
        }
        // gather along dim with an index of x's shape but values drawn from `index`.
        let gather_index = ArrayD::from_shape_fn(IxDyn(&shape), |i| index.get(i.slice().iter().sum::<usize>() % index.len().max(1)).copied().unwrap_or(0));
        let result = x.gather(dim, &gather_index);
        match normalize(dim, shape.len()) {
            Some(d) if gather_index.iter().all(|&i| i < shape[d]) => {
                let xa = arr(&x);
                let expect = ArrayD::from_shape_fn(IxDyn(&shape), |i| {
                    let mut j = i.slice().to_vec();
                    j[d] = gather_index[&i];
                    xa[IxDyn(&j)]
                });
                prop_assert_eq!(arr(&result.unwrap()), expect);
            }
            _ => assert_err_names(result, "gather"),
        }
    }

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
        seed in 0u64..1000,
    ) {
        // Lp pooling reads x^p: positive inputs keep it real.
        let x = if kind == 3 { values(&[n, c, h, w], seed).abs().add_scalar(0.1) } else { values(&[n, c, h, w], seed) };
        let cfg = Pool2dConfig { kernel_size: [kh, kw], stride, padding, dilation };
        let (name, result) = match kind {
            0 => ("max_pool2d", x.max_pool2d(cfg)),
            1 => ("avg_pool2d", x.avg_pool2d(cfg, true)),
            2 => ("avg_pool2d", x.avg_pool2d(cfg, false)),
            3 => ("lp_pool2d", x.lp_pool2d(2.0, cfg)),
            _ => ("lse_pool2d", x.lse_pool2d(1.5, cfg)),
        };
        let positive = kh > 0 && kw > 0 && stride.iter().all(|&s| s > 0) && dilation.iter().all(|&d| d > 0);
        let pad_ok = 2 * padding[0] <= kh && 2 * padding[1] <= kw;
        let dilation_ok = kind == 0 || kind == 4 || dilation == [1, 1];
        let padding_ok = kind != 3 || padding == [0, 0];
        let size = |i: usize| nabla::ops::conv_output_size([h, w][i], [kh, kw][i], stride[i].max(1), padding[i], dilation[i].max(1));
        match (positive && pad_ok && dilation_ok && padding_ok, size(0), size(1)) {
            (true, Some(oh), Some(ow)) => {
                let xa = arr(&x);
                let mut only_padding = false;
                let expect = ArrayD::from_shape_fn(IxDyn(&[n, c, oh, ow]), |i| {
                    let mut taps = Vec::new();
                    let mut padded = 0usize;
                    for p in 0..kh {
                        for q in 0..kw {
                            let at = (tap_input(i[2], p, stride[0], padding[0], dilation[0], h), tap_input(i[3], q, stride[1], padding[1], dilation[1], w));
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
                        1 => sum / (kh * kw) as f64,
                        2 => sum / taps.len() as f64,
                        3 => taps.iter().map(|v| v * v).sum::<f64>().sqrt(),
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

    #[test]
    fn softmax_family_is_finite_on_finite_inputs(shape in prop::collection::vec(1usize..5, 1..4), scale in prop_oneof![Just(1.0), Just(1e3), Just(1e30), Just(1e300)], dim in -4isize..4, seed in 0u64..1000) {
        let x = values(&shape, seed).mul_scalar(scale);
        let rank = shape.len();
        match normalize(dim, rank) {
            Some(d) => {
                let p = arr(&x.softmax(dim).unwrap());
                let lp = arr(&x.log_softmax(dim).unwrap());
                let lse = arr(&x.logsumexp_dims(&[dim], true).unwrap());
                prop_assert!(p.iter().all(|v| v.is_finite() && *v >= 0.0 && *v <= 1.0));
                prop_assert!(lp.iter().all(|v| v.is_finite() || *v == f64::NEG_INFINITY));
                prop_assert!(lse.iter().all(|v| v.is_finite()), "logsumexp {:?}", lse);
                for s in p.sum_axis(ndarray::Axis(d)).iter() {
                    prop_assert!((s - 1.0).abs() < 1e-12);
                }
                // Gradients of a loss through them are finite too.
                let xg = x.detach().requires_grad_(true).unwrap();
                let loss = xg.log_softmax(dim).unwrap().mul(&values(&shape, seed + 3)).unwrap().sum();
                let g = loss.backward().unwrap();
                prop_assert!(g.get(&xg).unwrap().to_vec().iter().all(|v| v.is_finite()));
            }
            None => {
                assert_err_names(x.softmax(dim), "softmax");
                assert_err_names(x.log_softmax(dim), "log_softmax");
            }
        }
    }

    #[test]
    fn elementwise_functions_stay_finite(scale in prop_oneof![Just(1.0), Just(50.0), Just(800.0), Just(1e30), Just(1e300)], seed in 0u64..1000) {
        let x = values(&[64], seed).mul_scalar(scale).requires_grad_(true).unwrap();
        let outputs = [
            ("sigmoid", x.sigmoid()),
            ("tanh", x.tanh()),
            ("softplus", x.softplus(1.0, 20.0)),
            ("relu", x.relu()),
            ("leaky_relu", x.leaky_relu(0.01)),
            ("abs", x.abs()),
            ("clamp", x.clamp(-1.0, 1.0)),
            ("sin", x.sin()),
            ("cos", x.cos()),
        ];
        for (name, y) in &outputs {
            prop_assert!(y.to_vec().iter().all(|v| v.is_finite()), "{} at scale {}", name, scale);
            let g = y.sum().backward().unwrap();
            prop_assert!(g.get(&x).unwrap().to_vec().iter().all(|v| v.is_finite()), "d{} at scale {}", name, scale);
        }
        // f32 too: its range ends at 3.4e38.
        let x32: Tensor<f32> = values(&[64], seed).mul_scalar(scale.min(1e38)).cast();
        for y in [x32.sigmoid(), x32.tanh(), x32.softplus(1.0, 20.0)] {
            prop_assert!(y.to_vec().iter().all(|v| v.is_finite()));
        }
    }

    #[test]
    fn losses_are_finite_and_check_their_targets(n in 0usize..5, classes in 1usize..5, bad in any::<bool>(), scale in prop_oneof![Just(1.0), Just(1e4), Just(1e300)], seed in 0u64..1000) {
        let logits = values(&[n, classes], seed).mul_scalar(scale).requires_grad_(true).unwrap();
        let target = ArrayD::from_shape_fn(IxDyn(&[n]), |i| if bad && i[0] == 0 { classes } else { (i[0] * 7 + seed as usize) % classes });
        let result = F::cross_entropy(&logits, &target);
        if bad && n > 0 {
            assert_err_names(result, "cross_entropy");
        } else if n > 0 {
            let loss = result.unwrap();
            prop_assert!(loss.item().unwrap().is_finite(), "loss {:?}", loss.item());
            let g = loss.backward().unwrap();
            prop_assert!(g.get(&logits).unwrap().to_vec().iter().all(|v| v.is_finite()));
        }
        let y = values(&[n, classes], seed + 5);
        let mse = F::mse_loss(&logits, &y, nabla::nn::Reduction::Sum).unwrap();
        prop_assert!(n == 0 || mse.item().unwrap() >= 0.0);
        assert_err_names(F::mse_loss(&logits, &values(&[n + 1, classes + 1], 0), nabla::nn::Reduction::Mean), "mse_loss");
    }

    #[test]
    fn module_constructors_either_work_or_refuse(
        (cin, cout, k) in (0usize..5, 0usize..5, 0usize..4),
        groups in 0usize..4,
        (embed, heads) in (0usize..9, 0usize..4),
        seed in 0u64..1000,
    ) {
        let mut rng = nabla::rng(seed);
        // Conv2d: PyTorch refuses groups that do not divide both channel counts, zero groups and empty kernels.
        let cfg = Conv2dConfig { groups, ..Conv2dConfig::default() };
        let conv = nabla::nn::Conv2d::<f64>::new(cin, cout, [k, k], cfg, true, &mut rng);
        // Zero channels are allowed, as in PyTorch (the layer computes an empty or bias-only map).
        let sane = groups > 0 && k > 0 && cin % groups == 0 && cout % groups == 0;
        match conv {
            Ok(conv) => {
                prop_assert!(sane, "Conv2d::new({}, {}, {}, groups {}) was accepted", cin, cout, k, groups);
                let y = conv.forward(&values(&[1, cin, k + 2, k + 2], seed)).unwrap();
                prop_assert_eq!(y.shape().to_vec(), vec![1, cout, 3, 3]);
            }
            Err(e) => {
                prop_assert!(!sane, "refused a valid conv: {}", e);
                prop_assert!(e.to_string().contains("Conv2d"), "{}", e);
            }
        }
        let conv1 = nabla::nn::Conv1d::<f64>::new(cin, cout, k, Conv1dConfig { groups, ..Conv1dConfig::default() }, false, &mut rng);
        prop_assert_eq!(conv1.is_ok(), sane);
        // MultiheadAttention: embed_dim must split into heads.
        let mha = nabla::nn::MultiheadAttention::<f64>::new(embed, heads, &mut rng);
        let mha_sane = heads > 0 && embed > 0 && embed % heads == 0;
        prop_assert_eq!(mha.is_ok(), mha_sane, "MultiheadAttention({}, {})", embed, heads);
        // Linear and Embedding accept any sizes (PyTorch does, zero included) and compute.
        let linear = nabla::nn::Linear::<f64>::new(cin, cout, &mut rng);
        prop_assert_eq!(linear.forward(&values(&[2, cin], seed)).unwrap().shape().to_vec(), vec![2, cout]);
        assert_err_names(linear.forward(&values(&[2, cin + 1], seed)), "linear");
        // Recurrent layers of every kind and size run, or refuse an input of the wrong width.
        for kind in [CellKind::RnnTanh, CellKind::Gru, CellKind::Lstm] {
            let rnn = nabla::nn::Recurrent::<f64>::new(kind, cin.max(1), cout.max(1), nabla::nn::RecurrentOptions::default().num_layers(k.max(1)).bidirectional(groups % 2 == 1), &mut rng);
            let out = rnn.forward_with_state(&values(&[3, 2, cin.max(1)], seed), None).unwrap();
            prop_assert!(out.output.to_vec().iter().all(|v| v.is_finite()));
            prop_assert!(rnn.forward_with_state(&values(&[3, 2, cin.max(1) + 1], seed), None).is_err());
        }
    }
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn permute_and_expand_match_ndarray(shape in prop::collection::vec(0usize..4, 0..4), perm in prop::collection::vec(-4isize..4, 0..5), grow in prop::collection::vec(-1isize..4, 0..5), seed in 0u64..1000) {
        let x = values(&shape, seed);
        let rank = shape.len();
        let normalized: Option<Vec<usize>> = perm.iter().map(|&d| normalize(d, rank)).collect();
        let is_perm = normalized.as_ref().is_some_and(|p| {
            let mut s = p.clone();
            s.sort_unstable();
            s == (0..rank).collect::<Vec<_>>()
        });
        match x.permute(&perm) {
            Ok(y) => {
                prop_assert!(is_perm, "permute {:?} of {:?} was accepted", perm, shape);
                prop_assert_eq!(arr(&y), arr(&x).permuted_axes(IxDyn(&normalized.unwrap())));
            }
            Err(e) => {
                prop_assert!(!is_perm || rank == 0, "refused a permutation: {}", e);
                prop_assert!(e.to_string().contains("permute"));
            }
        }
        // expand: new leading dims any size >= 0, existing dims kept (-1 or equal) or grown from 1.
        let result = x.expand(&grow);
        let valid = grow.len() >= rank
            && grow.iter().enumerate().all(|(i, &g)| {
                let lead = grow.len() - rank;
                if i < lead { g >= 0 } else { g == -1 || g as usize == shape[i - lead] || (shape[i - lead] == 1 && g >= 0) }
            });
        if valid {
            let target: Vec<usize> = grow.iter().enumerate().map(|(i, &g)| if g == -1 { shape[i - (grow.len() - rank)] } else { g as usize }).collect();
            let expect = arr(&x).broadcast(IxDyn(&target)).unwrap().to_owned();
            prop_assert_eq!(arr(&result.unwrap()), expect);
        } else {
            assert_err_names(result, "expand");
        }
    }

    #[test]
    fn where_broadcasts_three_ways((sa, sb) in shape_pair(), cond_shape in prop::collection::vec(1usize..3, 0..3), seed in 0u64..1000) {
        let cond = values(&cond_shape, seed).constant_sign();
        let (a, b) = (values(&sa, seed + 1), values(&sb, seed + 2));
        let result = nabla::where_(&cond, &a, &b);
        let out = broadcast(&cond_shape, &sa).and_then(|s| broadcast(&s, &sb));
        match out {
            Some(out) => {
                let (c, xa, xb) = (arr(&cond), arr(&a), arr(&b));
                let expect = ArrayD::from_shape_fn(IxDyn(&out), |i| if at_broadcast(&c, i.slice()) != 0.0 { at_broadcast(&xa, i.slice()) } else { at_broadcast(&xb, i.slice()) });
                prop_assert_eq!(arr(&result.unwrap()), expect);
            }
            None => assert_err_names(result, "where"),
        }
    }

    #[test]
    fn attention_checks_its_shapes(
        (batch, l, s, e, ev) in (1usize..3, 1usize..4, 0usize..4, 1usize..4, 1usize..4),
        (s_v, e_k) in (0usize..4, 1usize..4),
        causal in any::<bool>(),
        seed in 0u64..1000,
    ) {
        let q = values(&[batch, l, e], seed);
        let k = values(&[batch, s, e_k], seed + 1);
        let v = values(&[batch, s_v, ev], seed + 2);
        let result = nabla::nn::scaled_dot_product_attention(&q, &k, &v, None, causal, None);
        if e == e_k && s == s_v {
            let y = result.unwrap();
            prop_assert_eq!(y.shape().to_vec(), vec![batch, l, ev]);
            // With no key at all, or with every key masked by causality, a row has no
            // weights: PyTorch returns NaN there; anything else must be finite.
            if s > 0 && !causal {
                prop_assert!(y.to_vec().iter().all(|v| v.is_finite()));
            }
        } else {
            prop_assert!(result.is_err());
        }
    }

    #[test]
    fn embedding_checks_its_ids(num in 0usize..5, dim in 0usize..4, ids in prop::collection::vec(0usize..6, 0..6), seed in 0u64..1000) {
        let emb = nabla::nn::Embedding::<f64>::new(num, dim, &mut nabla::rng(seed));
        let ids_arr = ArrayD::from_shape_vec(IxDyn(&[ids.len()]), ids.clone()).unwrap();
        let result = emb.forward(&ids_arr);
        if ids.iter().all(|&i| i < num) {
            let y = result.unwrap();
            prop_assert_eq!(y.shape().to_vec(), vec![ids.len(), dim]);
            let table = arr(&emb.weight.tensor());
            for (row, &i) in ids.iter().enumerate() {
                for j in 0..dim {
                    prop_assert_eq!(arr(&y)[[row, j]], table[[i, j]]);
                }
            }
        } else {
            prop_assert!(result.is_err());
        }
    }
}

/// 1.0 where positive, else 0.0: a condition tensor for `where_`.
trait ConstantSign {
    fn constant_sign(&self) -> Tensor<f64>;
}

impl ConstantSign for Tensor<f64> {
    fn constant_sign(&self) -> Tensor<f64> {
        Tensor::<f64>::from_vec(self.to_vec().into_iter().map(|v| if v > 0.0 { 1.0 } else { 0.0 }).collect(), self.shape()).unwrap()
    }
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn more_constructors_either_work_or_refuse(
        (lower, upper, p) in (-1.0f64..1.0, -1.0f64..1.0, -0.5f64..1.5),
        (n_classes, cutoffs) in (0usize..8, prop::collection::vec(0usize..9, 0..4)),
        k in 0usize..3,
        seed in 0u64..1000,
    ) {
        let mut rng = nabla::rng(seed);
        let x = values(&[3, 4], seed);
        match nabla::nn::RRelu::new(lower, upper, &mut rng) {
            Ok(m) => {
                prop_assert!(lower <= upper);
                let y = Module::<f64>::forward(&m, &x).unwrap();
                prop_assert!(y.to_vec().iter().all(|v| v.is_finite()));
            }
            Err(e) => prop_assert!(lower > upper && e.to_string().contains("RReLU")),
        }
        match nabla::nn::Dropout::new(p, &mut rng) {
            Ok(m) => {
                prop_assert!((0.0..=1.0).contains(&p));
                let y = Module::<f64>::forward(&m, &x).unwrap();
                prop_assert!(y.to_vec().iter().all(|v| v.is_finite()));
            }
            Err(e) => prop_assert!(!(0.0..=1.0).contains(&p) && e.to_string().contains("Dropout")),
        }
        let valid = !cutoffs.is_empty() && cutoffs.windows(2).all(|w| w[0] < w[1]) && cutoffs[0] > 0 && *cutoffs.last().unwrap() < n_classes;
        match nabla::nn::AdaptiveLogSoftmaxWithLoss::<f64>::new(4, n_classes, &cutoffs, 2.0, false, &mut rng) {
            Ok(asm) => {
                prop_assert!(valid, "cutoffs {:?} for {} classes were accepted", cutoffs, n_classes);
                let logp = asm.log_prob(&x).unwrap();
                prop_assert_eq!(logp.shape().to_vec(), vec![3, n_classes]);
                for row in logp.exp().sum_dims(&[1], false).unwrap().to_vec() {
                    prop_assert!((row - 1.0).abs() < 1e-12);
                }
            }
            Err(e) => prop_assert!(!valid && e.to_string().contains("AdaptiveLogSoftmaxWithLoss")),
        }
        prop_assert_eq!(nabla::nn::TruncatedBptt::<f64>::new(k).is_ok(), k > 0);
        // A cell of any size steps, and refuses an input of the wrong width.
        let cell = nabla::nn::RecurrentCell::<f64>::new(CellKind::Gru, 4, k + 1, k == 1, &mut rng);
        let (h, _) = cell.step(&x, None).unwrap();
        prop_assert_eq!(h.shape().to_vec(), vec![3, k + 1]);
        prop_assert!(cell.step(&values(&[3, 5], seed), None).is_err());
    }
}
