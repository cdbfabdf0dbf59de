//! The losses through the CUDA kernels of `kernels/` run on the CPU (feature `emulate`), for
//! testing them without a GPU: the same plans as on a GPU, run by ent-kernels' emulated
//! executor (see [`ent_kernels::emulated`] for what it checks).

pub use ent_kernels::emulated::Options;
use ent_kernels::emulated::{Emu, HostMem, external, grad_costs_mem, logits_mem, run_checked};
use ent_kernels::plan::{self, Role};

use crate::align::{self, Alignment};
use crate::config::{LatticePoolConfig, RnntLossConfig};
use crate::elem::Logit;
use crate::error::LatticeError;
use crate::pool;
use crate::problem::{Index, LatticeBatch};
use crate::rnnt::{self, check_buffer};

/// The results of [`rnnt_loss`].
#[derive(Clone, Debug)]
pub struct RnntRun<E> {
    /// `-log P` per utterance (0 for `+inf` with `zero_infinity`).
    pub costs: Vec<f64>,
    /// `log P` from alpha and from beta, per utterance.
    pub log_p: Vec<[f64; 2]>,
    /// The gradient in the logits' type, when incoming gradients were given.
    pub grad: Option<Vec<E>>,
}

/// The results of [`lattice_max_pool_loss`].
#[derive(Clone, Debug)]
pub struct PoolRun {
    pub costs: Vec<f64>,
    /// The gradient as the kernel accumulates it (f32, or f64 for f64 logits), widened.
    pub grad: Option<Vec<f64>>,
}

/// The RNN-T loss through the emulated kernels; arguments as for [`crate::cpu::rnnt_loss`],
/// with `grad_costs` the incoming gradient of each utterance's cost (the gradient is computed
/// only when it is given).
pub fn rnnt_loss<E: Logit, I: Index>(
    batch: LatticeBatch<'_, E, I>,
    cfg: &RnntLossConfig,
    grad_costs: Option<&[f64]>,
    opts: &Options,
) -> Result<RnntRun<E>, LatticeError> {
    let (logits, dims) = (batch.logits, batch.dims);
    let p = rnnt::validate(batch.indices(), cfg)?;
    check_buffer("logits", logits.len(), &dims)?;
    let plan = plan::rnnt_plan(dims, E::KERNEL, &cfg.kernel_params())?;
    let uploads = p.uploads();
    let prepared = plan::prepare(&mut Emu, &plan.buffers, &uploads)?;
    let z = logits_mem(logits, opts);
    let costs = external(&plan.costs)?;
    run_checked(&plan.forward, &prepared, &[&z, &costs])?;
    let log_p: Vec<f64> = prepared
        .get(Role::LogP)
        .map(HostMem::read)
        .unwrap_or_default();
    let grad = match grad_costs {
        None => None,
        Some(g) => {
            let gc = grad_costs_mem(g, dims.batch)?;
            let grad = external(&plan.grad)?;
            run_checked(&plan.gradient, &prepared, &[&z, &gc, &grad])?;
            Some(grad.read::<E>())
        }
    };
    Ok(RnntRun {
        costs: costs.read(),
        log_p: log_p.chunks_exact(2).map(|c| [c[0], c[1]]).collect(),
        grad,
    })
}

/// Lattice max pooling through the emulated kernel; arguments as for
/// [`crate::cpu::lattice_max_pool_loss`], with `grad_costs` as for [`rnnt_loss`].
pub fn lattice_max_pool_loss<E: Logit, I: Index>(
    batch: LatticeBatch<'_, E, I>,
    cfg: &LatticePoolConfig,
    grad_costs: Option<&[f64]>,
    opts: &Options,
) -> Result<PoolRun, LatticeError> {
    let (logits, dims) = (batch.logits, batch.dims);
    let p = pool::validate(batch.indices(), cfg)?;
    check_buffer("emotion_logits", logits.len(), &dims)?;
    let plan = plan::pool_plan(dims, E::KERNEL, &cfg.kernel_params())?;
    let uploads = p.uploads();
    let prepared = plan::prepare(&mut Emu, &plan.buffers, &uploads)?;
    let z = logits_mem(logits, opts);
    let costs = external(&plan.costs)?;
    run_checked(&plan.forward, &prepared, &[&z, &costs])?;
    let grad = match grad_costs {
        None => None,
        Some(g) => {
            let gc = grad_costs_mem(g, dims.batch)?;
            let grad = external(&plan.grad)?;
            let again = external(&plan.costs)?;
            run_checked(&plan.gradient, &prepared, &[&z, &again, &gc, &grad])?;
            // The gradient launch recomputes the costs: they must not change.
            let (first, second) = (costs.read::<f64>(), again.read::<f64>());
            if first
                .iter()
                .zip(&second)
                .any(|(a, b)| a.to_bits() != b.to_bits())
            {
                return Err(LatticeError::Launch {
                    kernel: plan.gradient[0].kernel.clone(),
                    reason: format!("costs {first:?} became {second:?} in the gradient launch"),
                });
            }
            Some(match plan.grad.elem {
                plan::Elem::F64 => grad.read::<f64>(),
                _ => grad.read::<f32>().into_iter().map(f64::from).collect(),
            })
        }
    };
    Ok(PoolRun {
        costs: costs.read(),
        grad,
    })
}

/// The best alignments through the emulated normaliser kernel (the Viterbi pass runs on the
/// host, as with a GPU); arguments as for [`crate::cpu::rnnt_best_path`].
pub fn rnnt_best_path<E: Logit, I: Index>(
    batch: LatticeBatch<'_, E, I>,
    blank: usize,
    opts: &Options,
) -> Result<Vec<Alignment>, LatticeError> {
    let (logits, dims) = (batch.logits, batch.dims);
    let p = align::validate(batch.indices(), blank)?;
    check_buffer("logits", logits.len(), &dims)?;
    let plan = plan::best_path_plan(dims, E::KERNEL, blank)?;
    let uploads = p.uploads();
    let prepared = plan::prepare(&mut Emu, &plan.buffers, &uploads)?;
    let z = logits_mem(logits, opts);
    run_checked(plan.normalize(), &prepared, &[&z])?;
    let lp: Vec<f64> = prepared
        .get(Role::Lp)
        .map(HostMem::read)
        .unwrap_or_default();
    let (blank_lp, label_lp) = align::split_node_log_probs(&lp);
    Ok(align::best_paths(&blank_lp, &label_lp, &p))
}
