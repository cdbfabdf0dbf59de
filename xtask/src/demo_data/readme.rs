//! The corpus README: `xtask/assets/demo-readme.md` filled in with the corpus statistics.

use std::collections::{BTreeMap, HashMap};
use std::fmt::Write as _;
use std::path::Path;

use anyhow::{Context, Result, bail};

use super::plan::*;
use super::synth::*;

/// Counts and durations per split and label, for the README.
pub(super) struct Stats {
    /// split -> label -> (utterances, samples); diarization by its emotional label.
    pub(super) per: BTreeMap<&'static str, BTreeMap<&'static str, (usize, usize)>>,
    /// Mean, shortest and longest piece of the single-sentence splits, in samples.
    pub(super) piece_lengths: (f64, usize, usize),
}

impl Stats {
    pub(super) fn new(
        splits: &BTreeMap<&'static str, Vec<Utt>>,
        lengths: &HashMap<&str, Vec<usize>>,
    ) -> Stats {
        let mut per: BTreeMap<&'static str, BTreeMap<&'static str, (usize, usize)>> =
            BTreeMap::new();
        let mut singles = Vec::new();
        for (name, utts) in splits {
            for u in utts {
                let label = STYLES[u.pieces[u.emotional.as_ref().map_or(0, |r| r.start)].style].emo;
                let lens = &lengths[u.id.as_str()];
                let e = per.entry(name).or_default().entry(label).or_default();
                e.0 += 1;
                e.1 += lens.iter().sum::<usize>();
                if u.emotional.is_none() {
                    singles.extend(lens.iter().copied());
                }
            }
        }
        let mean = singles.iter().sum::<usize>() as f64 / singles.len().max(1) as f64;
        let min = singles.iter().copied().min().unwrap_or(0);
        let max = singles.iter().copied().max().unwrap_or(0);
        Stats {
            per,
            piece_lengths: (mean, min, max),
        }
    }
}

/// Total bytes of the files under `dir`.
pub(super) fn folder_bytes(dir: &Path) -> Result<u64> {
    let mut total = 0;
    for entry in std::fs::read_dir(dir).with_context(|| format!("listing {}", dir.display()))? {
        let entry = entry?;
        let meta = entry.metadata()?;
        total += if meta.is_dir() {
            folder_bytes(&entry.path())?
        } else {
            meta.len()
        };
    }
    Ok(total)
}

pub(super) fn minutes(samples: usize) -> String {
    format!("{:.1} min", samples as f64 / f64::from(RATE) / 60.0)
}

/// The README: the template `xtask/assets/demo-readme.md` with every `{name}` filled in.
pub(super) fn readme_text(stats: &Stats, tools: &Tools, bytes: u64) -> Result<String> {
    let count = |split: &str| -> (usize, usize) {
        stats.per.get(split).map_or((0, 0), |m| {
            m.values().fold((0, 0), |(n, t), &(a, b)| (n + a, t + b))
        })
    };
    let splits = ["train", "valid", "test", "diar", "valid_diar"];
    let total_samples: usize = splits.iter().map(|n| count(n).1).sum();
    let voices_of = |split: Split| VOICES.iter().filter(|v| v.split == split).count();
    let mut contents = String::new();
    for (name, what) in [
        (
            "train",
            format!("{} training voices", voices_of(Split::Train)),
        ),
        (
            "valid",
            format!("{} validation voice", voices_of(Split::Valid)),
        ),
        (
            "test",
            format!("{} held-out voices", voices_of(Split::Test)),
        ),
        (
            "diar",
            "held-out voices: neutral -> emotion -> neutral, neutral -> emotion, emotion -> \
             neutral, emotion only (columns: the emotional part)"
                .into(),
        ),
        (
            "valid_diar",
            "the validation voice in the same patterns, for choosing settings without the \
             held-out voices"
                .into(),
        ),
    ] {
        let m = stats.per.get(name);
        let n = |label: &str| m.and_then(|m| m.get(label)).map_or(0, |e| e.0);
        let (total, samples) = count(name);
        let _ = writeln!(
            contents,
            "| `{name}.json` | {what} | {total} | {} | {} | {} | {} | {} |",
            n("neu"),
            n("hap"),
            n("ang"),
            n("sad"),
            minutes(samples)
        );
    }
    let mut styles = String::new();
    for (style, name) in STYLES.iter().zip(["neutral", "happy", "angry", "sad"]) {
        let _ = writeln!(
            styles,
            "| `{}` | {name} | {:+} % | {} % | {} % | {} % |",
            style.emo, style.pitch, style.range, style.rate, style.volume
        );
    }
    let mut voices = String::new();
    for v in &VOICES {
        let split = match v.split {
            Split::Train => "train",
            Split::Valid => "valid, valid_diar",
            Split::Test => "test, diar",
        };
        let _ = writeln!(voices, "| `{}` | {} | {split} |", v.name, v.gender);
    }
    let rate = f64::from(RATE);
    let (mean, min, max) = stats.piece_lengths;
    let values: Vec<(&str, String)> = vec![
        (
            "utterances",
            splits.iter().map(|n| count(n).0).sum::<usize>().to_string(),
        ),
        ("audio", minutes(total_samples)),
        ("megabytes", format!("{:.1}", bytes as f64 / 1e6)),
        ("espeak", tools.espeak.clone()),
        ("flac", tools.flac.clone()),
        ("contents", contents),
        ("mean", format!("{:.2}", mean / rate)),
        ("min", format!("{:.2}", min as f64 / rate)),
        ("max", format!("{:.2}", max as f64 / rate)),
        ("gap", format!("{:.1}", 2.0 * PAD as f64 / rate)),
        ("base_amplitude", BASE_AMPLITUDE.to_string()),
        ("styles", styles),
        ("voices", voices),
        ("sentences", SENTENCES.len().to_string()),
        ("per_style", (SENTENCES.len() / STYLES.len()).to_string()),
        ("train_per_style", TRAIN_PER_STYLE.to_string()),
        ("valid_per_style", VALID_PER_STYLE.to_string()),
        ("test_per_style", TEST_PER_STYLE.to_string()),
        ("diar_per_voice", DIAR_PER_VOICE.to_string()),
        ("diar_per_other", DIAR_PER_OTHER_PATTERN.to_string()),
        ("valid_diar_per_voice", VALID_DIAR_PER_VOICE.to_string()),
        ("pad", format!("{:.1}", PAD as f64 / rate)),
        ("step", STEP.to_string()),
        ("bits", (16 - STEP.trailing_zeros()).to_string()),
        ("install", INSTALL.to_string()),
    ];
    fill(TEMPLATE, &values)
}

/// The README template.
const TEMPLATE: &str = include_str!("../../assets/demo-readme.md");

/// Replaces every `{name}` (lower-case letters and `_`) of `template` by its value; a name
/// without a value, or a value the template does not use, is an error.
pub(super) fn fill(template: &str, values: &[(&str, String)]) -> Result<String> {
    let mut out = String::with_capacity(template.len() * 2);
    let mut used = vec![false; values.len()];
    let mut rest = template;
    while let Some(open) = rest.find('{') {
        out.push_str(&rest[..open]);
        let after = &rest[open + 1..];
        let name_len = after
            .find(|c: char| !(c.is_ascii_lowercase() || c == '_'))
            .unwrap_or(after.len());
        if name_len > 0 && after[name_len..].starts_with('}') {
            let name = &after[..name_len];
            let k = values
                .iter()
                .position(|(n, _)| *n == name)
                .with_context(|| {
                    format!("the README template names {{{name}}}, which has no value")
                })?;
            out.push_str(&values[k].1);
            used[k] = true;
            rest = &after[name_len + 1..];
        } else {
            out.push('{');
            rest = after;
        }
    }
    out.push_str(rest);
    if let Some(k) = used.iter().position(|u| !u) {
        bail!("the README template does not use {{{}}}", values[k].0);
    }
    Ok(out)
}
