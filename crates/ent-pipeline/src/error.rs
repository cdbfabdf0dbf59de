//! Errors of the pipeline. A variant that adds context keeps the cause as its source, so that
//! `anyhow`'s `{:#}` prints "context: cause".

use std::path::PathBuf;

/// What can stop loading, decoding, scoring or reporting.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum PipelineError {
    /// A model file could not be loaded.
    #[error("cannot load the model {path}")]
    LoadModel {
        /// The checkpoint.
        path: PathBuf,
        /// Why.
        #[source]
        source: ent_train::TrainError,
    },
    /// The model's front end (filterbanks or backbone) could not be set up.
    #[error("cannot set up the model's front end (for a backbone model pass --backbone DIR)")]
    FrontEnd(#[source] ent_train::TrainError),
    /// Utterances too short for the encoder.
    #[error("too short to decode (under 0.1 s of audio): {0}")]
    TooShort(String),
    /// Decoding a batch failed.
    #[error("decoding {id}")]
    Decoding {
        /// The first utterance of the batch.
        id: String,
        /// Why.
        #[source]
        source: Box<PipelineError>,
    },
    /// A setting out of range.
    #[error("{name} = {value}: {why}")]
    Setting {
        /// The setting (`windowing.overlap`, `emotion threshold`).
        name: &'static str,
        /// Its value.
        value: String,
        /// What it must be.
        why: &'static str,
    },
    /// Damaged audio where the whole recording must decode (evaluation).
    #[error("{path}: {message}")]
    Damaged {
        /// The audio file.
        path: PathBuf,
        /// The first damage, with its times.
        message: String,
    },
    /// A bug: decoding panicked (the panic's message is printed above it too).
    #[error("internal error while decoding: {message}")]
    Panicked {
        /// The panic's message.
        message: String,
    },
    /// A file could not be written.
    #[error("cannot write {path}")]
    Write {
        /// The file or folder.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// Training, checkpoints, features or data preparation.
    #[error(transparent)]
    Train(#[from] ent_train::TrainError),
    /// Data preparation.
    #[error(transparent)]
    Prepare(#[from] ent_train::data::DataError),
    /// Features.
    #[error(transparent)]
    Features(#[from] ent_features::FeatureError),
    /// The model.
    #[error(transparent)]
    Model(#[from] ent_model::ModelError),
    /// The search.
    #[error(transparent)]
    Decode(#[from] ent_decode::DecodeError),
    /// The metrics.
    #[error(transparent)]
    Metric(#[from] ent_decode::metrics::MetricError),
    /// A plot.
    #[error(transparent)]
    Plot(#[from] crate::plot::PlotError),
    /// A tensor operation.
    #[error(transparent)]
    Candle(#[from] candle_core::Error),
    /// JSON output.
    #[error(transparent)]
    Json(#[from] serde_json::Error),
}

impl PipelineError {
    /// The error of an item of [`ent_common::par::ordered_map`]: its own, or its panic.
    pub(crate) fn from_item(e: ent_common::par::ItemError<PipelineError>) -> Self {
        match e {
            ent_common::par::ItemError::Failed(e) => e,
            ent_common::par::ItemError::Panicked(message) => PipelineError::Panicked { message },
        }
    }
}

/// The pipeline's result type.
pub type Result<T, E = PipelineError> = std::result::Result<T, E>;
