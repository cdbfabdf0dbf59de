//! Long-recording benchmark of `ent diarize`: wall time and peak memory on generated speech.
//!
//! ```text
//! cargo build --release -p ent-cli
//! cargo run --release -p ent-benches --bin longform -- [--minutes 1,10,60] [--ent target/release/ent]
//!     [--jobs N] [--keep DIR]
//! ```
//!
//! For each length it writes a 16 kHz 16-bit WAV into a temporary folder: the demo corpus's
//! held-out sentences (`data/demo/audio/*_s*.flac` and the diarization recordings), one after
//! the other, separated by 0.3-0.9 s pauses of faint noise (seeded, the same file every run),
//! so the recording is speech from start to end as a call or podcast is. Then it runs
//! `ent diarize <file>` with the bundled demo model once per length, and prints one line each:
//! audio minutes, wall seconds, real-time factor, seconds per audio minute (also after
//! subtracting the start-up, measured first on a 1 s recording), peak resident memory (the
//! child's `ru_maxrss`), RTTM segments written. `--jobs` is passed to `ent diarize`;
//! `--keep DIR` keeps the recordings there.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Instant;

use ent_common::rng::SplitMix64;

const RATE: u32 = 16_000;

fn main() {
    if let Err(e) = run() {
        eprintln!("error: {e}");
        std::process::exit(1);
    }
}

fn run() -> Result<(), String> {
    let mut minutes = vec![1.0f64, 10.0, 60.0];
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let mut ent = root.join("target/release/ent");
    let mut keep: Option<PathBuf> = None;
    let mut extra: Vec<String> = Vec::new();
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        let mut value = || args.next().ok_or(format!("{a} needs a value"));
        match a.as_str() {
            "--minutes" => {
                minutes = value()?
                    .split(',')
                    .map(|m| {
                        m.trim()
                            .parse::<f64>()
                            .map_err(|e| format!("--minutes: {e}"))
                    })
                    .collect::<Result<_, _>>()?;
            }
            "--ent" => ent = PathBuf::from(value()?),
            "--keep" => keep = Some(PathBuf::from(value()?)),
            "--jobs" => extra = vec!["--jobs".to_string(), value()?],
            other => return Err(format!("unknown argument {other}")),
        }
    }
    if !ent.is_file() {
        return Err(format!(
            "{} not found: run `cargo build --release -p ent-cli` first",
            ent.display()
        ));
    }
    let speech = sentences(&root.join("data/demo/audio"))?;
    let tmp = std::env::temp_dir().join(format!("ent-longform-{}", std::process::id()));
    let dir = keep.clone().unwrap_or(tmp);
    std::fs::create_dir_all(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    // The fixed cost of a run (process start, model load), from a 1 s recording.
    let one = dir.join("speech_1s.wav");
    write_recording(&one, &speech, 1.0)?;
    let (startup, _, _) = measure(&ent, &one, &extra)?;
    let _ = std::fs::remove_file(&one);
    println!("start-up (a 1 s recording): {startup:.2} s");
    println!("minutes  wall_s   rtf      s_per_min  s_per_min_after_startup  peak_mib  segments");
    for &m in &minutes {
        let wav = dir.join(format!("speech_{m}min.wav"));
        write_recording(&wav, &speech, m * 60.0)?;
        let (wall, peak_kib, out) = measure(&ent, &wav, &extra)?;
        let segments = out.lines().filter(|l| l.starts_with("SPEAKER")).count();
        println!(
            "{m:<8} {wall:<8.2} {:<8.4} {:<10.3} {:<24.3} {:<9.0} {segments}",
            wall / (m * 60.0),
            wall / m,
            (wall - startup).max(0.0) / m,
            peak_kib as f64 / 1024.0
        );
        if keep.is_none() {
            let _ = std::fs::remove_file(&wav);
        }
    }
    if keep.is_none() {
        let _ = std::fs::remove_dir(&dir);
    }
    Ok(())
}

/// The held-out sentences and diarization recordings of the demo corpus, 16 kHz.
fn sentences(dir: &Path) -> Result<Vec<Vec<f32>>, String> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .map_err(|e| format!("{}: {e}", dir.display()))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| {
            let n = p
                .file_name()
                .map_or(String::new(), |n| n.to_string_lossy().into());
            n.ends_with(".flac") && (n.starts_with("diar_") || n.contains("_s0"))
        })
        .collect();
    files.sort();
    if files.is_empty() {
        return Err(format!("no demo audio in {}", dir.display()));
    }
    files
        .iter()
        .map(|f| {
            ent_features::load_resampled(f, RATE)
                .map(|a| a.samples)
                .map_err(|e| e.to_string())
        })
        .collect()
}

/// `seconds` of the sentences in turn with short noisy pauses, as 16-bit PCM.
fn write_recording(path: &Path, speech: &[Vec<f32>], seconds: f64) -> Result<(), String> {
    let spec = hound::WavSpec {
        channels: 1,
        sample_rate: RATE,
        bits_per_sample: 16,
        sample_format: hound::SampleFormat::Int,
    };
    let err = |e: hound::Error| format!("{}: {e}", path.display());
    let mut w = hound::WavWriter::create(path, spec).map_err(err)?;
    let total = (seconds * RATE as f64) as usize;
    let mut rng = SplitMix64::new(7);
    let mut noise = || ((rng.next_u64() >> 11) as f64 / (1u64 << 53) as f64 - 0.5) as f32 * 2e-3;
    let mut written = 0usize;
    let mut i = 0usize;
    let q = |x: f32| (x * 32768.0).round().clamp(-32768.0, 32767.0) as i16;
    while written < total {
        let pause = (0.3 + 0.6 * ((i * 7919) % 100) as f64 / 100.0) * RATE as f64;
        for _ in 0..(pause as usize).min(total - written) {
            w.write_sample(q(noise())).map_err(err)?;
            written += 1;
        }
        for &x in speech[i % speech.len()].iter().take(total - written) {
            w.write_sample(q(x + noise())).map_err(err)?;
            written += 1;
        }
        i += 1;
    }
    w.finalize().map_err(err)
}

/// Runs `ent diarize wav`; returns wall seconds, the child's peak RSS in KiB, and its stdout.
fn measure(ent: &Path, wav: &Path, extra: &[String]) -> Result<(f64, i64, String), String> {
    let out_path = wav.with_extension("rttm");
    let out = std::fs::File::create(&out_path).map_err(|e| e.to_string())?;
    let t0 = Instant::now();
    let child = Command::new(ent)
        .arg("diarize")
        .args(extra)
        .arg(wav)
        .stdout(out)
        .stderr(Stdio::null())
        .spawn()
        .map_err(|e| format!("{}: {e}", ent.display()))?;
    let pid = child.id() as libc::pid_t;
    let mut status = 0;
    // SAFETY: an all-zero `rusage` is a valid value of this plain C struct.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: `pid` is our own child, not yet waited for; both pointers are valid for writes.
    let r = unsafe { libc::wait4(pid, &mut status, 0, &mut usage) };
    let wall = t0.elapsed().as_secs_f64();
    if r != pid {
        return Err(format!("wait4 failed: {}", std::io::Error::last_os_error()));
    }
    if !libc::WIFEXITED(status) || libc::WEXITSTATUS(status) != 0 {
        return Err(format!(
            "ent diarize {} failed (status {status})",
            wav.display()
        ));
    }
    let text = std::fs::read_to_string(&out_path).map_err(|e| e.to_string())?;
    let _ = std::fs::remove_file(&out_path);
    Ok((wall, usage.ru_maxrss, text))
}
