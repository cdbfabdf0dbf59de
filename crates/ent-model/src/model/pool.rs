//! The poolings for utterance labels only (docs/method.md §3): linear softmax and attention.

use candle_core::{D, Tensor};

use crate::error::{ModelError, check_batch, check_classes, check_lens};

/// Linear-softmax pooling loss per utterance, `[B]` ([`PoolFunction::LinearSoftmax`]).
///
/// `logits`: emotion logits `[B, T, U+1, K]`; the pooled nodes of utterance `i` are `t <
/// frame_lens[i]`, `u <= token_lens[i]`. With `p = softmax(logits)` and, per class `c`, `y_c =
/// sum p_c^2 / sum p_c` over those nodes (clamped to `[1e-7, 1 - 1e-7]`), the loss is
/// `-sum_{c != neutral} [c = label] log y_c + [c != label] log(1 - y_c)`.
pub fn linear_softmax_pool_loss(
    logits: &Tensor,
    labels: &[u32],
    frame_lens: &[usize],
    token_lens: &[usize],
    neutral: usize,
) -> Result<Tensor, ModelError> {
    let mask = pool_mask(logits, labels, frame_lens, token_lens, neutral)?;
    let p = candle_nn::ops::softmax(logits, D::Minus1)?;
    let pm = p.broadcast_mul(&mask)?;
    let den = pm.sum((1, 2))?;
    let num = pm.mul(&p)?.sum((1, 2))?;
    // `den` is 0 only where every pooled probability underflowed, and then so is `num`.
    pool_bce(&num.div(&den.maximum(1e-30)?)?, labels, neutral)
}

/// Attention pooling loss per utterance, `[B]` ([`PoolFunction::Attention`]).
///
/// `logits`: emotion logits `[B, T, U+1, K]`, pooled over `t < frame_lens[i]`, `u <=
/// token_lens[i]`; `attention`: attention logits `[B, T, K]` per frame (the same for every `u`
/// of a frame). With `p = softmax_K(logits)` and `w = softmax` over the pooled nodes of the
/// attention logits, per class, `y_c = sum w_c p_c`, clamped and scored as in
/// [`linear_softmax_pool_loss`].
pub fn attention_pool_loss(
    logits: &Tensor,
    attention: &Tensor,
    labels: &[u32],
    frame_lens: &[usize],
    token_lens: &[usize],
    neutral: usize,
) -> Result<Tensor, ModelError> {
    let (b, t, u1, k) = logits.dims4()?;
    if attention.dims() != [b, t, k] {
        return Err(ModelError::Shape {
            arg: "attention logits",
            got: attention.dims().to_vec(),
            expected: format!(
                "[{b}, {t}, {k}] (emotion logits [B, T, U+1, K] = {:?})",
                logits.dims()
            ),
        });
    }
    let mask = pool_mask(logits, labels, frame_lens, token_lens, neutral)?;
    let a = attention
        .unsqueeze(2)?
        .broadcast_as((b, t, u1, k))?
        .broadcast_add(&mask.affine(1e30, -1e30)?)?;
    // Masked nodes sit 1e30 below the rest: their weight is exactly 0.
    let m = a.max_keepdim(1)?.max_keepdim(2)?.detach();
    let e = a.broadcast_sub(&m)?.exp()?.broadcast_mul(&mask)?;
    let w = e.broadcast_div(&e.sum_keepdim((1, 2))?)?;
    let p = candle_nn::ops::softmax(logits, D::Minus1)?;
    pool_bce(&w.mul(&p)?.sum((1, 2))?, labels, neutral)
}

/// Checks the inputs of a pooling loss and returns the mask `[B, T, U+1, 1]` of pooled nodes.
fn pool_mask(
    logits: &Tensor,
    labels: &[u32],
    frame_lens: &[usize],
    token_lens: &[usize],
    neutral: usize,
) -> Result<Tensor, ModelError> {
    let (b, t, u1, k) = logits.dims4()?;
    check_lens("frame lengths", frame_lens, b, t, false)?;
    check_lens("token lengths", token_lens, b, u1 - 1, true)?;
    check_batch("emotion labels", labels.len(), b)?;
    check_classes("emotion labels", labels.iter().map(|&c| c as usize), k)?;
    if neutral >= k {
        return Err(ModelError::ClassOutOfRange {
            arg: "the neutral class".into(),
            value: neutral,
            classes: k,
        });
    }
    let mut mask = vec![0f32; b * t * u1];
    for i in 0..b {
        for f in 0..frame_lens[i] {
            mask[(i * t + f) * u1..(i * t + f) * u1 + token_lens[i] + 1].fill(1.0);
        }
    }
    Ok(Tensor::from_vec(mask, (b, t, u1, 1), logits.device())?.to_dtype(logits.dtype())?)
}

/// `-sum_{c != neutral} [c = label] log y_c + [c != label] log(1 - y_c)` per utterance, `y`
/// `[B, K]` clamped to `[1e-7, 1 - 1e-7]`.
fn pool_bce(y: &Tensor, labels: &[u32], neutral: usize) -> Result<Tensor, ModelError> {
    let (b, k) = y.dims2()?;
    let y = y.clamp(1e-7, 1.0 - 1e-7)?;
    let mut pos = vec![0f32; b * k];
    let mut neg = vec![0f32; b * k];
    for (i, &l) in labels.iter().enumerate() {
        for c in (0..k).filter(|&c| c != neutral) {
            if c == l as usize {
                pos[i * k + c] = 1.0;
            } else {
                neg[i * k + c] = 1.0;
            }
        }
    }
    let (dev, dtype) = (y.device(), y.dtype());
    let pos = Tensor::from_vec(pos, (b, k), dev)?.to_dtype(dtype)?;
    let neg = Tensor::from_vec(neg, (b, k), dev)?.to_dtype(dtype)?;
    let ll = pos
        .mul(&y.log()?)?
        .add(&neg.mul(&y.affine(-1.0, 1.0)?.log()?)?)?;
    Ok(ll.sum(1)?.neg()?)
}
