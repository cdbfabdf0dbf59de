//! The emotion timeline: layout and drawing.

use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, VPos};

use super::style::*;
use super::{PlotResult, Timeline};

/// Runs of equal consecutive values: (first index, one past the last, value).
pub(super) fn runs(values: &[usize]) -> Vec<(usize, usize, usize)> {
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
pub(super) struct Word {
    pub(super) text: String,
    /// Emission time of the first token, seconds.
    pub(super) start: f64,
}

/// Groups tokens into words: a token that is only whitespace, `▁` or `|`
/// separates words; a token starting with whitespace or `▁` starts a word,
/// one ending with whitespace ends it; CJK characters stand alone.
pub(super) fn group_words(tokens: &[(String, f64, usize)]) -> Vec<Word> {
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

pub(super) const LEFT_LABELS: i32 = 96;
pub(super) const RIGHT_MARGIN: i32 = 28;
pub(super) const MIN_WIDTH: i32 = 800;
pub(super) const MAX_PLOT_WIDTH: f64 = 20_000.0;
pub(super) const BASE_PX_PER_S: f64 = 160.0;
pub(super) const LEGEND_PX: f64 = 13.0;
pub(super) const LEGEND_ROW: i32 = 22;
pub(super) const SWATCH: i32 = 14;
pub(super) const PROBS_HEIGHT: i32 = 150;
pub(super) const BAND_HEIGHT: i32 = 28;
pub(super) const BAND_GAP: i32 = 6;
pub(super) const MARKER_HEIGHT: i32 = 8;
pub(super) const WORD_PX: f64 = 13.0;
pub(super) const WORD_ROW: i32 = 18;
pub(super) const WORD_GAP: f64 = 8.0;
pub(super) const MAX_WORD_ROWS: usize = 4;
pub(super) const TICK_PX: f64 = 12.0;

/// A word with its place: left x in px and row.
#[derive(Debug, Clone)]
pub(super) struct PlacedWord {
    pub(super) text: String,
    pub(super) x: i32,
    pub(super) row: usize,
}

/// Pixel layout of a timeline, computed before drawing (tests use it too).
#[derive(Debug, Clone)]
pub(super) struct TimelineLayout {
    pub(super) width: u32,
    pub(super) height: u32,
    /// Time axis span, seconds (at least the frames, tokens and reference).
    pub(super) duration: f64,
    pub(super) plot_left: i32,
    pub(super) plot_width: i32,
    pub(super) px_per_s: f64,
    pub(super) title: Vec<String>,
    /// (x, y top, class) per legend entry.
    pub(super) legend: Vec<(i32, i32, usize)>,
    pub(super) probs_top: Option<i32>,
    pub(super) decoded_top: i32,
    pub(super) reference_top: Option<i32>,
    pub(super) marker_top: i32,
    pub(super) words_top: i32,
    pub(super) words: Vec<PlacedWord>,
    pub(super) axis_y: i32,
}

impl TimelineLayout {
    pub(super) fn new(t: &Timeline) -> Self {
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

    pub(super) fn x(&self, seconds: f64) -> i32 {
        (f64::from(self.plot_left) + seconds * self.px_per_s).round() as i32
    }

    pub(super) fn plot_right(&self) -> i32 {
        self.plot_left + self.plot_width
    }

    /// y of probability `p` in the probability panel starting at `top`.
    pub(super) fn prob_y(top: i32, p: f64) -> i32 {
        (f64::from(top) + (1.0 - p.clamp(0.0, 1.0)) * f64::from(PROBS_HEIGHT)).round() as i32
    }

    /// Time ticks: a round step at least 70 px apart.
    pub(super) fn ticks(&self) -> (f64, Vec<f64>) {
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

pub(super) fn render_timeline(t: &Timeline, l: &TimelineLayout) -> PlotResult<String> {
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

impl Page<'_> {
    /// One segment of a timeline band: a block from `x0` to `x1` (at least a pixel wide) in
    /// the class colour, with the class name centred in it when it fits.
    pub(super) fn band_block(
        &self,
        (x0, x1): (i32, i32),
        top: i32,
        color: RGBColor,
        name: &str,
    ) -> Drawn {
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
