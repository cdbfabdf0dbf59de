//! FLAC, Ogg Vorbis, MP3 and the WAV encodings `hound` does not read, through `symphonia`, with
//! the guards that keep its parsers from panicking on malformed input.

use std::io::{self, Read, Seek, SeekFrom};
use std::sync::OnceLock;

use symphonia::core::codecs::audio::AudioDecoderOptions;
use symphonia::core::errors::{Error as SymError, SeekErrorKind};
use symphonia::core::formats::probe::{Hint, Probe};
use symphonia::core::formats::{FormatOptions, FormatReader, SeekMode, SeekTo, TrackType};
use symphonia::core::io::{MediaSource, MediaSourceStream};
use symphonia::core::meta::MetadataOptions;
use symphonia::core::units::{TimeBase, Timestamp};

use crate::error::{FeatureError, Input};

use super::source::*;
use super::*;

/// Opens the container with symphonia's probe, the file extension as a hint (`riff`: the
/// stream starts with a RIFF/WAVE header, see [`format_probe`]).
pub(super) fn open_format(
    mut src: Box<dyn Source>,
    extension: Option<&str>,
    riff: bool,
    input: &Input,
) -> Result<Box<dyn FormatReader>, FeatureError> {
    if !riff
        && let Some(why) = super::vorbis::setup_problem(&mut src).map_err(|e| io_error(input, e))?
    {
        return Err(corrupt(input, format!("bad Vorbis setup header: {why}")));
    }
    let source: Box<dyn MediaSource> =
        Box::new(SeekableSource::new(src).map_err(|e| io_error(input, e))?);
    let mss = MediaSourceStream::new(source, Default::default());
    let mut hint = Hint::new();
    if let Some(ext) = extension {
        hint.with_extension(ext);
    }
    format_probe(riff)
        .probe(
            &hint,
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

/// The audio codec parameters of a track.
pub(super) fn audio_params<'a>(
    track: &'a symphonia::core::formats::Track,
    input: &Input,
) -> Result<&'a symphonia::core::codecs::audio::AudioCodecParameters, FeatureError> {
    track
        .codec_params
        .as_ref()
        .and_then(|p| p.audio())
        .ok_or_else(|| FeatureError::Unsupported {
            input: input.clone(),
            detail: "audio track without codec parameters".into(),
        })
}

/// The container's default audio track.
pub(super) fn audio_track<'a>(
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

pub(super) fn sym_error(input: &Input, e: SymError, during: &str) -> FeatureError {
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
pub(super) fn format_probe(with_wav: bool) -> &'static Probe {
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
pub(super) fn flac_seek_table_ok(src: &mut Box<dyn Source>) -> io::Result<bool> {
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

pub(super) fn decode_symphonia(
    src: Box<dyn Source>,
    input: &Input,
    extension: Option<&str>,
    segment: Segment,
    flac_seek_ok: bool,
    riff_at_start: bool,
    mut sink: Option<Sink<'_>>,
) -> Result<Audio, FeatureError> {
    let mut format = open_format(src, extension, riff_at_start, input)?;
    let track = audio_track(format.as_ref(), input)?;
    let track_id = track.id;
    let time_base = track.time_base;
    let declared_frames = track.num_frames;
    let params = audio_params(track, input)?.clone();
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
    // Where the next packet should start (frames from the stream's start); after a seek, at
    // or before the first frame wanted.
    let mut next_frame: Option<i64> = seeked.then_some(first_wanted as i64);
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
        let frames_of = |dur: u64| rate.map_or(0, |r| timestamp_to_frame(dur as i64, time_base, r));
        let skippable = |at: i64, dur: u64, first: u64| {
            let n = frames_of(dur);
            n > 0 && at.saturating_add(n) <= first as i64
        };
        let buf = match decoder.decode(&packet) {
            Ok(buf) => buf,
            // Decoding from the start towards a later segment (MP3, or FLAC without a sound
            // seek table): a packet that fails before the segment only moves the count on,
            // so damage earlier in the file does not stop a segment after it.
            Err(SymError::DecodeError(_))
                if !seeked && skippable(position, packet.dur.get(), first_wanted) =>
            {
                position += frames_of(packet.dur.get());
                continue;
            }
            Err(e) => return Err(sym_error(input, e, "while decoding")),
        };
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
        let mut start = if seeked {
            timestamp_to_frame(pts.get().saturating_sub(origin), time_base, r)
        } else {
            position
        };
        buf.copy_to_vec_interleaved::<f32>(&mut interleaved);
        let frames = interleaved.len() / channels;
        // FLAC and WAV packets carry exact sample positions: a packet that starts after the
        // previous one ended means frames in between were skipped over (a FLAC reader resyncs
        // past corrupt frames without a word), which would shift all later audio in time.
        // Before the segment wanted, that only moves the count on.
        if exact_length {
            let at = timestamp_to_frame(pts.get().saturating_sub(origin), time_base, r);
            if let Some(next) = next_frame
                && at > next
            {
                if at > first_wanted as i64 {
                    return Err(corrupt(
                        input,
                        format!(
                            "{:.3} s of audio are missing after {:.3} s",
                            (at - next) as f64 / r as f64,
                            next as f64 / r as f64
                        ),
                    ));
                }
                start = at;
            }
            next_frame = Some(at.saturating_add(frames as i64));
        }
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
        if !flush(&mut sink, r, &mut out) || taken >= count_wanted {
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
pub(super) fn guarded_seek(
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
pub(super) fn timestamp_to_frame(ts: i64, time_base: Option<TimeBase>, rate: u32) -> i64 {
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
pub(super) fn frame_to_timestamp(frame: u64, time_base: Option<TimeBase>, rate: u32) -> i64 {
    match time_base {
        Some(tb) => {
            let (n, d) = (tb.numer.get() as u128, tb.denom.get() as u128);
            (frame as u128 * d / (n * rate as u128)).min(i64::MAX as u128) as i64
        }
        None => frame.min(i64::MAX as u64) as i64,
    }
}

/// Adapts any seekable reader to symphonia's `MediaSource`.
pub(super) struct SeekableSource {
    pub(super) inner: Box<dyn Source>,
    pub(super) len: Option<u64>,
}

impl SeekableSource {
    pub(super) fn new(mut inner: Box<dyn Source>) -> io::Result<Self> {
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
