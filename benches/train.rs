//! Training speed on the CPU: `cargo bench -p ent-benches --bench train`.
//!
//! Group `cpu/train_step`: one optimiser step (forward, the three losses, backward, gradient
//! clipping, AdamW) at batch 8 with 5 s utterances and 60-character transcripts:
//!
//! - `ent_backbone_features`: the paper's ENT (9.7 M trainable parameters) on precomputed
//!   wav2vec2-base hidden states (13 x 250 frames x 768), so the frozen backbone is not timed;
//! - `fbank_small`: the CPU-sized filterbank model (`ModelConfig::fbank_small`) on 500
//!   filterbank frames of 80 bins.
//!
//! With the `cuda` feature and `ENT_BENCH_DEVICE=cuda` in the environment the same steps run on
//! the first GPU, as group `cuda/train_step` (each step ends with a device synchronisation); the
//! GPU bundle runs it that way beside `benches/train_torch.py --device cuda`.
//!
//! Throughput is utterances per iteration: criterion's `elem/s` reads as utterances per second.
//! Floor: the joint networks dominate, `B * T * (U+1) * J` tanh units with a `J x V` and a
//! `J x K` product each way (ENT: 8 * 250 * 61 * 768 = 94 M hidden units per joint).

use std::collections::BTreeMap;
use std::hint::black_box;

use candle_core::{DType, Device, Tensor};
use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use ent_common::rng::SplitMix64;
use ent_model::{Features, FrontEnd, LossConfig, Mode, Model, ModelConfig, SeededVarMap, Targets};
use ent_train::optim::{AdamW, OptimConfig, accumulate, clip_grad_norm};

const B: usize = 8;
const U: usize = 60;

struct Setup {
    model: Model,
    opt: AdamW,
    feats: Tensor,
    lens: Vec<usize>,
    tokens: Tensor,
    token_lens: Vec<usize>,
    emotions: Vec<u32>,
}

/// The device of `ENT_BENCH_DEVICE` (`cpu`, the default, or `cuda` with the `cuda` feature).
fn device() -> Device {
    match std::env::var("ENT_BENCH_DEVICE").as_deref() {
        Ok("cpu") | Err(_) => Device::Cpu,
        Ok("cuda") => Device::new_cuda(0).expect("ENT_BENCH_DEVICE=cuda: no CUDA device"),
        Ok(other) => panic!("ENT_BENCH_DEVICE={other}: expected cpu or cuda"),
    }
}

fn setup(cfg: &ModelConfig, dev: &Device) -> Setup {
    let dev = dev.clone();
    let vars = SeededVarMap::new(42);
    let model = Model::new(cfg, vars.var_builder(DType::F32, &dev)).expect("model");
    let named: Vec<_> = vars
        .var_map()
        .data()
        .lock()
        .expect("vars")
        .iter()
        .filter(|(n, _)| !Model::is_buffer(n))
        .map(|(n, v)| (n.clone(), v.clone()))
        .collect();
    let opt = AdamW::new(named, OptimConfig::default()).expect("optimiser");
    let (feats, lens) = match &cfg.front_end {
        FrontEnd::Backbone { layers, dim } => (
            Tensor::randn(0f32, 1.0, (*layers, B, 250, *dim), &dev).expect("features"),
            vec![250; B],
        ),
        FrontEnd::Fbank { num_mel_bins, .. } => (
            Tensor::randn(0f32, 1.0, (B, 500, *num_mel_bins), &dev).expect("features"),
            vec![500; B],
        ),
    };
    let mut rng = SplitMix64::new(1);
    let tokens: Vec<u32> = (0..B * U)
        .map(|_| rng.range_inclusive(2, 29) as u32)
        .collect();
    Setup {
        model,
        opt,
        feats,
        lens,
        tokens: Tensor::from_vec(tokens, (B, U), &dev).expect("tokens"),
        token_lens: vec![U; B],
        emotions: (0..B as u32).map(|i| i % 4).collect(),
    }
}

fn step(s: &mut Setup, fbank: bool, rng: &mut SplitMix64) {
    let feats = if fbank {
        Features::Fbank(&s.feats)
    } else {
        Features::Hidden(&s.feats)
    };
    let out = s
        .model
        .forward(
            feats,
            &s.lens,
            &s.tokens,
            &s.token_lens,
            &mut Mode::train(rng),
        )
        .expect("forward");
    let targets = Targets {
        tokens: &s.tokens,
        token_lens: &s.token_lens,
        emotions: &s.emotions,
        intensity: &[None; B],
        gender: &[None; B],
        frame_emotions: &[],
    };
    let loss = s
        .model
        .loss(&out, &targets, &LossConfig::default())
        .expect("loss");
    let grads = loss.total.backward().expect("backward");
    let mut acc = BTreeMap::new();
    accumulate(&mut acc, &grads, s.opt.vars()).expect("grads");
    clip_grad_norm(&mut acc, Some(5.0)).expect("clip");
    s.opt.step(&acc, 1e-4).expect("step");
    s.feats.device().synchronize().expect("synchronize");
}

fn train(c: &mut Criterion) {
    let dev = device();
    let mut group = c.benchmark_group(if dev.is_cuda() {
        "cuda/train_step"
    } else {
        "cpu/train_step"
    });
    group.sample_size(10);
    group.throughput(Throughput::Elements(B as u64));
    let mut rng = SplitMix64::new(3);
    for (name, cfg, fbank) in [
        ("fbank_small", ModelConfig::fbank_small(), true),
        ("ent_backbone_features", ModelConfig::default(), false),
    ] {
        let mut s = setup(&cfg, &dev);
        let id = format!("B{B}_5s_U{U}");
        group.bench_function(BenchmarkId::new(name, &id), |b| {
            b.iter(|| step(black_box(&mut s), fbank, &mut rng))
        });
    }
    group.finish();
}

criterion_group!(benches, train);
criterion_main!(benches);
