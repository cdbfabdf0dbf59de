//! Audio headers read by `ent_features::probe`, as data preparation uses them.

use super::*;

#[test]
fn probe_reads_wav_headers_and_names_bad_files() {
    let t = TempDir::new("probe");
    let p = t.wav("a.wav", 1.5, 16_000);
    let info = ent_features::probe(&p).expect("probe");
    assert_eq!(
        info,
        ent_features::AudioInfo {
            sample_rate: 16_000,
            channels: 1,
            frames: Some(24_000)
        }
    );
    assert_eq!(info.duration_secs(), Some(1.5));

    // Cut short: the header states 1 s, the file holds 0.5 s.
    let mut bytes = wav_bytes(8_000, 8_000);
    bytes.truncate(44 + 8_000);
    let cut = t.write("cut.wav", bytes);
    let e = ent_features::probe(&cut)
        .expect_err("truncated")
        .to_string();
    assert!(e.contains("cut.wav") && e.contains("truncated"), "{e}");

    let junk = t.write("junk.wav", b"this is not audio at all, not even close");
    let e = ent_features::probe(&junk).expect_err("junk").to_string();
    assert!(e.contains("junk.wav"), "{e}");

    let e = ent_features::probe(t.path().join("none.wav"))
        .expect_err("missing")
        .to_string();
    assert!(e.contains("none.wav"), "{e}");

    let empty = t.write("empty.wav", b"");
    assert!(ent_features::probe(&empty).is_err());
    assert!(ent_features::probe(t.path()).is_err());
}
