//! The CUDA kernels' own source, run through the emulated executor (feature `emulate`), against
//! the CPU reference on the random problems of `kernel_cases`. `cargo xtask test-kernels` runs
//! these, then again with the kernels built under ThreadSanitizer.

use ent_kernels::plan::{self as launch, KernelDType};
use ent_lattice::emulated::{self, Options};
use ent_lattice::{
    Alignment, LatticeBatch, LatticeDims, LatticePoolConfig, PoolMode, Reduction, RnntLossConfig,
};
use proptest::prelude::*;

use crate::kernel_cases::{
    Elem, Lattice, PoolCase, PoolOut, Rng, RnntCase, RnntOut, Runner, pool_case, rnnt_case,
};
use crate::rnnt::is_valid_cell;

/// The emulated executor as a [`Runner`].
struct Emulated;

fn options(misalign: bool) -> Options {
    Options {
        misalign_logits: misalign,
    }
}

impl Runner for Emulated {
    fn rnnt<E: Elem>(&self, c: &RnntCase, logits: &[E]) -> Result<RnntOut, String> {
        let l = &c.lattice;
        let run = emulated::rnnt_loss(
            l.batch(logits, &c.targets),
            &c.cfg,
            Some(&c.grad_costs),
            &options(c.misalign),
        )
        .map_err(|e| e.to_string())?;
        Ok(RnntOut {
            costs: run.costs,
            log_p: Some(run.log_p),
            grad: run
                .grad
                .ok_or("no gradient")?
                .iter()
                .map(|v| v.as_f64())
                .collect(),
            grad_costs: c.grad_costs.clone(),
            costs_rounded: false,
        })
    }

    fn pool<E: Elem>(&self, c: &PoolCase, logits: &[E]) -> Result<PoolOut, String> {
        let l = &c.lattice;
        let run = emulated::lattice_max_pool_loss(
            l.batch(logits, &c.targets),
            &c.cfg,
            Some(&c.grad_costs),
            &options(c.misalign),
        )
        .map_err(|e| e.to_string())?;
        Ok(PoolOut {
            costs: run.costs,
            grad: run.grad.ok_or("no gradient")?,
            grad_costs: c.grad_costs.clone(),
            rounded: false,
        })
    }

    fn best_path<E: Elem>(&self, c: &RnntCase, logits: &[E]) -> Result<Vec<Alignment>, String> {
        let l = &c.lattice;
        emulated::rnnt_best_path(
            l.batch(logits, &c.targets),
            c.cfg.blank,
            &options(c.misalign),
        )
        .map_err(|e| e.to_string())
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
        case.check(&Emulated)?;
    }

    #[test]
    fn pooling_matches_the_cpu_reference(case in pool_case()) {
        case.check(&Emulated)?;
    }

    #[test]
    fn best_path_matches_the_cpu_reference(case in rnnt_case()) {
        case.check_best_path(&Emulated)?;
    }
}

/// More predictor positions than threads in a block (the wavefront's strided loop), a long
/// utterance, and a vocabulary whose rows take the 16-byte load path.
#[test]
fn rnnt_long_targets() {
    let dims = LatticeDims::new(2, 4, 300, 8);
    let mut rng = Rng::new(7);
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
        misalign: false,
    };
    case.check(&Emulated).unwrap();
}

/// The most classes the pooling kernel holds (64); one more is an error naming the limit.
#[test]
fn pooling_class_limit() {
    let dims = LatticeDims::new(2, 3, 2, launch::MAX_POOL_CLASSES);
    let mut rng = Rng::new(11);
    let case = PoolCase {
        lattice: Lattice::draw(dims, &mut rng),
        targets: vec![5, 63],
        cfg: LatticePoolConfig {
            neutral: 40,
            reduction: Reduction::None,
            mode: PoolMode::FullU,
            ..Default::default()
        },
        grad_costs: vec![0.75, 1.5],
        dt: KernelDType::F32,
        misalign: false,
    };
    case.check(&Emulated).unwrap();
    let dims = LatticeDims {
        classes: launch::MAX_POOL_CLASSES + 1,
        ..dims
    };
    let z = vec![0.5f32; dims.numel().unwrap()];
    let e = emulated::lattice_max_pool_loss(
        LatticeBatch::new(&z, dims, &[0u32, 1], &[3u32, 3], &[2u32, 2]),
        &LatticePoolConfig::default(),
        None,
        &Options::default(),
    )
    .unwrap_err();
    assert!(e.to_string().contains("K = 65"), "{e}");
}

/// The emulated kernels against torchaudio itself, on the committed fixture (as `peer.rs`
/// checks the CPU path).
#[test]
fn matches_torchaudio() {
    for case in crate::peer::peer_cases() {
        let run = emulated::rnnt_loss(
            case.batch(),
            &case.cfg,
            Some(&vec![1.0; case.dims.batch]),
            &Options::default(),
        )
        .unwrap();
        case.check(&run.costs, &run.grad.unwrap());
    }
}
