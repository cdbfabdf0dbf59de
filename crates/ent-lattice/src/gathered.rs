//! The RNN-T loss and best path on node log-probabilities, for callers that compute pass A
//! themselves.
//!
//! Passes B and C of [`crate::rnnt`] need only two numbers per lattice node: `lp_blank(t,u)`
//! and `lp_label(t,u)`, the log-probabilities of blank and of the next label. A joint network
//! fused with its log-softmax (ent-model's training path) produces just these, block by
//! block, and never stores the `[B, T, U+1, V]` logits; this module takes them from there.
//! The gradient it returns is per node: `d cost / d lp_blank(t,u) = -B(t,u)` and
//! `d cost / d lp_label(t,u) = -L(t,u)` with the occupation terms `B` and `L` of
//! [`crate::rnnt`] (FastEmit's `1 + lambda` included in `L`); the caller chains it through its
//! own log-softmax. The alpha and beta recursions are the same code as the loss on logits.

use candle_core::{DType, Tensor, WithDType};
use ent_kernels::Float;
use ent_kernels::op::{BackwardArgs, CpuOp, Forward, Fwd, Grads, Op};
use rayon::prelude::*;

use crate::align::{self, Alignment};
use crate::config::RnntLossConfig;
use crate::error::LatticeError;
use crate::op;
use crate::problem::{self, Index, LatticeDims, Lengths};
use crate::rnnt::{self, Coef, Lattice, RnntProblem};

const DTYPES: &str = "f32, f64";

/// Checks the parts of `cfg` that apply to node log-probabilities.
fn check_config(cfg: &RnntLossConfig) -> Result<(), LatticeError> {
    if let Some(c) = cfg.clamp {
        return Err(LatticeError::Config {
            field: "clamp",
            value: c.to_string(),
            reason: "the clamp acts on logit gradients, which a loss on node log-probabilities \
                     never forms (use rnnt_loss on logits)",
        });
    }
    rnnt::check_fastemit(cfg)
}

/// The lattice dimensions of `[B][T][U+1]` node arrays (`classes` is 1: one value per node).
fn node_dims(
    (batch, frames, positions): (usize, usize, usize),
) -> Result<LatticeDims, LatticeError> {
    if positions == 0 {
        return Err(LatticeError::Shape {
            arg: "lp_blank",
            got: vec![batch, frames, positions],
            expected: "[B, T, U+1] with U+1 >= 1".into(),
        });
    }
    let dims = LatticeDims {
        batch,
        frames,
        targets: positions - 1,
        classes: 1,
    };
    dims.nodes()?;
    Ok(dims)
}

/// Costs and, with `coefs`, the occupation terms `[_, B, L]` of every node.
fn costs(
    lp_blank: &[f64],
    lp_label: &[f64],
    dims: LatticeDims,
    lens: &Lengths,
    cfg: &RnntLossConfig,
    coefs: Option<&mut [Coef]>,
) -> Vec<f64> {
    let per_utt = dims.frames * dims.positions();
    let lambda = cfg.fastemit_lambda as f64;
    let lattice = |b: usize, coef: Option<&mut [Coef]>| -> f64 {
        let r = b * per_utt..(b + 1) * per_utt;
        let lat = Lattice {
            lp_blank: &lp_blank[r.clone()],
            lp_label: &lp_label[r],
            frames: lens.frames[b],
            targets: lens.targets[b],
            stride: dims.positions(),
        };
        let cost = lat.cost_and_coefs(None, lambda, coef);
        if cost == f64::INFINITY && cfg.zero_infinity {
            0.0
        } else {
            cost
        }
    };
    match coefs {
        Some(coefs) => coefs
            .par_chunks_mut(per_utt)
            .enumerate()
            .map(|(b, c)| lattice(b, Some(c)))
            .collect(),
        None => (0..dims.batch)
            .into_par_iter()
            .map(|b| lattice(b, None))
            .collect(),
    }
}

/// `grad_costs[b] * d cost_b / d lp` for both node arrays, zero outside the valid nodes.
fn node_grads(coefs: &[Coef], grad_costs: &[f64], per_utt: usize) -> (Vec<f64>, Vec<f64>) {
    coefs
        .iter()
        .enumerate()
        .map(|(i, &[_, blank, label])| {
            let g = grad_costs[i / per_utt];
            (-blank * g, -label * g)
        })
        .unzip()
}

/// The RNN-T loss on node log-probabilities, on plain slices.
///
/// - `lp_blank`, `lp_label`: `[B][T][U+1]` row-major, `(batch, frames, positions)` =
///   `(B, T, U+1)`: `log p(blank | t, u)` and `log p(y_{u+1} | t, u)`; only nodes with
///   `t < logit_lens[b]`, `u <= target_lens[b]` are read (`lp_label` only for
///   `u < target_lens[b]`).
/// - `cfg`: `reduction`, `fastemit_lambda` and `zero_infinity` as for the loss on logits;
///   `blank` is not read (the caller has gathered it); a `clamp` is an error.
/// - `grad`: if given, overwritten with the gradient of the reduced loss with respect to both
///   arrays (zero outside the valid nodes).
///
/// Returns the per-utterance costs `-log P(y_b | x_b)` (not reduced).
pub fn rnnt_loss_from_log_probs_slice<I: Index>(
    lp_blank: &[f64],
    lp_label: &[f64],
    (batch, frames, positions): (usize, usize, usize),
    logit_lens: &[I],
    target_lens: &[I],
    cfg: &RnntLossConfig,
    grad: Option<(&mut [f64], &mut [f64])>,
) -> Result<Vec<f64>, LatticeError> {
    check_config(cfg)?;
    let dims = node_dims((batch, frames, positions))?;
    let lens = problem::lengths(&dims, logit_lens, target_lens)?;
    rnnt::check_buffer("lp_blank", lp_blank.len(), &dims)?;
    rnnt::check_buffer("lp_label", lp_label.len(), &dims)?;
    let Some((gb, gl)) = grad else {
        return Ok(costs(lp_blank, lp_label, dims, &lens, cfg, None));
    };
    rnnt::check_buffer("blank gradient", gb.len(), &dims)?;
    rnnt::check_buffer("label gradient", gl.len(), &dims)?;
    let mut coefs = vec![[0.0; 3]; lp_blank.len()];
    let c = costs(lp_blank, lp_label, dims, &lens, cfg, Some(&mut coefs));
    let scale = vec![rnnt::reduction_scale(cfg.reduction, batch); batch];
    let (b, l) = node_grads(&coefs, &scale, frames * positions);
    gb.copy_from_slice(&b);
    gl.copy_from_slice(&l);
    Ok(c)
}

/// Checks the two node arrays of a tensor call; returns their `(B, T, U+1)` shape.
fn check_nodes(
    lp_blank: &Tensor,
    lp_label: &Tensor,
) -> Result<(usize, usize, usize), LatticeError> {
    for (arg, t) in [("lp_blank", lp_blank), ("lp_label", lp_label)] {
        if !t.device().is_cpu() {
            return Err(LatticeError::UnsupportedDevice {
                arg,
                device: format!("{:?}", t.device().location()),
            });
        }
        if !matches!(t.dtype(), DType::F32 | DType::F64) {
            return Err(LatticeError::DType {
                arg,
                dtype: format!("{:?}", t.dtype()),
                expected: DTYPES,
            });
        }
    }
    let shape = match *lp_blank.dims() {
        [b, t, u1] => (b, t, u1),
        _ => {
            return Err(LatticeError::Shape {
                arg: "lp_blank",
                got: lp_blank.dims().to_vec(),
                expected: "[B, T, U+1]".into(),
            });
        }
    };
    if lp_label.dims() != lp_blank.dims() {
        return Err(LatticeError::Shape {
            arg: "lp_label",
            got: lp_label.dims().to_vec(),
            expected: format!("{:?} (the shape of lp_blank)", lp_blank.dims()),
        });
    }
    Ok(shape)
}

/// The two node arrays of a CPU call as f64.
fn host_nodes(lp_blank: &Tensor, lp_label: &Tensor) -> candle_core::Result<(Vec<f64>, Vec<f64>)> {
    check_nodes(lp_blank, lp_label)?;
    let flat = |t: &Tensor| {
        t.detach()
            .flatten_all()?
            .to_dtype(DType::F64)?
            .to_vec1::<f64>()
    };
    Ok((flat(lp_blank)?, flat(lp_label)?))
}

/// Lengths of a tensor call, checked against the node arrays' shape.
fn host_lens(
    dims: &LatticeDims,
    logit_lens: &Tensor,
    target_lens: &Tensor,
) -> candle_core::Result<Lengths> {
    let read = |arg: &'static str, t: &Tensor| op::host_index(arg, t, &[dims.batch]);
    let (ll, tl) = (
        read("logit_lens", logit_lens)?,
        read("target_lens", target_lens)?,
    );
    Ok(problem::lengths(dims, &ll, &tl)?)
}

/// The RNN-T loss on node log-probabilities (docs/method.md §3), differentiable through
/// candle's `backward()` into both arrays.
///
/// - `lp_blank`, `lp_label`: `[B, T, U+1]`, f32 or f64, on the CPU: `log p(blank)` and
///   `log p(y_{u+1})` at each node, normalised by the caller (for example a joint network
///   fused with its log-softmax). Values outside an utterance's valid nodes are never read.
/// - `logit_lens`: `[B]`, `1 <= logit_lens[b] <= T`; `target_lens`: `[B]`, `<= U`.
/// - `cfg`: as for [`crate::rnnt_loss`], except that `blank` is not read and a `clamp` is an
///   error (it acts on logit gradients).
///
/// Returns `[B]` costs for [`Reduction::None`](crate::Reduction::None), else a scalar, in the
/// dtype of `lp_blank`.
/// Given `lp = log_softmax(logits)` gathered at blank and the next label, it equals
/// [`crate::rnnt_loss`] on `logits`, and so does the gradient chained through the
/// log-softmax.
pub fn rnnt_loss_from_log_probs(
    lp_blank: &Tensor,
    lp_label: &Tensor,
    logit_lens: &Tensor,
    target_lens: &Tensor,
    cfg: &RnntLossConfig,
) -> candle_core::Result<Tensor> {
    check_config(cfg)?;
    let dims = node_dims(check_nodes(lp_blank, lp_label)?)?;
    let lens = host_lens(&dims, logit_lens, target_lens)?;
    let op = NodeRnnt {
        dims,
        lens,
        cfg: cfg.clone(),
        keep_gradient: lp_blank.track_op() || lp_label.track_op(),
    };
    let costs = lp_blank
        .contiguous()?
        .apply_op2(&lp_label.contiguous()?, Op::new(op))?;
    op::reduce(costs, cfg.reduction, dims.batch)
}

/// The most probable alignment of each utterance (Viterbi) over node log-probabilities;
/// arguments as for [`rnnt_loss_from_log_probs`]. Equals [`crate::rnnt_best_path`] on the
/// logits the log-probabilities come from.
pub fn rnnt_best_path_from_log_probs(
    lp_blank: &Tensor,
    lp_label: &Tensor,
    logit_lens: &Tensor,
    target_lens: &Tensor,
) -> candle_core::Result<Vec<Alignment>> {
    let dims = node_dims(check_nodes(lp_blank, lp_label)?)?;
    let (lb, ll) = host_nodes(lp_blank, lp_label)?;
    let lens = host_lens(&dims, logit_lens, target_lens)?;
    let p = RnntProblem {
        dims,
        lens,
        targets: Vec::new(),
        blank: 0,
    };
    Ok(align::best_paths(&lb, &ll, &p))
}

/// The custom op behind [`rnnt_loss_from_log_probs`]; keeps the occupation terms of its
/// forward pass for the backward pass when a gradient is wanted.
struct NodeRnnt {
    dims: LatticeDims,
    lens: Lengths,
    cfg: RnntLossConfig,
    keep_gradient: bool,
}

impl NodeRnnt {
    fn run(&self, lb: &[f64], ll: &[f64], want: bool) -> (Vec<f64>, Option<Vec<Coef>>) {
        if !want {
            return (costs(lb, ll, self.dims, &self.lens, &self.cfg, None), None);
        }
        let mut coefs = vec![[0.0; 3]; lb.len()];
        let c = costs(lb, ll, self.dims, &self.lens, &self.cfg, Some(&mut coefs));
        (c, Some(coefs))
    }
}

impl CpuOp for NodeRnnt {
    type Saved = Vec<Coef>;

    const NAME: &'static str = "rnnt-loss-from-log-probs";

    fn forward<F: Float>(&self, x: &[&[F]], _: &[&[usize]]) -> Fwd<F, Vec<Coef>> {
        let wide = |v: &[F]| -> Vec<f64> { v.iter().map(|&x| WithDType::to_f64(x)).collect() };
        let (c, coefs) = self.run(&wide(x[0]), &wide(x[1]), self.keep_gradient);
        let f = Forward::new(c.iter().map(|&v| F::from_f64(v)).collect(), self.dims.batch);
        Ok(match coefs {
            Some(c) => f.keep(c),
            None => f,
        })
    }

    fn host_backward<F: Float>(
        &self,
        a: &BackwardArgs<'_>,
        saved: &mut Option<Vec<Coef>>,
    ) -> Grads<F> {
        let wide = |v: Vec<F>| -> Vec<f64> { v.into_iter().map(WithDType::to_f64).collect() };
        let g = wide(a.grad::<F>()?);
        let coefs = match saved.take() {
            Some(c) => c,
            // A second backward pass over the same graph: recompute.
            None => {
                let (lb, ll) = (wide(a.input::<F>(0)?), wide(a.input::<F>(1)?));
                self.run(&lb, &ll, true).1.unwrap_or_default()
            }
        };
        let per_utt = self.dims.frames * self.dims.positions();
        let (gb, gl) = node_grads(&coefs, &g, per_utt);
        let narrow = |v: Vec<f64>| -> Vec<F> { v.into_iter().map(F::from_f64).collect() };
        Ok(vec![Some(narrow(gb)), Some(narrow(gl))])
    }
}
