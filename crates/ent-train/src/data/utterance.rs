//! One utterance as a manifest describes it.

use std::path::PathBuf;

use ent_features::Segment;
use serde::{Deserialize, Serialize};

/// A labelled stretch of an utterance (ZED's emotion intervals), in seconds from the start of
/// the utterance.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EmotionInterval {
    /// The label as written.
    pub emotion: String,
    /// Start in seconds (`>= 0`).
    pub start: f64,
    /// End in seconds (`> start`).
    pub end: f64,
}

/// Where one sentence of a recording of several is said, in seconds from the start of the
/// utterance, with its words (raw as written, or normalised once prepared). A recording's
/// sentences, joined by spaces in order, are its transcript.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SentenceSpan {
    /// Start in seconds (`>= 0`).
    pub start: f64,
    /// End in seconds (`> start`).
    pub end: f64,
    /// The sentence's words.
    pub text: String,
}

/// An utterance as read from a manifest: everything raw, as written there, except that audio
/// paths are resolved (relative paths against the manifest's folder).
///
/// [`crate::data::prepare`] checks and converts these into training examples.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Utterance {
    /// Unique id.
    pub id: String,
    /// The audio file (any format `ent_features::load` reads).
    pub audio: PathBuf,
    /// The part of the file that is this utterance: [`Segment::WHOLE`] unless the format gives
    /// an offset and a duration (Kaldi `segments`, Lhotse cuts).
    #[serde(with = "segment_serde")]
    pub segment: Segment,
    /// Length in seconds, if the manifest states it.
    pub duration: Option<f64>,
    /// The transcript, raw (see [`crate::data::normalize_text`]).
    pub text: Option<String>,
    /// The utterance-level emotion label as written (`"exc"`, `"Angry"`, ...).
    pub emotion: Option<String>,
    /// Emotion intervals inside the utterance (ZED); empty for the other formats.
    pub intervals: Vec<EmotionInterval>,
    /// Where each of its sentences is said (ZED's optional `sentences`), for scoring token
    /// times; usually empty.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub sentences: Vec<SentenceSpan>,
    /// Speaker id.
    pub speaker: Option<String>,
    /// Speaker gender as written (`"F"`, `"m"`, `"female"`, ...).
    pub gender: Option<String>,
    /// Emotion intensity (IEMOCAP: the arousal rating, 1 to 5).
    pub intensity: Option<f32>,
    /// Recording session (IEMOCAP: 1 to 5).
    pub session: Option<u32>,
}

impl Utterance {
    /// An utterance of the whole file `audio`, with nothing else known.
    pub fn new(id: impl Into<String>, audio: impl Into<PathBuf>) -> Self {
        Utterance {
            id: id.into(),
            audio: audio.into(),
            segment: Segment::WHOLE,
            duration: None,
            text: None,
            emotion: None,
            intervals: Vec::new(),
            sentences: Vec::new(),
            speaker: None,
            gender: None,
            intensity: None,
            session: None,
        }
    }
}

/// `Segment` as `{"offset": s, "duration": s | null}` (ent-features does not depend on serde's
/// derive for it).
pub(crate) mod segment_serde {
    use ent_features::Segment;
    use serde::{Deserialize, Deserializer, Serialize, Serializer};

    #[derive(Serialize, Deserialize)]
    struct Repr {
        offset: f64,
        duration: Option<f64>,
    }

    pub(crate) fn serialize<S: Serializer>(s: &Segment, ser: S) -> Result<S::Ok, S::Error> {
        Repr {
            offset: s.offset,
            duration: s.duration,
        }
        .serialize(ser)
    }

    pub(crate) fn deserialize<'de, D: Deserializer<'de>>(de: D) -> Result<Segment, D::Error> {
        let r = Repr::deserialize(de)?;
        Ok(Segment {
            offset: r.offset,
            duration: r.duration,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn serde_round_trip() {
        let mut u = Utterance::new("a", "/x/a.wav");
        u.segment = Segment::new(1.5, 2.0);
        u.intervals.push(EmotionInterval {
            emotion: "sad".into(),
            start: 0.5,
            end: 1.0,
        });
        let json = serde_json::to_string(&u).expect("serialises");
        let back: Utterance = serde_json::from_str(&json).expect("parses");
        assert_eq!(back, u);
    }
}
