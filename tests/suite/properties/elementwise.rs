//! Elementwise ops, broadcasting, reductions and the softmax family.

use super::*;
use ndarray::{ArrayD, Dimension, IxDyn};

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
}
