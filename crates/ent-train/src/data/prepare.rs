//! Checks before training: every utterance is usable, or the user hears about it.

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::path::{Path, PathBuf};

use ent_features::Segment;
use rayon::prelude::*;
use serde::{Deserialize, Serialize};

use super::manifest::duplicates;
use super::utterance::segment_serde;
use super::{
    BadAudio, DataError, EmotionInterval, EmotionMap, Piece, SentenceSpan, Utterance, Vocab,
    normalize_text,
};

/// How far a stated duration may reach past the end of the audio before the utterance counts as
/// bad (Kaldi's `extract-segments --max-overshoot` default); within it the duration is cut to
/// the audio.
pub const MAX_OVERSHOOT_SECS: f64 = 0.5;

/// What [`prepare`] does with data it cannot use. The default skips nothing: every problem is
/// an error listing all utterances concerned.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct BadDataPolicy {
    /// Drop utterances whose audio cannot be used (instead of failing): missing, unreadable,
    /// damaged, silent, or not matching their label times (see [`prepare`]).
    pub skip_bad_audio: bool,
    /// Drop utterances whose emotion label is missing or unknown to the [`EmotionMap`].
    pub skip_unknown_emotion: bool,
    /// Drop utterances whose transcript is missing or empty after normalisation (only checked
    /// when `require_text` is on).
    pub skip_empty_text: bool,
    /// Drop utterances of this many seconds or more (spec §4: training drops those of 18.75 s
    /// or more, [`BadDataPolicy::training`]). Always a drop, never an error; listed in
    /// [`DataReport::too_long`].
    pub max_duration: Option<f64>,
    /// Every utterance needs a non-empty transcript (the RNN-T loss needs a target). When off,
    /// a missing or empty transcript gives an empty token sequence.
    pub require_text: bool,
}

impl Default for BadDataPolicy {
    fn default() -> Self {
        BadDataPolicy {
            skip_bad_audio: false,
            skip_unknown_emotion: false,
            skip_empty_text: false,
            max_duration: None,
            require_text: true,
        }
    }
}

impl BadDataPolicy {
    /// The paper's training setting: the default, dropping utterances of 18.75 s or more.
    pub fn training() -> Self {
        BadDataPolicy {
            max_duration: Some(18.75),
            ..Default::default()
        }
    }
}

/// One checked training example.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PreparedUtt {
    /// Utterance id.
    pub id: String,
    /// Its audio file.
    pub audio: PathBuf,
    /// The part of the file to load (`ent_features::load_segment`).
    #[serde(with = "segment_serde")]
    pub segment: Segment,
    /// Audio appended after `audio`'s, in order: empty for utterances read from a manifest,
    /// the middle and last utterance of a joined example ([`super::joined_examples`]).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub then: Vec<Piece>,
    /// The normalised transcript ([`normalize_text`]).
    pub text: String,
    /// Token ids of `text`, `[U]`, values in `0..V` (no blank, no `<sos/eos>`).
    pub tokens: Vec<u32>,
    /// Emotion class id, in `0..K` of the [`EmotionMap`].
    pub emotion: usize,
    /// Length in seconds: the segment's, else the manifest's, else the file's (from its header).
    pub duration: f64,
    /// Speaker gender: 0 female, 1 male (`f`/`female`/`m`/`male`, any case), `None` if not given
    /// or not one of those.
    pub gender: Option<usize>,
    /// Emotion intensity, as in the manifest.
    pub intensity: Option<f32>,
    /// Speaker id.
    pub speaker: Option<String>,
    /// Recording session (IEMOCAP).
    pub session: Option<u32>,
    /// Emotion intervals (ZED), labels as written.
    pub intervals: Vec<EmotionInterval>,
    /// Where the emotions lie, as classes of the [`EmotionMap`]: the manifest's `intervals`,
    /// or the emotional piece of a joined example. Time outside them is neutral. Empty when
    /// only the utterance label is known.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub spans: Vec<EmotionSpan>,
    /// Where each sentence is said, texts normalised like [`PreparedUtt::text`] (joined by
    /// spaces they are it), when the manifest says; for scoring token times.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub sentences: Vec<SentenceSpan>,
}

/// A stretch of an example whose emotion is known, in seconds from the example's start.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct EmotionSpan {
    /// Start, seconds.
    pub start: f64,
    /// End, seconds (`> start`).
    pub end: f64,
    /// Emotion class id, in `0..K` of the [`EmotionMap`].
    pub class: usize,
}

impl PreparedUtt {
    /// One emotion class per frame for `frames` frames `shift` seconds apart, each the class of
    /// the span holding the frame's centre (neutral `neutral` outside every span); `None` when
    /// the example has no spans.
    pub fn frame_classes(&self, frames: usize, shift: f64, neutral: usize) -> Option<Vec<u32>> {
        if self.spans.is_empty() {
            return None;
        }
        Some(
            (0..frames)
                .map(|f| {
                    let centre = (f as f64 + 0.5) * shift;
                    self.spans
                        .iter()
                        .find(|s| s.start <= centre && centre < s.end)
                        .map_or(neutral, |s| s.class) as u32
                })
                .collect(),
        )
    }
}

/// The checked examples and what was left out.
#[derive(Debug, Clone, PartialEq)]
pub struct Prepared {
    /// The utterances kept, in input order.
    pub utterances: Vec<PreparedUtt>,
    /// What was dropped or noticed, and why.
    pub report: DataReport,
}

/// What [`prepare`] dropped (each only when its policy allows) and noticed.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct DataReport {
    /// Utterances given.
    pub total: usize,
    /// Utterances kept.
    pub kept: usize,
    /// `(id, reason)` for each utterance dropped for its audio; the reason names the file.
    pub bad_audio: Vec<(String, String)>,
    /// Utterances dropped for having no emotion label.
    pub missing_emotion: Vec<String>,
    /// `(id, label)` for each utterance dropped for a label the map does not know.
    pub unknown_emotion: Vec<(String, String)>,
    /// Utterances dropped for a missing or empty transcript.
    pub empty_text: Vec<String>,
    /// Utterances dropped for lasting `max_duration` or more.
    pub too_long: Vec<String>,
    /// Characters outside the vocabulary (encoded as `<unk>`) in the kept transcripts, with
    /// their counts.
    pub unknown_chars: BTreeMap<char, usize>,
    /// `(id, gender)` for kept utterances whose gender is not f/m/female/male (kept, gender
    /// `None`).
    pub unknown_gender: Vec<(String, String)>,
}

impl fmt::Display for DataReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "kept {} of {} utterances", self.kept, self.total)?;
        let dropped: Vec<String> = [
            (self.bad_audio.len(), "with bad audio"),
            (self.missing_emotion.len(), "without emotion label"),
            (self.unknown_emotion.len(), "with unknown emotion labels"),
            (self.empty_text.len(), "with empty transcripts"),
            (self.too_long.len(), "too long"),
        ]
        .into_iter()
        .filter(|(n, _)| *n > 0)
        .map(|(n, what)| format!("{n} {what}"))
        .collect();
        if !dropped.is_empty() {
            write!(f, "; dropped {}", dropped.join(", "))?;
        }
        if !self.unknown_chars.is_empty() {
            let chars: Vec<String> = self
                .unknown_chars
                .iter()
                .map(|(c, n)| format!("{c:?} x{n}"))
                .collect();
            write!(f, "; characters encoded as <unk>: {}", chars.join(", "))?;
        }
        if !self.unknown_gender.is_empty() {
            write!(
                f,
                "; {} unrecognised genders ignored",
                self.unknown_gender.len()
            )?;
        }
        Ok(())
    }
}

fn gender_class(g: &str) -> Option<usize> {
    match g.trim().to_lowercase().as_str() {
        "f" | "female" => Some(0),
        "m" | "male" => Some(1),
        _ => None,
    }
}

/// An utterance whose every sample stays below one step of 16-bit audio (`2^-15`, -90.3 dBFS)
/// is silent: it cannot hold its transcript or its emotion, so [`prepare`] counts it as bad
/// audio.
pub const SILENT_PEAK: f32 = 1.0 / 32_768.0;

/// The shortest utterance [`prepare`] keeps, in seconds: shorter audio gives no encoder frame
/// (one filterbank frame alone is 25 ms; the front ends subsample 4x), nothing to train on.
pub const MIN_DURATION: f64 = 0.1;

/// What the header (or, where it states no length, a decode) says about a file.
#[derive(Debug, Clone, Copy)]
struct FileLength {
    secs: f64,
}

fn file_length(path: &Path) -> Result<FileLength, String> {
    let info = ent_features::probe(path).map_err(|e| e.to_string())?;
    let secs = match info.duration_secs() {
        Some(s) => s,
        // Ogg and MP3 headers give estimates: measure, a block at a time (an hour-long file
        // is never held whole).
        None => {
            let scan = scan(path, Segment::WHOLE, info.sample_rate)?;
            scan.samples as f64 / info.sample_rate as f64
        }
    };
    Ok(FileLength { secs })
}

/// What reading a stretch of a file found.
struct Scan {
    /// Samples read, at the file's rate.
    samples: u64,
    /// The largest magnitude among them.
    peak: f32,
}

/// Decodes `segment` of `path` at its own rate block by block, as training will read it: an
/// error for damage (a corrupt or cut-short stretch, samples that cannot be audio), which
/// `ent_features::load_segment` would refuse, else the length and peak.
fn scan(path: &Path, segment: Segment, rate: u32) -> Result<Scan, String> {
    let mut stream =
        ent_features::AudioStream::open_segment(path, segment, rate).map_err(|e| e.to_string())?;
    let mut found = Scan {
        samples: 0,
        peak: 0.0,
    };
    while let Some(block) = stream.next_block().map_err(|e| e.to_string())? {
        if let Some(d) = stream.damage().first() {
            return Err(d.to_string());
        }
        found.samples += block.len() as u64;
        found.peak = block.iter().fold(found.peak, |p, x| p.max(x.abs()));
    }
    match stream.damage().first() {
        Some(d) => Err(d.to_string()),
        None => Ok(found),
    }
}

/// Why the samples of `u` cannot be trained on (damaged, empty or silent), if they cannot.
fn check_samples(u: &Utterance) -> Result<(), String> {
    let rate = ent_features::probe(&u.audio)
        .map_err(|e| e.to_string())?
        .sample_rate;
    let found = scan(&u.audio, u.segment, rate)?;
    if found.samples == 0 {
        return Err("no audio samples".into());
    }
    let secs = found.samples as f64 / rate as f64;
    if secs < MIN_DURATION {
        return Err(format!(
            "too short: {secs:.3} s of audio, at least {MIN_DURATION} s is needed"
        ));
    }
    if found.peak < SILENT_PEAK {
        let db = |x: f32| 20.0 * (x as f64).log10();
        return Err(format!(
            "silent: no sample reaches {:.1} dBFS (the loudest is {})",
            db(SILENT_PEAK),
            if found.peak > 0.0 {
                format!("{:.1} dBFS", db(found.peak))
            } else {
                "digital silence".into()
            }
        ));
    }
    Ok(())
}

/// Why the labels of `u` cannot belong to `duration` seconds of audio: an emotion interval or
/// a sentence span that starts at or after its end.
fn check_label_times(u: &Utterance, duration: f64) -> Result<(), String> {
    let starts = u
        .intervals
        .iter()
        .map(|iv| ("emotion interval", iv.start, iv.end))
        .chain(
            u.sentences
                .iter()
                .map(|x| ("sentence span", x.start, x.end)),
        );
    for (what, start, end) in starts {
        if start >= duration {
            return Err(format!(
                "the labels do not fit the audio: its {what} [{start}, {end}] s starts at or \
                 after the end of its {duration:.3} s of audio"
            ));
        }
    }
    Ok(())
}

/// The duration of `u` in seconds, or why its audio cannot be used.
fn utterance_duration(u: &Utterance, file: FileLength) -> Result<f64, String> {
    let seg = u.segment;
    if !(seg.offset.is_finite() && seg.offset >= 0.0)
        || seg.duration.is_some_and(|d| !(d.is_finite() && d > 0.0))
    {
        return Err(format!(
            "invalid segment (offset {} s, duration {:?} s)",
            seg.offset, seg.duration
        ));
    }
    if file.secs <= 0.0 {
        return Err("no audio samples".into());
    }
    if seg.offset >= file.secs {
        return Err(format!(
            "the segment starts at {:.3} s, past the end of the {:.3} s file",
            seg.offset, file.secs
        ));
    }
    let available = file.secs - seg.offset;
    match seg.duration.or(u.duration) {
        None => Ok(available),
        Some(d) if !(d.is_finite() && d > 0.0) => Err(format!("stated duration {d} s")),
        Some(d) if d > available + MAX_OVERSHOOT_SECS => Err(format!(
            "the manifest says {d:.3} s from {:.3} s but the file holds {available:.3} s there",
            seg.offset
        )),
        Some(d) => Ok(d.min(available)),
    }
}

/// Checks utterances and turns them into training examples.
///
/// In order, each step over all utterances, so that one run lists everything to fix:
/// 1. ids must be unique;
/// 2. emotion labels: a missing or unknown label ([`EmotionMap::class_of`]) is an error naming
///    each utterance and label, unless `skip_unknown_emotion` drops them;
/// 3. transcripts (when `require_text`): missing, or empty after [`normalize_text`], is an
///    error, unless `skip_empty_text` drops them;
/// 4. audio, in parallel, for the utterances still kept: each file's header is read once
///    ([`ent_features::probe`]; Ogg and MP3, whose headers state no exact length, are decoded).
///    Missing, unreadable or truncated files, segments starting past the end, stated
///    durations more than [`MAX_OVERSHOOT_SECS`] past the end, and emotion intervals or
///    sentence spans starting after the audio's end are all collected;
/// 5. utterances of `max_duration` seconds or more are dropped (never decoded);
/// 6. the samples of every other utterance are decoded, block by block, exactly as training
///    will read them: damage (a corrupt or cut-short stretch, a sample that cannot be audio,
///    see [`ent_features::MAX_SAMPLE`]), audio shorter than [`MIN_DURATION`] and silence (no
///    sample reaching [`SILENT_PEAK`]) are
///    collected with the problems of step 4; the error lists every one (id, path, reason)
///    unless `skip_bad_audio` drops them.
///
/// So every utterance kept loads without error during training.
///
/// Characters outside `vocab` become `<unk>` and are counted in the report. No utterance left
/// is an error.
pub fn prepare(
    utts: &[Utterance],
    vocab: &Vocab,
    emotions: &EmotionMap,
    policy: &BadDataPolicy,
) -> Result<Prepared, DataError> {
    if let Some(m) = policy.max_duration
        && !(m.is_finite() && m > 0.0)
    {
        return Err(DataError::invalid(
            "max_duration",
            format!("{m} s must be finite and > 0"),
        ));
    }
    let total = utts.len();
    let dups = duplicates(utts.iter().map(|u| u.id.as_str()));
    if !dups.is_empty() {
        return Err(DataError::DuplicateIds {
            path: PathBuf::from("the utterances given"),
            ids: dups,
        });
    }
    let mut report = DataReport {
        total,
        ..Default::default()
    };

    // Labels and transcripts: no I/O, so checked first.
    struct Candidate<'a> {
        utt: &'a Utterance,
        emotion: usize,
        text: String,
    }
    let mut candidates = Vec::with_capacity(total);
    let mut empty_text: Vec<(String, String)> = Vec::new();
    for u in utts {
        let class = match &u.emotion {
            None => {
                report.missing_emotion.push(u.id.clone());
                None
            }
            Some(label) => {
                let mut c = emotions.class_of(label);
                if c.is_none() {
                    report.unknown_emotion.push((u.id.clone(), label.clone()));
                }
                // Every interval's label must be known too (they become `spans`).
                for iv in &u.intervals {
                    if c.is_some() && emotions.class_of(&iv.emotion).is_none() {
                        report
                            .unknown_emotion
                            .push((u.id.clone(), iv.emotion.clone()));
                        c = None;
                    }
                }
                c
            }
        };
        let text = u.text.as_deref().map(normalize_text).unwrap_or_default();
        let text_ok = !policy.require_text || !text.is_empty();
        if !text_ok {
            let what = match &u.text {
                None => "no transcript".to_string(),
                Some(raw) => format!("{raw:?}"),
            };
            empty_text.push((u.id.clone(), what));
        }
        if let (Some(emotion), true) = (class, text_ok) {
            candidates.push(Candidate {
                utt: u,
                emotion,
                text,
            });
        }
    }
    if !policy.skip_unknown_emotion {
        if !report.missing_emotion.is_empty() {
            return Err(DataError::MissingEmotion {
                total,
                ids: report.missing_emotion,
            });
        }
        if !report.unknown_emotion.is_empty() {
            return Err(DataError::UnknownEmotion {
                total,
                items: report.unknown_emotion,
                classes: emotions.classes.clone(),
            });
        }
    }
    if !empty_text.is_empty() && !policy.skip_empty_text {
        return Err(DataError::EmptyText {
            total,
            items: empty_text,
        });
    }
    report.empty_text = empty_text.into_iter().map(|(id, _)| id).collect();

    // Audio: each distinct file's header once, in parallel; then the samples of each
    // utterance that is not too long, in parallel.
    let mut paths: Vec<&Path> = candidates.iter().map(|c| c.utt.audio.as_path()).collect();
    paths.sort_unstable();
    paths.dedup();
    let lengths: HashMap<&Path, Result<FileLength, String>> =
        paths.par_iter().map(|&p| (p, file_length(p))).collect();
    let timed: Vec<Result<f64, String>> = candidates
        .iter()
        .map(|c| {
            let u = c.utt;
            let d = lengths[u.audio.as_path()]
                .clone()
                .and_then(|len| utterance_duration(u, len))?;
            check_label_times(u, d)?;
            Ok(d)
        })
        .collect();
    let too_long = |r: &Result<f64, String>| matches!(r, Ok(d) if policy.max_duration.is_some_and(|m| *d >= m));
    // An utterance dropped as too long is never decoded (it may be an hour).
    let scanned: Vec<Result<f64, String>> = candidates
        .par_iter()
        .zip(timed)
        .map(|(c, r)| match r {
            Ok(d) if !too_long(&Ok(d)) => check_samples(c.utt).map(|()| d),
            other => other,
        })
        .collect();
    let mut bad = Vec::new();
    let mut checked = Vec::with_capacity(candidates.len());
    for (c, r) in candidates.into_iter().zip(scanned) {
        let u = c.utt;
        match r {
            Ok(duration) => checked.push((c, duration)),
            Err(reason) => bad.push(BadAudio {
                id: u.id.clone(),
                path: u.audio.clone(),
                reason,
            }),
        }
    }
    if !bad.is_empty() {
        if !policy.skip_bad_audio {
            return Err(DataError::BadAudio {
                total: checked.len() + bad.len(),
                files: bad,
            });
        }
        report.bad_audio = bad
            .into_iter()
            .map(|b| {
                let why = format!("{}: {}", b.path.display(), b.reason);
                (b.id, why)
            })
            .collect();
    }

    let mut utterances = Vec::with_capacity(checked.len());
    for (c, duration) in checked {
        let u = c.utt;
        if too_long(&Ok(duration)) {
            report.too_long.push(u.id.clone());
            continue;
        }
        let (tokens, unknown) = vocab.encode_checked(&c.text);
        for ch in unknown {
            *report.unknown_chars.entry(ch).or_default() += 1;
        }
        let gender = u.gender.as_deref().and_then(|g| {
            let class = gender_class(g);
            if class.is_none() {
                report.unknown_gender.push((u.id.clone(), g.to_string()));
            }
            class
        });
        utterances.push(PreparedUtt {
            id: u.id.clone(),
            audio: u.audio.clone(),
            segment: u.segment,
            then: Vec::new(),
            text: c.text,
            tokens,
            emotion: c.emotion,
            duration,
            gender,
            intensity: u.intensity,
            speaker: u.speaker.clone(),
            session: u.session,
            intervals: u.intervals.clone(),
            spans: u
                .intervals
                .iter()
                .filter_map(|iv| {
                    emotions.class_of(&iv.emotion).map(|class| EmotionSpan {
                        start: iv.start,
                        end: iv.end,
                        class,
                    })
                })
                .collect(),
            sentences: u
                .sentences
                .iter()
                .map(|x| SentenceSpan {
                    text: normalize_text(&x.text),
                    ..x.clone()
                })
                .collect(),
        });
    }
    report.kept = utterances.len();
    if utterances.is_empty() {
        return Err(DataError::NothingLeft {
            total,
            summary: report.to_string(),
        });
    }
    Ok(Prepared { utterances, report })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        let file = FileLength { secs: 10.0 };
        let mut u = Utterance::new("u", "a.wav");
        assert_eq!(utterance_duration(&u, file), Ok(10.0));
        u.duration = Some(4.0);
        assert_eq!(utterance_duration(&u, file), Ok(4.0));
        u.segment = Segment::new(8.0, 2.3);
        // The segment wins over the stated duration; a small overshoot is cut.
        assert_eq!(utterance_duration(&u, file), Ok(2.0));
        u.segment = Segment::new(8.0, 3.0);
        assert!(utterance_duration(&u, file).is_err());
        u.segment = Segment::new(10.0, 1.0);
        assert!(utterance_duration(&u, file).is_err());
        u.segment = Segment {
            offset: 2.0,
            duration: None,
        };
        u.duration = None;
        assert_eq!(utterance_duration(&u, file), Ok(8.0));
        u.segment = Segment::new(-1.0, 1.0);
        assert!(utterance_duration(&u, file).is_err());
        assert!(utterance_duration(&Utterance::new("u", "a"), FileLength { secs: 0.0 }).is_err());
    }

    /// An interval whose label the map does not know is an unknown emotion of its utterance
    /// (before any audio is read), as the utterance label would be.
    #[test]
    fn unknown_interval_labels_are_unknown_emotions() {
        let mut u = Utterance::new("u", "missing.wav");
        u.emotion = Some("ang".into());
        u.text = Some("HELLO".into());
        u.intervals = vec![EmotionInterval {
            emotion: "bored".into(),
            start: 0.5,
            end: 1.0,
        }];
        let e = prepare(
            &[u],
            &Vocab::characters(),
            &EmotionMap::default(),
            &BadDataPolicy::default(),
        )
        .unwrap_err();
        match e {
            DataError::UnknownEmotion { items, .. } => {
                assert_eq!(items, vec![("u".to_string(), "bored".to_string())]);
            }
            other => panic!("{other}"),
        }
    }

    #[test]
    fn frame_classes_follow_the_spans() {
        let mut u = PreparedUtt {
            id: "u".into(),
            audio: "u.wav".into(),
            segment: Segment::WHOLE,
            then: Vec::new(),
            text: "A".into(),
            tokens: vec![3],
            emotion: 1,
            duration: 0.4,
            gender: None,
            intensity: None,
            speaker: None,
            session: None,
            intervals: Vec::new(),
            spans: Vec::new(),
            sentences: Vec::new(),
        };
        assert_eq!(u.frame_classes(10, 0.04, 3), None);
        u.spans = vec![
            EmotionSpan {
                start: 0.08,
                end: 0.2,
                class: 1,
            },
            EmotionSpan {
                start: 0.29,
                end: 0.33,
                class: 2,
            },
        ];
        // Centres 0.02, 0.06, 0.10, ... 0.38.
        assert_eq!(
            u.frame_classes(10, 0.04, 3),
            Some(vec![3, 3, 1, 1, 1, 3, 3, 2, 3, 3])
        );
    }

    #[test]
    fn genders() {
        assert_eq!(gender_class("F"), Some(0));
        assert_eq!(gender_class("female"), Some(0));
        assert_eq!(gender_class(" Male "), Some(1));
        assert_eq!(gender_class("m"), Some(1));
        assert_eq!(gender_class("x"), None);
    }

    #[test]
    fn report_display() {
        let mut r = DataReport {
            total: 10,
            kept: 7,
            ..Default::default()
        };
        r.bad_audio.push(("a".into(), "a.wav: missing".into()));
        r.too_long = vec!["b".into(), "c".into()];
        r.unknown_chars.insert('É', 3);
        assert_eq!(
            r.to_string(),
            "kept 7 of 10 utterances; dropped 1 with bad audio, 2 too long; characters encoded \
             as <unk>: 'É' x3"
        );
    }
}
