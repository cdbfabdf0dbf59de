//! `cargo xtask cuda-toolkit` and `cargo xtask kernels`: a pinned CUDA 13.0 compiler from PyPI
//! wheels, and the kernels in `kernels/` compiled to PTX with their resource report. Neither
//! needs a GPU.

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
fn nvcc_home(root: &Path) -> Result<PathBuf> {
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
    if check && !spills.is_empty() {
        bail!("register spills in {spills:?}");
    }
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
