//! Op cases: rebuilt from the op's name, outputs and gradients to second order.

use super::*;
use nabla::nn::functional;

/// Builds the op of an `op` case from its inputs.
pub(super) fn build_op<T: Element>(case: &Case, name: &str, x: &[Tensor<T>]) -> Result<Vec<Tensor<T>>, String> {
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
        "pow" if x.len() == 2 => x[0].pow_tensor(&x[1]).map_err(s)?,
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
pub(super) fn run_op<T: Element>(case: &Case, rtol: f64, atol: f64) -> Result<f64, String> {
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
