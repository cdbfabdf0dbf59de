//! Emotion classification, ASR and emotion-diarization metrics (docs/method.md §6).
//!
//! - Utterance-level emotion: [`Confusion`] gives WA (accuracy), UA (mean per-class recall) and
//!   macro F1, all in percent.
//! - ASR: [`AsrScores`] accumulates corpus-level word and character edit counts
//!   ([`ErrorCounts`], from [`align_counts`]) on text normalised by [`normalize_for_scoring`];
//!   WER and CER are `sum(S + D + I) / sum(N)` in percent.
//! - Emotion diarization: [`frames_to_segments`] turns per-frame labels into hypothesis
//!   segments, [`reference_segments`] builds the neutral / emotion / neutral reference, [`eder`]
//!   scores one utterance (a fraction in `[0, 1]`, not percent, as in the spec's check value) and
//!   [`EderMean`] averages over utterances.
//! - Token times: [`token_timing`] counts the emitted characters that lie inside their own
//!   sentence's time span ([`TimingCounts::share`]).
//!
//! Every rate that is undefined on an empty input (no items, no reference words, no
//! utterances) is an `Option`, `None` when undefined; none of these functions returns NaN for
//! well-formed input.

mod asr;
mod eder;
mod emotion;
mod timing;

pub use asr::{AsrScores, ErrorCounts, SCORING_PUNCTUATION, align_counts, normalize_for_scoring};
pub use eder::{EderMean, Segment, eder, frames_to_segments, reference_segments};
pub use emotion::{ClassScores, Confusion};
pub use timing::{TimingCounts, token_timing};

/// Errors of the metrics.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum MetricError {
    /// A class index is not below the number of labels.
    #[error("{role} label {index} is out of range for {classes} classes")]
    LabelOutOfRange {
        /// `"reference"` or `"hypothesis"`.
        role: &'static str,
        /// The offending class index.
        index: usize,
        /// The number of classes of the matrix.
        classes: usize,
    },
    /// The `counts` of a [`Confusion`] are not `labels.len()` x `labels.len()` (only possible
    /// for a hand-built or deserialised value).
    #[error("confusion counts have shape {rows} x {columns:?} but there are {classes} labels")]
    MalformedConfusion {
        /// Number of rows of `counts`.
        rows: usize,
        /// Length of each row of `counts`.
        columns: Vec<usize>,
        /// Number of labels.
        classes: usize,
    },
    /// Two confusion matrices with different label lists were merged.
    #[error("cannot merge confusion matrices with labels {left:?} and {right:?}")]
    LabelMismatch {
        /// Labels of the receiving matrix.
        left: Vec<String>,
        /// Labels of the added matrix.
        right: Vec<String>,
    },
    /// An utterance duration that is not finite and positive.
    #[error("duration = {0} must be finite and positive")]
    InvalidDuration(f64),
    /// A frame stride or window that is not finite and positive.
    #[error("frame {name} = {value} must be finite and positive")]
    InvalidFrameGeometry {
        /// `"stride"` or `"window"`.
        name: &'static str,
        /// The offending value.
        value: f64,
    },
    /// A segment whose bounds are not finite or whose end precedes its start.
    #[error("{role} segment {index} [{start}, {end}] must have finite bounds with start <= end")]
    InvalidSegment {
        /// `"hypothesis"`, `"reference"` or `"interval"`.
        role: &'static str,
        /// Position of the segment in its slice.
        index: usize,
        /// Its start in seconds.
        start: f64,
        /// Its end in seconds.
        end: f64,
    },
    /// Two segments of one list that overlap or are out of order.
    #[error(
        "{role} segments {first} [{first_start}, {first_end}] and {second} \
         [{second_start}, {second_end}] overlap or are not sorted by time"
    )]
    OverlappingSegments {
        /// `"hypothesis"`, `"reference"` or `"interval"`.
        role: &'static str,
        /// Index of the earlier segment in the slice.
        first: usize,
        /// Its start in seconds.
        first_start: f64,
        /// Its end in seconds.
        first_end: f64,
        /// Index of the following segment in the slice.
        second: usize,
        /// Its start in seconds.
        second_start: f64,
        /// Its end in seconds.
        second_end: f64,
    },
}
