//! RMSprop, plain or centered, with momentum and weight decay.

use super::{Buffers, Optimizer, gradients_of};
use crate::autograd::Gradients;
use crate::error::Result;
use crate::nn::Param;
use crate::tensor::{Element, Tensor};
use ndarray::Zip;
use std::collections::BTreeMap;

/// RMSprop, as `torch.optim.RMSprop` (defaults `alpha = 0.99`, `eps = 1e-8`):
/// `s ← αs + (1-α)g²`, denominator `√s + ε` (centered: `√(s - ḡ²) + ε` with the running
/// mean `ḡ` of the gradient), then `w ← w - lr·g/denominator`, or through a momentum buffer
/// `b ← μb + g/denominator`, `w ← w - lr·b`.
pub struct RmsProp<T: Element = f32> {
    params: Vec<Param<T>>,
    lr: f64,
    alpha: f64,
    eps: f64,
    weight_decay: f64,
    momentum: f64,
    centered: bool,
    maximize: bool,
    buffers: Buffers<T>,
    step: Vec<u64>,
}

impl<T: Element> RmsProp<T> {
    /// RMSprop with learning rate `lr` and PyTorch's other defaults.
    pub fn new(params: Vec<Param<T>>, lr: f64) -> Self {
        let n = params.len();
        RmsProp {
            params,
            lr,
            alpha: 0.99,
            eps: 1e-8,
            weight_decay: 0.0,
            momentum: 0.0,
            centered: false,
            maximize: false,
            buffers: Buffers::new(&["square_avg", "grad_avg", "momentum_buffer"], n),
            step: vec![0; n],
        }
    }
    /// Smoothing constant `α`.
    pub fn alpha(mut self, alpha: f64) -> Self {
        self.alpha = alpha;
        self
    }
    /// `ε`, added to the denominator.
    pub fn eps(mut self, eps: f64) -> Self {
        self.eps = eps;
        self
    }
    /// L2 weight decay.
    pub fn weight_decay(mut self, weight_decay: f64) -> Self {
        self.weight_decay = weight_decay;
        self
    }
    /// Momentum `μ`.
    pub fn momentum(mut self, momentum: f64) -> Self {
        self.momentum = momentum;
        self
    }
    /// Normalise by the variance rather than the second moment of the gradient.
    pub fn centered(mut self, centered: bool) -> Self {
        self.centered = centered;
        self
    }
    /// Ascend the objective instead of descending it (PyTorch's `maximize`).
    pub fn maximize(mut self, maximize: bool) -> Self {
        self.maximize = maximize;
        self
    }
}

impl<T: Element> Optimizer<T> for RmsProp<T> {
    fn step(&mut self, grads: &Gradients<T>) -> Result<()> {
        let (lr, alpha, eps, wd, mu) = (T::of(self.lr), T::of(self.alpha), T::of(self.eps), T::of(self.weight_decay), T::of(self.momentum));
        for (i, g) in gradients_of(&self.params, grads).into_iter().enumerate() {
            let Some(g) = g else { continue };
            let mut g = if self.maximize { g.neg().to_ndarray() } else { g.to_ndarray() };
            let param = self.params[i].clone();
            self.step[i] += 1;
            if self.weight_decay != 0.0 {
                Zip::from(&mut g).and(&param.tensor().value()).for_each(|g, &w| *g = *g + wd * w);
            }
            let s = self.buffers.get_mut("square_avg", i).get_or_insert_with(|| g.mapv(|_| T::zero()));
            Zip::from(&mut *s).and(&g).for_each(|s, &g| *s = alpha * *s + (T::one() - alpha) * g * g);
            let mut denominator = s.clone();
            if self.centered {
                let mean = self.buffers.get_mut("grad_avg", i).get_or_insert_with(|| g.mapv(|_| T::zero()));
                Zip::from(&mut *mean).and(&g).for_each(|m, &g| *m = alpha * *m + (T::one() - alpha) * g);
                Zip::from(&mut denominator).and(&*mean).for_each(|d, &m| *d = *d - m * m);
            }
            denominator.mapv_inplace(|d| d.sqrt() + eps);
            if self.momentum > 0.0 {
                let b = self.buffers.get_mut("momentum_buffer", i).get_or_insert_with(|| g.mapv(|_| T::zero()));
                Zip::from(&mut *b).and(&g).and(&denominator).for_each(|b, &g, &d| *b = mu * *b + g / d);
                let b = b.clone();
                param.update_with(&b.view(), move |w, b| w - lr * b);
            } else {
                param.update(|w| Zip::from(w).and(&g).and(&denominator).for_each(|w, &g, &d| *w = *w - lr * g / d));
            }
        }
        Ok(())
    }
    fn lr(&self) -> f64 {
        self.lr
    }
    fn set_lr(&mut self, lr: f64) {
        self.lr = lr;
    }
    fn state_dict(&self) -> BTreeMap<String, Tensor<T>> {
        self.buffers.to_state(&self.step)
    }
    fn load_state_dict(&mut self, state: &BTreeMap<String, Tensor<T>>) -> Result<()> {
        self.buffers.load(&self.params, &mut self.step, state)
    }
}
