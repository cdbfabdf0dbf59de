//! The most probable alignment through the RNN-T lattice (Viterbi), on the CPU.
//!
//! With the blank and label log-probabilities of pass A of the loss,
//! ```text
//! best(0,0) = 0
//! best(t,u) = max(best(t-1,u) + lp_blank(t-1,u), best(t,u-1) + lp_label(t,u-1))
//! log P*    = best(T-1,U) + lp_blank(T-1,U)
//! ```
//! and the path is read back from the exit node. An alignment leaves every frame `t` by
//! exactly one blank, emitted at some predictor position `u_t`; the path is returned as
//! `[u_0, .., u_{T-1}]`, non-decreasing, ending at `U`. Those are the nodes where greedy
//! decoding (docs/method.md §5) reads each frame's emotion, so pooling over them trains what decoding
//! reads. On equal scores the path takes the blank (emits the label later). NaN or `-inf`
//! scores still give a valid path.

use rayon::prelude::*;

use crate::config::RnntLossConfig;
use crate::elem::Logit;
use crate::error::LatticeError;
use crate::problem::{Index, Indices, LatticeBatch};
use crate::rnnt::{self, NodeLogProbs, RnntProblem, check_buffer};

/// One utterance's best alignment.
#[derive(Clone, Debug, PartialEq)]
pub struct Alignment {
    /// `u_t` for each valid frame `t`: the predictor position whose blank leaves frame `t`.
    pub blank_positions: Vec<usize>,
    /// `log P*`, the log-probability of this alignment (NaN if the logits hold NaN).
    pub log_prob: f64,
}

/// The most probable alignment of each utterance, on plain slices. Arguments as for
/// [`crate::cpu::rnnt_loss`]; `blank` is the blank index.
pub fn rnnt_best_path_slice<E: Logit, I: Index>(
    batch: LatticeBatch<'_, E, I>,
    blank: usize,
) -> Result<Vec<Alignment>, LatticeError> {
    let (logits, dims) = (batch.logits, batch.dims);
    let p = validate(batch.indices(), blank)?;
    check_buffer("logits", logits.len(), &dims)?;
    let NodeLogProbs {
        lp_blank, lp_label, ..
    } = rnnt::log_probs::<E>(logits, &p, None);
    Ok(best_paths(&lp_blank, &lp_label, &p))
}

/// The arguments checked as for the loss with this blank index.
pub(crate) fn validate<I: Index>(
    x: Indices<'_, I>,
    blank: usize,
) -> Result<RnntProblem, LatticeError> {
    let cfg = RnntLossConfig {
        blank,
        ..Default::default()
    };
    rnnt::validate(x, &cfg)
}

/// The blank and label log-probabilities out of the kernels' `[B][T][U+1][3]` normaliser
/// output (blank, label, normaliser per node).
#[cfg(any(feature = "emulate", feature = "cuda"))]
pub(crate) fn split_node_log_probs(lp: &[f64]) -> (Vec<f64>, Vec<f64>) {
    lp.chunks_exact(3).map(|n| (n[0], n[1])).unzip()
}

/// Viterbi over the `[B][T][U+1]` blank and label log-probabilities of a validated problem
/// (only valid nodes are read).
pub(crate) fn best_paths(lp_blank: &[f64], lp_label: &[f64], p: &RnntProblem) -> Vec<Alignment> {
    let dims = p.dims;
    let per_utt = dims.frames * dims.positions();
    (0..dims.batch)
        .into_par_iter()
        .map(|b| {
            let r = b * per_utt..(b + 1) * per_utt;
            viterbi(
                &lp_blank[r.clone()],
                &lp_label[r],
                p.lens.frames[b],
                p.lens.targets[b],
                dims.positions(),
            )
        })
        .collect()
}

/// Viterbi on one utterance's `frames x (targets + 1)` lattice; `stride` is the padded `U+1`.
fn viterbi(
    lp_blank: &[f64],
    lp_label: &[f64],
    frames: usize,
    targets: usize,
    stride: usize,
) -> Alignment {
    let u_n = targets + 1;
    let mut best = vec![f64::NEG_INFINITY; frames * u_n];
    // For each node: true when the best way in is a label from (t, u-1).
    let mut by_label = vec![false; frames * u_n];
    for t in 0..frames {
        for u in 0..u_n {
            let i = t * u_n + u;
            if t == 0 && u == 0 {
                best[i] = 0.0;
                continue;
            }
            let from_t = if t > 0 {
                best[i - u_n] + lp_blank[(t - 1) * stride + u]
            } else {
                f64::NEG_INFINITY
            };
            let from_u = if u > 0 {
                best[i - 1] + lp_label[t * stride + u - 1]
            } else {
                f64::NEG_INFINITY
            };
            // t == 0 can only be entered by a label; u == 0 only by a blank.
            let label = t == 0 || (u > 0 && from_u > from_t);
            by_label[i] = label;
            best[i] = if label { from_u } else { from_t };
            if from_t.is_nan() || from_u.is_nan() {
                best[i] = f64::NAN;
            }
        }
    }
    let log_prob = best[frames * u_n - 1] + lp_blank[(frames - 1) * stride + targets];
    let mut blank_positions = vec![0; frames];
    let (mut t, mut u) = (frames - 1, targets);
    blank_positions[t] = u;
    while t > 0 || u > 0 {
        if by_label[t * u_n + u] {
            u -= 1;
        } else {
            t -= 1;
            blank_positions[t] = u;
        }
    }
    Alignment {
        blank_positions,
        log_prob,
    }
}
