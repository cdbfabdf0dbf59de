//! What can go wrong planning or running a kernel. Every message names the value.

/// An error of a launch plan or an executor.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum KernelError {
    /// A size beyond what the CUDA kernels support.
    #[error(
        "{what} exceeds {max}, the largest the CUDA kernels support: compute this batch on the CPU or split it"
    )]
    Limit { what: String, max: usize },
    /// A kernel launch failed (on a GPU, or in the emulated executor).
    #[error("CUDA kernel {kernel}: {reason}")]
    Launch { kernel: String, reason: String },
    /// A buffer has a dtype the kernels do not take.
    #[error("{arg} has dtype {dtype}, expected one of {expected}")]
    DType {
        arg: &'static str,
        dtype: String,
        expected: &'static str,
    },
    /// A buffer has the wrong number of elements.
    #[error("{arg} has shape {got:?}, expected {expected}")]
    Shape {
        arg: &'static str,
        got: Vec<usize>,
        expected: String,
    },
    /// A batch of no utterance.
    #[error("{arg} has batch size 0: the loss of an empty batch is undefined")]
    EmptyBatch { arg: &'static str },
    /// A length larger than the dimension it indexes.
    #[error("{arg}[{index}] = {value} exceeds the {dim} dimension {max}")]
    LengthTooLarge {
        arg: &'static str,
        index: usize,
        value: i64,
        dim: &'static str,
        max: usize,
    },
    /// Sizes that multiply past the address space.
    #[error("{arg} dimensions {dims:?} overflow usize")]
    TooLarge { arg: &'static str, dims: Vec<usize> },
}

impl From<KernelError> for candle_core::Error {
    fn from(e: KernelError) -> Self {
        candle_core::Error::msg(e)
    }
}

/// An error unless `len` is `expected`.
pub fn check_len(arg: &'static str, len: usize, expected: usize) -> Result<(), KernelError> {
    if len != expected {
        return Err(KernelError::Shape {
            arg,
            got: vec![len],
            expected: format!("[{expected}]"),
        });
    }
    Ok(())
}
