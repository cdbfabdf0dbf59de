//! `cargo xtask check-cuda`: the `cuda` features linted with the pinned toolkit and link-only
//! stubs of the CUDA libraries; no GPU needed. Also the environment `gpu-bundle` builds in.

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, Result, bail};

use crate::cuda_toolkit::nvcc_home;
use crate::run;

/// The environment of a build with the `cuda` feature on a machine without a GPU or a CUDA
/// installation: the pinned toolkit's nvcc first on `PATH` (cudarc reads its version, candle
/// compiles its kernels with it), `CUDA_HOME`, the compute capability candle's kernels are
/// built for (`CUDA_COMPUTE_CAP`, default 90: H100/H200), and a `LIBRARY_PATH` with link-only
/// stubs of the driver and the libraries no wheel here provides, then the toolkit's own
/// libraries (NVRTC, the runtime).
pub fn cuda_env(root: &Path) -> Result<Vec<(String, OsString)>> {
    let home = nvcc_home(root)?;
    let stubs = stubs(root)?;
    let join = |first: Vec<PathBuf>, var: &str| -> Result<OsString> {
        let rest = std::env::var_os(var).unwrap_or_default();
        let all = first
            .into_iter()
            .chain(std::env::split_paths(&rest))
            .filter(|p| !p.as_os_str().is_empty());
        Ok(std::env::join_paths(all)?)
    };
    Ok(vec![
        ("PATH".into(), join(vec![home.join("bin")], "PATH")?),
        ("CUDA_HOME".into(), home.clone().into_os_string()),
        (
            "CUDA_COMPUTE_CAP".into(),
            std::env::var_os("CUDA_COMPUTE_CAP").unwrap_or_else(|| "90".into()),
        ),
        (
            "LIBRARY_PATH".into(),
            join(vec![stubs, home.join("lib")], "LIBRARY_PATH")?,
        ),
    ])
}

/// Link-only stubs: (library, soname, the folder of cudarc whose `sys/mod.rs` declares its
/// functions). A binary linked against them loads the real libraries of the GPU machine.
const STUBS: [(&str, &str, &str); 4] = [
    ("cuda", "libcuda.so.1", "driver"),
    ("cublas", "libcublas.so.13", "cublas"),
    ("cublasLt", "libcublasLt.so.13", "cublaslt"),
    ("curand", "libcurand.so.10", "curand"),
];

/// The source folder of the cudarc version the lock file resolves with `cuda` on.
fn cudarc_src(root: &Path) -> Result<PathBuf> {
    let out = Command::new(env!("CARGO"))
        .current_dir(root)
        .args([
            "metadata",
            "--format-version",
            "1",
            "--features",
            "ent-kernels/cuda",
        ])
        .output()
        .context("running cargo metadata")?;
    if !out.status.success() {
        bail!(
            "cargo metadata failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let meta: serde_json::Value = serde_json::from_slice(&out.stdout)?;
    let manifest = meta["packages"]
        .as_array()
        .and_then(|ps| ps.iter().find(|p| p["name"] == "cudarc"))
        .and_then(|p| p["manifest_path"].as_str())
        .context("cudarc is not in the dependency graph of ent-kernels/cuda")?;
    Ok(Path::new(manifest)
        .parent()
        .context("cudarc manifest has no folder")?
        .join("src"))
}

/// Builds the stubs into `target/cuda-stubs` (once per cudarc version): every function the
/// bindings declare, as an empty body, in a shared library with the real soname.
fn stubs(root: &Path) -> Result<PathBuf> {
    let src = cudarc_src(root)?;
    let dir = crate::target_dir(root)?.join("cuda-stubs");
    std::fs::create_dir_all(&dir)?;
    let stamp = dir.join("cudarc-source");
    let built_for = std::fs::read_to_string(&stamp).unwrap_or_default();
    if built_for == src.display().to_string()
        && STUBS
            .iter()
            .all(|(lib, ..)| dir.join(format!("lib{lib}.so")).exists())
    {
        return Ok(dir);
    }
    for (lib, soname, folder) in STUBS {
        let bindings = src.join(folder).join("sys/mod.rs");
        let text = std::fs::read_to_string(&bindings)
            .with_context(|| format!("reading {}", bindings.display()))?;
        let mut names: Vec<&str> = text
            .lines()
            .filter_map(|l| l.strip_prefix("pub unsafe fn "))
            .filter_map(|l| l.split('(').next())
            .collect();
        names.sort_unstable();
        names.dedup();
        if names.is_empty() {
            bail!("no functions found in {}", bindings.display());
        }
        let c = dir.join(format!("{lib}.c"));
        let body: String = names
            .iter()
            .map(|n| format!("void {n}(void) {{}}\n"))
            .collect();
        std::fs::write(
            &c,
            format!("/* Link-only stub of {soname}: never loaded. */\n{body}"),
        )?;
        run(Command::new("cc")
            .args(["-shared", "-fPIC", "-o"])
            .arg(dir.join(format!("lib{lib}.so")))
            .arg(format!("-Wl,-soname,{soname}"))
            .arg(&c))
        .with_context(|| format!("building the {lib} stub"))?;
    }
    std::fs::write(&stamp, src.display().to_string())?;
    Ok(dir)
}

/// `cargo xtask check-cuda`: clippy of ent-kernels, ent-lattice, ent-model and ent-train (their
/// GPU tests) and ent-cli (and the GPU benchmark of ent-benches) with their `cuda` features in
/// the environment of [`cuda_env`]: the CUDA path compiles, lint-clean, without a GPU.
pub fn check_cuda(root: &Path) -> Result<()> {
    let env = cuda_env(root)?;
    println!(
        "== cargo clippy -p ent-kernels -p ent-lattice -p ent-model -p ent-train -p ent-cli -p ent-benches --all-targets --features cuda -- -D warnings"
    );
    run(Command::new(env!("CARGO"))
        .current_dir(root)
        .envs(env.iter().map(|(k, v)| (k, v)))
        .args([
            "clippy",
            "-p",
            "ent-kernels",
            "-p",
            "ent-lattice",
            "-p",
            "ent-model",
            "-p",
            "ent-train",
            "-p",
            "ent-cli",
            "-p",
            "ent-benches",
            "--all-targets",
            "--features",
            "ent-kernels/cuda,ent-lattice/cuda,ent-model/cuda,ent-train/cuda,ent-cli/cuda,ent-benches/cuda",
            "--",
            "-D",
            "warnings",
        ]))?;
    println!(
        "check-cuda: the cuda features of ent-kernels, ent-lattice, ent-model, ent-train, ent-cli and the GPU benchmark build lint-clean"
    );
    Ok(())
}
