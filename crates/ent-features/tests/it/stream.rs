//! Streaming decode: the same samples as a whole-file decode, bounded blocks, and damage in the
//! middle stepped over and reported with its time.

use ent_features::{AudioStream, FeatureError, load_resampled};

use crate::fixture;

fn drain(s: &mut AudioStream) -> Vec<f32> {
    let mut all = Vec::new();
    while let Some(b) = s.next_block().unwrap() {
        assert!(!b.is_empty());
        all.extend(b);
    }
    all
}

fn same_bits(a: &[f32], b: &[f32]) -> bool {
    a.len() == b.len() && a.iter().zip(b).all(|(x, y)| x.to_bits() == y.to_bits())
}

#[test]
fn streams_equal_whole_file_decodes() {
    for name in [
        "tone.wav",
        "tone.flac",
        "tone_f32.wav",
        "tone_f64.wav",
        "tone.ogg",
        "tone.mp3",
        "ramp_20s.flac",
        "sentence.wav",
    ] {
        for rate in [16_000, 44_100] {
            let want = load_resampled(fixture(name), rate).unwrap().samples;
            let mut s = AudioStream::open(fixture(name), rate).unwrap();
            assert_eq!(s.sample_rate(), rate);
            let got = drain(&mut s);
            assert!(
                same_bits(&got, &want),
                "{name} at {rate} Hz: {} vs {}",
                got.len(),
                want.len()
            );
            assert!(s.damage().is_empty(), "{name}: {:?}", s.damage());
            assert!(
                s.next_block().unwrap().is_none(),
                "{name}: the end stays the end"
            );
        }
    }
}

/// A stretch of NaN samples: silence in its place, the rest untouched, the stretch reported.
#[test]
fn non_finite_stretches_become_reported_silence() {
    let dir = tempfile::tempdir().unwrap();
    let rate = 8000;
    let clean: Vec<f32> = (0..rate * 12)
        .map(|i| (i as f32 * 0.01).sin() * 0.3)
        .collect();
    let mut bad = clean.clone();
    for x in &mut bad[rate * 5..rate * 7] {
        *x = f32::NAN;
    }
    bad[rate * 9] = f32::INFINITY;
    let path = dir.path().join("nan.wav");
    ent_testkit::wav::write_f32(&path, rate as u32, &bad);
    // The whole-file decode refuses it; the stream reads it all.
    assert!(matches!(
        ent_features::load(&path).unwrap_err(),
        FeatureError::NonFinite { .. }
    ));
    let mut s = AudioStream::open(&path, rate as u32).unwrap();
    let got = drain(&mut s);
    assert_eq!(got.len(), clean.len());
    assert_eq!(got[..rate * 5], clean[..rate * 5]);
    assert!(got[rate * 5..rate * 7].iter().all(|&x| x == 0.0));
    assert_eq!(got[rate * 7..rate * 9], clean[rate * 7..rate * 9]);
    assert_eq!(got[rate * 9], 0.0);
    assert_eq!(got[rate * 9 + 1..], clean[rate * 9 + 1..]);
    let d = s.damage();
    assert_eq!(d.len(), 2, "{d:?}");
    assert_eq!((d[0].start, d[0].end), (5.0, Some(7.0)));
    assert_eq!(d[1].start, 9.0);
    let text = d[0].to_string();
    assert!(
        text.contains("0:05.000") && text.contains("0:07.000"),
        "{text}"
    );
}

/// Makes a FLAC file's SEEKTABLE inconsistent (its first point's offset past the end), so
/// that segments are decoded from the start instead of seeking.
fn break_seek_table(flac: &mut [u8]) {
    let mut pos = 4;
    loop {
        let kind = flac[pos] & 0x7F;
        let last = flac[pos] & 0x80 != 0;
        let size = u32::from_be_bytes([0, flac[pos + 1], flac[pos + 2], flac[pos + 3]]) as usize;
        if kind == 3 {
            flac[pos + 4 + 8..pos + 4 + 16].copy_from_slice(&(u64::MAX - 5).to_be_bytes());
            return;
        }
        assert!(!last, "no SEEKTABLE");
        pos += 4 + size;
    }
}

/// Garbage over a stretch of FLAC frames: the audio before and after it is decoded, the
/// stretch is silence of about its length, and the damage names where it is; with a seek
/// table, and without a usable one (decoding from the start past the damage).
#[test]
fn corrupt_flac_frames_are_stepped_over() {
    let whole = ent_features::load(fixture("ramp_20s.flac"))
        .unwrap()
        .samples;
    for seek_table in [true, false] {
        let dir = tempfile::tempdir().unwrap();
        let mut bytes = std::fs::read(fixture("ramp_20s.flac")).unwrap();
        if !seek_table {
            break_seek_table(&mut bytes);
        }
        let n = bytes.len();
        for (i, b) in bytes[n / 2..n / 2 + 3000].iter_mut().enumerate() {
            *b = (i as u8).wrapping_mul(151).wrapping_add(7);
        }
        let path = dir.path().join("corrupt.flac");
        std::fs::write(&path, &bytes).unwrap();
        assert!(
            ent_features::load(&path).is_err(),
            "the whole-file decode refuses it"
        );
        let mut s = AudioStream::open(&path, 8000).unwrap();
        let got = drain(&mut s);
        let d = s.damage().to_vec();
        assert_eq!(d.len(), 1, "{d:?}");
        // The ramp is 20 s; the garbage sits near its middle.
        let (start, end) = (
            d[0].start,
            d[0].end.expect("decoding resumed after the damage"),
        );
        assert!((8.0..11.0).contains(&start), "{d:?}");
        assert!(end > start && end - start < 4.0, "{d:?}");
        let (a, b) = ((start * 8000.0) as usize, (end * 8000.0).ceil() as usize);
        // Before the damage: the clean decode, sample for sample.
        assert_eq!(got[..a], whole[..a], "seek table {seek_table}");
        // After it: the clean decode again, at the same times.
        assert_eq!(got.len(), whole.len(), "times after the damage stay right");
        assert_eq!(got[b..], whole[b..], "seek table {seek_table}");
        assert!(got[a..b].iter().all(|&x| x == 0.0));
    }
}

/// A WAV cut short: what is there is read, the rest is reported as lost.
#[test]
fn truncated_files_report_the_lost_end() {
    let dir = tempfile::tempdir().unwrap();
    let rate = 8000;
    let clean: Vec<f32> = (0..rate * 4)
        .map(|i| (i as f32 * 0.02).sin() * 0.3)
        .collect();
    let path = dir.path().join("cut.wav");
    ent_testkit::wav::write_f32(&path, rate as u32, &clean);
    let bytes = std::fs::read(&path).unwrap();
    std::fs::write(&path, &bytes[..bytes.len() - 4 * rate * 2]).unwrap();
    let mut s = AudioStream::open(&path, rate as u32).unwrap_or_else(|e| panic!("{e}"));
    let got = drain(&mut s);
    assert_eq!(got[..], clean[..got.len()]);
    assert!(
        got.len() >= rate * 2 - 4096 && got.len() <= rate * 2,
        "{}",
        got.len()
    );
    let d = s.damage();
    assert_eq!(d.len(), 1, "{d:?}");
    assert_eq!(d[0].end, None);
    assert!(d[0].to_string().contains("to the end"), "{}", d[0]);
}

#[test]
fn unreadable_files_are_errors_at_open_or_first_block() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("missing.wav");
    assert!(matches!(
        AudioStream::open(&missing, 16000).unwrap_err(),
        FeatureError::Io { .. }
    ));
    let junk = dir.path().join("junk.wav");
    std::fs::write(&junk, b"RIFF this is not audio at all").unwrap();
    assert!(AudioStream::open(&junk, 16000).is_err());
}
