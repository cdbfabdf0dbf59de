//! `cargo xtask cuda-toolkit`, `cargo xtask kernels` and `cargo xtask check-cuda`: a pinned
//! CUDA 13.0 compiler from PyPI wheels, the kernels in `kernels/` compiled to PTX with their
//! resource report, and the `cuda` feature of the workspace checked with that compiler and
//! link-only stub libraries. None needs a GPU.

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, Result, bail};

use crate::run;

/// The CUDA 13.0 wheels (nvcc 13.0 emits PTX ISA 9.0, which the driver 580 of the GPU machines
/// loads; a newer nvcc's PTX may not load there).
const WHEELS: [&str; 6] = [
    "nvidia-cuda-nvcc==13.0.88",
    "nvidia-nvvm==13.0.88",
    "nvidia-cuda-crt==13.0.88",
    "nvidia-cuda-runtime==13.0.96",
    "nvidia-cuda-cccl==13.0.85",
    "nvidia-cuda-nvrtc==13.0.88",
];

/// Architectures the kernels are compiled for: native code for the H200 (sm_90) and PTX for
/// compute_80, which the driver JIT-compiles on any GPU from Ampere on.
const TARGETS: [(&str, &str); 2] = [("sm_90", "sm_90"), ("compute_80", "sm_80")];

/// Where `cargo xtask cuda-toolkit` installs the toolkit.
fn toolkit_dir(root: &Path) -> PathBuf {
    root.join("target/cuda-13.0")
}

/// The CUDA home inside an installed toolkit (`bin/nvcc`, `include`, `lib`, `nvvm`).
fn cuda_home(root: &Path) -> PathBuf {
    toolkit_dir(root).join("nvidia/cu13")
}

/// `cargo xtask cuda-toolkit`: downloads the pinned wheels with pip and unpacks them.
pub fn toolkit(root: &Path) -> Result<PathBuf> {
    let home = cuda_home(root);
    if home.join("bin/nvcc").exists() && home.join("nvvm/bin/cicc").exists() {
        println!("CUDA 13.0 toolkit already in {}", home.display());
        return Ok(home);
    }
    let dir = toolkit_dir(root);
    let wheels = dir.join("wheels");
    std::fs::create_dir_all(&wheels).with_context(|| format!("creating {}", wheels.display()))?;
    eprintln!(
        "downloading the CUDA 13.0 compiler wheels from PyPI into {} (about 190 MB)",
        wheels.display()
    );
    run(Command::new("python3")
        .args(["-m", "pip", "download", "--no-deps", "-q", "-d"])
        .arg(&wheels)
        .args(WHEELS))?;
    for entry in std::fs::read_dir(&wheels)? {
        let path = entry?.path();
        if path.extension().is_some_and(|e| e == "whl") {
            // A wheel is a zip file; Python's zipfile unpacks it without extra tools.
            run(Command::new("python3")
                .args(["-m", "zipfile", "-e"])
                .arg(&path)
                .arg(&dir))?;
        }
    }
    // Zip files do not keep the executable bits.
    for sub in ["bin", "nvvm/bin"] {
        for entry in std::fs::read_dir(home.join(sub))? {
            let path = entry?.path();
            if path.is_file() {
                set_executable(&path)?;
            }
        }
    }
    // Unversioned names for the libraries that loaders and linkers look up.
    for (link, target) in [
        ("libnvrtc.so", "libnvrtc.so.13"),
        ("libcudart.so", "libcudart.so.13"),
    ] {
        let link = home.join("lib").join(link);
        if !link.exists() {
            std::os::unix::fs::symlink(target, &link)
                .with_context(|| format!("linking {}", link.display()))?;
        }
    }
    println!("CUDA 13.0 toolkit installed: CUDA_HOME={}", home.display());
    Ok(home)
}

fn set_executable(path: &Path) -> Result<()> {
    use std::os::unix::fs::PermissionsExt;
    let mut perm = std::fs::metadata(path)?.permissions();
    perm.set_mode(perm.mode() | 0o755);
    std::fs::set_permissions(path, perm).with_context(|| format!("chmod {}", path.display()))
}

/// nvcc: `$CUDA_HOME/bin/nvcc`, else the project's toolkit (installed on demand).
pub fn nvcc_home(root: &Path) -> Result<PathBuf> {
    if let Some(home) = std::env::var_os("CUDA_HOME").map(PathBuf::from)
        && home.join("bin/nvcc").exists()
    {
        return Ok(home);
    }
    toolkit(root)
}

/// One kernel's resource use for one architecture, from `ptxas -v`.
struct Report {
    entry: String,
    registers: u32,
    spill_bytes: u32,
    stack_bytes: u32,
    shared_bytes: u32,
}

fn parse_ptxas(text: &str) -> Vec<Report> {
    let mut out: Vec<Report> = Vec::new();
    let number_before = |line: &str, unit: &str| -> u32 {
        line.split(',')
            .find(|part| part.contains(unit))
            .and_then(|part| part.split_whitespace().find_map(|w| w.parse().ok()))
            .unwrap_or(0)
    };
    for line in text.lines() {
        if let Some(rest) = line.split("Compiling entry function '").nth(1) {
            out.push(Report {
                entry: rest.split('\'').next().unwrap_or("?").to_string(),
                registers: 0,
                spill_bytes: 0,
                stack_bytes: 0,
                shared_bytes: 0,
            });
        } else if let Some(r) = out.last_mut() {
            if line.contains("bytes stack frame") {
                r.stack_bytes = number_before(line, "stack frame");
                r.spill_bytes =
                    number_before(line, "spill stores") + number_before(line, "spill loads");
            }
            if line.contains("registers") {
                r.registers = number_before(line, "registers");
                r.shared_bytes = number_before(line, "smem");
            }
        }
    }
    out
}

/// `cargo xtask kernels [--check]`: compiles every `kernels/*.cu` to PTX for each target in
/// `target/kernels/`, and prints the registers, spills and stack of every entry point (sm_90).
/// `--check` fails on a compile error or any spill.
pub fn kernels(root: &Path, args: &[String]) -> Result<()> {
    let check = match args {
        [] => false,
        [a] if a == "--check" => true,
        other => bail!("unknown options {other:?}: cargo xtask kernels [--check]"),
    };
    let home = nvcc_home(root)?;
    let nvcc = home.join("bin/nvcc");
    let ptxas = home.join("bin/ptxas");
    let out_dir = root.join("target/kernels");
    std::fs::create_dir_all(&out_dir)?;
    let mut sources: Vec<PathBuf> = std::fs::read_dir(root.join("kernels"))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|e| e == "cu"))
        .collect();
    sources.sort();
    if sources.is_empty() {
        bail!("no kernels/*.cu to compile");
    }
    let mut spills = Vec::new();
    println!(
        "| kernel | entry point | registers | spill bytes | stack bytes | static shared bytes |"
    );
    println!("|---|---|---|---|---|---|");
    for src in &sources {
        let stem = src.file_stem().and_then(|s| s.to_str()).unwrap_or("kernel");
        for (arch, sm) in TARGETS {
            let ptx = out_dir.join(format!("{stem}.{arch}.ptx"));
            run(Command::new(&nvcc)
                .args(["-ptx", "-O3", "-std=c++17", "-lineinfo"])
                .arg(format!("-arch={arch}"))
                .arg(format!("-I{}", home.join("include").display()))
                .arg(src)
                .arg("-o")
                .arg(&ptx))
            .with_context(|| format!("compiling {} for {arch}", src.display()))?;
            if arch != "sm_90" {
                // The portable PTX must still assemble for its oldest target.
                run(Command::new(&ptxas)
                    .arg(format!("-arch={sm}"))
                    .arg(&ptx)
                    .args(["-o", "/dev/null"]))?;
                continue;
            }
            let report = Command::new(&ptxas)
                .arg(format!("-arch={sm}"))
                .arg("-v")
                .arg(&ptx)
                .args(["-o", "/dev/null"])
                .output()
                .with_context(|| format!("running {}", ptxas.display()))?;
            if !report.status.success() {
                bail!(
                    "ptxas failed on {}:\n{}",
                    ptx.display(),
                    String::from_utf8_lossy(&report.stderr)
                );
            }
            for r in parse_ptxas(&String::from_utf8_lossy(&report.stderr)) {
                println!(
                    "| {stem}.cu | {} | {} | {} | {} | {} |",
                    r.entry, r.registers, r.spill_bytes, r.stack_bytes, r.shared_bytes
                );
                if r.spill_bytes > 0 {
                    spills.push(r.entry);
                }
            }
        }
    }
    println!("\nPTX written to {}", out_dir.display());
    let missing = check_entries(root, &out_dir, &sources)?;
    if check && !spills.is_empty() {
        bail!("register spills in {spills:?}");
    }
    if !missing.is_empty() {
        bail!("{}", missing.join("\n"));
    }
    Ok(())
}

/// The entry points of the compiled PTX against the table of the emulated kernels
/// (`kernels/emu/kernels.cpp`): each must be in both, or the emulated tests would not cover it.
fn check_entries(root: &Path, out_dir: &Path, sources: &[PathBuf]) -> Result<Vec<String>> {
    let mut ptx_entries = std::collections::BTreeSet::new();
    for src in sources {
        let stem = src.file_stem().and_then(|s| s.to_str()).unwrap_or("kernel");
        let ptx = std::fs::read_to_string(out_dir.join(format!("{stem}.sm_90.ptx")))?;
        for line in ptx.lines() {
            if let Some(rest) = line.trim_start().strip_prefix(".visible .entry ") {
                ptx_entries.insert(rest.split('(').next().unwrap_or(rest).trim().to_string());
            }
        }
    }
    let table_path = root.join("kernels/emu/kernels.cpp");
    let table = std::fs::read_to_string(&table_path)
        .with_context(|| format!("reading {}", table_path.display()))?;
    let emulated: std::collections::BTreeSet<String> = table
        .split("ENT_EMU_ENTRY(")
        .skip(1)
        .filter_map(|rest| rest.split(')').next())
        .map(|name| name.trim().to_string())
        .collect();
    let mut problems = Vec::new();
    for e in ptx_entries.difference(&emulated) {
        problems.push(format!(
            "entry point {e} is in the PTX but not in kernels/emu/kernels.cpp: add it there so \
             `cargo xtask test-kernels` can run it"
        ));
    }
    for e in emulated.difference(&ptx_entries) {
        problems.push(format!(
            "kernels/emu/kernels.cpp lists {e}, which no kernels/*.cu defines"
        ));
    }
    println!(
        "{} entry points, each in the PTX and in the emulation: {}",
        ptx_entries.len(),
        if problems.is_empty() { "yes" } else { "no" }
    );
    Ok(problems)
}

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
            "ent-lattice/cuda",
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
        .context("cudarc is not in the dependency graph of ent-lattice/cuda")?;
    Ok(Path::new(manifest)
        .parent()
        .context("cudarc manifest has no folder")?
        .join("src"))
}

/// Builds the stubs into `target/cuda-stubs` (once per cudarc version): every function the
/// bindings declare, as an empty body, in a shared library with the real soname.
fn stubs(root: &Path) -> Result<PathBuf> {
    let src = cudarc_src(root)?;
    let dir = root.join("target/cuda-stubs");
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

/// `cargo xtask check-cuda`: clippy of ent-lattice and ent-cli (and the GPU benchmark of
/// ent-benches) with their `cuda` features in the environment of [`cuda_env`]: the CUDA path
/// compiles, lint-clean, without a GPU.
pub fn check_cuda(root: &Path, args: &[String]) -> Result<()> {
    if !args.is_empty() {
        bail!("unknown options {args:?}: cargo xtask check-cuda");
    }
    let env = cuda_env(root)?;
    println!(
        "== cargo clippy -p ent-lattice -p ent-cli -p ent-benches --all-targets --features cuda -- -D warnings"
    );
    run(Command::new(env!("CARGO"))
        .current_dir(root)
        .envs(env.iter().map(|(k, v)| (k, v)))
        .args([
            "clippy",
            "-p",
            "ent-lattice",
            "-p",
            "ent-cli",
            "-p",
            "ent-benches",
            "--all-targets",
            "--features",
            "ent-lattice/cuda,ent-cli/cuda,ent-benches/cuda",
            "--",
            "-D",
            "warnings",
        ]))?;
    println!(
        "check-cuda: the cuda features of ent-lattice, ent-cli and the GPU benchmark build lint-clean"
    );
    Ok(())
}

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
/// tests and benchmark, the torchaudio timing script, the table script and `run.sh`, for a
/// machine with a GPU, a CUDA 13 driver and Python with torch and torchaudio but no Rust.
pub fn gpu_bundle(root: &Path, args: &[String]) -> Result<()> {
    if !args.is_empty() {
        bail!("unknown options {args:?}: cargo xtask gpu-bundle");
    }
    let env = cuda_env(root)?;
    let tests = build_executable(
        root,
        &env,
        &[
            "test",
            "--release",
            "-p",
            "ent-lattice",
            "--features",
            "cuda",
            "--test",
            "it",
            "--no-run",
        ],
        "it",
    )?;
    let bench = build_executable(
        root,
        &env,
        &[
            "bench",
            "-p",
            "ent-benches",
            "--features",
            "cuda",
            "--bench",
            "lattice_cuda",
            "--no-run",
        ],
        "lattice_cuda",
    )?;
    let dir = root.join("target/gpu-bundle");
    if dir.exists() {
        std::fs::remove_dir_all(&dir)?;
    }
    std::fs::create_dir_all(&dir)?;
    // Stripped, each binary is about 50 MB, most of it candle's CUDA kernels; xz takes it to
    // about 6 MB. run.sh unpacks with Python's lzma.
    for (src, name) in [(&tests, "ent-lattice-tests"), (&bench, "lattice-cuda")] {
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_ptxas_reports() {
        let text = "ptxas info    : Compiling entry function 'pool_f32' for 'sm_90'\n\
            ptxas info    : Function properties for pool_f32\n\
            ptxas         .     512 bytes stack frame, 8 bytes spill stores, 4 bytes spill loads\n\
            ptxas info    : Used 68 registers, used 1 barriers, 512 bytes cumulative stack size, 1024 bytes smem\n";
        let r = parse_ptxas(text);
        assert_eq!(r.len(), 1);
        assert_eq!(r[0].entry, "pool_f32");
        assert_eq!(
            (
                r[0].registers,
                r[0].spill_bytes,
                r[0].stack_bytes,
                r[0].shared_bytes
            ),
            (68, 12, 512, 1024)
        );
    }
}
