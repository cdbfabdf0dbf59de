//! The training forward pass: encoder, predictor(s), the joints over the whole lattice and
//! the utterance head.

use candle_core::{DType, Tensor};
use candle_nn::Module;
use ent_lattice::LatticeError;

use super::{AsrLattice, Encoded, Features, Model, Output, Predicted};
use crate::error::ModelError;
use crate::nn::Mode;

/// How the training forward pass computes the joints.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Joints {
    /// The fused ops of `fused.rs`: the ASR joint with its log-softmax and the RNN-T loss's
    /// gather where the tensors allow (the CPU, f32, f64), else the logits of [`Model::joint`].
    Fused,
    /// Every joint in candle ops, the logits stored: the reference.
    #[cfg(feature = "testing")]
    Reference,
}

impl Model {
    /// The whole training forward pass (teacher forcing). On the CPU (f32, f64) the ASR joint
    /// is fused with its log-softmax and the gather of the RNN-T loss, and gives
    /// [`AsrLattice::LogProbs`]: neither the joints' `[B, T, U+1, J]` hidden layers nor the
    /// `[B, T, U+1, V]` logits are ever held whole (`fused.rs`); elsewhere it gives
    /// [`AsrLattice::Logits`]. Losses and gradients equal those of the reference in candle ops
    /// (`forward_unfused`, feature `testing`) within rounding.
    pub fn forward(
        &self,
        features: Features,
        lens: &[usize],
        tokens: &Tensor,
        token_lens: &[usize],
        mode: &mut Mode,
    ) -> Result<Output, ModelError> {
        self.forward_with(features, lens, tokens, token_lens, mode, Joints::Fused)
    }

    /// [`Model::forward`] with every joint in separate candle operations and the ASR logits
    /// stored ([`AsrLattice::Logits`]): the reference the fused path is tested against.
    #[cfg(feature = "testing")]
    pub fn forward_unfused(
        &self,
        features: Features,
        lens: &[usize],
        tokens: &Tensor,
        token_lens: &[usize],
        mode: &mut Mode,
    ) -> Result<Output, ModelError> {
        self.forward_with(features, lens, tokens, token_lens, mode, Joints::Reference)
    }

    fn forward_with(
        &self,
        features: Features,
        lens: &[usize],
        tokens: &Tensor,
        token_lens: &[usize],
        mode: &mut Mode,
        joints: Joints,
    ) -> Result<Output, ModelError> {
        let enc = self.encode(features, lens, mode)?;
        let pred = self.predict(tokens, token_lens, mode)?;
        let batch = enc.audio.dim(0)?;
        crate::error::check_batch("transcripts", pred.vocab.dim(0)?, batch)?;
        let gatherable = self.joint_asr.can_gather(&enc.audio)
            && self
                .joint_blank
                .as_ref()
                .is_none_or(|jb| jb.can_gather(&enc.emotion));
        let (asr, emotion_logits) = match joints {
            Joints::Fused if gatherable => (
                self.asr_log_probs(&enc, &pred, tokens, token_lens)?,
                self.joint_emotion.forward(&enc.emotion, &pred.blank)?,
            ),
            Joints::Fused => {
                let (asr, emo) = self.joint(&enc, &pred)?;
                (AsrLattice::Logits(asr), emo)
            }
            #[cfg(feature = "testing")]
            Joints::Reference => self.reference_joints(&enc, &pred)?,
        };
        let (utterance_logits, pooled) = self.utterance(&enc, &pred)?;
        let intensity = match (&self.aux_intensity, &pooled) {
            (Some(l), Some(p)) => Some(l.forward(p)?.squeeze(1)?),
            _ => None,
        };
        let gender_logits = match (&self.aux_gender, &pooled) {
            (Some(l), Some(p)) => Some(l.forward(p)?),
            _ => None,
        };
        let pool_attention = match &self.pool_attention {
            Some(l) => Some(l.forward(&enc.emotion)?),
            None => None,
        };
        Ok(Output {
            asr,
            emotion_logits,
            utterance_logits,
            intensity,
            gender_logits,
            pool_attention,
            frame_lens: enc.lens,
        })
    }

    /// The joints in candle ops, the ASR logits stored.
    #[cfg(feature = "testing")]
    fn reference_joints(
        &self,
        enc: &Encoded,
        pred: &Predicted,
    ) -> Result<(AsrLattice, Tensor), ModelError> {
        let vocab = self.joint_asr.forward_candle(&enc.audio, &pred.vocab)?;
        let asr = match &self.joint_blank {
            Some(jb) => Tensor::cat(
                &[jb.forward_candle(&enc.emotion, &pred.blank)?, vocab],
                candle_core::D::Minus1,
            )?,
            None => vocab,
        };
        let emo = self
            .joint_emotion
            .forward_candle(&enc.emotion, &pred.blank)?;
        Ok((AsrLattice::Logits(asr), emo))
    }

    /// `log p(blank)` and `log p(y_{u+1})` at every node through the fused ASR joint(s): ENT
    /// gathers both from its one joint; FENT's blank joint gives blank's logit and its
    /// vocabulary joint the label's, over one normaliser, `logaddexp` of the two joints'.
    fn asr_log_probs(
        &self,
        enc: &Encoded,
        pred: &Predicted,
        tokens: &Tensor,
        token_lens: &[usize],
    ) -> Result<AsrLattice, ModelError> {
        let (b, u) = tokens.dims2()?;
        let u1 = u + 1;
        let toks = tokens.to_dtype(DType::U32)?.to_vec2::<u32>()?;
        let (v, blank) = (self.cfg.vocab_size, self.cfg.blank);
        // FENT's vocabulary joint has no blank column: token y is its column y - 1.
        let shift = u32::from(self.joint_blank.is_some());
        let mut labels = vec![crate::fused::NO_LABEL; b * u1];
        let transcripts: Vec<Vec<u32>> = toks
            .iter()
            .zip(token_lens)
            .map(|(row, &n)| row[..n].to_vec())
            .collect();
        for (i, (row, &n)) in toks.iter().zip(token_lens).enumerate() {
            for (pos, &y) in row[..n].iter().enumerate() {
                if y as usize >= v {
                    Err(LatticeError::LabelOutOfRange {
                        batch: i,
                        position: pos,
                        value: y as i64,
                        vocab: v,
                    })?;
                }
                if y as usize == blank {
                    Err(LatticeError::LabelIsBlank {
                        batch: i,
                        position: pos,
                        value: y as i64,
                    })?;
                }
                labels[i * u1 + pos] = y - shift;
            }
        }
        let labels = std::sync::Arc::new(labels);
        let part =
            |g: &Tensor, i: usize| -> candle_core::Result<Tensor> { g.narrow(3, i, 1)?.squeeze(3) };
        let (lse, zb, zl) = match &self.joint_blank {
            None => {
                let g = self.joint_asr.forward_gathered(
                    &enc.audio,
                    &pred.vocab,
                    Some(blank),
                    labels,
                )?;
                (part(&g, 0)?, part(&g, 1)?, part(&g, 2)?)
            }
            Some(jb) => {
                let gb = jb.forward_gathered(
                    &enc.emotion,
                    &pred.blank,
                    Some(0),
                    std::sync::Arc::new(vec![crate::fused::NO_LABEL; b * u1]),
                )?;
                let gv = self
                    .joint_asr
                    .forward_gathered(&enc.audio, &pred.vocab, None, labels)?;
                let (a, c) = (part(&gb, 0)?, part(&gv, 0)?);
                // logaddexp; the maximum is a constant of the gradient.
                let m = a.maximum(&c)?.detach();
                let lse = (a.broadcast_sub(&m)?.exp()? + c.broadcast_sub(&m)?.exp()?)?
                    .log()?
                    .add(&m)?;
                (lse, part(&gb, 1)?, part(&gv, 2)?)
            }
        };
        Ok(AsrLattice::LogProbs {
            blank: zb.sub(&lse)?,
            label: zl.sub(&lse)?,
            transcripts,
        })
    }
}
