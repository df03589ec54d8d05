//! Adam (with AMSGrad and L2 weight decay) and AdamW (decoupled weight decay).

use super::{Buffers, Optimizer, gradients_of};
use crate::autograd::Gradients;
use crate::error::Result;
use crate::nn::Param;
use crate::tensor::{Element, Tensor};
use ndarray::Zip;
use std::collections::BTreeMap;

/// Adam, as `torch.optim.Adam` (defaults `lr = 1e-3`, `betas = (0.9, 0.999)`, `eps = 1e-8`):
/// `m ← β₁m + (1-β₁)g`, `v ← β₂v + (1-β₂)g²`,
/// `w ← w - lr/(1-β₁ᵗ) · m / (√v/√(1-β₂ᵗ) + ε)`; with AMSGrad `v` is replaced by its running
/// maximum. `weight_decay` adds `λw` to the gradient; [`AdamW`] decays the weights instead.
pub struct Adam<T: Element = f32> {
    params: Vec<Param<T>>,
    lr: f64,
    betas: (f64, f64),
    eps: f64,
    weight_decay: f64,
    amsgrad: bool,
    decoupled: bool,
    maximize: bool,
    buffers: Buffers<T>,
    step: Vec<u64>,
}

/// AdamW, as `torch.optim.AdamW` (default `weight_decay = 0.01`): Adam whose weight decay
/// shrinks the weights directly, `w ← w(1 - lr·λ)`, instead of going through the moments.
///
/// ```
/// use nabla::prelude::*;
/// let w = nn::Param::new(Tensor::ones(&[1]));
/// let mut opt = optim::AdamW::new(vec![w.clone()], 0.1);
/// let grads = w.tensor().sum().backward()?;
/// opt.step(&grads)?;
/// // decay then a step of lr against the sign of the gradient: 1·(1 - 0.001) - 0.1
/// assert!((w.tensor().item()? - 0.899).abs() < 1e-6);
/// # Ok::<(), nabla::Error>(())
/// ```
pub struct AdamW<T: Element = f32>(Adam<T>);

impl<T: Element> AdamW<T> {
    /// AdamW with learning rate `lr` and PyTorch's other defaults (`weight_decay = 0.01`).
    pub fn new(params: Vec<Param<T>>, lr: f64) -> Self {
        let mut adam = Adam::new(params, lr).weight_decay(0.01);
        adam.decoupled = true;
        AdamW(adam)
    }
    /// The decay rates `(β₁, β₂)` of the moment estimates.
    pub fn betas(self, beta1: f64, beta2: f64) -> Self {
        AdamW(self.0.betas(beta1, beta2))
    }
    /// `ε`, added to the denominator.
    pub fn eps(self, eps: f64) -> Self {
        AdamW(self.0.eps(eps))
    }
    /// The decoupled weight decay `λ`: `w ← w(1 - lr·λ)` before each step.
    pub fn weight_decay(self, weight_decay: f64) -> Self {
        AdamW(self.0.weight_decay(weight_decay))
    }
    /// The AMSGrad variant.
    pub fn amsgrad(self, amsgrad: bool) -> Self {
        AdamW(self.0.amsgrad(amsgrad))
    }
    /// Ascend the objective instead of descending it (PyTorch's `maximize`).
    pub fn maximize(self, maximize: bool) -> Self {
        AdamW(self.0.maximize(maximize))
    }
}

impl<T: Element> Optimizer<T> for AdamW<T> {
    fn step(&mut self, grads: &Gradients<T>) -> Result<()> {
        self.0.step(grads)
    }
    fn lr(&self) -> f64 {
        self.0.lr()
    }
    fn set_lr(&mut self, lr: f64) {
        self.0.set_lr(lr)
    }
    fn state_dict(&self) -> BTreeMap<String, Tensor<T>> {
        self.0.state_dict()
    }
    fn load_state_dict(&mut self, state: &BTreeMap<String, Tensor<T>>) -> Result<()> {
        self.0.load_state_dict(state)
    }
}

impl<T: Element> Adam<T> {
    /// Adam with learning rate `lr` and PyTorch's other defaults.
    pub fn new(params: Vec<Param<T>>, lr: f64) -> Self {
        let n = params.len();
        Adam {
            params,
            lr,
            betas: (0.9, 0.999),
            eps: 1e-8,
            weight_decay: 0.0,
            amsgrad: false,
            decoupled: false,
            maximize: false,
            buffers: Buffers::new(&["exp_avg", "exp_avg_sq", "max_exp_avg_sq"], n),
            step: vec![0; n],
        }
    }
    /// The decay rates `(β₁, β₂)` of the moment estimates.
    pub fn betas(mut self, beta1: f64, beta2: f64) -> Self {
        self.betas = (beta1, beta2);
        self
    }
    /// `ε`, added to the denominator.
    pub fn eps(mut self, eps: f64) -> Self {
        self.eps = eps;
        self
    }
    /// Weight decay `λ`, added to the gradient as `λw` (L2); [`AdamW`] decays the weights.
    pub fn weight_decay(mut self, weight_decay: f64) -> Self {
        self.weight_decay = weight_decay;
        self
    }
    /// The AMSGrad variant.
    pub fn amsgrad(mut self, amsgrad: bool) -> Self {
        self.amsgrad = amsgrad;
        self
    }
    /// Ascend the objective instead of descending it (PyTorch's `maximize`).
    pub fn maximize(mut self, maximize: bool) -> Self {
        self.maximize = maximize;
        self
    }
}

impl<T: Element> Optimizer<T> for Adam<T> {
    fn step(&mut self, grads: &Gradients<T>) -> Result<()> {
        let (b1, b2) = (T::of(self.betas.0), T::of(self.betas.1));
        let (lr, eps, wd) = (T::of(self.lr), T::of(self.eps), T::of(self.weight_decay));
        for (i, g) in gradients_of(&self.params, grads).into_iter().enumerate() {
            let Some(g) = g else { continue };
            let mut g = if self.maximize { g.neg().to_ndarray() } else { g.to_ndarray() };
            let param = self.params[i].clone();
            self.step[i] += 1;
            let t = self.step[i] as i32;
            if self.weight_decay != 0.0 {
                if self.decoupled {
                    param.update(|w| w.mapv_inplace(|w| w * (T::one() - lr * wd)));
                } else {
                    Zip::from(&mut g).and(&param.tensor().value()).for_each(|g, &w| *g = *g + wd * w);
                }
            }
            let m = self.buffers.get_mut("exp_avg", i).get_or_insert_with(|| g.mapv(|_| T::zero()));
            Zip::from(&mut *m).and(&g).for_each(|m, &g| *m = b1 * *m + (T::one() - b1) * g);
            let m = m.clone();
            let v = self.buffers.get_mut("exp_avg_sq", i).get_or_insert_with(|| g.mapv(|_| T::zero()));
            Zip::from(&mut *v).and(&g).for_each(|v, &g| *v = b2 * *v + (T::one() - b2) * g * g);
            let mut v = v.clone();
            if self.amsgrad {
                let v_max = self.buffers.get_mut("max_exp_avg_sq", i).get_or_insert_with(|| v.mapv(|_| T::zero()));
                Zip::from(&mut *v_max).and(&v).for_each(|vm, &v| *vm = if v > *vm { v } else { *vm });
                v = v_max.clone();
            }
            let bias_correction1 = T::one() - b1.powi(t);
            let bias_correction2_sqrt = (T::one() - b2.powi(t)).sqrt();
            let step_size = lr / bias_correction1;
            param.update(|w| {
                Zip::from(w).and(&m).and(&v).for_each(|w, &m, &v| *w = *w - step_size * m / (v.sqrt() / bias_correction2_sqrt + eps))
            });
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
