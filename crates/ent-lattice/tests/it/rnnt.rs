//! The RNN-T loss on slices: hand-derived cases, the brute-force reference, finite
//! differences, the exact invariants and padding independence.

use ent_lattice::{LatticeBatch, LatticeDims, Reduction, RnntLossConfig, cpu};
use proptest::prelude::*;
use proptest::test_runner::TestCaseError;

use crate::reference::{self, Utt};

/// A padded batch, as the property tests draw it.
#[derive(Clone, Debug)]
pub struct Problem {
    pub dims: LatticeDims,
    pub logits: Vec<f32>,
    pub targets: Vec<u32>,
    pub logit_lens: Vec<u32>,
    pub target_lens: Vec<u32>,
    pub blank: usize,
    pub lambda: f32,
}

pub fn is_valid_cell(dims: &LatticeDims, lens: (&[u32], &[u32]), i: usize) -> bool {
    let node = i / dims.classes;
    let u = node % dims.positions();
    let t = (node / dims.positions()) % dims.frames;
    let b = node / (dims.positions() * dims.frames);
    t < lens.0[b] as usize && u <= lens.1[b] as usize
}

impl Problem {
    pub fn batch(&self) -> LatticeBatch<'_, f32> {
        LatticeBatch::new(
            &self.logits,
            self.dims,
            &self.targets,
            &self.logit_lens,
            &self.target_lens,
        )
    }

    pub fn cfg(&self) -> RnntLossConfig {
        RnntLossConfig {
            blank: self.blank,
            reduction: Reduction::None,
            fastemit_lambda: self.lambda,
            ..Default::default()
        }
    }

    fn utt_range(&self, b: usize) -> std::ops::Range<usize> {
        let per = self.dims.frames * self.dims.positions() * self.dims.classes;
        b * per..(b + 1) * per
    }

    /// Per-utterance costs and the concatenated per-utterance gradients, brute force.
    pub fn reference(&self) -> (Vec<f64>, Vec<f64>) {
        let logits: Vec<f64> = self.logits.iter().map(|&v| v as f64).collect();
        let mut costs = Vec::new();
        let mut grad = Vec::new();
        for b in 0..self.dims.batch {
            let targets: Vec<usize> = (0..self.target_lens[b] as usize)
                .map(|u| self.targets[b * self.dims.targets + u] as usize)
                .collect();
            let utt = Utt {
                logits: &logits[self.utt_range(b)],
                frames: self.logit_lens[b] as usize,
                targets: &targets,
                positions: self.dims.positions(),
                classes: self.dims.classes,
            };
            let (c, g) = reference::rnnt(&utt, self.blank, self.lambda as f64);
            costs.push(c);
            grad.extend(g);
        }
        (costs, grad)
    }

    pub fn run(&self) -> (Vec<f64>, Vec<f32>) {
        let mut grad = vec![f32::NAN; self.logits.len()];
        let costs =
            cpu::rnnt_loss(self.batch(), &self.cfg(), Some(&mut grad)).expect("valid problem");
        (costs, grad)
    }

    /// Costs within 1e-5 relative (f32 logits, log-normaliser accumulated in f32 over at most
    /// a few rows), gradients within 2e-6 absolute (f32 probabilities are exact to ~1e-7).
    pub fn check(&self) -> Result<(), TestCaseError> {
        let (want_c, want_g) = self.reference();
        let (got_c, got_g) = self.run();
        for (b, (g, w)) in got_c.iter().zip(&want_c).enumerate() {
            prop_assert!(
                (g - w).abs() <= 1e-5 * w.abs().max(1.0),
                "cost[{b}] {g} vs {w}"
            );
        }
        for (i, (g, w)) in got_g.iter().zip(&want_g).enumerate() {
            prop_assert!((*g as f64 - w).abs() <= 2e-6, "grad[{i}] {g} vs {w}");
        }
        Ok(())
    }
}

prop_compose! {
    fn dims()(batch in 1usize..=3, frames in 1usize..=5, targets in 0usize..=3, classes in 2usize..=6)
        -> LatticeDims {
        LatticeDims { batch, frames, targets, classes }
    }
}

/// Random B, T, U, V, lengths, blank index, targets, FastEmit weight, and NaN or huge values
/// in the padding (which must never be read).
pub fn arbitrary_problem() -> impl Strategy<Value = Problem> {
    dims().prop_flat_map(|d| {
        let n = d.batch * d.frames * d.positions() * d.classes;
        (
            Just(d),
            prop::collection::vec(-4.0f32..4.0, n),
            prop::collection::vec(0..d.classes as u32 - 1, d.batch * d.targets),
            prop::collection::vec(1..=d.frames as u32, d.batch),
            prop::collection::vec(0..=d.targets as u32, d.batch),
            0..d.classes,
            prop_oneof![Just(0.0f32), 0.0f32..0.5],
            prop_oneof![Just(f32::NAN), Just(1e30f32), Just(-1e30f32)],
        )
            .prop_map(
                |(dims, mut logits, raw, logit_lens, target_lens, blank, lambda, junk)| {
                    // Non-blank labels: skip over the blank index.
                    let targets = raw
                        .into_iter()
                        .map(|r| if r as usize >= blank { r + 1 } else { r })
                        .collect();
                    for (i, v) in logits.iter_mut().enumerate() {
                        if !is_valid_cell(&dims, (&logit_lens, &target_lens), i) {
                            *v = junk;
                        }
                    }
                    Problem {
                        dims,
                        logits,
                        targets,
                        logit_lens,
                        target_lens,
                        blank,
                        lambda,
                    }
                },
            )
    })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(300))]

    #[test]
    fn matches_brute_force(p in arbitrary_problem()) {
        p.check()?;
    }

    /// docs/method.md §3: every node's logit-gradient row sums to 0; for each frame the blank
    /// log-probability gradients over u sum to -1; for each label position u < U the label
    /// log-probability gradients over t sum to -1. The log-probability gradients are
    /// recovered from the logit gradient g = p (B + L) - B e_blank - L e_y: the classes that
    /// are neither blank nor y carry g = p (B + L), which gives B + L.
    #[test]
    fn exact_invariants(p in arbitrary_problem().prop_filter("V >= 3", |p| p.dims.classes >= 3)) {
        let p = Problem { lambda: 0.0, ..p };
        let (_, grad) = p.run();
        let d = p.dims;
        for b in 0..d.batch {
            let (tb, ub) = (p.logit_lens[b] as usize, p.target_lens[b] as usize);
            let mut blank_per_t = vec![0.0f64; tb];
            let mut label_per_u = vec![0.0f64; ub];
            for t in 0..tb {
                for u in 0..=ub {
                    let o = ((b * d.frames + t) * d.positions() + u) * d.classes;
                    let g: Vec<f64> = grad[o..o + d.classes].iter().map(|&v| v as f64).collect();
                    let row: Vec<f64> = p.logits[o..o + d.classes].iter().map(|&v| v as f64).collect();
                    let prob: Vec<f64> = reference::log_softmax(&row).iter().map(|l| l.exp()).collect();
                    prop_assert!(g.iter().sum::<f64>().abs() < 2e-6, "row ({t},{u}) sums to {}", g.iter().sum::<f64>());
                    let y = (u < ub).then(|| p.targets[b * d.targets + u] as usize);
                    let others: Vec<usize> = (0..d.classes).filter(|&k| k != p.blank && Some(k) != y).collect();
                    let s = others.iter().map(|&k| g[k]).sum::<f64>() / others.iter().map(|&k| prob[k]).sum::<f64>();
                    blank_per_t[t] += -(prob[p.blank] * s - g[p.blank]);
                    if let Some(y) = y {
                        label_per_u[u] += -(prob[y] * s - g[y]);
                    }
                }
            }
            for (t, s) in blank_per_t.iter().enumerate() {
                prop_assert!((s + 1.0).abs() < 1e-4, "utt {b} frame {t}: blank gradients sum to {s}");
            }
            for (u, s) in label_per_u.iter().enumerate() {
                prop_assert!((s + 1.0).abs() < 1e-4, "utt {b} label {u}: label gradients sum to {s}");
            }
        }
    }

    /// An utterance's cost and gradient do not depend on its batch-mates, on the padded sizes
    /// or on the padding values: bitwise equal to running it alone at its exact size.
    #[test]
    fn independent_of_batch_and_padding(p in arbitrary_problem()) {
        let (costs, grad) = p.run();
        let d = p.dims;
        for b in 0..d.batch {
            let (tb, ub) = (p.logit_lens[b] as usize, p.target_lens[b] as usize);
            let alone = LatticeDims { batch: 1, frames: tb, targets: ub, classes: d.classes };
            let mut logits = Vec::new();
            let mut want_grad = Vec::new();
            for t in 0..tb {
                let o = ((b * d.frames + t) * d.positions()) * d.classes;
                logits.extend_from_slice(&p.logits[o..o + (ub + 1) * d.classes]);
                want_grad.extend_from_slice(&grad[o..o + (ub + 1) * d.classes]);
            }
            let targets = &p.targets[b * d.targets..b * d.targets + ub];
            let mut g = vec![0.0f32; logits.len()];
            let c = cpu::rnnt_loss(LatticeBatch { logits: &logits, dims: alone, targets, logit_lens: &[tb as u32], target_lens: &[ub as u32] }, &p.cfg(), Some(&mut g)).unwrap();
            prop_assert_eq!(c[0], costs[b]);
            prop_assert_eq!(g, want_grad);
        }
        // Padded cells get exactly zero gradient.
        for (i, g) in grad.iter().enumerate() {
            if !is_valid_cell(&d, (&p.logit_lens, &p.target_lens), i) {
                prop_assert_eq!(*g, 0.0);
            }
        }
    }
}

fn single(
    logits: &[f32],
    dims: LatticeDims,
    targets: &[u32],
    cfg: &RnntLossConfig,
) -> (f64, Vec<f32>) {
    let mut g = vec![0.0; logits.len()];
    let lens = ([dims.frames as u32], [dims.targets as u32]);
    let c = cpu::rnnt_loss(
        LatticeBatch::new(logits, dims, targets, &lens.0, &lens.1),
        cfg,
        Some(&mut g),
    )
    .unwrap();
    (c[0], g)
}

fn close(a: &[f32], b: &[f64], tol: f64) {
    assert_eq!(a.len(), b.len());
    for (i, (x, y)) in a.iter().zip(b).enumerate() {
        assert!((*x as f64 - y).abs() <= tol, "[{i}] {x} vs {y}");
    }
}

/// T = 1, U = 0: the only path is the final blank, so loss = -log softmax(z)[blank]
/// = logsumexp(1, 2, 3) - 1 = ln(e + e^2 + e^3) - 1, and the gradient is softmax(z) - e_blank.
#[test]
fn single_frame_empty_target() {
    let z = [1.0f32, 2.0, 3.0];
    let dims = LatticeDims::new(1, 1, 0, 3);
    let (c, g) = single(&z, dims, &[], &RnntLossConfig::default());
    let e = std::f64::consts::E;
    let want = (e + e * e + e * e * e).ln() - 1.0;
    assert!((c - want).abs() < 1e-6, "{c} vs {want}");
    let s = e + e * e + e * e * e;
    close(&g, &[e / s - 1.0, e * e / s, e * e * e / s], 1e-7);
}

/// T = 2, U = 1, V = 3, uniform logits, blank 0, y = (1). Two alignments, (1, blank, blank)
/// and (blank, 1, blank), each of probability (1/3)^3: loss = -ln(2/27).
/// Node occupancies: (0,0) 1, (1,0) 1/2, (0,1) 1/2, (1,1) 1. Transition posteriors:
/// blank at (0,0) 1/2, label at (0,0) 1/2, label at (1,0) 1/2, blank at (0,1) 1/2, final
/// blank at (1,1) 1. Gradient p * occupancy - posteriors:
/// (0,0) [1/3-1/2, 1/3-1/2, 1/3], (0,1) [1/6-1/2, 1/6, 1/6],
/// (1,0) [1/6, 1/6-1/2, 1/6], (1,1) [1/3-1, 1/3, 1/3].
#[test]
fn two_paths_uniform() {
    let dims = LatticeDims::new(1, 2, 1, 3);
    let (c, g) = single(&[0.0; 12], dims, &[1], &RnntLossConfig::default());
    assert!((c + (2.0f64 / 27.0).ln()).abs() < 1e-6);
    let (s, t, h) = (1.0 / 6.0, 1.0 / 3.0, 0.5);
    #[rustfmt::skip]
    let want = [
        t - h, t - h, t,   s - h, s, s,   // t = 0: u = 0, u = 1
        s, s - h, s,       t - 1.0, t, t, // t = 1: u = 0, u = 1
    ];
    close(&g, &want, 1e-7);
}

/// FastEmit on the same lattice: the loss value is unchanged and the label transitions'
/// share of the gradient is scaled by 1 + lambda. At (1,0) only the label transition is
/// used (posterior 1/2), so with lambda = 1 the row is p * (2 * 1/2) - e_1 * (2 * 1/2).
#[test]
fn fastemit_scales_label_gradient_only() {
    let dims = LatticeDims::new(1, 2, 1, 3);
    let cfg = RnntLossConfig {
        fastemit_lambda: 1.0,
        ..Default::default()
    };
    let (c, g) = single(&[0.0; 12], dims, &[1], &cfg);
    assert!((c + (2.0f64 / 27.0).ln()).abs() < 1e-6);
    let t = 1.0 / 3.0;
    close(&g[6..9], &[t, t - 1.0, t], 1e-7);
    // The final blank is a blank transition: unchanged.
    close(&g[9..12], &[t - 1.0, t, t], 1e-7);
}

/// Gradient clamp: every element of the unreduced gradient is clamped to [-c, c].
#[test]
fn gradient_clamp() {
    let dims = LatticeDims::new(1, 2, 1, 3);
    let cfg = RnntLossConfig {
        clamp: Some(0.25),
        ..Default::default()
    };
    let (_, g) = single(&[0.0; 12], dims, &[1], &cfg);
    let (s, t, h) = (1.0f64 / 6.0, 1.0 / 3.0, 0.5);
    let want: Vec<f64> = [t - h, t - h, t, s - h, s, s, s, s - h, s, t - 1.0, t, t]
        .iter()
        .map(|v| v.clamp(-0.25, 0.25))
        .collect();
    close(&g, &want, 1e-7);
}

/// Mean divides by B, Sum does not; costs are returned unreduced either way.
#[test]
fn reductions_scale_the_gradient() {
    let dims = LatticeDims::new(2, 2, 1, 3);
    let logits: Vec<f32> = (0..24).map(|i| (i as f32 * 0.37).sin()).collect();
    let run = |reduction| {
        let mut g = vec![0.0f32; 24];
        let cfg = RnntLossConfig {
            reduction,
            ..Default::default()
        };
        let c = cpu::rnnt_loss(
            LatticeBatch::new(&logits, dims, &[1u32, 2], &[2u32, 2], &[1u32, 1]),
            &cfg,
            Some(&mut g),
        )
        .unwrap();
        (c, g)
    };
    let (c_sum, g_sum) = run(Reduction::Sum);
    let (c_mean, g_mean) = run(Reduction::Mean);
    let (c_none, g_none) = run(Reduction::None);
    assert_eq!(c_sum, c_mean);
    assert_eq!(c_sum, c_none);
    assert_eq!(g_sum, g_none);
    for (a, b) in g_sum.iter().zip(&g_mean) {
        assert!((a / 2.0 - b).abs() <= 1e-8);
    }
}

/// f64 logits run in f64 throughout, so the gradient matches central finite differences of
/// the loss itself to about h^2 * |d3L| + eps |L| / h ~ 1e-10; 1e-7 leaves a wide margin.
#[test]
fn finite_differences_f64() {
    let dims = LatticeDims::new(2, 4, 3, 5);
    let n = dims.numel().unwrap();
    let logits: Vec<f64> = (0..n)
        .map(|i| ((i * 7919 % 1000) as f64 / 250.0) - 2.0)
        .collect();
    let targets = [1u32, 3, 2, 4, 4, 0];
    let (t_lens, u_lens) = ([4u32, 3], [3u32, 2]);
    for blank in [0usize, 2] {
        let targets: Vec<u32> = targets
            .iter()
            .map(|&y| if y as usize == blank { 1 } else { y })
            .collect();
        let cfg = RnntLossConfig {
            blank,
            reduction: Reduction::Sum,
            ..Default::default()
        };
        let loss = |z: &[f64]| -> f64 {
            cpu::rnnt_loss(
                LatticeBatch::new(z, dims, &targets, &t_lens, &u_lens),
                &cfg,
                None,
            )
            .unwrap()
            .iter()
            .sum()
        };
        let mut grad = vec![0.0f64; n];
        cpu::rnnt_loss(
            LatticeBatch::new(&logits, dims, &targets, &t_lens, &u_lens),
            &cfg,
            Some(&mut grad),
        )
        .unwrap();
        let fds = ent_testkit::central_differences(&logits, 1e-5, |z| loss(z));
        ent_testkit::assert_gradient(&grad, &fds, 1e-7, &format!("blank {blank}"));
    }
}

/// f64 logits against the brute-force reference: agreement to rounding.
#[test]
fn f64_matches_brute_force_tightly() {
    let dims = LatticeDims::new(1, 5, 4, 7);
    let n = dims.numel().unwrap();
    let logits: Vec<f64> = (0..n)
        .map(|i| ((i * 104729 % 977) as f64 / 100.0) - 5.0)
        .collect();
    let targets = [3usize, 1, 6, 3];
    let mut g = vec![0.0f64; n];
    let t32: Vec<u32> = targets.iter().map(|&v| v as u32).collect();
    let c = cpu::rnnt_loss(
        LatticeBatch::new(&logits, dims, &t32, &[5u32], &[4u32]),
        &RnntLossConfig::default(),
        Some(&mut g),
    )
    .unwrap();
    let utt = Utt {
        logits: &logits,
        frames: 5,
        targets: &targets,
        positions: 5,
        classes: 7,
    };
    let (wc, wg) = reference::rnnt(&utt, 0, 0.0);
    assert!((c[0] - wc).abs() < 1e-12 * wc.abs(), "{} vs {wc}", c[0]);
    for (a, b) in g.iter().zip(&wg) {
        assert!((a - b).abs() < 1e-13);
    }
}

/// `-inf` logits that forbid every path: cost +inf, zero gradient; `zero_infinity` reports 0.
/// Here the blank is impossible at the exit node, so no alignment can end.
#[test]
fn unreachable_target() {
    let dims = LatticeDims::new(1, 2, 1, 3);
    let mut z = vec![0.0f32; 12];
    z[9] = f32::NEG_INFINITY; // (t=1, u=1, blank)
    let (c, g) = single(&z, dims, &[1], &RnntLossConfig::default());
    assert_eq!(c, f64::INFINITY);
    assert!(g.iter().all(|&v| v == 0.0), "{g:?}");
    let cfg = RnntLossConfig {
        zero_infinity: true,
        ..Default::default()
    };
    assert_eq!(single(&z, dims, &[1], &cfg).0, 0.0);
}

/// NaN in a valid cell gives a NaN cost and gradient for that utterance only.
#[test]
fn nan_logit_poisons_only_its_utterance() {
    let dims = LatticeDims::new(2, 2, 1, 3);
    let mut z = vec![0.0f32; 24];
    z[4] = f32::NAN; // utterance 0
    let mut g = vec![0.0f32; 24];
    let c = cpu::rnnt_loss(
        LatticeBatch::new(&z, dims, &[1u32, 1], &[2u32, 2], &[1u32, 1]),
        &RnntLossConfig::default(),
        Some(&mut g),
    )
    .unwrap();
    assert!(c[0].is_nan());
    assert!((c[1] + (2.0f64 / 27.0).ln()).abs() < 1e-6);
    assert!(g[..12].iter().any(|v| v.is_nan()));
    assert!(g[12..].iter().all(|v| v.is_finite()));
}

/// Half-precision logits are converted exactly and computed in f32: same result as the f32
/// logits holding the same values.
#[test]
fn half_inputs_compute_in_f32() {
    let dims = LatticeDims::new(1, 3, 2, 5);
    let z32: Vec<f32> = (0..45)
        .map(|i| half::f16::from_f32((i as f32 * 0.71).cos() * 3.0).to_f32())
        .collect();
    let z16: Vec<half::f16> = z32.iter().map(|&v| half::f16::from_f32(v)).collect();
    let zb: Vec<half::bf16> = z32.iter().map(|&v| half::bf16::from_f32(v)).collect();
    let zb32: Vec<f32> = zb.iter().map(|v| v.to_f32()).collect();
    let cfg = RnntLossConfig::default();
    let run32 = |z: &[f32]| single(z, dims, &[1, 2], &cfg);
    let (mut g16, mut gb) = (vec![0.0f32; 45], vec![0.0f32; 45]);
    let c16 = cpu::rnnt_loss(
        LatticeBatch::new(&z16, dims, &[1u32, 2], &[3u32], &[2u32]),
        &cfg,
        Some(&mut g16),
    )
    .unwrap();
    let cb = cpu::rnnt_loss(
        LatticeBatch::new(&zb, dims, &[1u32, 2], &[3u32], &[2u32]),
        &cfg,
        Some(&mut gb),
    )
    .unwrap();
    assert_eq!((c16[0], g16), run32(&z32));
    assert_eq!((cb[0], gb), run32(&zb32));
}

/// Offsets are 64-bit: the index arithmetic for a batch past 2^31 logits does not overflow.
/// (The full-size run is `huge_batch_past_2_pow_31`, ignored by default for its 17 GB.)
#[test]
fn sizes_past_2_pow_31_are_representable() {
    let dims = LatticeDims::new(2, 1100, 1000, 1000);
    assert_eq!(dims.numel().unwrap(), 2 * 1100 * 1001 * 1000);
    assert!(dims.numel().unwrap() > 1 << 31);
    let overflow = LatticeDims::new(usize::MAX / 2, 3, 0, 1);
    assert!(overflow.numel().is_err());
}

/// More than 2^31 logits end to end (B = 2, T = 1100, U + 1 = 1001, V = 1000): the second
/// utterance lives past element 2^31, so a 32-bit offset would read the wrong memory. Needs
/// about 9 GB for the logits and as much for the gradient: run with `--ignored`.
#[test]
#[ignore = "allocates about 17 GB"]
fn huge_batch_past_2_pow_31() {
    let dims = LatticeDims::new(2, 1100, 1000, 1000);
    let n = dims.numel().unwrap();
    // Utterance 1 is a copy of utterance 0 (same logits and targets): equal costs.
    let per = n / 2;
    let mut logits = vec![0.0f32; n];
    for (i, v) in logits[..per].iter_mut().enumerate() {
        *v = ((i % 977) as f32) * 1e-3;
    }
    logits.copy_within(..per, per);
    let targets: Vec<u32> = (0..2000).map(|i| 1 + (i % 1000 % 999) as u32).collect();
    let mut grad = vec![0.0f32; n];
    let c = cpu::rnnt_loss(
        LatticeBatch::new(&logits, dims, &targets, &[1100u32, 1100], &[1000u32, 1000]),
        &RnntLossConfig::default(),
        Some(&mut grad),
    )
    .unwrap();
    assert!(c[0].is_finite());
    assert_eq!(c[0], c[1]);
    assert_eq!(grad[..per], grad[per..]);
}
