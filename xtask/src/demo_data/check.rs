//! `--check`: the manifests against every FLAC header, without espeak-ng or flac.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use anyhow::{Context, Result, ensure};
use serde_json::Value;

use super::readme::*;
use super::synth::*;

/// The corpus folder may hold at most this many bytes.
pub(super) const MAX_BYTES: u64 = 10_000_000;

/// The manifests, in the order they are described.
pub(super) const MANIFESTS: [&str; 5] = [
    "train.json",
    "valid.json",
    "test.json",
    "diar.json",
    "valid_diar.json",
];

/// What a FLAC file's STREAMINFO says.
#[derive(Debug, Clone, Copy)]
pub(super) struct StreamInfo {
    pub(super) rate: u32,
    pub(super) channels: u32,
    pub(super) bits: u32,
    pub(super) samples: u64,
}

/// Reads the STREAMINFO block, which a FLAC file must start with.
pub(super) fn stream_info(path: &Path) -> Result<StreamInfo> {
    use std::io::Read as _;
    let mut head = [0u8; 42];
    std::fs::File::open(path)
        .and_then(|mut f| f.read_exact(&mut head))
        .with_context(|| format!("reading the header of {}", path.display()))?;
    ensure!(
        &head[..4] == b"fLaC",
        "{} is not a FLAC file",
        path.display()
    );
    let block_type = head[4] & 0x7f;
    let len = u32::from_be_bytes([0, head[5], head[6], head[7]]);
    ensure!(
        block_type == 0 && len == 34,
        "{}: the first metadata block is not STREAMINFO",
        path.display()
    );
    let b = &head[8..42];
    // Bytes 10..18: sample rate (20 bits), channels - 1 (3), bits - 1 (5), total samples (36).
    let packed = u64::from_be_bytes([b[10], b[11], b[12], b[13], b[14], b[15], b[16], b[17]]);
    Ok(StreamInfo {
        rate: (packed >> 44) as u32,
        channels: ((packed >> 41) & 0x7) as u32 + 1,
        bits: ((packed >> 36) & 0x1f) as u32 + 1,
        samples: packed & 0xf_ffff_ffff,
    })
}

/// Checks the corpus in `dir` and returns a one-line summary.
pub fn check(dir: &Path) -> Result<String> {
    let labels = ["neu", "hap", "ang", "sad"];
    let mut referenced = BTreeSet::new();
    let mut ids = BTreeSet::new();
    let mut summary = Vec::new();
    let mut total_secs = 0.0;
    for name in MANIFESTS {
        let path = dir.join(name);
        let text = std::fs::read_to_string(&path)
            .with_context(|| format!("reading {} (run `cargo xtask demo-data`)", path.display()))?;
        let json: Value =
            serde_json::from_str(&text).with_context(|| format!("parsing {}", path.display()))?;
        let entries = json
            .as_object()
            .with_context(|| format!("{} is not a JSON object", path.display()))?;
        ensure!(!entries.is_empty(), "{} is empty", path.display());
        let diar = name.ends_with("diar.json");
        let mut per_label: BTreeMap<String, usize> = BTreeMap::new();
        let mut secs_sum = 0.0;
        for (id, e) in entries {
            let ctx = || format!("{}: utterance {id}", path.display());
            ensure!(ids.insert(id.clone()), "{}: id used twice", ctx());
            let wav = e["wav"]
                .as_str()
                .with_context(|| format!("{}: no wav", ctx()))?;
            ensure!(
                referenced.insert(wav.to_string()),
                "{}: {wav} is used twice",
                ctx()
            );
            let info = stream_info(&dir.join(wav)).with_context(ctx)?;
            ensure!(
                info.rate == RATE && info.channels == 1 && info.bits == 16,
                "{}: {} Hz, {} channels, {} bits instead of {RATE} Hz mono 16-bit",
                ctx(),
                info.rate,
                info.channels,
                info.bits
            );
            let duration = e["duration"]
                .as_f64()
                .with_context(|| format!("{}: no duration", ctx()))?;
            let actual = info.samples as f64 / f64::from(RATE);
            ensure!(
                info.samples > 0 && (duration - actual).abs() <= 0.001,
                "{}: the manifest says {duration} s, the file holds {actual} s",
                ctx()
            );
            secs_sum += actual;
            let text_key = if diar { "transcription" } else { "words" };
            let text = e[text_key]
                .as_str()
                .with_context(|| format!("{}: no {text_key}", ctx()))?;
            ensure!(
                !text.is_empty()
                    && text
                        .chars()
                        .all(|c| c.is_ascii_uppercase() || c == ' ' || c == '\'')
                    && !text.contains("  ")
                    && text.trim() == text,
                "{}: transcript {text:?} is not upper-case letters, apostrophes and single spaces",
                ctx()
            );
            ensure!(
                matches!(e["gender"].as_str(), Some("f" | "m")),
                "{}: gender is not f or m",
                ctx()
            );
            ensure!(e["spk_id"].is_string(), "{}: no spk_id", ctx());
            let label = if diar {
                let intervals = e["emotion"]
                    .as_array()
                    .with_context(|| format!("{}: emotion is not a list", ctx()))?;
                ensure!(
                    intervals.len() == 1,
                    "{}: {} intervals instead of one",
                    ctx(),
                    intervals.len()
                );
                let iv = &intervals[0];
                let (start, end) = (
                    iv["start"].as_f64().unwrap_or(-1.0),
                    iv["end"].as_f64().unwrap_or(-1.0),
                );
                // Emotion first, last or throughout: the interval may touch either end.
                ensure!(
                    0.0 <= start && start < end && end <= duration + 1e-9,
                    "{}: interval [{start}, {end}] is not inside [0, {duration}]",
                    ctx()
                );
                iv["emo"].as_str().unwrap_or_default()
            } else {
                e["emo"].as_str().unwrap_or_default()
            };
            ensure!(
                labels.contains(&label) && !(diar && label == "neu"),
                "{}: label {label:?}",
                ctx()
            );
            *per_label.entry(label.to_string()).or_default() += 1;
        }
        total_secs += secs_sum;
        let counts: Vec<String> = labels
            .iter()
            .filter_map(|l| per_label.get(*l).map(|n| format!("{l} {n}")))
            .collect();
        summary.push(format!(
            "{} {} ({}, {:.1} min)",
            name.trim_end_matches(".json"),
            entries.len(),
            counts.join(" "),
            secs_sum / 60.0
        ));
    }
    let audio = dir.join("audio");
    for entry in
        std::fs::read_dir(&audio).with_context(|| format!("listing {}", audio.display()))?
    {
        let name = format!("audio/{}", entry?.file_name().to_string_lossy());
        ensure!(
            referenced.contains(&name),
            "{}: {name} is in no manifest",
            dir.display()
        );
    }
    ensure!(
        dir.join("README.md").is_file(),
        "{}: no README.md",
        dir.display()
    );
    let bytes = folder_bytes(dir)?;
    ensure!(
        bytes <= MAX_BYTES,
        "{} holds {bytes} bytes, more than {MAX_BYTES}",
        dir.display()
    );
    Ok(format!(
        "ok: {}; {:.1} min, {:.2} MB",
        summary.join(", "),
        total_secs / 60.0,
        bytes as f64 / 1e6
    ))
}
