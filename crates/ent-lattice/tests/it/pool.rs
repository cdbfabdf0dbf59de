//! Emotion-lattice max pooling: hand-computed selections, the brute-force reference for all
//! modes, finite differences.

use ent_lattice::{
    LatticeBatch, LatticeDims, LatticePoolConfig, NeutralTerm, PoolMode, Reduction, cpu,
};
use proptest::prelude::*;

use crate::reference::{self, Mode, Utt};

fn cfg(mode: PoolMode, neutral_term: NeutralTerm) -> LatticePoolConfig {
    LatticePoolConfig {
        mode,
        neutral_term,
        reduction: Reduction::None,
        ..Default::default()
    }
}

/// A 2 x 2 lattice (T = 2, U = 1), K = 4, neutral 3, label 1 (angry). Logits per node are
/// chosen so the selections are obvious:
/// (0,0) [0,0,0,0] p = 1/4 each
/// (0,1) [0,2,0,0] p(angry) = e^2 / (e^2 + 3) = 0.711, p(neutral) = 1 / (e^2 + 3) = 0.0962
/// (1,0) [0,0,0,3] p(neutral) = e^3 / (e^3 + 3) = 0.870
/// (1,1) [0,1,0,1] p(angry) = p(neutral) = e / (2e + 2) = 0.365
/// arg-max angry = (0,1); arg-min neutral = (0,1); arg-max neutral = (1,0).
fn lattice() -> (Vec<f32>, LatticeDims) {
    #[rustfmt::skip]
    let z = vec![
        0.0, 0.0, 0.0, 0.0,   0.0, 2.0, 0.0, 0.0,
        0.0, 0.0, 0.0, 3.0,   0.0, 1.0, 0.0, 1.0,
    ];
    (z, LatticeDims::new(1, 2, 1, 4))
}

fn run(z: &[f32], dims: LatticeDims, label: u32, cfg: &LatticePoolConfig) -> (f64, Vec<f32>) {
    let mut g = vec![f32::NAN; z.len()];
    let (frames, targets) = ([dims.frames as u32], [dims.targets as u32]);
    let c = cpu::lattice_max_pool_loss(
        LatticeBatch::new(z, dims, &[label], &frames, &targets),
        cfg,
        Some(&mut g),
    )
    .unwrap();
    (c[0], g)
}

fn softmax(z: &[f64]) -> Vec<f64> {
    reference::log_softmax(z).iter().map(|l| l.exp()).collect()
}

fn nonzero_nodes(g: &[f32], k: usize) -> Vec<usize> {
    (0..g.len() / k)
        .filter(|&n| g[n * k..(n + 1) * k].iter().any(|&v| v != 0.0))
        .collect()
}

#[test]
fn one_selects_argmax_and_argmin() {
    let (z, dims) = lattice();
    let e2 = 2f64.exp();
    // Both terms select node (0,1) = node 1: L = -ln(e^2/(e^2+3)) - ln(1/(e^2+3)).
    let (c, g) = run(&z, dims, 1, &cfg(PoolMode::One, NeutralTerm::Min));
    let want = -(e2 / (e2 + 3.0)).ln() - (1.0 / (e2 + 3.0)).ln();
    assert!((c - want).abs() < 1e-6, "{c} vs {want}");
    assert_eq!(nonzero_nodes(&g, 4), vec![1]);
    // Gradient at node 1: (p - e_1) + (p - e_3) = 2p - e_1 - e_3.
    let p = softmax(&[0.0, 2.0, 0.0, 0.0]);
    let want_g = [2.0 * p[0], 2.0 * p[1] - 1.0, 2.0 * p[2], 2.0 * p[3] - 1.0];
    for (a, b) in g[4..8].iter().zip(&want_g) {
        assert!((*a as f64 - b).abs() < 1e-7);
    }
}

#[test]
fn neutral_term_variants() {
    let (z, dims) = lattice();
    let e2 = 2f64.exp();
    let e3 = 3f64.exp();
    let (c_max, g_max) = run(&z, dims, 1, &cfg(PoolMode::One, NeutralTerm::Max));
    let want = -(e2 / (e2 + 3.0)).ln() - (e3 / (e3 + 3.0)).ln();
    assert!((c_max - want).abs() < 1e-6);
    assert_eq!(nonzero_nodes(&g_max, 4), vec![1, 2]);
    let (c_off, g_off) = run(&z, dims, 1, &cfg(PoolMode::One, NeutralTerm::Off));
    assert!((c_off + (e2 / (e2 + 3.0)).ln()).abs() < 1e-6);
    assert_eq!(nonzero_nodes(&g_off, 4), vec![1]);
}

/// FullT averages each term over the selected node's frame: angry and neutral both select
/// frame 0, whose nodes are (0,0) and (0,1).
/// FullU averages over the selected position: both select u = 1, nodes (0,1) and (1,1).
#[test]
fn full_modes_average_over_the_selected_row_or_column() {
    let (z, dims) = lattice();
    let rows: [[f64; 4]; 4] = [
        [0.0; 4],
        [0.0, 2.0, 0.0, 0.0],
        [0.0, 0.0, 0.0, 3.0],
        [0.0, 1.0, 0.0, 1.0],
    ];
    let nll = |n: usize, k: usize| -softmax(&rows[n])[k].ln();
    let (c, g) = run(&z, dims, 1, &cfg(PoolMode::FullT, NeutralTerm::Min));
    let want = (nll(0, 1) + nll(1, 1)) / 2.0 + (nll(0, 3) + nll(1, 3)) / 2.0;
    assert!((c - want).abs() < 1e-6);
    assert_eq!(nonzero_nodes(&g, 4), vec![0, 1]);
    let (c, g) = run(&z, dims, 1, &cfg(PoolMode::FullU, NeutralTerm::Min));
    let want = (nll(1, 1) + nll(3, 1)) / 2.0 + (nll(1, 3) + nll(3, 3)) / 2.0;
    assert!((c - want).abs() < 1e-6);
    assert_eq!(nonzero_nodes(&g, 4), vec![1, 3]);
}

/// A probability below the clamp costs -ln(clamp) and sends no gradient.
#[test]
fn clamp_stops_the_gradient() {
    let dims = LatticeDims::new(1, 1, 0, 4);
    let z = [0.0f32, -40.0, 0.0, 0.0]; // p(angry) ~ e^-40 / 3 < 1e-8
    let (c, g) = run(&z, dims, 1, &cfg(PoolMode::One, NeutralTerm::Off));
    assert!((c + (1e-8f32 as f64).ln()).abs() < 1e-9, "{c}");
    assert!(g.iter().all(|&v| v == 0.0));
}

/// Ties go to the first node in (t, u) order.
#[test]
fn ties_pick_the_first_node() {
    let dims = LatticeDims::new(1, 3, 1, 4);
    let (c, g) = run(
        &[0.0f32; 24],
        dims,
        0,
        &cfg(PoolMode::One, NeutralTerm::Min),
    );
    assert!((c - 2.0 * 4f64.ln()).abs() < 1e-6);
    assert_eq!(nonzero_nodes(&g, 4), vec![0]);
}

fn to_mode(m: PoolMode) -> Mode {
    match m {
        PoolMode::One => Mode::One,
        PoolMode::FullT => Mode::FullT,
        PoolMode::FullU => Mode::FullU,
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(200))]

    /// Random batches with NaN in the padding, every mode and neutral term, against the
    /// brute-force reference: costs within 1e-9 relative and gradients within 1e-7 (f32
    /// logits are converted exactly; the pooling arithmetic is f64).
    #[test]
    fn matches_brute_force(
        (dims, logits, labels, t_lens, u_lens) in (1usize..=3, 1usize..=5, 0usize..=3, 1usize..=6).prop_flat_map(|(b, t, u, k)| {
            let d = LatticeDims { batch: b, frames: t, targets: u, classes: k };
            (Just(d), prop::collection::vec(-5.0f32..5.0, d.numel().unwrap()), prop::collection::vec(0..k as u32, b),
             prop::collection::vec(1..=t as u32, b), prop::collection::vec(0..=u as u32, b))
        }),
        neutral_seed in 0usize..100,
        mode in prop_oneof![Just(PoolMode::One), Just(PoolMode::FullT), Just(PoolMode::FullU)],
        term in prop_oneof![Just(NeutralTerm::Min), Just(NeutralTerm::Max), Just(NeutralTerm::Off)],
    ) {
        let neutral = neutral_seed % dims.classes;
        let mut logits = logits;
        for (i, v) in logits.iter_mut().enumerate() {
            if !crate::rnnt::is_valid_cell(&dims, (&t_lens, &u_lens), i) {
                *v = f32::NAN;
            }
        }
        let c = LatticePoolConfig { neutral, mode, neutral_term: term, reduction: Reduction::Sum, ..Default::default() };
        let mut grad = vec![f32::NAN; logits.len()];
        let costs = cpu::lattice_max_pool_loss(LatticeBatch { logits: &logits, dims, targets: &labels, logit_lens: &t_lens, target_lens: &u_lens }, &c, Some(&mut grad)).unwrap();
        let z64: Vec<f64> = logits.iter().map(|&v| v as f64).collect();
        let per = dims.frames * dims.positions() * dims.classes;
        let targets = vec![0usize; dims.targets];
        for b in 0..dims.batch {
            let utt = Utt {
                logits: &z64[b * per..(b + 1) * per],
                frames: t_lens[b] as usize,
                targets: &targets[..u_lens[b] as usize],
                positions: dims.positions(),
                classes: dims.classes,
            };
            let neutral_min = match term { NeutralTerm::Min => Some(true), NeutralTerm::Max => Some(false), _ => None };
            let (wc, wg) = reference::pool(&utt, labels[b] as usize, neutral, to_mode(mode), neutral_min, 1e-8f32 as f64);
            prop_assert!((costs[b] - wc).abs() <= 1e-9 * wc.abs().max(1.0), "cost[{b}] {} vs {wc}", costs[b]);
            for (i, (g, w)) in grad[b * per..(b + 1) * per].iter().zip(&wg).enumerate() {
                prop_assert!((*g as f64 - w).abs() <= 1e-7, "utt {b} grad[{i}] {g} vs {w}");
            }
        }
    }
}

/// Central finite differences in f64 on a lattice whose selections are stable under the
/// perturbation (distinct random logits): agreement to 1e-7.
#[test]
fn finite_differences_f64() {
    let dims = LatticeDims::new(2, 3, 2, 4);
    let n = dims.numel().unwrap();
    // Pseudo-random values (a sine hash): no two rows are shifts of each other, so no ties.
    let z: Vec<f64> = (0..n)
        .map(|i| ((i as f64 * 12.9898).sin() * 43758.5453).fract() * 6.0)
        .collect();
    for mode in [PoolMode::One, PoolMode::FullT, PoolMode::FullU] {
        let c = LatticePoolConfig {
            mode,
            reduction: Reduction::Sum,
            ..Default::default()
        };
        let loss = |z: &[f64]| -> f64 {
            cpu::lattice_max_pool_loss(
                LatticeBatch::new(z, dims, &[1u32, 3], &[3u32, 2], &[2u32, 1]),
                &c,
                None,
            )
            .unwrap()
            .iter()
            .sum()
        };
        let mut g = vec![0.0f64; n];
        cpu::lattice_max_pool_loss(
            LatticeBatch::new(&z, dims, &[1u32, 3], &[3u32, 2], &[2u32, 1]),
            &c,
            Some(&mut g),
        )
        .unwrap();
        let fds = ent_testkit::central_differences(&z, 1e-6, |z| loss(z));
        ent_testkit::assert_gradient(&g, &fds, 1e-7, &format!("{mode:?}"));
    }
}
