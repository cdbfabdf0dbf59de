//! The kernels of ent and the CPU numerics its ops share.
//!
//! The CUDA sources live in the workspace's `kernels/` folder (`rnnt.cu`, `pool.cu`,
//! `lstm.cu`, with `emu/`, the host implementation of the CUDA built-ins they use):
//!
//! - [`plan`]: the launch plans, as data: for each operation its buffers and every launch
//!   (entry point, grid, block, shared bytes, argument order); the [`plan::Executor`] trait.
//! - [`cuda`] (feature `cuda`): the executor on candle's CUDA device, the PTX compiled by
//!   `build.rs` and embedded.
//! - [`emulated`] (feature `emulate`): the executor that runs the kernels' own source on the
//!   CPU, compiled as host C++ over emulated CUDA built-ins, for testing without a GPU.
//!
//! The CPU numerics:
//!
//! - [`Float`]: the one floating-point trait of the CPU ops (f32, f64).
//! - [`simd`]: the widest vector instruction set, chosen once ([`simd::level`], `ENT_NO_SIMD`),
//!   and [`simd_dispatch!`], which compiles a function for each.
//! - [`math`]: `exp` and `tanh` in f32 that vectorise.
//! - [`rows`]: maximum, `exp` sums and scaling over rows (the lattice losses' hot loops).
//! - [`gemm`]: the one matrix product.
//! - [`op`]: one way to write a custom op ([`op::CpuOp`], run as candle's custom ops by
//!   [`op::Op`]).

#[cfg(feature = "cuda")]
pub mod cuda;
#[cfg(feature = "emulate")]
pub mod emulated;
mod error;
pub mod float;
pub mod gemm;
pub mod math;
pub mod op;
pub mod plan;
pub mod rows;
pub mod simd;

pub use error::{KernelError, check_len};
pub use float::Float;
pub use plan::{KernelDType, LatticeDims};
