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
