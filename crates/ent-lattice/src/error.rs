//! Errors for bad input. Every message names the argument and the offending value.

/// What is wrong with the arguments of a lattice loss.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum LatticeError {
    /// A tensor or buffer has the wrong rank or shape.
    #[error("{arg} has shape {got:?}, expected {expected}")]
    Shape {
        arg: &'static str,
        got: Vec<usize>,
        expected: String,
    },
    /// The batch has no utterance.
    #[error("{arg} has batch size 0: the loss of an empty batch is undefined")]
    EmptyBatch { arg: &'static str },
    /// A length is larger than the dimension it indexes.
    #[error("{arg}[{index}] = {value} exceeds the {dim} dimension {max}")]
    LengthTooLarge {
        arg: &'static str,
        index: usize,
        value: i64,
        dim: &'static str,
        max: usize,
    },
    /// An utterance has no frame.
    #[error("{arg}[{index}] = 0: every utterance needs at least one frame")]
    ZeroLength { arg: &'static str, index: usize },
    /// A length, label or index is negative.
    #[error("{arg}[{index}] = {value} is negative")]
    Negative {
        arg: &'static str,
        index: String,
        value: i64,
    },
    /// A target label is outside the vocabulary.
    #[error("targets[{batch}, {position}] = {value} is not below the vocabulary size V = {vocab}")]
    LabelOutOfRange {
        batch: usize,
        position: usize,
        value: i64,
        vocab: usize,
    },
    /// A target label is the blank symbol.
    #[error(
        "targets[{batch}, {position}] = {value} is the blank index: targets must not contain blank"
    )]
    LabelIsBlank {
        batch: usize,
        position: usize,
        value: i64,
    },
    /// A class index (an utterance label, the neutral index or blank) is outside `0..classes`.
    #[error("{arg} = {value} is not below the number of classes {classes}")]
    ClassOutOfRange {
        arg: String,
        value: i64,
        classes: usize,
    },
    /// A configuration value is unusable.
    #[error("config field {field} = {value} is invalid: {reason}")]
    Config {
        field: &'static str,
        value: String,
        reason: &'static str,
    },
    /// A tensor has a dtype this operation does not accept.
    #[error("{arg} has dtype {dtype}, expected one of {expected}")]
    DType {
        arg: &'static str,
        dtype: String,
        expected: &'static str,
    },
    /// A size beyond what the CUDA kernels support.
    #[error(
        "{what} exceeds {max}, the largest the CUDA kernels support: compute this batch on the CPU or split it"
    )]
    KernelLimit { what: String, max: usize },
    /// A kernel launch failed (on a GPU, or in the emulated executor).
    #[error("CUDA kernel {kernel}: {reason}")]
    Launch { kernel: String, reason: String },
    /// Arguments live on different devices.
    #[error(
        "{arg} is on {device} but {reference} is on {expected}: move every argument to one device"
    )]
    DeviceMismatch {
        arg: &'static str,
        device: String,
        reference: &'static str,
        expected: String,
    },
    /// A CUDA tensor reached a build of ent-lattice without its `cuda` feature.
    #[error(
        "{arg} is a CUDA tensor but ent-lattice was built without its `cuda` feature: build with `--features ent-lattice/cuda` (the `cuda` feature of ent-cli enables it) or move the tensors to the CPU"
    )]
    CudaNotEnabled { arg: &'static str },
    /// A device the losses have no implementation for.
    #[error(
        "{arg} is on {device}, which ent-lattice has no kernels for: move the tensors to the CPU or a CUDA device"
    )]
    UnsupportedDevice { arg: &'static str, device: String },
    /// The tensor sizes multiply past the address space.
    #[error("{arg} dimensions {dims:?} overflow usize")]
    TooLarge { arg: &'static str, dims: Vec<usize> },
}

impl From<LatticeError> for candle_core::Error {
    fn from(e: LatticeError) -> Self {
        candle_core::Error::msg(e)
    }
}

impl From<ent_kernels::KernelError> for LatticeError {
    fn from(e: ent_kernels::KernelError) -> Self {
        use ent_kernels::KernelError as K;
        match e {
            K::Limit { what, max } => LatticeError::KernelLimit { what, max },
            K::Launch { kernel, reason } => LatticeError::Launch { kernel, reason },
            K::DType {
                arg,
                dtype,
                expected,
            } => LatticeError::DType {
                arg,
                dtype,
                expected,
            },
            K::Shape { arg, got, expected } => LatticeError::Shape { arg, got, expected },
            K::EmptyBatch { arg } => LatticeError::EmptyBatch { arg },
            K::LengthTooLarge {
                arg,
                index,
                value,
                dim,
                max,
            } => LatticeError::LengthTooLarge {
                arg,
                index,
                value,
                dim,
                max,
            },
            K::TooLarge { arg, dims } => LatticeError::TooLarge { arg, dims },
            other => LatticeError::Launch {
                kernel: String::new(),
                reason: other.to_string(),
            },
        }
    }
}
