//! `cargo xtask gpu-bundle`: `target/gpu-bundle/`, the GPU tests and benchmark as stripped,
//! compressed binaries with `run.sh`, for a GPU machine without Rust.

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, Result, bail};

use crate::check_cuda::cuda_env;
use crate::cuda_toolkit::set_executable;
use crate::run;

/// The largest the GPU bundle may be (the machines it travels to take 64 MiB).
const BUNDLE_LIMIT: u64 = 60 * 1000 * 1000;

/// Builds with cargo (in the environment of [`cuda_env`]) and returns the executable of the
/// target named `target`.
fn build_executable(
    root: &Path,
    env: &[(String, OsString)],
    args: &[&str],
    target: &str,
) -> Result<PathBuf> {
    let out = Command::new(env!("CARGO"))
        .current_dir(root)
        .envs(env.iter().map(|(k, v)| (k, v)))
        .args(args)
        .arg("--message-format=json-render-diagnostics")
        .stderr(std::process::Stdio::inherit())
        .output()
        .with_context(|| format!("running cargo {}", args.join(" ")))?;
    if !out.status.success() {
        bail!("cargo {} failed", args.join(" "));
    }
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter(|m| m["reason"] == "compiler-artifact" && m["target"]["name"] == target)
        .filter_map(|m| m["executable"].as_str().map(PathBuf::from))
        .next_back()
        .with_context(|| format!("cargo {} built no executable {target}", args.join(" ")))
}

/// `cargo xtask gpu-bundle`: `target/gpu-bundle/` with stripped x86-64 binaries of the GPU
/// tests and benchmark and of `ent` built with `cuda`, the torchaudio timing script, the table
/// and evaluation-comparison scripts and `run.sh`, for a machine with a GPU, a CUDA 13 driver
/// and Python with torch and torchaudio but no Rust.
pub fn gpu_bundle(root: &Path) -> Result<()> {
    let env = cuda_env(root)?;
    // (cargo command, target name, name in the bundle).
    let test = |pkg| {
        vec![
            "test",
            "--release",
            "-p",
            pkg,
            "--features",
            "cuda",
            "--test",
            "it",
        ]
    };
    let bench = |name| {
        vec![
            "bench",
            "-p",
            "ent-benches",
            "--features",
            "cuda",
            "--bench",
            name,
        ]
    };
    let builds: [(Vec<&str>, &str, &str); 6] = [
        (test("ent-lattice"), "it", "ent-lattice-tests"),
        (test("ent-model"), "it", "ent-model-tests"),
        (test("ent-train"), "it", "ent-train-tests"),
        (bench("lattice_cuda"), "lattice_cuda", "lattice-cuda"),
        (bench("train"), "train", "train-bench"),
        (
            vec!["build", "--release", "-p", "ent-cli", "--features", "cuda"],
            "ent",
            "ent",
        ),
    ];
    let mut built = Vec::with_capacity(builds.len());
    for (mut args, target, name) in builds {
        if args[0] != "build" {
            args.push("--no-run");
        }
        built.push((build_executable(root, &env, &args, target)?, name));
    }
    let dir = crate::target_dir(root)?.join("gpu-bundle");
    if dir.exists() {
        std::fs::remove_dir_all(&dir)?;
    }
    std::fs::create_dir_all(&dir)?;
    // Stripped, each binary is about 50 MB, most of it candle's CUDA kernels; xz takes it to
    // about 6 MB. run.sh unpacks with Python's lzma.
    for (src, name) in &built {
        let dst = dir.join(name);
        run(Command::new("strip").arg("-o").arg(&dst).arg(src))
            .with_context(|| format!("stripping {}", src.display()))?;
        run(Command::new("xz").args(["-6", "-T0"]).arg(&dst))
            .context("compressing with xz (apt-get install xz-utils)")?;
    }
    for (src, name) in [
        (root.join("xtask/assets/gpu-run.sh"), "run.sh"),
        (
            root.join("benches/torchaudio_rnnt.py"),
            "torchaudio_rnnt.py",
        ),
        (root.join("benches/gpu_table.py"), "gpu_table.py"),
        (root.join("benches/train_torch.py"), "train_torch.py"),
        (root.join("benches/train_table.py"), "train_table.py"),
        (root.join("benches/compare_eval.py"), "compare_eval.py"),
    ] {
        std::fs::copy(&src, dir.join(name))
            .with_context(|| format!("copying {}", src.display()))?;
    }
    set_executable(&dir.join("run.sh"))?;
    let mut total = 0;
    println!("\n| file | bytes |\n|---|---|");
    let mut entries: Vec<_> = std::fs::read_dir(&dir)?.collect::<Result<_, _>>()?;
    entries.sort_by_key(|e| e.file_name());
    for e in entries {
        let n = e.metadata()?.len();
        total += n;
        println!("| {} | {n} |", e.file_name().to_string_lossy());
    }
    println!("| total | {total} |");
    if total > BUNDLE_LIMIT {
        bail!("the bundle has {total} bytes, more than {BUNDLE_LIMIT}");
    }
    println!(
        "\nGPU bundle in {} ({:.1} MB): copy it to the GPU machine and run `bash run.sh OUT_DIR`",
        dir.display(),
        total as f64 / 1e6
    );
    Ok(())
}
