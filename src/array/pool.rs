//! Reuse of large buffers across steps.
//!
//! A training step allocates the same large arrays every time. Fresh memory from the
//! system costs a page fault per 4 KiB page on first touch, which for large elementwise
//! work costs more than the arithmetic (`cargo bench --bench ops -- w7_elementwise`). So when a
//! node that uniquely owns a large buffer is dropped, the buffer goes here, and the next
//! kernel asking for that many elements takes it back.

use super::Element;
use ndarray::{ArcArray, IxDyn};
use std::any::{Any, TypeId};
use std::collections::HashMap;
use std::sync::Mutex;

/// Buffers smaller than this (in elements) go back to the allocator: small allocations are
/// cheap and come from the allocator's own free lists.
const MIN_LEN: usize = 1 << 15;
/// At most this many spare buffers of one type and length. Spare buffers are memory the
/// process keeps: the `maxrss_mb` that `cargo run --release --example workloads -- w2 1`
/// prints grows several-fold with 16 per size and 1 GiB. Eight: the elementwise step's
/// forward and backward (`-- w7 1`) free more than four arrays of its size at once, and
/// with four the others went back to the system and page-faulted on the next step; with
/// no pool the elementwise forward pass is about twice as slow.
const PER_SIZE: usize = 8;
/// At most this many bytes held in spare buffers in all.
const MAX_BYTES: usize = 1 << 28;

struct Pool {
    spare: HashMap<(TypeId, usize), Vec<Box<dyn Any + Send>>>,
    bytes: usize,
}

static POOL: Mutex<Option<Pool>> = Mutex::new(None);

/// An empty `Vec` with room for `len` elements: a recycled buffer when one is spare.
pub(crate) fn take<T: Element>(len: usize) -> Vec<T> {
    let mut v = spare(len).unwrap_or_else(|| Vec::with_capacity(len));
    v.clear();
    v
}

/// `len` elements for a caller that writes every one before reading any: a recycled buffer
/// as its last user left it (no pass to zero it), else zeros. In the crate's unit tests the
/// elements are NaN instead, so that an element the caller fails to write shows in its
/// results.
pub(crate) fn take_overwritten<T: Element>(len: usize) -> Vec<T> {
    let filler = if cfg!(test) { T::nan() } else { T::zero() };
    match spare::<T>(len) {
        Some(v) if v.len() == len && !cfg!(test) => v,
        other => {
            let mut v = other.unwrap_or_else(|| Vec::with_capacity(len));
            v.clear();
            v.resize(len, filler);
            v
        }
    }
}

/// An array of `shape` with every element `value`, in a recycled buffer when one is spare.
pub(crate) fn filled<T: Element>(shape: &[usize], value: T) -> ndarray::ArrayD<T> {
    let len = shape.iter().product();
    let mut buffer = take::<T>(len);
    buffer.resize(len, value);
    ndarray::ArrayD::from_shape_vec(IxDyn(shape), buffer).expect("len elements")
}

/// A spare buffer with room for `len` elements, as it was recycled.
fn spare<T: Element>(len: usize) -> Option<Vec<T>> {
    if len < MIN_LEN {
        return None;
    }
    let mut guard = POOL.lock().unwrap_or_else(|e| e.into_inner());
    let pool = guard.as_mut()?;
    let buffer = pool.spare.get_mut(&(TypeId::of::<T>(), len)).and_then(Vec::pop)?;
    pool.bytes -= len * std::mem::size_of::<T>();
    Some(*buffer.downcast::<Vec<T>>().expect("keyed by type"))
}

/// Whether [`recycle`] would keep the buffer of `value`: it is large and nothing else
/// shares it.
pub(crate) fn wants<T: Element>(value: &ArcArray<T, IxDyn>) -> bool {
    value.len() >= MIN_LEN && value.is_unique()
}

/// Keeps the buffer of `value` for reuse if [`wants`] it.
pub(crate) fn recycle<T: Element>(value: ArcArray<T, IxDyn>) {
    if !wants(&value) {
        return;
    }
    let (v, _) = value.into_owned().into_raw_vec_and_offset();
    let len = v.capacity();
    let bytes = len * std::mem::size_of::<T>();
    let mut guard = POOL.lock().unwrap_or_else(|e| e.into_inner());
    let pool = guard.get_or_insert_with(|| Pool { spare: HashMap::new(), bytes: 0 });
    let slot = pool.spare.entry((TypeId::of::<T>(), len)).or_default();
    if slot.len() < PER_SIZE && pool.bytes + bytes <= MAX_BYTES {
        pool.bytes += bytes;
        slot.push(Box::new(v));
    }
}
