//! Errors of model construction and use. Every message names the argument and its value.

/// What can go wrong building or running a model.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ModelError {
    /// A configuration value is out of range.
    #[error("model config: {field}: {why}")]
    Config {
        /// The offending field.
        field: &'static str,
        /// Why it is wrong, with the value.
        why: String,
    },
    /// A list or tensor has the wrong number of utterances for the batch.
    #[error("{arg} has {got} entries for a batch of {batch}")]
    BatchSize {
        /// The argument.
        arg: &'static str,
        /// Its entries.
        got: usize,
        /// The batch size.
        batch: usize,
    },
    /// A tensor has the wrong shape.
    #[error("{arg} has shape {got:?}, expected {expected}")]
    Shape {
        /// The argument.
        arg: &'static str,
        /// Its shape.
        got: Vec<usize>,
        /// The shape it needs.
        expected: String,
    },
    /// A length exceeds the padded dimension it indexes.
    #[error("{arg}[{index}] = {value} exceeds the padded length {max}")]
    LengthTooLarge {
        /// The lengths.
        arg: &'static str,
        /// The utterance.
        index: usize,
        /// Its length.
        value: usize,
        /// The padded length.
        max: usize,
    },
    /// An utterance without frames.
    #[error("{arg}[{index}] = 0: every utterance needs at least one frame")]
    ZeroLength {
        /// The lengths.
        arg: &'static str,
        /// The utterance.
        index: usize,
    },
    /// An utterance too short for the front end's subsampling.
    #[error(
        "utterance {index} has {frames} filterbank frames; the front end's subsampling needs at least {min}"
    )]
    TooShort {
        /// The utterance.
        index: usize,
        /// Its filterbank frames.
        frames: usize,
        /// The fewest that give one encoder frame.
        min: usize,
    },
    /// A class index (an emotion label, a frame's label, the neutral class) outside the classes.
    #[error("{arg} = {value} is not below the {classes} classes")]
    ClassOutOfRange {
        /// The argument and, where there is one, its index (`emotions[3]`).
        arg: String,
        /// The value.
        value: usize,
        /// The number of classes.
        classes: usize,
    },
    /// Features of the other front end.
    #[error("this model reads {expected}, not {got}")]
    Features {
        /// What the model reads.
        expected: &'static str,
        /// What it was given.
        got: &'static str,
    },
    /// A transcript the lattice losses refuse (a label beyond the vocabulary, the blank).
    /// (Boxed: the error stays small enough to pass around by value.)
    #[error(transparent)]
    Lattice(Box<ent_lattice::LatticeError>),
    /// The loss was given other targets than the forward pass gathered its label
    /// log-probabilities for.
    #[error(
        "the targets of utterance {index} differ from the transcript the forward pass gathered its label log-probabilities for"
    )]
    TargetsChanged {
        /// The first utterance that differs.
        index: usize,
    },
    /// A tensor operation failed.
    #[error(transparent)]
    Candle(#[from] candle_core::Error),
}

impl From<ent_lattice::LatticeError> for ModelError {
    fn from(e: ent_lattice::LatticeError) -> Self {
        ModelError::Lattice(Box::new(e))
    }
}

impl From<ModelError> for candle_core::Error {
    fn from(e: ModelError) -> Self {
        match e {
            ModelError::Candle(c) => c,
            other => candle_core::Error::Msg(other.to_string()),
        }
    }
}

/// Checks a batch's lengths against the padded length `max`: one per utterance, none beyond
/// `max`, and (unless `zero_ok`) none zero.
pub(crate) fn check_lens(
    arg: &'static str,
    lens: &[usize],
    batch: usize,
    max: usize,
    zero_ok: bool,
) -> Result<(), ModelError> {
    if lens.len() != batch {
        return Err(ModelError::BatchSize {
            arg,
            got: lens.len(),
            batch,
        });
    }
    if let Some((index, &value)) = lens.iter().enumerate().find(|&(_, &l)| l > max) {
        return Err(ModelError::LengthTooLarge {
            arg,
            index,
            value,
            max,
        });
    }
    if !zero_ok && let Some(index) = lens.iter().position(|&l| l == 0) {
        return Err(ModelError::ZeroLength { arg, index });
    }
    Ok(())
}

/// An error unless a list for the batch has `batch` entries.
pub(crate) fn check_batch(arg: &'static str, got: usize, batch: usize) -> Result<(), ModelError> {
    if got != batch {
        return Err(ModelError::BatchSize { arg, got, batch });
    }
    Ok(())
}

/// The first class of `values` not below `classes`, as an error naming `arg[index]`.
pub(crate) fn check_classes(
    arg: &str,
    values: impl IntoIterator<Item = usize>,
    classes: usize,
) -> Result<(), ModelError> {
    match values.into_iter().enumerate().find(|&(_, v)| v >= classes) {
        None => Ok(()),
        Some((i, value)) => Err(ModelError::ClassOutOfRange {
            arg: format!("{arg}[{i}]"),
            value,
            classes,
        }),
    }
}
