//! Decoding audio files into mono f32 samples.
//!
//! WAV goes through `hound` (8/16/24/32-bit integer and 32-bit float PCM, plain or
//! `WAVE_FORMAT_EXTENSIBLE`); FLAC, Ogg Vorbis, MP3 and the WAV encodings `hound` does not read
//! (64-bit float, A-law, mu-law, samples narrower than their container) through `symphonia`. Integer samples are scaled by
//! `2^-(bits-1)`, so 16-bit audio lies in `[-1, 1)`. Channels are averaged into one.
//!
//! Every failure is a [`FeatureError`] naming the file: unreadable, unsupported, truncated,
//! corrupt, empty, or holding a sample that cannot be audio (NaN, infinite, or beyond
//! [`crate::MAX_SAMPLE`]). Truncated and corrupt streams are errors, not silently shortened audio
//! ([`AudioStream`] instead steps over damage, silencing and reporting it).

mod source;
mod stream;
mod via_symphonia;
mod vorbis;
mod wav;

use source::*;
pub use stream::{AudioStream, Damage, clock};

use std::fs::File;
use std::io::{self, Cursor};
use std::path::Path;

use rayon::prelude::*;

use crate::error::{FeatureError, Input};
use crate::fbank::Fbank;
use crate::resample::resample;

/// Mono audio: samples in `[-1, 1]` for integer sources (float sources as stored) at
/// `sample_rate` Hz.
#[derive(Debug, Clone, PartialEq)]
pub struct Audio {
    /// The samples, channels averaged.
    pub samples: Vec<f32>,
    /// Samples per second.
    pub sample_rate: u32,
}

impl Audio {
    /// Length in seconds.
    pub fn duration_secs(&self) -> f64 {
        self.samples.len() as f64 / self.sample_rate as f64
    }

    /// This audio at `sample_rate` (see [`resample`] for the filter).
    pub fn resampled(self, sample_rate: u32) -> Result<Audio, FeatureError> {
        if sample_rate == self.sample_rate {
            return Ok(self);
        }
        let samples = resample(&self.samples, self.sample_rate, sample_rate)?;
        Ok(Audio {
            samples,
            sample_rate,
        })
    }
}

/// A part of a file, in seconds from its start.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct Segment {
    /// Start of the segment in seconds (`>= 0`).
    pub offset: f64,
    /// Length in seconds; `None` reads to the end. A segment reaching past the end of the file
    /// is cut there.
    pub duration: Option<f64>,
}

impl Segment {
    /// The whole file.
    pub const WHOLE: Segment = Segment {
        offset: 0.0,
        duration: None,
    };

    /// `duration` seconds from `offset`.
    pub fn new(offset: f64, duration: f64) -> Self {
        Segment {
            offset,
            duration: Some(duration),
        }
    }

    fn validate(&self) -> Result<(), FeatureError> {
        if !(self.offset.is_finite() && self.offset >= 0.0) {
            return Err(FeatureError::invalid(
                "segment offset",
                format!("{} s must be finite and >= 0", self.offset),
            ));
        }
        if let Some(d) = self.duration
            && !(d.is_finite() && d > 0.0)
        {
            return Err(FeatureError::invalid(
                "segment duration",
                format!("{d} s must be finite and > 0"),
            ));
        }
        Ok(())
    }

    /// `(first frame, frame count)` at `rate` Hz.
    fn frames(&self, rate: u32) -> (u64, Option<u64>) {
        let first = (self.offset * rate as f64).round() as u64;
        let count = self.duration.map(|d| (d * rate as f64).round() as u64);
        (first, count)
    }
}

/// Decodes a whole file to mono at its own sample rate.
pub fn load(path: impl AsRef<Path>) -> Result<Audio, FeatureError> {
    load_segment(path, Segment::WHOLE)
}

/// Decodes part of a file. WAV, FLAC and Ogg seek straight to the offset; MP3, whose frames
/// cannot be located exactly, is decoded from the start. Nothing after the segment is decoded.
/// The samples equal the same stretch of a whole-file decode, bit for bit.
pub fn load_segment(path: impl AsRef<Path>, segment: Segment) -> Result<Audio, FeatureError> {
    let path = path.as_ref();
    segment.validate()?;
    let (file, _) = open_file(path)?;
    decode_source(
        Box::new(file),
        &Input::file(path),
        path.extension().and_then(|e| e.to_str()),
        segment,
        None,
    )
}

/// Opens `path` for reading, with its length in bytes; a folder is an error.
fn open_file(path: &Path) -> Result<(File, u64), FeatureError> {
    let io_err = |source| FeatureError::Io {
        path: path.to_path_buf(),
        source,
    };
    let file = File::open(path).map_err(io_err)?;
    let meta = file.metadata().map_err(io_err)?;
    if meta.is_dir() {
        return Err(io_err(io::Error::other("is a directory")));
    }
    Ok((file, meta.len()))
}

/// Decodes a whole file and resamples it to `sample_rate`.
pub fn load_resampled(path: impl AsRef<Path>, sample_rate: u32) -> Result<Audio, FeatureError> {
    let path = path.as_ref();
    load(path)?
        .resampled(sample_rate)
        .map_err(|e| e.in_file(path))
}

/// What a file's header says about its audio; see [`probe`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AudioInfo {
    /// Samples per second (per channel), in Hz.
    pub sample_rate: u32,
    /// Channels as stored (decoding averages them into one).
    pub channels: u16,
    /// Length in frames (samples per channel) where the header states it exactly: WAV and FLAC.
    /// `None` for Ogg Vorbis and MP3, whose stated lengths are estimates (decode to measure
    /// them), and for FLAC streams that leave it unset.
    pub frames: Option<u64>,
}

impl AudioInfo {
    /// Length in seconds, when [`AudioInfo::frames`] is known.
    pub fn duration_secs(&self) -> Option<f64> {
        self.frames.map(|f| f as f64 / self.sample_rate as f64)
    }
}

/// Reads only the header of an audio file: sample rate, channels and, where exact, length.
///
/// Much cheaper than [`load`], for checking thousands of files before training. WAV goes through
/// `hound` (and is checked against the file size, so a WAV cut short is reported as truncated);
/// FLAC, Ogg Vorbis and MP3 through symphonia's probe. Errors are those of [`load`] and name the
/// file; damage past the header (a corrupt packet) is only found by decoding.
pub fn probe(path: impl AsRef<Path>) -> Result<AudioInfo, FeatureError> {
    let path = path.as_ref();
    let (file, len) = open_file(path)?;
    let input = Input::file(path);
    let extension = path.extension().and_then(|e| e.to_str());
    // As in `decode_source`: a parser panic on malformed bytes is reported, not propagated.
    catch_parser_panic(&input, "the header parser", || {
        probe_unguarded(Box::new(file), &input, extension, len)
    })
}

/// Decodes audio held in memory (the format is recognised from the bytes).
pub fn decode(bytes: &[u8]) -> Result<Audio, FeatureError> {
    decode_segment(bytes, Segment::WHOLE)
}

/// Decodes part of audio held in memory.
pub fn decode_segment(bytes: &[u8], segment: Segment) -> Result<Audio, FeatureError> {
    segment.validate()?;
    decode_source(
        Box::new(Cursor::new(bytes.to_vec())),
        &Input::memory(),
        None,
        segment,
        None,
    )
}

/// Loads many files in parallel (rayon), each resampled to `sample_rate`; results keep the
/// order of `paths`. `progress` is called once per finished file, from worker threads.
pub fn load_batch<P: AsRef<Path> + Sync>(
    paths: &[P],
    sample_rate: u32,
    progress: &(dyn Fn(&Path) + Sync),
) -> Vec<Result<Audio, FeatureError>> {
    paths
        .par_iter()
        .map(|p| {
            let r = load_resampled(p, sample_rate);
            progress(p.as_ref());
            r
        })
        .collect()
}

/// Filterbank features of many files in parallel (rayon): each file is decoded, resampled to
/// the extractor's sample rate and passed to [`Fbank::compute`]. Results keep the order of
/// `paths`; `progress` is called once per finished file.
pub fn fbank_batch<P: AsRef<Path> + Sync>(
    paths: &[P],
    fbank: &Fbank,
    progress: &(dyn Fn(&Path) + Sync),
) -> Vec<Result<candle_core::Tensor, FeatureError>> {
    let rate = fbank.options().sample_rate;
    // Checked once; every file reports it (`FeatureError` is not `Clone`).
    let whole_rate =
        (rate.fract() == 0.0 && rate >= 1.0 && rate <= u32::MAX as f32).then_some(rate as u32);
    paths
        .par_iter()
        .map(|p| {
            let p = p.as_ref();
            let r = (|| {
                let Some(rate) = whole_rate else {
                    return Err(FeatureError::invalid(
                        "sample_rate",
                        format!("{rate} Hz is not a whole number of Hz to resample to"),
                    ));
                };
                let audio = load_resampled(p, rate)?;
                fbank.compute(&audio.samples).map_err(|e| e.in_file(p))
            })();
            progress(p);
            r
        })
        .collect()
}
