//! The RNN-T loss and best path on node log-probabilities: against path enumeration on the
//! same log-probabilities (value and per-node gradient, FastEmit included), against the loss
//! on the logits they come from (value, and the gradient chained through the log-softmax),
//! and its argument checks.

use candle_core::{DType, Device, Tensor, Var};
use ent_lattice::{
    Reduction, RnntLossConfig, cpu, rnnt_best_path, rnnt_best_path_from_log_probs, rnnt_loss,
    rnnt_loss_from_log_probs,
};
use proptest::prelude::*;

use crate::reference;
use crate::rnnt::{Problem, arbitrary_problem, is_valid_cell};

/// `(lp_blank, lp_label)` `[B][T][U+1]` in f64 from the problem's logits; invalid nodes hold
/// NaN (they must never be read).
fn node_log_probs(p: &Problem) -> (Vec<f64>, Vec<f64>) {
    let d = p.dims;
    let (u1, v) = (d.positions(), d.classes);
    let n = d.batch * d.frames * u1;
    let (mut lb, mut ll) = (vec![f64::NAN; n], vec![f64::NAN; n]);
    for node in 0..n {
        let (b, u) = (node / (d.frames * u1), node % u1);
        if !is_valid_cell(&d, (&p.logit_lens, &p.target_lens), node * v) {
            continue;
        }
        let row: Vec<f64> = p.logits[node * v..(node + 1) * v]
            .iter()
            .map(|&x| x as f64)
            .collect();
        let lp = reference::log_softmax(&row);
        lb[node] = lp[p.blank];
        if u < p.target_lens[b] as usize {
            ll[node] = lp[p.targets[b * d.targets + u] as usize];
        }
    }
    (lb, ll)
}

/// Path enumeration on node log-probabilities: the cost of each utterance and
/// `d cost / d lp` per node (FastEmit: label terms times `1 + lambda`).
fn enumerated(p: &Problem, lb: &[f64], ll: &[f64]) -> (Vec<f64>, Vec<f64>, Vec<f64>) {
    let d = p.dims;
    let u1 = d.positions();
    let per = d.frames * u1;
    let (mut gb, mut gl) = (vec![0.0; lb.len()], vec![0.0; ll.len()]);
    let mut costs = Vec::new();
    for b in 0..d.batch {
        let labels: Vec<usize> = (0..p.target_lens[b] as usize)
            .map(|u| p.targets[b * d.targets + u] as usize)
            .collect();
        let paths = reference::alignments(p.logit_lens[b] as usize, &labels, p.blank);
        let lp = |t: usize, u: usize, s: usize| {
            let i = b * per + t * u1 + u;
            if s == p.blank { lb[i] } else { ll[i] }
        };
        let scores: Vec<f64> = paths
            .iter()
            .map(|q| q.iter().map(|&(t, u, s)| lp(t, u, s)).sum())
            .collect();
        let m = scores.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
        let log_p = m + scores.iter().map(|s| (s - m).exp()).sum::<f64>().ln();
        costs.push(-log_p);
        for (q, s) in paths.iter().zip(&scores) {
            let w = (s - log_p).exp();
            for &(t, u, sym) in q {
                let i = b * per + t * u1 + u;
                if sym == p.blank {
                    gb[i] -= w;
                } else {
                    gl[i] -= (1.0 + p.lambda as f64) * w;
                }
            }
        }
    }
    (costs, gb, gl)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    /// Costs and both node gradients equal path enumeration on the same log-probabilities
    /// (f64 throughout: 1e-9), and the costs equal the loss on the logits they come from
    /// (1e-5 relative: that loss normalises f32 logits in f32).
    #[test]
    fn loss_on_node_log_probs_is_path_enumeration(p in arbitrary_problem()) {
        let (lb, ll) = node_log_probs(&p);
        let d = p.dims;
        let n = lb.len();
        let (mut gb, mut gl) = (vec![f64::NAN; n], vec![f64::NAN; n]);
        let costs = cpu::rnnt_loss_from_log_probs(
            &lb, &ll, (d.batch, d.frames, d.positions()), &p.logit_lens, &p.target_lens,
            &p.cfg(), Some((&mut gb, &mut gl)),
        ).unwrap();
        let (want, want_gb, want_gl) = enumerated(&p, &lb, &ll);
        for (b, (c, w)) in costs.iter().zip(&want).enumerate() {
            prop_assert!((c - w).abs() <= 1e-9 * w.abs().max(1.0), "cost[{b}] {c} vs {w}");
        }
        for i in 0..n {
            prop_assert!((gb[i] - want_gb[i]).abs() <= 1e-9, "blank grad[{i}] {} vs {}", gb[i], want_gb[i]);
            prop_assert!((gl[i] - want_gl[i]).abs() <= 1e-9, "label grad[{i}] {} vs {}", gl[i], want_gl[i]);
        }
        let (on_logits, _) = p.run();
        for (b, (c, w)) in costs.iter().zip(&on_logits).enumerate() {
            prop_assert!((c - w).abs() <= 1e-5 * w.abs().max(1.0), "cost[{b}] {c} vs logits {w}");
        }
    }
}

/// A fixed problem as tensors: logits `[2, 4, 3, 5]` (blank 2) with lengths `[4, 3]`, `[2, 1]`.
fn tensors(dtype: DType) -> (Tensor, Tensor, Tensor, Tensor) {
    let dev = Device::Cpu;
    let logits = Tensor::randn(0f64, 2.0, (2, 4, 3, 5), &dev)
        .unwrap()
        .to_dtype(dtype)
        .unwrap();
    let targets = Tensor::new(&[[1u32, 4], [3, 0]], &dev).unwrap();
    let ll = Tensor::new(&[4u32, 3], &dev).unwrap();
    let tl = Tensor::new(&[2u32, 1], &dev).unwrap();
    (logits, targets, ll, tl)
}

/// The gathered log-probabilities of `logits` as tensors, differentiable into `logits`.
fn gather(logits: &Tensor, targets: &Tensor, blank: usize) -> (Tensor, Tensor) {
    let (b, t, u1, _) = logits.dims4().unwrap();
    let lp = candle_nn_free_log_softmax(logits);
    let lb = lp.narrow(3, blank, 1).unwrap().squeeze(3).unwrap();
    // Next label at (b, u): targets[b, u] for u < U, anything (0) at u = U.
    let idx = Tensor::cat(
        &[
            targets,
            &Tensor::zeros((b, 1), DType::U32, logits.device()).unwrap(),
        ],
        1,
    )
    .unwrap()
    .unsqueeze(1)
    .unwrap()
    .unsqueeze(3)
    .unwrap()
    .broadcast_as((b, t, u1, 1))
    .unwrap()
    .contiguous()
    .unwrap();
    let ll = lp.gather(&idx, 3).unwrap().squeeze(3).unwrap();
    (lb, ll)
}

/// `log_softmax` over the last axis in plain tensor ops.
fn candle_nn_free_log_softmax(z: &Tensor) -> Tensor {
    let m = z.max_keepdim(3).unwrap().detach();
    let s = z.broadcast_sub(&m).unwrap();
    let lse = s.exp().unwrap().sum_keepdim(3).unwrap().log().unwrap();
    s.broadcast_sub(&lse).unwrap()
}

/// Through candle's autograd: the loss on the gathered log-probabilities and its gradient
/// with respect to the logits equal `rnnt_loss` on the logits, for every reduction and with
/// FastEmit; the best paths are the same.
#[test]
fn tensor_loss_and_gradient_equal_the_loss_on_logits() {
    for (dtype, tol) in [(DType::F64, 1e-10), (DType::F32, 2e-5)] {
        for reduction in [Reduction::None, Reduction::Sum, Reduction::Mean] {
            let (logits, targets, ll, tl) = tensors(dtype);
            let cfg = RnntLossConfig {
                blank: 2,
                reduction,
                fastemit_lambda: 0.25,
                ..Default::default()
            };
            let z = Var::from_tensor(&logits).unwrap();
            let want = rnnt_loss(z.as_tensor(), &targets, &ll, &tl, &cfg).unwrap();
            let want_g = want.sum_all().unwrap().backward().unwrap();
            let want_g = want_g.get(z.as_tensor()).unwrap();

            let z2 = Var::from_tensor(&logits).unwrap();
            let (lb, lab) = gather(z2.as_tensor(), &targets, 2);
            let got = rnnt_loss_from_log_probs(&lb, &lab, &ll, &tl, &cfg).unwrap();
            assert_eq!(got.dims(), want.dims());
            let got_g = got.sum_all().unwrap().backward().unwrap();
            let got_g = got_g.get(z2.as_tensor()).unwrap();
            let d = ent_testkit::max_abs_diff;
            assert!(
                d(&got, &want) <= tol * 10.0,
                "{dtype:?} {reduction:?}: loss"
            );
            // Padded cells: zero in both.
            assert!(d(got_g, want_g) <= tol, "{dtype:?} {reduction:?}: gradient");

            let paths = rnnt_best_path(&logits, &targets, &ll, &tl, 2).unwrap();
            let (lb, lab) = gather(&logits, &targets, 2);
            let got = rnnt_best_path_from_log_probs(&lb, &lab, &ll, &tl).unwrap();
            assert_eq!(got.len(), paths.len());
            for (x, y) in got.iter().zip(&paths) {
                assert_eq!(x.blank_positions, y.blank_positions, "{dtype:?}");
                assert!((x.log_prob - y.log_prob).abs() <= tol * 10.0 * y.log_prob.abs());
            }
        }
    }
}

/// Bad arguments are errors that name them.
#[test]
fn bad_node_arguments_are_errors() {
    let (logits, targets, ll, tl) = tensors(DType::F32);
    let (lb, lab) = gather(&logits, &targets, 2);
    let cfg = RnntLossConfig::default();
    let err = |r: candle_core::Result<Tensor>| r.unwrap_err().to_string();
    let e = err(rnnt_loss_from_log_probs(
        &lb,
        &lab,
        &ll,
        &tl,
        &RnntLossConfig {
            clamp: Some(1.0),
            ..Default::default()
        },
    ));
    assert!(e.contains("clamp"), "{e}");
    let e = err(rnnt_loss_from_log_probs(
        &lb,
        &lab.narrow(2, 0, 2).unwrap(),
        &ll,
        &tl,
        &cfg,
    ));
    assert!(e.contains("lp_label"), "{e}");
    let e = err(rnnt_loss_from_log_probs(
        &lb.to_dtype(DType::F16).unwrap(),
        &lab,
        &ll,
        &tl,
        &cfg,
    ));
    assert!(e.contains("lp_blank") && e.contains("F16"), "{e}");
    let e = err(rnnt_loss_from_log_probs(
        &lb,
        &lab,
        &Tensor::new(&[5u32, 3], &Device::Cpu).unwrap(),
        &tl,
        &cfg,
    ));
    assert!(e.contains("logit_lens"), "{e}");
    let e = err(rnnt_loss_from_log_probs(
        &lb,
        &lab,
        &ll,
        &Tensor::new(&[3u32, 1], &Device::Cpu).unwrap(),
        &cfg,
    ));
    assert!(e.contains("target_lens"), "{e}");
    let e = err(rnnt_loss_from_log_probs(
        &lb.unsqueeze(0).unwrap(),
        &lab.unsqueeze(0).unwrap(),
        &ll,
        &tl,
        &cfg,
    ));
    assert!(e.contains("[B, T, U+1]"), "{e}");
    let mut gb = vec![0.0; 3];
    let mut gl = vec![0.0; 24];
    let e = cpu::rnnt_loss_from_log_probs(
        &[0.0; 24],
        &[0.0; 24],
        (2, 4, 3),
        &[4u32, 3],
        &[2u32, 1],
        &cfg,
        Some((&mut gb, &mut gl)),
    )
    .unwrap_err()
    .to_string();
    assert!(e.contains("blank gradient"), "{e}");
}
