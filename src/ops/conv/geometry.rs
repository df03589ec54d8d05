//! A convolution's shapes: the checked geometry of a call and where each tap reads.

use super::*;
use crate::error::{Error, Result};

/// Everything a kernel needs about one convolution's shapes.
#[derive(Debug, Clone, Copy)]
pub(super) struct Geometry {
    pub(super) n: usize,
    pub(super) c: usize,
    pub(super) h: usize,
    pub(super) w: usize,
    pub(super) o: usize,
    pub(super) kh: usize,
    pub(super) kw: usize,
    pub(super) oh: usize,
    pub(super) ow: usize,
    pub(super) cfg: Conv2dConfig,
}

impl Geometry {
    pub(super) fn c_per_group(&self) -> usize {
        self.c / self.cfg.groups
    }
    pub(super) fn o_per_group(&self) -> usize {
        self.o / self.cfg.groups
    }
    /// Rows of a group's column matrix: one per (input channel, kernel tap).
    pub(super) fn col_rows(&self) -> usize {
        self.c_per_group() * self.kh * self.kw
    }
    pub(super) fn col_cols(&self) -> usize {
        self.oh * self.ow
    }
}

/// Where tap `(i, j)` reads: the output rows `y_lo..y_hi` and columns `x_lo..x_hi` whose
/// input pixel lies inside the image, and the column shift `j·d_w`.
pub(super) fn tap_window(g: &Geometry, i: usize, j: usize) -> (usize, usize, usize, usize, usize) {
    let [sh, sw] = g.cfg.stride;
    let [ph, pw] = g.cfg.padding;
    let [dh, dw] = g.cfg.dilation;
    // Rows: y·s + i·d - p in [0, h); columns: x·s + j·d - p in [0, w).
    let rows = inside(g.oh, sh, i * dh, ph, g.h);
    let shift = j * dw;
    let cols = inside(g.ow, sw, shift, pw, g.w);
    (rows.start, rows.end, cols.start, cols.end, shift)
}

/// The `v` in `0..count` whose input position `v·step + offset - pad` lies in `[0, n)`: a
/// range, since the position grows with `v`. Without a division per `v`: a convolution's
/// output rows that a tap reads, a pooling window's taps inside the input.
pub(crate) fn inside(count: usize, step: usize, offset: usize, pad: usize, n: usize) -> std::ops::Range<usize> {
    let lo = pad.saturating_sub(offset).div_ceil(step).min(count);
    let hi = if n + pad > offset { ((n + pad - offset - 1) / step + 1).min(count) } else { 0 };
    lo..hi.max(lo)
}

/// Checks shapes and config; the geometry of `conv2d(x, w)`.
pub(super) fn geometry(op: &'static str, x: &[usize], w: &[usize], cfg: Conv2dConfig) -> Result<Geometry> {
    geometry_shown(op, x, w, cfg, false)
}

/// [`geometry`], its errors in the caller's terms: with `one_d`, `x` and `w` are a 1-D
/// convolution's shapes with a unit height inserted, and the messages leave it out (the
/// user passed `[2, 3, 10]`, not `[2, 3, 1, 10]`).
pub(super) fn geometry_shown(op: &'static str, x: &[usize], w: &[usize], cfg: Conv2dConfig, one_d: bool) -> Result<Geometry> {
    let shape = |s: &[usize]| -> Vec<usize> {
        let mut s = s.to_vec();
        if one_d && s.len() == 4 {
            s.remove(2);
        }
        s
    };
    let pair = |p: [usize; 2]| -> Vec<usize> { if one_d { vec![p[1]] } else { p.to_vec() } };
    let (xs, ws) = (shape(x), shape(w));
    if x.len() != 4 || w.len() != 4 {
        return Err(Error::shape(op, format!("input {xs:?} and weight {ws:?} must be (N, C, H, W) and (O, C/groups, kh, kw)")));
    }
    if cfg.groups == 0 || !x[1].is_multiple_of(cfg.groups) || !w[0].is_multiple_of(cfg.groups) {
        return Err(Error::invalid(op, format!("groups {} must divide in channels {} and out channels {}", cfg.groups, x[1], w[0])));
    }
    if w[1] * cfg.groups != x[1] {
        return Err(Error::shape(op, format!("weight {ws:?} expects {} input channels, the input {xs:?} has {}", w[1] * cfg.groups, x[1])));
    }
    if cfg.stride.contains(&0) || cfg.dilation.contains(&0) {
        return Err(Error::invalid(op, format!("stride {:?} and dilation {:?} must be positive", pair(cfg.stride), pair(cfg.dilation))));
    }
    let fail = || {
        Error::shape(
            op,
            format!(
                "kernel {:?} with dilation {:?} does not fit the padded input {:?} (padding {:?})",
                &ws[2..],
                pair(cfg.dilation),
                &xs[2..],
                pair(cfg.padding)
            ),
        )
    };
    let oh = conv_output_size(x[2], w[2], cfg.stride[0], cfg.padding[0], cfg.dilation[0]).ok_or_else(fail)?;
    let ow = conv_output_size(x[3], w[3], cfg.stride[1], cfg.padding[1], cfg.dilation[1]).ok_or_else(fail)?;
    Ok(Geometry { n: x[0], c: x[1], h: x[2], w: x[3], o: w[0], kh: w[2], kw: w[3], oh, ow, cfg })
}
