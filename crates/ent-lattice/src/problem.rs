//! Shapes, index inputs and the validation shared by both losses.

use crate::error::LatticeError;

pub use ent_kernels::LatticeDims;

/// A padded batch of lattices on the host, borrowed: what the slice entry points
/// ([`crate::cpu`]) and the emulated ones take.
///
/// ```
/// use ent_lattice::{cpu, LatticeBatch, LatticeDims, RnntLossConfig};
/// // B = 1, T = 2, U = 1, V = 3: uniform logits, two alignments of probability (1/3)^3.
/// let batch = LatticeBatch {
///     logits: &[0.0f32; 12],
///     dims: LatticeDims { batch: 1, frames: 2, targets: 1, classes: 3 },
///     targets: &[1u32],
///     logit_lens: &[2],
///     target_lens: &[1],
/// };
/// let costs = cpu::rnnt_loss(batch, &RnntLossConfig::default(), None).unwrap();
/// assert!((costs[0] - -(2.0f64 / 27.0).ln()).abs() < 1e-6);
/// ```
#[derive(Clone, Copy, Debug)]
pub struct LatticeBatch<'a, E, I = u32> {
    /// `[B][T][U+1][V]` (RNN-T: raw joint outputs) or `[B][T][U+1][K]` (pooling: raw
    /// emotion-joint outputs), row-major; f32, f64, f16 or bf16.
    pub logits: &'a [E],
    /// The sizes of `logits`.
    pub dims: LatticeDims,
    /// RNN-T: `[B][U]` target labels, entries past `target_lens[b]` ignored; pooling: `[B]`
    /// utterance labels, each below `K`.
    pub targets: &'a [I],
    /// `[B]`: the valid frames of each utterance, `1..=T`.
    pub logit_lens: &'a [I],
    /// `[B]`: the valid targets of each utterance, `0..=U`.
    pub target_lens: &'a [I],
}

impl<'a, E, I: Copy> LatticeBatch<'a, E, I> {
    /// The batch of these slices, in the order of the fields.
    pub const fn new(
        logits: &'a [E],
        dims: LatticeDims,
        targets: &'a [I],
        logit_lens: &'a [I],
        target_lens: &'a [I],
    ) -> Self {
        LatticeBatch {
            logits,
            dims,
            targets,
            logit_lens,
            target_lens,
        }
    }

    /// What the checks of the arguments read: everything but the logits.
    pub(crate) fn indices(&self) -> Indices<'a, I> {
        Indices {
            dims: self.dims,
            targets: self.targets,
            logit_lens: self.logit_lens,
            target_lens: self.target_lens,
        }
    }
}

/// A lattice batch's sizes, targets (or labels) and lengths, without its logits: what the
/// argument checks read, whether the logits are a slice or a tensor on a device.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Indices<'a, I> {
    pub(crate) dims: LatticeDims,
    pub(crate) targets: &'a [I],
    pub(crate) logit_lens: &'a [I],
    pub(crate) target_lens: &'a [I],
}

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
