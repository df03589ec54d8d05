//! Copies that reorder or place elements: a view to row-major order, a slice into zeros.

use super::Element;
use ndarray::{ArrayD, ArrayViewD, Axis, Ix2, Ix3, Ix4, IxDyn, Slice};

/// Copies of at least this many elements are split across threads.
const PARALLEL_COPY_MIN: usize = 1 << 17;

/// The elements of `a` in row-major order, in a buffer from the pool.
pub(crate) fn row_major_copy<T: Element>(a: &ArrayViewD<'_, T>) -> Vec<T> {
    // The last axis contiguous: every lane along it is a slice.
    let lanes = a.ndim().checked_sub(1).filter(|&d| a.strides()[d] == 1 || a.shape()[d] <= 1);
    // A large array is cut along its first axis across the pool's threads (a batch-first
    // view of a time-major LSTM output is copied here), so the pool does not sit idle
    // while the calling thread copies alone.
    if let Some(d) = lanes.filter(|&d| d > 0 && a.len() >= PARALLEL_COPY_MIN && rayon::current_num_threads() > 1) {
        // Every element is overwritten: a recycled buffer as it is, not zeroed first.
        let mut out = crate::array::pool::take_overwritten::<T>(a.len());
        let per = a.len() / a.shape()[0];
        super::kernel::team::for_each_chunk_mut(&mut out, per, |i, chunk| {
            let sub = a.index_axis(Axis(0), i);
            for (dst, lane) in chunk.chunks_exact_mut(a.shape()[d].max(1)).zip(sub.lanes(Axis(d - 1))) {
                dst.copy_from_slice(lane.as_slice().expect("a contiguous lane"));
            }
        });
        return out;
    }
    let mut out = crate::array::pool::take::<T>(a.len());
    match a.ndim().checked_sub(1) {
        Some(d) if lanes.is_some() => {
            for lane in a.lanes(Axis(d)) {
                out.extend_from_slice(lane.as_slice().expect("a contiguous lane"));
            }
        }
        // A transposed matrix: by tiles (an element at a time, each read is a cache line
        // of its own once the matrix outgrows the cache).
        Some(1) if a.strides()[0] == 1 => {
            out.resize(a.len(), T::zero());
            let (rows, cols) = (a.shape()[0], a.shape()[1]);
            let view = a.view().into_dimensionality::<Ix2>().expect("2-d");
            crate::array::kernel::transpose_into(
                view.t(),
                ndarray::ArrayViewMut2::from_shape((rows, cols), &mut out[..]).expect("rows · cols"),
            );
        }
        // Otherwise iterate with a fixed number of dims where possible: `IxDyn`'s iterator
        // clones and steps a heap index per element, which costs more than the copy.
        _ => match a.ndim() {
            2 => out.extend(a.view().into_dimensionality::<Ix2>().expect("2-d").iter().copied()),
            3 => out.extend(a.view().into_dimensionality::<Ix3>().expect("3-d").iter().copied()),
            4 => out.extend(a.view().into_dimensionality::<Ix4>().expect("4-d").iter().copied()),
            _ => out.extend(a.iter().copied()),
        },
    }
    out
}

/// An array of `shape` holding `slice` at `start..` along `axis` and zeros elsewhere: the
/// value of `Tensor::pad_axis`, and the first cotangent of a tensor read through a narrow
/// in a first-order sweep. Its buffer comes from the pool and only the elements outside the
/// slice are zeroed, where zeros and an assignment would be two passes over all of it (an
/// LSTM's output read a step at a time gets one such cotangent per sequence).
pub(crate) fn padded<T: Element>(shape: &[usize], axis: usize, start: usize, slice: &ArrayViewD<'_, T>) -> ArrayD<T> {
    let len = shape.iter().product();
    let mut value = ArrayD::from_shape_vec(IxDyn(shape), crate::array::pool::take_overwritten(len)).expect("len elements");
    let end = start + slice.shape()[axis];
    value.slice_axis_mut(Axis(axis), Slice::from(..start)).fill(T::zero());
    let mut inside = value.slice_axis_mut(Axis(axis), Slice::from(start..end));
    // A large slice of two or more dims is copied across the pool's threads by its
    // outermost axis: the calling thread did it alone while the others waited.
    if slice.len() >= PARALLEL_COPY_MIN && rayon::current_num_threads() > 1 && slice.ndim() > 1 {
        let pairs: Vec<_> = inside.axis_iter_mut(Axis(0)).zip(slice.axis_iter(Axis(0))).collect();
        super::kernel::team::map_items(pairs, |(mut d, s)| d.assign(&s));
    } else {
        inside.assign(slice);
    }
    value.slice_axis_mut(Axis(axis), Slice::from(end..)).fill(T::zero());
    value
}

#[cfg(test)]
mod tests {
    use super::*;
    use ndarray::{Array, Array2, s};

    #[test]
    fn row_major_copy_equals_the_logical_order() {
        // A transposed matrix whose sides are not multiples of the tile (the tiled path), one
        // that is also strided, a slice with contiguous rows, a permuted 3-d array.
        let a = Array2::from_shape_fn((37, 53), |(i, j)| (i * 100 + j) as f64);
        let b = Array::from_shape_fn((4, 5, 6), |(i, j, k)| (i * 100 + j * 10 + k) as f64).into_dyn();
        let views = [
            a.t().into_dyn(),
            a.slice(s![.., ..;2]).reversed_axes().into_dyn(),
            a.slice(s![3..9, 1..50]).into_dyn(),
            b.view().permuted_axes(IxDyn(&[2, 0, 1])),
        ];
        for v in views {
            assert_eq!(row_major_copy(&v), v.iter().copied().collect::<Vec<_>>(), "shape {:?}, strides {:?}", v.shape(), v.strides());
        }
    }

    #[test]
    fn a_large_copy_split_across_threads_equals_the_logical_order() {
        // A batch-first view of a time-major output, a narrowed matrix and a 4-d
        // permutation with a unit last axis, each past the size that splits the copy.
        let time_major = Array::from_shape_fn((35, 32, 256), |(t, n, h)| (t * 100_000 + n * 1000 + h) as f32).into_dyn();
        let wide = Array2::from_shape_fn((600, 300), |(i, j)| (i * 1000 + j) as f32);
        let four = Array::from_shape_fn((8, 64, 300, 1), |(i, j, k, l)| (i * 1_000_000 + j * 1000 + k + l) as f32).into_dyn();
        let views = [
            time_major.view().permuted_axes(IxDyn(&[1, 0, 2])),
            wide.slice(s![.., 10..290]).into_dyn(),
            four.view().permuted_axes(IxDyn(&[1, 0, 2, 3])),
        ];
        let pool = rayon::ThreadPoolBuilder::new().num_threads(2).build().unwrap();
        for v in views {
            assert!(v.len() >= PARALLEL_COPY_MIN);
            let copy = pool.install(|| row_major_copy(&v));
            assert!(copy == v.iter().copied().collect::<Vec<_>>(), "shape {:?}, strides {:?}", v.shape(), v.strides());
        }
    }
}
