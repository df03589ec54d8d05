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
use rand::Rng;

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
    suffix: String,
}

/// A multi-layer recurrent network as `torch.nn.RNN`, `torch.nn.GRU` or `torch.nn.LSTM`
/// (see [`Recurrent::rnn`], [`Recurrent::gru`], [`Recurrent::lstm`]). Input `(T, N, I)`, or
/// `(N, T, I)` with `batch_first`; the output has `D·H` features (D = 2 when
/// bidirectional), and the final states are `(num_layers·D, N, H)`. Parameters are named
/// `weight_ih_l0`, `weight_hh_l0`, `bias_ih_l0`, `bias_hh_l0`, `…_reverse`, as PyTorch's, and
/// initialised `U(±1/√H)`.
///
/// ```
/// use nabla::prelude::*;
/// let lstm: nn::Recurrent = nn::Recurrent::lstm(3, 5, 2, &mut nabla::rng(0));
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
    layers: Vec<Vec<Direction<T>>>,
}

/// What [`Recurrent::forward_with_state`] returns.
pub struct RecurrentOutput<T: Element = f32> {
    /// The last layer's hidden state at every step, `(T, N, D·H)` (or batch first).
    pub output: Tensor<T>,
    /// The final hidden state of every layer and direction, `(L·D, N, H)`.
    pub h_n: Tensor<T>,
    /// The final cell state (LSTM only), `(L·D, N, H)`.
    pub c_n: Option<Tensor<T>>,
}

impl<T: Element> Recurrent<T> {
    /// A network of `kind` with every option: PyTorch's constructor arguments.
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        kind: CellKind,
        input_size: usize,
        hidden_size: usize,
        num_layers: usize,
        bias: bool,
        batch_first: bool,
        bidirectional: bool,
        rng: &mut impl Rng,
    ) -> Self {
        let bound = if hidden_size > 0 { 1.0 / (hidden_size as f64).sqrt() } else { 0.0 };
        let g = kind.gates() * hidden_size;
        let directions = if bidirectional { 2 } else { 1 };
        let layers = (0..num_layers.max(1))
            .map(|l| {
                let in_features = if l == 0 { input_size } else { hidden_size * directions };
                (0..directions)
                    .map(|d| Direction {
                        weight_ih: Param::new(uniform(&[g, in_features], bound, rng)),
                        weight_hh: Param::new(uniform(&[g, hidden_size], bound, rng)),
                        bias_ih: bias.then(|| Param::new(uniform(&[g], bound, rng))),
                        bias_hh: bias.then(|| Param::new(uniform(&[g], bound, rng))),
                        suffix: format!("_l{l}{}", if d == 1 { "_reverse" } else { "" }),
                    })
                    .collect()
            })
            .collect();
        Recurrent { kind, input_size, hidden_size, num_layers: num_layers.max(1), batch_first, bidirectional, layers }
    }

    /// `torch.nn.RNN(input_size, hidden_size, num_layers)` with tanh, bias, time first.
    pub fn rnn(input_size: usize, hidden_size: usize, num_layers: usize, rng: &mut impl Rng) -> Self {
        Self::new(CellKind::RnnTanh, input_size, hidden_size, num_layers, true, false, false, rng)
    }

    /// `torch.nn.GRU(input_size, hidden_size, num_layers)`.
    pub fn gru(input_size: usize, hidden_size: usize, num_layers: usize, rng: &mut impl Rng) -> Self {
        Self::new(CellKind::Gru, input_size, hidden_size, num_layers, true, false, false, rng)
    }

    /// `torch.nn.LSTM(input_size, hidden_size, num_layers)`.
    pub fn lstm(input_size: usize, hidden_size: usize, num_layers: usize, rng: &mut impl Rng) -> Self {
        Self::new(CellKind::Lstm, input_size, hidden_size, num_layers, true, false, false, rng)
    }

    fn directions(&self) -> usize {
        if self.bidirectional {
            2
        } else {
            1
        }
    }

    /// The whole sequence, from the initial state `(h_0, c_0)` (zeros when `None`; `c_0`
    /// only for LSTM), each `(L·D, N, H)`.
    pub fn forward_with_state(&self, input: &Tensor<T>, state: Option<(&Tensor<T>, Option<&Tensor<T>>)>) -> Result<RecurrentOutput<T>> {
        let op = "Recurrent";
        if input.ndim() != 3 || input.shape()[2] != self.input_size {
            return Err(Error::shape(
                op,
                format!("input {:?} should be (T, N, {}) or (N, T, {}) with batch_first", input.shape(), self.input_size, self.input_size),
            ));
        }
        let x = if self.batch_first { input.transpose(0, 1)? } else { input.clone() };
        let (batch, h) = (x.shape()[1], self.hidden_size);
        let state_shape = [self.num_layers * self.directions(), batch, h];
        let h0 = match state {
            Some((h0, _)) if h0.shape() != state_shape => {
                return Err(Error::shape(op, format!("h_0 {:?} should be {state_shape:?}", h0.shape())))
            }
            Some((h0, _)) => h0.clone(),
            None => Tensor::<T>::zeros(&state_shape),
        };
        let c0 = match state.and_then(|(_, c)| c) {
            Some(c0) if c0.shape() != state_shape => {
                return Err(Error::shape(op, format!("c_0 {:?} should be {state_shape:?}", c0.shape())))
            }
            Some(c0) => c0.clone(),
            None => Tensor::<T>::zeros(&state_shape),
        };
        let mut layer_input = x;
        let (mut h_n, mut c_n) = (Vec::new(), Vec::new());
        for (l, directions) in self.layers.iter().enumerate() {
            let mut outputs = Vec::new();
            for (d, dir) in directions.iter().enumerate() {
                let k = (l * self.directions() + d) as isize;
                let h_init = h0.narrow(0, k as usize, 1)?.reshape(&[batch as isize, h as isize])?;
                let c_init = c0.narrow(0, k as usize, 1)?.reshape(&[batch as isize, h as isize])?;
                let (seq, h_last, c_last) = self.run_direction(dir, &layer_input, h_init, c_init, d == 1)?;
                outputs.push(seq);
                h_n.push(h_last);
                c_n.push(c_last);
            }
            layer_input = if outputs.len() == 1 { outputs.remove(0) } else { Tensor::cat(&outputs, 2)? };
        }
        let output = if self.batch_first { layer_input.transpose(0, 1)? } else { layer_input };
        Ok(RecurrentOutput {
            output,
            h_n: Tensor::stack(&h_n, 0)?,
            c_n: if self.kind == CellKind::Lstm { Some(Tensor::stack(&c_n, 0)?) } else { None },
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
        // Every step's input projection in one product: (T·N, I) → (T, N, G·H).
        let projected = x.linear(&w_ih, b_ih.as_ref())?.reshape(&[steps as isize, batch as isize, g as isize])?;
        let mut outputs = vec![None; steps];
        for s in 0..steps {
            let t = if reverse { steps - 1 - s } else { s };
            let xi = projected.narrow(0, t, 1)?.reshape(&[batch as isize, g as isize])?;
            let hh = h.linear(&w_hh, b_hh.as_ref())?;
            let gate = |z: &Tensor<T>, k: usize| z.narrow(1, k * hs, hs);
            match self.kind {
                CellKind::RnnTanh => h = xi.add(&hh)?.tanh(),
                CellKind::RnnRelu => h = xi.add(&hh)?.relu(),
                CellKind::Lstm => {
                    let z = xi.add(&hh)?;
                    let (i, f, gg, o) = (gate(&z, 0)?.sigmoid(), gate(&z, 1)?.sigmoid(), gate(&z, 2)?.tanh(), gate(&z, 3)?.sigmoid());
                    c = f.mul(&c)?.add(&i.mul(&gg)?)?;
                    h = o.mul(&c.tanh())?;
                }
                CellKind::Gru => {
                    let r = gate(&xi, 0)?.add(&gate(&hh, 0)?)?.sigmoid();
                    let z = gate(&xi, 1)?.add(&gate(&hh, 1)?)?.sigmoid();
                    let n = gate(&xi, 2)?.add(&r.mul(&gate(&hh, 2)?)?)?.tanh();
                    // h' = (1 - z) n + z h
                    h = n.add(&z.mul(&h.sub(&n)?)?)?;
                }
            }
            outputs[t] = Some(h.clone());
        }
        let outputs: Vec<Tensor<T>> = outputs.into_iter().map(|o| o.expect("every step ran")).collect();
        Ok((Tensor::stack(&outputs, 0)?, h, c))
    }
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
        }
        params
    }
}
