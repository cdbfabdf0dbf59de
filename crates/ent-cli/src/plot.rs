//! Plots: emotion timelines and confusion matrices as SVG.
//!
//! Both plots are drawn with plotters' SVG backend in pixel coordinates (no
//! chart/mesh machinery), so the layout is exact and needs no font files: the
//! SVG backend writes `<text>` elements and leaves glyph rendering to the
//! viewer. Text widths are estimated (about 0.6 em per Latin character, 1 em
//! per CJK character) to lay labels out without overlaps.
//!
//! * [`emotion_timeline`]: one utterance's decoded emotion per encoder frame
//!   as a coloured band, the reference segments as a second band, per-class
//!   probability curves above, and the emitted tokens (grouped into words)
//!   at their emission times along a time axis in seconds.
//! * [`confusion_matrix`]: a reference × hypothesis heat map shaded by the
//!   row-normalised value, each cell printing its count and row percentage.
//!
//! Inputs are checked up front; every inconsistency is an `anyhow` error
//! naming what is wrong, never a panic. Files are written through a
//! temporary sibling and renamed into place, creating parent folders.

use std::ffi::OsString;
use std::fs;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};

use anyhow::{Context, anyhow, bail, ensure};
use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, Pos, VPos};

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

/// Writes an SVG emotion timeline.
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
pub fn emotion_timeline(path: &Path, timeline: &Timeline) -> anyhow::Result<()> {
    validate_timeline(timeline)?;
    let layout = TimelineLayout::new(timeline);
    let svg = render_timeline(timeline, &layout)
        .with_context(|| format!("drawing emotion timeline {}", path.display()))?;
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
) -> anyhow::Result<()> {
    validate_confusion(labels, counts)?;
    let layout = ConfusionLayout::new(title, labels);
    let svg = render_confusion(labels, counts, &layout)
        .with_context(|| format!("drawing confusion matrix {}", path.display()))?;
    write_file(path, &svg)
}

// ---------------------------------------------------------------------------
// Colours

/// Fixed colours for well-known emotion names (lower case).
fn known_class_color(name: &str) -> Option<RGBColor> {
    let name = name.trim().to_lowercase();
    let color = match name.as_str() {
        "neutral" | "neu" => RGBColor(158, 158, 158),
        "happy" | "hap" | "happiness" | "joy" => RGBColor(240, 190, 20),
        "angry" | "ang" | "anger" => RGBColor(214, 39, 40),
        "sad" | "sadness" => RGBColor(31, 119, 180),
        "excited" | "exc" => RGBColor(255, 127, 14),
        "surprise" | "surprised" | "sur" => RGBColor(227, 119, 194),
        "fear" | "fearful" | "fea" => RGBColor(148, 103, 189),
        "disgust" | "disgusted" | "dis" => RGBColor(44, 160, 44),
        "frustrated" | "fru" => RGBColor(140, 86, 75),
        "contempt" | "con" => RGBColor(188, 189, 34),
        "calm" => RGBColor(23, 190, 207),
        _ => return None,
    };
    Some(color)
}

/// Colours for classes whose names are not known, in order, skipping the
/// ones already taken by known names in the same label set.
const PALETTE: [RGBColor; 12] = [
    RGBColor(44, 160, 44),
    RGBColor(148, 103, 189),
    RGBColor(255, 127, 14),
    RGBColor(23, 190, 207),
    RGBColor(140, 86, 75),
    RGBColor(227, 119, 194),
    RGBColor(188, 189, 34),
    RGBColor(0, 90, 70),
    RGBColor(120, 40, 90),
    RGBColor(90, 90, 200),
    RGBColor(200, 120, 80),
    RGBColor(60, 60, 60),
];

/// One colour per class: fixed for known names (case-insensitive), from
/// [`PALETTE`] otherwise (darker and lighter shades of it past its end).
fn class_colors(labels: &[String]) -> Vec<RGBColor> {
    let known: Vec<Option<RGBColor>> = labels.iter().map(|l| known_class_color(l)).collect();
    let taken: Vec<RGBColor> = known.iter().flatten().copied().collect();
    let free: Vec<RGBColor> = PALETTE
        .iter()
        .copied()
        .filter(|c| !taken.contains(c))
        .collect();
    let mut next = 0usize;
    known
        .into_iter()
        .map(|k| {
            k.unwrap_or_else(|| {
                let round = next / free.len();
                let base = free[next % free.len()];
                next += 1;
                // Later rounds: blend towards black and white alternately,
                // further each time (distinct for about seven rounds).
                let (target, amount) = match round {
                    0 => (0.0, 0.0),
                    r => (
                        if r % 2 == 1 { 0.0 } else { 255.0 },
                        (0.3 + 0.2 * ((r - 1) / 2) as f64).min(0.8),
                    ),
                };
                let mix = |v: u8| (f64::from(v) * (1.0 - amount) + target * amount).round() as u8;
                RGBColor(mix(base.0), mix(base.1), mix(base.2))
            })
        })
        .collect()
}

/// Black or white, whichever reads better on `background`.
fn text_color_on(background: RGBColor) -> RGBColor {
    let luma = 0.299 * f64::from(background.0)
        + 0.587 * f64::from(background.1)
        + 0.114 * f64::from(background.2);
    if luma > 150.0 { BLACK } else { WHITE }
}

const GRID: RGBColor = RGBColor(225, 225, 225);
const FRAME: RGBColor = RGBColor(170, 170, 170);
const MUTED: RGBColor = RGBColor(110, 110, 110);

// ---------------------------------------------------------------------------
// Text

const FONT: &str = "sans-serif";
/// plotters' SVG backend writes `font-size` as the style size / 1.24.
const FONT_SCALE: f64 = 1.24;

fn font(px: f64, color: &RGBColor, h: HPos, v: VPos) -> TextStyle<'static> {
    (FONT, px * FONT_SCALE)
        .into_font()
        .color(color)
        .pos(Pos::new(h, v))
}

fn bold(px: f64, color: &RGBColor, h: HPos, v: VPos) -> TextStyle<'static> {
    (FONT, px * FONT_SCALE, FontStyle::Bold)
        .into_font()
        .color(color)
        .pos(Pos::new(h, v))
}

/// Whether `c` is drawn about one em wide (CJK, Hangul, full-width forms).
fn is_wide(c: char) -> bool {
    matches!(c as u32,
        0x1100..=0x115F
        | 0x2E80..=0x303E
        | 0x3041..=0x33FF
        | 0x3400..=0x4DBF
        | 0x4E00..=0x9FFF
        | 0xA000..=0xA4CF
        | 0xAC00..=0xD7A3
        | 0xF900..=0xFAFF
        | 0xFE30..=0xFE4F
        | 0xFF00..=0xFF60
        | 0xFFE0..=0xFFE6
        | 0x20000..=0x2FFFD
        | 0x30000..=0x3FFFD)
}

/// Estimated width in px of `text` at font size `px`.
fn text_width(text: &str, px: f64) -> f64 {
    text.chars()
        .map(|c| if is_wide(c) { 1.0 } else { 0.6 })
        .sum::<f64>()
        * px
}

/// `text`, cut with an ellipsis to fit `max_width` px at size `px`.
fn fit_text(text: &str, px: f64, max_width: f64) -> String {
    if text_width(text, px) <= max_width {
        return text.to_string();
    }
    let budget = max_width - text_width("…", px);
    let mut out = String::new();
    let mut width = 0.0;
    for c in text.chars() {
        let w = if is_wide(c) { 1.0 } else { 0.6 } * px;
        if width + w > budget {
            break;
        }
        width += w;
        out.push(c);
    }
    out.push('…');
    out
}

/// `text` broken at spaces into at most `max_lines` lines of `max_width`
/// px at size `px`; the last line is cut with an ellipsis if still too long.
fn wrap_text(text: &str, px: f64, max_width: f64, max_lines: usize) -> Vec<String> {
    let mut lines = Vec::new();
    let mut rest = text.trim();
    while lines.len() + 1 < max_lines && text_width(rest, px) > max_width {
        // The longest prefix ending before a space that fits.
        let cut = rest
            .char_indices()
            .rev()
            .find(|&(i, c)| c == ' ' && text_width(&rest[..i], px) <= max_width)
            .map(|(i, _)| i);
        let Some(cut) = cut.filter(|&i| i > 0) else {
            break;
        };
        lines.push(rest[..cut].trim_end().to_string());
        rest = rest[cut..].trim_start();
    }
    lines.push(fit_text(rest, px, max_width));
    lines
}

/// Title lines: at most two, this far apart.
const TITLE_LINES: usize = 2;
const TITLE_LINE: i32 = 22;

// ---------------------------------------------------------------------------
// Validation

fn validate_labels(labels: &[String]) -> anyhow::Result<usize> {
    ensure!(
        !labels.is_empty(),
        "no class labels given (need at least one emotion class name)"
    );
    Ok(labels.len())
}

fn validate_timeline(t: &Timeline) -> anyhow::Result<()> {
    let k = validate_labels(t.labels)?;
    ensure!(
        t.frame_shift.is_finite() && t.frame_shift > 0.0,
        "frame shift must be a positive number of seconds, got {}",
        t.frame_shift
    );
    if let Some((frame, &e)) = t.frame_emotions.iter().enumerate().find(|&(_, &e)| e >= k) {
        bail!("frame {frame} has emotion index {e}, but there are only {k} classes");
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
                bail!("frame {frame} has a non-finite probability {p} for class {class}");
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

fn validate_confusion(labels: &[String], counts: &[Vec<u64>]) -> anyhow::Result<()> {
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

// ---------------------------------------------------------------------------
// Timeline layout

/// Runs of equal consecutive values: (first index, one past the last, value).
fn runs(values: &[usize]) -> Vec<(usize, usize, usize)> {
    let mut out: Vec<(usize, usize, usize)> = Vec::new();
    for (i, &v) in values.iter().enumerate() {
        match out.last_mut() {
            Some(last) if last.2 == v => last.1 = i + 1,
            _ => out.push((i, i + 1, v)),
        }
    }
    out
}

/// Emitted tokens grouped into a word.
#[derive(Debug, Clone, PartialEq)]
struct Word {
    text: String,
    /// Emission time of the first token, seconds.
    start: f64,
}

/// Groups tokens into words: a token that is only whitespace, `▁` or `|`
/// separates words; a token starting with whitespace or `▁` starts a word,
/// one ending with whitespace ends it; CJK characters stand alone.
fn group_words(tokens: &[(String, f64, usize)]) -> Vec<Word> {
    fn is_marker(c: char) -> bool {
        c.is_whitespace() || c == '▁'
    }
    let mut words = Vec::new();
    let mut current: Option<Word> = None;
    for (text, time, _) in tokens {
        let clean = text.trim_matches(|c: char| is_marker(c) || c == '|');
        if clean.is_empty() {
            words.extend(current.take());
            continue;
        }
        if text.starts_with(is_marker) {
            words.extend(current.take());
        }
        let clean = clean.replace('▁', " ");
        if clean.chars().all(is_wide) {
            words.extend(current.take());
            words.push(Word {
                text: clean,
                start: *time,
            });
            continue;
        }
        match current.as_mut() {
            Some(word) => word.text.push_str(&clean),
            None => {
                current = Some(Word {
                    text: clean,
                    start: *time,
                })
            }
        }
        if text.ends_with(is_marker) {
            words.extend(current.take());
        }
    }
    words.extend(current);
    words
}

const MARGIN: i32 = 16;
const LEFT_LABELS: i32 = 96;
const RIGHT_MARGIN: i32 = 28;
const MIN_WIDTH: i32 = 800;
const MAX_PLOT_WIDTH: f64 = 20_000.0;
const BASE_PX_PER_S: f64 = 160.0;
const TITLE_PX: f64 = 17.0;
const LEGEND_PX: f64 = 13.0;
const LEGEND_ROW: i32 = 22;
const SWATCH: i32 = 14;
const PROBS_HEIGHT: i32 = 150;
const BAND_HEIGHT: i32 = 28;
const BAND_GAP: i32 = 6;
const MARKER_HEIGHT: i32 = 8;
const WORD_PX: f64 = 13.0;
const WORD_ROW: i32 = 18;
const WORD_GAP: f64 = 8.0;
const MAX_WORD_ROWS: usize = 4;
const TICK_PX: f64 = 12.0;

/// A word with its place: left x in px and row.
#[derive(Debug, Clone)]
struct PlacedWord {
    text: String,
    x: i32,
    row: usize,
}

/// Pixel layout of a timeline, computed before drawing (tests use it too).
#[derive(Debug, Clone)]
struct TimelineLayout {
    width: u32,
    height: u32,
    /// Time axis span, seconds (at least the frames, tokens and reference).
    duration: f64,
    plot_left: i32,
    plot_width: i32,
    px_per_s: f64,
    title: Vec<String>,
    /// (x, y top, class) per legend entry.
    legend: Vec<(i32, i32, usize)>,
    probs_top: Option<i32>,
    decoded_top: i32,
    reference_top: Option<i32>,
    marker_top: i32,
    words_top: i32,
    words: Vec<PlacedWord>,
    axis_y: i32,
}

impl TimelineLayout {
    fn new(t: &Timeline) -> Self {
        let frames_end = t.frame_emotions.len() as f64 * t.frame_shift;
        let tokens_end = t.tokens.iter().map(|x| x.1).fold(0.0, f64::max);
        let reference_end = t
            .reference
            .unwrap_or(&[])
            .iter()
            .map(|x| x.1)
            .fold(0.0, f64::max);
        let mut duration = frames_end.max(tokens_end).max(reference_end);
        if duration <= 0.0 {
            duration = 1.0;
        }

        // Width: base scale, widened so the words fit in about two rows.
        let words = group_words(t.tokens);
        let words_width: f64 = words
            .iter()
            .map(|w| text_width(&w.text, WORD_PX) + WORD_GAP)
            .sum();
        let px_per_s = BASE_PX_PER_S.max(words_width / (2.0 * duration));
        let min_plot = f64::from(MIN_WIDTH - LEFT_LABELS - RIGHT_MARGIN - MARGIN);
        let plot_width = (duration * px_per_s)
            .clamp(min_plot, MAX_PLOT_WIDTH)
            .round();
        let px_per_s = plot_width / duration;
        let plot_left = MARGIN + LEFT_LABELS;
        let plot_width = plot_width as i32;
        let width = plot_left + plot_width + RIGHT_MARGIN;

        let title = wrap_text(
            t.title,
            TITLE_PX,
            f64::from(width - 2 * MARGIN),
            TITLE_LINES,
        );
        let mut y = MARGIN + title.len() as i32 * TITLE_LINE + 6;

        // Legend, wrapping at the right edge.
        let mut legend = Vec::new();
        let mut x = plot_left;
        for (class, label) in t.labels.iter().enumerate() {
            let entry = SWATCH + 6 + text_width(label, LEGEND_PX).ceil() as i32 + 18;
            if x + entry > width - MARGIN && x > plot_left {
                x = plot_left;
                y += LEGEND_ROW;
            }
            legend.push((x, y, class));
            x += entry;
        }
        y += LEGEND_ROW + 10;

        let probs_top = t.frame_probs.map(|_| {
            let top = y;
            y += PROBS_HEIGHT + 14;
            top
        });
        let decoded_top = y;
        y += BAND_HEIGHT + BAND_GAP;
        let reference_top = t.reference.map(|_| {
            let top = y;
            y += BAND_HEIGHT + BAND_GAP;
            top
        });
        let marker_top = y + 2;
        let words_top = marker_top + MARKER_HEIGHT + 2;

        // Words: greedy rows, first row where the word fits after the last.
        let mut order: Vec<&Word> = words.iter().collect();
        order.sort_by(|a, b| a.start.total_cmp(&b.start));
        let mut row_ends: Vec<f64> = Vec::new();
        let mut placed = Vec::new();
        for word in order {
            let x = f64::from(plot_left) + word.start * px_per_s;
            let w = text_width(&word.text, WORD_PX);
            let row = match row_ends.iter().position(|&end| end + WORD_GAP <= x) {
                Some(r) => r,
                None if row_ends.len() < MAX_WORD_ROWS => {
                    row_ends.push(f64::NEG_INFINITY);
                    row_ends.len() - 1
                }
                None => (0..row_ends.len())
                    .min_by(|&a, &b| row_ends[a].total_cmp(&row_ends[b]))
                    .unwrap_or(0),
            };
            row_ends[row] = x + w;
            placed.push(PlacedWord {
                text: word.text.clone(),
                x: x.round() as i32,
                row,
            });
        }
        let axis_y = words_top + row_ends.len() as i32 * WORD_ROW + 6;
        let height = axis_y + 8 + 16 + MARGIN;

        TimelineLayout {
            width: width as u32,
            height: height as u32,
            duration,
            plot_left,
            plot_width,
            px_per_s,
            title,
            legend,
            probs_top,
            decoded_top,
            reference_top,
            marker_top,
            words_top,
            words: placed,
            axis_y,
        }
    }

    fn x(&self, seconds: f64) -> i32 {
        (f64::from(self.plot_left) + seconds * self.px_per_s).round() as i32
    }

    fn plot_right(&self) -> i32 {
        self.plot_left + self.plot_width
    }

    /// y of probability `p` in the probability panel starting at `top`.
    fn prob_y(top: i32, p: f64) -> i32 {
        (f64::from(top) + (1.0 - p.clamp(0.0, 1.0)) * f64::from(PROBS_HEIGHT)).round() as i32
    }

    /// Time ticks: a round step at least 70 px apart.
    fn ticks(&self) -> (f64, Vec<f64>) {
        const STEPS: [f64; 14] = [
            0.1, 0.2, 0.5, 1.0, 2.0, 5.0, 10.0, 15.0, 30.0, 60.0, 120.0, 300.0, 600.0, 1800.0,
        ];
        let mut step = STEPS
            .iter()
            .copied()
            .find(|s| s * self.px_per_s >= 70.0)
            .unwrap_or(3600.0);
        while step * self.px_per_s < 70.0 {
            step *= 2.0;
        }
        let count = (self.duration / step + 1e-9).floor() as usize;
        (step, (0..=count).map(|i| i as f64 * step).collect())
    }
}

type DrawResult = anyhow::Result<()>;

/// Maps plotters' drawing errors (generic over the backend) into anyhow.
fn drawn<E: std::fmt::Display>(r: Result<(), E>) -> DrawResult {
    r.map_err(|e| anyhow!("{e}"))
}

/// An SVG page on a white background, drawn with three primitives.
struct Page<'a> {
    root: DrawingArea<SVGBackend<'a>, plotters::coord::Shift>,
}

impl Page<'_> {
    fn text(&self, s: &str, pos: (i32, i32), style: TextStyle<'static>) -> DrawResult {
        drawn(self.root.draw(&Text::new(s.to_string(), pos, style)))
    }

    fn line(&self, points: Vec<(i32, i32)>, color: RGBColor, width: u32) -> DrawResult {
        drawn(
            self.root
                .draw(&PathElement::new(points, color.stroke_width(width))),
        )
    }

    fn rect(&self, a: (i32, i32), b: (i32, i32), color: RGBColor) -> DrawResult {
        drawn(self.root.draw(&Rectangle::new([a, b], color.filled())))
    }

    /// One segment of a timeline band: a block from `x0` to `x1` (at least a pixel wide) in
    /// the class colour, with the class name centred in it when it fits.
    fn band_block(
        &self,
        (x0, x1): (i32, i32),
        top: i32,
        color: RGBColor,
        name: &str,
    ) -> DrawResult {
        self.rect((x0, top), (x1.max(x0 + 1), top + BAND_HEIGHT), color)?;
        if f64::from(x1 - x0) >= text_width(name, 12.0) + 10.0 {
            self.text(
                name,
                ((x0 + x1) / 2, top + BAND_HEIGHT / 2),
                font(12.0, &text_color_on(color), HPos::Center, VPos::Center),
            )?;
        }
        Ok(())
    }
}

/// Draws a `width` x `height` page with `draw` and returns the SVG text.
fn render_svg(
    width: u32,
    height: u32,
    draw: impl FnOnce(&Page<'_>) -> DrawResult,
) -> anyhow::Result<String> {
    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, (width, height)).into_drawing_area();
        drawn(root.fill(&WHITE))?;
        let page = Page { root };
        draw(&page)?;
        drawn(page.root.present())?;
    }
    Ok(svg)
}

fn render_timeline(t: &Timeline, l: &TimelineLayout) -> anyhow::Result<String> {
    let colors = class_colors(t.labels);
    render_svg(l.width, l.height, |page| {
        let outline = |x0: i32, y0: i32, x1: i32, y1: i32| {
            page.line(
                vec![(x0, y0), (x1, y0), (x1, y1), (x0, y1), (x0, y0)],
                FRAME,
                1,
            )
        };
        let left_label = |s: &str, y: i32| {
            page.text(
                s,
                (l.plot_left - 8, y),
                font(12.0, &MUTED, HPos::Right, VPos::Center),
            )
        };

        for (i, title) in l.title.iter().enumerate() {
            page.text(
                title,
                (MARGIN, MARGIN + i as i32 * TITLE_LINE),
                bold(TITLE_PX, &BLACK, HPos::Left, VPos::Top),
            )?;
        }
        for &(x, y, class) in &l.legend {
            page.rect((x, y + 2), (x + SWATCH, y + 2 + SWATCH), colors[class])?;
            page.text(
                &t.labels[class],
                (x + SWATCH + 6, y + 2 + SWATCH / 2),
                font(LEGEND_PX, &BLACK, HPos::Left, VPos::Center),
            )?;
        }

        let (step, ticks) = l.ticks();
        let decimals = if step < 1.0 { 1 } else { 0 };

        if let (Some(top), Some(probs)) = (l.probs_top, t.frame_probs) {
            let bottom = top + PROBS_HEIGHT;
            for &tick in &ticks {
                page.line(vec![(l.x(tick), top), (l.x(tick), bottom)], GRID, 1)?;
            }
            for p in [0.25, 0.5, 0.75] {
                let y = TimelineLayout::prob_y(top, p);
                page.line(vec![(l.plot_left, y), (l.plot_right(), y)], GRID, 1)?;
            }
            for (p, s) in [(0.0, "0"), (0.5, "0.5"), (1.0, "1")] {
                let y = TimelineLayout::prob_y(top, p);
                page.text(
                    s,
                    (l.plot_left - 6, y),
                    font(11.0, &MUTED, HPos::Right, VPos::Center),
                )?;
            }
            page.text(
                "probability",
                (MARGIN + 10, top + PROBS_HEIGHT / 2),
                font(12.0, &MUTED, HPos::Center, VPos::Center).transform(FontTransform::Rotate270),
            )?;
            outline(l.plot_left, top, l.plot_right(), bottom)?;
            for (class, &color) in colors.iter().enumerate() {
                let points: Vec<(i32, i32)> = probs
                    .iter()
                    .enumerate()
                    .map(|(i, row)| {
                        let time = (i as f64 + 0.5) * t.frame_shift;
                        (
                            l.x(time),
                            TimelineLayout::prob_y(top, f64::from(row[class])),
                        )
                    })
                    .collect();
                if points.len() >= 2 {
                    page.line(points, color, 2)?;
                }
            }
        }

        // Decoded band: one rectangle per run of equal frame emotions.
        let top = l.decoded_top;
        left_label("decoded", top + BAND_HEIGHT / 2)?;
        for (start, end, class) in runs(t.frame_emotions) {
            let x0 = l.x(start as f64 * t.frame_shift);
            let x1 = l.x(end as f64 * t.frame_shift);
            page.band_block((x0, x1), top, colors[class], &t.labels[class])?;
        }
        if t.frame_emotions.is_empty() {
            page.text(
                "no frames",
                (l.plot_left + 8, top + BAND_HEIGHT / 2),
                font(12.0, &MUTED, HPos::Left, VPos::Center),
            )?;
        }
        outline(l.plot_left, top, l.plot_right(), top + BAND_HEIGHT)?;

        // Reference band: one rectangle per segment.
        if let (Some(top), Some(reference)) = (l.reference_top, t.reference) {
            left_label("reference", top + BAND_HEIGHT / 2)?;
            for &(start, end, class) in reference {
                page.band_block((l.x(start), l.x(end)), top, colors[class], &t.labels[class])?;
            }
            outline(l.plot_left, top, l.plot_right(), top + BAND_HEIGHT)?;
        }

        // Tokens: a marker per emitted token, then the words.
        if !t.tokens.is_empty() {
            left_label("tokens", l.words_top + WORD_ROW / 2)?;
        }
        for (token, time, class) in t.tokens {
            if token
                .trim_matches(|c: char| c.is_whitespace() || c == '▁' || c == '|')
                .is_empty()
            {
                continue;
            }
            let x = l.x(*time);
            page.line(
                vec![(x, l.marker_top), (x, l.marker_top + MARKER_HEIGHT)],
                colors[*class],
                2,
            )?;
        }
        for word in &l.words {
            let y = l.words_top + word.row as i32 * WORD_ROW + WORD_ROW / 2;
            page.text(
                &word.text,
                (word.x, y),
                font(WORD_PX, &BLACK, HPos::Left, VPos::Center),
            )?;
        }

        // Time axis.
        let y = l.axis_y;
        page.line(vec![(l.plot_left, y), (l.plot_right(), y)], BLACK, 1)?;
        for &tick in &ticks {
            let x = l.x(tick);
            page.line(vec![(x, y), (x, y + 5)], BLACK, 1)?;
            page.text(
                &format!("{tick:.decimals$}"),
                (x, y + 8),
                font(TICK_PX, &BLACK, HPos::Center, VPos::Top),
            )?;
        }
        page.text(
            "time (s)",
            (l.plot_left - 20, y + 8 + 7),
            font(12.0, &MUTED, HPos::Right, VPos::Center),
        )?;
        Ok(())
    })
}

// ---------------------------------------------------------------------------
// Confusion matrix

const CELL_MIN: f64 = 76.0;
const CELL_MAX: f64 = 160.0;
const CLASS_PX: f64 = 13.0;

/// Pixel layout of a confusion matrix.
#[derive(Debug, Clone)]
struct ConfusionLayout {
    width: u32,
    height: u32,
    title: Vec<String>,
    /// Top of the summary line under the title.
    summary_y: i32,
    cell: i32,
    grid_left: i32,
    grid_top: i32,
    /// Class names as printed (cut to fit a cell / the row label column).
    names: Vec<String>,
}

impl ConfusionLayout {
    fn new(title: &str, labels: &[String]) -> Self {
        let k = labels.len() as i32;
        let widest = labels
            .iter()
            .map(|l| text_width(l, CLASS_PX))
            .fold(0.0, f64::max);
        let cell = (widest + 14.0).clamp(CELL_MIN, CELL_MAX);
        let names: Vec<String> = labels
            .iter()
            .map(|l| fit_text(l, CLASS_PX, cell - 10.0))
            .collect();
        let name_width = names
            .iter()
            .map(|n| text_width(n, CLASS_PX))
            .fold(0.0, f64::max)
            .ceil() as i32;
        let cell = cell as i32;
        // Axis title column, swatch, row names.
        let grid_left = MARGIN + 24 + 12 + 6 + name_width + 10;
        let totals_width = 90;
        let grid_width = grid_left + k * cell + totals_width;
        let title_width = (text_width(title, TITLE_PX) + 2.0 * f64::from(MARGIN)).ceil() as i32;
        let width = grid_width.max(title_width.min(720)).max(360);
        let title = wrap_text(title, TITLE_PX, f64::from(width - 2 * MARGIN), TITLE_LINES);
        let summary_y = MARGIN + title.len() as i32 * TITLE_LINE + 6;
        let grid_top = summary_y + 22 + 22 + 22;
        let height = grid_top + k * cell + 12 + 20 + MARGIN;
        ConfusionLayout {
            width: width as u32,
            height: height as u32,
            title,
            summary_y,
            cell,
            grid_left,
            grid_top,
            names,
        }
    }
}

/// Cell shade for a row-normalised value in 0..1: white to dark blue.
fn shade(v: f64) -> RGBColor {
    let v = v.clamp(0.0, 1.0);
    let mix = |a: f64, b: f64| (a + (b - a) * v).round() as u8;
    RGBColor(mix(247.0, 8.0), mix(251.0, 48.0), mix(255.0, 107.0))
}

fn percent(part: u64, total: u64) -> Option<f64> {
    (total > 0).then(|| 100.0 * part as f64 / total as f64)
}

fn render_confusion(
    labels: &[String],
    counts: &[Vec<u64>],
    l: &ConfusionLayout,
) -> anyhow::Result<String> {
    let colors = class_colors(labels);
    let k = labels.len();
    let totals: Vec<u64> = counts.iter().map(|row| row.iter().sum()).collect();
    let total: u64 = totals.iter().sum();
    let correct: u64 = (0..k).map(|i| counts[i][i]).sum();
    let recalls: Vec<f64> = (0..k)
        .filter_map(|i| percent(counts[i][i], totals[i]))
        .collect();
    let summary = match percent(correct, total) {
        Some(accuracy) => format!(
            "n = {total} · accuracy {accuracy:.1}% · unweighted average recall {:.1}%",
            recalls.iter().sum::<f64>() / recalls.len() as f64
        ),
        None => "n = 0 (no samples)".to_string(),
    };

    render_svg(l.width, l.height, |page| {
        for (i, title) in l.title.iter().enumerate() {
            page.text(
                title,
                (MARGIN, MARGIN + i as i32 * TITLE_LINE),
                bold(TITLE_PX, &BLACK, HPos::Left, VPos::Top),
            )?;
        }
        page.text(
            &summary,
            (MARGIN, l.summary_y),
            font(13.0, &MUTED, HPos::Left, VPos::Top),
        )?;

        let c = l.cell;
        let (gl, gt) = (l.grid_left, l.grid_top);
        let kk = k as i32;
        let grid_right = gl + kk * c;
        let grid_bottom = gt + kk * c;

        page.text(
            "hypothesis",
            ((gl + grid_right) / 2, gt - 30),
            bold(13.0, &BLACK, HPos::Center, VPos::Bottom),
        )?;
        page.text(
            "reference",
            (MARGIN + 10, (gt + grid_bottom) / 2),
            bold(13.0, &BLACK, HPos::Center, VPos::Center).transform(FontTransform::Rotate270),
        )?;

        for (i, name) in l.names.iter().enumerate() {
            let i32_i = i as i32;
            // Column header with a colour bar.
            let cx = gl + i32_i * c + c / 2;
            page.text(
                name,
                (cx, gt - 10),
                font(CLASS_PX, &BLACK, HPos::Center, VPos::Bottom),
            )?;
            page.rect(
                (gl + i32_i * c + 4, gt - 6),
                (gl + (i32_i + 1) * c - 4, gt - 3),
                colors[i],
            )?;
            // Row header with a swatch.
            let cy = gt + i32_i * c + c / 2;
            page.text(
                name,
                (gl - 10, cy),
                font(CLASS_PX, &BLACK, HPos::Right, VPos::Center),
            )?;
            page.rect(
                (gl - 6, gt + i32_i * c + 4),
                (gl - 3, gt + (i32_i + 1) * c - 4),
                colors[i],
            )?;
            // Row total.
            page.text(
                &format!("n = {}", totals[i]),
                (grid_right + 8, cy),
                font(12.0, &MUTED, HPos::Left, VPos::Center),
            )?;
        }

        for (r, row) in counts.iter().enumerate() {
            for (col, &count) in row.iter().enumerate() {
                let x0 = gl + col as i32 * c;
                let y0 = gt + r as i32 * c;
                let share = percent(count, totals[r]);
                let fill = shade(share.unwrap_or(0.0) / 100.0);
                page.rect((x0, y0), (x0 + c, y0 + c), fill)?;
                let ink = text_color_on(fill);
                page.text(
                    &count.to_string(),
                    (x0 + c / 2, y0 + c / 2 - 9),
                    bold(15.0, &ink, HPos::Center, VPos::Center),
                )?;
                let share = share.map_or_else(|| "–".to_string(), |p| format!("{p:.1}%"));
                page.text(
                    &share,
                    (x0 + c / 2, y0 + c / 2 + 11),
                    font(12.0, &ink, HPos::Center, VPos::Center),
                )?;
            }
        }
        // Grid lines, and the diagonal outlined.
        for i in 0..=kk {
            page.line(vec![(gl, gt + i * c), (grid_right, gt + i * c)], GRID, 1)?;
            page.line(vec![(gl + i * c, gt), (gl + i * c, grid_bottom)], GRID, 1)?;
        }
        for i in 0..kk {
            let (x0, y0) = (gl + i * c, gt + i * c);
            page.line(
                vec![
                    (x0, y0),
                    (x0 + c, y0),
                    (x0 + c, y0 + c),
                    (x0, y0 + c),
                    (x0, y0),
                ],
                BLACK,
                2,
            )?;
        }
        page.text(
            "cell: count and share of the reference row",
            (gl, grid_bottom + 12),
            font(11.0, &MUTED, HPos::Left, VPos::Top),
        )?;
        Ok(())
    })
}

// ---------------------------------------------------------------------------
// Output

/// Writes `contents` to `path` through a temporary sibling renamed into
/// place, creating missing parent folders.
fn write_file(path: &Path, contents: &str) -> anyhow::Result<()> {
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let name = path
        .file_name()
        .ok_or_else(|| anyhow!("cannot write a plot to {}: no file name", path.display()))?;
    if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
        fs::create_dir_all(parent).with_context(|| {
            format!(
                "creating folder {} for plot {}",
                parent.display(),
                path.display()
            )
        })?;
    }
    let mut tmp_name = OsString::from(".");
    tmp_name.push(name);
    tmp_name.push(format!(
        ".{}-{}.tmp",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed)
    ));
    let tmp = path.with_file_name(tmp_name);
    fs::write(&tmp, contents).with_context(|| format!("writing plot {}", path.display()))?;
    fs::rename(&tmp, path).map_err(|e| {
        let _ = fs::remove_file(&tmp);
        anyhow::Error::new(e).context(format!("writing plot {}", path.display()))
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::PathBuf;

    /// A fresh folder under the system temp dir, removed on drop.
    struct TempDir(PathBuf);

    impl TempDir {
        fn new(tag: &str) -> Self {
            static NEXT: AtomicU64 = AtomicU64::new(0);
            let dir = std::env::temp_dir().join(format!(
                "ent-plot-test-{tag}-{}-{}",
                std::process::id(),
                NEXT.fetch_add(1, Ordering::Relaxed)
            ));
            let _ = fs::remove_dir_all(&dir);
            TempDir(dir)
        }
    }

    impl Drop for TempDir {
        fn drop(&mut self) {
            let _ = fs::remove_dir_all(&self.0);
        }
    }

    fn labels(names: &[&str]) -> Vec<String> {
        names.iter().map(|s| s.to_string()).collect()
    }

    fn tokens(list: &[(&str, f64, usize)]) -> Vec<(String, f64, usize)> {
        list.iter()
            .map(|&(s, t, e)| (s.to_string(), t, e))
            .collect()
    }

    /// An SVG element: name and attributes, and the text inside it.
    #[derive(Debug)]
    struct Element {
        name: String,
        attrs: Vec<(String, String)>,
        text: String,
    }

    impl Element {
        fn attr(&self, key: &str) -> Option<&str> {
            self.attrs
                .iter()
                .find(|(k, _)| k == key)
                .map(|(_, v)| v.as_str())
        }
        fn num(&self, key: &str) -> i64 {
            self.attr(key)
                .and_then(|v| v.parse().ok())
                .unwrap_or(i64::MIN)
        }
    }

    fn unescape(s: &str) -> String {
        s.replace("&lt;", "<")
            .replace("&gt;", ">")
            .replace("&quot;", "\"")
            .replace("&apos;", "'")
            .replace("&amp;", "&")
    }

    /// Parses the SVG as XML (tags balanced, attributes quoted, entities
    /// escaped, a single `<svg>` root) and returns its elements in order.
    fn parse_svg(svg: &str) -> Vec<Element> {
        let mut elements: Vec<Element> = Vec::new();
        let mut stack: Vec<(String, usize)> = Vec::new();
        let mut rest = svg.trim();
        let mut roots = 0;
        while !rest.is_empty() {
            if let Some(after) = rest.strip_prefix("<?") {
                let end = after.find("?>").expect("unterminated declaration");
                rest = after[end + 2..].trim_start();
                continue;
            }
            if let Some(after) = rest.strip_prefix("</") {
                let end = after.find('>').expect("unterminated closing tag");
                let name = after[..end].trim();
                let (open, _) = stack.pop().expect("closing tag without opening");
                assert_eq!(open, name, "mismatched closing tag");
                rest = &after[end + 1..];
                continue;
            }
            if let Some(after) = rest.strip_prefix('<') {
                let end = after.find('>').expect("unterminated tag");
                let mut inner = &after[..end];
                let self_closing = inner.ends_with('/');
                if self_closing {
                    inner = &inner[..inner.len() - 1];
                }
                let name_end = inner.find(char::is_whitespace).unwrap_or(inner.len());
                let name = inner[..name_end].to_string();
                assert!(
                    !name.is_empty() && name.chars().all(|c| c.is_ascii_alphanumeric()),
                    "bad tag name {name:?}"
                );
                let mut attrs = Vec::new();
                let mut a = inner[name_end..].trim();
                while !a.is_empty() {
                    let eq = a.find("=\"").expect("attribute without quoted value");
                    let key = a[..eq].trim().to_string();
                    let value_end = a[eq + 2..].find('"').expect("unterminated attribute");
                    let raw = &a[eq + 2..eq + 2 + value_end];
                    assert!(!raw.contains('<'), "unescaped < in attribute");
                    attrs.push((key, unescape(raw)));
                    a = a[eq + 2 + value_end + 1..].trim();
                }
                if stack.is_empty() {
                    roots += 1;
                    assert_eq!(name, "svg", "root element");
                }
                elements.push(Element {
                    name: name.clone(),
                    attrs,
                    text: String::new(),
                });
                if !self_closing {
                    stack.push((name, elements.len() - 1));
                }
                rest = &after[end + 1..];
                continue;
            }
            let end = rest.find('<').unwrap_or(rest.len());
            let raw = &rest[..end];
            assert!(!raw.contains('>'), "unescaped > in text");
            let owner = stack.last().expect("text outside the root").1;
            elements[owner].text.push_str(unescape(raw).trim());
            rest = &rest[end..];
        }
        assert!(stack.is_empty(), "unclosed tags: {stack:?}");
        assert_eq!(roots, 1, "one root element");
        elements
    }

    fn texts(elements: &[Element]) -> Vec<&str> {
        elements
            .iter()
            .filter(|e| e.name == "text")
            .map(|e| e.text.as_str())
            .collect()
    }

    /// Filled rectangles with their top at `y` and the band height.
    fn band_rects(elements: &[Element], y: i32) -> Vec<&Element> {
        elements
            .iter()
            .filter(|e| {
                e.name == "rect"
                    && e.num("y") == i64::from(y)
                    && e.num("height") == i64::from(BAND_HEIGHT)
                    && e.attr("fill") != Some("none")
            })
            .collect()
    }

    fn color_hex(c: RGBColor) -> String {
        format!("#{:02X}{:02X}{:02X}", c.0, c.1, c.2)
    }

    #[test]
    fn plotters_draws_text_without_font_features() {
        // A chart with a caption and axis labels through plotters' own chart
        // machinery: the SVG backend must emit <text> elements.
        let mut svg = String::new();
        {
            let root = SVGBackend::with_string(&mut svg, (320, 240)).into_drawing_area();
            root.fill(&WHITE).unwrap();
            let mut chart = ChartBuilder::on(&root)
                .caption("Caption here", ("sans-serif", 20))
                .x_label_area_size(30)
                .y_label_area_size(30)
                .build_cartesian_2d(0f64..1f64, 0f64..1f64)
                .unwrap();
            chart
                .configure_mesh()
                .x_desc("seconds")
                .y_desc("probability")
                .draw()
                .unwrap();
            chart
                .draw_series(LineSeries::new([(0.0, 0.0), (1.0, 1.0)], &RED))
                .unwrap();
            root.present().unwrap();
        }
        let elements = parse_svg(&svg);
        let t = texts(&elements);
        for expected in ["Caption here", "seconds", "probability"] {
            assert!(t.contains(&expected), "{expected:?} not in {t:?}");
        }
        assert!(
            t.iter().any(|s| s.starts_with("0.")),
            "tick labels in {t:?}"
        );
    }

    #[test]
    fn long_text_wraps_then_is_cut() {
        let px = 10.0; // 6 px per Latin character
        assert_eq!(wrap_text("short", px, 60.0, 2), vec!["short"]);
        assert_eq!(
            wrap_text("aaaa bbbb cccc dddd", px, 60.0, 2),
            vec!["aaaa bbbb".to_string(), "cccc dddd".to_string()]
        );
        let lines = wrap_text("aaaa bbbb cccc dddd eeee", px, 60.0, 2);
        assert_eq!(lines[0], "aaaa bbbb");
        assert!(
            lines[1].starts_with("cccc") && lines[1].ends_with('…'),
            "{lines:?}"
        );
        assert!(text_width(&lines[1], px) <= 60.0);
        // No space to break at: cut.
        let lines = wrap_text(&"x".repeat(30), px, 60.0, 2);
        assert_eq!(lines.len(), 1);
        assert!(lines[0].ends_with('…') && text_width(&lines[0], px) <= 60.0);
        assert_eq!(fit_text("你好世界", px, 25.0), "你…");
    }

    #[test]
    fn runs_merge_equal_neighbours() {
        assert_eq!(runs(&[]), vec![]);
        assert_eq!(runs(&[2]), vec![(0, 1, 2)]);
        assert_eq!(
            runs(&[3, 3, 3, 0, 0, 1, 3, 3]),
            vec![(0, 3, 3), (3, 5, 0), (5, 6, 1), (6, 8, 3)]
        );
    }

    #[test]
    fn words_group_characters_between_separators() {
        let words = group_words(&tokens(&[
            ("h", 0.1, 0),
            ("i", 0.2, 0),
            (" ", 0.25, 0),
            ("t", 0.4, 1),
            ("h", 0.5, 1),
            ("e", 0.6, 1),
            ("r", 0.7, 1),
            ("e", 0.8, 1),
            ("|", 0.85, 1),
            ("▁you", 1.0, 2),
            ("th", 1.1, 2),
            ("▁a", 1.2, 2),
            (" b", 1.3, 2),
            ("c ", 1.4, 2),
            ("d", 1.5, 2),
        ]));
        let got: Vec<(&str, f64)> = words.iter().map(|w| (w.text.as_str(), w.start)).collect();
        assert_eq!(
            got,
            vec![
                ("hi", 0.1),
                ("there", 0.4),
                ("youth", 1.0),
                ("a", 1.2),
                ("bc", 1.3),
                ("d", 1.5)
            ]
        );
        // CJK characters stand alone.
        let words = group_words(&tokens(&[("你", 0.1, 0), ("好", 0.2, 0), ("ok", 0.3, 0)]));
        let got: Vec<&str> = words.iter().map(|w| w.text.as_str()).collect();
        assert_eq!(got, vec!["你", "好", "ok"]);
    }

    #[test]
    fn colours_fixed_for_known_names_and_distinct_otherwise() {
        let c = class_colors(&labels(&["Happy", "ANG", "sad", "neu", "bored", "awe"]));
        assert_eq!(c[0], RGBColor(240, 190, 20));
        assert_eq!(c[1], RGBColor(214, 39, 40));
        assert_eq!(c[2], RGBColor(31, 119, 180));
        assert_eq!(c[3], RGBColor(158, 158, 158));
        assert_eq!(class_colors(&labels(&["neutral"]))[0], c[3]);
        assert_eq!(class_colors(&labels(&["HAPPY"]))[0], c[0]);
        // Unknown names get palette colours distinct from each other and
        // from the known ones in the same set, even past the palette's length.
        let mut many = labels(&["Happy", "ANG", "sad", "neu", "disgust", "fear"]);
        many.extend((0..40).map(|i| format!("class{i}")));
        let all = class_colors(&many);
        for i in 0..all.len() {
            for j in i + 1..all.len() {
                assert_ne!(all[i], all[j], "colours {i} and {j}");
            }
        }
        // A known name takes its colour out of the palette for the others.
        let c = class_colors(&labels(&["disgust", "other"]));
        assert_ne!(c[0], c[1]);
    }

    fn sample_labels() -> Vec<String> {
        labels(&["happy", "angry", "sad", "neutral"])
    }

    #[test]
    fn timeline_has_bands_legend_curves_and_words() {
        let dir = TempDir::new("timeline");
        // Nested folders that do not exist yet.
        let path = dir.0.join("a/b/utt.svg");
        let labels = sample_labels();
        let frames = [3, 3, 3, 0, 0, 0, 0, 1, 1, 3, 3];
        let probs: Vec<Vec<f32>> = frames
            .iter()
            .map(|&e| (0..4).map(|k| if k == e { 0.7 } else { 0.1 }).collect())
            .collect();
        let toks = tokens(&[
            ("h", 0.08, 0),
            ("i", 0.10, 0),
            (" ", 0.12, 3),
            ("y", 0.30, 1),
            ("o", 0.32, 1),
        ]);
        let reference = [(0.0, 0.1, 3), (0.1, 0.3, 0), (0.3, 0.44, 3)];
        let t = Timeline {
            title: "utt<1> & \"hi yo\"",
            frame_shift: 0.04,
            frame_emotions: &frames,
            frame_probs: Some(&probs),
            labels: &labels,
            tokens: &toks,
            reference: Some(&reference),
        };
        emotion_timeline(&path, &t).unwrap();
        let svg = fs::read_to_string(&path).unwrap();
        let elements = parse_svg(&svg);
        let layout = TimelineLayout::new(&t);
        assert_eq!(elements[0].num("width"), i64::from(layout.width));
        assert!(layout.width >= 800);

        let text = texts(&elements);
        assert!(text.contains(&"utt<1> & \"hi yo\""), "title in {text:?}");
        for name in &labels {
            assert!(text.contains(&name.as_str()), "{name} in {text:?}");
        }
        for word in [
            "hi",
            "yo",
            "decoded",
            "reference",
            "probability",
            "time (s)",
        ] {
            assert!(text.contains(&word), "{word:?} in {text:?}");
        }
        // Characters were grouped: no single-letter labels.
        assert!(!text.contains(&"h") && !text.contains(&"y"), "{text:?}");

        // One band rectangle per run, coloured by class.
        let colors = class_colors(&labels);
        let decoded = band_rects(&elements, layout.decoded_top);
        let fills: Vec<&str> = decoded.iter().map(|r| r.attr("fill").unwrap()).collect();
        let expected: Vec<String> = [3, 0, 1, 3].iter().map(|&k| color_hex(colors[k])).collect();
        assert_eq!(fills, expected);
        // The runs tile the plot area without gaps.
        let xs: Vec<(i64, i64)> = decoded
            .iter()
            .map(|r| (r.num("x"), r.num("x") + r.num("width")))
            .collect();
        for pair in xs.windows(2) {
            assert_eq!(pair[0].1, pair[1].0);
        }
        assert_eq!(xs[0].0, i64::from(layout.plot_left));
        let reference_rects = band_rects(&elements, layout.reference_top.unwrap());
        assert_eq!(reference_rects.len(), reference.len());

        // A probability curve per class with a point per frame.
        let curves: Vec<&Element> = elements
            .iter()
            .filter(|e| e.name == "polyline" && e.attr("stroke-width") == Some("2"))
            .filter(|e| e.attr("points").unwrap().split_whitespace().count() == frames.len())
            .collect();
        assert_eq!(curves.len(), labels.len());
        // A marker per non-separator token.
        let markers = elements
            .iter()
            .filter(|e| {
                e.name == "polyline"
                    && e.attr("points").is_some_and(|p| {
                        p.contains(&format!(",{} ", layout.marker_top))
                            && p.contains(&format!(",{} ", layout.marker_top + MARKER_HEIGHT))
                    })
            })
            .count();
        assert_eq!(markers, 4);
        // No temporary file left behind.
        let names: Vec<_> = fs::read_dir(path.parent().unwrap()).unwrap().collect();
        assert_eq!(names.len(), 1);
    }

    #[test]
    fn timeline_without_probs_or_reference() {
        let dir = TempDir::new("plain");
        let path = dir.0.join("plain.svg");
        let labels = labels(&["neu", "hap"]);
        let frames: Vec<usize> = (0..500).map(|i| usize::from((i / 7) % 3 == 0)).collect();
        let t = Timeline {
            title: "long",
            frame_shift: 0.02,
            frame_emotions: &frames,
            frame_probs: None,
            labels: &labels,
            tokens: &[],
            reference: None,
        };
        emotion_timeline(&path, &t).unwrap();
        let elements = parse_svg(&fs::read_to_string(&path).unwrap());
        let layout = TimelineLayout::new(&t);
        assert_eq!(
            band_rects(&elements, layout.decoded_top).len(),
            runs(&frames).len()
        );
        let text = texts(&elements);
        assert!(!text.contains(&"reference") && !text.contains(&"probability"));
        assert_eq!(layout.plot_width, 1600);
        // 10 s at 160 px/s: ticks every half second, 0.0 to 10.0.
        assert!(text.contains(&"0.0") && text.contains(&"10.0"), "{text:?}");
        assert!(text.contains(&"9.5") && !text.contains(&"10.5"), "{text:?}");
    }

    #[test]
    fn dense_words_widen_the_plot_and_do_not_overlap() {
        let labels = sample_labels();
        let frames = vec![3usize; 25]; // 1 s
        let words: Vec<String> = (0..30).map(|i| format!("word{i}")).collect();
        let mut toks = Vec::new();
        for (i, w) in words.iter().enumerate() {
            toks.push((w.clone(), i as f64 / 30.0, 3));
            toks.push((" ".to_string(), i as f64 / 30.0, 3));
        }
        let t = Timeline {
            title: "dense",
            frame_shift: 0.04,
            frame_emotions: &frames,
            frame_probs: None,
            labels: &labels,
            tokens: &toks,
            reference: None,
        };
        let layout = TimelineLayout::new(&t);
        assert_eq!(layout.words.len(), 30);
        assert!(layout.words.iter().all(|w| w.row < MAX_WORD_ROWS));
        for a in &layout.words {
            for b in &layout.words {
                if a.x < b.x && a.row == b.row {
                    let end = f64::from(a.x) + text_width(&a.text, WORD_PX);
                    assert!(end <= f64::from(b.x), "{a:?} overlaps {b:?}");
                }
            }
        }
    }

    #[test]
    fn empty_utterance_writes_a_valid_plot() {
        let dir = TempDir::new("empty");
        let path = dir.0.join("empty.svg");
        let labels = sample_labels();
        let t = Timeline {
            title: "nothing",
            frame_shift: 0.04,
            frame_emotions: &[],
            frame_probs: Some(&[]),
            labels: &labels,
            tokens: &[],
            reference: Some(&[]),
        };
        emotion_timeline(&path, &t).unwrap();
        let elements = parse_svg(&fs::read_to_string(&path).unwrap());
        let layout = TimelineLayout::new(&t);
        assert!(band_rects(&elements, layout.decoded_top).is_empty());
        assert!(texts(&elements).contains(&"no frames"));
    }

    #[test]
    fn timeline_rejects_invalid_input() {
        let dir = TempDir::new("invalid");
        let path = dir.0.join("bad.svg");
        let labels = sample_labels();
        let frames = [0usize, 1, 2];
        let probs = vec![vec![0.25f32; 4]; 3];
        let good = Timeline {
            title: "t",
            frame_shift: 0.04,
            frame_emotions: &frames,
            frame_probs: Some(&probs),
            labels: &labels,
            tokens: &[],
            reference: None,
        };
        emotion_timeline(&path, &good).unwrap();
        fs::remove_file(&path).unwrap();

        let expect_err = |t: Timeline, needle: &str| {
            let err = emotion_timeline(&path, &t).expect_err(needle);
            let msg = format!("{err:#}");
            assert!(msg.contains(needle), "{msg:?} lacks {needle:?}");
            assert!(!path.exists());
        };
        expect_err(
            Timeline {
                labels: &[],
                ..good.clone()
            },
            "no class labels",
        );
        for shift in [0.0, -0.02, f64::NAN, f64::INFINITY] {
            expect_err(
                Timeline {
                    frame_shift: shift,
                    ..good.clone()
                },
                "frame shift",
            );
        }
        expect_err(
            Timeline {
                frame_emotions: &[0, 4, 1],
                ..good.clone()
            },
            "frame 1 has emotion index 4",
        );
        let short = vec![vec![0.25f32; 4]; 2];
        expect_err(
            Timeline {
                frame_probs: Some(&short),
                ..good.clone()
            },
            "cover 2 frames",
        );
        let ragged = vec![vec![0.25f32; 4], vec![0.5f32; 3], vec![0.25f32; 4]];
        expect_err(
            Timeline {
                frame_probs: Some(&ragged),
                ..good.clone()
            },
            "frame 1 has 3 class probabilities",
        );
        let nan = vec![
            vec![0.25f32; 4],
            vec![0.25, f32::NAN, 0.25, 0.25],
            vec![0.25f32; 4],
        ];
        expect_err(
            Timeline {
                frame_probs: Some(&nan),
                ..good.clone()
            },
            "non-finite",
        );
        let bad_token = tokens(&[("a", 0.1, 0), ("b", 0.2, 7)]);
        expect_err(
            Timeline {
                tokens: &bad_token,
                ..good.clone()
            },
            "token 1 (\"b\") has emotion index 7",
        );
        let bad_time = tokens(&[("a", -0.1, 0)]);
        expect_err(
            Timeline {
                tokens: &bad_time,
                ..good.clone()
            },
            "emission time",
        );
        let nan_time = tokens(&[("a", f64::NAN, 0)]);
        expect_err(
            Timeline {
                tokens: &nan_time,
                ..good.clone()
            },
            "emission time",
        );
        expect_err(
            Timeline {
                reference: Some(&[(0.0, 0.1, 4)]),
                ..good.clone()
            },
            "reference segment 0 has class index 4",
        );
        expect_err(
            Timeline {
                reference: Some(&[(0.3, 0.1, 0)]),
                ..good.clone()
            },
            "reference segment 0 spans",
        );
        expect_err(
            Timeline {
                reference: Some(&[(f64::NAN, 0.1, 0)]),
                ..good.clone()
            },
            "reference segment 0 spans",
        );
    }

    #[test]
    fn unwritable_path_names_the_path() {
        let dir = TempDir::new("unwritable");
        fs::create_dir_all(&dir.0).unwrap();
        // A file where a folder is needed.
        let blocker = dir.0.join("file");
        fs::write(&blocker, "x").unwrap();
        let path = blocker.join("plot.svg");
        let labels = sample_labels();
        let counts = vec![vec![1u64; 4]; 4];
        let err = confusion_matrix(&path, "t", &labels, &counts).unwrap_err();
        assert!(
            format!("{err:#}").contains(&path.display().to_string()),
            "{err:#}"
        );
        // A path that is an existing folder.
        let err = confusion_matrix(&dir.0, "t", &labels, &counts).unwrap_err();
        assert!(
            format!("{err:#}").contains(&dir.0.display().to_string()),
            "{err:#}"
        );
    }

    #[test]
    fn confusion_matrix_prints_counts_and_row_shares() {
        let dir = TempDir::new("confusion");
        let path = dir.0.join("cm.svg");
        let labels = sample_labels();
        let counts = vec![
            vec![50, 3, 0, 7],
            vec![4, 81, 2, 13],
            vec![0, 0, 0, 0],
            vec![9, 11, 17, 263],
        ];
        confusion_matrix(&path, "test set <all>", &labels, &counts).unwrap();
        let elements = parse_svg(&fs::read_to_string(&path).unwrap());
        let text = texts(&elements);
        assert!(text.contains(&"test set <all>"));
        for name in &labels {
            // Column and row headers.
            assert_eq!(
                text.iter().filter(|t| **t == name.as_str()).count(),
                2,
                "{name}"
            );
        }
        for expected in [
            "263",
            "81",
            "13",
            "83.3%",
            "81.0%",
            "87.7%",
            "–",
            "n = 60",
            "n = 0",
            "hypothesis",
            "reference",
        ] {
            assert!(text.contains(&expected), "{expected:?} in {text:?}");
        }
        // 4 x 4 zeros plus... count the cells exactly.
        let layout = ConfusionLayout::new("test set <all>", &labels);
        let c = i64::from(layout.cell);
        let cells: Vec<&Element> = elements
            .iter()
            .filter(|e| e.name == "rect" && e.num("width") == c && e.num("height") == c)
            .collect();
        assert_eq!(cells.len(), 16);
        // Shade by row share: the 263/300 cell is darker than the 9/300 one,
        // and the empty row is unshaded.
        let fill = |r: i32, col: i32| {
            let x = i64::from(layout.grid_left + col * layout.cell);
            let y = i64::from(layout.grid_top + r * layout.cell);
            let cell = cells
                .iter()
                .find(|e| e.num("x") == x && e.num("y") == y)
                .unwrap();
            cell.attr("fill").unwrap().to_string()
        };
        assert_eq!(fill(3, 3), color_hex(shade(263.0 / 300.0)));
        assert_eq!(fill(3, 0), color_hex(shade(9.0 / 300.0)));
        assert_eq!(fill(2, 2), color_hex(shade(0.0)));
        let total: u64 = counts.iter().flatten().sum();
        let summary = format!(
            "n = {total} · accuracy {:.1}%",
            100.0 * 394.0 / total as f64
        );
        assert!(
            text.iter().any(|t| t.starts_with(&summary)),
            "{summary:?} in {text:?}"
        );
        // Unweighted average recall over the three rows with samples.
        let uar = (50.0 / 60.0 + 81.0 / 100.0 + 263.0 / 300.0) / 3.0 * 100.0;
        assert!(
            text.iter()
                .any(|t| t.ends_with(&format!("recall {uar:.1}%"))),
            "{text:?}"
        );
    }

    #[test]
    fn confusion_matrix_with_no_samples_and_long_names() {
        let dir = TempDir::new("confusion-empty");
        let path = dir.0.join("cm.svg");
        let labels = labels(&["a rather long emotion class name that will not fit", "x"]);
        confusion_matrix(&path, "", &labels, &[vec![0, 0], vec![0, 0]]).unwrap();
        let elements = parse_svg(&fs::read_to_string(&path).unwrap());
        let text = texts(&elements);
        assert!(text.contains(&"n = 0 (no samples)"), "{text:?}");
        assert!(
            text.iter()
                .any(|t| t.starts_with("a rather") && t.ends_with('…')),
            "{text:?}"
        );
    }

    #[test]
    fn confusion_matrix_rejects_invalid_input() {
        let dir = TempDir::new("confusion-invalid");
        let path = dir.0.join("cm.svg");
        let labels = labels(&["a", "b"]);
        let check = |labels: &[String], counts: &[Vec<u64>], needle: &str| {
            let err = confusion_matrix(&path, "t", labels, counts).expect_err(needle);
            let msg = format!("{err:#}");
            assert!(msg.contains(needle), "{msg:?} lacks {needle:?}");
            assert!(!path.exists());
        };
        check(&[], &[], "no class labels");
        check(&labels, &[vec![1, 2]], "1 rows but there are 2 labels");
        check(&labels, &[vec![1, 2], vec![3], vec![4, 5]], "3 rows");
        check(
            &labels,
            &[vec![1, 2], vec![3]],
            "row 1 (b) has 1 columns, expected 2",
        );
        check(
            &labels,
            &[vec![1, 2, 3], vec![3, 4, 5]],
            "row 0 (a) has 3 columns",
        );
    }

    /// Writes sample plots for looking at: set `ENT_PLOT_EXAMPLES` to a folder
    /// and run this test with `--ignored`.
    #[test]
    #[ignore]
    fn render_examples() {
        let Some(dir) = std::env::var_os("ENT_PLOT_EXAMPLES") else {
            return;
        };
        let dir = PathBuf::from(dir);
        let labels = sample_labels();
        let shift = 0.04;
        let n = 105; // 4.2 s
        let (start, end) = (1.2, 3.0);
        let mut frame_probs = Vec::new();
        let mut frames = Vec::new();
        for i in 0..n {
            let t = (i as f64 + 0.5) * shift;
            let inside = (t - start).min(end - t);
            let a = (1.0 / (1.0 + (-inside * 8.0).exp())) as f32;
            let wobble = (0.15 * (t * 5.0).sin()) as f32;
            let row = [
                (0.75 * a + wobble * a).clamp(0.0, 1.0),
                (0.12 * a + 0.05) - wobble * a * 0.5,
                0.06,
                1.0 - a,
            ];
            let sum: f32 = row.iter().map(|p| p.max(0.0)).sum();
            let row: Vec<f32> = row.iter().map(|p| p.max(0.0) / sum).collect();
            let best = (0..4).max_by(|&x, &y| row[x].total_cmp(&row[y])).unwrap();
            frames.push(best);
            frame_probs.push(row);
        }
        let text = "oh wow that is such wonderful news i am so glad";
        let mut toks = Vec::new();
        let chars: Vec<char> = text.chars().collect();
        for (i, c) in chars.iter().enumerate() {
            let t = 0.3 + 3.6 * i as f64 / chars.len() as f64;
            let f = ((t / shift) as usize).min(n - 1);
            toks.push((c.to_string(), t, frames[f]));
        }
        let reference = [(0.0, start, 3), (start, end, 0), (end, n as f64 * shift, 3)];
        let title = format!("Ses01F_script01_3_F012: \"{text}\" (happy)");
        emotion_timeline(
            &dir.join("timeline.svg"),
            &Timeline {
                title: &title,
                frame_shift: shift,
                frame_emotions: &frames,
                frame_probs: Some(&frame_probs),
                labels: &labels,
                tokens: &toks,
                reference: Some(&reference),
            },
        )
        .unwrap();
        // A long utterance in characters without spaces, and no extras.
        let frames: Vec<usize> = (0..600).map(|i| [3, 3, 0, 1, 3, 2][i / 100]).collect();
        let text = "今天的天气真的很好我们一起去公园散步吧然后去吃晚饭好不好";
        let toks: Vec<(String, f64, usize)> = text
            .chars()
            .enumerate()
            .map(|(i, c)| {
                (
                    c.to_string(),
                    0.4 + 0.4 * i as f64,
                    frames[(10 + 20 * i).min(599)],
                )
            })
            .collect();
        emotion_timeline(
            &dir.join("timeline-long.svg"),
            &Timeline {
                title: "long utterance",
                frame_shift: 0.02,
                frame_emotions: &frames,
                frame_probs: None,
                labels: &labels,
                tokens: &toks,
                reference: None,
            },
        )
        .unwrap();
        let counts = vec![
            vec![212, 31, 9, 70],
            vec![25, 168, 4, 52],
            vec![8, 3, 190, 61],
            vec![44, 39, 50, 410],
        ];
        confusion_matrix(
            &dir.join("confusion.svg"),
            "dev: utterance emotion",
            &labels,
            &counts,
        )
        .unwrap();
    }
}
