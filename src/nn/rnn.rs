//! Recurrent layers with PyTorch's layout: `RNN` (tanh or ReLU), `GRU`, `LSTM`, with
//! `num_layers`, `bias`, `batch_first`, `bidirectional` and an optional initial state.
//!
//! Each time step is composed from tensor ops (so gradients of every order come from the
//! ops' rules); the input projection of all time steps is one matrix product per layer and
//! direction.

use super::init::uniform;
use super::{Module, Param};
use crate::error::{Error, Result};
use crate::tensor::{Creation, Element, Tensor};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use std::sync::Mutex;

/// Which recurrent cell a [`Recurrent`] layer runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CellKind {
    /// `h' = tanh(W_ih x + b_ih + W_hh h + b_hh)`.
    RnnTanh,
    /// The same with ReLU.
    RnnRelu,
    /// Gated recurrent unit, gates `r, z, n` (PyTorch's order).
    Gru,
    /// Long short-term memory, gates `i, f, g, o` (PyTorch's order).
    Lstm,
}

impl CellKind {
    fn gates(self) -> usize {
        match self {
            CellKind::RnnTanh | CellKind::RnnRelu => 1,
            CellKind::Gru => 3,
            CellKind::Lstm => 4,
        }
    }
}

/// The weights of one layer and direction.
struct Direction<T: Element> {
    weight_ih: Param<T>,
    weight_hh: Param<T>,
    bias_ih: Option<Param<T>>,
    bias_hh: Option<Param<T>>,
    /// LSTM's projection of `h`, `[P, H]`, with `proj_size` P > 0.
    weight_hr: Option<Param<T>>,
    suffix: String,
}

impl<T: Element> Direction<T> {
    /// PyTorch's init: every weight and bias `U(±1/√H)`, drawn in its order. With
    /// `proj_size` P > 0 the recurrent weight reads the projected `h` (`[G·H, P]`).
    fn new(
        kind: CellKind,
        input_size: usize,
        hidden_size: usize,
        proj_size: usize,
        bias: bool,
        suffix: String,
        rng: &mut impl Rng,
    ) -> Self {
        let bound = if hidden_size > 0 { 1.0 / (hidden_size as f64).sqrt() } else { 0.0 };
        let g = kind.gates() * hidden_size;
        let state = if proj_size > 0 { proj_size } else { hidden_size };
        Direction {
            weight_ih: Param::new(uniform(&[g, input_size], bound, rng)),
            weight_hh: Param::new(uniform(&[g, state], bound, rng)),
            bias_ih: bias.then(|| Param::new(uniform(&[g], bound, rng))),
            bias_hh: bias.then(|| Param::new(uniform(&[g], bound, rng))),
            weight_hr: (proj_size > 0).then(|| Param::new(uniform(&[proj_size, hidden_size], bound, rng))),
            suffix,
        }
    }
}

/// A multi-layer recurrent network as `torch.nn.RNN`, `torch.nn.GRU` or `torch.nn.LSTM`
/// (the shared implementation of [`Rnn`], [`Gru`] and [`Lstm`]). Input `(T, N, I)`, or
/// `(N, T, I)` with `batch_first`; the output has `D·H` features (D = 2 when
/// bidirectional), and the final states are `(num_layers·D, N, H)`. Parameters are named
/// `weight_ih_l0`, `weight_hh_l0`, `bias_ih_l0`, `bias_hh_l0`, `…_reverse`, as PyTorch's, and
/// initialised `U(±1/√H)`.
///
/// An LSTM with `proj_size` P > 0 projects each new `h` by `weight_hr_l<k>` `[P, H]`: the
/// output and `h` have P features, `c` keeps H. With `dropout` p > 0, every layer's output
/// but the last is dropped out with probability p in training (seeded at construction);
/// evaluation ([`Module::set_training`]`(false)`) leaves it.
///
/// ```
/// use nabla::prelude::*;
/// let lstm: nn::Lstm = nn::Lstm::with_options(3, 5, nn::RecurrentOptions::default().num_layers(2), &mut nabla::rng(0))?;
/// let x = Tensor::randn(&[7, 4, 3], &mut nabla::rng(1));          // (T, N, I)
/// let out = lstm.forward_with_state(&x, None)?;
/// assert_eq!(out.output.shape(), &[7, 4, 5]);
/// assert_eq!(out.h_n.shape(), &[2, 4, 5]);
/// assert_eq!(out.c_n.unwrap().shape(), &[2, 4, 5]);
/// # Ok::<(), nabla::Error>(())
/// ```
pub struct Recurrent<T: Element = f32> {
    kind: CellKind,
    input_size: usize,
    hidden_size: usize,
    num_layers: usize,
    /// `(N, T, I)` inputs and outputs instead of `(T, N, I)`.
    pub batch_first: bool,
    bidirectional: bool,
    proj_size: usize,
    dropout: f64,
    mode: super::Mode,
    dropout_rng: Option<Mutex<StdRng>>,
    layers: Vec<Vec<Direction<T>>>,
}

/// What [`Recurrent::forward_with_state`] returns.
pub struct RecurrentOutput<T: Element = f32> {
    /// The last layer's hidden state at every step, `(T, N, D·H)` (or batch first).
    pub output: Tensor<T>,
    /// The final hidden state of every layer and direction, `(L·D, N, H)` (`P` features
    /// with an LSTM's `proj_size`).
    pub h_n: Tensor<T>,
    /// The final cell state (LSTM only), `(L·D, N, H)`.
    pub c_n: Option<Tensor<T>>,
}

constructors! {
    Recurrent: RecurrentNew {
        /// A network of `kind` with `options` (the shared implementation of [`Rnn`], [`Gru`]
        /// and [`Lstm`], which check their options; prefer those). PyTorch refuses
        /// `num_layers` or `hidden_size` 0 when it builds the module; this constructor cannot
        /// fail, so such a network has no parameters and its forward pass returns `Err`.
        fn new(kind: CellKind, input_size: usize, hidden_size: usize, options: RecurrentOptions, rng: &mut impl Rng) -> Self {
            let RecurrentOptions { num_layers, bias, batch_first, bidirectional, proj_size, dropout, .. } = options;
            let directions = if bidirectional { 2 } else { 1 };
            let features = if proj_size > 0 { proj_size } else { hidden_size };
            let layers = (0..num_layers)
                .map(|l| {
                    let in_features = if l == 0 { input_size } else { features * directions };
                    (0..directions)
                        .map(|d| {
                            let suffix = format!("_l{l}{}", if d == 1 { "_reverse" } else { "" });
                            Direction::new(kind, in_features, hidden_size, proj_size, bias, suffix, rng)
                        })
                        .collect()
                })
                .collect();
            // Drawn after the weights, and only for dropout, so that a network without it
            // leaves `rng` as it always has.
            let dropout_rng = (dropout > 0.0).then(|| Mutex::new(StdRng::seed_from_u64(rng.random())));
            let mode = super::Mode::default();
            Recurrent { kind, input_size, hidden_size, num_layers, batch_first, bidirectional, proj_size, dropout, mode, dropout_rng, layers }
        }
    }
}

impl<T: Element> Recurrent<T> {
    /// Re-initialises every `weight_hh` with an orthogonal matrix times `gain` in each
    /// gate's `H×H` block (see [`init::orthogonal`](super::init::orthogonal)): the recurrent
    /// map then neither grows nor shrinks the state at initialisation, which keeps the
    /// gradients of long sequences from exploding or vanishing early in training.
    ///
    /// ```
    /// use nabla::prelude::*;
    /// let rnn = nn::Rnn::<f64>::new(2, 4, &mut nabla::rng(0));
    /// rnn.init_orthogonal(1.0, &mut nabla::rng(1))?;
    /// let w = rnn.named_parameters()[1].1.tensor();          // weight_hh_l0
    /// let wtw = w.t().matmul(&w)?;
    /// assert!(wtw.sub(&Tensor::<f64>::eye(4))?.abs().amax().item()? < 1e-12);
    /// # Ok::<(), nabla::Error>(())
    /// ```
    pub fn init_orthogonal(&self, gain: f64, rng: &mut impl Rng) -> Result<()> {
        for dir in self.layers.iter().flatten() {
            orthogonal_blocks(&dir.weight_hh, self.kind.gates(), self.hidden_size, gain, rng)?;
        }
        Ok(())
    }

    /// The cell kind.
    pub fn kind(&self) -> CellKind {
        self.kind
    }

    /// The hidden size `H`.
    pub fn hidden_size(&self) -> usize {
        self.hidden_size
    }

    fn directions(&self) -> usize {
        if self.bidirectional { 2 } else { 1 }
    }

    /// Features of `h` and of each direction's output: `proj_size`, or `H`.
    fn state_size(&self) -> usize {
        if self.proj_size > 0 { self.proj_size } else { self.hidden_size }
    }

    /// The whole sequence, from the initial state `(h_0, c_0)` (zeros when `None`; `c_0`
    /// only for LSTM), each `(L·D, N, H)`. An unbatched sequence `(T, I)` (PyTorch's 2-D
    /// input; `batch_first` does not apply) gives an output `(T, D·H)` and states
    /// `(L·D, H)`, and takes its initial states in that shape.
    ///
    /// ```
    /// use nabla::prelude::*;
    /// let gru: nn::Gru = nn::Gru::new(3, 5, &mut nabla::rng(0));
    /// let out = gru.forward_with_state(&Tensor::randn(&[7, 3], &mut nabla::rng(1)), None)?;
    /// assert_eq!((out.output.shape(), out.h_n.shape()), (&[7, 5][..], &[1, 5][..]));
    /// # Ok::<(), nabla::Error>(())
    /// ```
    pub fn forward_with_state(&self, input: &Tensor<T>, state: Option<(&Tensor<T>, Option<&Tensor<T>>)>) -> Result<RecurrentOutput<T>> {
        if input.ndim() == 2 {
            return self.forward_unbatched(input, state);
        }
        let op = "Recurrent";
        if self.num_layers == 0 || self.hidden_size == 0 {
            return Err(Error::invalid(
                op,
                format!(
                    "num_layers {} and hidden_size {}: a network needs at least one layer of at least one unit",
                    self.num_layers, self.hidden_size
                ),
            ));
        }
        if input.ndim() != 3 || input.shape()[2] != self.input_size {
            return Err(Error::shape(
                op,
                format!(
                    "input {:?} should be (T, N, {}), (N, T, {}) with batch_first, or unbatched (T, {})",
                    input.shape(),
                    self.input_size,
                    self.input_size,
                    self.input_size
                ),
            ));
        }
        let x = if self.batch_first { input.transpose(0, 1)? } else { input.clone() };
        let (batch, h, p) = (x.shape()[1], self.hidden_size, self.state_size());
        let layers = self.num_layers * self.directions();
        let (h_shape, c_shape) = ([layers, batch, p], [layers, batch, h]);
        let h0 = match state {
            Some((h0, _)) if h0.shape() != h_shape => {
                return Err(Error::shape(op, format!("h_0 {:?} should be {h_shape:?}", h0.shape())));
            }
            Some((h0, _)) => h0.clone(),
            None => Tensor::<T>::zeros(&h_shape),
        };
        let c0 = match state.and_then(|(_, c)| c) {
            Some(c0) if c0.shape() != c_shape => {
                return Err(Error::shape(op, format!("c_0 {:?} should be {c_shape:?}", c0.shape())));
            }
            Some(c0) => c0.clone(),
            None => Tensor::<T>::zeros(&c_shape),
        };
        let mut layer_input = x;
        let (mut h_n, mut c_n) = (Vec::new(), Vec::new());
        for (l, directions) in self.layers.iter().enumerate() {
            let mut outputs = Vec::new();
            for (d, dir) in directions.iter().enumerate() {
                let k = (l * self.directions() + d) as isize;
                let h_init = h0.narrow(0, k as usize, 1)?.reshape(&[batch as isize, p as isize])?;
                let c_init = c0.narrow(0, k as usize, 1)?.reshape(&[batch as isize, h as isize])?;
                let (seq, h_last, c_last) = self.run_direction(dir, &layer_input, h_init, c_init, d == 1)?;
                outputs.push(seq);
                h_n.push(h_last);
                c_n.push(c_last);
            }
            layer_input = if outputs.len() == 1 { outputs.remove(0) } else { Tensor::cat(&outputs, 2)? };
            // PyTorch's dropout between layers: on every layer's output but the last.
            if let Some(rng) = &self.dropout_rng
                && self.mode.is_training()
                && l + 1 < self.num_layers
            {
                let mut rng = rng.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
                layer_input = super::functional::dropout(&layer_input, self.dropout, true, &mut *rng)?;
            }
        }
        let output = if self.batch_first { layer_input.transpose(0, 1)? } else { layer_input };
        Ok(RecurrentOutput {
            output,
            h_n: Tensor::stack(&h_n, 0)?,
            c_n: if self.kind == CellKind::Lstm { Some(Tensor::stack(&c_n, 0)?) } else { None },
        })
    }

    /// [`Recurrent::forward_with_state`] of a `(T, I)` sequence: a batch of one, time first.
    fn forward_unbatched(&self, input: &Tensor<T>, state: Option<(&Tensor<T>, Option<&Tensor<T>>)>) -> Result<RecurrentOutput<T>> {
        let batched = |t: &Tensor<T>, name: &str| -> Result<Tensor<T>> {
            if t.ndim() != 2 {
                return Err(Error::shape(
                    "Recurrent",
                    format!("{name} {:?} should be (L·D, H) for an unbatched input {:?}", t.shape(), input.shape()),
                ));
            }
            t.unsqueeze(1)
        };
        let h0 = state.map(|(h, _)| batched(h, "h_0")).transpose()?;
        let c0 = state.and_then(|(_, c)| c).map(|c| batched(c, "c_0")).transpose()?;
        let x = input.unsqueeze(if self.batch_first { 0 } else { 1 })?;
        let out = self.forward_with_state(&x, h0.as_ref().map(|h| (h, c0.as_ref())))?;
        Ok(RecurrentOutput {
            output: out.output.squeeze(if self.batch_first { 0 } else { 1 })?,
            h_n: out.h_n.squeeze(1)?,
            c_n: out.c_n.map(|c| c.squeeze(1)).transpose()?,
        })
    }

    /// One layer in one direction over `(T, N, I)`: the hidden states `(T, N, H)` and the
    /// final `h` and `c`.
    fn run_direction(
        &self,
        dir: &Direction<T>,
        x: &Tensor<T>,
        mut h: Tensor<T>,
        mut c: Tensor<T>,
        reverse: bool,
    ) -> Result<(Tensor<T>, Tensor<T>, Tensor<T>)> {
        let (steps, batch) = (x.shape()[0], x.shape()[1]);
        let hs = self.hidden_size;
        let g = self.kind.gates() * hs;
        let (w_ih, w_hh) = (dir.weight_ih.tensor(), dir.weight_hh.tensor());
        let (b_ih, b_hh) = (dir.bias_ih.as_ref().map(Param::tensor), dir.bias_hh.as_ref().map(Param::tensor));
        let w_hr = dir.weight_hr.as_ref().map(Param::tensor);
        if self.kind == CellKind::Lstm && steps > 0 && w_hr.is_none() {
            // The fused layer op: same arithmetic, a fraction of the passes and nodes. It
            // takes every step's input projection transposed, `W_ih xᵀ` (G·H, T, N), one
            // product whose gradient the op produces in that layout (its biases are added
            // inside).
            let flat = x.reshape(&[(steps * batch) as isize, x.shape()[2] as isize])?;
            let projected = w_ih.matmul(&flat.transpose(0, 1)?)?.reshape(&[g as isize, steps as isize, batch as isize])?;
            let y = crate::ops::lstm::lstm_sequence(&projected, &w_hh, b_ih.as_ref(), b_hh.as_ref(), &h, &c, reverse);
            let last = if reverse { 0 } else { steps - 1 };
            let state = |t: usize| y.narrow(0, t, 1)?.reshape(&[batch as isize, hs as isize]);
            return Ok((y.narrow(0, 0, steps)?, state(last)?, state(steps)?));
        }
        // Every step's input projection in one product: (T·N, I) → (T, N, G·H).
        let projected = x.linear(&w_ih, b_ih.as_ref())?.reshape(&[steps as isize, batch as isize, g as isize])?;
        let mut outputs = vec![None; steps];
        for s in 0..steps {
            let t = if reverse { steps - 1 - s } else { s };
            let xi = projected.narrow(0, t, 1)?.reshape(&[batch as isize, g as isize])?;
            (h, c) = cell_step(self.kind, hs, &xi, &h, &c, &w_hh, b_hh.as_ref(), w_hr.as_ref())?;
            outputs[t] = Some(h.clone());
        }
        let outputs: Vec<Tensor<T>> = outputs.into_iter().map(|o| o.expect("every step ran")).collect();
        Ok((Tensor::stack(&outputs, 0)?, h, c))
    }
}

/// One time step of a cell from the input projection `xi = W_ih x + b_ih` `(N, G·H)` and
/// the state: the new `(h, c)` (`c` passes through unchanged except for LSTM, whose `h` is
/// projected by `w_hr` when given).
#[allow(clippy::too_many_arguments)]
fn cell_step<T: Element>(
    kind: CellKind,
    hs: usize,
    xi: &Tensor<T>,
    h: &Tensor<T>,
    c: &Tensor<T>,
    w_hh: &Tensor<T>,
    b_hh: Option<&Tensor<T>>,
    w_hr: Option<&Tensor<T>>,
) -> Result<(Tensor<T>, Tensor<T>)> {
    let hh = h.linear(w_hh, b_hh)?;
    let gate = |z: &Tensor<T>, k: usize| z.narrow(1, k * hs, hs);
    Ok(match kind {
        CellKind::RnnTanh => (xi.add(&hh)?.tanh(), c.clone()),
        CellKind::RnnRelu => (xi.add(&hh)?.relu(), c.clone()),
        CellKind::Lstm => {
            let z = xi.add(&hh)?;
            let (i, f, g, o) = (gate(&z, 0)?.sigmoid(), gate(&z, 1)?.sigmoid(), gate(&z, 2)?.tanh(), gate(&z, 3)?.sigmoid());
            let c = f.mul(c)?.add(&i.mul(&g)?)?;
            let h = o.mul(&c.tanh())?;
            (if let Some(w_hr) = w_hr { h.linear(w_hr, None)? } else { h }, c)
        }
        CellKind::Gru => {
            let r = gate(xi, 0)?.add(&gate(&hh, 0)?)?.sigmoid();
            let z = gate(xi, 1)?.add(&gate(&hh, 1)?)?.sigmoid();
            let n = gate(xi, 2)?.add(&r.mul(&gate(&hh, 2)?)?)?.tanh();
            // h' = (1 - z) n + z h
            (n.add(&z.mul(&h.sub(&n)?)?)?, c.clone())
        }
    })
}

/// Fills each gate's `H×H` block of `weight_hh` with an orthogonal matrix times `gain`.
fn orthogonal_blocks<T: Element>(weight_hh: &Param<T>, gates: usize, hs: usize, gain: f64, rng: &mut impl Rng) -> Result<()> {
    let blocks = (0..gates).map(|_| super::init::orthogonal::<T>(&[hs, hs], gain, rng)).collect::<Result<Vec<_>>>()?;
    weight_hh.set(Tensor::cat(&blocks, 0)?.to_ndarray())
}

impl<T: Element> Module<T> for Recurrent<T> {
    /// The output sequence from a zero initial state.
    fn forward(&self, input: &Tensor<T>) -> Result<Tensor<T>> {
        Ok(self.forward_with_state(input, None)?.output)
    }

    fn named_parameters(&self) -> Vec<(String, Param<T>)> {
        let mut params = Vec::new();
        for dir in self.layers.iter().flatten() {
            params.push((format!("weight_ih{}", dir.suffix), dir.weight_ih.clone()));
            params.push((format!("weight_hh{}", dir.suffix), dir.weight_hh.clone()));
            if let Some(b) = &dir.bias_ih {
                params.push((format!("bias_ih{}", dir.suffix), b.clone()));
            }
            if let Some(b) = &dir.bias_hh {
                params.push((format!("bias_hh{}", dir.suffix), b.clone()));
            }
            if let Some(w) = &dir.weight_hr {
                params.push((format!("weight_hr{}", dir.suffix), w.clone()));
            }
        }
        params
    }

    fn set_training(&self, training: bool) {
        self.mode.set(training)
    }
}

/// One recurrent cell, as `torch.nn.RNNCell`, `torch.nn.GRUCell` and `torch.nn.LSTMCell`
/// ([`RnnCell`], [`GruCell`], [`LstmCell`]): one time
/// step, `(N, I)` (or unbatched `(I)`) and a state `(N, H)` to the next state. Parameters
/// `weight_ih [G·H, I]`, `weight_hh [G·H, H]`, `bias_ih`, `bias_hh [G·H]` (G = 1, 3, 4 for
/// RNN, GRU, LSTM, gates in PyTorch's order), initialised `U(±1/√H)`. The step is the same
/// code [`Recurrent`] runs at each time step.
///
/// ```
/// use nabla::prelude::*;
/// let cell: nn::LstmCell = nn::LstmCell::new(3, 5, &mut nabla::rng(0));
/// let (mut h, mut c) = (Tensor::zeros(&[2, 5]), Tensor::zeros(&[2, 5]));
/// for t in 0..4 {
///     let x = Tensor::randn(&[2, 3], &mut nabla::rng(t));
///     (h, c) = cell.step(&x, Some((&h, Some(&c))))?;
/// }
/// assert_eq!(h.shape(), &[2, 5]);
/// # Ok::<(), nabla::Error>(())
/// ```
pub struct RecurrentCell<T: Element = f32> {
    kind: CellKind,
    input_size: usize,
    hidden_size: usize,
    weights: Direction<T>,
}

constructors! {
    RecurrentCell: RecurrentCellNew {
        /// A cell of `kind`, with or without biases.
        fn new(kind: CellKind, input_size: usize, hidden_size: usize, bias: bool, rng: &mut impl Rng) -> Self {
            let weights = Direction::new(kind, input_size, hidden_size, 0, bias, String::new(), rng);
            RecurrentCell { kind, input_size, hidden_size, weights }
        }
    }
}

impl<T: Element> RecurrentCell<T> {
    /// The cell kind.
    pub fn kind(&self) -> CellKind {
        self.kind
    }

    /// The hidden size `H`.
    pub fn hidden_size(&self) -> usize {
        self.hidden_size
    }

    /// [`Recurrent::init_orthogonal`] for this cell's `weight_hh`.
    pub fn init_orthogonal(&self, gain: f64, rng: &mut impl Rng) -> Result<()> {
        orthogonal_blocks(&self.weights.weight_hh, self.kind.gates(), self.hidden_size, gain, rng)
    }

    /// One step: `input` `(N, I)` or `(I)`, the state `(h, c)` (zeros when `None`; `c` for
    /// LSTM only) shaped like the output `(N, H)` or `(H)`; returns the new `(h, c)` (for
    /// RNN and GRU, `c` is the `c` given, or zeros).
    pub fn step(&self, input: &Tensor<T>, state: Option<(&Tensor<T>, Option<&Tensor<T>>)>) -> Result<(Tensor<T>, Tensor<T>)> {
        let op = "RecurrentCell";
        let unbatched = input.ndim() == 1;
        if !(input.ndim() == 1 || input.ndim() == 2) || input.shape()[input.ndim() - 1] != self.input_size {
            return Err(Error::shape(op, format!("input {:?} should be (N, {}) or ({})", input.shape(), self.input_size, self.input_size)));
        }
        let x = if unbatched { input.unsqueeze(0)? } else { input.clone() };
        let state_shape = [x.shape()[0], self.hidden_size];
        let shaped = |t: Option<&Tensor<T>>, name: &str| -> Result<Tensor<T>> {
            match t {
                None => Ok(Tensor::<T>::zeros(&state_shape)),
                Some(t) if unbatched && t.shape() == [self.hidden_size] => t.unsqueeze(0),
                Some(t) if !unbatched && t.shape() == state_shape => Ok(t.clone()),
                Some(t) => Err(Error::shape(
                    op,
                    format!("{name} {:?} does not match input {:?} and hidden size {}", t.shape(), input.shape(), self.hidden_size),
                )),
            }
        };
        let h = shaped(state.map(|s| s.0), "h")?;
        let c = shaped(state.and_then(|s| s.1), "c")?;
        let w = &self.weights;
        let xi = x.linear(&w.weight_ih.tensor(), w.bias_ih.as_ref().map(Param::tensor).as_ref())?;
        let b_hh = w.bias_hh.as_ref().map(Param::tensor);
        let (h, c) = cell_step(self.kind, self.hidden_size, &xi, &h, &c, &w.weight_hh.tensor(), b_hh.as_ref(), None)?;
        if unbatched { Ok((h.squeeze(0)?, c.squeeze(0)?)) } else { Ok((h, c)) }
    }
}

impl<T: Element> Module<T> for RecurrentCell<T> {
    /// The next hidden state from a zero state.
    fn forward(&self, input: &Tensor<T>) -> Result<Tensor<T>> {
        Ok(self.step(input, None)?.0)
    }

    fn named_parameters(&self) -> Vec<(String, Param<T>)> {
        let w = &self.weights;
        let mut params = vec![("weight_ih".to_string(), w.weight_ih.clone()), ("weight_hh".to_string(), w.weight_hh.clone())];
        if let Some(b) = &w.bias_ih {
            params.push(("bias_ih".to_string(), b.clone()));
        }
        if let Some(b) = &w.bias_hh {
            params.push(("bias_hh".to_string(), b.clone()));
        }
        params
    }
}

/// The non-linearity of an [`Rnn`] (PyTorch's `nonlinearity`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum RnnNonlinearity {
    /// `tanh` (the default).
    #[default]
    Tanh,
    /// `relu`.
    Relu,
}

/// The options of a recurrent network: PyTorch's constructor arguments after the two
/// sizes, with its defaults (one layer, biases, time first, one direction, tanh), set by
/// name.
///
/// ```
/// use nabla::nn::RecurrentOptions;
/// let options = RecurrentOptions::default().num_layers(2).batch_first(true);
/// assert_eq!((options.num_layers, options.bias, options.batch_first), (2, true, true));
/// ```
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RecurrentOptions {
    /// Stacked layers, each reading the previous one's output (1).
    pub num_layers: usize,
    /// Whether each layer has `bias_ih` and `bias_hh` (true).
    pub bias: bool,
    /// Inputs and outputs `(N, T, ·)` instead of `(T, N, ·)` (false).
    pub batch_first: bool,
    /// A second direction per layer, reading the sequence backwards (false).
    pub bidirectional: bool,
    /// [`Rnn`] only: its non-linearity (tanh).
    pub nonlinearity: RnnNonlinearity,
    /// [`Lstm`] only: the size P of the projected `h` (0, no projection; below `H`).
    pub proj_size: usize,
    /// The probability of dropping each output of every layer but the last, in training
    /// (0; in `[0, 1]`).
    pub dropout: f64,
}

impl Default for RecurrentOptions {
    fn default() -> Self {
        RecurrentOptions {
            num_layers: 1,
            bias: true,
            batch_first: false,
            bidirectional: false,
            nonlinearity: RnnNonlinearity::Tanh,
            proj_size: 0,
            dropout: 0.0,
        }
    }
}

impl RecurrentOptions {
    /// Sets `num_layers`.
    pub fn num_layers(mut self, num_layers: usize) -> Self {
        self.num_layers = num_layers;
        self
    }
    /// Sets `bias`.
    pub fn bias(mut self, bias: bool) -> Self {
        self.bias = bias;
        self
    }
    /// Sets `batch_first`.
    pub fn batch_first(mut self, batch_first: bool) -> Self {
        self.batch_first = batch_first;
        self
    }
    /// Sets `bidirectional`.
    pub fn bidirectional(mut self, bidirectional: bool) -> Self {
        self.bidirectional = bidirectional;
        self
    }
    /// Sets the [`Rnn`]'s non-linearity.
    pub fn nonlinearity(mut self, nonlinearity: RnnNonlinearity) -> Self {
        self.nonlinearity = nonlinearity;
        self
    }
    /// Sets the [`Lstm`]'s `proj_size`.
    pub fn proj_size(mut self, proj_size: usize) -> Self {
        self.proj_size = proj_size;
        self
    }
    /// Sets the `dropout` between layers.
    pub fn dropout(mut self, dropout: f64) -> Self {
        self.dropout = dropout;
        self
    }

    /// The cell kind these options give a network of `kind`, or PyTorch's refusals by name:
    /// no layer, no hidden unit, or a non-linearity for a GRU or an LSTM.
    fn kind(&self, op: &'static str, kind: CellKind, hidden_size: usize) -> Result<CellKind> {
        if self.num_layers == 0 || hidden_size == 0 {
            return Err(Error::invalid(
                op,
                format!(
                    "num_layers {} and hidden_size {}: a network needs at least one layer of at least one unit",
                    self.num_layers, hidden_size
                ),
            ));
        }
        if !(0.0..=1.0).contains(&self.dropout) {
            return Err(Error::invalid(op, format!("dropout {} should be a probability in [0, 1]", self.dropout)));
        }
        if self.proj_size > 0 && kind != CellKind::Lstm {
            return Err(Error::invalid(op, format!("proj_size {} is only supported for an LSTM", self.proj_size)));
        }
        if self.proj_size >= hidden_size && self.proj_size > 0 {
            return Err(Error::invalid(op, format!("proj_size {} has to be smaller than hidden_size {hidden_size}", self.proj_size)));
        }
        match (kind, self.nonlinearity) {
            (CellKind::RnnTanh | CellKind::RnnRelu, RnnNonlinearity::Tanh) => Ok(CellKind::RnnTanh),
            (CellKind::RnnTanh | CellKind::RnnRelu, RnnNonlinearity::Relu) => Ok(CellKind::RnnRelu),
            (kind, RnnNonlinearity::Tanh) => Ok(kind),
            (_, RnnNonlinearity::Relu) => Err(Error::invalid(op, "nonlinearity Relu: only an Rnn has a choice of non-linearity")),
        }
    }
}

/// A typed recurrent network and its cell: the shared [`Recurrent`] or [`RecurrentCell`]
/// underneath (reached through `Deref`, so `forward_with_state`, `init_orthogonal` and the
/// rest are theirs), PyTorch's constructors on top.
macro_rules! typed_recurrent {
    ($(#[$doc:meta])* $name:ident: $new:ident, $torch:literal, $kind:expr_2021, $(#[$cell_doc:meta])* $cell:ident: $cell_new:ident, $torch_cell:literal) => {
        $(#[$doc])*
        pub struct $name<T: Element = f32>(Recurrent<T>);

        constructors! {
            $name: $new {
                #[doc = concat!("`torch.nn.", $torch, "(input_size, hidden_size)`: one layer, biases, time first.")]
                fn new(input_size: usize, hidden_size: usize, rng: &mut impl Rng) -> Self {
                    $name(Recurrent::<T>::new($kind, input_size, hidden_size, RecurrentOptions::default(), rng))
                }

                #[doc = concat!("`torch.nn.", $torch, "(input_size, hidden_size, **options)`; `Err` naming the value ")]
                /// where PyTorch refuses it (`num_layers` or `hidden_size` 0, a non-linearity
                /// other than tanh for a GRU or an LSTM).
                fn with_options(input_size: usize, hidden_size: usize, options: RecurrentOptions, rng: &mut impl Rng) -> Result<Self> {
                    let kind = options.kind($torch, $kind, hidden_size)?;
                    Ok($name(Recurrent::<T>::new(kind, input_size, hidden_size, options, rng)))
                }
            }
        }

        impl<T: Element> std::ops::Deref for $name<T> {
            type Target = Recurrent<T>;
            fn deref(&self) -> &Recurrent<T> {
                &self.0
            }
        }

        impl<T: Element> Module<T> for $name<T> {
            /// The output sequence from a zero initial state.
            fn forward(&self, input: &Tensor<T>) -> Result<Tensor<T>> {
                self.0.forward(input)
            }
            fn named_parameters(&self) -> Vec<(String, Param<T>)> {
                self.0.named_parameters()
            }
            fn set_training(&self, training: bool) {
                self.0.set_training(training)
            }
        }

        $(#[$cell_doc])*
        pub struct $cell<T: Element = f32>(RecurrentCell<T>);

        constructors! {
            $cell: $cell_new {
                #[doc = concat!("`torch.nn.", $torch_cell, "(input_size, hidden_size)`.")]
                fn new(input_size: usize, hidden_size: usize, rng: &mut impl Rng) -> Self {
                    $cell(RecurrentCell::<T>::new($kind, input_size, hidden_size, true, rng))
                }

                #[doc = concat!("`torch.nn.", $torch_cell, "(input_size, hidden_size, bias)`.")]
                fn with_bias(input_size: usize, hidden_size: usize, bias: bool, rng: &mut impl Rng) -> Self {
                    $cell(RecurrentCell::<T>::new($kind, input_size, hidden_size, bias, rng))
                }
            }
        }

        impl<T: Element> std::ops::Deref for $cell<T> {
            type Target = RecurrentCell<T>;
            fn deref(&self) -> &RecurrentCell<T> {
                &self.0
            }
        }

        impl<T: Element> Module<T> for $cell<T> {
            /// The next hidden state from a zero state.
            fn forward(&self, input: &Tensor<T>) -> Result<Tensor<T>> {
                self.0.forward(input)
            }
            fn named_parameters(&self) -> Vec<(String, Param<T>)> {
                self.0.named_parameters()
            }
        }
    };
}

typed_recurrent!(
    /// An Elman network, as `torch.nn.RNN`: `h' = tanh(W_ih x + b_ih + W_hh h + b_hh)` (or
    /// ReLU, [`RecurrentOptions::nonlinearity`]), layer after layer. Shapes, names and
    /// initialisation as [`Recurrent`].
    ///
    /// ```
    /// use nabla::prelude::*;
    /// use nabla::nn::{RecurrentOptions, RnnNonlinearity};
    /// let options = RecurrentOptions::default().num_layers(2).nonlinearity(RnnNonlinearity::Relu);
    /// let rnn: nn::Rnn = nn::Rnn::with_options(3, 5, options, &mut nabla::rng(0))?;
    /// let out = rnn.forward_with_state(&Tensor::randn(&[7, 4, 3], &mut nabla::rng(1)), None)?;
    /// assert_eq!((out.output.shape(), out.h_n.shape()), (&[7, 4, 5][..], &[2, 4, 5][..]));
    /// # Ok::<(), nabla::Error>(())
    /// ```
    Rnn: RnnNew,
    "RNN",
    CellKind::RnnTanh,
    /// One step of an [`Rnn`], as `torch.nn.RNNCell` (tanh); see [`RecurrentCell`].
    RnnCell: RnnCellNew,
    "RNNCell"
);

typed_recurrent!(
    /// A gated recurrent unit network, as `torch.nn.GRU` (gates `r, z, n`). Shapes, names
    /// and initialisation as [`Recurrent`].
    ///
    /// ```
    /// use nabla::prelude::*;
    /// let gru: nn::Gru = nn::Gru::new(3, 5, &mut nabla::rng(0));
    /// assert_eq!(gru.forward(&Tensor::randn(&[7, 4, 3], &mut nabla::rng(1)))?.shape(), &[7, 4, 5]);
    /// # Ok::<(), nabla::Error>(())
    /// ```
    Gru: GruNew,
    "GRU",
    CellKind::Gru,
    /// One step of a [`Gru`], as `torch.nn.GRUCell`; see [`RecurrentCell`].
    GruCell: GruCellNew,
    "GRUCell"
);

typed_recurrent!(
    /// A long short-term memory network, as `torch.nn.LSTM` (gates `i, f, g, o`). Shapes,
    /// names and initialisation as [`Recurrent`]; the layer runs as one fused op.
    ///
    /// ```
    /// use nabla::prelude::*;
    /// use nabla::nn::RecurrentOptions;
    /// let options = RecurrentOptions::default().num_layers(2).batch_first(true).bidirectional(true);
    /// let lstm: nn::Lstm = nn::Lstm::with_options(3, 5, options, &mut nabla::rng(0))?;
    /// let out = lstm.forward_with_state(&Tensor::randn(&[4, 7, 3], &mut nabla::rng(1)), None)?;
    /// assert_eq!(out.output.shape(), &[4, 7, 10]);               // (N, T, 2·H)
    /// assert_eq!(out.c_n.unwrap().shape(), &[4, 4, 5]);          // (L·2, N, H)
    /// let err = nn::Lstm::<f32>::with_options(3, 5, options.num_layers(0), &mut nabla::rng(0)).err().unwrap();
    /// assert_eq!(err.to_string(), "LSTM: num_layers 0 and hidden_size 5: a network needs at least one layer of at least one unit");
    /// # Ok::<(), nabla::Error>(())
    /// ```
    Lstm: LstmNew,
    "LSTM",
    CellKind::Lstm,
    /// One step of an [`Lstm`], as `torch.nn.LSTMCell`; see [`RecurrentCell`].
    LstmCell: LstmCellNew,
    "LSTMCell"
);

/// Truncated backpropagation through time: a long sequence is cut into chunks of `k` time
/// steps; each chunk starts from the state the previous one ended in, detached, so a
/// backward pass reaches at most `k` steps back while the forward state still flows through
/// the whole sequence. Memory and time per update are `O(k)`, whatever the length.
///
/// ```
/// use nabla::prelude::*;
/// let lstm: nn::Lstm = nn::Lstm::new(1, 8, &mut nabla::rng(0));
/// let mut opt = optim::Sgd::new(lstm.parameters(), 0.1);
/// let seq = Tensor::randn(&[100, 4, 1], &mut nabla::rng(1));        // (T, N, I)
/// let mut bptt = nn::TruncatedBptt::new(20)?;
/// for chunk in bptt.chunks(&lstm, &seq)? {
///     let out = bptt.forward(&lstm, &chunk)?;                     // state carried, graph cut
///     let mut grads = out.output.pow(2.0).mean().backward()?;
///     optim::clip_grad_norm(&mut grads, 1.0)?;
///     opt.step(&grads)?;
/// }
/// # Ok::<(), nabla::Error>(())
/// ```
pub struct TruncatedBptt<T: Element = f32> {
    k: usize,
    h: Option<Tensor<T>>,
    c: Option<Tensor<T>>,
}

impl<T: Element> TruncatedBptt<T> {
    /// Chunks of `k ≥ 1` steps, starting from a zero state.
    pub fn new(k: usize) -> Result<Self> {
        if k == 0 {
            return Err(Error::invalid("TruncatedBptt", "k must be at least 1 time step"));
        }
        Ok(TruncatedBptt { k, h: None, c: None })
    }

    /// `sequence` cut along `rnn`'s time dim into chunks of `k` steps (the last may be
    /// shorter).
    pub fn chunks(&self, rnn: &Recurrent<T>, sequence: &Tensor<T>) -> Result<Vec<Tensor<T>>> {
        if sequence.ndim() != 3 {
            return Err(Error::shape("TruncatedBptt", format!("sequence {:?} should have 3 dims", sequence.shape())));
        }
        let dim = if rnn.batch_first { 1 } else { 0 };
        let steps = sequence.shape()[dim];
        (0..steps).step_by(self.k).map(|t| sequence.narrow(dim as isize, t, self.k.min(steps - t))).collect()
    }

    /// Runs `rnn` over `chunk` from the carried state and carries its final state, detached.
    pub fn forward(&mut self, rnn: &Recurrent<T>, chunk: &Tensor<T>) -> Result<RecurrentOutput<T>> {
        let out = rnn.forward_with_state(chunk, self.h.as_ref().map(|h| (h, self.c.as_ref())))?;
        self.h = Some(out.h_n.detach());
        self.c = out.c_n.as_ref().map(Tensor::detach);
        Ok(out)
    }

    /// The carried state `(h, c)`, if a chunk has run since the last reset.
    pub fn state(&self) -> Option<(&Tensor<T>, Option<&Tensor<T>>)> {
        self.h.as_ref().map(|h| (h, self.c.as_ref()))
    }

    /// Starts the next chunk from a zero state (a new sequence).
    pub fn reset(&mut self) {
        self.h = None;
        self.c = None;
    }
}
