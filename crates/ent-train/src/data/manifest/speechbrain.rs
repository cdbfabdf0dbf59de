//! SpeechBrain-style JSON manifests.

use std::path::Path;

use serde_json::Value;

use super::json::{Entries, Fields, parse_entries};
use super::{audio_path, check_duplicates, read_text};
use crate::data::{DataError, Utterance};

const AUDIO: &[&str] = &["wav", "file", "path"];
const DURATION: &[&str] = &["length", "duration"];
const EMOTION: &[&str] = &["emo", "emotion"];
const TEXT: &[&str] = &["words", "text", "transcription", "wrd"];
const SPEAKER: &[&str] = &["spk_id", "speaker"];
const GENDER: &[&str] = &["gender"];
const INTENSITY: &[&str] = &["intensity", "arousal"];
const SESSION: &[&str] = &["session"];

/// Reads a SpeechBrain-style JSON manifest, `{id: {wav, length, emo, ...}}`, in file order.
///
/// Keys (the first present wins): audio `wav` | `file` | `path` (required); duration in seconds
/// `length` | `duration`; label `emo` | `emotion`; transcript `words` | `text` |
/// `transcription` | `wrd`; speaker `spk_id` | `speaker`; `gender`; intensity `intensity` |
/// `arousal`; `session`. Other keys are ignored, except `start` / `stop`, which are refused
/// (SpeechBrain writes them in samples or seconds depending on the recipe).
///
/// `{data_root}` in audio paths is replaced by `data_root` (an error naming the utterance if it
/// is used and `data_root` is `None`); relative paths are resolved against the manifest's folder.
pub fn read_speechbrain(
    path: &Path,
    data_root: Option<&Path>,
) -> Result<Vec<Utterance>, DataError> {
    let text = read_text(path)?;
    let entries = parse_entries(path, &text)?;
    from_entries(path, entries, data_root)
}

pub(super) fn from_entries(
    path: &Path,
    entries: Entries,
    data_root: Option<&Path>,
) -> Result<Vec<Utterance>, DataError> {
    let mut utts = Vec::with_capacity(entries.0.len());
    for (id, value) in entries.0 {
        utts.push(entry(path, &id, &value, data_root)?);
    }
    check_duplicates(path, &utts)?;
    Ok(utts)
}

fn entry(
    path: &Path,
    id: &str,
    value: &Value,
    data_root: Option<&Path>,
) -> Result<Utterance, DataError> {
    let err = |detail: String| DataError::entry(path, None, id, detail);
    let f = Fields::of(value).map_err(err)?;
    if let Some((k, _)) = f.find(&["start", "stop"]) {
        return Err(DataError::unsupported(
            path,
            None,
            format!(
                "utterance {id}: `{k}` (a segment of the file) is not supported in SpeechBrain \
                 manifests, as its unit differs between recipes; cut the audio or use a Kaldi \
                 directory with a segments file"
            ),
        ));
    }
    if let Some(Value::Array(_)) = f.find(EMOTION).map(|(_, v)| v) {
        return Err(err(
            "the emotion is a list of intervals: read this manifest as ZED".into(),
        ));
    }
    let raw_audio = f
        .string(AUDIO)
        .map_err(err)?
        .ok_or_else(|| err("no audio path (wav, file or path)".into()))?;
    let audio = audio_path(path, id, &raw_audio, data_root, None)?;
    let duration = f.number(DURATION).map_err(err)?;
    if let Some(d) = duration
        && d <= 0.0
    {
        return Err(err(format!("duration {d} s is not positive")));
    }
    let session = match f.number(SESSION).map_err(err)? {
        None => None,
        Some(s) if s >= 0.0 && s.fract() == 0.0 && s <= u32::MAX as f64 => Some(s as u32),
        Some(s) => return Err(err(format!("session {s} is not a whole number"))),
    };
    Ok(Utterance {
        duration,
        text: f.string(TEXT).map_err(err)?,
        emotion: f.label(EMOTION).map_err(err)?,
        speaker: f.label(SPEAKER).map_err(err)?,
        gender: f.string(GENDER).map_err(err)?,
        intensity: f.number(INTENSITY).map_err(err)?.map(|x| x as f32),
        session,
        ..Utterance::new(id, audio)
    })
}
