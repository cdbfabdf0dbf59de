//! WAV through `hound`: the `fmt` chunk read once, integer and float PCM, segments by seeking.

use std::io;

use crate::error::{FeatureError, Input};

use super::source::*;
use super::*;

pub(super) enum WavError {
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
pub(super) struct WavFmt {
    pub(super) channels: u16,
    pub(super) block_align: u16,
    pub(super) bits: u16,
    /// `dwChannelMask` of a `WAVE_FORMAT_EXTENSIBLE` header.
    pub(super) channel_mask: Option<u32>,
}

impl WavFmt {
    /// Bytes per sample in the data chunk (`block_align / channels`).
    pub(super) fn container_bytes(&self) -> Option<usize> {
        (self.channels > 0).then(|| (self.block_align / self.channels) as usize)
    }

    /// Whether symphonia can be handed this header. Fuzzing found two overflows in symphonia
    /// 0.6.1's WAV parser: `channels * bits / 8` in 16 bits, and, when an extensible header's
    /// channel mask has fewer bits than channels, a shift past bit 31 as it pads the mask. Its
    /// channel layouts are 32-bit masks anyway, so more than 32 channels cannot be read.
    pub(super) fn plausible(&self) -> bool {
        let padded_mask_overflows = self
            .channel_mask
            .is_some_and(|m| self.channels as u32 > m.count_ones() && m & 0x8000_0000 != 0);
        (1..=32).contains(&self.channels)
            && (self.channels as u32 * self.bits.div_ceil(8) as u32) <= u16::MAX as u32
            && !padded_mask_overflows
    }
}

/// The `fmt ` chunk, when it lies in `head`.
pub(super) fn wav_fmt(head: &[u8]) -> Option<WavFmt> {
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

pub(super) fn decode_wav(
    src: &mut Box<dyn Source>,
    fmt: Option<WavFmt>,
    input: &Input,
    segment: Segment,
    mut sink: Option<Sink<'_>>,
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
    let rate = spec.sample_rate;
    let cut = |e: hound::Error, got: usize| match hound_error(input, e) {
        FeatureError::Truncated { input, .. } => FeatureError::Truncated {
            input,
            detail: format!(
                "the WAV data ends after {:.3} s of the {:.3} s its header states",
                (first + (got / channels) as u64) as f64 / rate as f64,
                total as f64 / rate as f64
            ),
        },
        other => other,
    };
    let values: Box<dyn Iterator<Item = Result<f32, hound::Error>> + '_> = match spec.sample_format
    {
        hound::SampleFormat::Float => Box::new(reader.samples::<f32>().take(wanted)),
        hound::SampleFormat::Int => {
            let scale = 1.0 / (1u64 << (bits - 1)) as f32;
            Box::new(
                reader
                    .samples::<i32>()
                    .take(wanted)
                    .map(move |s| s.map(|v| v as f32 * scale)),
            )
        }
    };
    // Blocks of whole frames, mixed down and handed to the sink as they are read.
    let block = WAV_BLOCK_FRAMES * channels;
    let mut interleaved = Vec::with_capacity(block.min(wanted));
    let mut samples = Vec::with_capacity(if sink.is_some() {
        WAV_BLOCK_FRAMES
    } else {
        (wanted / channels).min(1 << 24)
    });
    for (got, s) in values.enumerate() {
        match s {
            Ok(v) => interleaved.push(v),
            Err(e) => {
                // What was read before the damage still reaches a sink.
                let whole = interleaved.len() / channels * channels;
                mix_down(&interleaved[..whole], channels, &mut samples);
                flush(&mut sink, rate, &mut samples);
                return Err(cut(e, got).into());
            }
        }
        if interleaved.len() == block {
            mix_down(&interleaved, channels, &mut samples);
            interleaved.clear();
            if !flush(&mut sink, rate, &mut samples) {
                break;
            }
        }
    }
    mix_down(&interleaved, channels, &mut samples);
    flush(&mut sink, rate, &mut samples);
    Ok(Audio {
        samples,
        sample_rate: rate,
    })
}

/// Frames per block a streaming WAV decode hands on (a quarter second at 16 kHz).
const WAV_BLOCK_FRAMES: usize = 4096;

pub(super) fn hound_error(input: &Input, e: hound::Error) -> FeatureError {
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
