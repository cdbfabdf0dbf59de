//! Row kernels over the vocabulary axis: maximum, `exp(x - shift)` with its sum, and in-place
//! scaling. These are the only passes over the `B*T*(U+1)*V` logits, so they decide the speed
//! of the whole loss.
//!
//! The f32 kernels are written as fixed-width lane loops that LLVM vectorises, compiled three
//! times (AVX-512F, AVX2+FMA, baseline) and chosen at run time. Every version performs the same
//! operations in the same order (no fused multiply-add contraction happens in Rust), so the
//! results are bitwise identical whichever instruction set runs them.

/// Accumulator lanes. Sixteen f32 lanes fill one AVX-512 register or two AVX2 registers.
const LANES: usize = 16;

/// `exp(x)` for the arguments the loss produces (`x = z - rowmax <= 0`), vectorisable.
///
/// Cephes' single-precision range reduction and polynomial: `x = n ln 2 + r`, `|r| <= ln2 / 2`,
/// relative error within 2 ulp over `[-87, 88]` (checked against `f64::exp` in the tests).
/// Below -87 the result is 0 (the true value is under 1.7e-38, invisible next to the row
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

#[inline(always)]
fn max_generic(x: &[f32]) -> f32 {
    let mut acc = [f32::NEG_INFINITY; LANES];
    let chunks = x.chunks_exact(LANES);
    let tail = chunks.remainder();
    for c in chunks {
        for i in 0..LANES {
            acc[i] = if c[i] > acc[i] { c[i] } else { acc[i] };
        }
    }
    for (a, &v) in acc.iter_mut().zip(tail) {
        *a = if v > *a { v } else { *a };
    }
    acc.iter()
        .fold(f32::NEG_INFINITY, |m, &v| if v > m { v } else { m })
}

#[inline(always)]
fn reduce_sum(acc: [f32; LANES]) -> f32 {
    let mut w = acc;
    let mut n = LANES / 2;
    while n > 0 {
        for i in 0..n {
            w[i] += w[i + n];
        }
        n /= 2;
    }
    w[0]
}

#[inline(always)]
fn exp_sum_generic(x: &[f32], shift: f32) -> f32 {
    let mut acc = [0.0f32; LANES];
    let chunks = x.chunks_exact(LANES);
    let tail = chunks.remainder();
    for c in chunks {
        for i in 0..LANES {
            acc[i] += exp_f32(c[i] - shift);
        }
    }
    for (a, &v) in acc.iter_mut().zip(tail) {
        *a += exp_f32(v - shift);
    }
    reduce_sum(acc)
}

#[inline(always)]
fn exp_store_sum_generic(x: &[f32], shift: f32, out: &mut [f32]) -> f32 {
    debug_assert_eq!(x.len(), out.len());
    let mut acc = [0.0f32; LANES];
    let mut xc = x.chunks_exact(LANES);
    let mut oc = out.chunks_exact_mut(LANES);
    for (c, o) in (&mut xc).zip(&mut oc) {
        for i in 0..LANES {
            let e = exp_f32(c[i] - shift);
            o[i] = e;
            acc[i] += e;
        }
    }
    for ((a, &v), o) in acc.iter_mut().zip(xc.remainder()).zip(oc.into_remainder()) {
        let e = exp_f32(v - shift);
        *o = e;
        *a += e;
    }
    reduce_sum(acc)
}

/// In place: `x = exp(x - shift)`, returning the sum. Used when the row was first converted
/// into the output buffer (f16 and bf16 inputs).
#[inline(always)]
fn exp_inplace_sum_generic(x: &mut [f32], shift: f32) -> f32 {
    let mut acc = [0.0f32; LANES];
    let mut chunks = x.chunks_exact_mut(LANES);
    for c in &mut chunks {
        for i in 0..LANES {
            let e = exp_f32(c[i] - shift);
            c[i] = e;
            acc[i] += e;
        }
    }
    for (a, v) in acc.iter_mut().zip(chunks.into_remainder()) {
        let e = exp_f32(*v - shift);
        *v = e;
        *a += e;
    }
    reduce_sum(acc)
}

#[inline(always)]
fn scale_generic(x: &mut [f32], s: f32) {
    for v in x.iter_mut() {
        *v *= s;
    }
}

/// Defines a public dispatching function and its per-instruction-set copies.
macro_rules! dispatch {
    ($(#[$m:meta])* $name:ident => $generic:ident ( $($arg:ident : $ty:ty),* ) -> $ret:ty) => {
        $(#[$m])*
        #[inline]
        pub(crate) fn $name($($arg: $ty),*) -> $ret {
            #[cfg(target_arch = "x86_64")]
            {
                #[target_feature(enable = "avx512f")]
                fn avx512($($arg: $ty),*) -> $ret { $generic($($arg),*) }
                #[target_feature(enable = "avx2,fma")]
                fn avx2($($arg: $ty),*) -> $ret { $generic($($arg),*) }
                match level() {
                    // SAFETY: level() reported that this CPU supports AVX-512F.
                    Level::Avx512 => return unsafe { avx512($($arg),*) },
                    // SAFETY: level() reported that this CPU supports AVX2 and FMA.
                    Level::Avx2 => return unsafe { avx2($($arg),*) },
                    Level::Base => {}
                }
            }
            $generic($($arg),*)
        }
    };
}

#[cfg(target_arch = "x86_64")]
#[derive(Clone, Copy, PartialEq, Eq)]
enum Level {
    Avx512,
    Avx2,
    Base,
}

#[cfg(target_arch = "x86_64")]
fn level() -> Level {
    use std::sync::OnceLock;
    static LEVEL: OnceLock<Level> = OnceLock::new();
    *LEVEL.get_or_init(|| {
        if std::env::var_os("ENT_LATTICE_NO_SIMD").is_some() {
            Level::Base
        } else if std::arch::is_x86_feature_detected!("avx512f") {
            Level::Avx512
        } else if std::arch::is_x86_feature_detected!("avx2")
            && std::arch::is_x86_feature_detected!("fma")
        {
            Level::Avx2
        } else {
            Level::Base
        }
    })
}

dispatch!(
    /// The maximum of a row (`-inf` for an empty row). NaN entries are skipped here; they
    /// reach the result through [`exp_sum`] instead.
    max => max_generic(x: &[f32]) -> f32
);
dispatch!(
    /// `sum_k exp(x_k - shift)`.
    exp_sum => exp_sum_generic(x: &[f32], shift: f32) -> f32
);
dispatch!(
    /// `out_k = exp(x_k - shift)`, returning `sum_k out_k`.
    exp_store_sum => exp_store_sum_generic(x: &[f32], shift: f32, out: &mut [f32]) -> f32
);
dispatch!(
    /// `x_k = exp(x_k - shift)` in place, returning the sum.
    exp_inplace_sum => exp_inplace_sum_generic(x: &mut [f32], shift: f32) -> f32
);
dispatch!(
    /// `x_k *= s` in place.
    scale => scale_generic(x: &mut [f32], s: f32) -> ()
);

#[cfg(test)]
mod tests {
    use super::*;

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
    fn dispatched_kernels_match_scalar_sums() {
        // Lengths around the lane width exercise the tails.
        for n in [0usize, 1, 7, 15, 16, 17, 31, 33, 100, 1000] {
            let x: Vec<f32> = (0..n)
                .map(|i| ((i * 37 % 101) as f32) * 0.13 - 6.0)
                .collect();
            let m = max(&x);
            let want_max = x.iter().copied().fold(f32::NEG_INFINITY, f32::max);
            assert_eq!(m, want_max);
            let want: f64 = x.iter().map(|&v| ((v - m) as f64).exp()).sum();
            let s = exp_sum(&x, m) as f64;
            let mut out = vec![0.0; n];
            let s2 = exp_store_sum(&x, m, &mut out) as f64;
            let mut y = x.clone();
            let s3 = exp_inplace_sum(&mut y, m) as f64;
            assert_eq!(out, y);
            for (o, &v) in out.iter().zip(&x) {
                assert!(((*o as f64) - ((v - m) as f64).exp()).abs() <= 3e-7);
            }
            for got in [s, s2, s3] {
                assert!(
                    (got - want).abs() <= 1e-6 * want.max(1.0),
                    "n={n}: {got} vs {want}"
                );
            }
            scale(&mut y, 2.0);
            assert!(y.iter().zip(&out).all(|(a, b)| *a == 2.0 * b));
        }
    }

    #[test]
    fn nan_reaches_the_sum() {
        let x = [1.0, f32::NAN, 0.5];
        let m = max(&x);
        assert_eq!(m, 1.0);
        assert!(exp_sum(&x, m).is_nan());
    }
}
