//! The audio front end of ent: decoding, resampling, Kaldi-exact log-mel filterbanks,
//! SpecAugment and global CMVN.
//!
//! ```no_run
//! use ent_features::{load_resampled, load_segment, Fbank, FbankOptions, Segment};
//! use ent_features::{CmvnStats, GlobalCmvn, SpecAugment, SpecAugmentConfig};
//!
//! # fn main() -> Result<(), ent_features::FeatureError> {
//! let audio = load_resampled("utt.flac", 16_000)?; // mono f32 in [-1, 1]
//! let part = load_segment("session.wav", Segment::new(12.5, 3.0))?; // 3 s from 12.5 s
//! let fbank = Fbank::new(FbankOptions::default())?; // Kaldi defaults, 80 bins, no dither
//! let feats = fbank.compute(&audio.samples)?; // [frames, 80] f32
//!
//! let mut stats = CmvnStats::new(80); // global CMVN over a training set
//! stats.accumulate(&feats)?;
//! stats.save("cmvn.json")?; // atomic; CmvnStats::load reads it back
//! let feats = GlobalCmvn::from_stats(&stats, true)?.apply(&feats)?;
//! let feats = SpecAugment::new(SpecAugmentConfig::default())?.apply(&feats, 42)?; // seeded
//! # let _ = (part, feats);
//! # Ok(()) }
//! ```
//!
//! - [`audio`]: WAV (hound), FLAC, Ogg Vorbis and MP3 (symphonia) to mono f32; segments;
//!   header probes ([`probe`]); parallel batches.
//! - [`sample`]: the bounds beyond which a value is damage, not audio ([`MAX_SAMPLE`]).
//! - [`resample`]: band-limited sample-rate conversion (rubato), quality settings documented there.
//! - [`fbank`]: [`Fbank`], matching `kaldi-native-fbank` within 1e-3 (see its module docs for the
//!   sample scale).
//! - [`specaug`]: seeded, deterministic SpecAugment.
//! - [`cmvn`]: dataset statistics, saved and loaded, and their normalisation.
//!
//! This crate depends on `candle-core` for its output tensors, not on `candle-nn`.

pub mod audio;
pub mod cmvn;
mod error;
pub mod fbank;
pub mod resample;
pub mod sample;
/// The seeded random stream (from `ent-common`, re-exported where it has always been).
pub use ent_common::rng;
pub mod specaug;

pub use audio::{
    Audio, AudioInfo, AudioStream, Damage, Segment, clock, decode, decode_segment, fbank_batch,
    load, load_batch, load_resampled, load_segment, probe,
};
pub use cmvn::{CmvnStats, GlobalCmvn};
pub use error::{FeatureError, Input};
pub use fbank::{Fbank, FbankOptions, WindowType};
pub use resample::resample;
pub use sample::{MAX_INPUT, MAX_SAMPLE};
pub use specaug::{MaskValue, SpecAugment, SpecAugmentConfig};
