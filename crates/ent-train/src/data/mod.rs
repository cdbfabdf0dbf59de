//! Datasets: manifests, vocabulary, emotion labels, audio checks and bucketed batches.
//!
//! The path from the files users bring to batches of indices:
//!
//! 1. [`load_manifest`] reads one of the formats of spec §7 into [`Utterance`]s, raw as written:
//!    SpeechBrain JSON ([`read_speechbrain`]), Kaldi/ESPnet data directories ([`read_kaldi`]),
//!    Lhotse cut manifests ([`read_lhotse`]), the IEMOCAP release ([`read_iemocap`], with
//!    [`iemocap_folds`] for leave-one-session-out) and ZED ([`read_zed`]).
//! 2. [`prepare`] checks every utterance before training and turns it into a [`PreparedUtt`]:
//!    transcript normalised ([`normalize_text`]) and encoded with the character [`Vocab`]
//!    (V = 31), label mapped by an [`EmotionMap`] (K = 4 by default), audio probed from the
//!    header. Nothing is dropped silently: problems are errors listing every utterance concerned,
//!    or, where a [`BadDataPolicy`] flag allows skipping, counted in the [`DataReport`].
//! 3. Optionally, [`joined_examples`] adds longer examples joined from one speaker's
//!    utterances (neutral, any, neutral), labelled with the middle one's emotion.
//! 4. [`bucketed_batches`] groups utterances of similar length into batches, reshuffled per
//!    epoch from a seed.
//!
//! ```no_run
//! use ent_train::data::{BadDataPolicy, EmotionMap, Vocab};
//! use ent_train::data::{bucketed_batches, load_manifest, prepare};
//! # fn main() -> Result<(), ent_train::data::DataError> {
//! let utts = load_manifest("data/train.json".as_ref(), None, None)?;
//! let policy = BadDataPolicy::training(); // drops utterances of 18.75 s or more
//! let data = prepare(&utts, &Vocab::characters(), &EmotionMap::default(), &policy)?;
//! println!("{}", data.report);
//! let lengths: Vec<f64> = data.utterances.iter().map(|u| u.duration).collect();
//! let batches = bucketed_batches(&lengths, 2, None, 42, 0, true);
//! # let _ = batches;
//! # Ok(()) }
//! ```

mod batch;
mod emotion;
mod error;
mod join;
mod manifest;
mod prepare;
mod text;
mod utterance;

pub use batch::{NodeBudget, bucketed_batches, budgeted_batches};
pub use emotion::EmotionMap;
pub use error::{BadAudio, DataError};
pub use join::{JoinConfig, JoinPattern, Piece, joined_examples};
pub use manifest::{
    ManifestFormat, iemocap_folds, load_manifest, read_iemocap, read_kaldi, read_lhotse,
    read_speechbrain, read_zed,
};
pub use prepare::{
    BadDataPolicy, DataReport, EmotionSpan, MAX_OVERSHOOT_SECS, MIN_DURATION, Prepared,
    PreparedUtt, SILENT_PEAK, prepare,
};
pub use text::{UNK_CHAR, Vocab, normalize_text};
pub use utterance::{EmotionInterval, SentenceSpan, Utterance};
