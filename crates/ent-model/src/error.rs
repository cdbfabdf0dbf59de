//! Errors of model construction and use.

/// What can go wrong building or running a model.
#[derive(Debug, thiserror::Error)]
pub enum ModelError {
    /// A configuration value is out of range.
    #[error("model config: {field}: {why}")]
    Config {
        /// The offending field.
        field: &'static str,
        /// Why it is wrong, with the value.
        why: String,
    },
    /// An input does not fit the model.
    #[error("model input: {0}")]
    Input(String),
    /// A tensor operation failed.
    #[error(transparent)]
    Candle(#[from] candle_core::Error),
}

impl From<ModelError> for candle_core::Error {
    fn from(e: ModelError) -> Self {
        match e {
            ModelError::Candle(c) => c,
            other => candle_core::Error::Msg(other.to_string()),
        }
    }
}
