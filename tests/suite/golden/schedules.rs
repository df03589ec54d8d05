//! Schedule cases: a one-parameter SGD at `lr0`, the rate after construction and after each
//! step (`ReduceLROnPlateau` fed the case's metrics). f64 only, as FORMAT.md says.

use super::*;
use nabla::optim::{Anneal, CyclicMode, LrScheduler, PlateauMode, ReduceLrOnPlateau, Schedule};
use serde_json::Value;

/// A closed-form schedule from its PyTorch class name and kwargs.
fn build_schedule(name: &str, config: &Value) -> Result<Box<dyn LrScheduler>, String> {
    let f = |k: &str| config.get(k).and_then(Value::as_f64);
    let u = |k: &str| config.get(k).and_then(Value::as_u64).map(|v| v as usize);
    let need = |k: &str| f(k).ok_or_else(|| format!("config has no {k}"));
    let need_u = |k: &str| u(k).ok_or_else(|| format!("config has no {k}"));
    Ok(match name {
        "StepLR" => Box::new(optim::StepLr { step_size: need_u("step_size")?, gamma: f("gamma").unwrap_or(0.1) }),
        "MultiStepLR" => Box::new(optim::MultiStepLr {
            milestones: config
                .get("milestones")
                .and_then(Value::as_array)
                .ok_or("milestones")?
                .iter()
                .filter_map(Value::as_u64)
                .map(|m| m as usize)
                .collect(),
            gamma: f("gamma").unwrap_or(0.1),
        }),
        "ExponentialLR" => Box::new(optim::ExponentialLr { gamma: need("gamma")? }),
        "CosineAnnealingLR" => Box::new(optim::CosineAnnealingLr { t_max: need_u("T_max")?, eta_min: f("eta_min").unwrap_or(0.0) }),
        "LinearLR" => Box::new(optim::LinearLr {
            start_factor: f("start_factor").unwrap_or(1.0 / 3.0),
            end_factor: f("end_factor").unwrap_or(1.0),
            total_iters: u("total_iters").unwrap_or(5),
        }),
        "ConstantLR" => {
            Box::new(optim::ConstantLr { factor: f("factor").unwrap_or(1.0 / 3.0), total_iters: u("total_iters").unwrap_or(5) })
        }
        "PolynomialLR" => Box::new(optim::PolynomialLr { total_iters: u("total_iters").unwrap_or(5), power: f("power").unwrap_or(1.0) }),
        "CosineAnnealingWarmRestarts" => Box::new(optim::CosineAnnealingWarmRestarts {
            t_0: need_u("T_0")?,
            t_mult: u("T_mult").unwrap_or(1),
            eta_min: f("eta_min").unwrap_or(0.0),
        }),
        "CyclicLR" => {
            let up = u("step_size_up").unwrap_or(2000);
            Box::new(optim::CyclicLr {
                base_lr: need("base_lr")?,
                max_lr: need("max_lr")?,
                step_size_up: up,
                step_size_down: u("step_size_down").unwrap_or(up),
                mode: match config.get("mode").and_then(Value::as_str).unwrap_or("triangular") {
                    "triangular" => CyclicMode::Triangular,
                    "triangular2" => CyclicMode::Triangular2,
                    "exp_range" => CyclicMode::ExpRange { gamma: f("gamma").unwrap_or(1.0) },
                    other => return Err(format!("CyclicLR mode {other}")),
                },
            })
        }
        "OneCycleLR" => Box::new(optim::OneCycleLr {
            max_lr: need("max_lr")?,
            total_steps: need_u("total_steps")?,
            pct_start: f("pct_start").unwrap_or(0.3),
            anneal_strategy: if config.get("anneal_strategy").and_then(Value::as_str) == Some("linear") {
                Anneal::Linear
            } else {
                Anneal::Cos
            },
            div_factor: f("div_factor").unwrap_or(25.0),
            final_div_factor: f("final_div_factor").unwrap_or(1e4),
            three_phase: config.get("three_phase").and_then(Value::as_bool).unwrap_or(false),
        }),
        other => return Err(format!("schedule {other} is not in nabla's vocabulary")),
    })
}

/// Runs a `schedule` case; the largest relative error of the rates.
pub(super) fn run_schedule(case: &Case, rtol: f64, atol: f64) -> Result<f64, String> {
    let name = case.meta("name")?;
    let steps = case.number("steps")? as usize;
    let lr0 = case.number("lr0")?;
    let mut opt = optim::Sgd::new(vec![Param::new(Tensor::<f64>::zeros(&[1]))], lr0);
    let mut rates = Vec::with_capacity(steps + 1);
    if name == "ReduceLROnPlateau" {
        let c = &case.config;
        let f = |k: &str, d: f64| c.get(k).and_then(Value::as_f64).unwrap_or(d);
        let mode = if c.get("mode").and_then(Value::as_str) == Some("max") { PlateauMode::Max } else { PlateauMode::Min };
        let mut plateau = ReduceLrOnPlateau::new(mode)
            .factor(f("factor", 0.1))
            .patience(c.get("patience").and_then(Value::as_u64).unwrap_or(10) as usize)
            .threshold(f("threshold", 1e-4), c.get("threshold_mode").and_then(Value::as_str) != Some("abs"))
            .cooldown(c.get("cooldown").and_then(Value::as_u64).unwrap_or(0) as usize)
            .min_lr(f("min_lr", 0.0))
            .eps(f("eps", 1e-8));
        let (_, metrics) = case.reference("metrics")?;
        rates.push(opt.lr());
        for &m in metrics.iter().take(steps) {
            plateau.step(m, &mut opt);
            rates.push(opt.lr());
        }
    } else {
        let mut schedule = Schedule::new(build_schedule(name, &case.config)?, &mut opt).map_err(|e| e.to_string())?;
        rates.push(opt.lr());
        for _ in 0..steps {
            schedule.step(&mut opt);
            rates.push(opt.lr());
        }
    }
    let (_, expected) = case.reference("lrs")?;
    let (ok, err) = compare(&rates, expected, rtol, atol);
    if ok { Ok(err) } else { Err(format!("lrs {rates:?}, PyTorch {expected:?}")) }
}
