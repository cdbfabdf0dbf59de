//! ENT and FENT (docs/method.md §2) and their training loss (§3): the network here, its
//! inputs and outputs in [`types`], the training forward pass in `forward.rs`, the loss in
//! `loss.rs` and the poolings for utterance labels in `pool.rs`.

mod forward;
mod loss;
mod pool;
mod types;

use candle_core::{D, Tensor};
use candle_nn::{Module, VarBuilder};

use crate::config::{FrontEnd, HeadConfig, ModelConfig, Variant};
use crate::error::{ModelError, check_lens};
use crate::frontend::FbankFrontEnd;
use crate::heads::{CtaRnn, Joint, Predictor, UtteranceHead};
use crate::lstm::BiLstm;
use crate::nn::{LayerNorm, Linear, Mode, ScalarMix, linear, masked_mean};

pub use pool::{attention_pool_loss, linear_softmax_pool_loss};
pub use types::*;

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
                let (states, width) = (
                    self.cfg.front_end.num_states(),
                    self.cfg.front_end.state_dim(),
                );
                if (l, d) != (states, width) {
                    return Err(ModelError::Shape {
                        arg: "hidden states",
                        got: vec![l, b, t, d],
                        expected: format!("[{states}, B, T, {width}]"),
                    });
                }
                check_lens("frame lengths", lens, b, t, false)?;
                (h.clone(), lens.to_vec())
            }
            (Features::Fbank(x), Some(fe)) => {
                let (b, f, _) = x.dims3()?;
                check_lens("filterbank frame lengths", lens, b, f, false)?;
                let (states, out) = fe.forward(x, lens, mode)?;
                if let Some(index) = out.iter().position(|&n| n == 0) {
                    return Err(ModelError::TooShort {
                        index,
                        frames: lens[index],
                        min: 7,
                    });
                }
                (states, out)
            }
            (Features::Hidden(_), Some(_)) => {
                return Err(ModelError::Features {
                    expected: "filterbanks",
                    got: "backbone hidden states",
                });
            }
            (Features::Fbank(_), None) => {
                return Err(ModelError::Features {
                    expected: "backbone hidden states",
                    got: "filterbanks",
                });
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
        check_lens("token lengths", token_lens, b, u, true)?;
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
}
