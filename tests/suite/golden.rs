//! PyTorch conformance: every case in `$GOLDEN_DIR` (default `tests/golden/cases`, the
//! crate's copy of the PyTorch reference files; format in `tests/golden/FORMAT.md`) is rebuilt
//! with nabla's API, in f64 and in f32, and compared with PyTorch's numbers.
//!
//! Prints one line per failing case and closes with `golden: N passed, M failed, P pending`;
//! `GOLDEN_VERBOSE=1` prints one line per case and dtype. A case whose (kind, name) is on
//! the PENDING list (capabilities later issues bring) is pending; any other case that cannot
//! be built is a failure.

use nabla::nn::{Param, Reduction, StateDict, functional, load_state_dict};
use nabla::nn::{Pool1d, Pool2d, PoolKind, StoredTensor};
use nabla::ops::{Conv1dConfig, Conv2dConfig, Pool1dConfig, Pool2dConfig};
use nabla::prelude::*;
use ndarray::{ArrayD, IxDyn};
use safetensors::{Dtype, SafeTensors};
use serde_json::Value;
use std::collections::HashMap;
use std::io::Write;
use std::path::{Path, PathBuf};

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

/// An int or a list of ints in a config, as one value per spatial dim (`dims` of them).
fn spatial(config: &Value, key: &str, dims: usize, default: Option<usize>) -> Result<Vec<usize>, String> {
    match config.get(key) {
        Some(Value::Number(n)) => Ok(vec![n.as_u64().ok_or(format!("{key} is not a count"))? as usize; dims]),
        Some(Value::Array(a)) if a.len() == dims => {
            a.iter().map(|v| v.as_u64().map(|v| v as usize).ok_or(format!("{key} is not a list of counts"))).collect()
        }
        None | Some(Value::Null) => default.map(|d| vec![d; dims]).ok_or(format!("config has no {key}")),
        Some(other) => Err(format!("{key} = {other} is not a count or a list of {dims}")),
    }
}

fn conv2d_config(config: &Value) -> Result<Conv2dConfig, String> {
    let pair = |key, default| spatial(config, key, 2, Some(default)).map(|v| [v[0], v[1]]);
    Ok(Conv2dConfig {
        stride: pair("stride", 1)?,
        padding: pair("padding", 0)?,
        dilation: pair("dilation", 1)?,
        groups: config.get("groups").and_then(Value::as_u64).unwrap_or(1) as usize,
    })
}

fn conv1d_config(config: &Value) -> Result<Conv1dConfig, String> {
    let one = |key, default| spatial(config, key, 1, Some(default)).map(|v| v[0]);
    Ok(Conv1dConfig {
        stride: one("stride", 1)?,
        padding: one("padding", 0)?,
        dilation: one("dilation", 1)?,
        groups: config.get("groups").and_then(Value::as_u64).unwrap_or(1) as usize,
    })
}

fn pool2d_config(config: &Value) -> Result<Pool2dConfig, String> {
    let kernel = spatial(config, "kernel_size", 2, None)?;
    let stride = spatial(config, "stride", 2, None).unwrap_or_else(|_| kernel.clone());
    let padding = spatial(config, "padding", 2, Some(0))?;
    let dilation = spatial(config, "dilation", 2, Some(1))?;
    Ok(Pool2dConfig {
        kernel_size: [kernel[0], kernel[1]],
        stride: [stride[0], stride[1]],
        padding: [padding[0], padding[1]],
        dilation: [dilation[0], dilation[1]],
    })
}

fn pool1d_config(config: &Value) -> Result<Pool1dConfig, String> {
    let kernel = spatial(config, "kernel_size", 1, None)?[0];
    let stride = spatial(config, "stride", 1, None).map(|v| v[0]).unwrap_or(kernel);
    Ok(Pool1dConfig {
        kernel_size: kernel,
        stride,
        padding: spatial(config, "padding", 1, Some(0))?[0],
        dilation: spatial(config, "dilation", 1, Some(1))?[0],
    })
}

/// The pooling of a module or op name (`MaxPool2d`, `lp_pool1d`, …) and its config.
fn pool_kind(name: &str, config: &Value) -> Option<PoolKind> {
    let lower = name.to_lowercase();
    if lower.starts_with("maxpool") || lower.starts_with("max_pool") {
        Some(PoolKind::Max)
    } else if lower.starts_with("avgpool") || lower.starts_with("avg_pool") {
        Some(PoolKind::Avg { count_include_pad: config.get("count_include_pad").and_then(Value::as_bool).unwrap_or(true) })
    } else if lower.starts_with("lppool") || lower.starts_with("lp_pool") {
        Some(PoolKind::Lp { norm_type: config.get("norm_type").and_then(Value::as_f64).unwrap_or(2.0) })
    } else if lower.starts_with("lsepool") || lower.starts_with("lse_pool") {
        Some(PoolKind::Lse { beta: config.get("beta").and_then(Value::as_f64).unwrap_or(1.0) })
    } else {
        None
    }
}

/// A pooling layer from its name and config.
fn pool_module<T: Element>(name: &str, config: &Value) -> Result<Option<Box<dyn Module<T>>>, String> {
    let Some(kind) = pool_kind(name, config) else { return Ok(None) };
    Ok(Some(if name.ends_with("1d") {
        Box::new(Pool1d { kind, config: pool1d_config(config)? })
    } else {
        Box::new(Pool2d { kind, config: pool2d_config(config)? })
    }))
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
        "conv1d" => x[0].conv1d(&x[1], x.get(2), conv1d_config(&case.config)?).map_err(s)?,
        "conv2d" => x[0].conv2d(&x[1], x.get(2), conv2d_config(&case.config)?).map_err(s)?,
        pool if pool_kind(pool, &case.config).is_some() => {
            let layer = pool_module::<T>(pool, &case.config)?.expect("a pool name");
            layer.forward(&x[0]).map_err(s)?
        }
        "mse_loss" => functional::mse_loss(&x[0], &x[1], case.reduction()?).map_err(s)?,
        "nll_loss" => functional::nll_loss(&x[0], &case.indices("input.1")?, None, case.ignore_index(), case.reduction()?).map_err(s)?,
        "cross_entropy" => functional::cross_entropy_with(
            &x[0],
            &case.indices("input.1")?,
            None,
            case.ignore_index(),
            case.cfg_f64("label_smoothing").unwrap_or(0.0),
            case.reduction()?,
        )
        .map_err(s)?,
        "margin_ranking_loss" => {
            functional::margin_ranking_loss(&x[0], &x[1], &x[2], case.cfg_f64("margin").unwrap_or(0.0), case.reduction()?).map_err(s)?
        }
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
        .map(|i| case.float::<T>(&format!("input.{i}")).map(|t| t.requires_grad_(grad_inputs.contains(&i)).unwrap()))
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
        registered(label, t)?;
        let (ok, err) = compare(&to_f64(t), expected, rtol, atol);
        worst = worst.max(err);
        if ok { Ok(()) } else { Err(format!("{label}: largest relative error {err:.3e}")) }
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

/// A built module: its parameters by name and its forward.
type Built<T> = (Vec<(String, Param<T>)>, Forward<T>);

/// A module (or loss) from its class name and config: its parameters by name and its
/// forward over the case's float inputs (integer inputs are read from the case).
fn build_module<T: Element>(case: &Case, name: &str, config: &Value, training: bool) -> Result<Built<T>, String> {
    let s = |e: nabla::Error| e.to_string();
    let get = |k: &str| config.get(k).and_then(Value::as_f64);
    let get_usize = |k: &str| config.get(k).and_then(Value::as_u64).map(|v| v as usize).ok_or_else(|| format!("config has no {k}"));
    let mut rng = nabla::rng(0);
    let module: Box<dyn Module<T>> = match name {
        "Linear" => {
            let bias = config.get("bias").and_then(Value::as_bool).unwrap_or(true);
            Box::new(nn::Linear::<T>::with_bias(get_usize("in_features")?, get_usize("out_features")?, bias, &mut rng))
        }
        "Embedding" => Box::new(nn::Embedding::<T>::new(get_usize("num_embeddings")?, get_usize("embedding_dim")?, &mut rng)),
        "Flatten" => Box::new(nn::Flatten {
            start_dim: config.get("start_dim").and_then(Value::as_i64).unwrap_or(1) as isize,
            end_dim: config.get("end_dim").and_then(Value::as_i64).unwrap_or(-1) as isize,
        }),
        "Conv1d" | "Conv2d" => {
            let bias = config.get("bias").and_then(Value::as_bool).unwrap_or(true);
            let (cin, cout) = (get_usize("in_channels")?, get_usize("out_channels")?);
            if name == "Conv1d" {
                let k = spatial(config, "kernel_size", 1, None)?[0];
                Box::new(nn::Conv1d::<T>::new(cin, cout, k, conv1d_config(config)?, bias, &mut rng).map_err(s)?)
            } else {
                let k = spatial(config, "kernel_size", 2, None)?;
                Box::new(nn::Conv2d::<T>::new(cin, cout, [k[0], k[1]], conv2d_config(config)?, bias, &mut rng).map_err(s)?)
            }
        }
        pool if pool_kind(pool, config).is_some() => pool_module::<T>(pool, config)?.expect("a pool name"),
        "ReLU" => Box::new(nn::Relu),
        "Sigmoid" => Box::new(nn::Sigmoid),
        "Tanh" => Box::new(nn::Tanh),
        "Softplus" => Box::new(nn::Softplus { beta: get("beta").unwrap_or(1.0), threshold: get("threshold").unwrap_or(20.0) }),
        "LeakyReLU" => Box::new(nn::LeakyRelu { negative_slope: get("negative_slope").unwrap_or(0.01) }),
        "PReLU" => Box::new(nn::PRelu::<T>::new(get_usize("num_parameters").unwrap_or(1), get("init").unwrap_or(0.25))),
        "RReLU" => Box::new(nn::RRelu::new(get("lower").unwrap_or(1.0 / 8.0), get("upper").unwrap_or(1.0 / 3.0), &mut rng).map_err(s)?),
        "Softmax" => Box::new(nn::Softmax { dim: case_dim(config)? }),
        "LogSoftmax" => Box::new(nn::LogSoftmax { dim: case_dim(config)? }),
        "MSELoss" | "NLLLoss" | "CrossEntropyLoss" | "MarginRankingLoss" => return build_loss(case, name, config),
        "RNN" | "GRU" | "LSTM" => {
            let kind = match (name, config.get("nonlinearity").and_then(Value::as_str)) {
                ("GRU", _) => nn::CellKind::Gru,
                ("LSTM", _) => nn::CellKind::Lstm,
                (_, Some("relu")) => nn::CellKind::RnnRelu,
                _ => nn::CellKind::RnnTanh,
            };
            let flag = |k: &str, d: bool| config.get(k).and_then(Value::as_bool).unwrap_or(d);
            let net = nn::Recurrent::<T>::new(
                kind,
                get_usize("input_size")?,
                get_usize("hidden_size")?,
                nn::RecurrentOptions {
                    num_layers: get_usize("num_layers").unwrap_or(1),
                    bias: flag("bias", true),
                    batch_first: flag("batch_first", false),
                    bidirectional: flag("bidirectional", false),
                    ..Default::default()
                },
                &mut rng,
            );
            let params = net.named_parameters();
            let forward: Forward<T> = Box::new(move |x| {
                let state = x.get(1).map(|h0| (h0, x.get(2)));
                let out = net.forward_with_state(&x[0], state).map_err(|e| e.to_string())?;
                let mut outputs = vec![out.output, out.h_n];
                outputs.extend(out.c_n);
                Ok(outputs)
            });
            return Ok((params, forward));
        }
        "AdaptiveLogSoftmaxWithLoss" => {
            let cutoffs: Vec<usize> = config
                .get("cutoffs")
                .and_then(Value::as_array)
                .ok_or("config has no cutoffs")?
                .iter()
                .filter_map(Value::as_u64)
                .map(|c| c as usize)
                .collect();
            let asm = nn::AdaptiveLogSoftmaxWithLoss::<T>::new(
                get_usize("in_features")?,
                get_usize("n_classes")?,
                &cutoffs,
                get("div_value").unwrap_or(4.0),
                config.get("head_bias").and_then(Value::as_bool).unwrap_or(false),
                &mut rng,
            )
            .map_err(s)?;
            let params = asm.named_parameters();
            let target = case.indices("input.1")?;
            let forward: Forward<T> = Box::new(move |x| {
                let out = asm.forward(&x[0], &target).map_err(|e| e.to_string())?;
                Ok(vec![out.output, out.loss])
            });
            return Ok((params, forward));
        }
        other => return Err(format!("module {other} is not in nabla's vocabulary")),
    };
    module.set_training(training);
    let params = module.named_parameters();
    let int_input = case.is_int("input.0").then(|| case.indices("input.0")).transpose()?;
    let forward: Forward<T> = Box::new(move |x| {
        // Integer ids (Embedding) reach the module as a float tensor of whole numbers.
        let y = match &int_input {
            Some(ids) if x.is_empty() => {
                let as_float =
                    Tensor::<T>::from_vec(ids.iter().map(|&i| T::of(i as f64)).collect(), ids.shape()).map_err(|e| e.to_string())?;
                module.forward(&as_float)
            }
            _ => module.forward(&x[0]),
        };
        y.map(|y| vec![y]).map_err(|e| e.to_string())
    });
    Ok((params, forward))
}

fn case_dim(config: &Value) -> Result<isize, String> {
    config.get("dim").and_then(Value::as_i64).map(|d| d as isize).ok_or_else(|| "config has no dim".to_string())
}

fn build_loss<T: Element>(case: &Case, name: &str, config: &Value) -> Result<Built<T>, String> {
    let reduction = Reduction::parse(config.get("reduction").and_then(Value::as_str).unwrap_or("mean")).map_err(|e| e.to_string())?;
    let margin = config.get("margin").and_then(Value::as_f64).unwrap_or(0.0);
    let smoothing = config.get("label_smoothing").and_then(Value::as_f64).unwrap_or(0.0);
    let ignore_index = config.get("ignore_index").and_then(Value::as_i64).and_then(|i| usize::try_from(i).ok());
    let weight = match config.get("weight") {
        Some(Value::Array(a)) => Some(
            Tensor::<T>::from_vec(a.iter().map(|v| T::of(v.as_f64().unwrap_or(f64::NAN))).collect(), &[a.len()])
                .map_err(|e| e.to_string())?,
        ),
        _ => None,
    };
    let target = if case.is_int("input.1") { Some(case.indices("input.1")?) } else { None };
    let name = name.to_string();
    let forward: Forward<T> = Box::new(move |x| {
        let e = |e: nabla::Error| e.to_string();
        let y = match name.as_str() {
            "MSELoss" => nn::MseLoss { reduction }.forward(&x[0], &x[1]).map_err(e)?,
            "MarginRankingLoss" => nn::MarginRankingLoss { margin, reduction }.forward(&x[0], &x[1], &x[2]).map_err(e)?,
            "NLLLoss" => nn::NllLoss { weight: weight.clone(), ignore_index, reduction }
                .forward(&x[0], target.as_ref().ok_or("no target")?)
                .map_err(e)?,
            _ => nn::CrossEntropyLoss { weight: weight.clone(), ignore_index, label_smoothing: smoothing, reduction }
                .forward(&x[0], target.as_ref().ok_or("no target")?)
                .map_err(e)?,
        };
        Ok(vec![y])
    });
    Ok((Vec::new(), forward))
}

/// Runs a `module` case: parameters loaded by their PyTorch names, outputs, and gradients of
/// inputs and parameters.
fn run_module<T: Element>(case: &Case, rtol: f64, atol: f64) -> Result<f64, String> {
    let name = case.meta("name")?;
    let training = case.meta.get("mode").map(String::as_str) == Some("train");
    let (params, forward) = build_module::<T>(case, name, &case.config, training)?;
    load_state_dict(&params, &case.state_dict::<T>("param.")).map_err(|e| e.to_string())?;
    let n_inputs = case.number("n_inputs")? as usize;
    let n_outputs = case.number("n_outputs")? as usize;
    let grad_inputs: Vec<usize> = serde_json::from_str(case.meta("grad_inputs")?).map_err(|e| e.to_string())?;
    let float_inputs: Vec<usize> = (0..n_inputs).filter(|i| !case.is_int(&format!("input.{i}"))).collect();
    let inputs: Vec<Tensor<T>> = float_inputs
        .iter()
        .map(|&i| case.float::<T>(&format!("input.{i}")).map(|t| t.requires_grad_(grad_inputs.contains(&i)).unwrap()))
        .collect::<Result<_, _>>()?;
    let snapshots: Vec<Tensor<T>> = params.iter().map(|(_, p)| p.tensor()).collect();
    let outputs = forward(&inputs)?;
    if outputs.len() != n_outputs {
        return Err(format!("built {} outputs, the case has {n_outputs}", outputs.len()));
    }
    let mut worst: f64 = 0.0;
    for (k, y) in outputs.iter().enumerate() {
        check_tensor(case, &format!("output.{k}"), y, &format!("output.{k}"), rtol, atol, &mut worst)?;
    }
    let cotangents = (0..n_outputs).map(|k| case.float::<T>(&format!("cotangent.{k}"))).collect::<Result<Vec<_>, _>>()?;
    let mut wrt: Vec<&Tensor<T>> =
        grad_inputs.iter().map(|&i| &inputs[float_inputs.iter().position(|&f| f == i).expect("float input")]).collect();
    wrt.extend(snapshots.iter());
    let grads = nabla::grad(&outputs.iter().collect::<Vec<_>>(), &wrt, Some(&cotangents.iter().collect::<Vec<_>>()), false)
        .map_err(|e| e.to_string())?;
    for (g, &i) in grads.iter().zip(&grad_inputs) {
        check_tensor(case, &format!("grad.input.{i}"), g, &format!("grad.input.{i}"), rtol, atol, &mut worst)?;
    }
    for (g, (pname, _)) in grads[grad_inputs.len()..].iter().zip(&params) {
        let key = format!("grad.param.{pname}");
        if case.tensors.contains_key(&key) {
            check_tensor(case, &key, g, &key, rtol, atol, &mut worst)?;
        }
    }
    Ok(worst)
}

fn build_optimizer<T: Element>(name: &str, config: &Value, params: Vec<Param<T>>) -> Result<Box<dyn Optimizer<T>>, String> {
    let get = |k: &str, default: f64| config.get(k).and_then(Value::as_f64).unwrap_or(default);
    let flag = |k: &str| config.get(k).and_then(Value::as_bool).unwrap_or(false);
    let betas = config
        .get("betas")
        .and_then(Value::as_array)
        .map(|b| (b[0].as_f64().unwrap_or(0.9), b[1].as_f64().unwrap_or(0.999)))
        .unwrap_or((0.9, 0.999));
    Ok(match name {
        "SGD" => Box::new(
            optim::Sgd::new(params, get("lr", 1e-3))
                .momentum(get("momentum", 0.0))
                .dampening(get("dampening", 0.0))
                .weight_decay(get("weight_decay", 0.0))
                .nesterov(flag("nesterov")),
        ),
        "Adam" => Box::new(
            optim::Adam::new(params, get("lr", 1e-3))
                .betas(betas.0, betas.1)
                .eps(get("eps", 1e-8))
                .weight_decay(get("weight_decay", 0.0))
                .amsgrad(flag("amsgrad")),
        ),
        "AdamW" => Box::new(
            optim::AdamW::new(params, get("lr", 1e-3))
                .betas(betas.0, betas.1)
                .eps(get("eps", 1e-8))
                .weight_decay(get("weight_decay", 0.01))
                .amsgrad(flag("amsgrad")),
        ),
        "RMSprop" => Box::new(
            optim::RmsProp::new(params, get("lr", 1e-2))
                .alpha(get("alpha", 0.99))
                .eps(get("eps", 1e-8))
                .weight_decay(get("weight_decay", 0.0))
                .momentum(get("momentum", 0.0))
                .centered(flag("centered")),
        ),
        other => return Err(format!("optimizer {other} is not in nabla's vocabulary")),
    })
}

/// Runs an `optim` case: the given gradients fed to the optimizer for `steps` steps.
fn run_optim<T: Element>(case: &Case, rtol: f64, atol: f64) -> Result<f64, String> {
    let n = case.number("n_params")? as usize;
    let steps = case.number("steps")? as usize;
    let params: Vec<Param<T>> = (0..n).map(|i| case.float::<T>(&format!("param.{i}")).map(Param::new)).collect::<Result<_, _>>()?;
    let mut opt = build_optimizer(case.meta("name")?, &case.config, params.clone())?;
    for k in 0..steps {
        let mut grads = Gradients::new();
        for (i, p) in params.iter().enumerate() {
            grads.insert(&p.tensor(), case.float::<T>(&format!("grad.{k}.{i}"))?);
        }
        opt.step(&grads).map_err(|e| e.to_string())?;
    }
    let mut worst: f64 = 0.0;
    for (i, p) in params.iter().enumerate() {
        check_tensor(case, &format!("expected.{i}"), &p.tensor(), &format!("expected.{i}"), rtol, atol, &mut worst)?;
    }
    Ok(worst)
}

/// Runs a `clip` case: the inputs are gradients of as many tensors, clipped together.
fn run_clip<T: Element>(case: &Case, rtol: f64, atol: f64) -> Result<f64, String> {
    let n = case.number("n_inputs")? as usize;
    let owners: Vec<Tensor<T>> = (0..n).map(|_| Tensor::<T>::zeros(&[1])).collect();
    let mut grads = Gradients::new();
    for (i, owner) in owners.iter().enumerate() {
        grads.insert(owner, case.float::<T>(&format!("input.{i}"))?);
    }
    let mut worst: f64 = 0.0;
    match case.meta("name")? {
        "clip_grad_norm_" => {
            let norm_type = match case.config.get("norm_type") {
                Some(Value::String(s)) if s == "inf" => f64::INFINITY,
                Some(v) => v.as_f64().ok_or("norm_type")?,
                None => 2.0,
            };
            let total = optim::clip_grad_norm_with(
                &mut grads,
                case.cfg_f64("max_norm").ok_or("max_norm")?,
                optim::ClipNorm::default().norm_type(norm_type),
            )
            .map_err(|e| e.to_string())?;
            check_tensor(case, "total_norm", &Tensor::<T>::scalar(T::of(total)), "total_norm", rtol, atol, &mut worst)?;
        }
        "clip_grad_value_" => {
            optim::clip_grad_value(&mut grads, case.cfg_f64("clip_value").ok_or("clip_value")?).map_err(|e| e.to_string())?
        }
        other => return Err(format!("clip {other} is not in nabla's vocabulary")),
    }
    for (i, owner) in owners.iter().enumerate() {
        check_tensor(
            case,
            &format!("output.{i}"),
            grads.get(owner).ok_or("gradient lost")?,
            &format!("output.{i}"),
            rtol,
            atol,
            &mut worst,
        )?;
    }
    Ok(worst)
}

/// The (class name, config) pairs of a `train` case's JSON list.
fn layer_list(json: &str) -> Result<Vec<(String, Value)>, String> {
    let list: Vec<(String, Value)> = serde_json::from_str(json).map_err(|e| e.to_string())?;
    Ok(list)
}

/// Runs a `train` case: a Sequential trained for a few steps; losses and final parameters.
fn run_train<T: Element>(case: &Case, rtol: f64, atol: f64) -> Result<f64, String> {
    let layers = layer_list(case.meta("layers")?)?;
    let mut model = nn::Sequential::<T>::new();
    let mut all_params = Vec::new();
    for (i, (name, config)) in layers.iter().enumerate() {
        let (params, forward) = build_module::<T>(case, name, config, true)?;
        all_params.extend(params.into_iter().map(|(n, p)| (format!("{i}.{n}"), p)));
        model = model.push(FnModule(forward));
    }
    load_state_dict(&all_params, &case.state_dict::<T>("param.")).map_err(|e| e.to_string())?;
    let (loss_name, loss_config): (String, Value) = serde_json::from_str(case.meta("loss")?).map_err(|e| e.to_string())?;
    let (optim_name, optim_config): (String, Value) = serde_json::from_str(case.meta("optim")?).map_err(|e| e.to_string())?;
    let mut opt = build_optimizer(&optim_name, &optim_config, all_params.iter().map(|(_, p)| p.clone()).collect())?;
    let steps = case.number("steps")? as usize;
    let mut losses = Vec::new();
    for k in 0..steps {
        let x = case.float::<T>(&format!("batch.{k}.x"))?;
        let output = model.forward(&x).map_err(|e| e.to_string())?;
        let loss = match loss_name.as_str() {
            "CrossEntropyLoss" | "NLLLoss" => {
                let y = case.indices(&format!("batch.{k}.y"))?;
                let reduction =
                    Reduction::parse(loss_config.get("reduction").and_then(Value::as_str).unwrap_or("mean")).map_err(|e| e.to_string())?;
                if loss_name == "NLLLoss" {
                    functional::nll_loss(&output, &y, None, None, reduction)
                } else {
                    functional::cross_entropy_with(&output, &y, None, None, 0.0, reduction)
                }
            }
            "MSELoss" => functional::mse_loss(&output, &case.float::<T>(&format!("batch.{k}.y"))?, Reduction::Mean),
            other => return Err(format!("loss {other} is not in nabla's vocabulary")),
        }
        .map_err(|e| e.to_string())?;
        losses.push(loss.item().map_err(|e| e.to_string())?);
        opt.step(&loss.backward().map_err(|e| e.to_string())?).map_err(|e| e.to_string())?;
    }
    let mut worst: f64 = 0.0;
    let n = losses.len();
    check_tensor(case, "losses", &Tensor::<T>::from_vec(losses, &[n]).map_err(|e| e.to_string())?, "losses", rtol, atol, &mut worst)?;
    for (name, p) in &all_params {
        let key = format!("expected.{name}");
        check_tensor(case, &key, &p.tensor(), &key, rtol, atol, &mut worst)?;
    }
    Ok(worst)
}

/// A built forward as a module, for assembling a train case's Sequential.
struct FnModule<T: Element>(Forward<T>);

impl<T: Element> Module<T> for FnModule<T> {
    fn forward(&self, input: &Tensor<T>) -> nabla::Result<Tensor<T>> {
        (self.0)(std::slice::from_ref(input)).map(|mut v| v.remove(0)).map_err(|e| nabla::Error::Invalid { op: "golden", msg: e })
    }
}

/// A train case is pending while one of its layers is.
fn train_layers_pending(case: &Case) -> bool {
    case.meta.get("layers").and_then(|l| layer_list(l).ok()).is_some_and(|layers| layers.iter().any(|(name, _)| is_pending("module", name)))
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
