//! The `ent` binary end to end: transcribe, diarize, eval and demo on the bundled corpus, and
//! clear failures on bad input.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn ent(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_ent"))
        .args(args)
        .env("RAYON_NUM_THREADS", "1")
        .output()
        .expect("running ent")
}

fn stdout(o: &Output) -> String {
    assert!(
        o.status.success(),
        "ent failed: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    String::from_utf8(o.stdout.clone()).expect("utf-8 output")
}

fn corpus() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../data/demo")
}

/// A temporary folder (removed on drop); `.0` is its path.
struct TempDir(
    PathBuf,
    #[allow(dead_code, reason = "removes the folder when dropped")] tempfile::TempDir,
);

impl TempDir {
    fn new(tag: &str) -> Self {
        let dir = tempfile::Builder::new()
            .prefix(&format!("ent-cli-{tag}-"))
            .tempdir()
            .unwrap();
        TempDir(dir.path().to_path_buf(), dir)
    }
}

/// The first `n` entries of a corpus manifest, audio paths made absolute.
fn subset(name: &str, n: usize) -> serde_json::Value {
    subset_where(name, n, |_| true)
}

/// The first `n` entries of manifest `name` (in id order) whose id passes `keep`.
fn subset_where(name: &str, n: usize, keep: impl Fn(&str) -> bool) -> serde_json::Value {
    let text = std::fs::read_to_string(corpus().join(name)).unwrap();
    let all: serde_json::Map<String, serde_json::Value> = serde_json::from_str(&text).unwrap();
    let picked: serde_json::Map<_, _> = all
        .into_iter()
        .filter(|(k, _)| keep(k))
        .take(n)
        .map(|(k, mut v)| {
            let wav = corpus().join(v["wav"].as_str().unwrap());
            v["wav"] = serde_json::Value::String(wav.to_string_lossy().into_owned());
            (k, v)
        })
        .collect();
    serde_json::Value::Object(picked)
}

#[test]
fn transcribe_prints_one_json_line_per_file_with_timed_emotions() {
    let a = corpus().join("audio/diar_en-gb-x-gbcwmd-m8_00.flac");
    let b = corpus().join("audio/en-gb-x-gbcwmd-m8_ang_s01.flac");
    let plots = TempDir::new("plots");
    let out = stdout(&ent(&[
        "transcribe",
        a.to_str().unwrap(),
        b.to_str().unwrap(),
        "--plots",
        plots.0.to_str().unwrap(),
    ]));
    let lines: Vec<serde_json::Value> = out
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 2);
    let labels = ["happy", "angry", "sad", "neutral"];
    for l in &lines {
        assert!(l["text"].is_string());
        assert!(labels.contains(&l["emotion"]["label"].as_str().unwrap()));
        let p: f64 = l["emotion"]["probs"]
            .as_array()
            .unwrap()
            .iter()
            .map(|x| x[1].as_f64().unwrap())
            .sum();
        assert!((p - 1.0).abs() < 1e-4, "{p}");
        let segs = l["segments"].as_array().unwrap();
        assert_eq!(segs[0]["start"].as_f64(), Some(0.0));
        for w in segs.windows(2) {
            assert_eq!(w[0]["end"], w[1]["start"]);
        }
        let mut last = 0.0;
        for t in l["tokens"].as_array().unwrap() {
            let s = t["start"].as_f64().unwrap();
            assert!(s >= last);
            last = s;
            assert!(labels.contains(&t["emotion"].as_str().unwrap()));
        }
    }
    // The 5 s file is longer than the 1.2 s one, and both got a timeline.
    let end = |l: &serde_json::Value| {
        l["segments"].as_array().unwrap().last().unwrap()["end"]
            .as_f64()
            .unwrap()
    };
    assert!(end(&lines[0]) > 4.0 && end(&lines[1]) < 1.5);
    assert_eq!(std::fs::read_dir(&plots.0).unwrap().count(), 2);
}

#[test]
fn diarize_prints_rttm_lines_that_tile_the_file() {
    let a = corpus().join("audio/diar_en-gb-x-gbcwmd-m8_00.flac");
    let out = stdout(&ent(&["diarize", a.to_str().unwrap()]));
    let mut t = 0.0;
    for line in out.lines() {
        let f: Vec<&str> = line.split(' ').collect();
        assert_eq!(f.len(), 10, "{line}");
        assert_eq!(
            (f[0], f[1], f[2]),
            ("SPEAKER", "diar_en-gb-x-gbcwmd-m8_00", "1")
        );
        let start: f64 = f[3].parse().unwrap();
        let dur: f64 = f[4].parse().unwrap();
        assert!((start - t).abs() < 2e-3 && dur > 0.0, "{line}");
        t = start + dur;
    }
    assert!((t - 5.16).abs() < 0.1, "covers {t} s of 5.16 s");
}

#[test]
fn eval_scores_a_manifest_and_writes_reports_and_plots() {
    let dir = TempDir::new("eval");
    let manifest = dir.0.join("diar.json");
    let picked = subset("diar.json", 3);
    std::fs::write(&manifest, picked.to_string()).unwrap();
    let out = dir.0.join("out");
    let args = [
        "eval",
        manifest.to_str().unwrap(),
        "--format",
        "zed",
        "--out",
        out.to_str().unwrap(),
        "--beam",
        "4",
    ];
    let run = ent(&args);
    let text = stdout(&run);
    assert!(text.contains("diar (3 utterances)"), "{text}");
    // In a log (stderr is not a terminal) progress ends with a totals line; `--quiet` drops
    // it and changes nothing else.
    let progress_line = "diar: 3/3 utterances (";
    let log = String::from_utf8_lossy(&run.stderr);
    assert!(log.contains(progress_line), "{log}");
    let quiet = ent(&[&["--quiet"], &args[..]].concat());
    let quiet_log = String::from_utf8_lossy(&quiet.stderr);
    assert!(!quiet_log.contains(progress_line), "{quiet_log}");
    assert_eq!(stdout(&quiet), text);
    assert!(text.contains("EDER"), "{text}");
    let report: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("diar-report.json")).unwrap())
            .unwrap();
    assert_eq!(report["utterances"], 3);
    assert_eq!(report["eder_utterances"], 3);
    // The trivial baselines, from the manifest alone: one emotional interval of length e in
    // d seconds costs e/d when every frame is neutral and 1 - e/d when every frame carries the
    // utterance's emotion.
    let (mut neutral, mut label) = (0.0, 0.0);
    for u in picked.as_object().unwrap().values() {
        let d = u["duration"].as_f64().unwrap();
        let iv = &u["emotion"][0];
        let e = iv["end"].as_f64().unwrap() - iv["start"].as_f64().unwrap();
        neutral += 100.0 * e / d / 3.0;
        label += 100.0 * (1.0 - e / d) / 3.0;
    }
    let close = |key: &str, want: f64| {
        let got = report[key].as_f64().unwrap();
        assert!((got - want).abs() < 1e-9, "{key}: {got} vs {want}");
    };
    close("eder_all_neutral", neutral);
    close("eder_utterance_label", label);
    assert!(text.contains("all neutral"), "{text}");
    // Token times: every utterance has sentence spans; each counts at most the characters it
    // emitted, and the report sums them.
    assert_eq!(report["token_timing_utterances"], 3);
    assert!(
        text.contains("inside their own sentence's time span"),
        "{text}"
    );
    let (mut aligned, mut inside) = (0, 0);
    for line in std::fs::read_to_string(out.join("diar-utterances.jsonl"))
        .unwrap()
        .lines()
    {
        let u: serde_json::Value = serde_json::from_str(line).unwrap();
        let emitted = u["transcript"]["tokens"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|t| t["token"] != " ")
            .count() as u64;
        let a = u["token_timing"]["aligned"].as_u64().unwrap();
        let i = u["token_timing"]["inside"].as_u64().unwrap();
        assert!(i <= a && a <= emitted && a > 0, "{i} {a} {emitted}");
        aligned += a;
        inside += i;
    }
    assert_eq!(report["token_timing"]["aligned"], aligned);
    assert_eq!(report["token_timing"]["inside"], inside);
    close("token_time_share", 100.0 * inside as f64 / aligned as f64);
    let counts = report["confusion"]["counts"].as_array().unwrap();
    let total: u64 = counts
        .iter()
        .flat_map(|r| r.as_array().unwrap())
        .map(|x| x.as_u64().unwrap())
        .sum();
    assert_eq!(total, 3);
    assert!(out.join("diar-confusion.svg").exists());
    assert_eq!(std::fs::read_dir(out.join("timelines")).unwrap().count(), 3);
}

#[test]
fn demo_runs_end_to_end_on_a_small_corpus() {
    let dir = TempDir::new("demo");
    // One voice, three of its sentences in each style: enough neutral material for the
    // joined training examples of the demo configuration.
    let voice = |k: &str| k.starts_with("en-029-m6_") && k.contains("_s0");
    let train = subset_where("train.json", 12, voice);
    assert_eq!(train.as_object().unwrap().len(), 10);
    std::fs::write(dir.0.join("train.json"), train.to_string()).unwrap();
    for (name, n) in [("valid.json", 4), ("test.json", 4), ("diar.json", 2)] {
        std::fs::write(dir.0.join(name), subset(name, n).to_string()).unwrap();
    }
    let mut cfg: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(corpus().join("config.json")).unwrap())
            .unwrap();
    cfg["epochs"] = 1.into();
    cfg["join"]["examples"] = 4.into();
    cfg["batch_size"] = 4.into();
    // A configuration written before progress left the training configuration still loads.
    cfg["progress"] = false.into();
    std::fs::write(dir.0.join("config.json"), cfg.to_string()).unwrap();
    let out = dir.0.join("out");
    let run = ent(&[
        "demo",
        "--data",
        dir.0.to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
    ]);
    let text = stdout(&run);
    let log = String::from_utf8_lossy(&run.stderr);
    assert!(
        log.contains("on 10 utterances and 4 joined examples"),
        "{log}"
    );
    assert!(text.contains("test (4 utterances)"), "{text}");
    assert!(text.contains("diar (2 utterances)"), "{text}");
    assert!(
        text.contains("per frame, as the paper decodes: EDER"),
        "{text}"
    );
    for f in [
        "best.safetensors",
        "metrics.jsonl",
        "demo-model.safetensors",
        "test-confusion.svg",
        "diar-report.json",
    ] {
        assert!(out.join(f).exists(), "{f} missing");
    }
    // The exported model transcribes.
    let wav = corpus().join("audio/en-gb-x-gbcwmd-m8_ang_s01.flac");
    let line = stdout(&ent(&[
        "transcribe",
        "--model",
        out.join("demo-model.safetensors").to_str().unwrap(),
        wav.to_str().unwrap(),
    ]));
    assert!(line.contains("\"segments\""));
}

#[test]
fn bad_input_fails_with_a_message_naming_it() {
    let o = ent(&["transcribe", "/no/such/file.wav"]);
    assert!(!o.status.success());
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("/no/such/file.wav"), "{err}");
    assert!(!err.contains("panicked"), "{err}");

    let dir = TempDir::new("bad");
    let junk = dir.0.join("junk.safetensors");
    std::fs::write(&junk, b"not a checkpoint").unwrap();
    let wav = corpus().join("audio/en-gb-x-gbcwmd-m8_ang_s01.flac");
    let o = ent(&[
        "transcribe",
        "--model",
        junk.to_str().unwrap(),
        wav.to_str().unwrap(),
    ]);
    assert!(!o.status.success());
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("junk.safetensors"), "{err}");

    let o = ent(&["transcribe", "--beam", "0", wav.to_str().unwrap()]);
    assert!(!o.status.success());

    for share in ["0", "1.5", "nan"] {
        let o = ent(&[
            "transcribe",
            "--emotion-by-stretch",
            share,
            wav.to_str().unwrap(),
        ]);
        assert!(!o.status.success(), "{share}");
        let err = String::from_utf8_lossy(&o.stderr);
        assert!(err.contains("must lie in (0, 1]"), "{share}: {err}");
        assert!(!err.contains("panicked"), "{err}");
    }

    let o = ent(&["--device", "cuda", "transcribe", wav.to_str().unwrap()]);
    if !cfg!(feature = "cuda") {
        assert!(!o.status.success());
        assert!(String::from_utf8_lossy(&o.stderr).contains("--features cuda"));
    }
}

fn json_lines(text: &str) -> Vec<serde_json::Value> {
    text.lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
        .collect()
}

/// Every readable file is processed; each failure is reported (stderr, and a JSON line in
/// input order), and the exit status counts them. `--fail-fast` stops at the first.
#[test]
fn batches_survive_bad_files() {
    let dir = TempDir::new("batch");
    let bad = dir.0.join("bad.wav");
    std::fs::write(&bad, b"RIFF\x10\x00\x00\x00WAVEjunkjunk").unwrap();
    let good = corpus().join("audio/en-gb-x-gbcwmd-m8_ang_s01.flac");
    let missing = dir.0.join("missing.flac");
    let args = [
        "transcribe",
        bad.to_str().unwrap(),
        good.to_str().unwrap(),
        missing.to_str().unwrap(),
    ];
    let o = ent(&args);
    assert_eq!(o.status.code(), Some(1));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("2 of 3 files failed"), "{err}");
    assert!(
        err.contains("bad.wav") && err.contains("missing.flac"),
        "{err}"
    );
    assert!(!err.contains("panicked"), "{err}");
    let lines = json_lines(&String::from_utf8_lossy(&o.stdout));
    assert_eq!(lines.len(), 3);
    assert!(lines[0]["file"].as_str().unwrap().ends_with("bad.wav"));
    assert!(lines[0]["error"].is_string());
    assert!(!lines[1]["text"].as_str().unwrap().is_empty());
    let missing_error = lines[2]["error"].as_str().unwrap();
    assert!(missing_error.contains("missing.flac"));
    assert_eq!(
        missing_error.matches("No such file").count(),
        1,
        "each cause once: {missing_error}"
    );
    // In a log, a closing progress line.
    assert!(err.contains("decoding: 3/3 files"), "{err}");

    let mut fast = args.to_vec();
    fast.push("--fail-fast");
    let o = ent(&fast);
    assert_eq!(o.status.code(), Some(1));
    let lines = json_lines(&String::from_utf8_lossy(&o.stdout));
    assert_eq!(lines.len(), 1, "stopped at the first bad file");
    assert!(String::from_utf8_lossy(&o.stderr).contains("--fail-fast"));

    // Stopping early with more files queued than are decoded ahead ends the run (no thread
    // is left waiting for output that will never come).
    let g = good.to_str().unwrap();
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_ent"))
        .args([
            "transcribe",
            "--fail-fast",
            "-j",
            "1",
            bad.to_str().unwrap(),
            g,
            g,
            g,
            g,
            g,
        ])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let started = std::time::Instant::now();
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        if started.elapsed() > std::time::Duration::from_secs(120) {
            let _ = child.kill();
            panic!("ent transcribe --fail-fast did not end");
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    };
    assert_eq!(status.code(), Some(1));
}

/// Two inputs that would write the same output file are refused before any decoding.
#[test]
fn output_names_that_collide_are_refused() {
    let dir = TempDir::new("collide");
    let a = corpus().join("audio/en-gb-x-gbcwmd-m8_ang_s01.flac");
    let b = dir.0.join("en-gb-x-gbcwmd-m8_ang_s01.wav");
    std::fs::write(&b, b"x").unwrap();
    let out = dir.0.join("out");
    let o = ent(&[
        "transcribe",
        "--out",
        out.to_str().unwrap(),
        a.to_str().unwrap(),
        b.to_str().unwrap(),
    ]);
    assert!(!o.status.success());
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("would both be written to"), "{err}");
    assert!(!out.exists(), "nothing written");
}

#[test]
fn diarize_writes_rttm_json_and_csv() {
    let a = corpus().join("audio/diar_en-gb-x-gbcwmd-m8_00.flac");
    let rttm = stdout(&ent(&["diarize", a.to_str().unwrap()]));
    let csv = stdout(&ent(&["diarize", "--format", "csv", a.to_str().unwrap()]));
    let mut rows = csv.lines();
    assert_eq!(rows.next(), Some("file,start,end,duration,emotion"));
    let rows: Vec<Vec<&str>> = rows.map(|r| r.split(',').collect()).collect();
    assert_eq!(rows.len(), rttm.lines().count());
    for (row, line) in rows.iter().zip(rttm.lines()) {
        let f: Vec<&str> = line.split(' ').collect();
        assert_eq!(
            (row[1], row[3], row[4]),
            (f[3], f[4], f[7]),
            "{row:?} vs {line}"
        );
    }
    let json = json_lines(&stdout(&ent(&[
        "diarize",
        "--format",
        "json",
        a.to_str().unwrap(),
    ])));
    assert_eq!(json.len(), 1);
    assert_eq!(json[0]["segments"].as_array().unwrap().len(), rows.len());
}

#[test]
fn transcribe_writes_subtitles_with_emotions() {
    let a = corpus().join("audio/diar_en-gb-x-gbcwmd-m8_00.flac");
    let b = corpus().join("audio/en-gb-x-gbcwmd-m8_ang_s01.flac");
    let srt = stdout(&ent(&[
        "transcribe",
        "--format",
        "srt",
        a.to_str().unwrap(),
    ]));
    assert!(srt.starts_with("1\n00:00:0"), "{srt}");
    let cue: Vec<&str> = srt.lines().take(3).collect();
    assert!(cue[1].contains(" --> "), "{srt}");
    let labels = ["[happy] ", "[angry] ", "[sad] ", "[neutral] "];
    assert!(labels.iter().any(|l| cue[2].starts_with(l)), "{srt}");
    // Several files need a folder.
    let o = ent(&[
        "transcribe",
        "--format",
        "vtt",
        a.to_str().unwrap(),
        b.to_str().unwrap(),
    ]);
    assert!(!o.status.success());
    assert!(String::from_utf8_lossy(&o.stderr).contains("--out"));
    let dir = TempDir::new("subs");
    stdout(&ent(&[
        "transcribe",
        "--format",
        "vtt",
        "--out",
        dir.0.to_str().unwrap(),
        a.to_str().unwrap(),
        b.to_str().unwrap(),
    ]));
    for stem in ["diar_en-gb-x-gbcwmd-m8_00", "en-gb-x-gbcwmd-m8_ang_s01"] {
        let vtt = std::fs::read_to_string(dir.0.join(format!("{stem}.vtt"))).unwrap();
        assert!(vtt.starts_with("WEBVTT\n\n00:00:"), "{vtt}");
    }
}

/// Subtitles that cannot be written: a folder standing where the output folder should be
/// is refused up front, naming it; a folder standing where the second file's subtitles go
/// fails that file, naming it, after the first file's subtitles are written whole.
#[test]
fn unwritable_subtitles_are_an_error_naming_the_file() {
    let a = corpus().join("audio/diar_en-gb-x-gbcwmd-m8_00.flac");
    let b = corpus().join("audio/en-gb-x-gbcwmd-m8_ang_s01.flac");
    let dir = TempDir::new("subs-blocked");
    let blocked = dir.0.join("subs");
    std::fs::write(&blocked, "not a folder").unwrap();
    let run = |out: &Path| {
        ent(&[
            "transcribe",
            "--format",
            "srt",
            "--out",
            out.to_str().unwrap(),
            a.to_str().unwrap(),
            b.to_str().unwrap(),
        ])
    };
    let o = run(&blocked);
    assert!(!o.status.success());
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains(&blocked.display().to_string()), "{err}");
    assert_eq!(std::fs::read(&blocked).unwrap(), b"not a folder");

    let out = dir.0.join("out");
    let second = out.join("en-gb-x-gbcwmd-m8_ang_s01.srt");
    std::fs::create_dir_all(&second).unwrap();
    let o = run(&out);
    assert!(!o.status.success());
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.contains(&format!("cannot write {}", second.display())),
        "{err}"
    );
    let first = std::fs::read_to_string(out.join("diar_en-gb-x-gbcwmd-m8_00.srt")).unwrap();
    assert!(
        first.starts_with("1\n00:00:0") && first.ends_with("\n\n"),
        "{first}"
    );
    let names: Vec<_> = std::fs::read_dir(&out)
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(names.len(), 2, "no temporary file left: {names:?}");
}

/// Writes `secs` of 8 kHz float audio: faint noise, the given sentences (16 kHz samples) at
/// their start times, and NaN over `nan` (start, end) seconds.
fn long_recording(path: &Path, secs: f64, speech: &[(f64, &[f32])], nan: Option<(f64, f64)>) {
    let rate = 8000u32;
    let n = (secs * rate as f64) as usize;
    let mut next = 0usize;
    // The sentence being written and the next of its samples (16 kHz to 8 kHz by taking
    // every other sample: the speech band is below 4 kHz).
    let mut playing: Option<(&[f32], usize)> = None;
    ent_testkit::wav::write_f32_with(path, rate, n, |i| {
        let t = i as f64 / rate as f64;
        if playing.is_none() {
            if let Some((a, b)) = nan
                && t >= a
                && t < b
            {
                return f32::NAN;
            }
            if next < speech.len() && t >= speech[next].0 {
                playing = Some((speech[next].1, 0));
                next += 1;
            }
        }
        match playing {
            Some((s, j)) => {
                playing = (j + 2 < s.len()).then_some((s, j + 2));
                s[j]
            }
            None => 1e-4 * ((i % 7) as f32 - 3.0),
        }
    });
}

/// An hour-long recording with three sentences and a corrupt (NaN) stretch in the middle:
/// the sentences on both sides are transcribed at their times, the damage is an error that
/// names its time, and the hour gets a readable timeline.
#[test]
fn an_hour_with_a_corrupt_stretch_is_read_around_it() {
    let dir = TempDir::new("hour");
    let sentence = ent_features::load_resampled(
        corpus().join("audio/en-gb-x-gbcwmd-m8_ang_s01.flac"),
        16_000,
    )
    .unwrap()
    .samples;
    let path = dir.0.join("hour.wav");
    let at = [60.0, 1830.0, 3540.0];
    let speech: Vec<(f64, &[f32])> = at.iter().map(|&t| (t, sentence.as_slice())).collect();
    long_recording(&path, 3600.0, &speech, Some((1800.0, 1810.0)));
    let plots = dir.0.join("plots");
    let o = ent(&[
        "transcribe",
        path.to_str().unwrap(),
        "--plots",
        plots.to_str().unwrap(),
    ]);
    assert_eq!(o.status.code(), Some(1), "damage counts as a failure");
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.contains("30:00.000") && err.contains("30:10.000"),
        "{err}"
    );
    assert!(err.contains("1 of 1 file failed"), "{err}");
    let lines = json_lines(&String::from_utf8_lossy(&o.stdout));
    assert_eq!(
        lines.len(),
        1,
        "the damage is listed in the transcript, not in a second line"
    );
    let t = &lines[0];
    assert_eq!(t["damaged"][0]["start"].as_f64(), Some(1800.0));
    assert_eq!(t["damaged"][0]["end"].as_f64(), Some(1810.0));
    // Words near each sentence, none in the pauses between.
    let times: Vec<f64> = t["tokens"]
        .as_array()
        .unwrap()
        .iter()
        .map(|x| x["start"].as_f64().unwrap())
        .collect();
    for &s in &at {
        assert!(
            times.iter().any(|&x| x >= s - 0.5 && x <= s + 2.0),
            "no words at {s} s"
        );
    }
    assert!(
        times
            .iter()
            .all(|&x| at.iter().any(|&s| x >= s - 0.5 && x <= s + 2.0)),
        "{times:?}"
    );
    let segs = t["segments"].as_array().unwrap();
    let end = segs.last().unwrap()["end"].as_f64().unwrap();
    assert!(
        (end - 3600.0).abs() < 0.1,
        "the segments reach the end: {end}"
    );
    let svg = std::fs::read_dir(&plots)
        .unwrap()
        .next()
        .unwrap()
        .unwrap()
        .path();
    let svg = std::fs::read_to_string(svg).unwrap();
    assert!(svg.contains("time (minutes)") && svg.len() < 200_000);
}

/// A recording that is one long pause: no words, neutral throughout, no error.
#[test]
fn a_recording_that_is_one_long_pause() {
    let dir = TempDir::new("pause");
    let path = dir.0.join("quiet.wav");
    long_recording(&path, 300.0, &[], None);
    let t = &json_lines(&stdout(&ent(&["transcribe", path.to_str().unwrap()])))[0];
    assert_eq!(t["text"], "");
    assert_eq!(t["tokens"].as_array().unwrap().len(), 0);
    assert_eq!(t["emotion"]["label"], "neutral");
    let segs = t["segments"].as_array().unwrap();
    assert_eq!(segs.len(), 1);
    assert_eq!(segs[0]["emotion"], "neutral");
    assert!((segs[0]["end"].as_f64().unwrap() - 300.0).abs() < 0.1);
}

/// `--resume` with no value continues from the output folder's last checkpoint, wherever the
/// flag stands; in a log, training prints a line per epoch.
#[test]
fn train_resumes_from_the_bare_flag() {
    let dir = TempDir::new("resume");
    let voice = |k: &str| k.starts_with("en-029-m6_") && k.contains("_s0");
    std::fs::write(
        dir.0.join("train.json"),
        subset_where("train.json", 6, voice).to_string(),
    )
    .unwrap();
    std::fs::write(
        dir.0.join("valid.json"),
        subset("valid.json", 2).to_string(),
    )
    .unwrap();
    let mut cfg: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(corpus().join("config.json")).unwrap())
            .unwrap();
    cfg["epochs"] = 1.into();
    cfg["batch_size"] = 3.into();
    cfg["join"]["examples"] = 0.into();
    cfg["data"] = serde_json::json!({"train": "train.json", "valid": "valid.json"});
    let config = dir.0.join("config.json");
    std::fs::write(&config, cfg.to_string()).unwrap();
    let out = dir.0.join("run");
    let (c, o) = (config.to_str().unwrap(), out.to_str().unwrap());
    let first = ent(&["train", "--config", c, "--out", o]);
    let log = String::from_utf8_lossy(&first.stderr);
    assert!(first.status.success(), "{log}");
    assert!(log.contains("epoch 1/1 done in"), "{log}");
    for args in [
        vec!["train", "--config", c, "--out", o, "--resume"],
        vec!["train", "--resume", "--config", c, "--out", o],
    ] {
        let r = ent(&args);
        assert!(
            r.status.success(),
            "{args:?}: {}",
            String::from_utf8_lossy(&r.stderr)
        );
    }
    // Resuming from a folder without a checkpoint names the file it looked for.
    let r = ent(&[
        "train",
        "--config",
        c,
        "--out",
        dir.0.join("none").to_str().unwrap(),
        "--resume",
    ]);
    assert!(!r.status.success());
    assert!(String::from_utf8_lossy(&r.stderr).contains("last.safetensors"));
}
