//! Mono WAV files for tests: 32-bit float or 16-bit PCM, written whole or sample by sample.

use std::path::Path;

/// A 32-bit float mono WAV of `samples` at `rate`.
pub fn write_f32(path: &Path, rate: u32, samples: &[f32]) {
    write_f32_with(path, rate, samples.len(), |i| samples[i]);
}

/// A 32-bit float mono WAV of `n` samples at `rate`, sample `i` being `sample(i)`: long
/// recordings without holding them in memory.
pub fn write_f32_with(path: &Path, rate: u32, n: usize, sample: impl FnMut(usize) -> f32) {
    write(path, rate, hound::SampleFormat::Float, (0..n).map(sample));
}

/// A 16-bit PCM mono WAV of `samples` at `rate`.
pub fn write_i16(path: &Path, rate: u32, samples: &[i16]) {
    write(
        path,
        rate,
        hound::SampleFormat::Int,
        samples.iter().copied(),
    );
}

/// A mono WAV of `rate` whose sample size is that of `S`.
fn write<S: hound::Sample>(
    path: &Path,
    rate: u32,
    format: hound::SampleFormat,
    samples: impl Iterator<Item = S>,
) {
    let spec = hound::WavSpec {
        channels: 1,
        sample_rate: rate,
        bits_per_sample: (8 * std::mem::size_of::<S>()) as u16,
        sample_format: format,
    };
    let mut w = hound::WavWriter::create(path, spec).expect("a WAV file to write");
    for x in samples {
        w.write_sample(x).expect("a sample written");
    }
    w.finalize().expect("the WAV header completed");
}
