//! Kaldi / ESPnet data directories.

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};

use ent_features::Segment;

use super::{duplicates, read_text, resolve};
use crate::data::{DataError, Utterance};

/// One line of a Kaldi table: `key rest`.
struct Row {
    line: usize,
    key: String,
    rest: String,
}

/// A Kaldi table file, keys unique.
struct Table {
    path: PathBuf,
    rows: Vec<Row>,
}

impl Table {
    /// Reads `dir/name` if it exists.
    fn optional(dir: &Path, name: &str) -> Result<Option<Table>, DataError> {
        let path = dir.join(name);
        if path.exists() {
            Table::read(path).map(Some)
        } else {
            Ok(None)
        }
    }

    fn read(path: PathBuf) -> Result<Table, DataError> {
        let text = read_text(&path)?;
        let mut rows = Vec::new();
        for (i, line) in text.lines().enumerate() {
            let line = line.trim();
            if line.is_empty() {
                continue;
            }
            let (key, rest) = line
                .split_once(char::is_whitespace)
                .map_or((line, ""), |(k, r)| (k, r.trim()));
            rows.push(Row {
                line: i + 1,
                key: key.to_string(),
                rest: rest.to_string(),
            });
        }
        let dups = duplicates(rows.iter().map(|r| r.key.as_str()));
        if !dups.is_empty() {
            return Err(DataError::DuplicateIds { path, ids: dups });
        }
        Ok(Table { path, rows })
    }

    /// Errors (naming them) on keys that are not in `known`.
    fn check_keys(&self, known: &HashSet<&str>, what: &str) -> Result<(), DataError> {
        let unknown: Vec<String> = self
            .rows
            .iter()
            .filter(|r| !known.contains(r.key.as_str()))
            .map(|r| r.key.clone())
            .collect();
        if unknown.is_empty() {
            Ok(())
        } else {
            Err(DataError::UnknownIds {
                path: self.path.clone(),
                what: format!("{what} (utils/fix_data_dir.sh removes them)"),
                ids: unknown,
            })
        }
    }

    /// Each row's value; an empty value is an error unless `allow_empty`.
    fn values(&self, allow_empty: bool) -> Result<HashMap<&str, (usize, &str)>, DataError> {
        let mut out = HashMap::with_capacity(self.rows.len());
        for r in &self.rows {
            if r.rest.is_empty() && !allow_empty {
                return Err(DataError::syntax(
                    &self.path,
                    Some(r.line),
                    format!("`{}` has no value", r.key),
                ));
            }
            out.insert(r.key.as_str(), (r.line, r.rest.as_str()));
        }
        Ok(out)
    }
}

/// Why a `wav.scp` entry is not a plain file name, if it is not.
fn refused_rxfilename(s: &str) -> Option<&'static str> {
    if s.ends_with('|') {
        return Some("a command pipe");
    }
    if s == "-" {
        return Some("standard input");
    }
    if s.starts_with("ark:") || s.starts_with("scp:") || s.starts_with("ark,") {
        return Some("a Kaldi archive specifier");
    }
    // `foo.ark:1234` (an offset into an archive), optionally with a range `[...]`.
    let without_range = match s.strip_suffix(']').and_then(|t| t.rsplit_once('[')) {
        Some((head, _)) => head,
        None => s,
    };
    let tail = without_range.rsplit_once(':').map(|(_, t)| t);
    if tail.is_some_and(|t| !t.is_empty() && t.bytes().all(|b| b.is_ascii_digit())) {
        return Some("an offset into a Kaldi archive");
    }
    None
}

type Values<'a> = Option<HashMap<&'a str, (usize, &'a str)>>;

fn get<'a>(m: &Values<'a>, id: &str) -> Option<(usize, &'a str)> {
    m.as_ref().and_then(|m| m.get(id).copied())
}

fn seconds(path: &Path, line: usize, what: &str, s: &str) -> Result<f64, DataError> {
    s.parse::<f64>()
        .ok()
        .filter(|x| x.is_finite())
        .ok_or_else(|| DataError::syntax(path, Some(line), format!("{what} {s:?} is not a number")))
}

/// Reads a Kaldi / ESPnet data directory.
///
/// - `wav.scp` (required): `recording-id path`, paths relative to the directory. Command pipes
///   (`sox ... |`), standard input and archive specifiers (`ark:...`, `foo.ark:123`) are refused,
///   naming the line: decode them to files first.
/// - `segments` (optional): `utterance-id recording-id start end` in seconds; each utterance is
///   then `Segment { offset: start, duration: end - start }` of its recording (`end` = -1: to
///   the end of the recording). Without it, utterance ids are the `wav.scp` ids.
/// - `text`, `utt2emo` (ESPnet-style `utterance-id label`), `utt2spk`, `utt2dur` (seconds),
///   `utt2gender` (all optional): keyed by utterance id. Ids that are not utterances of the
///   directory are an error listing them.
/// - `spk2gender` (optional): `speaker f|m`, through `utt2spk`.
///
/// Utterances come in the order of `segments`, or of `wav.scp`. Repeated keys in any file are an
/// error.
pub fn read_kaldi(dir: &Path) -> Result<Vec<Utterance>, DataError> {
    let wav_scp = Table::read(dir.join("wav.scp"))?;
    let mut recordings: HashMap<&str, PathBuf> = HashMap::with_capacity(wav_scp.rows.len());
    for r in &wav_scp.rows {
        if r.rest.is_empty() {
            return Err(DataError::syntax(
                &wav_scp.path,
                Some(r.line),
                format!("recording `{}` has no path", r.key),
            ));
        }
        if let Some(what) = refused_rxfilename(&r.rest) {
            return Err(DataError::unsupported(
                &wav_scp.path,
                Some(r.line),
                format!(
                    "recording `{}` is {what} ({:?}); ent reads audio files only: write the \
                     audio to WAV or FLAC files and list their paths",
                    r.key, r.rest
                ),
            ));
        }
        recordings.insert(r.key.as_str(), resolve(dir, &r.rest));
    }

    let mut utts = Vec::new();
    match Table::optional(dir, "segments")? {
        Some(seg) => {
            let rec_ids: HashSet<&str> = recordings.keys().copied().collect();
            let mut unknown = Vec::new();
            for r in &seg.rows {
                let f: Vec<&str> = r.rest.split_whitespace().collect();
                let [rec, start, end] = f[..] else {
                    return Err(DataError::syntax(
                        &seg.path,
                        Some(r.line),
                        format!(
                            "expected `utterance-id recording-id start end`, got {} fields",
                            f.len() + 1
                        ),
                    ));
                };
                if !rec_ids.contains(rec) {
                    unknown.push(rec.to_string());
                    continue;
                }
                let start = seconds(&seg.path, r.line, "start", start)?;
                let end = seconds(&seg.path, r.line, "end", end)?;
                let segment = if end == -1.0 {
                    Segment {
                        offset: start,
                        duration: None,
                    }
                } else {
                    Segment::new(start, end - start)
                };
                if start < 0.0 || segment.duration.is_some_and(|d| d <= 0.0) {
                    return Err(DataError::entry(
                        &seg.path,
                        Some(r.line),
                        &r.key,
                        format!("segment [{start}, {end}] s is not 0 <= start < end"),
                    ));
                }
                utts.push(Utterance {
                    segment,
                    duration: segment.duration,
                    ..Utterance::new(r.key.clone(), recordings[rec].clone())
                });
            }
            if !unknown.is_empty() {
                return Err(DataError::UnknownIds {
                    path: seg.path,
                    what: "recording ids are not in wav.scp".into(),
                    ids: unknown,
                });
            }
        }
        None => {
            for r in &wav_scp.rows {
                utts.push(Utterance::new(
                    r.key.clone(),
                    recordings[r.key.as_str()].clone(),
                ));
            }
        }
    }

    let known: HashSet<&str> = utts.iter().map(|u| u.id.as_str()).collect();
    let what = "utterance ids are not in wav.scp (or segments)";
    let table = |name: &str| -> Result<Option<Table>, DataError> {
        let t = Table::optional(dir, name)?;
        if let Some(t) = &t {
            t.check_keys(&known, what)?;
        }
        Ok(t)
    };
    let text = table("text")?;
    let utt2emo = table("utt2emo")?;
    let utt2spk = table("utt2spk")?;
    let utt2dur = table("utt2dur")?;
    let utt2gender = table("utt2gender")?;
    let spk2gender = Table::optional(dir, "spk2gender")?;

    let text = text.as_ref().map(|t| t.values(true)).transpose()?;
    let emo = utt2emo.as_ref().map(|t| t.values(false)).transpose()?;
    let spk = utt2spk.as_ref().map(|t| t.values(false)).transpose()?;
    let dur = utt2dur.as_ref().map(|t| t.values(false)).transpose()?;
    let ugen = utt2gender.as_ref().map(|t| t.values(false)).transpose()?;
    let sgen = spk2gender.as_ref().map(|t| t.values(false)).transpose()?;

    let mut out = Vec::with_capacity(utts.len());
    for mut u in utts {
        let id = u.id.clone();
        u.text = get(&text, &id).map(|(_, t)| t.to_string());
        u.emotion = get(&emo, &id).map(|(_, e)| e.to_string());
        u.speaker = get(&spk, &id).map(|(_, s)| s.to_string());
        if let (Some((line, d)), Some(t)) = (get(&dur, &id), &utt2dur) {
            let d = seconds(&t.path, line, "duration", d)?;
            if d <= 0.0 {
                return Err(DataError::entry(
                    &t.path,
                    Some(line),
                    &id,
                    format!("duration {d} s is not positive"),
                ));
            }
            u.duration = Some(d);
        }
        u.gender = get(&ugen, &id)
            .or_else(|| u.speaker.as_deref().and_then(|s| get(&sgen, s)))
            .map(|(_, g)| g.to_string());
        out.push(u);
    }
    let dups = duplicates(out.iter().map(|u| u.id.as_str()));
    if !dups.is_empty() {
        return Err(DataError::DuplicateIds {
            path: dir.to_path_buf(),
            ids: dups,
        });
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rxfilenames() {
        assert_eq!(refused_rxfilename("a/b.wav"), None);
        assert_eq!(refused_rxfilename("/abs/b c.flac"), None);
        assert_eq!(refused_rxfilename("C:/x.wav"), None);
        assert!(refused_rxfilename("sox a.wav -t wav - |").is_some());
        assert!(refused_rxfilename("-").is_some());
        assert!(refused_rxfilename("ark:feats.ark").is_some());
        assert!(refused_rxfilename("data/wav.ark:1234").is_some());
        assert!(refused_rxfilename("data/wav.ark:1234[0:100]").is_some());
    }
}
