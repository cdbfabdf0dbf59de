//! The CUDA path (feature `cuda`) on a GPU against the CPU reference: the random problems of
//! `kernel_cases` through candle tensors, forward and backward as a user calls them (aligned and
//! misaligned logits), a batch of more than 2^31 logits, the fused loss-and-gradient calls and
//! the device errors. Without a GPU each test prints why it is skipped; `ENT_REQUIRE_CUDA=1`
//! turns the skip into a failure (the GPU bundle's `run.sh` sets it).

use candle_core::{DType, Device, Tensor, Var};
use ent_lattice::{
    Alignment, LatticeBatch, LatticeDims, LatticePoolConfig, Reduction, RnntLossConfig, cpu,
    lattice_max_pool_loss, lattice_max_pool_loss_with_grad, rnnt_best_path, rnnt_loss,
    rnnt_loss_with_grad,
};
use half::f16;
use proptest::prelude::*;

use crate::kernel_cases::{
    Elem, Lattice, PoolCase, PoolOut, Rng, RnntCase, RnntOut, Runner, pool_case, rnnt_case,
};

fn required() -> bool {
    std::env::var_os("ENT_REQUIRE_CUDA").is_some_and(|v| v == "1")
}

type Res<T> = Result<T, String>;

fn err(e: candle_core::Error) -> String {
    e.to_string()
}

/// The case's logits as a `Var` on `dev`; misaligned: a view one element into a larger
/// buffer (contiguous, so the loss reads it in place).
fn logits_var<E: Elem>(logits: &[E], d: LatticeDims, misalign: bool, dev: &Device) -> Res<Var> {
    let shape = (d.batch, d.frames, d.positions(), d.classes);
    let t = if misalign {
        let mut v = Vec::with_capacity(logits.len() + 1);
        v.push(E::of(0.5));
        v.extend_from_slice(logits);
        Tensor::from_vec(v, logits.len() + 1, dev)
            .and_then(|t| t.narrow(0, 1, logits.len()))
            .and_then(|t| t.reshape(shape))
    } else {
        Tensor::from_slice(logits, shape, dev)
    }
    .map_err(err)?;
    Var::from_tensor(&t).map_err(err)
}

/// An index tensor on `dev`; an empty one on the CPU (CUDA cannot allocate zero bytes, and the
/// losses accept empty index tensors from any device).
fn u32s(v: &[u32], shape: &[usize], dev: &Device) -> Res<Tensor> {
    let dev = if v.is_empty() { &Device::Cpu } else { dev };
    Tensor::from_slice(v, shape, dev).map_err(err)
}

fn f64s(t: &Tensor) -> Res<Vec<f64>> {
    t.to_dtype(DType::F64)
        .and_then(|t| t.flatten_all())
        .and_then(|t| t.to_vec1::<f64>())
        .map_err(err)
}

/// The case's logits as a `Var` and its lengths, on `dev`.
fn lattice_tensors<E: Elem>(
    l: &Lattice,
    logits: &[E],
    misalign: bool,
    dev: &Device,
) -> Res<(Var, Tensor, Tensor)> {
    let b = l.dims.batch;
    Ok((
        logits_var(logits, l.dims, misalign, dev)?,
        u32s(&l.logit_lens, &[b], dev)?,
        u32s(&l.target_lens, &[b], dev)?,
    ))
}

/// The backward pass of `sum_b g_b loss_b`, with `g` rounded to the loss's type: the costs,
/// the logits' gradient and `g` as applied, in f64.
fn backward<E: Elem>(loss: &Tensor, z: &Var, g: &[f64], dev: &Device) -> Res<[Vec<f64>; 3]> {
    let typed: Vec<E> = g.iter().map(|&v| E::of(v)).collect();
    let used = typed.iter().map(|v| v.as_f64()).collect();
    let g = Tensor::from_vec(typed, g.len(), dev).map_err(err)?;
    let grads = (loss * &g)
        .and_then(|t| t.sum_all())
        .and_then(|t| t.backward())
        .map_err(err)?;
    let grad = grads
        .get(z.as_tensor())
        .ok_or("no gradient for the logits")?;
    Ok([f64s(loss)?, f64s(grad)?, used])
}

/// The GPU as a [`Runner`]: the public candle entry points on CUDA tensors.
struct OnCuda(Device);

impl Runner for OnCuda {
    fn rnnt<E: Elem>(&self, c: &RnntCase, logits: &[E]) -> Res<RnntOut> {
        let (l, dev) = (&c.lattice, &self.0);
        let (z, ll, tl) = lattice_tensors(l, logits, c.misalign, dev)?;
        let targets = u32s(&c.targets, &[l.dims.batch, l.dims.targets], dev)?;
        let loss = rnnt_loss(z.as_tensor(), &targets, &ll, &tl, &c.cfg).map_err(err)?;
        let [costs, grad, grad_costs] = backward::<E>(&loss, &z, &c.grad_costs, dev)?;
        Ok(RnntOut {
            costs,
            log_p: None,
            grad,
            grad_costs,
            costs_rounded: true,
        })
    }

    fn pool<E: Elem>(&self, c: &PoolCase, logits: &[E]) -> Res<PoolOut> {
        let (l, dev) = (&c.lattice, &self.0);
        let (z, ll, tl) = lattice_tensors(l, logits, c.misalign, dev)?;
        let labels = u32s(&c.targets, &[l.dims.batch], dev)?;
        let loss = lattice_max_pool_loss(z.as_tensor(), &labels, &ll, &tl, &c.cfg).map_err(err)?;
        let [costs, grad, grad_costs] = backward::<E>(&loss, &z, &c.grad_costs, dev)?;
        Ok(PoolOut {
            costs,
            grad,
            grad_costs,
            rounded: true,
        })
    }

    fn best_path<E: Elem>(&self, c: &RnntCase, logits: &[E]) -> Res<Vec<Alignment>> {
        let (l, dev) = (&c.lattice, &self.0);
        let (z, ll, tl) = lattice_tensors(l, logits, c.misalign, dev)?;
        let targets = u32s(&c.targets, &[l.dims.batch, l.dims.targets], dev)?;
        rnnt_best_path(z.as_tensor(), &targets, &ll, &tl, c.cfg.blank).map_err(err)
    }
}

fn cases(default: u32) -> u32 {
    std::env::var("ENT_CUDA_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(cases(256)))]

    #[test]
    fn rnnt_matches_the_cpu_reference(case in rnnt_case()) {
        if let Some(dev) = ent_testkit::cuda_or_skip() {
            case.check(&OnCuda(dev))?;
        }
    }

    #[test]
    fn pooling_matches_the_cpu_reference(case in pool_case()) {
        if let Some(dev) = ent_testkit::cuda_or_skip() {
            case.check(&OnCuda(dev))?;
        }
    }

    #[test]
    fn best_path_matches_the_cpu_reference(case in rnnt_case()) {
        if let Some(dev) = ent_testkit::cuda_or_skip() {
            case.check_best_path(&OnCuda(dev))?;
        }
    }
}

/// The fused calls give the loss and the gradient that `backward()` gives, on the GPU: the
/// same kernels run, so with an incoming gradient of 1 (`Reduction::None`) bit for bit. With
/// `Reduction::Mean` candle's incoming gradient is 1/B rounded to f32 while the fused call
/// scales by 1/B in f64 (B = 3 here, not a power of two): at most two f32 ulp apart.
#[test]
fn with_grad_equals_backward() {
    let Some(dev) = ent_testkit::cuda_or_skip() else {
        return;
    };
    let (b, t, u, v) = (3, 7, 4, 33);
    let mut rng = Rng::new(5);
    let z: Vec<f32> = (0..b * t * (u + 1) * v)
        .map(|_| rng.uniform(-3.0, 3.0) as f32)
        .collect();
    let z = Var::from_vec(z, (b, t, u + 1, v), &dev).unwrap();
    let targets: Vec<u32> = (0..b * u).map(|i| 1 + (i % (v - 1)) as u32).collect();
    let targets = Tensor::from_vec(targets, (b, u), &dev).unwrap();
    let ll = Tensor::new(&[7u32, 5, 6], &dev).unwrap();
    let tl = Tensor::new(&[4u32, 2, 0], &dev).unwrap();
    let k = 4;
    let e = Var::from_vec(
        (0..b * t * (u + 1) * k)
            .map(|_| rng.uniform(-3.0, 3.0) as f32)
            .collect::<Vec<_>>(),
        (b, t, u + 1, k),
        &dev,
    )
    .unwrap();
    let labels = Tensor::new(&[0u32, 2, 1], &dev).unwrap();
    let flat = |x: &Tensor| x.flatten_all().unwrap().to_vec1::<f32>().unwrap();
    // Exact for an incoming gradient of 1; else within two f32 ulp (relative 2.4e-7, taken as
    // 4e-7 as on the CPU) of the larger of the value and 1e-3.
    let check = |what: &str, reduction: Reduction, g1: Vec<f32>, g2: Vec<f32>| {
        assert_eq!(g1.len(), g2.len());
        if reduction == Reduction::None {
            assert_eq!(g1, g2, "{what}: an incoming gradient of 1 is exact");
        }
        for (x, y) in g1.iter().zip(&g2) {
            assert!(
                (x - y).abs() <= 4e-7 * y.abs().max(1e-3),
                "{what} {reduction:?}: {x} vs {y}"
            );
        }
    };
    for reduction in [Reduction::Mean, Reduction::None] {
        let cfg = RnntLossConfig {
            reduction,
            ..Default::default()
        };
        let loss = rnnt_loss(z.as_tensor(), &targets, &ll, &tl, &cfg).unwrap();
        let grads = loss.sum_all().unwrap().backward().unwrap();
        let (loss2, grad2) = rnnt_loss_with_grad(z.as_tensor(), &targets, &ll, &tl, &cfg).unwrap();
        assert_eq!(flat(&loss), flat(&loss2), "rnnt {reduction:?}");
        check(
            "rnnt",
            reduction,
            flat(grads.get(z.as_tensor()).unwrap()),
            flat(&grad2),
        );

        let pcfg = LatticePoolConfig {
            reduction,
            ..Default::default()
        };
        let loss = lattice_max_pool_loss(e.as_tensor(), &labels, &ll, &tl, &pcfg).unwrap();
        let grads = loss.sum_all().unwrap().backward().unwrap();
        let (loss2, grad2) =
            lattice_max_pool_loss_with_grad(e.as_tensor(), &labels, &ll, &tl, &pcfg).unwrap();
        assert_eq!(flat(&loss), flat(&loss2), "pool {reduction:?}");
        check(
            "pool",
            reduction,
            flat(grads.get(e.as_tensor()).unwrap()),
            flat(&grad2),
        );
    }
}

/// Arguments on two devices are an error naming both.
#[test]
fn arguments_on_different_devices() {
    let Some(dev) = ent_testkit::cuda_or_skip() else {
        return;
    };
    let z = Tensor::zeros((1, 2, 2, 3), DType::F32, &dev).unwrap();
    let targets = Tensor::new(&[[1u32]], &Device::Cpu).unwrap();
    let lens = Tensor::new(&[2u32], &dev).unwrap();
    let tlens = Tensor::new(&[1u32], &dev).unwrap();
    let e = rnnt_loss(&z, &targets, &lens, &tlens, &RnntLossConfig::default())
        .unwrap_err()
        .to_string();
    assert!(e.contains("targets is on Cpu but logits is on Cuda"), "{e}");
}

/// More than 2^31 logits (f16, 4.4 GB): the second utterance's rows lie past 2^31, where a
/// 32-bit offset would wrap. Its cost and gradient against the CPU reference on that
/// utterance alone. Runs with `ENT_REQUIRE_CUDA=1` (it needs about 14 GB of GPU memory and
/// 12 GB of host memory).
#[test]
fn more_than_2_pow_31_logits() {
    let Some(dev) = ent_testkit::cuda_or_skip() else {
        return;
    };
    if !required() {
        eprintln!("skipped: set ENT_REQUIRE_CUDA=1 to run the 2^31-logit case");
        return;
    }
    let (b, t, u, v) = (2usize, 1100usize, 1000usize, 1000usize);
    let n = b * t * (u + 1) * v;
    assert!(n > 1 << 31, "{n}");
    let z = Tensor::rand(-3f32, 3f32, (b, t, u + 1, v), &dev)
        .and_then(|z| z.to_dtype(DType::F16))
        .unwrap();
    let mut rng = Rng::new(31);
    let targets: Vec<u32> = (0..b * u).map(|_| 1 + rng.below(v - 1) as u32).collect();
    let cfg = RnntLossConfig {
        reduction: Reduction::None,
        ..Default::default()
    };
    let (loss, grad) = rnnt_loss_with_grad(
        &z,
        &Tensor::from_slice(&targets, (b, u), &dev).unwrap(),
        &Tensor::new(&[t as u32, t as u32], &dev).unwrap(),
        &Tensor::new(&[u as u32, u as u32], &dev).unwrap(),
        &cfg,
    )
    .unwrap();
    let got_cost = loss.to_dtype(DType::F64).unwrap().to_vec1::<f64>().unwrap()[1];
    let utt: Vec<f16> = z
        .narrow(0, 1, 1)
        .and_then(|z| z.flatten_all())
        .and_then(|z| z.to_vec1())
        .unwrap();
    drop(z);
    let got_grad: Vec<f16> = grad
        .narrow(0, 1, 1)
        .and_then(|g| g.flatten_all())
        .and_then(|g| g.to_vec1())
        .unwrap();
    drop(grad);
    let mut want_grad = vec![0f32; utt.len()];
    let one = LatticeDims::new(1, t, u, v);
    let want = cpu::rnnt_loss(
        LatticeBatch::new(&utt, one, &targets[u..], &[t as u32], &[u as u32]),
        &cfg,
        Some(&mut want_grad),
    )
    .unwrap()[0];
    // The cost rounded to f16 (2^-11 relative) dominates the f32 arithmetic over 2100 nodes.
    assert!(
        (got_cost - want).abs() <= want.abs() * 2f64.powi(-10),
        "cost {got_cost} vs {want}"
    );
    let worst = got_grad
        .iter()
        .zip(&want_grad)
        .map(|(g, w)| {
            let (g, w) = (g.to_f64(), *w as f64);
            (g - w).abs() - (w.abs() * 2f64.powi(-10) + 2e-6)
        })
        .fold(f64::NEG_INFINITY, f64::max);
    assert!(
        worst <= 0.0,
        "a gradient element beyond tolerance by {worst}"
    );
}

/// The GPU against torchaudio itself, on the committed fixture (as `peer.rs` checks the CPU
/// path).
#[test]
fn matches_torchaudio() {
    let Some(dev) = ent_testkit::cuda_or_skip() else {
        return;
    };
    for case in crate::peer::peer_cases() {
        let d = case.dims;
        let z = Tensor::from_slice(
            &case.logits,
            (d.batch, d.frames, d.positions(), d.classes),
            &dev,
        )
        .unwrap();
        let t = |v: &[u32], shape: &[usize]| u32s(v, shape, &dev).unwrap();
        let (costs, grad) = rnnt_loss_with_grad(
            &z,
            &t(&case.targets, &[d.batch, d.targets]),
            &t(&case.logit_lens, &[d.batch]),
            &t(&case.target_lens, &[d.batch]),
            &case.cfg,
        )
        .unwrap();
        let costs: Vec<f64> = f64s(&costs).unwrap();
        let grad: Vec<f32> = grad.flatten_all().unwrap().to_vec1().unwrap();
        case.check(&costs, &grad);
    }
}
