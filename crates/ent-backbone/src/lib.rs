//! Frozen self-supervised speech backbones in candle: wav2vec2, HuBERT and WavLM, loaded from the
//! Hugging Face checkpoints users already have and matching transformers' hidden states.
//!
//! ```no_run
//! use candle_core::{Device, Tensor};
//! use ent_backbone::Backbone;
//!
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! // A folder with config.json and model.safetensors (or pytorch_model.bin).
//! let model = Backbone::load("wav2vec2-base".as_ref(), &Device::Cpu)?;
//! let waves = Tensor::zeros((2, 32_000), candle_core::DType::F32, &Device::Cpu)?; // [B, S], 16 kHz
//! let lengths = Tensor::new(&[32_000u32, 24_000], &Device::Cpu)?; // valid samples per utterance
//! let out = model.forward(&waves, &lengths)?;
//! assert_eq!(out.hidden_states.len(), 13); // input of layer 1, then 12 layer outputs: [B, T, 768]
//! assert_eq!(out.frame_lens, [99, 74]); // 50 frames per second
//! # Ok(()) }
//! ```
//!
//! - [`Backbone::load`] reads `config.json` (architecture from `model_type`) and
//!   `model.safetensors`, a shard index or `pytorch_model.bin`, with or without the
//!   `wav2vec2.` / `hubert.` / `wavlm.` key prefix.
//! - [`Backbone::forward`] runs a padded batch; no padding reaches a valid frame.
//! - With the `hub` feature, `Backbone::from_hub` resolves a model id through the Hugging Face
//!   cache (offline once cached).

pub mod config;
mod cpu;
mod error;
#[cfg(feature = "hub")]
mod hub;
mod model;
mod weights;

pub use config::{Activation, Architecture, BackboneConfig, FeatExtractNorm};
pub use error::BackboneError;
#[cfg(feature = "hub")]
pub use hub::HubOptions;
pub use model::{Backbone, BackboneOutput};

/// What the tests reach inside the crate (feature `testing`, which the crate's own tests turn
/// on): WavLM's relative-position buckets.
#[cfg(feature = "testing")]
pub mod testing {
    /// WavLM's bucket of the relative position `rel = key - query`.
    pub fn relative_position_bucket(rel: i64, num_buckets: usize, max_distance: usize) -> u32 {
        crate::model::layers::relative_position_bucket(rel, num_buckets, max_distance)
    }
}
