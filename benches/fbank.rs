//! Filterbank throughput on the CPU: `cargo bench -p ent-benches --bench fbank`.
//!
//! Group `cpu/fbank`: Kaldi log-mel filterbanks (80 bins, default options) of 60 s of speech
//! (the committed test sentence repeated), on one thread and on all of rayon's threads. The
//! throughput is declared as 60 elements per iteration, so criterion's `elem/s` reads as
//! seconds of audio per second.
//!
//! Floor: the bytes that must move, 60 s * 16000 samples * 4 B in and 5998 * 80 * 4 B out
//! (5.76 MB), take well under a millisecond; the work is the FFT and the per-frame arithmetic.
//!
//! `cargo xtask bench` runs this together with `benches/fbank_kaldi_native.py` (the peer, on
//! the same audio) and prints the comparison table.

use std::hint::black_box;

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use ent_benches::bench_speech;
use ent_features::{Fbank, FbankOptions};

/// Seconds of audio per benchmark iteration.
const SECONDS: usize = 60;

fn fbank(c: &mut Criterion) {
    let samples = bench_speech(SECONDS).expect("speech fixture");
    let fbank = Fbank::new(FbankOptions::default()).expect("default options");
    let mut group = c.benchmark_group("cpu/fbank");
    group.throughput(Throughput::Elements(SECONDS as u64));
    let one = rayon::ThreadPoolBuilder::new()
        .num_threads(1)
        .build()
        .expect("a one-thread pool");
    let id = format!("speech_{SECONDS}s");
    group.bench_function(BenchmarkId::new("1_thread", &id), |b| {
        b.iter(|| one.install(|| fbank.compute(black_box(&samples)).expect("fbank")))
    });
    group.bench_function(BenchmarkId::new("all_threads", &id), |b| {
        b.iter(|| fbank.compute(black_box(&samples)).expect("fbank"))
    });
    group.finish();
}

criterion_group!(benches, fbank);
criterion_main!(benches);
