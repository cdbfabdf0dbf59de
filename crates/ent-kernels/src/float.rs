//! The one floating-point trait of the CPU ops: f32 and f64.

use crate::math;

mod sealed {
    pub trait Sealed {}
    impl Sealed for f32 {}
    impl Sealed for f64 {}
}

/// A type the CPU ops compute in: f32 (the fast path: `exp`, `tanh` and the sigmoid through
/// the vectorisable [`math`] functions) or f64 (the reference, through the C library), with
/// `num-traits`' `Float` for everything else and candle's `WithDType` for conversions
/// (`from_f64`, `to_f64`) and storages.
pub trait Float:
    num_traits::Float
    + num_traits::FloatConst
    + std::ops::AddAssign
    + std::ops::SubAssign
    + std::ops::MulAssign
    + std::fmt::Debug
    + Default
    + Send
    + Sync
    + 'static
    + candle_core::WithDType
    + sealed::Sealed
{
    const ZERO: Self;
    const ONE: Self;
    const NEG_INFINITY: Self;

    /// `exp`: f32 through [`math::exp_f32`] (2 ulp, vectorisable), f64 exact.
    fn exp_fast(self) -> Self;

    /// `tanh`: f32 through [`math::tanh_f32`] (within 2e-7), f64 exact.
    fn tanh_fast(self) -> Self;

    /// `1 / (1 + exp(-x))`, computed through `exp(-|x|)` so that it never overflows.
    #[inline(always)]
    fn sigmoid(self) -> Self {
        let e = (-self.abs()).exp_fast();
        let s = Self::ONE / (Self::ONE + e);
        if self < Self::ZERO { e * s } else { s }
    }

    /// `row[k] *= s` for every `k` (f32: vectorised).
    fn scale_row(row: &mut [Self], s: Self) {
        for v in row {
            *v *= s;
        }
    }
}

impl Float for f32 {
    const ZERO: Self = 0.0;
    const ONE: Self = 1.0;
    const NEG_INFINITY: Self = f32::NEG_INFINITY;

    #[inline(always)]
    fn exp_fast(self) -> Self {
        math::exp_f32(self)
    }

    #[inline(always)]
    fn tanh_fast(self) -> Self {
        math::tanh_f32(self)
    }

    #[inline]
    fn scale_row(row: &mut [f32], s: f32) {
        crate::rows::scale(row, s);
    }
}

impl Float for f64 {
    const ZERO: Self = 0.0;
    const ONE: Self = 1.0;
    const NEG_INFINITY: Self = f64::NEG_INFINITY;

    #[inline(always)]
    fn exp_fast(self) -> Self {
        self.exp()
    }

    #[inline(always)]
    fn tanh_fast(self) -> Self {
        self.tanh()
    }
}
