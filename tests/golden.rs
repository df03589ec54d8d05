//! PyTorch conformance: every case in `$GOLDEN_DIR` (default `tests/golden/cases`, the
//! crate's copy of the PyTorch reference files; format in `tests/golden/FORMAT.md`) is rebuilt
//! with nabla's API, in f64 and in f32, and compared with PyTorch's numbers.
//!
//! Prints one line per failing case and closes with `golden: N passed, M failed, P pending`;
//! `GOLDEN_VERBOSE=1` prints one line per case and dtype. A case whose (kind, name) is on
//! the PENDING list (capabilities later issues bring) is pending; any other case that cannot
//! be built is a failure.

use nabla::prelude::*;
use ndarray::{ArrayD, IxDyn};
use safetensors::{Dtype, SafeTensors};
use serde_json::Value;
use std::collections::HashMap;
use std::io::Write;
use std::path::{Path, PathBuf};

/// (kind, name) pairs not built yet; `*` stands for every name of a kind.
const PENDING: &[(&str, &str)] = &[
    ("op", "conv1d"),
    ("op", "conv2d"),
    ("op", "max_pool1d"),
    ("op", "max_pool2d"),
    ("op", "avg_pool1d"),
    ("op", "avg_pool2d"),
    ("op", "lp_pool1d"),
    ("op", "lp_pool2d"),
    ("op", "lse_pool1d"),
    ("op", "lse_pool2d"),
    ("op", "mse_loss"),
    ("op", "nll_loss"),
    ("op", "cross_entropy"),
    ("op", "margin_ranking_loss"),
    ("module", "*"),
    ("optim", "*"),
    ("clip", "*"),
    ("train", "*"),
];

enum Data {
    Float(Vec<f64>),
    Int(Vec<i64>),
}

struct Stored {
    shape: Vec<usize>,
    data: Data,
}

struct Case {
    file: String,
    meta: HashMap<String, String>,
    config: Value,
    tensors: HashMap<String, Stored>,
}

impl Case {
    fn load(path: &Path) -> Result<Case, String> {
        let bytes = std::fs::read(path).map_err(|e| format!("read: {e}"))?;
        let (_, metadata) = SafeTensors::read_metadata(&bytes).map_err(|e| format!("header: {e}"))?;
        let meta = metadata.metadata().clone().unwrap_or_default();
        let st = SafeTensors::deserialize(&bytes).map_err(|e| format!("parse: {e}"))?;
        let mut tensors = HashMap::new();
        for (name, view) in st.tensors() {
            let raw = view.data();
            let data = match view.dtype() {
                Dtype::F64 => Data::Float(raw.chunks_exact(8).map(|c| f64::from_le_bytes(c.try_into().unwrap())).collect()),
                Dtype::F32 => Data::Float(raw.chunks_exact(4).map(|c| f32::from_le_bytes(c.try_into().unwrap()) as f64).collect()),
                Dtype::I64 => Data::Int(raw.chunks_exact(8).map(|c| i64::from_le_bytes(c.try_into().unwrap())).collect()),
                other => return Err(format!("tensor {name}: unsupported dtype {other:?}")),
            };
            tensors.insert(name, Stored { shape: view.shape().to_vec(), data });
        }
        let config = serde_json::from_str(meta.get("config").map(String::as_str).unwrap_or("{}")).map_err(|e| format!("config: {e}"))?;
        Ok(Case { file: path.file_name().unwrap().to_string_lossy().into_owned(), meta, config, tensors })
    }

    fn meta(&self, key: &str) -> Result<&str, String> {
        self.meta.get(key).map(String::as_str).ok_or_else(|| format!("metadata has no {key}"))
    }

    fn number(&self, key: &str) -> Result<f64, String> {
        self.meta(key)?.parse().map_err(|e| format!("{key}: {e}"))
    }

    fn float<T: Element>(&self, name: &str) -> Result<Tensor<T>, String> {
        match self.tensors.get(name) {
            Some(Stored { shape, data: Data::Float(v) }) => {
                Tensor::<T>::from_vec(v.iter().map(|&x| T::of(x)).collect(), shape).map_err(|e| e.to_string())
            }
            Some(_) => Err(format!("{name} is not a float tensor")),
            None => Err(format!("no tensor {name}")),
        }
    }

    fn reference(&self, name: &str) -> Result<(&[usize], &[f64]), String> {
        match self.tensors.get(name) {
            Some(Stored { shape, data: Data::Float(v) }) => Ok((shape, v)),
            _ => Err(format!("no float tensor {name}")),
        }
    }

    fn indices(&self, name: &str) -> Result<ArrayD<usize>, String> {
        match self.tensors.get(name) {
            Some(Stored { shape, data: Data::Int(v) }) => {
                let v = v
                    .iter()
                    .map(|&i| usize::try_from(i).map_err(|_| format!("{name}: negative index {i}")))
                    .collect::<Result<Vec<_>, _>>()?;
                ArrayD::from_shape_vec(IxDyn(shape), v).map_err(|e| e.to_string())
            }
            _ => Err(format!("no integer tensor {name}")),
        }
    }

    fn is_int(&self, name: &str) -> bool {
        matches!(self.tensors.get(name), Some(Stored { data: Data::Int(_), .. }))
    }

    fn cfg_f64(&self, key: &str) -> Option<f64> {
        self.config.get(key).and_then(Value::as_f64)
    }

    fn cfg_i64(&self, key: &str) -> Result<i64, String> {
        self.config.get(key).and_then(Value::as_i64).ok_or_else(|| format!("config has no integer {key}"))
    }

    /// `dim` as a list (an int is a one-element list); `None` when absent.
    fn cfg_dims(&self, key: &str) -> Option<Vec<isize>> {
        match self.config.get(key)? {
            Value::Number(n) => Some(vec![n.as_i64()? as isize]),
            Value::Array(a) => a.iter().map(|v| v.as_i64().map(|d| d as isize)).collect(),
            _ => None,
        }
    }

    fn cfg_list(&self, key: &str) -> Result<Vec<isize>, String> {
        self.cfg_dims(key).ok_or_else(|| format!("config has no list {key}"))
    }

    fn cfg_keepdim(&self) -> bool {
        self.config.get("keepdim").and_then(Value::as_bool).unwrap_or(false)
    }
}

/// The largest violation of `|a - b| <= atol + rtol |b|`, as a relative error, and whether
/// every element passes.
fn compare(actual: &[f64], expected: &[f64], rtol: f64, atol: f64) -> (bool, f64) {
    let mut ok = true;
    let mut worst: f64 = 0.0;
    for (&a, &b) in actual.iter().zip(expected) {
        let pass = (a - b).abs() <= atol + rtol * b.abs() || (a.is_nan() && b.is_nan()) || (a == b);
        ok &= pass;
        let rel = if a == b { 0.0 } else { (a - b).abs() / b.abs().max(1e-300) };
        worst = worst.max(if rel.is_nan() { f64::INFINITY } else { rel });
    }
    (ok, worst)
}

fn to_f64<T: Element>(t: &Tensor<T>) -> Vec<f64> {
    t.to_vec().into_iter().map(|x| x.to_f64().unwrap()).collect()
}

/// Builds the op of an `op` case from its inputs.
fn build_op<T: Element>(case: &Case, name: &str, x: &[Tensor<T>]) -> Result<Vec<Tensor<T>>, String> {
    let s = |e: nabla::Error| e.to_string();
    let dims_or_all = |x: &Tensor<T>| case.cfg_dims("dim").unwrap_or_else(|| (0..x.ndim() as isize).collect());
    let keepdim = case.cfg_keepdim();
    let y = match name {
        "neg" => x[0].neg(),
        "exp" => x[0].exp(),
        "log" => x[0].log(),
        "sqrt" => x[0].sqrt(),
        "abs" => x[0].abs(),
        "sigmoid" => x[0].sigmoid(),
        "tanh" => x[0].tanh(),
        "relu" => x[0].relu(),
        "dropout_eval" => x[0].dropout_eval(),
        "pow" => x[0].pow(T::of(case.cfg_f64("exponent").ok_or("config has no exponent")?)),
        "softplus" => x[0].softplus(T::of(case.cfg_f64("beta").unwrap_or(1.0)), T::of(case.cfg_f64("threshold").unwrap_or(20.0))),
        "leaky_relu" => x[0].leaky_relu(T::of(case.cfg_f64("negative_slope").unwrap_or(0.01))),
        "clamp" => x[0].clamp(T::of(case.cfg_f64("min").unwrap_or(f64::NEG_INFINITY)), T::of(case.cfg_f64("max").unwrap_or(f64::INFINITY))),
        "add" => x[0].add(&x[1]).map_err(s)?,
        "sub" => x[0].sub(&x[1]).map_err(s)?,
        "mul" => x[0].mul(&x[1]).map_err(s)?,
        "div" => x[0].div(&x[1]).map_err(s)?,
        "maximum" => x[0].maximum(&x[1]).map_err(s)?,
        "minimum" => x[0].minimum(&x[1]).map_err(s)?,
        "where" => nabla::where_(&x[0], &x[1], &x[2]).map_err(s)?,
        "sum" => x[0].sum_dims(&dims_or_all(&x[0]), keepdim).map_err(s)?,
        "mean" => x[0].mean_dims(&dims_or_all(&x[0]), keepdim).map_err(s)?,
        "amax" => x[0].amax_dims(&dims_or_all(&x[0]), keepdim).map_err(s)?,
        "amin" => x[0].amin_dims(&dims_or_all(&x[0]), keepdim).map_err(s)?,
        "logsumexp" => x[0].logsumexp_dims(&dims_or_all(&x[0]), keepdim).map_err(s)?,
        "softmax" => x[0].softmax(case.cfg_i64("dim")? as isize).map_err(s)?,
        "log_softmax" => x[0].log_softmax(case.cfg_i64("dim")? as isize).map_err(s)?,
        "reshape" => x[0].reshape(&case.cfg_list("shape")?).map_err(s)?,
        "permute" => x[0].permute(&case.cfg_list("dims")?).map_err(s)?,
        "transpose" => x[0].transpose(case.cfg_i64("dim0")? as isize, case.cfg_i64("dim1")? as isize).map_err(s)?,
        "expand" => x[0].expand(&case.cfg_list("size")?).map_err(s)?,
        "narrow" => {
            x[0].narrow(case.cfg_i64("dim")? as isize, case.cfg_i64("start")? as usize, case.cfg_i64("length")? as usize).map_err(s)?
        }
        "cat" => Tensor::cat(x, case.cfg_i64("dim")? as isize).map_err(s)?,
        "stack" => Tensor::stack(x, case.cfg_i64("dim")? as isize).map_err(s)?,
        "index_select" => {
            let index = case.indices("input.1")?;
            x[0].index_select(case.cfg_i64("dim")? as isize, index.as_slice().ok_or("index not contiguous")?).map_err(s)?
        }
        "gather" => x[0].gather(case.cfg_i64("dim")? as isize, &case.indices("input.1")?).map_err(s)?,
        "matmul" => x[0].matmul(&x[1]).map_err(s)?,
        "linear" => x[0].linear(&x[1], x.get(2)).map_err(s)?,
        other => return Err(format!("op {other} is not in nabla's vocabulary")),
    };
    Ok(vec![y])
}

/// Runs an `op` case in element type `T`; `Err` describes the first disagreement.
fn run_op<T: Element>(case: &Case, rtol: f64, atol: f64) -> Result<f64, String> {
    let name = case.meta("name")?;
    let n_inputs = case.number("n_inputs")? as usize;
    let n_outputs = case.number("n_outputs")? as usize;
    let order = case.meta.get("order").map(|o| o.parse::<u32>().unwrap_or(1)).unwrap_or(1);
    let grad_inputs: Vec<usize> = serde_json::from_str(case.meta("grad_inputs")?).map_err(|e| e.to_string())?;
    // Integer inputs (indices) are read by the builder itself; float inputs become tensors.
    let inputs: Vec<Tensor<T>> = (0..n_inputs)
        .filter(|i| !case.is_int(&format!("input.{i}")))
        .map(|i| case.float::<T>(&format!("input.{i}")).map(|t| t.requires_grad_(grad_inputs.contains(&i))))
        .collect::<Result<_, _>>()?;
    let outputs = build_op(case, name, &inputs)?;
    if outputs.len() != n_outputs {
        return Err(format!("built {} outputs, the case has {n_outputs}", outputs.len()));
    }
    let mut worst: f64 = 0.0;
    let mut check = |label: &str, t: &Tensor<T>, key: &str| -> Result<(), String> {
        let (shape, expected) = case.reference(key)?;
        if t.shape() != shape {
            return Err(format!("{label}: shape {:?}, PyTorch {:?}", t.shape(), shape));
        }
        let (ok, err) = compare(&to_f64(t), expected, rtol, atol);
        worst = worst.max(err);
        if ok {
            Ok(())
        } else {
            Err(format!("{label}: largest relative error {err:.3e}"))
        }
    };
    for (k, y) in outputs.iter().enumerate() {
        check(&format!("output.{k}"), y, &format!("output.{k}"))?;
    }
    let cotangents = (0..n_outputs).map(|k| case.float::<T>(&format!("cotangent.{k}"))).collect::<Result<Vec<_>, _>>()?;
    let wrt: Vec<Tensor<T>> = grad_inputs.iter().map(|&i| inputs[i].clone()).collect();
    let grads = nabla::grad(
        &outputs.iter().collect::<Vec<_>>(),
        &wrt.iter().collect::<Vec<_>>(),
        Some(&cotangents.iter().collect::<Vec<_>>()),
        order == 2,
    )
    .map_err(|e| e.to_string())?;
    for (g, &i) in grads.iter().zip(&grad_inputs) {
        check(&format!("grad.input.{i}"), g, &format!("grad.input.{i}"))?;
    }
    if order == 2 {
        let mut s = Tensor::<T>::zeros(&[]);
        for (g, &i) in grads.iter().zip(&grad_inputs) {
            s = s
                .add(&g.mul(&case.float::<T>(&format!("cotangent2.input.{i}"))?).map_err(|e| e.to_string())?.sum())
                .map_err(|e| e.to_string())?;
        }
        let grads2 = nabla::grad(&[&s], &wrt.iter().collect::<Vec<_>>(), None, false).map_err(|e| e.to_string())?;
        for (g, &i) in grads2.iter().zip(&grad_inputs) {
            check(&format!("grad2.input.{i}"), g, &format!("grad2.input.{i}"))?;
        }
    }
    Ok(worst)
}

fn run_case<T: Element>(case: &Case) -> Result<f64, String> {
    let (rtol, atol) = match T::DTYPE {
        "f64" => (case.number("rtol_f64")?, case.number("atol_f64")?),
        _ => (case.number("rtol_f32")?, case.number("atol_f32")?),
    };
    match case.meta("kind")? {
        "op" => run_op::<T>(case, rtol, atol),
        other => Err(format!("kind {other} is not supported")),
    }
}

fn is_pending(kind: &str, name: &str) -> bool {
    PENDING.iter().any(|&(k, n)| k == kind && (n == "*" || n == name))
}

fn golden_dir() -> PathBuf {
    std::env::var_os("GOLDEN_DIR").map(PathBuf::from).unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/golden/cases"))
}

#[test]
fn golden_cases_match_pytorch() {
    let dir = golden_dir();
    let verbose = std::env::var_os("GOLDEN_VERBOSE").is_some_and(|v| v == "1");
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("golden: cannot read {}: {e}", dir.display()))
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "safetensors"))
        .collect();
    files.sort();
    assert!(!files.is_empty(), "golden: no .safetensors cases in {}", dir.display());
    let (mut passed, mut failed, mut pending) = (0, 0, 0);
    for path in &files {
        let file = path.file_name().unwrap().to_string_lossy().into_owned();
        let case = match Case::load(path) {
            Ok(c) => c,
            Err(e) => {
                let _ = writeln!(std::io::stderr(), "FAIL {file} - cannot load: {e}");
                failed += 1;
                continue;
            }
        };
        let (kind, name) = (case.meta.get("kind").cloned().unwrap_or_default(), case.meta.get("name").cloned().unwrap_or_default());
        if is_pending(&kind, &name) {
            pending += 1;
            if verbose {
                println!("PENDING {} - {kind} {name} is not built yet", case.file);
            }
            continue;
        }
        // Every case must pass in f64; train cases are f64 only (FORMAT.md).
        let mut dtypes: Vec<(&str, Result<f64, String>)> = vec![("f64", run_case::<f64>(&case))];
        if kind != "train" {
            dtypes.push(("f32", run_case::<f32>(&case)));
        }
        let mut case_ok = true;
        for (dtype, result) in dtypes {
            match result {
                Ok(err) if verbose => println!("PASS {} {dtype} {err:.3e}", case.file),
                Ok(_) => {}
                Err(e) => {
                    case_ok = false;
                    let _ = writeln!(std::io::stderr(), "FAIL {} {dtype} {e}", case.file);
                }
            }
        }
        if case_ok {
            passed += 1;
        } else {
            failed += 1;
        }
    }
    // Written to stderr directly, not with println!, so that the summary shows even when
    // the test harness captures output.
    let _ = writeln!(std::io::stderr(), "golden: {passed} passed, {failed} failed, {pending} pending");
    assert_eq!(failed, 0, "golden: {failed} cases disagree with PyTorch (lines above)");
}
