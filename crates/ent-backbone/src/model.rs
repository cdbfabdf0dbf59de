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

use candle_core::{D, DType, Device, Tensor};

use crate::BackboneError;
use crate::config::{Activation, Architecture, BackboneConfig, FeatExtractNorm};
use crate::cpu::{self, CpuConv, CpuNorm, CpuPosConv};
use crate::weights::Weights;

/// Epsilon of the front end's GroupNorm and LayerNorms (PyTorch's default, not `layer_norm_eps`).
const FRONT_END_EPS: f64 = 1e-5;
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

#[derive(Debug)]
struct Linear {
    /// `[out, in]`, as PyTorch stores it.
    weight: Tensor,
    bias: Tensor,
}

impl Linear {
    fn load(w: &Weights, name: &str, out: usize, inp: usize) -> Result<Self, BackboneError> {
        Ok(Self {
            weight: w.get(&format!("{name}.weight"), &[out, inp])?,
            bias: w.get(&format!("{name}.bias"), &[out])?,
        })
    }

    /// `x [..., in] -> [..., out]`.
    fn forward(&self, x: &Tensor) -> candle_core::Result<Tensor> {
        let dims = x.dims();
        let inp = dims[dims.len() - 1];
        let rows = x.elem_count() / inp.max(1);
        let y = x
            .reshape((rows, inp))?
            .matmul(&self.weight.t()?)?
            .broadcast_add(&self.bias)?;
        let mut out_dims = dims.to_vec();
        *out_dims.last_mut().expect("rank >= 1") = self.weight.dim(0)?;
        y.reshape(out_dims)
    }
}

#[derive(Debug)]
struct Norm {
    weight: Tensor,
    bias: Tensor,
    eps: f64,
}

impl Norm {
    fn load(w: &Weights, name: &str, dim: usize, eps: f64) -> Result<Self, BackboneError> {
        Ok(Self {
            weight: w.get(&format!("{name}.weight"), &[dim])?,
            bias: w.get(&format!("{name}.bias"), &[dim])?,
            eps,
        })
    }

    /// LayerNorm over the last dimension.
    fn forward(&self, x: &Tensor) -> candle_core::Result<Tensor> {
        candle_nn::ops::layer_norm(&x.contiguous()?, &self.weight, &self.bias, self.eps as f32)
    }
}

#[derive(Debug)]
struct ConvLayer {
    /// `[C_out, C_in, k]`.
    weight: Tensor,
    /// `[C_out, 1]`.
    bias: Option<Tensor>,
    stride: usize,
    kernel: usize,
    norm: ConvNorm,
}

#[derive(Debug)]
enum ConvNorm {
    None,
    /// Per-channel GroupNorm over time; weight and bias `[C, 1]`.
    Group(Tensor, Tensor),
    /// LayerNorm over channels.
    Layer(Norm),
}

#[derive(Debug)]
struct PosConv {
    /// `[D, D / groups, K]`, weight norm already applied.
    weight: Tensor,
    /// `[D, 1]`.
    bias: Tensor,
    kernel: usize,
    groups: usize,
}

#[derive(Debug)]
struct EncoderLayer {
    q: Linear,
    k: Linear,
    v: Linear,
    out: Linear,
    /// `layer_norm`: after attention (post-LN) or before it (pre-LN).
    attn_norm: Norm,
    ff_in: Linear,
    ff_out: Linear,
    /// `final_layer_norm`.
    ff_norm: Norm,
    /// WavLM's gate of the relative position bias.
    gate: Option<Gate>,
}

#[derive(Debug)]
struct Gate {
    /// `gru_rel_pos_linear`: head_dim -> 8.
    linear: Linear,
    /// `gru_rel_pos_const`, `[1, H, 1, 1]`.
    constant: Tensor,
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
    /// paths (strided-GEMM front end, vectorised GELU). For testing the two against each other.
    #[doc(hidden)]
    pub fn set_reference_ops(&mut self, on: bool) {
        self.reference_ops = on;
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

impl ConvLayer {
    fn pack_for_cpu(&self) -> candle_core::Result<CpuConv> {
        let (c_out, c_in, _) = self.weight.dims3()?;
        let vec = |t: &Tensor| t.flatten_all()?.to_vec1::<f32>();
        let norm = match &self.norm {
            ConvNorm::None => CpuNorm::None,
            ConvNorm::Group(w, b) => CpuNorm::Group {
                weight: vec(w)?,
                bias: vec(b)?,
            },
            ConvNorm::Layer(n) => CpuNorm::Layer {
                weight: vec(&n.weight)?,
                bias: vec(&n.bias)?,
            },
        };
        Ok(CpuConv::new(
            &vec(&self.weight)?,
            c_out,
            c_in,
            self.kernel,
            self.stride,
            self.bias.as_ref().map(vec).transpose()?,
            norm,
        ))
    }

    /// `x [B, C_in, L] -> [B, C_out, L']` and each utterance's valid output length.
    fn forward(
        &self,
        x: &Tensor,
        lens: &[usize],
        act: Activation,
    ) -> candle_core::Result<(Tensor, Vec<usize>)> {
        let mut y = x.conv1d(&self.weight, 0, self.stride, 1, 1)?;
        if let Some(bias) = &self.bias {
            y = y.broadcast_add(bias)?;
        }
        let out_lens: Vec<usize> = lens
            .iter()
            .map(|&l| (l - self.kernel) / self.stride + 1)
            .collect();
        y = match &self.norm {
            ConvNorm::None => y,
            ConvNorm::Group(weight, bias) => masked_group_norm(&y, &out_lens, weight, bias)?,
            ConvNorm::Layer(norm) => norm.forward(&y.transpose(1, 2)?)?.transpose(1, 2)?,
        };
        Ok((act.apply(&y)?, out_lens))
    }
}

/// `act(x)`: on the CPU fast path through `cpu::activate` (vectorised erf-GELU), else candle's op.
fn activation(act: Activation, x: &Tensor, fast: bool) -> candle_core::Result<Tensor> {
    if !fast || x.dtype() != DType::F32 {
        return act.apply(x);
    }
    let mut data = x.flatten_all()?.to_vec1::<f32>()?;
    use rayon::prelude::*;
    data.par_chunks_mut(1 << 16)
        .for_each(|c| cpu::activate(act, c));
    Tensor::from_vec(data, x.shape(), x.device())
}

/// GroupNorm with one group per channel, its statistics over each utterance's valid frames only
/// (in f64: a base model's first layer averages 32000 frames per 10 s).
fn masked_group_norm(
    x: &Tensor,
    lens: &[usize],
    weight: &Tensor,
    bias: &Tensor,
) -> candle_core::Result<Tensor> {
    let mut out = Vec::with_capacity(lens.len());
    for (b, &len) in lens.iter().enumerate() {
        let xb = x.get(b)?; // [C, L]
        let valid = xb.narrow(1, 0, len)?.to_dtype(DType::F64)?;
        let mean = valid.mean_keepdim(1)?;
        let var = valid.broadcast_sub(&mean)?.sqr()?.mean_keepdim(1)?;
        let inv_std = (var + FRONT_END_EPS)?.sqrt()?.recip()?;
        let scale = inv_std.to_dtype(DType::F32)?.mul(weight)?;
        let shift = bias.sub(&mean.to_dtype(DType::F32)?.mul(&scale)?)?;
        out.push(xb.broadcast_mul(&scale)?.broadcast_add(&shift)?);
    }
    Tensor::stack(&out, 0)
}

impl PosConv {
    /// `x [B, T, D] -> act(conv(x))[:, :T]`, zero padded by K/2 on each side.
    fn pack_for_cpu(&self) -> candle_core::Result<CpuPosConv> {
        let d = self.weight.dim(0)?;
        Ok(CpuPosConv::new(
            &self.weight.flatten_all()?.to_vec1::<f32>()?,
            self.bias.flatten_all()?.to_vec1::<f32>()?,
            d,
            self.groups,
            self.kernel,
        ))
    }

    fn forward(&self, x: &Tensor, act: Activation) -> candle_core::Result<Tensor> {
        let frames = x.dim(1)?;
        let y = x
            .transpose(1, 2)?
            .contiguous()?
            .conv1d(&self.weight, self.kernel / 2, 1, 1, self.groups)?
            .broadcast_add(&self.bias)?
            .narrow(2, 0, frames)?; // an even kernel gives T + 1 outputs; the last is dropped
        act.apply(&y)?.transpose(1, 2)
    }
}

/// The positional convolution's weight under its three storage conventions.
const POS_CONV_NAMES: [&str; 5] = [
    "encoder.pos_conv_embed.conv.weight_g",
    "encoder.pos_conv_embed.conv.weight_v",
    "encoder.pos_conv_embed.conv.parametrizations.weight.original0",
    "encoder.pos_conv_embed.conv.parametrizations.weight.original1",
    "encoder.pos_conv_embed.conv.weight",
];

fn load_pos_conv(w: &Weights, c: &BackboneConfig) -> Result<PosConv, BackboneError> {
    let d = c.hidden_size;
    let k = c.num_conv_pos_embeddings;
    let groups = c.num_conv_pos_embedding_groups;
    let shape = [d, d / groups, k];
    let p = "encoder.pos_conv_embed.conv";
    let g_names = [POS_CONV_NAMES[0], POS_CONV_NAMES[2], POS_CONV_NAMES[4]];
    let weight = match w.first_of(&g_names)? {
        name if name == POS_CONV_NAMES[4] => w.get(name, &shape)?,
        g_name => {
            let v_name = if g_name == POS_CONV_NAMES[0] {
                POS_CONV_NAMES[1]
            } else {
                POS_CONV_NAMES[3]
            };
            let g = w.get(g_name, &[1, 1, k])?;
            let v = w.get(v_name, &shape)?;
            // Weight norm over dim 2: w[:, :, j] = g[j] * v[:, :, j] / ||v[:, :, j]||, in f64.
            let v64 = v.to_dtype(DType::F64)?;
            let norm = v64.sqr()?.sum_keepdim(0)?.sum_keepdim(1)?.sqrt()?;
            v64.broadcast_mul(&g.to_dtype(DType::F64)?.broadcast_div(&norm)?)?
                .to_dtype(DType::F32)?
        }
    };
    let bias = w.get(&format!("{p}.bias"), &[d])?.reshape((d, 1))?;
    Ok(PosConv {
        weight,
        bias,
        kernel: k,
        groups,
    })
}

/// What every encoder layer of one forward pass shares.
struct LayerContext<'a> {
    /// `[B, 1, 1, T]`: 0 on valid keys, -inf on padding.
    key_mask: &'a Tensor,
    /// WavLM's ungated relative position bias, `[1, H, T, T]`.
    position_bias: Option<&'a Tensor>,
    stable: bool,
    heads: usize,
    act: Activation,
    fast: bool,
}

impl EncoderLayer {
    fn forward(&self, h: &Tensor, cx: &LayerContext<'_>) -> candle_core::Result<Tensor> {
        if cx.stable {
            let h = (h + self.attention(&self.attn_norm.forward(h)?, cx)?)?;
            &h + self.feed_forward(&self.ff_norm.forward(&h)?, cx)?
        } else {
            let h = self.attn_norm.forward(&(h + self.attention(h, cx)?)?)?;
            self.ff_norm.forward(&(&h + self.feed_forward(&h, cx)?)?)
        }
    }

    fn feed_forward(&self, x: &Tensor, cx: &LayerContext<'_>) -> candle_core::Result<Tensor> {
        self.ff_out
            .forward(&activation(cx.act, &self.ff_in.forward(x)?, cx.fast)?)
    }

    /// Multi-head self-attention, `x [B, T, D]`; WavLM adds its gated relative position bias.
    fn attention(&self, x: &Tensor, cx: &LayerContext<'_>) -> candle_core::Result<Tensor> {
        let (key_mask, position_bias, heads) = (cx.key_mask, cx.position_bias, cx.heads);
        let (b, t, d) = x.dims3()?;
        let hd = d / heads;
        let split = |y: Tensor| y.reshape((b, t, heads, hd))?.transpose(1, 2)?.contiguous();
        let q = split((self.q.forward(x)? * (hd as f64).powf(-0.5))?)?;
        let k = split(self.k.forward(x)?)?;
        let v = split(self.v.forward(x)?)?;
        let mut scores = q.matmul(&k.t()?)?.broadcast_add(key_mask)?; // [B, H, T, T]
        if let (Some(gate), Some(bias)) = (&self.gate, position_bias) {
            // gate = a * (b * const - 1) + 2, a and b sigmoids of sums of 4 projections each.
            let proj = gate
                .linear
                .forward(&split(x.clone())?)? // [B, H, T, 8]
                .reshape((b, heads, t, 2, 4))?
                .sum(D::Minus1)?;
            let proj = candle_nn::ops::sigmoid(&proj)?;
            let gate_a = proj.narrow(3, 0, 1)?;
            let gate_b = proj.narrow(3, 1, 1)?;
            let g = ((gate_a * (gate_b.broadcast_mul(&gate.constant)? - 1.0)?)? + 2.0)?; // [B, H, T, 1]
            scores = (scores + g.broadcast_mul(bias)?)?;
        }
        let probs = candle_nn::ops::softmax_last_dim(&scores)?;
        let ctx = probs.matmul(&v)?.transpose(1, 2)?.reshape((b, t, d))?;
        self.out.forward(&ctx)
    }
}

/// WavLM's bucket of the relative position `rel = key - query`, computed in f32 as transformers
/// does (`WavLMAttention._relative_positions_bucket`): half the buckets for `rel > 0`; distances
/// below `num_buckets / 4` exact, larger ones logarithmic up to `max_distance`.
pub fn relative_position_bucket(rel: i64, num_buckets: usize, max_distance: usize) -> u32 {
    let half = num_buckets / 2;
    let max_exact = half / 2;
    // transformers divides an f32 tensor by a Python float: the divisor is rounded to f32.
    let log_span = ((max_distance as f64) / (max_exact as f64)).ln() as f32;
    let sign = if rel > 0 { half } else { 0 };
    let dist = rel.unsigned_abs() as usize;
    let within = if dist < max_exact {
        dist
    } else {
        let large =
            ((dist as f32) / (max_exact as f32)).ln() / log_span * (half - max_exact) as f32;
        ((max_exact as f32 + large) as usize).min(half - 1)
    };
    (sign + within) as u32
}

/// Buckets of `j - i` for every (i, j) of a `T x T` grid, row-major.
fn relative_position_buckets(frames: usize, num_buckets: usize, max_distance: usize) -> Vec<u32> {
    let table: Vec<u32> = (-(frames as i64) + 1..frames as i64)
        .map(|rel| relative_position_bucket(rel, num_buckets, max_distance))
        .collect();
    let mut out = Vec::with_capacity(frames * frames);
    for i in 0..frames {
        // j - i + (T - 1) for j in 0..T
        out.extend_from_slice(&table[frames - 1 - i..2 * frames - 1 - i]);
    }
    out
}

/// `[B, T, 1]` f32: 1 on valid frames, 0 on padding.
fn frame_mask(lens: &[usize], frames: usize, device: &Device) -> candle_core::Result<Tensor> {
    let data: Vec<f32> = lens
        .iter()
        .flat_map(|&l| (0..frames).map(move |t| if t < l { 1.0 } else { 0.0 }))
        .collect();
    Tensor::from_vec(data, (lens.len(), frames, 1), device)
}

/// `[B, 1, 1, T]` f32: 0 on valid keys, -inf on padding.
fn key_mask(lens: &[usize], frames: usize, device: &Device) -> candle_core::Result<Tensor> {
    let data: Vec<f32> = lens
        .iter()
        .flat_map(|&l| (0..frames).map(move |t| if t < l { 0.0 } else { f32::NEG_INFINITY }))
        .collect();
    Tensor::from_vec(data, (lens.len(), 1, 1, frames), device)
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
