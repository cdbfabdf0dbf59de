//! The Hugging Face `config.json` of a wav2vec2, HuBERT or WavLM checkpoint.
//!
//! Field names and defaults are those of transformers' `Wav2Vec2Config`, `HubertConfig` and
//! `WavLMConfig`; fields that only matter for training (dropouts, masking, quantiser, CTC) are
//! ignored. Settings this crate does not implement are refused with
//! [`BackboneError::Unsupported`] rather than silently ignored.

use std::path::Path;

use serde::Deserialize;

use crate::BackboneError;

/// Which of the three architectures a checkpoint is, from its `model_type`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Architecture {
    /// `model_type: "wav2vec2"`.
    Wav2Vec2,
    /// `model_type: "hubert"`.
    Hubert,
    /// `model_type: "wavlm"`: gated relative position bias in every attention layer.
    WavLm,
}

impl Architecture {
    /// The key prefix of the base model in checkpoints that carry a head (`wav2vec2.`, ...).
    pub fn key_prefix(self) -> &'static str {
        match self {
            Self::Wav2Vec2 => "wav2vec2.",
            Self::Hubert => "hubert.",
            Self::WavLm => "wavlm.",
        }
    }
}

/// The normalisation of the convolutional feature extractor (`feat_extract_norm`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FeatExtractNorm {
    /// `"group"`: a per-channel GroupNorm over time after the first convolution only (base models).
    Group,
    /// `"layer"`: a LayerNorm over channels after every convolution (large "lv60" style models).
    Layer,
}

/// An activation function named in the configuration.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Activation {
    /// `"gelu"`: the exact, erf-based GELU.
    Gelu,
    /// `"gelu_new"`, `"gelu_pytorch_tanh"`, `"gelu_fast"`: the tanh approximation.
    GeluTanh,
    /// `"relu"`.
    Relu,
    /// `"silu"` or `"swish"`.
    Silu,
}

impl Activation {
    fn parse(name: &str) -> Option<Self> {
        Some(match name {
            "gelu" => Self::Gelu,
            "gelu_new" | "gelu_pytorch_tanh" | "gelu_fast" => Self::GeluTanh,
            "relu" => Self::Relu,
            "silu" | "swish" => Self::Silu,
            _ => return None,
        })
    }

    pub(crate) fn apply(self, x: &candle_core::Tensor) -> candle_core::Result<candle_core::Tensor> {
        match self {
            Self::Gelu => x.gelu_erf(),
            Self::GeluTanh => x.gelu(),
            Self::Relu => x.relu(),
            Self::Silu => x.silu(),
        }
    }
}

/// The architecture-relevant part of a checkpoint's `config.json`.
#[derive(Debug, Clone, PartialEq)]
pub struct BackboneConfig {
    /// From `model_type`.
    pub architecture: Architecture,
    /// Transformer width D (`hidden_size`).
    pub hidden_size: usize,
    /// Number of transformer layers (`num_hidden_layers`); the output has one more hidden state.
    pub num_hidden_layers: usize,
    /// Attention heads per layer (`num_attention_heads`).
    pub num_attention_heads: usize,
    /// Feed-forward width (`intermediate_size`).
    pub intermediate_size: usize,
    /// Feed-forward activation (`hidden_act`).
    pub hidden_act: Activation,
    /// Epsilon of the transformer's LayerNorms (`layer_norm_eps`).
    pub layer_norm_eps: f64,
    /// Normalisation of the convolutional front end (`feat_extract_norm`).
    pub feat_extract_norm: FeatExtractNorm,
    /// Activation of the front end and the positional convolution (`feat_extract_activation`).
    pub feat_extract_activation: Activation,
    /// Output channels of each front-end convolution (`conv_dim`).
    pub conv_dim: Vec<usize>,
    /// Strides of the front-end convolutions (`conv_stride`).
    pub conv_stride: Vec<usize>,
    /// Kernel widths of the front-end convolutions (`conv_kernel`).
    pub conv_kernel: Vec<usize>,
    /// Whether the front-end convolutions have biases (`conv_bias`).
    pub conv_bias: bool,
    /// Kernel width of the positional convolution (`num_conv_pos_embeddings`).
    pub num_conv_pos_embeddings: usize,
    /// Groups of the positional convolution (`num_conv_pos_embedding_groups`).
    pub num_conv_pos_embedding_groups: usize,
    /// Pre-LayerNorm transformer layers and a final LayerNorm (`do_stable_layer_norm`).
    pub do_stable_layer_norm: bool,
    /// HuBERT only: LayerNorm before the feature projection (`feat_proj_layer_norm`).
    pub feat_proj_layer_norm: bool,
    /// WavLM only: relative-position buckets (`num_buckets`).
    pub num_buckets: usize,
    /// WavLM only: the distance at which buckets stop growing (`max_bucket_distance`).
    pub max_bucket_distance: usize,
}

#[derive(Deserialize)]
struct RawConfig {
    model_type: Option<String>,
    #[serde(default = "d::hidden_size")]
    hidden_size: usize,
    #[serde(default = "d::layers")]
    num_hidden_layers: usize,
    #[serde(default = "d::heads")]
    num_attention_heads: usize,
    #[serde(default = "d::intermediate")]
    intermediate_size: usize,
    #[serde(default = "d::gelu")]
    hidden_act: String,
    #[serde(default = "d::eps")]
    layer_norm_eps: f64,
    #[serde(default = "d::group")]
    feat_extract_norm: String,
    #[serde(default = "d::gelu")]
    feat_extract_activation: String,
    #[serde(default = "d::conv_dim")]
    conv_dim: Vec<usize>,
    #[serde(default = "d::conv_stride")]
    conv_stride: Vec<usize>,
    #[serde(default = "d::conv_kernel")]
    conv_kernel: Vec<usize>,
    #[serde(default)]
    conv_bias: bool,
    #[serde(default = "d::pos_kernel")]
    num_conv_pos_embeddings: usize,
    #[serde(default = "d::pos_groups")]
    num_conv_pos_embedding_groups: usize,
    #[serde(default)]
    do_stable_layer_norm: bool,
    #[serde(default = "d::yes")]
    feat_proj_layer_norm: bool,
    #[serde(default = "d::buckets")]
    num_buckets: usize,
    #[serde(default = "d::bucket_distance")]
    max_bucket_distance: usize,
    #[serde(default)]
    conv_pos_batch_norm: bool,
    #[serde(default)]
    adapter_attn_dim: Option<usize>,
    #[serde(default)]
    num_feat_extract_layers: Option<usize>,
}

/// transformers' defaults (those of `facebook/wav2vec2-base`).
mod d {
    pub fn hidden_size() -> usize {
        768
    }
    pub fn layers() -> usize {
        12
    }
    pub fn heads() -> usize {
        12
    }
    pub fn intermediate() -> usize {
        3072
    }
    pub fn gelu() -> String {
        "gelu".into()
    }
    pub fn eps() -> f64 {
        1e-5
    }
    pub fn group() -> String {
        "group".into()
    }
    pub fn conv_dim() -> Vec<usize> {
        vec![512; 7]
    }
    pub fn conv_stride() -> Vec<usize> {
        vec![5, 2, 2, 2, 2, 2, 2]
    }
    pub fn conv_kernel() -> Vec<usize> {
        vec![10, 3, 3, 3, 3, 2, 2]
    }
    pub fn pos_kernel() -> usize {
        128
    }
    pub fn pos_groups() -> usize {
        16
    }
    pub fn yes() -> bool {
        true
    }
    pub fn buckets() -> usize {
        320
    }
    pub fn bucket_distance() -> usize {
        800
    }
}

impl BackboneConfig {
    /// Reads and checks `config.json`.
    pub fn from_file(path: &Path) -> Result<Self, BackboneError> {
        let text = std::fs::read_to_string(path).map_err(|source| BackboneError::Io {
            path: path.to_owned(),
            source,
        })?;
        Self::from_json(&text, path)
    }

    /// Parses the text of a `config.json`; `path` only names it in errors.
    pub fn from_json(text: &str, path: &Path) -> Result<Self, BackboneError> {
        let config_err = |detail: String| BackboneError::Config {
            path: path.to_owned(),
            detail,
        };
        let unsupported = |detail: String| BackboneError::Unsupported {
            path: path.to_owned(),
            detail,
        };
        let raw: RawConfig = serde_json::from_str(text)
            .map_err(|e| config_err(format!("not a valid configuration: {e}")))?;
        let architecture = match raw.model_type.as_deref() {
            Some("wav2vec2") => Architecture::Wav2Vec2,
            Some("hubert") => Architecture::Hubert,
            Some("wavlm") => Architecture::WavLm,
            Some(other) => {
                return Err(unsupported(format!(
                    "model_type \"{other}\" (supported: wav2vec2, hubert, wavlm)"
                )));
            }
            None => return Err(config_err("no `model_type`".into())),
        };
        let activation = |name: &str, field: &str| {
            Activation::parse(name).ok_or_else(|| {
                unsupported(format!(
                    "{field} \"{name}\" (supported: gelu, gelu_new, gelu_pytorch_tanh, relu, silu)"
                ))
            })
        };
        let feat_extract_norm = match raw.feat_extract_norm.as_str() {
            "group" => FeatExtractNorm::Group,
            "layer" => FeatExtractNorm::Layer,
            other => {
                return Err(config_err(format!(
                    "feat_extract_norm \"{other}\" is neither \"group\" nor \"layer\""
                )));
            }
        };
        if raw.conv_pos_batch_norm {
            return Err(unsupported("conv_pos_batch_norm = true".into()));
        }
        if let Some(dim) = raw.adapter_attn_dim {
            return Err(unsupported(format!(
                "attention adapters (adapter_attn_dim = {dim})"
            )));
        }
        let n = raw.conv_dim.len();
        if n == 0 || raw.conv_stride.len() != n || raw.conv_kernel.len() != n {
            return Err(config_err(format!(
                "conv_dim, conv_stride and conv_kernel must have the same non-zero length, got {}, {} and {}",
                n,
                raw.conv_stride.len(),
                raw.conv_kernel.len()
            )));
        }
        if let Some(layers) = raw.num_feat_extract_layers
            && layers != n
        {
            return Err(config_err(format!(
                "num_feat_extract_layers = {layers} but conv_dim has {n} entries"
            )));
        }
        let positive = [
            ("hidden_size", raw.hidden_size),
            ("num_attention_heads", raw.num_attention_heads),
            ("intermediate_size", raw.intermediate_size),
            ("num_conv_pos_embeddings", raw.num_conv_pos_embeddings),
            (
                "num_conv_pos_embedding_groups",
                raw.num_conv_pos_embedding_groups,
            ),
        ];
        for (field, value) in positive {
            if value == 0 {
                return Err(config_err(format!("{field} must be positive")));
            }
        }
        if raw.conv_dim.contains(&0) || raw.conv_stride.contains(&0) || raw.conv_kernel.contains(&0)
        {
            return Err(config_err(
                "conv_dim, conv_stride and conv_kernel entries must be positive".into(),
            ));
        }
        if !raw.hidden_size.is_multiple_of(raw.num_attention_heads) {
            return Err(config_err(format!(
                "hidden_size {} is not divisible by num_attention_heads {}",
                raw.hidden_size, raw.num_attention_heads
            )));
        }
        if !raw
            .hidden_size
            .is_multiple_of(raw.num_conv_pos_embedding_groups)
        {
            return Err(config_err(format!(
                "hidden_size {} is not divisible by num_conv_pos_embedding_groups {}",
                raw.hidden_size, raw.num_conv_pos_embedding_groups
            )));
        }
        if !(raw.layer_norm_eps.is_finite() && raw.layer_norm_eps >= 0.0) {
            return Err(config_err(format!(
                "layer_norm_eps = {} is not a non-negative number",
                raw.layer_norm_eps
            )));
        }
        if architecture == Architecture::WavLm
            && (raw.num_buckets < 4 || raw.max_bucket_distance <= raw.num_buckets / 4)
        {
            return Err(config_err(format!(
                "num_buckets = {} and max_bucket_distance = {} leave no logarithmic buckets",
                raw.num_buckets, raw.max_bucket_distance
            )));
        }
        Ok(Self {
            architecture,
            hidden_size: raw.hidden_size,
            num_hidden_layers: raw.num_hidden_layers,
            num_attention_heads: raw.num_attention_heads,
            intermediate_size: raw.intermediate_size,
            hidden_act: activation(&raw.hidden_act, "hidden_act")?,
            layer_norm_eps: raw.layer_norm_eps,
            feat_extract_norm,
            feat_extract_activation: activation(
                &raw.feat_extract_activation,
                "feat_extract_activation",
            )?,
            conv_dim: raw.conv_dim,
            conv_stride: raw.conv_stride,
            conv_kernel: raw.conv_kernel,
            conv_bias: raw.conv_bias,
            num_conv_pos_embeddings: raw.num_conv_pos_embeddings,
            num_conv_pos_embedding_groups: raw.num_conv_pos_embedding_groups,
            do_stable_layer_norm: raw.do_stable_layer_norm,
            feat_proj_layer_norm: raw.feat_proj_layer_norm,
            num_buckets: raw.num_buckets,
            max_bucket_distance: raw.max_bucket_distance,
        })
    }

    /// Frames the convolutional front end makes from `samples` samples:
    /// `L -> floor((L - k) / s) + 1` per layer, 0 once the input is shorter than a kernel.
    pub fn num_frames(&self, samples: usize) -> usize {
        let mut len = samples;
        for (&k, &s) in self.conv_kernel.iter().zip(&self.conv_stride) {
            if len < k {
                return 0;
            }
            len = (len - k) / s + 1;
        }
        len
    }

    /// The fewest samples that give one frame (400 for the standard front end: 25 ms at 16 kHz).
    pub fn receptive_field(&self) -> usize {
        let mut need = 1;
        for (&k, &s) in self.conv_kernel.iter().zip(&self.conv_stride).rev() {
            need = (need - 1) * s + k;
        }
        need
    }

    /// Samples per output frame (320 for the standard front end: 20 ms at 16 kHz).
    pub fn hop(&self) -> usize {
        self.conv_stride.iter().product()
    }
}
