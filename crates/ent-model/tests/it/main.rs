//! Integration tests of ent-model.

use candle_core::{DType, Tensor};

mod cpu_ops;
#[cfg(feature = "cuda")]
mod cuda_lstm;
mod fused_loss;
mod joint;
mod lstm;
mod model;
mod nn;

/// The largest absolute elementwise difference of two tensors of the same shape.
pub fn max_diff(a: &Tensor, b: &Tensor) -> f64 {
    (a - b)
        .unwrap()
        .abs()
        .unwrap()
        .flatten_all()
        .unwrap()
        .max(0)
        .unwrap()
        .to_dtype(DType::F64)
        .unwrap()
        .to_scalar::<f64>()
        .unwrap()
}

/// Gaussian values of standard deviation `std` from a seeded stream, as an f64 tensor on the
/// CPU: the same inputs on every run.
pub fn seeded_randn(shape: &[usize], std: f64, seed: u64) -> Tensor {
    let mut rng = ent_common::rng::SplitMix64::new(seed);
    let n: usize = shape.iter().product();
    let v: Vec<f64> = (0..n).map(|_| std * rng.gaussian()).collect();
    Tensor::from_vec(v, shape, &candle_core::Device::Cpu).unwrap()
}

/// `f` run on a pool of `threads` threads (for results that must not depend on them).
pub fn on_threads<R: Send>(threads: usize, f: impl FnOnce() -> R + Send) -> R {
    rayon::ThreadPoolBuilder::new()
        .num_threads(threads)
        .build()
        .unwrap()
        .install(f)
}

/// The bits of an f32 tensor's values, for comparisons that must be exact.
pub fn bits(t: &Tensor) -> Vec<u32> {
    t.flatten_all()
        .unwrap()
        .to_vec1::<f32>()
        .unwrap()
        .iter()
        .map(|v| v.to_bits())
        .collect()
}
