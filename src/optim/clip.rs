//! Gradient clipping, applied to every gradient of a store together.

use crate::autograd::Gradients;
use crate::error::{Error, Result};
use crate::tensor::Element;

/// Scales all gradients together so that their joint 2-norm is at most `max_norm`, as
/// `torch.nn.utils.clip_grad_norm_` with its default `norm_type`; returns the norm before
/// clipping. See [`clip_grad_norm_with`] for other norms.
pub fn clip_grad_norm<T: Element>(grads: &mut Gradients<T>, max_norm: f64) -> Result<f64> {
    clip_grad_norm_with(grads, max_norm, ClipNorm::default())
}

/// The options of [`clip_grad_norm_with`]: PyTorch's `norm_type` (2) and
/// `error_if_nonfinite` (false), set by name.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ClipNorm {
    /// The order of the norm, positive; `f64::INFINITY` for the largest absolute value.
    pub norm_type: f64,
    /// Refuse (an `Err`, the gradients unchanged) when the total norm is NaN or infinite,
    /// instead of scaling by it.
    pub error_if_nonfinite: bool,
}

impl Default for ClipNorm {
    fn default() -> Self {
        ClipNorm { norm_type: 2.0, error_if_nonfinite: false }
    }
}

impl ClipNorm {
    /// Sets `norm_type`.
    pub fn norm_type(mut self, norm_type: f64) -> Self {
        self.norm_type = norm_type;
        self
    }
    /// Sets `error_if_nonfinite`.
    pub fn error_if_nonfinite(mut self, error_if_nonfinite: bool) -> Self {
        self.error_if_nonfinite = error_if_nonfinite;
        self
    }
}

/// Scales all gradients together so that their joint `norm_type`-norm is at most
/// `max_norm`, as `torch.nn.utils.clip_grad_norm_`; returns the norm before clipping.
/// The scale is `min(1, max_norm / (norm + 1e-6))`, PyTorch's.
///
/// ```
/// use nabla::prelude::*;
/// let w = Tensor::from_vec(vec![3.0, 4.0], &[2])?.requires_grad_(true)?;
/// let mut grads = (&w * &w).sum().backward()?;     // ∇ = (6, 8), norm 10
/// let norm = optim::clip_grad_norm(&mut grads, 1.0)?;
/// assert_eq!(norm, 10.0);
/// let g = grads.get(&w).unwrap().to_vec();
/// assert!((g[0] - 0.6).abs() < 1e-6 && (g[1] - 0.8).abs() < 1e-6);
/// let mut grads = (&w * f64::INFINITY).sum().backward()?;
/// let strict = optim::ClipNorm::default().error_if_nonfinite(true);
/// assert!(optim::clip_grad_norm_with(&mut grads, 1.0, strict).is_err());
/// assert_eq!(grads.get(&w).unwrap().to_vec(), vec![f32::INFINITY, f32::INFINITY]); // unchanged
/// # Ok::<(), nabla::Error>(())
/// ```
pub fn clip_grad_norm_with<T: Element>(grads: &mut Gradients<T>, max_norm: f64, options: ClipNorm) -> Result<f64> {
    let norm_type = options.norm_type;
    if norm_type.is_nan() || norm_type <= 0.0 {
        return Err(Error::invalid("clip_grad_norm", format!("norm_type {norm_type} must be positive")));
    }
    let mut total: f64 = 0.0;
    for (_, g) in grads.iter() {
        let values = g.value();
        let f64_of = |v: &T| v.to_f64().unwrap_or(f64::NAN);
        let abs = values.iter().map(|v| f64_of(v).abs());
        // powf per element costs more than the rest of the clip together; 1 and 2 are the
        // norms in use, and summed in independent lanes (one running sum is a chain of
        // dependent additions, which bounds the loop by latency, not throughput).
        total = match (norm_type, values.as_slice()) {
            (p, _) if p.is_infinite() => abs.fold(total, f64::max),
            (1.0, Some(xs)) => total + lane_sum(xs, |v| f64_of(v).abs()),
            (2.0, Some(xs)) => total + lane_sum(xs, |v| f64_of(v) * f64_of(v)),
            (1.0, None) => total + abs.sum::<f64>(),
            (2.0, None) => total + abs.map(|a| a * a).sum::<f64>(),
            (p, _) => total + abs.map(|a| a.powf(p)).sum::<f64>(),
        };
    }
    let norm = if norm_type.is_infinite() { total } else { total.powf(1.0 / norm_type) };
    if options.error_if_nonfinite && !norm.is_finite() {
        return Err(Error::invalid(
            "clip_grad_norm",
            format!(
                "the total norm of order {norm_type} of the gradients is {norm}, so they cannot be clipped \
                 (error_if_nonfinite false scales them by it anyway)"
            ),
        ));
    }
    let scale = T::of((max_norm / (norm + 1e-6)).min(1.0));
    if scale != T::one() {
        for g in grads.values_mut() {
            g.update_leaf(|v| v.mapv_inplace(|x| x * scale));
        }
    }
    Ok(norm)
}

/// `Σ f(x)` over `xs` in f64: per run of [`SUM_RUN`] elements in eight partial sums that
/// the compiler keeps in vector registers, then the runs' sums in order. The runs are
/// fixed, so the result does not depend on the number of threads, and a long slice sums
/// its runs in parallel (a recurrent layer's weight gradient is large enough that summing
/// it on the calling thread alone leaves the pool idle).
fn lane_sum<T: Element>(xs: &[T], f: impl Fn(&T) -> f64 + Sync) -> f64 {
    let run = |xs: &[T]| {
        const LANES: usize = 8;
        let mut acc = [0.0f64; LANES];
        let mut chunks = xs.chunks_exact(LANES);
        for c in &mut chunks {
            for k in 0..LANES {
                acc[k] += f(&c[k]);
            }
        }
        let tail: f64 = chunks.remainder().iter().map(&f).sum();
        acc.iter().sum::<f64>() + tail
    };
    let sums: Vec<f64> = if xs.len() >= 2 * SUM_RUN && rayon::current_num_threads() > 1 {
        crate::array::kernel::team::map_items(xs.chunks(SUM_RUN).collect(), run)
    } else {
        xs.chunks(SUM_RUN).map(run).collect()
    };
    sums.iter().sum()
}

/// The elements [`lane_sum`] sums apart (the unit of its split across threads).
const SUM_RUN: usize = 1 << 15;

/// Clamps every gradient element to `[-clip_value, clip_value]`, as
/// `torch.nn.utils.clip_grad_value_`.
pub fn clip_grad_value<T: Element>(grads: &mut Gradients<T>, clip_value: f64) -> Result<()> {
    if clip_value.is_nan() || clip_value < 0.0 {
        return Err(Error::invalid("clip_grad_value", format!("clip_value {clip_value} must be non-negative")));
    }
    let c = T::of(clip_value);
    for g in grads.values_mut() {
        *g = g.detach().clamp(-c, c);
    }
    Ok(())
}
