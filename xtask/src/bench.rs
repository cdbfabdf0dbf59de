//! `cargo xtask bench`: the CPU benchmarks (criterion) and their peers in the same run, then the
//! comparison tables in Markdown: the lattice losses against torchaudio on the same shapes and
//! thread count, the filterbank against kaldi-native-fbank on the same audio, the backbone
//! against transformers on the same weights, one training step against the same network in
//! PyTorch (`--only train`). The peers are installed from PyPI into
//! `target/bench-venv` on first use (pinned in `benches/requirements.txt`).

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, Result};
use clap::{Args, ValueEnum};
use serde_json::Value;

use crate::run;

/// Which comparison to run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Only {
    Lattice,
    Fbank,
    Backbone,
    Train,
}

/// Options of `cargo xtask bench`.
#[derive(Debug, Args)]
pub struct BenchArgs {
    /// Peer runs per measurement.
    #[arg(long, default_value_t = 5)]
    runs: usize,
    /// Reuse the last criterion results in target/criterion.
    #[arg(long)]
    skip_criterion: bool,
    /// Only this comparison.
    #[arg(long, value_enum)]
    only: Option<Only>,
}

/// The threads the benchmarks run on: `RAYON_NUM_THREADS` if set, else every core.
fn threads() -> usize {
    std::env::var("RAYON_NUM_THREADS")
        .ok()
        .and_then(|v| v.parse().ok())
        .filter(|&n| n > 0)
        .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()))
}

/// A Python with torch and torchaudio, installing them into `target/bench-venv` if needed.
fn bench_python(root: &Path) -> Result<PathBuf> {
    let venv = crate::target_dir(root)?.join("bench-venv");
    let python = venv.join("bin/python");
    let ok = python.exists()
        && Command::new(&python)
            .args([
                "-c",
                "import torch, torchaudio, numpy, kaldi_native_fbank, transformers, safetensors",
            ])
            .output()
            .is_ok_and(|o| o.status.success());
    if !ok {
        eprintln!(
            "installing torch, torchaudio, transformers and kaldi-native-fbank into {} (a few GB, once)",
            venv.display()
        );
        run(Command::new("python3").arg("-m").arg("venv").arg(&venv))?;
        run(Command::new(&python)
            .args(["-m", "pip", "install", "-q", "-r"])
            .arg(root.join("benches/requirements.txt")))?;
    }
    Ok(python)
}

/// Median time in seconds of one criterion benchmark.
fn criterion_median(root: &Path, group: &str, func: &str, id: &str) -> Result<f64> {
    let path = crate::target_dir(root)?
        .join("criterion")
        .join(group.replace('/', "_"))
        .join(func)
        .join(id)
        .join("new/estimates.json");
    let text = std::fs::read_to_string(&path)
        .with_context(|| format!("reading {} (run the benchmark first)", path.display()))?;
    let v: Value =
        serde_json::from_str(&text).with_context(|| format!("parsing {}", path.display()))?;
    v["median"]["point_estimate"]
        .as_f64()
        .map(|ns| ns * 1e-9)
        .with_context(|| format!("no median in {}", path.display()))
}

/// `cargo xtask bench`.
pub fn bench(root: &Path, args: &BenchArgs) -> Result<()> {
    let (runs, skip_criterion) = (args.runs, args.skip_criterion);
    let threads = threads();
    let python = bench_python(root)?;
    let want = |which: Only| args.only.is_none_or(|o| o == which);
    let b = BenchRun {
        root,
        python: &python,
        threads,
        runs,
        skip_criterion,
    };
    if want(Only::Lattice) {
        lattice_bench(&b)?;
    }
    if want(Only::Fbank) {
        fbank_bench(&b)?;
    }
    if want(Only::Backbone) {
        backbone_bench(&b)?;
    }
    if want(Only::Train) {
        train_bench(&b)?;
    }
    Ok(())
}

/// One training step (batch 8, 5 s, U 60) of each model against `benches/train_torch.py`, each
/// side in its own process per model so that its peak memory is that model's. Ends with one
/// line per model: `train <model>: ent X ms, PyTorch Y ms, PyTorch/ent Z`.
fn train_bench(b: &BenchRun<'_>) -> Result<()> {
    let (root, python, threads, runs) = (b.root, b.python, b.threads, b.runs);
    let models = ["fbank_small", "ent_backbone_features"];
    let id = "B8_5s_U60";
    let mut rows = Vec::new();
    for m in models {
        // The criterion benchmark of this model alone; its process tree's peak memory.
        let ent_peak = if b.skip_criterion {
            None
        } else {
            Some(peak_rss_mib(
                Command::new(env!("CARGO"))
                    .current_dir(root)
                    .env("RAYON_NUM_THREADS", threads.to_string())
                    .args(["bench", "-p", "ent-benches", "--bench", "train", "--", m]),
            )?)
        };
        let ours = criterion_median(root, "cpu/train_step", m, id)?;
        let peer = run_peer(
            root,
            python,
            "train_torch.py",
            &["--only".to_string(), m.to_string()],
            threads,
            runs,
        )?;
        let r = &peer["results"][format!("{m}/{id}")];
        let theirs = r["median_s"].as_f64().context("no PyTorch median")?;
        let their_peak = r["peak_rss_mib"].as_f64();
        rows.push((m, ours, theirs, ent_peak, their_peak, peer["torch"].clone()));
    }
    println!(
        "
| model | ent | PyTorch | PyTorch ÷ ent | ent peak memory | PyTorch peak memory |"
    );
    println!("|---|---|---|---|---|---|");
    let mib = |x: Option<f64>| x.map_or("-".to_string(), |v| format!("{v:.0} MiB"));
    for (m, ours, theirs, ep, tp, torch) in &rows {
        println!(
            "| {m} | {:.0} ms | {:.0} ms (torch {torch}) | {:.2}x | {} | {} |",
            ours * 1e3,
            theirs * 1e3,
            theirs / ours,
            mib(*ep),
            mib(*tp)
        );
    }
    println!();
    for (m, ours, theirs, ep, tp, _) in &rows {
        println!(
            "train {m}: ent {:.0} ms, PyTorch {:.0} ms, PyTorch/ent {:.2}",
            ours * 1e3,
            theirs * 1e3,
            theirs / ours
        );
        println!("  peak memory {m}: ent {}, PyTorch {}", mib(*ep), mib(*tp));
    }
    Ok(())
}

/// Runs `cmd` to completion and returns the peak resident memory, in MiB, of the largest
/// process in its tree (Linux: `wait4`'s `ru_maxrss` covers the descendants it waited for).
fn peak_rss_mib(cmd: &mut Command) -> Result<f64> {
    let child = cmd.spawn().with_context(|| format!("running {cmd:?}"))?;
    let pid = child.id() as libc::pid_t;
    let mut status = 0;
    // SAFETY: an all-zero `rusage` is a valid value of this plain C struct.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: `pid` is our own child, not yet waited for; both pointers are valid for writes.
    let r = unsafe { libc::wait4(pid, &mut status, 0, &mut usage) };
    if r != pid {
        anyhow::bail!("wait4 failed: {}", std::io::Error::last_os_error());
    }
    if !libc::WIFEXITED(status) || libc::WEXITSTATUS(status) != 0 {
        anyhow::bail!("{cmd:?} failed (status {status})");
    }
    Ok(usage.ru_maxrss as f64 / 1024.0)
}

/// Runs `benches/SCRIPT ARGS --threads N --runs R --json FILE` and returns the JSON it wrote.
fn run_peer(
    root: &Path,
    python: &Path,
    script: &str,
    args: &[String],
    threads: usize,
    runs: usize,
) -> Result<Value> {
    let out = crate::target_dir(root)?.join(script.replace(".py", ".json"));
    run(Command::new(python)
        .arg(root.join("benches").join(script))
        .args(args)
        .args([
            "--threads",
            &threads.to_string(),
            "--runs",
            &runs.to_string(),
            "--json",
        ])
        .arg(&out))?;
    let text = std::fs::read_to_string(&out)
        .with_context(|| format!("reading the results of {script}"))?;
    serde_json::from_str(&text).with_context(|| format!("parsing {}", out.display()))
}

fn backbone_bench(b: &BenchRun<'_>) -> Result<()> {
    let (root, python, threads, runs) = (b.root, b.python, b.threads, b.runs);
    if !b.skip_criterion {
        criterion(root, threads, "backbone")?;
    }
    let model = match std::env::var_os("ENT_BACKBONE_BENCH_MODEL") {
        Some(dir) => PathBuf::from(dir),
        None => crate::target_dir(root)?.join("bench-data/wav2vec2-base-random"),
    };
    let peer = run_peer(
        root,
        python,
        "backbone_transformers.py",
        &[model.to_string_lossy().into_owned()],
        threads,
        runs,
    )?;
    let id = "wav2vec2-base_10s";
    let one = criterion_median(root, "cpu/backbone", "1_thread", id)?;
    let all = criterion_median(root, "cpu/backbone", "all_threads", id)?;
    let pt_one = peer["threads_1_s"].as_f64().context("no 1-thread time")?;
    let pt_all = peer[format!("threads_{threads}_s")]
        .as_f64()
        .context("no all-thread time")?;
    println!(
        "\nwav2vec2-base, 10 s of speech, all 13 hidden states; torch {} / transformers {}",
        peer["torch"], peer["transformers"]
    );
    println!(
        "\n| threads | ent | real-time factor | transformers | real-time factor | transformers ÷ ent |"
    );
    println!("|---|---|---|---|---|---|");
    for (n, ours, theirs) in [(1, one, pt_one), (threads, all, pt_all)] {
        println!(
            "| {n} | {:.0} ms | {:.4} | {:.0} ms | {:.4} | {:.2}x |",
            ours * 1e3,
            ours / 10.0,
            theirs * 1e3,
            theirs / 10.0,
            theirs / ours
        );
    }
    Ok(())
}

/// `cargo bench -p ent-benches --bench NAME` on `threads` rayon threads.
fn criterion(root: &Path, threads: usize, name: &str) -> Result<()> {
    // The benchmark writes its own data (the backbone's checkpoint) into the target folder
    // this command reads back.
    run(Command::new(env!("CARGO"))
        .current_dir(root)
        .env("CARGO_TARGET_DIR", crate::target_dir(root)?)
        .env("RAYON_NUM_THREADS", threads.to_string())
        .args(["bench", "-p", "ent-benches", "--bench", name]))
}

/// What one `cargo xtask bench` run works with.
struct BenchRun<'a> {
    root: &'a Path,
    python: &'a Path,
    threads: usize,
    runs: usize,
    skip_criterion: bool,
}

fn fbank_bench(b: &BenchRun<'_>) -> Result<()> {
    let (root, python, threads, runs) = (b.root, b.python, b.threads, b.runs);
    if !b.skip_criterion {
        criterion(root, threads, "fbank")?;
    }
    let out = crate::target_dir(root)?.join("bench-kaldi-native-fbank.json");
    run(Command::new(python)
        .arg(root.join("benches/fbank_kaldi_native.py"))
        .args([
            "--seconds",
            "60",
            "--runs",
            &(2 * runs).to_string(),
            "--json",
        ])
        .arg(&out))?;
    let peer: Value = serde_json::from_str(
        &std::fs::read_to_string(&out).context("reading kaldi-native-fbank results")?,
    )?;
    let knf = peer["compute_median_s"]
        .as_f64()
        .context("no kaldi-native-fbank median")?;
    let knf_frames = peer["frames_s"]
        .as_f64()
        .context("no kaldi-native-fbank frame time")?;
    let id = "speech_60s";
    let one = criterion_median(root, "cpu/fbank", "1_thread", id)?;
    let all = criterion_median(root, "cpu/fbank", "all_threads", id)?;
    let rate = |s: f64| format!("{:.0} s/s ({:.1} ms)", 60.0 / s, s * 1e3);
    println!(
        "\nfilterbank, 60 s of speech, 80 bins; kaldi-native-fbank {}",
        peer["kaldi_native_fbank"]
    );
    println!(
        "\n| ent 1 thread | ent {threads} threads | kaldi-native-fbank call (1 thread) | its frames alone | ent 1 thread ÷ call | ent 1 thread ÷ frames alone |"
    );
    println!("|---|---|---|---|---|---|");
    println!(
        "| {} | {} | {} | {} | {:.2}x | {:.2}x |",
        rate(one),
        rate(all),
        rate(knf),
        rate(knf_frames),
        knf / one,
        knf_frames / one
    );
    Ok(())
}

fn lattice_bench(b: &BenchRun<'_>) -> Result<()> {
    let (root, python, threads, runs) = (b.root.to_path_buf(), b.python, b.threads, b.runs);
    if !b.skip_criterion {
        criterion(&root, threads, "lattice")?;
    }
    let peer = run_peer(&root, python, "torchaudio_rnnt.py", &[], threads, runs)?;

    println!(
        "\nthreads: {threads}; torch {} / torchaudio {}",
        peer["torch"], peer["torchaudio"]
    );
    println!(
        "\n| shape | floor (read+write) | ent loss+grad | ÷ floor | ent candle loss+backward | ÷ floor | ent loss only | torchaudio loss+backward | torchaudio ÷ ent | torchaudio ÷ ent candle |"
    );
    println!("|---|---|---|---|---|---|---|---|---|---|");
    let ms = |s: f64| format!("{:.1} ms", s * 1e3);
    for id in ["B8_T200_U50_V512", "B4_T500_U100_V1000", "B8_T250_U60_V31"] {
        let g = "cpu/rnnt_loss";
        let floor = criterion_median(&root, g, "floor", id)?;
        let slice = criterion_median(&root, g, "loss_grad", id)?;
        let candle = criterion_median(&root, g, "loss_grad_candle", id)?;
        let loss = criterion_median(&root, g, "loss", id)?;
        let ta = peer["shapes"][id]["median_s"]
            .as_f64()
            .with_context(|| format!("no torchaudio result for {id}"))?;
        println!(
            "| {id} | {} | {} | {:.2}x | {} | {:.2}x | {} | {} | {:.1}x | {:.1}x |",
            ms(floor),
            ms(slice),
            slice / floor,
            ms(candle),
            candle / floor,
            ms(loss),
            ms(ta),
            ta / slice,
            ta / candle
        );
    }
    let g = "cpu/lattice_pool";
    let id = "B8_T250_U60_K4";
    let floor = criterion_median(&root, g, "floor", id)?;
    let slice = criterion_median(&root, g, "loss_grad", id)?;
    let candle = criterion_median(&root, g, "loss_grad_candle", id)?;
    println!(
        "\n| shape | floor (read+write) | ent pool loss+grad | ÷ floor | ent candle loss+backward | ÷ floor |"
    );
    println!("|---|---|---|---|---|---|");
    println!(
        "| {id} | {} | {} | {:.2}x | {} | {:.2}x |",
        ms(floor),
        ms(slice),
        slice / floor,
        ms(candle),
        candle / floor
    );
    Ok(())
}
