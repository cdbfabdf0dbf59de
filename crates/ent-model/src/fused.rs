//! The joint network over the whole lattice without its hidden layer in memory.
//!
//! `out[b, t, u, :] = W tanh(e[b, t, :] + p[b, u, :])` for the projected encoder frames
//! `e` `[B, T, J]`, the projected predictor states `p` `[B, U+1, J]` and the output weight `W`
//! `[C, J]` (the output bias is added outside). The unfused formulation
//! (`Joint::forward_candle`, `testing::joint_unfused`) materialises the `[B, T, U+1, J]` sum, its `tanh` and,
//! in the backward pass, their gradients: with ENT's sizes (B 8, T 250, U+1 61, J 768) 375 MB
//! each. Here the hidden layer lives only in blocks of [`T_CHUNK`] frames: the forward pass
//! computes a block's `tanh` and multiplies it by `W^T` (one GEMM); the backward pass recomputes
//! it, multiplies the incoming gradient by `W` (one GEMM), applies `1 - tanh^2`, sums over `u`
//! for `de` and over `t` for `dp`, and accumulates `dW` (one GEMM). Blocks run in parallel over
//! (utterance, block) in the forward pass and over utterances in the backward pass; every sum
//! is taken in a fixed order, so results do not depend on the number of threads.

use candle_core::bail;
use rayon::prelude::*;

use ent_kernels::Float;
use ent_kernels::gemm::{Mat, Threads, matmul};
use ent_kernels::op::{BackwardArgs, CpuOp, Forward, Fwd, Grads};

/// Frames per block of the hidden layer.
pub const T_CHUNK: usize = 16;

/// The fused joint: inputs `e` `[B, T, J]`, `p` `[B, U+1, J]`, `w` `[C, J]`, all contiguous, f32
/// or f64, on the CPU; output `[B, T, U+1, C]`.
#[derive(Debug, Clone, Copy)]
pub(crate) struct FusedJoint;

#[derive(Debug, Clone, Copy)]
pub(crate) struct Dims {
    b: usize,
    t: usize,
    u1: usize,
    j: usize,
    c: usize,
}

/// The shapes of a joint call, `e` `[B, T, J]`, `p` `[B, U+1, J]` and the output weight
/// `[C, J + bias]` (`bias` 1 when it holds the bias as its last column).
fn joint_dims(
    name: &str,
    e: &[usize],
    p: &[usize],
    w: &[usize],
    bias: usize,
) -> candle_core::Result<Dims> {
    match (e, p, w) {
        ([b, t, j], [b2, u1, j2], [c, j3]) if b2 == b && j2 == j && *j3 == j + bias => Ok(Dims {
            b: *b,
            t: *t,
            u1: *u1,
            j: *j,
            c: *c,
        }),
        _ => bail!("{name}: shapes {e:?}, {p:?}, {w:?} do not fit together"),
    }
}

ent_kernels::simd_dispatch!(
    /// `tanh` over a block of the joint's hidden layer: [`hidden_rows`] compiled for the widest
    /// instruction set the CPU has (every version computes the same bits).
    fn hidden [F: Float] => hidden_rows(d: Dims, e: &[F], p: &[F], t0: usize, rows: usize, z: &mut [F]) -> ()
);

/// `z[(ti * U1 + u) * J + k] = tanh(e[t0 + ti, k] + p[u, k])` for the `rows` frames from `t0`
/// of one utterance (`e` and `p` are that utterance's rows).
#[inline(always)]
fn hidden_rows<F: Float>(d: Dims, e: &[F], p: &[F], t0: usize, rows: usize, z: &mut [F]) {
    let j = d.j;
    for ti in 0..rows {
        let er = &e[(t0 + ti) * j..(t0 + ti + 1) * j];
        for u in 0..d.u1 {
            let pr = &p[u * j..(u + 1) * j];
            let zr = &mut z[(ti * d.u1 + u) * j..(ti * d.u1 + u + 1) * j];
            for ((zk, &ek), &pk) in zr.iter_mut().zip(er).zip(pr) {
                *zk = (ek + pk).tanh_fast();
            }
        }
    }
}

fn forward<F: Float>(d: Dims, e: &[F], p: &[F], w: &[F]) -> Vec<F> {
    let Dims { t, u1, j, c, .. } = d;
    let mut out = vec![F::ZERO; d.b * t * u1 * c];
    if out.is_empty() {
        return out;
    }
    out.par_chunks_mut(t * u1 * c)
        .enumerate()
        .for_each(|(b, ob)| {
            let (eb, pb) = (
                &e[b * t * j..(b + 1) * t * j],
                &p[b * u1 * j..(b + 1) * u1 * j],
            );
            ob.par_chunks_mut(T_CHUNK * u1 * c)
                .enumerate()
                // One hidden-layer buffer per worker, reused across its blocks.
                .for_each_init(Vec::new, |z, (chunk, oc)| {
                    let t0 = chunk * T_CHUNK;
                    let rows = oc.len() / (u1 * c);
                    z.resize(rows * u1 * j, F::ZERO);
                    let z = &mut z[..];
                    hidden(d, eb, pb, t0, rows, z);
                    // out[r, n] = sum_k z[r, k] w[n, k]
                    matmul(
                        (rows * u1, c, j),
                        oc,
                        c,
                        false,
                        Mat::strided(z, j, 1),
                        Mat::strided(w, 1, j),
                        Threads::One,
                    );
                });
        });
    out
}

/// Gradients `(de, dp, dw)` for the incoming gradient `g` `[B, T, U+1, C]`.
fn backward<F: Float>(d: Dims, e: &[F], p: &[F], w: &[F], g: &[F]) -> (Vec<F>, Vec<F>, Vec<F>) {
    let Dims { t, u1, j, c, .. } = d;
    per_utterance(d, e, p, c * j, |b, eb, pb, deb, dpb| {
        let gb = &g[b * t * u1 * c..(b + 1) * t * u1 * c];
        let mut dw = vec![F::ZERO; c * j];
        let mut z = vec![F::ZERO; T_CHUNK * u1 * j];
        let mut da = vec![F::ZERO; T_CHUNK * u1 * j];
        let mut t0 = 0;
        while t0 < t {
            let rows = T_CHUNK.min(t - t0);
            let r = rows * u1;
            let (z, da) = (&mut z[..r * j], &mut da[..r * j]);
            let gc = &gb[t0 * u1 * c..(t0 + rows) * u1 * c];
            hidden(d, eb, pb, t0, rows, z);
            // da[r, k] = sum_n g[r, n] w[n, k], then times 1 - z^2.
            matmul(
                (r, j, c),
                da,
                j,
                false,
                Mat::strided(gc, c, 1),
                Mat::strided(w, j, 1),
                Threads::One,
            );
            tanh_back_scatter(da, z, deb, dpb, t0..t0 + rows, u1, j);
            // dw[n, k] += sum_r g[r, n] z[r, k]
            matmul(
                (c, j, r),
                &mut dw,
                j,
                true,
                Mat::strided(gc, 1, c),
                Mat::strided(z, j, 1),
                Threads::One,
            );
            t0 += rows;
        }
        dw
    })
}

impl CpuOp for FusedJoint {
    type Saved = ();

    const NAME: &'static str = "fused-joint";

    fn forward<F: Float>(&self, x: &[&[F]], dims: &[&[usize]]) -> Fwd<F> {
        let d = joint_dims("fused joint", dims[0], dims[1], dims[2], 0)?;
        Ok(Forward::new(
            forward(d, x[0], x[1], x[2]),
            (d.b, d.t, d.u1, d.c),
        ))
    }

    fn host_backward<F: Float>(&self, a: &BackwardArgs<'_>, _: &mut Option<()>) -> Grads<F> {
        let d = joint_dims("fused joint", a.dims(0), a.dims(1), a.dims(2), 0)?;
        let (e, p, w, g) = (a.input(0)?, a.input(1)?, a.input(2)?, a.grad()?);
        let (de, dp, dw) = backward(d, &e, &p, &w, &g);
        Ok(vec![Some(de), Some(dp), Some(dw)])
    }
}

/// A node without a next label (`u = U_b`, or padding) in [`FusedJointGather::labels`].
pub(crate) const NO_LABEL: u32 = u32::MAX;

/// The joint fused with its log-softmax normaliser and the gather of the RNN-T loss: inputs
/// `e` `[B, T, J]`, `p` `[B, U+1, J]` and `wb` `[C, J+1]` (the output weight with its bias as
/// the last column), all contiguous, f32 or f64, on the CPU; output `[B, T, U+1, 3]`: per node
/// `logsumexp_c z_c`, `z_blank` and `z_label` for the logits `z = W tanh(e + p) + b` (0 where
/// the column is absent). The `[B, T, U+1, C]` logits exist only a block of [`T_CHUNK`] frames
/// at a time, in the forward pass and again in the backward pass, where the incoming gradient
/// `(g_lse, g_blank, g_label)` of a node becomes `g_lse softmax(z) + g_blank [c = blank] +
/// g_label [c = label]` and goes through the block's GEMMs as in [`FusedJoint`].
#[derive(Debug, Clone)]
pub(crate) struct FusedJointGather {
    /// The column read as blank at every node, if any.
    pub blank: Option<usize>,
    /// `[B][U+1]`: the column read as the label at `(b, u)`, or [`NO_LABEL`].
    pub labels: std::sync::Arc<Vec<u32>>,
}

impl FusedJointGather {
    fn check(&self, d: Dims) -> candle_core::Result<()> {
        if d.j == 0 || d.c == 0 {
            bail!(
                "fused joint gather: a joint of width {} with {} outputs",
                d.j,
                d.c
            );
        }
        if self.labels.len() != d.b * d.u1 {
            bail!(
                "fused joint gather: {} label columns for {} x {} nodes",
                self.labels.len(),
                d.b,
                d.u1
            );
        }
        let bad = |k: usize| k >= d.c;
        if self.blank.is_some_and(bad)
            || self
                .labels
                .iter()
                .any(|&k| k != NO_LABEL && bad(k as usize))
        {
            bail!(
                "fused joint gather: a column is not below the {} outputs",
                d.c
            );
        }
        Ok(())
    }

    /// The logits of a block (`rows` frames from `t0` of utterance `b`), bias added, into `l`;
    /// the block's hidden layer into `z`.
    #[allow(clippy::too_many_arguments)]
    fn block_logits<F: Float>(
        d: Dims,
        eb: &[F],
        pb: &[F],
        wb: &[F],
        t0: usize,
        rows: usize,
        z: &mut [F],
        l: &mut [F],
    ) {
        let (j, c) = (d.j, d.c);
        hidden(d, eb, pb, t0, rows, z);
        // l[r, n] = sum_k z[r, k] w[n, k]; w[n, k] = wb[n * (J+1) + k]
        matmul(
            (rows * d.u1, c, j),
            l,
            c,
            false,
            Mat::strided(z, j, 1),
            Mat::strided(wb, 1, j + 1),
            Threads::One,
        );
        for row in l.chunks_exact_mut(c) {
            for (n, x) in row.iter_mut().enumerate() {
                *x += wb[n * (j + 1) + j];
            }
        }
    }

    fn gather_forward<F: Float>(&self, d: Dims, e: &[F], p: &[F], wb: &[F]) -> Vec<F> {
        let Dims { t, u1, j, c, .. } = d;
        let mut out = vec![F::ZERO; d.b * t * u1 * 3];
        if out.is_empty() {
            return out;
        }
        out.par_chunks_mut(t * u1 * 3)
            .enumerate()
            .for_each(|(b, ob)| {
                let (eb, pb) = (
                    &e[b * t * j..(b + 1) * t * j],
                    &p[b * u1 * j..(b + 1) * u1 * j],
                );
                let labels = &self.labels[b * u1..(b + 1) * u1];
                ob.par_chunks_mut(T_CHUNK * u1 * 3)
                    .enumerate()
                    // Block buffers per worker, reused across its blocks.
                    .for_each_init(
                        || (Vec::new(), Vec::new()),
                        |(z, l), (chunk, oc)| {
                            let t0 = chunk * T_CHUNK;
                            let rows = oc.len() / (u1 * 3);
                            z.resize(rows * u1 * j, F::ZERO);
                            l.resize(rows * u1 * c, F::ZERO);
                            let (z, l) = (&mut z[..], &mut l[..]);
                            Self::block_logits(d, eb, pb, wb, t0, rows, z, l);
                            for (r, (lr, o)) in
                                l.chunks_exact(c).zip(oc.chunks_exact_mut(3)).enumerate()
                            {
                                o[0] = log_sum_exp(lr);
                                o[1] = self.blank.map_or(F::ZERO, |k| lr[k]);
                                let y = labels[r % u1];
                                o[2] = if y == NO_LABEL {
                                    F::ZERO
                                } else {
                                    lr[y as usize]
                                };
                            }
                        },
                    );
            });
        out
    }

    /// Gradients `(de, dp, dwb)` for the incoming gradient `g` and the forward output `res`,
    /// both `[B, T, U+1, 3]`.
    fn gather_backward<F: Float>(
        &self,
        d: Dims,
        e: &[F],
        p: &[F],
        wb: &[F],
        res: &[F],
        g: &[F],
    ) -> (Vec<F>, Vec<F>, Vec<F>) {
        let Dims { t, u1, j, c, .. } = d;
        per_utterance(d, e, p, c * (j + 1), |b, eb, pb, deb, dpb| {
            let labels = &self.labels[b * u1..(b + 1) * u1];
            let node0 = b * t * u1;
            let mut dwb = vec![F::ZERO; c * (j + 1)];
            let mut z = vec![F::ZERO; T_CHUNK * u1 * j];
            let mut da = vec![F::ZERO; T_CHUNK * u1 * j];
            let mut l = vec![F::ZERO; T_CHUNK * u1 * c];
            let mut t0 = 0;
            while t0 < t {
                let rows = T_CHUNK.min(t - t0);
                let r = rows * u1;
                let (z, da, l) = (&mut z[..r * j], &mut da[..r * j], &mut l[..r * c]);
                Self::block_logits(d, eb, pb, wb, t0, rows, z, l);
                // l becomes dl: the gradient of the block's logits.
                for (ri, lr) in l.chunks_exact_mut(c).enumerate() {
                    let node = node0 + t0 * u1 + ri;
                    let (gn, lse) = (&g[node * 3..node * 3 + 3], res[node * 3]);
                    for x in lr.iter_mut() {
                        *x = gn[0] * (*x - lse).exp_fast();
                    }
                    if let Some(k) = self.blank {
                        lr[k] += gn[1];
                    }
                    let y = labels[ri % u1];
                    if y != NO_LABEL {
                        lr[y as usize] += gn[2];
                    }
                }
                let dl = &*l;
                // da[r, k] = sum_n dl[r, n] w[n, k], then times 1 - z^2.
                matmul(
                    (r, j, c),
                    da,
                    j,
                    false,
                    Mat::strided(dl, c, 1),
                    Mat::strided(wb, j + 1, 1),
                    Threads::One,
                );
                tanh_back_scatter(da, z, deb, dpb, t0..t0 + rows, u1, j);
                // dw[n, k] += sum_r dl[r, n] z[r, k]; db[n] += sum_r dl[r, n]
                matmul(
                    (c, j, r),
                    &mut dwb,
                    j + 1,
                    true,
                    Mat::strided(dl, 1, c),
                    Mat::strided(z, j, 1),
                    Threads::One,
                );
                for row in dl.chunks_exact(c) {
                    for (n, &x) in row.iter().enumerate() {
                        dwb[n * (j + 1) + j] += x;
                    }
                }
                t0 += rows;
            }
            dwb
        })
    }
}

/// `log sum_c exp(x_c)` of one row, with the row's maximum taken out (NaN in, NaN out).
#[inline(always)]
fn log_sum_exp<F: Float>(row: &[F]) -> F {
    let mut m = F::NEG_INFINITY;
    for &x in row {
        if x > m {
            m = x;
        }
    }
    if m == F::NEG_INFINITY {
        // No logit above -inf: -inf when all are -inf, NaN when any is NaN (the loop below
        // would give NaN for both).
        return row.iter().fold(m, |acc, &x| acc + x);
    }
    let mut s = F::ZERO;
    for &x in row {
        s += (x - m).exp_fast();
    }
    m + s.ln()
}

impl CpuOp for FusedJointGather {
    type Saved = ();

    const NAME: &'static str = "fused-joint-gather";

    fn forward<F: Float>(&self, x: &[&[F]], dims: &[&[usize]]) -> Fwd<F> {
        let d = joint_dims("fused joint gather", dims[0], dims[1], dims[2], 1)?;
        self.check(d)?;
        let out = self.gather_forward(d, x[0], x[1], x[2]);
        Ok(Forward::new(out, (d.b, d.t, d.u1, 3)))
    }

    fn host_backward<F: Float>(&self, a: &BackwardArgs<'_>, _: &mut Option<()>) -> Grads<F> {
        let d = joint_dims("fused joint gather", a.dims(0), a.dims(1), a.dims(2), 1)?;
        let (e, p, wb) = (a.input(0)?, a.input(1)?, a.input(2)?);
        let (de, dp, dwb) = self.gather_backward(d, &e, &p, &wb, &a.output()?, &a.grad()?);
        Ok(vec![Some(de), Some(dp), Some(dwb)])
    }
}

/// A backward pass over the batch, one task per utterance: `f(b, e_b, p_b, de_b, dp_b)` runs
/// utterance `b`'s blocks in order, adds into its rows of `de` and `dp`, and returns its share
/// of the weights' gradient (`dw_len` values); the shares are summed in utterance order, so the
/// result does not depend on the threads. Returns `(de, dp, dw)`.
fn per_utterance<F: Float>(
    d: Dims,
    e: &[F],
    p: &[F],
    dw_len: usize,
    f: impl Fn(usize, &[F], &[F], &mut [F], &mut [F]) -> Vec<F> + Sync,
) -> (Vec<F>, Vec<F>, Vec<F>) {
    let Dims { t, u1, j, .. } = d;
    let mut de = vec![F::ZERO; d.b * t * j];
    let mut dp = vec![F::ZERO; d.b * u1 * j];
    let mut dw = vec![F::ZERO; dw_len];
    if de.is_empty() || dp.is_empty() {
        return (de, dp, dw);
    }
    let parts: Vec<Vec<F>> = de
        .par_chunks_mut(t * j)
        .zip(dp.par_chunks_mut(u1 * j))
        .enumerate()
        .map(|(b, (deb, dpb))| {
            let eb = &e[b * t * j..(b + 1) * t * j];
            let pb = &p[b * u1 * j..(b + 1) * u1 * j];
            f(b, eb, pb, deb, dpb)
        })
        .collect();
    for part in &parts {
        for (x, &y) in dw.iter_mut().zip(part) {
            *x += y;
        }
    }
    (de, dp, dw)
}
/// The backward pass through `tanh` of a block of the joint: `da` (the hidden layer's
/// gradient `dl W`, `[frames x (U+1), J]`) times `1 - z^2`, then summed into the encoder rows
/// of those `frames` in `deb` and the predictor rows in `dpb` (`a = e[t] + p[u]` feeds both).
fn tanh_back_scatter<F: Float>(
    da: &mut [F],
    z: &[F],
    deb: &mut [F],
    dpb: &mut [F],
    frames: std::ops::Range<usize>,
    u1: usize,
    j: usize,
) {
    for (a, &zk) in da.iter_mut().zip(z.iter()) {
        *a *= F::ONE - zk * zk;
    }
    for (ti, t) in frames.enumerate() {
        let der = &mut deb[t * j..(t + 1) * j];
        for u in 0..u1 {
            let ar = &da[(ti * u1 + u) * j..(ti * u1 + u + 1) * j];
            let dpr = &mut dpb[u * j..(u + 1) * j];
            for ((x, y), &a) in der.iter_mut().zip(dpr.iter_mut()).zip(ar) {
                *x += a;
                *y += a;
            }
        }
    }
}
