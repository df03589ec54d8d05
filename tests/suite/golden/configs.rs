//! Reading a case's config: convolution, pooling geometry.

use super::*;
use nabla::nn::{Pool1d, Pool2d, PoolKind};
use nabla::ops::{Conv1dConfig, Conv2dConfig, Pool1dConfig, Pool2dConfig};
use serde_json::Value;

/// An int or a list of ints in a config, as one value per spatial dim (`dims` of them).
pub(super) fn spatial(config: &Value, key: &str, dims: usize, default: Option<usize>) -> Result<Vec<usize>, String> {
    match config.get(key) {
        Some(Value::Number(n)) => Ok(vec![n.as_u64().ok_or(format!("{key} is not a count"))? as usize; dims]),
        Some(Value::Array(a)) if a.len() == dims => {
            a.iter().map(|v| v.as_u64().map(|v| v as usize).ok_or(format!("{key} is not a list of counts"))).collect()
        }
        None | Some(Value::Null) => default.map(|d| vec![d; dims]).ok_or(format!("config has no {key}")),
        Some(other) => Err(format!("{key} = {other} is not a count or a list of {dims}")),
    }
}

pub(super) fn conv2d_config(config: &Value) -> Result<Conv2dConfig, String> {
    let pair = |key, default| spatial(config, key, 2, Some(default)).map(|v| [v[0], v[1]]);
    Ok(Conv2dConfig {
        stride: pair("stride", 1)?,
        padding: pair("padding", 0)?,
        dilation: pair("dilation", 1)?,
        groups: config.get("groups").and_then(Value::as_u64).unwrap_or(1) as usize,
    })
}

pub(super) fn conv1d_config(config: &Value) -> Result<Conv1dConfig, String> {
    let one = |key, default| spatial(config, key, 1, Some(default)).map(|v| v[0]);
    Ok(Conv1dConfig {
        stride: one("stride", 1)?,
        padding: one("padding", 0)?,
        dilation: one("dilation", 1)?,
        groups: config.get("groups").and_then(Value::as_u64).unwrap_or(1) as usize,
    })
}

pub(super) fn pool2d_config(config: &Value) -> Result<Pool2dConfig, String> {
    let kernel = spatial(config, "kernel_size", 2, None)?;
    let stride = spatial(config, "stride", 2, None).unwrap_or_else(|_| kernel.clone());
    let padding = spatial(config, "padding", 2, Some(0))?;
    let dilation = spatial(config, "dilation", 2, Some(1))?;
    Ok(Pool2dConfig {
        kernel_size: [kernel[0], kernel[1]],
        stride: [stride[0], stride[1]],
        padding: [padding[0], padding[1]],
        dilation: [dilation[0], dilation[1]],
        ceil_mode: config.get("ceil_mode").and_then(Value::as_bool).unwrap_or(false),
    })
}

pub(super) fn pool1d_config(config: &Value) -> Result<Pool1dConfig, String> {
    let kernel = spatial(config, "kernel_size", 1, None)?[0];
    let stride = spatial(config, "stride", 1, None).map(|v| v[0]).unwrap_or(kernel);
    Ok(Pool1dConfig {
        kernel_size: kernel,
        stride,
        padding: spatial(config, "padding", 1, Some(0))?[0],
        dilation: spatial(config, "dilation", 1, Some(1))?[0],
        ceil_mode: config.get("ceil_mode").and_then(Value::as_bool).unwrap_or(false),
    })
}

/// The pooling of a module or op name (`MaxPool2d`, `lp_pool1d`, …) and its config.
pub(super) fn pool_kind(name: &str, config: &Value) -> Option<PoolKind> {
    let lower = name.to_lowercase();
    if lower.starts_with("maxpool") || lower.starts_with("max_pool") {
        Some(PoolKind::Max)
    } else if lower.starts_with("avgpool") || lower.starts_with("avg_pool") {
        Some(PoolKind::Avg {
            count_include_pad: config.get("count_include_pad").and_then(Value::as_bool).unwrap_or(true),
            divisor_override: config.get("divisor_override").and_then(Value::as_u64).map(|d| d as usize),
        })
    } else if lower.starts_with("lppool") || lower.starts_with("lp_pool") {
        Some(PoolKind::Lp { norm_type: config.get("norm_type").and_then(Value::as_f64).unwrap_or(2.0) })
    } else if lower.starts_with("lsepool") || lower.starts_with("lse_pool") {
        Some(PoolKind::Lse { beta: config.get("beta").and_then(Value::as_f64).unwrap_or(1.0) })
    } else {
        None
    }
}

/// A pooling layer from its name and config.
pub(super) fn pool_module<T: Element>(name: &str, config: &Value) -> Result<Option<Box<dyn Module<T>>>, String> {
    let Some(kind) = pool_kind(name, config) else { return Ok(None) };
    Ok(Some(if name.ends_with("1d") {
        Box::new(Pool1d { kind, config: pool1d_config(config)? })
    } else {
        Box::new(Pool2d { kind, config: pool2d_config(config)? })
    }))
}
