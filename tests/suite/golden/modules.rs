//! Module and loss cases: built from the class name and config, run forward and backward.

use super::*;
use nabla::nn::Reduction;
use serde_json::Value;

/// A module (or loss) from its class name and config: its parameters by name and its
/// forward over the case's float inputs (integer inputs are read from the case).
pub(super) fn build_module<T: Element>(case: &Case, name: &str, config: &Value, training: bool) -> Result<Built<T>, String> {
    let s = |e: nabla::Error| e.to_string();
    let get = |k: &str| config.get(k).and_then(Value::as_f64);
    let get_usize = |k: &str| config.get(k).and_then(Value::as_u64).map(|v| v as usize).ok_or_else(|| format!("config has no {k}"));
    let mut rng = nabla::rng(0);
    let module: Box<dyn Module<T>> = match name {
        "Linear" => {
            let bias = config.get("bias").and_then(Value::as_bool).unwrap_or(true);
            Box::new(nn::Linear::<T>::with_bias(get_usize("in_features")?, get_usize("out_features")?, bias, &mut rng))
        }
        "Embedding" => {
            let table = nn::Embedding::<T>::new(get_usize("num_embeddings")?, get_usize("embedding_dim")?, &mut rng);
            match config.get("padding_idx").and_then(Value::as_i64) {
                Some(pad) => Box::new(table.with_padding_idx(pad as isize).map_err(s)?),
                None => Box::new(table),
            }
        }
        "Flatten" => Box::new(nn::Flatten {
            start_dim: config.get("start_dim").and_then(Value::as_i64).unwrap_or(1) as isize,
            end_dim: config.get("end_dim").and_then(Value::as_i64).unwrap_or(-1) as isize,
        }),
        "Conv1d" | "Conv2d" => {
            let bias = config.get("bias").and_then(Value::as_bool).unwrap_or(true);
            let (cin, cout) = (get_usize("in_channels")?, get_usize("out_channels")?);
            // padding "same" or "valid" is a string; "valid" is no padding.
            let same = config.get("padding").and_then(Value::as_str) == Some("same");
            let mut config = config.clone();
            if config.get("padding").is_some_and(Value::is_string) {
                config["padding"] = Value::from(0);
            }
            let mode = nn::functional::PadMode::parse(config.get("padding_mode").and_then(Value::as_str).unwrap_or("zeros")).map_err(s)?;
            if name == "Conv1d" {
                let k = spatial(&config, "kernel_size", 1, None)?[0];
                let conv = nn::Conv1d::<T>::new(cin, cout, k, conv1d_config(&config)?, bias, &mut rng).map_err(s)?.with_padding_mode(mode);
                Box::new(if same { conv.with_same_padding().map_err(s)? } else { conv })
            } else {
                let k = spatial(&config, "kernel_size", 2, None)?;
                let conv = nn::Conv2d::<T>::new(cin, cout, [k[0], k[1]], conv2d_config(&config)?, bias, &mut rng)
                    .map_err(s)?
                    .with_padding_mode(mode);
                Box::new(if same { conv.with_same_padding().map_err(s)? } else { conv })
            }
        }
        "AdaptiveAvgPool1d" | "AdaptiveAvgPool2d" | "AdaptiveMaxPool1d" | "AdaptiveMaxPool2d" => {
            let dims = if name.ends_with("1d") { 1 } else { 2 };
            let size: Vec<Option<usize>> = match config.get("output_size") {
                Some(Value::Number(n)) => vec![n.as_u64().map(|v| v as usize); dims],
                Some(Value::Array(a)) => a.iter().map(|v| v.as_u64().map(|v| v as usize)).collect(),
                _ => return Err("config has no output_size".into()),
            };
            let indices = config.get("return_indices").and_then(Value::as_bool).unwrap_or(false);
            let name = name.to_string();
            let forward: Forward<T> = Box::new(move |x| {
                let e = |e: nabla::Error| e.to_string();
                let (y, at) = match name.as_str() {
                    "AdaptiveAvgPool1d" => (nn::AdaptiveAvgPool1d { output_size: size[0].ok_or("size")? }.forward(&x[0]).map_err(e)?, None),
                    "AdaptiveAvgPool2d" => (nn::AdaptiveAvgPool2d { output_size: [size[0], size[1]] }.forward(&x[0]).map_err(e)?, None),
                    "AdaptiveMaxPool1d" => {
                        let (y, at) =
                            nn::AdaptiveMaxPool1d { output_size: size[0].ok_or("size")? }.forward_with_indices(&x[0]).map_err(e)?;
                        (y, Some(at))
                    }
                    _ => {
                        let (y, at) = nn::AdaptiveMaxPool2d { output_size: [size[0], size[1]] }.forward_with_indices(&x[0]).map_err(e)?;
                        (y, Some(at))
                    }
                };
                Ok(std::iter::once(y).chain(at.filter(|_| indices).map(|at| Tensor::<T>::from(at.mapv(|i| T::of(i as f64))))).collect())
            });
            return Ok((Vec::new(), Vec::new(), forward));
        }
        pool if pool_kind(pool, config).is_some() && config.get("return_indices").and_then(Value::as_bool) == Some(true) => {
            let (one_d, two_d) = (
                nn::Pool1d { kind: nn::PoolKind::Max, config: pool1d_config(config)? },
                nn::Pool2d { kind: nn::PoolKind::Max, config: pool2d_config(config)? },
            );
            let is_1d = pool.ends_with("1d");
            let forward: Forward<T> = Box::new(move |x| {
                let (y, at) =
                    if is_1d { one_d.forward_with_indices(&x[0]) } else { two_d.forward_with_indices(&x[0]) }.map_err(|e| e.to_string())?;
                Ok(vec![y, Tensor::<T>::from(at.mapv(|i| T::of(i as f64)))])
            });
            return Ok((Vec::new(), Vec::new(), forward));
        }
        pool if pool_kind(pool, config).is_some() => pool_module::<T>(pool, config)?.expect("a pool name"),
        "BatchNorm1d" | "BatchNorm2d" => {
            let flag = |k: &str, d: bool| config.get(k).and_then(Value::as_bool).unwrap_or(d);
            let options = nn::BatchNormOptions {
                eps: get("eps").unwrap_or(1e-5),
                // An absent momentum is PyTorch's default; null is the cumulative average.
                momentum: match config.get("momentum") {
                    None => Some(0.1),
                    Some(m) => m.as_f64(),
                },
                affine: flag("affine", true),
                track_running_stats: flag("track_running_stats", true),
            };
            let features = get_usize("num_features")?;
            if name == "BatchNorm1d" {
                Box::new(nn::BatchNorm1d::<T>::with_options(features, options))
            } else {
                Box::new(nn::BatchNorm2d::<T>::with_options(features, options))
            }
        }
        "LayerNorm" => {
            let shape = match config.get("normalized_shape") {
                Some(Value::Number(n)) => vec![n.as_u64().ok_or("normalized_shape")? as usize],
                Some(Value::Array(a)) => {
                    a.iter().map(|v| v.as_u64().map(|v| v as usize)).collect::<Option<_>>().ok_or("normalized_shape")?
                }
                _ => return Err("config has no normalized_shape".into()),
            };
            let flag = |k: &str| config.get(k).and_then(Value::as_bool).unwrap_or(true);
            Box::new(nn::LayerNorm::<T>::with_options(&shape, get("eps").unwrap_or(1e-5), flag("elementwise_affine"), flag("bias")))
        }
        "GroupNorm" => Box::new(
            nn::GroupNorm::<T>::with_options(
                get_usize("num_groups")?,
                get_usize("num_channels")?,
                get("eps").unwrap_or(1e-5),
                config.get("affine").and_then(Value::as_bool).unwrap_or(true),
            )
            .map_err(s)?,
        ),
        "ReLU" => Box::new(nn::Relu),
        "Sigmoid" => Box::new(nn::Sigmoid),
        "Tanh" => Box::new(nn::Tanh),
        "Softplus" => Box::new(nn::Softplus { beta: get("beta").unwrap_or(1.0), threshold: get("threshold").unwrap_or(20.0) }),
        "LeakyReLU" => Box::new(nn::LeakyRelu { negative_slope: get("negative_slope").unwrap_or(0.01) }),
        "PReLU" => Box::new(nn::PRelu::<T>::new(get_usize("num_parameters").unwrap_or(1), get("init").unwrap_or(0.25))),
        "RReLU" => Box::new(nn::RRelu::new(get("lower").unwrap_or(1.0 / 8.0), get("upper").unwrap_or(1.0 / 3.0), &mut rng).map_err(s)?),
        "Softmax" => Box::new(nn::Softmax { dim: case_dim(config)? }),
        "LogSoftmax" => Box::new(nn::LogSoftmax { dim: case_dim(config)? }),
        "ELU" => Box::new(nn::Elu { alpha: get("alpha").unwrap_or(1.0) }),
        "SELU" => Box::new(nn::Selu),
        "Dropout" => Box::new(nn::Dropout::new(get("p").unwrap_or(0.5), &mut rng).map_err(s)?),
        "AlphaDropout" => Box::new(nn::AlphaDropout::new(get("p").unwrap_or(0.5), &mut rng).map_err(s)?),
        "CELU" => Box::new(nn::Celu { alpha: get("alpha").unwrap_or(1.0) }),
        "GELU" => Box::new(nn::Gelu {
            approximate: match config.get("approximate").and_then(Value::as_str).unwrap_or("none") {
                "none" => nn::functional::GeluApproximate::None,
                "tanh" => nn::functional::GeluApproximate::Tanh,
                other => return Err(format!("GELU approximate {other:?}")),
            },
        }),
        "SiLU" => Box::new(nn::Silu),
        "Mish" => Box::new(nn::Mish),
        "Hardtanh" => Box::new(nn::Hardtanh { min_val: get("min_val").unwrap_or(-1.0), max_val: get("max_val").unwrap_or(1.0) }),
        "ReLU6" => Box::new(nn::Relu6),
        "Hardsigmoid" => Box::new(nn::Hardsigmoid),
        "Hardswish" => Box::new(nn::Hardswish),
        "LogSigmoid" => Box::new(nn::LogSigmoid),
        "Softsign" => Box::new(nn::Softsign),
        "Tanhshrink" => Box::new(nn::Tanhshrink),
        "Softshrink" => Box::new(nn::Softshrink { lambd: get("lambd").unwrap_or(0.5) }),
        "Hardshrink" => Box::new(nn::Hardshrink { lambd: get("lambd").unwrap_or(0.5) }),
        "Threshold" => Box::new(nn::Threshold {
            threshold: get("threshold").ok_or("config has no threshold")?,
            value: get("value").ok_or("config has no value")?,
        }),
        "GLU" => Box::new(nn::Glu { dim: config.get("dim").and_then(Value::as_i64).unwrap_or(-1) as isize }),
        "Softmin" => Box::new(nn::Softmin { dim: case_dim(config)? }),
        "Softmax2d" => Box::new(nn::Softmax2d),
        name if name.ends_with("Loss") && name != "AdaptiveLogSoftmaxWithLoss" => return build_loss(case, name, config),
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
                    proj_size: get_usize("proj_size").unwrap_or(0),
                    dropout: get("dropout").unwrap_or(0.0),
                    ..Default::default()
                },
                &mut rng,
            );
            net.set_training(training);
            let params = net.named_parameters();
            let buffers = net.named_buffers();
            let forward: Forward<T> = Box::new(move |x| {
                let state = x.get(1).map(|h0| (h0, x.get(2)));
                let out = net.forward_with_state(&x[0], state).map_err(|e| e.to_string())?;
                let mut outputs = vec![out.output, out.h_n];
                outputs.extend(out.c_n);
                Ok(outputs)
            });
            return Ok((params, buffers, forward));
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
            return Ok((params, Vec::new(), forward));
        }
        other => return Err(format!("module {other} is not in nabla's vocabulary")),
    };
    module.set_training(training);
    let params = module.named_parameters();
    let buffers = module.named_buffers();
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
    Ok((params, buffers, forward))
}

pub(super) fn case_dim(config: &Value) -> Result<isize, String> {
    config.get("dim").and_then(Value::as_i64).map(|d| d as isize).ok_or_else(|| "config has no dim".to_string())
}

pub(super) fn build_loss<T: Element>(case: &Case, name: &str, config: &Value) -> Result<Built<T>, String> {
    let reduction = match config.get("reduction").and_then(Value::as_str).unwrap_or("mean") {
        "batchmean" => Reduction::Mean,
        other => Reduction::parse(other).map_err(|e| e.to_string())?,
    };
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
    let labels = if case.is_int("input.1") { Some(case.int64s("input.1")?) } else { None };
    let target = labels.as_ref().filter(|_| name != "MultiLabelMarginLoss").map(|_| case.indices("input.1")).transpose()?;
    let p_int = config.get("p").and_then(Value::as_u64).unwrap_or(1) as u32;
    let multi_margin = config.get("margin").and_then(Value::as_f64).unwrap_or(1.0);
    let pos_weight = match config.get("pos_weight") {
        Some(Value::Array(a)) => Some(
            Tensor::<T>::from_vec(a.iter().map(|v| T::of(v.as_f64().unwrap_or(f64::NAN))).collect(), &[a.len()])
                .map_err(|e| e.to_string())?,
        ),
        _ => None,
    };
    let f = |key: &str, default: f64| config.get(key).and_then(Value::as_f64).unwrap_or(default);
    let flag = |key: &str, default: bool| config.get(key).and_then(Value::as_bool).unwrap_or(default);
    let (beta, delta, full, log_input, log_target) =
        (f("beta", 1.0), f("delta", 1.0), flag("full", false), flag("log_input", true), flag("log_target", false));
    let hinge_margin = f("margin", 1.0);
    let (norm_p, swap) = (f("p", 2.0), flag("swap", false));
    let (poisson_eps, gaussian_eps) = (f("eps", 1e-8), f("eps", 1e-6));
    let kl_reduction = match config.get("reduction").and_then(Value::as_str).unwrap_or("mean") {
        "batchmean" => nn::functional::KlReduction::BatchMean,
        "sum" => nn::functional::KlReduction::Sum,
        "none" => nn::functional::KlReduction::None,
        _ => nn::functional::KlReduction::Mean,
    };
    let name = name.to_string();
    let forward: Forward<T> = Box::new(move |x| {
        let e = |e: nabla::Error| e.to_string();
        let y = match name.as_str() {
            "MSELoss" => nn::MseLoss { reduction }.forward(&x[0], &x[1]).map_err(e)?,
            "MarginRankingLoss" => nn::MarginRankingLoss { margin, reduction }.forward(&x[0], &x[1], &x[2]).map_err(e)?,
            "L1Loss" => nn::L1Loss { reduction }.forward(&x[0], &x[1]).map_err(e)?,
            "SmoothL1Loss" => nn::SmoothL1Loss { beta, reduction }.forward(&x[0], &x[1]).map_err(e)?,
            "HuberLoss" => nn::HuberLoss { delta, reduction }.forward(&x[0], &x[1]).map_err(e)?,
            "BCELoss" => nn::BceLoss { weight: weight.clone(), reduction }.forward(&x[0], &x[1]).map_err(e)?,
            "BCEWithLogitsLoss" => nn::BceWithLogitsLoss { weight: weight.clone(), pos_weight: pos_weight.clone(), reduction }
                .forward(&x[0], &x[1])
                .map_err(e)?,
            "SoftMarginLoss" => nn::SoftMarginLoss { reduction }.forward(&x[0], &x[1]).map_err(e)?,
            "TripletMarginLoss" => {
                nn::TripletMarginLoss { margin: hinge_margin, p: norm_p, swap, reduction }.forward(&x[0], &x[1], &x[2]).map_err(e)?
            }
            "CosineEmbeddingLoss" => nn::CosineEmbeddingLoss { margin, reduction }.forward(&x[0], &x[1], &x[2]).map_err(e)?,
            "HingeEmbeddingLoss" => nn::HingeEmbeddingLoss { margin: hinge_margin, reduction }.forward(&x[0], &x[1]).map_err(e)?,
            "KLDivLoss" => nn::KlDivLoss { reduction: kl_reduction, log_target }.forward(&x[0], &x[1]).map_err(e)?,
            "PoissonNLLLoss" => nn::PoissonNllLoss { log_input, full, eps: poisson_eps, reduction }.forward(&x[0], &x[1]).map_err(e)?,
            "GaussianNLLLoss" => nn::GaussianNllLoss { full, eps: gaussian_eps, reduction }.forward(&x[0], &x[1], &x[2]).map_err(e)?,
            "CrossEntropyLoss" => {
                let loss = nn::CrossEntropyLoss { weight: weight.clone(), ignore_index, label_smoothing: smoothing, reduction };
                match target.as_ref() {
                    Some(labels) => loss.forward(&x[0], labels).map_err(e)?,
                    None => loss.forward_probs(&x[0], &x[1]).map_err(e)?,
                }
            }
            "MultiMarginLoss" => nn::MultiMarginLoss { p: p_int, margin: multi_margin, weight: weight.clone(), reduction }
                .forward(&x[0], target.as_ref().ok_or("no target")?)
                .map_err(e)?,
            "MultiLabelMarginLoss" => {
                nn::MultiLabelMarginLoss { reduction }.forward(&x[0], labels.as_ref().ok_or("no target")?).map_err(e)?
            }
            "NLLLoss" => nn::NllLoss { weight: weight.clone(), ignore_index, reduction }
                .forward(&x[0], target.as_ref().ok_or("no target")?)
                .map_err(e)?,
            other => return Err(format!("no loss {other}")),
        };
        Ok(vec![y])
    });
    Ok((Vec::new(), Vec::new(), forward))
}

/// Runs a `module` case: parameters loaded by their PyTorch names, outputs, and gradients of
/// inputs and parameters.
pub(super) fn run_module<T: Element>(case: &Case, rtol: f64, atol: f64) -> Result<f64, String> {
    let name = case.meta("name")?;
    let training = case.meta.get("mode").map(String::as_str) == Some("train");
    let (params, buffers, forward) = build_module::<T>(case, name, &case.config, training)?;
    load_all(case, "param.", &params, &[])?;
    let state = buffers.iter().map(|(n, b)| (n.clone(), b.clone())).collect::<Vec<_>>();
    load_all(case, "buffer.", &[], &state)?;
    let order = case.meta.get("order").map(|o| o.parse::<u32>().unwrap_or(1)).unwrap_or(1);
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
        let key = format!("output.{k}");
        if case.is_int(&key) {
            // Indices (return_indices): exact.
            let expected = case.indices(&key)?;
            let actual: Vec<usize> = to_f64(y).iter().map(|&v| v as usize).collect();
            if y.shape() != expected.shape() || actual != expected.iter().copied().collect::<Vec<_>>() {
                return Err(format!(
                    "{key}: {actual:?} {:?}, PyTorch {:?} {:?}",
                    y.shape(),
                    expected.iter().collect::<Vec<_>>(),
                    expected.shape()
                ));
            }
        } else {
            check_tensor(case, &key, y, &key, rtol, atol, &mut worst)?;
        }
    }
    // Only float outputs carry a cotangent.
    let (outputs, cotangents): (Vec<Tensor<T>>, Vec<Tensor<T>>) = outputs
        .into_iter()
        .enumerate()
        .filter(|(k, _)| !case.is_int(&format!("output.{k}")))
        .map(|(k, y)| case.float::<T>(&format!("cotangent.{k}")).map(|c| (y, c)))
        .collect::<Result<Vec<_>, _>>()?
        .into_iter()
        .unzip();
    let mut wrt: Vec<&Tensor<T>> =
        grad_inputs.iter().map(|&i| &inputs[float_inputs.iter().position(|&f| f == i).expect("float input")]).collect();
    wrt.extend(snapshots.iter());
    let grads = nabla::grad(&outputs.iter().collect::<Vec<_>>(), &wrt, Some(&cotangents.iter().collect::<Vec<_>>()), order == 2)
        .map_err(|e| e.to_string())?;
    for (name, b) in &buffers {
        check_buffer(case, &format!("expected.buffer.{name}"), b, rtol, atol, &mut worst)?;
    }
    for (g, &i) in grads.iter().zip(&grad_inputs) {
        check_tensor(case, &format!("grad.input.{i}"), g, &format!("grad.input.{i}"), rtol, atol, &mut worst)?;
    }
    for (g, (pname, _)) in grads[grad_inputs.len()..].iter().zip(&params) {
        let key = format!("grad.param.{pname}");
        if case.tensors.contains_key(&key) {
            check_tensor(case, &key, g, &key, rtol, atol, &mut worst)?;
        }
    }
    if order == 2 {
        // S = Σ grad · cotangent2 over the inputs and parameters; its gradient is grad2.
        let keys: Vec<String> =
            grad_inputs.iter().map(|i| format!("input.{i}")).chain(params.iter().map(|(n, _)| format!("param.{n}"))).collect();
        let mut s = Tensor::<T>::zeros(&[]);
        for (g, key) in grads.iter().zip(&keys) {
            if let Ok(c) = case.float::<T>(&format!("cotangent2.{key}")) {
                s = s.add(&g.mul(&c).map_err(|e| e.to_string())?.sum()).map_err(|e| e.to_string())?;
            }
        }
        let grads2 = nabla::grad(&[&s], &wrt, None, false).map_err(|e| e.to_string())?;
        for (g, key) in grads2.iter().zip(&keys) {
            let key = format!("grad2.{key}");
            if case.tensors.contains_key(&key) {
                check_tensor(case, &key, g, &key, rtol, atol, &mut worst)?;
            }
        }
    }
    Ok(worst)
}
