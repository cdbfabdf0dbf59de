//! What the model reads and gives, and what its loss takes.

use candle_core::Tensor;
use ent_lattice::{NeutralTerm, PoolMode};
use serde::{Deserialize, Serialize};

#[allow(unused_imports, reason = "named in the documentation")]
use crate::config::FrontEnd;

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

impl<'a> Targets<'a> {
    /// Transcripts and utterance emotions, no auxiliary or frame labels.
    pub fn new(tokens: &'a Tensor, token_lens: &'a [usize], emotions: &'a [u32]) -> Self {
        Targets {
            tokens,
            token_lens,
            emotions,
            intensity: &[],
            gender: &[],
            frame_emotions: &[],
        }
    }

    /// With intensity and gender labels for the auxiliary heads.
    pub fn with_aux(self, intensity: &'a [Option<f32>], gender: &'a [Option<u32>]) -> Self {
        Targets {
            intensity,
            gender,
            ..self
        }
    }

    /// With emotion classes per encoder frame, for the frame loss.
    pub fn with_frame_emotions(self, frame_emotions: &'a [Option<Vec<u32>>]) -> Self {
        Targets {
            frame_emotions,
            ..self
        }
    }
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
