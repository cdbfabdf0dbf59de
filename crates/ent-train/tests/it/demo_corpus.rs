//! The synthetic demo corpus in `data/demo` (written by `cargo xtask demo-data`), loaded with the
//! real manifest readers and checked the way `ent demo` uses it.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use ent_train::data::{
    BadDataPolicy, EmotionMap, Utterance, Vocab, normalize_text, prepare, read_speechbrain,
    read_zed,
};

fn corpus() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../data/demo")
}

fn split(name: &str) -> Vec<Utterance> {
    let path = corpus().join(format!("{name}.json"));
    read_speechbrain(&path, None)
        .unwrap_or_else(|e| panic!("{}: {e} (run `cargo xtask demo-data`)", path.display()))
}

fn diar() -> Vec<Utterance> {
    read_zed(&corpus().join("diar.json"), None).expect("diar.json reads")
}

fn labels(utts: &[Utterance]) -> BTreeSet<&str> {
    utts.iter().filter_map(|u| u.emotion.as_deref()).collect()
}

fn speakers(utts: &[Utterance]) -> BTreeSet<&str> {
    utts.iter().filter_map(|u| u.speaker.as_deref()).collect()
}

#[test]
fn splits_hold_four_balanced_classes_and_disjoint_speakers() {
    let (train, valid, test) = (split("train"), split("valid"), split("test"));
    let four: BTreeSet<&str> = ["ang", "hap", "neu", "sad"].into();
    for (name, utts) in [("train", &train), ("valid", &valid), ("test", &test)] {
        assert!(!utts.is_empty(), "{name} is empty");
        assert_eq!(labels(utts), four, "{name}");
        for label in &four {
            let n = utts
                .iter()
                .filter(|u| u.emotion.as_deref() == Some(label))
                .count();
            assert_eq!(
                n * 4,
                utts.len(),
                "{name}: {n} of {} are {label}",
                utts.len()
            );
        }
        for u in utts.iter() {
            let text = u.text.as_deref().expect("a transcript");
            assert_eq!(normalize_text(text), text, "{}: already normalised", u.id);
            assert!(matches!(u.gender.as_deref(), Some("f" | "m")), "{}", u.id);
            assert!(
                u.duration.is_some_and(|d| (0.5..4.0).contains(&d)),
                "{}: {:?} s",
                u.id,
                u.duration
            );
        }
    }
    let train_spk = speakers(&train);
    for (name, utts) in [("valid", &valid), ("test", &test)] {
        let spk = speakers(utts);
        assert!(!spk.is_empty(), "{name} names its speakers");
        assert!(
            spk.is_disjoint(&train_spk),
            "{name} speakers {spk:?} also train"
        );
    }
    assert!(speakers(&valid).is_disjoint(&speakers(&test)));
    // The closed sentence set: every test sentence is also a training sentence.
    let train_text: BTreeSet<&str> = train.iter().filter_map(|u| u.text.as_deref()).collect();
    assert!(
        test.iter()
            .all(|u| train_text.contains(u.text.as_deref().unwrap_or_default()))
    );
}

#[test]
fn diarization_utterances_have_one_emotional_interval_in_their_pattern() {
    let utts = diar();
    assert!(!utts.is_empty());
    let mut seen = BTreeSet::new();
    for u in &utts {
        let duration = u.duration.expect("a duration");
        let emotional: Vec<_> = u
            .intervals
            .iter()
            .filter(|iv| iv.emotion != "neu")
            .collect();
        assert_eq!(
            u.intervals.len(),
            1,
            "{}: only the emotional part is listed",
            u.id
        );
        assert_eq!(emotional.len(), 1, "{}", u.id);
        let iv = emotional[0];
        // The pattern is in the id: `_NN` neutral-emotion-neutral, `_neN`, `_enN`, `_eeN`.
        let tail = u.id.rsplit('_').next().unwrap();
        let pattern = if tail.chars().all(|c| c.is_ascii_digit()) {
            "nen"
        } else {
            &tail[..2]
        };
        let (starts_at_0, ends_at_end) = (iv.start == 0.0, (iv.end - duration).abs() < 1e-9);
        let (want_start_0, want_end, sentences) = match pattern {
            "nen" => (false, false, 3),
            "ne" => (false, true, 2),
            "en" => (true, false, 2),
            "ee" => (true, true, 2),
            other => panic!("{}: pattern {other}", u.id),
        };
        assert!(
            iv.start < iv.end && iv.end <= duration + 1e-9,
            "{}: [{}, {}] in {duration} s",
            u.id,
            iv.start,
            iv.end
        );
        assert_eq!(
            (starts_at_0, ends_at_end),
            (want_start_0, want_end),
            "{}: [{}, {}] in {duration} s",
            u.id,
            iv.start,
            iv.end
        );
        assert_eq!(u.emotion.as_deref(), Some(iv.emotion.as_str()));
        assert_eq!(
            u.text
                .as_deref()
                .map(|t| t.split(' ').count() >= 3 * sentences),
            Some(true),
            "{}: {sentences} sentences",
            u.id
        );
        seen.insert((pattern, iv.emotion.as_str()));
    }
    // Every pattern with every emotion.
    let patterns = ["nen", "ne", "en", "ee"];
    let emotions = ["ang", "hap", "sad"];
    let all: BTreeSet<(&str, &str)> = patterns
        .iter()
        .flat_map(|p| emotions.iter().map(move |e| (*p, *e)))
        .collect();
    assert_eq!(seen, all);
    let test_spk: BTreeSet<String> = speakers(&split("test"))
        .into_iter()
        .map(String::from)
        .collect();
    let train_spk: BTreeSet<String> = speakers(&split("train"))
        .into_iter()
        .map(String::from)
        .collect();
    assert!(
        utts.iter().all(|u| {
            let id = &u.id;
            // Diarization ids carry the voice; the voice is a test voice, never a training one.
            test_spk.iter().any(|s| id.contains(&s.replace('+', "-")))
                && !train_spk.iter().any(|s| id.contains(&s.replace('+', "-")))
        }),
        "diarization voices are held out"
    );
}

#[test]
fn test_and_diarization_sets_prepare_and_decode_cleanly() {
    let vocab = Vocab::characters();
    let emotions = EmotionMap::default();
    for (name, utts) in [("test", split("test")), ("diar", diar())] {
        let p = prepare(&utts, &vocab, &emotions, &BadDataPolicy::default())
            .unwrap_or_else(|e| panic!("{name}: {e}"));
        let r = &p.report;
        assert_eq!((r.total, r.kept), (utts.len(), utts.len()), "{name}: {r}");
        assert!(
            r.bad_audio.is_empty()
                && r.missing_emotion.is_empty()
                && r.unknown_emotion.is_empty()
                && r.empty_text.is_empty()
                && r.too_long.is_empty()
                && r.unknown_chars.is_empty()
                && r.unknown_gender.is_empty(),
            "{name}: {r}"
        );
        let classes: BTreeSet<usize> = p.utterances.iter().map(|u| u.emotion).collect();
        let expected = if name == "diar" { 3 } else { 4 };
        assert_eq!(classes.len(), expected, "{name}: {classes:?}");
        for (u, prepared) in utts.iter().zip(&p.utterances) {
            let audio = ent_features::load(&u.audio)
                .unwrap_or_else(|e| panic!("{}: {e}", u.audio.display()));
            assert_eq!(audio.sample_rate, 16_000, "{}", u.id);
            let stated = u.duration.expect("a duration");
            assert!(
                (audio.duration_secs() - stated).abs() < 1e-3,
                "{}: decoded {} s, manifest {stated} s",
                u.id,
                audio.duration_secs()
            );
            assert_eq!(prepared.duration, stated, "{}", u.id);
            // Intervals become spans of their classes; frames outside them are neutral.
            let spans: Vec<(f64, f64, Option<usize>)> = prepared
                .spans
                .iter()
                .map(|s| (s.start, s.end, Some(s.class)))
                .collect();
            let want: Vec<(f64, f64, Option<usize>)> = u
                .intervals
                .iter()
                .map(|iv| (iv.start, iv.end, emotions.class_of(&iv.emotion)))
                .collect();
            assert_eq!(spans, want, "{}", u.id);
            if let [iv] = &u.intervals[..] {
                let frames = (stated / 0.04) as usize;
                let classes = prepared
                    .frame_classes(frames, 0.04, emotions.neutral)
                    .unwrap();
                for (f, &c) in classes.iter().enumerate() {
                    let centre = (f as f64 + 0.5) * 0.04;
                    let inside = iv.start <= centre && centre < iv.end;
                    let want = if inside {
                        prepared.emotion
                    } else {
                        emotions.neutral
                    };
                    assert_eq!(c as usize, want, "{} frame {f}", u.id);
                }
            } else {
                assert_eq!(prepared.frame_classes(10, 0.04, emotions.neutral), None);
            }
            let peak = audio.samples.iter().fold(0.0f32, |m, s| m.max(s.abs()));
            assert!((0.01..1.0).contains(&peak), "{}: peak {peak}", u.id);
        }
    }
}
