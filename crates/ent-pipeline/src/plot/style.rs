//! What both plots share: class colours, text measurement and the SVG page.

use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, Pos, VPos};

use super::{PlotError, PlotResult};

// Colours

/// Fixed colours for well-known emotion names (lower case).
pub(super) fn known_class_color(name: &str) -> Option<RGBColor> {
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
pub(super) const PALETTE: [RGBColor; 12] = rgb([
    0x2ca02c, 0x9467bd, 0xff7f0e, 0x17becf, 0x8c564b, 0xe377c2, 0xbcbd22, 0x005a46, 0x78285a,
    0x5a5ac8, 0xc87850, 0x3c3c3c,
]);

/// `0xRRGGBB` values as colours.
const fn rgb<const N: usize>(hex: [u32; N]) -> [RGBColor; N] {
    let mut out = [RGBColor(0, 0, 0); N];
    let mut i = 0;
    while i < N {
        let v = hex[i];
        out[i] = RGBColor((v >> 16) as u8, (v >> 8) as u8, v as u8);
        i += 1;
    }
    out
}

/// One colour per class: fixed for known names (case-insensitive), from
/// [`PALETTE`] otherwise (darker and lighter shades of it past its end).
pub(super) fn class_colors(labels: &[String]) -> Vec<RGBColor> {
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
pub(super) fn text_color_on(background: RGBColor) -> RGBColor {
    let luma = 0.299 * f64::from(background.0)
        + 0.587 * f64::from(background.1)
        + 0.114 * f64::from(background.2);
    if luma > 150.0 { BLACK } else { WHITE }
}

pub(super) const GRID: RGBColor = RGBColor(225, 225, 225);
pub(super) const FRAME: RGBColor = RGBColor(170, 170, 170);
pub(super) const MUTED: RGBColor = RGBColor(110, 110, 110);

// ---------------------------------------------------------------------------
// Text

pub(super) const FONT: &str = "sans-serif";
/// plotters' SVG backend writes `font-size` as the style size / 1.24.
pub(super) const FONT_SCALE: f64 = 1.24;

pub(super) fn font(px: f64, color: &RGBColor, h: HPos, v: VPos) -> TextStyle<'static> {
    (FONT, px * FONT_SCALE)
        .into_font()
        .color(color)
        .pos(Pos::new(h, v))
}

pub(super) fn bold(px: f64, color: &RGBColor, h: HPos, v: VPos) -> TextStyle<'static> {
    (FONT, px * FONT_SCALE, FontStyle::Bold)
        .into_font()
        .color(color)
        .pos(Pos::new(h, v))
}

/// Whether `c` is drawn about one em wide (CJK, Hangul, full-width forms).
pub(super) fn is_wide(c: char) -> bool {
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
pub(super) fn text_width(text: &str, px: f64) -> f64 {
    text.chars()
        .map(|c| if is_wide(c) { 1.0 } else { 0.6 })
        .sum::<f64>()
        * px
}

/// `text`, cut with an ellipsis to fit `max_width` px at size `px`.
pub(super) fn fit_text(text: &str, px: f64, max_width: f64) -> String {
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
pub(super) fn wrap_text(text: &str, px: f64, max_width: f64, max_lines: usize) -> Vec<String> {
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

/// The page margin and the title size, shared by both plots.
pub(super) const MARGIN: i32 = 16;
pub(super) const TITLE_PX: f64 = 17.0;

/// Title lines: at most two, this far apart.
pub(super) const TITLE_LINES: usize = 2;
pub(super) const TITLE_LINE: i32 = 22;

// The page

pub(super) type Drawn = PlotResult<()>;

/// Maps plotters' drawing errors (generic over the backend) into [`PlotError::Draw`].
pub(super) fn drawn<E: std::fmt::Display>(r: Result<(), E>) -> Drawn {
    r.map_err(|e| PlotError::Draw(e.to_string()))
}

/// An SVG page on a white background, drawn with three primitives.
pub(super) struct Page<'a> {
    pub(super) root: DrawingArea<SVGBackend<'a>, plotters::coord::Shift>,
}

impl Page<'_> {
    pub(super) fn text(&self, s: &str, pos: (i32, i32), style: TextStyle<'static>) -> Drawn {
        drawn(self.root.draw(&Text::new(s.to_string(), pos, style)))
    }

    pub(super) fn line(&self, points: Vec<(i32, i32)>, color: RGBColor, width: u32) -> Drawn {
        drawn(
            self.root
                .draw(&PathElement::new(points, color.stroke_width(width))),
        )
    }

    pub(super) fn rect(&self, a: (i32, i32), b: (i32, i32), color: RGBColor) -> Drawn {
        drawn(self.root.draw(&Rectangle::new([a, b], color.filled())))
    }
}

/// Draws a `width` x `height` page with `draw` and returns the SVG text.
pub(super) fn render_svg(
    width: u32,
    height: u32,
    draw: impl FnOnce(&Page<'_>) -> Drawn,
) -> PlotResult<String> {
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
