//! From utterances to model inputs: audio -> filterbanks, or audio -> frozen backbone hidden
//! states.

use std::collections::HashMap;
use std::path::Path;
use std::sync::{Arc, Mutex};

use candle_core::{Device, Tensor};
use ent_backbone::Backbone;
use ent_features::fbank::LOG_FLOOR_INPUT;
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
/// masks and warp), or of `[B, T, D]` filterbanks. Padding is left alone. On the CPU the values
/// are augmented in place ([`SpecAugment::apply_in_place`]); on other devices the inputs stay
/// there ([`spec_augment_on_device`]).
pub fn spec_augment(
    features: &Tensor,
    lens: &[usize],
    aug: &SpecAugment,
    seeds: &[u64],
) -> Result<Tensor, TrainError> {
    if !features.device().is_cpu() {
        return spec_augment_on_device(features, lens, aug, seeds);
    }
    let dims = features.dims().to_vec();
    let (layers, b, t, d) = batch_shape(&dims, lens, seeds)?;
    let mut data = features
        .to_dtype(candle_core::DType::F32)?
        .flatten_all()?
        .to_vec1::<f32>()?;
    spec_augment_host(&mut data, b, t, d, lens, aug, seeds)?;
    debug_assert_eq!(data.len(), layers * b * t * d);
    Ok(Tensor::from_vec(data, dims, &Device::Cpu)?.to_dtype(features.dtype())?)
}

/// `(L, B, T, D)` of `[B, T, D]` or `[L, B, T, D]` inputs (L = 1 for the first), checked
/// against the lengths and seeds of the batch.
fn batch_shape(
    dims: &[usize],
    lens: &[usize],
    seeds: &[u64],
) -> Result<(usize, usize, usize, usize), TrainError> {
    let (layers, b, t, d) = match dims[..] {
        [b, t, d] => (1, b, t, d),
        [l, b, t, d] => (l, b, t, d),
        _ => {
            return Err(TrainError::Shape {
                arg: "SpecAugment's input",
                got: dims.to_vec(),
                expected: "[B, T, D] or [L, B, T, D]",
            });
        }
    };
    for (arg, got) in [
        ("SpecAugment's lengths", lens.len()),
        ("SpecAugment's seeds", seeds.len()),
    ] {
        if got != b {
            return Err(TrainError::BatchSize { arg, got, batch: b });
        }
    }
    if let Some(&n) = lens.iter().find(|&&n| n > t) {
        return Err(TrainError::Shape {
            arg: "SpecAugment's input",
            got: vec![b, t, n],
            expected: "[B, T, D] with every length at most T",
        });
    }
    Ok((layers, b, t, d))
}

/// SpecAugment in place of row-major padded `[L, B, T, D]` values (see [`spec_augment`]).
fn spec_augment_host(
    data: &mut [f32],
    b: usize,
    t: usize,
    d: usize,
    lens: &[usize],
    aug: &SpecAugment,
    seeds: &[u64],
) -> Result<(), TrainError> {
    if t * d == 0 {
        return Ok(());
    }
    data.par_chunks_mut(t * d)
        .enumerate()
        .try_for_each(|(i, x)| -> Result<(), TrainError> {
            let e = i % b;
            aug.apply_in_place(&mut x[..lens[e] * d], lens[e], d, seeds[e])?;
            Ok(())
        })
}

/// [`spec_augment`] with tensor operations on the inputs' own device (any device, the CPU
/// included): the warp as two row gathers and a weighted sum, the masks as one `where_cond`.
/// Only the plans ([`SpecAugment::plan`]), index lists and masks of `B x (T + D)` entries go
/// from the host to the device; nothing comes back. Computed in f32 (as in place) and returned
/// in the inputs' dtype; equal to the in-place augmentation up to the rounding of a
/// [`MaskValue::Mean`](ent_features::MaskValue::Mean) fill, which is summed in f64 on the
/// device.
pub fn spec_augment_on_device(
    features: &Tensor,
    lens: &[usize],
    aug: &SpecAugment,
    seeds: &[u64],
) -> Result<Tensor, TrainError> {
    use candle_core::DType;
    let dims = features.dims().to_vec();
    let (layers, b, t, d) = batch_shape(&dims, lens, seeds)?;
    let dev = features.device();
    let x = features.to_dtype(DType::F32)?.reshape((layers, b * t, d))?;
    let plans: Vec<_> = (0..b).map(|e| aug.plan(lens[e], d, seeds[e])).collect();
    // 1 on each example's valid frames.
    let valid: Vec<u8> = (0..b)
        .flat_map(|e| (0..t).map(move |f| u8::from(f < lens[e])))
        .collect();
    let valid = Tensor::from_vec(valid, (b, t, 1), dev)?;
    // Mask fill, from the features before the warp.
    let fill = match aug.config().mask_value {
        ent_features::MaskValue::Zero => {
            Tensor::zeros((1, 1, 1), DType::F32, dev)?.broadcast_as((layers, b * t, d))?
        }
        ent_features::MaskValue::Constant(v) => {
            Tensor::full(v, (1, 1, 1), dev)?.broadcast_as((layers, b * t, d))?
        }
        ent_features::MaskValue::Mean => {
            let count: Vec<f64> = lens.iter().map(|&n| (n * d).max(1) as f64).collect();
            let count = Tensor::from_vec(count, (1, b, 1, 1), dev)?;
            x.to_dtype(DType::F64)?
                .reshape((layers, b, t, d))?
                .broadcast_mul(&valid.to_dtype(DType::F64)?)?
                .sum_keepdim(3)?
                .sum_keepdim(2)?
                .broadcast_div(&count)?
                .to_dtype(DType::F32)?
                .broadcast_as((layers, b, t, d))?
                .reshape((layers, b * t, d))?
        }
    };
    // Warp: output frame f of example e is x[lo] + a * (x[hi] - x[lo]).
    let mut x = x;
    if plans.iter().any(|p| p.warp.is_some_and(|(c, w)| c != w)) {
        let mut lo: Vec<u32> = (0..(b * t) as u32).collect();
        let mut hi = lo.clone();
        let mut a = vec![0f32; b * t];
        for (e, p) in plans.iter().enumerate() {
            let Some((centre, dest)) = p.warp.filter(|(c, w)| c != w) else {
                continue;
            };
            for (f, (l, h, w)) in ent_features::specaug::warp_sources(lens[e], centre, dest)
                .into_iter()
                .enumerate()
            {
                lo[e * t + f] = (e * t + l) as u32;
                hi[e * t + f] = (e * t + h) as u32;
                a[e * t + f] = w;
            }
        }
        let x0 = x.index_select(&Tensor::from_vec(lo, b * t, dev)?, 1)?;
        let x1 = x.index_select(&Tensor::from_vec(hi, b * t, dev)?, 1)?;
        let a = Tensor::from_vec(a, (1, b * t, 1), dev)?;
        x = (&x0 + (x1 - &x0)?.broadcast_mul(&a)?)?;
    }
    // Masks: a valid cell is masked when its frame or its bin is.
    let mut frame_mask = vec![0u8; b * t];
    let mut bin_mask = vec![0u8; b * d];
    for (e, p) in plans.iter().enumerate() {
        for m in &p.time_masks {
            frame_mask[e * t + m.start..e * t + m.end].fill(1);
        }
        for m in &p.freq_masks {
            bin_mask[e * d + m.start..e * d + m.end].fill(1);
        }
    }
    let frame_mask = Tensor::from_vec(frame_mask, (b, t, 1), dev)?;
    let bin_mask = Tensor::from_vec(bin_mask, (b, 1, d), dev)?;
    let mask = frame_mask
        .broadcast_maximum(&bin_mask)?
        .broadcast_minimum(&valid)?
        .reshape((1, b * t, d))?
        .broadcast_as((layers, b * t, d))?;
    Ok(mask
        .where_cond(&fill, &x)?
        .reshape(dims)?
        .to_dtype(features.dtype())?)
}

/// Padded model inputs of one batch.
#[derive(Debug, Clone)]
pub struct Inputs {
    /// `[B, F, bins]` filterbanks or `[L, B, T, D]` hidden states.
    pub features: Tensor,
    /// Valid input frames per utterance.
    pub lens: Vec<usize>,
}

/// One batch's inputs as far as they are made on the host (see
/// [`FeatureSource::host_inputs`]): what a background thread prepares while the model works on
/// the batch before, and [`FeatureSource::upload`] finishes.
#[derive(Debug, Clone)]
pub enum HostInputs {
    /// Zero-padded filterbanks `[B, frames, dim]`, SpecAugment already applied where asked.
    Fbank {
        /// Row-major values.
        data: Vec<f32>,
        /// Frames of the longest example.
        frames: usize,
        /// Filterbank bins.
        dim: usize,
        /// Valid frames per example.
        lens: Vec<usize>,
    },
    /// Each example's 16 kHz waveform for the backbone, and the SpecAugment still to be applied
    /// to its hidden states, with one seed per example.
    Waves {
        /// The waveforms.
        waves: Vec<Vec<f32>>,
        /// SpecAugment and seeds, if asked.
        augment: Option<(SpecAugment, Vec<u64>)>,
    },
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
                let dir = backbone.ok_or_else(|| TrainError::NoBackbone)?;
                let b = Backbone::load(dir, dev)?;
                if b.num_hidden_states() != *layers || b.hidden_size() != *dim {
                    return Err(TrainError::BackboneMismatch {
                        dir: dir.to_path_buf(),
                        states: b.num_hidden_states(),
                        width: b.hidden_size(),
                        expected_states: *layers,
                        expected_width: *dim,
                    });
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
            return Err(TrainError::FrontEnd {
                reads: "a backbone's hidden states",
                got: "a request for filterbanks".into(),
            });
        };
        if let Some(c) = cache
            && let Some(f) = c
                .lock()
                .map_err(|_| TrainError::Poisoned {
                    what: "feature cache",
                })?
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
                .map_err(|_| TrainError::Poisoned {
                    what: "feature cache",
                })?
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
            FeatureSource::Fbank { .. } => Err(TrainError::FrontEnd {
                reads: "filterbanks (in f32)",
                got: format!("backbone dtype {dtype:?}"),
            }),
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
    /// gain in the log domain (see [`apply_gain`]). A silent part is left as it is.
    pub fn inputs_matched(
        &self,
        utts: &[Vec<(&str, &Path, Segment)>],
        speeds: &[f64],
        match_loudness: bool,
        dev: &Device,
    ) -> Result<Inputs, TrainError> {
        self.upload(
            self.host_inputs(utts, speeds, &[], match_loudness, None)?,
            dev,
        )
    }

    /// The host's share of [`inputs_matched`](Self::inputs_matched), with each example played
    /// at its gain in `gains_db` (empty: none; after loudness matching, so a joined example's
    /// parts keep their relative levels) and SpecAugment (one seed per example) where `augment`
    /// asks for it: audio loaded, joined, loudness-matched, sped up and scaled; for filterbanks
    /// also the features computed (or taken from the cache), padded and augmented; for a
    /// backbone the augmentation is left for its hidden states. Needs no device, so it can run
    /// in a background thread.
    pub fn host_inputs(
        &self,
        utts: &[Vec<(&str, &Path, Segment)>],
        speeds: &[f64],
        gains_db: &[f64],
        match_loudness: bool,
        augment: Option<(&SpecAugment, &[u64])>,
    ) -> Result<HostInputs, TrainError> {
        if let Some((_, seeds)) = augment
            && seeds.len() != utts.len()
        {
            return Err(TrainError::BatchSize {
                arg: "SpecAugment seeds",
                got: seeds.len(),
                batch: utts.len(),
            });
        }
        if let Some(i) = utts.iter().position(Vec::is_empty) {
            return Err(TrainError::NoAudio { index: i });
        }
        if !speeds.is_empty() && speeds.len() != utts.len() {
            return Err(TrainError::BatchSize {
                arg: "speed factors",
                got: speeds.len(),
                batch: utts.len(),
            });
        }
        if !gains_db.is_empty() && gains_db.len() != utts.len() {
            return Err(TrainError::BatchSize {
                arg: "gains",
                got: gains_db.len(),
                batch: utts.len(),
            });
        }
        let speed = |b: usize| speeds.get(b).copied().unwrap_or(1.0);
        let gain_db = |b: usize| gains_db.get(b).copied().unwrap_or(0.0);
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
                // Parts brought to their example's first part's level, where asked, and the
                // whole example to its gain: power ratios, as log-domain offsets.
                let matched: Vec<Vec<Option<Vec<f32>>>> = feats
                    .iter()
                    .enumerate()
                    .map(|(b, parts)| {
                        let reference = parts[0].1;
                        let gain = gain_db(b) * std::f64::consts::LN_10 / 10.0;
                        parts
                            .iter()
                            .enumerate()
                            .map(|(i, (f, power))| {
                                let ratio = level_ratio(reference, *power);
                                let matching = match_loudness && i > 0 && ratio != 1.0;
                                let offset = if matching { ratio.ln() } else { 0.0 } + gain;
                                (offset != 0.0).then(|| apply_gain(f, offset as f32))
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
                let (mut data, frames, lens) = fbank_host(&parts, dim);
                if let Some((aug, seeds)) = augment {
                    spec_augment_host(&mut data, utts.len(), frames, dim, &lens, aug, seeds)?;
                }
                Ok(HostInputs::Fbank {
                    data,
                    frames,
                    dim,
                    lens,
                })
            }
            FeatureSource::Backbone(_) => {
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
                        if gain_db(b) != 0.0 {
                            let g = 10f64.powf(gain_db(b) / 20.0) as f32;
                            w.iter_mut().for_each(|x| *x *= g);
                        }
                        Ok(w)
                    })
                    .collect::<Result<_, _>>()?;
                Ok(HostInputs::Waves {
                    waves,
                    augment: augment.map(|(a, seeds)| (a.clone(), seeds.to_vec())),
                })
            }
        }
    }

    /// Model inputs on `dev` from a batch's [`HostInputs`]: filterbanks uploaded; waveforms
    /// run through the backbone, then augmented on `dev` if asked.
    pub fn upload(&self, host: HostInputs, dev: &Device) -> Result<Inputs, TrainError> {
        match (self, host) {
            (
                _,
                HostInputs::Fbank {
                    data,
                    frames,
                    dim,
                    lens,
                },
            ) => Ok(Inputs {
                features: Tensor::from_vec(data, (lens.len(), frames, dim), dev)?,
                lens,
            }),
            (FeatureSource::Backbone(bb), HostInputs::Waves { waves, augment }) => {
                let waves: Vec<&[f32]> = waves.iter().map(Vec::as_slice).collect();
                let mut inputs = backbone_inputs(bb, &waves, dev)?;
                if let Some((aug, seeds)) = augment {
                    inputs.features = spec_augment(&inputs.features, &inputs.lens, &aug, &seeds)?;
                }
                Ok(inputs)
            }
            (FeatureSource::Fbank { .. }, HostInputs::Waves { .. }) => Err(TrainError::FrontEnd {
                reads: "filterbanks",
                got: "waveforms for a backbone".into(),
            }),
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
                let (data, frames, lens) = fbank_host(&parts, fbank.dim());
                self.upload(
                    HostInputs::Fbank {
                        data,
                        frames,
                        dim: fbank.dim(),
                        lens,
                    },
                    dev,
                )
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

/// Log-mel filterbanks `f` of a waveform as those of the waveform scaled to `exp(offset)`
/// times its power: `offset` added to every value above the log floor (`ln f32::EPSILON`),
/// never taking one below it; values at the floor (digital silence) stay there. Exact
/// wherever the unscaled energy was above the floor or zero.
pub fn apply_gain(f: &[f32], offset: f32) -> Vec<f32> {
    let floor = LOG_FLOOR_INPUT.ln();
    f.iter()
        .map(|&v| {
            if v > floor {
                (v + offset).max(floor)
            } else {
                v
            }
        })
        .collect()
}

/// Filterbank frames of each example (its parts joined), zero-padded to `[B, F, dim]`: the
/// values, `F` and each example's frames.
fn fbank_host(examples: &[Vec<&[f32]>], dim: usize) -> (Vec<f32>, usize, Vec<usize>) {
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
    (data, t, lens)
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
