//! Integration tests of `ent-lattice` (one binary; modules by topic).

// Lattice loops read best with explicit (t, u) indices.
#![allow(clippy::needless_range_loop)]

mod align;
mod candle_api;
#[cfg(feature = "cuda")]
mod cuda;
#[cfg(feature = "emulate")]
mod emulated;
mod errors;
mod gathered;
#[cfg(any(feature = "emulate", feature = "cuda"))]
mod kernel_cases;
mod peer;
mod pool;
mod reference;
mod rnnt;
