//! The training loop: exact resumption, atomic checkpoints, non-finite losses, the optimiser.

use ent_testkit::TensorExt;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use candle_core::{DType, Device, Tensor, Var};
use ent_model::{FbankEncoder, FrontEnd, ModelConfig};
use ent_train::data::{EmotionMap, Utterance, Vocab, prepare};
use ent_train::optim::{AdamW, CosineSchedule, OptimConfig, clip_grad_norm};
use ent_train::{Checkpoint, LAST, TrainConfig, TrainError, Trainer};

/// A temporary folder (removed on drop); `.0` is its path.
pub struct TempDir(
    pub PathBuf,
    #[allow(dead_code, reason = "removes the folder when dropped")] tempfile::TempDir,
);

impl TempDir {
    pub fn new(tag: &str) -> Self {
        let dir = tempfile::Builder::new()
            .prefix(&format!("ent-train-{tag}-"))
            .tempdir()
            .unwrap();
        TempDir(dir.path().to_path_buf(), dir)
    }
}

/// 16-bit mono PCM WAV at 16 kHz: a tone whose pitch depends on `k`, with a little noise.
fn write_tone(path: &Path, k: usize, secs: f64, seed: u64) {
    write_tone_at(path, k, secs, seed, 1.0);
}

/// [`write_tone`] at `level` times its amplitude.
fn write_tone_at(path: &Path, k: usize, secs: f64, seed: u64, level: f64) {
    let n = (secs * 16000.0) as usize;
    let mut rng = ent_common::rng::SplitMix64::new(seed);
    let f = 150.0 + 80.0 * k as f64;
    let samples: Vec<i16> = (0..n)
        .map(|i| {
            let t = i as f64 / 16000.0;
            let v = level
                * (0.3 * (2.0 * std::f64::consts::PI * f * t).sin() + 0.02 * (rng.uniform() - 0.5));
            (v * 32767.0) as i16
        })
        .collect();
    ent_testkit::wav::write_i16(path, 16_000, &samples);
}

const LABELS: [&str; 4] = ["hap", "ang", "sad", "neu"];
const TEXTS: [&str; 4] = ["YES", "NO WAY", "OH", "OK THEN"];

/// `n` utterances of 0.3 to 0.6 s written into `dir`.
fn corpus(dir: &Path, n: usize) -> Vec<Utterance> {
    (0..n)
        .map(|i| {
            let k = i % 4;
            let path = dir.join(format!("u{i}.wav"));
            write_tone(&path, k, 0.3 + 0.05 * (i % 7) as f64, i as u64);
            Utterance {
                id: format!("u{i}"),
                audio: path,
                segment: ent_features::Segment::WHOLE,
                duration: None,
                text: Some(TEXTS[k].to_string()),
                emotion: Some(LABELS[k].to_string()),
                intervals: vec![],
                sentences: vec![],
                speaker: Some(format!("s{}", i % 3)),
                gender: None,
                intensity: None,
                session: None,
            }
        })
        .collect()
}

fn tiny_config() -> TrainConfig {
    TrainConfig {
        model: ModelConfig {
            front_end: FrontEnd::Fbank {
                num_mel_bins: 20,
                conv_channels: 4,
                dim: 16,
                layers: 1,
                encoder: FbankEncoder::Conformer {
                    heads: 2,
                    ff_dim: 32,
                    kernel: 3,
                },
                dropout: 0.1,
            },
            encoder_hidden: 8,
            predictor_embed: 8,
            predictor_hidden: 8,
            joint_dim: 12,
            ..ModelConfig::default()
        },
        epochs: 2,
        batch_size: 2,
        optim: OptimConfig {
            warmup_epochs: 1.0,
            ..OptimConfig::default()
        },
        ..TrainConfig::default()
    }
}

/// [`tiny_config`] on the tiny wav2vec2 checkpoint in `fixture` (3 hidden states of 32).
fn tiny_backbone_config(fixture: std::path::PathBuf) -> TrainConfig {
    TrainConfig {
        model: ModelConfig {
            front_end: FrontEnd::Backbone { layers: 3, dim: 32 },
            encoder_hidden: 8,
            predictor_embed: 8,
            predictor_hidden: 8,
            joint_dim: 12,
            ..ModelConfig::default()
        },
        backbone: Some(fixture),
        ..tiny_config()
    }
}

/// A trainer on the CPU over copies of `train` and `valid`.
fn cpu_trainer(
    cfg: TrainConfig,
    train: &[ent_train::data::PreparedUtt],
    valid: &[ent_train::data::PreparedUtt],
    out: &Path,
) -> Trainer {
    Trainer::new(cfg, train.to_vec(), valid.to_vec(), out, &Device::Cpu).unwrap()
}

fn prepared(dir: &Path, n: usize) -> Vec<ent_train::data::PreparedUtt> {
    let utts = corpus(dir, n);
    prepare(
        &utts,
        &Vocab::characters(),
        &EmotionMap::default(),
        &Default::default(),
    )
    .unwrap()
    .utterances
}

fn weights(t: &Trainer) -> BTreeMap<String, Vec<f32>> {
    t.var_map()
        .data()
        .lock()
        .unwrap()
        .iter()
        .map(|(k, v)| {
            (
                k.clone(),
                v.as_tensor()
                    .flatten_all()
                    .unwrap()
                    .to_vec1::<f32>()
                    .unwrap(),
            )
        })
        .collect()
}

/// N steps straight and k steps, stop, resume to N give bit-identical weights.
#[test]
fn resume_continues_exactly() {
    let data = TempDir::new("resume-data");
    let train = prepared(&data.0, 7);
    let dev = Device::Cpu;
    for accumulate in [1, 2] {
        let cfg = TrainConfig {
            accumulate,
            ..tiny_config()
        };
        let straight_dir = TempDir::new("straight");
        let mut straight =
            Trainer::new(cfg.clone(), train.clone(), vec![], &straight_dir.0, &dev).unwrap();
        let total = straight.total_steps();
        assert!(total >= 3, "{total} steps");
        straight.run().unwrap();
        assert_eq!(straight.state().step, total);

        let dir = TempDir::new("stopped");
        let stop_at = total / 2 + 1; // in the middle of the second epoch
        let first = TrainConfig {
            max_steps: Some(stop_at),
            save_every_steps: Some(1),
            ..cfg.clone()
        };
        let mut a = Trainer::new(first, train.clone(), vec![], &dir.0, &dev).unwrap();
        let mut seen = Recorder::default();
        a.run_observed(&mut seen).unwrap();
        assert_eq!(a.state().step, stop_at);
        assert_eq!(seen.stopped, Some(stop_at));
        drop(a);
        let mut b = Trainer::new(cfg.clone(), train.clone(), vec![], &dir.0, &dev).unwrap();
        b.resume(&dir.0.join(LAST)).unwrap();
        assert_eq!(b.state().step, stop_at);
        let done = b.state().batch_in_epoch;
        let mut seen = Recorder::default();
        b.run_observed(&mut seen).unwrap();
        // The resumed epoch starts where the stopped run left it.
        assert!(done > 0);
        assert_eq!(seen.starts[0].done, done);
        assert_eq!(seen.starts[0].epoch, 1);
        assert_eq!(b.state().step, total);
        let (w1, w2) = (weights(&straight), weights(&b));
        assert_eq!(w1.len(), w2.len());
        for (k, v) in &w1 {
            assert!(
                v == &w2[k],
                "accumulate {accumulate}: {k} differs after resuming"
            );
        }
        // And training moved the weights at all.
        let fresh =
            Trainer::new(cfg, train.clone(), vec![], &TempDir::new("fresh").0, &dev).unwrap();
        let w0 = weights(&fresh);
        assert!(
            w0.iter()
                .any(|(k, v)| !ent_model::Model::is_buffer(k) && v != &w1[k])
        );
    }
}

/// What an observer was told, in order.
#[derive(Default)]
struct Recorder {
    events: Vec<serde_json::Value>,
    starts: Vec<ent_train::EpochStart>,
    batches: Vec<u64>,
    stopped: Option<u64>,
}

impl ent_train::TrainObserver for Recorder {
    fn epoch_started(&mut self, s: &ent_train::EpochStart) {
        self.starts.push(*s);
    }
    fn step(&mut self, s: &ent_train::StepStats) {
        let mut v = serde_json::to_value(s).unwrap();
        v["kind"] = "step".into();
        self.events.push(v);
        self.batches.push(s.batches_done);
    }
    fn epoch_finished(&mut self, s: &ent_train::EpochSummary) {
        let mut v = serde_json::to_value(s).unwrap();
        v["kind"] = "epoch".into();
        self.events.push(v);
    }
    fn stopped(&mut self, step: u64) {
        self.stopped = Some(step);
    }
}

/// A metrics line per step and per epoch, and the checkpoints, land in the output folder; the
/// observer is told exactly what the log says, in the same order.
#[test]
fn run_writes_metrics_and_checkpoints() {
    let data = TempDir::new("metrics-data");
    let train = prepared(&data.0, 6);
    let valid = prepared(&data.0, 4);
    let out = TempDir::new("metrics-out");
    let mut t = Trainer::new(tiny_config(), train, valid, &out.0, &Device::Cpu).unwrap();
    let mut seen = Recorder::default();
    let summary = t.run_observed(&mut seen).unwrap();
    let log = std::fs::read_to_string(out.0.join(ent_train::METRICS)).unwrap();
    let lines: Vec<serde_json::Value> = log
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(seen.events, lines);
    let per_epoch = t.batches_per_epoch();
    assert_eq!(seen.starts.len(), 2);
    for (e, s) in seen.starts.iter().enumerate() {
        assert_eq!(
            (s.epoch, s.epochs, s.batches, s.done),
            (e as u64, 2, per_epoch, 0)
        );
    }
    assert_eq!(seen.batches.last(), Some(&per_epoch));
    assert_eq!(seen.stopped, None);
    let steps = lines.iter().filter(|l| l["kind"] == "step").count() as u64;
    let epochs: Vec<_> = lines.iter().filter(|l| l["kind"] == "epoch").collect();
    assert_eq!(steps, summary.steps);
    assert_eq!(epochs.len(), 2);
    assert!(epochs[1]["valid"]["ua"].as_f64().is_some());
    for l in lines.iter().filter(|l| l["kind"] == "step") {
        assert!(l["loss"].as_f64().unwrap().is_finite());
        assert!(l["utt_per_sec"].as_f64().unwrap() > 0.0);
    }
    assert!(summary.best.is_some());
    let best = Checkpoint::load(&out.0.join(ent_train::BEST), &Device::Cpu).unwrap();
    assert_eq!(best.meta.model, tiny_config().model);
    assert!(best.model.contains_key("front_end.cmvn.mean"));
    let last = Checkpoint::load(&out.0.join(LAST), &Device::Cpu).unwrap();
    assert_eq!(last.meta.state.unwrap().step, summary.steps);
}

/// Joined examples: their filterbanks are their parts' frames one after the other, the trainer
/// adds them to the epoch and trains on them; without neutral material to join it says so.
#[test]
fn joined_examples_are_their_parts_in_a_row() {
    use ent_train::data::{JoinConfig, joined_examples};
    use ent_train::features::FeatureSource;
    let data = TempDir::new("join-data");
    let train = prepared(&data.0, 24);
    let cfg = tiny_config();
    let join = JoinConfig {
        examples: 6,
        max_duration: None,
        ..Default::default()
    };
    let space = Vocab::characters().space();
    let joined = joined_examples(&train, &join, cfg.model.neutral, space, cfg.seed);
    assert_eq!(joined.len(), 6);

    let dev = Device::Cpu;
    let src = FeatureSource::new(&cfg.model, None, true, &dev).unwrap();
    let x = &joined[0];
    let parts: Vec<_> = std::iter::once((x.id.as_str(), x.audio.as_path(), x.segment))
        .chain(
            x.then
                .iter()
                .map(|p| (p.id.as_str(), p.audio.as_path(), p.segment)),
        )
        .collect();
    assert_eq!(parts.len(), 3);
    let whole = src
        .inputs_joined(std::slice::from_ref(&parts), &dev)
        .unwrap();
    let mut rows = Vec::new();
    for &p in &parts {
        let one = src.inputs(&[p], &dev).unwrap();
        rows.push(one.features.squeeze(0).unwrap());
        assert_eq!(one.lens[0], rows.last().unwrap().dim(0).unwrap());
    }
    let expected = Tensor::cat(&rows, 0).unwrap().to_vec2::<f32>().unwrap();
    assert_eq!(whole.lens, vec![expected.len()]);
    assert_eq!(
        whole.features.squeeze(0).unwrap().to_vec2::<f32>().unwrap(),
        expected
    );
    // Padded next to a short utterance: the short one is zero past its end.
    let short = (
        train[0].id.as_str(),
        train[0].audio.as_path(),
        train[0].segment,
    );
    let both = src.inputs_joined(&[vec![short], parts], &dev).unwrap();
    assert_eq!(both.lens[1], expected.len());
    let pad = both
        .features
        .get(0)
        .unwrap()
        .narrow(0, both.lens[0], expected.len() - both.lens[0]);
    assert_eq!(pad.unwrap().abs_sum(), 0.0);

    let out = TempDir::new("join-out");
    let plain = Trainer::new(cfg.clone(), train.clone(), vec![], &out.0, &dev).unwrap();
    let mut with = TrainConfig {
        join: join.clone(),
        epochs: 1,
        ..cfg.clone()
    };
    let mut t = Trainer::new(with.clone(), train.clone(), vec![], &out.0, &dev).unwrap();
    assert_eq!(plain.batches_per_epoch(), 12);
    assert_eq!(t.batches_per_epoch(), 15);
    let summary = t.run().unwrap();
    assert_eq!(summary.steps, 15);

    // No speaker with three neutral utterances: an error, not a silent plain run.
    with.join.examples = 1;
    let no_neutral: Vec<_> = train
        .into_iter()
        .filter(|u| u.emotion != cfg.model.neutral)
        .collect();
    let err = Trainer::new(with, no_neutral, vec![], &out.0, &dev).unwrap_err();
    assert!(err.to_string().contains("join.examples"), "{err}");
}

/// A failed write leaves the previous checkpoint readable and no temporary file behind.
#[test]
fn a_failed_checkpoint_write_keeps_the_previous_one() {
    let data = TempDir::new("atomic-data");
    let out = TempDir::new("atomic-out");
    let t = Trainer::new(
        tiny_config(),
        prepared(&data.0, 4),
        vec![],
        &out.0,
        &Device::Cpu,
    )
    .unwrap();
    let path = out.0.join(LAST);
    let ck = t.checkpoint().unwrap();
    ck.save(&path).unwrap();
    let before = std::fs::read(&path).unwrap();
    // Occupy the temporary file's name with a folder: the write fails before the rename.
    let tmp = out.0.join(format!(
        ".{LAST}.tmp-{}-{:?}",
        std::process::id(),
        std::thread::current().id()
    ));
    std::fs::create_dir_all(&tmp).unwrap();
    assert!(ck.save(&path).is_err());
    assert_eq!(std::fs::read(&path).unwrap(), before);
    std::fs::remove_dir_all(&tmp).unwrap();
    let back = Checkpoint::load(&path, &Device::Cpu).unwrap();
    assert_eq!(back.model.len(), ck.model.len());
    // Not a checkpoint at all:
    std::fs::write(out.0.join("junk.safetensors"), b"not a checkpoint").unwrap();
    let e = Checkpoint::load(&out.0.join("junk.safetensors"), &Device::Cpu).unwrap_err();
    assert!(e.to_string().contains("junk.safetensors"), "{e}");
}

/// Every file of an output folder, by name, with its bytes.
fn folder(dir: &Path) -> BTreeMap<String, Vec<u8>> {
    std::fs::read_dir(dir)
        .unwrap()
        .map(|e| {
            let e = e.unwrap();
            (
                e.file_name().to_string_lossy().into_owned(),
                std::fs::read(e.path()).unwrap(),
            )
        })
        .collect()
}

/// Two checkpoint files hold the same state: equal metadata, every tensor bit for bit; and
/// since a checkpoint is always written the same way, the same bytes.
fn same_checkpoint(a_bytes: &[u8], b_bytes: &[u8], what: &str) {
    let (a, b) = (a_bytes, b_bytes);
    let load = |bytes: &[u8]| Checkpoint::from_bytes(bytes, Path::new(what), &Device::Cpu).unwrap();
    let (a, b) = (load(a), load(b));
    assert_eq!(a.meta, b.meta, "{what}");
    for (x, y) in [(&a.model, &b.model), (&a.optim, &b.optim)] {
        assert_eq!(x.len(), y.len(), "{what}");
        for (name, t) in x {
            let bits = |t: &Tensor| {
                t.flatten_all()
                    .unwrap()
                    .to_dtype(DType::F64)
                    .unwrap()
                    .to_vec1::<f64>()
                    .unwrap()
                    .iter()
                    .map(|v| v.to_bits())
                    .collect::<Vec<u64>>()
            };
            assert!(bits(t) == bits(&y[name]), "{what}: {name} differs");
        }
    }
    assert!(
        a_bytes == b_bytes,
        "{what}: the same checkpoint, other bytes"
    );
}

/// A full disk, or a folder turned read-only, at every write of a run in turn (metrics lines,
/// `best.safetensors`, `last.safetensors`): training stops with an error naming the file; no
/// temporary or partial file is left (every metrics line parses); the last checkpoint on disk
/// loads; and a run resumed from it (from scratch if none was written) ends with checkpoints
/// byte for byte those of a run never interrupted.
#[test]
fn a_write_failing_mid_run_loses_nothing() {
    use ent_common::fs::faults::{Fault, fail_writes};
    let data = TempDir::new("faults-data");
    let train = prepared(&data.0, 5);
    let valid = prepared(&data.0, 3);
    let cfg = TrainConfig {
        save_every_steps: Some(2),
        ..tiny_config()
    };
    let straight = TempDir::new("faults-straight");
    cpu_trainer(cfg.clone(), &train, &valid, &straight.0)
        .run()
        .unwrap();
    let want = folder(&straight.0);
    let writes = want[ent_train::METRICS]
        .iter()
        .filter(|&&b| b == b'\n')
        .count()
        + 8;
    let mut struck = 0;
    for k in 0..writes {
        let fault = [Fault::DiskFull, Fault::ReadOnly][k % 2];
        let out = TempDir::new("faults-run");
        let guard = fail_writes(&out.0, k, fault);
        let r = cpu_trainer(cfg.clone(), &train, &valid, &out.0).run();
        let hit = guard.struck();
        drop(guard);
        if hit == 0 {
            // Fewer writes than k: the run was never struck.
            r.unwrap();
            continue;
        }
        struck += 1;
        let e = r.expect_err("the write failed");
        let msg = e.to_string();
        let TrainError::Io { path, .. } = &e else {
            panic!("write {k}: {msg}");
        };
        assert!(path.starts_with(&out.0), "write {k}: {msg}");
        assert!(
            msg.contains("No space left on device") || msg.contains("Read-only file system"),
            "write {k}: {msg}"
        );
        let files = folder(&out.0);
        assert!(
            files.keys().all(|n| !n.contains(".tmp-")),
            "write {k}: {:?}",
            files.keys()
        );
        let log = String::from_utf8(files[ent_train::METRICS].clone()).unwrap();
        for line in log.lines() {
            serde_json::from_str::<serde_json::Value>(line)
                .unwrap_or_else(|e| panic!("write {k}: a partial metrics line {line:?}: {e}"));
        }
        let mut resumed = cpu_trainer(cfg.clone(), &train, &valid, &out.0);
        if files.contains_key(LAST) {
            let last = Checkpoint::load(&out.0.join(LAST), &Device::Cpu).unwrap();
            assert!(last.meta.state.is_some());
            resumed.resume(&out.0.join(LAST)).unwrap();
        }
        resumed.run().unwrap();
        let got = folder(&out.0);
        for name in [LAST, ent_train::BEST] {
            same_checkpoint(
                &got[name],
                &want[name],
                &format!("write {k} ({fault:?}): {name}"),
            );
        }
    }
    assert!(struck >= 10, "only {struck} runs were struck");
}

/// An utterance of an hour in the validation set (or in the training set, when nothing drops
/// long ones) stops training before the first step, named, instead of running the machine out
/// of memory part-way through.
#[test]
fn an_hour_long_utterance_is_refused_before_the_first_step() {
    let data = TempDir::new("hour-data");
    let out = TempDir::new("hour-out");
    let train = prepared(&data.0, 4);
    let mut hour = train[0].clone();
    hour.id = "hour".into();
    hour.duration = 3600.0;
    let e = Trainer::new(
        tiny_config(),
        train.clone(),
        vec![hour.clone()],
        &out.0,
        &Device::Cpu,
    )
    .unwrap_err();
    assert!(
        e.to_string()
            .contains("validation utterance hour lasts 3600.0 s, longer than the 600 s"),
        "{e}"
    );
    let mut with_hour = train.clone();
    with_hour.push(hour);
    let e = Trainer::new(tiny_config(), with_hour, vec![], &out.0, &Device::Cpu).unwrap_err();
    assert!(e.to_string().contains("training utterance hour"), "{e}");
    // Ten minutes at speed 0.9 is over the limit too.
    let mut ten = train[0].clone();
    ten.duration = 599.0;
    let cfg = TrainConfig {
        augment: ent_train::AugmentConfig {
            speed: vec![0.9, 1.0],
            ..Default::default()
        },
        ..tiny_config()
    };
    let e = Trainer::new(cfg, vec![ten], vec![], &out.0, &Device::Cpu).unwrap_err();
    assert!(e.to_string().contains("at speed 0.9"), "{e}");
    assert_eq!(ent_train::MAX_UTTERANCE_SECS, 600.0);
}

/// Hostile files beside good ones, skipped as `skip_bad_audio` asks: preparation counts them,
/// and training on what is left runs its epochs with finite losses.
#[test]
fn training_runs_on_what_survives_hostile_data() {
    use crate::data::{TempDir as DataDir, float_wav, sparse_wav};
    let data = DataDir::new("hostile-train");
    let mut utts = corpus(data.path(), 6);
    let template = utts[0].clone();
    let hostile = |id: &str, audio: PathBuf| Utterance {
        id: id.into(),
        audio,
        ..template.clone()
    };
    let mut loud: Vec<f32> = (0..8000).map(|i| (i as f32 * 0.05).sin() * 0.3).collect();
    loud[100..110].fill(-3e38);
    utts.push(hostile("huge", float_wav(&data, "huge.wav", &loud)));
    utts.push(hostile(
        "silent",
        sparse_wav(&data, "silent.wav", 1, 16_000),
    ));
    utts.push(hostile("empty", data.write("empty.wav", b"")));
    utts.push(hostile("hour", sparse_wav(&data, "hour.wav", 3600, 16_000)));
    let policy = ent_train::data::BadDataPolicy {
        skip_bad_audio: true,
        ..ent_train::data::BadDataPolicy::training()
    };
    let p = prepare(&utts, &Vocab::characters(), &EmotionMap::default(), &policy).unwrap();
    assert_eq!(p.report.bad_audio.len(), 3, "{}", p.report);
    assert_eq!(p.report.too_long, ["hour"]);
    let out = TempDir::new("hostile-out");
    let mut t = Trainer::new(tiny_config(), p.utterances, vec![], &out.0, &Device::Cpu).unwrap();
    let summary = t.run().unwrap();
    assert_eq!(summary.steps, t.total_steps());
    let log = std::fs::read_to_string(out.0.join(ent_train::METRICS)).unwrap();
    let lines: Vec<serde_json::Value> = log
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let steps: Vec<&serde_json::Value> = lines.iter().filter(|v| v["kind"] == "step").collect();
    assert_eq!(steps.len() as u64, summary.steps);
    for v in steps {
        assert!(v["loss"].as_f64().unwrap().is_finite(), "{v}");
    }
}

/// An absurd learning rate, unclipped: the loss goes to infinity within a step or two.
fn diverging_optim() -> OptimConfig {
    OptimConfig {
        lr: 1e36,
        warmup_epochs: 0.0,
        clip_grad_norm: None,
        weight_decay: 0.0,
        ..OptimConfig::default()
    }
}

/// An absurd learning rate drives the loss to infinity: training stops naming the step, the
/// utterances and the last good checkpoint, which still loads.
#[test]
fn non_finite_loss_stops_training_with_names() {
    let data = TempDir::new("nan-data");
    let out = TempDir::new("nan-out");
    let cfg = TrainConfig {
        optim: diverging_optim(),
        save_every_steps: Some(1),
        epochs: 5,
        ..tiny_config()
    };
    let mut t = Trainer::new(cfg, prepared(&data.0, 4), vec![], &out.0, &Device::Cpu).unwrap();
    match t.run() {
        Err(TrainError::NonFiniteLoss {
            step,
            ids,
            last_good,
            ..
        }) => {
            assert!(step >= 1, "step {step}");
            assert!(ids.contains('u'), "{ids}");
            assert!(last_good.ends_with(LAST), "{last_good}");
            let ck = Checkpoint::load(Path::new(&last_good), &Device::Cpu).unwrap();
            assert_eq!(ck.meta.state.unwrap().step, step);
        }
        other => panic!("expected a non-finite loss error, got {other:?}"),
    }
}

/// AdamW against the update written out by hand in f64 (PyTorch's formula), with decay on the
/// matrix only.
#[test]
fn adamw_matches_the_formula() {
    let dev = Device::Cpu;
    let w = Var::from_tensor(&Tensor::new(&[[1.0f64, -2.0]], &dev).unwrap()).unwrap();
    let b = Var::from_tensor(&Tensor::new(&[0.5f64], &dev).unwrap()).unwrap();
    let cfg = OptimConfig::default();
    let mut opt = AdamW::new(
        vec![("l.weight".into(), w.clone()), ("l.bias".into(), b.clone())],
        cfg.clone(),
    )
    .unwrap();
    let gw = [[0.3f64, -0.1], [0.2, 0.4]];
    let gb = [1.0f64, -3.0];
    let (mut pw, mut pb) = ([1.0f64, -2.0], 0.5f64);
    let (mut mw, mut vw, mut mb, mut vb) = ([0.0; 2], [0.0; 2], 0.0, 0.0);
    let lr = 1e-2;
    for s in 0..2 {
        let mut grads = BTreeMap::new();
        grads.insert("l.weight".to_string(), Tensor::new(&[gw[s]], &dev).unwrap());
        grads.insert("l.bias".to_string(), Tensor::new(&[gb[s]], &dev).unwrap());
        opt.step(&grads, lr).unwrap();
        let t = (s + 1) as i32;
        let (c1, c2) = (1.0 - 0.9f64.powi(t), 1.0 - 0.999f64.powi(t));
        for j in 0..2 {
            pw[j] *= 1.0 - lr * 0.05;
            mw[j] = 0.9 * mw[j] + 0.1 * gw[s][j];
            vw[j] = 0.999 * vw[j] + 0.001 * gw[s][j] * gw[s][j];
            pw[j] -= lr * (mw[j] / c1) / ((vw[j] / c2).sqrt() + 1e-8);
        }
        mb = 0.9 * mb + 0.1 * gb[s];
        vb = 0.999 * vb + 0.001 * gb[s] * gb[s];
        pb -= lr * (mb / c1) / ((vb / c2).sqrt() + 1e-8); // no decay on the bias
    }
    let got = w
        .as_tensor()
        .flatten_all()
        .unwrap()
        .to_vec1::<f64>()
        .unwrap();
    for j in 0..2 {
        assert!(
            (got[j] - pw[j]).abs() < 1e-15,
            "weight[{j}] {} vs {}",
            got[j],
            pw[j]
        );
    }
    let gotb = b.as_tensor().to_vec1::<f64>().unwrap()[0];
    assert!((gotb - pb).abs() < 1e-15, "bias {gotb} vs {pb}");
    assert!(
        ent_train::optim::decays("x.weight", 2)
            && !ent_train::optim::decays("x.bias", 2)
            && !ent_train::optim::decays("mix.weights", 1)
    );
}

#[test]
fn cosine_schedule_and_clipping() {
    let s = CosineSchedule {
        peak: 5e-4,
        start: 5e-7,
        min: 5e-6,
        warmup_steps: 10,
        total_steps: 110,
    };
    assert_eq!(s.lr(0), 5e-7);
    assert!((s.lr(5) - (5e-7 + (5e-4 - 5e-7) * 0.5)).abs() < 1e-18);
    assert!((s.lr(10) - 5e-4).abs() < 1e-18);
    assert!((s.lr(60) - (5e-6 + (5e-4 - 5e-6) * 0.5)).abs() < 1e-15);
    assert!((s.lr(110) - 5e-6).abs() < 1e-18);
    assert!((11..110).all(|i| s.lr(i) < s.lr(i - 1)));

    let dev = Device::Cpu;
    let mut g = BTreeMap::new();
    g.insert("a".to_string(), Tensor::new(&[3.0f32, 0.0], &dev).unwrap());
    g.insert("b".to_string(), Tensor::new(&[[4.0f32]], &dev).unwrap());
    let norm = clip_grad_norm(&mut g, Some(1.0)).unwrap();
    assert!((norm - 5.0).abs() < 1e-12);
    let after = clip_grad_norm(&mut g, None).unwrap();
    assert!((after - 1.0).abs() < 1e-6, "{after}");
}

#[test]
fn config_defaults_are_the_papers() {
    let c: TrainConfig = serde_json::from_str("{}").unwrap();
    assert_eq!(
        (
            c.optim.lr,
            c.optim.weight_decay,
            c.optim.warmup_start_lr,
            c.optim.min_lr
        ),
        (5e-4, 0.05, 5e-7, 5e-6)
    );
    assert_eq!(
        (c.epochs, c.batch_size, c.seed, c.optim.clip_grad_norm),
        (50, 2, 42, Some(5.0))
    );
    assert_eq!((c.loss.rnnt, c.loss.head, c.loss.lattice), (0.5, 0.5, 0.5));
    assert_eq!(c.data.max_duration, Some(18.75));
    let e = serde_json::from_str::<TrainConfig>(r#"{"epoch": 3}"#).unwrap_err();
    assert!(e.to_string().contains("unknown field"), "{e}");
    let bad = TrainConfig {
        batch_size: 0,
        ..TrainConfig::default()
    };
    assert!(
        bad.validate()
            .unwrap_err()
            .to_string()
            .contains("batch_size")
    );
    let _ = DType::F32;
}

/// The paper's front end: a (tiny) wav2vec2 checkpoint, scalar mix, BiLSTM. One epoch trains,
/// the backbone stays frozen (its weights are not in the checkpoint), and a model whose layer
/// count does not match the backbone is refused before any work.
#[test]
fn trains_on_a_pretrained_backbone() {
    let fixture =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../ent-backbone/tests/fixtures/wav2vec2-base");
    let data = TempDir::new("backbone-data");
    let train = prepared(&data.0, 4);
    let valid = prepared(&data.0, 2);
    let out = TempDir::new("backbone-out");
    let mut cfg = TrainConfig {
        epochs: 1,
        ..tiny_backbone_config(fixture.clone())
    };
    let before = {
        let t = cpu_trainer(cfg.clone(), &train, &valid, &out.0);
        weights(&t)
    };
    let mut t = cpu_trainer(cfg.clone(), &train, &valid, &out.0);
    let summary = t.run().unwrap();
    assert!(summary.steps >= 2);
    let scores = summary.last_valid.unwrap();
    assert!(scores.loss.is_finite(), "{scores:?}");
    let after = weights(&t);
    assert!(after.keys().all(|k| !k.starts_with("backbone")));
    // The scalar mix over the backbone's layers is what only this front end has: it learns.
    assert_ne!(after["mix.weights"], before["mix.weights"]);
    assert_ne!(after["mix.gamma"], before["mix.gamma"]);

    // With the backbone's linear layers in bf16 the same run trains on slightly different
    // hidden states: close weights, not the same ones.
    let half_out = TempDir::new("backbone-bf16-out");
    let half_cfg = TrainConfig {
        backbone_dtype: ent_train::BackboneDType::Bf16,
        ..cfg.clone()
    };
    let mut h = cpu_trainer(half_cfg, &train, &valid, &half_out.0);
    h.run().unwrap();
    let half = weights(&h);
    let mix = |w: &BTreeMap<String, Vec<f32>>| w["mix.weights"].clone();
    let gap = mix(&half)
        .iter()
        .zip(&mix(&after))
        .map(|(a, b)| (a - b).abs())
        .fold(0f32, f32::max);
    assert!(
        gap > 0.0 && gap < 1e-2,
        "bf16 against f32 mix weights: {gap}"
    );

    cfg.model.front_end = FrontEnd::Backbone {
        layers: 13,
        dim: 32,
    };
    let Err(err) = Trainer::new(cfg, train, valid, &out.0, &Device::Cpu) else {
        panic!("a layer-count mismatch is refused");
    };
    assert!(err.to_string().contains("3 hidden states"), "{err}");

    // A half type is for a backbone only.
    let fbank = TrainConfig {
        backbone_dtype: ent_train::BackboneDType::Bf16,
        ..tiny_config()
    };
    let e = fbank.validate().unwrap_err().to_string();
    assert!(
        e.contains("backbone_dtype = Bf16: needs a backbone front end"),
        "{e}"
    );
    let parsed: TrainConfig = serde_json::from_str(r#"{"backbone_dtype": "f16"}"#).unwrap();
    assert_eq!(parsed.backbone_dtype, ent_train::BackboneDType::F16);
}

fn augment_on() -> ent_train::AugmentConfig {
    ent_train::AugmentConfig {
        speed: vec![0.9, 1.0, 1.1],
        specaug: Some(ent_features::SpecAugmentConfig {
            max_freq_width: 4,
            max_time_width: 5,
            time_warp: 2,
            mask_value: ent_features::MaskValue::Mean,
            ..Default::default()
        }),
        gain_db: Some([-6.0, 6.0]),
    }
}

/// With speed perturbation, gain and SpecAugment on, a run stopped and resumed still ends with
/// the straight run's weights (the perturbations are drawn from the step, not from state that a
/// resume loses), and the weights differ from those of the same run without augmentation, as
/// they do with the gain alone.
#[test]
fn augmented_training_resumes_exactly_and_changes_the_weights() {
    let data = TempDir::new("augment-data");
    let train = prepared(&data.0, 7);
    let dev = Device::Cpu;
    let cfg = TrainConfig {
        augment: augment_on(),
        ..tiny_config()
    };
    let straight_dir = TempDir::new("augment-straight");
    let mut straight =
        Trainer::new(cfg.clone(), train.clone(), vec![], &straight_dir.0, &dev).unwrap();
    let total = straight.total_steps();
    straight.run().unwrap();
    let dir = TempDir::new("augment-stopped");
    let first = TrainConfig {
        max_steps: Some(total / 2 + 1),
        save_every_steps: Some(1),
        ..cfg.clone()
    };
    Trainer::new(first, train.clone(), vec![], &dir.0, &dev)
        .unwrap()
        .run()
        .unwrap();
    let mut b = Trainer::new(cfg, train.clone(), vec![], &dir.0, &dev).unwrap();
    b.resume(&dir.0.join(LAST)).unwrap();
    b.run().unwrap();
    let (w1, w2) = (weights(&straight), weights(&b));
    for (k, v) in &w1 {
        assert!(v == &w2[k], "{k} differs after resuming an augmented run");
    }
    let plain_dir = TempDir::new("augment-plain");
    let mut plain = Trainer::new(tiny_config(), train.clone(), vec![], &plain_dir.0, &dev).unwrap();
    plain.run().unwrap();
    let w0 = weights(&plain);
    let changed = w0
        .iter()
        .filter(|(k, v)| !ent_model::Model::is_buffer(k) && *v != &w1[*k])
        .count();
    assert!(changed > 0, "augmentation changed no weight");
    // The gain alone reaches the model too.
    let gain = TrainConfig {
        augment: ent_train::AugmentConfig {
            gain_db: Some([-6.0, 6.0]),
            ..Default::default()
        },
        ..tiny_config()
    };
    let gain_dir = TempDir::new("augment-gain");
    let mut gained = Trainer::new(gain, train, vec![], &gain_dir.0, &dev).unwrap();
    gained.run().unwrap();
    let w3 = weights(&gained);
    let changed = w0
        .iter()
        .filter(|(k, v)| !ent_model::Model::is_buffer(k) && *v != &w3[*k])
        .count();
    assert!(changed > 0, "the gain changed no weight");
}

/// Batches prepared by the background thread give the same run as batches prepared when
/// needed: the same weights and validation scores, with augmentation, for filterbanks and for a
/// backbone (SpecAugment of its hidden states); a missing file stops both with the same error.
#[test]
fn prefetched_batches_change_nothing() {
    let fixture =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../ent-backbone/tests/fixtures/wav2vec2-base");
    let data = TempDir::new("prefetch-data");
    let train = prepared(&data.0, 7);
    let valid = prepared(&data.0, 3);
    let dev = Device::Cpu;
    for (name, base) in [
        ("filterbanks", tiny_config()),
        ("backbone", tiny_backbone_config(fixture)),
    ] {
        let run = |ahead: usize| {
            let out = TempDir::new("prefetch-out");
            let cfg = TrainConfig {
                augment: augment_on(),
                batch_size: 1,
                prefetch_batches: ahead,
                ..base.clone()
            };
            let mut t = Trainer::new(cfg, train.clone(), valid.clone(), &out.0, &dev).unwrap();
            let summary = t.run().unwrap();
            (weights(&t), summary)
        };
        let (w0, s0) = run(0);
        for ahead in [1, 3] {
            let (w, s) = run(ahead);
            assert_eq!(s, s0, "{name}, {ahead} ahead");
            for (k, v) in &w0 {
                assert!(v == &w[k], "{name}, {ahead} ahead: {k} differs");
            }
        }
    }
    // A file that goes missing after the start: the same error either way, after the same
    // steps.
    let gone = TempDir::new("prefetch-gone");
    let mut train = prepared(&gone.0, 7);
    train.truncate(6);
    let errors: Vec<String> = [0, 2]
        .into_iter()
        .map(|ahead| {
            let out = TempDir::new("prefetch-gone-out");
            let cfg = TrainConfig {
                batch_size: 1,
                prefetch_batches: ahead,
                cache_features: false,
                ..tiny_config()
            };
            let mut t = Trainer::new(cfg, train.clone(), vec![], &out.0, &dev).unwrap();
            std::fs::rename(gone.0.join("u4.wav"), gone.0.join("u4.moved")).unwrap();
            let e = t.run().unwrap_err().to_string();
            std::fs::rename(gone.0.join("u4.moved"), gone.0.join("u4.wav")).unwrap();
            let steps = std::fs::read_to_string(out.0.join(ent_train::METRICS))
                .unwrap()
                .lines()
                .filter(|l| l.contains(r#""kind":"step""#))
                .count();
            format!("{e} after {steps} steps")
        })
        .collect();
    assert!(errors[0].contains("u4.wav"), "{}", errors[0]);
    assert!(!errors[0].contains("after 0 steps"), "{}", errors[0]);
    assert_eq!(errors[0], errors[1]);
}

/// Training that stops early (a non-finite loss) while the background thread is waiting to
/// hand over batches it prepared stops: the thread is not left blocking the run.
#[test]
fn training_stops_while_batches_wait() {
    let data = TempDir::new("prefetch-stop-data");
    let out = TempDir::new("prefetch-stop-out");
    let cfg = TrainConfig {
        optim: diverging_optim(),
        batch_size: 1,
        prefetch_batches: 1,
        epochs: 3,
        ..tiny_config()
    };
    let train = prepared(&data.0, 12);
    let (tx, rx) = std::sync::mpsc::channel();
    let dir = out.0.clone();
    std::thread::spawn(move || {
        let mut t = Trainer::new(cfg, train, vec![], &dir, &Device::Cpu).unwrap();
        tx.send(t.run().map(|s| s.steps)).unwrap();
    });
    match rx.recv_timeout(std::time::Duration::from_secs(120)) {
        Ok(Err(TrainError::NonFiniteLoss { step, .. })) => assert!(step < 12, "step {step}"),
        Ok(other) => panic!("expected a non-finite loss, got {other:?}"),
        Err(_) => panic!("training did not stop within two minutes"),
    }
}

/// The `augment` section in JSON: defaults, a full policy, and errors for bad factors, bad
/// SpecAugment values and unknown fields.
#[test]
fn augment_config_reads_from_json() {
    let dir = TempDir::new("augment-json");
    let read = |body: &str| {
        let p = dir.0.join("c.json");
        std::fs::write(&p, body).unwrap();
        TrainConfig::from_file(&p)
    };
    let plain = read(r#"{"data": {"train": "t.json"}}"#).unwrap();
    assert!(!plain.augment.is_on());
    let on = read(
        r#"{"data": {"train": "t.json"}, "augment": {"speed": [0.9, 1.0, 1.1], "gain_db": [-6, 6],
            "specaug": {"max_freq_width": 4, "max_time_width": 5, "time_warp": 2, "mask_value": "mean"}}}"#,
    )
    .unwrap();
    assert_eq!(on.augment, augment_on());
    assert_eq!(
        on.augment.describe(),
        "speed perturbation 0.9/1/1.1, gain -6 to 6 dB, SpecAugment"
    );
    let gain_only = read(r#"{"augment": {"gain_db": [0, 3]}}"#).unwrap();
    assert!(gain_only.augment.is_on());
    assert!(
        !read(r#"{"augment": {"gain_db": [0, 0]}}"#)
            .unwrap()
            .augment
            .is_on()
    );
    let c = read(r#"{"augment": {"specaug": {"mask_value": {"constant": -3.5}}}}"#).unwrap();
    assert_eq!(
        c.augment.specaug.unwrap().mask_value,
        ent_features::MaskValue::Constant(-3.5)
    );
    for (body, says) in [
        (
            r#"{"augment": {"speed": [0.9, 3.0]}}"#,
            "augment.speed = 3: every factor",
        ),
        (
            r#"{"augment": {"speed": [0.0]}}"#,
            "augment.speed = 0: every factor",
        ),
        (
            r#"{"augment": {"specaug": {"max_time_proportion": 1.5}}}"#,
            "max_time_proportion",
        ),
        (r#"{"augment": {"pitch": [1.0]}}"#, "unknown field `pitch`"),
        (r#"{"augment": {"gain_db": [6, -6]}}"#, "low <= high"),
        (r#"{"augment": {"gain_db": [-40, 0]}}"#, "[-40, 0]"),
        (r#"{"augment": {"gain_db": [3]}}"#, "array of length 2"),
        (
            r#"{"augment": {"specaug": {"masks": 2}}}"#,
            "unknown field `masks`",
        ),
    ] {
        let e = read(body).unwrap_err().to_string();
        assert!(e.contains(says), "{body}: {e}");
    }
}

/// Speed perturbation: 1.1 leaves ceil(n / 1.1) samples and raises a 300 Hz tone to 330 Hz
/// (counted by zero crossings), 0.9 lowers it to 270 Hz.
#[test]
fn speed_perturbation_changes_length_and_pitch() {
    let n = 16000;
    let x: Vec<f32> = (0..n)
        .map(|i| (2.0 * std::f64::consts::PI * 300.0 * i as f64 / 16000.0).sin() as f32 * 0.5)
        .collect();
    for (speed, hz) in [(1.1, 330.0), (0.9, 270.0), (1.0, 300.0)] {
        let y = ent_train::features::speed_perturb(&x, speed).unwrap();
        let expect = (n as f64 / speed).ceil() as usize;
        assert!(
            y.len().abs_diff(expect) <= 1,
            "{speed}: {} vs {expect}",
            y.len()
        );
        // Away from the edges, rising zero crossings per second.
        let mid = &y[800..y.len() - 800];
        let ups = mid.windows(2).filter(|w| w[0] < 0.0 && w[1] >= 0.0).count();
        let measured = ups as f64 * 16000.0 / mid.len() as f64;
        assert!(
            (measured - hz).abs() < 2.0,
            "{speed}: {measured} Hz, not {hz}"
        );
    }
}

/// SpecAugment of a padded batch, in place on the host and with tensor operations (what a GPU
/// runs): each example's valid frames as SpecAugment alone would leave them with that
/// example's seed, the same masks in every layer, padding untouched; for every mask value, a
/// warped example after the first, one too short to warp and an empty one.
#[test]
fn spec_augment_of_a_batch_is_per_example() {
    use ent_features::{MaskValue, SpecAugment, SpecAugmentConfig};
    use ent_train::features::{spec_augment, spec_augment_on_device};
    let (l, b, t, d) = (2, 5, 30, 8);
    let x: Vec<f32> = (0..l * b * t * d)
        .map(|i| ((i * 7919) % 211) as f32 * 0.1 - 7.0)
        .collect();
    // time_warp 3 below: 7 frames are too few to warp (7 / 2 > 3 does not hold).
    let lens = [30, 18, 25, 7, 0];
    let seeds = [11, 12, 13, 14, 15];
    let input = Tensor::from_vec(x.clone(), (l, b, t, d), &Device::Cpu).unwrap();
    type Augment = fn(&Tensor, &[usize], &SpecAugment, &[u64]) -> Result<Tensor, TrainError>;
    let ways: [(&str, Augment); 2] = [
        ("in place", spec_augment),
        ("tensor operations", spec_augment_on_device),
    ];
    for mask_value in [MaskValue::Constant(99.0), MaskValue::Zero, MaskValue::Mean] {
        let aug = SpecAugment::new(SpecAugmentConfig {
            max_freq_width: 3,
            max_time_width: 6,
            time_warp: 3,
            mask_value,
            ..Default::default()
        })
        .unwrap();
        let mut warped = 0;
        for (way, f) in ways {
            let y = f(&input, &lens, &aug, &seeds)
                .unwrap()
                .flatten_all()
                .unwrap()
                .to_vec1::<f32>()
                .unwrap();
            let mut masked_per_layer = vec![Vec::new(); l];
            for (li, masked) in masked_per_layer.iter_mut().enumerate() {
                for e in 0..b {
                    let at = (li * b + e) * t * d;
                    let mut want = x[at..at + lens[e] * d].to_vec();
                    let done = aug.apply_in_place(&mut want, lens[e], d, seeds[e]).unwrap();
                    warped += usize::from(done.warp.is_some_and(|(c, w)| c != w) && e > 0);
                    // The mean fill is summed in another order by tensor operations.
                    let worst = y[at..at + lens[e] * d]
                        .iter()
                        .zip(&want)
                        .map(|(a, b)| if a == b { 0.0 } else { (a - b).abs() })
                        // A NaN stays (and fails the bound).
                        .fold(0f32, |m, v| if v > m || v.is_nan() { v } else { m });
                    let bound = if mask_value == MaskValue::Mean {
                        1e-6
                    } else {
                        0.0
                    };
                    assert!(
                        worst <= bound,
                        "{way}, {mask_value:?}: layer {li} example {e} off by {worst}"
                    );
                    assert_eq!(
                        &y[at + lens[e] * d..at + t * d],
                        &x[at + lens[e] * d..at + t * d],
                        "{way}, {mask_value:?}: padding of example {e}"
                    );
                    masked.extend((at..at + t * d).map(|i| y[i] == 99.0).collect::<Vec<_>>());
                }
            }
            if mask_value == MaskValue::Constant(99.0) {
                assert_eq!(masked_per_layer[0], masked_per_layer[1], "{way}");
                assert!(
                    masked_per_layer[0].iter().any(|&m| m),
                    "{way}: nothing masked"
                );
            }
            let bad = f(&input, &[30, 31, 2, 0, 0], &aug, &seeds);
            assert!(bad.is_err(), "{way}");
        }
        assert!(warped > 0, "no example after the first was warped");
    }
}

/// `max_batch_nodes`: batches are cut by their padded lattice (the trainer's steps are those of
/// `budgeted_batches` over `(ceil(d / 0.04) + 1, U)`), and an utterance whose lattice alone is
/// over the budget stops the trainer before any step, named.
#[test]
fn lattice_budget_cuts_batches_and_names_what_cannot_fit() {
    use ent_train::data::{NodeBudget, budgeted_batches};
    let data = TempDir::new("budget-data");
    let train = prepared(&data.0, 12);
    let out = TempDir::new("budget-out");
    let cfg = |nodes| TrainConfig {
        batch_size: 8,
        max_batch_nodes: nodes,
        ..tiny_config()
    };
    let plain = Trainer::new(cfg(None), train.clone(), vec![], &out.0, &Device::Cpu).unwrap();
    assert_eq!(plain.total_steps(), 2 * 2);

    // The largest lattice alone: u11, 0.5 s (13 + 1 frames at 40 ms) and "OK THEN" (7
    // tokens): 14 x 8 = 112 nodes.
    let lengths: Vec<f64> = train.iter().map(|u| u.duration).collect();
    let sizes: Vec<(usize, usize)> = train
        .iter()
        .map(|u| ((u.duration / 0.04).ceil() as usize + 1, u.tokens.len()))
        .collect();
    let single = |i: usize| NodeBudget::nodes(1, sizes[i].0, sizes[i].1);
    assert_eq!((0..12).map(single).max(), Some(112));
    assert_eq!(single(11), 112);
    for budget in [112, 300] {
        let t = Trainer::new(
            cfg(Some(budget)),
            train.clone(),
            vec![],
            &out.0,
            &Device::Cpu,
        )
        .unwrap();
        let want = budgeted_batches(
            &lengths,
            8,
            None,
            Some(NodeBudget {
                max_nodes: budget,
                sizes: &sizes,
            }),
            42,
            0,
            true,
        );
        assert!(want.len() > 2, "budget {budget}: {want:?}");
        assert_eq!(t.total_steps(), 2 * want.len() as u64, "budget {budget}");
    }
    let e = Trainer::new(cfg(Some(111)), train.clone(), vec![], &out.0, &Device::Cpu)
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("training utterance u11 (0.50 s, 7 tokens) alone has a lattice of 112 nodes")
            && e.contains("more than max_batch_nodes 111"),
        "{e}"
    );
    // Validation utterances are checked too (at speed 1); training ones at the slowest speed
    // factor (u5, 0.55 s at 0.9: 17 frames x 7 positions = 119); zero is refused.
    let valid = prepared(&data.0, 12);
    let e = Trainer::new(
        cfg(Some(111)),
        train[..3].to_vec(),
        valid,
        &out.0,
        &Device::Cpu,
    )
    .unwrap_err()
    .to_string();
    assert!(e.contains("validation utterance u11"), "{e}");
    let mut slow = cfg(Some(112));
    slow.augment.speed = vec![0.9, 1.0];
    let e = Trainer::new(slow, train.clone(), vec![], &out.0, &Device::Cpu)
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("training utterance u5")
            && e.contains("(17 frames x 7 positions, at speed 0.9)"),
        "{e}"
    );
    let e = Trainer::new(cfg(Some(0)), train, vec![], &out.0, &Device::Cpu)
        .unwrap_err()
        .to_string();
    assert!(e.contains("max_batch_nodes = 0: must be at least 1"), "{e}");
}

/// SpecAugment of `[L, B, T, D]` hidden states on the GPU (tensor operations there) equals the
/// in-place augmentation on the CPU, for every mask value.
#[cfg(feature = "cuda")]
#[test]
fn cuda_spec_augment_matches_the_cpu() {
    use ent_features::{MaskValue, SpecAugment, SpecAugmentConfig};
    let Some(gpu) = ent_testkit::cuda_or_skip() else {
        return;
    };
    let (l, b, t, d) = (3, 4, 40, 16);
    let x: Vec<f32> = (0..l * b * t * d)
        .map(|i| ((i * 7919) % 211) as f32 * 0.1 - 7.0)
        .collect();
    let lens = [40, 23, 31, 7];
    let seeds = [21, 22, 23, 24];
    let cpu = Tensor::from_vec(x, (l, b, t, d), &Device::Cpu).unwrap();
    let on_gpu = cpu.to_device(&gpu).unwrap();
    for mask_value in [MaskValue::Constant(99.0), MaskValue::Zero, MaskValue::Mean] {
        let aug = SpecAugment::new(SpecAugmentConfig {
            max_freq_width: 5,
            max_time_width: 8,
            time_warp: 4,
            mask_value,
            ..Default::default()
        })
        .unwrap();
        let want = ent_train::features::spec_augment(&cpu, &lens, &aug, &seeds)
            .unwrap()
            .flatten_all()
            .unwrap()
            .to_vec1::<f32>()
            .unwrap();
        let got = ent_train::features::spec_augment(&on_gpu, &lens, &aug, &seeds).unwrap();
        assert!(got.device().is_cuda());
        let got = got.flatten_all().unwrap().to_vec1::<f32>().unwrap();
        // The same f32 operations in the same order; the mean fill is summed differently.
        let worst = got
            .iter()
            .zip(&want)
            .map(|(a, b)| if a == b { 0.0 } else { (a - b).abs() })
            .fold(0f32, |m, v| if v > m || v.is_nan() { v } else { m });
        assert!(worst <= 1e-5, "{mask_value:?}: off by {worst}");
    }
}

/// With one seed, the first optimiser step on a GPU logs the same losses and gradient norm as
/// on the CPU, within 1e-4 relative (f32 on both; different summation orders): the filterbank
/// model with its conformer, and the paper's front end on a tiny wav2vec2 (scalar mix and
/// BiLSTM, the LSTM kernels of `kernels/lstm.cu` on the GPU). Without a GPU the test prints why
/// it is skipped; `ENT_REQUIRE_CUDA=1` turns the skip into a failure (the GPU bundle sets it).
#[cfg(feature = "cuda")]
#[test]
fn cuda_first_step_matches_the_cpu() {
    let Some(gpu) = ent_testkit::cuda_or_skip() else {
        return;
    };
    // The GPU bundle runs this binary away from the build's checkout: it says where the
    // fixture is.
    let fixture = std::env::var_os("ENT_BACKBONE_FIXTURE")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| {
            Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("../ent-backbone/tests/fixtures/wav2vec2-base")
        });
    let data = TempDir::new("cuda-data");
    let train = prepared(&data.0, 8);
    let backbone = tiny_backbone_config(fixture);
    for (name, cfg) in [("filterbank", tiny_config()), ("backbone", backbone)] {
        let first_step = |dev: &Device| {
            let out = TempDir::new("cuda-out");
            let cfg = TrainConfig {
                max_steps: Some(1),
                batch_size: 4,
                ..cfg.clone()
            };
            let mut t = Trainer::new(cfg, train.clone(), vec![], &out.0, dev).unwrap();
            t.run().unwrap();
            let log = std::fs::read_to_string(out.0.join(ent_train::METRICS)).unwrap();
            let step: serde_json::Value = log
                .lines()
                .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap())
                .find(|l| l["kind"] == "step")
                .unwrap();
            step
        };
        let (cpu, cuda) = (first_step(&Device::Cpu), first_step(&gpu));
        for key in ["loss", "rnnt", "lattice", "head", "grad_norm"] {
            let (a, b) = (cpu[key].as_f64().unwrap(), cuda[key].as_f64().unwrap());
            assert!(
                (a - b).abs() <= 1e-4 * a.abs().max(1e-3),
                "{name}: {key} is {a} on the CPU and {b} on the GPU"
            );
        }
    }
}

/// `join.match_loudness`: a joined example's later part brought to its first part's level.
/// Filterbanks: the part's frames equal the filterbanks of its waveform scaled by the gain
/// computed here from the two files (within the log-domain rounding); a backbone hears exactly
/// the scaled waveform. Off, nothing changes.
#[test]
fn joined_parts_are_matched_in_loudness() {
    use ent_train::features::{FeatureSource, load_audio};
    let data = TempDir::new("loud-data");
    let (loud, quiet) = (data.0.join("loud.wav"), data.0.join("quiet.wav"));
    write_tone_at(&loud, 0, 0.5, 1, 1.0);
    write_tone_at(&quiet, 2, 0.4, 2, 0.1);
    let seg = ent_features::Segment::WHOLE;
    let parts = vec![
        ("loud", loud.as_path(), seg),
        ("quiet", quiet.as_path(), seg),
    ];
    let power = |w: &[f32]| w.iter().map(|&x| f64::from(x).powi(2)).sum::<f64>() / w.len() as f64;
    let (a, b) = (
        load_audio(&loud, seg).unwrap(),
        load_audio(&quiet, seg).unwrap(),
    );
    let gain = (power(&a) / power(&b)).sqrt() as f32;
    assert!((gain - 10.0).abs() < 0.5, "{gain}");
    let scaled: Vec<f32> = b.iter().map(|&x| x * gain).collect();
    let dev = Device::Cpu;

    let src = FeatureSource::new(&tiny_config().model, None, true, &dev).unwrap();
    let rows = |t: &Tensor| t.squeeze(0).unwrap().to_vec2::<f32>().unwrap();
    let matched = rows(
        &src.inputs_matched(std::slice::from_ref(&parts), &[], true, &dev)
            .unwrap()
            .features,
    );
    let plain = rows(
        &src.inputs_matched(std::slice::from_ref(&parts), &[], false, &dev)
            .unwrap()
            .features,
    );
    let first = src.inputs(&parts[..1], &dev).unwrap().lens[0];
    let want = rows(&src.inputs_from_samples(&[&scaled], &dev).unwrap().features);
    let quiet_alone = rows(&src.inputs(&parts[1..], &dev).unwrap().features);
    assert_eq!(matched.len(), first + want.len());
    assert_eq!(&matched[..first], &plain[..first]);
    assert_eq!(&plain[first..], &quiet_alone[..]);
    let worst = matched[first..]
        .iter()
        .flatten()
        .zip(want.iter().flatten())
        .map(|(x, y)| (x - y).abs())
        .fold(0f32, f32::max);
    // Measured 1.1e-5: f32 rounding of log-mel values near 10 in magnitude.
    assert!(worst < 1e-4, "filterbanks of the matched part: {worst}");

    let fixture =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../ent-backbone/tests/fixtures/wav2vec2-base");
    let model = tiny_backbone_config(fixture.clone()).model;
    let bb = FeatureSource::new(&model, Some(&fixture), false, &dev).unwrap();
    let joined: Vec<f32> = a.iter().chain(&scaled).copied().collect();
    let got = bb
        .inputs_matched(std::slice::from_ref(&parts), &[], true, &dev)
        .unwrap()
        .features;
    let want = bb.inputs_from_samples(&[&joined], &dev).unwrap().features;
    assert_eq!(ent_testkit::max_abs_diff(&got, &want), 0.0);
}

/// `augment.gain_db`: an example played at a gain of g dB. Filterbanks: every part of a joined
/// example equals the filterbanks of its waveform scaled by `10^(g/20)` (within the log-domain
/// rounding), digital silence included (it stays at the log floor); a backbone hears exactly
/// the scaled waveform; a gain per example of the batch, 0 dB changing nothing; a list of the
/// wrong length refused.
#[test]
fn gain_perturbation_scales_each_example() {
    use ent_train::features::{FeatureSource, load_audio};
    let data = TempDir::new("gain-data");
    let (tone, quiet) = (data.0.join("tone.wav"), data.0.join("quiet.wav"));
    write_tone_at(&tone, 0, 0.5, 1, 0.5);
    // A quiet tone after 0.1 s of digital silence.
    let mut rng = ent_common::rng::SplitMix64::new(7);
    let samples: Vec<i16> = (0..6400)
        .map(|i| {
            if i < 1600 {
                0
            } else {
                let t = i as f64 / 16000.0;
                let v = 0.05 * (2.0 * std::f64::consts::PI * 330.0 * t).sin()
                    + 0.002 * (rng.uniform() - 0.5);
                (v * 32767.0) as i16
            }
        })
        .collect();
    ent_testkit::wav::write_i16(&quiet, 16_000, &samples);
    let seg = ent_features::Segment::WHOLE;
    let joined = vec![
        ("tone", tone.as_path(), seg),
        ("quiet", quiet.as_path(), seg),
    ];
    let single = vec![("quiet", quiet.as_path(), seg)];
    let batch = vec![joined.clone(), single.clone()];
    let dev = Device::Cpu;
    let scaled = |path: &Path, db: f64| -> Vec<f32> {
        let g = 10f64.powf(db / 20.0) as f32;
        load_audio(path, seg)
            .unwrap()
            .iter()
            .map(|&x| x * g)
            .collect()
    };
    let src = FeatureSource::new(&tiny_config().model, None, true, &dev).unwrap();
    let rows = |host: ent_train::features::HostInputs, b: usize| -> Vec<Vec<f32>> {
        let t = src.upload(host, &dev).unwrap().features;
        t.get(b).unwrap().to_vec2::<f32>().unwrap()
    };
    let fbank = |w: &[f32]| -> Vec<Vec<f32>> {
        let t = src.inputs_from_samples(&[w], &dev).unwrap().features;
        t.squeeze(0).unwrap().to_vec2::<f32>().unwrap()
    };
    let worst = |a: &[Vec<f32>], b: &[Vec<f32>]| {
        assert_eq!(a.len(), b.len());
        a.iter()
            .flatten()
            .zip(b.iter().flatten())
            .map(|(x, y)| (x - y).abs())
            .fold(0f32, f32::max)
    };
    let floor = f32::EPSILON.ln();
    for (g0, g1) in [(6.0, -9.0), (-4.5, 12.0)] {
        let host = src
            .host_inputs(&batch, &[], &[g0, g1], false, None)
            .unwrap();
        let first = fbank(&scaled(&tone, g0));
        let second = fbank(&scaled(&quiet, g0));
        let lone = fbank(&scaled(&quiet, g1));
        assert!(
            second[0].iter().all(|&v| v == floor),
            "silence at the floor"
        );
        let got = rows(host.clone(), 0);
        // Measured below 2e-5: f32 rounding of log-mel values near 10 in magnitude.
        assert!(worst(&got[..first.len()], &first) < 1e-4, "{g0} dB, part 1");
        assert!(
            worst(&got[first.len()..], &second) < 1e-4,
            "{g0} dB, part 2"
        );
        let got = rows(host, 1);
        assert!(worst(&got[..lone.len()], &lone) < 1e-4, "{g1} dB");
    }
    let plain = src.host_inputs(&batch, &[], &[], false, None).unwrap();
    let zero = src
        .host_inputs(&batch, &[], &[0.0, 0.0], false, None)
        .unwrap();
    assert_eq!(rows(plain, 1), rows(zero, 1));
    let e = src
        .host_inputs(&batch, &[], &[1.0], false, None)
        .unwrap_err()
        .to_string();
    assert!(e.contains("gains has 1 entries for a batch of 2"), "{e}");

    let fixture =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../ent-backbone/tests/fixtures/wav2vec2-base");
    let model = tiny_backbone_config(fixture.clone()).model;
    let bb = FeatureSource::new(&model, Some(&fixture), false, &dev).unwrap();
    let got = bb
        .upload(
            bb.host_inputs(std::slice::from_ref(&single), &[], &[-7.5], false, None)
                .unwrap(),
            &dev,
        )
        .unwrap()
        .features;
    let want = bb
        .inputs_from_samples(&[&scaled(&quiet, -7.5)], &dev)
        .unwrap()
        .features;
    assert_eq!(ent_testkit::max_abs_diff(&got, &want), 0.0);
}
