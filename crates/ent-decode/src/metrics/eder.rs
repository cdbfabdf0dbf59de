//! Emotion diarization: segments from frames, the reference, EDER.

use serde::{Deserialize, Serialize};

use super::MetricError;

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

/// Mean EDER over utterances (docs/method.md §6 averages per-utterance EDER).
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
