//! Manifest readers (spec §7) and format detection.

mod iemocap;
mod json;
mod kaldi;
mod lhotse;
mod speechbrain;
mod zed;

use std::collections::HashSet;
use std::fmt;
use std::path::{Path, PathBuf};
use std::str::FromStr;

use serde::{Deserialize, Serialize};

pub use iemocap::{iemocap_folds, read_iemocap};
pub use kaldi::read_kaldi;
pub use lhotse::read_lhotse;
pub use speechbrain::read_speechbrain;
pub use zed::read_zed;

use super::{DataError, Utterance};

/// The manifest formats [`load_manifest`] reads. Serialised as its [`ManifestFormat::name`]
/// (read back like [`FromStr`]: any case, `espnet` for Kaldi).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub enum ManifestFormat {
    /// SpeechBrain-style JSON: `{id: {wav, length|duration, emo, ...}}` ([`read_speechbrain`]).
    SpeechBrain,
    /// A Kaldi/ESPnet data directory with `wav.scp` ([`read_kaldi`]).
    Kaldi,
    /// Lhotse cuts, JSONL, optionally gzipped ([`read_lhotse`]).
    Lhotse,
    /// The IEMOCAP release, `Session1`..`Session5` ([`read_iemocap`]).
    Iemocap,
    /// ZED's `ZED.json` ([`read_zed`]).
    Zed,
}

impl ManifestFormat {
    /// Every format, in the order of the variants.
    pub const ALL: [ManifestFormat; 5] = [
        ManifestFormat::SpeechBrain,
        ManifestFormat::Kaldi,
        ManifestFormat::Lhotse,
        ManifestFormat::Iemocap,
        ManifestFormat::Zed,
    ];

    /// The lower-case name [`FromStr`] reads and [`fmt::Display`] writes.
    pub fn name(self) -> &'static str {
        match self {
            ManifestFormat::SpeechBrain => "speechbrain",
            ManifestFormat::Kaldi => "kaldi",
            ManifestFormat::Lhotse => "lhotse",
            ManifestFormat::Iemocap => "iemocap",
            ManifestFormat::Zed => "zed",
        }
    }
}

impl fmt::Display for ManifestFormat {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl From<ManifestFormat> for String {
    fn from(f: ManifestFormat) -> String {
        f.name().to_string()
    }
}

impl TryFrom<String> for ManifestFormat {
    type Error = DataError;

    fn try_from(s: String) -> Result<Self, DataError> {
        s.parse()
    }
}

impl FromStr for ManifestFormat {
    type Err = DataError;

    /// The names of [`ManifestFormat::name`], any case; `espnet` means Kaldi.
    fn from_str(s: &str) -> Result<Self, DataError> {
        let lower = s.trim().to_ascii_lowercase();
        if lower == "espnet" {
            return Ok(ManifestFormat::Kaldi);
        }
        ManifestFormat::ALL
            .into_iter()
            .find(|f| f.name() == lower)
            .ok_or_else(|| {
                DataError::invalid(
                    "manifest format",
                    format!(
                        "{s:?} is not one of {}",
                        ManifestFormat::ALL.map(|f| f.name()).join(", ")
                    ),
                )
            })
    }
}

/// Reads a manifest into utterances, relative audio paths resolved against its folder.
///
/// `format` `None` detects it:
/// - a directory with `wav.scp`: Kaldi; with `Session1`..`Session5`: IEMOCAP; with `ZED.json`:
///   ZED;
/// - a gzipped file, or one named `*.jsonl` / `*.jsonl.gz`: Lhotse;
/// - a JSON object whose entries have an `emotion` array: ZED; any other JSON object:
///   SpeechBrain; a file of JSON lines with `recording` fields: Lhotse.
///
/// `data_root` replaces SpeechBrain's `{data_root}` placeholder in audio paths (SpeechBrain and
/// ZED; ZED's `datafolder` prefix too, which defaults to the folder of `ZED.json`). Duplicate
/// utterance ids are an error naming them.
pub fn load_manifest(
    path: &Path,
    format: Option<ManifestFormat>,
    data_root: Option<&Path>,
) -> Result<Vec<Utterance>, DataError> {
    if let Some(format) = format {
        return match format {
            ManifestFormat::SpeechBrain => read_speechbrain(path, data_root),
            ManifestFormat::Kaldi => read_kaldi(path),
            ManifestFormat::Lhotse => read_lhotse(path),
            ManifestFormat::Iemocap => read_iemocap(path),
            ManifestFormat::Zed => read_zed(path, data_root),
        };
    }
    let meta = std::fs::metadata(path).map_err(|e| DataError::io(path, e))?;
    if meta.is_dir() {
        if path.join("wav.scp").is_file() {
            return read_kaldi(path);
        }
        if (1..=5).any(|n| path.join(format!("Session{n}")).is_dir()) {
            return read_iemocap(path);
        }
        if path.join("ZED.json").is_file() {
            return read_zed(path, data_root);
        }
        return Err(DataError::UnknownFormat {
            path: path.to_path_buf(),
            detail: "a directory without wav.scp (Kaldi), Session1..Session5 (IEMOCAP) or \
                     ZED.json (ZED)"
                .into(),
        });
    }
    let bytes = std::fs::read(path).map_err(|e| DataError::io(path, e))?;
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().to_lowercase())
        .unwrap_or_default();
    if lhotse::is_gzip(&bytes) || name.ends_with(".jsonl") || name.ends_with(".jsonl.gz") {
        return lhotse::from_bytes(path, &bytes);
    }
    let text = utf8(path, bytes)?;
    match json::parse_entries(path, &text) {
        // One cut on one line is a JSON object too.
        Ok(entries)
            if entries
                .0
                .iter()
                .any(|(k, v)| k == "recording" && v.is_object()) =>
        {
            lhotse::from_text(path, &text)
        }
        Ok(entries) => {
            let zed_like = entries
                .0
                .iter()
                .any(|(_, v)| v.get("emotion").is_some_and(serde_json::Value::is_array));
            if zed_like {
                zed::from_entries(path, entries, data_root)
            } else {
                speechbrain::from_entries(path, entries, data_root)
            }
        }
        Err(e) => {
            let first = text.lines().find(|l| !l.trim().is_empty()).unwrap_or("");
            let lhotse_line = serde_json::from_str::<serde_json::Value>(first)
                .is_ok_and(|v| v.get("recording").is_some() || v.get("tracks").is_some());
            if lhotse_line {
                lhotse::from_text(path, &text)
            } else {
                Err(e)
            }
        }
    }
}

/// The folder relative audio paths of `manifest` are resolved against.
pub(crate) fn base_dir(manifest: &Path) -> PathBuf {
    match manifest.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    }
}

/// `p` if absolute, else `base/p`.
pub(crate) fn resolve(base: &Path, p: impl AsRef<Path>) -> PathBuf {
    let p = p.as_ref();
    if p.is_absolute() {
        p.to_path_buf()
    } else {
        base.join(p)
    }
}

pub(crate) fn read_text(path: &Path) -> Result<String, DataError> {
    let bytes = std::fs::read(path).map_err(|e| DataError::io(path, e))?;
    utf8(path, bytes)
}

fn utf8(path: &Path, bytes: Vec<u8>) -> Result<String, DataError> {
    String::from_utf8(bytes).map_err(|e| {
        let at = e.utf8_error().valid_up_to();
        let line = e.as_bytes()[..at].iter().filter(|&&b| b == b'\n').count() + 1;
        DataError::syntax(path, Some(line), format!("not UTF-8 text (byte {at})"))
    })
}

/// Errors on utterance ids that occur more than once.
pub(crate) fn check_duplicates(path: &Path, utts: &[Utterance]) -> Result<(), DataError> {
    let dups = duplicates(utts.iter().map(|u| u.id.as_str()));
    if dups.is_empty() {
        Ok(())
    } else {
        Err(DataError::DuplicateIds {
            path: path.to_path_buf(),
            ids: dups,
        })
    }
}

/// Each id that repeats, once, in order of its second occurrence.
pub(crate) fn duplicates<'a>(ids: impl Iterator<Item = &'a str>) -> Vec<String> {
    let mut seen = HashSet::new();
    let mut reported = HashSet::new();
    let mut out = Vec::new();
    for id in ids {
        if !seen.insert(id) && reported.insert(id) {
            out.push(id.to_string());
        }
    }
    out
}

/// Replaces SpeechBrain's `{data_root}` placeholder (and, for ZED, a leading `datafolder`
/// component, which defaults to `default_root`) and resolves the path against `base`.
pub(crate) fn audio_path(
    manifest: &Path,
    id: &str,
    raw: &str,
    data_root: Option<&Path>,
    datafolder_root: Option<&Path>,
) -> Result<PathBuf, DataError> {
    const PLACEHOLDER: &str = "{data_root}";
    let base = base_dir(manifest);
    if raw.trim().is_empty() {
        return Err(DataError::entry(manifest, None, id, "empty audio path"));
    }
    if raw.contains(PLACEHOLDER) {
        let Some(root) = data_root else {
            return Err(DataError::entry(
                manifest,
                None,
                id,
                format!(
                    "audio path {raw:?} uses {PLACEHOLDER} but no data root was given \
                     (pass data_root)"
                ),
            ));
        };
        let replaced = match raw.strip_prefix(PLACEHOLDER) {
            Some(rest) => root.join(rest.trim_start_matches(['/', '\\'])),
            None => PathBuf::from(raw.replace(PLACEHOLDER, &root.to_string_lossy())),
        };
        return Ok(resolve(&base, replaced));
    }
    if let Some(default_root) = datafolder_root
        && let Some(rest) = raw.strip_prefix("datafolder")
        && (rest.is_empty() || rest.starts_with(['/', '\\']))
    {
        let root = data_root.unwrap_or(default_root);
        return Ok(resolve(
            &base,
            root.join(rest.trim_start_matches(['/', '\\'])),
        ));
    }
    Ok(resolve(&base, raw))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn format_names() {
        for f in ManifestFormat::ALL {
            assert_eq!(f.to_string().parse::<ManifestFormat>().ok(), Some(f));
        }
        assert_eq!(
            "ESPnet".parse::<ManifestFormat>().ok(),
            Some(ManifestFormat::Kaldi)
        );
        assert_eq!(
            " Lhotse ".parse::<ManifestFormat>().ok(),
            Some(ManifestFormat::Lhotse)
        );
        let json = serde_json::to_string(&ManifestFormat::Iemocap).expect("serialises");
        assert_eq!(json, "\"iemocap\"");
        let f: ManifestFormat = serde_json::from_str("\"Kaldi\"").expect("parses");
        assert_eq!(f, ManifestFormat::Kaldi);
        assert!(serde_json::from_str::<ManifestFormat>("\"csv\"").is_err());
        let e = "csv".parse::<ManifestFormat>().expect_err("unknown");
        assert_eq!(
            e.to_string(),
            "invalid manifest format: \"csv\" is not one of speechbrain, kaldi, lhotse, iemocap, zed"
        );
    }

    #[test]
    fn duplicates_once_each() {
        let d = duplicates(["a", "b", "a", "c", "a", "b"].into_iter());
        assert_eq!(d, vec!["a".to_string(), "b".to_string()]);
    }

    #[test]
    fn placeholders() {
        let m = Path::new("/m/train.json");
        let root = Path::new("/data");
        let p = audio_path(m, "u", "{data_root}/a/b.wav", Some(root), None).expect("ok");
        assert_eq!(p, Path::new("/data/a/b.wav"));
        let p = audio_path(m, "u", "x/{data_root}/b.wav", Some(root), None).expect("ok");
        assert_eq!(p, Path::new("/m/x//data/b.wav"));
        let e = audio_path(m, "u", "{data_root}/b.wav", None, None).expect_err("no root");
        assert!(e.to_string().contains("{data_root}"), "{e}");
        assert!(e.to_string().contains("utterance u"), "{e}");
        let p = audio_path(m, "u", "rel/b.wav", None, None).expect("ok");
        assert_eq!(p, Path::new("/m/rel/b.wav"));
        let p = audio_path(m, "u", "datafolder/b.wav", None, Some(Path::new("/m"))).expect("ok");
        assert_eq!(p, Path::new("/m/b.wav"));
        let p = audio_path(
            m,
            "u",
            "datafolder/b.wav",
            Some(root),
            Some(Path::new("/m")),
        )
        .expect("ok");
        assert_eq!(p, Path::new("/data/b.wav"));
        // Only a whole leading component is the placeholder.
        let p = audio_path(m, "u", "datafolders/b.wav", None, Some(Path::new("/z"))).expect("ok");
        assert_eq!(p, Path::new("/m/datafolders/b.wav"));
    }
}
