//! Learning-rate schedules: StepLR, ExponentialLR, CosineAnnealingLR, in closed form.

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

/// Drives a schedule: remembers the initial rate and the epoch count.
///
/// ```
/// use nabla::prelude::*;
/// use nabla::optim::{Optimizer, Schedule, StepLr};
/// let w = nn::Param::new(Tensor::zeros(&[1]));
/// let mut opt = optim::Sgd::new(vec![w], 1.0);
/// let mut schedule = Schedule::new(StepLr { step_size: 2, gamma: 0.5 }, &opt)?;
/// let rates: Vec<f64> = (0..5).map(|_| { let lr = opt.lr(); schedule.step(&mut opt); lr }).collect();
/// assert_eq!(rates, vec![1.0, 1.0, 0.5, 0.5, 0.25]);
/// assert!(Schedule::new(StepLr { step_size: 0, gamma: 0.5 }, &opt).is_err());
/// # Ok::<(), nabla::Error>(())
/// ```
pub struct Schedule<S> {
    scheduler: S,
    base_lr: f64,
    epoch: usize,
}

impl<S: LrScheduler> Schedule<S> {
    /// Starts the schedule from the optimiser's current learning rate; `Err` for a
    /// schedule its [`LrScheduler::check`] refuses (`step_size` or `t_max` 0).
    pub fn new<T: Element>(scheduler: S, optimizer: &impl Optimizer<T>) -> Result<Self> {
        scheduler.check()?;
        Ok(Schedule { scheduler, base_lr: optimizer.lr(), epoch: 0 })
    }

    /// Ends an epoch: sets the learning rate for the next one.
    pub fn step<T: Element>(&mut self, optimizer: &mut impl Optimizer<T>) {
        self.epoch += 1;
        optimizer.set_lr(self.scheduler.lr_at(self.base_lr, self.epoch));
    }
}
