//! The timeline of a long recording: a fixed width however long the file, a time axis in
//! minutes, the emotion band and the decoder's confidence, each pixel column summarising the
//! frames under it.

use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, VPos};

use super::style::{bold, class_colors, font, render_svg};
use super::{PlotResult, Timeline};

/// The confidence grid's lines and its curve.
const GRID: RGBColor = RGBColor(0xdd, 0xdd, 0xdd);
const CURVE: RGBColor = RGBColor(0x33, 0x33, 0x33);

/// Plot width in pixels, whatever the length.
pub(super) const WIDTH: usize = 1600;
const LEFT: usize = 96;
const RIGHT: usize = 28;
const BAND_TOP: usize = 76;
const BAND: usize = 36;
const CONF_TOP: usize = BAND_TOP + BAND + 18;
const CONF: usize = 90;
const AXIS_Y: usize = CONF_TOP + CONF + 8;
const HEIGHT: usize = AXIS_Y + 40;

/// Per pixel column: the most frequent class and the mean top probability of its frames.
pub(super) fn columns(t: &Timeline, cols: usize) -> Vec<Option<(usize, f32)>> {
    let n = t.frame_emotions.len();
    let k = t.labels.len();
    (0..cols)
        .map(|c| {
            let a = c * n / cols;
            let b = ((c + 1) * n / cols).max(a + 1).min(n);
            if a >= n {
                return None;
            }
            let mut counts = vec![0usize; k];
            let mut conf = 0f32;
            for f in a..b {
                counts[t.frame_emotions[f]] += 1;
                conf += t
                    .frame_probs
                    .and_then(|p| p.get(f))
                    .map_or(1.0, |row| row.iter().copied().fold(0.0, f32::max));
            }
            let best = (0..k).max_by_key(|&i| (counts[i], std::cmp::Reverse(i)))?;
            Some((best, conf / (b - a) as f32))
        })
        .collect()
}

/// Minutes between labelled ticks for a recording of `minutes`.
pub(super) fn tick_minutes(minutes: f64) -> f64 {
    [0.5, 1.0, 2.0, 5.0, 10.0, 15.0, 30.0, 60.0, 120.0]
        .into_iter()
        .find(|&s| minutes / s <= 12.0)
        .unwrap_or(240.0)
}

/// The SVG of a long timeline.
pub(super) fn render(t: &Timeline) -> PlotResult<String> {
    let (left, plot) = (LEFT as i32, (WIDTH - LEFT - RIGHT) as i32);
    let secs = (t.frame_emotions.len() as f64 * t.frame_shift).max(1.0);
    let minutes = secs / 60.0;
    let colors = class_colors(t.labels);
    let cols = columns(t, plot as usize);
    let (band_top, band) = (BAND_TOP as i32, BAND as i32);
    let (conf_top, conf, axis_y) = (CONF_TOP as i32, CONF as i32, AXIS_Y as i32);
    render_svg(WIDTH as u32, HEIGHT as u32, |page| {
        let title = format!("{} ({})", t.title, ent_common::progress::duration(secs));
        page.text(
            &title,
            (left, 24),
            bold(16.0, &BLACK, HPos::Left, VPos::Bottom),
        )?;
        let mut x = left;
        for (k, l) in t.labels.iter().enumerate() {
            page.rect((x, 40), (x + 14, 54), colors[k])?;
            page.text(
                l,
                (x + 20, 47),
                font(13.0, &BLACK, HPos::Left, VPos::Center),
            )?;
            x += 40 + 8 * l.chars().count() as i32;
        }
        let row_label = |s: &str, y: i32| {
            page.text(
                s,
                (left - 8, y),
                font(13.0, &BLACK, HPos::Right, VPos::Center),
            )
        };
        // Emotion band, one rectangle per run of equal columns.
        row_label("emotion", band_top + band / 2)?;
        let classes: Vec<Option<usize>> = cols.iter().map(|c| c.map(|v| v.0)).collect();
        let mut start = 0;
        for run in classes.chunk_by(|a, b| a == b) {
            if let Some(k) = run[0] {
                let x0 = left + start as i32;
                let x1 = x0 + run.len() as i32;
                page.rect((x0, band_top), (x1, band_top + band), colors[k])?;
            }
            start += run.len();
        }
        // Confidence: the mean top probability per column (its label between the ticks).
        row_label("confidence", conf_top + conf / 4)?;
        for (frac, label) in [(0.0, "0"), (0.5, "0.5"), (1.0, "1")] {
            let y = conf_top + conf - (frac * conf as f64) as i32;
            page.line(vec![(left, y), (left + plot, y)], GRID, 1)?;
            page.text(
                label,
                (left - 4, y),
                font(11.0, &BLACK, HPos::Right, VPos::Center),
            )?;
        }
        let points: Vec<(i32, i32)> = cols
            .iter()
            .enumerate()
            .filter_map(|(i, col)| {
                let (_, p) = (*col)?;
                let y = conf_top as f64 + conf as f64 * (1.0 - p.clamp(0.0, 1.0) as f64);
                Some((left + i as i32, y.round() as i32))
            })
            .collect();
        page.line(points, CURVE, 1)?;
        // Time axis in minutes.
        page.line(vec![(left, axis_y), (left + plot, axis_y)], BLACK, 1)?;
        let step = tick_minutes(minutes);
        let mut m = 0.0;
        while m <= minutes + 1e-9 {
            let x = left + (m / minutes * plot as f64).round() as i32;
            let label = if step < 1.0 {
                format!("{m:.1}")
            } else {
                format!("{m:.0}")
            };
            page.line(vec![(x, axis_y), (x, axis_y + 6)], BLACK, 1)?;
            page.text(
                &label,
                (x, axis_y + 20),
                font(12.0, &BLACK, HPos::Center, VPos::Bottom),
            )?;
            m += step;
        }
        page.text(
            "time (minutes)",
            (left + plot / 2, axis_y + 36),
            font(12.0, &BLACK, HPos::Center, VPos::Bottom),
        )
    })
}
