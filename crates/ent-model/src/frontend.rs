//! The filterbank front end for training without a pretrained backbone: global CMVN,
//! convolutional 4x subsampling, then conformer or BiLSTM layers.
//!
//! Padded frames are zero after every layer and no valid output reads a padded input (the
//! subsampling convolutions are "valid" and the output length counts only windows inside the
//! utterance; attention masks padded keys; the depthwise convolution sees zeros there), so
//! an utterance's encoding does not depend on what it is batched with.

use candle_core::{D, Tensor};
use candle_nn::{Conv2d, Conv2dConfig, Init, Module, VarBuilder};

use crate::config::{FbankEncoder, FrontEnd};
use crate::lstm::BiLstm;
use crate::nn::{
    LayerNorm, Linear, Mode, conv2d, depthwise_conv, length_mask, linear, softmax, swish,
};

/// Log-mel filterbanks -> hidden states `[L, B, T', D]`.
#[derive(Debug, Clone)]
pub struct FbankFrontEnd {
    cmvn_mean: Tensor,
    cmvn_scale: Tensor,
    conv1: Conv2d,
    conv2: Conv2d,
    proj: Linear,
    layers: Vec<Layer>,
    dim: usize,
    dropout: f64,
}

#[derive(Debug, Clone)]
enum Layer {
    Lstm(BiLstm),
    Conformer(Box<ConformerBlock>),
}

impl FbankFrontEnd {
    /// Builds the front end of `cfg` (which must be [`FrontEnd::Fbank`]) under `vb`. The global
    /// CMVN statistics `cmvn.mean` and `cmvn.scale` start as the identity; they are buffers, not
    /// trained (see [`crate::Model::is_buffer`]).
    pub fn new(cfg: &FrontEnd, vb: VarBuilder) -> candle_core::Result<Self> {
        let FrontEnd::Fbank {
            num_mel_bins,
            conv_channels,
            dim,
            layers,
            encoder,
            dropout,
        } = cfg
        else {
            candle_core::bail!("FbankFrontEnd needs a filterbank front-end config");
        };
        let conv = Conv2dConfig {
            stride: 2,
            ..Default::default()
        };
        let conv1 = candle_nn::conv2d(1, *conv_channels, 3, conv, vb.pp("conv1"))?;
        let conv2 = candle_nn::conv2d(*conv_channels, *conv_channels, 3, conv, vb.pp("conv2"))?;
        let freq = ((num_mel_bins - 1) / 2 - 1) / 2;
        let proj = linear(conv_channels * freq, *dim, true, vb.pp("proj"))?;
        let mut stack = Vec::with_capacity(*layers);
        for l in 0..*layers {
            let vb = vb.pp(format!("layers.{l}"));
            stack.push(match encoder {
                FbankEncoder::Lstm => Layer::Lstm(BiLstm::new(*dim, dim / 2, vb)?),
                FbankEncoder::Conformer {
                    heads,
                    ff_dim,
                    kernel,
                } => Layer::Conformer(Box::new(ConformerBlock::new(
                    *dim, *heads, *ff_dim, *kernel, vb,
                )?)),
            });
        }
        Ok(Self {
            cmvn_mean: vb.get_with_hints(*num_mel_bins, "cmvn.mean", Init::Const(0.0))?,
            cmvn_scale: vb.get_with_hints(*num_mel_bins, "cmvn.scale", Init::Const(1.0))?,
            conv1,
            conv2,
            proj,
            layers: stack,
            dim: *dim,
            dropout: *dropout,
        })
    }

    /// `feats`: `[B, F, bins]` raw log-mel filterbanks, `lens[b]` valid frames each. Returns the
    /// hidden states `[layers + 1, B, T', dim]` and the subsampled lengths.
    pub fn forward(
        &self,
        feats: &Tensor,
        lens: &[usize],
        mode: &mut Mode,
    ) -> candle_core::Result<(Tensor, Vec<usize>)> {
        let (b, f, _) = feats.dims3()?;
        let x = feats
            .broadcast_sub(&self.cmvn_mean.detach())?
            .broadcast_mul(&self.cmvn_scale.detach())?;
        let x = x.broadcast_mul(&length_mask(lens, f, x.dtype(), x.device())?)?;
        let conv = |c: &Conv2d, x: &Tensor| conv2d(x, c.weight(), c.bias(), 2);
        let x = conv(&self.conv1, &x.unsqueeze(1)?)?.relu()?;
        let x = conv(&self.conv2, &x)?.relu()?;
        let (_, c, t, fr) = x.dims4()?;
        let x = x.permute((0, 2, 1, 3))?.reshape((b, t, c * fr))?;
        let out_lens: Vec<usize> = lens
            .iter()
            .map(|&l| ((l.saturating_sub(1)) / 2).saturating_sub(1) / 2)
            .collect();
        let mask = length_mask(&out_lens, t, x.dtype(), x.device())?;
        let mut x = self.proj.forward(&x)?;
        if self.layers.iter().any(|l| matches!(l, Layer::Conformer(_))) {
            x = x.broadcast_add(&sinusoids(t, self.dim, x.device())?.to_dtype(x.dtype())?)?;
        }
        let mut x = x.broadcast_mul(&mask)?;
        let mut states = vec![x.clone()];
        for layer in &self.layers {
            x = mode.dropout(&x, self.dropout)?;
            x = match layer {
                Layer::Lstm(l) => l.forward(&x, &out_lens)?,
                Layer::Conformer(c) => c.forward(&x, &out_lens, &mask, self.dropout, mode)?,
            };
            x = x.broadcast_mul(&mask)?;
            states.push(x.clone());
        }
        Ok((Tensor::stack(&states, 0)?, out_lens))
    }
}

/// Sinusoidal positions `[T, dim]` (Vaswani et al., 2017).
fn sinusoids(t: usize, dim: usize, dev: &candle_core::Device) -> candle_core::Result<Tensor> {
    let mut pe = vec![0f32; t * dim];
    for p in 0..t {
        for i in 0..dim / 2 {
            let freq = (-(2.0 * i as f64) * (10000f64).ln() / dim as f64).exp();
            pe[p * dim + 2 * i] = (p as f64 * freq).sin() as f32;
            pe[p * dim + 2 * i + 1] = (p as f64 * freq).cos() as f32;
        }
    }
    Tensor::from_vec(pe, (t, dim), dev)
}

/// One conformer block.
#[derive(Debug, Clone)]
struct ConformerBlock {
    ff1: FeedForward,
    ff2: FeedForward,
    attn_norm: LayerNorm,
    qkv: Linear,
    attn_out: Linear,
    heads: usize,
    conv_norm: LayerNorm,
    pointwise1: Linear,
    depthwise: Tensor,
    depthwise_bias: Tensor,
    conv_mid_norm: LayerNorm,
    pointwise2: Linear,
    out_norm: LayerNorm,
}

#[derive(Debug, Clone)]
struct FeedForward {
    norm: LayerNorm,
    up: Linear,
    down: Linear,
}

impl FeedForward {
    fn new(dim: usize, ff: usize, vb: VarBuilder) -> candle_core::Result<Self> {
        Ok(Self {
            norm: LayerNorm::new(dim, vb.pp("norm"))?,
            up: linear(dim, ff, true, vb.pp("up"))?,
            down: linear(ff, dim, true, vb.pp("down"))?,
        })
    }

    fn forward(&self, x: &Tensor, p: f64, mode: &mut Mode) -> candle_core::Result<Tensor> {
        let y = swish(&self.up.forward(&self.norm.forward(x)?)?)?;
        let y = mode.dropout(&y, p)?;
        mode.dropout(&self.down.forward(&y)?, p)
    }
}

impl ConformerBlock {
    fn new(
        dim: usize,
        heads: usize,
        ff: usize,
        kernel: usize,
        vb: VarBuilder,
    ) -> candle_core::Result<Self> {
        let bound = 1.0 / (kernel as f64).sqrt();
        Ok(Self {
            ff1: FeedForward::new(dim, ff, vb.pp("ff1"))?,
            ff2: FeedForward::new(dim, ff, vb.pp("ff2"))?,
            attn_norm: LayerNorm::new(dim, vb.pp("attn_norm"))?,
            qkv: linear(dim, 3 * dim, true, vb.pp("qkv"))?,
            attn_out: linear(dim, dim, true, vb.pp("attn_out"))?,
            heads,
            conv_norm: LayerNorm::new(dim, vb.pp("conv_norm"))?,
            pointwise1: linear(dim, 2 * dim, true, vb.pp("pointwise1"))?,
            depthwise: vb.get_with_hints(
                (kernel, dim),
                "depthwise.weight",
                Init::Uniform {
                    lo: -bound,
                    up: bound,
                },
            )?,
            depthwise_bias: vb.get_with_hints(dim, "depthwise.bias", Init::Const(0.0))?,
            conv_mid_norm: LayerNorm::new(dim, vb.pp("conv_mid_norm"))?,
            pointwise2: linear(dim, dim, true, vb.pp("pointwise2"))?,
            out_norm: LayerNorm::new(dim, vb.pp("out_norm"))?,
        })
    }

    fn forward(
        &self,
        x: &Tensor,
        lens: &[usize],
        mask: &Tensor,
        p: f64,
        mode: &mut Mode,
    ) -> candle_core::Result<Tensor> {
        let x = (x + (self.ff1.forward(x, p, mode)? * 0.5)?)?;
        let x = (&x + self.attention(&x, lens, p, mode)?)?;
        let x = (&x + self.conv(&x, mask, p, mode)?)?;
        let x = (&x + (self.ff2.forward(&x, p, mode)? * 0.5)?)?;
        self.out_norm.forward(&x)
    }

    fn attention(
        &self,
        x: &Tensor,
        lens: &[usize],
        p: f64,
        mode: &mut Mode,
    ) -> candle_core::Result<Tensor> {
        let (b, t, d) = x.dims3()?;
        let (h, dk) = (self.heads, d / self.heads);
        let qkv = self.qkv.forward(&self.attn_norm.forward(x)?)?;
        let split = |i: usize| -> candle_core::Result<Tensor> {
            qkv.narrow(2, i * d, d)?
                .reshape((b, t, h, dk))?
                .transpose(1, 2)?
                .contiguous()
        };
        let (q, k, v) = (split(0)?, split(1)?, split(2)?);
        let scores = (q.matmul(&k.t()?)? / (dk as f64).sqrt())?;
        let mut bias = vec![0f32; b * t];
        for (bi, &l) in lens.iter().enumerate() {
            bias[bi * t + l.min(t)..(bi + 1) * t].fill(-1e9);
        }
        let bias = Tensor::from_vec(bias, (b, 1, 1, t), x.device())?.to_dtype(x.dtype())?;
        let att = softmax(&scores.broadcast_add(&bias)?, 3)?;
        let att = mode.dropout(&att, p)?;
        let y = att.matmul(&v)?.transpose(1, 2)?.reshape((b, t, d))?;
        mode.dropout(&self.attn_out.forward(&y)?, p)
    }

    fn conv(
        &self,
        x: &Tensor,
        mask: &Tensor,
        p: f64,
        mode: &mut Mode,
    ) -> candle_core::Result<Tensor> {
        let d = x.dim(2)?;
        let y = self.pointwise1.forward(&self.conv_norm.forward(x)?)?;
        let y =
            (y.narrow(D::Minus1, 0, d)? * candle_nn::ops::sigmoid(&y.narrow(D::Minus1, d, d)?)?)?;
        let y = y.broadcast_mul(mask)?;
        let acc = depthwise_conv(&y, &self.depthwise, &self.depthwise_bias)?;
        let y = swish(&self.conv_mid_norm.forward(&acc)?)?;
        mode.dropout(&self.pointwise2.forward(&y)?, p)
    }
}
