//! ENT as a library, from audio to results.
//!
//! - [`Engine`]: a trained model (a checkpoint file, or the bundled demo model) with its
//!   feature extraction and search: audio in, [`Transcript`]s out (text, utterance emotion,
//!   each character with its time and emotion, emotion segments).
//! - [`Engine::transcribe_files`]: many recordings at once, results in input order, a failed
//!   file reported as its own (the `transcribe` and `diarize` commands).
//! - [`evaluate`]: decode a prepared manifest and score it ([`Report`]: WA, UA, macro-F1 and
//!   the confusion matrix, WER and CER, EDER where the data has emotion intervals);
//!   [`save_report`] writes it with its SVG plots ([`plot`]).
//! - [`train_and_score`]: train, select the best epoch, score the test split.
//!
//! The `ent` command is a thin layer over this crate.
//!
//! ```
//! use candle_core::Device;
//! use ent_decode::Search;
//! use ent_pipeline::Engine;
//!
//! # fn main() -> Result<(), ent_pipeline::PipelineError> {
//! // The demo model knows only the synthetic voices of the bundled corpus.
//! let engine = Engine::demo(&Device::Cpu, Search::default())?;
//! let audio = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
//!     .join("../../data/demo/audio/en-gb-x-gbcwmd-m8_ang_s01.flac");
//! let t = engine.transcribe(&audio)?;
//! println!("{} ({})", t.text, t.emotion.label); // what was said, and how
//! assert!(!t.text.is_empty());
//! assert!(engine.labels().contains(&t.emotion.label));
//! // One segment per run of equal frame emotions, covering the whole file.
//! assert_eq!(t.segments[0].start, 0.0);
//! assert!(t.segments.last().unwrap().end > 1.1);
//! # Ok(())
//! # }
//! ```

mod engine;
mod error;
mod evaluate;
mod files;
pub mod formats;
pub mod longform;
pub mod plot;
mod progress;
mod report;
mod run;

pub use engine::{
    DEMO_MODEL_NAME, DamageOut, Engine, SegmentOut, Stretches, TokenOut, Transcript,
    UtteranceEmotion, WindowOut, round_ms,
};
pub use error::{PipelineError, Result};
pub use evaluate::{EvalOptions, Report, Scored, evaluate};
pub use files::{FilesOptions, FilesSummary, is_failure};
pub use longform::{FileDecoding, Windowing};
pub use progress::{LOG_EVERY, Progress, TrainProgress};
pub use report::{safe_name, save_report, write_plots, write_timeline};
pub use run::{TestScores, TrainOptions, TrainedRun, train_and_score};
