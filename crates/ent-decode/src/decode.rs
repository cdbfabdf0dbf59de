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
