//! Global cepstral mean and variance normalisation.
//!
//! [`CmvnStats`] accumulates per-dimension sums over a dataset in f64 (so a thousand hours of
//! features lose nothing to rounding), can be merged across workers, and is saved as JSON that
//! keeps the sums exactly. [`GlobalCmvn`] turns them into `(x - mean) / std` per dimension.

use std::path::Path;

use candle_core::{DType, Device, Tensor};
use serde::{Deserialize, Serialize};

use crate::error::FeatureError;

/// Format tag written into saved statistics.
const FORMAT: &str = "ent-cmvn-stats-v1";

/// Smallest variance used when normalising: a dimension that never varies is centred and
/// scaled by at most `1 / sqrt(VARIANCE_FLOOR) = 1e5`, not divided by zero.
pub const VARIANCE_FLOOR: f64 = 1e-10;

/// Per-dimension count, sum and sum of squares.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CmvnStats {
    format: String,
    /// Number of frames accumulated.
    pub count: u64,
    /// Sum of each dimension.
    pub sum: Vec<f64>,
    /// Sum of squares of each dimension.
    pub sum_sq: Vec<f64>,
}

impl CmvnStats {
    /// Empty statistics for `dim`-dimensional features.
    pub fn new(dim: usize) -> Self {
        Self {
            format: FORMAT.into(),
            count: 0,
            sum: vec![0.0; dim],
            sum_sq: vec![0.0; dim],
        }
    }

    /// Feature dimension.
    pub fn dim(&self) -> usize {
        self.sum.len()
    }

    /// Adds the frames of a `[frames, dim]` tensor. Non-finite values are refused (one NaN
    /// would poison the statistics of a whole dataset).
    pub fn accumulate(&mut self, features: &Tensor) -> Result<(), FeatureError> {
        let (frames, dim) = self.check_shape(features)?;
        let data = features
            .to_dtype(DType::F32)?
            .to_device(&Device::Cpu)?
            .flatten_all()?
            .to_vec1::<f32>()?;
        self.accumulate_slice(&data, frames, dim)
    }

    /// Adds row-major `[frames, dim]` values.
    pub fn accumulate_slice(
        &mut self,
        data: &[f32],
        frames: usize,
        dim: usize,
    ) -> Result<(), FeatureError> {
        if dim == 0 || dim != self.dim() || frames.checked_mul(dim) != Some(data.len()) {
            return Err(FeatureError::invalid(
                "features",
                format!(
                    "{} values as [{frames}, {dim}] for statistics of dimension {}",
                    data.len(),
                    self.dim()
                ),
            ));
        }
        if let Some(i) = data.iter().position(|x| !x.is_finite()) {
            return Err(FeatureError::invalid(
                "features",
                format!(
                    "value {} at frame {}, dimension {} is not finite",
                    data[i],
                    i / dim,
                    i % dim
                ),
            ));
        }
        for row in data.chunks_exact(dim) {
            for ((s, q), &x) in self.sum.iter_mut().zip(&mut self.sum_sq).zip(row) {
                let x = x as f64;
                *s += x;
                *q += x * x;
            }
        }
        self.count += frames as u64;
        Ok(())
    }

    /// Adds another worker's statistics.
    pub fn merge(&mut self, other: &CmvnStats) -> Result<(), FeatureError> {
        if other.dim() != self.dim() {
            return Err(FeatureError::invalid(
                "statistics",
                format!("cannot merge dimension {} into {}", other.dim(), self.dim()),
            ));
        }
        self.count += other.count;
        self.sum
            .iter_mut()
            .zip(&other.sum)
            .for_each(|(a, b)| *a += b);
        self.sum_sq
            .iter_mut()
            .zip(&other.sum_sq)
            .for_each(|(a, b)| *a += b);
        Ok(())
    }

    /// Per-dimension mean and (population) variance.
    pub fn mean_var(&self) -> Result<(Vec<f64>, Vec<f64>), FeatureError> {
        if self.count == 0 {
            return Err(FeatureError::invalid(
                "statistics",
                "no frames accumulated".to_string(),
            ));
        }
        let n = self.count as f64;
        let mean: Vec<f64> = self.sum.iter().map(|s| s / n).collect();
        let var = self
            .sum_sq
            .iter()
            .zip(&mean)
            .map(|(q, m)| (q / n - m * m).max(0.0))
            .collect();
        Ok((mean, var))
    }

    /// Writes the statistics as JSON, atomically (`ent_common::fs::write_atomic`): a crash
    /// leaves either the old file or the new one.
    pub fn save(&self, path: impl AsRef<Path>) -> Result<(), FeatureError> {
        let path = path.as_ref();
        let io = |source| FeatureError::Io {
            path: path.to_path_buf(),
            source,
        };
        let json = serde_json::to_vec_pretty(self)
            .map_err(|e| io(std::io::Error::other(e.to_string())))?;
        ent_common::fs::write_atomic(path, &json).map_err(io)
    }

    /// Reads statistics written by [`CmvnStats::save`].
    pub fn load(path: impl AsRef<Path>) -> Result<Self, FeatureError> {
        let path = path.as_ref();
        let bytes = std::fs::read(path).map_err(|source| FeatureError::Io {
            path: path.to_path_buf(),
            source,
        })?;
        let bad = |detail: String| FeatureError::Stats {
            path: path.to_path_buf(),
            detail,
        };
        let stats: CmvnStats = serde_json::from_slice(&bytes).map_err(|e| bad(e.to_string()))?;
        if stats.format != FORMAT {
            return Err(bad(format!(
                "format {:?}, expected {FORMAT:?}",
                stats.format
            )));
        }
        if stats.sum.len() != stats.sum_sq.len() {
            return Err(bad(format!(
                "{} sums but {} sums of squares",
                stats.sum.len(),
                stats.sum_sq.len()
            )));
        }
        if stats
            .sum
            .iter()
            .chain(&stats.sum_sq)
            .any(|x| !x.is_finite())
        {
            return Err(bad("a sum is not finite".into()));
        }
        Ok(stats)
    }

    fn check_shape(&self, features: &Tensor) -> Result<(usize, usize), FeatureError> {
        frames_of(features, self.dim())
    }
}

/// `(frames, dim)` of a `[frames, dim]` tensor, or the error naming its shape.
fn frames_of(features: &Tensor, dim: usize) -> Result<(usize, usize), FeatureError> {
    match features.dims2() {
        Ok((frames, d)) if d == dim => Ok((frames, d)),
        _ => Err(FeatureError::invalid(
            "features",
            format!("shape {:?} is not [frames, {dim}]", features.dims()),
        )),
    }
}

/// Normalisation derived from [`CmvnStats`]: `(x - mean) * scale` per dimension.
#[derive(Debug, Clone, PartialEq)]
pub struct GlobalCmvn {
    mean: Vec<f32>,
    scale: Vec<f32>,
}

impl GlobalCmvn {
    /// Mean normalisation, and variance normalisation when `norm_vars` (variances floored at
    /// [`VARIANCE_FLOOR`]).
    pub fn from_stats(stats: &CmvnStats, norm_vars: bool) -> Result<Self, FeatureError> {
        let (mean, var) = stats.mean_var()?;
        Ok(Self {
            mean: mean.iter().map(|&m| m as f32).collect(),
            scale: var
                .iter()
                .map(|&v| {
                    if norm_vars {
                        (1.0 / v.max(VARIANCE_FLOOR).sqrt()) as f32
                    } else {
                        1.0
                    }
                })
                .collect(),
        })
    }

    /// Feature dimension.
    pub fn dim(&self) -> usize {
        self.mean.len()
    }

    /// Per-dimension mean subtracted.
    pub fn mean(&self) -> &[f32] {
        &self.mean
    }

    /// Per-dimension factor applied after subtracting the mean (`1 / std`, or 1).
    pub fn scale(&self) -> &[f32] {
        &self.scale
    }

    /// Normalises a `[frames, dim]` tensor (any float dtype and device; same out).
    pub fn apply(&self, features: &Tensor) -> Result<Tensor, FeatureError> {
        let (_, dim) = frames_of(features, self.dim())?;
        let dev = features.device();
        let mean = Tensor::from_slice(&self.mean, (1, dim), dev)?.to_dtype(features.dtype())?;
        let scale = Tensor::from_slice(&self.scale, (1, dim), dev)?.to_dtype(features.dtype())?;
        Ok(features.broadcast_sub(&mean)?.broadcast_mul(&scale)?)
    }

    /// Normalises row-major `[frames, dim]` values in place.
    pub fn apply_in_place(&self, data: &mut [f32]) -> Result<(), FeatureError> {
        if self.dim() == 0 || !data.len().is_multiple_of(self.dim()) {
            return Err(FeatureError::invalid(
                "features",
                format!("{} values are not rows of {}", data.len(), self.dim()),
            ));
        }
        for row in data.chunks_exact_mut(self.dim()) {
            for ((x, m), s) in row.iter_mut().zip(&self.mean).zip(&self.scale) {
                *x = (*x - m) * s;
            }
        }
        Ok(())
    }
}
