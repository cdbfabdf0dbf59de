//! The error type of [`crate::data`].

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

/// At most this many utterances are listed in one error message; the rest are counted.
pub(crate) const MAX_LISTED: usize = 50;

/// An audio file that cannot be used, as found by [`crate::data::prepare`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BadAudio {
    /// The utterance.
    pub id: String,
    /// Its audio file.
    pub path: PathBuf,
    /// Why it cannot be used (missing, unreadable, truncated, segment past the end, ...).
    pub reason: String,
}

/// Everything that can go wrong reading manifests and checking data.
///
/// Messages name the file, the line (where the format has lines) and the utterance id. Checks
/// over a whole dataset list every utterance concerned (the first 50, then a count), so one
/// run shows all that needs fixing.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum DataError {
    /// A file or directory could not be read.
    #[error("cannot read {}: {source}", path.display())]
    Io {
        /// The file or directory.
        path: PathBuf,
        /// What the operating system said.
        #[source]
        source: std::io::Error,
    },
    /// A manifest is not well formed (bad JSON, a line with missing fields, a number that does
    /// not parse).
    #[error("{}{}: {detail}", path.display(), at_line(*line))]
    Syntax {
        /// The manifest.
        path: PathBuf,
        /// 1-based line, where known.
        line: Option<usize>,
        /// What is wrong.
        detail: String,
    },
    /// One utterance's entry is unusable (missing audio path, bad interval, ...).
    #[error("{}{}: utterance {id}: {detail}", path.display(), at_line(*line))]
    Entry {
        /// The manifest.
        path: PathBuf,
        /// 1-based line, where known.
        line: Option<usize>,
        /// The utterance.
        id: String,
        /// What is wrong.
        detail: String,
    },
    /// The manifest asks for something ent does not do: command pipes and `ark:` extended
    /// filenames in `wav.scp`, Lhotse sources that are not files, mixed cuts, audio transforms.
    #[error("{}{}: {detail}", path.display(), at_line(*line))]
    Unsupported {
        /// The manifest.
        path: PathBuf,
        /// 1-based line, where known.
        line: Option<usize>,
        /// What was asked for, and what to do instead.
        detail: String,
    },
    /// A file of a Kaldi directory names utterances (or recordings) its index does not have.
    #[error("{}: {} {what}: {}", path.display(), ids.len(), list_inline(ids))]
    UnknownIds {
        /// The file naming them (`text`, `utt2emo`, `segments`, ...).
        path: PathBuf,
        /// What they are missing from, e.g. "utterance ids are not in wav.scp".
        what: String,
        /// The ids, in file order.
        ids: Vec<String>,
    },
    /// The same utterance id occurs more than once.
    #[error("{}: {} duplicate utterance ids: {}", path.display(), ids.len(), list_inline(ids))]
    DuplicateIds {
        /// The manifest (or a description of the data when it came from several).
        path: PathBuf,
        /// Each duplicated id, once, in order of its second occurrence.
        ids: Vec<String>,
    },
    /// None of the IEMOCAP sessions is under the root.
    #[error(
        "{}: no IEMOCAP session found (missing: {})",
        root.display(),
        missing_sessions(missing)
    )]
    MissingSessions {
        /// The IEMOCAP root that was given.
        root: PathBuf,
        /// The sessions (1..=5) that are missing.
        missing: Vec<u32>,
    },
    /// [`crate::data::load_manifest`] could not tell the format of a path.
    #[error("{}: cannot tell the manifest format: {detail}", path.display())]
    UnknownFormat {
        /// The path.
        path: PathBuf,
        /// What it looks like, and how to name the format.
        detail: String,
    },
    /// Audio files are missing or unreadable (and `skip_bad_audio` is off).
    #[error("{}", bad_audio_message(*total, files))]
    BadAudio {
        /// Utterances checked.
        total: usize,
        /// Every bad one.
        files: Vec<BadAudio>,
    },
    /// Utterances have no emotion label (and `skip_unknown_emotion` is off).
    #[error("{}", missing_emotion_message(*total, ids))]
    MissingEmotion {
        /// Utterances checked.
        total: usize,
        /// Every utterance without a label.
        ids: Vec<String>,
    },
    /// Utterances have labels the emotion map does not know (and `skip_unknown_emotion` is off).
    #[error("{}", unknown_emotion_message(*total, items, classes))]
    UnknownEmotion {
        /// Utterances checked.
        total: usize,
        /// `(utterance id, label as written)` for every one.
        items: Vec<(String, String)>,
        /// The classes of the map.
        classes: Vec<String>,
    },
    /// Utterances have no transcript, or one that is empty after normalisation (and
    /// `skip_empty_text` is off while `require_text` is on).
    #[error("{}", empty_text_message(*total, items))]
    EmptyText {
        /// Utterances checked.
        total: usize,
        /// `(utterance id, what was there)`: the raw transcript, quoted, or "no transcript".
        items: Vec<(String, String)>,
    },
    /// Every utterance was skipped or dropped.
    #[error("none of the {total} utterances is left for training: {summary}")]
    NothingLeft {
        /// Utterances checked.
        total: usize,
        /// The report of what was dropped, on one line.
        summary: String,
    },
    /// An option or argument is out of range (or a name is not one of the known ones).
    #[error("invalid {name}: {detail}")]
    Invalid {
        /// The option or argument.
        name: &'static str,
        /// Its value and what is allowed.
        detail: String,
    },
}

impl DataError {
    pub(crate) fn io(path: &Path, source: std::io::Error) -> Self {
        DataError::Io {
            path: path.to_path_buf(),
            source,
        }
    }

    pub(crate) fn syntax(path: &Path, line: Option<usize>, detail: impl Into<String>) -> Self {
        DataError::Syntax {
            path: path.to_path_buf(),
            line,
            detail: detail.into(),
        }
    }

    pub(crate) fn entry(
        path: &Path,
        line: Option<usize>,
        id: &str,
        detail: impl Into<String>,
    ) -> Self {
        DataError::Entry {
            path: path.to_path_buf(),
            line,
            id: id.to_string(),
            detail: detail.into(),
        }
    }

    pub(crate) fn unsupported(path: &Path, line: Option<usize>, detail: impl Into<String>) -> Self {
        DataError::Unsupported {
            path: path.to_path_buf(),
            line,
            detail: detail.into(),
        }
    }

    pub(crate) fn invalid(name: &'static str, detail: impl Into<String>) -> Self {
        DataError::Invalid {
            name,
            detail: detail.into(),
        }
    }
}

fn at_line(line: Option<usize>) -> String {
    line.map_or(String::new(), |l| format!(":{l}"))
}

/// `a, b, c` for up to ten ids, then `... and K more`.
pub(crate) fn list_inline(ids: &[String]) -> String {
    const SHOWN: usize = 10;
    let mut s = ids
        .iter()
        .take(SHOWN)
        .map(String::as_str)
        .collect::<Vec<_>>()
        .join(", ");
    if ids.len() > SHOWN {
        let _ = write!(s, ", ... and {} more", ids.len() - SHOWN);
    }
    s
}

/// `head`, then one indented line per item, at most [`MAX_LISTED`], then `... and K more`.
pub(crate) fn listing(head: &str, items: impl ExactSizeIterator<Item = String>) -> String {
    let n = items.len();
    let mut s = head.to_string();
    for item in items.take(MAX_LISTED) {
        let _ = write!(s, "\n  {item}");
    }
    if n > MAX_LISTED {
        let _ = write!(s, "\n  ... and {} more", n - MAX_LISTED);
    }
    s
}

fn bad_audio_message(total: usize, files: &[BadAudio]) -> String {
    listing(
        &format!(
            "{} of {total} utterances have audio that cannot be used (set skip_bad_audio to leave them out):",
            files.len()
        ),
        files
            .iter()
            .map(|b| format!("{}: {}: {}", b.id, b.path.display(), b.reason)),
    )
}

fn missing_emotion_message(total: usize, ids: &[String]) -> String {
    listing(
        &format!(
            "{} of {total} utterances have no emotion label (ENT training needs one):",
            ids.len()
        ),
        ids.iter().cloned(),
    )
}

fn unknown_emotion_message(total: usize, items: &[(String, String)], classes: &[String]) -> String {
    listing(
        &format!(
            "{} of {total} utterances have an emotion label outside the classes [{}] and their \
             aliases:",
            items.len(),
            classes.join(", ")
        ),
        items.iter().map(|(id, label)| format!("{id}: {label:?}")),
    )
}

fn empty_text_message(total: usize, items: &[(String, String)]) -> String {
    listing(
        &format!(
            "{} of {total} utterances have an empty transcript:",
            items.len()
        ),
        items.iter().map(|(id, text)| format!("{id}: {text}")),
    )
}

fn missing_sessions(missing: &[u32]) -> String {
    missing
        .iter()
        .map(|s| format!("Session{s}"))
        .collect::<Vec<_>>()
        .join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn listing_caps_at_fifty_lines() {
        let s = listing("head:", (0..53).map(|i| format!("u{i}")));
        let lines: Vec<&str> = s.lines().collect();
        assert_eq!(lines.len(), 1 + 50 + 1);
        assert_eq!(lines[1], "  u0");
        assert_eq!(lines[51], "  ... and 3 more");
    }

    #[test]
    fn messages_name_file_line_and_id() {
        let e = DataError::entry(Path::new("m.json"), Some(3), "utt1", "no audio path");
        assert_eq!(e.to_string(), "m.json:3: utterance utt1: no audio path");
        let e = DataError::syntax(Path::new("wav.scp"), None, "bad");
        assert_eq!(e.to_string(), "wav.scp: bad");
    }
}
