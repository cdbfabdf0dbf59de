//! Run-time choice of the widest vector instruction set, made once per process.
//!
//! Numeric loops are written as plain lane loops that LLVM vectorises, and compiled three
//! times by [`simd_dispatch!`](crate::simd_dispatch): for AVX-512F, for AVX2 with FMA, and for the
//! baseline. [`level`] picks the widest the CPU has, once; `ENT_NO_SIMD=1` in the environment
//! forces the baseline (to test it on a machine that has more, or to rule vectorisation out
//! when chasing a difference). Every copy performs the same operations in the same order (Rust
//! never contracts a multiply and an add into an FMA on its own), so the results are bitwise
//! identical whichever runs.

use std::sync::OnceLock;

/// The instruction sets the dispatched functions are compiled for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Level {
    /// AVX-512F (x86-64).
    Avx512,
    /// AVX2 and FMA (x86-64).
    Avx2,
    /// Whatever the target's baseline is (SSE2 on x86-64).
    Base,
}

/// The environment switch that forces [`Level::Base`].
pub const NO_SIMD_ENV: &str = "ENT_NO_SIMD";

/// The widest instruction set this CPU has (or [`Level::Base`] under [`NO_SIMD_ENV`]), found on
/// the first call and kept.
pub fn level() -> Level {
    static LEVEL: OnceLock<Level> = OnceLock::new();
    *LEVEL.get_or_init(detect)
}

fn detect() -> Level {
    if std::env::var_os(NO_SIMD_ENV).is_some_and(|v| !v.is_empty() && v != "0") {
        return Level::Base;
    }
    #[cfg(target_arch = "x86_64")]
    {
        if std::arch::is_x86_feature_detected!("avx512f") {
            return Level::Avx512;
        }
        if std::arch::is_x86_feature_detected!("avx2") && std::arch::is_x86_feature_detected!("fma")
        {
            return Level::Avx2;
        }
    }
    Level::Base
}

/// Defines a function that runs `$generic` compiled for the widest instruction set of
/// [`level`]: `$generic` must be `#[inline(always)]`, so that each copy is vectorised for its
/// instruction set.
///
/// ```
/// #[inline(always)]
/// fn sum_generic(x: &[f32]) -> f32 {
///     x.iter().sum()
/// }
/// ent_kernels::simd_dispatch!(
///     /// The sum of `x`.
///     pub fn sum => sum_generic(x: &[f32]) -> f32
/// );
/// assert_eq!(sum(&[1.0, 2.0]), 3.0);
/// ```
///
/// A generic function takes its type parameters in brackets:
/// `pub fn f [F: Float] => f_generic(x: &[F]) -> F`.
#[macro_export]
macro_rules! simd_dispatch {
    ($(#[$m:meta])* $vis:vis fn $name:ident $([$($g:ident : $b:path),*])?
        => $generic:ident ( $($arg:ident : $ty:ty),* ) -> $ret:ty) => {
        $(#[$m])*
        #[inline]
        $vis fn $name $(<$($g: $b),*>)? ($($arg: $ty),*) -> $ret {
            #[cfg(target_arch = "x86_64")]
            {
                #[target_feature(enable = "avx512f")]
                fn avx512 $(<$($g: $b),*>)? ($($arg: $ty),*) -> $ret {
                    $generic($($arg),*)
                }
                #[target_feature(enable = "avx2,fma")]
                fn avx2 $(<$($g: $b),*>)? ($($arg: $ty),*) -> $ret {
                    $generic($($arg),*)
                }
                match $crate::simd::level() {
                    // SAFETY: level() found AVX-512F on this CPU.
                    $crate::simd::Level::Avx512 => return unsafe { avx512($($arg),*) },
                    // SAFETY: level() found AVX2 and FMA on this CPU.
                    $crate::simd::Level::Avx2 => return unsafe { avx2($($arg),*) },
                    $crate::simd::Level::Base => {}
                }
            }
            $generic($($arg),*)
        }
    };
}
