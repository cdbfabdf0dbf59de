//! Metric tests: hand-worked WA/UA/F1, WER/CER and EDER cases, and property tests of the edit
//! distance and EDER against brute-force oracles written here independently of the crate.

use ent_decode::metrics::{
    AsrScores, Confusion, EderMean, ErrorCounts, MetricError, Segment, align_counts, eder,
    frames_to_segments, normalize_for_scoring, reference_segments,
};
use proptest::prelude::*;
use proptest::test_runner::TestCaseError;

fn seg(start: f64, end: f64, label: usize) -> Segment {
    Segment { start, end, label }
}

fn close(a: f64, b: f64, tol: f64) -> bool {
    (a - b).abs() <= tol
}

// ---------------------------------------------------------------------------------------------
// Emotion classification
// ---------------------------------------------------------------------------------------------

/// Five classes; `sad` is predicted once but never in the reference, `fru` appears nowhere.
///
/// ```text
///             hyp: neu hap ang sad fru | support
/// ref neu           5   1   0   1   0  |  7
/// ref hap           2   3   0   0   0  |  5
/// ref ang           0   1   4   0   0  |  5
/// ref sad           0   0   0   0   0  |  0
/// ref fru           0   0   0   0   0  |  0
/// predicted         7   5   4   1   0  | 17
/// ```
fn hand_matrix() -> Confusion {
    let labels = ["neu", "hap", "ang", "sad", "fru"];
    let mut c = Confusion::new(labels.iter().map(|s| s.to_string()).collect());
    let cells = [
        (0, 0, 5),
        (0, 1, 1),
        (0, 3, 1),
        (1, 0, 2),
        (1, 1, 3),
        (2, 1, 1),
        (2, 2, 4),
    ];
    for (r, h, n) in cells {
        for _ in 0..n {
            c.add(r, h).unwrap();
        }
    }
    c
}

#[test]
fn confusion_hand_computed_scores() {
    let c = hand_matrix();
    assert_eq!(c.total(), 17);
    assert_eq!(c.correct(), 12);
    // WA = (5 + 3 + 4) / 17.
    assert!(close(c.wa().unwrap(), 100.0 * 12.0 / 17.0, 1e-12));
    // UA over the three reference classes only (sad, fru have support 0):
    // (5/7 + 3/5 + 4/5) / 3.
    let ua = 100.0 * (5.0 / 7.0 + 0.6 + 0.8) / 3.0;
    assert!(close(c.ua().unwrap(), ua, 1e-12), "{:?}", c.ua());
    // F1 = 2 tp / (support + predicted): neu 10/14, hap 6/10, ang 8/9, sad 0/1 = 0;
    // fru (no reference, no prediction) is excluded, so the mean is over 4 classes.
    let f1 = 100.0 * (10.0 / 14.0 + 0.6 + 8.0 / 9.0 + 0.0) / 4.0;
    assert!(
        close(c.macro_f1().unwrap(), f1, 1e-12),
        "{:?}",
        c.macro_f1()
    );

    let per = c.per_class();
    assert_eq!(per.len(), 5);
    assert_eq!(per[0].label, "neu");
    assert_eq!((per[0].support, per[0].predicted), (7, 7));
    assert!(close(per[0].precision, 100.0 * 5.0 / 7.0, 1e-12));
    assert!(close(per[0].recall, 100.0 * 5.0 / 7.0, 1e-12));
    // ang: precision 4/4, recall 4/5, F1 = 2 * 1 * 0.8 / 1.8 = 8/9.
    assert!(close(per[2].precision, 100.0, 1e-12));
    assert!(close(per[2].recall, 80.0, 1e-12));
    assert!(close(per[2].f1, 100.0 * 8.0 / 9.0, 1e-12));
    // sad: predicted once wrongly, never in the reference: everything 0.
    assert_eq!((per[3].support, per[3].predicted), (0, 1));
    assert_eq!(
        (per[3].precision, per[3].recall, per[3].f1),
        (0.0, 0.0, 0.0)
    );
    assert_eq!((per[4].support, per[4].predicted), (0, 0));
}

#[test]
fn confusion_empty_is_none() {
    let c = Confusion::new(vec!["a".into(), "b".into()]);
    assert_eq!(c.total(), 0);
    assert_eq!((c.wa(), c.ua(), c.macro_f1()), (None, None, None));
    let none = Confusion::new(Vec::new());
    assert_eq!(none.wa(), None);
    assert!(none.per_class().is_empty());
}

#[test]
fn confusion_perfect_and_all_wrong() {
    let mut c = Confusion::new(vec!["a".into(), "b".into()]);
    c.add(0, 0).unwrap();
    c.add(1, 1).unwrap();
    c.add(1, 1).unwrap();
    assert_eq!(
        (c.wa(), c.ua(), c.macro_f1()),
        (Some(100.0), Some(100.0), Some(100.0))
    );
    let mut w = Confusion::new(vec!["a".into(), "b".into()]);
    w.add(0, 1).unwrap();
    w.add(1, 0).unwrap();
    assert_eq!(
        (w.wa(), w.ua(), w.macro_f1()),
        (Some(0.0), Some(0.0), Some(0.0))
    );
}

#[test]
fn confusion_rejects_out_of_range_labels() {
    let mut c = Confusion::new(vec!["a".into(), "b".into()]);
    let e = c.add(2, 0).unwrap_err();
    assert_eq!(
        e,
        MetricError::LabelOutOfRange {
            role: "reference",
            index: 2,
            classes: 2
        }
    );
    assert_eq!(
        e.to_string(),
        "reference label 2 is out of range for 2 classes"
    );
    assert!(matches!(
        c.add(0, 7),
        Err(MetricError::LabelOutOfRange {
            role: "hypothesis",
            index: 7,
            ..
        })
    ));
    assert!(Confusion::new(Vec::new()).add(0, 0).is_err());
    // Nothing was counted by the failed calls.
    assert_eq!(c.total(), 0);
}

#[test]
fn confusion_serde_roundtrip_and_malformed() {
    let c = hand_matrix();
    let json = serde_json::to_string(&c).unwrap();
    let back: Confusion = serde_json::from_str(&json).unwrap();
    assert_eq!(back, c);
    back.validate().unwrap();

    let mut bad: Confusion =
        serde_json::from_str(r#"{"labels":["a","b"],"counts":[[1,0]]}"#).unwrap();
    assert!(matches!(
        bad.validate(),
        Err(MetricError::MalformedConfusion {
            rows: 1,
            classes: 2,
            ..
        })
    ));
    assert!(matches!(
        bad.add(1, 1),
        Err(MetricError::MalformedConfusion { .. })
    ));
    // Scores of a malformed matrix read missing cells as 0 instead of panicking.
    assert_eq!(bad.wa(), Some(100.0));
}

#[test]
fn confusion_merge_adds_counts() {
    let mut a = hand_matrix();
    a.merge(&hand_matrix()).unwrap();
    assert_eq!(a.total(), 34);
    assert_eq!(a.counts[0][0], 10);
    assert!(close(a.wa().unwrap(), 100.0 * 12.0 / 17.0, 1e-12));
    let other = Confusion::new(vec!["x".into()]);
    assert!(matches!(
        a.merge(&other),
        Err(MetricError::LabelMismatch { .. })
    ));
}

// ---------------------------------------------------------------------------------------------
// ASR
// ---------------------------------------------------------------------------------------------

fn counts(s: u64, d: u64, i: u64, n: u64) -> ErrorCounts {
    ErrorCounts {
        substitutions: s,
        deletions: d,
        insertions: i,
        reference_len: n,
    }
}

#[test]
fn align_hand_worked() {
    let words = |s: &str| s.split_whitespace().map(str::to_owned).collect::<Vec<_>>();
    // THE=THE, CAT->BAT, SAT=SAT, +ON.
    assert_eq!(
        align_counts(&words("THE CAT SAT"), &words("THE BAT SAT ON")),
        counts(1, 0, 1, 3)
    );
    // B is missing.
    assert_eq!(
        align_counts(&words("A B C D"), &words("A C D")),
        counts(0, 1, 0, 4)
    );
    // Empty hypothesis: all deletions; empty reference: all insertions.
    assert_eq!(align_counts(&words("A B"), &words("")), counts(0, 2, 0, 2));
    assert_eq!(
        align_counts(&words(""), &words("A B C")),
        counts(0, 0, 3, 0)
    );
    assert_eq!(align_counts::<u8>(&[], &[]), counts(0, 0, 0, 0));
    // Tie: "A B" vs "B A" costs 2 as two substitutions or as del A, match B, ins A;
    // the documented tie-break prefers substitutions.
    assert_eq!(
        align_counts(&words("A B"), &words("B A")),
        counts(2, 0, 0, 2)
    );
    // Tie with unequal lengths: ref a b c, hyp x a: cost 3 either as
    // (ins x, a, del b, del c) = D2 I1 or (a->x, b->a, del c) = S2 D1; prefer S2 D1.
    assert_eq!(align_counts(b"abc", b"xa"), counts(2, 1, 0, 3));
}

#[test]
fn error_counts_rate_and_add() {
    let mut c = counts(1, 0, 1, 3);
    assert_eq!(c.errors(), 2);
    assert!(close(c.rate().unwrap(), 200.0 / 3.0, 1e-12));
    c.add(counts(0, 2, 0, 5));
    assert_eq!(c, counts(1, 2, 1, 8));
    assert_eq!(c.rate(), Some(50.0));
    assert_eq!(ErrorCounts::default().rate(), None);
    // Insertions can push the rate above 100 %.
    assert_eq!(counts(0, 0, 3, 1).rate(), Some(300.0));
}

#[test]
fn normalisation() {
    assert_eq!(normalize_for_scoring("Hello, world!"), "HELLO WORLD");
    assert_eq!(
        normalize_for_scoring("  [laughter] it's -- ok;\t\"yes\"?  a:b.c "),
        "LAUGHTER IT'S OK YES A B C"
    );
    assert_eq!(normalize_for_scoring(" ?!. "), "");
    assert_eq!(normalize_for_scoring("straße"), "STRASSE");
}

#[test]
fn asr_scores_corpus_level() {
    let mut s = AsrScores::default();
    assert_eq!((s.wer(), s.cer()), (None, None));
    // Punctuation and case do not count.
    s.add("Hello, world!", "hello world");
    assert_eq!((s.wer(), s.cer()), (Some(0.0), Some(0.0)));
    // Words: THE CAT SAT vs THE BAT SAT ON -> S1 I1, N3.
    // Chars (spaces included): "THE CAT SAT" (11) vs "THE BAT SAT ON" (14): C->B plus the
    // inserted " ON" -> S1 I3.
    s.add("the cat sat", "the bat sat on");
    assert_eq!(s.words, counts(1, 0, 1, 2 + 3));
    assert_eq!(s.chars, counts(1, 0, 3, 11 + 11));
    // Corpus level: sum of errors over sum of N, not the mean of per-utterance rates.
    assert!(close(s.wer().unwrap(), 100.0 * 2.0 / 5.0, 1e-12));
    assert!(close(s.cer().unwrap(), 100.0 * 4.0 / 22.0, 1e-12));
    // An empty reference adds insertions but no N.
    s.add("", "uh");
    assert_eq!(s.words, counts(1, 0, 2, 5));
    assert_eq!(s.chars, counts(1, 0, 5, 22));
}

/// One edit-distance case: the crate's DP against exhaustive enumeration of every alignment.
#[derive(Debug, Clone)]
struct AlignProblem {
    reference: Vec<u8>,
    hypothesis: Vec<u8>,
}

/// Every alignment of `r` with `h` as (S, D, I), enumerated without dynamic programming.
fn all_alignments(r: &[u8], h: &[u8], acc: (u64, u64, u64), out: &mut Vec<(u64, u64, u64)>) {
    let (s, d, i) = acc;
    if r.is_empty() && h.is_empty() {
        out.push(acc);
        return;
    }
    if let (Some(a), Some(b)) = (r.first(), h.first()) {
        let sub = u64::from(a != b);
        all_alignments(&r[1..], &h[1..], (s + sub, d, i), out);
    }
    if !r.is_empty() {
        all_alignments(&r[1..], h, (s, d + 1, i), out);
    }
    if !h.is_empty() {
        all_alignments(r, &h[1..], (s, d, i + 1), out);
    }
}

impl AlignProblem {
    /// Minimal S + D + I; among those, minimal D + I (the documented tie-break).
    fn reference(&self) -> ErrorCounts {
        let mut all = Vec::new();
        all_alignments(&self.reference, &self.hypothesis, (0, 0, 0), &mut all);
        let (s, d, i) = all
            .into_iter()
            .min_by_key(|&(s, d, i)| (s + d + i, d + i))
            .expect("there is always at least one alignment");
        counts(s, d, i, self.reference.len() as u64)
    }

    fn run(&self) -> ErrorCounts {
        align_counts(&self.reference, &self.hypothesis)
    }

    fn check(&self) -> Result<(), TestCaseError> {
        let want = self.reference();
        let got = self.run();
        prop_assert_eq!(got.errors(), want.errors(), "total edit distance");
        prop_assert_eq!(got, want);
        Ok(())
    }
}

fn arbitrary_align_problem() -> impl Strategy<Value = AlignProblem> {
    // A 3-letter alphabet so that matches, substitutions and ties are all common; lengths up
    // to 6 keep the exhaustive enumeration (at most 8989 alignments) cheap.
    let seq = || prop::collection::vec(0u8..3, 0..=6);
    (seq(), seq()).prop_map(|(reference, hypothesis)| AlignProblem {
        reference,
        hypothesis,
    })
}

proptest! {
    #[test]
    fn align_counts_matches_brute_force(p in arbitrary_align_problem()) {
        p.check()?;
    }
}

// ---------------------------------------------------------------------------------------------
// Emotion diarization
// ---------------------------------------------------------------------------------------------

const ANGRY: usize = 1;
const NEUTRAL: usize = 3;

#[test]
fn eder_spec_check_value() {
    // docs/method.md §6: frames n n n a a a, 0.2 s window and stride, duration 1.22 s, reference
    // angry 0.39-1.10 s. Hypothesis n [0, 0.6], a [0.6, 1.2]; same-label overlap
    // n 0.39 + a 0.5 = 0.89; EDER = 1 - 0.89 / 1.22.
    let frames = [NEUTRAL, NEUTRAL, NEUTRAL, ANGRY, ANGRY, ANGRY];
    let hyp = frames_to_segments(&frames, 0.2, 0.2).unwrap();
    assert_eq!(hyp.len(), 2);
    assert!(close(hyp[0].end, 0.6, 1e-12) && close(hyp[1].end, 1.2, 1e-12));
    let reference = reference_segments(1.22, &[seg(0.39, 1.10, ANGRY)], NEUTRAL).unwrap();
    assert_eq!(reference.len(), 3);
    let e = eder(&hyp, &reference, 1.22).unwrap();
    assert!(close(e, 0.2704918032786885, 1e-12), "EDER = {e}");
}

#[test]
fn frames_to_segments_splits_overlap_at_midpoint() {
    // Stride 0.25 s, window 0.5 s (binary-exact). Frame i covers [0.25 i, 0.25 i + 0.5].
    // Runs: label 0 frames 0-1 -> [0, 0.75]; label 1 frames 2-4 -> [0.5, 1.5];
    // label 2 frame 5 -> [1.25, 1.75]. Overlaps [0.5, 0.75] and [1.25, 1.5] are split at
    // 0.625 and 1.375.
    let s = frames_to_segments(&[0, 0, 1, 1, 1, 2], 0.25, 0.5).unwrap();
    assert_eq!(
        s,
        vec![
            seg(0.0, 0.625, 0),
            seg(0.625, 1.375, 1),
            seg(1.375, 1.75, 2)
        ]
    );
}

#[test]
fn frames_to_segments_merges_runs() {
    assert_eq!(
        frames_to_segments(&[4, 4, 4], 0.5, 0.5).unwrap(),
        vec![seg(0.0, 1.5, 4)]
    );
    assert_eq!(
        frames_to_segments(&[4, 4, 4], 0.5, 2.0).unwrap(),
        vec![seg(0.0, 3.0, 4)]
    );
    // A single frame.
    assert_eq!(
        frames_to_segments(&[2], 0.02, 0.02).unwrap(),
        vec![seg(0.0, 0.02, 2)]
    );
    assert!(frames_to_segments(&[], 0.02, 0.02).unwrap().is_empty());
}

#[test]
fn frames_to_segments_wide_window() {
    // Stride 1, window 10: frame i covers [i, i + 10]. Boundaries: after frame 0
    // (1 + 0 + 10) / 2 = 5.5, after frame 1 (2 + 1 + 10) / 2 = 6.5; the middle frame keeps
    // [5.5, 6.5] although every frame overlaps every other.
    assert_eq!(
        frames_to_segments(&[0, 1, 0], 1.0, 10.0).unwrap(),
        vec![seg(0.0, 5.5, 0), seg(5.5, 6.5, 1), seg(6.5, 12.0, 0)]
    );
}

#[test]
fn frames_to_segments_gaps_stay_uncovered() {
    // Window 0.5 < stride 1: frames [0, 0.5] and [1, 1.5] do not touch and are not merged.
    let s = frames_to_segments(&[1, 1], 1.0, 0.5).unwrap();
    assert_eq!(s, vec![seg(0.0, 0.5, 1), seg(1.0, 1.5, 1)]);
    // Against a reference that is label 1 over [0, 2], only 1 s of 2 s agrees.
    let reference = [seg(0.0, 2.0, 1)];
    assert_eq!(eder(&s, &reference, 2.0).unwrap(), 0.5);
}

#[test]
fn frames_to_segments_rejects_bad_geometry() {
    for (stride, window) in [
        (0.0, 0.02),
        (-0.02, 0.02),
        (f64::NAN, 0.02),
        (f64::INFINITY, 0.02),
        (0.02, 0.0),
        (0.02, f64::NAN),
    ] {
        let e = frames_to_segments(&[0], stride, window).unwrap_err();
        assert!(
            matches!(e, MetricError::InvalidFrameGeometry { .. }),
            "stride {stride} window {window}: {e}"
        );
    }
    assert_eq!(
        frames_to_segments(&[], -1.0, 1.0).unwrap_err().to_string(),
        "frame stride = -1 must be finite and positive"
    );
}

#[test]
fn reference_segments_layout() {
    // Neutral / angry / neutral.
    assert_eq!(
        reference_segments(2.0, &[seg(0.5, 1.5, ANGRY)], NEUTRAL).unwrap(),
        vec![
            seg(0.0, 0.5, NEUTRAL),
            seg(0.5, 1.5, ANGRY),
            seg(1.5, 2.0, NEUTRAL)
        ]
    );
    // Clipped to [0, duration]; no zero-length neutral pieces.
    assert_eq!(
        reference_segments(1.0, &[seg(-0.5, 0.5, ANGRY)], NEUTRAL).unwrap(),
        vec![seg(0.0, 0.5, ANGRY), seg(0.5, 1.0, NEUTRAL)]
    );
    assert_eq!(
        reference_segments(1.0, &[seg(0.0, 3.0, ANGRY)], NEUTRAL).unwrap(),
        vec![seg(0.0, 1.0, ANGRY)]
    );
    // An interval entirely past the end disappears; no interval -> all neutral.
    assert_eq!(
        reference_segments(1.0, &[seg(2.0, 3.0, ANGRY)], NEUTRAL).unwrap(),
        vec![seg(0.0, 1.0, NEUTRAL)]
    );
    assert_eq!(
        reference_segments(1.0, &[], NEUTRAL).unwrap(),
        vec![seg(0.0, 1.0, NEUTRAL)]
    );
    // Touching intervals are fine; equal labels merge (here a neutral-labelled interval).
    assert_eq!(
        reference_segments(
            3.0,
            &[
                seg(1.0, 2.0, ANGRY),
                seg(2.0, 2.5, 0),
                seg(2.5, 2.75, NEUTRAL)
            ],
            NEUTRAL
        )
        .unwrap(),
        vec![
            seg(0.0, 1.0, NEUTRAL),
            seg(1.0, 2.0, ANGRY),
            seg(2.0, 2.5, 0),
            seg(2.5, 3.0, NEUTRAL)
        ]
    );
}

#[test]
fn reference_segments_rejects_bad_input() {
    let overlapping = [seg(0.2, 0.6, ANGRY), seg(0.5, 0.8, 0)];
    let e = reference_segments(1.0, &overlapping, NEUTRAL).unwrap_err();
    assert_eq!(
        e.to_string(),
        "interval segments 0 [0.2, 0.6] and 1 [0.5, 0.8] overlap or are not sorted by time"
    );
    let unsorted = [seg(0.5, 0.8, 0), seg(0.1, 0.2, ANGRY)];
    assert!(matches!(
        reference_segments(1.0, &unsorted, NEUTRAL),
        Err(MetricError::OverlappingSegments {
            first: 0,
            second: 1,
            ..
        })
    ));
    assert!(matches!(
        reference_segments(1.0, &[seg(0.8, 0.2, ANGRY)], NEUTRAL),
        Err(MetricError::InvalidSegment { index: 0, .. })
    ));
    assert!(matches!(
        reference_segments(1.0, &[seg(f64::NAN, 0.2, ANGRY)], NEUTRAL),
        Err(MetricError::InvalidSegment { .. })
    ));
    for d in [0.0, -1.0, f64::NAN, f64::INFINITY] {
        assert!(matches!(
            reference_segments(d, &[], NEUTRAL),
            Err(MetricError::InvalidDuration(_))
        ));
    }
}

#[test]
fn eder_perfect_wrong_and_short() {
    let reference = reference_segments(2.0, &[seg(0.5, 1.5, ANGRY)], NEUTRAL).unwrap();
    assert_eq!(eder(&reference, &reference, 2.0).unwrap(), 0.0);
    // Everything labelled with a third class.
    assert_eq!(eder(&[seg(0.0, 2.0, 7)], &reference, 2.0).unwrap(), 1.0);
    // Everything angry: only the 1 s angry interval agrees.
    assert_eq!(eder(&[seg(0.0, 2.0, ANGRY)], &reference, 2.0).unwrap(), 0.5);
    // Correct up to 1.5 s, then nothing: the uncovered 0.5 s counts as error, 0.5 / 2.
    let short = [seg(0.0, 0.5, NEUTRAL), seg(0.5, 1.5, ANGRY)];
    assert_eq!(eder(&short, &reference, 2.0).unwrap(), 0.25);
    // No hypothesis at all.
    assert_eq!(eder(&[], &reference, 2.0).unwrap(), 1.0);
    // A hypothesis running past the duration is clipped, not rewarded.
    let long = [
        seg(0.0, 0.5, NEUTRAL),
        seg(0.5, 1.5, ANGRY),
        seg(1.5, 9.0, NEUTRAL),
    ];
    assert_eq!(eder(&long, &reference, 2.0).unwrap(), 0.0);
}

#[test]
fn eder_rejects_bad_input() {
    let reference = [seg(0.0, 1.0, NEUTRAL)];
    for d in [0.0, -1.0, f64::NAN, f64::INFINITY] {
        let e = eder(&reference, &reference, d).unwrap_err();
        assert!(matches!(e, MetricError::InvalidDuration(_)), "{e}");
    }
    assert_eq!(
        eder(&reference, &reference, -1.0).unwrap_err().to_string(),
        "duration = -1 must be finite and positive"
    );
    let overlapping = [seg(0.0, 0.6, NEUTRAL), seg(0.5, 1.0, ANGRY)];
    assert!(matches!(
        eder(&overlapping, &reference, 1.0),
        Err(MetricError::OverlappingSegments {
            role: "hypothesis",
            ..
        })
    ));
    assert!(matches!(
        eder(&reference, &[seg(0.0, f64::NAN, 0)], 1.0),
        Err(MetricError::InvalidSegment {
            role: "reference",
            ..
        })
    ));
}

#[test]
fn eder_mean() {
    let mut m = EderMean::default();
    assert_eq!((m.mean(), m.count()), (None, 0));
    m.add(0.25);
    m.add(0.5);
    m.add(0.0);
    assert_eq!(m.count(), 3);
    assert!(close(m.mean().unwrap(), 0.25, 1e-15));
}

/// One EDER case on a quarter-second grid: the crate's sweep against a brute-force oracle that
/// labels every elementary interval between consecutive breakpoints.
#[derive(Debug, Clone)]
struct EderProblem {
    hypothesis: Vec<Segment>,
    reference: Vec<Segment>,
    duration: f64,
}

/// The label of the segment strictly containing `t`, if any (linear scan).
fn label_at(segments: &[Segment], t: f64) -> Option<usize> {
    segments
        .iter()
        .find(|s| s.start < t && t < s.end)
        .map(|s| s.label)
}

impl EderProblem {
    fn reference(&self) -> f64 {
        let mut points: Vec<f64> = vec![0.0, self.duration];
        for s in self.hypothesis.iter().chain(&self.reference) {
            points.push(s.start.clamp(0.0, self.duration));
            points.push(s.end.clamp(0.0, self.duration));
        }
        points.sort_by(f64::total_cmp);
        points.dedup();
        let agree: f64 = points
            .windows(2)
            .filter(|w| {
                let mid = 0.5 * (w[0] + w[1]);
                let h = label_at(&self.hypothesis, mid);
                h.is_some() && h == label_at(&self.reference, mid)
            })
            .map(|w| w[1] - w[0])
            .sum();
        1.0 - agree / self.duration
    }

    fn run(&self) -> Result<f64, MetricError> {
        eder(&self.hypothesis, &self.reference, self.duration)
    }

    fn check(&self) -> Result<(), TestCaseError> {
        let got = self.run().map_err(|e| TestCaseError::fail(e.to_string()))?;
        let want = self.reference();
        prop_assert!((0.0..=1.0).contains(&got), "EDER {got} outside [0, 1]");
        prop_assert!(close(got, want, 1e-12), "EDER {got}, brute force {want}");
        Ok(())
    }
}

/// Sorted, non-overlapping segments on a 0.25 s grid, with random gaps (possibly none) and
/// possibly zero-length segments, labels 0..3.
fn arbitrary_segments() -> impl Strategy<Value = Vec<Segment>> {
    prop::collection::vec((0u32..3, 0u32..5, 0usize..3), 0..8).prop_map(|parts| {
        let mut t = 0u32;
        parts
            .into_iter()
            .map(|(gap, len, label)| {
                let start = t + gap;
                t = start + len;
                seg(f64::from(start) * 0.25, f64::from(t) * 0.25, label)
            })
            .collect()
    })
}

fn arbitrary_eder_problem() -> impl Strategy<Value = EderProblem> {
    (arbitrary_segments(), arbitrary_segments(), 1u32..40).prop_map(
        |(hypothesis, reference, quarters)| EderProblem {
            hypothesis,
            reference,
            duration: f64::from(quarters) * 0.25,
        },
    )
}

proptest! {
    #[test]
    fn eder_matches_brute_force(p in arbitrary_eder_problem()) {
        p.check()?;
    }

    /// For window >= stride the segments tile [0, (n-1) stride + window] without gaps, follow
    /// the run-length encoding of the labels, and contain the centre of each of their frames.
    #[test]
    fn frames_to_segments_tiles_the_frames(
        labels in prop::collection::vec(0usize..3, 1..40),
        stride in 0.005f64..0.1,
        ratio in 1.0f64..6.0,
    ) {
        let window = stride * ratio;
        let segs = frames_to_segments(&labels, stride, window).unwrap();
        let mut runs: Vec<(usize, usize, usize)> = Vec::new(); // (label, first, last)
        for (i, &l) in labels.iter().enumerate() {
            match runs.last_mut() {
                Some(r) if r.0 == l => r.2 = i,
                _ => runs.push((l, i, i)),
            }
        }
        prop_assert_eq!(segs.len(), runs.len());
        prop_assert_eq!(segs[0].start, 0.0);
        let last_end = (labels.len() - 1) as f64 * stride + window;
        prop_assert!(close(segs[segs.len() - 1].end, last_end, 1e-12));
        for w in segs.windows(2) {
            prop_assert_eq!(w[0].end, w[1].start);
            prop_assert!(w[0].label != w[1].label);
        }
        for (s, &(label, first, last)) in segs.iter().zip(&runs) {
            prop_assert!(s.start < s.end);
            prop_assert_eq!(s.label, label);
            for i in first..=last {
                let centre = i as f64 * stride + 0.5 * window;
                prop_assert!(s.start <= centre && centre <= s.end, "frame {i} centre {centre} outside {s:?}");
            }
        }
    }
}
