//! Test helpers the ent crates share; a dev-dependency only, never published.
//!
//! - [`mutate`]: mutations of a file's bytes (truncation, overwritten bytes, spliced and
//!   overwritten runs, zeroed stretches, header edits) as proptest strategies, for the fuzz
//!   tests of the decoders (`ent-features`) and of the whole path from bytes to transcript
//!   (`ent-pipeline`).
//! - [`Rng`]: seeded draws for test cases.

pub mod mutate;
pub mod rng;

pub use rng::Rng;
