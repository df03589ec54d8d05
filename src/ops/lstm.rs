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

use super::registry::{OpInfo, randn};
use crate::array::kernel::{Body, ThinLhs, gemm, gemm_acc, prefetch_rows, run_widest, transpose_into};
use crate::array::rounds::run_rounds;
use crate::autograd::OpRule;
use crate::nn::constructors::LstmNew as _;
use crate::tensor::{Creation, Element, Tensor};
use ndarray::{Array2, Array3, ArrayView2, ArrayViewMut2, Axis, Ix2, Ix3, s};
use std::ops::DerefMut;
use std::sync::{Mutex, OnceLock, RwLock};

/// The LSTM recursion over the transposed input projection `xprojᵀ (4H, T, N)` (`W_ih x_t`
/// for every step, gates `i, f, g, o`; `N` the batch), from `h0, c0 (N, H)`, with
/// `w_hh (4H, H)` and the biases `b_ih, b_hh (4H)`; in reverse time order when `reverse`.
/// Returns `(T + 1, N, H)`: the hidden state at each time, then the final cell state.
///
/// Inside, the state is kept transposed, `hᵀ (H, N)`, so that a step's product is
/// `W_hh hᵀ`: 4H rows by N columns. GEMM kernels block by rows, and with the batch as the
/// row count (`h W_hhᵀ`, a few dozen rows) they run far below the speed they reach on the
/// transposed product (`cargo bench --bench ops -- lstm_step_product`), and cannot split
/// it across threads. Each gate's block of the
/// pre-activation is then one contiguous `H·N` run, so the gate arithmetic is a few flat
/// loops; and the input projection, computed transposed by one product for all steps, is
/// read a step at a time as `4H` runs of `N`, with no transposition. Each block's rows of
/// `W_hh` (and of `W_hhᵀ` in backward) are held as a [`ThinLhs`], packed once per call
/// where its kernel runs rather than by the gemm crate at every step
/// (`RAYON_NUM_THREADS=1 cargo bench --bench ops -- lstm_layer`). Each block's is gathered
/// straight from `W_hh` by the thread that runs the block, not copied to a reordered (or
/// transposed) `W_hh` first on the calling thread while the others wait.
pub(crate) fn lstm_sequence<T: Element>(
    xproj: &Tensor<T>,
    w_hh: &Tensor<T>,
    b_ih: Option<&Tensor<T>>,
    b_hh: Option<&Tensor<T>>,
    h0: &Tensor<T>,
    c0: &Tensor<T>,
    reverse: bool,
) -> Tensor<T> {
    let (g4, steps, batch) = (xproj.shape()[0], xproj.shape()[1], xproj.shape()[2]);
    let hs = g4 / 4;
    let xp_value = xproj.value();
    let xp = xp_value.view().into_dimensionality::<Ix3>().expect("internal: (4H, T, N)");
    let w_value = w_hh.value();
    let w = w_value.view().into_dimensionality::<Ix2>().expect("internal: (4H, H)");
    let mut bias = vec![T::zero(); g4];
    for b in [b_ih, b_hh].into_iter().flatten() {
        bias.iter_mut().zip(b.to_vec()).for_each(|(s, b)| *s = *s + b);
    }
    let state = |t: &Tensor<T>| t.value().into_dimensionality::<Ix2>().expect("internal: (N, H)").t().as_standard_layout().into_owned();
    let mut c = state(c0);
    let blocks = unit_blocks(hs, batch);
    let parts = blocks.len() - 1;
    let order = gate_order(&blocks, hs);
    // Each block's rows of W_hh, for the 35-odd products of the loop: gathered by the
    // thread that runs the block's first step, into its own cache, alongside the others.
    let w_blocks: Vec<OnceLock<ThinLhs<T>>> = (0..parts).map(|_| OnceLock::new()).collect();
    let bias: Vec<T> = order.iter().map(|&r| bias[r]).collect();
    // Saved for backward, indexed by time, each transposed: the activated gates (rows in
    // `order`), the cell state entering each step and tanh of the one leaving it.
    let mut gates = pooled((steps, g4, batch));
    let mut c_prev = pooled((steps, hs, batch));
    let mut tanh_c = pooled((steps, hs, batch));
    let mut out = pooled((steps + 1, batch, hs));
    {
        // hᵀ by blocks of units, of the step before and of this one: part p reads every
        // block of the one, each once it is ready, and writes its own block of the other.
        let h0t = state(h0);
        let h: [Vec<RwLock<Array2<T>>>; 2] = [
            blocks.windows(2).map(|u| RwLock::new(h0t.slice(s![u[0]..u[1], ..]).to_owned())).collect(),
            blocks.windows(2).map(|u| RwLock::new(Array2::zeros((u[1] - u[0], batch)))).collect(),
        ];
        let c_parts: Vec<Mutex<&mut [T]>> = cut(c.as_slice_mut().expect("row-major"), &blocks, batch).into_iter().map(Mutex::new).collect();
        // Each time's pieces of the saved arrays and of the output, one per block.
        let pieces: Vec<Vec<Mutex<Option<ForwardPiece<'_, T>>>>> = gates
            .outer_iter_mut()
            .zip(c_prev.outer_iter_mut())
            .zip(tanh_c.outer_iter_mut())
            .zip(out.outer_iter_mut())
            .map(|(((z, c_prev), tanh_c), out)| {
                cut(z.into_slice().expect("row-major"), &blocks, 4 * batch)
                    .into_iter()
                    .zip(cut(c_prev.into_slice().expect("row-major"), &blocks, batch))
                    .zip(cut(tanh_c.into_slice().expect("row-major"), &blocks, batch))
                    .zip(split_blocks(out, Axis(1), &blocks))
                    .map(|(((z, c_prev), tanh_c), out)| Mutex::new(Some(ForwardPiece { z, c_prev, tanh_c, out })))
                    .collect()
            })
            .collect();
        let job = |s: usize, p: usize, ready: &dyn Fn(usize)| {
            let t = if reverse { steps - 1 - s } else { s };
            // This block's state from the step before: its cell state and its part of hᵀ.
            ready(p);
            let ForwardPiece { z, c_prev, tanh_c, mut out } =
                pieces[t][p].lock().expect("no job panicked").take().expect("each piece once");
            let mut c = c_parts[p].lock().expect("no job panicked");
            let rows = 4 * blocks[p]..4 * blocks[p + 1];
            // `W_hh hᵀ` by blocks of the state, this block's own first: the product starts
            // while the other threads may still be finishing their blocks of the step before.
            let product = |zm: &mut ArrayViewMut2<'_, T>, x: &ArrayView2<'_, T>, picks: &[usize]| {
                let w_p = w_blocks[p].get_or_init(|| ThinLhs::rows_of(w, &order[4 * blocks[p]..4 * blocks[p + 1]]));
                for (i, q) in own_first(p, parts).enumerate() {
                    ready(q);
                    let h_q = h[s % 2][q].read().expect("no job panicked");
                    let (ks, threads) = (blocks[q]..blocks[q + 1], parts == 1);
                    if i == 0 {
                        w_p.acc_onto(zm, x, picks, ks, &h_q.view(), threads);
                    } else {
                        w_p.acc(zm, ks, &h_q.view(), threads);
                    }
                }
            };
            // Written once the product has read the step before: every part of it is done,
            // so nobody reads this block of the buffer it overwrites.
            let h_out = || h[(s + 1) % 2][p].write().expect("no job panicked");
            let x = xp.index_axis(Axis(1), t);
            let next = if reverse { t.checked_sub(1) } else { Some(t + 1).filter(|&u| u < steps) };
            let next_x = next.map(|u| xp.index_axis(Axis(1), u));
            ForwardPart { x, next_x, order: &order[rows.clone()], bias: &bias[rows], z, c: &mut c, c_prev, tanh_c, out: out.view_mut() }
                .run(product, h_out);
        };
        run_rounds(steps, parts, &job);
    }
    drop(w_blocks);
    transpose_into(c.view(), out.index_axis_mut(Axis(0), steps));
    let mut inputs = vec![xproj, w_hh];
    inputs.extend(b_ih);
    inputs.extend(b_hh);
    inputs.extend([h0, c0]);
    let biases = (b_ih.is_some(), b_hh.is_some());
    Tensor::from_op_arc(out.into_dyn().into_shared(), &inputs, || Box::new(LstmRule { gates, c_prev, tanh_c, reverse, blocks, biases }))
}

/// An array for the caller to overwrite whole, its buffer from the pool (it goes back when
/// the rule that saves it is dropped): fresh memory costs a page fault per 4 KiB, and a
/// recycled buffer is not zeroed first.
fn pooled<T: Element>(shape: (usize, usize, usize)) -> Array3<T> {
    let buffer = crate::array::pool::take_overwritten::<T>(shape.0 * shape.1 * shape.2);
    Array3::from_shape_vec(shape, buffer).expect("len elements")
}

/// The hidden units split into contiguous blocks, one per thread, as bounds
/// `0 = u_0 < u_1 < … = H`: a step's gate product and arithmetic for a block of units
/// need only that block's rows of `W_hh`, so each thread runs one serial product and its
/// own gate arithmetic, one meeting of the threads per step ([`run_rounds`]; a threaded
/// product then a threaded elementwise pass are two, each waiting for the slowest thread).
fn unit_blocks(hs: usize, batch: usize) -> Vec<usize> {
    let threads = rayon::current_num_threads();
    let parts = if hs * batch >= PARALLEL_STEP_MIN { threads.min(hs).max(1) } else { 1 };
    (0..=parts).map(|p| p * hs / parts).collect()
}

/// The gate rows in the order the blocks use them: block by block, and in each its units'
/// rows of `i`, then `f`, `g`, `o`. Entry `r` is the row of `W_hh` (and of the gates in
/// PyTorch's order) that sits at row `r`, so each block's rows are contiguous.
fn gate_order(blocks: &[usize], hs: usize) -> Vec<usize> {
    blocks.windows(2).flat_map(|u| (0..4).flat_map(move |q| (u[0]..u[1]).map(move |k| q * hs + k))).collect()
}

/// `xs` cut into one piece per block, `scale` elements per unit.
fn cut<S: SplitSlice>(mut xs: S, blocks: &[usize], scale: usize) -> Vec<S> {
    let mut pieces = Vec::with_capacity(blocks.len() - 1);
    for units in blocks.windows(2) {
        let (piece, rest) = xs.cut((units[1] - units[0]) * scale);
        pieces.push(piece);
        xs = rest;
    }
    pieces
}

/// `view` cut along `axis` into one piece per block of units.
fn split_blocks<'a, T>(mut view: ArrayViewMut2<'a, T>, axis: Axis, blocks: &[usize]) -> Vec<ArrayViewMut2<'a, T>> {
    let mut pieces = Vec::with_capacity(blocks.len() - 1);
    for units in blocks.windows(2) {
        let (piece, rest) = view.split_at(axis, units[1] - units[0]);
        pieces.push(piece);
        view = rest;
    }
    pieces
}

/// One block of units' pieces of one time's saved arrays and output.
struct ForwardPiece<'a, T> {
    z: &'a mut [T],
    c_prev: &'a mut [T],
    tanh_c: &'a mut [T],
    out: ArrayViewMut2<'a, T>,
}

/// One block of units' share of a forward step: its gate rows of the input projection,
/// plus its rows of `W_hh` times the whole previous `hᵀ` (the caller's `product`), then its
/// gate arithmetic, and its columns of the step's output.
struct ForwardPart<'a, T> {
    /// The step's input projection `(4H, N)`, rows in PyTorch's order.
    x: ArrayView2<'a, T>,
    /// The next step's, whose rows this block will read: they are `N` elements each, `T·N`
    /// elements apart, so each is its own cache miss.
    next_x: Option<ArrayView2<'a, T>>,
    /// The rows of `x` (and of `W_hh`) this block uses, in its order.
    order: &'a [usize],
    bias: &'a [T],
    /// This block's pre-activation rows `(4·units, N)`, the saved gates once activated.
    z: &'a mut [T],
    /// This block's rows of `cᵀ`, updated in place.
    c: &'a mut [T],
    /// Where this block's `cᵀ` entering the step and `tanh` of the one leaving it are saved.
    c_prev: &'a mut [T],
    tanh_c: &'a mut [T],
    /// This block's columns `(N, units)` of the step's output.
    out: ArrayViewMut2<'a, T>,
}

impl<T: Element> ForwardPart<'_, T> {
    /// `product(z, x, order)` writes the rows `order` of `x` plus `W_hh hᵀ` to the
    /// pre-activation; `h_out()` gives the room for this block's rows of the new `hᵀ`.
    fn run<G: DerefMut<Target = Array2<T>>>(
        self,
        product: impl FnOnce(&mut ArrayViewMut2<'_, T>, &ArrayView2<'_, T>, &[usize]),
        h_out: impl FnOnce() -> G,
    ) {
        let ForwardPart { x, next_x, order, bias, z, c, c_prev, tanh_c, mut out } = self;
        let n = out.dim().0;
        // The thin kernel asks for the rows it reads a panel ahead; elsewhere they are copied
        // first, and asked for a step ahead.
        if let Some(next) = next_x.filter(|_| !ThinLhs::<T>::kernel_available()) {
            prefetch_rows(&next, order.iter().copied());
        }
        product(&mut ArrayViewMut2::from_shape((order.len(), n), &mut *z).expect("4·units rows"), &x, order);
        let (i, f, g, o) = quarters(z);
        let (bi, bf, bg, bo) = quarters(bias);
        let mut h = h_out();
        let h = h.as_slice_mut().expect("row-major");
        let mut step = ForwardStep { n, bias: [bi, bf, bg, bo], i, f, g, o, c, c_prev, tanh_c, h };
        run_widest(&mut step);
        let units = step.h.len() / n.max(1);
        transpose_into(ArrayView2::from_shape((units, n), &*step.h).expect("units rows"), out.view_mut());
    }
}

/// The parts in the order part `p` reads them: its own, then the next ones round.
fn own_first(p: usize, parts: usize) -> impl Iterator<Item = usize> {
    (0..parts).map(move |k| (p + k) % parts)
}

/// One block of units' share of a backward step: the cotangent of its rows of `hᵀ` (the
/// output's plus its rows of `W_hhᵀ` times the later step's whole `dzᵀ`, the caller's
/// `product`), then its gate arithmetic, and its rows of `dzᵀ` copied to their place in
/// PyTorch's order.
struct BackwardPart<'a, T> {
    /// This block's columns `(N, units)` of the output's cotangent at this step.
    gy: ArrayView2<'a, T>,
    /// Room for the cotangent of this block's rows of `hᵀ`.
    gh: &'a mut [T],
    /// The saved gates (this block's rows, in its order), `tanh c` and the entering `c`.
    gates: &'a [T],
    tanh_c: &'a [T],
    c_prev: &'a [T],
    /// The cotangent of this block's rows of `cᵀ`, updated in place to the step before's.
    gc: &'a mut [T],
    /// Where this block's rows of each gate's `dzᵀ` go.
    dz_out: Vec<ArrayViewMut2<'a, T>>,
}

impl<T: Element> BackwardPart<'_, T> {
    /// `product(gh)` adds `W_hhᵀ dzᵀ` of the later step to the cotangent of `hᵀ`;
    /// `dz_room()` gives the room for this block's rows of this step's `dzᵀ`.
    fn run<G: DerefMut<Target = Array2<T>>>(self, product: impl FnOnce(&mut ArrayViewMut2<'_, T>), dz_room: impl FnOnce() -> G) {
        let BackwardPart { gy, gh, gates, tanh_c, c_prev, gc, dz_out } = self;
        // dz_out's rows are `T·N` elements apart, each its own cache miss when overwritten
        // at the end: asked for now, they arrive while the product runs.
        for out in &dz_out {
            prefetch_rows(&out.view(), 0..out.nrows());
        }
        let (n, units) = gy.dim();
        let mut ghm = ArrayViewMut2::from_shape((units, n), &mut *gh).expect("units rows");
        transpose_into(gy, ghm.view_mut());
        product(&mut ghm);
        let mut dz = dz_room();
        let (di, df, dg, d_o) = quarters(dz.as_slice_mut().expect("row-major"));
        let (i, f, g, o) = quarters(gates);
        let mut step = BackwardStep { i, f, g, o, tanh_c, c_prev, gh, gc, di, df, dg, d_o };
        run_widest(&mut step);
        for (mut out, dz) in dz_out.into_iter().zip([&*step.di, &*step.df, &*step.dg, &*step.d_o]) {
            for (mut row, dz) in out.rows_mut().into_iter().zip(dz.chunks_exact(n)) {
                row.as_slice_mut().expect("contiguous rows").copy_from_slice(dz);
            }
        }
    }
}

/// The four gate blocks `i, f, g, o` of a transposed pre-activation `(4H, N)`.
fn quarters<S: SplitSlice>(z: S) -> (S, S, S, S) {
    let q = z.len() / 4;
    let (a, rest) = z.cut(q);
    let (b, rest) = rest.cut(q);
    let (c, d) = rest.cut(q);
    (a, b, c, d)
}

/// `split_at` for shared and exclusive slices alike.
trait SplitSlice: Sized {
    fn len(&self) -> usize;
    fn cut(self, at: usize) -> (Self, Self);
}

impl<T> SplitSlice for &[T] {
    fn len(&self) -> usize {
        <[T]>::len(self)
    }
    fn cut(self, at: usize) -> (Self, Self) {
        self.split_at(at)
    }
}

impl<T> SplitSlice for &mut [T] {
    fn len(&self) -> usize {
        <[T]>::len(self)
    }
    fn cut(self, at: usize) -> (Self, Self) {
        self.split_at_mut(at)
    }
}

struct LstmRule<T: Element> {
    gates: Array3<T>,
    c_prev: Array3<T>,
    tanh_c: Array3<T>,
    reverse: bool,
    /// The forward's blocks of units ([`unit_blocks`]), which fix the saved gates' row order.
    blocks: Vec<usize>,
    /// Whether `b_ih` and `b_hh` are inputs (after `xprojᵀ` and `w_hh`, in that order).
    biases: (bool, bool),
}

impl<T: Element> Drop for LstmRule<T> {
    fn drop(&mut self) {
        for saved in [&mut self.gates, &mut self.c_prev, &mut self.tanh_c] {
            let array = std::mem::replace(saved, Array3::zeros((0, 0, 0)));
            crate::array::pool::recycle(array.into_dyn().into_shared());
        }
    }
}

impl<T: Element> OpRule<T> for LstmRule<T> {
    fn name(&self) -> &'static str {
        "lstm"
    }

    fn backward(&self, inputs: &[Tensor<T>], output: &Tensor<T>, gy: &Tensor<T>) -> Vec<Option<Tensor<T>>> {
        if crate::autograd::is_grad_enabled() {
            return differentiable_backward(inputs, self.biases, self.reverse, gy);
        }
        let (xproj, w_hh) = (&inputs[0], &inputs[1]);
        let b_ih = self.biases.0.then(|| &inputs[2]);
        let b_hh = self.biases.1.then(|| &inputs[2 + usize::from(self.biases.0)]);
        let (h0, c0) = (&inputs[inputs.len() - 2], &inputs[inputs.len() - 1]);
        let (steps, hs, batch) = self.c_prev.dim();
        let (g4, cols) = (4 * hs, steps * batch);
        let blocks = &self.blocks;
        let gy = gy.value().into_dimensionality::<Ix3>().expect("internal: (T + 1, N, H)");
        let w_value = w_hh.value();
        let w = w_value.view().into_dimensionality::<Ix2>().expect("internal: (4H, H)");
        // Each block's rows of Wᵀ with its columns in the blocks' order (the rows of dzᵀ),
        // for the loop's products `Wᵀ dzᵀ`: gathered, as in the forward pass, by the thread
        // that runs the block's first step.
        let order = gate_order(blocks, hs);
        let w_t_blocks: Vec<OnceLock<ThinLhs<T>>> = blocks.windows(2).map(|_| OnceLock::new()).collect();
        // dzᵀ of every step side by side, (4H, T·N) with step t in columns t·N..(t+1)·N and
        // rows in PyTorch's order, so that the weight's gradient is one product with inner
        // dim T·N and the input projection's is this array itself.
        let mut dz = pooled((g4, steps, batch)).into_shape_with_order((g4, cols)).expect("T·N columns");
        let mut gc = gy.index_axis(Axis(0), steps).t().as_standard_layout().into_owned();
        {
            let parts = blocks.len() - 1;
            // dzᵀ of the last two steps by blocks (rows in the blocks' order): part p reads
            // every block of the later one, each once it is ready, and writes its own block
            // of the other.
            let dz_steps: [Vec<RwLock<Array2<T>>>; 2] =
                std::array::from_fn(|_| blocks.windows(2).map(|u| RwLock::new(Array2::zeros((4 * (u[1] - u[0]), batch)))).collect());
            let gc_parts: Vec<Mutex<&mut [T]>> =
                cut(gc.as_slice_mut().expect("row-major"), blocks, batch).into_iter().map(Mutex::new).collect();
            // Each part's room for the cotangent of its rows of hᵀ.
            let scratch: Vec<Mutex<Vec<T>>> = blocks.windows(2).map(|u| Mutex::new(vec![T::zero(); (u[1] - u[0]) * batch])).collect();
            // Each time's columns of dz, cut into the four gates' rows, then each gate's rows
            // into the blocks: block p gets its units' rows of every gate.
            let pieces: Vec<Vec<Mutex<Vec<ArrayViewMut2<'_, T>>>>> = dz
                .axis_chunks_iter_mut(Axis(1), batch.max(1))
                .map(|mut rest| {
                    let mut dz_out: Vec<Vec<ArrayViewMut2<'_, T>>> = blocks.windows(2).map(|_| Vec::with_capacity(4)).collect();
                    for _ in 0..4 {
                        let (gate, others) = rest.split_at(Axis(0), hs);
                        rest = others;
                        for (piece, out) in split_blocks(gate, Axis(0), blocks).into_iter().zip(&mut dz_out) {
                            out.push(piece);
                        }
                    }
                    dz_out.into_iter().map(Mutex::new).collect()
                })
                .collect();
            let job = |round: usize, p: usize, ready: &dyn Fn(usize)| {
                let s = steps - 1 - round;
                let t = if self.reverse { steps - 1 - s } else { s };
                // This block's cell-state cotangent from the later step.
                ready(p);
                let mut dz_out = std::mem::take(&mut *pieces[t][p].lock().expect("no job panicked"));
                let dz_out: Vec<ArrayViewMut2<'_, T>> = dz_out.iter_mut().map(|v| v.view_mut()).collect();
                let mut gc = gc_parts[p].lock().expect("no job panicked");
                let mut gh = scratch[p].lock().expect("no job panicked");
                let units = blocks[p]..blocks[p + 1];
                let at = |scale: usize| scale * units.start * batch..scale * units.end * batch;
                // `W_hhᵀ dzᵀ` by blocks of the later dz, this block's own first (none at the
                // last step).
                let product = |ghm: &mut ArrayViewMut2<'_, T>| {
                    if round == 0 {
                        return;
                    }
                    let w_t_p = w_t_blocks[p].get_or_init(|| ThinLhs::transposed_rows_of(w, &order, units.clone()));
                    for q in own_first(p, parts) {
                        ready(q);
                        let dz_q = dz_steps[(round + 1) % 2][q].read().expect("no job panicked");
                        w_t_p.acc(ghm, 4 * blocks[q]..4 * blocks[q + 1], &dz_q.view(), parts == 1);
                    }
                };
                // Written once the product has read the later step: every part of it is
                // done, so nobody reads this block of the buffer it overwrites.
                let dz_room = || dz_steps[round % 2][p].write().expect("no job panicked");
                BackwardPart {
                    gy: gy.index_axis(Axis(0), t).slice_move(s![.., units.clone()]),
                    gh: &mut gh,
                    gates: time_slice(&self.gates, t, at(4)),
                    tanh_c: time_slice(&self.tanh_c, t, at(1)),
                    c_prev: time_slice(&self.c_prev, t, at(1)),
                    gc: &mut gc,
                    dz_out,
                }
                .run(product, dz_room);
            };
            run_rounds(steps, parts, &job);
        }
        drop(w_t_blocks);
        let first = if self.reverse { steps - 1 } else { 0 };
        let out = output.value();
        let out = out.view().into_dimensionality::<Ix3>().expect("internal: (T + 1, N, H)");
        let h0v = h0.value();
        let h0v = h0v.view().into_dimensionality::<Ix2>().expect("internal: (N, H)");
        let dz_first = dz.slice(s![.., first * batch..(first + 1) * batch]);
        let gw = w_hh.requires_grad().then(|| {
            // The state entering step t is the output of step t - 1 (t + 1 in reverse),
            // except at the first step, where it is h0: one product over the other steps'
            // columns plus one over the first's.
            let (later, prev) = if self.reverse { (0..cols - batch, 1..steps) } else { (batch..cols, 0..steps - 1) };
            let prev = out.slice(s![prev, .., ..]);
            let prev = prev.to_shape(((steps - 1) * batch, hs)).expect("contiguous steps");
            let mut gw = gemm(&dz.slice(s![.., later]), &prev.view());
            gemm_acc(&mut gw.view_mut(), &dz_first, &h0v, true);
            Tensor::from(gw.into_dyn())
        });
        // Both biases are added to every step's pre-activation: each gets dz summed over T·N.
        let wants = |b: Option<&Tensor<T>>| b.is_some_and(Tensor::requires_grad);
        // A row of dz per gate unit (4H rows of T·N), summed in parallel.
        let gb = (wants(b_ih) || wants(b_hh)).then(|| {
            let rows = dz.nrows();
            let block = |b: usize| (b * 64..(b * 64 + 64).min(rows)).map(|r| dz.row(r).sum()).collect::<Vec<T>>();
            let sums: Vec<T> = crate::array::kernel::team::map_collect(rows.div_ceil(64), block).concat();
            Tensor::from(ndarray::Array1::from_vec(sums).into_dyn())
        });
        let (gb_ih, gb_hh) = (gb.clone().filter(|_| wants(b_ih)), gb.filter(|_| wants(b_hh)));
        let gh0 = h0.requires_grad().then(|| Tensor::from(gemm(&dz_first.t(), &w).into_dyn()));
        let gc0 = c0.requires_grad().then(|| Tensor::from(gc.t().as_standard_layout().into_owned().into_dyn()));
        let gx = xproj.requires_grad().then(|| Tensor::from(dz.into_shape_with_order((g4, steps, batch)).expect("T·N columns").into_dyn()));
        let mut grads = vec![gx, gw];
        if self.biases.0 {
            grads.push(gb_ih);
        }
        if self.biases.1 {
            grads.push(gb_hh);
        }
        grads.extend([gh0, gc0]);
        grads
    }
}

/// Elements `range` of time `t` of a saved `(T, ·, ·)` array.
fn time_slice<T>(a: &Array3<T>, t: usize, range: std::ops::Range<usize>) -> &[T] {
    &a.index_axis(Axis(0), t).to_slice().expect("row-major")[range]
}

/// Backward with recording on: the layer rebuilt from tensor ops and differentiated, so the
/// gradients are themselves differentiable. `inputs` as the fused op's.
fn differentiable_backward<T: Element>(
    inputs: &[Tensor<T>],
    biases: (bool, bool),
    reverse: bool,
    gy: &Tensor<T>,
) -> Vec<Option<Tensor<T>>> {
    let b_ih = biases.0.then(|| &inputs[2]);
    let b_hh = biases.1.then(|| &inputs[2 + usize::from(biases.0)]);
    let (h0, c0) = (&inputs[inputs.len() - 2], &inputs[inputs.len() - 1]);
    let y = lstm_composed(&inputs[0], &inputs[1], b_ih, b_hh, h0, c0, reverse).expect("internal: shapes checked by the fused forward");
    let wanted: Vec<&Tensor<T>> = inputs.iter().filter(|t| t.requires_grad()).collect();
    let mut grads = crate::grad(&[&y], &wanted, Some(&[gy]), true).expect("internal: the composed layer differentiates").into_iter();
    inputs.iter().map(|t| if t.requires_grad() { grads.next() } else { None }).collect()
}

/// [`lstm_sequence`] composed from tensor ops: the oracle of the fused op's tests and the
/// path of its higher-order gradients.
pub(crate) fn lstm_composed<T: Element>(
    xproj: &Tensor<T>,
    w_hh: &Tensor<T>,
    b_ih: Option<&Tensor<T>>,
    b_hh: Option<&Tensor<T>>,
    h0: &Tensor<T>,
    c0: &Tensor<T>,
    reverse: bool,
) -> crate::Result<Tensor<T>> {
    let (g4, steps, batch) = (xproj.shape()[0], xproj.shape()[1], xproj.shape()[2]);
    let hs = g4 / 4;
    let (mut h, mut c) = (h0.clone(), c0.clone());
    let mut outputs = vec![Tensor::<T>::zeros(&[0]); steps];
    for s in 0..steps {
        let t = if reverse { steps - 1 - s } else { s };
        let mut z = xproj.narrow(1, t, 1)?.reshape(&[g4 as isize, batch as isize])?.transpose(0, 1)?.add(&h.linear(w_hh, b_hh)?)?;
        if let Some(b) = b_ih {
            z = z.add(b)?;
        }
        let gate = |k: usize| z.narrow(1, k * hs, hs);
        let (i, f, g, o) = (gate(0)?.sigmoid(), gate(1)?.sigmoid(), gate(2)?.tanh(), gate(3)?.sigmoid());
        c = f.mul(&c)?.add(&i.mul(&g)?)?;
        h = o.mul(&c.tanh())?;
        outputs[t] = h.clone();
    }
    outputs.push(c);
    Tensor::stack(&outputs, 0)
}

/// Elements per step (units × batch) below which one thread does the whole step.
const PARALLEL_STEP_MIN: usize = 1 << 12;

/// One forward time step, transposed: each gate block `(H, N)` holds `W hᵀ + xᵀ` and
/// becomes the activated gate (its bias added per unit); the new `cᵀ` and `hᵀ` are written
/// in place, with the old `cᵀ` and `tanh cᵀ` saved.
struct ForwardStep<'a, T> {
    n: usize,
    bias: [&'a [T]; 4],
    i: &'a mut [T],
    f: &'a mut [T],
    g: &'a mut [T],
    o: &'a mut [T],
    c: &'a mut [T],
    c_prev: &'a mut [T],
    tanh_c: &'a mut [T],
    h: &'a mut [T],
}

impl<T: Element> Body for ForwardStep<'_, T> {
    #[inline(always)]
    fn run(&mut self) {
        // Short passes of at most four streams each: loops the compiler vectorises (one loop
        // over all the streams stays scalar, and the transcendental functions are then most
        // of an LSTM's time).
        let n = self.n;
        for (block, bias) in [(&mut *self.i, self.bias[0]), (&mut *self.f, self.bias[1]), (&mut *self.o, self.bias[3])] {
            for (row, &b) in block.chunks_exact_mut(n).zip(bias) {
                row.iter_mut().for_each(|v| *v = (*v + b).sigmoid_v());
            }
        }
        for (row, &b) in self.g.chunks_exact_mut(n).zip(self.bias[2]) {
            row.iter_mut().for_each(|v| *v = (*v + b).tanh_v());
        }
        self.c_prev.copy_from_slice(self.c);
        for (((c, &i), &f), &g) in self.c.iter_mut().zip(self.i.iter()).zip(self.f.iter()).zip(self.g.iter()) {
            *c = f * *c + i * g;
        }
        for (t, &c) in self.tanh_c.iter_mut().zip(self.c.iter()) {
            *t = c.tanh_v();
        }
        for ((h, &o), &t) in self.h.iter_mut().zip(self.o.iter()).zip(self.tanh_c.iter()) {
            *h = o * t;
        }
    }
}

/// One backward time step, transposed: from the cotangent of `hᵀ` (`gh`) and of `cᵀ`
/// (`gc`, updated in place to the previous step's) to the gate pre-activations' (`d*`).
struct BackwardStep<'a, T> {
    i: &'a [T],
    f: &'a [T],
    g: &'a [T],
    o: &'a [T],
    tanh_c: &'a [T],
    c_prev: &'a [T],
    gh: &'a [T],
    gc: &'a mut [T],
    di: &'a mut [T],
    df: &'a mut [T],
    dg: &'a mut [T],
    d_o: &'a mut [T],
}

impl<T: Element> Body for BackwardStep<'_, T> {
    #[inline(always)]
    fn run(&mut self) {
        let one = T::one();
        let gates = self.i.iter().zip(self.f).zip(self.g).zip(self.o);
        let outs = self.di.iter_mut().zip(self.df.iter_mut()).zip(self.dg.iter_mut()).zip(self.d_o.iter_mut());
        let state = self.tanh_c.iter().zip(self.c_prev).zip(self.gh).zip(self.gc.iter_mut());
        for ((((&i, &f), &g), &o), ((((di, df), dg), d_o), (((&tc, &c_prev), &gh), gc))) in gates.zip(outs.zip(state)) {
            let gcc = *gc + gh * o * (one - tc * tc);
            *di = gcc * g * i * (one - i);
            *df = gcc * c_prev * f * (one - f);
            *dg = gcc * i * (one - g * g);
            *d_o = gh * tc * o * (one - o);
            *gc = gcc * f;
        }
    }
}

/// This family's entries in the [op registry](super::registry()).
pub(crate) const OPS: &[OpInfo] = &[
    // Input, h0 and c0 vary; the weights are inputs too, fixed here by seed (the module's
    // tests check that they receive gradients).
    OpInfo::new(
        "lstm",
        || vec![randn(&[5, 2, 3], 25), randn(&[1, 2, 4], 26), randn(&[1, 2, 4], 27)],
        |v| {
            let lstm = crate::nn::Lstm::<f64>::new(3, 4, &mut crate::rng(24));
            let out = lstm.forward_with_state(&v[0], Some((&v[1], Some(&v[2]))))?;
            let c_n = out.c_n.expect("an LSTM returns its cell state");
            Tensor::cat(&[out.output.reshape(&[-1])?, c_n.reshape(&[-1])?], 0)
        },
    ),
];

#[cfg(test)]
mod tests {
    use super::*;

    fn close(a: &Tensor<f64>, b: &Tensor<f64>) -> f64 {
        a.sub(b).unwrap().abs().amax().item().unwrap()
    }

    #[test]
    fn the_fused_layer_equals_its_composition_in_value_and_gradient() {
        // Each bias present or not; the last two shapes are large enough for a step to be
        // split across the threads of the pool they run in (the last into three blocks of
        // 85 or 86 units).
        let cases = [
            (false, (true, true), (5, 3, 4)),
            (true, (true, true), (5, 3, 4)),
            (false, (false, true), (5, 3, 4)),
            (true, (true, false), (1, 3, 4)),
            (false, (false, false), (5, 3, 4)),
            (true, (true, true), (3, 8, 512)),
            (false, (true, true), (4, 16, 257)),
        ];
        for (k, (reverse, (with_ih, with_hh), (t, n, h))) in cases.into_iter().enumerate() {
            let threads = [1, 1, 1, 1, 1, 2, 3][k];
            let pool = rayon::ThreadPoolBuilder::new().num_threads(threads).build().unwrap();
            assert_eq!(pool.install(|| unit_blocks(h, n).len() - 1), threads, "case {k} runs in {threads} blocks");
            let mut rng = crate::rng(11);
            let xproj = Tensor::<f64>::randn(&[4 * h, t, n], &mut rng).with_requires_grad(true);
            let w = Tensor::<f64>::randn(&[4 * h, h], &mut rng).mul_scalar(0.5).with_requires_grad(true);
            let b_ih = Tensor::<f64>::randn(&[4 * h], &mut rng).with_requires_grad(true);
            let b_hh = Tensor::<f64>::randn(&[4 * h], &mut rng).with_requires_grad(true);
            let h0 = Tensor::<f64>::randn(&[n, h], &mut rng).with_requires_grad(true);
            let c0 = Tensor::<f64>::randn(&[n, h], &mut rng).with_requires_grad(true);
            let (b_ih, b_hh) = (with_ih.then_some(&b_ih), with_hh.then_some(&b_hh));
            let fused = pool.install(|| lstm_sequence(&xproj, &w, b_ih, b_hh, &h0, &c0, reverse));
            let composed = lstm_composed(&xproj, &w, b_ih, b_hh, &h0, &c0, reverse).unwrap();
            let case = format!("reverse {reverse}, biases {with_ih} {with_hh}, T {t}");
            // The fused product sums over the state by blocks (one per thread), the
            // composed one in a single pass: rounding differs by a few ulp of each of the
            // H terms (2e-14 seen at H = 512).
            assert!(close(&fused, &composed) < 1e-13, "values, {case}: {}", close(&fused, &composed));
            let cot = Tensor::<f64>::randn(&[t + 1, n, h], &mut rng);
            let mut wrt = vec![&xproj, &w];
            wrt.extend(b_ih);
            wrt.extend(b_hh);
            wrt.extend([&h0, &c0]);
            let gf = pool.install(|| crate::grad(&[&fused], &wrt, Some(&[&cot]), false)).unwrap();
            let gc = crate::grad(&[&composed], &wrt, Some(&[&cot]), false).unwrap();
            for (k, (a, b)) in gf.iter().zip(&gc).enumerate() {
                // Relative: the weight's gradient sums T·N products, in another order here.
                let scale = 1.0 + b.abs().amax().item().unwrap();
                assert!(close(a, b) < 1e-13 * scale, "gradient {k}, {case}: {}", close(a, b));
            }
        }
    }

    #[test]
    fn the_f32_layer_equals_the_f64_composition() {
        // f32 takes the packed thin kernel for the step products where the CPU has it (the
        // batch a multiple of 8); on one, two and three threads.
        for (k, (t, n, h)) in [(5, 8, 12), (3, 8, 512), (4, 16, 257)].into_iter().enumerate() {
            let pool = rayon::ThreadPoolBuilder::new().num_threads(k + 1).build().unwrap();
            let mut rng = crate::rng(12);
            let xproj = Tensor::<f64>::randn(&[4 * h, t, n], &mut rng).with_requires_grad(true);
            let w = Tensor::<f64>::randn(&[4 * h, h], &mut rng).mul_scalar(0.5 / (h as f64).sqrt()).with_requires_grad(true);
            let b = Tensor::<f64>::randn(&[4 * h], &mut rng);
            let h0 = Tensor::<f64>::randn(&[n, h], &mut rng);
            let c0 = Tensor::<f64>::randn(&[n, h], &mut rng);
            let composed = lstm_composed(&xproj, &w, Some(&b), None, &h0, &c0, false).unwrap();
            let [xproj32, w32, b32, h032, c032] = [&xproj, &w, &b, &h0, &c0].map(|x| x.cast::<f32>().with_requires_grad(x.requires_grad()));
            let fused = pool.install(|| lstm_sequence(&xproj32, &w32, Some(&b32), None, &h032, &c032, false));
            assert!(close(&fused.cast(), &composed) < 1e-5, "values, T {t} N {n} H {h}: {}", close(&fused.cast(), &composed));
            let cot = Tensor::<f64>::randn(&[t + 1, n, h], &mut rng);
            let gf = pool.install(|| crate::grad(&[&fused], &[&xproj32, &w32], Some(&[&cot.cast()]), false)).unwrap();
            let gc = crate::grad(&[&composed], &[&xproj, &w], Some(&[&cot]), false).unwrap();
            for (a, b) in gf.iter().zip(&gc) {
                let scale = 1.0 + b.abs().amax().item().unwrap();
                assert!(close(&a.cast(), b) < 1e-5 * scale, "gradient, T {t} N {n} H {h}: {}", close(&a.cast(), b));
            }
        }
    }
}
