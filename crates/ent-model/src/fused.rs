//! The joint network over the whole lattice without its hidden layer in memory.
//!
//! `out[b, t, u, :] = W tanh(e[b, t, :] + p[b, u, :])` for the projected encoder frames
//! `e` `[B, T, J]`, the projected predictor states `p` `[B, U+1, J]` and the output weight `W`
//! `[C, J]` (the output bias is added outside). The unfused formulation
//! ([`crate::Joint::forward_unfused`]) materialises the `[B, T, U+1, J]` sum, its `tanh` and,
//! in the backward pass, their gradients: with ENT's sizes (B 8, T 250, U+1 61, J 768) 375 MB
//! each. Here the hidden layer lives only in blocks of [`T_CHUNK`] frames: the forward pass
//! computes a block's `tanh` and multiplies it by `W^T` (one GEMM); the backward pass recomputes
//! it, multiplies the incoming gradient by `W` (one GEMM), applies `1 - tanh^2`, sums over `u`
//! for `de` and over `t` for `dp`, and accumulates `dW` (one GEMM). Blocks run in parallel over
//! (utterance, block) in the forward pass and over utterances in the backward pass; every sum
//! is taken in a fixed order, so results do not depend on the number of threads.

use candle_core::backend::BackendStorage;
use candle_core::{CpuStorage, CustomOp3, Layout, Shape, Tensor, bail};
use rayon::prelude::*;

use crate::lstm::{Real, matmul, slice};

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

fn dims(l1: &Layout, l2: &Layout, l3: &Layout) -> candle_core::Result<Dims> {
    let (b, t, j) = l1.shape().dims3()?;
    let (b2, u1, j2) = l2.shape().dims3()?;
    let (c, j3) = l3.shape().dims2()?;
    if b2 != b || j2 != j || j3 != j {
        bail!(
            "fused joint: shapes {:?}, {:?}, {:?} do not fit together",
            l1.shape(),
            l2.shape(),
            l3.shape()
        );
    }
    if !(l1.is_contiguous() && l2.is_contiguous() && l3.is_contiguous()) {
        bail!("fused joint: inputs must be contiguous");
    }
    Ok(Dims { b, t, u1, j, c })
}

/// `tanh` over a block of the hidden layer, vectorised in f32.
pub(crate) trait Tanh: Real {
    fn tanh_fast(self) -> Self;

    /// [`hidden_rows`] for this type (f32: compiled for AVX-512 and AVX2 as well, the widest
    /// the CPU has chosen at run time; every version computes the same bits).
    fn hidden(d: Dims, e: &[Self], p: &[Self], t0: usize, rows: usize, z: &mut [Self]) {
        hidden_rows(d, e, p, t0, rows, z);
    }
}

impl Tanh for f64 {
    fn tanh_fast(self) -> Self {
        self.tanh()
    }
}

impl Tanh for f32 {
    /// `1 - 2 / (exp(2|x|) + 1)` with the sign of `x`, through `ent-lattice`'s branch-free
    /// `exp` (2 ulp): absolute error under 2e-7 (tested against `f64::tanh`), so the loop
    /// over a block vectorises instead of calling the C library once per element.
    #[inline(always)]
    fn tanh_fast(self) -> Self {
        // Not `min`: a NaN must stay NaN (a diverging run shows as such).
        let a = if self.abs() > 9.0 { 9.0 } else { self.abs() };
        let e = ent_lattice::cpu::exp_f32(2.0 * a);
        let t = 1.0 - 2.0 / (e + 1.0);
        t.copysign(self)
    }

    fn hidden(d: Dims, e: &[f32], p: &[f32], t0: usize, rows: usize, z: &mut [f32]) {
        #[cfg(target_arch = "x86_64")]
        {
            if std::arch::is_x86_feature_detected!("avx512f") {
                // SAFETY: the CPU has AVX-512F (checked just above).
                return unsafe { hidden_avx512(d, e, p, t0, rows, z) };
            }
            if std::arch::is_x86_feature_detected!("avx2")
                && std::arch::is_x86_feature_detected!("fma")
            {
                // SAFETY: the CPU has AVX2 and FMA (checked just above).
                return unsafe { hidden_avx2(d, e, p, t0, rows, z) };
            }
        }
        hidden_rows(d, e, p, t0, rows, z);
    }
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
unsafe fn hidden_avx512(d: Dims, e: &[f32], p: &[f32], t0: usize, rows: usize, z: &mut [f32]) {
    hidden_rows(d, e, p, t0, rows, z);
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn hidden_avx2(d: Dims, e: &[f32], p: &[f32], t0: usize, rows: usize, z: &mut [f32]) {
    hidden_rows(d, e, p, t0, rows, z);
}

/// `z[(ti * U1 + u) * J + k] = tanh(e[t0 + ti, k] + p[u, k])` for the `rows` frames from `t0`
/// of one utterance (`e` and `p` are that utterance's rows).
#[inline(always)]
fn hidden_rows<F: Tanh>(d: Dims, e: &[F], p: &[F], t0: usize, rows: usize, z: &mut [F]) {
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

fn forward<F: Tanh>(d: Dims, e: &[F], p: &[F], w: &[F]) -> Vec<F> {
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
                .for_each(|(chunk, oc)| {
                    let t0 = chunk * T_CHUNK;
                    let rows = oc.len() / (u1 * c);
                    let mut z = vec![F::ZERO; rows * u1 * j];
                    F::hidden(d, eb, pb, t0, rows, &mut z);
                    // out[r, n] = sum_k z[r, k] w[n, k]
                    matmul(
                        (rows * u1, c, j),
                        oc,
                        c,
                        false,
                        &z,
                        (j, 1),
                        w,
                        (1, j),
                        false,
                    );
                });
        });
    out
}

/// Gradients `(de, dp, dw)` for the incoming gradient `g` `[B, T, U+1, C]`.
fn backward<F: Tanh>(d: Dims, e: &[F], p: &[F], w: &[F], g: &[F]) -> (Vec<F>, Vec<F>, Vec<F>) {
    let Dims { t, u1, j, c, .. } = d;
    let mut de = vec![F::ZERO; d.b * t * j];
    let mut dp = vec![F::ZERO; d.b * u1 * j];
    if de.is_empty() || dp.is_empty() {
        return (de, dp, vec![F::ZERO; c * j]);
    }
    // One task per utterance: its blocks in order, its own share of dw.
    let parts: Vec<Vec<F>> = de
        .par_chunks_mut(t * j)
        .zip(dp.par_chunks_mut(u1 * j))
        .enumerate()
        .map(|(b, (deb, dpb))| {
            let (eb, pb) = (
                &e[b * t * j..(b + 1) * t * j],
                &p[b * u1 * j..(b + 1) * u1 * j],
            );
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
                F::hidden(d, eb, pb, t0, rows, z);
                // da[r, k] = sum_n g[r, n] w[n, k], then times 1 - z^2.
                matmul((r, j, c), da, j, false, gc, (c, 1), w, (j, 1), false);
                for (a, &zk) in da.iter_mut().zip(z.iter()) {
                    *a = *a * (F::ONE - zk * zk);
                }
                for ti in 0..rows {
                    let der = &mut deb[(t0 + ti) * j..(t0 + ti + 1) * j];
                    for u in 0..u1 {
                        let ar = &da[(ti * u1 + u) * j..(ti * u1 + u + 1) * j];
                        let dpr = &mut dpb[u * j..(u + 1) * j];
                        for ((x, y), &a) in der.iter_mut().zip(dpr.iter_mut()).zip(ar) {
                            *x += a;
                            *y += a;
                        }
                    }
                }
                // dw[n, k] += sum_r g[r, n] z[r, k]
                matmul((c, j, r), &mut dw, j, true, gc, (1, c), z, (j, 1), false);
                t0 += rows;
            }
            dw
        })
        .collect();
    let mut dw = vec![F::ZERO; c * j];
    for part in &parts {
        for (x, &y) in dw.iter_mut().zip(part) {
            *x += y;
        }
    }
    (de, dp, dw)
}

/// [`backward`] on tensors: `(de, dp, dw)` on the inputs' device.
fn grads<F: Tanh + candle_core::WithDType>(
    d: Dims,
    e: &Tensor,
    p: &Tensor,
    w: &Tensor,
    grad: &Tensor,
) -> candle_core::Result<(Tensor, Tensor, Tensor)> {
    let flat = |x: &Tensor| x.flatten_all()?.to_vec1::<F>();
    let (de, dp, dw) = backward(d, &flat(e)?, &flat(p)?, &flat(w)?, &flat(grad)?);
    let dev = e.device();
    Ok((
        Tensor::from_vec(de, (d.b, d.t, d.j), dev)?,
        Tensor::from_vec(dp, (d.b, d.u1, d.j), dev)?,
        Tensor::from_vec(dw, (d.c, d.j), dev)?,
    ))
}

impl CustomOp3 for FusedJoint {
    fn name(&self) -> &'static str {
        "fused-joint"
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
        s3: &CpuStorage,
        l3: &Layout,
    ) -> candle_core::Result<(CpuStorage, Shape)> {
        let d = dims(l1, l2, l3)?;
        let shape = Shape::from((d.b, d.t, d.u1, d.c));
        let out = match s1 {
            CpuStorage::F32(_) => CpuStorage::F32(forward(
                d,
                slice::<f32>(s1, l1)?,
                slice::<f32>(s2, l2)?,
                slice::<f32>(s3, l3)?,
            )),
            CpuStorage::F64(_) => CpuStorage::F64(forward(
                d,
                slice::<f64>(s1, l1)?,
                slice::<f64>(s2, l2)?,
                slice::<f64>(s3, l3)?,
            )),
            other => bail!("fused joint: unsupported dtype {:?}", other.dtype()),
        };
        Ok((out, shape))
    }

    fn bwd(
        &self,
        e: &Tensor,
        p: &Tensor,
        w: &Tensor,
        _res: &Tensor,
        grad: &Tensor,
    ) -> candle_core::Result<(Option<Tensor>, Option<Tensor>, Option<Tensor>)> {
        let (b, t, j) = e.dims3()?;
        let (_, u1, _) = p.dims3()?;
        let (c, _) = w.dims2()?;
        let d = Dims { b, t, u1, j, c };
        let (de, dp, dw) = match e.dtype() {
            candle_core::DType::F32 => grads::<f32>(d, e, p, w, grad)?,
            candle_core::DType::F64 => grads::<f64>(d, e, p, w, grad)?,
            other => bail!("fused joint: unsupported dtype {other:?}"),
        };
        Ok((Some(de), Some(dp), Some(dw)))
    }
}

#[cfg(test)]
mod tests {
    use super::Tanh;

    #[test]
    fn fast_tanh_is_within_2e7_of_f64() {
        let mut worst = 0f64;
        let mut x = -12.0f32;
        while x <= 12.0 {
            let got = x.tanh_fast() as f64;
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
            let got = x.tanh_fast() as f64;
            worst = worst.max((got - (x as f64).tanh()).abs());
        }
        assert!(worst < 2e-7, "{worst}");
        assert!(f32::NAN.tanh_fast().is_nan());
    }
}
