//! PyTorch conformance: every case in `$GOLDEN_DIR` (default `tests/golden/cases`, the
//! crate's copy of the PyTorch reference files; format in `tests/golden/FORMAT.md`) is rebuilt
//! with nabla's API, in f64 and in f32, and compared with PyTorch's numbers.
//!
//! Prints one line per failing case and closes with `golden: N passed, M failed, P pending`;
//! `GOLDEN_VERBOSE=1` prints one line per case and dtype. A case whose (kind, name) is on
//! the PENDING list (capabilities later issues bring) is pending; any other case that cannot
//! be built is a failure.

use nabla::nn::StoredTensor;
use nabla::nn::{Buffer, Param, Reduction, StateDict, load_state_dict};
use nabla::prelude::*;
use ndarray::{ArrayD, IxDyn};
use safetensors::{Dtype, SafeTensors};
use serde_json::Value;
use std::collections::HashMap;
use std::io::Write;
use std::path::{Path, PathBuf};

mod configs;
mod modules;
mod ops;
mod optimizers;
mod schedules;
mod train;

use configs::*;
use modules::*;
use ops::*;
use optimizers::*;
use schedules::*;
use train::*;

/// (kind, name) pairs not built yet; `*` stands for every name of a kind.
const PENDING: &[(&str, &str)] = &[];

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

    /// An integer tensor as stored, negatives included.
    fn int64s(&self, name: &str) -> Result<ArrayD<i64>, String> {
        match self.tensors.get(name) {
            Some(Stored { shape, data: Data::Int(v) }) => ArrayD::from_shape_vec(IxDyn(shape), v.clone()).map_err(|e| e.to_string()),
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

    fn reduction(&self) -> Result<Reduction, String> {
        Reduction::parse(self.config.get("reduction").and_then(Value::as_str).unwrap_or("mean")).map_err(|e| e.to_string())
    }

    /// PyTorch's `ignore_index` (default -100, which no label can equal).
    fn ignore_index(&self) -> Option<usize> {
        self.config.get("ignore_index").and_then(Value::as_i64).and_then(|i| usize::try_from(i).ok())
    }

    /// The case's tensors under `prefix` (e.g. `param.`), names without the prefix, as a
    /// state dict of element type `T`.
    fn state_dict<T: Element>(&self, prefix: &str) -> StateDict {
        let dtype = if T::DTYPE == "f64" { "F64" } else { "F32" };
        let mut state = StateDict::default();
        for (name, stored) in &self.tensors {
            if let (Some(short), Data::Float(v)) = (name.strip_prefix(prefix), &stored.data) {
                let values = v.iter().map(|&x| T::of(x).to_f64().unwrap()).collect();
                state.tensors.insert(short.to_string(), StoredTensor { dtype: dtype.into(), shape: stored.shape.clone(), values });
            }
        }
        state
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

/// Every op in `t`'s graph is in `nabla::ops::registry()`, whose tests check each op's
/// gradients: a composition the golden cases reach cannot record an op those tests skip.
fn registered<T: Element>(label: &str, t: &Tensor<T>) -> Result<(), String> {
    let (mut seen, mut stack) = (std::collections::HashSet::new(), vec![nabla::autograd::GraphNode::from(t)]);
    while let Some(node) = stack.pop() {
        if !seen.insert(node.id()) {
            continue;
        }
        if let Some(name) = node.op_name()
            && !nabla::ops::registry().any(|op| op.name == name)
        {
            return Err(format!("{label}: records {name}, which nabla::ops::registry() lacks"));
        }
        stack.extend(node.inputs());
    }
    Ok(())
}

/// Compares `actual` with the case's tensor `key`, tracking the worst error.
fn check_tensor<T: Element>(
    case: &Case,
    label: &str,
    actual: &Tensor<T>,
    key: &str,
    rtol: f64,
    atol: f64,
    worst: &mut f64,
) -> Result<(), String> {
    let (shape, expected) = case.reference(key)?;
    if actual.shape() != shape {
        return Err(format!("{label}: shape {:?}, PyTorch {:?}", actual.shape(), shape));
    }
    registered(label, actual)?;
    let (ok, err) = compare(&to_f64(actual), expected, rtol, atol);
    *worst = worst.max(err);
    if ok { Ok(()) } else { Err(format!("{label}: largest relative error {err:.3e}")) }
}

type Forward<T> = Box<dyn Fn(&[Tensor<T>]) -> Result<Vec<Tensor<T>>, String> + Send + Sync>;

/// A built module: its parameters and buffers by name, and its forward.
type Built<T> = (Vec<(String, Param<T>)>, Vec<(String, Buffer<T>)>, Forward<T>);

/// Loads `params` and `buffers` from the case's tensors named `prefix` + name, strictly:
/// each must be present, and no other tensor may carry the prefix.
fn load_all<T: Element>(case: &Case, prefix: &str, params: &[(String, Param<T>)], buffers: &[(String, Buffer<T>)]) -> Result<(), String> {
    let mut state = case.state_dict::<T>(prefix);
    for (name, buffer) in buffers {
        let key = format!("{prefix}{name}");
        let stored = case.tensors.get(&key).ok_or_else(|| format!("no buffer {key}"))?;
        buffer.set(stored.as_array::<T>()).map_err(|e| format!("{key}: {e}"))?;
        state.tensors.remove(name);
    }
    load_state_dict(params, &state).map_err(|e| e.to_string())
}

/// Compares a buffer with the case's tensor `key`: exactly for an integer one.
fn check_buffer<T: Element>(case: &Case, key: &str, buffer: &Buffer<T>, rtol: f64, atol: f64, worst: &mut f64) -> Result<(), String> {
    let stored = case.tensors.get(key).ok_or_else(|| format!("no tensor {key}"))?;
    if let Data::Int(expected) = &stored.data {
        let actual: Vec<i64> = to_f64(&buffer.tensor()).iter().map(|&v| v as i64).collect();
        return if &actual == expected { Ok(()) } else { Err(format!("{key}: {actual:?}, PyTorch {expected:?}")) };
    }
    check_tensor(case, key, &buffer.tensor(), key, rtol, atol, worst)
}

impl Stored {
    fn as_array<T: Element>(&self) -> ArrayD<T> {
        let values: Vec<T> = match &self.data {
            Data::Float(v) => v.iter().map(|&x| T::of(x)).collect(),
            Data::Int(v) => v.iter().map(|&x| T::of(x as f64)).collect(),
        };
        ArrayD::from_shape_vec(IxDyn(&self.shape), values).expect("shape of the data")
    }
}

fn run_case<T: Element>(case: &Case) -> Result<f64, String> {
    let (rtol, atol) = match T::DTYPE {
        "f64" => (case.number("rtol_f64")?, case.number("atol_f64")?),
        _ => (case.number("rtol_f32")?, case.number("atol_f32")?),
    };
    match case.meta("kind")? {
        "op" => run_op::<T>(case, rtol, atol),
        "module" => run_module::<T>(case, rtol, atol),
        "optim" => run_optim::<T>(case, rtol, atol),
        "clip" => run_clip::<T>(case, rtol, atol),
        "train" => run_train::<T>(case, rtol, atol),
        "schedule" => run_schedule(case, rtol, atol),
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
        if is_pending(&kind, &name) || (kind == "train" && train_layers_pending(&case)) {
            pending += 1;
            if verbose {
                let what = if kind == "train" { format!("a layer of this {name} is") } else { format!("{kind} {name} is") };
                println!("PENDING {} - {what} not built yet", case.file);
            }
            continue;
        }
        // Every case must pass in f64; train and schedule cases are f64 only (FORMAT.md).
        let mut dtypes: Vec<(&str, Result<f64, String>)> = vec![("f64", run_case::<f64>(&case))];
        if kind != "train" && kind != "schedule" {
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
