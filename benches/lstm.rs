//! LSTM training cost against sequence length: `cargo bench -p ent-benches --bench lstm`.
//!
//! Group `cpu/bilstm_fwd_bwd`: forward and backward pass of ENT's encoder BiLSTM (768 -> 2x384,
//! batch 8) over T = 100, 200, 400, 800 frames, for the sequence-level op of `ent-model`
//! (`ent_model`) and for candle-nn's step-wise LSTM on the same weights (`candle_nn_steps`, up to
//! T = 400: its backward pass builds a full-size zero-padded tensor per frame, so it grows as
//! T^2). Throughput is frames (B * T) per iteration: a linear-cost implementation keeps
//! `elem/s` flat as T grows.
//!
//! Floor: the arithmetic, about 3 * 2 * (B*T) * 2 * 4H * (I + H) flops (forward, and twice that
//! backward): 22 GFLOP at T = 800, a few seconds on one core at the AVX-512 peak of the machines
//! used here.

use std::hint::black_box;

use candle_core::{DType, Device, Tensor, Var};
use candle_nn::rnn::{Direction, LSTMConfig, RNN};
use candle_nn::{VarBuilder, VarMap};
use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use ent_model::lstm::BiLstm;

const B: usize = 8;
const INPUT: usize = 768;
const HIDDEN: usize = 384;

fn bilstm(c: &mut Criterion) {
    let dev = Device::Cpu;
    let vm = VarMap::new();
    let vb = VarBuilder::from_varmap(&vm, DType::F32, &dev);
    let ours = BiLstm::new(INPUT, HIDDEN, vb.pp("enc")).expect("bilstm");
    let fwd = candle_nn::lstm(INPUT, HIDDEN, LSTMConfig::default(), vb.pp("enc")).expect("lstm");
    let bwd_cfg = LSTMConfig {
        direction: Direction::Backward,
        ..Default::default()
    };
    let bwd = candle_nn::lstm(INPUT, HIDDEN, bwd_cfg, vb.pp("enc")).expect("lstm");
    let mut group = c.benchmark_group("cpu/bilstm_fwd_bwd");
    group.sample_size(10);
    for t in [100usize, 200, 400, 800] {
        let x = Var::from_tensor(&Tensor::randn(0f32, 1.0, (B, t, INPUT), &dev).expect("x"))
            .expect("var");
        let lens = vec![t; B];
        group.throughput(Throughput::Elements((B * t) as u64));
        let id = format!("B{B}_T{t}_I{INPUT}_H{HIDDEN}");
        group.bench_function(BenchmarkId::new("ent_model", &id), |b| {
            b.iter(|| {
                let y = ours
                    .forward(black_box(x.as_tensor()), &lens)
                    .expect("forward");
                y.sum_all().expect("sum").backward().expect("backward")
            })
        });
        if t <= 400 {
            group.bench_function(BenchmarkId::new("candle_nn_steps", &id), |b| {
                b.iter(|| {
                    let xs = black_box(x.as_tensor());
                    let f = fwd
                        .states_to_tensor(&fwd.seq(xs).expect("seq"))
                        .expect("stack");
                    let idx: Vec<u32> = (0..t as u32).rev().collect();
                    let idx = Tensor::new(idx.as_slice(), &dev).expect("idx");
                    let xr = xs.index_select(&idx, 1).expect("flip");
                    let b2 = bwd
                        .states_to_tensor(&bwd.seq(&xr).expect("seq"))
                        .expect("stack");
                    let b2 = b2.index_select(&idx, 1).expect("flip");
                    let y = Tensor::cat(&[f, b2], 2).expect("cat");
                    y.sum_all().expect("sum").backward().expect("backward")
                })
            });
        }
    }
    group.finish();
}

criterion_group!(benches, bilstm);
criterion_main!(benches);
