//! From utterances to model inputs: audio -> filterbanks, or audio -> frozen backbone hidden
//! states.

use std::collections::HashMap;
use std::path::Path;
use std::sync::{Arc, Mutex};

use candle_core::{Device, Tensor};
use ent_backbone::Backbone;
use ent_features::{Audio, CmvnStats, Fbank, FbankOptions, GlobalCmvn, Segment};
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
        /// Features by utterance id, when caching.
        cache: Option<Mutex<HashMap<String, Arc<Vec<f32>>>>>,
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

    /// Filterbanks of one utterance, `[frames * bins]`, from the cache when there.
    fn fbank_of(
        &self,
        id: &str,
        path: &Path,
        segment: Segment,
    ) -> Result<Arc<Vec<f32>>, TrainError> {
        let FeatureSource::Fbank { fbank, cache } = self else {
            return Err(TrainError::Config(
                "filterbanks requested from a backbone source".into(),
            ));
        };
        if let Some(c) = cache
            && let Some(f) = c
                .lock()
                .map_err(|_| TrainError::Config("feature cache poisoned".into()))?
                .get(id)
        {
            return Ok(f.clone());
        }
        let samples = load_audio(path, segment)?;
        let f = Arc::new(
            fbank
                .compute_vec(&samples)
                .map_err(|e| TrainError::io(path, e.to_string()))?,
        );
        if let Some(c) = cache {
            c.lock()
                .map_err(|_| TrainError::Config("feature cache poisoned".into()))?
                .insert(id.to_string(), f.clone());
        }
        Ok(f)
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
                let f = self.fbank_of(id, path, seg)?;
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

    /// Padded inputs on `dev` for examples each made of one or more stretches of audio
    /// (id, path, segment) played one after the other. Filterbanks are computed (and cached)
    /// per stretch and joined frame by frame; a backbone hears the joined waveform.
    pub fn inputs_joined(
        &self,
        utts: &[Vec<(&str, &Path, Segment)>],
        dev: &Device,
    ) -> Result<Inputs, TrainError> {
        if let Some(i) = utts.iter().position(Vec::is_empty) {
            return Err(TrainError::Config(format!(
                "example {i} of the batch has no audio"
            )));
        }
        match self {
            FeatureSource::Fbank { fbank, .. } => {
                let dim = fbank.dim();
                let feats: Vec<Vec<Arc<Vec<f32>>>> = utts
                    .par_iter()
                    .map(|parts| {
                        parts
                            .iter()
                            .map(|&(id, path, seg)| self.fbank_of(id, path, seg))
                            .collect::<Result<Vec<_>, _>>()
                    })
                    .collect::<Result<_, _>>()?;
                let parts: Vec<Vec<&[f32]>> = feats
                    .iter()
                    .map(|p| p.iter().map(|f| f.as_slice()).collect())
                    .collect();
                fbank_inputs(&parts, dim, dev)
            }
            FeatureSource::Backbone(bb) => {
                let waves: Vec<Vec<f32>> = utts
                    .par_iter()
                    .map(|parts| -> Result<Vec<f32>, TrainError> {
                        let mut w = Vec::new();
                        for &(_, path, seg) in parts {
                            w.extend(load_audio(path, seg)?);
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
