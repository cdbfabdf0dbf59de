//! Resampling: lengths, timing, passband and stopband, errors.

use ent_features::resample::{resample, resampled_len};

fn tone(freq: f64, rate: u32, n: usize) -> Vec<f32> {
    (0..n)
        .map(|i| (std::f64::consts::TAU * freq * i as f64 / rate as f64).sin() as f32 * 0.5)
        .collect()
}

/// RMS over the middle half (away from the edges, where the filter sees the signal's ends).
fn rms_mid(x: &[f32]) -> f64 {
    let m = &x[x.len() / 4..3 * x.len() / 4];
    (m.iter().map(|&v| (v as f64).powi(2)).sum::<f64>() / m.len() as f64).sqrt()
}

#[test]
fn lengths_and_identity() {
    for (n, from, to) in [
        (44100, 44100, 16000),
        (12345, 48000, 16000),
        (999, 8000, 16000),
        (1, 22050, 16000),
    ] {
        let y = resample(&vec![0.1; n], from, to).unwrap();
        assert_eq!(y.len(), resampled_len(n, from, to), "{n} {from} {to}");
        assert_eq!(
            y.len(),
            (n as u64 * to as u64).div_ceil(from as u64) as usize
        );
    }
    let x = tone(440.0, 16000, 1000);
    assert_eq!(resample(&x, 16000, 16000).unwrap(), x);
    assert!(resample(&[], 44100, 16000).unwrap().is_empty());
}

/// Gain and delay (in seconds) of `y` (at `rate`) against a unit tone of `freq`, by a least-squares
/// fit of `a sin + b cos` over the middle half.
fn fit(y: &[f32], freq: f64, rate: u32) -> (f64, f64) {
    let (mut ss, mut sc, mut cc, mut ys, mut yc) = (0f64, 0f64, 0f64, 0f64, 0f64);
    for (k, &v) in y.iter().enumerate().take(3 * y.len() / 4).skip(y.len() / 4) {
        let (s, c) = (std::f64::consts::TAU * freq * k as f64 / rate as f64).sin_cos();
        ss += s * s;
        sc += s * c;
        cc += c * c;
        ys += v as f64 * s;
        yc += v as f64 * c;
    }
    let det = ss * cc - sc * sc;
    let (a, b) = ((ys * cc - yc * sc) / det, (yc * ss - ys * sc) / det);
    (
        (a * a + b * b).sqrt(),
        -b.atan2(a) / (std::f64::consts::TAU * freq),
    )
}

/// Tones keep their level, and output sample k lies at time k / to to within one input sample
/// (the FFT resampler aligns its blocks on input samples: measured +1 input sample for 48 kHz,
/// -1/2 for 44.1 kHz and 22.05 kHz, 0 for 8 kHz and 32 kHz).
#[test]
fn tones_keep_their_timing_and_level() {
    for (from, to) in [
        (44100u32, 16000u32),
        (48000, 16000),
        (22050, 16000),
        (8000, 16000),
        (32000, 16000),
    ] {
        for f in [200.0, 1000.0, 3000.0] {
            let x = tone(f, from, from as usize);
            let y = resample(&x, from, to).unwrap();
            let (gain, delay) = fit(&y, f, to);
            assert!(
                (gain - 0.5).abs() < 1e-4,
                "{from} -> {to} at {f} Hz: gain {gain}"
            );
            assert!(
                delay.abs() <= 1.0 / from as f64 + 1e-9,
                "{from} -> {to} at {f} Hz: delay {} input samples",
                delay * from as f64
            );
        }
    }
}

/// Passband and stopband, measured on pure tones relative to the output Nyquist frequency.
#[test]
fn passband_is_flat_and_stopband_is_deep() {
    for from in [44100u32, 48000] {
        let to = 16000u32;
        let nyq = to as f64 / 2.0;
        let n = from as usize;
        let gain_db = |f: f64| {
            let x = tone(f, from, n);
            let y = resample(&x, from, to).unwrap();
            20.0 * (rms_mid(&y) / rms_mid(&x)).log10()
        };
        let pass = gain_db(0.8 * nyq);
        let stop = gain_db(1.2 * nyq);
        println!("{from} -> {to}: 0.8 Nyquist {pass:+.4} dB, 1.2 Nyquist {stop:.1} dB");
        assert!(pass.abs() < 0.01, "{from}: passband {pass} dB");
        assert!(stop < -90.0, "{from}: stopband {stop} dB");
    }
}

#[test]
fn rates_outside_the_audio_range_are_errors() {
    let e = resample(&[0.0; 10], 0, 16000).unwrap_err();
    assert!(e.to_string().contains("from 0 Hz"), "{e}");
    assert!(resample(&[0.0; 10], 16000, 0).is_err());
    // A damaged header's rate would size the FFT (prime rate) or the output (1 Hz) absurdly.
    assert!(resample(&[0.0; 10], 4_294_967_291, 16000).is_err());
    assert!(resample(&[0.0; 10], 1, 16000).is_err());
    assert!(resample(&[0.0; 10], 999, 16000).is_err());
    assert!(resample(&[0.0; 10], 1000, 16000).is_ok());
}

/// Seeded noise in [-0.5, 0.5).
fn noise(n: usize, seed: u64) -> Vec<f32> {
    let mut r = ent_common::rng::SplitMix64::new(seed);
    (0..n)
        .map(|_| ((r.next_u64() >> 40) as f32 / (1u64 << 24) as f32) - 0.5)
        .collect()
}

/// `resample` is rubato's `process_all` with the length rounding fixed: checked against that
/// call directly, so the streaming implementation behind it changed nothing.
#[test]
fn resample_equals_rubatos_whole_clip_call() {
    use rubato::audioadapter_buffers::direct::InterleavedSlice;
    use rubato::{Fft, FixedSync, Resampler, WindowFunction};
    for (n, from, to, seed) in [
        (44100 * 3 + 17, 44100, 16000, 1),
        (48000 * 2, 48000, 16000, 2),
        (8000 * 5 + 3, 8000, 16000, 3),
        (100, 22050, 16000, 4),
    ] {
        let x = noise(n, seed);
        let mut r = Fft::<f32>::new_custom(
            from as usize,
            to as usize,
            ent_features::resample::BLOCK,
            1,
            1,
            WindowFunction::BlackmanHarris2,
            FixedSync::Input,
        )
        .unwrap();
        let input = InterleavedSlice::new(&x, 1, n).unwrap();
        let mut want = r.process_all(&input, n, None).unwrap().take_data();
        want.truncate(resampled_len(n, from, to));
        let got = resample(&x, from, to).unwrap();
        assert_eq!(got.len(), want.len(), "{from} -> {to}");
        assert!(
            got.iter()
                .zip(&want)
                .all(|(a, b)| a.to_bits() == b.to_bits()),
            "{from} -> {to}"
        );
    }
}

/// Fed in blocks of any size, the stream gives what one call on all samples gives, bit for bit.
#[test]
fn streamed_blocks_equal_the_whole_clip() {
    use ent_features::resample::StreamResampler;
    for (n, from, to) in [
        (44100 * 4 + 5, 44100, 16000),
        (8000 * 6, 8000, 16000),
        (16000, 16000, 16000),
    ] {
        let x = noise(n, n as u64);
        let whole = resample(&x, from, to).unwrap();
        for block in [1usize, 1000, 2048, 4099, 65536] {
            let mut s = StreamResampler::new(from, to).unwrap();
            let mut out = Vec::new();
            for c in x.chunks(block) {
                s.push(c, &mut out).unwrap();
            }
            s.finish(&mut out).unwrap();
            assert_eq!(out.len(), whole.len(), "{from} -> {to}, blocks of {block}");
            let same = out
                .iter()
                .zip(&whole)
                .all(|(a, b)| a.to_bits() == b.to_bits());
            assert!(same, "{from} -> {to}, blocks of {block}");
        }
    }
}
