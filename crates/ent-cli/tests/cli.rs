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
    std::fs::write(&manifest, subset("diar.json", 3).to_string()).unwrap();
    let out = dir.0.join("out");
    let text = stdout(&ent(&[
        "eval",
        manifest.to_str().unwrap(),
        "--format",
        "zed",
        "--out",
        out.to_str().unwrap(),
        "--beam",
        "4",
    ]));
    assert!(text.contains("diar (3 utterances)"), "{text}");
    assert!(text.contains("EDER"), "{text}");
    let report: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("diar-report.json")).unwrap())
            .unwrap();
    assert_eq!(report["utterances"], 3);
    assert_eq!(report["eder_utterances"], 3);
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

    let o = ent(&["--device", "cuda", "transcribe", wav.to_str().unwrap()]);
    if !cfg!(feature = "cuda") {
        assert!(!o.status.success());
        assert!(String::from_utf8_lossy(&o.stderr).contains("--features cuda"));
    }
}
