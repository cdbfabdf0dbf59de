//! What every ent crate shares and nothing else: [`rng::SplitMix64`], the seeded random
//! stream behind every seeded choice (dither, SpecAugment, initialisation, batching, joined
//! examples), and [`fs::write_atomic`], the one way ent replaces a file (checkpoints, CMVN
//! statistics, reports, plots), and [`progress::Ticker`], the plain progress lines written to
//! logs when stderr is not a terminal. No dependencies.

pub mod fs;
pub mod progress;
pub mod rng;
