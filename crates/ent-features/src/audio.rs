//! Decoding audio files into mono f32 samples.
//!
//! WAV goes through `hound` (8/16/24/32-bit integer and 32-bit float PCM, plain or
//! `WAVE_FORMAT_EXTENSIBLE`); FLAC, Ogg Vorbis, MP3 and the WAV encodings `hound` does not read
//! (64-bit float, A-law, mu-law, samples narrower than their container) through `symphonia`. Integer samples are scaled by
//! `2^-(bits-1)`, so 16-bit audio lies in `[-1, 1)`. Channels are averaged into one.
//!
//! Every failure is a [`FeatureError`] naming the file: unreadable, unsupported, truncated,
//! corrupt, empty, or holding a NaN or infinite sample. Truncated and corrupt streams are errors,
//! not silently shortened audio.

use std::fs::File;
use std::io::{self, Cursor, Read, Seek, SeekFrom};
use std::path::Path;
use std::sync::OnceLock;

use rayon::prelude::*;
use symphonia::core::codecs::audio::AudioDecoderOptions;
use symphonia::core::errors::{Error as SymError, SeekErrorKind};
use symphonia::core::formats::probe::{Hint, Probe};
use symphonia::core::formats::{FormatOptions, FormatReader, SeekMode, SeekTo, TrackType};
use symphonia::core::io::{MediaSource, MediaSourceStream};
use symphonia::core::meta::MetadataOptions;
use symphonia::core::units::{TimeBase, Timestamp};

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
    let io_err = |source| FeatureError::Io {
        path: path.to_path_buf(),
        source,
    };
    let file = File::open(path).map_err(io_err)?;
    if file.metadata().map_err(io_err)?.is_dir() {
        return Err(io_err(io::Error::other("is a directory")));
    }
    decode_source(
        Box::new(file),
        &Input::file(path),
        path.extension().and_then(|e| e.to_str()),
        segment,
    )
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
    let io_err = |source| FeatureError::Io {
        path: path.to_path_buf(),
        source,
    };
    let file = File::open(path).map_err(io_err)?;
    let meta = file.metadata().map_err(io_err)?;
    if meta.is_dir() {
        return Err(io_err(io::Error::other("is a directory")));
    }
    let input = Input::file(path);
    let extension = path.extension().and_then(|e| e.to_str());
    // As in `decode_source`: a parser panic on malformed bytes is reported, not propagated.
    catch_parser_panic(&input, "the header parser", || {
        probe_unguarded(Box::new(file), &input, extension, meta.len())
    })
}

fn probe_unguarded(
    mut src: Box<dyn Source>,
    input: &Input,
    extension: Option<&str>,
    file_len: u64,
) -> Result<AudioInfo, FeatureError> {
    let io_err = |e: io::Error| io_error(input, e);
    let head = read_head(&mut src, input)?;
    let head = head.as_slice();
    let riff = head.len() >= 12 && &head[..4] == b"RIFF" && &head[8..12] == b"WAVE";
    if riff {
        let fmt = wav_fmt(head);
        match hound::WavReader::new(io::BufReader::new(&mut src)) {
            Ok(reader) => {
                let spec = reader.spec();
                if spec.channels == 0 || spec.sample_rate == 0 {
                    return Err(corrupt(
                        input,
                        format!("{} channels at {} Hz", spec.channels, spec.sample_rate),
                    ));
                }
                let frames = reader.duration() as u64;
                // hound stops at the start of the data chunk.
                let data_start = reader.into_inner().stream_position().map_err(io_err)?;
                let block = fmt.map_or(0, |f| f.block_align as u64);
                if let Some(present) = file_len.saturating_sub(data_start).checked_div(block)
                    && present < frames
                {
                    let rate = spec.sample_rate as f64;
                    return Err(truncated(
                        input,
                        format!(
                            "the WAV data ends after {:.3} s of the {:.3} s its header states",
                            present as f64 / rate,
                            frames as f64 / rate
                        ),
                    ));
                }
                return Ok(AudioInfo {
                    sample_rate: spec.sample_rate,
                    channels: spec.channels,
                    frames: Some(frames),
                });
            }
            Err(e @ (hound::Error::Unsupported | hound::Error::FormatError(_))) => {
                // symphonia may read it (see `decode_unguarded`), if the header is sane.
                match fmt {
                    Some(f) if f.plausible() => {}
                    Some(f) => {
                        return Err(corrupt(
                            input,
                            format!("bad WAV header: {} channels of {} bits", f.channels, f.bits),
                        ));
                    }
                    None => return Err(hound_error(input, e)),
                }
                src.seek(SeekFrom::Start(0)).map_err(io_err)?;
            }
            Err(e) => return Err(hound_error(input, e)),
        }
    }
    let source: Box<dyn MediaSource> =
        Box::new(SeekableSource::new(src).map_err(|e| io_error(input, e))?);
    let mss = MediaSourceStream::new(source, Default::default());
    let mut hint = Hint::new();
    if let Some(ext) = extension {
        hint.with_extension(ext);
    }
    let format = open_format(riff, &hint, mss, input)?;
    let track = audio_track(format.as_ref(), input)?;
    let params = track
        .codec_params
        .as_ref()
        .and_then(|p| p.audio())
        .ok_or_else(|| FeatureError::Unsupported {
            input: input.clone(),
            detail: "audio track without codec parameters".into(),
        })?;
    let sample_rate = params
        .sample_rate
        .filter(|&r| r > 0)
        .ok_or_else(|| corrupt(input, "the header states no sample rate"))?;
    let channels = params
        .channels
        .as_ref()
        .map(|c| c.count())
        .and_then(|c| u16::try_from(c).ok())
        .filter(|&c| c > 0)
        .ok_or_else(|| corrupt(input, "the header states no channels"))?;
    let exact_length = matches!(format.format_info().short_name, "flac" | "wave" | "aiff");
    Ok(AudioInfo {
        sample_rate,
        channels,
        frames: track.num_frames.filter(|_| exact_length),
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

trait Source: Read + Seek + Send + Sync {}
impl<T: Read + Seek + Send + Sync> Source for T {}

/// Decodes with the decoders' panics turned into errors.
///
/// The decoders are fuzzed (tests/it/fuzz.rs, fuzz/), and the symphonia 0.6.1 panics fuzzing
/// found are kept from it before they happen (see `WavFmt::plausible`, `flac_seek_table_ok`,
/// `guarded_seek`, `format_probe`). This guard is the last line of defence for the ones not yet
/// found: a decoder bug must not take a training run down with it, so such input is reported
/// as corrupt (and the fuzz tests count that as a failure). (With `panic = "abort"` nothing can be
/// caught; the panic message is printed by the panic hook either way.)
fn decode_source(
    src: Box<dyn Source>,
    input: &Input,
    extension: Option<&str>,
    segment: Segment,
) -> Result<Audio, FeatureError> {
    catch_parser_panic(input, "the decoder", || {
        decode_unguarded(src, input, extension, segment)
    })
}

/// Runs `f`, turning a panic inside it (a parser bug on malformed bytes) into a "corrupt"
/// error naming `what` and the panic message.
fn catch_parser_panic<T>(
    input: &Input,
    what: &str,
    f: impl FnOnce() -> Result<T, FeatureError>,
) -> Result<T, FeatureError> {
    std::panic::catch_unwind(std::panic::AssertUnwindSafe(f)).unwrap_or_else(|payload| {
        let why = payload
            .downcast_ref::<&str>()
            .map(|s| s.to_string())
            .or_else(|| payload.downcast_ref::<String>().cloned())
            .unwrap_or_else(|| "unknown".into());
        Err(corrupt(
            input,
            format!("{what} failed on malformed data ({why})"),
        ))
    })
}

/// Reads up to the first 4096 bytes of `src` (for format detection) and rewinds it; an
/// empty source is an error.
fn read_head(src: &mut Box<dyn Source>, input: &Input) -> Result<Vec<u8>, FeatureError> {
    let io_err = |e: io::Error| io_error(input, e);
    let mut head = [0u8; 4096];
    let n = read_up_to(src, &mut head).map_err(io_err)?;
    src.seek(SeekFrom::Start(0)).map_err(io_err)?;
    if n == 0 {
        return Err(FeatureError::Empty {
            input: input.clone(),
            detail: ": the file is empty (0 bytes)".into(),
        });
    }
    Ok(head[..n].to_vec())
}

fn decode_unguarded(
    mut src: Box<dyn Source>,
    input: &Input,
    extension: Option<&str>,
    segment: Segment,
) -> Result<Audio, FeatureError> {
    let io_err = |e: io::Error| io_error(input, e);
    let head = read_head(&mut src, input)?;
    let head = head.as_slice();
    let audio = if head.len() >= 12 && &head[..4] == b"RIFF" && &head[8..12] == b"WAVE" {
        let fmt = wav_fmt(head);
        match decode_wav(&mut src, fmt, input, segment) {
            Err(WavError::Unsupported(why)) => {
                match fmt {
                    Some(fmt) if fmt.plausible() => {}
                    Some(fmt) => {
                        return Err(corrupt(
                            input,
                            format!(
                                "bad WAV header: {} channels of {} bits",
                                fmt.channels, fmt.bits
                            ),
                        ));
                    }
                    None => {
                        return Err(corrupt(
                            input,
                            "bad WAV header: no readable fmt chunk in the first 4 kB",
                        ));
                    }
                }
                src.seek(SeekFrom::Start(0)).map_err(io_err)?;
                // symphonia reads the WAV encodings hound does not; if it cannot either,
                // hound's reason is the more specific one.
                decode_symphonia(src, input, Some("wav"), segment, false, true).map_err(
                    |e| match e {
                        FeatureError::Unsupported { .. } => FeatureError::Unsupported {
                            input: input.clone(),
                            detail: why,
                        },
                        other => other,
                    },
                )?
            }
            Err(WavError::Feature(e)) => return Err(e),
            Ok(a) => a,
        }
    } else {
        // Only a FLAC stream at the start of the file has its seek table checked; one that
        // symphonia finds further in is not seeked in at all. Whole files never seek.
        let flac_seek_ok = segment.offset > 0.0
            && head.starts_with(b"fLaC")
            && flac_seek_table_ok(&mut src).unwrap_or(false);
        src.seek(SeekFrom::Start(0)).map_err(io_err)?;
        decode_symphonia(src, input, extension, segment, flac_seek_ok, false)?
    };
    finish(audio, input, segment)
}

fn finish(audio: Audio, input: &Input, segment: Segment) -> Result<Audio, FeatureError> {
    if audio.samples.is_empty() {
        let detail = if segment.offset > 0.0 {
            format!(
                " from {} s on (the segment starts after the end)",
                segment.offset
            )
        } else {
            String::new()
        };
        return Err(FeatureError::Empty {
            input: input.clone(),
            detail,
        });
    }
    if let Some(index) = audio.samples.iter().position(|x| !x.is_finite()) {
        return Err(FeatureError::NonFinite {
            input: input.clone(),
            index,
            value: audio.samples[index],
        });
    }
    Ok(audio)
}

fn read_up_to(src: &mut dyn Read, buf: &mut [u8]) -> io::Result<usize> {
    let mut n = 0;
    while n < buf.len() {
        match src.read(&mut buf[n..]) {
            Ok(0) => break,
            Ok(k) => n += k,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(n)
}

/// Opens the container with symphonia's probe (`riff`: the stream starts with a RIFF/WAVE
/// header, see [`format_probe`]).
fn open_format(
    riff: bool,
    hint: &Hint,
    mss: MediaSourceStream<'static>,
    input: &Input,
) -> Result<Box<dyn FormatReader>, FeatureError> {
    format_probe(riff)
        .probe(
            hint,
            mss,
            FormatOptions::default(),
            MetadataOptions::default(),
        )
        .map_err(|e| match e {
            SymError::Unsupported(_) => FeatureError::Unsupported {
                input: input.clone(),
                detail: "not WAV, FLAC, Ogg Vorbis or MP3".into(),
            },
            other => sym_error(input, other, "inside the header"),
        })
}

/// The container's default audio track.
fn audio_track<'a>(
    format: &'a dyn FormatReader,
    input: &Input,
) -> Result<&'a symphonia::core::formats::Track, FeatureError> {
    format
        .default_track(TrackType::Audio)
        .ok_or_else(|| FeatureError::Unsupported {
            input: input.clone(),
            detail: "no audio track".into(),
        })
}

fn io_error(input: &Input, e: io::Error) -> FeatureError {
    match input.path() {
        Some(p) => FeatureError::Io {
            path: p.to_path_buf(),
            source: e,
        },
        None => FeatureError::Corrupt {
            input: input.clone(),
            detail: e.to_string(),
        },
    }
}

fn truncated(input: &Input, detail: impl Into<String>) -> FeatureError {
    FeatureError::Truncated {
        input: input.clone(),
        detail: detail.into(),
    }
}

fn corrupt(input: &Input, detail: impl Into<String>) -> FeatureError {
    FeatureError::Corrupt {
        input: input.clone(),
        detail: detail.into(),
    }
}

enum WavError {
    /// hound does not read this encoding: try symphonia.
    Unsupported(String),
    Feature(FeatureError),
}

impl From<FeatureError> for WavError {
    fn from(e: FeatureError) -> Self {
        WavError::Feature(e)
    }
}

/// The fields of a WAV `fmt ` chunk this crate checks.
#[derive(Debug, Clone, Copy)]
struct WavFmt {
    channels: u16,
    block_align: u16,
    bits: u16,
    /// `dwChannelMask` of a `WAVE_FORMAT_EXTENSIBLE` header.
    channel_mask: Option<u32>,
}

impl WavFmt {
    /// Bytes per sample in the data chunk (`block_align / channels`).
    fn container_bytes(&self) -> Option<usize> {
        (self.channels > 0).then(|| (self.block_align / self.channels) as usize)
    }

    /// Whether symphonia can be handed this header. Fuzzing found two overflows in symphonia
    /// 0.6.1's WAV parser: `channels * bits / 8` in 16 bits, and, when an extensible header's
    /// channel mask has fewer bits than channels, a shift past bit 31 as it pads the mask. Its
    /// channel layouts are 32-bit masks anyway, so more than 32 channels cannot be read.
    fn plausible(&self) -> bool {
        let padded_mask_overflows = self
            .channel_mask
            .is_some_and(|m| self.channels as u32 > m.count_ones() && m & 0x8000_0000 != 0);
        (1..=32).contains(&self.channels)
            && (self.channels as u32 * self.bits.div_ceil(8) as u32) <= u16::MAX as u32
            && !padded_mask_overflows
    }
}

/// The `fmt ` chunk, when it lies in `head`.
fn wav_fmt(head: &[u8]) -> Option<WavFmt> {
    let mut pos = 12usize;
    while pos.checked_add(8)? <= head.len() {
        let id = &head[pos..pos + 4];
        let len = u32::from_le_bytes(head[pos + 4..pos + 8].try_into().ok()?) as usize;
        if id == b"fmt " {
            // The fields needed lie in the first 24 bytes, whatever length the chunk claims.
            let end = pos.checked_add(8)?.checked_add(len)?.min(head.len());
            let body = head.get(pos + 8..end)?;
            let u16_at = |i: usize| Some(u16::from_le_bytes(body.get(i..i + 2)?.try_into().ok()?));
            let channel_mask = (u16_at(0)? == 0xFFFE)
                .then(|| Some(u32::from_le_bytes(body.get(20..24)?.try_into().ok()?)))
                .flatten();
            return Some(WavFmt {
                channels: u16_at(2)?,
                block_align: u16_at(12)?,
                bits: u16_at(14)?,
                channel_mask,
            });
        }
        pos = pos.checked_add(8)?.checked_add(len + (len & 1))?;
    }
    None
}

fn decode_wav(
    src: &mut Box<dyn Source>,
    fmt: Option<WavFmt>,
    input: &Input,
    segment: Segment,
) -> Result<Audio, WavError> {
    let mut reader = hound::WavReader::new(io::BufReader::new(src)).map_err(|e| match e {
        // A header hound cannot read may still be one symphonia can (64-bit float, A-law,
        // mu-law, ADPCM): the caller tries it and reports this error if it fails too.
        hound::Error::Unsupported | hound::Error::FormatError(_) => {
            WavError::Unsupported(hound_error(input, e).to_string())
        }
        other => WavError::Feature(hound_error(input, other)),
    })?;
    let spec = reader.spec();
    let channels = spec.channels as usize;
    let bits = spec.bits_per_sample;
    if channels == 0 || spec.sample_rate == 0 {
        return Err(corrupt(
            input,
            format!("{channels} channels at {} Hz", spec.sample_rate),
        )
        .into());
    }
    let container = fmt.and_then(|f| f.container_bytes());
    let plain = match (spec.sample_format, bits) {
        (hound::SampleFormat::Int, 8 | 16 | 24 | 32) | (hound::SampleFormat::Float, 32) => {
            container == Some(bits as usize / 8)
        }
        _ => false,
    };
    if !plain {
        // Samples narrower than their container (24 valid bits in 4 bytes, 20 in 3, ...):
        // the format stores them in the high bits, where hound expects the low ones, and
        // hound's seek assumes no padding. symphonia reads them as stored.
        return Err(WavError::Unsupported(format!(
            "{bits}-bit samples in {}-byte containers",
            container.map_or("unknown".to_string(), |c| c.to_string())
        )));
    }
    let total = reader.duration() as u64;
    let (first, count) = segment.frames(spec.sample_rate);
    let first = first.min(total);
    let count = count.unwrap_or(u64::MAX).min(total - first);
    if first > 0 {
        // hound's `seek` steps `bits / 8` bytes per sample: exact, as the container holds
        // exactly that (checked above).
        reader.seek(first as u32).map_err(|e| io_error(input, e))?;
    }
    let wanted = (count * channels as u64) as usize;
    let mut interleaved = Vec::with_capacity(wanted.min(1 << 24));
    let cut = |e: hound::Error, got: usize| match hound_error(input, e) {
        FeatureError::Truncated { input, .. } => FeatureError::Truncated {
            input,
            detail: format!(
                "the WAV data ends after {:.3} s of the {:.3} s its header states",
                (first + (got / channels) as u64) as f64 / spec.sample_rate as f64,
                total as f64 / spec.sample_rate as f64
            ),
        },
        other => other,
    };
    match spec.sample_format {
        hound::SampleFormat::Float => {
            for s in reader.samples::<f32>().take(wanted) {
                let s = s.map_err(|e| cut(e, interleaved.len()))?;
                interleaved.push(s);
            }
        }
        hound::SampleFormat::Int => {
            let scale = 1.0 / (1u64 << (bits - 1)) as f32;
            for s in reader.samples::<i32>().take(wanted) {
                let s = s.map_err(|e| cut(e, interleaved.len()))?;
                interleaved.push(s as f32 * scale);
            }
        }
    }
    let samples = if channels == 1 {
        interleaved
    } else {
        let mut mono = Vec::with_capacity(interleaved.len() / channels);
        mix_down(&interleaved, channels, &mut mono);
        mono
    };
    Ok(Audio {
        samples,
        sample_rate: spec.sample_rate,
    })
}

fn hound_error(input: &Input, e: hound::Error) -> FeatureError {
    match e {
        // hound reports a short read as `Other` with this message.
        hound::Error::IoError(io)
            if io.kind() == io::ErrorKind::UnexpectedEof
                || io.to_string().contains("Failed to read enough bytes") =>
        {
            truncated(
                input,
                "the WAV data ends before the length its header states",
            )
        }
        hound::Error::IoError(io) => io_error(input, io),
        hound::Error::FormatError(why) => corrupt(input, format!("bad WAV header: {why}")),
        other => corrupt(input, format!("WAV: {other}")),
    }
}

/// Appends the average of each frame of interleaved channels to `out`.
fn mix_down(interleaved: &[f32], channels: usize, out: &mut Vec<f32>) {
    if channels == 1 {
        out.extend_from_slice(interleaved);
        return;
    }
    let inv = 1.0 / channels as f32;
    out.extend(
        interleaved
            .chunks_exact(channels)
            .map(|frame| frame.iter().sum::<f32>() * inv),
    );
}

fn sym_error(input: &Input, e: SymError, during: &str) -> FeatureError {
    match e {
        SymError::IoError(io) if io.kind() == io::ErrorKind::UnexpectedEof => {
            truncated(input, format!("the stream ends {during}"))
        }
        SymError::IoError(io) => io_error(input, io),
        SymError::Unsupported(what) => FeatureError::Unsupported {
            input: input.clone(),
            detail: what.to_string(),
        },
        other => corrupt(input, format!("{other} ({during})")),
    }
}

/// symphonia's probe with the formats this crate reads: FLAC, MP3, Ogg, and WAV only when
/// `with_wav` (the file starts with a RIFF/WAVE header whose `fmt ` chunk was checked). The
/// default probe would also find a RIFF header behind leading junk and hand it to a WAV parser
/// that overflows on some headers (found by fuzzing); such bytes are not a WAV file.
fn format_probe(with_wav: bool) -> &'static Probe {
    use symphonia::default::{formats, meta};
    static PROBES: [OnceLock<Probe>; 2] = [OnceLock::new(), OnceLock::new()];
    PROBES[usize::from(with_wav)].get_or_init(|| {
        let mut p = Probe::default();
        p.register_format::<formats::FlacReader<'_>>();
        p.register_format::<formats::MpaReader<'_>>();
        p.register_format::<formats::OggReader<'_>>();
        if with_wav {
            p.register_format::<formats::WavReader<'_>>();
        }
        p.register_metadata::<meta::Id3v1Reader<'_>>();
        p.register_metadata::<meta::Id3v2Reader<'_>>();
        p
    })
}

/// Whether a FLAC file's SEEKTABLE is consistent: seek points (placeholders aside) in
/// non-decreasing sample and byte order, all inside the file. symphonia 0.6.1 trusts the table
/// and subtracts past zero on one that is not (found by fuzzing), so such files are decoded
/// from the start instead of seeking.
fn flac_seek_table_ok(src: &mut Box<dyn Source>) -> io::Result<bool> {
    let len = src.seek(SeekFrom::End(0))?;
    src.seek(SeekFrom::Start(4))?;
    let mut pos = 4u64;
    let mut table = Vec::new();
    loop {
        let mut header = [0u8; 4];
        src.read_exact(&mut header)?;
        let size = u32::from_be_bytes([0, header[1], header[2], header[3]]) as u64;
        pos += 4;
        if header[0] & 0x7F == 3 {
            if size > len.saturating_sub(pos) {
                return Ok(false);
            }
            table.resize(size as usize, 0);
            src.read_exact(&mut table)?;
        } else {
            src.seek(SeekFrom::Current(size as i64))?;
        }
        pos += size;
        if header[0] & 0x80 != 0 || pos >= len {
            break;
        }
    }
    // Frames start after the metadata, at `pos`; offsets in the table are relative to it.
    let mut last = (0u64, 0u64);
    for point in table.chunks(18) {
        let Ok(point) = <[u8; 18]>::try_from(point) else {
            return Ok(false);
        };
        let sample = u64::from_be_bytes(point[..8].try_into().expect("8 bytes"));
        let offset = u64::from_be_bytes(point[8..16].try_into().expect("8 bytes"));
        if sample == u64::MAX {
            continue; // placeholder
        }
        if sample < last.0 || offset < last.1 || pos.checked_add(offset).is_none_or(|o| o > len) {
            return Ok(false);
        }
        last = (sample, offset);
    }
    Ok(true)
}

fn decode_symphonia(
    src: Box<dyn Source>,
    input: &Input,
    extension: Option<&str>,
    segment: Segment,
    flac_seek_ok: bool,
    riff_at_start: bool,
) -> Result<Audio, FeatureError> {
    let source: Box<dyn MediaSource> =
        Box::new(SeekableSource::new(src).map_err(|e| io_error(input, e))?);
    let mss = MediaSourceStream::new(source, Default::default());
    let mut hint = Hint::new();
    if let Some(ext) = extension {
        hint.with_extension(ext);
    }
    let mut format = open_format(riff_at_start, &hint, mss, input)?;
    let track = audio_track(format.as_ref(), input)?;
    let track_id = track.id;
    let time_base = track.time_base;
    let declared_frames = track.num_frames;
    let params = track
        .codec_params
        .as_ref()
        .and_then(|p| p.audio())
        .ok_or_else(|| FeatureError::Unsupported {
            input: input.clone(),
            detail: "audio track without codec parameters".into(),
        })?
        .clone();
    let mut decoder = symphonia::default::get_codecs()
        .make_audio_decoder(&params, &AudioDecoderOptions::default())
        .map_err(|e| sym_error(input, e, "at the codec setup"))?;
    let mut rate = params.sample_rate.filter(|&r| r > 0);

    // After a seek, packet timestamps place each decoded buffer (codecs that need a priming
    // packet return an empty first buffer, so counting frames from the seek point would be off
    // by that packet); without one, frames are counted from the start.
    let mut seeked = false;
    let mut position = 0i64;
    let mut first_wanted = 0u64;
    let mut count_wanted = u64::MAX;
    if let Some(r) = rate {
        let (first, count) = segment.frames(r);
        first_wanted = first;
        count_wanted = count.unwrap_or(u64::MAX);
    }
    // symphonia's seeks in FLAC, Ogg and WAV land on a packet whose timestamp is exact. In MP3
    // they land on a byte estimate (and the bit reservoir needs earlier frames), so an MP3
    // segment is decoded from the start, counting frames.
    let short_name = format.format_info().short_name;
    let exact_seek = matches!(short_name, "flac" | "ogg" | "wave" | "aiff");
    let seek_ok = short_name != "flac" || flac_seek_ok;
    // FLAC (STREAMINFO) and WAV state their exact length in frames. (Ogg's is the last granule
    // position, which counts from wherever the stream was cut; MP3's is an estimate.)
    let exact_length = matches!(short_name, "flac" | "wave" | "aiff");
    let declared_frames = declared_frames.filter(|_| exact_length);
    if let Some(declared) = declared_frames
        && first_wanted >= declared
    {
        // The segment starts at or after the end: nothing to decode (`finish` says so).
        return Ok(Audio {
            samples: Vec::new(),
            sample_rate: rate.unwrap_or(1),
        });
    }
    // Timestamp of the stream's first output frame: the first packet's, after its encoder
    // delay. Usually 0; not in an Ogg stream cut from a longer one (it starts at a granule
    // position), nor where the container's first timestamp is negative.
    let mut origin = 0i64;
    if let (Some(r), true) = (rate, segment.offset > 0.0 && exact_seek && seek_ok) {
        loop {
            match format.next_packet() {
                Ok(Some(p)) if p.track_id == track_id => {
                    origin = p.pts.get().saturating_add_unsigned(p.trim_start.get());
                    break;
                }
                Ok(Some(_)) => {}
                Ok(None) => break,
                Err(e) => return Err(sym_error(input, e, "inside the first packet")),
            }
        }
        let ts = origin.saturating_add(frame_to_timestamp(first_wanted, time_base, r));
        let sk = guarded_seek(format.as_mut(), ts, track_id);
        match sk {
            Ok(_) => {
                decoder.reset();
                seeked = true;
            }
            // Unseekable or out of range: decode from the start and skip (past the end the
            // result is empty, which `finish` reports).
            Err(SymError::SeekError(_)) => {
                guarded_seek(format.as_mut(), origin, track_id)
                    .map_err(|e| sym_error(input, e, "while seeking"))?;
                decoder.reset();
            }
            Err(e) => return Err(sym_error(input, e, "while seeking")),
        }
    }

    let mut out: Vec<f32> = Vec::new();
    let mut interleaved: Vec<f32> = Vec::new();
    let mut taken = 0u64;
    loop {
        let packet = match format.next_packet() {
            Ok(Some(p)) => p,
            Ok(None) => break,
            Err(SymError::ResetRequired) => {
                return Err(FeatureError::Unsupported {
                    input: input.clone(),
                    detail: "the stream changes its parameters midway".into(),
                });
            }
            Err(e) => {
                let at = rate.map_or(String::new(), |r| {
                    format!(" after {:.3} s", (first_wanted + taken) as f64 / r as f64)
                });
                return Err(sym_error(input, e, &format!("inside a packet{at}")));
            }
        };
        if packet.track_id != track_id {
            continue;
        }
        let pts = packet.pts;
        let buf = decoder
            .decode(&packet)
            .map_err(|e| sym_error(input, e, "while decoding"))?;
        let channels = buf.spec().channels().count();
        let buf_rate = buf.spec().rate();
        if channels == 0 || buf_rate == 0 {
            return Err(corrupt(input, "decoded audio without channels or rate"));
        }
        match rate {
            None => {
                rate = Some(buf_rate);
                let (first, count) = segment.frames(buf_rate);
                first_wanted = first;
                count_wanted = count.unwrap_or(u64::MAX);
            }
            Some(r) if r != buf_rate => {
                return Err(FeatureError::Unsupported {
                    input: input.clone(),
                    detail: format!("the sample rate changes from {r} Hz to {buf_rate} Hz"),
                });
            }
            Some(_) => {}
        }
        let r = rate.unwrap_or(buf_rate);
        // Frame index of this buffer's first frame, from the stream's start (negative for
        // frames before it, which a seek's pre-roll may decode).
        let start = if seeked {
            timestamp_to_frame(pts.get().saturating_sub(origin), time_base, r)
        } else {
            position
        };
        buf.copy_to_vec_interleaved::<f32>(&mut interleaved);
        let frames = interleaved.len() / channels;
        position = start.saturating_add(frames as i64);
        let first = first_wanted as i64;
        if position <= first {
            continue;
        }
        let skip = (first - start).max(0) as usize;
        let keep = ((frames - skip) as u64).min(count_wanted - taken) as usize;
        mix_down(
            &interleaved[skip * channels..(skip + keep) * channels],
            channels,
            &mut out,
        );
        taken += keep as u64;
        if taken >= count_wanted {
            break;
        }
    }
    // A FLAC or WAV stream that ends before its stated length is damaged, not short.
    if let (Some(declared), Some(r)) = (declared_frames, rate)
        && taken < count_wanted
        && first_wanted + taken < declared
    {
        return Err(truncated(
            input,
            format!(
                "the stream ends after {:.3} s of the {:.3} s its header states",
                (first_wanted + taken) as f64 / r as f64,
                declared as f64 / r as f64
            ),
        ));
    }
    Ok(Audio {
        samples: out,
        sample_rate: rate.unwrap_or(1),
    })
}

/// An accurate seek to `ts`. symphonia's FLAC seek can subtract past zero on damaged files
/// even when the seek table looked consistent (it also indexes frames as it reads them); where
/// overflow checks turn that into a panic, the seek counts as impossible.
fn guarded_seek(
    format: &mut dyn FormatReader,
    ts: i64,
    track_id: u32,
) -> Result<symphonia::core::formats::SeekedTo, SymError> {
    std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        format.seek(
            SeekMode::Accurate,
            SeekTo::Timestamp {
                ts: Timestamp::new(ts),
                track_id,
            },
        )
    }))
    .unwrap_or(Err(SymError::SeekError(SeekErrorKind::Unseekable)))
}

/// `ts` (in `time_base` units) as a frame index at `rate`, rounded to the nearest frame.
fn timestamp_to_frame(ts: i64, time_base: Option<TimeBase>, rate: u32) -> i64 {
    match time_base {
        Some(tb) => {
            let (n, d) = (tb.numer.get() as i128, tb.denom.get() as i128);
            let x = ts as i128 * n * rate as i128;
            (x + x.signum() * d / 2)
                .checked_div(d)
                .map_or(0, |v| v.clamp(i64::MIN as i128, i64::MAX as i128) as i64)
        }
        None => ts,
    }
}

/// Frame index `frame` at `rate` as a timestamp in `time_base` units (rounded down).
fn frame_to_timestamp(frame: u64, time_base: Option<TimeBase>, rate: u32) -> i64 {
    match time_base {
        Some(tb) => {
            let (n, d) = (tb.numer.get() as u128, tb.denom.get() as u128);
            (frame as u128 * d / (n * rate as u128)).min(i64::MAX as u128) as i64
        }
        None => frame.min(i64::MAX as u64) as i64,
    }
}

/// Adapts any seekable reader to symphonia's `MediaSource`.
struct SeekableSource {
    inner: Box<dyn Source>,
    len: Option<u64>,
}

impl SeekableSource {
    fn new(mut inner: Box<dyn Source>) -> io::Result<Self> {
        let len = inner.seek(SeekFrom::End(0))?;
        inner.seek(SeekFrom::Start(0))?;
        Ok(Self {
            inner,
            len: Some(len),
        })
    }
}

impl Read for SeekableSource {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.inner.read(buf)
    }
}

impl Seek for SeekableSource {
    fn seek(&mut self, pos: SeekFrom) -> io::Result<u64> {
        self.inner.seek(pos)
    }
}

impl MediaSource for SeekableSource {
    fn is_seekable(&self) -> bool {
        true
    }

    fn byte_len(&self) -> Option<u64> {
        self.len
    }
}
