//! Lhotse cut manifests.

use super::*;

pub(super) fn cut(id: &str, source: &str, sup: &str) -> String {
    format!(
        r#"{{"id": "{id}", "start": 0.5, "duration": 1.25, "channel": 0, "supervisions": [{sup}], "recording": {{"id": "rec-{id}", "sources": [{{"type": "file", "channels": [0], "source": "{source}"}}], "sampling_rate": 16000, "num_samples": 40000, "duration": 2.5, "channel_ids": [0]}}, "type": "MonoCut"}}"#
    )
}

#[test]
fn lhotse_gzip_detected_by_magic() {
    let t = TempDir::new("lhotse");
    let lines = [
        cut(
            "c1",
            "audio/c1.wav",
            r#"{"id": "s1", "recording_id": "rec-c1", "start": 0.0, "duration": 1.25, "text": "Hello there", "speaker": "spk1", "gender": "F", "custom": {"emotion": "hap", "arousal": 3.5}}"#,
        ),
        cut(
            "c2",
            "/abs/c2.flac",
            r#"{"id": "s2", "text": "Part one", "emotion": "sad", "speaker": "spk2"}, {"id": "s3", "text": "part two", "emotion": "sad"}"#,
        ),
        cut("c3", "c3.wav", ""),
    ];
    let text = format!("{}\n\n{}\n{}\n", lines[0], lines[1], lines[2]);
    // No `.gz` in the name: the magic bytes decide.
    let path = t.write("cuts.bin", gzip(&text));
    let utts = read_lhotse(&path).expect("reads");
    assert_eq!(utts.len(), 3);
    let c1 = &utts[0];
    assert_eq!(c1.id, "c1");
    assert_eq!(c1.audio, t.path().join("audio/c1.wav"));
    assert_eq!(c1.segment, Segment::new(0.5, 1.25));
    assert_eq!(c1.duration, Some(1.25));
    assert_eq!(c1.text.as_deref(), Some("Hello there"));
    assert_eq!(c1.emotion.as_deref(), Some("hap"));
    assert_eq!(c1.speaker.as_deref(), Some("spk1"));
    assert_eq!(c1.gender.as_deref(), Some("F"));
    assert_eq!(c1.intensity, Some(3.5));
    let c2 = &utts[1];
    assert_eq!(c2.audio, Path::new("/abs/c2.flac"));
    assert_eq!(c2.text.as_deref(), Some("Part one part two"));
    assert_eq!(c2.emotion.as_deref(), Some("sad"));
    assert_eq!(
        (utts[2].text.as_ref(), utts[2].emotion.as_ref()),
        (None, None)
    );

    // The same, auto-detected, plain and gzipped.
    let auto = load_manifest(&path, None, None).expect("auto gzip");
    assert_eq!(auto, utts);
    let plain = t.write("cuts.jsonl", &text);
    assert_eq!(load_manifest(&plain, None, None).expect("auto jsonl"), utts);
}

#[test]
fn lhotse_refusals_name_the_line() {
    let t = TempDir::new("lhotse-bad");
    let ok = cut("c1", "a.wav", "");
    let url = cut("c2", "a.wav", "").replace(r#""type": "file""#, r#""type": "url""#);
    let path = t.write("cuts.jsonl", format!("{ok}\n{url}\n"));
    let e = read_lhotse(&path).expect_err("url");
    assert!(
        matches!(e, DataError::Unsupported { line: Some(2), .. }),
        "{e:?}"
    );
    assert!(e.to_string().contains("\"url\""), "{e}");

    let mixed = r#"{"id": "m", "type": "MixedCut", "tracks": []}"#;
    let path = t.write("mixed.jsonl", format!("{ok}\n{mixed}\n"));
    let msg = read_lhotse(&path).expect_err("mixed").to_string();
    assert!(
        msg.contains("mixed.jsonl:2") && msg.contains("MixedCut"),
        "{msg}"
    );

    let speed = cut("c3", "a.wav", "").replace(
        r#""channel_ids": [0]"#,
        r#""channel_ids": [0], "transforms": [{"name": "Speed", "kwargs": {"factor": 1.1}}]"#,
    );
    let path = t.write("speed.jsonl", format!("{speed}\n"));
    assert!(matches!(
        read_lhotse(&path),
        Err(DataError::Unsupported { .. })
    ));

    let disagree = cut(
        "c4",
        "a.wav",
        r#"{"emotion": "sad"}, {"custom": {"emotion": "hap"}}"#,
    );
    let path = t.write("disagree.jsonl", format!("{disagree}\n"));
    let msg = read_lhotse(&path).expect_err("disagree").to_string();
    assert!(
        msg.contains("utterance c4") && msg.contains("disagree"),
        "{msg}"
    );

    let path = t.write("dup.jsonl", format!("{ok}\n{ok}\n"));
    assert!(matches!(
        read_lhotse(&path),
        Err(DataError::DuplicateIds { .. })
    ));
    let path = t.write("broken.jsonl", format!("{ok}\n{{not json\n"));
    assert!(matches!(
        read_lhotse(&path),
        Err(DataError::Syntax { line: Some(2), .. })
    ));
}
