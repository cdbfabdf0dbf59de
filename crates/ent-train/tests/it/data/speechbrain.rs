//! SpeechBrain JSON manifests.

use super::*;

#[test]
fn speechbrain_fixture() {
    let path = fixtures().join("speechbrain.json");
    let utts = read_speechbrain(&path, Some(Path::new("/corpora/IEMOCAP"))).expect("reads");
    let ids: Vec<&str> = utts.iter().map(|u| u.id.as_str()).collect();
    assert_eq!(ids, ["Ses01F_impro01_F000", "utt-b", "utt-c"], "file order");

    let a = &utts[0];
    assert_eq!(
        a.audio,
        Path::new("/corpora/IEMOCAP/Session1/sentences/wav/Ses01F_impro01/Ses01F_impro01_F000.wav")
    );
    assert_eq!(a.duration, Some(1.94));
    assert_eq!(a.emotion.as_deref(), Some("neu"));
    assert_eq!(a.text, None);
    assert_eq!(a.segment, Segment::WHOLE);

    let b = &utts[1];
    assert_eq!(
        b.audio,
        fixtures().join("audio/b.wav"),
        "relative to the manifest"
    );
    assert_eq!(b.duration, Some(2.5));
    assert_eq!(b.emotion.as_deref(), Some("Angry"));
    assert_eq!(b.text.as_deref(), Some("Get out!"));
    assert_eq!(b.speaker.as_deref(), Some("7"));
    assert_eq!(b.gender.as_deref(), Some("male"));
    assert_eq!(b.intensity, Some(4.5));
    assert_eq!(b.session, Some(2));

    let c = &utts[2];
    assert_eq!(c.audio, Path::new("/abs/c.flac"));
    assert_eq!(c.text.as_deref(), Some("I see."));
    assert_eq!(c.speaker.as_deref(), Some("spk3"));
    assert_eq!(c.duration, None);
}

#[test]
fn speechbrain_data_root_required_when_used() {
    let path = fixtures().join("speechbrain.json");
    let e = read_speechbrain(&path, None).expect_err("no data root");
    let msg = e.to_string();
    assert!(msg.contains("{data_root}"), "{msg}");
    assert!(msg.contains("Ses01F_impro01_F000"), "{msg}");
    assert!(msg.contains("speechbrain.json"), "{msg}");
}

#[test]
fn speechbrain_errors_name_the_entry() {
    let t = TempDir::new("sb");
    let dup = t.write(
        "dup.json",
        r#"{"a": {"wav": "a.wav"}, "b": {"wav": "b.wav"}, "a": {"wav": "c.wav"}}"#,
    );
    match read_speechbrain(&dup, None) {
        Err(DataError::DuplicateIds { ids, .. }) => assert_eq!(ids, ["a"]),
        other => panic!("expected duplicate ids, got {other:?}"),
    }
    let no_wav = t.write("nowav.json", r#"{"x": {"emo": "sad"}}"#);
    let msg = read_speechbrain(&no_wav, None)
        .expect_err("no wav")
        .to_string();
    assert!(
        msg.contains("utterance x") && msg.contains("no audio path"),
        "{msg}"
    );

    let bad_type = t.write("type.json", r#"{"x": {"wav": "x.wav", "length": [1]}}"#);
    let msg = read_speechbrain(&bad_type, None)
        .expect_err("type")
        .to_string();
    assert!(msg.contains("length is an array, not a number"), "{msg}");

    let syntax = t.write("syntax.json", "{\n  \"x\": {\"wav\": \"x.wav\",}\n}");
    match read_speechbrain(&syntax, None) {
        Err(DataError::Syntax { line, .. }) => assert_eq!(line, Some(2)),
        other => panic!("expected a syntax error, got {other:?}"),
    }
    let segment = t.write(
        "seg.json",
        r#"{"x": {"wav": "x.wav", "start": 0, "stop": 16000}}"#,
    );
    assert!(matches!(
        read_speechbrain(&segment, None),
        Err(DataError::Unsupported { .. })
    ));
}
