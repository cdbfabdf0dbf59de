//! The RNN-T loss on the CPU: the reference implementation and the oracle for the kernels.
//!
//! Three passes (docs/method.md §3):
//!
//! A. **Normaliser and gather**, parallel over `(b, t)` rows: for each valid node `(t, u)` one
//!    read of the `V` logits gives `D(t,u) = logsumexp_k z[t,u,k]`,
//!    `lp_blank(t,u) = z[t,u,blank] - D` and `lp_label(t,u) = z[t,u,y_{u+1}] - D`. When a
//!    gradient is wanted the same pass stores `exp(z - max)` in the gradient buffer, so the
//!    exponentials are computed once.
//! B. **Alpha and beta** on the small `T_b x (U_b + 1)` lattice of each utterance, in f64,
//!    parallel over utterances (alpha and beta concurrently):
//!    ```text
//!    alpha(0,0) = 0
//!    alpha(t,u) = logaddexp(alpha(t-1,u) + lp_blank(t-1,u), alpha(t,u-1) + lp_label(t,u-1))
//!    beta(T-1,U) = lp_blank(T-1,U)
//!    beta(t,u)   = logaddexp(beta(t+1,u) + lp_blank(t,u), beta(t,u+1) + lp_label(t,u))
//!    log P = alpha(T-1,U) + lp_blank(T-1,U) = beta(0,0)
//!    ```
//!    and, per node, the gradient of the cost with respect to the two log-probabilities:
//!    `B(t,u) = exp(alpha(t,u) + lp_blank(t,u) + beta(t+1,u) - log P)` (with
//!    `beta(T,U) := 0` at the exit node and `B = 0` at `t = T-1, u < U`) and
//!    `L(t,u) = (1 + lambda) exp(alpha(t,u) + lp_label(t,u) + beta(t,u+1) - log P)` for `u < U`
//!    (`lambda` is the FastEmit weight).
//! C. **Gradient**, one streaming pass over the buffer, in place:
//!    `dL/dz[t,u,k] = softmax(z)[k] (B + L) - B [k = blank] - L [k = y_{u+1}]`, times the
//!    gradient of the reduced loss with respect to the utterance's cost. Padded rows are
//!    written as zero.
//!
//! No other `B*T*(U+1)*V` array is allocated; per-node arrays are `V` times smaller. All
//! offsets are `usize` (64-bit), so more than 2^31 logits work.

use rayon::prelude::*;

use ent_kernels::Float;

use crate::config::{Reduction, RnntLossConfig};
use crate::elem::Logit;
use crate::error::LatticeError;
use crate::problem::{self, Index, Indices, LatticeBatch, LatticeDims, Lengths};

/// A validated RNN-T problem: dimensions, lengths and targets.
#[derive(Clone, Debug)]
pub(crate) struct RnntProblem {
    pub dims: LatticeDims,
    pub lens: Lengths,
    /// `[B][U]`; entries past `target_lens[b]` are 0 and never read.
    pub targets: Vec<u32>,
    pub blank: usize,
}

#[cfg(any(feature = "cuda", feature = "emulate"))]
impl RnntProblem {
    /// What the kernels' plans upload: the targets and both lengths.
    pub(crate) fn uploads(&self) -> ent_kernels::plan::Uploads {
        ent_kernels::plan::Uploads::rnnt(&self.targets, &self.lens.frames, &self.lens.targets)
    }
}

/// Checks every argument; errors name the argument and the value.
pub(crate) fn validate<I: Index>(
    x: Indices<'_, I>,
    cfg: &RnntLossConfig,
) -> Result<RnntProblem, LatticeError> {
    let (dims, targets) = (x.dims, x.targets);
    validate_config(cfg, dims.classes)?;
    let lens = problem::lengths(&dims, x.logit_lens, x.target_lens)?;
    let u = dims.targets;
    if targets.len() != dims.batch * u {
        return Err(LatticeError::Shape {
            arg: "targets",
            got: vec![targets.len()],
            expected: format!("[{}] (B * U = {} * {u})", dims.batch * u, dims.batch),
        });
    }
    let mut out = vec![0u32; targets.len()];
    for (b, &len) in lens.targets.iter().enumerate() {
        for pos in 0..len {
            let y = targets[b * u + pos].to_i64();
            if y < 0 {
                return Err(LatticeError::Negative {
                    arg: "targets",
                    index: format!("{b}, {pos}"),
                    value: y,
                });
            }
            if y as u64 >= dims.classes as u64 {
                return Err(LatticeError::LabelOutOfRange {
                    batch: b,
                    position: pos,
                    value: y,
                    vocab: dims.classes,
                });
            }
            if y as usize == cfg.blank {
                return Err(LatticeError::LabelIsBlank {
                    batch: b,
                    position: pos,
                    value: y,
                });
            }
            out[b * u + pos] = y as u32;
        }
    }
    Ok(RnntProblem {
        dims,
        lens,
        targets: out,
        blank: cfg.blank,
    })
}

fn validate_config(cfg: &RnntLossConfig, vocab: usize) -> Result<(), LatticeError> {
    if cfg.blank >= vocab {
        return Err(LatticeError::ClassOutOfRange {
            arg: "blank".into(),
            value: cfg.blank as i64,
            classes: vocab,
        });
    }
    if let Some(c) = cfg.clamp
        && (c.is_nan() || c <= 0.0)
    {
        return Err(LatticeError::Config {
            field: "clamp",
            value: c.to_string(),
            reason: "a gradient clamp must be positive (use None for no clamp)",
        });
    }
    check_fastemit(cfg)
}

/// The FastEmit weight must be finite and non-negative.
pub(crate) fn check_fastemit(cfg: &RnntLossConfig) -> Result<(), LatticeError> {
    if !(cfg.fastemit_lambda.is_finite() && cfg.fastemit_lambda >= 0.0) {
        return Err(LatticeError::Config {
            field: "fastemit_lambda",
            value: cfg.fastemit_lambda.to_string(),
            reason: "must be finite and non-negative",
        });
    }
    Ok(())
}

pub(crate) fn check_buffer(
    arg: &'static str,
    len: usize,
    dims: &LatticeDims,
) -> Result<(), LatticeError> {
    let n = dims.numel()?;
    if len != n {
        return Err(LatticeError::Shape {
            arg,
            got: vec![len],
            expected: format!(
                "[{n}] (B * T * (U + 1) * classes = {} * {} * {} * {})",
                dims.batch,
                dims.frames,
                dims.positions(),
                dims.classes
            ),
        });
    }
    Ok(())
}

/// Per-node gradient coefficients: `[(B + L) / sum_k exp(z_k - max), B, L]` (for node
/// log-probabilities, which have no `sums`, the first entry is `B + L`).
pub(crate) type Coef = [f64; 3];

/// What the forward pass leaves for the gradient pass.
#[derive(Debug)]
pub(crate) struct Forward {
    /// `-log P` per utterance: `+inf` (or 0 with `zero_infinity`) when the target is
    /// unreachable, NaN when the utterance's valid logits hold NaN or `+inf`.
    pub costs: Vec<f64>,
    /// `[B][T][U+1]`, empty when no gradient was requested.
    coefs: Vec<Coef>,
}

/// Pass A's results, `[B][T][U+1]` each, NaN outside the valid nodes.
pub(crate) struct NodeLogProbs {
    /// `log softmax(z[t,u])[blank]`.
    pub lp_blank: Vec<f64>,
    /// `log softmax(z[t,u])[y_{u+1}]` for `u < U_b`.
    pub lp_label: Vec<f64>,
    /// `sum_k exp(z[t,u,k] - max_k z[t,u,k])`.
    pub sums: Vec<f64>,
}

/// Pass A: one read of each valid node's logits gives the blank and label log-probabilities.
/// With `buf` (`[B][T][U+1][V]`) it also stores `exp(z - max)` for every valid node.
pub(crate) fn log_probs<E: Logit>(
    logits: &[E],
    p: &RnntProblem,
    buf: Option<&mut [E::Acc]>,
) -> NodeLogProbs {
    let dims = p.dims;
    let (t_max, u1, v) = (dims.frames, dims.positions(), dims.classes);
    let nodes = dims.batch * t_max * u1;
    let row_len = u1 * v;
    let mut lp_blank = vec![f64::NAN; nodes];
    let mut lp_label = vec![f64::NAN; nodes];
    let mut sums = vec![f64::NAN; nodes];
    let out_rows = match buf {
        Some(buf) => rayon::iter::Either::Left(buf.par_chunks_mut(row_len).map(Some)),
        None => rayon::iter::Either::Right((0..dims.batch * t_max).into_par_iter().map(|_| None)),
    };
    logits
        .par_chunks(row_len)
        .zip(lp_blank.par_chunks_mut(u1))
        .zip(lp_label.par_chunks_mut(u1))
        .zip(sums.par_chunks_mut(u1))
        .zip(out_rows)
        .enumerate()
        .for_each_init(
            Vec::new,
            |scratch, (i, ((((z, lpb), lpl), sum), mut out))| {
                let (b, t) = (i / t_max, i % t_max);
                if t >= p.lens.frames[b] {
                    return;
                }
                let ub = p.lens.targets[b];
                let y = &p.targets[b * dims.targets..b * dims.targets + ub];
                for u in 0..=ub {
                    let zr = &z[u * v..(u + 1) * v];
                    let o = out.as_deref_mut().map(|o| &mut o[u * v..(u + 1) * v]);
                    let n = E::normalise(zr, o, scratch);
                    let d = n.log_norm();
                    lpb[u] = zr[p.blank].to_f64() - d;
                    if u < ub {
                        lpl[u] = zr[y[u] as usize].to_f64() - d;
                    }
                    sum[u] = n.sum;
                }
            },
        );

    NodeLogProbs {
        lp_blank,
        lp_label,
        sums,
    }
}

/// Passes A and B. With `buf` (the future gradient, `[B][T][U+1][V]`) it also stores
/// `exp(z - max)` for every valid node and the coefficients for [`backward`].
pub(crate) fn forward<E: Logit>(
    logits: &[E],
    p: &RnntProblem,
    cfg: &RnntLossConfig,
    buf: Option<&mut [E::Acc]>,
) -> Result<Forward, LatticeError> {
    let dims = p.dims;
    check_buffer("logits", logits.len(), &dims)?;
    let want_grad = buf.is_some();
    if let Some(buf) = &buf {
        check_buffer("gradient buffer", buf.len(), &dims)?;
    }
    let (t_max, u1) = (dims.frames, dims.positions());
    let nodes = dims.nodes()?;

    // Pass A.
    let NodeLogProbs {
        lp_blank,
        lp_label,
        sums,
    } = log_probs(logits, p, buf);

    // Pass B.
    let per_utt = t_max * u1;
    let mut coefs = if want_grad {
        vec![[0.0; 3]; nodes]
    } else {
        Vec::new()
    };
    let lambda = cfg.fastemit_lambda as f64;
    let lattice = |b: usize, coef: &mut [Coef]| -> f64 {
        let r = b * per_utt..(b + 1) * per_utt;
        let lat = Lattice {
            lp_blank: &lp_blank[r.clone()],
            lp_label: &lp_label[r.clone()],
            frames: p.lens.frames[b],
            targets: p.lens.targets[b],
            stride: u1,
        };
        let cost = lat.cost_and_coefs(Some(&sums[r]), lambda, want_grad.then_some(coef));
        if cost == f64::INFINITY && cfg.zero_infinity {
            0.0
        } else {
            cost
        }
    };
    let costs: Vec<f64> = if want_grad {
        coefs
            .par_chunks_mut(per_utt)
            .enumerate()
            .map(|(b, c)| lattice(b, c))
            .collect()
    } else {
        (0..dims.batch)
            .into_par_iter()
            .map(|b| lattice(b, &mut []))
            .collect()
    };
    Ok(Forward { costs, coefs })
}

/// Pass C, in place: turns the `exp(z - max)` values stored by [`forward`] into
/// `grad_costs[b] * d cost_b / d logits`, and zeroes padded rows.
pub(crate) fn backward<A: Float>(
    buf: &mut [A],
    p: &RnntProblem,
    fwd: &Forward,
    grad_costs: &[f64],
    clamp: Option<f32>,
) {
    let dims = p.dims;
    let (t_max, u1, v) = (dims.frames, dims.positions(), dims.classes);
    assert_eq!(
        fwd.coefs.len(),
        dims.batch * t_max * u1,
        "forward ran without a gradient buffer"
    );
    assert_eq!(grad_costs.len(), dims.batch);
    buf.par_chunks_mut(u1 * v)
        .zip(fwd.coefs.par_chunks(u1))
        .enumerate()
        .for_each(|(i, (rows, coef))| {
            let (b, t) = (i / t_max, i % t_max);
            let g = grad_costs[b];
            if t >= p.lens.frames[b] {
                rows.fill(A::default());
                return;
            }
            let ub = p.lens.targets[b];
            let y = &p.targets[b * dims.targets..b * dims.targets + ub];
            let (valid, padded) = rows.split_at_mut((ub + 1) * v);
            padded.fill(A::default());
            for (u, row) in valid.chunks_exact_mut(v).enumerate() {
                let [common, blank, label] = coef[u];
                A::scale_row(row, A::from_f64(common * g));
                row[p.blank] -= A::from_f64(blank * g);
                if u < ub {
                    row[y[u] as usize] -= A::from_f64(label * g);
                }
                if let Some(c) = clamp {
                    // g * clamp(x, c) = clamp(g * x, |g| c): clamp the unscaled gradient, as
                    // torchaudio does before multiplying by the incoming gradient.
                    let c = A::from_f64((c * g.abs() as f32) as f64);
                    for x in row.iter_mut() {
                        *x = num_traits::clamp(*x, -c, c);
                    }
                }
            }
        });
}

/// One utterance's lattice of log-probabilities, `[T][U+1]` with row stride `stride`.
pub(crate) struct Lattice<'a> {
    pub lp_blank: &'a [f64],
    pub lp_label: &'a [f64],
    pub frames: usize,
    pub targets: usize,
    pub stride: usize,
}

/// `log(exp(a) + exp(b))`, NaN-propagating, exact for `-inf` arguments.
#[inline]
pub(crate) fn log_add(a: f64, b: f64) -> f64 {
    let (hi, lo) = if a > b { (a, b) } else { (b, a) };
    if lo == f64::NEG_INFINITY {
        return hi;
    }
    hi + (lo - hi).exp().ln_1p()
}

impl Lattice<'_> {
    fn alpha(&self) -> Vec<f64> {
        let (t_n, u_n, s) = (self.frames, self.targets + 1, self.stride);
        let mut a = vec![f64::NEG_INFINITY; t_n * u_n];
        for t in 0..t_n {
            for u in 0..u_n {
                a[t * u_n + u] = if t == 0 && u == 0 {
                    0.0
                } else {
                    let from_t = if t > 0 {
                        a[(t - 1) * u_n + u] + self.lp_blank[(t - 1) * s + u]
                    } else {
                        f64::NEG_INFINITY
                    };
                    let from_u = if u > 0 {
                        a[t * u_n + u - 1] + self.lp_label[t * s + u - 1]
                    } else {
                        f64::NEG_INFINITY
                    };
                    log_add(from_t, from_u)
                };
            }
        }
        a
    }

    fn beta(&self) -> Vec<f64> {
        let (t_n, u_n, s) = (self.frames, self.targets + 1, self.stride);
        let mut bt = vec![f64::NEG_INFINITY; t_n * u_n];
        for t in (0..t_n).rev() {
            for u in (0..u_n).rev() {
                bt[t * u_n + u] = if t == t_n - 1 && u == u_n - 1 {
                    self.lp_blank[t * s + u]
                } else {
                    let via_blank = if t + 1 < t_n {
                        bt[(t + 1) * u_n + u] + self.lp_blank[t * s + u]
                    } else {
                        f64::NEG_INFINITY
                    };
                    let via_label = if u + 1 < u_n {
                        bt[t * u_n + u + 1] + self.lp_label[t * s + u]
                    } else {
                        f64::NEG_INFINITY
                    };
                    log_add(via_blank, via_label)
                };
            }
        }
        bt
    }

    /// Returns `-log P`; fills `coef` (`[T][stride]`) when given (its first entry is `B + L`
    /// divided by `sums` where given, else `B + L`).
    pub(crate) fn cost_and_coefs(
        &self,
        sums: Option<&[f64]>,
        lambda: f64,
        coef: Option<&mut [Coef]>,
    ) -> f64 {
        let (t_n, u_n, s) = (self.frames, self.targets + 1, self.stride);
        let (alpha, beta) = rayon::join(|| self.alpha(), || self.beta());
        let last = (t_n - 1) * u_n + u_n - 1;
        let log_p = alpha[last] + self.lp_blank[(t_n - 1) * s + u_n - 1];
        debug_assert!(
            !log_p.is_finite() || (log_p - beta[0]).abs() <= 1e-9 * log_p.abs().max(1.0),
            "alpha and beta disagree: {log_p} vs {}",
            beta[0]
        );
        let Some(coef) = coef else {
            return -log_p;
        };
        if log_p == f64::NEG_INFINITY {
            // Unreachable target: no path has probability, no gradient. (coef stays 0.)
            return f64::INFINITY;
        }
        for t in 0..t_n {
            for u in 0..u_n {
                let a = alpha[t * u_n + u];
                let beta_next_t = if t + 1 < t_n {
                    beta[(t + 1) * u_n + u]
                } else if u == u_n - 1 {
                    0.0
                } else {
                    f64::NEG_INFINITY
                };
                let blank = (a + self.lp_blank[t * s + u] + beta_next_t - log_p).exp();
                let label = if u + 1 < u_n {
                    (1.0 + lambda)
                        * (a + self.lp_label[t * s + u] + beta[t * u_n + u + 1] - log_p).exp()
                } else {
                    0.0
                };
                let common = match sums {
                    Some(sums) => (blank + label) / sums[t * s + u],
                    None => blank + label,
                };
                coef[t * s + u] = [common, blank, label];
            }
        }
        -log_p
    }
}

/// The factor by which the reduction scales each utterance's cost.
pub(crate) fn reduction_scale(reduction: Reduction, batch: usize) -> f64 {
    match reduction {
        Reduction::None | Reduction::Sum => 1.0,
        Reduction::Mean => 1.0 / batch as f64,
    }
}

/// The RNN-T loss on plain slices, for callers who manage their own memory.
///
/// - `batch`: the logits (raw joint outputs: the log-softmax is fused in), targets and
///   lengths (see [`LatticeBatch`]).
/// - `grad`: if given, `[B][T][U+1][V]`, overwritten with the gradient of the loss reduced by
///   `cfg.reduction` (for [`Reduction::None`], each utterance's block holds the gradient of its
///   own cost); padded rows are zero.
///
/// Returns the per-utterance costs `-log P(y_b | x_b)` (not reduced). Cells outside an
/// utterance's lengths are never read. NaN or `+inf` in a valid cell makes that utterance's
/// cost and gradient NaN; `-inf` is a valid logit (probability zero), and a target made
/// unreachable by `-inf` logits costs `+inf` (0 with `zero_infinity`) with zero gradient.
pub fn rnnt_loss_slice<E: Logit, I: Index>(
    batch: LatticeBatch<'_, E, I>,
    cfg: &RnntLossConfig,
    grad: Option<&mut [E::Acc]>,
) -> Result<Vec<f64>, LatticeError> {
    let (logits, dims) = (batch.logits, batch.dims);
    let p = validate(batch.indices(), cfg)?;
    match grad {
        None => Ok(forward(logits, &p, cfg, None)?.costs),
        Some(grad) => {
            let fwd = forward(logits, &p, cfg, Some(&mut *grad))?;
            let g = vec![reduction_scale(cfg.reduction, dims.batch); dims.batch];
            backward(grad, &p, &fwd, &g, cfg.clamp);
            Ok(fwd.costs)
        }
    }
}
