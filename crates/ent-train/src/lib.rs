//! Training for ENT and FENT (docs/method.md §3–4, §7–8).
//!
//! - [`data`]: manifests (SpeechBrain JSON, Kaldi/ESPnet folders, Lhotse, IEMOCAP, ZED), the
//!   character vocabulary, emotion labels, checks for bad data, bucketed batches;
//! - [`features`]: audio to filterbanks or to frozen backbone hidden states;
//! - a background thread that prepares the host's share of the coming batches;
//! - [`optim`]: AdamW with parameter groups, the cosine schedule, clipping, accumulation;
//! - [`checkpoint`]: one-file checkpoints written atomically;
//! - [`Trainer`]: the loop, validation and best-checkpoint selection, the JSONL metrics log and
//!   exact resumption; it reports each step ([`StepStats`]) and epoch ([`EpochSummary`]) to a
//!   [`TrainObserver`] (the progress bars are `ent-pipeline`'s);
//! - [`load_splits`]: the training, validation and test splits a [`TrainConfig`] names.

pub mod checkpoint;
mod config;
pub mod data;
mod error;
pub mod features;
mod loader;
mod observe;
pub mod optim;
mod splits;
mod trainer;

pub use checkpoint::{Checkpoint, CheckpointMeta, TrainState};
pub use config::{
    AugmentConfig, BackboneDType, DataConfig, GAIN_RANGE_DB, SPEED_RANGE, SelectMetric, Selection,
    TrainConfig,
};
pub use error::TrainError;
pub use observe::{EpochStart, EpochSummary, StepStats, TrainObserver};
pub use splits::{Splits, load_splits};
pub use trainer::{BEST, EvalScores, LAST, MAX_UTTERANCE_SECS, METRICS, Summary, Trainer};
