//! The reverse sweep: from roots and their cotangents to the gradients of the inputs.

use super::mode::set_grad_enabled;
use crate::error::{Error, Result};
use crate::tensor::{Creation, Element, Tensor};
use ndarray::{Axis, Slice};
use std::collections::{HashMap, HashSet};
use std::hash::{BuildHasherDefault, Hasher};

/// Hashes node ids, which are counters: one multiply, the high half folded into the low
/// bits the table indexes by. The default SipHash, built against chosen keys, showed in
/// profiles of small training steps (`workloads w4`); ids are not chosen by anyone.
#[derive(Default, Clone, Copy)]
pub(crate) struct IdHasher(u64);

impl Hasher for IdHasher {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.write_usize(self.0 as usize ^ usize::from(b));
        }
    }

    fn write_usize(&mut self, n: usize) {
        let h = (n as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15);
        self.0 = h ^ (h >> 29);
    }
}

/// A map keyed by node id.
pub(crate) type IdMap<V> = HashMap<usize, V, BuildHasherDefault<IdHasher>>;
/// A set of node ids.
pub(crate) type IdSet = HashSet<usize, BuildHasherDefault<IdHasher>>;

/// Gradients from one backward pass, keyed by tensor: `grads.get(&w)` is `dL/dw`.
///
/// Nothing is stored on the tensors themselves (no `.grad` fields, no `zero_grad`): each
/// backward returns a fresh store, and the same graph can be differentiated again.
///
/// ```
/// use nabla::prelude::*;
/// let w = Tensor::from_vec(vec![2.0], &[1])?.requires_grad_(true)?;
/// let loss = (&w * &w * 3.0).sum();        // L = 3w², dL/dw = 6w = 12
/// let grads = loss.backward()?;
/// assert_eq!(grads.get(&w).unwrap().to_vec(), vec![12.0]);
/// # Ok::<(), nabla::Error>(())
/// ```
pub struct Gradients<T: Element = f32> {
    by_id: IdMap<Tensor<T>>,
}

impl<T: Element> std::fmt::Debug for Gradients<T> {
    /// The tensor ids and the gradients' shapes (not their values).
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mut ids: Vec<_> = self.by_id.iter().map(|(id, g)| (*id, g.shape().to_vec())).collect();
        ids.sort();
        f.debug_map().entries(ids).finish()
    }
}

impl<T: Element> Default for Gradients<T> {
    fn default() -> Self {
        Gradients { by_id: IdMap::default() }
    }
}

impl<T: Element> Gradients<T> {
    /// An empty store.
    pub fn new() -> Self {
        Self::default()
    }
    /// The gradient of `tensor`, if the backward pass reached it.
    pub fn get(&self, tensor: &Tensor<T>) -> Option<&Tensor<T>> {
        self.by_id.get(&tensor.id())
    }
    /// The gradient of the tensor with this id.
    pub fn get_by_id(&self, id: usize) -> Option<&Tensor<T>> {
        self.by_id.get(&id)
    }
    /// Sets the gradient of `tensor` (for example after clipping).
    pub fn insert(&mut self, tensor: &Tensor<T>, gradient: Tensor<T>) {
        self.by_id.insert(tensor.id(), gradient);
    }
    /// Takes the gradient of `tensor` out of the store.
    pub fn remove(&mut self, tensor: &Tensor<T>) -> Option<Tensor<T>> {
        self.by_id.remove(&tensor.id())
    }
    /// How many tensors have a gradient.
    pub fn len(&self) -> usize {
        self.by_id.len()
    }
    /// True when no tensor has a gradient.
    pub fn is_empty(&self) -> bool {
        self.by_id.is_empty()
    }
    /// `(tensor id, gradient)` pairs, in no particular order.
    pub fn iter(&self) -> impl Iterator<Item = (usize, &Tensor<T>)> {
        self.by_id.iter().map(|(id, g)| (*id, g))
    }
    /// The gradients, mutable (for clipping in place).
    pub fn values_mut(&mut self) -> impl Iterator<Item = &mut Tensor<T>> {
        self.by_id.values_mut()
    }

    /// Adds `other`'s gradients into this store (gradient accumulation over micro-batches):
    /// a tensor in both gets the sum, one in `other` only is copied. `Err`, with nothing
    /// changed, when a tensor's two gradients differ in shape.
    ///
    /// ```
    /// use nabla::prelude::*;
    /// let w = Tensor::from_vec(vec![1.0], &[1])?.requires_grad_(true)?;
    /// let mut total = (&w * 2.0).sum().backward()?;
    /// total.accumulate(&(&w * 3.0).sum().backward()?)?;
    /// assert_eq!(total.get(&w).unwrap().to_vec(), vec![5.0]);
    /// # Ok::<(), nabla::Error>(())
    /// ```
    pub fn accumulate(&mut self, other: &Gradients<T>) -> Result<()> {
        for (id, g) in &other.by_id {
            if let Some(mine) = self.by_id.get(id)
                && mine.shape() != g.shape()
            {
                return Err(Error::shape("accumulate", format!("gradients {:?} and {:?} of one tensor", mine.shape(), g.shape())));
            }
        }
        for (id, g) in &other.by_id {
            let sum = match self.by_id.get(id) {
                Some(mine) => mine.add(g)?,
                None => g.clone(),
            };
            self.by_id.insert(*id, sum);
        }
        Ok(())
    }
}

/// Which gradients a sweep keeps.
enum Wanted<'a> {
    /// Every leaf that requires grad (`backward`).
    Leaves,
    /// These tensors, leaves or not (`grad`).
    Ids(&'a IdSet),
}

/// The reverse sweep. Visits every node that requires grad and can reach a root, newest
/// first (ids only grow, so that is a topological order), runs each rule once with the sum
/// of its output's cotangents, and frees a cotangent as soon as its node is done.
fn sweep<T: Element>(roots: &[(Tensor<T>, Tensor<T>)], wanted: Wanted<'_>, create_graph: bool) -> Result<IdMap<Tensor<T>>> {
    // Ancestors of a wanted tensor are older than it, so nothing older than the oldest
    // wanted tensor can matter.
    let oldest = match &wanted {
        Wanted::Leaves => 0,
        Wanted::Ids(ids) => ids.iter().copied().min().unwrap_or(usize::MAX),
    };
    // Room for a small model's graph from the start: growing a table step by step showed
    // in profiles of small training steps (`workloads w4`).
    let mut nodes: IdMap<Tensor<T>> = IdMap::with_capacity_and_hasher(64, Default::default());
    let mut stack: Vec<Tensor<T>> = roots.iter().map(|(t, _)| t.clone()).collect();
    while let Some(t) = stack.pop() {
        if !t.requires_grad() || t.id() < oldest || nodes.contains_key(&t.id()) {
            continue;
        }
        stack.extend(t.graph_inputs().iter().cloned());
        nodes.insert(t.id(), t);
    }
    let mut order: Vec<usize> = nodes.keys().copied().collect();
    order.sort_unstable_by(|a, b| b.cmp(a));

    set_grad_enabled(create_graph, || {
        let mut cotangents: IdMap<Tensor<T>> = IdMap::with_capacity_and_hasher(order.len(), Default::default());
        for (root, cotangent) in roots {
            if root.requires_grad() {
                // With create_graph, a seed that requires grad makes every gradient that
                // depends on it record its history, so a rule that cuts it off shows.
                let seed = if create_graph && !cotangent.requires_grad() {
                    cotangent.detach().with_requires_grad(true)
                } else {
                    cotangent.clone()
                };
                accumulate(&mut cotangents, root.id(), seed, create_graph);
            }
        }
        let wanted_count = match &wanted {
            Wanted::Leaves => nodes.values().filter(|t| t.is_leaf()).count(),
            Wanted::Ids(ids) => ids.len(),
        };
        let mut kept = IdMap::with_capacity_and_hasher(wanted_count, Default::default());
        for id in order {
            let node = nodes.remove(&id).expect("internal: node collected");
            let Some(gy) = cotangents.remove(&id) else { continue };
            let gy = super::hooks::apply(id, gy);
            let keep = match &wanted {
                Wanted::Leaves => node.is_leaf(),
                Wanted::Ids(ids) => ids.contains(&id),
            };
            if keep {
                kept.insert(id, gy.clone());
            }
            let Some(grad_fn) = node.node.core.grad_fn.as_ref() else { continue };
            if create_graph && !grad_fn.rule.is_differentiable() {
                return Err(Error::autograd(
                    grad_fn.rule.name(),
                    format!("{NOT_DIFFERENTIABLE}: higher-order gradients through it are not supported"),
                ));
            }
            if let (false, Some((axis, start))) = (create_graph, grad_fn.rule.reads_slice()) {
                let input = &grad_fn.inputs[0];
                if input.requires_grad() && input.id() >= oldest {
                    let len = gy.shape()[axis];
                    let acc = match cotangents.remove(&input.id()) {
                        Some(mut acc) => {
                            acc.update_leaf(|v| {
                                v.slice_axis_mut(Axis(axis), Slice::from(start..start + len)).zip_mut_with(gy.array(), |a, &b| *a = *a + b)
                            });
                            acc
                        }
                        None => Tensor::from(crate::array::copy::padded(input.shape(), axis, start, &gy.array().view())),
                    };
                    cotangents.insert(input.id(), acc);
                }
                continue;
            }
            let connected = create_graph && gy.requires_grad();
            let gxs = grad_fn.rule.backward_owned(&grad_fn.inputs, &node, gy);
            if connected {
                check_connected(grad_fn.rule.name(), &grad_fn.inputs, &gxs)?;
            }
            if super::anomaly::enabled() {
                for (k, gx) in gxs.iter().enumerate() {
                    if let Some(v) = gx.as_ref().and_then(|g| super::anomaly::non_finite(g.array())) {
                        return Err(super::anomaly::backward_error(grad_fn.rule.name(), k, v, grad_fn.origin.as_deref()));
                    }
                }
            }
            assert_eq!(gxs.len(), grad_fn.inputs.len(), "internal: {} returned the wrong number of gradients", grad_fn.rule.name());
            for (input, gx) in grad_fn.inputs.iter().zip(gxs) {
                let Some(gx) = gx else { continue };
                if !input.requires_grad() || input.id() < oldest {
                    continue;
                }
                let gx = gx.sum_to_shape(input.shape()).expect("internal: gradient does not broadcast to its input");
                accumulate(&mut cotangents, input.id(), gx, create_graph);
            }
        }
        Ok(kept)
    })
}

/// How the error for a rule marked not differentiable begins.
pub(crate) const NOT_DIFFERENTIABLE: &str = "this backward rule is not differentiable";

/// With `create_graph`, the gradients a rule returned for inputs that require grad, given a
/// cotangent that requires grad: a vector-Jacobian product is linear in the cotangent, so a
/// gradient that does not record its dependence on it, and is not zero, was computed
/// outside tensor ops and would differentiate to a silent zero.
fn check_connected<T: Element>(name: &'static str, inputs: &[Tensor<T>], gxs: &[Option<Tensor<T>>]) -> Result<()> {
    for (k, (input, gx)) in inputs.iter().zip(gxs).enumerate() {
        let Some(gx) = gx else { continue };
        if input.requires_grad() && !gx.requires_grad() && gx.array().iter().any(|v| *v != T::zero()) {
            return Err(Error::autograd(
                name,
                format!(
                    "the backward rule's gradient for input {k} is cut off from its cotangent (computed outside tensor ops), \
                     so it cannot be differentiated again; write the rule with tensor ops, or mark it first_order()"
                ),
            ));
        }
    }
    Ok(())
}

/// Adds `g` to the cotangent of `id`. A first-order sweep adds in place when the running
/// sum's buffer is not shared (`update_leaf` copies otherwise); with `create_graph` the sum
/// is an op, so that it is differentiated too.
fn accumulate<T: Element>(cotangents: &mut IdMap<Tensor<T>>, id: usize, g: Tensor<T>, create_graph: bool) {
    let summed = match cotangents.remove(&id) {
        Some(previous) if create_graph => previous.add(&g).expect("internal: gradients of one tensor differ in shape"),
        Some(mut previous) => {
            // Through the kernels' loop, split across threads for a large gradient.
            previous.update_leaf_with(&g.array().view(), |a, b| a + b);
            previous
        }
        None => g,
    };
    cotangents.insert(id, summed);
}

fn check_cotangent<T: Element>(op: &'static str, output: &Tensor<T>, cotangent: &Tensor<T>) -> Result<()> {
    if output.shape() != cotangent.shape() {
        return Err(Error::shape(op, format!("cotangent of shape {:?} for an output of shape {:?}", cotangent.shape(), output.shape())));
    }
    Ok(())
}

impl<T: Element> Tensor<T> {
    /// Differentiates this one-element tensor (a loss) with respect to every leaf that
    /// requires grad: `dL/dw` for each `w`, as PyTorch's `loss.backward()`.
    ///
    /// `Err` if the tensor has more than one element (use [`Tensor::backward_with`]) or
    /// does not require grad.
    pub fn backward(&self) -> Result<Gradients<T>> {
        if self.len() != 1 {
            return Err(Error::autograd(
                "backward",
                format!(
                    "the output has shape {:?}; backward() without a cotangent needs a one-element output (use backward_with)",
                    self.shape()
                ),
            ));
        }
        self.backward_with(&Tensor::<T>::ones(self.shape()))
    }

    /// Backward with an explicit cotangent `v` of this tensor's shape: the gradients of
    /// `L = sum(v * self)`, a vector-Jacobian product.
    pub fn backward_with(&self, cotangent: &Tensor<T>) -> Result<Gradients<T>> {
        check_cotangent("backward", self, cotangent)?;
        if !self.requires_grad() {
            return Err(Error::autograd("backward", "the output does not require grad: no input it depends on requires grad"));
        }
        let by_id = sweep(&[(self.clone(), cotangent.clone())], Wanted::Leaves, false)?;
        Ok(Gradients { by_id })
    }
}

/// The gradients of `outputs` with respect to `inputs`, as `torch.autograd.grad`:
/// `dL/d input_i` with `L = Σ_k sum(cotangent_k * output_k)`.
///
/// `cotangents` may be `None` when every output has one element (each then gets `1`).
/// With `create_graph` the gradients are themselves recorded, so they can be differentiated
/// again (Hessian-vector products, gradient penalties). An input the outputs do not depend
/// on gets a zero gradient. Inputs need not be leaves.
///
/// ```
/// use nabla::prelude::*;
/// let x = Tensor::<f64>::from_vec(vec![3.0], &[1])?.requires_grad_(true)?;
/// let y = x.pow(3.0).sum();                                        // y = x³
/// let dy = nabla::grad(&[&y], &[&x], None, true)?;           // 3x² = 27
/// let d2y = nabla::grad(&[&dy[0].sum()], &[&x], None, false)?; // 6x = 18
/// assert_eq!((dy[0].item()?, d2y[0].item()?), (27.0, 18.0));
/// # Ok::<(), nabla::Error>(())
/// ```
pub fn grad<T: Element>(
    outputs: &[&Tensor<T>],
    inputs: &[&Tensor<T>],
    cotangents: Option<&[&Tensor<T>]>,
    create_graph: bool,
) -> Result<Vec<Tensor<T>>> {
    let roots: Vec<(Tensor<T>, Tensor<T>)> = match cotangents {
        Some(cts) => {
            if cts.len() != outputs.len() {
                return Err(Error::invalid("grad", format!("{} outputs but {} cotangents", outputs.len(), cts.len())));
            }
            for (o, c) in outputs.iter().zip(cts) {
                check_cotangent("grad", o, c)?;
            }
            outputs.iter().map(|&o| o.clone()).zip(cts.iter().map(|&c| c.clone())).collect()
        }
        None => {
            if let Some(o) = outputs.iter().find(|o| o.len() != 1) {
                return Err(Error::autograd("grad", format!("an output of shape {:?} needs a cotangent; pass cotangents", o.shape())));
            }
            outputs.iter().map(|&o| (o.clone(), Tensor::<T>::ones(o.shape()))).collect()
        }
    };
    let ids: IdSet = inputs.iter().map(|t| t.id()).collect();
    let kept = sweep(&roots, Wanted::Ids(&ids), create_graph)?;
    Ok(inputs.iter().map(|x| kept.get(&x.id()).cloned().unwrap_or_else(|| Tensor::<T>::zeros(x.shape()))).collect())
}

#[cfg(test)]
mod tests {
    use crate::prelude::*;

    #[test]
    fn a_large_tensor_read_through_narrows_gets_its_slices_cotangents_and_zeros_elsewhere() {
        // Large enough for the pool (whose recycled buffers are NaN in these tests, so an
        // element left unwritten shows): one narrow alone, then two that overlap; the wider
        // one's slice is copied across two threads.
        let pool = rayon::ThreadPoolBuilder::new().num_threads(2).build().unwrap();
        for (rows, cols) in [(36, 1024), (36, 8192)] {
            pool.install(|| {
                let mut rng = crate::rng(3);
                let x = Tensor::<f64>::randn(&[rows, cols], &mut rng).with_requires_grad(true);
                let w1 = Tensor::<f64>::randn(&[34, cols], &mut rng);
                let w2 = Tensor::<f64>::randn(&[6, cols], &mut rng);
                let first = x.narrow(0, 1, 34).unwrap().mul(&w1).unwrap().sum();
                let g = first.backward().unwrap().get(&x).unwrap().clone();
                let mut expect = ndarray::Array2::<f64>::zeros((rows, cols));
                expect.slice_mut(ndarray::s![1..35, ..]).assign(&w1.value().into_dimensionality::<ndarray::Ix2>().unwrap());
                assert_eq!(g.value(), expect.clone().into_dyn().into_shared(), "one narrow, {rows}x{cols}");
                let both = first.add(&x.narrow(0, 30, 6).unwrap().mul(&w2).unwrap().sum()).unwrap();
                let g = both.backward().unwrap().get(&x).unwrap().clone();
                let w2v = w2.value().into_dimensionality::<ndarray::Ix2>().unwrap();
                expect.slice_mut(ndarray::s![30.., ..]).zip_mut_with(&w2v, |e, &w| *e += w);
                assert_eq!(g.value(), expect.into_dyn().into_shared(), "two narrows, {rows}x{cols}");
            });
        }
    }
}
