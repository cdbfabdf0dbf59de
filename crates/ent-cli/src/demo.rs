//! `ent demo`: the whole method on the bundled synthetic corpus, on a CPU, in minutes.

use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{Result, bail};
use candle_core::Device;
use clap::Args;
use ent_decode::Search;
use ent_pipeline::{
    Engine, EvalOptions, Stretches, TrainOptions, evaluate, save_report, train_and_score,
};

/// The emotional share of a stretch of speech that makes it emotional in the demo's
/// diarization: the one value among the lowest EDER on the validation voice's recordings
/// (`valid_diar.json`) of every model measured for it, trained with emotion intervals or
/// utterance labels only, but the one trained with gain perturbation of +-6 dB (whose best is
/// 0.1; docs/benchmarks.md).
const STRETCH_SHARE: f32 = 0.2;
use ent_train::data::{BadDataPolicy, Vocab, prepare, read_zed};
use ent_train::{Checkpoint, TrainConfig, load_splits};

/// Options of `ent demo`.
#[derive(Debug, Args)]
pub struct DemoArgs {
    /// The demo corpus (manifests, audio and config.json) [default: data/demo of this
    /// repository].
    #[arg(long)]
    data: Option<PathBuf>,
    /// Output folder: checkpoints, metrics.jsonl, reports, plots and the exported model.
    /// Files of an earlier demo run there are replaced.
    #[arg(long, short, default_value = "demo-out")]
    out: PathBuf,
    /// Training epochs [default: the corpus' config.json].
    #[arg(long)]
    epochs: Option<u64>,
    /// Skip training and score this checkpoint instead.
    #[arg(long)]
    model: Option<PathBuf>,
}

/// The corpus folder: `--data`, else `data/demo` under the working directory, else the one
/// next to this crate's sources.
fn corpus_dir(arg: Option<&Path>) -> Result<PathBuf> {
    if let Some(d) = arg {
        return Ok(d.to_path_buf());
    }
    let here = Path::new("data/demo");
    if here.join("config.json").exists() {
        return Ok(here.to_path_buf());
    }
    let built = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../data/demo");
    if built.join("config.json").exists() {
        return Ok(built);
    }
    bail!("no demo corpus found: pass --data DIR (the repository's data/demo)")
}

/// Trains (unless `--model`), then scores the held-out voices and the diarization set.
pub fn run(a: DemoArgs, dev: &Device, progress: bool) -> Result<()> {
    let started = Instant::now();
    let data = corpus_dir(a.data.as_deref())?;
    eprintln!(
        "demo corpus: {} (synthetic speech: espeak-ng voices, emotions acted by prosody settings)",
        data.display()
    );
    let mut cfg = TrainConfig::from_file(&data.join("config.json"))?;
    if let Some(e) = a.epochs {
        cfg.epochs = e;
    }
    let splits = load_splits(&cfg)?;
    for (name, report) in &splits.reports {
        eprintln!("{name}: {report}");
    }
    let eval_opts = |name| EvalOptions {
        name,
        batch_size: 16,
        progress,
    };
    let (model_path, engine, test, test_scored) = match &a.model {
        Some(m) => {
            let engine = Engine::load(Some(m), None, dev, Search::default())?;
            let (test, scored) = evaluate(&engine, &splits.test, &eval_opts("test"))?;
            (m.clone(), engine, test, scored)
        }
        None => {
            let n_train = splits.train.len();
            let describe = |trainer: &ent_train::Trainer| {
                eprintln!(
                    "training ENT (filterbank front end) on {} utterances and {} joined examples \
                     ({}; one voice each) for {} epochs, {} optimiser steps; augmentation: {}",
                    n_train,
                    trainer.joined(),
                    cfg.join.describe_patterns(),
                    cfg.epochs,
                    trainer.total_steps(),
                    cfg.augment.describe()
                );
            };
            let trained = |summary: &ent_train::Summary| {
                eprintln!(
                    "trained {} steps in {:.0} s",
                    summary.steps,
                    started.elapsed().as_secs_f64()
                );
            };
            let opts = TrainOptions {
                test_batch_size: 16,
                progress,
                on_start: Some(&describe),
                on_trained: Some(&trained),
                ..TrainOptions::default()
            };
            let run = train_and_score(&cfg, splits, &a.out, dev, &opts)?;
            let test = run
                .test
                .ok_or_else(|| anyhow::anyhow!("the demo corpus has no test split"))?;
            (run.model, test.engine, test.report, test.scored)
        }
    };
    let diar_raw = read_zed(&data.join("diar.json"), None)?;
    let diar_utts = prepare(
        &diar_raw,
        &Vocab::characters(),
        &engine.meta.emotions,
        &BadDataPolicy::default(),
    )?
    .utterances;
    let (per_frame, _) = evaluate(&engine, &diar_utts, &eval_opts("diar, per frame"))?;
    let engine = engine.with_emotion_stretches(Some(Stretches::new(STRETCH_SHARE)))?;
    let (diar, diar_scored) = evaluate(&engine, &diar_utts, &eval_opts("diar"))?;
    println!();
    println!("held-out voices of the synthetic demo corpus:");
    print!("{}", test.table());
    print!("{}", diar.table());
    if let Some(e) = per_frame.eder {
        println!(
            "  (emotion decided per stretch of speech between pauses, a stretch emotional when \
             {:.0}% of its speech frames are; per frame, as the paper decodes: EDER {:.1}%)",
            100.0 * STRETCH_SHARE,
            e
        );
    }
    save_report(&a.out, &test, &test_scored, engine.labels(), 4)?;
    save_report(&a.out, &diar, &diar_scored, engine.labels(), 8)?;
    let export = a.out.join("demo-model.safetensors");
    Checkpoint::load(&model_path, &Device::Cpu)?
        .for_inference()
        .save(&export)?;
    println!(
        "\nplots, reports and the model ({}) are in {}; {:.0} s in all",
        export.display(),
        a.out.display(),
        started.elapsed().as_secs_f64()
    );
    if let Some(first) = diar_utts.first() {
        println!(
            "next: cargo run --release -p ent-cli -- transcribe --model {} {}",
            export.display(),
            first.audio.display()
        );
    }
    Ok(())
}
