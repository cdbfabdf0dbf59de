//! What counts as an audio sample: the bounds beyond which a value is damage, not sound.
//!
//! Decoded audio lies in `[-1, 1]` for integer formats; float formats may hold values a little
//! beyond full scale (a mix that clips, a gain applied after recording), never [`MAX_SAMPLE`]
//! times it. A larger finite value is what random bytes in a float file look like: read as
//! audio, it overflows the resampler's FFT (`inf - inf`), turns filterbanks and a backbone's
//! normalisation into infinities, and reaches library code that does not expect it. So such
//! samples are treated as NaN and infinity are: replaced by silence and reported as damage by
//! [`crate::AudioStream`], an error from the whole-file decoders ([`crate::load`]).
//!
//! [`crate::resample()`] and [`crate::Fbank`] take samples at any scale (Kaldi's tools use
//! 16-bit integer values), up to [`MAX_INPUT`]; beyond it they return an error instead of
//! overflowing.

use crate::error::{FeatureError, Input};

/// The largest magnitude of a decoded sample at the decoders' scale (full scale is 1): 64,
/// 36 dB above full scale.
pub const MAX_SAMPLE: f32 = 64.0;

/// The largest magnitude [`crate::resample()`] and [`crate::Fbank`] accept: `2^31`, full scale
/// of 32-bit integer PCM, the largest scale at which audio is stored. Far below what overflows
/// their arithmetic in f32 (an FFT of `n` samples sums at most `n * 2^31`; the power spectrum of
/// a 400-sample frame at most about `1e25`).
pub const MAX_INPUT: f32 = 2_147_483_648.0;

/// Whether `x` can be a sample of audio at a scale whose bound is `bound`.
#[inline]
pub fn is_audio(x: f32, bound: f32) -> bool {
    x.abs() <= bound
}

/// Checks samples at the decoders' scale (full scale 1): an error
/// ([`FeatureError::OutOfRange`], [`FeatureError::NonFinite`]) for the first that is NaN,
/// infinite or beyond [`MAX_SAMPLE`], naming its index. For waveforms handed to a model in
/// memory, which were not decoded by this crate.
pub fn check_audio(samples: &[f32]) -> Result<(), FeatureError> {
    check(samples, MAX_SAMPLE, &Input::memory(), 0)
}

/// An error for the first sample of `samples` that is not finite or beyond `bound`, with its
/// index counted from `first_index`.
pub(crate) fn check(
    samples: &[f32],
    bound: f32,
    input: &Input,
    first_index: u64,
) -> Result<(), FeatureError> {
    // `abs() <= bound` is false for NaN, so one comparison finds both kinds.
    match samples.iter().position(|&x| !is_audio(x, bound)) {
        None => Ok(()),
        Some(i) => {
            let (index, value) = ((first_index + i as u64) as usize, samples[i]);
            let input = input.clone();
            Err(if value.is_finite() {
                FeatureError::OutOfRange {
                    input,
                    index,
                    value,
                    bound,
                }
            } else {
                FeatureError::NonFinite {
                    input,
                    index,
                    value,
                }
            })
        }
    }
}
