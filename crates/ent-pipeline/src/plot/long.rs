//! The timeline of a long recording: a fixed width however long the file, a time axis in
//! minutes, the emotion band and the decoder's confidence, each pixel column summarising the
//! frames under it.

use std::fmt::Write as _;

use super::Timeline;
use super::style::class_colors;

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

fn esc(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// The SVG of a long timeline.
pub(super) fn render(t: &Timeline) -> String {
    let plot = WIDTH - LEFT - RIGHT;
    let secs = (t.frame_emotions.len() as f64 * t.frame_shift).max(1.0);
    let minutes = secs / 60.0;
    let colors = class_colors(t.labels);
    let hex = |k: usize| {
        let c = colors[k];
        format!("#{:02x}{:02x}{:02x}", c.0, c.1, c.2)
    };
    let mut s = String::new();
    let _ = writeln!(
        s,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{HEIGHT}" viewBox="0 0 {WIDTH} {HEIGHT}" font-family="sans-serif">"#
    );
    let _ = writeln!(
        s,
        r#"<rect width="{WIDTH}" height="{HEIGHT}" fill="white"/>"#
    );
    let _ = writeln!(
        s,
        r#"<text x="{LEFT}" y="24" font-size="16" font-weight="bold">{} ({})</text>"#,
        esc(t.title),
        ent_common::progress::duration(secs)
    );
    // Legend.
    let mut x = LEFT;
    for (k, l) in t.labels.iter().enumerate() {
        let _ = writeln!(
            s,
            r#"<rect x="{x}" y="40" width="14" height="14" fill="{}"/><text x="{}" y="52" font-size="13">{}</text>"#,
            hex(k),
            x + 20,
            esc(l)
        );
        x += 40 + 8 * l.chars().count();
    }
    // Emotion band, one rectangle per run of equal columns.
    let _ = writeln!(
        s,
        r#"<text x="{}" y="{}" font-size="13" text-anchor="end">emotion</text>"#,
        LEFT - 8,
        BAND_TOP + BAND / 2 + 4
    );
    let cols = columns(t, plot);
    let mut c = 0;
    while c < cols.len() {
        let Some((k, _)) = cols[c] else {
            c += 1;
            continue;
        };
        let start = c;
        while c < cols.len() && cols[c].map(|v| v.0) == Some(k) {
            c += 1;
        }
        let _ = writeln!(
            s,
            r#"<rect x="{}" y="{BAND_TOP}" width="{}" height="{BAND}" fill="{}"/>"#,
            LEFT + start,
            c - start,
            hex(k)
        );
    }
    // Confidence: the mean top probability per column.
    let _ = writeln!(
        s,
        r#"<text x="{}" y="{}" font-size="13" text-anchor="end">confidence</text>"#,
        LEFT - 8,
        CONF_TOP + CONF / 2 + 4
    );
    for (frac, label) in [(0.0, "0"), (0.5, "0.5"), (1.0, "1")] {
        let y = CONF_TOP + CONF - (frac * CONF as f64) as usize;
        let _ = writeln!(
            s,
            r##"<line x1="{LEFT}" y1="{y}" x2="{}" y2="{y}" stroke="#dddddd"/><text x="{}" y="{}" font-size="11" text-anchor="end">{label}</text>"##,
            LEFT + plot,
            LEFT - 4,
            y + 4
        );
    }
    let mut points = String::new();
    for (i, col) in cols.iter().enumerate() {
        if let Some((_, p)) = col {
            let y = CONF_TOP as f64 + CONF as f64 * (1.0 - p.clamp(0.0, 1.0) as f64);
            let _ = write!(points, "{},{:.1} ", LEFT + i, y);
        }
    }
    let _ = writeln!(
        s,
        r##"<polyline points="{}" fill="none" stroke="#333333" stroke-width="1"/>"##,
        points.trim_end()
    );
    // Time axis in minutes.
    let _ = writeln!(
        s,
        r##"<line x1="{LEFT}" y1="{AXIS_Y}" x2="{}" y2="{AXIS_Y}" stroke="black"/>"##,
        LEFT + plot
    );
    let step = tick_minutes(minutes);
    let mut m = 0.0;
    while m <= minutes + 1e-9 {
        let x = LEFT + (m / minutes * plot as f64).round() as usize;
        let label = if step < 1.0 {
            format!("{m:.1}")
        } else {
            format!("{m:.0}")
        };
        let _ = writeln!(
            s,
            r##"<line x1="{x}" y1="{AXIS_Y}" x2="{x}" y2="{}" stroke="black"/><text x="{x}" y="{}" font-size="12" text-anchor="middle">{label}</text>"##,
            AXIS_Y + 6,
            AXIS_Y + 20
        );
        m += step;
    }
    let _ = writeln!(
        s,
        r#"<text x="{}" y="{}" font-size="12" text-anchor="middle">time (minutes)</text>"#,
        LEFT + plot / 2,
        AXIS_Y + 36
    );
    s.push_str("</svg>\n");
    s
}
