//! What a transcript becomes on disk: RTTM, JSON and CSV emotion segments, and SRT or WebVTT
//! subtitles whose cues carry their emotion.

use std::fmt::Write as _;

use serde::Serialize;

use crate::engine::Transcript;
use crate::report::safe_name;

/// Longest cue text, characters (the usual subtitle line budget).
pub const CUE_CHARS: usize = 42;
/// Longest cue, seconds.
pub const CUE_SECS: f64 = 6.0;
/// A silence between words longer than this starts a new cue, seconds.
pub const CUE_GAP: f64 = 1.0;
/// How long a cue stays after its last word is emitted, seconds.
pub const CUE_TAIL: f64 = 0.6;

/// The RTTM lines of `t`'s emotion segments (`SPEAKER <file> 1 <start> <duration> <NA> <NA>
/// <emotion> <NA> <NA>`), the file named by `file`'s stem.
pub fn rttm(file: &str, t: &Transcript) -> String {
    let stem = std::path::Path::new(file)
        .file_stem()
        .map_or("audio".into(), |s| safe_name(&s.to_string_lossy()));
    let mut out = String::new();
    for s in &t.segments {
        let _ = writeln!(
            out,
            "SPEAKER {stem} 1 {:.3} {:.3} <NA> <NA> {} <NA> <NA>",
            s.start,
            s.end - s.start,
            s.emotion
        );
    }
    out
}

/// The header of [`csv_rows`].
pub const CSV_HEADER: &str = "file,start,end,duration,emotion";

/// One CSV row per emotion segment of `t` (RFC 4180 through the `csv` crate: fields quoted
/// where they need it, `\n` line ends).
pub fn csv_rows(file: &str, t: &Transcript) -> csv::Result<String> {
    let mut w = csv::WriterBuilder::new()
        .has_headers(false)
        .terminator(csv::Terminator::Any(b'\n'))
        .from_writer(Vec::new());
    for s in &t.segments {
        w.write_record([
            file,
            &format!("{:.3}", s.start),
            &format!("{:.3}", s.end),
            &format!("{:.3}", s.end - s.start),
            &s.emotion,
        ])?;
    }
    let bytes = w
        .into_inner()
        .map_err(|e| csv::Error::from(e.into_error()))?;
    // Every field came from a &str, so the bytes are UTF-8.
    Ok(String::from_utf8_lossy(&bytes).into_owned())
}

/// One JSON object with the file, its emotion and its segments.
pub fn segments_json(file: &str, t: &Transcript) -> serde_json::Result<String> {
    #[derive(Serialize)]
    struct Out<'a> {
        file: &'a str,
        emotion: &'a str,
        segments: &'a [crate::engine::SegmentOut],
        #[serde(skip_serializing_if = "<[_]>::is_empty")]
        damaged: &'a [crate::engine::DamageOut],
    }
    serde_json::to_string(&Out {
        file,
        emotion: &t.emotion.label,
        segments: &t.segments,
        damaged: &t.damaged,
    })
}

/// A JSON line for a file that could not be processed.
pub fn error_json(file: &str, error: &str) -> String {
    serde_json::json!({ "file": file, "error": error }).to_string()
}

/// Subtitle flavours.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Subtitles {
    /// SubRip (`.srt`).
    Srt,
    /// WebVTT (`.vtt`).
    Vtt,
}

/// One subtitle cue.
#[derive(Debug, Clone, PartialEq)]
pub struct Cue {
    /// Start, seconds.
    pub start: f64,
    /// End, seconds.
    pub end: f64,
    /// The words.
    pub text: String,
    /// The emotion that covers most of the cue.
    pub emotion: String,
}

/// Words of `t` grouped into cues: a new cue after a silence of [`CUE_GAP`], or when the text
/// would pass [`CUE_CHARS`] or the cue [`CUE_SECS`]. A cue starts when its first word is
/// emitted and ends [`CUE_TAIL`] after its last (before the next cue); its emotion is the one
/// the frame emotions give most of its time.
pub fn cues(t: &Transcript) -> Vec<Cue> {
    // Words: (text, first emission, last emission).
    let mut words: Vec<(String, f64, f64)> = Vec::new();
    let mut open = false;
    for tok in &t.tokens {
        if tok.token.trim().is_empty() {
            open = false;
            continue;
        }
        match words.last_mut() {
            Some(w) if open => {
                w.0.push_str(tok.token.trim());
                w.2 = tok.start;
            }
            _ => words.push((tok.token.trim().to_string(), tok.start, tok.start)),
        }
        open = true;
    }
    let mut cues: Vec<Cue> = Vec::new();
    let mut current: Option<(String, f64, f64)> = None;
    for (text, start, end) in words {
        if let Some(c) = current.as_mut() {
            let fits = c.0.chars().count() + 1 + text.chars().count() <= CUE_CHARS
                && end - c.1 <= CUE_SECS
                && start - c.2 <= CUE_GAP;
            if fits {
                c.0.push(' ');
                c.0.push_str(&text);
                c.2 = end;
                continue;
            }
            let done = current.take().expect("a cue");
            cues.push(Cue {
                start: done.1,
                end: done.2 + CUE_TAIL,
                text: done.0,
                emotion: String::new(),
            });
        }
        current = Some((text, start, end));
    }
    if let Some(done) = current {
        cues.push(Cue {
            start: done.1,
            end: done.2 + CUE_TAIL,
            text: done.0,
            emotion: String::new(),
        });
    }
    for i in 0..cues.len() {
        if let Some(next) = cues.get(i + 1).map(|c| c.start) {
            cues[i].end = cues[i].end.min(next);
        }
        cues[i].emotion = dominant_emotion(t, cues[i].start, cues[i].end);
    }
    cues
}

/// The segment label covering most of `[start, end]` (the utterance emotion if none does).
fn dominant_emotion(t: &Transcript, start: f64, end: f64) -> String {
    let mut best: Option<(&str, f64)> = None;
    let mut totals: Vec<(&str, f64)> = Vec::new();
    for s in &t.segments {
        let overlap = s.end.min(end) - s.start.max(start);
        if overlap > 0.0 {
            match totals.iter_mut().find(|(l, _)| *l == s.emotion) {
                Some(e) => e.1 += overlap,
                None => totals.push((&s.emotion, overlap)),
            }
        }
    }
    for (l, d) in totals {
        if best.is_none_or(|b| d > b.1) {
            best = Some((l, d));
        }
    }
    best.map_or_else(|| t.emotion.label.clone(), |b| b.0.to_string())
}

/// `t` as SRT or WebVTT: each cue's text led by its emotion in brackets, `[hap] I SEE`.
pub fn subtitles(t: &Transcript, kind: Subtitles) -> String {
    let stamp = |secs: f64| {
        let ms = (secs.max(0.0) * 1000.0).round() as u64;
        let (h, m, s, ms) = (ms / 3_600_000, ms / 60_000 % 60, ms / 1000 % 60, ms % 1000);
        match kind {
            Subtitles::Srt => format!("{h:02}:{m:02}:{s:02},{ms:03}"),
            Subtitles::Vtt => format!("{h:02}:{m:02}:{s:02}.{ms:03}"),
        }
    };
    let mut out = String::new();
    if kind == Subtitles::Vtt {
        out.push_str("WEBVTT\n\n");
    }
    for (i, c) in cues(t).iter().enumerate() {
        if kind == Subtitles::Srt {
            let _ = writeln!(out, "{}", i + 1);
        }
        let _ = writeln!(
            out,
            "{} --> {}\n[{}] {}\n",
            stamp(c.start),
            stamp(c.end),
            c.emotion,
            c.text
        );
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::{SegmentOut, TokenOut, UtteranceEmotion};

    fn transcript(words: &[(&str, f64)], segments: &[(f64, f64, &str)]) -> Transcript {
        let mut tokens = Vec::new();
        for (w, t) in words {
            if !tokens.is_empty() {
                tokens.push(TokenOut {
                    token: " ".into(),
                    start: *t,
                    emotion: "neu".into(),
                });
            }
            for (i, c) in w.chars().enumerate() {
                tokens.push(TokenOut {
                    token: c.to_string(),
                    start: t + 0.04 * i as f64,
                    emotion: "neu".into(),
                });
            }
        }
        Transcript {
            id: "a, b.wav".into(),
            text: String::new(),
            emotion: UtteranceEmotion {
                label: "neu".into(),
                probs: vec![],
            },
            tokens,
            segments: segments
                .iter()
                .map(|&(start, end, e)| SegmentOut {
                    start,
                    end,
                    emotion: e.into(),
                })
                .collect(),
            frame_shift: 0.04,
            score: 0.0,
            windows: vec![],
            damaged: vec![],
        }
    }

    #[test]
    fn cues_break_at_silences_and_carry_the_dominant_emotion() {
        let t = transcript(
            &[
                ("I", 0.5),
                ("SEE", 0.8),
                ("IT", 1.1),
                ("NOW", 5.0),
                ("YES", 5.3),
            ],
            &[(0.0, 4.0, "neu"), (4.0, 7.0, "ang")],
        );
        let c = cues(&t);
        assert_eq!(c.len(), 2, "{c:?}");
        assert_eq!(c[0].text, "I SEE IT");
        assert_eq!(c[0].start, 0.5);
        assert!((c[0].end - (1.14 + CUE_TAIL)).abs() < 1e-9, "{c:?}");
        assert_eq!(c[0].emotion, "neu");
        assert_eq!(
            (c[1].text.as_str(), c[1].emotion.as_str()),
            ("NOW YES", "ang")
        );
        let srt = subtitles(&t, Subtitles::Srt);
        assert!(
            srt.starts_with("1\n00:00:00,500 --> 00:00:01,740\n[neu] I SEE IT\n\n2\n"),
            "{srt}"
        );
        let vtt = subtitles(&t, Subtitles::Vtt);
        assert!(
            vtt.starts_with("WEBVTT\n\n00:00:00.500 --> 00:00:01.740\n[neu] I SEE IT\n"),
            "{vtt}"
        );
    }

    #[test]
    fn long_speech_is_cut_into_short_cues_that_do_not_overlap() {
        let words: Vec<(String, f64)> =
            (0..60).map(|i| (format!("W{i}"), 0.3 * i as f64)).collect();
        let w: Vec<(&str, f64)> = words.iter().map(|(s, t)| (s.as_str(), *t)).collect();
        let t = transcript(&w, &[(0.0, 20.0, "hap")]);
        let c = cues(&t);
        assert!(c.len() > 3);
        for pair in c.windows(2) {
            assert!(pair[0].end <= pair[1].start + 1e-9, "{pair:?}");
        }
        for x in &c {
            assert!(x.text.chars().count() <= CUE_CHARS && x.end - x.start <= CUE_SECS + CUE_TAIL);
            assert_eq!(x.emotion, "hap");
        }
    }

    #[test]
    fn segments_as_rttm_csv_and_json() {
        let t = transcript(&[("HI", 0.1)], &[(0.0, 1.5, "neu"), (1.5, 2.25, "sad")]);
        assert_eq!(
            rttm("dir/a b.wav", &t),
            "SPEAKER a_b 1 0.000 1.500 <NA> <NA> neu <NA> <NA>\nSPEAKER a_b 1 1.500 0.750 <NA> <NA> sad <NA> <NA>\n"
        );
        assert_eq!(
            csv_rows("x,\"y\".wav", &t).unwrap(),
            "\"x,\"\"y\"\".wav\",0.000,1.500,1.500,neu\n\"x,\"\"y\"\".wav\",1.500,2.250,0.750,sad\n"
        );
        assert!(
            csv_rows("a.wav", &t)
                .unwrap()
                .starts_with("a.wav,0.000,1.500,")
        );
        // A name with a line break reads back whole.
        let rows = csv_rows("two\nlines.wav", &t).unwrap();
        let mut r = csv::ReaderBuilder::new()
            .has_headers(false)
            .from_reader(rows.as_bytes());
        let first = r.records().next().unwrap().unwrap();
        assert_eq!(&first[0], "two\nlines.wav");
        assert_eq!(&first[4], "neu");
        let j: serde_json::Value =
            serde_json::from_str(&segments_json("a.wav", &t).unwrap()).unwrap();
        assert_eq!(j["segments"][1]["emotion"], "sad");
        assert_eq!(j["file"], "a.wav");
        let e: serde_json::Value =
            serde_json::from_str(&error_json("b.wav", "no \"audio\"")).unwrap();
        assert_eq!(e["error"], "no \"audio\"");
    }
}
