//! Recordings of any length: read as a stream, cut into windows at pauses, each window decoded,
//! the results stitched into one transcript, one frame-emotion track and one segment list with
//! times in the file (docs/method.md §10).
//!
//! # The segmenter
//!
//! The audio is cut into 10 ms frames; a frame is a *pause* when its energy lies
//! [`Windowing::pause_db`] below the loud frames of the audio buffered around it (their 90th
//! percentile) or under [`Windowing::floor_dbfs`] (digital silence, faint noise). With at most
//! [`Windowing::max_window`] plus a look-ahead buffered:
//!
//! - a file no longer than one window is decoded whole, exactly as before windowing existed;
//! - a pause of at least [`Windowing::skip_pause`] is not decoded: no words, neutral frames
//!   (a window ends [`MARGIN`] into it and the next starts [`MARGIN`] before the speech);
//! - otherwise a window ends in the middle of the longest pause of at least
//!   [`Windowing::min_pause`] that lies between [`Windowing::min_window`] and `max_window`;
//! - with no such pause (continuous speech or music) windows of `max_window` overlap by
//!   [`Windowing::overlap`]; each keeps its output up to the middle of the overlap and the
//!   next one from there.
//!
//! Window edges fall on encoder frame edges, so the frames of all windows form one track on
//! the file's own frame grid. Memory holds one window of audio, whatever the file's length;
//! time grows linearly with it.

use std::ops::ControlFlow;
use std::path::Path;

use ent_common::par::{MapOptions, ordered_map};
use ent_decode::Decoded;
use ent_decode::metrics::{Segment as Span, frames_to_segments};
use ent_features::{AudioStream, Segment};
use serde::{Deserialize, Serialize};

use crate::engine::{DamageOut, Engine, Transcript};
use crate::error::{PipelineError, Result};

/// Sample rate of every front end.
const RATE: u32 = 16_000;
/// Samples per segmenter frame (10 ms).
const VAD_FRAME: usize = 160;
/// Seconds of pause kept beside speech where a long pause is skipped.
pub const MARGIN: f64 = 0.2;

/// How long recordings are cut into windows (see the module documentation).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Windowing {
    /// Longest window, seconds.
    pub max_window: f64,
    /// Shortest window that ends at a pause, seconds.
    pub min_window: f64,
    /// Shortest pause a window may end in, seconds.
    pub min_pause: f64,
    /// Pauses at least this long are not decoded, seconds.
    pub skip_pause: f64,
    /// Overlap of fixed windows where no pause is found, seconds.
    pub overlap: f64,
    /// A frame this many dB below the loud frames around it is a pause.
    pub pause_db: f64,
    /// A frame under this level (dB relative to full scale) is a pause.
    pub floor_dbfs: f64,
}

impl Default for Windowing {
    fn default() -> Self {
        Windowing {
            max_window: 20.0,
            min_window: 4.0,
            min_pause: 0.2,
            skip_pause: 3.0,
            overlap: 2.0,
            pause_db: 30.0,
            floor_dbfs: -60.0,
        }
    }
}

impl Windowing {
    /// Checks that the lengths fit together.
    pub fn validate(&self) -> Result<()> {
        let bad = |name, value: f64, why| {
            Err(PipelineError::Setting {
                name,
                value: value.to_string(),
                why,
            })
        };
        for (name, value) in [
            ("windowing.max_window", self.max_window),
            ("windowing.min_window", self.min_window),
            ("windowing.min_pause", self.min_pause),
            ("windowing.skip_pause", self.skip_pause),
            ("windowing.overlap", self.overlap),
            ("windowing.pause_db", self.pause_db),
            ("windowing.floor_dbfs", self.floor_dbfs),
        ] {
            if !value.is_finite() {
                return bad(name, value, "must be finite");
            }
        }
        if self.max_window < 1.0 {
            return bad(
                "windowing.max_window",
                self.max_window,
                "must be at least 1 s",
            );
        }
        if !(0.0..self.max_window).contains(&self.min_window) {
            return bad(
                "windowing.min_window",
                self.min_window,
                "must lie in [0, max_window)",
            );
        }
        if !(0.0..=self.max_window / 2.0).contains(&self.overlap) {
            return bad(
                "windowing.overlap",
                self.overlap,
                "must lie in [0, max_window / 2]",
            );
        }
        if self.skip_pause < 2.0 * MARGIN + 0.1 {
            return bad(
                "windowing.skip_pause",
                self.skip_pause,
                "must be at least 0.5 s",
            );
        }
        if self.min_pause <= 0.0 {
            return bad("windowing.min_pause", self.min_pause, "must be positive");
        }
        if self.pause_db <= 0.0 {
            return bad("windowing.pause_db", self.pause_db, "must be positive");
        }
        Ok(())
    }
}

/// One recording decoded: what the commands print, and the frame track behind it.
#[derive(Debug, Clone)]
pub struct FileDecoding {
    /// Text, emotions, timed tokens, segments, windows, damage.
    pub transcript: Transcript,
    /// Emotion class per encoder frame of the file.
    pub frame_emotions: Vec<usize>,
    /// Emotion probabilities per encoder frame, `[T][K]`.
    pub frame_probs: Vec<Vec<f32>>,
    /// The frame emotions as segments (class indices).
    pub segments: Vec<Span>,
    /// Class index of the utterance emotion.
    pub class: usize,
}

/// What the next step over the buffered audio is (positions in samples from its start).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Cut {
    /// `..to` is a long pause: not decoded.
    Skip { to: usize },
    /// Decode `..end`; keep its output before `keep_to`; the next window starts at `next`.
    Window {
        end: usize,
        keep_to: usize,
        next: usize,
    },
}

/// The segmenter's lengths in samples, each a whole number of encoder frames (`hop`).
#[derive(Debug, Clone, Copy)]
struct Lengths {
    hop: usize,
    max: usize,
    min: usize,
    min_pause: usize,
    skip: usize,
    overlap: usize,
    margin: usize,
    pause_db: f64,
    floor_db: f64,
}

impl Lengths {
    fn new(w: &Windowing, hop: usize) -> Self {
        let down = |secs: f64| ((secs * RATE as f64) as usize / hop) * hop;
        Lengths {
            hop,
            max: down(w.max_window).max(hop),
            min: down(w.min_window),
            min_pause: (w.min_pause * RATE as f64) as usize,
            skip: (w.skip_pause * RATE as f64) as usize,
            overlap: down(w.overlap),
            margin: down(MARGIN).max(hop),
            pause_db: w.pause_db,
            floor_db: w.floor_dbfs,
        }
    }

    /// Samples to hold before deciding: one window, and enough to see a long pause after it.
    fn look_ahead(&self) -> usize {
        self.max + self.skip + self.margin
    }

    fn up(&self, x: usize) -> usize {
        x.div_ceil(self.hop) * self.hop
    }

    fn down(&self, x: usize) -> usize {
        x / self.hop * self.hop
    }
}

/// Pause flags of the whole 10 ms frames of `x`.
fn pauses(x: &[f32], l: &Lengths) -> Vec<bool> {
    let db: Vec<f64> = x
        .chunks_exact(VAD_FRAME)
        .map(|f| {
            let e = f.iter().map(|&v| (v as f64) * (v as f64)).sum::<f64>() / VAD_FRAME as f64;
            10.0 * (e + 1e-12).log10()
        })
        .collect();
    if db.is_empty() {
        return vec![];
    }
    let mut sorted = db.clone();
    sorted.sort_by(f64::total_cmp);
    let loud = sorted[(sorted.len() - 1) * 9 / 10];
    let threshold = (loud - l.pause_db).max(l.floor_db);
    db.iter().map(|&d| d < threshold).collect()
}

/// Pause flags of the first `frames` encoder frames (of `hop` samples) of `x`, for
/// [`ent_decode::emotions_by_stretch`]: a frame is a pause when at least half of its 10 ms
/// segmenter frames are, as the segmenter finds them (`w`'s `pause_db` below the loud frames of
/// `x`, or under `floor_dbfs`); a frame past the end of `x` is a pause.
pub(crate) fn frame_pauses(x: &[f32], w: &Windowing, hop: usize, frames: usize) -> Vec<bool> {
    let hop = hop.max(1);
    let p = pauses(x, &Lengths::new(w, hop));
    (0..frames)
        .map(|f| {
            let (a, b) = (f * hop / VAD_FRAME, ((f + 1) * hop).div_ceil(VAD_FRAME));
            let inside = &p[a.min(p.len())..b.min(p.len())];
            inside.is_empty() || 2 * inside.iter().filter(|&&q| q).count() >= inside.len()
        })
        .collect()
}

/// Runs of pause frames as (first sample, samples).
fn pause_runs(p: &[bool]) -> Vec<(usize, usize)> {
    let mut runs = Vec::new();
    let mut i = 0;
    while i < p.len() {
        if !p[i] {
            i += 1;
            continue;
        }
        let s = i;
        while i < p.len() && p[i] {
            i += 1;
        }
        runs.push((s * VAD_FRAME, (i - s) * VAD_FRAME));
    }
    runs
}

/// The next step over `buf` (which starts on a frame edge). `eof`: nothing follows `buf`;
/// `first`: nothing came before it.
fn decide(buf: &[f32], eof: bool, first: bool, l: &Lengths) -> Cut {
    let n = buf.len();
    let whole = Cut::Window {
        end: n,
        keep_to: n,
        next: n,
    };
    if first && eof && n <= l.max {
        return whole;
    }
    let p = pauses(buf, l);
    let runs = pause_runs(&p);
    // A long pause at the start: skip it, up to a margin before the speech.
    if let Some(&(0, len)) = runs.first()
        && len >= l.skip
    {
        let to = if eof && len + VAD_FRAME > n {
            n
        } else {
            l.down(len.saturating_sub(l.margin))
        };
        if to > 0 {
            return Cut::Skip { to };
        }
    }
    let ending = |end: usize| {
        let end = end.min(n);
        Cut::Window {
            end,
            keep_to: end,
            next: end,
        }
    };
    // A long pause after speech within the window: end a margin into it (it is skipped next).
    if let Some(&(s, _)) = runs
        .iter()
        .find(|&&(s, len)| s > 0 && len >= l.skip && s + l.margin <= l.max)
    {
        return ending(l.up(s + l.margin));
    }
    if eof && n <= l.max {
        return whole;
    }
    // The longest pause whose middle lies between the shortest and the longest window.
    let best = runs
        .iter()
        .filter(|&&(s, len)| {
            let mid = s + len / 2;
            len >= l.min_pause && mid >= l.min.max(l.hop) && mid <= l.max
        })
        .fold(None::<(usize, usize)>, |b, &r| match b {
            Some(b) if b.1 >= r.1 => Some(b),
            _ => Some(r),
        });
    if let Some((s, len)) = best {
        let cut = l.down(s + len / 2).max(l.hop);
        return ending(cut);
    }
    // Continuous sound: fixed windows, each keeping its output to the middle of the overlap.
    let keep_to = l.down(l.max - l.overlap / 2);
    Cut::Window {
        end: l.max,
        keep_to,
        next: l.max - l.overlap,
    }
}

/// What the stitcher does next, in file order.
#[derive(Debug, Clone)]
enum Step<W> {
    /// A pause up to this sample: neutral frames.
    Pause { to: u64 },
    /// A window (`W`: its samples, to decode; then its decoding), placed as `place` says.
    Window { window: W, place: Place },
}

/// Where a window's output goes on the file's track.
#[derive(Debug, Clone)]
struct Place {
    /// The window's first sample.
    start: u64,
    /// Its output is kept from this sample ...
    keep_from: u64,
    /// ... to this one (to its last frame when `last`).
    keep_to: u64,
    last: bool,
    /// Pause flags of the window's encoder frames (empty unless emotion is decided per
    /// stretch).
    pauses: Vec<bool>,
}

/// The steps of a file, read from its stream as they are asked for: the reading half of
/// [`Engine::transcribe_file`].
struct Steps<'a> {
    engine: &'a Engine,
    stream: &'a mut AudioStream,
    l: Lengths,
    buf: Vec<f32>,
    /// Absolute sample of `buf[0]`, and where the next window's output is kept from.
    at: u64,
    keep_from: u64,
    eof: bool,
    first: bool,
    /// A read failed: nothing more.
    failed: bool,
    total: Option<f64>,
    progress: &'a mut dyn FnMut(f64, Option<f64>),
}

impl Iterator for Steps<'_> {
    type Item = Result<Step<Vec<f32>>>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.failed {
            return None;
        }
        let l = &self.l;
        while !self.eof && self.buf.len() < l.look_ahead() {
            match self.stream.next_block() {
                Ok(Some(b)) => self.buf.extend_from_slice(&b),
                Ok(None) => self.eof = true,
                Err(e) => {
                    self.failed = true;
                    return Some(Err(e.into()));
                }
            }
        }
        if self.buf.is_empty() {
            return None;
        }
        let step = match decide(&self.buf, self.eof, self.first, l) {
            Cut::Skip { to } => {
                self.buf.drain(..to);
                self.at += to as u64;
                self.keep_from = self.keep_from.max(self.at);
                Step::Pause { to: self.at }
            }
            Cut::Window { end, keep_to, next } => {
                let at = self.at;
                let step = if l.hop * 3 > end {
                    // Too short for the encoder (a sliver at the end): part of the pause.
                    Step::Pause {
                        to: at + end as u64,
                    }
                } else {
                    let pauses = if self.engine.stretches.is_some() {
                        frame_pauses(
                            &self.buf[..end],
                            &self.engine.windowing,
                            l.hop,
                            end.div_ceil(l.hop),
                        )
                    } else {
                        Vec::new()
                    };
                    Step::Window {
                        window: self.buf[..end].to_vec(),
                        place: Place {
                            start: at,
                            keep_from: self.keep_from,
                            keep_to: at + keep_to as u64,
                            last: self.eof && end == self.buf.len(),
                            pauses,
                        },
                    }
                };
                self.keep_from = self.keep_from.max(at + keep_to as u64);
                self.buf.drain(..next);
                self.at += next as u64;
                step
            }
        };
        self.first = false;
        (self.progress)(self.at as f64 / RATE as f64, self.total);
        Some(Ok(step))
    }
}

/// Gathers the windows' outputs into one track on the file's frame grid.
struct Stitcher<'a> {
    engine: &'a Engine,
    hop: usize,
    neutral: usize,
    classes: usize,
    frames: Vec<usize>,
    probs: Vec<Vec<f32>>,
    /// Pause flags of `frames`.
    pauses: Vec<bool>,
    /// Which of `frames` are a skipped pause (never decoded: neutral whatever is decided).
    skipped: Vec<bool>,
    tokens: Vec<ent_decode::TokenEmotion>,
    windows: Vec<Window>,
    score: f64,
}

struct Window {
    start: usize,
    end: usize,
    tokens: Vec<u32>,
    probs: Vec<f32>,
}

impl<'a> Stitcher<'a> {
    /// An empty track of `engine`'s frames, `hop` samples each.
    fn new(engine: &'a Engine, hop: usize) -> Self {
        Stitcher {
            engine,
            hop,
            neutral: engine.meta.emotions.neutral,
            classes: engine.labels().len(),
            frames: Vec::new(),
            probs: Vec::new(),
            pauses: Vec::new(),
            skipped: Vec::new(),
            tokens: Vec::new(),
            windows: Vec::new(),
            score: 0.0,
        }
    }

    fn frame_of(&self, sample: u64) -> usize {
        (sample / self.hop as u64) as usize
    }

    /// Extends the track to `upto` frames: neutral over pauses, else the last frame repeated
    /// (the one or two frames an encoder leaves at a window's end).
    fn fill(&mut self, upto: usize, pause: bool) {
        while self.frames.len() < upto {
            match (pause, self.frames.last(), self.probs.last()) {
                (false, Some(&f), Some(p)) => {
                    let p = p.clone();
                    self.frames.push(f);
                    self.probs.push(p);
                }
                _ => {
                    let mut p = vec![0.0; self.classes];
                    if let Some(x) = p.get_mut(self.neutral) {
                        *x = 1.0;
                    }
                    self.frames.push(self.neutral);
                    self.probs.push(p);
                }
            }
            let after = self.pauses.last().copied().unwrap_or(true);
            self.pauses.push(pause || after);
            self.skipped.push(pause);
        }
    }

    /// Adds window `d`, placed as `place` says.
    fn add(&mut self, place: &Place, d: Decoded) {
        let Place {
            start,
            keep_from,
            keep_to,
            last,
            ref pauses,
        } = *place;
        let off = self.frame_of(start);
        let t = d.hypothesis.frame_emotions.len();
        let from = self.frame_of(keep_from);
        let to = if last {
            off + t
        } else {
            self.frame_of(keep_to)
        };
        self.fill(from, false);
        self.frames.truncate(from);
        self.probs.truncate(from);
        self.pauses.truncate(from);
        self.skipped.truncate(from);
        for g in from..to.max(from) {
            match (
                d.hypothesis.frame_emotions.get(g - off),
                d.hypothesis.frame_probs.get(g - off),
            ) {
                (Some(&e), Some(p)) => {
                    self.frames.push(e);
                    self.probs.push(p.clone());
                    self.pauses
                        .push(pauses.get(g - off).copied().unwrap_or(false));
                    self.skipped.push(false);
                }
                _ => {
                    self.fill(g + 1, false);
                    if let (Some(&q), Some(flag)) = (pauses.get(g - off), self.pauses.last_mut()) {
                        *flag = q;
                    }
                }
            }
        }
        let shift = self.engine.frame_shift();
        let space = self.engine.meta.vocab.space();
        let mut kept = Vec::new();
        for tok in &d.tokens {
            let g = off + tok.frame;
            if g >= from && g < to {
                // Words of different windows stay apart.
                if kept.is_empty()
                    && tok.token != space
                    && self.tokens.last().is_some_and(|t| t.token != space)
                {
                    self.tokens.push(ent_decode::TokenEmotion {
                        token: space,
                        frame: g,
                        time: g as f64 * shift,
                        emotion: tok.emotion,
                    });
                }
                kept.push(tok.token);
                self.tokens.push(ent_decode::TokenEmotion {
                    token: tok.token,
                    frame: g,
                    time: g as f64 * shift,
                    emotion: tok.emotion,
                });
            }
        }
        self.score += d.hypothesis.score;
        self.windows.push(Window {
            start: from,
            end: to.max(from),
            tokens: kept,
            probs: d.utterance_probs,
        });
    }
}

impl Engine {
    /// Decodes a recording of any length (see the module documentation): streamed from disk,
    /// cut into windows, stitched; windows are decoded on [`Engine::jobs`] threads at once. `progress` is told the seconds read so far and, where the
    /// header states it, the length. A file no longer than one window gives what
    /// [`Engine::decode`] gives for it. Damage inside the file (a corrupt stretch, a cut-short
    /// end) does not stop it: the rest is decoded and the damage listed in
    /// [`Transcript::damaged`]; a file that cannot be read at all is an error.
    pub fn transcribe_file(
        &self,
        id: &str,
        path: &Path,
        segment: Segment,
        progress: &mut dyn FnMut(f64, Option<f64>),
    ) -> Result<FileDecoding> {
        self.transcribe_file_on(id, path, segment, self.jobs, progress)
    }

    /// [`Engine::transcribe_file`] with its windows on `jobs` threads.
    pub(crate) fn transcribe_file_on(
        &self,
        id: &str,
        path: &Path,
        segment: Segment,
        jobs: usize,
        progress: &mut dyn FnMut(f64, Option<f64>),
    ) -> Result<FileDecoding> {
        let l = Lengths::new(&self.windowing, self.hop_samples());
        let mut stream = AudioStream::open_segment(path, segment, RATE)?;
        let total = stream.duration_secs();
        let mut st = Stitcher::new(self, l.hop);
        let steps = Steps {
            engine: self,
            stream: &mut stream,
            buf: Vec::with_capacity(l.look_ahead() + RATE as usize),
            l,
            at: 0,
            keep_from: 0,
            eof: false,
            first: true,
            failed: false,
            total,
            progress,
        };
        // Windows are decoded on `jobs` threads, at most `2 * jobs` ahead of the stitcher.
        let decode = |step: Result<Step<Vec<f32>>>| -> Result<Step<Decoded>> {
            Ok(match step? {
                Step::Pause { to } => Step::Pause { to },
                // Emotion by stretch is decided once, on the stitched track.
                Step::Window { window, place } => Step::Window {
                    window: self.decode_samples_per_frame(&[id], &[&window])?.remove(0),
                    place,
                },
            })
        };
        ordered_map(steps, MapOptions::new(jobs), decode, |_, step| {
            match step.map_err(PipelineError::from_item)? {
                Step::Pause { to } => st.fill(st.frame_of(to), true),
                Step::Window { window, place } => st.add(&place, window),
            }
            Ok::<_, PipelineError>(ControlFlow::Continue(()))
        })?;
        let damaged = stream
            .damage()
            .iter()
            .map(|d| DamageOut {
                start: crate::round_ms(d.start),
                end: d.end.map(crate::round_ms),
                message: d.to_string(),
            })
            .collect();
        self.stitched(id, st, damaged)
    }

    /// Encoder frame shift in 16 kHz samples.
    pub(crate) fn hop_samples(&self) -> usize {
        (self.frame_shift() * RATE as f64).round() as usize
    }

    fn stitched(
        &self,
        id: &str,
        mut st: Stitcher<'_>,
        damaged: Vec<DamageOut>,
    ) -> Result<FileDecoding> {
        let shift = self.frame_shift();
        if let Some(s) = self.stretches {
            ent_decode::decide_stretches(
                &mut st.frames,
                &st.pauses,
                s.min_pause_frames(shift),
                st.neutral,
                s.min_share,
            )?;
            // A skipped pause stays neutral: it was never decoded.
            for (f, _) in st.frames.iter_mut().zip(&st.skipped).filter(|(_, s)| **s) {
                *f = st.neutral;
            }
            for t in &mut st.tokens {
                t.emotion = st.frames[t.frame];
            }
        }
        let k = st.classes;
        // The file's emotion: the windows' probabilities weighted by their length.
        let probs = match st.windows.as_slice() {
            [] => vec![],
            [one] => one.probs.clone(),
            many => {
                let mut p = vec![0f64; k];
                let mut w = 0f64;
                for win in many {
                    let len = (win.end - win.start) as f64;
                    for (acc, &x) in p.iter_mut().zip(&win.probs) {
                        *acc += len * x as f64;
                    }
                    w += len;
                }
                p.iter().map(|&x| (x / w.max(1e-12)) as f32).collect()
            }
        };
        let probs = if probs.len() == k {
            probs
        } else {
            // Nothing decoded (the whole file a pause): neutral.
            (0..k)
                .map(|i| if i == st.neutral { 1.0 } else { 0.0 })
                .collect()
        };
        let texts: Vec<String> = st
            .windows
            .iter()
            .map(|w| self.meta.vocab.decode(&w.tokens))
            .collect();
        let text = if texts.len() == 1 {
            texts[0].clone()
        } else {
            texts
                .iter()
                .map(|t| t.trim())
                .filter(|t| !t.is_empty())
                .collect::<Vec<_>>()
                .join(" ")
        };
        let windows = st
            .windows
            .iter()
            .zip(texts)
            .map(|(w, text)| crate::engine::WindowOut {
                start: crate::round_ms(w.start as f64 * shift),
                end: crate::round_ms(w.end as f64 * shift),
                text,
                emotion: self.utterance_emotion(&w.probs),
            })
            .collect();
        let segments = if st.frames.is_empty() {
            vec![]
        } else {
            frames_to_segments(&st.frames, shift, shift).map_err(ent_decode::DecodeError::from)?
        };
        let class = ent_decode::argmax(&probs);
        let transcript = self.make_transcript(crate::engine::Parts {
            id,
            text,
            probs: &probs,
            tokens: &st.tokens,
            segments: &segments,
            score: st.score,
            windows,
            damaged,
        });
        Ok(FileDecoding {
            transcript,
            frame_emotions: st.frames,
            frame_probs: st.probs,
            segments,
            class,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A window placed from frame `start`, kept from frame `from` to `to` (640 samples each).
    fn place(start: u64, from: u64, to: u64, pauses: Vec<bool>) -> Place {
        Place {
            start: start * 640,
            keep_from: from * 640,
            keep_to: to * 640,
            last: false,
            pauses,
        }
    }

    fn lengths() -> Lengths {
        Lengths::new(&Windowing::default(), 640)
    }

    /// `secs` of a tone (speech stand-in) or of faint noise.
    fn tone(secs: f64) -> Vec<f32> {
        (0..(secs * RATE as f64) as usize)
            .map(|i| 0.3 * (i as f32 * 0.07).sin())
            .collect()
    }

    fn quiet(secs: f64) -> Vec<f32> {
        (0..(secs * RATE as f64) as usize)
            .map(|i| 1e-4 * (i as f32 * 1.3).sin())
            .collect()
    }

    fn cat(parts: &[Vec<f32>]) -> Vec<f32> {
        parts.concat()
    }

    /// Pause flags per encoder frame (40 ms): the frames of the quiet stretches, and those
    /// past the end of the audio; the stretches start in the middles of the long pauses.
    #[test]
    fn pauses_are_flagged_per_encoder_frame() {
        let w = Windowing::default();
        // Every part a whole number of 640-sample frames: tone 0..25, pause 25..30, tone
        // 30..60, pause 60..70, tone 70..85, pause 85..87 (80 ms), tone 87..102.
        let x = cat(&[
            tone(1.0),
            quiet(0.2),
            tone(1.2),
            quiet(0.4),
            tone(0.6),
            quiet(0.08),
            tone(0.6),
        ]);
        let p = frame_pauses(&x, &w, 640, 104);
        let want: Vec<bool> = (0..104)
            .map(|f| {
                (25..30).contains(&f) || (60..70).contains(&f) || (85..87).contains(&f) || f >= 102
            })
            .collect();
        assert_eq!(p, want);
        assert_eq!(ent_decode::stretch_starts(&p, 4), vec![27, 65]);
        // Half a frame of pause (20 ms) makes a pause frame; a quarter does not.
        let flagged = |gap: f64| {
            let y = cat(&[tone(0.4), quiet(gap), tone(0.4)]);
            let p = frame_pauses(&y, &w, 640, 20);
            (0..20).filter(|&f| p[f]).collect::<Vec<_>>()
        };
        assert_eq!(flagged(0.02), vec![10]);
        assert!(flagged(0.01).is_empty());
    }

    #[test]
    fn a_file_of_one_window_is_decoded_whole() {
        let l = lengths();
        let x = cat(&[quiet(5.0), tone(3.0), quiet(5.0)]);
        assert_eq!(
            decide(&x, true, true, &l),
            Cut::Window {
                end: x.len(),
                keep_to: x.len(),
                next: x.len()
            }
        );
    }

    #[test]
    fn windows_end_in_the_longest_pause() {
        let l = lengths();
        // Pauses of 0.3 s at 3 s (before min_window), 0.5 s at 8 s and 0.8 s at 14 s.
        let x = cat(&[
            tone(3.0),
            quiet(0.3),
            tone(4.7),
            quiet(0.5),
            tone(5.5),
            quiet(0.8),
            tone(20.0),
        ]);
        let Cut::Window { end, keep_to, next } = decide(&x, false, true, &l) else {
            panic!("a window");
        };
        assert_eq!((keep_to, next), (end, end));
        let mid = (14.0 + 0.4) * RATE as f64;
        assert!((end as f64 - mid).abs() <= 640.0 + 160.0, "{end} vs {mid}");
        assert_eq!(end % 640, 0);
    }

    #[test]
    fn long_pauses_are_skipped_with_a_margin() {
        let l = lengths();
        let x = cat(&[quiet(10.0), tone(30.0)]);
        let Cut::Skip { to } = decide(&x, false, false, &l) else {
            panic!("a skip");
        };
        let want = (10.0 - MARGIN) * RATE as f64;
        assert!((to as f64 - want).abs() <= 640.0 + 160.0, "{to}");
        // Speech then a long pause: the window ends a margin into the pause.
        let y = cat(&[tone(6.0), quiet(10.0), tone(20.0)]);
        let Cut::Window { end, .. } = decide(&y, false, false, &l) else {
            panic!("a window");
        };
        let want = (6.0 + MARGIN) * RATE as f64;
        assert!((end as f64 - want).abs() <= 640.0 + 160.0, "{end}");
        // All pause, at the end of the file: skipped to the end.
        let z = quiet(25.0);
        assert_eq!(decide(&z, true, false, &l), Cut::Skip { to: z.len() });
    }

    #[test]
    fn continuous_sound_gets_overlapping_windows() {
        let l = lengths();
        let x = tone(60.0);
        let c = decide(&x, false, true, &l);
        assert_eq!(
            c,
            Cut::Window {
                end: 20 * RATE as usize,
                keep_to: 19 * RATE as usize,
                next: 18 * RATE as usize
            }
        );
    }

    /// A window's decoded output: `text` emitted one character per frame from frame 1 on,
    /// over `frames` frames of emotion `emotion`.
    fn window(engine: &Engine, text: &str, frames: usize, emotion: usize) -> Decoded {
        let tokens = engine.meta.vocab.encode(text);
        let k = engine.labels().len();
        let token_frames: Vec<usize> = (1..=tokens.len()).collect();
        let mut probs = vec![0.0f32; k];
        probs[emotion] = 1.0;
        Decoded {
            hypothesis: ent_decode::Hypothesis {
                tokens: tokens.clone(),
                token_frames: token_frames.clone(),
                frame_emotions: vec![emotion; frames],
                frame_probs: vec![probs.clone(); frames],
                score: -1.0,
            },
            tokens: tokens
                .iter()
                .zip(&token_frames)
                .map(|(&token, &frame)| ent_decode::TokenEmotion {
                    token,
                    frame,
                    time: frame as f64 * 0.04,
                    emotion,
                })
                .collect(),
            utterance_probs: probs,
            utterance_emotion: emotion,
            segments: vec![],
        }
    }

    /// Two windows, the second overlapping the first by 10 frames and kept from the middle of
    /// the overlap, then a pause: frames and tokens land at their times in the file, the words
    /// of the two windows stay apart, the pause is neutral.
    /// With emotion decided per stretch, the stitched track is decided once: an emotional
    /// window followed by a skipped pause (which touches the end of the file, so it belongs
    /// to the window's stretch) keeps its emotion over its own frames, and the skipped pause
    /// stays neutral.
    #[test]
    fn a_skipped_pause_stays_neutral_under_the_stretch_decision() {
        let engine = Engine::demo(&candle_core::Device::Cpu, ent_decode::Search::default())
            .unwrap()
            .with_emotion_stretches(Some(crate::Stretches::new(0.2)))
            .unwrap();
        let neutral = engine.meta.emotions.neutral;
        let other = (neutral + 1) % engine.labels().len();
        let mut st = Stitcher::new(&engine, 640);
        // Frames 0..30 emotional, 30..40 neutral (still speech), then 40..120 skipped.
        let mut d = window(&engine, "AB", 40, other);
        d.hypothesis.frame_emotions[30..].fill(neutral);
        st.add(&place(0, 0, 40, vec![false; 40]), d);
        st.fill(120, true);
        let out = engine.stitched("x", st, vec![]).unwrap();
        assert!(out.frame_emotions[..40].iter().all(|&e| e == other));
        assert!(out.frame_emotions[40..].iter().all(|&e| e == neutral));
        assert_eq!(out.segments.len(), 2);
    }

    #[test]
    fn stitching_places_windows_on_the_file_grid() {
        let engine =
            Engine::demo(&candle_core::Device::Cpu, ent_decode::Search::default()).unwrap();
        let neutral = engine.meta.emotions.neutral;
        let other = (neutral + 1) % engine.labels().len();
        let mut st = Stitcher::new(&engine, 640);
        // Window 1: frames 0..40 decoded (38 from the encoder), kept to frame 35; its frames
        // 10..12 are a pause.
        let mut p1 = vec![false; 40];
        p1[10..12].fill(true);
        st.add(&place(0, 0, 35, p1), window(&engine, "AB", 38, other));
        // Window 2 starts at frame 30, kept from frame 35 to 70; its tokens at frames 31 to 34
        // (file frames) fall before 35 and are dropped, the one at frame 35 is kept.
        st.add(
            &place(30, 35, 70, vec![]),
            window(&engine, "CDEFG", 38, neutral),
        );
        st.fill(80, true);
        assert_eq!(st.frames.len(), 80);
        // Pause flags follow the kept frames: window 1's, none of window 2's (it gave none;
        // the two frames its encoder left, 68 and 69, repeat its last), then the pause filled
        // in.
        assert_eq!(st.pauses.len(), 80);
        let flagged: Vec<usize> = (0..80).filter(|&g| st.pauses[g]).collect();
        assert_eq!(
            flagged,
            [10, 11].into_iter().chain(70..80).collect::<Vec<_>>()
        );
        assert!(st.frames[..35].iter().all(|&e| e == other));
        assert!(st.frames[35..].iter().all(|&e| e == neutral));
        let spelled: String = st
            .tokens
            .iter()
            .map(|t| engine.meta.vocab.decode(&[t.token]))
            .collect();
        assert_eq!(spelled, "AB G");
        let frames: Vec<usize> = st.tokens.iter().map(|t| t.frame).collect();
        assert_eq!(frames, [1, 2, 35, 35]);
        assert_eq!(st.windows.len(), 2);
        assert_eq!((st.windows[1].start, st.windows[1].end), (35, 70));
        assert_eq!(st.score, -2.0);
    }

    #[test]
    fn windowing_is_validated() {
        assert!(Windowing::default().validate().is_ok());
        let d = Windowing::default;
        for (w, says) in [
            (
                Windowing {
                    max_window: 0.5,
                    ..d()
                },
                "windowing.max_window = 0.5: must be at least 1 s",
            ),
            (
                Windowing {
                    overlap: 15.0,
                    ..d()
                },
                "windowing.overlap = 15: must lie in",
            ),
            (
                Windowing {
                    min_window: f64::NAN,
                    ..d()
                },
                "windowing.min_window = NaN: must be finite",
            ),
            (
                Windowing {
                    skip_pause: 0.4,
                    ..d()
                },
                "windowing.skip_pause = 0.4: must be at least 0.5 s",
            ),
            (
                Windowing {
                    min_pause: 0.0,
                    ..d()
                },
                "windowing.min_pause = 0: must be positive",
            ),
            (
                Windowing {
                    pause_db: -3.0,
                    ..d()
                },
                "windowing.pause_db = -3: must be positive",
            ),
        ] {
            let e = w.validate().unwrap_err().to_string();
            assert!(e.contains(says), "{w:?}: {e}");
        }
    }
}
