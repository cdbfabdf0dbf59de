//! The IEMOCAP release layout.

use std::collections::{BTreeSet, HashMap};
use std::path::{Path, PathBuf};

use super::{check_duplicates, read_text};
use crate::data::{DataError, Utterance};

/// The labels of the 4-class protocol (spec §6): neutral, happy, excited (merged into happy by
/// [`crate::data::EmotionMap::default`]), angry, sad.
const KEPT: [&str; 5] = ["neu", "hap", "exc", "ang", "sad"];

/// Reads the IEMOCAP release (the folder holding `Session1` .. `Session5`) under the 4-class
/// protocol: utterances labelled `neu`, `hap`, `exc`, `ang` or `sad`; `fru`, `sur`, `fea`, `dis`,
/// `oth` and `xxx` (no agreement) are left out. On the full corpus this gives 5531 utterances.
///
/// - Labels: `SessionN/dialog/EmoEvaluation/<dialog>.txt`, lines
///   `[start - end]<TAB>utt_id<TAB>label<TAB>[v, a, d]`; other lines (the evaluators' own
///   ratings, headers) are skipped. `intensity` is the arousal `a` (1 to 5).
/// - Transcripts: `SessionN/dialog/transcriptions/<dialog>.txt`, lines
///   `utt_id [start-end]: text`; an utterance without one has `text` `None`.
/// - Audio: `SessionN/sentences/wav/<dialog>/<utt_id>.wav` (not opened here).
/// - Speaker: each session has one female and one male actor; the letter that starts the last
///   `_` part of the utterance id (`Ses01F_impro01_M003`: `M`) is the speaker's gender, and the
///   speaker is session + gender (`Ses01M`). (The letter in `Ses01F` says who wore the motion
///   capture markers in that dialog, not who speaks.) `session` is N.
///
/// Sessions missing from `root` are left out; none at all is an error listing them. Files
/// starting with `.` (macOS `._*` copies that some archives carry) are ignored. Order: by
/// session, dialog file name, then line.
pub fn read_iemocap(root: &Path) -> Result<Vec<Utterance>, DataError> {
    let present: Vec<u32> = (1..=5)
        .filter(|n| root.join(format!("Session{n}")).is_dir())
        .collect();
    if present.is_empty() {
        return Err(DataError::MissingSessions {
            root: root.to_path_buf(),
            missing: (1..=5).collect(),
        });
    }
    let mut utts = Vec::new();
    for n in present {
        let session = root.join(format!("Session{n}"));
        let dialog = session.join("dialog");
        let transcripts = read_transcripts(&dialog.join("transcriptions"))?;
        for file in txt_files(&dialog.join("EmoEvaluation"))? {
            let Some(stem) = file.file_stem().map(|s| s.to_string_lossy().into_owned()) else {
                continue;
            };
            let wav_dir = session.join("sentences").join("wav").join(&stem);
            for (id, label, arousal) in read_evaluation(&file)? {
                if !KEPT.contains(&label.as_str()) {
                    continue;
                }
                let gender = speaker_gender(&id);
                let speaker = gender.and_then(|g| id.get(..5).map(|ses| format!("{ses}{g}")));
                utts.push(Utterance {
                    text: transcripts.get(&id).cloned(),
                    emotion: Some(label),
                    speaker,
                    gender: gender.map(String::from),
                    intensity: Some(arousal),
                    session: Some(n),
                    ..Utterance::new(id.clone(), wav_dir.join(format!("{id}.wav")))
                });
            }
        }
    }
    check_duplicates(root, &utts)?;
    Ok(utts)
}

/// `"F"` or `"M"`: the first letter of the last `_` part of an IEMOCAP utterance id.
fn speaker_gender(id: &str) -> Option<&'static str> {
    let last = id.rsplit('_').next()?;
    match last.chars().next()? {
        'F' => Some("F"),
        'M' => Some("M"),
        _ => None,
    }
}

/// The `*.txt` files directly in `dir`, sorted, dot-files left out.
fn txt_files(dir: &Path) -> Result<Vec<PathBuf>, DataError> {
    let entries = std::fs::read_dir(dir).map_err(|e| DataError::io(dir, e))?;
    let mut files = Vec::new();
    for entry in entries {
        let entry = entry.map_err(|e| DataError::io(dir, e))?;
        let path = entry.path();
        let name = entry.file_name();
        let name = name.to_string_lossy();
        if name.starts_with('.') || !name.ends_with(".txt") || !path.is_file() {
            continue;
        }
        files.push(path);
    }
    files.sort();
    Ok(files)
}

/// `(utterance id, label, arousal)` for each utterance line of an EmoEvaluation file.
fn read_evaluation(file: &Path) -> Result<Vec<(String, String, f32)>, DataError> {
    let text = read_text(file)?;
    let mut out = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let line_no = i + 1;
        let line = line.trim();
        if !line.starts_with('[') {
            continue;
        }
        let fields: Vec<&str> = line.split('\t').map(str::trim).collect();
        let [_, id, label, vad] = fields[..] else {
            return Err(DataError::syntax(
                file,
                Some(line_no),
                format!(
                    "expected `[start - end]<TAB>utt_id<TAB>label<TAB>[v, a, d]`, got {} \
                     tab-separated fields",
                    fields.len()
                ),
            ));
        };
        let parsed: Option<Vec<f32>> = vad
            .strip_prefix('[')
            .and_then(|v| v.strip_suffix(']'))
            .map(|v| v.split(',').map(|x| x.trim().parse::<f32>().ok()).collect())
            .and_then(|v: Option<Vec<f32>>| v);
        let arousal = match parsed.as_deref() {
            Some([_, a, _]) if a.is_finite() => *a,
            _ => {
                return Err(DataError::entry(
                    file,
                    Some(line_no),
                    id,
                    format!("{vad:?} is not a [valence, arousal, dominance] triple"),
                ));
            }
        };
        out.push((id.to_string(), label.to_string(), arousal));
    }
    Ok(out)
}

/// Utterance id -> transcript, from every `*.txt` in `dir` (an absent folder gives none).
fn read_transcripts(dir: &Path) -> Result<HashMap<String, String>, DataError> {
    let mut out = HashMap::new();
    if !dir.is_dir() {
        return Ok(out);
    }
    for file in txt_files(dir)? {
        let text = read_text(&file)?;
        for line in text.lines() {
            // `Ses01F_impro01_F000 [006.2901-008.2357]: Excuse me.`
            let Some((id, rest)) = line.trim().split_once(' ') else {
                continue;
            };
            let rest = rest.trim_start();
            let Some(close) = rest.find("]:") else {
                continue;
            };
            if !rest.starts_with('[') {
                continue;
            }
            out.insert(id.to_string(), rest[close + 2..].trim().to_string());
        }
    }
    Ok(out)
}

/// Leave-one-session-out folds over utterances with a `session` (IEMOCAP's 5-fold protocol):
/// for each session present, in increasing order, `(session, train indices, test indices)`,
/// the test part being that session's utterances. Utterances without a session are in every
/// training part. Indices point into `utts` and are increasing.
pub fn iemocap_folds(utts: &[Utterance]) -> Vec<(u32, Vec<usize>, Vec<usize>)> {
    let sessions: BTreeSet<u32> = utts.iter().filter_map(|u| u.session).collect();
    sessions
        .into_iter()
        .map(|s| {
            let (test, train): (Vec<usize>, Vec<usize>) =
                (0..utts.len()).partition(|&i| utts[i].session == Some(s));
            (s, train, test)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn genders_from_ids() {
        assert_eq!(speaker_gender("Ses01F_impro01_M003"), Some("M"));
        assert_eq!(speaker_gender("Ses01M_script01_1_F012"), Some("F"));
        assert_eq!(speaker_gender("weird"), None);
    }
}
