//! Model configuration: the paper's sizes are the defaults (docs/method.md §2).

use serde::{Deserialize, Serialize};

use crate::error::ModelError;

/// ENT or its factorized variant.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Variant {
    /// One scalar mix, one predictor, ASR and emotion joints over the same streams.
    #[default]
    Ent,
    /// Factorized: audio and emotion mixes, blank and vocabulary predictors, one softmax over
    /// `[blank ; vocabulary]` (docs/method.md §2, "FENT").
    Fent,
}

/// What produces the hidden states the scalar mix combines.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
pub enum FrontEnd {
    /// The hidden states of a frozen self-supervised backbone (wav2vec2, HuBERT, WavLM), computed
    /// outside the model: `layers` states of width `dim` at 50 frames per second.
    Backbone {
        /// Number of hidden states (13 for a base model: the transformer input and 12 layers).
        layers: usize,
        /// Width of each hidden state (768 for a base model).
        dim: usize,
    },
    /// Log-mel filterbanks, convolutional 4x subsampling (two 3x3 convolutions of stride 2),
    /// then a stack of encoder layers; the hidden states are the subsampled input and every
    /// layer's output (`layers + 1` states of width `dim`, 25 frames per second at a 10 ms hop).
    Fbank {
        /// Filterbank bins of the input.
        num_mel_bins: usize,
        /// Channels of the two subsampling convolutions.
        conv_channels: usize,
        /// Width of the encoder layers.
        dim: usize,
        /// Number of encoder layers.
        layers: usize,
        /// The encoder layers.
        encoder: FbankEncoder,
        /// Dropout inside the encoder.
        dropout: f64,
    },
}

impl Default for FrontEnd {
    fn default() -> Self {
        FrontEnd::Backbone {
            layers: 13,
            dim: 768,
        }
    }
}

impl FrontEnd {
    /// A small filterbank front end for training on a CPU: 80 bins, 2 conformer layers of width
    /// 144.
    pub fn fbank_small() -> Self {
        FrontEnd::Fbank {
            num_mel_bins: 80,
            conv_channels: 32,
            dim: 144,
            layers: 2,
            encoder: FbankEncoder::Conformer {
                heads: 4,
                ff_dim: 576,
                kernel: 15,
            },
            dropout: 0.1,
        }
    }

    /// Number of hidden states the scalar mix receives.
    pub fn num_states(&self) -> usize {
        match self {
            FrontEnd::Backbone { layers, .. } => *layers,
            FrontEnd::Fbank { layers, .. } => layers + 1,
        }
    }

    /// Width of each hidden state.
    pub fn state_dim(&self) -> usize {
        match self {
            FrontEnd::Backbone { dim, .. } | FrontEnd::Fbank { dim, .. } => *dim,
        }
    }

    /// Seconds between encoder frames: 0.02 for a backbone, 0.04 for filterbanks at a 10 ms hop.
    pub fn frame_shift_secs(&self) -> f64 {
        match self {
            FrontEnd::Backbone { .. } => 0.02,
            FrontEnd::Fbank { .. } => 0.04,
        }
    }

    /// Encoder frames produced from `n` input frames (backbone: `n`; filterbanks: after the two
    /// valid 3x3 stride-2 convolutions, `((n - 1) / 2 - 1) / 2`).
    pub fn output_frames(&self, n: usize) -> usize {
        match self {
            FrontEnd::Backbone { .. } => n,
            FrontEnd::Fbank { .. } => {
                let once = n.saturating_sub(1) / 2;
                once.saturating_sub(1) / 2
            }
        }
    }
}

/// The layers of the filterbank front end.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
pub enum FbankEncoder {
    /// Bidirectional LSTM layers, `dim / 2` per direction.
    Lstm,
    /// Conformer blocks (Gulati et al., 2020): half-step feed-forward, self-attention with
    /// sinusoidal absolute positions, depthwise convolution, half-step feed-forward, layer norm.
    /// Layer norm stands in for the convolution module's batch norm, so results never depend on
    /// the batch.
    Conformer {
        /// Attention heads (`dim` must divide by it).
        heads: usize,
        /// Feed-forward width.
        ff_dim: usize,
        /// Depthwise convolution kernel (odd).
        kernel: usize,
    },
}

/// The utterance-level emotion head.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
pub enum HeadConfig {
    /// docs/method.md §2: `[mean_t h_t ; mean_u g_u]` -> LayerNorm -> Linear.
    #[default]
    Pooled,
    /// CTA-RNN-style (docs/method.md §9): attention across the front end's hidden states per frame,
    /// attention across time, a bidirectional LSTM, masked mean, LayerNorm, Linear.
    CtaRnn {
        /// Width of the two attention scorers.
        attention_dim: usize,
        /// LSTM hidden size per direction.
        rnn_hidden: usize,
    },
}

/// SpeechEQ-style auxiliary utterance tasks (docs/method.md §9) on the pooled `[h ; g]` vector,
/// trained only on utterances that carry the label.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AuxConfig {
    /// Regress emotion intensity (e.g. IEMOCAP arousal) with a squared error.
    pub intensity: bool,
    /// Classify speaker gender (female 0, male 1).
    pub gender: bool,
}

/// The whole model. Defaults are the paper's ENT with a wav2vec2-base front end (about 9.7 M
/// trainable parameters).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ModelConfig {
    /// ENT or FENT.
    pub variant: Variant,
    /// Where the hidden states come from.
    pub front_end: FrontEnd,
    /// Vocabulary size `V`, blank included (31 characters).
    pub vocab_size: usize,
    /// Index of blank (also the predictor's start symbol).
    pub blank: usize,
    /// Emotion classes `K`.
    pub num_emotions: usize,
    /// Index of the neutral ("non-emotional") class (docs/method.md §8, decision 2).
    pub neutral: usize,
    /// BiLSTM encoder hidden size per direction (encoder output `2 *` this).
    pub encoder_hidden: usize,
    /// Predictor embedding width.
    pub predictor_embed: usize,
    /// Predictor LSTM hidden size.
    pub predictor_hidden: usize,
    /// Dropout after the predictor embedding.
    pub predictor_dropout: f64,
    /// Predictor output width and joint hidden width.
    pub joint_dim: usize,
    /// The utterance head.
    pub head: HeadConfig,
    /// Auxiliary tasks.
    pub aux: AuxConfig,
    /// A per-frame attention layer for attention pooling (`"pool_function": "attention"` in
    /// the loss): a linear map from the emotion branch's encoder output to `K` attention
    /// logits. Off by default (the paper has none).
    pub pool_attention: bool,
}

impl Default for ModelConfig {
    fn default() -> Self {
        Self {
            variant: Variant::Ent,
            front_end: FrontEnd::default(),
            vocab_size: 31,
            blank: 0,
            num_emotions: 4,
            neutral: 3,
            encoder_hidden: 384,
            predictor_embed: 640,
            predictor_hidden: 640,
            predictor_dropout: 0.1,
            joint_dim: 768,
            head: HeadConfig::Pooled,
            aux: AuxConfig::default(),
            pool_attention: false,
        }
    }
}

impl ModelConfig {
    /// The paper's FENT (about 14.7 M trainable parameters).
    pub fn fent() -> Self {
        Self {
            variant: Variant::Fent,
            ..Self::default()
        }
    }

    /// A model sized for CPU training from filterbanks.
    pub fn fbank_small() -> Self {
        Self {
            front_end: FrontEnd::fbank_small(),
            encoder_hidden: 128,
            predictor_embed: 128,
            predictor_hidden: 256,
            joint_dim: 256,
            ..Self::default()
        }
    }

    /// Encoder output width `E = 2 * encoder_hidden`.
    pub fn encoder_dim(&self) -> usize {
        2 * self.encoder_hidden
    }

    /// Checks sizes and indices; every error names the field.
    pub fn validate(&self) -> Result<(), ModelError> {
        let bad = |field: &'static str, why: String| Err(ModelError::Config { field, why });
        if self.vocab_size < 2 {
            return bad(
                "vocab_size",
                format!("{} must be at least 2", self.vocab_size),
            );
        }
        if self.blank >= self.vocab_size {
            return bad(
                "blank",
                format!(
                    "{} must be below vocab_size {}",
                    self.blank, self.vocab_size
                ),
            );
        }
        if self.variant == Variant::Fent && self.blank != 0 {
            return bad(
                "blank",
                format!("FENT puts blank first; got {}", self.blank),
            );
        }
        if self.num_emotions < 2 {
            return bad(
                "num_emotions",
                format!("{} must be at least 2", self.num_emotions),
            );
        }
        if self.neutral >= self.num_emotions {
            return bad(
                "neutral",
                format!(
                    "{} must be below num_emotions {}",
                    self.neutral, self.num_emotions
                ),
            );
        }
        for (field, v) in [
            ("encoder_hidden", self.encoder_hidden),
            ("predictor_embed", self.predictor_embed),
            ("predictor_hidden", self.predictor_hidden),
            ("joint_dim", self.joint_dim),
        ] {
            if v == 0 {
                return bad(field, "must be positive".into());
            }
        }
        if !(0.0..1.0).contains(&self.predictor_dropout) {
            return bad(
                "predictor_dropout",
                format!("{} must be in [0, 1)", self.predictor_dropout),
            );
        }
        match &self.front_end {
            FrontEnd::Backbone { layers, dim } => {
                if *layers == 0 || *dim == 0 {
                    return bad(
                        "front_end",
                        format!("backbone layers {layers} and dim {dim} must be positive"),
                    );
                }
            }
            FrontEnd::Fbank {
                num_mel_bins,
                conv_channels,
                dim,
                layers,
                encoder,
                dropout,
            } => {
                if *num_mel_bins < 7 || *conv_channels == 0 || *dim == 0 {
                    return bad(
                        "front_end",
                        format!(
                            "num_mel_bins {num_mel_bins} (at least 7), conv_channels {conv_channels} and dim {dim} must be positive"
                        ),
                    );
                }
                if !(0.0..1.0).contains(dropout) {
                    return bad("front_end.dropout", format!("{dropout} must be in [0, 1)"));
                }
                let _ = layers;
                match encoder {
                    FbankEncoder::Lstm => {
                        if dim % 2 != 0 {
                            return bad(
                                "front_end.dim",
                                format!("{dim} must be even for a bidirectional LSTM"),
                            );
                        }
                    }
                    FbankEncoder::Conformer {
                        heads,
                        ff_dim,
                        kernel,
                    } => {
                        if *heads == 0 || dim % heads != 0 {
                            return bad(
                                "front_end.encoder.heads",
                                format!("dim {dim} must divide by {heads} heads"),
                            );
                        }
                        if *ff_dim == 0 || kernel % 2 == 0 {
                            return bad(
                                "front_end.encoder",
                                format!("ff_dim {ff_dim} must be positive and kernel {kernel} odd"),
                            );
                        }
                    }
                }
            }
        }
        if let HeadConfig::CtaRnn {
            attention_dim,
            rnn_hidden,
        } = self.head
            && (attention_dim == 0 || rnn_hidden == 0)
        {
            return bad(
                "head",
                "attention_dim and rnn_hidden must be positive".into(),
            );
        }
        Ok(())
    }
}
