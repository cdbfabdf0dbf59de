//! Long-form decoding with the bundled demo model: a file of one window gives exactly what the
//! whole-file decode gives; a longer one is cut at its pauses, each sentence decoded in its own
//! window at its own time, and a shorter window limit changes nothing on short files.

use std::path::Path;

use candle_core::Device;
use ent_decode::Search;
use ent_features::Segment;
use ent_pipeline::{Engine, Windowing};

use crate::audio;

const FILES: [&str; 3] = [
    "diar_en-gb-x-gbcwmd-m8_00.flac",
    "en-gb-x-gbcwmd-m8_ang_s01.flac",
    "diar_en-gb-x-gbcwmd-m8_01.flac",
];

#[test]
fn a_file_of_one_window_decodes_as_a_whole() {
    let engine = Engine::demo(&Device::Cpu, Search::default()).unwrap();
    for name in FILES {
        let path = audio(name);
        let whole = engine.decode(&[(name, &path, Segment::WHOLE)]).unwrap();
        let want = engine.decoding(name, &whole[0]);
        let got = engine
            .transcribe_file(name, &path, Segment::WHOLE, &mut |_, _| {})
            .unwrap();
        let json = |t: &ent_pipeline::Transcript| serde_json::to_string(t).unwrap();
        assert_eq!(json(&got.transcript), json(&want.transcript), "{name}");
        assert_eq!(got.frame_emotions, want.frame_emotions);
        assert_eq!(got.frame_probs, want.frame_probs);
        assert_eq!(got.transcript.windows.len(), 1);
    }
}

/// Three sentences with 5 s pauses (more than `skip_pause`) of faint noise between them: three
/// windows, each from a margin before its sentence to a margin after it, each keeping every
/// word its own samples give, at the sentence's time.
#[test]
fn sentences_apart_are_decoded_alone_at_their_times() {
    let engine = Engine::demo(&Device::Cpu, Search::default()).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("three.wav");
    let mut signal = Vec::new();
    let mut spans = Vec::new();
    let pause = |signal: &mut Vec<f32>| {
        let n = signal.len();
        signal.extend((0..5 * 16_000).map(|i| 1e-4 * (((n + i) % 7) as f32 - 3.0)));
    };
    for name in FILES {
        pause(&mut signal);
        let start = signal.len() as f64 / 16_000.0;
        signal.extend(
            ent_features::load_resampled(audio(name), 16_000)
                .unwrap()
                .samples,
        );
        spans.push((start, signal.len() as f64 / 16_000.0));
    }
    pause(&mut signal);
    ent_testkit::wav::write_f32(&path, 16_000, &signal);
    let written = signal.len();
    let mut seen = Vec::new();
    let got = engine
        .transcribe_file("three", &path, Segment::WHOLE, &mut |p, total| {
            seen.push((p, total))
        })
        .unwrap();
    let t = &got.transcript;
    assert_eq!(t.windows.len(), 3, "{:?}", t.windows);
    let margin = ent_pipeline::longform::MARGIN;
    for (win, &(start, end)) in t.windows.iter().zip(&spans) {
        // A margin before the first loud frame and after the last (the recordings begin and end
        // with a little quiet of their own).
        assert!(
            win.start >= start - margin - 0.05 && win.start < start + 0.5,
            "{win:?} vs {start}"
        );
        assert!(
            win.end <= end + margin + 0.05 && win.end > end - 0.5,
            "{win:?} vs {end}"
        );
        let own =
            &signal[(win.start * 16_000.0).round() as usize..(win.end * 16_000.0).round() as usize];
        let d = engine.decode_samples(&["own"], &[own]).unwrap();
        assert_eq!(win.text, engine.decoding("own", &d[0]).transcript.text);
        assert!(!win.text.is_empty());
    }
    assert_words_apart(t);
    for tok in &t.tokens {
        assert!(
            spans
                .iter()
                .any(|&(a, b)| tok.start >= a - margin && tok.start <= b + margin),
            "{tok:?} outside the sentences"
        );
    }
    // Progress reached the end, which the header states.
    let (last, total) = *seen.last().unwrap();
    assert!((last - total.unwrap()).abs() < 1e-6);
    // The pauses are neutral frames; frames tile the file.
    let neutral = engine.meta.emotions.neutral;
    assert!(
        got.frame_emotions[..(4.0 / 0.04) as usize]
            .iter()
            .all(|&e| e == neutral)
    );
    assert!(
        (got.frame_emotions.len() as f64 * 0.04 - written as f64 / 16_000.0).abs() < 5.1 + 0.05
    );
    // A shorter window limit changes nothing on a file that fits it.
    let short = Engine::demo(&Device::Cpu, Search::default())
        .unwrap()
        .with_windowing(Windowing {
            max_window: 6.0,
            min_window: 2.0,
            overlap: 1.0,
            ..Windowing::default()
        })
        .unwrap();
    let one = short.transcribe(&audio(FILES[0])).unwrap();
    assert_eq!(one.text, engine.transcribe(&audio(FILES[0])).unwrap().text);
}

/// Sound without a usable pause: overlapping fixed windows whose kept parts abut, frames that
/// tile the file, tokens in time order.
#[test]
fn continuous_sound_is_decoded_in_overlapping_windows() {
    let w = Windowing {
        max_window: 4.0,
        min_window: 1.0,
        min_pause: 3.0,
        overlap: 1.0,
        ..Windowing::default()
    };
    let engine = Engine::demo(&Device::Cpu, Search::default())
        .unwrap()
        .with_windowing(w)
        .unwrap();
    let path = audio(FILES[0]);
    let got = engine
        .transcribe_file("f", &path, Segment::WHOLE, &mut |_, _| {})
        .unwrap();
    let t = &got.transcript;
    assert!(t.windows.len() >= 2, "{:?}", t.windows);
    for pair in t.windows.windows(2) {
        assert_eq!(pair[0].end, pair[1].start, "{pair:?}");
        assert!(pair[0].end - pair[0].start <= 4.0);
    }
    assert_eq!(t.windows[0].start, 0.0);
    let secs = ent_features::probe(&path).unwrap().duration_secs().unwrap();
    let frames = got.frame_emotions.len() as f64 * 0.04;
    assert!(frames <= secs && frames > secs - 0.2, "{frames} of {secs}");
    assert_eq!(got.frame_probs.len(), got.frame_emotions.len());
    for pair in t.tokens.windows(2) {
        assert!(pair[0].start <= pair[1].start);
    }
    assert_eq!(
        t.segments.last().unwrap().end,
        ent_pipeline::round_ms(frames)
    );
    assert_words_apart(t);
    // Windows decoded on three threads at once give the same result.
    let parallel = Engine::demo(&Device::Cpu, Search::default())
        .unwrap()
        .with_windowing(w)
        .unwrap()
        .with_jobs(3)
        .transcribe_file("f", &path, Segment::WHOLE, &mut |_, _| {})
        .unwrap();
    let json = |t: &ent_pipeline::Transcript| serde_json::to_string(t).unwrap();
    assert_eq!(json(&parallel.transcript), json(t));
    assert_eq!(parallel.frame_probs, got.frame_probs);
}

/// The tokens spell the text's words: words of neighbouring windows are not glued together.
fn assert_words_apart(t: &ent_pipeline::Transcript) {
    let spelled: String = t.tokens.iter().map(|x| x.token.as_str()).collect();
    let words = |s: &str| s.split_whitespace().map(str::to_string).collect::<Vec<_>>();
    assert_eq!(words(&spelled), words(&t.text));
}

/// Emotion by stretch (`Engine::with_emotion_stretches`): on diarization recordings
/// (sentences 0.2 s apart) every segment boundary lies in a pause between two sentences,
/// within 0.1 s of the middle the manifest gives, decoded whole, in one window (the same
/// segments: the stitched track is decided as the whole file is) and in windows of at most
/// 2 s (the decision made once on the stitched track); the decoded text is the per-frame
/// decoding's.
#[test]
fn emotion_by_stretch_changes_only_at_pauses() {
    let manifest: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(
            Path::new(env!("CARGO_MANIFEST_DIR")).join("../../data/demo/diar.json"),
        )
        .unwrap(),
    )
    .unwrap();
    let per_frame = Engine::demo(&Device::Cpu, Search::default()).unwrap();
    let engine = Engine::demo(&Device::Cpu, Search::default())
        .unwrap()
        .with_emotion_stretches(Some(ent_pipeline::Stretches::new(0.25)))
        .unwrap();
    let short = Engine::demo(&Device::Cpu, Search::default())
        .unwrap()
        .with_emotion_stretches(Some(ent_pipeline::Stretches::new(0.25)))
        .unwrap()
        .with_windowing(Windowing {
            max_window: 2.0,
            min_window: 0.5,
            overlap: 0.5,
            ..Windowing::default()
        })
        .unwrap();
    let mut moved = 0;
    for id in [
        "diar_en-m2_00",
        "diar_en-us-nyc-f1_ne0",
        "diar_en-gb-x-gbcwmd-m8_01",
    ] {
        let name = format!("{id}.flac");
        let path = audio(&name);
        let cuts: Vec<f64> = manifest[id]["sentences"]
            .as_array()
            .unwrap()
            .iter()
            .skip(1)
            .map(|s| s["start"].as_f64().unwrap())
            .collect();
        let whole = engine.decode(&[(id, &path, Segment::WHOLE)]).unwrap();
        let long = engine
            .transcribe_file(id, &path, Segment::WHOLE, &mut |_, _| {})
            .unwrap();
        let plain = per_frame.decode(&[(id, &path, Segment::WHOLE)]).unwrap();
        assert_eq!(whole[0].hypothesis.tokens, plain[0].hypothesis.tokens);
        assert_eq!(whole[0].segments, long.segments, "{id}");
        moved += usize::from(whole[0].segments != plain[0].segments);
        let windowed = short
            .transcribe_file(id, &path, Segment::WHOLE, &mut |_, _| {})
            .unwrap();
        assert!(windowed.transcript.windows.len() > 1, "{id}");
        for segments in [&whole[0].segments, &windowed.segments] {
            for s in &segments[1..] {
                assert!(
                    cuts.iter().any(|c| (c - s.start).abs() <= 0.1),
                    "{id}: a segment starts at {} s, not at a pause ({cuts:?})",
                    s.start
                );
            }
        }
    }
    assert!(moved > 0, "the stretch decision changed no segment");
}
