//! Branch-free `exp`, `tanh` and `sigmoid` for `f32` that the compiler vectorises.
//!
//! `f32::exp` and friends are calls into libm, one element at a time; a loop over these
//! straight-line versions compiles to SIMD code (and [`super::kernel`] runs it with AVX2 or
//! AVX-512 where the CPU has them). Accuracy: `exp` within 2 ulp and `tanh`, `sigmoid`
//! within 3 ulp of the correctly rounded result (tested in `mod tests` below).

const LOG2_E: f32 = std::f32::consts::LOG2_E;
/// ln 2 split in a part exact in f32 and a correction, so `x - n ln2` loses nothing.
const LN2_HI: f32 = 0.693_145_75;
const LN2_LO: f32 = 1.428_606_8e-6;
/// Adding then subtracting 1.5 · 2²³ rounds an f32 to the nearest integer without a call.
const ROUNDER: f32 = 12_582_912.0;
/// Beyond these, e^x is inf or underflows to 0.
const EXP_HI: f32 = 88.722_84;
const EXP_LO: f32 = -103.972_08;

/// e^x: x = n ln2 + r with |r| ≤ ln2/2, e^r by its Taylor polynomial to r⁷ (error below
/// 2⁻²⁴ relative), scaled by 2^n in two halves so that the extremes of n stay normal.
///
/// Written for the vectoriser: `max`/`min` rather than `clamp` (whose NaN rule and
/// assertion keep loops scalar), the integer n read from the rounder's bits rather than an
/// `as i32` cast, and selects at the end for overflow, underflow and NaN.
#[inline(always)]
pub fn exp(x: f32) -> f32 {
    #[allow(clippy::manual_clamp)] // clamp keeps the loop scalar (see above)
    let xc = x.max(EXP_LO).min(EXP_HI);
    let n = (xc * LOG2_E + ROUNDER) - ROUNDER;
    let r = (-n).mul_add(LN2_LO, (-n).mul_add(LN2_HI, xc));
    let p = polynomial(r, &[1.0, 1.0, 0.5, 1.0 / 6.0, 1.0 / 24.0, 1.0 / 120.0, 1.0 / 720.0, 1.0 / 5040.0]);
    // n + 1.5·2²³ holds n in its low mantissa bits: subtracting the rounder's bits gives n.
    let n_int = (n + ROUNDER).to_bits() as i32 - ROUNDER.to_bits() as i32;
    let half = n_int >> 1;
    let y = p * pow2i(half) * pow2i(n_int - half);
    let y = if x > EXP_HI { f32::INFINITY } else { y };
    let y = if x < EXP_LO { 0.0 } else { y };
    if x.is_nan() { x } else { y }
}

/// `c[0] + c[1] x + … + c[7] x⁷` by Estrin's scheme: pairs `c[2i] + c[2i+1] x`, joined by
/// `x²` then `x⁴`, in fused multiply-adds. These loops are bound by the latency of the
/// chain of dependent operations, not by their count: Horner's rule with separate products
/// and sums is a chain of 14, this one of 4 (with `x²` and `x⁴` beside it). `mul_add` is
/// one instruction in the crate's AVX2 and AVX-512 loops and rounds once wherever it runs,
/// so every path gives the same bits (on an x86-64 CPU without FMA it is a library call:
/// slower, not different). `RAYON_NUM_THREADS=1 cargo bench --bench ops --
/// w7_elementwise/fwd` measures the difference.
#[inline(always)]
fn polynomial(x: f32, c: &[f32; 8]) -> f32 {
    let x2 = x * x;
    let x4 = x2 * x2;
    let low = c[3].mul_add(x, c[2]).mul_add(x2, c[1].mul_add(x, c[0]));
    let high = c[7].mul_add(x, c[6]).mul_add(x2, c[5].mul_add(x, c[4]));
    high.mul_add(x4, low)
}

/// 2^n for an integer n in [-126, 127], built from its exponent bits.
#[inline(always)]
fn pow2i(n: i32) -> f32 {
    f32::from_bits(((n + 127) as u32) << 23)
}

/// σ(x) from `e = e^{-|x|}`, which never overflows: `1 / (1 + e)` for `x ≥ 0` and
/// `e / (1 + e)` below, so the tiny values of the far negative tail keep their digits.
#[inline(always)]
pub fn sigmoid(x: f32) -> f32 {
    let e = exp(-x.abs());
    let r = 1.0 / (1.0 + e);
    if x >= 0.0 { r } else { e * r }
}

/// tanh x = sign(x) · d / (d + 2) with d = e^{2|x|} − 1, computed as `expm1`: with
/// 2|x| = n ln2 + r, d = 2ⁿ (e^r − 1) + (2ⁿ − 1), where e^r − 1 = r + r² p(r) keeps its
/// digits however small r is (as `1 − 2/(e^{2x} + 1)` would not, near 0). One polynomial and one division
/// per element, and no second formula for small |x| to select from. |x| is capped at 10,
/// past which tanh rounds to ±1.
#[inline(always)]
pub fn tanh(x: f32) -> f32 {
    let y = (2.0 * x.abs()).min(20.0);
    let n = (y * LOG2_E + ROUNDER) - ROUNDER;
    let r = (-n).mul_add(LN2_LO, (-n).mul_add(LN2_HI, y));
    let p = polynomial(r, &[0.5, 1.0 / 6.0, 1.0 / 24.0, 1.0 / 120.0, 1.0 / 720.0, 1.0 / 5040.0, 1.0 / 40_320.0, 1.0 / 362_880.0]);
    let em1 = (r * r).mul_add(p, r);
    let n_int = (n + ROUNDER).to_bits() as i32 - ROUNDER.to_bits() as i32;
    let scale = pow2i(n_int);
    let d = scale.mul_add(em1, scale - 1.0);
    let t = (d / (d + 2.0)).copysign(x);
    if x.is_nan() { x } else { t }
}

#[cfg(test)]
mod tests {
    fn ulps(a: f32, b: f32) -> u32 {
        if a == b || (a.is_nan() && b.is_nan()) {
            return 0;
        }
        (a.to_bits() as i64 - b.to_bits() as i64).unsigned_abs() as u32
    }

    fn sweep() -> impl Iterator<Item = f32> {
        (-2_000_000..=2_000_000)
            .map(|i| i as f32 * 6e-5)
            .chain([-1e-30, 1e-30, 0.0, -0.0, 1e-8, -1e-8, 80.0, 88.7, -88.0, -103.0, -110.0, 100.0])
    }

    #[test]
    fn exp_is_within_2_ulp_of_the_f64_result() {
        for x in sweep().chain((-870..=887).map(|i| i as f32 * 0.1)) {
            let (a, b) = (super::exp(x), (x as f64).exp() as f32);
            // Subnormal results are flushed: compare those absolutely.
            assert!(ulps(a, b) <= 2 || (b < f32::MIN_POSITIVE && a < f32::MIN_POSITIVE * 4.0), "exp({x}) = {a}, f64 {b}");
        }
        assert_eq!(super::exp(f32::INFINITY), f32::INFINITY);
        assert_eq!(super::exp(f32::NEG_INFINITY), 0.0);
        assert!(super::exp(f32::NAN).is_nan());
    }

    #[test]
    fn tanh_and_sigmoid_are_within_3_ulp_of_the_f64_result() {
        let (mut worst_tanh, mut worst_sigmoid) = (0, 0);
        for x in sweep() {
            let d = x as f64;
            worst_tanh = worst_tanh.max(ulps(super::tanh(x), d.tanh() as f32));
            worst_sigmoid = worst_sigmoid.max(ulps(super::sigmoid(x), (1.0 / (1.0 + (-d).exp())) as f32));
        }
        println!("worst: tanh {worst_tanh} ulp, sigmoid {worst_sigmoid} ulp");
        assert!(worst_tanh <= 3 && worst_sigmoid <= 3, "tanh {worst_tanh} ulp, sigmoid {worst_sigmoid} ulp");
        assert_eq!((super::tanh(50.0), super::tanh(-50.0)), (1.0, -1.0));
        assert!(super::tanh(f32::NAN).is_nan() && super::sigmoid(f32::NAN).is_nan());
    }
}
