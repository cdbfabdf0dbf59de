//! Emotion-lattice max pooling (docs/method.md §3) on the CPU.
//!
//! For utterance `b` with label `k*`, neutral class `n` and `P[t,u] = softmax_K(z[t,u])` on
//! the valid nodes `t < T_b, u <= U_b`:
//! ```text
//! (t1,u1) = argmax_{t,u} P[t,u][k*]          (first in row-major order on ties)
//! (t2,u2) = argmin_{t,u} P[t,u][n]           (NeutralTerm::Min; argmax for ::Max)
//! L_b = -log clamp(P[t1,u1][k*], c, 1) - log clamp(P[t2,u2][n], c, 1)     (PoolMode::One)
//! ```
//! `FullT` replaces each term by its mean over the valid nodes of the selected frame,
//! `FullU` by its mean over the valid nodes of the selected predictor position (valid cells
//! only, unlike the reference code, which also averages padding). The gradient of a term
//! `-log p_k` at a node is `softmax(z) - onehot(k)`, zero where `p_k < c` (the clamp is
//! active); every other node receives zero gradient.

use rayon::prelude::*;

use crate::config::{LatticePoolConfig, NeutralTerm, PoolMode};
use crate::elem::Logit;
use crate::error::LatticeError;
use crate::problem::{self, Index, Indices, LatticeBatch, LatticeDims, Lengths};
use crate::rnnt::check_buffer;

/// A validated pooling problem.
#[derive(Clone, Debug)]
pub(crate) struct PoolProblem {
    pub dims: LatticeDims,
    pub lens: Lengths,
    pub labels: Vec<usize>,
}

#[cfg(any(feature = "cuda", feature = "emulate"))]
impl PoolProblem {
    /// What the kernel's plan uploads: the labels and both lengths.
    pub(crate) fn uploads(&self) -> ent_kernels::plan::Uploads {
        ent_kernels::plan::Uploads::pool(&self.labels, &self.lens.frames, &self.lens.targets)
    }
}

pub(crate) fn validate<I: Index>(
    x: Indices<'_, I>,
    cfg: &LatticePoolConfig,
) -> Result<PoolProblem, LatticeError> {
    let (dims, labels) = (x.dims, x.targets);
    let k = dims.classes;
    if cfg.neutral >= k {
        return Err(LatticeError::ClassOutOfRange {
            arg: "neutral".into(),
            value: cfg.neutral as i64,
            classes: k,
        });
    }
    if !(cfg.prob_clamp > 0.0 && cfg.prob_clamp <= 1.0) {
        return Err(LatticeError::Config {
            field: "prob_clamp",
            value: cfg.prob_clamp.to_string(),
            reason: "must lie in (0, 1]",
        });
    }
    let lens = problem::lengths(&dims, x.logit_lens, x.target_lens)?;
    problem::check_len("labels", labels.len(), dims.batch)?;
    let labels = labels
        .iter()
        .enumerate()
        .map(|(b, &l)| {
            let l = l.to_i64();
            if l < 0 || l as u64 >= k as u64 {
                Err(LatticeError::ClassOutOfRange {
                    arg: format!("labels[{b}]"),
                    value: l,
                    classes: k,
                })
            } else {
                Ok(l as usize)
            }
        })
        .collect::<Result<Vec<_>, _>>()?;
    Ok(PoolProblem { dims, lens, labels })
}

/// The gradient of one utterance's pooled cost at one node: `(node index in [B*T*(U+1)], d/dz)`.
pub(crate) type SparseRow = (usize, Vec<f64>);

#[derive(Debug)]
pub(crate) struct PoolForward {
    pub costs: Vec<f64>,
    /// Per utterance, the rows of `d cost_b / d z` that are not zero (a node may appear twice).
    pub rows: Vec<Vec<SparseRow>>,
}

/// Log-softmax of one row in f64.
fn log_softmax<E: Logit>(z: &[E], out: &mut [f64]) {
    let m = z.iter().fold(f64::NEG_INFINITY, |m, v| m.max(v.to_f64()));
    let s: f64 = z.iter().map(|v| (v.to_f64() - m).exp()).sum();
    let lse = m + s.ln();
    for (o, v) in out.iter_mut().zip(z) {
        *o = v.to_f64() - lse;
    }
}

pub(crate) fn forward<E: Logit>(
    logits: &[E],
    p: &PoolProblem,
    cfg: &LatticePoolConfig,
) -> Result<PoolForward, LatticeError> {
    let dims = p.dims;
    check_buffer("emotion_logits", logits.len(), &dims)?;
    let (t_max, u1, k) = (dims.frames, dims.positions(), dims.classes);
    let clamp = cfg.prob_clamp as f64;
    let per: Vec<(f64, Vec<SparseRow>)> = (0..dims.batch)
        .into_par_iter()
        .map(|b| {
            let (tb, ub) = (p.lens.frames[b], p.lens.targets[b]);
            let node = |t: usize, u: usize| (b * t_max + t) * u1 + u;
            let row = |t: usize, u: usize| &logits[node(t, u) * k..(node(t, u) + 1) * k];
            let mut lp = vec![0.0; k];
            // Selected nodes: (value, t, u); strict comparisons keep the first on ties.
            let mut emo = (f64::NEG_INFINITY, 0, 0);
            let mut neu = match cfg.neutral_term {
                NeutralTerm::Min => (f64::INFINITY, 0, 0),
                _ => (f64::NEG_INFINITY, 0, 0),
            };
            let mut nan = false;
            for t in 0..tb {
                for u in 0..=ub {
                    log_softmax(row(t, u), &mut lp);
                    let (e, n) = (lp[p.labels[b]], lp[cfg.neutral]);
                    nan |= e.is_nan() || n.is_nan();
                    if e > emo.0 {
                        emo = (e, t, u);
                    }
                    let better = match cfg.neutral_term {
                        NeutralTerm::Min => n < neu.0,
                        _ => n > neu.0,
                    };
                    if better {
                        neu = (n, t, u);
                    }
                }
            }
            if nan {
                // Non-finite logits: report NaN rather than a selection made around them.
                let rows = vec![(node(0, 0), vec![f64::NAN; k])];
                return (f64::NAN, rows);
            }
            let mut terms = vec![(p.labels[b], emo.1, emo.2)];
            if cfg.neutral_term != NeutralTerm::Off {
                terms.push((cfg.neutral, neu.1, neu.2));
            }
            let mut cost = 0.0;
            let mut rows = Vec::new();
            for (class, ts, us) in terms {
                let nodes: Vec<(usize, usize)> = match cfg.mode {
                    PoolMode::One => vec![(ts, us)],
                    PoolMode::FullT => (0..=ub).map(|u| (ts, u)).collect(),
                    PoolMode::FullU => (0..tb).map(|t| (t, us)).collect(),
                };
                let w = 1.0 / nodes.len() as f64;
                for (t, u) in nodes {
                    log_softmax(row(t, u), &mut lp);
                    let prob = lp[class].exp();
                    if prob < clamp {
                        cost -= w * clamp.ln();
                    } else {
                        cost -= w * lp[class];
                        let mut g: Vec<f64> = lp.iter().map(|l| w * l.exp()).collect();
                        g[class] -= w;
                        rows.push((node(t, u), g));
                    }
                }
            }
            (cost, rows)
        })
        .collect();
    let (costs, rows) = per.into_iter().unzip();
    Ok(PoolForward { costs, rows })
}

/// Writes `sum_b grad_costs[b] * d cost_b / d z` into `out` (`[B][T][U+1][K]`), zero elsewhere.
pub(crate) fn scatter<A: ent_kernels::Float>(
    out: &mut [A],
    k: usize,
    fwd: &PoolForward,
    grad_costs: &[f64],
) {
    out.fill(A::default());
    for (rows, &g) in fwd.rows.iter().zip(grad_costs) {
        for (node, grad) in rows {
            for (o, &d) in out[node * k..(node + 1) * k].iter_mut().zip(grad) {
                *o -= A::from_f64(-g * d);
            }
        }
    }
}

/// Emotion-lattice max pooling on plain slices.
///
/// - `batch`: the emotion logits, the utterance labels (in `targets`) and the lengths (see
///   [`LatticeBatch`]).
/// - `grad`: if given, overwritten with the gradient of the loss reduced by `cfg.reduction`
///   (for [`Reduction::None`](crate::Reduction::None), of each utterance's own cost):
///   non-zero only at the selected nodes.
///
/// Returns the per-utterance losses (not reduced). NaN in an utterance's valid cells makes its
/// loss and gradient NaN.
pub fn lattice_max_pool_loss_slice<E: Logit, I: Index>(
    batch: LatticeBatch<'_, E, I>,
    cfg: &LatticePoolConfig,
    grad: Option<&mut [E::Acc]>,
) -> Result<Vec<f64>, LatticeError> {
    let (logits, dims) = (batch.logits, batch.dims);
    let p = validate(batch.indices(), cfg)?;
    let fwd = forward(logits, &p, cfg)?;
    if let Some(grad) = grad {
        check_buffer("gradient buffer", grad.len(), &dims)?;
        let g = vec![crate::rnnt::reduction_scale(cfg.reduction, dims.batch); dims.batch];
        scatter(grad, dims.classes, &fwd, &g);
    }
    Ok(fwd.costs)
}
