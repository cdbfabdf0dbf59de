//! The CUDA kernels' own source, run through the emulated executor (feature `emulate`), against
//! the CPU reference: every logit type, random shapes and lengths, blank index, FastEmit,
//! clamps, pooling modes and neutral terms, NaN and infinite logits, padding poisoned with NaN,
//! aligned and misaligned logits, random incoming gradients. `cargo xtask test-kernels` runs
//! these, then again with the kernels built under ThreadSanitizer.

use ent_lattice::emulated::{self, Options};
use ent_lattice::launch::{self, KernelDType};
use ent_lattice::{
    LatticeDims, LatticePoolConfig, Logit, NeutralTerm, PoolMode, Reduction, RnntLossConfig, cpu,
};
use half::{bf16, f16};
use proptest::prelude::*;
use proptest::test_runner::TestCaseError;

use crate::reference;
use crate::rnnt::is_valid_cell;

/// SplitMix64, for the parts of a case drawn from its seed.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }
    fn uniform(&mut self, lo: f64, hi: f64) -> f64 {
        lo + (hi - lo) * ((self.next() >> 11) as f64 / (1u64 << 53) as f64)
    }
    fn chance(&mut self, p: f64) -> bool {
        self.uniform(0.0, 1.0) < p
    }
}

/// A logit type as the tests see it: conversion and the tolerances against the CPU reference.
trait Elem: Logit + Copy + std::fmt::Debug {
    const DT: KernelDType;
    fn from_f64(v: f64) -> Self;
    fn as_f64(self) -> f64;
    /// Costs: the normaliser is computed in f32 for every type but f64 (exp implementations
    /// differ by an ulp; over at most ~10 nodes that stays well under 1e-5 relative); f64
    /// agrees to rounding of different summation orders.
    fn cost_tol(w: f64) -> f64 {
        match Self::DT {
            KernelDType::F64 => 1e-11 * w.abs().max(1.0),
            _ => 1e-5 * w.abs().max(1.0),
        }
    }
    /// RNN-T gradients (`g` the incoming gradient): 2e-6 absolute for f32 arithmetic, as the
    /// CPU tests allow against brute force; plus one ulp of the stored type for f16 (2^-10)
    /// and bf16 (2^-7), which the kernel writes and the CPU reference keeps in f32.
    fn grad_tol(w: f64, g: f64) -> f64 {
        match Self::DT {
            KernelDType::F64 => 1e-12 * g.abs().max(1.0),
            KernelDType::F32 => 2e-6 * g.abs(),
            KernelDType::F16 => w.abs() * 2f64.powi(-10) + 2e-6 * g.abs(),
            KernelDType::BF16 => w.abs() * 2f64.powi(-7) + 2e-6 * g.abs(),
        }
    }
}

impl Elem for f32 {
    const DT: KernelDType = KernelDType::F32;
    fn from_f64(v: f64) -> Self {
        v as f32
    }
    fn as_f64(self) -> f64 {
        self as f64
    }
}
impl Elem for f64 {
    const DT: KernelDType = KernelDType::F64;
    fn from_f64(v: f64) -> Self {
        v
    }
    fn as_f64(self) -> f64 {
        self
    }
}
impl Elem for f16 {
    const DT: KernelDType = KernelDType::F16;
    fn from_f64(v: f64) -> Self {
        f16::from_f64(v)
    }
    fn as_f64(self) -> f64 {
        self.to_f64()
    }
}
impl Elem for bf16 {
    const DT: KernelDType = KernelDType::BF16;
    fn from_f64(v: f64) -> Self {
        bf16::from_f64(v)
    }
    fn as_f64(self) -> f64 {
        self.to_f64()
    }
}

/// Runs `$body` with `$E` bound to the Rust type of `$dt`.
macro_rules! with_elem {
    ($dt:expr, $E:ident => $body:expr) => {
        match $dt {
            KernelDType::F32 => {
                type $E = f32;
                $body
            }
            KernelDType::F64 => {
                type $E = f64;
                $body
            }
            KernelDType::F16 => {
                type $E = f16;
                $body
            }
            KernelDType::BF16 => {
                type $E = bf16;
                $body
            }
        }
    };
}

fn dtype() -> impl Strategy<Value = KernelDType> {
    prop_oneof![
        Just(KernelDType::F32),
        Just(KernelDType::F64),
        Just(KernelDType::F16),
        Just(KernelDType::BF16),
    ]
}

fn same(a: f64, b: f64, tol: f64) -> bool {
    (a.is_nan() && b.is_nan()) || a == b || (a - b).abs() <= tol
}

/// A padded batch with its lengths; padding holds NaN (never read), valid cells random logits
/// and, in some cases, `-inf` (probability zero) or one NaN or `+inf` (a poisoned utterance).
#[derive(Clone, Debug)]
struct Lattice {
    dims: LatticeDims,
    values: Vec<f64>,
    logit_lens: Vec<u32>,
    target_lens: Vec<u32>,
}

impl Lattice {
    fn draw(dims: LatticeDims, rng: &mut Rng) -> Self {
        let logit_lens: Vec<u32> = (0..dims.batch)
            .map(|_| 1 + rng.below(dims.frames) as u32)
            .collect();
        let target_lens: Vec<u32> = (0..dims.batch)
            .map(|_| rng.below(dims.targets + 1) as u32)
            .collect();
        let n = dims.numel().expect("small");
        let mut values: Vec<f64> = (0..n).map(|_| rng.uniform(-4.0, 4.0)).collect();
        let valid: Vec<usize> = (0..n)
            .filter(|&i| is_valid_cell(&dims, (&logit_lens, &target_lens), i))
            .collect();
        for (i, v) in values.iter_mut().enumerate() {
            if !is_valid_cell(&dims, (&logit_lens, &target_lens), i) {
                *v = f64::NAN;
            }
        }
        if rng.chance(0.15) {
            for _ in 0..1 + rng.below(3) {
                values[valid[rng.below(valid.len())]] = f64::NEG_INFINITY;
            }
        }
        if rng.chance(0.08) {
            let bad = if rng.chance(0.5) {
                f64::NAN
            } else {
                f64::INFINITY
            };
            values[valid[rng.below(valid.len())]] = bad;
        }
        Lattice {
            dims,
            values,
            logit_lens,
            target_lens,
        }
    }

    fn typed<E: Elem>(&self) -> Vec<E> {
        self.values.iter().map(|&v| E::from_f64(v)).collect()
    }

    fn per_utt(&self) -> usize {
        self.dims.frames * self.dims.positions() * self.dims.classes
    }
}

fn shape(max_classes: usize) -> impl Strategy<Value = LatticeDims> {
    (1usize..=3, 1usize..=6, 0usize..=4, 2usize..=max_classes).prop_map(
        |(batch, frames, targets, classes)| LatticeDims {
            batch,
            frames,
            targets,
            classes,
        },
    )
}

/// An RNN-T problem with its configuration and incoming gradients.
#[derive(Clone, Debug)]
struct RnntCase {
    lattice: Lattice,
    targets: Vec<u32>,
    cfg: RnntLossConfig,
    grad_costs: Vec<f64>,
    dt: KernelDType,
    opts: Options,
}

fn rnnt_case() -> impl Strategy<Value = RnntCase> {
    (shape(40), dtype(), any::<bool>(), any::<u64>()).prop_map(|(dims, dt, misalign, seed)| {
        let mut rng = Rng(seed);
        let lattice = Lattice::draw(dims, &mut rng);
        let blank = rng.below(dims.classes);
        let targets = (0..dims.batch * dims.targets)
            .map(|_| {
                let y = rng.below(dims.classes - 1);
                (if y >= blank { y + 1 } else { y }) as u32
            })
            .collect();
        let cfg = RnntLossConfig {
            blank,
            reduction: Reduction::None,
            clamp: rng.chance(0.25).then(|| rng.uniform(0.05, 0.5) as f32),
            fastemit_lambda: if rng.chance(0.5) {
                0.0
            } else {
                rng.uniform(0.0, 0.5) as f32
            },
            zero_infinity: rng.chance(0.5),
        };
        let grad_costs = (0..dims.batch)
            .map(|_| {
                let g = rng.uniform(0.25, 2.0);
                if rng.chance(0.3) { -g } else { g }
            })
            .collect();
        RnntCase {
            lattice,
            targets,
            cfg,
            grad_costs,
            dt,
            opts: Options {
                misalign_logits: misalign,
            },
        }
    })
}

impl RnntCase {
    fn check(&self) -> Result<(), TestCaseError> {
        with_elem!(self.dt, E => self.check_as::<E>())
    }

    fn check_as<E: Elem>(&self) -> Result<(), TestCaseError>
    where
        E::Acc: Into<f64>,
    {
        let l = &self.lattice;
        let logits = l.typed::<E>();
        let mut want_grad = vec![E::Acc::default(); logits.len()];
        let want = cpu::rnnt_loss(
            &logits,
            l.dims,
            &self.targets,
            &l.logit_lens,
            &l.target_lens,
            &self.cfg,
            Some(&mut want_grad),
        )
        .map_err(|e| TestCaseError::fail(e.to_string()))?;
        let got = emulated::rnnt_loss(
            &logits,
            l.dims,
            &self.targets,
            &l.logit_lens,
            &l.target_lens,
            &self.cfg,
            Some(&self.grad_costs),
            &self.opts,
        )
        .map_err(|e| TestCaseError::fail(e.to_string()))?;
        for (b, (g, w)) in got.costs.iter().zip(&want).enumerate() {
            prop_assert!(same(*g, *w, E::cost_tol(*w)), "cost[{b}] {g} vs {w}");
            // log P from alpha and from beta agree (where defined).
            let [a, bt] = got.log_p[b];
            prop_assert!(
                same(a, bt, E::cost_tol(a)) || a == f64::NEG_INFINITY,
                "utt {b}: log P {a} from alpha, {bt} from beta"
            );
        }
        let grad = got.grad.expect("gradient requested");
        let per = l.per_utt();
        for (i, (g, w)) in grad.iter().zip(&want_grad).enumerate() {
            let gb = self.grad_costs[i / per];
            let (g, w) = (g.as_f64(), gb * (*w).into());
            // Both clamp at the bound c |g| computed in f32, the reference at c before scaling
            // by g in f64: one f32 rounding apart where the clamp is active.
            let clamped = self
                .cfg
                .clamp
                .is_some_and(|c| w.abs() >= c as f64 * gb.abs() * (1.0 - 1e-6));
            let tol = E::grad_tol(w, gb)
                + if clamped {
                    w.abs() * 2f64.powi(-23)
                } else {
                    0.0
                };
            prop_assert!(
                same(g, w, tol),
                "grad[{i}] (utt {}, node {}, class {}) {g} vs {w}",
                i / per,
                (i % per) / l.dims.classes,
                i % l.dims.classes
            );
        }
        Ok(())
    }

    fn check_best_path(&self) -> Result<(), TestCaseError> {
        with_elem!(self.dt, E => self.check_best_path_as::<E>())
    }

    /// The same alignment as the CPU, or, on a near-tie, one whose log-probability (in f64
    /// from the logits) is as good within the loss's tolerance.
    fn check_best_path_as<E: Elem>(&self) -> Result<(), TestCaseError> {
        let l = &self.lattice;
        let logits = l.typed::<E>();
        let (lens, tlens) = (&l.logit_lens, &l.target_lens);
        let want = cpu::rnnt_best_path(&logits, l.dims, &self.targets, lens, tlens, self.cfg.blank)
            .map_err(|e| TestCaseError::fail(e.to_string()))?;
        let got = emulated::rnnt_best_path(
            &logits,
            l.dims,
            &self.targets,
            lens,
            tlens,
            self.cfg.blank,
            &self.opts,
        )
        .map_err(|e| TestCaseError::fail(e.to_string()))?;
        let per = l.per_utt();
        let d = l.dims;
        for (b, (g, w)) in got.iter().zip(&want).enumerate() {
            prop_assert!(
                same(g.log_prob, w.log_prob, E::cost_tol(w.log_prob)),
                "utt {b}: log P* {} vs {}",
                g.log_prob,
                w.log_prob
            );
            if g.blank_positions == w.blank_positions {
                continue;
            }
            let row = |t: usize, u: usize| -> Vec<f64> {
                let o = b * per + (t * d.positions() + u) * d.classes;
                reference::log_softmax(
                    &logits[o..o + d.classes]
                        .iter()
                        .map(|v| v.as_f64())
                        .collect::<Vec<_>>(),
                )
            };
            let labels: Vec<usize> = (0..tlens[b] as usize)
                .map(|u| self.targets[b * d.targets + u] as usize)
                .collect();
            let score = |pos: &[usize]| -> f64 {
                let mut s = 0.0;
                let mut u = 0;
                for (t, &ut) in pos.iter().enumerate() {
                    while u < ut {
                        s += row(t, u)[labels[u]];
                        u += 1;
                    }
                    s += row(t, u)[self.cfg.blank];
                }
                s
            };
            let (sg, sw) = (score(&g.blank_positions), score(&w.blank_positions));
            prop_assert!(
                same(sg, sw, E::cost_tol(sw)),
                "utt {b}: path {:?} scores {sg}, the CPU's {:?} {sw}",
                g.blank_positions,
                w.blank_positions
            );
        }
        Ok(())
    }
}

/// A pooling problem.
#[derive(Clone, Debug)]
struct PoolCase {
    lattice: Lattice,
    labels: Vec<u32>,
    cfg: LatticePoolConfig,
    grad_costs: Vec<f64>,
    dt: KernelDType,
    opts: Options,
}

fn pool_case() -> impl Strategy<Value = PoolCase> {
    (
        shape(8),
        dtype(),
        any::<bool>(),
        any::<u64>(),
        prop_oneof![
            Just(PoolMode::One),
            Just(PoolMode::FullT),
            Just(PoolMode::FullU)
        ],
        prop_oneof![
            Just(NeutralTerm::Min),
            Just(NeutralTerm::Max),
            Just(NeutralTerm::Off)
        ],
    )
        .prop_map(|(dims, dt, misalign, seed, mode, neutral_term)| {
            let mut rng = Rng(seed);
            let lattice = Lattice::draw(dims, &mut rng);
            let labels = (0..dims.batch)
                .map(|_| rng.below(dims.classes) as u32)
                .collect();
            let cfg = LatticePoolConfig {
                neutral: rng.below(dims.classes),
                mode,
                reduction: Reduction::None,
                // Sometimes a clamp that is active on some nodes.
                prob_clamp: if rng.chance(0.3) { 0.05 } else { 1e-8 },
                neutral_term,
            };
            let grad_costs = (0..dims.batch).map(|_| rng.uniform(-2.0, 2.0)).collect();
            PoolCase {
                lattice,
                labels,
                cfg,
                grad_costs,
                dt,
                opts: Options {
                    misalign_logits: misalign,
                },
            }
        })
}

impl PoolCase {
    fn check(&self) -> Result<(), TestCaseError> {
        with_elem!(self.dt, E => self.check_as::<E>())
    }

    /// Costs within 1e-9 relative and gradients within 1e-7 (f32 accumulation of f64
    /// values), as the CPU tests allow against brute force, plus an ulp; f64 to rounding.
    fn check_as<E: Elem>(&self) -> Result<(), TestCaseError>
    where
        E::Acc: Into<f64>,
    {
        let l = &self.lattice;
        let logits = l.typed::<E>();
        let mut want_grad = vec![E::Acc::default(); logits.len()];
        let (lens, tlens) = (&l.logit_lens, &l.target_lens);
        let want = cpu::lattice_max_pool_loss(
            &logits,
            l.dims,
            &self.labels,
            lens,
            tlens,
            &self.cfg,
            Some(&mut want_grad),
        )
        .map_err(|e| TestCaseError::fail(e.to_string()))?;
        let got = emulated::lattice_max_pool_loss(
            &logits,
            l.dims,
            &self.labels,
            lens,
            tlens,
            &self.cfg,
            Some(&self.grad_costs),
            &self.opts,
        )
        .map_err(|e| TestCaseError::fail(e.to_string()))?;
        let f64s = E::DT == KernelDType::F64;
        for (b, (g, w)) in got.costs.iter().zip(&want).enumerate() {
            let tol = if f64s { 1e-13 } else { 1e-9 } * w.abs().max(1.0);
            prop_assert!(same(*g, *w, tol), "cost[{b}] {g} vs {w}");
        }
        let grad = got.grad.expect("gradient requested");
        let per = l.per_utt();
        for (i, (g, w)) in grad.iter().zip(&want_grad).enumerate() {
            let gb = self.grad_costs[i / per];
            let w = gb * (*w).into();
            // The kernel rounds g * d to f32 once, the reference d to f32 and then scales it:
            // one f32 ulp of the value apart, besides the 1e-7 of the CPU tests.
            let tol = if f64s {
                1e-13 * gb.abs().max(1.0)
            } else {
                1e-7 * gb.abs().max(1.0) + w.abs() * 2f64.powi(-23)
            };
            prop_assert!(same(*g, w, tol), "grad[{i}] (utt {}) {g} vs {w}", i / per);
        }
        Ok(())
    }
}

fn cases(default: u32) -> u32 {
    std::env::var("ENT_EMU_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(cases(128)))]

    #[test]
    fn rnnt_matches_the_cpu_reference(case in rnnt_case()) {
        case.check()?;
    }

    #[test]
    fn pooling_matches_the_cpu_reference(case in pool_case()) {
        case.check()?;
    }

    #[test]
    fn best_path_matches_the_cpu_reference(case in rnnt_case()) {
        case.check_best_path()?;
    }
}

/// More predictor positions than threads in a block (the wavefront's strided loop), a long
/// utterance, and a vocabulary whose rows take the 16-byte load path.
#[test]
fn rnnt_long_targets() {
    let dims = LatticeDims {
        batch: 2,
        frames: 4,
        targets: 300,
        classes: 8,
    };
    let mut rng = Rng(7);
    let mut lattice = Lattice::draw(dims, &mut rng);
    lattice.logit_lens = vec![4, 3];
    lattice.target_lens = vec![300, 257];
    let n = dims.numel().unwrap();
    lattice.values = (0..n)
        .map(|i| {
            if is_valid_cell(&dims, (&lattice.logit_lens, &lattice.target_lens), i) {
                rng.uniform(-3.0, 3.0)
            } else {
                f64::NAN
            }
        })
        .collect();
    let case = RnntCase {
        lattice,
        targets: (0..2 * 300).map(|i| 1 + (i % 7) as u32).collect(),
        cfg: RnntLossConfig {
            reduction: Reduction::None,
            ..Default::default()
        },
        grad_costs: vec![1.0, -0.5],
        dt: KernelDType::F32,
        opts: Options::default(),
    };
    case.check().unwrap();
}

/// The most classes the pooling kernel holds (64); one more is an error naming the limit.
#[test]
fn pooling_class_limit() {
    let dims = LatticeDims {
        batch: 2,
        frames: 3,
        targets: 2,
        classes: launch::MAX_POOL_CLASSES,
    };
    let mut rng = Rng(11);
    let case = PoolCase {
        lattice: Lattice::draw(dims, &mut rng),
        labels: vec![5, 63],
        cfg: LatticePoolConfig {
            neutral: 40,
            reduction: Reduction::None,
            mode: PoolMode::FullU,
            ..Default::default()
        },
        grad_costs: vec![0.75, 1.5],
        dt: KernelDType::F32,
        opts: Options::default(),
    };
    case.check().unwrap();
    let dims = LatticeDims {
        classes: launch::MAX_POOL_CLASSES + 1,
        ..dims
    };
    let z = vec![0.5f32; dims.numel().unwrap()];
    let e = emulated::lattice_max_pool_loss(
        &z,
        dims,
        &[0u32, 1],
        &[3u32, 3],
        &[2u32, 2],
        &LatticePoolConfig::default(),
        None,
        &Options::default(),
    )
    .unwrap_err();
    assert!(e.to_string().contains("K = 65"), "{e}");
}

/// The plans name exactly the entry points compiled into the emulation (and, through `cargo
/// xtask kernels --check`, into the PTX).
#[test]
fn plans_use_every_compiled_kernel() {
    let dims = LatticeDims {
        batch: 1,
        frames: 1,
        targets: 1,
        classes: 4,
    };
    let mut planned = std::collections::BTreeSet::new();
    for dt in [
        KernelDType::F32,
        KernelDType::F64,
        KernelDType::F16,
        KernelDType::BF16,
    ] {
        let r = launch::rnnt_plan(dims, dt, &RnntLossConfig::default()).unwrap();
        let p = launch::pool_plan(dims, dt, &LatticePoolConfig::default()).unwrap();
        for l in r
            .forward
            .iter()
            .chain(&r.gradient)
            .chain(&p.forward)
            .chain(&p.gradient)
        {
            planned.insert(l.kernel.clone());
        }
    }
    let compiled: std::collections::BTreeSet<String> =
        emulated::kernel_names().into_iter().collect();
    assert_eq!(planned, compiled);
}
