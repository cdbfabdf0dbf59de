//! The training configuration (a JSON file for `ent train --config`); the defaults are the
//! paper's (docs/method.md §4).

use std::path::{Path, PathBuf};

use ent_features::{SpecAugment, SpecAugmentConfig};
use ent_model::{LossConfig, ModelConfig};
use serde::{Deserialize, Serialize};

use crate::data::{BadDataPolicy, EmotionMap, JoinConfig, ManifestFormat};
use crate::error::TrainError;
use crate::optim::OptimConfig;

/// Which split picks the best checkpoint.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Selection {
    /// A validation split held out of the training data (or given as its own manifest).
    #[default]
    Validation,
    /// The test manifest, as the reference code does (docs/method.md §8, decision 4). Scores selected
    /// this way are optimistic; use it only to reproduce the reference protocol.
    Test,
}

/// The score the best checkpoint maximises.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SelectMetric {
    /// Unweighted accuracy of the utterance head.
    #[default]
    Ua,
    /// Weighted accuracy of the utterance head.
    Wa,
    /// Minus the total loss.
    Loss,
}

/// The type the frozen backbone's linear layers compute in
/// (`ent_backbone::Backbone::set_matmul_dtype`); its hidden states are f32 either way.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum BackboneDType {
    #[default]
    F32,
    /// bfloat16: half the weight and activation traffic on a GPU, f32's range.
    Bf16,
    /// float16.
    F16,
}

impl BackboneDType {
    /// The candle dtype.
    pub fn dtype(self) -> candle_core::DType {
        match self {
            BackboneDType::F32 => candle_core::DType::F32,
            BackboneDType::Bf16 => candle_core::DType::BF16,
            BackboneDType::F16 => candle_core::DType::F16,
        }
    }
}

/// Where the data comes from and how bad data is treated.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct DataConfig {
    /// Training manifest (file or folder, any supported format).
    pub train: PathBuf,
    /// Its format (detected when absent).
    pub format: Option<ManifestFormat>,
    /// Replaces SpeechBrain's `{data_root}` in audio paths.
    pub data_root: Option<PathBuf>,
    /// A validation manifest; when absent, `valid_fraction` of the training speakers (or
    /// utterances, without speaker labels) is held out.
    pub valid: Option<PathBuf>,
    /// Fraction held out for validation when there is no validation manifest.
    pub valid_fraction: f64,
    /// A test manifest (needed for [`Selection::Test`]).
    pub test: Option<PathBuf>,
    /// For IEMOCAP: the session left out as the test fold (1..=5); training uses the others.
    pub iemocap_test_session: Option<u32>,
    /// Emotion classes and label aliases.
    pub emotions: EmotionMap,
    /// Drop utterances whose audio cannot be used (missing, unreadable, damaged, silent;
    /// counted) instead of stopping with the full list.
    pub skip_bad_audio: bool,
    /// Drop utterances with unknown emotion labels instead of stopping.
    pub skip_unknown_emotion: bool,
    /// Drop utterances with empty transcripts instead of stopping.
    pub skip_empty_text: bool,
    /// Training utterances this long or longer are dropped (18.75 s in the paper).
    pub max_duration: Option<f64>,
}

impl Default for DataConfig {
    fn default() -> Self {
        Self {
            train: PathBuf::new(),
            format: None,
            data_root: None,
            valid: None,
            valid_fraction: 0.1,
            test: None,
            iemocap_test_session: None,
            emotions: EmotionMap::default(),
            skip_bad_audio: false,
            skip_unknown_emotion: false,
            skip_empty_text: false,
            max_duration: Some(18.75),
        }
    }
}

impl DataConfig {
    /// The bad-data policy for the training split.
    pub fn policy(&self) -> BadDataPolicy {
        BadDataPolicy {
            skip_bad_audio: self.skip_bad_audio,
            skip_unknown_emotion: self.skip_unknown_emotion,
            skip_empty_text: self.skip_empty_text,
            max_duration: self.max_duration,
            require_text: true,
        }
    }
}

/// Training-time augmentation of the training examples (never of validation or test data);
/// off by default. Each example of each optimiser step draws its own perturbation from a stream
/// seeded by the run's seed and the step, so a run (and a resumed run) is reproducible.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AugmentConfig {
    /// Speed perturbation (Ko et al., 2015): factors, one drawn uniformly per example; the
    /// audio is resampled as if recorded at `16 kHz * factor`, so `1.1` plays 10% faster and
    /// higher. Emotion spans are scaled with it. Empty (the default) or `[1.0]`: off.
    pub speed: Vec<f64>,
    /// SpecAugment on the model input: the filterbanks (masked with each example's mean when
    /// `mask_value` is `"mean"`), or every hidden state of a backbone alike. Absent: off.
    pub specaug: Option<SpecAugmentConfig>,
    /// Gain perturbation: `[low, high]` in dB; each example (a joined one as a whole, so its
    /// parts keep their levels relative to each other) is played at a gain drawn uniformly
    /// from the range. It keeps a model from reading emotion off the absolute level of a voice
    /// (a quieter speaker's anger is not a louder speaker's neutral). Absent: off.
    pub gain_db: Option<[f64; 2]>,
}

impl AugmentConfig {
    /// The smallest speed factor (1 without speed perturbation): the longest an example gets.
    pub fn slowest(&self) -> f64 {
        self.speed.iter().copied().reduce(f64::min).unwrap_or(1.0)
    }

    /// Whether anything is perturbed.
    pub fn is_on(&self) -> bool {
        self.specaug.is_some()
            || self.speed.iter().any(|&f| f != 1.0)
            || self.gain_db.is_some_and(|[lo, hi]| lo != 0.0 || hi != 0.0)
    }

    /// What is on, for messages: `speed perturbation 0.9/1/1.1, SpecAugment` (`none` when off).
    pub fn describe(&self) -> String {
        let mut parts = Vec::new();
        if self.speed.iter().any(|&f| f != 1.0) {
            let f: Vec<String> = self.speed.iter().map(|f| f.to_string()).collect();
            parts.push(format!("speed perturbation {}", f.join("/")));
        }
        if let Some([lo, hi]) = self.gain_db
            && (lo != 0.0 || hi != 0.0)
        {
            parts.push(format!("gain {lo} to {hi} dB"));
        }
        if self.specaug.is_some() {
            parts.push("SpecAugment".to_string());
        }
        if parts.is_empty() {
            "none".to_string()
        } else {
            parts.join(", ")
        }
    }

    /// Checks the factors and the SpecAugment policy.
    pub fn validate(&self) -> Result<(), TrainError> {
        if let Some(f) = self
            .speed
            .iter()
            .find(|f| !(SPEED_RANGE.contains(*f) && f.is_finite()))
        {
            return Err(TrainError::config(
                "augment.speed",
                f,
                format!(
                    "every factor must lie in [{}, {}]",
                    SPEED_RANGE.start(),
                    SPEED_RANGE.end()
                ),
            ));
        }
        if let Some([lo, hi]) = self.gain_db
            && !(GAIN_RANGE_DB.contains(&lo) && GAIN_RANGE_DB.contains(&hi) && lo <= hi)
        {
            return Err(TrainError::config(
                "augment.gain_db",
                format!("[{lo}, {hi}]"),
                format!(
                    "must be a range [low, high] with low <= high, both in [{}, {}] dB",
                    GAIN_RANGE_DB.start(),
                    GAIN_RANGE_DB.end()
                ),
            ));
        }
        self.spec_augment()?;
        Ok(())
    }

    /// The checked SpecAugment policy, if one is set.
    pub fn spec_augment(&self) -> Result<Option<SpecAugment>, TrainError> {
        self.specaug
            .clone()
            .map(|c| SpecAugment::new(c).map_err(TrainError::SpecAugment))
            .transpose()
    }
}

/// Speed factors [`AugmentConfig::speed`] accepts.
pub const SPEED_RANGE: std::ops::RangeInclusive<f64> = 0.5..=2.0;

/// Gains in dB [`AugmentConfig::gain_db`] accepts.
pub const GAIN_RANGE_DB: std::ops::RangeInclusive<f64> = -30.0..=30.0;

/// Everything a training run needs.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TrainConfig {
    /// The model.
    pub model: ModelConfig,
    /// Loss weights and pooling.
    pub loss: LossConfig,
    /// Optimiser and schedule.
    pub optim: OptimConfig,
    /// Data.
    pub data: DataConfig,
    /// Joined training examples (neutral, any, neutral) added to the training set; none by
    /// default.
    pub join: JoinConfig,
    /// Augmentation of the training examples; none by default.
    pub augment: AugmentConfig,
    /// Backbone checkpoint folder (for a backbone front end).
    pub backbone: Option<PathBuf>,
    /// The type the backbone's linear layers compute in (`"f32"`, `"bf16"`, `"f16"`): a half type
    /// for training on a GPU, where the frozen backbone dominates the step.
    pub backbone_dtype: BackboneDType,
    /// Epochs.
    pub epochs: u64,
    /// Utterances per batch.
    pub batch_size: usize,
    /// Optional cap on padded seconds per batch (longest utterance times batch size): bounds
    /// the backbone's and the encoder's work.
    pub max_batch_secs: Option<f64>,
    /// Optional cap on the lattice nodes of a batch, `count * T * (U+1)` with `T` the most
    /// encoder frames (estimated from the duration at the slowest speed factor, an upper
    /// bound) and `U` the most target tokens: bounds the joints' and the losses' memory, so
    /// long utterances come in small batches and short ones in large ones (up to
    /// `batch_size`). An utterance whose lattice alone is over the cap stops training before
    /// the first step, named.
    pub max_batch_nodes: Option<u64>,
    /// Batches whose gradients are summed (and averaged) before each optimiser step.
    pub accumulate: usize,
    /// Seed of batching and dropout.
    pub seed: u64,
    /// Which split selects the best checkpoint.
    pub selection: Selection,
    /// The score that selects it.
    pub select_metric: SelectMetric,
    /// Also write `last.safetensors` every this many optimiser steps (always at epoch ends).
    pub save_every_steps: Option<u64>,
    /// Stop after this many optimiser steps (for smoke tests and benchmarks).
    pub max_steps: Option<u64>,
    /// Keep filterbanks in memory after their first computation.
    pub cache_features: bool,
    /// Batches a background thread keeps prepared ahead of the model (audio loaded, joined and
    /// perturbed; filterbanks computed, padded and augmented); 0: each batch is prepared when
    /// it is needed, on the training thread. Results do not depend on it.
    pub prefetch_batches: usize,
}

impl Default for TrainConfig {
    fn default() -> Self {
        Self {
            model: ModelConfig::default(),
            loss: LossConfig::default(),
            optim: OptimConfig::default(),
            data: DataConfig::default(),
            join: JoinConfig::default(),
            augment: AugmentConfig::default(),
            backbone: None,
            backbone_dtype: BackboneDType::F32,
            epochs: 50,
            batch_size: 2,
            max_batch_secs: None,
            max_batch_nodes: None,
            accumulate: 1,
            seed: 42,
            selection: Selection::Validation,
            select_metric: SelectMetric::Ua,
            save_every_steps: None,
            max_steps: None,
            cache_features: true,
            prefetch_batches: 2,
        }
    }
}

impl TrainConfig {
    /// Reads a JSON configuration; unknown fields are errors, missing ones take the defaults.
    /// Relative paths inside are resolved against the file's folder.
    pub fn from_file(path: &Path) -> Result<Self, TrainError> {
        let text =
            std::fs::read_to_string(path).map_err(|e| TrainError::io(path, e.to_string()))?;
        let bad = |e: serde_json::Error| TrainError::io(path, format!("bad training config: {e}"));
        let mut cfg: TrainConfig = match serde_json::from_str(&text) {
            Ok(cfg) => cfg,
            Err(e) => {
                // Files written before progress became the caller's business carry a
                // `progress` switch: accepted and ignored.
                let mut value: serde_json::Value = serde_json::from_str(&text).map_err(bad)?;
                match value.as_object_mut().map(|o| o.remove("progress")) {
                    Some(Some(_)) => serde_json::from_value(value).map_err(bad)?,
                    _ => return Err(bad(e)),
                }
            }
        };
        let base = path.parent().unwrap_or(Path::new("."));
        let fix = |p: &mut PathBuf| {
            if p.is_relative() && !p.as_os_str().is_empty() {
                *p = base.join(&*p);
            }
        };
        fix(&mut cfg.data.train);
        for p in [
            &mut cfg.data.valid,
            &mut cfg.data.test,
            &mut cfg.data.data_root,
            &mut cfg.backbone,
        ]
        .into_iter()
        .flatten()
        {
            fix(p);
        }
        cfg.validate()?;
        Ok(cfg)
    }

    /// Checks values that serde cannot.
    pub fn validate(&self) -> Result<(), TrainError> {
        let bad = |field, value: &dyn std::fmt::Display, why: &str| {
            Err(TrainError::config(field, value, why))
        };
        if self.batch_size == 0 {
            return bad("batch_size", &0, "must be at least 1");
        }
        if self.backbone_dtype != BackboneDType::F32
            && !matches!(self.model.front_end, ent_model::FrontEnd::Backbone { .. })
        {
            return bad(
                "backbone_dtype",
                &format!("{:?}", self.backbone_dtype),
                "needs a backbone front end; the model reads filterbanks",
            );
        }
        if self.max_batch_nodes == Some(0) {
            return bad("max_batch_nodes", &0, "must be at least 1");
        }
        if let Some(secs) = self.max_batch_secs
            && !(secs > 0.0 && secs.is_finite())
        {
            return bad("max_batch_secs", &secs, "must be positive");
        }
        if self.accumulate == 0 {
            return bad("accumulate", &0, "must be at least 1");
        }
        if self.epochs == 0 {
            return bad("epochs", &0, "must be at least 1");
        }
        if !(0.0..1.0).contains(&self.data.valid_fraction) {
            return bad(
                "data.valid_fraction",
                &self.data.valid_fraction,
                "must be in [0, 1)",
            );
        }
        if self.selection == Selection::Test && self.data.test.is_none() {
            return bad("selection", &"\"test\"", "needs data.test");
        }
        if !(self.optim.lr > 0.0 && self.optim.lr.is_finite()) {
            return bad("optim.lr", &self.optim.lr, "must be positive");
        }
        if self.data.emotions.classes.len() != self.model.num_emotions {
            return bad(
                "data.emotions",
                &format!("{} classes", self.data.emotions.classes.len()),
                &format!("model.num_emotions is {}", self.model.num_emotions),
            );
        }
        if self.data.emotions.neutral != self.model.neutral {
            return bad(
                "data.emotions.neutral",
                &self.data.emotions.neutral,
                &format!("model.neutral is {}", self.model.neutral),
            );
        }
        if !(self.loss.fastemit >= 0.0 && self.loss.fastemit.is_finite()) {
            return bad(
                "loss.fastemit",
                &self.loss.fastemit,
                "must be a finite weight >= 0",
            );
        }
        if self.loss.pool_function == ent_model::PoolFunction::Attention
            && !self.model.pool_attention
        {
            return bad(
                "loss.pool_function",
                &"\"attention\"",
                "needs model.pool_attention: true (the attention layer)",
            );
        }
        self.augment.validate()?;
        self.model.validate()?;
        Ok(())
    }
}
