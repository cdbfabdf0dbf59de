//! LSTM layers whose cost is linear in the sequence length.
//!
//! candle-nn's LSTM runs one `step` per frame on slices of the input; the backward pass of each
//! slice builds a zero-padded tensor of the full input, so training cost grows as `T^2`. Here the
//! input projection `x W_ih^T + b_ih + b_hh` is one matmul over the whole sequence (candle's
//! autograd differentiates it), and the recurrence is a single custom op, [`LstmRecurrence`],
//! with a hand-written backward pass (back-propagation through time):
//!
//! ```text
//! forward, per utterance b and step t (in the direction of travel; h_prev = c_prev = 0 at the start):
//!   a   = gx[b,t] + W_hh h_prev                 a = [a_i; a_f; a_g; a_o], each H wide
//!   i, f, o = sigmoid(a_i, a_f, a_o);  g = tanh(a_g)
//!   c   = f * c_prev + i * g;           h = o * tanh(c)
//! backward, walking the other way, with dh_rec = dc_rec = 0 at the end:
//!   dh  = dL/dh[b,t] + dh_rec
//!   dc  = dh * o * (1 - tanh(c)^2) + dc_rec
//!   da  = [dc*g*i(1-i); dc*c_prev*f(1-f); dc*i*(1-g^2); dh*tanh(c)*o(1-o)]   (= dL/dgx[b,t])
//!   dh_rec = W_hh^T da;  dc_rec = dc * f;  dW_hh += da h_prev^T
//! ```
//!
//! Gate order is PyTorch's (`i, f, g, o`) and parameter names are PyTorch's (`weight_ih_l0`,
//! `weight_hh_l0`, `bias_ih_l0`, `bias_hh_l0`, `_reverse` for the backward direction), so weights
//! move between this, candle-nn and `torch.nn.LSTM` unchanged.
//!
//! Every utterance runs over its own length: the reverse direction starts at its last valid
//! frame, and padded frames output zeros and receive no gradient. The op runs on the CPU (f32
//! and f64) and, with the `cuda` feature, on CUDA tensors (f32 and f64): the recurrence is
//! `kernels/lstm.cu` (one block per utterance runs all its steps, forward and backward, through
//! ent-lattice's launch plans), and `dW_hh` one GEMM over its output
//! ([`recurrent_weight_grad`]). Elsewhere (other devices and dtypes, or a hidden size beyond the
//! kernels' shared memory) the same maths runs step by step in candle ops, which is correct but
//! has the quadratic backward pass.

use std::sync::Arc;

use candle_core::{CpuStorage, DType, Tensor, bail};
#[cfg(feature = "cuda")]
use candle_core::{Layout, Shape};
use candle_nn::{Init, VarBuilder};
use ent_kernels::Float;
use ent_kernels::gemm::{Mat, Threads, matmul};
use ent_kernels::op::{BackwardArgs, CpuOp, Forward, Fwd, Grads, Op};

/// The recurrence of one LSTM direction as a custom op over `(gx, w_hh)`.
///
/// - `gx`: `[B, T, 4H]`, the input projection with both biases added;
/// - `w_hh`: `[4H, H]`.
///
/// Output `[B, T, H]`: the hidden states, zero at padded frames. Built by [`lstm_recurrence`].
#[derive(Debug)]
pub struct LstmRecurrence {
    lens: Arc<[usize]>,
    reverse: bool,
}

/// What the forward pass keeps for the backward pass: the gate activations `[B, T, 4H]` and
/// cell states `[B, T, H]` at every valid frame, in the input's dtype.
#[derive(Debug)]
pub enum Saved {
    /// On the host.
    Host {
        /// The gates.
        gates: CpuStorage,
        /// The cells.
        cells: CpuStorage,
    },
    /// On the GPU.
    #[cfg(feature = "cuda")]
    Cuda(Arc<(candle_core::CudaStorage, candle_core::CudaStorage)>),
}

/// Gate activations `[B, T, 4H]` and cell states `[B, T, H]` at every valid frame.
#[derive(Debug)]
struct Activations<F> {
    gates: Vec<F>,
    cells: Vec<F>,
}

/// Runs the LSTM recurrence over `gx` (`[B, T, 4H]`, input projection plus both biases) with
/// recurrent weights `w_hh` (`[4H, H]`), each utterance over its first `lens[b]` frames, forwards
/// or (`reverse`) from its last valid frame back to its first. Returns `[B, T, H]`, zero where
/// `t >= lens[b]`. Differentiable with respect to both inputs.
pub fn lstm_recurrence(
    gx: &Tensor,
    w_hh: &Tensor,
    lens: &[usize],
    reverse: bool,
) -> candle_core::Result<Tensor> {
    let (b, t, g4) = gx.dims3()?;
    let (g4w, h) = w_hh.dims2()?;
    if g4 != 4 * h || g4w != g4 {
        bail!(
            "lstm: gx is [{b}, {t}, {g4}] and w_hh [{g4w}, {h}]; expected [B, T, 4H] and [4H, H]"
        );
    }
    if lens.len() != b {
        bail!("lstm: {} lengths for a batch of {b}", lens.len());
    }
    if let Some((i, &l)) = lens.iter().enumerate().find(|&(_, &l)| l > t) {
        bail!("lstm: lens[{i}] = {l} exceeds the time dimension {t}");
    }
    if gx.dtype() != w_hh.dtype() {
        bail!(
            "lstm: gx is {:?} but w_hh is {:?}",
            gx.dtype(),
            w_hh.dtype()
        );
    }
    let kernel = match gx.device() {
        candle_core::Device::Cpu => true,
        #[cfg(feature = "cuda")]
        candle_core::Device::Cuda(_) => cuda::fits(b, t, h, gx.dtype(), reverse),
        _ => false,
    };
    if !kernel || !matches!(gx.dtype(), DType::F32 | DType::F64) {
        return stepwise(gx, w_hh, lens, reverse);
    }
    let op = LstmRecurrence {
        lens: lens.into(),
        reverse,
    };
    gx.contiguous()?.apply_op2(&w_hh.contiguous()?, Op::new(op))
}

/// `dL/dW_hh` `[4H, H]` from the gradient of the input projection `dgx` `[B, T, 4H]` (zero at
/// padded frames) and the hidden states `[B, T, H]` (zero at padded frames), in candle ops: the
/// sum over frames of `dgx[b, t]^T h_prev[b, t]`, where `h_prev` is the state of the step before
/// in the direction of travel (zero at each utterance's first step). The GPU path's GEMM; the CPU
/// op computes the same sum on slices.
pub fn recurrent_weight_grad(
    dgx: &Tensor,
    hidden: &Tensor,
    reverse: bool,
) -> candle_core::Result<Tensor> {
    let (b, t, g4) = dgx.dims3()?;
    let h = hidden.dim(2)?;
    let hidden = hidden.detach();
    let h_prev = if t == 1 {
        hidden.zeros_like()?
    } else {
        let zero = Tensor::zeros((b, 1, h), hidden.dtype(), hidden.device())?;
        if reverse {
            // Frame t follows frame t + 1; an utterance's last valid frame follows a padded
            // frame (zero) or the end.
            Tensor::cat(&[&hidden.narrow(1, 1, t - 1)?, &zero], 1)?
        } else {
            Tensor::cat(&[&zero, &hidden.narrow(1, 0, t - 1)?], 1)?
        }
    };
    dgx.reshape((b * t, g4))?
        .t()?
        .matmul(&h_prev.reshape((b * t, h))?)
}

/// The same recurrence in candle ops, one step per frame: what devices without the fused op
/// run (public so tests can hold the two against each other).
#[doc(hidden)]
pub(crate) fn stepwise(
    gx: &Tensor,
    w_hh: &Tensor,
    lens: &[usize],
    reverse: bool,
) -> candle_core::Result<Tensor> {
    let (_, t_max, g4) = gx.dims3()?;
    let h = g4 / 4;
    let mut outs = Vec::with_capacity(lens.len());
    for (b, &len) in lens.iter().enumerate() {
        let mut hs = Vec::with_capacity(len);
        let gxb = gx.get(b)?;
        let mut hp = Tensor::zeros((1, h), gx.dtype(), gx.device())?;
        let mut cp = hp.clone();
        for s in 0..len {
            let t = if reverse { len - 1 - s } else { s };
            let a = (gxb.narrow(0, t, 1)? + hp.matmul(&w_hh.t()?)?)?;
            let i = candle_nn::ops::sigmoid(&a.narrow(1, 0, h)?)?;
            let f = candle_nn::ops::sigmoid(&a.narrow(1, h, h)?)?;
            let g = a.narrow(1, 2 * h, h)?.tanh()?;
            let o = candle_nn::ops::sigmoid(&a.narrow(1, 3 * h, h)?)?;
            cp = ((f * &cp)? + (i * g)?)?;
            hp = (o * cp.tanh()?)?;
            hs.push(hp.clone());
        }
        if reverse {
            hs.reverse();
        }
        if len < t_max {
            hs.push(Tensor::zeros((t_max - len, h), gx.dtype(), gx.device())?);
        }
        outs.push(Tensor::cat(&hs, 0)?);
    }
    Tensor::stack(&outs, 0)
}

/// Dimensions of one recurrence problem.
#[derive(Debug, Clone, Copy)]
struct Dims {
    b: usize,
    t: usize,
    h: usize,
}

impl LstmRecurrence {
    /// Frame of utterance `b` at step `s` (`s < lens[b]`).
    fn frame(&self, b: usize, s: usize) -> usize {
        if self.reverse {
            self.lens[b] - 1 - s
        } else {
            s
        }
    }

    fn steps(&self) -> usize {
        self.lens.iter().copied().max().unwrap_or(0)
    }

    /// Forward pass: returns `h` (`[B, T, H]`) and the saved activations.
    fn run_forward<F: Float>(&self, d: Dims, gx: &[F], w_hh: &[F]) -> (Vec<F>, Activations<F>) {
        let Dims { b, t, h } = d;
        let g4 = 4 * h;
        let mut out = vec![F::ZERO; b * t * h];
        let mut gates = vec![F::ZERO; b * t * g4];
        let mut cells = vec![F::ZERO; b * t * h];
        let mut h_prev = vec![F::ZERO; b * h];
        let mut c_prev = vec![F::ZERO; b * h];
        let mut a = vec![F::ZERO; b * g4];
        for s in 0..self.steps() {
            for bi in 0..b {
                let row = &mut a[bi * g4..(bi + 1) * g4];
                if s < self.lens[bi] {
                    let tt = self.frame(bi, s);
                    row.copy_from_slice(&gx[(bi * t + tt) * g4..(bi * t + tt + 1) * g4]);
                } else {
                    row.fill(F::ZERO);
                }
            }
            if s > 0 {
                // a += h_prev [B, H] * W_hh^T [H, 4H]
                matmul(
                    (b, g4, h),
                    &mut a,
                    g4,
                    true,
                    Mat::strided(&h_prev, h, 1),
                    Mat::strided(w_hh, 1, h),
                    Threads::One,
                );
            }
            for bi in (0..b).filter(|&bi| s < self.lens[bi]) {
                let tt = self.frame(bi, s);
                let ar = &a[bi * g4..(bi + 1) * g4];
                let gr = &mut gates[(bi * t + tt) * g4..(bi * t + tt + 1) * g4];
                let cr = &mut cells[(bi * t + tt) * h..(bi * t + tt + 1) * h];
                let hr = &mut out[(bi * t + tt) * h..(bi * t + tt + 1) * h];
                let cp = &mut c_prev[bi * h..(bi + 1) * h];
                let hp = &mut h_prev[bi * h..(bi + 1) * h];
                for j in 0..h {
                    let i = ar[j].sigmoid();
                    let f = ar[h + j].sigmoid();
                    let g = ar[2 * h + j].tanh_fast();
                    let o = ar[3 * h + j].sigmoid();
                    let c = f * cp[j] + i * g;
                    let hv = o * c.tanh_fast();
                    gr[j] = i;
                    gr[h + j] = f;
                    gr[2 * h + j] = g;
                    gr[3 * h + j] = o;
                    cr[j] = c;
                    hr[j] = hv;
                    cp[j] = c;
                    hp[j] = hv;
                }
            }
        }
        (out, Activations { gates, cells })
    }

    /// Backward pass: returns `(dL/dgx [B, T, 4H], dL/dW_hh [4H, H])`.
    fn run_backward<F: Float>(
        &self,
        d: Dims,
        (gates, cells): (&[F], &[F]),
        out: &[F],
        w_hh: &[F],
        dout: &[F],
    ) -> (Vec<F>, Vec<F>) {
        let Dims { b, t, h } = d;
        let g4 = 4 * h;
        let mut dgx = vec![F::ZERO; b * t * g4];
        let mut dh_rec = vec![F::ZERO; b * h];
        let mut dc_rec = vec![F::ZERO; b * h];
        let mut da = vec![F::ZERO; b * g4];
        for s in (0..self.steps()).rev() {
            for bi in 0..b {
                let dar = &mut da[bi * g4..(bi + 1) * g4];
                if s >= self.lens[bi] {
                    dar.fill(F::ZERO);
                    continue;
                }
                let tt = self.frame(bi, s);
                let prev = (s > 0).then(|| self.frame(bi, s - 1));
                let gr = &gates[(bi * t + tt) * g4..(bi * t + tt + 1) * g4];
                let cr = &cells[(bi * t + tt) * h..(bi * t + tt + 1) * h];
                let dor = &dout[(bi * t + tt) * h..(bi * t + tt + 1) * h];
                let dhr = &dh_rec[bi * h..(bi + 1) * h];
                let dcr = &mut dc_rec[bi * h..(bi + 1) * h];
                for j in 0..h {
                    let (i, f, g, o) = (gr[j], gr[h + j], gr[2 * h + j], gr[3 * h + j]);
                    let c_prev = prev.map_or(F::ZERO, |p| cells[(bi * t + p) * h + j]);
                    let tc = cr[j].tanh_fast();
                    let dh = dor[j] + dhr[j];
                    let dc = dh * o * (F::ONE - tc * tc) + dcr[j];
                    dar[j] = dc * g * i * (F::ONE - i);
                    dar[h + j] = dc * c_prev * f * (F::ONE - f);
                    dar[2 * h + j] = dc * i * (F::ONE - g * g);
                    dar[3 * h + j] = dh * tc * o * (F::ONE - o);
                    dcr[j] = dc * f;
                }
                dgx[(bi * t + tt) * g4..(bi * t + tt + 1) * g4].copy_from_slice(dar);
            }
            if s > 0 {
                // dh_rec = da [B, 4H] * W_hh [4H, H]
                matmul(
                    (b, h, g4),
                    &mut dh_rec,
                    h,
                    false,
                    Mat::strided(&da, g4, 1),
                    Mat::strided(w_hh, h, 1),
                    Threads::One,
                );
            }
        }
        // dW_hh [4H, H] = sum over frames with a predecessor of da^T h_prev: one GEMM over
        // B*T rows of dgx against the hidden states shifted by one step.
        let mut h_prev = vec![F::ZERO; b * t * h];
        for bi in 0..b {
            for s in 1..self.lens[bi] {
                let (tt, p) = (self.frame(bi, s), self.frame(bi, s - 1));
                h_prev[(bi * t + tt) * h..(bi * t + tt + 1) * h]
                    .copy_from_slice(&out[(bi * t + p) * h..(bi * t + p + 1) * h]);
            }
        }
        let mut dw = vec![F::ZERO; g4 * h];
        let n = b * t;
        matmul(
            (g4, h, n),
            &mut dw,
            h,
            false,
            Mat::strided(&dgx, 1, g4),
            Mat::strided(&h_prev, h, 1),
            Threads::Rayon,
        );
        (dgx, dw)
    }
}

/// The dimensions of `gx` `[B, T, 4H]` and `w_hh` `[4H, H]`.
fn dims(gx: &[usize], w_hh: &[usize]) -> candle_core::Result<Dims> {
    match (gx, w_hh) {
        ([b, t, g4], [g4w, h]) if *g4 == 4 * h && g4w == g4 => Ok(Dims {
            b: *b,
            t: *t,
            h: *h,
        }),
        _ => bail!("lstm: gx {gx:?} and w_hh {w_hh:?}; expected [B, T, 4H] and [4H, H]"),
    }
}

impl CpuOp for LstmRecurrence {
    type Saved = Saved;

    const NAME: &'static str = "lstm-recurrence";

    fn forward<F: Float>(&self, x: &[&[F]], dims: &[&[usize]]) -> Fwd<F, Saved> {
        let d = self::dims(dims[0], dims[1])?;
        let (out, act) = self.run_forward(d, x[0], x[1]);
        let saved = Saved::Host {
            gates: F::to_cpu_storage_owned(act.gates),
            cells: F::to_cpu_storage_owned(act.cells),
        };
        Ok(Forward::new(out, (d.b, d.t, d.h)).keep(saved))
    }

    #[cfg(feature = "cuda")]
    fn cuda_forward(
        &self,
        x: &[(&candle_core::CudaStorage, &Layout)],
    ) -> candle_core::Result<(candle_core::CudaStorage, Shape, Option<Saved>)> {
        let d = dims(x[0].1.dims(), x[1].1.dims())?;
        let fwd = ent_kernels::cuda::lstm_forward(
            x[0],
            x[1],
            cuda::lstm_dims(d),
            &self.lens,
            self.reverse,
        )?;
        let saved = Saved::Cuda(Arc::new((fwd.gates, fwd.cells)));
        Ok((fwd.hidden, Shape::from((d.b, d.t, d.h)), Some(saved)))
    }

    /// On the GPU the backward kernel, then `dW_hh` as one GEMM; on the host
    /// [`CpuOp::host_backward`]. The saved state stays: a second backward pass reads it too.
    fn backward(
        &self,
        x: &[&Tensor],
        out: &Tensor,
        grad: &Tensor,
        saved: &mut Option<Saved>,
    ) -> candle_core::Result<Vec<Option<Tensor>>> {
        #[cfg(feature = "cuda")]
        if let Some(Saved::Cuda(state)) = saved.as_ref() {
            let op = cuda::Backward {
                lens: self.lens.clone(),
                reverse: self.reverse,
                state: state.clone(),
            };
            let dgx = grad
                .contiguous()?
                .apply_op2(&x[1].contiguous()?, Op::new(op))?;
            let dw = recurrent_weight_grad(&dgx, out, self.reverse)?;
            return Ok(vec![Some(dgx), Some(dw)]);
        }
        ent_kernels::op::backward_on_host(self, x, out, grad, saved)
    }

    fn host_backward<F: Float>(&self, a: &BackwardArgs<'_>, saved: &mut Option<Saved>) -> Grads<F> {
        let d = dims(a.dims(0), a.dims(1))?;
        let Some(Saved::Host { gates, cells }) = saved.as_ref() else {
            bail!("lstm: backward called before forward");
        };
        let act = (gates.as_slice::<F>()?, cells.as_slice::<F>()?);
        let (out, w_hh, grad) = (a.output::<F>()?, a.input::<F>(1)?, a.grad::<F>()?);
        let (dgx, dw) = self.run_backward(d, act, &out, &w_hh, &grad);
        Ok(vec![Some(dgx), Some(dw)])
    }
}

/// One direction of an LSTM layer with PyTorch's parameter names.
#[derive(Debug, Clone)]
pub struct Lstm {
    w_ih: Tensor,
    w_hh: Tensor,
    b_ih: Tensor,
    b_hh: Tensor,
    hidden: usize,
    reverse: bool,
}

impl Lstm {
    /// An LSTM from `input` to `hidden` features, its weights under `vb` as `weight_ih_l0`,
    /// `weight_hh_l0`, `bias_ih_l0`, `bias_hh_l0` (with `_reverse` when `reverse`), initialised
    /// uniformly in `±1/sqrt(hidden)` as PyTorch does.
    pub fn new(
        input: usize,
        hidden: usize,
        reverse: bool,
        vb: VarBuilder,
    ) -> candle_core::Result<Self> {
        let sfx = if reverse { "_reverse" } else { "" };
        let bound = 1.0 / (hidden as f64).sqrt();
        let init = Init::Uniform {
            lo: -bound,
            up: bound,
        };
        let w_ih = vb.get_with_hints((4 * hidden, input), &format!("weight_ih_l0{sfx}"), init)?;
        let w_hh = vb.get_with_hints((4 * hidden, hidden), &format!("weight_hh_l0{sfx}"), init)?;
        let b_ih = vb.get_with_hints(4 * hidden, &format!("bias_ih_l0{sfx}"), init)?;
        let b_hh = vb.get_with_hints(4 * hidden, &format!("bias_hh_l0{sfx}"), init)?;
        Ok(Self {
            w_ih,
            w_hh,
            b_ih,
            b_hh,
            hidden,
            reverse,
        })
    }

    /// Hidden size `H`.
    pub fn hidden(&self) -> usize {
        self.hidden
    }

    /// One step in candle ops (for decoding): `x` `[B, I]`, state `h`, `c` `[B, H]` -> next
    /// `(h, c)`.
    pub fn step(
        &self,
        x: &Tensor,
        h: &Tensor,
        c: &Tensor,
    ) -> candle_core::Result<(Tensor, Tensor)> {
        let hd = self.hidden;
        let a = x
            .matmul(&self.w_ih.t()?)?
            .broadcast_add(&(&self.b_ih + &self.b_hh)?)?
            .add(&h.matmul(&self.w_hh.t()?)?)?;
        let i = candle_nn::ops::sigmoid(&a.narrow(1, 0, hd)?)?;
        let f = candle_nn::ops::sigmoid(&a.narrow(1, hd, hd)?)?;
        let g = a.narrow(1, 2 * hd, hd)?.tanh()?;
        let o = candle_nn::ops::sigmoid(&a.narrow(1, 3 * hd, hd)?)?;
        let c = ((f * c)? + (i * g)?)?;
        let h = (o * c.tanh()?)?;
        Ok((h, c))
    }

    /// `x`: `[B, T, I]`; returns `[B, T, H]`, zero at padded frames.
    pub fn forward(&self, x: &Tensor, lens: &[usize]) -> candle_core::Result<Tensor> {
        let (b, t, i) = x.dims3()?;
        let gx = x
            .reshape((b * t, i))?
            .matmul(&self.w_ih.t()?)?
            .broadcast_add(&(&self.b_ih + &self.b_hh)?)?
            .reshape((b, t, 4 * self.hidden))?;
        lstm_recurrence(&gx, &self.w_hh, lens, self.reverse)
    }
}

/// A bidirectional LSTM layer: `[B, T, I] -> [B, T, 2H]` (forward states, then backward ones).
#[derive(Debug, Clone)]
pub struct BiLstm {
    fwd: Lstm,
    bwd: Lstm,
}

impl BiLstm {
    /// Both directions under `vb` (PyTorch names, `_reverse` for the backward one).
    pub fn new(input: usize, hidden: usize, vb: VarBuilder) -> candle_core::Result<Self> {
        Ok(Self {
            fwd: Lstm::new(input, hidden, false, vb.clone())?,
            bwd: Lstm::new(input, hidden, true, vb)?,
        })
    }

    /// Output width `2H`.
    pub fn output_dim(&self) -> usize {
        2 * self.fwd.hidden
    }

    /// `x`: `[B, T, I]`; returns `[B, T, 2H]`, zero at padded frames.
    pub fn forward(&self, x: &Tensor, lens: &[usize]) -> candle_core::Result<Tensor> {
        let f = self.fwd.forward(x, lens)?;
        let b = self.bwd.forward(x, lens)?;
        Tensor::cat(&[f, b], 2)
    }
}

/// The recurrence on CUDA tensors: `kernels/lstm.cu` through ent-kernels' launch plans.
#[cfg(feature = "cuda")]
mod cuda {
    use std::sync::Arc;

    use candle_core::{CudaStorage, DType, Layout, Shape};
    use ent_kernels::op::{CpuOp, Fwd};
    use ent_kernels::plan::{self as launch, KernelDType, LstmDims};

    use super::Dims;

    pub(super) fn lstm_dims(d: Dims) -> LstmDims {
        LstmDims {
            batch: d.b,
            frames: d.t,
            hidden: d.h,
        }
    }

    /// Whether the kernels take this problem (f32 or f64, `H` within their shared memory);
    /// otherwise the step-wise candle ops run it.
    pub(super) fn fits(b: usize, t: usize, h: usize, dtype: DType, reverse: bool) -> bool {
        let kd = match dtype {
            DType::F32 => KernelDType::F32,
            DType::F64 => KernelDType::F64,
            _ => return false,
        };
        let dims = lstm_dims(Dims { b, t, h });
        launch::lstm_plan(dims, kd, reverse, launch::LSTM_MAX_BLOCK).is_ok()
    }

    /// The backward kernel as a candle op over `(grad_hidden, w_hh)`, giving `dL/dgx`.
    pub(super) struct Backward {
        pub lens: Arc<[usize]>,
        pub reverse: bool,
        pub state: Arc<(CudaStorage, CudaStorage)>,
    }

    impl CpuOp for Backward {
        type Saved = ();

        const NAME: &'static str = "lstm-recurrence-grad";

        fn forward<F: ent_kernels::Float>(&self, _: &[&[F]], _: &[&[usize]]) -> Fwd<F> {
            candle_core::bail!("lstm-recurrence-grad runs on CUDA tensors only")
        }

        fn cuda_forward(
            &self,
            x: &[(&CudaStorage, &Layout)],
        ) -> candle_core::Result<(CudaStorage, Shape, Option<()>)> {
            let (b, t, h) = x[0].1.shape().dims3()?;
            let dims = lstm_dims(Dims { b, t, h });
            let dgx = ent_kernels::cuda::lstm_backward(
                x[0],
                x[1],
                (&self.state.0, &self.state.1),
                dims,
                &self.lens,
                self.reverse,
            )?;
            Ok((dgx, Shape::from((b, t, 4 * h)), None))
        }
    }
}
