//! Optimiser and clipping cases: steps on PyTorch's parameters and gradients.

use super::*;
use nabla::nn::Param;
use serde_json::Value;

pub(super) fn build_optimizer<T: Element>(name: &str, config: &Value, params: Vec<Param<T>>) -> Result<Box<dyn Optimizer<T>>, String> {
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
                .nesterov(flag("nesterov"))
                .maximize(flag("maximize")),
        ),
        "Adam" => Box::new(
            optim::Adam::new(params, get("lr", 1e-3))
                .betas(betas.0, betas.1)
                .eps(get("eps", 1e-8))
                .weight_decay(get("weight_decay", 0.0))
                .amsgrad(flag("amsgrad"))
                .maximize(flag("maximize")),
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
                .centered(flag("centered"))
                .maximize(flag("maximize")),
        ),
        "Adagrad" => Box::new(
            optim::Adagrad::new(params, get("lr", 1e-2))
                .lr_decay(get("lr_decay", 0.0))
                .weight_decay(get("weight_decay", 0.0))
                .initial_accumulator_value(get("initial_accumulator_value", 0.0))
                .eps(get("eps", 1e-10))
                .maximize(flag("maximize")),
        ),
        "Adadelta" => Box::new(
            optim::Adadelta::new(params, get("lr", 1.0))
                .rho(get("rho", 0.9))
                .eps(get("eps", 1e-6))
                .weight_decay(get("weight_decay", 0.0))
                .maximize(flag("maximize")),
        ),
        "Adamax" => Box::new(
            optim::Adamax::new(params, get("lr", 2e-3))
                .betas(betas.0, betas.1)
                .eps(get("eps", 1e-8))
                .weight_decay(get("weight_decay", 0.0))
                .maximize(flag("maximize")),
        ),
        "NAdam" => Box::new(
            optim::NAdam::new(params, get("lr", 2e-3))
                .betas(betas.0, betas.1)
                .eps(get("eps", 1e-8))
                .weight_decay(get("weight_decay", 0.0))
                .momentum_decay(get("momentum_decay", 4e-3))
                .decoupled_weight_decay(flag("decoupled_weight_decay"))
                .maximize(flag("maximize")),
        ),
        "RAdam" => Box::new(
            optim::RAdam::new(params, get("lr", 1e-3))
                .betas(betas.0, betas.1)
                .eps(get("eps", 1e-8))
                .weight_decay(get("weight_decay", 0.0))
                .decoupled_weight_decay(flag("decoupled_weight_decay"))
                .maximize(flag("maximize")),
        ),
        other => return Err(format!("optimizer {other} is not in nabla's vocabulary")),
    })
}

/// Runs an `optim` case: the given gradients fed to the optimizer for `steps` steps.
pub(super) fn run_optim<T: Element>(case: &Case, rtol: f64, atol: f64) -> Result<f64, String> {
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
pub(super) fn run_clip<T: Element>(case: &Case, rtol: f64, atol: f64) -> Result<f64, String> {
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
