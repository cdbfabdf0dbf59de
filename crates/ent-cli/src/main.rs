//! `ent`: speech recognition with per-frame emotion (Emotion Neural Transducer).

mod demo;

use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use candle_core::Device;
use clap::{Args, Parser, Subcommand, ValueEnum};
use ent_decode::Search;
use ent_pipeline::{
    DEMO_MODEL_NAME, Engine, EvalOptions, Scored, TrainOptions, evaluate, progress_bar, safe_name,
    save_report, train_and_score, write_timeline,
};
use ent_train::data::{BadDataPolicy, ManifestFormat, Vocab, load_manifest, prepare};
use ent_train::{LAST, TrainConfig, load_splits};

/// Speech recognition with per-frame emotion: the Emotion Neural Transducer (ENT).
///
/// Transcribes 16 kHz speech (any rate is resampled) into text, one emotion per 20 ms (backbone
/// models) or 40 ms (filterbank models) frame, an utterance emotion and emotion segments.
/// Start with `ent demo`; without `--model`, `transcribe` and `diarize` use the bundled demo
/// model, trained on synthetic speech only.
#[derive(Debug, Parser)]
#[command(name = "ent", version, propagate_version = true)]
struct Cli {
    /// Where tensors live: `cpu`, or `cuda` (needs a build with `--features cuda`).
    #[arg(long, global = true, value_enum, default_value_t = DeviceArg::Cpu)]
    device: DeviceArg,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum DeviceArg {
    Cpu,
    Cuda,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Train a model from a JSON training configuration, then score the test split if it has one.
    Train(TrainArgs),
    /// Decode a labelled manifest and report WA, UA, macro-F1, WER, CER and EDER.
    Eval(EvalArgs),
    /// Transcribe audio files: one JSON line per file with text, utterance emotion, timed
    /// characters with their emotion, and emotion segments.
    Transcribe(TranscribeArgs),
    /// Emotion diarization of audio files as RTTM lines
    /// (`SPEAKER <file> 1 <start> <duration> <NA> <NA> <emotion> <NA> <NA>`).
    Diarize(DiarizeArgs),
    /// Train on the bundled synthetic corpus, score held-out voices and write plots
    /// (about 10 minutes on two CPU cores).
    Demo(demo::DemoArgs),
}

/// How a model is chosen and searched.
#[derive(Debug, Clone, Args)]
struct ModelArgs {
    /// Checkpoint written by `ent train` or `ent demo` [default: the bundled demo model].
    #[arg(long, short)]
    model: Option<PathBuf>,
    /// Backbone folder (config.json + weights) for models with a pretrained front end
    /// [default: the folder recorded in the checkpoint].
    #[arg(long)]
    backbone: Option<PathBuf>,
    /// Beam width of the modified beam search; 1 runs greedy search (up to 32 symbols per frame).
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u16).range(1..=64))]
    beam: u16,
}

impl ModelArgs {
    fn search(&self) -> Search {
        if self.beam <= 1 {
            Search::default()
        } else {
            Search::Beam {
                width: self.beam as usize,
            }
        }
    }

    fn engine(&self, dev: &Device) -> Result<Engine> {
        if self.model.is_none() {
            eprintln!("using {DEMO_MODEL_NAME}; pass --model for your own");
        }
        Ok(Engine::load(
            self.model.as_deref(),
            self.backbone.as_deref(),
            dev,
            self.search(),
        )?)
    }
}

#[derive(Debug, Args)]
struct TrainArgs {
    /// Training configuration (JSON; see README). Relative paths inside are relative to it.
    #[arg(long, short)]
    config: PathBuf,
    /// Output folder for checkpoints, metrics.jsonl, reports and plots
    /// [default: runs/<config file stem>].
    #[arg(long, short)]
    out: Option<PathBuf>,
    /// Continue from `last.safetensors` of the output folder (or this checkpoint).
    #[arg(long, num_args = 0..=1, default_missing_value = "")]
    resume: Option<PathBuf>,
}

#[derive(Debug, Args)]
struct EvalArgs {
    #[command(flatten)]
    model: ModelArgs,
    /// Labelled manifest: SpeechBrain JSON, Kaldi/ESPnet data folder, Lhotse cuts, IEMOCAP
    /// release folder or ZED.json (emotion intervals enable EDER).
    manifest: PathBuf,
    /// Manifest format [default: detected].
    #[arg(long)]
    format: Option<ManifestFormat>,
    /// Replaces `{data_root}` (and ZED's `datafolder`) in audio paths.
    #[arg(long)]
    data_root: Option<PathBuf>,
    /// Folder for report.json, utterances.jsonl and plots [default: print only].
    #[arg(long, short)]
    out: Option<PathBuf>,
    /// Emotion timelines to draw (the first N utterances) when --out is given.
    #[arg(long, default_value_t = 10)]
    timelines: usize,
    /// Utterances per decoding batch.
    #[arg(long, default_value_t = 8)]
    batch_size: usize,
    /// Skip utterances whose audio is missing or unreadable (counted) instead of stopping.
    #[arg(long)]
    skip_bad_audio: bool,
}

#[derive(Debug, Args)]
struct TranscribeArgs {
    #[command(flatten)]
    model: ModelArgs,
    /// Audio files (WAV, FLAC, MP3, Ogg Vorbis; any sample rate, mixed down to mono).
    #[arg(required = true)]
    files: Vec<PathBuf>,
    /// Also draw an emotion timeline per file into this folder.
    #[arg(long)]
    plots: Option<PathBuf>,
}

#[derive(Debug, Args)]
struct DiarizeArgs {
    #[command(flatten)]
    model: ModelArgs,
    /// Audio files.
    #[arg(required = true)]
    files: Vec<PathBuf>,
}

fn device(d: DeviceArg) -> Result<Device> {
    match d {
        DeviceArg::Cpu => Ok(Device::Cpu),
        DeviceArg::Cuda => {
            if !cfg!(feature = "cuda") {
                bail!(
                    "this build has no CUDA support: rebuild with `cargo build --release -p ent-cli --features cuda`"
                );
            }
            Device::new_cuda(0).context("cannot open CUDA device 0")
        }
    }
}

fn main() {
    let cli = Cli::parse();
    if let Err(e) = run(cli) {
        eprintln!("error: {e:#}");
        std::process::exit(1);
    }
}

fn run(cli: Cli) -> Result<()> {
    let dev = device(cli.device)?;
    match cli.command {
        Command::Train(a) => train(a, &dev),
        Command::Eval(a) => eval_cmd(a, &dev),
        Command::Transcribe(a) => transcribe(a, &dev),
        Command::Diarize(a) => diarize(a, &dev),
        Command::Demo(a) => demo::run(a, &dev),
    }
}

fn train(a: TrainArgs, dev: &Device) -> Result<()> {
    let cfg = TrainConfig::from_file(&a.config)?;
    let out = a.out.unwrap_or_else(|| {
        let stem = a
            .config
            .file_stem()
            .map_or("run".into(), |s| s.to_string_lossy().into_owned());
        Path::new("runs").join(stem)
    });
    let splits = load_splits(&cfg)?;
    for (name, report) in &splits.reports {
        eprintln!("{name}: {report}");
    }
    let resume = match a.resume {
        Some(p) if p.as_os_str().is_empty() => Some(out.join(LAST)),
        other => other,
    };
    let describe = |trainer: &ent_train::Trainer| {
        if trainer.joined() > 0 {
            eprintln!(
                "added {} joined training examples (neutral, any, neutral)",
                trainer.joined()
            );
        }
    };
    let trained = |summary: &ent_train::Summary| {
        eprintln!(
            "trained {} steps; checkpoints in {}",
            summary.steps,
            out.display()
        );
    };
    let run = train_and_score(
        &cfg,
        splits,
        &out,
        dev,
        &TrainOptions {
            resume: resume.as_deref(),
            test_batch_size: cfg.batch_size.max(8),
            on_start: Some(&describe),
            on_trained: Some(&trained),
        },
    )?;
    if let Some(test) = run.test {
        print!("{}", test.report.table());
        save_report(&out, &test.report, &test.scored, test.engine.labels(), 10)?;
    }
    Ok(())
}

fn eval_cmd(a: EvalArgs, dev: &Device) -> Result<()> {
    let engine = a.model.engine(dev)?;
    let utts = load_manifest(&a.manifest, a.format, a.data_root.as_deref())?;
    let policy = BadDataPolicy {
        skip_bad_audio: a.skip_bad_audio,
        require_text: false,
        ..BadDataPolicy::default()
    };
    let prepared = prepare(&utts, &Vocab::characters(), &engine.meta.emotions, &policy)?;
    eprintln!("{}: {}", a.manifest.display(), prepared.report);
    let name = a
        .manifest
        .file_stem()
        .map_or("eval".into(), |s| s.to_string_lossy().into_owned());
    let (report, scored) = evaluate(
        &engine,
        &prepared.utterances,
        &EvalOptions {
            name: &name,
            batch_size: a.batch_size,
            progress: true,
        },
    )?;
    print!("{}", report.table());
    if let Some(out) = &a.out {
        save_report(out, &report, &scored, engine.labels(), a.timelines)?;
        eprintln!("report and plots in {}", out.display());
    }
    Ok(())
}

/// Decodes `files` one at a time (each may be long) and hands each result to `emit`.
fn for_each_file(
    engine: &Engine,
    files: &[PathBuf],
    mut emit: impl FnMut(&Path, ent_decode::Decoded) -> Result<()>,
) -> Result<()> {
    let bar = progress_bar(files.len() as u64, "decoding", files.len() > 1);
    for f in files {
        let id = f.to_string_lossy();
        let mut out = engine
            .decode(&[(&id, f.as_path(), ent_features::Segment::WHOLE)])
            .with_context(|| format!("cannot transcribe {}", f.display()))?;
        bar.suspend(|| emit(f, out.remove(0)))?;
        bar.inc(1);
    }
    bar.finish_and_clear();
    Ok(())
}

fn transcribe(a: TranscribeArgs, dev: &Device) -> Result<()> {
    let engine = a.model.engine(dev)?;
    let labels = engine.labels().to_vec();
    let mut stdout = std::io::stdout().lock();
    for_each_file(&engine, &a.files, |f, d| {
        let t = engine.transcript(&f.to_string_lossy(), &d);
        writeln!(stdout, "{}", serde_json::to_string(&t)?)?;
        if let Some(dir) = &a.plots {
            let scored = Scored {
                transcript: t,
                reference_text: String::new(),
                reference_emotion: String::new(),
                reference_segments: None,
                frame_probs: d.hypothesis.frame_probs.clone(),
                frame_emotions: d.hypothesis.frame_emotions.clone(),
                eder: None,
                class: d.utterance_emotion,
            };
            write_timeline(dir, &scored, &labels)?;
        }
        Ok(())
    })
}

fn diarize(a: DiarizeArgs, dev: &Device) -> Result<()> {
    let engine = a.model.engine(dev)?;
    let mut stdout = std::io::stdout().lock();
    for_each_file(&engine, &a.files, |f, d| {
        let t = engine.transcript(&f.to_string_lossy(), &d);
        let stem = f
            .file_stem()
            .map_or("audio".into(), |s| safe_name(&s.to_string_lossy()));
        for s in &t.segments {
            writeln!(
                stdout,
                "SPEAKER {stem} 1 {:.3} {:.3} <NA> <NA> {} <NA> <NA>",
                s.start,
                s.end - s.start,
                s.emotion
            )?;
        }
        Ok(())
    })
}
