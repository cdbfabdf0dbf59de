//! Kaldi-compatible log-mel filterbank features.
//!
//! The computation follows Kaldi's `compute-fbank-feats` (and `kaldi-native-fbank`, the reference
//! the tests compare against) step by step, in the same precision:
//!
//! 1. frames of `frame_length_ms` every `frame_shift_ms`; with `snip_edges = false` the first frame
//!    is centred on sample `shift / 2` and the signal is reflected at both ends;
//! 2. per frame, in f32: dither (optional), DC removal, the raw log energy, pre-emphasis
//!    `x[i] -= c * x[i-1]` (and `x[0] -= c * x[0]`), the window;
//! 3. a real FFT of the zero-padded frame (in f64, as `kaldi-native-fbank` does), the power
//!    spectrum `re^2 + im^2` in f32 (or its square root with `use_power = false`);
//! 4. triangular filters equally spaced on the mel scale `1127 ln(1 + f / 700)` between `low_freq`
//!    and `high_freq`, over FFT bins `0 .. padded / 2` (the Nyquist bin is never used);
//! 5. `ln(max(e, f32::EPSILON))`, so the log floor is `ln(2^-23) = -15.942385`.
//!
//! # Scale
//!
//! Samples are used at the scale given, as `kaldi-native-fbank` and Lhotse do: audio loaded by
//! this crate lies in `[-1, 1]`. Kaldi's own tools and torchaudio's `kaldi.fbank` examples feed
//! 16-bit integer values instead; scaling the input by `32768` scales every power-spectrum value by
//! `32768^2`, so it adds exactly `2 ln 32768 = 20.794415` to every log bin (half that with
//! `use_power = false`) except bins held at the log floor.

use std::sync::Arc;

use candle_core::{Device, Tensor};
use rayon::prelude::*;
use realfft::num_complex::Complex;
use realfft::{RealFftPlanner, RealToComplex};

use crate::error::{FeatureError, Input};
use crate::rng::SplitMix64;

/// The smallest value the log is taken of: `f32::EPSILON`, as in Kaldi.
pub const LOG_FLOOR_INPUT: f32 = f32::EPSILON;

/// The analysis window applied to each frame (`i` in `0..N`, `a = 2 pi / (N - 1)`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum WindowType {
    /// `(0.5 - 0.5 cos(a i))^0.85`, Kaldi's default: like Hamming but zero at the edges.
    #[default]
    Povey,
    /// `0.54 - 0.46 cos(a i)`.
    Hamming,
    /// `0.5 - 0.5 cos(a i)` (symmetric).
    Hanning,
    /// `0.5 - 0.5 cos(2 pi i / N)` (periodic, as `torch.hann_window`).
    Hann,
    /// `sin(a i / 2)`.
    Sine,
    /// `b - 0.5 cos(a i) + (0.5 - b) cos(2 a i)` with `b = blackman_coeff`.
    Blackman,
    /// All ones.
    Rectangular,
}

/// Filterbank options. Field names and meanings are Kaldi's.
///
/// `Default` gives Kaldi's defaults except `num_mel_bins = 80` and `dither = 0`: 16 kHz, 25 ms
/// frames every 10 ms, Povey window, pre-emphasis 0.97, DC removal, `snip_edges`, 20 Hz to Nyquist,
/// log power, no energy column.
#[derive(Debug, Clone, PartialEq)]
pub struct FbankOptions {
    /// Sample rate of the input in Hz.
    pub sample_rate: f32,
    /// Number of triangular mel filters (at least 3).
    pub num_mel_bins: usize,
    /// Frame length in milliseconds.
    pub frame_length_ms: f32,
    /// Frame shift in milliseconds.
    pub frame_shift_ms: f32,
    /// Standard deviation of Gaussian dither added to each sample (0 = none). The noise is seeded
    /// by [`FbankOptions::dither_seed`] and the frame index, so results are reproducible.
    pub dither: f32,
    /// Pre-emphasis coefficient in `[0, 1]` (0 = none).
    pub preemph_coeff: f32,
    /// Subtract each frame's mean before everything else.
    pub remove_dc_offset: bool,
    /// The analysis window.
    pub window_type: WindowType,
    /// `true`: only frames that fit entirely in the signal, the first starting at sample 0.
    /// `false`: `round(samples / shift)` frames centred on `shift * (t + 1/2)`, the signal
    /// reflected at its ends.
    pub snip_edges: bool,
    /// Lowest filter edge in Hz.
    pub low_freq: f32,
    /// Highest filter edge in Hz; `0` means Nyquist and a negative value Nyquist plus that value.
    pub high_freq: f32,
    /// Add the frame's log energy as column 0 (the output then has `num_mel_bins + 1` columns).
    pub use_energy: bool,
    /// Take the energy before pre-emphasis and windowing (Kaldi's default) rather than after.
    pub raw_energy: bool,
    /// Floor on the energy (not its log); 0 = no floor beyond the log floor.
    pub energy_floor: f32,
    /// Output `ln` of the filter energies; otherwise the energies themselves.
    pub use_log_fbank: bool,
    /// Filter the power spectrum; otherwise its magnitude.
    pub use_power: bool,
    /// Coefficient `b` of the Blackman window.
    pub blackman_coeff: f32,
    /// Pad frames to the next power of two before the FFT (Kaldi's default; `kaldi-native-fbank`
    /// supports only this).
    pub round_to_power_of_two: bool,
    /// Seed of the dither noise.
    pub dither_seed: u64,
}

impl Default for FbankOptions {
    fn default() -> Self {
        Self {
            sample_rate: 16000.0,
            num_mel_bins: 80,
            frame_length_ms: 25.0,
            frame_shift_ms: 10.0,
            dither: 0.0,
            preemph_coeff: 0.97,
            remove_dc_offset: true,
            window_type: WindowType::Povey,
            snip_edges: true,
            low_freq: 20.0,
            high_freq: 0.0,
            use_energy: false,
            raw_energy: true,
            energy_floor: 0.0,
            use_log_fbank: true,
            use_power: true,
            blackman_coeff: 0.42,
            round_to_power_of_two: true,
            dither_seed: 0,
        }
    }
}

impl FbankOptions {
    /// Samples per frame, as Kaldi computes it: `trunc(sample_rate * 0.001 * frame_length_ms)`.
    pub fn window_size(&self) -> usize {
        (self.sample_rate as f64 * 0.001 * self.frame_length_ms as f64) as usize
    }

    /// Samples between frame starts: `trunc(sample_rate * 0.001 * frame_shift_ms)`.
    pub fn window_shift(&self) -> usize {
        (self.sample_rate as f64 * 0.001 * self.frame_shift_ms as f64) as usize
    }

    /// FFT length: the window size, rounded up to a power of two if asked.
    pub fn padded_window_size(&self) -> usize {
        let n = self.window_size();
        if self.round_to_power_of_two {
            n.next_power_of_two()
        } else {
            n
        }
    }

    /// Number of frames for `num_samples` samples (Kaldi's `NumFrames` with `flush = true`).
    pub fn num_frames(&self, num_samples: usize) -> usize {
        let shift = self.window_shift();
        let length = self.window_size();
        if shift == 0 || length == 0 {
            return 0;
        }
        if self.snip_edges {
            if num_samples < length {
                0
            } else {
                1 + (num_samples - length) / shift
            }
        } else {
            (num_samples + shift / 2) / shift
        }
    }

    /// Smallest number of samples that yields one frame.
    pub fn min_samples(&self) -> usize {
        let shift = self.window_shift();
        if self.snip_edges {
            self.window_size()
        } else {
            shift - shift / 2
        }
    }

    /// First sample of frame `t` (negative when the frame reaches before the signal).
    fn first_sample(&self, t: usize) -> i64 {
        let shift = self.window_shift() as i64;
        let t = t as i64;
        if self.snip_edges {
            t * shift
        } else {
            shift * t + shift / 2 - self.window_size() as i64 / 2
        }
    }

    /// Output columns: `num_mel_bins`, plus one with `use_energy`.
    pub fn dim(&self) -> usize {
        self.num_mel_bins + usize::from(self.use_energy)
    }

    fn validate(&self) -> Result<(), FeatureError> {
        let bad = FeatureError::invalid;
        if !(self.sample_rate.is_finite() && self.sample_rate > 0.0) {
            return Err(bad(
                "sample_rate",
                format!("{} Hz must be positive", self.sample_rate),
            ));
        }
        for (name, ms) in [
            ("frame_length_ms", self.frame_length_ms),
            ("frame_shift_ms", self.frame_shift_ms),
        ] {
            if !(ms.is_finite() && ms > 0.0) {
                return Err(bad(name, format!("{ms} ms must be positive")));
            }
        }
        // Frames beyond a minute are certainly a unit mistake; the bound also keeps the FFT
        // plan and per-thread buffers small.
        let length = self.window_size();
        if !(2..=1 << 20).contains(&length) {
            return Err(bad(
                "frame_length_ms",
                format!(
                    "{} ms at {} Hz gives {length} samples per frame; need 2 to 1048576",
                    self.frame_length_ms, self.sample_rate
                ),
            ));
        }
        if self.window_shift() == 0 {
            return Err(bad(
                "frame_shift_ms",
                format!(
                    "{} ms at {} Hz is less than one sample",
                    self.frame_shift_ms, self.sample_rate
                ),
            ));
        }
        if !(self.dither.is_finite() && self.dither >= 0.0) {
            return Err(bad("dither", format!("{} must be >= 0", self.dither)));
        }
        if !(0.0..=1.0).contains(&self.preemph_coeff) {
            return Err(bad(
                "preemph_coeff",
                format!("{} must lie in [0, 1]", self.preemph_coeff),
            ));
        }
        if !(self.energy_floor.is_finite() && self.energy_floor >= 0.0) {
            return Err(bad(
                "energy_floor",
                format!("{} must be >= 0", self.energy_floor),
            ));
        }
        if !self.blackman_coeff.is_finite() {
            return Err(bad("blackman_coeff", format!("{}", self.blackman_coeff)));
        }
        if self.num_mel_bins < 3 {
            return Err(bad(
                "num_mel_bins",
                format!("{} must be at least 3", self.num_mel_bins),
            ));
        }
        // Each filter needs an FFT bin of its own at least.
        if self.num_mel_bins > self.padded_window_size() / 2 {
            return Err(bad(
                "num_mel_bins",
                format!(
                    "{} filters cannot fit in the {} bins of a {}-point FFT",
                    self.num_mel_bins,
                    self.padded_window_size() / 2,
                    self.padded_window_size()
                ),
            ));
        }
        let nyquist = 0.5 * self.sample_rate;
        let high = self.effective_high_freq();
        let low = self.low_freq;
        if !(low.is_finite() && high.is_finite())
            || low < 0.0
            || low >= nyquist
            || high <= 0.0
            || high > nyquist
            || high <= low
        {
            return Err(bad(
                "low_freq/high_freq",
                format!(
                    "low_freq {low} Hz and high_freq {} Hz (effective {high} Hz) must satisfy \
                     0 <= low < high <= Nyquist = {nyquist} Hz",
                    self.high_freq
                ),
            ));
        }
        Ok(())
    }

    fn effective_high_freq(&self) -> f32 {
        if self.high_freq > 0.0 {
            self.high_freq
        } else {
            0.5 * self.sample_rate + self.high_freq
        }
    }
}

/// Kaldi's mel scale, in f32 as Kaldi computes it: `1127 ln(1 + f / 700)`.
#[inline]
fn mel_scale(freq: f32) -> f32 {
    1127.0 * (1.0 + freq / 700.0).ln()
}

/// One triangular filter: weights for FFT bins `offset .. offset + weights.len()`.
#[derive(Debug, Clone)]
struct MelBin {
    offset: usize,
    weights: Vec<f32>,
}

fn mel_banks(opts: &FbankOptions) -> Result<Vec<MelBin>, FeatureError> {
    let padded = opts.padded_window_size();
    let num_fft_bins = padded / 2;
    let num_bins = opts.num_mel_bins;
    let fft_bin_width = opts.sample_rate / padded as f32;
    let mel_low = mel_scale(opts.low_freq);
    let mel_high = mel_scale(opts.effective_high_freq());
    let delta = (mel_high - mel_low) / (num_bins as f32 + 1.0);
    let mut banks = Vec::with_capacity(num_bins);
    for bin in 0..num_bins {
        let left = mel_low + bin as f32 * delta;
        let center = mel_low + (bin + 1) as f32 * delta;
        let right = mel_low + (bin + 2) as f32 * delta;
        let mut offset = None;
        let mut weights = Vec::new();
        for i in 0..num_fft_bins {
            let mel = mel_scale(fft_bin_width * i as f32);
            if mel > left && mel < right {
                let w = if mel <= center {
                    (mel - left) / (center - left)
                } else {
                    (right - mel) / (right - center)
                };
                offset.get_or_insert(i);
                weights.push(w);
            } else if offset.is_some() {
                break;
            }
        }
        let Some(offset) = offset else {
            return Err(FeatureError::invalid(
                "num_mel_bins",
                format!(
                    "mel filter {bin} of {num_bins} covers no FFT bin ({padded}-point FFT \
                     at {} Hz between {} and {} Hz): use fewer mel bins or longer frames",
                    opts.sample_rate,
                    opts.low_freq,
                    opts.effective_high_freq()
                ),
            ));
        };
        banks.push(MelBin { offset, weights });
    }
    Ok(banks)
}

fn window_function(opts: &FbankOptions) -> Vec<f32> {
    let n = opts.window_size();
    let a = if opts.window_type == WindowType::Hann {
        std::f64::consts::TAU / n as f64
    } else {
        std::f64::consts::TAU / (n - 1) as f64
    };
    let b = opts.blackman_coeff as f64;
    (0..n)
        .map(|i| {
            let x = a * i as f64;
            let w = match opts.window_type {
                WindowType::Povey => (0.5 - 0.5 * x.cos()).powf(0.85),
                WindowType::Hamming => 0.54 - 0.46 * x.cos(),
                WindowType::Hanning | WindowType::Hann => 0.5 - 0.5 * x.cos(),
                WindowType::Sine => (0.5 * x).sin(),
                WindowType::Blackman => b - 0.5 * x.cos() + (0.5 - b) * (2.0 * x).cos(),
                WindowType::Rectangular => 1.0,
            };
            w as f32
        })
        .collect()
}

/// A filterbank extractor: options checked once, window, FFT plan and mel filters precomputed.
///
/// `Fbank` is `Send + Sync`; one instance serves any number of threads.
#[derive(Clone)]
pub struct Fbank {
    opts: FbankOptions,
    window: Vec<f32>,
    banks: Vec<MelBin>,
    fft: Arc<dyn RealToComplex<f64>>,
    log_energy_floor: Option<f32>,
}

impl std::fmt::Debug for Fbank {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Fbank")
            .field("opts", &self.opts)
            .finish_non_exhaustive()
    }
}

/// Frames per parallel task: large enough that scheduling costs nothing, small enough that a
/// few seconds of audio spread over all cores.
const FRAMES_PER_TASK: usize = 64;

/// Per-thread working memory for one frame.
struct Scratch {
    frame: Vec<f32>,
    fft_in: Vec<f64>,
    spectrum: Vec<Complex<f64>>,
    fft_scratch: Vec<Complex<f64>>,
    power: Vec<f32>,
}

impl Fbank {
    /// Checks the options and precomputes the window, FFT plan and mel filters.
    pub fn new(opts: FbankOptions) -> Result<Self, FeatureError> {
        opts.validate()?;
        let banks = mel_banks(&opts)?;
        let window = window_function(&opts);
        let fft = RealFftPlanner::<f64>::new().plan_fft_forward(opts.padded_window_size());
        let log_energy_floor = (opts.energy_floor > 0.0).then(|| opts.energy_floor.ln());
        Ok(Self {
            opts,
            window,
            banks,
            fft,
            log_energy_floor,
        })
    }

    /// The options this extractor was built with.
    pub fn options(&self) -> &FbankOptions {
        &self.opts
    }

    /// Output columns: `num_mel_bins`, plus one (column 0) with `use_energy`.
    pub fn dim(&self) -> usize {
        self.opts.dim()
    }

    /// Number of frames `compute` returns for `num_samples` samples.
    pub fn num_frames(&self, num_samples: usize) -> usize {
        self.opts.num_frames(num_samples)
    }

    /// Features of `samples` (mono, at `sample_rate`, used at the scale given), as a
    /// `[frames, dim]` f32 tensor on the CPU. Long inputs are split over rayon's threads.
    ///
    /// Errors: empty input, fewer samples than one frame needs, a NaN or infinite sample, a
    /// sample beyond [`crate::MAX_INPUT`].
    pub fn compute(&self, samples: &[f32]) -> Result<Tensor, FeatureError> {
        let frames = self.num_frames(samples.len());
        let data = self.compute_vec(samples)?;
        Ok(Tensor::from_vec(data, (frames, self.dim()), &Device::Cpu)?)
    }

    /// As [`Fbank::compute`], returning the row-major `[frames, dim]` values.
    pub fn compute_vec(&self, samples: &[f32]) -> Result<Vec<f32>, FeatureError> {
        self.check_input(samples)?;
        let frames = self.num_frames(samples.len());
        let dim = self.dim();
        let mut out = vec![0f32; frames * dim];
        out.par_chunks_mut(FRAMES_PER_TASK * dim)
            .enumerate()
            .for_each(|(task, rows)| {
                let mut scratch = self.scratch();
                for (i, row) in rows.chunks_exact_mut(dim).enumerate() {
                    self.frame(samples, task * FRAMES_PER_TASK + i, &mut scratch, row);
                }
            });
        Ok(out)
    }

    fn check_input(&self, samples: &[f32]) -> Result<(), FeatureError> {
        if samples.is_empty() {
            return Err(FeatureError::Empty {
                input: Input::memory(),
                detail: String::new(),
            });
        }
        crate::sample::check(samples, crate::MAX_INPUT, &Input::memory(), 0)?;
        if self.num_frames(samples.len()) == 0 {
            return Err(FeatureError::TooShort {
                input: Input::memory(),
                samples: samples.len(),
                needed: self.opts.min_samples(),
            });
        }
        Ok(())
    }

    fn scratch(&self) -> Scratch {
        Scratch {
            frame: vec![0.0; self.opts.window_size()],
            fft_in: self.fft.make_input_vec(),
            spectrum: self.fft.make_output_vec(),
            fft_scratch: self.fft.make_scratch_vec(),
            power: vec![0.0; self.opts.padded_window_size() / 2 + 1],
        }
    }

    /// Computes frame `t` of `samples` into `out` (`dim` values).
    fn frame(&self, samples: &[f32], t: usize, s: &mut Scratch, out: &mut [f32]) {
        let opts = &self.opts;
        let length = s.frame.len();
        extract(samples, opts.first_sample(t), &mut s.frame);
        let w = &mut s.frame[..];

        if opts.dither != 0.0 {
            let mut rng = SplitMix64::new(frame_seed(opts.dither_seed, t));
            for x in w.iter_mut() {
                *x += rng.gaussian() as f32 * opts.dither;
            }
        }
        if opts.remove_dc_offset {
            let mean = sum(w) / length as f32;
            w.iter_mut().for_each(|x| *x -= mean);
        }
        let mut log_energy = 0.0f32;
        if opts.use_energy && opts.raw_energy {
            log_energy = dot(w, w).max(LOG_FLOOR_INPUT).ln();
        }
        if opts.preemph_coeff != 0.0 {
            let c = opts.preemph_coeff;
            for i in (1..length).rev() {
                w[i] -= c * w[i - 1];
            }
            w[0] -= c * w[0];
        }
        w.iter_mut().zip(&self.window).for_each(|(x, &k)| *x *= k);
        if opts.use_energy && !opts.raw_energy {
            log_energy = dot(w, w).max(LOG_FLOOR_INPUT).ln();
        }

        // The FFT runs in f64 on the f32 frame, and its output is rounded back to f32 before
        // the power spectrum, exactly as kaldi-native-fbank does.
        let (head, tail) = s.fft_in.split_at_mut(length);
        head.iter_mut()
            .zip(w.iter())
            .for_each(|(d, &x)| *d = x as f64);
        tail.fill(0.0);
        self.fft
            .process_with_scratch(&mut s.fft_in, &mut s.spectrum, &mut s.fft_scratch)
            .expect("FFT buffers are sized by the plan that uses them");
        for (p, c) in s.power.iter_mut().zip(&s.spectrum) {
            let (re, im) = (c.re as f32, c.im as f32);
            *p = re * re + im * im;
        }
        if !opts.use_power {
            s.power.iter_mut().for_each(|p| *p = p.sqrt());
        }

        let (energy_col, mel) = if opts.use_energy {
            let (e, m) = out.split_at_mut(1);
            (Some(e), m)
        } else {
            (None, out)
        };
        for (m, bank) in mel.iter_mut().zip(&self.banks) {
            let e = dot(
                &bank.weights,
                &s.power[bank.offset..bank.offset + bank.weights.len()],
            );
            *m = if opts.use_log_fbank {
                e.max(LOG_FLOOR_INPUT).ln()
            } else {
                e
            };
        }
        if let Some(e) = energy_col {
            if let Some(floor) = self.log_energy_floor {
                log_energy = log_energy.max(floor);
            }
            e[0] = log_energy;
        }
    }
}

/// The dither stream of frame `t`: both inputs pass through SplitMix64's output function, so
/// the streams of different frames start at unrelated states (a plain `seed ^ t * increment`
/// would make frame `t + 2` replay frame `t`'s stream shifted by one draw).
fn frame_seed(seed: u64, t: usize) -> u64 {
    SplitMix64::new(seed).next_u64() ^ SplitMix64::new(!(t as u64)).next_u64()
}

/// Copies the frame starting at `start` (possibly negative or running past the end) into
/// `frame`, reflecting the signal at its ends as Kaldi does (`-1 -> 0`, `n -> n - 1`).
fn extract(samples: &[f32], start: i64, frame: &mut [f32]) {
    let n = samples.len() as i64;
    let len = frame.len() as i64;
    if start >= 0 && start + len <= n {
        let start = start as usize;
        frame.copy_from_slice(&samples[start..start + frame.len()]);
        return;
    }
    for (k, x) in frame.iter_mut().enumerate() {
        // Kaldi reflects repeatedly (s < 0 -> -s - 1, s >= n -> 2n - 1 - s), which is a mirror
        // of period 2n; computed directly so that a tiny signal in a long frame stays cheap.
        let m = (start + k as i64).rem_euclid(2 * n);
        *x = samples[if m >= n { 2 * n - 1 - m } else { m } as usize];
    }
}

/// Sum with eight independent accumulators (vectorises; the order differs from a sequential
/// sum by rounding only).
#[inline]
fn sum(x: &[f32]) -> f32 {
    let mut acc = [0f32; 8];
    let chunks = x.chunks_exact(8);
    let rest = chunks.remainder();
    for c in chunks {
        for k in 0..8 {
            acc[k] += c[k];
        }
    }
    acc.iter().sum::<f32>() + rest.iter().sum::<f32>()
}

#[inline]
fn dot(a: &[f32], b: &[f32]) -> f32 {
    let mut acc = [0f32; 8];
    let ca = a.chunks_exact(8);
    let cb = b.chunks_exact(8);
    let rest: f32 = ca
        .remainder()
        .iter()
        .zip(cb.remainder())
        .map(|(x, y)| x * y)
        .sum();
    for (x, y) in ca.zip(cb) {
        for k in 0..8 {
            acc[k] += x[k] * y[k];
        }
    }
    acc.iter().sum::<f32>() + rest
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kaldi_frame_counts() {
        let o = FbankOptions::default();
        assert_eq!(
            (o.window_size(), o.window_shift(), o.padded_window_size()),
            (400, 160, 512)
        );
        assert_eq!(o.num_frames(399), 0);
        assert_eq!(o.num_frames(400), 1);
        assert_eq!(o.num_frames(559), 1);
        assert_eq!(o.num_frames(560), 2);
        let o = FbankOptions {
            snip_edges: false,
            ..o
        };
        // round(n / 160): 79 -> 0, 80 -> 1, 239 -> 1, 240 -> 2.
        assert_eq!(o.num_frames(79), 0);
        assert_eq!(o.num_frames(80), 1);
        assert_eq!(o.num_frames(239), 1);
        assert_eq!(o.num_frames(240), 2);
        assert_eq!(o.min_samples(), 80);
        // Frame 0 is centred on sample 80: it starts at 80 - 200.
        assert_eq!(o.first_sample(0), -120);
    }

    #[test]
    fn reflection_matches_kaldi_examples() {
        let x = [0.0, 1.0, 2.0, 3.0];
        let mut f = [0f32; 10];
        extract(&x, -3, &mut f);
        // -3 -> 2, -2 -> 1, -1 -> 0, 0..3, 4 -> 3, 5 -> 2, 6 -> 1
        assert_eq!(f, [2.0, 1.0, 0.0, 0.0, 1.0, 2.0, 3.0, 3.0, 2.0, 1.0]);
    }

    #[test]
    fn frame_dither_streams_are_unrelated() {
        let draws = |t| {
            let mut r = SplitMix64::new(frame_seed(0, t));
            (0..8).map(|_| r.next_u64()).collect::<Vec<_>>()
        };
        for t in 0..50 {
            for u in t + 1..t + 4 {
                let (a, b) = (draws(t), draws(u));
                assert!(
                    a.iter().all(|x| !b.contains(x)),
                    "frames {t} and {u} share draws"
                );
            }
        }
    }

    #[test]
    fn mel_scale_at_700_hz_is_1127_ln_2() {
        assert!((mel_scale(700.0) - 1127.0 * std::f32::consts::LN_2).abs() < 1e-3);
    }
}
