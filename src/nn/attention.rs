//! Attention: [`scaled_dot_product_attention`] and [`MultiheadAttention`], with PyTorch's
//! semantics, shapes and parameter names, composed from tensor ops (so every order of
//! gradient comes from the ops' rules).

use super::constructors::LinearNew;
use super::init::xavier_uniform;
use super::{Linear, Mode, Module, Param, functional, prefixed};
use crate::error::{Error, Result};
use crate::tensor::{Creation, Element, Tensor};
use ndarray::{ArrayD, IxDyn};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use std::sync::Mutex;

/// A mask over attention scores `(…, L, S)` (query position × key position), broadcast
/// against the batch dims. PyTorch's two functions read a boolean mask in opposite ways
/// (`scaled_dot_product_attention`: `true` may attend; `MultiheadAttention`'s `attn_mask`:
/// `true` may not), so here the variant says which is meant, and either function takes
/// either.
#[derive(Debug, Clone, Copy)]
pub enum AttnMask<'a, T: Element = f32> {
    /// `true` where the query may attend to the key (`scaled_dot_product_attention`'s bool).
    Allowed(&'a ArrayD<bool>),
    /// `true` where the query may not attend (`MultiheadAttention`'s bool `attn_mask`).
    Blocked(&'a ArrayD<bool>),
    /// Added to the scores before the softmax (a float mask; `-inf` blocks).
    Additive(&'a Tensor<T>),
}

impl<T: Element> AttnMask<'_, T> {
    /// The mask as scores to add: 0 where attending is allowed, `-inf` where it is not.
    fn additive(&self) -> Tensor<T> {
        let blocked = |allowed: bool| if allowed { T::zero() } else { T::neg_infinity() };
        match self {
            AttnMask::Allowed(m) => Tensor::from(m.mapv(blocked)),
            AttnMask::Blocked(m) => Tensor::from(m.mapv(|b| blocked(!b))),
            AttnMask::Additive(t) => (*t).clone(),
        }
    }
}

/// `-inf` above the diagonal of an `L × S` score matrix: query `i` sees keys `0..=i`
/// (PyTorch's `is_causal`, a lower-triangular mask aligned at the top left).
fn causal<T: Element>(l: usize, s: usize) -> Tensor<T> {
    Tensor::from(ArrayD::from_shape_fn(IxDyn(&[l, s]), |ix| if ix[1] > ix[0] { T::neg_infinity() } else { T::zero() }))
}

/// Scaled dot-product attention, as `torch.nn.functional.scaled_dot_product_attention`
/// (without dropout): `softmax(Q Kᵀ · scale + M) V`.
///
/// Shapes: `q (…, L, E)`, `k (…, S, E)`, `v (…, S, Ev)` → `(…, L, Ev)`, batch dims
/// broadcast. `scale` defaults to `1/√E`. `is_causal` blocks keys after the query's
/// position; it may be combined with `mask`. A query whose every key is blocked gets NaN,
/// as in PyTorch (there is nothing to average).
///
/// ```
/// use nabla::prelude::*;
/// use nabla::nn::{scaled_dot_product_attention, AttnMask};
/// let q = Tensor::randn(&[2, 4, 8], &mut nabla::rng(0));
/// let kv = Tensor::randn(&[2, 6, 8], &mut nabla::rng(1));
/// let pad = ndarray::ArrayD::from_shape_fn(ndarray::IxDyn(&[2, 1, 6]), |ix| ix[2] < 5);  // last key is padding
/// let y = scaled_dot_product_attention(&q, &kv, &kv, Some(AttnMask::Allowed(&pad)), false, None)?;
/// assert_eq!(y.shape(), &[2, 4, 8]);
/// # Ok::<(), nabla::Error>(())
/// ```
pub fn scaled_dot_product_attention<T: Element>(
    q: &Tensor<T>,
    k: &Tensor<T>,
    v: &Tensor<T>,
    mask: Option<AttnMask<'_, T>>,
    is_causal: bool,
    scale: Option<f64>,
) -> Result<Tensor<T>> {
    Ok(attention_weights(q, k, v, mask, is_causal, scale)?.1)
}

/// The attention weights `softmax(Q Kᵀ · scale + M)` `(…, L, S)` and the output.
fn attention_weights<T: Element>(
    q: &Tensor<T>,
    k: &Tensor<T>,
    v: &Tensor<T>,
    mask: Option<AttnMask<'_, T>>,
    is_causal: bool,
    scale: Option<f64>,
) -> Result<(Tensor<T>, Tensor<T>)> {
    let op = "scaled_dot_product_attention";
    let (qs, ks, vs) = (q.shape(), k.shape(), v.shape());
    if qs.len() < 2 || ks.len() < 2 || vs.len() < 2 {
        return Err(Error::shape(op, format!("q {qs:?}, k {ks:?} and v {vs:?} need at least 2 dims (…, L, E)")));
    }
    let e = qs[qs.len() - 1];
    if ks[ks.len() - 1] != e || ks[ks.len() - 2] != vs[vs.len() - 2] {
        return Err(Error::shape(op, format!("q {qs:?}, k {ks:?}, v {vs:?}: need q (…, L, E), k (…, S, E), v (…, S, Ev)")));
    }
    let (l, s) = (qs[qs.len() - 2], ks[ks.len() - 2]);
    let scale = scale.unwrap_or(1.0 / (e.max(1) as f64).sqrt());
    let mut scores = q.matmul(&k.transpose(-2, -1)?)?.mul_scalar(T::of(scale));
    if let Some(mask) = mask {
        let m = mask.additive();
        scores = scores
            .add(&m)
            .map_err(|_| Error::shape(op, format!("mask {:?} does not broadcast to scores {:?}", m.shape(), scores.shape())))?;
    }
    if is_causal {
        scores = scores.add(&causal(l, s))?;
    }
    let weights = scores.softmax(-1)?;
    let out = weights.matmul(v)?;
    Ok((weights, out))
}

/// Options of [`MultiheadAttention::with_options`], PyTorch's constructor arguments with
/// their defaults (`Default`).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct MultiheadOptions {
    /// Biases on the input and output projections (`bias=True`).
    pub bias: bool,
    /// Features of the keys, when not `embed_dim` (`kdim`).
    pub kdim: Option<usize>,
    /// Features of the values, when not `embed_dim` (`vdim`).
    pub vdim: Option<usize>,
    /// Dropout on the attention weights in training (`dropout=0.0`).
    pub dropout: f64,
    /// `(N, L, E)` inputs and outputs instead of `(L, N, E)` (`batch_first=False`).
    pub batch_first: bool,
}

impl Default for MultiheadOptions {
    fn default() -> Self {
        MultiheadOptions { bias: true, kdim: None, vdim: None, dropout: 0.0, batch_first: false }
    }
}

/// The input projections: one packed `in_proj_weight [3E, E]` when queries, keys and values
/// have `E` features, else `q_proj_weight`, `k_proj_weight`, `v_proj_weight` (PyTorch's
/// layouts and names).
enum InProjection<T: Element> {
    Packed(Param<T>),
    Separate([Param<T>; 3]),
}

/// What [`MultiheadAttention::attend`] returns.
pub struct AttentionOutput<T: Element = f32> {
    /// `(L, N, E)` (or `(N, L, E)` with `batch_first`, `(L, E)` unbatched).
    pub output: Tensor<T>,
    /// The attention weights averaged over heads, `(N, L, S)` (`(L, S)` unbatched), as
    /// PyTorch returns with `need_weights=True`.
    pub weights: Tensor<T>,
}

/// Multi-head attention, as `torch.nn.MultiheadAttention`:
/// `concat(head_1 … head_h) W_o + b_o` with `head_i = attention(Q W_q^i, K W_k^i, V W_v^i)`
/// over `h` heads of `E/h` features.
///
/// Parameters: `in_proj_weight [3E, E]` (Xavier uniform), `in_proj_bias [3E]` (zeros),
/// `out_proj.weight [E, E]` (Kaiming uniform, as Linear), `out_proj.bias [E]` (zeros); with
/// `kdim`/`vdim` different from `E`, `q_proj_weight`, `k_proj_weight`, `v_proj_weight`
/// instead of `in_proj_weight`. A state dict saved by PyTorch loads by name.
///
/// ```
/// use nabla::prelude::*;
/// let mha: nn::MultiheadAttention = nn::MultiheadAttention::new(8, 2, &mut nabla::rng(0))?;
/// let x = Tensor::randn(&[5, 3, 8], &mut nabla::rng(1));       // (L, N, E)
/// let pad = ndarray::ArrayD::from_elem(ndarray::IxDyn(&[3, 5]), false);  // nothing padded
/// let out = mha.attend(&x, &x, &x, Some(&pad), None, true)?;    // causal self-attention
/// assert_eq!(out.output.shape(), &[5, 3, 8]);
/// assert_eq!(out.weights.shape(), &[3, 5, 5]);
/// # Ok::<(), nabla::Error>(())
/// ```
pub struct MultiheadAttention<T: Element = f32> {
    embed_dim: usize,
    num_heads: usize,
    options: MultiheadOptions,
    in_proj: InProjection<T>,
    in_proj_bias: Option<Param<T>>,
    /// The output projection `E → E`.
    pub out_proj: Linear<T>,
    mode: Mode,
    rng: Mutex<StdRng>,
}

constructors! {
    MultiheadAttention: MultiheadAttentionNew {
        /// `torch.nn.MultiheadAttention(embed_dim, num_heads)`; `Err` unless `num_heads`
        /// divides `embed_dim`.
        fn new(embed_dim: usize, num_heads: usize, rng: &mut impl Rng) -> Result<Self> {
            Self::with_options(embed_dim, num_heads, MultiheadOptions::default(), rng)
        }

        /// With every option.
        fn with_options(embed_dim: usize, num_heads: usize, options: MultiheadOptions, rng: &mut impl Rng) -> Result<Self> {
            let op = "MultiheadAttention";
            if num_heads == 0 || embed_dim == 0 || !embed_dim.is_multiple_of(num_heads) {
                return Err(Error::invalid(op, format!("embed_dim {embed_dim} must be a positive multiple of num_heads {num_heads}")));
            }
            if !(0.0..=1.0).contains(&options.dropout) {
                return Err(Error::invalid(op, format!("dropout {} is not in [0, 1]", options.dropout)));
            }
            let e = embed_dim;
            let (kdim, vdim) = (options.kdim.unwrap_or(e), options.vdim.unwrap_or(e));
            let in_proj = if kdim == e && vdim == e {
                InProjection::Packed(Param::new(xavier_uniform(&[3 * e, e], 1.0, rng)?))
            } else {
                InProjection::Separate([
                    Param::new(xavier_uniform(&[e, e], 1.0, rng)?),
                    Param::new(xavier_uniform(&[e, kdim], 1.0, rng)?),
                    Param::new(xavier_uniform(&[e, vdim], 1.0, rng)?),
                ])
            };
            let in_proj_bias = options.bias.then(|| Param::new(Tensor::<T>::zeros(&[3 * e])));
            let out_proj = Linear::<T>::with_bias(e, e, options.bias, rng);
            if let Some(b) = &out_proj.bias {
                b.set(ArrayD::zeros(IxDyn(&[e])))?;
            }
            let rng = Mutex::new(StdRng::seed_from_u64(rng.random()));
            Ok(MultiheadAttention { embed_dim, num_heads, options, in_proj, in_proj_bias, out_proj, mode: Mode::default(), rng })
        }
    }
}

impl<T: Element> MultiheadAttention<T> {
    /// The options it was built with.
    pub fn options(&self) -> MultiheadOptions {
        self.options
    }

    /// Attention of `query (L, N, E)` over `key (S, N, kdim)` and `value (S, N, vdim)` (batch
    /// first with `batch_first`; or unbatched `(L, E)`, `(S, kdim)`, `(S, vdim)`).
    ///
    /// `key_padding_mask (N, S)` (`(S)` unbatched): `true` marks a key to ignore.
    /// `attn_mask`: `(L, S)` or `(N·heads, L, S)`, see [`AttnMask`]. `is_causal` adds the
    /// causal mask. Returns the output and the weights averaged over heads.
    pub fn attend(
        &self,
        query: &Tensor<T>,
        key: &Tensor<T>,
        value: &Tensor<T>,
        key_padding_mask: Option<&ArrayD<bool>>,
        attn_mask: Option<AttnMask<'_, T>>,
        is_causal: bool,
    ) -> Result<AttentionOutput<T>> {
        let op = "MultiheadAttention";
        let (e, heads) = (self.embed_dim, self.num_heads);
        let (kdim, vdim) = (self.options.kdim.unwrap_or(e), self.options.vdim.unwrap_or(e));
        let unbatched = query.ndim() == 2;
        let dims = if unbatched { 2 } else { 3 };
        let ok = query.ndim() == dims
            && key.ndim() == dims
            && value.ndim() == dims
            && query.shape()[dims - 1] == e
            && key.shape()[dims - 1] == kdim
            && value.shape()[dims - 1] == vdim
            && key.shape()[..dims - 1] == value.shape()[..dims - 1];
        let batch_axis = if self.options.batch_first { 0 } else { 1 };
        if !ok || (!unbatched && query.shape()[batch_axis] != key.shape()[batch_axis]) {
            return Err(Error::shape(
                op,
                format!(
                    "query {:?}, key {:?}, value {:?} should be (L, N, {e}), (S, N, {kdim}), (S, N, {vdim}){}",
                    query.shape(),
                    key.shape(),
                    value.shape(),
                    if self.options.batch_first { " with N first" } else { "" }
                ),
            ));
        }
        // To (N, L, E).
        let to_batch_first = |t: &Tensor<T>| -> Result<Tensor<T>> {
            if unbatched {
                t.unsqueeze(0)
            } else if self.options.batch_first {
                Ok(t.clone())
            } else {
                t.transpose(0, 1)
            }
        };
        let (q, k, v) = (to_batch_first(query)?, to_batch_first(key)?, to_batch_first(value)?);
        let (n, l, s) = (q.shape()[0], q.shape()[1], k.shape()[1]);
        let (w_q, w_k, w_v) = match &self.in_proj {
            InProjection::Packed(w) => {
                let w = w.tensor();
                (w.narrow(0, 0, e)?, w.narrow(0, e, e)?, w.narrow(0, 2 * e, e)?)
            }
            InProjection::Separate([q, k, v]) => (q.tensor(), k.tensor(), v.tensor()),
        };
        let b = self.in_proj_bias.as_ref().map(Param::tensor);
        let bias = |i: usize| b.as_ref().map(|b| b.narrow(0, i * e, e)).transpose();
        let dh = (e / heads) as isize;
        // (N, L, E) → (N, heads, L, E/heads)
        let split = |t: Tensor<T>, len: usize| t.reshape(&[n as isize, len as isize, heads as isize, dh])?.permute(&[0, 2, 1, 3]);
        let q = split(q.linear(&w_q, bias(0)?.as_ref())?, l)?;
        let k = split(k.linear(&w_k, bias(1)?.as_ref())?, s)?;
        let v = split(v.linear(&w_v, bias(2)?.as_ref())?, s)?;

        let mut additive: Option<Tensor<T>> = None;
        if let Some(pad) = key_padding_mask {
            let want: &[usize] = if unbatched { &[s] } else { &[n, s] };
            if pad.shape() != want {
                return Err(Error::shape(op, format!("key_padding_mask {:?} should be {want:?}", pad.shape())));
            }
            let m = AttnMask::<T>::Blocked(pad).additive().reshape(&[n as isize, 1, 1, s as isize])?;
            additive = Some(m);
        }
        if let Some(mask) = attn_mask {
            let m = mask.additive();
            let m = match m.shape() {
                [a, b] if *a == l && *b == s => m,
                [nh, a, b] if *nh == n * heads && *a == l && *b == s => m.reshape(&[n as isize, heads as isize, l as isize, s as isize])?,
                other => return Err(Error::shape(op, format!("attn_mask {other:?} should be ({l}, {s}) or ({}, {l}, {s})", n * heads))),
            };
            additive = Some(match additive {
                Some(a) => a.add(&m)?,
                None => m,
            });
        }
        let mask = additive.as_ref().map(AttnMask::Additive);
        let (weights, _) = attention_weights(&q, &k, &v, mask, is_causal, None)?;
        let weights = if self.options.dropout > 0.0 && self.mode.is_training() {
            let mut rng = self.rng.lock().unwrap_or_else(|e| e.into_inner());
            functional::dropout(&weights, self.options.dropout, true, &mut *rng)?
        } else {
            weights
        };
        // (N, heads, L, dh) → (N, L, E)
        let heads_out = weights.matmul(&v)?.permute(&[0, 2, 1, 3])?.reshape(&[n as isize, l as isize, e as isize])?;
        let output = self.out_proj.forward(&heads_out)?;
        let averaged = weights.mean_dims(&[1], false)?;
        let (output, weights) = if unbatched {
            (output.squeeze(0)?, averaged.squeeze(0)?)
        } else if self.options.batch_first {
            (output, averaged)
        } else {
            (output.transpose(0, 1)?, averaged)
        };
        Ok(AttentionOutput { output, weights })
    }
}

impl<T: Element> Module<T> for MultiheadAttention<T> {
    /// Self-attention of `input` without masks.
    fn forward(&self, input: &Tensor<T>) -> Result<Tensor<T>> {
        Ok(self.attend(input, input, input, None, None, false)?.output)
    }

    fn named_parameters(&self) -> Vec<(String, Param<T>)> {
        let mut params = match &self.in_proj {
            InProjection::Packed(w) => vec![("in_proj_weight".to_string(), w.clone())],
            InProjection::Separate([q, k, v]) => vec![
                ("q_proj_weight".to_string(), q.clone()),
                ("k_proj_weight".to_string(), k.clone()),
                ("v_proj_weight".to_string(), v.clone()),
            ],
        };
        if let Some(b) = &self.in_proj_bias {
            params.push(("in_proj_bias".to_string(), b.clone()));
        }
        params.extend(prefixed("out_proj", self.out_proj.named_parameters()));
        params
    }

    fn set_training(&self, training: bool) {
        self.mode.set(training)
    }
}
