//! Joints, the predictor and the utterance heads.

use candle_core::{DType, Tensor};
use candle_nn::{Embedding, Init, Module, VarBuilder};

use crate::lstm::{BiLstm, Lstm};
use crate::nn::{LayerNorm, Linear, Mode, length_mask, linear, masked_mean, softmax};

/// A transducer joint `z[t,u] = W_o tanh(W_e h_t + W_p g_u + b) + b_o` (docs/method.md §2).
#[derive(Debug, Clone)]
pub struct Joint {
    enc: Linear,
    pred: Linear,
    out: Linear,
}

impl Joint {
    /// Encoder width `enc_dim`, predictor width `pred_dim`, hidden `hidden`, `outputs` logits;
    /// parameters `enc` (with the bias `b`), `pred` (no bias) and `out` under `vb`.
    pub fn new(
        enc_dim: usize,
        pred_dim: usize,
        hidden: usize,
        outputs: usize,
        vb: VarBuilder,
    ) -> candle_core::Result<Self> {
        Ok(Self {
            enc: linear(enc_dim, hidden, true, vb.pp("enc"))?,
            pred: linear(pred_dim, hidden, false, vb.pp("pred"))?,
            out: linear(hidden, outputs, true, vb.pp("out"))?,
        })
    }

    /// `W_e h + b` for `h`: `[B, T, E]` -> `[B, T, J]`.
    pub fn project_encoder(&self, h: &Tensor) -> candle_core::Result<Tensor> {
        self.enc.forward(h)
    }

    /// `W_p g` for `g`: `[B, U+1, P]` -> `[B, U+1, J]`.
    pub fn project_predictor(&self, g: &Tensor) -> candle_core::Result<Tensor> {
        self.pred.forward(g)
    }

    /// Logits from projected inputs that broadcast against each other (for example
    /// `[B, T, 1, J]` and `[B, 1, U+1, J]`): `W_o tanh(e + p) + b_o`, shape `[..., outputs]`.
    pub fn combine(&self, e: &Tensor, p: &Tensor) -> candle_core::Result<Tensor> {
        let hidden = e.broadcast_add(p)?.tanh()?;
        let dims = hidden.dims().to_vec();
        let j = *dims.last().unwrap_or(&0);
        let rows = hidden.elem_count() / j.max(1);
        let z = self.out.forward(&hidden.reshape((rows, j))?)?;
        let mut out_dims = dims;
        *out_dims.last_mut().unwrap_or(&mut 0) = z.dim(1)?;
        z.reshape(out_dims)
    }

    /// The full lattice: `h` `[B, T, E]`, `g` `[B, U+1, P]` -> `[B, T, U+1, outputs]`. On the
    /// CPU (f32, f64) the hidden layer is never held whole (the fused joint, `fused.rs`);
    /// elsewhere it is computed in candle ops, as the reference `testing::joint_unfused` does.
    pub fn forward(&self, h: &Tensor, g: &Tensor) -> candle_core::Result<Tensor> {
        let e = self.project_encoder(h)?;
        let p = self.project_predictor(g)?;
        if !self.fusable(&e, &p) {
            return self.combine(&e.unsqueeze(2)?, &p.unsqueeze(1)?);
        }
        let z = e.contiguous()?.apply_op3(
            &p.contiguous()?,
            &self.out.weight().contiguous()?,
            ent_kernels::op::Op::new(crate::fused::FusedJoint),
        )?;
        match self.out.bias() {
            Some(b) => z.broadcast_add(b),
            None => Ok(z),
        }
    }

    /// Whether the fused kernels run on these projected inputs: the CPU, f32 or f64 throughout.
    fn fusable(&self, e: &Tensor, p: &Tensor) -> bool {
        crate::cpu_ops::fusable(e, &[p, self.out.weight()])
    }

    /// Whether [`Joint::forward_gathered`] can run on these inputs (`h` `[B, T, E]`).
    pub(crate) fn can_gather(&self, h: &Tensor) -> bool {
        crate::cpu_ops::fusable(h, &[self.out.weight()])
    }

    /// The joint fused with its log-softmax normaliser and a gather (`fused.rs`,
    /// `FusedJointGather`): `h` `[B, T, E]`, `g` `[B, U+1, P]` -> `[B, T, U+1, 3]`, per node
    /// `logsumexp` of the logits, the logit in column `blank` (0 for `None`) and the logit in
    /// column `labels[b * (U+1) + u]` (0 for `NO_LABEL`). CPU, f32 or f64 only
    /// ([`Joint::can_gather`]); the logits are never held whole.
    pub(crate) fn forward_gathered(
        &self,
        h: &Tensor,
        g: &Tensor,
        blank: Option<usize>,
        labels: std::sync::Arc<Vec<u32>>,
    ) -> candle_core::Result<Tensor> {
        let e = self.project_encoder(h)?;
        let p = self.project_predictor(g)?;
        let w = self.out.weight();
        let b = match self.out.bias() {
            Some(b) => b.clone(),
            None => Tensor::zeros(w.dim(0)?, w.dtype(), w.device())?,
        };
        let wb = Tensor::cat(&[w, &b.unsqueeze(1)?], 1)?;
        e.contiguous()?.apply_op3(
            &p.contiguous()?,
            &wb.contiguous()?,
            ent_kernels::op::Op::new(crate::fused::FusedJointGather { blank, labels }),
        )
    }

    /// [`Joint::forward`] as separate candle operations, the `[B, T, U+1, J]` hidden layer in
    /// memory: the reference the fused joint is tested against (the path of [`Joint::forward`]
    /// on other devices).
    #[cfg(feature = "testing")]
    pub(crate) fn forward_candle(&self, h: &Tensor, g: &Tensor) -> candle_core::Result<Tensor> {
        let e = self.project_encoder(h)?.unsqueeze(2)?;
        let p = self.project_predictor(g)?.unsqueeze(1)?;
        self.combine(&e, &p)
    }
}

/// The prediction network: `Embedding(V, E)` -> dropout -> LSTM -> `Linear(H, J)`.
#[derive(Debug, Clone)]
pub struct Predictor {
    embed: Embedding,
    lstm: Lstm,
    proj: Linear,
    dropout: f64,
    blank: u32,
}

/// Recurrent state of the predictor while decoding: `h`, `c` `[B, H]`.
#[derive(Debug, Clone)]
pub struct PredictorState {
    /// Hidden state.
    pub h: Tensor,
    /// Cell state.
    pub c: Tensor,
}

impl Predictor {
    /// Parameters `embed.weight`, `lstm.*` (PyTorch names) and `proj.*` under `vb`.
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        vocab: usize,
        embed: usize,
        hidden: usize,
        out: usize,
        dropout: f64,
        blank: usize,
        vb: VarBuilder,
    ) -> candle_core::Result<Self> {
        let table = vb.get_with_hints(
            (vocab, embed),
            "embed.weight",
            Init::Randn {
                mean: 0.0,
                stdev: 1.0,
            },
        )?;
        Ok(Self {
            embed: Embedding::new(table, embed),
            lstm: Lstm::new(embed, hidden, false, vb.pp("lstm"))?,
            proj: linear(hidden, out, true, vb.pp("proj"))?,
            dropout,
            blank: blank as u32,
        })
    }

    /// `tokens`: `[B, U]` u32 targets, `token_lens[b]` valid each. The input is
    /// `[blank, y_1 .. y_U]`; returns `[B, U+1, J]`, zero past `token_lens[b] + 1`.
    pub fn forward(
        &self,
        tokens: &Tensor,
        token_lens: &[usize],
        mode: &mut Mode,
    ) -> candle_core::Result<Tensor> {
        let (b, _) = tokens.dims2()?;
        let start = Tensor::full(self.blank, (b, 1), tokens.device())?;
        let input = Tensor::cat(&[&start, &tokens.to_dtype(DType::U32)?], 1)?;
        let lens: Vec<usize> = token_lens.iter().map(|&u| u + 1).collect();
        let x = self.embed.forward(&input)?;
        let x = mode.dropout(&x, self.dropout)?;
        let g = self.lstm.forward(&x, &lens)?;
        let u1 = g.dim(1)?;
        self.proj
            .forward(&g)?
            .broadcast_mul(&length_mask(&lens, u1, g.dtype(), g.device())?)
    }

    /// The zero state for `batch` hypotheses.
    pub fn initial_state(
        &self,
        batch: usize,
        dtype: DType,
        dev: &candle_core::Device,
    ) -> candle_core::Result<PredictorState> {
        let z = Tensor::zeros((batch, self.lstm.hidden()), dtype, dev)?;
        Ok(PredictorState { h: z.clone(), c: z })
    }

    /// One decoding step without dropout: `tokens` `[B]` u32 -> output `[B, J]` and the next state.
    pub fn step(
        &self,
        tokens: &Tensor,
        state: &PredictorState,
    ) -> candle_core::Result<(Tensor, PredictorState)> {
        let x = self.embed.forward(&tokens.to_dtype(DType::U32)?)?;
        let (h, c) = self.lstm.step(&x, &state.h, &state.c)?;
        Ok((self.proj.forward(&h)?, PredictorState { h, c }))
    }
}

/// The utterance emotion head.
#[derive(Debug, Clone)]
pub enum UtteranceHead {
    /// `[mean_t h_t ; mean_u g_u]` -> LayerNorm -> Linear (docs/method.md §2).
    Pooled {
        /// Norm over the pooled vector.
        norm: LayerNorm,
        /// Classifier.
        out: Linear,
    },
    /// CTA-RNN-style head over the front end's hidden states.
    CtaRnn(Box<CtaRnn>),
}

/// Attention across layers, attention across time, then a BiLSTM (docs/method.md §9).
///
/// ```text
/// layer scores  s_l[t] = v_c . tanh(W_c H_l[t] + b_c)   a[t] = softmax_l s[t]    x_t = sum_l a_l[t] H_l[t]
/// time scores   r[t]   = v_t . tanh(W_t x_t + b_t)      w = softmax_t r (valid frames)   x'_t = T_b w_t x_t
/// r = BiLSTM(x')        logits = Linear(LayerNorm(mean_t r_t))
/// ```
#[derive(Debug, Clone)]
pub struct CtaRnn {
    layer_proj: Linear,
    layer_score: Linear,
    time_proj: Linear,
    time_score: Linear,
    rnn: BiLstm,
    norm: LayerNorm,
    out: Linear,
}

impl CtaRnn {
    /// Hidden states of width `dim`, scorers of width `att`, LSTM `rnn` per direction, `k` classes.
    pub fn new(
        dim: usize,
        att: usize,
        rnn: usize,
        k: usize,
        vb: VarBuilder,
    ) -> candle_core::Result<Self> {
        Ok(Self {
            layer_proj: linear(dim, att, true, vb.pp("layer_proj"))?,
            layer_score: linear(att, 1, false, vb.pp("layer_score"))?,
            time_proj: linear(dim, att, true, vb.pp("time_proj"))?,
            time_score: linear(att, 1, false, vb.pp("time_score"))?,
            rnn: BiLstm::new(dim, rnn, vb.pp("rnn"))?,
            norm: LayerNorm::new(2 * rnn, vb.pp("norm"))?,
            out: linear(2 * rnn, k, true, vb.pp("out"))?,
        })
    }

    /// `states`: `[L, B, T, D]`, `lens` frames each -> logits `[B, K]`.
    pub fn forward(&self, states: &Tensor, lens: &[usize]) -> candle_core::Result<Tensor> {
        let (_, b, t, _) = states.dims4()?;
        let s = self
            .layer_score
            .forward(&self.layer_proj.forward(states)?.tanh()?)?; // [L,B,T,1]
        let a = softmax(&s, 0)?;
        let x = states.broadcast_mul(&a)?.sum(0)?; // [B,T,D]
        let r = self
            .time_score
            .forward(&self.time_proj.forward(&x)?.tanh()?)?
            .squeeze(2)?; // [B,T]
        let mut bias = vec![0f32; b * t];
        let mut scale = vec![0f32; b];
        for (bi, &l) in lens.iter().enumerate() {
            bias[bi * t + l.min(t)..(bi + 1) * t].fill(-1e9);
            scale[bi] = l as f32;
        }
        let bias = Tensor::from_vec(bias, (b, t), states.device())?.to_dtype(r.dtype())?;
        let w = softmax(&(r + bias)?, 1)?;
        let scale = Tensor::from_vec(scale, (b, 1), states.device())?.to_dtype(w.dtype())?;
        let w = w.broadcast_mul(&scale)?.unsqueeze(2)?;
        let x = x.broadcast_mul(&w)?;
        let y = self.rnn.forward(&x, lens)?;
        self.out
            .forward(&self.norm.forward(&masked_mean(&y, lens)?)?)
    }
}
