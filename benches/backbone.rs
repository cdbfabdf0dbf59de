//! Backbone speed on the CPU: `cargo bench -p ent-benches --bench backbone`.
//!
//! Group `cpu/backbone`: 10 s of 16 kHz speech (the committed sentence, repeated) through a
//! base-size wav2vec2 (`facebook/wav2vec2-base`'s architecture, random weights written once by
//! `ent_benches::backbone_checkpoint`; `ENT_BACKBONE_BENCH_MODEL=DIR` for a real checkpoint),
//! all 13 hidden states, on one thread and on all of rayon's threads. The throughput is
//! declared as 10 elements per iteration, so criterion's `elem/s` reads as seconds of audio per
//! second; the real-time factor is its inverse.
//!
//! Floor: about 150 GFLOP per 10 s (convolutional front end 49, transformer 95, positional
//! convolution 5), so at 100 GFLOP/s on one core the work takes 1.5 s.
//!
//! `cargo xtask bench --only backbone` runs this together with
//! `benches/backbone_transformers.py` (transformers on the same weights, input and thread
//! counts) and prints the comparison.

use std::hint::black_box;

use candle_core::{Device, Tensor};
use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use ent_backbone::Backbone;
use ent_benches::{backbone_checkpoint, backbone_input};

/// Seconds of audio per iteration.
const SECONDS: usize = 10;

fn backbone(c: &mut Criterion) {
    let dir = backbone_checkpoint().expect("writing the benchmark checkpoint");
    let model = Backbone::load(&dir, &Device::Cpu).expect("loading the benchmark checkpoint");
    let samples = backbone_input(SECONDS);
    let n = samples.len();
    let waves = Tensor::from_vec(samples, (1, n), &Device::Cpu).expect("input");
    let lengths = Tensor::new(&[n as u32], &Device::Cpu).expect("lengths");
    let mut group = c.benchmark_group("cpu/backbone");
    group.sample_size(10);
    group.throughput(Throughput::Elements(SECONDS as u64));
    let one = rayon::ThreadPoolBuilder::new()
        .num_threads(1)
        .build()
        .expect("a one-thread pool");
    let id = format!("wav2vec2-base_{SECONDS}s");
    group.bench_function(BenchmarkId::new("1_thread", &id), |b| {
        b.iter(|| one.install(|| model.forward(black_box(&waves), &lengths).expect("forward")))
    });
    group.bench_function(BenchmarkId::new("all_threads", &id), |b| {
        b.iter(|| model.forward(black_box(&waves), &lengths).expect("forward"))
    });
    group.finish();
}

criterion_group!(benches, backbone);
criterion_main!(benches);
