//! The crate's error type.

use std::fmt;
use std::path::{Path, PathBuf};

/// Where the audio came from: a file, or samples handed over in memory.
///
/// Every error about audio content names its input, so a failure in a batch of ten thousand files
/// says which file it was.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Input(Option<PathBuf>);

impl Input {
    /// Audio read from `path`.
    pub fn file(path: impl Into<PathBuf>) -> Self {
        Self(Some(path.into()))
    }

    /// Audio given as bytes or samples in memory.
    pub fn memory() -> Self {
        Self(None)
    }

    /// The file, if the audio came from one.
    pub fn path(&self) -> Option<&Path> {
        self.0.as_deref()
    }
}

impl fmt::Display for Input {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.0 {
            Some(path) => write!(f, "{}", path.display()),
            None => f.write_str("<audio in memory>"),
        }
    }
}

/// Everything that can go wrong in `ent-features`.
///
/// Messages carry the values involved and, for audio, the input they concern.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum FeatureError {
    /// The file could not be opened or read.
    #[error("cannot read {}: {source}", path.display())]
    Io {
        /// The file.
        path: PathBuf,
        /// What the operating system said.
        #[source]
        source: std::io::Error,
    },
    /// The bytes are not in a format this crate decodes (WAV, FLAC, Ogg Vorbis, MP3).
    #[error("{input}: unsupported audio format: {detail}")]
    Unsupported {
        /// The input.
        input: Input,
        /// What the decoder saw.
        detail: String,
    },
    /// The stream ends before its header or a packet is complete.
    #[error("{input}: truncated audio: {detail}")]
    Truncated {
        /// The input.
        input: Input,
        /// Where it ended.
        detail: String,
    },
    /// The stream is malformed.
    #[error("{input}: corrupt audio: {detail}")]
    Corrupt {
        /// The input.
        input: Input,
        /// What the decoder saw.
        detail: String,
    },
    /// The input holds no samples (or the requested segment lies past its end).
    #[error("{input}: no audio samples{detail}")]
    Empty {
        /// The input.
        input: Input,
        /// Extra context, empty or starting with a separator.
        detail: String,
    },
    /// Too few samples for a single analysis frame.
    #[error("{input}: {samples} samples is shorter than one frame ({needed} samples needed)")]
    TooShort {
        /// The input.
        input: Input,
        /// Samples present.
        samples: usize,
        /// Samples the frame options need for one frame.
        needed: usize,
    },
    /// A sample is NaN or infinite.
    #[error("{input}: sample {index} is not finite ({value})")]
    NonFinite {
        /// The input.
        input: Input,
        /// Index of the first offending sample (after mixing down to mono).
        index: usize,
        /// Its value.
        value: f32,
    },
    /// A finite sample of a magnitude no audio has (beyond [`crate::MAX_SAMPLE`] in decoded
    /// audio, [`crate::MAX_INPUT`] at any scale): damage, such as random bytes in a float file.
    #[error("{input}: sample {index} is {value:e}, beyond +-{bound}: not audio")]
    OutOfRange {
        /// The input.
        input: Input,
        /// Index of the first offending sample (after mixing down to mono).
        index: usize,
        /// Its value.
        value: f32,
        /// The largest magnitude allowed there.
        bound: f32,
    },
    /// An option or argument is out of range.
    #[error("invalid {name}: {detail}")]
    Invalid {
        /// The option or argument.
        name: &'static str,
        /// Its value and the allowed range.
        detail: String,
    },
    /// Saved statistics (CMVN) could not be parsed or do not fit.
    #[error("{}: bad CMVN statistics: {detail}", path.display())]
    Stats {
        /// The statistics file.
        path: PathBuf,
        /// What is wrong with it.
        detail: String,
    },
    /// A tensor operation failed.
    #[error(transparent)]
    Candle(#[from] candle_core::Error),
}

/// The input of the errors raised on audio (`Some(&input)` or `Some(&mut input)`, as the
/// error is borrowed), `None` for the others.
macro_rules! audio_input {
    ($e:expr) => {
        match $e {
            FeatureError::Unsupported { input, .. }
            | FeatureError::Truncated { input, .. }
            | FeatureError::Corrupt { input, .. }
            | FeatureError::Empty { input, .. }
            | FeatureError::TooShort { input, .. }
            | FeatureError::NonFinite { input, .. }
            | FeatureError::OutOfRange { input, .. } => Some(input),
            _ => None,
        }
    };
}

impl FeatureError {
    /// Names `path` as the input of an error that was raised on samples in memory, so that
    /// `Fbank::compute` failures inside file-level functions say which file they concern.
    pub fn in_file(mut self, path: &Path) -> Self {
        if let Some(input) = audio_input!(&mut self).filter(|i| i.path().is_none()) {
            *input = Input::file(path);
        }
        self
    }

    /// The input an audio error concerns, if any.
    pub fn input(&self) -> Option<&Input> {
        audio_input!(self)
    }

    pub(crate) fn invalid(name: &'static str, detail: impl Into<String>) -> Self {
        FeatureError::Invalid {
            name,
            detail: detail.into(),
        }
    }
}

impl From<FeatureError> for candle_core::Error {
    fn from(e: FeatureError) -> Self {
        match e {
            FeatureError::Candle(inner) => inner,
            other => candle_core::Error::msg(other.to_string()),
        }
    }
}

/// The message of a caught panic (`"unknown"` when it is not a string).
pub(crate) fn panic_message(payload: &(dyn std::any::Any + Send)) -> String {
    payload
        .downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| payload.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "unknown".into())
}
