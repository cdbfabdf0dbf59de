//! `cargo xtask kernels [--check]`: `kernels/*.cu` compiled to PTX with the pinned nvcc, the
//! registers, spills and stack of every entry point, and the entry points checked against the
//! emulation's table.

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, Result, bail};

use crate::cuda_toolkit::nvcc_home;
use crate::run;

/// Architectures the kernels are compiled for: native code for the H200 (sm_90) and PTX for
/// compute_80, which the driver JIT-compiles on any GPU from Ampere on.
const TARGETS: [(&str, &str); 2] = [("sm_90", "sm_90"), ("compute_80", "sm_80")];

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
pub fn kernels(root: &Path, check: bool) -> Result<()> {
    let home = nvcc_home(root)?;
    let nvcc = home.join("bin/nvcc");
    let ptxas = home.join("bin/ptxas");
    let out_dir = crate::target_dir(root)?.join("kernels");
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
