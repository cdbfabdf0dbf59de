//! Element types: what the logits may be stored as, and what the loss accumulates in.

use half::{bf16, f16};

use ent_kernels::Float;
use ent_kernels::rows as rowops;

use ent_kernels::KernelDType;
use ent_kernels::plan::Plain;

/// Per-row results of the normaliser pass: `log sum_k exp(z_k) = max + ln(sum)`, where
/// `sum = sum_k exp(z_k - max)`. Public in this private module only because [`Logit`]
/// returns it: outside the crate it cannot be named.
#[doc(hidden)]
#[derive(Clone, Copy, Debug)]
pub struct RowNorm {
    pub max: f64,
    pub sum: f64,
}

impl RowNorm {
    #[inline]
    pub fn log_norm(self) -> f64 {
        self.max + self.sum.ln()
    }
}

/// A logit element type: f32, f64, f16 or bf16. Half-precision logits are computed in f32;
/// f64 logits are computed in f64 throughout (useful for gradient checks). Sealed: `Plain` is,
/// and the orphan rule keeps other crates from implementing it for those types.
pub trait Logit: Plain {
    /// The type gradients are produced in: f32, or f64 for f64 logits.
    type Acc: Float;

    /// The element type as the CUDA kernels name it.
    #[doc(hidden)]
    const KERNEL: KernelDType;

    /// The value as f64.
    fn to_f64(self) -> f64;

    /// The normaliser of one row. When `out` is given (the row's slot of the gradient
    /// buffer) it receives `exp(z_k - max)`; `scratch` is a reusable conversion buffer.
    #[doc(hidden)]
    fn normalise(row: &[Self], out: Option<&mut [Self::Acc]>, scratch: &mut Vec<f32>) -> RowNorm;
}

#[inline]
fn normalise_f32_in_place(row: &mut [f32]) -> RowNorm {
    let max = rowops::max(row);
    let sum = rowops::exp_inplace_sum(row, max);
    RowNorm {
        max: max as f64,
        sum: sum as f64,
    }
}

impl Logit for f32 {
    type Acc = f32;
    const KERNEL: KernelDType = KernelDType::F32;
    #[inline]
    fn to_f64(self) -> f64 {
        self as f64
    }
    #[inline]
    fn normalise(row: &[f32], out: Option<&mut [f32]>, _scratch: &mut Vec<f32>) -> RowNorm {
        let max = rowops::max(row);
        let sum = match out {
            Some(out) => rowops::exp_store_sum(row, max, out),
            None => rowops::exp_sum(row, max),
        };
        RowNorm {
            max: max as f64,
            sum: sum as f64,
        }
    }
}

macro_rules! half_logit {
    ($t:ty, $k:expr) => {
        impl Logit for $t {
            type Acc = f32;
            const KERNEL: KernelDType = $k;
            #[inline]
            fn to_f64(self) -> f64 {
                self.to_f64()
            }
            #[inline]
            fn normalise(row: &[$t], out: Option<&mut [f32]>, scratch: &mut Vec<f32>) -> RowNorm {
                use half::slice::HalfFloatSliceExt;
                let dst = match out {
                    Some(out) => out,
                    None => {
                        scratch.resize(row.len(), 0.0);
                        &mut scratch[..]
                    }
                };
                row.convert_to_f32_slice(dst);
                normalise_f32_in_place(dst)
            }
        }
    };
}
half_logit!(f16, KernelDType::F16);
half_logit!(bf16, KernelDType::BF16);

impl Logit for f64 {
    type Acc = f64;
    const KERNEL: KernelDType = KernelDType::F64;
    #[inline]
    fn to_f64(self) -> f64 {
        self
    }
    fn normalise(row: &[f64], out: Option<&mut [f64]>, _scratch: &mut Vec<f32>) -> RowNorm {
        let max = row
            .iter()
            .fold(f64::NEG_INFINITY, |m, &v| if v > m { v } else { m });
        let sum = match out {
            Some(out) => out.iter_mut().zip(row).fold(0.0, |s, (o, &v)| {
                *o = (v - max).exp();
                s + *o
            }),
            None => row.iter().map(|&v| (v - max).exp()).sum(),
        };
        RowNorm { max, sum }
    }
}
