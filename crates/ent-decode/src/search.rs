//! Transducer search with one emotion per encoder frame (docs/method.md §5).
//!
//! Both searches walk the encoder frames left to right. At every frame they read the ASR joint at
//! the hypothesis' current lattice node to decide on tokens, and once the frame is left, the
//! emotion joint at the node the hypothesis has reached: that is the frame's emotion. Greedy
//! search may emit up to `max_symbols_per_frame` tokens per frame (the spec's 32); the modified
//! beam search emits at most one per frame and hypothesis, as k2/icefall's does.

use candle_core::{DType, Device, IndexOp, Tensor};
use ent_model::{Encoded, Model, Predictor, PredictorState};
use serde::{Deserialize, Serialize};

use crate::DecodeError;

/// Which search to run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
pub enum Search {
    /// Greedy search, batched over utterances.
    Greedy {
        /// Symbols a frame may emit before the search moves on (the spec's 32).
        max_symbols_per_frame: usize,
    },
    /// Modified beam search: at most one symbol per frame and hypothesis, hypotheses with the
    /// same tokens merged by adding their probabilities.
    Beam {
        /// Hypotheses kept per frame.
        width: usize,
    },
}

impl Default for Search {
    fn default() -> Self {
        Search::Greedy {
            max_symbols_per_frame: 32,
        }
    }
}

impl Search {
    /// Checks the parameters.
    pub fn validate(&self) -> Result<(), DecodeError> {
        match *self {
            Search::Greedy {
                max_symbols_per_frame: 0,
            } => Err(DecodeError::Input(
                "max_symbols_per_frame must be at least 1".into(),
            )),
            Search::Beam { width: 0 } => Err(DecodeError::Input(
                "the beam width must be at least 1".into(),
            )),
            _ => Ok(()),
        }
    }
}

/// One decoded utterance: tokens and the emotion path.
#[derive(Debug, Clone, PartialEq)]
pub struct Hypothesis {
    /// Emitted token ids (blank never appears).
    pub tokens: Vec<u32>,
    /// The encoder frame at which each token was emitted.
    pub token_frames: Vec<usize>,
    /// Emotion class per valid encoder frame.
    pub frame_emotions: Vec<usize>,
    /// Emotion probabilities per valid encoder frame, `[T][K]`.
    pub frame_probs: Vec<Vec<f32>>,
    /// Natural-log probability: greedy, the sum over the path's decisions; beam, the hypothesis'
    /// (merged) score.
    pub score: f64,
}

impl Hypothesis {
    fn empty() -> Self {
        Hypothesis {
            tokens: vec![],
            token_frames: vec![],
            frame_emotions: vec![],
            frame_probs: vec![],
            score: 0.0,
        }
    }
}

/// Runs `search` over every utterance of `enc` (the output of [`Model::encode`] in eval mode).
pub fn search(
    model: &Model,
    enc: &Encoded,
    search: &Search,
) -> Result<Vec<Hypothesis>, DecodeError> {
    search.validate()?;
    check_encoded(model, enc)?;
    match *search {
        Search::Greedy {
            max_symbols_per_frame,
        } => greedy(model, enc, max_symbols_per_frame),
        Search::Beam { width } => (0..enc.lens.len())
            .map(|b| beam(model, enc, b, width))
            .collect(),
    }
}

fn check_encoded(model: &Model, enc: &Encoded) -> Result<(), DecodeError> {
    let (b, t, _) = enc.audio.dims3()?;
    if enc.lens.len() != b {
        return Err(DecodeError::Input(format!(
            "{} lengths for a batch of {b}",
            enc.lens.len()
        )));
    }
    if let Some((i, &n)) = enc.lens.iter().enumerate().find(|&(_, &n)| n > t) {
        return Err(DecodeError::Input(format!(
            "lens[{i}] = {n} exceeds the {t} encoder frames"
        )));
    }
    let cfg = model.config();
    if cfg.blank >= cfg.vocab_size {
        return Err(DecodeError::Input(format!(
            "blank {} is outside the vocabulary of {}",
            cfg.blank, cfg.vocab_size
        )));
    }
    Ok(())
}

/// Predictor outputs and states of a set of hypotheses (rows).
#[derive(Debug, Clone)]
struct PredRows {
    /// Vocabulary predictor output `[N, J]` and state.
    g: Tensor,
    state: PredictorState,
    /// Blank predictor output and state (FENT); `None` when the model has one predictor.
    blank: Option<(Tensor, PredictorState)>,
}

impl PredRows {
    /// The rows after reading the start symbol (blank) from the zero state.
    fn start(model: &Model, n: usize, dtype: DType, dev: &Device) -> Result<Self, DecodeError> {
        let tokens = Tensor::full(model.config().blank as u32, n, dev)?;
        let step = |p: &Predictor| -> Result<(Tensor, PredictorState), DecodeError> {
            Ok(p.step(&tokens, &p.initial_state(n, dtype, dev)?)?)
        };
        let (g, state) = step(model.vocab_predictor())?;
        let blank = if factorized(model) {
            Some(step(model.blank_predictor())?)
        } else {
            None
        };
        Ok(PredRows { g, state, blank })
    }

    fn g_blank(&self) -> &Tensor {
        self.blank.as_ref().map_or(&self.g, |(g, _)| g)
    }

    /// Rows `idx` of every tensor.
    fn select(&self, idx: &Tensor) -> Result<Self, DecodeError> {
        let sel = |t: &Tensor| t.index_select(idx, 0);
        let st = |s: &PredictorState| -> candle_core::Result<PredictorState> {
            Ok(PredictorState {
                h: sel(&s.h)?,
                c: sel(&s.c)?,
            })
        };
        Ok(PredRows {
            g: sel(&self.g)?,
            state: st(&self.state)?,
            blank: match &self.blank {
                Some((g, s)) => Some((sel(g)?, st(s)?)),
                None => None,
            },
        })
    }

    /// Every row reads `tokens[n]`; rows with `emit[n] == 0` keep their old values.
    fn advance(&self, model: &Model, tokens: &Tensor, emit: &Tensor) -> Result<Self, DecodeError> {
        let keep = |new: Tensor, old: &Tensor| -> candle_core::Result<Tensor> {
            emit.unsqueeze(1)?
                .broadcast_as(new.shape())?
                .where_cond(&new, old)
        };
        let step = |p: &Predictor,
                    g: &Tensor,
                    s: &PredictorState|
         -> Result<(Tensor, PredictorState), DecodeError> {
            let (ng, ns) = p.step(tokens, s)?;
            Ok((
                keep(ng, g)?,
                PredictorState {
                    h: keep(ns.h, &s.h)?,
                    c: keep(ns.c, &s.c)?,
                },
            ))
        };
        let (g, state) = step(model.vocab_predictor(), &self.g, &self.state)?;
        let blank = match &self.blank {
            Some((gb, sb)) => Some(step(model.blank_predictor(), gb, sb)?),
            None => None,
        };
        Ok(PredRows { g, state, blank })
    }
}

fn factorized(model: &Model) -> bool {
    !std::ptr::eq(model.vocab_predictor(), model.blank_predictor())
}

/// Log-softmax of each row, in f64.
fn log_softmax_rows(logits: &Tensor) -> Result<Vec<Vec<f64>>, DecodeError> {
    let rows = logits.to_dtype(DType::F32)?.to_vec2::<f32>()?;
    Ok(rows
        .into_iter()
        .map(|r| {
            let m = r.iter().fold(f32::NEG_INFINITY, |a, &x| a.max(x)) as f64;
            let lse = m + r.iter().map(|&x| (x as f64 - m).exp()).sum::<f64>().ln();
            r.iter().map(|&x| x as f64 - lse).collect()
        })
        .collect())
}

fn argmax(row: &[f64]) -> usize {
    let mut best = 0;
    for (i, &x) in row.iter().enumerate() {
        if x > row[best] {
            best = i;
        }
    }
    best
}

/// Emotion log-probabilities become the frame's class and probabilities.
fn frame_emotion(logp: &[f64]) -> (usize, Vec<f32>) {
    (argmax(logp), logp.iter().map(|&x| x.exp() as f32).collect())
}

fn greedy(
    model: &Model,
    enc: &Encoded,
    max_symbols: usize,
) -> Result<Vec<Hypothesis>, DecodeError> {
    let (b, t_max, _) = enc.audio.dims3()?;
    let dev = enc.audio.device();
    let blank = model.config().blank;
    let mut hyps = vec![Hypothesis::empty(); b];
    if b == 0 {
        return Ok(hyps);
    }
    let mut rows = PredRows::start(model, b, enc.audio.dtype(), dev)?;
    for t in 0..t_max {
        let active: Vec<bool> = enc.lens.iter().map(|&n| t < n).collect();
        if !active.iter().any(|&a| a) {
            break;
        }
        let h = enc.audio.i((.., t, ..))?.contiguous()?;
        let he = enc.emotion.i((.., t, ..))?.contiguous()?;
        let mut emitting = active.clone();
        for _ in 0..max_symbols {
            let logp = log_softmax_rows(&model.asr_logits_at(&h, &he, &rows.g, rows.g_blank())?)?;
            let mut tokens = vec![blank as u32; b];
            let mut emit = vec![0u8; b];
            for i in 0..b {
                if !emitting[i] {
                    continue;
                }
                let k = argmax(&logp[i]);
                hyps[i].score += logp[i][k];
                if k == blank {
                    emitting[i] = false;
                } else {
                    hyps[i].tokens.push(k as u32);
                    hyps[i].token_frames.push(t);
                    tokens[i] = k as u32;
                    emit[i] = 1;
                }
            }
            if !emit.contains(&1) {
                break;
            }
            rows = rows.advance(
                model,
                &Tensor::new(tokens.as_slice(), dev)?,
                &Tensor::new(emit.as_slice(), dev)?,
            )?;
        }
        let emo = log_softmax_rows(&model.emotion_logits_at(&he, rows.g_blank())?)?;
        for i in (0..b).filter(|&i| active[i]) {
            let (k, p) = frame_emotion(&emo[i]);
            hyps[i].frame_emotions.push(k);
            hyps[i].frame_probs.push(p);
        }
    }
    Ok(hyps)
}

/// `log(exp(a) + exp(b))`.
fn log_add(a: f64, b: f64) -> f64 {
    let (hi, lo) = if a > b { (a, b) } else { (b, a) };
    if lo == f64::NEG_INFINITY {
        hi
    } else {
        hi + (lo - hi).exp().ln_1p()
    }
}

fn beam(model: &Model, enc: &Encoded, b: usize, width: usize) -> Result<Hypothesis, DecodeError> {
    let dev = enc.audio.device();
    let blank = model.config().blank;
    let len = enc.lens[b];
    let mut hyps = vec![Hypothesis::empty()];
    let mut rows = PredRows::start(model, 1, enc.audio.dtype(), dev)?;
    for t in 0..len {
        let n = hyps.len();
        let h = enc.audio.i((b..b + 1, t, ..))?.repeat((n, 1))?;
        let he = enc.emotion.i((b..b + 1, t, ..))?.repeat((n, 1))?;
        let logp = log_softmax_rows(&model.asr_logits_at(&h, &he, &rows.g, rows.g_blank())?)?;
        // Every extension of every hypothesis, best first (ties broken by parent, then token,
        // so the search is deterministic).
        let mut cands: Vec<(f64, usize, usize)> = (0..n)
            .flat_map(|p| {
                let s = hyps[p].score;
                logp[p].iter().enumerate().map(move |(k, &l)| (s + l, p, k))
            })
            .collect();
        cands.sort_by(|x, y| y.0.total_cmp(&x.0).then(x.1.cmp(&y.1)).then(x.2.cmp(&y.2)));
        cands.truncate(width);
        // Merge candidates that end with the same tokens; the best one's path represents them.
        let mut kept: Vec<(f64, usize, usize)> = Vec::with_capacity(cands.len());
        let tokens_of = |p: usize, k: usize| {
            let mut v = hyps[p].tokens.clone();
            if k != blank {
                v.push(k as u32);
            }
            v
        };
        for (s, p, k) in cands {
            let key = tokens_of(p, k);
            match kept.iter_mut().find(|(_, q, j)| tokens_of(*q, *j) == key) {
                Some(slot) => slot.0 = log_add(slot.0, s),
                None => kept.push((s, p, k)),
            }
        }
        let parents: Vec<u32> = kept.iter().map(|&(_, p, _)| p as u32).collect();
        let tokens: Vec<u32> = kept.iter().map(|&(_, _, k)| k as u32).collect();
        let emit: Vec<u8> = kept.iter().map(|&(_, _, k)| u8::from(k != blank)).collect();
        rows = rows
            .select(&Tensor::new(parents.as_slice(), dev)?)?
            .advance(
                model,
                &Tensor::new(tokens.as_slice(), dev)?,
                &Tensor::new(emit.as_slice(), dev)?,
            )?;
        let he = enc.emotion.i((b..b + 1, t, ..))?.repeat((kept.len(), 1))?;
        let emo = log_softmax_rows(&model.emotion_logits_at(&he, rows.g_blank())?)?;
        hyps = kept
            .iter()
            .zip(&emo)
            .map(|(&(s, p, k), e)| {
                let mut h = hyps[p].clone();
                if k != blank {
                    h.tokens.push(k as u32);
                    h.token_frames.push(t);
                }
                let (c, probs) = frame_emotion(e);
                h.frame_emotions.push(c);
                h.frame_probs.push(probs);
                h.score = s;
                h
            })
            .collect();
    }
    Ok(hyps
        .into_iter()
        .max_by(|x, y| x.score.total_cmp(&y.score))
        .unwrap_or_else(Hypothesis::empty))
}
