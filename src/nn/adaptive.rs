//! Adaptive softmax (Grave et al., 2017), as `torch.nn.AdaptiveLogSoftmaxWithLoss`: frequent
//! classes get a full softmax in the head, rare ones live in clusters reached through one
//! head entry each, with smaller projections.

use super::constructors::LinearNew;
use super::{Linear, Module, Param, prefixed};
use crate::error::{Error, Result};
use crate::tensor::{Creation, Element, Tensor};
use ndarray::{ArrayD, IxDyn};
use rand::Rng;

/// The two results of [`AdaptiveLogSoftmaxWithLoss::forward`].
pub struct AdaptiveOutput<T: Element = f32> {
    /// `log p(target_i | input_i)` for each sample, `[N]`.
    pub output: Tensor<T>,
    /// The mean negative log-likelihood, a 0-d tensor.
    pub loss: Tensor<T>,
}

/// Adaptive log-softmax with PyTorch's layout and parameter names (`head.weight`,
/// `head.bias` with `head_bias`, `tail.{i}.0.weight`, `tail.{i}.1.weight`).
///
/// Classes `0..cutoffs[0]` are the shortlist, scored directly by the head; cluster `i`
/// holds classes `cutoffs[i]..cutoffs[i+1]` (the last ends at `n_classes`), scored as
/// `log p(cluster i) + log p(class | cluster i)` through a projection to
/// `in_features / div_value^(i+1)` features.
///
/// ```
/// use nabla::prelude::*;
/// let asm = nn::AdaptiveLogSoftmaxWithLoss::new(8, 20, &[5, 12], 2.0, false, &mut nabla::rng(0))?;
/// let x = Tensor::randn(&[4, 8], &mut nabla::rng(1));
/// let target = ndarray::arr1(&[0usize, 7, 19, 3]).into_dyn();
/// let out = asm.forward(&x, &target)?;
/// assert_eq!(out.output.shape(), &[4]);
/// // log_prob is a full log-distribution over the 20 classes.
/// let p = asm.log_prob(&x)?.exp().sum_dims(&[1], false)?;
/// assert!(p.to_vec().iter().all(|s| (s - 1.0).abs() < 1e-5));
/// # Ok::<(), nabla::Error>(())
/// ```
pub struct AdaptiveLogSoftmaxWithLoss<T: Element = f32> {
    /// Input features.
    pub in_features: usize,
    /// Classes in all.
    pub n_classes: usize,
    /// The cluster boundaries, ending with `n_classes`.
    pub cutoffs: Vec<usize>,
    /// The head: shortlist scores and one score per cluster.
    pub head: Linear<T>,
    /// Per cluster: projection down, then to the cluster's classes.
    pub tail: Vec<(Linear<T>, Linear<T>)>,
}

constructors! {
    AdaptiveLogSoftmaxWithLoss: AdaptiveLogSoftmaxWithLossNew {
        /// Builds the layers, initialised as PyTorch's Linear layers; `Err` unless `cutoffs`
        /// are unique, increasing and between 1 and `n_classes - 1`.
        fn new(
            in_features: usize,
            n_classes: usize,
            cutoffs: &[usize],
            div_value: f64,
            head_bias: bool,
            rng: &mut impl Rng,
        ) -> Result<Self> {
            let increasing = cutoffs.windows(2).all(|w| w[0] < w[1]);
            if cutoffs.is_empty() || !increasing || cutoffs[0] == 0 || *cutoffs.last().unwrap() >= n_classes {
                return Err(Error::invalid(
                    "AdaptiveLogSoftmaxWithLoss",
                    format!(
                        "cutoffs {cutoffs:?} must be unique, increasing, and between 1 and n_classes - 1 = {}",
                        n_classes.saturating_sub(1)
                    ),
                ));
            }
            let mut all = cutoffs.to_vec();
            all.push(n_classes);
            let n_clusters = all.len() - 1;
            let head = Linear::<T>::with_bias(in_features, all[0] + n_clusters, head_bias, rng);
            let tail = (0..n_clusters)
                .map(|i| {
                    let hidden = (in_features as f64 / div_value.powi(i as i32 + 1)).floor() as usize;
                    (Linear::<T>::with_bias(in_features, hidden, false, rng), Linear::<T>::with_bias(hidden, all[i + 1] - all[i], false, rng))
                })
                .collect();
            Ok(AdaptiveLogSoftmaxWithLoss { in_features, n_classes, cutoffs: all, head, tail })
        }
    }
}

impl<T: Element> AdaptiveLogSoftmaxWithLoss<T> {
    fn shortlist(&self) -> usize {
        self.cutoffs[0]
    }

    /// `log p(target | input)` per sample and the mean negative log-likelihood, for
    /// `input: [N, in_features]` and `target: [N]`.
    pub fn forward(&self, input: &Tensor<T>, target: &ArrayD<usize>) -> Result<AdaptiveOutput<T>> {
        let op = "AdaptiveLogSoftmaxWithLoss";
        if input.ndim() != 2 || input.shape()[1] != self.in_features || target.shape() != [input.shape()[0]] {
            return Err(Error::shape(
                op,
                format!("input {:?} and target {:?} should be [N, {}] and [N]", input.shape(), target.shape(), self.in_features),
            ));
        }
        if let Some(&bad) = target.iter().find(|&&t| t >= self.n_classes) {
            return Err(Error::Index { op, index: bad, dim: 0, size: self.n_classes });
        }
        let n = target.len();
        let bounds: Vec<usize> = std::iter::once(0).chain(self.cutoffs.iter().copied()).collect();
        let mut head_index = vec![0usize; n];
        let mut order = Vec::with_capacity(n);
        let mut pieces = Vec::new();
        for cluster in 0..bounds.len() - 1 {
            let (low, high) = (bounds[cluster], bounds[cluster + 1]);
            let rows: Vec<usize> = (0..n).filter(|&r| (low..high).contains(&target[r])).collect();
            if rows.is_empty() {
                continue;
            }
            if cluster == 0 {
                rows.iter().for_each(|&r| head_index[r] = target[r]);
                pieces.push(Tensor::<T>::zeros(&[rows.len()]));
            } else {
                rows.iter().for_each(|&r| head_index[r] = self.shortlist() + cluster - 1);
                let (down, up) = &self.tail[cluster - 1];
                let scores = up.forward(&down.forward(&input.index_select(0, &rows)?)?)?;
                let relative =
                    ArrayD::from_shape_vec(IxDyn(&[rows.len(), 1]), rows.iter().map(|&r| target[r] - low).collect()).expect("one per row");
                pieces.push(scores.log_softmax(1)?.gather(1, &relative)?.reshape_to(&[rows.len()]));
            }
            order.extend(rows);
        }
        // Rows were grouped by cluster; put them back in sample order.
        let mut position = vec![0; n];
        order.iter().enumerate().for_each(|(k, &r)| position[r] = k);
        let cluster_part = Tensor::cat(&pieces, 0)?.index_select(0, &position)?;
        let head_log_prob = self.head.forward(input)?.log_softmax(1)?;
        let head_index = ArrayD::from_shape_vec(IxDyn(&[n, 1]), head_index).expect("one per row");
        let output = head_log_prob.gather(1, &head_index)?.reshape_to(&[n]).add(&cluster_part)?;
        let loss = output.neg().mean();
        Ok(AdaptiveOutput { output, loss })
    }

    /// The log-probabilities of every class, `[N, n_classes]`.
    pub fn log_prob(&self, input: &Tensor<T>) -> Result<Tensor<T>> {
        let head_log_prob = self.head.forward(input)?.log_softmax(1)?;
        let mut columns = vec![head_log_prob.narrow(1, 0, self.shortlist())?];
        for (i, (down, up)) in self.tail.iter().enumerate() {
            let within = up.forward(&down.forward(input)?)?.log_softmax(1)?;
            columns.push(within.add(&head_log_prob.narrow(1, self.shortlist() + i, 1)?)?);
        }
        Tensor::cat(&columns, 1)
    }

    /// The most likely class of each sample.
    pub fn predict(&self, input: &Tensor<T>) -> Result<Vec<usize>> {
        let log_prob = self.log_prob(input)?;
        Ok(log_prob
            .value()
            .rows()
            .into_iter()
            .map(|row| row.iter().enumerate().fold((0, T::neg_infinity()), |best, (k, &v)| if v > best.1 { (k, v) } else { best }).0)
            .collect())
    }

    /// Parameters under PyTorch's names.
    pub fn named_parameters(&self) -> Vec<(String, Param<T>)> {
        let mut params = prefixed("head", self.head.named_parameters());
        for (i, (down, up)) in self.tail.iter().enumerate() {
            params.extend(prefixed(&format!("tail.{i}.0"), down.named_parameters()));
            params.extend(prefixed(&format!("tail.{i}.1"), up.named_parameters()));
        }
        params
    }
}
