//! Linear layers, the filterbank front end's strided 2-D convolutions, layer norm, softmax over
//! the last axis, Swish and the conformer's depthwise convolution as single CPU ops with
//! hand-written backward passes.
//!
//! In plain candle operations each of these is a chain of three to ten elementwise and
//! reduction ops with a fresh allocation each, and the backward pass adds as many again, plus a
//! sum over the batch and time axes for every broadcast weight (candle's strided reductions).
//! Here each is one pass forward and one backward, parallel over fixed blocks of rows, with
//! every sum over rows taken block by block in a fixed order: results do not depend on the
//! number of threads. (candle's linear layer broadcasts its weight over the batch and adds the
//! bias by broadcasting, so its backward pass sums a `[B, in, out]` weight gradient over `B`
//! and the bias gradient over `B` and `T`; here the rows of any leading shape are one GEMM each
//! way.) The plain-op versions stay as the reference the tests compare against
//! and as the path on other devices and dtypes (`LayerNorm::forward_candle`,
//! `softmax_candle`, `swish_candle`,
//! `depthwise_conv_candle`).

use candle_core::{DType, Shape, Tensor, bail};
use ent_kernels::Float;
use ent_kernels::gemm::{Mat, Threads, matmul};
use ent_kernels::op::{BackwardArgs, CpuOp, Forward, Fwd, Grads};
use rayon::prelude::*;

/// Rows per parallel task: fixed, so that block-wise partial sums do not depend on threads.
const ROWS: usize = 64;

/// Whether the ops of this module run on `x` (and tensors of its dtype): the CPU, f32 or f64.
pub(crate) fn fusable(x: &Tensor, others: &[&Tensor]) -> bool {
    x.device().is_cpu()
        && matches!(x.dtype(), DType::F32 | DType::F64)
        && others
            .iter()
            .all(|o| o.dtype() == x.dtype() && o.device().is_cpu())
}

fn all3<F>((dx, dw, db): (Vec<F>, Vec<F>, Vec<F>)) -> Grads<F> {
    Ok(vec![Some(dx), Some(dw), Some(db)])
}

/// Sums the per-block partial vectors in block order.
fn sum_parts<F: Float>(parts: &[Vec<F>], n: usize) -> Vec<F> {
    let mut out = vec![F::ZERO; n];
    for p in parts {
        for (o, &x) in out.iter_mut().zip(p) {
            *o += x;
        }
    }
    out
}

// ---------------------------------------------------------------------------------------------
// Layer norm

/// `y = (x - mean) / sqrt(var + eps) * w + b` over the last axis: inputs `x` `[..., D]`, `w`
/// and `b` `[D]`.
#[derive(Debug, Clone, Copy)]
pub(crate) struct LayerNormOp {
    pub eps: f64,
}

/// Mean and `1 / sqrt(var + eps)` of one row (the biased variance, as PyTorch).
#[inline(always)]
fn row_stats<F: Float>(x: &[F], eps: f64) -> (F, F) {
    let n = F::from_f64(x.len() as f64);
    let mut s = F::ZERO;
    for &v in x {
        s += v;
    }
    let mean = s / n;
    let mut q = F::ZERO;
    for &v in x {
        let c = v - mean;
        q += c * c;
    }
    (mean, F::ONE / (q / n + F::from_f64(eps)).sqrt())
}

/// `f(out_row, in_row)` for every row of `d` values of `x`, in parallel over blocks of
/// [`ROWS`] rows: the output rows (zeros before `f`).
fn map_rows<F: Float>(x: &[F], d: usize, f: impl Fn(&mut [F], &[F]) + Sync) -> Vec<F> {
    let mut y = vec![F::ZERO; x.len()];
    if d == 0 {
        return y;
    }
    y.par_chunks_mut(ROWS * d)
        .zip(x.par_chunks(ROWS * d))
        .for_each(|(yc, xc)| {
            for (yr, xr) in yc.chunks_exact_mut(d).zip(xc.chunks_exact(d)) {
                f(yr, xr);
            }
        });
    y
}

fn ln_forward<F: Float>(x: &[F], w: &[F], b: &[F], eps: f64) -> Vec<F> {
    map_rows(x, w.len(), |yr, xr| {
        let (mean, rstd) = row_stats(xr, eps);
        for k in 0..w.len() {
            yr[k] = (xr[k] - mean) * rstd * w[k] + b[k];
        }
    })
}

/// `(dx, dw, db)` for the incoming gradient `g`.
fn ln_backward<F: Float>(x: &[F], w: &[F], g: &[F], eps: f64) -> (Vec<F>, Vec<F>, Vec<F>) {
    let d = w.len();
    let inv_d = F::ONE / F::from_f64(d as f64);
    let mut dx = vec![F::ZERO; x.len()];
    if d == 0 {
        return (dx, Vec::new(), Vec::new());
    }
    let parts: Vec<(Vec<F>, Vec<F>)> = dx
        .par_chunks_mut(ROWS * d)
        .zip(x.par_chunks(ROWS * d))
        .zip(g.par_chunks(ROWS * d))
        .map(|((dxc, xc), gc)| {
            let (mut dw, mut db) = (vec![F::ZERO; d], vec![F::ZERO; d]);
            for ((dxr, xr), gr) in dxc
                .chunks_exact_mut(d)
                .zip(xc.chunks_exact(d))
                .zip(gc.chunks_exact(d))
            {
                let (mean, rstd) = row_stats(xr, eps);
                let (mut m1, mut m2) = (F::ZERO, F::ZERO);
                for k in 0..d {
                    let xhat = (xr[k] - mean) * rstd;
                    let gy = gr[k] * w[k];
                    m1 += gy;
                    m2 += gy * xhat;
                    dw[k] += gr[k] * xhat;
                    db[k] += gr[k];
                }
                let (m1, m2) = (m1 * inv_d, m2 * inv_d);
                for k in 0..d {
                    let xhat = (xr[k] - mean) * rstd;
                    dxr[k] = rstd * (gr[k] * w[k] - m1 - xhat * m2);
                }
            }
            (dw, db)
        })
        .collect();
    let (dws, dbs): (Vec<Vec<F>>, Vec<Vec<F>>) = parts.into_iter().unzip();
    (dx, sum_parts(&dws, d), sum_parts(&dbs, d))
}

impl CpuOp for LayerNormOp {
    type Saved = ();

    const NAME: &'static str = "layer-norm";

    fn forward<F: Float>(&self, x: &[&[F]], dims: &[&[usize]]) -> Fwd<F> {
        let d = x[1].len();
        if dims[0].last() != Some(&d) || x[2].len() != d {
            bail!(
                "layer norm: shapes {:?}, {:?}, {:?}",
                dims[0],
                dims[1],
                dims[2]
            );
        }
        Ok(Forward::new(
            ln_forward(x[0], x[1], x[2], self.eps),
            dims[0],
        ))
    }

    fn host_backward<F: Float>(&self, a: &BackwardArgs<'_>, _: &mut Option<()>) -> Grads<F> {
        all3(ln_backward(
            &a.input(0)?,
            &a.input(1)?,
            &a.grad()?,
            self.eps,
        ))
    }
}

// ---------------------------------------------------------------------------------------------
// Softmax over the last axis

/// `softmax` over the last axis (max-subtracted); the backward pass reads the output:
/// `dx = y * (g - sum(g * y))`.
#[derive(Debug, Clone, Copy)]
pub(crate) struct SoftmaxLastOp;

fn softmax_forward<F: Float>(x: &[F], d: usize) -> Vec<F> {
    map_rows(x, d, |yr, xr| {
        let mut m = F::NEG_INFINITY;
        for &v in xr {
            if v > m {
                m = v;
            }
        }
        let mut s = F::ZERO;
        for (o, &v) in yr.iter_mut().zip(xr) {
            *o = (v - m).exp_fast();
            s += *o;
        }
        let inv = F::ONE / s;
        for o in yr.iter_mut() {
            *o *= inv;
        }
    })
}

fn softmax_backward<F: Float>(y: &[F], g: &[F], d: usize) -> Vec<F> {
    let mut dx = vec![F::ZERO; y.len()];
    if d == 0 {
        return dx;
    }
    dx.par_chunks_mut(ROWS * d)
        .zip(y.par_chunks(ROWS * d))
        .zip(g.par_chunks(ROWS * d))
        .for_each(|((dc, yc), gc)| {
            for ((dr, yr), gr) in dc
                .chunks_exact_mut(d)
                .zip(yc.chunks_exact(d))
                .zip(gc.chunks_exact(d))
            {
                let mut dot = F::ZERO;
                for (&a, &b) in yr.iter().zip(gr) {
                    dot += a * b;
                }
                for ((o, &a), &b) in dr.iter_mut().zip(yr).zip(gr) {
                    *o = a * (b - dot);
                }
            }
        });
    dx
}

impl CpuOp for SoftmaxLastOp {
    type Saved = ();

    const NAME: &'static str = "softmax-last";

    fn forward<F: Float>(&self, x: &[&[F]], dims: &[&[usize]]) -> Fwd<F> {
        let d = dims[0].last().copied().unwrap_or(1);
        Ok(Forward::new(softmax_forward(x[0], d), dims[0]))
    }

    fn host_backward<F: Float>(&self, a: &BackwardArgs<'_>, _: &mut Option<()>) -> Grads<F> {
        let d = a.dims(0).last().copied().unwrap_or(1);
        Ok(vec![Some(softmax_backward(&a.output()?, &a.grad()?, d))])
    }
}

// ---------------------------------------------------------------------------------------------
// Swish

/// `x * sigmoid(x)`; the backward pass recomputes the sigmoid:
/// `dx = g * s * (1 + x * (1 - s))`.
#[derive(Debug, Clone, Copy)]
pub(crate) struct SwishOp;

fn swish_forward<F: Float>(x: &[F]) -> Vec<F> {
    let mut y = vec![F::ZERO; x.len()];
    y.par_chunks_mut(1 << 14)
        .zip(x.par_chunks(1 << 14))
        .for_each(|(yc, xc)| {
            for (o, &v) in yc.iter_mut().zip(xc) {
                *o = v * v.sigmoid();
            }
        });
    y
}

fn swish_backward<F: Float>(x: &[F], g: &[F]) -> Vec<F> {
    let mut dx = vec![F::ZERO; x.len()];
    dx.par_chunks_mut(1 << 14)
        .zip(x.par_chunks(1 << 14))
        .zip(g.par_chunks(1 << 14))
        .for_each(|((dc, xc), gc)| {
            for ((o, &v), &gv) in dc.iter_mut().zip(xc).zip(gc) {
                let s = v.sigmoid();
                *o = gv * s * (F::ONE + v * (F::ONE - s));
            }
        });
    dx
}

impl CpuOp for SwishOp {
    type Saved = ();

    const NAME: &'static str = "swish";

    fn forward<F: Float>(&self, x: &[&[F]], dims: &[&[usize]]) -> Fwd<F> {
        Ok(Forward::new(swish_forward(x[0]), dims[0]))
    }

    fn host_backward<F: Float>(&self, a: &BackwardArgs<'_>, _: &mut Option<()>) -> Grads<F> {
        Ok(vec![Some(swish_backward(&a.input(0)?, &a.grad()?))])
    }
}

// ---------------------------------------------------------------------------------------------
// Depthwise convolution over time

/// The conformer's depthwise convolution: inputs `y` `[B, T, D]`, `w` `[K, D]` and
/// `b` `[D]`; `out[b, t, d] = b[d] + sum_j w[j, d] y[b, t + j - K/2, d]`, zero outside
/// `0..T`.
#[derive(Debug, Clone, Copy)]
pub(crate) struct DepthwiseConvOp;

#[derive(Debug, Clone, Copy)]
struct ConvDims {
    t: usize,
    d: usize,
    k: usize,
}

/// The taps `j` and input frames `s = t + j - K/2` that exist for output frame `t`.
#[inline(always)]
fn taps(c: ConvDims, t: usize) -> impl Iterator<Item = (usize, usize)> {
    let half = c.k / 2;
    (0..c.k).filter_map(move |j| {
        let s = (t + j).checked_sub(half)?;
        (s < c.t).then_some((j, s))
    })
}

fn conv_forward<F: Float>(c: ConvDims, y: &[F], w: &[F], bias: &[F]) -> Vec<F> {
    let (t_n, d) = (c.t, c.d);
    let mut out = vec![F::ZERO; y.len()];
    if out.is_empty() {
        return out;
    }
    out.par_chunks_mut(t_n * d)
        .zip(y.par_chunks(t_n * d))
        .for_each(|(ob, yb)| {
            for t in 0..t_n {
                let o = &mut ob[t * d..(t + 1) * d];
                o.copy_from_slice(bias);
                for (j, s) in taps(c, t) {
                    let (wr, yr) = (&w[j * d..(j + 1) * d], &yb[s * d..(s + 1) * d]);
                    for ((x, &a), &b) in o.iter_mut().zip(wr).zip(yr) {
                        *x += a * b;
                    }
                }
            }
        });
    out
}

/// `(dy, dw, db)` for the incoming gradient `g`, one task per utterance.
fn conv_backward<F: Float>(c: ConvDims, y: &[F], w: &[F], g: &[F]) -> (Vec<F>, Vec<F>, Vec<F>) {
    let (t_n, d, k) = (c.t, c.d, c.k);
    let mut dy = vec![F::ZERO; y.len()];
    if dy.is_empty() {
        return (dy, vec![F::ZERO; k * d], vec![F::ZERO; d]);
    }
    let parts: Vec<(Vec<F>, Vec<F>)> = dy
        .par_chunks_mut(t_n * d)
        .zip(y.par_chunks(t_n * d))
        .zip(g.par_chunks(t_n * d))
        .map(|((dyb, yb), gb)| {
            let (mut dw, mut db) = (vec![F::ZERO; k * d], vec![F::ZERO; d]);
            for t in 0..t_n {
                let gr = &gb[t * d..(t + 1) * d];
                for (x, &a) in db.iter_mut().zip(gr) {
                    *x += a;
                }
                for (j, s) in taps(c, t) {
                    let wr = &w[j * d..(j + 1) * d];
                    let yr = &yb[s * d..(s + 1) * d];
                    let dwr = &mut dw[j * d..(j + 1) * d];
                    for ((x, &a), &b) in dwr.iter_mut().zip(gr).zip(yr) {
                        *x += a * b;
                    }
                    let dyr = &mut dyb[s * d..(s + 1) * d];
                    for ((x, &a), &b) in dyr.iter_mut().zip(gr).zip(wr) {
                        *x += a * b;
                    }
                }
            }
            (dw, db)
        })
        .collect();
    let (dws, dbs): (Vec<Vec<F>>, Vec<Vec<F>>) = parts.into_iter().unzip();
    (dy, sum_parts(&dws, k * d), sum_parts(&dbs, d))
}

impl DepthwiseConvOp {
    fn dims(x: &[usize], w: &[usize], b: &[usize]) -> candle_core::Result<ConvDims> {
        match (x, w) {
            ([_, t, d], [k, d2]) if d2 == d && b.iter().product::<usize>() == *d => Ok(ConvDims {
                t: *t,
                d: *d,
                k: *k,
            }),
            _ => bail!("depthwise convolution: shapes {x:?}, {w:?}, {b:?}"),
        }
    }
}

impl CpuOp for DepthwiseConvOp {
    type Saved = ();

    const NAME: &'static str = "depthwise-conv";

    fn forward<F: Float>(&self, x: &[&[F]], dims: &[&[usize]]) -> Fwd<F> {
        let c = Self::dims(dims[0], dims[1], dims[2])?;
        Ok(Forward::new(conv_forward(c, x[0], x[1], x[2]), dims[0]))
    }

    fn host_backward<F: Float>(&self, a: &BackwardArgs<'_>, _: &mut Option<()>) -> Grads<F> {
        let c = Self::dims(a.dims(0), a.dims(1), a.dims(2))?;
        all3(conv_backward(c, &a.input(0)?, &a.input(1)?, &a.grad()?))
    }
}

// ---------------------------------------------------------------------------------------------
// Linear layer

/// `y = x W^T + b`: inputs `x` `[N, in]`, `w` `[out, in]`, `b` `[out]`.
#[derive(Debug, Clone, Copy)]
pub(crate) struct LinearOp;

fn linear_forward<F: Float>(x: &[F], w: &[F], b: &[F], (n, i, o): (usize, usize, usize)) -> Vec<F> {
    let mut y = vec![F::ZERO; n * o];
    if y.is_empty() {
        return y;
    }
    // y[r, c] = sum_k x[r, k] w[c, k]
    matmul(
        (n, o, i),
        &mut y,
        o,
        false,
        Mat::strided(x, i, 1),
        Mat::strided(w, 1, i),
        Threads::Rayon,
    );
    y.par_chunks_mut(ROWS * o).for_each(|yc| {
        for row in yc.chunks_exact_mut(o) {
            for (v, &bb) in row.iter_mut().zip(b) {
                *v += bb;
            }
        }
    });
    y
}

/// `(dx, dw, db)` for the incoming gradient `g` `[N, out]`.
fn linear_backward<F: Float>(
    x: &[F],
    w: &[F],
    g: &[F],
    (n, i, o): (usize, usize, usize),
) -> (Vec<F>, Vec<F>, Vec<F>) {
    let mut dx = vec![F::ZERO; n * i];
    let mut dw = vec![F::ZERO; o * i];
    if n == 0 || o == 0 {
        return (dx, dw, vec![F::ZERO; o]);
    }
    // dx[r, k] = sum_c g[r, c] w[c, k]
    matmul(
        (n, i, o),
        &mut dx,
        i,
        false,
        Mat::strided(g, o, 1),
        Mat::strided(w, i, 1),
        Threads::Rayon,
    );
    // dw[c, k] = sum_r g[r, c] x[r, k]
    matmul(
        (o, i, n),
        &mut dw,
        i,
        false,
        Mat::strided(g, 1, o),
        Mat::strided(x, i, 1),
        Threads::Rayon,
    );
    let parts: Vec<Vec<F>> = g
        .par_chunks(ROWS * o)
        .map(|gc| {
            let mut db = vec![F::ZERO; o];
            for row in gc.chunks_exact(o) {
                for (d, &v) in db.iter_mut().zip(row) {
                    *d += v;
                }
            }
            db
        })
        .collect();
    (dx, dw, sum_parts(&parts, o))
}

impl LinearOp {
    /// `(N, in, out)`.
    fn dims(x: &[usize], w: &[usize], b: &[usize]) -> candle_core::Result<(usize, usize, usize)> {
        match (x, w) {
            ([n, i], [o, i2]) if i2 == i && b.iter().product::<usize>() == *o => Ok((*n, *i, *o)),
            _ => bail!("linear: shapes {x:?}, {w:?}, {b:?}"),
        }
    }
}

impl CpuOp for LinearOp {
    type Saved = ();

    const NAME: &'static str = "linear";

    fn forward<F: Float>(&self, x: &[&[F]], dims: &[&[usize]]) -> Fwd<F> {
        let (n, i, o) = Self::dims(dims[0], dims[1], dims[2])?;
        Ok(Forward::new(
            linear_forward(x[0], x[1], x[2], (n, i, o)),
            (n, o),
        ))
    }

    fn host_backward<F: Float>(&self, a: &BackwardArgs<'_>, _: &mut Option<()>) -> Grads<F> {
        let d = Self::dims(a.dims(0), a.dims(1), a.dims(2))?;
        all3(linear_backward(&a.input(0)?, &a.input(1)?, &a.grad()?, d))
    }
}

// ---------------------------------------------------------------------------------------------
// Strided 2-D convolution without padding

/// `out[b, o, y, x] = bias[o] + sum_{c,i,j} w[o, c, i, j] in[b, c, s y + i, s x + j]`: inputs
/// `in` `[B, C, H, W]`, `w` `[O, C, KH, KW]`, `bias` `[O]`, stride `s`, no padding. Each
/// utterance is one GEMM over its im2col matrix (`[Ho Wo, C KH KW]`), forward and backward.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Conv2dOp {
    pub stride: usize,
}

#[derive(Debug, Clone, Copy)]
struct Conv2dDims {
    c: usize,
    h: usize,
    w: usize,
    o: usize,
    kh: usize,
    kw: usize,
    s: usize,
    ho: usize,
    wo: usize,
}

impl Conv2dDims {
    fn new(x: &[usize], w: &[usize], s: usize) -> candle_core::Result<Self> {
        let ([_, c, h, wd], [o, c2, kh, kw]) = (x, w) else {
            bail!("conv2d: shapes {x:?}, {w:?}");
        };
        if c != c2 || *c == 0 || *o == 0 || h < kh || wd < kw || s == 0 {
            bail!("conv2d: shapes {x:?}, {w:?}, stride {s}");
        }
        Ok(Self {
            c: *c,
            h: *h,
            w: *wd,
            o: *o,
            kh: *kh,
            kw: *kw,
            s,
            ho: (h - kh) / s + 1,
            wo: (wd - kw) / s + 1,
        })
    }

    fn patch(&self) -> usize {
        self.c * self.kh * self.kw
    }

    fn positions(&self) -> usize {
        self.ho * self.wo
    }

    /// `cols[p, (c, i, j)] = x[c, s y + i, s x + j]` for `p = y Wo + x`, one utterance.
    fn im2col<F: Float>(&self, x: &[F], cols: &mut [F]) {
        let k = self.patch();
        for y in 0..self.ho {
            for xo in 0..self.wo {
                let row = &mut cols[(y * self.wo + xo) * k..(y * self.wo + xo + 1) * k];
                let mut n = 0;
                for c in 0..self.c {
                    for i in 0..self.kh {
                        let src = (c * self.h + self.s * y + i) * self.w + self.s * xo;
                        let (dst, from) = (&mut row[n..n + self.kw], &x[src..src + self.kw]);
                        if let ([d0, d1, d2], [v0, v1, v2]) = (dst, from) {
                            // The front end's 3x3 kernels: three moves, not a `memmove` call.
                            (*d0, *d1, *d2) = (*v0, *v1, *v2);
                        } else {
                            row[n..n + self.kw].copy_from_slice(&x[src..src + self.kw]);
                        }
                        n += self.kw;
                    }
                }
            }
        }
    }

    /// The transpose of [`Conv2dDims::im2col`]: adds `dcols` into `dx`, one utterance.
    fn col2im<F: Float>(&self, dcols: &[F], dx: &mut [F]) {
        let k = self.patch();
        for y in 0..self.ho {
            for xo in 0..self.wo {
                let row = &dcols[(y * self.wo + xo) * k..(y * self.wo + xo + 1) * k];
                let mut n = 0;
                for c in 0..self.c {
                    for i in 0..self.kh {
                        let dst = (c * self.h + self.s * y + i) * self.w + self.s * xo;
                        for (d, &v) in dx[dst..dst + self.kw].iter_mut().zip(&row[n..n + self.kw]) {
                            *d += v;
                        }
                        n += self.kw;
                    }
                }
            }
        }
    }
}

fn conv2d_forward<F: Float>(d: Conv2dDims, x: &[F], w: &[F], bias: &[F]) -> Vec<F> {
    let (p, k, per_in) = (d.positions(), d.patch(), d.c * d.h * d.w);
    let mut out = vec![F::ZERO; x.len() / per_in.max(1) * d.o * p];
    if out.is_empty() {
        return out;
    }
    out.par_chunks_mut(d.o * p)
        .zip(x.par_chunks(per_in))
        .for_each(|(ob, xb)| {
            let mut cols = vec![F::ZERO; p * k];
            d.im2col(xb, &mut cols);
            // out[o, p] = sum_k w[o, k] cols[p, k]
            matmul(
                (d.o, p, k),
                ob,
                p,
                false,
                Mat::strided(w, k, 1),
                Mat::strided(&cols, 1, k),
                Threads::One,
            );
            for (row, &bb) in ob.chunks_exact_mut(p).zip(bias) {
                for v in row {
                    *v += bb;
                }
            }
        });
    out
}

/// `(dx, dw, db)` for the incoming gradient `g` `[B, O, Ho, Wo]`, one task per utterance.
fn conv2d_backward<F: Float>(d: Conv2dDims, x: &[F], w: &[F], g: &[F]) -> (Vec<F>, Vec<F>, Vec<F>) {
    let (p, k, per_in) = (d.positions(), d.patch(), d.c * d.h * d.w);
    let mut dx = vec![F::ZERO; x.len()];
    if dx.is_empty() || p == 0 {
        return (dx, vec![F::ZERO; d.o * k], vec![F::ZERO; d.o]);
    }
    let parts: Vec<(Vec<F>, Vec<F>)> = dx
        .par_chunks_mut(per_in)
        .zip(x.par_chunks(per_in))
        .zip(g.par_chunks(d.o * p))
        .map(|((dxb, xb), gb)| {
            let mut cols = vec![F::ZERO; p * k];
            d.im2col(xb, &mut cols);
            let mut dw = vec![F::ZERO; d.o * k];
            // dw[o, k] = sum_p g[o, p] cols[p, k]
            matmul(
                (d.o, k, p),
                &mut dw,
                k,
                false,
                Mat::strided(gb, p, 1),
                Mat::strided(&cols, k, 1),
                Threads::One,
            );
            let db: Vec<F> = gb
                .chunks_exact(p)
                .map(|row| {
                    let mut acc = F::ZERO;
                    for &v in row {
                        acc += v;
                    }
                    acc
                })
                .collect();
            // dcols[p, k] = sum_o g[o, p] w[o, k], reusing the buffer
            matmul(
                (p, k, d.o),
                &mut cols,
                k,
                false,
                Mat::strided(gb, 1, p),
                Mat::strided(w, k, 1),
                Threads::One,
            );
            d.col2im(&cols, dxb);
            (dw, db)
        })
        .collect();
    let (dws, dbs): (Vec<Vec<F>>, Vec<Vec<F>>) = parts.into_iter().unzip();
    (dx, sum_parts(&dws, d.o * k), sum_parts(&dbs, d.o))
}

impl CpuOp for Conv2dOp {
    type Saved = ();

    const NAME: &'static str = "conv2d";

    fn forward<F: Float>(&self, x: &[&[F]], dims: &[&[usize]]) -> Fwd<F> {
        let d = Conv2dDims::new(dims[0], dims[1], self.stride)?;
        if x[2].len() != d.o {
            bail!("conv2d: bias {:?} for {} outputs", dims[2], d.o);
        }
        let shape = Shape::from((dims[0][0], d.o, d.ho, d.wo));
        Ok(Forward::new(conv2d_forward(d, x[0], x[1], x[2]), shape))
    }

    fn host_backward<F: Float>(&self, a: &BackwardArgs<'_>, _: &mut Option<()>) -> Grads<F> {
        let d = Conv2dDims::new(a.dims(0), a.dims(1), self.stride)?;
        all3(conv2d_backward(d, &a.input(0)?, &a.input(1)?, &a.grad()?))
    }
}
