//! What every ent crate shares and nothing else: [`rng::SplitMix64`], the seeded random
//! stream behind every seeded choice (dither, SpecAugment, initialisation, batching, joined
//! examples), [`fs::write_atomic`], the one way ent replaces a file (checkpoints, CMVN
//! statistics, reports, plots, subtitles, exported models), with [`fs::append`] for the lines of
//! a log, [`progress::Ticker`], the plain progress lines written to logs when stderr is not a
//! terminal, and [`par::ordered_map`], the one way ent runs work on several threads and keeps
//! its results in order. No dependencies.

pub mod fs;
pub mod par;
pub mod progress;
pub mod rng;
