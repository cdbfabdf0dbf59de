//! Comparing tensors, and the CUDA device a GPU test runs on.

use candle_core::{DType, Device, Tensor};

/// The largest absolute elementwise difference of two tensors of one shape (any float
/// dtype, any device), in f64; a NaN in either wins.
pub fn max_abs_diff(a: &Tensor, b: &Tensor) -> f64 {
    assert_eq!(a.dims(), b.dims(), "tensors of different shapes");
    let values = |t: &Tensor| {
        t.flatten_all()
            .and_then(|t| t.to_dtype(DType::F64))
            .and_then(|t| t.to_vec1::<f64>())
            .expect("a float tensor")
    };
    max_abs_diff_slices(&values(a), &values(b))
}

/// The largest absolute elementwise difference of two slices of one length; a NaN
/// difference (a value never written, say) wins.
pub fn max_abs_diff_slices(a: &[f64], b: &[f64]) -> f64 {
    assert_eq!(a.len(), b.len(), "slices of different lengths");
    a.iter()
        .zip(b)
        .map(|(x, y)| (x - y).abs())
        .fold(0.0, |m, d| if d.is_nan() || d > m { d } else { m })
}

/// The bits of an f32 tensor's values, for comparisons that must be exact.
pub fn bits(t: &Tensor) -> Vec<u32> {
    t.flatten_all()
        .and_then(|t| t.to_vec1::<f32>())
        .expect("an f32 tensor")
        .iter()
        .map(|v| v.to_bits())
        .collect()
}

/// The first CUDA device; `None` (with the reason printed) without one, unless
/// `ENT_REQUIRE_CUDA=1` (the GPU bundle sets it), which makes a missing device a failure.
pub fn cuda_or_skip() -> Option<Device> {
    match Device::new_cuda(0) {
        Ok(d) => Some(d),
        Err(e) if std::env::var_os("ENT_REQUIRE_CUDA").is_some_and(|v| v == "1") => {
            panic!("ENT_REQUIRE_CUDA=1 but no CUDA device: {e}")
        }
        Err(e) => {
            eprintln!("skipped: no CUDA device ({e})");
            None
        }
    }
}

/// Shorthands on tensors for tests.
pub trait TensorExt {
    /// The sum of the absolute values, as f32.
    fn abs_sum(&self) -> f32;
}

impl TensorExt for Tensor {
    fn abs_sum(&self) -> f32 {
        self.abs()
            .and_then(|a| a.sum_all())
            .and_then(|s| s.to_dtype(DType::F32))
            .and_then(|s| s.to_scalar::<f32>())
            .expect("the sum of a tensor's absolute values")
    }
}

/// Central differences of `f` at `x`, element by element: `(f(x + eps e_i) - f(x - eps e_i))
/// / (2 eps)`.
pub fn central_differences(x: &[f64], eps: f64, mut f: impl FnMut(&[f64]) -> f64) -> Vec<f64> {
    (0..x.len())
        .map(|i| {
            let (mut p, mut m) = (x.to_vec(), x.to_vec());
            p[i] += eps;
            m[i] -= eps;
            (f(&p) - f(&m)) / (2.0 * eps)
        })
        .collect()
}

/// [`central_differences`] at the f64 tensor `x`, in its row-major order.
pub fn central_differences_of(x: &Tensor, eps: f64, mut f: impl FnMut(&Tensor) -> f64) -> Vec<f64> {
    let base = x
        .flatten_all()
        .and_then(|v| v.to_vec1::<f64>())
        .expect("an f64 tensor");
    central_differences(&base, eps, |v| {
        f(&Tensor::from_vec(v.to_vec(), x.shape(), x.device()).expect("same shape"))
    })
}

/// Panics unless every analytic gradient element is within `tol` of its finite difference,
/// naming `what` and the element.
pub fn assert_gradient(analytic: &[f64], finite: &[f64], tol: f64, what: &str) {
    assert_eq!(analytic.len(), finite.len(), "{what}: lengths");
    for (i, (&g, &fd)) in analytic.iter().zip(finite).enumerate() {
        assert!(
            (fd - g).abs() < tol,
            "{what} [{i}]: analytic {g} vs finite difference {fd}"
        );
    }
}
