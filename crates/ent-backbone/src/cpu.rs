//! CPU fast paths of the frozen forward pass.
//!
//! - The convolutional front end runs on time-major data `[B][L][C]`, where the input window of
//!   output frame `t` (`K` frames from `s * t`) is `K * C_in` contiguous floats. A convolution is
//!   then one matrix product per utterance, `Y[t, :] = X_window(t) @ W'`, whose left operand is a
//!   strided view of the input with row stride `s * C_in` and no copy (no im2col), and whose
//!   right operand `W'[(j * C_in + c), o] = W[o, c, j]` is packed once at load time. Only each
//!   utterance's valid frames are computed; padded frames are zero.
//! - Bias, normalisation and activation follow in one pass over the output.
//! - GELU uses a rational approximation of erf that the compiler vectorises (|error| < 5e-7,
//!   tested against an f64 erf), instead of a scalar erf per element.
//!
//! The candle-op path in `model.rs` is the reference these are tested against.

use ent_kernels::gemm::{Mat, Threads, matmul};
use rayon::prelude::*;

use crate::config::Activation;

/// Rows per parallel task in the element-wise passes.
const ROWS_PER_TASK: usize = 256;

/// One front-end convolution, packed for the CPU path.
#[derive(Debug)]
pub(crate) struct CpuConv {
    /// `[K * C_in, C_out]`.
    weight: Vec<f32>,
    bias: Option<Vec<f32>>,
    kernel: usize,
    stride: usize,
    c_in: usize,
    c_out: usize,
    norm: CpuNorm,
}

#[derive(Debug)]
pub(crate) enum CpuNorm {
    None,
    /// Per-channel statistics over the utterance's valid frames (GroupNorm, one channel per group).
    Group {
        weight: Vec<f32>,
        bias: Vec<f32>,
    },
    /// Per-frame statistics over channels (LayerNorm).
    Layer {
        weight: Vec<f32>,
        bias: Vec<f32>,
    },
}

impl CpuConv {
    /// `weight`: PyTorch's `[C_out, C_in, K]`, row-major.
    pub(crate) fn new(
        weight: &[f32],
        c_out: usize,
        c_in: usize,
        kernel: usize,
        stride: usize,
        bias: Option<Vec<f32>>,
        norm: CpuNorm,
    ) -> Self {
        let mut packed = vec![0f32; kernel * c_in * c_out];
        for o in 0..c_out {
            for c in 0..c_in {
                for j in 0..kernel {
                    packed[(j * c_in + c) * c_out + o] = weight[(o * c_in + c) * kernel + j];
                }
            }
        }
        Self {
            weight: packed,
            bias,
            kernel,
            stride,
            c_in,
            c_out,
            norm,
        }
    }
}

/// Runs the front end on `waves` (`[B][S]`, utterance b valid for `lens[b]` samples, each at
/// least the receptive field). Returns `[B][T][C]` time-major features, T and the valid frames.
pub(crate) fn front_end(
    convs: &[CpuConv],
    waves: Vec<f32>,
    samples: usize,
    lens: &[usize],
    act: Activation,
    eps: f64,
) -> (Vec<f32>, usize, Vec<usize>) {
    let batch = lens.len();
    let mut x = waves;
    let mut len_in = samples;
    let mut lens = lens.to_vec();
    for conv in convs {
        debug_assert_eq!(x.len(), batch * len_in * conv.c_in);
        let len_out = (len_in - conv.kernel) / conv.stride + 1;
        let mut y = vec![0f32; batch * len_out * conv.c_out];
        for (b, len) in lens.iter_mut().enumerate() {
            let n_out = (*len - conv.kernel) / conv.stride + 1;
            let src = &x[b * len_in * conv.c_in..(b + 1) * len_in * conv.c_in];
            let dst = &mut y[b * len_out * conv.c_out..][..n_out * conv.c_out];
            conv.matmul(src, dst, n_out);
            conv.finish(dst, act, eps);
            *len = n_out;
        }
        x = y;
        len_in = len_out;
    }
    (x, len_in, lens)
}

impl CpuConv {
    /// `dst[t, :] = src[s*t .. s*t + K, :] (flattened) @ weight` for `t < n_out`.
    fn matmul(&self, src: &[f32], dst: &mut [f32], n_out: usize) {
        let depth = self.kernel * self.c_in;
        // The last window ends at s * (n_out - 1) * C_in + K * C_in <= len * C_in.
        assert!(n_out == 0 || self.stride * (n_out - 1) * self.c_in + depth <= src.len());
        assert_eq!(dst.len(), n_out * self.c_out);
        assert_eq!(self.weight.len(), depth * self.c_out);
        if n_out == 0 {
            return;
        }
        // Row t of the left operand is the window src[s*t*C_in .. s*t*C_in + K*C_in].
        matmul(
            (n_out, self.c_out, depth),
            dst,
            self.c_out,
            false,
            Mat::strided(src, self.stride * self.c_in, 1),
            Mat::rows(&self.weight, self.c_out),
            Threads::Rayon,
        );
    }

    /// Bias, normalisation and activation over the valid rows `dst` (`[n][C_out]`).
    fn finish(&self, dst: &mut [f32], act: Activation, eps: f64) {
        let c = self.c_out;
        let chunk = ROWS_PER_TASK * c;
        if let Some(bias) = &self.bias {
            dst.par_chunks_mut(chunk).for_each(|rows| {
                for row in rows.chunks_exact_mut(c) {
                    row.iter_mut().zip(bias).for_each(|(v, b)| *v += b);
                }
            });
        }
        match &self.norm {
            CpuNorm::None => dst
                .par_chunks_mut(chunk)
                .for_each(|rows| activate(act, rows)),
            CpuNorm::Group { weight, bias } => {
                let (scale, shift) = channel_affine(dst, c, weight, bias, eps);
                dst.par_chunks_mut(chunk).for_each(|rows| {
                    for row in rows.chunks_exact_mut(c) {
                        for ((v, a), b) in row.iter_mut().zip(&scale).zip(&shift) {
                            *v = *v * a + b;
                        }
                    }
                    activate(act, rows);
                });
            }
            CpuNorm::Layer { weight, bias } => {
                dst.par_chunks_mut(chunk).for_each(|rows| {
                    for row in rows.chunks_exact_mut(c) {
                        layer_norm_row(row, weight, bias, eps);
                    }
                    activate(act, rows);
                });
            }
        }
    }
}

/// Per-channel `scale = w / sqrt(var + eps)`, `shift = b - mean * scale` over all rows of
/// `data` (`[n][c]`). Two passes (mean, then centred squares); sums are f32 within blocks of
/// 256 rows and f64 across blocks, so a base model's first layer (32000 frames per 10 s) loses
/// no more than a 256-term f32 sum does.
fn channel_affine(
    data: &[f32],
    c: usize,
    weight: &[f32],
    bias: &[f32],
    eps: f64,
) -> (Vec<f32>, Vec<f32>) {
    let rows = (data.len() / c).max(1) as f64;
    let add = |mut a: Vec<f64>, b: Vec<f64>| {
        a.iter_mut().zip(&b).for_each(|(x, y)| *x += y);
        a
    };
    // Per block of rows: f32 partial sums over at most ROWS_PER_TASK rows, then f64 across blocks.
    let mean: Vec<f64> = data
        .par_chunks(ROWS_PER_TASK * c)
        .map(|block| {
            let mut acc = vec![0f32; c];
            for row in block.chunks_exact(c) {
                acc.iter_mut().zip(row).for_each(|(a, v)| *a += v);
            }
            acc.into_iter().map(f64::from).collect()
        })
        .reduce(|| vec![0f64; c], add)
        .into_iter()
        .map(|s| s / rows)
        .collect();
    let mean32: Vec<f32> = mean.iter().map(|&m| m as f32).collect();
    let var: Vec<f64> = data
        .par_chunks(ROWS_PER_TASK * c)
        .map(|block| {
            let mut acc = vec![0f32; c];
            for row in block.chunks_exact(c) {
                for ((a, v), m) in acc.iter_mut().zip(row).zip(&mean32) {
                    let d = v - m;
                    *a += d * d;
                }
            }
            acc.into_iter().map(f64::from).collect()
        })
        .reduce(|| vec![0f64; c], add)
        .into_iter()
        .map(|s| s / rows)
        .collect();
    let mut scale = Vec::with_capacity(c);
    let mut shift = Vec::with_capacity(c);
    for ch in 0..c {
        let a = f64::from(weight[ch]) / (var[ch] + eps).sqrt();
        scale.push(a as f32);
        shift.push((f64::from(bias[ch]) - mean[ch] * a) as f32);
    }
    (scale, shift)
}

/// LayerNorm of one row in place, statistics in f64.
fn layer_norm_row(row: &mut [f32], weight: &[f32], bias: &[f32], eps: f64) {
    let n = row.len() as f64;
    let mean = row.iter().map(|&v| f64::from(v)).sum::<f64>() / n;
    let var = row
        .iter()
        .map(|&v| (f64::from(v) - mean).powi(2))
        .sum::<f64>()
        / n;
    let inv = 1.0 / (var + eps).sqrt();
    for ((v, w), b) in row.iter_mut().zip(weight).zip(bias) {
        *v = ((f64::from(*v) - mean) * inv) as f32 * w + b;
    }
}

/// Applies `act` in place.
pub(crate) fn activate(act: Activation, x: &mut [f32]) {
    match act {
        Activation::Gelu => gelu(x),
        Activation::GeluTanh => x.iter_mut().for_each(|v| {
            let u = *v;
            *v = 0.5 * u * (1.0 + (0.797_884_6 * (u + 0.044_715 * u * u * u)).tanh());
        }),
        Activation::Relu => x.iter_mut().for_each(|v| *v = v.max(0.0)),
        Activation::Silu => x.iter_mut().for_each(|v| *v /= 1.0 + (-*v).exp()),
    }
}

ent_kernels::simd_dispatch!(
    /// The exact (erf) GELU in place, `x * (1 + erf(x / sqrt 2)) / 2`, vectorised for the
    /// widest instruction set the CPU has.
    pub(crate) fn gelu => gelu_portable(x: &mut [f32]) -> ()
);

#[inline(always)]
fn gelu_portable(x: &mut [f32]) {
    for v in x.iter_mut() {
        let u = *v;
        *v = 0.5 * u * (1.0 + erf(u * std::f32::consts::FRAC_1_SQRT_2));
    }
}

/// erf(x) in f32: a rational approximation `x P(x^2) / Q(x^2)` on [-4, 4] (the one in Eigen
/// and XLA), |x| > 4 giving +-1 (erf(4) = 1 - 1.5e-8). In exact arithmetic it is within 6.5e-8
/// of erf; evaluated in f32 within 4.2e-7 (worst near |x| = 3.3, tested), so GELU is off by at
/// most 2e-7 of its value.
#[inline(always)]
#[allow(clippy::excessive_precision)] // the published coefficients, as published
pub(crate) fn erf(x: f32) -> f32 {
    let x = x.clamp(-4.0, 4.0);
    let x2 = x * x;
    let mut p = -2.726_142_258_013_06e-10_f32;
    p = p * x2 + 2.770_681_424_959_02e-8;
    p = p * x2 - 2.101_024_020_825_08e-6;
    p = p * x2 - 5.692_506_394_623_46e-5;
    p = p * x2 - 7.349_906_303_268_55e-4;
    p = p * x2 - 2.954_599_808_540_25e-3;
    p = p * x2 - 1.609_603_332_624_15e-2;
    let mut q = -1.456_607_184_649_96e-5_f32;
    q = q * x2 - 2.133_740_552_789_05e-4;
    q = q * x2 - 1.682_826_974_382_03e-3;
    q = q * x2 - 7.373_329_167_204_68e-3;
    q = q * x2 - 1.426_473_905_141_89e-2;
    x * p / q
}

#[cfg(test)]
mod tests {
    use super::*;

    /// erf in f64 by its Taylor series (|x| < 3) and its asymptotic continued fraction beyond:
    /// an independent reference.
    fn erf64(x: f64) -> f64 {
        if x.abs() < 3.0 {
            let mut term = x;
            let mut sum = x;
            for n in 1..200 {
                term *= -x * x / n as f64;
                sum += term / (2 * n + 1) as f64;
            }
            sum * 2.0 / std::f64::consts::PI.sqrt()
        } else {
            // erfc(x) = exp(-x^2)/(x sqrt(pi)) * 1/(1 + 1/(2x^2)/(1 + 2/(2x^2)/(1 + ...)))
            let a = x.abs();
            let mut f = 0.0;
            for k in (1..60).rev() {
                f = (k as f64 / 2.0) / (a + f);
            }
            let erfc = (-a * a).exp() / (a + f) / std::f64::consts::PI.sqrt();
            (1.0 - erfc).copysign(x)
        }
    }

    #[test]
    fn erf_is_within_5e_7() {
        let (mut worst, mut at) = (0f64, 0f64);
        for i in -80_000..=80_000 {
            // The f32 argument exactly, so only the approximation's error is measured.
            let x = f64::from((i as f64 * 1e-4) as f32);
            let err = (f64::from(erf(x as f32)) - erf64(x)).abs();
            if err > worst {
                (worst, at) = (err, x);
            }
        }
        assert!(worst < 5e-7, "max |erf error| {worst:e} at x = {at}");
    }

    #[test]
    fn gelu_dispatch_matches_portable() {
        let xs: Vec<f32> = (-1000..1000).map(|i| i as f32 * 0.013).collect();
        let mut a = xs.clone();
        let mut b = xs;
        gelu(&mut a);
        gelu_portable(&mut b);
        for (x, y) in a.iter().zip(&b) {
            assert!((x - y).abs() <= 1e-6 * x.abs().max(1.0), "{x} vs {y}");
        }
    }
}

/// The positional convolution, packed for the CPU path: grouped, `K` taps, zero padding `K / 2`
/// on each side, output truncated to T frames, bias and activation fused.
#[derive(Debug)]
pub(crate) struct CpuPosConv {
    /// Per group, `[K * Cg, Cg]`: `w[g][(j * Cg + c) * Cg + o] = W[g * Cg + o, c, j]`.
    weight: Vec<Vec<f32>>,
    bias: Vec<f32>,
    kernel: usize,
    /// Channels per group.
    cg: usize,
}

impl CpuPosConv {
    /// `weight`: `[D, D / groups, K]` row-major (weight norm applied).
    pub(crate) fn new(
        weight: &[f32],
        bias: Vec<f32>,
        d: usize,
        groups: usize,
        kernel: usize,
    ) -> Self {
        let cg = d / groups;
        let weight = (0..groups)
            .map(|g| {
                let mut packed = vec![0f32; kernel * cg * cg];
                for o in 0..cg {
                    for c in 0..cg {
                        for j in 0..kernel {
                            packed[(j * cg + c) * cg + o] =
                                weight[((g * cg + o) * cg + c) * kernel + j];
                        }
                    }
                }
                packed
            })
            .collect();
        Self {
            weight,
            bias,
            kernel,
            cg,
        }
    }

    /// `x`: `[B][T][D]` time-major; returns `act(conv(x) + bias)` in the same layout.
    pub(crate) fn forward(
        &self,
        x: &[f32],
        batch: usize,
        frames: usize,
        act: Activation,
    ) -> Vec<f32> {
        let groups = self.weight.len();
        let (cg, k) = (self.cg, self.kernel);
        let d = groups * cg;
        let pad = k / 2;
        let padded = frames + 2 * pad;
        let mut out = vec![0f32; batch * frames * d];
        for b in 0..batch {
            let xb = &x[b * frames * d..(b + 1) * frames * d];
            // Each group's channels, zero padded in time: [T + 2 pad][Cg]; frame t's window is
            // then K * Cg contiguous floats from t * Cg.
            let inputs: Vec<Vec<f32>> = (0..groups)
                .into_par_iter()
                .map(|g| {
                    let mut xg = vec![0f32; padded * cg];
                    for t in 0..frames {
                        xg[(pad + t) * cg..(pad + t + 1) * cg]
                            .copy_from_slice(&xb[t * d + g * cg..t * d + (g + 1) * cg]);
                    }
                    xg
                })
                .collect();
            let results: Vec<Vec<f32>> = (0..groups)
                .into_par_iter()
                .map(|g| {
                    let mut yg = vec![0f32; frames * cg];
                    let depth = k * cg;
                    // Row t of the window view reads xg[t*Cg .. t*Cg + K*Cg] and t + K <= T + 2 pad.
                    assert!((frames - 1 + k) * cg <= inputs[g].len());
                    matmul(
                        (frames, cg, depth),
                        &mut yg,
                        cg,
                        false,
                        Mat::rows(&inputs[g], cg),
                        Mat::rows(&self.weight[g], cg),
                        Threads::One,
                    );
                    yg
                })
                .collect();
            let ob = &mut out[b * frames * d..(b + 1) * frames * d];
            ob.par_chunks_mut(ROWS_PER_TASK * d)
                .enumerate()
                .for_each(|(i, rows)| {
                    for (r, row) in rows.chunks_exact_mut(d).enumerate() {
                        let t = i * ROWS_PER_TASK + r;
                        for (g, yg) in results.iter().enumerate() {
                            row[g * cg..(g + 1) * cg].copy_from_slice(&yg[t * cg..(t + 1) * cg]);
                        }
                        row.iter_mut().zip(&self.bias).for_each(|(v, b)| *v += b);
                    }
                    activate(act, rows);
                });
        }
        out
    }
}
