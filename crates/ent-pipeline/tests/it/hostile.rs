//! Hostile audio, from bytes to transcript: mutated copies of a file of every supported format
//! (16/24/32-bit integer, 32/64-bit float, 8-bit, A-law WAV, FLAC, Ogg Vorbis, MP3) go through
//! `Engine::transcribe_file` and through the training data path (`prepare`, then the features
//! the loader computes). Each must end in a transcript or an error, never a panic (not even one
//! caught inside and turned into an error), never a hang; a transcript's damaged stretches,
//! tokens and segments lie inside the file, its numbers are finite; an utterance that
//! `prepare` keeps gives finite features.
//!
//! Bounded: `ENT_FUZZ_CASES` cases (default 600) or `ENT_FUZZ_SECS` seconds (default 60; 0 for
//! no limit), whichever ends first. The long run of docs/benchmarks.md:
//! `ENT_FUZZ_CASES=10000 ENT_FUZZ_SECS=0 cargo test --release -p ent-pipeline --test it hostile -- --nocapture`.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock, mpsc};
use std::time::{Duration, Instant};

use candle_core::Device;
use ent_decode::Search;
use ent_features::{AudioStream, Segment};
use ent_pipeline::Engine;
use ent_testkit::mutate::{Mutation, apply, fix_ogg_crcs, mutation};
use ent_train::data::{BadDataPolicy, EmotionMap, Utterance, Vocab, prepare};
use ent_train::features::FeatureSource;
use proptest::prelude::*;
use proptest::test_runner::{Config, TestCaseError, TestError, TestRunner};

use crate::{audio, feature_fixture};

/// Panics anywhere in the process (caught or not), counted by a hook installed once.
static PANICS: AtomicUsize = AtomicUsize::new(0);

fn count_panics() {
    static HOOK: OnceLock<()> = OnceLock::new();
    HOOK.get_or_init(|| {
        let previous = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            PANICS.fetch_add(1, Ordering::SeqCst);
            previous(info);
        }));
    });
}

fn env_or(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// A case that takes longer than this is a hang.
const HANG: Duration = Duration::from_secs(120);

/// Seed files, one per format: the ent-features fixtures (0.3 s stereo tones at 44.1 kHz, a
/// sentence at 16 kHz), the sentence as 32-bit integer and 32-bit float WAV (the float WAV with
/// junk written over its samples is the file that once panicked the resampler), the first
/// pages of a longer Ogg file, and a demo recording (FLAC speech).
fn seeds(dir: &Path) -> Vec<(String, Vec<u8>)> {
    let mut out: Vec<(String, Vec<u8>)> = [
        "tone.wav",
        "tone_s24.wav",
        "tone_f32.wav",
        "tone_f64.wav",
        "tone_u8.wav",
        "tone_alaw.wav",
        "tone.flac",
        "tone.ogg",
        "tone.mp3",
        "sentence.wav",
    ]
    .iter()
    .map(|n| (n.to_string(), std::fs::read(feature_fixture(n)).unwrap()))
    .collect();
    let sentence = ent_features::load(feature_fixture("sentence.wav")).unwrap();
    for (name, bits, format) in [
        ("sentence_i32.wav", 32, hound::SampleFormat::Int),
        ("sentence_f32.wav", 32, hound::SampleFormat::Float),
    ] {
        let path = dir.join(name);
        let spec = hound::WavSpec {
            channels: 1,
            sample_rate: sentence.sample_rate,
            bits_per_sample: bits,
            sample_format: format,
        };
        let mut w = hound::WavWriter::create(&path, spec).unwrap();
        for &x in &sentence.samples {
            match format {
                hound::SampleFormat::Int => w.write_sample((x as f64 * 2f64.powi(31)) as i32),
                hound::SampleFormat::Float => w.write_sample(x),
            }
            .unwrap();
        }
        w.finalize().unwrap();
        out.push((name.to_string(), std::fs::read(&path).unwrap()));
    }
    // Most of tone.ogg is the Vorbis setup header: a longer Ogg file too, the first pages of
    // chirp_cut.ogg up to the first packet end after 8 kB (16 s at 8 kHz; a stream without
    // its last page, whose end is reported as damage).
    let chirp = std::fs::read(feature_fixture("chirp_cut.ogg")).unwrap();
    let (mut end, mut open) = (0, true);
    while (end < 8_000 || open) && chirp[end..].starts_with(b"OggS") {
        let segments = chirp[end + 26] as usize;
        let lacing = &chirp[end + 27..end + 27 + segments];
        open = lacing.last() == Some(&255);
        end += 27 + segments + lacing.iter().map(|&x| x as usize).sum::<usize>();
    }
    out.push(("chirp.ogg".to_string(), chirp[..end].to_vec()));
    let demo = "en-gb-x-gbcwmd-m8_ang_s01.flac";
    out.push((demo.to_string(), std::fs::read(audio(demo)).unwrap()));
    out
}

/// What one mutated file gave.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Outcome {
    Transcribed,
    TranscribedWithDamage,
    /// An error, of the kind named.
    Refused(&'static str),
}

/// The kind of a refusal, from its message.
fn kind(message: &str) -> &'static str {
    [
        "unsupported audio format",
        "truncated audio",
        "corrupt audio",
        "no audio samples",
        "too short",
        "cannot be audio",
        "not finite",
        "cannot resample",
    ]
    .into_iter()
    .find(|k| message.contains(k))
    .unwrap_or("other")
}

/// Cases by seed file, outcome, and whether `prepare` kept the file.
type Tally = BTreeMap<(String, Outcome, bool), usize>;

/// Everything the two paths must hold for `bytes` written as `name`; the outcome.
fn check(
    engine: &Engine,
    source: &FeatureSource,
    dir: &Path,
    name: &str,
    bytes: &[u8],
) -> Result<(Outcome, bool), String> {
    let path = dir.join(name);
    std::fs::write(&path, bytes).map_err(|e| e.to_string())?;
    let panics = PANICS.load(Ordering::SeqCst);
    let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        engine
            .transcribe_file(name, &path, Segment::WHOLE, &mut |_, _| {})
            .map_err(|e| e.to_string())
    }))
    .map_err(|_| "transcribe_file panicked".to_string())?;
    if PANICS.load(Ordering::SeqCst) != panics {
        return Err("a panic inside transcribe_file was caught and reported as an error".into());
    }
    let outcome = match result {
        Err(m) => {
            if m.contains("panick") || m.contains("internal error") {
                return Err(format!("error from a guarded panic: {m}"));
            }
            Outcome::Refused(kind(&m))
        }
        Ok(d) => {
            // The file's length, as the stream reads it.
            let mut stream = AudioStream::open(&path, 16_000).map_err(|e| e.to_string())?;
            let mut samples = 0usize;
            while let Some(b) = stream.next_block().map_err(|e| e.to_string())? {
                samples += b.len();
            }
            let secs = samples as f64 / 16_000.0;
            let inside = |t: f64| t.is_finite() && (0.0..=secs + 1e-3).contains(&t);
            let t = &d.transcript;
            for x in &t.damaged {
                if !(inside(x.start) && x.end.is_none_or(|e| inside(e) && e >= x.start)) {
                    return Err(format!("damage {x:?} outside the file's {secs} s"));
                }
            }
            for tok in &t.tokens {
                if !inside(tok.start) {
                    return Err(format!("token {tok:?} outside the file's {secs} s"));
                }
            }
            for s in &t.segments {
                if !(inside(s.start) && inside(s.end)) {
                    return Err(format!("segment {s:?} outside the file's {secs} s"));
                }
            }
            let finite = t.score.is_finite()
                && d.frame_probs.iter().flatten().all(|p| p.is_finite())
                && t.emotion.probs.iter().all(|(_, p)| p.is_finite());
            if !finite {
                return Err("a transcript with non-finite numbers".into());
            }
            if t.damaged.is_empty() {
                Outcome::Transcribed
            } else {
                Outcome::TranscribedWithDamage
            }
        }
    };
    // The training data path: preparation, then the features the loader computes.
    let utt = Utterance {
        text: Some("A".into()),
        emotion: Some("neu".into()),
        ..Utterance::new(name, &path)
    };
    let panics = PANICS.load(Ordering::SeqCst);
    let prepared = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        prepare(
            &[utt],
            &Vocab::characters(),
            &EmotionMap::default(),
            &BadDataPolicy::default(),
        )
    }))
    .map_err(|_| "prepare panicked".to_string())?;
    let kept = match prepared {
        Err(_) => false,
        Ok(p) => {
            let u = &p.utterances[0];
            let inputs = source
                .inputs(&[(&u.id, &u.audio, u.segment)], &Device::Cpu)
                .map_err(|e| format!("prepared, then the loader failed: {e}"))?;
            let values = inputs
                .features
                .flatten_all()
                .and_then(|t| t.to_vec1::<f32>())
                .map_err(|e| e.to_string())?;
            if !values.iter().all(|v| v.is_finite()) {
                return Err("prepared, then non-finite features".into());
            }
            true
        }
    };
    if PANICS.load(Ordering::SeqCst) != panics {
        return Err("a panic inside the training data path was caught".into());
    }
    Ok((outcome, kept))
}

#[test]
fn mutated_files_of_every_format_are_transcribed_or_refused() {
    count_panics();
    let cases = env_or("ENT_FUZZ_CASES", 600) as u32;
    let budget = match env_or("ENT_FUZZ_SECS", 60) {
        0 => None,
        s => Some(Duration::from_secs(s)),
    };
    let dir = tempfile::tempdir().unwrap();
    let seeds = Arc::new(seeds(dir.path()));
    let engine = Arc::new(Engine::demo(&Device::Cpu, Search::default()).unwrap());
    let source =
        Arc::new(FeatureSource::new(&engine.meta.model, None, false, &Device::Cpu).unwrap());
    let tally: Arc<Mutex<Tally>> = Arc::default();
    let started = Instant::now();
    let ran = AtomicUsize::new(0);
    let mut runner = TestRunner::new(Config {
        cases,
        failure_persistence: None,
        ..Config::default()
    });
    // With `crcs`, an Ogg file's page checksums are recomputed after the mutations, so that
    // the damage reaches the Vorbis decoder instead of failing a checksum.
    let strategy = (
        0..seeds.len(),
        prop::collection::vec(mutation(), 1..4),
        any::<bool>(),
    );
    let result = runner.run(
        &strategy,
        |(which, mutations, crcs): (usize, Vec<Mutation>, bool)| {
            if budget.is_some_and(|b| started.elapsed() > b) {
                return Ok(());
            }
            ran.fetch_add(1, Ordering::SeqCst);
            let (seed_name, seed) = &seeds[which];
            let mut bytes = mutations.iter().fold(seed.clone(), apply);
            if crcs {
                fix_ogg_crcs(&mut bytes);
            }
            let ext = Path::new(seed_name).extension().unwrap().to_string_lossy();
            let name = format!("case-{}.{ext}", ran.load(Ordering::SeqCst));
            // On its own thread, so that a hang fails the test instead of stalling it.
            let (tx, rx) = mpsc::channel();
            let (engine, source) = (engine.clone(), source.clone());
            let case_dir: PathBuf = dir.path().to_path_buf();
            let case_bytes = bytes.clone();
            let case_name = name.clone();
            std::thread::spawn(move || {
                let _ = tx.send(check(&engine, &source, &case_dir, &case_name, &case_bytes));
            });
            let got = match rx.recv_timeout(HANG) {
                Ok(r) => r,
                Err(_) => Err(format!("no answer within {HANG:?}: a hang")),
            };
            match got {
                Ok((outcome, kept)) => {
                    *tally
                        .lock()
                        .unwrap()
                        .entry((seed_name.clone(), outcome, kept))
                        .or_default() += 1;
                    let _ = std::fs::remove_file(dir.path().join(&name));
                    Ok(())
                }
                Err(why) => {
                    let keep = std::env::temp_dir().join(format!("ent-hostile-{name}"));
                    let _ = std::fs::write(&keep, &bytes);
                    Err(TestCaseError::fail(format!(
                        "{seed_name} with {mutations:?} (Ogg checksums recomputed: {crcs}): {why} \
                     (the file is saved as {})",
                        keep.display()
                    )))
                }
            }
        },
    );
    let n = ran.load(Ordering::SeqCst);
    eprintln!(
        "{n} mutated files in {:.1} s (seed file, outcome, kept by prepare: count):",
        started.elapsed().as_secs_f64()
    );
    for ((seed, outcome, kept), count) in tally.lock().unwrap().iter() {
        eprintln!("  {seed:28} {outcome:?} {kept}: {count}");
    }
    if let Err(e) = result {
        match e {
            TestError::Fail(why, _) => panic!("{why}"),
            TestError::Abort(why) => panic!("aborted: {why}"),
        }
    }
    assert!(n > 0, "no case ran");
}

/// The file that once panicked the streaming resampler: a float WAV at 44.1 kHz with random
/// bytes written over stretches of its samples (values up to 3e38). It is transcribed, each
/// stretch reported as damage at its time, and the words of the intact audio survive.
#[test]
fn a_float_wav_with_junk_in_its_samples_is_transcribed() {
    count_panics();
    let engine = Engine::demo(&Device::Cpu, Search::default()).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let speech = ent_features::load_resampled(audio("en-gb-x-gbcwmd-m8_ang_s01.flac"), 44_100)
        .unwrap()
        .samples;
    let write = |name: &str, samples: &[f32]| {
        let path = dir.path().join(name);
        ent_testkit::wav::write_f32(&path, 44_100, samples);
        path
    };
    let clean = engine.transcribe(&write("clean.wav", &speech)).unwrap();
    // Junk in the last 0.2 s, where the recording is quiet: bit patterns of huge floats.
    let mut bytes = std::fs::read(write("junk.wav", &speech)).unwrap();
    let len = bytes.len();
    let mut rng = ent_common::rng::SplitMix64::new(7);
    let at = len - 4 * 8820;
    for b in &mut bytes[at..at + 4 * 300] {
        *b = rng.next_u64() as u8 | 0x70;
    }
    let path = dir.path().join("junk.wav");
    std::fs::write(&path, &bytes).unwrap();
    let panics = PANICS.load(Ordering::SeqCst);
    let got = engine.transcribe(&path).unwrap();
    assert_eq!(PANICS.load(Ordering::SeqCst), panics);
    assert_eq!(got.damaged.len(), 1, "{:?}", got.damaged);
    let d = &got.damaged[0];
    let secs = speech.len() as f64 / 44_100.0;
    assert!(
        d.start >= secs - 0.21 && d.end.is_some_and(|e| e <= secs - 0.19),
        "{d:?} in {secs} s"
    );
    assert!(d.message.contains("cannot be audio"), "{}", d.message);
    assert_eq!(got.text, clean.text);
}
