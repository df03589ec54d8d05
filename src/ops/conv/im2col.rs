//! Column matrices: a sample's windows laid out as the rows of a product, and back.

use super::*;
use crate::tensor::Element;
use ndarray::{Array2, ArrayView2};

/// The column matrix of one sample and group: `[C/g · kh · kw, oh · ow]`. Row
/// `(c, i, j)` holds, for every output position, the input pixel that tap `(i, j)` of the
/// kernel sees there (0 in the padding).
pub(super) fn im2col<T: Element>(plane: &[T], g: &Geometry, group: usize) -> Array2<T> {
    let len = g.col_rows() * g.col_cols();
    // From the pool (callers give it back): a fresh buffer per sample would cost a page
    // fault per 4 KiB.
    let same_width = g.cfg.stride == [1, 1] && g.ow == g.w;
    let mut cols = if same_width {
        crate::array::pool::take_overwritten::<T>(len)
    } else {
        let mut cols = crate::array::pool::take::<T>(len);
        cols.resize(len, T::zero());
        cols
    };
    fill_cols(plane, g, group, &mut cols, !same_width);
    Array2::from_shape_vec((g.col_rows(), g.col_cols()), cols).expect("rows x cols")
}

/// Fills `cols` (`[C/g · kh · kw, oh · ow]`) with the column matrix.
///
/// When the output is as wide as the input with stride 1 (a "same" convolution, as most
/// are), a tap's whole row is the channel shifted by a constant offset: one copy, then the
/// columns that wrapped around the image's edge and the rows outside it set to zero, so
/// every element is written (`zeroed` is false: the buffer is not zeroed first). Otherwise
/// one copy per output row into a zeroed buffer.
fn fill_cols<T: Element>(plane: &[T], g: &Geometry, group: usize, cols: &mut [T], zeroed: bool) {
    let [sh, sw] = g.cfg.stride;
    let [ph, pw] = g.cfg.padding;
    let dh = g.cfg.dilation[0];
    let (hw, ow) = (g.h * g.w, g.ow);
    let mut rows = cols.chunks_mut(g.col_cols().max(1));
    for c in 0..g.c_per_group() {
        let channel = &plane[(group * g.c_per_group() + c) * hw..][..hw];
        for i in 0..g.kh {
            for j in 0..g.kw {
                let row = rows.next().expect("one row per tap");
                let (y_lo, y_hi, x_lo, x_hi, shift) = tap_window(g, i, j);
                if x_lo >= x_hi || y_lo >= y_hi {
                    if !zeroed {
                        row.fill(T::zero());
                    }
                    continue;
                }
                let first = x_lo * sw + shift - pw;
                if !zeroed {
                    // Output (y, x) reads input (y + i·d - p, x + shift - p): with ow = w and
                    // stride 1, a constant offset in the flattened plane.
                    let (start, end) = (y_lo * ow + x_lo, (y_hi - 1) * ow + x_hi);
                    let src = (y_lo + i * dh - ph) * g.w + first;
                    row[start..end].copy_from_slice(&channel[src..src + (end - start)]);
                    row[..start].fill(T::zero());
                    row[end..].fill(T::zero());
                    for y in y_lo..y_hi {
                        row[y * ow..y * ow + x_lo].fill(T::zero());
                        row[y * ow + x_hi..(y + 1) * ow].fill(T::zero());
                    }
                    continue;
                }
                for y in y_lo..y_hi {
                    let src = &channel[(y * sh + i * dh - ph) * g.w..][..g.w];
                    let dst = &mut row[y * ow..(y + 1) * ow];
                    if sw == 1 {
                        dst[x_lo..x_hi].copy_from_slice(&src[first..first + (x_hi - x_lo)]);
                    } else {
                        for (k, d) in dst[x_lo..x_hi].iter_mut().enumerate() {
                            *d = src[first + k * sw];
                        }
                    }
                }
            }
        }
    }
}

/// Returns a column matrix's buffer to the pool.
pub(super) fn give_back<T: Element>(cols: Array2<T>) {
    crate::array::pool::recycle(cols.into_dyn().into_shared());
}

/// Adds a column matrix back into one sample's input planes: the adjoint of [`im2col`]
/// (each entry goes back to the pixel it was read from, overlapping taps add up).
pub(super) fn col2im<T: Element>(cols: &ArrayView2<'_, T>, plane: &mut [T], g: &Geometry, group: usize) {
    let [sh, sw] = g.cfg.stride;
    let [ph, pw] = g.cfg.padding;
    let [dh, dw] = g.cfg.dilation;
    let hw = g.h * g.w;
    let cols = cols.as_standard_layout();
    let mut rows = cols.as_slice().expect("standard layout").chunks(g.col_cols().max(1));
    for c in 0..g.c_per_group() {
        let channel = &mut plane[(group * g.c_per_group() + c) * hw..][..hw];
        for i in 0..g.kh {
            for j in 0..g.kw {
                let row = rows.next().expect("one row per tap");
                let shift = j * dw;
                let x_lo = pw.saturating_sub(shift).div_ceil(sw);
                let x_hi = if g.w + pw > shift { ((g.w + pw - shift - 1) / sw + 1).min(g.ow) } else { 0 };
                if x_lo >= x_hi {
                    continue;
                }
                let first = x_lo * sw + shift - pw;
                for y in 0..g.oh {
                    let src_y = (y * sh + i * dh) as isize - ph as isize;
                    if src_y < 0 || src_y as usize >= g.h {
                        continue;
                    }
                    let dst = &mut channel[src_y as usize * g.w..][..g.w];
                    let src = &row[y * g.ow + x_lo..y * g.ow + x_hi];
                    if sw == 1 {
                        // Slices of one length: the add vectorises.
                        dst[first..first + src.len()].iter_mut().zip(src).for_each(|(d, &v)| *d = *d + v);
                    } else {
                        for (k, &v) in src.iter().enumerate() {
                            let d = &mut dst[first + k * sw];
                            *d = *d + v;
                        }
                    }
                }
            }
        }
    }
}
