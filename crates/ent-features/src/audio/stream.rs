//! Reading a file of any length a block at a time: decoded on a background thread, resampled
//! as it arrives, with damage in the middle reported and stepped over instead of ending it.

use std::path::Path;
use std::sync::mpsc::{self, Receiver, SyncSender};
use std::thread::JoinHandle;

use crate::error::{FeatureError, Input};
use crate::resample::StreamResampler;

use super::source::*;
use super::*;

/// Source samples the decoding thread gathers before handing them over.
const HANDOFF: usize = 32_768;
/// Seconds stepped past damage before decoding is tried again.
const STEP_PAST: f64 = 1.0;
/// Attempts in a row to resume after damage before the rest counts as lost (a minute of
/// damage, in steps of [`STEP_PAST`]).
const MAX_RESUMES: usize = 64;
/// Damage closer than this to the previous stretch (seconds) extends it.
const MERGE_WITHIN: f64 = 1.0;
/// Damaged stretches listed at most; later ones extend the last.
const MAX_DAMAGE: usize = 100;

/// A stretch of a file that could not be decoded (or held samples that cannot be audio: NaN,
/// infinite, beyond [`crate::MAX_SAMPLE`]). The
/// unreadable samples are replaced by silence, so later times stay right. Stretches less than
/// a second apart are listed as one, and at most 100 are listed (the last then runs on).
#[derive(Debug, Clone, PartialEq)]
pub struct Damage {
    /// Start, in seconds from the start of the file.
    pub start: f64,
    /// End in seconds; `None` when nothing after `start` could be read.
    pub end: Option<f64>,
    /// What the decoder said.
    pub detail: String,
}

impl std::fmt::Display for Damage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.end {
            Some(end) => write!(
                f,
                "damaged audio from {} to {} (unreadable samples replaced by silence): {}",
                clock(self.start),
                clock(end),
                self.detail
            ),
            None => write!(
                f,
                "damaged audio from {} to the end (nothing after it could be read): {}",
                clock(self.start),
                self.detail
            ),
        }
    }
}

/// `h:mm:ss.mmm` (or `m:ss.mmm` under an hour).
pub fn clock(secs: f64) -> String {
    let ms = (secs.max(0.0) * 1000.0).round() as u64;
    let (h, m, s, ms) = (ms / 3_600_000, ms / 60_000 % 60, ms / 1000 % 60, ms % 1000);
    if h > 0 {
        format!("{h}:{m:02}:{s:02}.{ms:03}")
    } else {
        format!("{m}:{s:02}.{ms:03}")
    }
}

enum Msg {
    /// Mono samples at the source rate (given).
    Samples(u32, Vec<f32>),
    /// `samples` source samples could not be decoded; `end_known`: decoding resumed after them.
    Lost {
        samples: u64,
        end_known: bool,
        detail: String,
    },
    /// The end; an error when the file could not be read at all.
    End(Option<FeatureError>),
}

/// A file decoded block by block to mono at a fixed rate, holding only a few blocks in memory
/// however long the file is. Decoding runs on a background thread, ahead of the reader.
///
/// The samples equal [`load_resampled`]'s, bit for bit, for a file without damage. Damage
/// after the start (a corrupt packet, a stretch of NaN or out-of-range samples, a file cut
/// short) does not end the
/// stream: the damaged stretch becomes silence, decoding resumes after it where the format
/// can seek, and [`AudioStream::damage`] lists each stretch with its time. A file that cannot
/// be opened or whose first packet is unreadable is an error, as with [`load`].
#[derive(Debug)]
pub struct AudioStream {
    input: Input,
    rx: Receiver<Msg>,
    worker: Option<JoinHandle<()>>,
    rate: u32,
    source_rate: u32,
    duration: Option<f64>,
    resampler: Option<StreamResampler>,
    /// Source samples received (lost stretches included).
    received: u64,
    /// Output samples handed out.
    delivered: u64,
    damage: Vec<Damage>,
    ended: bool,
}

impl AudioStream {
    /// Opens `path` for reading at `sample_rate` Hz. The header is read here (errors as
    /// [`probe`]'s); the samples come from [`AudioStream::next_block`].
    pub fn open(path: impl AsRef<Path>, sample_rate: u32) -> Result<Self, FeatureError> {
        Self::open_segment(path, Segment::WHOLE, sample_rate)
    }

    /// As [`AudioStream::open`], for a segment of the file (times stay relative to the
    /// segment's start).
    pub fn open_segment(
        path: impl AsRef<Path>,
        segment: Segment,
        sample_rate: u32,
    ) -> Result<Self, FeatureError> {
        let path = path.as_ref().to_path_buf();
        segment.validate()?;
        // A file cut short is read up to the cut (and the loss reported), so only its header
        // needs to be sound here.
        let info = match probe(&path) {
            Ok(info) => Some(info),
            Err(FeatureError::Truncated { .. }) => None,
            Err(e) => return Err(e),
        };
        let resampler = match info {
            Some(i) => Some(
                StreamResampler::new(i.sample_rate, sample_rate).map_err(|e| e.in_file(&path))?,
            ),
            None => None,
        };
        let duration = info.and_then(|i| i.duration_secs()).map(|d| {
            let rest = (d - segment.offset).max(0.0);
            segment.duration.map_or(rest, |s| s.min(rest))
        });
        let (tx, rx) = mpsc::sync_channel(4);
        let rate = info.map(|i| i.sample_rate);
        let frames = info.and_then(|i| i.frames);
        let worker_path = path.clone();
        let worker = std::thread::Builder::new()
            .name("ent-audio-stream".into())
            .spawn(move || decode_worker(&worker_path, segment, rate, frames, &tx))
            .map_err(|e| FeatureError::Io {
                path: path.clone(),
                source: e,
            })?;
        Ok(Self {
            input: Input::file(&path),
            rx,
            worker: Some(worker),
            rate: sample_rate,
            source_rate: rate.unwrap_or(0),
            duration,
            resampler,
            received: 0,
            delivered: 0,
            damage: Vec::new(),
            ended: false,
        })
    }

    /// Output samples per second.
    pub fn sample_rate(&self) -> u32 {
        self.rate
    }

    /// Length in seconds where the header states it exactly (WAV, FLAC); see [`AudioInfo`].
    pub fn duration_secs(&self) -> Option<f64> {
        self.duration
    }

    /// The damaged stretches met so far, in file order.
    pub fn damage(&self) -> &[Damage] {
        &self.damage
    }

    /// The next samples (a fraction of a second to a few seconds' worth); `None` at the end.
    pub fn next_block(&mut self) -> Result<Option<Vec<f32>>, FeatureError> {
        let mut out = Vec::new();
        while out.is_empty() {
            if self.ended {
                return Ok(None);
            }
            let msg = self
                .rx
                .recv()
                .unwrap_or(Msg::End(Some(FeatureError::Corrupt {
                    input: self.input.clone(),
                    detail: "the decoding thread stopped unexpectedly".into(),
                })));
            match msg {
                Msg::Samples(rate, mut x) => {
                    if self.resampler.is_none() && self.received == 0 {
                        self.source_rate = rate;
                        self.resampler =
                            Some(StreamResampler::new(rate, self.rate).map_err(|e| {
                                e.in_file(self.input.path().unwrap_or(Path::new("")))
                            })?);
                    }
                    self.silence_unusable(&mut x);
                    self.received += x.len() as u64;
                    self.push(&x, &mut out)?;
                }
                Msg::Lost {
                    samples,
                    end_known,
                    detail,
                } => {
                    let start = self.received as f64 / self.source_rate as f64;
                    let end = (self.received + samples) as f64 / self.source_rate as f64;
                    self.record(start, end_known.then_some(end), detail);
                    let zeros = vec![0f32; HANDOFF];
                    let mut left = samples;
                    while left > 0 {
                        let n = left.min(HANDOFF as u64) as usize;
                        self.push(&zeros[..n], &mut out)?;
                        left -= n as u64;
                    }
                    self.received += samples;
                }
                Msg::End(err) => {
                    self.ended = true;
                    if let Some(h) = self.worker.take() {
                        let _ = h.join();
                    }
                    if let Some(e) = err {
                        return Err(e);
                    }
                    if let Some(r) = self.resampler.take() {
                        r.finish(&mut out)?;
                    }
                    if out.is_empty() && self.delivered == 0 {
                        return Err(FeatureError::Empty {
                            input: self.input.clone(),
                            detail: String::new(),
                        });
                    }
                    if out.is_empty() {
                        return Ok(None);
                    }
                }
            }
        }
        self.delivered += out.len() as u64;
        Ok(Some(out))
    }

    fn push(&mut self, x: &[f32], out: &mut Vec<f32>) -> Result<(), FeatureError> {
        match self.resampler.as_mut() {
            Some(r) => r.push(x, out),
            None => Err(FeatureError::Corrupt {
                input: self.input.clone(),
                detail: "samples after the end of the stream".into(),
            }),
        }
    }

    /// Replaces samples that cannot be audio (NaN, infinite, beyond [`crate::MAX_SAMPLE`]) by
    /// silence, recording each run as damage.
    fn silence_unusable(&mut self, x: &mut [f32]) {
        let rate = self.source_rate as f64;
        let usable = |v: f32| crate::sample::is_audio(v, crate::MAX_SAMPLE);
        let mut i = 0;
        while i < x.len() {
            if usable(x[i]) {
                i += 1;
                continue;
            }
            let first = x[i];
            let start = i;
            while i < x.len() && !usable(x[i]) {
                x[i] = 0.0;
                i += 1;
            }
            let t0 = (self.received + start as u64) as f64 / rate;
            let t1 = (self.received + i as u64) as f64 / rate;
            let what = if first.is_finite() {
                format!(
                    "samples that cannot be audio ({first:e}, beyond +-{})",
                    crate::MAX_SAMPLE
                )
            } else {
                format!("samples that are not finite ({first})")
            };
            self.record(t0, Some(t1), what);
        }
    }

    /// Records damage, merged with the previous record when it starts within [`MERGE_WITHIN`]
    /// of its end (keeping the first description: where the damage begins), or when
    /// [`MAX_DAMAGE`] are listed already.
    fn record(&mut self, start: f64, end: Option<f64>, detail: String) {
        let full = self.damage.len() >= MAX_DAMAGE;
        if let Some(last) = self.damage.last_mut()
            && (full || last.end.is_some_and(|e| start - e < MERGE_WITHIN))
        {
            last.end = match (last.end, end) {
                (Some(a), Some(b)) => Some(a.max(b)),
                _ => None,
            };
            return;
        }
        self.damage.push(Damage { start, end, detail });
    }
}

impl Drop for AudioStream {
    fn drop(&mut self) {
        // Dropping the receiver makes the worker's next hand-off fail, which stops it.
        let (_, rx) = mpsc::sync_channel(0);
        drop(std::mem::replace(&mut self.rx, rx));
        if let Some(h) = self.worker.take() {
            let _ = h.join();
        }
    }
}

/// Decodes `path` from `segment` on, sending blocks of source samples; after damage, resumes
/// [`STEP_PAST`] seconds further on.
fn decode_worker(
    path: &Path,
    segment: Segment,
    mut rate: Option<u32>,
    total_frames: Option<u64>,
    tx: &SyncSender<Msg>,
) {
    let input = Input::file(path);
    let extension = path.extension().and_then(|e| e.to_str()).map(str::to_owned);
    // Source samples of the segment sent so far (lost ones included).
    let mut sent = 0u64;
    let mut resumes = 0usize;
    let mut resumed = false;
    loop {
        // Until the first samples arrive, `sent` is 0 and the rate may be unknown.
        let secs_sent = rate.map_or(0.0, |r| sent as f64 / r as f64);
        let part = Segment {
            offset: segment.offset + secs_sent,
            duration: segment.duration.map(|d| (d - secs_sent).max(1e-9)),
        };
        let mut got = 0u64;
        let mut block = Vec::with_capacity(HANDOFF);
        let mut receiver_gone = false;
        let mut rate_changed = None;
        let result = {
            let mut sink = |r: u32, x: &[f32]| {
                let first = *rate.get_or_insert(r);
                if r != first {
                    rate_changed = Some(r);
                    return false;
                }
                block.extend_from_slice(x);
                got += x.len() as u64;
                if block.len() >= HANDOFF
                    && tx
                        .send(Msg::Samples(first, std::mem::take(&mut block)))
                        .is_err()
                {
                    receiver_gone = true;
                    return false;
                }
                true
            };
            open_file(path).and_then(|(file, _)| {
                decode_source(
                    Box::new(file),
                    &input,
                    extension.as_deref(),
                    part,
                    Some(&mut sink),
                )
            })
        };
        let r = rate.unwrap_or(1);
        if receiver_gone || (!block.is_empty() && tx.send(Msg::Samples(r, block)).is_err()) {
            return;
        }
        sent += got;
        if got > 0 {
            resumes = 0;
        }
        if let Some(r) = rate_changed {
            let e = FeatureError::Unsupported {
                input: input.clone(),
                detail: format!(
                    "the sample rate changes from {r0} Hz to {r} Hz",
                    r0 = rate.unwrap_or(0)
                ),
            };
            let _ = tx.send(Msg::End(Some(e)));
            return;
        }
        let err = match result {
            Ok(_) => {
                let _ = tx.send(Msg::End(None));
                return;
            }
            Err(e) => e,
        };
        if sent == 0 && !resumed {
            // Not a single sample: the file cannot be read.
            let _ = tx.send(Msg::End(Some(err)));
            return;
        }
        let detail = damage_detail(&err);
        match err {
            // A resume past the end: the damage ran to the end of the file.
            FeatureError::Empty { .. } => {
                let _ = tx.send(Msg::End(None));
                return;
            }
            FeatureError::Corrupt { .. } if resumes < MAX_RESUMES => {
                resumes += 1;
                resumed = true;
            }
            // Cut short, gone, or damaged beyond repair: the rest is lost.
            _ => {
                let _ = tx.send(Msg::Lost {
                    samples: 0,
                    end_known: false,
                    detail,
                });
                let _ = tx.send(Msg::End(None));
                return;
            }
        }
        // Skip ahead; the stretch becomes silence once decoding resumes after it (a resume
        // past the end sends nothing more and ends the stream).
        let r = rate.unwrap_or(1) as f64;
        let step = (STEP_PAST * r).round() as u64;
        let limit = segment.duration.map(|d| (d * r).round() as u64);
        let step = limit.map_or(step, |l| step.min(l.saturating_sub(sent)));
        // Not past the end the header states.
        let step = total_frames.map_or(step, |t| {
            let first = (segment.offset * r).round() as u64;
            step.min(t.saturating_sub(first + sent))
        });
        if step == 0 {
            let _ = tx.send(Msg::End(None));
            return;
        }
        if tx
            .send(Msg::Lost {
                samples: step,
                end_known: true,
                detail,
            })
            .is_err()
        {
            return;
        }
        sent += step;
    }
}

/// The decoder's message without the file name (the stream's owner names the file).
fn damage_detail(e: &FeatureError) -> String {
    match e {
        FeatureError::Corrupt { detail, .. } => format!("corrupt audio: {detail}"),
        FeatureError::Truncated { detail, .. } => format!("truncated audio: {detail}"),
        other => other.to_string(),
    }
}
