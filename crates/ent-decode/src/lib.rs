//! Decoding and scoring for the Emotion Neural Transducer (docs/method.md §5-6).
//!
//! [`search`] turns encoder output into tokens and a per-frame emotion path (greedy or modified
//! beam search); [`decode`] adds what a user reads: token emotions with times, the utterance
//! emotion through the model's head, and diarization segments. [`metrics`] scores it all: WA, UA,
//! macro-F1 and the confusion matrix, WER and CER, and EDER.
//!
//! ```no_run
//! # fn demo(model: &ent_model::Model, enc: &ent_model::Encoded) -> Result<(), ent_decode::DecodeError> {
//! let out = ent_decode::decode(model, enc, &ent_decode::Search::default())?;
//! for seg in &out[0].segments {
//!     println!("{:.2}-{:.2} s: class {}", seg.start, seg.end, seg.label);
//! }
//! # Ok(()) }
//! ```

mod decode;
pub mod metrics;
mod search;

pub use decode::{
    Decoded, TokenEmotion, argmax, decide_stretches, decode, emotions_by_stretch, stretch_starts,
    threshold_emotions, utterance_probs,
};
pub use search::{Hypothesis, Search, search};

/// What can go wrong while decoding.
#[derive(Debug, thiserror::Error)]
pub enum DecodeError {
    /// Inputs that do not fit together (lengths, shapes, parameters).
    #[error("{0}")]
    Input(String),
    /// A tensor operation failed.
    #[error(transparent)]
    Candle(#[from] candle_core::Error),
    /// The model refused its input.
    #[error(transparent)]
    Model(#[from] ent_model::ModelError),
    /// Segmenting the emotion path failed.
    #[error(transparent)]
    Metric(#[from] metrics::MetricError),
}
