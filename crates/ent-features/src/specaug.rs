//! SpecAugment (Park et al., 2019): time warping, frequency masks and time masks on a
//! `[frames, bins]` feature matrix.
//!
//! Everything is drawn from a [`SplitMix64`](crate::rng::SplitMix64) stream seeded by the caller,
//! in a fixed order (warp, then frequency masks, then time masks), so the same features and seed
//! give the same result on every machine and in every version of this crate.

use candle_core::{DType, Device, Tensor};
use serde::{Deserialize, Serialize};

use crate::error::FeatureError;
use crate::rng::SplitMix64;

/// What masked cells are set to. In JSON: `"zero"`, `"mean"` or `{"constant": v}`.
#[derive(Debug, Clone, Copy, PartialEq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum MaskValue {
    /// Zero: the mean after CMVN.
    #[default]
    Zero,
    /// The mean of the whole (unmasked) feature matrix, as Lhotse does.
    Mean,
    /// A constant.
    Constant(f32),
}

/// SpecAugment settings. The defaults follow Park et al.'s LibriSpeech policy (two frequency
/// masks of up to 27 bins, two time masks of up to 100 frames) with the time masks capped at
/// 20% of the utterance and a warp of up to 5 frames (ESPnet's default). In JSON every field
/// is optional (missing ones take these defaults) and unknown fields are errors.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SpecAugmentConfig {
    /// Number of frequency masks.
    pub freq_masks: usize,
    /// Largest frequency-mask width `F`: each width is uniform in `0..=F`.
    pub max_freq_width: usize,
    /// Number of time masks.
    pub time_masks: usize,
    /// Largest time-mask width `T`: each width is uniform in `0..=min(T, budget)`, the budget
    /// being `floor(p * frames)` less the frames earlier time masks already cover.
    pub max_time_width: usize,
    /// Cap `p` on the proportion of frames masked in time, in `[0, 1]`: every single mask and
    /// all time masks together cover at most `floor(p * frames)` frames.
    pub max_time_proportion: f32,
    /// Largest time-warp distance `W` in frames (0 = no warp). The frame at a point `c` uniform in
    /// `W..frames - W` moves to `c + w`, `w` uniform in `-W..=W`; both sides are stretched
    /// linearly (the destination is kept inside `1..frames - 1`). Utterances of `2 W + 1` frames or
    /// fewer are not warped.
    pub time_warp: usize,
    /// Value of masked cells.
    pub mask_value: MaskValue,
}

impl Default for SpecAugmentConfig {
    fn default() -> Self {
        Self {
            freq_masks: 2,
            max_freq_width: 27,
            time_masks: 2,
            max_time_width: 100,
            max_time_proportion: 0.2,
            time_warp: 5,
            mask_value: MaskValue::Zero,
        }
    }
}

/// What [`SpecAugment::apply_in_place`] did, for logging and tests.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Augmentation {
    /// `(centre, destination)` of the warp, if one was applied.
    pub warp: Option<(usize, usize)>,
    /// Masked bin ranges `start..end`.
    pub freq_masks: Vec<std::ops::Range<usize>>,
    /// Masked frame ranges `start..end`.
    pub time_masks: Vec<std::ops::Range<usize>>,
}

/// A checked SpecAugment policy.
#[derive(Debug, Clone)]
pub struct SpecAugment {
    config: SpecAugmentConfig,
}

impl SpecAugment {
    /// Checks the configuration.
    pub fn new(config: SpecAugmentConfig) -> Result<Self, FeatureError> {
        let p = config.max_time_proportion;
        if !(0.0..=1.0).contains(&p) {
            return Err(FeatureError::invalid(
                "max_time_proportion",
                format!("{p} must lie in [0, 1]"),
            ));
        }
        if let MaskValue::Constant(v) = config.mask_value
            && !v.is_finite()
        {
            return Err(FeatureError::invalid(
                "mask_value",
                format!("{v} is not finite"),
            ));
        }
        Ok(Self { config })
    }

    /// The configuration.
    pub fn config(&self) -> &SpecAugmentConfig {
        &self.config
    }

    /// Augments a `[frames, bins]` tensor (any float dtype, any device); the result has the same
    /// shape, dtype and device.
    pub fn apply(&self, features: &Tensor, seed: u64) -> Result<Tensor, FeatureError> {
        let (frames, bins) = features.dims2().map_err(|_| {
            FeatureError::invalid(
                "features",
                format!("shape {:?} is not [frames, bins]", features.dims()),
            )
        })?;
        let mut data = features
            .to_dtype(DType::F32)?
            .to_device(&Device::Cpu)?
            .flatten_all()?
            .to_vec1::<f32>()?;
        self.apply_in_place(&mut data, frames, bins, seed)?;
        Ok(Tensor::from_vec(data, (frames, bins), &Device::Cpu)?
            .to_dtype(features.dtype())?
            .to_device(features.device())?)
    }

    /// Augments row-major `[frames, bins]` values in place and reports what it did.
    pub fn apply_in_place(
        &self,
        data: &mut [f32],
        frames: usize,
        bins: usize,
        seed: u64,
    ) -> Result<Augmentation, FeatureError> {
        if frames.checked_mul(bins) != Some(data.len()) {
            return Err(FeatureError::invalid(
                "features",
                format!("{} values do not form [{frames}, {bins}]", data.len()),
            ));
        }
        if frames == 0 || bins == 0 {
            return Ok(Augmentation::default());
        }
        let fill = match self.config.mask_value {
            MaskValue::Zero => 0.0,
            MaskValue::Constant(v) => v,
            MaskValue::Mean => {
                (data.iter().map(|&x| x as f64).sum::<f64>() / data.len() as f64) as f32
            }
        };
        let done = self.plan(frames, bins, seed);
        if let Some((centre, dest)) = done.warp
            && dest != centre
        {
            warp(data, frames, bins, centre, dest);
        }
        for m in &done.freq_masks {
            for row in data.chunks_exact_mut(bins) {
                row[m.clone()].fill(fill);
            }
        }
        for m in &done.time_masks {
            data[m.start * bins..m.end * bins].fill(fill);
        }
        Ok(done)
    }

    /// What [`apply_in_place`](Self::apply_in_place) does to `[frames, bins]` features with
    /// `seed`, drawn without touching any features (the draws do not depend on them): for
    /// applying the same augmentation elsewhere, e.g. with tensor operations on a GPU. Warp
    /// first, then the frequency masks, then the time masks; masked cells take the
    /// [`MaskValue`] of the features before the warp.
    pub fn plan(&self, frames: usize, bins: usize, seed: u64) -> Augmentation {
        let c = &self.config;
        let mut rng = SplitMix64::new(seed);
        let mut done = Augmentation::default();
        if frames == 0 || bins == 0 {
            return done;
        }
        // frames > 2 W + 1, written so that no W overflows.
        if c.time_warp > 0 && frames / 2 > c.time_warp {
            let w = c.time_warp;
            let centre = rng.range_inclusive(w, frames - w - 1);
            // Both stretched sides keep at least one frame.
            let dest = rng.range_inclusive((centre - w).max(1), (centre + w).min(frames - 2));
            done.warp = Some((centre, dest));
        }
        for _ in 0..c.freq_masks {
            let width = rng.range_inclusive(0, c.max_freq_width.min(bins));
            let start = rng.range_inclusive(0, bins - width);
            done.freq_masks.push(start..start + width);
        }
        let budget = (c.max_time_proportion as f64 * frames as f64).floor() as usize;
        let mut masked = vec![false; frames];
        let mut used = 0usize;
        for _ in 0..c.time_masks {
            let width = rng.range_inclusive(0, c.max_time_width.min(budget - used));
            let start = rng.range_inclusive(0, frames - width);
            for m in &mut masked[start..start + width] {
                if !*m {
                    *m = true;
                    used += 1;
                }
            }
            done.time_masks.push(start..start + width);
        }
        done
    }
}

/// For every output frame `t` of a warp moving frame `centre` to `dest` (see [`warp`]):
/// the two source frames `(lo, hi)` and the weight `a` of `hi`, so that output frame `t` is
/// `x[lo] + a * (x[hi] - x[lo])`. Needs `0 < dest < frames - 1` and `centre < frames`, as
/// [`SpecAugment::plan`] draws them.
pub fn warp_sources(frames: usize, centre: usize, dest: usize) -> Vec<(usize, usize, f32)> {
    debug_assert!(
        0 < dest && dest + 1 < frames && centre < frames,
        "warp of {frames} frames from {centre} to {dest}"
    );
    (0..frames)
        .map(|t| {
            let pos = if t < dest {
                t as f64 * centre as f64 / dest as f64
            } else {
                centre as f64
                    + (t - dest) as f64 * (frames - 1 - centre) as f64 / (frames - 1 - dest) as f64
            };
            let lo = (pos.floor() as usize).min(frames - 1);
            let hi = (lo + 1).min(frames - 1);
            (lo, hi, (pos - lo as f64) as f32)
        })
        .collect()
}

/// Moves frame `centre` to `dest`, stretching `0..centre` onto `0..dest` and `centre..frames`
/// onto `dest..frames`, with linear interpolation between neighbouring frames.
fn warp(data: &mut [f32], frames: usize, bins: usize, centre: usize, dest: usize) {
    let src = data.to_vec();
    for (t, (lo, hi, a)) in warp_sources(frames, centre, dest).into_iter().enumerate() {
        let out = &mut data[t * bins..(t + 1) * bins];
        let (r0, r1) = (
            &src[lo * bins..(lo + 1) * bins],
            &src[hi * bins..(hi + 1) * bins],
        );
        for ((o, &x0), &x1) in out.iter_mut().zip(r0).zip(r1) {
            *o = x0 + a * (x1 - x0);
        }
    }
}
