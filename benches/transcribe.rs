//! Inference speed on the CPU: `cargo bench -p ent-benches --bench transcribe`.
//!
//! Group `cpu/transcribe`: 10 s of 16 kHz speech (the committed sentence, repeated) from
//! waveform to text, per-frame emotion, utterance emotion and segments (greedy search, the
//! spec's 32-symbol cap), on all of rayon's threads:
//!
//! - `demo_fbank_10s`: the bundled demo model (filterbanks, conformer, BiLSTM; the trained
//!   weights of `crates/ent-pipeline/assets/demo-model.safetensors`), so the search emits what that
//!   model emits;
//! - `wav2vec2-base_10s`: a base-size wav2vec2 (random weights, `ent_benches::backbone_checkpoint`)
//!   and the paper's ENT (9.7 M parameters, seeded random weights). Random joints would emit
//!   up to 32 tokens on every frame, so the blank logit is raised by 20: the search then emits
//!   nothing and the figure is the cost of backbone, encoder and one joint and emotion
//!   evaluation per frame. A trained model adds one predictor step and joint per character
//!   (about 15 per second of speech, each far smaller than a frame of the backbone).
//!
//! Throughput is declared as 10 elements per iteration, so criterion's `elem/s` reads as
//! seconds of audio per second; the real-time factor (RTF) is its inverse.

use std::hint::black_box;
use std::path::Path;

use candle_core::{DType, Device, Tensor};
use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use ent_backbone::Backbone;
use ent_benches::{backbone_checkpoint, bench_speech};
use ent_decode::{Search, decode};
use ent_features::{Fbank, FbankOptions};
use ent_model::{Features, Mode, Model, ModelConfig, SeededVarMap};
use ent_train::Checkpoint;

const SECONDS: usize = 10;

fn demo(c: &mut Criterion, samples: &[f32]) {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../crates/ent-pipeline/assets/demo-model.safetensors");
    let dev = Device::Cpu;
    let ck = Checkpoint::load(&path, &dev).expect("the bundled demo model");
    let model = ck.build_model(&path, &dev).expect("demo model");
    let ent_model::FrontEnd::Fbank { num_mel_bins, .. } = ck.meta.model.front_end else {
        panic!("the demo model reads filterbanks");
    };
    let fbank = Fbank::new(FbankOptions {
        num_mel_bins,
        dither: 0.0,
        ..FbankOptions::default()
    })
    .expect("fbank");
    let run = || {
        let f = fbank.compute_vec(black_box(samples)).expect("fbank");
        let frames = f.len() / num_mel_bins;
        let x = Tensor::from_vec(f, (1, frames, num_mel_bins), &dev).expect("features");
        let enc = model
            .encode(Features::Fbank(&x), &[frames], &mut Mode::eval())
            .expect("encode");
        decode(&model, &enc, &Search::default()).expect("decode")
    };
    let emitted = run()[0].tokens.len();
    eprintln!("demo_fbank: {emitted} characters emitted in {SECONDS} s");
    bench_audio(c, "demo_fbank", run);
}

fn backbone(c: &mut Criterion, samples: &[f32]) {
    let dev = Device::Cpu;
    let dir = backbone_checkpoint().expect("writing the benchmark checkpoint");
    let bb = Backbone::load(&dir, &dev).expect("backbone");
    let cfg = ModelConfig::default();
    let vars = SeededVarMap::new(7);
    let model = Model::new(&cfg, vars.var_builder(DType::F32, &dev)).expect("model");
    {
        let data = vars.var_map().data().lock().expect("vars");
        let bias = &data["joint_asr.out.bias"];
        let mut b = bias.as_tensor().to_vec1::<f32>().expect("bias");
        b[cfg.blank] += 20.0;
        bias.set(&Tensor::new(b, &dev).expect("bias"))
            .expect("bias");
    }
    let n = samples.len();
    let waves = Tensor::from_vec(samples.to_vec(), (1, n), &dev).expect("input");
    let lengths = Tensor::new(&[n as u32], &dev).expect("lengths");
    let run = || {
        let out = bb.forward(black_box(&waves), &lengths).expect("backbone");
        let h = Tensor::stack(&out.hidden_states, 0).expect("stack");
        let enc = model
            .encode(Features::Hidden(&h), &out.frame_lens, &mut Mode::eval())
            .expect("encode");
        decode(&model, &enc, &Search::default()).expect("decode")
    };
    bench_audio(c, "wav2vec2-base", run);
}

/// Times `run` (which transcribes `SECONDS` of audio) as `cpu/transcribe/{name}_{SECONDS}s`.
fn bench_audio<R>(c: &mut Criterion, name: &str, mut run: impl FnMut() -> R) {
    let mut group = c.benchmark_group("cpu/transcribe");
    group.sample_size(10);
    group.throughput(Throughput::Elements(SECONDS as u64));
    group.bench_function(
        BenchmarkId::from_parameter(format!("{name}_{SECONDS}s")),
        |b| b.iter(&mut run),
    );
    group.finish();
}

fn transcribe(c: &mut Criterion) {
    let samples = bench_speech(SECONDS).expect("speech fixture");
    demo(c, &samples);
    backbone(c, &samples);
}

criterion_group!(benches, transcribe);
criterion_main!(benches);
