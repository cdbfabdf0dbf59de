//! From utterances to model inputs: audio -> filterbanks, or audio -> frozen backbone hidden
//! states.

use std::collections::HashMap;
use std::path::Path;
use std::sync::{Arc, Mutex};

use candle_core::{Device, Tensor};
use ent_backbone::Backbone;
use ent_features::{Audio, CmvnStats, Fbank, FbankOptions, GlobalCmvn, Segment, SpecAugment};
use ent_model::{FrontEnd, ModelConfig};
use rayon::prelude::*;

use crate::error::TrainError;

/// Sample rate every front end reads.
pub const SAMPLE_RATE: u32 = 16_000;

/// Loads `path` (the `segment` of it) as 16 kHz mono.
pub fn load_audio(path: &Path, segment: Segment) -> Result<Vec<f32>, TrainError> {
    let audio: Audio = ent_features::load_segment(path, segment)?.resampled(SAMPLE_RATE)?;
    Ok(audio.samples)
}

/// The rate `samples` are taken to be recorded at for speed perturbation by `speed`: the
/// audio resampled from it to [`SAMPLE_RATE`] plays `speed` times as fast (and as high).
pub fn perturbed_rate(speed: f64) -> u32 {
    (SAMPLE_RATE as f64 * speed).round() as u32
}

/// Speed perturbation of 16 kHz `samples` by `speed` (1.0: a copy); the result has about
/// `len / speed` samples.
pub fn speed_perturb(samples: &[f32], speed: f64) -> Result<Vec<f32>, TrainError> {
    Ok(ent_features::resample(
        samples,
        perturbed_rate(speed),
        SAMPLE_RATE,
    )?)
}

/// SpecAugment of padded model inputs: each example's valid frames `[lens[b], D]` with its own
/// `seeds[b]`, in every layer of `[L, B, T, D]` hidden states alike (same seed, so the same
/// masks and warp), or of `[B, T, D]` filterbanks. Padding is left alone.
pub fn spec_augment(
    features: &Tensor,
    lens: &[usize],
    aug: &SpecAugment,
    seeds: &[u64],
) -> Result<Tensor, TrainError> {
    let dims = features.dims().to_vec();
    let (layers, b, t, d) = match dims[..] {
        [b, t, d] => (1, b, t, d),
        [l, b, t, d] => (l, b, t, d),
        _ => {
            return Err(TrainError::Config(format!(
                "SpecAugment needs [B, T, D] or [L, B, T, D] inputs, not {dims:?}"
            )));
        }
    };
    if lens.len() != b || seeds.len() != b || lens.iter().any(|&n| n > t) {
        return Err(TrainError::Config(format!(
            "SpecAugment of a batch of {b} x {t} frames with lengths {lens:?} and {} seeds",
            seeds.len()
        )));
    }
    let mut data = features
        .to_device(&Device::Cpu)?
        .to_dtype(candle_core::DType::F32)?
        .flatten_all()?
        .to_vec1::<f32>()?;
    data.par_chunks_mut(t * d)
        .enumerate()
        .try_for_each(|(i, x)| -> Result<(), TrainError> {
            let e = i % b;
            aug.apply_in_place(&mut x[..lens[e] * d], lens[e], d, seeds[e])?;
            Ok(())
        })?;
    debug_assert_eq!(data.len(), layers * b * t * d);
    Ok(Tensor::from_vec(data, dims, &Device::Cpu)?
        .to_dtype(features.dtype())?
        .to_device(features.device())?)
}

/// Padded model inputs of one batch.
#[derive(Debug, Clone)]
pub struct Inputs {
    /// `[B, F, bins]` filterbanks or `[L, B, T, D]` hidden states.
    pub features: Tensor,
    /// Valid input frames per utterance.
    pub lens: Vec<usize>,
}

/// What turns audio into the model's input.
#[derive(Debug)]
pub enum FeatureSource {
    /// Kaldi log-mel filterbanks (CMVN is applied inside the model), optionally kept in memory
    /// after the first computation.
    Fbank {
        /// The filterbank computer.
        fbank: Fbank,
        /// Features by utterance id and the rate its audio was taken to have (speed
        /// perturbation), when caching.
        cache: Option<Mutex<FbankCache>>,
    },
    /// A frozen self-supervised backbone, run on every batch.
    Backbone(Box<Backbone>),
}

impl FeatureSource {
    /// The source matching `cfg`'s front end: filterbanks with `num_mel_bins` (dither off, so
    /// features are deterministic), or the backbone loaded from `backbone` (a folder with
    /// `config.json` and weights).
    pub fn new(
        cfg: &ModelConfig,
        backbone: Option<&Path>,
        cache: bool,
        dev: &Device,
    ) -> Result<Self, TrainError> {
        match &cfg.front_end {
            FrontEnd::Fbank { num_mel_bins, .. } => {
                let opts = FbankOptions {
                    num_mel_bins: *num_mel_bins,
                    dither: 0.0,
                    ..FbankOptions::default()
                };
                Ok(FeatureSource::Fbank {
                    fbank: Fbank::new(opts)?,
                    cache: cache.then(|| Mutex::new(HashMap::new())),
                })
            }
            FrontEnd::Backbone { layers, dim } => {
                let dir = backbone.ok_or_else(|| {
                    TrainError::Config(
                        "the model has a backbone front end: set `backbone` to a checkpoint folder"
                            .into(),
                    )
                })?;
                let b = Backbone::load(dir, dev)?;
                if b.num_hidden_states() != *layers || b.hidden_size() != *dim {
                    return Err(TrainError::Config(format!(
                        "the backbone in {} gives {} hidden states of width {}; the model config expects {layers} of width {dim}",
                        dir.display(),
                        b.num_hidden_states(),
                        b.hidden_size()
                    )));
                }
                Ok(FeatureSource::Backbone(Box::new(b)))
            }
        }
    }

    /// Filterbanks of one utterance, `[frames * bins]`, sped up by `speed`, and the mean power
    /// of the audio they were computed from; from the cache when there.
    fn fbank_of(
        &self,
        id: &str,
        path: &Path,
        segment: Segment,
        speed: f64,
    ) -> Result<(Arc<Vec<f32>>, f64), TrainError> {
        let key = (id.to_string(), perturbed_rate(speed));
        let FeatureSource::Fbank { fbank, cache } = self else {
            return Err(TrainError::Config(
                "filterbanks requested from a backbone source".into(),
            ));
        };
        if let Some(c) = cache
            && let Some(f) = c
                .lock()
                .map_err(|_| TrainError::Config("feature cache poisoned".into()))?
                .get(&key)
        {
            return Ok(f.clone());
        }
        let mut samples = load_audio(path, segment)?;
        if key.1 != SAMPLE_RATE {
            samples = speed_perturb(&samples, speed)?;
        }
        let f = Arc::new(
            fbank
                .compute_vec(&samples)
                .map_err(|e| TrainError::io(path, e.to_string()))?,
        );
        let entry = (f, mean_power(&samples));
        if let Some(c) = cache {
            c.lock()
                .map_err(|_| TrainError::Config("feature cache poisoned".into()))?
                .insert(key, entry.clone());
        }
        Ok(entry)
    }

    /// Global CMVN statistics of the filterbanks of `utts` (id, path, segment), for the model's
    /// `front_end.cmvn.*` buffers. `None` for a backbone source.
    pub fn cmvn(&self, utts: &[(&str, &Path, Segment)]) -> Result<Option<GlobalCmvn>, TrainError> {
        let FeatureSource::Fbank { fbank, .. } = self else {
            return Ok(None);
        };
        let dim = fbank.dim();
        let parts: Vec<CmvnStats> = utts
            .par_iter()
            .map(|&(id, path, seg)| -> Result<CmvnStats, TrainError> {
                let (f, _) = self.fbank_of(id, path, seg, 1.0)?;
                let mut s = CmvnStats::new(dim);
                s.accumulate_slice(&f, f.len() / dim, dim)?;
                Ok(s)
            })
            .collect::<Result<_, _>>()?;
        let mut total = CmvnStats::new(dim);
        for p in &parts {
            total.merge(p)?;
        }
        Ok(Some(GlobalCmvn::from_stats(&total, true)?))
    }

    /// Padded inputs for `utts` (id, path, segment) on `dev`.
    pub fn inputs(
        &self,
        utts: &[(&str, &Path, Segment)],
        dev: &Device,
    ) -> Result<Inputs, TrainError> {
        let joined: Vec<Vec<(&str, &Path, Segment)>> = utts.iter().map(|&u| vec![u]).collect();
        self.inputs_joined(&joined, dev)
    }

    /// Runs a backbone's linear layers in `dtype` (see `Backbone::set_matmul_dtype`); nothing to
    /// do for filterbanks at f32, an error for filterbanks at a half type.
    pub fn set_backbone_dtype(&mut self, dtype: candle_core::DType) -> Result<(), TrainError> {
        match self {
            FeatureSource::Backbone(b) => Ok(b.set_matmul_dtype(dtype)?),
            FeatureSource::Fbank { .. } if dtype == candle_core::DType::F32 => Ok(()),
            FeatureSource::Fbank { .. } => Err(TrainError::Config(format!(
                "backbone dtype {dtype:?} given for a filterbank front end"
            ))),
        }
    }

    /// Padded inputs on `dev` for examples each made of one or more stretches of audio
    /// (id, path, segment) played one after the other. Filterbanks are computed (and cached)
    /// per stretch and joined frame by frame; a backbone hears the joined waveform.
    pub fn inputs_joined(
        &self,
        utts: &[Vec<(&str, &Path, Segment)>],
        dev: &Device,
    ) -> Result<Inputs, TrainError> {
        self.inputs_perturbed(utts, &[], dev)
    }

    /// [`inputs_joined`](Self::inputs_joined) with each example's audio sped up by its factor
    /// in `speeds` (see [`speed_perturb`]; empty: no perturbation).
    pub fn inputs_perturbed(
        &self,
        utts: &[Vec<(&str, &Path, Segment)>],
        speeds: &[f64],
        dev: &Device,
    ) -> Result<Inputs, TrainError> {
        self.inputs_matched(utts, speeds, false, dev)
    }

    /// [`inputs_perturbed`](Self::inputs_perturbed), and with `match_loudness` every part of a
    /// joined example after the first brought to the first part's level (mean power): its
    /// waveform scaled by `sqrt(P_first / P_part)` for a backbone; for filterbanks the same
    /// gain as the constant `ln(P_first / P_part)` added to every log-mel value of the part,
    /// which is what the scaled waveform gives wherever an energy is above the filterbank's
    /// floor. A silent part is left as it is.
    pub fn inputs_matched(
        &self,
        utts: &[Vec<(&str, &Path, Segment)>],
        speeds: &[f64],
        match_loudness: bool,
        dev: &Device,
    ) -> Result<Inputs, TrainError> {
        if let Some(i) = utts.iter().position(Vec::is_empty) {
            return Err(TrainError::Config(format!(
                "example {i} of the batch has no audio"
            )));
        }
        if !speeds.is_empty() && speeds.len() != utts.len() {
            return Err(TrainError::Config(format!(
                "{} speed factors for a batch of {}",
                speeds.len(),
                utts.len()
            )));
        }
        let speed = |b: usize| speeds.get(b).copied().unwrap_or(1.0);
        match self {
            FeatureSource::Fbank { fbank, .. } => {
                let dim = fbank.dim();
                let feats: Vec<Vec<(Arc<Vec<f32>>, f64)>> = utts
                    .par_iter()
                    .enumerate()
                    .map(|(b, parts)| {
                        parts
                            .iter()
                            .map(|&(id, path, seg)| self.fbank_of(id, path, seg, speed(b)))
                            .collect::<Result<Vec<_>, _>>()
                    })
                    .collect::<Result<_, _>>()?;
                // Parts brought to their example's first part's level, where asked.
                let matched: Vec<Vec<Option<Vec<f32>>>> = feats
                    .iter()
                    .map(|parts| {
                        let reference = parts[0].1;
                        parts
                            .iter()
                            .enumerate()
                            .map(|(i, (f, power))| {
                                let ratio = level_ratio(reference, *power);
                                (match_loudness && i > 0 && ratio != 1.0).then(|| {
                                    let offset = ratio.ln() as f32;
                                    f.iter().map(|&v| v + offset).collect()
                                })
                            })
                            .collect()
                    })
                    .collect();
                let parts: Vec<Vec<&[f32]>> = feats
                    .iter()
                    .zip(&matched)
                    .map(|(p, m)| {
                        p.iter()
                            .zip(m)
                            .map(|((f, _), m)| m.as_deref().unwrap_or(f.as_slice()))
                            .collect()
                    })
                    .collect();
                fbank_inputs(&parts, dim, dev)
            }
            FeatureSource::Backbone(bb) => {
                let waves: Vec<Vec<f32>> = utts
                    .par_iter()
                    .enumerate()
                    .map(|(b, parts)| -> Result<Vec<f32>, TrainError> {
                        let mut w = Vec::new();
                        let mut reference = None;
                        for &(_, path, seg) in parts {
                            let mut part = load_audio(path, seg)?;
                            if match_loudness {
                                let power = mean_power(&part);
                                let r = *reference.get_or_insert(power);
                                let gain = level_ratio(r, power).sqrt() as f32;
                                if gain != 1.0 {
                                    part.iter_mut().for_each(|x| *x *= gain);
                                }
                            }
                            w.extend(part);
                        }
                        if perturbed_rate(speed(b)) != SAMPLE_RATE {
                            w = speed_perturb(&w, speed(b))?;
                        }
                        Ok(w)
                    })
                    .collect::<Result<_, _>>()?;
                let waves: Vec<&[f32]> = waves.iter().map(Vec::as_slice).collect();
                backbone_inputs(bb, &waves, dev)
            }
        }
    }

    /// Padded inputs on `dev` for 16 kHz mono waveforms already in memory (no cache).
    pub fn inputs_from_samples(
        &self,
        waves: &[&[f32]],
        dev: &Device,
    ) -> Result<Inputs, TrainError> {
        match self {
            FeatureSource::Fbank { fbank, .. } => {
                let feats: Vec<Vec<f32>> = waves
                    .par_iter()
                    .map(|w| fbank.compute_vec(w).map_err(TrainError::from))
                    .collect::<Result<_, _>>()?;
                let parts: Vec<Vec<&[f32]>> = feats.iter().map(|f| vec![f.as_slice()]).collect();
                fbank_inputs(&parts, fbank.dim(), dev)
            }
            FeatureSource::Backbone(bb) => backbone_inputs(bb, waves, dev),
        }
    }
}

/// Cached filterbanks by utterance id and perturbed rate.
type FbankCache = HashMap<(String, u32), (Arc<Vec<f32>>, f64)>;

/// Mean power (mean square) of a waveform; 0 for no samples.
fn mean_power(samples: &[f32]) -> f64 {
    if samples.is_empty() {
        return 0.0;
    }
    samples
        .iter()
        .map(|&x| f64::from(x) * f64::from(x))
        .sum::<f64>()
        / samples.len() as f64
}

/// The power ratio `reference / part` that brings a part to the reference's level; 1 when
/// either is silent (nothing to match).
fn level_ratio(reference: f64, part: f64) -> f64 {
    if reference > 0.0 && part > 0.0 {
        reference / part
    } else {
        1.0
    }
}

/// Filterbank frames of each example (its parts joined), zero-padded to `[B, F, dim]`.
fn fbank_inputs(examples: &[Vec<&[f32]>], dim: usize, dev: &Device) -> Result<Inputs, TrainError> {
    let lens: Vec<usize> = examples
        .iter()
        .map(|p| p.iter().map(|f| f.len() / dim).sum())
        .collect();
    let t = lens.iter().copied().max().unwrap_or(0);
    let mut data = vec![0f32; examples.len() * t * dim];
    for (b, parts) in examples.iter().enumerate() {
        let mut at = b * t * dim;
        for f in parts {
            data[at..at + f.len()].copy_from_slice(f);
            at += f.len();
        }
    }
    Ok(Inputs {
        features: Tensor::from_vec(data, (examples.len(), t, dim), dev)?,
        lens,
    })
}

/// The backbone's hidden states `[L, B, T, D]` of zero-padded waveforms.
fn backbone_inputs(bb: &Backbone, waves: &[&[f32]], dev: &Device) -> Result<Inputs, TrainError> {
    let s = waves.iter().map(|w| w.len()).max().unwrap_or(0);
    let mut data = vec![0f32; waves.len() * s];
    for (b, w) in waves.iter().enumerate() {
        data[b * s..b * s + w.len()].copy_from_slice(w);
    }
    let lens: Vec<u32> = waves.iter().map(|w| w.len() as u32).collect();
    let x = Tensor::from_vec(data, (waves.len(), s), dev)?;
    let l = Tensor::new(lens.as_slice(), dev)?;
    let out = bb.forward(&x, &l)?;
    Ok(Inputs {
        features: Tensor::stack(&out.hidden_states, 0)?,
        lens: out.frame_lens,
    })
}
