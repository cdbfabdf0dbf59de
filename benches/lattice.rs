//! Lattice loss throughput on the CPU: `cargo bench -p ent-benches --bench lattice`.
//!
//! Groups `cpu/rnnt_loss` and `cpu/lattice_pool`, one benchmark id per shape, each with:
//! - `floor`: read the logits once and write a same-sized tensor (`plain_pass`), moving
//!   `2 * 4 * B*T*(U+1)*V` bytes; no loss with a gradient can be faster;
//! - `loss_grad`: the slice API, loss and gradient into a caller-owned buffer;
//! - `loss_grad_candle`: `rnnt_loss(..)?.backward()?` on a candle `Var` (adds candle's own
//!   gradient accumulation: a zero tensor plus an add over the gradient);
//! - `loss` (RNN-T only): the loss of untracked tensors, no gradient.
//!
//! `cargo xtask bench` runs this together with `benches/torchaudio_rnnt.py` and prints the
//! comparison table.

use std::hint::black_box;

use candle_core::{Device, Tensor, Var};
use criterion::measurement::WallTime;
use criterion::{
    BenchmarkGroup, BenchmarkId, Criterion, Throughput, criterion_group, criterion_main,
};
use ent_benches::{POOL_SHAPES, Problem, RNNT_SHAPES, plain_pass};
use ent_lattice::{LatticePoolConfig, RnntLossConfig, cpu, lattice_max_pool_loss, rnnt_loss};

struct Tensors {
    logits: Var,
    targets: Tensor,
    logit_lens: Tensor,
    target_lens: Tensor,
}

fn tensors(p: &Problem) -> Tensors {
    let d = p.shape.dims;
    let dev = Device::Cpu;
    let shape = (d.batch, d.frames, d.positions(), d.classes);
    let targets = if p.shape.class_letter == 'K' {
        Tensor::new(p.targets.as_slice(), &dev)
    } else {
        Tensor::from_vec(p.targets.clone(), (d.batch, d.targets), &dev)
    };
    Tensors {
        logits: Var::from_vec(p.logits.clone(), shape, &dev).expect("logits"),
        targets: targets.expect("targets"),
        logit_lens: Tensor::new(p.logit_lens.as_slice(), &dev).expect("lengths"),
        target_lens: Tensor::new(p.target_lens.as_slice(), &dev).expect("lengths"),
    }
}

/// Benchmarks `floor`, `loss_grad` (the slice API writing into a reused buffer) and
/// `loss_grad_candle` for one shape; returns the tensors for further benchmarks.
fn common(
    group: &mut BenchmarkGroup<'_, WallTime>,
    p: &Problem,
    slice: impl Fn(&Problem, &mut [f32]),
    candle: impl Fn(&Tensors) -> candle_core::Result<Tensor>,
) -> Tensors {
    let name = p.shape.name();
    group.throughput(Throughput::Elements(p.shape.numel() as u64));
    let mut out = vec![0.0f32; p.shape.numel()];
    group.bench_function(BenchmarkId::new("floor", &name), |b| {
        b.iter(|| plain_pass(black_box(&p.logits), &mut out))
    });
    group.bench_function(BenchmarkId::new("loss_grad", &name), |b| {
        b.iter(|| slice(p, &mut out))
    });
    drop(out);
    let t = tensors(p);
    group.bench_function(BenchmarkId::new("loss_grad_candle", &name), |b| {
        b.iter(|| {
            candle(&t)
                .and_then(|loss| loss.backward())
                .expect("loss and backward")
        })
    });
    t
}

fn rnnt(c: &mut Criterion) {
    let mut group = c.benchmark_group("cpu/rnnt_loss");
    group.sample_size(10);
    let cfg = RnntLossConfig::default();
    for shape in RNNT_SHAPES {
        let p = Problem::new(shape, 42);
        let t = common(
            &mut group,
            &p,
            |p, out| {
                cpu::rnnt_loss(p.batch(), &cfg, Some(out)).expect("loss");
            },
            |t| rnnt_loss(&t.logits, &t.targets, &t.logit_lens, &t.target_lens, &cfg),
        );
        // A plain tensor (not a Var): nothing tracks it, so no gradient is prepared.
        let untracked = t.logits.as_tensor().detach();
        group.bench_function(BenchmarkId::new("loss", shape.name()), |b| {
            b.iter(|| {
                rnnt_loss(&untracked, &t.targets, &t.logit_lens, &t.target_lens, &cfg)
                    .expect("loss")
            })
        });
    }
    group.finish();
}

fn pool(c: &mut Criterion) {
    let mut group = c.benchmark_group("cpu/lattice_pool");
    let cfg = LatticePoolConfig::default();
    for shape in POOL_SHAPES {
        let p = Problem::new(shape, 7);
        common(
            &mut group,
            &p,
            |p, out| {
                cpu::lattice_max_pool_loss(p.batch(), &cfg, Some(out)).expect("loss");
            },
            |t| lattice_max_pool_loss(&t.logits, &t.targets, &t.logit_lens, &t.target_lens, &cfg),
        );
    }
    group.finish();
}

criterion_group!(benches, rnnt, pool);
criterion_main!(benches);
