//! Learning-rate schedules: PyTorch's in closed form (StepLR, MultiStepLR, ExponentialLR,
//! CosineAnnealingLR and its warm restarts, LinearLR (warm-up), ConstantLR, PolynomialLR,
//! OneCycleLR, CyclicLR, LambdaLR) and SequentialLR to chain them (warm-up, then decay);
//! ReduceLROnPlateau, which is fed a metric.

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

/// `lr · γ^k` with `k` the number of milestones reached (a repeated milestone counts
/// twice), as `MultiStepLR`.
#[derive(Debug, Clone)]
pub struct MultiStepLr {
    /// The epochs at which the rate decays.
    pub milestones: Vec<usize>,
    /// Decay factor.
    pub gamma: f64,
}

impl LrScheduler for MultiStepLr {
    fn lr_at(&self, base_lr: f64, epoch: usize) -> f64 {
        base_lr * self.gamma.powi(self.milestones.iter().filter(|&&m| m <= epoch).count() as i32)
    }
}

/// `lr · factor` for the first `total_iters` epochs, then `lr`, as `ConstantLR` (PyTorch's
/// defaults: factor 1/3, 5 epochs).
#[derive(Debug, Clone, Copy)]
pub struct ConstantLr {
    /// The factor, in `(0, 1]`.
    pub factor: f64,
    /// Epochs at the reduced rate.
    pub total_iters: usize,
}

impl Default for ConstantLr {
    fn default() -> Self {
        ConstantLr { factor: 1.0 / 3.0, total_iters: 5 }
    }
}

impl LrScheduler for ConstantLr {
    fn lr_at(&self, base_lr: f64, epoch: usize) -> f64 {
        if epoch < self.total_iters { base_lr * self.factor } else { base_lr }
    }
    fn check(&self) -> Result<()> {
        if !(self.factor > 0.0 && self.factor <= 1.0) {
            return Err(Error::invalid("ConstantLr", format!("factor {} must be in (0, 1]", self.factor)));
        }
        Ok(())
    }
}

/// `lr · (1 - min(epoch, T)/T)^power`, as `PolynomialLR` (defaults T = 5, power 1).
#[derive(Debug, Clone, Copy)]
pub struct PolynomialLr {
    /// `T`, the epochs to reach 0.
    pub total_iters: usize,
    /// The power.
    pub power: f64,
}

impl LrScheduler for PolynomialLr {
    fn lr_at(&self, base_lr: f64, epoch: usize) -> f64 {
        let t = self.total_iters as f64;
        base_lr * (1.0 - epoch.min(self.total_iters) as f64 / t).powf(self.power)
    }
    fn check(&self) -> Result<()> {
        match self.total_iters {
            0 => Err(Error::invalid("PolynomialLr", "total_iters 0: the schedule divides by it")),
            _ => Ok(()),
        }
    }
}

/// Cosine annealing with warm restarts, as `CosineAnnealingWarmRestarts`: periods of
/// `T₀, T₀·T_mult, …` epochs, each from `lr` down to `η_min`.
#[derive(Debug, Clone, Copy)]
pub struct CosineAnnealingWarmRestarts {
    /// The first period.
    pub t_0: usize,
    /// Each period's length over the one before (at least 1).
    pub t_mult: usize,
    /// The smallest rate.
    pub eta_min: f64,
}

impl LrScheduler for CosineAnnealingWarmRestarts {
    fn lr_at(&self, base_lr: f64, epoch: usize) -> f64 {
        let (mut t_cur, mut t_i) = (epoch, self.t_0.max(1));
        while t_cur >= t_i {
            t_cur -= t_i;
            t_i *= self.t_mult.max(1);
        }
        self.eta_min + (base_lr - self.eta_min) * (1.0 + (std::f64::consts::PI * t_cur as f64 / t_i as f64).cos()) / 2.0
    }
    fn check(&self) -> Result<()> {
        if self.t_0 == 0 || self.t_mult == 0 {
            return Err(Error::invalid(
                "CosineAnnealingWarmRestarts",
                format!("T_0 {} and T_mult {} must be at least 1", self.t_0, self.t_mult),
            ));
        }
        Ok(())
    }
}

/// How [`CyclicLr`] scales its cycles, as PyTorch's `mode`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum CyclicMode {
    /// Every cycle spans `[base_lr, max_lr]`.
    Triangular,
    /// Each cycle's amplitude half the one before.
    Triangular2,
    /// The amplitude times `γ^epoch`.
    ExpRange {
        /// The decay per epoch.
        gamma: f64,
    },
}

/// The cyclical rate, as `CyclicLR` with `cycle_momentum = False`: from `base_lr` up to
/// `max_lr` in `step_size_up` epochs and back in `step_size_down`; it sets the rate itself
/// (the optimiser's initial rate is not used).
#[derive(Debug, Clone, Copy)]
pub struct CyclicLr {
    /// The lower bound.
    pub base_lr: f64,
    /// The upper bound.
    pub max_lr: f64,
    /// Epochs rising.
    pub step_size_up: usize,
    /// Epochs falling (PyTorch's `None` is `step_size_up`).
    pub step_size_down: usize,
    /// The amplitude's policy.
    pub mode: CyclicMode,
}

impl LrScheduler for CyclicLr {
    fn lr_at(&self, _base_lr: f64, epoch: usize) -> f64 {
        let total = (self.step_size_up + self.step_size_down) as f64;
        let step_ratio = self.step_size_up as f64 / total;
        let cycle = (1.0 + epoch as f64 / total).floor();
        let x = 1.0 + epoch as f64 / total - cycle;
        let scale = if x <= step_ratio { x / step_ratio } else { (x - 1.0) / (step_ratio - 1.0) };
        let height = (self.max_lr - self.base_lr) * scale;
        let factor = match self.mode {
            CyclicMode::Triangular => 1.0,
            CyclicMode::Triangular2 => 1.0 / 2f64.powf(cycle - 1.0),
            CyclicMode::ExpRange { gamma } => gamma.powi(epoch as i32),
        };
        self.base_lr + height * factor
    }
    fn check(&self) -> Result<()> {
        if self.step_size_up == 0 || self.step_size_down == 0 {
            return Err(Error::invalid(
                "CyclicLr",
                format!("step_size_up {} and step_size_down {} must be at least 1", self.step_size_up, self.step_size_down),
            ));
        }
        Ok(())
    }
}

/// How [`OneCycleLr`] anneals between its rates, as PyTorch's `anneal_strategy`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Anneal {
    /// Half a cosine (the default).
    #[default]
    Cos,
    /// A straight line.
    Linear,
}

/// The one-cycle policy, as `OneCycleLR` with `cycle_momentum = False`: from
/// `max_lr/div_factor` up to `max_lr` over the first `pct_start` of `total_steps`, then down
/// to `max_lr/(div_factor·final_div_factor)` (with `three_phase`, back to the start first);
/// it sets the rate itself. Past `total_steps` the rate is `NaN`, as PyTorch raises.
#[derive(Debug, Clone, Copy)]
pub struct OneCycleLr {
    /// The peak rate.
    pub max_lr: f64,
    /// The steps in the cycle.
    pub total_steps: usize,
    /// The rising share of the steps.
    pub pct_start: f64,
    /// How the rate moves between phases.
    pub anneal_strategy: Anneal,
    /// `max_lr` over the starting rate.
    pub div_factor: f64,
    /// The starting rate over the final one.
    pub final_div_factor: f64,
    /// Three phases (up, down to the start, down to the end) instead of two.
    pub three_phase: bool,
}

impl OneCycleLr {
    /// PyTorch's defaults (`pct_start` 0.3, cosine, `div_factor` 25, `final_div_factor`
    /// 1e4, two phases).
    pub fn new(max_lr: f64, total_steps: usize) -> Self {
        OneCycleLr {
            max_lr,
            total_steps,
            pct_start: 0.3,
            anneal_strategy: Anneal::Cos,
            div_factor: 25.0,
            final_div_factor: 1e4,
            three_phase: false,
        }
    }
}

impl LrScheduler for OneCycleLr {
    fn lr_at(&self, _base_lr: f64, epoch: usize) -> f64 {
        if epoch > self.total_steps {
            return f64::NAN;
        }
        let initial = self.max_lr / self.div_factor;
        let min = initial / self.final_div_factor;
        let t = self.total_steps as f64;
        let phases: Vec<(f64, f64, f64)> = if self.three_phase {
            vec![
                (self.pct_start * t - 1.0, initial, self.max_lr),
                (2.0 * self.pct_start * t - 2.0, self.max_lr, initial),
                (t - 1.0, initial, min),
            ]
        } else {
            vec![(self.pct_start * t - 1.0, initial, self.max_lr), (t - 1.0, self.max_lr, min)]
        };
        let step = epoch as f64;
        let mut start = 0.0;
        for (k, &(end, from, to)) in phases.iter().enumerate() {
            if step <= end || k == phases.len() - 1 {
                let pct = (step - start) / (end - start);
                return match self.anneal_strategy {
                    Anneal::Cos => to + (from - to) / 2.0 * ((std::f64::consts::PI * pct).cos() + 1.0),
                    Anneal::Linear => (to - from) * pct + from,
                };
            }
            start = end;
        }
        unreachable!("the last phase always answers")
    }
    fn check(&self) -> Result<()> {
        if self.total_steps == 0 || !(0.0..=1.0).contains(&self.pct_start) {
            return Err(Error::invalid(
                "OneCycleLr",
                format!("total_steps {} must be at least 1 and pct_start {} in [0, 1]", self.total_steps, self.pct_start),
            ));
        }
        Ok(())
    }
}

/// Whether [`ReduceLrOnPlateau`] watches for a metric going down (a loss) or up (an
/// accuracy).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum PlateauMode {
    /// Lower is better.
    #[default]
    Min,
    /// Higher is better.
    Max,
}

/// Divides the rate by `1/factor` when a metric has not improved for `patience` epochs, as
/// `ReduceLROnPlateau`: fed the metric at each [`ReduceLrOnPlateau::step`], not a closed
/// form. An improvement beats the best by `threshold`, relative (`rel`) or absolute.
#[derive(Debug, Clone)]
pub struct ReduceLrOnPlateau {
    mode: PlateauMode,
    factor: f64,
    patience: usize,
    threshold: f64,
    relative_threshold: bool,
    cooldown: usize,
    min_lr: f64,
    eps: f64,
    best: f64,
    bad_epochs: usize,
    cooldown_left: usize,
}

impl Default for ReduceLrOnPlateau {
    fn default() -> Self {
        ReduceLrOnPlateau::new(PlateauMode::Min)
    }
}

impl ReduceLrOnPlateau {
    /// PyTorch's defaults: factor 0.1, patience 10, relative threshold 1e-4, no cooldown,
    /// `min_lr` 0, eps 1e-8.
    pub fn new(mode: PlateauMode) -> Self {
        ReduceLrOnPlateau {
            mode,
            factor: 0.1,
            patience: 10,
            threshold: 1e-4,
            relative_threshold: true,
            cooldown: 0,
            min_lr: 0.0,
            eps: 1e-8,
            best: if mode == PlateauMode::Min { f64::INFINITY } else { f64::NEG_INFINITY },
            bad_epochs: 0,
            cooldown_left: 0,
        }
    }

    /// The factor the rate is multiplied by (0.1).
    pub fn factor(mut self, factor: f64) -> Self {
        self.factor = factor;
        self
    }
    /// Epochs without improvement tolerated (10).
    pub fn patience(mut self, patience: usize) -> Self {
        self.patience = patience;
        self
    }
    /// The margin an improvement needs (1e-4), relative to the best value (PyTorch's
    /// `threshold_mode = "rel"`) or absolute (`"abs"`).
    pub fn threshold(mut self, threshold: f64, relative: bool) -> Self {
        self.threshold = threshold;
        self.relative_threshold = relative;
        self
    }
    /// Epochs to wait after a reduction before counting again (0).
    pub fn cooldown(mut self, cooldown: usize) -> Self {
        self.cooldown = cooldown;
        self
    }
    /// The smallest rate (0).
    pub fn min_lr(mut self, min_lr: f64) -> Self {
        self.min_lr = min_lr;
        self
    }
    /// Reductions smaller than this are skipped (1e-8).
    pub fn eps(mut self, eps: f64) -> Self {
        self.eps = eps;
        self
    }

    fn is_better(&self, value: f64) -> bool {
        match (self.mode, self.relative_threshold) {
            (PlateauMode::Min, true) => value < self.best * (1.0 - self.threshold),
            (PlateauMode::Min, false) => value < self.best - self.threshold,
            (PlateauMode::Max, true) => value > self.best * (1.0 + self.threshold),
            (PlateauMode::Max, false) => value > self.best + self.threshold,
        }
    }

    /// Ends an epoch with its metric: counts it against the best and reduces the
    /// optimiser's rate after `patience` epochs without improvement.
    ///
    /// ```
    /// use nabla::prelude::*;
    /// use nabla::optim::{PlateauMode, ReduceLrOnPlateau};
    /// let w = nn::Param::new(Tensor::zeros(&[1]));
    /// let mut opt = optim::Sgd::new(vec![w], 1.0);
    /// let mut plateau = ReduceLrOnPlateau::new(PlateauMode::Min).patience(1);
    /// for loss in [1.0, 0.5, 0.5, 0.5] {
    ///     plateau.step(loss, &mut opt);
    /// }
    /// assert!((opt.lr() - 0.1).abs() < 1e-12);     // two epochs without improvement
    /// ```
    pub fn step<T: Element>(&mut self, metric: f64, optimizer: &mut impl Optimizer<T>) {
        if self.is_better(metric) {
            self.best = metric;
            self.bad_epochs = 0;
        } else {
            self.bad_epochs += 1;
        }
        if self.cooldown_left > 0 {
            self.cooldown_left -= 1;
            self.bad_epochs = 0;
        }
        if self.bad_epochs > self.patience {
            let old = optimizer.lr();
            let new = (old * self.factor).max(self.min_lr);
            if old - new > self.eps {
                optimizer.set_lr(new);
            }
            self.cooldown_left = self.cooldown;
            self.bad_epochs = 0;
        }
    }
}
