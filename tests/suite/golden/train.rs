//! Training cases: a stack of layers trained for a few steps.

use super::*;
use nabla::nn::{Reduction, functional};
use serde_json::Value;

/// The (class name, config) pairs of a `train` case's JSON list.
pub(super) fn layer_list(json: &str) -> Result<Vec<(String, Value)>, String> {
    let list: Vec<(String, Value)> = serde_json::from_str(json).map_err(|e| e.to_string())?;
    Ok(list)
}

/// Runs a `train` case: a Sequential trained for a few steps; losses and final parameters.
pub(super) fn run_train<T: Element>(case: &Case, rtol: f64, atol: f64) -> Result<f64, String> {
    let layers = layer_list(case.meta("layers")?)?;
    let mut model = nn::Sequential::<T>::new();
    let (mut all_params, mut all_buffers) = (Vec::new(), Vec::new());
    for (i, (name, config)) in layers.iter().enumerate() {
        let (params, buffers, forward) = build_module::<T>(case, name, config, true)?;
        all_params.extend(params.into_iter().map(|(n, p)| (format!("{i}.{n}"), p)));
        all_buffers.extend(buffers.into_iter().map(|(n, b)| (format!("{i}.{n}"), b)));
        model = model.push(FnModule(forward));
    }
    load_all(case, "param.", &all_params, &all_buffers)?;
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
    for (name, b) in &all_buffers {
        check_buffer(case, &format!("expected.{name}"), b, rtol, atol, &mut worst)?;
    }
    Ok(worst)
}

/// A built forward as a module, for assembling a train case's Sequential.
pub(super) struct FnModule<T: Element>(Forward<T>);

impl<T: Element> Module<T> for FnModule<T> {
    fn forward(&self, input: &Tensor<T>) -> nabla::Result<Tensor<T>> {
        (self.0)(std::slice::from_ref(input)).map(|mut v| v.remove(0)).map_err(|e| nabla::Error::Invalid { op: "golden", msg: e })
    }
}

/// A train case is pending while one of its layers is.
pub(super) fn train_layers_pending(case: &Case) -> bool {
    case.meta.get("layers").and_then(|l| layer_list(l).ok()).is_some_and(|layers| layers.iter().any(|(name, _)| is_pending("module", name)))
}
