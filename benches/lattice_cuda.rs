//! Lattice loss throughput on a GPU: `cargo bench -p ent-benches --features cuda --bench
//! lattice_cuda` (the GPU bundle's `run.sh` runs the built binary).
//!
//! Groups `cuda/rnnt_loss` and `cuda/lattice_pool`, one benchmark id per shape and logits
//! type (`B32_T500_U100_V1000_f16`), each with:
//! - `copy`: a device copy of the logits (one read and one write): the bandwidth probe. The
//!   floor of a loss with its gradient is two reads of the logits (normaliser, gradient) and
//!   one write of the gradient: 1.5 copies.
//! - `loss_grad`: `rnnt_loss_with_grad` (normaliser, alpha/beta, costs and gradient kernels);
//! - `loss_grad_candle`: `rnnt_loss(..)?.backward()?` on a `Var` (adds candle's gradient
//!   accumulation: a zeroed tensor plus an addition);
//! - `loss`: the loss of an untracked tensor, no gradient.
//!
//! Inputs are uniform in `[-3, 3)` (never zeros), every utterance full length. The device is
//! synchronised before each clock read (`iter_custom`). `benches/torchaudio_rnnt.py --device
//! cuda` times torchaudio on the same shapes and `benches/gpu_table.py` prints the comparison.

use std::time::{Duration, Instant};

use candle_core::{DType, Device, Tensor, Var};
use criterion::measurement::WallTime;
use criterion::{
    BenchmarkGroup, BenchmarkId, Criterion, Throughput, criterion_group, criterion_main,
};
use ent_benches::{CUDA_POOL_SHAPES, CUDA_RNNT_SHAPES, Rng, Shape};
use ent_lattice::{
    LatticePoolConfig, RnntLossConfig, lattice_max_pool_loss, lattice_max_pool_loss_with_grad,
    rnnt_best_path, rnnt_loss, rnnt_loss_with_grad,
};

fn device() -> Device {
    Device::new_cuda(0).expect("the cuda benchmarks need a CUDA device")
}

struct Inputs {
    logits: Var,
    targets: Tensor,
    logit_lens: Tensor,
    target_lens: Tensor,
}

fn inputs(shape: Shape, dtype: DType, dev: &Device) -> Inputs {
    let d = shape.dims;
    let dims = (d.batch, d.frames, d.positions(), d.classes);
    let logits = Tensor::rand(-3f32, 3f32, dims, dev)
        .and_then(|t| t.to_dtype(dtype))
        .expect("random logits");
    let mut rng = Rng::new(42);
    let pool = shape.class_letter == 'K';
    let targets: Vec<u32> = if pool {
        (0..d.batch)
            .map(|_| (rng.next_u64() % d.classes as u64) as u32)
            .collect()
    } else {
        (0..d.batch * d.targets)
            .map(|_| 1 + (rng.next_u64() % (d.classes as u64 - 1)) as u32)
            .collect()
    };
    let targets = if pool {
        Tensor::from_vec(targets, d.batch, dev)
    } else {
        Tensor::from_vec(targets, (d.batch, d.targets), dev)
    };
    Inputs {
        logits: Var::from_tensor(&logits).expect("var"),
        targets: targets.expect("targets"),
        logit_lens: Tensor::from_vec(vec![d.frames as u32; d.batch], d.batch, dev).expect("lens"),
        target_lens: Tensor::from_vec(vec![d.targets as u32; d.batch], d.batch, dev).expect("lens"),
    }
}

/// Times `f` with the device synchronised before each clock read.
fn timed(
    group: &mut Group<'_>,
    func: &str,
    id: &str,
    dev: &Device,
    f: impl Fn() -> candle_core::Result<()>,
) {
    group.bench_function(BenchmarkId::new(func, id), |b| {
        b.iter_custom(|iters| {
            dev.synchronize().expect("synchronize");
            let t0 = Instant::now();
            for _ in 0..iters {
                f().expect("benchmark step");
            }
            dev.synchronize().expect("synchronize");
            t0.elapsed()
        })
    });
}

type Group<'a> = BenchmarkGroup<'a, WallTime>;

/// Runs `bench` on every shape and logit type of a group, with the inputs on the device and the
/// group's throughput set to the logits' bytes; the copy of the logits comes first.
fn each_input(
    c: &mut Criterion,
    name: &str,
    shapes: &[Shape],
    bench: impl Fn(&mut Group<'_>, &str, &Inputs, &Device),
) {
    let dev = device();
    let mut g = c.benchmark_group(name);
    g.sample_size(10)
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(2));
    for &shape in shapes {
        for (dtype, suffix) in [(DType::F32, "f32"), (DType::F16, "f16")] {
            let id = format!("{}_{suffix}", shape.name());
            let x = inputs(shape, dtype, &dev);
            let z = x.logits.as_tensor();
            g.throughput(Throughput::Bytes(
                (shape.numel() * dtype.size_in_bytes()) as u64,
            ));
            timed(&mut g, "copy", &id, &dev, || z.copy().map(drop));
            bench(&mut g, &id, &x, &dev);
        }
    }
    g.finish();
}

fn rnnt(c: &mut Criterion) {
    let cfg = RnntLossConfig::default();
    each_input(c, "cuda/rnnt_loss", &CUDA_RNNT_SHAPES, |g, id, x, dev| {
        let z = x.logits.as_tensor();
        let (t, ll, tl) = (&x.targets, &x.logit_lens, &x.target_lens);
        timed(g, "loss_grad", id, dev, || {
            rnnt_loss_with_grad(z, t, ll, tl, &cfg).map(drop)
        });
        timed(g, "loss_grad_candle", id, dev, || {
            rnnt_loss(z, t, ll, tl, &cfg)?.backward().map(drop)
        });
        let untracked = z.detach();
        timed(g, "loss", id, dev, || {
            rnnt_loss(&untracked, t, ll, tl, &cfg).map(drop)
        });
        if z.dtype() == DType::F32 && z.elem_count() < 1 << 28 {
            timed(g, "best_path", id, dev, || {
                rnnt_best_path(&untracked, t, ll, tl, 0).map(drop)
            });
        }
    });
}

fn pool(c: &mut Criterion) {
    let cfg = LatticePoolConfig::default();
    each_input(
        c,
        "cuda/lattice_pool",
        &CUDA_POOL_SHAPES,
        |g, id, x, dev| {
            let z = x.logits.as_tensor();
            let (t, ll, tl) = (&x.targets, &x.logit_lens, &x.target_lens);
            timed(g, "loss_grad", id, dev, || {
                lattice_max_pool_loss_with_grad(z, t, ll, tl, &cfg).map(drop)
            });
            timed(g, "loss_grad_candle", id, dev, || {
                lattice_max_pool_loss(z, t, ll, tl, &cfg)?
                    .backward()
                    .map(drop)
            });
        },
    );
}

criterion_group!(benches, rnnt, pool);
criterion_main!(benches);
