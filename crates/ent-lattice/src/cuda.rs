//! The losses on candle's CUDA tensors (feature `cuda`): their plans run by ent-kernels' CUDA
//! executor on candle's device and stream.
//!
//! Memory: the uploaded integer inputs, `O(B * T * (U+1))` f64 scratch, the `[B]` costs and,
//! in the backward pass, the gradient. No `B * T * (U+1) * V` data crosses to the host; only
//! `rnnt_best_path` copies the `[B, T, U+1, 3]` node log-probabilities back for its Viterbi
//! pass.

use std::sync::Arc;

use candle_core::backend::BackendStorage;
use candle_core::{CudaStorage, DType, Layout, Shape};
use ent_kernels::cuda::{OnDevice, kernel_dtype, missing};
use ent_kernels::op::{CpuOp, Fwd};
use ent_kernels::plan::{self, Role};

use crate::config::{LatticePoolConfig, RnntLossConfig};
use crate::pool::PoolProblem;
use crate::problem::LatticeDims;
use crate::rnnt::RnntProblem;

/// The RNN-T forward pass: `[B]` f64 costs and the state for [`rnnt_gradient`].
pub(crate) fn rnnt_forward(
    problem: &RnntProblem,
    cfg: &RnntLossConfig,
    s: &CudaStorage,
    l: &Layout,
) -> candle_core::Result<(CudaStorage, OnDevice)> {
    let plan = plan::rnnt_plan(problem.dims, kernel_dtype(s.dtype())?, &cfg.kernel_params())?;
    let on = OnDevice::new(plan, &problem.uploads(), &s.device)?;
    let costs = on.run(&on.plan.forward, (s, l), None)?.costs;
    Ok((costs.ok_or_else(|| missing("costs"))?, on))
}

/// The RNN-T gradient from a forward pass's state (recomputed when `state` is `None`), scaled
/// per utterance by the f64 `grad_costs` `g`; in the logits' dtype.
pub(crate) fn rnnt_gradient(
    state: Option<&OnDevice>,
    problem: &RnntProblem,
    cfg: &RnntLossConfig,
    logits: (&CudaStorage, &Layout),
    g: (&CudaStorage, &Layout),
) -> candle_core::Result<CudaStorage> {
    let recomputed;
    let state = match state {
        Some(st) => st,
        None => {
            recomputed = rnnt_forward(problem, cfg, logits.0, logits.1)?.1;
            &recomputed
        }
    };
    let grad = state.run(&state.plan.gradient, logits, Some(g))?.grad;
    grad.ok_or_else(|| missing("gradient"))
}

/// The node log-probabilities `[B][T][U+1][3]` (blank, label, normaliser) on the host, for the
/// Viterbi pass of `rnnt_best_path`.
pub(crate) fn node_log_probs(
    problem: &RnntProblem,
    s: &CudaStorage,
    l: &Layout,
) -> candle_core::Result<Vec<f64>> {
    let plan = plan::best_path_plan(problem.dims, kernel_dtype(s.dtype())?, problem.blank)?;
    let on = OnDevice::new(plan, &problem.uploads(), &s.device)?;
    on.run(on.plan.normalize(), (s, l), None)?;
    let lp = on.prepared.get(Role::Lp).ok_or_else(|| missing("Lp"))?;
    let bytes = s.device.clone_dtoh(lp)?;
    let n = problem.dims.nodes()? * 3;
    Ok(bytes
        .chunks_exact(8)
        .take(n)
        .map(|c| f64::from_ne_bytes(c.try_into().expect("8 bytes")))
        .collect())
}

/// The pooling plan with its uploads on the device.
fn pool_on_device(
    problem: &PoolProblem,
    cfg: &LatticePoolConfig,
    s: &CudaStorage,
) -> candle_core::Result<OnDevice> {
    let plan = plan::pool_plan(problem.dims, kernel_dtype(s.dtype())?, &cfg.kernel_params())?;
    OnDevice::new(plan, &problem.uploads(), &s.device)
}

/// The pooling costs (`[B]` f64), no gradient.
pub(crate) fn pool_forward(
    problem: &PoolProblem,
    cfg: &LatticePoolConfig,
    s: &CudaStorage,
    l: &Layout,
) -> candle_core::Result<CudaStorage> {
    let on = pool_on_device(problem, cfg, s)?;
    let costs = on.run(&on.plan.forward, (s, l), None)?.costs;
    costs.ok_or_else(|| missing("costs"))
}

/// The pooling gradient scaled per utterance by `g` (f64): f32, or f64 for f64 logits. The
/// launch writes the costs again, into a buffer dropped here.
pub(crate) fn pool_gradient(
    problem: &PoolProblem,
    cfg: &LatticePoolConfig,
    logits: (&CudaStorage, &Layout),
    g: (&CudaStorage, &Layout),
) -> candle_core::Result<CudaStorage> {
    let on = pool_on_device(problem, cfg, logits.0)?;
    let grad = on.run(&on.plan.gradient, logits, Some(g))?.grad;
    grad.ok_or_else(|| missing("gradient"))
}

/// `[B]` f64 costs as a storage of `dtype`.
pub(crate) fn costs_as(
    costs: CudaStorage,
    batch: usize,
    dtype: DType,
) -> candle_core::Result<CudaStorage> {
    if dtype == DType::F64 {
        Ok(costs)
    } else {
        costs.to_dtype(&Layout::contiguous(batch), dtype)
    }
}

/// A gradient kernel's run: `(logits, layout, grad_costs, layout)` to the gradient.
type GradFn = dyn Fn(&CudaStorage, &Layout, &CudaStorage, &Layout) -> candle_core::Result<CudaStorage>
    + Send
    + Sync;

/// A backward pass on CUDA tensors as a candle op over `(logits, grad_costs f64)`, giving a
/// logits-shaped gradient.
pub(crate) struct GradOp {
    pub name: &'static str,
    pub dims: LatticeDims,
    pub run: Box<GradFn>,
}

impl GradOp {
    /// The RNN-T gradient (in the logits' dtype) from a forward pass's state, or recomputed.
    pub fn rnnt(problem: Arc<RnntProblem>, cfg: RnntLossConfig, state: Option<OnDevice>) -> Self {
        GradOp {
            name: "rnnt-loss-grad",
            dims: problem.dims,
            run: Box::new(move |s, l, g, gl| {
                rnnt_gradient(state.as_ref(), &problem, &cfg, (s, l), (g, gl))
            }),
        }
    }

    /// The pooling gradient (f32, f64 for f64 logits).
    pub fn pool(problem: PoolProblem, cfg: LatticePoolConfig) -> Self {
        GradOp {
            name: "lattice-max-pool-loss-grad",
            dims: problem.dims,
            run: Box::new(move |s, l, g, gl| pool_gradient(&problem, &cfg, (s, l), (g, gl))),
        }
    }
}

impl CpuOp for GradOp {
    type Saved = ();
    const NAME: &'static str = "lattice-loss-gradient";

    fn name(&self) -> &'static str {
        self.name
    }

    fn forward<F: ent_kernels::Float>(&self, _: &[&[F]], _: &[&[usize]]) -> Fwd<F> {
        candle_core::bail!("{} runs on CUDA tensors only", self.name)
    }

    fn cuda_forward(
        &self,
        x: &[(&CudaStorage, &Layout)],
    ) -> candle_core::Result<(CudaStorage, Shape, Option<()>)> {
        let d = self.dims;
        let grad = (self.run)(x[0].0, x[0].1, x[1].0, x[1].1)?;
        let shape = Shape::from((d.batch, d.frames, d.positions(), d.classes));
        Ok((grad, shape, None))
    }
}
