//! RNN-T forward-backward loss and emotion-lattice max pooling for [candle].
//!
//! The two losses of the Emotion Neural Transducer, over the `T x (U+1)` alignment lattice:
//!
//! - [`rnnt_loss`]: the transducer loss `-log P(y | x)` with the log-softmax fused in and a
//!   hand-written backward pass;
//! - [`lattice_max_pool_loss`]: weakly supervised emotion pooling over the lattice nodes;
//! - [`rnnt_best_path`]: the most probable alignment (Viterbi), the nodes greedy decoding
//!   visits, for pooling over the alignment only.
//! - [`rnnt_loss_from_log_probs`] and [`rnnt_best_path_from_log_probs`]: the same on the
//!   blank and next-label log-probabilities of each node, for callers whose joint network
//!   computes the log-softmax itself and never stores the logits.
//!
//! Both take and return candle tensors and are differentiable with `backward()`. The same
//! computations work on plain slices in [`cpu`], for callers who manage their own memory.
//!
//! ```
//! use candle_core::{Device, Tensor};
//! use ent_lattice::{rnnt_loss, RnntLossConfig};
//!
//! # fn main() -> candle_core::Result<()> {
//! let dev = Device::Cpu;
//! // B = 1, T = 2 frames, U = 1 target token, V = 3 symbols (blank 0).
//! let logits = candle_core::Var::zeros((1, 2, 2, 3), candle_core::DType::F32, &dev)?;
//! let targets = Tensor::new(&[[1u32]], &dev)?;
//! let lens = Tensor::new(&[2u32], &dev)?;
//! let tlens = Tensor::new(&[1u32], &dev)?;
//! let loss = rnnt_loss(&logits, &targets, &lens, &tlens, &RnntLossConfig::default())?;
//! // Uniform logits: each of the 2 alignments has probability (1/3)^3.
//! let want = -(2.0f32 * (1.0f32 / 27.0)).ln();
//! assert!((loss.to_scalar::<f32>()? - want).abs() < 1e-5);
//! let grads = loss.backward()?;
//! assert_eq!(grads.get(&logits).unwrap().dims(), &[1, 2, 2, 3]);
//! # Ok(())
//! # }
//! ```
//!
//! [candle]: https://github.com/huggingface/candle

mod align;
mod config;
#[cfg(feature = "cuda")]
mod cuda;
mod elem;
#[cfg(feature = "emulate")]
pub mod emulated;
mod error;
mod gathered;
mod op;
mod pool;
mod problem;
mod rnnt;

pub use align::Alignment;
pub use config::{LatticePoolConfig, NeutralTerm, PoolMode, Reduction, RnntLossConfig};
pub use elem::Logit;
/// The type a loss's gradient is computed in (f32, f64): ent-kernels' float trait.
pub use ent_kernels::Float as Acc;
pub use error::LatticeError;
pub use gathered::{rnnt_best_path_from_log_probs, rnnt_loss_from_log_probs};
pub use op::{
    lattice_max_pool_loss, lattice_max_pool_loss_with_grad, rnnt_best_path, rnnt_loss,
    rnnt_loss_with_grad,
};
pub use problem::{Index, LatticeBatch, LatticeDims};

/// The losses on plain slices, without candle tensors.
pub mod cpu {
    pub use crate::align::rnnt_best_path_slice as rnnt_best_path;
    pub use crate::gathered::rnnt_loss_from_log_probs_slice as rnnt_loss_from_log_probs;
    pub use crate::pool::lattice_max_pool_loss_slice as lattice_max_pool_loss;
    pub use crate::rnnt::rnnt_loss_slice as rnnt_loss;
    pub use ent_kernels::math::exp_f32;
}
