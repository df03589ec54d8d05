//! A whole LSTM layer (one direction) as one op: per time step one matrix product and one
//! fused pass over the gates; in backward, one product per step for the state's gradient
//! and a single product over all steps for the recurrent weight's.
//!
//! Composed from tensor ops, a step is about fifteen ops, each a pass over memory and a
//! graph node, and the weight gradient is `T` thin products `dZ_tᵀ h_{t-1}` (inner dim `N`),
//! which GEMM kernels run far below their peak. The fused form runs the same arithmetic in
//! a few loops and computes `Σ_t dZ_tᵀ h_{t-1}` as one product with inner dim `T·N`.
//!
//! Higher-order gradients: when backward runs with recording on (`create_graph`), the rule
//! rebuilds the layer from tensor ops ([`lstm_composed`], the fused op's test oracle) and
//! differentiates that, so gradients of gradients stay exact.

use super::kernel::gemm;
use super::kernel::{run_widest, Body};
use crate::autograd::Backward;
use crate::tensor::{Creation, Element, Tensor};
use ndarray::{Array2, Array3, ArrayView2, Axis, Ix2, Ix3};

/// The LSTM recursion over `xproj (T, N, 4H)` (the input projection `W_ih x_t + b_ih`, gates
/// `i, f, g, o`), from `h0, c0 (N, H)`, with `w_hh (4H, H)` and `b_hh (4H)`; in reverse
/// time order when `reverse`. Returns `(T + 1, N, H)`: the hidden state at each time, then
/// the final cell state.
pub(crate) fn lstm_sequence<T: Element>(
    xproj: &Tensor<T>,
    w_hh: &Tensor<T>,
    b_hh: Option<&Tensor<T>>,
    h0: &Tensor<T>,
    c0: &Tensor<T>,
    reverse: bool,
) -> Tensor<T> {
    let (steps, batch, g4) = (xproj.shape()[0], xproj.shape()[1], xproj.shape()[2]);
    let hs = g4 / 4;
    let xp_value = xproj.value();
    let xp = xp_value.as_standard_layout();
    let xp = xp.view().into_dimensionality::<Ix3>().expect("internal: (T, N, 4H)");
    let w = w_hh.value().into_dimensionality::<Ix2>().expect("internal: (4H, H)");
    let bias: Vec<T> = b_hh.map(|b| b.to_vec()).unwrap_or_else(|| vec![T::zero(); g4]);
    let mut h = h0.value().into_dimensionality::<Ix2>().expect("internal: (N, H)").to_owned();
    let mut c = c0.value().into_dimensionality::<Ix2>().expect("internal: (N, H)").to_owned();
    // Saved for backward, indexed by time: activated gates, the state entering each step,
    // and tanh of the cell state leaving it.
    let mut gates = Array3::<T>::zeros((steps, batch, g4));
    let mut h_prev = Array3::<T>::zeros((steps, batch, hs));
    let mut c_prev = Array3::<T>::zeros((steps, batch, hs));
    let mut tanh_c = Array3::<T>::zeros((steps, batch, hs));
    let mut out = Array3::<T>::zeros((steps + 1, batch, hs));
    for s in 0..steps {
        let t = if reverse { steps - 1 - s } else { s };
        h_prev.index_axis_mut(Axis(0), t).assign(&h);
        c_prev.index_axis_mut(Axis(0), t).assign(&c);
        let mut z = gemm(&h.view(), &w.t());
        let x = xp.index_axis(Axis(0), t);
        let step = ForwardStep {
            hs,
            z: z.as_slice_mut().expect("row-major"),
            x: x.as_slice().expect("row-major"),
            bias: &bias,
            c: c.as_slice_mut().expect("row-major"),
            h: h.as_slice_mut().expect("row-major"),
            gates: gates.index_axis_mut(Axis(0), t).into_slice().expect("row-major"),
            tanh_c: tanh_c.index_axis_mut(Axis(0), t).into_slice().expect("row-major"),
        };
        run_rows(step, batch);
        out.index_axis_mut(Axis(0), t).assign(&h);
    }
    out.index_axis_mut(Axis(0), steps).assign(&c);
    let mut inputs = vec![xproj, w_hh];
    inputs.extend(b_hh);
    inputs.extend([h0, c0]);
    let has_bias = b_hh.is_some();
    Tensor::from_op_arc(out.into_dyn().into_shared(), &inputs, || Box::new(LstmRule { gates, h_prev, c_prev, tanh_c, reverse, has_bias }))
}

struct LstmRule<T: Element> {
    gates: Array3<T>,
    h_prev: Array3<T>,
    c_prev: Array3<T>,
    tanh_c: Array3<T>,
    reverse: bool,
    has_bias: bool,
}

impl<T: Element> Backward<T> for LstmRule<T> {
    fn name(&self) -> &'static str {
        "lstm"
    }

    fn backward(&self, inputs: &[Tensor<T>], _: &Tensor<T>, gy: &Tensor<T>) -> Vec<Option<Tensor<T>>> {
        let (xproj, w_hh) = (&inputs[0], &inputs[1]);
        let b_hh = self.has_bias.then(|| &inputs[2]);
        let (h0, c0) = (&inputs[inputs.len() - 2], &inputs[inputs.len() - 1]);
        if crate::autograd::is_grad_enabled() {
            return differentiable_backward(xproj, w_hh, b_hh, h0, c0, self.reverse, gy);
        }
        let (steps, batch, hs) = (self.h_prev.shape()[0], self.h_prev.shape()[1], self.h_prev.shape()[2]);
        let g4 = 4 * hs;
        let gy = gy.value().into_dimensionality::<Ix3>().expect("internal: (T + 1, N, H)");
        let w = w_hh.value().into_dimensionality::<Ix2>().expect("internal: (4H, H)");
        let mut dz = Array3::<T>::zeros((steps, batch, g4));
        let mut gh_next = Array2::<T>::zeros((batch, hs));
        let mut gc = gy.index_axis(Axis(0), steps).as_standard_layout().into_owned();
        for s in (0..steps).rev() {
            let t = if self.reverse { steps - 1 - s } else { s };
            let gy_t = gy.index_axis(Axis(0), t);
            let gy_t = gy_t.as_standard_layout();
            let step = BackwardStep {
                hs,
                gates: self.gates.index_axis(Axis(0), t).to_slice().expect("row-major"),
                tanh_c: self.tanh_c.index_axis(Axis(0), t).to_slice().expect("row-major"),
                c_prev: self.c_prev.index_axis(Axis(0), t).to_slice().expect("row-major"),
                gy: gy_t.as_slice().expect("row-major"),
                gh_next: gh_next.as_slice().expect("row-major"),
                gc: gc.as_slice_mut().expect("row-major"),
                dz: dz.index_axis_mut(Axis(0), t).into_slice().expect("row-major"),
            };
            run_rows(step, batch);
            gh_next = gemm(&dz.index_axis(Axis(0), t), &w);
        }
        let rows = steps * batch;
        let dz2: ArrayView2<'_, T> = dz.view().into_shape_with_order((rows, g4)).expect("contiguous");
        let hp2: ArrayView2<'_, T> = self.h_prev.view().into_shape_with_order((rows, hs)).expect("contiguous");
        let gw = w_hh.requires_grad().then(|| Tensor::from(gemm(&dz2.t(), &hp2).into_dyn()));
        let gb = b_hh.filter(|b| b.requires_grad()).map(|_| Tensor::from(dz2.sum_axis(Axis(0)).into_dyn()));
        let gh0 = h0.requires_grad().then(|| Tensor::from(gh_next.into_dyn()));
        let gc0 = c0.requires_grad().then(|| Tensor::from(gc.into_dyn()));
        let gx = xproj.requires_grad().then(|| Tensor::from(dz.into_dyn()));
        let mut grads = vec![gx, gw];
        if self.has_bias {
            grads.push(gb);
        }
        grads.extend([gh0, gc0]);
        grads
    }
}

/// Backward with recording on: the layer rebuilt from tensor ops and differentiated, so the
/// gradients are themselves differentiable.
fn differentiable_backward<T: Element>(
    xproj: &Tensor<T>,
    w_hh: &Tensor<T>,
    b_hh: Option<&Tensor<T>>,
    h0: &Tensor<T>,
    c0: &Tensor<T>,
    reverse: bool,
    gy: &Tensor<T>,
) -> Vec<Option<Tensor<T>>> {
    let mut all = vec![xproj, w_hh];
    all.extend(b_hh);
    all.extend([h0, c0]);
    let y = lstm_composed(xproj, w_hh, b_hh, h0, c0, reverse).expect("internal: shapes checked by the fused forward");
    let wanted: Vec<&Tensor<T>> = all.iter().copied().filter(|t| t.requires_grad()).collect();
    let mut grads = crate::grad(&[&y], &wanted, Some(&[gy]), true).expect("internal: the composed layer differentiates").into_iter();
    all.iter().map(|t| if t.requires_grad() { grads.next() } else { None }).collect()
}

/// [`lstm_sequence`] composed from tensor ops: the oracle of the fused op's tests and the
/// path of its higher-order gradients.
pub(crate) fn lstm_composed<T: Element>(
    xproj: &Tensor<T>,
    w_hh: &Tensor<T>,
    b_hh: Option<&Tensor<T>>,
    h0: &Tensor<T>,
    c0: &Tensor<T>,
    reverse: bool,
) -> crate::Result<Tensor<T>> {
    let (steps, batch, g4) = (xproj.shape()[0], xproj.shape()[1], xproj.shape()[2]);
    let hs = g4 / 4;
    let (mut h, mut c) = (h0.clone(), c0.clone());
    let mut outputs = vec![Tensor::<T>::zeros(&[0]); steps];
    for s in 0..steps {
        let t = if reverse { steps - 1 - s } else { s };
        let z = xproj.narrow(0, t, 1)?.reshape(&[batch as isize, g4 as isize])?.add(&h.linear(w_hh, b_hh)?)?;
        let gate = |k: usize| z.narrow(1, k * hs, hs);
        let (i, f, g, o) = (gate(0)?.sigmoid(), gate(1)?.sigmoid(), gate(2)?.tanh(), gate(3)?.sigmoid());
        c = f.mul(&c)?.add(&i.mul(&g)?)?;
        h = o.mul(&c.tanh())?;
        outputs[t] = h.clone();
    }
    outputs.push(c);
    Tensor::stack(&outputs, 0)
}

/// A step's loops over rows, split in two row blocks across threads when there are
/// threads to spare and enough work to pay for the hand-off.
trait Rows: Body + Send + Sized {
    /// The first `rows` rows and the rest.
    fn split(self, rows: usize) -> (Self, Self);
    /// The hidden size.
    fn width(&self) -> usize;
}

/// Elements per step below which one thread does the whole step.
const PARALLEL_STEP_MIN: usize = 1 << 12;

fn run_rows<B: Rows>(mut step: B, batch: usize) {
    let elements = batch * step.width();
    if batch >= 2 && elements >= PARALLEL_STEP_MIN && rayon::current_num_threads() > 1 {
        let (mut a, mut b) = step.split(batch / 2);
        rayon::join(|| run_widest(&mut a), || run_widest(&mut b));
    } else {
        run_widest(&mut step);
    }
}

/// One forward time step over all rows: `z` holds `h W_hhᵀ` and becomes the pre-activation;
/// the new `c`, `h`, the activated gates and `tanh c` are written in place. Slices of
/// equal length per row, so the loops compile to vector code.
struct ForwardStep<'a, T> {
    hs: usize,
    z: &'a mut [T],
    x: &'a [T],
    bias: &'a [T],
    c: &'a mut [T],
    h: &'a mut [T],
    gates: &'a mut [T],
    tanh_c: &'a mut [T],
}

impl<T: Element> Body for ForwardStep<'_, T> {
    #[inline(always)]
    fn run(&mut self) {
        // Short passes of at most four streams each: loops the compiler vectorises (one loop
        // over all eleven streams stays scalar, and the transcendental functions are then
        // most of an LSTM's time).
        let hs = self.hs;
        let rows = self.z.chunks_exact_mut(4 * hs).zip(self.x.chunks_exact(4 * hs)).zip(self.gates.chunks_exact_mut(4 * hs));
        let state = self.c.chunks_exact_mut(hs).zip(self.h.chunks_exact_mut(hs)).zip(self.tanh_c.chunks_exact_mut(hs));
        for (((z, x), gate), ((c, h), tanh_c)) in rows.zip(state) {
            for ((g, (&zk, &xk)), &bk) in gate.iter_mut().zip(z.iter().zip(x)).zip(self.bias) {
                *g = zk + xk + bk;
            }
            let (if_, rest) = gate.split_at_mut(2 * hs);
            let (g, o) = rest.split_at_mut(hs);
            if_.iter_mut().for_each(|v| *v = v.sigmoid_v());
            g.iter_mut().for_each(|v| *v = v.tanh_v());
            o.iter_mut().for_each(|v| *v = v.sigmoid_v());
            let (i, f) = if_.split_at(hs);
            for (((c, &i), &f), &g) in c.iter_mut().zip(i).zip(f).zip(g.iter()) {
                *c = f * *c + i * g;
            }
            for (t, &c) in tanh_c.iter_mut().zip(c.iter()) {
                *t = c.tanh_v();
            }
            for ((h, &o), &t) in h.iter_mut().zip(o.iter()).zip(tanh_c.iter()) {
                *h = o * t;
            }
        }
    }
}

/// One backward time step over all rows: from the cotangent of `h` (`gy + gh_next`) and of
/// `c` (`gc`, updated in place to the previous step's) to the pre-activation gradient `dz`.
struct BackwardStep<'a, T> {
    hs: usize,
    gates: &'a [T],
    tanh_c: &'a [T],
    c_prev: &'a [T],
    gy: &'a [T],
    gh_next: &'a [T],
    gc: &'a mut [T],
    dz: &'a mut [T],
}

impl<T: Element> Body for BackwardStep<'_, T> {
    #[inline(always)]
    fn run(&mut self) {
        let hs = self.hs;
        let one = T::one();
        let rows = self.gates.chunks_exact(4 * hs).zip(self.dz.chunks_exact_mut(4 * hs));
        let state = self.tanh_c.chunks_exact(hs).zip(self.c_prev.chunks_exact(hs)).zip(self.gy.chunks_exact(hs));
        let carried = self.gh_next.chunks_exact(hs).zip(self.gc.chunks_exact_mut(hs));
        for ((gate, dz), (((tanh_c, c_prev), gy), (gh_next, gc))) in rows.zip(state.zip(carried)) {
            let (i, f, g, o) = (&gate[..hs], &gate[hs..2 * hs], &gate[2 * hs..3 * hs], &gate[3 * hs..]);
            let (di, rest) = dz.split_at_mut(hs);
            let (df, rest) = rest.split_at_mut(hs);
            let (dg, d_o) = rest.split_at_mut(hs);
            let gates = i.iter().zip(f).zip(g).zip(o);
            let outs = di.iter_mut().zip(df.iter_mut()).zip(dg.iter_mut()).zip(d_o.iter_mut());
            let state = tanh_c.iter().zip(c_prev).zip(gy).zip(gh_next).zip(gc.iter_mut());
            for (((((&i, &f), &g), &o), (((di, df), dg), d_o)), ((((&tc, &c_prev), &gy), &gh_next), gc)) in gates.zip(outs).zip(state) {
                let gh = gy + gh_next;
                let gcc = *gc + gh * o * (one - tc * tc);
                *di = gcc * g * i * (one - i);
                *df = gcc * c_prev * f * (one - f);
                *dg = gcc * i * (one - g * g);
                *d_o = gh * tc * o * (one - o);
                *gc = gcc * f;
            }
        }
    }
}

impl<T: Element> Rows for ForwardStep<'_, T> {
    fn split(self, rows: usize) -> (Self, Self) {
        let (wide, narrow) = (rows * 4 * self.hs, rows * self.hs);
        let (z0, z1) = self.z.split_at_mut(wide);
        let (x0, x1) = self.x.split_at(wide);
        let (g0, g1) = self.gates.split_at_mut(wide);
        let (c0, c1) = self.c.split_at_mut(narrow);
        let (h0, h1) = self.h.split_at_mut(narrow);
        let (t0, t1) = self.tanh_c.split_at_mut(narrow);
        let (hs, bias) = (self.hs, self.bias);
        (
            ForwardStep { hs, z: z0, x: x0, bias, c: c0, h: h0, gates: g0, tanh_c: t0 },
            ForwardStep { hs, z: z1, x: x1, bias, c: c1, h: h1, gates: g1, tanh_c: t1 },
        )
    }
    fn width(&self) -> usize {
        self.hs
    }
}

impl<T: Element> Rows for BackwardStep<'_, T> {
    fn split(self, rows: usize) -> (Self, Self) {
        let (wide, narrow) = (rows * 4 * self.hs, rows * self.hs);
        let (g0, g1) = self.gates.split_at(wide);
        let (d0, d1) = self.dz.split_at_mut(wide);
        let (t0, t1) = self.tanh_c.split_at(narrow);
        let (c0, c1) = self.c_prev.split_at(narrow);
        let (y0, y1) = self.gy.split_at(narrow);
        let (n0, n1) = self.gh_next.split_at(narrow);
        let (gc0, gc1) = self.gc.split_at_mut(narrow);
        let hs = self.hs;
        (
            BackwardStep { hs, gates: g0, tanh_c: t0, c_prev: c0, gy: y0, gh_next: n0, gc: gc0, dz: d0 },
            BackwardStep { hs, gates: g1, tanh_c: t1, c_prev: c1, gy: y1, gh_next: n1, gc: gc1, dz: d1 },
        )
    }
    fn width(&self) -> usize {
        self.hs
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn close(a: &Tensor<f64>, b: &Tensor<f64>) -> f64 {
        a.sub(b).unwrap().abs().amax().item().unwrap()
    }

    #[test]
    fn the_fused_layer_equals_its_composition_in_value_and_gradient() {
        // The last shape is large enough for a step to be split across threads.
        for (reverse, bias, (t, n, h)) in
            [(false, true, (5, 3, 4)), (true, true, (5, 3, 4)), (false, false, (5, 3, 4)), (true, true, (3, 8, 512))]
        {
            let mut rng = crate::rng(11);
            let xproj = Tensor::<f64>::randn(&[t, n, 4 * h], &mut rng).requires_grad_(true);
            let w = Tensor::<f64>::randn(&[4 * h, h], &mut rng).mul_scalar(0.5).requires_grad_(true);
            let b = Tensor::<f64>::randn(&[4 * h], &mut rng).requires_grad_(true);
            let h0 = Tensor::<f64>::randn(&[n, h], &mut rng).requires_grad_(true);
            let c0 = Tensor::<f64>::randn(&[n, h], &mut rng).requires_grad_(true);
            let b = bias.then_some(&b);
            let fused = lstm_sequence(&xproj, &w, b, &h0, &c0, reverse);
            let composed = lstm_composed(&xproj, &w, b, &h0, &c0, reverse).unwrap();
            assert!(close(&fused, &composed) < 1e-14, "values, reverse {reverse}");
            let cot = Tensor::<f64>::randn(&[t + 1, n, h], &mut rng);
            let mut wrt = vec![&xproj, &w];
            wrt.extend(b);
            wrt.extend([&h0, &c0]);
            let gf = crate::grad(&[&fused], &wrt, Some(&[&cot]), false).unwrap();
            let gc = crate::grad(&[&composed], &wrt, Some(&[&cot]), false).unwrap();
            for (k, (a, b)) in gf.iter().zip(&gc).enumerate() {
                assert!(close(a, b) < 1e-13, "gradient {k}, reverse {reverse}, bias {bias}: {}", close(a, b));
            }
        }
    }
}
