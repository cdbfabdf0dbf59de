//! The LSTM recurrence kernels (`kernels/lstm.cu`) through the emulated executor, against a
//! reference written here from the equations, per utterance and in f64 (no shared code with the
//! kernels or with ent-model's CPU op), and against central differences of that reference.
//! `cargo xtask test-kernels` runs these with the other emulated tests, and under
//! ThreadSanitizer.

use ent_kernels::emulated;
use ent_kernels::plan::{LSTM_MAX_BLOCK, LstmDims};
use ent_testkit::Rng;
use proptest::prelude::*;

fn sigmoid(x: f64) -> f64 {
    1.0 / (1.0 + (-x).exp())
}

/// One problem: input projection `[B][T][4H]`, weight `[4H][H]`, lengths, direction.
#[derive(Clone, Debug)]
struct Case {
    dims: LstmDims,
    gx: Vec<f64>,
    w: Vec<f64>,
    lens: Vec<usize>,
    reverse: bool,
    /// The incoming gradient of the hidden states `[B][T][H]`.
    dh: Vec<f64>,
}

impl Case {
    fn draw(b: usize, t: usize, h: usize, reverse: bool, seed: u64) -> Case {
        let mut rng = Rng::new(seed);
        let mut uni = |scale: f64, n: usize| -> Vec<f64> {
            (0..n).map(|_| rng.uniform(-scale, scale)).collect()
        };
        let gx = uni(1.5, b * t * 4 * h);
        // Recurrent weights scaled as PyTorch initialises them (±1/sqrt(H)), times 2 so the
        // recurrence matters.
        let w = uni(2.0 / (h as f64).sqrt(), 4 * h * h);
        let dh = uni(1.0, b * t * h);
        let mut lens: Vec<usize> = (0..b).map(|_| 1 + rng.below(t)).collect();
        lens[0] = t;
        Case {
            dims: LstmDims {
                batch: b,
                frames: t,
                hidden: h,
            },
            gx,
            w,
            lens,
            reverse,
            dh,
        }
    }

    fn frame(&self, b: usize, s: usize) -> usize {
        if self.reverse {
            self.lens[b] - 1 - s
        } else {
            s
        }
    }

    /// Hidden states `[B][T][H]` (zero at padded frames) and the cells, from the equations.
    fn reference(&self, gx: &[f64], w: &[f64]) -> (Vec<f64>, Vec<f64>) {
        let LstmDims {
            batch,
            frames,
            hidden: h,
        } = self.dims;
        let mut out = vec![0.0; batch * frames * h];
        let mut cells = vec![0.0; batch * frames * h];
        for b in 0..batch {
            let (mut hp, mut cp) = (vec![0.0; h], vec![0.0; h]);
            for s in 0..self.lens[b] {
                let t = self.frame(b, s);
                let a: Vec<f64> = (0..4 * h)
                    .map(|r| {
                        gx[(b * frames + t) * 4 * h + r]
                            + (0..h).map(|k| w[r * h + k] * hp[k]).sum::<f64>()
                    })
                    .collect();
                for j in 0..h {
                    let (i, f) = (sigmoid(a[j]), sigmoid(a[h + j]));
                    let (g, o) = (a[2 * h + j].tanh(), sigmoid(a[3 * h + j]));
                    cp[j] = f * cp[j] + i * g;
                    hp[j] = o * cp[j].tanh();
                }
                out[(b * frames + t) * h..][..h].copy_from_slice(&hp);
                cells[(b * frames + t) * h..][..h].copy_from_slice(&cp);
            }
        }
        (out, cells)
    }

    /// `L = sum dh * hidden`, whose gradient with respect to `gx` the backward kernel computes.
    fn objective(&self, gx: &[f64]) -> f64 {
        let (out, _) = self.reference(gx, &self.w);
        out.iter().zip(&self.dh).map(|(a, b)| a * b).sum()
    }

    fn is_valid(&self, i: usize, width: usize) -> bool {
        let bt = i / width;
        bt % self.dims.frames < self.lens[bt / self.dims.frames]
    }

    fn run<F: ent_kernels::Float + ent_kernels::plan::Plain>(
        &self,
        cast: impl Fn(f64) -> F,
        max_block: u32,
    ) -> (emulated::LstmRun<F>, Vec<F>) {
        let c = |v: &[f64]| v.iter().map(|&x| cast(x)).collect::<Vec<F>>();
        let w = c(&self.w);
        let run = emulated::lstm_forward(
            &c(&self.gx),
            &w,
            &self.lens,
            self.dims,
            self.reverse,
            max_block,
        )
        .unwrap();
        let dgx = emulated::lstm_backward(
            &c(&self.dh),
            &w,
            &run.gates,
            &run.cells,
            &self.lens,
            self.dims,
            self.reverse,
            max_block,
        )
        .unwrap();
        (run, dgx)
    }
}

/// f64 kernels against the reference's hidden states and cells, and against central
/// differences of `L = sum dh * h` for the input gradient; padded frames zero in both outputs.
fn check_f64(case: &Case, max_block: u32) -> Result<(), TestCaseError> {
    let (run, dgx) = case.run(|x| x, max_block);
    let (want, cells) = case.reference(&case.gx, &case.w);
    let h = case.dims.hidden;
    let d = ent_testkit::max_abs_diff_slices(&run.hidden, &want);
    prop_assert!(d < 1e-12, "hidden: {}", d);
    for (i, (&c, &r)) in run.cells.iter().zip(&cells).enumerate() {
        if case.is_valid(i, h) {
            prop_assert!((c - r).abs() < 1e-12, "cell {i}: {c} vs {r}");
        }
    }
    let eps = 1e-6;
    // Every padded cell; central differences at every valid cell of small cases and at 40
    // spread over larger ones (each costs two reference runs).
    let valid: Vec<usize> = (0..dgx.len())
        .filter(|&i| case.is_valid(i, 4 * h))
        .collect();
    for (i, &d) in dgx.iter().enumerate() {
        if !case.is_valid(i, 4 * h) {
            prop_assert_eq!(d, 0.0, "padded input gradient {}", i);
        }
    }
    let stride = valid.len().div_ceil(40).max(1);
    for &i in valid.iter().step_by(stride) {
        let d = dgx[i];
        let mut x = case.gx.clone();
        x[i] += eps;
        let up = case.objective(&x);
        x[i] -= 2.0 * eps;
        let fd = (up - case.objective(&x)) / (2.0 * eps);
        // Central differences of a smooth function of unit-scale values: O(eps^2) truncation
        // and ~1e-16 / eps rounding, both far below 1e-7.
        prop_assert!(
            (d - fd).abs() < 1e-7,
            "dgx[{i}] = {d}, finite differences {fd}"
        );
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(cases(64)))]

    /// Random batches: 1-3 utterances of 1-6 frames, 1-40 hidden units (a partial warp, several
    /// warps, more units than threads when the block is capped at 32), both directions.
    #[test]
    fn lstm_f64_matches_the_equations_and_finite_differences(
        b in 1usize..4,
        t in 1usize..7,
        h in 1usize..41,
        reverse in any::<bool>(),
        small_block in any::<bool>(),
        seed in any::<u64>(),
    ) {
        let case = Case::draw(b, t, h, reverse, seed);
        check_f64(&case, if small_block { 32 } else { LSTM_MAX_BLOCK })?;
    }
}

fn cases(default: u32) -> u32 {
    std::env::var("ENT_EMU_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// ENT's predictor width (640 units: a block of 640 threads, 20 warps, 2560 rows of W_hh per
/// step) on two short utterances. (Several units per thread, the blocks capped below H, are
/// covered by the random cases with 32-thread blocks.)
#[test]
fn lstm_f64_at_the_predictors_width() {
    let case = Case::draw(2, 2, 640, true, 11);
    let (run, dgx) = case.run(|x| x, LSTM_MAX_BLOCK);
    let (want, _) = case.reference(&case.gx, &case.w);
    let d = ent_testkit::max_abs_diff_slices(&run.hidden, &want);
    assert!(d < 1e-12, "{d}");
    assert!(dgx.iter().all(|g| g.is_finite()));
}

/// f32 kernels against the f64 reference: hidden states and input gradient within f32
/// rounding of sums of H products.
#[test]
fn lstm_f32_is_within_rounding_of_f64() {
    for reverse in [false, true] {
        let case = Case::draw(3, 7, 48, reverse, 5);
        let (run32, dgx32) = case.run(|x| x as f32, LSTM_MAX_BLOCK);
        let (run64, dgx64) = case.run(|x| x, LSTM_MAX_BLOCK);
        let wide = |v: &[f32]| v.iter().map(|&x| x as f64).collect::<Vec<_>>();
        let dh = ent_testkit::max_abs_diff_slices(&wide(&run32.hidden), &run64.hidden);
        let dg = ent_testkit::max_abs_diff_slices(&wide(&dgx32), &dgx64);
        assert!(dh < 2e-6 && dg < 2e-5, "hidden {dh}, input gradient {dg}");
        assert!(
            run64.hidden.iter().any(|&x| x.abs() > 0.1),
            "a trivial case"
        );
    }
}

/// Bad arguments are errors naming them, not launches.
#[test]
fn lstm_bad_arguments_are_refused() {
    let case = Case::draw(2, 3, 4, false, 1);
    let e = emulated::lstm_forward(&case.gx, &case.w, &[3, 4], case.dims, false, 1024)
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("lens[1] = 4 exceeds the time dimension 3"),
        "{e}"
    );
    let e = emulated::lstm_forward(&case.gx[1..], &case.w, &case.lens, case.dims, false, 1024)
        .unwrap_err()
        .to_string();
    assert!(e.contains("gx has shape [95]"), "{e}");
    let e = emulated::lstm_forward(&case.gx, &case.w, &case.lens, case.dims, false, 48)
        .unwrap_err()
        .to_string();
    assert!(e.contains("lstm block of 48 threads"), "{e}");
    let empty = LstmDims {
        batch: 0,
        ..case.dims
    };
    let e = emulated::lstm_forward::<f64>(&[], &case.w, &[], empty, false, 1024)
        .unwrap_err()
        .to_string();
    assert!(e.contains("lstm input has batch size 0"), "{e}");
    let big = LstmDims {
        hidden: 1025,
        ..case.dims
    };
    let e = emulated::lstm_forward::<f64>(&[], &[], &case.lens, big, false, 1024)
        .unwrap_err()
        .to_string();
    assert!(e.contains("lstm_backward: H = 1025"), "{e}");
}
