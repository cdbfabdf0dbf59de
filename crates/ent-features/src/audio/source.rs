//! Reading a source: the panic guard around the parsers, format detection, the checks every
//! decoded stream passes, and the errors they report.

use std::io::{self, Read, Seek, SeekFrom};

use crate::error::{FeatureError, Input};

use super::via_symphonia::*;
use super::wav::*;
use super::*;

pub(super) fn probe_unguarded(
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
    let format = open_format(src, extension, riff, input)?;
    let track = audio_track(format.as_ref(), input)?;
    let params = audio_params(track, input)?;
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

pub(super) trait Source: Read + Seek + Send + Sync {}

impl<T: Read + Seek + Send + Sync> Source for T {}

/// Decodes with the decoders' panics turned into errors.
///
/// The decoders are fuzzed (tests/it/fuzz.rs, fuzz/), and the symphonia 0.6.1 panics fuzzing
/// found are kept from it before they happen (see `WavFmt::plausible`, `flac_seek_table_ok`,
/// `guarded_seek`, `format_probe`). This guard is the last line of defence for the ones not yet
/// found: a decoder bug must not take a training run down with it, so such input is reported
/// as corrupt (and the fuzz tests count that as a failure). (With `panic = "abort"` nothing can be
/// caught; the panic message is printed by the panic hook either way.)
pub(super) fn decode_source(
    src: Box<dyn Source>,
    input: &Input,
    extension: Option<&str>,
    segment: Segment,
    sink: Option<Sink<'_>>,
) -> Result<Audio, FeatureError> {
    catch_parser_panic(input, "the decoder", || {
        decode_unguarded(src, input, extension, segment, sink)
    })
}

/// Where a streaming decode hands its mono samples, one decoded packet or block at a time,
/// with their sample rate; returning `false` stops the decoding. Without a sink the samples
/// are collected into the returned [`Audio`] and checked by [`finish`]; with one, the returned
/// `Audio` holds none and the checks are the receiver's.
pub(super) type Sink<'a> = &'a mut dyn FnMut(u32, &[f32]) -> bool;

/// Hands `out` to `sink` (and empties it), if there is one; `false` when the sink says stop.
pub(super) fn flush(sink: &mut Option<Sink<'_>>, rate: u32, out: &mut Vec<f32>) -> bool {
    match sink {
        Some(s) => {
            let go = out.is_empty() || s(rate, out);
            out.clear();
            go
        }
        None => true,
    }
}

/// Runs `f`, turning a panic inside it (a parser bug on malformed bytes) into a "corrupt"
/// error naming `what` and the panic message.
pub(super) fn catch_parser_panic<T>(
    input: &Input,
    what: &str,
    f: impl FnOnce() -> Result<T, FeatureError>,
) -> Result<T, FeatureError> {
    std::panic::catch_unwind(std::panic::AssertUnwindSafe(f)).unwrap_or_else(|payload| {
        let why = crate::error::panic_message(payload.as_ref());
        Err(corrupt(
            input,
            format!("{what} failed on malformed data ({why})"),
        ))
    })
}

/// Reads up to the first 4096 bytes of `src` (for format detection) and rewinds it; an
/// empty source is an error.
pub(super) fn read_head(src: &mut Box<dyn Source>, input: &Input) -> Result<Vec<u8>, FeatureError> {
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

pub(super) fn decode_unguarded(
    mut src: Box<dyn Source>,
    input: &Input,
    extension: Option<&str>,
    segment: Segment,
    mut sink: Option<Sink<'_>>,
) -> Result<Audio, FeatureError> {
    let streamed = sink.is_some();
    let io_err = |e: io::Error| io_error(input, e);
    let head = read_head(&mut src, input)?;
    let head = head.as_slice();
    let audio = if head.len() >= 12 && &head[..4] == b"RIFF" && &head[8..12] == b"WAVE" {
        let fmt = wav_fmt(head);
        match decode_wav(&mut src, fmt, input, segment, reborrow(&mut sink)) {
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
                decode_symphonia(src, input, Some("wav"), segment, false, true, sink).map_err(
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
        decode_symphonia(src, input, extension, segment, flac_seek_ok, false, sink)?
    };
    if streamed {
        return Ok(audio);
    }
    finish(audio, input, segment)
}

pub(super) fn finish(audio: Audio, input: &Input, segment: Segment) -> Result<Audio, FeatureError> {
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
    crate::sample::check(&audio.samples, crate::MAX_SAMPLE, input, 0)?;
    Ok(audio)
}

pub(super) fn read_up_to(src: &mut dyn Read, buf: &mut [u8]) -> io::Result<usize> {
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

pub(super) fn io_error(input: &Input, e: io::Error) -> FeatureError {
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

pub(super) fn truncated(input: &Input, detail: impl Into<String>) -> FeatureError {
    FeatureError::Truncated {
        input: input.clone(),
        detail: detail.into(),
    }
}

pub(super) fn corrupt(input: &Input, detail: impl Into<String>) -> FeatureError {
    FeatureError::Corrupt {
        input: input.clone(),
        detail: detail.into(),
    }
}

/// Appends the average of each frame of interleaved channels to `out`.
pub(super) fn mix_down(interleaved: &[f32], channels: usize, out: &mut Vec<f32>) {
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

/// A shorter-lived handle on the same sink, so it can be passed on and used again.
pub(super) fn reborrow<'a>(sink: &'a mut Option<Sink<'_>>) -> Option<Sink<'a>> {
    match sink {
        Some(s) => Some(&mut **s),
        None => None,
    }
}
