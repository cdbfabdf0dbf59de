//! The training loss of docs/method.md §3 and the auxiliary tasks.

use candle_core::{D, DType, Tensor};
use ent_lattice::{LatticePoolConfig, Reduction, RnntLossConfig};

use super::pool::{attention_pool_loss, linear_softmax_pool_loss};
use super::{AsrLattice, LossConfig, Losses, Model, Output, PoolFunction, PoolNodes, Targets};
use crate::error::{ModelError, check_batch, check_classes};

impl Model {
    /// The training loss of docs/method.md §3 plus the auxiliary tasks that are on.
    pub fn loss(
        &self,
        out: &Output,
        targets: &Targets,
        cfg: &LossConfig,
    ) -> Result<Losses, ModelError> {
        let b = out.frame_lens.len();
        let dev = out.emotion_logits.device();
        let n = |arg: &'static str, len: usize| check_batch(arg, len, b);
        n("transcript lengths", targets.token_lens.len())?;
        n("emotion labels", targets.emotions.len())?;
        let emotions = targets.emotions.iter().map(|&k| k as usize);
        check_classes("emotion labels", emotions, self.cfg.num_emotions)?;
        let u32s = |v: &[usize]| {
            Tensor::from_vec(
                v.iter().map(|&x| x as u32).collect::<Vec<_>>(),
                v.len(),
                dev,
            )
        };
        let frame_lens = u32s(&out.frame_lens)?;
        let token_lens = u32s(targets.token_lens)?;
        let rnnt_cfg = RnntLossConfig {
            blank: self.cfg.blank,
            reduction: Reduction::None,
            fastemit_lambda: cfg.fastemit as f32,
            ..Default::default()
        };
        let rnnt = match &out.asr {
            AsrLattice::Logits(logits) => {
                ent_lattice::rnnt_loss(logits, targets.tokens, &frame_lens, &token_lens, &rnnt_cfg)?
            }
            AsrLattice::LogProbs {
                blank,
                label,
                transcripts,
            } => {
                let toks = targets.tokens.to_dtype(DType::U32)?.to_vec2::<u32>()?;
                n("targets", toks.len())?;
                let differs = toks
                    .iter()
                    .zip(targets.token_lens)
                    .zip(transcripts)
                    .position(|((row, &n), t)| n > row.len() || row[..n] != t[..]);
                if let Some(index) = differs {
                    return Err(ModelError::TargetsChanged { index });
                }
                ent_lattice::rnnt_loss_from_log_probs(
                    blank,
                    label,
                    &frame_lens,
                    &token_lens,
                    &rnnt_cfg,
                )?
            }
        };
        let labels = Tensor::from_vec(targets.emotions.to_vec(), b, dev)?;
        let frame_on = cfg.frame > 0.0 && targets.frame_emotions.iter().any(Option::is_some);
        let aligned = if frame_on || cfg.pool_nodes == PoolNodes::Alignment {
            Some(alignment_nodes(
                out,
                targets,
                &frame_lens,
                &token_lens,
                self.cfg.blank,
            )?)
        } else {
            None
        };
        let (emotion_nodes, pool_token_lens) = match (cfg.pool_nodes, &aligned) {
            (PoolNodes::Alignment, Some(nodes)) => {
                (nodes.clone(), Tensor::zeros(b, DType::U32, dev)?)
            }
            _ => (out.emotion_logits.clone(), token_lens.clone()),
        };
        let lattice = match cfg.pool_function {
            PoolFunction::Max => ent_lattice::lattice_max_pool_loss(
                &emotion_nodes,
                &labels,
                &frame_lens,
                &pool_token_lens,
                &LatticePoolConfig {
                    neutral: self.cfg.neutral,
                    mode: cfg.pool_mode,
                    reduction: Reduction::None,
                    neutral_term: cfg.neutral_term,
                    ..Default::default()
                },
            )?,
            PoolFunction::LinearSoftmax | PoolFunction::Attention => {
                let nodes_u: Vec<usize> = match cfg.pool_nodes {
                    PoolNodes::Alignment => vec![0; b],
                    PoolNodes::Lattice => targets.token_lens.to_vec(),
                };
                if cfg.pool_function == PoolFunction::LinearSoftmax {
                    linear_softmax_pool_loss(
                        &emotion_nodes,
                        targets.emotions,
                        &out.frame_lens,
                        &nodes_u,
                        self.cfg.neutral,
                    )?
                } else {
                    let att = out.pool_attention.as_ref().ok_or(ModelError::Config {
                        field: "aux.pool_attention",
                        why: "attention pooling needs a model with `pool_attention` on".into(),
                    })?;
                    attention_pool_loss(
                        &emotion_nodes,
                        att,
                        targets.emotions,
                        &out.frame_lens,
                        &nodes_u,
                        self.cfg.neutral,
                    )?
                }
            }
        };
        let head = cross_entropy(&out.utterance_logits, &labels)?;
        let mut per =
            ((&rnnt * cfg.rnnt)? + (&lattice * cfg.lattice)?)?.add(&(&head * cfg.head)?)?;
        let mut frame = Tensor::zeros((), rnnt.dtype(), dev)?;
        if let (true, Some(nodes)) = (frame_on, &aligned) {
            n("frame label lists", targets.frame_emotions.len())?;
            let (per_frame, mask) = self.frame_loss(nodes, targets.frame_emotions, out)?;
            // Weighted by B / (utterances with labels) where labelled: the batch mean of
            // `weighted` is the mean over those utterances.
            let weighted = per_frame.mul(&weights(&mask, b, dev, per_frame.dtype())?)?;
            frame = (weighted.sum_all()? / (b as f64))?;
            per = (per + (weighted * cfg.frame)?)?;
        }
        if let Some(pred) = &out.intensity {
            n("intensity labels", targets.intensity.len())?;
            let (vals, mask) =
                masked_labels(targets.intensity.iter().map(|x| x.map(|v| v as f64)), b);
            if mask.iter().any(|&m| m > 0.0) {
                let want = Tensor::from_vec(vals, b, dev)?.to_dtype(pred.dtype())?;
                let w = weights(&mask, b, dev, pred.dtype())?;
                per = (per + (pred.sub(&want)?.sqr()?.mul(&w)? * cfg.intensity)?)?;
            }
        }
        if let Some(logits) = &out.gender_logits {
            n("gender labels", targets.gender.len())?;
            let (vals, mask) = masked_labels(targets.gender.iter().map(|x| x.map(|v| v as f64)), b);
            if mask.iter().any(|&m| m > 0.0) {
                let cls =
                    Tensor::from_vec(vals.iter().map(|&v| v as u32).collect::<Vec<_>>(), b, dev)?;
                let w = weights(&mask, b, dev, logits.dtype())?;
                per = (per + (cross_entropy(logits, &cls)?.mul(&w)? * cfg.gender)?)?;
            }
        }
        Ok(Losses {
            total: per.mean_all()?,
            per_utterance: per,
            rnnt: rnnt.mean_all()?,
            lattice: lattice.mean_all()?,
            head: head.mean_all()?,
            frame,
        })
    }

    /// The frame loss of each utterance `[B]` (the mean over its frames of `-log p(label)` at
    /// the alignment's node, 0 for an utterance without frame labels) and the mask of the
    /// utterances that have them. `nodes`: `[B, T, 1, K]` from [`alignment_nodes`].
    fn frame_loss(
        &self,
        nodes: &Tensor,
        frame_emotions: &[Option<Vec<u32>>],
        out: &Output,
    ) -> Result<(Tensor, Vec<f32>), ModelError> {
        let (b, t, _, k) = nodes.dims4()?;
        let mut labels = vec![0u32; b * t];
        let mut w = vec![0f32; b * t];
        let mut mask = vec![0f32; b];
        for (i, f) in frame_emotions.iter().enumerate() {
            let Some(f) = f else { continue };
            let len = out.frame_lens[i];
            if f.len() != len {
                return Err(ModelError::Shape {
                    arg: "frame emotions",
                    got: vec![f.len()],
                    expected: format!("[{len}]: utterance {i} has {len} frames"),
                });
            }
            check_classes(
                &format!("frame_emotions[{i}]"),
                f.iter().map(|&c| c as usize),
                k,
            )?;
            labels[i * t..i * t + len].copy_from_slice(f);
            w[i * t..i * t + len].fill(1.0 / len as f32);
            mask[i] = 1.0;
        }
        let dev = nodes.device();
        let lp = candle_nn::ops::log_softmax(&nodes.reshape((b * t, k))?, D::Minus1)?;
        let labels = Tensor::from_vec(labels, (b * t, 1), dev)?;
        let w = Tensor::from_vec(w, b * t, dev)?.to_dtype(lp.dtype())?;
        let nll = lp.gather(&labels, 1)?.squeeze(1)?.neg()?;
        Ok((nll.mul(&w)?.reshape((b, t))?.sum(1)?, mask))
    }
}

/// The emotion logits at each frame's node on the best alignment, `[B, T, 1, K]`: a lattice
/// with one predictor position, so the pooling chooses among those nodes only. Padded frames
/// repeat node `(0, 0)` and are never read.
fn alignment_nodes(
    out: &Output,
    targets: &Targets,
    frame_lens: &Tensor,
    token_lens: &Tensor,
    blank: usize,
) -> Result<Tensor, ModelError> {
    let (b, t, u1, k) = out.emotion_logits.dims4()?;
    let paths = match &out.asr {
        AsrLattice::Logits(logits) => {
            ent_lattice::rnnt_best_path(logits, targets.tokens, frame_lens, token_lens, blank)?
        }
        AsrLattice::LogProbs {
            blank: lb,
            label: ll,
            ..
        } => ent_lattice::rnnt_best_path_from_log_probs(lb, ll, frame_lens, token_lens)?,
    };
    let mut index = vec![0u32; b * t];
    for (i, path) in paths.iter().enumerate() {
        for (f, &u) in path.blank_positions.iter().enumerate() {
            index[i * t + f] = ((i * t + f) * u1 + u) as u32;
        }
        for f in path.blank_positions.len()..t {
            index[i * t + f] = ((i * t) * u1) as u32;
        }
    }
    let index = Tensor::from_vec(index, b * t, out.emotion_logits.device())?;
    Ok(out
        .emotion_logits
        .reshape((b * t * u1, k))?
        .index_select(&index, 0)?
        .reshape((b, t, 1, k))?)
}

/// Per-row cross-entropy `[B]` of `logits` `[B, K]` against `labels` `[B]` (u32).
fn cross_entropy(logits: &Tensor, labels: &Tensor) -> candle_core::Result<Tensor> {
    let lp = candle_nn::ops::log_softmax(logits, D::Minus1)?;
    lp.gather(&labels.to_dtype(DType::U32)?.unsqueeze(1)?, 1)?
        .squeeze(1)?
        .neg()
}

/// Labels with missing ones as 0 and a mask of which are present.
fn masked_labels(labels: impl Iterator<Item = Option<f64>>, b: usize) -> (Vec<f32>, Vec<f32>) {
    let mut vals = Vec::with_capacity(b);
    let mut mask = Vec::with_capacity(b);
    for l in labels {
        vals.push(l.unwrap_or(0.0) as f32);
        mask.push(if l.is_some() { 1.0 } else { 0.0 });
    }
    (vals, mask)
}

/// Per-utterance weights that make the batch mean of an auxiliary loss the mean over the
/// labelled utterances only: `B / n_labelled` where labelled, 0 elsewhere.
fn weights(
    mask: &[f32],
    b: usize,
    dev: &candle_core::Device,
    dtype: DType,
) -> candle_core::Result<Tensor> {
    let n: f32 = mask.iter().sum();
    let w: Vec<f32> = mask.iter().map(|&m| m * b as f32 / n.max(1.0)).collect();
    Tensor::from_vec(w, b, dev)?.to_dtype(dtype)
}
