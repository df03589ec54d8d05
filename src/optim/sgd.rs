//! Stochastic gradient descent with momentum, dampening, Nesterov and weight decay.

use super::{Buffers, Optimizer, gradients_of};
use crate::autograd::Gradients;
use crate::error::{Error, Result};
use crate::nn::Param;
use crate::tensor::{Element, Tensor};
use ndarray::Zip;
use std::collections::BTreeMap;

/// SGD as `torch.optim.SGD`: with `g = ∇ + λw`, momentum buffer `b ← μb + (1 - τ)g` (`b = g`
/// at the first step), the step direction `g + μb` (Nesterov) or `b`, and `w ← w - lr·d`.
///
/// ```
/// use nabla::prelude::*;
/// let w = nn::Param::new(Tensor::ones(&[2]));
/// let mut opt = optim::Sgd::new(vec![w.clone()], 0.5).momentum(0.9);
/// let grads = (&w.tensor() * 2.0).sum().backward()?;      // ∇ = 2
/// opt.step(&grads)?;
/// assert_eq!(w.tensor().to_vec(), vec![0.0, 0.0]);       // 1 - 0.5·2
/// # Ok::<(), nabla::Error>(())
/// ```
pub struct Sgd<T: Element = f32> {
    params: Vec<Param<T>>,
    lr: f64,
    momentum: f64,
    dampening: f64,
    weight_decay: f64,
    nesterov: bool,
    maximize: bool,
    buffers: Buffers<T>,
    step: Vec<u64>,
}

impl<T: Element> Sgd<T> {
    /// Plain SGD with learning rate `lr`.
    pub fn new(params: Vec<Param<T>>, lr: f64) -> Self {
        let n = params.len();
        Sgd {
            params,
            lr,
            momentum: 0.0,
            dampening: 0.0,
            weight_decay: 0.0,
            nesterov: false,
            maximize: false,
            buffers: Buffers::new(&["momentum_buffer"], n),
            step: vec![0; n],
        }
    }
    /// Momentum `μ`.
    pub fn momentum(mut self, momentum: f64) -> Self {
        self.momentum = momentum;
        self
    }
    /// Dampening `τ` of the momentum.
    pub fn dampening(mut self, dampening: f64) -> Self {
        self.dampening = dampening;
        self
    }
    /// L2 weight decay `λ`.
    pub fn weight_decay(mut self, weight_decay: f64) -> Self {
        self.weight_decay = weight_decay;
        self
    }
    /// Nesterov momentum (needs momentum > 0 and no dampening, as PyTorch).
    pub fn nesterov(mut self, nesterov: bool) -> Self {
        self.nesterov = nesterov;
        self
    }
    /// Ascend the objective instead of descending it (PyTorch's `maximize`).
    pub fn maximize(mut self, maximize: bool) -> Self {
        self.maximize = maximize;
        self
    }
}

impl<T: Element> Optimizer<T> for Sgd<T> {
    fn step(&mut self, grads: &Gradients<T>) -> Result<()> {
        if self.nesterov && (self.momentum <= 0.0 || self.dampening != 0.0) {
            return Err(Error::invalid(
                "Sgd",
                format!("Nesterov momentum needs momentum > 0 and dampening 0, got {} and {}", self.momentum, self.dampening),
            ));
        }
        let (lr, mu, damp, wd) = (T::of(self.lr), T::of(self.momentum), T::of(self.dampening), T::of(self.weight_decay));
        for (i, g) in gradients_of(&self.params, grads).into_iter().enumerate() {
            let Some(g) = g else { continue };
            let g = if self.maximize { g.neg() } else { g };
            let param = &self.params[i];
            if self.weight_decay == 0.0 && self.momentum == 0.0 {
                // Plain SGD reads the gradient where it lies: no copy.
                param.update_with(&g.value().view(), move |w, g| w - lr * g);
                self.step[i] += 1;
                continue;
            }
            let mut g = g.to_ndarray();
            if self.weight_decay != 0.0 {
                Zip::from(&mut g).and(&param.tensor().value()).for_each(|g, &w| *g = *g + wd * w);
            }
            if self.momentum != 0.0 {
                let buffer = self.buffers.get_mut("momentum_buffer", i);
                let b = match buffer {
                    None => buffer.insert(g.clone()),
                    Some(b) => {
                        Zip::from(&mut *b).and(&g).for_each(|b, &g| *b = mu * *b + (T::one() - damp) * g);
                        b
                    }
                };
                if self.nesterov {
                    Zip::from(&mut g).and(&*b).for_each(|g, &b| *g = *g + mu * b);
                } else {
                    g.assign(b);
                }
            }
            param.update_with(&g.view(), move |w, g| w - lr * g);
            self.step[i] += 1;
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
