//! Reading checkpoint tensors: safetensors (single or sharded) or a PyTorch `.bin` state dict,
//! with or without the base model's key prefix.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use candle_core::{DType, Device, Tensor};

use crate::BackboneError;
use crate::config::Architecture;

/// The weight files a checkpoint folder may hold, in the order they are looked for.
pub(crate) const WEIGHT_FILES: [&str; 3] = [
    "model.safetensors",
    "model.safetensors.index.json",
    "pytorch_model.bin",
];

/// All tensors of a checkpoint, by name, still in the file's dtype, on the CPU.
pub(crate) struct Weights {
    /// The file (or shard index) the tensors came from, for error messages.
    path: PathBuf,
    tensors: HashMap<String, Tensor>,
    /// `""` or the architecture's prefix (`wav2vec2.`), as the file's keys use it.
    prefix: &'static str,
    device: Device,
    /// Full names handed out by `get`, to find tensors the configuration does not explain.
    used: std::cell::RefCell<std::collections::HashSet<String>>,
}

impl Weights {
    /// Reads the first weights file of [`WEIGHT_FILES`] present in `dir`.
    pub(crate) fn from_dir(
        dir: &Path,
        arch: Architecture,
        device: &Device,
    ) -> Result<Self, BackboneError> {
        let Some(file) = WEIGHT_FILES
            .iter()
            .map(|f| dir.join(f))
            .find(|p| p.is_file())
        else {
            return Err(BackboneError::MissingFile {
                dir: dir.to_owned(),
                what: "weights",
                tried: WEIGHT_FILES.iter().map(|s| s.to_string()).collect(),
            });
        };
        Self::from_file(&file, arch, device)
    }

    /// Reads one weights file: `*.safetensors`, a `*.safetensors.index.json` shard index, or a
    /// PyTorch state dict (`*.bin`, `*.pt`, `*.pth`).
    pub(crate) fn from_file(
        file: &Path,
        arch: Architecture,
        device: &Device,
    ) -> Result<Self, BackboneError> {
        let name = file
            .file_name()
            .and_then(|n| n.to_str())
            .unwrap_or_default();
        let tensors = if name.ends_with(".safetensors") {
            read_safetensors(file)?
        } else if name.ends_with(".index.json") {
            read_sharded(file)?
        } else {
            read_pytorch(file)?
        };
        let mut weights = Self {
            path: file.to_owned(),
            tensors,
            prefix: "",
            device: device.clone(),
            used: Default::default(),
        };
        let probe = "feature_extractor.conv_layers.0.conv.weight";
        let prefixed = format!("{}{probe}", arch.key_prefix());
        weights.prefix = if weights.tensors.contains_key(&prefixed) {
            arch.key_prefix()
        } else if weights.tensors.contains_key(probe) {
            ""
        } else {
            return Err(BackboneError::MissingTensor {
                path: file.to_owned(),
                name: probe.into(),
                hint: format!(
                    " (nor `{prefixed}`): not a {arch:?} checkpoint, or not a speech model at all"
                ),
            });
        };
        Ok(weights)
    }

    /// Whether the file has tensor `name` (without the prefix).
    pub(crate) fn contains(&self, name: &str) -> bool {
        self.tensors.contains_key(&format!("{}{name}", self.prefix))
    }

    /// Tensor `name` (without the prefix) as f32 on the model's device, checked against `shape`.
    pub(crate) fn get(&self, name: &str, shape: &[usize]) -> Result<Tensor, BackboneError> {
        let full = format!("{}{name}", self.prefix);
        let Some(t) = self.tensors.get(&full) else {
            return Err(BackboneError::MissingTensor {
                path: self.path.clone(),
                name: full,
                hint: String::new(),
            });
        };
        if t.dims() != shape {
            return Err(BackboneError::Shape {
                path: self.path.clone(),
                name: full,
                expected: shape.to_vec(),
                found: t.dims().to_vec(),
            });
        }
        self.used.borrow_mut().insert(full.clone());
        if !t.dtype().is_float() {
            return Err(BackboneError::Weights {
                path: self.path.clone(),
                detail: format!(
                    "tensor `{full}` has dtype {:?}, not a float type",
                    t.dtype()
                ),
            });
        }
        Ok(t.to_dtype(DType::F32)?.to_device(&self.device)?)
    }

    /// The first of `names` (without the prefix) the file has, for tensors stored under several
    /// conventions; the error lists all of them.
    pub(crate) fn first_of<'a>(&self, names: &[&'a str]) -> Result<&'a str, BackboneError> {
        names
            .iter()
            .copied()
            .find(|n| self.contains(n))
            .ok_or_else(|| BackboneError::MissingTensor {
                path: self.path.clone(),
                name: format!("{}{}", self.prefix, names[0]),
                hint: format!(
                    " (nor {})",
                    names[1..]
                        .iter()
                        .map(|n| format!("`{}{n}`", self.prefix))
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
            })
    }

    /// Fails on a tensor of the base model's front end, projection or encoder that was never
    /// asked for: the configuration does not describe this checkpoint (a WavLM checkpoint under
    /// `model_type: wav2vec2`, convolution biases with `conv_bias: false`, ...), and running it
    /// would give wrong numbers silently. Heads and pre-training parts are not checked.
    pub(crate) fn check_all_used(&self, also_ignore: &[&str]) -> Result<(), BackboneError> {
        let used = self.used.borrow();
        let mut unused: Vec<&String> = self
            .tensors
            .keys()
            .filter(|k| !used.contains(*k))
            .filter(|k| {
                let Some(rest) = k.strip_prefix(self.prefix) else {
                    return false;
                };
                ["feature_extractor.", "feature_projection.", "encoder."]
                    .iter()
                    .any(|p| rest.starts_with(p))
                    && !also_ignore.contains(&rest)
            })
            .collect();
        unused.sort();
        if let Some(first) = unused.first() {
            return Err(BackboneError::Weights {
                path: self.path.clone(),
                detail: format!(
                    "tensor `{first}`{} is not part of the model config.json describes: the configuration does not match the checkpoint",
                    if unused.len() > 1 {
                        format!(" (and {} more)", unused.len() - 1)
                    } else {
                        String::new()
                    }
                ),
            });
        }
        Ok(())
    }
}

fn io_err(path: &Path) -> impl FnOnce(std::io::Error) -> BackboneError + '_ {
    move |source| BackboneError::Io {
        path: path.to_owned(),
        source,
    }
}

fn weights_err(path: &Path, detail: impl std::fmt::Display) -> BackboneError {
    BackboneError::Weights {
        path: path.to_owned(),
        detail: detail.to_string(),
    }
}

fn read_safetensors(path: &Path) -> Result<HashMap<String, Tensor>, BackboneError> {
    use candle_core::safetensors::Load;
    let bytes = std::fs::read(path).map_err(io_err(path))?;
    let st = safetensors::SafeTensors::deserialize(&bytes)
        .map_err(|e| weights_err(path, format!("not a valid safetensors file: {e}")))?;
    st.tensors()
        .into_iter()
        .map(|(name, view)| {
            let t = view
                .load(&Device::Cpu)
                .map_err(|e| weights_err(path, format!("tensor `{name}`: {e}")))?;
            Ok((name, t))
        })
        .collect()
}

/// The shard files a `model.safetensors.index.json` names, sorted, each once.
pub(crate) fn shard_files(index: &Path) -> Result<Vec<String>, BackboneError> {
    #[derive(serde::Deserialize)]
    struct Index {
        weight_map: HashMap<String, String>,
    }
    let text = std::fs::read_to_string(index).map_err(io_err(index))?;
    let parsed: Index = serde_json::from_str(&text)
        .map_err(|e| weights_err(index, format!("not a safetensors shard index: {e}")))?;
    let mut shards: Vec<String> = parsed.weight_map.into_values().collect();
    shards.sort();
    shards.dedup();
    Ok(shards)
}

fn read_sharded(index: &Path) -> Result<HashMap<String, Tensor>, BackboneError> {
    let shards = shard_files(index)?;
    let dir = index.parent().unwrap_or(Path::new("."));
    let mut all = HashMap::new();
    for shard in shards {
        let path = dir.join(&shard);
        if !path.is_file() {
            return Err(BackboneError::MissingFile {
                dir: dir.to_owned(),
                what: "weight shard named in the index",
                tried: vec![shard],
            });
        }
        all.extend(read_safetensors(&path)?);
    }
    Ok(all)
}

fn read_pytorch(path: &Path) -> Result<HashMap<String, Tensor>, BackboneError> {
    // candle's reader of the zip format `torch.save` has written since PyTorch 1.6.
    std::fs::metadata(path).map_err(io_err(path))?;
    let pth = candle_core::pickle::PthTensors::new(path, None)
        .map_err(|e| weights_err(path, format!("not a readable PyTorch checkpoint: {e}")))?;
    let names: Vec<String> = pth.tensor_infos().keys().cloned().collect();
    let mut all = HashMap::with_capacity(names.len());
    for name in names {
        match pth.get(&name) {
            Ok(Some(t)) => {
                all.insert(name, t);
            }
            Ok(None) => {}
            Err(e) => return Err(weights_err(path, format!("tensor `{name}`: {e}"))),
        }
    }
    Ok(all)
}
