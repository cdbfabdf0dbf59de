//! ZED manifests with emotion intervals.

use super::*;

#[test]
fn zed_fixture() {
    let dir = fixtures().join("zed");
    let utts = read_zed(&dir, None).expect("reads");
    assert_eq!(utts.len(), 2);
    let sad = &utts[0];
    assert_eq!(sad.id, "m_3_s2_sad");
    assert_eq!(
        sad.audio,
        dir.join("wavs/m_3_s2_sad.wav"),
        "datafolder = ZED's folder"
    );
    assert_eq!(sad.duration, Some(4.35));
    assert_eq!(sad.emotion.as_deref(), Some("sad"));
    assert_eq!(
        sad.intervals,
        vec![EmotionInterval {
            emotion: "sad".into(),
            start: 1.29,
            end: 3.2
        }]
    );
    assert_eq!(sad.text.as_deref(), Some("I lost it, all of it."));
    let happy = &utts[1];
    assert_eq!(
        happy.emotion.as_deref(),
        Some("happy"),
        "the non-neutral interval"
    );
    assert_eq!(happy.intervals.len(), 2);

    let rooted = read_zed(&dir.join("ZED.json"), Some(Path::new("/zed"))).expect("reads");
    assert_eq!(rooted[0].audio, Path::new("/zed/wavs/m_3_s2_sad.wav"));
    // Auto-detection: a JSON object whose entries have an emotion list.
    assert_eq!(
        load_manifest(&dir.join("ZED.json"), None, None).expect("auto"),
        utts
    );
    assert_eq!(load_manifest(&dir, None, None).expect("auto dir"), utts);

    let t = TempDir::new("zed");
    let bad = t.write(
        "ZED.json",
        r#"{"x": {"wav": "x.wav", "duration": 2.0, "emotion": [{"emo": "sad", "start": 1.5, "end": 1.0}]}}"#,
    );
    let msg = read_zed(&bad, None).expect_err("backwards").to_string();
    assert!(
        msg.contains("utterance x") && msg.contains("emotion[0]"),
        "{msg}"
    );
}

/// The optional `sentences` of an entry: read in order, normalised by `prepare`, and refused
/// when they overlap, run backwards or do not make up the transcription.
#[test]
fn zed_sentences() {
    let t = TempDir::new("zed-sentences");
    let wav = t.wav("a.wav", 3.0, 16_000);
    let entry = |sentences: &str| {
        format!(
            r#"{{"a": {{"wav": "{}", "duration": 3.0, "emotion": [{{"emo": "sad", "start": 1.0, "end": 2.0}}],
               "transcription": "Hello there. Oh no! Fine", "sentences": {sentences}}}}}"#,
            wav.display()
        )
    };
    let good = t.write(
        "good.json",
        entry(
            r#"[{"start": 0.0, "end": 1.0, "text": "Hello there."},
                {"start": 1.0, "end": 2.0, "text": "Oh no!"},
                {"start": 2.0, "end": 3.0, "text": "fine"}]"#,
        ),
    );
    let utts = read_zed(&good, None).expect("reads");
    assert_eq!(utts[0].sentences.len(), 3);
    assert_eq!(utts[0].sentences[1].text, "Oh no!");
    assert_eq!(
        (utts[0].sentences[2].start, utts[0].sentences[2].end),
        (2.0, 3.0)
    );
    let p = prepare(
        &utts,
        &Vocab::characters(),
        &EmotionMap::default(),
        &BadDataPolicy::default(),
    )
    .expect("prepares");
    let texts: Vec<&str> = p.utterances[0]
        .sentences
        .iter()
        .map(|s| s.text.as_str())
        .collect();
    assert_eq!(texts, ["HELLO THERE", "OH NO", "FINE"]);
    assert_eq!(texts.join(" "), p.utterances[0].text);
    for (sentences, says) in [
        (
            r#"[{"start": 0.0, "end": 1.5, "text": "Hello there."},
                {"start": 1.0, "end": 3.0, "text": "Oh no! Fine"}]"#,
            "before the previous sentence ends",
        ),
        (
            r#"[{"start": 1.0, "end": 0.5, "text": "Hello there. Oh no! Fine"}]"#,
            "sentences[0]",
        ),
        (
            r#"[{"start": 0.0, "end": 1.0, "text": "Hello there."},
                {"start": 1.0, "end": 3.0, "text": "Oh yes! Fine"}]"#,
            "do not make up the transcription",
        ),
        (r#"{"start": 0.0}"#, "not a list"),
    ] {
        let bad = t.write("bad.json", entry(sentences));
        let msg = read_zed(&bad, None).expect_err(says).to_string();
        assert!(msg.contains("utterance a") && msg.contains(says), "{msg}");
    }
}
