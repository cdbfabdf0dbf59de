//! The manifests: SpeechBrain-style JSON for the single sentences, ZED-style for diarization.

use std::collections::HashMap;

use serde::Serialize;

use super::plan::*;
use super::synth::*;

/// Seconds of `samples` samples. A multiple of 1/16000 s has at most 7 decimals, and
/// serde_json writes the shortest decimal that reads back as the same f64: that exact value.
pub(super) fn secs(samples: usize) -> f64 {
    samples as f64 / f64::from(RATE)
}

pub(super) fn words(sentence: usize) -> String {
    SENTENCES[sentence].to_uppercase()
}

/// An entry of `train.json`, `valid.json`, `test.json`.
#[derive(Serialize)]
struct SpeechBrainEntry<'a> {
    wav: String,
    duration: f64,
    emo: &'a str,
    words: String,
    spk_id: &'a str,
    gender: &'a str,
}

/// The emotional interval of a diarization utterance.
#[derive(Serialize)]
struct ZedInterval<'a> {
    emo: &'a str,
    start: f64,
    end: f64,
}

/// Where one piece of a diarization utterance is said (an extension of ZED's format that
/// `ent` reads to score token times).
#[derive(Serialize)]
struct ZedSentence {
    start: f64,
    end: f64,
    text: String,
}

/// An entry of `diar.json`.
#[derive(Serialize)]
struct ZedEntry<'a> {
    wav: String,
    duration: f64,
    emotion: [ZedInterval<'a>; 1],
    transcription: String,
    sentences: Vec<ZedSentence>,
    spk_id: &'a str,
    gender: &'a str,
}

/// serde_json's compact layout with a space after every `:` and `,`: `{"wav": "a.flac",
/// "duration": 1.5}`.
struct Spaced;

impl serde_json::ser::Formatter for Spaced {
    fn begin_object_key<W: ?Sized + std::io::Write>(
        &mut self,
        w: &mut W,
        first: bool,
    ) -> std::io::Result<()> {
        if first { Ok(()) } else { w.write_all(b", ") }
    }

    fn begin_object_value<W: ?Sized + std::io::Write>(&mut self, w: &mut W) -> std::io::Result<()> {
        w.write_all(b": ")
    }

    fn begin_array_value<W: ?Sized + std::io::Write>(
        &mut self,
        w: &mut W,
        first: bool,
    ) -> std::io::Result<()> {
        if first { Ok(()) } else { w.write_all(b", ") }
    }
}

fn spaced<T: Serialize + ?Sized>(value: &T) -> String {
    let mut out = Vec::new();
    let mut ser = serde_json::Serializer::with_formatter(&mut out, Spaced);
    value
        .serialize(&mut ser)
        .expect("a manifest entry serialises");
    String::from_utf8(out).expect("serde_json writes UTF-8")
}

/// `{id: entry, ...}` with one entry per line, in the given order.
fn one_per_line<T: Serialize>(entries: &[(&str, T)]) -> String {
    let lines: Vec<String> = entries
        .iter()
        .map(|(id, e)| format!("  {}: {}", spaced(*id), spaced(e)))
        .collect();
    format!("{{\n{}\n}}\n", lines.join(",\n"))
}

/// `{id: {wav, duration, emo, words, spk_id, gender}}`.
pub(super) fn speechbrain_manifest(utts: &[Utt], lengths: &HashMap<&str, Vec<usize>>) -> String {
    let entries: Vec<(&str, SpeechBrainEntry)> = utts
        .iter()
        .map(|u| {
            let p = u.pieces[0];
            let voice = &VOICES[p.voice];
            let entry = SpeechBrainEntry {
                wav: format!("audio/{}.flac", u.id),
                duration: secs(lengths[u.id.as_str()].iter().sum()),
                emo: STYLES[p.style].emo,
                words: words(p.sentence),
                spk_id: voice.name,
                gender: voice.gender,
            };
            (u.id.as_str(), entry)
        })
        .collect();
    one_per_line(&entries)
}

/// ZED style: `{id: {wav, duration, emotion: [{emo, start, end}], transcription}}`, only the
/// emotional interval listed, plus `sentences` (where each piece is said), `spk_id` and
/// `gender`.
pub(super) fn zed_manifest(utts: &[Utt], lengths: &HashMap<&str, Vec<usize>>) -> String {
    let entries: Vec<(&str, ZedEntry)> = utts
        .iter()
        .map(|u| {
            let lens = &lengths[u.id.as_str()];
            let k = u
                .emotional
                .clone()
                .expect("diarization utterances have an emotional piece");
            let start: usize = lens[..k.start].iter().sum();
            let end: usize = lens[..k.end].iter().sum();
            let voice = &VOICES[u.pieces[0].voice];
            let text: Vec<String> = u.pieces.iter().map(|p| words(p.sentence)).collect();
            let entry = ZedEntry {
                wav: format!("audio/{}.flac", u.id),
                duration: secs(lens.iter().sum()),
                emotion: [ZedInterval {
                    emo: STYLES[u.pieces[k.start].style].emo,
                    start: secs(start),
                    end: secs(end),
                }],
                transcription: text.join(" "),
                sentences: text
                    .iter()
                    .enumerate()
                    .map(|(i, t)| ZedSentence {
                        start: secs(lens[..i].iter().sum()),
                        end: secs(lens[..=i].iter().sum()),
                        text: t.clone(),
                    })
                    .collect(),
                spk_id: voice.name,
                gender: voice.gender,
            };
            (u.id.as_str(), entry)
        })
        .collect();
    one_per_line(&entries)
}
