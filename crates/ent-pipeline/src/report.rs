//! What an evaluation leaves on disk: `<name>-report.json`, `<name>-utterances.jsonl`, the
//! confusion matrix and emotion timelines as SVG. Every file is written atomically.

use std::path::Path;

use crate::error::{PipelineError, Result};
use crate::evaluate::{Report, Scored, pct};
use crate::plot::{self, Timeline};

fn write(path: &Path, bytes: &[u8]) -> Result<()> {
    ent_common::fs::write_atomic(path, bytes).map_err(|source| PipelineError::Write {
        path: path.to_path_buf(),
        source,
    })
}

/// Writes `<name>-report.json`, `<name>-utterances.jsonl` (one line per utterance), the
/// confusion matrix and up to `timelines` emotion timelines (spread over the set) into `out`.
pub fn save_report(
    out: &Path,
    report: &Report,
    scored: &[Scored],
    labels: &[String],
    timelines: usize,
) -> Result<()> {
    write(
        &out.join(format!("{}-report.json", report.name)),
        serde_json::to_string_pretty(report)?.as_bytes(),
    )?;
    let mut lines = String::new();
    for s in scored {
        lines.push_str(&serde_json::to_string(s)?);
        lines.push('\n');
    }
    write(
        &out.join(format!("{}-utterances.jsonl", report.name)),
        lines.as_bytes(),
    )?;
    write_plots(out, report, scored, labels, timelines)
}

/// Writes the confusion matrix and up to `timelines` emotion timelines under `dir`, of
/// utterances spread evenly over `scored`.
pub fn write_plots(
    dir: &Path,
    report: &Report,
    scored: &[Scored],
    labels: &[String],
    timelines: usize,
) -> Result<()> {
    plot::confusion_matrix(
        &dir.join(format!("{}-confusion.svg", report.name)),
        &format!("{}: utterance emotion (UA {})", report.name, pct(report.ua)),
        labels,
        &report.confusion.counts,
    )?;
    // Spread over the set (which is in manifest order: voices, patterns), not its first few.
    for i in spread(scored.len(), timelines) {
        write_timeline(&dir.join("timelines"), &scored[i], labels)?;
    }
    Ok(())
}

/// `min(k, n)` distinct indices of `0..n`, evenly spread from 0: `j * n / k`.
fn spread(n: usize, k: usize) -> impl Iterator<Item = usize> {
    let k = k.min(n);
    (0..k).map(move |j| j * n / k)
}

/// One utterance's emotion timeline as `<dir>/<id>.svg`.
pub fn write_timeline(dir: &Path, s: &Scored, labels: &[String]) -> Result<()> {
    let t = &s.transcript;
    let tokens: Vec<(String, f64, usize)> = t
        .tokens
        .iter()
        .map(|k| {
            let e = labels.iter().position(|l| *l == k.emotion).unwrap_or(0);
            (k.token.clone(), k.start, e)
        })
        .collect();
    let reference: Option<Vec<(f64, f64, usize)>> = s
        .reference_segments
        .as_ref()
        .map(|r| r.iter().map(|g| (g.start, g.end, g.label)).collect());
    let title = format!("{}: \"{}\" ({})", t.id, t.text, t.emotion.label);
    let file = dir.join(format!("{}.svg", safe_name(&t.id)));
    plot::emotion_timeline(
        &file,
        &Timeline {
            title: &title,
            frame_shift: t.frame_shift,
            frame_emotions: &s.frame_emotions,
            frame_probs: Some(&s.frame_probs),
            labels,
            tokens: &tokens,
            reference: reference.as_deref(),
        },
    )?;
    Ok(())
}

/// A file name from an utterance id or path: letters, digits, `-`, `_` and `.` kept.
pub fn safe_name(id: &str) -> String {
    id.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || "-_.".contains(c) {
                c
            } else {
                '_'
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::spread;

    #[test]
    fn timelines_are_spread_over_the_set() {
        let v: Vec<usize> = spread(57, 8).collect();
        assert_eq!(v, [0, 7, 14, 21, 28, 35, 42, 49]);
        assert_eq!(spread(3, 10).collect::<Vec<_>>(), [0, 1, 2]);
        assert_eq!(spread(0, 8).count(), 0);
        assert_eq!(spread(5, 0).count(), 0);
    }
}
