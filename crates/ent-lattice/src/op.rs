//! The candle entry points: argument checks on tensors, and custom ops whose backward pass is
//! the hand-written gradient (no per-node autograd graph is built).

use std::sync::Arc;

#[cfg(feature = "cuda")]
use candle_core::Shape;
use candle_core::backend::BackendStorage;
use candle_core::{CpuStorage, CpuStorageRef, DType, Device, Layout, Storage, Tensor, WithDType};
use ent_kernels::Float;
use ent_kernels::op::{CpuOp, Forward as OpForward, Fwd, Op};

use crate::align::{self, Alignment};
use crate::config::{LatticePoolConfig, Reduction, RnntLossConfig};

use crate::elem::Logit;
use crate::error::LatticeError;
use crate::pool::{self, PoolForward, PoolProblem};
use crate::problem::{Indices, LatticeBatch, LatticeDims};
use crate::rnnt::{self, Forward, RnntProblem};

const LOGIT_DTYPES: &str = "f32, f16, bf16, f64";
const INDEX_DTYPES: &str = "u8, u32, i64";

fn dims4(arg: &'static str, t: &Tensor, what: &str) -> Result<LatticeDims, LatticeError> {
    match *t.dims() {
        [batch, frames, positions, classes] if positions > 0 => Ok(LatticeDims {
            batch,
            frames,
            targets: positions - 1,
            classes,
        }),
        _ => Err(LatticeError::Shape {
            arg,
            got: t.dims().to_vec(),
            expected: format!("[B, T, U+1, {what}] with U+1 >= 1"),
        }),
    }
}

fn check_logit_dtype(arg: &'static str, t: &Tensor) -> Result<(), LatticeError> {
    match t.dtype() {
        DType::F32 | DType::F16 | DType::BF16 | DType::F64 => Ok(()),
        d => Err(LatticeError::DType {
            arg,
            dtype: format!("{d:?}"),
            expected: LOGIT_DTYPES,
        }),
    }
}

/// Where a loss can run its logits: the CPU, or CUDA when the `cuda` feature is built.
fn check_device(arg: &'static str, t: &Tensor) -> Result<(), LatticeError> {
    match t.device() {
        Device::Cpu => Ok(()),
        Device::Cuda(_) if cfg!(feature = "cuda") => Ok(()),
        Device::Cuda(_) => Err(LatticeError::CudaNotEnabled { arg }),
        other => Err(LatticeError::UnsupportedDevice {
            arg,
            device: format!("{:?}", other.location()),
        }),
    }
}

/// Every argument on the logits' device. An empty tensor (`targets` of a batch without
/// labels, `[B, 0]`) holds no data and may live anywhere: CUDA cannot allocate zero bytes.
fn check_same_device(
    reference: (&'static str, &Tensor),
    others: &[(&'static str, &Tensor)],
) -> Result<(), LatticeError> {
    for (arg, t) in others {
        if t.elem_count() > 0 && !t.device().same_device(reference.1.device()) {
            return Err(LatticeError::DeviceMismatch {
                arg,
                device: format!("{:?}", t.device().location()),
                reference: reference.0,
                expected: format!("{:?}", reference.1.device().location()),
            });
        }
    }
    Ok(())
}

/// An operation on CPU logits of any element type (a closure cannot be generic).
trait OnLogits {
    type Out;
    fn run<E: Logit>(self, logits: &[E]) -> candle_core::Result<Self::Out>;
}

/// Runs `f` on the contiguous logits of a CPU storage: the one place the CPU ops dispatch on
/// the logits' dtype.
fn on_cpu_logits<F: OnLogits>(
    arg: &'static str,
    s: &CpuStorage,
    l: &Layout,
    f: F,
) -> candle_core::Result<F::Out> {
    let (start, end) = l
        .contiguous_offsets()
        .ok_or_else(|| candle_core::Error::msg(format!("{arg} must be contiguous")))?;
    let r = start..end;
    match s {
        CpuStorage::F32(v) => f.run(&v[r]),
        CpuStorage::F16(v) => f.run(&v[r]),
        CpuStorage::BF16(v) => f.run(&v[r]),
        CpuStorage::F64(v) => f.run(&v[r]),
        other => Err(LatticeError::DType {
            arg,
            dtype: format!("{:?}", other.dtype()),
            expected: LOGIT_DTYPES,
        })?,
    }
}

/// Copies an integer tensor of the expected shape to the host as i64 (from a GPU too: the
/// integer inputs are `O(B * U)`).
pub(crate) fn host_index(
    arg: &'static str,
    t: &Tensor,
    shape: &[usize],
) -> candle_core::Result<Vec<i64>> {
    if t.dims() != shape {
        Err(LatticeError::Shape {
            arg,
            got: t.dims().to_vec(),
            expected: format!("{shape:?}"),
        })?;
    }
    match t.dtype() {
        DType::U8 | DType::U32 | DType::I64 => {}
        d => Err(LatticeError::DType {
            arg,
            dtype: format!("{d:?}"),
            expected: INDEX_DTYPES,
        })?,
    }
    t.flatten_all()?
        .to_device(&Device::Cpu)?
        .to_dtype(DType::I64)?
        .to_vec1::<i64>()
}

pub(crate) fn reduce(
    costs: Tensor,
    reduction: Reduction,
    batch: usize,
) -> candle_core::Result<Tensor> {
    match reduction {
        Reduction::None => Ok(costs),
        Reduction::Sum => costs.sum_all(),
        Reduction::Mean => costs.sum_all()?.affine(1.0 / batch as f64, 0.0),
    }
}

/// The RNN-T loss (docs/method.md §3), differentiable through candle's `backward()`.
///
/// - `logits`: `[B, T, U+1, V]`, the raw joint-network outputs; f32, f16, bf16 (computed in
///   f32) or f64 (computed in f64). The log-softmax over `V` is fused inside.
/// - `targets`: `[B, U]`, u32, i64 or u8; entries past `target_lens[b]` are ignored.
/// - `logit_lens`: `[B]`, `1 <= logit_lens[b] <= T`; `target_lens`: `[B]`, `<= U`.
///
/// Returns `[B]` costs `-log P(y_b | x_b)` for [`Reduction::None`], else a scalar; in the dtype
/// of `logits`. The gradient with respect to `logits` is computed in the forward pass when
/// `logits` is part of an autograd graph, and kept by the op until `backward()` asks for it;
/// otherwise the forward pass skips it. Cells outside an utterance's lengths are never read
/// and receive zero gradient. NaN or `+inf` in an utterance's valid cells makes its cost and
/// gradient NaN; `-inf` is a valid logit, and a target that `-inf` logits make unreachable
/// costs `+inf` (0 with `zero_infinity`) with zero gradient.
///
/// Errors (naming the argument and value) on shape or batch mismatches, lengths beyond their
/// dimension, zero-length utterances, labels `>= V` or equal to blank, unsupported dtypes and
/// invalid configurations.
pub fn rnnt_loss(
    logits: &Tensor,
    targets: &Tensor,
    logit_lens: &Tensor,
    target_lens: &Tensor,
    cfg: &RnntLossConfig,
) -> candle_core::Result<Tensor> {
    let (op, b) = RnntOp::new(logits, targets, logit_lens, target_lens, cfg)?;
    let op = RnntOp {
        keep_gradient: logits.track_op(),
        ..op
    };
    let costs = logits.contiguous()?.apply_op1(Op::new(op))?;
    reduce(costs, cfg.reduction, b)
}

/// The RNN-T loss and its gradient in one call, without autograd: the loss reduced as
/// `cfg.reduction` says, and `d loss / d logits` (`[B, T, U+1, V]`, the logits' dtype; for
/// [`Reduction::None`], the gradient of the sum of the costs). Arguments as for [`rnnt_loss`].
///
/// `rnnt_loss(..)?.backward()` computes the same gradient and then adds it into candle's
/// gradient store (a zeroed tensor plus an addition: two more passes over a logits-sized
/// tensor); callers who apply the gradient themselves, like a fused joint network, skip them.
pub fn rnnt_loss_with_grad(
    logits: &Tensor,
    targets: &Tensor,
    logit_lens: &Tensor,
    target_lens: &Tensor,
    cfg: &RnntLossConfig,
) -> candle_core::Result<(Tensor, Tensor)> {
    let (op, b) = RnntOp::new(logits, targets, logit_lens, target_lens, cfg)?;
    let op = Op::new(op);
    let z = logits.detach().contiguous()?;
    let costs = z.apply_op1_no_bwd(&op)?;
    let g = Tensor::full(rnnt::reduction_scale(cfg.reduction, b), b, z.device())?;
    let grad = op.inner().gradient(&z, &g, &mut *op.state()?)?;
    Ok((reduce(costs, cfg.reduction, b)?, grad))
}

/// The most probable alignment of each utterance through the RNN-T lattice (Viterbi over the
/// same log-probabilities as [`rnnt_loss`]); arguments as for [`rnnt_loss`], with `blank` the
/// blank index. No gradient: the logits are read on the host (copied there from a GPU).
///
/// Each [`Alignment`] lists, for every valid frame `t`, the predictor position `u_t` whose
/// blank leaves that frame: the node where greedy decoding reads frame `t`'s emotion.
pub fn rnnt_best_path(
    logits: &Tensor,
    targets: &Tensor,
    logit_lens: &Tensor,
    target_lens: &Tensor,
    blank: usize,
) -> candle_core::Result<Vec<Alignment>> {
    let h = HostArgs::read(logits, targets, logit_lens, target_lens)?;
    if logits.device().is_cuda() {
        return best_path_cuda(logits, &h, blank);
    }
    struct BestPath<'a>(&'a HostArgs, usize);
    impl OnLogits for BestPath<'_> {
        type Out = Vec<Alignment>;
        fn run<E: Logit>(self, logits: &[E]) -> candle_core::Result<Vec<Alignment>> {
            let (h, blank) = (self.0, self.1);
            let batch = LatticeBatch {
                logits,
                dims: h.dims,
                targets: &h.targets,
                logit_lens: &h.logit_lens,
                target_lens: &h.target_lens,
            };
            Ok(align::rnnt_best_path_slice(batch, blank)?)
        }
    }
    let logits = logits.detach().contiguous()?;
    let (storage, layout) = logits.storage_and_layout();
    match &*storage {
        Storage::Cpu(s) => on_cpu_logits("logits", s, layout, BestPath(&h, blank)),
        _ => Err(candle_core::Error::msg(
            "rnnt_best_path: expected a CPU tensor",
        )),
    }
}

/// `rnnt_best_path` on a CUDA tensor: the normaliser kernel on the device, then the Viterbi
/// pass over the `[B, T, U+1]` node log-probabilities on the host.
fn best_path_cuda(
    logits: &Tensor,
    h: &HostArgs,
    blank: usize,
) -> candle_core::Result<Vec<Alignment>> {
    let p = align::validate(h.indices(), blank)?;
    #[cfg(feature = "cuda")]
    {
        let logits = logits.contiguous()?;
        let (storage, layout) = logits.storage_and_layout();
        let Storage::Cuda(s) = &*storage else {
            return Err(candle_core::Error::msg(
                "rnnt_best_path: expected a CUDA tensor",
            ));
        };
        let lp = crate::cuda::node_log_probs(&p, s, layout)?;
        let (blank_lp, label_lp) = align::split_node_log_probs(&lp);
        Ok(align::best_paths(&blank_lp, &label_lp, &p))
    }
    #[cfg(not(feature = "cuda"))]
    {
        let _ = (logits, p);
        Err(LatticeError::CudaNotEnabled { arg: "logits" })?
    }
}

/// The checked shape of a lattice's logits and its three integer arguments (RNN-T targets or
/// pooling labels, and the two lengths), copied to the host.
struct HostArgs {
    dims: LatticeDims,
    /// `targets` (`[B, U]`) or `labels` (`[B]`).
    targets: Vec<i64>,
    logit_lens: Vec<i64>,
    target_lens: Vec<i64>,
}

impl HostArgs {
    fn indices(&self) -> Indices<'_, i64> {
        Indices {
            dims: self.dims,
            targets: &self.targets,
            logit_lens: &self.logit_lens,
            target_lens: &self.target_lens,
        }
    }
}

/// The names of a loss's arguments, for its messages.
struct ArgNames {
    logits: &'static str,
    classes: &'static str,
    first: &'static str,
    /// `first` is `[B, U]` (targets) rather than `[B]` (labels).
    first_per_label: bool,
}

const RNNT_ARGS: ArgNames = ArgNames {
    logits: "logits",
    classes: "V",
    first: "targets",
    first_per_label: true,
};

const POOL_ARGS: ArgNames = ArgNames {
    logits: "emotion_logits",
    classes: "K",
    first: "labels",
    first_per_label: false,
};

impl HostArgs {
    fn read(
        logits: &Tensor,
        targets: &Tensor,
        logit_lens: &Tensor,
        target_lens: &Tensor,
    ) -> candle_core::Result<Self> {
        Self::read_as(&RNNT_ARGS, logits, targets, logit_lens, target_lens)
    }

    fn read_as(
        names: &ArgNames,
        logits: &Tensor,
        first: &Tensor,
        logit_lens: &Tensor,
        target_lens: &Tensor,
    ) -> candle_core::Result<Self> {
        let dims = dims4(names.logits, logits, names.classes)?;
        if dims.batch == 0 {
            Err(LatticeError::EmptyBatch { arg: names.logits })?;
        }
        check_logit_dtype(names.logits, logits)?;
        check_device(names.logits, logits)?;
        check_same_device(
            (names.logits, logits),
            &[
                (names.first, first),
                ("logit_lens", logit_lens),
                ("target_lens", target_lens),
            ],
        )?;
        let b = dims.batch;
        let first_shape = if names.first_per_label {
            vec![b, dims.targets]
        } else {
            vec![b]
        };
        Ok(Self {
            dims,
            targets: host_index(names.first, first, &first_shape)?,
            logit_lens: host_index("logit_lens", logit_lens, &[b])?,
            target_lens: host_index("target_lens", target_lens, &[b])?,
        })
    }
}

/// What the RNN-T forward pass keeps for the backward pass.
enum Saved {
    /// The gradient buffer (f32, or f64 for f64 logits) holding `exp(z - max)`, and the
    /// forward pass.
    Cpu(CpuStorage, Forward),
    /// The device scratch of a CUDA forward pass.
    #[cfg(feature = "cuda")]
    Cuda(ent_kernels::cuda::OnDevice),
}

struct RnntOp {
    problem: Arc<RnntProblem>,
    cfg: RnntLossConfig,
    keep_gradient: bool,
}

impl RnntOp {
    /// Checks the arguments (on the host) and builds the op, keeping the gradient; returns it
    /// with the batch size.
    fn new(
        logits: &Tensor,
        targets: &Tensor,
        logit_lens: &Tensor,
        target_lens: &Tensor,
        cfg: &RnntLossConfig,
    ) -> candle_core::Result<(Self, usize)> {
        let h = HostArgs::read(logits, targets, logit_lens, target_lens)?;
        let problem = rnnt::validate(h.indices(), cfg)?;
        let op = RnntOp {
            problem: Arc::new(problem),
            cfg: cfg.clone(),
            keep_gradient: true,
        };
        Ok((op, h.dims.batch))
    }

    /// The forward pass on host logits; the costs and, when `keep`, the state.
    fn run<E: Logit>(
        &self,
        logits: &[E],
        keep: bool,
    ) -> candle_core::Result<(Vec<f64>, Option<Saved>)> {
        if !keep {
            let fwd = rnnt::forward(logits, &self.problem, &self.cfg, None)?;
            return Ok((fwd.costs, None));
        }
        let mut buf = grad_buffer::<E::Acc>(logits.len());
        let fwd = rnnt::forward(logits, &self.problem, &self.cfg, Some(&mut buf))?;
        let costs = fwd.costs.clone();
        Ok((
            costs,
            Some(Saved::Cpu(E::Acc::to_cpu_storage_owned(buf), fwd)),
        ))
    }

    /// The forward pass again, on the logits `arg` (halves in f32), keeping the state.
    fn recompute(&self, arg: &Tensor) -> candle_core::Result<Saved> {
        let saved = match arg.dtype() {
            DType::F64 => self.run(&arg.flatten_all()?.to_vec1::<f64>()?, true)?.1,
            _ => {
                self.run(
                    &arg.to_dtype(DType::F32)?.flatten_all()?.to_vec1::<f32>()?,
                    true,
                )?
                .1
            }
        };
        saved.ok_or_else(|| candle_core::Error::msg("rnnt_loss: no state kept"))
    }

    /// `sum_b grad_res[b] * d cost_b / d logits` for the logits `arg` of the forward pass,
    /// from its state (taken) or recomputed.
    fn gradient(
        &self,
        arg: &Tensor,
        grad_res: &Tensor,
        saved: &mut Option<Saved>,
    ) -> candle_core::Result<Tensor> {
        if arg.device().is_cuda() {
            return self.bwd_cuda(arg, grad_res, saved);
        }
        let g = grad_costs(grad_res)?;
        let saved = match saved.take() {
            Some(s) => s,
            // A second backward pass over the same graph: recompute.
            None => self.recompute(arg)?,
        };
        let p = &self.problem;
        let clamp = self.cfg.clamp;
        Ok(match saved {
            Saved::Cpu(CpuStorage::F32(mut buf), fwd) => {
                rnnt::backward(&mut buf, p, &fwd, &g, clamp);
                grad_tensor(buf, arg)?
            }
            Saved::Cpu(CpuStorage::F64(mut buf), fwd) => {
                rnnt::backward(&mut buf, p, &fwd, &g, clamp);
                grad_tensor(buf, arg)?
            }
            Saved::Cpu(other, _) => Err(candle_core::Error::msg(format!(
                "rnnt_loss: a gradient buffer of {:?}",
                other.dtype()
            )))?,
            #[cfg(feature = "cuda")]
            Saved::Cuda(_) => Err(candle_core::Error::msg(
                "rnnt_loss: CUDA state for a CPU backward pass",
            ))?,
        })
    }

    /// The gradient of CUDA logits, on the device, from the forward pass's scratch (or a
    /// recomputed forward pass on a second backward).
    fn bwd_cuda(
        &self,
        arg: &Tensor,
        grad_res: &Tensor,
        saved: &mut Option<Saved>,
    ) -> candle_core::Result<Tensor> {
        #[cfg(feature = "cuda")]
        {
            let state = match saved.take() {
                Some(Saved::Cuda(st)) => Some(st),
                _ => None,
            };
            let g = grad_res.to_dtype(DType::F64)?.contiguous()?;
            let op = crate::cuda::GradOp::rnnt(self.problem.clone(), self.cfg.clone(), state);
            arg.apply_op2_no_bwd(&g, &Op::new(op))
        }
        #[cfg(not(feature = "cuda"))]
        {
            let _ = (arg, grad_res, saved);
            Err(LatticeError::CudaNotEnabled { arg: "logits" })?
        }
    }
}

/// The costs `c` of `F`'s logits as `F`.
fn costs_of<F: Float>(costs: &[f64]) -> Vec<F> {
    costs.iter().map(|&c| F::from_f64(c)).collect()
}

impl CpuOp for RnntOp {
    type Saved = Saved;
    const HALVES: bool = true;

    const NAME: &'static str = "rnnt-loss";

    fn forward<F: Float>(&self, x: &[&[F]], _: &[&[usize]]) -> Fwd<F, Saved> {
        let (costs, saved) = match F::cpu_storage_ref(x[0]) {
            CpuStorageRef::F32(z) => self.run(z, self.keep_gradient)?,
            CpuStorageRef::F64(z) => self.run(z, self.keep_gradient)?,
            _ => Err(candle_core::Error::msg(format!(
                "rnnt_loss: logits of {:?}",
                F::DTYPE
            )))?,
        };
        let b = costs.len();
        let f = OpForward::new(costs_of(&costs), b);
        Ok(match saved {
            Some(s) => f.keep(s),
            None => f,
        })
    }

    #[cfg(feature = "cuda")]
    fn cuda_forward(
        &self,
        x: &[(&candle_core::CudaStorage, &Layout)],
    ) -> candle_core::Result<(candle_core::CudaStorage, Shape, Option<Saved>)> {
        let (s, l) = x[0];
        let (costs, state) = crate::cuda::rnnt_forward(&self.problem, &self.cfg, s, l)?;
        let b = self.problem.dims.batch;
        let saved = self.keep_gradient.then_some(Saved::Cuda(state));
        Ok((
            crate::cuda::costs_as(costs, b, s.dtype())?,
            Shape::from(b),
            saved,
        ))
    }

    fn backward(
        &self,
        x: &[&Tensor],
        _: &Tensor,
        grad: &Tensor,
        saved: &mut Option<Saved>,
    ) -> candle_core::Result<Vec<Option<Tensor>>> {
        Ok(vec![Some(self.gradient(x[0], grad, saved)?)])
    }
}

/// A zeroed gradient buffer of `n` elements, left untouched so that the forward pass's
/// threads fault its pages in, in parallel.
///
/// On Linux, buffers of several MiB ask for transparent huge pages before the first touch
/// (`MADV_HUGEPAGE`): faulting in 2 MiB pages instead of 4 KiB ones. A fresh gradient of
/// 167 MB otherwise costs about as much in page faults as the whole loss computation.
fn grad_buffer<A: Float>(n: usize) -> Vec<A> {
    let v = vec![A::default(); n];
    #[cfg(target_os = "linux")]
    {
        const HUGE: usize = 2 << 20;
        let start = v.as_ptr() as usize;
        let end = start + std::mem::size_of_val(v.as_slice());
        let (lo, hi) = (start.next_multiple_of(HUGE), end / HUGE * HUGE);
        if hi > lo {
            // SAFETY: [lo, hi) lies inside the allocation owned by `v`; MADV_HUGEPAGE is
            // advice about backing pages and changes neither the contents nor the mapping's
            // validity. Failure (e.g. THP disabled) is harmless and ignored.
            unsafe {
                libc::madvise(lo as *mut libc::c_void, hi - lo, libc::MADV_HUGEPAGE);
            }
        }
    }
    v
}

/// A gradient buffer as a tensor of the logits' dtype and shape.
fn grad_tensor<A: Float>(buf: Vec<A>, like: &Tensor) -> candle_core::Result<Tensor> {
    let t = Tensor::from_vec(buf, like.shape(), like.device())?;
    if t.dtype() == like.dtype() {
        Ok(t)
    } else {
        t.to_dtype(like.dtype())
    }
}

fn grad_costs(grad_res: &Tensor) -> candle_core::Result<Vec<f64>> {
    grad_res.to_dtype(DType::F64)?.to_vec1::<f64>()
}

/// Emotion-lattice max pooling loss (docs/method.md §3), differentiable through candle's
/// `backward()`; gradient flows only into the selected nodes.
///
/// - `emotion_logits`: `[B, T, U+1, K]`, the raw emotion-joint outputs (f32, f16, bf16, f64).
/// - `labels`: `[B]`, each utterance's emotion class (u32, i64 or u8), below `K`.
/// - `logit_lens`, `target_lens`: `[B]` as for [`rnnt_loss`].
///
/// Returns `[B]` for [`Reduction::None`], else a scalar, in the dtype of `emotion_logits`.
/// Ties in the arg-max and arg-min go to the first node in `(t, u)` row-major order.
pub fn lattice_max_pool_loss(
    emotion_logits: &Tensor,
    labels: &Tensor,
    logit_lens: &Tensor,
    target_lens: &Tensor,
    cfg: &LatticePoolConfig,
) -> candle_core::Result<Tensor> {
    let (op, b) = PoolOp::new(emotion_logits, labels, logit_lens, target_lens, cfg)?;
    let costs = emotion_logits.contiguous()?.apply_op1(Op::new(op))?;
    reduce(costs, cfg.reduction, b)
}

impl PoolOp {
    /// Checks the arguments (on the host) and builds the op; returns it with the batch size.
    fn new(
        emotion_logits: &Tensor,
        labels: &Tensor,
        logit_lens: &Tensor,
        target_lens: &Tensor,
        cfg: &LatticePoolConfig,
    ) -> candle_core::Result<(Self, usize)> {
        let h = HostArgs::read_as(&POOL_ARGS, emotion_logits, labels, logit_lens, target_lens)?;
        let b = h.dims.batch;
        let problem = pool::validate(h.indices(), cfg)?;
        let op = PoolOp {
            problem,
            cfg: cfg.clone(),
        };
        Ok((op, b))
    }
}

/// Lattice max pooling and its gradient in one call, without autograd (as
/// [`rnnt_loss_with_grad`] is to [`rnnt_loss`]); arguments as for [`lattice_max_pool_loss`].
pub fn lattice_max_pool_loss_with_grad(
    emotion_logits: &Tensor,
    labels: &Tensor,
    logit_lens: &Tensor,
    target_lens: &Tensor,
    cfg: &LatticePoolConfig,
) -> candle_core::Result<(Tensor, Tensor)> {
    let (op, b) = PoolOp::new(emotion_logits, labels, logit_lens, target_lens, cfg)?;
    let op = Op::new(op);
    let z = emotion_logits.detach().contiguous()?;
    let costs = z.apply_op1_no_bwd(&op)?;
    let g = Tensor::full(rnnt::reduction_scale(cfg.reduction, b), b, z.device())?;
    let grad = op.inner().gradient(&z, &g, op.state()?.as_ref())?;
    Ok((reduce(costs, cfg.reduction, b)?, grad))
}

struct PoolOp {
    problem: PoolProblem,
    cfg: LatticePoolConfig,
}

impl CpuOp for PoolOp {
    type Saved = Arc<PoolForward>;
    const HALVES: bool = true;

    const NAME: &'static str = "lattice-max-pool-loss";

    fn forward<F: Float>(&self, x: &[&[F]], _: &[&[usize]]) -> Fwd<F, Arc<PoolForward>> {
        let fwd = match F::cpu_storage_ref(x[0]) {
            CpuStorageRef::F32(z) => pool::forward(z, &self.problem, &self.cfg)?,
            CpuStorageRef::F64(z) => pool::forward(z, &self.problem, &self.cfg)?,
            _ => Err(candle_core::Error::msg(format!(
                "lattice_max_pool_loss: emotion logits of {:?}",
                F::DTYPE
            )))?,
        };
        let costs = costs_of(&fwd.costs);
        let b = costs.len();
        Ok(OpForward::new(costs, b).keep(Arc::new(fwd)))
    }

    #[cfg(feature = "cuda")]
    fn cuda_forward(
        &self,
        x: &[(&candle_core::CudaStorage, &Layout)],
    ) -> candle_core::Result<(candle_core::CudaStorage, Shape, Option<Arc<PoolForward>>)> {
        let (s, l) = x[0];
        let costs = crate::cuda::pool_forward(&self.problem, &self.cfg, s, l)?;
        let b = self.problem.dims.batch;
        Ok((
            crate::cuda::costs_as(costs, b, s.dtype())?,
            Shape::from(b),
            None,
        ))
    }

    fn backward(
        &self,
        x: &[&Tensor],
        _: &Tensor,
        grad: &Tensor,
        saved: &mut Option<Arc<PoolForward>>,
    ) -> candle_core::Result<Vec<Option<Tensor>>> {
        Ok(vec![Some(self.gradient(x[0], grad, saved.as_ref())?)])
    }
}

impl PoolOp {
    /// `sum_b grad_res[b] * d cost_b / d emotion_logits`, in the logits' dtype.
    fn gradient(
        &self,
        arg: &Tensor,
        grad_res: &Tensor,
        saved: Option<&Arc<PoolForward>>,
    ) -> candle_core::Result<Tensor> {
        if arg.device().is_cuda() {
            // The selection is recomputed on the device (O(B T (U+1) K), cheap), so the
            // forward pass keeps nothing.
            #[cfg(feature = "cuda")]
            {
                let g = grad_res.to_dtype(DType::F64)?.contiguous()?;
                let op = crate::cuda::GradOp::pool(self.problem.clone(), self.cfg.clone());
                return arg
                    .apply_op2_no_bwd(&g, &Op::new(op))?
                    .to_dtype(arg.dtype());
            }
            #[cfg(not(feature = "cuda"))]
            Err(LatticeError::CudaNotEnabled {
                arg: "emotion_logits",
            })?;
        }
        let g = grad_costs(grad_res)?;
        let fwd = saved.ok_or_else(|| {
            candle_core::Error::msg("lattice_max_pool_loss: backward before forward")
        })?;
        let k = self.problem.dims.classes;
        let n = arg.elem_count();
        if arg.dtype() == DType::F64 {
            let mut buf = vec![0f64; n];
            pool::scatter(&mut buf, k, fwd, &g);
            grad_tensor(buf, arg)
        } else {
            let mut buf = vec![0f32; n];
            pool::scatter(&mut buf, k, fwd, &g);
            grad_tensor(buf, arg)
        }
    }
}
