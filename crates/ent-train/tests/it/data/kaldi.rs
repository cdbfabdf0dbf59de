//! Kaldi/ESPnet data folders.

use super::*;

#[test]
fn kaldi_fixture() {
    let dir = fixtures().join("kaldi");
    let utts = read_kaldi(&dir).expect("reads");
    let ids: Vec<&str> = utts.iter().map(|u| u.id.as_str()).collect();
    assert_eq!(ids, ["rec1", "rec2", "rec3"]);
    let r1 = &utts[0];
    assert_eq!(r1.audio, dir.join("wav/rec1.wav"));
    assert_eq!(r1.text.as_deref(), Some("HELLO THERE"));
    assert_eq!(r1.emotion.as_deref(), Some("hap"));
    assert_eq!(r1.speaker.as_deref(), Some("spkA"));
    assert_eq!(r1.gender.as_deref(), Some("f"));
    assert_eq!(r1.duration, Some(3.25));
    assert_eq!(utts[1].audio, Path::new("/abs/rec2.flac"));
    assert_eq!(utts[1].gender.as_deref(), Some("M"));
    assert_eq!(utts[1].text.as_deref(), Some("it's fine"));
    // A path with a space; an empty transcript line.
    assert_eq!(utts[2].audio, dir.join("wav/rec 3.wav"));
    assert_eq!(utts[2].text.as_deref(), Some(""));
}

#[test]
fn kaldi_segments() {
    let t = TempDir::new("kaldi-seg");
    t.write("wav.scp", "sess1 audio/sess1.wav\nsess2 audio/sess2.wav\n");
    t.write(
        "segments",
        "u1 sess1 0.00 2.50\nu2 sess1 2.50 4.00\nu3 sess2 1.0 -1\n",
    );
    t.write("text", "u1 HI\nu2 BYE\nu3 SO LONG\n");
    t.write("utt2emo", "u1 neu\nu2 sad\nu3 exc\n");
    let utts = read_kaldi(t.path()).expect("reads");
    assert_eq!(utts.len(), 3);
    assert_eq!(utts[0].audio, t.path().join("audio/sess1.wav"));
    assert_eq!(utts[1].audio, t.path().join("audio/sess1.wav"));
    assert_eq!(utts[1].segment, Segment::new(2.5, 1.5));
    assert_eq!(utts[1].duration, Some(1.5));
    assert_eq!(
        utts[2].segment,
        Segment {
            offset: 1.0,
            duration: None
        }
    );
    assert_eq!(utts[2].emotion.as_deref(), Some("exc"));

    t.write("segments", "u1 sess1 0 2.5\nu2 sess9 2.5 4\nu3 sess2 1 2\n");
    let msg = read_kaldi(t.path()).expect_err("unknown rec").to_string();
    assert!(msg.contains("segments") && msg.contains("sess9"), "{msg}");
    t.write("segments", "u1 sess1 0 2.5\nu2 sess1 3 2\nu3 sess2 1 2\n");
    let msg = read_kaldi(t.path()).expect_err("backwards").to_string();
    assert!(msg.contains("segments:2: utterance u2"), "{msg}");
}

#[test]
fn kaldi_refuses_pipes_and_archives() {
    let t = TempDir::new("kaldi-pipe");
    t.write(
        "wav.scp",
        "a a.wav\nb sox b.flac -t wav -r 16000 - |\nc c.wav\n",
    );
    let e = read_kaldi(t.path()).expect_err("pipe");
    assert!(
        matches!(e, DataError::Unsupported { line: Some(2), .. }),
        "{e:?}"
    );
    let msg = e.to_string();
    assert!(
        msg.contains("wav.scp:2") && msg.contains("command pipe"),
        "{msg}"
    );
    assert!(msg.contains("sox b.flac"), "{msg}");

    t.write("wav.scp", "a a.wav\nb ark:/data/wav.ark:1234\n");
    let msg = read_kaldi(t.path()).expect_err("ark").to_string();
    assert!(
        msg.contains("wav.scp:2") && msg.contains("archive"),
        "{msg}"
    );
    t.write("wav.scp", "a /data/wav.ark:1234\n");
    assert!(read_kaldi(t.path()).is_err());
}

#[test]
fn kaldi_unknown_and_duplicate_ids() {
    let t = TempDir::new("kaldi-ids");
    t.write("wav.scp", "a a.wav\nb b.wav\n");
    let extra: String = (0..13).map(|i| format!("x{i} WORDS\n")).collect();
    t.write("text", format!("a HELLO\n{extra}"));
    let e = read_kaldi(t.path()).expect_err("unknown ids");
    match &e {
        DataError::UnknownIds { ids, path, .. } => {
            assert_eq!(ids.len(), 13);
            assert!(path.ends_with("text"));
        }
        other => panic!("expected unknown ids, got {other:?}"),
    }
    let msg = e.to_string();
    assert!(msg.contains("13 utterance ids are not in wav.scp"), "{msg}");
    assert!(
        msg.contains("x0, x1") && msg.contains("... and 3 more"),
        "{msg}"
    );

    t.write("text", "a HELLO\nb BYE\n");
    t.write("utt2emo", "a neu\nzz sad\n");
    let msg = read_kaldi(t.path()).expect_err("utt2emo").to_string();
    assert!(msg.contains("utt2emo") && msg.contains("zz"), "{msg}");

    t.write("utt2emo", "a neu\n");
    t.write("wav.scp", "a a.wav\nb b.wav\na c.wav\n");
    match read_kaldi(t.path()) {
        Err(DataError::DuplicateIds { ids, .. }) => assert_eq!(ids, ["a"]),
        other => panic!("expected duplicates, got {other:?}"),
    }
    let missing = TempDir::new("kaldi-none");
    let msg = read_kaldi(missing.path())
        .expect_err("no wav.scp")
        .to_string();
    assert!(msg.contains("wav.scp"), "{msg}");
}
