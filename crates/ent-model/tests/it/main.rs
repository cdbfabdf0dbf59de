//! Integration tests of ent-model.

use candle_core::{DType, Tensor};

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
