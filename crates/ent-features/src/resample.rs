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

use crate::error::{FeatureError, Input};

/// Sample rates [`resample`] accepts, in Hz.
pub const RATES: std::ops::RangeInclusive<u32> = 1000..=768_000;

/// Minimum FFT block length in input samples (longer blocks put the cutoff nearer Nyquist).
pub const BLOCK: usize = 2048;

/// Resamples mono `samples` from `from` Hz to `to` Hz (see the module documentation for the
/// filter). Both rates must lie in [`RATES`]; equal rates return a copy. A NaN, infinite or
/// larger than [`crate::MAX_INPUT`] sample is an error (it would overflow the filter's FFT).
pub fn resample(samples: &[f32], from: u32, to: u32) -> Result<Vec<f32>, FeatureError> {
    // Rates outside this range are header damage, not audio; they would also size the FFT
    // blocks (up to `from / gcd` samples) or the output beyond reason (checked by `new`).
    let mut r = StreamResampler::new(from, to)?;
    crate::sample::check(samples, crate::MAX_INPUT, &Input::memory(), 0)?;
    if from == to || samples.is_empty() {
        return Ok(samples.to_vec());
    }
    let mut out = Vec::with_capacity(resampled_len(samples.len(), from, to));
    r.push(samples, &mut out)?;
    r.finish(&mut out)?;
    Ok(out)
}

/// [`resample`] one block at a time: the output of all blocks together equals `resample` of
/// all input at once, bit for bit (the same FFT blocks, start-up delay and length), while only
/// one block is held. For audio too long to hold whole ([`crate::AudioStream`]).
#[derive(Debug)]
pub struct StreamResampler {
    inner: Option<Box<Fft<f32>>>,
    from: u32,
    to: u32,
    pending: Vec<f32>,
    chunk_out: Vec<f32>,
    /// Output samples of the start-up delay still to drop.
    trim: usize,
    consumed: u64,
    emitted: u64,
    /// Set when rubato panicked: its state is then unknown, so every later call fails.
    poisoned: bool,
}

impl StreamResampler {
    /// A resampler from `from` Hz to `to` Hz (both in [`RATES`]; equal rates pass samples
    /// through).
    pub fn new(from: u32, to: u32) -> Result<Self, FeatureError> {
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
        let inner = if from == to {
            None
        } else {
            let r = Fft::<f32>::new_custom(
                from as usize,
                to as usize,
                BLOCK,
                1,
                1,
                WindowFunction::BlackmanHarris2,
                FixedSync::Input,
            )
            .map_err(|e| Self::error(from, to, &e))?;
            Some(Box::new(r))
        };
        let trim = inner.as_ref().map_or(0, |r| r.output_delay());
        let chunk_out = vec![0.0; inner.as_ref().map_or(0, |r| r.output_frames_max())];
        Ok(Self {
            inner,
            from,
            to,
            pending: Vec::new(),
            chunk_out,
            trim,
            consumed: 0,
            emitted: 0,
            poisoned: false,
        })
    }

    fn error(from: u32, to: u32, e: &dyn std::fmt::Display) -> FeatureError {
        FeatureError::invalid(
            "resampling",
            format!("from {from} Hz to {to} Hz failed: {e}"),
        )
    }

    /// Resamples `samples`, appending what is ready to `out` (the filter holds back up to one
    /// block until more input or [`StreamResampler::finish`]). A NaN, infinite or larger than
    /// [`crate::MAX_INPUT`] sample is an error (its index counted over all input so far), and
    /// nothing of `samples` is taken.
    pub fn push(&mut self, samples: &[f32], out: &mut Vec<f32>) -> Result<(), FeatureError> {
        crate::sample::check(samples, crate::MAX_INPUT, &Input::memory(), self.consumed)?;
        self.consumed += samples.len() as u64;
        if self.inner.is_none() {
            out.extend_from_slice(samples);
            self.emitted += samples.len() as u64;
            return Ok(());
        }
        self.pending.extend_from_slice(samples);
        let mut at = 0;
        // As rubato's `process_all`: whole blocks while more than one block is left, so the
        // last (possibly full) block goes through `finish` as the final partial one.
        while let Some(need) = self.inner.as_ref().map(|r| r.input_frames_next())
            && self.pending.len() - at > need
        {
            self.run(at, None, out)?;
            at += need;
        }
        self.pending.drain(..at);
        Ok(())
    }

    /// One block from `pending[at..]` (`partial`: the valid samples of a last, short block).
    fn run(
        &mut self,
        at: usize,
        partial: Option<usize>,
        out: &mut Vec<f32>,
    ) -> Result<(), FeatureError> {
        let (from, to) = (self.from, self.to);
        let Some(r) = self.inner.as_mut() else {
            return Ok(());
        };
        let end = match partial {
            Some(_) => self.pending.len(),
            None => at + r.input_frames_next(),
        };
        let input = &self.pending[at..end];
        let input =
            InterleavedSlice::new(input, 1, input.len()).map_err(|e| Self::error(from, to, &e))?;
        let room = self.chunk_out.len();
        let mut output = InterleavedSlice::new_mut(&mut self.chunk_out, 1, room)
            .map_err(|e| Self::error(from, to, &e))?;
        let indexing = partial.map(|n| rubato::Indexing::new().partial_len(n));
        if self.poisoned {
            return Err(Self::error(from, to, &"an earlier block failed"));
        }
        // The input is checked (`push`), so rubato's FFT cannot overflow; should it panic all
        // the same, the panic is an error, not a crash of the caller's thread.
        let run = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            r.process_into_buffer(&input, &mut output, indexing.as_ref())
        }));
        let (_, produced) = match run {
            Ok(r) => r.map_err(|e| Self::error(from, to, &e))?,
            Err(payload) => {
                self.poisoned = true;
                let why = crate::error::panic_message(payload.as_ref());
                return Err(Self::error(
                    from,
                    to,
                    &format!("the resampler panicked ({why})"),
                ));
            }
        };
        let drop = self.trim.min(produced);
        self.trim -= drop;
        out.extend_from_slice(&self.chunk_out[drop..produced]);
        self.emitted += (produced - drop) as u64;
        Ok(())
    }

    /// Flushes the filter: afterwards `out` has received exactly
    /// [`resampled_len`]`(all input)` samples in all.
    pub fn finish(mut self, out: &mut Vec<f32>) -> Result<(), FeatureError> {
        if self.inner.is_none() {
            return Ok(());
        }
        let want = resampled_len(self.consumed as usize, self.from, self.to) as u64;
        if !self.pending.is_empty() {
            let n = self.pending.len();
            self.run(0, Some(n), out)?;
            self.pending.clear();
        }
        let mut pumps = 0;
        while self.emitted < want {
            self.run(0, Some(0), out)?;
            pumps += 1;
            if pumps > 64 {
                return Err(Self::error(
                    self.from,
                    self.to,
                    &format!("{} samples out, {want} expected", self.emitted),
                ));
            }
        }
        let extra = (self.emitted - want) as usize;
        out.truncate(out.len() - extra);
        Ok(())
    }
}

/// Number of samples [`resample`] returns for `n` input samples.
pub fn resampled_len(n: usize, from: u32, to: u32) -> usize {
    if from == to {
        n
    } else {
        (n as u128 * to as u128).div_ceil(from as u128) as usize
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The last line of defence: should rubato panic all the same (here: fed two samples of
    /// 3e38 past the input check, which overflow its FFT), the panic is an error and the
    /// resampler refuses every later call, since its state is unknown.
    #[test]
    fn a_panic_inside_rubato_is_an_error() {
        let mut r = StreamResampler::new(48_000, 16_000).unwrap();
        let n = r.inner.as_ref().unwrap().input_frames_next();
        r.pending = vec![0.1; 4 * n];
        r.pending[n + 100] = 3e38;
        r.pending[n + 101] = 3e38;
        let mut out = Vec::new();
        let e = (0..3)
            .find_map(|k| r.run(k * n, None, &mut out).err())
            .expect("rubato overflowed without panicking");
        assert!(e.to_string().contains("the resampler panicked"), "{e}");
        let e = r.push(&[0.0; 10_000], &mut out).unwrap_err();
        assert!(e.to_string().contains("an earlier block failed"), "{e}");
    }
}
