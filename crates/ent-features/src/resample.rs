//! Sample-rate conversion.
//!
//! # Quality settings
//!
//! [`resample`] uses rubato's synchronous FFT resampler (`rubato::Fft`), the band-limited
//! choice for a fixed ratio between two integer rates:
//!
//! - the signal is cut into blocks of `k * from / gcd(from, to)` input samples, with `k` the
//!   smallest multiple giving at least [`BLOCK`] samples; each block is transformed, its spectrum
//!   truncated or zero-extended to the output rate, multiplied by the anti-aliasing filter and
//!   transformed back (overlap-add);
//! - the anti-aliasing filter is a windowed sinc (`WindowFunction::BlackmanHarris2`) whose cutoff
//!   rubato derives from the block length; when downsampling it sits below the output Nyquist
//!   frequency. For 44.1 kHz or 48 kHz to 16 kHz the tests measure: a tone at 0.8 x the output
//!   Nyquist frequency passes within 0.01 dB, a tone at 1.2 x the output Nyquist frequency is
//!   attenuated by more than 90 dB (`tests/it/resample.rs`);
//! - the resampler's start-up delay is removed, and the output has `ceil(n * to / from)` samples;
//!   output sample `k` lies at time `k / to` to within one input sample (the blocks are aligned on
//!   input samples; measured: +1 input sample from 48 kHz, -1/2 from 44.1 kHz and 22.05 kHz, 0 from
//!   8 kHz and 32 kHz, all to 16 kHz), far below the 10 ms frame shift of the features.
//!
//! All arithmetic is f32.

use rubato::audioadapter_buffers::direct::InterleavedSlice;
use rubato::{Fft, FixedSync, Resampler, WindowFunction};

use crate::error::FeatureError;

/// Sample rates [`resample`] accepts, in Hz.
pub const RATES: std::ops::RangeInclusive<u32> = 1000..=768_000;

/// Minimum FFT block length in input samples (longer blocks put the cutoff nearer Nyquist).
pub const BLOCK: usize = 2048;

/// Resamples mono `samples` from `from` Hz to `to` Hz (see the module documentation for the
/// filter). Both rates must lie in [`RATES`]; equal rates return a copy.
pub fn resample(samples: &[f32], from: u32, to: u32) -> Result<Vec<f32>, FeatureError> {
    // Rates outside this range are header damage, not audio; they would also size the FFT
    // blocks (up to `from / gcd` samples) or the output beyond reason.
    for rate in [from, to] {
        if !RATES.contains(&rate) {
            return Err(FeatureError::invalid(
                "sample rate",
                format!(
                    "cannot resample from {from} Hz to {to} Hz: rates must lie in {} to {} Hz",
                    RATES.start(),
                    RATES.end()
                ),
            ));
        }
    }
    if from == to || samples.is_empty() {
        return Ok(samples.to_vec());
    }
    let err = |e: &dyn std::fmt::Display| {
        FeatureError::invalid(
            "resampling",
            format!("from {from} Hz to {to} Hz failed: {e}"),
        )
    };
    let mut resampler = Fft::<f32>::new_custom(
        from as usize,
        to as usize,
        BLOCK,
        1,
        1,
        WindowFunction::BlackmanHarris2,
        FixedSync::Input,
    )
    .map_err(|e| err(&e))?;
    let input = InterleavedSlice::new(samples, 1, samples.len()).map_err(|e| err(&e))?;
    let out = resampler
        .process_all(&input, samples.len(), None)
        .map_err(|e| err(&e))?;
    // rubato rounds `ratio * n` up in f64, one sample too many when the exact length is an
    // integer that f64 overshoots (147 samples from 44.1 kHz to 48 kHz: 160.000..01 -> 161).
    let mut data = out.take_data();
    let want = resampled_len(samples.len(), from, to);
    if data.len() < want {
        return Err(err(&format!("{} samples out, {want} expected", data.len())));
    }
    data.truncate(want);
    Ok(data)
}

/// Number of samples [`resample`] returns for `n` input samples.
pub fn resampled_len(n: usize, from: u32, to: u32) -> usize {
    if from == to {
        n
    } else {
        (n as u128 * to as u128).div_ceil(from as u128) as usize
    }
}
