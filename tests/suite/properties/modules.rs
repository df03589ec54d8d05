//! Losses and modules: constructors that work or refuse, shape checks.

use super::*;
use nabla::nn::{CellKind, Module, functional as F};
use nabla::ops::{Conv1dConfig, Conv2dConfig};
use ndarray::{ArrayD, IxDyn};

proptest! {
    #![proptest_config(config())]

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
