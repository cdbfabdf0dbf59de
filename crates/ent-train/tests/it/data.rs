//! Manifest readers, bad-data checks and batches of `ent_train::data`, on tiny fixtures
//! (text files under `tests/fixtures/data`, WAVs and directory trees written to a temp dir).

use std::collections::BTreeSet;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};

use ent_features::Segment;
use ent_train::data::{
    BadDataPolicy, DataError, EmotionInterval, EmotionMap, ManifestFormat, Utterance, Vocab,
    bucketed_batches, iemocap_folds, load_manifest, prepare, read_iemocap, read_kaldi, read_lhotse,
    read_speechbrain, read_zed,
};

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/data")
}

/// A directory under the system temp dir, removed on drop.
struct TempDir(PathBuf);

impl TempDir {
    fn new(tag: &str) -> Self {
        static COUNTER: AtomicUsize = AtomicUsize::new(0);
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.subsec_nanos());
        let dir = std::env::temp_dir().join(format!(
            "ent-train-data-{tag}-{}-{}-{nanos}",
            std::process::id(),
            COUNTER.fetch_add(1, Ordering::Relaxed)
        ));
        std::fs::create_dir_all(&dir).expect("create temp dir");
        TempDir(dir)
    }

    fn path(&self) -> &Path {
        &self.0
    }

    /// Writes `contents` to `rel` (parents created) and returns the full path.
    fn write(&self, rel: &str, contents: impl AsRef<[u8]>) -> PathBuf {
        let p = self.0.join(rel);
        if let Some(parent) = p.parent() {
            std::fs::create_dir_all(parent).expect("create parent");
        }
        std::fs::write(&p, contents).expect("write file");
        p
    }

    /// A mono 16-bit PCM WAV of `secs` seconds at `rate` Hz.
    fn wav(&self, rel: &str, secs: f64, rate: u32) -> PathBuf {
        self.write(rel, wav_bytes(rate, (secs * rate as f64).round() as usize))
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// The 44-byte canonical header, then `frames` samples of a quiet ramp.
fn wav_bytes(rate: u32, frames: usize) -> Vec<u8> {
    let data_len = (frames * 2) as u32;
    let mut b = Vec::with_capacity(44 + frames * 2);
    b.extend_from_slice(b"RIFF");
    b.extend_from_slice(&(36 + data_len).to_le_bytes());
    b.extend_from_slice(b"WAVEfmt ");
    b.extend_from_slice(&16u32.to_le_bytes()); // fmt chunk size
    b.extend_from_slice(&1u16.to_le_bytes()); // PCM
    b.extend_from_slice(&1u16.to_le_bytes()); // mono
    b.extend_from_slice(&rate.to_le_bytes());
    b.extend_from_slice(&(rate * 2).to_le_bytes()); // byte rate
    b.extend_from_slice(&2u16.to_le_bytes()); // block align
    b.extend_from_slice(&16u16.to_le_bytes()); // bits
    b.extend_from_slice(b"data");
    b.extend_from_slice(&data_len.to_le_bytes());
    for i in 0..frames {
        b.extend_from_slice(&(((i % 200) as i16 - 100) * 10).to_le_bytes());
    }
    b
}

fn gzip(text: &str) -> Vec<u8> {
    let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    enc.write_all(text.as_bytes()).expect("gzip");
    enc.finish().expect("gzip")
}

fn by_id<'a>(utts: &'a [Utterance], id: &str) -> &'a Utterance {
    utts.iter().find(|u| u.id == id).expect("utterance present")
}

// ---------------------------------------------------------------- probe (ent-features)

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

// ---------------------------------------------------------------- SpeechBrain

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

// ---------------------------------------------------------------- Kaldi

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

// ---------------------------------------------------------------- Lhotse

fn cut(id: &str, source: &str, sup: &str) -> String {
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

// ---------------------------------------------------------------- IEMOCAP

/// Two sessions (1 and 3) of an IEMOCAP-shaped tree; 2, 4, 5 are missing.
fn iemocap_tree(t: &TempDir) {
    let eval1 = "% [START_TIME - END_TIME] TURN_NAME EMOTION [V, A, D]\n\n\
        [6.2901 - 8.2357]\tSes01F_impro01_F000\tneu\t[2.5000, 2.5000, 2.5000]\n\
        C-E2:\tNeutral;\t()\n\
        A-E3:\tval 3; act 2; dom  2;\t()\n\n\
        [10.0100 - 11.3925]\tSes01F_impro01_F001\txxx\t[2.5000, 2.5000, 2.5000]\n\
        [14.8872 - 18.0175]\tSes01F_impro01_M002\tfru\t[2.0000, 3.5000, 3.5000]\n\
        [19.2900 - 20.7875]\tSes01F_impro01_M003\texc\t[3.5000, 3.5000, 3.0000]\n";
    t.write("Session1/dialog/EmoEvaluation/Ses01F_impro01.txt", eval1);
    t.write(
        "Session1/dialog/EmoEvaluation/Ses01M_script01_1.txt",
        "[1.0 - 2.0]\tSes01M_script01_1_F000\tang\t[1.5000, 4.0000, 4.0000]\n",
    );
    // macOS resource fork copies and the per-evaluator folders are not read.
    t.write(
        "Session1/dialog/EmoEvaluation/._Ses01F_impro01.txt",
        [0u8, 5, 7],
    );
    t.write(
        "Session1/dialog/EmoEvaluation/Categorical/Ses01F_impro01_e2_cat.txt",
        "Ses01F_impro01_F000 :Neutral state; ()\n",
    );
    t.write(
        "Session1/dialog/transcriptions/Ses01F_impro01.txt",
        "Ses01F_impro01_F000 [006.2901-008.2357]: Excuse me.\n\
         Ses01F_impro01_F001 [010.0100-011.3925]: Do you have your forms?\n\
         Ses01F_impro01_M003 [019.2900-020.7875]: Yeah. [LAUGHTER] Sure.\n\
         M: [BREATHING]\n",
    );
    t.write(
        "Session3/dialog/EmoEvaluation/Ses03M_impro02.txt",
        "[3.0 - 5.5]\tSes03M_impro02_M000\tsad\t[1.0000, 1.5000, 2.0000]\n\
         [6.0 - 7.0]\tSes03M_impro02_F001\thap\t[4.0000, 3.0000, 3.0000]\n\
         [8.0 - 9.0]\tSes03M_impro02_F002\tsur\t[4.0000, 3.0000, 3.0000]\n",
    );
    t.write(
        "Session3/dialog/transcriptions/Ses03M_impro02.txt",
        "Ses03M_impro02_M000 [003.0000-005.5000]: I miss her.\n\
         Ses03M_impro02_F001 [006.0000-007.0000]: Me too.\n",
    );
}

#[test]
fn iemocap_four_classes_and_folds() {
    let t = TempDir::new("iemocap");
    iemocap_tree(&t);
    let utts = read_iemocap(t.path()).expect("reads");
    let ids: Vec<&str> = utts.iter().map(|u| u.id.as_str()).collect();
    assert_eq!(
        ids,
        [
            "Ses01F_impro01_F000",
            "Ses01F_impro01_M003",
            "Ses01M_script01_1_F000",
            "Ses03M_impro02_M000",
            "Ses03M_impro02_F001",
        ],
        "xxx, fru and sur are left out"
    );
    let m003 = by_id(&utts, "Ses01F_impro01_M003");
    assert_eq!(m003.emotion.as_deref(), Some("exc"));
    assert_eq!(
        m003.audio,
        t.path()
            .join("Session1/sentences/wav/Ses01F_impro01/Ses01F_impro01_M003.wav")
    );
    assert_eq!(m003.text.as_deref(), Some("Yeah. [LAUGHTER] Sure."));
    assert_eq!(
        m003.gender.as_deref(),
        Some("M"),
        "the speaker, not the Ses01F"
    );
    assert_eq!(m003.speaker.as_deref(), Some("Ses01M"));
    assert_eq!(m003.intensity, Some(3.5));
    assert_eq!(m003.session, Some(1));
    let script = by_id(&utts, "Ses01M_script01_1_F000");
    assert_eq!(script.text, None, "no transcript file for that dialog");
    assert_eq!(script.speaker.as_deref(), Some("Ses01F"));
    assert_eq!(
        script.audio,
        t.path()
            .join("Session1/sentences/wav/Ses01M_script01_1/Ses01M_script01_1_F000.wav")
    );
    assert_eq!(by_id(&utts, "Ses03M_impro02_M000").session, Some(3));
    assert_eq!(by_id(&utts, "Ses03M_impro02_M000").intensity, Some(1.5));

    // Every kept label maps into the default 4 classes.
    let map = EmotionMap::default();
    let classes: Vec<usize> = utts
        .iter()
        .map(|u| {
            map.class_of(u.emotion.as_deref().unwrap_or(""))
                .expect("known")
        })
        .collect();
    assert_eq!(classes, [3, 0, 1, 2, 0]);

    let folds = iemocap_folds(&utts);
    assert_eq!(
        folds,
        vec![
            (1, vec![3, 4], vec![0, 1, 2]),
            (3, vec![0, 1, 2], vec![3, 4])
        ]
    );
    assert_eq!(
        load_manifest(t.path(), None, None).expect("auto"),
        utts,
        "detected by its Session folders"
    );
}

#[test]
fn iemocap_errors() {
    let t = TempDir::new("iemocap-none");
    match read_iemocap(t.path()) {
        Err(DataError::MissingSessions { missing, .. }) => assert_eq!(missing, [1, 2, 3, 4, 5]),
        other => panic!("expected missing sessions, got {other:?}"),
    }
    let msg = read_iemocap(t.path()).expect_err("none").to_string();
    assert!(msg.contains("Session1, Session2"), "{msg}");

    t.write(
        "Session2/dialog/EmoEvaluation/Ses02F_impro01.txt",
        "[1.0 - 2.0]\tSes02F_impro01_F000\tneu\t[2.5, oops, 2.5]\n",
    );
    let msg = read_iemocap(t.path()).expect_err("bad vad").to_string();
    assert!(
        msg.contains("Ses02F_impro01.txt:1: utterance Ses02F_impro01_F000"),
        "{msg}"
    );
}

// ---------------------------------------------------------------- ZED

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

// ---------------------------------------------------------------- detection

#[test]
fn detection() {
    let sb = load_manifest(
        &fixtures().join("speechbrain.json"),
        None,
        Some(Path::new("/r")),
    )
    .expect("speechbrain");
    assert_eq!(sb.len(), 3);
    let explicit = load_manifest(
        &fixtures().join("speechbrain.json"),
        Some(ManifestFormat::SpeechBrain),
        Some(Path::new("/r")),
    )
    .expect("explicit");
    assert_eq!(sb, explicit);
    let kaldi = load_manifest(&fixtures().join("kaldi"), None, None).expect("kaldi");
    assert_eq!(kaldi, read_kaldi(&fixtures().join("kaldi")).expect("kaldi"));

    let t = TempDir::new("detect");
    let e = load_manifest(t.path(), None, None).expect_err("empty dir");
    assert!(matches!(e, DataError::UnknownFormat { .. }), "{e:?}");
    let lhotse_no_ext = t.write("cuts", format!("{}\n", cut("c", "c.wav", "")));
    assert_eq!(
        load_manifest(&lhotse_no_ext, None, None)
            .expect("lines")
            .len(),
        1
    );
    let garbage = t.write("x.json", "[1, 2");
    assert!(matches!(
        load_manifest(&garbage, None, None),
        Err(DataError::Syntax { .. })
    ));
    assert!(matches!(
        load_manifest(&t.path().join("absent.json"), None, None),
        Err(DataError::Io { .. })
    ));
}

// ---------------------------------------------------------------- prepare

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
        msg.starts_with("5 of 7 audio files are missing or unreadable:\n"),
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
    assert!(msg.starts_with("60 of 60 audio files"), "{msg}");
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

// ---------------------------------------------------------------- batches

/// Lengths with many near-ties, as real corpora have.
fn lengths(n: usize, seed: u64) -> Vec<f64> {
    let mut r = ent_features::rng::SplitMix64::new(seed);
    (0..n)
        .map(|_| 0.5 + (r.uniform() * 40.0).round() * 0.25)
        .collect()
}

fn check_permutation(batches: &[Vec<usize>], n: usize) {
    let mut all: Vec<usize> = batches.iter().flatten().copied().collect();
    all.sort_unstable();
    assert_eq!(all, (0..n).collect::<Vec<_>>(), "every index exactly once");
    assert!(batches.iter().all(|b| !b.is_empty()));
}

#[test]
fn batches_are_permutations_within_caps() {
    for (case, n) in [0usize, 1, 2, 7, 100, 333].into_iter().enumerate() {
        let lens = lengths(n, case as u64);
        for &(max_batch, cap) in &[(1, None), (4, None), (16, Some(40.0)), (64, Some(12.0))] {
            for shuffle in [false, true] {
                let b = bucketed_batches(&lens, max_batch, cap, 42, 3, shuffle);
                check_permutation(&b, n);
                for batch in &b {
                    assert!(batch.len() <= max_batch);
                    if let Some(cap) = cap {
                        let longest = batch.iter().map(|&i| lens[i]).fold(0.0, f64::max);
                        assert!(
                            batch.len() == 1 || longest * batch.len() as f64 <= cap,
                            "{batch:?} pads to more than {cap}"
                        );
                    }
                }
            }
        }
    }
}

#[test]
fn batches_are_deterministic_and_differ_by_epoch() {
    let lens = lengths(200, 9);
    let a = bucketed_batches(&lens, 8, None, 42, 0, true);
    assert_eq!(a, bucketed_batches(&lens, 8, None, 42, 0, true));
    let epochs: BTreeSet<Vec<Vec<usize>>> = (0..5)
        .map(|e| bucketed_batches(&lens, 8, None, 42, e, true))
        .collect();
    assert_eq!(epochs.len(), 5, "every epoch differs");
    assert_ne!(
        a,
        bucketed_batches(&lens, 8, None, 43, 0, true),
        "seeds differ"
    );

    // Buckets stay tight: padding adds little more than with strictly sorted batches.
    let padded = |b: &[Vec<usize>]| -> f64 {
        b.iter()
            .map(|x| x.iter().map(|&i| lens[i]).fold(0.0, f64::max) * x.len() as f64)
            .sum()
    };
    let total: f64 = lens.iter().sum();
    let sorted = padded(&bucketed_batches(&lens, 8, None, 42, 0, false));
    let shuffled = padded(&a);
    assert!(
        shuffled <= sorted + 0.05 * total,
        "padding {shuffled} vs {sorted} sorted, {total} of audio"
    );
    // Near-equal lengths mix differently between epochs: batch contents change, not only
    // their order.
    let sets = |b: &[Vec<usize>]| -> BTreeSet<BTreeSet<usize>> {
        b.iter().map(|x| x.iter().copied().collect()).collect()
    };
    let e1 = bucketed_batches(&lens, 8, None, 42, 1, true);
    assert_ne!(sets(&a), sets(&e1));
}
