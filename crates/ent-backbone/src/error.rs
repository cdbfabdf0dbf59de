//! The crate's error type.

use std::path::PathBuf;

/// Everything that can go wrong in `ent-backbone`.
///
/// Messages name the file, tensor or repository concerned and the values involved.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum BackboneError {
    /// A file could not be opened or read.
    #[error("cannot read {}: {source}", path.display())]
    Io {
        /// The file.
        path: PathBuf,
        /// What the operating system said.
        #[source]
        source: std::io::Error,
    },
    /// The checkpoint folder lacks a file this crate needs.
    #[error("{}: no {what} (looked for {})", dir.display(), tried.join(", "))]
    MissingFile {
        /// The checkpoint folder.
        dir: PathBuf,
        /// What was looked for ("configuration", "weights").
        what: &'static str,
        /// The file names tried, in order.
        tried: Vec<String>,
    },
    /// `config.json` (or `preprocessor_config.json`) is malformed or inconsistent.
    #[error("{}: {detail}", path.display())]
    Config {
        /// The configuration file.
        path: PathBuf,
        /// What is wrong with it.
        detail: String,
    },
    /// The configuration asks for something this crate does not implement.
    #[error("{}: unsupported configuration: {detail}", path.display())]
    Unsupported {
        /// The configuration file.
        path: PathBuf,
        /// The unsupported setting.
        detail: String,
    },
    /// The weights file is not a readable safetensors or PyTorch checkpoint.
    #[error("{}: {detail}", path.display())]
    Weights {
        /// The weights file.
        path: PathBuf,
        /// What went wrong.
        detail: String,
    },
    /// A tensor the architecture needs is not in the weights file.
    #[error("{}: missing tensor `{name}`{hint}", path.display())]
    MissingTensor {
        /// The weights file.
        path: PathBuf,
        /// The tensor's name, with the key prefix the file uses.
        name: String,
        /// Extra context, such as the names that were also tried.
        hint: String,
    },
    /// A tensor has a shape other than the configuration implies.
    #[error("{}: tensor `{name}` has shape {found:?}, the configuration implies {expected:?}", path.display())]
    Shape {
        /// The weights file.
        path: PathBuf,
        /// The tensor's name.
        name: String,
        /// The shape the configuration implies.
        expected: Vec<usize>,
        /// The shape in the file.
        found: Vec<usize>,
    },
    /// `forward` was given inputs it cannot run on.
    #[error("invalid input: {0}")]
    Input(String),
    /// Loading through the Hugging Face cache failed.
    #[error("{repo}: {detail}")]
    Hub {
        /// The model id.
        repo: String,
        /// What went wrong, naming the file.
        detail: String,
    },
    /// A tensor operation failed.
    #[error(transparent)]
    Candle(#[from] candle_core::Error),
}
