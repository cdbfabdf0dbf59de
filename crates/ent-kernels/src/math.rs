//! `exp` and `tanh` in f32 that LLVM vectorises: branch-free polynomials instead of calls into
//! the C library, so that a loop over a row runs in vector registers.

/// `exp(x)`, vectorisable.
///
/// Cephes' single-precision range reduction and polynomial: `x = n ln 2 + r`, `|r| <= ln2 / 2`,
/// relative error within 2 ulp over `[-87, 88]` (checked against `f64::exp` in the tests).
/// Below -87 the result is 0 (the true value is under 1.7e-38, invisible next to a row
/// maximum's term of 1), `-inf` gives 0 and NaN gives NaN.
#[inline(always)]
pub fn exp_f32(x: f32) -> f32 {
    const LOG2E: f32 = std::f32::consts::LOG2_E;
    const LN2_HI: f32 = 0.693_359_4;
    const LN2_LO: f32 = -2.121_944_4e-4;
    // 1.5 * 2^23: adding it rounds to an integer held in the low mantissa bits.
    const MAGIC: f32 = 12_582_912.0;
    let t = x * LOG2E + MAGIC;
    let n = t - MAGIC;
    let r = x - n * LN2_HI;
    let r = r - n * LN2_LO;
    let mut p = 1.987_569_1e-4_f32;
    p = p * r + 1.398_199_9e-3;
    p = p * r + 8.333_452e-3;
    p = p * r + 4.166_579_6e-2;
    p = p * r + 1.666_666_5e-1;
    p = p * r + 0.5;
    let y = p * (r * r) + r + 1.0;
    let ni = t.to_bits().wrapping_sub(MAGIC.to_bits()) as i32;
    let scale = f32::from_bits((ni.wrapping_add(127) as u32) << 23);
    let v = y * scale;
    if x < -87.0 { 0.0 } else { v }
}

/// `tanh(x)` as `1 - 2 / (exp(2|x|) + 1)` with the sign of `x`, through [`exp_f32`]: absolute
/// error under 2e-7 (tested against `f64::tanh`); `|x|` above 9 gives `+-1` (`tanh(9)` is 1 in
/// f32), NaN stays NaN.
#[inline(always)]
pub fn tanh_f32(x: f32) -> f32 {
    // Not `min`: a NaN must stay NaN (a diverging run shows as such).
    let a = if x.abs() > 9.0 { 9.0 } else { x.abs() };
    let e = exp_f32(2.0 * a);
    let t = 1.0 - 2.0 / (e + 1.0);
    t.copysign(x)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Float;

    #[test]
    fn exp_matches_f64_within_two_ulp() {
        let mut worst = 0.0f64;
        let mut x = -87.0f32;
        while x <= 88.0 {
            let got = exp_f32(x) as f64;
            let want = (x as f64).exp();
            let ulp = (want as f32).next_up() as f64 - want as f32 as f64;
            worst = worst.max((got - want).abs() / ulp);
            x += 0.000_731;
        }
        assert!(worst <= 2.0, "worst error {worst} ulp");
    }

    #[test]
    fn exp_special_values() {
        assert_eq!(exp_f32(0.0), 1.0);
        assert_eq!(exp_f32(f32::NEG_INFINITY), 0.0);
        assert_eq!(exp_f32(-1e30), 0.0);
        assert!(exp_f32(f32::NAN).is_nan());
    }

    #[test]
    fn fast_tanh_is_within_2e7_of_f64() {
        let mut worst = 0f64;
        let mut x = -12.0f32;
        while x <= 12.0 {
            let got = tanh_f32(x) as f64;
            worst = worst.max((got - (x as f64).tanh()).abs());
            x += 1.0e-3;
        }
        for x in [
            0.0f32,
            -0.0,
            1e-30,
            -1e-8,
            f32::MAX,
            f32::MIN,
            f32::INFINITY,
        ] {
            let got = tanh_f32(x) as f64;
            worst = worst.max((got - (x as f64).tanh()).abs());
        }
        assert!(worst < 2e-7, "{worst}");
        assert!(tanh_f32(f32::NAN).is_nan());
    }

    /// The f32 sigmoid (through the same `exp`): within 2.5e-7 relative of the f64 value over
    /// [-80, 100] (below, within 2.5e-37 absolute), exact limits at the infinities, NaN stays
    /// NaN; the f64 one never overflows.
    #[test]
    fn fast_sigmoid_is_within_2_5e7_of_f64() {
        let mut worst = 0f64;
        let mut x = -100.0f32;
        while x <= 100.0 {
            let want = 1.0 / (1.0 + (-(x as f64)).exp());
            let got = x.sigmoid() as f64;
            // Below -87 the exp is flushed to 0: an absolute error under 1.7e-38.
            let err = if x < -80.0 {
                (got - want).abs() * 1e30
            } else {
                (got - want).abs() / want
            };
            worst = worst.max(err);
            x += 1.0e-3;
        }
        assert!(worst < 2.5e-7, "{worst}");
        assert_eq!(f32::INFINITY.sigmoid(), 1.0);
        assert_eq!(f32::NEG_INFINITY.sigmoid(), 0.0);
        assert!(f32::NAN.sigmoid().is_nan());
        assert_eq!((-745.5f64).sigmoid(), 0.0);
        assert_eq!(800.0f64.sigmoid(), 1.0);
    }
}
