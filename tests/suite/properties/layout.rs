//! Products, layout ops (reshape, permute, expand, cat, stack) and indexing.

use super::*;
use ndarray::{ArrayD, Dimension, IxDyn};

proptest! {
    #![proptest_config(config())]

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
}
