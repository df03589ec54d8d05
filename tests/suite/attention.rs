//! Attention against PyTorch (tests/data/attention.safetensors, written by
//! scripts/attention_torch.py), against a per-head composition of primitive ops, and against
//! finite differences.

use nabla::autograd::{GradcheckOptions, gradcheck};
use nabla::nn::{AttnMask, MultiheadAttention, MultiheadOptions, StateDict, scaled_dot_product_attention};
use nabla::prelude::*;
use ndarray::ArrayD;

fn reference() -> StateDict {
    nabla::nn::read_safetensors(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/data/attention.safetensors")).unwrap()
}

fn get(state: &StateDict, name: &str) -> Tensor<f64> {
    let t = state.tensors.get(name).unwrap_or_else(|| panic!("{name} missing"));
    Tensor::<f64>::from_vec(t.values.clone(), &t.shape).unwrap()
}

fn flags(state: &StateDict, name: &str) -> ArrayD<bool> {
    get(state, name).to_ndarray().mapv(|v| v != 0.0)
}

fn assert_close(what: &str, got: &Tensor<f64>, want: &Tensor<f64>) {
    assert_eq!(got.shape(), want.shape(), "{what}: shape");
    let err = got.sub(want).unwrap().abs().amax().item().unwrap();
    assert!(err < 1e-10, "{what}: max |nabla - torch| = {err:e}");
}

/// Compares `y` and the gradients of `sum(y * cotangent)` with the reference's.
fn check_grads(state: &StateDict, case: &str, y: &Tensor<f64>, wrt: &[(&str, Tensor<f64>)]) {
    let cot = get(state, &format!("{case}.cotangent"));
    let tensors: Vec<&Tensor<f64>> = wrt.iter().map(|(_, t)| t).collect();
    let grads = nabla::grad(&[&y.mul(&cot).unwrap().sum()], &tensors, None, false).unwrap();
    for ((name, _), g) in wrt.iter().zip(&grads) {
        assert_close(&format!("{case} grad {name}"), g, &get(state, &format!("{case}.grad.{name}")));
    }
}

#[test]
fn sdpa_matches_pytorch_with_a_boolean_mask() {
    let r = reference();
    let [q, k, v] = ["q", "k", "v"].map(|n| get(&r, &format!("sdpa1.{n}")).requires_grad_(true).unwrap());
    let allowed = flags(&r, "sdpa1.allowed");
    let y = scaled_dot_product_attention(&q, &k, &v, Some(AttnMask::Allowed(&allowed)), false, None).unwrap();
    assert_close("sdpa1 output", &y, &get(&r, "sdpa1.output"));
    check_grads(&r, "sdpa1", &y, &[("q", q), ("k", k), ("v", v)]);
}

#[test]
fn sdpa_matches_pytorch_causal_with_a_scale() {
    let r = reference();
    let [q, k, v] = ["q", "k", "v"].map(|n| get(&r, &format!("sdpa2.{n}")).requires_grad_(true).unwrap());
    let y = scaled_dot_product_attention(&q, &k, &v, None, true, Some(0.3)).unwrap();
    assert_close("sdpa2 output", &y, &get(&r, "sdpa2.output"));
    check_grads(&r, "sdpa2", &y, &[("q", q), ("k", k), ("v", v)]);
}

/// Loads the `case.param.*` tensors into `mha` by PyTorch's names.
fn load(r: &StateDict, case: &str, mha: &MultiheadAttention<f64>) -> Vec<(String, Tensor<f64>)> {
    let prefix = format!("{case}.param.");
    let mut state = StateDict::default();
    for (name, t) in &r.tensors {
        if let Some(param) = name.strip_prefix(&prefix) {
            state.tensors.insert(param.to_string(), t.clone());
        }
    }
    let ours: Vec<String> = mha.named_parameters().into_iter().map(|(n, _)| n).collect();
    let theirs: Vec<String> = state.tensors.keys().cloned().collect();
    let mut sorted = ours.clone();
    sorted.sort();
    assert_eq!(sorted, theirs, "parameter names");
    nabla::nn::load_state_dict(&mha.named_parameters(), &state).unwrap();
    mha.named_parameters().into_iter().map(|(n, p)| (format!("param.{n}"), p.tensor())).collect()
}

#[test]
fn multihead_attention_matches_pytorch_with_padding_and_a_blocking_mask() {
    let r = reference();
    let mha: MultiheadAttention<f64> = MultiheadAttention::<f64>::new(8, 2, &mut nabla::rng(0)).unwrap();
    let params = load(&r, "mha1", &mha);
    let [q, k, v] = ["query", "key", "value"].map(|n| get(&r, &format!("mha1.{n}")).requires_grad_(true).unwrap());
    let (pad, blocked) = (flags(&r, "mha1.pad"), flags(&r, "mha1.blocked"));
    let out = mha.attend(&q, &k, &v, Some(&pad), Some(AttnMask::Blocked(&blocked)), false).unwrap();
    assert_close("mha1 output", &out.output, &get(&r, "mha1.output"));
    assert_close("mha1 weights", &out.weights, &get(&r, "mha1.weights"));
    let mut wrt = vec![("query".to_string(), q), ("key".to_string(), k), ("value".to_string(), v)];
    wrt.extend(params);
    let wrt: Vec<(&str, Tensor<f64>)> = wrt.iter().map(|(n, t)| (n.as_str(), t.clone())).collect();
    check_grads(&r, "mha1", &out.output, &wrt);
}

#[test]
fn multihead_attention_matches_pytorch_batch_first_with_kdim_vdim_and_a_float_mask() {
    let r = reference();
    let options = MultiheadOptions { kdim: Some(4), vdim: Some(5), batch_first: true, ..Default::default() };
    let mha: MultiheadAttention<f64> = MultiheadAttention::<f64>::with_options(6, 3, options, &mut nabla::rng(0)).unwrap();
    let params = load(&r, "mha2", &mha);
    let [q, k, v] = ["query", "key", "value"].map(|n| get(&r, &format!("mha2.{n}")).requires_grad_(true).unwrap());
    let additive = get(&r, "mha2.additive");
    let out = mha.attend(&q, &k, &v, None, Some(AttnMask::Additive(&additive)), false).unwrap();
    assert_close("mha2 output", &out.output, &get(&r, "mha2.output"));
    assert_close("mha2 weights", &out.weights, &get(&r, "mha2.weights"));
    let mut wrt = vec![("query".to_string(), q), ("key".to_string(), k), ("value".to_string(), v)];
    wrt.extend(params);
    let wrt: Vec<(&str, Tensor<f64>)> = wrt.iter().map(|(n, t)| (n.as_str(), t.clone())).collect();
    check_grads(&r, "mha2", &out.output, &wrt);
}

#[test]
fn multihead_attention_equals_its_heads_computed_one_by_one() {
    // softmax(Q_i K_iᵀ/√d) V_i per head with matrices sliced by hand, concatenated, projected.
    let (e, heads, l, s) = (6, 3, 4, 5);
    let d = e / heads;
    let mha: MultiheadAttention<f64> = MultiheadAttention::<f64>::new(e, heads, &mut nabla::rng(1)).unwrap();
    let x = Tensor::<f64>::randn(&[l, e], &mut nabla::rng(2));
    let mem = Tensor::<f64>::randn(&[s, e], &mut nabla::rng(3));
    let got = mha.attend(&x, &mem, &mem, None, None, false).unwrap().output;
    let p: std::collections::HashMap<String, Tensor<f64>> = mha.named_parameters().into_iter().map(|(n, p)| (n, p.tensor())).collect();
    let (w, b) = (&p["in_proj_weight"], &p["in_proj_bias"]);
    let proj = |t: &Tensor<f64>, i: usize, h: usize| {
        let rows = i * e + h * d;
        t.matmul(&w.narrow(0, rows, d).unwrap().t()).unwrap().add(&b.narrow(0, rows, d).unwrap()).unwrap()
    };
    let per_head: Vec<Tensor<f64>> = (0..heads)
        .map(|h| {
            let (q, k, v) = (proj(&x, 0, h), proj(&mem, 1, h), proj(&mem, 2, h));
            let scores = q.matmul(&k.t()).unwrap().mul_scalar(1.0 / (d as f64).sqrt());
            let logits = scores.sub(&scores.amax_dims(&[1], true).unwrap()).unwrap().exp();
            logits.div(&logits.sum_dims(&[1], true).unwrap()).unwrap().matmul(&v).unwrap()
        })
        .collect();
    let want = Tensor::cat(&per_head, 1).unwrap().matmul(&p["out_proj.weight"].t()).unwrap().add(&p["out_proj.bias"]).unwrap();
    assert_close("per-head composition", &got, &want);
}

#[test]
fn attention_matches_finite_differences() {
    let causal = |v: &[Tensor<f64>]| scaled_dot_product_attention(&v[0], &v[1], &v[2], None, true, None);
    let inputs = [[2, 3, 4], [2, 5, 4], [2, 5, 3]].map(|s| Tensor::<f64>::randn(&s, &mut nabla::rng(s[1] as u64 + s[2] as u64)));
    gradcheck(causal, &inputs, &GradcheckOptions::default()).unwrap();
    let mha: MultiheadAttention<f64> = MultiheadAttention::<f64>::new(4, 2, &mut nabla::rng(5)).unwrap();
    let pad = ArrayD::from_shape_fn(ndarray::IxDyn(&[2, 3]), |ix| ix[0] == 1 && ix[1] == 2);
    let inputs = [[3, 2, 4], [3, 2, 4]].map(|s| Tensor::<f64>::randn(&s, &mut nabla::rng(s[0] as u64 * 7)));
    gradcheck(|v| Ok(mha.attend(&v[0], &v[1], &v[1], Some(&pad), None, true)?.output), &inputs, &GradcheckOptions::default()).unwrap();
}

#[test]
fn attention_rejects_bad_shapes_by_name() {
    let err = MultiheadAttention::<f32>::new(6, 4, &mut nabla::rng(0)).err().unwrap().to_string();
    assert!(err.contains("MultiheadAttention") && err.contains('6') && err.contains('4'), "{err}");
    let mha: MultiheadAttention = MultiheadAttention::new(4, 2, &mut nabla::rng(0)).unwrap();
    let x = Tensor::zeros(&[3, 2, 4]);
    let err = mha.attend(&x, &Tensor::zeros(&[3, 2, 5]), &x, None, None, false).err().unwrap().to_string();
    assert!(err.contains("[3, 2, 5]"), "{err}");
    let pad = ArrayD::from_elem(ndarray::IxDyn(&[3, 3]), false);
    let err = mha.attend(&x, &x, &x, Some(&pad), None, false).err().unwrap().to_string();
    assert!(err.contains("key_padding_mask"), "{err}");
    let err = scaled_dot_product_attention(&Tensor::zeros(&[2, 3]), &Tensor::zeros(&[4, 5]), &Tensor::zeros(&[4, 5]), None, false, None)
        .err()
        .unwrap()
        .to_string();
    assert!(err.contains("scaled_dot_product_attention"), "{err}");
}
