//! Manifest readers, bad-data checks and batches of `ent_train::data`, on tiny fixtures
//! (text files under `tests/fixtures/data`, WAVs and directory trees written to a temp dir).

pub(super) use std::collections::BTreeSet;
use std::io::Write;
use std::path::{Path, PathBuf};

use ent_features::Segment;
use ent_train::data::{
    BadDataPolicy, DataError, EmotionInterval, EmotionMap, ManifestFormat, Utterance, Vocab,
    bucketed_batches, iemocap_folds, load_manifest, prepare, read_iemocap, read_kaldi, read_lhotse,
    read_speechbrain, read_zed,
};

pub(super) fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/data")
}

/// A temporary directory (removed on drop) with helpers to fill it.
pub(crate) struct TempDir(tempfile::TempDir);

impl TempDir {
    pub(crate) fn new(tag: &str) -> Self {
        let dir = tempfile::Builder::new()
            .prefix(&format!("ent-train-data-{tag}-"))
            .tempdir()
            .expect("create temp dir");
        TempDir(dir)
    }

    pub(crate) fn path(&self) -> &Path {
        self.0.path()
    }

    /// Writes `contents` to `rel` (parents created) and returns the full path.
    pub(crate) fn write(&self, rel: &str, contents: impl AsRef<[u8]>) -> PathBuf {
        let p = self.path().join(rel);
        if let Some(parent) = p.parent() {
            std::fs::create_dir_all(parent).expect("create parent");
        }
        std::fs::write(&p, contents).expect("write file");
        p
    }

    /// A mono 16-bit PCM WAV of `secs` seconds at `rate` Hz.
    pub(super) fn wav(&self, rel: &str, secs: f64, rate: u32) -> PathBuf {
        self.write(rel, wav_bytes(rate, (secs * rate as f64).round() as usize))
    }
}

/// The 44-byte canonical header, then `frames` samples of a quiet ramp.
pub(crate) fn wav_bytes(rate: u32, frames: usize) -> Vec<u8> {
    let data_len = (frames * 2) as u32;
    let mut b = Vec::with_capacity(44 + frames * 2);
    b.extend_from_slice(b"RIFF");
    b.extend_from_slice(&(36 + data_len).to_le_bytes());
    b.extend_from_slice(b"WAVEfmt ");
    b.extend_from_slice(&16u32.to_le_bytes()); // fmt chunk size
    b.extend_from_slice(&1u16.to_le_bytes()); // PCM
    b.extend_from_slice(&1u16.to_le_bytes()); // mono
    b.extend_from_slice(&rate.to_le_bytes());
    b.extend_from_slice(&(rate * 2).to_le_bytes()); // byte rate
    b.extend_from_slice(&2u16.to_le_bytes()); // block align
    b.extend_from_slice(&16u16.to_le_bytes()); // bits
    b.extend_from_slice(b"data");
    b.extend_from_slice(&data_len.to_le_bytes());
    for i in 0..frames {
        b.extend_from_slice(&(((i % 200) as i16 - 100) * 10).to_le_bytes());
    }
    b
}

/// A float WAV (32-bit) at 16 kHz of `samples`.
pub(crate) fn float_wav(t: &TempDir, rel: &str, samples: &[f32]) -> PathBuf {
    let path = t.path().join(rel);
    ent_testkit::wav::write_f32(&path, 16_000, samples);
    path
}

/// A 16-bit WAV whose header states `secs` of audio at `rate`, its data never written (a
/// sparse file of zeros: digital silence).
pub(crate) fn sparse_wav(t: &TempDir, rel: &str, secs: u64, rate: u32) -> PathBuf {
    let frames = (secs * rate as u64) as usize;
    let mut header = wav_bytes(rate, 0);
    let data = (frames * 2) as u32;
    header[4..8].copy_from_slice(&(36 + data).to_le_bytes());
    header[40..44].copy_from_slice(&data.to_le_bytes());
    let path = t.write(rel, &header);
    let f = std::fs::OpenOptions::new().write(true).open(&path).unwrap();
    f.set_len(44 + data as u64).unwrap();
    path
}

pub(super) fn gzip(text: &str) -> Vec<u8> {
    let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    enc.write_all(text.as_bytes()).expect("gzip");
    enc.finish().expect("gzip")
}

pub(super) fn by_id<'a>(utts: &'a [Utterance], id: &str) -> &'a Utterance {
    utts.iter().find(|u| u.id == id).expect("utterance present")
}

mod batches;
mod detection;
mod iemocap;
mod kaldi;
mod lhotse;
mod prepare;
mod probe;
mod speechbrain;
mod zed;
