//! Plots: emotion timelines and confusion matrices as SVG.
//!
//! All plots are drawn with plotters' SVG backend in pixel coordinates (no
//! chart/mesh machinery), so the layout is exact and needs no font files: the
//! SVG backend writes `<text>` elements and leaves glyph rendering to the
//! viewer. Text widths are estimated (about 0.6 em per Latin character, 1 em
//! per CJK character) to lay labels out without overlaps.
//!
//! * [`emotion_timeline`]: one utterance's decoded emotion per encoder frame
//!   as a coloured band, the reference segments as a second band, per-class
//!   probability curves above, and the emitted tokens (grouped into words)
//!   at their emission times along a time axis in seconds; for a long recording, a fixed-width
//!   summary with a time axis in minutes.
//! * [`confusion_matrix`]: a reference × hypothesis heat map shaded by the
//!   row-normalised value, each cell printing its count and row percentage.
//!
//! Inputs are checked up front; every inconsistency is a [`PlotError`] naming
//! what is wrong, never a panic. Files are written atomically
//! (`ent_common::fs::write_atomic`), creating parent folders.

use std::path::{Path, PathBuf};

/// Why a plot could not be drawn.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum PlotError {
    /// The inputs are inconsistent.
    #[error("{0}")]
    Invalid(String),
    /// The SVG backend failed.
    #[error("{0}")]
    Draw(String),
    /// The file could not be written.
    #[error("writing plot {path}: {why}")]
    Write {
        /// The plot's file.
        path: PathBuf,
        /// What went wrong.
        why: String,
    },
}

type PlotResult<T> = Result<T, PlotError>;

/// Returns a [`PlotError::Invalid`] with a formatted message.
macro_rules! invalid {
    ($($t:tt)+) => {
        return Err(PlotError::Invalid(format!($($t)+)))
    };
}

/// Returns a [`PlotError::Invalid`] unless the condition holds.
macro_rules! ensure {
    ($c:expr, $($t:tt)+) => {
        if !$c {
            invalid!($($t)+)
        }
    };
}

mod confusion;
mod long;
mod style;
#[cfg(test)]
mod tests;
mod timeline;

/// One utterance's decoded emotion over time.
#[derive(Debug, Clone)]
pub struct Timeline<'a> {
    /// Title, e.g. the utterance id and the transcript.
    pub title: &'a str,
    /// Seconds per encoder frame (0.02 or 0.04).
    pub frame_shift: f64,
    /// Emotion class index per frame.
    pub frame_emotions: &'a [usize],
    /// Optional per-frame class probabilities, `[frames][K]`.
    pub frame_probs: Option<&'a [Vec<f32>]>,
    /// Class names, K of them (e.g. ["happy", "angry", "sad", "neutral"]).
    pub labels: &'a [String],
    /// Emitted tokens: (text, emission time in seconds, emotion index).
    pub tokens: &'a [(String, f64, usize)],
    /// Optional reference segments (start s, end s, class index), e.g. the labelled emotional interval with neutral around it.
    pub reference: Option<&'a [(f64, f64, usize)]>,
}

/// Recordings longer than this many seconds get the long timeline (see [`emotion_timeline`]).
pub const LONG_SECS: f64 = 180.0;

/// Writes an SVG emotion timeline.
///
/// A recording longer than [`LONG_SECS`] gets a plot 1600 px wide instead, whatever its
/// length: the title with the duration, the legend, the emotion band and the decoder's
/// confidence (the mean top class probability), each pixel column summarising its frames
/// (the most frequent class), and a time axis in minutes; words are left out (the transcript
/// and subtitles have them).
///
/// From top to bottom: the title; a legend (one colour per class); when
/// `frame_probs` is given, a panel with one probability curve (0..1) per
/// class, sampled at frame centres; the "decoded" band with one rectangle per
/// run of equal consecutive frame emotions (the class name is printed inside
/// runs wide enough for it); the "reference" band when given (one rectangle
/// per segment, gaps left white); a marker per emitted token at its emission
/// time, coloured by the token's emotion; the tokens grouped into words (a
/// whitespace/`▁`/`|` token or a token starting with whitespace/`▁` separates
/// words, CJK characters stand alone) and laid out in as many rows as needed
/// to keep them from overlapping (at most four); and the time axis in seconds.
///
/// The plot area is about 160 px per second, widened when the words need
/// more room, at least 800 px wide in all and capped at 20 000 px.
///
/// An empty utterance (no frames) is not an error: it writes a valid plot
/// whose decoded band says "no frames" and whose time axis spans the tokens
/// and reference segments, or one second when there are none.
///
/// Errors: no labels; `frame_shift` not finite and positive; an emotion index
/// (frame, token or reference) not below K; `frame_probs` not as long as
/// `frame_emotions`, a row not K long, or a value not finite; a token time or
/// a reference bound negative or not finite, or a reference segment ending
/// before it starts; and failures to create the folder or write the file.
pub fn emotion_timeline(path: &Path, timeline: &Timeline) -> PlotResult<()> {
    validate_timeline(timeline)?;
    if timeline.frame_emotions.len() as f64 * timeline.frame_shift > LONG_SECS {
        return write_file(path, &long::render(timeline)?);
    }
    let layout = timeline::TimelineLayout::new(timeline);
    let svg = timeline::render_timeline(timeline, &layout)
        .map_err(|e| drawing("emotion timeline", path, e))?;
    write_file(path, &svg)
}

/// Writes an SVG confusion matrix heat map: rows = reference, columns =
/// hypothesis, cell shade by row-normalised value, each cell printing its
/// count and row percentage, axis labels with class names, title.
///
/// A subtitle gives the number of samples, the accuracy (trace / total) and
/// the unweighted average recall (mean of the diagonal row percentages over
/// rows with samples); each row's total is printed at its right. Rows
/// without samples print "–" for their percentages.
///
/// Errors: no labels; `counts` not K rows of K; failures to create the
/// folder or write the file.
pub fn confusion_matrix(
    path: &Path,
    title: &str,
    labels: &[String],
    counts: &[Vec<u64>],
) -> PlotResult<()> {
    validate_confusion(labels, counts)?;
    let layout = confusion::ConfusionLayout::new(title, labels);
    let svg = confusion::render_confusion(labels, counts, &layout)
        .map_err(|e| drawing("confusion matrix", path, e))?;
    write_file(path, &svg)
}

/// A drawing failure, naming the plot.
fn drawing(what: &str, path: &Path, e: PlotError) -> PlotError {
    PlotError::Draw(format!("drawing {what} {}: {e}", path.display()))
}

// Validation

fn validate_labels(labels: &[String]) -> PlotResult<usize> {
    ensure!(
        !labels.is_empty(),
        "no class labels given (need at least one emotion class name)"
    );
    Ok(labels.len())
}

fn validate_timeline(t: &Timeline) -> PlotResult<()> {
    let k = validate_labels(t.labels)?;
    ensure!(
        t.frame_shift.is_finite() && t.frame_shift > 0.0,
        "frame shift must be a positive number of seconds, got {}",
        t.frame_shift
    );
    if let Some((frame, &e)) = t.frame_emotions.iter().enumerate().find(|&(_, &e)| e >= k) {
        invalid!("frame {frame} has emotion index {e}, but there are only {k} classes");
    }
    if let Some(probs) = t.frame_probs {
        ensure!(
            probs.len() == t.frame_emotions.len(),
            "frame probabilities cover {} frames but there are {} frame emotions",
            probs.len(),
            t.frame_emotions.len()
        );
        for (frame, row) in probs.iter().enumerate() {
            ensure!(
                row.len() == k,
                "frame {frame} has {} class probabilities, expected {k} (one per label)",
                row.len()
            );
            if let Some((class, p)) = row.iter().enumerate().find(|(_, p)| !p.is_finite()) {
                invalid!("frame {frame} has a non-finite probability {p} for class {class}");
            }
        }
    }
    for (i, (text, time, e)) in t.tokens.iter().enumerate() {
        ensure!(
            time.is_finite() && *time >= 0.0,
            "token {i} ({text:?}) has emission time {time}, expected a non-negative number of seconds"
        );
        ensure!(
            *e < k,
            "token {i} ({text:?}) has emotion index {e}, but there are only {k} classes"
        );
    }
    if let Some(reference) = t.reference {
        for (i, &(start, end, e)) in reference.iter().enumerate() {
            ensure!(
                start.is_finite() && end.is_finite() && start >= 0.0 && end >= start,
                "reference segment {i} spans {start}..{end} s, expected 0 <= start <= end"
            );
            ensure!(
                e < k,
                "reference segment {i} has class index {e}, but there are only {k} classes"
            );
        }
    }
    Ok(())
}

fn validate_confusion(labels: &[String], counts: &[Vec<u64>]) -> PlotResult<()> {
    let k = validate_labels(labels)?;
    ensure!(
        counts.len() == k,
        "confusion matrix has {} rows but there are {k} labels (expected {k} x {k})",
        counts.len()
    );
    for (r, row) in counts.iter().enumerate() {
        ensure!(
            row.len() == k,
            "confusion matrix row {r} ({}) has {} columns, expected {k}",
            labels[r],
            row.len()
        );
    }
    Ok(())
}

/// Writes `contents` to `path` atomically, creating missing parent folders.
fn write_file(path: &Path, contents: &str) -> PlotResult<()> {
    ent_common::fs::write_atomic(path, contents.as_bytes()).map_err(|e| PlotError::Write {
        path: path.to_path_buf(),
        why: e.to_string(),
    })
}
