//! Builds what the optional features need from the kernel sources in `kernels/` beside this
//! file: in the workspace a link to the workspace's `kernels/` (the one place they live), in
//! the published package a copy that `cargo package` makes of it.
//!
//! - `cuda`: each `kernels/*.cu` compiled to PTX (`compute_80`, which the driver compiles for
//!   any GPU from Ampere on) into `OUT_DIR`, embedded by `src/cuda.rs`. nvcc is `$NVCC`, else
//!   `$CUDA_HOME/bin/nvcc`, else the pinned toolkit that `cargo xtask cuda-toolkit` installs
//!   in `cuda-13.0/` of the target folder, else `nvcc` on `PATH`.
//! - `emulate`: the same sources compiled as host C++ over `kernels/emu/emu.h` into a static
//!   library; with `ENT_EMU_SANITIZE=thread`, instrumented by ThreadSanitizer.
//!
//! `ENT_KERNELS_DIR` replaces `kernels/` as the source folder. Without either feature the
//! script does nothing.

use std::path::{Path, PathBuf};

fn main() {
    let manifest = PathBuf::from(std::env::var_os("CARGO_MANIFEST_DIR").expect("set by cargo"));
    // The workspace's root when built there (its target/ may hold the pinned toolkit).
    let root = manifest
        .ancestors()
        .nth(2)
        .unwrap_or(&manifest)
        .to_path_buf();
    // ENT_KERNELS_DIR builds another copy of the sources (`cargo xtask test-kernels
    // --mutants` points it at mutated ones).
    println!("cargo::rerun-if-env-changed=ENT_KERNELS_DIR");
    let kernels = std::env::var_os("ENT_KERNELS_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| manifest.join("kernels"));
    println!("cargo::rerun-if-changed={}", kernels.display());
    if std::env::var_os("CARGO_FEATURE_CUDA").is_some() {
        ptx(&root, &kernels);
    }
    #[cfg(feature = "emulate")]
    emulate(&kernels);
}

fn sources(kernels: &Path) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(kernels)
        .unwrap_or_else(|e| panic!("reading {}: {e}", kernels.display()))
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|e| e == "cu"))
        .collect();
    v.sort();
    v
}

fn nvcc(root: &Path) -> PathBuf {
    println!("cargo::rerun-if-env-changed=NVCC");
    println!("cargo::rerun-if-env-changed=CUDA_HOME");
    if let Some(n) = std::env::var_os("NVCC") {
        return PathBuf::from(n);
    }
    if let Some(home) = std::env::var_os("CUDA_HOME") {
        let n = PathBuf::from(home).join("bin/nvcc");
        if n.exists() {
            return n;
        }
    }
    // The pinned toolkit sits in the target folder, which holds OUT_DIR (wherever
    // CARGO_TARGET_DIR puts it).
    let out = PathBuf::from(std::env::var_os("OUT_DIR").expect("set by cargo"));
    let pinned = Path::new("cuda-13.0/nvidia/cu13/bin/nvcc");
    let workspace_target = root.join("target");
    out.ancestors()
        .chain([workspace_target.as_path()])
        .map(|dir| dir.join(pinned))
        .find(|nvcc| nvcc.exists())
        .unwrap_or_else(|| PathBuf::from("nvcc"))
}

fn ptx(root: &Path, kernels: &Path) {
    let out = PathBuf::from(std::env::var_os("OUT_DIR").expect("set by cargo"));
    let nvcc = nvcc(root);
    // nvcc's own headers sit beside it, in include/.
    let include = nvcc
        .parent()
        .and_then(Path::parent)
        .map(|home| home.join("include"));
    for src in sources(kernels) {
        let stem = src
            .file_stem()
            .and_then(|s| s.to_str())
            .expect("UTF-8 name");
        let dst = out.join(format!("{stem}.ptx"));
        let mut cmd = std::process::Command::new(&nvcc);
        cmd.args(["-ptx", "-O3", "-std=c++17", "-lineinfo", "-arch=compute_80"]);
        if let Some(inc) = include.as_ref().filter(|i| i.exists()) {
            cmd.arg(format!("-I{}", inc.display()));
        }
        cmd.arg(&src).arg("-o").arg(&dst);
        let status = cmd.status().unwrap_or_else(|e| {
            panic!(
                "could not run {} ({e}): the `cuda` feature of ent-kernels compiles kernels/*.cu \
                 with nvcc; run `cargo xtask cuda-toolkit` (CUDA 13.0 from PyPI, no GPU \
                 needed) or set NVCC or CUDA_HOME",
                nvcc.display()
            )
        });
        assert!(status.success(), "nvcc failed on {}", src.display());
    }
}

#[cfg(feature = "emulate")]
fn emulate(kernels: &Path) {
    println!("cargo::rerun-if-env-changed=ENT_EMU_SANITIZE");
    let emu = kernels.join("emu");
    let mut build = cc::Build::new();
    build
        .cpp(true)
        .std("c++20")
        .include(emu.join("include"))
        .include(kernels)
        .flag("-pthread")
        // CUDA code reads vectors through pointers of other types (uint4 loads of f32
        // rows); nvcc allows it, host C++ only without strict aliasing.
        .flag("-fno-strict-aliasing")
        .flag_if_supported("-Wno-unknown-pragmas")
        .warnings(true)
        .extra_warnings(true)
        .file(emu.join("kernels.cpp"))
        .file(emu.join("runtime.cpp"));
    match std::env::var("ENT_EMU_SANITIZE").as_deref() {
        Ok("thread") => {
            build.opt_level(1).debug(true).flag("-fsanitize=thread");
            println!("cargo::rustc-link-lib=dylib=tsan");
        }
        Ok("") | Err(_) => {
            build.opt_level(2);
        }
        Ok(other) => panic!("ENT_EMU_SANITIZE={other}: only `thread` is supported"),
    }
    build.compile("ent_emu");
    println!("cargo::rustc-link-lib=dylib=stdc++");
}
