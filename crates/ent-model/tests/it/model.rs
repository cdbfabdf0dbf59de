//! ENT and FENT: parameter counts, every parameter learns, padding does not leak, the loss.

use candle_core::{DType, Device, Tensor, Var};
use candle_nn::{VarBuilder, VarMap};
use ent_common::rng::SplitMix64;
use ent_model::{
    AsrLattice, AuxConfig, FbankEncoder, Features, FrontEnd, HeadConfig, LossConfig, Mode, Model,
    ModelConfig, Targets, Variant,
};
use ent_testkit::TensorExt;

fn count(vm: &VarMap) -> usize {
    vm.all_vars().iter().map(|v| v.elem_count()).sum()
}

fn build(cfg: &ModelConfig) -> (VarMap, Model) {
    let vm = VarMap::new();
    let model = Model::new(cfg, VarBuilder::from_varmap(&vm, DType::F32, &Device::Cpu)).unwrap();
    (vm, model)
}

/// Parameters of one LSTM direction (two bias vectors, as PyTorch).
fn lstm(i: usize, h: usize) -> usize {
    4 * h * (i + h) + 8 * h
}

/// Parameters of one joint: W_e with bias, W_p without, W_o with bias.
fn joint(e: usize, p: usize, j: usize, o: usize) -> usize {
    e * j + j + p * j + j * o + o
}

#[test]
fn paper_sizes() {
    // docs/method.md §2: about 9.7 M trainable parameters for ENT, 14.7 M for FENT.
    let (v, k) = (31, 4);
    let enc = 2 * lstm(768, 384);
    let pred = v * 640 + lstm(640, 640) + 640 * 768 + 768;
    let head = 2 * 1536 + 1536 * k + k;
    let ent = 13 + 1 + enc + pred + joint(768, 768, 768, v) + joint(768, 768, 768, k) + head;
    let fent = 2 * 14
        + enc
        + 2 * pred
        + joint(768, 768, 768, 1)
        + joint(768, 768, 768, v - 1)
        + joint(768, 768, 768, k)
        + head;
    let (vm, _) = build(&ModelConfig::default());
    assert_eq!(count(&vm), ent);
    assert!((9.65e6..9.75e6).contains(&(ent as f64)), "ENT has {ent}");
    let (vm, _) = build(&ModelConfig::fent());
    assert_eq!(count(&vm), fent);
    assert!(
        (14.65e6..14.8e6).contains(&(fent as f64)),
        "FENT has {fent}"
    );
}

/// Small configurations of every variant, front end and head.
/// The ASR side of an output as tensors with `[B, T, U+1]` leading: the two node
/// log-probabilities, or the logits.
fn asr_parts(out: &ent_model::Output) -> Vec<Tensor> {
    match &out.asr {
        AsrLattice::Logits(l) => vec![l.clone()],
        AsrLattice::LogProbs { blank, label, .. } => vec![blank.clone(), label.clone()],
    }
}

pub(crate) fn variants() -> Vec<(&'static str, ModelConfig)> {
    let tiny = ModelConfig {
        front_end: FrontEnd::Backbone { layers: 3, dim: 8 },
        vocab_size: 7,
        encoder_hidden: 5,
        predictor_embed: 6,
        predictor_hidden: 7,
        joint_dim: 9,
        ..ModelConfig::default()
    };
    let fbank = |encoder| FrontEnd::Fbank {
        num_mel_bins: 12,
        conv_channels: 3,
        dim: 8,
        layers: 2,
        encoder,
        dropout: 0.1,
    };
    vec![
        ("ent", tiny.clone()),
        (
            "fent",
            ModelConfig {
                variant: Variant::Fent,
                ..tiny.clone()
            },
        ),
        (
            "ent-fbank-conformer",
            ModelConfig {
                front_end: fbank(FbankEncoder::Conformer {
                    heads: 2,
                    ff_dim: 16,
                    kernel: 3,
                }),
                ..tiny.clone()
            },
        ),
        (
            "fent-fbank-lstm",
            ModelConfig {
                variant: Variant::Fent,
                front_end: fbank(FbankEncoder::Lstm),
                ..tiny.clone()
            },
        ),
        (
            "ent-cta-rnn-aux",
            ModelConfig {
                head: HeadConfig::CtaRnn {
                    attention_dim: 4,
                    rnn_hidden: 3,
                },
                aux: AuxConfig {
                    intensity: true,
                    gender: true,
                },
                ..tiny.clone()
            },
        ),
        (
            "ent-pooled-aux",
            ModelConfig {
                aux: AuxConfig {
                    intensity: true,
                    gender: true,
                },
                ..tiny
            },
        ),
    ]
}

pub(crate) struct Batch {
    pub feats: Tensor,
    pub lens: Vec<usize>,
    pub tokens: Tensor,
    pub token_lens: Vec<usize>,
}

pub(crate) fn batch(cfg: &ModelConfig, seed: u64) -> Batch {
    let dev = Device::Cpu;
    let mut rng = SplitMix64::new(seed);
    let (feats, lens) = match &cfg.front_end {
        FrontEnd::Backbone { layers, dim } => (
            Tensor::randn(0f32, 1.0, (*layers, 3, 6, *dim), &dev).unwrap(),
            vec![6, 4, 5],
        ),
        FrontEnd::Fbank { num_mel_bins, .. } => (
            Tensor::randn(0f32, 1.0, (3, 27, *num_mel_bins), &dev).unwrap(),
            vec![27, 20, 15],
        ),
    };
    let tokens: Vec<u32> = (0..3 * 4)
        .map(|_| rng.range_inclusive(1, cfg.vocab_size - 1) as u32)
        .collect();
    Batch {
        feats,
        lens,
        tokens: Tensor::from_vec(tokens, (3, 4), &dev).unwrap(),
        token_lens: vec![4, 2, 0],
    }
}

/// The forward pass of batch `b` in eval mode.
pub(crate) fn forward_eval(model: &Model, cfg: &ModelConfig, b: &Batch) -> ent_model::Output {
    model
        .forward(
            features(cfg, &b.feats),
            &b.lens,
            &b.tokens,
            &b.token_lens,
            &mut Mode::eval(),
        )
        .unwrap()
}

pub(crate) fn features<'a>(cfg: &ModelConfig, x: &'a Tensor) -> Features<'a> {
    match cfg.front_end {
        FrontEnd::Backbone { .. } => Features::Hidden(x),
        FrontEnd::Fbank { .. } => Features::Fbank(x),
    }
}

#[test]
fn every_trainable_parameter_gets_a_gradient() {
    for (name, cfg) in variants() {
        let (vm, model) = build(&cfg);
        let b = batch(&cfg, 1);
        let mut rng = SplitMix64::new(7);
        let out = model
            .forward(
                features(&cfg, &b.feats),
                &b.lens,
                &b.tokens,
                &b.token_lens,
                &mut Mode::train(&mut rng),
            )
            .unwrap();
        let targets = Targets::new(&b.tokens, &b.token_lens, &[0, 3, 2])
            .with_aux(&[Some(0.3), None, Some(0.9)], &[Some(1), Some(0), None]);
        let losses = model.loss(&out, &targets, &LossConfig::default()).unwrap();
        let grads = losses.total.backward().unwrap();
        let data = vm.data().lock().unwrap();
        let mut checked = 0;
        for (pname, var) in data.iter() {
            if Model::is_buffer(pname) {
                continue;
            }
            let g = grads
                .get(var)
                .unwrap_or_else(|| panic!("{name}: {pname} has no gradient"));
            let norm = g.abs_sum();
            assert!(
                norm > 0.0 && norm.is_finite(),
                "{name}: gradient of {pname} is {norm}"
            );
            checked += 1;
        }
        assert!(checked > 10, "{name}: only {checked} parameters");
    }
}

#[test]
fn loss_is_the_weighted_sum_of_its_parts() {
    let (_, cfg) = variants().remove(0);
    let (_, model) = build(&cfg);
    let b = batch(&cfg, 2);
    let out = forward_eval(&model, &cfg, &b);
    let emotions = [1u32, 3, 0];
    let targets = Targets::new(&b.tokens, &b.token_lens, &emotions);
    let w = LossConfig {
        rnnt: 0.3,
        head: 0.7,
        lattice: 0.2,
        ..Default::default()
    };
    let l = model.loss(&out, &targets, &w).unwrap();
    let s = |t: &Tensor| t.to_scalar::<f32>().unwrap() as f64;
    let want = 0.3 * s(&l.rnnt) + 0.2 * s(&l.lattice) + 0.7 * s(&l.head);
    assert!(
        (s(&l.total) - want).abs() < 1e-5 * want.abs().max(1.0),
        "{} vs {want}",
        s(&l.total)
    );
    // The head loss is the mean cross-entropy of the utterance logits, computed here by hand.
    let logits = out.utterance_logits.to_vec2::<f32>().unwrap();
    let mut ce = 0.0;
    for (row, &k) in logits.iter().zip(&emotions) {
        let m = row.iter().cloned().fold(f32::MIN, f32::max) as f64;
        let lse = m + row.iter().map(|&z| (z as f64 - m).exp()).sum::<f64>().ln();
        ce += lse - row[k as usize] as f64;
    }
    assert!((s(&l.head) - ce / 3.0).abs() < 1e-5);
}

/// Each utterance's outputs are the same alone and batched with longer, differently padded ones.
#[test]
fn batching_does_not_change_an_utterance() {
    for (name, cfg) in variants() {
        let (_, model) = build(&cfg);
        let b = batch(&cfg, 3);
        let full = forward_eval(&model, &cfg, &b);
        let i = 1;
        let (t_axis, t) = match cfg.front_end {
            FrontEnd::Backbone { .. } => (2, b.lens[i]),
            FrontEnd::Fbank { .. } => (1, b.lens[i]),
        };
        let one = b
            .feats
            .narrow(t_axis - 1, i, 1)
            .unwrap()
            .narrow(t_axis, 0, t)
            .unwrap();
        let tok = b
            .tokens
            .narrow(0, i, 1)
            .unwrap()
            .narrow(1, 0, b.token_lens[i])
            .unwrap();
        let alone = model
            .forward(
                features(&cfg, &one),
                &[t],
                &tok,
                &[b.token_lens[i]],
                &mut Mode::eval(),
            )
            .unwrap();
        let tf = alone.frame_lens[0];
        let u1 = b.token_lens[i] + 1;
        let cut = |x: &Tensor| {
            x.narrow(0, i, 1)
                .unwrap()
                .narrow(1, 0, tf)
                .unwrap()
                .narrow(2, 0, u1)
                .unwrap()
        };
        let d = crate::max_diff;
        let (asr_full, asr_alone) = (asr_parts(&full), asr_parts(&alone));
        assert_eq!(asr_full.len(), asr_alone.len());
        for (x, y) in asr_full.iter().zip(&asr_alone) {
            assert!(d(&cut(x), y) < 1e-5, "{name}: ASR lattice");
        }
        assert!(
            d(&cut(&full.emotion_logits), &alone.emotion_logits) < 1e-5,
            "{name}: emotion logits"
        );
        assert!(
            d(
                &full.utterance_logits.narrow(0, i, 1).unwrap(),
                &alone.utterance_logits
            ) < 1e-5,
            "{name}: utterance"
        );
    }
}

#[test]
fn wrong_inputs_are_errors() {
    let (_, cfg) = variants().remove(0);
    let (_, model) = build(&cfg);
    let b = batch(&cfg, 4);
    let error = |features: Features, lens: &[usize]| {
        let out = model.forward(features, lens, &b.tokens, &b.token_lens, &mut Mode::eval());
        out.unwrap_err().to_string()
    };
    let e = error(Features::Fbank(&b.feats), &b.lens);
    assert!(e.contains("reads backbone hidden states"), "{e}");
    let e = error(Features::Hidden(&b.feats), &[6, 9, 5]);
    assert!(
        e.contains("frame lengths[1] = 9 exceeds the padded length 6"),
        "{e}"
    );
    let wrong = Tensor::zeros((2, 3, 6, 8), DType::F32, &Device::Cpu).unwrap();
    let e = error(Features::Hidden(&wrong), &b.lens);
    assert!(
        e.contains("hidden states has shape [2, 3, 6, 8], expected [3, B, T, 8]"),
        "{e}"
    );
    let bad = ModelConfig {
        neutral: 4,
        ..ModelConfig::default()
    };
    let e = Model::new(
        &bad,
        VarBuilder::from_varmap(&VarMap::new(), DType::F32, &Device::Cpu),
    )
    .unwrap_err();
    assert!(
        e.to_string()
            .contains("neutral: 4 must be below num_emotions 4"),
        "{e}"
    );
    let _ = Var::zeros(1, DType::F32, &Device::Cpu);
}

#[test]
fn config_round_trips_through_json_with_paper_defaults() {
    let cfg: ModelConfig = serde_json::from_str("{}").unwrap();
    assert_eq!(cfg, ModelConfig::default());
    assert_eq!(cfg.encoder_hidden, 384);
    assert_eq!(cfg.predictor_embed, 640);
    let fb = ModelConfig::fbank_small();
    let back: ModelConfig = serde_json::from_str(&serde_json::to_string(&fb).unwrap()).unwrap();
    assert_eq!(back, fb);
    let e = serde_json::from_str::<ModelConfig>(r#"{"encoder_hiden": 3}"#).unwrap_err();
    assert!(e.to_string().contains("unknown field"), "{e}");
}

/// Random ASR and emotion logits of 3 utterances (7, 5 and 3 frames; 4, 2 and 3 tokens) as a
/// model output, with the best alignment of each and the emotion logits on the host: the
/// inputs of the tests of losses read on the alignment's nodes.
/// A batch's transcripts and utterance emotions.
struct Labels {
    tokens: Tensor,
    token_lens: [usize; 3],
    emotions: [u32; 3],
}

impl Labels {
    fn targets(&self) -> Targets<'_> {
        Targets::new(&self.tokens, &self.token_lens, &self.emotions)
    }
}

struct AlignCase {
    mcfg: ModelConfig,
    model: Model,
    /// `(B, T, U, K)`.
    dims: (usize, usize, usize, usize),
    emo: Var,
    out: ent_model::Output,
    labels: Labels,
    paths: Vec<ent_lattice::Alignment>,
    /// The emotion logits `[B][T][U+1][K]`.
    z: Vec<Vec<Vec<Vec<f32>>>>,
}

fn align_case(seed: u64) -> AlignCase {
    let (_, mcfg) = variants().remove(0);
    let (_, model) = build(&mcfg);
    let dev = Device::Cpu;
    let (b, t, u, v, k) = (3, 7, 4, 31, mcfg.num_emotions);
    let mut rng = SplitMix64::new(seed);
    let mut randn =
        |n: usize| -> Vec<f32> { (0..n).map(|_| 3.0 * rng.gaussian() as f32).collect() };
    let asr = Tensor::from_vec(randn(b * t * (u + 1) * v), (b, t, u + 1, v), &dev).unwrap();
    let emo = Var::from_vec(randn(b * t * (u + 1) * k), (b, t, u + 1, k), &dev).unwrap();
    let out = ent_model::Output {
        asr: AsrLattice::Logits(asr.clone()),
        emotion_logits: emo.as_tensor().clone(),
        utterance_logits: Tensor::zeros((b, k), DType::F32, &dev).unwrap(),
        intensity: None,
        gender_logits: None,
        pool_attention: None,
        frame_lens: vec![7, 5, 3],
    };
    let tokens = Tensor::new(&[[3u32, 4, 5, 6], [7, 8, 0, 0], [9, 10, 11, 0]], &dev).unwrap();
    let token_lens = [4usize, 2, 3];
    let emotions = [0u32, mcfg.neutral as u32, 2];
    let u32s = |x: &[usize]| Tensor::from_vec(x.iter().map(|&v| v as u32).collect(), x.len(), &dev);
    let paths = ent_lattice::rnnt_best_path(
        &asr,
        &tokens,
        &u32s(&out.frame_lens).unwrap(),
        &u32s(&token_lens).unwrap(),
        mcfg.blank,
    )
    .unwrap();
    let z = (0..b)
        .map(|i| emo.get(i).unwrap().to_vec3::<f32>().unwrap())
        .collect();
    AlignCase {
        mcfg,
        model,
        dims: (b, t, u, k),
        emo,
        out,
        labels: Labels {
            tokens,
            token_lens,
            emotions,
        },
        paths,
        z,
    }
}

/// Softmax of a row, in f64.
fn softmax64(row: &[f32]) -> Vec<f64> {
    let m = row.iter().cloned().fold(f32::MIN, f32::max) as f64;
    let e: Vec<f64> = row.iter().map(|&x| (x as f64 - m).exp()).collect();
    let s: f64 = e.iter().sum();
    e.iter().map(|x| x / s).collect()
}

/// Pooling over the alignment: the lattice term is the max/min pooling over the emotion
/// logits at the best alignment's nodes (recomputed here by hand from the paths), and only
/// those nodes receive gradient.
#[test]
fn alignment_pooling_reads_only_the_best_path() {
    let AlignCase {
        mcfg,
        model,
        dims: (b, t, u, _),
        emo,
        out,
        labels,
        paths,
        z,
    } = align_case(11);
    let targets = labels.targets();
    let cfg = LossConfig {
        pool_nodes: ent_model::PoolNodes::Alignment,
        ..Default::default()
    };
    let l = model.loss(&out, &targets, &cfg).unwrap();

    let mut want = 0.0;
    let mut on_path = vec![vec![vec![false; u + 1]; t]; b];
    for (i, p) in paths.iter().enumerate() {
        assert_eq!(p.blank_positions.len(), out.frame_lens[i]);
        assert_eq!(*p.blank_positions.last().unwrap(), labels.token_lens[i]);
        let probs: Vec<Vec<f64>> = p
            .blank_positions
            .iter()
            .enumerate()
            .map(|(f, &pu)| {
                on_path[i][f][pu] = true;
                softmax64(&z[i][f][pu])
            })
            .collect();
        let best = probs
            .iter()
            .map(|p| p[labels.emotions[i] as usize])
            .fold(0.0, f64::max);
        let least_neutral = probs.iter().map(|p| p[mcfg.neutral]).fold(1.0, f64::min);
        want += -best.max(1e-8).ln() - least_neutral.max(1e-8).ln();
    }
    want /= b as f64;
    let got = l.lattice.to_scalar::<f32>().unwrap() as f64;
    assert!((got - want).abs() < 1e-5 * want.max(1.0), "{got} vs {want}");

    let grads = l.lattice.backward().unwrap();
    let g = grads.get(&emo).expect("emotion logits have a gradient");
    let mut touched = 0;
    for (i, path) in on_path.iter().enumerate() {
        let gi = g.get(i).unwrap().to_vec3::<f32>().unwrap();
        for (f, (grow, prow)) in gi.iter().zip(path).enumerate() {
            for (pu, (gz, &on)) in grow.iter().zip(prow).enumerate() {
                let nz = gz.iter().any(|&x| x != 0.0);
                assert!(!nz || on, "gradient off the path at {i} {f} {pu}");
                touched += nz as usize;
            }
        }
    }
    assert!(
        (b..=2 * b).contains(&touched),
        "{touched} nodes received gradient"
    );
}

/// The frame loss: at each frame's node on the best alignment, `-log softmax(z)[label]`,
/// averaged over the utterance's frames and then over the utterances that have frame labels
/// (recomputed here in f64 from the paths); its gradient is `(p - onehot) / (frames * n)` at
/// those nodes and zero elsewhere, and bad labels are errors naming the utterance.
#[test]
fn frame_loss_is_the_cross_entropy_on_the_best_path() {
    let AlignCase {
        mcfg: _,
        model,
        dims: (b, t, u, k),
        emo,
        out,
        labels,
        paths,
        z,
    } = align_case(12);
    let frames = vec![
        Some(vec![3u32, 3, 0, 0, 0, 3, 3]),
        None,
        Some(vec![2u32, 1, 2]),
    ];
    let targets = labels.targets().with_frame_emotions(&frames);
    let cfg = LossConfig {
        frame: 0.7,
        ..Default::default()
    };
    let l = model.loss(&out, &targets, &cfg).unwrap();

    let labelled = 2.0;
    let mut want = 0.0;
    // The expected gradient of `l.frame` at every node.
    let mut want_grad = vec![vec![vec![vec![0f64; k]; u + 1]; t]; b];
    for (i, p) in paths.iter().enumerate() {
        let Some(f) = &frames[i] else { continue };
        let n = f.len() as f64;
        for (fr, &pu) in p.blank_positions.iter().enumerate() {
            let q = softmax64(&z[i][fr][pu]);
            want += -q[f[fr] as usize].ln() / n / labelled;
            for c in 0..k {
                let onehot = if c == f[fr] as usize { 1.0 } else { 0.0 };
                want_grad[i][fr][pu][c] = (q[c] - onehot) / n / labelled;
            }
        }
    }
    let got = l.frame.to_scalar::<f32>().unwrap() as f64;
    assert!((got - want).abs() < 1e-5 * want, "{got} vs {want}");
    // The total carries it with its weight.
    let off = model.loss(&out, &targets, &LossConfig::default()).unwrap();
    let total = |l: &ent_model::Losses| l.total.to_scalar::<f32>().unwrap() as f64;
    assert!(
        (total(&l) - total(&off) - 0.7 * want).abs() < 1e-5 * total(&l),
        "{} - {} vs 0.7 * {want}",
        total(&l),
        total(&off)
    );
    assert_eq!(off.frame.to_scalar::<f32>().unwrap(), 0.0);

    let grads = l.frame.backward().unwrap();
    let g = grads.get(&emo).expect("emotion logits have a gradient");
    let mut worst = 0f64;
    for (i, gi) in want_grad.iter().enumerate() {
        let got = g.get(i).unwrap().to_vec3::<f32>().unwrap();
        for (fr, row) in gi.iter().enumerate() {
            for (pu, w) in row.iter().enumerate() {
                for (c, &w) in w.iter().enumerate() {
                    worst = worst.max((got[fr][pu][c] as f64 - w).abs());
                }
            }
        }
    }
    // f32 softmax of logits within +-12: absolute error well under 1e-6.
    assert!(worst < 1e-6, "gradient off by {worst}");

    let short = [None, Some(vec![0u32; 4]), None];
    let with = |f| Targets {
        frame_emotions: f,
        ..targets
    };
    let e = model
        .loss(&out, &with(&short), &cfg)
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("frame emotions has shape [4], expected [5]: utterance 1 has 5 frames"),
        "{e}"
    );
    let bad = [None, None, Some(vec![0, k as u32, 0])];
    let e = model.loss(&out, &with(&bad), &cfg).unwrap_err().to_string();
    assert!(
        e.contains(&format!(
            "frame_emotions[2][1] = {k} is not below the {k} classes"
        )),
        "{e}"
    );
}

/// `LossConfig::fastemit` reaches the RNN-T loss: the gradient of the model's mean RNN-T loss
/// equals ent-lattice's with the same `fastemit_lambda` (whose FastEmit gradient has its own
/// tests), the value stays the plain loss, and the gradient differs from the one without it.
#[test]
fn fastemit_weight_reaches_the_rnnt_loss() {
    let AlignCase {
        model,
        mut out,
        labels,
        ..
    } = align_case(13);
    let AsrLattice::Logits(logits) = &out.asr else {
        panic!("align_case builds logits")
    };
    let asr = Var::from_tensor(logits).unwrap();
    out.asr = AsrLattice::Logits(asr.as_tensor().clone());
    let targets = labels.targets();
    let u32s = |v: &[usize]| {
        let v: Vec<u32> = v.iter().map(|&x| x as u32).collect();
        Tensor::from_vec(v.clone(), v.len(), &Device::Cpu).unwrap()
    };
    let grad_of = |lambda: f64| {
        let l = model
            .loss(
                &out,
                &targets,
                &LossConfig {
                    fastemit: lambda,
                    ..Default::default()
                },
            )
            .unwrap();
        let g = l.rnnt.backward().unwrap();
        let value = l.rnnt.to_scalar::<f32>().unwrap();
        let g = g
            .get(&asr)
            .unwrap()
            .flatten_all()
            .unwrap()
            .to_vec1::<f32>()
            .unwrap();
        (value, g)
    };
    let (v0, g0) = grad_of(0.0);
    let (v1, g1) = grad_of(0.5);
    let reference = ent_lattice::rnnt_loss(
        asr.as_tensor(),
        &labels.tokens,
        &u32s(&out.frame_lens),
        &u32s(&labels.token_lens),
        &ent_lattice::RnntLossConfig {
            fastemit_lambda: 0.5,
            ..Default::default()
        },
    )
    .unwrap();
    let gr = reference.backward().unwrap();
    let gr = gr
        .get(&asr)
        .unwrap()
        .flatten_all()
        .unwrap()
        .to_vec1::<f32>()
        .unwrap();
    assert_eq!(v0, v1, "FastEmit changes the gradient, not the value");
    let worst = g1
        .iter()
        .zip(&gr)
        .map(|(a, b)| (a - b).abs())
        .fold(0f32, f32::max);
    assert!(
        worst < 1e-6,
        "off ent-lattice's FastEmit gradient by {worst}"
    );
    let moved = g1
        .iter()
        .zip(&g0)
        .map(|(a, b)| (a - b).abs())
        .fold(0f32, f32::max);
    assert!(moved > 1e-3, "FastEmit moved the gradient by only {moved}");
}

/// Linear-softmax pooling: the value recomputed in f64 from its definition, the gradient
/// against central differences (zero on padded nodes), and the model's lattice term with
/// `pool_function: linear_softmax` is its batch mean.
#[test]
fn linear_softmax_pooling_matches_its_definition() {
    let (b, t, u1, k, neutral) = (3, 5, 3, 4, 3);
    let frame_lens = [5usize, 3, 4];
    let token_lens = [2usize, 0, 1];
    let labels = [0u32, 3, 2];
    let mut rng = SplitMix64::new(21);
    let z: Vec<f64> = (0..b * t * u1 * k).map(|_| 2.0 * rng.gaussian()).collect();
    let value = |z: &[f64]| -> Vec<f64> {
        (0..b)
            .map(|i| {
                let mut num = vec![0.0; k];
                let mut den = vec![0.0; k];
                for f in 0..frame_lens[i] {
                    for u in 0..=token_lens[i] {
                        let at = ((i * t + f) * u1 + u) * k;
                        let m = z[at..at + k].iter().cloned().fold(f64::MIN, f64::max);
                        let e: Vec<f64> = z[at..at + k].iter().map(|x| (x - m).exp()).collect();
                        let s: f64 = e.iter().sum();
                        for c in 0..k {
                            let q = e[c] / s;
                            num[c] += q * q;
                            den[c] += q;
                        }
                    }
                }
                (0..k)
                    .filter(|&c| c != neutral)
                    .map(|c| {
                        let y = (num[c] / den[c]).clamp(1e-7, 1.0 - 1e-7);
                        if c == labels[i] as usize {
                            -y.ln()
                        } else {
                            -(1.0 - y).ln()
                        }
                    })
                    .sum()
            })
            .collect()
    };
    let zt = Var::from_vec(z.clone(), (b, t, u1, k), &Device::Cpu).unwrap();
    let got = ent_model::linear_softmax_pool_loss(
        zt.as_tensor(),
        &labels,
        &frame_lens,
        &token_lens,
        neutral,
    )
    .unwrap();
    let want = value(&z);
    let gotv = got.to_vec1::<f64>().unwrap();
    for (g, w) in gotv.iter().zip(&want) {
        assert!((g - w).abs() < 1e-12 * w.abs().max(1.0), "{g} vs {w}");
    }
    let grad = got.sum_all().unwrap().backward().unwrap();
    let g = grad
        .get(&zt)
        .unwrap()
        .flatten_all()
        .unwrap()
        .to_vec1::<f64>()
        .unwrap();
    let h = 1e-6;
    let mut worst = 0f64;
    for j in 0..z.len() {
        let (mut up, mut down) = (z.clone(), z.clone());
        up[j] += h;
        down[j] -= h;
        let fd = (value(&up).iter().sum::<f64>() - value(&down).iter().sum::<f64>()) / (2.0 * h);
        worst = worst.max((fd - g[j]).abs());
        let (i, rest) = (j / (t * u1 * k), j % (t * u1 * k));
        let (f, u) = (rest / (u1 * k), (rest / k) % u1);
        if f >= frame_lens[i] || u > token_lens[i] {
            assert_eq!(g[j], 0.0, "padded node {i} {f} {u} has gradient");
        }
    }
    assert!(worst < 1e-7, "gradient off finite differences by {worst}");
    let bad = ent_model::linear_softmax_pool_loss(
        zt.as_tensor(),
        &[0, 4, 1],
        &frame_lens,
        &token_lens,
        neutral,
    );
    let e = bad.unwrap_err().to_string();
    assert!(
        e.contains("emotion labels[1] = 4 is not below the 4 classes"),
        "{e}"
    );

    // Through the model: the lattice term is the batch mean over the whole lattice.
    let AlignCase {
        model, out, labels, ..
    } = align_case(14);
    let targets = labels.targets();
    let cfg = LossConfig {
        pool_function: ent_model::PoolFunction::LinearSoftmax,
        ..Default::default()
    };
    let l = model.loss(&out, &targets, &cfg).unwrap();
    let direct = ent_model::linear_softmax_pool_loss(
        &out.emotion_logits,
        &labels.emotions,
        &out.frame_lens,
        &labels.token_lens,
        3,
    )
    .unwrap()
    .mean_all()
    .unwrap()
    .to_scalar::<f32>()
    .unwrap();
    assert_eq!(l.lattice.to_scalar::<f32>().unwrap(), direct);
}

/// Attention pooling: the value recomputed in f64 from its definition, the gradients of the
/// emotion logits and of the attention logits against central differences (zero on padded
/// nodes and frames), and the model's attention layer feeding the lattice term.
#[test]
fn attention_pooling_matches_its_definition() {
    let (b, t, u1, k, neutral) = (3, 5, 3, 4, 3);
    let frame_lens = [5usize, 3, 4];
    let token_lens = [2usize, 0, 1];
    let labels = [1u32, 3, 0];
    let mut rng = SplitMix64::new(22);
    let nz = b * t * u1 * k;
    let x: Vec<f64> = (0..nz + b * t * k).map(|_| 2.0 * rng.gaussian()).collect();
    let value = |x: &[f64]| -> f64 {
        let (z, a) = x.split_at(nz);
        let mut total = 0.0;
        for i in 0..b {
            for c in (0..k).filter(|&c| c != neutral) {
                let mut num = 0.0;
                let mut den = 0.0;
                for f in 0..frame_lens[i] {
                    let w = a[(i * t + f) * k + c].exp();
                    for u in 0..=token_lens[i] {
                        let at = ((i * t + f) * u1 + u) * k;
                        let s: f64 = z[at..at + k].iter().map(|v| v.exp()).sum();
                        num += w * z[at + c].exp() / s;
                        den += w;
                    }
                }
                let y = (num / den).clamp(1e-7, 1.0 - 1e-7);
                total -= if c == labels[i] as usize {
                    y.ln()
                } else {
                    (1.0 - y).ln()
                };
            }
        }
        total
    };
    let z = Var::from_vec(x[..nz].to_vec(), (b, t, u1, k), &Device::Cpu).unwrap();
    let a = Var::from_vec(x[nz..].to_vec(), (b, t, k), &Device::Cpu).unwrap();
    let got = ent_model::attention_pool_loss(
        z.as_tensor(),
        a.as_tensor(),
        &labels,
        &frame_lens,
        &token_lens,
        neutral,
    )
    .unwrap()
    .sum_all()
    .unwrap();
    let want = value(&x);
    let g = got.to_scalar::<f64>().unwrap();
    assert!(
        (g - want).abs() < 1e-12 * want.abs().max(1.0),
        "{g} vs {want}"
    );
    let grads = got.backward().unwrap();
    let mut analytic = grads
        .get(&z)
        .unwrap()
        .flatten_all()
        .unwrap()
        .to_vec1::<f64>()
        .unwrap();
    analytic.extend(
        grads
            .get(&a)
            .unwrap()
            .flatten_all()
            .unwrap()
            .to_vec1::<f64>()
            .unwrap(),
    );
    let h = 1e-6;
    let mut worst = 0f64;
    for j in 0..x.len() {
        let (mut up, mut down) = (x.clone(), x.clone());
        up[j] += h;
        down[j] -= h;
        let fd = (value(&up) - value(&down)) / (2.0 * h);
        worst = worst.max((fd - analytic[j]).abs());
        let padded = if j < nz {
            let (i, rest) = (j / (t * u1 * k), j % (t * u1 * k));
            let (f, u) = (rest / (u1 * k), (rest / k) % u1);
            f >= frame_lens[i] || u > token_lens[i]
        } else {
            let (i, f) = ((j - nz) / (t * k), ((j - nz) / k) % t);
            f >= frame_lens[i]
        };
        if padded {
            assert_eq!(analytic[j], 0.0, "padded input {j} has gradient");
        }
    }
    assert!(worst < 1e-7, "gradient off finite differences by {worst}");

    // The model's layer: [B, T, K] attention logits, and the loss refuses a model without it.
    let (_, mcfg) = variants().remove(0);
    let with = ModelConfig {
        pool_attention: true,
        ..mcfg.clone()
    };
    let (_, model) = build(&with);
    let (_, plain) = build(&mcfg);
    let AlignCase { out, labels, .. } = align_case(15);
    let targets = labels.targets();
    let cfg = LossConfig {
        pool_function: ent_model::PoolFunction::Attention,
        ..Default::default()
    };
    let e = plain.loss(&out, &targets, &cfg).unwrap_err().to_string();
    assert!(e.contains("pool_attention"), "{e}");
    let att = Tensor::zeros((3, 7, with.num_emotions), DType::F32, &Device::Cpu).unwrap();
    let out = ent_model::Output {
        pool_attention: Some(att),
        ..out
    };
    let l = model.loss(&out, &targets, &cfg).unwrap();
    assert!(l.lattice.to_scalar::<f32>().unwrap().is_finite());

    // Through the forward pass: the layer's `[B, T, K]` logits, and its weights get gradient.
    let (vm, model) = build(&with);
    let bt = batch(&with, 1);
    let out = forward_eval(&model, &with, &bt);
    let att = out.pool_attention.as_ref().expect("attention logits");
    let (bb, tt, _, _) = out.emotion_logits.dims4().unwrap();
    assert_eq!(att.dims(), [bb, tt, with.num_emotions]);
    let targets = Targets::new(&bt.tokens, &bt.token_lens, &[0, 3, 2]);
    let l = model.loss(&out, &targets, &cfg).unwrap();
    let grads = l.lattice.backward().unwrap();
    let data = vm.data().lock().unwrap();
    let w = grads
        .get(data.get("pool_attention.weight").unwrap())
        .unwrap();
    let norm = w
        .sqr()
        .unwrap()
        .sum_all()
        .unwrap()
        .to_scalar::<f32>()
        .unwrap();
    assert!(norm > 0.0, "the attention layer gets no gradient");
}
