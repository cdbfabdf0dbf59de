//! Samples that cannot be audio (NaN, infinity, finite values beyond `MAX_SAMPLE`) never reach
//! the resampler's FFT, whatever their position, the sample rate or the format: the resampler
//! and the filterbank refuse them with an error, a stream turns them into reported silence,
//! a whole-file decode into an error. Values within the bounds pass at every rate without
//! overflowing.
//!
//! Before these guards, two samples of 3e38 side by side made rubato's FFT overflow and panic
//! ("Imaginary part of first value was non-zero"), and random bytes read as float samples
//! gave infinite output without an error.

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::Path;

use ent_features::resample::{StreamResampler, resampled_len};
use ent_features::{AudioStream, Fbank, FbankOptions, FeatureError, MAX_INPUT, MAX_SAMPLE};

use crate::fixture;

/// Sample rates audio arrives in, the ends of the accepted range and a prime.
const FROM: [u32; 17] = [
    1000, 7919, 8000, 11_025, 12_000, 16_000, 22_050, 24_000, 32_000, 44_100, 48_000, 88_200,
    96_000, 176_400, 192_000, 384_000, 768_000,
];

/// Values no audio has, each with whether it is finite.
fn unusable() -> [f32; 7] {
    [
        3e38,
        -3e38,
        1e30,
        f32::NAN,
        f32::INFINITY,
        f32::NEG_INFINITY,
        MAX_INPUT.next_up(),
    ]
}

fn tone(n: usize, rate: u32) -> Vec<f32> {
    (0..n)
        .map(|i| 0.5 * (i as f32 * 440.0 * std::f32::consts::TAU / rate as f32).sin())
        .collect()
}

/// Pushes `x` in pieces of `piece` samples, then finishes; a panic is an `Err(String)`.
fn run(from: u32, x: &[f32], piece: usize) -> Result<Result<Vec<f32>, FeatureError>, String> {
    catch_unwind(AssertUnwindSafe(|| {
        let mut r = StreamResampler::new(from, 16_000)?;
        let mut out = Vec::new();
        for p in x.chunks(piece) {
            r.push(p, &mut out)?;
        }
        r.finish(&mut out)?;
        Ok(out)
    }))
    .map_err(|p| format!("{p:?}"))
}

/// Samples at the bound in the worst arrangements for an FFT (all the same sign, alternating)
/// are resampled from every rate without overflow.
#[test]
fn the_resampler_takes_samples_at_the_bound_from_every_rate() {
    for from in FROM {
        let n = (from as usize / 2).max(4096);
        for x in [
            vec![MAX_INPUT; n],
            (0..n)
                .map(|i| if i % 2 == 0 { MAX_INPUT } else { -MAX_INPUT })
                .collect(),
        ] {
            let out = run(from, &x, n)
                .unwrap_or_else(|p| panic!("{from} Hz: panicked: {p}"))
                .unwrap_or_else(|e| panic!("{from} Hz: {e}"));
            assert_eq!(out.len(), resampled_len(n, from, 16_000));
            assert!(out.iter().all(|v| v.is_finite()), "{from} Hz");
        }
    }
}

/// A pair of unusable values at every position of a block of input, from every rate, with
/// clean input pushed between the tries so that the pair meets the filter at every offset of
/// its own blocks: an error naming the sample, nothing of the block taken, never a panic; the
/// clean input pushed around them is resampled as if they had never been offered.
#[test]
fn the_resampler_refuses_unusable_samples_at_every_position() {
    for from in FROM {
        let block = block_len(from);
        let clean = tone(4 * block, from);
        let mut r = StreamResampler::new(from, 16_000).unwrap();
        let mut reference = StreamResampler::new(from, 16_000).unwrap();
        let (mut out, mut want) = (Vec::new(), Vec::new());
        let mut taken = 0usize;
        for pos in 0..block {
            let bad = unusable()[pos % 7];
            let mut x = clean[..block].to_vec();
            x[pos] = bad;
            x[(pos + 1) % block] = bad;
            let tried = catch_unwind(AssertUnwindSafe(|| r.push(&x, &mut out)))
                .unwrap_or_else(|p| panic!("{from} Hz, {bad} at {pos}: panicked: {p:?}"));
            match tried {
                Err(FeatureError::OutOfRange { index, .. })
                | Err(FeatureError::NonFinite { index, .. }) => {
                    assert_eq!(
                        index,
                        taken + pos.min((pos + 1) % block),
                        "{from} Hz, {bad}"
                    )
                }
                Err(e) => panic!("{from} Hz, {bad} at {pos}: {e}"),
                Ok(()) => panic!("{from} Hz, {bad} at {pos}: accepted"),
            }
            if pos % 97 == 0 {
                let piece = &clean[pos % block..pos % block + 331];
                r.push(piece, &mut out).unwrap();
                reference.push(piece, &mut want).unwrap();
                taken += piece.len();
            }
        }
        r.finish(&mut out).unwrap();
        reference.finish(&mut want).unwrap();
        assert!(
            out.len() == want.len()
                && out
                    .iter()
                    .zip(&want)
                    .all(|(a, b)| a.to_bits() == b.to_bits()),
            "{from} Hz: refused blocks changed the output"
        );
    }
}

#[test]
fn resample_and_fbank_refuse_unusable_samples() {
    let fbank = Fbank::new(FbankOptions::default()).unwrap();
    for bad in unusable() {
        let mut x = tone(8000, 8000);
        x[1234] = bad;
        let e = ent_features::resample(&x, 8000, 16_000).unwrap_err();
        assert!(
            matches!(
                e,
                FeatureError::OutOfRange { index: 1234, .. }
                    | FeatureError::NonFinite { index: 1234, .. }
            ),
            "{e}"
        );
        let e = fbank.compute(&x).unwrap_err();
        assert!(e.to_string().contains("sample 1234"), "{e}");
    }
    // Kaldi's scale (16-bit integer values) is audio to both.
    let x: Vec<f32> = tone(8000, 8000).iter().map(|v| v * 65_536.0).collect();
    assert!(ent_features::resample(&x, 8000, 16_000).is_ok());
    assert!(fbank.compute(&x).is_ok());
}

fn write_wav(path: &Path, rate: u32, bits: u16, float: bool, samples: &[f64]) {
    let spec = hound::WavSpec {
        channels: 1,
        sample_rate: rate,
        bits_per_sample: if float && bits == 64 { 32 } else { bits },
        sample_format: if float {
            hound::SampleFormat::Float
        } else {
            hound::SampleFormat::Int
        },
    };
    if float && bits == 64 {
        // hound writes no 64-bit floats: a WAVE_FORMAT_IEEE_FLOAT header by hand.
        let data: Vec<u8> = samples.iter().flat_map(|x| x.to_le_bytes()).collect();
        let mut b = b"RIFF".to_vec();
        b.extend((36 + data.len() as u32).to_le_bytes());
        b.extend(b"WAVEfmt ");
        b.extend(16u32.to_le_bytes());
        b.extend(3u16.to_le_bytes());
        b.extend(1u16.to_le_bytes());
        b.extend(rate.to_le_bytes());
        b.extend((rate * 8).to_le_bytes());
        b.extend(8u16.to_le_bytes());
        b.extend(64u16.to_le_bytes());
        b.extend(b"data");
        b.extend((data.len() as u32).to_le_bytes());
        b.extend(data);
        std::fs::write(path, b).unwrap();
        return;
    }
    let mut w = hound::WavWriter::create(path, spec).unwrap();
    for &x in samples {
        if float {
            w.write_sample(x as f32).unwrap();
        } else {
            let full = (1i64 << (bits - 1)) as f64;
            w.write_sample((x * full).clamp(-full, full - 1.0) as i32)
                .unwrap();
        }
    }
    w.finalize().unwrap();
}

fn drain(s: &mut AudioStream) -> Vec<f32> {
    let mut all = Vec::new();
    while let Some(b) = s.next_block().unwrap() {
        all.extend(b);
    }
    all
}

/// Input samples of one FFT block of the resampler from `from` Hz to 16 kHz: the smallest
/// multiple of `from / gcd(from, 16000)` of at least `BLOCK` samples.
fn block_len(from: u32) -> usize {
    let (mut a, mut b) = (from, 16_000u32);
    while b != 0 {
        (a, b) = (b, a % b);
    }
    let unit = (from / a) as usize;
    unit * ent_features::resample::BLOCK.div_ceil(unit)
}

/// Float WAV (32 and 64 bits) at every rate, with unusable values at the start, across the
/// stream's hand-off boundary (32768 source samples) and at the end: streamed, each stretch
/// is silence reported at its time and the rest is the clean file's audio; decoded whole, an
/// error naming the first.
#[test]
fn float_wavs_with_unusable_samples_stream_as_reported_silence() {
    let dir = tempfile::tempdir().unwrap();
    for from in FROM {
        let block = block_len(from);
        let n = 40_000 + 8 * block;
        let clean: Vec<f64> = tone(n, from).iter().map(|&v| v as f64).collect();
        let clean_path = dir.path().join(format!("clean_{from}.wav"));
        write_wav(&clean_path, from, 32, true, &clean);
        let want = ent_features::load_resampled(&clean_path, 16_000)
            .unwrap()
            .samples;
        let runs = [(0usize, 3usize), (32_766, 4), (n - 2, 2)];
        for bits in [32u16, 64] {
            let mut x = clean.clone();
            for (k, &(at, len)) in runs.iter().enumerate() {
                for (j, v) in x[at..at + len].iter_mut().enumerate() {
                    *v = [1e30, -3e38, 65.0, f64::NAN, 1e300][(k + j) % 5];
                }
            }
            let path = dir.path().join(format!("f{bits}_{from}.wav"));
            write_wav(&path, from, bits, true, &x);
            let e = ent_features::load(&path).unwrap_err();
            assert!(
                matches!(e, FeatureError::OutOfRange { index: 0, .. }),
                "{from} Hz f{bits}: {e}"
            );
            let mut s = AudioStream::open(&path, 16_000).unwrap();
            let got = drain(&mut s);
            let what = format!("{from} Hz f{bits}");
            assert_eq!(got.len(), want.len(), "{what}");
            assert!(
                got.iter().all(|v| v.abs() <= 1.0),
                "{what}: beyond the tone's level"
            );
            // Each run lies in a reported stretch that starts where a run starts (runs less
            // than a second apart are listed as one).
            let damage = s.damage();
            let secs = |i: usize| i as f64 / from as f64;
            assert!(
                !damage.is_empty() && damage.len() <= 3,
                "{what}: {damage:?}"
            );
            for &(at, len) in &runs {
                assert!(
                    damage
                        .iter()
                        .any(|d| d.start <= secs(at) && d.end.is_some_and(|e| e >= secs(at + len))),
                    "{what}: run at {at} not reported in {damage:?}"
                );
            }
            for d in damage {
                assert!(
                    runs.iter().any(|&(at, _)| d.start == secs(at)),
                    "{what}: {d:?}"
                );
                assert!(d.detail.contains("cannot be audio"), "{what}: {d:?}");
            }
            // Beyond the filter's reach (three blocks) of the damage, the clean audio.
            let margin = 3 * block;
            for (a, b) in [
                (3 + margin, 32_766 - margin),
                (32_770 + margin, n - 2 - margin),
            ] {
                if a < b {
                    let (a, b) = (a * 16_000 / from as usize, b * 16_000 / from as usize);
                    assert_eq!(got[a..b], want[a..b], "{what}: {a}..{b}");
                }
            }
        }
    }
}

/// Integer formats cannot hold values beyond full scale: their most negative and most
/// positive codes decode within [-1, 1] and are never damage (8, 16, 24 and 32 bits).
#[test]
fn integer_full_scale_is_audio() {
    let dir = tempfile::tempdir().unwrap();
    for bits in [8u16, 16, 24, 32] {
        for rate in [8000, 44_100] {
            let x: Vec<f64> = (0..rate as usize)
                .map(|i| if (i / 7) % 2 == 0 { 1.0 } else { -1.0 })
                .collect();
            let path = dir.path().join(format!("i{bits}_{rate}.wav"));
            write_wav(&path, rate, bits, false, &x);
            let a = ent_features::load(&path).unwrap();
            assert!(a.samples.iter().all(|v| v.abs() <= 1.0), "{bits} bits");
            assert!(a.samples.iter().any(|&v| v == -1.0), "{bits} bits");
            let mut s = AudioStream::open(&path, 16_000).unwrap();
            let got = drain(&mut s);
            assert!(s.damage().is_empty(), "{bits} bits: {:?}", s.damage());
            assert!(got.iter().all(|v| v.is_finite() && v.abs() < 2.0));
        }
    }
    for name in ["tone.flac", "ramp_20s.flac", "tone_u8.wav", "tone_s24.wav"] {
        let a = ent_features::load(fixture(name)).unwrap();
        assert!(a.samples.iter().all(|v| v.abs() <= 1.0), "{name}");
    }
}

/// Lossy formats decode damaged packets into floats of any size: one byte changed in the
/// MP3 and Ogg fixtures gives samples of 72.7 and -80.2. Decoded whole that is an error; streamed,
/// reported silence, with the rest of the file kept.
#[test]
fn lossy_packets_decoding_beyond_the_bound_are_damage() {
    let dir = tempfile::tempdir().unwrap();
    for (name, at, byte) in [("tone.mp3", 2948, 0xe6), ("tone.ogg", 4135, 0x02)] {
        let mut b = std::fs::read(fixture(name)).unwrap();
        b[at] = byte;
        if name.ends_with(".ogg") {
            ent_testkit::mutate::fix_ogg_crcs(&mut b);
        }
        let e = ent_features::decode(&b).unwrap_err();
        assert!(
            matches!(e, FeatureError::OutOfRange { value, .. } if value.abs() > MAX_SAMPLE),
            "{name}: {e}"
        );
        let path = dir.path().join(name);
        std::fs::write(&path, &b).unwrap();
        let clean = ent_features::load_resampled(fixture(name), 16_000)
            .unwrap()
            .samples;
        let mut s = AudioStream::open(&path, 16_000).unwrap();
        let got = drain(&mut s);
        assert_eq!(got.len(), clean.len(), "{name}");
        assert!(got.iter().all(|v| v.abs() <= MAX_SAMPLE), "{name}");
        let d = s.damage();
        assert_eq!(d.len(), 1, "{name}: {d:?}");
        assert!(d[0].detail.contains("cannot be audio"), "{name}: {d:?}");
        let dur = clean.len() as f64 / 16_000.0;
        assert!(
            d[0].start >= 0.0 && d[0].end.is_some_and(|e| e <= dur + 1e-9),
            "{name}: {d:?}"
        );
    }
}
