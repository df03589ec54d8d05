//! Data-parallel training over MPI (cargo feature `mpi`), with PyTorch
//! `DistributedDataParallel`'s guarantees: every rank starts from rank 0's parameters,
//! gradients are averaged over the ranks before each step, so the optimisers, run unchanged
//! on every rank, keep identical parameters and state.
//!
//! Built on the system's Open MPI through the `mpi` crate (rsmpi). On Debian:
//! `apt-get install libopenmpi-dev openmpi-bin libclang-dev`; build with
//! `cargo build --release --features mpi` and launch with
//! `mpirun --bind-to none -np 2 target/release/examples/distributed_digits`.
//! `--bind-to none` matters: for two or fewer processes Open MPI pins each to one core,
//! which leaves rayon one thread per process.
//!
//! What this costs across machines (the ring all-reduce's model, α and β measured on this
//! machine, predicted efficiency of the reference workloads on 10–100 Gb/s links, and what a
//! cluster would need) is in the repository's `docs/distributed.md`.
//!
//! Only the thread that called [`init`] makes MPI calls (MPI's "funneled" level); rayon
//! keeps its own threads inside each process. A panic on any rank aborts the whole job
//! (`MPI_Abort`) instead of leaving the others waiting forever in a collective.
//!
//! ```no_run
//! use nabla::prelude::*;
//! use nabla::distributed::{self, DataParallel};
//! let world = distributed::init()?;
//! let model = nn::Linear::new(4, 2, &mut nabla::rng(world.rank() as u64));  // any init:
//! let ddp = DataParallel::new(model, &world)?;                              // rank 0's wins
//! let mut opt = optim::Sgd::new(ddp.module().parameters(), 0.1);
//! let x = Tensor::randn(&[8, 4], &mut nabla::rng(0));                       // this rank's share
//! let mut grads = ddp.module().forward(&x)?.pow(2.0).mean().backward()?;
//! ddp.average_gradients(&mut grads)?;                                      // the global mean
//! opt.step(&grads)?;
//! # Ok::<(), nabla::Error>(())
//! ```

use crate::array::pool;
use crate::autograd::Gradients;
use crate::error::{Error, Result};
use crate::nn::{Module, Param};
use crate::tensor::{Creation, Element, Tensor};
use mpi::collective::SystemOperation;
use mpi::topology::{Communicator, SimpleCommunicator};
use mpi::traits::{CommunicatorCollectives, Root};
use ndarray::{ArrayD, IxDyn};
use rand::SeedableRng;
use rand::seq::SliceRandom;
use std::any::Any;

/// The rsmpi crate nabla runs on, for what [`World`] does not wrap (its
/// [`World::communicator`] is MPI_COMM_WORLD).
pub use mpi;

/// The default gradient bucket: about 25 MB, as DDP's `bucket_cap_mb`.
pub const DEFAULT_BUCKET_BYTES: usize = 25 << 20;

/// The processes of a job: this one's rank and how many there are. Dropping it ends MPI
/// (`MPI_Finalize`), so keep it alive until the last collective.
pub struct World {
    // Dropped last: MPI_Finalize.
    _universe: mpi::environment::Universe,
    comm: SimpleCommunicator,
}

/// Starts MPI (funneled: only this thread calls it) and installs a panic hook that aborts
/// the job, so that a panic on one rank ends every rank in seconds with a non-zero exit
/// instead of a hang. `Err` if MPI was already started, or cannot give the funneled level.
pub fn init() -> Result<World> {
    let (universe, level) = mpi::initialize_with_threading(mpi::Threading::Funneled)
        .ok_or_else(|| Error::invalid("distributed::init", "MPI is already initialised in this process"))?;
    if level < mpi::Threading::Funneled {
        return Err(Error::invalid("distributed::init", format!("MPI gives thread level {level:?}, below Funneled")));
    }
    let comm = universe.world();
    let previous = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        previous(info);
        // Unwinding into MPI_Finalize while the other ranks wait in a collective would hang
        // the job (rsmpi issue #197): abort it instead.
        // SAFETY: MPI was initialised by `init` and MPI_COMM_WORLD is valid until finalised;
        // MPI_Abort may be called from any thread and does not return. (The crate's one
        // unsafe block outside `array`: rsmpi's safe `abort` needs a communicator handle,
        // which a `'static` hook cannot borrow.)
        #[allow(unsafe_code)]
        unsafe {
            mpi::ffi::MPI_Abort(mpi::ffi::RSMPI_COMM_WORLD, 1);
        }
    }));
    Ok(World { _universe: universe, comm })
}

impl World {
    /// This process's rank, `0..size`.
    pub fn rank(&self) -> usize {
        self.comm.rank() as usize
    }

    /// The number of processes.
    pub fn size(&self) -> usize {
        self.comm.size() as usize
    }

    /// The communicator of every process (MPI_COMM_WORLD), for rsmpi's own calls.
    pub fn communicator(&self) -> &SimpleCommunicator {
        &self.comm
    }

    /// Waits for every rank.
    pub fn barrier(&self) {
        self.comm.barrier();
    }

    /// The sum of `value` over the ranks, on every rank (for global metrics).
    pub fn all_reduce_sum(&self, value: f64) -> f64 {
        let mut total = 0.0;
        self.comm.all_reduce_into(&value, &mut total, SystemOperation::sum());
        total
    }

    /// The element-wise sum of `tensor` over the ranks, on every rank; `Err` unless every
    /// rank passes the same shape.
    pub fn all_reduce_tensor<T: Element>(&self, tensor: &Tensor<T>) -> Result<Tensor<T>> {
        self.same_shapes("all_reduce_tensor", &[("tensor".to_string(), tensor.shape().to_vec())])?;
        let mut values = tensor.to_vec();
        self.sum_in_place(&mut values);
        Tensor::<T>::from_vec(values, tensor.shape())
    }

    /// `Err` on every rank, naming the first difference, unless every rank holds the same
    /// `(name, shape)` list as rank 0.
    fn same_shapes(&self, op: &'static str, entries: &[(String, Vec<usize>)]) -> Result<()> {
        let mine = describe(entries);
        let mut len = mine.len() as u64;
        self.comm.process_at_rank(0).broadcast_into(&mut len);
        let mut theirs = if self.rank() == 0 { mine.clone().into_bytes() } else { vec![0u8; len as usize] };
        self.comm.process_at_rank(0).broadcast_into(&mut theirs[..]);
        let theirs = String::from_utf8_lossy(&theirs).into_owned();
        let difference = first_difference(&theirs, &mine);
        // Every rank learns whether any rank differs, so that all return Err together.
        let mut any = 0u32;
        self.comm.all_reduce_into(&(difference.is_some() as u32), &mut any, SystemOperation::max());
        match (difference, any) {
            (Some(d), _) => Err(Error::invalid(op, format!("rank {} differs from rank 0: {d}", self.rank()))),
            (None, 0) => Ok(()),
            (None, _) => Err(Error::invalid(op, format!("another rank's parameters differ from rank 0's (rank {} agrees)", self.rank()))),
        }
    }

    /// Sums `values` over the ranks, in place. (A `Vec`, not a slice: `Any` needs a sized
    /// type to downcast to.)
    #[allow(clippy::ptr_arg)]
    fn sum_in_place<T: Element>(&self, values: &mut Vec<T>) {
        // MPI needs the concrete type; `Element` is f32 or f64.
        let any: &mut dyn Any = values;
        if let Some(v) = any.downcast_mut::<Vec<f32>>() {
            let send = pooled_copy(v);
            self.comm.all_reduce_into(&send[..], &mut v[..], SystemOperation::sum());
            pool::recycle(ArrayD::from_shape_vec(IxDyn(&[send.len()]), send).expect("len values").into_shared());
        } else if let Some(v) = any.downcast_mut::<Vec<f64>>() {
            let send = pooled_copy(v);
            self.comm.all_reduce_into(&send[..], &mut v[..], SystemOperation::sum());
            pool::recycle(ArrayD::from_shape_vec(IxDyn(&[send.len()]), send).expect("len values").into_shared());
        } else {
            unreachable!("Element is f32 or f64");
        }
    }

    /// Rank 0's `values`, on every rank.
    #[allow(clippy::ptr_arg)]
    fn broadcast<T: Element>(&self, values: &mut Vec<T>) {
        let any: &mut dyn Any = values;
        if let Some(v) = any.downcast_mut::<Vec<f32>>() {
            self.comm.process_at_rank(0).broadcast_into(&mut v[..]);
        } else if let Some(v) = any.downcast_mut::<Vec<f64>>() {
            self.comm.process_at_rank(0).broadcast_into(&mut v[..]);
        } else {
            unreachable!("Element is f32 or f64");
        }
    }
}

/// A copy of `values` in a buffer from the crate's pool.
fn pooled_copy<T: Element>(values: &[T]) -> Vec<T> {
    let mut copy = pool::take(values.len());
    copy.extend_from_slice(values);
    copy
}

/// `name:shape` per line.
fn describe(entries: &[(String, Vec<usize>)]) -> String {
    entries.iter().map(|(n, s)| format!("{n}:{s:?}\n")).collect()
}

/// The first line where `mine` differs from rank 0's `theirs`, described.
fn first_difference(theirs: &str, mine: &str) -> Option<String> {
    let (a, b): (Vec<&str>, Vec<&str>) = (theirs.lines().collect(), mine.lines().collect());
    for k in 0..a.len().max(b.len()) {
        match (a.get(k), b.get(k)) {
            (Some(x), Some(y)) if x == y => {}
            (Some(x), Some(y)) => return Some(format!("entry {k} is {y}, rank 0 has {x}")),
            (Some(x), None) => return Some(format!("no entry {k}, rank 0 has {x}")),
            (None, Some(y)) => return Some(format!("entry {k} is {y}, which rank 0 lacks")),
            (None, None) => unreachable!(),
        }
    }
    None
}

/// A module trained data-parallel (PyTorch's `DistributedDataParallel`): built on every
/// rank, it checks that all ranks hold the same parameters (names and shapes) and copies
/// rank 0's values to all; [`DataParallel::average_gradients`] then makes each rank's
/// gradients the mean over the ranks before every optimiser step.
pub struct DataParallel<'w, M> {
    module: M,
    world: &'w World,
    bucket_bytes: usize,
}

impl<'w, M> DataParallel<'w, M> {
    /// Wraps `module`: `Err` on every rank, naming the first difference, unless every rank's
    /// parameters have rank 0's names and shapes; then rank 0's values are broadcast.
    pub fn new<T: Element>(module: M, world: &'w World) -> Result<Self>
    where
        M: Module<T>,
    {
        let params = module.named_parameters();
        let entries: Vec<(String, Vec<usize>)> = params.iter().map(|(n, p)| (n.clone(), p.shape())).collect();
        world.same_shapes("DataParallel", &entries)?;
        let ddp = DataParallel { module, world, bucket_bytes: DEFAULT_BUCKET_BYTES };
        let tensors: Vec<Param<T>> = params.into_iter().map(|(_, p)| p).collect();
        for_buckets(&tensors, ddp.bucket_bytes, |bucket| {
            let mut flat: Vec<T> = Vec::with_capacity(bucket.iter().map(Param::numel).sum());
            for p in bucket {
                let t = p.tensor();
                let v = t.value();
                flat.extend_from_slice(v.as_standard_layout().as_slice().expect("standard layout"));
            }
            world.broadcast(&mut flat);
            let mut at = 0;
            for p in bucket {
                let n = p.numel();
                p.set(ndarray::ArrayD::from_shape_vec(p.shape(), flat[at..at + n].to_vec()).expect("n values"))?;
                at += n;
            }
            Ok(())
        })?;
        Ok(ddp)
    }

    /// With gradient buckets of about `bytes` (DDP's `bucket_cap_mb`; 25 MB by default):
    /// fewer, larger messages.
    pub fn bucket_bytes(mut self, bytes: usize) -> Self {
        self.bucket_bytes = bytes.max(1);
        self
    }

    /// The wrapped module.
    pub fn module(&self) -> &M {
        &self.module
    }

    /// The wrapped module, unwrapped.
    pub fn into_inner(self) -> M {
        self.module
    }

    /// Replaces each parameter's gradient in `grads` by its mean over the ranks: gradients
    /// packed into buckets, each summed over the ranks by one all-reduce and divided by the
    /// world size. A parameter this rank's backward did not reach counts as zeros (and gets
    /// the mean too), so every rank sends the same buckets. To accumulate micro-batches
    /// first (DDP's `no_sync`), add their gradients with [`Gradients::accumulate`] and call
    /// this once.
    pub fn average_gradients<T: Element>(&self, grads: &mut Gradients<T>) -> Result<()>
    where
        M: Module<T>,
    {
        let params: Vec<Param<T>> = self.module.parameters();
        let size = T::of(self.world.size() as f64);
        for_buckets(&params, self.bucket_bytes, |bucket| {
            // Buffers from the crate's pool, returned to it after: fresh ones of this size
            // would cost a page fault per 4 KiB on every step (`workloads allreduce 1 ddp`).
            let total: usize = bucket.iter().map(Param::numel).sum();
            let mut flat: Vec<T> = pool::take(total);
            for p in bucket {
                match grads.get(&p.tensor()) {
                    Some(g) if g.shape() == p.shape() => {
                        // A slice copy: element-wise iteration of a dynamic-rank array costs
                        // more than the all-reduce itself (`workloads allreduce 1 ddp`).
                        let v = g.value();
                        flat.extend_from_slice(v.as_standard_layout().as_slice().expect("standard layout"));
                    }
                    Some(g) => {
                        return Err(Error::shape("average_gradients", format!("gradient {:?} for a parameter {:?}", g.shape(), p.shape())));
                    }
                    None => flat.extend(std::iter::repeat_n(T::zero(), p.numel())),
                }
            }
            self.world.sum_in_place(&mut flat);
            let mut at = 0;
            for p in bucket {
                let n = p.numel();
                let mut mean = pool::take_overwritten::<T>(n);
                for (m, &v) in mean.iter_mut().zip(&flat[at..at + n]) {
                    *m = v / size;
                }
                grads.insert(&p.tensor(), Tensor::from(ArrayD::from_shape_vec(IxDyn(&p.shape()), mean).expect("n values")));
                at += n;
            }
            pool::recycle(ArrayD::from_shape_vec(IxDyn(&[total]), flat).expect("total values").into_shared());
            Ok(())
        })
    }
}

/// `f` on consecutive runs of `params` of about `bytes` each (at least one parameter).
fn for_buckets<T: Element>(params: &[Param<T>], bytes: usize, mut f: impl FnMut(&[Param<T>]) -> Result<()>) -> Result<()> {
    let per = std::mem::size_of::<T>();
    let mut start = 0;
    while start < params.len() {
        let (mut end, mut size) = (start, 0);
        while end < params.len() && (end == start || size + params[end].numel() * per <= bytes) {
            size += params[end].numel() * per;
            end += 1;
        }
        f(&params[start..end])?;
        start = end;
    }
    Ok(())
}

/// This rank's share of an epoch of `len` samples, as PyTorch's `DistributedSampler`:
/// `0..len` shuffled by `seed` and `epoch` (the same order on every rank, without talking),
/// padded by repeating its first indices to a multiple of the world size (or, with
/// `drop_last`, cut to one), then every `size`-th index from `rank`. Every rank gets the
/// same number of samples. `Err` when that number is 0 (an empty shard would leave a rank
/// with no batch while the others wait for it in the all-reduce).
///
/// ```
/// use nabla::distributed::shard;
/// let a = shard(10, 0, 3, 7, 0, false)?;
/// let b = shard(10, 1, 3, 7, 0, false)?;
/// let c = shard(10, 2, 3, 7, 0, false)?;
/// assert_eq!((a.len(), b.len(), c.len()), (4, 4, 4));              // 10 padded to 12
/// let mut all: Vec<usize> = a.iter().chain(&b).chain(&c).copied().collect();
/// all.sort();
/// all.dedup();
/// assert_eq!(all, (0..10).collect::<Vec<_>>());                      // every sample seen
/// assert_ne!(shard(10, 0, 3, 7, 1, false)?, a);                      // a new order each epoch
/// # Ok::<(), nabla::Error>(())
/// ```
pub fn shard(len: usize, rank: usize, size: usize, seed: u64, epoch: u64, drop_last: bool) -> Result<Vec<usize>> {
    if size == 0 || rank >= size {
        return Err(Error::invalid("shard", format!("rank {rank} of {size} processes")));
    }
    let mut order: Vec<usize> = (0..len).collect();
    order.shuffle(&mut rand::rngs::StdRng::seed_from_u64(seed.wrapping_add(epoch)));
    let per_rank = if drop_last { len / size } else { len.div_ceil(size) };
    if per_rank == 0 {
        return Err(Error::invalid("shard", format!("{len} samples give no sample to each of {size} processes")));
    }
    let total = per_rank * size;
    let padded: Vec<usize> = order.iter().copied().cycle().take(total).collect();
    Ok(padded.into_iter().skip(rank).step_by(size).collect())
}
