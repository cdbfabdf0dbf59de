//! The candle entry points: backward agrees with the slice API, dtypes, reductions, layouts.

use candle_core::{DType, Device, Tensor, Var};
use ent_lattice::{
    LatticeBatch, LatticeDims, LatticePoolConfig, PoolMode, Reduction, RnntLossConfig, cpu,
    lattice_max_pool_loss, lattice_max_pool_loss_with_grad, rnnt_loss, rnnt_loss_with_grad,
};

const DIMS: LatticeDims = LatticeDims::new(3, 6, 4, 7);

struct Batch {
    logits: Vec<f32>,
    targets: Vec<u32>,
    t_lens: Vec<u32>,
    u_lens: Vec<u32>,
}

fn batch() -> Batch {
    let n = DIMS.numel().unwrap();
    Batch {
        logits: (0..n)
            .map(|i| ((i * 2654435761usize) % 1000) as f32 / 200.0 - 2.5)
            .collect(),
        targets: vec![1, 2, 3, 4, 6, 5, 0, 0, 2, 2, 2, 1],
        t_lens: vec![6, 4, 5],
        u_lens: vec![4, 2, 4],
    }
}

fn tensors(b: &Batch, dtype: DType) -> (Var, Tensor, Tensor, Tensor) {
    let dev = Device::Cpu;
    let d = DIMS;
    let logits = Tensor::from_vec(
        b.logits.clone(),
        (d.batch, d.frames, d.positions(), d.classes),
        &dev,
    )
    .unwrap()
    .to_dtype(dtype)
    .unwrap();
    (
        Var::from_tensor(&logits).unwrap(),
        Tensor::from_vec(b.targets.clone(), (d.batch, d.targets), &dev).unwrap(),
        Tensor::new(b.t_lens.as_slice(), &dev).unwrap(),
        Tensor::new(b.u_lens.as_slice(), &dev).unwrap(),
    )
}

fn flat(t: &Tensor) -> Vec<f32> {
    t.flatten_all()
        .unwrap()
        .to_dtype(DType::F32)
        .unwrap()
        .to_vec1()
        .unwrap()
}

#[test]
fn backward_matches_slice_api() {
    let b = batch();
    for reduction in [Reduction::Mean, Reduction::Sum] {
        let cfg = RnntLossConfig {
            reduction,
            blank: 0,
            ..Default::default()
        };
        let (logits, targets, tl, ul) = tensors(&b, DType::F32);
        let loss = rnnt_loss(&logits, &targets, &tl, &ul, &cfg).unwrap();
        assert_eq!(loss.dims(), &[] as &[usize]);
        let grads = loss.backward().unwrap();
        let got = flat(grads.get(&logits).unwrap());
        let mut want = vec![0.0f32; got.len()];
        let costs = cpu::rnnt_loss(
            LatticeBatch::new(&b.logits, DIMS, &b.targets, &b.t_lens, &b.u_lens),
            &cfg,
            Some(&mut want),
        )
        .unwrap();
        let total: f64 = costs.iter().sum::<f64>()
            / if reduction == Reduction::Mean {
                3.0
            } else {
                1.0
            };
        assert!((loss.to_scalar::<f32>().unwrap() as f64 - total).abs() < 1e-5 * total);
        for (g, w) in got.iter().zip(&want) {
            // The incoming gradient is 1/B rounded to f32 on the candle path and exact in f64 on
            // the slice path; the f32 products then differ by a few ulp.
            assert!((g - w).abs() <= 4e-7 * w.abs().max(1e-3), "{g} vs {w}");
        }
    }
}

#[test]
fn reduction_none_returns_costs_and_weighted_backward() {
    let b = batch();
    let cfg = RnntLossConfig {
        reduction: Reduction::None,
        ..Default::default()
    };
    let (logits, targets, tl, ul) = tensors(&b, DType::F32);
    let costs = rnnt_loss(&logits, &targets, &tl, &ul, &cfg).unwrap();
    assert_eq!(costs.dims(), &[3]);
    // Weight the utterances differently: the gradient of each block scales accordingly.
    let w = Tensor::new(&[1.0f32, 0.0, 2.0], &Device::Cpu).unwrap();
    let grads = (costs * w).unwrap().sum_all().unwrap().backward().unwrap();
    let got = flat(grads.get(&logits).unwrap());
    let mut unit = vec![0.0f32; got.len()];
    cpu::rnnt_loss(
        LatticeBatch::new(&b.logits, DIMS, &b.targets, &b.t_lens, &b.u_lens),
        &cfg,
        Some(&mut unit),
    )
    .unwrap();
    let per = got.len() / 3;
    for (i, (g, u)) in got.iter().zip(&unit).enumerate() {
        let want = u * [1.0, 0.0, 2.0][i / per];
        assert!((g - want).abs() <= 1e-7, "[{i}] {g} vs {want}");
    }
}

#[test]
fn untracked_inputs_give_the_same_loss_and_repeated_backward_works() {
    let b = batch();
    let cfg = RnntLossConfig::default();
    let (logits, targets, tl, ul) = tensors(&b, DType::F32);
    let plain = rnnt_loss(logits.as_tensor(), &targets, &tl, &ul, &cfg).unwrap();
    let tracked = rnnt_loss(&logits, &targets, &tl, &ul, &cfg).unwrap();
    assert_eq!(
        plain.to_scalar::<f32>().unwrap(),
        tracked.to_scalar::<f32>().unwrap()
    );
    let g1 = flat(tracked.backward().unwrap().get(&logits).unwrap());
    // The second call recomputes the gradient the first one consumed.
    let g2 = flat(tracked.backward().unwrap().get(&logits).unwrap());
    assert_eq!(g1, g2);
}

#[test]
fn dtypes_roundtrip() {
    let b = batch();
    let cfg = RnntLossConfig::default();
    let (l32, targets, tl, ul) = tensors(&b, DType::F32);
    let ref_loss = rnnt_loss(&l32, &targets, &tl, &ul, &cfg)
        .unwrap()
        .to_scalar::<f32>()
        .unwrap();
    let ref_grad = flat(
        rnnt_loss(&l32, &targets, &tl, &ul, &cfg)
            .unwrap()
            .backward()
            .unwrap()
            .get(&l32)
            .unwrap(),
    );
    // f16 logits differ from the f32 ones by the input rounding (|z| <= 2.5: 2^-10 relative);
    // bf16 by 2^-7. Costs are sums of ~10 log-probabilities; gradient entries are bounded
    // by 1 and move by about the logit error. f64 agrees to f32 rounding.
    for (dtype, tol_loss, tol_grad) in [
        (DType::F16, 2e-2, 5e-3),
        (DType::BF16, 1e-1, 3e-2),
        (DType::F64, 1e-5, 1e-6),
    ] {
        let (l, ..) = tensors(&b, dtype);
        let loss = rnnt_loss(&l, &targets, &tl, &ul, &cfg).unwrap();
        assert_eq!(loss.dtype(), dtype);
        let v = loss
            .to_dtype(DType::F32)
            .unwrap()
            .to_scalar::<f32>()
            .unwrap();
        assert!(
            (v - ref_loss).abs() <= tol_loss * ref_loss,
            "{dtype:?}: {v} vs {ref_loss}"
        );
        let g = loss.backward().unwrap();
        let g = g.get(&l).unwrap();
        assert_eq!(g.dtype(), dtype);
        for (a, r) in flat(g).iter().zip(&ref_grad) {
            assert!((a - r).abs() <= tol_grad, "{dtype:?}: {a} vs {r}");
        }
    }
}

#[test]
fn non_contiguous_logits_and_i64_indices() {
    let b = batch();
    let cfg = RnntLossConfig::default();
    let d = DIMS;
    let (logits, targets, tl, ul) = tensors(&b, DType::F32);
    let want = rnnt_loss(&logits, &targets, &tl, &ul, &cfg)
        .unwrap()
        .to_scalar::<f32>()
        .unwrap();
    let want_g = flat(
        rnnt_loss(&logits, &targets, &tl, &ul, &cfg)
            .unwrap()
            .backward()
            .unwrap()
            .get(&logits)
            .unwrap(),
    );
    // Store as [B, U+1, T, V] and present the transposed view.
    let stored = Var::from_tensor(
        &logits
            .as_tensor()
            .transpose(1, 2)
            .unwrap()
            .contiguous()
            .unwrap(),
    )
    .unwrap();
    let view = stored.as_tensor().transpose(1, 2).unwrap();
    assert!(!view.is_contiguous());
    let i64s = |t: &Tensor| t.to_dtype(DType::I64).unwrap();
    let loss = rnnt_loss(&view, &i64s(&targets), &i64s(&tl), &i64s(&ul), &cfg).unwrap();
    assert_eq!(loss.to_scalar::<f32>().unwrap(), want);
    let g = loss.backward().unwrap();
    let g = g.get(&stored).unwrap().transpose(1, 2).unwrap();
    assert_eq!(g.dims(), &[d.batch, d.frames, d.positions(), d.classes]);
    assert_eq!(flat(&g), want_g);
}

#[test]
fn pool_backward_matches_slice_api() {
    let b = batch();
    let dev = Device::Cpu;
    let labels = Tensor::new(&[1u32, 3, 0], &dev).unwrap();
    let (logits, _, tl, ul) = tensors(&b, DType::F32);
    for mode in [PoolMode::One, PoolMode::FullT, PoolMode::FullU] {
        let cfg = LatticePoolConfig {
            neutral: 3,
            mode,
            ..Default::default()
        };
        let loss = lattice_max_pool_loss(&logits, &labels, &tl, &ul, &cfg).unwrap();
        let got = flat(loss.backward().unwrap().get(&logits).unwrap());
        let mut want = vec![0.0f32; got.len()];
        let costs = cpu::lattice_max_pool_loss(
            LatticeBatch::new(&b.logits, DIMS, &[1u32, 3, 0], &b.t_lens, &b.u_lens),
            &cfg,
            Some(&mut want),
        )
        .unwrap();
        let mean = costs.iter().sum::<f64>() / 3.0;
        assert!((loss.to_scalar::<f32>().unwrap() as f64 - mean).abs() < 1e-5 * mean);
        for (g, w) in got.iter().zip(&want) {
            assert!((g - w).abs() <= 1e-7, "{mode:?}: {g} vs {w}");
        }
        // Sparse: only the selected nodes carry gradient.
        let rows = got
            .chunks(DIMS.classes)
            .filter(|r| r.iter().any(|&v| v != 0.0))
            .count();
        assert!(
            rows >= 1 && rows <= 2 * 3 * DIMS.frames.max(DIMS.positions()),
            "{rows} rows"
        );
    }
}

/// The fused calls return the loss and the gradient that `backward()` produces, for every
/// reduction and logit type (the RNN-T gradient bitwise: the same kernels run; pooling too).
#[test]
fn with_grad_equals_backward() {
    let b = batch();
    for dtype in [DType::F32, DType::F64, DType::F16, DType::BF16] {
        for reduction in [Reduction::Mean, Reduction::Sum, Reduction::None] {
            let cfg = RnntLossConfig {
                reduction,
                clamp: Some(0.3),
                ..Default::default()
            };
            let (logits, targets, tl, ul) = tensors(&b, dtype);
            let loss = rnnt_loss(&logits, &targets, &tl, &ul, &cfg).unwrap();
            let grads = loss.sum_all().unwrap().backward().unwrap();
            let (loss2, grad2) = rnnt_loss_with_grad(&logits, &targets, &tl, &ul, &cfg).unwrap();
            assert_eq!(flat(&loss), flat(&loss2), "{dtype:?} {reduction:?}");
            let (g1, g2) = (flat(grads.get(&logits).unwrap()), flat(&grad2));
            // With a reduction candle's incoming gradient is 1/B rounded to the loss's type;
            // the fused call scales by 1/B in f64: two ulp of the type apart at most.
            let ulps = match dtype {
                DType::F64 => 1e-12,
                DType::F32 => 4e-7,
                DType::F16 => 2e-3,
                _ => 1.6e-2,
            };
            for (x, y) in g1.iter().zip(&g2) {
                assert!(
                    (x - y).abs() <= ulps * y.abs().max(1e-3),
                    "{dtype:?} {reduction:?}: {x} vs {y}"
                );
            }
            if reduction == Reduction::None {
                assert_eq!(g1, g2, "{dtype:?}: an incoming gradient of 1 is exact");
            }

            let pcfg = LatticePoolConfig {
                reduction,
                mode: PoolMode::FullT,
                ..Default::default()
            };
            let labels = Tensor::new(&[0u32, 3, 2], &Device::Cpu).unwrap();
            let loss = lattice_max_pool_loss(&logits, &labels, &tl, &ul, &pcfg).unwrap();
            let grads = loss.sum_all().unwrap().backward().unwrap();
            let (loss2, grad2) =
                lattice_max_pool_loss_with_grad(&logits, &labels, &tl, &ul, &pcfg).unwrap();
            assert_eq!(flat(&loss), flat(&loss2), "pool {dtype:?} {reduction:?}");
            if reduction == Reduction::None {
                assert_eq!(flat(grads.get(&logits).unwrap()), flat(&grad2));
            }
        }
    }
}
