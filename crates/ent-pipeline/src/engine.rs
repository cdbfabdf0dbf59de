//! A loaded model with its feature extraction and search: audio in, decoded utterances out.

use std::path::{Path, PathBuf};

use candle_core::Device;
use ent_decode::{Decoded, Search};
use ent_features::Segment;
use ent_model::{Features, Mode, Model};
use ent_train::features::{FeatureSource, Inputs};
use ent_train::{Checkpoint, CheckpointMeta};
use serde::Serialize;

use crate::error::{PipelineError, Result};
use crate::longform::{FileDecoding, Windowing};

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
    pub(crate) windowing: Windowing,
    pub(crate) jobs: usize,
    emotion_threshold: Option<f32>,
    pub(crate) stretches: Option<Stretches>,
}

/// Frame emotions decided per stretch of speech between pauses (see
/// [`ent_decode::emotions_by_stretch`]): off by default.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Stretches {
    /// A stretch is emotional when at least this share of its speech frames (those not in a
    /// pause) are, in `(0, 1]`.
    pub min_share: f32,
    /// Shortest pause between two stretches, seconds (found as the long-recording segmenter
    /// finds pauses: [`Windowing::pause_db`], [`Windowing::floor_dbfs`]).
    pub min_pause: f64,
}

impl Stretches {
    /// Pauses of at least 0.15 s: longer than the closure of a stop consonant, shorter than
    /// the pause between two sentences.
    pub const DEFAULT_MIN_PAUSE: f64 = 0.15;

    /// Stretches with `min_share` and the default shortest pause.
    pub fn new(min_share: f32) -> Self {
        Stretches {
            min_share,
            min_pause: Self::DEFAULT_MIN_PAUSE,
        }
    }

    /// The shortest pause in frames of `shift` seconds (at least one).
    pub fn min_pause_frames(&self, shift: f64) -> usize {
        ((self.min_pause / shift - 1e-9).ceil() as usize).max(1)
    }
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
    /// Natural-log probability of the hypothesis (summed over windows).
    pub score: f64,
    /// The windows the recording was decoded in (one for a file no longer than a window),
    /// each with its text and emotion.
    pub windows: Vec<WindowOut>,
    /// Stretches that could not be read (silence in their place); empty for a sound file.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub damaged: Vec<DamageOut>,
}

/// One decoded window of a recording.
#[derive(Debug, Clone, Serialize)]
pub struct WindowOut {
    /// Start in seconds.
    pub start: f64,
    /// End in seconds.
    pub end: f64,
    /// What was said in it.
    pub text: String,
    /// Its emotion, from the utterance head.
    pub emotion: UtteranceEmotion,
}

/// A stretch of the file that could not be decoded.
#[derive(Debug, Clone, Serialize)]
pub struct DamageOut {
    /// Start in seconds.
    pub start: f64,
    /// End in seconds (`None`: to the end of the file).
    pub end: Option<f64>,
    /// What went wrong, with the times.
    pub message: String,
}

/// The pieces of a [`Transcript`].
pub(crate) struct Parts<'a> {
    pub id: &'a str,
    pub text: String,
    pub probs: &'a [f32],
    pub tokens: &'a [ent_decode::TokenEmotion],
    pub segments: &'a [ent_decode::metrics::Segment],
    pub score: f64,
    pub windows: Vec<WindowOut>,
    pub damaged: Vec<DamageOut>,
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
            windowing: Windowing::default(),
            jobs: 1,
            emotion_threshold: None,
            stretches: None,
        })
    }

    /// Decodes the windows of a long recording on `jobs` threads at once (at least 1). Each
    /// thread runs the model's operations itself; with several, set `RAYON_NUM_THREADS=1`
    /// (as `ent` does) so that they do not also split every matrix product.
    pub fn with_jobs(mut self, jobs: usize) -> Self {
        self.jobs = jobs.max(1);
        self
    }

    /// Threads a long recording's windows are decoded on.
    pub fn jobs(&self) -> usize {
        self.jobs
    }

    /// Cuts long recordings as `w` says (see [`crate::longform`]).
    pub fn with_windowing(mut self, w: Windowing) -> Result<Self> {
        w.validate()?;
        self.windowing = w;
        Ok(self)
    }

    /// Decides each frame's emotion by a neutral-versus-emotion threshold (see
    /// [`ent_decode::threshold_emotions`]) instead of the argmax; `None`: the argmax, as the
    /// paper decodes.
    pub fn with_emotion_threshold(mut self, threshold: Option<f32>) -> Result<Self> {
        if let Some(t) = threshold
            && !(t > 0.0 && t <= 1.0)
        {
            return Err(PipelineError::Setting {
                name: "emotion threshold",
                value: t.to_string(),
                why: "must lie in (0, 1]",
            });
        }
        self.emotion_threshold = threshold;
        Ok(self)
    }

    /// Decides frame emotions per stretch of speech between pauses (after the frame decision,
    /// argmax or threshold); `None`: per frame, as the paper decodes.
    pub fn with_emotion_stretches(mut self, stretches: Option<Stretches>) -> Result<Self> {
        if let Some(s) = stretches {
            if !(s.min_share > 0.0 && s.min_share <= 1.0) {
                return Err(PipelineError::Setting {
                    name: "emotional share of a stretch",
                    value: s.min_share.to_string(),
                    why: "must lie in (0, 1]",
                });
            }
            if !(s.min_pause > 0.0 && s.min_pause.is_finite()) {
                return Err(PipelineError::Setting {
                    name: "shortest pause between stretches",
                    value: format!("{} s", s.min_pause),
                    why: "must be positive",
                });
            }
        }
        self.stretches = stretches;
        Ok(self)
    }

    /// How long recordings are cut.
    pub fn windowing(&self) -> &Windowing {
        &self.windowing
    }

    /// The demo model trained by `ent demo` on the bundled synthetic corpus (it knows only
    /// those synthetic voices), built into the library.
    pub fn demo(dev: &Device, search: Search) -> Result<Self> {
        Self::load(None, None, dev, search)
    }

    /// Decodes one audio file of any length (WAV, FLAC, MP3, Ogg Vorbis; any sample rate);
    /// see [`Engine::transcribe_file`] for progress and the frame track.
    pub fn transcribe(&self, path: &Path) -> Result<Transcript> {
        let id = path.to_string_lossy();
        Ok(self
            .transcribe_file(&id, path, Segment::WHOLE, &mut |_, _| {})?
            .transcript)
    }

    /// Seconds per encoder frame.
    pub fn frame_shift(&self) -> f64 {
        self.meta.model.front_end.frame_shift_secs()
    }

    /// Emotion class names.
    pub fn labels(&self) -> &[String] {
        &self.meta.emotions.classes
    }

    /// Decodes a batch of (id, file, segment), each whole (see [`Engine::transcribe_file`] for
    /// recordings of any length).
    pub fn decode(&self, items: &[(&str, &Path, Segment)]) -> Result<Vec<Decoded>> {
        if items.is_empty() {
            return Ok(vec![]);
        }
        let ids: Vec<&str> = items.iter().map(|it| it.0).collect();
        if self.stretches.is_some() {
            // The stretch decision reads the audio too: load it once.
            let waves = items
                .iter()
                .map(|&(_, path, seg)| ent_train::features::load_audio(path, seg))
                .collect::<std::result::Result<Vec<_>, _>>()?;
            let waves: Vec<&[f32]> = waves.iter().map(Vec::as_slice).collect();
            return self.decode_samples(&ids, &waves);
        }
        let inputs = self.source.inputs(items, &self.dev)?;
        self.decode_inputs(&ids, &inputs)
    }

    /// Decodes 16 kHz mono waveforms held in memory (full scale 1), named `ids` in errors; a
    /// NaN, infinite or larger than [`ent_features::MAX_SAMPLE`] sample is an error.
    pub fn decode_samples(&self, ids: &[&str], waves: &[&[f32]]) -> Result<Vec<Decoded>> {
        if waves.is_empty() {
            return Ok(vec![]);
        }
        let mut out = self.decode_samples_per_frame(ids, waves)?;
        for (d, wave) in out.iter_mut().zip(waves) {
            self.decide_stretches(d, wave)?;
        }
        Ok(out)
    }

    /// [`decode_samples`](Self::decode_samples) without the stretch decision.
    pub(crate) fn decode_samples_per_frame(
        &self,
        ids: &[&str],
        waves: &[&[f32]],
    ) -> Result<Vec<Decoded>> {
        if waves.is_empty() {
            return Ok(vec![]);
        }
        for (id, wave) in ids.iter().zip(waves) {
            ent_features::sample::check_audio(wave).map_err(|e| e.in_file(Path::new(id)))?;
        }
        let inputs = self.source.inputs_from_samples(waves, &self.dev)?;
        self.decode_inputs(ids, &inputs)
    }

    /// Applies the stretch decision, when asked for, to `d` decoded from `wave`.
    fn decide_stretches(&self, d: &mut Decoded, wave: &[f32]) -> Result<()> {
        let Some(s) = self.stretches else {
            return Ok(());
        };
        let frames = d.hypothesis.frame_emotions.len();
        let pauses =
            crate::longform::frame_pauses(wave, &self.windowing, self.hop_samples(), frames);
        ent_decode::emotions_by_stretch(
            d,
            &pauses,
            s.min_pause_frames(self.frame_shift()),
            self.meta.emotions.neutral,
            s.min_share,
            self.frame_shift(),
        )?;
        Ok(())
    }

    fn decode_inputs(&self, ids: &[&str], inputs: &Inputs) -> Result<Vec<Decoded>> {
        let features = match &self.meta.model.front_end {
            ent_model::FrontEnd::Fbank { .. } => Features::Fbank(&inputs.features),
            ent_model::FrontEnd::Backbone { .. } => Features::Hidden(&inputs.features),
        };
        let too_short: Vec<&str> = ids
            .iter()
            .zip(&inputs.lens)
            .filter(|&(_, &n)| self.meta.model.front_end.output_frames(n) == 0)
            .map(|(id, _)| *id)
            .collect();
        if !too_short.is_empty() {
            return Err(PipelineError::TooShort(too_short.join(", ")));
        }
        let enc = self
            .model
            .encode(features, &inputs.lens, &mut Mode::eval())?;
        let mut out = ent_decode::decode(&self.model, &enc, &self.search)?;
        if let Some(t) = self.emotion_threshold {
            let shift = self.frame_shift();
            for d in &mut out {
                ent_decode::threshold_emotions(d, self.meta.emotions.neutral, t, shift)?;
            }
        }
        Ok(out)
    }

    /// What the commands print for one decoded utterance.
    pub fn transcript(&self, id: &str, d: &Decoded) -> Transcript {
        self.decoding(id, d).transcript
    }

    /// One decoded utterance as a [`FileDecoding`] of one window.
    pub fn decoding(&self, id: &str, d: &Decoded) -> FileDecoding {
        let text = self.meta.vocab.decode(&d.hypothesis.tokens);
        let end = d.hypothesis.frame_emotions.len() as f64 * self.frame_shift();
        let windows = vec![WindowOut {
            start: 0.0,
            end: round_ms(end),
            text: text.clone(),
            emotion: self.utterance_emotion(&d.utterance_probs),
        }];
        let transcript = self.make_transcript(Parts {
            id,
            text,
            probs: &d.utterance_probs,
            tokens: &d.tokens,
            segments: &d.segments,
            score: d.hypothesis.score,
            windows,
            damaged: vec![],
        });
        FileDecoding {
            transcript,
            frame_emotions: d.hypothesis.frame_emotions.clone(),
            frame_probs: d.hypothesis.frame_probs.clone(),
            segments: d.segments.clone(),
            class: d.utterance_emotion,
        }
    }

    fn label(&self, k: usize) -> String {
        self.labels()
            .get(k)
            .cloned()
            .unwrap_or_else(|| k.to_string())
    }

    /// Label and named probabilities of class probabilities `p`.
    pub(crate) fn utterance_emotion(&self, p: &[f32]) -> UtteranceEmotion {
        UtteranceEmotion {
            label: self.label(ent_decode::argmax(p)),
            probs: p
                .iter()
                .enumerate()
                .map(|(k, &x)| (self.label(k), x))
                .collect(),
        }
    }

    pub(crate) fn make_transcript(&self, p: Parts<'_>) -> Transcript {
        let vocab = &self.meta.vocab;
        Transcript {
            id: p.id.to_string(),
            text: p.text,
            emotion: self.utterance_emotion(p.probs),
            tokens: p
                .tokens
                .iter()
                .map(|t| TokenOut {
                    token: vocab.decode(&[t.token]),
                    start: round_ms(t.time),
                    emotion: self.label(t.emotion),
                })
                .collect(),
            segments: p
                .segments
                .iter()
                .map(|s| SegmentOut {
                    start: round_ms(s.start),
                    end: round_ms(s.end),
                    emotion: self.label(s.label),
                })
                .collect(),
            frame_shift: self.frame_shift(),
            score: p.score,
            windows: p.windows,
            damaged: p.damaged,
        }
    }
}

/// Seconds rounded to the millisecond (frame times are multiples of 20 or 40 ms; this removes
/// float noise such as 0.12000000000000001 from the output).
pub fn round_ms(s: f64) -> f64 {
    (s * 1000.0).round() / 1000.0
}
