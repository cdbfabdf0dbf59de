//! Searches against independent references built on the teacher-forced forward pass
//! (`Model::predict` over a whole prefix and `Model::joint` over the whole lattice), which share
//! no code with the step-wise decoding path.

use std::collections::HashMap;

use candle_core::{DType, Device, IndexOp, Tensor};
use ent_decode::{Search, decode, search, utterance_probs};
use ent_model::{Encoded, Features, FrontEnd, Mode, Model, ModelConfig, SeededVarMap, Variant};

const L: usize = 2;
const D: usize = 6;

fn config(variant: Variant, vocab: usize) -> ModelConfig {
    ModelConfig {
        variant,
        front_end: FrontEnd::Backbone { layers: L, dim: D },
        vocab_size: vocab,
        encoder_hidden: 5,
        predictor_embed: 4,
        predictor_hidden: 6,
        joint_dim: 7,
        ..ModelConfig::default()
    }
}

/// A model with seeded weights scaled by `gain`, so output distributions are peaked enough for
/// tokens to be emitted, and its encoder output for random hidden states of `lens` frames.
fn setup(cfg: &ModelConfig, lens: &[usize], gain: f64, seed: u64) -> (Model, Encoded) {
    let dev = Device::Cpu;
    let vm = SeededVarMap::new(seed);
    let model = Model::new(cfg, vm.var_builder(DType::F32, &dev)).unwrap();
    for v in vm.var_map().all_vars() {
        v.set(&(v.as_tensor() * gain).unwrap()).unwrap();
    }
    let t = lens.iter().copied().max().unwrap();
    let mut rng = ent_common::rng::SplitMix64::new(seed ^ 0x5eed);
    let data: Vec<f32> = (0..L * lens.len() * t * D)
        .map(|_| 2.0 * rng.uniform() as f32 - 1.0)
        .collect();
    let h = Tensor::from_vec(data, (L, lens.len(), t, D), &dev).unwrap();
    let enc = model
        .encode(Features::Hidden(&h), lens, &mut Mode::eval())
        .unwrap();
    (model, enc)
}

/// Utterance `b` of `enc` as a batch of one.
fn one(enc: &Encoded, b: usize) -> Encoded {
    let n = enc.lens[b];
    Encoded {
        states: enc.states.i((.., b..b + 1, ..n, ..)).unwrap(),
        audio: enc.audio.i((b..b + 1, ..n, ..)).unwrap(),
        emotion: enc.emotion.i((b..b + 1, ..n, ..)).unwrap(),
        lens: vec![n],
    }
}

/// Teacher-forced log-probabilities at every frame for the node after `prefix`:
/// (ASR `[T][V]`, emotion `[T][K]`), from the whole-lattice joint.
struct Oracle<'a> {
    model: &'a Model,
    enc: Encoded,
    memo: HashMap<Vec<u32>, Node>,
}

/// Log-probabilities at one predictor position for every frame: ASR `[T][V]`, emotion `[T][K]`.
type Node = (Vec<Vec<f64>>, Vec<Vec<f64>>);

/// Tokens, their frames, frame emotions, frame emotion probabilities, score.
type Path = (Vec<u32>, Vec<usize>, Vec<usize>, Vec<Vec<f64>>, f64);

fn log_softmax(row: Vec<f32>) -> Vec<f64> {
    let m = row.iter().fold(f32::NEG_INFINITY, |a, &x| a.max(x)) as f64;
    let lse = m + row.iter().map(|&x| (x as f64 - m).exp()).sum::<f64>().ln();
    row.into_iter().map(|x| x as f64 - lse).collect()
}

impl<'a> Oracle<'a> {
    fn new(model: &'a Model, enc: Encoded) -> Self {
        Oracle {
            model,
            enc,
            memo: HashMap::new(),
        }
    }

    fn at(&mut self, prefix: &[u32]) -> &Node {
        if !self.memo.contains_key(prefix) {
            let u = prefix.len();
            let padded: Vec<u32> = if u == 0 { vec![0] } else { prefix.to_vec() };
            let tokens = Tensor::from_vec(padded.clone(), (1, padded.len()), &Device::Cpu).unwrap();
            let pred = self
                .model
                .predict(&tokens, &[u], &mut Mode::eval())
                .unwrap();
            let (asr, emo) = self.model.joint(&self.enc, &pred).unwrap();
            let rows = |x: Tensor| -> Vec<Vec<f64>> {
                x.i((0, .., u, ..))
                    .unwrap()
                    .to_vec2::<f32>()
                    .unwrap()
                    .into_iter()
                    .map(log_softmax)
                    .collect()
            };
            let v = (rows(asr), rows(emo));
            self.memo.insert(prefix.to_vec(), v);
        }
        &self.memo[prefix]
    }
}

fn argmax(r: &[f64]) -> usize {
    (0..r.len()).fold(0, |b, i| if r[i] > r[b] { i } else { b })
}

/// Greedy search written the slow way: for each decision, the teacher-forced lattice of the
/// current prefix.
fn reference_greedy(oracle: &mut Oracle, max_symbols: usize) -> Path {
    let t_len = oracle.enc.lens[0];
    let (mut tokens, mut frames, mut emotions, mut probs, mut score) =
        (vec![], vec![], vec![], vec![], 0.0);
    for t in 0..t_len {
        for _ in 0..max_symbols {
            let row = oracle.at(&tokens).0[t].clone();
            let k = argmax(&row);
            score += row[k];
            if k == 0 {
                break;
            }
            tokens.push(k as u32);
            frames.push(t);
        }
        let e = oracle.at(&tokens).1[t].clone();
        emotions.push(argmax(&e));
        probs.push(e.iter().map(|x| x.exp()).collect());
    }
    (tokens, frames, emotions, probs, score)
}

#[test]
fn greedy_matches_the_teacher_forced_reference() {
    let lens = [9, 4, 7];
    for (variant, seed) in [(Variant::Ent, 1), (Variant::Fent, 2)] {
        for max_symbols in [1, 3, 32] {
            let (model, enc) = setup(&config(variant, 6), &lens, 3.0, seed);
            let hyps = search(
                &model,
                &enc,
                &Search::Greedy {
                    max_symbols_per_frame: max_symbols,
                },
            )
            .unwrap();
            let mut emitted = 0;
            for (b, h) in hyps.iter().enumerate() {
                let mut oracle = Oracle::new(&model, one(&enc, b));
                let (tokens, frames, emotions, probs, score) =
                    reference_greedy(&mut oracle, max_symbols);
                assert_eq!(h.tokens, tokens, "{variant:?} b={b} cap={max_symbols}");
                assert_eq!(h.token_frames, frames);
                assert_eq!(h.frame_emotions, emotions);
                assert_eq!(h.frame_emotions.len(), lens[b]);
                for (p, q) in h.frame_probs.iter().flatten().zip(probs.iter().flatten()) {
                    assert!((*p as f64 - q).abs() < 1e-5, "{p} vs {q}");
                }
                assert!((h.score - score).abs() < 1e-4, "{} vs {score}", h.score);
                emitted += tokens.len();
            }
            // The case must exercise emission, or the comparison above proves little.
            assert!(emitted > 0, "{variant:?}: no token emitted");
        }
    }
}

/// All per-frame choices of a 3-frame utterance over a 4-symbol vocabulary (64 paths, at most
/// one symbol per frame): the best merged token sequence and its total log-probability.
fn brute_force_best(oracle: &mut Oracle, v: usize) -> (Vec<u32>, f64) {
    let t_len = oracle.enc.lens[0];
    let mut totals: HashMap<Vec<u32>, f64> = HashMap::new();
    for code in 0..v.pow(t_len as u32) {
        let (mut tokens, mut lp, mut c) = (vec![], 0.0, code);
        for t in 0..t_len {
            let k = c % v;
            c /= v;
            lp += oracle.at(&tokens).0[t][k];
            if k != 0 {
                tokens.push(k as u32);
            }
        }
        let e = totals.entry(tokens).or_insert(0.0);
        *e += lp.exp();
    }
    let (best, p) = totals
        .into_iter()
        .max_by(|a, b| a.1.total_cmp(&b.1))
        .unwrap();
    (best, p.ln())
}

#[test]
fn beam_without_pruning_finds_the_most_probable_sequence() {
    let v = 4;
    for (variant, seed) in [(Variant::Ent, 3), (Variant::Fent, 4), (Variant::Ent, 5)] {
        let (model, enc) = setup(&config(variant, v), &[3], 1.5, seed);
        // 64 >= every candidate of every frame, so nothing is pruned.
        let h = search(&model, &enc, &Search::Beam { width: 64 })
            .unwrap()
            .remove(0);
        let mut oracle = Oracle::new(&model, one(&enc, 0));
        let (best, lp) = brute_force_best(&mut oracle, v);
        assert_eq!(h.tokens, best, "{variant:?}");
        assert!((h.score - lp).abs() < 1e-5, "{} vs {lp}", h.score);
        // The emotion path is the representative path's: at frame t, the node after the
        // tokens emitted up to t.
        for t in 0..3 {
            let u = h.token_frames.iter().filter(|&&f| f <= t).count();
            let e = oracle.at(&h.tokens[..u]).1[t].clone();
            assert_eq!(h.frame_emotions[t], argmax(&e));
        }
    }
}

#[test]
fn beam_of_one_is_greedy_with_one_symbol_per_frame() {
    let lens = [8, 5];
    for (variant, seed) in [(Variant::Ent, 6), (Variant::Fent, 7)] {
        let (model, enc) = setup(&config(variant, 6), &lens, 3.0, seed);
        let greedy = search(
            &model,
            &enc,
            &Search::Greedy {
                max_symbols_per_frame: 1,
            },
        )
        .unwrap();
        let beam = search(&model, &enc, &Search::Beam { width: 1 }).unwrap();
        for (g, b) in greedy.iter().zip(&beam) {
            assert_eq!(g.tokens, b.tokens);
            assert_eq!(g.token_frames, b.token_frames);
            assert_eq!(g.frame_emotions, b.frame_emotions);
            assert!((g.score - b.score).abs() < 1e-9);
        }
        // A wider beam never scores below the width-1 path on these cases.
        let wide = search(&model, &enc, &Search::Beam { width: 8 }).unwrap();
        for (w, b) in wide.iter().zip(&beam) {
            assert!(w.score >= b.score - 1e-9, "{} < {}", w.score, b.score);
        }
    }
}

#[test]
fn decode_adds_times_segments_and_the_utterance_head() {
    let lens = [10, 6];
    let cfg = config(Variant::Ent, 6);
    let (model, enc) = setup(&cfg, &lens, 3.0, 8);
    let out = decode(&model, &enc, &Search::default()).unwrap();
    let shift = cfg.front_end.frame_shift_secs();
    for (b, d) in out.iter().enumerate() {
        let h = &d.hypothesis;
        for (tok, (&id, &f)) in d.tokens.iter().zip(h.tokens.iter().zip(&h.token_frames)) {
            assert_eq!((tok.token, tok.frame), (id, f));
            assert!((tok.time - f as f64 * shift).abs() < 1e-12);
            assert_eq!(tok.emotion, h.frame_emotions[f]);
        }
        // Segments tile [0, T * shift] and carry the frame labels.
        assert_eq!(d.segments.first().unwrap().start, 0.0);
        assert!((d.segments.last().unwrap().end - lens[b] as f64 * shift).abs() < 1e-9);
        for w in d.segments.windows(2) {
            assert!((w[0].end - w[1].start).abs() < 1e-9);
            assert_ne!(w[0].label, w[1].label);
        }
        for (i, &e) in h.frame_emotions.iter().enumerate() {
            let mid = (i as f64 + 0.5) * shift;
            let s = d
                .segments
                .iter()
                .find(|s| s.start <= mid && mid < s.end)
                .unwrap();
            assert_eq!(s.label, e);
        }
        // The head on the hypothesis, computed the long way for this utterance alone.
        let single = one(&enc, b);
        let p = utterance_probs(&model, &single, std::slice::from_ref(h)).unwrap();
        for (x, y) in d.utterance_probs.iter().zip(&p[0]) {
            assert!((x - y).abs() < 1e-5);
        }
        assert!((d.utterance_probs.iter().sum::<f32>() - 1.0).abs() < 1e-5);
        assert_eq!(
            d.utterance_emotion,
            (0..4).fold(0, |m, i| if d.utterance_probs[i] > d.utterance_probs[m] {
                i
            } else {
                m
            })
        );
    }
}

#[test]
fn bad_parameters_are_refused() {
    let (model, enc) = setup(&config(Variant::Ent, 6), &[4], 1.0, 9);
    let e = search(&model, &enc, &Search::Beam { width: 0 }).unwrap_err();
    assert!(e.to_string().contains("beam width"), "{e}");
    let e = search(
        &model,
        &enc,
        &Search::Greedy {
            max_symbols_per_frame: 0,
        },
    )
    .unwrap_err();
    assert!(e.to_string().contains("max_symbols_per_frame"), "{e}");
    let mut bad = enc.clone();
    bad.lens = vec![5];
    let e = search(&model, &bad, &Search::default()).unwrap_err();
    assert!(
        e.to_string()
            .contains("lens[0] = 5 exceeds the 4 encoder frames"),
        "{e}"
    );
}
