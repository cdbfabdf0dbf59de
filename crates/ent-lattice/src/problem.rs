//! Shapes, index inputs and the validation shared by both losses.

use crate::error::LatticeError;

pub use ent_kernels::LatticeDims;

mod sealed {
    pub trait Sealed {}
    impl Sealed for u8 {}
    impl Sealed for u32 {}
    impl Sealed for i32 {}
    impl Sealed for i64 {}
    impl Sealed for usize {}
}

/// An integer type accepted for targets, labels and lengths.
pub trait Index: Copy + Send + Sync + sealed::Sealed {
    /// The value as i64 (saturating for `usize` beyond `i64::MAX`).
    fn to_i64(self) -> i64;
}

macro_rules! index {
    ($($t:ty),*) => {$(
        impl Index for $t {
            #[inline]
            fn to_i64(self) -> i64 {
                i64::try_from(self).unwrap_or(i64::MAX)
            }
        }
    )*};
}
index!(u8, u32, i32, i64, usize);

/// Validated per-utterance lengths.
#[derive(Clone, Debug)]
pub(crate) struct Lengths {
    /// `T_b`, in `1..=T`.
    pub frames: Vec<usize>,
    /// `U_b`, in `0..=U`.
    pub targets: Vec<usize>,
}

pub(crate) fn check_len(
    arg: &'static str,
    len: usize,
    expected: usize,
) -> Result<(), LatticeError> {
    if len != expected {
        return Err(LatticeError::Shape {
            arg,
            got: vec![len],
            expected: format!("[{expected}]"),
        });
    }
    Ok(())
}

/// One length vector: each value non-negative (positive when `nonzero`) and at most `max`, the
/// size of dimension `dim`.
fn checked_lens<I: Index>(
    arg: &'static str,
    values: &[I],
    nonzero: bool,
    dim: &'static str,
    max: usize,
) -> Result<Vec<usize>, LatticeError> {
    values
        .iter()
        .enumerate()
        .map(|(index, &v)| {
            let value = v.to_i64();
            if value < 0 {
                Err(LatticeError::Negative {
                    arg,
                    index: index.to_string(),
                    value,
                })
            } else if value == 0 && nonzero {
                Err(LatticeError::ZeroLength { arg, index })
            } else if value as u64 > max as u64 {
                Err(LatticeError::LengthTooLarge {
                    arg,
                    index,
                    value,
                    dim,
                    max,
                })
            } else {
                Ok(value as usize)
            }
        })
        .collect()
}

/// Checks both length vectors against the dimensions.
pub(crate) fn lengths<I: Index>(
    dims: &LatticeDims,
    logit_lens: &[I],
    target_lens: &[I],
) -> Result<Lengths, LatticeError> {
    if dims.batch == 0 {
        return Err(LatticeError::EmptyBatch { arg: "logits" });
    }
    check_len("logit_lens", logit_lens.len(), dims.batch)?;
    check_len("target_lens", target_lens.len(), dims.batch)?;
    let frames = checked_lens("logit_lens", logit_lens, true, "time", dims.frames)?;
    let targets = checked_lens(
        "target_lens",
        target_lens,
        false,
        "target (U = predictor positions - 1)",
        dims.targets,
    )?;
    Ok(Lengths { frames, targets })
}
