//! Preparation: audio checks, labels, transcripts, the report.

use super::*;

fn labelled(id: &str, audio: &Path, emotion: &str, text: &str) -> Utterance {
    Utterance {
        emotion: Some(emotion.into()),
        text: Some(text.into()),
        ..Utterance::new(id, audio)
    }
}

#[test]
fn prepare_converts_and_reads_durations_from_headers() {
    let t = TempDir::new("prep");
    let a = t.wav("a.wav", 1.5, 16_000);
    let b = t.wav("b.wav", 3.0, 8_000);
    let mut ua = labelled("a", &a, "exc", "It's  [LAUGHTER] fine, café!");
    ua.gender = Some("Female".into());
    ua.intensity = Some(3.5);
    let mut ub = labelled("b", &b, "Angry", "NO");
    ub.segment = Segment::new(1.0, 1.25);
    ub.gender = Some("x".into());
    let mut uc = labelled("c", &b, "neu", "OK");
    uc.duration = Some(2.9);
    let vocab = Vocab::characters();
    let p = prepare(
        &[ua, ub, uc],
        &vocab,
        &EmotionMap::default(),
        &BadDataPolicy::default(),
    )
    .expect("prepares");
    assert_eq!(p.utterances.len(), 3);
    let a = &p.utterances[0];
    assert_eq!(a.text, "IT'S FINE CAFÉ");
    assert_eq!(a.tokens, vocab.encode("IT'S FINE CAFÉ"));
    assert_eq!(a.emotion, 0);
    assert_eq!(a.duration, 1.5, "from the header");
    assert_eq!(a.gender, Some(0));
    assert_eq!(a.intensity, Some(3.5));
    let b = &p.utterances[1];
    assert_eq!((b.emotion, b.duration, b.gender), (1, 1.25, None));
    assert_eq!(b.segment, Segment::new(1.0, 1.25));
    assert_eq!(p.utterances[2].duration, 2.9, "the manifest's");
    assert_eq!(p.report.total, 3);
    assert_eq!(p.report.kept, 3);
    assert_eq!(p.report.unknown_chars.get(&'É'), Some(&1));
    assert_eq!(
        p.report.unknown_gender,
        [("b".to_string(), "x".to_string())]
    );
}

#[test]
fn missing_audio_is_listed_all_together() {
    let t = TempDir::new("prep-bad");
    let good = t.wav("good.wav", 1.0, 16_000);
    let mut cut_short = wav_bytes(16_000, 16_000);
    cut_short.truncate(1000);
    let cut_short = t.write("short.wav", cut_short);
    let junk = t.write("junk.wav", b"RIFF....WAVEjunkjunk");
    let utts = vec![
        labelled("ok1", &good, "neu", "A"),
        labelled("gone1", &t.path().join("gone1.wav"), "sad", "B"),
        labelled("gone2", &t.path().join("gone2.wav"), "sad", "C"),
        labelled("short", &cut_short, "ang", "D"),
        labelled("junk", &junk, "hap", "E"),
        Utterance {
            segment: Segment::new(5.0, 1.0),
            ..labelled("past-end", &good, "neu", "F")
        },
        labelled("ok2", &good, "neu", "G"),
    ];
    let vocab = Vocab::characters();
    let map = EmotionMap::default();
    let e = prepare(&utts, &vocab, &map, &BadDataPolicy::default()).expect_err("bad audio");
    match &e {
        DataError::BadAudio { total, files } => {
            assert_eq!(*total, 7);
            let ids: Vec<&str> = files.iter().map(|f| f.id.as_str()).collect();
            assert_eq!(ids, ["gone1", "gone2", "short", "junk", "past-end"]);
        }
        other => panic!("expected bad audio, got {other:?}"),
    }
    let msg = e.to_string();
    assert!(
        msg.starts_with("5 of 7 utterances have audio that cannot be used"),
        "{msg}"
    );
    assert_eq!(msg.lines().count(), 6, "{msg}");
    assert!(msg.contains("gone1.wav"), "{msg}");
    assert!(msg.contains("truncated"), "{msg}");
    assert!(msg.contains("past the end"), "{msg}");

    let policy = BadDataPolicy {
        skip_bad_audio: true,
        ..Default::default()
    };
    let p = prepare(&utts, &vocab, &map, &policy).expect("skips");
    let kept: Vec<&str> = p.utterances.iter().map(|u| u.id.as_str()).collect();
    assert_eq!(kept, ["ok1", "ok2"]);
    assert_eq!(p.report.bad_audio.len(), 5);
    assert_eq!(p.report.bad_audio[0].0, "gone1");
    assert!(p.report.bad_audio[0].1.contains("gone1.wav"));
    assert_eq!((p.report.total, p.report.kept), (7, 2));
    assert!(p.report.to_string().contains("dropped 5 with bad audio"));
}

#[test]
fn long_lists_are_capped() {
    let t = TempDir::new("prep-cap");
    let utts: Vec<Utterance> = (0..60)
        .map(|i| {
            labelled(
                &format!("u{i}"),
                &t.path().join(format!("{i}.wav")),
                "neu",
                "A",
            )
        })
        .collect();
    let msg = prepare(
        &utts,
        &Vocab::characters(),
        &EmotionMap::default(),
        &BadDataPolicy::default(),
    )
    .expect_err("all missing")
    .to_string();
    assert!(msg.starts_with("60 of 60 utterances have audio"), "{msg}");
    assert_eq!(msg.lines().count(), 1 + 50 + 1);
    assert!(msg.ends_with("... and 10 more"), "{msg}");
}

#[test]
fn labels_and_transcripts() {
    let t = TempDir::new("prep-labels");
    let w = t.wav("w.wav", 0.5, 16_000);
    let vocab = Vocab::characters();
    let map = EmotionMap::default();
    let utts = vec![
        labelled("ok", &w, "neu", "HELLO"),
        labelled("fru1", &w, "fru", "X"),
        labelled("xxx", &w, "xxx", "Y"),
        labelled("empty", &w, "sad", "[LAUGHTER] ."),
        Utterance {
            text: None,
            ..labelled("notext", &w, "sad", "")
        },
        Utterance {
            emotion: None,
            ..labelled("nolabel", &w, "sad", "Z")
        },
    ];
    let strict = BadDataPolicy::default();
    let msg = prepare(&utts, &vocab, &map, &strict)
        .expect_err("no label")
        .to_string();
    assert!(
        msg.contains("1 of 6 utterances have no emotion label"),
        "{msg}"
    );
    assert!(msg.contains("nolabel"), "{msg}");

    let msg = prepare(&utts[..5], &vocab, &map, &strict)
        .expect_err("unknown")
        .to_string();
    assert!(
        msg.contains("2 of 5 utterances have an emotion label outside"),
        "{msg}"
    );
    assert!(
        msg.contains("fru1: \"fru\"") && msg.contains("xxx: \"xxx\""),
        "{msg}"
    );

    let skip_labels = BadDataPolicy {
        skip_unknown_emotion: true,
        ..Default::default()
    };
    let e = prepare(&utts, &vocab, &map, &skip_labels).expect_err("empty text");
    match &e {
        DataError::EmptyText { items, .. } => {
            assert_eq!(
                items[0],
                ("empty".to_string(), "\"[LAUGHTER] .\"".to_string())
            );
            assert_eq!(
                items[1],
                ("notext".to_string(), "no transcript".to_string())
            );
        }
        other => panic!("expected empty text, got {other:?}"),
    }

    let skip_all = BadDataPolicy {
        skip_unknown_emotion: true,
        skip_empty_text: true,
        ..Default::default()
    };
    let p = prepare(&utts, &vocab, &map, &skip_all).expect("skips");
    assert_eq!(p.utterances.len(), 1);
    assert_eq!(p.report.missing_emotion, ["nolabel"]);
    assert_eq!(
        p.report.unknown_emotion,
        [
            ("fru1".to_string(), "fru".to_string()),
            ("xxx".to_string(), "xxx".to_string())
        ]
    );
    assert_eq!(p.report.empty_text, ["empty", "notext"]);

    // Emotion-only data: transcripts not required.
    let no_text = BadDataPolicy {
        require_text: false,
        skip_unknown_emotion: true,
        ..Default::default()
    };
    let p = prepare(&utts, &vocab, &map, &no_text).expect("no text needed");
    let kept: Vec<(&str, usize)> = p
        .utterances
        .iter()
        .map(|u| (u.id.as_str(), u.tokens.len()))
        .collect();
    assert_eq!(kept, [("ok", 5), ("empty", 0), ("notext", 0)]);

    // Nothing left at all is an error.
    let e = prepare(&utts[1..3], &vocab, &map, &skip_all).expect_err("nothing");
    assert!(
        matches!(e, DataError::NothingLeft { total: 2, .. }),
        "{e:?}"
    );
}

#[test]
fn long_utterances_and_duplicates() {
    let t = TempDir::new("prep-long");
    let short = t.wav("short.wav", 1.0, 8_000);
    let long = t.wav("long.wav", 20.0, 8_000);
    let edge = t.wav("edge.wav", 18.75, 8_000);
    let utts = vec![
        labelled("short", &short, "neu", "A"),
        labelled("long", &long, "neu", "B"),
        labelled("edge", &edge, "neu", "C"),
    ];
    let p = prepare(
        &utts,
        &Vocab::characters(),
        &EmotionMap::default(),
        &BadDataPolicy::training(),
    )
    .expect("prepares");
    assert_eq!(p.utterances.len(), 1);
    assert_eq!(p.report.too_long, ["long", "edge"], "18.75 s or more");

    let dup = vec![utts[0].clone(), utts[0].clone()];
    let e = prepare(
        &dup,
        &Vocab::characters(),
        &EmotionMap::default(),
        &BadDataPolicy::default(),
    )
    .expect_err("duplicates");
    assert!(matches!(e, DataError::DuplicateIds { .. }), "{e:?}");
    assert!(e.to_string().contains("short"), "{e}");

    let bad_policy = BadDataPolicy {
        max_duration: Some(-1.0),
        ..Default::default()
    };
    assert!(matches!(
        prepare(
            &utts,
            &Vocab::characters(),
            &EmotionMap::default(),
            &bad_policy
        ),
        Err(DataError::Invalid { .. })
    ));
}

#[test]
fn kaldi_segments_end_to_end() {
    // One recording, two utterances; one segment runs past the end of the audio.
    let t = TempDir::new("prep-kaldi");
    t.wav("rec.wav", 4.0, 16_000);
    t.write("wav.scp", "rec rec.wav\n");
    t.write("segments", "u1 rec 0 2.5\nu2 rec 2.5 4.2\nu3 rec 3.0 6.0\n");
    t.write("text", "u1 ONE\nu2 TWO\nu3 THREE\n");
    t.write("utt2emo", "u1 neu\nu2 ang\nu3 sad\n");
    let utts = load_manifest(t.path(), None, None).expect("reads");
    let policy = BadDataPolicy {
        skip_bad_audio: true,
        ..Default::default()
    };
    let p =
        prepare(&utts, &Vocab::characters(), &EmotionMap::default(), &policy).expect("prepares");
    let got: Vec<(&str, f64)> = p
        .utterances
        .iter()
        .map(|u| (u.id.as_str(), u.duration))
        .collect();
    assert_eq!(got, [("u1", 2.5), ("u2", 1.5)], "0.2 s overshoot is cut");
    assert_eq!(p.report.bad_audio.len(), 1);
    assert!(
        p.report.bad_audio[0].1.contains("holds 1.000 s"),
        "{:?}",
        p.report
    );
}

/// Training data as hostile as it comes: corrupt, empty, silent, out-of-range, an hour long, and
/// labelled past its end. Every problem is listed before training (each with its reason), or,
/// with `skip_bad_audio`, skipped and counted; an hour-long file under the training policy is
/// dropped as too long without being decoded. What is kept decodes without error.
#[test]
fn hostile_files_are_listed_before_training() {
    let t = TempDir::new("prep-hostile");
    let good = t.wav("good.wav", 1.0, 16_000);
    let demo = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../data/demo/audio/en-gb-x-gbcwmd-m8_ang_s01.flac");
    let mut flac = std::fs::read(&demo).unwrap();
    let mid = flac.len() / 2;
    flac[mid..mid + 3000].fill(0x55);
    let corrupt = t.write("corrupt.flac", &flac);
    let empty = t.write("empty.wav", b"");
    let no_samples = t.write("no_samples.wav", wav_bytes(16_000, 0));
    let silent = sparse_wav(&t, "silent.wav", 2, 16_000);
    let whisper = float_wav(&t, "whisper.wav", &vec![1e-6; 16_000]);
    let mut loud: Vec<f32> = (0..16_000).map(|i| (i as f32 * 0.05).sin() * 0.3).collect();
    loud[5000] = 1e30;
    let huge = float_wav(&t, "huge.wav", &loud);
    let hour = sparse_wav(&t, "hour.wav", 3600, 16_000);
    let late = Utterance {
        intervals: vec![EmotionInterval {
            emotion: "ang".into(),
            start: 1.5,
            end: 2.0,
        }],
        ..labelled("late-label", &good, "ang", "LATE")
    };
    let utts = vec![
        labelled("good", &good, "neu", "FINE"),
        labelled("corrupt", &corrupt, "ang", "A"),
        labelled("empty", &empty, "sad", "B"),
        labelled("no-samples", &no_samples, "sad", "C"),
        labelled("silent", &silent, "hap", "D"),
        labelled("whisper", &whisper, "hap", "E"),
        labelled("huge", &huge, "neu", "F"),
        labelled("hour", &hour, "neu", "G"),
        late,
    ];
    let vocab = Vocab::characters();
    let map = EmotionMap::default();
    let e = prepare(&utts, &vocab, &map, &BadDataPolicy::training()).expect_err("bad audio");
    let DataError::BadAudio { files, .. } = &e else {
        panic!("expected bad audio, got {e:?}");
    };
    let reasons: Vec<(&str, &str)> = files
        .iter()
        .map(|f| (f.id.as_str(), f.reason.as_str()))
        .collect();
    let expect = [
        ("corrupt", "damaged audio from 0:0"),
        ("empty", "the file is empty"),
        ("no-samples", "no audio samples"),
        ("silent", "digital silence"),
        (
            "whisper",
            "silent: no sample reaches -90.3 dBFS (the loudest is -120.0 dBFS)",
        ),
        ("huge", "cannot be audio (1e30"),
        (
            "late-label",
            "emotion interval [1.5, 2] s starts at or after the end of its 1.000 s",
        ),
    ];
    assert_eq!(reasons.len(), expect.len(), "{e}");
    for ((id, reason), (want_id, want)) in reasons.iter().zip(expect) {
        assert_eq!(*id, want_id, "{e}");
        assert!(reason.contains(want), "{id}: {reason}");
    }
    assert!(
        !e.to_string().contains("hour.wav"),
        "dropped as too long, never decoded: {e}"
    );
    // Skipped and counted; what is kept loads.
    let skip = BadDataPolicy {
        skip_bad_audio: true,
        ..BadDataPolicy::training()
    };
    let p = prepare(&utts, &vocab, &map, &skip).expect("skips");
    let kept: Vec<&str> = p.utterances.iter().map(|u| u.id.as_str()).collect();
    assert_eq!(kept, ["good"]);
    assert_eq!(p.report.bad_audio.len(), 7);
    assert_eq!(p.report.too_long, ["hour"]);
    assert!(
        p.report
            .to_string()
            .contains("dropped 7 with bad audio, 1 too long"),
        "{}",
        p.report
    );
    for u in &p.utterances {
        ent_train::features::load_audio(&u.audio, u.segment).unwrap();
    }
    // Without a length limit (validation, test) the hour is read, block by block: silent.
    let e = prepare(&utts[7..8], &vocab, &map, &BadDataPolicy::default()).expect_err("hour");
    assert!(e.to_string().contains("digital silence"), "{e}");
}
