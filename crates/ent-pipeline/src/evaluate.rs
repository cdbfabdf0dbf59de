//! Decoding a prepared test set and scoring it: emotion (WA, UA, macro-F1, confusion), ASR
//! (WER, CER) and emotion diarization (EDER, where the data has emotion intervals).

use std::fmt::Write as _;
use std::ops::ControlFlow;

use ent_common::par::{MapOptions, ordered_map};

use ent_decode::metrics::{
    AsrScores, Confusion, EderMean, Segment, TimingCounts, eder, reference_segments, token_timing,
};
use ent_train::data::PreparedUtt;
use serde::Serialize;

use crate::engine::{Engine, Transcript};
use crate::error::{PipelineError, Result};
use crate::longform::FileDecoding;
use crate::progress::Progress;

/// Scores of one evaluated set.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    /// Name of the set.
    pub name: String,
    /// Utterances scored.
    pub utterances: usize,
    /// Weighted accuracy, percent.
    pub wa: Option<f64>,
    /// Unweighted accuracy (mean recall), percent.
    pub ua: Option<f64>,
    /// Macro-F1, percent.
    pub macro_f1: Option<f64>,
    /// Confusion matrix of the utterance emotion.
    pub confusion: Confusion,
    /// Word and character error counts.
    pub asr: AsrScores,
    /// WER, percent.
    pub wer: Option<f64>,
    /// CER, percent.
    pub cer: Option<f64>,
    /// Mean EDER over the utterances with emotion intervals, percent.
    pub eder: Option<f64>,
    /// Utterances EDER was computed on.
    pub eder_utterances: usize,
    /// EDER of the trivial answer "every frame neutral", on the same utterances, percent.
    pub eder_all_neutral: Option<f64>,
    /// EDER of the trivial answer "every frame the utterance's reference emotion", percent:
    /// what a perfect utterance classifier scores without localising anything.
    pub eder_utterance_label: Option<f64>,
    /// Chance level of UA (100 / classes present in the reference), percent.
    pub chance_ua: Option<f64>,
    /// Share of emitted characters whose time lies inside their own sentence's span, percent,
    /// over the utterances whose sentence spans the manifest gives (see
    /// [`ent_decode::metrics::token_timing`]).
    pub token_time_share: Option<f64>,
    /// The characters and utterances it counts.
    pub token_timing: TimingCounts,
    /// Utterances with sentence spans.
    pub token_timing_utterances: usize,
}

/// One utterance's reference and result.
#[derive(Debug, Clone, Serialize)]
pub struct Scored {
    /// The decoded output.
    pub transcript: Transcript,
    /// Reference transcript.
    pub reference_text: String,
    /// Reference emotion label.
    pub reference_emotion: String,
    /// Reference segments (from emotion intervals), if any.
    pub reference_segments: Option<Vec<Segment>>,
    /// Per-frame emotion probabilities (for plots).
    #[serde(skip)]
    pub frame_probs: Vec<Vec<f32>>,
    /// Per-frame emotion (for plots).
    #[serde(skip)]
    pub frame_emotions: Vec<usize>,
    /// Utterance EDER, if it has intervals.
    pub eder: Option<f64>,
    /// The EDER of the two trivial answers on this utterance (all neutral, all its reference
    /// emotion), if it has intervals.
    #[serde(skip)]
    pub eder_baselines: Option<[f64; 2]>,
    /// Decoded utterance class.
    #[serde(skip)]
    pub class: usize,
    /// Emitted characters inside their sentence's span, if the sentence spans are known.
    pub token_timing: Option<TimingCounts>,
}

/// Options of an evaluation.
#[derive(Debug, Clone)]
pub struct EvalOptions<'a> {
    /// Name shown in the report.
    pub name: &'a str,
    /// Utterances per decoding batch.
    pub batch_size: usize,
    /// Show a progress bar.
    pub progress: bool,
}

/// Decodes `items` of `utts`: one utterance longer than `max` seconds in windows, or a batch.
fn decode_items(
    engine: &Engine,
    utts: &[PreparedUtt],
    items: &[usize],
    max: f64,
    window_jobs: usize,
) -> Result<Vec<(usize, FileDecoding)>> {
    let wrap = |id: &str, e: PipelineError| PipelineError::Decoding {
        id: id.to_string(),
        source: Box::new(e),
    };
    if let [i] = *items
        && utts[i].duration > max
    {
        let u = &utts[i];
        let d = engine
            .transcribe_file_on(&u.id, &u.audio, u.segment, window_jobs, &mut |_, _| {})
            .map_err(|e| wrap(&u.id, e))?;
        // Damaged audio is an error here, as it is for an utterance decoded whole.
        if let Some(first) = d.transcript.damaged.first() {
            return Err(wrap(
                &u.id,
                PipelineError::Damaged {
                    path: u.audio.clone(),
                    message: first.message.clone(),
                },
            ));
        }
        return Ok(vec![(i, d)]);
    }
    let batch: Vec<_> = items
        .iter()
        .map(|&i| {
            (
                utts[i].id.as_str(),
                utts[i].audio.as_path(),
                utts[i].segment,
            )
        })
        .collect();
    let decoded = engine
        .decode(&batch)
        .map_err(|e| wrap(batch.first().map_or("", |b| b.0), e))?;
    Ok(items
        .iter()
        .zip(decoded)
        .map(|(&i, d)| (i, engine.decoding(&utts[i].id, &d)))
        .collect())
}

/// Scores one decoded utterance against its references.
fn score_one(
    u: &PreparedUtt,
    d: FileDecoding,
    neutral: usize,
    labels: &[String],
) -> Result<Scored> {
    // The intervals as classes, mapped once by `prepare`; neutral ones add nothing.
    let reference = if u.spans.is_empty() {
        None
    } else {
        let spans: Vec<Segment> = u
            .spans
            .iter()
            .filter(|s| s.class != neutral)
            .map(|s| Segment {
                start: s.start,
                end: s.end,
                label: s.class,
            })
            .collect();
        Some(reference_segments(u.duration, &spans, neutral)?)
    };
    let (e, baselines) = match &reference {
        Some(r) => {
            let whole = |label| {
                let all = [Segment {
                    start: 0.0,
                    end: u.duration,
                    label,
                }];
                eder(&all, r, u.duration)
            };
            (
                Some(eder(&d.segments, r, u.duration)?),
                Some([whole(neutral)?, whole(u.emotion)?]),
            )
        }
        None => (None, None),
    };
    let timing = (!u.sentences.is_empty()).then(|| {
        let sentences: Vec<(f64, f64, &str)> = u
            .sentences
            .iter()
            .map(|s| (s.start, s.end, s.text.as_str()))
            .collect();
        let tokens: Vec<(char, f64)> = d
            .transcript
            .tokens
            .iter()
            .flat_map(|t| t.token.chars().map(move |c| (c, t.start)))
            .collect();
        token_timing(&sentences, &tokens)
    });
    Ok(Scored {
        token_timing: timing,
        transcript: d.transcript,
        reference_text: u.text.clone(),
        reference_emotion: labels[u.emotion].clone(),
        reference_segments: reference,
        frame_probs: d.frame_probs,
        frame_emotions: d.frame_emotions,
        eder: e,
        eder_baselines: baselines,
        class: d.class,
    })
}

/// Decodes and scores `utts`.
pub fn evaluate(
    engine: &Engine,
    utts: &[PreparedUtt],
    opts: &EvalOptions,
) -> Result<(Report, Vec<Scored>)> {
    let labels = engine.labels().to_vec();
    let neutral = engine.meta.emotions.neutral;
    // Longest first keeps padding low; results go back to input order.
    let mut order: Vec<usize> = (0..utts.len()).collect();
    order.sort_by(|&a, &b| utts[b].duration.total_cmp(&utts[a].duration));
    let mut bar = Progress::new(utts.len() as u64, opts.name, "utterances", opts.progress);
    let mut scored: Vec<Option<Scored>> = vec![None; utts.len()];
    // Utterances longer than one window are decoded alone, in windows; the rest in batches.
    let max = engine.windowing().max_window;
    let (long, short): (Vec<usize>, Vec<usize>) =
        order.into_iter().partition(|&i| utts[i].duration > max);
    let work: Vec<Vec<usize>> = long
        .iter()
        .map(|&i| vec![i])
        .chain(short.chunks(opts.batch_size.max(1)).map(<[usize]>::to_vec))
        .collect();
    // Batches go to `engine.jobs()` threads and are scored in order as they come back; an
    // utterance decoded in windows has the threads the batches leave it.
    let jobs = engine.jobs().min(work.len()).max(1);
    let window_jobs = (engine.jobs() / jobs).max(1);
    let decode = |items: &Vec<usize>| decode_items(engine, utts, items, max, window_jobs);
    ordered_map(&work, MapOptions::new(jobs), decode, |_, decoded| {
        for (i, d) in decoded.map_err(PipelineError::from_item)? {
            scored[i] = Some(score_one(&utts[i], d, neutral, &labels)?);
            bar.inc(1);
        }
        Ok::<_, PipelineError>(ControlFlow::Continue(()))
    })?;
    bar.finish();
    let scored: Vec<Scored> = scored.into_iter().flatten().collect();
    let mut confusion = Confusion::new(labels.clone());
    let mut asr = AsrScores::default();
    let mut eders = EderMean::default();
    let mut baselines = [EderMean::default(), EderMean::default()];
    let mut timing = TimingCounts::default();
    let mut timed = 0;
    for (u, s) in utts.iter().zip(&scored) {
        if let Some(t) = s.token_timing {
            timing.add(t);
            timed += 1;
        }
        confusion.add(u.emotion, s.class)?;
        if !u.text.is_empty() {
            asr.add(&u.text, &s.transcript.text);
        }
        if let Some(e) = s.eder {
            eders.add(e);
        }
        for (m, e) in baselines.iter_mut().zip(s.eder_baselines.iter().flatten()) {
            m.add(*e);
        }
    }
    let present = confusion
        .counts
        .iter()
        .filter(|row| row.iter().sum::<u64>() > 0)
        .count();
    let report = Report {
        name: opts.name.to_string(),
        utterances: scored.len(),
        wa: confusion.wa(),
        ua: confusion.ua(),
        macro_f1: confusion.macro_f1(),
        wer: asr.wer(),
        cer: asr.cer(),
        eder: eders.mean().map(|e| 100.0 * e),
        eder_utterances: eders.count(),
        eder_all_neutral: baselines[0].mean().map(|e| 100.0 * e),
        eder_utterance_label: baselines[1].mean().map(|e| 100.0 * e),
        chance_ua: (present > 0).then(|| 100.0 / present as f64),
        token_time_share: timing.share(),
        token_timing: timing,
        token_timing_utterances: timed,
        confusion,
        asr,
    };
    Ok((report, scored))
}

/// A percentage with one decimal, or `-`.
pub(crate) fn pct(x: Option<f64>) -> String {
    x.map_or_else(|| "-".to_string(), |v| format!("{v:.1}%"))
}

impl Report {
    /// A few aligned lines for a terminal.
    pub fn table(&self) -> String {
        let mut s = String::new();
        let _ = writeln!(s, "{} ({} utterances)", self.name, self.utterances);
        let _ = writeln!(
            s,
            "  emotion   WA {}   UA {}   macro-F1 {}   (chance UA {})",
            pct(self.wa),
            pct(self.ua),
            pct(self.macro_f1),
            pct(self.chance_ua)
        );
        let w = &self.asr.words;
        let c = &self.asr.chars;
        let _ = writeln!(
            s,
            "  ASR       WER {} (S {} D {} I {} of {} words)   CER {} (of {} characters)",
            pct(self.wer),
            w.substitutions,
            w.deletions,
            w.insertions,
            w.reference_len,
            pct(self.cer),
            c.reference_len
        );
        if self.eder_utterances > 0 {
            let _ = writeln!(
                s,
                "  EDER      {} over {} utterances with emotion intervals (all neutral {}, \
                 utterance emotion everywhere {})",
                pct(self.eder),
                self.eder_utterances,
                pct(self.eder_all_neutral),
                pct(self.eder_utterance_label)
            );
        }
        if self.token_timing_utterances > 0 {
            let _ = writeln!(
                s,
                "  timing    {} of {} emitted characters inside their own sentence's time span \
                 ({} utterances with sentence spans)",
                pct(self.token_time_share),
                self.token_timing.aligned,
                self.token_timing_utterances
            );
        }
        s
    }
}
