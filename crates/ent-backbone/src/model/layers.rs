//! The layers of the backbone: linear and norm layers, the convolutional front end, the
//! positional convolution, the transformer layers, and WavLM's relative-position buckets and
//! the attention masks.

use candle_core::{D, DType, Device, Tensor};

use super::FRONT_END_EPS;
use crate::BackboneError;
use crate::config::{Activation, BackboneConfig};
use crate::cpu::{self, CpuConv, CpuNorm, CpuPosConv};
use crate::weights::Weights;

#[derive(Debug)]
pub(super) struct Linear {
    /// `[out, in]`, as PyTorch stores it.
    pub(super) weight: Tensor,
    pub(super) bias: Tensor,
}

impl Linear {
    pub(super) fn load(
        w: &Weights,
        name: &str,
        out: usize,
        inp: usize,
    ) -> Result<Self, BackboneError> {
        Ok(Self {
            weight: w.get(&format!("{name}.weight"), &[out, inp])?,
            bias: w.get(&format!("{name}.bias"), &[out])?,
        })
    }

    /// The weight in `dtype` (the bias stays f32): [`Linear::forward`] then multiplies in it.
    pub(super) fn set_matmul_dtype(&mut self, dtype: DType) -> candle_core::Result<()> {
        self.weight = self.weight.to_dtype(dtype)?;
        Ok(())
    }

    /// `x [..., in] -> [..., out]`; the product in the weight's dtype (`x` converted to it and
    /// the result back), the bias added in `x`'s.
    pub(super) fn forward(&self, x: &Tensor) -> candle_core::Result<Tensor> {
        let dims = x.dims();
        let inp = dims[dims.len() - 1];
        let rows = x.elem_count() / inp.max(1);
        let x2 = x.reshape((rows, inp))?;
        let y = if self.weight.dtype() == x.dtype() {
            x2.matmul(&self.weight.t()?)?
        } else {
            x2.to_dtype(self.weight.dtype())?
                .matmul(&self.weight.t()?)?
                .to_dtype(x.dtype())?
        };
        let y = y.broadcast_add(&self.bias)?;
        let mut out_dims = dims.to_vec();
        *out_dims.last_mut().expect("rank >= 1") = self.weight.dim(0)?;
        y.reshape(out_dims)
    }
}

#[derive(Debug)]
pub(super) struct Norm {
    pub(super) weight: Tensor,
    pub(super) bias: Tensor,
    pub(super) eps: f64,
}

impl Norm {
    pub(super) fn load(
        w: &Weights,
        name: &str,
        dim: usize,
        eps: f64,
    ) -> Result<Self, BackboneError> {
        Ok(Self {
            weight: w.get(&format!("{name}.weight"), &[dim])?,
            bias: w.get(&format!("{name}.bias"), &[dim])?,
            eps,
        })
    }

    /// LayerNorm over the last dimension.
    pub(super) fn forward(&self, x: &Tensor) -> candle_core::Result<Tensor> {
        candle_nn::ops::layer_norm(&x.contiguous()?, &self.weight, &self.bias, self.eps as f32)
    }
}

#[derive(Debug)]
pub(super) struct ConvLayer {
    /// `[C_out, C_in, k]`.
    pub(super) weight: Tensor,
    /// `[C_out, 1]`.
    pub(super) bias: Option<Tensor>,
    pub(super) stride: usize,
    pub(super) kernel: usize,
    pub(super) norm: ConvNorm,
}

#[derive(Debug)]
pub(super) enum ConvNorm {
    None,
    /// Per-channel GroupNorm over time; weight and bias `[C, 1]`.
    Group(Tensor, Tensor),
    /// LayerNorm over channels.
    Layer(Norm),
}

#[derive(Debug)]
pub(super) struct PosConv {
    /// `[D, D / groups, K]`, weight norm already applied.
    pub(super) weight: Tensor,
    /// `[D, 1]`.
    pub(super) bias: Tensor,
    pub(super) kernel: usize,
    pub(super) groups: usize,
}

#[derive(Debug)]
pub(super) struct EncoderLayer {
    pub(super) q: Linear,
    pub(super) k: Linear,
    pub(super) v: Linear,
    pub(super) out: Linear,
    /// `layer_norm`: after attention (post-LN) or before it (pre-LN).
    pub(super) attn_norm: Norm,
    pub(super) ff_in: Linear,
    pub(super) ff_out: Linear,
    /// `final_layer_norm`.
    pub(super) ff_norm: Norm,
    /// WavLM's gate of the relative position bias.
    pub(super) gate: Option<Gate>,
}

#[derive(Debug)]
pub(super) struct Gate {
    /// `gru_rel_pos_linear`: head_dim -> 8.
    pub(super) linear: Linear,
    /// `gru_rel_pos_const`, `[1, H, 1, 1]`.
    pub(super) constant: Tensor,
}

impl ConvLayer {
    pub(super) fn pack_for_cpu(&self) -> candle_core::Result<CpuConv> {
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
    pub(super) fn forward(
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
pub(super) fn activation(act: Activation, x: &Tensor, fast: bool) -> candle_core::Result<Tensor> {
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
pub(super) fn masked_group_norm(
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
    pub(super) fn pack_for_cpu(&self) -> candle_core::Result<CpuPosConv> {
        let d = self.weight.dim(0)?;
        Ok(CpuPosConv::new(
            &self.weight.flatten_all()?.to_vec1::<f32>()?,
            self.bias.flatten_all()?.to_vec1::<f32>()?,
            d,
            self.groups,
            self.kernel,
        ))
    }

    pub(super) fn forward(&self, x: &Tensor, act: Activation) -> candle_core::Result<Tensor> {
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
pub(super) const POS_CONV_NAMES: [&str; 5] = [
    "encoder.pos_conv_embed.conv.weight_g",
    "encoder.pos_conv_embed.conv.weight_v",
    "encoder.pos_conv_embed.conv.parametrizations.weight.original0",
    "encoder.pos_conv_embed.conv.parametrizations.weight.original1",
    "encoder.pos_conv_embed.conv.weight",
];

pub(super) fn load_pos_conv(w: &Weights, c: &BackboneConfig) -> Result<PosConv, BackboneError> {
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
pub(super) struct LayerContext<'a> {
    /// `[B, 1, 1, T]`: 0 on valid keys, -inf on padding.
    pub(super) key_mask: &'a Tensor,
    /// WavLM's ungated relative position bias, `[1, H, T, T]`.
    pub(super) position_bias: Option<&'a Tensor>,
    pub(super) stable: bool,
    pub(super) heads: usize,
    pub(super) act: Activation,
    pub(super) fast: bool,
}

impl EncoderLayer {
    pub(super) fn forward(&self, h: &Tensor, cx: &LayerContext<'_>) -> candle_core::Result<Tensor> {
        if cx.stable {
            let h = (h + self.attention(&self.attn_norm.forward(h)?, cx)?)?;
            &h + self.feed_forward(&self.ff_norm.forward(&h)?, cx)?
        } else {
            let h = self.attn_norm.forward(&(h + self.attention(h, cx)?)?)?;
            self.ff_norm.forward(&(&h + self.feed_forward(&h, cx)?)?)
        }
    }

    pub(super) fn feed_forward(
        &self,
        x: &Tensor,
        cx: &LayerContext<'_>,
    ) -> candle_core::Result<Tensor> {
        self.ff_out
            .forward(&activation(cx.act, &self.ff_in.forward(x)?, cx.fast)?)
    }

    /// Multi-head self-attention, `x [B, T, D]`; WavLM adds its gated relative position bias.
    pub(super) fn attention(
        &self,
        x: &Tensor,
        cx: &LayerContext<'_>,
    ) -> candle_core::Result<Tensor> {
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
pub(crate) fn relative_position_bucket(rel: i64, num_buckets: usize, max_distance: usize) -> u32 {
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
pub(super) fn relative_position_buckets(
    frames: usize,
    num_buckets: usize,
    max_distance: usize,
) -> Vec<u32> {
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
pub(super) fn frame_mask(
    lens: &[usize],
    frames: usize,
    device: &Device,
) -> candle_core::Result<Tensor> {
    let data: Vec<f32> = lens
        .iter()
        .flat_map(|&l| (0..frames).map(move |t| if t < l { 1.0 } else { 0.0 }))
        .collect();
    Tensor::from_vec(data, (lens.len(), frames, 1), device)
}

/// `[B, 1, 1, T]` f32: 0 on valid keys, -inf on padding.
pub(super) fn key_mask(
    lens: &[usize],
    frames: usize,
    device: &Device,
) -> candle_core::Result<Tensor> {
    let data: Vec<f32> = lens
        .iter()
        .flat_map(|&l| (0..frames).map(move |t| if t < l { 0.0 } else { f32::NEG_INFINITY }))
        .collect();
    Tensor::from_vec(data, (lens.len(), 1, 1, frames), device)
}
