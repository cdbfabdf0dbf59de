//! The forward pass shared by wav2vec2, HuBERT and WavLM.
//!
//! ```text
//! waveform [B, S] --conv front end (x7, 320x)--> [B, C, T] --LayerNorm + Linear--> [B, T, D]
//!   --zero padded frames--> + GELU(weight-normed grouped conv) --(post-LN: LayerNorm)--> H_0
//!   --layer 1--> H_1 ... --layer N--> H_N
//! ```
//!
//! Post-LN layers (`do_stable_layer_norm = false`): `h = LN1(h + Attn(h)); h = LN2(h + FF(h))`.
//! Pre-LN layers (`true`): `h = h + Attn(LN1(h)); h = h + FF(LN2(h))`, and the encoder's final
//! LayerNorm applies to `last_hidden_state` only (see [`Backbone::last_hidden_state`]).
//!
//! Padding never reaches a valid frame: the group norm of the front end takes its statistics
//! over each utterance's valid frames only; every later convolution's valid outputs read valid
//! inputs only (`floor((L - k) / s) + 1` outputs); padded frames are zeroed before the
//! positional convolution, which is what zero padding of the lone utterance would give; and
//! attention masks padded keys with `-inf`.

use std::path::Path;

use candle_core::{DType, Device, Tensor};

pub(crate) mod layers;

use layers::*;

use crate::BackboneError;
use crate::config::{Architecture, BackboneConfig, FeatExtractNorm};
use crate::cpu::{self, CpuConv, CpuPosConv};
use crate::weights::Weights;

/// Epsilon of the front end's GroupNorm and LayerNorms (PyTorch's default, not `layer_norm_eps`).
pub(super) const FRONT_END_EPS: f64 = 1e-5;
/// Epsilon of transformers' `Wav2Vec2FeatureExtractor` input normalisation.
const INPUT_NORM_EPS: f64 = 1e-7;

/// A loaded, frozen wav2vec2, HuBERT or WavLM model.
///
/// Weights are plain f32 tensors (no `Var`s): no autograd graph is kept.
#[derive(Debug)]
pub struct Backbone {
    config: BackboneConfig,
    device: Device,
    normalize_input: bool,
    convs: Vec<ConvLayer>,
    projection_norm: Option<Norm>,
    projection: Linear,
    pos_conv: PosConv,
    encoder_norm: Norm,
    layers: Vec<EncoderLayer>,
    /// WavLM: the relative-position embedding of layer 0, `[num_buckets, H]`.
    rel_attn_embed: Option<Tensor>,
    /// The front end and positional convolution packed for the CPU fast path (`cpu.rs`), when
    /// the device is the CPU.
    cpu_convs: Option<(Vec<CpuConv>, CpuPosConv)>,
    /// Run every step with candle ops (the path other devices take), even on the CPU.
    reference_ops: bool,
}

/// What [`Backbone::forward`] returns.
#[derive(Debug, Clone)]
pub struct BackboneOutput {
    /// `num_hidden_layers + 1` tensors `[B, T, D]` f32, as transformers' `hidden_states` with
    /// `output_hidden_states=True`: the transformer's input (after the positional convolution,
    /// and its LayerNorm in post-LN models), then each layer's output. Padded frames are zero.
    pub hidden_states: Vec<Tensor>,
    /// Valid frames of each utterance: the front end's output length for its sample count.
    pub frame_lens: Vec<usize>,
}

impl Backbone {
    /// Loads a checkpoint folder: `config.json`, then `model.safetensors`,
    /// `model.safetensors.index.json` (shards) or `pytorch_model.bin`, whichever comes first.
    ///
    /// Keys may carry the base model's prefix (`wav2vec2.`, `hubert.`, `wavlm.`) or not; heads
    /// (CTC, pre-training quantiser, classifiers) are ignored. The positional convolution's weight
    /// norm may be stored as `weight_g`/`weight_v`, as
    /// `parametrizations.weight.original0`/`original1`, or already folded into `weight`.
    ///
    /// If the folder has a `preprocessor_config.json` with `do_normalize: true`, [`forward`]
    /// normalises each utterance to zero mean and unit variance over its valid samples first, as
    /// transformers' `Wav2Vec2FeatureExtractor` does.
    ///
    /// [`forward`]: Backbone::forward
    pub fn load(dir: &Path, device: &Device) -> Result<Backbone, BackboneError> {
        let config_path = dir.join("config.json");
        if !config_path.is_file() {
            return Err(BackboneError::MissingFile {
                dir: dir.to_owned(),
                what: "configuration",
                tried: vec!["config.json".into()],
            });
        }
        let config = BackboneConfig::from_file(&config_path)?;
        let weights = Weights::from_dir(dir, config.architecture, device)?;
        let normalize_input = read_do_normalize(&dir.join("preprocessor_config.json"))?;
        Self::from_weights(config, &weights, normalize_input, device)
    }

    /// Builds the model from a parsed configuration and a weights file (safetensors, shard index
    /// or PyTorch state dict), without input normalisation.
    pub fn from_files(
        config: BackboneConfig,
        weights: &Path,
        device: &Device,
    ) -> Result<Backbone, BackboneError> {
        let w = Weights::from_file(weights, config.architecture, device)?;
        Self::from_weights(config, &w, false, device)
    }

    fn from_weights(
        config: BackboneConfig,
        w: &Weights,
        normalize_input: bool,
        device: &Device,
    ) -> Result<Backbone, BackboneError> {
        let c = &config;
        let mut convs = Vec::with_capacity(c.conv_dim.len());
        for (i, ((&out, &kernel), &stride)) in c
            .conv_dim
            .iter()
            .zip(&c.conv_kernel)
            .zip(&c.conv_stride)
            .enumerate()
        {
            let inp = if i == 0 { 1 } else { c.conv_dim[i - 1] };
            let p = format!("feature_extractor.conv_layers.{i}");
            let weight = w.get(&format!("{p}.conv.weight"), &[out, inp, kernel])?;
            let bias = if c.conv_bias {
                Some(
                    w.get(&format!("{p}.conv.bias"), &[out])?
                        .reshape((out, 1))?,
                )
            } else {
                None
            };
            let norm = match (c.feat_extract_norm, i) {
                (FeatExtractNorm::Group, 0) => ConvNorm::Group(
                    w.get(&format!("{p}.layer_norm.weight"), &[out])?
                        .reshape((out, 1))?,
                    w.get(&format!("{p}.layer_norm.bias"), &[out])?
                        .reshape((out, 1))?,
                ),
                (FeatExtractNorm::Group, _) => ConvNorm::None,
                (FeatExtractNorm::Layer, _) => ConvNorm::Layer(Norm::load(
                    w,
                    &format!("{p}.layer_norm"),
                    out,
                    FRONT_END_EPS,
                )?),
            };
            convs.push(ConvLayer {
                weight,
                bias,
                stride,
                kernel,
                norm,
            });
        }
        let d = c.hidden_size;
        let c_last = *c.conv_dim.last().expect("checked non-empty");
        let projection_norm = match c.architecture {
            Architecture::Hubert if !c.feat_proj_layer_norm => None,
            _ => Some(Norm::load(
                w,
                "feature_projection.layer_norm",
                c_last,
                c.layer_norm_eps,
            )?),
        };
        let projection = Linear::load(w, "feature_projection.projection", d, c_last)?;
        let pos_conv = load_pos_conv(w, c)?;
        let encoder_norm = Norm::load(w, "encoder.layer_norm", d, c.layer_norm_eps)?;
        let heads = c.num_attention_heads;
        let head_dim = d / heads;
        let mut layers = Vec::with_capacity(c.num_hidden_layers);
        for i in 0..c.num_hidden_layers {
            let p = format!("encoder.layers.{i}");
            let gate = if c.architecture == Architecture::WavLm {
                Some(Gate {
                    linear: Linear::load(
                        w,
                        &format!("{p}.attention.gru_rel_pos_linear"),
                        8,
                        head_dim,
                    )?,
                    constant: w.get(
                        &format!("{p}.attention.gru_rel_pos_const"),
                        &[1, heads, 1, 1],
                    )?,
                })
            } else {
                None
            };
            layers.push(EncoderLayer {
                q: Linear::load(w, &format!("{p}.attention.q_proj"), d, d)?,
                k: Linear::load(w, &format!("{p}.attention.k_proj"), d, d)?,
                v: Linear::load(w, &format!("{p}.attention.v_proj"), d, d)?,
                out: Linear::load(w, &format!("{p}.attention.out_proj"), d, d)?,
                attn_norm: Norm::load(w, &format!("{p}.layer_norm"), d, c.layer_norm_eps)?,
                ff_in: Linear::load(
                    w,
                    &format!("{p}.feed_forward.intermediate_dense"),
                    c.intermediate_size,
                    d,
                )?,
                ff_out: Linear::load(
                    w,
                    &format!("{p}.feed_forward.output_dense"),
                    d,
                    c.intermediate_size,
                )?,
                ff_norm: Norm::load(w, &format!("{p}.final_layer_norm"), d, c.layer_norm_eps)?,
                gate,
            });
        }
        let rel_attn_embed = if c.architecture == Architecture::WavLm && c.num_hidden_layers > 0 {
            Some(w.get(
                "encoder.layers.0.attention.rel_attn_embed.weight",
                &[c.num_buckets, heads],
            )?)
        } else {
            None
        };
        // Whichever weight-norm layout was read, the others' names are not "unexplained".
        w.check_all_used(&POS_CONV_NAMES)?;
        let cpu_convs = if device.is_cpu() {
            let packed = convs
                .iter()
                .map(ConvLayer::pack_for_cpu)
                .collect::<candle_core::Result<Vec<_>>>()?;
            Some((packed, pos_conv.pack_for_cpu()?))
        } else {
            None
        };
        Ok(Backbone {
            config,
            device: device.clone(),
            normalize_input,
            convs,
            projection_norm,
            projection,
            pos_conv,
            encoder_norm,
            layers,
            rel_attn_embed,
            cpu_convs,
            reference_ops: false,
        })
    }

    /// Runs every step with candle's own ops, as on other devices, instead of the CPU fast
    /// paths (strided-GEMM front end, vectorised GELU). For testing the two against each other
    /// (feature `testing`).
    #[cfg(feature = "testing")]
    pub fn set_reference_ops(&mut self, on: bool) {
        self.reference_ops = on;
    }

    /// Runs the transformer's linear layers (feature projection, attention projections, feed
    /// forward, WavLM's gate) with their weights and inputs in `dtype`: `BF16` or `F16` halve
    /// their memory traffic on a GPU (on the CPU candle widens them to f32 for the product, so
    /// only the rounding changes). Everything else stays f32: the convolutional front end,
    /// norms, softmax, activations, biases, and the hidden states returned. `F32` restores full
    /// precision only for weights still exact in f32 (load again to undo a half type).
    pub fn set_matmul_dtype(&mut self, dtype: DType) -> Result<(), BackboneError> {
        if !matches!(dtype, DType::F32 | DType::BF16 | DType::F16) {
            return Err(BackboneError::Input(format!(
                "matmul dtype {dtype:?}: expected f32, bf16 or f16"
            )));
        }
        self.projection.set_matmul_dtype(dtype)?;
        for l in &mut self.layers {
            for lin in [
                &mut l.q,
                &mut l.k,
                &mut l.v,
                &mut l.out,
                &mut l.ff_in,
                &mut l.ff_out,
            ] {
                lin.set_matmul_dtype(dtype)?;
            }
            if let Some(g) = &mut l.gate {
                g.linear.set_matmul_dtype(dtype)?;
            }
        }
        Ok(())
    }

    /// The checkpoint's configuration.
    pub fn config(&self) -> &BackboneConfig {
        &self.config
    }

    /// The device the weights live on.
    pub fn device(&self) -> &Device {
        &self.device
    }

    /// Whether [`forward`](Backbone::forward) normalises each utterance first (from
    /// `preprocessor_config.json`).
    pub fn normalizes_input(&self) -> bool {
        self.normalize_input
    }

    /// Turns the per-utterance input normalisation on or off.
    pub fn set_normalize_input(&mut self, on: bool) {
        self.normalize_input = on;
    }

    /// Hidden size D of every hidden state.
    pub fn hidden_size(&self) -> usize {
        self.config.hidden_size
    }

    /// Number of hidden states `forward` returns: `num_hidden_layers + 1`.
    pub fn num_hidden_states(&self) -> usize {
        self.config.num_hidden_layers + 1
    }

    /// Runs the frozen model on a padded batch.
    ///
    /// - `waveforms`: `[B, S]` f32 at 16 kHz, utterance `b` in `waveforms[b, ..lengths[b]]`;
    ///   what follows is ignored.
    /// - `lengths`: `[B]` u32 sample counts, each at least the receptive field
    ///   ([`BackboneConfig::receptive_field`], 400 samples) and at most S.
    ///
    /// Each utterance's valid frames equal those of running it alone.
    pub fn forward(
        &self,
        waveforms: &Tensor,
        lengths: &Tensor,
    ) -> Result<BackboneOutput, BackboneError> {
        let (batch, samples) = waveforms.dims2().map_err(|_| {
            BackboneError::Input(format!(
                "waveforms must be [B, S], got shape {:?}",
                waveforms.dims()
            ))
        })?;
        if waveforms.dtype() != DType::F32 {
            return Err(BackboneError::Input(format!(
                "waveforms must be f32, got {:?}",
                waveforms.dtype()
            )));
        }
        if lengths.dims() != [batch] || lengths.dtype() != DType::U32 {
            return Err(BackboneError::Input(format!(
                "lengths must be [B] = [{batch}] u32, got shape {:?} {:?}",
                lengths.dims(),
                lengths.dtype()
            )));
        }
        if batch == 0 {
            return Err(BackboneError::Input("the batch is empty".into()));
        }
        let lengths: Vec<usize> = lengths
            .to_vec1::<u32>()?
            .into_iter()
            .map(|l| l as usize)
            .collect();
        let min = self.config.receptive_field();
        for (b, &len) in lengths.iter().enumerate() {
            if len > samples {
                return Err(BackboneError::Input(format!(
                    "lengths[{b}] = {len} exceeds the {samples} samples of the batch"
                )));
            }
            if len < min {
                return Err(BackboneError::Input(format!(
                    "lengths[{b}] = {len} samples is shorter than the front end's receptive field of {min} samples (one frame)"
                )));
            }
        }
        let waveforms = waveforms.to_device(&self.device)?;
        check_finite(&waveforms, &lengths)?;
        let waveforms = if self.normalize_input {
            normalize_utterances(&waveforms, &lengths)?
        } else {
            waveforms
        };

        // Convolutional front end: [B, S] -> [B, T, C].
        let fast = self.fast();
        let (mut h, frames, frame_lens) = match (&self.cpu_convs, fast) {
            (Some((convs, _)), true) => {
                let waves = waveforms.flatten_all()?.to_vec1::<f32>()?;
                let (feats, frames, frame_lens) = cpu::front_end(
                    convs,
                    waves,
                    samples,
                    &lengths,
                    self.config.feat_extract_activation,
                    FRONT_END_EPS,
                );
                let c = *self.config.conv_dim.last().expect("checked non-empty");
                let feats = Tensor::from_vec(feats, (batch, frames, c), &self.device)?;
                (feats, frames, frame_lens)
            }
            _ => {
                let mut x = waveforms.unsqueeze(1)?;
                let mut lens = lengths.clone();
                for conv in &self.convs {
                    (x, lens) = conv.forward(&x, &lens, self.config.feat_extract_activation)?;
                }
                let frames = x.dim(2)?;
                (x.transpose(1, 2)?.contiguous()?, frames, lens)
            }
        };

        // Feature projection: [B, T, C] -> [B, T, D].
        if let Some(norm) = &self.projection_norm {
            h = norm.forward(&h)?;
        }
        h = self.projection.forward(&h)?;

        let mask = frame_mask(&frame_lens, frames, &self.device)?; // [B, T, 1]
        h = h.broadcast_mul(&mask)?;
        let act = self.config.feat_extract_activation;
        let pos = match (&self.cpu_convs, fast) {
            (Some((_, pos_conv)), true) => {
                let x = h.flatten_all()?.to_vec1::<f32>()?;
                let y = pos_conv.forward(&x, batch, frames, act);
                Tensor::from_vec(y, h.shape(), &self.device)?
            }
            _ => self.pos_conv.forward(&h, act)?,
        };
        h = (h + pos)?;
        let stable = self.config.do_stable_layer_norm;
        if !stable {
            h = self.encoder_norm.forward(&h)?;
        }

        let key_mask = key_mask(&frame_lens, frames, &self.device)?; // [B, 1, 1, T]
        let position_bias = match &self.rel_attn_embed {
            Some(embed) => Some(self.position_bias(embed, frames)?),
            None => None,
        };
        let mut hidden_states = Vec::with_capacity(self.layers.len() + 1);
        hidden_states.push(h.broadcast_mul(&mask)?);
        let cx = LayerContext {
            key_mask: &key_mask,
            position_bias: position_bias.as_ref(),
            stable,
            heads: self.config.num_attention_heads,
            act: self.config.hidden_act,
            fast,
        };
        for layer in &self.layers {
            h = layer.forward(&h, &cx)?;
            hidden_states.push(h.broadcast_mul(&mask)?);
        }
        Ok(BackboneOutput {
            hidden_states,
            frame_lens,
        })
    }

    fn fast(&self) -> bool {
        self.device.is_cpu() && !self.reference_ops
    }

    /// transformers' `last_hidden_state`: the last hidden state, through the encoder's final
    /// LayerNorm in pre-LN (`do_stable_layer_norm`) models, where transformers 5's
    /// `hidden_states[-1]` is taken before that norm. Padded frames are zero.
    pub fn last_hidden_state(&self, output: &BackboneOutput) -> Result<Tensor, BackboneError> {
        let last = output
            .hidden_states
            .last()
            .ok_or_else(|| BackboneError::Input("the output has no hidden states".into()))?;
        if !self.config.do_stable_layer_norm {
            return Ok(last.clone());
        }
        let frames = last.dim(1)?;
        let mask = frame_mask(&output.frame_lens, frames, last.device())?;
        Ok(self.encoder_norm.forward(last)?.broadcast_mul(&mask)?)
    }

    /// WavLM's relative position bias `[1, H, T, T]`: `rel_attn_embed[bucket(j - i)]`.
    fn position_bias(&self, embed: &Tensor, frames: usize) -> candle_core::Result<Tensor> {
        let buckets = relative_position_buckets(
            frames,
            self.config.num_buckets,
            self.config.max_bucket_distance,
        );
        let idx = Tensor::from_vec(buckets, frames * frames, &self.device)?;
        let heads = self.config.num_attention_heads;
        embed
            .index_select(&idx, 0)? // [T*T, H]
            .t()?
            .reshape((1, heads, frames, frames))
    }
}

fn check_finite(waveforms: &Tensor, lengths: &[usize]) -> Result<(), BackboneError> {
    for (b, &len) in lengths.iter().enumerate() {
        let row = waveforms.get(b)?.narrow(0, 0, len)?;
        // A NaN or infinity makes the sum of squares non-finite (so does |x| > 1.8e19, which is
        // no waveform either).
        let energy = row.sqr()?.sum_all()?.to_scalar::<f32>()?;
        if !energy.is_finite() {
            return Err(BackboneError::Input(format!(
                "waveforms[{b}] has NaN, infinite or absurdly large samples in its first {len}"
            )));
        }
    }
    Ok(())
}

/// Zero mean, unit variance over each utterance's valid samples (`(x - m) / sqrt(v + 1e-7)`);
/// padding stays as it was.
fn normalize_utterances(waveforms: &Tensor, lengths: &[usize]) -> candle_core::Result<Tensor> {
    let samples = waveforms.dim(1)?;
    let mut rows = Vec::with_capacity(lengths.len());
    for (b, &len) in lengths.iter().enumerate() {
        let row = waveforms.get(b)?;
        let valid = row.narrow(0, 0, len)?.to_dtype(DType::F64)?;
        let mean = valid.mean_all()?;
        let var = valid.broadcast_sub(&mean)?.sqr()?.mean_all()?;
        let norm = valid
            .broadcast_sub(&mean)?
            .broadcast_div(&(var + INPUT_NORM_EPS)?.sqrt()?)?
            .to_dtype(DType::F32)?;
        let row = if len < samples {
            Tensor::cat(&[norm, row.narrow(0, len, samples - len)?], 0)?
        } else {
            norm
        };
        rows.push(row);
    }
    Tensor::stack(&rows, 0)
}

fn read_do_normalize(path: &Path) -> Result<bool, BackboneError> {
    if !path.is_file() {
        return Ok(false);
    }
    let text = std::fs::read_to_string(path).map_err(|source| BackboneError::Io {
        path: path.to_owned(),
        source,
    })?;
    let value: serde_json::Value =
        serde_json::from_str(&text).map_err(|e| BackboneError::Config {
            path: path.to_owned(),
            detail: format!("not valid JSON: {e}"),
        })?;
    match value.get("do_normalize") {
        None => Ok(true), // Wav2Vec2FeatureExtractor's default
        Some(serde_json::Value::Bool(b)) => Ok(*b),
        Some(other) => Err(BackboneError::Config {
            path: path.to_owned(),
            detail: format!("do_normalize is {other}, not a boolean"),
        }),
    }
}
