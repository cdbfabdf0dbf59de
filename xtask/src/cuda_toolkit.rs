//! `cargo xtask cuda-toolkit`: the pinned CUDA 13.0 compiler (nvcc, ptxas, NVRTC, headers) from
//! PyPI wheels into `target/cuda-13.0`. No GPU and no system CUDA needed.

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, Result};

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

/// Where `cargo xtask cuda-toolkit` installs the toolkit.
fn toolkit_dir(root: &Path) -> Result<PathBuf> {
    Ok(crate::target_dir(root)?.join("cuda-13.0"))
}

/// The CUDA home inside an installed toolkit (`bin/nvcc`, `include`, `lib`, `nvvm`).
fn cuda_home(root: &Path) -> Result<PathBuf> {
    Ok(toolkit_dir(root)?.join("nvidia/cu13"))
}

/// `cargo xtask cuda-toolkit`: downloads the pinned wheels with pip and unpacks them.
pub fn toolkit(root: &Path) -> Result<PathBuf> {
    let home = cuda_home(root)?;
    if home.join("bin/nvcc").exists() && home.join("nvvm/bin/cicc").exists() {
        println!("CUDA 13.0 toolkit already in {}", home.display());
        return Ok(home);
    }
    let dir = toolkit_dir(root)?;
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

pub fn set_executable(path: &Path) -> Result<()> {
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
