//! The kernels of ent and the CPU numerics its ops share.
//!
//! - [`Float`]: the one floating-point trait of the CPU ops (f32, f64).
//! - [`simd`]: the widest vector instruction set, chosen once ([`simd::level`], `ENT_NO_SIMD`),
//!   and [`simd_dispatch!`], which compiles a function for each.
//! - [`math`]: `exp` and `tanh` in f32 that vectorise.
//! - [`rows`]: maximum, `exp` sums and scaling over rows (the lattice losses' hot loops).
//! - [`gemm`]: the one matrix product.

pub mod float;
pub mod gemm;
pub mod math;
pub mod rows;
pub mod simd;

pub use float::Float;
