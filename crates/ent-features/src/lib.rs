//! The audio front end of ent: decoding, resampling, Kaldi-exact log-mel filterbanks,
//! SpecAugment and global CMVN.
//!
//! ```no_run
//! use ent_features::{Fbank, FbankOptions, load_resampled};
//!
//! # fn main() -> Result<(), ent_features::FeatureError> {
//! let audio = load_resampled("speech.flac", 16_000)?; // mono f32 in [-1, 1]
//! let fbank = Fbank::new(FbankOptions::default())?; // Kaldi defaults, 80 bins, no dither
//! let feats = fbank.compute(&audio.samples)?; // [frames, 80] f32
//! # Ok(()) }
//! ```
//!
//! - [`audio`]: WAV (hound), FLAC, Ogg Vorbis and MP3 (symphonia) to mono f32; segments;
//!   parallel batches.
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
pub mod rng;
pub mod specaug;

pub use audio::{
    Audio, Segment, decode, decode_segment, fbank_batch, load, load_batch, load_resampled,
    load_segment,
};
pub use cmvn::{CmvnStats, GlobalCmvn};
pub use error::{FeatureError, Input};
pub use fbank::{Fbank, FbankOptions, WindowType};
pub use resample::resample;
pub use specaug::{MaskValue, SpecAugment, SpecAugmentConfig};
