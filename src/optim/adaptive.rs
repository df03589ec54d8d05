//! The other adaptive optimisers of `torch.optim`: Adagrad, Adadelta, Adamax, NAdam, RAdam.
//! Each follows PyTorch's single-tensor update step by step, so that its numbers match.

use super::{Buffers, Optimizer, gradients_of};
use crate::autograd::Gradients;
use crate::error::Result;
use crate::nn::Param;
use crate::tensor::{Element, Tensor};
use ndarray::{ArrayD, Zip};
use std::collections::BTreeMap;

/// The gradient of parameter `i` as an owned array, with L2 weight decay `wd · w` added
/// (PyTorch's coupled decay).
fn decayed<T: Element>(g: &Tensor<T>, param: &Param<T>, weight_decay: f64) -> ArrayD<T> {
    let mut g = g.to_ndarray();
    if weight_decay != 0.0 {
        let wd = T::of(weight_decay);
        Zip::from(&mut g).and(&param.tensor().value()).for_each(|g, &w| *g = *g + wd * w);
    }
    g
}

/// The buffer `name` of parameter `i`, zeros of `like`'s shape the first time.
fn zeros_like<'a, T: Element>(buffers: &'a mut Buffers<T>, name: &'static str, i: usize, like: &ArrayD<T>) -> &'a mut ArrayD<T> {
    buffers.get_mut(name, i).get_or_insert_with(|| like.mapv(|_| T::zero()))
}

/// The optimiser-state plumbing every optimiser here shares.
macro_rules! state_methods {
    () => {
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
    };
}

/// Adagrad, as `torch.optim.Adagrad` (defaults `lr_decay = 0`, `eps = 1e-10`): at step `t`,
/// `s ← s + g²`, `w ← w - lr/(1 + (t-1)·lr_decay) · g/(√s + ε)`, `s` starting at
/// `initial_accumulator_value`.
///
/// ```
/// use nabla::prelude::*;
/// let w = nn::Param::new(Tensor::from_vec(vec![1.0], &[1])?.requires_grad_(true)?);
/// let mut opt = optim::Adagrad::new(vec![w.clone()], 0.1);
/// let grads = (&w.tensor() * &w.tensor()).sum().backward()?;    // g = 2
/// opt.step(&grads)?;                                             // w - 0.1 · 2/√4
/// assert!((w.tensor().item()? - 0.9).abs() < 1e-6);
/// # Ok::<(), nabla::Error>(())
/// ```
pub struct Adagrad<T: Element = f32> {
    params: Vec<Param<T>>,
    lr: f64,
    lr_decay: f64,
    weight_decay: f64,
    initial_accumulator_value: f64,
    eps: f64,
    maximize: bool,
    buffers: Buffers<T>,
    step: Vec<u64>,
}

impl<T: Element> Adagrad<T> {
    /// Adagrad with learning rate `lr` and PyTorch's other defaults.
    pub fn new(params: Vec<Param<T>>, lr: f64) -> Self {
        let n = params.len();
        Adagrad {
            params,
            lr,
            lr_decay: 0.0,
            weight_decay: 0.0,
            initial_accumulator_value: 0.0,
            eps: 1e-10,
            maximize: false,
            buffers: Buffers::new(&["sum"], n),
            step: vec![0; n],
        }
    }
    /// The rate's decay per step.
    pub fn lr_decay(mut self, lr_decay: f64) -> Self {
        self.lr_decay = lr_decay;
        self
    }
    /// L2 weight decay.
    pub fn weight_decay(mut self, weight_decay: f64) -> Self {
        self.weight_decay = weight_decay;
        self
    }
    /// The accumulator's starting value.
    pub fn initial_accumulator_value(mut self, value: f64) -> Self {
        self.initial_accumulator_value = value;
        self
    }
    /// `ε`, added to the denominator.
    pub fn eps(mut self, eps: f64) -> Self {
        self.eps = eps;
        self
    }
    /// Ascend the objective instead of descending it.
    pub fn maximize(mut self, maximize: bool) -> Self {
        self.maximize = maximize;
        self
    }
}

impl<T: Element> Optimizer<T> for Adagrad<T> {
    fn step(&mut self, grads: &Gradients<T>) -> Result<()> {
        let eps = T::of(self.eps);
        for (i, g) in gradients_of(&self.params, grads).into_iter().enumerate() {
            let Some(g) = g else { continue };
            let g = if self.maximize { g.neg() } else { g };
            let param = self.params[i].clone();
            let g = decayed(&g, &param, self.weight_decay);
            self.step[i] += 1;
            let clr = T::of(self.lr / (1.0 + (self.step[i] - 1) as f64 * self.lr_decay));
            let init = T::of(self.initial_accumulator_value);
            let sum = self.buffers.get_mut("sum", i).get_or_insert_with(|| g.mapv(|_| init));
            Zip::from(&mut *sum).and(&g).for_each(|s, &g| *s = *s + g * g);
            let sum = sum.clone();
            param.update(|w| Zip::from(w).and(&g).and(&sum).for_each(|w, &g, &s| *w = *w - clr * (g / (s.sqrt() + eps))));
        }
        Ok(())
    }
    state_methods!();
}

/// Adadelta, as `torch.optim.Adadelta` (defaults `lr = 1`, `ρ = 0.9`, `ε = 1e-6`):
/// `s ← ρs + (1-ρ)g²`, `Δ = √(u + ε)/√(s + ε) · g`, `u ← ρu + (1-ρ)Δ²`, `w ← w - lr·Δ`.
pub struct Adadelta<T: Element = f32> {
    params: Vec<Param<T>>,
    lr: f64,
    rho: f64,
    eps: f64,
    weight_decay: f64,
    maximize: bool,
    buffers: Buffers<T>,
    step: Vec<u64>,
}

impl<T: Element> Adadelta<T> {
    /// Adadelta with learning rate `lr` (PyTorch's default is 1) and PyTorch's other defaults.
    pub fn new(params: Vec<Param<T>>, lr: f64) -> Self {
        let n = params.len();
        Adadelta {
            params,
            lr,
            rho: 0.9,
            eps: 1e-6,
            weight_decay: 0.0,
            maximize: false,
            buffers: Buffers::new(&["square_avg", "acc_delta"], n),
            step: vec![0; n],
        }
    }
    /// The averages' decay `ρ`.
    pub fn rho(mut self, rho: f64) -> Self {
        self.rho = rho;
        self
    }
    /// `ε`, inside both square roots.
    pub fn eps(mut self, eps: f64) -> Self {
        self.eps = eps;
        self
    }
    /// L2 weight decay.
    pub fn weight_decay(mut self, weight_decay: f64) -> Self {
        self.weight_decay = weight_decay;
        self
    }
    /// Ascend the objective instead of descending it.
    pub fn maximize(mut self, maximize: bool) -> Self {
        self.maximize = maximize;
        self
    }
}

impl<T: Element> Optimizer<T> for Adadelta<T> {
    fn step(&mut self, grads: &Gradients<T>) -> Result<()> {
        let (lr, rho, eps) = (T::of(self.lr), T::of(self.rho), T::of(self.eps));
        for (i, g) in gradients_of(&self.params, grads).into_iter().enumerate() {
            let Some(g) = g else { continue };
            let g = if self.maximize { g.neg() } else { g };
            let param = self.params[i].clone();
            let g = decayed(&g, &param, self.weight_decay);
            self.step[i] += 1;
            let s = zeros_like(&mut self.buffers, "square_avg", i, &g);
            Zip::from(&mut *s).and(&g).for_each(|s, &g| *s = *s * rho + (T::one() - rho) * g * g);
            let s = s.clone();
            let u = zeros_like(&mut self.buffers, "acc_delta", i, &g);
            let mut delta = g.clone();
            Zip::from(&mut delta).and(&*u).and(&s).for_each(|d, &u, &s| *d = (u + eps).sqrt() / (s + eps).sqrt() * *d);
            Zip::from(&mut *u).and(&delta).for_each(|u, &d| *u = *u * rho + (T::one() - rho) * d * d);
            param.update(|w| Zip::from(w).and(&delta).for_each(|w, &d| *w = *w - lr * d));
        }
        Ok(())
    }
    state_methods!();
}

/// Adamax, Adam with the infinity norm, as `torch.optim.Adamax` (defaults `lr = 2e-3`,
/// betas `(0.9, 0.999)`, `ε = 1e-8`): `m ← β₁m + (1-β₁)g`, `u ← max(β₂u, |g| + ε)`,
/// `w ← w - lr/(1-β₁ᵗ) · m/u`.
pub struct Adamax<T: Element = f32> {
    params: Vec<Param<T>>,
    lr: f64,
    betas: (f64, f64),
    eps: f64,
    weight_decay: f64,
    maximize: bool,
    buffers: Buffers<T>,
    step: Vec<u64>,
}

impl<T: Element> Adamax<T> {
    /// Adamax with learning rate `lr` and PyTorch's other defaults.
    pub fn new(params: Vec<Param<T>>, lr: f64) -> Self {
        let n = params.len();
        Adamax {
            params,
            lr,
            betas: (0.9, 0.999),
            eps: 1e-8,
            weight_decay: 0.0,
            maximize: false,
            buffers: Buffers::new(&["exp_avg", "exp_inf"], n),
            step: vec![0; n],
        }
    }
    /// `(β₁, β₂)`.
    pub fn betas(mut self, beta1: f64, beta2: f64) -> Self {
        self.betas = (beta1, beta2);
        self
    }
    /// `ε`, added to `|g|`.
    pub fn eps(mut self, eps: f64) -> Self {
        self.eps = eps;
        self
    }
    /// L2 weight decay.
    pub fn weight_decay(mut self, weight_decay: f64) -> Self {
        self.weight_decay = weight_decay;
        self
    }
    /// Ascend the objective instead of descending it.
    pub fn maximize(mut self, maximize: bool) -> Self {
        self.maximize = maximize;
        self
    }
}

impl<T: Element> Optimizer<T> for Adamax<T> {
    fn step(&mut self, grads: &Gradients<T>) -> Result<()> {
        let (b1, b2, eps) = (T::of(self.betas.0), T::of(self.betas.1), T::of(self.eps));
        for (i, g) in gradients_of(&self.params, grads).into_iter().enumerate() {
            let Some(g) = g else { continue };
            let g = if self.maximize { g.neg() } else { g };
            let param = self.params[i].clone();
            let g = decayed(&g, &param, self.weight_decay);
            self.step[i] += 1;
            let m = zeros_like(&mut self.buffers, "exp_avg", i, &g);
            // PyTorch's lerp: m + (1-β₁)(g - m).
            Zip::from(&mut *m).and(&g).for_each(|m, &g| *m = *m + (T::one() - b1) * (g - *m));
            let m = m.clone();
            let u = zeros_like(&mut self.buffers, "exp_inf", i, &g);
            Zip::from(&mut *u).and(&g).for_each(|u, &g| *u = (*u * b2).max(g.abs() + eps));
            let u = u.clone();
            let clr = T::of(self.lr / (1.0 - self.betas.0.powi(self.step[i] as i32)));
            param.update(|w| Zip::from(w).and(&m).and(&u).for_each(|w, &m, &u| *w = *w - clr * (m / u)));
        }
        Ok(())
    }
    state_methods!();
}

/// Weight decay as NAdam and RAdam take it: coupled (added to the gradient) or decoupled
/// (`w ← w(1 - lr·wd)` first, as AdamW).
fn decay_into<T: Element>(g: &Tensor<T>, param: &Param<T>, lr: f64, weight_decay: f64, decoupled: bool) -> ArrayD<T> {
    if decoupled && weight_decay != 0.0 {
        let keep = T::of(1.0 - lr * weight_decay);
        param.update(|w| w.mapv_inplace(|w| w * keep));
        g.to_ndarray()
    } else {
        decayed(g, param, weight_decay)
    }
}

/// The first and second moments of Adam-style optimisers, updated as PyTorch's: `m` by lerp,
/// `v ← β₂v + (1-β₂)g²`; returned as copies.
fn moments<T: Element>(buffers: &mut Buffers<T>, i: usize, g: &ArrayD<T>, b1: T, b2: T) -> (ArrayD<T>, ArrayD<T>) {
    let m = zeros_like(buffers, "exp_avg", i, g);
    Zip::from(&mut *m).and(g).for_each(|m, &g| *m = *m + (T::one() - b1) * (g - *m));
    let m = m.clone();
    let v = zeros_like(buffers, "exp_avg_sq", i, g);
    Zip::from(&mut *v).and(g).for_each(|v, &g| *v = *v * b2 + (T::one() - b2) * g * g);
    (m, v.clone())
}

/// NAdam, Adam with Nesterov momentum, as `torch.optim.NAdam` (defaults `lr = 2e-3`, betas
/// `(0.9, 0.999)`, `ε = 1e-8`, `momentum_decay = 4e-3`): with
/// `μₜ = β₁(1 - 0.96^{t·ψ}/2)` and `Πₜ = μ₁⋯μₜ`,
/// `w ← w - lr(1-μₜ)/(1-Πₜ) · g/d - lr·μₜ₊₁/(1-Πₜμₜ₊₁) · m/d`, `d = √(v/(1-β₂ᵗ)) + ε`.
pub struct NAdam<T: Element = f32> {
    params: Vec<Param<T>>,
    lr: f64,
    betas: (f64, f64),
    eps: f64,
    weight_decay: f64,
    momentum_decay: f64,
    decoupled_weight_decay: bool,
    maximize: bool,
    mu_product: Vec<f64>,
    buffers: Buffers<T>,
    step: Vec<u64>,
}

impl<T: Element> NAdam<T> {
    /// NAdam with learning rate `lr` and PyTorch's other defaults.
    pub fn new(params: Vec<Param<T>>, lr: f64) -> Self {
        let n = params.len();
        NAdam {
            params,
            lr,
            betas: (0.9, 0.999),
            eps: 1e-8,
            weight_decay: 0.0,
            momentum_decay: 4e-3,
            decoupled_weight_decay: false,
            maximize: false,
            mu_product: vec![1.0; n],
            buffers: Buffers::new(&["exp_avg", "exp_avg_sq"], n),
            step: vec![0; n],
        }
    }
    /// `(β₁, β₂)`.
    pub fn betas(mut self, beta1: f64, beta2: f64) -> Self {
        self.betas = (beta1, beta2);
        self
    }
    /// `ε`, added to the denominator.
    pub fn eps(mut self, eps: f64) -> Self {
        self.eps = eps;
        self
    }
    /// Weight decay (L2 unless decoupled).
    pub fn weight_decay(mut self, weight_decay: f64) -> Self {
        self.weight_decay = weight_decay;
        self
    }
    /// `ψ`, how fast the momentum schedule warms up.
    pub fn momentum_decay(mut self, momentum_decay: f64) -> Self {
        self.momentum_decay = momentum_decay;
        self
    }
    /// Decay the weights directly, as AdamW, rather than through the gradient.
    pub fn decoupled_weight_decay(mut self, decoupled: bool) -> Self {
        self.decoupled_weight_decay = decoupled;
        self
    }
    /// Ascend the objective instead of descending it.
    pub fn maximize(mut self, maximize: bool) -> Self {
        self.maximize = maximize;
        self
    }
}

impl<T: Element> Optimizer<T> for NAdam<T> {
    fn step(&mut self, grads: &Gradients<T>) -> Result<()> {
        let (b1, b2) = self.betas;
        for (i, g) in gradients_of(&self.params, grads).into_iter().enumerate() {
            let Some(g) = g else { continue };
            let g = if self.maximize { g.neg() } else { g };
            let param = self.params[i].clone();
            self.step[i] += 1;
            let t = self.step[i] as f64;
            let g = decay_into(&g, &param, self.lr, self.weight_decay, self.decoupled_weight_decay);
            let mu = b1 * (1.0 - 0.5 * 0.96f64.powf(t * self.momentum_decay));
            let mu_next = b1 * (1.0 - 0.5 * 0.96f64.powf((t + 1.0) * self.momentum_decay));
            self.mu_product[i] *= mu;
            let (m, v) = moments(&mut self.buffers, i, &g, T::of(b1), T::of(b2));
            let bias_correction2 = T::of(1.0 - b2.powf(t));
            let eps = T::of(self.eps);
            let on_grad = T::of(self.lr * (1.0 - mu) / (1.0 - self.mu_product[i]));
            let on_avg = T::of(self.lr * mu_next / (1.0 - self.mu_product[i] * mu_next));
            param.update(|w| {
                Zip::from(w).and(&g).and(&m).and(&v).for_each(|w, &g, &m, &v| {
                    let d = (v / bias_correction2).sqrt() + eps;
                    *w = *w - on_grad * (g / d);
                    *w = *w - on_avg * (m / d);
                })
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
        let mut state = self.buffers.to_state(&self.step);
        for (i, &p) in self.mu_product.iter().enumerate() {
            state.insert(format!("{i}.mu_product"), Tensor::from(ndarray::arr0(T::of(p)).into_dyn()));
        }
        state
    }
    fn load_state_dict(&mut self, state: &BTreeMap<String, Tensor<T>>) -> Result<()> {
        let mut rest = state.clone();
        let mut products = vec![1.0; self.params.len()];
        for (i, p) in products.iter_mut().enumerate() {
            if let Some(t) = rest.remove(&format!("{i}.mu_product")) {
                *p = t.item()?.to_f64().unwrap_or(1.0);
            }
        }
        self.buffers.load(&self.params, &mut self.step, &rest)?;
        self.mu_product = products;
        Ok(())
    }
}

/// RAdam, Adam with a rectified adaptive rate, as `torch.optim.RAdam` (defaults
/// `lr = 1e-3`, betas `(0.9, 0.999)`, `ε = 1e-8`): while the variance's estimate is
/// unreliable (`ρₜ ≤ 5`) the step is plain momentum, `w ← w - lr·m̂`; after, Adam's step
/// scaled by the rectification `rₜ`.
pub struct RAdam<T: Element = f32> {
    params: Vec<Param<T>>,
    lr: f64,
    betas: (f64, f64),
    eps: f64,
    weight_decay: f64,
    decoupled_weight_decay: bool,
    maximize: bool,
    buffers: Buffers<T>,
    step: Vec<u64>,
}

impl<T: Element> RAdam<T> {
    /// RAdam with learning rate `lr` and PyTorch's other defaults.
    pub fn new(params: Vec<Param<T>>, lr: f64) -> Self {
        let n = params.len();
        RAdam {
            params,
            lr,
            betas: (0.9, 0.999),
            eps: 1e-8,
            weight_decay: 0.0,
            decoupled_weight_decay: false,
            maximize: false,
            buffers: Buffers::new(&["exp_avg", "exp_avg_sq"], n),
            step: vec![0; n],
        }
    }
    /// `(β₁, β₂)`.
    pub fn betas(mut self, beta1: f64, beta2: f64) -> Self {
        self.betas = (beta1, beta2);
        self
    }
    /// `ε`, added to the denominator.
    pub fn eps(mut self, eps: f64) -> Self {
        self.eps = eps;
        self
    }
    /// Weight decay (L2 unless decoupled).
    pub fn weight_decay(mut self, weight_decay: f64) -> Self {
        self.weight_decay = weight_decay;
        self
    }
    /// Decay the weights directly, as AdamW, rather than through the gradient.
    pub fn decoupled_weight_decay(mut self, decoupled: bool) -> Self {
        self.decoupled_weight_decay = decoupled;
        self
    }
    /// Ascend the objective instead of descending it.
    pub fn maximize(mut self, maximize: bool) -> Self {
        self.maximize = maximize;
        self
    }
}

impl<T: Element> Optimizer<T> for RAdam<T> {
    fn step(&mut self, grads: &Gradients<T>) -> Result<()> {
        let (b1, b2) = self.betas;
        for (i, g) in gradients_of(&self.params, grads).into_iter().enumerate() {
            let Some(g) = g else { continue };
            let g = if self.maximize { g.neg() } else { g };
            let param = self.params[i].clone();
            self.step[i] += 1;
            let t = self.step[i] as f64;
            let g = decay_into(&g, &param, self.lr, self.weight_decay, self.decoupled_weight_decay);
            let (m, v) = moments(&mut self.buffers, i, &g, T::of(b1), T::of(b2));
            let bias_correction1 = T::of(1.0 - b1.powf(t));
            let bias_correction2 = 1.0 - b2.powf(t);
            let rho_inf = 2.0 / (1.0 - b2) - 1.0;
            let rho_t = rho_inf - 2.0 * t * b2.powf(t) / bias_correction2;
            let lr = T::of(self.lr);
            if rho_t > 5.0 {
                let rect = ((rho_t - 4.0) * (rho_t - 2.0) * rho_inf / ((rho_inf - 4.0) * (rho_inf - 2.0) * rho_t)).sqrt();
                let (rect, root_bc2, eps) = (T::of(rect), T::of(bias_correction2.sqrt()), T::of(self.eps));
                param.update(|w| {
                    Zip::from(w).and(&m).and(&v).for_each(|w, &m, &v| {
                        let adaptive = root_bc2 / (v.sqrt() + eps);
                        *w = *w - m / bias_correction1 * lr * adaptive * rect;
                    })
                });
            } else {
                param.update(|w| Zip::from(w).and(&m).for_each(|w, &m| *w = *w - m / bias_correction1 * lr));
            }
        }
        Ok(())
    }
    state_methods!();
}
