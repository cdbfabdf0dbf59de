//! Differentiable building blocks.
//!
//! candle-nn's `LayerNorm`, `RmsNorm` and `softmax_last_dim` record no backward pass, so nothing
//! here uses them: on the CPU (f32, f64) linear layers, convolutions, layer norm, softmax and
//! Swish are single ops with hand-written backward passes (`cpu_ops.rs`), elsewhere plain tensor
//! ops, which candle differentiates (the `*_candle` versions, kept as the references and reached by the tests through `testing`). Dropout draws its mask from the caller's seeded generator, so a training run
//! is reproducible and resumable bit for bit.

use candle_core::{D, DType, Device, Tensor};
use candle_nn::{Init, Module, VarBuilder};
use ent_common::rng::SplitMix64;

/// Whether a forward pass trains (dropout on) and the generator its dropout masks come from.
#[derive(Debug)]
pub struct Mode<'a> {
    rng: Option<&'a mut SplitMix64>,
}

impl<'a> Mode<'a> {
    /// Evaluation: dropout off.
    pub fn eval() -> Self {
        Self { rng: None }
    }

    /// Training: dropout masks drawn from `rng`.
    pub fn train(rng: &'a mut SplitMix64) -> Self {
        Self { rng: Some(rng) }
    }

    /// True when training.
    pub fn is_train(&self) -> bool {
        self.rng.is_some()
    }

    /// Inverted dropout with probability `p`: each element is zeroed with probability `p`, the
    /// rest scaled by `1 / (1 - p)`. The identity in evaluation or when `p == 0`.
    pub fn dropout(&mut self, x: &Tensor, p: f64) -> candle_core::Result<Tensor> {
        let Some(rng) = self.rng.as_deref_mut() else {
            return Ok(x.clone());
        };
        if p <= 0.0 {
            return Ok(x.clone());
        }
        if p >= 1.0 {
            candle_core::bail!("dropout probability {p} must be below 1");
        }
        let scale = 1.0 / (1.0 - p);
        let mask: Vec<f32> = (0..x.elem_count())
            .map(|_| if rng.uniform() < p { 0.0 } else { scale as f32 })
            .collect();
        let mask = Tensor::from_vec(mask, x.shape(), x.device())?.to_dtype(x.dtype())?;
        x * mask
    }
}

/// A linear layer `y = x W^T + b` over the last axis of `x` (`weight` `[out, in]`, `bias`
/// `[out]` or none). On the CPU (f32, f64) the rows of any leading shape are one op with a
/// hand-written backward pass (`cpu_ops.rs`: one GEMM each way and a row sum for the bias);
/// elsewhere `Linear::forward_candle`, candle-nn's layer.
#[derive(Debug, Clone)]
pub struct Linear {
    weight: Tensor,
    bias: Option<Tensor>,
}

impl Linear {
    /// A layer with these parameters.
    pub fn new(weight: Tensor, bias: Option<Tensor>) -> Self {
        Self { weight, bias }
    }

    /// The weight `[out, in]`.
    pub fn weight(&self) -> &Tensor {
        &self.weight
    }

    /// The bias `[out]`, if any.
    pub fn bias(&self) -> Option<&Tensor> {
        self.bias.as_ref()
    }

    /// [`Linear`]'s output through candle-nn's linear layer: the reference of the fused op.
    pub(crate) fn forward_candle(&self, x: &Tensor) -> candle_core::Result<Tensor> {
        candle_nn::Linear::new(self.weight.clone(), self.bias.clone()).forward(x)
    }
}

impl Module for Linear {
    fn forward(&self, x: &Tensor) -> candle_core::Result<Tensor> {
        let bias = match &self.bias {
            Some(b) => b.clone(),
            None => Tensor::zeros(
                self.weight.dim(0)?,
                self.weight.dtype(),
                self.weight.device(),
            )?,
        };
        if x.rank() == 0
            || self.weight.elem_count() == 0
            || !crate::cpu_ops::fusable(x, &[&self.weight, &bias])
        {
            return self.forward_candle(x);
        }
        let dims = x.dims().to_vec();
        let i = dims[dims.len() - 1];
        let n = x.elem_count() / i.max(1);
        let y = x.contiguous()?.reshape((n, i))?.apply_op3(
            &self.weight.contiguous()?,
            &bias.contiguous()?,
            ent_kernels::op::Op::new(crate::cpu_ops::LinearOp),
        )?;
        let mut out = dims;
        *out.last_mut().expect("rank > 0") = self.weight.dim(0)?;
        y.reshape(out)
    }
}

/// A linear layer initialised as PyTorch's `nn.Linear` (uniform in `±1/sqrt(in)` for weight and
/// bias), parameters `weight` `[out, in]` and `bias` `[out]` under `vb`.
pub fn linear(
    input: usize,
    output: usize,
    bias: bool,
    vb: VarBuilder,
) -> candle_core::Result<Linear> {
    let bound = 1.0 / (input as f64).sqrt();
    let init = Init::Uniform {
        lo: -bound,
        up: bound,
    };
    let w = vb.get_with_hints((output, input), "weight", init)?;
    let b = if bias {
        Some(vb.get_with_hints(output, "bias", init)?)
    } else {
        None
    };
    Ok(Linear::new(w, b))
}

/// Layer normalisation over the last dimension with a learnt scale and shift, in differentiable
/// tensor ops: `(x - mean) / sqrt(var + eps) * weight + bias` (biased variance, as PyTorch).
#[derive(Debug, Clone)]
pub struct LayerNorm {
    weight: Tensor,
    bias: Tensor,
    eps: f64,
}

impl LayerNorm {
    /// `weight` (ones) and `bias` (zeros) of width `dim` under `vb`; `eps` 1e-5 as PyTorch.
    pub fn new(dim: usize, vb: VarBuilder) -> candle_core::Result<Self> {
        Ok(Self {
            weight: vb.get_with_hints(dim, "weight", Init::Const(1.0))?,
            bias: vb.get_with_hints(dim, "bias", Init::Const(0.0))?,
            eps: 1e-5,
        })
    }

    /// A layer norm with the given `weight` and `bias` (`[dim]`) and `eps`.
    pub fn from_parts(weight: Tensor, bias: Tensor, eps: f64) -> Self {
        Self { weight, bias, eps }
    }

    /// Normalises `x` (`[..., dim]`): on the CPU (f32, f64) one op with a hand-written backward
    /// pass (`cpu_ops.rs`), elsewhere `LayerNorm::forward_candle`.
    pub fn forward(&self, x: &Tensor) -> candle_core::Result<Tensor> {
        if crate::cpu_ops::fusable(x, &[&self.weight, &self.bias]) {
            return x.contiguous()?.apply_op3(
                &self.weight.contiguous()?,
                &self.bias.contiguous()?,
                ent_kernels::op::Op::new(crate::cpu_ops::LayerNormOp { eps: self.eps }),
            );
        }
        self.forward_candle(x)
    }

    /// [`LayerNorm::forward`] in plain tensor operations: the reference of the fused op.
    pub(crate) fn forward_candle(&self, x: &Tensor) -> candle_core::Result<Tensor> {
        let mean = x.mean_keepdim(D::Minus1)?;
        let xc = x.broadcast_sub(&mean)?;
        let var = xc.sqr()?.mean_keepdim(D::Minus1)?;
        let xn = xc.broadcast_div(&(var + self.eps)?.sqrt()?)?;
        xn.broadcast_mul(&self.weight)?.broadcast_add(&self.bias)
    }
}

/// `[B, T, 1]` mask, 1 on the first `lens[b]` frames of each row and 0 after.
pub fn length_mask(
    lens: &[usize],
    t: usize,
    dtype: DType,
    dev: &Device,
) -> candle_core::Result<Tensor> {
    let mut m = vec![0f32; lens.len() * t];
    for (b, &l) in lens.iter().enumerate() {
        m[b * t..b * t + l.min(t)].fill(1.0);
    }
    Tensor::from_vec(m, (lens.len(), t, 1), dev)?.to_dtype(dtype)
}

/// Mean over the first `lens[b]` frames of `x` (`[B, T, D]`) for each row: `[B, D]`.
/// A zero length gives zeros.
pub fn masked_mean(x: &Tensor, lens: &[usize]) -> candle_core::Result<Tensor> {
    let (_, t, _) = x.dims3()?;
    let mask = length_mask(lens, t, x.dtype(), x.device())?;
    let denom: Vec<f32> = lens.iter().map(|&l| 1.0 / l.max(1) as f32).collect();
    let denom = Tensor::from_vec(denom, (lens.len(), 1), x.device())?.to_dtype(x.dtype())?;
    x.broadcast_mul(&mask)?.sum(1)?.broadcast_mul(&denom)
}

/// Softmax over `dim` (max-subtracted for stability): over the last axis of a CPU tensor (f32,
/// f64) one op with a hand-written backward pass (`cpu_ops.rs`), else `softmax_candle`.
pub fn softmax(x: &Tensor, dim: usize) -> candle_core::Result<Tensor> {
    if dim + 1 == x.rank() && crate::cpu_ops::fusable(x, &[]) {
        return x
            .contiguous()?
            .apply_op1(ent_kernels::op::Op::new(crate::cpu_ops::SoftmaxLastOp));
    }
    softmax_candle(x, dim)
}

/// [`softmax`] in plain differentiable tensor operations: the reference of the fused op.
pub(crate) fn softmax_candle(x: &Tensor, dim: usize) -> candle_core::Result<Tensor> {
    let max = x.max_keepdim(dim)?.detach();
    let e = x.broadcast_sub(&max)?.exp()?;
    e.broadcast_div(&e.sum_keepdim(dim)?)
}

/// The trainable scalar mix of docs/method.md §2: `gamma * sum_k softmax(w)_k * H_k` over `L` hidden
/// states, `w` (`[L]`) initialised to 0 and `gamma` (`[1]`) to 1.
#[derive(Debug, Clone)]
pub struct ScalarMix {
    weights: Tensor,
    gamma: Tensor,
}

impl ScalarMix {
    /// A mix of `layers` hidden states, parameters `weights` and `gamma` under `vb`.
    pub fn new(layers: usize, vb: VarBuilder) -> candle_core::Result<Self> {
        Ok(Self {
            weights: vb.get_with_hints(layers, "weights", Init::Const(0.0))?,
            gamma: vb.get_with_hints(1, "gamma", Init::Const(1.0))?,
        })
    }

    /// Number of hidden states mixed.
    pub fn layers(&self) -> usize {
        self.weights.dim(0).unwrap_or(0)
    }

    /// `states`: `[L, B, T, D]`; returns `[B, T, D]`.
    pub fn forward(&self, states: &Tensor) -> candle_core::Result<Tensor> {
        let l = states.dim(0)?;
        if l != self.layers() {
            candle_core::bail!(
                "scalar mix over {} layers given {l} hidden states",
                self.layers()
            );
        }
        let w = softmax(&self.weights, 0)?.reshape((l, 1, 1, 1))?;
        states
            .broadcast_mul(&w.to_dtype(states.dtype())?)?
            .sum(0)?
            .broadcast_mul(&self.gamma.reshape((1, 1, 1))?.to_dtype(states.dtype())?)
    }
}

/// A 2-D convolution without padding: `x` `[B, C, H, W]`, `w` `[O, C, KH, KW]`, `b` `[O]` or
/// none, stride `stride` in both directions -> `[B, O, Ho, Wo]`. On the CPU (f32, f64) one op
/// with a hand-written backward pass (`cpu_ops.rs`: a GEMM over each utterance's im2col matrix),
/// elsewhere `conv2d_candle`.
pub fn conv2d(
    x: &Tensor,
    w: &Tensor,
    b: Option<&Tensor>,
    stride: usize,
) -> candle_core::Result<Tensor> {
    let zeros;
    let bias = match b {
        Some(b) => b,
        None => {
            zeros = Tensor::zeros(w.dim(0)?, w.dtype(), w.device())?;
            &zeros
        }
    };
    if crate::cpu_ops::fusable(x, &[w, bias]) {
        return x.contiguous()?.apply_op3(
            &w.contiguous()?,
            &bias.contiguous()?,
            ent_kernels::op::Op::new(crate::cpu_ops::Conv2dOp { stride }),
        );
    }
    conv2d_candle(x, w, b, stride)
}

/// [`conv2d`] through candle's convolution, as candle-nn's `Conv2d` computes it: the reference
/// of the fused op. The input is first cut to the rows and columns a window reaches (the same
/// outputs): candle's convolution backward pass gets the input shape wrong unless
/// `size - kernel` divides by the stride.
pub(crate) fn conv2d_candle(
    x: &Tensor,
    w: &Tensor,
    b: Option<&Tensor>,
    stride: usize,
) -> candle_core::Result<Tensor> {
    let (_, _, kh, kw) = w.dims4()?;
    let (_, _, h, wd) = x.dims4()?;
    let reach = |size: usize, k: usize| {
        if size < k || stride == 0 {
            size
        } else {
            k + (size - k) / stride * stride
        }
    };
    let x = x.narrow(2, 0, reach(h, kh))?.narrow(3, 0, reach(wd, kw))?;
    let y = x.conv2d(w, 0, stride, 1, 1)?;
    match b {
        Some(b) => y.broadcast_add(&b.reshape((1, b.elem_count(), 1, 1))?),
        None => Ok(y),
    }
}

/// The depthwise convolution over time of the conformer's convolution module: `y` `[B, T, D]`,
/// `w` `[K, D]`, `b` `[D]`; `out[b, t, d] = b[d] + sum_j w[j, d] y[b, t + j - K/2, d]`, zero
/// outside `0..T`. On the CPU (f32, f64) one op with a hand-written backward pass
/// (`cpu_ops.rs`), elsewhere `depthwise_conv_candle`.
pub fn depthwise_conv(y: &Tensor, w: &Tensor, b: &Tensor) -> candle_core::Result<Tensor> {
    if crate::cpu_ops::fusable(y, &[w, b]) {
        return y.contiguous()?.apply_op3(
            &w.contiguous()?,
            &b.contiguous()?,
            ent_kernels::op::Op::new(crate::cpu_ops::DepthwiseConvOp),
        );
    }
    depthwise_conv_candle(y, w, b)
}

/// [`depthwise_conv`] in candle operations, one shifted product per tap: the reference of the
/// fused op.
pub(crate) fn depthwise_conv_candle(
    y: &Tensor,
    w: &Tensor,
    b: &Tensor,
) -> candle_core::Result<Tensor> {
    let (bs, t, d) = y.dims3()?;
    let k = w.dim(0)?;
    let half = k / 2;
    let pad = Tensor::zeros((bs, half, d), y.dtype(), y.device())?;
    let padded = Tensor::cat(&[&pad, y, &pad], 1)?;
    let mut acc = b
        .reshape((1, 1, d))?
        .broadcast_as((bs, t, d))?
        .contiguous()?;
    for j in 0..k {
        let wj = w.narrow(0, j, 1)?.reshape((1, 1, d))?;
        acc = (acc + padded.narrow(1, j, t)?.broadcast_mul(&wj)?)?;
    }
    Ok(acc)
}

/// The Swish (SiLU) activation `x * sigmoid(x)`: on the CPU (f32, f64) one op with a
/// hand-written backward pass (`cpu_ops.rs`), elsewhere `swish_candle`.
pub fn swish(x: &Tensor) -> candle_core::Result<Tensor> {
    if crate::cpu_ops::fusable(x, &[]) {
        return x
            .contiguous()?
            .apply_op1(ent_kernels::op::Op::new(crate::cpu_ops::SwishOp));
    }
    swish_candle(x)
}

/// [`swish`] in candle operations: the reference of the fused op.
pub(crate) fn swish_candle(x: &Tensor) -> candle_core::Result<Tensor> {
    x * candle_nn::ops::sigmoid(x)?
}

/// A [`candle_nn::VarMap`] whose new variables are drawn from a seeded [`SplitMix64`] instead of
/// candle's unseeded generator, so the same seed and construction order give the same initial
/// weights on every run and machine. Existing variables are returned as they are.
#[derive(Clone)]
pub struct SeededVarMap {
    map: candle_nn::VarMap,
    rng: std::sync::Arc<std::sync::Mutex<SplitMix64>>,
}

impl std::fmt::Debug for SeededVarMap {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let n = self.map.data().lock().map(|d| d.len()).unwrap_or(0);
        f.debug_struct("SeededVarMap")
            .field("variables", &n)
            .finish()
    }
}

impl SeededVarMap {
    /// An empty store drawing from `seed`.
    pub fn new(seed: u64) -> Self {
        Self {
            map: candle_nn::VarMap::new(),
            rng: std::sync::Arc::new(std::sync::Mutex::new(SplitMix64::new(seed))),
        }
    }

    /// The variables.
    pub fn var_map(&self) -> &candle_nn::VarMap {
        &self.map
    }

    /// A builder creating variables here.
    pub fn var_builder(&self, dtype: DType, dev: &Device) -> VarBuilder<'static> {
        VarBuilder::from_backend(Box::new(self.clone()), dtype, dev.clone())
    }

    fn draw(&self, shape: &candle_core::Shape, init: Init) -> candle_core::Result<Vec<f64>> {
        let n = shape.elem_count();
        let mut rng = self
            .rng
            .lock()
            .map_err(|_| candle_core::Error::Msg("seeded var map poisoned".into()))?;
        let uniform = |rng: &mut SplitMix64, lo: f64, up: f64| lo + (up - lo) * rng.uniform();
        Ok(match init {
            Init::Const(c) => vec![c; n],
            Init::Uniform { lo, up } => (0..n).map(|_| uniform(&mut rng, lo, up)).collect(),
            Init::Randn { mean, stdev } => (0..n).map(|_| mean + stdev * rng.gaussian()).collect(),
            Init::Kaiming {
                dist,
                fan,
                non_linearity,
            } => {
                let std = non_linearity.gain() / (fan.for_shape(shape) as f64).sqrt();
                match dist {
                    candle_nn::init::NormalOrUniform::Uniform => {
                        let bound = 3f64.sqrt() * std;
                        (0..n).map(|_| uniform(&mut rng, -bound, bound)).collect()
                    }
                    candle_nn::init::NormalOrUniform::Normal => {
                        (0..n).map(|_| std * rng.gaussian()).collect()
                    }
                }
            }
        })
    }
}

impl candle_nn::var_builder::SimpleBackend for SeededVarMap {
    fn get(
        &self,
        s: candle_core::Shape,
        name: &str,
        h: Init,
        dtype: DType,
        dev: &Device,
    ) -> candle_core::Result<Tensor> {
        let mut data = self
            .map
            .data()
            .lock()
            .map_err(|_| candle_core::Error::Msg("var map poisoned".into()))?;
        if let Some(v) = data.get(name) {
            if v.shape() != &s {
                candle_core::bail!(
                    "variable {name} has shape {:?}, requested {:?}",
                    v.shape(),
                    s
                );
            }
            return Ok(v.as_tensor().clone());
        }
        let values = self.draw(&s, h)?;
        let t = Tensor::from_vec(values, s, dev)?.to_dtype(dtype)?;
        let var = candle_core::Var::from_tensor(&t)?;
        let out = var.as_tensor().clone();
        data.insert(name.to_string(), var);
        Ok(out)
    }

    fn get_unchecked(
        &self,
        name: &str,
        _dtype: DType,
        _dev: &Device,
    ) -> candle_core::Result<Tensor> {
        candle_core::bail!(
            "variable {name}: a seeded var map creates variables with a shape, use get"
        )
    }

    fn contains_tensor(&self, name: &str) -> bool {
        self.map
            .data()
            .lock()
            .map(|d| d.contains_key(name))
            .unwrap_or(false)
    }
}
