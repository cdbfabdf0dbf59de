//! The training forward pass with the ASR joint fused into the RNN-T loss's log-softmax and
//! gather (`Model::forward` on the CPU) against the unfused reference
//! (`Model::forward_unfused`: every joint in candle operations, the logits stored): every loss
//! and every gradient for ENT and FENT, backbone and filterbank front ends, f32 and f64; and
//! against f64 finite differences on the ASR joints' parameters.

use candle_core::{DType, Device, Tensor};
use candle_nn::{VarBuilder, VarMap};
use ent_common::rng::SplitMix64;
use ent_model::{AsrLattice, LossConfig, Losses, Mode, Model, ModelConfig, PoolNodes, Targets};

use crate::max_diff;
use crate::model::{Batch, batch, features, forward_eval, variants};

fn build(cfg: &ModelConfig, dtype: DType) -> (VarMap, Model) {
    let vm = VarMap::new();
    let model = Model::new(cfg, VarBuilder::from_varmap(&vm, dtype, &Device::Cpu)).unwrap();
    (vm, model)
}

const EMOTIONS: [u32; 3] = [1, 3, 0];

fn targets(b: &Batch) -> Targets<'_> {
    Targets::new(&b.tokens, &b.token_lens, &EMOTIONS)
        .with_aux(&[Some(0.3), None, Some(0.9)], &[Some(1), Some(0), None])
}

/// The losses of one forward pass (train mode, dropout masks from `seed`).
fn losses(model: &Model, cfg: &ModelConfig, b: &Batch, loss: &LossConfig, fused: bool) -> Losses {
    let mut rng = SplitMix64::new(5);
    let mut mode = Mode::train(&mut rng);
    let f = features(cfg, &b.feats);
    let out = if fused {
        model.forward(f, &b.lens, &b.tokens, &b.token_lens, &mut mode)
    } else {
        model.forward_unfused(f, &b.lens, &b.tokens, &b.token_lens, &mut mode)
    }
    .unwrap();
    assert_eq!(
        matches!(out.asr, AsrLattice::LogProbs { .. }),
        fused,
        "which ASR path ran"
    );
    model.loss(&out, &targets(b), loss).unwrap()
}

/// Every parameter's gradient of the total loss, by name.
fn grads(vm: &VarMap, l: &Losses) -> Vec<(String, Tensor)> {
    let g = l.total.backward().unwrap();
    let data = vm.data().lock().unwrap();
    let mut names: Vec<&String> = data.keys().collect();
    names.sort();
    names
        .into_iter()
        .filter(|n| !Model::is_buffer(n))
        .map(|n| {
            let t = g
                .get(data[n].as_tensor())
                .unwrap_or_else(|| panic!("no gradient for {n}"));
            (n.clone(), t.clone())
        })
        .collect()
}

fn scalar(t: &Tensor) -> f64 {
    t.to_dtype(DType::F64).unwrap().to_scalar::<f64>().unwrap()
}

/// Fused against unfused: total, RNN-T, lattice and head losses, and every gradient, within
/// 1e-10 (f64, relative to the largest entry) and 2e-4 (f32: the two paths sum in different
/// orders and normalise the logits in f32); the paper's loss, and one with FastEmit and
/// pooling over the best alignment (which the fused path finds from its node
/// log-probabilities).
#[test]
fn fused_loss_equals_unfused() {
    let configs = [
        LossConfig::default(),
        LossConfig {
            fastemit: 0.3,
            pool_nodes: PoolNodes::Alignment,
            ..Default::default()
        },
    ];
    for (name, cfg) in variants() {
        for (dtype, tol) in [(DType::F64, 1e-10), (DType::F32, 2e-4)] {
            let (vm, model) = build(&cfg, dtype);
            let mut b = batch(&cfg, 3);
            b.feats = b.feats.to_dtype(dtype).unwrap();
            for loss in &configs {
                let (lf, lu) = (
                    losses(&model, &cfg, &b, loss, true),
                    losses(&model, &cfg, &b, loss, false),
                );
                for (part, x, y) in [
                    ("total", &lf.total, &lu.total),
                    ("rnnt", &lf.rnnt, &lu.rnnt),
                    ("lattice", &lf.lattice, &lu.lattice),
                    ("head", &lf.head, &lu.head),
                ] {
                    let (x, y) = (scalar(x), scalar(y));
                    assert!(
                        (x - y).abs() <= tol * y.abs().max(1.0),
                        "{name} {dtype:?} {loss:?}: {part} {x} vs {y}"
                    );
                }
                let (gf, gu) = (grads(&vm, &lf), grads(&vm, &lu));
                assert_eq!(gf.len(), gu.len());
                for ((n, x), (_, y)) in gf.iter().zip(&gu) {
                    let scale = max_diff(y, &y.zeros_like().unwrap()).max(1e-3);
                    let d = max_diff(x, y);
                    assert!(
                        d <= tol * scale,
                        "{name} {dtype:?}: d{n} differs by {d} (largest {scale})"
                    );
                }
            }
        }
    }
}

/// Central differences in f64 of the total loss (FastEmit off: with it the gradient is not
/// the loss's) on every parameter of the ASR joints (FENT: also the blank joint), against the
/// fused path's gradient.
#[test]
fn fused_loss_gradients_match_finite_differences() {
    for (name, cfg) in variants().into_iter().take(2) {
        let (vm, model) = build(&cfg, DType::F64);
        let mut b = batch(&cfg, 4);
        b.feats = b.feats.to_dtype(DType::F64).unwrap();
        let loss_cfg = LossConfig::default();
        let total = || scalar(&losses(&model, &cfg, &b, &loss_cfg, true).total);
        let analytic = grads(&vm, &losses(&model, &cfg, &b, &loss_cfg, true));
        let vars: Vec<(String, candle_core::Var)> = {
            let data = vm.data().lock().unwrap();
            data.iter()
                .filter(|(n, _)| n.starts_with("joint_asr.") || n.starts_with("joint_blank."))
                .map(|(n, v)| (n.clone(), v.clone()))
                .collect()
        };
        assert!(vars.len() >= 4, "{name}: {} joint parameters", vars.len());
        let eps = 1e-6;
        for (n, var) in vars {
            let want = analytic.iter().find(|(m, _)| *m == n).unwrap().1.clone();
            let want = want.flatten_all().unwrap().to_vec1::<f64>().unwrap();
            let base = var.as_tensor().copy().unwrap();
            let flat = base.flatten_all().unwrap().to_vec1::<f64>().unwrap();
            let set = |i: usize, by: f64| {
                let mut v = flat.clone();
                v[i] += by;
                var.set(&Tensor::from_vec(v, base.dims(), base.device()).unwrap())
                    .unwrap();
            };
            // Every entry of the small tensors, every 5th of the projections.
            let step = if flat.len() > 20 { 5 } else { 1 };
            for i in (0..flat.len()).step_by(step) {
                set(i, eps);
                let up = total();
                set(i, -eps);
                let down = total();
                let numeric = (up - down) / (2.0 * eps);
                assert!(
                    (numeric - want[i]).abs() <= 1e-6 * (1.0 + numeric.abs()),
                    "{name}: d{n}[{i}] {numeric} vs {}",
                    want[i]
                );
            }
            var.set(&base).unwrap();
        }
    }
}

/// A blank among the targets is an error from the fused path, worded as the loss on logits
/// words it.
#[test]
fn fused_forward_rejects_bad_tokens() {
    let (_, cfg) = variants().remove(0);
    let (_, model) = build(&cfg, DType::F32);
    let b = batch(&cfg, 5);
    let run = |tokens: &Tensor| {
        model
            .forward(
                features(&cfg, &b.feats),
                &b.lens,
                tokens,
                &b.token_lens,
                &mut Mode::eval(),
            )
            .unwrap_err()
            .to_string()
    };
    let dev = Device::Cpu;
    let with = |y: u32| {
        let mut t = b.tokens.to_vec2::<u32>().unwrap();
        t[1][1] = y;
        Tensor::new(t, &dev).unwrap()
    };
    let e = run(&with(cfg.blank as u32));
    assert!(e.contains("targets[1, 1]") && e.contains("blank"), "{e}");
}

/// One thread or four: the same bits for the fused path's losses and gradients.
#[test]
fn fused_loss_does_not_depend_on_threads() {
    let (_, cfg) = variants().remove(1);
    let (vm, model) = build(&cfg, DType::F32);
    let b = batch(&cfg, 6);
    let on = |threads: usize| {
        crate::on_threads(threads, || {
            let l = losses(&model, &cfg, &b, &LossConfig::default(), true);
            (scalar(&l.total), grads(&vm, &l))
        })
    };
    let bits = crate::bits;
    let ((la, ga), (lb, gb)) = (on(1), on(4));
    assert_eq!(la.to_bits(), lb.to_bits());
    for ((n, x), (_, y)) in ga.iter().zip(&gb) {
        assert_eq!(bits(x), bits(y), "d{n}");
    }
}

/// A backbone batch long enough for several blocks of the fused joints (40 frames: two full
/// blocks of 16 and a partial one), padded, with transcripts of different lengths.
fn long_batch(cfg: &ModelConfig, dtype: DType) -> Batch {
    let ent_model::FrontEnd::Backbone { layers, dim } = cfg.front_end else {
        panic!("a backbone configuration")
    };
    let feats = crate::seeded_randn(&[layers, 3, 40, dim], 1.0, 17)
        .to_dtype(dtype)
        .unwrap();
    let mut rng = SplitMix64::new(18);
    let tokens: Vec<u32> = (0..3 * 5)
        .map(|_| rng.range_inclusive(1, cfg.vocab_size - 1) as u32)
        .collect();
    Batch {
        feats,
        lens: vec![40, 33, 17],
        tokens: Tensor::from_vec(tokens, (3, 5), &Device::Cpu).unwrap(),
        token_lens: vec![5, 3, 1],
    }
}

/// Several blocks per utterance: fused against unfused (f64, 1e-10) for ENT and FENT, and the
/// same bits with 1 and 4 threads (f32).
#[test]
fn fused_loss_over_several_blocks() {
    for (name, cfg) in variants().into_iter().take(2) {
        let (vm, model) = build(&cfg, DType::F64);
        let b = long_batch(&cfg, DType::F64);
        let loss = LossConfig {
            fastemit: 0.2,
            ..Default::default()
        };
        let (lf, lu) = (
            losses(&model, &cfg, &b, &loss, true),
            losses(&model, &cfg, &b, &loss, false),
        );
        let (x, y) = (scalar(&lf.rnnt), scalar(&lu.rnnt));
        assert!((x - y).abs() <= 1e-10 * y.abs(), "{name}: rnnt {x} vs {y}");
        for ((n, x), (_, y)) in grads(&vm, &lf).iter().zip(&grads(&vm, &lu)) {
            let scale = max_diff(y, &y.zeros_like().unwrap()).max(1e-3);
            assert!(max_diff(x, y) <= 1e-10 * scale, "{name}: d{n}");
        }

        let (vm, model) = build(&cfg, DType::F32);
        let b = long_batch(&cfg, DType::F32);
        let on = |threads: usize| {
            crate::on_threads(threads, || {
                let l = losses(&model, &cfg, &b, &loss, true);
                let bits = crate::bits;
                let mut out = vec![bits(&l.total)];
                out.extend(grads(&vm, &l).iter().map(|(_, g)| bits(g)));
                out
            })
        };
        assert_eq!(on(1), on(4), "{name}");
    }
}

/// The loss refuses targets other than those the forward pass gathered for.
#[test]
fn fused_loss_refuses_other_targets() {
    let (_, cfg) = variants().remove(0);
    let (_, model) = build(&cfg, DType::F32);
    let b = batch(&cfg, 8);
    let out = forward_eval(&model, &cfg, &b);
    let mut other = b.tokens.to_vec2::<u32>().unwrap();
    other[0][2] = other[0][2] % (cfg.vocab_size as u32 - 1) + 1;
    let other = Tensor::new(other, &Device::Cpu).unwrap();
    let bad = Targets {
        tokens: &other,
        ..targets(&b)
    };
    let e = model
        .loss(&out, &bad, &LossConfig::default())
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("targets of utterance 0 differ from the transcript"),
        "{e}"
    );
    let longer = [4usize, 3, 0];
    let bad = Targets {
        token_lens: &longer,
        ..targets(&b)
    };
    assert!(model.loss(&out, &bad, &LossConfig::default()).is_err());
    assert!(
        model
            .loss(&out, &targets(&b), &LossConfig::default())
            .is_ok()
    );
}
