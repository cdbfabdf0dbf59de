//! The IEMOCAP release folder and its folds.

use super::*;

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
