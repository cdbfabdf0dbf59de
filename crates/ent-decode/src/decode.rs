//! From a hypothesis to what a user reads: token emotions with times, the utterance emotion and
//! diarization segments (docs/method.md §5).

use candle_core::{DType, Tensor};
use ent_model::{Encoded, Mode, Model};
use serde::Serialize;

use crate::DecodeError;
use crate::metrics::{Segment, frames_to_segments};
use crate::search::{Hypothesis, Search, search};

/// One emitted token.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct TokenEmotion {
    /// Token id in the model's vocabulary.
    pub token: u32,
    /// Encoder frame of emission.
    pub frame: usize,
    /// Start of that frame in seconds.
    pub time: f64,
    /// Emotion of that frame.
    pub emotion: usize,
}

/// One decoded utterance.
#[derive(Debug, Clone, PartialEq)]
pub struct Decoded {
    /// The search result: tokens, emission frames, emotion path, score.
    pub hypothesis: Hypothesis,
    /// Tokens with their time and emotion.
    pub tokens: Vec<TokenEmotion>,
    /// Utterance emotion probabilities from the utterance head, `K` of them.
    pub utterance_probs: Vec<f32>,
    /// The most probable utterance emotion.
    pub utterance_emotion: usize,
    /// Frame emotions merged into segments; frame `i` covers `[i s, (i + 1) s]` for the frame
    /// shift `s` of the model.
    pub segments: Vec<Segment>,
}

/// Decodes every utterance of `enc` (from [`Model::encode`] in eval mode): search, token
/// emotions, the utterance head on the re-run predictor, segments.
pub fn decode(model: &Model, enc: &Encoded, how: &Search) -> Result<Vec<Decoded>, DecodeError> {
    let hyps = search(model, enc, how)?;
    let probs = utterance_probs(model, enc, &hyps)?;
    let shift = model.config().front_end.frame_shift_secs();
    hyps.into_iter()
        .zip(probs)
        .map(|(h, p)| {
            let tokens = h
                .tokens
                .iter()
                .zip(&h.token_frames)
                .map(|(&token, &frame)| TokenEmotion {
                    token,
                    frame,
                    time: frame as f64 * shift,
                    emotion: h.frame_emotions[frame],
                })
                .collect();
            let segments = frames_to_segments(&h.frame_emotions, shift, shift)?;
            let utterance_emotion = argmax(&p);
            Ok(Decoded {
                hypothesis: h,
                tokens,
                utterance_probs: p,
                utterance_emotion,
                segments,
            })
        })
        .collect()
}

/// Frame emotions decided by a neutral-versus-emotion threshold instead of the argmax: a frame
/// is emotional when `1 - p(neutral) >= threshold`, and then takes the most probable class other
/// than neutral; otherwise it is neutral. Rewrites `d`'s emotion path, its tokens' emotions and
/// its segments (`shift` seconds per frame); the transcript is untouched (the emotion joint
/// never steers the search). `threshold` must lie in `(0, 1]`; 0.5 gives the argmax wherever
/// one class holds half the probability.
pub fn threshold_emotions(
    d: &mut Decoded,
    neutral: usize,
    threshold: f32,
    shift: f64,
) -> Result<(), DecodeError> {
    if !(threshold > 0.0 && threshold <= 1.0) {
        return Err(DecodeError::Input(format!(
            "the emotion threshold {threshold} must lie in (0, 1]"
        )));
    }
    let h = &mut d.hypothesis;
    for (e, p) in h.frame_emotions.iter_mut().zip(&h.frame_probs) {
        if neutral >= p.len() {
            return Err(DecodeError::Input(format!(
                "neutral class {neutral} is not below {} classes",
                p.len()
            )));
        }
        *e = if 1.0 - p[neutral] >= threshold {
            let mut best = if neutral == 0 { 1 } else { 0 };
            for (c, &x) in p.iter().enumerate() {
                if c != neutral && x > p[best] {
                    best = c;
                }
            }
            best
        } else {
            neutral
        };
    }
    follow_path(d, shift)
}

/// Frame emotions decided per stretch of speech instead of per frame. `pause` flags the
/// frames of `d` that are pauses (one flag per frame); the stretches are cut at the middles of
/// the runs of at least `min_pause` pause frames (see [`stretch_starts`]). A stretch is
/// emotional when at least `min_share` of its speech frames (those not flagged) are emotional
/// as the frame decision (argmax or [`threshold_emotions`]) left them, and then every frame of
/// it takes the emotional class most of those frames have (the first such class on a tie);
/// otherwise every frame is neutral. Rewrites `d`'s emotion path, its tokens' emotions and its
/// segments (`shift` seconds per frame). `min_share` must lie in `(0, 1]`. Emotion in speech
/// mostly changes where the speaker pauses; a stretch's frames are decided together, so that
/// an emotion the model hears only in part of a sentence covers the sentence.
pub fn emotions_by_stretch(
    d: &mut Decoded,
    pause: &[bool],
    min_pause: usize,
    neutral: usize,
    min_share: f32,
    shift: f64,
) -> Result<(), DecodeError> {
    decide_stretches(
        &mut d.hypothesis.frame_emotions,
        pause,
        min_pause,
        neutral,
        min_share,
    )?;
    follow_path(d, shift)
}

/// The first frames of the stretches after the first: the middles (rounded down) of the runs
/// of at least `min_pause` (at least 1) pause frames of `pause`. A run that touches either end
/// cuts nothing: it belongs to the speech beside it.
pub fn stretch_starts(pause: &[bool], min_pause: usize) -> Vec<usize> {
    let n = pause.len();
    let mut out = Vec::new();
    let mut i = 0;
    while i < n {
        if !pause[i] {
            i += 1;
            continue;
        }
        let s = i;
        while i < n && pause[i] {
            i += 1;
        }
        if s > 0 && i < n && i - s >= min_pause.max(1) {
            out.push(s + (i - s) / 2);
        }
    }
    out
}

/// The stretch decision of [`emotions_by_stretch`] on a bare emotion path (what a long
/// recording's stitched frame track goes through).
pub fn decide_stretches(
    path: &mut [usize],
    pause: &[bool],
    min_pause: usize,
    neutral: usize,
    min_share: f32,
) -> Result<(), DecodeError> {
    if !(min_share > 0.0 && min_share <= 1.0) {
        return Err(DecodeError::Input(format!(
            "the emotional share of a stretch {min_share} must lie in (0, 1]"
        )));
    }
    if pause.len() != path.len() {
        return Err(DecodeError::Input(format!(
            "{} pause flags for {} frames",
            pause.len(),
            path.len()
        )));
    }
    let n = path.len();
    let classes = path.iter().copied().max().unwrap_or(0).max(neutral) + 1;
    let bounds: Vec<usize> = std::iter::once(0)
        .chain(stretch_starts(pause, min_pause))
        .chain(std::iter::once(n))
        .collect();
    for w in bounds.windows(2) {
        let (frames, pauses) = (&mut path[w[0]..w[1]], &pause[w[0]..w[1]]);
        let mut counts = vec![0usize; classes];
        for (&e, _) in frames.iter().zip(pauses).filter(|(_, p)| !**p) {
            counts[e] += 1;
        }
        let speech: usize = counts.iter().sum();
        let emotional = speech - counts[neutral];
        let label = if emotional > 0 && emotional as f32 / speech as f32 >= min_share {
            let mut best = None;
            for (c, &k) in counts.iter().enumerate() {
                if c != neutral && best.is_none_or(|b: usize| k > counts[b]) {
                    best = Some(c);
                }
            }
            best.unwrap_or(neutral)
        } else {
            neutral
        };
        frames.iter_mut().for_each(|e| *e = label);
    }
    Ok(())
}

/// Tokens' emotions and segments read again from `d`'s emotion path.
fn follow_path(d: &mut Decoded, shift: f64) -> Result<(), DecodeError> {
    let path = &d.hypothesis.frame_emotions;
    for t in &mut d.tokens {
        t.emotion = path[t.frame];
    }
    d.segments = frames_to_segments(path, shift, shift)?;
    Ok(())
}

/// The index of the largest probability (the first of equal ones): how an utterance's
/// emotion is read off its class probabilities.
pub fn argmax(p: &[f32]) -> usize {
    let mut best = 0;
    for (i, &x) in p.iter().enumerate() {
        if x > p[best] {
            best = i;
        }
    }
    best
}

/// Utterance-emotion probabilities `[B][K]`: the predictor re-run on each hypothesis' tokens,
/// then the utterance head (docs/method.md §5).
pub fn utterance_probs(
    model: &Model,
    enc: &Encoded,
    hyps: &[Hypothesis],
) -> Result<Vec<Vec<f32>>, DecodeError> {
    let b = hyps.len();
    if b != enc.lens.len() {
        return Err(DecodeError::Input(format!(
            "{b} hypotheses for a batch of {}",
            enc.lens.len()
        )));
    }
    if b == 0 {
        return Ok(vec![]);
    }
    let lens: Vec<usize> = hyps.iter().map(|h| h.tokens.len()).collect();
    let u = lens.iter().copied().max().unwrap_or(0).max(1);
    let mut data = vec![model.config().blank as u32; b * u];
    for (i, h) in hyps.iter().enumerate() {
        data[i * u..i * u + h.tokens.len()].copy_from_slice(&h.tokens);
    }
    let tokens = Tensor::from_vec(data, (b, u), enc.audio.device())?;
    let pred = model.predict(&tokens, &lens, &mut Mode::eval())?;
    let (logits, _) = model.utterance(enc, &pred)?;
    let logits = logits.to_dtype(DType::F64)?.to_vec2::<f64>()?;
    Ok(logits
        .into_iter()
        .map(|r| {
            let m = r.iter().fold(f64::NEG_INFINITY, |a, &x| a.max(x));
            let z: f64 = r.iter().map(|&x| (x - m).exp()).sum();
            r.iter().map(|&x| ((x - m).exp() / z) as f32).collect()
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Four frames of classes (happy, angry, sad, neutral): with threshold 0.3 the frames whose
    /// neutral probability is at most 0.7 are emotional, each with its most probable emotion;
    /// tokens and segments follow; bad thresholds are refused.
    #[test]
    fn threshold_relabels_frames_tokens_and_segments() {
        let probs = vec![
            vec![0.1, 0.1, 0.1, 0.7], // 1 - 0.7 = 0.3 >= 0.3: emotional, happy (first of equal)
            vec![0.05, 0.2, 0.0, 0.75], // 0.25 < 0.3: neutral
            vec![0.2, 0.3, 0.1, 0.4], // emotional: angry, though neutral is the argmax
            vec![0.0, 0.0, 0.6, 0.4], // sad
        ];
        let mut d = Decoded {
            hypothesis: Hypothesis {
                tokens: vec![5, 6],
                token_frames: vec![1, 2],
                frame_emotions: vec![3, 3, 3, 2],
                frame_probs: probs,
                score: -1.0,
            },
            tokens: vec![
                TokenEmotion {
                    token: 5,
                    frame: 1,
                    time: 0.04,
                    emotion: 3,
                },
                TokenEmotion {
                    token: 6,
                    frame: 2,
                    time: 0.08,
                    emotion: 3,
                },
            ],
            utterance_probs: vec![0.25; 4],
            utterance_emotion: 0,
            segments: vec![],
        };
        threshold_emotions(&mut d, 3, 0.3, 0.04).unwrap();
        assert_eq!(d.hypothesis.frame_emotions, vec![0, 3, 1, 2]);
        assert_eq!(
            d.tokens.iter().map(|t| t.emotion).collect::<Vec<_>>(),
            vec![3, 1]
        );
        let labels: Vec<usize> = d.segments.iter().map(|s| s.label).collect();
        assert_eq!(labels, vec![0, 3, 1, 2]);
        assert!((d.segments[3].end - 0.16).abs() < 1e-12);
        for bad in [0.0, -0.1, 1.5, f32::NAN] {
            assert!(threshold_emotions(&mut d, 3, bad, 0.04).is_err(), "{bad}");
        }
    }

    /// A decoded utterance with `frames` as its emotion path and a token on each frame.
    fn path(frames: &[usize]) -> Decoded {
        Decoded {
            hypothesis: Hypothesis {
                tokens: vec![7; frames.len()],
                token_frames: (0..frames.len()).collect(),
                frame_emotions: frames.to_vec(),
                frame_probs: vec![vec![0.25; 4]; frames.len()],
                score: -1.0,
            },
            tokens: (0..frames.len())
                .map(|f| TokenEmotion {
                    token: 7,
                    frame: f,
                    time: f as f64 * 0.04,
                    emotion: frames[f],
                })
                .collect(),
            utterance_probs: vec![0.25; 4],
            utterance_emotion: 0,
            segments: vec![],
        }
    }

    /// Stretches (happy 0, angry 1, sad 2, neutral 3) cut at the middles of pauses of at least
    /// two frames: each takes its most frequent emotion when at least `min_share` of its
    /// speech frames are emotional, else neutral; pause frames are relabelled but not counted;
    /// the first class on a tie; tokens and segments follow; bad shares and flags are refused.
    #[test]
    fn stretches_take_one_emotion_each() {
        let frames = [3, 3, 0, 3, 3, 3, 3, 1, 1, 0, 3, 3, 2, 2, 0, 0, 3, 3, 3, 3];
        let p = [
            false, false, false, false, false, true, true, false, false, false, false, true, false,
            false, false, false, true, true, true, false,
        ];
        // Pause runs [5, 7) (cut at 6) and [16, 19) (cut at 17); the one-frame pause at 11
        // cuts nothing. Stretches: [0, 6): speech 0..5, 1 of 5 emotional; [6, 17): speech
        // 7..11 and 12..16, 7 of 8 emotional (happy 3, angry 2, sad 2); [17, 20): speech 19,
        // neutral.
        assert_eq!(stretch_starts(&p, 2), vec![6, 17]);
        assert_eq!(stretch_starts(&p, 1), vec![6, 11, 17]);
        assert_eq!(stretch_starts(&p, 4), Vec::<usize>::new());
        let mut d = path(&frames);
        emotions_by_stretch(&mut d, &p, 2, 3, 0.25, 0.04).unwrap();
        let mut want = vec![3; 20];
        want[6..17].fill(0);
        assert_eq!(d.hypothesis.frame_emotions, want);
        assert_eq!(d.tokens.iter().map(|t| t.emotion).collect::<Vec<_>>(), want);
        let labels: Vec<usize> = d.segments.iter().map(|s| s.label).collect();
        assert_eq!(labels, vec![3, 0, 3]);
        assert!((d.segments[1].start - 0.24).abs() < 1e-12);
        assert!((d.segments[2].end - 0.8).abs() < 1e-12);
        // At share 0.2 the first stretch (1 of 5 speech frames: exactly 0.2) is emotional
        // too; counting its pause frames (1 of 6) it would not be.
        let mut d = path(&frames);
        emotions_by_stretch(&mut d, &p, 2, 3, 0.2, 0.04).unwrap();
        assert_eq!(&d.hypothesis.frame_emotions[..6], &[0; 6]);
        // Ties: angry and sad 2 each in [6, 17) once the happy frames are neutral.
        let mut f = frames;
        f[9] = 3;
        f[14] = 3;
        f[15] = 3;
        let mut d = path(&f);
        emotions_by_stretch(&mut d, &p, 2, 3, 0.25, 0.04).unwrap();
        assert!(d.hypothesis.frame_emotions[6..17].iter().all(|&e| e == 1));
        // At share 0.9 (7 of 8) the middle stretch is neutral.
        let mut d = path(&frames);
        emotions_by_stretch(&mut d, &p, 2, 3, 0.9, 0.04).unwrap();
        assert_eq!(d.hypothesis.frame_emotions, vec![3; 20]);
        // No pauses: the whole utterance is one stretch (8 of 20 emotional).
        let mut d = path(&frames);
        emotions_by_stretch(&mut d, &[false; 20], 2, 3, 0.4, 0.04).unwrap();
        assert_eq!(d.hypothesis.frame_emotions, vec![0; 20]);
        for bad in [0.0, -0.1, 1.5, f32::NAN] {
            assert!(emotions_by_stretch(&mut path(&frames), &p, 2, 3, bad, 0.04).is_err());
        }
        let e = emotions_by_stretch(&mut path(&frames), &p[1..], 2, 3, 0.5, 0.04).unwrap_err();
        assert!(
            e.to_string().contains("19 pause flags for 20 frames"),
            "{e}"
        );
    }
}
