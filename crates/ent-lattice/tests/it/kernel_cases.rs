//! Random problems for the kernels and their check against the CPU reference, shared by the
//! emulated kernels (`emulated.rs`) and the GPU (`cuda.rs`): every logit type, random shapes
//! and lengths, blank index, FastEmit, clamps, pooling modes and neutral terms, NaN and
//! infinite logits, padding poisoned with NaN, aligned and misaligned logits, random incoming
//! gradients. A [`Runner`] runs a case on one executor.

use ent_kernels::KernelDType;
use ent_lattice::{
    Alignment, LatticeBatch, LatticeDims, LatticePoolConfig, Logit, NeutralTerm, PoolMode,
    Reduction, RnntLossConfig, cpu,
};
use half::{bf16, f16};
use proptest::prelude::*;
use proptest::test_runner::TestCaseError;

use crate::reference;
use crate::rnnt::is_valid_cell;

/// SplitMix64, for the parts of a case drawn from its seed.
pub use ent_testkit::Rng;

/// A logit type as the tests see it: conversion and the tolerances against the CPU reference.
pub trait Elem: Logit + candle_core::WithDType + Copy + std::fmt::Debug {
    const DT: KernelDType;
    fn of(v: f64) -> Self;
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
            _ => w.abs() * Self::ulp() + 2e-6 * g.abs(),
        }
    }
    /// One ulp of the type, relative: what storing a value in it may change.
    fn ulp() -> f64 {
        match Self::DT {
            KernelDType::F64 => 0.0,
            KernelDType::F32 => 2f64.powi(-23),
            KernelDType::F16 => 2f64.powi(-10),
            KernelDType::BF16 => 2f64.powi(-7),
        }
    }
}

impl Elem for f32 {
    const DT: KernelDType = KernelDType::F32;
    fn of(v: f64) -> Self {
        v as f32
    }
    fn as_f64(self) -> f64 {
        self as f64
    }
}
impl Elem for f64 {
    const DT: KernelDType = KernelDType::F64;
    fn of(v: f64) -> Self {
        v
    }
    fn as_f64(self) -> f64 {
        self
    }
}
impl Elem for f16 {
    const DT: KernelDType = KernelDType::F16;
    fn of(v: f64) -> Self {
        f16::from_f64(v)
    }
    fn as_f64(self) -> f64 {
        self.to_f64()
    }
}
impl Elem for bf16 {
    const DT: KernelDType = KernelDType::BF16;
    fn of(v: f64) -> Self {
        bf16::from_f64(v)
    }
    fn as_f64(self) -> f64 {
        self.to_f64()
    }
}

/// Runs `$body` with `$E` bound to the Rust type of `$dt`.
#[macro_export]
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

pub fn dtype() -> impl Strategy<Value = KernelDType> {
    prop_oneof![
        Just(KernelDType::F32),
        Just(KernelDType::F64),
        Just(KernelDType::F16),
        Just(KernelDType::BF16),
    ]
}

pub fn same(a: f64, b: f64, tol: f64) -> bool {
    (a.is_nan() && b.is_nan()) || a == b || (a - b).abs() <= tol
}

/// A padded batch with its lengths; padding holds NaN (never read), valid cells random logits
/// and, in some cases, `-inf` (probability zero) or one NaN or `+inf` (a poisoned utterance).
#[derive(Clone, Debug)]
pub struct Lattice {
    pub dims: LatticeDims,
    pub values: Vec<f64>,
    pub logit_lens: Vec<u32>,
    pub target_lens: Vec<u32>,
}

impl Lattice {
    pub fn draw(dims: LatticeDims, rng: &mut Rng) -> Self {
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

    pub fn typed<E: Elem>(&self) -> Vec<E> {
        self.values.iter().map(|&v| E::of(v)).collect()
    }

    /// The batch of `logits` (this lattice's values in the logits' type) with `targets`.
    pub fn batch<'a, E>(&'a self, logits: &'a [E], targets: &'a [u32]) -> LatticeBatch<'a, E> {
        LatticeBatch::new(
            logits,
            self.dims,
            targets,
            &self.logit_lens,
            &self.target_lens,
        )
    }

    pub fn per_utt(&self) -> usize {
        self.dims.frames * self.dims.positions() * self.dims.classes
    }
}

pub fn shape(max_classes: usize) -> impl Strategy<Value = LatticeDims> {
    (1usize..=3, 1usize..=6, 0usize..=4, 2usize..=max_classes).prop_map(
        |(batch, frames, targets, classes)| LatticeDims::new(batch, frames, targets, classes),
    )
}

/// A lattice problem with its loss configuration `C` and incoming gradients.
#[derive(Clone, Debug)]
pub struct Case<C> {
    pub lattice: Lattice,
    /// RNN-T targets `[B][U]`, or pooling labels `[B]`.
    pub targets: Vec<u32>,
    pub cfg: C,
    pub grad_costs: Vec<f64>,
    pub dt: KernelDType,
    /// Place the logits one element off 16-byte alignment.
    pub misalign: bool,
}

/// An RNN-T problem.
pub type RnntCase = Case<RnntLossConfig>;
/// A pooling problem.
pub type PoolCase = Case<LatticePoolConfig>;

pub fn rnnt_case() -> impl Strategy<Value = RnntCase> {
    (shape(40), dtype(), any::<bool>(), any::<u64>()).prop_map(|(dims, dt, misalign, seed)| {
        let mut rng = Rng::new(seed);
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
            misalign,
        }
    })
}

/// What a runner returns for an RNN-T case.
pub struct RnntOut {
    pub costs: Vec<f64>,
    /// log P from alpha and from beta, when the runner can read them.
    pub log_p: Option<Vec<[f64; 2]>>,
    /// The gradient (stored in the logits' type), widened.
    pub grad: Vec<f64>,
    /// The incoming gradients as applied (rounded to the loss's type where it is one).
    pub grad_costs: Vec<f64>,
    /// The costs were stored in the logits' type.
    pub costs_rounded: bool,
}

/// What a runner returns for a pooling case.
pub struct PoolOut {
    pub costs: Vec<f64>,
    pub grad: Vec<f64>,
    pub grad_costs: Vec<f64>,
    /// Costs and gradient were stored in the logits' type (else f64 costs and the kernel's
    /// f32/f64 gradient).
    pub rounded: bool,
}

/// One executor of the kernels (emulated, or a GPU).
pub trait Runner {
    fn rnnt<E: Elem>(&self, case: &RnntCase, logits: &[E]) -> Result<RnntOut, String>;
    fn pool<E: Elem>(&self, case: &PoolCase, logits: &[E]) -> Result<PoolOut, String>;
    fn best_path<E: Elem>(&self, case: &RnntCase, logits: &[E]) -> Result<Vec<Alignment>, String>;
}

/// `cost_tol`, plus an ulp of the type when the value was stored in it.
fn stored_tol<E: Elem>(w: f64, rounded: bool) -> f64 {
    E::cost_tol(w) + if rounded { w.abs() * E::ulp() } else { 0.0 }
}

impl RnntCase {
    pub fn check(&self, r: &impl Runner) -> Result<(), TestCaseError> {
        with_elem!(self.dt, E => self.check_as::<E>(r))
    }

    fn check_as<E: Elem>(&self, r: &impl Runner) -> Result<(), TestCaseError>
    where
        E::Acc: Into<f64>,
    {
        let l = &self.lattice;
        let logits = l.typed::<E>();
        let mut want_grad = vec![E::Acc::default(); logits.len()];
        let want = cpu::rnnt_loss(
            l.batch(&logits, &self.targets),
            &self.cfg,
            Some(&mut want_grad),
        )
        .map_err(|e| TestCaseError::fail(e.to_string()))?;
        let got = r.rnnt(self, &logits).map_err(TestCaseError::fail)?;
        prop_assert_eq!(got.costs.len(), want.len());
        for (b, (g, w)) in got.costs.iter().zip(&want).enumerate() {
            let tol = stored_tol::<E>(*w, got.costs_rounded);
            prop_assert!(same(*g, *w, tol), "cost[{b}] {g} vs {w}");
        }
        // log P from alpha and from beta agree (where defined).
        for (b, [a, bt]) in got.log_p.iter().flatten().enumerate() {
            prop_assert!(
                same(*a, *bt, E::cost_tol(*a)) || *a == f64::NEG_INFINITY,
                "utt {b}: log P {a} from alpha, {bt} from beta"
            );
        }
        let per = l.per_utt();
        prop_assert_eq!(got.grad.len(), want_grad.len());
        for (i, (g, w)) in got.grad.iter().zip(&want_grad).enumerate() {
            let gb = got.grad_costs[i / per];
            let (g, w) = (*g, gb * (*w).into());
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

    pub fn check_best_path(&self, r: &impl Runner) -> Result<(), TestCaseError> {
        with_elem!(self.dt, E => self.check_best_path_as::<E>(r))
    }

    /// The same alignment as the CPU, or, on a near-tie, one whose log-probability (in f64
    /// from the logits) is as good within the loss's tolerance.
    fn check_best_path_as<E: Elem>(&self, r: &impl Runner) -> Result<(), TestCaseError> {
        let l = &self.lattice;
        let logits = l.typed::<E>();
        let (lens, tlens) = (&l.logit_lens, &l.target_lens);
        let want = cpu::rnnt_best_path(
            LatticeBatch::new(&logits, l.dims, &self.targets, lens, tlens),
            self.cfg.blank,
        )
        .map_err(|e| TestCaseError::fail(e.to_string()))?;
        let got = r.best_path(self, &logits).map_err(TestCaseError::fail)?;
        prop_assert_eq!(got.len(), want.len());
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

pub fn pool_case() -> impl Strategy<Value = PoolCase> {
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
            let mut rng = Rng::new(seed);
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
                targets: labels,
                cfg,
                grad_costs,
                dt,
                misalign,
            }
        })
}

impl PoolCase {
    pub fn check(&self, r: &impl Runner) -> Result<(), TestCaseError> {
        with_elem!(self.dt, E => self.check_as::<E>(r))
    }

    /// Costs within 1e-9 relative and gradients within 1e-7 (f32 accumulation of f64
    /// values), as the CPU tests allow against brute force, plus an ulp; f64 to rounding.
    fn check_as<E: Elem>(&self, r: &impl Runner) -> Result<(), TestCaseError>
    where
        E::Acc: Into<f64>,
    {
        let l = &self.lattice;
        let logits = l.typed::<E>();
        let mut want_grad = vec![E::Acc::default(); logits.len()];
        let (lens, tlens) = (&l.logit_lens, &l.target_lens);
        let want = cpu::lattice_max_pool_loss(
            LatticeBatch::new(&logits, l.dims, &self.targets, lens, tlens),
            &self.cfg,
            Some(&mut want_grad),
        )
        .map_err(|e| TestCaseError::fail(e.to_string()))?;
        let got = r.pool(self, &logits).map_err(TestCaseError::fail)?;
        let f64s = E::DT == KernelDType::F64;
        // Where the runner stored values in the logits' type, one ulp of it on top.
        let stored = |w: f64| if got.rounded { w.abs() * E::ulp() } else { 0.0 };
        prop_assert_eq!(got.costs.len(), want.len());
        for (b, (g, w)) in got.costs.iter().zip(&want).enumerate() {
            let tol = if f64s { 1e-13 } else { 1e-9 } * w.abs().max(1.0) + stored(*w);
            prop_assert!(same(*g, *w, tol), "cost[{b}] {g} vs {w}");
        }
        let per = l.per_utt();
        prop_assert_eq!(got.grad.len(), want_grad.len());
        for (i, (g, w)) in got.grad.iter().zip(&want_grad).enumerate() {
            let gb = got.grad_costs[i / per];
            let w = gb * (*w).into();
            // The kernel rounds g * d to f32 once, the reference d to f32 and then scales it:
            // one f32 ulp of the value apart, besides the 1e-7 of the CPU tests.
            let tol = if f64s {
                1e-13 * gb.abs().max(1.0)
            } else {
                1e-7 * gb.abs().max(1.0) + w.abs() * 2f64.powi(-23)
            } + stored(w);
            prop_assert!(same(*g, w, tol), "grad[{i}] (utt {}) {g} vs {w}", i / per);
        }
        Ok(())
    }
}
