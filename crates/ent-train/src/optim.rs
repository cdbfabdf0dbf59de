//! AdamW with parameter groups, the per-step cosine schedule and gradient-norm clipping
//! (docs/method.md §4). candle-nn has neither clipping nor schedules, and its AdamW has no groups.

use std::collections::BTreeMap;

use candle_core::backprop::GradStore;
use candle_core::{DType, Tensor, Var};
use serde::{Deserialize, Serialize};

/// Optimiser and schedule settings; the defaults are the paper's.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct OptimConfig {
    /// Peak learning rate.
    pub lr: f64,
    /// Adam `beta1`.
    pub beta1: f64,
    /// Adam `beta2`.
    pub beta2: f64,
    /// Adam `eps`.
    pub eps: f64,
    /// Decoupled weight decay, applied to matrices only (not to biases or 1-D parameters).
    pub weight_decay: f64,
    /// Warm-up length in epochs (converted to steps with the epoch length).
    pub warmup_epochs: f64,
    /// Learning rate at step 0 of the warm-up.
    pub warmup_start_lr: f64,
    /// Floor of the cosine decay.
    pub min_lr: f64,
    /// Clip the global gradient norm to this (`None`: no clipping).
    pub clip_grad_norm: Option<f64>,
}

impl Default for OptimConfig {
    fn default() -> Self {
        Self {
            lr: 5e-4,
            beta1: 0.9,
            beta2: 0.999,
            eps: 1e-8,
            weight_decay: 0.05,
            warmup_epochs: 5.0,
            warmup_start_lr: 5e-7,
            min_lr: 5e-6,
            clip_grad_norm: Some(5.0),
        }
    }
}

/// Per-step cosine schedule with linear warm-up:
///
/// ```text
/// step < W:  lr = start + (peak - start) * step / W
/// else:      lr = min + (peak - min) * (1 + cos(pi * (step - W) / (N - W))) / 2
/// ```
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct CosineSchedule {
    /// Peak learning rate.
    pub peak: f64,
    /// Rate at step 0.
    pub start: f64,
    /// Floor reached at the last step.
    pub min: f64,
    /// Warm-up steps `W`.
    pub warmup_steps: u64,
    /// Total steps `N`.
    pub total_steps: u64,
}

impl CosineSchedule {
    /// The learning rate of optimiser step `step` (0-based).
    pub fn lr(&self, step: u64) -> f64 {
        if step < self.warmup_steps {
            return self.start + (self.peak - self.start) * step as f64 / self.warmup_steps as f64;
        }
        let span = self.total_steps.saturating_sub(self.warmup_steps).max(1) as f64;
        let progress = ((step - self.warmup_steps) as f64 / span).min(1.0);
        self.min + (self.peak - self.min) * (1.0 + (std::f64::consts::PI * progress).cos()) / 2.0
    }
}

/// Whether a parameter is decayed: matrices and higher, not biases or 1-D parameters.
pub fn decays(name: &str, rank: usize) -> bool {
    rank >= 2 && !name.ends_with("bias")
}

/// AdamW (Loshchilov and Hutter, 2019) over named variables, with PyTorch's update:
///
/// ```text
/// p -= lr * wd * p            (decayed parameters only)
/// m = b1 m + (1 - b1) g;  v = b2 v + (1 - b2) g^2
/// p -= lr * (m / (1 - b1^t)) / (sqrt(v / (1 - b2^t)) + eps)
/// ```
#[derive(Debug)]
pub struct AdamW {
    params: Vec<Param>,
    cfg: OptimConfig,
    step: u64,
}

#[derive(Debug)]
struct Param {
    name: String,
    var: Var,
    m: Tensor,
    v: Tensor,
    decay: bool,
}

impl AdamW {
    /// An optimiser over `vars` (name, variable), moments at zero.
    pub fn new(vars: Vec<(String, Var)>, cfg: OptimConfig) -> candle_core::Result<Self> {
        let mut params = Vec::with_capacity(vars.len());
        for (name, var) in vars {
            let zeros = var.zeros_like()?;
            params.push(Param {
                decay: decays(&name, var.rank()),
                m: zeros.clone(),
                v: zeros,
                name,
                var,
            });
        }
        params.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(Self {
            params,
            cfg,
            step: 0,
        })
    }

    /// Optimiser steps taken.
    pub fn steps(&self) -> u64 {
        self.step
    }

    /// The variables, sorted by name.
    pub fn vars(&self) -> impl Iterator<Item = (&str, &Var)> {
        self.params.iter().map(|p| (p.name.as_str(), &p.var))
    }

    /// One update with learning rate `lr`; `grads` maps parameter names to gradients. A
    /// parameter without a gradient is left alone (its moments do not move).
    pub fn step(&mut self, grads: &BTreeMap<String, Tensor>, lr: f64) -> candle_core::Result<()> {
        self.step += 1;
        let (b1, b2) = (self.cfg.beta1, self.cfg.beta2);
        let c1 = 1.0 - b1.powi(self.step as i32);
        let c2 = 1.0 - b2.powi(self.step as i32);
        for p in &mut self.params {
            let Some(g) = grads.get(&p.name) else {
                continue;
            };
            let mut theta = p.var.as_tensor().detach();
            if p.decay && self.cfg.weight_decay > 0.0 {
                theta = (&theta * (1.0 - lr * self.cfg.weight_decay))?;
            }
            p.m = ((&p.m * b1)? + (g * (1.0 - b1))?)?;
            p.v = ((&p.v * b2)? + (g.sqr()? * (1.0 - b2))?)?;
            let mhat = (&p.m / c1)?;
            let vhat = (&p.v / c2)?;
            let update = (mhat / (vhat.sqrt()? + self.cfg.eps)?)?;
            p.var.set(&(theta - (update * lr)?)?)?;
        }
        Ok(())
    }

    /// The moments as named tensors (`m.<name>`, `v.<name>`) for a checkpoint.
    pub fn state(&self) -> Vec<(String, Tensor)> {
        let mut out = Vec::with_capacity(2 * self.params.len());
        for p in &self.params {
            out.push((format!("m.{}", p.name), p.m.clone()));
            out.push((format!("v.{}", p.name), p.v.clone()));
        }
        out
    }

    /// Restores moments saved by [`AdamW::state`] and the step count. Every parameter must have
    /// both moments with its shape.
    pub fn load_state(
        &mut self,
        state: &BTreeMap<String, Tensor>,
        step: u64,
    ) -> Result<(), String> {
        for p in &mut self.params {
            for (kind, slot) in [("m", &mut p.m), ("v", &mut p.v)] {
                let key = format!("{kind}.{}", p.name);
                let t = state
                    .get(&key)
                    .ok_or_else(|| format!("optimizer state has no {key}"))?;
                if t.dims() != p.var.dims() {
                    return Err(format!(
                        "optimizer state {key} has shape {:?}, the parameter {:?}",
                        t.dims(),
                        p.var.dims()
                    ));
                }
                *slot = t.to_dtype(p.var.dtype()).map_err(|e| e.to_string())?;
            }
        }
        self.step = step;
        Ok(())
    }
}

/// Collects the gradients of `vars` from `grads` by name, adding them to `acc` (gradient
/// accumulation over micro-batches).
pub fn accumulate<'a>(
    acc: &mut BTreeMap<String, Tensor>,
    grads: &GradStore,
    vars: impl Iterator<Item = (&'a str, &'a Var)>,
) -> candle_core::Result<()> {
    for (name, var) in vars {
        if let Some(g) = grads.get(var) {
            let g = g.detach();
            let sum = match acc.remove(name) {
                Some(prev) => (prev + g)?,
                None => g,
            };
            acc.insert(name.to_string(), sum);
        }
    }
    Ok(())
}

/// Scales every gradient by `scale` in place.
pub fn scale(grads: &mut BTreeMap<String, Tensor>, scale: f64) -> candle_core::Result<()> {
    for g in grads.values_mut() {
        *g = (&*g * scale)?;
    }
    Ok(())
}

/// The global L2 norm of `grads`; if it exceeds `max`, every gradient is scaled by
/// `max / (norm + 1e-6)` (PyTorch's `clip_grad_norm_`). Returns the norm before clipping.
///
/// The squared sums are taken per tensor in f64 on the gradients' device and read back once:
/// on a GPU one host synchronisation per call, not one per parameter.
pub fn clip_grad_norm(
    grads: &mut BTreeMap<String, Tensor>,
    max: Option<f64>,
) -> candle_core::Result<f64> {
    let sums = grads
        .values()
        .map(|g| g.to_dtype(DType::F64)?.sqr()?.sum_all())
        .collect::<candle_core::Result<Vec<_>>>()?;
    let sq: f64 = if sums.is_empty() {
        0.0
    } else {
        Tensor::stack(&sums, 0)?.to_vec1::<f64>()?.iter().sum()
    };
    let norm = sq.sqrt();
    if let Some(max) = max
        && norm > max
    {
        scale(grads, max / (norm + 1e-6))?;
    }
    Ok(norm)
}
