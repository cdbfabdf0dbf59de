//! Row kernels over the vocabulary axis of a lattice: maximum, `exp(x - shift)` with its sum,
//! and in-place scaling. They are the only passes over the `B*T*(U+1)*V` logits of the RNN-T
//! loss, so they decide its speed.
//!
//! Fixed-width lane loops that LLVM vectorises, dispatched by [`crate::simd_dispatch`]: every
//! instruction set computes the same bits.

use crate::math::exp_f32;

/// Accumulator lanes. Sixteen f32 lanes fill one AVX-512 register or two AVX2 registers.
const LANES: usize = 16;

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

crate::simd_dispatch!(
    /// The maximum of a row (`-inf` for an empty row). NaN entries are skipped here; they
    /// reach the result through [`exp_sum`] instead.
    pub fn max => max_generic(x: &[f32]) -> f32
);
crate::simd_dispatch!(
    /// `sum_k exp(x_k - shift)`.
    pub fn exp_sum => exp_sum_generic(x: &[f32], shift: f32) -> f32
);
crate::simd_dispatch!(
    /// `out_k = exp(x_k - shift)`, returning `sum_k out_k`.
    pub fn exp_store_sum => exp_store_sum_generic(x: &[f32], shift: f32, out: &mut [f32]) -> f32
);
crate::simd_dispatch!(
    /// `x_k = exp(x_k - shift)` in place, returning the sum.
    pub fn exp_inplace_sum => exp_inplace_sum_generic(x: &mut [f32], shift: f32) -> f32
);
crate::simd_dispatch!(
    /// `x_k *= s` in place.
    pub fn scale => scale_generic(x: &mut [f32], s: f32) -> ()
);

#[cfg(test)]
mod tests {
    use super::*;

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
