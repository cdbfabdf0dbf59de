//! Errors of training.

use std::path::{Path, PathBuf};

/// What can stop training.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
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
    /// A configuration value is out of range or inconsistent with another.
    #[error("training config: {field} = {value}: {why}")]
    Config {
        /// The field (`augment.speed`, `data.valid_fraction`).
        field: &'static str,
        /// Its value.
        value: String,
        /// What it must be, or the field it contradicts.
        why: String,
    },
    /// The SpecAugment policy (`augment.specaug`) is out of range.
    #[error("training config: augment.specaug: {0}")]
    SpecAugment(ent_features::FeatureError),
    /// A set to train or validate on has no utterances.
    #[error("no {set} utterances")]
    NoUtterances {
        /// `training` or `validation`.
        set: &'static str,
    },
    /// An utterance longer than a batch can hold ([`crate::MAX_UTTERANCE_SECS`]).
    #[error(
        "{set} utterance {id} lasts {secs:.1} s{}, longer than the {max_secs} s a batch can hold: cut the recording into segments or leave the utterance out",
        at_speed(*speed, format!(" ({:.1} s at speed {speed})", secs / speed))
    )]
    TooLong {
        /// `training` or `validation`.
        set: &'static str,
        /// The utterance.
        id: String,
        /// Its duration at speed 1.
        secs: f64,
        /// The slowest speed it is played at.
        speed: f64,
        /// The limit.
        max_secs: f64,
    },
    /// An utterance whose lattice alone exceeds `max_batch_nodes`.
    #[error(
        "{set} utterance {id} ({secs:.2} s, {tokens} tokens) alone has a lattice of {nodes} nodes ({frames} frames x {} positions{}), more than max_batch_nodes {max}: raise max_batch_nodes or leave the utterance out",
        tokens + 1,
        at_speed(*speed, format!(", at speed {speed}"))
    )]
    LatticeTooLarge {
        /// `training` or `validation`.
        set: &'static str,
        /// The utterance.
        id: String,
        /// Its duration at speed 1.
        secs: f64,
        /// Its transcript's tokens.
        tokens: usize,
        /// Its lattice's nodes.
        nodes: u64,
        /// Its encoder frames (at the slowest speed).
        frames: usize,
        /// The slowest speed it is played at.
        speed: f64,
        /// `max_batch_nodes`.
        max: u64,
    },
    /// A training utterance given already joined to others when the trainer joins its own.
    #[error("training utterance {id} is already joined; pass utterances as prepared")]
    AlreadyJoined {
        /// The utterance.
        id: String,
    },
    /// A list for a batch has the wrong number of entries.
    #[error("{arg} has {got} entries for a batch of {batch}")]
    BatchSize {
        /// The argument.
        arg: &'static str,
        /// Its entries.
        got: usize,
        /// The batch size.
        batch: usize,
    },
    /// A tensor or buffer has the wrong shape.
    #[error("{arg} has shape {got:?}, expected {expected}")]
    Shape {
        /// The argument.
        arg: &'static str,
        /// Its shape.
        got: Vec<usize>,
        /// The shape it needs.
        expected: &'static str,
    },
    /// An example of a batch without audio.
    #[error("example {index} of the batch has no audio")]
    NoAudio {
        /// The example.
        index: usize,
    },
    /// The model reads a backbone's hidden states but no backbone was given.
    #[error("the model has a backbone front end: set `backbone` to a checkpoint folder")]
    NoBackbone,
    /// The backbone's hidden states do not fit the model.
    #[error(
        "the backbone in {dir} gives {states} hidden states of width {width}; the model config expects {expected_states} of width {expected_width}"
    )]
    BackboneMismatch {
        /// The backbone's folder.
        dir: PathBuf,
        /// Its hidden states.
        states: usize,
        /// Their width.
        width: usize,
        /// What the model mixes.
        expected_states: usize,
        /// Of this width.
        expected_width: usize,
    },
    /// Something for the other front end (filterbanks or a backbone).
    #[error("the front end reads {reads}, not {got}")]
    FrontEnd {
        /// What the front end reads.
        reads: &'static str,
        /// What it was given.
        got: String,
    },
    /// A lock whose holder panicked.
    #[error("the {what} lock was poisoned by a panic in another thread")]
    Poisoned {
        /// What the lock guards.
        what: &'static str,
    },
    /// A parameter the model should have and has not.
    #[error("the model has no parameter {name}")]
    MissingParameter {
        /// The parameter.
        name: &'static str,
    },
    /// The training configuration could not be written as JSON (into a checkpoint).
    #[error("cannot write the training config as JSON: {0}")]
    ConfigJson(serde_json::Error),
    /// More batches asked of a loader than it was given jobs for.
    #[error("asked for more batches than were scheduled")]
    Exhausted,
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

/// `text` when played slower than speed 1, else nothing.
fn at_speed(speed: f64, text: String) -> String {
    if speed < 1.0 { text } else { String::new() }
}

impl TrainError {
    /// A [`TrainError::Config`].
    pub(crate) fn config(
        field: &'static str,
        value: impl std::fmt::Display,
        why: impl Into<String>,
    ) -> Self {
        TrainError::Config {
            field,
            value: value.to_string(),
            why: why.into(),
        }
    }

    pub(crate) fn io(path: &Path, why: impl Into<String>) -> Self {
        TrainError::Io {
            path: path.to_path_buf(),
            why: why.into(),
        }
    }
}
