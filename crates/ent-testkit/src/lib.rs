//! Test helpers the ent crates share; a dev-dependency only, never published.
//!
//! - [`mutate`]: mutations of a file's bytes (truncation, overwritten bytes, spliced and
//!   overwritten runs, zeroed stretches, header edits) as proptest strategies, for the fuzz
//!   tests of the decoders (`ent-features`) and of the whole path from bytes to transcript
//!   (`ent-pipeline`).
//! - [`Rng`]: seeded draws for test cases.
//! - [`tensor`]: the largest difference of two tensors, exact bit patterns, the CUDA device
//!   a GPU test runs on (or a skip).
//! - [`wav`]: mono WAV files, float or 16-bit.

pub mod mutate;
pub mod rng;
pub mod tensor;
pub mod wav;

pub use rng::Rng;
pub use tensor::{
    TensorExt, assert_gradient, bits, central_differences, central_differences_of, cuda_or_skip,
    max_abs_diff, max_abs_diff_slices,
};
