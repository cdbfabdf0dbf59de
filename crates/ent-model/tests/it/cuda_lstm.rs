//! The LSTM recurrence on a GPU (`kernels/lstm.cu` through ent-lattice's CUDA executor) against
//! the CPU op: hidden states and the gradients of the input projection and of `W_hh`, at the
//! encoder's and the predictor's widths, both directions, padded batches, f32 and f64. Without
//! a GPU each test prints why it is skipped; `ENT_REQUIRE_CUDA=1` turns the skip into a failure
//! (the GPU bundle's `run.sh` sets it).

use candle_core::{DType, Device, Tensor, Var};
use ent_model::lstm::lstm_recurrence;

use crate::max_diff;

/// `(hidden, dL/dgx, dL/dW_hh)` of `L = sum(hidden * r)` on `dev`.
fn run(
    gx: &Tensor,
    w: &Tensor,
    r: &Tensor,
    lens: &[usize],
    reverse: bool,
    dev: &Device,
) -> [Tensor; 3] {
    let gx = Var::from_tensor(&gx.to_device(dev).unwrap()).unwrap();
    let w = Var::from_tensor(&w.to_device(dev).unwrap()).unwrap();
    let out = lstm_recurrence(gx.as_tensor(), w.as_tensor(), lens, reverse).unwrap();
    let g = (&out * r.to_device(dev).unwrap())
        .unwrap()
        .sum_all()
        .unwrap()
        .backward()
        .unwrap();
    let cpu = |t: &Tensor| t.to_device(&Device::Cpu).unwrap();
    [
        cpu(&out),
        cpu(g.get(gx.as_tensor()).unwrap()),
        cpu(g.get(w.as_tensor()).unwrap()),
    ]
}

#[test]
fn cuda_lstm_matches_the_cpu_op() {
    let Some(gpu) = ent_testkit::cuda_or_skip() else {
        return;
    };
    let cpu = Device::Cpu;
    // (B, T, H, lens): the encoder's width with a padded batch, the predictor's width.
    let cases: [(usize, usize, usize, Vec<usize>); 2] = [
        (8, 120, 384, vec![120, 97, 64, 120, 3, 1, 88, 119]),
        (4, 61, 640, vec![61, 40, 1, 17]),
    ];
    for (b, t, h, lens) in cases {
        for reverse in [false, true] {
            for (dtype, tol) in [(DType::F64, 1e-11), (DType::F32, 2e-4)] {
                let gx = Tensor::randn(0f64, 1.0, (b, t, 4 * h), &cpu)
                    .unwrap()
                    .to_dtype(dtype)
                    .unwrap();
                let bound = 1.0 / (h as f64).sqrt();
                let w = Tensor::rand(-bound, bound, (4 * h, h), &cpu)
                    .unwrap()
                    .to_dtype(dtype)
                    .unwrap();
                let r = Tensor::randn(0f64, 1.0, (b, t, h), &cpu)
                    .unwrap()
                    .to_dtype(dtype)
                    .unwrap();
                let want = run(&gx, &w, &r, &lens, reverse, &cpu);
                let got = run(&gx, &w, &r, &lens, reverse, &gpu);
                for (name, g, c) in ["hidden", "dgx", "dW_hh"]
                    .iter()
                    .zip(&got)
                    .zip(&want)
                    .map(|((n, g), c)| (n, g, c))
                {
                    let scale = c
                        .abs()
                        .unwrap()
                        .max_all()
                        .unwrap()
                        .to_dtype(DType::F64)
                        .unwrap()
                        .to_scalar::<f64>()
                        .unwrap()
                        .max(1.0);
                    let d = max_diff(g, c) / scale;
                    assert!(
                        d < tol,
                        "B {b} T {t} H {h} reverse {reverse} {dtype:?}: {name} differs by {d:e} (relative)"
                    );
                }
            }
        }
    }
}
