//! The confusion matrix: layout and drawing.

use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, VPos};

use super::PlotResult;
use super::style::*;

pub(super) const CELL_MIN: f64 = 76.0;
pub(super) const CELL_MAX: f64 = 160.0;
pub(super) const CLASS_PX: f64 = 13.0;

/// Pixel layout of a confusion matrix.
#[derive(Debug, Clone)]
pub(super) struct ConfusionLayout {
    pub(super) width: u32,
    pub(super) height: u32,
    pub(super) title: Vec<String>,
    /// Top of the summary line under the title.
    pub(super) summary_y: i32,
    pub(super) cell: i32,
    pub(super) grid_left: i32,
    pub(super) grid_top: i32,
    /// Class names as printed (cut to fit a cell / the row label column).
    pub(super) names: Vec<String>,
}

impl ConfusionLayout {
    pub(super) fn new(title: &str, labels: &[String]) -> Self {
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
pub(super) fn shade(v: f64) -> RGBColor {
    let v = v.clamp(0.0, 1.0);
    let mix = |a: f64, b: f64| (a + (b - a) * v).round() as u8;
    RGBColor(mix(247.0, 8.0), mix(251.0, 48.0), mix(255.0, 107.0))
}

pub(super) fn percent(part: u64, total: u64) -> Option<f64> {
    (total > 0).then(|| 100.0 * part as f64 / total as f64)
}

pub(super) fn render_confusion(
    labels: &[String],
    counts: &[Vec<u64>],
    l: &ConfusionLayout,
) -> PlotResult<String> {
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
