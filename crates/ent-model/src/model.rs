//! ENT and FENT (docs/method.md §2) and their training loss (§3).

use candle_core::{D, DType, Tensor};
use candle_nn::{Module, VarBuilder};
use ent_lattice::{LatticePoolConfig, NeutralTerm, PoolMode, Reduction, RnntLossConfig};
use serde::{Deserialize, Serialize};

use crate::config::{FrontEnd, HeadConfig, ModelConfig, Variant};
use crate::error::ModelError;
use crate::frontend::FbankFrontEnd;
use crate::heads::{CtaRnn, Joint, Predictor, UtteranceHead};
use crate::lstm::BiLstm;
use crate::nn::{LayerNorm, Linear, Mode, ScalarMix, linear, masked_mean};

/// What the model reads.
#[derive(Debug, Clone, Copy)]
pub enum Features<'a> {
    /// Backbone hidden states `[L, B, T, D]` (for [`FrontEnd::Backbone`]).
    Hidden(&'a Tensor),
    /// Raw log-mel filterbanks `[B, F, bins]` (for [`FrontEnd::Fbank`]).
    Fbank(&'a Tensor),
}

/// The encoder side of one batch.
#[derive(Debug, Clone)]
pub struct Encoded {
    /// The hidden states the scalar mixes read, `[L, B, T, D]`.
    pub states: Tensor,
    /// Encoder output for the vocabulary branch, `[B, T, E]` (ENT: the only stream).
    pub audio: Tensor,
    /// Encoder output for the blank and emotion branches, `[B, T, E]` (ENT: same as `audio`).
    pub emotion: Tensor,
    /// Valid encoder frames per utterance.
    pub lens: Vec<usize>,
}

/// The predictor side of one batch (teacher forcing).
#[derive(Debug, Clone)]
pub struct Predicted {
    /// Vocabulary predictor output `[B, U+1, J]` (ENT: the only predictor).
    pub vocab: Tensor,
    /// Blank predictor output `[B, U+1, J]` (ENT: same as `vocab`).
    pub blank: Tensor,
    /// Valid predictor positions per utterance (`U_b + 1`).
    pub lens: Vec<usize>,
}

/// The ASR side of a training forward pass: what the RNN-T loss and the best alignment read.
#[derive(Debug, Clone)]
pub enum AsrLattice {
    /// The ASR logits `[B, T, U+1, V]` (FENT: `[blank ; vocabulary]`): from
    /// [`Model::forward_unfused`], and from [`Model::forward`] where the fused path does not
    /// run (other devices, half precision).
    Logits(Tensor),
    /// The log-probabilities of blank and of the next label at every node, `[B, T, U+1]` each
    /// (`label` holds `-logsumexp` at `u = U_b` and on padding, where it is never read): from
    /// [`Model::forward`] on the CPU, whose ASR joint computes its log-softmax block by block
    /// and never stores the logits.
    LogProbs {
        /// `log p(blank | t, u)`.
        blank: Tensor,
        /// `log p(y_{u+1} | t, u)`.
        label: Tensor,
        /// The transcripts the labels were gathered for (each utterance's `U_b` token ids):
        /// [`Model::loss`] refuses targets that differ from them.
        transcripts: Vec<Vec<u32>>,
    },
}

/// Everything one training forward pass produces.
#[derive(Debug, Clone)]
pub struct Output {
    /// The ASR side: logits, or the two log-probabilities per node the loss needs.
    pub asr: AsrLattice,
    /// Emotion-joint logits `[B, T, U+1, K]`.
    pub emotion_logits: Tensor,
    /// Utterance-head logits `[B, K]`.
    pub utterance_logits: Tensor,
    /// Predicted intensity `[B]`, when the auxiliary task is on.
    pub intensity: Option<Tensor>,
    /// Gender logits `[B, 2]`, when the auxiliary task is on.
    pub gender_logits: Option<Tensor>,
    /// Attention logits of attention pooling `[B, T, K]`, when the model has the layer
    /// ([`ModelConfig::pool_attention`]).
    pub pool_attention: Option<Tensor>,
    /// Valid encoder frames per utterance.
    pub frame_lens: Vec<usize>,
}

/// Labels of one batch.
#[derive(Debug, Clone, Copy)]
pub struct Targets<'a> {
    /// Token ids `[B, U]` (u32), padded past `token_lens`.
    pub tokens: &'a Tensor,
    /// Transcript lengths `U_b`.
    pub token_lens: &'a [usize],
    /// Utterance emotion class per utterance.
    pub emotions: &'a [u32],
    /// Intensity label per utterance, if known.
    pub intensity: &'a [Option<f32>],
    /// Gender label (female 0, male 1) per utterance, if known.
    pub gender: &'a [Option<u32>],
    /// Emotion class per encoder frame (`frame_lens[b]` of them), for utterances whose
    /// emotions are known frame by frame; read by the frame loss ([`LossConfig::frame`]).
    /// Empty, or one entry per utterance.
    pub frame_emotions: &'a [Option<Vec<u32>>],
}

/// Which lattice nodes the pooling chooses from.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PoolNodes {
    /// Every valid node `(t, u)` of the lattice (docs/method.md §3).
    #[default]
    Lattice,
    /// Only the node of each frame on the most probable alignment of the transcript under the
    /// current ASR joint ([`ent_lattice::rnnt_best_path`]): where greedy decoding reads the
    /// frame's emotion. The whole lattice lets the pooling pick nodes that decoding never
    /// visits, so emotional frames can stay neutral on the decoded path.
    Alignment,
}

/// How the lattice term turns node probabilities into utterance-level evidence.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PoolFunction {
    /// The paper's max pooling: the most probable node of the label, and the neutral term
    /// ([`LossConfig::pool_mode`], [`LossConfig::neutral_term`]).
    #[default]
    Max,
    /// Linear-softmax pooling (Wang, Li and Metze, ICASSP 2019), the multiple-instance pooling
    /// that localises best in weakly labelled sound event detection: per emotional class `c`,
    /// `y_c = sum p_c^2 / sum p_c` over the pooled nodes, and the binary cross-entropy of
    /// `y_c` against "the utterance is `c`", summed over the classes other than neutral
    /// (neutral is the background: a neutral utterance has no emotional class). Every node
    /// gets gradient, weighted by its own probability, so an emotional class has to rise where
    /// it is and only there. [`linear_softmax_pool_loss`].
    LinearSoftmax,
    /// Attention pooling (the other best localiser of Wang, Li and Metze): `y_c = sum w_c p_c`
    /// with weights `w_c` a softmax over the pooled nodes of learned per-frame attention
    /// logits (the model needs [`ModelConfig::pool_attention`]), and the same binary
    /// cross-entropy. [`attention_pool_loss`].
    Attention,
}

/// Loss weights and pooling options (docs/method.md §3; weights 0.5 each by default).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct LossConfig {
    /// Weight of the RNN-T loss.
    pub rnnt: f64,
    /// Weight of the utterance-head cross-entropy.
    pub head: f64,
    /// Weight of the lattice max pooling loss.
    pub lattice: f64,
    /// Weight of the intensity regression (auxiliary task on).
    pub intensity: f64,
    /// Weight of the gender cross-entropy (auxiliary task on).
    pub gender: f64,
    /// Which lattice nodes the pooling trains.
    pub pool_mode: PoolMode,
    /// The neutral term of the pooling.
    pub neutral_term: NeutralTerm,
    /// Which nodes the pooling chooses from.
    pub pool_nodes: PoolNodes,
    /// The pooling function of the lattice term (the paper's max pooling by default).
    pub pool_function: PoolFunction,
    /// Frame labels of utterances without known spans ([`FrameUnlabelled`]); the trainer
    /// reads this.
    pub frame_unlabelled: FrameUnlabelled,
    /// Weight of the frame loss: the cross-entropy of the emotion joint, at each frame's node
    /// on the most probable alignment, against the frame's known emotion
    /// ([`Targets::frame_emotions`]), averaged over the utterance's frames. 0 (off) by default:
    /// the paper trains with utterance labels only.
    pub frame: f64,
    /// FastEmit weight `lambda` of the RNN-T loss (Yu et al., 2021): the gradient of every
    /// label emission is scaled by `1 + lambda`, which pulls emissions earlier, towards when
    /// the tokens are said. 0 (off) by default, as in the paper.
    pub fastemit: f64,
}

impl Default for LossConfig {
    fn default() -> Self {
        Self {
            rnnt: 0.5,
            head: 0.5,
            lattice: 0.5,
            intensity: 0.1,
            gender: 0.1,
            pool_mode: PoolMode::One,
            neutral_term: NeutralTerm::Min,
            pool_nodes: PoolNodes::Lattice,
            pool_function: PoolFunction::Max,
            frame: 0.0,
            frame_unlabelled: FrameUnlabelled::Utterance,
            fastemit: 0.0,
        }
    }
}

/// What the frame loss takes as the frame labels of a training example whose emotions are
/// known only as one utterance label.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FrameUnlabelled {
    /// The utterance label on every frame (SpeechBrain's "emotion only" pattern: right for
    /// acted single-emotion utterances).
    #[default]
    Utterance,
    /// No frame loss for it.
    Skip,
}

/// The loss of one batch.
#[derive(Debug, Clone)]
pub struct Losses {
    /// The weighted total, a scalar: the mean over the batch of `per_utterance`.
    pub total: Tensor,
    /// Each utterance's weighted loss `[B]` (to name the utterances of a non-finite loss).
    pub per_utterance: Tensor,
    /// Mean RNN-T loss (unweighted), a scalar.
    pub rnnt: Tensor,
    /// Mean lattice pooling loss (unweighted), a scalar.
    pub lattice: Tensor,
    /// Mean utterance-head cross-entropy (unweighted), a scalar.
    pub head: Tensor,
    /// Mean frame loss (unweighted) over the utterances with frame labels, a scalar (0 when
    /// the frame loss is off or no utterance has frame labels).
    pub frame: Tensor,
}

/// ENT or FENT with its front end.
#[derive(Debug, Clone)]
pub struct Model {
    cfg: ModelConfig,
    fbank: Option<FbankFrontEnd>,
    mix: ScalarMix,
    mix_emotion: Option<ScalarMix>,
    encoder: BiLstm,
    predictor: Predictor,
    predictor_blank: Option<Predictor>,
    joint_asr: Joint,
    joint_blank: Option<Joint>,
    joint_emotion: Joint,
    head: UtteranceHead,
    pool_norm: Option<LayerNorm>,
    aux_intensity: Option<Linear>,
    aux_gender: Option<Linear>,
    pool_attention: Option<Linear>,
}

impl Model {
    /// Builds the model of `cfg` with its parameters under `vb` (a `VarMap`-backed builder to
    /// train, a safetensors-backed one to load).
    pub fn new(cfg: &ModelConfig, vb: VarBuilder) -> Result<Self, ModelError> {
        cfg.validate()?;
        let fbank = match &cfg.front_end {
            FrontEnd::Fbank { .. } => Some(FbankFrontEnd::new(&cfg.front_end, vb.pp("front_end"))?),
            FrontEnd::Backbone { .. } => None,
        };
        let l = cfg.front_end.num_states();
        let d = cfg.front_end.state_dim();
        let e = cfg.encoder_dim();
        let j = cfg.joint_dim;
        let k = cfg.num_emotions;
        let v = cfg.vocab_size;
        let fent = cfg.variant == Variant::Fent;
        let predictor = |name: &str| {
            Predictor::new(
                v,
                cfg.predictor_embed,
                cfg.predictor_hidden,
                j,
                cfg.predictor_dropout,
                cfg.blank,
                vb.pp(name),
            )
        };
        let head = match cfg.head {
            HeadConfig::Pooled => UtteranceHead::Pooled {
                norm: LayerNorm::new(e + j, vb.pp("head.norm"))?,
                out: linear(e + j, k, true, vb.pp("head.out"))?,
            },
            HeadConfig::CtaRnn {
                attention_dim,
                rnn_hidden,
            } => UtteranceHead::CtaRnn(Box::new(CtaRnn::new(
                d,
                attention_dim,
                rnn_hidden,
                k,
                vb.pp("head"),
            )?)),
        };
        let any_aux = cfg.aux.intensity || cfg.aux.gender;
        let pool_norm = match (&head, any_aux) {
            (UtteranceHead::CtaRnn(_), true) => Some(LayerNorm::new(e + j, vb.pp("aux.norm"))?),
            _ => None,
        };
        Ok(Self {
            cfg: cfg.clone(),
            fbank,
            mix: ScalarMix::new(l, vb.pp("mix"))?,
            mix_emotion: if fent {
                Some(ScalarMix::new(l, vb.pp("mix_emotion"))?)
            } else {
                None
            },
            encoder: BiLstm::new(d, cfg.encoder_hidden, vb.pp("encoder"))?,
            predictor: predictor("predictor")?,
            predictor_blank: if fent {
                Some(predictor("predictor_blank")?)
            } else {
                None
            },
            joint_asr: Joint::new(e, j, j, if fent { v - 1 } else { v }, vb.pp("joint_asr"))?,
            joint_blank: if fent {
                Some(Joint::new(e, j, j, 1, vb.pp("joint_blank"))?)
            } else {
                None
            },
            joint_emotion: Joint::new(e, j, j, k, vb.pp("joint_emotion"))?,
            head,
            pool_norm,
            aux_intensity: if cfg.aux.intensity {
                Some(linear(e + j, 1, true, vb.pp("aux.intensity"))?)
            } else {
                None
            },
            aux_gender: if cfg.aux.gender {
                Some(linear(e + j, 2, true, vb.pp("aux.gender"))?)
            } else {
                None
            },
            pool_attention: if cfg.pool_attention {
                Some(linear(e, k, true, vb.pp("pool_attention"))?)
            } else {
                None
            },
        })
    }

    /// The configuration.
    pub fn config(&self) -> &ModelConfig {
        &self.cfg
    }

    /// Whether the parameter called `name` is a buffer the optimiser must not touch (the
    /// filterbank front end's CMVN statistics).
    pub fn is_buffer(name: &str) -> bool {
        name.starts_with("front_end.cmvn.")
    }

    /// Runs the front end, the scalar mix(es) and the BiLSTM encoder. `lens[b]` counts input
    /// frames (backbone frames or filterbank frames).
    pub fn encode(
        &self,
        features: Features,
        lens: &[usize],
        mode: &mut Mode,
    ) -> Result<Encoded, ModelError> {
        let (states, lens) = match (features, &self.fbank) {
            (Features::Hidden(h), None) => {
                let (l, b, t, d) = h.dims4()?;
                if (l, d)
                    != (
                        self.cfg.front_end.num_states(),
                        self.cfg.front_end.state_dim(),
                    )
                {
                    return Err(ModelError::Input(format!(
                        "hidden states are [{l}, {b}, {t}, {d}]; the model mixes {} states of width {}",
                        self.cfg.front_end.num_states(),
                        self.cfg.front_end.state_dim()
                    )));
                }
                check_lens("frame", lens, b, t)?;
                (h.clone(), lens.to_vec())
            }
            (Features::Fbank(x), Some(fe)) => {
                let (b, f, _) = x.dims3()?;
                check_lens("filterbank frame", lens, b, f)?;
                let (states, out) = fe.forward(x, lens, mode)?;
                if let Some((i, _)) = out.iter().enumerate().find(|&(_, &n)| n == 0) {
                    return Err(ModelError::Input(format!(
                        "utterance {i} has {} filterbank frames; subsampling needs at least 7",
                        lens[i]
                    )));
                }
                (states, out)
            }
            (Features::Hidden(_), Some(_)) => {
                return Err(ModelError::Input(
                    "this model reads filterbanks, not backbone hidden states".into(),
                ));
            }
            (Features::Fbank(_), None) => {
                return Err(ModelError::Input(
                    "this model reads backbone hidden states, not filterbanks".into(),
                ));
            }
        };
        let audio = self.encoder.forward(&self.mix.forward(&states)?, &lens)?;
        let emotion = match &self.mix_emotion {
            Some(m) => self.encoder.forward(&m.forward(&states)?, &lens)?,
            None => audio.clone(),
        };
        Ok(Encoded {
            states,
            audio,
            emotion,
            lens,
        })
    }

    /// Runs the predictor(s) on `[blank, y_1 .. y_U]`.
    pub fn predict(
        &self,
        tokens: &Tensor,
        token_lens: &[usize],
        mode: &mut Mode,
    ) -> Result<Predicted, ModelError> {
        let (b, u) = tokens.dims2()?;
        check_lens("token", token_lens, b, u)?;
        let vocab = self.predictor.forward(tokens, token_lens, mode)?;
        let blank = match &self.predictor_blank {
            Some(p) => p.forward(tokens, token_lens, mode)?,
            None => vocab.clone(),
        };
        Ok(Predicted {
            vocab,
            blank,
            lens: token_lens.iter().map(|&n| n + 1).collect(),
        })
    }

    /// ASR and emotion logits over the whole lattice: `[B, T, U+1, V]` and `[B, T, U+1, K]`.
    pub fn joint(&self, enc: &Encoded, pred: &Predicted) -> candle_core::Result<(Tensor, Tensor)> {
        let asr = match &self.joint_blank {
            Some(jb) => {
                let blank = jb.forward(&enc.emotion, &pred.blank)?;
                let vocab = self.joint_asr.forward(&enc.audio, &pred.vocab)?;
                Tensor::cat(&[blank, vocab], D::Minus1)?
            }
            None => self.joint_asr.forward(&enc.audio, &pred.vocab)?,
        };
        let emo = self.joint_emotion.forward(&enc.emotion, &pred.blank)?;
        Ok((asr, emo))
    }

    /// The ASR joint (FENT: blank and vocabulary joints) at single nodes, for decoding:
    /// `h` `[N, E]` rows of `enc.audio`, `h_emotion` rows of `enc.emotion`, `g` and `g_blank`
    /// `[N, J]` predictor outputs -> `[N, V]`.
    pub fn asr_logits_at(
        &self,
        h: &Tensor,
        h_emotion: &Tensor,
        g: &Tensor,
        g_blank: &Tensor,
    ) -> candle_core::Result<Tensor> {
        let vocab = self.joint_asr.combine(
            &self.joint_asr.project_encoder(h)?,
            &self.joint_asr.project_predictor(g)?,
        )?;
        match &self.joint_blank {
            Some(jb) => {
                let blank = jb.combine(
                    &jb.project_encoder(h_emotion)?,
                    &jb.project_predictor(g_blank)?,
                )?;
                Tensor::cat(&[blank, vocab], D::Minus1)
            }
            None => Ok(vocab),
        }
    }

    /// The emotion joint at single nodes: `h_emotion` `[N, E]`, `g_blank` `[N, J]` -> `[N, K]`.
    pub fn emotion_logits_at(
        &self,
        h_emotion: &Tensor,
        g_blank: &Tensor,
    ) -> candle_core::Result<Tensor> {
        let j = &self.joint_emotion;
        j.combine(
            &j.project_encoder(h_emotion)?,
            &j.project_predictor(g_blank)?,
        )
    }

    /// The predictor that feeds the ASR joint (FENT: the vocabulary predictor).
    pub fn vocab_predictor(&self) -> &Predictor {
        &self.predictor
    }

    /// The predictor that feeds the blank and emotion joints (ENT: the same as
    /// [`Model::vocab_predictor`]).
    pub fn blank_predictor(&self) -> &Predictor {
        self.predictor_blank.as_ref().unwrap_or(&self.predictor)
    }

    /// Utterance-head logits `[B, K]` and the pooled `[mean h ; mean g]` vector after its norm
    /// (the auxiliary heads read it).
    pub fn utterance(
        &self,
        enc: &Encoded,
        pred: &Predicted,
    ) -> candle_core::Result<(Tensor, Option<Tensor>)> {
        let pooled = || -> candle_core::Result<Tensor> {
            Tensor::cat(
                &[
                    masked_mean(&enc.emotion, &enc.lens)?,
                    masked_mean(&pred.blank, &pred.lens)?,
                ],
                1,
            )
        };
        match &self.head {
            UtteranceHead::Pooled { norm, out } => {
                let p = norm.forward(&pooled()?)?;
                Ok((out.forward(&p)?, Some(p)))
            }
            UtteranceHead::CtaRnn(h) => {
                let logits = h.forward(&enc.states, &enc.lens)?;
                let p = match &self.pool_norm {
                    Some(n) => Some(n.forward(&pooled()?)?),
                    None => None,
                };
                Ok((logits, p))
            }
        }
    }

    /// The whole training forward pass (teacher forcing). On the CPU (f32, f64) the ASR joint
    /// is fused with its log-softmax and the gather of the RNN-T loss, and gives
    /// [`AsrLattice::LogProbs`]: neither the joints' `[B, T, U+1, J]` hidden layers nor the
    /// `[B, T, U+1, V]` logits are ever held whole (`fused.rs`); elsewhere it gives
    /// [`AsrLattice::Logits`]. Losses and gradients equal [`Model::forward_unfused`]'s within
    /// rounding.
    pub fn forward(
        &self,
        features: Features,
        lens: &[usize],
        tokens: &Tensor,
        token_lens: &[usize],
        mode: &mut Mode,
    ) -> Result<Output, ModelError> {
        self.forward_with(features, lens, tokens, token_lens, mode, true)
    }

    /// [`Model::forward`] with every joint in separate candle operations and the ASR logits
    /// stored ([`AsrLattice::Logits`]): the reference the fused path is tested against.
    pub fn forward_unfused(
        &self,
        features: Features,
        lens: &[usize],
        tokens: &Tensor,
        token_lens: &[usize],
        mode: &mut Mode,
    ) -> Result<Output, ModelError> {
        self.forward_with(features, lens, tokens, token_lens, mode, false)
    }

    fn forward_with(
        &self,
        features: Features,
        lens: &[usize],
        tokens: &Tensor,
        token_lens: &[usize],
        mode: &mut Mode,
        fused: bool,
    ) -> Result<Output, ModelError> {
        let enc = self.encode(features, lens, mode)?;
        let pred = self.predict(tokens, token_lens, mode)?;
        if enc.audio.dim(0)? != pred.vocab.dim(0)? {
            return Err(ModelError::Input(format!(
                "{} utterances of features but {} transcripts",
                enc.audio.dim(0)?,
                pred.vocab.dim(0)?
            )));
        }
        let fusable = fused
            && self.joint_asr.can_gather(&enc.audio)
            && self
                .joint_blank
                .as_ref()
                .is_none_or(|jb| jb.can_gather(&enc.emotion));
        let (asr, emotion_logits) = if fusable {
            (
                self.asr_log_probs(&enc, &pred, tokens, token_lens)?,
                self.joint_emotion.forward(&enc.emotion, &pred.blank)?,
            )
        } else if fused {
            let (asr, emo) = self.joint(&enc, &pred)?;
            (AsrLattice::Logits(asr), emo)
        } else {
            let asr = match &self.joint_blank {
                Some(jb) => Tensor::cat(
                    &[
                        jb.forward_unfused(&enc.emotion, &pred.blank)?,
                        self.joint_asr.forward_unfused(&enc.audio, &pred.vocab)?,
                    ],
                    D::Minus1,
                )?,
                None => self.joint_asr.forward_unfused(&enc.audio, &pred.vocab)?,
            };
            let emo = self
                .joint_emotion
                .forward_unfused(&enc.emotion, &pred.blank)?;
            (AsrLattice::Logits(asr), emo)
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
                    return Err(ModelError::Input(format!(
                        "targets[{i}, {pos}] = {y} is not below the vocabulary size V = {v}"
                    )));
                }
                if y as usize == blank {
                    return Err(ModelError::Input(format!(
                        "targets[{i}, {pos}] = {y} is the blank index: targets must not \
                         contain blank"
                    )));
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

    /// The training loss of docs/method.md §3 plus the auxiliary tasks that are on.
    pub fn loss(
        &self,
        out: &Output,
        targets: &Targets,
        cfg: &LossConfig,
    ) -> Result<Losses, ModelError> {
        let b = out.frame_lens.len();
        let dev = out.emotion_logits.device();
        let n = |name: &str, len: usize| -> Result<(), ModelError> {
            if len != b {
                return Err(ModelError::Input(format!(
                    "{len} {name} for a batch of {b}"
                )));
            }
            Ok(())
        };
        n("transcript lengths", targets.token_lens.len())?;
        n("emotion labels", targets.emotions.len())?;
        if let Some((i, &k)) = targets
            .emotions
            .iter()
            .enumerate()
            .find(|&(_, &k)| k as usize >= self.cfg.num_emotions)
        {
            return Err(ModelError::Input(format!(
                "emotion label {k} of utterance {i} is not below {} classes",
                self.cfg.num_emotions
            )));
        }
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
                let same = toks.len() == transcripts.len()
                    && toks
                        .iter()
                        .zip(targets.token_lens)
                        .zip(transcripts)
                        .all(|((row, &n), t)| n <= row.len() && row[..n] == t[..]);
                if !same {
                    return Err(ModelError::Input(
                        "the targets differ from the transcripts the forward pass gathered its \
                         label log-probabilities for"
                            .into(),
                    ));
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
                    let att = out.pool_attention.as_ref().ok_or_else(|| {
                        ModelError::Input(
                            "attention pooling needs a model with `pool_attention` on".into(),
                        )
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
                return Err(ModelError::Input(format!(
                    "utterance {i} has {} frame emotions for {len} frames",
                    f.len()
                )));
            }
            if let Some(&c) = f.iter().find(|&&c| c as usize >= k) {
                return Err(ModelError::Input(format!(
                    "frame emotion {c} of utterance {i} is not below {k} classes"
                )));
            }
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

/// Linear-softmax pooling loss per utterance, `[B]` ([`PoolFunction::LinearSoftmax`]).
///
/// `logits`: emotion logits `[B, T, U+1, K]`; the pooled nodes of utterance `i` are `t <
/// frame_lens[i]`, `u <= token_lens[i]`. With `p = softmax(logits)` and, per class `c`, `y_c =
/// sum p_c^2 / sum p_c` over those nodes (clamped to `[1e-7, 1 - 1e-7]`), the loss is
/// `-sum_{c != neutral} [c = label] log y_c + [c != label] log(1 - y_c)`.
pub fn linear_softmax_pool_loss(
    logits: &Tensor,
    labels: &[u32],
    frame_lens: &[usize],
    token_lens: &[usize],
    neutral: usize,
) -> Result<Tensor, ModelError> {
    let mask = pool_mask(logits, labels, frame_lens, token_lens, neutral)?;
    let p = candle_nn::ops::softmax(logits, D::Minus1)?;
    let pm = p.broadcast_mul(&mask)?;
    let den = pm.sum((1, 2))?;
    let num = pm.mul(&p)?.sum((1, 2))?;
    // `den` is 0 only where every pooled probability underflowed, and then so is `num`.
    pool_bce(&num.div(&den.maximum(1e-30)?)?, labels, neutral)
}

/// Attention pooling loss per utterance, `[B]` ([`PoolFunction::Attention`]).
///
/// `logits`: emotion logits `[B, T, U+1, K]`, pooled over `t < frame_lens[i]`, `u <=
/// token_lens[i]`; `attention`: attention logits `[B, T, K]` per frame (the same for every `u`
/// of a frame). With `p = softmax_K(logits)` and `w = softmax` over the pooled nodes of the
/// attention logits, per class, `y_c = sum w_c p_c`, clamped and scored as in
/// [`linear_softmax_pool_loss`].
pub fn attention_pool_loss(
    logits: &Tensor,
    attention: &Tensor,
    labels: &[u32],
    frame_lens: &[usize],
    token_lens: &[usize],
    neutral: usize,
) -> Result<Tensor, ModelError> {
    let (b, t, u1, k) = logits.dims4()?;
    if attention.dims() != [b, t, k] {
        return Err(ModelError::Input(format!(
            "attention logits {:?} do not match emotion logits {:?}",
            attention.dims(),
            logits.dims()
        )));
    }
    let mask = pool_mask(logits, labels, frame_lens, token_lens, neutral)?;
    let a = attention
        .unsqueeze(2)?
        .broadcast_as((b, t, u1, k))?
        .broadcast_add(&mask.affine(1e30, -1e30)?)?;
    // Masked nodes sit 1e30 below the rest: their weight is exactly 0.
    let m = a.max_keepdim(1)?.max_keepdim(2)?.detach();
    let e = a.broadcast_sub(&m)?.exp()?.broadcast_mul(&mask)?;
    let w = e.broadcast_div(&e.sum_keepdim((1, 2))?)?;
    let p = candle_nn::ops::softmax(logits, D::Minus1)?;
    pool_bce(&w.mul(&p)?.sum((1, 2))?, labels, neutral)
}

/// Checks the inputs of a pooling loss and returns the mask `[B, T, U+1, 1]` of pooled nodes.
fn pool_mask(
    logits: &Tensor,
    labels: &[u32],
    frame_lens: &[usize],
    token_lens: &[usize],
    neutral: usize,
) -> Result<Tensor, ModelError> {
    let (b, t, u1, k) = logits.dims4()?;
    check_lens("frame", frame_lens, b, t)?;
    check_lens("token", token_lens, b, u1 - 1)?;
    if labels.len() != b {
        return Err(ModelError::Input(format!(
            "{} labels for a batch of {b}",
            labels.len()
        )));
    }
    if let Some(&c) = labels.iter().find(|&&c| c as usize >= k) {
        return Err(ModelError::Input(format!(
            "emotion label {c} is not below {k} classes"
        )));
    }
    if neutral >= k {
        return Err(ModelError::Input(format!(
            "neutral class {neutral} is not below {k} classes"
        )));
    }
    let mut mask = vec![0f32; b * t * u1];
    for i in 0..b {
        for f in 0..frame_lens[i] {
            mask[(i * t + f) * u1..(i * t + f) * u1 + token_lens[i] + 1].fill(1.0);
        }
    }
    Ok(Tensor::from_vec(mask, (b, t, u1, 1), logits.device())?.to_dtype(logits.dtype())?)
}

/// `-sum_{c != neutral} [c = label] log y_c + [c != label] log(1 - y_c)` per utterance, `y`
/// `[B, K]` clamped to `[1e-7, 1 - 1e-7]`.
fn pool_bce(y: &Tensor, labels: &[u32], neutral: usize) -> Result<Tensor, ModelError> {
    let (b, k) = y.dims2()?;
    let y = y.clamp(1e-7, 1.0 - 1e-7)?;
    let mut pos = vec![0f32; b * k];
    let mut neg = vec![0f32; b * k];
    for (i, &l) in labels.iter().enumerate() {
        for c in (0..k).filter(|&c| c != neutral) {
            if c == l as usize {
                pos[i * k + c] = 1.0;
            } else {
                neg[i * k + c] = 1.0;
            }
        }
    }
    let (dev, dtype) = (y.device(), y.dtype());
    let pos = Tensor::from_vec(pos, (b, k), dev)?.to_dtype(dtype)?;
    let neg = Tensor::from_vec(neg, (b, k), dev)?.to_dtype(dtype)?;
    let ll = pos
        .mul(&y.log()?)?
        .add(&neg.mul(&y.affine(-1.0, 1.0)?.log()?)?)?;
    Ok(ll.sum(1)?.neg()?)
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

fn check_lens(what: &str, lens: &[usize], b: usize, t: usize) -> Result<(), ModelError> {
    if lens.len() != b {
        return Err(ModelError::Input(format!(
            "{} {what} lengths for a batch of {b}",
            lens.len()
        )));
    }
    if let Some((i, &l)) = lens.iter().enumerate().find(|&(_, &l)| l > t) {
        return Err(ModelError::Input(format!(
            "{what} length {l} of utterance {i} exceeds the padded length {t}"
        )));
    }
    if what != "token"
        && let Some((i, _)) = lens.iter().enumerate().find(|&(_, &l)| l == 0)
    {
        return Err(ModelError::Input(format!("utterance {i} has no {what}s")));
    }
    Ok(())
}
