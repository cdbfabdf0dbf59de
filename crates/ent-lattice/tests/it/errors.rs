//! Bad input gives an error naming the argument and the value, never a panic.

use candle_core::{DType, Device, Tensor};
use ent_lattice::{
    LatticeBatch, LatticeDims, LatticePoolConfig, RnntLossConfig, cpu, lattice_max_pool_loss,
    rnnt_loss,
};

struct Args {
    logits: Tensor,
    targets: Tensor,
    logit_lens: Tensor,
    target_lens: Tensor,
}

/// B = 2, T = 4, U = 3, V = 5.
fn good() -> Args {
    let dev = Device::Cpu;
    Args {
        logits: Tensor::zeros((2, 4, 4, 5), DType::F32, &dev).unwrap(),
        targets: Tensor::new(&[[1u32, 2, 3], [4, 4, 0]], &dev).unwrap(),
        logit_lens: Tensor::new(&[4u32, 3], &dev).unwrap(),
        target_lens: Tensor::new(&[3u32, 2], &dev).unwrap(),
    }
}

fn err(a: &Args, cfg: &RnntLossConfig) -> String {
    match rnnt_loss(&a.logits, &a.targets, &a.logit_lens, &a.target_lens, cfg) {
        Ok(_) => panic!("expected an error"),
        Err(e) => e.to_string(),
    }
}

fn assert_err(a: Args, cfg: &RnntLossConfig, want: &str) {
    let e = err(&a, cfg);
    assert!(e.contains(want), "error {e:?} does not contain {want:?}");
}

fn t<const N: usize>(v: [i64; N]) -> Tensor {
    Tensor::new(&v, &Device::Cpu).unwrap()
}

#[test]
fn the_good_arguments_work() {
    let a = good();
    rnnt_loss(
        &a.logits,
        &a.targets,
        &a.logit_lens,
        &a.target_lens,
        &RnntLossConfig::default(),
    )
    .unwrap();
}

#[test]
fn shapes() {
    let d = RnntLossConfig::default();
    let a = Args {
        logits: Tensor::zeros((2, 4, 5), DType::F32, &Device::Cpu).unwrap(),
        ..good()
    };
    assert_err(a, &d, "logits has shape [2, 4, 5], expected [B, T, U+1, V]");
    let a = Args {
        targets: Tensor::new(&[[1u32, 2], [4, 4]], &Device::Cpu).unwrap(),
        ..good()
    };
    assert_err(a, &d, "targets has shape [2, 2], expected [2, 3]");
    let a = Args {
        logit_lens: t([4, 3, 2]),
        ..good()
    };
    assert_err(a, &d, "logit_lens has shape [3], expected [2]");
    let a = Args {
        target_lens: t([1]),
        ..good()
    };
    assert_err(a, &d, "target_lens has shape [1], expected [2]");
    let a = Args {
        logits: Tensor::zeros((0, 4, 4, 5), DType::F32, &Device::Cpu).unwrap(),
        ..good()
    };
    assert!(err(&a, &d).contains("batch size 0"), "{}", err(&a, &d));
}

#[test]
fn lengths() {
    let d = RnntLossConfig::default();
    assert_err(
        Args {
            logit_lens: t([4, 5]),
            ..good()
        },
        &d,
        "logit_lens[1] = 5 exceeds the time dimension 4",
    );
    assert_err(
        Args {
            logit_lens: t([0, 3]),
            ..good()
        },
        &d,
        "logit_lens[0] = 0: every utterance needs at least one frame",
    );
    assert_err(
        Args {
            logit_lens: t([-1, 3]),
            ..good()
        },
        &d,
        "logit_lens[0] = -1 is negative",
    );
    assert_err(
        Args {
            target_lens: t([4, 2]),
            ..good()
        },
        &d,
        "target_lens[0] = 4 exceeds the target",
    );
}

#[test]
fn labels() {
    let d = RnntLossConfig::default();
    let dev = Device::Cpu;
    let a = Args {
        targets: Tensor::new(&[[1u32, 7, 3], [4, 4, 0]], &dev).unwrap(),
        ..good()
    };
    assert_err(
        a,
        &d,
        "targets[0, 1] = 7 is not below the vocabulary size V = 5",
    );
    let a = Args {
        targets: Tensor::new(&[[1u32, 2, 3], [4, 0, 0]], &dev).unwrap(),
        ..good()
    };
    assert_err(a, &d, "targets[1, 1] = 0 is the blank index");
    let a = Args {
        targets: Tensor::new(&[[1i64, 2, -3], [4, 1, 0]], &dev).unwrap(),
        ..good()
    };
    assert_err(a, &d, "targets[0, 2] = -3 is negative");
    // Padding past target_lens may hold anything, blank included.
    let a = Args {
        targets: Tensor::new(&[[1i64, 2, 3], [4, 4, -9]], &dev).unwrap(),
        ..good()
    };
    rnnt_loss(&a.logits, &a.targets, &a.logit_lens, &a.target_lens, &d).unwrap();
}

#[test]
fn dtypes() {
    let d = RnntLossConfig::default();
    let dev = Device::Cpu;
    let a = Args {
        logits: Tensor::zeros((2, 4, 4, 5), DType::U32, &dev).unwrap(),
        ..good()
    };
    assert_err(
        a,
        &d,
        "logits has dtype U32, expected one of f32, f16, bf16, f64",
    );
    let a = Args {
        logit_lens: Tensor::new(&[4f32, 3.0], &dev).unwrap(),
        ..good()
    };
    assert_err(
        a,
        &d,
        "logit_lens has dtype F32, expected one of u8, u32, i64",
    );
}

#[test]
fn config() {
    assert_err(
        good(),
        &RnntLossConfig {
            blank: 5,
            ..Default::default()
        },
        "blank = 5 is not below the number of classes 5",
    );
    assert_err(
        good(),
        &RnntLossConfig {
            clamp: Some(-1.0),
            ..Default::default()
        },
        "clamp = -1 is invalid",
    );
    assert_err(
        good(),
        &RnntLossConfig {
            fastemit_lambda: f32::NAN,
            ..Default::default()
        },
        "fastemit_lambda = NaN is invalid",
    );
}

#[test]
fn pooling() {
    let a = good();
    let dev = Device::Cpu;
    let pool = |labels: &Tensor, cfg: &LatticePoolConfig| {
        lattice_max_pool_loss(&a.logits, labels, &a.logit_lens, &a.target_lens, cfg)
            .unwrap_err()
            .to_string()
    };
    let ok = Tensor::new(&[1u32, 3], &dev).unwrap();
    let e = pool(
        &Tensor::new(&[1u32, 5], &dev).unwrap(),
        &LatticePoolConfig::default(),
    );
    assert!(
        e.contains("labels[1] = 5 is not below the number of classes 5"),
        "{e}"
    );
    let e = pool(
        &ok,
        &LatticePoolConfig {
            neutral: 9,
            ..Default::default()
        },
    );
    assert!(
        e.contains("neutral = 9 is not below the number of classes 5"),
        "{e}"
    );
    let e = pool(
        &ok,
        &LatticePoolConfig {
            prob_clamp: 0.0,
            ..Default::default()
        },
    );
    assert!(e.contains("prob_clamp = 0 is invalid"), "{e}");
    let e = pool(
        &Tensor::new(&[1u32], &dev).unwrap(),
        &LatticePoolConfig::default(),
    );
    assert!(e.contains("labels has shape [1], expected [2]"), "{e}");
}

#[test]
fn slice_buffers() {
    let dims = LatticeDims::new(1, 2, 1, 3);
    let e = cpu::rnnt_loss(
        LatticeBatch::new(&[0.0f32; 11], dims, &[1u32], &[2u32], &[1u32]),
        &RnntLossConfig::default(),
        None,
    )
    .unwrap_err();
    assert!(
        e.to_string()
            .contains("logits has shape [11], expected [12]"),
        "{e}"
    );
    let mut g = vec![0.0f32; 13];
    let e = cpu::rnnt_loss(
        LatticeBatch::new(&[0.0f32; 12], dims, &[1u32], &[2u32], &[1u32]),
        &RnntLossConfig::default(),
        Some(&mut g),
    )
    .unwrap_err();
    assert!(
        e.to_string()
            .contains("gradient buffer has shape [13], expected [12]"),
        "{e}"
    );
    let e = cpu::rnnt_loss(
        LatticeBatch::new(&[0.0f32; 12], dims, &[1u32, 2], &[2u32], &[1u32]),
        &RnntLossConfig::default(),
        None,
    )
    .unwrap_err();
    assert!(
        e.to_string()
            .contains("targets has shape [2], expected [1]"),
        "{e}"
    );
}
