//! Integration tests of ent-model.

use candle_core::Tensor;

mod cpu_ops;
#[cfg(feature = "cuda")]
mod cuda_lstm;
mod fused_loss;
mod joint;
mod lstm;
mod model;
mod nn;

pub use ent_testkit::{bits, max_abs_diff as max_diff};

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
