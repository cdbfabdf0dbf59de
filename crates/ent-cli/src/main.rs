//! `ent`: speech recognition with per-frame emotion (Emotion Neural Transducer).

mod demo;

use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use candle_core::Device;
use clap::{Args, Parser, Subcommand, ValueEnum};
use ent_decode::Search;
use ent_pipeline::formats::{self, Subtitles};
use ent_pipeline::{
    DEMO_MODEL_NAME, Engine, EvalOptions, FileDecoding, FilesOptions, Progress, Scored, Stretches,
    TrainOptions, Windowing, evaluate, safe_name, save_report, train_and_score, write_timeline,
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
    /// No progress bars or progress lines on stderr (results, summaries and errors still print).
    #[arg(long, short, global = true)]
    quiet: bool,
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
    /// Longest window, in seconds, that long recordings are decoded in (they are cut at pauses,
    /// or into overlapping windows where there is none; see docs/method.md §10).
    #[arg(long, default_value_t = Windowing::default().max_window)]
    max_window: f64,
    /// Decide each frame's emotion by a threshold on `1 - p(neutral)` (emotional at or above
    /// it, then the most probable emotion) instead of the most probable class [default: the
    /// most probable class].
    #[arg(long)]
    emotion_threshold: Option<f32>,
    /// Decide emotion per stretch of speech between pauses (of at least 0.15 s) instead of per
    /// frame: a stretch is emotional when at least this share of its speech frames are, and then
    /// takes the emotion most of them have [default: per frame].
    #[arg(long, value_name = "SHARE")]
    emotion_by_stretch: Option<f32>,
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
        let w = Windowing {
            max_window: self.max_window,
            min_window: Windowing::default().min_window.min(self.max_window / 2.0),
            overlap: Windowing::default().overlap.min(self.max_window / 4.0),
            ..Windowing::default()
        };
        Ok(Engine::load(
            self.model.as_deref(),
            self.backbone.as_deref(),
            dev,
            self.search(),
        )?
        .with_windowing(w)?
        .with_emotion_threshold(self.emotion_threshold)?
        .with_emotion_stretches(self.emotion_by_stretch.map(Stretches::new))?)
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
    #[arg(long, num_args = 0..=1, value_name = "CHECKPOINT")]
    resume: Option<Option<PathBuf>>,
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
    /// Emotion timelines to draw (N utterances spread evenly over the set) when --out is given.
    #[arg(long, default_value_t = 10)]
    timelines: usize,
    /// Utterances per decoding batch.
    #[arg(long, default_value_t = 8)]
    batch_size: usize,
    /// Skip utterances whose audio cannot be used (missing, unreadable, damaged, silent;
    /// counted) instead of stopping.
    #[arg(long)]
    skip_bad_audio: bool,
    #[command(flatten)]
    jobs: Jobs,
}

#[derive(Debug, Args)]
struct TranscribeArgs {
    #[command(flatten)]
    model: ModelArgs,
    /// Audio files of any length (WAV, FLAC, MP3, Ogg Vorbis; any sample rate, mixed down to
    /// mono).
    #[arg(required = true)]
    files: Vec<PathBuf>,
    /// Output: `json` (one line per file: text, emotion, timed characters, segments, windows),
    /// or subtitles whose cues start with their emotion, `srt` or `vtt`.
    #[arg(long, value_enum, default_value_t = TranscribeFormat::Json)]
    format: TranscribeFormat,
    /// Write one file per input into this folder (`<name>.json`, `.srt` or `.vtt`) instead of
    /// printing; needed for subtitles of more than one file.
    #[arg(long, short)]
    out: Option<PathBuf>,
    /// Also draw an emotion timeline per file into this folder.
    #[arg(long)]
    plots: Option<PathBuf>,
    #[command(flatten)]
    batch: BatchArgs,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum TranscribeFormat {
    Json,
    Srt,
    Vtt,
}

#[derive(Debug, Args)]
struct DiarizeArgs {
    #[command(flatten)]
    model: ModelArgs,
    /// Audio files of any length.
    #[arg(required = true)]
    files: Vec<PathBuf>,
    /// Output: `rttm` lines, `json` (one line per file with its segments) or `csv` (a header,
    /// then `file,start,end,duration,emotion` per segment).
    #[arg(long, value_enum, default_value_t = DiarizeFormat::Rttm)]
    format: DiarizeFormat,
    #[command(flatten)]
    batch: BatchArgs,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum DiarizeFormat {
    Rttm,
    Json,
    Csv,
}

/// How many threads decode.
#[derive(Debug, Clone, Args)]
struct Jobs {
    /// Threads to decode on: several files (or batches) at a time, or the windows of a single
    /// long file [default: the CPU cores]. With more than one, each thread runs the model alone
    /// (`RAYON_NUM_THREADS=1` unless set), which on small models is several times faster than
    /// splitting each matrix product.
    #[arg(long, short = 'j', value_parser = clap::value_parser!(u16).range(1..=1024))]
    jobs: Option<u16>,
}

impl Jobs {
    fn get(&self) -> usize {
        self.jobs.map_or_else(
            || std::thread::available_parallelism().map_or(1, |n| n.get()),
            usize::from,
        )
    }
}

/// How a batch of files is processed.
#[derive(Debug, Clone, Args)]
struct BatchArgs {
    #[command(flatten)]
    jobs: Jobs,
    /// Stop at the first file that cannot be processed (by default every readable file is
    /// processed, each failure reported, and the exit status says how many failed).
    #[arg(long)]
    fail_fast: bool,
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

impl BatchArgs {
    fn jobs(&self) -> usize {
        self.jobs.get()
    }
}

fn main() {
    let cli = Cli::parse();
    let jobs = match &cli.command {
        Command::Transcribe(a) => a.batch.jobs(),
        Command::Diarize(a) => a.batch.jobs(),
        Command::Eval(a) => a.jobs.get(),
        _ => 1,
    };
    if jobs > 1 && std::env::var_os("RAYON_NUM_THREADS").is_none() {
        // SAFETY: no other thread of this process exists yet (argument parsing starts none),
        // so nothing reads the environment while it changes. Read by rayon's pool and by
        // candle's matrix products: each decoding thread then runs its products alone.
        unsafe { std::env::set_var("RAYON_NUM_THREADS", "1") };
    }
    if let Err(e) = run(cli) {
        eprintln!("error: {}", chain(e.chain()));
        std::process::exit(1);
    }
}

fn run(cli: Cli) -> Result<()> {
    let dev = device(cli.device)?;
    let progress = !cli.quiet;
    match cli.command {
        Command::Train(a) => train(a, &dev, progress),
        Command::Eval(a) => eval_cmd(a, &dev, progress),
        Command::Transcribe(a) => transcribe(a, &dev, progress),
        Command::Diarize(a) => diarize(a, &dev, progress),
        Command::Demo(a) => demo::run(a, &dev, progress),
    }
}

fn train(a: TrainArgs, dev: &Device, progress: bool) -> Result<()> {
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
        Some(None) => Some(out.join(LAST)),
        Some(Some(p)) => Some(p),
        None => None,
    };
    let describe = |trainer: &ent_train::Trainer| {
        if trainer.joined() > 0 {
            eprintln!(
                "added {} joined training examples ({})",
                trainer.joined(),
                cfg.join.describe_patterns()
            );
        }
        if cfg.augment.is_on() {
            eprintln!("augmentation: {}", cfg.augment.describe());
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
            progress,
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

fn eval_cmd(a: EvalArgs, dev: &Device, progress: bool) -> Result<()> {
    let engine = a.model.engine(dev)?.with_jobs(a.jobs.get());
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
            progress,
        },
    )?;
    print!("{}", report.table());
    if let Some(out) = &a.out {
        save_report(out, &report, &scored, engine.labels(), a.timelines)?;
        eprintln!("report and plots in {}", out.display());
    }
    Ok(())
}

/// Decodes `files` (each of any length) and hands each result to `emit` in input order
/// ([`Engine::transcribe_files`]: several files `--jobs` at a time, one file's windows on all
/// of them). A file that cannot be read, or has damaged stretches, is reported on stderr (and
/// through `on_error`, for outputs that list failures) and counted; the others are still
/// processed unless `--fail-fast`. Errors at the end when any file failed.
fn for_each_file(
    engine: &Engine,
    files: &[PathBuf],
    batch: &BatchArgs,
    progress: bool,
    mut on_error: impl FnMut(&Path, &str) -> Result<()>,
    mut emit: impl FnMut(&Path, &FileDecoding) -> Result<()>,
) -> Result<()> {
    let mut bar = Progress::new(files.len() as u64, "decoding", "files", progress);
    // One file at a time: how far it has been read.
    let one_at_a_time = engine.jobs() == 1 || files.len() == 1;
    let report = |i: usize, secs: f64, total: Option<f64>| {
        if one_at_a_time {
            let f: &Path = &files[i];
            let name = f.file_name().unwrap_or(f.as_os_str()).to_string_lossy();
            bar.item(&name, secs, total);
        }
    };
    let opts = FilesOptions {
        fail_fast: batch.fail_fast,
    };
    let summary = engine.transcribe_files(files, opts, &report, |i, r| -> Result<()> {
        let f = &files[i];
        // A damaged file's output lists the damage itself (`damaged`); an unreadable file's is
        // the error line.
        let error = match r {
            Ok(ref d) => {
                bar.suspend(|| emit(f, d))?;
                let damage: Vec<&str> = d
                    .transcript
                    .damaged
                    .iter()
                    .map(|x| x.message.as_str())
                    .collect();
                (!damage.is_empty()).then(|| damage.join("; "))
            }
            Err(e) => {
                let why = format!(
                    "cannot transcribe: {}",
                    chain(anyhow::Error::new(e).chain())
                );
                on_error(f, &why)?;
                Some(why)
            }
        };
        if let Some(why) = error {
            bar.suspend(|| eprintln!("error: {}: {why}", f.display()));
        }
        bar.inc(1);
        Ok(())
    })?;
    bar.finish();
    if summary.stopped {
        let at = &files[summary.handed - 1];
        bail!(
            "stopped at the first failure (--fail-fast): {}",
            at.display()
        );
    }
    if summary.failed > 0 {
        bail!(
            "{} of {} file{} failed (see the errors above)",
            summary.failed,
            files.len(),
            if files.len() == 1 { "" } else { "s" }
        );
    }
    Ok(())
}

/// An error and its causes on one line, `a: b: c`, leaving out a cause whose message the line
/// already holds (many errors print their source in their own message).
fn chain<'a>(errors: impl Iterator<Item = &'a (dyn std::error::Error + 'static)>) -> String {
    let mut line = String::new();
    for e in errors {
        let m = e.to_string();
        if line.contains(&m) {
            continue;
        }
        if !line.is_empty() {
            line.push_str(": ");
        }
        line.push_str(&m);
    }
    line
}

/// Where one file's output goes: the folder given, or stdout.
fn output_path(out: Option<&Path>, file: &Path, ext: &str) -> Option<PathBuf> {
    out.map(|dir| {
        let stem = file
            .file_stem()
            .map_or("audio".into(), |s| safe_name(&s.to_string_lossy()));
        dir.join(format!("{stem}.{ext}"))
    })
}

fn transcribe(a: TranscribeArgs, dev: &Device, progress: bool) -> Result<()> {
    let subtitles = match a.format {
        TranscribeFormat::Json => None,
        TranscribeFormat::Srt => Some((Subtitles::Srt, "srt")),
        TranscribeFormat::Vtt => Some((Subtitles::Vtt, "vtt")),
    };
    if subtitles.is_some() && a.files.len() > 1 && a.out.is_none() {
        bail!("subtitles of several files need --out DIR (one .srt or .vtt file per input)");
    }
    if let Some(dir) = &a.out {
        let mut seen = std::collections::HashMap::new();
        for f in &a.files {
            if let Some(earlier) = seen.insert(output_path(Some(dir), f, ""), f) {
                bail!(
                    "{} and {} would both be written to {}: give files different names",
                    earlier.display(),
                    f.display(),
                    output_path(Some(dir), f, "*")
                        .map_or(String::new(), |p| p.display().to_string())
                );
            }
        }
        std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    }
    let engine = a.model.engine(dev)?.with_jobs(a.batch.jobs());
    let labels = engine.labels().to_vec();
    let stdout = std::cell::RefCell::new(std::io::stdout().lock());
    let json_lines = subtitles.is_none() && a.out.is_none();
    for_each_file(
        &engine,
        &a.files,
        &a.batch,
        progress,
        |f, why| json_error(&stdout, json_lines, f, why),
        |f, d| {
            let t = &d.transcript;
            let (text, ext) = match subtitles {
                Some((kind, ext)) => (formats::subtitles(t, kind), ext),
                None => (format!("{}\n", serde_json::to_string(t)?), "json"),
            };
            match output_path(a.out.as_deref(), f, ext) {
                Some(path) => ent_common::fs::write_atomic(&path, text.as_bytes())
                    .with_context(|| format!("cannot write {}", path.display()))?,
                None => write!(stdout.borrow_mut(), "{text}")?,
            }
            if let Some(dir) = &a.plots {
                let scored = Scored {
                    transcript: t.clone(),
                    reference_text: String::new(),
                    reference_emotion: String::new(),
                    reference_segments: None,
                    frame_probs: d.frame_probs.clone(),
                    frame_emotions: d.frame_emotions.clone(),
                    eder: None,
                    eder_baselines: None,
                    class: d.class,
                    token_timing: None,
                };
                write_timeline(dir, &scored, &labels)?;
            }
            Ok(())
        },
    )
}

/// Writes a failed file's JSON line (`{"file", "error"}`) when the output is JSON lines.
fn json_error(out: &std::cell::RefCell<impl Write>, json: bool, f: &Path, why: &str) -> Result<()> {
    if json {
        writeln!(
            out.borrow_mut(),
            "{}",
            formats::error_json(&f.to_string_lossy(), why)
        )?;
    }
    Ok(())
}

fn diarize(a: DiarizeArgs, dev: &Device, progress: bool) -> Result<()> {
    let engine = a.model.engine(dev)?.with_jobs(a.batch.jobs());
    let stdout = std::cell::RefCell::new(std::io::stdout().lock());
    if a.format == DiarizeFormat::Csv {
        writeln!(stdout.borrow_mut(), "{}", formats::CSV_HEADER)?;
    }
    for_each_file(
        &engine,
        &a.files,
        &a.batch,
        progress,
        |f, why| json_error(&stdout, a.format == DiarizeFormat::Json, f, why),
        |f, d| {
            let file = f.to_string_lossy();
            let t = &d.transcript;
            let text = match a.format {
                DiarizeFormat::Rttm => formats::rttm(&file, t),
                DiarizeFormat::Csv => formats::csv_rows(&file, t)?,
                DiarizeFormat::Json => format!("{}\n", formats::segments_json(&file, t)?),
            };
            write!(stdout.borrow_mut(), "{text}")?;
            Ok(())
        },
    )
}
