//! No input may panic the decoders.
//!
//! Property tests feed random bytes behind each format's magic number, and truncated or
//! corrupted copies of every fixture, to `decode` and `decode_segment`; every one must return
//! `Ok` or `Err`. `ENT_FUZZ_CASES=N` runs N cases per property instead of the default 256
//! (`docs/benchmarks.md` records longer runs). Inputs that once crashed a decoder, and a
//! coverage-minimised sample of the cargo-fuzz corpus (`fuzz/`), are kept in
//! `tests/fuzz-corpus/` and replayed by `corpus_decodes_without_panicking`.

use std::panic::{AssertUnwindSafe, catch_unwind};

use ent_features::{Segment, decode, decode_segment};
use ent_testkit::mutate::{apply, fix_ogg_crcs, mutation};
use proptest::prelude::*;

use crate::fixture;

fn cases(default: u32) -> u32 {
    std::env::var("ENT_FUZZ_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// Decodes `bytes` whole and as a segment. A panic fails, and so does a panic that the
/// decoding guard caught and turned into an error (`FeatureError::Corrupt` "the decoder failed
/// on malformed data"): the guard is a last line of defence for users, not a licence for the
/// decoders to panic. Failing inputs are saved for the corpus.
fn survives(bytes: &[u8]) -> Result<(), String> {
    for seg in [Segment::WHOLE, Segment::new(0.05, 0.1)] {
        let r = catch_unwind(AssertUnwindSafe(|| decode_segment(bytes, seg)));
        let guarded = matches!(&r, Ok(Err(e)) if e.to_string().contains("the decoder failed"));
        if r.is_err() || guarded {
            let path = std::env::temp_dir().join(format!(
                "ent-features-crash-{:016x}.bin",
                bytes
                    .iter()
                    .fold(0xcbf2_9ce4_8422_2325u64, |h, &b| (h ^ b as u64)
                        .wrapping_mul(0x100_0000_01b3))
            ));
            let _ = std::fs::write(&path, bytes);
            return Err(format!(
                "decoder panicked on {} bytes (saved to {}, add it to tests/fuzz-corpus)",
                bytes.len(),
                path.display()
            ));
        }
    }
    Ok(())
}

const FIXTURES: [&str; 9] = [
    "tone.wav",
    "tone.flac",
    "tone.ogg",
    "tone.mp3",
    "tone_s24.wav",
    "tone_f32.wav",
    "tone_f64.wav",
    "tone_u8.wav",
    "tone_alaw.wav",
];

fn fixture_bytes() -> Vec<Vec<u8>> {
    FIXTURES
        .iter()
        .map(|n| std::fs::read(fixture(n)).unwrap())
        .collect()
}

fn magic() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        Just(b"RIFF\x24\x00\x00\x00WAVEfmt ".to_vec()),
        Just(b"fLaC".to_vec()),
        Just(b"OggS\x00\x02".to_vec()),
        Just(b"ID3\x04\x00\x00".to_vec()),
        Just(vec![0xFF, 0xFB, 0x90, 0x64]),
        Just(Vec::new()),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(cases(256)))]

    #[test]
    fn random_bytes_never_panic(head in magic(), tail in prop::collection::vec(any::<u8>(), 0..2048)) {
        let mut bytes = head;
        bytes.extend(tail);
        prop_assert!(survives(&bytes).is_ok(), "{}", survives(&bytes).unwrap_err());
    }

    /// With `crcs`, Ogg page checksums are recomputed after the mutations, so that damaged
    /// headers and packets reach the Vorbis parsers.
    #[test]
    fn mutated_fixtures_never_panic(
        which in 0..FIXTURES.len(),
        m in mutation(),
        m2 in mutation(),
        crcs in any::<bool>(),
    ) {
        let mut bytes = apply(apply(fixture_bytes()[which].clone(), &m), &m2);
        if crcs {
            fix_ogg_crcs(&mut bytes);
        }
        let r = survives(&bytes);
        prop_assert!(r.is_ok(), "{} ({:?}, {:?}, crcs {})", r.unwrap_err(), m, m2, crcs);
    }
}

#[test]
fn every_truncation_of_small_headers_is_handled() {
    // Exhaustive over the first 2 kB of each fixture: every header field cut at every byte.
    for (name, bytes) in FIXTURES.iter().zip(fixture_bytes()) {
        for n in 0..bytes.len().min(2048) {
            if let Err(e) = survives(&bytes[..n]) {
                panic!("{name} cut to {n} bytes: {e}");
            }
            if n > 0 {
                assert!(
                    decode(&bytes[..n]).is_err() || n > 44,
                    "{name} cut to {n} bytes"
                );
            }
        }
    }
}

#[test]
fn corpus_decodes_without_panicking() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fuzz-corpus");
    let mut n = 0;
    for entry in std::fs::read_dir(&dir).unwrap() {
        let path = entry.unwrap().path();
        let bytes = std::fs::read(&path).unwrap();
        if let Err(e) = survives(&bytes) {
            panic!("{}: {e}", path.display());
        }
        n += 1;
    }
    assert!(n > 0, "the corpus in {} is empty", dir.display());
}
