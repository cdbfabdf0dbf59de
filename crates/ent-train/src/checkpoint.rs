//! Checkpoints that never lose work.
//!
//! One checkpoint is one safetensors file holding the model weights (`model.<name>`), the
//! optimiser moments (`optim.m.<name>`, `optim.v.<name>`) and, in the file's metadata, the
//! model configuration, vocabulary, emotion classes and training state (step, epoch, position in
//! the epoch, random generator state, best validation score) as JSON. It is written to a
//! temporary file in the same folder, flushed to disk (`fsync`), renamed over the old file and
//! the folder is synced, so a crash at any moment leaves either the previous checkpoint or the
//! new one, never a torn file.

use std::collections::{BTreeMap, HashMap};
use std::fs;
use std::path::Path;

use candle_core::safetensors::Load;
use candle_core::{DType, Device, Tensor};
use candle_nn::{VarBuilder, VarMap};
use ent_model::{Model, ModelConfig};
use serde::{Deserialize, Serialize};

use crate::data::{EmotionMap, Vocab};
use crate::error::TrainError;

/// Metadata key of the format version.
const FORMAT_KEY: &str = "ent.format";
/// The current format.
const FORMAT: &str = "1";
/// Metadata key of the [`CheckpointMeta`] JSON.
const META_KEY: &str = "ent.meta";

/// Where training stands, enough to continue exactly.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct TrainState {
    /// Optimiser steps taken.
    pub step: u64,
    /// Current epoch (0-based).
    pub epoch: u64,
    /// Batches of the current epoch already consumed.
    pub batch_in_epoch: u64,
    /// State of the dropout generator.
    pub rng_state: u64,
    /// Best validation score so far and the step it was reached at.
    pub best: Option<(f64, u64)>,
    /// Validation loss of the best checkpoint: among equal scores the lower loss wins (a small
    /// validation set reaches 100 % accuracy long before training has converged).
    #[serde(default)]
    pub best_loss: Option<f64>,
}

/// Everything in a checkpoint besides tensors.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CheckpointMeta {
    /// The model's configuration.
    pub model: ModelConfig,
    /// The vocabulary the model's outputs index.
    pub vocab: Vocab,
    /// The emotion classes the model's outputs index.
    pub emotions: EmotionMap,
    /// Training state (absent in an exported inference checkpoint).
    pub state: Option<TrainState>,
    /// Free-form provenance: the training configuration as JSON, the data, the date.
    #[serde(default)]
    pub notes: BTreeMap<String, String>,
}

/// A checkpoint in memory.
#[derive(Debug, Clone)]
pub struct Checkpoint {
    /// Configuration, vocabulary, labels and state.
    pub meta: CheckpointMeta,
    /// Model parameters and buffers by name.
    pub model: BTreeMap<String, Tensor>,
    /// Optimiser moments (`m.<name>`, `v.<name>`); empty for inference-only checkpoints.
    pub optim: BTreeMap<String, Tensor>,
}

/// safetensors writes its metadata map in hash order, which differs from one process to the
/// next; this puts every object of the JSON header in key order, so that the same checkpoint is
/// the same file. The header keeps its length (the same members, reordered; the padding
/// safetensors adds stays spaces), so every offset stays valid.
fn sorted_header(mut bytes: Vec<u8>) -> Result<Vec<u8>, String> {
    fn sorted(v: serde_json::Value) -> serde_json::Value {
        match v {
            serde_json::Value::Object(map) => {
                let mut members: Vec<_> = map.into_iter().collect();
                members.sort_by(|a, b| a.0.cmp(&b.0));
                serde_json::Value::Object(
                    members.into_iter().map(|(k, v)| (k, sorted(v))).collect(),
                )
            }
            other => other,
        }
    }
    let len = bytes
        .get(..8)
        .and_then(|b| <[u8; 8]>::try_from(b).ok())
        .map(u64::from_le_bytes)
        .and_then(|n| usize::try_from(n).ok())
        .filter(|&n| bytes.len() >= 8 + n)
        .ok_or("no safetensors header")?;
    let header = &mut bytes[8..8 + len];
    let value: serde_json::Value = serde_json::from_slice(header).map_err(|e| e.to_string())?;
    let text = serde_json::to_string(&sorted(value)).map_err(|e| e.to_string())?;
    if text.len() > len {
        return Err(format!(
            "the sorted header is {} bytes, not {len}",
            text.len()
        ));
    }
    header[..text.len()].copy_from_slice(text.as_bytes());
    header[text.len()..].fill(b' ');
    Ok(bytes)
}

impl Checkpoint {
    /// Writes the checkpoint to `path` atomically (temporary file, fsync, rename, fsync of the
    /// folder). The same checkpoint is always the same bytes.
    pub fn save(&self, path: &Path) -> Result<(), TrainError> {
        let mut tensors: Vec<(String, &Tensor)> = Vec::new();
        for (k, t) in &self.model {
            tensors.push((format!("model.{k}"), t));
        }
        for (k, t) in &self.optim {
            tensors.push((format!("optim.{k}"), t));
        }
        let mut info = HashMap::new();
        info.insert(FORMAT_KEY.to_string(), FORMAT.to_string());
        info.insert(
            META_KEY.to_string(),
            serde_json::to_string(&self.meta).map_err(|e| TrainError::io(path, e.to_string()))?,
        );
        let bytes = safetensors::serialize(tensors, Some(info))
            .map_err(|e| TrainError::io(path, format!("cannot serialise the checkpoint: {e}")))?;
        let bytes = sorted_header(bytes)
            .map_err(|e| TrainError::io(path, format!("cannot serialise the checkpoint: {e}")))?;
        ent_common::fs::write_atomic(path, &bytes).map_err(|e| TrainError::io(path, e.to_string()))
    }

    /// Reads a checkpoint written by [`Checkpoint::save`], tensors on `dev`.
    pub fn load(path: &Path, dev: &Device) -> Result<Self, TrainError> {
        let bytes = fs::read(path).map_err(|e| TrainError::io(path, e.to_string()))?;
        Self::from_bytes(&bytes, path, dev)
    }

    /// Reads a checkpoint from the bytes of a file written by [`Checkpoint::save`]; `path` names
    /// it in errors.
    pub fn from_bytes(bytes: &[u8], path: &Path, dev: &Device) -> Result<Self, TrainError> {
        let st = safetensors::SafeTensors::deserialize(bytes)
            .map_err(|e| TrainError::io(path, format!("not a safetensors checkpoint: {e}")))?;
        let (_, header) = safetensors::SafeTensors::read_metadata(bytes)
            .map_err(|e| TrainError::io(path, format!("not a safetensors checkpoint: {e}")))?;
        let info = header.metadata().clone().unwrap_or_default();
        match info.get(FORMAT_KEY).map(String::as_str) {
            Some(FORMAT) => {}
            Some(other) => {
                return Err(TrainError::io(
                    path,
                    format!(
                        "checkpoint format {other} is not supported (this build reads {FORMAT})"
                    ),
                ));
            }
            None => {
                return Err(TrainError::io(
                    path,
                    "not an ent checkpoint (no ent.format metadata)",
                ));
            }
        }
        let meta: CheckpointMeta = info
            .get(META_KEY)
            .ok_or_else(|| TrainError::io(path, "checkpoint has no ent.meta metadata"))
            .and_then(|s| {
                serde_json::from_str(s)
                    .map_err(|e| TrainError::io(path, format!("bad ent.meta: {e}")))
            })?;
        let mut model = BTreeMap::new();
        let mut optim = BTreeMap::new();
        for (name, view) in st.tensors() {
            let t = view
                .load(dev)
                .map_err(|e| TrainError::io(path, format!("tensor {name}: {e}")))?;
            if let Some(k) = name.strip_prefix("model.") {
                model.insert(k.to_string(), t);
            } else if let Some(k) = name.strip_prefix("optim.") {
                optim.insert(k.to_string(), t);
            } else {
                return Err(TrainError::io(path, format!("unexpected tensor {name}")));
            }
        }
        Ok(Self { meta, model, optim })
    }

    /// The model these weights belong to, ready for inference on `dev`; `path` names the
    /// checkpoint in errors (a missing tensor or a shape that does not match the config).
    pub fn build_model(&self, path: &Path, dev: &Device) -> Result<Model, TrainError> {
        let vm = VarMap::new();
        let model = Model::new(
            &self.meta.model,
            VarBuilder::from_varmap(&vm, DType::F32, dev),
        )?;
        load_vars(&vm, &self.model, path)?;
        Ok(model)
    }

    /// The same checkpoint without training state and optimiser moments: what inference needs.
    pub fn for_inference(&self) -> Self {
        Self {
            meta: CheckpointMeta {
                state: None,
                ..self.meta.clone()
            },
            model: self.model.clone(),
            optim: BTreeMap::new(),
        }
    }
}

/// Sets every variable of `vm` from `weights` (same name and shape, converted to the
/// variable's dtype and device); `path` names the checkpoint in errors.
pub(crate) fn load_vars(
    vm: &VarMap,
    weights: &BTreeMap<String, Tensor>,
    path: &Path,
) -> Result<(), TrainError> {
    let data = vm
        .data()
        .lock()
        .map_err(|_| TrainError::Poisoned { what: "var map" })?;
    for (name, var) in data.iter() {
        let t = weights
            .get(name)
            .ok_or_else(|| TrainError::io(path, format!("checkpoint has no tensor {name}")))?;
        if t.dims() != var.dims() {
            return Err(TrainError::io(
                path,
                format!(
                    "{name} has shape {:?}, the model {:?}",
                    t.dims(),
                    var.dims()
                ),
            ));
        }
        var.set(&t.to_dtype(var.dtype())?.to_device(var.device())?)?;
    }
    Ok(())
}
