//! Project chores: `cargo xtask <command>` (`cargo xtask --help` lists them). One module per
//! command; none needs a GPU.

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, Result, bail};
use clap::{Parser, Subcommand};

mod bench;
mod check_cuda;
mod cuda_toolkit;
mod demo_data;
mod gpu_bundle;
mod kernels;
mod test_kernels;

/// Project chores of ent.
#[derive(Debug, Parser)]
#[command(name = "cargo xtask", bin_name = "cargo xtask")]
struct Cli {
    #[command(subcommand)]
    command: Cmd,
}

#[derive(Debug, Subcommand)]
enum Cmd {
    /// Run the CPU benchmarks (criterion) and their peers on the same inputs and threads
    /// (torchaudio's rnnt_loss, kaldi-native-fbank, transformers; installed from PyPI into
    /// target/bench-venv on first use) and print the comparison tables.
    Bench(bench::BenchArgs),
    /// Install nvcc, ptxas, NVRTC and the CUDA headers 13.0 from PyPI wheels into
    /// target/cuda-13.0 (about 190 MB; no GPU needed).
    CudaToolkit,
    /// Compile kernels/*.cu to PTX in target/kernels (sm_90, compute_80) with the toolkit above
    /// ($CUDA_HOME if set) and print registers, spills and stack.
    Kernels {
        /// Fail on a spill, or on entry points the emulation lacks.
        #[arg(long)]
        check: bool,
    },
    /// Clippy of ent-kernels, ent-lattice, ent-model, ent-train, ent-cli and the GPU benchmark
    /// with their `cuda` features: the toolkit above, link-only stubs of the CUDA libraries
    /// (target/cuda-stubs), CUDA_COMPUTE_CAP=90; no GPU (the first run compiles candle's CUDA kernels: minutes).
    CheckCuda,
    /// Build target/gpu-bundle (at most 60 MB): the GPU tests, the benchmark and `ent` (with
    /// `cuda`) as stripped binaries with run.sh, for a machine with an NVIDIA GPU, a CUDA 13
    /// driver and Python with torch/torchaudio but no Rust (parity with ENT_REQUIRE_CUDA=1,
    /// compute-sanitizer, criterion beside torchaudio, `ent eval` and one training epoch of the
    /// demo recipe on CPU and GPU).
    GpuBundle,
    /// Build the kernels' own sources for the host over emulated CUDA built-ins (the system C++
    /// compiler, no GPU), run their property tests against the CPU reference, then again with
    /// the kernels built under ThreadSanitizer.
    TestKernels {
        /// Instead, break the kernels one way at a time in a copy and fail unless the tests
        /// catch every mutant.
        #[arg(long)]
        mutants: bool,
    },
    /// Synthesise the demo corpus into data/demo with espeak-ng and flac (`apt-get install
    /// espeak-ng flac`): English sentences in several voices and four prosody styles standing
    /// for neutral, happy, angry and sad, FLAC files, SpeechBrain-style manifests and a
    /// ZED-style diarization set.
    DemoData {
        /// Only verify the manifests against the FLAC headers and the 10 MB limit (needs neither
        /// tool).
        #[arg(long)]
        check: bool,
        /// Write (or check) this folder instead of data/demo.
        #[arg(long)]
        out: Option<PathBuf>,
    },
}

fn main() -> Result<()> {
    let root = root();
    match Cli::parse().command {
        Cmd::Bench(args) => bench::bench(&root, &args),
        Cmd::CudaToolkit => cuda_toolkit::toolkit(&root).map(|_| ()),
        Cmd::Kernels { check } => kernels::kernels(&root, check),
        Cmd::CheckCuda => check_cuda::check_cuda(&root),
        Cmd::GpuBundle => gpu_bundle::gpu_bundle(&root),
        Cmd::TestKernels { mutants } => test_kernels::test_kernels(&root, mutants),
        Cmd::DemoData { check, out } => {
            let out = out.unwrap_or_else(|| root.join("data/demo"));
            demo_data::generate(&out, check)
        }
    }
}

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("xtask lives in the workspace root")
        .to_path_buf()
}

/// The workspace's target folder as cargo sees it (`CARGO_TARGET_DIR`, `build.target-dir` in a
/// cargo configuration, else `target/`), asked of `cargo metadata` once. Everything the
/// commands build, install or read back (criterion's results, the CUDA toolkit, the bundle)
/// lives there.
fn target_dir(root: &Path) -> Result<PathBuf> {
    static DIR: std::sync::OnceLock<PathBuf> = std::sync::OnceLock::new();
    if let Some(dir) = DIR.get() {
        return Ok(dir.clone());
    }
    let dir = ask_target_dir(Command::new(env!("CARGO")).current_dir(root))?;
    Ok(DIR.get_or_init(|| dir).clone())
}

/// `target_directory` of `cargo metadata` run by `cargo`.
fn ask_target_dir(cargo: &mut Command) -> Result<PathBuf> {
    let out = cargo
        .args(["metadata", "--format-version", "1", "--no-deps"])
        .output()
        .context("could not run cargo metadata")?;
    if !out.status.success() {
        bail!(
            "cargo metadata failed: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    let meta: serde_json::Value =
        serde_json::from_slice(&out.stdout).context("parsing cargo metadata's output")?;
    meta["target_directory"]
        .as_str()
        .map(PathBuf::from)
        .context("cargo metadata names no target_directory")
}

fn run(cmd: &mut Command) -> Result<()> {
    let status = cmd
        .status()
        .with_context(|| format!("could not start {cmd:?}"))?;
    if !status.success() {
        bail!("{cmd:?} failed: {status}");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_target_folder_is_cargos() {
        let elsewhere = std::env::temp_dir().join("ent-xtask-elsewhere");
        let mut cargo = Command::new(env!("CARGO"));
        cargo
            .current_dir(root())
            .env("CARGO_TARGET_DIR", &elsewhere);
        assert_eq!(ask_target_dir(&mut cargo).unwrap(), elsewhere);
        let mut cargo = Command::new(env!("CARGO"));
        cargo.current_dir(root()).env_remove("CARGO_TARGET_DIR");
        // A cargo configuration may move it; without one it is the workspace's target/.
        let dir = ask_target_dir(&mut cargo).unwrap();
        assert!(
            dir.is_absolute() && dir.ends_with("target"),
            "{}",
            dir.display()
        );
    }
}
