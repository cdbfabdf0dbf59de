//! Emotion classification, ASR and emotion-diarization metrics (ENT-SPEC §6).
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
//!
//! Every rate that is undefined on an empty input (no items, no reference words, no
//! utterances) is an `Option`, `None` when undefined; none of these functions returns NaN for
//! well-formed input.

use serde::{Deserialize, Serialize};

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

// ---------------------------------------------------------------------------------------------
// Emotion classification
// ---------------------------------------------------------------------------------------------

/// A confusion matrix over K classes: `counts[reference][hypothesis]`, `K = labels.len()`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Confusion {
    /// Class names, index = class id.
    pub labels: Vec<String>,
    /// `[K][K]` counts, row = reference class, column = hypothesis class.
    pub counts: Vec<Vec<u64>>,
}

/// Scores of one class of a [`Confusion`].
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ClassScores {
    /// The class name.
    pub label: String,
    /// Number of items whose reference is this class (row sum).
    pub support: u64,
    /// Number of items predicted as this class (column sum).
    pub predicted: u64,
    /// `tp / predicted` in percent; 0 when the class was never predicted.
    pub precision: f64,
    /// `tp / support` in percent; 0 when the class never occurs in the reference.
    pub recall: f64,
    /// `2 tp / (support + predicted)` in percent (the harmonic mean of precision and recall);
    /// 0 when both are 0.
    pub f1: f64,
}

impl Confusion {
    /// An all-zero `K x K` matrix over `labels`. An empty label list gives a matrix to which
    /// nothing can be added.
    pub fn new(labels: Vec<String>) -> Self {
        let k = labels.len();
        Self {
            labels,
            counts: vec![vec![0; k]; k],
        }
    }

    /// Number of classes, `labels.len()`.
    pub fn num_classes(&self) -> usize {
        self.labels.len()
    }

    /// Checks that `counts` is `K x K` with `K = labels.len()`. Always true for a matrix made by
    /// [`Confusion::new`]; useful after deserialising one.
    pub fn validate(&self) -> Result<(), MetricError> {
        let k = self.labels.len();
        if self.counts.len() == k && self.counts.iter().all(|row| row.len() == k) {
            Ok(())
        } else {
            Err(MetricError::MalformedConfusion {
                rows: self.counts.len(),
                columns: self.counts.iter().map(Vec::len).collect(),
                classes: k,
            })
        }
    }

    /// Counts one item with reference class `reference` and predicted class `hypothesis`.
    pub fn add(&mut self, reference: usize, hypothesis: usize) -> Result<(), MetricError> {
        let classes = self.labels.len();
        for (role, index) in [("reference", reference), ("hypothesis", hypothesis)] {
            if index >= classes {
                return Err(MetricError::LabelOutOfRange {
                    role,
                    index,
                    classes,
                });
            }
        }
        self.validate()?;
        self.counts[reference][hypothesis] += 1;
        Ok(())
    }

    /// Adds the counts of `other`, which must have the same labels (pooling folds or shards).
    pub fn merge(&mut self, other: &Confusion) -> Result<(), MetricError> {
        if self.labels != other.labels {
            return Err(MetricError::LabelMismatch {
                left: self.labels.clone(),
                right: other.labels.clone(),
            });
        }
        self.validate()?;
        other.validate()?;
        for (row, other_row) in self.counts.iter_mut().zip(&other.counts) {
            for (cell, &other_cell) in row.iter_mut().zip(other_row) {
                *cell += other_cell;
            }
        }
        Ok(())
    }

    /// `counts[r][h]`, 0 outside the matrix (so that a malformed matrix never panics).
    fn cell(&self, reference: usize, hypothesis: usize) -> u64 {
        self.counts
            .get(reference)
            .and_then(|row| row.get(hypothesis))
            .copied()
            .unwrap_or(0)
    }

    /// Row sum: items whose reference is `class`.
    fn support(&self, class: usize) -> u64 {
        (0..self.labels.len()).map(|h| self.cell(class, h)).sum()
    }

    /// Column sum: items predicted as `class`.
    fn predicted(&self, class: usize) -> u64 {
        (0..self.labels.len()).map(|r| self.cell(r, class)).sum()
    }

    /// Total number of items counted.
    pub fn total(&self) -> u64 {
        (0..self.labels.len()).map(|r| self.support(r)).sum()
    }

    /// Number of correctly classified items (the trace).
    pub fn correct(&self) -> u64 {
        (0..self.labels.len()).map(|c| self.cell(c, c)).sum()
    }

    /// Weighted accuracy (WA): `correct / total` in percent; `None` when nothing was counted.
    pub fn wa(&self) -> Option<f64> {
        let total = self.total();
        (total > 0).then(|| 100.0 * self.correct() as f64 / total as f64)
    }

    /// Unweighted accuracy (UA, balanced accuracy): the mean recall, in percent, over the
    /// classes that occur in the reference. Classes absent from the reference (support 0) are
    /// left out of the mean, as in scikit-learn's `balanced_accuracy_score`; `None` when no
    /// class occurs (nothing was counted).
    pub fn ua(&self) -> Option<f64> {
        let recalls: Vec<f64> = (0..self.labels.len())
            .filter_map(|c| {
                let support = self.support(c);
                (support > 0).then(|| self.cell(c, c) as f64 / support as f64)
            })
            .collect();
        mean(&recalls).map(|m| 100.0 * m)
    }

    /// Macro F1 in percent: the mean of the per-class F1 over classes that occur in the
    /// reference or in the hypothesis. A class with neither references nor predictions has an
    /// undefined F1 and is excluded; a class present on one side only has F1 = 0 and is
    /// included. `None` when nothing was counted.
    pub fn macro_f1(&self) -> Option<f64> {
        let f1s: Vec<f64> = self
            .per_class()
            .iter()
            .filter(|s| s.support > 0 || s.predicted > 0)
            .map(|s| s.f1)
            .collect();
        mean(&f1s)
    }

    /// Support, prediction count, precision, recall and F1 (percent) of every class, in label
    /// order. Undefined ratios (a class never predicted, never in the reference) are reported
    /// as 0, as scikit-learn does with `zero_division=0`.
    pub fn per_class(&self) -> Vec<ClassScores> {
        self.labels
            .iter()
            .enumerate()
            .map(|(c, label)| {
                let tp = self.cell(c, c) as f64;
                let support = self.support(c);
                let predicted = self.predicted(c);
                let ratio = |den: u64| {
                    if den == 0 {
                        0.0
                    } else {
                        100.0 * tp / den as f64
                    }
                };
                ClassScores {
                    label: label.clone(),
                    support,
                    predicted,
                    precision: ratio(predicted),
                    recall: ratio(support),
                    f1: if support + predicted == 0 {
                        0.0
                    } else {
                        100.0 * 2.0 * tp / (support + predicted) as f64
                    },
                }
            })
            .collect()
    }
}

fn mean(values: &[f64]) -> Option<f64> {
    (!values.is_empty()).then(|| values.iter().sum::<f64>() / values.len() as f64)
}

// ---------------------------------------------------------------------------------------------
// ASR
// ---------------------------------------------------------------------------------------------

/// Edit-distance counts of a hypothesis against a reference (or sums over a corpus).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErrorCounts {
    /// S: reference tokens replaced by a different token.
    pub substitutions: u64,
    /// D: reference tokens missing from the hypothesis.
    pub deletions: u64,
    /// I: hypothesis tokens with no reference token.
    pub insertions: u64,
    /// N: number of reference tokens.
    pub reference_len: u64,
}

impl ErrorCounts {
    /// `S + D + I`.
    pub fn errors(&self) -> u64 {
        self.substitutions + self.deletions + self.insertions
    }

    /// `(S + D + I) / N` in percent; `None` when N = 0. May exceed 100 (insertions).
    pub fn rate(&self) -> Option<f64> {
        (self.reference_len > 0).then(|| 100.0 * self.errors() as f64 / self.reference_len as f64)
    }

    /// Adds `other` field by field (corpus-level accumulation).
    pub fn add(&mut self, other: ErrorCounts) {
        self.substitutions += other.substitutions;
        self.deletions += other.deletions;
        self.insertions += other.insertions;
        self.reference_len += other.reference_len;
    }
}

/// Minimum edit distance alignment (Levenshtein, unit costs for substitution, deletion and
/// insertion), returning S, D, I with N = `reference.len()`.
///
/// The total `S + D + I` is the Levenshtein distance and does not depend on any tie-break.
/// Among the alignments of minimal total cost this picks one with the fewest insertions plus
/// deletions, i.e. the most substitutions (the preference of Kaldi's `compute-wer` and of
/// sclite). That makes the counts unique: with N reference and M hypothesis tokens,
/// `D - I = N - M`, so the total and `D + I` fix S, D and I.
///
/// Time `O(N M)`, memory `O(M)`.
pub fn align_counts<T: PartialEq>(reference: &[T], hypothesis: &[T]) -> ErrorCounts {
    // Cost of an alignment prefix as (edits, insertions + deletions), compared
    // lexicographically; per-operation costs are sub (1, 0), ins/del (1, 1), match (0, 0).
    // Lexicographic order is compatible with addition, so the row-by-row DP finds the minimum.
    let m = hypothesis.len();
    // prev[j]: cost of aligning reference[..i] with hypothesis[..j]; row i = 0 is j insertions.
    let mut prev: Vec<(u64, u64)> = (0..=m as u64).map(|j| (j, j)).collect();
    let mut cur = vec![(0u64, 0u64); m + 1];
    for (i, r) in reference.iter().enumerate() {
        let i = i as u64 + 1;
        cur[0] = (i, i);
        for (j, h) in hypothesis.iter().enumerate() {
            let diag = if r == h {
                prev[j]
            } else {
                (prev[j].0 + 1, prev[j].1)
            };
            let del = (prev[j + 1].0 + 1, prev[j + 1].1 + 1);
            let ins = (cur[j].0 + 1, cur[j].1 + 1);
            cur[j + 1] = diag.min(del).min(ins);
        }
        std::mem::swap(&mut prev, &mut cur);
    }
    let (edits, indels) = prev[m];
    let n = reference.len() as u64;
    let m = m as u64;
    // D + I = indels and D - I = N - M.
    let deletions = (indels + n).saturating_sub(m) / 2;
    let insertions = indels - deletions;
    ErrorCounts {
        substitutions: edits - indels,
        deletions,
        insertions,
        reference_len: n,
    }
}

/// The characters that scoring maps to spaces (ENT-SPEC §6).
pub const SCORING_PUNCTUATION: [char; 10] = ['[', ']', '.', ',', '?', '!', '-', ':', ';', '"'];

/// Text normalisation for WER/CER: upper-cases (Unicode), maps `[ ] . , ? ! - : ; "` to
/// spaces, collapses runs of whitespace into one space and trims. Apostrophes are kept
/// (`"don't"` -> `"DON'T"`).
pub fn normalize_for_scoring(text: &str) -> String {
    let mapped: String = text
        .to_uppercase()
        .chars()
        .map(|c| {
            if SCORING_PUNCTUATION.contains(&c) {
                ' '
            } else {
                c
            }
        })
        .collect();
    mapped.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// Corpus-level WER and CER accumulators.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize)]
pub struct AsrScores {
    /// Word-level counts summed over the utterances added.
    pub words: ErrorCounts,
    /// Character-level counts summed over the utterances added.
    pub chars: ErrorCounts,
}

impl AsrScores {
    /// Normalises both texts with [`normalize_for_scoring`] and adds their word-level and
    /// character-level counts. Words are the space-separated tokens of the normalised text;
    /// characters are the Unicode scalar values of the normalised text *including* the single
    /// spaces between words (as SpeechBrain and jiwer count them), so `"A B"` has N = 3
    /// characters. An empty reference adds N = 0 and counts every hypothesis token as an
    /// insertion.
    pub fn add(&mut self, reference: &str, hypothesis: &str) {
        let reference = normalize_for_scoring(reference);
        let hypothesis = normalize_for_scoring(hypothesis);
        let ref_words: Vec<&str> = reference.split_whitespace().collect();
        let hyp_words: Vec<&str> = hypothesis.split_whitespace().collect();
        self.words.add(align_counts(&ref_words, &hyp_words));
        let ref_chars: Vec<char> = reference.chars().collect();
        let hyp_chars: Vec<char> = hypothesis.chars().collect();
        self.chars.add(align_counts(&ref_chars, &hyp_chars));
    }

    /// Corpus word error rate in percent; `None` while no reference word was added.
    pub fn wer(&self) -> Option<f64> {
        self.words.rate()
    }

    /// Corpus character error rate in percent; `None` while no reference character was added.
    pub fn cer(&self) -> Option<f64> {
        self.chars.rate()
    }
}

// ---------------------------------------------------------------------------------------------
// Emotion diarization
// ---------------------------------------------------------------------------------------------

/// A labelled time span `[start, end]` in seconds; `label` is a class index.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Segment {
    /// Start time in seconds.
    pub start: f64,
    /// End time in seconds.
    pub end: f64,
    /// Class index.
    pub label: usize,
}

impl Segment {
    /// Length `end - start` in seconds.
    pub fn duration(&self) -> f64 {
        self.end - self.start
    }
}

fn check_positive(name: &'static str, value: f64) -> Result<(), MetricError> {
    if value.is_finite() && value > 0.0 {
        Ok(())
    } else {
        Err(MetricError::InvalidFrameGeometry { name, value })
    }
}

fn check_duration(duration: f64) -> Result<(), MetricError> {
    if duration.is_finite() && duration > 0.0 {
        Ok(())
    } else {
        Err(MetricError::InvalidDuration(duration))
    }
}

/// Checks that every segment has finite bounds with `start <= end`, and that the list is
/// sorted and non-overlapping (`segments[i].end <= segments[i + 1].start`).
fn check_segments(role: &'static str, segments: &[Segment]) -> Result<(), MetricError> {
    for (index, s) in segments.iter().enumerate() {
        if !(s.start.is_finite() && s.end.is_finite() && s.start <= s.end) {
            return Err(MetricError::InvalidSegment {
                role,
                index,
                start: s.start,
                end: s.end,
            });
        }
    }
    for (first, pair) in segments.windows(2).enumerate() {
        let (a, b) = (pair[0], pair[1]);
        if a.end > b.start {
            return Err(MetricError::OverlappingSegments {
                role,
                first,
                first_start: a.start,
                first_end: a.end,
                second: first + 1,
                second_start: b.start,
                second_end: b.end,
            });
        }
    }
    Ok(())
}

/// Merges per-frame labels into segments (the hypothesis of EDER).
///
/// Frame `i` covers `[i * stride, i * stride + window]` (seconds). Runs of consecutive frames
/// with equal labels merge into one segment. Where neighbouring runs of different labels
/// overlap (`window > stride`), the overlap is split equally at its midpoint: the boundary
/// between a run ending at frame `b` and the next run is
/// `((b + 1) * stride + b * stride + window) / 2`. These boundaries increase with `b`, so the
/// output is sorted and non-overlapping even when the window spans many strides, and
/// neighbouring segments share their boundary exactly. With `window == stride` this is the
/// frame edge `(b + 1) * stride`.
///
/// With `window < stride` frames do not touch: every frame stays its own segment (no merging
/// across a gap) and the gaps stay uncovered, so [`eder`] counts them as errors.
///
/// Empty input gives an empty output. Errors when `stride` or `window` is not finite and
/// positive.
pub fn frames_to_segments(
    labels: &[usize],
    stride: f64,
    window: f64,
) -> Result<Vec<Segment>, MetricError> {
    check_positive("stride", stride)?;
    check_positive("window", window)?;
    let start_of = |i: usize| i as f64 * stride;
    if window < stride {
        return Ok(labels
            .iter()
            .enumerate()
            .map(|(i, &label)| Segment {
                start: start_of(i),
                // Clamp so that rounding can never make a frame reach past the next one.
                end: (start_of(i) + window).min(start_of(i + 1)),
                label,
            })
            .collect());
    }
    let mut segments: Vec<Segment> = Vec::new();
    for (i, &label) in labels.iter().enumerate() {
        match segments.last_mut() {
            Some(last) if last.label == label => {}
            Some(last) => {
                // Previous run ends at frame i - 1: split [start(i), start(i-1) + window].
                let boundary = 0.5 * (start_of(i) + start_of(i - 1) + window);
                last.end = boundary;
                segments.push(Segment {
                    start: boundary,
                    end: f64::NAN, // set when the run ends
                    label,
                });
            }
            None => segments.push(Segment {
                start: 0.0,
                end: f64::NAN,
                label,
            }),
        }
    }
    if let Some(last) = segments.last_mut() {
        last.end = start_of(labels.len() - 1) + window;
    }
    Ok(segments)
}

/// The reference of one utterance: `neutral` everywhere in `[0, duration]` except inside the
/// emotional `intervals`, which keep their labels.
///
/// Intervals are clipped to `[0, duration]`; those left empty by clipping are dropped. They
/// must have finite bounds with `start <= end` and be sorted and non-overlapping (touching is
/// fine); otherwise the error names the offending intervals. The output is sorted,
/// contiguous, covers exactly `[0, duration]`, has no zero-length segments, and touching
/// pieces with equal labels are merged (e.g. an interval labelled `neutral`). Errors for a
/// duration that is not finite and positive.
pub fn reference_segments(
    duration: f64,
    intervals: &[Segment],
    neutral: usize,
) -> Result<Vec<Segment>, MetricError> {
    check_duration(duration)?;
    check_segments("interval", intervals)?;
    let mut out: Vec<Segment> = Vec::new();
    let mut push = |start: f64, end: f64, label: usize| {
        if end <= start {
            return;
        }
        match out.last_mut() {
            Some(last) if last.label == label && last.end == start => last.end = end,
            _ => out.push(Segment { start, end, label }),
        }
    };
    let mut cursor = 0.0;
    for interval in intervals {
        let start = interval.start.clamp(0.0, duration);
        let end = interval.end.clamp(0.0, duration);
        if end <= start {
            continue;
        }
        push(cursor, start, neutral);
        push(start, end, interval.label);
        cursor = end;
    }
    push(cursor, duration, neutral);
    Ok(out)
}

/// Emotion diarization error rate of one utterance, a fraction in `[0, 1]`:
/// `1 - (total length of [0, duration] where hypothesis and reference have the same label) /
/// duration`.
///
/// Both lists must be sorted and non-overlapping with finite bounds and `start <= end` (as
/// produced by [`frames_to_segments`] and [`reference_segments`]); otherwise an error names the
/// offending segments. Segments are clipped to `[0, duration]`; parts of `[0, duration]` not
/// covered by the hypothesis (e.g. a hypothesis shorter than the audio) or by the reference
/// count as errors. Errors for a duration that is not finite and positive.
pub fn eder(
    hypothesis: &[Segment],
    reference: &[Segment],
    duration: f64,
) -> Result<f64, MetricError> {
    check_duration(duration)?;
    check_segments("hypothesis", hypothesis)?;
    check_segments("reference", reference)?;
    // Two-pointer sweep over the sorted lists; each step retires the segment ending first.
    let (mut i, mut j) = (0, 0);
    let mut agree = 0.0;
    while i < hypothesis.len() && j < reference.len() {
        let (h, r) = (hypothesis[i], reference[j]);
        if h.label == r.label {
            let start = h.start.max(r.start).max(0.0);
            let end = h.end.min(r.end).min(duration);
            if end > start {
                agree += end - start;
            }
        }
        if h.end <= r.end {
            i += 1;
        } else {
            j += 1;
        }
    }
    // Non-overlapping clipped lists give agree <= duration; clamp away rounding.
    Ok((1.0 - agree / duration).clamp(0.0, 1.0))
}

/// Mean EDER over utterances (ENT-SPEC §6 averages per-utterance EDER).
#[derive(Debug, Clone, Default)]
pub struct EderMean {
    sum: f64,
    count: usize,
}

impl EderMean {
    /// Adds the EDER of one utterance (as returned by [`eder`]).
    pub fn add(&mut self, eder: f64) {
        self.sum += eder;
        self.count += 1;
    }

    /// Mean of the values added; `None` before any.
    pub fn mean(&self) -> Option<f64> {
        (self.count > 0).then(|| self.sum / self.count as f64)
    }

    /// Number of utterances added.
    pub fn count(&self) -> usize {
        self.count
    }
}
