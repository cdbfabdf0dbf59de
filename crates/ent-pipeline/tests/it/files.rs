//! Many files at once through the library (`Engine::transcribe_files`): results in input
//! order whatever the threads, each equal to the file decoded alone; a file that cannot be
//! read, or is damaged, is reported as its own and the others go on, unless asked to stop.

use std::path::PathBuf;

use candle_core::Device;
use ent_decode::Search;
use ent_pipeline::{Engine, FilesOptions, is_failure};

use crate::audio;

#[test]
fn files_come_back_in_order_each_as_if_alone() {
    let dir = tempfile::tempdir().unwrap();
    // A file cut short: decoded up to the cut, the rest listed as damage.
    let whole = std::fs::read(audio("diar_en-m2_03.flac")).unwrap();
    let cut = dir.path().join("cut.flac");
    std::fs::write(&cut, &whole[..whole.len() * 3 / 5]).unwrap();
    let files: Vec<PathBuf> = vec![
        audio("diar_en-gb-x-gbcwmd-m8_00.flac"),
        dir.path().join("missing.wav"),
        audio("en-f3_sad_s04.flac"),
        cut,
        audio("en-029-m6_ang_s20.flac"),
    ];
    let alone = Engine::demo(&Device::Cpu, Search::default()).unwrap();
    let expected: Vec<Option<String>> = files
        .iter()
        .map(|f| {
            alone
                .transcribe(f)
                .ok()
                .map(|t| serde_json::to_string(&t).unwrap())
        })
        .collect();
    assert!(expected[1].is_none());
    for jobs in [1, 3] {
        let engine = Engine::demo(&Device::Cpu, Search::default())
            .unwrap()
            .with_jobs(jobs);
        let mut seen = Vec::new();
        let summary = engine
            .transcribe_files(&files, FilesOptions::default(), &|_, _, _| {}, |i, r| {
                seen.push((i, is_failure(&r), r.ok().map(|d| d.transcript)));
                Ok::<_, ()>(())
            })
            .unwrap();
        assert_eq!((summary.files, summary.handed, summary.failed), (5, 5, 2));
        assert!(!summary.stopped);
        let order: Vec<usize> = seen.iter().map(|s| s.0).collect();
        assert_eq!(order, [0, 1, 2, 3, 4], "{jobs} jobs");
        let failures: Vec<bool> = seen.iter().map(|s| s.1).collect();
        assert_eq!(failures, [false, true, false, true, false], "{jobs} jobs");
        let cut = seen[3]
            .2
            .as_ref()
            .expect("a cut file is decoded up to the cut");
        assert!(!cut.damaged.is_empty());
        for ((_, _, t), want) in seen.iter().zip(&expected) {
            let got = t.as_ref().map(|t| serde_json::to_string(t).unwrap());
            assert_eq!(&got, want, "{jobs} jobs");
        }

        // Stopping at the first failure: the missing file is the last handed over.
        let mut handed = Vec::new();
        let opts = FilesOptions { fail_fast: true };
        let stopped = engine
            .transcribe_files(&files, opts, &|_, _, _| {}, |i, _| {
                handed.push(i);
                Ok::<_, ()>(())
            })
            .unwrap();
        assert_eq!(handed, [0, 1]);
        assert_eq!(
            (stopped.handed, stopped.failed, stopped.stopped),
            (2, 1, true)
        );
    }
}
