//! Lhotse cut manifests (JSONL, optionally gzipped).

use std::io::Read;
use std::path::Path;

use ent_features::Segment;
use flate2::read::MultiGzDecoder;
use serde_json::{Map, Value};

use super::json::{Fields, kind};
use super::{base_dir, check_duplicates, resolve, utf8};
use crate::data::{DataError, Utterance};

/// Whether `bytes` start with the gzip magic number.
pub(super) fn is_gzip(bytes: &[u8]) -> bool {
    bytes.starts_with(&[0x1f, 0x8b])
}

/// Reads a Lhotse cut manifest: one `MonoCut` per line, as `CutSet.to_file("cuts.jsonl.gz")`
/// writes it. Gzip is recognised by its magic bytes, whatever the file is called.
///
/// Per cut: `id`; `start` and `duration` (seconds) give the utterance's
/// `Segment { offset: start, duration }` of the recording; `recording.sources` must hold a
/// `file` source (one, or one per channel, of which the cut's `channel` is used), resolved
/// against the manifest's folder. Other source types (`url`, `command`, `memory`, `shar`),
/// mixed cuts and recording transforms other than resampling are refused with an error naming
/// the line: ent reads plain audio files and does not apply them.
///
/// From the supervisions: transcript = their `text`s joined by spaces (`None` if none has one);
/// emotion = `emotion`, or `custom.emotion` (an error if supervisions disagree); `speaker`,
/// `gender` and `custom.intensity` | `custom.arousal` from the first supervision that has them.
pub fn read_lhotse(path: &Path) -> Result<Vec<Utterance>, DataError> {
    let bytes = std::fs::read(path).map_err(|e| DataError::io(path, e))?;
    from_bytes(path, &bytes)
}

pub(super) fn from_bytes(path: &Path, bytes: &[u8]) -> Result<Vec<Utterance>, DataError> {
    let text = if is_gzip(bytes) {
        let mut out = Vec::new();
        MultiGzDecoder::new(bytes)
            .read_to_end(&mut out)
            .map_err(|e| DataError::io(path, e))?;
        utf8(path, out)?
    } else {
        utf8(path, bytes.to_vec())?
    };
    from_text(path, &text)
}

pub(super) fn from_text(path: &Path, text: &str) -> Result<Vec<Utterance>, DataError> {
    let base = base_dir(path);
    let mut utts = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let line_no = i + 1;
        if line.trim().is_empty() {
            continue;
        }
        let value: Value = serde_json::from_str(line)
            .map_err(|e| DataError::syntax(path, Some(line_no), format!("invalid JSON: {e}")))?;
        let Value::Object(cut) = value else {
            return Err(DataError::syntax(
                path,
                Some(line_no),
                format!("a cut must be a JSON object, not {}", kind(&value)),
            ));
        };
        utts.push(cut_to_utterance(path, &base, line_no, &cut)?);
    }
    check_duplicates(path, &utts)?;
    Ok(utts)
}

fn cut_to_utterance(
    path: &Path,
    base: &Path,
    line: usize,
    cut: &Map<String, Value>,
) -> Result<Utterance, DataError> {
    let f = Fields(cut);
    let id = match f.label(&["id"]) {
        Ok(Some(id)) => id,
        Ok(None) => return Err(DataError::syntax(path, Some(line), "the cut has no id")),
        Err(e) => return Err(DataError::syntax(path, Some(line), e)),
    };
    let err = |detail: String| DataError::entry(path, Some(line), &id, detail);
    let unsupported =
        |detail: String| DataError::unsupported(path, Some(line), format!("cut {id}: {detail}"));

    let cut_type = f.string(&["type"]).map_err(err)?;
    if cut_type.as_deref().is_some_and(|t| t != "MonoCut") || cut.contains_key("tracks") {
        return Err(unsupported(format!(
            "{} is not supported; ent reads MonoCuts (use `cuts.to_mono()` or save the mixed \
             audio to files)",
            cut_type
                .as_deref()
                .unwrap_or("a cut with tracks (MixedCut)")
        )));
    }
    let start = f.number(&["start"]).map_err(err)?.unwrap_or(0.0);
    let duration = f
        .number(&["duration"])
        .map_err(err)?
        .ok_or_else(|| err("no duration".into()))?;
    if start < 0.0 || duration <= 0.0 {
        return Err(err(format!(
            "start {start} s and duration {duration} s must be >= 0 and > 0"
        )));
    }
    let channel = match cut.get("channel") {
        Some(Value::Number(n)) => n.as_u64(),
        _ => None,
    };

    let Some(Value::Object(rec)) = cut.get("recording") else {
        return Err(err("no recording object".into()));
    };
    if let Some(Value::Array(transforms)) = rec.get("transforms") {
        for t in transforms {
            let name = t.get("name").and_then(Value::as_str).unwrap_or("?");
            if name != "Resample" {
                return Err(unsupported(format!(
                    "recording transform {name:?} is not applied by ent; save the transformed \
                     audio to files"
                )));
            }
        }
    }
    let Some(Value::Array(sources)) = rec.get("sources") else {
        return Err(err("the recording has no sources".into()));
    };
    let source = match sources.as_slice() {
        [] => return Err(err("the recording has no sources".into())),
        [one] => one,
        many => many
            .iter()
            .find(|s| {
                let chans = s.get("channels").and_then(Value::as_array);
                chans.is_some_and(|c| c.iter().any(|x| x.as_u64() == channel))
            })
            .ok_or_else(|| {
                err(format!(
                    "{} sources and none holds the cut's channel {channel:?}",
                    many.len()
                ))
            })?,
    };
    let source_type = source.get("type").and_then(Value::as_str).unwrap_or("");
    if source_type != "file" {
        return Err(unsupported(format!(
            "audio source of type {source_type:?} is not supported; ent reads files \
             (type \"file\")"
        )));
    }
    let Some(Value::String(file)) = source.get("source") else {
        return Err(err("the file source has no path (source)".into()));
    };
    if file.trim().is_empty() {
        return Err(err("empty audio path".into()));
    }

    let sups: Vec<&Map<String, Value>> = match cut.get("supervisions") {
        None | Some(Value::Null) => Vec::new(),
        Some(Value::Array(items)) => items
            .iter()
            .map(|s| match s {
                Value::Object(m) => Ok(m),
                other => Err(err(format!(
                    "a supervision is {}, not an object",
                    kind(other)
                ))),
            })
            .collect::<Result<_, _>>()?,
        Some(other) => {
            return Err(err(format!(
                "supervisions is {}, not an array",
                kind(other)
            )));
        }
    };
    let mut texts = Vec::new();
    let mut emotion: Option<String> = None;
    let mut speaker = None;
    let mut gender = None;
    let mut intensity = None;
    for s in &sups {
        let sf = Fields(s);
        let custom = s.get("custom").and_then(Value::as_object);
        let cf = custom.map(Fields);
        if let Some(t) = sf.string(&["text"]).map_err(err)? {
            texts.push(t);
        }
        let emo = match sf.label(&["emotion"]).map_err(err)? {
            Some(e) => Some(e),
            None => cf
                .as_ref()
                .map(|c| c.label(&["emotion"]))
                .transpose()
                .map_err(|e| err(format!("custom.{e}")))?
                .flatten(),
        };
        if let Some(e) = emo {
            match &emotion {
                Some(prev) if *prev != e => {
                    return Err(err(format!(
                        "supervisions disagree on the emotion: {prev:?} and {e:?}"
                    )));
                }
                _ => emotion = Some(e),
            }
        }
        if speaker.is_none() {
            speaker = sf.label(&["speaker"]).map_err(err)?;
        }
        if gender.is_none() {
            gender = sf.string(&["gender"]).map_err(err)?;
        }
        if intensity.is_none()
            && let Some(c) = &cf
        {
            intensity = c
                .number(&["intensity", "arousal"])
                .map_err(|e| err(format!("custom.{e}")))?;
        }
    }
    let has_text = sups.iter().any(|s| s.contains_key("text"));
    Ok(Utterance {
        segment: Segment::new(start, duration),
        duration: Some(duration),
        text: has_text.then(|| texts.join(" ")),
        emotion,
        speaker,
        gender,
        intensity: intensity.map(|x| x as f32),
        ..Utterance::new(id.clone(), resolve(base, file))
    })
}
