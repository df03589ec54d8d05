//! Fused elementwise chains: [`fuse`] runs an expression of elementwise ops over its
//! inputs as one pass over memory, forward and backward, and stays differentiable to any
//! order.
//!
//! # Design
//!
//! A chain such as `tanh(x)·σ(x) + x` run op by op reads and writes a full-size array per
//! op: four passes over memory here, each writing a temporary the next reads back. Eager
//! PyTorch does the same. [`fuse`] takes the chain instead as an [`Expr`], a small
//! expression tree built by a closure from symbolic inputs, and:
//!
//! - **forward**: compiles the tree into a list of instructions over slots (common
//!   subexpressions once, constants folded), then evaluates it block by block: each block of
//!   a few hundred elements goes through every instruction while its slots sit in the L1
//!   cache, so memory sees one read of each input and one write of the output. The blocks
//!   are split across threads and compiled for the widest vector extension the CPU has, as
//!   the crate's other elementwise loops are;
//! - **backward**: differentiates the tree symbolically (reverse mode over the tree, with
//!   the cotangent as one more input), which gives one expression per input, `gxᵢ = gy ·
//!   ∂f/∂xᵢ`; each is itself run by [`fuse`], so a gradient is one pass per input that
//!   needs one, and, recorded as a fused op in turn, has gradients of every order.
//!
//! # Trade-offs
//!
//! - It is explicit: the user writes `fuse([&x], |[x]| ...)`, and nothing else fuses. A
//!   lazy engine that held every elementwise result until something read it would fuse
//!   without asking, but every op would then pay for the bookkeeping, every error would
//!   surface away from its cause, and a reader could no longer tell from the code when an
//!   array is computed.
//! - Backward recomputes the chain's intermediate values (`tanh x`, `σ(x)`) from the inputs
//!   instead of keeping them: the graph keeps only the inputs, at the price of evaluating
//!   the chain's functions again.
//! - An input broadcast along some dims but not all is expanded to the output's shape
//!   first, one more pass; a single-element input is read as a scalar, at no cost.
//! - Inside an expression there are only elementwise ops: reductions, matrix products and
//!   indexing end a chain.
//!
//! The unfused ops are the oracle: the tests run every expression both ways, values and
//! gradients to second order, and gradcheck the fused op in f64.

use super::registry::{OpInfo, positive, randn, spread};
use crate::array::kernel::{self, Loop};
use crate::autograd::OpRule;
use crate::error::{Error, Result};
use crate::tensor::{Element, Saves, Tensor};
use ndarray::{ArrayD, IxDyn};
use std::collections::HashMap;
use std::fmt;
use std::mem::MaybeUninit;
use std::sync::Arc;

/// A symbolic elementwise expression over the inputs of [`fuse`]: built with the usual
/// arithmetic operators (between expressions and with `f64` constants) and the methods
/// below, then run as one pass by [`fuse`]. Cloning shares the subtree, and a shared
/// subtree is evaluated once.
///
/// ```
/// use nabla::prelude::*;
/// let x = Tensor::<f64>::from_vec(vec![0.5, -1.0], &[2])?;
/// let y = nabla::fuse([&x], |[x]| x.tanh() * x.sigmoid() + x)?;
/// let expect = &(&x.tanh() * &x.sigmoid()) + &x;
/// assert_eq!(y.to_vec(), expect.to_vec());
/// # Ok::<(), nabla::Error>(())
/// ```
#[derive(Clone)]
pub struct Expr(Arc<Node>);

enum Node {
    Input(usize),
    Const(f64),
    Unary(Un, Expr),
    Binary(Bin, Expr, Expr),
}

/// The one-argument functions an [`Expr`] applies, with the crate's and PyTorch's
/// semantics (the same scalar functions as the unfused ops).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
enum Un {
    Neg,
    Exp,
    Log,
    Tanh,
    Sigmoid,
    Sqrt,
    Recip,
    Relu,
    Abs,
    Sin,
    Cos,
    /// `1[x > 0]`: relu's derivative (a NaN passes, as PyTorch's threshold_backward).
    Step,
    /// `sign(x)` with `sign(0) = 0`: abs's derivative.
    Sign,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
enum Bin {
    Add,
    Sub,
    Mul,
    Div,
}

impl Un {
    #[inline(always)]
    fn apply<T: Element>(self, x: T) -> T {
        match self {
            Un::Neg => -x,
            Un::Exp => x.exp_v(),
            Un::Log => x.ln(),
            Un::Tanh => x.tanh_v(),
            Un::Sigmoid => x.sigmoid_v(),
            Un::Sqrt => x.sqrt(),
            Un::Recip => x.recip(),
            Un::Relu => super::unary::relu_scalar(x),
            Un::Abs => x.abs(),
            Un::Sin => x.sin(),
            Un::Cos => x.cos(),
            Un::Step => super::unary::step(x),
            Un::Sign => super::unary::sign(x),
        }
    }

    /// The unfused op, for the tests' oracle.
    #[cfg(test)]
    fn tensor<T: Element>(self, x: &Tensor<T>) -> Tensor<T> {
        match self {
            Un::Neg => x.neg(),
            Un::Exp => x.exp(),
            Un::Log => x.log(),
            Un::Tanh => x.tanh(),
            Un::Sigmoid => x.sigmoid(),
            Un::Sqrt => x.sqrt(),
            Un::Recip => x.recip(),
            Un::Relu => x.relu(),
            Un::Abs => x.abs(),
            Un::Sin => x.sin(),
            Un::Cos => x.cos(),
            Un::Step => x.constant_map(super::unary::step),
            Un::Sign => x.constant_map(super::unary::sign),
        }
    }
}

impl Bin {
    #[inline(always)]
    fn apply<T: Element>(self, a: T, b: T) -> T {
        match self {
            Bin::Add => a + b,
            Bin::Sub => a - b,
            Bin::Mul => a * b,
            Bin::Div => a / b,
        }
    }
}

impl Expr {
    fn node(node: Node) -> Expr {
        Expr(Arc::new(node))
    }

    fn unary(&self, op: Un) -> Expr {
        Expr::node(Node::Unary(op, self.clone()))
    }

    /// A constant, broadcast to the output's shape.
    pub fn constant(value: f64) -> Expr {
        Expr::node(Node::Const(value))
    }

    /// `eˣ`, as [`Tensor::exp`].
    pub fn exp(&self) -> Expr {
        self.unary(Un::Exp)
    }

    /// `ln x`, as [`Tensor::log`].
    pub fn log(&self) -> Expr {
        self.unary(Un::Log)
    }

    /// `tanh x`, as [`Tensor::tanh`].
    pub fn tanh(&self) -> Expr {
        self.unary(Un::Tanh)
    }

    /// `σ(x) = 1 / (1 + e⁻ˣ)`, as [`Tensor::sigmoid`].
    pub fn sigmoid(&self) -> Expr {
        self.unary(Un::Sigmoid)
    }

    /// `√x`, as [`Tensor::sqrt`].
    pub fn sqrt(&self) -> Expr {
        self.unary(Un::Sqrt)
    }

    /// `1 / x`, as [`Tensor::recip`].
    pub fn recip(&self) -> Expr {
        self.unary(Un::Recip)
    }

    /// `max(0, x)`, as [`Tensor::relu`] (derivative 0 at 0).
    pub fn relu(&self) -> Expr {
        self.unary(Un::Relu)
    }

    /// `|x|`, as [`Tensor::abs`] (derivative 0 at 0).
    pub fn abs(&self) -> Expr {
        self.unary(Un::Abs)
    }

    /// `sin x`, as [`Tensor::sin`].
    pub fn sin(&self) -> Expr {
        self.unary(Un::Sin)
    }

    /// `cos x`, as [`Tensor::cos`].
    pub fn cos(&self) -> Expr {
        self.unary(Un::Cos)
    }

    /// `x²`.
    pub fn square(&self) -> Expr {
        self.clone() * self.clone()
    }

    fn key(&self) -> *const Node {
        Arc::as_ptr(&self.0)
    }
}

impl fmt::Debug for Expr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &*self.0 {
            Node::Input(i) => write!(f, "x{i}"),
            Node::Const(c) => write!(f, "{c}"),
            Node::Unary(op, a) => write!(f, "{op:?}({a:?})"),
            Node::Binary(op, a, b) => write!(f, "{op:?}({a:?}, {b:?})"),
        }
    }
}

macro_rules! binary_operator {
    ($trait:ident, $method:ident, $op:expr) => {
        impl std::ops::$trait<Expr> for Expr {
            type Output = Expr;
            fn $method(self, rhs: Expr) -> Expr {
                Expr::node(Node::Binary($op, self, rhs))
            }
        }
        impl std::ops::$trait<&Expr> for &Expr {
            type Output = Expr;
            fn $method(self, rhs: &Expr) -> Expr {
                Expr::node(Node::Binary($op, self.clone(), rhs.clone()))
            }
        }
        impl std::ops::$trait<f64> for Expr {
            type Output = Expr;
            fn $method(self, rhs: f64) -> Expr {
                Expr::node(Node::Binary($op, self, Expr::constant(rhs)))
            }
        }
        impl std::ops::$trait<Expr> for f64 {
            type Output = Expr;
            fn $method(self, rhs: Expr) -> Expr {
                Expr::node(Node::Binary($op, Expr::constant(self), rhs))
            }
        }
    };
}

binary_operator!(Add, add, Bin::Add);
binary_operator!(Sub, sub, Bin::Sub);
binary_operator!(Mul, mul, Bin::Mul);
binary_operator!(Div, div, Bin::Div);

impl std::ops::Neg for Expr {
    type Output = Expr;
    fn neg(self) -> Expr {
        self.unary(Un::Neg)
    }
}

impl std::ops::Neg for &Expr {
    type Output = Expr;
    fn neg(self) -> Expr {
        self.unary(Un::Neg)
    }
}

/// The nodes under `root`, each once, children before parents.
fn postorder(root: &Expr) -> Vec<Expr> {
    fn visit(e: &Expr, seen: &mut std::collections::HashSet<*const Node>, out: &mut Vec<Expr>) {
        if !seen.insert(e.key()) {
            return;
        }
        match &*e.0 {
            Node::Input(_) | Node::Const(_) => {}
            Node::Unary(_, a) => visit(a, seen, out),
            Node::Binary(_, a, b) => {
                visit(a, seen, out);
                visit(b, seen, out);
            }
        }
        out.push(e.clone());
    }
    let mut out = Vec::new();
    visit(root, &mut std::collections::HashSet::new(), &mut out);
    out
}

/// `gy · ∂f/∂xᵢ` for each of `n` inputs, as expressions over the inputs and the cotangent
/// `gy` (input `n`); `None` where `f` does not depend on `xᵢ` (or only through a step).
fn gradients(f: &Expr, n: usize) -> Vec<Option<Expr>> {
    let order = postorder(f);
    let mut adjoint: HashMap<*const Node, Expr> = HashMap::new();
    adjoint.insert(f.key(), Expr::node(Node::Input(n)));
    let mut grads = vec![None; n];
    let add = |adjoint: &mut HashMap<*const Node, Expr>, e: &Expr, g: Expr| {
        let sum = match adjoint.remove(&e.key()) {
            Some(before) => before + g,
            None => g,
        };
        adjoint.insert(e.key(), sum);
    };
    for e in order.iter().rev() {
        let Some(g) = adjoint.get(&e.key()).cloned() else { continue };
        match &*e.0 {
            Node::Input(i) => grads[*i] = Some(g),
            Node::Const(_) => {}
            Node::Unary(op, a) => {
                let y = e;
                let contribution = match op {
                    Un::Neg => Some(-g),
                    Un::Exp => Some(g * y.clone()),
                    Un::Log => Some(g / a.clone()),
                    Un::Tanh => Some(g * (1.0 - y * y)),
                    Un::Sigmoid => Some(g * (y * &(1.0 - y.clone()))),
                    Un::Sqrt => Some(g * 0.5 / y.clone()),
                    Un::Recip => Some(-(g * (y * y))),
                    Un::Relu => Some(g * a.unary(Un::Step)),
                    Un::Abs => Some(g * a.unary(Un::Sign)),
                    Un::Sin => Some(g * a.cos()),
                    Un::Cos => Some(-(g * a.sin())),
                    // Zero almost everywhere, as the unfused ops' constant masks.
                    Un::Step | Un::Sign => None,
                };
                if let Some(c) = contribution {
                    add(&mut adjoint, a, c);
                }
            }
            Node::Binary(op, a, b) => {
                let (ga, gb) = match op {
                    Bin::Add => (g.clone(), g),
                    Bin::Sub => (g.clone(), -g),
                    Bin::Mul => (&g * b, g * a.clone()),
                    // d(a/b)/db = -(a/b)/b: the output itself, already computed.
                    Bin::Div => (&g / b, -(g * e.clone() / b.clone())),
                };
                add(&mut adjoint, a, ga);
                add(&mut adjoint, b, gb);
            }
        }
    }
    grads
}

/// Where an instruction reads an operand: an input, a constant, or an earlier slot.
#[derive(Clone, Copy, Debug)]
enum Operand<T> {
    Input(usize),
    Const(T),
    Slot(usize),
}

#[derive(Clone, Copy, Debug)]
enum Instr<T> {
    Unary(Un, Operand<T>),
    Binary(Bin, Operand<T>, Operand<T>),
}

/// An expression compiled for evaluation: instruction `i` writes slot `i`; the result is
/// `out`.
struct Program<T> {
    instrs: Vec<Instr<T>>,
    out: Operand<T>,
}

impl<T: Element> Program<T> {
    fn compile(root: &Expr) -> Self {
        let mut at: HashMap<*const Node, Operand<T>> = HashMap::new();
        let mut instrs = Vec::new();
        for e in postorder(root) {
            let operand = match &*e.0 {
                Node::Input(i) => Operand::Input(*i),
                Node::Const(c) => Operand::Const(T::of(*c)),
                Node::Unary(op, a) => match at[&a.key()] {
                    Operand::Const(c) => Operand::Const(op.apply(c)),
                    a => {
                        instrs.push(Instr::Unary(*op, a));
                        Operand::Slot(instrs.len() - 1)
                    }
                },
                Node::Binary(op, a, b) => match (at[&a.key()], at[&b.key()]) {
                    (Operand::Const(a), Operand::Const(b)) => Operand::Const(op.apply(a, b)),
                    (a, b) => {
                        instrs.push(Instr::Binary(*op, a, b));
                        Operand::Slot(instrs.len() - 1)
                    }
                },
            };
            at.insert(e.key(), operand);
        }
        Program { out: at[&root.key()], instrs }
    }
}

/// An input as the evaluation reads it: every element, or one value for all.
#[derive(Clone, Copy)]
enum Source<'a, T> {
    Full(&'a [T]),
    Scalar(T),
}

/// The elements a block reads for one operand.
#[derive(Clone, Copy)]
enum Lanes<'a, T> {
    Slice(&'a [T]),
    Splat(T),
}

/// Elements per block: every slot of a block (a few KiB each) stays in the L1 cache.
const BLOCK: usize = 256;

/// The program as a [`Loop`] over its inputs.
struct Eval<'a, T> {
    program: &'a Program<T>,
    inputs: &'a [Source<'a, T>],
}

#[inline(always)]
fn unary_into<T: Element>(op: Un, a: Lanes<'_, T>, out: &mut [T]) {
    // One loop per function, so that each is a straight vector loop.
    macro_rules! each {
        ($($op:ident),*) => {
            match (op, a) {
                $((Un::$op, Lanes::Slice(a)) => out.iter_mut().zip(a).for_each(|(o, &x)| *o = Un::$op.apply(x)),)*
                (op, Lanes::Splat(a)) => out.fill(op.apply(a)),
            }
        };
    }
    each!(Neg, Exp, Log, Tanh, Sigmoid, Sqrt, Recip, Relu, Abs, Sin, Cos, Step, Sign)
}

#[inline(always)]
fn binary_into<T: Element>(op: Bin, a: Lanes<'_, T>, b: Lanes<'_, T>, out: &mut [T]) {
    macro_rules! each {
        ($($op:ident),*) => {
            match (op, a, b) {
                $(
                    (Bin::$op, Lanes::Slice(a), Lanes::Slice(b)) => {
                        out.iter_mut().zip(a).zip(b).for_each(|((o, &a), &b)| *o = Bin::$op.apply(a, b))
                    }
                    (Bin::$op, Lanes::Slice(a), Lanes::Splat(b)) => out.iter_mut().zip(a).for_each(|(o, &a)| *o = Bin::$op.apply(a, b)),
                    (Bin::$op, Lanes::Splat(a), Lanes::Slice(b)) => out.iter_mut().zip(b).for_each(|(o, &b)| *o = Bin::$op.apply(a, b)),
                )*
                (op, Lanes::Splat(a), Lanes::Splat(b)) => out.fill(op.apply(a, b)),
            }
        };
    }
    each!(Add, Sub, Mul, Div)
}

impl<T: Element> Eval<'_, T> {
    /// Elements `from..from + len` of an operand: an input's, a constant, or a slot of the
    /// block's `scratch` (slot `s` at `s·BLOCK`).
    #[inline(always)]
    fn lanes<'s>(&'s self, o: Operand<T>, from: usize, len: usize, scratch: &'s [T]) -> Lanes<'s, T> {
        match o {
            Operand::Input(k) => match self.inputs[k] {
                Source::Full(xs) => Lanes::Slice(&xs[from..from + len]),
                Source::Scalar(v) => Lanes::Splat(v),
            },
            Operand::Const(c) => Lanes::Splat(c),
            Operand::Slot(s) => Lanes::Slice(&scratch[s * BLOCK..s * BLOCK + len]),
        }
    }
}

impl<T: Element> Loop<T> for Eval<'_, T> {
    #[inline(always)]
    fn fill(&self, start: usize, out: &mut [MaybeUninit<T>]) {
        let slots = self.program.instrs.len();
        let mut scratch = vec![T::zero(); slots * BLOCK];
        for (b, out) in out.chunks_mut(BLOCK).enumerate() {
            let (from, len) = (start + b * BLOCK, out.len());
            for i in 0..slots {
                let (done, rest) = scratch.split_at_mut(i * BLOCK);
                let lanes = |o| self.lanes(o, from, len, done);
                let dst = &mut rest[..len];
                match self.program.instrs[i] {
                    Instr::Unary(op, a) => unary_into(op, lanes(a), dst),
                    Instr::Binary(op, a, b) => binary_into(op, lanes(a), lanes(b), dst),
                }
            }
            let result = self.lanes(self.program.out, from, len, &scratch);
            match result {
                Lanes::Slice(r) => out.iter_mut().zip(r).for_each(|(o, &v)| {
                    o.write(v);
                }),
                Lanes::Splat(v) => out.iter_mut().for_each(|o| {
                    o.write(v);
                }),
            }
        }
    }
}

/// Runs `f` over `inputs`, broadcast together, as one pass; records the fused op.
fn run<T: Element>(inputs: &[&Tensor<T>], f: &Expr) -> Result<Tensor<T>> {
    let mut shape: Vec<usize> = Vec::new();
    for x in inputs {
        shape = super::broadcast_shape("fuse", &shape, x.shape())?;
    }
    let len: usize = shape.iter().product();
    let values: Vec<_> = inputs.iter().map(|x| x.value()).collect();
    // Full-shape inputs are read in place; others are expanded (or read as one value).
    let expanded: Vec<Option<ArrayD<T>>> = values
        .iter()
        .map(|v| {
            let in_place = v.shape() == shape.as_slice() && v.as_slice().is_some();
            (!in_place && v.len() != 1)
                .then(|| v.broadcast(IxDyn(&shape)).expect("broadcastable (checked)").as_standard_layout().into_owned())
        })
        .collect();
    let sources: Vec<Source<'_, T>> = values
        .iter()
        .zip(&expanded)
        .map(|(v, e)| match e {
            Some(e) => Source::Full(e.as_slice().expect("standard layout")),
            None if v.shape() == shape.as_slice() => Source::Full(v.as_slice().expect("contiguous (checked)")),
            None => Source::Scalar(*v.iter().next().expect("one element")),
        })
        .collect();
    let program = Program::<T>::compile(f);
    let value = kernel::run_loop(len, &shape, &Eval { program: &program, inputs: &sources });
    let saves = if inputs.len() <= 64 { Saves::inputs(&(0..inputs.len()).collect::<Vec<_>>()) } else { Saves::ALL };
    Ok(Tensor::from_op_saving(value.into_shared(), inputs, saves, || Box::new(FusedRule { grads: gradients(f, inputs.len()) })))
}

/// The backward of a fused op: the symbolic gradients, each run by [`fuse`] again.
struct FusedRule {
    grads: Vec<Option<Expr>>,
}

impl<T: Element> OpRule<T> for FusedRule {
    fn name(&self) -> &'static str {
        "fused"
    }

    fn backward(&self, inputs: &[Tensor<T>], _y: &Tensor<T>, gy: &Tensor<T>) -> Vec<Option<Tensor<T>>> {
        let mut operands: Vec<&Tensor<T>> = inputs.iter().collect();
        operands.push(gy);
        self.grads
            .iter()
            .map(|g| g.as_ref().map(|g| run(&operands, g).expect("the inputs and the cotangent broadcast as in the forward pass")))
            .collect()
    }
}

/// Runs the elementwise expression `f` of `N` tensors as one fused op: one pass over
/// memory forward, one per input's gradient backward, differentiable to any order (see
/// the [module docs](self) for the design and its trade-offs).
///
/// `f` receives one symbolic [`Expr`] per input and returns the output's expression; the
/// inputs broadcast together as in any binary op, and the output has the broadcast shape.
/// Each op computes the same scalar function as its unfused [`Tensor`] method, so the
/// values are those of the ops run one by one.
///
/// # Errors
/// An error naming `fuse` and the shapes when the inputs do not broadcast together, or
/// the input when the expression reads one past the `N` given (an [`Expr`] built for
/// another call).
///
/// ```
/// use nabla::prelude::*;
/// let x = Tensor::<f64>::from_vec(vec![0.5, -1.0, 2.0], &[3])?.requires_grad_(true)?;
/// let b = Tensor::<f64>::scalar(0.25);
/// // y = tanh(x)·σ(x) + x + b, one op in the graph.
/// let y = nabla::fuse([&x, &b], |[x, b]| x.tanh() * x.sigmoid() + x + b)?;
/// let gx = nabla::grad(&[&y.sum()], &[&x], None, false)?;
/// let unfused = nabla::grad(&[&(&(&(&x.tanh() * &x.sigmoid()) + &x) + &b).sum()], &[&x], None, false)?;
/// assert!(gx[0].to_vec().iter().zip(unfused[0].to_vec()).all(|(a, b)| (a - b).abs() < 1e-15));
/// # Ok::<(), nabla::Error>(())
/// ```
pub fn fuse<T: Element, const N: usize>(inputs: [&Tensor<T>; N], f: impl FnOnce([Expr; N]) -> Expr) -> Result<Tensor<T>> {
    let symbols: [Expr; N] = std::array::from_fn(|i| Expr::node(Node::Input(i)));
    let expr = f(symbols);
    if let Some(bad) = postorder(&expr).iter().find_map(|e| match &*e.0 {
        Node::Input(i) if *i >= N => Some(*i),
        _ => None,
    }) {
        return Err(Error::invalid("fuse", format!("the expression reads input {bad} of {N}")));
    }
    run(&inputs, &expr)
}

/// Every function and operator of [`Expr`] in one expression, with broadcasting and a
/// scalar input (gradchecked to second order by the registry's tests); `z` keeps relu and
/// abs away from their kinks.
pub(crate) const OPS: &[OpInfo] = &[OpInfo::new(
    "fused",
    || vec![randn(&[3, 4], 61), positive(&[4], 62), randn(&[1], 63), spread(&[3, 4], 64)],
    |v| {
        fuse([&v[0], &v[1], &v[2], &v[3]], |[x, p, s, z]| {
            x.tanh() * x.sigmoid() + x.exp() / (p.clone() + 1.0) - p.log() * s.clone() + p.sqrt() * x.sin()
                - (x.cos() * x.cos() * s.clone() * s + 1.0).recip()
                + (z.relu() * 2.0 - z.abs() * z.clone() + 3.0 / (z.square() + 1.0) - -z)
        })
    },
)];

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tensor::Creation;

    /// The expression run op by op: the oracle.
    fn unfused<T: Element>(e: &Expr, inputs: &[&Tensor<T>]) -> Tensor<T> {
        match &*e.0 {
            Node::Input(i) => inputs[*i].clone(),
            Node::Const(c) => <Tensor<T> as crate::tensor::Creation<T>>::scalar(T::of(*c)),
            Node::Unary(op, a) => op.tensor(&unfused(a, inputs)),
            Node::Binary(op, a, b) => {
                let (a, b) = (unfused(a, inputs), unfused(b, inputs));
                match op {
                    Bin::Add => &a + &b,
                    Bin::Sub => &a - &b,
                    Bin::Mul => &a * &b,
                    Bin::Div => &a / &b,
                }
            }
        }
    }

    fn two_threads<R: Send>(f: impl FnOnce() -> R + Send) -> R {
        rayon::ThreadPoolBuilder::new().num_threads(2).build().expect("a pool").install(f)
    }

    /// `f` fused and op by op: values, then gradients of `Σ w·y` to second order, equal
    /// within `tol` (relative to 1 + |value|).
    fn same_both_ways<T: Element, const N: usize>(inputs: [&Tensor<T>; N], f: impl Fn([Expr; N]) -> Expr, tol: f64) {
        let xs: Vec<Tensor<T>> = inputs.iter().map(|x| x.detach().with_requires_grad(true)).collect();
        let refs: [&Tensor<T>; N] = std::array::from_fn(|i| &xs[i]);
        let expr = f(std::array::from_fn(|i| Expr::node(Node::Input(i))));
        let fused = fuse(refs, &f).expect("fused");
        let plain = unfused(&expr, &refs);
        let close = |a: &Tensor<T>, b: &Tensor<T>, what: &str| {
            assert_eq!(a.shape(), b.shape(), "{what}: shapes of {expr:?}");
            for (x, y) in a.to_vec().into_iter().zip(b.to_vec()) {
                let (x, y) = (x.to_f64().unwrap(), y.to_f64().unwrap());
                assert!((x - y).abs() <= tol * (1.0 + y.abs()) || (x.is_nan() && y.is_nan()), "{what} of {expr:?}: {x} against {y}");
            }
        };
        close(&fused, &plain, "value");
        assert_eq!(fused.op_name(), Some("fused"), "one op in the graph");
        let w = Tensor::<T>::from_vec((0..fused.numel()).map(|i| T::of(0.5 + (i % 7) as f64 / 7.0)).collect(), fused.shape()).unwrap();
        let first = |y: &Tensor<T>| crate::grad(&[&(y * &w).sum()], &refs, None, true).expect("first order");
        let (g_fused, g_plain) = (first(&fused), first(&plain));
        for (i, (a, b)) in g_fused.iter().zip(&g_plain).enumerate() {
            close(a, b, &format!("gradient {i}"));
            assert_eq!(a.shape(), refs[i].shape(), "summed to the input's shape");
        }
        let second = |g: &[Tensor<T>]| {
            let total = g.iter().map(|g| g.sum()).reduce(|a, b| &a + &b).expect("an input");
            crate::grad(&[&total], &refs, None, false).expect("second order")
        };
        for (i, (a, b)) in second(&g_fused).iter().zip(&second(&g_plain)).enumerate() {
            close(a, b, &format!("second-order gradient {i}"));
        }
    }

    fn chain(x: Expr) -> Expr {
        x.tanh() * x.sigmoid() + x
    }

    #[test]
    fn every_function_equals_its_unfused_op_to_second_order() {
        let x = Tensor::<f64>::randn(&[3, 700], &mut crate::rng(1));
        let p = Tensor::<f64>::uniform(&[700], 0.5, 2.0, &mut crate::rng(2));
        let s = Tensor::<f64>::scalar(-0.7);
        let functions: [fn(&Expr) -> Expr; 11] = [
            Expr::exp,
            Expr::tanh,
            Expr::sigmoid,
            Expr::relu,
            Expr::abs,
            Expr::sin,
            Expr::cos,
            Expr::square,
            |x| -x,
            |x| x.clone() * 2.0 - 1.0,
            |x| 1.5 / (x.clone() + 4.0),
        ];
        for f in functions {
            same_both_ways([&x], |[x]| f(&x), 1e-14);
        }
        for f in [Expr::log, Expr::sqrt, Expr::recip] {
            same_both_ways([&p], |[p]| f(&p), 1e-14);
        }
        // Every binary operator, broadcast (rows against a row, and a scalar), shared
        // subexpressions, constants folded.
        same_both_ways(
            [&x, &p, &s],
            |[x, p, s]| (&x + &p) * (&x - &s) / (p.clone() * p.clone() + 1.0) + (Expr::constant(2.0) * 3.0 - s),
            1e-14,
        );
        same_both_ways([&x], |[x]| chain(x), 1e-14);
        let t = x.tanh();
        same_both_ways([&t, &x], |[t, x]| t.clone() * t + x.exp() * 0.0, 1e-14);
    }

    #[test]
    fn f32_threads_and_block_edges_give_the_unfused_values() {
        // Lengths around a block, and one past the threaded size that ends mid-block.
        for len in [1, 255, 256, 257, kernel::PARALLEL_MIN_LEN + 77] {
            let x = Tensor::<f32>::randn(&[len], &mut crate::rng(len as u64));
            two_threads(|| same_both_ways([&x], |[x]| chain(x), 1e-6));
            same_both_ways([&x], |[x]| chain(x), 1e-6);
        }
    }

    #[test]
    fn relu_keeps_a_nan_and_the_edge_cases_match() {
        let x = Tensor::<f64>::from_vec(vec![f64::NAN, 0.0, -0.0, 2.0, -3.0, f64::INFINITY], &[6]).unwrap();
        let y = fuse([&x], |[x]| x.relu() + x.abs()).unwrap();
        let expect = &x.relu() + &x.abs();
        assert_eq!(format!("{:?}", y.to_vec()), format!("{:?}", expect.to_vec()));
        // An identity and a constant: no instruction to run.
        assert_eq!(fuse([&x], |[x]| x).unwrap().to_vec()[3], 2.0);
        assert_eq!(fuse([&x], |[_]| Expr::constant(1.5)).unwrap().to_vec(), vec![1.5; 6]);
    }

    #[test]
    fn bad_input_is_an_error_naming_fuse() {
        let (a, b) = (Tensor::<f64>::zeros(&[2, 3]), Tensor::<f64>::zeros(&[4]));
        let err = fuse([&a, &b], |[a, b]| a + b).unwrap_err().to_string();
        assert!(err.contains("fuse") && err.contains("[2, 3]") && err.contains("[4]"), "{err}");
        let stray = fuse([&a, &a], |[_, y]| y);
        assert!(stray.is_ok());
        let mut kept = None;
        let _ = fuse([&a, &a], |[_, y]| {
            kept = Some(y.clone());
            y
        });
        let err = fuse([&a], |[x]| x + kept.unwrap()).unwrap_err().to_string();
        assert!(err.contains("fuse") && err.contains("input 1 of 1"), "{err}");
    }
}
