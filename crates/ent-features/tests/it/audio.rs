//! Decoding every supported format, segments, mix-down and the errors for bad files.

use std::path::Path;

use ent_features::{
    Audio, Fbank, FbankOptions, FeatureError, Segment, decode, fbank_batch, load, load_batch,
    load_segment,
};

use crate::fixture;

/// The master fixture: 0.3 s at 44.1 kHz, left 0.5 sin(2 pi 440 t), right 0.25 sin(2 pi 660 t),
/// stored as 16-bit integers.
fn master() -> Audio {
    load(fixture("tone.wav")).unwrap()
}

fn analytic(i: usize) -> f32 {
    let t = i as f64 / 44100.0;
    let q = |x: f64| (x * 32767.0).round() / 32768.0;
    ((q(0.5 * (std::f64::consts::TAU * 440.0 * t).sin())
        + q(0.25 * (std::f64::consts::TAU * 660.0 * t).sin()))
        / 2.0) as f32
}

#[test]
fn wav_is_scaled_and_mixed_down() {
    let a = master();
    assert_eq!(a.sample_rate, 44100);
    assert_eq!(a.samples.len(), 13230);
    // Each channel is int / 32768; the mono sample is their mean (exact in f32 here).
    for (i, &s) in a.samples.iter().enumerate() {
        assert_eq!(s, analytic(i), "sample {i}");
    }
}

#[test]
fn lossless_formats_decode_identically() {
    let want = master();
    for name in ["tone.flac", "tone_s24.wav", "tone_f32.wav", "tone_f64.wav"] {
        let got = load(fixture(name)).unwrap();
        assert_eq!(got.sample_rate, 44100, "{name}");
        assert_eq!(got.samples, want.samples, "{name}");
    }
}

#[test]
fn eight_bit_and_a_law_are_within_their_quantisation() {
    let want = master();
    // 8-bit: steps of 1/128, and sox adds triangular dither of +-1 step when it reduces the bit
    // depth, so at most 1.5 steps; A-law: 13-bit segments, steps of 1/64 at full scale.
    for (name, tol) in [("tone_u8.wav", 1.5 / 128.0), ("tone_alaw.wav", 1.0 / 64.0)] {
        let got = load(fixture(name)).unwrap();
        assert_eq!(got.samples.len(), want.samples.len(), "{name}");
        let worst = got
            .samples
            .iter()
            .zip(&want.samples)
            .map(|(a, b)| (a - b).abs())
            .fold(0f32, f32::max);
        assert!(worst <= tol, "{name}: {worst}");
    }
}

/// Signal-to-noise ratio of `got` against `want` in dB, over the common length.
fn snr_db(got: &[f32], want: &[f32]) -> f64 {
    let (mut s, mut n) = (0f64, 0f64);
    for (a, b) in got.iter().zip(want) {
        s += (*b as f64).powi(2);
        n += (*a as f64 - *b as f64).powi(2);
    }
    10.0 * (s / n).log10()
}

#[test]
fn lossy_formats_are_gapless_and_close() {
    let want = master();
    for name in ["tone.ogg", "tone.mp3"] {
        let got = load(fixture(name)).unwrap();
        assert_eq!(got.sample_rate, 44100, "{name}");
        // Encoder delay and padding are trimmed: same length, same alignment.
        assert_eq!(got.samples.len(), want.samples.len(), "{name}");
        let snr = snr_db(&got.samples, &want.samples);
        assert!(snr > 25.0, "{name}: SNR {snr:.1} dB");
    }
}

#[test]
fn segments_equal_slices_of_the_whole() {
    for name in [
        "tone.wav",
        "tone.flac",
        "tone_s24.wav",
        "tone_f32.wav",
        "tone_u8.wav",
        "tone_f64.wav",
        "tone.ogg",
        "tone.mp3",
    ] {
        let whole = load(fixture(name)).unwrap();
        for (offset, duration) in [(0.0, 0.1), (0.1, 0.05), (0.2137, 0.5), (0.0231, 0.2)] {
            let seg = load_segment(fixture(name), Segment::new(offset, duration)).unwrap();
            let first = (offset * 44100.0f64).round() as usize;
            let count = ((duration * 44100.0f64).round() as usize).min(whole.samples.len() - first);
            let want = &whole.samples[first..first + count];
            assert_eq!(seg.samples.len(), count, "{name} at {offset}");
            assert_eq!(seg.samples, want, "{name} at {offset}");
        }
        let tail = load_segment(
            fixture(name),
            Segment {
                offset: 0.25,
                duration: None,
            },
        )
        .unwrap();
        assert_eq!(tail.samples.len(), whole.samples.len() - 11025, "{name}");
    }
}

/// Long files, where symphonia really searches: FLAC's binary search over more than 16 kB of
/// frames with a seek table, Ogg's bisection over more than two maximum-size pages, on an Ogg
/// stream that starts at a granule position above zero (its first audio pages cut away).
#[test]
fn long_file_segments_equal_slices_of_the_whole() {
    for (name, rate) in [("ramp_20s.flac", 8000.0), ("chirp_cut.ogg", 8000.0)] {
        let whole = load(fixture(name)).unwrap();
        assert_eq!(whole.sample_rate, 8000);
        let secs = whole.samples.len() as f64 / rate;
        for offset in [0.75, 3.3, secs / 2.0, secs - 1.5] {
            let seg = load_segment(fixture(name), Segment::new(offset, 0.5)).unwrap();
            let first = (offset * rate).round() as usize;
            assert_eq!(seg.samples.len(), 4000, "{name} at {offset}");
            assert_eq!(
                seg.samples,
                whole.samples[first..first + 4000],
                "{name} at {offset}"
            );
        }
        // A segment starting exactly at the end (or after it) is empty, not truncated.
        for offset in [secs, secs + 1.0] {
            let e = load_segment(fixture(name), Segment::new(offset, 1.0)).unwrap_err();
            assert!(
                matches!(e, FeatureError::Empty { .. }),
                "{name} at {offset}: {e}"
            );
        }
    }
    // The ramp is known sample for sample: the FLAC decode is exact.
    let ramp = load(fixture("ramp_20s.flac")).unwrap().samples;
    assert_eq!(ramp.len(), 160_000);
    for (i, &v) in ramp.iter().enumerate().step_by(997) {
        let want = ((i as f64 * 21.837) % 65536.0 - 32768.0) as i16 as f32 / 32768.0;
        assert_eq!(v, want, "sample {i}");
    }
}

/// symphonia 0.6.1 trusts a FLAC seek table and subtracts past zero on an inconsistent one
/// (found by fuzzing); such files are decoded from the start instead, with the same result.
#[test]
fn inconsistent_flac_seek_tables_fall_back_to_decoding() {
    let mut flac = std::fs::read(fixture("tone.flac")).unwrap();
    // tone.flac: STREAMINFO at 4, SEEKTABLE at 42 with one point (sample 0, offset 0).
    assert_eq!(flac[42] & 0x7F, 3);
    flac[46 + 8..46 + 16].copy_from_slice(&u64::MAX.wrapping_sub(5).to_be_bytes());
    let whole = decode(&flac).unwrap();
    assert_eq!(whole, load(fixture("tone.flac")).unwrap());
    let seg = ent_features::decode_segment(&flac, Segment::new(0.2, 0.05)).unwrap();
    assert_eq!(seg.samples, whole.samples[8820..8820 + 2205]);
}

#[test]
fn segment_errors() {
    let e = load_segment(fixture("tone.flac"), Segment::new(5.0, 1.0)).unwrap_err();
    assert!(matches!(e, FeatureError::Empty { .. }), "{e}");
    assert!(e.to_string().contains("tone.flac"), "{e}");
    let e = load_segment(fixture("tone.wav"), Segment::new(-1.0, 1.0)).unwrap_err();
    assert!(e.to_string().contains("segment offset"), "{e}");
    let e = load_segment(fixture("tone.wav"), Segment::new(0.0, f64::NAN)).unwrap_err();
    assert!(e.to_string().contains("segment duration"), "{e}");
}

#[test]
fn in_memory_decoding_matches_files() {
    for name in ["tone.wav", "tone.flac", "tone.ogg", "tone.mp3"] {
        let bytes = std::fs::read(fixture(name)).unwrap();
        assert_eq!(
            decode(&bytes).unwrap(),
            load(fixture(name)).unwrap(),
            "{name}"
        );
    }
}

/// A WAV file written by hand: 24-bit samples in 4-byte containers (`WAVE_FORMAT_EXTENSIBLE`),
/// the layout whose seeking hound gets wrong.
fn wav_24_in_32(samples: &[i32], rate: u32) -> Vec<u8> {
    let mut data = Vec::new();
    for &s in samples {
        data.extend_from_slice(&(s << 8).to_le_bytes());
    }
    let mut fmt = Vec::new();
    fmt.extend_from_slice(&0xFFFEu16.to_le_bytes()); // WAVE_FORMAT_EXTENSIBLE
    fmt.extend_from_slice(&1u16.to_le_bytes()); // channels
    fmt.extend_from_slice(&rate.to_le_bytes());
    fmt.extend_from_slice(&(rate * 4).to_le_bytes()); // byte rate
    fmt.extend_from_slice(&4u16.to_le_bytes()); // block align
    fmt.extend_from_slice(&32u16.to_le_bytes()); // container bits
    fmt.extend_from_slice(&22u16.to_le_bytes()); // extension size
    fmt.extend_from_slice(&24u16.to_le_bytes()); // valid bits
    fmt.extend_from_slice(&4u32.to_le_bytes()); // channel mask
    fmt.extend_from_slice(&[
        0x01, 0x00, 0x00, 0x00, 0x00, 0x00, 0x10, 0x00, 0x80, 0x00, 0x00, 0xAA, 0x00, 0x38, 0x9B,
        0x71,
    ]); // KSDATAFORMAT_SUBTYPE_PCM
    let mut out = b"RIFF".to_vec();
    out.extend_from_slice(&((4 + 8 + fmt.len() + 8 + data.len()) as u32).to_le_bytes());
    out.extend_from_slice(b"WAVEfmt ");
    out.extend_from_slice(&(fmt.len() as u32).to_le_bytes());
    out.extend_from_slice(&fmt);
    out.extend_from_slice(b"data");
    out.extend_from_slice(&(data.len() as u32).to_le_bytes());
    out.extend_from_slice(&data);
    out
}

#[test]
fn twenty_four_bit_in_four_byte_containers_seek_correctly() {
    let samples: Vec<i32> = (0..1000).map(|i| (i - 500) * 9973).collect();
    let bytes = wav_24_in_32(&samples, 1000);
    let whole = decode(&bytes).unwrap();
    let want: Vec<f32> = samples.iter().map(|&s| s as f32 / 8_388_608.0).collect();
    assert_eq!(whole.samples, want);
    let seg = ent_features::decode_segment(&bytes, Segment::new(0.25, 0.1)).unwrap();
    assert_eq!(seg.samples, want[250..350]);
}

/// Writes `bytes` to `name` in `dir`.
fn tmp(dir: &tempfile::TempDir, name: &str, bytes: &[u8]) -> std::path::PathBuf {
    let p = dir.path().join(name);
    std::fs::write(&p, bytes).unwrap();
    p
}

#[test]
fn bad_files_are_named_errors() {
    let named = |e: &FeatureError, p: &Path| {
        let s = e.to_string();
        assert!(s.contains(&p.display().to_string()), "{s}");
        s
    };
    // Missing file.
    let p = Path::new("/nonexistent/speech.wav");
    let e = load(p).unwrap_err();
    assert!(matches!(e, FeatureError::Io { .. }));
    named(&e, p);
    // A directory.
    let e = load(std::env::temp_dir()).unwrap_err();
    assert!(matches!(e, FeatureError::Io { .. }), "{e}");
    // Empty file.
    let dir = tempfile::Builder::new()
        .prefix("ent-features-")
        .tempdir()
        .unwrap();
    let p = tmp(&dir, "empty.wav", b"");
    let e = load(&p).unwrap_err();
    assert!(matches!(e, FeatureError::Empty { .. }), "{e}");
    named(&e, &p);
    // Not audio.
    let p = tmp(
        &dir,
        "notes.mp3",
        b"these are not the samples you are looking for\n",
    );
    let e = load(&p).unwrap_err();
    assert!(
        matches!(
            e,
            FeatureError::Unsupported { .. } | FeatureError::Corrupt { .. }
        ),
        "{e}"
    );
    named(&e, &p);
    // Truncated WAV: the header promises more data than the file holds.
    let wav = std::fs::read(fixture("tone.wav")).unwrap();
    let p = tmp(&dir, "cut.wav", &wav[..wav.len() / 2]);
    let e = load(&p).unwrap_err();
    assert!(matches!(e, FeatureError::Truncated { .. }), "{e}");
    named(&e, &p);
    // Truncated FLAC.
    let flac = std::fs::read(fixture("tone.flac")).unwrap();
    let p = tmp(&dir, "cut.flac", &flac[..flac.len() * 2 / 3]);
    let e = load(&p).unwrap_err();
    assert!(
        matches!(
            e,
            FeatureError::Truncated { .. } | FeatureError::Corrupt { .. }
        ),
        "{e}"
    );
    named(&e, &p);
    // A WAV header with no samples.
    let p = tmp(&dir, "silent.wav", &wav_24_in_32(&[], 16000));
    let e = load(&p).unwrap_err();
    assert!(matches!(e, FeatureError::Empty { .. }), "{e}");
    named(&e, &p);
    // A float WAV holding a NaN.
    let mut f32wav = std::fs::read(fixture("tone_f32.wav")).unwrap();
    let at = f32wav.len() - 4 * 100;
    f32wav[at..at + 4].copy_from_slice(&f32::NAN.to_le_bytes());
    let p = tmp(&dir, "nan.wav", &f32wav);
    let e = load(&p).unwrap_err();
    assert!(matches!(e, FeatureError::NonFinite { .. }), "{e}");
    assert!(named(&e, &p).contains("is not finite"));
}

#[test]
fn batches_keep_order_and_report_each_file() {
    let paths = vec![
        fixture("tone.flac"),
        std::path::PathBuf::from("/nonexistent.wav"),
        fixture("sentence.wav"),
    ];
    let done = std::sync::atomic::AtomicUsize::new(0);
    let progress = |_: &Path| {
        done.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    };
    let audio = load_batch(&paths, 16000, &progress);
    assert_eq!(done.load(std::sync::atomic::Ordering::Relaxed), 3);
    assert_eq!(audio.len(), 3);
    assert_eq!(audio[0].as_ref().unwrap().samples.len(), 4800); // 0.3 s at 16 kHz
    assert!(audio[1].is_err());
    assert_eq!(
        audio[2].as_ref().unwrap().samples,
        load(fixture("sentence.wav")).unwrap().samples
    );

    let fbank = Fbank::new(FbankOptions::default()).unwrap();
    let feats = fbank_batch(&paths, &fbank, &|_| {});
    assert_eq!(feats[0].as_ref().unwrap().dims(), &[28, 80]);
    assert!(matches!(feats[1], Err(FeatureError::Io { .. })));
    let direct = fbank
        .compute(&load(fixture("sentence.wav")).unwrap().samples)
        .unwrap();
    let batched = feats[2].as_ref().unwrap();
    assert_eq!(
        direct.flatten_all().unwrap().to_vec1::<f32>().unwrap(),
        batched.flatten_all().unwrap().to_vec1::<f32>().unwrap()
    );
}
