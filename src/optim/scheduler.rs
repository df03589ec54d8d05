//! Learning-rate schedules in closed form: StepLR, ExponentialLR, CosineAnnealingLR,
//! LinearLR (warm-up), LambdaLR, and SequentialLR to chain them (warm-up, then decay).

use super::Optimizer;
use crate::error::{Error, Result};
use crate::tensor::Element;

/// A schedule: after each epoch, `step` sets the optimiser's learning rate for the next.
pub trait LrScheduler {
    /// The learning rate at `epoch` (0-based), given the initial rate; `NaN` for a schedule
    /// that [`LrScheduler::check`] refuses.
    fn lr_at(&self, base_lr: f64, epoch: usize) -> f64;

    /// `Err` naming the schedule and the value for a configuration PyTorch's would fail on
    /// (a division by zero); [`Schedule::new`] asks.
    fn check(&self) -> Result<()> {
        Ok(())
    }
}

/// `lr · γ^⌊epoch / step_size⌋`, as `torch.optim.lr_scheduler.StepLR`.
#[derive(Debug, Clone, Copy)]
pub struct StepLr {
    /// Epochs between decays.
    pub step_size: usize,
    /// Decay factor.
    pub gamma: f64,
}

/// `lr · γ^epoch`, as `ExponentialLR`.
#[derive(Debug, Clone, Copy)]
pub struct ExponentialLr {
    /// Decay factor per epoch.
    pub gamma: f64,
}

/// `η_min + (lr - η_min)(1 + cos(π·epoch/T_max))/2`, as `CosineAnnealingLR`.
#[derive(Debug, Clone, Copy)]
pub struct CosineAnnealingLr {
    /// Half-period in epochs.
    pub t_max: usize,
    /// The smallest rate.
    pub eta_min: f64,
}

impl LrScheduler for StepLr {
    fn lr_at(&self, base_lr: f64, epoch: usize) -> f64 {
        match epoch.checked_div(self.step_size) {
            Some(decays) => base_lr * self.gamma.powi(decays as i32),
            None => f64::NAN,
        }
    }

    fn check(&self) -> Result<()> {
        match self.step_size {
            0 => Err(Error::invalid("StepLr", "step_size 0: the rate decays every step_size epochs, at least 1")),
            _ => Ok(()),
        }
    }
}

impl LrScheduler for ExponentialLr {
    fn lr_at(&self, base_lr: f64, epoch: usize) -> f64 {
        base_lr * self.gamma.powi(epoch as i32)
    }
}

impl LrScheduler for CosineAnnealingLr {
    fn lr_at(&self, base_lr: f64, epoch: usize) -> f64 {
        if self.t_max == 0 {
            return f64::NAN;
        }
        let phase = std::f64::consts::PI * epoch as f64 / self.t_max as f64;
        self.eta_min + (base_lr - self.eta_min) * (1.0 + phase.cos()) / 2.0
    }

    fn check(&self) -> Result<()> {
        match self.t_max {
            0 => Err(Error::invalid("CosineAnnealingLr", "t_max 0: the half-period is at least 1 epoch")),
            _ => Ok(()),
        }
    }
}

/// `lr · (s + (e - s)·min(epoch, n)/n)` with `s = start_factor`, `e = end_factor`,
/// `n = total_iters`: a linear warm-up (or decay), as `LinearLR` (PyTorch's defaults
/// `1/3`, `1`, `5` in [`LinearLr::default`]).
#[derive(Debug, Clone, Copy)]
pub struct LinearLr {
    /// The factor at epoch 0, in `(0, 1]`.
    pub start_factor: f64,
    /// The factor from `total_iters` on, in `[0, 1]`.
    pub end_factor: f64,
    /// Epochs to go from one factor to the other.
    pub total_iters: usize,
}

impl Default for LinearLr {
    fn default() -> Self {
        LinearLr { start_factor: 1.0 / 3.0, end_factor: 1.0, total_iters: 5 }
    }
}

impl LrScheduler for LinearLr {
    fn lr_at(&self, base_lr: f64, epoch: usize) -> f64 {
        if self.check().is_err() {
            return f64::NAN;
        }
        let progress = if self.total_iters == 0 { 1.0 } else { epoch.min(self.total_iters) as f64 / self.total_iters as f64 };
        base_lr * (self.start_factor + (self.end_factor - self.start_factor) * progress)
    }

    fn check(&self) -> Result<()> {
        if !(self.start_factor > 0.0 && self.start_factor <= 1.0) {
            return Err(Error::invalid("LinearLr", format!("start_factor {} is not in (0, 1]", self.start_factor)));
        }
        if !(0.0..=1.0).contains(&self.end_factor) {
            return Err(Error::invalid("LinearLr", format!("end_factor {} is not in [0, 1]", self.end_factor)));
        }
        Ok(())
    }
}

/// `lr · f(epoch)`, as `LambdaLR`.
///
/// ```
/// use nabla::optim::{LambdaLr, LrScheduler};
/// let halving = LambdaLr(|epoch| 0.5f64.powi(epoch as i32));
/// assert_eq!(halving.lr_at(0.8, 2), 0.2);
/// ```
#[derive(Debug, Clone, Copy)]
pub struct LambdaLr<F: Fn(usize) -> f64>(pub F);

impl<F: Fn(usize) -> f64> LrScheduler for LambdaLr<F> {
    fn lr_at(&self, base_lr: f64, epoch: usize) -> f64 {
        base_lr * (self.0)(epoch)
    }
}

/// Schedules one after another, as `SequentialLR`: the `i`-th runs from milestone `i - 1`
/// (epoch 0 for the first) and counts its epochs from there, each from the initial rate.
/// A warm-up then a cosine decay:
///
/// ```
/// use nabla::optim::{CosineAnnealingLr, LinearLr, LrScheduler, SequentialLr};
/// let schedule = SequentialLr::new(
///     vec![
///         Box::new(LinearLr { start_factor: 0.1, end_factor: 1.0, total_iters: 4 }),
///         Box::new(CosineAnnealingLr { t_max: 10, eta_min: 0.0 }),
///     ],
///     vec![4],
/// )?;
/// assert!((schedule.lr_at(1.0, 0) - 0.1).abs() < 1e-12);   // warm-up starts at a tenth
/// assert!((schedule.lr_at(1.0, 2) - 0.55).abs() < 1e-12);
/// assert_eq!(schedule.lr_at(1.0, 4), 1.0);                  // the cosine's epoch 0
/// assert!((schedule.lr_at(1.0, 9) - 0.5).abs() < 1e-12);    // its epoch 5 of 10
/// # Ok::<(), nabla::Error>(())
/// ```
pub struct SequentialLr {
    schedulers: Vec<Box<dyn LrScheduler + Send + Sync>>,
    milestones: Vec<usize>,
}

impl SequentialLr {
    /// The schedules and the epochs at which each after the first takes over; `Err` unless
    /// there is one milestone fewer than schedules and they increase, or if a schedule is
    /// refused by its own check.
    pub fn new(schedulers: Vec<Box<dyn LrScheduler + Send + Sync>>, milestones: Vec<usize>) -> Result<Self> {
        if schedulers.is_empty() || milestones.len() + 1 != schedulers.len() {
            return Err(Error::invalid(
                "SequentialLr",
                format!("{} schedules need {} milestones, got {}", schedulers.len(), schedulers.len().saturating_sub(1), milestones.len()),
            ));
        }
        if milestones.windows(2).any(|w| w[0] >= w[1]) {
            return Err(Error::invalid("SequentialLr", format!("milestones {milestones:?} do not increase")));
        }
        for s in &schedulers {
            s.check()?;
        }
        Ok(SequentialLr { schedulers, milestones })
    }
}

impl LrScheduler for SequentialLr {
    fn lr_at(&self, base_lr: f64, epoch: usize) -> f64 {
        let index = self.milestones.partition_point(|&m| m <= epoch);
        let start = if index == 0 { 0 } else { self.milestones[index - 1] };
        self.schedulers[index].lr_at(base_lr, epoch - start)
    }
}

impl<S: LrScheduler + ?Sized> LrScheduler for Box<S> {
    fn lr_at(&self, base_lr: f64, epoch: usize) -> f64 {
        (**self).lr_at(base_lr, epoch)
    }
    fn check(&self) -> Result<()> {
        (**self).check()
    }
}

/// Drives a schedule: remembers the initial rate and the epoch count.
///
/// ```
/// use nabla::prelude::*;
/// use nabla::optim::{Optimizer, Schedule, StepLr};
/// let w = nn::Param::new(Tensor::zeros(&[1]));
/// let mut opt = optim::Sgd::new(vec![w], 1.0);
/// let mut schedule = Schedule::new(StepLr { step_size: 2, gamma: 0.5 }, &mut opt)?;
/// let rates: Vec<f64> = (0..5).map(|_| { let lr = opt.lr(); schedule.step(&mut opt); lr }).collect();
/// assert_eq!(rates, vec![1.0, 1.0, 0.5, 0.5, 0.25]);
/// assert!(Schedule::new(StepLr { step_size: 0, gamma: 0.5 }, &mut opt).is_err());
/// # Ok::<(), nabla::Error>(())
/// ```
pub struct Schedule<S> {
    scheduler: S,
    base_lr: f64,
    epoch: usize,
}

impl<S: LrScheduler> Schedule<S> {
    /// Starts the schedule from the optimiser's current learning rate and sets the rate of
    /// epoch 0 (a warm-up's first, smaller rate), as PyTorch's schedulers do when built;
    /// `Err` for a schedule its [`LrScheduler::check`] refuses (`step_size` or `t_max` 0),
    /// leaving the optimiser as it was.
    pub fn new<T: Element>(scheduler: S, optimizer: &mut impl Optimizer<T>) -> Result<Self> {
        scheduler.check()?;
        let base_lr = optimizer.lr();
        optimizer.set_lr(scheduler.lr_at(base_lr, 0));
        Ok(Schedule { scheduler, base_lr, epoch: 0 })
    }

    /// The epochs ended so far.
    pub fn epoch(&self) -> usize {
        self.epoch
    }

    /// Ends an epoch: sets the learning rate for the next one.
    pub fn step<T: Element>(&mut self, optimizer: &mut impl Optimizer<T>) {
        self.epoch += 1;
        optimizer.set_lr(self.scheduler.lr_at(self.base_lr, self.epoch));
    }
}
