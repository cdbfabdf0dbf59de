//! Errors of training.

use std::path::{Path, PathBuf};

/// What can stop training.
#[derive(Debug, thiserror::Error)]
pub enum TrainError {
    /// Reading or writing a file failed.
    #[error("{path}: {why}")]
    Io {
        /// The file or folder.
        path: PathBuf,
        /// What went wrong.
        why: String,
    },
    /// The data cannot be trained on as configured.
    #[error(transparent)]
    Data(#[from] crate::data::DataError),
    /// The configuration is inconsistent.
    #[error("training config: {0}")]
    Config(String),
    /// The model rejected its input or configuration.
    #[error(transparent)]
    Model(#[from] ent_model::ModelError),
    /// Audio could not be turned into features.
    #[error(transparent)]
    Features(#[from] ent_features::FeatureError),
    /// The backbone failed.
    #[error(transparent)]
    Backbone(#[from] ent_backbone::BackboneError),
    /// The loss of a batch is NaN or infinite: training stops rather than corrupt the weights.
    #[error(
        "non-finite loss at step {step} (epoch {epoch}) in utterance(s) {ids}; the last good checkpoint is {last_good}"
    )]
    NonFiniteLoss {
        /// The optimiser step that was about to be taken.
        step: u64,
        /// The epoch.
        epoch: u64,
        /// The utterances whose loss is not finite, comma-separated.
        ids: String,
        /// The newest checkpoint on disk, or a note that none was written yet.
        last_good: String,
    },
    /// A tensor operation failed.
    #[error(transparent)]
    Candle(#[from] candle_core::Error),
    /// Scoring a validation set failed.
    #[error(transparent)]
    Metric(#[from] ent_decode::metrics::MetricError),
}

impl TrainError {
    pub(crate) fn io(path: &Path, why: impl Into<String>) -> Self {
        TrainError::Io {
            path: path.to_path_buf(),
            why: why.into(),
        }
    }
}
