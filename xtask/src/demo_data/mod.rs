//! `cargo xtask demo-data [--check] [--out DIR]`: the synthetic demo corpus in `data/demo`.
//!
//! English sentences written for this project, synthesised with espeak-ng (formant synthesis, not
//! human speech) in several voices and four prosody styles that stand for neutral, happy, angry
//! and sad. The "emotions" are nothing but prosody settings (pitch, pitch range, rate, volume);
//! the corpus exists so that `ent demo` can train and evaluate a small model on CPU in minutes.
//!
//! Pipeline, per piece (one voice, one style, one sentence): espeak-ng writes a 22 050 Hz WAV to
//! its stdout, parsed here by hand; a windowed-sinc resampler brings it to 16 kHz; leading and
//! trailing silence is cut at a level relative to the piece's peak and exactly [`PAD`] samples
//! of digital silence are put back on each side; samples are rounded to multiples of [`STEP`]
//! (11 significant bits; FLAC stores the constant low bits as "wasted bits" for free). Utterances are one piece,
//! or for the diarization set three pieces of one voice back to back, so every boundary is an
//! exact sample count. `flac` encodes them (no padding, no seek table, fixed settings), so the
//! same espeak-ng and flac versions give byte-identical files.
//!
//! `--check` needs neither tool: it reads the manifests and every FLAC file's STREAMINFO header
//! and checks rates, channels, lengths against the stated durations, labels, transcripts, the
//! diarization intervals, stray files and the folder's size.

mod check;
mod manifest;
mod plan;
mod readme;
mod synth;

use check::*;
use manifest::*;
use plan::*;
use readme::*;
use synth::*;

use std::collections::{BTreeSet, HashMap};
use std::path::Path;
use std::time::Instant;

use anyhow::{Context, Result};

/// `cargo xtask demo-data [--check] [--out DIR]`.
/// `cargo xtask demo-data [--check]`: writes the corpus into `out`, or only checks it.
pub fn generate(out: &Path, check_only: bool) -> Result<()> {
    let out = out.to_path_buf();
    if check_only {
        let summary = check(&out)?;
        println!("{}: {summary}", out.display());
        return Ok(());
    }
    let started = Instant::now();
    let tools = tools()?;
    let splits = plan();
    let pieces: BTreeSet<Piece> = splits
        .values()
        .flatten()
        .flat_map(|u| u.pieces.iter().copied())
        .collect();
    let pieces: Vec<Piece> = pieces.into_iter().collect();
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
    let resampler = Resampler::new();

    println!("[1/5] checking the {} voices", VOICES.len());
    check_voices()?;
    println!(
        "[2/5] synthesising {} pieces with {} ({threads} threads)",
        pieces.len(),
        tools.espeak
    );
    let audio: Vec<Vec<i16>> = parallel(&pieces, threads, "synthesised", |p| {
        synthesise(p, &resampler).with_context(|| {
            format!(
                "voice {}, style {}, sentence {:?}",
                VOICES[p.voice].name, STYLES[p.style].emo, SENTENCES[p.sentence]
            )
        })
    })?;
    let audio: HashMap<Piece, Vec<i16>> = pieces.iter().copied().zip(audio).collect();

    let audio_dir = out.join("audio");
    if audio_dir.exists() {
        std::fs::remove_dir_all(&audio_dir)
            .with_context(|| format!("removing the old {}", audio_dir.display()))?;
    }
    std::fs::create_dir_all(&audio_dir)
        .with_context(|| format!("creating {}", audio_dir.display()))?;
    let utts: Vec<&Utt> = splits.values().flatten().collect();
    println!(
        "[3/5] encoding {} utterances with {} into {}",
        utts.len(),
        tools.flac,
        audio_dir.display()
    );
    let lengths: Vec<Vec<usize>> = parallel(&utts, threads, "encoded", |u| {
        let parts: Vec<&Vec<i16>> = u.pieces.iter().map(|p| &audio[p]).collect();
        let samples: Vec<i16> = parts.iter().flat_map(|s| s.iter().copied()).collect();
        let path = audio_dir.join(format!("{}.flac", u.id));
        encode(&samples, &path).with_context(|| format!("encoding {}", path.display()))?;
        Ok(parts.iter().map(|s| s.len()).collect())
    })?;
    let lengths: HashMap<&str, Vec<usize>> =
        utts.iter().map(|u| u.id.as_str()).zip(lengths).collect();

    println!("[4/5] writing the manifests and README.md");
    for (name, utts) in &splits {
        let text = if name.ends_with("diar") {
            zed_manifest(utts, &lengths)
        } else {
            speechbrain_manifest(utts, &lengths)
        };
        let path = out.join(format!("{name}.json"));
        std::fs::write(&path, text).with_context(|| format!("writing {}", path.display()))?;
    }
    let stats = Stats::new(&splits, &lengths);
    let audio_bytes = folder_bytes(&out)?;
    let readme = out.join("README.md");
    // The README states the folder's size, its own bytes included: rewritten until the number
    // it states no longer changes (once or twice).
    let mut text = readme_text(&stats, &tools, audio_bytes)?;
    for _ in 0..3 {
        std::fs::write(&readme, &text).with_context(|| format!("writing {}", readme.display()))?;
        let bytes = folder_bytes(&out)?;
        let next = readme_text(&stats, &tools, bytes)?;
        if next == text {
            break;
        }
        text = next;
    }

    println!("[5/5] checking {}", out.display());
    let summary = check(&out)?;
    println!(
        "{}: {summary} (generated in {:.0} s)",
        out.display(),
        started.elapsed().as_secs_f64()
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::collections::{BTreeMap, BTreeSet, HashMap};

    use serde_json::Value;

    use super::*;

    #[test]
    fn every_split_is_balanced_and_no_voice_repeats_a_sentence() {
        let splits = plan();
        for (name, utts) in &splits {
            let mut per_label: BTreeMap<&str, usize> = BTreeMap::new();
            for u in utts {
                let label = STYLES[u.pieces[u.emotional.as_ref().map_or(0, |r| r.start)].style].emo;
                *per_label.entry(label).or_default() += 1;
            }
            let counts: BTreeSet<usize> = per_label.values().copied().collect();
            assert_eq!(counts.len(), 1, "{name}: {per_label:?}");
        }
        let mut said: BTreeSet<(usize, usize)> = BTreeSet::new();
        let mut styles_of: BTreeMap<usize, BTreeSet<usize>> = BTreeMap::new();
        for u in splits.values().flatten().filter(|u| u.emotional.is_none()) {
            let p = u.pieces[0];
            assert!(said.insert((p.voice, p.sentence)), "{} twice", u.id);
            if VOICES[p.voice].split == Split::Train {
                styles_of.entry(p.sentence).or_default().insert(p.style);
            }
        }
        assert_eq!(styles_of.len(), SENTENCES.len(), "every sentence trains");
        assert!(styles_of.values().all(|s| s.len() == STYLES.len()));
    }

    #[test]
    fn sentences_are_in_the_vocabulary() {
        let distinct: BTreeSet<&str> = SENTENCES.iter().copied().collect();
        assert_eq!(distinct.len(), SENTENCES.len());
        for s in SENTENCES {
            let n = s.split(' ').count();
            assert!((3..=7).contains(&n), "{s:?}");
            assert!(
                s.chars()
                    .all(|c| c.is_ascii_lowercase() || c == ' ' || c == '\'')
            );
        }
    }

    #[test]
    fn manifests_write_exact_seconds_one_entry_per_line() {
        for n in [1_600usize, 16_000, 19_185, 24_425, 82_600] {
            let text = serde_json::to_string(&secs(n)).unwrap();
            assert_eq!(text.parse::<f64>().unwrap() * 16_000.0, n as f64, "{text}");
            assert!(text.len() <= 9, "{text}: at most 7 decimals");
        }
        assert_eq!(serde_json::to_string(&secs(24_425)).unwrap(), "1.5265625");
        let splits = plan();
        let utts = &splits["test"][..2];
        let lengths: HashMap<&str, Vec<usize>> =
            utts.iter().map(|u| (u.id.as_str(), vec![19_185])).collect();
        let text = speechbrain_manifest(utts, &lengths);
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 4, "{text}");
        assert!(
            lines[1].contains(", \"duration\": 1.1990625, "),
            "{}",
            lines[1]
        );
        let parsed: Value = serde_json::from_str(&text).unwrap();
        assert_eq!(parsed.as_object().unwrap().len(), 2);
        assert_eq!(
            parsed[&utts[0].id]["emo"],
            STYLES[utts[0].pieces[0].style].emo
        );
    }

    #[test]
    fn resampler_keeps_a_tone_and_the_length() {
        let r = Resampler::new();
        let n = 22_050;
        let x: Vec<f64> = (0..n)
            .map(|i| (2.0 * std::f64::consts::PI * 1_000.0 * i as f64 / 22_050.0).sin())
            .collect();
        let y = r.run(&x);
        assert_eq!(y.len(), 16_000);
        // Away from the edges the 1 kHz tone keeps its amplitude and phase.
        for (k, v) in y.iter().enumerate().take(15_900).skip(100) {
            let want = (2.0 * std::f64::consts::PI * 1_000.0 * k as f64 / 16_000.0).sin();
            assert!((v - want).abs() < 1e-3, "sample {k}: {v} vs {want}");
        }
        // A tone above the new Nyquist frequency is removed.
        let x: Vec<f64> = (0..n)
            .map(|i| (2.0 * std::f64::consts::PI * 9_000.0 * i as f64 / 22_050.0).sin())
            .collect();
        let peak = r.run(&x)[100..15_900]
            .iter()
            .fold(0.0f64, |m, v| m.max(v.abs()));
        assert!(peak < 1e-3, "9 kHz leaks through at {peak}");
    }

    #[test]
    fn wav_from_a_pipe_is_read_to_its_end() {
        let mut b = Vec::new();
        b.extend_from_slice(b"RIFF");
        b.extend_from_slice(&u32::MAX.to_le_bytes());
        b.extend_from_slice(b"WAVEfmt ");
        b.extend_from_slice(&16u32.to_le_bytes());
        b.extend_from_slice(&1u16.to_le_bytes());
        b.extend_from_slice(&1u16.to_le_bytes());
        b.extend_from_slice(&ESPEAK_RATE.to_le_bytes());
        b.extend_from_slice(&(ESPEAK_RATE * 2).to_le_bytes());
        b.extend_from_slice(&2u16.to_le_bytes());
        b.extend_from_slice(&16u16.to_le_bytes());
        b.extend_from_slice(b"data");
        b.extend_from_slice(&u32::MAX.to_le_bytes());
        for s in [1i16, -2, 300] {
            b.extend_from_slice(&s.to_le_bytes());
        }
        assert_eq!(parse_wav(&b).unwrap(), vec![1, -2, 300]);
        assert!(parse_wav(&b[..20]).is_err());
    }
}
