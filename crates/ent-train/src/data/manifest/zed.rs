//! ZED (Zaion Emotion Dataset) `ZED.json`.

use std::path::{Path, PathBuf};

use serde_json::Value;

use super::json::{Entries, Fields, kind, parse_entries};
use super::{audio_path, base_dir, check_duplicates, read_text};
use crate::data::{DataError, EmotionInterval, SentenceSpan, Utterance, normalize_text};

/// Reads ZED's `ZED.json` (or a directory holding it): `{id: {wav, duration, emotion: [{emo,
/// start, end}], transcription}}`, in file order.
///
/// Each utterance keeps its intervals (seconds from its start, `0 <= start < end`); its
/// utterance-level `emotion` is the label of the first interval that is not neutral (`neu`,
/// `neutral` or `n`, any case), else of the first interval. ZED lists only the emotional
/// interval; the rest of the utterance is neutral (spec §6, EDER).
///
/// An entry may also say where each of its sentences is said, `sentences: [{start, end,
/// text}]` (not part of ZED; the demo's diarization set has it), for scoring token times. The
/// sentences must be in order, not overlap, and make up the transcription (after
/// normalisation, joined by spaces).
///
/// Audio paths: SpeechBrain's recipe writes them as `datafolder/...`, a leading `datafolder`
/// component that stands for `data_root`, or when that is `None` the folder of `ZED.json`.
/// `{data_root}` works as in [`crate::data::read_speechbrain`]. Relative paths are resolved
/// against the folder of `ZED.json`.
pub fn read_zed(path: &Path, data_root: Option<&Path>) -> Result<Vec<Utterance>, DataError> {
    let file: PathBuf = if path.is_dir() {
        path.join("ZED.json")
    } else {
        path.to_path_buf()
    };
    let text = read_text(&file)?;
    let entries = parse_entries(&file, &text)?;
    from_entries(&file, entries, data_root)
}

pub(super) fn from_entries(
    path: &Path,
    entries: Entries,
    data_root: Option<&Path>,
) -> Result<Vec<Utterance>, DataError> {
    let folder = base_dir(path);
    let mut utts = Vec::with_capacity(entries.0.len());
    for (id, value) in entries.0 {
        utts.push(entry(path, &folder, &id, &value, data_root)?);
    }
    check_duplicates(path, &utts)?;
    Ok(utts)
}

fn is_neutral(label: &str) -> bool {
    matches!(
        label.trim().to_lowercase().as_str(),
        "n" | "neu" | "neutral"
    )
}

fn entry(
    path: &Path,
    folder: &Path,
    id: &str,
    value: &Value,
    data_root: Option<&Path>,
) -> Result<Utterance, DataError> {
    let err = |detail: String| DataError::entry(path, None, id, detail);
    let f = Fields::of(value).map_err(err)?;
    let raw_audio = f
        .string(&["wav", "file", "path"])
        .map_err(err)?
        .ok_or_else(|| err("no audio path (wav)".into()))?;
    let audio = audio_path(path, id, &raw_audio, data_root, Some(folder))?;
    let duration = f.number(&["duration", "length"]).map_err(err)?;
    if let Some(d) = duration
        && d <= 0.0
    {
        return Err(err(format!("duration {d} s is not positive")));
    }
    let intervals = match f.find(&["emotion"]) {
        None => Vec::new(),
        Some((_, Value::Array(items))) => items
            .iter()
            .enumerate()
            .map(|(i, item)| {
                interval(item, duration).map_err(|d| err(format!("emotion[{i}]: {d}")))
            })
            .collect::<Result<Vec<_>, _>>()?,
        Some((_, v)) => {
            return Err(err(format!(
                "emotion is {}, not a list of {{emo, start, end}} intervals",
                kind(v)
            )));
        }
    };
    let emotion = intervals
        .iter()
        .find(|iv| !is_neutral(&iv.emotion))
        .or(intervals.first())
        .map(|iv| iv.emotion.clone());
    let text = f
        .string(&["transcription", "text", "words", "wrd"])
        .map_err(err)?;
    let sentences = match f.find(&["sentences"]) {
        None => Vec::new(),
        Some((_, Value::Array(items))) => {
            sentences(items, duration, text.as_deref()).map_err(err)?
        }
        Some((_, v)) => {
            return Err(err(format!(
                "sentences is {}, not a list of {{start, end, text}}",
                kind(v)
            )));
        }
    };
    Ok(Utterance {
        duration,
        text,
        emotion,
        intervals,
        sentences,
        ..Utterance::new(id, audio)
    })
}

/// The `sentences` of an entry, checked against each other and the transcription.
fn sentences(
    items: &[Value],
    duration: Option<f64>,
    transcription: Option<&str>,
) -> Result<Vec<SentenceSpan>, String> {
    let mut out: Vec<SentenceSpan> = Vec::with_capacity(items.len());
    for (i, item) in items.iter().enumerate() {
        let bad = |d: String| format!("sentences[{i}]: {d}");
        let Value::Object(map) = item else {
            return Err(bad(format!("is {}, not an object", kind(item))));
        };
        let f = Fields(map);
        let start = f
            .number(&["start"])
            .map_err(bad)?
            .ok_or(bad("no start".into()))?;
        let end = f
            .number(&["end"])
            .map_err(bad)?
            .ok_or(bad("no end".into()))?;
        let text = f
            .string(&["text", "words"])
            .map_err(bad)?
            .ok_or(bad("no text".into()))?;
        if !(0.0 <= start && start < end) || duration.is_some_and(|d| start >= d) {
            return Err(bad(format!(
                "[{start}, {end}] s is not 0 <= start < end inside the utterance"
            )));
        }
        if let Some(prev) = out.last()
            && start < prev.end
        {
            return Err(bad(format!(
                "starts at {start} s, before the previous sentence ends ({} s)",
                prev.end
            )));
        }
        out.push(SentenceSpan { start, end, text });
    }
    let joined: Vec<String> = out.iter().map(|s| normalize_text(&s.text)).collect();
    let whole = normalize_text(transcription.unwrap_or_default());
    if !out.is_empty() && joined.join(" ") != whole {
        return Err(format!(
            "the sentences ({:?}) do not make up the transcription ({whole:?})",
            joined.join(" | ")
        ));
    }
    Ok(out)
}

fn interval(item: &Value, duration: Option<f64>) -> Result<EmotionInterval, String> {
    let Value::Object(map) = item else {
        return Err(format!("is {}, not an object", kind(item)));
    };
    let f = Fields(map);
    let emotion = f
        .label(&["emo", "emotion"])?
        .ok_or_else(|| "no label (emo)".to_string())?;
    let start = f.number(&["start"])?.ok_or("no start")?;
    let end = f.number(&["end"])?.ok_or("no end")?;
    if !(0.0 <= start && start < end) {
        return Err(format!(
            "interval [{start}, {end}] s is not 0 <= start < end"
        ));
    }
    if let Some(d) = duration
        && start >= d
    {
        return Err(format!(
            "interval [{start}, {end}] s starts after the utterance's {d} s"
        ));
    }
    Ok(EmotionInterval {
        emotion,
        start,
        end,
    })
}
