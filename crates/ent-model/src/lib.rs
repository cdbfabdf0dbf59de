//! The Emotion Neural Transducer (ENT) and factorized ENT (FENT) in candle (docs/method.md §2–3).
//!
//! ```text
//! hidden states [L, B, T, D]  (a frozen backbone's, or the filterbank front end's)
//!   -> scalar mix (FENT: an audio and an emotion mix)  -> BiLSTM encoder  h [B, T, E]
//! [blank, y_1 .. y_U] -> predictor(s)                   g [B, U+1, J]
//! ASR joint (h, g) -> [B, T, U+1, V]      emotion joint (h, g) -> [B, T, U+1, K]
//! utterance head: [mean h ; mean g] -> LayerNorm -> Linear -> [B, K]
//! ```
//!
//! Every trainable parameter receives a gradient: on the CPU the joints, linear layers,
//! convolutions, layer norm, softmax and Swish are single ops with hand-written backward passes
//! (candle-nn's fused layer norm and softmax have none), elsewhere differentiable tensor ops;
//! the LSTMs are a sequence-level op with a hand-written backward pass whose cost is linear in
//! the length ([`lstm`]).

mod config;
mod cpu_ops;
mod error;
mod frontend;
pub(crate) mod fused;
mod heads;
pub mod lstm;
mod model;
pub mod nn;

pub use config::{AuxConfig, FbankEncoder, FrontEnd, HeadConfig, ModelConfig, Variant};
/// The pooling options of [`LossConfig`], as `ent-lattice` defines them.
pub use ent_lattice::{NeutralTerm, PoolMode};
pub use error::ModelError;
pub use frontend::FbankFrontEnd;
pub use heads::{CtaRnn, Joint, Predictor, PredictorState, UtteranceHead};
pub use model::{
    AsrLattice, Encoded, Features, FrameUnlabelled, LossConfig, Losses, Model, Output,
    PoolFunction, PoolNodes, Predicted, Targets, attention_pool_loss, linear_softmax_pool_loss,
};
pub use nn::{Mode, SeededVarMap};

/// What the tests reach inside the crate (feature `testing`, which the crate's own tests turn
/// on): the references the single ops are checked against, in plain candle operations that
/// candle differentiates (the LSTM recurrence step by step, the joint, the linear layer, layer
/// norm, softmax, the convolutions, Swish); [`Model::forward_unfused`] is the reference of the
/// whole forward pass.
#[cfg(feature = "testing")]
pub mod testing {
    use candle_core::{Result, Tensor};

    use crate::Joint;
    use crate::nn::{LayerNorm, Linear};

    /// [`Joint::forward`] in candle ops: the `[B, T, U+1, J]` sum, its `tanh` and the logits
    /// all stored.
    pub fn joint_unfused(joint: &Joint, h: &Tensor, g: &Tensor) -> Result<Tensor> {
        joint.forward_candle(h, g)
    }

    /// candle-nn's linear layer with this layer's weight and bias.
    pub fn linear_unfused(linear: &Linear, x: &Tensor) -> Result<Tensor> {
        linear.forward_candle(x)
    }

    /// Layer norm over the last axis in candle ops.
    pub fn layer_norm_unfused(norm: &LayerNorm, x: &Tensor) -> Result<Tensor> {
        norm.forward_candle(x)
    }

    /// Softmax over `dim` in candle ops.
    pub fn softmax_unfused(x: &Tensor, dim: usize) -> Result<Tensor> {
        crate::nn::softmax_candle(x, dim)
    }

    /// The front end's strided 2-D convolution through candle's `conv2d`.
    pub fn conv2d_unfused(
        x: &Tensor,
        w: &Tensor,
        b: Option<&Tensor>,
        stride: usize,
    ) -> Result<Tensor> {
        crate::nn::conv2d_candle(x, w, b, stride)
    }

    /// The conformer's depthwise convolution in candle ops.
    pub fn depthwise_conv_unfused(y: &Tensor, w: &Tensor, b: &Tensor) -> Result<Tensor> {
        crate::nn::depthwise_conv_candle(y, w, b)
    }

    /// Swish, `x sigmoid(x)`, in candle ops.
    pub fn swish_unfused(x: &Tensor) -> Result<Tensor> {
        crate::nn::swish_candle(x)
    }

    /// The LSTM recurrence over `gx` (`[B, T, 4H]`) with `w_hh` in step-wise candle ops.
    pub fn stepwise(
        gx: &Tensor,
        w_hh: &Tensor,
        lens: &[usize],
        reverse: bool,
    ) -> candle_core::Result<Tensor> {
        crate::lstm::stepwise(gx, w_hh, lens, reverse)
    }
}
