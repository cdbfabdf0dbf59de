//! Writes that fail (a full disk, a folder turned read-only) part-way through writing an
//! evaluation's reports and plots: an error naming the file, every file written before it
//! whole, the one that failed as it was, no temporary file left.

use std::collections::BTreeMap;
use std::path::Path;

use candle_core::Device;
use ent_common::fs::faults::{Fault, fail_writes};
use ent_decode::Search;
use ent_pipeline::{Engine, EvalOptions, PipelineError, evaluate, save_report};
use ent_train::data::{BadDataPolicy, EmotionMap, Vocab, load_manifest, prepare};

/// Every file under `dir`, by path relative to it, with its bytes.
fn files(dir: &Path) -> BTreeMap<String, Vec<u8>> {
    let mut out = BTreeMap::new();
    let mut todo = vec![dir.to_path_buf()];
    while let Some(d) = todo.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                todo.push(p);
            } else {
                let rel = p.strip_prefix(dir).unwrap().to_string_lossy().into_owned();
                out.insert(rel, std::fs::read(&p).unwrap());
            }
        }
    }
    out
}

#[test]
fn reports_and_plots_survive_failing_writes() {
    let engine = Engine::demo(&Device::Cpu, Search::default()).unwrap();
    let manifest = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../data/demo/diar.json");
    let utts = load_manifest(&manifest, None, None).unwrap();
    let utts = prepare(
        &utts[..3],
        &Vocab::characters(),
        &EmotionMap::default(),
        &BadDataPolicy::default(),
    )
    .unwrap()
    .utterances;
    let opts = EvalOptions {
        name: "diar",
        batch_size: 3,
        progress: false,
    };
    let (report, scored) = evaluate(&engine, &utts, &opts).unwrap();
    let out = tempfile::tempdir().unwrap();
    save_report(out.path(), &report, &scored, engine.labels(), 3).unwrap();
    let before = files(out.path());
    assert_eq!(before.len(), 6, "{:?}", before.keys());
    for k in 0..before.len() {
        for fault in [Fault::DiskFull, Fault::ReadOnly] {
            let guard = fail_writes(out.path(), k, fault);
            let e = save_report(out.path(), &report, &scored, engine.labels(), 3).unwrap_err();
            assert_eq!(guard.struck(), 1);
            drop(guard);
            let msg = anyhow_like(&e);
            let named = match &e {
                PipelineError::Write { path, .. } => path.clone(),
                PipelineError::Plot(ent_pipeline::plot::PlotError::Write { path, .. }) => {
                    path.clone()
                }
                other => panic!("write {k}: {other}"),
            };
            assert!(named.starts_with(out.path()), "{msg}");
            assert!(
                msg.contains("No space left on device") || msg.contains("Read-only file system"),
                "{msg}"
            );
            // The same bytes were being written: a file cut short would differ.
            assert_eq!(files(out.path()), before, "write {k} ({fault:?}): {msg}");
        }
    }
}

/// The error with its causes, `a: b`, as the command prints it.
fn anyhow_like(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut cause = e.source();
    while let Some(c) = cause {
        s.push_str(": ");
        s.push_str(&c.to_string());
        cause = c.source();
    }
    s
}
