//! A loaded model with its feature extraction and search: audio in, decoded utterances out.

use std::path::{Path, PathBuf};

use candle_core::Device;
use ent_decode::{Decoded, Search};
use ent_features::Segment;
use ent_model::{Features, Mode, Model};
use ent_train::features::FeatureSource;
use ent_train::{Checkpoint, CheckpointMeta};
use serde::Serialize;

use crate::error::{PipelineError, Result};

/// The demo model trained by `ent demo` on the bundled synthetic corpus, built into the binary.
const DEMO_MODEL: &[u8] = include_bytes!("../assets/demo-model.safetensors");
const DEMO_MODEL_PATH: &str = "<bundled demo model>";

/// Where the model comes from, for messages.
pub const DEMO_MODEL_NAME: &str = "the bundled demo model (synthetic speech only)";

/// Model, features and search, ready to decode.
#[derive(Debug)]
pub struct Engine {
    /// The network.
    pub model: Model,
    /// Vocabulary, emotion classes and the configuration the weights were trained with.
    pub meta: CheckpointMeta,
    source: FeatureSource,
    dev: Device,
    search: Search,
}

/// One decoded utterance as the commands print it.
#[derive(Debug, Clone, Serialize)]
pub struct Transcript {
    /// Utterance id or file name.
    pub id: String,
    /// Transcript.
    pub text: String,
    /// Utterance emotion: label and class probabilities.
    pub emotion: UtteranceEmotion,
    /// Each emitted character with its time and emotion.
    pub tokens: Vec<TokenOut>,
    /// Emotion segments over the utterance.
    pub segments: Vec<SegmentOut>,
    /// Seconds per encoder frame.
    pub frame_shift: f64,
    /// Natural-log probability of the hypothesis.
    pub score: f64,
}

/// Utterance emotion.
#[derive(Debug, Clone, Serialize)]
pub struct UtteranceEmotion {
    /// The most probable class.
    pub label: String,
    /// Probability per class, in class order.
    pub probs: Vec<(String, f32)>,
}

/// One emitted character.
#[derive(Debug, Clone, Serialize)]
pub struct TokenOut {
    /// The character (`" "` for a word boundary).
    pub token: String,
    /// Emission time in seconds.
    pub start: f64,
    /// Emotion of the emitting frame.
    pub emotion: String,
}

/// One emotion segment.
#[derive(Debug, Clone, Serialize)]
pub struct SegmentOut {
    /// Start in seconds.
    pub start: f64,
    /// End in seconds.
    pub end: f64,
    /// Emotion label.
    pub emotion: String,
}

impl Engine {
    /// Loads `model` (the bundled demo model when `None`); a backbone model reads its backbone
    /// from `backbone`, else from the folder recorded in the checkpoint's notes.
    pub fn load(
        model: Option<&Path>,
        backbone: Option<&Path>,
        dev: &Device,
        search: Search,
    ) -> Result<Self> {
        let name = model.map_or(PathBuf::from(DEMO_MODEL_PATH), Path::to_path_buf);
        let ck = match model {
            Some(p) => Checkpoint::load(p, dev),
            None => Checkpoint::from_bytes(DEMO_MODEL, &name, dev),
        }
        .map_err(|source| PipelineError::LoadModel {
            path: name.clone(),
            source,
        })?;
        let net = ck.build_model(&name, dev)?;
        let recorded = ck.meta.notes.get("backbone").map(PathBuf::from);
        let backbone = backbone.map(Path::to_path_buf).or(recorded);
        let source = FeatureSource::new(&ck.meta.model, backbone.as_deref(), false, dev)
            .map_err(PipelineError::FrontEnd)?;
        search.validate()?;
        Ok(Self {
            model: net,
            meta: ck.meta,
            source,
            dev: dev.clone(),
            search,
        })
    }

    /// The demo model trained by `ent demo` on the bundled synthetic corpus (it knows only
    /// those synthetic voices), built into the library.
    pub fn demo(dev: &Device, search: Search) -> Result<Self> {
        Self::load(None, None, dev, search)
    }

    /// Decodes one whole audio file (WAV, FLAC, MP3, Ogg Vorbis; any sample rate).
    pub fn transcribe(&self, path: &Path) -> Result<Transcript> {
        let id = path.to_string_lossy();
        let d = self.decode(&[(&id, path, Segment::WHOLE)])?;
        Ok(self.transcript(&id, &d[0]))
    }

    /// Seconds per encoder frame.
    pub fn frame_shift(&self) -> f64 {
        self.meta.model.front_end.frame_shift_secs()
    }

    /// Emotion class names.
    pub fn labels(&self) -> &[String] {
        &self.meta.emotions.classes
    }

    /// Decodes a batch of (id, file, segment).
    pub fn decode(&self, items: &[(&str, &Path, Segment)]) -> Result<Vec<Decoded>> {
        if items.is_empty() {
            return Ok(vec![]);
        }
        let inputs = self.source.inputs(items, &self.dev)?;
        let features = match &self.meta.model.front_end {
            ent_model::FrontEnd::Fbank { .. } => Features::Fbank(&inputs.features),
            ent_model::FrontEnd::Backbone { .. } => Features::Hidden(&inputs.features),
        };
        let too_short: Vec<&str> = items
            .iter()
            .zip(&inputs.lens)
            .filter(|&(_, &n)| self.meta.model.front_end.output_frames(n) == 0)
            .map(|(it, _)| it.0)
            .collect();
        if !too_short.is_empty() {
            return Err(PipelineError::TooShort(too_short.join(", ")));
        }
        let enc = self
            .model
            .encode(features, &inputs.lens, &mut Mode::eval())?;
        Ok(ent_decode::decode(&self.model, &enc, &self.search)?)
    }

    /// What the commands print for one decoded utterance.
    pub fn transcript(&self, id: &str, d: &Decoded) -> Transcript {
        let labels = self.labels();
        let name = |k: usize| labels.get(k).cloned().unwrap_or_else(|| k.to_string());
        let vocab = &self.meta.vocab;
        Transcript {
            id: id.to_string(),
            text: vocab.decode(&d.hypothesis.tokens),
            emotion: UtteranceEmotion {
                label: name(d.utterance_emotion),
                probs: d
                    .utterance_probs
                    .iter()
                    .enumerate()
                    .map(|(k, &p)| (name(k), p))
                    .collect(),
            },
            tokens: d
                .tokens
                .iter()
                .map(|t| TokenOut {
                    token: vocab.decode(&[t.token]),
                    start: round_ms(t.time),
                    emotion: name(t.emotion),
                })
                .collect(),
            segments: d
                .segments
                .iter()
                .map(|s| SegmentOut {
                    start: round_ms(s.start),
                    end: round_ms(s.end),
                    emotion: name(s.label),
                })
                .collect(),
            frame_shift: self.frame_shift(),
            score: d.hypothesis.score,
        }
    }
}

/// Seconds rounded to the millisecond (frame times are multiples of 20 or 40 ms; this removes
/// float noise such as 0.12000000000000001 from the output).
pub fn round_ms(s: f64) -> f64 {
    (s * 1000.0).round() / 1000.0
}
