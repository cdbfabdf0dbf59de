//! The sequence-level LSTM against candle-nn's step-wise LSTM on the same weights, and its
//! gradients against central finite differences in f64.

use crate::max_diff;
use candle_core::{DType, Device, Tensor, Var};
use candle_nn::rnn::{Direction, LSTMConfig, RNN};
use candle_nn::{VarBuilder, VarMap};
use ent_model::lstm::{Lstm, lstm_recurrence};
use ent_testkit::{TensorExt, central_differences_of};

const B: usize = 3;
const T: usize = 7;
const I: usize = 5;
const H: usize = 4;
const LENS: [usize; B] = [7, 4, 1];

/// Runs both implementations on the same weights and returns (ours, reference) for the output
/// and for the gradients of `sum(out * r)` with respect to x and the four parameters.
fn compare(reverse: bool, dtype: DType) -> Vec<(String, Tensor, Tensor)> {
    let dev = Device::Cpu;
    let vm = VarMap::new();
    let vb = VarBuilder::from_varmap(&vm, dtype, &dev);
    let ours = Lstm::new(I, H, reverse, vb.pp("l")).unwrap();
    let cfg = LSTMConfig {
        direction: if reverse {
            Direction::Backward
        } else {
            Direction::Forward
        },
        ..Default::default()
    };
    let reference = candle_nn::lstm(I, H, cfg, vb.pp("l")).unwrap();
    let x = Var::from_tensor(
        &Tensor::randn(0f32, 1.0, (B, T, I), &dev)
            .unwrap()
            .to_dtype(dtype)
            .unwrap(),
    )
    .unwrap();
    let r = Tensor::randn(0f32, 1.0, (B, T, H), &dev)
        .unwrap()
        .to_dtype(dtype)
        .unwrap();

    let out = ours.forward(x.as_tensor(), &LENS).unwrap();
    let g_ours = (&out * &r).unwrap().sum_all().unwrap().backward().unwrap();

    // Reference: each utterance alone over its valid frames, flipped for the reverse direction.
    let mut rows = Vec::new();
    let mut loss = Tensor::zeros((), dtype, &dev).unwrap();
    for (b, &len) in LENS.iter().enumerate() {
        let xb = x.as_tensor().get(b).unwrap().narrow(0, 0, len).unwrap();
        let idx: Vec<u32> = if reverse {
            (0..len as u32).rev().collect()
        } else {
            (0..len as u32).collect()
        };
        let idx = Tensor::new(idx.as_slice(), &dev).unwrap();
        let xs = xb.index_select(&idx, 0).unwrap().unsqueeze(0).unwrap();
        let states = reference.seq(&xs).unwrap();
        let hs = reference
            .states_to_tensor(&states)
            .unwrap()
            .squeeze(0)
            .unwrap();
        let hs = hs.index_select(&idx, 0).unwrap(); // back to time order (the flip is its own inverse)
        let rb = r.get(b).unwrap().narrow(0, 0, len).unwrap();
        loss = (loss + (&hs * &rb).unwrap().sum_all().unwrap()).unwrap();
        let pad = Tensor::zeros((T - len, H), dtype, &dev).unwrap();
        rows.push(Tensor::cat(&[hs, pad], 0).unwrap());
    }
    let out_ref = Tensor::stack(&rows, 0).unwrap();
    let g_ref = loss.backward().unwrap();

    let mut result = vec![("output".to_string(), out, out_ref)];
    result.push((
        "dx".into(),
        g_ours.get(&x).unwrap().clone(),
        g_ref.get(&x).unwrap().clone(),
    ));
    let data = vm.data().lock().unwrap();
    let mut names: Vec<_> = data.keys().cloned().collect();
    names.sort();
    for name in names {
        let v = &data[&name];
        result.push((
            name.clone(),
            g_ours.get(v).unwrap().clone(),
            g_ref.get(v).unwrap().clone(),
        ));
    }
    result
}

#[test]
fn forward_and_gradients_match_candle_nn_both_directions() {
    for reverse in [false, true] {
        for (name, a, b) in compare(reverse, DType::F32) {
            let d = max_diff(&a, &b);
            // f32 recurrences of 7 steps on values of order 1: a few ulps of accumulated rounding.
            assert!(
                d < 2e-6,
                "reverse={reverse} {name}: max |ours - candle-nn| = {d}"
            );
        }
    }
}

#[test]
fn padded_frames_are_zero_and_get_no_gradient() {
    for (name, a, _) in compare(true, DType::F32) {
        if name == "output" || name == "dx" {
            for (b, &len) in LENS.iter().enumerate() {
                let pad = a.get(b).unwrap().narrow(0, len, T - len).unwrap();
                let m = pad.abs_sum();
                assert_eq!(
                    m, 0.0,
                    "{name} of utterance {b} is not zero past its length"
                );
            }
        }
    }
}

/// dL/d(gx) and dL/d(w_hh) of the raw recurrence against central differences in f64.
#[test]
fn recurrence_gradient_matches_finite_differences() {
    let dev = Device::Cpu;
    let (b, t, h) = (2, 5, 3);
    let lens = [5usize, 3];
    for reverse in [false, true] {
        let gx = Var::from_tensor(&Tensor::randn(0f64, 1.0, (b, t, 4 * h), &dev).unwrap()).unwrap();
        let w = Var::from_tensor(&Tensor::randn(0f64, 0.5, (4 * h, h), &dev).unwrap()).unwrap();
        let r = Tensor::randn(0f64, 1.0, (b, t, h), &dev).unwrap();
        let f = |gx: &Tensor, w: &Tensor| -> f64 {
            (lstm_recurrence(gx, w, &lens, reverse).unwrap() * &r)
                .unwrap()
                .sum_all()
                .unwrap()
                .to_scalar::<f64>()
                .unwrap()
        };
        let out = lstm_recurrence(gx.as_tensor(), w.as_tensor(), &lens, reverse).unwrap();
        let grads = (&out * &r).unwrap().sum_all().unwrap().backward().unwrap();
        for (var, is_w) in [(&gx, false), (&w, true)] {
            let g = grads
                .get(var)
                .unwrap()
                .flatten_all()
                .unwrap()
                .to_vec1::<f64>()
                .unwrap();
            let fds = central_differences_of(var.as_tensor(), 1e-6, |t| {
                if is_w {
                    f(gx.as_tensor(), t)
                } else {
                    f(t, w.as_tensor())
                }
            });
            for (i, &fd) in fds.iter().enumerate() {
                // Central differences in f64 with eps 1e-6: truncation ~eps^2, rounding ~1e-16/eps.
                assert!(
                    (fd - g[i]).abs() < 1e-8 * (1.0 + fd.abs()),
                    "reverse={reverse} {} [{i}]: analytic {} vs finite difference {fd}",
                    if is_w { "w_hh" } else { "gx" },
                    g[i]
                );
            }
        }
    }
}

/// The step-by-step path other devices take gives the fused op's result (f64: same maths,
/// different summation order only).
#[test]
fn step_fallback_matches_the_fused_op() {
    let dev = Device::Cpu;
    let gx = Tensor::randn(0f64, 1.0, (B, T, 4 * H), &dev).unwrap();
    let w = Tensor::randn(0f64, 0.5, (4 * H, H), &dev).unwrap();
    for reverse in [false, true] {
        let fused = lstm_recurrence(&gx, &w, &LENS, reverse).unwrap();
        let slow = ent_model::testing::stepwise(&gx, &w, &LENS, reverse).unwrap();
        let d = max_diff(&fused, &slow);
        assert!(
            d < 1e-14,
            "reverse={reverse}: fused vs step fallback differ by {d}"
        );
    }
}

#[test]
fn bad_shapes_are_errors() {
    let dev = Device::Cpu;
    let gx = Tensor::zeros((2, 3, 8), DType::F32, &dev).unwrap();
    let w = Tensor::zeros((8, 2), DType::F32, &dev).unwrap();
    let e = lstm_recurrence(&gx, &w, &[3, 4], false)
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("lens[1] = 4 exceeds the time dimension 3"),
        "{e}"
    );
    let e = lstm_recurrence(&gx, &w, &[3], false)
        .unwrap_err()
        .to_string();
    assert!(e.contains("1 lengths for a batch of 2"), "{e}");
    let w3 = Tensor::zeros((8, 3), DType::F32, &dev).unwrap();
    assert!(lstm_recurrence(&gx, &w3, &[3, 3], false).is_err());
}

/// The GPU path's `dW_hh` (one GEMM over the input projection's gradient and the shifted
/// hidden states, in candle ops) equals the CPU op's, computed step by step on slices, in
/// both directions, with padded utterances.
#[test]
fn recurrent_weight_grad_equals_the_cpu_ops() {
    for reverse in [false, true] {
        let seed = u64::from(reverse);
        let gx = Var::from_tensor(&crate::seeded_randn(&[B, T, 4 * H], 1.0, seed)).unwrap();
        let w = Var::from_tensor(&crate::seeded_randn(&[4 * H, H], 0.5, seed + 10)).unwrap();
        let r = crate::seeded_randn(&[B, T, H], 1.0, seed + 20);
        let out = lstm_recurrence(gx.as_tensor(), w.as_tensor(), &LENS, reverse).unwrap();
        let g = (&out * &r).unwrap().sum_all().unwrap().backward().unwrap();
        let dgx = g.get(gx.as_tensor()).unwrap();
        let want = g.get(w.as_tensor()).unwrap();
        let got = ent_model::lstm::recurrent_weight_grad(dgx, &out, reverse).unwrap();
        let d = max_diff(&got, want);
        assert!(d < 1e-12, "reverse {reverse}: {d}");
        assert!(
            want.abs()
                .unwrap()
                .max_all()
                .unwrap()
                .to_scalar::<f64>()
                .unwrap()
                > 0.1
        );
    }
}
